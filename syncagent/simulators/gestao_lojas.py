"""Simulator of the back office (Gestão de Lojas), to ../shared/contracts/gestao-lojas/openapi.yaml.

As strict as a real one: OAuth2 tokens that expire, keyset feeds with opaque cursors (every
write moves a record to the end of its feed), `POST /orders` not idempotent, 409 with
`existing_code` for a duplicate customer document, 422 with details for invalid bodies, order
events only in the order invoiced → shipped → delivered. Admin endpoints under /_admin let tests
change data, add fulfilment events and read every request and order.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import sqlite3
import time
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qs

from syncagent.model import valid_document, valid_ean
from syncagent.simulators import seeddata
from syncagent.simulators.common import HttpError, Request, Response, SimApp

MONEY = re.compile(r"^-?[0-9]+\.[0-9]{2}$")
FEED_TABLES = {
    "products": ("products", "code"), "prices": ("prices", "sku"), "stock": ("stock", "sku"),
    "customers": ("customers", "code"), "payment-methods": ("payment_methods", "code"),
    "groups": ("groups_", "code"), "sellers": ("sellers", "code"), "order-events": ("events", "id"),
}
EVENT_RANK = {"invoiced": 1, "shipped": 2, "delivered": 3}
CARRIERS = ["Correios", "Jadlog", "Total Express"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS tokens (token TEXT PRIMARY KEY, expires REAL);
CREATE TABLE IF NOT EXISTS products (code TEXT PRIMARY KEY, rev INTEGER, data TEXT);
CREATE TABLE IF NOT EXISTS prices (sku TEXT PRIMARY KEY, rev INTEGER, data TEXT);
CREATE TABLE IF NOT EXISTS stock (sku TEXT, warehouse TEXT, rev INTEGER, data TEXT, PRIMARY KEY (sku, warehouse));
CREATE TABLE IF NOT EXISTS customers (code TEXT PRIMARY KEY, document TEXT UNIQUE, rev INTEGER, data TEXT);
CREATE TABLE IF NOT EXISTS payment_methods (code TEXT PRIMARY KEY, rev INTEGER, data TEXT);
CREATE TABLE IF NOT EXISTS groups_ (code TEXT PRIMARY KEY, rev INTEGER, data TEXT);
CREATE TABLE IF NOT EXISTS sellers (code TEXT PRIMARY KEY, rev INTEGER, data TEXT);
CREATE TABLE IF NOT EXISTS warehouses (code TEXT PRIMARY KEY, data TEXT);
CREATE TABLE IF NOT EXISTS orders (number TEXT PRIMARY KEY, external_id TEXT, channel TEXT, created REAL, data TEXT);
CREATE INDEX IF NOT EXISTS orders_ext ON orders (channel, external_id);
CREATE TABLE IF NOT EXISTS events (id TEXT PRIMARY KEY, rev INTEGER, order_number TEXT, data TEXT);
"""
REV_TABLES = ("products", "prices", "stock", "customers", "payment_methods", "groups_", "sellers", "events")


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def nfe_key(seed_text: str) -> str:
    """A 44-digit NF-e access key with a valid mod-11 check digit."""
    digits = "".join(str(int(c, 16) % 10) for c in seed_text.encode().hex())[:43].ljust(43, "7")
    total, weight = 0, 2
    for digit in reversed(digits):
        total += int(digit) * weight
        weight = 2 if weight == 9 else weight + 1
    remainder = total % 11
    return digits + str(0 if remainder in (0, 1) else 11 - remainder)


