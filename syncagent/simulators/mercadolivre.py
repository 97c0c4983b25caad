"""Simulator of one Mercado Livre (MLB) seller: OAuth, listings, orders search, shipments, NF-e upload.

Every rule cites the line of ../shared/contracts/mercadolivre/API.md it implements. As strict as
the reference: authorization-code tokens with 6-hour access tokens and single-use refresh tokens
that rotate (400 `invalid_grant` on reuse), errors as `{message, error, status, cause[]}`, listings
whose title is locked after the first sale, offset paging of the orders search, shipments read
only with `x-format-new: true`, the NF-e upload only as the signed production `nfeProc` XML while
the shipment waits for it, one NF-e per shipment, tracking only on ME1/custom shipments, 429 in
ML's shape. State lives in the DocStore. Admin routes under /_admin hand out authorization codes,
expire or revoke tokens, create orders, change statuses, throttle, and show what ML holds.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from syncagent.simulators.auth import TokenIssuer
from syncagent.simulators.common import HttpError, Request, Response, SimApp
from syncagent.simulators.mercadolivre_admin import MercadoLivreAdmin
from syncagent.simulators.store import DocStore

DEMO_CLIENT_ID = "1234567890123456"
DEMO_CLIENT_SECRET = "ml-demo-secret"  # noqa: S105 - a simulator's demo credential, not a real secret
DEMO_USER = "123456789"
CATEGORIES = ("MLB31447", "MLB1276", "MLB1430", "MLB3530", "MLB1246", "MLB1574")  # accepted category ids
MAX_LIMIT = 50  # L96-97: the connector keeps limit <= 50; more is refused here
BRT = timezone(timedelta(hours=-3))
CHNFE = re.compile(rb"<chNFe>\s*([0-9]{44})\s*</chNFe>")


class MlError(HttpError):
    """ML's error envelope (L39): {message, error, status, cause[]}."""

    def __init__(self, status: int, code: str, message: str, causes: list[dict[str, Any]] | None = None) -> None:
        super().__init__(status, code, message)
        self.causes = causes or []

    def response(self) -> Response:
        return Response(self.status, {"message": self.message, "error": self.code, "status": self.status,
                                      "cause": self.causes}, dict(self.headers))


def _invalid(field: str, message: str) -> MlError:
    return MlError(400, "validation_error", f"Validation error: {message}",
                   [{"code": f"item.{field}.invalid", "message": message, "type": "error", "references": [field]}])


