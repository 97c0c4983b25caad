"""Simulator of the Seller Up tablet app, to ../shared/contracts/sellerup/openapi.yaml.

As strict as a real one: an API key that can be revoked (401 `key_revoked` on every call),
batch upserts of at most 500 items validated item by item (a batch partly fails), feeds ordered
by a `seq` that grows on every change (so a record comes again after it changes, e.g. when
acknowledged or linked), events accepted only in the order invoiced → shipped → delivered.
"""

from __future__ import annotations

import json
import random
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from syncagent.model import valid_document, valid_ean
from syncagent.simulators import seeddata
from syncagent.simulators.common import HttpError, Request, Response, SimApp

MONEY = re.compile(r"^-?[0-9]+\.[0-9]{2}$")
NFE = re.compile(r"^[0-9]{44}$")
COLLECTIONS = ("products", "prices", "stock", "customers", "payment-methods", "groups", "sellers")
EVENT_NEEDS = {"invoiced": (), "shipped": ("invoiced",), "delivered": ("invoiced", "shipped"), "cancelled": ()}

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS items (collection TEXT, key TEXT, data TEXT, updated_at TEXT,
    PRIMARY KEY (collection, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tablet_customers (id TEXT PRIMARY KEY, seq INTEGER, data TEXT);
CREATE INDEX IF NOT EXISTS tablet_customers_seq ON tablet_customers (seq);
CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, seq INTEGER, data TEXT);
CREATE INDEX IF NOT EXISTS orders_seq ON orders (seq);
CREATE TABLE IF NOT EXISTS order_events (order_id TEXT, type TEXT, body TEXT, received REAL);
CREATE TABLE IF NOT EXISTS acks (order_id TEXT, backoffice_number TEXT, received REAL);
"""


def valid_nfe_key(key: str) -> bool:
    if not NFE.match(key):
        return False
    total, weight = 0, 2
    for digit in reversed(key[:43]):
        total += int(digit) * weight
        weight = 2 if weight == 9 else weight + 1
    remainder = total % 11
    return int(key[43]) == (0 if remainder in (0, 1) else 11 - remainder)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _str_or_null(value: Any) -> bool:
    return value is None or isinstance(value, str)


# one validator per collection: returns (field, code, message) of the first problem, or None
def _check_required(item: dict[str, Any], names: tuple[str, ...]) -> tuple[str, str, str] | None:
    for name in names:
        if name not in item or item[name] is None or (isinstance(item[name], str) and not item[name].strip()):
            return name, "required", f"{name} is required"
    return None


def _validate(collection: str, item: Any) -> tuple[str, str, str] | None:
    if not isinstance(item, dict):
        return "", "invalid_item", "each item must be an object"
    if not isinstance(item.get("key"), str) or not item["key"]:
        return "key", "required", "key is required"
    if collection == "products":
        problem = _check_required(item, ("name", "active"))
        if problem:
            return problem
        if not isinstance(item["name"], str):
            return "name", "invalid_type", "name must be a string"
        if not isinstance(item["active"], bool):
            return "active", "invalid_type", "active must be a boolean"
        barcode = item.get("barcode")
        if barcode is not None and (not isinstance(barcode, str) or not valid_ean(barcode)):
            return "barcode", "invalid_barcode", "barcode is not a valid EAN-8/13/GTIN-14"
        for name in ("brand", "group_key", "unit"):
            if not _str_or_null(item.get(name)):
                return name, "invalid_type", f"{name} must be a string"
    elif collection == "prices":
        problem = _check_required(item, ("price",))
        if problem:
            return problem
        for name in ("price", "promo_price"):
            value = item.get(name)
            if value is not None and (not isinstance(value, str) or not MONEY.match(value)):
                return name, "invalid_money", f"{name} must be a decimal string like \"129.90\""
        if not _str_or_null(item.get("promo_until")):
            return "promo_until", "invalid_type", "promo_until must be a date-time string"
    elif collection == "stock":
        if not _is_int(item.get("available")):
            return "available", "invalid_type", "available must be an integer"
        if item["available"] < 0:
            return "available", "out_of_range", "available must be >= 0"
    elif collection == "customers":
        problem = _check_required(item, ("document", "name"))
        if problem:
            return problem
        document = item["document"]
        if not isinstance(document, str) or not document.isdigit() or len(document) not in (11, 14) \
                or not valid_document(document):
            return "document", "invalid_document", "document must be a valid CPF or CNPJ (digits only)"
    elif collection == "payment-methods":
        problem = _check_required(item, ("name", "type", "active"))
        if problem:
            return problem
        if not isinstance(item["active"], bool):
            return "active", "invalid_type", "active must be a boolean"
        if item.get("max_installments") is not None and not _is_int(item["max_installments"]):
            return "max_installments", "invalid_type", "max_installments must be an integer"
    elif collection in ("groups", "sellers"):
        problem = _check_required(item, ("name", "active"))
        if problem:
            return problem
        if not isinstance(item["active"], bool):
            return "active", "invalid_type", "active must be a boolean"
    return None


class SellerUpSim(SimApp):
    system = "sellerup"

    def __init__(self, db_path: str, *, products: int, seed: int, log_bodies: bool, options: dict[str, str]) -> None:
        super().__init__(db_path, log_bodies=log_bodies)
        self.db.executescript(SCHEMA)
        self.api_key = options.get("api_key", seeddata.DEMO_API_KEY)
        self.revoked = False
        self.products = products
        self.seed = seed
        self.rng = random.Random(f"{seed}:sellerup-admin")
        if self._meta("seeded") is None:
            self._seed(int(options.get("orders", "30")), int(options.get("tablet_customers", "24")))
        self._routes()

    # -- storage -------------------------------------------------------------------------------
    def _meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _next_seq(self) -> int:
        seq = int(self._meta("seq") or 0) + 1
        self.db.execute("INSERT OR REPLACE INTO meta VALUES ('seq', ?)", (str(seq),))
        return seq

    def _seed(self, orders: int, customers: int) -> None:
        self.db.execute("BEGIN")
        bo_customers = seeddata.customer_count(self.products)
        tablet_ids = []
        for i in range(1, customers + 1):
            rng = seeddata.rng_for(self.seed, "tablet-id", i)
            data = seeddata.tablet_customer(self.seed, i, bo_customers)
            tid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            code = None
            if i % 3 == 0 and i % 2 == 0:  # some already linked to their back office customer
                code = f"C{1 + (i * 7919) % bo_customers:06d}"
            self._put_customer({"id": tid, "code": code, **data, "updated_at": seeddata.iso(seeddata.EPOCH)})
            tablet_ids.append(tid)
        for i in range(1, orders + 1):
            rng = seeddata.rng_for(self.seed, "tablet-order", i)
            roll = rng.random()
            status = "approved" if roll < 0.6 else "draft" if roll < 0.85 else "cancelled"
            self._put_order(self._generate_order(rng, status, tablet_ids, i))
        self.db.execute("INSERT OR REPLACE INTO meta VALUES ('seeded', '1')")
        self.db.execute("COMMIT")

    def _generate_order(self, rng: random.Random, status: str, tablet_ids: list[str], number: int,
                        fields: dict[str, Any] | None = None) -> dict[str, Any]:
        fields = fields or {}
        items = []
        for _ in range(rng.randint(1, 4)):
            for _attempt in range(50):
                index = rng.randint(1, max(1, self.products))
                if seeddata.product(self.seed, index)["active"]:
                    break
            price = Decimal(seeddata.price(self.seed, index)["list_price"])
            quantity = rng.randint(1, 3)
            discount = (price * quantity * Decimal("0.05")).quantize(Decimal("0.01")) if rng.random() < 0.2 \
                else Decimal("0.00")
            items.append({"key": seeddata.product_code(index), "quantity": quantity, "unit_price": f"{price:.2f}",
                          "discount": f"{discount:.2f}"})
        total = sum((Decimal(i["unit_price"]) * i["quantity"] - Decimal(i["discount"]) for i in items), Decimal(0))
        methods = [m[0] for m in seeddata.PAYMENT_METHODS]
        if rng.random() < 0.3 and total > 10:
            first = (total / 2).quantize(Decimal("0.01"))
            payments = [{"method": "PIX", "amount": f"{first:.2f}", "installments": 1},
                        {"method": "CC", "amount": f"{total - first:.2f}", "installments": rng.randint(1, 6)}]
        else:
            payments = [{"method": rng.choice(methods[:4]), "amount": f"{total:.2f}", "installments": 1}]
        if tablet_ids and rng.random() < 0.4:
            customer = {"code": None, "tablet_customer_id": rng.choice(tablet_ids)}
        else:
            bo_customers = seeddata.customer_count(self.products)
            customer = {"code": f"C{rng.randint(1, bo_customers):06d}", "tablet_customer_id": None}
        created = datetime.now(UTC) - timedelta(minutes=rng.randint(5, 600))
        order = {
            "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)), "number": f"T{number:05d}",
            "status": status, "exported": False, "store": rng.choice(seeddata.STORES),
            "seller": f"V{rng.randint(1, seeddata.seller_count()):03d}", "customer": customer, "items": items,
            "payments": payments, "total": f"{total:.2f}", "notes": None,
            "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        return order | fields

    def _put_order(self, order: dict[str, Any]) -> dict[str, Any]:
        order["seq"] = self._next_seq()
        self.db.execute("INSERT OR REPLACE INTO orders VALUES (?, ?, ?)", (order["id"], order["seq"],
                                                                          json.dumps(order, ensure_ascii=False)))
        return order

    def _put_customer(self, customer: dict[str, Any]) -> dict[str, Any]:
        customer["seq"] = self._next_seq()
        self.db.execute("INSERT OR REPLACE INTO tablet_customers VALUES (?, ?, ?)",
                        (customer["id"], customer["seq"], json.dumps(customer, ensure_ascii=False)))
        return customer

    def _get(self, table: str, record_id: str) -> dict[str, Any]:
        row = self.db.execute(f"SELECT data FROM {table} WHERE id = ?", (record_id,)).fetchone()  # noqa: S608 # nosec B608
        if row is None:
            raise HttpError(404, "not_found", f"no {table[:-1].replace('_', ' ')} {record_id}")
        return json.loads(row[0])  # type: ignore[no-any-return]

    # -- routes --------------------------------------------------------------------------------
    def _routes(self) -> None:
        r = self.route
        r("GET", "/v1/tablet-customers", self.authed(self.list_tablet_customers))
        r("POST", "/v1/tablet-customers/{id}/link", self.authed(self.link_customer))
        r("GET", "/v1/orders", self.authed(self.list_orders))
        r("POST", "/v1/orders/{id}/acknowledge", self.authed(self.acknowledge))
        r("POST", "/v1/orders/{id}/events", self.authed(self.post_event))
        r("PUT", "/v1/{collection}", self.authed(self.upsert))
        r("GET", "/v1/{collection}", self.authed(self.list_collection))
        r("POST", "/_admin/keys/revoke", self.admin_revoke)
        r("POST", "/_admin/keys/restore", self.admin_restore)
        r("POST", "/_admin/config", self.admin_config)
        r("POST", "/_admin/orders/generate", self.admin_generate)
        r("POST", "/_admin/orders", self.admin_create_order)
        r("GET", "/_admin/orders", self.admin_orders)
        r("GET", "/_admin/orders/{id}", self.admin_order)
        r("PATCH", "/_admin/orders/{id}", self.admin_patch_order)
        r("POST", "/_admin/orders/{id}/approve", self.admin_status("approved"))
        r("POST", "/_admin/orders/{id}/cancel", self.admin_status("cancelled"))
        r("POST", "/_admin/tablet-customers", self.admin_create_customer)
        r("GET", "/_admin/tablet-customers", self.admin_customers)
        r("PATCH", "/_admin/tablet-customers/{id}", self.admin_patch_customer)
        r("GET", "/_admin/collections/{collection}", self.admin_collection)

    def authed(self, handler: Any) -> Any:
        def wrapped(req: Request) -> Response:
            if self.revoked:
                raise HttpError(401, "key_revoked", "this integration key was revoked by the store")
            if req.header("x-api-key") != self.api_key:
                raise HttpError(401, "invalid_key", "missing or unknown X-Api-Key")
            return handler(req)

        return wrapped

    def _limit(self, req: Request, default: int, maximum: int) -> int:
        raw = req.arg("limit", str(default)) or str(default)
        if not raw.isdigit() or not 1 <= int(raw) <= maximum:
            raise HttpError(400, "validation_error", f"limit must be an integer from 1 to {maximum}", field="limit")
        return int(raw)

    def _after(self, req: Request) -> int:
        raw = req.arg("after", "0") or "0"
        if not raw.isdigit():
            raise HttpError(400, "validation_error", "after must be an integer", field="after")
        return int(raw)

    # -- catalogue -----------------------------------------------------------------------------
    def _collection(self, req: Request) -> str:
        collection = req.params["collection"]
        if collection not in COLLECTIONS:
            raise HttpError(404, "not_found", f"no collection {collection}")
        return collection

    def upsert(self, req: Request) -> Response:
        collection = self._collection(req)
        body = req.json()
        if not isinstance(body, dict) or not isinstance(body.get("items"), list):
            raise HttpError(400, "validation_error", "the body must be {\"items\": [...]}", field="items")
        items = body["items"]
        if len(items) > 500:
            raise HttpError(413, "batch_too_large", f"at most 500 items per batch, got {len(items)}")
        keys = [i.get("key") for i in items if isinstance(i, dict) and isinstance(i.get("key"), str)]
        stored = {}
        for start in range(0, len(keys), 900):
            chunk = keys[start : start + 900]
            marks = ",".join("?" * len(chunk))
            stored.update(self.db.execute(
                f"SELECT key, data FROM items WHERE collection = ? AND key IN ({marks})",  # noqa: S608 # nosec B608
                (collection, *chunk)).fetchall())
        results, writes, seen = [], [], set()
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        for item in items:
            problem = _validate(collection, item)
            key = item.get("key") if isinstance(item, dict) else None
            if problem is None and key in seen:
                problem = ("key", "duplicate_key", f"key {key} appears twice in this batch")
            if problem is not None:
                field, code, message = problem
                results.append({"key": str(key or ""), "status": "rejected",
                                "error": {"code": code, "message": message, "field": field}})
                continue
            seen.add(key)
            text = json.dumps(item, sort_keys=True, ensure_ascii=False)
            if stored.get(key) == text:
                results.append({"key": key, "status": "unchanged"})
                continue
            results.append({"key": key, "status": "updated" if key in stored else "created"})
            writes.append((collection, key, text, stamp))
        self.db.executemany("INSERT OR REPLACE INTO items VALUES (?, ?, ?, ?)", writes)
        return Response(200, {"results": results})

    def list_collection(self, req: Request) -> Response:
        collection = self._collection(req)
        limit = self._limit(req, 500, 1000)
        after = req.arg("after_key") or ""
        rows = self.db.execute("SELECT key, data FROM items WHERE collection = ? AND key > ? ORDER BY key LIMIT ?",
                               (collection, after, limit + 1)).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        return Response(200, {"items": [json.loads(r[1]) for r in rows],
                              "next_after_key": rows[-1][0] if more and rows else None})

    # -- tablet customers ----------------------------------------------------------------------
    def list_tablet_customers(self, req: Request) -> Response:
        limit, after = self._limit(req, 100, 500), self._after(req)
        rows = self.db.execute("SELECT data FROM tablet_customers WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit))
        return Response(200, {"items": [json.loads(r[0]) for r in rows]})

    def link_customer(self, req: Request) -> Response:
        customer = self._get("tablet_customers", req.params["id"])
        body = req.json()
        if not isinstance(body, dict) or not isinstance(body.get("code"), str) or not body["code"]:
            raise HttpError(422, "validation_error", "code is required", field="code")
        if customer.get("code") != body["code"]:
            customer["code"] = body["code"]
            customer["updated_at"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            self._put_customer(customer)
        return Response(204)

    # -- orders --------------------------------------------------------------------------------
    def list_orders(self, req: Request) -> Response:
        limit, after = self._limit(req, 100, 500), self._after(req)
        status = req.arg("status")
        if status is not None and status not in ("draft", "approved", "cancelled"):
            raise HttpError(400, "validation_error", "status must be draft, approved or cancelled", field="status")
        rows = self.db.execute("SELECT data FROM orders WHERE seq > ? ORDER BY seq", (after,))
        items = []
        for (text,) in rows:
            order = json.loads(text)
            if status is None or order["status"] == status:
                items.append(order)
                if len(items) >= limit:
                    break
        return Response(200, {"items": items})

    def acknowledge(self, req: Request) -> Response:
        order = self._get("orders", req.params["id"])
        body = req.json()
        if not isinstance(body, dict) or not isinstance(body.get("backoffice_number"), str) \
                or not body["backoffice_number"]:
            raise HttpError(422, "validation_error", "backoffice_number is required", field="backoffice_number")
        self.db.execute("INSERT INTO acks VALUES (?, ?, ?)", (order["id"], body["backoffice_number"], time.time()))
        if not order.get("exported"):
            order["exported"] = True
            order["backoffice_number"] = body["backoffice_number"]
            self._put_order(order)
        return Response(204)

    def post_event(self, req: Request) -> Response:
        order = self._get("orders", req.params["id"])
        body = req.json()
        if not isinstance(body, dict):
            raise HttpError(422, "validation_error", "an event object is required")
        kind = body.get("type")
        if kind not in EVENT_NEEDS:
            raise HttpError(422, "validation_error", "type must be invoiced, shipped, delivered or cancelled",
                            field="type")
        if not isinstance(body.get("occurred_at"), str):
            raise HttpError(422, "validation_error", "occurred_at is required", field="occurred_at")
        if kind == "invoiced" and (not isinstance(body.get("invoice_key"), str)
                                   or not valid_nfe_key(body["invoice_key"]) or not body.get("invoice_number")):
            raise HttpError(422, "validation_error", "an invoiced event needs invoice_number and a valid 44-digit "
                            "NF-e invoice_key", field="invoice_key")
        if kind == "shipped" and (not body.get("carrier") or not body.get("tracking_code")):
            raise HttpError(422, "validation_error", "a shipped event needs carrier and tracking_code",
                            field="tracking_code")
        have = [r[0] for r in self.db.execute("SELECT type FROM order_events WHERE order_id = ?", (order["id"],))]
        if kind in have:
            raise HttpError(409, "already_recorded", f"the order already has a {kind} event")
        if kind == "cancelled" and "delivered" in have:
            raise HttpError(409, "out_of_order", "a delivered order cannot be cancelled")
        if order["status"] != "approved":
            raise HttpError(409, "not_approved", f"the order is {order['status']}")
        missing = [need for need in EVENT_NEEDS[kind] if need not in have]
        if missing or "cancelled" in have:
            raise HttpError(409, "out_of_order", f"{kind} must follow {', '.join(missing) or 'no cancellation'}")
        self.db.execute("INSERT INTO order_events VALUES (?, ?, ?, ?)",
                        (order["id"], kind, json.dumps(body, ensure_ascii=False), time.time()))
        return Response(204)

    # -- admin ---------------------------------------------------------------------------------
    def _admin_body(self, req: Request) -> dict[str, Any]:
        try:
            body = json.loads(req.body or b"{}")
        except ValueError:
            raise HttpError(400, "invalid_json", "admin body is not JSON") from None
        if not isinstance(body, dict):
            raise HttpError(400, "validation_error", "admin body must be an object")
        return body

    def admin_revoke(self, req: Request) -> Response:
        self.revoked = True
        return Response(204)

    def admin_restore(self, req: Request) -> Response:
        self.revoked = False
        return Response(204)

    def admin_config(self, req: Request) -> Response:
        body = self._admin_body(req)
        if "api_key" in body:
            self.api_key = str(body["api_key"])
        return Response(204)

    def _tablet_ids(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT id FROM tablet_customers ORDER BY seq")]

    def admin_create_order(self, req: Request) -> Response:
        body = self._admin_body(req)
        count = self.db.execute("SELECT count(*) FROM orders").fetchone()[0]
        order = self._generate_order(self.rng, body.pop("status", "approved"), self._tablet_ids(), count + 1, body)
        return Response(201, self._put_order(order))

    def admin_generate(self, req: Request) -> Response:
        body = self._admin_body(req)
        count = int(body.get("count", 1))
        status = str(body.get("status", "approved"))
        start = self.db.execute("SELECT count(*) FROM orders").fetchone()[0]
        ids = self._tablet_ids()
        customers_only = body.get("backoffice_customers", False)
        created = []
        for i in range(count):
            order = self._generate_order(self.rng, status, [] if customers_only else ids, start + i + 1)
            created.append(self._put_order(order)["id"])
        return Response(201, {"ids": created})

    def admin_orders(self, req: Request) -> Response:
        rows = self.db.execute("SELECT data FROM orders ORDER BY seq").fetchall()
        return Response(200, {"items": [json.loads(r[0]) for r in rows]})

    def admin_order(self, req: Request) -> Response:
        order = self._get("orders", req.params["id"])
        events = [json.loads(r[0]) | {"received": r[1]} for r in self.db.execute(
            "SELECT body, received FROM order_events WHERE order_id = ? ORDER BY rowid", (order["id"],))]
        acks = [{"backoffice_number": r[0], "received": r[1]} for r in self.db.execute(
            "SELECT backoffice_number, received FROM acks WHERE order_id = ? ORDER BY rowid", (order["id"],))]
        return Response(200, order | {"events": events, "acks": acks})

    def admin_patch_order(self, req: Request) -> Response:
        order = self._get("orders", req.params["id"]) | self._admin_body(req)
        return Response(200, self._put_order(order))

    def admin_status(self, status: str) -> Any:
        def handler(req: Request) -> Response:
            order = self._get("orders", req.params["id"])
            order["status"] = status
            return Response(200, self._put_order(order))

        return handler

    def admin_create_customer(self, req: Request) -> Response:
        body = self._admin_body(req)
        count = self.db.execute("SELECT count(*) FROM tablet_customers").fetchone()[0]
        data = seeddata.tablet_customer(self.seed, 10_000 + count, 0)
        customer = {"id": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)), "code": None, **data,
                    "updated_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")} | body
        return Response(201, self._put_customer(customer))

    def admin_customers(self, req: Request) -> Response:
        rows = self.db.execute("SELECT data FROM tablet_customers ORDER BY seq").fetchall()
        return Response(200, {"items": [json.loads(r[0]) for r in rows]})

    def admin_patch_customer(self, req: Request) -> Response:
        customer = self._get("tablet_customers", req.params["id"]) | self._admin_body(req)
        return Response(200, self._put_customer(customer))

    def admin_collection(self, req: Request) -> Response:
        collection = self._collection(req)
        rows = self.db.execute("SELECT data FROM items WHERE collection = ? ORDER BY key", (collection,)).fetchall()
        return Response(200, {"items": [json.loads(r[0]) for r in rows]})


def build(db_path: str, *, products: int, seed: int, log_bodies: bool = True, **options: str) -> SimApp:
    return SellerUpSim(db_path, products=products, seed=seed, log_bodies=log_bodies, options=options)
