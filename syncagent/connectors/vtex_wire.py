"""VTEX wire shapes: reading its answers and errors, and mapping orders, buyers and events to and from the model.

Pure functions over VTEX's JSON (no state, no calls), shared by the connector's catalogue writes
and its orders feed: money travels in cents, errors come in three shapes, an order's invoices
live in its package attachment.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC
from decimal import Decimal, InvalidOperation
from typing import Any

from syncagent.connectors.base import Outgoing, PushResult
from syncagent.connectors.common import entry_code, entry_quantity, need, opt, order_entries
from syncagent.errors import MappingError, PermanentError, TransientError
from syncagent.http import HttpClient, HttpResponse
from syncagent.model import (
    CENT,
    Address,
    ChannelCustomer,
    Order,
    OrderEvent,
    OrderItem,
    OrderPayment,
    normalize_document,
    parse_time,
    time_str,
)

MEASUREMENT_UNITS = {"un", "kg", "g", "mg", "m", "m²", "m³", "cm", "cm²", "cm³", "mm", "mm²", "mm³", "oz", "lb",
                     "ft", "ft²", "ft³", "in", "in²", "in³"}
# VTEX payment groups to the back office's payment method codes; `payment_map` overrides them
PAYMENT_GROUPS = {"creditCard": "CC", "debitCard": "CD", "instantPayment": "PIX", "bankInvoice": "BOL",
                  "giftCard": "VALE", "promissory": "DIN", "cash": "DIN"}
NFE_KEY_DIGITS = 44


def lot_handles(items: Sequence[Any]) -> dict[str, dict[str, str]]:
    """orderId -> {eventId: handle} of one feed read (items without an order or a handle skipped)."""
    lot: dict[str, dict[str, str]] = {}
    for item in items:
        if isinstance(item, dict) and item.get("orderId") and item.get("handle"):
            lot.setdefault(str(item["orderId"]), {})[str(item.get("eventId") or item["handle"])] = str(item["handle"])
    return lot


def as_int(value: Any, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise PermanentError(f"{name}: {value!r} is not a VTEX id (an integer)", code="bad_config") from None


def required(value: Any, name: str) -> str:
    if value is None or not str(value).strip():
        raise MappingError("missing_field", f"{name} is required")
    return str(value)


def measure(value: str | None, name: str) -> Decimal:
    """A positive dimension or weight: VTEX needs them for shipping and refuses 0."""
    if value is None or not str(value).strip():
        raise MappingError("missing_field", f"{name} is required by VTEX for shipping")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise MappingError("bad_value", f"{name}: {str(value)[:20]!r} is not a number") from None
    if not number.is_finite() or number <= 0:
        raise MappingError("bad_value", f"{name}: {value} must be greater than 0")
    return number


def merged_body(existing: Mapping[str, Any], want: Mapping[str, Any], owned: Sequence[str]) -> dict[str, Any]:
    """A full-replace body: VTEX's document with the fields we own replaced (read-only ones dropped)."""
    body = {k: v for k, v in existing.items() if k not in ("Id", "CreationDate", "ListStoreId")}
    body.update({k: want[k] for k in owned if k in want})
    return body


def json_of(client: HttpClient, resp: HttpResponse, what: str) -> Any:
    try:
        return resp.json()
    except TransientError as exc:
        raise TransientError(client.redact(f"{client.name}: {what}: {exc}"), status=resp.status,
                             code="bad_response") from None


def error_text(resp: HttpResponse) -> str:
    """VTEX answers errors as {"error": {code, message}}, as {"Message": ...} or as plain text."""
    code, message = resp.error_code(), resp.error_message()
    if code or message:
        return f"{code or resp.status}: {message or 'no message'}"
    text = resp.content[:300].decode("utf-8", "replace").strip().strip('"')
    return f"{resp.status}: {text or 'no message'}"


def refused(client: HttpClient, what: str, resp: HttpResponse) -> Exception:
    """A whole call refused: a 4xx will not heal by retrying, anything else might."""
    text = client.redact(f"{client.name}: {what} answered {error_text(resp)}")
    if 400 <= resp.status < 500:
        return PermanentError(text, status=resp.status, code=resp.error_code() or f"http_{resp.status}")
    return TransientError(text, status=resp.status, code=resp.error_code())


