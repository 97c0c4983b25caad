"""Netshoes / Zattini wire forms: orders and shippings in, catalogue, prices, schedules and status bodies out.

Kept apart from the connector so each module stays small. Line numbers (``API.md Lnn``) cite
../shared/contracts/netshoes/API.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from syncagent.connectors.base import Outgoing
from syncagent.connectors.common import need, opt, price_windows
from syncagent.errors import MappingError, PermanentError, TransientError
from syncagent.http import HttpClient, HttpResponse
from syncagent.model import (
    CENT,
    Address,
    BadRecord,
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

# the fulfilment steps of a shipping, in order (API.md L132); canceled stands apart
STEPS = ("approved", "invoiced", "shipped", "delivered")
CANCELED = "canceled"
EVENT_STEP = {"invoiced": "invoiced", "shipped": "shipped", "delivered": "delivered", "cancelled": CANCELED}
BODY_SHAPES = ("flat", "envelope")  # API.md L116-L130: the 2026 flat form, the 2016 `shippings` envelope
NFE_KEY = re.compile(r"[0-9]{44}")
BRT = timezone(timedelta(hours=-3))  # Brazil's legal time (no summer time since 2019): the NF-e issue date
MAX_MONEY = Decimal("1e9")


# -- errors ------------------------------------------------------------------------------------------
def error_text(resp: HttpResponse, client: HttpClient) -> str:
    """`{type, description, notifications}` (API.md L30), or the labels API's `{errors: [...]}` (L33)."""
    try:
        body = resp.json()
    except TransientError:
        body = None
    if isinstance(body, dict) and (body.get("type") or body.get("description")):
        notes = [str(n) for n in body.get("notifications") or [] if n] if isinstance(body.get("notifications"),
                                                                                    list) else []
        text = f"{body.get('type') or resp.status}: {body.get('description') or 'no description'}"
        text += f" [{'; '.join(notes)}]" if notes else ""
    elif isinstance(body, dict) and isinstance(body.get("errors"), list) and body["errors"]:
        first = body["errors"][0] if isinstance(body["errors"][0], dict) else {}
        text = f"{first.get('code') or resp.status}: {first.get('description') or 'no description'}"
    else:
        text = f"{resp.status}: {resp.content[:200].decode('utf-8', 'replace').strip() or 'no message'}"
    return client.redact(text)


def error_type(resp: HttpResponse) -> str | None:
    try:
        body = resp.json()
    except TransientError:
        return None
    return str(body["type"]) if isinstance(body, dict) and body.get("type") else None


def refused(client: HttpClient, what: str, resp: HttpResponse) -> Exception:
    """A whole call refused: a 4xx will not heal by retrying, anything else might."""
    text = f"{client.name}: {what} answered {error_text(resp, client)}"
    if 400 <= resp.status < 500:
        return PermanentError(text, status=resp.status, code=error_type(resp) or f"http_{resp.status}")
    return TransientError(text, status=resp.status, code=error_type(resp))


