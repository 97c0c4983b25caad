"""Simulator of a Jumpseller store: the part of its API syncagent reads (products with variants, orders).

Every rule cites the vendor's OpenAPI file it follows (../shared/contracts/jumpseller/openapi.json,
"L<n>" being its line; the prose rules all sit in `info.description` on L5, quoted by section).

As strict as the reference: HTTP Basic `login:authtoken` (or the deprecated `login`/`authtoken` query
parameters) on every call, 401 otherwise; `limit` at most 100 and `page` from 1, 400 otherwise; the
documented rate limits (20 a second, 800 a minute) answered 429 with the `Jumpseller-*RateLimit*`
headers, which every answer carries. List items are wrapped in their kind (`[{"product": {...}}]`),
money is a JSON number, and an empty value is null.

Admin routes (`/_admin/...`) seed products with variants, change stock, create orders in the states
tests need (pending payment, paid, shipped but unpaid, paid then cancelled, abandoned), move the
simulator's clock (rate-limit windows) and change the credentials (to prove a revoked token).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
import time
from datetime import UTC, datetime
from typing import Any

from syncagent.simulators import seeddata
from syncagent.simulators.auth import TokenIssuer
from syncagent.simulators.common import HttpError, Request, Response, SimApp
from syncagent.simulators.store import DocStore
from syncagent.simulators.webhooks import WebhookSender

DEMO_LOGIN = "demo-store-login"
DEMO_TOKEN = "0123456789abcdef0123456789abcdef"  # noqa: S105 - "a 32 characters string" (L5), a demo value
DEMO_APP_ID = "demo-app"
DEMO_APP_SECRET = "demo-app-secret"  # noqa: S105 - a simulator's demo credential, not a real secret
DEMO_HOOKS_TOKEN = "demo-hooks-token"  # noqa: S105 - the Store's `hooks_token` (openapi.json Store schema), demo
MAX_LIMIT = 100  # L21183 LimitParam: maximum 100
DEFAULT_LIMIT = 50  # L21183 LimitParam: default 50
PER_SECOND, PER_MINUTE = 20, 800  # L5 "Rate Limit": 800 a minute, 20 a second
SIZES = ["S", "M", "L"]
CATEGORIES = [(1, "Roupa"), (2, "Calçado"), (3, "Acessórios")]
KIND_CATEGORY = {"VEST": 1, "CALC": 2, "ACES": 3}
# order states the admin can make: (status_enum L17402, shipment_status_enum)
STATES = {
    "pending_payment": ("pending_payment", "unfulfilled"), "paid": ("paid", "unfulfilled"),
    "shipped_unpaid": ("pending_payment", "in_transit"), "paid_then_canceled": ("canceled", "unfulfilled"),
    "abandoned": ("abandoned", "unfulfilled"), "paid_shipped": ("paid", "in_transit"),
}
STATUS_NAMES = {"paid": "Paid", "pending_payment": "Pending Payment", "canceled": "Canceled", "abandoned": "Abandoned"}
VAT = 23.0


class _Refused(HttpError):
    """Jumpseller's error body is {"message": "..."} (L20858 NotFound, BadParams, StatusInvalid)."""

    def response(self) -> Response:
        return Response(self.status, {"message": self.message}, dict(self.headers))


def _message(status: int, text: str) -> HttpError:
    return _Refused(status, "", text)


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _key(ident: int) -> str:
    """Store key of an id: zero-padded, so the store's key order is the id order (the listing's order)."""
    return f"{ident:010d}"


