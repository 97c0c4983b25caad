"""Plugg.to, the hub that relays to many marketplaces: catalogue, prices and stock out by SKU; approved orders
in; fulfilment (NF-e, tracking, delivery) back.

Reference: ../shared/contracts/pluggto/API.md. Why it is shaped like this:

* every write is addressed by our SKU (``PUT /skus/{sku}`` is an upsert, a variation's SKU included), so
  nothing is created twice and a repeat is harmless; stock goes with ``action: update`` (absolute),
  never the deltas;
* orders are read by page, filtered on the importable and cancelled statuses, and after the first
  cycle on the day of the last change seen (``modified=<day>to<day>``): the journal makes a repeat
  harmless, and an order approved later changes its ``modified``, so it is read then, once;
* the acknowledgement stores the back office number in the order's ``external`` field;
* fulfilment is one ``PUT /orders/{id}`` per event with ``status`` and our shipment (its Plugg.to
  ``id`` when it has one, so it is updated, never duplicated); the order is read first: an event it
  already holds is not sent again, a correction is, and a step whose earlier data Plugg.to lacks is
  held back (``out_of_order``) until the earlier event arrives — unless the event carries that data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any, ClassVar
from urllib.parse import quote

from syncagent.connectors.base import Capabilities, OptionSpec, Outgoing, PushResult
from syncagent.connectors.common import body_of, parse_items, reason, refused
from syncagent.connectors.pluggto_orders import is_number, order_key, parse_customer, parse_order, unwrap
from syncagent.connectors.rest import MAX_PAGES, AuthKind, Feed, PasswordGrant, RestConnector
from syncagent.errors import MappingError, TransientError
from syncagent.http import HttpResponse, HttpSettings
from syncagent.model import (
    ChannelCustomer,
    Order,
    OrderEvent,
    Page,
    Price,
    Product,
    StockLevel,
    time_str,
)

CANCELLED = ("canceled", "cancelled")  # API.md L128-129: both spellings read
STEPS = {"approved": 0, "invoiced": 1, "shipped": 2, "delivered": 3}
NEEDS = {"shipped": ("nfe_key",), "delivered": ("nfe_key", "track_code")}  # what a step needs Plugg.to to hold
EVENT_STATUS = {"invoiced": "invoiced", "shipped": "shipped", "delivered": "delivered", "cancelled": "canceled"}
# Plugg.to payment types / methods to the back office's payment method codes; `payment_map` overrides them
PAGE = 100  # API.md L53: limit=100
@dataclass(frozen=True, slots=True)
class OrderPages:
    """API.md L51-57: ``?status=a,b&limit&page=N``, or ``next`` when the answer carries one; after the first
    cycle only the orders changed since the day of the last change seen (``modified=<day>to<day>``).

    Only the last page carries the cursor (the latest ``modified`` day): pages are not sorted by it.
    """

    def pages(self, conn: RestConnector, feed: Feed, entity: str, cursor: str | None
              ) -> Iterator[tuple[list[Any], str | None]]:
        statuses = ",".join(dict.fromkeys([*conn.importable, *CANCELLED]))
        size = feed.limit or conn.page_size
        params: dict[str, Any] = {"status": statuses, "limit": size}
        if cursor:
            until = (conn.clock() + timedelta(days=1)).strftime("%Y-%m-%d")
            params["modified"] = f"{cursor}to{max(until, cursor)}"
        latest = cursor
        page, after = 1, None
        for _ in range(MAX_PAGES):
            what = f"GET {feed.path}"
            resp = conn.client.get(feed.path, params={**params, **({"next": after} if after else {"page": page})})
            if resp.status != 200:
                raise refused(conn.client, what, resp)
            body = body_of(conn.client, what, resp, "result")
            items = list(body["result"])
            for item in items:
                modified = unwrap(item).get("modified")
                if isinstance(modified, str) and len(modified) >= 10 and (latest is None or modified[:10] > latest):
                    latest = modified[:10]
            nxt = body.get("next")
            after = nxt if isinstance(nxt, str) and nxt and nxt != after else None
            more = bool(items) and (len(items) >= size or after is not None)
            yield items, None if more else latest
            if not more:
                return
            page += 1
        raise TransientError(f"{conn.name}: GET {feed.path} did not end after {MAX_PAGES} pages", code="endless_listing")


class PluggtoConnector(RestConnector):
    """Writes catalogue, prices and stock to Plugg.to by SKU and reads its approved orders."""

    type_name: ClassVar[str] = "pluggto"
    options: ClassVar[dict[str, OptionSpec]] = {
        "client_id": OptionSpec("str", required=True, help="the app's client id (Plugg.to developer area)"),
        "client_secret": OptionSpec("str", required=True, secret=True, help="the app's client secret"),
        "api_user": OptionSpec("str", required=True, help="the seller's API user (Plugg.to: Configurações → API)"),
        "api_password": OptionSpec("str", required=True, secret=True, help="the seller's API password"),
        "payment_map": OptionSpec("dict", help="Plugg.to payment_type or payment_method -> back office payment "
                                  "method code"),
        "handling_time": OptionSpec("int", help="days to dispatch, sent with every product"),
    }
    capabilities: ClassVar[Capabilities] = Capabilities(
        push=frozenset({"products", "prices", "stock", "order-acks", "order-events", "customer-links"}),
        pull=frozenset({"orders", "channel-customers"}), max_batch=50,
        importable_statuses=("approved",), cancelled_statuses=CANCELLED, stable=frozenset({"products"}),
    )
    auth: ClassVar[AuthKind] = PasswordGrant("client_id", "client_secret", "api_user", "api_password")
    check_path: ClassVar[str] = "/orders"
    max_page: ClassVar[int] = PAGE
    feeds: ClassVar[Mapping[str, Feed]] = {}  # set at the end of the module, once the parser exists

    def __init__(self, name: str, base_url: str | None, options: Mapping[str, Any], http: HttpSettings,
                 **kwargs: Any) -> None:
        super().__init__(name, base_url, options, http, **kwargs)
        self.payment_map = {str(k): str(v) for k, v in (options.get("payment_map") or {}).items()}
        handling = options.get("handling_time")
        self.handling_time = int(handling) if handling is not None else None
        self._customers: dict[str, ChannelCustomer] = {}

    # -- reads ------------------------------------------------------------------------------------
    def pull(self, entity: str, cursor: str | None, filters: Mapping[str, Any] | None = None) -> Iterator[Page]:
        """Orders by page; the buyers of the orders read are the channel's customers (no customer feed)."""
        if entity == "channel-customers":
            yield Page(list(self._customers.values()), None)
            return
        feed = self.feeds.get(entity)
        if feed is None:
            raise ValueError(f"{self.name} has no {entity} feed")
        # every page is read before the first is handed over: the engine asks for the buyers once per step, when
        # the first order needs one, and they come with the orders (no customer feed): all of them are known then
        pages = [(parse_items(items, self._parse_order, order_key), next_cursor)
                 for items, next_cursor in feed.paging.pages(self, feed, entity, cursor)]
        for records, next_cursor in pages:
            yield Page(records, next_cursor)

    def _parse_order(self, item: dict[str, Any]) -> Order:
        data = unwrap(item)
        order = parse_order(data, self.payment_map)
        customer = parse_customer(data)
        if customer is not None:
            self._customers[customer.remote_id] = customer
        return order

    def _order_doc(self, order_id: str) -> dict[str, Any] | None:
        path = f"/orders/{quote(order_id, safe='')}"
        body = self.get_object(path, "an order")
        if body is None:
            return None
        order = body.get("Order")
        if not isinstance(order, dict):
            raise TransientError(f"{self.name}: GET {path}: the answer is not an order", code="bad_response")
        return order

    # -- writes -----------------------------------------------------------------------------------
    def prepare(self, entity: str, record: Any) -> Outgoing:
        """Map one model record (or an engine dict for acks) to what is sent to Plugg.to."""
        if entity == "order-events":
            return event_out(record)
        if entity == "order-acks":
            number = _required(str(record.get("backoffice_number") or ""), "backoffice_number")
            return Outgoing(_required(record.get("order_id"), "order_id"), {"external": number})
        if entity == "customer-links":
            return Outgoing(_required(record.get("remote_id"), "remote_id"), {"code": str(record.get("code"))})
        mapper = MAPPERS.get(entity)
        if mapper is None:
            raise ValueError(f"{self.name} cannot take {entity}")
        payload = mapper(self, record)
        return Outgoing(payload["sku"], payload)

    def push(self, entity: str, batch: Sequence[Outgoing]) -> list[PushResult]:
        """One call per record (Plugg.to has no batch writes); one result per record."""
        writers: dict[str, Callable[[Outgoing], PushResult]] = {
            "products": self._put_sku, "prices": self._put_sku, "stock": self._put_stock,
            "order-acks": self._ack, "order-events": self._event,
            "customer-links": lambda out: PushResult(out.key, "unchanged"),  # Plugg.to keeps no back office code
        }
        writer = writers.get(entity)
        if writer is None:
            raise ValueError(f"{self.name} cannot take {entity}")
        return [writer(out) for out in batch]

    def _put_sku(self, out: Outgoing) -> PushResult:
        path = f"/skus/{quote(out.key, safe='')}"
        resp = self.client.put(path, json=out.payload)  # an upsert by SKU: safe to repeat (API.md L159)
        if resp.status != 200:
            return self._rejection(out.key, resp, f"PUT {path}")
        body = resp.json()
        product = body.get("Product") if isinstance(body, dict) else None
        remote = str(product.get("id")) if isinstance(product, dict) and product.get("id") is not None else None
        return PushResult(out.key, "updated", remote_id=remote)

    def _put_stock(self, out: Outgoing) -> PushResult:
        path = f"/skus/{quote(out.key, safe='')}/stock"
        resp = self.client.put(path, json=out.payload)
        if resp.status == 404:
            return PushResult(out.key, "rejected", reason_code="unknown_sku",
                              reason=f"SKU {out.key} is not in Plugg.to (its product has not been sent yet)")
        if resp.status != 200:
            return self._rejection(out.key, resp, f"PUT {path}")
        return PushResult(out.key, "updated")

    def _ack(self, out: Outgoing) -> PushResult:
        """Our back office number in the order's `external` (API.md L110): last write wins, safe to repeat."""
        path = f"/orders/{quote(out.key, safe='')}"
        resp = self.client.put(path, json=out.payload)
        if resp.status != 200:
            return self._rejection(out.key, resp, f"PUT {path}")
        return PushResult(out.key, "updated")

    def _event(self, out: Outgoing) -> PushResult:
        order_id = str(out.meta.get("order_id") or "")
        order = self._order_doc(order_id)
        if order is None:
            return PushResult(out.key, "rejected", reason_code="not_found", reason=f"Plugg.to has no order {order_id}")
        status, current = out.payload["status"], str(order.get("status") or "")
        path = f"/orders/{quote(order_id, safe='')}"
        if status == "canceled":
            if current in CANCELLED:
                return PushResult(out.key, "exists")
            resp = self.client.put(path, json={"status": "canceled"})
            return PushResult(out.key, "created") if resp.status == 200 else self._rejection(out.key, resp, f"PUT {path}")
        if current in CANCELLED:
            return PushResult(out.key, "rejected", reason_code="cancelled",
                              reason=f"order {order_id} is cancelled in Plugg.to: it cannot be {status}")
        fields = out.payload["shipment"]
        shipments = [s for s in order.get("shipments") or [] if isinstance(s, dict)]
        ours = next((s for s in shipments if s.get("external") == fields.get("external")), None) or \
            (shipments[0] if shipments else None)
        held = {**(ours or {}), **fields}
        missing = [f for f in NEEDS.get(status, ()) if not held.get(f)]
        if missing:
            return PushResult(out.key, "rejected", reason_code="out_of_order",
                              reason=f"Plugg.to has no {', '.join(missing)} on the order yet: the earlier event first")
        now = STEPS.get(current, -1)
        if ours is not None and now >= STEPS[status] and all(ours.get(k) == v for k, v in fields.items()):
            return PushResult(out.key, "exists")  # Plugg.to holds this event as it is
        shipment = {**({"id": ours["id"]} if ours is not None and ours.get("id") else {}), **fields}
        # a correction of an earlier step never moves the order back (the status machine goes forward only)
        body = {"status": status if STEPS[status] >= now else current, "shipments": [shipment]}
        resp = self.client.put(path, json=body)
        if resp.status != 200:
            return self._rejection(out.key, resp, f"PUT {path}")
        return PushResult(out.key, "created")

    def _rejection(self, key: str, resp: HttpResponse, what: str) -> PushResult:
        """One record refused (4xx): quarantine it; a 401/403, 429 or 5xx fails the step instead."""
        if not 400 <= resp.status < 500 or resp.status in (401, 403, 429):
            raise refused(self.client, what, resp)
        code = "not_found" if resp.status == 404 else resp.error_code() or f"http_{resp.status}"
        return PushResult(key, "rejected", reason_code=code, reason=f"{what}: {reason(resp, self.client)}")


