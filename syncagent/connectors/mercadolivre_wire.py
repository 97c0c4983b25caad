"""Mercado Livre's wire forms: its error envelope, listings, orders, buyers and fulfilment events.

Reference: ../shared/contracts/mercadolivre/API.md (cited by line). Money travels as JSON numbers
(L16) and is read here into exact two-place decimals; anything else is a quarantined record.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from syncagent import fastjson
from syncagent.connectors.base import Outgoing, PushResult
from syncagent.connectors.common import need, opt
from syncagent.errors import MappingError, PermanentError, TransientError
from syncagent.http import HttpClient, HttpResponse
from syncagent.model import (
    CENT,
    ChannelCustomer,
    Order,
    OrderEvent,
    OrderItem,
    OrderPayment,
    Product,
    normalize_document,
    parse_time,
    time_str,
)

SELLER_SKU = "SELLER_SKU"  # API.md L49: our code, per variation or item
TITLE_MAX = 60
NFE_KEY = re.compile(r"[0-9]{44}")
CH_NFE = re.compile(rb"<chNFe>\s*([0-9]{44})\s*</chNFe>")
# ML payment types to the back office's payment method codes; `payment_map` overrides them
PAYMENT_TYPES = {"credit_card": "CC", "debit_card": "CD", "prepaid_card": "CD", "ticket": "BOL",
                 "bank_transfer": "PIX", "pix": "PIX", "account_money": "DIN", "digital_currency": "DIN"}
ME2_LOGISTICS = ("drop_off", "xd_drop_off", "xd_same_day", "cross_docking", "self_service")  # API.md L124


# -- errors (API.md §1.3 L39-41: {message, error, status, cause[]}; `error` is the machine code) ---------
def ml_error(resp: HttpResponse) -> tuple[str | None, str]:
    """The error code and one line for people: "message [cause code: message; ...]"."""
    try:
        body = fastjson.loads(resp.content)
    except (ValueError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        return None, f"HTTP {resp.status}"
    code = body.get("error") if isinstance(body.get("error"), str) else resp.error_code()
    text = str(body.get("message") or body.get("error_description") or resp.error_message() or f"HTTP {resp.status}")
    causes = []
    for cause in body.get("cause") or [] if isinstance(body.get("cause"), list) else []:
        if isinstance(cause, dict):
            causes.append(": ".join(str(cause[k]) for k in ("code", "message") if cause.get(k)))
        elif isinstance(cause, str):
            causes.append(cause)
    causes = [c for c in causes if c][:5]
    if causes:
        text += " [" + "; ".join(causes) + "]"
    return code, text[:500]


def cause_codes(resp: HttpResponse) -> set[str]:
    """Every code the answer names, in `error` and in its `cause` list (API.md L131: codes come in either)."""
    try:
        body = fastjson.loads(resp.content)
    except (ValueError, UnicodeDecodeError):
        return set()
    if not isinstance(body, dict):
        return set()
    codes = {body["error"]} if isinstance(body.get("error"), str) else set()
    for cause in body.get("cause") or [] if isinstance(body.get("cause"), list) else []:
        if isinstance(cause, dict) and isinstance(cause.get("code"), str):
            codes.add(cause["code"])
        elif isinstance(cause, str):
            codes.add(cause)
    return codes


def refused(client: HttpClient, what: str, resp: HttpResponse) -> Exception:
    """A whole call refused: a 4xx will not heal by retrying, anything else might."""
    code, text = ml_error(resp)
    message = client.redact(f"{client.name}: {what} answered {resp.status}: {code or 'error'}: {text}")
    if 400 <= resp.status < 500:
        return PermanentError(message, status=resp.status, code=code or f"http_{resp.status}")
    return TransientError(message, status=resp.status, code=code)


def rejection(key: str, resp: HttpResponse, client: HttpClient, what: str) -> PushResult:
    """One record refused (a 4xx other than 401/403/429): quarantine it with ML's reason; else fail the step."""
    if not 400 <= resp.status < 500 or resp.status in (401, 403, 429):
        raise refused(client, what, resp)
    code, text = ml_error(resp)
    return PushResult(key, "rejected", reason_code=code or {404: "not_found"}.get(resp.status, f"http_{resp.status}"),
                      reason=client.redact(f"{what}: {text}"))


