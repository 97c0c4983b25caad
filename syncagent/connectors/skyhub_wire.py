"""SkyHub's wire format: orders and buyers in, products, prices, stock and status updates out.

Reference: ../shared/contracts/skyhub/API.md (cited by line). Money travels as JSON numbers
(L124): they are read through their decimal text, never through binary floats, and a value that
is not a finite amount with at most two places is a mapping error, as for every channel.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from syncagent.connectors.common import entry_code, entry_quantity, need, opt, order_entries
from syncagent.errors import MappingError
from syncagent.model import (
    CENT,
    Address,
    ChannelCustomer,
    Order,
    OrderEvent,
    OrderItem,
    OrderPayment,
    Price,
    Product,
    StockLevel,
    normalize_document,
    parse_time,
    time_str,
)

# SkyHub payment methods (payments[].method, shape UNKNOWN in API.md L123) -> back office codes;
# `payment_map` adds to and overrides these
PAYMENT_METHODS = {"CREDIT_CARD": "CC", "CREDITCARD": "CC", "DEBIT_CARD": "CD", "BOLETO": "BOL",
                   "BANK_SLIP": "BOL", "PIX": "PIX", "VOUCHER": "VALE", "GIFT_CARD": "VALE"}
# the default status code of each seller move (API.md L126-140); `status_codes` renames them per account
STATUS_CODES = {"invoiced": "order_invoiced", "shipped": "order_shipped", "delivered": "complete",
                "cancelled": "order_canceled"}
# how far along the seller's path each status type is (API.md L138): a move to a type at or behind
# where the order is already is not sent again (L188)
PROGRESS = {"NEW": 0, "APPROVED": 1, "INVOICED": 2, "SHIPPED": 3, "SHIPMENT_EXCEPTION": 3, "DELIVERED": 4}
EVENT_TYPES = {"invoiced": "INVOICED", "shipped": "SHIPPED", "delivered": "DELIVERED", "cancelled": "CANCELED"}
MAX_AMOUNT = Decimal("1e12")
NFE_DIGITS = 44


def amount(value: Any, name: str) -> Decimal:
    """A JSON number as money: finite, at most two places, not absurdly large."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise MappingError("bad_money", f"{name}: expected a number, found {type(value).__name__}")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise MappingError("bad_money", f"{name}: {str(value)[:40]!r} is not a number") from None
    if not number.is_finite() or abs(number) > MAX_AMOUNT or number != number.quantize(CENT):
        raise MappingError("bad_money", f"{name}: {str(value)[:40]!r} is not an amount with two places")
    return number.quantize(CENT)


def status_type(data: Mapping[str, Any]) -> str:
    """The order's status type (NEW, APPROVED, CANCELED…, API.md L118, L126-136), upper case."""
    status = need(data, "status", dict)
    return str(need(status, "type")).upper()


