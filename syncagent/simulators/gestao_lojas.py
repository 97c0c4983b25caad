"""Simulator of the back office (Gestão de Lojas), to ../shared/contracts/gestao-lojas/openapi.yaml.

As strict as a real one, so that what passes here passes there: OAuth2 client-credentials tokens
that expire (401 `invalid_token`), keyset change feeds with opaque cursors where every write moves
a record to the end of its feed, `POST /orders` NOT idempotent (each POST is a new order with the
next number), orders validated field by field (422 with `details`), stock debited by each order
and given back on cancel, 409 with `existing_code` for a duplicate customer document, fulfilment
events only in the order invoiced → shipped → delivered.

It is also fast, because benchmarks run it with up to a million products: each feed table is
clustered by its change counter (`seq` is the rowid), so a page is one range scan of `limit`
rows; records are stored as the JSON the feed serves and pages are that JSON joined, never parsed
and dumped again. Seeding is `executemany` in one transaction, under a rollback journal rather
than WAL (a new file: every page is written once), with the indexes built afterwards; the seed's
catalogue JSON comes from templates, and from PARALLEL_FROM records a worker process makes the
rows, chunk by chunk, while this one inserts them.

Seeded deterministically from `seeddata`, so the channel simulators seeded with the same seed name
products, customers, sellers and payment methods that exist here. Admin endpoints under /_admin
(no token, never faulted) let tests change any record, plant legacy junk (admin bodies are checked
for JSON types only), add fulfilment events and read every order.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import pickle
import random
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import lru_cache
from itertools import chain, cycle, repeat
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

from syncagent.model import valid_cnpj, valid_cpf, valid_ean
from syncagent.simulators import seeddata
from syncagent.simulators.common import (
    HttpError,
    Request,
    Response,
    SimApp,
    json_type,
    valid_date_time,
)

SCHEMA_VERSION = "2"
DEFAULT_LIMIT, MAX_LIMIT = 200, 1000
MAX_QUANTITY = 999_999
MAX_MONEY = Decimal("1e12")
CENT = Decimal("0.01")
ZERO = Decimal("0.00")
ORDER_NUMBER_BASE = 100_000

MONEY = re.compile(r"-?[0-9]+\.[0-9]{2}")
DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?")
INTEGER = re.compile(r"[0-9]+")
NCM = re.compile(r"[0-9]{8}")
EAN = re.compile(r"[0-9]{8}|[0-9]{13}|[0-9]{14}")
DOCUMENT = re.compile(r"[0-9]{11}|[0-9]{14}")
STATE = re.compile(r"[A-Z]{2}")
ZIP = re.compile(r"[0-9]{8}")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
NFE_KEY = re.compile(r"[0-9]{44}")

# feed path -> table; every feed table has `seq INTEGER PRIMARY KEY` (its change counter) and `data`
FEEDS = {
    "products": "products", "prices": "prices", "stock": "stock", "customers": "customers",
    "payment-methods": "payment_methods", "groups": "item_groups", "sellers": "sellers", "order-events": "events",
}
PAYMENT_TYPES = ("cash", "credit_card", "debit_card", "pix", "boleto", "store_credit", "voucher")
ORDER_STATUSES = ("open", "invoiced", "shipped", "delivered", "cancelled")
# event type -> the order status it requires
EVENT_AFTER = {"invoiced": "open", "shipped": "invoiced", "delivered": "shipped", "cancelled": "open"}
CARRIERS = ("Correios", "Jadlog", "Total Express")
STORES = frozenset({s for _, _, s in seeddata.WAREHOUSES if s} | set(seeddata.STORES))
OPTIONS = ("client_id", "client_secret", "token_ttl", "customers")

SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (token TEXT PRIMARY KEY, expires REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS products (seq INTEGER PRIMARY KEY, code TEXT NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS prices (seq INTEGER PRIMARY KEY, sku TEXT NOT NULL, price_list TEXT NOT NULL,
    data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS stock (seq INTEGER PRIMARY KEY, sku TEXT NOT NULL, warehouse TEXT NOT NULL,
    data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS customers (seq INTEGER PRIMARY KEY, code TEXT NOT NULL, document TEXT NOT NULL,
    data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS payment_methods (seq INTEGER PRIMARY KEY, code TEXT NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS item_groups (seq INTEGER PRIMARY KEY, code TEXT NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sellers (seq INTEGER PRIMARY KEY, code TEXT NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS warehouses (code TEXT PRIMARY KEY, data TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, order_number TEXT NOT NULL,
    data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS orders (created_seq INTEGER PRIMARY KEY, number TEXT NOT NULL, channel TEXT NOT NULL,
    external_id TEXT NOT NULL, status TEXT NOT NULL, created REAL NOT NULL, cancel_reason TEXT, data TEXT NOT NULL);
"""
# built after the seed (a bulk load is faster without them); `seq` is each index's implicit last column
INDEXES = """
CREATE UNIQUE INDEX IF NOT EXISTS products_code ON products (code);
CREATE UNIQUE INDEX IF NOT EXISTS prices_key ON prices (sku, price_list);
CREATE INDEX IF NOT EXISTS prices_list ON prices (price_list);
CREATE UNIQUE INDEX IF NOT EXISTS stock_key ON stock (sku, warehouse);
CREATE INDEX IF NOT EXISTS stock_warehouse ON stock (warehouse);
CREATE UNIQUE INDEX IF NOT EXISTS customers_code ON customers (code);
CREATE UNIQUE INDEX IF NOT EXISTS customers_document ON customers (document);
CREATE UNIQUE INDEX IF NOT EXISTS payment_methods_code ON payment_methods (code);
CREATE UNIQUE INDEX IF NOT EXISTS item_groups_code ON item_groups (code);
CREATE UNIQUE INDEX IF NOT EXISTS sellers_code ON sellers (code);
CREATE UNIQUE INDEX IF NOT EXISTS events_id ON events (id);
CREATE UNIQUE INDEX IF NOT EXISTS orders_number ON orders (number);
CREATE INDEX IF NOT EXISTS orders_external ON orders (channel, external_id);
"""

ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
Detail = dict[str, str]

# -- schemas ---------------------------------------------------------------------------------------
# Field = (name, kind, required, nullable), in the contract's order. The kind decides the JSON type
# (checked everywhere) and the value rules (checked on the API, not on admin calls).
Field = tuple[str, str, bool, bool]
PRODUCT: tuple[Field, ...] = (
    ("code", "code", True, False), ("description", "description", True, False), ("barcode", "ean", False, True),
    ("brand", "str", False, True), ("group_code", "str", False, True), ("unit", "text", False, False),
    ("ncm", "ncm", False, True), ("weight_kg", "decimal", False, True), ("height_cm", "decimal", False, True),
    ("width_cm", "decimal", False, True), ("length_cm", "decimal", False, True), ("active", "bool", True, False),
)
ADDRESS: tuple[Field, ...] = (
    ("street", "str", False, False), ("number", "str", False, False), ("complement", "str", False, True),
    ("district", "str", False, False), ("city", "str", False, False), ("state", "state", False, False),
    ("zip", "zip", False, False), ("country", "str", False, False),
)
CUSTOMER: tuple[Field, ...] = (
    ("document", "document", True, False), ("name", "text", True, False), ("email", "email", False, True),
    ("phone", "str", False, True), ("birth_date", "date", False, True), ("state_registration", "str", False, True),
    ("address", "address", False, True),
)
PRICE: tuple[Field, ...] = (
    ("price_list", "text", False, False), ("list_price", "money", True, False), ("promo_price", "money", False, True),
    ("promo_start", "date-time", False, True), ("promo_end", "date-time", False, True),
    ("scheduled", "list", False, False),
)
PAYMENT_METHOD: tuple[Field, ...] = (
    ("description", "text", True, False), ("type", "payment-type", True, False),
    ("max_installments", "positive", False, False), ("active", "bool", True, False),
)
GROUP: tuple[Field, ...] = (
    ("description", "text", True, False), ("parent_code", "str", False, True), ("active", "bool", True, False),
)
SELLER: tuple[Field, ...] = (
    ("name", "text", True, False), ("email", "email", False, True), ("store_code", "str", False, False),
    ("commission_pct", "decimal", False, True), ("active", "bool", True, False),
)
ORDER_IN: tuple[Field, ...] = (
    ("external_id", "text", True, False), ("channel", "text", True, False), ("customer_code", "text", True, False),
    ("seller_code", "str", False, True), ("store_code", "str", False, True), ("warehouse", "str", False, True),
    ("created_at", "date-time", False, False), ("items", "list", True, False), ("payments", "list", True, False),
    ("shipping", "money", False, False), ("total", "money", True, False), ("notes", "str", False, True),
)
ORDER_ITEM: tuple[Field, ...] = (
    ("sku", "text", True, False), ("quantity", "quantity", True, False), ("unit_price", "money", True, False),
    ("discount", "money", False, False),
)
ORDER_PAYMENT: tuple[Field, ...] = (
    ("method_code", "text", True, False), ("amount", "money", True, False), ("installments", "positive", False, False),
)
STOCK: tuple[Field, ...] = (("available", "int", True, False), ("reserved", "int", False, False))
EVENT: tuple[Field, ...] = (
    ("type", "event-type", True, False), ("occurred_at", "date-time", False, False),
    ("invoice", "object", False, True), ("shipment", "object", False, True), ("delivered_at", "date-time", False, True),
)
INVOICE: tuple[Field, ...] = (
    ("key", "nfe-key", False, False), ("number", "text", False, False), ("series", "text", False, False),
    ("issued_at", "date-time", False, False), ("total", "money", False, False), ("xml_url", "str", False, True),
)
SHIPMENT: tuple[Field, ...] = (
    ("carrier", "text", False, False), ("tracking_code", "text", False, False), ("tracking_url", "str", False, True),
    ("shipped_at", "date-time", False, False),
)
CONFIG: tuple[Field, ...] = (("client_id", "text", False, False), ("client_secret", "text", False, False),
                             ("token_ttl", "positive", False, False))
