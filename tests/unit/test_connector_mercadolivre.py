"""Mercado Livre pieces on their own: the connector state in the journal, the rotating refresh, the orders
windows and the wire parsers (hostile answers become reasons, never crashes)."""

from __future__ import annotations

import inspect
import json
import re
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import responses

from syncagent.config import load_config
from syncagent.connectors import registry
from syncagent.connectors.base import MemoryState
from syncagent.connectors.mercadolivre import MercadoLivreConnector
from syncagent.connectors.mercadolivre_orders import DateWindows, parse_cursor
from syncagent.connectors.mercadolivre_wire import ml_error, nfe_xml_problem, parse_buyer, parse_order
from syncagent.connectors.oauth import STATE_KEY, RotatingRefreshAuth, load_doc
from syncagent.connectors.rest import AuthorizationCode
from syncagent.errors import AuthError, JournalError, MappingError, PermanentError, TransientError
from syncagent.http import HttpClient, HttpResponse, HttpSettings
from syncagent.journal import Journal

API = "https://api.mercadolibre.test"
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


# -- connector state -------------------------------------------------------------------------------
def test_state_is_durable_per_channel_and_none_clears_it(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db") as journal:
        state = journal.state_of("ml")
        assert state.get("oauth") is None
        state.put("oauth", "v1")
        journal.state_of("other").put("oauth", "x")
    with Journal(tmp_path / "j.db") as journal:  # a new process reads what the last one stored
        assert journal.state("ml", "oauth") == "v1" and journal.state("other", "oauth") == "x"
        journal.set_state("ml", "oauth", None)
        assert journal.state("ml", "oauth") is None


def test_state_is_saved_from_another_thread_while_the_engine_holds_a_transaction(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db") as journal:
        done = threading.Event()
        with journal.transaction():
            journal.save_cursor("ml", "orders", "c1")
            worker = threading.Thread(target=lambda: (journal.set_state("ml", "k", "v"), done.set()))
            worker.start()
        worker.join(15)
        assert done.is_set() and journal.state("ml", "k") == "v" and journal.cursor("ml", "orders") == "c1"


def test_state_inside_a_transaction_of_the_same_thread_is_refused_not_a_deadlock(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db") as journal, pytest.raises(JournalError), journal.transaction():
        journal.set_state("ml", "k", "v")


# -- rotating refresh --------------------------------------------------------------------------------
def _auth(state: MemoryState, wall: float = 1000.0) -> RotatingRefreshAuth:
    client = HttpClient(API, HttpSettings(max_attempts=2), name="ml", sleep=lambda s: None)
    return RotatingRefreshAuth(client, "app", "app-secret", state, channel="ml", platform="Mercado Livre",
                               reauthorize="syncagent auth mercadolivre --channel ml", wall=lambda: wall)


def _tokens(refresh: str, access: str = "A0", expires_at: float = 0.0) -> MemoryState:
    return MemoryState({STATE_KEY: json.dumps({"access_token": access, "refresh_token": refresh,
                                               "expires_at": expires_at, "user_id": "7"})})


@responses.activate
def test_a_refresh_stores_the_new_tokens_before_they_are_used() -> None:
    responses.post(f"{API}/oauth/token", json={"access_token": "A1", "refresh_token": "R1", "expires_in": 21600,
                                                "user_id": 7})
    state = _tokens("R0")
    assert _auth(state).headers() == {"Authorization": "Bearer A1"}
    doc = load_doc(state)
    assert (doc["refresh_token"], doc["access_token"], doc["expires_at"]) == ("R1", "A1", 1000.0 + 21600)
    assert "refresh_token=R0" in str(responses.calls[0].request.body)


@responses.activate
def test_invalid_grant_with_a_newer_token_stored_meanwhile_uses_it() -> None:
    """Another process (the `auth` command, say) stored new tokens while this one refreshed with the old."""
    state = _tokens("R0")

    def refused(request: Any) -> tuple[int, dict[str, str], str]:
        state.put(STATE_KEY, json.dumps({"access_token": "B1", "refresh_token": "S1", "expires_at": 99999.0}))
        return 400, {}, json.dumps({"error": "invalid_grant", "error_description": "used", "status": 400})

    responses.add_callback(responses.POST, f"{API}/oauth/token", callback=refused)
    assert _auth(state).headers() == {"Authorization": "Bearer B1"}


@responses.activate
def test_invalid_grant_with_nothing_newer_stops_with_the_command_and_does_not_knock_again() -> None:
    responses.post(f"{API}/oauth/token", status=400, json={"error": "invalid_grant", "status": 400,
                                                           "error_description": "already used"})
    state = _tokens("R0")
    auth = _auth(state)
    for _ in range(2):
        with pytest.raises(AuthError) as err:
            auth.headers()
        assert "syncagent auth mercadolivre --channel ml" in str(err.value)
    assert len(responses.calls) == 1 and load_doc(state)["locked"]


@responses.activate
def test_a_lost_refresh_answer_is_not_retried_with_the_same_token() -> None:
    responses.post(f"{API}/oauth/token", status=502)
    state = _tokens("R0")
    with pytest.raises(TransientError):
        _auth(state).headers()
    assert len(responses.calls) == 1 and load_doc(state)["refresh_token"] == "R0"


def test_never_authorized_says_which_command_to_run() -> None:
    with pytest.raises(AuthError, match="syncagent auth mercadolivre --channel ml"):
        _auth(MemoryState()).headers()


# -- orders search ------------------------------------------------------------------------------------
def _order(order_id: int, updated: datetime) -> dict[str, Any]:
    return {"id": order_id, "status": "paid", "last_updated": updated.isoformat()}


@responses.activate
def test_a_window_too_deep_is_split_and_the_cursor_is_the_newest_date_and_id() -> None:
    orders = [_order(100 + i, NOW - timedelta(hours=2) + timedelta(minutes=i)) for i in range(7)]

    def search(request: Any) -> tuple[int, dict[str, str], str]:
        q = request.params
        low = datetime.fromisoformat(q["order.date_last_updated.from"])
        high = datetime.fromisoformat(q["order.date_last_updated.to"])
        kept = [o for o in orders if low <= datetime.fromisoformat(o["last_updated"]) < high]
        offset, limit = int(q["offset"]), int(q["limit"])
        return 200, {}, json.dumps({"results": kept[offset:offset + limit], "paging": {"total": len(kept)}})

    responses.add_callback(responses.GET, f"{API}/orders/search", callback=search, content_type="application/json")
    client = HttpClient(API, HttpSettings(max_attempts=1), name="ml")
    windows = DateWindows(since=timedelta(hours=3), window=timedelta(hours=3), max_offset=2, limit=2)
    pages = list(windows.walk(client, "/orders/search", "7", None, NOW))
    ids = [o["id"] for items, _ in pages for o in items]
    assert sorted(ids) == ids == [o["id"] for o in orders]  # each once, oldest update first
    cursors = [c for _, c in pages if c]
    assert parse_cursor(cursors[-1])[2] == "106" and len(set(cursors)) == len(cursors)
    again = list(windows.walk(client, "/orders/search", "7", cursors[-1], NOW))  # the next poll: from the cursor, less an overlap
    assert all(c is None for _, c in again)  # nothing newer: the cursor stays


def test_a_bad_cursor_is_a_clear_error() -> None:
    with pytest.raises(PermanentError, match="is not .date.id."):
        parse_cursor("yesterday")


# -- wire -----------------------------------------------------------------------------------------------
def _ml_order(**over: Any) -> dict[str, Any]:
    order = {"id": 2000000001, "status": "paid", "last_updated": "2026-11-23T09:00:00.000-03:00",
             "date_created": "2026-11-23T08:59:00.000-03:00", "total_amount": 189.8, "pack_id": 2000000099,
             "order_items": [{"item": {"id": "MLB1", "seller_sku": "P000001"}, "quantity": 2, "unit_price": 94.9,
                              "full_unit_price": 99.9}],
             "payments": [{"status": "approved", "payment_type": "credit_card", "payment_method_id": "master",
                           "total_paid_amount": 189.8, "installments": 3},
                          {"status": "rejected", "payment_type": "ticket", "total_paid_amount": 189.8}],
             "buyer": {"first_name": "Ana", "last_name": "Souza"}}
    return order | over


def test_an_order_maps_items_discounts_payments_and_its_pack() -> None:
    order = parse_order(_ml_order(), {}, "43655547277")
    (item,) = order.items
    assert (item.code, item.quantity, item.unit_price, item.discount) == ("P000001", 2, Decimal("99.90"),
                                                                           Decimal("10.00"))
    assert [(p.method_code, p.amount, p.installments) for p in order.payments] == [("CC", Decimal("189.80"), 3)]
    assert order.total == Decimal("189.80") and "2000000099" in (order.notes or "")
    assert order.remote_id == "2000000001" and order.channel_customer_id == "43655547277"


@pytest.mark.parametrize(("change", "code"), [
    ({"order_items": [{"item": {"id": "MLB1"}, "quantity": 1, "unit_price": 10}]}, "missing_field"),
    ({"total_amount": "189.8"}, "bad_money"),
    ({"total_amount": 1e300}, "bad_money"),
    ({"total_amount": 0.001}, "bad_money"),
    ({"order_items": [{"item": {"seller_sku": "P1"}, "quantity": 0, "unit_price": 1}]}, "bad_quantity"),
    ({"order_items": []}, "missing_field"),
    ({"payments": [{"status": "approved", "payment_type": "crypto", "total_paid_amount": 1}]}, "unmapped_payment"),
])
def test_a_hostile_order_is_a_mapping_error_with_its_reason(change: dict[str, Any], code: str) -> None:
    with pytest.raises(MappingError) as err:
        parse_order(_ml_order(**change), {}, None)
    assert err.value.code == code


def test_the_buyer_comes_from_the_billing_info_document() -> None:
    buyer = parse_buyer(_ml_order(), {"billing_info": {"doc_type": "CPF", "doc_number": "436.555.472-77"}})
    assert buyer is not None and (buyer.document, buyer.name) == ("43655547277", "Ana Souza")
    assert parse_buyer(_ml_order(), {"billing_info": {}}) is None and parse_buyer(_ml_order(), None) is None


def test_ml_errors_read_the_cause_list() -> None:
    body = {"message": "Validation error", "error": "validation_error", "status": 400,
            "cause": [{"code": "item.price.invalid", "message": "price must be > 0"}, "x", 5]}
    code, text = ml_error(HttpResponse(400, {"Content-Type": "application/json"}, json.dumps(body).encode()))
    assert code == "validation_error" and "item.price.invalid: price must be > 0" in text
    assert ml_error(HttpResponse(502, {}, b"<html>bad gateway</html>")) == (None, "HTTP 502")


def test_the_nfe_xml_must_be_the_authorised_one_of_its_key() -> None:
    key = "3" * 44
    good = f"<nfeProc><NFe/><protNFe><infProt><chNFe>{key}</chNFe></infProt></protNFe></nfeProc>".encode()
    assert nfe_xml_problem(good, key) is None
    assert "nfeProc" in (nfe_xml_problem(b"<NFe/>", key) or "")
    assert "not" in (nfe_xml_problem(good, "4" * 44) or "")


@pytest.mark.parametrize("type_name", sorted(registry.CONNECTORS))
def test_every_connector_is_built_with_the_channel_state(type_name: str) -> None:
    """The agent passes `state=` to every connector's from_config (the journal-backed ConnectorState)."""
    assert "state" in inspect.signature(registry.load(type_name).from_config).parameters


def test_a_refresh_waits_for_another_process_and_uses_the_token_it_stored(tmp_path: Path) -> None:
    """API.md L28: never two refreshes with one token. The second one in line finds the new token stored."""
    with Journal(tmp_path / "j.db") as journal:
        journal.set_state("ml", STATE_KEY, json.dumps({"access_token": "A0", "refresh_token": "R0", "expires_at": 0}))
        state = journal.state_of("ml")
        entered = threading.Event()
        release = threading.Event()

        def other_process() -> None:  # holds the refresh lock, then stores what its refresh got
            with Journal(tmp_path / "j.db", lock=False) as other, other.state_of("ml").exclusive("oauth-refresh"):
                entered.set()
                release.wait(10)
                other.set_state("ml", STATE_KEY, json.dumps({"access_token": "A1", "refresh_token": "R1",
                                                             "expires_at": 99999.0}))

        worker = threading.Thread(target=other_process)
        worker.start()
        assert entered.wait(10)
        threading.Timer(0.2, release.set).start()
        with responses.RequestsMock() as mocked:  # no call may reach the token endpoint
            assert _auth(state).headers() == {"Authorization": "Bearer A1"}
            assert len(mocked.calls) == 0
        worker.join(10)


def test_the_config_of_the_docs_loads_and_builds_the_connector(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "connectors" / "mercadolivre.md").read_text()
    example = re.search(r"```yaml\n(channels:.*?)```", text, re.S)
    assert example is not None
    monkeypatch.setenv("ML_CLIENT_SECRET", "value-of-the-secret")
    monkeypatch.setenv("GL_CLIENT_SECRET", "value-of-the-bo-secret")
    path = tmp_path / "c.yaml"
    path.write_text(f"journal: {tmp_path / 'j.db'}\nbackoffice:\n  type: gestao-lojas\n  base_url: http://127.0.0.1:1\n"
                    "  client_id: x\n  client_secret: ${GL_CLIENT_SECRET}\n" + example.group(1))
    (channel,) = load_config(path).channels
    conn = MercadoLivreConnector.from_config(channel)
    assert conn.category_map["CALC"] == "MLB23262" and conn.payment_map["pix"] == "PIX"
    assert conn.client.settings.rate_per_second == 8.0
    unpaced = MercadoLivreConnector("ml", API, channel.options, HttpSettings())
    assert unpaced.client.settings.rate_per_second == 5  # none configured: a gentle pace all the same
    unpaced.close()
    assert isinstance(conn.auth, AuthorizationCode)
    assert conn.auth.consent_url(channel.options).startswith(
        "https://auth.mercadolivre.com.br/authorization?response_type=code&client_id=1234567890123456")
    conn.close()
