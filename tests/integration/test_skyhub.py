"""SkyHub against its simulator over real HTTP: the connector alone, and inside whole agent runs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from syncagent.agent import Agent
from syncagent.config import load_config
from syncagent.connectors.skyhub import SkyHubConnector
from syncagent.errors import AuthError
from syncagent.http import HttpSettings
from syncagent.model import Order, Price, Product, StockLevel
from syncagent.simulators import build, seeddata
from syncagent.simulators.common import serve_in_thread
from tests.integration.harness import Sim
from tests.integration.test_stock_sums import truth

EMAIL = "loja@exemplo.com.br"
API_KEY = "itest-skyhub-key-5e1d9c"
ACCOUNT_KEY = "itest-skyhub-accountmanager-77a0"
BO_SECRET = "itest-bo-secret-0123"
PRODUCTS = 6
CHANNEL = "skyhub-loja"
HEADERS = {"X-User-Email": EMAIL, "X-Api-Key": API_KEY, "X-Accountmanager-Key": ACCOUNT_KEY}

CONFIG = """\
journal: {journal}
log: {{level: warning, format: text}}
backoffice:
  type: gestao-lojas
  base_url: {bo}
  client_id: syncagent-demo
  client_secret: ${{IT_BO_SECRET}}
  http: {{max_attempts: 3, connect_timeout: 2, read_timeout: 10}}
