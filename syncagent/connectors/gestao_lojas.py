"""The back office (Gestão de Lojas / Retaguarda): the hub we read the catalogue from and write orders to.

Contract: ../shared/contracts/gestao-lojas/openapi.yaml. Feeds are keyset-paginated with opaque
cursors; a null `next_cursor` ends the feed *for now* (the engine keeps its previous cursor, so
the last page may be read again — harmless). `POST /orders` is not idempotent: the engine looks
an order up by external id before any second attempt, so this module never retries it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import quote

import orjson

from syncagent.connectors.base import (
    BaseConnector,
    Capabilities,
    ConnectorState,
    OptionSpec,
    Outgoing,
    PushResult,
)
from syncagent.connectors.common import (
    KeyOf,
    body_of,
    http_settings,
    need,
    need_money,
    need_time,
    opt,
    opt_money,
    parse_address,
    parse_items,
    reason,
    refused,
)
from syncagent.connectors.gestao_lojas_sac import SAC_PREPARERS, SacWrites, parse_ticket_event
from syncagent.errors import AmbiguousError, MappingError, TransientError
from syncagent.http import HttpClient, HttpResponse, HttpSettings, OAuthClientCredentials
from syncagent.model import (
    EVENT_ORDER,
    BackOfficeOrder,
    BadRecord,
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
    normalize_document,
    parse_money,
    parse_time,
    time_str,
    utcnow,
)

FEEDS = ("products", "prices", "stock", "customers", "payment-methods", "groups", "sellers", "order-events",
         "ticket-events")
WRITES = ("orders", "customers", "order-cancels", "products", "tickets", "ticket-messages", "deliveries")
MAX_PAGE = 1000  # the contract's `limit` maximum
SAME_PAGES = 3  # pages in a row with the same items under new cursors: the feed is not moving on


class SamePages:
    """Stops a feed that hands out a new cursor with every page but the same items (it would never end).

    A keyset feed cannot give the same items on consecutive pages: each page starts after the last.
    """

    def __init__(self, what: str) -> None:
        self.what = what
        self.last: bytes | None = None
        self.count = 0

    def see(self, items: list[Any], next_cursor: str) -> None:
        try:
            content = orjson.dumps(items)  # ~0.1 ms a page
        except TypeError:  # what orjson will not write (a marked too-long number): not comparable, not a loop
            self.last, self.count = None, 0
            return
        self.count = self.count + 1 if content == self.last else 1
        self.last = content
        if self.count >= SAME_PAGES:
            raise TransientError(f"{self.what}: the feed does not move on: {self.count} pages in a row held the same "
                                 f"{len(items)} items under new cursors (the last {next_cursor[:40]!r}); that page is "
                                 "not taken", code="cursor_loop")


class GestaoLojasConnector(BaseConnector):
    """Reads the back office's change feeds and creates orders and customers in it."""

    type_name: ClassVar[str] = "gestao-lojas"
    options: ClassVar[dict[str, OptionSpec]] = {
        "client_id": OptionSpec("str", required=True, help="OAuth2 client id of the integration user"),
        "client_secret": OptionSpec("str", required=True, secret=True, help="OAuth2 client secret"),
    }
    capabilities: ClassVar[Capabilities] = Capabilities(
        pull=frozenset(FEEDS), push=frozenset(WRITES), max_batch=1000,
        stable=frozenset({"products"}),  # a product written here is built from the record alone
    )

    def __init__(self, name: str, base_url: str, options: Mapping[str, Any], http: HttpSettings, *,
                 sleep: Callable[[float], None] | None = None, clock: Callable[[], datetime] = utcnow,
                 page_size: int = 500) -> None:
        self.name = name
        self.clock = clock
        self.page_size = max(1, min(page_size, MAX_PAGE))
        secret = str(options["client_secret"])
        self.secrets: tuple[str, ...] = (secret,)
        # the token endpoint is called unauthenticated on a client of its own
        token_client = HttpClient(base_url, http, name=name, secrets=self.secrets, sleep=sleep)
        self.auth = OAuthClientCredentials(token_client, str(options["client_id"]), secret)
        self.client = HttpClient(base_url, http, name=name, auth=self.auth, secrets=self.secrets, sleep=sleep)
        self.sac = SacWrites(self.client, name)

    @classmethod
    def from_config(cls, cfg: Any, *, sleep: Callable[[float], None] | None = None,
                    clock: Callable[[], datetime] = utcnow, state: ConnectorState | None = None
                    ) -> GestaoLojasConnector:
        """Build from a BackofficeConfig (named "backoffice") or a ChannelConfig (its own name)."""
        name = getattr(cfg, "name", None) or "backoffice"
        return cls(name, cfg.base_url, cfg.options, http_settings(cfg.http), sleep=sleep, clock=clock)

    def check(self) -> None:
        """Credentials (a token is fetched) and reachability (one cheap authenticated GET)."""
        resp = self.client.get("/warehouses")
        if resp.status != 200:
            raise refused(self.client, "GET /warehouses", resp)

    def close(self) -> None:
        self.client.close()
        self.auth.client.close()

    def http_clients(self) -> Sequence[HttpClient]:
        return (self.client,)

    # -- feeds -----------------------------------------------------------------------------------
    def pull(self, entity: str, cursor: str | None, filters: Mapping[str, Any] | None = None) -> Iterator[Page]:
        """Follow the feed from `cursor` page by page; the last page (null next_cursor) carries None."""
        if entity not in FEEDS:
            raise ValueError(f"{self.name} has no {entity} feed")
        parse, key_of = PARSERS[entity]
        filters = filters or {}
        repeats = SamePages(f"{self.name}: GET /{entity}")
        while True:
            params: list[tuple[str, Any]] = []
            if cursor:
                params.append(("cursor", cursor))
            params.append(("limit", self.page_size))
            if entity == "stock":
                params += [("warehouse", w) for w in filters.get("warehouses") or ()]
            if entity == "prices" and filters.get("price_list"):
                params.append(("price_list", filters["price_list"]))
            what = f"GET /{entity}"
            resp = self.client.get(f"/{entity}", params=params)
            if resp.status != 200:
                raise refused(self.client, what, resp)
            # the page's body is decoded and its records parsed only when read (`Page.decode`): a page whose
            # bytes the engine recorded whole before (its digest) is counted unchanged and never decoded
            extra: dict[str, Any] = {"digest": hashlib.sha256(resp.content).hexdigest()}
            page = Page(None, None, extra, decode=self._decoder(what, resp, extra, parse, key_of, repeats))
            del resp  # the page holds the answer until it is decoded, or dropped unread
            yield page
            next_cursor = page.cursor
            del page  # its records are the engine's to hold, not this generator's while it reads the next one
            if not next_cursor or next_cursor == cursor:
                return
            cursor = next_cursor

    def _decoder(self, what: str, resp: HttpResponse, extra: dict[str, Any], parse: Callable[[dict[str, Any]], Any],
                 key_of: Any, repeats: SamePages) -> Callable[[], tuple[str | None, Callable[[], list[Any]]]]:
        """How one feed page's body is read when it is: its next cursor, and its records parsed on demand."""
        def decode() -> tuple[str | None, Callable[[], list[Any]]]:
            body = body_of(self.client, what, resp)
            next_cursor = body.get("next_cursor")
            if next_cursor is not None and not isinstance(next_cursor, str):
                raise TransientError(f"{self.name}: {what}: next_cursor is not a string", code="bad_response")
            items = body["items"]
            if next_cursor:
                repeats.see(items, next_cursor)
            extra["items"] = len(items)
            return next_cursor or None, _loader(items, parse, key_of, resp.content)
        return decode

    # -- writes ----------------------------------------------------------------------------------
    def prepare(self, entity: str, record: Any) -> Outgoing:
        """Map one model record to the back office's wire form; MappingError if it cannot take it."""
        mapper = PREPARERS.get(entity)
        if mapper is None:
            raise ValueError(f"{self.name} cannot take {entity}")
        return mapper(record)

    def push(self, entity: str, batch: Sequence[Outgoing]) -> list[PushResult]:
        """One request per record (the back office has no batch writes); one result per record."""
        writers = {"orders": self._push_order, "customers": self._push_customer, "order-cancels": self._push_cancel,
                   "products": self._push_product, "tickets": self.sac.ticket, "ticket-messages": self.sac.message,
                   "deliveries": self.sac.delivery}
        write = writers.get(entity)
        if write is None:
            raise ValueError(f"{self.name} cannot take {entity}")
        return [write(out) for out in batch]

    def _push_order(self, out: Outgoing) -> PushResult:
        # not idempotent: a lost answer raises AmbiguousError and the engine looks the order up
        resp = self.client.post("/orders", json=out.payload, idempotent=False)
        if resp.status == 201:
            return PushResult(out.key, "created", remote_id=self._created_id(resp, "number", "POST /orders"))
        return self._rejected(out.key, resp, sent=out.payload)

    def _push_customer(self, out: Outgoing) -> PushResult:
        # safe to repeat: a second create of the same document answers 409 with the existing code
        resp = self.client.post("/customers", json=out.payload, idempotent=True)
        if resp.status == 201:
            return PushResult(out.key, "created", remote_id=self._created_id(resp, "code", "POST /customers"))
        existing = resp.error_field("existing_code") if resp.status == 409 else None
        if existing:
            return PushResult(out.key, "exists", remote_id=str(existing))
        return self._rejected(out.key, resp)

    def _push_product(self, out: Outgoing) -> PushResult:
        """Where a channel is the catalogue's source: PUT the product, POST it when the back office lacks it.

        Both are safe to repeat: a PUT writes the same body again, a POST whose answer was lost
        answers 409 the second time and the PUT that follows writes it.
        """
        path = f"/products/{quote(out.key, safe='')}"
        resp = self.client.put(path, json=out.payload, idempotent=True)
        if resp.status == 200:
            return PushResult(out.key, "updated", remote_id=out.key)
        if resp.status != 404:
            return self._rejected(out.key, resp)
        resp = self.client.post("/products", json=out.payload, idempotent=True)
        if resp.status == 201:
            return PushResult(out.key, "created", remote_id=out.key)
        if resp.status == 409:  # created meanwhile (a lost answer): write this version over it
            resp = self.client.put(path, json=out.payload, idempotent=True)
            if resp.status == 200:
                return PushResult(out.key, "updated", remote_id=out.key)
        return self._rejected(out.key, resp)

    def _push_cancel(self, out: Outgoing) -> PushResult:
        # order-cancels: cancelling twice is harmless, so retries are allowed
        resp = self.client.post(f"/orders/{quote(out.key, safe='')}/cancel", json=out.payload, idempotent=True)
        if resp.status == 200:
            return PushResult(out.key, "updated")
        code = {409: "not_cancellable", 404: "not_found"}.get(resp.status)
        return self._rejected(out.key, resp, code)

    def _created_id(self, resp: HttpResponse, field: str, what: str) -> str:
        """The id of what a 201 created; without it we cannot tell which record it is."""
        try:
            body = resp.json()
        except TransientError:
            body = None
        value = body.get(field) if isinstance(body, dict) else None
        if value is None or isinstance(value, bool) or not str(value).strip():
            raise AmbiguousError(f"{self.name}: {what} answered 201 without its {field}; the record was created",
                                 status=resp.status, code="bad_response")
        return str(value)

    def _rejected(self, key: str, resp: HttpResponse, code: str | None = None,
                  sent: Mapping[str, Any] | None = None) -> PushResult:
        return PushResult(key, "rejected", reason_code=code or resp.error_code() or f"http_{resp.status}",
                          reason=reason(resp, self.client), missing=unknown_references(resp, sent or {}))

    def lookup(self, entity: str, **keys: str) -> Any:
        """An order by (external_id, channel) as {"number", "status"}; a customer by document; a ticket by
        (channel, external_id) as {"id", "messages"}."""
        if entity == "tickets":
            return self.sac.find_ticket(keys["channel"], keys["external_id"])
        if entity == "orders":
            what = "GET /orders (lookup)"
            resp = self.client.get("/orders", params={"external_id": keys["external_id"], "channel": keys["channel"]})
            if resp.status != 200:
                raise refused(self.client, what, resp)
            items = [i for i in body_of(self.client, what, resp)["items"]
                     if isinstance(i, dict) and i.get("number") is not None
                     and i.get("external_id") in (None, keys["external_id"])]
            if not items:
                return None
            return {"number": str(items[0]["number"]), "status": items[0].get("status")}
        if entity == "customers":
            what = "GET /customers (lookup)"
            document = normalize_document(keys["document"])  # the contract: "exact CPF/CNPJ lookup (digits only)"
            resp = self.client.get("/customers", params={"document": document, "limit": 1})
            if resp.status != 200:
                raise refused(self.client, what, resp)
            records = parse_items(body_of(self.client, what, resp)["items"], parse_customer, "code")
            found = [r for r in records if isinstance(r, Customer) and r.document == document]
            return found[0] if found else None
        if entity == "products":
            what = "GET /products/{code} (lookup)"
            resp = self.client.get(f"/products/{quote(keys['code'], safe='')}")
            if resp.status == 404:
                return None
            if resp.status != 200:
                raise refused(self.client, what, resp)
            body = resp.json()
            if not isinstance(body, dict):
                raise TransientError(f"{self.name}: {what}: the answer is not an object", code="bad_response")
            (record,) = parse_items([body], parse_product, "code")
            return None if isinstance(record, BadRecord) else record
        if entity in ("payment-methods", "groups", "sellers"):  # small tables: read through
            for page in self.pull(entity, None):
                for record in page.records:
                    if getattr(record, "code", None) == keys["code"]:
                        return record
            return None
        return None


