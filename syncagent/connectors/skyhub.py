"""SkyHub (Americanas marketplace hub): catalogue, prices and stock out; orders in from its queue; status back.

Reference: ../shared/contracts/skyhub/API.md (cited by line). Why it is shaped like this:

* three fixed headers authenticate every call (L14): the `Headers` auth kind of the REST base;
* the order queue (L99-107) hands over one order per GET until it is deleted. The engine reads
  the pull lazily: it creates the order in the back office and acknowledges it (the DELETE) before
  it asks for the next page, so an order leaves the queue only once the back office has it. An
  order the engine does not import (unpaid, cancelled, another status) leaves the queue once the
  engine has recorded its page (L106: unpaid orders are consumed too); one that waits for the back
  office (a failure, a quarantine) stays and comes back: a pull that meets an order it already
  handed over ends there, so a queue answering its head again never loops;
* SkyHub limits each endpoint + method (L36-49): one client at 9 requests a second for everything,
  and one at 1 a second for ``GET /orders/{code}``, the read before each status update (L188);
* prices carry no dates (L81-82): the price in force is sent, and sent again at each boundary.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import quote

from syncagent.connectors.base import Capabilities, ConnectorState, OptionSpec, Outgoing, PushResult
from syncagent.connectors.common import http_settings, parse_items, push_each
from syncagent.connectors.rest import AuthKind, Feed, Headers, PageNumber, Queue, RestConnector
from syncagent.connectors.skyhub_sac import REPLY_CALLS, SkyHubSac
from syncagent.connectors.skyhub_wire import (
    EVENT_TYPES,
    PROGRESS,
    body_of_event,
    event_out,
    parse_customer,
    parse_order,
    price_out,
    product_out,
    stock_out,
)
from syncagent.errors import MappingError, PermanentError, TransientError
from syncagent.http import HttpClient, HttpResponse, HttpSettings
from syncagent.model import ChannelCustomer, Order, Page, utcnow

BASE_URL = "https://api.skyhub.com.br"  # API.md L13
GENERAL_RATE = 9.0  # API.md L42-48: requests a second per endpoint + method
ORDERS_GET_RATE = 0.95  # API.md L46: GET /orders/{code} once a second; a little under, for the clocks' jitter
OWNED_LOGISTICS = frozenset({"americanas entrega", "b2w entrega"})
MAX_READS = 500  # queue reads of one pull: a queue refilling as fast as it is read must not hold the step
CATALOGUE = ("products", "prices", "stock")
MAPPERS: dict[str, Callable[[Any, Callable[[], datetime]], dict[str, Any]]] = {
    "products": product_out, "prices": price_out, "stock": stock_out}


class SkyHubConnector(SkyHubSac, RestConnector):
    """Writes catalogue, prices and stock to SkyHub and takes its paid orders off the order queue; its customer
    service (SAC) comes in as tickets and the back office's answers go back (`skyhub_sac`)."""

    type_name: ClassVar[str] = "skyhub"
    options: ClassVar[dict[str, OptionSpec]] = {
        "email": OptionSpec("str", required=True, help="the SkyHub account's e-mail (X-User-Email)"),
        "api_key": OptionSpec("str", required=True, secret=True, help="the account's integration token (X-Api-Key)"),
        "account_manager_key": OptionSpec("str", required=True, secret=True,
                                          help="the integrating platform's key (X-Accountmanager-Key)"),
        "payment_map": OptionSpec("dict", help="SkyHub payment method -> back office payment method code"),
        "status_codes": OptionSpec("dict", help="the account's own status code for invoiced, shipped, delivered, "
                                   "cancelled (default: order_invoiced, order_shipped, complete, order_canceled)"),
        "reply_call": OptionSpec("str", default="none", choices=REPLY_CALLS,
                                 help="the SAC reply call, UNKNOWN in the reference: none (answers wait in "
                                      "quarantine), chats or interactions (docs/connectors/sac.md)"),
    }
    capabilities: ClassVar[Capabilities] = Capabilities(
        push=frozenset({*CATALOGUE, "order-acks", "order-events", "customer-links", "ticket-answers"}),
        pull=frozenset({"orders", "channel-customers", "tickets", "tracking"}), max_batch=50,
        importable_statuses=("approved",), cancelled_statuses=("canceled",),
        stable=frozenset({"products"}), listing=frozenset({"products"}), order_queue=True,
        # API.md L105: with B2W Entrega (Americanas Entrega) the marketplace ships and sets shipped/delivered
        owned_tracking=OWNED_LOGISTICS,
    )
    auth: ClassVar[AuthKind] = Headers(  # API.md L14-15: three headers on every call
        {"X-User-Email": "email", "X-Api-Key": "api_key", "X-Accountmanager-Key": "account_manager_key"},
        fixed={"Accept": "application/json"})
    check_path: ClassVar[str] = "/products"
    max_page: ClassVar[int] = 100
    # API.md L17, L61: page + per_page, the list under "products"; L99: one queued order per GET
    lists: ClassVar[Mapping[str, Feed]] = {
        "products": Feed("/products", PageNumber(size_param="per_page", items="products"), key="sku", limit=100)}
    # API.md L100-101: what an empty queue answers is UNKNOWN: 204, 404 or an empty body are all "empty"
    feeds: ClassVar[Mapping[str, Feed]] = {
        "orders": Feed("/queues/orders", Queue(key="code", max_items=MAX_READS), key="code")}

    def __init__(self, name: str, base_url: str | None, options: Mapping[str, Any], http: HttpSettings, *,
                 sleep: Callable[[float], None] | None = None, clock: Callable[[], datetime] = utcnow,
                 order_statuses: Sequence[str] | None = None, shadow: bool = False) -> None:
        if http.rate_per_second is None or http.rate_per_second > GENERAL_RATE:
            http = dataclasses.replace(http, rate_per_second=GENERAL_RATE, rate_burst=1)
        super().__init__(name, base_url or BASE_URL, options, http, sleep=sleep, clock=clock, page_size=100)
        self.orders = HttpClient(base_url or BASE_URL, dataclasses.replace(
            http, rate_per_second=min(ORDERS_GET_RATE, http.rate_per_second or ORDERS_GET_RATE), rate_burst=1),
            name=name, auth=self.client.auth, secrets=self.secrets, sleep=sleep)
        self.payment_map = {str(k): str(v) for k, v in (options.get("payment_map") or {}).items()}
        self.status_codes = {str(k): str(v) for k, v in (options.get("status_codes") or {}).items()}
        self.importable = tuple(order_statuses or self.capabilities.importable_statuses)
        self.shadow = shadow
        self.reply_call = str(options.get("reply_call") or "none")
        self._buyers: dict[str, ChannelCustomer] = {}  # read with orders, not yet handed to the engine
        self._acked: set[str] = set()  # orders deleted from the queue by an acknowledgement, this pull

    @classmethod
    def from_config(cls, cfg: Any, *, sleep: Callable[[float], None] | None = None,
                    clock: Callable[[], datetime] = utcnow, state: ConnectorState | None = None) -> SkyHubConnector:
        flow = cfg.flow("orders") if hasattr(cfg, "flow") else None
        statuses = flow.options.get("statuses") if flow is not None else None
        conn = cls(cfg.name, cfg.base_url, cfg.options, http_settings(cfg.http), sleep=sleep, clock=clock,
                   order_statuses=statuses, shadow=bool(getattr(cfg, "shadow", False)))
        if state is not None:
            conn.state = state
        return conn

    def check(self) -> None:
        resp = self.client.get(self.check_path, params={"page": 1, "per_page": 1})
        if resp.status != 200:
            raise _refused(self.client, f"GET {self.check_path}", resp)

    def http_clients(self) -> tuple[HttpClient, ...]:
        return (self.client, self.orders)

    def close(self) -> None:
        self.client.close()
        self.orders.close()

    # -- orders: the queue -------------------------------------------------------------------------
    def pull(self, entity: str, cursor: str | None, filters: Mapping[str, Any] | None = None) -> Iterator[Page]:
        """One order per page, straight from the queue; the queue has no cursor, so every page carries None."""
        if entity == "channel-customers":
            buyers, self._buyers = list(self._buyers.values()), {}
            yield Page(buyers, None)
            return
        if entity == "tickets":  # the SAC's forward-only cursor (skyhub_sac)
            yield from self.sac_tickets(cursor)
            return
        if entity == "tracking":  # shipments of the marketplace's own logistics: the order's status says
            yield Page(self.sac_tracking((filters or {}).get("shipments") or (), self._order), None)
            return
        if entity != "orders":
            raise ValueError(f"{self.name} has no {entity} feed")
        feed = self.feeds["orders"]
        for items, _ in feed.paging.pages(self, feed, entity, None):
            records = parse_items(items, self._parse, feed.key)
            codes = [str(i.get("code")) if isinstance(i, dict) else "" for i in items]
            self._acked.difference_update(codes)
            yield Page(records, None)
            # the engine recorded the page: an order it does not import leaves the queue now (API.md L106)
            for code, record in zip(codes, records, strict=True):
                if code not in self._acked and isinstance(record, Order) and record.status not in self.importable \
                        and not self.shadow:
                    self._delete(code)

    def _parse(self, data: dict[str, Any]) -> Order:
        order = parse_order(data, self.payment_map)
        buyer = parse_customer(data)
        if buyer is not None:
            self._buyers[buyer.remote_id] = buyer
        return order

    def _delete(self, code: str) -> str:
        """DELETE /queues/orders/{code} (API.md L102); not in the queue (404) is done already (L186)."""
        path = f"/queues/orders/{quote(code, safe='')}"
        resp = self.client.request("DELETE", path)
        if resp.status in (200, 204):
            return "updated"
        if resp.status == 404:
            return "exists"
        raise _refused(self.client, f"DELETE {path}", resp)

    # -- writes --------------------------------------------------------------------------------------
    def prepare(self, entity: str, record: Any) -> Outgoing:
        mapper = MAPPERS.get(entity)
        if mapper is not None:
            return Outgoing(_required(record.code, "code"), mapper(record, self.clock))
        if entity == "order-events":
            payload = event_out(record, self.status_codes)
            return Outgoing(_required(record.id, "id"), payload,
                            {"order_id": _required(record.remote_order_id, "order id")})
        if entity == "order-acks":
            number = _required(str(record.get("backoffice_number") or ""), "backoffice_number")
            return Outgoing(_required(record.get("order_id"), "order_id"), {"backoffice_number": number})
        if entity == "customer-links":
            return Outgoing(_required(record.get("remote_id"), "remote_id"), {"code": str(record.get("code"))})
        if entity == "ticket-answers":
            return self.sac_prepare(record)
        raise ValueError(f"{self.name} cannot take {entity}")

    def push(self, entity: str, batch: Sequence[Outgoing]) -> list[PushResult]:
        """One call per record (SkyHub has no batch writes); a record refused is a result, not an exception."""
        handlers: dict[str, Callable[[Outgoing], PushResult]] = {
            "products": self._push_product, "prices": self._push_sku_fields, "stock": self._push_sku_fields,
            "order-acks": self._push_ack, "order-events": self._push_event,
            "customer-links": lambda out: PushResult(out.key, "unchanged"),  # SkyHub keeps no back office code
            "ticket-answers": self.sac_push,
        }
        return push_each(self.name, entity, batch, handlers)

    def _push_product(self, out: Outgoing) -> PushResult:
        """Update in place (a partial PUT, API.md L60); a product SkyHub does not have is created (L59)."""
        sku = out.key
        path = f"/products/{quote(sku, safe='')}"
        fields = {k: v for k, v in out.payload.items() if k != "sku"}
        resp = self.client.put(path, json={"product": fields})
        if resp.status in (200, 204):
            return PushResult(sku, "updated")
        if resp.status != 404:
            return _rejection(self.client, sku, resp, f"PUT {path}")
        created = self.client.post("/products", json={"product": out.payload}, idempotent=True)
        if created.status in (200, 201):
            return PushResult(sku, "created")
        if created.status == 422:  # a retried POST whose first attempt was applied: it is there now
            again = self.client.put(path, json={"product": fields})
            if again.status in (200, 204):
                return PushResult(sku, "created")
        return _rejection(self.client, sku, created, "POST /products")

    def _push_sku_fields(self, out: Outgoing) -> PushResult:
        """Price or stock of a product's SKU (API.md L76, L87), else of a variation SKU of that name."""
        sku = out.key
        path = f"/products/{quote(sku, safe='')}"
        resp = self.client.put(path, json={"product": out.payload})
        if resp.status == 404:
            path = f"/variations/{quote(sku, safe='')}"
            resp = self.client.put(path, json={"variation": out.payload})
            if resp.status == 404:
                return PushResult(sku, "rejected", reason_code="unknown_sku",
                                  reason=f"SKU {sku} is not on SkyHub (its product has not been sent yet)")
        if resp.status in (200, 204):
            return PushResult(sku, "updated")
        return _rejection(self.client, sku, resp, f"PUT {path}")

    def _push_ack(self, out: Outgoing) -> PushResult:
        """The back office has the order: take it off the queue (the DELETE is SkyHub's acknowledgement)."""
        status = self._delete(out.key)
        self._acked.add(out.key)
        return PushResult(out.key, status)

    def _push_event(self, out: Outgoing) -> PushResult:
        """Read the order first (API.md L188): a move it made already is not sent again, one too early waits."""
        code = str(out.meta.get("order_id") or "")
        kind = out.payload["type"]
        order = self._order(code)
        if order is None:
            return PushResult(out.key, "rejected", reason_code="not_found", reason=f"SkyHub has no order {code}")
        now = str((order.get("status") or {}).get("type") or "").upper()
        want = EVENT_TYPES[kind]
        if now == want:
            return self._same_again(out, order)
        if now == "CANCELED":
            return PushResult(out.key, "rejected", reason_code="cancelled", reason=f"order {code} is cancelled")
        if kind != "cancelled":
            if PROGRESS.get(now, 0) > PROGRESS[want]:
                return PushResult(out.key, "exists")  # SkyHub is past it already
            if PROGRESS.get(now, 0) < PROGRESS[want] - 1:
                return PushResult(out.key, "rejected", reason_code="out_of_order",
                                  reason=f"order {code} is {now}: an earlier move has not reached SkyHub yet")
        action = {"invoiced": "invoice", "shipped": "shipments", "delivered": "delivery", "cancelled": "cancel"}[kind]
        path = f"/orders/{quote(code, safe='')}/{action}"
        resp = self.client.post(path, json=body_of_event(out.payload, order), idempotent=True)
        if resp.status in (200, 201, 204):
            return PushResult(out.key, "created")
        if resp.status == 422:  # a retried POST whose first attempt was applied (its answer lost) meets itself
            after = self._order(code)
            if after is not None and str((after.get("status") or {}).get("type") or "").upper() == want:
                return PushResult(out.key, "created")
        return _rejection(self.client, out.key, resp, f"POST {path}")

    def _same_again(self, out: Outgoing, order: Mapping[str, Any]) -> PushResult:
        """The order is in the event's status already: the same data is done; other data cannot be changed."""
        kind = out.payload["type"]
        if kind == "invoiced":
            keys = {i.get("key") for i in order.get("invoices") or [] if isinstance(i, dict)}
            if out.payload["invoice"]["key"] not in keys:
                return PushResult(out.key, "rejected", reason_code="not_correctable", reason=(
                    "SkyHub holds the order as invoiced with another NF-e key and has no call to change it "
                    "(API.md L142-152): correct it on the SkyHub panel"))
        elif kind == "shipped":
            codes = {((s.get("track") or {}).get("code")) for s in order.get("shipments") or [] if isinstance(s, dict)}
            if out.payload["shipment"]["track"]["code"] not in codes:
                return PushResult(out.key, "rejected", reason_code="not_correctable", reason=(
                    "SkyHub holds the order as shipped with another tracking code and has no call to change it "
                    "(API.md L157-168): correct it on the SkyHub panel"))
        return PushResult(out.key, "exists")

    def _order(self, code: str) -> dict[str, Any] | None:
        """GET /orders/{code} (API.md L110), at most once a second (L46)."""
        path = f"/orders/{quote(code, safe='')}"
        resp = self.orders.get(path)
        if resp.status == 404:
            return None
        if resp.status != 200:
            raise _refused(self.orders, f"GET {path}", resp)
        body = _json(self.orders, resp, f"GET {path}")
        if not isinstance(body, dict):
            raise TransientError(f"{self.name}: GET {path}: the answer is not an order", code="bad_response")
        return body


