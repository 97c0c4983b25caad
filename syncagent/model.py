"""Plain dataclasses for every entity the engine moves, in the hub's (back office's) terms.

Connectors parse their wire format into these and map these into their wire format; the
engine only ever sees these and the mapped payloads (plain dicts) it fingerprints.
Money is a `Decimal` with two places; times are timezone-aware UTC datetimes.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from syncagent import entities, fastjson
from syncagent.errors import MappingError

# Entities (flows) the engine knows, as `syncagent.entities` defines them; order is the default run order.
CATALOGUE_ENTITIES = entities.CATALOGUE
ALL_FLOWS = entities.FLOWS

CENT = Decimal("0.01")


def fingerprint(payload: Any) -> str:
    """sha256 of canonical JSON: equal payloads give equal fingerprints, whatever the key order.

    The bytes are those of json.dumps(payload, sort_keys=True, separators=(",", ":"),
    ensure_ascii=False, default=str), written by orjson where it writes the same (fastjson):
    fingerprints already in a journal stay valid.
    """
    return hashlib.sha256(fastjson.canonical(payload)).hexdigest()


def parse_money(value: Any, field_name: str) -> Decimal:
    """A decimal string with two places ("129.90"); anything else is a mapping error."""
    if not isinstance(value, str):
        raise MappingError("bad_money", f"{field_name}: expected a decimal string, found {type(value).__name__}")
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise MappingError("bad_money", f"{field_name}: {value[:40]!r} is not a decimal amount") from None
    if not amount.is_finite() or amount != amount.quantize(CENT) or abs(amount) > Decimal("1e12"):
        raise MappingError("bad_money", f"{field_name}: {value[:40]!r} is not an amount with two places")
    return amount.quantize(CENT)


def money_str(amount: Decimal) -> str:
    return str(amount.quantize(CENT))


def parse_time(value: Any, field_name: str, *, required: bool = False) -> datetime | None:
    """ISO-8601 date-time to an aware UTC datetime; naive times are taken as UTC."""
    if value is None:
        if required:
            raise MappingError("missing_field", f"{field_name} is required")
        return None
    if not isinstance(value, str):
        raise MappingError("bad_time", f"{field_name}: expected a date-time string")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise MappingError("bad_time", f"{field_name}: {value[:40]!r} is not an ISO date-time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def time_str(moment: datetime | None) -> str | None:
    """RFC 3339 in UTC, carrying the instant exactly: the microseconds are written when there are any.

    A whole second keeps its short form ("...:46Z"), so payloads (and their fingerprints) of
    whole-second times are those earlier versions sent; "...:46.701941Z" is never cut to ":46Z".
    """
    if moment is None:
        return None
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if moment.microsecond else "%Y-%m-%dT%H:%M:%SZ")


def time_key(moment: datetime | None) -> str | None:
    """A fixed-width UTC text whose string order is the order of the instants (journal comparisons)."""
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class BadRecord:
    """A feed record that could not be parsed or mapped: it goes to quarantine, the page goes on."""

    key: str
    code: str
    reason: str
    raw: Any = None


@dataclass(frozen=True, slots=True)
class Product:
    code: str
    name: str
    active: bool
    barcode: str | None = None
    brand: str | None = None
    group_code: str | None = None
    unit: str = "UN"
    ncm: str | None = None
    weight_kg: str | None = None
    height_cm: str | None = None
    width_cm: str | None = None
    length_cm: str | None = None

    @property
    def key(self) -> str:
        return self.code


@dataclass(frozen=True, slots=True)
class ScheduledPrice:
    list_price: Decimal
    starts_at: datetime


@dataclass(frozen=True, slots=True)
class EffectivePrice:
    """The price in force at one instant, for channels that hold only that."""

    price: Decimal
    promo_price: Decimal | None
    promo_until: datetime | None


@dataclass(frozen=True, slots=True)
class Price:
    code: str
    list_price: Decimal
    promo_price: Decimal | None = None
    promo_start: datetime | None = None
    promo_end: datetime | None = None
    scheduled: tuple[ScheduledPrice, ...] = ()
    price_list: str = "default"

    @property
    def key(self) -> str:
        return self.code

    def list_price_at(self, now: datetime) -> Decimal:
        current = self.list_price
        started = [s for s in self.scheduled if s.starts_at <= now]
        if started:
            current = max(started, key=lambda s: s.starts_at).list_price
        return current

    def promo_active(self, now: datetime) -> bool:
        if self.promo_price is None:
            return False
        if self.promo_start is not None and now < self.promo_start:
            return False
        return not (self.promo_end is not None and now >= self.promo_end)

    def effective(self, now: datetime) -> EffectivePrice:
        if self.promo_active(now):
            return EffectivePrice(self.list_price_at(now), self.promo_price, self.promo_end)
        return EffectivePrice(self.list_price_at(now), None, None)

    def next_boundary(self, now: datetime) -> datetime | None:
        """The next instant the price in force changes although the record does not."""
        moments = [s.starts_at for s in self.scheduled]
        if self.promo_price is not None:
            moments += [m for m in (self.promo_start, self.promo_end) if m is not None]
        future = [m for m in moments if m > now]
        return min(future) if future else None


@dataclass(frozen=True, slots=True)
class StockBalance:
    """One (sku, warehouse) row of the back office stock feed."""

    code: str
    warehouse: str
    available: int
    reserved: int = 0

    @property
    def key(self) -> str:
        return f"{self.code}@{self.warehouse}"


@dataclass(frozen=True, slots=True)
class StockLevel:
    """What a channel gets: the sum over its warehouses, minus reserved and safety stock, >= 0."""

    code: str
    available: int
    location: str | None = None  # the channel's own warehouse, for channels that hold stock per warehouse

    @property
    def key(self) -> str:
        return f"{self.code}@{self.location}" if self.location else self.code


@dataclass(frozen=True, slots=True)
class Address:
    street: str | None = None
    number: str | None = None
    complement: str | None = None
    district: str | None = None
    city: str | None = None
    state: str | None = None
    zip: str | None = None
    country: str = "BR"


@dataclass(frozen=True, slots=True)
class Customer:
    """A back office customer (code set) or one to create there (code None)."""

    document: str
    name: str
    code: str | None = None
    email: str | None = None
    phone: str | None = None
    birth_date: str | None = None
    state_registration: str | None = None
    address: Address | None = None

    @property
    def key(self) -> str:
        return self.code or self.document


@dataclass(frozen=True, slots=True)
class ChannelCustomer:
    """A customer registered on a channel (e.g. on a tablet), to bind or create in the back office."""

    remote_id: str
    document: str
    name: str
    linked_code: str | None = None
    email: str | None = None
    phone: str | None = None
    address: Address | None = None
    version: str = ""

    @property
    def key(self) -> str:
        return self.remote_id


@dataclass(frozen=True, slots=True)
class PaymentMethod:
    code: str
    name: str
    type: str
    active: bool
    max_installments: int | None = None

    @property
    def key(self) -> str:
        return self.code


@dataclass(frozen=True, slots=True)
class Group:
    code: str
    name: str
    active: bool
    parent_code: str | None = None

    @property
    def key(self) -> str:
        return self.code


@dataclass(frozen=True, slots=True)
class Seller:
    code: str
    name: str
    active: bool
    email: str | None = None
    store_code: str | None = None

    @property
    def key(self) -> str:
        return self.code


@dataclass(frozen=True, slots=True)
class OrderItem:
    code: str
    quantity: int
    unit_price: Decimal
    discount: Decimal = Decimal("0.00")
    # the VAT rate in percent the channel charged on this line (23.00), for back offices that invoice
    tax_rate: Decimal | None = None


@dataclass(frozen=True, slots=True)
class OrderPayment:
    method_code: str
    amount: Decimal
    installments: int = 1


@dataclass(frozen=True, slots=True)
class Order:
    """An order as a channel holds it. `status` is the channel's own word for it."""

    remote_id: str
    status: str
    items: tuple[OrderItem, ...]
    total: Decimal
    payments: tuple[OrderPayment, ...] = ()
    number: str | None = None
    customer_code: str | None = None
    channel_customer_id: str | None = None
    seller_code: str | None = None
    store_code: str | None = None
    shipping: Decimal = Decimal("0.00")
    notes: str | None = None
    created_at: datetime | None = None
    version: str = ""
    # what a back office that issues the invoice itself needs of the sale; None: the channel does not say
    shipping_total: Decimal | None = None  # shipping charged, taxes included
    currency: str | None = None  # ISO 4217
    customer_document: str | None = None  # the buyer's tax id as given at checkout (a NIF, a VAT number)
    customer_name: str | None = None
    customer_email: str | None = None
    customer_country: str | None = None  # ISO 3166-1 alpha-2 of the billing address (OSS VAT)

    @property
    def key(self) -> str:
        return self.remote_id