def parse_order(data: dict[str, Any], payment_map: Mapping[str, str] | None = None) -> Order:
    """A queue or order JSON (API.md L116-124) in the hub's terms; its status is the type, lower case."""
    code = need(data, "code")
    state = status_type(data).lower()
    items = []
    for i, entry in order_entries(data):
        sku = entry_code(entry, f"items[{i}]", "id", "the item has no SKU")
        quantity = entry_quantity(entry, f"items[{i}]", "qty")
        price = amount(need(entry, "original_price", (int, float)), f"items[{i}].original_price")
        paid = entry.get("special_price")
        special = amount(paid, f"items[{i}].special_price") if paid is not None else price
        if price < 0 or special < 0:
            raise MappingError("negative_price", f"items[{i}]: original {price} / special {special} is negative")
        discount = max(Decimal("0.00"), (price - special) * quantity).quantize(CENT)
        items.append(OrderItem(sku, quantity, price, discount))
    payments = []
    methods = {**PAYMENT_METHODS, **{str(k).upper(): str(v) for k, v in (payment_map or {}).items()}}
    for i, pay in enumerate(opt(data, "payments", list) or []):
        if not isinstance(pay, dict):
            raise MappingError("bad_type", f"payments[{i}]: expected an object")
        method = str(pay.get("method") or "")
        code_ = methods.get(method.upper())
        if code_ is None:
            raise MappingError("unmapped_payment", f"payment method {method[:40]!r} is not in payment_map")
        parcels = pay.get("parcels")
        installments = parcels if isinstance(parcels, int) and not isinstance(parcels, bool) and parcels > 0 else 1
        payments.append(OrderPayment(code_, amount(need(pay, "value", (int, float)), f"payments[{i}].value"),
                                     installments))
    customer = opt(data, "customer", dict) or {}
    document = _document(customer)
    shipping = data.get("shipping_cost")
    return Order(
        remote_id=code, status=state, items=tuple(items),
        total=amount(need(data, "total_ordered", (int, float)), "total_ordered"), payments=tuple(payments),
        number=code, channel_customer_id=document,
        shipping=amount(shipping, "shipping_cost") if shipping is not None else Decimal("0.00"),
        created_at=parse_time(data.get("placed_at"), "placed_at"), version=str(data.get("updated_at") or ""),
    )


def _document(customer: Mapping[str, Any]) -> str | None:
    """The buyer's CPF/CNPJ (vat_number, digits, API.md L119), punctuation dropped, nothing else."""
    raw = customer.get("vat_number")
    document = normalize_document(str(raw)) if isinstance(raw, str | int) and not isinstance(raw, bool) else ""
    return document or None


def parse_customer(data: Mapping[str, Any]) -> ChannelCustomer | None:
    """The order's buyer, keyed by CPF/CNPJ so the engine binds it to the back office customer."""
    customer = data.get("customer")
    if not isinstance(customer, dict):
        return None
    document = _document(customer)
    if document is None:
        return None
    raw = data.get("shipping_address") if isinstance(data.get("shipping_address"), dict) else None
    address = None
    if raw:
        address = Address(street=_text(raw, "street"), number=_text(raw, "number"),
                          complement=_text(raw, "complement") or None, district=_text(raw, "neighborhood"),
                          city=_text(raw, "city"), state=_text(raw, "region"), zip=_text(raw, "postcode"),
                          country="BR" if raw.get("country") in (None, "", "BR", "BRA") else str(raw["country"]))
    phones = customer.get("phones")
    phone = next((str(p) for p in phones if isinstance(p, str | int)), None) if isinstance(phones, list) else None
    name = customer.get("name")
    return ChannelCustomer(remote_id=document, document=document,
                           name=str(name) if isinstance(name, str) and name.strip() else document,
                           email=customer.get("email") if isinstance(customer.get("email"), str) else None,
                           phone=phone, address=address, version=str(data.get("updated_at") or ""))