# -- wire → model ----------------------------------------------------------------------------------
# The parsers below first try the well-formed shape with direct type tests (a feed is nearly all
# well-formed, and need/opt per field was ~15 % of a push's CPU); anything unusual goes through the
# need/opt chain, which alone decides what is wrong, so a bad record gets the same reason as ever.
_TEXT_OR_NONE = frozenset((str, type(None)))


def parse_product(item: dict[str, Any]) -> Product:
    """A product; its barcode is passed on as is (a bad EAN is the channel's to refuse, not a feed error)."""
    get = item.get
    code, name, active, unit = get("code"), get("description"), get("active"), get("unit")
    barcode, brand, group_code, ncm = get("barcode"), get("brand"), get("group_code"), get("ncm")
    weight, height, width, length = get("weight_kg"), get("height_cm"), get("width_cm"), get("length_cm")
    if (type(code) is str and type(name) is str and type(active) is bool and code.strip() and name.strip()
            and {type(unit), type(barcode), type(brand), type(group_code), type(ncm), type(weight), type(height),
                 type(width), type(length)} <= _TEXT_OR_NONE):
        # positional: a quarter faster than by keyword (the test of both paths catches a field reordered)
        return Product(code, name, active, barcode, brand, group_code, unit or "UN", ncm, weight, height, width, length)
    return _parse_product_checked(item)


