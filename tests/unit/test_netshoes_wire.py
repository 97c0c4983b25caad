"""Netshoes wire forms: price schedules from promotions and scheduled prices, status bodies, shippings read."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import responses

from syncagent.connectors import netshoes_wire as wire
from syncagent.errors import AuthError, MappingError
from syncagent.model import BadRecord, Invoice, Order, OrderEvent, Price, ScheduledPrice, Shipment

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
KEY = "3" * 44


def test_a_plain_price_has_no_schedule() -> None:
    assert wire.price_out(Price("P1", Decimal("10.00")), T0) == {"sku": "P1", "price": 10.0, "schedules": []}


def test_promotion_and_scheduled_change_become_schedules_that_change_only_at_boundaries() -> None:
    price = Price("P1", Decimal("100.00"), Decimal("80.00"), T0 + timedelta(days=1), T0 + timedelta(days=2),
                  (ScheduledPrice(Decimal("120.00"), T0 + timedelta(days=5)),))
    before = wire.price_out(price, T0)
    assert before["price"] == 100.0
    assert before["schedules"] == [
        {"priceFrom": 100.0, "priceTo": 80.0, "dateInit": "2026-12-02T12:00:00Z", "dateEnd": "2026-12-03T12:00:00Z"},
        {"priceFrom": 120.0, "priceTo": 120.0, "dateInit": "2026-12-06T12:00:00Z", "dateEnd": "2099-12-31T23:59:59Z"}]
    assert wire.price_out(price, T0 + timedelta(hours=23)) == before  # nothing passed: the same payload
    after = wire.price_out(price, T0 + timedelta(days=3))
    assert after["schedules"] == before["schedules"][1:]  # the promotion is over
    later = wire.price_out(price, T0 + timedelta(days=6))
    assert later["price"] == 120.0 and later["schedules"] == before["schedules"][1:]  # kept once begun


def test_a_running_promotion_without_dates_is_one_open_schedule() -> None:
    (schedule,) = wire.price_out(Price("P1", Decimal("50.00"), Decimal("45.00")), T0)["schedules"]
    assert (schedule["priceTo"], schedule["dateInit"], schedule["dateEnd"]) == \
        (45.0, "2000-01-01T00:00:00Z", "2099-12-31T23:59:59Z")


def test_schedule_keys_compare_numbers_and_instants_whatever_their_spelling() -> None:
    sent = {"priceFrom": 100.0, "priceTo": 80.0, "dateInit": "2026-12-02T12:00:00Z", "dateEnd": "2026-12-03T12:00:00Z"}
    held = {"priceFrom": 100, "priceTo": "80.00", "dateInit": "2026-12-02T09:00:00.000-03:00",
            "dateEnd": "2026-12-03T12:00:00+00:00", "id": 7}
    assert wire.schedule_key(sent) == wire.schedule_key(held)


def event(kind: str, **kw: object) -> OrderEvent:
    return OrderEvent("ev1", "100001", "ns", "700000001-12", kind, T0, **kw)  # type: ignore[arg-type]


def test_status_bodies_flat_and_envelope() -> None:
    invoiced = event("invoiced", invoice=Invoice(KEY, "4003", "1", T0))
    flat = wire.event_out(invoiced, "flat", None)
    assert flat.meta == {"order_id": "700000001", "shipping": "12"}
    assert flat.payload["body"] == {"number": "4003", "line": "1", "key": KEY, "issueDate": "2026-12-01", "volume": 1}
    wrapped = wire.event_out(invoiced, "envelope", None).payload["body"]
    assert wrapped == {"shippings": [{"shippingCode": 12, "invoice": {"number": 4003, "line": 1, "accessKey": KEY,
                                                                      "issueDate": "2026-12-01T12:00:00Z"}}]}
    shipped = event("shipped", shipment=Shipment("Correios", "BR1", "https://r/BR1"))
    assert wire.event_out(shipped, "flat", None).payload["body"] == \
        {"carrier": "Correios", "trackingNumber": "BR1", "trackingLink": "https://r/BR1"}
    assert wire.event_out(event("delivered"), "envelope", None).payload["body"] == \
        {"shippings": [{"shippingCode": 12, "transport": {"deliveryDate": "2026-12-01T12:00:00Z"}}]}
    assert wire.event_out(event("cancelled"), "flat", 3).payload["body"] == \
        {"reasonCancellationCode": 3, "canceledBy": "seller"}


@pytest.mark.parametrize(("kind", "kw", "reason", "code"), [
    ("invoiced", {"invoice": Invoice("123", "1", "1")}, None, "bad_invoice_key"),
    ("shipped", {}, None, "missing_field"),
    ("cancelled", {}, None, "no_cancellation_reason"),
])
def test_events_that_cannot_go_are_mapping_errors(kind: str, kw: dict[str, object], reason: int | None,
                                                  code: str) -> None:
    with pytest.raises(MappingError) as caught:
        wire.event_out(event(kind, **kw), "flat", reason)
    assert caught.value.code == code


def test_an_order_id_that_is_not_a_shipping_key_is_refused() -> None:
    with pytest.raises(MappingError):
        wire.split_key("700000001")


def order(**fields: object) -> dict[str, object]:
    shipping = {"shippingCode": 5, "status": "Approved", "freightAmount": 10.5,
                "customer": {"document": "436.555.472-77", "customerName": "Ana"},
                "items": [{"sku": "P1", "quantity": 2, "grossUnitValue": 50, "discountUnitValue": 5.5}]}
    return {"orderNumber": "9", "businessUnit": "NS", "orderDate": "2026-12-01T09:00:00.000-03:00",
            "shippings": [shipping], **fields}


def test_a_shipping_is_an_order_with_its_freight_and_buyer() -> None:
    customers: dict[str, object] = {}
    (record,) = wire.parse_shippings(order(), "NS", None, customers)  # type: ignore[arg-type]
    assert isinstance(record, Order)
    assert (record.remote_id, record.status, record.shipping, record.total) == \
        ("9-5", "approved", Decimal("10.50"), Decimal("99.50"))
    assert record.items[0].discount == Decimal("11.00") and record.channel_customer_id == "43655547277"
    assert list(customers) == ["43655547277"]


def test_business_units_and_hostile_orders() -> None:
    assert wire.parse_shippings(order(businessUnit=None, originSite="ZATTINI"), "NS", None, {}) == []
    assert len(wire.parse_shippings(order(businessUnit=None, originSite="ZATTINI"), "ZT", None, {})) == 1
    (bad,) = wire.parse_shippings(order(shippings=[]), "NS", None, {})
    assert isinstance(bad, BadRecord) and (bad.key, bad.code) == ("9", "missing_field")
    (bad,) = wire.parse_shippings(["not", "an", "order"], "NS", None, {})
    assert isinstance(bad, BadRecord) and bad.code == "bad_type"
    flag = order()
    flag["shippings"][0]["items"][0]["grossUnitValue"] = True  # type: ignore[index]
    (bad,) = wire.parse_shippings(flag, "NS", None, {})
    assert isinstance(bad, BadRecord) and (bad.key, bad.code) == ("9-5", "bad_type")


@responses.activate
def test_every_call_carries_the_two_headers_and_the_seller_id_when_set() -> None:
    from syncagent.connectors.netshoes import NetshoesConnector
    from syncagent.http import HttpSettings

    seen: list[dict[str, str]] = []

    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        seen.append(dict(request.headers))
        if request.headers.get("access_token") != "tok-123456":
            return 401, {}, json.dumps({"type": "Unauthorized", "description": "Bad token.", "notifications": []})
        return 200, {}, json.dumps({"items": [], "links": []})

    responses.add_callback(responses.GET, "http://ns.test/api/v1/orders", callback=answer)
    options = {"client_id": "app-1", "access_token": "tok-123456", "seller_id": "778"}
    NetshoesConnector("ns", "http://ns.test/api/v1", options, HttpSettings(max_attempts=1)).check()
    assert (seen[0]["client_id"], seen[0]["access_token"], seen[0]["idSeller"]) == ("app-1", "tok-123456", "778")
    with pytest.raises(AuthError) as caught:
        NetshoesConnector("ns", "http://ns.test/api/v1", {**options, "access_token": "tok-bad-99"},
                          HttpSettings(max_attempts=1)).check()
    assert "tok-bad-99" not in str(caught.value)
    plain = NetshoesConnector("ns", "http://ns.test/api/v1", {"client_id": "a", "access_token": "b"}, HttpSettings())
    assert "idSeller" not in plain.client.auth.headers()  # type: ignore[union-attr]


BAD_CONFIG = """\
journal: {journal}
backoffice: {{type: gestao-lojas, base_url: "http://127.0.0.1:1", client_id: x, client_secret: "${{BO}}"}}
channels:
  - name: netshoes
    type: netshoes
    base_url: http://127.0.0.1:2
    client_id: ${{NS_ID}}
    access_token: plain-text-token
    status_body: wrapped
    first_page: 2
    flows: {{orders: {{every: 1m}}}}
"""


def test_bad_options_name_the_file_line_and_key(tmp_path: Any) -> None:
    from syncagent.config import load_config
    from syncagent.errors import ConfigError

    path = tmp_path / "syncagent.yaml"
    path.write_text(BAD_CONFIG.format(journal=tmp_path / "j.db"))
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={"BO": "s", "NS_ID": "app"})
    text = str(caught.value)
    for line, key in ((8, "access_token"), (9, "status_body"), (10, "first_page")):
        assert f"syncagent.yaml:{line}: channels[0].{key}" in text, text
    assert "plain-text-token" not in text