@dataclass(frozen=True, slots=True)
class BackOfficeOrder:
    """What the engine asks the back office to create: the order, its channel and resolved refs."""

    channel: str
    order: Order
    customer_code: str
    warehouse: str | None

    @property
    def key(self) -> str:
        return self.order.remote_id


@dataclass(frozen=True, slots=True)
class Invoice:
    key: str
    number: str
    series: str
    issued_at: datetime | None = None
    total: Decimal | None = None
    xml_url: str | None = None


@dataclass(frozen=True, slots=True)
class Shipment:
    carrier: str
    tracking_code: str
    tracking_url: str | None = None
    shipped_at: datetime | None = None


EVENT_ORDER = {"invoiced": 1, "shipped": 2, "delivered": 3, "cancelled": 9}


@dataclass(frozen=True, slots=True)
class OrderEvent:
    """A fulfilment event of the back office on an order that came from a channel."""

    id: str
    order_number: str
    channel: str
    remote_order_id: str
    type: str
    occurred_at: datetime
    invoice: Invoice | None = None
    shipment: Shipment | None = None
    delivered_at: datetime | None = None

    @property
    def key(self) -> str:
        return self.id

    @property
    def rank(self) -> int:
        return EVENT_ORDER[self.type]


class Page:
    """One page of a feed. `cursor` resumes after this page (None: keep the previous one).

    A source read again and again (a catalogue) may give a page undecoded: its ``digest`` (of the
    bytes as received) in `extra`, and `decode`, which reads the body once and answers the next
    cursor and the loader of the records (setting ``extra["items"]``). Reading `cursor` decodes it,
    reading `records` parses them. The engine recognises a page it recorded whole before by its
    digest, gives it the cursor it remembers (`recognised`) and never decodes it; the source needs
    to know nothing of what the engine remembers.
    """

    __slots__ = ("_records", "_cursor", "extra", "_load", "_decode", "_lock")

    def __init__(self, records: list[Any] | None, cursor: str | None = None, extra: dict[str, Any] | None = None, *,
                 load: Callable[[], list[Any]] | None = None,
                 decode: Callable[[], tuple[str | None, Callable[[], list[Any]]]] | None = None) -> None:
        self._records = records if load is None and decode is None else None
        self._cursor: str | None | object = _UNDECODED if decode is not None else cursor
        self.extra: dict[str, Any] = extra if extra is not None else {}
        self._load = load
        self._decode = decode
        # steps of several channels may share one page (one back office read): it is decoded and parsed once
        self._lock = threading.Lock() if load is not None or decode is not None else None

    def _decoded(self) -> None:
        """Under the page's lock: the body read, once."""
        if self._decode is not None:
            cursor, self._load = self._decode()
            self._decode = None
            if self._cursor is _UNDECODED:
                self._cursor = cursor

    @property
    def cursor(self) -> str | None:
        if self._cursor is _UNDECODED:
            assert self._lock is not None
            with self._lock:
                self._decoded()
        return self._cursor  # type: ignore[return-value]

    @property
    def records(self) -> list[Any]:
        if self._records is None:
            assert self._lock is not None
            with self._lock:
                if self._records is None:
                    self._decoded()
                    records = self._load() if self._load is not None else []
                    self._load = None
                    self._records = records
        return self._records

    @property
    def parsed(self) -> bool:
        return self._records is not None

    def recognised(self, cursor: str | None, items: int) -> None:
        """The bytes of a page met before: its cursor and size as remembered, without decoding it."""
        if self._cursor is _UNDECODED and self._lock is not None:
            with self._lock:
                if self._cursor is _UNDECODED:
                    self.extra.setdefault("items", items)
                    self._cursor = cursor

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Page):
            return NotImplemented
        return (self.records, self.cursor, self.extra) == (other.records, other.cursor, other.extra)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        shown = f"{len(self._records)} records" if self._records is not None else "unparsed"
        cursor = "undecoded" if self._cursor is _UNDECODED else repr(self._cursor)
        return f"Page({shown}, cursor={cursor}, extra={self.extra!r})"