# -- model → wire ----------------------------------------------------------------------------------
def _required(value: Any, name: str) -> str:
    if value is None or not str(value).strip():
        raise MappingError("missing_field", f"{name} is required")
    return str(value)


def _number(amount: Decimal) -> float:
    return float(amount)


def product_out(conn: PluggtoConnector, p: Product) -> dict[str, Any]:
    """API.md L67-73: the SKU's own fields; an inactive product goes with quantity 0 (no deactivation field known)."""
    payload: dict[str, Any] = {"sku": _required(p.code, "code"), "name": _required(p.name, "name"),
                               "external": p.code, "brand": p.brand, "ean": p.barcode or None,
                               "ean_not_mandatory": not p.barcode}
    if p.group_code:
        payload["categories"] = [{"name": p.group_code}]
    dims = {k: v for k, v in (("weight", p.weight_kg), ("height", p.height_cm), ("width", p.width_cm),
                              ("length", p.length_cm)) if v}
    if dims:
        payload["dimension"] = {k: float(v) for k, v in dims.items() if is_number(v)}
    if conn.handling_time is not None:
        payload["handling_time"] = conn.handling_time
    if not p.active:
        payload["quantity"] = 0
    return payload


def price_out(conn: PluggtoConnector, p: Price) -> dict[str, Any]:
    """API.md L77, L82: list and sale price in force now (no promotion dates: sent when due)."""
    eff = p.effective(conn.clock())
    return {"sku": _required(p.code, "code"), "price": _number(eff.price),
            "special_price": _number(eff.promo_price if eff.promo_price is not None else eff.price)}


