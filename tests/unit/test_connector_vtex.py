"""The VTEX connector against `responses`: URLs, headers, mapping, per-record results, the feed's handles."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
import responses

from syncagent.connectors.vtex import VtexConnector, WarehouseLevel, api_roots, event_out, parse_order
from syncagent.errors import AuthError, MappingError, PermanentError, TransientError
from syncagent.http import HttpSettings
from syncagent.model import (
    BadRecord,
    Invoice,
    Order,
    OrderEvent,
    Price,
    Product,
    ScheduledPrice,
    Shipment,
    StockLevel,
)

BASE = "http://vtex.test"
KEY, TOKEN = "vtexappkey-canary-0001", "canary-token-0002"
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
FEED = f"{BASE}/api/orders/feed"


def conn(now: datetime = NOW, sleeps: list[float] | None = None, **options: Any) -> VtexConnector:
    opts = {"account": "loja", "app_key": KEY, "app_token": TOKEN, "category_map": {"VEST": 7},
            "brand_map": {"Hering": 2000001}, "warehouse_id": "1_1", "configure_feed": False, **options}
    return VtexConnector("vtex", BASE, opts, HttpSettings(max_attempts=2), clock=lambda: now,
                         sleep=sleeps.append if sleeps is not None else (lambda s: None))


def product(**kw: Any) -> Product:
    fields = {"code": "P1", "name": "Camiseta", "active": True, "barcode": "7890000000017", "brand": "Hering",
              "group_code": "VEST", "unit": "UN", "ncm": "61091000", "weight_kg": "0.250", "height_cm": "3",
              "width_cm": "30", "length_cm": "40"} | kw
    return Product(**fields)


def body(call: Any) -> Any:
    return json.loads(call.request.body)


# -- where and how it calls ---------------------------------------------------------------------------
def test_api_roots_follow_vtex_hosts_unless_base_url_or_overrides_say_otherwise() -> None:
    real = api_roots("loja", "vtexcommercestable", "https://loja.vtexcommercestable.com.br")
    assert real == {"catalog": "https://loja.vtexcommercestable.com.br",
                    "logistics": "https://loja.vtexcommercestable.com.br",
                    "orders": "https://loja.vtexcommercestable.com.br", "pricing": "https://api.vtex.com/loja"}
    sim = api_roots("loja", "vtexcommercestable", "http://127.0.0.1:9000/")
    assert set(sim.values()) == {"http://127.0.0.1:9000"}
    mixed = api_roots("loja", "vtexcommercestable", None, {"pricing": "http://prism:4010/"})
    assert mixed["pricing"] == "http://prism:4010" and mixed["catalog"].startswith("https://loja.")
    with pytest.raises(PermanentError):
        api_roots("loja", "vtexcommercestable", None, {"prices": "http://x"})


@responses.activate
def test_every_call_carries_the_key_pair_and_the_headers_the_spec_requires() -> None:
    responses.get(f"{BASE}/api/logistics/pvt/configuration/warehouses", json=[{"id": "1_1", "name": "CD"}])
    conn().check()
    headers = responses.calls[0].request.headers
    assert (headers["X-VTEX-API-AppKey"], headers["X-VTEX-API-AppToken"]) == (KEY, TOKEN)
    assert (headers["Accept"], headers["Content-Type"]) == ("application/json", "application/json")


@responses.activate
def test_check_names_a_configured_warehouse_vtex_does_not_have() -> None:
    responses.get(f"{BASE}/api/logistics/pvt/configuration/warehouses", json=[{"id": "1_1"}])
    with pytest.raises(PermanentError, match="no warehouse lj9"):
        conn(warehouse_map={"lj9": ["LJ09"]}).check()


@responses.activate
def test_rejected_key_is_an_auth_error_without_the_secret() -> None:
    responses.get(f"{BASE}/api/logistics/pvt/configuration/warehouses", status=401,
                  json={"error": {"code": "1", "message": f"bad key {KEY}"}})
    with pytest.raises(AuthError) as caught:
        conn().check()
    assert KEY not in str(caught.value) and TOKEN not in str(caught.value)


def test_from_config_takes_the_order_statuses_of_the_orders_flow() -> None:
    flow = SimpleNamespace(options={"statuses": ("ready-for-handling", "payment-approved")})
    cfg = SimpleNamespace(name="v", base_url=BASE, options={"account": "loja", "app_key": KEY, "app_token": TOKEN},
                          http=SimpleNamespace(connect_timeout=1.0, read_timeout=1.0, max_attempts=1,
                                               rate_limit=None, verify_tls=True, ca_bundle=None, total_timeout=None),
                          flow=lambda name: flow if name == "orders" else None)
    assert VtexConnector.from_config(cfg).importable == ("ready-for-handling", "payment-approved")


# -- mapping --------------------------------------------------------------------------------------------
def test_product_mapping_owns_its_fields_and_needs_category_brand_and_measures() -> None:
    out = conn().prepare("products", product(unit="PAR"))
    assert out.key == "P1"
    assert out.payload["product"] == {"Name": "Camiseta", "CategoryId": 7, "BrandId": 2000001, "RefId": "P1",
                                      "IsVisible": True, "IsActive": True, "Title": "Camiseta",
                                      "TaxCode": "61091000"}
    sku = out.payload["sku"]
    assert (sku["PackagedWeightKg"], sku["PackagedHeight"], sku["MeasurementUnit"]) == (250, 3.0, "un")
    assert out.payload["ean"] == "7890000000017"
    for bad, code in ((product(group_code="X"), "unmapped_category"), (product(brand="Y"), "unmapped_brand"),
                      (product(weight_kg=None), "missing_field"), (product(height_cm="0"), "bad_value")):
        with pytest.raises(MappingError) as caught:
            conn().prepare("products", bad)
        assert caught.value.code == code
    assert conn(category_id=3, brand_id=9).prepare("products", product(group_code="X", brand="Y")).payload[
        "product"]["CategoryId"] == 3


def test_price_mapping_sends_the_base_price_now_and_fixed_prices_ahead() -> None:
    price = Price("P1", Decimal("100.00"), Decimal("80.00"), NOW - timedelta(days=2), NOW + timedelta(days=5),
                  (ScheduledPrice(Decimal("110.00"), NOW + timedelta(days=10)),))
    payload = conn(sales_channel="3").prepare("prices", price).payload
    assert (payload["basePrice"], payload["listPrice"], payload["markup"]) == (100.0, 100.0, 0)
    assert [(f["tradePolicyId"], f["value"], f["listPrice"], f["dateRange"]) for f in payload["fixedPrices"]] == [
        ("3", 80.0, 100.0, {"from": "2026-11-21T12:00:00Z", "to": "2026-11-28T12:00:00Z"}),
        ("3", 110.0, 110.0, {"from": "2026-12-03T12:00:00Z", "to": "2099-12-31T23:59:59Z"}),
    ]
    # the same price an hour later maps to the same payload: nothing is re-sent until a boundary passes
    assert conn(NOW + timedelta(hours=1)).prepare("prices", price).payload == conn().prepare("prices", price).payload
    later = conn(NOW + timedelta(days=11)).prepare("prices", price).payload
    assert (later["basePrice"], later["fixedPrices"]) == (110.0, [])


def test_a_future_promotion_inside_a_scheduled_change() -> None:
    price = Price("P1", Decimal("50.00"), Decimal("40.00"), NOW + timedelta(days=1), None,
                  (ScheduledPrice(Decimal("60.00"), NOW + timedelta(days=3)),))
    fixed = conn().prepare("prices", price).payload["fixedPrices"]
    assert [(f["value"], f["listPrice"], f["dateRange"]["from"][:10], f["dateRange"]["to"][:10]) for f in fixed] == [
        (40.0, 50.0, "2026-11-24", "2026-11-26"), (40.0, 60.0, "2026-11-26", "2099-12-31")]


def test_stock_goes_to_one_warehouse_or_to_each_mapped_one() -> None:
    assert conn().prepare("stock", StockLevel("P1", -3)).payload == {"code": "P1", "warehouse": "1_1", "quantity": 0}
    single = conn(warehouse_id=None, warehouse_map={"cd": ["CD01", "LJ01"]})
    assert single.prepare("stock", StockLevel("P1", 5)).payload["warehouse"] == "cd"
    several = conn(warehouse_id=None, warehouse_map={"cd": ["CD01"], "lj": ["LJ01"]})
    assert several.stock_locations() == {"cd": ("CD01",), "lj": ("LJ01",)}
    out = several.prepare("stock", WarehouseLevel("P1", 5, "lj"))
    assert (out.key, out.payload["warehouse"]) == ("P1@lj", "lj")
    for connector, record, code in ((several, StockLevel("P1", 5), "needs_per_warehouse_levels"),
                                    (several, WarehouseLevel("P1", 5, "zz"), "unknown_warehouse"),
                                    (conn(warehouse_id=None), StockLevel("P1", 5), "no_warehouse")):
        with pytest.raises(MappingError) as caught:
            connector.prepare("stock", record)
        assert caught.value.code == code


def event(kind: str, **kw: Any) -> OrderEvent:
    return OrderEvent(f"e-{kind}", "1", "vtex", "v1-01", kind, NOW, **kw)


def test_events_carry_what_vtex_needs_or_are_mapping_errors() -> None:
    key = "3" * 44
    out = event_out(event("invoiced", invoice=Invoice(key, "77", "1", NOW, Decimal("10.50"))))
    assert out.payload | {} == {"type": "invoiced", "invoiceNumber": "77", "invoiceKey": key,
                                "issuanceDate": "2026-11-23T12:00:00Z", "invoiceValue": 1050, "invoiceUrl": None}
    assert out.meta == {"order_id": "v1-01"}
    delivered = event_out(event("delivered", delivered_at=datetime(2026, 11, 25, 9, 5, tzinfo=UTC)))
    assert delivered.payload["deliveredDate"] == "2026-11-25 09:05"
    for bad in (event("invoiced", invoice=Invoice("123", "77", "1")), event("invoiced"), event("shipped"),
                event("shipped", shipment=Shipment("", "BR1"))):
        with pytest.raises(MappingError):
            event_out(bad)


# -- products -----------------------------------------------------------------------------------------
CAT = f"{BASE}/api/catalog"


@responses.activate
def test_unknown_refid_answered_null_creates_product_sku_and_ean() -> None:
    # ProductbyRefId answers 200 `null` for an unknown RefId (VTEX's known issue): that is "not found"
    responses.get(f"{BASE}/api/catalog_system/pvt/products/productgetbyrefid/P1", body="null",
                  content_type="application/json")
    responses.post(f"{CAT}/pvt/product", json={"Id": 11, "Name": "Camiseta"})
    responses.get(f"{CAT}/pvt/stockkeepingunit", status=404, body="Sku not found")
    responses.post(f"{CAT}/pvt/stockkeepingunit", json={"Id": 1001})
    responses.get(f"{CAT}/pvt/stockkeepingunit/1001/ean", json=[])
    responses.post(f"{CAT}/pvt/stockkeepingunit/1001/ean/7890000000017")
    c = conn()
    (result,) = c.push("products", [c.prepare("products", product())])
    assert (result.status, result.remote_id) == ("created", "1001")
    sku_body = body(responses.calls[3])
    assert sku_body["ProductId"] == 11 and sku_body["IsActive"] is False and sku_body["ActivateIfPossible"] is True
    assert c._sku_ids == {"P1": 1001}


@responses.activate
def test_existing_product_is_updated_over_what_vtex_holds() -> None:
    held = {"Id": 11, "Name": "Old", "CategoryId": 7, "BrandId": 2000001, "RefId": "P1", "IsVisible": True,
            "IsActive": True, "Title": "Old", "TaxCode": "61091000", "Description": "written in VTEX",
            "LinkId": "old", "ListStoreId": [1]}
    responses.get(f"{BASE}/api/catalog_system/pvt/products/productgetbyrefid/P1", json=held)
    responses.put(f"{CAT}/pvt/product/11", json=held)
    sku = {"Id": 1001, "ProductId": 11, **conn().prepare("products", product()).payload["sku"]}
    responses.get(f"{CAT}/pvt/stockkeepingunit", json=sku)
    responses.get(f"{CAT}/pvt/stockkeepingunit/1001/ean", json=["7890000000017"])
    c = conn()
    (result,) = c.push("products", [c.prepare("products", product())])
    assert (result.status, result.remote_id) == ("updated", "1001")
    sent = body(responses.calls[1])
    assert sent["Name"] == "Camiseta" and sent["Description"] == "written in VTEX" and sent["LinkId"] == "old"
    assert "Id" not in sent and "ListStoreId" not in sent
    assert len(responses.calls) == 4  # the SKU and its EAN were already right: no write


@responses.activate
def test_a_refused_product_is_rejected_and_a_server_error_fails_the_batch() -> None:
    responses.get(f"{BASE}/api/catalog_system/pvt/products/productgetbyrefid/P1", status=404)
    responses.post(f"{CAT}/pvt/product", status=400, body="CategoryId 7 does not exist")
    c = conn()
    (result,) = c.push("products", [c.prepare("products", product())])
    assert result.status == "rejected" and result.reason_code == "http_400"
    assert "CategoryId 7 does not exist" in (result.reason or "")
    responses.replace(responses.POST, f"{CAT}/pvt/product", status=503)
    with pytest.raises(TransientError):  # POST create is not idempotent: the engine retries the step later
        c.push("products", [c.prepare("products", product())])


# -- prices and stock ---------------------------------------------------------------------------------
@responses.activate
def test_price_keeps_fixed_prices_of_other_trade_policies_and_remembers_the_sku_id() -> None:
    responses.get(f"{BASE}/api/catalog_system/pvt/sku/stockkeepingunitidbyrefid/P1", json="1001")
    other = {"tradePolicyId": "2", "value": 5.0, "listPrice": None, "minQuantity": 1}
    ours = {"tradePolicyId": "1", "value": 1.0, "listPrice": None, "minQuantity": 1}
    responses.get(f"{BASE}/pricing/prices/1001/fixed", json=[other, ours])
    responses.put(f"{BASE}/pricing/prices/1001")
    c = conn()
    for _ in range(2):
        (result,) = c.push("prices", [c.prepare("prices", Price("P1", Decimal("9.90")))])
        assert (result.status, result.remote_id) == ("updated", "1001")
    sent = body(responses.calls[2])
    assert sent == {"basePrice": 9.9, "listPrice": 9.9, "markup": 0, "fixedPrices": [other]}
    assert len([c for c in responses.calls if "stockkeepingunitidbyrefid" in c.request.url]) == 1


@responses.activate
def test_stock_423_locked_is_sent_again_after_a_wait() -> None:
    sleeps: list[float] = []
    c = conn(sleeps=sleeps)
    c._sku_ids["P1"] = 1001
    url = f"{BASE}/api/logistics/pvt/inventory/skus/1001/warehouses/1_1"
    responses.put(url, status=423, body="Unable to acquire lock", content_type="text/plain")
    responses.put(url, json=True)
    (result,) = c.push("stock", [c.prepare("stock", StockLevel("P1", 8))])
    assert result.status == "updated" and sleeps == [2.0]
    assert body(responses.calls[1]) == {"quantity": 8, "unlimitedQuantity": False, "leadTime": "00.00:00:00"}


@responses.activate
def test_a_missing_permission_fails_the_step_instead_of_quarantining_records() -> None:
    responses.get(f"{BASE}/api/catalog_system/pvt/sku/stockkeepingunitidbyrefid/P1", status=403,
                  body="Forbidden", content_type="text/plain")
    c = conn()
    with pytest.raises(PermanentError) as caught:
        c.push("stock", [c.prepare("stock", StockLevel("P1", 1))])
    assert caught.value.status == 403


@responses.activate
def test_stock_of_an_unknown_sku_is_rejected() -> None:
    responses.get(f"{BASE}/api/catalog_system/pvt/sku/stockkeepingunitidbyrefid/P9", status=404)
    c = conn()
    (result,) = c.push("stock", [c.prepare("stock", StockLevel("P9", 1))])
    assert (result.status, result.reason_code) == ("rejected", "unknown_sku")


# -- orders --------------------------------------------------------------------------------------------
def vtex_order(order_id: str, status: str = "ready-for-handling", **kw: Any) -> dict[str, Any]:
    doc = {
        "orderId": order_id, "status": status, "value": 21390, "creationDate": "2026-11-23T10:00:00.000Z",
        "lastChange": "2026-11-23T10:05:00.000Z",
        "totals": [{"id": "Items", "value": 20000}, {"id": "Discounts", "value": -1000},
                   {"id": "Shipping", "value": 2390}, {"id": "Tax", "value": 0}],
        "items": [{"id": "1001", "refId": "P000001", "quantity": 2, "price": 10000, "sellingPrice": 9500,
                   "name": "Camiseta"}],
        "clientProfileData": {"document": "529.982.247-25", "firstName": "Ana", "lastName": "Souza",
                              "email": "ana@exemplo.com.br", "phone": "+5511999999999", "isCorporate": False},
        "shippingData": {"address": {"street": "Rua A", "number": "1", "neighborhood": "Centro", "city": "São Paulo",
                                     "state": "SP", "postalCode": "01000000", "country": "BRA", "complement": ""}},
        "paymentData": {"transactions": [{"payments": [{"paymentSystem": "125", "paymentSystemName": "Pix",
                                                        "group": "instantPayment", "value": 21390,
                                                        "installments": 1}]}]},
    }
    return doc | kw


def test_parse_order_turns_cents_into_money_and_maps_payments() -> None:
    order = parse_order(vtex_order("v1-01"))
    assert (order.remote_id, order.number, order.status) == ("v1-01", "v1-01", "ready-for-handling")
    (item,) = order.items
    assert (item.code, item.quantity, item.unit_price, item.discount) == ("P000001", 2, Decimal("100.00"),
                                                                          Decimal("10.00"))
    assert (order.total, order.shipping) == (Decimal("213.90"), Decimal("23.90"))
    assert [(p.method_code, p.amount) for p in order.payments] == [("PIX", Decimal("213.90"))]
    assert order.channel_customer_id == "52998224725"
    mapped = parse_order(vtex_order("v1-01"), {"Pix": "PIX-ONLINE"})
    assert mapped.payments[0].method_code == "PIX-ONLINE"
    with pytest.raises(MappingError, match="payment_map"):
        parse_order(vtex_order("v1-01", paymentData={"transactions": [{"payments": [
            {"paymentSystem": "9", "paymentSystemName": "Crypto", "group": "x", "value": 1}]}]}))
    with pytest.raises(MappingError, match="refId"):
        parse_order(vtex_order("v1-01", items=[{"id": "1", "quantity": 1, "price": 1}]))
    with pytest.raises(MappingError, match="negative") as caught:
        parse_order(vtex_order("v1-01", items=[{"id": "1", "refId": "P1", "quantity": 1, "price": -100}]))
    assert caught.value.code == "negative_price"


def feed_item(order_id: str, handle: str, event: str | None = None) -> dict[str, Any]:
    return {"eventId": event or f"ev-{handle}", "handle": handle, "domain": "Marketplace", "state": "x",
            "lastState": "y", "orderId": order_id, "lastChange": "t", "currentChange": "t"}


@responses.activate
def test_feed_pages_commit_what_does_not_wait_and_the_ack_commits_the_rest() -> None:
    responses.get(FEED, json=[feed_item("v1-01", "h1"), feed_item("v2-01", "h2"), feed_item("v3-01", "h3"),
                              feed_item("v1-01", "h4", "ev-other")])
    responses.get(FEED, json=[])
    responses.get(f"{BASE}/api/oms/pvt/orders/v1-01", json=vtex_order("v1-01"))
    responses.get(f"{BASE}/api/oms/pvt/orders/v2-01", json=vtex_order("v2-01", status="canceled"))
    responses.get(f"{BASE}/api/oms/pvt/orders/v3-01", status=404)
    responses.post(FEED)
    c = conn()
    pages = c.pull("orders", None)
    page = next(pages)
    assert page.cursor is None
    order, cancelled, missing = page.records
    assert isinstance(order, Order) and order.remote_id == "v1-01"
    assert isinstance(cancelled, Order) and cancelled.status == "canceled"
    assert isinstance(missing, BadRecord) and (missing.key, missing.code) == ("v3-01", "not_found")
    assert not [c for c in responses.calls if c.request.method == "POST"]  # nothing while the engine works
    assert list(pages) == []
    (commit,) = [c for c in responses.calls if c.request.method == "POST"]
    assert sorted(body(commit)["handles"]) == ["h2", "h3"]  # the order waiting for the back office stays
    responses.post(f"{BASE}/api/oms/pvt/orders/v1-01/start-handling", status=204)
    (ack,) = c.push("order-acks", [c.prepare("order-acks", {"order_id": "v1-01", "backoffice_number": "9"})])
    assert ack.status == "updated"
    assert [c.request.url.rsplit("/", 1)[-1] for c in responses.calls[-2:]] == ["start-handling", "feed"]
    assert sorted(body(responses.calls[-1])["handles"]) == ["h1", "h4"]


@responses.activate
def test_feed_without_configuration_is_configured_once() -> None:
    responses.get(f"{FEED}/config", status=404)
    responses.post(f"{FEED}/config")
    responses.get(FEED, json=[])
    c = conn(configure_feed=True)
    assert list(c.pull("orders", None)) == [] and list(c.pull("orders", None)) == []
    (config,) = [c for c in responses.calls if c.request.method == "POST"]
    assert body(config) == {"filter": {"type": "FromWorkflow", "status": ["ready-for-handling", "canceled"]},
                            "queue": {"visibilityTimeoutInSeconds": 250, "MessageRetentionPeriodInSeconds": 345600}}
    assert len([c for c in responses.calls if c.request.url.endswith("/config")]) == 2


@responses.activate
def test_ack_of_an_order_already_in_handling_is_done_and_a_server_error_is_not() -> None:
    responses.post(f"{BASE}/api/oms/pvt/orders/v1-01/start-handling", status=409,
                   json={"error": {"code": "OMS003", "message": "not ready-for-handling", "exception": None}})
    c = conn()
    (ack,) = c.push("order-acks", [c.prepare("order-acks", {"order_id": "v1-01", "backoffice_number": "9"})])
    assert ack.status == "exists"
    responses.replace(responses.POST, f"{BASE}/api/oms/pvt/orders/v1-01/start-handling", status=500)
    with pytest.raises(TransientError):
        c.push("order-acks", [c.prepare("order-acks", {"order_id": "v1-01", "backoffice_number": "9"})])


@responses.activate
def test_invoice_event_sends_every_item_at_the_price_paid() -> None:
    responses.get(f"{BASE}/api/oms/pvt/orders/v1-01", json=vtex_order("v1-01", status="handling"))
    responses.post(f"{BASE}/api/oms/pvt/orders/v1-01/invoice", json={"date": "d", "orderId": "v1-01", "receipt": "r"})
    c = conn()
    key = "3" * 44
    (result,) = c.push("order-events", [c.prepare("order-events", event("invoiced",
                                                                        invoice=Invoice(key, "77", "1", NOW)))])
    assert result.status == "created"
    sent = body(responses.calls[1])
    assert sent["type"] == "Output" and sent["invoiceNumber"] == "77" and sent["invoiceKey"] == key
    assert sent["invoiceValue"] == "21390"  # the order's value in cents when the invoice names none
    assert sent["items"] == [{"id": "1001", "price": 9500, "quantity": 2, "description": "Camiseta"}]


@responses.activate
def test_tracking_before_the_invoice_is_held_back_and_cancel_twice_is_done() -> None:
    responses.get(f"{BASE}/api/oms/pvt/orders/v1-01", json=vtex_order("v1-01", status="handling"))
    c = conn()
    (early,) = c.push("order-events", [c.prepare("order-events", event("shipped",
                                                                       shipment=Shipment("Correios", "BR1")))])
    assert (early.status, early.reason_code) == ("rejected", "out_of_order")
    responses.post(f"{BASE}/api/oms/pvt/orders/v1-01/cancel", status=409,
                   json={"error": {"code": "1", "message": "already canceled", "exception": None}})
    responses.replace(responses.GET, f"{BASE}/api/oms/pvt/orders/v1-01", json=vtex_order("v1-01", status="canceled"))
    (cancel,) = c.push("order-events", [c.prepare("order-events", event("cancelled"))])
    assert cancel.status == "exists"
    assert not [c for c in responses.calls if c.request.url.endswith("/cancel")]  # it was already canceled


@responses.activate
def test_channel_customers_are_the_buyers_of_the_orders_read() -> None:
    responses.get(FEED, json=[feed_item("v1-01", "h1")])
    responses.get(FEED, json=[])
    responses.get(f"{BASE}/api/oms/pvt/orders/v1-01", json=vtex_order("v1-01"))
    c = conn()
    list(c.pull("orders", None))
    (page,) = list(c.pull("channel-customers", None))
    (customer,) = page.records
    assert (customer.remote_id, customer.document, customer.name) == ("52998224725", "52998224725", "Ana Souza")
    assert customer.address is not None and customer.address.city == "São Paulo"
    (link,) = c.push("customer-links", [c.prepare("customer-links", {"remote_id": "52998224725", "code": "C1"})])
    assert link.status == "unchanged"


@responses.activate
def test_buyers_asked_for_during_the_first_page_include_those_of_later_lots() -> None:
    # the engine asks for the buyers once per orders step, while it holds the first page that needs one
    responses.get(FEED, json=[feed_item("v1-01", "h1")])
    responses.get(FEED, json=[feed_item("v2-01", "h2")])
    responses.get(FEED, json=[])
    responses.get(f"{BASE}/api/oms/pvt/orders/v1-01", json=vtex_order("v1-01"))
    later = vtex_order("v2-01", clientProfileData={"document": "111.444.777-35", "firstName": "Bia",
                                                   "lastName": "Lima", "email": "bia@example.com"})
    responses.get(f"{BASE}/api/oms/pvt/orders/v2-01", json=later)
    responses.post(FEED)
    c = conn()
    pages = c.pull("orders", None)
    first = next(pages)
    assert [o.remote_id for o in first.records] == ["v1-01"]
    (buyers,) = list(c.pull("channel-customers", None))
    assert {b.remote_id for b in buyers.records} == {"52998224725", "11144477735"}
    rest = list(pages)
    assert [[o.remote_id for o in p.records] for p in rest] == [["v2-01"]]
    gets = [call.request.url for call in responses.calls if "/api/oms/pvt/orders/" in call.request.url]
    assert len(gets) == 2  # an order read ahead is not read again
    assert not [call for call in responses.calls if call.request.method == "POST"]  # both still wait


def test_the_buyer_document_is_read_as_typed_punctuation_dropped_never_other_characters() -> None:
    from syncagent.connectors.vtex import parse_customer as vtex_customer

    def buyer(profile: dict[str, object]) -> str | None:
        found = vtex_customer({"clientProfileData": profile, "lastChange": "1"})
        return found.document if found is not None else None

    assert buyer({"document": "436.555.472-77", "firstName": "Ana"}) == "43655547277"
    assert buyer({"isCorporate": True, "corporateDocument": "11.222.333/0001-81", "corporateName": "Loja"}) \
        == "11222333000181"
    assert buyer({"document": "CPF 436.555.472-77"}) == "CPF43655547277"  # kept: the engine refuses it, by name


def test_times_keep_the_sub_second_the_back_office_gave_where_vtex_takes_it() -> None:
    start = datetime.fromisoformat("2026-11-22T10:00:00.25-03:00")
    end = datetime.fromisoformat("2026-12-09T14:36:46.701941+00:00")
    price = Price("P1", Decimal("100.00"), Decimal("80.00"), start, end)
    (fixed,) = conn().prepare("prices", price).payload["fixedPrices"]
    assert fixed["dateRange"] == {"from": "2026-11-22T13:00:00.250000Z", "to": "2026-12-09T14:36:46.701941Z"}
    key = "3" * 44
    invoiced = event_out(event("invoiced", invoice=Invoice(key, "77", "1", end, Decimal("10.50"))))
    shipped = event_out(event("shipped", shipment=Shipment("Correios", "BR1", None, end)))
    assert invoiced.payload["issuanceDate"] == shipped.payload["dispatchedDate"] == "2026-12-09T14:36:46.701941Z"
    # the tracking update takes `yyyy-mm-dd hh:mm` only (docs/connectors/vtex.md): the minute, in UTC
    delivered = event_out(event("delivered", delivered_at=end))
    assert delivered.payload["deliveredDate"] == "2026-12-09 14:36"