class GestaoLojasSim(SimApp):
    system = "gestao-lojas"

    def __init__(self, db_path: str, *, products: int, seed: int, log_bodies: bool, options: dict[str, str]) -> None:
        super().__init__(db_path, log_bodies=log_bodies)
        self.db.executescript(SCHEMA)
        for table in REV_TABLES:
            self.db.execute(f"CREATE INDEX IF NOT EXISTS {table}_rev ON {table} (rev)")
        self.client_id = options.get("client_id", seeddata.DEMO_CLIENT_ID)
        self.client_secret = options.get("client_secret", seeddata.DEMO_CLIENT_SECRET)
        self.token_ttl = int(options.get("token_ttl", "3600"))
        if self._meta("seeded") is None:
            self._seed(products, seed, int(options.get("customers", seeddata.customer_count(products))))
        self._routes()

    # -- storage helpers -----------------------------------------------------------------------
    def _meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _next_rev(self) -> int:
        rev = int(self._meta("rev") or 0) + 1
        self.db.execute("INSERT OR REPLACE INTO meta VALUES ('rev', ?)", (str(rev),))
        return rev

    def _seed(self, products: int, seed: int, customers: int) -> None:
        started = time.monotonic()
        now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        stamp = now_iso()
        rev = 0

        def stamped(row: dict[str, Any]) -> str:
            return json.dumps({**row, "updated_at": stamp}, ensure_ascii=False)

        self.db.execute("BEGIN")
        rows = []
        for code, name, parent in seeddata.GROUPS:
            rev += 1
            rows.append((code, rev, stamped({"code": code, "description": name, "parent_code": parent, "active": True})))
        self.db.executemany("INSERT INTO groups_ VALUES (?, ?, ?)", rows)
        rows = []
        for code, name, kind, installments in seeddata.PAYMENT_METHODS:
            rev += 1
            rows.append((code, rev, stamped({"code": code, "description": name, "type": kind,
                                             "max_installments": installments, "active": True})))
        self.db.executemany("INSERT INTO payment_methods VALUES (?, ?, ?)", rows)
        rows = []
        for i in range(1, seeddata.seller_count() + 1):
            rev += 1
            row = seeddata.seller(seed, i)
            rows.append((row["code"], rev, stamped(row)))
        self.db.executemany("INSERT INTO sellers VALUES (?, ?, ?)", rows)
        self.db.executemany("INSERT INTO warehouses VALUES (?, ?)", [
            (code, json.dumps({"code": code, "name": name, "store_code": store}))
            for code, name, store in seeddata.WAREHOUSES])
        batch_p, batch_pr, batch_s = [], [], []
        for i in range(1, products + 1):
            product = seeddata.product(seed, i)
            rev += 1
            batch_p.append((product["code"], rev, stamped(product)))
            rev += 1
            batch_pr.append((product["code"], rev, stamped(seeddata.price(seed, i, now))))
            for warehouse, _, _ in seeddata.WAREHOUSES:
                rev += 1
                batch_s.append((product["code"], warehouse, rev, stamped(seeddata.stock(seed, i, warehouse))))
            if len(batch_s) >= 20000:
                self._flush(batch_p, batch_pr, batch_s)
        self._flush(batch_p, batch_pr, batch_s)
        rows = []
        for i in range(1, customers + 1):
            rev += 1
            row = seeddata.customer(seed, i)
            rows.append((row["code"], row["document"], rev, stamped(row)))
        self.db.executemany("INSERT OR IGNORE INTO customers VALUES (?, ?, ?, ?)", rows)
        self.db.execute("INSERT OR REPLACE INTO meta VALUES ('rev', ?)", (str(rev),))
        self.db.execute("INSERT OR REPLACE INTO meta VALUES ('seeded', ?)", (f"{time.monotonic() - started:.2f}",))
        self.db.execute("COMMIT")

    def _flush(self, products: list[Any], prices: list[Any], stock: list[Any]) -> None:
        self.db.executemany("INSERT INTO products VALUES (?, ?, ?)", products)
        self.db.executemany("INSERT INTO prices VALUES (?, ?, ?)", prices)
        self.db.executemany("INSERT INTO stock VALUES (?, ?, ?, ?)", stock)
        products.clear()
        prices.clear()
        stock.clear()

    # -- routes --------------------------------------------------------------------------------
    def _routes(self) -> None:
        r = self.route
        r("POST", "/oauth/token", self.token)
        for feed in FEED_TABLES:
            r("GET", f"/{feed}", self._feed_handler(feed))
        r("GET", "/warehouses", self.authed(self.list_warehouses))
        r("POST", "/products", self.authed(self.create_product))
        r("GET", "/products/{code}", self.authed(self.get_product))
        r("PUT", "/products/{code}", self.authed(self.put_product))
        r("POST", "/customers", self.authed(self.create_customer))
        r("PUT", "/customers/{code}", self.authed(self.put_customer))
        r("GET", "/orders", self.authed(self.find_orders))
        r("POST", "/orders", self.authed(self.create_order))
        r("POST", "/orders/{number}/cancel", self.authed(self.cancel_order))
        # admin
        r("POST", "/_admin/tokens/expire", self.admin_expire_tokens)
        r("POST", "/_admin/config", self.admin_config)
        r("PATCH", "/_admin/products/{code}", self.admin_patch("products", "code"))
        r("PATCH", "/_admin/prices/{code}", self.admin_patch("prices", "sku"))
        r("PATCH", "/_admin/customers/{code}", self.admin_patch("customers", "code"))
        r("PATCH", "/_admin/payment-methods/{code}", self.admin_patch("payment_methods", "code"))
        r("PATCH", "/_admin/groups/{code}", self.admin_patch("groups_", "code"))
        r("PATCH", "/_admin/sellers/{code}", self.admin_patch("sellers", "code"))
        r("PUT", "/_admin/stock/{sku}/{warehouse}", self.admin_put_stock)
        r("POST", "/_admin/customers", self.admin_create_customer)
        r("GET", "/_admin/customers", lambda req: Response(200, {"items": self._all("customers")}))
        r("GET", "/_admin/orders", self.admin_orders)
        r("POST", "/_admin/orders/{number}/events", self.admin_add_event)
        r("GET", "/_admin/counts", self.admin_counts)

    def authed(self, handler: Any) -> Any:
        def wrapped(req: Request) -> Response:
            self._check_token(req)
            return handler(req)

        return wrapped

    def _check_token(self, req: Request) -> None:
        header = req.header("authorization") or ""
        if not header.startswith("Bearer "):
            raise HttpError(401, "missing_token", "send Authorization: Bearer <token> from /oauth/token")
        row = self.db.execute("SELECT expires FROM tokens WHERE token = ?", (header[7:],)).fetchone()
        if row is None or row[0] <= time.time():
            raise HttpError(401, "invalid_token", "the access token is invalid or expired")

    # -- oauth ---------------------------------------------------------------------------------
    def token(self, req: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs(req.body.decode("utf-8", "replace")).items()}
        if form.get("grant_type") != "client_credentials":
            raise HttpError(400, "unsupported_grant_type", "grant_type must be client_credentials")
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            raise HttpError(401, "invalid_client", "client authentication failed")
        token = secrets.token_urlsafe(24)
        self.db.execute("INSERT INTO tokens VALUES (?, ?)", (token, time.time() + self.token_ttl))
        return Response(200, {"access_token": token, "token_type": "Bearer", "expires_in": self.token_ttl})

    # -- feeds ---------------------------------------------------------------------------------
    def _feed_handler(self, feed: str) -> Any:
        table, key = FEED_TABLES[feed]

        def handler(req: Request) -> Response:
            self._check_token(req)
            limit = self._limit(req)
            after = self._decode_cursor(req.arg("cursor"))
            sql, args = f"SELECT rev, data FROM {table} WHERE rev > ?", [after]  # noqa: S608 # nosec B608
            if feed == "stock" and req.args("warehouse"):
                warehouses = req.args("warehouse")
                sql += f" AND warehouse IN ({','.join('?' * len(warehouses))})"
                args += warehouses
            if feed == "prices" and (req.arg("price_list") or "default") != "default":
                return Response(200, {"items": [], "next_cursor": None})
            if feed == "customers" and req.arg("document") is not None:
                sql += " AND document = ?"
                args.append(req.arg("document"))
            rows = self.db.execute(sql + " ORDER BY rev LIMIT ?", (*args, limit + 1)).fetchall()
            more = len(rows) > limit
            rows = rows[:limit]
            next_cursor = self._encode_cursor(rows[-1][0]) if more and rows else None
            return Response(200, {"items": [json.loads(r[1]) for r in rows], "next_cursor": next_cursor})

        return handler

    def _limit(self, req: Request) -> int:
        raw = req.arg("limit", "200") or "200"
        if not raw.isdigit() or not 1 <= int(raw) <= 1000:
            raise HttpError(400, "validation_error", "limit must be an integer from 1 to 1000",
                            details=[{"field": "limit", "message": f"got {raw[:20]!r}"}])
        return int(raw)

    @staticmethod
    def _encode_cursor(rev: int) -> str:
        return base64.urlsafe_b64encode(json.dumps({"r": rev}).encode()).decode().rstrip("=")

    @staticmethod
    def _decode_cursor(cursor: str | None) -> int:
        if not cursor:
            return 0
        try:
            data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
            return int(data["r"])
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise HttpError(400, "invalid_cursor", "the cursor is not one this server gave") from None

    def _all(self, table: str) -> list[dict[str, Any]]:
        return [json.loads(r[0]) for r in self.db.execute(f"SELECT data FROM {table} ORDER BY rowid")]  # noqa: S608 # nosec B608

    # -- products ------------------------------------------------------------------------------
    def list_warehouses(self, req: Request) -> Response:
        return Response(200, {"items": self._all("warehouses")})

    def _validate_product(self, body: Any, code: str | None = None) -> dict[str, Any]:
        details = []
        if not isinstance(body, dict):
            raise HttpError(422, "validation_error", "a product object is required")
        if code is not None:
            body = {**body, "code": code}
        for name in ("code", "description"):
            if not isinstance(body.get(name), str) or not body[name].strip():
                details.append({"field": name, "message": "required"})
        if not isinstance(body.get("active"), bool):
            details.append({"field": "active", "message": "required boolean"})
        if isinstance(body.get("code"), str) and len(body["code"]) > 30:
            details.append({"field": "code", "message": "at most 30 characters"})
        if isinstance(body.get("description"), str) and len(body["description"]) > 120:
            details.append({"field": "description", "message": "at most 120 characters"})
        barcode = body.get("barcode")
        if barcode is not None and (not isinstance(barcode, str) or not valid_ean(barcode)):
            details.append({"field": "barcode", "message": "not a valid EAN/GTIN"})
        ncm = body.get("ncm")
        if ncm is not None and (not isinstance(ncm, str) or not re.match(r"^[0-9]{8}$", ncm)):
            details.append({"field": "ncm", "message": "8 digits"})
        if details:
            raise HttpError(422, "validation_error", "invalid product", details=details)
        allowed = ("code", "description", "barcode", "brand", "group_code", "unit", "ncm", "weight_kg",
                   "height_cm", "width_cm", "length_cm", "active")
        return {k: body.get(k) for k in allowed if k in body} | {"unit": body.get("unit") or "UN"}

    def create_product(self, req: Request) -> Response:
        product = self._validate_product(req.json())
        if self.db.execute("SELECT 1 FROM products WHERE code = ?", (product["code"],)).fetchone():
            raise HttpError(409, "duplicate", f"product {product['code']} exists", existing_code=product["code"])
        product["updated_at"] = now_iso()
        self.db.execute("INSERT INTO products VALUES (?, ?, ?)", (product["code"], self._next_rev(),
                                                                   json.dumps(product, ensure_ascii=False)))
        return Response(201, product)

    def get_product(self, req: Request) -> Response:
        row = self.db.execute("SELECT data FROM products WHERE code = ?", (req.params["code"],)).fetchone()
        if row is None:
            raise HttpError(404, "not_found", f"no product {req.params['code']}")
        return Response(200, json.loads(row[0]))

    def put_product(self, req: Request) -> Response:
        code = req.params["code"]
        if not self.db.execute("SELECT 1 FROM products WHERE code = ?", (code,)).fetchone():
            raise HttpError(404, "not_found", f"no product {code}")
        product = self._validate_product(req.json(), code) | {"updated_at": now_iso()}
        self.db.execute("UPDATE products SET rev = ?, data = ? WHERE code = ?",
                        (self._next_rev(), json.dumps(product, ensure_ascii=False), code))
        return Response(200, product)

    # -- customers -----------------------------------------------------------------------------
    def _validate_customer(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise HttpError(422, "validation_error", "a customer object is required")
        details = []
        document = body.get("document")
        if not isinstance(document, str) or not re.match(r"^([0-9]{11}|[0-9]{14})$", document):
            details.append({"field": "document", "message": "CPF (11) or CNPJ (14) digits"})
        elif not valid_document(document):
            details.append({"field": "document", "message": "invalid check digits"})
        if not isinstance(body.get("name"), str) or not body["name"].strip():
            details.append({"field": "name", "message": "required"})
        address = body.get("address")
        if address is not None:
            if not isinstance(address, dict):
                details.append({"field": "address", "message": "an object"})
            else:
                if address.get("state") is not None and not re.match(r"^[A-Z]{2}$", str(address["state"])):
                    details.append({"field": "address.state", "message": "two capital letters"})
                if address.get("zip") is not None and not re.match(r"^[0-9]{8}$", str(address["zip"])):
                    details.append({"field": "address.zip", "message": "8 digits"})
        if details:
            raise HttpError(422, "validation_error", "invalid customer", details=details)
        allowed = ("document", "name", "email", "phone", "birth_date", "state_registration", "address")
        return {k: body.get(k) for k in allowed}

    def create_customer(self, req: Request) -> Response:
        customer = self._validate_customer(req.json())
        row = self.db.execute("SELECT code FROM customers WHERE document = ?", (customer["document"],)).fetchone()
        if row is not None:
            raise HttpError(409, "duplicate_document", "a customer with this document exists", existing_code=row[0])
        count = self.db.execute("SELECT count(*) FROM customers").fetchone()[0]
        code = f"C{count + 1:06d}"
        while self.db.execute("SELECT 1 FROM customers WHERE code = ?", (code,)).fetchone():
            count += 1
            code = f"C{count + 1:06d}"
        customer = {"code": code, **customer, "updated_at": now_iso()}
        self.db.execute("INSERT INTO customers VALUES (?, ?, ?, ?)",
                        (code, customer["document"], self._next_rev(), json.dumps(customer, ensure_ascii=False)))
        return Response(201, customer)

    def put_customer(self, req: Request) -> Response:
        code = req.params["code"]
        if not self.db.execute("SELECT 1 FROM customers WHERE code = ?", (code,)).fetchone():
            raise HttpError(404, "not_found", f"no customer {code}")
        customer = {"code": code, **self._validate_customer(req.json()), "updated_at": now_iso()}
        try:
            self.db.execute("UPDATE customers SET document = ?, rev = ?, data = ? WHERE code = ?",
                            (customer["document"], self._next_rev(), json.dumps(customer, ensure_ascii=False), code))
        except sqlite3.IntegrityError:
            raise HttpError(409, "duplicate_document", "another customer has this document") from None
        return Response(200, customer)

    # -- orders --------------------------------------------------------------------------------
    def find_orders(self, req: Request) -> Response:
        external_id, channel = req.arg("external_id"), req.arg("channel")
        if not external_id or not channel:
            raise HttpError(400, "validation_error", "external_id and channel are required")
        rows = self.db.execute("SELECT data FROM orders WHERE channel = ? AND external_id = ? ORDER BY created",
                               (channel, external_id)).fetchall()
        return Response(200, {"items": [json.loads(r[0]) for r in rows]})

    def _money(self, value: Any, field: str, details: list[dict[str, str]]) -> Decimal:
        if not isinstance(value, str) or not MONEY.match(value):
            details.append({"field": field, "message": "a decimal string with two places, e.g. \"129.90\""})
            return Decimal(0)
        try:
            return Decimal(value)
        except InvalidOperation:
            details.append({"field": field, "message": "not a number"})
            return Decimal(0)

    def create_order(self, req: Request) -> Response:
        body = req.json()
        if not isinstance(body, dict):
            raise HttpError(422, "validation_error", "an order object is required")
        details: list[dict[str, str]] = []
        for name in ("external_id", "channel", "customer_code"):
            if not isinstance(body.get(name), str) or not body[name]:
                details.append({"field": name, "message": "required"})
        items = body.get("items")
        if not isinstance(items, list) or not items:
            details.append({"field": "items", "message": "at least one item"})
            items = []
        if not isinstance(body.get("payments"), list):
            details.append({"field": "payments", "message": "required list"})
        if isinstance(body.get("customer_code"), str) and not self.db.execute(
                "SELECT 1 FROM customers WHERE code = ?", (body["customer_code"],)).fetchone():
            details.append({"field": "customer_code", "message": f"unknown customer {body['customer_code']}"})
        warehouse = body.get("warehouse")
        if warehouse is not None and not self.db.execute("SELECT 1 FROM warehouses WHERE code = ?",
                                                         (warehouse,)).fetchone():
            details.append({"field": "warehouse", "message": f"unknown warehouse {warehouse}"})
        computed = Decimal(0)
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                details.append({"field": f"items[{i}]", "message": "an object"})
                continue
            sku = item.get("sku")
            row = self.db.execute("SELECT data FROM products WHERE code = ?", (sku,)).fetchone() \
                if isinstance(sku, str) else None
            if row is None:
                details.append({"field": f"items[{i}].sku", "message": f"unknown product {str(sku)[:40]}"})
            elif not json.loads(row[0]).get("active"):
                details.append({"field": f"items[{i}].sku", "message": f"product {sku} is inactive"})
            quantity = item.get("quantity")
            if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity < 1:
                details.append({"field": f"items[{i}].quantity", "message": "an integer >= 1"})
                quantity = 0
            price = self._money(item.get("unit_price"), f"items[{i}].unit_price", details)
            discount = self._money(item.get("discount", "0.00"), f"items[{i}].discount", details)
            computed += price * quantity - discount
        for i, payment in enumerate(body.get("payments") or []):
            if not isinstance(payment, dict):
                details.append({"field": f"payments[{i}]", "message": "an object"})
                continue
            if not self.db.execute("SELECT 1 FROM payment_methods WHERE code = ?",
                                   (str(payment.get("method_code")),)).fetchone():
                details.append({"field": f"payments[{i}].method_code",
                                "message": f"unknown payment method {str(payment.get('method_code'))[:20]}"})
            self._money(payment.get("amount"), f"payments[{i}].amount", details)
        shipping = self._money(body.get("shipping", "0.00"), "shipping", details)
        total = self._money(body.get("total"), "total", details)
        if not details and computed + shipping != total:
            details.append({"field": "total", "message": f"items and shipping add up to {computed + shipping:.2f}"})
        if details:
            raise HttpError(422, "validation_error", "invalid order", details=details)
        number = str(int(self._meta("order_seq") or "100000") + 1)
        self.db.execute("INSERT OR REPLACE INTO meta VALUES ('order_seq', ?)", (number,))
        order = {k: body.get(k) for k in ("external_id", "channel", "customer_code", "seller_code", "store_code",
                                          "warehouse", "created_at", "items", "payments", "shipping", "total", "notes")}
        order |= {"number": number, "status": "open"}
        self.db.execute("INSERT INTO orders VALUES (?, ?, ?, ?, ?)",
                        (number, order["external_id"], order["channel"], time.time(), json.dumps(order, ensure_ascii=False)))
        if warehouse:
            self._move_stock(order, warehouse, -1)
        return Response(201, order)

    def _move_stock(self, order: dict[str, Any], warehouse: str, sign: int) -> None:
        for item in order["items"]:
            row = self.db.execute("SELECT data FROM stock WHERE sku = ? AND warehouse = ?",
                                  (item["sku"], warehouse)).fetchone()
            data = json.loads(row[0]) if row else {"sku": item["sku"], "warehouse": warehouse, "available": 0,
                                                   "reserved": 0}
            data["available"] += sign * item["quantity"]
            data["updated_at"] = now_iso()
            self.db.execute("INSERT OR REPLACE INTO stock VALUES (?, ?, ?, ?)",
                            (item["sku"], warehouse, self._next_rev(), json.dumps(data)))

    def _order(self, number: str) -> dict[str, Any]:
        row = self.db.execute("SELECT data FROM orders WHERE number = ?", (number,)).fetchone()
        if row is None:
            raise HttpError(404, "not_found", f"no order {number}")
        return json.loads(row[0])  # type: ignore[no-any-return]

    def _save_order(self, order: dict[str, Any]) -> None:
        self.db.execute("UPDATE orders SET data = ? WHERE number = ?", (json.dumps(order, ensure_ascii=False),
                                                                        order["number"]))

    def cancel_order(self, req: Request) -> Response:
        order = self._order(req.params["number"])
        if order["status"] == "cancelled":
            return Response(200, order)
        if order["status"] != "open":
            raise HttpError(409, "already_invoiced", f"order {order['number']} is {order['status']}: cannot cancel")
        order["status"] = "cancelled"
        self._save_order(order)
        if order.get("warehouse"):
            self._move_stock(order, order["warehouse"], +1)
        self._add_event(order, "cancelled", {})
        return Response(200, order)

    def _add_event(self, order: dict[str, Any], kind: str, extra: dict[str, Any]) -> dict[str, Any]:
        count = self.db.execute("SELECT count(*) FROM events").fetchone()[0]
        event_id = f"EV{count + 1:07d}"
        stamp = now_iso()
        event: dict[str, Any] = {"id": event_id, "order_number": order["number"], "external_id": order["external_id"],
                                 "channel": order["channel"], "type": kind, "occurred_at": stamp,
                                 "invoice": None, "shipment": None, "delivered_at": None}
        if kind == "invoiced":
            event["invoice"] = {"key": nfe_key(f"{order['number']}-{event_id}"), "number": str(50000 + count + 1),
                                "series": "1", "issued_at": stamp, "total": order["total"],
                                "xml_url": f"https://nfe.example.com/{order['number']}.xml"} | extra.get("invoice", {})
        elif kind == "shipped":
            event["shipment"] = {"carrier": CARRIERS[int(order["number"]) % 3],
                                 "tracking_code": f"BR{int(order['number']) * 7919 % 10**9:09d}BR",
                                 "tracking_url": None, "shipped_at": stamp} | extra.get("shipment", {})
        elif kind == "delivered":
            event["delivered_at"] = extra.get("delivered_at", stamp)
        self.db.execute("INSERT INTO events VALUES (?, ?, ?, ?)",
                        (event_id, self._next_rev(), order["number"], json.dumps(event, ensure_ascii=False)))
        return event

    # -- admin ---------------------------------------------------------------------------------
    def _admin_body(self, req: Request) -> dict[str, Any]:
        try:
            body = json.loads(req.body or b"{}")
        except ValueError:
            raise HttpError(400, "invalid_json", "admin body is not JSON") from None
        if not isinstance(body, dict):
            raise HttpError(400, "validation_error", "admin body must be an object")
        return body

    def admin_expire_tokens(self, req: Request) -> Response:
        self.db.execute("UPDATE tokens SET expires = 0")
        return Response(204)

    def admin_config(self, req: Request) -> Response:
        body = self._admin_body(req)
        if "token_ttl" in body:
            self.token_ttl = int(body["token_ttl"])
        if "client_secret" in body:
            self.client_secret = str(body["client_secret"])
        return Response(200, {"token_ttl": self.token_ttl})

    def admin_patch(self, table: str, key: str) -> Any:
        def handler(req: Request) -> Response:
            body = self._admin_body(req)
            row = self.db.execute(f"SELECT data FROM {table} WHERE {key} = ?", (req.params["code"],)).fetchone()  # noqa: S608 # nosec B608
            if row is None:
                raise HttpError(404, "not_found", f"no {table} {req.params['code']}")
            data = json.loads(row[0]) | body | {"updated_at": now_iso()}
            self.db.execute(f"UPDATE {table} SET rev = ?, data = ? WHERE {key} = ?",  # noqa: S608 # nosec B608
                            (self._next_rev(), json.dumps(data, ensure_ascii=False), req.params["code"]))
            if table == "customers" and "document" in body:
                self.db.execute("UPDATE customers SET document = ? WHERE code = ?", (body["document"], req.params["code"]))
            return Response(200, data)

        return handler

    def admin_put_stock(self, req: Request) -> Response:
        body = self._admin_body(req)
        sku, warehouse = req.params["sku"], req.params["warehouse"]
        data = {"sku": sku, "warehouse": warehouse, "available": int(body.get("available", 0)),
                "reserved": int(body.get("reserved", 0)), "updated_at": now_iso()}
        self.db.execute("INSERT OR REPLACE INTO stock VALUES (?, ?, ?, ?)", (sku, warehouse, self._next_rev(),
                                                                            json.dumps(data)))
        return Response(200, data)

    def admin_create_customer(self, req: Request) -> Response:
        return self.create_customer(req)

    def admin_orders(self, req: Request) -> Response:
        rows = self.db.execute("SELECT data, created FROM orders ORDER BY created, number").fetchall()
        return Response(200, {"items": [json.loads(r[0]) | {"created_ts": r[1]} for r in rows]})

    def admin_add_event(self, req: Request) -> Response:
        body = self._admin_body(req)
        order = self._order(req.params["number"])
        kind = body.get("type")
        if kind not in ("invoiced", "shipped", "delivered", "cancelled"):
            raise HttpError(400, "validation_error", "type must be invoiced, shipped, delivered or cancelled")
        if kind == "cancelled":
            if order["status"] not in ("open", "cancelled"):
                raise HttpError(409, "already_invoiced", "cannot cancel an invoiced order")
            order["status"] = "cancelled"
        else:
            have = EVENT_RANK.get(order["status"], 0)
            if order["status"] == "cancelled" or EVENT_RANK[kind] != have + 1:
                raise HttpError(409, "out_of_order", f"order {order['number']} is {order['status']}: cannot be {kind}")
            order["status"] = kind
        self._save_order(order)
        return Response(201, self._add_event(order, kind, body))

    def admin_counts(self, req: Request) -> Response:
        counts = {}
        for name, (table, _) in FEED_TABLES.items():
            counts[name] = self.db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608 # nosec B608
        counts["orders"] = self.db.execute("SELECT count(*) FROM orders").fetchone()[0]
        counts["seed_seconds"] = float(self._meta("seeded") or 0)
        return Response(200, counts)


def build(db_path: str, *, products: int, seed: int, log_bodies: bool = True, **options: str) -> SimApp:
    return GestaoLojasSim(db_path, products=products, seed=seed, log_bodies=log_bodies, options=options)