def stock_out(conn: PluggtoConnector, s: StockLevel) -> dict[str, Any]:
    """API.md L86-89: `update` sets the absolute quantity (the deltas are never used)."""
    return {"sku": _required(s.code, "code"), "action": "update", "quantity": max(0, int(s.available))}


MAPPERS: dict[str, Callable[[PluggtoConnector, Any], dict[str, Any]]] = {
    "products": product_out, "prices": price_out, "stock": stock_out,
}


def event_out(event: OrderEvent) -> Outgoing:
    """API.md L136-148: the status and our shipment's fields; a later event carries the earlier data it has."""
    fields: dict[str, Any] = {"external": _required(event.order_number, "order number")}
    invoice, shipment = event.invoice, event.shipment
    if event.type == "invoiced" and (invoice is None or not invoice.number):
        raise MappingError("missing_field", "an invoiced event needs the NF-e number and its 44-digit key")
    if event.type == "shipped" and (shipment is None or not shipment.carrier or not shipment.tracking_code):
        raise MappingError("missing_field", "a shipped event needs the carrier and the tracking code")
    if event.type not in EVENT_STATUS:
        raise MappingError("bad_value", f"unknown event type {event.type!r}")
    if invoice is not None and event.type != "cancelled":
        if not (invoice.key.isdigit() and len(invoice.key) == 44):
            raise MappingError("bad_invoice_key", f"NF-e key {invoice.key[:50]!r} does not have 44 digits")
        fields |= {"nfe_key": invoice.key, "nfe_number": invoice.number, "nfe_serie": invoice.series,
                   "nfe_date": time_str(invoice.issued_at or event.occurred_at)}
        if invoice.xml_url:
            fields["nfe_link"] = invoice.xml_url
    if shipment is not None and event.type in ("shipped", "delivered"):
        fields |= {"shipping_company": shipment.carrier, "track_code": shipment.tracking_code,
                   "date_shipped": time_str(shipment.shipped_at or event.occurred_at)}
        if shipment.tracking_url:
            fields["track_url"] = shipment.tracking_url
    if event.type == "delivered":
        fields["date_delivered"] = time_str(event.delivered_at or event.occurred_at)
    payload = {"status": EVENT_STATUS[event.type], "shipment": fields if event.type != "cancelled" else {}}
    return Outgoing(_required(event.id, "id"), payload, {"order_id": _required(event.remote_order_id, "order id")})


PluggtoConnector.feeds = {"orders": Feed("/orders", OrderPages(), parse_order, order_key)}  # pages of page_size

__all__ = ["PluggtoConnector", "event_out", "parse_order"]