_UNDECODED = object()  # a page's cursor before its body is read


# what people type between the digits of a CPF/CNPJ: dots, dashes (a phone keyboard's too), slashes, spaces
_DOCUMENT_PUNCTUATION = re.compile(r"[.\-\u2010-\u2015\u2212/\s]+")


def normalize_document(text: str) -> str:
    """A CPF/CNPJ as people type it (`436.555.472-77`, `12.345.678/0001-95`) reduced to its digits.

    Only punctuation is dropped: a letter or any other character stays, so validation refuses the
    document with its reason instead of binding it to some other number.
    """
    if text.isdigit() and text.isascii():
        return text
    return _DOCUMENT_PUNCTUATION.sub("", text)


def is_document(text: str) -> bool:
    """A normalised CPF (11) or CNPJ (14) of ASCII digits with valid check digits."""
    return text.isascii() and len(text) in (11, 14) and valid_document(text)


def valid_cpf(digits: str) -> bool:
    if len(digits) != 11 or not digits.isdigit() or digits == digits[0] * 11:
        return False
    for size in (9, 10):
        total = sum(int(d) * w for d, w in zip(digits[:size], range(size + 1, 1, -1), strict=True))
        check = (total * 10) % 11 % 10
        if check != int(digits[size]):
            return False
    return True