class MercadoLivreSim(MercadoLivreAdmin, SimApp):
    system = "mercadolivre"

    def __init__(self, db_path: str, *, products: int, seed: int, log_bodies: bool, options: dict[str, str]) -> None:
        super().__init__(db_path, log_bodies=log_bodies)
        self.seed, self.products = seed, products
        self.client_id = options.get("client_id", DEMO_CLIENT_ID)
        self.user_id = options.get("user_id", DEMO_USER)
        self.clock_offset = 0.0
        self.throttle = 0
        self.store = DocStore(self.db, self.lock)
        self.tokens = TokenIssuer(self, {self.client_id: options.get("client_secret", DEMO_CLIENT_SECRET)},
                                  ttl=21600, rotate_refresh=True,  # L25-26: 6 h, single use
                                  grants=("authorization_code", "refresh_token"), clock=self.now,
                                  error_body=lambda status, code, text: {"message": text, "error": code,
                                                                         "status": status, "cause": []})  # L27
        r = self.route
        r("POST", "/oauth/token", self.token)  # L23-24
        r("GET", "/users/me", self.me)
        r("GET", "/users/{user}/items/search", self.search_items)  # L50
        r("POST", "/items", self.create_item)  # L47
        r("GET", "/items/{id}", self.get_item)
        r("PUT", "/items/{id}", self.put_item)  # L48, L51, L55, L65
        r("GET", "/orders/search", self.search_orders)  # L92-97
        r("GET", "/orders/{id}", self.get_order)  # L101
        r("GET", "/orders/{id}/billing_info", self.billing_info)  # L113
        r("GET", "/shipments/{id}", self.get_shipment)  # L110
        r("POST", "/shipments/{id}/invoice_data", self.upload_invoice)  # L125
        r("GET", "/shipments/{id}/invoice_data", self.get_invoice)  # L128
        r("POST", "/shipments/{id}/seller_notifications", self.seller_notification)  # L141
        r("POST", "/_admin/auth/code", self.admin_code)
        r("POST", "/_admin/tokens/expire", lambda req: self._done(self.tokens.expire_all()))
        r("POST", "/_admin/tokens/revoke", lambda req: self._done(self.tokens.revoke_all()))
        r("GET", "/_admin/tokens/refresh", lambda req: Response(200, {"items": self.tokens.live_refresh_tokens()}))
        r("POST", "/_admin/clock", self.admin_clock)
        r("POST", "/_admin/throttle", self.admin_throttle)
        r("POST", "/_admin/orders", self.admin_create_orders)
        r("POST", "/_admin/orders/{id}/status", self.admin_order_status)
        r("GET", "/_admin/items", lambda req: Response(200, {"items": [d for _, d in self.store.all("items")]}))
        r("PATCH", "/_admin/items/{id}", self.admin_patch_item)
        r("POST", "/_admin/items", self.admin_create_item)
        r("GET", "/_admin/shipments", lambda req: Response(200, {"items": [d for _, d in self.store.all("shipments")]}))
        r("GET", "/_admin/nfe/{key}", self.admin_nfe_xml)
        for _ in range(int(options.get("orders", "0") or 0) if self.store.count("orders") == 0 else 0):
            self._new_order({"shipping_mode": options.get("shipping_mode", "me2")})

    def now(self) -> float:
        return time.time() + self.clock_offset

    def _stamp(self) -> str:
        """ML's dates: ISO 8601 with an offset (L16), in Brasília time."""
        return datetime.fromtimestamp(self.now(), BRT).isoformat(timespec="milliseconds")

    def token(self, req: Request) -> Response:
        """The OAuth endpoint; its answer names the seller (L25: user_id)."""
        resp = self.tokens.token(req)
        if resp.status == 200 and isinstance(resp.body, dict):
            resp.body["user_id"] = int(self.user_id)
        return resp

    def _done(self, _: Any) -> Response:
        return Response(204)

    def dispatch(self, req: Request) -> Response:
        if self.throttle > 0 and not req.path.startswith("/_admin"):
            self.throttle -= 1  # L33-35: 429 in ML's shape; Retry-After is UNKNOWN, so none is sent
            return MlError(429, "too_many_requests", "Too Many Requests").response()
        return super().dispatch(req)

    def _user(self, req: Request) -> str:
        """L15: a live Bearer token on every call (401 `invalid_token` otherwise, L29)."""
        try:
            return self.tokens.require(req)
        except HttpError as exc:
            raise MlError(401, "invalid_token", exc.message) from None

    def _body(self, req: Request) -> dict[str, Any]:
        try:
            body = req.json()
        except HttpError:
            raise MlError(400, "bad_request", "the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise MlError(400, "bad_request", "the body must be a JSON object")
        return body

    # -- users and listings ------------------------------------------------------------------------
    def me(self, req: Request) -> Response:
        return Response(200, {"id": int(self._user(req)), "nickname": "LOJA_DEMO", "site_id": "MLB"})

    def search_items(self, req: Request) -> Response:
        if self._user(req) != req.params["user"]:
            raise MlError(403, "forbidden", "the token is not this user's")
        sku = req.arg("seller_sku") or ""
        found = [key for key, item in self.store.all("items") if sku in _skus(item)]
        return Response(200, {"seller_id": self.user_id, "results": found,
                              "paging": {"total": len(found), "offset": 0, "limit": 50}})

    def create_item(self, req: Request) -> Response:
        self._user(req)
        body = self._body(req)
        for field, kind in (("title", str), ("category_id", str), ("currency_id", str), ("buying_mode", str),
                            ("listing_type_id", str), ("condition", str)):
            if not isinstance(body.get(field), kind) or not body[field]:
                raise _invalid(field, f"{field} is required")  # L47
        if body["category_id"] not in CATEGORIES:
            raise _invalid("category_id", f"category {body['category_id']} does not exist")
        if body["currency_id"] != "BRL":
            raise _invalid("currency_id", "MLB sells in BRL")
        _check_item_numbers(body, create=True)
        if len(body["title"]) > 60:
            raise _invalid("title", "the title has more than 60 characters")
        item_id = self.new_item_id()
        item = {"id": item_id, "seller_id": int(self.user_id), "sold_quantity": 0, "variations": [],
                "status": body.get("status") if body.get("status") in ("active", "paused") else "active",
                **{k: body[k] for k in ("title", "category_id", "price", "currency_id", "available_quantity",
                                        "buying_mode", "listing_type_id", "condition")},
                "attributes": body.get("attributes") or [], "pictures": body.get("pictures") or []}
        self.store.put("items", item_id, item)
        return Response(201, item)

    def _item(self, req: Request) -> dict[str, Any]:
        self._user(req)
        item = self.store.get("items", req.params["id"])
        if item is None:
            raise MlError(404, "not_found", f"Item with id {req.params['id']} not found")
        return item

    def get_item(self, req: Request) -> Response:
        return Response(200, self._item(req))

    def put_item(self, req: Request) -> Response:
        item, body = self._item(req), self._body(req)
        if item["status"] == "closed":
            raise MlError(400, "item.closed", "the item is closed")  # L51: closed is final
        if "title" in body and body["title"] != item["title"] and item["sold_quantity"] > 0:
            raise MlError(400, "validation_error", "Validation error", [{  # L48
                "code": "item.title.not_modifiable", "message": "title is not modifiable after the first sale"}])
        if "status" in body and body["status"] not in ("active", "paused", "closed"):
            raise _invalid("status", f"unknown status {body['status']!r}")
        _check_item_numbers(body, create=False)
        for change in body.get("variations") or []:  # L55, L65: per variation
            match = next((v for v in item["variations"] if isinstance(change, dict) and v["id"] == change.get("id")),
                         None)
            if match is None:
                raise _invalid("variations", f"variation {change.get('id') if isinstance(change, dict) else change} "
                               "is not in the item")
            _check_item_numbers(change, create=False)
            match.update({k: change[k] for k in ("price", "available_quantity") if k in change})
        item.update({k: body[k] for k in ("title", "status", "price", "available_quantity") if k in body})
        self.store.put("items", item["id"], item)
        return Response(200, item)

    # -- orders -------------------------------------------------------------------------------------
    def search_orders(self, req: Request) -> Response:
        user = self._user(req)
        if req.arg("seller") != user:
            raise MlError(403, "forbidden", "seller must be the token's user")
        try:
            offset, limit = int(req.arg("offset", "0") or 0), int(req.arg("limit", "50") or 50)
        except ValueError:
            raise MlError(400, "bad_request", "offset and limit must be integers") from None
        if limit > MAX_LIMIT or limit < 1 or offset < 0:
            raise MlError(400, "bad_request", f"limit must be 1..{MAX_LIMIT}")
        bounds = [_when(req.arg(f"order.date_last_updated.{e}")) for e in ("from", "to")]
        status = req.arg("order.status")

        def keep(order: dict[str, Any]) -> bool:
            updated = _when(order["last_updated"])
            assert updated is not None
            return (status is None or order["status"] == status) and (bounds[0] is None or updated >= bounds[0]) \
                and (bounds[1] is None or updated < bounds[1])

        orders = sorted((d for _, d in self.store.all("orders") if keep(d)), key=lambda o: o["date_created"],
                        reverse=req.arg("sort", "date_desc") == "date_desc")
        return Response(200, {"query": None, "results": [_public(o) for o in orders[offset:offset + limit]], "sort": {"id": "date_desc"},
                              "available_sorts": [{"id": "date_asc"}], "filters": [],
                              "paging": {"total": len(orders), "offset": offset, "limit": limit}, "display": "complete"})

    def _order(self, req: Request) -> dict[str, Any]:
        self._user(req)
        order = self.store.get("orders", req.params["id"])
        if order is None:
            raise MlError(404, "not_found", f"Order {req.params['id']} not found")
        return order

    def get_order(self, req: Request) -> Response:
        return Response(200, _public(self._order(req)))

    def billing_info(self, req: Request) -> Response:
        order = self._order(req)
        if order["status"] != "paid":  # L115: hidden until payment
            raise MlError(403, "forbidden", "billing info is available once the order is paid")
        return Response(200, {"billing_info": {"doc_type": "CPF", "doc_number": order["_buyer_document"]}})

    # -- shipments ---------------------------------------------------------------------------------
    def _shipment(self, req: Request) -> dict[str, Any]:
        self._user(req)
        shipment = self.store.get("shipments", req.params["id"])
        if shipment is None:
            raise MlError(404, "not_found", f"Shipment {req.params['id']} not found")
        return shipment

    def get_shipment(self, req: Request) -> Response:
        shipment = self._shipment(req)
        if (req.header("x-format-new") or "").lower() != "true":  # L110
            raise MlError(400, "bad_request", "this simulator answers only the new format (x-format-new: true)")
        return Response(200, {k: v for k, v in shipment.items() if k != "invoice"})

    def upload_invoice(self, req: Request) -> Response:
        shipment = self._shipment(req)
        if req.arg("siteId") != "MLB":
            raise MlError(400, "bad_request", "siteId=MLB is required")  # L125
        if not (req.header("content-type") or "").startswith("application/xml"):
            raise MlError(400, "bad_request", "Content-Type must be application/xml")  # L125
        found = CHNFE.search(req.body)
        if b"nfeProc" not in req.body[:4096] or found is None:
            raise MlError(400, "invalid_invoice", "the body must be the signed, authorised nfeProc XML")  # L125
        if b"<mod>55</mod>" not in req.body or b"<tpAmb>1</tpAmb>" not in req.body:
            raise MlError(400, "invalid_invoice", "only production NF-e of model 55 are accepted")  # L126
        key = found.group(1).decode()
        if shipment.get("invoice"):  # L131: one NF-e per shipment
            code = "duplicated_fiscal_key" if shipment["invoice"]["fiscal_key"] == key else \
                "shipment_invoice_already_saved"
            raise MlError(400, code, "the shipment already has an invoice", [{"code": code, "message": code}])
        if any(s.get("invoice", {}) and s["invoice"]["fiscal_key"] == key for _, s in self.store.all("shipments")):
            raise MlError(400, "duplicated_fiscal_key", "this fiscal key was used on another shipment")
        if shipment["mode"] == "me2" and (shipment["status"], shipment["substatus"]) != ("ready_to_ship",
                                                                                          "invoice_pending"):
            raise MlError(400, "invalid_shipment_status", "the shipment is not waiting for its invoice")  # L123
        shipment["invoice"] = {"fiscal_key": key, "invoice_serie": "1", "invoice_number": key[25:34].lstrip("0"),
                               "status": "authorized"}
        if shipment["substatus"] == "invoice_pending":
            shipment["substatus"] = "ready_to_print"  # L127: the label is released
        self.store.put("shipments", str(shipment["id"]), shipment)
        return Response(201, shipment["invoice"])

    def get_invoice(self, req: Request) -> Response:
        shipment = self._shipment(req)
        if not shipment.get("invoice"):
            raise MlError(404, "not_found", "the shipment has no invoice")
        return Response(200, shipment["invoice"])  # L128

    def seller_notification(self, req: Request) -> Response:
        shipment, body = self._shipment(req), self._body(req)
        if shipment["mode"] == "me2":  # L139-140: ML owns ME2 tracking
            raise MlError(400, "invalid_operation", "Mercado Envios shipments take no seller notifications")
        status = body.get("status")
        if status not in ("shipped", "delivered", "not_delivered"):  # L142
            raise MlError(400, "bad_request", f"status {status!r} is not shipped, delivered or not_delivered")
        if status == "shipped" and not body.get("tracking_number"):
            raise MlError(400, "bad_request", "tracking_number is required to ship")
        if status == "delivered" and shipment["status"] != "shipped":
            raise MlError(400, "invalid_shipment_status", "only a shipped shipment can be delivered")
        shipment.update(status=status, substatus=None, tracking_number=body.get("tracking_number")
                        or shipment.get("tracking_number"), tracking_url=body.get("tracking_url"))
        self.store.put("shipments", str(shipment["id"]), shipment)
        return Response(201, {"status": status})


def _when(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise MlError(400, "bad_request", f"{text[:40]!r} is not an ISO date") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _public(order: dict[str, Any]) -> dict[str, Any]:
    """An order as ML shows it (the simulator's own fields, named with a leading _, left out)."""
    return {k: v for k, v in order.items() if not k.startswith("_")}


def _skus(item: dict[str, Any]) -> set[str]:
    """Every seller SKU an item holds: its own and its variations' (L49)."""
    found = set()
    for entry in [item, *item.get("variations", [])]:
        for attr in entry.get("attributes", []) + entry.get("attribute_combinations", []):
            if attr.get("id") == "SELLER_SKU" and attr.get("value_name"):
                found.add(attr["value_name"])
        if entry.get("seller_custom_field"):
            found.add(entry["seller_custom_field"])
    return found


def _check_item_numbers(body: dict[str, Any], *, create: bool) -> None:
    price, quantity = body.get("price"), body.get("available_quantity")
    if (create or price is not None) and (isinstance(price, bool) or not isinstance(price, int | float)
                                          or price <= 0):
        raise _invalid("price", "price must be a number greater than 0")
    if (create or quantity is not None) and (isinstance(quantity, bool) or not isinstance(quantity, int)
                                             or quantity < 0):
        raise _invalid("available_quantity", "available_quantity must be a whole number, 0 or more")


def build(db_path: str, *, products: int, seed: int, log_bodies: bool = True, **options: str) -> SimApp:
    return MercadoLivreSim(db_path, products=products, seed=seed, log_bodies=log_bodies, options=options)


__all__ = ["MercadoLivreSim", "build"]
