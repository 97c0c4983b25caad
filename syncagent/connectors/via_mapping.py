"""Via's wire shapes: offers and loads and tracking bodies from the model, orders and buyers into it.

The order shape is UNKNOWN in ../shared/contracts/via/API.md (L70-75): this reads the shape the
simulator and docs/connectors/via.md write down; confirm it against the portal Swagger.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from syncagent.connectors.base import Outgoing
from syncagent.connectors.common import need, need_money, opt
from syncagent.errors import MappingError
from syncagent.model import (
    Address,
    ChannelCustomer,
    Order,
    OrderEvent,
    OrderItem,
    OrderPayment,
    Price,
    Product,
    StockLevel,
    money_str,
    normalize_document,
    parse_time,
    time_str,
)

PAYMENTS = {"CREDIT_CARD": "CC", "DEBIT_CARD": "CD", "PIX": "PIX", "BOLETO": "BOL", "VOUCHER": "VALE"}


class ViaSettings(Protocol):
    """What the mappers read of the connector: its config and its clock."""

    category_map: dict[str, int]
    category_id: Any
    warranty: Any
    sites: tuple[str, ...]
    clock: Callable[[], datetime]


def _required(value: Any, name: str) -> str:
    if value is None or not str(value).strip():
        raise MappingError("missing_field", f"{name} is required")
    return str(value)


CONTENT = ("titulo", "descricao", "marca", "idCategoria", "garantia", "dimensao")


# -- model → wire ----------------------------------------------------------------------------------
def product_out(conn: ViaSettings, p: Product) -> dict[str, Any]:
    """What a new SKU's load carries (L38) and the active flag of its offer (L61)."""
    category = conn.category_map.get(p.group_code or "", conn.category_id)
    if category is None:
        raise MappingError("unmapped_category", f"group {p.group_code!r} has no Via category: add it to category_map "
                           "or set category_id")
    dims = {"largura": p.width_cm, "altura": p.height_cm, "profundidade": p.length_cm}
    dimensao = {k: float(Decimal(v) / 100) for k, v in dims.items() if v}  # metres
    if p.weight_kg:
        dimensao["peso"] = float(Decimal(p.weight_kg))
    name = _required(p.name, "name")
    return {"sku": _required(p.code, "code"), "titulo": name, "descricao": name, "marca": p.brand,
            "idCategoria": int(category), "garantia": conn.warranty, "dimensao": dimensao, "active": p.active}


def price_out(conn: ViaSettings, p: Price) -> dict[str, Any]:
    """L49, L53: `default` is the list price, `offer` the price in force (the promotion while it runs)."""
    eff = p.effective(conn.clock())
    offer = eff.promo_price if eff.promo_price is not None and eff.promo_price <= eff.price else eff.price
    return {"sku": _required(p.code, "code"), "default": money_str(eff.price), "offer": money_str(offer)}


def stock_out(conn: ViaSettings, s: StockLevel) -> dict[str, Any]:
    return {"sku": _required(s.code, "code"), "quantity": max(0, int(s.available))}


MAPPERS: dict[str, Callable[[ViaSettings, Any], dict[str, Any]]] = {
    "products": product_out, "prices": price_out, "stock": stock_out,
}


def _listed_product(conn: ViaSettings, o: dict[str, Any]) -> dict[str, Any]:
    status = o.get("status") if isinstance(o.get("status"), dict) else {}
    return {"sku": o["skuSellerId"], **{k: o.get(k) for k in CONTENT},
            "active": all(status.get(s, True) for s in conn.sites)}


def _listed_price(conn: ViaSettings, o: dict[str, Any]) -> dict[str, Any]:
    prices = o.get("prices") if isinstance(o.get("prices"), dict) else {}
    first = prices.get(conn.sites[0]) if conn.sites else None
    first = first if isinstance(first, dict) else {}
    return {"sku": o["skuSellerId"], "default": first.get("default"), "offer": first.get("offer")}


def _listed_stock(conn: ViaSettings, o: dict[str, Any]) -> dict[str, Any]:
    stock = o.get("stock") if isinstance(o.get("stock"), dict) else {}
    return {"sku": o["skuSellerId"], "quantity": stock.get("quantity")}


LISTED: dict[str, Callable[[ViaSettings, dict[str, Any]], dict[str, Any]]] = {
    "products": _listed_product, "prices": _listed_price, "stock": _listed_stock,
}