def json_of(client: HttpClient, resp: HttpResponse, what: str) -> Any:
    try:
        return resp.json()
    except TransientError as exc:
        raise TransientError(client.redact(f"{client.name}: {what}: {exc}"), status=resp.status,
                             code="bad_response") from None


# -- money -----------------------------------------------------------------------------------------------
def ml_money(value: Any, name: str) -> Decimal:
    """A JSON number with at most two decimal places (API.md L16), as an exact Decimal."""
    if value is None:
        raise MappingError("missing_field", f"{name} is required")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MappingError("bad_money", f"{name}: expected a number, found {type(value).__name__}")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise MappingError("bad_money", f"{name}: {value!r} is not an amount") from None
    if not amount.is_finite() or abs(amount) > Decimal("1e12") or amount != amount.quantize(CENT):
        raise MappingError("bad_money", f"{name}: {str(value)[:40]!r} is not an amount with two places")
    return amount.quantize(CENT)


def as_number(amount: Decimal) -> float | int:
    """Money as ML takes it: a JSON number (API.md L16)."""
    return int(amount) if amount == amount.to_integral_value() else float(amount)


# -- listings (API.md §2) ------------------------------------------------------------------------------
def item_fields(p: Product, category: str | None) -> dict[str, Any]:
    """What the back office owns of a listing: title, category, our code, barcode and brand, and its status."""
    if not category:
        raise MappingError("unmapped_category", f"group {p.group_code!r} has no Mercado Livre category: add it to "
                           "category_map or set category_id")
    name = (p.name or "").strip()
    if not name:
        raise MappingError("missing_field", "name is required")
    attributes = [{"id": SELLER_SKU, "value_name": p.code}]
    if p.barcode:
        attributes.append({"id": "GTIN", "value_name": p.barcode})
    if p.brand:
        attributes.append({"id": "BRAND", "value_name": p.brand})
    return {"title": name[:TITLE_MAX], "category_id": category, "attributes": attributes,
            "status": "active" if p.active else "paused"}


def sku_of(entry: Mapping[str, Any]) -> str | None:
    """An item's or a variation's seller SKU: the SELLER_SKU attribute, else seller_custom_field (API.md L49)."""
    for key in ("attributes", "attribute_combinations"):
        for attr in entry.get(key) or []:
            if isinstance(attr, dict) and attr.get("id") == SELLER_SKU and isinstance(attr.get("value_name"), str):
                return str(attr["value_name"])
    custom = entry.get("seller_custom_field")
    return custom if isinstance(custom, str) and custom else None


def find_variation(item: Mapping[str, Any], code: str) -> int | None:
    """The id of the item's variation whose seller SKU is `code` (None: the item itself, or absent)."""
    for variation in item.get("variations") or []:
        if isinstance(variation, dict) and sku_of(variation) == code and isinstance(variation.get("id"), int):
            return int(variation["id"])
    return None


# -- orders (API.md §5.3) --------------------------------------------------------------------------------
def parse_order(data: dict[str, Any], payment_map: Mapping[str, str], document: str | None) -> Order:
    """An ML order in the hub's terms; an item whose listing has no SELLER_SKU cannot be mapped (quarantine)."""
    order_id = need(data, "id", (int, str))
    entries = need(data, "order_items", list)
    if not entries:
        raise MappingError("missing_field", "order_items: an order needs at least one item")
    items = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("item"), dict):
            raise MappingError("bad_type", f"order_items[{i}]: expected an object with an item")
        code = entry["item"].get("seller_sku") or entry["item"].get("seller_custom_field")
        if not isinstance(code, str) or not code.strip():
            raise MappingError("missing_field", f"order_items[{i}].item.seller_sku: the listing "
                               f"{entry['item'].get('id')} has no SELLER_SKU (our code)")
        quantity = need(entry, "quantity", int)
        if quantity < 1 or quantity > 1_000_000:
            raise MappingError("bad_quantity", f"order_items[{i}].quantity: {quantity} is not a quantity")
        unit = ml_money(entry.get("unit_price"), f"order_items[{i}].unit_price")
        full = ml_money(entry["full_unit_price"], f"order_items[{i}].full_unit_price") \
            if entry.get("full_unit_price") is not None else unit
        if unit < 0 or full < 0:
            raise MappingError("negative_price", f"order_items[{i}]: a negative price is not a sale")
        items.append(OrderItem(code, quantity, max(full, unit), max(Decimal("0.00"), (full - unit) * quantity)))
    payments = []
    for i, pay in enumerate(opt(data, "payments", list) or []):
        if not isinstance(pay, dict) or pay.get("status", "approved") != "approved":
            continue
        kind, method_id = str(pay.get("payment_type") or ""), str(pay.get("payment_method_id") or "")
        method = payment_map.get(method_id) or payment_map.get(kind) or PAYMENT_TYPES.get(kind)
        if method is None:
            raise MappingError("unmapped_payment", f"payment {method_id!r} (type {kind!r}) is not in payment_map")
        amount = pay.get("total_paid_amount", pay.get("transaction_amount"))
        installments = pay.get("installments") if isinstance(pay.get("installments"), int) else 1
        payments.append(OrderPayment(method, ml_money(amount, f"payments[{i}].total_paid_amount"),
                                     max(1, installments)))
    pack = data.get("pack_id")
    return Order(
        remote_id=str(order_id), status=need(data, "status"), items=tuple(items),
        total=ml_money(data.get("total_amount"), "total_amount"), payments=tuple(payments), number=str(order_id),
        channel_customer_id=document, notes=f"Mercado Livre pack {pack}" if pack else None,
        created_at=parse_time(data.get("date_created"), "date_created"),
        version=str(data.get("last_updated") or data.get("date_last_updated") or ""),
    )