def rejection(key: str, resp: HttpResponse, client: HttpClient, what: str) -> PushResult:
    """One record refused (4xx): quarantine it; anything else fails the step to be retried."""
    if not 400 <= resp.status < 500 or resp.status in (401, 403):
        raise refused(client, what, resp)
    code = {404: "not_found", 409: "conflict", 423: "locked"}.get(resp.status) or resp.error_code() \
        or f"http_{resp.status}"
    return PushResult(key, "rejected", reason_code=code, reason=client.redact(f"{what}: {error_text(resp)}"))


def id_of(client: HttpClient, resp: HttpResponse, what: str) -> int:
    body = json_of(client, resp, what)
    value = body.get("Id") if isinstance(body, dict) else None
    if not isinstance(value, int) or isinstance(value, bool):
        raise TransientError(f"{client.name}: {what} answered without the new Id", code="bad_response")
    return value


def packages(order: Mapping[str, Any]) -> list[dict[str, Any]]:
    attachment = order.get("packageAttachment") or {}
    return [p for p in attachment.get("packages") or [] if isinstance(p, dict)]


def invoice_package(order: Mapping[str, Any], number: str | None) -> dict[str, Any] | None:
    """The sale invoice an event belongs to: the one named, else the latest."""
    sales = [p for p in packages(order) if p.get("type", "Output") == "Output" and p.get("invoiceNumber")]
    if number:
        sales = [p for p in sales if p.get("invoiceNumber") == number] or sales
    return sales[-1] if sales else None


def to_cents(amount: Decimal) -> int:
    return int((amount * 100).quantize(Decimal(1)))


def money(cents: Any, name: str) -> Decimal:
    if not isinstance(cents, int) or isinstance(cents, bool):
        raise MappingError("bad_money", f"{name}: expected an integer of cents, found {type(cents).__name__}")
    return (Decimal(cents) / 100).quantize(CENT)


# -- events ----------------------------------------------------------------------------------------
def event_out(event: OrderEvent) -> Outgoing:
    """What each event needs in VTEX: an NF-e for the invoice, carrier and tracking for the shipment."""
    payload: dict[str, Any] = {"type": event.type}
    if event.type == "invoiced":
        invoice = event.invoice
        if invoice is None or not invoice.number:
            raise MappingError("missing_field", "an invoiced event needs the NF-e number and its 44-digit key")
        if not (invoice.key.isdigit() and len(invoice.key) == NFE_KEY_DIGITS):
            raise MappingError("bad_invoice_key", f"NF-e key {invoice.key[:50]!r} does not have 44 digits")
        payload |= {"invoiceNumber": invoice.number, "invoiceKey": invoice.key,
                    "issuanceDate": time_str(invoice.issued_at or event.occurred_at),
                    "invoiceValue": to_cents(invoice.total) if invoice.total is not None else None,
                    "invoiceUrl": invoice.xml_url}
    elif event.type == "shipped":
        shipment = event.shipment
        if shipment is None or not shipment.carrier or not shipment.tracking_code:
            raise MappingError("missing_field", "a shipped event needs the carrier and the tracking code")
        payload |= {"trackingNumber": shipment.tracking_code, "trackingUrl": shipment.tracking_url,
                    "courier": shipment.carrier,
                    "dispatchedDate": time_str(shipment.shipped_at or event.occurred_at),
                    "invoiceNumber": event.invoice.number if event.invoice else None}
    elif event.type == "delivered":
        moment = (event.delivered_at or event.occurred_at).astimezone(UTC)
        payload |= {"deliveredDate": moment.strftime("%Y-%m-%d %H:%M"),
                    "invoiceNumber": event.invoice.number if event.invoice else None}
    elif event.type != "cancelled":
        raise MappingError("bad_value", f"unknown event type {event.type!r}")
    return Outgoing(required(event.id, "id"), payload, {"order_id": required(event.remote_order_id, "order id")})


def invoice_body(payload: Mapping[str, Any], order: Mapping[str, Any]) -> dict[str, Any]:
    """InvoiceNotification: a sale invoice of every item, at the price the customer paid."""
    items = []
    for item in order.get("items") or []:
        if not isinstance(item, dict):
            continue
        price = item.get("sellingPrice", item.get("price"))
        items.append({"id": str(item.get("id")), "price": int(price or 0), "quantity": int(item.get("quantity") or 0),
                      "description": str(item.get("name") or "")})
    value = payload.get("invoiceValue")
    if value is None:
        value = order.get("value") or 0
    return {"type": "Output", "issuanceDate": payload["issuanceDate"], "invoiceNumber": payload["invoiceNumber"],
            "invoiceValue": str(int(value)), "invoiceKey": payload.get("invoiceKey"),
            "invoiceUrl": payload.get("invoiceUrl"), "courier": "", "trackingNumber": "", "trackingUrl": "",
            "dispatchedDate": None, "items": items}


