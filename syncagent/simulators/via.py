"""Via marketplace (Casas Bahia, Ponto, Extra): product load, offers (price per site, stock), orders, trackings.

Reference: ../shared/contracts/via/API.md (each rule cites its line). The reference is thin: the
order shape, the list envelopes, the error body and most status codes are UNKNOWN (API.md L28-31,
L70-78). This simulator fills them in one consistent way, written here and in
docs/connectors/via.md, so the connector can be built and tested; confirm against the portal
Swagger before production:

* lists answer ``{"<name>": [...], "total": n}`` (``orders``, ``sellerItems``);
* an order: ``id``, ``status`` (``NEW``, ``APR``, ``INV``, ``SHP``, ``DLV``, ``CAN``: only SHP and DLV are
  documented), ``purchasedAt``, ``approvedAt``, ``totalAmount``/``freight`` (decimal strings),
  ``customer{…}``, ``payments[]``, ``items[]`` one line per unit (L74-75), ``trackings{type: body}``;
* errors: ``{"error": {"code", "message"}}``; a bad token answers 401 "Auth-token inválido ou inexistente" (L30).

Admin: ``POST /_admin/tokens`` (issue a token, e.g. the old integrator's), ``POST /_admin/tokens/revoke``,
``POST /_admin/offers`` (offers the old integrator created), ``GET /_admin/offers``, ``POST /_admin/loads/approve``,
``GET /_admin/loads``, ``POST /_admin/orders``, ``GET /_admin/orders[/{id}]``, ``POST /_admin/orders/{id}/status``,
``POST /_admin/config`` ({per_minute, manual_approval}).
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from syncagent.simulators import seeddata
from syncagent.simulators.common import HttpError, PerMinute, Request, Response, SimApp
from syncagent.simulators.store import DocStore

DEMO_CLIENT_ID = "via-demo-client"
DEMO_TOKEN = "via-demo-token"  # noqa: S105 - a simulator's demo credential
SITES = ("CB", "PF", "EX")  # API.md L50
PATH_STATUS = {"new": ("NEW",), "approved": ("APR",), "sent": ("SHP",), "canceled": ("CAN",)}  # L67, L76-78
RANK = {"NEW": -1, "APR": 0, "INV": 1, "SHP": 2, "DLV": 3}
PAYMENTS = ["CREDIT_CARD", "PIX", "BOLETO", "DEBIT_CARD"]
IMPORTER = "/api/v4/api-front-importer-v4/jersey/import/itens"
CATEGORIES = {100 + i: name for i, (_code, name, _parent) in enumerate(seeddata.GROUPS)}  # the simulator's tree


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")  # L24: ISO 8601 with offset


def _when(text: Any, name: str) -> datetime:
    try:
        moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        raise HttpError(400, "invalid_field", f"{name} is not an ISO 8601 date-time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _decimal(text: Any, name: str, comma: bool) -> Decimal:
    """L23: v2 prices are strings with a dot, the v4 load strings with a comma."""
    if not isinstance(text, str) or ("." if comma else ",") in text:
        raise HttpError(400, "invalid_price", f"{name} must be a string like {'99,90' if comma else '99.90'}")
    try:
        value = Decimal(text.replace(",", "."))
    except ArithmeticError:
        raise HttpError(400, "invalid_price", f"{name} is not a price") from None
    if not value.is_finite() or value < 0:
        raise HttpError(400, "invalid_price", f"{name} is not a price")
    return value


class ViaSim(SimApp):
    system = "via"

    def __init__(self, db_path: str, *, products: int, seed: int, log_bodies: bool, options: dict[str, str]) -> None:
        super().__init__(db_path, log_bodies=log_bodies)
        self.products, self.seed = products, seed
        self.store = DocStore(self.db, self.lock)
        self.client_id = options.get("client_id", DEMO_CLIENT_ID)
        self.per_minute = int(options.get("per_minute", "0"))
        self.manual_approval = options.get("manual_approval", "0") == "1"
        self._window = PerMinute()
        if self.meta("seeded") is None:
            with self.tx():
                self.store.put("tokens", options.get("access_token", DEMO_TOKEN), {"active": True})
                for _ in range(int(options.get("orders", "10"))):
                    self._new_order({})
                self.set_meta("seeded", "1")
        self._routes()

    def _routes(self) -> None:
        r = self.route
        r("POST", IMPORTER, self.api(self.load))  # L38
        r("GET", IMPORTER + "/statusSku", self.api(self.load_status))  # L39
        r("GET", "/api/v4/api-front-categories-v3/jersey/categories", self.api(self.categories))  # L41
        r("GET", "/api/v2/sellerItems", self.api(self.list_items))  # L42
        r("GET", "/api/v2/sellerItems/{sku}", self.api(self.get_item))  # L42
        r("PUT", "/api/v2/sellerItems/{sku}/prices", self.api(self.put_prices))  # L49
        r("PUT", "/api/v2/sellerItems/{sku}/stock", self.api(self.put_stock))  # L58
        r("PUT", "/api/v2/sellerItems/{sku}/status", self.api(self.put_status))  # L61
        r("GET", "/api/v2/orders/status/{status}", self.api(self.list_orders))  # L67
        r("GET", "/api/v2/orders/{id}", self.api(self.get_order))  # L70
        r("POST", "/api/v2/orders/{id}/trackings/{kind}", self.api(self.tracking))  # L81-88
        r("POST", "/_admin/tokens", self.admin_token)
        r("POST", "/_admin/tokens/revoke", self.admin_revoke)
        r("POST", "/_admin/offers", self.admin_offers)
        r("GET", "/_admin/offers", lambda req: Response(200, {"items": [d for _, d in self.store.all("offers")]}))
        r("POST", "/_admin/loads/approve", self.admin_approve)
        r("GET", "/_admin/loads", lambda req: Response(200, {"items": [d for _, d in self.store.all("loads")]}))
        r("POST", "/_admin/orders", self.admin_create_orders)
        r("GET", "/_admin/orders", lambda req: Response(200, {"items": [d for _, d in self.store.all("orders")]}))
        r("GET", "/_admin/orders/{id}", lambda req: Response(200, self._order(req.params["id"])))
        r("POST", "/_admin/orders/{id}/status", self.admin_order_status)
        r("POST", "/_admin/config", self.admin_config)

    # -- auth, rate limit -------------------------------------------------------------------------
    def api(self, handler: Any) -> Any:
        """L19: `client_id` + `access_token` headers on every call; L32: a revoked token is a permanent 401."""
        def wrapped(req: Request) -> Response:
            token = self.store.get("tokens", req.header("access_token") or "")
            if req.header("client_id") != self.client_id or token is None or not token.get("active"):
                raise HttpError(401, "unauthorized", "Auth-token inválido ou inexistente")  # L30
            self._window.check(self.per_minute, time.time())  # L28-29: 429 past a budget (its size UNKNOWN: configured)
            return handler(req)

        return wrapped

    def _body(self, req: Request) -> dict[str, Any]:
        body = req.json()
        if not isinstance(body, dict):
            raise HttpError(400, "invalid_body", "the body must be a JSON object")
        return body

    # -- catalogue --------------------------------------------------------------------------------
    def load(self, req: Request) -> Response:
        """L38, L44: items are received and become offers after approval (at once unless manual_approval)."""
        items = self._body(req).get("itens")
        if not isinstance(items, list) or not items:
            raise HttpError(400, "invalid_body", "itens must be a non-empty list")
        received = []
        with self.tx():
            for n, item in enumerate(items):
                if not isinstance(item, dict) or not item.get("titulo") or not isinstance(item.get("skus"), list) \
                        or not item["skus"] or item.get("idCategoria") in (None, ""):
                    raise HttpError(400, "invalid_item", f"itens[{n}]: titulo, idCategoria and skus are required")
                if item["idCategoria"] not in CATEGORIES:  # L41: a category of Via's tree
                    raise HttpError(422, "invalid_category", f"itens[{n}]: category {item['idCategoria']} not found")
                for sku in item["skus"]:
                    if not isinstance(sku, dict) or not sku.get("idSkuLojista"):
                        raise HttpError(400, "invalid_item", f"itens[{n}].skus: idSkuLojista is required")
                    for name in ("padrao", "oferta"):
                        if (sku.get("preco") or {}).get(name) is not None:
                            _decimal(sku["preco"][name], f"preco.{name}", comma=True)
                    code = str(sku["idSkuLojista"])
                    load = {"idSkuLojista": code, "item": {k: v for k, v in item.items() if k != "skus"}, "sku": sku,
                            "status": "RECEBIDO"}
                    self.store.put("loads", code, load)
                    if not self.manual_approval:
                        self._approve(code)
                    received.append({"idSkuLojista": code, "status": "RECEBIDO"})
        return Response(202, {"itens": received})

    def categories(self, req: Request) -> Response:
        offset, limit = self._window_params(req)
        rows = [{"id": k, "name": v} for k, v in CATEGORIES.items()]
        return Response(200, {"categories": rows[offset:offset + limit], "total": len(rows)})

    def _approve(self, code: str) -> None:
        load = self.store.get("loads", code)
        if load is None:
            return
        item, sku = load["item"], load["sku"]
        offer = self.store.get("offers", code) or {"skuSellerId": code, "prices": {}, "status": dict.fromkeys(SITES, True),
                                                   "stock": {"quantity": 0, "crossDockingTime": 0}}
        offer.update({"titulo": item.get("titulo"), "descricao": item.get("descricao"), "marca": item.get("marca"),
                      "idCategoria": item.get("idCategoria"), "garantia": item.get("garantia"),
                      "dimensao": sku.get("dimensao"), "ean": next((a.get("valor") for a in sku.get("atributos") or []
                                                                    if isinstance(a, dict) and a.get("idUda") == "EAN"),
                                                                   offer.get("ean"))})
        self.store.put("offers", code, offer)
        self.store.put("loads", code, {**load, "status": "FICHA_INTEGRADA"})  # L39

    def load_status(self, req: Request) -> Response:
        items = []
        for code in req.args("idSkusLojista"):
            load = self.store.get("loads", code)
            items.append({"idSkuLojista": code, "skuStatus": load["status"] if load else "INVALIDO"})
        return Response(200, {"itens": items})

    def _offer(self, sku: str) -> dict[str, Any]:
        offer = self.store.get("offers", sku)
        if offer is None:
            raise HttpError(404, "not_found", f"sellerItem {sku[:40]} not found")  # L42: not yet an offer
        return offer

    def _window_params(self, req: Request) -> tuple[int, int]:
        try:
            offset, limit = int(req.arg("_offset", "0") or 0), int(req.arg("_limit", "50") or 50)
        except ValueError:
            raise HttpError(400, "invalid_param", "_offset and _limit must be integers") from None
        if offset < 0 or not 1 <= limit <= 100:
            raise HttpError(400, "invalid_param", "_limit must be 1..100, _offset ≥ 0")  # L22
        return offset, limit

    def list_items(self, req: Request) -> Response:
        offset, limit = self._window_params(req)
        rows, total = self.store.window("offers", offset, limit, by_key=True)
        return Response(200, {"sellerItems": [d for _, d in rows], "total": total})

    def get_item(self, req: Request) -> Response:
        return Response(200, self._offer(req.params["sku"]))

    def put_prices(self, req: Request) -> Response:
        """L49-54: one site per call; dot decimals; offer ≤ default (assumed)."""
        body = self._body(req)
        site = body.get("site")
        if site not in SITES:
            raise HttpError(400, "invalid_site", f"site must be one of {', '.join(SITES)}")
        default, offer = _decimal(body.get("default"), "default", False), _decimal(body.get("offer"), "offer", False)
        if offer > default:
            raise HttpError(422, "invalid_price", "offer is greater than default")
        with self.tx():
            doc = self._offer(req.params["sku"])
            doc["prices"][site] = {"default": body["default"], "offer": body["offer"]}
            self.store.put("offers", doc["skuSellerId"], doc)
        return Response(200, doc)

    def put_stock(self, req: Request) -> Response:
        """L58: absolute quantity, optional crossDockingTime in days."""
        body = self._body(req)
        quantity, days = body.get("quantity"), body.get("crossDockingTime", 0)
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 0:
            raise HttpError(400, "invalid_quantity", "quantity must be an integer ≥ 0")
        if isinstance(days, bool) or not isinstance(days, int) or days < 0:
            raise HttpError(400, "invalid_field", "crossDockingTime must be an integer ≥ 0")
        with self.tx():
            doc = self._offer(req.params["sku"])
            doc["stock"] = {"quantity": quantity, "crossDockingTime": days}
            self.store.put("offers", doc["skuSellerId"], doc)
        return Response(200, doc)

    def put_status(self, req: Request) -> Response:
        """L61: {"active": bool, "site": …} per site."""
        body = self._body(req)
        if body.get("site") not in SITES or not isinstance(body.get("active"), bool):
            raise HttpError(400, "invalid_body", "active (bool) and site are required")
        with self.tx():
            doc = self._offer(req.params["sku"])
            doc["status"][body["site"]] = body["active"]
            self.store.put("offers", doc["skuSellerId"], doc)
        return Response(200, doc)

    # -- orders -----------------------------------------------------------------------------------
    def _order(self, order_id: str) -> dict[str, Any]:
        doc = self.store.get("orders", order_id)
        if doc is None:
            raise HttpError(404, "not_found", f"order {order_id[:40]} not found")
        return doc

    def list_orders(self, req: Request) -> Response:
        """L67-68: /orders/status/{new|approved|sent|canceled}?purchasedAt=<from>,<to>&_offset&_limit."""
        codes = PATH_STATUS.get(req.params["status"])
        if codes is None:
            raise HttpError(404, "not_found", "unknown status path")
        offset, limit = self._window_params(req)
        lo = hi = None
        if req.arg("purchasedAt"):
            parts = str(req.arg("purchasedAt")).split(",")
            if len(parts) != 2:
                raise HttpError(400, "invalid_param", "purchasedAt must be <from>,<to>")
            lo, hi = (_when(p, "purchasedAt") for p in parts)

        def keep(doc: dict[str, Any]) -> bool:
            bought = _when(doc["purchasedAt"], "purchasedAt")
            return doc["status"] in codes and (lo is None or lo <= bought) and (hi is None or bought <= hi)

        rows, total = self.store.window("orders", offset, limit, keep, by_key=True)
        return Response(200, {"orders": [d for _, d in rows], "total": total})

    def get_order(self, req: Request) -> Response:
        return Response(200, self._order(req.params["id"]))

    def tracking(self, req: Request) -> Response:
        """L81-94: invoice → sent → delivered, sent after the approval; cancel before it is sent."""
        kind = req.params["kind"]
        if kind not in ("invoice", "sent", "delivered", "cancel"):
            raise HttpError(404, "not_found", "unknown tracking")
        body = self._body(req)
        with self.tx():
            doc = self._order(req.params["id"])
            status = doc["status"]
            if kind == "cancel":
                if status in ("SHP", "DLV"):
                    raise HttpError(422, "invalid_status", f"order is {status}: it cannot be cancelled")
                if not isinstance(body.get("items"), list) or not body["items"]:
                    raise HttpError(400, "invalid_body", "items are required")
                doc["status"] = "CAN"
            else:
                if status in ("CAN", "NEW"):
                    raise HttpError(422, "invalid_status", f"order is {status}")
                if not isinstance(body.get("items"), list) or not body["items"]:
                    raise HttpError(400, "invalid_body", "items are required (the order's items)")  # L90
                occurred = _when(body.get("occurredAt"), "occurredAt")
                target = {"invoice": 1, "sent": 2, "delivered": 3}[kind]
                if RANK.get(status, -1) < target - 1:
                    raise HttpError(422, "invalid_status", f"order is {status}: {kind} needs the step before it")
                if kind == "invoice":
                    key = str((body.get("invoice") or {}).get("accessKey") or "")
                    if not (key.isdigit() and len(key) == 44) or not (body.get("invoice") or {}).get("number"):
                        raise HttpError(400, "invalid_invoice", "invoice.number and a 44-digit accessKey are required")
                else:
                    if not body.get("number") and kind == "sent":
                        raise HttpError(400, "invalid_tracking", "number (the tracking code) is required")
                    if occurred <= _when(doc["approvedAt"], "approvedAt"):  # L92
                        raise HttpError(422, "invalid_date", "occurredAt must be after the approval")
                doc["trackings"][kind] = body
                doc["status"] = ("INV", "SHP", "DLV")[target - 1] if RANK.get(status, -1) < target else status
            doc["trackings"][kind] = body
            self.store.put("orders", doc["id"], doc)
        return Response(200, {"id": doc["id"], "status": doc["status"]})

    # -- admin ------------------------------------------------------------------------------------
    def admin_token(self, req: Request) -> Response:
        token = str(self._body(req)["access_token"])
        self.store.put("tokens", token, {"active": True})
        return Response(201, {"access_token": token})

    def admin_revoke(self, req: Request) -> Response:
        """The integrator change of §6: the named token (default: every one) stops at once."""
        body = self._body(req) if req.body else {}
        for key, doc in list(self.store.all("tokens")):
            if body.get("access_token") in (None, key):
                self.store.put("tokens", key, {**doc, "active": False})
        return Response(204)

    def admin_offers(self, req: Request) -> Response:
        """Offers as another integrator left them: {"items": [{"skuSellerId", "ean", "prices", "stock", …}]}."""
        with self.tx():
            for item in self._body(req)["items"]:
                doc = {"prices": {}, "status": dict.fromkeys(SITES, True),
                       "stock": {"quantity": 0, "crossDockingTime": 0}, **item}
                self.store.put("offers", str(item["skuSellerId"]), doc)
                self.store.put("loads", str(item["skuSellerId"]), {"idSkuLojista": item["skuSellerId"], "item": {},
                                                                   "sku": {}, "status": "FICHA_INTEGRADA"})
        return Response(201, {"count": len(self._body(req)["items"])})

    def admin_approve(self, req: Request) -> Response:
        with self.tx():
            for code, load in list(self.store.all("loads")):
                if load["status"] == "RECEBIDO":
                    self._approve(code)
        return Response(204)

    def admin_create_orders(self, req: Request) -> Response:
        body = self._body(req) if req.body else {}
        count = int(body.pop("count", 1))
        with self.tx():
            items = [self._new_order(body) for _ in range(count)]
        return Response(201, {"items": items})

    def admin_order_status(self, req: Request) -> Response:
        with self.tx():
            doc = self._order(req.params["id"])
            doc["status"] = str(self._body(req)["status"])
            self.store.put("orders", doc["id"], doc)
        return Response(200, doc)

    def admin_config(self, req: Request) -> Response:
        body = self._body(req)
        if "per_minute" in body:
            self.per_minute, self._window = int(body["per_minute"]), []
        if "manual_approval" in body:
            self.manual_approval = bool(body["manual_approval"])
        return Response(200, {"per_minute": self.per_minute, "manual_approval": self.manual_approval})

    def _new_order(self, fields: dict[str, Any]) -> dict[str, Any]:
        seq = self.counter("order_seq", 0)
        rng = random.Random(f"{self.seed}:via-order:{seq}")
        fields = dict(fields)
        skus = fields.pop("skus", None)  # the channel SKUs of its items (e.g. another integrator's)
        lines = []
        for n in range(rng.randint(1, 3)):
            for _attempt in range(50):
                index = rng.randint(1, max(1, self.products))
                if seeddata.product(self.seed, index)["active"]:
                    break
            info = seeddata.product(self.seed, index)
            code = skus[n % len(skus)] if skus else info["code"]
            price = Decimal(seeddata.price(self.seed, index)["list_price"])
            for _unit in range(rng.randint(1, 2)):  # L74-75: one line per unit
                lines.append({"skuSellerId": code, "name": info["description"], "salePrice": f"{price:.2f}"})
        freight = Decimal(rng.choice(["0.00", "19.90"]))
        total = sum(Decimal(line["salePrice"]) for line in lines) + freight
        person = seeddata.customer(self.seed, rng.randint(1, seeddata.customer_count(self.products)))
        if rng.random() < 0.4:
            person = {**person, "document": seeddata.cpf(rng), "name": seeddata.person_name(rng),
                      "email": f"cliente{seq}@exemplo.com.br"}
        address = person["address"]
        bought = datetime.now(UTC) - timedelta(hours=rng.randint(2, 48))
        order_id = str(1_100_000_000 + seq)
        doc: dict[str, Any] = {
            "id": order_id, "status": "APR", "purchasedAt": _iso(bought),
            "approvedAt": _iso(bought + timedelta(minutes=30)), "totalAmount": f"{total:.2f}",
            "freight": {"chargedAmount": f"{freight:.2f}"}, "site": rng.choice(SITES),
            "customer": {"name": person["name"], "documentNumber": person["document"], "email": person["email"],
                         "phone": person["phone"],
                         "deliveryAddress": {"street": address["street"], "number": address["number"],
                                             "complement": address["complement"], "neighborhood": address["district"],
                                             "city": address["city"], "state": address["state"],
                                             "zipCode": address["zip"]}},
            "payments": [{"method": rng.choice(PAYMENTS), "value": f"{total:.2f}", "installments": 1}],
            "items": lines, "trackings": {},
        }
        doc.update(fields)
        self.store.put("orders", order_id, doc)
        return doc


def build(db_path: str, *, products: int, seed: int, log_bodies: bool = True, **options: str) -> SimApp:
    return ViaSim(db_path, products=products, seed=seed, log_bodies=log_bodies, options=options)
