"""Seller Up, the assisted-selling tablet app: catalogue in by batch upserts, tablet customers and orders out.

Contract: ../shared/contracts/sellerup/openapi.yaml. Batch upserts answer one result per item
(a batch can partly fail). Feeds are ordered by `seq`, which grows on every change, so a record
may come again; the engine's journal makes that harmless. A revoked key answers 401
`key_revoked` on every call: the channel stops with that reason, the others go on.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar
from urllib.parse import quote

from syncagent.connectors.base import Capabilities, OptionSpec, Outgoing, PushResult
from syncagent.connectors.common import (
    body_of,
    chunks,
    error_text,
    need,
    need_money,
    opt,
    opt_money,
    parse_address,
    reason,
    refused,
)
from syncagent.connectors.rest import AfterSeq, AuthKind, Feed, Keyset, RestConnector, StaticKey
from syncagent.errors import MappingError, PermanentError
from syncagent.model import (
    ChannelCustomer,
    Customer,
    Group,
    Order,
    OrderEvent,
    OrderItem,
    OrderPayment,
    PaymentMethod,
    Price,
    Product,
    Seller,
    StockLevel,
    is_document,
    money_str,
    normalize_document,
    parse_time,
    time_str,
)

COLLECTIONS = ("products", "prices", "stock", "customers", "payment-methods", "groups", "sellers")
POSTS = ("order-acks", "order-events", "customer-links")
# collections read whole as a feed where the config makes the app a flow's source (it has no change feed)
LISTED_FEEDS = ("products",)
MAX_BATCH = 500  # the contract's cap on a batch upsert and on a feed page
NFE_KEY = re.compile(r"[0-9]{44}")
ACCEPTED = ("created", "updated", "unchanged")


class SellerUpConnector(RestConnector):
    """Writes the catalogue to the tablets and reads the orders and customers taken on them."""

    type_name: ClassVar[str] = "sellerup"
    options: ClassVar[dict[str, OptionSpec]] = {
        "api_key": OptionSpec("str", required=True, secret=True, help="the store's integration key (X-Api-Key)"),
    }
    capabilities: ClassVar[Capabilities] = Capabilities(
        push=frozenset({*COLLECTIONS, *POSTS}),
        pull=frozenset({"orders", "channel-customers", *LISTED_FEEDS}),
        max_batch=MAX_BATCH, importable_statuses=("approved",), cancelled_statuses=("cancelled",),
        stable=frozenset({"products", "groups", "payment-methods", "sellers", "customers"}),
        listing=frozenset(COLLECTIONS),
    )
    auth: ClassVar[AuthKind] = StaticKey("X-Api-Key", "api_key")
    check_path: ClassVar[str] = "/v1/orders"
    max_page: ClassVar[int] = MAX_BATCH
    lists: ClassVar[Mapping[str, Feed]] = {entity: Feed("/v1/{entity}", Keyset(), limit=1000) for entity in COLLECTIONS}
    feeds: ClassVar[Mapping[str, Feed]] = {}  # declared at the end of the module, once its parsers exist

    # -- writes ----------------------------------------------------------------------------------
    def prepare(self, entity: str, record: Any) -> Outgoing:
        """Map one model record (or an engine dict for acks and links) to Seller Up's wire form."""
        mapper = MAPPERS.get(entity)
        if mapper is not None:
            payload = mapper(record, self.clock)
            return Outgoing(payload["key"], payload)
        if entity == "order-events":
            return event_out(record)
        if entity == "order-acks":
            number = _required(str(record.get("backoffice_number") or ""), "backoffice_number")
            return Outgoing(_required(record.get("order_id"), "order_id"), {"backoffice_number": number})
        if entity == "customer-links":
            code = _required(str(record.get("code") or ""), "code")
            return Outgoing(_required(record.get("remote_id"), "remote_id"), {"code": code})
        raise ValueError(f"{self.name} cannot take {entity}")

    def push(self, entity: str, batch: Sequence[Outgoing]) -> list[PushResult]:
        """Catalogue: batch upserts of at most 500; acks, links, events: one POST each."""
        if entity in COLLECTIONS:
            results: list[PushResult] = []
            for part in chunks(batch, MAX_BATCH):
                results += self._upsert(entity, part)
            return results
        if entity in POSTS:
            return [self._post_one(entity, out) for out in batch]
        raise ValueError(f"{self.name} cannot take {entity}")

    def _upsert(self, entity: str, batch: Sequence[Outgoing]) -> list[PushResult]:
        if not batch:
            return []
        what = f"PUT /v1/{entity}"
        resp = self.client.put(f"/v1/{entity}", json={"items": [o.payload for o in batch]})
        if resp.status == 413:
            if len(batch) == 1:  # one record too large for the app: that record's problem, not the batch's
                return [PushResult(batch[0].key, "rejected", reason_code=resp.error_code() or "too_large",
                                   reason=reason(resp, self.client))]
            half = len(batch) // 2
            return self._upsert(entity, batch[:half]) + self._upsert(entity, batch[half:])
        if resp.status != 200:
            raise refused(self.client, f"{what} (the whole batch)", resp)
        results = body_of(self.client, what, resp, "results")["results"]
        if len(results) != len(batch):
            raise PermanentError(f"{self.name}: {what} answered {len(results)} results for {len(batch)} items",
                                 code="bad_response")
        ordered = _in_batch_order(batch, results)
        if ordered is None:
            raise PermanentError(f"{self.name}: {what} answered results whose keys do not match the items sent",
                                 code="bad_response")
        return [_result(sent.key, result, self.client.redact) for sent, result in zip(batch, ordered, strict=True)]

    def _post_one(self, entity: str, out: Outgoing) -> PushResult:
        if entity == "order-events":
            order_id = out.meta.get("order_id")
            if not order_id:
                return PushResult(out.key, "rejected", reason_code="missing_field", reason="the event has no order id")
            path = f"/v1/orders/{quote(str(order_id), safe='')}/events"
        elif entity == "order-acks":
            path = f"/v1/orders/{quote(out.key, safe='')}/acknowledge"
        else:
            path = f"/v1/tablet-customers/{quote(out.key, safe='')}/link"
        # acknowledging, linking and recording an event are safe to repeat (a repeat answers 204 or 409)
        resp = self.client.post(path, json=out.payload, idempotent=True)
        if resp.status in (200, 201, 204):
            return PushResult(out.key, "created" if entity == "order-events" else "updated")
        if resp.status == 409 and resp.error_code() == "already_recorded":
            return PushResult(out.key, "exists")
        code = "not_found" if resp.status == 404 else resp.error_code() or f"http_{resp.status}"
        return PushResult(out.key, "rejected", reason_code=code, reason=reason(resp, self.client))

    def lookup(self, entity: str, **keys: str) -> Any:
        """Seller Up has nothing the engine needs to look up before writing again."""
        return None


