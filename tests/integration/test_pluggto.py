"""Plugg.to over real HTTP: the back office simulator, the Plugg.to simulator and the real agent between them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from syncagent.agent import Agent
from syncagent.config import load_config
from syncagent.connectors.pluggto import PluggtoConnector
from syncagent.http import HttpSettings
from syncagent.model import Invoice, OrderEvent, Shipment
from syncagent.simulators import build
from syncagent.simulators.common import serve_in_thread
from tests.integration.harness import Sim, cli

BO_SECRET = "itest-bo-secret-pluggto-01"
CLIENT_SECRET = "itest-pluggto-client-secret-77"
PASSWORD = "itest-pluggto-password-88"

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
  - name: pluggto
    type: pluggto
    base_url: {pluggto}
    client_id: itest-app
    client_secret: ${{IT_PLUGGTO_SECRET}}
    api_user: itest-seller
    api_password: ${{IT_PLUGGTO_PASSWORD}}
    warehouses: [CD01, LJ01]
    order_warehouse: CD01
    http: {{max_attempts: 3, connect_timeout: 2, read_timeout: 10}}
    flows:
      products: {{every: 15m}}
      prices: {{every: 15m}}
      stock: {{every: 15m}}
      orders: {{every: 2m}}
      order-events: {{every: 5m}}
"""


@dataclass
class World:
    bo: Sim
    hub: Sim
    config: Path

    def run(self) -> list[Any]:
        with Agent(load_config(self.config)) as agent:
            results = agent.run_once()
        assert all(r.status == "ok" for r in results), [(r.flow, r.status, r.error) for r in results]
        return results

    def hub_writes(self, after: int = 0) -> list[dict[str, Any]]:
        return [r for r in self.hub.requests_log(after) if r["method"] == "PUT"]

    def bo_orders(self) -> list[dict[str, Any]]:
        return [o for o in self.bo.admin("GET", "/_admin/orders")["items"] if o.get("channel") == "pluggto"]


def start_hub(tmp_path: Path, **options: str) -> Sim:
    opts = {"client_id": "itest-app", "client_secret": CLIENT_SECRET, "api_user": "itest-seller",
            "api_password": PASSWORD, "orders": "0", **options}
    return Sim(serve_in_thread(build("pluggto", str(tmp_path / "pluggto.db"), products=60, seed=7, **opts)))


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> Iterator[World]:
    monkeypatch.setenv("IT_BO_SECRET", BO_SECRET)
    monkeypatch.setenv("IT_PLUGGTO_SECRET", CLIENT_SECRET)
    monkeypatch.setenv("IT_PLUGGTO_PASSWORD", PASSWORD)
    bo = Sim(serve_in_thread(build("gestao-lojas", str(tmp_path / "bo.db"), products=60, seed=7,
                                   client_secret=BO_SECRET)))
    hub = start_hub(tmp_path)
    path = tmp_path / "syncagent.yaml"
    path.write_text(CONFIG.format(journal=tmp_path / "journal.db", bo=bo.url, pluggto=hub.url))
    yield World(bo, hub, path)
    hub.server.stop()
    bo.server.stop()
    out, err = capfd.readouterr()
    journal = b"".join(p.read_bytes() for p in tmp_path.glob("journal*"))
    for secret in (CLIENT_SECRET, PASSWORD, BO_SECRET):
        assert secret not in out + err and secret.encode() not in journal


def test_catalogue_export_then_only_changes(world: World) -> None:
    proc = cli(world.config, "push", "--entity", "products", "--full")
    assert proc.returncode == 0, proc.stderr
    products = {p["sku"]: p for p in world.hub.admin("GET", "/_admin/products")["items"]}
    count = world.bo.admin("GET", "/_admin/counts")["products"]
    assert len(products) == count  # the whole catalogue, one SKU per back office code
    assert all(r["path"].startswith("/skus/") for r in world.hub_writes())
    world.run()  # prices and stock follow; the products already there are not sent again
    mark = world.hub.last_request_id()
    world.bo.admin("PATCH", "/_admin/products/P000003", json={"description": "Camiseta Nova"})
    world.bo.admin("PUT", "/_admin/stock/P000004/CD01", json={"available": 77, "reserved": 0})
    world.run()
    writes = [(r["path"], json.loads(r["body"])) for r in world.hub_writes(mark)]
    assert [p for p, _ in writes] == ["/skus/P000003", "/skus/P000004/stock"]
    assert writes[0][1]["name"] == "Camiseta Nova"
    assert writes[1][1]["action"] == "update"  # absolute, never a delta
    assert world.hub.admin("GET", "/_admin/products")["items"][-1]["sku"] == "P000004"
    # a third run sends nothing
    mark = world.hub.last_request_id()
    world.run()
    assert world.hub_writes(mark) == []