# -- wire → model ----------------------------------------------------------------------------------
def parse_order(data: dict[str, Any], payment_map: Mapping[str, str] | None = None) -> Order:
    """A VTEX order (GetOrder) in the hub's terms; money comes in cents."""
    payment_map = payment_map or {}
    order_id = need(data, "orderId")
    items = []
    for i, entry in order_entries(data):
        code = entry_code(entry, f"items[{i}]", "refId", "the SKU has no reference code (our code)")
        quantity = entry_quantity(entry, f"items[{i}]")
        price = money(need(entry, "price", int), f"items[{i}].price")
        selling = money(entry.get("sellingPrice", entry["price"]), f"items[{i}].sellingPrice")
        if price < 0 or selling < 0:  # never passed on to the back office as a sale
            raise MappingError("negative_price", f"items[{i}]: price {price} / sellingPrice {selling} is negative")
        discount = max(Decimal("0.00"), (price - selling) * quantity).quantize(CENT)
        items.append(OrderItem(code, quantity, price, discount))
    totals = {t.get("id"): t.get("value") for t in opt(data, "totals", list) or [] if isinstance(t, dict)}
    shipping = money(totals.get("Shipping") or 0, "totals.Shipping")
    payments = []
    for transaction in (opt(data, "paymentData", dict) or {}).get("transactions") or []:
        for i, pay in enumerate((transaction or {}).get("payments") or []):
            if not isinstance(pay, dict):
                raise MappingError("bad_type", f"payments[{i}]: expected an object")
            method = payment_map.get(str(pay.get("paymentSystem"))) or payment_map.get(
                str(pay.get("paymentSystemName"))) or PAYMENT_GROUPS.get(str(pay.get("group")))
            if method is None:
                raise MappingError("unmapped_payment", f"payment {pay.get('paymentSystemName')!r} (system "
                                   f"{pay.get('paymentSystem')}, group {pay.get('group')}) is not in payment_map")
            payments.append(OrderPayment(method, money(need(pay, "value", int), f"payments[{i}].value"),
                                         max(1, int(pay.get("installments") or 1))))
    profile = opt(data, "clientProfileData", dict) or {}
    document = _document(profile)
    return Order(
        remote_id=order_id, status=need(data, "status"), items=tuple(items),
        total=money(need(data, "value", int), "value"), payments=tuple(payments), number=order_id,
        channel_customer_id=document, shipping=shipping,
        created_at=parse_time(data.get("creationDate"), "creationDate"), version=str(data.get("lastChange") or ""),
    )


def _document(profile: Mapping[str, Any]) -> str | None:
    """The buyer's CPF/CNPJ as typed at checkout, punctuation dropped (never other characters: the
    engine refuses a document that is not valid rather than binding some other number)."""
    raw = profile.get("corporateDocument") if profile.get("isCorporate") else profile.get("document")
    document = normalize_document(str(raw or "")) if isinstance(raw, (str, int)) else ""
    return document or None


def parse_customer(data: Mapping[str, Any]) -> ChannelCustomer | None:
    """The order's buyer, keyed by CPF/CNPJ so the engine binds it to the back office customer."""
    profile = data.get("clientProfileData")
    if not isinstance(profile, dict):
        return None
    document = _document(profile)
    if document is None:
        return None
    if profile.get("isCorporate") and profile.get("corporateName"):
        name = str(profile["corporateName"])
    else:
        name = " ".join(str(profile.get(k) or "").strip() for k in ("firstName", "lastName")).strip()
    shipping = data.get("shippingData") if isinstance(data.get("shippingData"), dict) else {}
    raw = shipping.get("address") if isinstance(shipping.get("address"), dict) else None
    address = None
    if raw:
        address = Address(street=raw.get("street"), number=raw.get("number"), complement=raw.get("complement") or None,
                          district=raw.get("neighborhood"), city=raw.get("city"), state=raw.get("state"),
                          zip=raw.get("postalCode"), country="BR" if raw.get("country") in (None, "BRA", "BR")
                          else str(raw.get("country")))
    return ChannelCustomer(remote_id=document, document=document, name=name or document,
                           email=profile.get("email"), phone=profile.get("phone"), address=address,
                           version=str(data.get("lastChange") or ""))

__all__ = ["MEASUREMENT_UNITS", "NFE_KEY_DIGITS", "PAYMENT_GROUPS", "event_out", "invoice_body", "parse_customer",
           "parse_order"]
