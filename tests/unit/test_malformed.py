"""Broken feed data, generated: no exception escapes, bad records are quarantined with a reason,
the good records of the same page go through, and the cursor moves past the page.

1000 cases in `make test` (HYPOTHESIS_PROFILE=ci, the default), 10,000 in `make soak`.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import responses
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncagent.connectors.gestao_lojas import GestaoLojasConnector
from syncagent.connectors.sellerup import SellerUpConnector
from syncagent.engine import ChannelSetup, Engine
from syncagent.http import HttpSettings
from syncagent.journal import Journal
from syncagent.model import BadRecord, Order

settings.register_profile("ci", max_examples=int(os.environ.get("SYNCAGENT_MALFORMED_CASES", "1000")),
                          deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("soak", max_examples=10_000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

BO, SU = "http://bo.test", "http://su.test"
SHM = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None  # cheap fsyncs
VALID: dict[str, dict[str, Any]] = {
    "products": {"code": "P1", "description": "Camiseta", "active": True, "barcode": "7890000000017",
                 "brand": "Hering", "group_code": "VEST", "unit": "UN"},
    "prices": {"sku": "P1", "price_list": "default", "list_price": "10.00", "promo_price": "8.00",
               "promo_start": "2026-01-01T00:00:00Z", "promo_end": "2030-01-01T00:00:00Z",
               "scheduled": [{"list_price": "11.00", "starts_at": "2031-01-01T00:00:00Z"}]},
    "stock": {"sku": "P1", "warehouse": "CD01", "available": 5, "reserved": 1},
    "customers": {"code": "C1", "document": "52998224725", "name": "Ana Souza", "email": "a@b.c",
                  "address": {"city": "Recife", "state": "PE"}},
    "payment-methods": {"code": "PIX", "description": "Pix", "type": "pix", "active": True, "max_installments": 1},
    "groups": {"code": "VEST", "description": "Vestuário", "active": True, "parent_code": None},
    "sellers": {"code": "V001", "name": "Maria", "active": True, "store_code": "L01"},
}
KEY_FIELD = {"products": "code", "prices": "sku", "stock": "sku", "customers": "code",
             "payment-methods": "code", "groups": "code", "sellers": "code"}

junk = st.one_of(
    st.none(), st.integers(min_value=-(10**30), max_value=10**30), st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(), st.text(max_size=20), st.just("x" * 1_000_000), st.just("abc"), st.just(""),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.just("\udcff\udcfe"),  # lone surrogates: what invalid UTF-8 becomes once decoded leniently
)


@st.composite
def broken_item(draw: st.DrawFn, entity: str) -> dict[str, Any]:
    item = json.loads(json.dumps(VALID[entity]))
    item[KEY_FIELD[entity]] = draw(st.sampled_from(["B1", "B2", "P1"]))  # P1: a duplicate of the good key
    for field in draw(st.lists(st.sampled_from(sorted(item)), min_size=1, max_size=3, unique=True)):
        if draw(st.booleans()):
            del item[field]
        else:
            item[field] = draw(junk)
    return item


def dumps(body: Any) -> str:
    return json.dumps(body, allow_nan=True, ensure_ascii=True)  # NaN and lone surrogates, as a sloppy server sends


def make(tmp: Path) -> tuple[Engine, Journal]:
    journal = Journal(tmp / "j.db")
    bo = GestaoLojasConnector("backoffice", BO, {"client_id": "i", "client_secret": "s3cr3t-x"},
                              HttpSettings(max_attempts=1), sleep=lambda s: None)
    su = SellerUpConnector("loja", SU, {"api_key": "k3y-value"}, HttpSettings(max_attempts=1), sleep=lambda s: None)
    setup = ChannelSetup("loja", su, warehouses=("CD01",), order_warehouse="CD01", directions={"customers": "push"})
    return Engine(journal, bo, {"loja": setup}), journal


def echo_batch(request: Any) -> tuple[int, dict[str, str], str]:
    items = json.loads(request.body)["items"]
    return 200, {"Content-Type": "application/json"}, json.dumps(
        {"results": [{"key": i["key"], "status": "created"} for i in items]})


ENTITY = st.sampled_from(sorted(VALID))


@given(data=st.data(), entity=ENTITY)
def test_broken_records_are_quarantined_and_the_page_goes_on(data: st.DataObject, entity: str) -> None:
    bad = data.draw(st.lists(broken_item(entity), min_size=1, max_size=3), label="bad")
    good = json.loads(json.dumps(VALID[entity]))
    good[KEY_FIELD[entity]] = "GOOD"
    with tempfile.TemporaryDirectory(dir=SHM) as tmp, responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.post(f"{BO}/oauth/token", json={"access_token": "t", "token_type": "Bearer", "expires_in": 3600})
        page = {"items": [good, *bad], "next_cursor": "after-page-1"}
        mock.get(f"{BO}/{entity}", body=dumps(page), content_type="application/json")
        mock.get(f"{BO}/{entity}", body=dumps({"items": [], "next_cursor": None}), content_type="application/json")
        mock.add_callback(responses.PUT, f"{SU}/v1/{entity}", callback=echo_batch)
        engine, journal = make(Path(tmp))
        try:
            result = engine.run_step("loja", entity)  # must not raise
            assert result.status in ("ok", "quarantined"), result.error
            sent = journal.fingerprints("loja", entity, ["GOOD"])
            assert "GOOD" in sent, "the good record of the page must go through"
            assert journal.cursor("loja", entity) == "after-page-1", "the cursor moves past the page"
            for row in journal.quarantined():
                assert row.reason_code and row.reason
            def clean(text: str) -> str:
                return text.encode("utf-8", "replace").decode("utf-8")

            keys = [clean(str(i.get(KEY_FIELD[entity]))) for i in bad]
            keys += [k.strip() for k in keys]
            handled = set(journal.fingerprints("loja", entity, keys)) | {q.key for q in journal.quarantined()}
            for item in bad:
                key = item.get(KEY_FIELD[entity])
                if entity == "stock" and item.get("warehouse") != "CD01":
                    continue  # rows of other warehouses are not this channel's
                if isinstance(key, str) and key.strip():
                    forms = {clean(key), clean(key).strip()}  # invalid UTF-8 is stored replaced
                    assert forms & handled, f"{key!r} was neither sent nor quarantined"
        finally:
            journal.close()


@given(body=st.sampled_from([
    ("<html><body>502 Bad Gateway</body></html>", "text/html"),
    ('{"items": [{"code": "P1"', "application/json"),
    ('{"items": "nope", "next_cursor": null}', "application/json"),
    ('{"items": [], "next_cursor": 42}', "application/json"),
    ("\xff\xfe not utf-8", "application/json"),
    ("", "application/json"),
    ('{"items": [' + "[" * 100_000 + "]" * 100_000 + '], "next_cursor": null}', "application/json"),
    ('{"items": [], "items": [{"code": "P1"}], "next_cursor": null}', "application/json"),
]), entity=ENTITY)
@settings(max_examples=60)
def test_unreadable_pages_fail_the_step_cleanly_and_keep_the_cursor(body: tuple[str, str], entity: str) -> None:
    text, ctype = body
    with tempfile.TemporaryDirectory(dir=SHM) as tmp, responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.post(f"{BO}/oauth/token", json={"access_token": "t", "token_type": "Bearer", "expires_in": 3600})
        mock.get(f"{BO}/{entity}", body=text.encode("latin-1"), content_type=ctype, status=200)
        engine, journal = make(Path(tmp))
        try:
            result = engine.run_step("loja", entity)
            assert result.status == "failed" and result.error
            assert journal.cursor("loja", entity) is None
        finally:
            journal.close()


order_item = st.fixed_dictionaries({
    "key": st.one_of(st.just("P1"), junk),
    "quantity": st.one_of(st.integers(min_value=-5, max_value=10**12), junk),
    "unit_price": st.one_of(st.just("10.00"), junk),
})


@given(items=st.lists(order_item, max_size=3), total=st.one_of(st.just("10.00"), junk),
       seq=st.one_of(st.integers(min_value=0, max_value=10**9), junk), status=st.one_of(st.just("approved"), junk))
def test_tablet_orders_parse_into_orders_or_bad_records(items: list[Any], total: Any, seq: Any, status: Any) -> None:
    order = {"id": "o1", "seq": seq, "number": "T1", "status": status, "store": "L01", "seller": "V001",
             "customer": {"code": "C1"}, "items": items, "payments": [], "total": total,
             "created_at": "2026-11-23T10:00:00Z"}
    with responses.RequestsMock() as mock:
        mock.get(f"{SU}/v1/orders", body=dumps({"items": [order, {**order, "id": "o2", "seq": 7, "items": [
            {"key": "P1", "quantity": 1, "unit_price": "10.00"}], "total": "10.00", "status": "approved"}]}),
            content_type="application/json")
        su = SellerUpConnector("loja", SU, {"api_key": "k3y-value"}, HttpSettings(max_attempts=1),
                               sleep=lambda s: None, page_size=100)
        (page,) = list(su.pull("orders", None))
    first, second = page.records
    assert isinstance(second, Order) and second.remote_id == "o2"
    if isinstance(first, BadRecord):
        assert first.code and first.reason
    else:
        assert isinstance(first, Order) and all(i.quantity >= 1 for i in first.items)
        assert not (isinstance(total, float) and math.isnan(total))
    assert page.cursor is not None


def test_duplicate_keys_in_one_page_send_the_last_version_once() -> None:
    with tempfile.TemporaryDirectory(dir=SHM) as tmp, responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.post(f"{BO}/oauth/token", json={"access_token": "t", "token_type": "Bearer", "expires_in": 3600})
        first = {**VALID["products"], "description": "old"}
        last = {**VALID["products"], "description": "new"}
        mock.get(f"{BO}/products", json={"items": [first, last], "next_cursor": None})
        mock.add_callback(responses.PUT, f"{SU}/v1/products", callback=echo_batch)
        engine, journal = make(Path(tmp))
        try:
            engine.run_step("loja", "products")
            puts = [json.loads(c.request.body)["items"] for c in mock.calls if c.request.method == "PUT"]
            assert puts == [[{**_mapped(last)}]]
        finally:
            journal.close()


def _mapped(item: dict[str, Any]) -> dict[str, Any]:
    return {"key": item["code"], "name": item["description"], "barcode": item["barcode"], "brand": item["brand"],
            "group_key": item["group_code"], "unit": item["unit"], "active": item["active"]}