def test_only_approved_orders_are_imported_once_and_acknowledged_after(world: World) -> None:
    approved = world.hub.admin("POST", "/_admin/orders", json={"count": 3})["items"]
    pending = world.hub.admin("POST", "/_admin/orders", json={"status": "pending"})["items"][0]
    cancelled = world.hub.admin("POST", "/_admin/orders", json={"status": "canceled"})["items"][0]
    world.run()
    imported = world.bo_orders()
    assert sorted(o["external_id"] for o in imported) == sorted(o["id"] for o in approved)
    numbers = {o["external_id"]: o["number"] for o in imported}
    for order in approved:  # acknowledged: our number in `external`, only after the back office had it
        assert world.hub.admin("GET", f"/_admin/orders/{order['id']}")["external"] == numbers[order["id"]]
    created = {json.loads(r["body"])["external_id"]: r["id"] for r in world.bo.requests_log()
               if r["method"] == "POST" and r["path"] == "/orders" and r["status"] == 201}
    assert set(created) == set(numbers)
    assert world.hub.admin("GET", f"/_admin/orders/{pending['id']}")["external"] is None
    assert world.hub.admin("GET", f"/_admin/orders/{cancelled['id']}")["external"] is None
    # approved later: imported then, once; nothing else twice
    world.hub.admin("POST", f"/_admin/orders/{pending['id']}/status", json={"status": "approved"})
    world.run()
    world.run()
    ids = [o["external_id"] for o in world.bo_orders()]
    assert sorted(ids) == sorted([*numbers, pending["id"]])
    # cancelled on Plugg.to after it was imported: cancelled in the back office
    world.hub.admin("POST", f"/_admin/orders/{approved[0]['id']}/status", json={"status": "canceled"})
    world.run()
    assert world.bo.admin("GET", f"/_admin/orders/{numbers[approved[0]['id']]}")["status"] == "cancelled"


def test_fulfilment_reaches_plugg_in_order_and_a_corrected_tracking_code_is_sent_again(world: World) -> None:
    order = world.hub.admin("POST", "/_admin/orders", json={})["items"][0]
    world.run()
    (bo_order,) = world.bo_orders()
    number = bo_order["number"]
    mark = world.hub.last_request_id()
    for kind in ("invoiced", "shipped", "delivered"):
        world.bo.admin("POST", f"/_admin/orders/{number}/events", json={"type": kind})
    world.run()
    puts = [json.loads(r["body"]) for r in world.hub_writes(mark) if r["path"] == f"/orders/{order['id']}"]
    assert [p["status"] for p in puts] == ["invoiced", "shipped", "delivered"]
    stored = world.hub.admin("GET", f"/_admin/orders/{order['id']}")
    (shipment,) = stored["shipments"]  # one shipment, updated in place by its id
    events = world.bo.admin("GET", f"/_admin/orders/{number}")["events"]
    invoice = next(e for e in events if e["type"] == "invoiced")["invoice"]
    shipped = next(e for e in events if e["type"] == "shipped")
    assert stored["status"] == "delivered"
    assert (shipment["nfe_key"], shipment["nfe_number"], shipment["nfe_serie"], shipment["nfe_link"]) == \
        (invoice["key"], invoice["number"], "1", invoice["xml_url"])
    assert (shipment["shipping_company"], shipment["track_code"], shipment["track_url"]) == \
        (shipped["shipment"]["carrier"], shipped["shipment"]["tracking_code"], shipped["shipment"]["tracking_url"])
    assert shipment["date_delivered"]
    # the tracking code is corrected in the back office: sent again, the order stays delivered
    mark = world.hub.last_request_id()
    world.bo.admin("PATCH", f"/_admin/events/{shipped['id']}", json={"shipment": {"tracking_code": "QB123456785BR"}})
    world.run()
    (put,) = [json.loads(r["body"]) for r in world.hub_writes(mark)]
    assert put["status"] == "delivered" and put["shipments"][0]["track_code"] == "QB123456785BR"
    stored = world.hub.admin("GET", f"/_admin/orders/{order['id']}")
    assert stored["status"] == "delivered" and [s["track_code"] for s in stored["shipments"]] == ["QB123456785BR"]
    mark = world.hub.last_request_id()
    world.run()
    assert world.hub_writes(mark) == []


def connector(hub: Sim, **options: Any) -> PluggtoConnector:
    opts = {"client_id": "itest-app", "client_secret": CLIENT_SECRET, "api_user": "itest-seller",
            "api_password": PASSWORD, **options}
    return PluggtoConnector("pluggto", hub.url, opts, HttpSettings(max_attempts=3), sleep=lambda s: None)