def _result(key: str, result: Any, redact: Callable[[str], str]) -> PushResult:
    """One item of a batch answer as a PushResult; anything unexpected is a rejection, never a success."""
    status = result.get("status") if isinstance(result, dict) else None
    if status in ACCEPTED:
        return PushResult(key, status)
    error = result.get("error") if isinstance(result, dict) else None
    error = error if isinstance(error, dict) else {}
    return PushResult(key, "rejected", reason_code=str(error.get("code") or "rejected"),
                      reason=redact(error_text(error, with_code=False)) if error else f"answered status {status!r}")


def _in_batch_order(batch: Sequence[Outgoing], results: list[Any]) -> list[Any] | None:
    """The results lined up with the batch: by position, which the contract promises, checked by key."""
    keys = [r.get("key") if isinstance(r, dict) else None for r in results]
    if all(k is None or str(k) == sent.key for k, sent in zip(keys, batch, strict=True)):
        return results
    by_key = {str(k): r for k, r in zip(keys, results, strict=True) if k is not None}
    sent_keys = [sent.key for sent in batch]
    if len(by_key) == len(results) == len(set(sent_keys)) and set(by_key) == set(sent_keys):
        return [by_key[k] for k in sent_keys]
    return None


def _seq(item: Any) -> int | None:
    seq = item.get("seq") if isinstance(item, dict) else None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else None