class JumpsellerSim(SimApp):
    system = "jumpseller"

    def __init__(self, db_path: str, *, products: int, seed: int, log_bodies: bool, options: dict[str, str]) -> None:
        super().__init__(db_path, log_bodies=log_bodies)
        self.store = DocStore(self.db, self.lock)
        self.login = options.get("login", DEMO_LOGIN)
        self.token = options.get("auth_token", DEMO_TOKEN)
        self.per_second = int(options.get("per_second", PER_SECOND))
        self.per_minute = int(options.get("per_minute", PER_MINUTE))
        # "frozen": the clock moves only by /_admin/clock, so rate-limit windows do not hang on machine speed
        self.frozen = options.get("clock") == "frozen"
        # "null" as the store answers ("All empty value are replaced with null", L5), or "omit" as the spec's
        # schemas, which declare no field nullable, would have it (the Prism contract test)
        self.nulls = options.get("nulls", "null")
        self.offset = 0.0
        self.hooks_token = options.get("hooks_token", DEMO_HOOKS_TOKEN)
        self.webhooks = WebhookSender()  # admin: paid orders announced to a hook URL as they are made
        self.hits: list[float] = []
        self.rng = random.Random(f"{seed}:jumpseller")
        self.seed = seed
        # an installed App signs in with OAuth 2.0 (L5 "OAuth 2.0 Authentication"): access tokens live 1 hour,
        # renewed with a refresh token; each renewal answers a new refresh token and the old one dies
        self.app_id = options.get("client_id", DEMO_APP_ID)
        self.issuer = TokenIssuer(self, clients={self.app_id: options.get("client_secret", DEMO_APP_SECRET)},
                                  grants=("authorization_code", "refresh_token"), rotate_refresh=True, ttl=3600,
                                  clock=self.now)
        if self.meta("seeded") is None:
            self._seed(products, int(options.get("orders", "8")))
        self._routes()

    # -- clock, auth, rate limit ----------------------------------------------------------------------
    def now(self) -> float:
        return (seeddata.EPOCH.timestamp() if self.frozen else time.time()) + self.offset

    def now_text(self) -> str:
        return datetime.fromtimestamp(self.now(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def _authenticate(self, req: Request) -> None:
        """L21083 BasicAuthentication `login:authtoken` (recommended), the deprecated query pair (L5), or an
        installed App's Bearer token (L21083 OAuth2)."""
        header = req.header("authorization") or ""
        if header[:7].lower() == "bearer ":
            try:
                self.issuer.require(req)
            except HttpError as exc:
                raise _message(401, f"Unauthorized: {exc.message}") from None
            return
        login, token = req.arg("login"), req.arg("authtoken")
        if header.startswith("Basic "):
            try:
                login, _, token = base64.b64decode(header[6:]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                login = token = None
        if not (login and token and hmac.compare_digest(login.encode(), self.login.encode())
                and hmac.compare_digest(token.encode(), self.token.encode())):
            err = _message(401, "Unauthorized: wrong login or authtoken")
            err.headers["WWW-Authenticate"] = 'Basic realm="Jumpseller API"'
            raise err

    def _limits(self) -> dict[str, str]:
        """L5 "Rate Limit": 800 a minute and 20 a second, the counts left sent on every answer."""
        now = self.now()
        self.hits = [t for t in self.hits if t > now - 60]
        minute = len(self.hits)
        second = sum(1 for t in self.hits if int(t) == int(now))
        headers = {"Jumpseller-PerMinuteRateLimit-Limit": str(self.per_minute),
                   "Jumpseller-PerMinuteRateLimit-Remaining": str(max(0, self.per_minute - minute - 1)),
                   "Jumpseller-PerSecondRateLimit-Limit": str(self.per_second),
                   "Jumpseller-PerSecondRateLimit-Remaining": str(max(0, self.per_second - second - 1))}
        if minute >= self.per_minute or second >= self.per_second:
            err = _message(429, "Too Many Requests (Rate Limit Exceeded)")
            # the spec's advice is to wait a second and retry (L5); Retry-After says so to any client
            wait = 1 if second >= self.per_second else max(1, int(min(self.hits) + 60 - now) + 1)
            err.headers.update({**headers, "Retry-After": str(wait)})
            raise err
        self.hits.append(now)
        return headers

    def _api(self, handler: Any) -> Any:
        def run(req: Request) -> Response:
            self._authenticate(req)
            headers = self._limits()
            resp: Response = handler(req)
            resp.headers.update(headers)
            if self.nulls == "omit":
                resp.body = _without_nulls(resp.body)
            return resp
        return run

    # -- routes ---------------------------------------------------------------------------------------
    def _routes(self) -> None:
        r = self.route
        r("GET", "/products.json", self._api(self.list_products))  # L1491
        r("GET", "/products/count.json", self._api(self.count_products))  # L1646
        r("GET", "/orders.json", self._api(self.list_orders))  # L6558
        r("POST", "/oauth/token", self.issuer.token)  # accounts.jumpseller.com/oauth/token, served here too
        r("POST", "/_admin/oauth/code", lambda req: Response(200, {"code": self.issuer.grant_code(self.app_id)}))
        r("POST", "/_admin/oauth/expire", lambda req: (self.issuer.expire_all(), Response(204))[1])
        r("GET", "/_admin/oauth/refresh-tokens", lambda req: Response(200, {"items": self.issuer.live_refresh_tokens()}))
        r("POST", "/_admin/products", self.admin_create_product)
        r("PATCH", "/_admin/products/{pid}", self.admin_patch_product)
        r("POST", "/_admin/stock", self.admin_stock)
        r("POST", "/_admin/orders", self.admin_create_order)
        r("PATCH", "/_admin/orders/{oid}", self.admin_patch_order)
        r("GET", "/_admin/products", lambda req: Response(200, {"items": [d for _, d in self.store.all("products")]}))
        r("GET", "/_admin/orders", lambda req: Response(200, {"items": [d for _, d in self.store.all("orders")]}))
        r("POST", "/_admin/clock", self.admin_clock)
        r("POST", "/_admin/config", self.admin_config)
        r("POST", "/_admin/webhooks/send", self.admin_send_webhooks)
        r("GET", "/_admin/webhooks", lambda req: Response(200, {"items": self.webhooks.entries(),
                                                                 "running": self.webhooks.running}))

    def _window(self, req: Request) -> tuple[int, int]:
        """L21183 LimitParam (1..100, default 50), L21194 PageParam (from 1, default 1); anything else is 400."""
        try:
            limit = int(req.arg("limit") or DEFAULT_LIMIT)
            page = int(req.arg("page") or 1)
        except ValueError:
            raise _message(400, "Bad Request: page and limit must be integers") from None
        if not 1 <= limit <= MAX_LIMIT or page < 1:
            raise _message(400, f"Bad Request: limit must be 1..{MAX_LIMIT} and page at least 1")
        return (page - 1) * limit, limit

    def list_products(self, req: Request) -> Response:
        """GET /products.json: `[{"product": ProductFields}]` (L1491), in id order, variants inline (L16005)."""
        offset, limit = self._window(req)
        docs, _ = self.store.window("products", offset, limit, by_key=True)
        return Response(200, [{"product": doc} for _, doc in docs])

    def count_products(self, req: Request) -> Response:
        return Response(200, {"count": self.store.count("products")})  # L1646, Count

    def list_orders(self, req: Request) -> Response:
        """GET /orders.json: `[{"order": OrderFields}]` (L6558), optionally by `status_filters[]`."""
        offset, limit = self._window(req)
        wanted = req.arg("status_filters[]")
        if wanted is not None and wanted not in ("paid", "created", "pending_payment", "canceled", "abandoned"):
            raise _message(400, f"Bad Request: unknown status filter {wanted[:30]!r}")
        docs, _ = self.store.window("orders", offset, limit, (lambda d: d["status_enum"] == wanted) if wanted else None,
                                    by_key=True)
        return Response(200, [{"order": doc} for _, doc in docs])

    # -- the shop's data ------------------------------------------------------------------------------
    def _next_id(self, kind: str, start: int) -> int:
        return self.counter(f"next-{kind}", start - 1)

    def _product(self, spec: dict[str, Any]) -> dict[str, Any]:
        """A ProductFields document (L16005) with its VariantFields (L17076), ids given here."""
        pid = self._next_id("product", 1001)
        stamp = self.now_text()
        variants = []
        for v in spec.get("variants") or []:
            variants.append({"id": self._next_id("variant", 5001), "price": v.get("price", spec.get("price")),
                             "sku": v.get("sku"), "barcode": v.get("barcode"), "stock": int(v.get("stock", 0)),
                             "stock_unlimited": bool(v.get("stock_unlimited", False)),
                             "options": [{"name": "Tamanho", "option_type": "option", "value": v.get("size")}]
                             if v.get("size") else []})
        category = spec.get("category")
        categories = [{"id": c, "name": n, "parent_id": None, "permalink": n.lower()} for c, n in CATEGORIES
                      if c == category]
        return {"id": pid, "name": spec["name"], "description": spec.get("description"), "type": "physical",
                "price": spec.get("price", 10.0), "discount": 0.0, "weight": spec.get("weight", 0.5),
                "stock": int(spec.get("stock", 0)), "stock_unlimited": bool(spec.get("stock_unlimited", False)),
                "sku": spec.get("sku"), "brand": spec.get("brand"), "barcode": spec.get("barcode"),
                "status": spec.get("status", "available"), "created_at": stamp, "updated_at": stamp,
                "permalink": spec["name"].lower().replace(" ", "-"), "categories": categories, "images": [],
                "variants": variants, "digital_products": []}

    def _seed(self, products: int, orders: int) -> None:
        for index in range(1, products + 1):
            rng = seeddata.rng_for(self.seed, "jumpseller-product", index)
            kind, group = PRODUCT_KINDS_PT[(index - 1) % len(PRODUCT_KINDS_PT)]
            brand = rng.choice(seeddata.BRANDS)
            price = round(rng.uniform(5, 120), 2)
            spec: dict[str, Any] = {"name": f"{kind} {brand}", "brand": brand, "price": price,
                                    "category": KIND_CATEGORY[group], "sku": f"JS{index:05d}",
                                    "barcode": seeddata.ean13(500_000 + index), "stock": rng.randint(0, 40)}
            if index % 3 == 0:  # every third product comes in sizes: one variant each
                spec["variants"] = [{"sku": f"JS{index:05d}-{size}", "size": size, "price": price,
                                     "barcode": seeddata.ean13(600_000 + index * 10 + n), "stock": rng.randint(0, 15)}
                                    for n, size in enumerate(SIZES)]
            if index % 10 == 7:
                spec["sku"] = None  # no SKU: the connector derives a stable code from the ids
            doc = self._product(spec)
            self.store.put("products", _key(doc["id"]), doc)
        states = list(STATES)
        for n in range(orders):
            self._order({"state": states[n % len(states)]})
        self.set_meta("seeded", self.now_text())

    def _sellable(self) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
        found = []
        for _, product in self.store.all("products"):
            for variant in product["variants"] or [None]:
                found.append((product, variant))
        return found

    def _order(self, spec: dict[str, Any]) -> dict[str, Any]:
        """An OrderFields document (L17218): prices with VAT included, totals that add up."""
        state = spec.get("state", "paid")
        if state not in STATES:
            raise HttpError(400, "bad_state", f"state must be one of {sorted(STATES)}")
        status, shipment = STATES[state]
        sellable = self._sellable()
        lines = spec.get("items") or [{"sku": None, "qty": self.rng.randint(1, 3)}]
        products = []
        for line in lines:
            match = [(p, v) for p, v in sellable if (v or p).get("sku") == line.get("sku")] if line.get("sku") else \
                [self.rng.choice(sellable)]
            if not match:
                raise HttpError(400, "unknown_sku", f"no product or variant with sku {line.get('sku')!r}")
            product, variant = match[0]
            holder = variant or product
            price = float(line.get("price", holder.get("price") or product["price"]))
            products.append({"id": product["id"], "variant_id": variant["id"] if variant else None,
                             "sku": holder.get("sku"), "name": product["name"], "image": None,
                             "qty": int(line.get("qty", 1)), "price": price,
                             "discount": float(line.get("discount", 0.0)), "weight": product.get("weight"),
                             "taxes": [{"id": 1, "name": "IVA", "rate": VAT, "fixed": False,
                                        "tax_on_product_price": True}], "stock_locations": []})
        subtotal = sum(p["price"] * p["qty"] for p in products)
        line_discounts = sum(p["discount"] * p["qty"] for p in products)
        shipping = float(spec.get("shipping", 4.9))
        discount = float(spec.get("discount", 0.0))
        total = round(subtotal - line_discounts - discount + shipping, 2)
        oid = self._next_id("order", 7001)
        buyer = spec.get("customer") or {}
        stamp = self.now_text()
        doc = {
            "id": oid, "created_at": stamp, "completed_at": stamp if status == "paid" else None, "currency": "EUR",
            "subtotal": round(subtotal / (1 + VAT / 100), 2), "tax": round(total - total / (1 + VAT / 100), 2),
            "shipping_tax": 0.0, "shipping": shipping, "shipping_required": True, "total": total,
            "discount": discount, "shipping_discount": 0.0, "gift_cards_discount": 0.0,
            "fulfillment_status": shipment, "shipping_method_name": "CTT Expresso",
            "payment_method_name": spec.get("payment", "MB WAY"), "payment_method_type": spec.get("payment_type",
                                                                                                  "mbway"),
            "additional_information": None,
            "customer": {"id": 300 + oid % 100, "email": buyer.get("email", f"cliente{oid}@example.pt"),
                         "phone": None, "fullname": buyer.get("name", "Maria Sousa")},
            "billing_address": {"name": buyer.get("name", "Maria Sousa").split(" ")[0],
                                "surname": " ".join(buyer.get("name", "Maria Sousa").split(" ")[1:]) or None,
                                "taxid": buyer.get("taxid"), "address": "Rua Augusta 10", "city": "Lisboa",
                                "postal": "1100-053", "country": "Portugal",
                                "country_code": buyer.get("country", "PT")},
            "shipping_address": {"name": "Maria", "surname": "Sousa", "address": "Rua Augusta 10", "city": "Lisboa",
                                 "postal": "1100-053", "country": "Portugal", "country_code": buyer.get("country", "PT")},
            "products": products, "shipping_taxes": [],
            "status": STATUS_NAMES[status], "status_name": STATUS_NAMES[status], "status_enum": status,
            "shipment_status_enum": shipment, "shipment_status": shipment.replace("_", " ").title(),
        }
        self.store.put("orders", _key(oid), doc)
        return doc

    # -- admin ----------------------------------------------------------------------------------------
    def admin_create_product(self, req: Request) -> Response:
        spec = req.json()
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise HttpError(400, "validation_error", "a product needs a name")
        doc = self._product(spec)
        self.store.put("products", _key(doc["id"]), doc)
        return Response(201, {"product": doc})

    def admin_patch_product(self, req: Request) -> Response:
        """Change any field of a product as the shop's own admin would (name, brand, price, status...)."""
        key = _key(int(req.params["pid"]))
        doc = self.store.get("products", key)
        if doc is None:
            raise HttpError(404, "not_found", "no such product")
        doc.update({k: v for k, v in req.json().items() if k not in ("id", "variants")})
        doc["updated_at"] = self.now_text()
        self.store.put("products", key, doc)
        return Response(200, {"product": doc})

    def admin_stock(self, req: Request) -> Response:
        """{"sku": ..., "stock": n}: the stock of the product or variant with that SKU, as a sale or a count."""
        body = req.json()
        for key, product in self.store.all("products"):
            for holder in [product, *product["variants"]]:
                if holder.get("sku") == body.get("sku"):
                    holder["stock"] = int(body["stock"])
                    self.store.put("products", key, product)
                    return Response(200, {"product": product})
        raise HttpError(404, "not_found", f"no product or variant with sku {body.get('sku')!r}")

    def admin_create_order(self, req: Request) -> Response:
        return Response(201, {"order": self._order(req.json())})

    def admin_patch_order(self, req: Request) -> Response:
        """{"state": ...} moves an order (a payment arrives, a paid order is cancelled); {"billing_address": ...}
        corrects the buyer's details (a tax id typed wrong)."""
        key = _key(int(req.params["oid"]))
        doc = self.store.get("orders", key)
        if doc is None:
            raise HttpError(404, "not_found", "no such order")
        body = req.json()
        if isinstance(body.get("billing_address"), dict):
            doc["billing_address"] = body["billing_address"]
        status, shipment = STATES[body.get("state") or _state_of(doc)]
        doc.update({"status": STATUS_NAMES[status], "status_name": STATUS_NAMES[status], "status_enum": status,
                    "shipment_status_enum": shipment, "fulfillment_status": shipment})
        self.store.put("orders", key, doc)
        return Response(200, {"order": doc})

    def admin_clock(self, req: Request) -> Response:
        self.offset += float(req.json().get("advance", 0))
        return Response(200, {"now": self.now_text()})

    def admin_send_webhooks(self, req: Request) -> Response:
        """Paid orders made one by one, each POSTed to `url` as a hook does: the order document, its event in
        Jumpseller-Event, and Jumpseller-Hmac-Sha256 = base64(HMAC-SHA256(hooks token, body)) (SOURCE.md L30-31);
        {"url", "count", "event", "sign": false (unsigned), "token" (sign with another key)}."""
        body = req.json()
        url, count = body.get("url"), body.get("count", 1)
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise HttpError(400, "bad_url", "url must be an http(s) URL")
        if not isinstance(count, int) or not 1 <= count <= 10_000:
            raise HttpError(400, "bad_count", "count must be an integer from 1 to 10000")
        event = str(body.get("event") or "order_paid")
        key = str(body.get("token") or self.hooks_token).encode()
        sign = body.get("sign", True) is not False

        def make(i: int) -> tuple[dict[str, Any], str]:
            with self.lock:
                order = self._order({"state": "paid"})
            return {"order": order}, str(order["id"])

        def headers(raw: bytes) -> dict[str, str]:
            found = {"Jumpseller-Event": event}
            if sign:
                found["Jumpseller-Hmac-Sha256"] = base64.b64encode(hmac.new(key, raw, hashlib.sha256).digest()).decode()
            return found

        self.webhooks.start(url, headers, make, count)
        return Response(202, {"started": count})

    def admin_config(self, req: Request) -> Response:
        """Change the credentials (a reset auth token), or the rate limits."""
        body = req.json()
        self.token = str(body.get("auth_token", self.token))
        self.per_second = int(body.get("per_second", self.per_second))
        self.per_minute = int(body.get("per_minute", self.per_minute))
        return Response(200, {"per_second": self.per_second, "per_minute": self.per_minute})


def _state_of(doc: dict[str, Any]) -> str:
    """The admin state an order is in now (for a change that does not move it)."""
    return next(name for name, pair in STATES.items() if pair == (doc["status_enum"], doc["shipment_status_enum"]))


PRODUCT_KINDS_PT = [("T-shirt", "VEST"), ("Calças de ganga", "VEST"), ("Ténis de corrida", "CALC"),
                    ("Sandálias", "CALC"), ("Mochila", "ACES"), ("Boné", "ACES"), ("Casaco", "VEST")]


def build(db_path: str, *, products: int = 30, seed: int = 42, log_bodies: bool = True,
          **options: str) -> JumpsellerSim:
    return JumpsellerSim(db_path, products=products, seed=seed, log_bodies=log_bodies, options=options)


__all__ = ["DEMO_APP_ID", "DEMO_APP_SECRET", "DEMO_LOGIN", "DEMO_TOKEN", "JumpsellerSim", "build"]