def _parse_product_checked(item: dict[str, Any]) -> Product:
    return Product(
        code=need(item, "code"), name=need(item, "description"), active=need(item, "active", bool),
        barcode=opt(item, "barcode"), brand=opt(item, "brand"), group_code=opt(item, "group_code"),
        unit=opt(item, "unit") or "UN", ncm=opt(item, "ncm"), weight_kg=opt(item, "weight_kg"),
        height_cm=opt(item, "height_cm"), width_cm=opt(item, "width_cm"), length_cm=opt(item, "length_cm"),
    )


def parse_price(item: dict[str, Any]) -> Price:
    get = item.get
    code, scheduled, price_list, list_price = get("sku"), get("scheduled"), get("price_list"), get("list_price")
    if (type(code) is str and code.strip() and not scheduled and (scheduled is None or type(scheduled) is list)
            and list_price is not None and (price_list is None or type(price_list) is str)):
        promo_price = get("promo_price")
        # the same checks in the same order as the full path, which would pass every one before these
        return _not_negative(Price(
            code=code, list_price=parse_money(list_price, "list_price"),
            promo_price=None if promo_price is None else parse_money(promo_price, "promo_price"),
            promo_start=parse_time(get("promo_start"), "promo_start"),
            promo_end=parse_time(get("promo_end"), "promo_end"),
            price_list=price_list or "default",
        ))
    return _parse_price_checked(item)


