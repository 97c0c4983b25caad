"""The hub's model → Vendus's wire format: products, prices, stock, and an order as an invoice.

Contract: ../shared/contracts/vendus/API.md. What it leaves UNKNOWN and how it is chosen here is in
docs/connectors/vendus.md: a line's VAT travels as `tax_id` (NOR/INT/RED/ISE, L104) when it is a
mainland Portuguese rate and always as `tax_rate` in percent (an OSS rate has no code); a line's
discount as `discount_amount` (the whole line's); a payment as `{"id": method, "amount"}` (L66).
Mapping raises `MappingError` with a reason that says the cause and the fix: the alert e-mail
quotes it to the person who can act.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from syncagent.connectors.vendus_tax import EU_STANDARD_RATES, normalise_nif, pt_tax_id, rate_text, valid_nif
from syncagent.errors import MappingError
from syncagent.model import BackOfficeOrder, Order, OrderItem, Price, Product, StockLevel, money_str

ZERO = Decimal("0.00")
_UNKNOWN_PRODUCT = re.compile(r"unknown product '([^']{1,80})'")
HOME = "PT"


@dataclass(frozen=True, slots=True)
class InvoiceRules:
    """What the config decides about every invoice (the connector's options, checked once)."""

    document_type: str = "FR"
    register_id: int = 0
    payment_method_id: int | None = None
    default_vat_rate: Decimal | None = None
    oss: bool = False
    oss_rates: Mapping[str, Decimal] = field(default_factory=dict)
    shipping_reference: str = "PORTES"
    shipping_title: str = "Portes de envio"
    store_id: int | None = None
    mode: str = "normal"


def external_reference(channel: str, order_id: str) -> str:
    """L67 `external_reference`: the shop order, named by channel so two shops never collide."""
    return f"{channel}:{order_id}"


def tx_id(reference: str) -> str:
    """L68 `tx_id`: deterministic per document, so a repeated creation is the same transaction."""
    return hashlib.sha256(reference.encode()).hexdigest()[:32]


# -- catalogue ----------------------------------------------------------------------------------------
def product_out(product: Product, default_rate: Decimal | None) -> dict[str, Any]:
    """L104: reference, title, barcode, brand and category (by name: ids are found or made on push), tax."""
    if not product.code.strip():
        raise MappingError("missing_field", "reference: the product's code is empty")
    if not product.name.strip():
        raise MappingError("missing_field", f"title: product {product.code} has no name")
    body: dict[str, Any] = {"reference": product.code, "title": product.name.strip()[:200],
                            "barcode": product.barcode, "brand": product.brand, "category": product.group_code,
                            "status": "on" if product.active else "off"}
    if default_rate is not None:
        code = pt_tax_id(default_rate)
        if code is None:
            raise MappingError("bad_tax_rate", f"default_vat_rate {rate_text(default_rate)} is not a Portuguese rate "
                                               "(23, 13, 6 or 0): set one of these in the config")
        body["tax_id"] = code
    return body


def price_out(price: Price, now: datetime) -> dict[str, Any]:
    """L104 `gross_price`: the price in force now, VAT included (the shop's prices include it)."""
    effective = price.effective(now)
    amount = effective.promo_price if effective.promo_price is not None else effective.price
    return {"reference": price.code, "gross_price": money_str(amount)}


def stock_out(level: StockLevel) -> dict[str, Any]:
    """L114 (UNKNOWN call): the product's `stock` with stock control on, written by PATCH products/{id}."""
    return {"reference": level.code, "stock": max(0, level.available), "stock_control": 1}


# -- invoices -----------------------------------------------------------------------------------------
def client_out(order: Order) -> dict[str, Any] | None:
    """The buyer as a Vendus client: found by NIF or e-mail, else created; None is the final consumer (L63)."""
    document = (order.customer_document or "").strip()
    country = (order.customer_country or HOME).upper()
    if not document:
        return None  # "consumidor final": no client at all, never the 999999990 NIF (L63)
    nif = normalise_nif(document)
    if country == HOME and not valid_nif(nif):
        raise MappingError(
            "invalid_nif", f"the customer's NIF {document[:20]!r} is not a valid Portuguese NIF (check digit); "
            "correct the tax id on the order's billing address in the shop, or remove it to invoice the final "
            "consumer: the order is invoiced by itself once it changes")
    body: dict[str, Any] = {"fiscal_id": nif if country == HOME else document.upper(), "country": country}
    if order.customer_name:
        body["name"] = order.customer_name[:100]
    if order.customer_email:
        body["email"] = order.customer_email
    return body


def line_rate(order: Order, item: OrderItem, rules: InvoiceRules) -> Decimal:
    """The VAT rate of a line: the destination's under OSS, else the shop's, else the configured default."""
    country = (order.customer_country or HOME).upper()
    if rules.oss and country != HOME and not order.customer_document:  # a consumer in another EU state
        rate = rules.oss_rates.get(country, EU_STANDARD_RATES.get(country))
        if rate is not None:
            return rate
    rate = item.tax_rate if item.tax_rate is not None else rules.default_vat_rate
    if rate is None:
        raise MappingError(
            "missing_vat_rate", f"product {item.code} has no VAT rate: give it a tax in the shop or set "
            "default_vat_rate in the vendus section of the config; the order is invoiced by itself once it is set",
            (("tax rate", item.code),))
    return rate


def _line(reference: str, title: str | None, qty: int, gross: Decimal, discount: Decimal,
          rate: Decimal) -> dict[str, Any]:
    line: dict[str, Any] = {"reference": reference, "qty": qty, "gross_price": money_str(gross),
                            "tax_rate": rate_text(rate)}
    if title:
        line["title"] = title  # only for a product Vendus does not know: it is created with it (L62)
    if discount:
        line["discount_amount"] = money_str(discount)
    code = pt_tax_id(rate)
    if code is not None:
        line["tax_id"] = code
    return line


def invoice_out(record: BackOfficeOrder, rules: InvoiceRules) -> dict[str, Any]:
    """L55-73: one invoice (FR or FT) on the configured register for a paid order, shipping as a line."""
    order = record.order
    if not order.remote_id:
        raise MappingError("missing_field", "the shop's order id is required")
    if not order.items:
        raise MappingError("missing_field", f"order {order.remote_id} has no items to invoice")
    if order.currency not in (None, "EUR"):
        raise MappingError("bad_currency", f"order {order.remote_id} is in {order.currency}: Vendus invoices in "
                                           "euros; invoice it by hand")
    lines = []
    rates = []
    for item in order.items:
        if item.quantity < 1:
            raise MappingError("bad_quantity", f"product {item.code}: {item.quantity} is not a quantity")
        rate = line_rate(order, item, rules)
        rates.append(rate)
        lines.append(_line(item.code, None, item.quantity, item.unit_price, item.discount, rate))
    shipping = order.shipping_total if order.shipping_total is not None else order.shipping
    if shipping and shipping > 0:
        # shipping follows the goods it carries: the highest rate among the lines (the destination's under OSS)
        lines.append(_line(rules.shipping_reference, rules.shipping_title, 1, shipping, ZERO, max(rates)))
    reference = external_reference(record.channel, order.remote_id)
    body: dict[str, Any] = {"type": rules.document_type, "register_id": rules.register_id, "items": lines,
                            "external_reference": reference, "tx_id": tx_id(reference), "mode": rules.mode,
                            "client": client_out(order)}
    if rules.store_id is not None:
        body["store_id"] = rules.store_id
    if rules.document_type == "FR":  # an invoice-receipt is paid in full at once (L66)
        body["payments"] = [{"id": _payment_method(order, rules), "amount": money_str(order.total)}]
    return body


def _payment_method(order: Order, rules: InvoiceRules) -> int | None:
    """The Vendus payment method: the order's own when the channel mapped it to a Vendus id (a channel's
    `payment_map`, e.g. {mbway: 2}), else `payment_method_id`."""
    for payment in order.payments:
        code = payment.method_code.strip()
        if code.isascii() and code.isdigit() and 0 < int(code) < 2**31:
            return int(code)
    return rules.payment_method_id


def credit_note_out(invoice: Mapping[str, Any], rules: InvoiceRules, reason: str) -> dict[str, Any]:
    """L75-77: an NC crediting every row of the invoice; prices come from the invoice itself."""
    rows = invoice.get("items")
    number = invoice.get("number")
    if not isinstance(rows, list) or not rows or not isinstance(number, str):
        raise MappingError("bad_response", f"invoice {invoice.get('id')}: no number or rows to credit")
    items = [{"id": row.get("product_id"), "qty": row.get("qty"),
              "reference_document": {"document_number": number, "document_row": row.get("row")}}
             for row in rows if isinstance(row, dict)]
    reference = credit_reference(str(invoice.get("external_reference") or invoice.get("id")))
    body: dict[str, Any] = {"type": "NC", "register_id": rules.register_id, "notes": reason[:200] or "cancelled",
                            "items": items, "external_reference": reference, "tx_id": tx_id(reference),
                            "mode": rules.mode}
    if isinstance(invoice.get("client"), dict) and invoice["client"].get("id") is not None:
        body["client"] = {"id": invoice["client"]["id"]}
    return body


def credit_reference(invoice_reference: str) -> str:
    """The credit note's own external reference: the invoice's with `/NC` (one credit note per invoice)."""
    return f"{invoice_reference}/NC"


def explain(status: int, code: str, message: str, register_id: int) -> tuple[str, str, tuple[tuple[str, str], ...]]:
    """A refused document as (reason code, cause and fix for people, what it waits for).

    Vendus's error codes are not published (L50), so the message's words decide; an unknown refusal
    is passed on as Vendus worded it.
    """
    text = message.lower()
    unknown = _UNKNOWN_PRODUCT.search(message)
    if unknown:
        return ("unknown_product", f"product '{unknown.group(1)}' is not in Vendus: {message}. Let the products "
                "flow create it (or create it in Vendus); the order is invoiced by itself once it exists",
                (("product", unknown.group(1)),))
    if "register" in text and ("clos" in text or "fechad" in text):
        return ("register_closed", f"the Vendus register (caixa) {register_id} is closed: {message}. Open it in "
                "Vendus (or set register_id to an open register); the order is invoiced by itself once it is open",
                (("register", str(register_id)),))
    if "register" in text:
        return ("bad_register", f"Vendus refused register {register_id}: {message}. Set register_id in the "
                "config to a register of the account (GET registers/ lists them; type api is meant for "
                "integrations)", (("register", str(register_id)),))
    if "fiscal_id" in text or "nif" in text:
        return ("nif_refused", f"Vendus refused the customer's NIF: {message}. Correct the tax id on the order's "
                "billing address in the shop (or remove it to invoice the final consumer); the order is invoiced "
                "by itself once it changes", ())
    if "tax" in text:
        return ("vat_refused", f"Vendus refused a VAT rate: {message}. Check the product's tax in the shop and "
                "default_vat_rate/oss_rates in the config", (("tax rate", "invoice"),))
    return (f"vendus_{code or status}".lower(), f"Vendus refused the document ({status}): {message}", ())
