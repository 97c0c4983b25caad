"""Seller Up, the assisted-selling tablet app: catalogue in by batch upserts, tablet customers and orders out.

Contract: ../shared/contracts/sellerup/openapi.yaml. Batch upserts answer one result per item
(a batch can partly fail). Feeds are ordered by `seq`, which grows on every change, so a record
may come again; the engine's journal makes that harmless. A revoked key answers 401
`key_revoked` on every call: the channel stops with that reason, the others go on.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

from syncagent.connectors.base import Capabilities, OptionSpec, Outgoing, PushResult
from syncagent.connectors.common import chunks, http_settings, need, opt, parse_items, reason
from syncagent.connectors.gestao_lojas import parse_address
from syncagent.errors import MappingError, PermanentError, TransientError
from syncagent.http import ApiKeyAuth, HttpClient, HttpSettings
from syncagent.model import (
    ChannelCustomer,
    Customer,
    Group,
    Order,
    OrderEvent,
    OrderItem,
    OrderPayment,
    Page,
    PaymentMethod,
    Price,
    Product,
    Seller,
    StockLevel,
    money_str,
    parse_money,
    parse_time,
    time_str,
    utcnow,
    valid_document,
)

COLLECTIONS = ("products", "prices", "stock", "customers", "payment-methods", "groups", "sellers")
MAX_BATCH = 500
NFE_KEY = re.compile(r"^[0-9]{44}$")


class SellerUpConnector:
    type_name: ClassVar[str] = "sellerup"
    options: ClassVar[dict[str, OptionSpec]] = {
        "api_key": OptionSpec("str", required=True, secret=True, help="the store's integration key (X-Api-Key)"),
    }
    capabilities: ClassVar[Capabilities] = Capabilities(
        push=frozenset({*COLLECTIONS, "order-acks", "order-events", "customer-links"}),
        pull=frozenset({"orders", "channel-customers"}),
        max_batch=MAX_BATCH, importable_statuses=("approved",), cancelled_statuses=("cancelled",),
    )

    def __init__(self, name: str, base_url: str, options: Mapping[str, Any], http: HttpSettings, *,
                 sleep: Callable[[float], None] | None = None, clock: Callable[[], datetime] = utcnow,
                 page_size: int = 500) -> None:
        self.name = name
        self.clock = clock
        self.page_size = min(page_size, 500)
        key = str(options["api_key"])
        self.client = HttpClient(base_url, http, name=name, auth=ApiKeyAuth("X-Api-Key", key), sleep=sleep)
        self.secrets = (key,)

    @classmethod
    def from_config(cls, cfg: Any, *, sleep: Callable[[float], None] | None = None,
                    clock: Callable[[], datetime] = utcnow) -> SellerUpConnector:
        return cls(cfg.name, cfg.base_url, cfg.options, http_settings(cfg.http), sleep=sleep, clock=clock)

    def check(self) -> None:
        resp = self.client.get("/v1/orders", params={"limit": 1})
        if resp.status != 200:
            raise TransientError(f"{self.name}: GET /v1/orders answered {resp.status}: {reason(resp)}")

    def close(self) -> None:
        self.client.close()

    # -- feeds -----------------------------------------------------------------------------------
    def pull(self, entity: str, cursor: str | None, filters: Mapping[str, Any] | None = None) -> Iterator[Page]:
        paths = {"orders": ("/v1/orders", parse_order), "channel-customers": ("/v1/tablet-customers", parse_customer)}
        if entity not in paths:
            raise ValueError(f"{self.name} has no {entity} feed")
        path, parse = paths[entity]
        after = int(cursor or 0)
        while True:
            resp = self.client.get(path, params={"after": after, "limit": self.page_size})
            if resp.status != 200:
                raise TransientError(f"{self.name}: GET {path} answered {resp.status}: {reason(resp)}",
                                     status=resp.status, code=resp.error_code())
            body = resp.json()
            items = body.get("items") if isinstance(body, dict) else None
            if not isinstance(items, list):
                raise TransientError(f"{self.name}: GET {path}: the answer has no items list", code="bad_response")
            seqs = [i["seq"] for i in items if isinstance(i, dict) and isinstance(i.get("seq"), int)
                    and not isinstance(i.get("seq"), bool)]
            last = max(seqs, default=after)
            yield Page(parse_items(items, parse, "id"), str(last) if items and last > after else None)
            if len(items) < self.page_size or last <= after:
                return
            after = last

    # -- writes ----------------------------------------------------------------------------------
    def prepare(self, entity: str, record: Any) -> Outgoing:
        mapper = MAPPERS.get(entity)
        if mapper is not None:
            payload = mapper(record, self.clock)
            return Outgoing(payload["key"], payload)
        if entity == "order-acks":
            return Outgoing(record["order_id"], {"backoffice_number": str(record["backoffice_number"])})
        if entity == "customer-links":
            return Outgoing(record["remote_id"], {"code": str(record["code"])})
        if entity == "order-events":
            return event_out(record)
        raise ValueError(f"{self.name} cannot take {entity}")

    def push(self, entity: str, batch: Sequence[Outgoing]) -> list[PushResult]:
        if entity in COLLECTIONS:
            results: list[PushResult] = []
            for part in chunks(batch, MAX_BATCH):
                results += self._upsert(entity, part)
            return results
        return [self._post_one(entity, out) for out in batch]

    def _upsert(self, entity: str, batch: Sequence[Outgoing]) -> list[PushResult]:
        resp = self.client.put(f"/v1/{entity}", json={"items": [o.payload for o in batch]})
        if resp.status == 413 and len(batch) > 1:
            half = len(batch) // 2
            return self._upsert(entity, batch[:half]) + self._upsert(entity, batch[half:])
        if resp.status != 200:
            raise PermanentError(f"{self.name}: PUT /v1/{entity} refused the batch: {resp.status} {reason(resp)}",
                                 status=resp.status, code=resp.error_code())
        body = resp.json()
        results = body.get("results") if isinstance(body, dict) else None
        if not isinstance(results, list) or len(results) != len(batch):
            raise PermanentError(f"{self.name}: PUT /v1/{entity} answered {len(results or [])} results for "
                                 f"{len(batch)} items", code="bad_response")
        out: list[PushResult] = []
        for sent, result in zip(batch, results, strict=True):
            status = result.get("status") if isinstance(result, dict) else None
            if status in ("created", "updated", "unchanged"):
                out.append(PushResult(sent.key, status))
            else:
                error = result.get("error") or {} if isinstance(result, dict) else {}
                text = f"{error.get('message') or 'rejected'}" + (f" ({error['field']})" if error.get("field") else "")
                out.append(PushResult(sent.key, "rejected", reason_code=str(error.get("code") or "rejected"),
                                      reason=text))
        return out

    def _post_one(self, entity: str, out: Outgoing) -> PushResult:
        if entity == "order-acks":
            path = f"/v1/orders/{out.key}/acknowledge"
        elif entity == "customer-links":
            path = f"/v1/tablet-customers/{out.key}/link"
        elif entity == "order-events":
            path = f"/v1/orders/{out.meta['order_id']}/events"
        else:
            raise ValueError(f"{self.name} cannot take {entity}")
        # acknowledging, linking and events are safe to repeat (a repeat is harmless or answers 409)
        resp = self.client.post(path, json=out.payload, idempotent=True)
        if resp.status in (200, 201, 204):
            return PushResult(out.key, "created" if entity == "order-events" else "updated")
        if resp.status == 409 and resp.error_code() == "already_recorded":
            return PushResult(out.key, "exists")
        code = resp.error_code() or ("not_found" if resp.status == 404 else str(resp.status))
        return PushResult(out.key, "rejected", reason_code=code, reason=reason(resp))

    def lookup(self, entity: str, **keys: str) -> Any:
        return None


# -- model → wire ----------------------------------------------------------------------------------
def _required(value: str | None, name: str) -> str:
    if value is None or not str(value).strip():
        raise MappingError("missing_field", f"{name} is required")
    return value


def product_out(p: Product, clock: Callable[[], datetime]) -> dict[str, Any]:
    return {"key": p.code, "name": _required(p.name, "name"), "barcode": p.barcode, "brand": p.brand,
            "group_key": p.group_code, "unit": p.unit, "active": p.active}


def price_out(p: Price, clock: Callable[[], datetime]) -> dict[str, Any]:
    """Seller Up holds only the price in force: list (or scheduled) price, and a running promotion."""
    eff = p.effective(clock())
    return {"key": p.code, "price": money_str(eff.price),
            "promo_price": money_str(eff.promo_price) if eff.promo_price is not None else None,
            "promo_until": time_str(eff.promo_until)}


def stock_out(s: StockLevel, clock: Callable[[], datetime]) -> dict[str, Any]:
    return {"key": s.code, "available": max(0, int(s.available))}


def customer_push_out(c: Customer, clock: Callable[[], datetime]) -> dict[str, Any]:
    if not c.code:
        raise MappingError("missing_field", "a back office customer code is required")
    address = c.address
    return {"key": c.code, "document": c.document, "name": _required(c.name, "name"), "email": c.email,
            "phone": c.phone, "city": address.city if address else None, "state": address.state if address else None}


def payment_method_out(m: PaymentMethod, clock: Callable[[], datetime]) -> dict[str, Any]:
    return {"key": m.code, "name": _required(m.name, "name"), "type": m.type,
            "max_installments": m.max_installments or 1, "active": m.active}


def group_out(g: Group, clock: Callable[[], datetime]) -> dict[str, Any]:
    return {"key": g.code, "name": _required(g.name, "name"), "parent_key": g.parent_code, "active": g.active}


def seller_out(s: Seller, clock: Callable[[], datetime]) -> dict[str, Any]:
    return {"key": s.code, "name": _required(s.name, "name"), "store": s.store_code or "", "active": s.active}


MAPPERS: dict[str, Callable[[Any, Callable[[], datetime]], dict[str, Any]]] = {
    "products": product_out, "prices": price_out, "stock": stock_out, "customers": customer_push_out,
    "payment-methods": payment_method_out, "groups": group_out, "sellers": seller_out,
}


def event_out(event: OrderEvent) -> Outgoing:
    payload: dict[str, Any] = {"type": event.type, "occurred_at": time_str(event.occurred_at)}
    if event.type == "invoiced":
        if event.invoice is None or not NFE_KEY.match(event.invoice.key) or not event.invoice.number:
            raise MappingError("missing_field", "an invoiced event needs the NF-e number and its 44-digit key")
        payload |= {"invoice_key": event.invoice.key, "invoice_number": event.invoice.number}
    elif event.type == "shipped":
        if event.shipment is None or not event.shipment.carrier or not event.shipment.tracking_code:
            raise MappingError("missing_field", "a shipped event needs the carrier and the tracking code")
        payload |= {"carrier": event.shipment.carrier, "tracking_code": event.shipment.tracking_code}
    return Outgoing(event.id, payload, {"order_id": event.remote_order_id})


# -- wire → model ----------------------------------------------------------------------------------
def parse_order(item: dict[str, Any]) -> Order:
    order_id = need(item, "id")
    items = need(item, "items", list)
    if not items:
        raise MappingError("missing_field", "items: an order needs at least one item")
    parsed = []
    for i, entry in enumerate(items):
        if not isinstance(entry, dict):
            raise MappingError("bad_type", f"items[{i}]: expected an object")
        quantity = need(entry, "quantity", int)
        if quantity < 1 or quantity > 1_000_000:
            raise MappingError("bad_quantity", f"items[{i}].quantity: {quantity} is not a quantity")
        discount = entry.get("discount")
        parsed.append(OrderItem(need(entry, "key"), quantity, parse_money(entry.get("unit_price"), f"items[{i}].unit_price"),
                                parse_money(discount, f"items[{i}].discount") if discount is not None else parse_money("0.00", "")))
    payments = []
    for i, entry in enumerate(opt(item, "payments", list) or []):
        if not isinstance(entry, dict):
            raise MappingError("bad_type", f"payments[{i}]: expected an object")
        payments.append(OrderPayment(need(entry, "method"), parse_money(entry.get("amount"), f"payments[{i}].amount"),
                                     opt(entry, "installments", int) or 1))
    customer = item.get("customer") if isinstance(item.get("customer"), dict) else {}
    return Order(
        remote_id=order_id, status=need(item, "status"), items=tuple(parsed), total=parse_money(item.get("total"), "total"),
        payments=tuple(payments), number=opt(item, "number"), customer_code=opt(customer, "code"),
        channel_customer_id=opt(customer, "tablet_customer_id"), seller_code=opt(item, "seller"),
        store_code=opt(item, "store"), notes=opt(item, "notes"),
        created_at=parse_time(item.get("created_at"), "created_at"), version=str(need(item, "seq", int)),
    )


def parse_customer(item: dict[str, Any]) -> ChannelCustomer:
    document = need(item, "document")
    if not (document.isdigit() and len(document) in (11, 14) and valid_document(document)):
        raise MappingError("invalid_document", f"document {document[:20]!r} is not a valid CPF/CNPJ")
    return ChannelCustomer(
        remote_id=need(item, "id"), document=document, name=need(item, "name"), linked_code=opt(item, "code"),
        email=opt(item, "email"), phone=opt(item, "phone"), address=parse_address(item.get("address")),
        version=str(need(item, "seq", int)),
    )
