"""Simulator of SkyHub (Americanas marketplace hub): catalogue, the order queue, order status updates.

Every rule cites the line of ../shared/contracts/skyhub/API.md it follows (``API.md L<n>``). As
strict as the reference: the three auth headers on every call (401), ``{"error": "<message>"}``
bodies (L34), token buckets per endpoint + method (9/s, orders GET 1/s, 429 with no Retry-After,
L36-51), partial product PUTs (L60), the seller's status machine with 422 on a transition it does
not allow (L126-140), and the order queue: one order per GET, taken off by DELETE, handed over
again when not deleted within 5 minutes (L99-103).

What the reference leaves open is a simulator option, so the connector is tested against each
reading: ``queue_mode`` ``head`` (the head order is answered until deleted; one read and not
deleted for 5 minutes goes to the back of the queue) or ``hide`` (a read order is invisible for
5 minutes, the next GET answers the next one); ``empty_queue`` ``204`` | ``404`` | ``200`` (an
empty body) for an empty queue (L100-101). ``POST /_admin/clock`` moves the simulator's clock.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from syncagent.simulators import seeddata
from syncagent.simulators.auth import require_headers
from syncagent.simulators.common import HttpError, Request, Response, SimApp
from syncagent.simulators.skyhub_orders import SkyHubOrders, fail
from syncagent.simulators.store import DocStore

DEMO_EMAIL = "loja@exemplo.com.br"
DEMO_API_KEY = "skyhub-demo-key"
DEMO_ACCOUNT_KEY = "skyhub-demo-accountmanager"
GENERAL_RATE, ORDERS_GET_RATE = 9.0, 1.0  # API.md L42-49
PRODUCT_FIELDS = {"sku", "name", "description", "status", "qty", "price", "promotional_price", "cost", "weight",
                  "height", "width", "length", "brand", "ean", "nbm", "images", "categories", "specifications",
                  "variations", "variation_attributes"}  # API.md L65-69


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class SkyHubSim(SimApp, SkyHubOrders):
    system = "skyhub"

    def __init__(self, db_path: str, *, products: int, seed: int, log_bodies: bool, options: dict[str, str]) -> None:
        super().__init__(db_path, log_bodies=log_bodies)
        self.store = DocStore(self.db, self.lock)
        self.products, self.seed = products, seed
        self.email = options.get("email", DEMO_EMAIL)
        self.api_key = options.get("api_key", DEMO_API_KEY)
        self.account_key = options.get("account_manager_key", DEMO_ACCOUNT_KEY)
        self.queue_mode = options.get("queue_mode", "head")
        self.empty_queue = options.get("empty_queue", "204")
        self.rate_limits = options.get("rate_limits", "1") == "1"
        self.clock_offset = float(self.meta("clock_offset") or 0.0)
        self.buckets: dict[str, tuple[float, float]] = {}  # endpoint+method -> (tokens, at)
        if self.meta("seeded") is None:
            with self.tx():
                for _ in range(int(options.get("orders", "0"))):
                    self._new_order({})
                self.set_meta("seeded", "1")
        self._routes()

    # -- clock, auth, limits ----------------------------------------------------------------------
    def now(self) -> float:
        return time.time() + self.clock_offset

    def now_iso(self) -> str:
        return datetime.fromtimestamp(self.now(), UTC).strftime("%Y-%m-%dT%H:%M:%S-00:00")

    def _routes(self) -> None:
        api = self.api
        self.route("GET", "/products", api("products GET", self.list_products))
        self.route("POST", "/products", api("products POST", self.create_product))
        self.route("GET", "/products/{sku}", api("products GET", self.get_product))
        self.route("PUT", "/products/{sku}", api("products PUT", self.update_product))
        self.route("DELETE", "/products/{sku}", api("products DELETE", self.delete_product))
        self.route("POST", "/products/{sku}/variations", api("products POST", self.create_variation))
        self.route("PUT", "/variations/{sku}", api("variations PUT", self.update_variation))
        self.route("DELETE", "/variations/{sku}", api("variations DELETE", self.delete_variation))
        self.route("GET", "/queues/orders", api("queues GET", self.read_queue))
        self.route("DELETE", "/queues/orders/{code}", api("queues DELETE", self.delete_queue_item))
        self.route("GET", "/orders", api("orders list GET", self.list_orders))
        self.route("GET", "/orders/{code}", api("orders GET", self.get_order))
        for action, status in (("invoice", "order_invoiced"), ("shipments", "order_shipped"),
                               ("delivery", "complete"), ("cancel", "order_canceled"),
                               ("shipment_exception", "shipment_exception")):
            self.route("POST", f"/orders/{{code}}/{action}",
                       api(f"orders {action} POST", lambda req, a=action, s=status: self.update_status(req, a, s)))
        self.route("POST", "/orders/{code}/approval", api("orders approval POST", self.approve))
        self.route("POST", "/_admin/clock", self.admin_clock)
        self.route("POST", "/_admin/config", self.admin_config)
        self.route("POST", "/_admin/orders", self.admin_create_orders)
        self.route("GET", "/_admin/orders", self.admin_orders)
        self.route("GET", "/_admin/orders/{code}", self.admin_order)
        self.route("POST", "/_admin/orders/{code}/status", self.admin_order_status)
        self.route("GET", "/_admin/queue", self.admin_queue)
        self.route("GET", "/_admin/state", self.admin_state)

    def api(self, budget: str, handler: Any) -> Any:
        """The checks every API call passes first: auth headers, Accept, Content-Type, the rate limit."""
        def wrapped(req: Request) -> Response:
            # API.md L14, L25: all three headers on every call, else 401
            try:
                require_headers(req, {"X-User-Email": self.email, "X-Accountmanager-Key": self.account_key})
            except HttpError as exc:
                raise fail(401, exc.message) from None
            if req.header("X-Api-Key") != self.api_key and req.header("X-User-Token") != self.api_key:
                raise fail(401, "missing or wrong X-Api-Key")  # L14: X-User-Token is its older name
            accept = (req.header("Accept") or "*/*").lower()
            if "json" not in accept and "*/*" not in accept:
                raise fail(406, f"unsupported Accept {accept!r}")  # API.md L28
            if req.body and "application/json" not in (req.header("Content-Type") or "").lower():
                raise fail(415, "the body must be application/json (UTF-8)")  # API.md L15, L29
            self._take(budget)
            with self.tx():  # one call, one transaction: an order and its queue item change together
                return handler(req)
        return wrapped

    def _take(self, budget: str) -> None:
        """A token bucket per endpoint + method (API.md L38-49); over it: 429, no Retry-After (L51)."""
        if not self.rate_limits:
            return
        rate = ORDERS_GET_RATE if budget in ("orders GET", "orders list GET") else GENERAL_RATE
        now = time.monotonic()
        tokens, at = self.buckets.get(budget, (rate, now))
        tokens = min(rate, tokens + (now - at) * rate)
        if tokens < 1:
            self.buckets[budget] = (tokens, now)
            raise fail(429, f"rate limit exceeded for {budget}")
        self.buckets[budget] = (tokens - 1, now)

    @staticmethod
    def _body(req: Request, key: str) -> dict[str, Any]:
        try:
            body = json.loads(req.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise fail(400, "malformed JSON") from None  # API.md L24
        inner = body.get(key) if isinstance(body, dict) else None
        if not isinstance(inner, dict):
            raise fail(422, f"the body must be an object with a {key!r} object")
        return inner

    # -- catalogue --------------------------------------------------------------------------------
    def _check_product(self, fields: dict[str, Any], *, creating: bool) -> None:
        unknown = set(fields) - PRODUCT_FIELDS
        if unknown:
            raise fail(422, f"unknown product fields: {', '.join(sorted(unknown))}")
        if creating:
            for name in ("sku", "name"):
                if not isinstance(fields.get(name), str) or not fields[name].strip():
                    raise fail(422, f"{name} is required")
        if "status" in fields and fields["status"] not in ("enabled", "disabled"):
            raise fail(422, "status must be enabled or disabled")  # API.md L66
        if "brand" in fields and fields["brand"] not in seeddata.BRANDS:  # API.md L71: from the brand list
            raise fail(422, f"brand {str(fields['brand'])[:40]!r} is not in the marketplace's brand list")
        for name in ("price", "promotional_price"):  # API.md L72: non-zero, non-null numbers
            if name in fields and (not _number(fields[name]) or fields[name] <= 0):
                raise fail(422, f"{name} must be a number greater than zero")
        if "qty" in fields and (not isinstance(fields["qty"], int) or isinstance(fields["qty"], bool)
                                or fields["qty"] < 0):
            raise fail(422, "qty must be a whole number, not negative")  # API.md L87

    @staticmethod
    def _check_promo(doc: dict[str, Any]) -> None:
        """API.md L82-83 (UNKNOWN, assumed): the promotional price is not above the price."""
        price, promo = doc.get("price"), doc.get("promotional_price")
        if _number(price) and _number(promo) and promo > price:
            raise fail(422, f"promotional_price {promo} is greater than price {price}")

    def list_products(self, req: Request) -> Response:
        """API.md L61: page + per_page, filters; the answer carries total (L17)."""
        page, per_page = self._paging(req)
        sku = req.arg("filters[sku]")
        rows, total = self.store.window("products", (page - 1) * per_page, per_page,
                                        (lambda d: d["sku"] == sku) if sku else None, by_key=True)
        return Response(200, {"total": total, "products": [d for _, d in rows]})

    def get_product(self, req: Request) -> Response:
        doc = self.store.get("products", unquote(req.params["sku"]))
        if doc is None:
            raise fail(404, "product not found")  # API.md L27
        return Response(200, doc)

    def create_product(self, req: Request) -> Response:
        """API.md L59: POST /products {"product": {...}}; a SKU taken already is refused."""
        fields = self._body(req, "product")
        self._check_product(fields, creating=True)
        self._check_promo(fields)
        if self.store.get("products", fields["sku"]) is not None:
            raise fail(422, f"sku {fields['sku']} already exists")
        variations = fields.pop("variations", None) or []
        doc = {"qty": 0, "status": "enabled", **fields, "variations": []}
        self.store.put("products", doc["sku"], doc)
        for variation in variations:
            self._add_variation(doc["sku"], variation)
        return Response(201)

    def update_product(self, req: Request) -> Response:
        """API.md L60, L76, L87: a partial update, only the fields sent change."""
        sku = unquote(req.params["sku"])
        doc = self.store.get("products", sku)
        if doc is None:
            raise fail(404, "product not found")
        fields = self._body(req, "product")
        fields.pop("variations", None)
        self._check_product(fields, creating=False)
        merged = {**doc, **fields, "sku": sku}
        self._check_promo(merged)
        self.store.put("products", sku, merged)
        return Response(204)

    def delete_product(self, req: Request) -> Response:
        sku = unquote(req.params["sku"])
        if not self.store.delete("products", sku):
            raise fail(404, "product not found")
        for key, _ in self.store.find("variations", "parent", sku):
            self.store.delete("variations", key)
        return Response(204)

    def _add_variation(self, parent: str, fields: Any) -> None:
        if not isinstance(fields, dict) or not isinstance(fields.get("sku"), str) or not fields["sku"]:
            raise fail(422, "a variation needs its sku")
        if self.store.get("variations", fields["sku"]) is not None or self.store.get("products", fields["sku"]):
            raise fail(422, f"sku {fields['sku']} already exists")
        self.store.put("variations", fields["sku"], {**fields, "parent": parent})

    def create_variation(self, req: Request) -> Response:
        """API.md L63: POST /products/{sku}/variations {"variation": {...}}."""
        parent = unquote(req.params["sku"])
        if self.store.get("products", parent) is None:
            raise fail(404, "product not found")
        self._add_variation(parent, self._body(req, "variation"))
        return Response(201)

    def update_variation(self, req: Request) -> Response:
        """API.md L63, L76, L87: PUT /variations/{sku}, partial; the reference shows both body keys."""
        sku = unquote(req.params["sku"])
        doc = self.store.get("variations", sku)
        if doc is None:
            raise fail(404, "variation not found")
        body = json.loads(req.body or b"{}") if req.body else {}
        key = "variation" if isinstance(body, dict) and "variation" in body else "product"
        fields = self._body(req, key)
        self._check_product({k: v for k, v in fields.items() if k != "sku"}, creating=False)
        merged = {**doc, **fields, "sku": sku}
        self._check_promo(merged)
        self.store.put("variations", sku, merged)
        return Response(204)

    def delete_variation(self, req: Request) -> Response:
        if not self.store.delete("variations", unquote(req.params["sku"])):
            raise fail(404, "variation not found")
        return Response(204)

    # -- admin ------------------------------------------------------------------------------------
    @staticmethod
    def _admin_body(req: Request) -> dict[str, Any]:
        try:
            body = json.loads(req.body or b"{}")
        except ValueError:
            raise HttpError(400, "invalid_json", "admin body is not JSON") from None
        if not isinstance(body, dict):
            raise HttpError(400, "validation_error", "admin body must be an object")
        return body

    def admin_clock(self, req: Request) -> Response:
        self.clock_offset += float(self._admin_body(req).get("advance", 0))
        self.set_meta("clock_offset", str(self.clock_offset))
        return Response(200, {"now": self.now_iso(), "offset": self.clock_offset})

    def admin_config(self, req: Request) -> Response:
        body = self._admin_body(req)
        for name in ("email", "api_key", "account_key", "queue_mode", "empty_queue", "rate_limits"):
            if name in body:
                setattr(self, name, body[name])
        return Response(204)

    def admin_create_orders(self, req: Request) -> Response:
        """{"count": n, "status": "payment_received", ...order fields}: new orders, each queued."""
        body = self._admin_body(req)
        count = int(body.pop("count", 1))
        with self.tx():
            return Response(201, {"items": [self._new_order(dict(body)) for _ in range(count)]})

    def admin_orders(self, req: Request) -> Response:
        return Response(200, {"items": [doc for _, doc in self.store.all("orders")]})

    def admin_order(self, req: Request) -> Response:
        return Response(200, self._order(unquote(req.params["code"])))

    def admin_order_status(self, req: Request) -> Response:
        """A marketplace change (payment approved, cancelled by the buyer): queued again."""
        order = self._order(unquote(req.params["code"]))
        with self.tx():
            self._marketplace_status(order, str(self._admin_body(req).get("status")))
        return Response(200, order)

    def admin_queue(self, req: Request) -> Response:
        now = self.now()
        return Response(200, {"items": [{**i, "visible": i["visible_at"] <= now} for i in self._queue()],
                              "now": now})

    def admin_state(self, req: Request) -> Response:
        return Response(200, {"products": [d for _, d in self.store.all("products")],
                              "variations": [d for _, d in self.store.all("variations")]})


def build(db_path: str, *, products: int, seed: int, log_bodies: bool = True, **options: str) -> SimApp:
    return SkyHubSim(db_path, products=products, seed=seed, log_bodies=log_bodies, options=options)
