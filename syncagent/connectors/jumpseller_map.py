"""Jumpseller's wire format → the hub's model: products with their variants, prices, stock and orders.

Contract: ../shared/contracts/jumpseller/openapi.json (the vendor's OpenAPI 3.0.3). Every list item
comes wrapped in its kind (`[{"product": {...}}]`, `[{"order": {...}}]`); money is a JSON number;
"all empty values are replaced with null" (info.description, "Plain JSON only"), and an empty
string is read as null too. A product with variants is one back office product per variant.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from syncagent.connectors.common import need, opt
from syncagent.errors import MappingError
from syncagent.model import CENT, Order, OrderItem, OrderPayment, Price, Product, StockLevel

MAX_MONEY = Decimal("1e12")
MAX_QUANTITY = 1_000_000
ZERO = Decimal("0.00")
# a catalogue row: one product, with one of its variants (None: a product without variants)
Row = Mapping[str, Any]


# -- small readers ---------------------------------------------------------------------------------
def text(data: Mapping[str, Any], name: str) -> str | None:
    """An optional text field: null, absent or blank is None; anything but a string is refused."""
    value = opt(data, name, str)
    return value.strip() or None if value is not None else None


def money(value: Any, label: str) -> Decimal:
    """A JSON number (or a decimal string) as money with two places, half up; refused when not a sane amount."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise MappingError("bad_money", f"{label}: expected a number, found {type(value).__name__}")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise MappingError("bad_money", f"{label}: {str(value)[:40]!r} is not an amount") from None
    if not amount.is_finite() or abs(amount) > MAX_MONEY:
        raise MappingError("bad_money", f"{label}: {str(value)[:40]!r} is not an amount")
    return amount.quantize(CENT, ROUND_HALF_UP)


