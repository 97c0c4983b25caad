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
import random
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import unquote

from syncagent.simulators import seeddata
from syncagent.simulators.auth import require_headers
from syncagent.simulators.common import HttpError, Request, Response, SimApp
from syncagent.simulators.store import DocStore

DEMO_EMAIL = "loja@exemplo.com.br"
DEMO_API_KEY = "skyhub-demo-key"
DEMO_ACCOUNT_KEY = "skyhub-demo-accountmanager"
VISIBILITY = 300.0  # API.md L102: acknowledge within 5 minutes, else the order is queued again
GENERAL_RATE, ORDERS_GET_RATE = 9.0, 1.0  # API.md L42-49
# API.md L126-136: status code -> type
STATUS_TYPES = {"book_product": "NEW", "payment_received": "APPROVED", "order_canceled": "CANCELED",
                "order_invoiced": "INVOICED", "order_shipped": "SHIPPED", "complete": "DELIVERED",
                "shipment_exception": "SHIPMENT_EXCEPTION"}
# API.md L138: the seller's path APPROVED -> INVOICED -> SHIPPED -> DELIVERED; cancel before shipping (L177)
SELLER_MOVES = {("APPROVED", "INVOICED"), ("INVOICED", "SHIPPED"), ("SHIPPED", "DELIVERED"),
                ("SHIPPED", "SHIPMENT_EXCEPTION"), ("NEW", "CANCELED"), ("APPROVED", "CANCELED"),
                ("INVOICED", "CANCELED")}
QUEUED_TYPES = {"NEW", "APPROVED", "CANCELED"}  # API.md L104-105: what the marketplace queues
PAYMENTS = [("CREDIT_CARD", "Cartão de Crédito"), ("BOLETO", "Boleto Bancário"), ("PIX", "Pix")]
PRODUCT_FIELDS = {"sku", "name", "description", "status", "qty", "price", "promotional_price", "cost", "weight",
                  "height", "width", "length", "brand", "ean", "nbm", "images", "categories", "specifications",
                  "variations", "variation_attributes"}  # API.md L65-69


class SkyError(HttpError):
    """API.md L34: the error body is {"error": "<message>"}, a single string, no code."""

    def response(self) -> Response:
        return Response(self.status, {"error": self.message}, dict(self.headers))