channels:
  - name: {channel}
    type: skyhub
    base_url: {sky}
    email: {email}
    api_key: ${{IT_SKY_KEY}}
    account_manager_key: ${{IT_SKY_ACCOUNT}}
    warehouses: [CD01, LJ01]
    order_warehouse: LJ01
    safety_stock: 1
    http: {{max_attempts: 4, connect_timeout: 2, read_timeout: 10}}
    flows:
{flows}
"""


def start_sky(tmp_path: Path, **options: str) -> Sim:
    opts = {"email": EMAIL, "api_key": API_KEY, "account_manager_key": ACCOUNT_KEY, **options}
    return Sim(serve_in_thread(build("skyhub", str(tmp_path / "sky.db"), products=PRODUCTS, seed=7, **opts)))


def start_bo(tmp_path: Path) -> Sim:
    return Sim(serve_in_thread(build("gestao-lojas", str(tmp_path / "bo.db"), products=PRODUCTS, seed=7,
                                     client_secret=BO_SECRET)))


def connector(sky: Sim, **options: Any) -> SkyHubConnector:
    opts = {"email": EMAIL, "api_key": API_KEY, "account_manager_key": ACCOUNT_KEY, **options}
    return SkyHubConnector(CHANNEL, sky.url, opts, HttpSettings(max_attempts=3), sleep=lambda s: None)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IT_BO_SECRET", BO_SECRET)
    monkeypatch.setenv("IT_SKY_KEY", API_KEY)
    monkeypatch.setenv("IT_SKY_ACCOUNT", ACCOUNT_KEY)


@pytest.fixture
def sky(tmp_path: Path) -> Iterator[Sim]:
    sim = start_sky(tmp_path)
    yield sim
    sim.server.stop()


def write_config(tmp_path: Path, bo: Sim, sky: Sim, flows: tuple[str, ...]) -> Path:
    path = tmp_path / "syncagent.yaml"
    lines = "\n".join(f"      {flow}: {{every: 1m}}" for flow in flows)
    path.write_text(CONFIG.format(journal=tmp_path / "journal.db", bo=bo.url, sky=sky.url, email=EMAIL,
                                  channel=CHANNEL, flows=lines))
    return path


def run(path: Path, clock: Any = None) -> list[Any]:
    with Agent(load_config(path), **({"clock": clock} if clock else {})) as agent:
        results = agent.run_once()
    assert all(r.status == "ok" for r in results), [(r.flow, r.status, r.error) for r in results]
    return results


def writes(sim: Sim, after: int = 0) -> list[dict[str, Any]]:
    return [r for r in sim.requests_log(after) if r["method"] != "GET"]


# -- the connector alone --------------------------------------------------------------------------
def test_three_headers_and_a_wrong_key_is_an_auth_failure_without_the_secret(sky: Sim) -> None:
    connector(sky).check()
    wrong = connector(sky, api_key="wrong-" + API_KEY)
    with pytest.raises(AuthError) as caught:
        list(wrong.pull("orders", None))
    assert API_KEY not in str(caught.value) and "wrong-" not in str(caught.value)
    sky.admin("POST", "/_admin/config", json={"account_key": "rotated"})
    with pytest.raises(AuthError):  # API.md L25: the platform's key is checked too
        connector(sky).check()


def test_product_created_once_then_updated_in_place_and_price_stock_reach_variations(sky: Sim) -> None:
    conn = connector(sky)
    product = Product("P000001", "Camiseta Hering Azul M", True, barcode="7890000000017", brand="Hering",
                      weight_kg="0.250", height_cm="3", width_cm="30", length_cm="40")
    (first,) = conn.push("products", [conn.prepare("products", product)])
    (second,) = conn.push("products", [conn.prepare("products", Product("P000001", "Camiseta G", False))])
    assert (first.status, second.status) == ("created", "updated")
    # a variation made on the SkyHub panel under that product: price and stock reach it by its SKU
    assert conn.client.post("/products/P000001/variations", json={"variation": {"sku": "P000001-G", "qty": 0}}
                            ).status == 201
    results = conn.push("prices", [conn.prepare("prices", Price("P000001-G", Decimal("59.90"), Decimal("49.90")))])
    results += conn.push("stock", [conn.prepare("stock", StockLevel("P000001-G", 4)),
                                   conn.prepare("stock", StockLevel("NOPE", 1))])
    assert [r.status for r in results] == ["updated", "updated", "rejected"]
    assert results[2].reason_code == "unknown_sku"
    state = sky.admin("GET", "/_admin/state")
    (stored,) = state["products"]
    assert (stored["name"], stored["status"], stored["ean"], stored["weight"]) == \
        ("Camiseta G", "disabled", "7890000000017", 0.25)  # a partial PUT kept what it was not sent
    (variation,) = state["variations"]
    assert (variation["price"], variation["promotional_price"], variation["qty"]) == (59.9, 49.9, 4)
    # API.md L82-83: a promotional price above the price is refused, as a result with SkyHub's message
    bad = conn.client.put("/products/P000001", json={"product": {"price": 10.0, "promotional_price": 12.0}})
    assert bad.status == 422 and "promotional_price" in bad.json()["error"]


def test_orders_read_waits_a_second_between_order_reads(sky: Sim) -> None:
    sleeps: list[float] = []
    conn = SkyHubConnector(CHANNEL, sky.url, {"email": EMAIL, "api_key": API_KEY, "account_manager_key": ACCOUNT_KEY},
                           HttpSettings(max_attempts=3), sleep=sleeps.append)
    (order,) = sky.admin("POST", "/_admin/orders", json={"count": 1})["items"]
    path = "/orders/" + order["code"].replace(" ", "%20")
    # the simulator holds to the limit of API.md L46: a second read within the second is a 429, no Retry-After
    first = sky.http.get(sky.url + path, headers=HEADERS, timeout=10)
    second = sky.http.get(sky.url + path, headers=HEADERS, timeout=10)
    assert (first.status_code, second.status_code) == (200, 429) and "Retry-After" not in second.headers
    assert second.json() == {"error": "rate limit exceeded for orders GET"}  # API.md L34: one string
    sky.admin("POST", "/_admin/config", json={"rate_limits": False})  # the test's sleeps do not wait
    for _ in range(3):
        assert conn._order(order["code"]) is not None
    assert len([s for s in sleeps if s > 0.5]) >= 2  # the connector reads an order at most once a second


@pytest.mark.parametrize("mode", ["head", "hide"])
def test_a_queue_item_left_undeleted_ends_the_pull_and_comes_back_after_five_minutes(tmp_path: Path,
                                                                                   mode: str) -> None:
    sky = start_sky(tmp_path, queue_mode=mode)
    try:
        sky.admin("POST", "/_admin/orders", json={"count": 3})
        conn = connector(sky)
        pulled = [r.remote_id for page in conn.pull("orders", None) for r in page.records]
        # nothing acknowledged: "head" answers its first order again (the pull ends there), "hide" hands
        # each over once and then answers an empty queue
        assert len(pulled) == (1 if mode == "head" else 3)
        assert [r.remote_id for page in conn.pull("orders", None) for r in page.records] == \
            (pulled if mode == "head" else [])
        sky.admin("POST", "/_admin/clock", json={"advance": 301})  # API.md L102-103: queued again
        again = [r.remote_id for page in conn.pull("orders", None) for r in page.records]
        assert again and set(again) <= {o["code"] for o in sky.admin("GET", "/_admin/orders")["items"]}
        if mode == "head":
            assert again[0] != pulled[0]  # the order left waiting went to the back of the queue
        assert len(sky.admin("GET", "/_admin/queue")["items"]) == 3  # nothing was deleted
    finally:
        sky.server.stop()


# -- whole agent runs -------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["head"])  # "hide" goes through the agent in the refusal test below
def test_agent_catalogue_once_orders_once_deleted_after_creation_and_fulfilment_back(
        tmp_path: Path, env: None, mode: str, capfd: pytest.CaptureFixture[str]) -> None:
    bo, sky = start_bo(tmp_path), start_sky(tmp_path, queue_mode=mode, empty_queue="404")
    try:
        paid = sky.admin("POST", "/_admin/orders", json={"count": 3})["items"]
        (unpaid,) = sky.admin("POST", "/_admin/orders", json={"status": "book_product"})["items"]
        path = write_config(tmp_path, bo, sky, ("orders", "order-events", "products", "prices", "stock"))
        run(path)
        state = sky.admin("GET", "/_admin/state")
        bo_products = bo.admin("GET", "/_admin/counts")["products"]
        assert len(state["products"]) == bo_products
        assert all(p["price"] > 0 and p["promotional_price"] <= p["price"] for p in state["products"])
        # stock: the sum of CD01 and LJ01, less reserved and the safety stock, after the orders debited LJ01
        assert {p["sku"]: p["qty"] for p in state["products"]} == truth(tmp_path / "bo.db", ("CD01", "LJ01"), 1)

        # every paid order in the back office once; the unpaid one consumed (API.md L106), not imported
        bo_orders = [o for o in bo.admin("GET", "/_admin/orders")["items"] if o.get("channel") == CHANNEL]
        assert sorted(o["external_id"] for o in bo_orders) == sorted(o["code"] for o in paid)
        assert sky.admin("GET", "/_admin/queue")["items"] == []
        created_at = {json.loads(r["body"])["external_id"]: r["ts"] for r in bo.requests_log()
                      if r["method"] == "POST" and r["path"] == "/orders" and r["status"] == 201}
        deletes = [r for r in sky.requests_log() if r["method"] == "DELETE" and r["path"].startswith("/queues/")]
        deleted = {r["path"].split("/", 3)[3].replace("%20", " "): r["ts"] for r in deletes}
        assert set(deleted) == {o["code"] for o in paid} | {unpaid["code"]}
        assert all(deleted[code] > created_at[code] for code in created_at)  # removed only after creation
        # each order created and deleted before the queue is read again: GET, DELETE, GET, DELETE…
        queue = [r["method"] for r in sky.requests_log() if r["path"].startswith("/queues/orders")]
        assert queue == ["GET", "DELETE"] * 4 + ["GET"]

        # a second run writes nothing to SkyHub
        mark = sky.last_request_id()
        run(path)
        assert writes(sky, mark) == []

        # the marketplace queues an imported order again (an update): it is not created twice, it leaves again
        code = paid[0]["code"]
        sky.admin("POST", f"/_admin/orders/{code.replace(' ', '%20')}/status", json={"status": "payment_received"})
        run(path)
        assert len([o for o in bo.admin("GET", "/_admin/orders")["items"] if o.get("external_id") == code]) == 1
        assert sky.admin("GET", "/_admin/queue")["items"] == []

        # fulfilment in the back office reaches SkyHub in order: NF-e key, tracking, delivered
        number = next(o["number"] for o in bo_orders if o["external_id"] == code)
        for kind in ("invoiced", "shipped", "delivered"):
            bo.admin("POST", f"/_admin/orders/{number}/events", json={"type": kind})
        with Agent(load_config(path)) as agent:
            (result,) = [r for r in agent.run_once() if r.flow == "order-events"]
        assert result.status == "ok" and result.sent == 3
        stored = sky.admin("GET", f"/_admin/orders/{code.replace(' ', '%20')}")
        assert stored["status"]["code"] == "complete"
        (invoice,) = stored["invoices"]
        (shipment,) = stored["shipments"]
        assert len(invoice["key"]) == 44 and shipment["track"]["code"] and shipment["items"]
        assert not [r for r in sky.requests_log() if r["status"] == 429]  # paced under SkyHub's limits
        out, err = capfd.readouterr()
        for secret in (API_KEY, ACCOUNT_KEY):  # the keys never reach the output or the journal
            assert secret not in out + err and secret.encode() not in (tmp_path / "journal.db").read_bytes()
    finally:
        sky.server.stop()
        bo.server.stop()


def test_promotional_and_scheduled_prices_reach_skyhub_at_their_boundaries(tmp_path: Path, env: None) -> None:
    bo, sky = start_bo(tmp_path), start_sky(tmp_path)
    try:
        start = datetime.now(UTC).replace(microsecond=0)
        code = seeddata.product_code(1)
        bo.admin("PATCH", f"/_admin/prices/{code}", json={
            "list_price": "100.00", "promo_price": "80.00",
            "promo_start": (start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "promo_end": (start + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "scheduled": [{"list_price": "120.00",
                           "starts_at": (start + timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ")}]})
        path = write_config(tmp_path, bo, sky, ("products", "prices"))
        seen = []
        for hours in (0, 1, 2, 3):
            moment = start + timedelta(hours=hours, seconds=1)
            run(path, clock=lambda moment=moment: moment)
            product = next(p for p in sky.admin("GET", "/_admin/state")["products"] if p["sku"] == code)
            seen.append((product["price"], product["promotional_price"]))
        assert seen == [(100.0, 100.0), (100.0, 80.0), (100.0, 100.0), (120.0, 120.0)]
    finally:
        sky.server.stop()
        bo.server.stop()


def test_an_order_the_back_office_refuses_stays_in_the_queue_and_the_rest_goes_on(tmp_path: Path,
                                                                                env: None) -> None:
    bo, sky = start_bo(tmp_path), start_sky(tmp_path, queue_mode="hide")
    try:
        (bad,) = sky.admin("POST", "/_admin/orders", json={"items": [
            {"id": "NOT-IN-BO", "product_id": "X", "name": "?", "qty": 1, "original_price": 10.0,
             "special_price": 10.0}], "total_ordered": 10.0, "shipping_cost": 0.0,
            "payments": [{"method": "PIX", "value": 10.0, "parcels": 1}]})["items"]
        good = sky.admin("POST", "/_admin/orders", json={"count": 2})["items"]
        path = write_config(tmp_path, bo, sky, ("orders",))
        with Agent(load_config(path)) as agent:
            (result,) = agent.run_once()
        assert result.quarantined == 1
        imported = {o["external_id"] for o in bo.admin("GET", "/_admin/orders")["items"]}
        assert imported == {o["code"] for o in good}
        assert [i["code"] for i in sky.admin("GET", "/_admin/queue")["items"]] == [bad["code"]]
    finally:
        sky.server.stop()
        bo.server.stop()


def test_hostile_queue_answers_become_quarantine_or_a_clear_error(sky: Sim) -> None:
    conn = connector(sky)
    sky.admin("POST", "/_admin/config", json={"queue_mode": "hide"})  # bad records stay queued: read past them
    huge = sky.admin("POST", "/_admin/orders", json={"total_ordered": 1e15})["items"][0]["code"]
    text = sky.admin("POST", "/_admin/orders", json={"total_ordered": "12.50"})["items"][0]["code"]
    no_items = sky.admin("POST", "/_admin/orders", json={"items": []})["items"][0]["code"]
    records = [r for page in conn.pull("orders", None) for r in page.records]
    assert [(r.key, r.code) for r in records if not isinstance(r, Order)] == \
        [(huge, "bad_money"), (text, "bad_type"), (no_items, "missing_field")]


def test_unpaid_then_paid_then_cancelled_each_from_the_queue(tmp_path: Path, env: None) -> None:
    bo, sky = start_bo(tmp_path), start_sky(tmp_path)
    try:
        (order,) = sky.admin("POST", "/_admin/orders", json={"status": "book_product"})["items"]
        code, path = order["code"], f"/_admin/orders/{order['code'].replace(' ', '%20')}/status"
        config = write_config(tmp_path, bo, sky, ("orders",))
        mine = lambda: [o for o in bo.admin("GET", "/_admin/orders")["items"]  # noqa: E731
                        if o.get("external_id") == code]
        run(config)  # NEW: consumed (API.md L106), not imported
        assert mine() == [] and sky.admin("GET", "/_admin/queue")["items"] == []
        sky.admin("POST", path, json={"status": "payment_received"})  # paid: queued again, imported
        run(config)
        (created,) = mine()
        assert created["status"] != "cancelled" and sky.admin("GET", "/_admin/queue")["items"] == []
        sky.admin("POST", path, json={"status": "order_canceled"})  # cancelled by the buyer: cancelled here too
        run(config)
        (cancelled,) = mine()
        assert cancelled["status"] == "cancelled" and sky.admin("GET", "/_admin/queue")["items"] == []
    finally:
        sky.server.stop()
        bo.server.stop()


def test_a_status_move_whose_answer_was_lost_is_not_quarantined_when_retried(sky: Sim) -> None:
    from syncagent.model import Invoice, OrderEvent
    from syncagent.simulators.gestao_lojas import nfe_key

    sky.admin("POST", "/_admin/config", json={"rate_limits": False})  # the test's sleeps do not wait
    (order,) = sky.admin("POST", "/_admin/orders", json={"count": 1})["items"]
    sky.admin("POST", "/_admin/faults", json={"commit_then_fail": {"^POST /orders/.*/invoice$": 1.0},
                                              "commit_mode": "500", "commit_first": 1})
    conn = connector(sky)
    event = OrderEvent("ev1", "900001", CHANNEL, order["code"], "invoiced", datetime.now(UTC),
                       invoice=Invoice(nfe_key("lost-answer"), "1", "1"))
    (result,) = conn.push("order-events", [conn.prepare("order-events", event)])
    assert result.status == "created", result.reason  # applied, answer lost, the retry's 422 read as done
    stored = sky.admin("GET", "/_admin/orders/" + order["code"].replace(" ", "%20"))
    assert stored["status"]["type"] == "INVOICED" and len(stored["invoices"]) == 1


def test_a_config_missing_a_key_names_the_file_line_and_key(tmp_path: Path, env: None) -> None:
    from syncagent.errors import ConfigError

    nowhere = SimpleNamespace(url="http://127.0.0.1:9")  # loading a config calls no server
    path = write_config(tmp_path, nowhere, nowhere, ("orders",))  # type: ignore[arg-type]
    path.write_text(path.read_text().replace("    account_manager_key: ${IT_SKY_ACCOUNT}\n", ""))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "account_manager_key" in str(caught.value) and f"{path.name}:" in str(caught.value)