def _number(value: Any, label: str) -> Decimal:
    """A JSON number, not rounded (a rate of 0.055 is 5.5 %); refused when it is not a sane one."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise MappingError("bad_value", f"{label}: expected a number, found {type(value).__name__}")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise MappingError("bad_value", f"{label}: {str(value)[:40]!r} is not a number") from None
    if not number.is_finite() or not ZERO <= number <= 100:
        raise MappingError("bad_value", f"{label}: {str(value)[:40]!r} is not a tax rate")
    return number


def opt_money(data: Mapping[str, Any], name: str, label: str) -> Decimal | None:
    value = data.get(name)
    return None if value is None or value == "" else money(value, label)


def ident(data: Mapping[str, Any], name: str, label: str | None = None) -> int:
    """A required integer id."""
    value = need(data, name, int)
    if value < 0:
        raise MappingError("bad_value", f"{label or name}: {value} is not an id")
    return int(value)


def moment(value: Any) -> datetime | None:
    """Jumpseller's date-times ("2023-10-15T14:30:00Z", "2023-10-15 14:30:00 UTC"); unreadable is None.

    Only informative here (the order's date): an odd format does not hold the order back.
    """
    if not isinstance(value, str) or not value.strip():
        return None
    cleaned = value.strip().replace(" UTC", "+00:00").replace("Z", "+00:00")
    try:
        when = datetime.fromisoformat(cleaned)
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC)


def unwrap(item: Any, kind: str) -> dict[str, Any]:
    """`{"product": {...}}` → the inner object (the spec's list items are wrapped in their kind)."""
    inner = item.get(kind) if isinstance(item, dict) else None
    if not isinstance(inner, dict):
        raise MappingError("bad_type", f"expected an object with a {kind!r} object")
    return inner


# -- catalogue rows --------------------------------------------------------------------------------
def rows(item: Any) -> list[Any]:
    """One listing item → one row per variant (one row for a product without variants).

    What is not a wrapped product stays one row as it is: its parser refuses it with its reason.
    """
    product = item.get("product") if isinstance(item, dict) else None
    if not isinstance(product, dict):
        return [item]
    variants = product.get("variants")
    if isinstance(variants, list) and variants:
        return [{"product": product, "variant": v} for v in variants]
    return [{"product": product, "variant": None}]


def stocked_rows(item: Any) -> list[Any]:
    """The rows whose stock is counted: a variant (or product) of unlimited stock has no level to pass on."""
    return [r for r in rows(item) if not (isinstance(r, dict) and isinstance(r.get("product"), dict)
                                          and _holder(r).get("stock_unlimited") is True)]


def _parts(row: Any) -> tuple[dict[str, Any], dict[str, Any] | None]:
    product = row.get("product") if isinstance(row, dict) else None
    if not isinstance(product, dict):
        raise MappingError("bad_type", "expected an object with a 'product' object")
    variant = row.get("variant")
    if variant is not None and not isinstance(variant, dict):
        raise MappingError("bad_type", "variants: expected objects")
    return product, variant


def _holder(row: Row) -> dict[str, Any]:
    """Where a row's own values live: its variant, else the product itself."""
    product, variant = _parts(row)
    return variant if variant is not None else product


def code_of(product: Mapping[str, Any], variant: Mapping[str, Any] | None) -> str:
    """The back office code: the SKU, else a key derived from the ids that never changes (JS-<product>-<variant>)."""
    if variant is not None:
        return text(variant, "sku") or f"JS-{ident(product, 'id')}-{ident(variant, 'id', 'variant.id')}"
    return text(product, "sku") or f"JS-{ident(product, 'id')}"


def row_key(row: Any) -> str | None:
    """A row's key for quarantine, even when the row is too broken to parse."""
    try:
        product, variant = _parts(row)
        return code_of(product, variant)
    except MappingError:
        product = row.get("product") if isinstance(row, dict) else None
        pid = product.get("id") if isinstance(product, dict) else None
        return f"JS-{pid}" if isinstance(pid, int) else None


def product_in(row: Row, category_map: Mapping[str, str]) -> Product:
    """One variant (or a product without variants) as a back office product."""
    product, variant = _parts(row)
    code = code_of(product, variant)
    name = need(product, "name")
    if variant is not None:
        values = [str(o["value"]).strip() for o in opt(variant, "options", list) or []
                  if isinstance(o, dict) and isinstance(o.get("value"), str | int) and str(o["value"]).strip()]
        name = f"{name} ({', '.join(values)})" if values else name
    status = need(product, "status")
    if status not in ("available", "not-available", "disabled"):
        raise MappingError("bad_value", f"status: {status[:30]!r} is not a product status")
    weight = opt(product, "weight", (int, float))
    return Product(code=code, name=name.strip()[:200], active=status == "available",
                   barcode=text(variant if variant is not None else product, "barcode"), brand=text(product, "brand"),
                   group_code=group_of(product, category_map),
                   weight_kg=str(Decimal(str(weight)).normalize()) if weight is not None and weight > 0 else None)


def group_of(product: Mapping[str, Any], category_map: Mapping[str, str]) -> str | None:
    """The product's first category as a back office group: mapped by id or name, else its name."""
    categories = opt(product, "categories", list) or []
    first = next((c for c in categories if isinstance(c, dict)), None)
    if first is None:
        return None
    cid, name = first.get("id"), text(first, "name")
    mapped = category_map.get(str(cid)) if cid is not None else None
    return mapped or (category_map.get(name) if name else None) or name


def price_in(row: Row) -> Price:
    """The variant's price (the product's when the variant has none), as the shop sells it."""
    product, variant = _parts(row)
    value = variant.get("price") if variant is not None else None
    price = money(value if value is not None else need(product, "price", (int, float)), "price")
    if price < 0:
        raise MappingError("negative_price", f"price {price} is negative")
    return Price(code_of(product, variant), price)


def stock_in(row: Row) -> StockLevel:
    """The variant's stock (a negative count, an oversold item, is none available)."""
    product, variant = _parts(row)
    stock = need(_holder(row), "stock", int)
    return StockLevel(code_of(product, variant), max(0, min(stock, 10**9)))


# -- orders ----------------------------------------------------------------------------------------
def order_key(item: Any) -> str | None:
    inner = item.get("order") if isinstance(item, dict) else None
    oid = inner.get("id") if isinstance(inner, dict) else None
    return str(oid) if isinstance(oid, int) and not isinstance(oid, bool) else None


def _line_tax_rate(entry: Mapping[str, Any], i: int) -> Decimal | None:
    """The line's VAT rate in percent (the sum of its percentage taxes); refused when prices exclude it."""
    rate: Decimal | None = None
    for tax in opt(entry, "taxes", list) or []:
        if not isinstance(tax, dict) or tax.get("fixed") is True or tax.get("rate") is None:
            continue
        if tax.get("tax_on_product_price") is False:
            raise MappingError("net_prices", f"products[{i}]: the price excludes its tax; the store must show "
                                             "prices with tax included")
        value = _number(tax["rate"], f"products[{i}].taxes.rate")
        # a percentage (23); a fraction (0.23) is read as one too: no VAT rate is below 1 %
        rate = (rate or ZERO) + (value * 100 if ZERO < value < 1 else value).quantize(CENT, ROUND_HALF_UP)
    return rate


def _spread(items: list[OrderItem], discount: Decimal) -> list[OrderItem]:
    """An order-level discount (coupons, gift cards) spread over the lines by value; the last takes the cents left."""
    if discount <= 0:
        return items
    values = [i.unit_price * i.quantity - i.discount for i in items]
    worth = sum(values, ZERO)
    if discount > worth:
        raise MappingError("bad_discount", f"the order's discount {discount} is more than its items are worth")
    shares = [(discount * v / worth).quantize(CENT, ROUND_HALF_UP) if worth else ZERO for v in values]
    shares[-1] = discount - sum(shares[:-1], ZERO)
    if shares[-1] > values[-1]:  # rounding pushed past the last line: take it from the largest line instead
        big = max(range(len(items)), key=lambda k: values[k] - shares[k])
        shares[big] += shares[-1] - values[-1]
        shares[-1] = values[-1]
    return [OrderItem(i.code, i.quantity, i.unit_price, i.discount + s, i.tax_rate) for i, s in zip(items, shares,
                                                                                                     strict=True)]


def _line(entry: Any, i: int) -> tuple[str, int, Decimal, Decimal, Decimal | None]:
    """One order line: (code, quantity, unit price, its `discount` as given, VAT rate)."""
    if not isinstance(entry, dict):
        raise MappingError("bad_type", f"products[{i}]: expected an object")
    quantity = need(entry, "qty", int)
    if not 1 <= quantity <= MAX_QUANTITY:
        raise MappingError("bad_quantity", f"products[{i}].qty: {quantity} is not a quantity")
    price = money(need(entry, "price", (int, float, str)), f"products[{i}].price")
    discount = opt_money(entry, "discount", f"products[{i}].discount") or ZERO
    if price < 0 or discount < 0:
        raise MappingError("negative_price", f"products[{i}]: price {price} / discount {discount} is negative")
    sku = text(entry, "sku")
    if sku is None:
        variant = opt(entry, "variant_id", int)
        sku = f"JS-{ident(entry, 'id', f'products[{i}].id')}" + (f"-{variant}" if variant else "")
    return sku, quantity, price, discount, _line_tax_rate(entry, i)


def _reconciled(lines: list[tuple[str, int, Decimal, Decimal, Decimal | None]], order_discount: Decimal,
                shipping: Decimal, total: Decimal) -> list[OrderItem]:
    """The lines with their discounts, read the way that adds up to the order's total.

    The spec does not say whether a line's `discount` is per unit or for the line: per unit is
    tried first (it sits beside the unit price), then per line; an order that adds up neither way
    is refused, never invoiced with a total of our own making.
    """
    tried = []
    for per_unit in (True, False):
        items = [OrderItem(sku, qty, price, discount * qty if per_unit else discount, rate)
                 for sku, qty, price, discount, rate in lines]
        if any(i.discount > i.unit_price * i.quantity for i in items):
            continue
        try:
            items = _spread(items, order_discount)
        except MappingError:
            continue
        lines_total = sum((i.unit_price * i.quantity - i.discount for i in items), ZERO)
        if lines_total + shipping == total:
            return items
        tried.append(lines_total)
    if not tried:
        raise MappingError("bad_discount", "the discounts are more than the order's items are worth")
    raise MappingError("bad_total", f"the lines ({', '.join(str(t) for t in tried)}) plus shipping ({shipping}) "
                                    f"do not add up to the order's total {total}")


def order_in(item: Any, payment_map: Mapping[str, str], customer_code: str | None) -> Order:
    """An order as the back office gets it: gross line prices, discounts on the lines, the buyer's tax data."""
    data = unwrap(item, "order")
    order_id = str(ident(data, "id"))
    status = need(data, "status_enum")
    entries = need(data, "products", list)
    if not entries:
        raise MappingError("missing_field", "products: an order needs at least one product")
    lines = [_line(entry, i) for i, entry in enumerate(entries)]
    order_discount = sum((opt_money(data, k, k) or ZERO for k in ("discount", "gift_cards_discount")), ZERO)
    shipping = (opt_money(data, "shipping", "shipping") or ZERO) - (
        opt_money(data, "shipping_discount", "shipping_discount") or ZERO)
    if any(isinstance(t, dict) and t.get("tax_on_shipping_price") is False
           for t in opt(data, "shipping_taxes", list) or []):
        shipping += opt_money(data, "shipping_tax", "shipping_tax") or ZERO
    if shipping < 0:
        raise MappingError("negative_price", f"shipping {shipping} is negative")
    total = money(need(data, "total", (int, float, str)), "total")
    items = _reconciled(lines, order_discount, shipping, total)
    payments: tuple[OrderPayment, ...] = ()
    if payment_map and status == "paid":
        kind, label = text(data, "payment_method_type"), text(data, "payment_method_name")
        method = (payment_map.get(kind) if kind else None) or (payment_map.get(label) if label else None)
        if method is None:
            raise MappingError("unmapped_payment", f"payment method {label!r} (type {kind!r}) is not in payment_map")
        payments = (OrderPayment(method, total),)
    customer = opt(data, "customer", dict) or {}
    billing = opt(data, "billing_address", dict) or {}
    shipping_address = opt(data, "shipping_address", dict) or {}
    full = " ".join(p for p in (text(billing, "name"), text(billing, "surname")) if p) or text(customer, "fullname")
    country = text(billing, "country_code") or text(shipping_address, "country_code")
    return Order(
        remote_id=order_id, status=status, items=tuple(items), total=total, payments=payments, number=order_id,
        customer_code=customer_code, shipping=shipping, notes=text(data, "additional_information"),
        created_at=moment(data.get("completed_at")) or moment(data.get("created_at")), version=_version(data),
        shipping_total=shipping, currency=text(data, "currency"), customer_document=_tax_id(billing),
        customer_name=full, customer_email=text(customer, "email"), customer_country=country.upper() if country else None,
    )


def _tax_id(billing: Mapping[str, Any]) -> str | None:
    """The buyer's tax id as typed at checkout, spaces and dots dropped (PT 123 456 789 → PT123456789)."""
    raw = text(billing, "taxid")
    return "".join(ch for ch in raw if ch not in " .-").upper() or None if raw else None


def _version(data: Mapping[str, Any]) -> str:
    """A digest of the whole order: a quarantined order is looked at again only once something in it changed."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]