SCHEDULED: tuple[Field, ...] = (("list_price", "money", True, False), ("starts_at", "date-time", True, False))

JSON_TYPES: dict[str, tuple[type, ...]] = {"bool": (bool,), "int": (int,), "quantity": (int,), "positive": (int,),
                                           "list": (list,), "object": (dict,), "address": (dict,)}
TYPE_NAMES = {bool: "a boolean", int: "an integer", list: "an array", dict: "an object", str: "a string"}
ENUMS = {"payment-type": PAYMENT_TYPES, "event-type": tuple(EVENT_AFTER)}


# -- values ----------------------------------------------------------------------------------------
def now_iso() -> str:
    """UTC with milliseconds and Z: updated_at of every write."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def safe(text: Any, size: int = 60) -> str:
    """User text quoted in a message: short and always encodable (no lone surrogates)."""
    return str(text)[:size].encode("utf-8", "replace").decode("utf-8")






def valid_date(text: str) -> bool:
    if not DATE.fullmatch(text):
        return False
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


@lru_cache(maxsize=1 << 16)
def valid_document(digits: str) -> bool:
    """A CPF (11 digits) or CNPJ (14 digits) with valid check digits."""
    return (len(digits) == 11 and valid_cpf(digits)) or (len(digits) == 14 and valid_cnpj(digits))


def nfe_check_digit(digits43: str) -> str:
    """Mod-11 check digit of an NF-e access key: weights 2..9 from the right, 0 when the remainder is 0 or 1."""
    total, weight = 0, 2
    for digit in reversed(digits43):
        total += int(digit) * weight
        weight = 2 if weight == 9 else weight + 1
    remainder = total % 11
    return str(0 if remainder in (0, 1) else 11 - remainder)


def valid_nfe_key(key: str) -> bool:
    return NFE_KEY.fullmatch(key) is not None and nfe_check_digit(key[:43]) == key[43]


ISSUER_CNPJ = seeddata.cnpj(seeddata.rng_for(0, "issuer", 1))  # the store chain's company


def nfe_key(seed_text: str, *, issued: datetime | None = None, number: int = 1, series: int = 1) -> str:
    """A 44-digit NF-e access key laid out like a real one, with a valid check digit.

    cUF 35 (SP) + AAMM + issuer CNPJ + model 55 + series + number + emission type 1 + a code
    derived from `seed_text` + the mod-11 check digit.
    """
    moment = issued or seeddata.EPOCH
    code = int.from_bytes(hashlib.sha256(seed_text.encode("utf-8", "replace")).digest()[:8], "big") % 10**8
    body = f"35{moment:%y%m}{ISSUER_CNPJ}55{series % 1000:03d}{number % 10**9:09d}1{code:08d}"
    return body + nfe_check_digit(body)


def correios_code(number: int, prefix: str = "QB") -> str:
    """A Correios S10 tracking code: 2 letters, 8 digits, the S10 check digit, BR."""
    body = f"{number % 10**8:08d}"
    remainder = 11 - sum(int(d) * w for d, w in zip(body, (8, 6, 4, 2, 3, 5, 9, 7), strict=True)) % 11
    check = 0 if remainder == 10 else 5 if remainder == 11 else remainder
    return f"{prefix}{body}{check}BR"


def check_value(kind: str, value: Any, strict: bool) -> str | None:
    """Why a non-null value does not fit its kind; only its JSON type unless `strict`."""
    wanted = JSON_TYPES.get(kind, (str,))
    ok = isinstance(value, wanted) and not (wanted == (int,) and isinstance(value, bool))
    if not ok:
        return f"must be {TYPE_NAMES[wanted[0]]}, got {json_type(value)}"
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "must be valid Unicode text"
    if not strict:
        return None
    if kind in ("text", "code", "description") and not value.strip():
        return "must not be empty"
    if kind == "code" and len(value) > 30:
        return f"must be at most 30 characters, got {len(value)}"
    if kind == "description" and len(value) > 120:
        return f"must be at most 120 characters, got {len(value)}"
    if kind in ENUMS and value not in ENUMS[kind]:
        return f"must be one of {', '.join(ENUMS[kind])}, got {safe(value, 30)!r}"
    if kind == "positive" and value < 1:
        return f"must be an integer >= 1, got {value}"
    if kind == "quantity" and not 1 <= value <= MAX_QUANTITY:
        return f"must be an integer from 1 to {MAX_QUANTITY}, got {value}"
    if kind == "money":
        if not MONEY.fullmatch(value):
            return f'must be a decimal string with two places like "129.90", got {safe(value, 30)!r}'
        if abs(Decimal(value)) >= MAX_MONEY:
            return "is out of range"
    return _check_text(kind, value)


def _check_text(kind: str, value: Any) -> str | None:
    """The pattern rules of string kinds."""
    rules: dict[str, tuple[Callable[[str], bool], str]] = {
        "ean": (lambda v: EAN.fullmatch(v) is not None and valid_ean(v), "must be a valid EAN-8, EAN-13 or GTIN-14"),
        "ncm": (lambda v: NCM.fullmatch(v) is not None, "must be 8 digits (NCM)"),
        "decimal": (lambda v: DECIMAL.fullmatch(v) is not None, 'must be a decimal string like "0.350"'),
        "document": (lambda v: DOCUMENT.fullmatch(v) is not None and valid_document(v),
                     "must be a CPF (11 digits) or CNPJ (14 digits) with valid check digits, digits only"),
        "email": (lambda v: EMAIL.fullmatch(v) is not None, "must be an e-mail address"),
        "date": (valid_date, 'must be a date like "1990-05-17"'),
        "date-time": (valid_date_time, 'must be an RFC 3339 date-time like "2026-01-05T09:00:00Z"'),
        "state": (lambda v: STATE.fullmatch(v) is not None, "must be two capital letters (UF)"),
        "zip": (lambda v: ZIP.fullmatch(v) is not None, "must be 8 digits (CEP)"),
        "nfe-key": (valid_nfe_key, "must be a 44-digit NF-e access key with a valid check digit"),
    }
    rule = rules.get(kind)
    if rule is not None and not rule[0](value):
        return f"{rule[1]}, got {safe(value, 50)!r}"
    return None


def check(body: Any, fields: Iterable[Field], *, where: str = "", strict: bool = True, patch: bool = False,
          ignored: Iterable[str] = ()) -> list[Detail]:
    """Every problem of `body` against `fields`, as details [{field, message}].

    patch: nothing is required (a partial update). ignored: read-only fields a client may echo.
    """
    def at(name: str) -> str:
        return f"{where}.{name}" if where else name

    if not isinstance(body, dict):
        return [{"field": where or "(body)", "message": f"must be a JSON object, got {json_type(body)}"}]
    fields = tuple(fields)
    known = {f[0] for f in fields} | set(ignored)
    details = [{"field": at(safe(name)), "message": "is not a field of this object"} for name in body
               if name not in known]
    for name, kind, required, nullable in fields:
        if name not in body:
            if required and not patch:
                details.append({"field": at(name), "message": "is required"})
            continue
        value = body[name]
        if value is None:
            if not nullable:
                details.append({"field": at(name), "message": "must not be null"})
            continue
        problem = check_value(kind, value, strict)
        if problem is not None:
            details.append({"field": at(name), "message": problem})
        elif kind == "address":
            details += check(value, ADDRESS, where=at(name), strict=strict)
    return details


def invalid(details: list[Detail], what: str, status: int = 422) -> HttpError:
    """The contract's 422 (400 on admin calls) with the first problem in the message and all in details."""
    first = details[0]
    more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
    return HttpError(status, "validation_error", f"invalid {what}: {first['field']} {first['message']}{more}",
                     details=details)