def event_out(event: OrderEvent) -> Outgoing:
    """L85-88: the tracking body of each event, less the items (taken from the order when sent)."""
    payload: dict[str, Any] = {"type": event.type}
    if event.type == "invoiced":
        invoice = event.invoice
        if invoice is None or not invoice.number:
            raise MappingError("missing_field", "an invoiced event needs the NF-e number and its 44-digit key")
        if not (invoice.key.isdigit() and len(invoice.key) == 44):
            raise MappingError("bad_invoice_key", f"NF-e key {invoice.key[:50]!r} does not have 44 digits")
        payload |= {"occurredAt": time_str(event.occurred_at),
                    "invoice": {"number": invoice.number, "serie": invoice.series, "accessKey": invoice.key,
                                "issuedAt": time_str(invoice.issued_at or event.occurred_at)}}
    elif event.type in ("shipped", "delivered"):
        shipment = event.shipment
        if event.type == "shipped" and (shipment is None or not shipment.carrier or not shipment.tracking_code):
            raise MappingError("missing_field", "a shipped event needs the carrier and the tracking code")
        moment = event.delivered_at if event.type == "delivered" and event.delivered_at else \
            (shipment.shipped_at if event.type == "shipped" and shipment and shipment.shipped_at else event.occurred_at)
        payload["occurredAt"] = time_str(moment)
        if shipment is not None:
            payload |= {"sellerDeliveryId": event.order_number, "number": shipment.tracking_code,
                        "url": shipment.tracking_url, "carrier": {"name": shipment.carrier}}
    elif event.type != "cancelled":
        raise MappingError("bad_value", f"unknown event type {event.type!r}")
    return Outgoing(_required(event.id, "id"), payload, {"order_id": _required(event.remote_order_id, "order id")})


# -- wire → model ----------------------------------------------------------------------------------
def _document(data: Mapping[str, Any]) -> str | None:
    customer = data.get("customer") if isinstance(data.get("customer"), dict) else {}
    raw = customer.get("documentNumber")
    document = normalize_document(str(raw)) if isinstance(raw, str | int) and not isinstance(raw, bool) else ""
    return document or None


def parse_order(data: dict[str, Any], payment_map: Mapping[str, str] | None = None) -> Order:
    """An order of a status list; items come one line per unit (L74-75) and are counted by SKU and price."""
    payment_map = payment_map or {}
    order_id = need(data, "id", (str, int))
    lines = need(data, "items", list)
    if not lines:
        raise MappingError("missing_field", "items: an order needs at least one item")
    counts: Counter[tuple[str, Decimal]] = Counter()
    for i, line in enumerate(lines):
        if not isinstance(line, dict):
            raise MappingError("bad_type", f"items[{i}]: expected an object")
        sku = need(line, "skuSellerId")
        price = need_money(line, "salePrice", f"items[{i}].salePrice")
        quantity = opt(line, "quantity", int) or 1
        if price < 0 or not 1 <= quantity <= 1_000_000:
            raise MappingError("bad_value", f"items[{i}]: price {price} / quantity {quantity}")
        counts[(sku, price)] += quantity
    payments = []
    for i, pay in enumerate(opt(data, "payments", list) or []):
        if not isinstance(pay, dict):
            raise MappingError("bad_type", f"payments[{i}]: expected an object")
        method = str(pay.get("method") or "")
        code = payment_map.get(method) or PAYMENTS.get(method)
        if code is None:
            raise MappingError("unmapped_payment", f"payment {method!r} is not in payment_map")
        installments = pay.get("installments")
        payments.append(OrderPayment(code, need_money(pay, "value", f"payments[{i}].value"),
                                     installments if isinstance(installments, int) and installments > 0 else 1))
    freight = data.get("freight") if isinstance(data.get("freight"), dict) else {}
    return Order(
        remote_id=str(order_id), status=str(data.get("_list") or need(data, "status")),
        items=tuple(OrderItem(sku, n, price) for (sku, price), n in counts.items()),
        total=need_money(data, "totalAmount"), payments=tuple(payments), number=str(order_id),
        channel_customer_id=_document(data), shipping=need_money(freight, "chargedAmount", "freight.chargedAmount")
        if freight.get("chargedAmount") is not None else Decimal("0.00"),
        created_at=parse_time(data.get("purchasedAt"), "purchasedAt"), version=str(data.get("status") or ""),
    )


def parse_customer(data: Mapping[str, Any]) -> ChannelCustomer | None:
    document = _document(data)
    if document is None:
        return None
    c = data["customer"]
    a = c.get("deliveryAddress") if isinstance(c.get("deliveryAddress"), dict) else {}
    text = {k: (str(v) if v is not None else None) for k, v in a.items() if isinstance(v, str | int | type(None))}
    address = Address(street=text.get("street"), number=text.get("number"), complement=text.get("complement"),
                      district=text.get("neighborhood"), city=text.get("city"), state=text.get("state"),
                      zip=text.get("zipCode"))
    name = c.get("name") if isinstance(c.get("name"), str) else None
    return ChannelCustomer(remote_id=document, document=document, name=name or document,
                           email=c.get("email") if isinstance(c.get("email"), str) else None,
                           phone=c.get("phone") if isinstance(c.get("phone"), str) else None, address=address,
                           version=str(data.get("status") or ""))