def _feed_key(item: Mapping[str, Any]) -> str | None:
    """A feed item's key for quarantine: its id, else its seq, so even an id-less item is traceable."""
    if isinstance(item.get("id"), str) and item["id"].strip():
        return str(item["id"])
    seq = _seq(item)
    return f"seq:{seq}" if seq is not None else None


# -- model → wire ----------------------------------------------------------------------------------
def _required(value: Any, name: str) -> str:
    if type(value) is str and value.strip():  # the usual case, without a str() copy
        return value
    if value is None or not str(value).strip():
        raise MappingError("missing_field", f"{name} is required")
    return str(value)


def product_in(item: dict[str, Any]) -> Product:
    """A product as the app holds it (GET /v1/products), where the app is the catalogue's source."""
    return Product(code=need(item, "key"), name=need(item, "name"), active=need(item, "active", bool),
                   barcode=opt(item, "barcode"), brand=opt(item, "brand"), group_code=opt(item, "group_key"),
                   unit=opt(item, "unit") or "UN")


LISTED_PARSERS: dict[str, Callable[[dict[str, Any]], Any]] = {"products": product_in}


def product_out(p: Product, clock: Callable[[], datetime]) -> dict[str, Any]:
    return {"key": _required(p.code, "code"), "name": _required(p.name, "name"), "barcode": p.barcode,
            "brand": p.brand, "group_key": p.group_code, "unit": p.unit, "active": p.active}


def price_out(p: Price, clock: Callable[[], datetime]) -> dict[str, Any]:
    """Seller Up holds only the price in force now: list (or scheduled) price and a running promotion."""
    eff = p.effective(clock())
    return {"key": _required(p.code, "code"), "price": money_str(eff.price),
            "promo_price": money_str(eff.promo_price) if eff.promo_price is not None else None,
            "promo_until": time_str(eff.promo_until)}


def stock_out(s: StockLevel, clock: Callable[[], datetime]) -> dict[str, Any]:
    return {"key": _required(s.code, "code"), "available": max(0, int(s.available))}


def customer_push_out(c: Customer, clock: Callable[[], datetime]) -> dict[str, Any]:
    """A back office customer; one without a code has not been created there yet and cannot go."""
    address = c.address
    return {"key": _required(c.code, "code"), "document": normalize_document(_required(c.document, "document")),
            "name": _required(c.name, "name"), "email": c.email, "phone": c.phone,
            "city": address.city if address else None, "state": address.state if address else None}


def payment_method_out(m: PaymentMethod, clock: Callable[[], datetime]) -> dict[str, Any]:
    return {"key": _required(m.code, "code"), "name": _required(m.name, "name"), "type": _required(m.type, "type"),
            "max_installments": m.max_installments or 1, "active": m.active}


def group_out(g: Group, clock: Callable[[], datetime]) -> dict[str, Any]:
    return {"key": _required(g.code, "code"), "name": _required(g.name, "name"), "parent_key": g.parent_code,
            "active": g.active}


def seller_out(s: Seller, clock: Callable[[], datetime]) -> dict[str, Any]:
    return {"key": _required(s.code, "code"), "name": _required(s.name, "name"), "store": s.store_code or "",
            "active": s.active}


MAPPERS: dict[str, Callable[[Any, Callable[[], datetime]], dict[str, Any]]] = {
    "products": product_out, "prices": price_out, "stock": stock_out, "customers": customer_push_out,
    "payment-methods": payment_method_out, "groups": group_out, "sellers": seller_out,
}