def _not_negative(price: Price) -> Price:
    """A negative price is a mistake at the source, never something to put on sale: the record is refused."""
    if price.list_price >= 0 and (price.promo_price is None or price.promo_price >= 0) and not price.scheduled:
        return price  # the common case, without building the list below
    amounts = [("list_price", price.list_price), ("promo_price", price.promo_price)]
    amounts += [(f"scheduled[{i}].list_price", s.list_price) for i, s in enumerate(price.scheduled)]
    for label, amount in amounts:
        if amount is not None and amount < 0:
            raise MappingError("negative_price", f"{label}: {amount} is negative")
    return price


def _parse_price_checked(item: dict[str, Any]) -> Price:
    scheduled = []
    for i, entry in enumerate(opt(item, "scheduled", list) or []):
        if not isinstance(entry, dict):
            raise MappingError("bad_type", f"scheduled[{i}]: expected an object")
        scheduled.append(ScheduledPrice(need_money(entry, "list_price", f"scheduled[{i}].list_price"),
                                        need_time(entry, "starts_at", f"scheduled[{i}].starts_at")))
    return _not_negative(Price(
        code=need(item, "sku"), list_price=need_money(item, "list_price"),
        promo_price=opt_money(item, "promo_price"),
        promo_start=parse_time(item.get("promo_start"), "promo_start"),
        promo_end=parse_time(item.get("promo_end"), "promo_end"),
        scheduled=tuple(sorted(scheduled, key=lambda s: s.starts_at)),
        price_list=opt(item, "price_list") or "default",
    ))


