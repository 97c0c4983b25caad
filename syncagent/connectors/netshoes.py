"""Netshoes / Zattini: SKUs, stock, prices and price schedules out; paid shippings in; NF-e and tracking back.

Contract: ../shared/contracts/netshoes/API.md (``API.md Lnn`` below). One API serves both brands
(business units ``NS`` Netshoes and ``ZT`` Zattini, API.md L45, L83): a channel is one business
unit (`business_unit`), and reads only that unit's orders, so two channels on the same account
never import an order twice.

Why it is shaped like this:

* the unit of fulfilment is the shipping (API.md L87): each approved shipping is one back office
  order keyed ``orderNumber-shippingCode``, and its NF-e and tracking go back on that shipping;
* there is no order queue and no acknowledge call (API.md L104): orders are polled by
  ``orderStatus`` (L103). Every approved shipping is read at each poll (they leave that status
  once invoiced, so this is the work waiting, and an order paid days after it was placed is
  never skipped by a date cursor); cancellations of the last `lookback_days` are read with it.
  The journal makes a record read twice harmless;
* status PUTs and schedule POSTs are not known to be idempotent (API.md L138-L141): the shipping
  (or the schedule list) is read first and what Netshoes already holds is not sent again.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import quote

from syncagent.connectors import netshoes_wire as wire
from syncagent.connectors.base import Capabilities, OptionSpec, Outgoing, PushResult
from syncagent.connectors.common import OPEN_FROM, push_each, push_one
from syncagent.connectors.rest import AuthKind, Feed, Headers, PageNumber, RestConnector
from syncagent.errors import MappingError, PermanentError, TransientError
from syncagent.http import HttpResponse, HttpSettings
from syncagent.model import ChannelCustomer, Page, parse_time, time_str, utcnow

AUTH_HEADERS = {"client_id": "client_id", "access_token": "access_token"}  # API.md L17
PAGE_SIZE = 50  # `size` (API.md L21); the reference gives no maximum
ORDER_EXPAND = "items,shippings"  # API.md L73
PUSHES = ("products", "prices", "stock", "order-acks", "order-events", "customer-links")


class NetshoesConnector(RestConnector):
    """Writes SKUs, prices, schedules and stock to one Netshoes business unit and reads its paid shippings."""

    type_name: ClassVar[str] = "netshoes"
    options: ClassVar[dict[str, OptionSpec]] = {
        "client_id": OptionSpec("str", required=True, secret=True, help="app id (header client_id)"),
        "access_token": OptionSpec("str", required=True, secret=True, help="access token (header access_token)"),
        "business_unit": OptionSpec("str", default="NS", help="NS (Netshoes) or ZT (Zattini): the brand this "
                                    "channel sells on"),
        "seller_id": OptionSpec("str", help="idSeller header, for platforms serving several sellers"),
        "status_body": OptionSpec("str", default="flat", choices=wire.BODY_SHAPES,
                                  help="status update bodies: flat (2026 clients) or envelope (2016 shippings[])"),
        "first_page": OptionSpec("int", default=0, choices=(0, 1),  # type: ignore[arg-type]
                                 help="number of the first page of a listing (0 or 1)"),
        "lookback_days": OptionSpec("int", default=7, help="days of cancellations read at each poll (orders "
                                    "placed that long ago or less)"),
        "orders_since": OptionSpec("str", help="orders placed before this instant (ISO date-time) are not read; "
                                   "default: all"),
        "department": OptionSpec("str", help="Netshoes department of products whose group is not in "
                                 "department_map"),
        "department_map": OptionSpec("dict", help="back office group code -> Netshoes department code"),
        "product_type": OptionSpec("str", help="Netshoes product type code of every product"),
        "product_id_pattern": OptionSpec("str", help="regex whose first group takes the product (family) id out "
                                         "of our code; default: each code is its own product"),
        "payment_method": OptionSpec("str", help="back office payment method code of Netshoes orders (paid to "
                                     "the seller by the marketplace); default: none"),
        "cancellation_reason": OptionSpec("int", help="Netshoes cancellation reason code sent with cancellations "
                                          "made in the back office; without it they are not sent"),
    }
    capabilities: ClassVar[Capabilities] = Capabilities(
        push=frozenset(PUSHES), pull=frozenset({"orders", "channel-customers"}), max_batch=PAGE_SIZE,
        importable_statuses=("approved",), cancelled_statuses=(wire.CANCELED,),
        stable=frozenset({"products"}),
    )
    auth: ClassVar[AuthKind] = Headers(AUTH_HEADERS)
    check_path: ClassVar[str] = "/orders"
    max_page: ClassVar[int] = PAGE_SIZE

    def __init__(self, name: str, base_url: str | None, options: Mapping[str, Any], http: HttpSettings, *,
                 sleep: Callable[[float], None] | None = None, clock: Callable[[], datetime] = utcnow,
                 order_statuses: Sequence[str] | None = None) -> None:
        opts = dict(options)
        if opts.get("seller_id"):  # API.md L19: an optional, not secret, header
            self.auth = Headers(AUTH_HEADERS, {"idSeller": str(opts["seller_id"])})  # type: ignore[misc]
        super().__init__(name, base_url, opts, http, sleep=sleep, clock=clock, page_size=PAGE_SIZE,
                         order_statuses=order_statuses)
        self.business_unit = str(opts.get("business_unit") or "NS").upper()
        self.shape = str(opts.get("status_body") or "flat")
        if self.shape not in wire.BODY_SHAPES:
            raise PermanentError(f"status_body: {self.shape!r} is not one of {', '.join(wire.BODY_SHAPES)}",
                                 code="bad_config")
        self.first_page = int(opts.get("first_page") or 0)
        if self.first_page not in (0, 1):
            raise PermanentError("first_page: 0 or 1", code="bad_config")
        self.lookback = timedelta(days=max(0, int(opts.get("lookback_days", 7) or 0)))
        self.orders_since = _moment(opts.get("orders_since"), "orders_since")
        self.department = opts.get("department")
        self.department_map = {str(k): str(v) for k, v in (opts.get("department_map") or {}).items()}
        self.product_type = opts.get("product_type")
        pattern = opts.get("product_id_pattern")
        self.product_id_re = re.compile(str(pattern)) if pattern else None
        self.payment_method = str(opts["payment_method"]) if opts.get("payment_method") else None
        reason = opts.get("cancellation_reason")
        self.cancellation_reason = int(reason) if reason is not None else None
        self._customers: dict[str, ChannelCustomer] = {}
        self._walk: Iterator[tuple[list[Any], str | None]] | None = None
        self._ahead: deque[tuple[list[Any], str | None]] = deque()

    def check(self) -> None:
        """The cheapest authenticated call: one order of the list (API.md L73)."""
        resp = self.client.get("/orders", params={"page": self.first_page, "size": 1})
        if resp.status != 200:
            raise wire.refused(self.client, "GET /orders", resp)

    # -- orders in ---------------------------------------------------------------------------------
    def pull(self, entity: str, cursor: str | None, filters: Mapping[str, Any] | None = None) -> Iterator[Page]:
        """Orders: the shippings of the polled orders; channel-customers: the buyers of those read in this pull."""
        if entity == "channel-customers":
            # asked while the engine holds an orders page: read the rest of the poll now, so the buyers
            # of later pages are known too
            if self._walk is not None:
                self._ahead.extend(self._walk)
            yield Page(list(self._customers.values()), None)
            return
        if entity != "orders":
            raise ValueError(f"{self.name} has no {entity} feed")
        self._ahead, self._walk = deque(), self._poll()
        try:
            while True:
                if self._ahead:
                    records, next_cursor = self._ahead.popleft()
                else:
                    step = next(self._walk, None)
                    if step is None:
                        return
                    records, next_cursor = step
                yield Page(records, next_cursor)
        finally:
            self._walk, self._ahead = None, deque()

    def _poll(self) -> Iterator[tuple[list[Any], str | None]]:
        """Every approved shipping (API.md L97, L103), and the cancellations of the last `lookback_days`.

        Approved orders leave that status once invoiced, so reading them all is reading the work
        waiting (bounded by `orders_since` if set); cancellations pile up forever, so only the recent
        ones are read. No cursor is kept: every record read again is one the journal already holds.
        """
        recent = self.clock() - self.lookback
        for status in dict.fromkeys([*self.importable, *self.capabilities.cancelled_statuses]):
            since = self.orders_since if status not in self.capabilities.cancelled_statuses else \
                max(recent, self.orders_since or recent)
            params: tuple[tuple[str, str], ...] = (("expand", ORDER_EXPAND), ("orderStatus", status))
            if since is not None:
                params += (("orderStartDate", time_str(since) or ""),)
            pager = PageNumber(param="page", size_param="size", first=self.first_page, items="items", params=params)
            for items, _ in pager.pages(self, Feed("/orders", pager), "orders", None):
                records: list[Any] = []
                for item in items:
                    records += wire.parse_shippings(item, self.business_unit, self.payment_method, self._customers)
                if records:
                    yield records, None

    # -- writes ------------------------------------------------------------------------------------
    def prepare(self, entity: str, record: Any) -> Outgoing:
        """Map one model record (or an engine dict for acks and links) to what is sent to Netshoes."""
        if entity == "products":
            return Outgoing(wire.required(record.code, "code"), self._product_out(record))
        if entity == "prices":
            return Outgoing(wire.required(record.code, "code"), wire.price_out(record, self.clock()))
        if entity == "stock":
            return Outgoing(wire.required(record.code, "code"), wire.stock_out(record))
        if entity == "order-events":
            return wire.event_out(record, self.shape, self.cancellation_reason)
        if entity == "order-acks":
            return Outgoing(wire.required(record.get("order_id"), "order_id"),
                            {"backoffice_number": str(record.get("backoffice_number") or "")})
        if entity == "customer-links":
            return Outgoing(wire.required(record.get("remote_id"), "remote_id"), {"code": str(record.get("code"))})
        raise ValueError(f"{self.name} cannot take {entity}")

    def _product_out(self, p: Any) -> dict[str, Any]:
        department = self.department_map.get(p.group_code or "", self.department)
        if not department:
            raise MappingError("unmapped_department", f"group {p.group_code!r} has no Netshoes department: add it "
                               "to department_map or set department")
        if not self.product_type:
            raise MappingError("missing_field", "set the channel's product_type (a Netshoes product type code)")
        product_id = p.code
        if self.product_id_re is not None:
            match = self.product_id_re.search(p.code)
            if match and match.groups() and match.group(1):
                product_id = match.group(1)
        return wire.product_out(p, product_id=product_id, department=str(department),
                                product_type=str(self.product_type))

    def push(self, entity: str, batch: Sequence[Outgoing]) -> list[PushResult]:
        """One result per record; a record refused (4xx) is that record's problem, not the batch's."""
        if entity == "products":
            return self._push_products(batch)
        handlers: dict[str, Callable[[Outgoing], PushResult]] = {
            "prices": self._push_price, "stock": self._push_stock, "order-events": self._push_event,
            # no acknowledge call (API.md L104), and Netshoes keeps no back office customer code
            "order-acks": lambda out: PushResult(out.key, "unchanged"),
            "customer-links": lambda out: PushResult(out.key, "unchanged"),
        }
        return push_each(self.name, entity, batch, handlers)

    def _rejection(self, key: str, resp: HttpResponse, what: str) -> PushResult:
        if not 400 <= resp.status < 500 or resp.status in (401, 403):
            raise wire.refused(self.client, what, resp)
        code = {404: "not_found", 409: "conflict"}.get(resp.status) or wire.error_type(resp) or f"http_{resp.status}"
        return PushResult(key, "rejected", reason_code=code, reason=f"{what}: {wire.error_text(resp, self.client)}")

    def _json(self, resp: HttpResponse, what: str) -> Any:
        """A 200's body; one that is not JSON fails the call (retried next run), naming what it was."""
        try:
            return resp.json()
        except TransientError as exc:
            raise TransientError(self.client.redact(f"{self.name}: {what}: {exc}"), status=resp.status,
                                 code="bad_response") from None

    # products: the family first, then each SKU, then its status on this business unit
    def _push_products(self, batch: Sequence[Outgoing]) -> list[PushResult]:
        results: dict[str, PushResult] = {}
        families: dict[str, list[Outgoing]] = {}
        for out in batch:
            families.setdefault(out.payload["productId"], []).append(out)
        for product_id, members in families.items():
            for out in members:
                if out.key not in results:
                    results[out.key] = push_one(out, lambda o, f=product_id, m=members: self._push_sku(f, o, m,
                                                                                                      results))
        return [results[out.key] for out in batch]

    def _push_sku(self, product_id: str, out: Outgoing, family: list[Outgoing],
                  done: dict[str, PushResult]) -> PushResult:
        path = f"/products/{quote(product_id, safe='')}"
        resp = self.client.get(path)
        if resp.status == 404:  # a new product: the whole family of this batch in one call (API.md L48)
            members = [o for o in family if o.key not in done]
            body = {"productId": product_id, **out.payload["product"], "attributes": [],
                    "skus": [o.payload["sku"] for o in members]}
            created = self.client.post("/products", json=body, idempotent=True)  # the id is ours: a repeat is a 409
            if created.status not in (200, 201, 409):
                return self._rejection(out.key, created, "POST /products")
            if created.status != 409:
                mine = self._set_status(out, "created")
                for other in members:
                    if other is not out:
                        done[other.key] = push_one(other, lambda o: self._set_status(o, "created"))
                return mine
            resp = self.client.get(path)
        if resp.status != 200:
            raise wire.refused(self.client, f"GET {path}", resp)
        held = self._json(resp, "the product")
        held = held if isinstance(held, dict) else {}
        status = "unchanged"
        want = out.payload["product"]
        if any(held.get(k) != v for k, v in want.items()):
            patched = self.client.request("PATCH", path, json={"productId": product_id, **want})
            if patched.status not in (200, 204):
                return self._rejection(out.key, patched, f"PATCH {path}")
            status = "updated"
        skus = {str(s.get("sku")): s for s in held.get("skus") or [] if isinstance(s, dict)}
        sku = out.payload["sku"]
        mine = skus.get(out.key)
        if mine is None:
            added = self.client.post(f"{path}/skus", json=sku, idempotent=True)
            if added.status not in (200, 201, 409):
                return self._rejection(out.key, added, f"POST {path}/skus")
            status = "created"
        elif any(mine.get(k) != v for k, v in sku.items()):
            sku_path = f"{path}/skus/{quote(out.key, safe='')}"
            put = self.client.put(sku_path, json=sku)
            if put.status not in (200, 204):
                return self._rejection(out.key, put, f"PUT {sku_path}")
            status = "updated"
        return self._set_status(out, status)

    def _set_status(self, out: Outgoing, status: str) -> PushResult:
        """Enabled or disabled on this channel's business unit, as the product is active (API.md L45)."""
        path = f"/skus/{quote(out.key, safe='')}/bus/{quote(self.business_unit, safe='')}/status"
        active = bool(out.payload["active"])
        if status == "unchanged":  # nothing else changed: write the status only if it is not as wanted
            held = self.client.get(path)
            body = self._json(held, "the status") if held.status == 200 else None
            if isinstance(body, dict) and body.get("active") is active:
                return PushResult(out.key, status, remote_id=out.payload["productId"])
        resp = self.client.put(path, json={"active": active})
        if resp.status not in (200, 204):
            return self._rejection(out.key, resp, f"PUT {path}")
        status = "updated" if status == "unchanged" else status
        return PushResult(out.key, status, remote_id=out.payload["productId"])

    # prices and schedules
    def _push_price(self, out: Outgoing) -> PushResult:
        sku = quote(out.key, safe="")
        resp = self.client.put(f"/skus/{sku}/prices", json={"sku": out.key, "price": out.payload["price"]})
        if resp.status == 404:
            return _missing_sku(out.key)
        if resp.status not in (200, 204):
            return self._rejection(out.key, resp, f"PUT /skus/{out.key}/prices")
        listed = self.client.get(f"/skus/{sku}/priceSchedules")
        if listed.status != 200:
            raise wire.refused(self.client, f"GET /skus/{out.key}/priceSchedules", listed)
        body = self._json(listed, "the price schedules")
        held = body.get("items") if isinstance(body, dict) else body
        held = [s for s in held or [] if isinstance(s, dict)] if isinstance(held, list) else []
        have = {wire.schedule_key(s) for s in held}
        wanted = {wire.schedule_key(s): s for s in out.payload["schedules"]}
        for key, schedule in wanted.items():
            if key in have:
                continue  # POST is not known to be idempotent (API.md L141): never twice
            posted = self.client.post(f"/skus/{sku}/priceSchedules", json={"sku": out.key, **schedule},
                                      idempotent=False)
            if posted.status not in (200, 201):
                return self._rejection(out.key, posted, f"POST /skus/{out.key}/priceSchedules")
        now = self.clock()
        stale = [k for k in have - set(wanted) if k[3] is None or k[3] > now]
        if stale:  # no call deletes or edits a schedule (API.md L59): people must, in the seller portal
            spans = ", ".join(f"{k[1]} from {time_str(k[2])} to {time_str(k[3])}" for k in sorted(
                stale, key=lambda k: (k[2] or OPEN_FROM)))[:400]
            return PushResult(out.key, "rejected", reason_code="stale_schedule", reason=(
                f"the base price and new schedules were sent, but Netshoes still holds schedule(s) the back office no "
                f"longer has ({spans}); the API cannot delete them: remove them in the seller portal"))
        return PushResult(out.key, "updated")

    def _push_stock(self, out: Outgoing) -> PushResult:
        path = f"/skus/{quote(out.key, safe='')}/stocks"
        resp = self.client.put(path, json={"country": "BR", "available": out.payload["available"]})
        if resp.status == 404:
            return _missing_sku(out.key)
        if resp.status not in (200, 204):
            return self._rejection(out.key, resp, f"PUT {path}")
        return PushResult(out.key, "updated")

    # fulfilment: one status PUT per step of a shipping, after reading where the shipping stands
    def _push_event(self, out: Outgoing) -> PushResult:
        number, code = str(out.meta["order_id"]), str(out.meta["shipping"])
        base = f"/orders/{quote(number, safe='')}/shippings/{quote(code, safe='')}"
        resp = self.client.get(base)
        if resp.status == 404:
            return PushResult(out.key, "rejected", reason_code="not_found",
                              reason=f"Netshoes has no shipping {code} of order {number}")
        if resp.status != 200:
            raise wire.refused(self.client, f"GET {base}", resp)
        shipping = self._json(resp, "the shipping")
        shipping = shipping if isinstance(shipping, dict) else {}
        now = str(shipping.get("status") or "").strip().lower()
        step, data = out.payload["step"], out.payload["data"]
        if step == wire.CANCELED:
            if now == wire.CANCELED:
                return PushResult(out.key, "exists")
            if now != "approved":  # after invoicing: UNKNOWN (API.md L132-L133); never tried
                return PushResult(out.key, "rejected", reason_code="not_cancellable",
                                  reason=f"the shipping is {now or 'in an unknown status'}; Netshoes documents "
                                         "cancelling only from approved: cancel it in the seller portal")
        elif now == wire.CANCELED:
            return PushResult(out.key, "rejected", reason_code="cancelled", reason="the shipping is cancelled")
        elif now in wire.STEPS and wire.STEPS.index(now) >= wire.STEPS.index(step):
            if wire.same_data(data, wire.held_data(step, shipping)):
                return PushResult(out.key, "exists")
            if now != step:
                return PushResult(out.key, "rejected", reason_code="not_correctable", reason=(
                    f"the shipping is already {now}: a corrected {step} cannot be sent any more"))
        elif now not in wire.STEPS or wire.STEPS.index(now) != wire.STEPS.index(step) - 1:
            return PushResult(out.key, "rejected", reason_code="out_of_order",
                              reason=f"the shipping is {now or 'in an unknown status'}; {step} comes after "
                                     f"{wire.STEPS[wire.STEPS.index(step) - 1]}")
        put = self.client.put(f"{base}/status/{step}", json=out.payload["body"])
        if put.status in (200, 201, 204):
            return PushResult(out.key, "created")
        return self._rejection(out.key, put, f"PUT {base}/status/{step}")


def _missing_sku(key: str) -> PushResult:
    return PushResult(key, "rejected", reason_code="unknown_sku",
                      reason=f"SKU {key} is not in the Netshoes catalogue (its product has not been sent yet)")


def _moment(value: Any, name: str) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        return parse_time(str(value), name)
    except MappingError as exc:
        raise PermanentError(f"{name}: {exc.reason}", code="bad_config") from None


__all__ = ["NetshoesConnector"]