def page(texts: Iterable[str], next_cursor: str | None) -> Response:
    """A feed page from stored JSON documents, joined without parsing them again."""
    raw = '{"items":[' + ",".join(texts) + '],"next_cursor":' + json.dumps(next_cursor) + "}"
    return Response(200, raw=raw.encode("utf-8"))


def items_only(texts: Iterable[str]) -> Response:
    """`{"items": [...]}` from stored JSON documents: lists that are not feeds have no cursor."""
    return Response(200, raw=('{"items":[' + ",".join(texts) + "]}").encode("utf-8"))


def encode_cursor(feed: str, seq: int) -> str:
    """Opaque to clients: urlsafe base64 of {"f": feed, "s": last seq served}."""
    return base64.urlsafe_b64encode(ENCODE({"f": feed, "s": seq}).encode()).decode().rstrip("=")


def decode_cursor(feed: str, cursor: str) -> int:
    """The last seq a cursor of this feed served; 400 for anything this server did not hand out."""
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error, RecursionError):
        data = None
    if not isinstance(data, dict) or data.get("f") != feed or type(data.get("s")) is not int or data["s"] < 0:
        raise HttpError(400, "invalid_cursor", f"cursor is not one that GET /{feed} handed out; start without one")
    return int(data["s"])


def money(amount: Decimal) -> str:
    return f"{amount.quantize(CENT):.2f}"


def param(req: Request, name: str) -> str:
    return unquote(req.params[name])


def json_body(req: Request, *, optional: bool = False) -> Any:
    """The JSON body; 400 `invalid_json` when it is not JSON (an empty optional body is {})."""
    if optional and not req.body.strip():
        return {}
    try:
        return req.json()
    except RecursionError:
        raise HttpError(400, "invalid_json", "body is nested too deeply") from None


CHUNK = 10_000
# From this many records (and with a second core), a worker process makes the rows while this one
# inserts them: each side is about half the work, so more workers would only wait.
PARALLEL_FROM = 50_000
SEED_WORKER = (os.cpu_count() or 1) > 1
# A chunk of rows as one "\n"-joined text per column, not a list of tuples: a worker hands it over
# for the cost of copying a few strings, where pickling and unpickling 60,000 tuples cost almost half
# of what making them does.
Chunk = tuple[str, ...]
Task = tuple[Callable[..., Chunk], tuple[Any, ...]]
# The worker is a fresh interpreter, not a multiprocessing child: a fork of a process that runs
# server threads can inherit a held lock, and a spawned child runs the caller's __main__ again.
WORKER = "import sys; from syncagent.simulators.gestao_lojas import make_chunks; make_chunks(sys.argv[1:])"
# The seeded feeds' JSON, field for field what ENCODE makes of seeddata's records, without its cost per
# record. Every text filled in is either made here of digits or comes from seeddata's fixed lists,
# which `_need_no_escaping` checks at import.
PRODUCT_ROW = ('{"code":"%s","description":"%s","barcode":"%s","brand":"%s","group_code":"%s","unit":"%s",'
               '"ncm":"%s","weight_kg":"%s","height_cm":"%s","width_cm":"%s","length_cm":"%s","active":%s,'
               '"updated_at":"%s"}')
PRICE_ROW = '{"sku":"%s","price_list":"default","list_price":"%s",%s,"scheduled":%s,"updated_at":"%s"}'
PROMO = '"promo_price":"%s","promo_start":"%s","promo_end":"%s"'
NO_PROMO = '"promo_price":null,"promo_start":null,"promo_end":null'
SCHEDULED_ROW = '[{"list_price":"%s","starts_at":"%s"}]'
STOCK_TAIL = '","warehouse":"%s","available":%d,"reserved":%d,"updated_at":"%s"}'  # after '{"sku":"P...'


def _need_no_escaping(*texts: Iterable[str]) -> None:
    """Fail at import if a text the templates above take as it is would need escaping in JSON."""
    for text in (t for group in texts for t in group):
        if ENCODE(text) != f'"{text}"':
            raise ValueError(f"{text!r} needs JSON escaping: encode it instead of putting it in a template")


_need_no_escaping([k for k, _ in seeddata.PRODUCT_KINDS], seeddata.BRANDS, seeddata.COLOURS, seeddata.SIZES,
                  [g for g, _, _ in seeddata.GROUPS], seeddata.NCMS, seeddata.STOCK_WORD)


class StockTails(dict[tuple[int, int], str]):
    """One warehouse's stock JSON after the sku, by (available, reserved), made on first use: a chunk's
    40,000 stock rows share a few hundred of them, and a lookup costs half of formatting one."""

    def __init__(self, warehouse: str, stamp: str) -> None:
        super().__init__()
        self.warehouse, self.stamp = warehouse, stamp

    def __missing__(self, key: tuple[int, int]) -> str:
        self[key] = tail = STOCK_TAIL % (self.warehouse, *key, self.stamp)
        return tail


def catalogue_chunk(seed: int, start: int, stop: int, stamp: str, hour: datetime) -> Chunk:
    """Products start..stop-1: their codes, product JSON, price JSON and stock JSON (one per warehouse)."""
    codes, products, prices, stock = [], [], [], []
    tails = [StockTails(warehouse, stamp) for warehouse in seeddata.STOCK_WORD]
    for i in range(start, stop):
        (description, brand, group, unit, ncm, weight, height, width, length, active), \
            (list_price, promo_price, promo_start, promo_end, scheduled), levels = seeddata.catalogue_item(seed, i, hour)
        code = seeddata.product_code(i)
        codes.append(code)
        products.append(PRODUCT_ROW % (code, description, seeddata.ean13(i), brand, group, unit, ncm, weight, height,
                                       width, length, "true" if active else "false", stamp))
        promo = NO_PROMO if promo_price is None else PROMO % (promo_price, promo_start, promo_end)
        prices.append(PRICE_ROW % (code, list_price, promo, SCHEDULED_ROW % scheduled if scheduled else "[]", stamp))
        head = '{"sku":"' + code
        stock += [head + tail[level] for tail, level in zip(tails, levels, strict=True)]
    return "\n".join(codes), "\n".join(products), "\n".join(prices), "\n".join(stock)


def customer_chunk(seed: int, start: int, stop: int, stamp: str) -> Chunk:
    """Customers start..stop-1: their codes, documents and JSON."""
    customers = [seeddata.customer(seed, i) | {"updated_at": stamp} for i in range(start, stop)]
    return ("\n".join(c["code"] for c in customers), "\n".join(c["document"] for c in customers),
            "\n".join(map(ENCODE, customers)))


def spans(count: int) -> list[tuple[int, int]]:
    """Records 1..count as CHUNK-sized (start, stop) ranges."""
    return [(start, min(start + CHUNK, count + 1)) for start in range(1, count + 1, CHUNK)]


def seed_tasks(seed: int, products: int, customers: int, stamp: str, hour: datetime) -> list[Task]:
    """Every chunk of a seed, in the order they are inserted: the catalogue, then the customers."""
    return ([(catalogue_chunk, (seed, start, stop, stamp, hour)) for start, stop in spans(products)]
            + [(customer_chunk, (seed, start, stop, stamp)) for start, stop in spans(customers)])


def make_chunks(argv: list[str]) -> None:
    """The seed worker (see `made`): write the seed's chunks to stdout, in order."""
    seed, products, customers = map(int, argv[:3])
    out = sys.stdout.buffer
    for make, args in seed_tasks(seed, products, customers, argv[3], datetime.fromisoformat(argv[4])):
        pickle.dump(make(*args), out, protocol=pickle.HIGHEST_PROTOCOL)
        out.flush()  # the pipe holds back the next chunk until this one is read: one chunk ahead at most