def _required(value: Any, name: str) -> str:
    if value is None or not str(value).strip():
        raise MappingError("missing_field", f"{name} is required")
    return str(value)


def _json(client: HttpClient, resp: HttpResponse, what: str) -> Any:
    try:
        return resp.json()
    except TransientError as exc:
        raise TransientError(client.redact(f"{client.name}: {what}: {exc}"), status=resp.status,
                             code="bad_response") from None


def _error(resp: HttpResponse) -> str:
    """API.md L34: {"error": "<message>"}, one string; anything else: the status and a short excerpt."""
    try:
        body = resp.json()
    except TransientError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return body["error"][:300]
    return resp.content[:200].decode("utf-8", "replace").strip() or "no message"


def _refused(client: HttpClient, what: str, resp: HttpResponse) -> Exception:
    """A whole call refused, with SkyHub's message: a 4xx will not heal by retrying, anything else might."""
    text = client.redact(f"{client.name}: {what} answered {resp.status}: {_error(resp)}")
    if 400 <= resp.status < 500:
        return PermanentError(text, status=resp.status, code=f"http_{resp.status}")
    return TransientError(text, status=resp.status, code=f"http_{resp.status}")


def _rejection(client: HttpClient, key: str, resp: HttpResponse, what: str) -> PushResult:
    """One record refused (4xx but auth): quarantine it with SkyHub's message; anything else fails the step."""
    if not 400 <= resp.status < 500 or resp.status in (401, 403):
        raise _refused(client, what, resp)
    code = {404: "not_found", 422: "refused"}.get(resp.status, f"http_{resp.status}")
    return PushResult(key, "rejected", reason_code=code, reason=client.redact(f"{what}: {resp.status}: {_error(resp)}"))


__all__ = ["PageNumber", "SkyHubConnector"]