def _text(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    return str(value) if isinstance(value, str | int) and not isinstance(value, bool) else None


# -- model -> wire ---------------------------------------------------------------------------------
def _required(value: Any, name: str) -> str:
    if value is None or not str(value).strip():
        raise MappingError("missing_field", f"{name} is required")
    return str(value)


def _measure(value: str | None, name: str) -> float | None:
    if value is None or not str(value).strip():
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise MappingError("bad_value", f"{name}: {str(value)[:20]!r} is not a number") from None
    if not number.is_finite() or number < 0:
        raise MappingError("bad_value", f"{name}: {value} must be a positive number")
    return float(number)


def product_out(p: Product, clock: Callable[[], datetime]) -> dict[str, Any]:
    """The product fields the back office owns (API.md L65-69); price and stock go by their own flows.

    Fields without a value are left out: a PUT is partial (L60), so what is not sent stays as the
    SkyHub panel holds it.
    """
    fields: dict[str, Any] = {
        "sku": _required(p.code, "code"), "name": _required(p.name, "name"), "description": p.name,
        "status": "enabled" if p.active else "disabled", "brand": p.brand, "ean": p.barcode, "nbm": p.ncm,
        "weight": _measure(p.weight_kg, "weight_kg"), "height": _measure(p.height_cm, "height_cm"),
        "width": _measure(p.width_cm, "width_cm"), "length": _measure(p.length_cm, "length_cm"),
    }
    return {k: v for k, v in fields.items() if v is not None}


def price_out(p: Price, clock: Callable[[], datetime]) -> dict[str, Any]:
    """The price in force now (API.md L76-83): SkyHub has no dates, so every boundary sends the change.

    `promotional_price` is the selling price; with no promotion running it is the price itself, so
    a promotion that ended does not stay behind (a PUT keeps what it is not sent, L60).
    """
    eff = p.effective(clock())
    price = eff.price
    promo = eff.promo_price if eff.promo_price is not None and eff.promo_price < price else price
    if price <= 0:
        raise MappingError("bad_value", f"price {price} must be greater than zero on SkyHub (API.md L72)")
    if promo <= 0:
        raise MappingError("bad_value", f"promotional price {promo} must be greater than zero on SkyHub")
    return {"price": float(price), "promotional_price": float(promo)}


def stock_out(s: StockLevel, clock: Callable[[], datetime]) -> dict[str, Any]:
    """One absolute quantity per SKU (API.md L87-90), the sum the engine made of the chosen warehouses."""
    return {"qty": max(0, int(s.available))}


def event_out(event: OrderEvent, status_codes: Mapping[str, str]) -> dict[str, Any]:
    """What each move needs on SkyHub (API.md L142-177); the items of a shipment are read from the order."""
    status = status_codes.get(event.type) or STATUS_CODES.get(event.type)
    if status is None:
        raise MappingError("bad_value", f"unknown event type {event.type!r}")
    payload: dict[str, Any] = {"type": event.type, "status": status}
    if event.type == "invoiced":
        invoice = event.invoice
        if invoice is None or not invoice.key:
            raise MappingError("missing_field", "an invoiced event needs the NF-e access key")
        if not (invoice.key.isdigit() and len(invoice.key) == NFE_DIGITS):
            raise MappingError("bad_invoice_key", f"NF-e key {invoice.key[:50]!r} does not have 44 digits")
        payload["invoice"] = {"key": invoice.key, "issue_date": time_str(invoice.issued_at or event.occurred_at)}
    elif event.type == "shipped":
        shipment = event.shipment
        if shipment is None or not shipment.tracking_code or not shipment.carrier:
            raise MappingError("missing_field", "a shipped event needs the carrier and the tracking code")
        payload["shipment"] = {"code": event.id, "delivered_carrier_date": time_str(shipment.shipped_at
                                                                                   or event.occurred_at),
                               "track": {"code": shipment.tracking_code, "carrier": shipment.carrier,
                                         "url": shipment.tracking_url}}
    elif event.type == "delivered":
        payload["delivered_date"] = time_str(event.delivered_at or event.occurred_at)
    return payload


def body_of_event(payload: Mapping[str, Any], order: Mapping[str, Any]) -> dict[str, Any]:
    """The POST body of one move (API.md L146-177), with the order's items for a shipment (L164)."""
    body: dict[str, Any] = {"status": payload["status"]}
    kind = payload["type"]
    if kind == "invoiced":
        body["invoice"] = payload["invoice"]
    elif kind == "shipped":
        items = [{"sku": str(i.get("id")), "qty": int(i.get("qty") or 0)} for i in order.get("items") or []
                 if isinstance(i, dict) and i.get("id")]
        track = {**payload["shipment"]["track"], "method": str(order.get("shipping_method") or "")}
        body["shipment"] = {**payload["shipment"], "items": items, "track": track}
    elif kind == "delivered":
        body["delivered_date"] = payload["delivered_date"]
    return body