def fail(status: int, message: str) -> SkyError:
    return SkyError(status, str(status), message)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class SkyHubSim(SimApp):
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

    @staticmethod
    def _paging(req: Request) -> tuple[int, int]:
        try:
            page, per_page = int(req.arg("page", "1") or 1), int(req.arg("per_page", "25") or 25)
        except ValueError:
            raise fail(422, "page and per_page must be numbers") from None
        return max(1, page), max(1, min(100, per_page))

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

    # -- orders -----------------------------------------------------------------------------------
    def _order(self, code: str) -> dict[str, Any]:
        doc = self.store.get("orders", code)
        if doc is None:
            raise fail(404, f"order {code} not found")
        return doc

    def _new_order(self, fields: dict[str, Any]) -> dict[str, Any]:
        number = self.counter("order_seq", 1_517_940_500_000)
        rng = random.Random(f"{self.seed}:skyhub-order:{number}")
        items = []
        for _item in range(rng.randint(1, 3)):
            for _attempt in range(50):  # an active product: the back office refuses an inactive one
                index = rng.randint(1, max(1, self.products))
                if seeddata.product(self.seed, index)["active"]:
                    break
            info = seeddata.product(self.seed, index)
            price = float(Decimal(seeddata.price(self.seed, index)["list_price"]))
            special = round(price * 0.9, 2) if rng.random() < 0.25 else price
            items.append({"id": info["code"], "product_id": info["code"], "name": info["description"],
                          "qty": rng.randint(1, 3), "original_price": price, "special_price": special})
        shipping = rng.choice([0.0, 15.0, 23.9])
        total = round(sum(i["special_price"] * i["qty"] for i in items) + shipping, 2)
        person = seeddata.customer(self.seed, rng.randint(1, seeddata.customer_count(self.products)))
        if rng.random() < 0.4:  # a buyer the back office does not know yet
            person = {**person, "document": seeddata.cpf(rng), "name": seeddata.person_name(rng),
                      "email": f"cliente{number}@exemplo.com.br"}
        a = person["address"]
        address = {"full_name": person["name"], "street": a["street"], "number": a["number"], "detail": "",
                   "neighborhood": a["district"], "city": a["city"], "region": a["state"], "country": "BR",
                   "postcode": a["zip"], "complement": "", "reference": "", "phone": person["phone"]}
        method, label = rng.choice(PAYMENTS)
        placed = datetime.fromtimestamp(self.now(), UTC) - timedelta(minutes=rng.randint(1, 90))
        code = fields.pop("code", None) or f"Lojas Americanas-{number}-01"  # API.md L112-114: with spaces
        status = fields.pop("status", "payment_received")
        order = {
            "code": code, "channel": "Lojas Americanas", "placed_at": placed.strftime("%Y-%m-%dT%H:%M:%S-00:00"),
            "updated_at": self.now_iso(), "status": self._status(status), "total_ordered": total,
            "shipping_cost": shipping, "discount": 0.0, "interest": 0.0, "shipping_method": "Correios PAC",
            "customer": {"name": person["name"], "email": person["email"], "vat_number": person["document"],
                         "date_of_birth": person.get("birth_date"), "gender": "", "state_registration": None,
                         "phones": [person["phone"]]},
            "billing_address": address, "shipping_address": address, "items": items,
            "payments": [{"method": method, "description": label, "parcels": 1, "value": total}],
            "invoices": [], "shipments": [], "sync_status": "NOT_SYNCED",  # API.md L107, L116-124
        }
        order |= fields
        self.store.put("orders", code, order)
        self._enqueue(code)
        return order

    @staticmethod
    def _status(code: str) -> dict[str, str]:
        if code not in STATUS_TYPES:
            raise fail(422, f"unknown status {code!r}")  # API.md L30
        return {"code": code, "label": code.replace("_", " "), "type": STATUS_TYPES[code]}

    def _enqueue(self, code: str) -> None:
        """A marketplace change queues the order (once: the queue holds its current JSON), API.md L99-105."""
        item = self.store.get("queue", code)
        if item is None:
            self.store.put("queue", code, {"code": code, "pos": self._next_pos(), "read_at": None,
                                           "visible_at": 0.0, "reads": 0})

    def _next_pos(self) -> int:
        return self.counter("queue_pos")

    def _queue(self) -> list[dict[str, Any]]:
        return sorted((doc for _, doc in self.store.all("queue")), key=lambda d: d["pos"])

    def read_queue(self, req: Request) -> Response:
        """API.md L99: one order per call; not deleted within 5 minutes, it is queued again (L102-103)."""
        now = self.now()
        if self.queue_mode == "head":
            for item in self._queue():  # queued again: to the back, to be read anew
                if item["read_at"] is not None and now - item["read_at"] >= VISIBILITY:
                    self.store.put("queue", item["code"], {**item, "pos": self._next_pos(), "read_at": None})
            head = next(iter(self._queue()), None)
        else:
            head = next((i for i in self._queue() if i["visible_at"] <= now), None)
        if head is None:
            return {"204": Response(204), "404": Response(404, {"error": "queue is empty"}),
                    "200": Response(200, raw=b"")}.get(self.empty_queue, Response(204))
        head = {**head, "reads": head["reads"] + 1}
        if self.queue_mode == "head":
            head["read_at"] = head["read_at"] if head["read_at"] is not None else now
        else:
            head["visible_at"] = now + VISIBILITY
        self.store.put("queue", head["code"], head)
        return Response(200, self._order(head["code"]))

    def delete_queue_item(self, req: Request) -> Response:
        """API.md L102: DELETE /queues/orders/{code} takes the order off the queue, wherever it is in it."""
        code = unquote(req.params["code"])
        if not self.store.delete("queue", code):
            raise fail(404, f"order {code} is not in the queue")  # API.md L186 (UNKNOWN): a 404
        order = self.store.get("orders", code)
        if order is not None:
            self.store.put("orders", code, {**order, "sync_status": "SYNCED"})  # API.md L107
        return Response(204)

    def list_orders(self, req: Request) -> Response:
        """API.md L109: GET /orders?page=&per_page=&filters[statuses][]=; answers {total, orders} (L17)."""
        page, per_page = self._paging(req)
        statuses = req.args("filters[statuses][]")
        rows, total = self.store.window("orders", (page - 1) * per_page, per_page,
                                        (lambda d: d["status"]["code"] in statuses) if statuses else None)
        return Response(200, {"total": total, "orders": [d for _, d in rows]})

    def get_order(self, req: Request) -> Response:
        return Response(200, self._order(unquote(req.params["code"])))  # API.md L110

    def update_status(self, req: Request, action: str, status: str) -> Response:
        """API.md L142-179: the seller moves the order along its path; any other move is a 422 (L139)."""
        order = self._order(unquote(req.params["code"]))
        try:
            body = json.loads(req.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise fail(400, "malformed JSON") from None
        if not isinstance(body, dict) or body.get("status") != status:
            raise fail(422, f"status must be {status!r} on /{action}")
        before, after = order["status"]["type"], STATUS_TYPES[status]
        if (before, after) not in SELLER_MOVES:
            raise fail(422, f"invalid status transition from {before} to {after}")
        if action == "invoice":
            invoice = body.get("invoice")
            key = invoice.get("key") if isinstance(invoice, dict) else None
            if not isinstance(key, str) or len(key) != 44 or not key.isdigit():
                raise fail(422, "invoice.key must be the 44-digit NF-e access key")  # API.md L148
            order["invoices"] = [*order["invoices"], {"key": key, "number": key[25:34].lstrip("0") or "0",
                                                      "line": key[22:25].lstrip("0") or "0",
                                                      "issue_date": invoice.get("issue_date")}]
        elif action == "shipments":
            shipment = body.get("shipment")
            if not isinstance(shipment, dict) or not isinstance(shipment.get("track"), dict) \
                    or not shipment["track"].get("code"):
                raise fail(422, "shipment.track.code is required")  # API.md L159-166
            items = shipment.get("items", body.get("items"))  # API.md L167-168: both places accepted
            if not isinstance(items, list) or not items:
                raise fail(422, "shipment items are required")
            order["shipments"] = [*order["shipments"], {**shipment, "items": items}]
        elif action == "delivery":
            order["delivered_date"] = body.get("delivered_date")  # API.md L172
        order["status"] = self._status(status)
        order["updated_at"] = self.now_iso()
        self.store.put("orders", order["code"], order)
        return Response(204)

    def approve(self, req: Request) -> Response:
        """API.md L180: sandbox only, the marketplace's payment approval (queued)."""
        self._marketplace_status(self._order(unquote(req.params["code"])), "payment_received")
        return Response(204)

    def _marketplace_status(self, order: dict[str, Any], status: str) -> None:
        order["status"] = self._status(status)
        order["updated_at"] = self.now_iso()
        self.store.put("orders", order["code"], order)
        if order["status"]["type"] in QUEUED_TYPES:
            self._enqueue(order["code"])

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
