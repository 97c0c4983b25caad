"""Plugg.to and Via parsers and mappers: hostile answers become bad records with a reason, never a crash."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import responses

from syncagent.connectors.common import parse_items
from syncagent.connectors.pluggto import PluggtoConnector
from syncagent.connectors.pluggto_orders import parse_order as pluggto_order
from syncagent.connectors.via import ViaConnector
from syncagent.connectors.via_mapping import event_out as via_event
from syncagent.connectors.via_mapping import parse_order as via_order
from syncagent.errors import MappingError, TransientError
from syncagent.http import HttpSettings
from syncagent.model import BadRecord, Invoice, Order, OrderEvent, Price

KEY = "35261112345678000190550010000123451000123456"


def plugg(**fields: Any) -> dict[str, Any]:
    order = {"id": "abc1", "status": "approved", "total": 120.5, "shipping": 10, "payer_cpf": "436.555.472-77",
             "modified": "2026-11-23T10:00:00.000Z",
             "items": [{"sku": "X", "variation": {"sku": "P000001"}, "quantity": 2, "price": 55.25, "discount": 0}],
             "payments": [{"payment_type": "credit", "payment_total": 120.5, "payment_installments": 3}]}
    return {**order, **fields}


def via(**fields: Any) -> dict[str, Any]:
    order = {"id": "1100000001", "status": "APR", "_list": "approved", "totalAmount": "210.00",
             "freight": {"chargedAmount": "10.00"}, "customer": {"documentNumber": "43655547277", "name": "Ana"},
             "items": [{"skuSellerId": "P1", "salePrice": "100.00"}, {"skuSellerId": "P1", "salePrice": "100.00"}],
             "payments": [{"method": "PIX", "value": "210.00"}]}
    return {**order, **fields}


def test_plugg_order_reads_numbers_variation_skus_and_the_payer() -> None:
    order = pluggto_order(plugg())
    assert (order.items[0].code, order.items[0].quantity, order.items[0].unit_price) == ("P000001", 2, Decimal("55.25"))
    assert order.total == Decimal("120.50") and order.payments[0].method_code == "CC"
    assert order.payments[0].installments == 3 and order.channel_customer_id == "43655547277"


@pytest.mark.parametrize(("fields", "code"), [
    ({"items": []}, "missing_field"), ({"total": "12,5x"}, "bad_money"), ({"total": 1e300}, "bad_money"),
    ({"total": True}, "bad_type"), ({"items": [{"sku": "P1", "quantity": 0, "price": 1}]}, "bad_quantity"),
    ({"items": ["nope"]}, "bad_type"), ({"payments": [{"payment_type": "crypto", "payment_total": 1}]},
                                        "unmapped_payment"),
])
def test_a_hostile_plugg_order_is_a_bad_record(fields: dict[str, Any], code: str) -> None:
    (record,) = parse_items([{"Order": plugg(**fields)}], lambda i: pluggto_order(i["Order"]),
                            lambda i: i["Order"].get("id"))
    assert isinstance(record, BadRecord) and (record.key, record.code) == ("abc1", code)


def test_via_order_counts_one_line_per_unit_and_takes_its_status_from_the_list() -> None:
    order = via_order(via())
    assert isinstance(order, Order) and order.status == "approved"
    assert [(i.code, i.quantity, i.unit_price) for i in order.items] == [("P1", 2, Decimal("100.00"))]
    assert order.shipping == Decimal("10.00") and order.payments[0].method_code == "PIX"


@pytest.mark.parametrize(("fields", "code"), [
    ({"items": []}, "missing_field"), ({"totalAmount": "99,90"}, "bad_money"),
    ({"items": [{"skuSellerId": "P1", "salePrice": 3}]}, "bad_money"), ({"items": [{"salePrice": "1.00"}]},
                                                                       "missing_field"),
    ({"payments": [{"method": "GOLD", "value": "1.00"}]}, "unmapped_payment"),
])
def test_a_hostile_via_order_is_a_bad_record(fields: dict[str, Any], code: str) -> None:
    (record,) = parse_items([via(**fields)], via_order, "id")
    assert isinstance(record, BadRecord) and (record.key, record.code) == ("1100000001", code)


def test_via_invoice_needs_a_44_digit_key() -> None:
    moment = datetime(2026, 11, 23, tzinfo=UTC)
    with pytest.raises(MappingError):
        via_event(OrderEvent("e1", "100001", "via", "1", "invoiced", moment, invoice=Invoice("123", "1", "1")))
    out = via_event(OrderEvent("e1", "100001", "via", "1", "invoiced", moment, invoice=Invoice(KEY, "9", "1")))
    assert out.payload["invoice"] == {"number": "9", "serie": "1", "accessKey": KEY, "issuedAt": "2026-11-23T00:00:00Z"}


@responses.activate
def test_plugg_order_list_that_is_not_json_is_a_transient_error_without_the_password() -> None:
    responses.post("https://hub.test/oauth/token", json={"access_token": "t", "expires_in": 3600})
    responses.get("https://hub.test/orders", body="<html>oops secret-pw-123</html>", status=200)
    conn = PluggtoConnector("pluggto", "https://hub.test", {"client_id": "a", "client_secret": "s",
                                                            "api_user": "u", "api_password": "secret-pw-123"},
                            HttpSettings(max_attempts=1), sleep=lambda s: None)
    with pytest.raises(TransientError) as caught:
        list(conn.pull("orders", None))
    assert "secret-pw-123" not in str(caught.value)


@responses.activate
def test_via_price_per_site_only_where_it_differs() -> None:
    offer = {"skuSellerId": "P1", "prices": {"CB": {"default": "10.00", "offer": "9.00"},
                                             "PF": {"default": "10.0", "offer": "9"}}}
    responses.get("https://via.test/api/v2/sellerItems/P1", json=offer)
    responses.put("https://via.test/api/v2/sellerItems/P1/prices", json={})
    conn = ViaConnector("via", "https://via.test", {"client_id": "c", "access_token": "tok-123"},
                        HttpSettings(max_attempts=1), sleep=lambda s: None)
    (result,) = conn.push("prices", [conn.prepare("prices", Price("P1", Decimal("10.00"), Decimal("9.00")))])
    puts = [c.request for c in responses.calls if c.request.method == "PUT"]
    assert result.status == "updated" and len(puts) == 1 and b'"site":"EX"' in puts[0].body
    assert responses.calls[0].request.headers["client_id"] == "c"
    assert responses.calls[0].request.headers["access_token"] == "tok-123"


def plugg_connector(**kw: Any) -> PluggtoConnector:
    return PluggtoConnector("pluggto", "https://hub.test", {"client_id": "a", "client_secret": "s", "api_user": "u",
                                                            "api_password": "p"}, HttpSettings(max_attempts=1),
                            sleep=lambda s: None, **kw)


@responses.activate
def test_plugg_orders_follow_next_when_given_and_the_last_page_carries_the_latest_modified_day() -> None:
    responses.post("https://hub.test/oauth/token", json={"access_token": "t", "expires_in": 3600})
    first = [{"Order": plugg(id="o1", modified="2026-11-20T10:00:00Z")},
             {"Order": plugg(id="o2", modified="2026-11-22T10:00:00Z")}]
    responses.get("https://hub.test/orders", json={"result": first, "next": "cur-2"})
    responses.get("https://hub.test/orders", json={"result": [{"Order": plugg(id="o3", modified="2026-11-21T09:00Z")}]})
    pages = list(plugg_connector(page_size=2).pull("orders", None))
    assert [p.cursor for p in pages] == [None, "2026-11-22"]
    assert [r.remote_id for p in pages for r in p.records] == ["o1", "o2", "o3"]
    gets = [c.request.url for c in responses.calls if "/orders" in c.request.url]
    assert "page=1" in gets[0] and "status=approved%2Ccanceled%2Ccancelled" in gets[0]
    assert "next=cur-2" in gets[1] and "page=" not in gets[1]


@responses.activate
def test_plugg_orders_after_a_cursor_ask_only_those_modified_since_that_day() -> None:
    responses.post("https://hub.test/oauth/token", json={"access_token": "t", "expires_in": 3600})
    responses.get("https://hub.test/orders", json={"result": []})
    conn = plugg_connector(clock=lambda: datetime(2026, 11, 23, 15, 0, tzinfo=UTC))
    (page,) = list(conn.pull("orders", "2026-11-22"))
    assert page.records == [] and page.cursor == "2026-11-22"
    assert "modified=2026-11-22to2026-11-24" in responses.calls[-1].request.url