def made(seed: int, products: int, customers: int, stamp: str, hour: datetime, worker: bool) -> Iterator[Chunk]:
    """The seed's chunks in order (see `seed_tasks`), made here or by a worker process."""
    if not worker:
        yield from (make(*args) for make, args in seed_tasks(seed, products, customers, stamp, hour))
        return
    root = str(Path(__file__).resolve().parents[2])  # the worker imports this very package
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (root, os.environ.get("PYTHONPATH"))))}
    proc = subprocess.Popen(  # noqa: S603 - our own code, fixed arguments
        [sys.executable, "-c", WORKER, str(seed), str(products), str(customers), stamp, hour.isoformat()],
        stdout=subprocess.PIPE, env=env)
    assert proc.stdout is not None  # noqa: S101 - Popen(stdout=PIPE) always has one
    try:
        for _ in range(len(spans(products)) + len(spans(customers))):
            try:
                yield pickle.load(proc.stdout)  # noqa: S301 - our own worker process's output  # nosec B301
            except EOFError:
                raise RuntimeError("the seed worker ended early (its error is above)") from None
    finally:
        proc.kill()  # done by now unless the seed failed
        proc.wait()
        proc.stdout.close()


# -- the simulator ---------------------------------------------------------------------------------
class GestaoLojasSim(SimApp):
    """The back office: catalogue, customers and stock it serves as feeds; orders it receives."""

    system = "gestao-lojas"

    def __init__(self, db_path: str, *, products: int, seed: int, log_bodies: bool = True,
                 client_id: str | None = None, client_secret: str | None = None, token_ttl: int | None = None,
                 customers: int | None = None) -> None:
        super().__init__(db_path, log_bodies=log_bodies)
        self.seed = seed
        self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID")
        seeded = self.meta("seeded")
        if seeded is not None and self.meta("schema") != SCHEMA_VERSION:
            raise ValueError(f"{db_path} was made by another version of this simulator; delete it")
        if seeded is None:
            count = seeddata.customer_count(products) if customers is None else customers
            self._seed(products, count)
        else:
            self.seed = int(self.meta("seed") or seed)  # the data's seed, not this start's
        # settings given at start win; otherwise the last ones set through /_admin/config survive a restart
        self.client_id = client_id or self.meta("client_id") or seeddata.DEMO_CLIENT_ID
        self.client_secret = client_secret or self.meta("client_secret") or seeddata.DEMO_CLIENT_SECRET
        self.token_ttl = token_ttl or int(self.meta("token_ttl") or 3600)
        self._routes()

    # -- storage ---------------------------------------------------------------------------------------
    def _script(self, script: str) -> None:
        """Statement by statement: executescript would commit the transaction in hand first."""
        for statement in script.split(";"):
            if statement.strip():
                self.db.execute(statement)

    def _get(self, table: str, where: str, args: tuple[Any, ...]) -> dict[str, Any] | None:
        row = self.db.execute(f"SELECT data FROM {table} WHERE {where}", args).fetchone()  # nosec B608
        return json.loads(row[0]) if row else None

    def _put(self, table: str, keys: dict[str, Any], data: dict[str, Any]) -> None:
        """Write a record and move it to the end of its feed (a new, highest seq)."""
        text = ENCODE(data)
        where = " AND ".join(f"{k} = ?" for k in keys)
        extra = {"document": data["document"]} if table == "customers" else {}
        sets = "".join(f", {k} = ?" for k in extra)
        cur = self.db.execute(
            f"UPDATE {table} SET seq = (SELECT max(seq) + 1 FROM {table}), data = ?{sets} WHERE {where}",  # nosec B608
            (text, *extra.values(), *keys.values()))
        if cur.rowcount == 0:
            cols = {**keys, **extra}
            names = ", ".join(cols)
            marks = ", ".join("?" * (len(cols) + 1))
            self.db.execute(f"INSERT INTO {table} ({names}, data) VALUES ({marks})",  # nosec B608
                            (*cols.values(), text))

    # -- seed ------------------------------------------------------------------------------------------
    def _seed(self, products: int, customers: int) -> None:
        """Everything in one transaction, with executemany and the indexes built at the end."""
        started = time.monotonic()
        stamp = now_iso()
        hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)  # promotions: past, running, future
        seed = self.seed
        # a new file: a rollback journal holds next to nothing, where WAL would write every page twice
        self.db.execute("PRAGMA journal_mode=DELETE")
        self.db.execute("PRAGMA synchronous=OFF")
        self.db.execute("PRAGMA cache_size=-262144")
        with self.tx():
            self._script(SCHEMA)
            self.db.executemany("INSERT INTO item_groups (seq, code, data) VALUES (?, ?, ?)", [
                (i, code, ENCODE({"code": code, "description": name, "parent_code": parent, "active": True,
                                  "updated_at": stamp}))
                for i, (code, name, parent) in enumerate(seeddata.GROUPS, 1)])
            self.db.executemany("INSERT INTO payment_methods (seq, code, data) VALUES (?, ?, ?)", [
                (i, code, ENCODE({"code": code, "description": name, "type": kind, "max_installments": most,
                                  "active": True, "updated_at": stamp}))
                for i, (code, name, kind, most) in enumerate(seeddata.PAYMENT_METHODS, 1)])
            sellers = [seeddata.seller(seed, i) | {"updated_at": stamp} for i in range(1, seeddata.seller_count() + 1)]
            self.db.executemany("INSERT INTO sellers (seq, code, data) VALUES (?, ?, ?)",
                                [(i, s["code"], ENCODE(s)) for i, s in enumerate(sellers, 1)])
            self.db.executemany("INSERT INTO warehouses (code, data) VALUES (?, ?)", [
                (code, ENCODE({"code": code, "name": name, "store_code": store}))
                for code, name, store in seeddata.WAREHOUSES])
            self._seed_records(products, customers, stamp, hour)
            self._script(INDEXES)
            for key, value in (("schema", SCHEMA_VERSION), ("seed", str(seed)), ("products", str(products)),
                               ("customer_code", str(customers)), ("seeded", f"{time.monotonic() - started:.2f}")):
                self.set_meta(key, value)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA cache_size=-2000")

    def _seed_records(self, products: int, customers: int, stamp: str, hour: datetime) -> None:
        """Products with a default price and a balance in every warehouse, then customers, CHUNK at a time."""
        worker = SEED_WORKER and products + customers >= PARALLEL_FROM
        with closing(made(self.seed, products, customers, stamp, hour, worker)) as chunks:
            for (start, stop), chunk in zip(spans(products), chunks, strict=False):
                self._insert_catalogue(start, stop, chunk)
            seen: set[str] = set()
            for (start, stop), chunk in zip(spans(customers), chunks, strict=False):
                self._insert_customers(start, stop, chunk, seen)

    def _insert_catalogue(self, start: int, stop: int, chunk: Chunk) -> None:
        """A catalogue chunk's rows; the stock of product i holds seqs (i-1)*W+1.. in WAREHOUSES order."""
        codes, products, prices, stock = (text.split("\n") for text in chunk)
        per = len(seeddata.STOCK_WORD)
        self.db.executemany("INSERT INTO products (seq, code, data) VALUES (?, ?, ?)",
                            zip(range(start, stop), codes, products, strict=True))
        self.db.executemany("INSERT INTO prices (seq, sku, price_list, data) VALUES (?, ?, ?, ?)",
                            zip(range(start, stop), codes, repeat("default"), prices, strict=False))
        self.db.executemany("INSERT INTO stock (seq, sku, warehouse, data) VALUES (?, ?, ?, ?)",
                            zip(range((start - 1) * per + 1, (stop - 1) * per + 1),
                                chain.from_iterable(zip(*(codes,) * per, strict=True)),
                                cycle(seeddata.STOCK_WORD), stock, strict=False))

    def _insert_customers(self, start: int, stop: int, chunk: Chunk, seen: set[str]) -> None:
        """Customers of a chunk; a document drawn twice (rare, random CPFs) is redrawn for the later one."""
        codes, documents, texts = (text.split("\n") for text in chunk)
        for k, document in enumerate(documents):
            if document in seen:
                customer = json.loads(texts[k])
                rng = seeddata.rng_for(self.seed, "customer-document", start + k)
                draw = seeddata.cnpj if len(document) == 14 else seeddata.cpf
                while customer["document"] in seen:
                    customer["document"] = draw(rng)
                documents[k], texts[k] = customer["document"], ENCODE(customer)
            seen.add(documents[k])
        self.db.executemany("INSERT INTO customers (seq, code, document, data) VALUES (?, ?, ?, ?)",
                            zip(range(start, stop), codes, documents, texts, strict=True))

    # -- routing and auth ------------------------------------------------------------------------------
    def _routes(self) -> None:
        r = self.route
        r("POST", "/oauth/token", self.token)
        for feed in FEEDS:
            r("GET", f"/{feed}", self._feed(feed))
        r("GET", "/warehouses", self.list_warehouses)
        r("POST", "/products", self.create_product)
        r("GET", "/products/{code}", self.get_product)
        r("PUT", "/products/{code}", self.put_product)
        r("POST", "/customers", self.create_customer)
        r("PUT", "/customers/{code}", self.put_customer)
        r("GET", "/orders", self.find_orders)
        r("POST", "/orders", self.create_order)
        r("POST", "/orders/{number}/cancel", self.cancel_order)
        r("POST", "/_admin/tokens/expire", self.admin_expire_tokens)
        r("GET", "/_admin/config", self.admin_get_config)
        r("POST", "/_admin/config", self.admin_config)
        r("PATCH", "/_admin/products/{code}", self.admin_patch_product)
        r("PATCH", "/_admin/prices/{sku}", self.admin_patch_price)
        r("PUT", "/_admin/stock/{sku}/{warehouse}", self.admin_put_stock)
        r("GET", "/_admin/customers", self.admin_customers)
        r("POST", "/_admin/customers", self.admin_create_customer)
        r("PATCH", "/_admin/customers/{code}", self.admin_patch_customer)
        r("PATCH", "/_admin/payment-methods/{code}", self._admin_patch_simple("payment_methods", PAYMENT_METHOD))
        r("PATCH", "/_admin/groups/{code}", self._admin_patch_simple("item_groups", GROUP))
        r("PATCH", "/_admin/sellers/{code}", self._admin_patch_simple("sellers", SELLER))
        r("GET", "/_admin/orders", self.admin_orders)
        r("GET", "/_admin/orders/{number}", self.admin_order)
        r("POST", "/_admin/orders/{number}/events", self.admin_add_event)
        r("PATCH", "/_admin/events/{id}", self.admin_correct_event)
        r("GET", "/_admin/counts", self.admin_counts)

    def dispatch(self, req: Request) -> Response:
        """The token is checked before routing: without one, even a wrong path answers 401."""
        if not (req.path.startswith("/_admin") or req.path == "/oauth/token"):
            with self.lock:
                problem = self._token_problem(req)
            if problem is not None:
                problem.headers["WWW-Authenticate"] = 'Bearer realm="gestao-lojas", error="invalid_token"'
                return problem.response()
        return super().dispatch(req)

    def _token_problem(self, req: Request) -> HttpError | None:
        scheme, _, token = (req.header("authorization") or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return HttpError(401, "invalid_token", "send Authorization: Bearer <access_token> from POST /oauth/token")
        row = self.db.execute("SELECT expires FROM tokens WHERE token = ?", (token.strip(),)).fetchone()
        if row is None:
            return HttpError(401, "invalid_token", "the access token is unknown or was revoked")
        if row[0] <= time.time():
            return HttpError(401, "invalid_token", "the access token has expired")
        return None

    def token(self, req: Request) -> Response:
        """OAuth2 client credentials, in the form body or HTTP Basic (RFC 6749 §2.3.1)."""
        try:
            form = {k: v[0] for k, v in parse_qs(req.body.decode("utf-8"), strict_parsing=bool(req.body)).items()}
        except (UnicodeDecodeError, ValueError):
            raise HttpError(400, "invalid_request", "the body must be application/x-www-form-urlencoded") from None
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        basic = (req.header("authorization") or "").strip()
        if basic.lower().startswith("basic "):
            try:
                client_id, _, client_secret = base64.b64decode(basic[6:], validate=True).decode("utf-8").partition(":")
            except (ValueError, binascii.Error):
                raise HttpError(401, "invalid_client", "malformed HTTP Basic credentials") from None
        if not form.get("grant_type"):
            raise HttpError(400, "invalid_request", "grant_type is required (client_credentials)")
        if form["grant_type"] != "client_credentials":
            raise HttpError(400, "unsupported_grant_type", "only grant_type=client_credentials is supported")
        if not (client_id and client_secret
                and hmac.compare_digest(client_id.encode(), self.client_id.encode())
                and hmac.compare_digest(client_secret.encode(), self.client_secret.encode())):
            raise HttpError(401, "invalid_client", "client authentication failed")
        token = secrets.token_urlsafe(32)
        now = time.time()
        with self.tx():
            self.db.execute("DELETE FROM tokens WHERE expires <= ?", (now,))
            self.db.execute("INSERT INTO tokens (token, expires) VALUES (?, ?)", (token, now + self.token_ttl))
        return Response(200, {"access_token": token, "token_type": "Bearer", "expires_in": self.token_ttl},
                        headers={"Cache-Control": "no-store"})

    # -- feeds -----------------------------------------------------------------------------------------
    @staticmethod
    def _limit(req: Request) -> int:
        raw = req.arg("limit")
        if raw is None:
            return DEFAULT_LIMIT
        if not INTEGER.fullmatch(raw) or not 1 <= int(raw) <= MAX_LIMIT:
            raise HttpError(400, "validation_error", f"limit must be an integer from 1 to {MAX_LIMIT}",
                            details=[{"field": "limit", "message": f"got {safe(raw, 20)!r}"}])
        return int(raw)

    def _feed(self, feed: str) -> Callable[[Request], Response]:
        table = FEEDS[feed]

        def handler(req: Request) -> Response:
            limit = self._limit(req)
            cursor = req.arg("cursor")
            after = 0 if cursor is None else decode_cursor(feed, cursor)
            if feed == "stock" and req.args("warehouse"):
                rows = self._stock_rows(list(dict.fromkeys(req.args("warehouse"))), after, limit + 1)
            elif feed == "prices":
                rows = self.db.execute("SELECT seq, data FROM prices WHERE price_list = ? AND seq > ? ORDER BY seq"
                                       " LIMIT ?", (req.arg("price_list") or "default", after, limit + 1)).fetchall()
            elif feed == "customers" and req.arg("document") is not None:
                document = req.arg("document") or ""
                if not INTEGER.fullmatch(document):
                    raise HttpError(400, "validation_error", "document must be the CPF/CNPJ digits only",
                                    details=[{"field": "document", "message": "digits only"}])
                rows = self.db.execute("SELECT seq, data FROM customers WHERE document = ? AND seq > ?",
                                       (document, after)).fetchall()
            else:
                rows = self.db.execute(f"SELECT seq, data FROM {table} WHERE seq > ? ORDER BY seq LIMIT ?",  # nosec B608
                                       (after, limit + 1)).fetchall()
            more = len(rows) > limit
            rows = rows[:limit]
            return page((r[1] for r in rows), encode_cursor(feed, rows[-1][0]) if more else None)

        return handler

    def _stock_rows(self, warehouses: list[str], after: int, limit: int) -> list[tuple[int, str]]:
        """Rows of some warehouses after `after`: one index range per warehouse, merged (O(limit) each)."""
        known = {r[0] for r in self.db.execute("SELECT code FROM warehouses")}
        unknown = [w for w in warehouses if w not in known]
        if unknown:
            raise HttpError(400, "validation_error", f"unknown warehouse {safe(unknown[0], 30)!r}",
                            details=[{"field": "warehouse", "message": f"unknown warehouse {safe(w, 30)!r}"}
                                     for w in unknown])
        part = "SELECT seq, data FROM (SELECT seq, data FROM stock WHERE warehouse = ? AND seq > ? ORDER BY seq LIMIT ?)"
        sql = " UNION ALL ".join([part] * len(warehouses)) + " ORDER BY seq LIMIT ?"
        args = [a for w in warehouses for a in (w, after, limit)] + [limit]
        return self.db.execute(sql, args).fetchall()

    def list_warehouses(self, req: Request) -> Response:
        return items_only(r[0] for r in self.db.execute("SELECT data FROM warehouses ORDER BY code"))

    # -- products --------------------------------------------------------------------------------------
    def _product_in(self, body: Any, code: str | None = None) -> dict[str, Any]:
        """A Product body checked and completed (every contract field present, unit UN by default)."""
        if code is not None and isinstance(body, dict):
            if "code" in body and body["code"] != code:
                raise invalid([{"field": "code", "message": f"must be the code in the path ({safe(code, 30)})"}],
                              "product")
            body = {**body, "code": code}
        details = check(body, PRODUCT, ignored=("updated_at",))
        group = body.get("group_code") if isinstance(body, dict) else None
        if not details and group is not None and self._get("item_groups", "code = ?", (group,)) is None:
            details.append({"field": "group_code", "message": f"unknown group {safe(group, 30)!r}"})
        if details:
            raise invalid(details, "product")
        product = {name: body.get(name) for name, *_ in PRODUCT}
        product["unit"] = product["unit"] or "UN"
        product["updated_at"] = now_iso()
        return product

    def create_product(self, req: Request) -> Response:
        product = self._product_in(json_body(req))
        if self._get("products", "code = ?", (product["code"],)) is not None:
            raise HttpError(409, "duplicate_code", f"product {product['code']} already exists",
                            existing_code=product["code"])
        with self.tx():
            self._put("products", {"code": product["code"]}, product)
        return Response(201, product)

    def _product(self, code: str) -> dict[str, Any]:
        product = self._get("products", "code = ?", (code,))
        if product is None:
            raise HttpError(404, "not_found", f"no product {safe(code, 40)}")
        return product

    def get_product(self, req: Request) -> Response:
        return Response(200, self._product(param(req, "code")))

    def put_product(self, req: Request) -> Response:
        code = param(req, "code")
        body = json_body(req)
        self._product(code)
        product = self._product_in(body, code)
        with self.tx():
            self._put("products", {"code": code}, product)
        return Response(200, product)

    # -- customers -------------------------------------------------------------------------------------
    @staticmethod
    def _customer_record(code: str, body: dict[str, Any]) -> dict[str, Any]:
        """Every contract field present; an address keeps its fields, with country BR by default."""
        customer = {"code": code} | {name: body.get(name) for name, *_ in CUSTOMER}
        if isinstance(customer["address"], dict):
            customer["address"] = {"country": "BR"} | customer["address"]
        return customer | {"updated_at": now_iso()}

    def _document_owner(self, document: str) -> str | None:
        row = self.db.execute("SELECT code FROM customers WHERE document = ?", (document,)).fetchone()
        return str(row[0]) if row else None

    def _new_customer_code(self) -> str:
        while True:
            code = f"C{self.counter('customer_code'):06d}"
            if self._get("customers", "code = ?", (code,)) is None:
                return code

    def create_customer(self, req: Request) -> Response:
        body = json_body(req)
        details = check(body, CUSTOMER, ignored=("code", "updated_at"))
        if details:
            raise invalid(details, "customer")
        owner = self._document_owner(body["document"])
        if owner is not None:
            raise HttpError(409, "duplicate_document", f"customer {owner} already has this document",
                            existing_code=owner)
        with self.tx():
            customer = self._customer_record(self._new_customer_code(), body)
            self._put("customers", {"code": customer["code"]}, customer)
        return Response(201, customer)

    def put_customer(self, req: Request) -> Response:
        code = param(req, "code")
        body = json_body(req)
        if self._get("customers", "code = ?", (code,)) is None:
            raise HttpError(404, "not_found", f"no customer {safe(code, 40)}")
        details = check(body, CUSTOMER, ignored=("code", "updated_at"))
        if isinstance(body, dict) and body.get("code") not in (None, code):
            details.insert(0, {"field": "code", "message": f"must be the code in the path ({safe(code, 30)})"})
        if details:
            raise invalid(details, "customer")
        owner = self._document_owner(body["document"])
        if owner not in (None, code):
            raise HttpError(409, "duplicate_document", f"customer {owner} already has this document",
                            existing_code=owner)
        customer = self._customer_record(code, body)
        with self.tx():
            self._put("customers", {"code": code}, customer)
        return Response(200, customer)

    # -- orders ----------------------------------------------------------------------------------------
    def find_orders(self, req: Request) -> Response:
        external_id, channel = req.arg("external_id"), req.arg("channel")
        missing = [name for name, value in (("external_id", external_id), ("channel", channel)) if not value]
        if missing:
            raise HttpError(400, "validation_error", f"{' and '.join(missing)} required",
                            details=[{"field": m, "message": "is required"} for m in missing])
        rows = self.db.execute("SELECT data FROM orders WHERE channel = ? AND external_id = ? ORDER BY created_seq",
                               (channel, external_id))
        return items_only(r[0] for r in rows)

    def _order_references(self, body: dict[str, Any], details: list[Detail]) -> Decimal:
        """Check what the order names exists; the computed total (items and shipping)."""
        def missing(table: str, code: Any) -> bool:
            return self._get(table, "code = ?", (code,)) is None

        if missing("customers", body["customer_code"]):
            details.append({"field": "customer_code", "message": f"unknown customer {safe(body['customer_code'], 30)!r}"})
        if body.get("seller_code") is not None and missing("sellers", body["seller_code"]):
            details.append({"field": "seller_code", "message": f"unknown seller {safe(body['seller_code'], 30)!r}"})
        if body.get("store_code") is not None and body["store_code"] not in STORES:
            details.append({"field": "store_code", "message": f"unknown store {safe(body['store_code'], 30)!r}"})
        if body.get("warehouse") is not None and missing("warehouses", body["warehouse"]):
            details.append({"field": "warehouse", "message": f"unknown warehouse {safe(body['warehouse'], 30)!r}"})
        skus = [item["sku"] for item in body["items"]]
        found = {r[0]: json.loads(r[1]) for r in self.db.execute(
            "SELECT code, data FROM products WHERE code IN (SELECT value FROM json_each(?))", (json.dumps(skus),))}
        computed = ZERO
        for i, item in enumerate(body["items"]):
            product = found.get(item["sku"])
            if product is None:
                details.append({"field": f"items[{i}].sku", "message": f"unknown product {safe(item['sku'], 30)!r}"})
            elif not product.get("active"):
                details.append({"field": f"items[{i}].sku", "message": f"product {item['sku']} is inactive"})
            unit_price, discount = Decimal(item["unit_price"]), Decimal(item.get("discount") or "0.00")
            if unit_price < 0:
                details.append({"field": f"items[{i}].unit_price", "message": "must not be negative"})
            if discount < 0:
                details.append({"field": f"items[{i}].discount", "message": "must not be negative"})
            elif discount > unit_price * item["quantity"]:
                details.append({"field": f"items[{i}].discount", "message": "is more than the item is worth"})
            computed += unit_price * item["quantity"] - discount
        for i, payment in enumerate(body["payments"]):
            method = self._get("payment_methods", "code = ?", (payment["method_code"],))
            if method is None:
                details.append({"field": f"payments[{i}].method_code",
                                "message": f"unknown payment method {safe(payment['method_code'], 30)!r}"})
            elif payment.get("installments", 1) > (method.get("max_installments") or 1):
                details.append({"field": f"payments[{i}].installments",
                                "message": f"{method['code']} allows at most {method.get('max_installments') or 1}"})
            if Decimal(payment["amount"]) < 0:
                details.append({"field": f"payments[{i}].amount", "message": "must not be negative"})
        shipping = Decimal(body.get("shipping") or "0.00")
        if shipping < 0:
            details.append({"field": "shipping", "message": "must not be negative"})
        return computed + shipping

    def _validate_order(self, body: Any) -> None:
        """422 with every problem: shape first, then references and the arithmetic."""
        details = check(body, ORDER_IN)
        if details:
            raise invalid(details, "order")
        if not body["items"]:
            details.append({"field": "items", "message": "must have at least one item"})
        for name, spec in (("items", ORDER_ITEM), ("payments", ORDER_PAYMENT)):
            for i, entry in enumerate(body[name]):
                details += check(entry, spec, where=f"{name}[{i}]")
        if details:
            raise invalid(details, "order")
        computed = self._order_references(body, details)
        total = Decimal(body["total"])
        if not details and computed != total:
            details.append({"field": "total", "message": f"is {body['total']} but the items less discounts plus "
                                                         f"shipping add up to {money(computed)}"})
        if details:
            raise invalid(details, "order")

    def create_order(self, req: Request) -> Response:
        """Not idempotent: every valid POST is a new order with the next number, and debits stock."""
        body = json_body(req)
        self._validate_order(body)
        order: dict[str, Any] = {
            "number": "", "status": "open", "external_id": body["external_id"], "channel": body["channel"],
            "customer_code": body["customer_code"], "seller_code": body.get("seller_code"),
            "store_code": body.get("store_code"), "warehouse": body.get("warehouse"),
            "created_at": body.get("created_at") or now_iso(),
            "items": [{"sku": i["sku"], "quantity": i["quantity"], "unit_price": i["unit_price"],
                       "discount": i.get("discount") or "0.00"} for i in body["items"]],
            "payments": [{"method_code": p["method_code"], "amount": p["amount"], "installments": p.get("installments", 1)}
                         for p in body["payments"]],
            "shipping": body.get("shipping") or "0.00", "total": body["total"], "notes": body.get("notes"),
        }
        with self.tx():
            seq = int(self.db.execute("SELECT coalesce(max(created_seq), 0) + 1 FROM orders").fetchone()[0])
            order["number"] = str(ORDER_NUMBER_BASE + seq)
            self.db.execute("INSERT INTO orders (created_seq, number, channel, external_id, status, created, data)"
                            " VALUES (?, ?, ?, ?, ?, ?, ?)", (seq, order["number"], order["channel"],
                                                              order["external_id"], "open", time.time(), ENCODE(order)))
            self._move_stock(order, -1)
        return Response(201, order)

    def _move_stock(self, order: dict[str, Any], sign: int) -> None:
        """Debit (-1) or give back (+1) the order's quantities in its warehouse; the rows move in the feed."""
        warehouse = order.get("warehouse")
        if not warehouse:
            return
        quantities: dict[str, int] = {}
        for item in order["items"]:
            quantities[item["sku"]] = quantities.get(item["sku"], 0) + item["quantity"]
        stamp = now_iso()
        for sku in sorted(quantities):
            level = self._get("stock", "sku = ? AND warehouse = ?", (sku, warehouse)) or {
                "sku": sku, "warehouse": warehouse, "available": 0, "reserved": 0}
            level["available"] += sign * quantities[sku]
            level["updated_at"] = stamp
            self._put("stock", {"sku": sku, "warehouse": warehouse}, level)

    def _order(self, number: str) -> dict[str, Any]:
        row = self.db.execute("SELECT data FROM orders WHERE number = ?", (number,)).fetchone()
        if row is None:
            raise HttpError(404, "not_found", f"no order {safe(number, 40)}")
        return json.loads(row[0])  # type: ignore[no-any-return]

    def _set_status(self, order: dict[str, Any], status: str, reason: str | None = None) -> None:
        order["status"] = status
        self.db.execute("UPDATE orders SET status = ?, data = ?, cancel_reason = coalesce(?, cancel_reason)"
                        " WHERE number = ?", (status, ENCODE(order), reason, order["number"]))

    def cancel_order(self, req: Request) -> Response:
        """Cancelling twice is harmless; once invoiced it is the back office's to undo, not the channel's."""
        body = json_body(req, optional=True)
        details = check(body, (("reason", "str", False, True),))
        if details:
            raise invalid(details, "cancellation")
        order = self._order(param(req, "number"))
        if order["status"] == "cancelled":
            return Response(200, order)
        if order["status"] != "open":
            raise HttpError(409, "not_cancellable", f"order {order['number']} is {order['status']}: it can no longer"
                                                    " be cancelled here")
        with self.tx():
            self._cancel(order, body.get("reason") or "cancelled by the channel", None)
        return Response(200, order)

    def _cancel(self, order: dict[str, Any], reason: str, extra: dict[str, Any] | None) -> dict[str, Any]:
        self._set_status(order, "cancelled", reason)
        self._move_stock(order, +1)
        return self._add_event(order, "cancelled", extra or {})

    def _add_event(self, order: dict[str, Any], kind: str, given: dict[str, Any]) -> dict[str, Any]:
        """An OrderEvent with realistic data where `given` has none (NF-e, carrier and tracking)."""
        seq = int(self.db.execute("SELECT coalesce(max(seq), 0) + 1 FROM events").fetchone()[0])
        stamp = now_iso()
        rng = random.Random(f"{self.seed}:{order['number']}:{kind}")  # the same data for the same order
        event: dict[str, Any] = {
            "id": f"EV{seq:08d}", "order_number": order["number"], "external_id": order["external_id"],
            "channel": order["channel"], "type": kind, "occurred_at": given.get("occurred_at") or stamp,
            "invoice": None, "shipment": None, "delivered_at": None,
        }
        if kind == "invoiced":
            number = self.counter("invoice_number", 1000)
            key = nfe_key(f"{self.seed}:{order['number']}", issued=datetime.now(UTC), number=number)
            event["invoice"] = {"key": key, "number": str(number), "series": "1", "issued_at": stamp,
                                "total": order["total"], "xml_url": f"https://nfe.gestaolojas.example/xml/{key}.xml"}
            event["invoice"] |= given.get("invoice") or {}
        elif kind == "shipped":
            carrier = rng.choice(CARRIERS)
            if carrier == "Correios":
                code = correios_code(rng.randrange(10**8), rng.choice(("QB", "OJ", "NX", "AA")))
                url = f"https://rastreamento.correios.com.br/app/index.php?objeto={code}"
            elif carrier == "Jadlog":
                code = f"{rng.randrange(10**14):014d}"
                url = f"https://www.jadlog.com.br/jadlog/tracking?cte={code}"
            else:
                code = f"TE{rng.randrange(10**10):010d}"
                url = f"https://tracking.totalexpress.com.br/tracking/{code}"
            event["shipment"] = {"carrier": carrier, "tracking_code": code, "tracking_url": url, "shipped_at": stamp}
            event["shipment"] |= given.get("shipment") or {}
        elif kind == "delivered":
            event["delivered_at"] = given.get("delivered_at") or stamp
        self.db.execute("INSERT INTO events (seq, id, order_number, data) VALUES (?, ?, ?, ?)",
                        (seq, event["id"], order["number"], ENCODE(event)))
        return event

    # -- admin -----------------------------------------------------------------------------------------
    @staticmethod
    def _admin_body(req: Request, fields: Iterable[Field], *, patch: bool = True, strict: bool = False,
                    ignored: Iterable[str] = ()) -> dict[str, Any]:
        """An admin body: 400 unless a JSON object whose fields have the contract's JSON types."""
        body = json_body(req, optional=True)
        details = check(body, fields, patch=patch, strict=strict, ignored=ignored)
        if details:
            raise invalid(details, "admin body", 400)
        return body  # type: ignore[no-any-return]

    def admin_expire_tokens(self, req: Request) -> Response:
        """Every token stops working now (the next call answers 401 invalid_token)."""
        self.db.execute("DELETE FROM tokens")
        return Response(204)

    def admin_get_config(self, req: Request) -> Response:
        return Response(200, {"client_id": self.client_id, "token_ttl": self.token_ttl})

    def admin_config(self, req: Request) -> Response:
        """{"token_ttl": s, "client_secret": "...", "client_id": "..."}; kept across restarts."""
        body = self._admin_body(req, CONFIG, strict=True)
        with self.tx():
            for key, value in body.items():
                setattr(self, key, value)
                self.set_meta(key, str(value))
        return Response(200, {"client_id": self.client_id, "token_ttl": self.token_ttl})

    def admin_patch_product(self, req: Request) -> Response:
        """Any Product fields (JSON types checked only, so legacy junk can be planted); moves it in the feed."""
        code = param(req, "code")
        body = self._admin_body(req, PRODUCT, ignored=("updated_at",))
        if body.get("code", code) != code:
            raise invalid([{"field": "code", "message": "a product's code cannot change"}], "admin body", 400)
        product = self._product(code) | body | {"updated_at": now_iso()}
        with self.tx():
            self._put("products", {"code": code}, product)
        return Response(200, product)

    def admin_patch_price(self, req: Request) -> Response:
        """Any Price fields; `price_list` picks the list (default "default"), a new list needs list_price."""
        sku = param(req, "sku")
        body = self._admin_body(req, PRICE, ignored=("sku", "updated_at"))
        if body.get("sku", sku) != sku:
            raise invalid([{"field": "sku", "message": "a price's sku cannot change"}], "admin body", 400)
        for i, entry in enumerate(body.get("scheduled") or []):
            details = check(entry, SCHEDULED, where=f"scheduled[{i}]", strict=False)
            if details:
                raise invalid(details, "admin body", 400)
        self._product(sku)
        price_list = body.get("price_list") or "default"
        price = self._get("prices", "sku = ? AND price_list = ?", (sku, price_list))
        if price is None:
            if "list_price" not in body:
                raise invalid([{"field": "list_price", "message": "is required for a new price list row"}],
                              "admin body", 400)
            price = {"sku": sku, "price_list": price_list, "list_price": None, "promo_price": None,
                     "promo_start": None, "promo_end": None, "scheduled": []}
        price |= {k: v for k, v in body.items() if k != "sku"} | {"updated_at": now_iso()}
        with self.tx():
            self._put("prices", {"sku": sku, "price_list": price_list}, price)
        return Response(200, price)

    def admin_put_stock(self, req: Request) -> Response:
        """{available, reserved}: the balance of a product in a warehouse (negative is allowed)."""
        sku, warehouse = param(req, "sku"), param(req, "warehouse")
        body = self._admin_body(req, STOCK, patch=False)
        self._product(sku)
        if self._get("warehouses", "code = ?", (warehouse,)) is None:
            raise HttpError(404, "not_found", f"no warehouse {safe(warehouse, 30)}")
        old = self._get("stock", "sku = ? AND warehouse = ?", (sku, warehouse)) or {}
        level = {"sku": sku, "warehouse": warehouse, "available": body["available"],
                 "reserved": body.get("reserved", old.get("reserved", 0)), "updated_at": now_iso()}
        with self.tx():
            self._put("stock", {"sku": sku, "warehouse": warehouse}, level)
        return Response(200, level)

    def admin_customers(self, req: Request) -> Response:
        """Every customer in code order (?document= for one)."""
        document = req.arg("document")
        if document is not None:
            rows = self.db.execute("SELECT data FROM customers WHERE document = ?", (document,))
        else:
            rows = self.db.execute("SELECT data FROM customers ORDER BY code")
        return items_only(r[0] for r in rows)

    def admin_create_customer(self, req: Request) -> Response:
        """A customer registered in the back office directly; code optional, document unique (409)."""
        body = self._admin_body(req, (("code", "text", False, False), *CUSTOMER), patch=False,
                                ignored=("updated_at",))
        owner = self._document_owner(body["document"])
        if owner is not None:
            raise HttpError(409, "duplicate_document", f"customer {owner} already has this document",
                            existing_code=owner)
        code = body.get("code")
        if code is not None and self._get("customers", "code = ?", (code,)) is not None:
            raise HttpError(409, "duplicate_code", f"customer {safe(code, 30)} exists", existing_code=code)
        with self.tx():
            customer = self._customer_record(code or self._new_customer_code(), body)
            self._put("customers", {"code": customer["code"]}, customer)
        return Response(201, customer)

    def admin_patch_customer(self, req: Request) -> Response:
        code = param(req, "code")
        body = self._admin_body(req, CUSTOMER, ignored=("code", "updated_at"))
        if body.get("code", code) != code:
            raise invalid([{"field": "code", "message": "a customer's code cannot change"}], "admin body", 400)
        customer = self._get("customers", "code = ?", (code,))
        if customer is None:
            raise HttpError(404, "not_found", f"no customer {safe(code, 40)}")
        if "document" in body:
            owner = self._document_owner(body["document"])
            if owner not in (None, code):
                raise HttpError(409, "duplicate_document", f"customer {owner} already has this document",
                                existing_code=owner)
        customer |= body | {"updated_at": now_iso()}
        with self.tx():
            self._put("customers", {"code": code}, customer)
        return Response(200, customer)

    def _admin_patch_simple(self, table: str, fields: tuple[Field, ...]) -> Callable[[Request], Response]:
        """PATCH of a payment method, group or seller; an unknown code is created when the body is complete."""
        def handler(req: Request) -> Response:
            code = param(req, "code")
            body = self._admin_body(req, fields, ignored=("code", "updated_at"))
            if body.get("code", code) != code:
                raise invalid([{"field": "code", "message": "the code cannot change"}], "admin body", 400)
            record = self._get(table, "code = ?", (code,))
            status = 200
            if record is None:
                details = check(body, fields, strict=False, ignored=("code", "updated_at"))
                if details:
                    raise HttpError(404, "not_found", f"no {table[:-1].replace('_', ' ')} {safe(code, 30)}; a"
                                    " complete body creates it", details=details)
                record = {"code": code} | {name: None for name, *_ in fields}
                status = 201
            record |= body | {"updated_at": now_iso()}
            with self.tx():
                self._put(table, {"code": code}, record)
            return Response(status, record)

        return handler

    def _admin_order_view(self, row: tuple[Any, ...]) -> dict[str, Any]:
        created_seq, created, reason, data = row
        return json.loads(data) | {"created_seq": created_seq, "created_ts": created,
                                   "received_at": datetime.fromtimestamp(created, UTC).isoformat()
                                   .replace("+00:00", "Z"), "cancel_reason": reason}

    def admin_orders(self, req: Request) -> Response:
        """Every order with its items, in creation order (created_seq), for invariant checks."""
        rows = self.db.execute("SELECT created_seq, created, cancel_reason, data FROM orders ORDER BY created_seq")
        return Response(200, {"items": [self._admin_order_view(r) for r in rows]})

    def admin_order(self, req: Request) -> Response:
        number = param(req, "number")
        row = self.db.execute("SELECT created_seq, created, cancel_reason, data FROM orders WHERE number = ?",
                              (number,)).fetchone()
        if row is None:
            raise HttpError(404, "not_found", f"no order {safe(number, 40)}")
        events = [json.loads(r[0]) for r in self.db.execute(
            "SELECT data FROM events WHERE order_number = ? ORDER BY seq", (number,))]
        return Response(200, self._admin_order_view(row) | {"events": events})

    def admin_add_event(self, req: Request) -> Response:
        """{"type": invoiced|shipped|delivered|cancelled, ...}: only in that order (409 otherwise)."""
        body = self._admin_body(req, EVENT, patch=False)
        kind = body["type"]
        if kind not in EVENT_AFTER:
            raise invalid([{"field": "type", "message": f"must be one of {', '.join(EVENT_AFTER)}"}],
                          "admin body", 400)
        for name, fields in (("invoice", INVOICE), ("shipment", SHIPMENT)):
            details = check(body.get(name) or {}, fields, where=name, strict=False)
            if details:
                raise invalid(details, "admin body", 400)
        order = self._order(param(req, "number"))
        if order["status"] != EVENT_AFTER[kind]:
            raise HttpError(409, "out_of_order", f"order {order['number']} is {order['status']}: it cannot be {kind}"
                                                 f" (only a {EVENT_AFTER[kind]} order can)")
        with self.tx():
            if kind == "cancelled":
                event = self._cancel(order, "cancelled in the back office", body)
            else:
                self._set_status(order, kind)
                event = self._add_event(order, kind, body)
        return Response(201, event)

    def admin_correct_event(self, req: Request) -> Response:
        """A correction of an event already issued (an NF-e re-issued, a tracking code fixed):
        {"invoice": {...}} or {"shipment": {...}} merged into it; the event, same id, moves to the end of the feed."""
        event_id = param(req, "id")
        body = self._admin_body(req, EVENT[1:], patch=True)
        for name, fields in (("invoice", INVOICE), ("shipment", SHIPMENT)):
            details = check(body.get(name) or {}, fields, where=name, strict=False)
            if details:
                raise invalid(details, "admin body", 400)
        row = self.db.execute("SELECT data FROM events WHERE id = ?", (event_id,)).fetchone()
        if row is None:
            raise HttpError(404, "not_found", f"no event {safe(event_id, 40)}")
        event = json.loads(row[0])
        for name in ("invoice", "shipment"):
            if body.get(name):
                event[name] = (event.get(name) or {}) | body[name]
        event |= {k: v for k, v in body.items() if k in ("occurred_at", "delivered_at")}
        with self.tx():
            seq = int(self.db.execute("SELECT coalesce(max(seq), 0) + 1 FROM events").fetchone()[0])
            self.db.execute("UPDATE events SET seq = ?, data = ? WHERE id = ?", (seq, ENCODE(event), event_id))
        return Response(200, event)

    def admin_counts(self, req: Request) -> Response:
        """Rows per feed (by feed name) and of orders, warehouses and live tokens; the seeding time."""
        counts: dict[str, Any] = {feed: self.db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # nosec B608
                                  for feed, table in FEEDS.items()}
        for table in ("orders", "warehouses"):
            counts[table] = self.db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # nosec B608
        counts["tokens"] = self.db.execute("SELECT count(*) FROM tokens WHERE expires > ?", (time.time(),)).fetchone()[0]
        counts["seed_seconds"] = float(self.meta("seeded") or 0)
        return Response(200, counts)


def _positive_option(options: dict[str, str], name: str, minimum: int) -> int | None:
    raw = options.get(name)
    if raw is None:
        return None
    if not INTEGER.fullmatch(str(raw).strip()) or int(raw) < minimum:
        raise ValueError(f"gestao-lojas option {name} must be a whole number >= {minimum}, got {raw!r}")
    return int(raw)


def build(db_path: str, *, products: int, seed: int, log_bodies: bool = True, **options: str) -> SimApp:
    """Options (strings, from --set): client_id, client_secret, token_ttl (s, 3600), customers."""
    unknown = set(options) - set(OPTIONS)
    if unknown:
        raise ValueError(f"unknown gestao-lojas options: {sorted(unknown)}; known: {', '.join(OPTIONS)}")
    for name in ("client_id", "client_secret"):
        if name in options and not options[name]:
            raise ValueError(f"gestao-lojas option {name} must not be empty")
    return GestaoLojasSim(db_path, products=products, seed=seed, log_bodies=log_bodies,
                          client_id=options.get("client_id"), client_secret=options.get("client_secret"),
                          token_ttl=_positive_option(options, "token_ttl", 1),
                          customers=_positive_option(options, "customers", 0))
