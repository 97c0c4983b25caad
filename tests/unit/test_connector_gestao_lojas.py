"""The back office connector against `responses`: token handling, feeds, bad items, wire shapes, results."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses

from syncagent.config import BackofficeConfig, HttpOptions, RateLimit
from syncagent.connectors.base import Outgoing
from syncagent.connectors.common import chunks, error_text, http_settings
from syncagent.connectors.gestao_lojas import GestaoLojasConnector
from syncagent.errors import AmbiguousError, AuthError, MappingError, PermanentError, TransientError
from syncagent.http import HttpSettings
from syncagent.model import (
    Address,
    BackOfficeOrder,
    BadRecord,
    Customer,
    Group,
    Order,
    OrderEvent,
    OrderItem,
    OrderPayment,
    PaymentMethod,
    Price,
    Product,
    ScheduledPrice,
    Seller,
    StockBalance,
)

BO = "http://bo.test"
SECRET = "canary-client-secret-7f3a"
T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def connector(page_size: int = 2) -> GestaoLojasConnector:
    return GestaoLojasConnector("backoffice", BO, {"client_id": "agent", "client_secret": SECRET},
                                HttpSettings(max_attempts=2), sleep=lambda s: None, page_size=page_size)


@pytest.fixture
def bo() -> Iterator[GestaoLojasConnector]:
    conn = connector()
    yield conn
    conn.close()


def token(value: str = "tok-1") -> None:
    responses.post(f"{BO}/oauth/token", json={"access_token": value, "token_type": "Bearer", "expires_in": 3600})


def query(call: responses.Call) -> dict[str, list[str]]:
    return parse_qs(urlsplit(call.request.url).query)


def token_calls() -> list[responses.Call]:
    return [c for c in responses.calls if c.request.url.endswith("/oauth/token")]


def page(items: list[object], next_cursor: str | None = None) -> dict[str, object]:
    return {"items": items, "next_cursor": next_cursor}


# -- tokens ------------------------------------------------------------------------------------------
@responses.activate
def test_token_is_fetched_once_for_several_calls(bo: GestaoLojasConnector) -> None:
    token()
    responses.get(f"{BO}/warehouses", json={"items": [{"code": "CD01", "name": "CD"}]})
    responses.get(f"{BO}/groups", json=page([]))
    bo.check()
    list(bo.pull("groups", None))
    list(bo.pull("groups", None))
    assert len(token_calls()) == 1
    form = parse_qs(token_calls()[0].request.body)
    assert form == {"grant_type": ["client_credentials"], "client_id": ["agent"], "client_secret": [SECRET]}
    assert all(c.request.headers["Authorization"] == "Bearer tok-1" for c in responses.calls[1:])


@responses.activate
def test_a_401_fetches_a_new_token_once_and_repeats_the_call(bo: GestaoLojasConnector) -> None:
    token("tok-1")
    token("tok-2")
    responses.get(f"{BO}/groups", status=401, json={"error": {"code": "token_expired", "message": "expired"}})
    responses.get(f"{BO}/groups", json=page([{"code": "G1", "description": "Roupas", "active": True}]))
    (only,) = list(bo.pull("groups", None))
    assert only.records == [Group("G1", "Roupas", True)]
    assert len(token_calls()) == 2
    gets = [c for c in responses.calls if "/groups" in c.request.url]
    assert [c.request.headers["Authorization"] for c in gets] == ["Bearer tok-1", "Bearer tok-2"]


@responses.activate
def test_a_second_401_is_an_auth_error_without_the_secret(bo: GestaoLojasConnector) -> None:
    token("tok-1")
    token("tok-2")
    responses.get(f"{BO}/groups", status=401, json={"error": {"code": "invalid_token", "message": "no"}})
    with pytest.raises(AuthError) as err:
        list(bo.pull("groups", None))
    assert len(token_calls()) == 2
    assert SECRET not in str(err.value) and "tok-2" not in str(err.value)


# -- feeds -------------------------------------------------------------------------------------------
@responses.activate
def test_feed_follows_cursors_and_stops_at_a_null_next_cursor(bo: GestaoLojasConnector) -> None:
    token()
    seller = {"code": "V1", "name": "Ana", "active": True, "store_code": "L01"}
    responses.get(f"{BO}/sellers", json=page([seller, {**seller, "code": "V2"}], "c1"))
    responses.get(f"{BO}/sellers", json=page([{**seller, "code": "V3"}, {**seller, "code": "V4"}], "c2"))
    responses.get(f"{BO}/sellers", json=page([{**seller, "code": "V5"}], None))
    pages = list(bo.pull("sellers", "c0"))
    assert [p.cursor for p in pages] == ["c1", "c2", None]
    assert [r.code for p in pages for r in p.records] == ["V1", "V2", "V3", "V4", "V5"]
    assert pages[0].records[0] == Seller("V1", "Ana", True, None, "L01")
    gets = [c for c in responses.calls if "/sellers" in c.request.url]
    assert [query(c).get("cursor") for c in gets] == [["c0"], ["c1"], ["c2"]]
    assert all(query(c)["limit"] == ["2"] for c in gets)


@responses.activate
def test_feed_from_the_beginning_sends_no_cursor_and_an_empty_feed_yields_one_page(bo: GestaoLojasConnector) -> None:
    token()
    responses.get(f"{BO}/products", json=page([]))
    pages = list(bo.pull("products", None))
    assert pages == [pages[0]] and pages[0].records == [] and pages[0].cursor is None
    assert "cursor" not in query(responses.calls[-1])


@responses.activate
def test_stock_sends_each_warehouse_and_prices_the_price_list(bo: GestaoLojasConnector) -> None:
    token()
    responses.get(f"{BO}/stock", json=page([{"sku": "P1", "warehouse": "CD01", "available": 7, "reserved": 2},
                                            {"sku": "P1", "warehouse": "LJ01", "available": -1}]))
    responses.get(f"{BO}/prices", json=page([]))
    (stock,) = list(bo.pull("stock", None, {"warehouses": ["CD01", "LJ01"]}))
    assert stock.records == [StockBalance("P1", "CD01", 7, 2), StockBalance("P1", "LJ01", -1, 0)]
    assert query(responses.calls[1])["warehouse"] == ["CD01", "LJ01"]
    list(bo.pull("prices", None, {"price_list": "atacado", "warehouses": ["CD01"]}))
    assert query(responses.calls[2])["price_list"] == ["atacado"] and "warehouse" not in query(responses.calls[2])


@responses.activate
def test_bad_items_become_bad_records_and_the_page_goes_on(bo: GestaoLojasConnector) -> None:
    token()
    responses.get(f"{BO}/products", json=page([
        {"code": "P1", "description": "Camiseta", "active": True, "barcode": "7890000000000", "unit": "UN"},
        {"code": "P2", "active": True},
        {"code": "P3", "description": "Boné", "active": "yes"},
        {"description": "sem código", "active": True},
        "not an object",
    ]))
    responses.get(f"{BO}/prices", json=page([
        {"sku": "P1", "price_list": "default", "list_price": "129.90"},
        {"sku": "P2", "price_list": "default", "list_price": "abc"},
        {"sku": "P3", "price_list": "default"},
        {"sku": "P4", "price_list": "default", "list_price": 12.5},
    ]))
    responses.get(f"{BO}/stock", json=page([{"sku": "P1", "warehouse": "CD01", "available": 1.5},
                                            {"sku": "P2", "warehouse": "CD01", "available": True}]))
    (products,) = list(bo.pull("products", None))
    good, no_name, wrong_type, no_code, junk = products.records
    assert good == Product("P1", "Camiseta", True, barcode="7890000000000")  # a bad EAN is not a feed error
    assert (no_name.key, no_name.code) == ("P2", "missing_field") and "description" in no_name.reason
    assert (wrong_type.key, wrong_type.code) == ("P3", "bad_type") and wrong_type.raw["code"] == "P3"
    assert isinstance(no_code, BadRecord) and (no_code.key, no_code.code) == ("?", "missing_field")
    assert isinstance(junk, BadRecord) and junk.key == "?"
    (prices,) = list(bo.pull("prices", None))
    assert prices.records[0] == Price("P1", Decimal("129.90"))
    assert [(r.key, r.code) for r in prices.records[1:]] == [("P2", "bad_money"), ("P3", "missing_field"),
                                                              ("P4", "bad_money")]
    (stock,) = list(bo.pull("stock", None))
    assert [(r.key, r.code) for r in stock.records] == [("P1", "bad_type"), ("P2", "bad_type")]


@responses.activate
def test_every_feed_parses_into_the_model(bo: GestaoLojasConnector) -> None:
    token()
    responses.get(f"{BO}/prices", json=page([{
        "sku": "P1", "price_list": "default", "list_price": "129.90", "promo_price": "99.90",
        "promo_start": "2026-11-20T00:00:00Z", "promo_end": "2026-12-01T00:00:00-03:00",
        "scheduled": [{"list_price": "149.90", "starts_at": "2027-02-01T00:00:00Z"},
                      {"list_price": "139.90", "starts_at": "2027-01-01T00:00:00Z"}]}]))
    responses.get(f"{BO}/customers", json=page([{
        "code": "C1", "document": "52998224725", "name": "Ana Souza", "email": "ana@example.com", "phone": None,
        "address": {"street": "Rua A", "number": "10", "city": "Recife", "state": "PE", "zip": "50000000"}}]))
    responses.get(f"{BO}/payment-methods", json=page([
        {"code": "CC", "description": "Cartão", "type": "credit_card", "max_installments": 10, "active": True}]))
    responses.get(f"{BO}/groups", json=page([{"code": "G2", "description": "Camisetas", "parent_code": "G1",
                                              "active": False}]))
    (prices,) = list(bo.pull("prices", None))
    assert prices.records == [Price(
        "P1", Decimal("129.90"), Decimal("99.90"), datetime(2026, 11, 20, tzinfo=UTC),
        datetime(2026, 12, 1, 3, tzinfo=UTC),
        (ScheduledPrice(Decimal("139.90"), datetime(2027, 1, 1, tzinfo=UTC)),
         ScheduledPrice(Decimal("149.90"), datetime(2027, 2, 1, tzinfo=UTC))))]
    (customers,) = list(bo.pull("customers", None))
    assert customers.records == [Customer("52998224725", "Ana Souza", "C1", "ana@example.com", address=Address(
        street="Rua A", number="10", city="Recife", state="PE", zip="50000000"))]
    (methods,) = list(bo.pull("payment-methods", None))
    assert methods.records == [PaymentMethod("CC", "Cartão", "credit_card", True, 10)]
    (groups,) = list(bo.pull("groups", None))
    assert groups.records == [Group("G2", "Camisetas", False, "G1")]


@responses.activate
def test_order_events_carry_invoice_and_shipment(bo: GestaoLojasConnector) -> None:
    token()
    key = "2" * 44
    responses.get(f"{BO}/order-events", json=page([
        {"id": "e1", "order_number": "100001", "external_id": "o1", "channel": "loja", "type": "invoiced",
         "occurred_at": "2026-11-23T12:00:00Z",
         "invoice": {"key": key, "number": "123", "series": "1", "issued_at": "2026-11-23T11:59:00Z",
                     "total": "19.00"}},
        {"id": "e2", "order_number": "100001", "external_id": "o1", "channel": "loja", "type": "shipped",
         "occurred_at": "2026-11-24T12:00:00Z",
         "shipment": {"carrier": "Correios", "tracking_code": "BR123", "tracking_url": None}},
        {"id": "e3", "order_number": "100001", "external_id": "o1", "channel": "loja", "type": "lost",
         "occurred_at": "2026-11-24T12:00:00Z"},
        {"id": "e4", "order_number": "100001", "channel": "loja", "type": "delivered",
         "occurred_at": "2026-11-24T12:00:00Z"},
    ]))
    (events,) = list(bo.pull("order-events", None))
    invoiced, shipped, unknown, orphan = events.records
    assert isinstance(invoiced, OrderEvent) and invoiced.remote_order_id == "o1" and invoiced.order_number == "100001"
    assert invoiced.invoice is not None and invoiced.invoice.key == key and invoiced.invoice.total == Decimal("19.00")
    assert invoiced.occurred_at == T0
    assert shipped.shipment is not None and (shipped.shipment.carrier, shipped.shipment.tracking_code) == (
        "Correios", "BR123")
    assert (unknown.key, unknown.code) == ("e3", "bad_value")
    assert (orphan.key, orphan.code) == ("e4", "missing_field")


@responses.activate
def test_an_answer_without_an_items_list_is_a_transient_bad_response(bo: GestaoLojasConnector) -> None:
    token()
    responses.get(f"{BO}/products", json={"data": []})
    with pytest.raises(TransientError) as err:
        list(bo.pull("products", None))
    assert err.value.code == "bad_response"


@responses.activate
def test_a_refused_feed_call_is_permanent_and_never_echoes_the_secret(bo: GestaoLojasConnector) -> None:
    token()
    responses.get(f"{BO}/products", status=400,
                  json={"error": {"code": "bad_cursor", "message": f"cursor unknown for {SECRET}"}})
    with pytest.raises(PermanentError) as err:
        list(bo.pull("products", "zzz"))
    assert err.value.code == "bad_cursor" and SECRET not in str(err.value)


# -- orders ------------------------------------------------------------------------------------------
def order(**changes: object) -> Order:
    base = Order("o1", "approved", (OrderItem("P1", 2, Decimal("10.00"), Decimal("1.00")),
                                    OrderItem("P2", 1, Decimal("5.50"))), Decimal("24.50"),
                 (OrderPayment("CC", Decimal("20.00"), 3), OrderPayment("PIX", Decimal("4.50"))),
                 number="T-7", customer_code=None, channel_customer_id="tc1", seller_code="V001", store_code="L01",
                 shipping=Decimal("5.00"), notes="entregar à tarde", created_at=T0, version="9")
    return replace(base, **changes)


def test_order_in_has_the_exact_contract_shape(bo: GestaoLojasConnector) -> None:
    out = bo.prepare("orders", BackOfficeOrder("loja-centro", order(), "C000042", "LJ01"))
    assert out.key == "o1"
    assert out.payload == {
        "external_id": "o1", "channel": "loja-centro", "customer_code": "C000042", "seller_code": "V001",
        "store_code": "L01", "warehouse": "LJ01", "created_at": "2026-11-23T12:00:00Z",
        "items": [{"sku": "P1", "quantity": 2, "unit_price": "10.00", "discount": "1.00"},
                  {"sku": "P2", "quantity": 1, "unit_price": "5.50", "discount": "0.00"}],
        "payments": [{"method_code": "CC", "amount": "20.00", "installments": 3},
                     {"method_code": "PIX", "amount": "4.50", "installments": 1}],
        "shipping": "5.00", "total": "24.50", "notes": "entregar à tarde"}
    assert json.loads(json.dumps(out.payload)) == out.payload
    without_time = bo.prepare("orders", BackOfficeOrder("loja-centro", order(created_at=None), "C1", None)).payload
    assert "created_at" not in without_time and without_time["warehouse"] is None


def test_an_order_the_back_office_cannot_take_is_a_mapping_error(bo: GestaoLojasConnector) -> None:
    with pytest.raises(MappingError) as err:
        bo.prepare("orders", BackOfficeOrder("loja", order(), "", "LJ01"))
    assert err.value.code == "missing_field"
    with pytest.raises(MappingError):
        bo.prepare("orders", BackOfficeOrder("loja", order(items=()), "C1", "LJ01"))


@responses.activate
def test_order_created_gives_the_number_and_a_422_is_rejected_with_the_server_reason(
        bo: GestaoLojasConnector) -> None:
    token()
    responses.post(f"{BO}/orders", status=201, json={"number": "100001", "status": "open"})
    responses.post(f"{BO}/orders", status=422, json={"error": {
        "code": "validation_error", "message": "invalid order",
        "details": [{"field": "items[0].sku", "message": "unknown product P1"}]}})
    out = bo.prepare("orders", BackOfficeOrder("loja", order(), "C1", "LJ01"))
    (created,) = bo.push("orders", [out])
    assert (created.key, created.status, created.remote_id) == ("o1", "created", "100001")
    (rejected,) = bo.push("orders", [out])
    assert (rejected.status, rejected.reason_code, rejected.ok) == ("rejected", "validation_error", False)
    assert "invalid order" in (rejected.reason or "") and "items[0].sku: unknown product P1" in (rejected.reason or "")
    assert json.loads(responses.calls[1].request.body) == out.payload


@responses.activate
def test_a_lost_order_answer_is_ambiguous_and_never_repeated(bo: GestaoLojasConnector) -> None:
    token()
    responses.post(f"{BO}/orders", status=502, json={"error": {"code": "bad_gateway", "message": "x"}})
    responses.post(f"{BO}/orders", status=201, json={"number": "100002"})
    out = bo.prepare("orders", BackOfficeOrder("loja", order(), "C1", "LJ01"))
    with pytest.raises(AmbiguousError):
        bo.push("orders", [out])
    assert len([c for c in responses.calls if c.request.url.endswith("/orders")]) == 1


@responses.activate
def test_a_201_without_a_number_is_ambiguous(bo: GestaoLojasConnector) -> None:
    token()
    responses.post(f"{BO}/orders", status=201, json={"status": "open"})
    with pytest.raises(AmbiguousError):
        bo.push("orders", [Outgoing("o1", {"external_id": "o1"})])


@responses.activate
def test_lookup_order_by_external_id_and_channel(bo: GestaoLojasConnector) -> None:
    token()
    responses.get(f"{BO}/orders", json={"items": [{"number": 100007, "status": "open", "external_id": "o1"}]})
    responses.get(f"{BO}/orders", json={"items": []})
    assert bo.lookup("orders", external_id="o1", channel="loja") == {"number": "100007", "status": "open"}
    assert query(responses.calls[-1]) == {"external_id": ["o1"], "channel": ["loja"]}
    assert bo.lookup("orders", external_id="o2", channel="loja") is None


# -- customers and cancels ---------------------------------------------------------------------------
def test_customer_for_the_back_office_has_no_code(bo: GestaoLojasConnector) -> None:
    customer = Customer("52998224725", "Ana Souza", code="ignored", email="ana@example.com",
                        address=Address(city="Recife", state="PE"))
    out = bo.prepare("customers", customer)
    assert out.key == "52998224725"
    assert out.payload == {"document": "52998224725", "name": "Ana Souza", "email": "ana@example.com",
                           "phone": None, "address": {"city": "Recife", "state": "PE", "country": "BR"}}


@responses.activate
def test_customer_created_duplicate_and_invalid(bo: GestaoLojasConnector) -> None:
    token()
    responses.post(f"{BO}/customers", status=201, json={"code": "C000050", "document": "52998224725", "name": "A"})
    responses.post(f"{BO}/customers", status=409, json={"error": {
        "code": "duplicate_document", "message": "document exists", "existing_code": "C000042"}})
    responses.post(f"{BO}/customers", status=422, json={"error": {
        "code": "invalid_document", "message": "check digits do not match", "field": "document"}})
    out = Outgoing("52998224725", {"document": "52998224725", "name": "Ana"})
    created, exists, invalid = bo.push("customers", [out, out, out])
    assert (created.status, created.remote_id) == ("created", "C000050")
    assert (exists.status, exists.remote_id, exists.ok) == ("exists", "C000042", True)
    assert (invalid.status, invalid.reason_code) == ("rejected", "invalid_document")
    assert invalid.reason == "invalid_document: check digits do not match (document)"


@responses.activate
def test_lookup_customer_by_document(bo: GestaoLojasConnector) -> None:
    token()
    responses.get(f"{BO}/customers", json=page([{"code": "C1", "document": "52998224725", "name": "Ana"}]))
    responses.get(f"{BO}/customers", json=page([]))
    assert bo.lookup("customers", document="52998224725") == Customer("52998224725", "Ana", "C1")
    assert query(responses.calls[-1])["document"] == ["52998224725"]
    assert bo.lookup("customers", document="11144477735") is None
    assert bo.lookup("orders-nope", code="P1") is None  # nothing else is looked up


@responses.activate
def test_lookup_product_by_code_and_payment_method_in_its_table(bo: GestaoLojasConnector) -> None:
    token()
    responses.get(f"{BO}/products/P%201", json={"code": "P 1", "description": "Camiseta", "active": True})
    responses.get(f"{BO}/products/P2", status=404, json={"error": {"code": "not_found", "message": "no product"}})
    found = bo.lookup("products", code="P 1")
    assert found is not None and (found.code, found.name) == ("P 1", "Camiseta")
    assert bo.lookup("products", code="P2") is None
    responses.get(f"{BO}/payment-methods", json=page([{"code": "PIX", "description": "Pix", "type": "pix",
                                                        "active": True}]))
    assert bo.lookup("payment-methods", code="PIX").code == "PIX"
    assert bo.lookup("payment-methods", code="BOLETO") is None


@responses.activate
def test_order_cancels(bo: GestaoLojasConnector) -> None:
    token()
    responses.post(f"{BO}/orders/100001/cancel", status=200, json={"number": "100001", "status": "cancelled"})
    responses.post(f"{BO}/orders/100002/cancel", status=409, json={"error": {"code": "conflict",
                                                                             "message": "already invoiced"}})
    responses.post(f"{BO}/orders/100003/cancel", status=404, json={"error": {"code": "missing", "message": "?"}})
    batch = [bo.prepare("order-cancels", {"number": n, "reason": "cliente desistiu"})
             for n in ("100001", "100002", "100003")]
    assert batch[0] == Outgoing("100001", {"reason": "cliente desistiu"})
    done, invoiced, missing = bo.push("order-cancels", batch)
    assert done.status == "updated"
    assert (invoiced.status, invoiced.reason_code) == ("rejected", "not_cancellable")
    assert "already invoiced" in (invoiced.reason or "")
    assert (missing.status, missing.reason_code) == ("rejected", "not_found")


# -- wiring ------------------------------------------------------------------------------------------
def test_from_config_names_the_back_office_and_maps_http_options() -> None:
    cfg = BackofficeConfig("gestao-lojas", BO, HttpOptions(read_timeout=12, max_attempts=3,
                                                           rate_limit=RateLimit(10, 5), verify_tls=False),
                           {"client_id": "agent", "client_secret": SECRET})
    conn = GestaoLojasConnector.from_config(cfg, sleep=lambda s: None)
    try:
        assert conn.name == "backoffice" and conn.secrets == (SECRET,) and SECRET in conn.client.secrets
        settings = conn.client.settings
        assert (settings.read_timeout, settings.max_attempts, settings.rate_per_second, settings.rate_burst,
                settings.verify_tls) == (12, 3, 10, 5, False)
    finally:
        conn.close()
    assert http_settings(HttpOptions()).rate_per_second is None


@responses.activate
def test_check_fetches_a_token_and_reads_the_warehouses(bo: GestaoLojasConnector) -> None:
    responses.post(f"{BO}/oauth/token", status=401, json={"error": {"code": "invalid_client", "message": "no"}})
    with pytest.raises(AuthError) as err:
        bo.check()
    assert SECRET not in str(err.value)
    responses.replace(responses.POST, f"{BO}/oauth/token",
                      json={"access_token": "t", "token_type": "Bearer", "expires_in": 60})
    responses.get(f"{BO}/warehouses", json={"items": []})
    bo.check()
    assert responses.calls[-1].request.url == f"{BO}/warehouses"


@responses.activate
def test_connection_errors_are_transient_and_scrubbed(bo: GestaoLojasConnector) -> None:
    token()
    responses.get(f"{BO}/products", body=requests.ConnectionError(f"reset while sending {SECRET}"))
    with pytest.raises(TransientError) as err:
        list(bo.pull("products", None))
    assert SECRET not in str(err.value)


def test_shared_helpers() -> None:
    assert [list(c) for c in chunks([1, 2, 3, 4, 5], 2)] == [[1, 2], [3, 4], [5]]
    assert error_text({"code": "c", "message": "m", "field": "f"}) == "c: m (f)"
    assert error_text({"message": "m", "field": "f"}, with_code=False) == "m (f)"
    assert error_text(None) == "no message"


@responses.activate
def test_a_refused_order_names_what_the_back_office_does_not_know_as_data(bo: GestaoLojasConnector) -> None:
    token()
    details = [{"field": "items[1].sku", "message": "unknown product 'wrong quote"},
               {"field": "payments[0].method_code", "message": "unknown payment method 'PIXX'"},
               {"field": "items[0].quantity", "message": "must be at least 1"},
               {"field": "seller_code", "message": "not known here"}]
    responses.post(f"{BO}/orders", status=422, json={"error": {"code": "validation_error", "message": "invalid order",
                                                               "details": details}})
    sent = {"external_id": "o1", "items": [{"sku": "P1"}, {"sku": "P-NEW"}], "seller_code": "V9",
            "payments": [{"method_code": "PIXX"}]}
    (res,) = bo.push("orders", [Outgoing("o1", sent)])
    # the references come from the record sent, by the field the details name, not from the message's wording
    assert not res.ok and res.missing == (("product", "P-NEW"), ("payment method", "PIXX"), ("seller", "V9"))
