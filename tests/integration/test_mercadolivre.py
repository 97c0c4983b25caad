"""Mercado Livre over real HTTP: the simulator, the back office simulator and the real agent and CLI."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from syncagent.agent import Agent
from syncagent.config import load_config
from syncagent.journal import Journal
from syncagent.simulators.gestao_lojas import nfe_key
from tests.integration.harness import CANARY_ENV, CANARY_SECRET, Sim, assert_no_canary, cli, start

ML_SECRET = "ml-canary-" + CANARY_SECRET[-12:]
ML_CLIENT = "1234567890123456"
ENV = {**CANARY_ENV, "ML_CLIENT_SECRET": ML_SECRET}
CHANNEL = "ml-loja"
CONFIG = """\
journal: {journal}
log: {{level: warning, format: text}}
backoffice:
  type: gestao-lojas
  base_url: {bo}
  client_id: ${{GL_CLIENT_ID}}
  client_secret: ${{GL_CLIENT_SECRET}}
  http: {http}
channels:
  - name: {channel}
    type: mercadolivre
    base_url: {ml}
    client_id: "{client}"
    client_secret: ${{ML_CLIENT_SECRET}}
    redirect_uri: https://loja.example/ml/callback
    category_id: MLB31447
    warehouses: [CD01, LJ01]
    order_warehouse: LJ01
    http: {http}
    flows:
{flows}
"""


@dataclass
class World:
    bo: Sim
    ml: Sim
    config: Path
    journal: Path

    def run(self, flows: list[str] | None = None, clock: datetime | None = None) -> list[Any]:
        with Agent(load_config(self.config), clock=(lambda: clock) if clock else lambda: datetime.now(UTC)) as agent:
            steps = agent.steps(flows=flows)
            return agent.run_steps(steps)

    def items(self) -> list[dict[str, Any]]:
        return self.ml.admin("GET", "/_admin/items")["items"]

    def ml_writes(self, after: int = 0) -> list[dict[str, Any]]:
        return [r for r in self.ml.requests_log(after) if r["method"] != "GET" and r["path"] != "/oauth/token"]


HTTP = "{max_attempts: 3, connect_timeout: 2, read_timeout: 10, rate_limit: {per_second: 1000, burst: 100}}"


def write_config(tmp_path: Path, bo: Sim, ml: Sim, flows: list[str], http: str = HTTP) -> Path:
    lines = "\n".join(f"      {f}: {{every: 1m}}" for f in flows)
    path = tmp_path / "syncagent.yaml"
    path.write_text(CONFIG.format(journal=tmp_path / "journal.db", bo=bo.url, ml=ml.url, channel=CHANNEL,
                                  client=ML_CLIENT, flows=lines, http=http))
    return path


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> Iterator[World]:
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    bo = start("gestao-lojas", tmp_path / "bo.db", products=12)
    ml = start("mercadolivre", tmp_path / "ml.db", products=12, client_secret=ML_SECRET, client_id=ML_CLIENT)
    config = write_config(tmp_path, bo, ml, ["orders", "order-events", "products", "prices", "stock"])
    yield World(bo, ml, config, tmp_path / "journal.db")
    stop_all(ml, bo)
    assert_no_canary(tmp_path, capfd)
    out = capfd.readouterr()
    assert ML_SECRET not in out.out + out.err


def stop_all(*sims: Sim) -> None:
    """Every server at once, each woken by a connection so that none waits out its poll interval."""
    stopping = [threading.Thread(target=sim.server.stop) for sim in sims]
    for thread in stopping:
        thread.start()
    while any(thread.is_alive() for thread in stopping):
        for sim in sims:
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", sim.server.port), timeout=0.1).close()
        for thread in stopping:
            thread.join(0.01)


def authorize(world: World) -> None:
    """What the operator does once: `syncagent auth mercadolivre --channel C`, pasting the redirected URL."""
    code = world.ml.admin("POST", "/_admin/auth/code")["code"]
    proc = cli(world.config, "auth", "mercadolivre", "--channel", CHANNEL, "--code",
               f"https://loja.example/ml/callback?code={code}", env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert "auth.mercadolivre.com.br/authorization?response_type=code&client_id=" + ML_CLIENT in proc.stdout
    assert f"{CHANNEL}: authorized (seller 123456789)" in proc.stdout


def stored_tokens(world: World) -> dict[str, Any]:
    with Journal(world.journal, lock=False) as journal:
        return json.loads(journal.state(CHANNEL, "oauth") or "{}")


# -- auth ---------------------------------------------------------------------------------------------
def test_a_channel_never_authorized_stops_with_the_command_to_run(world: World) -> None:
    results = world.run(["products"])
    assert results[0].status != "ok"
    with Journal(world.journal, lock=False) as journal:
        state, message = journal.channel_states()[CHANNEL]
    assert state == "auth_failed" and f"syncagent auth mercadolivre --channel {CHANNEL}" in (message or "")
    assert world.items() == []


def test_refresh_rotates_the_token_and_stores_the_new_one_before_using_it(world: World) -> None:
    authorize(world)
    first = stored_tokens(world)
    world.ml.admin("POST", "/_admin/tokens/expire")  # six hours later
    assert all(r.status == "ok" for r in world.run(["products"]))
    second = stored_tokens(world)
    assert second["refresh_token"] != first["refresh_token"] and second["access_token"] != first["access_token"]
    # the old refresh token is dead at the platform; the one stored is the one live there
    assert world.ml.admin("GET", "/_admin/tokens/refresh")["items"] == [second["refresh_token"]]
    grants = [r["body"].split("grant_type=")[1].split("&")[0] for r in world.ml.requests_log()
              if r["path"] == "/oauth/token"]
    assert grants == ["authorization_code", "refresh_token"]


def test_check_config_online_uses_the_stored_tokens_and_stores_a_refreshed_one(world: World) -> None:
    proc = cli(world.config, "check-config", "--online", env=ENV)
    assert proc.returncode == 1 and f"syncagent auth mercadolivre --channel {CHANNEL}" in proc.stdout
    authorize(world)
    world.ml.admin("POST", "/_admin/tokens/expire")
    proc = cli(world.config, "check-config", "--online", env=ENV)
    assert proc.returncode == 0 and f"{CHANNEL}: reachable, credentials accepted" in proc.stdout
    # the check refreshed: the token it got is the one stored, so the agent goes on with it
    assert world.ml.admin("GET", "/_admin/tokens/refresh")["items"] == [stored_tokens(world)["refresh_token"]]
    assert all(r.status == "ok" for r in world.run(["products"]))


def test_doctor_says_which_command_gives_the_authorization_back(world: World) -> None:
    proc = cli(world.config, "doctor", env=ENV)
    assert proc.returncode == 1
    assert f"endpoint:{CHANNEL}: not authorized" in proc.stdout
    assert f"`syncagent auth mercadolivre --channel {CHANNEL}`" in proc.stdout


def test_a_revoked_authorization_stops_the_channel_with_a_clear_status_and_auth_gives_it_back(world: World) -> None:
    authorize(world)
    world.ml.admin("POST", "/_admin/tokens/revoke")  # the seller removed the app (or a refresh answer was lost)
    assert world.run(["products"])[0].status != "ok"
    with Journal(world.journal, lock=False) as journal:
        state, message = journal.channel_states()[CHANNEL]
    assert state == "auth_failed" and "invalid_grant" in (message or "") and "syncagent auth mercadolivre" in message
    posts = len([r for r in world.ml.requests_log() if r["path"] == "/oauth/token"])
    world.run(["products"])  # the lock-out is remembered: no knocking again with the dead token
    assert len([r for r in world.ml.requests_log() if r["path"] == "/oauth/token"]) == posts
    authorize(world)
    assert all(r.status == "ok" for r in world.run(["products"]))


# -- catalogue ----------------------------------------------------------------------------------------
def test_catalogue_is_created_then_only_changes_are_sent(world: World) -> None:
    authorize(world)
    assert all(r.status == "ok" for r in world.run(["products", "prices", "stock"]))
    items = {sku(i): i for i in world.items()}
    assert len(items) == 12
    for item in items.values():
        assert item["price"] > 1  # the real price, not the one it was created with
        assert item["status"] in ("active", "paused") and item["available_quantity"] >= 0
    creates = [r for r in world.ml_writes() if r["method"] == "POST" and r["path"] == "/items"]
    assert len(creates) == 12 and all(json.loads(r["body"])["status"] == "paused" for r in creates)
    mark = world.ml.last_request_id()
    assert all(r.status == "ok" for r in world.run(["products", "prices", "stock"]))
    assert world.ml_writes(mark) == []  # nothing changed: nothing sent
    code = sorted(items)[0]
    world.bo.admin("PATCH", f"/_admin/products/{code}", json={"description": "Camiseta Nova Coleção"})
    world.bo.admin("PATCH", f"/_admin/prices/{code}", json={"list_price": "77.70", "promo_price": None,
                                                            "promo_start": None, "promo_end": None, "scheduled": []})
    mark = world.ml.last_request_id()
    assert all(r.status == "ok" for r in world.run(["products", "prices", "stock"]))
    writes = world.ml_writes(mark)
    assert [(w["method"], w["path"]) for w in writes] == [("PUT", f"/items/{items[code]['id']}")] * 2
    after = {sku(i): i for i in world.items()}[code]
    assert (after["title"], after["price"]) == ("Camiseta Nova Coleção", 77.7)
    # the product's active flag is the listing's status: paused, then active again
    for active, status in ((False, "paused"), (True, "active")):
        world.bo.admin("PATCH", f"/_admin/products/{code}", json={"active": active})
        assert all(r.status == "ok" for r in world.run(["products"]))
        assert {sku(i): i for i in world.items()}[code]["status"] == status


def test_a_listing_made_in_mercado_livre_is_found_by_seller_sku_in_its_variations(world: World) -> None:
    authorize(world)
    variations = [{"id": 111, "price": 10, "available_quantity": 1,
                   "attribute_combinations": [{"id": "SELLER_SKU", "value_name": "P000001"}]},
                  {"id": 222, "price": 10, "available_quantity": 1, "seller_custom_field": "P000002"}]
    item = world.ml.admin("POST", "/_admin/items", json={"variations": variations})
    assert all(r.status == "ok" for r in world.run(["products", "prices", "stock"]))
    held = {i["id"]: i for i in world.items()}[item["id"]]
    assert {v["id"]: v["price"] for v in held["variations"]}[111] > 1  # the variation got the price
    assert len(world.items()) == 12 - 2 + 1  # two codes live in the one listing: not created again


def test_promotional_price_reaches_the_channel_at_its_boundaries(world: World) -> None:
    authorize(world)
    now = datetime.now(UTC).replace(microsecond=0)
    code = "P000003"
    world.bo.admin("PATCH", f"/_admin/prices/{code}", json={
        "list_price": "100.00", "promo_price": "79.90", "promo_start": (now + timedelta(hours=1)).isoformat(),
        "promo_end": (now + timedelta(hours=2)).isoformat(), "scheduled": [
            {"list_price": "110.00", "starts_at": (now + timedelta(hours=3)).isoformat()}]})

    def price_at(moment: datetime) -> float:
        assert all(r.status == "ok" for r in world.run(["products", "prices"], clock=moment))
        return float({sku(i): i for i in world.items()}[code]["price"])

    assert price_at(now) == 100.0
    assert price_at(now + timedelta(minutes=59)) == 100.0
    assert price_at(now + timedelta(hours=1, seconds=1)) == 79.9
    assert price_at(now + timedelta(hours=2, seconds=1)) == 100.0
    assert price_at(now + timedelta(hours=3, seconds=1)) == 110.0


# -- orders and fulfilment ----------------------------------------------------------------------------
def test_paid_orders_are_imported_exactly_once_and_nfe_and_tracking_reach_the_channel(world: World) -> None:
    authorize(world)
    me2 = world.ml.admin("POST", "/_admin/orders", json={"count": 2, "shipping_mode": "me2"})["items"]
    me1 = world.ml.admin("POST", "/_admin/orders", json={"count": 1, "shipping_mode": "me1"})["items"]
    pack = world.ml.admin("POST", "/_admin/orders", json={"count": 2, "shipping_mode": "me1",
                                                          "pack_id": 2000000099})["items"]
    waiting = world.ml.admin("POST", "/_admin/orders", json={"count": 1, "status": "payment_in_process"})["items"]
    for _ in range(2):
        world.run(["orders"])
    bo_orders = world.bo.admin("GET", "/_admin/orders")["items"]
    by_external = Counter(o["external_id"] for o in bo_orders)
    paid = [o["id"] for o in me2 + me1 + pack]
    assert sorted(by_external) == sorted(str(i) for i in paid) and set(by_external.values()) == {1}
    assert str(waiting[0]["id"]) not in by_external
    # the waiting one is paid later: imported then, once
    world.ml.admin("POST", f"/_admin/orders/{waiting[0]['id']}/status", json={"status": "paid"})
    world.run(["orders"])
    assert Counter(o["external_id"] for o in world.bo.admin("GET", "/_admin/orders")["items"])[
        str(waiting[0]["id"])] == 1
    number = {o["external_id"]: o["number"] for o in world.bo.admin("GET", "/_admin/orders")["items"]}
    # the back office invoices (one NF-e for the pack, as ML keeps one per shipment) and ships
    for order in me2 + me1 + pack:
        key = nfe_key(f"pack-{order['pack_id']}" if order["pack_id"] else str(order["id"]))
        world.bo.admin("POST", f"/_admin/orders/{number[str(order['id'])]}/events", json={
            "type": "invoiced", "invoice": {"key": key, "xml_url": f"{world.ml.url}/_admin/nfe/{key}.xml"}})
        parcel = {"carrier": "Correios", "tracking_code": f"QB{order['pack_id'] or order['id']}BR"[-13:]}
        world.bo.admin("POST", f"/_admin/orders/{number[str(order['id'])]}/events", json={  # a pack: one parcel
            "type": "shipped", "shipment": parcel})
    world.run(["order-events"])
    world.run(["order-events"])
    shipments = {s["id"]: s for s in world.ml.admin("GET", "/_admin/shipments")["items"]}
    for order in me2 + me1 + pack:
        shipment = shipments[order["shipping"]["id"]]
        assert shipment["invoice"]["fiscal_key"] == nfe_key(f"pack-{order['pack_id']}" if order["pack_id"]
                                                            else str(order["id"]))
    for order in me1 + pack:  # the seller ships: the tracking reached ML
        assert shipments[order["shipping"]["id"]]["status"] == "shipped"
        assert shipments[order["shipping"]["id"]]["tracking_number"]
    for order in me2:  # ML ships: nothing sent after the NF-e
        assert shipments[order["shipping"]["id"]]["tracking_number"] is None
    uploads = [r for r in world.ml.requests_log() if r["method"] == "POST" and r["path"].endswith("/invoice_data")]
    notes = [r for r in world.ml.requests_log() if r["path"].endswith("/seller_notifications")]
    assert len(uploads) == 4 and len(notes) == 2  # the pack's shipment got its NF-e and tracking once
    with Journal(world.journal, lock=False) as journal:
        assert journal.has_open_quarantine(CHANNEL, "order-events") is False


def test_a_paid_order_cancelled_on_mercado_livre_is_cancelled_in_the_back_office(world: World) -> None:
    authorize(world)
    (order,) = world.ml.admin("POST", "/_admin/orders", json={"count": 1})["items"]
    world.run(["orders"])
    world.ml.admin("POST", f"/_admin/orders/{order['id']}/status", json={"status": "cancelled"})
    world.run(["orders"])
    (held,) = [o for o in world.bo.admin("GET", "/_admin/orders")["items"] if o["external_id"] == str(order["id"])]
    assert held["status"] == "cancelled" and held["cancel_reason"]


def test_an_order_that_cannot_be_mapped_is_quarantined_with_its_reason_and_the_rest_go_on(world: World) -> None:
    authorize(world)
    good = world.ml.admin("POST", "/_admin/orders", json={"count": 2})["items"]
    (bad,) = world.ml.admin("POST", "/_admin/orders", json={"items": [{"item_id": "MLB77", "quantity": 1,
                                                                       "unit_price": 10}]})["items"]
    world.run(["orders"])
    created = Counter(o["external_id"] for o in world.bo.admin("GET", "/_admin/orders")["items"])
    assert sorted(created) == sorted(str(o["id"]) for o in good)
    with Journal(world.journal, lock=False) as journal:
        (row,) = journal.quarantined(CHANNEL, "orders")
    assert row.key == str(bad["id"]) and row.reason_code == "missing_field" and "MLB77 has no SELLER_SKU" in row.reason


def sku(item: dict[str, Any]) -> str:
    return next(a["value_name"] for a in item["attributes"] if a["id"] == "SELLER_SKU")
