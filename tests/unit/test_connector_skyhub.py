"""SkyHub's wire format alone: orders and buyers in, prices and status moves out (no HTTP)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from syncagent.connectors.skyhub_wire import (
    body_of_event,
    event_out,
    parse_customer,
    parse_order,
    price_out,
    product_out,
)
from syncagent.errors import MappingError
from syncagent.model import Invoice, OrderEvent, Price, Product, ScheduledPrice, Shipment

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def order_json(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "code": "Lojas Americanas-1517940500554-01", "status": {"code": "payment_received", "type": "APPROVED"},
        "updated_at": "2026-12-05T09:00:00-03:00", "placed_at": "2026-12-05T08:59:00-03:00",
        "total_ordered": 115.3, "shipping_cost": 15.0,
        "items": [{"id": "P000001", "qty": 2, "original_price": 55.0, "special_price": 50.15}],
        "payments": [{"method": "CREDIT_CARD", "value": 115.3, "parcels": 3}],
        "customer": {"name": "Ana Silva", "vat_number": "529.982.247-25", "email": "ana@exemplo.com.br",
                     "phones": ["11999990000"]},
        "shipping_address": {"street": "Rua A", "number": "10", "neighborhood": "Centro", "city": "São Paulo",
                             "region": "SP", "postcode": "01000000", "country": "BR"},
    }
    return base | fields


def test_an_order_in_the_hubs_terms_money_through_its_decimal_text() -> None:
    order = parse_order(order_json())
    assert (order.remote_id, order.status, order.total, order.shipping) == \
        ("Lojas Americanas-1517940500554-01", "approved", Decimal("115.30"), Decimal("15.00"))
    (item,) = order.items
    assert (item.code, item.quantity, item.unit_price, item.discount) == ("P000001", 2, Decimal("55.00"),
                                                                          Decimal("9.70"))
    assert [(p.method_code, p.amount, p.installments) for p in order.payments] == [("CC", Decimal("115.30"), 3)]
    assert order.channel_customer_id == "52998224725"
    buyer = parse_customer(order_json())
    assert buyer is not None and (buyer.document, buyer.address.state, buyer.phone) == \
        ("52998224725", "SP", "11999990000")  # type: ignore[union-attr]


@pytest.mark.parametrize(("fields", "code"), [
    ({"total_ordered": 1e15}, "bad_money"), ({"total_ordered": 10.005}, "bad_money"),
    ({"total_ordered": True}, "bad_type"), ({"items": []}, "missing_field"), ({"status": {}}, "missing_field"),
    ({"payments": [{"method": "CRYPTO", "value": 1}]}, "unmapped_payment"),
    ({"items": [{"id": "P1", "qty": 0, "original_price": 1}]}, "bad_quantity"),
])
def test_a_hostile_order_is_a_mapping_error_that_says_why(fields: dict[str, Any], code: str) -> None:
    with pytest.raises(MappingError) as caught:
        parse_order(order_json(**fields))
    assert caught.value.code == code


def test_payment_map_adds_a_method() -> None:
    order = parse_order(order_json(payments=[{"method": "CRYPTO", "value": 115.3}]), {"crypto": "DIN"})
    assert order.payments[0].method_code == "DIN"


def test_the_price_in_force_ends_a_promotion_with_the_price_itself() -> None:
    price = Price("P1", Decimal("100.00"), Decimal("80.00"), NOW + timedelta(hours=1), NOW + timedelta(hours=2),
                  (ScheduledPrice(Decimal("120.00"), NOW + timedelta(hours=3)),))
    at = [price_out(price, lambda h=h: NOW + timedelta(hours=h, seconds=1)) for h in (0, 1, 2, 3)]
    assert [(p["price"], p["promotional_price"]) for p in at] == [(100.0, 100.0), (100.0, 80.0), (100.0, 100.0),
                                                                (120.0, 120.0)]
    above = Price("P1", Decimal("100.00"), Decimal("130.00"))  # API.md L82-83: never a promotion above the price
    assert price_out(above, lambda: NOW) == {"price": 100.0, "promotional_price": 100.0}
    with pytest.raises(MappingError):
        price_out(Price("P1", Decimal("0.00")), lambda: NOW)  # API.md L72: never zero


def test_a_product_sends_only_what_it_has() -> None:
    assert product_out(Product("P1", "Boné", False), lambda: NOW) == \
        {"sku": "P1", "name": "Boné", "description": "Boné", "status": "disabled"}


def test_status_moves_carry_what_skyhub_needs() -> None:
    key = "3" * 44
    invoiced = OrderEvent("e1", "900", "sky", "X 1", "invoiced", NOW, invoice=Invoice(key, "1", "1"))
    shipped = OrderEvent("e2", "900", "sky", "X 1", "shipped", NOW, shipment=Shipment("Correios", "BR1", "https://t"))
    order = {"items": [{"id": "P1", "qty": 2}], "shipping_method": "SEDEX"}
    assert body_of_event(event_out(invoiced, {}), order) == \
        {"status": "order_invoiced", "invoice": {"key": key, "issue_date": "2026-12-05T12:00:00Z"}}
    body = body_of_event(event_out(shipped, {"shipped": "enviado"}), order)
    assert body["status"] == "enviado" and body["shipment"]["items"] == [{"sku": "P1", "qty": 2}]
    assert body["shipment"]["track"] == {"code": "BR1", "carrier": "Correios", "url": "https://t", "method": "SEDEX"}
    with pytest.raises(MappingError):
        event_out(OrderEvent("e3", "900", "sky", "X 1", "invoiced", NOW, invoice=Invoice("123", "1", "1")), {})
