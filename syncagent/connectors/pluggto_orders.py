"""Plugg.to orders as the engine's model: get-one-order (../shared/contracts/pluggto/API.md L112-124) and its payer.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from syncagent.connectors.common import need, opt
from syncagent.errors import MappingError
from syncagent.model import (
    CENT,
    Address,
    ChannelCustomer,
    Order,
    OrderItem,
    OrderPayment,
    normalize_document,
    parse_time,
)

PAYMENT_TYPES = {"credit": "CC", "credit_card": "CC", "debit": "CD", "debit_card": "CD", "pix": "PIX",
                 "boleto": "BOL", "ticket": "BOL", "bank_billet": "BOL", "voucher": "VALE", "account_money": "DIN"}
MAX_MONEY = Decimal("1e12")




# -- wire → model ----------------------------------------------------------------------------------
def unwrap(item: Any) -> dict[str, Any]:
    """API.md L23, L54: list items come as {"Order": {...}}."""
    inner = item.get("Order") if isinstance(item, dict) else None
    return inner if isinstance(inner, dict) else (item if isinstance(item, dict) else {})


def order_key(item: Mapping[str, Any]) -> Any:
    return unwrap(item).get("id")


def is_number(value: Any) -> bool:
    try:
        return Decimal(str(value)).is_finite()
    except InvalidOperation:
        return False


def money(value: Any, name: str) -> Decimal:
    """Plugg.to money is a JSON number (API.md L115); anything else, or an absurd amount, is a mapping error."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise MappingError("bad_money", f"{name}: expected a number, found {type(value).__name__}")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise MappingError("bad_money", f"{name}: {str(value)[:40]!r} is not an amount") from None
    if not amount.is_finite() or abs(amount) > MAX_MONEY:
        raise MappingError("bad_money", f"{name}: {str(value)[:40]!r} is not an amount")
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def _document(data: Mapping[str, Any]) -> str | None:
    raw = data.get("payer_cnpj") or data.get("payer_cpf")
    document = normalize_document(str(raw)) if isinstance(raw, str | int) and not isinstance(raw, bool) else ""
    return document or None


def parse_order(data: dict[str, Any], payment_map: Mapping[str, str] | None = None) -> Order:
    """An order as get-one-order gives it (API.md L112-124); the item SKU is the variation's when it has one."""
    payment_map = payment_map or {}
    order_id = need(data, "id")
    entries = need(data, "items", list)
    if not entries:
        raise MappingError("missing_field", "items: an order needs at least one item")
    items = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise MappingError("bad_type", f"items[{i}]: expected an object")
        variation = entry.get("variation") if isinstance(entry.get("variation"), dict) else {}
        code = variation.get("sku") or entry.get("sku")
        if not isinstance(code, str) or not code.strip():
            raise MappingError("missing_field", f"items[{i}].sku is required")
        quantity = need(entry, "quantity", int)
        if not 1 <= quantity <= 1_000_000:
            raise MappingError("bad_quantity", f"items[{i}].quantity: {quantity} is not a quantity")
        price = money(need(entry, "price", (int, float, str)), f"items[{i}].price")
        discount = money(entry.get("discount") or 0, f"items[{i}].discount")
        if price < 0 or discount < 0:
            raise MappingError("negative_price", f"items[{i}]: price {price} / discount {discount} is negative")
        items.append(OrderItem(code, quantity, price, discount))
    payments = []
    for i, pay in enumerate(opt(data, "payments", list) or []):
        if not isinstance(pay, dict):
            raise MappingError("bad_type", f"payments[{i}]: expected an object")
        kind, method = str(pay.get("payment_type") or ""), str(pay.get("payment_method") or "")
        code = payment_map.get(method) or payment_map.get(kind) or PAYMENT_TYPES.get(kind) or PAYMENT_TYPES.get(method)
        if code is None:
            raise MappingError("unmapped_payment", f"payment {kind!r}/{method!r} is not in payment_map")
        installments = pay.get("payment_installments") or 1
        installments = installments if isinstance(installments, int) and not isinstance(installments, bool) else 1
        payments.append(OrderPayment(code, money(need(pay, "payment_total", (int, float, str)),
                                                 f"payments[{i}].payment_total"), max(1, installments)))
    return Order(
        remote_id=order_id, status=need(data, "status"), items=tuple(items),
        total=money(need(data, "total", (int, float, str)), "total"), payments=tuple(payments),
        number=opt(data, "original_id") or order_id, channel_customer_id=_document(data),
        shipping=money(data.get("shipping") or 0, "shipping"),
        created_at=parse_time(data.get("created"), "created"), version=str(data.get("modified") or ""),
    )


def parse_customer(data: Mapping[str, Any]) -> ChannelCustomer | None:
    """The payer, keyed by CPF/CNPJ so the engine binds it to the back office customer."""
    document = _document(data)
    if document is None:
        return None
    text = {k: (str(v) if v is not None else None) for k, v in data.items() if isinstance(v, str | int | type(None))}
    name = text.get("payer_razao_social") or " ".join(
        p for p in (text.get("payer_name"), text.get("payer_lastname")) if p).strip()
    phone = "".join(p for p in (text.get("payer_phone_area"), text.get("payer_phone")) if p) or None
    address = Address(street=text.get("payer_address"), number=text.get("payer_address_number"),
                      complement=text.get("payer_address_complement"), district=text.get("payer_neighborhood"),
                      city=text.get("payer_city"), state=text.get("payer_state"), zip=text.get("payer_zipcode"),
                      country=text.get("payer_country") or "BR")
    return ChannelCustomer(remote_id=document, document=document, name=name or document,
                           email=text.get("payer_email"), phone=phone, address=address,
                           version=str(data.get("modified") or ""))