KEY = "35261112345678000190550010000123451000123456"


def test_a_delivered_event_carries_the_invoice_and_tracking_never_sent(tmp_path: Path) -> None:
    hub = start_hub(tmp_path)
    try:
        order = hub.admin("POST", "/_admin/orders", json={})["items"][0]
        conn = connector(hub)
        moment = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
        bare = OrderEvent("ev-d", "100001", "pluggto", order["id"], "delivered", moment)
        (early,) = conn.push("order-events", [conn.prepare("order-events", bare)])
        assert (early.status, early.reason_code) == ("rejected", "out_of_order")  # held back, not lost
        full = OrderEvent("ev-d", "100001", "pluggto", order["id"], "delivered", moment,
                          invoice=Invoice(KEY, "12345", "1", moment), shipment=Shipment("Jadlog", "JD1", None))
        (done,) = conn.push("order-events", [conn.prepare("order-events", full)])
        assert done.status == "created"
        stored = hub.admin("GET", f"/_admin/orders/{order['id']}")
        assert stored["status"] == "delivered" and stored["shipments"][0]["nfe_key"] == KEY
        (again,) = conn.push("order-events", [conn.prepare("order-events", full)])
        assert again.status == "exists"
    finally:
        hub.server.stop()


def test_expired_token_is_renewed_and_429_is_waited_out(tmp_path: Path) -> None:
    hub = start_hub(tmp_path)
    try:
        sleeps: list[float] = []
        conn = PluggtoConnector("pluggto", hub.url, {"client_id": "itest-app", "client_secret": CLIENT_SECRET,
                                                     "api_user": "itest-seller", "api_password": PASSWORD},
                                HttpSettings(max_attempts=3), sleep=sleeps.append)
        conn.check()
        hub.admin("POST", "/_admin/tokens/expire")
        conn.check()  # a 401, one new token by the password grant, the call again
        grants = [r for r in hub.requests_log() if r["path"] == "/oauth/token"]
        assert len(grants) == 2 and all("grant_type=password" in r["body"] for r in grants)
        hub.admin("POST", "/_admin/faults", json={"fail_next": 1, "fail_status": 429, "retry_after": 9})
        conn.check()
        assert sleeps == [9.0]
    finally:
        hub.server.stop()


def test_the_buyers_of_every_page_are_known_when_the_engine_asks(tmp_path: Path) -> None:
    hub = start_hub(tmp_path)
    try:
        made = hub.admin("POST", "/_admin/orders", json={"count": 5})["items"]
        conn = PluggtoConnector("pluggto", hub.url, {"client_id": "itest-app", "client_secret": CLIENT_SECRET,
                                                     "api_user": "itest-seller", "api_password": PASSWORD},
                                HttpSettings(max_attempts=3), sleep=lambda s: None, page_size=2)
        pages = conn.pull("orders", None)
        first = next(pages)
        assert len(first.records) == 2
        (buyers,) = list(conn.pull("channel-customers", None))  # asked while the first page is being handled
        documents = {(o["payer_cpf"] or o["payer_cnpj"]).replace(".", "").replace("-", "") for o in made}
        assert {c.remote_id for c in buyers.records} == documents
        assert sum(len(p.records) for p in pages) == 3
    finally:
        hub.server.stop()


def test_variations_made_in_the_panel_are_updated_in_place_by_their_sku(tmp_path: Path) -> None:
    from syncagent.model import Price, Product, StockLevel

    hub = start_hub(tmp_path)
    try:
        hub.admin("POST", "/_admin/products", json={"sku": "CAM-1", "name": "Camiseta", "variations": [
            {"sku": "P000007", "name": "Camiseta P", "quantity": 1, "price": 10.0},
            {"sku": "P000008", "name": "Camiseta M", "quantity": 1, "price": 10.0}]})
        conn = connector(hub)
        assert conn.push("products", [conn.prepare("products", Product("P000007", "Camiseta Azul P", True))])[0].ok
        assert conn.push("prices", [conn.prepare("prices", Price("P000007", Decimal("59.90")))])[0].ok
        assert conn.push("stock", [conn.prepare("stock", StockLevel("P000008", 12))])[0].ok
        (product,) = hub.admin("GET", "/_admin/products")["items"]  # no new product: the variations were updated
        small, medium = product["variations"]
        assert (small["name"], small["price"], small["special_price"]) == ("Camiseta Azul P", 59.9, 59.9)
        assert (medium["sku"], medium["quantity"]) == ("P000008", 12)
    finally:
        hub.server.stop()