MAX_QUANTITY = 10**12  # beyond any real stock, and within what SQLite stores as an integer


def parse_stock(item: dict[str, Any]) -> StockBalance:
    get = item.get
    code, warehouse, available, reserved = get("sku"), get("warehouse"), get("available"), get("reserved")
    if (type(available) is int and (reserved is None or type(reserved) is int) and type(code) is str
            and type(warehouse) is str and code.strip() and warehouse.strip()):
        reserved = reserved or 0
        if abs(available) <= MAX_QUANTITY and 0 <= reserved <= MAX_QUANTITY:
            return StockBalance(code, warehouse, available, reserved)
    return _parse_stock_checked(item)


def _parse_stock_checked(item: dict[str, Any]) -> StockBalance:
    available, reserved = need(item, "available", int), opt(item, "reserved", int) or 0
    if abs(available) > MAX_QUANTITY or abs(reserved) > MAX_QUANTITY:
        raise MappingError("bad_quantity", f"available {available} / reserved {reserved} is not a stock quantity")
    # a negative balance is real (a warehouse sold more than it had: the contract allows it) and lowers the sum,
    # which is never sent below 0; a negative reservation would add stock nobody has: refused
    if reserved < 0:
        raise MappingError("negative_quantity", f"reserved {reserved}: a reservation is never negative")
    return StockBalance(need(item, "sku"), need(item, "warehouse"), available, reserved)


def parse_customer(item: dict[str, Any]) -> Customer:
    get = item.get
    document, name, code, email = get("document"), get("name"), get("code"), get("email")
    phone, birth_date, registration = get("phone"), get("birth_date"), get("state_registration")
    if (type(document) is str and type(name) is str and document.strip() and name.strip()
            and {type(code), type(email), type(phone), type(birth_date), type(registration)} <= _TEXT_OR_NONE):
        return Customer(document=normalize_document(document), name=name, code=code, email=email, phone=phone,
                        birth_date=birth_date, state_registration=registration, address=parse_address(get("address")))
    return _parse_customer_checked(item)