# -- small readers -----------------------------------------------------------------------------------
def money(value: Any, name: str) -> Decimal:
    """A JSON number of reais (API.md L56, L92): two places at most, not huge, never a boolean."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise MappingError("bad_money", f"{name}: expected a number, found {type(value).__name__}")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise MappingError("bad_money", f"{name}: {str(value)[:30]!r} is not a number") from None
    if not amount.is_finite() or abs(amount) > MAX_MONEY:
        raise MappingError("bad_money", f"{name}: {str(value)[:30]} is not an amount")
    return amount.quantize(CENT)


def required(value: Any, name: str) -> str:
    if value is None or not str(value).strip():
        raise MappingError("missing_field", f"{name} is required")
    return str(value)


def shipping_key(order_number: str, shipping_code: Any) -> str:
    """One shipping is one order of the back office (the unit of fulfilment, API.md L87)."""
    return f"{order_number}-{shipping_code}"


def split_key(key: str) -> tuple[str, str]:
    number, _, code = key.rpartition("-")
    if not number or not code.isdigit():
        raise MappingError("bad_value", f"{key[:60]!r} is not an order number and shipping code")
    return number, code


def business_unit_of(order: Mapping[str, Any]) -> str:
    """`businessUnit` (NS, ZT…), else from `originSite` (ZATTINI), else Netshoes (API.md L83)."""
    unit = order.get("businessUnit")
    if isinstance(unit, str) and unit.strip():
        return unit.strip().upper()
    site = str(order.get("originSite") or "").upper()
    return "ZT" if site.startswith("ZATTINI") else "NS"


# -- orders in ---------------------------------------------------------------------------------------
def parse_shippings(order: Any, business_unit: str, payment_method: str | None,
                    customers: dict[str, ChannelCustomer]) -> list[Any]:
    """The shippings of one Order (API.md L81-L97) as `Order`s, each keyed orderNumber-shippingCode.

    Orders of another business unit are left out: they belong to the channel configured for it.
    A shipping that cannot be read is a BadRecord with its own key; its siblings go on.
    """
    if not isinstance(order, dict):
        return [BadRecord("?", "bad_type", f"expected an object, found {type(order).__name__}", order)]
    number = order.get("orderNumber", order.get("number"))
    if not isinstance(number, str | int) or isinstance(number, bool) or not str(number).strip():
        return [BadRecord("?", "missing_field", "orderNumber is required", order)]
    number = str(number).strip()
    if business_unit_of(order) != business_unit:
        return []
    shippings = order.get("shippings")
    if not isinstance(shippings, list) or not shippings:
        return [BadRecord(number, "missing_field", "shippings: the order has none (read with expand=shippings)",
                          order)]
    records: list[Any] = []
    for i, shipping in enumerate(shippings):
        code = shipping.get("shippingCode") if isinstance(shipping, dict) else None
        if not isinstance(code, int) or isinstance(code, bool):
            records.append(BadRecord(f"{number}-?{i}", "missing_field", f"shippings[{i}].shippingCode: an "
                                     "integer is required", order))
            continue
        key = shipping_key(number, code)
        try:
            records.append(parse_shipping(number, order, shipping, payment_method))
            customer = parse_customer(shipping)
            if customer is not None:
                customers[customer.remote_id] = customer
        except MappingError as exc:
            records.append(BadRecord(key, exc.code, exc.reason, order))
        except (TypeError, ValueError, ArithmeticError, KeyError, AttributeError) as exc:
            records.append(BadRecord(key, "bad_value", str(exc)[:200], order))
    return records


def parse_shipping(number: str, order: Mapping[str, Any], shipping: Mapping[str, Any],
                   payment_method: str | None) -> Order:
    """One shipping: its items at their gross price less discount, plus its freight (API.md L87-L94)."""
    status = need(shipping, "status").strip().lower()  # case varies between sources (API.md L96)
    entries = need(shipping, "items", list)
    if not entries:
        raise MappingError("missing_field", "items: a shipping needs at least one item")
    items = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise MappingError("bad_type", f"items[{i}]: expected an object")
        quantity = need(entry, "quantity", int)
        if not 1 <= quantity <= 100_000:
            raise MappingError("bad_quantity", f"items[{i}].quantity: {quantity} is not a quantity")
        gross = money(need(entry, "grossUnitValue", (int, float, str)), f"items[{i}].grossUnitValue")
        discount = money(entry.get("discountUnitValue") or 0, f"items[{i}].discountUnitValue")
        if gross < 0 or discount < 0 or discount > gross:
            raise MappingError("negative_price", f"items[{i}]: gross {gross} / discount {discount} is not a sale")
        items.append(OrderItem(need(entry, "sku"), quantity, gross, (discount * quantity).quantize(CENT)))
    freight = money(shipping.get("freightAmount") or 0, "freightAmount")
    if freight < 0:
        raise MappingError("negative_price", f"freightAmount {freight} is negative")
    total = (sum((i.unit_price * i.quantity - i.discount for i in items), Decimal("0.00")) + freight).quantize(CENT)
    payments = (OrderPayment(payment_method, total),) if payment_method else ()
    customer = opt(shipping, "customer", dict) or {}
    document = normalize_document(str(customer.get("document") or "")) or None
    moment = order.get("paymentDate") or order.get("orderDate")
    version = "|".join(str(x) for x in (status, order.get("orderStatus", ""), shipping.get("invoice") is not None))
    return Order(remote_id=shipping_key(number, shipping["shippingCode"]), status=status, items=tuple(items),
                 total=total, payments=payments, number=number, channel_customer_id=document, shipping=freight,
                 created_at=parse_time(moment, "orderDate") if isinstance(moment, str) else None, version=version)


def parse_customer(shipping: Mapping[str, Any]) -> ChannelCustomer | None:
    """The buyer of a shipping, keyed by CPF/CNPJ digits so the engine binds it to the back office."""
    customer = shipping.get("customer")
    if not isinstance(customer, dict):
        return None
    document = normalize_document(str(customer.get("document") or ""))
    if not document:
        return None
    raw = customer.get("address") if isinstance(customer.get("address"), dict) else None
    address = None
    if raw:
        address = Address(street=raw.get("street"), number=str(raw["number"]) if raw.get("number") else None,
                          complement=raw.get("complement") or None, district=raw.get("neighborhood"),
                          city=raw.get("city"), state=raw.get("state"), zip=raw.get("postalCode"))
    name = str(customer.get("tradeName") or customer.get("customerName") or customer.get("recipientName") or "")
    return ChannelCustomer(remote_id=document, document=document, name=name.strip() or document,
                           phone=customer.get("cellPhone") or customer.get("landLine") or None, address=address)


# -- catalogue out -----------------------------------------------------------------------------------
def sku_body(p: Product, dimensions: bool = True) -> dict[str, Any]:
    """SkuResource (API.md L43): our code is the SKU; the barcode its EAN."""
    body: dict[str, Any] = {"sku": required(p.code, "code"), "name": required(p.name, "name"),
                            "description": p.name, "eanIsbn": p.barcode or None}
    if dimensions:
        for field, value in (("height", p.height_cm), ("width", p.width_cm), ("depth", p.length_cm),
                             ("weight", p.weight_kg)):
            body[field] = float(Decimal(value)) if value not in (None, "") else None
    return body


def product_out(p: Product, *, product_id: str, department: str, product_type: str) -> dict[str, Any]:
    """What one SKU needs in Netshoes: its product (the family, API.md L40, L48), its body, its BU status."""
    brand = p.brand
    if not brand:
        raise MappingError("missing_field", "brand is required by Netshoes")
    return {"productId": product_id, "product": {"department": department, "productType": product_type,
                                                 "brand": brand}, "sku": sku_body(p), "active": p.active}


def price_out(p: Price, now: datetime) -> dict[str, Any]:
    """Base price in force now (API.md L56) plus one price schedule per promotion or scheduled change ahead (L57).

    A schedule carries "de" (priceFrom, the list price then) and "por" (priceTo, what is charged);
    a scheduled list price change is a schedule whose two prices are the new list price, so the
    channel switches at the boundary itself, and the base price follows when the engine re-sends
    the price at that boundary. The payload changes only when a boundary passes.
    """
    base = p.list_price_at(now)
    schedules: list[dict[str, Any]] = []
    for start, end in price_windows(p, now):
        eff = p.effective(start)
        if eff.promo_price is not None:
            de, por = eff.price, eff.promo_price
        elif eff.price != base or eff.price != p.list_price:  # a scheduled list price stays listed once begun
            de, por = eff.price, eff.price
        else:
            continue
        entry = {"priceFrom": float(de), "priceTo": float(por), "dateInit": time_str(start), "dateEnd": time_str(end)}
        last = schedules[-1] if schedules else None
        if last and (last["priceFrom"], last["priceTo"], last["dateEnd"]) == \
                (entry["priceFrom"], entry["priceTo"], entry["dateInit"]):
            last["dateEnd"] = entry["dateEnd"]
        else:
            schedules.append(entry)
    return {"sku": required(p.code, "code"), "price": float(base), "schedules": schedules}


def schedule_key(entry: Mapping[str, Any]) -> tuple[Decimal, Decimal, datetime | None, datetime | None]:
    """A schedule as compared with what Netshoes lists (numbers and instants, whatever their spelling)."""
    def when(value: Any) -> datetime | None:
        try:
            return parse_time(value, "date") if isinstance(value, str) else None
        except MappingError:
            return None
    return (money(entry.get("priceFrom") or 0, "priceFrom"), money(entry.get("priceTo") or 0, "priceTo"),
            when(entry.get("dateInit")), when(entry.get("dateEnd")))


def stock_out(level: StockLevel) -> dict[str, Any]:
    """StockResource (API.md L63): absolute, one level per SKU (no warehouse dimension, L65)."""
    return {"sku": required(level.code, "code"), "available": max(0, int(level.available))}


# -- fulfilment out ----------------------------------------------------------------------------------
def _nfe_date(moment: datetime) -> str:
    return moment.astimezone(BRT).date().isoformat()


def event_out(event: OrderEvent, shape: str, cancellation_reason: int | None) -> Outgoing:
    """The status update of one shipping (API.md L110-L124) in the configured body shape.

    `data` is what the connector compares with the shipping Netshoes holds (already there: not sent again).
    """
    step = EVENT_STEP.get(event.type)
    if step is None:
        raise MappingError("bad_value", f"unknown event type {event.type!r}")
    number, code = split_key(required(event.remote_order_id, "order id"))
    data: dict[str, Any] = {}
    if step == "invoiced":
        invoice = event.invoice
        if invoice is None or not invoice.number:
            raise MappingError("missing_field", "an invoiced event needs the NF-e number, series and 44-digit key")
        if not NFE_KEY.fullmatch(invoice.key or ""):
            raise MappingError("bad_invoice_key", f"NF-e key {str(invoice.key)[:50]!r} does not have 44 digits")
        issued = invoice.issued_at or event.occurred_at
        data = {"number": invoice.number, "line": invoice.series or "1", "key": invoice.key}
        flat = {**data, "issueDate": _nfe_date(issued), "volume": 1}
        wrapped = {"invoice": {"number": int(invoice.number) if invoice.number.isdigit() else invoice.number,
                               "line": int(data["line"]) if str(data["line"]).isdigit() else data["line"],
                               "accessKey": invoice.key, "issueDate": time_str(issued)}}
    elif step == "shipped":
        shipment = event.shipment
        if shipment is None or not shipment.carrier or not shipment.tracking_code:
            raise MappingError("missing_field", "a shipped event needs the carrier and the tracking code")
        data = {"carrier": shipment.carrier, "trackingNumber": shipment.tracking_code}
        flat = {**data, "trackingLink": shipment.tracking_url}
        wrapped = {"transport": {**data, "trackingLink": shipment.tracking_url,
                                 "shipDate": time_str(shipment.shipped_at or event.occurred_at)}}
    elif step == "delivered":
        moment = time_str(event.delivered_at or event.occurred_at)
        flat, wrapped = {"deliveryDate": moment}, {"transport": {"deliveryDate": moment}}
    else:
        if cancellation_reason is None:
            raise MappingError("no_cancellation_reason", "set the channel's cancellation_reason (a code of GET "
                               "/orders/cancellation-reasons) to cancel shippings on Netshoes")
        flat = {"reasonCancellationCode": cancellation_reason, "canceledBy": "seller"}
        wrapped = {"cancellationReason": cancellation_reason}
    body = flat if shape == "flat" else {"shippings": [{"shippingCode": int(code), **wrapped}]}
    return Outgoing(required(event.id, "id"), {"step": step, "body": body, "data": data},
                    {"order_id": number, "shipping": code})


def held_data(step: str, shipping: Mapping[str, Any]) -> dict[str, Any]:
    """What Netshoes holds of a step on a shipping, in the terms of `event_out`'s data."""
    if step == "invoiced":
        invoice = shipping.get("invoice") if isinstance(shipping.get("invoice"), dict) else {}
        return {"number": str(invoice.get("number") or ""), "line": str(invoice.get("line") or ""),
                "key": str(invoice.get("accessKey") or invoice.get("key") or "")}
    if step == "shipped":
        transport = shipping.get("transport") if isinstance(shipping.get("transport"), dict) else {}
        return {"carrier": transport.get("carrier"), "trackingNumber": transport.get("trackingNumber")}
    return {}


def same_data(want: Mapping[str, Any], held: Mapping[str, Any]) -> bool:
    return all(str(held.get(k) or "") == str(v or "") for k, v in want.items())

