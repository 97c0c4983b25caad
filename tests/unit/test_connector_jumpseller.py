"""The Jumpseller connector against `responses`: variants as products, prices, stock, orders, paging, auth."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from dataclasses import asdict
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from syncagent.config import load_config
from syncagent.connectors import registry
from syncagent.connectors.base import MemoryState
from syncagent.connectors.jumpseller import JumpsellerConnector
from syncagent.connectors.jumpseller_map import moment, order_in, product_in
from syncagent.connectors.oauth import STATE_KEY, load_doc, seed_mark
from syncagent.errors import AuthError, ChannelError, ConfigError, MappingError, PermanentError
from syncagent.http import HttpSettings
from syncagent.model import (
    BadRecord,
    Order,
    OrderItem,
    OrderPayment,
    Price,
    Product,
    StockLevel,
    order_from_dict,
)

JS = "http://js.test/v1"
LOGIN, TOKEN = "loja-login", "canary-jumpseller-token-0123456789"


def connector(**options: Any) -> JumpsellerConnector:
    return JumpsellerConnector("loja-online", JS, {"login": LOGIN, "auth_token": TOKEN, **options},
                               HttpSettings(max_attempts=2), sleep=lambda s: None, page_size=2)


@pytest.fixture
def js() -> Iterator[JumpsellerConnector]:
    conn = connector(customer_code="CF-0001", payment_map={"mbway": "MBWAY"}, category_map={"11": "ROUPA"})
    yield conn
    conn.close()


def tshirt(**over: Any) -> dict[str, Any]:
    product = {"id": 101, "name": "T-shirt", "sku": "TS", "brand": "Salsa", "barcode": "5601234000017",
               "status": "available", "price": 19.9, "stock": 3, "stock_unlimited": False, "weight": 0.2,
               "categories": [{"id": 11, "name": "Roupa"}],
               "variants": [
                   {"id": 9001, "sku": "TS-M", "barcode": "5601234000024", "price": 19.9, "stock": 4,
                    "stock_unlimited": False, "options": [{"name": "Tamanho", "value": "M"}]},
                   {"id": 9002, "sku": "", "barcode": None, "price": None, "stock": -2, "stock_unlimited": False,
                    "options": [{"name": "Tamanho", "value": "L"}, {"name": "Cor", "value": "Azul"}]},
                   {"id": 9003, "sku": "TS-XL", "price": 21, "stock": 0, "stock_unlimited": True, "options": []},
               ]}
    return {"product": {**product, **over}}


def plain(pid: int = 102, **over: Any) -> dict[str, Any]:
    return {"product": {"id": pid, "name": "Boné", "sku": None, "brand": None, "barcode": "", "status": "disabled",
                        "price": 7.5, "stock": 12, "stock_unlimited": False, "categories": [], "variants": [],
                        **over}}


def paid_order(**over: Any) -> dict[str, Any]:
    order = {
        "id": 5001, "status_enum": "paid", "status": "Paid", "currency": "EUR", "total": 44.7, "shipping": 4.9,
        "shipping_discount": 0, "discount": 2.0, "gift_cards_discount": None, "payment_method_type": "mbway",
        "payment_method_name": "MB WAY", "created_at": "2026-11-20 10:00:00 UTC", "completed_at": None,
        "customer": {"id": 7, "email": "ana@example.pt", "fullname": "Ana Lopes"},
        "billing_address": {"name": "Ana", "surname": "Lopes", "taxid": "PT 123 456 789", "country_code": "pt"},
        "shipping_address": {"country_code": "ES"},
        "products": [
            {"id": 101, "variant_id": 9001, "sku": "TS-M", "qty": 2, "price": 19.9, "discount": 0.5,
             "taxes": [{"rate": 23, "fixed": False, "tax_on_product_price": True}]},
            {"id": 102, "variant_id": None, "sku": None, "qty": 1, "price": 3.0, "discount": 0,
             "taxes": [{"rate": 6, "fixed": False, "tax_on_product_price": True}]},
        ],
    }
    return {"order": {**order, **over}}


def listing(path: str, pages: list[list[dict[str, Any]]]) -> None:
    for number, items in enumerate(pages, start=1):
        responses.get(JS + path, json=items,
                      match=[responses.matchers.query_param_matcher({"page": str(number), "limit": "2"})])


def records(conn: JumpsellerConnector, entity: str) -> list[Any]:
    return [r for page in conn.pull(entity, None) for r in page.records]


@responses.activate
def test_each_variant_is_a_product_of_its_own_with_its_sku_barcode_and_a_stable_code_when_it_has_none(
        js: JumpsellerConnector) -> None:
    listing("/products.json", [[tshirt(), plain()], []])
    products = records(js, "products")
    assert products == [
        Product("TS-M", "T-shirt (M)", True, barcode="5601234000024", brand="Salsa", group_code="ROUPA",
                weight_kg="0.2"),
        Product("JS-101-9002", "T-shirt (L, Azul)", True, barcode=None, brand="Salsa", group_code="ROUPA",
                weight_kg="0.2"),
        Product("TS-XL", "T-shirt", True, barcode=None, brand="Salsa", group_code="ROUPA", weight_kg="0.2"),
        Product("JS-102", "Boné", False),  # no variants: the product itself; disabled is inactive
    ]
    auth = responses.calls[0].request.headers["Authorization"]
    assert auth == "Basic " + base64.b64encode(f"{LOGIN}:{TOKEN}".encode()).decode()
    assert [parse_qs(urlsplit(c.request.url).query)["page"] for c in responses.calls] == [["1"], ["2"]]


@responses.activate
def test_prices_fall_back_on_the_product_and_unlimited_stock_is_not_passed_on(js: JumpsellerConnector) -> None:
    listing("/products.json", [[tshirt(), plain()], []])
    assert records(js, "prices") == [Price("TS-M", Decimal("19.90")), Price("JS-101-9002", Decimal("19.90")),
                                     Price("TS-XL", Decimal("21.00")), Price("JS-102", Decimal("7.50"))]
    listing("/products.json", [[tshirt(), plain()], []])
    assert records(js, "stock") == [StockLevel("TS-M", 4), StockLevel("JS-101-9002", 0), StockLevel("JS-102", 12)]


@responses.activate
def test_a_broken_product_is_quarantined_and_the_page_goes_on(js: JumpsellerConnector) -> None:
    listing("/products.json", [[tshirt(name=None), plain(price="a lot"), {"order": {}}], []])
    found = records(js, "products")
    bad = [r for r in found if isinstance(r, BadRecord)]
    assert [(b.key, b.code) for b in bad] == [("TS-M", "missing_field"), ("JS-101-9002", "missing_field"),
                                              ("TS-XL", "missing_field"), ("?", "bad_type")]
    assert [r.code for r in found if isinstance(r, Product)] == ["JS-102"]
    listing("/products.json", [[plain(price="a lot")]])
    (price,) = records(js, "prices")
    assert isinstance(price, BadRecord) and price.code == "bad_type"


@responses.activate
def test_a_paid_order_carries_gross_lines_the_discounts_the_tax_id_and_the_billing_country(
        js: JumpsellerConnector) -> None:
    listing("/orders.json", [[paid_order()]])
    (order,) = records(js, "orders")
    assert isinstance(order, Order)
    # 2 x 19.90 - 2 x 0.50 + 3.00 = 41.80; the 2.00 coupon spread by value: 1.86 and 0.14
    assert order.items == (OrderItem("TS-M", 2, Decimal("19.90"), Decimal("2.86"), Decimal("23.00")),
                           OrderItem("JS-102", 1, Decimal("3.00"), Decimal("0.14"), Decimal("6.00")))
    lines = sum((i.unit_price * i.quantity - i.discount for i in order.items), Decimal(0))
    assert lines + order.shipping == order.total == Decimal("44.70")
    assert (order.status, order.customer_code, order.payments) == ("paid", "CF-0001",
                                                                   (OrderPayment("MBWAY", Decimal("44.70")),))
    assert (order.customer_document, order.customer_name, order.customer_email, order.customer_country) == (
        "PT123456789", "Ana Lopes", "ana@example.pt", "PT")
    assert (order.currency, order.shipping_total, order.created_at.isoformat()) == (  # type: ignore[union-attr]
        "EUR", Decimal("4.90"), "2026-11-20T10:00:00+00:00")
    kept = json.loads(json.dumps(asdict(order), default=str))  # as the journal keeps a parked order
    assert order_from_dict(kept) == order  # parked and retried: nothing lost


@pytest.mark.parametrize(("change", "code"), [
    ({"products": []}, "missing_field"),
    ({"payment_method_type": "paypal", "payment_method_name": "PayPal"}, "unmapped_payment"),
    ({"total": 1e30}, "bad_money"),
    ({"discount": 500}, "bad_discount"),
    ({"status_enum": None}, "missing_field"),
])
def test_an_order_that_cannot_be_imported_says_why(change: dict[str, Any], code: str) -> None:
    with pytest.raises(MappingError) as err:
        order_in(paid_order(**change), {"mbway": "MBWAY"}, "CF")
    assert err.value.code == code


def test_line_prices_without_their_tax_are_refused_not_guessed() -> None:
    order = paid_order()
    order["order"]["products"][0]["taxes"][0]["tax_on_product_price"] = False
    with pytest.raises(MappingError) as err:
        order_in(order, {}, "CF")
    assert err.value.code == "net_prices"
    bad_qty = paid_order()
    bad_qty["order"]["products"][0]["qty"] = 0
    with pytest.raises(MappingError, match="qty"):
        order_in(bad_qty, {}, "CF")


def test_an_unpaid_order_carries_no_payment_and_without_payment_map_none_at_all() -> None:
    assert order_in(paid_order(status_enum="pending_payment"), {"mbway": "MBWAY"}, None).payments == ()
    assert order_in(paid_order(), {}, None).payments == ()


def test_dates_in_either_of_jumpsellers_spellings_and_odd_ones_are_none() -> None:
    assert moment("2023-10-15T14:30:00Z") == moment("2023-10-15 14:30:00 UTC")
    assert moment("last tuesday") is None and moment(None) is None


def test_category_falls_back_on_its_name_and_a_product_status_must_be_one_of_the_spec() -> None:
    row = {"product": tshirt()["product"], "variant": None}
    assert product_in(row, {}).group_code == "Roupa"
    assert product_in(row, {"Roupa": "R1"}).group_code == "R1"
    with pytest.raises(MappingError):
        product_in({"product": {**tshirt()["product"], "status": "gone"}, "variant": None}, {})


@responses.activate
def test_a_refused_token_is_an_auth_error_without_the_token() -> None:
    responses.get(JS + "/products/count.json", status=401, json={"message": "Unauthorized"})
    conn = connector()
    with pytest.raises(AuthError) as err:
        conn.check()
    assert TOKEN not in str(err.value)


ACCOUNTS = "http://accounts.js.test/oauth/token"


def app(state: MemoryState, refresh_token: str = "R0") -> JumpsellerConnector:
    """An installed App's channel whose tokens live in `state` (the journal's, in the agent)."""
    return JumpsellerConnector("loja-app", JS, {"client_id": "app", "client_secret": "app-secret",
                                                "refresh_token": refresh_token, "token_url": ACCOUNTS},
                               HttpSettings(max_attempts=2), sleep=lambda s: None, state=state)


def renewed(*pairs: tuple[str, str]) -> None:
    """The accounts host answers each refresh with the next (access, refresh) pair."""
    for access, refresh in pairs:
        responses.post(ACCOUNTS, json={"access_token": access, "refresh_token": refresh, "expires_in": 3600})


@responses.activate
def test_an_app_seeds_the_journal_from_the_config_then_the_journal_wins() -> None:
    renewed(("A1", "R1"), ("A2", "R2"))
    responses.get(JS + "/products/count.json", json={"count": 0})
    state = MemoryState()
    app(state).check()
    assert "refresh_token=R0" in str(responses.calls[0].request.body)  # on the accounts host, not the API's
    assert responses.calls[1].request.headers["Authorization"] == "Bearer A1"
    doc = load_doc(state)
    assert doc["refresh_token"] == "R1" and "R0" not in json.dumps(doc)
    state.put(STATE_KEY, json.dumps({**doc, "expires_at": 0}))  # a restart an hour later, the config unchanged
    app(state).check()
    assert "refresh_token=R1" in str(responses.calls[2].request.body) and load_doc(state)["refresh_token"] == "R2"


@responses.activate
def test_a_new_refresh_token_in_the_config_replaces_the_journals_even_a_lock_out() -> None:
    responses.post(ACCOUNTS, status=400, json={"error": "invalid_grant", "error_description": "revoked"})
    state = MemoryState()
    with pytest.raises(AuthError) as err:
        app(state, "R0").check()
    assert "install the App again" in str(err.value) and err.value.code == "reinstall"
    assert "R0" not in str(err.value) and "app-secret" not in str(err.value)
    with pytest.raises(AuthError):
        app(state, "R0").check()  # the lock-out is stored: the dead token is not sent again
    assert len(responses.calls) == 1
    responses.replace(responses.POST, ACCOUNTS, json={"access_token": "N1", "refresh_token": "N2"})
    responses.get(JS + "/products/count.json", json={"count": 0})
    app(state, "NEW").check()  # installed again: the new token in the environment
    assert "refresh_token=NEW" in str(responses.calls[1].request.body) and load_doc(state)["refresh_token"] == "N2"


def test_a_seed_never_overwrites_a_token_another_process_stored_meanwhile() -> None:
    class Racing(MemoryState):
        """Another process stores its rotated token just before this one seeds."""

        def put_if(self, key: str, value: str | None, expected: str | None) -> bool:
            if self.get(key) is None:
                self.put(key, json.dumps({"access_token": "B1", "refresh_token": "S1", "expires_at": 9e12,
                                          "seed": seed_mark("R0")}))
            return super().put_if(key, value, expected)

    state = Racing()
    auth = app(state).client.auth
    assert auth is not None and auth.headers() == {"Authorization": "Bearer B1"}
    assert load_doc(state)["refresh_token"] == "S1"


@responses.activate
def test_a_listing_that_is_not_a_list_stops_the_step() -> None:
    responses.get(JS + "/orders.json", json={"error": "maintenance"})
    with pytest.raises(PermanentError):
        records(connector(), "orders")


def test_it_declares_itself_a_source_that_never_takes_stock() -> None:
    caps = registry.capabilities("jumpseller")
    assert caps is not None and {"products", "prices", "stock", "orders"} <= caps.pull
    assert caps.push == frozenset({"order-acks"}) and caps.importable_statuses == ("paid",)
    assert caps.cancelled_statuses == ("canceled",)
    assert JumpsellerConnector.options["auth_token"].secret
    conn = connector()
    with pytest.raises(ValueError, match="takes no stock"):
        conn.prepare("stock", StockLevel("TS-M", 1))
    ack = conn.prepare("order-acks", {"order_id": "5001", "backoffice_number": "88"})
    assert [r.status for r in conn.push("order-acks", [ack, ack])] == ["unchanged", "unchanged"]


def test_the_config_of_the_docs_loads_and_builds_the_connector_at_the_documented_pace(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "connectors" / "jumpseller.md").read_text()
    example = re.search(r"```yaml\n(backoffice:.*?)```", text, re.S)
    assert example is not None
    for name in ("ERP_CLIENT_SECRET", "JUMPSELLER_LOGIN", "JUMPSELLER_AUTH_TOKEN"):
        monkeypatch.setenv(name, "value-of-" + name)
    path = tmp_path / "c.yaml"
    path.write_text(f"journal: {tmp_path / 'j.db'}\n" + example.group(1).replace(
        "rate_limit: {per_second: 13, burst: 5}", "connect_timeout: 2"))
    (channel,) = load_config(path).channels
    assert channel.flow("products").direction == "pull"  # type: ignore[union-attr]
    conn = JumpsellerConnector.from_config(channel)
    assert conn.client.settings.rate_per_second == 13.0  # none configured: the documented limits still hold
    assert conn.payment_map["mbway"] == "MBWAY" and conn.customer_code == "CF-0001"
    conn.close()


@responses.activate
def test_hostile_answers_are_channel_errors_or_quarantined_records_never_a_crash() -> None:
    responses.get(JS + "/orders.json", body=b"<html>502 Bad Gateway</html>", status=200)
    with pytest.raises(ChannelError):
        records(connector(), "orders")
    responses.replace(responses.GET, JS + "/orders.json", json=[
        "not an order", {"order": {"id": 10**30, "status_enum": "paid", "products": [], "total": 1}},
        paid_order(id=6001, total="1e400"), paid_order(id=6002, products=[{"qty": 10**9, "price": 1, "sku": "X"}]),
        {"order": {"id": True}},
    ])
    found = records(connector(customer_code="C"), "orders")
    assert all(isinstance(r, BadRecord) for r in found)
    assert [(r.key, r.code) for r in found] == [
        ("?", "bad_type"), ("1000000000000000000000000000000", "missing_field"), ("6001", "bad_money"),
        ("6002", "bad_quantity"), ("?", "bad_type")]


@responses.activate
def test_a_store_that_answers_the_same_page_for_every_number_ends_the_walk() -> None:
    responses.get(JS + "/products.json", json=[tshirt(), plain()])  # page 1, 2, 3 ... all the same
    found = records(connector(), "products")
    assert [r.code for r in found] == ["TS-M", "JS-101-9002", "TS-XL", "JS-102"]
    assert len(responses.calls) == 2


@pytest.mark.parametrize(("options", "says"), [
    ({}, "missing login, auth_token"),
    ({"login": "x"}, "missing auth_token"),
    ({"client_id": "app"}, "missing client_secret, refresh_token"),
])
def test_without_one_whole_pair_of_credentials_the_channel_is_refused_saying_what_is_missing(
        options: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        JumpsellerConnector("js", JS, options, HttpSettings())


def test_a_line_discount_is_read_the_way_that_adds_up_to_the_total_and_an_order_adding_up_neither_way_is_refused(
        ) -> None:
    per_line = paid_order(total=47.2, discount=0)  # 2 x 19.90 - 0.50 + 3.00 + 4.90 shipping: 0.50 for the line
    assert [i.discount for i in order_in(per_line, {}, "CF").items] == [Decimal("0.50"), Decimal("0.00")]
    per_unit = paid_order(total=46.7, discount=0)  # 2 x (19.90 - 0.50) + 3.00 + 4.90
    assert [i.discount for i in order_in(per_unit, {}, "CF").items] == [Decimal("1.00"), Decimal("0.00")]
    with pytest.raises(MappingError) as err:
        order_in(paid_order(total=50), {}, "CF")
    assert err.value.code == "bad_total" and "50.00" in err.value.reason


def test_a_tax_rate_given_as_a_fraction_is_read_as_a_percentage() -> None:
    order = paid_order()
    order["order"]["products"][0]["taxes"][0]["rate"] = 0.23
    order["order"]["products"][1]["taxes"][0]["rate"] = 0.055
    assert [i.tax_rate for i in order_in(order, {}, "CF").items] == [Decimal("23.00"), Decimal("5.50")]