def _parse_customer_checked(item: dict[str, Any]) -> Customer:
    return Customer(
        document=normalize_document(need(item, "document")), name=need(item, "name"), code=opt(item, "code"),
        email=opt(item, "email"), phone=opt(item, "phone"), birth_date=opt(item, "birth_date"),
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
    """A fulfilment event; whether its NF-e key or tracking suit a channel is that channel's call."""
    kind = need(item, "type")
    if kind not in EVENT_ORDER:
        raise MappingError("bad_value", f"type: unknown event type {kind[:40]!r}")
    invoice = shipment = None
    inv = opt(item, "invoice", dict)
    if inv is not None:
        invoice = Invoice(str(need(inv, "key", (str, int))), str(need(inv, "number", (str, int))),
                          str(opt(inv, "series", (str, int)) or "1"),
                          parse_time(inv.get("issued_at"), "invoice.issued_at"),
                          opt_money(inv, "total", "invoice.total"), opt(inv, "xml_url"))
    shp = opt(item, "shipment", dict)
    if shp is not None:
        shipment = Shipment(need(shp, "carrier"), need(shp, "tracking_code"), opt(shp, "tracking_url"),
                            parse_time(shp.get("shipped_at"), "shipment.shipped_at"))
    return OrderEvent(
        id=str(need(item, "id", (str, int))), order_number=str(need(item, "order_number", (str, int))),
        channel=need(item, "channel"), remote_order_id=need(item, "external_id"), type=kind,
        occurred_at=need_time(item, "occurred_at"), invoice=invoice, shipment=shipment,
        delivered_at=parse_time(item.get("delivered_at"), "delivered_at"),
    )


PARSERS: dict[str, tuple[Callable[[dict[str, Any]], Any], str | KeyOf]] = {
    "products": (parse_product, "code"), "prices": (parse_price, "sku"), "stock": (parse_stock, "sku"),
    "customers": (parse_customer, lambda i: i.get("code") or i.get("document")),
    "payment-methods": (parse_payment_method, "code"), "groups": (parse_group, "code"),
    "sellers": (parse_seller, "code"), "order-events": (parse_event, "id"),
    "ticket-events": (parse_ticket_event, "id"),
}


# -- model → wire ----------------------------------------------------------------------------------
def order_in(record: BackOfficeOrder) -> dict[str, Any]:
    """OrderIn of the contract: the channel's order with its resolved customer and debited warehouse."""
    order = record.order
    if not order.remote_id:
        raise MappingError("missing_field", "external_id: the channel's order id is required")
    if not record.customer_code:
        raise MappingError("missing_field", "customer_code: the order's customer is not resolved")
    if not order.items:
        raise MappingError("missing_field", "items: an order needs at least one item")
    for i, item in enumerate(order.items):
        if item.quantity < 1:
            raise MappingError("bad_quantity", f"items[{i}].quantity: {item.quantity} is not a quantity")
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
    if order.created_at is not None:  # the contract's created_at is not nullable: absent when unknown
        body["created_at"] = time_str(order.created_at)
    return body


def product_in(product: Product) -> dict[str, Any]:
    """A Product to create or update (a channel is the catalogue's source): every contract field, no extras."""
    if not product.code.strip() or len(product.code) > 30:
        raise MappingError("bad_value", f"code: {product.code[:40]!r} is not a back office code (1 to 30 characters)")
    if not product.name.strip():
        raise MappingError("missing_field", "description: the product's name is required")
    return {"code": product.code, "description": product.name[:120], "barcode": product.barcode,
            "brand": product.brand, "group_code": product.group_code, "unit": product.unit or "UN",
            "ncm": product.ncm, "weight_kg": product.weight_kg, "height_cm": product.height_cm,
            "width_cm": product.width_cm, "length_cm": product.length_cm, "active": product.active}


def _order_cancel(record: Mapping[str, Any]) -> Outgoing:
    number = str(record.get("number") or "").strip()
    if not number:
        raise MappingError("missing_field", "number: the back office order number is required")
    return Outgoing(number, {"reason": str(record.get("reason") or "cancelled on the channel")})


# one mapper per entity the back office takes: model record → (key, wire payload)
PREPARERS: dict[str, Callable[[Any], Outgoing]] = {
    "orders": lambda record: Outgoing(record.order.remote_id, order_in(record)),
    "customers": lambda record: Outgoing(record.document, customer_out(record)),
    "order-cancels": _order_cancel,
    "products": lambda record: Outgoing(record.code, product_in(record)),
    **SAC_PREPARERS,
}


def customer_out(customer: Customer) -> dict[str, Any]:
    """A Customer to create: no code (the back office assigns it); optional parts only when known."""
    if not customer.document:
        raise MappingError("missing_field", "document: a customer needs a CPF/CNPJ")
    if not customer.name or not customer.name.strip():
        raise MappingError("missing_field", "name: a customer needs a name")
    # the contract's pattern is digits only: a document as people type it goes as its digits
    body: dict[str, Any] = {"document": normalize_document(customer.document), "name": customer.name,
                            "email": customer.email, "phone": customer.phone}
    if customer.birth_date is not None:
        body["birth_date"] = customer.birth_date
    if customer.state_registration is not None:
        body["state_registration"] = customer.state_registration
    if customer.address is not None:
        addr = customer.address
        body["address"] = {k: getattr(addr, k) for k in ("street", "number", "complement", "district", "city",
                                                         "state", "zip", "country") if getattr(addr, k) is not None}
    return body


def _loader(items: list[Any], parse: Callable[[dict[str, Any]], Any], key_of: Any,
            raw: bytes) -> Callable[[], list[Any]]:
    """The records of one feed page, parsed when the engine asks for them."""
    return lambda: parse_items(items, parse, key_of, raw=raw)


# the fields of a written record that name another record, and what kind of record each names
REFERENCE_FIELDS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"items\[(\d+)\]\.sku"), "product"),
    (re.compile(r"payments\[(\d+)\]\.method_code"), "payment method"),
    (re.compile(r"customer_code"), "customer"),
    (re.compile(r"seller_code"), "seller"),
    (re.compile(r"store_code"), "store"),
    (re.compile(r"warehouse"), "warehouse"),
    (re.compile(r"group_code"), "group"),
)
# how the back office words a reference it does not have (its 422 details: "unknown product 'X'")
UNKNOWN_WORDING = re.compile(r"\bunknown\b|\bnot known\b|\bnot found\b", re.IGNORECASE)