def event_out(event: OrderEvent) -> Outgoing:
    """An order event with what Seller Up requires of its type: NF-e number and key, or carrier and tracking."""
    payload: dict[str, Any] = {"type": event.type, "occurred_at": time_str(event.occurred_at), "invoice_key": None,
                               "invoice_number": None, "tracking_code": None, "carrier": None}
    if event.type == "invoiced":
        if event.invoice is None or not event.invoice.number:
            raise MappingError("missing_field", "an invoiced event needs the NF-e number and its 44-digit key")
        if not NFE_KEY.fullmatch(event.invoice.key):
            raise MappingError("bad_invoice_key", f"NF-e key {event.invoice.key[:50]!r} does not have 44 digits")
        payload |= {"invoice_key": event.invoice.key, "invoice_number": event.invoice.number}
    elif event.type == "shipped":
        if event.shipment is None or not event.shipment.carrier or not event.shipment.tracking_code:
            raise MappingError("missing_field", "a shipped event needs the carrier and the tracking code")
        payload |= {"carrier": event.shipment.carrier, "tracking_code": event.shipment.tracking_code}
    return Outgoing(_required(event.id, "id"), payload, {"order_id": _required(event.remote_order_id, "order id")})


# -- wire → model ----------------------------------------------------------------------------------
def parse_order(item: dict[str, Any]) -> Order:
    """A TabletOrder; one with no items, a quantity under 1 or malformed money is quarantined whole."""
    order_id = need(item, "id")
    entries = need(item, "items", list)
    if not entries:
        raise MappingError("missing_field", "items: an order needs at least one item")
    items = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise MappingError("bad_type", f"items[{i}]: expected an object")
        quantity = need(entry, "quantity", int)
        if quantity < 1 or quantity > 1_000_000:
            raise MappingError("bad_quantity", f"items[{i}].quantity: {quantity} is not a quantity")
        unit_price = need_money(entry, "unit_price", f"items[{i}].unit_price")
        discount = opt_money(entry, "discount", f"items[{i}].discount") or Decimal("0.00")
        if unit_price < 0 or discount < 0:  # never passed on to the back office as a sale
            raise MappingError("negative_price", f"items[{i}]: unit_price {unit_price} / discount {discount} "
                                                 "is negative")
        items.append(OrderItem(need(entry, "key"), quantity, unit_price, discount))
    payments = []
    for i, entry in enumerate(opt(item, "payments", list) or []):
        if not isinstance(entry, dict):
            raise MappingError("bad_type", f"payments[{i}]: expected an object")
        installments = opt(entry, "installments", int) or 1
        if installments < 1:
            raise MappingError("bad_value", f"payments[{i}].installments: {installments} is not a count")
        payments.append(OrderPayment(need(entry, "method"), need_money(entry, "amount", f"payments[{i}].amount"),
                                     installments))
    customer = opt(item, "customer", dict) or {}
    return Order(
        remote_id=order_id, status=need(item, "status"), items=tuple(items), total=need_money(item, "total"),
        payments=tuple(payments), number=opt(item, "number"), customer_code=opt(customer, "code"),
        channel_customer_id=opt(customer, "tablet_customer_id"), seller_code=opt(item, "seller"),
        store_code=opt(item, "store"), notes=opt(item, "notes"),
        created_at=parse_time(item.get("created_at"), "created_at"), version=str(need(item, "seq", int)),
    )


def parse_customer(item: dict[str, Any]) -> ChannelCustomer:
    """A TabletCustomer; its CPF/CNPJ is the natural key, so a bad one cannot be bound and is quarantined.

    The contract's document is a plain string, typed on a tablet: `436.555.472-77` is read as its digits.
    """
    typed = need(item, "document")
    document = normalize_document(typed)
    if not is_document(document):
        raise MappingError("invalid_document", f"document {typed[:20]!r} is not a valid CPF/CNPJ")
    return ChannelCustomer(
        remote_id=need(item, "id"), document=document, name=need(item, "name"), linked_code=opt(item, "code"),
        email=opt(item, "email"), phone=opt(item, "phone"), address=parse_address(item.get("address")),
        version=str(need(item, "seq", int)),
    )


# orders and tablet customers: seq feeds; the catalogue: listings keyset by key, read whole as a feed where
# the config makes the app a flow's source (it has no change feed)
SellerUpConnector.feeds = {
    "orders": Feed("/v1/orders", AfterSeq(), parse_order, _feed_key),
    "channel-customers": Feed("/v1/tablet-customers", AfterSeq(), parse_customer, _feed_key),
    **{entity: Feed(f"/v1/{entity}", Keyset(), parse, "key", limit=1000) for entity, parse in LISTED_PARSERS.items()},
}
