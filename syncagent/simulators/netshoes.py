"""Simulator of the Netshoes / Zattini marketplace API v1: catalogue, prices, schedules, stock, orders, statuses.

Every rule cites the line of ../shared/contracts/netshoes/API.md it follows (``API.md Lnn``). State
lives in a `DocStore`; the admin routes under ``/_admin`` seed orders, move their statuses as the
marketplace would, change settings and show what the system holds.

Options (strings): client_id, access_token, orders (seeded approved orders), first_page (0 or 1:
which number the first page of a listing has, UNKNOWN in API.md L21), status_body (flat, envelope
or both: which status-update bodies are accepted, API.md L116-L130), rate_per_minute (API.md
L25; 0: no limit), zattini_share (the part of seeded orders sold on Zattini).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from syncagent.model import valid_ean
from syncagent.simulators.auth import require_headers
from syncagent.simulators.common import HttpError, Request, Response, SimApp, valid_date_time
from syncagent.simulators.netshoes_wire import NsError, at_time, invalid, iso, make_order, status_fields
from syncagent.simulators.store import DocStore

DEMO_CLIENT_ID = "netshoes-demo-app"
DEMO_ACCESS_TOKEN = "netshoes-demo-token"  # noqa: S105 - a simulator's demo credential, not a real secret
BUSINESS_UNITS = ("NS", "ZT")  # API.md L45, L83
STEPS = ("approved", "invoiced", "shipped", "delivered")  # API.md L132
CANCEL_REASONS = [{"code": 1, "description": "Produto sem estoque", "canBePenalty": True},
                  {"code": 3, "description": "Solicitado pelo cliente", "canBePenalty": False}]  # API.md L76


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class NetshoesSim(SimApp):
    system = "netshoes"

    def __init__(self, db_path: str, *, products: int, seed: int, log_bodies: bool, options: dict[str, str]) -> None:
        super().__init__(db_path, log_bodies=log_bodies)
        self.store = DocStore(self.db, self.lock)
        self.products, self.seed = products, seed
        # credentials set through /_admin/config are kept in the file; those given at start win
        self.client_id = options.get("client_id") or self.meta("client_id") or DEMO_CLIENT_ID
        self.access_token = options.get("access_token") or self.meta("access_token") or DEMO_ACCESS_TOKEN
        self.first_page = int(options.get("first_page", "0"))
        self.status_body = options.get("status_body", "both")
        self.rate = float(options.get("rate_per_minute", "50"))
        self.zattini_share = float(options.get("zattini_share", "0"))
        self.bucket, self.bucket_at = self.rate, time.monotonic()
        if self.meta("seeded") is None:
            with self.tx():
                for _ in range(int(options.get("orders", "10"))):
                    self.new_order({})
                self.set_meta("seeded", "1")
        self._routes()

    def _routes(self) -> None:
        r = self.route
        r("POST", "/products", self.api(self.create_product))  # API.md L40
        r("GET", "/products/{productId}", self.api(self.get_product))  # API.md L42
        r("PUT", "/products/{productId}", self.api(self.replace_product))  # API.md L41
        r("PATCH", "/products/{productId}", self.api(self.patch_product))  # API.md L41
        r("POST", "/products/{productId}/skus", self.api(self.add_sku))  # API.md L43
        r("PUT", "/products/{productId}/skus/{sku}", self.api(self.update_sku))  # API.md L44
        r("GET", "/skus/{sku}/bus/{buId}/status", self.api(self.get_bu_status))  # API.md L45
        r("PUT", "/skus/{sku}/bus/{buId}/status", self.api(self.put_bu_status))  # API.md L45
        r("GET", "/skus/{sku}/prices", self.api(self.get_price))  # API.md L56
        r("PUT", "/skus/{sku}/prices", self.api(self.put_price))  # API.md L56
        r("GET", "/skus/{sku}/priceSchedules", self.api(self.list_schedules))  # API.md L57
        r("POST", "/skus/{sku}/priceSchedules", self.api(self.add_schedule))  # API.md L57
        r("GET", "/skus/{sku}/stocks", self.api(self.get_stock))  # API.md L64
        r("PUT", "/skus/{sku}/stocks", self.api(self.put_stock))  # API.md L63
        r("GET", "/orders", self.api(self.list_orders))  # API.md L73
        r("GET", "/orders/cancellation-reasons", self.api(lambda req: Response(200, CANCEL_REASONS)))  # API.md L76
        r("GET", "/orders/{orderNumber}", self.api(self.get_order))  # API.md L74
        r("GET", "/orders/{orderNumber}/shippings/{shippingCode}", self.api(self.get_shipping))  # API.md L75
        r("PUT", "/orders/{orderNumber}/shippings/{shippingCode}/status/{step}", self.api(self.put_status))  # L112
        r("POST", "/_admin/orders", self.admin_new_orders)
        r("GET", "/_admin/orders", lambda req: Response(200, {"items": [d for _, d in self.store.all("orders")]}))
        r("GET", "/_admin/orders/{orderNumber}", lambda req: Response(200, self._order(req.params["orderNumber"])))
        r("POST", "/_admin/orders/{orderNumber}/shippings/{shippingCode}/status", self.admin_status)
        r("POST", "/_admin/config", self.admin_config)
        r("GET", "/_admin/state", self.admin_state)
        r("GET", "/_admin/price/{sku}", self.admin_price)

    # -- auth, rate limit --------------------------------------------------------------------------
    def api(self, handler: Any) -> Any:
        """Two static headers on every call (API.md L17); over the plan's calls per minute, 429 (L25-L26)."""
        def wrapped(req: Request) -> Response:
            require_headers(req, {"client_id": self.client_id, "access_token": self.access_token}, status=401,
                            code="Unauthorized")
            if self.rate > 0:
                now = time.monotonic()
                self.bucket = min(self.rate, self.bucket + (now - self.bucket_at) * self.rate / 60)
                self.bucket_at = now
                if self.bucket < 1:  # no Retry-After: its presence is UNKNOWN (API.md L26)
                    raise NsError(429, "Too_Many_Requests", "Rate limit of your plan exceeded.")
                self.bucket -= 1
            try:
                return handler(req)
            except NsError:
                raise
            except HttpError as err:  # the framework's own (a body that is not JSON): in Netshoes' shape
                raise NsError(err.status, "Invalid_Request", err.message) from None

        def guarded(req: Request) -> Response:
            try:
                return wrapped(req)
            except HttpError as err:
                if err.status == 401 and not isinstance(err, NsError):
                    raise NsError(401, "Unauthorized", "Missing or invalid client_id / access_token.") from None
                raise
        return guarded

    def _body(self, req: Request) -> dict[str, Any]:
        body = req.json()
        if not isinstance(body, dict):
            raise invalid("the body must be a JSON object")
        return body

    # -- catalogue ---------------------------------------------------------------------------------
    def _check_sku(self, sku: Any, where: str) -> list[str]:
        """SkuResource (API.md L43): sku and name required, numbers where numbers go."""
        if not isinstance(sku, dict):
            return [f"{where}: must be an object"]
        notes = [f"{where}.{k}: is required" for k in ("sku", "name")
                 if not isinstance(sku.get(k), str) or not sku[k].strip()]
        notes += [f"{where}.{k}: must be a number" for k in ("height", "width", "depth", "weight")
                  if sku.get(k) is not None and not _number(sku[k])]
        ean = sku.get("eanIsbn")
        if ean is not None and not (isinstance(ean, str) and valid_ean(ean)):
            notes.append(f"{where}.eanIsbn: {str(ean)[:20]!r} is not a valid EAN/ISBN")
        return notes

    def _check_product(self, body: dict[str, Any], *, partial: bool = False) -> None:
        """ProductResource (API.md L40): department, productType and brand, and its SKUs."""
        notes = [f"{k}: is required" for k in ("department", "productType", "brand")
                 if (not partial or k in body) and (not isinstance(body.get(k), str) or not body[k].strip())]
        if not partial or "skus" in body:
            skus = body.get("skus")
            if not isinstance(skus, list) or not skus:
                notes.append("skus: at least one SKU is required (the whole family, API rule)")
            else:
                for i, sku in enumerate(skus):
                    notes += self._check_sku(sku, f"skus[{i}]")
        if notes:
            raise invalid(*notes)

    def _sku_owner(self, sku: str) -> str | None:
        doc = self.store.get("sku_index", sku)
        return str(doc["productId"]) if doc else None

    def create_product(self, req: Request) -> Response:
        body = self._body(req)
        product_id = body.get("productId")
        if not isinstance(product_id, str) or not product_id.strip():
            raise invalid("productId: is required")
        self._check_product(body)
        if self.store.get("products", product_id) is not None:
            raise NsError(409, "Conflict", f"Product {product_id} already exists.")
        taken = [s["sku"] for s in body["skus"] if self._sku_owner(s["sku"])]
        if taken:
            raise NsError(409, "Conflict", f"SKU(s) {', '.join(taken)} belong to another product.")
        with self.tx():
            self._save_product({**body, "productId": product_id})
        return Response(201, self.store.get("products", product_id))

    def _save_product(self, doc: dict[str, Any]) -> None:
        skus = {s["sku"]: s for s in doc.get("skus") or []}
        self.store.put("products", doc["productId"], {**doc, "skus": list(skus.values())})
        for sku in skus:
            self.store.put("sku_index", sku, {"productId": doc["productId"]})

    def _product(self, product_id: str) -> dict[str, Any]:
        doc = self.store.get("products", product_id)
        if doc is None:
            raise NsError(404, "Resource_Not_Found", "Resource not found.")  # API.md L31
        return doc

    def get_product(self, req: Request) -> Response:
        return Response(200, self._product(req.params["productId"]))

    def replace_product(self, req: Request) -> Response:
        held, body = self._product(req.params["productId"]), self._body(req)
        self._check_product(body)
        with self.tx():
            self._save_product({**body, "productId": held["productId"]})
        return Response(200, self.store.get("products", held["productId"]))

    def patch_product(self, req: Request) -> Response:
        held, body = self._product(req.params["productId"]), self._body(req)
        self._check_product(body, partial=True)
        with self.tx():
            self._save_product({**held, **body, "productId": held["productId"]})
        return Response(200, self.store.get("products", held["productId"]))

    def add_sku(self, req: Request) -> Response:
        held, body = self._product(req.params["productId"]), self._body(req)
        notes = self._check_sku(body, "sku")
        if notes:
            raise invalid(*notes)
        if self._sku_owner(body["sku"]):
            raise NsError(409, "Conflict", f"SKU {body['sku']} already exists.")
        with self.tx():
            self._save_product({**held, "skus": [*held["skus"], body]})
        return Response(201, body)

    def update_sku(self, req: Request) -> Response:
        held, body, sku = self._product(req.params["productId"]), self._body(req), req.params["sku"]
        notes = self._check_sku(body, "sku")
        if body.get("sku") not in (None, sku):
            notes.append("sku: differs from the path")
        if notes:
            raise invalid(*notes)
        if sku not in {s["sku"] for s in held["skus"]}:
            raise NsError(404, "Resource_Not_Found", "Resource not found.")
        with self.tx():
            self._save_product({**held, "skus": [body if s["sku"] == sku else s for s in held["skus"]]})
        return Response(200, body)

    def _known_sku(self, sku: str) -> str:
        if self._sku_owner(sku) is None:
            raise NsError(404, "Resource_Not_Found", "Resource not found.")
        return sku

    def _bu(self, req: Request) -> str:
        bu = req.params["buId"]
        if bu not in BUSINESS_UNITS:
            raise NsError(404, "Resource_Not_Found", f"Unknown business unit {bu[:10]}.")
        return bu

    def get_bu_status(self, req: Request) -> Response:
        sku, bu = self._known_sku(req.params["sku"]), self._bu(req)
        return Response(200, self.store.get("bu_status", f"{sku}@{bu}") or {"active": False})

    def put_bu_status(self, req: Request) -> Response:
        sku, bu, body = self._known_sku(req.params["sku"]), self._bu(req), self._body(req)
        if not isinstance(body.get("active"), bool):
            raise invalid("active: must be true or false")
        self.store.put("bu_status", f"{sku}@{bu}", {"sku": sku, "buId": bu, "active": body["active"]})
        return Response(200, {"active": body["active"]})

    # -- prices, schedules, stock --------------------------------------------------------------------
    def get_price(self, req: Request) -> Response:
        sku = self._known_sku(req.params["sku"])
        doc = self.store.get("prices", sku)
        if doc is None:
            raise NsError(404, "Resource_Not_Found", "Resource not found.")
        return Response(200, doc)

    def put_price(self, req: Request) -> Response:
        sku, body = self._known_sku(req.params["sku"]), self._body(req)
        if not _number(body.get("price")) or body["price"] <= 0:  # PriceResource{sku, price} (API.md L56)
            raise invalid("price: must be a number greater than 0")
        self.store.put("prices", sku, {"sku": sku, "price": body["price"]})
        return Response(200, {"sku": sku, "price": body["price"]})

    def list_schedules(self, req: Request) -> Response:
        sku = self._known_sku(req.params["sku"])
        return Response(200, {"items": [d for _, d in self.store.find("schedules", "sku", sku)], "links": []})

    def add_schedule(self, req: Request) -> Response:
        """PriceScheduleResource (API.md L57); each POST adds one (not idempotent, API.md L141)."""
        sku, body = self._known_sku(req.params["sku"]), self._body(req)
        notes = [f"{k}: must be a number greater than 0" for k in ("priceFrom", "priceTo")
                 if not _number(body.get(k)) or body[k] <= 0]
        notes += [f"{k}: must be a date-time with offset" for k in ("dateInit", "dateEnd")
                  if not isinstance(body.get(k), str) or not valid_date_time(body[k])]
        if not notes and body["priceTo"] > body["priceFrom"]:
            notes.append("priceTo: must not be more than priceFrom")
        if not notes and at_time(body["dateEnd"]) <= at_time(body["dateInit"]):
            notes.append("dateEnd: must be after dateInit")
        if notes:
            raise invalid(*notes)
        number = self.counter("schedule_id")
        doc = {"id": number, "sku": sku, **{k: body[k] for k in ("priceFrom", "priceTo", "dateInit", "dateEnd")}}
        self.store.put("schedules", str(number), doc)
        return Response(201, doc)

    def get_stock(self, req: Request) -> Response:
        sku = self._known_sku(req.params["sku"])
        doc = self.store.get("stocks", sku) or {"country": "BR", "available": 0}
        return Response(200, {**doc, "total": doc["available"], "reserved": 0})  # StockResponse (API.md L64)

    def put_stock(self, req: Request) -> Response:
        sku, body = self._known_sku(req.params["sku"]), self._body(req)
        available = body.get("available")
        notes = [] if body.get("country") == "BR" else ["country: must be BR"]
        if not isinstance(available, int) or isinstance(available, bool) or available < 0:
            notes.append("available: must be an integer of at least 0")
        if notes:
            raise invalid(*notes)
        self.store.put("stocks", sku, {"country": "BR", "available": available})  # absolute (API.md L63)
        return Response(200, {"country": "BR", "available": available})

    # -- orders --------------------------------------------------------------------------------------
    def _order(self, number: str) -> dict[str, Any]:
        doc = self.store.get("orders", number)
        if doc is None:
            raise NsError(404, "Resource_Not_Found", "Resource not found.")
        return doc

    def _expanded(self, order: dict[str, Any], expand: str) -> dict[str, Any]:
        """What `expand` asks for (API.md L73): without it an order comes without its shippings and items."""
        parts = {p.strip() for p in expand.split(",") if p.strip()}
        out = {k: v for k, v in order.items() if k != "shippings"}
        if "shippings" in parts:
            out["shippings"] = [s if "items" in parts else {k: v for k, v in s.items() if k != "items"}
                                for s in order["shippings"]]
        return out

    def list_orders(self, req: Request) -> Response:
        """Filtered by orderStatus (any shipping in it, any case) and orderStartDate/EndDate on orderDate."""
        try:
            page, size = int(req.arg("page", str(self.first_page)) or 0), int(req.arg("size", "10") or 10)
        except ValueError:
            raise invalid("page and size must be integers") from None
        if page < self.first_page or size < 1:  # which number the first page has: UNKNOWN (API.md L21)
            raise invalid(f"page: the first page is {self.first_page}", "size: at least 1")
        status = (req.arg("orderStatus") or "").lower()
        bounds = []
        for name in ("orderStartDate", "orderEndDate"):
            text = req.arg(name)
            if text and not valid_date_time(text):
                raise invalid(f"{name}: must be a date-time with offset")
            bounds.append(at_time(text) if text else None)
        start, end = bounds

        def keep(order: dict[str, Any]) -> bool:
            moment = at_time(order["orderDate"])
            return (not status or any(s["status"].lower() == status for s in order["shippings"])) and \
                (start is None or moment >= start) and (end is None or moment <= end)

        orders = sorted((d for _, d in self.store.all("orders") if keep(d)),
                        key=lambda d: (at_time(d["orderDate"]), d["orderNumber"]))
        chosen = orders[(page - self.first_page) * size:(page - self.first_page + 1) * size]
        expand = req.arg("expand") or ""
        return Response(200, {"items": [self._expanded(o, expand) for o in chosen], "links": []})  # API.md L20

    def get_order(self, req: Request) -> Response:
        return Response(200, self._expanded(self._order(req.params["orderNumber"]), req.arg("expand") or ""))

    def _shipping(self, order: dict[str, Any], code: str) -> dict[str, Any]:
        for shipping in order["shippings"]:
            if str(shipping["shippingCode"]) == code:
                return shipping
        raise NsError(404, "Resource_Not_Found", "Resource not found.")

    def get_shipping(self, req: Request) -> Response:
        order = self._order(req.params["orderNumber"])
        return Response(200, self._shipping(order, req.params["shippingCode"]))

    def put_status(self, req: Request) -> Response:
        """One step of a shipping (API.md L112), its body in the accepted shape(s) (L116-L124), in order (L132)."""
        order, step = self._order(req.params["orderNumber"]), req.params["step"]
        shipping = self._shipping(order, req.params["shippingCode"])
        if step not in (*STEPS, "canceled"):
            raise NsError(404, "Resource_Not_Found", f"Unknown status {step[:20]}.")
        fields = status_fields(self._body(req), shipping["shippingCode"], step, self.status_body)
        now = shipping["status"].lower()
        # the answer to an out-of-order transition is UNKNOWN (API.md L133): 409 here. The same step again
        # (an NF-e or tracking corrected) is taken and replaces what was held.
        if step == "canceled":
            allowed = now in ("approved", "canceled")  # canceled from approved only (L132)
        else:
            allowed = now in STEPS and STEPS.index(now) in (STEPS.index(step) - 1, STEPS.index(step))
        if not allowed:
            raise NsError(409, "Invalid_Status_Transition", f"Shipping is {now}; it cannot become {step}.")
        with self.tx():
            shipping["status"] = step.capitalize()
            if step == "invoiced":
                shipping["invoice"] = fields
            elif step in ("shipped", "delivered"):
                shipping["transport"] = {**(shipping.get("transport") or {}), **fields}
            elif step == "canceled":
                shipping["cancellationReason"] = fields.get("reason")
            order["orderStatus"] = shipping["status"] if len(order["shippings"]) == 1 else order["orderStatus"]
            self.store.put("orders", order["orderNumber"], order)
        return Response(200, shipping)

    # -- seeding and admin ---------------------------------------------------------------------------
    def new_order(self, fields: dict[str, Any]) -> dict[str, Any]:
        order = make_order(self, fields)
        self.store.put("orders", order["orderNumber"], order)
        return order

    def admin_new_orders(self, req: Request) -> Response:
        body = req.json() or {}
        if isinstance(body.get("raw"), dict):  # an order exactly as given (hostile shapes for tests)
            self.store.put("orders", str(body["raw"].get("orderNumber")), body["raw"])
            return Response(201, {"items": [body["raw"]]})
        with self.tx():
            made = [self.new_order(body) for _ in range(int(body.get("count", 1)))]
        return Response(201, {"items": made})

    def admin_status(self, req: Request) -> Response:
        """The marketplace moves a shipping (a customer cancels, Netshoes approves a payment)."""
        order = self._order(req.params["orderNumber"])
        shipping = self._shipping(order, req.params["shippingCode"])
        with self.tx():
            shipping["status"] = str(req.json()["status"])
            self.store.put("orders", order["orderNumber"], order)
        return Response(200, shipping)

    def admin_config(self, req: Request) -> Response:
        body = req.json() or {}
        for key in ("client_id", "access_token", "status_body"):
            if key in body:
                setattr(self, key, str(body[key]))
                if key != "status_body":
                    self.set_meta(key, str(body[key]))
        if "rate_per_minute" in body:
            self.rate = self.bucket = float(body["rate_per_minute"])
        return Response(200, {"status_body": self.status_body, "rate_per_minute": self.rate})

    def admin_state(self, req: Request) -> Response:
        return Response(200, {name: [d for _, d in self.store.all(name)]
                              for name in ("products", "prices", "schedules", "stocks", "bu_status")})

    def admin_price(self, req: Request) -> Response:
        """The price a buyer sees at `at`: the schedule in force then (the latest begun), else the base price."""
        sku = req.params["sku"]
        at = at_time(req.arg("at") or iso(datetime.now(UTC)))
        base = self.store.get("prices", sku)
        running = [d for _, d in self.store.find("schedules", "sku", sku)
                   if at_time(d["dateInit"]) <= at < at_time(d["dateEnd"])]
        if running:
            latest = max(running, key=lambda d: (at_time(d["dateInit"]), d["id"]))
            return Response(200, {"sku": sku, "price": latest["priceTo"], "listPrice": latest["priceFrom"]})
        return Response(200, {"sku": sku, "price": base["price"] if base else None,
                              "listPrice": base["price"] if base else None})


def build(db_path: str, *, products: int, seed: int, log_bodies: bool = True, **options: str) -> SimApp:
    return NetshoesSim(db_path, products=products, seed=seed, log_bodies=log_bodies, options=options)