def parse_buyer(data: Mapping[str, Any], billing: Mapping[str, Any] | None) -> ChannelCustomer | None:
    """The buyer with the CPF/CNPJ of the order's billing info (hidden until payment, API.md L113-115)."""
    info = (billing or {}).get("billing_info") if isinstance((billing or {}).get("billing_info"), dict) else billing
    raw = (info or {}).get("doc_number")
    if not isinstance(raw, str | int):
        return None
    document = normalize_document(str(raw))
    if not document:
        return None
    buyer = data.get("buyer") if isinstance(data.get("buyer"), dict) else {}
    name = " ".join(str(buyer.get(k) or "").strip() for k in ("first_name", "last_name")).strip()
    return ChannelCustomer(remote_id=document, document=document, name=name or str(buyer.get("nickname") or document),
                           email=buyer.get("email") if isinstance(buyer.get("email"), str) else None,
                           version=str(data.get("last_updated") or ""))


# -- fulfilment (API.md §5.4, §5.5) ----------------------------------------------------------------------
def event_out(event: OrderEvent) -> Outgoing:
    """What each event needs: the NF-e's key and where its XML is, or the carrier and tracking code."""
    payload: dict[str, Any] = {"type": event.type}
    if event.type == "invoiced":
        invoice = event.invoice
        if invoice is None or not NFE_KEY.fullmatch(invoice.key or ""):
            raise MappingError("bad_invoice_key", "an invoiced event needs the NF-e's 44-digit key")
        if not invoice.xml_url or not invoice.xml_url.startswith(("https://", "http://")):
            raise MappingError("missing_field", "Mercado Livre takes the signed NF-e XML itself: the event has no "
                               "xml_url to read it from")
        payload |= {"key": invoice.key, "number": invoice.number, "xml_url": invoice.xml_url}
    elif event.type == "shipped":
        shipment = event.shipment
        if shipment is None or not shipment.tracking_code:
            raise MappingError("missing_field", "a shipped event needs the tracking code")
        payload |= {"tracking_number": shipment.tracking_code, "tracking_url": shipment.tracking_url,
                    "carrier": shipment.carrier, "date": time_str(shipment.shipped_at or event.occurred_at)}
    elif event.type == "delivered":
        payload |= {"date": time_str(event.delivered_at or event.occurred_at)}
    elif event.type != "cancelled":
        raise MappingError("bad_value", f"unknown event type {event.type!r}")
    order_id = event.remote_order_id
    if not order_id:
        raise MappingError("missing_field", "the event has no order id")
    return Outgoing(event.id, payload, {"order_id": order_id})


def nfe_xml_problem(xml: bytes, key: str) -> str | None:
    """Why this is not the signed, authorised NF-e of `key` (API.md L125-126), or None."""
    if b"<nfeProc" not in xml[:4096] and b":nfeProc" not in xml[:4096]:
        return "the XML is not an authorised NF-e (no nfeProc element)"
    found = CH_NFE.search(xml)
    if found is None:
        return "the XML has no protocol key (chNFe)"
    if found.group(1).decode() != key:
        return f"the XML is the NF-e {found.group(1).decode()}, not {key}"
    return None