def valid_cnpj(digits: str) -> bool:
    if len(digits) != 14 or not digits.isdigit() or digits == digits[0] * 14:
        return False
    weights = [5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2]
    for size in (12, 13):
        w = weights if size == 12 else [6, *weights]
        total = sum(int(d) * k for d, k in zip(digits[:size], w, strict=True))
        check = 11 - total % 11
        check = 0 if check >= 10 else check
        if check != int(digits[size]):
            return False
    return True


def valid_document(digits: str) -> bool:
    return valid_cpf(digits) if len(digits) == 11 else valid_cnpj(digits)


def valid_ean(code: str) -> bool:
    if not code.isdigit() or len(code) not in (8, 12, 13, 14):
        return False
    body, check = code[:-1], int(code[-1])
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10 == check


def price_to_json(price: Price) -> str:
    """Serialize a price for the journal (to re-send it when its next boundary comes)."""
    return json.dumps(
        {
            "code": price.code, "list_price": money_str(price.list_price),
            "promo_price": money_str(price.promo_price) if price.promo_price is not None else None,
            "promo_start": time_str(price.promo_start), "promo_end": time_str(price.promo_end),
            "scheduled": [[money_str(s.list_price), time_str(s.starts_at)] for s in price.scheduled],
            "price_list": price.price_list,
        },
        sort_keys=True,
    )


def price_from_json(text: str) -> Price:
    data = json.loads(text)
    return Price(
        code=data["code"], list_price=Decimal(data["list_price"]),
        promo_price=Decimal(data["promo_price"]) if data["promo_price"] is not None else None,
        promo_start=parse_time(data["promo_start"], "promo_start"), promo_end=parse_time(data["promo_end"], "promo_end"),
        scheduled=tuple(ScheduledPrice(Decimal(p), parse_time(t, "starts_at", required=True)) for p, t in data["scheduled"]),  # type: ignore[arg-type]
        price_list=data["price_list"],
    )


def order_from_dict(data: dict[str, Any]) -> Order:
    """Rebuild an `Order` from its quarantined JSON view (dataclass fields, money as strings)."""
    return Order(
        remote_id=data["remote_id"], status=data["status"], total=Decimal(str(data["total"])),
        items=tuple(OrderItem(i["code"], int(i["quantity"]), Decimal(str(i["unit_price"])),
                              Decimal(str(i.get("discount") or "0.00")), _decimal_or_none(i.get("tax_rate")))
                    for i in data["items"]),
        payments=tuple(OrderPayment(p["method_code"], Decimal(str(p["amount"])), int(p.get("installments") or 1))
                       for p in data.get("payments") or ()),
        number=data.get("number"), customer_code=data.get("customer_code"),
        channel_customer_id=data.get("channel_customer_id"), seller_code=data.get("seller_code"),
        store_code=data.get("store_code"), shipping=Decimal(str(data.get("shipping") or "0.00")),
        notes=data.get("notes"), created_at=parse_time(data.get("created_at"), "created_at"),
        version=str(data.get("version") or ""), shipping_total=_decimal_or_none(data.get("shipping_total")),
        currency=data.get("currency"), customer_document=data.get("customer_document"),
        customer_name=data.get("customer_name"), customer_email=data.get("customer_email"),
        customer_country=data.get("customer_country"),
    )


def _decimal_or_none(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def channel_customer_from_dict(data: dict[str, Any]) -> ChannelCustomer:
    address = data.get("address")
    return ChannelCustomer(
        remote_id=data["remote_id"], document=data["document"], name=data["name"],
        linked_code=data.get("linked_code"), email=data.get("email"), phone=data.get("phone"),
        address=Address(**address) if isinstance(address, dict) else None, version=str(data.get("version") or ""),
    )
