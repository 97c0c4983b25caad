"""The Mercado Livre simulator's admin routes and seeded orders (for tests and demos; not ML's API)."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

from syncagent.simulators import seeddata
from syncagent.simulators.common import HttpError, Request, Response

if TYPE_CHECKING:
    from syncagent.simulators.auth import TokenIssuer
    from syncagent.simulators.store import DocStore

STATUSES = ("confirmed", "payment_required", "payment_in_process", "partially_paid", "paid", "cancelled")  # L106
FIRST_CATEGORY = "MLB31447"


class MercadoLivreAdmin:
    """Mixed into the simulator: hand out codes, move the clock, make orders and listings, show state."""

    store: DocStore
    tokens: TokenIssuer
    client_id: str
    user_id: str
    seed: int
    products: int
    clock_offset: float
    throttle: int

    # and, from the simulator and SimApp: _body(req), _stamp(), now(), counter(name)

    def new_item_id(self) -> str:
        return f"MLB{3_000_000_000 + self.counter('ml_items')}"

    # -- admin -------------------------------------------------------------------------------------
    def admin_code(self, req: Request) -> Response:
        return Response(200, {"code": self.tokens.grant_code(self.client_id, user=self.user_id)})

    def admin_clock(self, req: Request) -> Response:
        self.clock_offset += float(self._body(req).get("advance", 0))
        return Response(200, {"now": self.now()})

    def admin_throttle(self, req: Request) -> Response:
        self.throttle = int(self._body(req).get("count", 1))
        return Response(200, {"count": self.throttle})

    def admin_create_orders(self, req: Request) -> Response:
        body = self._body(req)
        created = [self._new_order(body) for _ in range(int(body.get("count", 1)))]
        return Response(201, {"items": created})

    def admin_order_status(self, req: Request) -> Response:
        order = self.store.get("orders", req.params["id"])
        status = self._body(req).get("status")
        if order is None or status not in STATUSES:
            raise HttpError(400, "bad_request", "unknown order or status")
        order.update(status=status, last_updated=self._stamp())
        self.store.put("orders", str(order["id"]), order)
        return Response(200, order)

    def admin_patch_item(self, req: Request) -> Response:
        item = self.store.get("items", req.params["id"])
        if item is None:
            raise HttpError(404, "not_found", "no such item")
        item.update(self._body(req))
        self.store.put("items", item["id"], item)
        return Response(200, item)

    def admin_create_item(self, req: Request) -> Response:
        """A listing made by hand in ML (with variations, say), for the connector to find by seller SKU."""
        body = self._body(req)
        item_id = self.new_item_id()
        item = {"id": item_id, "seller_id": int(self.user_id), "sold_quantity": 0, "status": "active",
                "title": "Anúncio", "category_id": FIRST_CATEGORY, "price": 10, "currency_id": "BRL",
                "available_quantity": 1, "attributes": [], "variations": [], **body}
        self.store.put("items", item_id, item)
        return Response(201, item)

    def admin_nfe_xml(self, req: Request) -> Response:
        """The signed nfeProc XML of a key, as a back office keeps it (for tests); ?tpAmb=2 is homologation."""
        key = req.params["key"].removesuffix(".xml")
        amb = req.arg("tpAmb", "1")
        xml = (f'<?xml version="1.0" encoding="UTF-8"?><nfeProc versao="4.00" xmlns="http://www.portalfiscal.inf.br/'
               f'nfe"><NFe><infNFe Id="NFe{escape(key)}"><ide><mod>55</mod><tpAmb>{escape(amb or "1")}</tpAmb></ide>'
               f'</infNFe><Signature/></NFe><protNFe><infProt><tpAmb>{escape(amb or "1")}</tpAmb><chNFe>'
               f'{escape(key)}</chNFe><cStat>100</cStat></infProt></protNFe></nfeProc>')
        return Response(200, raw=xml.encode(), content_type="application/xml")

    def _new_order(self, spec: dict[str, Any]) -> dict[str, Any]:
        number = self.counter("ml_orders")
        order_id = 2_000_000_000 + number
        rng = random.Random(f"{self.seed}:ml-order:{number}")
        lines = spec.get("items") or [{"seller_sku": seeddata.product_code(rng.randrange(max(1, self.products))),
                                       "quantity": rng.randint(1, 3), "unit_price": 99.9}]
        items = [{"item": {"id": line.get("item_id", "MLB0"), "title": "Produto", "variation_id": None,
                           "seller_sku": line.get("seller_sku"), "variation_attributes": []},
                  "quantity": line.get("quantity", 1), "unit_price": line.get("unit_price", 99.9),
                  "full_unit_price": line.get("full_unit_price", line.get("unit_price", 99.9)), "currency_id": "BRL",
                  "sale_fee": 10} for line in lines]
        total = round(sum(i["unit_price"] * i["quantity"] for i in items), 2)
        pack = spec.get("pack_id")
        shipment = next((s for _, s in self.store.all("shipments") if pack and s.get("pack_id") == pack), None)
        if shipment is None:
            mode = spec.get("shipping_mode", "me2")
            shipment = {"id": 4_000_000_000 + self.counter("ml_shipments"), "mode": mode, "pack_id": pack,
                        "logistic_type": spec.get("logistic_type", "drop_off" if mode == "me2" else "default"),
                        "status": "ready_to_ship", "substatus": "invoice_pending", "tracking_number": None,
                        "order_ids": []}
        shipment["order_ids"].append(order_id)
        self.store.put("shipments", str(shipment["id"]), shipment)
        stamp = self._stamp()
        first = rng.choice(seeddata.FIRST_NAMES)
        order = {"id": order_id, "status": spec.get("status", "paid"), "status_detail": None,
                 "date_created": stamp, "date_closed": stamp, "last_updated": stamp, "pack_id": pack,
                 "order_items": items, "total_amount": total, "paid_amount": total, "currency_id": "BRL",
                 "buyer": {"id": 500_000 + number, "nickname": f"COMPRADOR{number}", "first_name": first,
                           "last_name": rng.choice(seeddata.LAST_NAMES)},
                 "payments": [{"id": 9_000_000 + number, "status": "approved", "payment_type": "credit_card",
                               "payment_method_id": "master", "total_paid_amount": total, "installments": 1}],
                 "shipping": {"id": shipment["id"]}, "tags": ["paid"] if spec.get("status", "paid") == "paid" else [],
                 "_buyer_document": spec.get("document") or seeddata.cpf(rng)}
        self.store.put("orders", str(order_id), order)
        return order