def unknown_references(resp: HttpResponse, sent: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """The (kind, reference) pairs a 422 says the back office does not know, read from the record sent.

    The details name the field (``items[2].sku``); the reference is that field's value in what we
    sent, so nothing depends on how the message quotes it.
    """
    details = resp.error_field("details")
    found: list[tuple[str, str]] = []
    for detail in details if isinstance(details, list) else []:
        if not isinstance(detail, dict) or not UNKNOWN_WORDING.search(str(detail.get("message") or "")):
            continue
        field = str(detail.get("field") or "")
        for pattern, kind in REFERENCE_FIELDS:
            match = pattern.fullmatch(field)
            if match is None:
                continue
            value = _value_at(sent, field)
            if isinstance(value, str | int) and not isinstance(value, bool) and (kind, str(value)) not in found:
                found.append((kind, str(value)))
            break
    return tuple(found)


def _value_at(record: Mapping[str, Any], path: str) -> Any:
    """The value at a details path (``payments[0].method_code``) of a record; None when it is not there."""
    value: Any = record
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        if part.startswith("["):
            index = int(part[1:-1])
            value = value[index] if isinstance(value, list) and index < len(value) else None
        else:
            value = value.get(part) if isinstance(value, Mapping) else None
        if value is None:
            return None
    return value
