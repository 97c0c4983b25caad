"""Simulator of the Seller Up tablet app, to ../shared/contracts/sellerup/openapi.yaml.

As strict as the real app, so that what passes here passes there: an API key that can be revoked
(401 `key_revoked` on every call), batch upserts of at most 500 items validated item by item (a
batch partly fails, each rejection names its field), feeds ordered by a `seq` that grows on every
change (a record comes again after it changes, e.g. once acknowledged or linked), fulfilment events
accepted only in the order invoiced → shipped → delivered.

It is also fast, because benchmarks push up to a million products through it: a batch is one
SELECT of the stored JSON, one `executemany` and one transaction; pages are the stored JSON joined,
never parsed and dumped again.

Seeded deterministically from `seeddata` so that the back office simulator, seeded with the same
seed, holds every product, seller, payment method and customer code the tablet orders name.
Admin endpoints under /_admin (no key, never faulted) let tests create and change orders and
tablet customers, revoke the key and read what the app holds, the events and every acknowledgement.
"""

from __future__ import annotations

import hmac
import json
import random
import re
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from syncagent.model import normalize_document, valid_cnpj, valid_cpf, valid_ean
from syncagent.simulators import seeddata
from syncagent.simulators.common import (
    HttpError,
    Request,
    Response,
    SimApp,
    json_type,
    valid_date_time,
)
from syncagent.simulators.webhooks import WebhookSender

MAX_BATCH = 500
MONEY = re.compile(r"-?[0-9]+\.[0-9]{2}")
EAN = re.compile(r"[0-9]{8}|[0-9]{13}|[0-9]{14}")
NFE_KEY = re.compile(r"[0-9]{44}")
INTEGER = re.compile(r"-?[0-9]+")
COLLECTIONS = ("products", "prices", "stock", "customers", "payment-methods", "groups", "sellers")
ORDER_STATUSES = ("draft", "approved", "cancelled")
# each event type and the ones that must be recorded before it
EVENT_NEEDS: dict[str, tuple[str, ...]] = {
    "invoiced": (), "shipped": ("invoiced",), "delivered": ("invoiced", "shipped"), "cancelled": (),
}
# the data of an event that the back office may correct once it is recorded (NF-e re-issued, tracking fixed)
CORRECTABLE = ("invoice_key", "invoice_number", "tracking_code", "carrier")
CENT = Decimal("0.01")
NOTES = ["Entregar no período da tarde", "Cliente retira na loja", "Embrulhar para presente",
         "Confirmar numeração antes de enviar", "Ligar antes da entrega"]

