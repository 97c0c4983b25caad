"""Plugg.to, the marketplace hub: SKUs upserted by our code, stock, orders listed by page, fulfilment by PUT.

Reference: ../shared/contracts/pluggto/API.md (each rule cites its line). Where the reference says
UNKNOWN the simulator picks the strict reading and says so: a skipped fulfilment step is refused
(400) unless the PUT carries the data of the step skipped, a status never goes back, a PUT without a
shipment `id` appends a new shipment.

Admin (tests, the demo): ``POST /_admin/orders`` ({count, status, ...fields}), ``POST
/_admin/orders/{id}/status``, ``GET /_admin/orders[/{id}]``, ``POST /_admin/products`` (a product with
variations, as made in the Plugg.to panel), ``GET /_admin/products``, ``POST /_admin/tokens/expire``,
``POST /_admin/tokens/revoke``, ``POST /_admin/config`` ({rate_per_minute, api_password}), ``POST /_admin/clock``.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from syncagent.simulators import seeddata
from syncagent.simulators.auth import TokenIssuer
from syncagent.simulators.common import HttpError, PerMinute, Request, Response, SimApp
from syncagent.simulators.store import DocStore

DEMO_CLIENT_ID = "pluggto-demo-app"
DEMO_CLIENT_SECRET = "demo-secret"  # noqa: S105 - a simulator's demo credential
DEMO_USER = "demo-seller"
DEMO_PASSWORD = "demo-password"  # noqa: S105 - a simulator's demo credential
# API.md L126-128: the status machine; the fulfilment steps in their order (L150)
STEPS = {"approved": 0, "invoiced": 1, "shipped": 2, "delivered": 3}
OPEN = ("pending", "paid", "approved", "waiting_invoice", "under_review")
CANCELLED = ("canceled", "cancelled")  # L128-129: both spellings read
PAYMENTS = [("credit", "credit_card"), ("pix", "pix"), ("boleto", "boleto"), ("debit", "debit_card")]
MAX_LIMIT = 100  # L53: limit=100 is what clients ask


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class PluggtoSim(SimApp):
    system = "pluggto"

    def __init__(self, db_path: str, *, products: int, seed: int, log_bodies: bool, options: dict[str, str]) -> None:
        super().__init__(db_path, log_bodies=log_bodies)
        self.products, self.seed = products, seed
        self.store = DocStore(self.db, self.lock)
        self.clock_offset = float(self.meta("clock_offset") or 0)
        client_id = options.get("client_id", DEMO_CLIENT_ID)
        # API.md L27-33: password, authorization code and refresh grants; L38: rotating refresh tokens;
        # L42: the lifetime is UNKNOWN, read from expires_in (3600 here, or the `ttl` option)
        self.tokens = TokenIssuer(self, {client_id: options.get("client_secret", DEMO_CLIENT_SECRET)},
                                  users={options.get("api_user", DEMO_USER): options.get("api_password", DEMO_PASSWORD)},
                                  ttl=int(options.get("ttl", "3600")), rotate_refresh=True,
                                  grants=("password", "authorization_code", "refresh_token"), clock=self.now)
        self.rate_per_minute = int(self.meta("rate_per_minute") or options.get("rate_per_minute", "0"))
        self._window = PerMinute()
        if self.meta("seeded") is None:
            with self.tx():
                for _ in range(int(options.get("orders", "10"))):
                    self._new_order({})
                self.set_meta("seeded", "1")
        self._routes()

    def now(self) -> float:
        return time.time() + self.clock_offset

    def _routes(self) -> None:
        r = self.route
        r("POST", "/oauth/token", self.tokens.token)  # API.md L27
        r("GET", "/skus/{sku}", self.api(self.get_sku))  # L64
        r("PUT", "/skus/{sku}", self.api(self.put_sku))  # L63
        r("PUT", "/skus/{sku}/stock", self.api(self.put_stock))  # L86
        r("GET", "/products/{id}", self.api(self.get_product))  # L64
        r("GET", "/orders", self.api(self.list_orders))  # L53
        r("GET", "/orders/{id}", self.api(self.get_order))  # L108
        r("PUT", "/orders/{id}", self.api(self.put_order))  # L133
        r("POST", "/_admin/orders", self.admin_create_orders)
        r("GET", "/_admin/orders", lambda req: Response(200, {"items": [d for _, d in self.store.all("orders")]}))
        r("GET", "/_admin/orders/{id}", lambda req: Response(200, self._order(req.params["id"])))
        r("POST", "/_admin/orders/{id}/status", self.admin_order_status)
        r("POST", "/_admin/products", self.admin_product)
        r("GET", "/_admin/products", lambda req: Response(200, {"items": [d for _, d in self.store.all("products")]}))
        r("POST", "/_admin/tokens/expire", lambda req: (self.tokens.expire_all(), Response(204))[1])
        r("POST", "/_admin/tokens/revoke", lambda req: (self.tokens.revoke_all(), Response(204))[1])
        r("POST", "/_admin/config", self.admin_config)
        r("POST", "/_admin/clock", self.admin_clock)

    # -- auth, rate limit -------------------------------------------------------------------------
    def api(self, handler: Any) -> Any:
        """Bearer token or ?access_token (API.md L22); 429 past the configured budget (L47: UNKNOWN, generic)."""
        def wrapped(req: Request) -> Response:
            self.tokens.require(req)  # 401 {"error": {...}}: body UNKNOWN (L43); clients test the `error` key (L48)
            self._window.check(self.rate_per_minute, self.now())
            return handler(req)

        return wrapped

    def _body(self, req: Request) -> dict[str, Any]:
        body = req.json()
        if not isinstance(body, dict):
            raise HttpError(400, "invalid_body", "the body must be a JSON object")
        return body

    # -- catalogue --------------------------------------------------------------------------------
    def _find_sku(self, sku: str) -> tuple[str, dict[str, Any], int | None] | None:
        """(product id, product, variation index or None) of a SKU: a product's own, or one of its variations."""
        for key, doc in self.store.find("products", "sku", sku):
            return key, doc, None
        for key, doc in self.store.all("products"):
            for i, variation in enumerate(doc.get("variations") or []):
                if isinstance(variation, dict) and variation.get("sku") == sku:
                    return key, doc, i
        return None

    def get_sku(self, req: Request) -> Response:
        found = self._find_sku(req.params["sku"])
        if found is None:
            raise HttpError(404, "not_found", f"SKU {req.params['sku'][:40]} not found")
        return Response(200, {"Product": found[1]})  # L23: single records wrapped

    def get_product(self, req: Request) -> Response:
        doc = self.store.get("products", req.params["id"])
        if doc is None:
            raise HttpError(404, "not_found", "product not found")
        return Response(200, {"Product": doc})

    def put_sku(self, req: Request) -> Response:
        """Upsert by SKU (L63, L159): creates if absent, updates if present; a variation's SKU updates it in place."""
        sku = req.params["sku"]
        body = self._body(req)
        if body.get("sku") not in (None, sku):
            raise HttpError(400, "invalid_sku", "the body's sku differs from the one in the path")
        for name in ("price", "special_price", "quantity"):  # L67-72: numbers
            value = body.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value < 0):
                raise HttpError(400, "invalid_field", f"{name} must be a number ≥ 0")
        special, price = body.get("special_price"), body.get("price")
        if special is not None and price is not None and special > price:
            raise HttpError(400, "invalid_field", "special_price is greater than price")
        ean = body.get("ean")
        if ean and not body.get("ean_not_mandatory") and not _valid_ean(str(ean)):  # L68: ean_not_mandatory
            raise HttpError(400, "invalid_ean", f"EAN {str(ean)[:20]} is not valid")
        with self.tx():
            found = self._find_sku(sku)
            if found is None:
                if not body.get("name"):  # a new product needs its name: the reference lists `sku` (req) and name
                    raise HttpError(400, "invalid_field", f"SKU {sku[:40]} is not in Plugg.to: name is required to "
                                                          "create it")
                key = str(self.counter("product_id", 7_000_000))
                doc = {"id": key, "sku": sku, "variations": [], **body}
            else:
                key, doc, index = found
                if index is None:
                    doc = {**doc, **{k: v for k, v in body.items() if k != "variations"}}
                    if "variations" in body:
                        doc["variations"] = body["variations"]
                else:
                    variations = list(doc["variations"])
                    variations[index] = {**variations[index], **body}
                    doc = {**doc, "variations": variations}
            for table in ("price_table", "stock_table"):  # L78, L91: entries by code, `remove: true` deletes
                if table in body and isinstance(body[table], list):
                    old = {e.get("code"): e for e in (found[1].get(table) or [] if found else [])}
                    for entry in body[table]:
                        if isinstance(entry, dict) and entry.get("remove"):
                            old.pop(entry.get("code"), None)
                        elif isinstance(entry, dict):
                            old[entry.get("code")] = entry
                    doc[table] = list(old.values())
            self.store.put("products", key, doc)
        return Response(200, {"Product": doc})

    def put_stock(self, req: Request) -> Response:
        """L86-89: `update` sets the absolute quantity; `increase`/`decrease` are deltas."""
        sku = req.params["sku"]
        body = self._body(req)
        action, quantity = body.get("action"), body.get("quantity")
        if action not in ("update", "increase", "decrease"):
            raise HttpError(400, "invalid_action", "action must be update, increase or decrease")
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 0:
            raise HttpError(400, "invalid_quantity", "quantity must be an integer ≥ 0")
        with self.tx():
            found = self._find_sku(sku)
            if found is None:
                raise HttpError(404, "not_found", f"SKU {sku[:40]} not found")
            key, doc, index = found
            target = doc if index is None else doc["variations"][index]
            current = int(target.get("quantity") or 0)
            target["quantity"] = quantity if action == "update" else max(0, current + (
                quantity if action == "increase" else -quantity))
            self.store.put("products", key, doc)
        return Response(200, {"Product": doc})

    def admin_product(self, req: Request) -> Response:
        body = self._body(req)
        with self.tx():
            key = str(self.counter("product_id", 7_000_000))
            doc = {"id": key, "variations": [], **body}
            self.store.put("products", key, doc)
        return Response(201, doc)

    # -- orders -----------------------------------------------------------------------------------
    def _order(self, order_id: str) -> dict[str, Any]:
        doc = self.store.get("orders", order_id)
        if doc is None:
            raise HttpError(404, "not_found", f"order {order_id[:40]} not found")
        return doc

    def _save(self, doc: dict[str, Any]) -> None:
        doc["modified"] = _iso(datetime.fromtimestamp(self.now(), UTC))
        self.store.put("orders", doc["id"], doc)

    def list_orders(self, req: Request) -> Response:
        """L53-57: ?limit&page&status=a,b&created=AtoB&modified=AtoB; {"result": [{"Order": …}], "total"}."""
        try:
            limit = int(req.arg("limit", "50") or 50)
            page = int(req.arg("page", "1") or 1)
        except ValueError:
            raise HttpError(400, "invalid_param", "limit and page must be integers") from None
        if not 1 <= limit <= MAX_LIMIT or page < 1:
            raise HttpError(400, "invalid_param", f"limit must be 1..{MAX_LIMIT} and page ≥ 1")
        statuses = [s for s in (req.arg("status") or "").split(",") if s]
        ranges = {name: _range(req.arg(name), name) for name in ("created", "modified") if req.arg(name)}

        def keep(doc: dict[str, Any]) -> bool:
            if statuses and doc["status"] not in statuses:
                return False
            return all(lo <= doc[name][:10] <= hi for name, (lo, hi) in ranges.items())

        rows, total = self.store.window("orders", (page - 1) * limit, limit, keep)
        return Response(200, {"result": [{"Order": doc} for _, doc in rows], "total": total})

    def get_order(self, req: Request) -> Response:
        return Response(200, {"Order": self._order(req.params["id"])})  # L108

    def put_order(self, req: Request) -> Response:
        """L131-161: `external`, `status` and `shipments[]` merged by shipment `id` (none: a new shipment)."""
        body = self._body(req)
        with self.tx():
            doc = self._order(req.params["id"])
            if "external" in body:
                doc["external"] = None if body["external"] is None else str(body["external"])
            shipments = [dict(s) for s in doc.get("shipments") or []]
            for entry in body.get("shipments") or []:
                if not isinstance(entry, dict):
                    raise HttpError(400, "invalid_shipment", "each shipment must be an object")
                key = entry.get("nfe_key")
                if key is not None and not (isinstance(key, str) and key.isdigit() and len(key) == 44):
                    raise HttpError(400, "invalid_nfe_key", "nfe_key must have 44 digits")  # L138
                same = next((s for s in shipments if entry.get("id") and s.get("id") == entry["id"]), None)
                if entry.get("id") and same is None:
                    raise HttpError(400, "invalid_shipment", f"order has no shipment {str(entry['id'])[:40]}")
                if same is not None:
                    same.update(entry)
                else:  # L161: a PUT without the shipment id appends a new shipment
                    shipments.append({**entry, "id": f"shp-{self.counter('shipment_id', 100)}"})
            status = body.get("status")
            if status is not None:
                self._move(doc, str(status), shipments)
            doc["shipments"] = shipments
            self._save(doc)
        return Response(200, {"Order": doc})

    def _move(self, doc: dict[str, Any], status: str, shipments: list[dict[str, Any]]) -> None:
        """The status machine (L126-128, L150): forward only, each step with its data; cancel while not delivered."""
        current = doc["status"]
        if status == current:
            return
        if status in CANCELLED:
            if current == "delivered":
                raise HttpError(400, "invalid_status", "a delivered order cannot be cancelled")
            doc["status"] = "canceled"
            return
        if status not in STEPS or status == "approved":
            raise HttpError(400, "invalid_status", f"status {status[:30]} cannot be set by the seller")
        if current in CANCELLED or (current not in STEPS and current not in OPEN):
            raise HttpError(400, "invalid_status", f"order is {current}: it cannot become {status}")
        if current in OPEN and current != "approved":
            raise HttpError(400, "invalid_status", f"order is {current}, not approved yet")
        if STEPS[status] < STEPS[current]:
            raise HttpError(400, "invalid_status", f"order is {current}: it cannot go back to {status}")
        # a skipped step (UNKNOWN, L150) is refused unless the PUT brings that step's data
        has = {"invoiced": any(s.get("nfe_key") and s.get("nfe_number") for s in shipments),
               "shipped": any(s.get("track_code") for s in shipments)}
        for step in ("invoiced", "shipped"):
            if STEPS[step] <= STEPS[status] and not has[step]:
                raise HttpError(400, "invalid_status", f"order cannot be {status}: it has no {step} data "
                                                       "(nfe_key/nfe_number or track_code)")
        doc["status"] = status
        doc[{"invoiced": "invoicing_informed", "shipped": "shipping_informed",
             "delivered": "delivery_informed"}[status]] = True

    def admin_create_orders(self, req: Request) -> Response:
        body = self._body(req) if req.body else {}
        count = int(body.pop("count", 1))
        with self.tx():
            items = [self._new_order(body) for _ in range(count)]
        return Response(201, {"items": items})

    def admin_order_status(self, req: Request) -> Response:
        body = self._body(req)
        with self.tx():
            doc = self._order(req.params["id"])
            doc["status"] = str(body["status"])
            self._save(doc)
        return Response(200, doc)

    def admin_config(self, req: Request) -> Response:
        body = self._body(req)
        if "api_password" in body:  # the seller changed the API password: the old one and its tokens stop
            self.tokens.users = {user: str(body["api_password"]) for user in self.tokens.users}
            self.tokens.revoke_all()
        if "rate_per_minute" in body:
            self.rate_per_minute = int(body["rate_per_minute"])
            self.set_meta("rate_per_minute", str(self.rate_per_minute))
            self._window = []
        return Response(200, {"rate_per_minute": self.rate_per_minute})

    def admin_clock(self, req: Request) -> Response:
        self.clock_offset += float(self._body(req).get("advance", 0))
        self.set_meta("clock_offset", str(self.clock_offset))
        return Response(200, {"offset": self.clock_offset})

    def _new_order(self, fields: dict[str, Any]) -> dict[str, Any]:
        """An order as get-one-order shows it (L112-124), on the back office's seeded catalogue and customers."""
        seq = self.counter("order_seq", 0)
        rng = random.Random(f"{self.seed}:pluggto-order:{seq}")
        items = []
        for _ in range(rng.randint(1, 3)):
            for _attempt in range(50):
                index = rng.randint(1, max(1, self.products))
                if seeddata.product(self.seed, index)["active"]:
                    break
            info = seeddata.product(self.seed, index)
            price = Decimal(seeddata.price(self.seed, index)["list_price"])
            quantity = rng.randint(1, 3)
            discount = (price * Decimal("0.10")).quantize(Decimal("0.01")) if rng.random() < 0.25 else Decimal(0)
            items.append({"sku": info["code"], "name": info["description"], "quantity": quantity,  # discount: the line's
                          "price": float(price), "discount": float(discount),
                          "total": float(price * quantity - discount), "variation": {"sku": info["code"]}})
        subtotal = sum(Decimal(str(i["total"])) for i in items)
        shipping = Decimal(rng.choice(["0", "15.00", "23.90"]))
        total = subtotal + shipping
        person = seeddata.customer(self.seed, rng.randint(1, seeddata.customer_count(self.products)))
        if rng.random() < 0.4:  # a buyer the back office does not know yet
            person = {**person, "document": seeddata.cpf(rng), "name": seeddata.person_name(rng),
                      "email": f"cliente{seq}@exemplo.com.br"}
        first, _, last = person["name"].partition(" ")
        address = person["address"]
        company = len(person["document"]) == 14
        payment_type, method = rng.choice(PAYMENTS)
        created = datetime.fromtimestamp(self.now(), UTC) - timedelta(minutes=rng.randint(1, 120))
        order_id = f"{seq:04d}{rng.getrandbits(40):010x}"
        doc: dict[str, Any] = {
            "id": order_id, "external": None, "original_id": f"MLB-{2_000_000_000 + seq}", "channel": "MercadoLivre",
            "status": "approved", "sub_status": None, "created": _iso(created), "modified": _iso(created),
            "total": float(total), "subtotal": float(subtotal), "shipping": float(shipping), "discount": 0.0,
            "total_paid": float(total),
            "payments": [{"payment_type": payment_type, "payment_method": method, "payment_installments": 1,
                          "payment_total": float(total), "payment_quota": float(total), "payment_interest": 0}],
            "items": items,
            "payer_name": first, "payer_lastname": last, "payer_email": person["email"],
            "payer_cpf": None if company else person["document"], "payer_cnpj": person["document"] if company else None,
            "payer_razao_social": person["name"] if company else None, "payer_phone_area": "11",
            "payer_phone": "999990000", "payer_address": address["street"], "payer_address_number": address["number"],
            "payer_address_complement": address["complement"], "payer_neighborhood": address["district"],
            "payer_city": address["city"], "payer_state": address["state"], "payer_zipcode": address["zip"],
            "payer_country": "BR", "receiver_name": first, "receiver_lastname": last,
            "receiver_address": address["street"], "receiver_city": address["city"],
            "receiver_state": address["state"], "receiver_zipcode": address["zip"], "delivery_type": "standard",
            "shipments": [], "invoicing_informed": False, "shipping_informed": False, "delivery_informed": False,
        }
        doc.update(fields)
        self._save(doc)
        return doc


def _range(value: str | None, name: str) -> tuple[str, str]:
    """`YYYY-MM-DDtoYYYY-MM-DD` (L57), inclusive by day."""
    lo, sep, hi = (value or "").partition("to")
    try:
        for part in (lo, hi):
            datetime.strptime(part, "%Y-%m-%d")  # noqa: DTZ007 - a calendar day, no time
    except ValueError:
        raise HttpError(400, "invalid_param", f"{name} must be YYYY-MM-DDtoYYYY-MM-DD") from None
    if not sep:
        raise HttpError(400, "invalid_param", f"{name} must be YYYY-MM-DDtoYYYY-MM-DD")
    return lo, hi


def _valid_ean(ean: str) -> bool:
    if not ean.isdigit() or len(ean) not in (8, 12, 13, 14):
        return False
    digits = [int(d) for d in ean]
    total = sum(d * (3 if i % 2 else 1) for i, d in enumerate(reversed(digits[:-1]), start=1))
    return (10 - total % 10) % 10 == digits[-1]


def build(db_path: str, *, products: int, seed: int, log_bodies: bool = True, **options: str) -> SimApp:
    return PluggtoSim(db_path, products=products, seed=seed, log_bodies=log_bodies, options=options)
