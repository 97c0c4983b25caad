"""The back office (Gestão de Lojas / Retaguarda): the hub we read the catalogue from and write orders to.

Contract: ../shared/contracts/gestao-lojas/openapi.yaml. Feeds are keyset-paginated with opaque
cursors; a null `next_cursor` ends the feed *for now* (the engine keeps its previous cursor, so
the last page may be read again — harmless). `POST /orders` is not idempotent: the engine looks
an order up by external id before any second attempt.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

from syncagent.connectors.base import Capabilities, OptionSpec, Outgoing, PushResult
from syncagent.connectors.common import http_settings, need, opt, parse_items, reason
from syncagent.errors import MappingError, TransientError
from syncagent.http import HttpClient, HttpSettings, OAuthClientCredentials
from syncagent.model import (
    Address,
    BackOfficeOrder,
    Customer,
    Group,
    Invoice,
    OrderEvent,
    Page,
    PaymentMethod,
    Price,
    Product,
    ScheduledPrice,
    Seller,
    Shipment,
    StockBalance,
    money_str,
    parse_money,
    parse_time,
    time_str,
    utcnow,
)

FEEDS = ("products", "prices", "stock", "customers", "payment-methods", "groups", "sellers", "order-events")


class GestaoLojasConnector:
    type_name: ClassVar[str] = "gestao-lojas"
    options: ClassVar[dict[str, OptionSpec]] = {
        "client_id": OptionSpec("str", required=True, help="OAuth2 client id of the integration user"),
        "client_secret": OptionSpec("str", required=True, secret=True, help="OAuth2 client secret"),
    }
    capabilities: ClassVar[Capabilities] = Capabilities(
        pull=frozenset(FEEDS), push=frozenset({"orders", "customers", "order-cancels"}), max_batch=1000,
    )

    def __init__(self, name: str, base_url: str, options: Mapping[str, Any], http: HttpSettings, *,
                 sleep: Callable[[float], None] | None = None, clock: Callable[[], datetime] = utcnow,
                 page_size: int = 500) -> None:
        self.name = name
        self.clock = clock
        self.page_size = page_size
        secret = str(options["client_secret"])
        token_client = HttpClient(base_url, http, name=name, secrets=[secret], sleep=sleep)
        self.auth = OAuthClientCredentials(token_client, str(options["client_id"]), secret)
        self.client = HttpClient(base_url, http, name=name, auth=self.auth, secrets=[secret], sleep=sleep)
        self.secrets = (secret,)

    @classmethod
    def from_config(cls, cfg: Any, *, sleep: Callable[[float], None] | None = None,
                    clock: Callable[[], datetime] = utcnow) -> GestaoLojasConnector:
        name = getattr(cfg, "name", "backoffice")
        return cls(name, cfg.base_url, cfg.options, http_settings(cfg.http), sleep=sleep, clock=clock)

    def check(self) -> None:
        resp = self.client.get("/warehouses")
        if resp.status != 200:
            raise TransientError(f"{self.name}: GET /warehouses answered {resp.status}: {reason(resp)}")

    def close(self) -> None:
        self.client.close()
        self.auth.client.close()

    # -- feeds -----------------------------------------------------------------------------------
    def pull(self, entity: str, cursor: str | None, filters: Mapping[str, Any] | None = None) -> Iterator[Page]:
        if entity not in FEEDS:
            raise ValueError(f"{self.name} has no {entity} feed")
        parse, key_field = PARSERS[entity]
        filters = filters or {}
        while True:
            params: list[tuple[str, Any]] = [("limit", self.page_size)]
            if cursor:
                params.append(("cursor", cursor))
            for warehouse in filters.get("warehouses", ()):
                params.append(("warehouse", warehouse))
            if "price_list" in filters:
                params.append(("price_list", filters["price_list"]))
            resp = self.client.get(f"/{entity}", params=params)
            if resp.status != 200:
                raise TransientError(f"{self.name}: GET /{entity} answered {resp.status}: {reason(resp)}",
                                     status=resp.status, code=resp.error_code())
            body = resp.json()
            if not isinstance(body, dict) or not isinstance(body.get("items"), list):
                raise TransientError(f"{self.name}: GET /{entity}: the answer has no items list", code="bad_response")
            next_cursor = body.get("next_cursor")
            if next_cursor is not None and not isinstance(next_cursor, str):
                raise TransientError(f"{self.name}: GET /{entity}: next_cursor is not a string", code="bad_response")
            yield Page(parse_items(body["items"], parse, key_field), next_cursor)
            if not next_cursor:
                return
            cursor = next_cursor

    # -- writes ----------------------------------------------------------------------------------
    def prepare(self, entity: str, record: Any) -> Outgoing:
        if entity == "orders":
            return Outgoing(record.order.remote_id, order_in(record))
        if entity == "customers":
            return Outgoing(record.document, customer_out(record))
        if entity == "order-cancels":
            return Outgoing(str(record["number"]), {"reason": record.get("reason") or "cancelled on the channel"})
        raise ValueError(f"{self.name} cannot take {entity}")

    def push(self, entity: str, batch: Sequence[Outgoing]) -> list[PushResult]:
        return [self._push_one(entity, out) for out in batch]

    def _push_one(self, entity: str, out: Outgoing) -> PushResult:
        if entity == "orders":
            resp = self.client.post("/orders", json=out.payload)
            if resp.status == 201:
                return PushResult(out.key, "created", remote_id=str(resp.json()["number"]))
            return PushResult(out.key, "rejected", reason_code=resp.error_code() or str(resp.status),
                              reason=reason(resp))
        if entity == "customers":
            resp = self.client.post("/customers", json=out.payload, idempotent=True)  # a repeat answers 409
            if resp.status == 201:
                return PushResult(out.key, "created", remote_id=str(resp.json()["code"]))
            if resp.status == 409 and resp.error_field("existing_code"):
                return PushResult(out.key, "exists", remote_id=str(resp.error_field("existing_code")))
            return PushResult(out.key, "rejected", reason_code=resp.error_code() or str(resp.status),
                              reason=reason(resp))
        if entity == "order-cancels":
            resp = self.client.post(f"/orders/{out.key}/cancel", json=out.payload, idempotent=True)
            if resp.status == 200:
                return PushResult(out.key, "updated")
            code = "not_cancellable" if resp.status == 409 else "not_found" if resp.status == 404 else str(resp.status)
            return PushResult(out.key, "rejected", reason_code=code, reason=reason(resp))
        raise ValueError(f"{self.name} cannot take {entity}")

    def lookup(self, entity: str, **keys: str) -> Any:
        if entity == "orders":
            resp = self.client.get("/orders", params={"external_id": keys["external_id"], "channel": keys["channel"]})
            if resp.status != 200:
                raise TransientError(f"{self.name}: order lookup answered {resp.status}: {reason(resp)}")
            items = resp.json().get("items") or []
            return {"number": str(items[0]["number"]), "status": items[0].get("status")} if items else None
        if entity == "customers":
            resp = self.client.get("/customers", params={"document": keys["document"], "limit": 1})
            if resp.status != 200:
                raise TransientError(f"{self.name}: customer lookup answered {resp.status}: {reason(resp)}")
            records = [r for r in parse_items(resp.json().get("items") or [], parse_customer, "code")
                       if isinstance(r, Customer) and r.document == keys["document"]]
            return records[0] if records else None
        return None


# -- wire → model ----------------------------------------------------------------------------------
def parse_product(item: dict[str, Any]) -> Product:
    return Product(
        code=need(item, "code"), name=need(item, "description"), active=need(item, "active", bool),
        barcode=opt(item, "barcode"), brand=opt(item, "brand"), group_code=opt(item, "group_code"),
        unit=opt(item, "unit") or "UN", ncm=opt(item, "ncm"), weight_kg=opt(item, "weight_kg"),
        height_cm=opt(item, "height_cm"), width_cm=opt(item, "width_cm"), length_cm=opt(item, "length_cm"),
    )


def parse_price(item: dict[str, Any]) -> Price:
    scheduled = []
    for entry in opt(item, "scheduled", list) or []:
        if not isinstance(entry, dict):
            raise MappingError("bad_type", "scheduled: expected a list of objects")
        scheduled.append(ScheduledPrice(parse_money(entry.get("list_price"), "scheduled.list_price"),
                                        parse_time(entry.get("starts_at"), "scheduled.starts_at", required=True)))  # type: ignore[arg-type]
    promo = item.get("promo_price")
    return Price(
        code=need(item, "sku"), list_price=parse_money(item.get("list_price"), "list_price"),
        promo_price=parse_money(promo, "promo_price") if promo is not None else None,
        promo_start=parse_time(item.get("promo_start"), "promo_start"),
        promo_end=parse_time(item.get("promo_end"), "promo_end"),
        scheduled=tuple(sorted(scheduled, key=lambda s: s.starts_at)),
        price_list=opt(item, "price_list") or "default",
    )


def parse_stock(item: dict[str, Any]) -> StockBalance:
    return StockBalance(need(item, "sku"), need(item, "warehouse"), need(item, "available", int),
                        opt(item, "reserved", int) or 0)


def parse_address(data: Any) -> Address | None:
    if not isinstance(data, dict):
        return None
    fields = {k: data.get(k) for k in ("street", "number", "complement", "district", "city", "state", "zip")}
    return Address(**{k: (str(v) if v is not None else None) for k, v in fields.items()},
                   country=str(data.get("country") or "BR"))


def parse_customer(item: dict[str, Any]) -> Customer:
    return Customer(
        document=need(item, "document"), name=need(item, "name"), code=opt(item, "code"), email=opt(item, "email"),
        phone=opt(item, "phone"), birth_date=opt(item, "birth_date"),
        state_registration=opt(item, "state_registration"), address=parse_address(item.get("address")),
    )


def parse_payment_method(item: dict[str, Any]) -> PaymentMethod:
    return PaymentMethod(need(item, "code"), need(item, "description"), need(item, "type"),
                         need(item, "active", bool), opt(item, "max_installments", int))


def parse_group(item: dict[str, Any]) -> Group:
    return Group(need(item, "code"), need(item, "description"), need(item, "active", bool), opt(item, "parent_code"))


def parse_seller(item: dict[str, Any]) -> Seller:
    return Seller(need(item, "code"), need(item, "name"), need(item, "active", bool), opt(item, "email"),
                  opt(item, "store_code"))


def parse_event(item: dict[str, Any]) -> OrderEvent:
    kind = need(item, "type")
    if kind not in ("invoiced", "shipped", "delivered", "cancelled"):
        raise MappingError("bad_value", f"type: unknown event type {kind!r}")
    invoice = shipment = None
    if isinstance(item.get("invoice"), dict):
        inv = item["invoice"]
        total = inv.get("total")
        invoice = Invoice(need(inv, "key"), need(inv, "number"), str(inv.get("series") or "1"),
                          parse_time(inv.get("issued_at"), "invoice.issued_at"),
                          parse_money(total, "invoice.total") if total is not None else None, opt(inv, "xml_url"))
    if isinstance(item.get("shipment"), dict):
        shp = item["shipment"]
        shipment = Shipment(need(shp, "carrier"), need(shp, "tracking_code"), opt(shp, "tracking_url"),
                            parse_time(shp.get("shipped_at"), "shipment.shipped_at"))
    return OrderEvent(
        id=str(need(item, "id", (str, int))), order_number=str(need(item, "order_number", (str, int))),
        channel=need(item, "channel"), remote_order_id=need(item, "external_id"), type=kind,
        occurred_at=parse_time(item.get("occurred_at"), "occurred_at", required=True),  # type: ignore[arg-type]
        invoice=invoice, shipment=shipment, delivered_at=parse_time(item.get("delivered_at"), "delivered_at"),
    )


PARSERS: dict[str, tuple[Callable[[dict[str, Any]], Any], str]] = {
    "products": (parse_product, "code"), "prices": (parse_price, "sku"), "stock": (parse_stock, "sku"),
    "customers": (parse_customer, "code"), "payment-methods": (parse_payment_method, "code"),
    "groups": (parse_group, "code"), "sellers": (parse_seller, "code"), "order-events": (parse_event, "id"),
}


# -- model → wire ----------------------------------------------------------------------------------
def order_in(record: BackOfficeOrder) -> dict[str, Any]:
    order = record.order
    if not order.items:
        raise MappingError("missing_field", "an order needs at least one item")
    body: dict[str, Any] = {
        "external_id": order.remote_id,
        "channel": record.channel,
        "customer_code": record.customer_code,
        "seller_code": order.seller_code,
        "store_code": order.store_code,
        "warehouse": record.warehouse,
        "items": [{"sku": i.code, "quantity": i.quantity, "unit_price": money_str(i.unit_price),
                   "discount": money_str(i.discount)} for i in order.items],
        "payments": [{"method_code": p.method_code, "amount": money_str(p.amount), "installments": p.installments}
                     for p in order.payments],
        "shipping": money_str(order.shipping),
        "total": money_str(order.total),
        "notes": order.notes,
    }
    if order.created_at is not None:
        body["created_at"] = time_str(order.created_at)
    return body


def customer_out(customer: Customer) -> dict[str, Any]:
    body: dict[str, Any] = {"document": customer.document, "name": customer.name, "email": customer.email,
                            "phone": customer.phone}
    if customer.address is not None:
        addr = customer.address
        body["address"] = {k: getattr(addr, k) for k in ("street", "number", "complement", "district", "city",
                                                         "state", "zip", "country") if getattr(addr, k) is not None}
    return body