# Field = (name, kind, required, nullable), in the order the contract lists them; `key` is checked first.
Field = tuple[str, str, bool, bool]
FIELDS: dict[str, tuple[Field, ...]] = {
    "products": (("name", "text", True, False), ("active", "bool", True, False), ("barcode", "ean", False, True),
                 ("brand", "str", False, True), ("group_key", "str", False, True), ("unit", "str", False, False)),
    "prices": (("price", "money", True, False), ("promo_price", "money", False, True),
               ("promo_until", "date-time", False, True)),
    "stock": (("available", "count", True, False),),
    "customers": (("document", "document", True, False), ("name", "text", True, False),
                  ("email", "str", False, True), ("phone", "str", False, True), ("city", "str", False, True),
                  ("state", "str", False, True)),
    "payment-methods": (("name", "text", True, False), ("type", "text", True, False),
                        ("active", "bool", True, False), ("max_installments", "int", False, False)),
    "groups": (("name", "text", True, False), ("active", "bool", True, False), ("parent_key", "str", False, True)),
    "sellers": (("name", "text", True, False), ("active", "bool", True, False), ("store", "str", False, False)),
}
KIND_NAMES = {"str": "a string", "text": "a string", "bool": "a boolean", "int": "an integer",
              "count": "an integer", "money": "a string", "date-time": "a string", "ean": "a string",
              "document": "a string"}

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS items (collection TEXT NOT NULL, key TEXT NOT NULL, data TEXT NOT NULL,
    updated_at TEXT NOT NULL, PRIMARY KEY (collection, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tablet_customers (id TEXT PRIMARY KEY, seq INTEGER NOT NULL UNIQUE, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, seq INTEGER NOT NULL UNIQUE, status TEXT NOT NULL,
    backoffice_number TEXT, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS orders_status_seq ON orders (status, seq);
CREATE TABLE IF NOT EXISTS order_events (id INTEGER PRIMARY KEY, order_id TEXT NOT NULL, type TEXT NOT NULL,
    body TEXT NOT NULL, received REAL NOT NULL);
CREATE INDEX IF NOT EXISTS order_events_order ON order_events (order_id);
CREATE TABLE IF NOT EXISTS acks (id INTEGER PRIMARY KEY, order_id TEXT NOT NULL, backoffice_number TEXT NOT NULL,
    received REAL NOT NULL);
CREATE INDEX IF NOT EXISTS acks_order ON acks (order_id);
"""
UPSERT_ITEM = ("INSERT INTO items (collection, key, data, updated_at) VALUES (?, ?, ?, ?)"
               " ON CONFLICT (collection, key) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at")
UPSERT_ORDER = ("INSERT INTO orders (id, seq, status, data) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, status = excluded.status, data = excluded.data")
UPSERT_CUSTOMER = ("INSERT INTO tablet_customers (id, seq, data) VALUES (?, ?, ?)"
                   " ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, data = excluded.data")

Problem = tuple[str, str, str]  # field, code, message


# -- validation --------------------------------------------------------------------------------------
def valid_nfe_key(key: str) -> bool:
    """44 digits whose last is the mod-11 check digit of the first 43 (weights 2..9 from the right)."""
    if not NFE_KEY.fullmatch(key):
        return False
    total, weight = 0, 2
    for digit in reversed(key[:43]):
        total += int(digit) * weight
        weight = 2 if weight == 9 else weight + 1
    remainder = total % 11
    return int(key[43]) == (0 if remainder in (0, 1) else 11 - remainder)




@lru_cache(maxsize=1 << 16)
def valid_barcode(code: str) -> bool:
    """EAN-8, EAN-13 or GTIN-14 (not UPC-A), memoised: a catalogue re-sends the same codes every cycle."""
    return EAN.fullmatch(code) is not None and valid_ean(code)


@lru_cache(maxsize=1 << 16)
def valid_document(digits: str) -> bool:
    """A CPF of 11 or a CNPJ of 14 digits with valid check digits, memoised like barcodes."""
    return (len(digits) == 11 and valid_cpf(digits)) or (len(digits) == 14 and valid_cnpj(digits))




def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_value(kind: str, value: Any) -> tuple[str, str] | None:
    """(code, message) when a non-null value does not fit its kind."""
    wanted = KIND_NAMES[kind]
    if kind == "bool":
        ok = isinstance(value, bool)
    elif kind in ("int", "count"):
        ok = _is_int(value)
    else:
        ok = isinstance(value, str)
    if not ok:
        return "invalid_type", f"must be {wanted}, got {json_type(value)}"
    if kind == "text" and not value.strip():
        return "empty", "must not be empty"
    if kind == "count" and value < 0:
        return "out_of_range", f"must be an integer >= 0, got {value}"
    if kind == "money" and not MONEY.fullmatch(value):
        return "invalid_money", f'must be a decimal string with two places like "129.90", got {value[:40]!r}'
    if kind == "date-time" and not valid_date_time(value):
        return "invalid_date_time", f'must be an RFC 3339 date-time like "2026-01-05T09:00:00Z", got {value[:40]!r}'
    if kind == "ean" and not valid_barcode(value):
        return "invalid_barcode", f"must be a valid EAN-8, EAN-13 or GTIN-14, got {value[:40]!r}"
    # the contract's Customer.document is a plain string: the app takes it as people type it
    # (436.555.472-77), so only its digits are checked
    if kind == "document" and not valid_document(normalize_document(value)):
        return "invalid_document", "must be a valid CPF (11 digits) or CNPJ (14 digits)"
    return None


def check_fields(record: dict[str, Any], fields: Iterable[Field]) -> Problem | None:
    """The first field of `record` that breaks its declaration, as (field, code, message)."""
    for name, kind, required, nullable in fields:
        if name not in record:
            if required:
                return name, "required", f"{name} is required"
            continue
        value = record[name]
        if value is None:
            if required:
                return name, "required", f"{name} is required, got null"
            if not nullable:
                return name, "invalid_type", f"{name} must be {KIND_NAMES[kind]}, got null"
            continue
        problem = check_value(kind, value)
        if problem is not None:
            return name, problem[0], f"{name} {problem[1]}"
    return None


def validate_item(collection: str, item: Any) -> Problem | None:
    """Why an item of a batch does not match its collection's schema, or None when it does."""
    if not isinstance(item, dict):
        return "", "invalid_item", f"an item must be an object, got {json_type(item)}"
    return check_fields(item, (("key", "text", True, False), *FIELDS[collection]))


# -- helpers -----------------------------------------------------------------------------------------
def money(amount: Decimal) -> str:
    return f"{amount.quantize(CENT):.2f}"


def now_iso() -> str:
    return seeddata.iso(datetime.now(UTC))


def new_uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def items_total(items: Any) -> Decimal | None:
    """sum(quantity * unit_price - discount), or None when the items are not well formed."""
    if not isinstance(items, list):
        return None
    try:
        return sum((Decimal(i["unit_price"]) * i["quantity"] - Decimal(i.get("discount") or "0") for i in items),
                   Decimal("0.00"))
    except (KeyError, TypeError, InvalidOperation, AttributeError):
        return None


def json_page(texts: Iterable[str], **extra: Any) -> Response:
    """A page of stored JSON documents as `{"items": [...], **extra}` without parsing them again."""
    tail = "".join(f",{json.dumps(k)}:{json.dumps(v)}" for k, v in extra.items())
    raw = '{"items":[' + ",".join(texts) + "]" + tail + "}"
    return Response(200, raw=raw.encode("utf-8"))


class SellerUpSim(SimApp):
    """The tablet app's cloud: catalogue it is sent, tablet customers and orders it hands out."""

    system = "sellerup"

    def __init__(self, db_path: str, *, products: int, seed: int, log_bodies: bool = True,
                 api_key: str | None = None, orders: int = 30, tablet_customers: int = 24) -> None:
        super().__init__(db_path, log_bodies=log_bodies)
        self.webhooks = WebhookSender()  # admin: orders announced to the agent as they are made
        self.db.executescript(SCHEMA)
        self.products = products
        self.seed = seed
        self._catalog: dict[int, tuple[bool, Decimal]] = {}
        # a key given at start wins; otherwise the last one set through /_admin/config survives a restart
        self.api_key = api_key or self.meta("api_key") or seeddata.DEMO_API_KEY
        self.revoked = self.meta("revoked") == "1"  # a revocation is the store's decision: it outlives restarts
        self.seq = int(self.db.execute(
            "SELECT max(coalesce((SELECT max(seq) FROM orders), 0), coalesce((SELECT max(seq) FROM tablet_customers), 0))"
        ).fetchone()[0])
        if self.meta("seeded") is None:
            if orders > 0 and products < 1:
                raise ValueError("seeded orders need at least one product")
            with self.tx():
                self._seed(orders, tablet_customers)
        self._routes()

    # -- storage ---------------------------------------------------------------------------------------
    def _bump(self) -> int:
        """The next seq, shared by orders and tablet customers; the stored maximum restores it on restart."""
        self.seq += 1
        return self.seq

    def _put_order(self, order: dict[str, Any]) -> dict[str, Any]:
        order["seq"] = self._bump()
        self.db.execute(UPSERT_ORDER, (order["id"], order["seq"], str(order.get("status")),
                                       json.dumps(order, ensure_ascii=False)))
        return order

    def _put_customer(self, customer: dict[str, Any]) -> dict[str, Any]:
        customer["seq"] = self._bump()
        self.db.execute(UPSERT_CUSTOMER, (customer["id"], customer["seq"], json.dumps(customer, ensure_ascii=False)))
        return customer

    def _order(self, order_id: str) -> dict[str, Any]:
        row = self.db.execute("SELECT data FROM orders WHERE id = ?", (order_id,)).fetchone()
        if row is None:
            raise HttpError(404, "not_found", f"no order {order_id[:80]}")
        return json.loads(row[0])  # type: ignore[no-any-return]

    def _customer(self, customer_id: str) -> dict[str, Any]:
        row = self.db.execute("SELECT data FROM tablet_customers WHERE id = ?", (customer_id,)).fetchone()
        if row is None:
            raise HttpError(404, "not_found", f"no tablet customer {customer_id[:80]}")
        return json.loads(row[0])  # type: ignore[no-any-return]

    # -- seed ------------------------------------------------------------------------------------------
    def _seed(self, orders: int, customers: int) -> None:
        """Tablet customers and orders, a pure function of the seed, like the back office's seed."""
        bo_customers = seeddata.customer_count(self.products)
        tablet_ids = []
        for i in range(1, customers + 1):
            data = seeddata.tablet_customer(self.seed, i, bo_customers)
            code = None
            # every 3rd carries a back office customer's CPF: most of those are already linked to it,
            # every 15th is not (so binding by document happens on seeded data too)
            if i % 3 == 0 and i % 15 != 0:
                code = f"C{1 + (i * 7919) % bo_customers:06d}"
            tid = new_uuid(seeddata.rng_for(self.seed, "tablet-id", i))
            self._put_customer({"id": tid, "code": code, **data, "updated_at": seeddata.iso(seeddata.EPOCH)})
            tablet_ids.append(tid)
        for i in range(1, orders + 1):
            rng = seeddata.rng_for(self.seed, "tablet-order", i)
            roll = rng.random()
            status = "approved" if roll < 0.6 else "draft" if roll < 0.85 else "cancelled"
            created = seeddata.EPOCH - timedelta(minutes=rng.randint(5, 3 * 24 * 60))
            self._put_order(self._make_order(rng, number=i, status=status, tablet_ids=tablet_ids, created=created))
        self.set_meta("seeded", "1")

    def _product(self, index: int) -> tuple[bool, Decimal]:
        """(active, list price) of a back office product, memoised: bulk order generation asks often."""
        known = self._catalog.get(index)
        if known is None:
            known = (bool(seeddata.product(self.seed, index)["active"]),
                     Decimal(seeddata.price(self.seed, index)["list_price"]))
            self._catalog[index] = known
        return known

    def _pick_product(self, rng: random.Random, used: set[int]) -> int | None:
        for _ in range(50):
            index = rng.randint(1, self.products)
            if index not in used and self._product(index)[0]:
                return index
        # a tiny or mostly inactive catalogue: the first active product not in the order yet
        return next((i for i in range(1, self.products + 1) if i not in used and self._product(i)[0]), None)

    def _make_order(self, rng: random.Random, *, number: int, status: str, tablet_ids: list[str],
                    created: datetime) -> dict[str, Any]:
        """A realistic TabletOrder: active products at their list price, payments adding up to the total."""
        items = []
        used: set[int] = set()
        for _ in range(rng.randint(1, 4)):
            index = self._pick_product(rng, used)
            if index is None:
                break
            used.add(index)
            unit_price = self._product(index)[1]
            quantity = rng.choices((1, 2, 3, 4, 6), weights=(50, 25, 12, 8, 5))[0]
            discount = Decimal("0.00")
            if rng.random() < 0.25:
                discount = (unit_price * quantity * rng.choice((5, 10, 15)) / 100).quantize(CENT)
            items.append({"key": seeddata.product_code(index), "quantity": quantity, "unit_price": money(unit_price),
                          "discount": money(discount)})
        if not items:  # no active product at all: still an order with an item, the back office will say no
            items.append({"key": seeddata.product_code(1), "quantity": 1,
                          "unit_price": money(self._product(1)[1]), "discount": "0.00"})
        total = items_total(items) or Decimal("0.00")
        if tablet_ids and rng.random() < 0.4:
            customer = {"code": None, "tablet_customer_id": rng.choice(tablet_ids)}
        else:
            code = f"C{rng.randint(1, seeddata.customer_count(self.products)):06d}"
            customer = {"code": code, "tablet_customer_id": None}
        seller = rng.randint(1, seeddata.seller_count())
        return {
            "id": new_uuid(rng), "number": f"T{number:05d}", "status": status, "exported": False,
            "store": seeddata.STORES[seller % len(seeddata.STORES)],  # the seller's own store
            "seller": f"V{seller:03d}", "customer": customer, "items": items,
            "payments": self._payments(rng, total), "total": money(total),
            "notes": rng.choice(NOTES) if rng.random() < 0.2 else None, "created_at": seeddata.iso(created),
        }

    @staticmethod
    def _payments(rng: random.Random, total: Decimal) -> list[dict[str, Any]]:
        """One payment, or two (Pix or voucher, then card) whose amounts add up to the total exactly."""
        if total >= 20 and rng.random() < 0.3:
            first = (total * Decimal(rng.choice(("0.3", "0.5")))).quantize(CENT)
            return [{"method": rng.choice(("PIX", "VALE")), "amount": money(first), "installments": 1},
                    {"method": "CC", "amount": money(total - first), "installments": rng.randint(1, 6)}]
        method = rng.choice(("PIX", "CC", "CD", "DIN", "BOL"))
        installments = rng.randint(1, 10) if method == "CC" else 1
        return [{"method": method, "amount": money(total), "installments": installments}]

    # -- routes ----------------------------------------------------------------------------------------
    def _routes(self) -> None:
        r = self.route
        r("GET", "/v1/tablet-customers", self.list_tablet_customers)
        r("POST", "/v1/tablet-customers/{id}/link", self.link_customer)
        r("GET", "/v1/orders", self.list_orders)
        r("POST", "/v1/orders/{id}/acknowledge", self.acknowledge)
        r("POST", "/v1/orders/{id}/events", self.post_event)
        r("PUT", "/v1/{collection}", self.upsert)
        r("GET", "/v1/{collection}", self.list_collection)
        r("POST", "/_admin/keys/revoke", self.admin_revoke)
        r("POST", "/_admin/keys/restore", self.admin_restore)
        r("POST", "/_admin/config", self.admin_config)
        r("POST", "/_admin/orders/generate", self.admin_generate)
        r("POST", "/_admin/orders", self.admin_create_order)
        r("GET", "/_admin/orders", self.admin_orders)
        r("GET", "/_admin/orders/{id}", self.admin_order)
        r("PATCH", "/_admin/orders/{id}", self.admin_patch_order)
        r("POST", "/_admin/orders/{id}/approve", self._admin_set_status("approved"))
        r("POST", "/_admin/orders/{id}/cancel", self._admin_set_status("cancelled"))
        r("GET", "/_admin/acks", self.admin_acks)
        r("POST", "/_admin/tablet-customers", self.admin_create_customer)
        r("GET", "/_admin/tablet-customers", self.admin_customers)
        r("GET", "/_admin/tablet-customers/{id}", self.admin_customer)
        r("PATCH", "/_admin/tablet-customers/{id}", self.admin_patch_customer)
        r("GET", "/_admin/collections/{collection}", self.admin_collection)
        r("POST", "/_admin/webhooks/send", self.admin_send_webhooks)
        r("GET", "/_admin/webhooks", lambda req: Response(200, {"items": self.webhooks.entries(),
                                                                 "running": self.webhooks.running}))

    def dispatch(self, req: Request) -> Response:
        """The key is checked before routing, so a revoked key answers 401 on every call, even a wrong path."""
        if not req.path.startswith("/_admin"):
            if self.revoked:
                return HttpError(401, "key_revoked", "this integration key was revoked by the store").response()
            given = req.header("x-api-key")
            if given is None or not hmac.compare_digest(given.encode(), self.api_key.encode()):
                return HttpError(401, "invalid_key", "missing or unknown X-Api-Key").response()
        return super().dispatch(req)

    @staticmethod
    def _limit(req: Request, default: int, maximum: int) -> int:
        raw = req.arg("limit") or str(default)
        if not raw.isdigit() or not 1 <= int(raw) <= maximum:
            raise HttpError(400, "validation_error", f"limit must be an integer from 1 to {maximum}", field="limit")
        return int(raw)

    @staticmethod
    def _after(req: Request) -> int:
        raw = req.arg("after") or "0"
        if not INTEGER.fullmatch(raw):
            raise HttpError(400, "validation_error", "after must be an integer (the last seq processed)",
                            field="after")
        return int(raw)

    @staticmethod
    def _body_object(req: Request) -> dict[str, Any]:
        """The JSON object a POST carries: not JSON is 400, JSON of another shape is 422."""
        body = req.json()
        if not isinstance(body, dict):
            raise HttpError(422, "validation_error", f"the body must be a JSON object, got {json_type(body)}")
        return body

    # -- catalogue -------------------------------------------------------------------------------------
    @staticmethod
    def _collection(req: Request) -> str:
        collection = req.params["collection"]
        if collection not in COLLECTIONS:
            raise HttpError(404, "not_found", f"no collection {collection[:40]}; one of {', '.join(COLLECTIONS)}")
        return collection

    def _stored(self, collection: str, keys: list[str]) -> dict[str, str]:
        """The stored JSON of the batch's keys, in one query (the keys travel as one JSON array)."""
        rows = self.db.execute("SELECT key, data FROM items WHERE collection = ? AND key IN"
                               " (SELECT value FROM json_each(?))", (collection, json.dumps(keys)))
        return dict(rows.fetchall())

    def upsert(self, req: Request) -> Response:
        """One result per item, in order; invalid items are rejected and the rest applied in one transaction."""
        collection = self._collection(req)
        body = req.json()
        if not isinstance(body, dict) or not isinstance(body.get("items"), list):
            raise HttpError(400, "validation_error", 'the body must be {"items": [...]}', field="items")
        items: list[Any] = body["items"]
        if len(items) > MAX_BATCH:
            raise HttpError(413, "batch_too_large", f"at most {MAX_BATCH} items per batch, got {len(items)}",
                            max_items=MAX_BATCH)
        keys = {i["key"] for i in items if isinstance(i, dict) and isinstance(i.get("key"), str)}
        stored = self._stored(collection, list(keys))
        results: list[dict[str, Any]] = []
        writes: list[tuple[str, str, str, str]] = []
        seen: set[str] = set()
        stamp = now_iso()
        for item in items:
            key = item.get("key") if isinstance(item, dict) else None
            problem = validate_item(collection, item)
            if problem is None and key in seen:
                problem = ("key", "duplicate_key", f"key {key!r} appears earlier in this batch")
            if isinstance(key, str):
                seen.add(key)
            if problem is not None:
                field, code, message = problem
                error = {"code": code, "message": message, **({"field": field} if field else {})}
                shown = key if isinstance(key, str) else "" if key is None else json.dumps(key)
                results.append({"key": shown, "status": "rejected", "error": error})
                continue
            text = json.dumps(item, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
            before = stored.get(key)
            if before == text:
                results.append({"key": key, "status": "unchanged"})
                continue
            results.append({"key": key, "status": "created" if before is None else "updated"})
            writes.append((collection, key, text, stamp))
        if writes:
            with self.tx():
                self.db.executemany(UPSERT_ITEM, writes)
        return Response(200, {"results": results})

    def list_collection(self, req: Request) -> Response:
        """What the app holds, keyset-paged by key (for reconciliation)."""
        collection = self._collection(req)
        limit = self._limit(req, 500, 1000)
        after = req.arg("after_key") or ""
        rows = self.db.execute("SELECT key, data FROM items WHERE collection = ? AND key > ? ORDER BY key LIMIT ?",
                               (collection, after, limit + 1)).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        return json_page((r[1] for r in rows), next_after_key=rows[-1][0] if more else None)

    # -- tablet customers ------------------------------------------------------------------------------
    def list_tablet_customers(self, req: Request) -> Response:
        limit, after = self._limit(req, 100, 500), self._after(req)
        rows = self.db.execute("SELECT data FROM tablet_customers WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit))
        return json_page(r[0] for r in rows)

    def link_customer(self, req: Request) -> Response:
        """Record the back office code; a change moves the customer to the end of the feed."""
        customer = self._customer(req.params["id"])
        body = self._body_object(req)
        code = body.get("code")
        if not isinstance(code, str) or not code.strip():
            raise HttpError(422, "validation_error", "code (the back office customer code) is required", field="code")
        if customer.get("code") != code:
            customer["code"] = code
            customer["updated_at"] = now_iso()
            with self.tx():
                self._put_customer(customer)
        return Response(204)

    # -- orders ----------------------------------------------------------------------------------------
    def list_orders(self, req: Request) -> Response:
        limit, after = self._limit(req, 100, 500), self._after(req)
        status = req.arg("status")
        if status is None:
            rows = self.db.execute("SELECT data FROM orders WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit))
        elif status in ORDER_STATUSES:
            rows = self.db.execute("SELECT data FROM orders WHERE status = ? AND seq > ? ORDER BY seq LIMIT ?",
                                   (status, after, limit))
        else:
            raise HttpError(400, "validation_error", f"status must be one of {', '.join(ORDER_STATUSES)}",
                            field="status")
        return json_page(r[0] for r in rows)

    def acknowledge(self, req: Request) -> Response:
        """Exported once: the first back office number stays, every call is kept in the ack log."""
        order = self._order(req.params["id"])
        body = self._body_object(req)
        number = body.get("backoffice_number")
        if not isinstance(number, str) or not number.strip():
            raise HttpError(422, "validation_error", "backoffice_number is required", field="backoffice_number")
        with self.tx():
            self.db.execute("INSERT INTO acks (order_id, backoffice_number, received) VALUES (?, ?, ?)",
                            (order["id"], number, time.time()))
            if not order.get("exported"):
                order["exported"] = True
                self._put_order(order)
                self.db.execute("UPDATE orders SET backoffice_number = ? WHERE id = ?", (number, order["id"]))
        return Response(204)

    def post_event(self, req: Request) -> Response:
        """Fulfilment news, only in the order invoiced → shipped → delivered, on approved orders."""
        order = self._order(req.params["id"])
        body = self._body_object(req)
        kind = body.get("type")
        if not isinstance(kind, str) or kind not in EVENT_NEEDS:
            raise HttpError(422, "validation_error", f"type must be one of {', '.join(EVENT_NEEDS)}", field="type")
        optional: tuple[Field, ...] = (("invoice_key", "str", False, True), ("invoice_number", "str", False, True),
                                       ("tracking_code", "str", False, True), ("carrier", "str", False, True))
        needed: tuple[Field, ...] = {
            "invoiced": (("invoice_key", "text", True, False), ("invoice_number", "text", True, False)),
            "shipped": (("carrier", "text", True, False), ("tracking_code", "text", True, False)),
        }.get(kind, ())
        problem = check_fields(body, (("occurred_at", "date-time", True, False), *needed, *optional))
        if problem is None and kind == "invoiced" and not valid_nfe_key(body["invoice_key"]):
            problem = ("invoice_key", "invalid_invoice_key",
                       "invoice_key must be the 44-digit NF-e access key with a valid check digit")
        if problem is not None:
            field, code, message = problem
            raise HttpError(422, code if code == "invalid_invoice_key" else "validation_error", message, field=field)
        recorded = [(row[0], json.loads(row[1])) for row in self.db.execute(
            "SELECT type, body FROM order_events WHERE order_id = ? ORDER BY id", (order["id"],))]
        have = [t for t, _ in recorded]
        if kind in have:
            # the contract answers 204 "recorded" for an event and names no rule against its type again: the
            # same event again is a repeat (409 already_recorded); with other NF-e or tracking data it is a
            # correction, recorded as the latest of its type (what the seller sees)
            latest = [b for t, b in recorded if t == kind][-1]
            if all(latest.get(f) == body.get(f) for f in CORRECTABLE):
                raise HttpError(409, "already_recorded", f"the order already has a {kind} event")
        elif order.get("status") != "approved":
            raise HttpError(409, "not_approved", f"the order is {order.get('status')}, not approved")
        elif "cancelled" in have:
            raise HttpError(409, "out_of_order", f"the order was cancelled: no {kind} event after that")
        elif kind == "cancelled" and "delivered" in have:
            raise HttpError(409, "out_of_order", "a delivered order cannot be cancelled")
        missing = [need for need in EVENT_NEEDS[kind] if need not in have]
        if missing and kind not in have:
            raise HttpError(409, "out_of_order", f"{kind} must come after {' and '.join(missing)}")
        with self.tx():
            self.db.execute("INSERT INTO order_events (order_id, type, body, received) VALUES (?, ?, ?, ?)",
                            (order["id"], kind, json.dumps(body, ensure_ascii=False), time.time()))
        return Response(204)

    # -- admin: key ------------------------------------------------------------------------------------
    @staticmethod
    def _admin_body(req: Request) -> dict[str, Any]:
        """An admin body: optional (empty means {}), but when present a JSON object."""
        if not req.body.strip():
            return {}
        body = req.json()
        if not isinstance(body, dict):
            raise HttpError(400, "validation_error", "an admin body must be a JSON object")
        return body

    def admin_revoke(self, req: Request) -> Response:
        self.revoked = True
        self.set_meta("revoked", "1")
        return Response(204)

    def admin_restore(self, req: Request) -> Response:
        self.revoked = False
        self.set_meta("revoked", "0")
        return Response(204)

    def admin_config(self, req: Request) -> Response:
        body = self._admin_body(req)
        unknown = set(body) - {"api_key"}
        if unknown:
            raise HttpError(400, "validation_error", f"unknown settings: {sorted(unknown)}; known: api_key")
        if "api_key" in body:
            if not isinstance(body["api_key"], str) or not body["api_key"]:
                raise HttpError(400, "validation_error", "api_key must be a non-empty string", field="api_key")
            self.api_key = body["api_key"]
            self.set_meta("api_key", self.api_key)
        return Response(204)

    # -- admin: orders ---------------------------------------------------------------------------------
    def _tablet_ids(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT id FROM tablet_customers ORDER BY seq")]

    def _order_count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM orders").fetchone()[0])

    @staticmethod
    def _status_arg(body: dict[str, Any]) -> str:
        status = body.get("status", "approved")
        if status not in ORDER_STATUSES:
            raise HttpError(400, "validation_error", f"status must be one of {', '.join(ORDER_STATUSES)}",
                            field="status")
        return str(status)

    def admin_create_order(self, req: Request) -> Response:
        """An order as the tablet would take it; fields given in the body replace the generated ones."""
        body = self._admin_body(req)
        status = self._status_arg(body)
        fields = {k: v for k, v in body.items() if k not in ("seq", "backoffice_number")}
        if "id" in fields:
            if not isinstance(fields["id"], str) or not fields["id"]:
                raise HttpError(400, "validation_error", "id must be a non-empty string", field="id")
            if self.db.execute("SELECT 1 FROM orders WHERE id = ?", (fields["id"],)).fetchone():
                raise HttpError(409, "conflict", f"order {fields['id']} exists")
        rng = seeddata.rng_for(self.seed, "admin-order", self.seq + 1)  # seq never repeats, so neither do ids
        order = self._make_order(rng, number=self._order_count() + 1, status=status, tablet_ids=self._tablet_ids(),
                                 created=datetime.now(UTC))
        order.update(fields)
        if "items" in fields and "total" not in fields:
            total = items_total(order["items"])
            if total is not None:
                order["total"] = money(total)
        if ("items" in fields or "total" in fields) and "payments" not in fields:
            try:
                order["payments"] = self._payments(rng, Decimal(order["total"]))
            except (InvalidOperation, TypeError, ValueError):
                pass  # a deliberately bad total: the payments stay as generated
        with self.tx():
            self._put_order(order)
        return Response(201, order)

    def admin_generate(self, req: Request) -> Response:
        """Many orders in one transaction (bench and fault storms): {"count", "status", "backoffice_customers"}."""
        body = self._admin_body(req)
        count = body.get("count", 1)
        if not _is_int(count) or not 1 <= count <= 1_000_000:
            raise HttpError(400, "validation_error", "count must be an integer from 1 to 1000000", field="count")
        status = self._status_arg(body)
        tablet_ids = [] if body.get("backoffice_customers") else self._tablet_ids()
        start = self._order_count()
        now = datetime.now(UTC)
        ids = []
        with self.tx():
            for i in range(count):
                rng = seeddata.rng_for(self.seed, "admin-order", self.seq + 1)
                order = self._make_order(rng, number=start + i + 1, status=status, tablet_ids=tablet_ids, created=now)
                ids.append(self._put_order(order)["id"])
        return Response(201, {"ids": ids, "count": len(ids), "last_seq": self.seq})

    def admin_send_webhooks(self, req: Request) -> Response:
        """Orders made one by one, each announced to the agent (the openapi documents no notifications of
        its own; this sender posts {topic, id} with a shared token): {"url", "token", "header", "count",
        "rate", "notify", "status", "backoffice_customers"}. Started in the background: GET /_admin/webhooks."""
        body = self._admin_body(req)
        url, token = body.get("url"), body.get("token")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise HttpError(400, "validation_error", "url must be an http(s) URL", field="url")
        if not isinstance(token, str):
            raise HttpError(400, "validation_error", "token must be a string", field="token")
        count, rate = body.get("count", 1), body.get("rate")
        if not _is_int(count) or not 1 <= count <= 100_000:
            raise HttpError(400, "validation_error", "count must be an integer from 1 to 100000", field="count")
        if rate is not None and (not isinstance(rate, (int, float)) or rate <= 0):
            raise HttpError(400, "validation_error", "rate must be a number > 0", field="rate")
        if self.webhooks.running:
            raise HttpError(409, "conflict", "a sending run is still going on")
        status = self._status_arg(body)
        tablet_ids = [] if body.get("backoffice_customers") else self._tablet_ids()

        def make(i: int) -> tuple[dict[str, Any], str]:
            with self.lock, self.tx():
                rng = seeddata.rng_for(self.seed, "admin-order", self.seq + 1)
                order = self._make_order(rng, number=self._order_count() + 1, status=status, tablet_ids=tablet_ids,
                                         created=datetime.now(UTC))
                oid = self._put_order(order)["id"]
            return {"topic": "orders", "id": oid}, oid

        header = str(body.get("header") or "X-Syncagent-Token")
        self.webhooks.start(url, {header: token}, make, count, rate=float(rate) if rate else None,
                            notify=body.get("notify", True) is not False)
        return Response(202, {"started": count})

    def _acks_by_order(self, order_id: str | None = None) -> dict[str, list[dict[str, Any]]]:
        sql = "SELECT order_id, backoffice_number, received FROM acks"
        rows = self.db.execute(sql + " WHERE order_id = ? ORDER BY id", (order_id,)) if order_id \
            else self.db.execute(sql + " ORDER BY id")
        acks: dict[str, list[dict[str, Any]]] = {}
        for oid, number, received in rows:
            acks.setdefault(oid, []).append({"backoffice_number": number, "received": received})
        return acks

    def admin_orders(self, req: Request) -> Response:
        """Every order, by seq, with the number it was exported as and every acknowledgement received."""
        acks = self._acks_by_order()
        items = []
        for order_id, number, data in self.db.execute("SELECT id, backoffice_number, data FROM orders ORDER BY seq"):
            items.append(json.loads(data) | {"backoffice_number": number, "acks": acks.get(order_id, [])})
        return Response(200, {"items": items})

    def admin_order(self, req: Request) -> Response:
        """One order with its events (and when each arrived) and its ack log."""
        order_id = req.params["id"]
        row = self.db.execute("SELECT backoffice_number, data FROM orders WHERE id = ?", (order_id,)).fetchone()
        if row is None:
            raise HttpError(404, "not_found", f"no order {order_id[:80]}")
        events = [json.loads(body) | {"received": received} for body, received in self.db.execute(
            "SELECT body, received FROM order_events WHERE order_id = ? ORDER BY id", (order_id,))]
        acks = self._acks_by_order(order_id).get(order_id, [])
        return Response(200, json.loads(row[1]) | {"backoffice_number": row[0], "events": events, "acks": acks})

    def admin_patch_order(self, req: Request) -> Response:
        """Change any field, even into something invalid (bad-record tests); the order comes again in the feed."""
        order = self._order(req.params["id"])
        body = self._admin_body(req)
        if "id" in body and body["id"] != order["id"]:
            raise HttpError(400, "validation_error", "an order's id cannot change", field="id")
        number = body.pop("backoffice_number", None)
        order |= {k: v for k, v in body.items() if k != "seq"}
        with self.tx():
            self._put_order(order)
            if number is not None:
                self.db.execute("UPDATE orders SET backoffice_number = ? WHERE id = ?", (number, order["id"]))
        return Response(200, order)

    def _admin_set_status(self, status: str) -> Callable[[Request], Response]:
        def handler(req: Request) -> Response:
            order = self._order(req.params["id"])
            order["status"] = status
            with self.tx():
                self._put_order(order)
            return Response(200, order)

        return handler

    def admin_acks(self, req: Request) -> Response:
        """Every acknowledgement call, in arrival order (invariant checks: none before the order existed)."""
        rows = self.db.execute("SELECT order_id, backoffice_number, received FROM acks ORDER BY id")
        return Response(200, {"items": [{"order_id": o, "backoffice_number": n, "received": t} for o, n, t in rows]})

    # -- admin: tablet customers -----------------------------------------------------------------------
    def admin_create_customer(self, req: Request) -> Response:
        """A customer registered on a tablet; fields given replace generated ones (a bad document is allowed)."""
        body = self._admin_body(req)
        if "id" in body:
            if not isinstance(body["id"], str) or not body["id"]:
                raise HttpError(400, "validation_error", "id must be a non-empty string", field="id")
            if self.db.execute("SELECT 1 FROM tablet_customers WHERE id = ?", (body["id"],)).fetchone():
                raise HttpError(409, "conflict", f"tablet customer {body['id']} exists")
        count = int(self.db.execute("SELECT count(*) FROM tablet_customers").fetchone()[0])
        data = seeddata.tablet_customer(self.seed, 100_000 + count, 0)
        rng = seeddata.rng_for(self.seed, "admin-tablet-customer", self.seq + 1)
        customer = {"id": new_uuid(rng), "code": None, **data, "updated_at": now_iso()}
        customer |= {k: v for k, v in body.items() if k != "seq"}
        with self.tx():
            self._put_customer(customer)
        return Response(201, customer)

    def admin_customers(self, req: Request) -> Response:
        return json_page(r[0] for r in self.db.execute("SELECT data FROM tablet_customers ORDER BY seq"))

    def admin_customer(self, req: Request) -> Response:
        return Response(200, self._customer(req.params["id"]))

    def admin_patch_customer(self, req: Request) -> Response:
        """Edit on the tablet: any field changes, updated_at moves, the customer comes again in the feed."""
        customer = self._customer(req.params["id"])
        body = self._admin_body(req)
        if "id" in body and body["id"] != customer["id"]:
            raise HttpError(400, "validation_error", "a tablet customer's id cannot change", field="id")
        customer |= {"updated_at": now_iso()} | {k: v for k, v in body.items() if k != "seq"}
        with self.tx():
            self._put_customer(customer)
        return Response(200, customer)

    def admin_collection(self, req: Request) -> Response:
        collection = self._collection(req)
        rows = self.db.execute("SELECT data FROM items WHERE collection = ? ORDER BY key", (collection,))
        return json_page(r[0] for r in rows)


def _int_option(options: dict[str, str], name: str, default: int) -> int:
    raw = options.get(name)
    if raw is None:
        return default
    if not INTEGER.fullmatch(str(raw).strip()) or int(raw) < 0:
        raise ValueError(f"sellerup option {name} must be a whole number >= 0, got {raw!r}")
    return int(raw)


def build(db_path: str, *, products: int, seed: int, log_bodies: bool = True, **options: str) -> SimApp:
    """Options (strings, from --set): api_key, orders (seeded, default 30), tablet_customers (default 24)."""
    unknown = set(options) - {"api_key", "orders", "tablet_customers"}
    if unknown:
        raise ValueError(f"unknown sellerup options: {sorted(unknown)}; known: api_key, orders, tablet_customers")
    return SellerUpSim(db_path, products=products, seed=seed, log_bodies=log_bodies, api_key=options.get("api_key"),
                       orders=_int_option(options, "orders", 30),
                       tablet_customers=_int_option(options, "tablet_customers", 24))
