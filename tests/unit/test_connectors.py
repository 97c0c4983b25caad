"""Each client against `responses`: parsing, mapping, per-record results, the wire shapes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import responses

from syncagent.connectors.base import Outgoing
from syncagent.connectors.gestao_lojas import GestaoLojasConnector
from syncagent.connectors.sellerup import SellerUpConnector
from syncagent.errors import AuthError, MappingError, PermanentError
from syncagent.http import HttpSettings
from syncagent.model import (
    BackOfficeOrder,
    BadRecord,
    Invoice,
    Order,
    OrderEvent,
    OrderItem,
    OrderPayment,
    Price,
    Product,
    ScheduledPrice,
    StockLevel,
)

BO = "http://bo.test"
SU = "http://su.test"
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
KEY = "canary-api-key-0001"


def bo() -> GestaoLojasConnector:
    return GestaoLojasConnector("backoffice", BO, {"client_id": "id", "client_secret": "canary-bo-secret"},
                                HttpSettings(max_attempts=2), sleep=lambda s: None, page_size=2)


def su(now: datetime = NOW) -> SellerUpConnector:
    return SellerUpConnector("loja", SU, {"api_key": KEY}, HttpSettings(max_attempts=2), sleep=lambda s: None,
                             clock=lambda: now, page_size=2)


def token() -> None:
    responses.post(f"{BO}/oauth/token", json={"access_token": "tok", "token_type": "Bearer", "expires_in": 3600})


@responses.activate
def test_feed_pages_follow_cursors_and_bad_items_become_bad_records() -> None:
    token()
    responses.get(f"{BO}/products", json={"items": [
        {"code": "P1", "description": "Camiseta", "active": True, "barcode": "7890000000017"},
        {"code": "P2", "active": True}], "next_cursor": "c1"})
    responses.get(f"{BO}/products", json={"items": [{"code": "P3", "description": "Boné", "active": "yes"}],
                                          "next_cursor": None})
    pages = list(bo().pull("products", None))
    assert [p.cursor for p in pages] == ["c1", None]
    first, second = pages[0].records, pages[1].records
    assert isinstance(first[0], Product) and first[0].name == "Camiseta"
    assert isinstance(first[1], BadRecord) and first[1].key == "P2" and first[1].code == "missing_field"
    assert isinstance(second[0], BadRecord) and second[0].code == "bad_type"
    assert "cursor=c1" in responses.calls[2].request.url
    assert len([c for c in responses.calls if c.request.url.endswith("/oauth/token")]) == 1


@responses.activate
def test_prices_parse_money_and_schedules() -> None:
    token()
    responses.get(f"{BO}/prices", json={"items": [
        {"sku": "P1", "price_list": "default", "list_price": "129.90", "promo_price": "99.90",
         "promo_start": "2026-11-20T00:00:00Z", "promo_end": "2026-12-01T00:00:00Z",
         "scheduled": [{"list_price": "139.90", "starts_at": "2027-01-01T00:00:00Z"}]},
        {"sku": "P2", "price_list": "default", "list_price": "abc"}], "next_cursor": None})
    (page,) = list(bo().pull("prices", None))
    price, bad = page.records
    assert price.list_price == Decimal("129.90") and price.scheduled[0].list_price == Decimal("139.90")
    assert isinstance(bad, BadRecord) and bad.code == "bad_money"


@responses.activate
def test_order_in_shape_and_results() -> None:
    token()
    responses.post(f"{BO}/orders", status=201, json={"number": "100001"})
    responses.post(f"{BO}/orders", status=422, json={"error": {"code": "validation_error", "message": "invalid order",
                                                              "details": [{"field": "items[0].sku", "message": "unknown product X"}]}})
    c = bo()
    order = Order("o1", "approved", (OrderItem("P1", 2, Decimal("10.00"), Decimal("1.00")),), Decimal("19.00"),
                  (OrderPayment("PIX", Decimal("19.00")),), customer_code="C1", seller_code="V001", store_code="L01")
    out = c.prepare("orders", BackOfficeOrder("loja", order, "C1", "LJ01"))
    assert out.payload == {
        "external_id": "o1", "channel": "loja", "customer_code": "C1", "seller_code": "V001", "store_code": "L01",
        "warehouse": "LJ01", "items": [{"sku": "P1", "quantity": 2, "unit_price": "10.00", "discount": "1.00"}],
        "payments": [{"method_code": "PIX", "amount": "19.00", "installments": 1}], "shipping": "0.00",
        "total": "19.00", "notes": None}
    (ok,) = c.push("orders", [out])
    assert (ok.status, ok.remote_id) == ("created", "100001")
    (bad,) = c.push("orders", [out])
    assert bad.status == "rejected" and "unknown product X" in (bad.reason or "")


@responses.activate
def test_duplicate_customer_document_is_bound_to_the_existing_code() -> None:
    token()
    responses.post(f"{BO}/customers", status=409, json={"error": {"code": "duplicate_document", "message": "exists",
                                                                 "existing_code": "C000042"}})
    (res,) = bo().push("customers", [Outgoing("52998224725", {"document": "52998224725", "name": "Ana"})])
    assert (res.status, res.remote_id, res.ok) == ("exists", "C000042", True)


@responses.activate
def test_lookup_order_by_external_id() -> None:
    token()
    responses.get(f"{BO}/orders", json={"items": [{"number": "7", "status": "open"}]})
    assert bo().lookup("orders", external_id="o1", channel="loja") == {"number": "7", "status": "open"}
    assert "external_id=o1" in responses.calls[-1].request.url and "channel=loja" in responses.calls[-1].request.url


def test_effective_price_for_seller_up() -> None:
    price = Price("P1", Decimal("100.00"), Decimal("80.00"), NOW - timedelta(days=1), NOW + timedelta(days=1),
                  (ScheduledPrice(Decimal("110.00"), NOW + timedelta(days=2)),))
    assert su().prepare("prices", price).payload == {"key": "P1", "price": "100.00", "promo_price": "80.00",
                                                     "promo_until": "2026-11-24T12:00:00Z"}
    later = su(NOW + timedelta(days=3)).prepare("prices", price).payload
    assert later == {"key": "P1", "price": "110.00", "promo_price": None, "promo_until": None}


@responses.activate
def test_batch_with_a_rejected_item_gives_mixed_results() -> None:
    responses.put(f"{SU}/v1/products", json={"results": [
        {"key": "P1", "status": "created"},
        {"key": "P2", "status": "rejected", "error": {"code": "invalid_barcode", "message": "bad EAN",
                                                      "field": "barcode"}},
        {"key": "P3", "status": "unchanged"}]})
    c = su()
    batch = [c.prepare("products", Product(f"P{i}", "x", True)) for i in (1, 2, 3)]
    results = c.push("products", batch)
    assert [r.status for r in results] == ["created", "rejected", "unchanged"]
    assert results[1].reason_code == "invalid_barcode" and "barcode" in (results[1].reason or "")
    assert responses.calls[0].request.headers["X-Api-Key"] == KEY


@responses.activate
def test_413_splits_the_batch_and_a_400_refuses_it_whole() -> None:
    responses.put(f"{SU}/v1/stock", status=413, json={"error": {"code": "too_large", "message": "too large"}})
    responses.put(f"{SU}/v1/stock", json={"results": [{"key": "A", "status": "created"}]})
    responses.put(f"{SU}/v1/stock", json={"results": [{"key": "B", "status": "created"}]})
    c = su()
    batch = [c.prepare("stock", StockLevel(k, 1)) for k in "AB"]
    assert [r.key for r in c.push("stock", batch)] == ["A", "B"]
    responses.put(f"{SU}/v1/groups", status=400, json={"error": {"code": "validation_error", "message": "bad"}})
    with pytest.raises(PermanentError):
        c.push("groups", [Outgoing("G", {"key": "G"})])


@responses.activate
def test_events_409_already_recorded_counts_as_done_out_of_order_does_not() -> None:
    responses.post(f"{SU}/v1/orders/o1/events", status=409, json={"error": {"code": "already_recorded", "message": "x"}})
    responses.post(f"{SU}/v1/orders/o1/events", status=409, json={"error": {"code": "out_of_order", "message": "y"}})
    c = su()
    event = OrderEvent("e1", "1", "loja", "o1", "invoiced", NOW, invoice=Invoice("3" * 44, "123", "1"))
    out = c.prepare("order-events", event)
    assert json.loads(json.dumps(out.payload))["invoice_key"] == "3" * 44
    (first,) = c.push("order-events", [out])
    (second,) = c.push("order-events", [out])
    assert first.status == "exists" and first.ok
    assert second.status == "rejected" and second.reason_code == "out_of_order"
    with pytest.raises(MappingError):
        c.prepare("order-events", OrderEvent("e2", "1", "loja", "o1", "invoiced", NOW, invoice=Invoice("12", "1", "1")))


@responses.activate
def test_orders_feed_by_seq_and_bad_orders() -> None:
    good = {"id": "o1", "seq": 5, "number": "T1", "status": "approved", "store": "L01", "seller": "V001",
            "customer": {"code": "C1"}, "items": [{"key": "P1", "quantity": 1, "unit_price": "10.00"}],
            "payments": [{"method": "PIX", "amount": "10.00"}], "total": "10.00", "created_at": "2026-11-23T10:00:00Z"}
    bad = {**good, "id": "o2", "seq": 6, "items": [{"key": "P1", "quantity": 0, "unit_price": "10.00"}]}
    responses.get(f"{SU}/v1/orders", json={"items": [good, bad]})
    responses.get(f"{SU}/v1/orders", json={"items": []})
    pages = list(su().pull("orders", "4"))
    assert "after=4" in responses.calls[0].request.url and "after=6" in responses.calls[1].request.url
    order, broken = pages[0].records
    assert isinstance(order, Order) and order.customer_code == "C1" and order.version == "5"
    assert isinstance(broken, BadRecord) and broken.code == "bad_quantity"
    assert pages[0].cursor == "6" and pages[1].cursor is None


@responses.activate
def test_revoked_key_is_an_auth_error_and_the_key_never_shows() -> None:
    responses.get(f"{SU}/v1/orders", status=401, json={"error": {"code": "key_revoked", "message": "revoked"}})
    with pytest.raises(AuthError) as err:
        list(su().pull("orders", None))
    assert err.value.code == "key_revoked" and KEY not in str(err.value)
