"""The Seller Up connector against `responses`: mapping, batch results, 413 splits, events, feeds, the key."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import MappingProxyType
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses

from syncagent.config import ChannelConfig, HttpOptions
from syncagent.connectors.base import Outgoing
from syncagent.connectors.sellerup import SellerUpConnector, customer_push_out, parse_customer
from syncagent.errors import AuthError, MappingError, PermanentError, SyncAgentError, TransientError
from syncagent.http import HttpSettings
from syncagent.model import (
    Address,
    BadRecord,
    ChannelCustomer,
    Customer,
    Group,
    Invoice,
    Order,
    OrderEvent,
    OrderItem,
    OrderPayment,
    PaymentMethod,
    Price,
    Product,
    ScheduledPrice,
    Seller,
    Shipment,
    StockLevel,
)

SU = "http://su.test"
KEY = "canary-sellerup-key-91c2"
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
NFE = "35241112345678000199550010000001231000001234"


def connector(now: datetime = NOW, page_size: int = 2) -> SellerUpConnector:
    return SellerUpConnector("loja-centro", SU, {"api_key": KEY}, HttpSettings(max_attempts=2),
                             sleep=lambda s: None, clock=lambda: now, page_size=page_size)


@pytest.fixture
def su() -> Iterator[SellerUpConnector]:
    conn = connector()
    yield conn
    conn.close()


def query(call: responses.Call) -> dict[str, list[str]]:
    return parse_qs(urlsplit(call.request.url).query)


def sent_items(call: responses.Call) -> list[dict[str, object]]:
    return json.loads(call.request.body)["items"]  # type: ignore[no-any-return]


def echo(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
    """A batch endpoint that creates every item it is sent."""
    items = json.loads(request.body or b"{}")["items"]
    return 200, {"Content-Type": "application/json"}, json.dumps(
        {"results": [{"key": i["key"], "status": "created"} for i in items]})


# -- mapping -----------------------------------------------------------------------------------------
def test_catalogue_records_map_to_the_contract_shapes(su: SellerUpConnector) -> None:
    product = su.prepare("products", Product("P1", "Camiseta", True, barcode="7890000000000", brand="Marca",
                                             group_code="G1", unit="UN"))
    assert product == Outgoing("P1", {"key": "P1", "name": "Camiseta", "barcode": "7890000000000", "brand": "Marca",
                                      "group_key": "G1", "unit": "UN", "active": True})
    assert su.prepare("stock", StockLevel("P1", 7)).payload == {"key": "P1", "available": 7}
    assert su.prepare("stock", StockLevel("P1", -3)).payload == {"key": "P1", "available": 0}
    customer = Customer("52998224725", "Ana", code="C1", email="a@example.com",
                        address=Address(city="Recife", state="PE"))
    assert su.prepare("customers", customer).payload == {
        "key": "C1", "document": "52998224725", "name": "Ana", "email": "a@example.com", "phone": None,
        "city": "Recife", "state": "PE"}
    assert su.prepare("payment-methods", PaymentMethod("CC", "Cartão", "credit_card", True, 10)).payload == {
        "key": "CC", "name": "Cartão", "type": "credit_card", "max_installments": 10, "active": True}
    assert su.prepare("groups", Group("G2", "Camisetas", False, "G1")).payload == {
        "key": "G2", "name": "Camisetas", "parent_key": "G1", "active": False}
    assert su.prepare("sellers", Seller("V1", "Bia", True, store_code="L01")).payload == {
        "key": "V1", "name": "Bia", "store": "L01", "active": True}
    assert su.prepare("order-acks", {"order_id": "o1", "backoffice_number": 100001}) == Outgoing(
        "o1", {"backoffice_number": "100001"})
    assert su.prepare("customer-links", {"remote_id": "tc1", "code": "C1"}) == Outgoing("tc1", {"code": "C1"})


def test_missing_required_values_are_mapping_errors(su: SellerUpConnector) -> None:
    for entity, record in (("products", Product("P1", " ", True)), ("customers", Customer("52998224725", "Ana")),
                           ("groups", Group("G1", "", True)), ("order-acks", {"order_id": "o1"})):
        with pytest.raises(MappingError) as err:
            su.prepare(entity, record)
        assert err.value.code == "missing_field"


def promo_price() -> Price:
    return Price("P1", Decimal("100.00"), Decimal("80.00"), NOW - timedelta(days=1), NOW + timedelta(days=1),
                 (ScheduledPrice(Decimal("110.00"), NOW + timedelta(days=2)),))


def test_effective_price_with_a_running_promotion() -> None:
    assert connector().prepare("prices", promo_price()).payload == {
        "key": "P1", "price": "100.00", "promo_price": "80.00", "promo_until": "2026-11-24T12:00:00Z"}


def test_effective_price_after_the_promotion_ended_and_before_the_schedule() -> None:
    later = NOW + timedelta(days=1, seconds=1)
    assert connector(later).prepare("prices", promo_price()).payload == {
        "key": "P1", "price": "100.00", "promo_price": None, "promo_until": None}


def test_effective_price_once_a_scheduled_price_took_effect() -> None:
    at = NOW + timedelta(days=2)
    assert connector(at).prepare("prices", promo_price()).payload == {
        "key": "P1", "price": "110.00", "promo_price": None, "promo_until": None}


def test_effective_price_before_a_promotion_starts_and_an_open_ended_one() -> None:
    future = Price("P2", Decimal("50.00"), Decimal("45.00"), NOW + timedelta(hours=1), None)
    assert connector().prepare("prices", future).payload["promo_price"] is None
    running = connector(NOW + timedelta(hours=2)).prepare("prices", future).payload
    assert running == {"key": "P2", "price": "50.00", "promo_price": "45.00", "promo_until": None}


def event(kind: str, **kw: object) -> OrderEvent:
    return OrderEvent(f"e-{kind}", "100001", "loja-centro", "o1", kind, NOW, **kw)  # type: ignore[arg-type]


def test_events_map_with_what_each_type_needs(su: SellerUpConnector) -> None:
    invoiced = su.prepare("order-events", event("invoiced", invoice=Invoice(NFE, "123", "1")))
    assert invoiced == Outgoing("e-invoiced", {
        "type": "invoiced", "occurred_at": "2026-11-23T12:00:00Z", "invoice_key": NFE, "invoice_number": "123",
        "tracking_code": None, "carrier": None}, {"order_id": "o1"})
    shipped = su.prepare("order-events", event("shipped", shipment=Shipment("Correios", "BR1")))
    assert (shipped.payload["carrier"], shipped.payload["tracking_code"], shipped.payload["invoice_key"]) == (
        "Correios", "BR1", None)
    assert su.prepare("order-events", event("delivered")).payload["type"] == "delivered"


@pytest.mark.parametrize("bad", [
    event("invoiced"),
    event("invoiced", invoice=Invoice("1234", "123", "1")),
    event("invoiced", invoice=Invoice(NFE + "0", "123", "1")),
    event("shipped"),
    event("shipped", shipment=Shipment("Correios", "")),
    event("shipped", shipment=Shipment("", "BR1")),
])
def test_events_without_what_seller_up_requires_are_mapping_errors(su: SellerUpConnector, bad: OrderEvent) -> None:
    with pytest.raises(MappingError):
        su.prepare("order-events", bad)


# -- batch upserts -----------------------------------------------------------------------------------
@responses.activate
def test_a_batch_with_a_rejected_item_gives_mixed_results(su: SellerUpConnector) -> None:
    responses.put(f"{SU}/v1/products", json={"results": [
        {"key": "P1", "status": "created"},
        {"key": "P2", "status": "rejected", "error": {"code": "invalid_barcode", "message": "bad EAN",
                                                      "field": "barcode"}},
        {"key": "P3", "status": "unchanged"},
        {"key": "P4", "status": "updated"}]})
    batch = [su.prepare("products", Product(f"P{i}", f"Produto {i}", True)) for i in range(1, 5)]
    results = su.push("products", batch)
    assert [(r.key, r.status) for r in results] == [("P1", "created"), ("P2", "rejected"), ("P3", "unchanged"),
                                                    ("P4", "updated")]
    assert (results[1].reason_code, results[1].reason) == ("invalid_barcode", "bad EAN (barcode)")
    call = responses.calls[0]
    assert call.request.headers["X-Api-Key"] == KEY
    assert sent_items(call) == [o.payload for o in batch]


@responses.activate
def test_results_are_matched_by_key_when_the_server_reorders_them(su: SellerUpConnector) -> None:
    responses.put(f"{SU}/v1/groups", json={"results": [
        {"key": "B", "status": "rejected", "error": {"code": "unknown_parent", "message": "no parent"}},
        {"key": "A", "status": "created"}]})
    results = su.push("groups", [Outgoing("A", {"key": "A"}), Outgoing("B", {"key": "B"})])
    assert [(r.key, r.status) for r in results] == [("A", "created"), ("B", "rejected")]


@responses.activate
def test_413_splits_the_batch_in_halves(su: SellerUpConnector) -> None:
    responses.put(f"{SU}/v1/stock", status=413, json={"error": {"code": "batch_too_large", "message": "big"}})
    responses.add_callback(responses.PUT, f"{SU}/v1/stock", callback=echo)
    batch = [su.prepare("stock", StockLevel(k, 1)) for k in "ABCD"]
    results = su.push("stock", batch)
    assert [(r.key, r.status) for r in results] == [(k, "created") for k in "ABCD"]
    assert [len(sent_items(c)) for c in responses.calls] == [4, 2, 2]


@responses.activate
def test_a_single_item_too_large_is_rejected_alone(su: SellerUpConnector) -> None:
    responses.put(f"{SU}/v1/products", status=413, json={"error": {"code": "batch_too_large", "message": "big"}})
    (only,) = su.push("products", [Outgoing("P1", {"key": "P1"})])
    assert (only.status, only.reason_code) == ("rejected", "batch_too_large")


@responses.activate
def test_batches_are_cut_at_500(su: SellerUpConnector) -> None:
    responses.add_callback(responses.PUT, f"{SU}/v1/stock", callback=echo)
    results = su.push("stock", [Outgoing(f"P{i}", {"key": f"P{i}", "available": 1}) for i in range(1001)])
    assert len(results) == 1001 and all(r.status == "created" for r in results)
    assert [len(sent_items(c)) for c in responses.calls] == [500, 500, 1]


@responses.activate
def test_a_400_refuses_the_whole_batch(su: SellerUpConnector) -> None:
    responses.put(f"{SU}/v1/groups", status=400, json={"error": {"code": "validation_error", "message": "bad"}})
    with pytest.raises(PermanentError) as err:
        su.push("groups", [Outgoing("G", {"key": "G"})])
    assert err.value.status == 400 and err.value.code == "validation_error"


@responses.activate
def test_a_results_list_that_does_not_match_the_batch_is_permanent(su: SellerUpConnector) -> None:
    responses.put(f"{SU}/v1/groups", json={"results": [{"key": "A", "status": "created"}]})
    responses.put(f"{SU}/v1/sellers", json={"results": [{"key": "X", "status": "created"},
                                                        {"key": "Y", "status": "created"}]})
    with pytest.raises(PermanentError):
        su.push("groups", [Outgoing("A", {"key": "A"}), Outgoing("B", {"key": "B"})])
    with pytest.raises(PermanentError):
        su.push("sellers", [Outgoing("A", {"key": "A"}), Outgoing("B", {"key": "B"})])


# -- one POST per record -----------------------------------------------------------------------------
@responses.activate
def test_events_results(su: SellerUpConnector) -> None:
    url = f"{SU}/v1/orders/o1/events"
    responses.post(url, status=204)
    responses.post(url, status=409, json={"error": {"code": "already_recorded", "message": "has it"}})
    responses.post(url, status=409, json={"error": {"code": "out_of_order", "message": "needs invoiced"}})
    responses.post(url, status=409, json={"error": {"code": "not_approved", "message": "draft"}})
    responses.post(url, status=422, json={"error": {"code": "validation_error", "message": "bad key",
                                                    "field": "invoice_key"}})
    responses.post(url, status=404, json={"error": {"code": "unknown_order", "message": "?"}})
    out = su.prepare("order-events", event("shipped", shipment=Shipment("Correios", "BR1")))
    results = [su.push("order-events", [out])[0] for _ in range(6)]
    assert [(r.status, r.reason_code) for r in results] == [
        ("created", None), ("exists", None), ("rejected", "out_of_order"), ("rejected", "not_approved"),
        ("rejected", "validation_error"), ("rejected", "not_found")]
    assert results[1].ok and not results[2].ok
    assert "needs invoiced" in (results[2].reason or "")
    assert json.loads(responses.calls[0].request.body) == out.payload


@responses.activate
def test_acks_and_links(su: SellerUpConnector) -> None:
    responses.post(f"{SU}/v1/orders/o1/acknowledge", status=204)
    responses.post(f"{SU}/v1/orders/o2/acknowledge", status=404, json={"error": {"code": "x", "message": "gone"}})
    responses.post(f"{SU}/v1/tablet-customers/tc1/link", status=204)
    acks = su.push("order-acks", [Outgoing("o1", {"backoffice_number": "1"}), Outgoing("o2", {"backoffice_number": "2"})])
    assert [(r.status, r.reason_code) for r in acks] == [("updated", None), ("rejected", "not_found")]
    (link,) = su.push("customer-links", [Outgoing("tc1", {"code": "C1"})])
    assert link.status == "updated"
    assert json.loads(responses.calls[-1].request.body) == {"code": "C1"}


@responses.activate
def test_the_posts_are_retried_because_they_are_safe_to_repeat(su: SellerUpConnector) -> None:
    responses.post(f"{SU}/v1/orders/o1/acknowledge", status=503, json={"error": {"code": "down", "message": "x"}})
    responses.post(f"{SU}/v1/orders/o1/acknowledge", status=204)
    (ack,) = su.push("order-acks", [Outgoing("o1", {"backoffice_number": "1"})])
    assert ack.status == "updated" and len(responses.calls) == 2


# -- feeds -------------------------------------------------------------------------------------------
def tablet_order(seq: int, **changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": f"o{seq}", "seq": seq, "number": f"T{seq}", "status": "approved", "store": "L01", "seller": "V001",
        "customer": {"code": None, "tablet_customer_id": "tc1"},
        "items": [{"key": "P1", "quantity": 2, "unit_price": "10.00", "discount": "1.00"}],
        "payments": [{"method": "CC", "amount": "19.00", "installments": 2}], "total": "19.00",
        "notes": None, "created_at": "2026-11-23T12:00:00Z"}
    return {**base, **changes}


@responses.activate
def test_orders_feed_pages_by_seq_and_stops_on_a_short_page(su: SellerUpConnector) -> None:
    responses.get(f"{SU}/v1/orders", json={"items": [tablet_order(5), tablet_order(7)]})
    responses.get(f"{SU}/v1/orders", json={"items": [tablet_order(8)]})
    pages = list(su.pull("orders", "4"))
    assert [query(c)["after"] for c in responses.calls] == [["4"], ["7"]]
    assert all(query(c)["limit"] == ["2"] for c in responses.calls)
    assert [p.cursor for p in pages] == ["7", "8"]
    assert pages[0].records[0] == Order(
        "o5", "approved", (OrderItem("P1", 2, Decimal("10.00"), Decimal("1.00")),), Decimal("19.00"),
        (OrderPayment("CC", Decimal("19.00"), 2),), number="T5", customer_code=None, channel_customer_id="tc1",
        seller_code="V001", store_code="L01", created_at=NOW, version="5")


@responses.activate
def test_orders_feed_from_the_start_and_an_empty_page(su: SellerUpConnector) -> None:
    responses.get(f"{SU}/v1/orders", json={"items": []})
    (only,) = list(su.pull("orders", None))
    assert only.records == [] and only.cursor is None
    assert query(responses.calls[0])["after"] == ["0"]


@responses.activate
def test_invalid_orders_become_bad_records(su: SellerUpConnector) -> None:
    bad = [tablet_order(1, items=[]),
           tablet_order(2, items=[{"key": "P1", "quantity": 0, "unit_price": "10.00"}]),
           tablet_order(3, items=[{"key": "P1", "quantity": 1.5, "unit_price": "10.00"}]),
           tablet_order(4, total="19,00"),
           tablet_order(5, id=None),
           tablet_order(6, items=[{"key": "P1", "quantity": 1, "unit_price": "-10.00"}]),
           tablet_order(7, items=[{"key": "P1", "quantity": 1, "unit_price": "10.00", "discount": "-5.00"}])]
    responses.get(f"{SU}/v1/orders", json={"items": bad})
    (only,) = list(connector(page_size=10).pull("orders", None))
    assert all(isinstance(r, BadRecord) for r in only.records)
    assert [(r.key, r.code) for r in only.records] == [
        ("o1", "missing_field"), ("o2", "bad_quantity"), ("o3", "bad_type"), ("o4", "bad_money"),
        ("seq:5", "missing_field"), ("o6", "negative_price"), ("o7", "negative_price")]
    assert only.cursor == "7"


@responses.activate
def test_channel_customers_feed_and_invalid_documents(su: SellerUpConnector) -> None:
    responses.get(f"{SU}/v1/tablet-customers", json={"items": [
        {"id": "tc1", "seq": 3, "document": "52998224725", "name": "Ana", "code": None, "email": "a@example.com",
         "address": {"street": "Rua A", "city": "Recife", "state": "PE"}},
        {"id": "tc2", "seq": 4, "document": "52998224724", "name": "Bia"}]})
    responses.get(f"{SU}/v1/tablet-customers", json={"items": [
        {"id": "tc3", "seq": 6, "document": "529.982.247-25", "name": "Caio"}]})
    first, second = list(su.pull("channel-customers", "2"))
    assert first.records[0] == ChannelCustomer("tc1", "52998224725", "Ana", None, "a@example.com", None,
                                               Address(street="Rua A", city="Recife", state="PE"), "3")
    assert (first.records[1].key, first.records[1].code) == ("tc2", "invalid_document")
    assert second.records[0].document == "52998224725"  # as typed on the tablet: its digits are the document
    assert [p.cursor for p in (first, second)] == ["4", "6"]
    assert [query(c)["after"] for c in responses.calls] == [["2"], ["4"]]


@pytest.mark.parametrize(("typed", "document"), [
    ("436.555.472-77", "43655547277"), (" 436 555 472 77 ", "43655547277"), ("436.555.472\u201177", "43655547277"),
    ("11.222.333/0001-81", "11222333000181"), ("11222333000181", "11222333000181")])
def test_documents_as_people_type_them_are_read_as_their_digits(typed: str, document: str) -> None:
    customer = parse_customer({"id": "tc", "seq": 1, "document": typed, "name": "Ana"})
    assert customer.document == document
    out = customer_push_out(Customer(document=typed, name="Ana", code="C1"), lambda: datetime.now(UTC))
    assert out["document"] == document


@pytest.mark.parametrize("typed", ["436.555.472-78", "436a55547277", "4365554727", "٤٣٦٥٥٥٤٧٢٧٧"])
def test_a_document_with_other_characters_or_bad_digits_is_still_refused(typed: str) -> None:
    with pytest.raises(MappingError) as caught:
        parse_customer({"id": "tc", "seq": 1, "document": typed, "name": "Ana"})
    assert caught.value.code == "invalid_document" and repr(typed[:20]) in caught.value.reason


def test_lookup_has_nothing_to_find(su: SellerUpConnector) -> None:
    assert su.lookup("orders", external_id="o1") is None


# -- wiring and the key ------------------------------------------------------------------------------
@responses.activate
def test_from_config_and_check() -> None:
    cfg = ChannelConfig("loja-sul", "sellerup", True, SU, (), http=HttpOptions(max_attempts=1),
                        options=MappingProxyType({"api_key": KEY}))
    conn = SellerUpConnector.from_config(cfg, sleep=lambda s: None)
    responses.get(f"{SU}/v1/orders", json={"items": []})
    conn.check()
    assert conn.name == "loja-sul" and conn.secrets == (KEY,) and conn.client.settings.max_attempts == 1
    assert query(responses.calls[0])["limit"] == ["1"] and responses.calls[0].request.headers["X-Api-Key"] == KEY
    conn.close()


@responses.activate
def test_the_api_key_never_appears_in_an_exception_or_a_log(su: SellerUpConnector,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    echoing = {"error": {"code": "validation_error", "message": f"bad request for key {KEY}", "field": KEY}}

    responses.get(f"{SU}/v1/orders", status=401, json={"error": {"code": "key_revoked", "message": "revoked"}})
    with pytest.raises(AuthError) as auth:
        list(su.pull("orders", None))
    assert auth.value.code == "key_revoked"
    texts.append(str(auth.value))

    responses.put(f"{SU}/v1/groups", status=400, json=echoing)
    responses.put(f"{SU}/v1/sellers", status=503, body=f"down ({KEY})", content_type="text/plain")
    responses.put(f"{SU}/v1/stock", body=requests.ConnectionError(f"reset by peer while sending {KEY}"))
    responses.put(f"{SU}/v1/products", status=200, body=f"<html>{KEY}</html>", content_type="application/json")
    for entity, kind in (("groups", PermanentError), ("sellers", TransientError), ("stock", TransientError),
                         ("products", TransientError)):
        with pytest.raises(kind) as err:
            su.push(entity, [Outgoing("X", {"key": "X"})])
        texts.append(str(err.value))

    responses.put(f"{SU}/v1/customers", json={"results": [{"key": "X", "status": "rejected", "error": echoing["error"]}]})
    responses.post(f"{SU}/v1/orders/o1/events", status=422, json=echoing)
    (rejected,) = su.push("customers", [Outgoing("X", {"key": "X"})])
    (refused,) = su.push("order-events", [Outgoing("e1", {"type": "delivered"}, {"order_id": "o1"})])
    texts += [rejected.reason or "", refused.reason or "", rejected.reason_code or ""]
    texts += [r.getMessage() for r in caplog.records]

    assert texts and all(KEY not in t for t in texts), [t for t in texts if KEY in t]
    assert any("***" in t for t in texts)
    assert issubclass(PermanentError, SyncAgentError)


def test_times_keep_the_sub_second_the_back_office_gave() -> None:
    end = datetime.fromisoformat("2026-12-09T14:36:46.701941+00:00")
    price = Price("P1", Decimal("100.00"), Decimal("80.00"), NOW - timedelta(days=1), end)
    assert connector().prepare("prices", price).payload["promo_until"] == "2026-12-09T14:36:46.701941Z"
    local = datetime.fromisoformat("2026-11-23T09:00:00.5-03:00")  # another zone: the same instant, in UTC
    out = connector().prepare("order-events", OrderEvent("e1", "100001", "loja-centro", "o1", "delivered", local))
    assert out.payload["occurred_at"] == "2026-11-23T12:00:00.500000Z"
