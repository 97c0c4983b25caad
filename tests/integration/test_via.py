"""Via over real HTTP: the back office simulator, the Via simulator and the real agent between them,
including the switch from another integrator (DE/PARA, shadow first, orders it already took)."""

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
from syncagent.connectors.base import Outgoing
from syncagent.connectors.gestao_lojas import GestaoLojasConnector
from syncagent.connectors.via import ViaConnector
from syncagent.errors import TransientError
from syncagent.http import HttpSettings
from syncagent.model import BackOfficeOrder, Order, OrderItem, OrderPayment
from syncagent.simulators import build, seeddata
from syncagent.simulators.common import serve_in_thread
from tests.integration.harness import Sim, cli

BO_SECRET = "itest-bo-secret-via-01"
TOKEN = "itest-via-token-0042"
OLD_TOKEN = "itest-old-integrator-token-77"
CATEGORIES = {code: 100 + i for i, (code, _n, _p) in enumerate(seeddata.GROUPS)}

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
  - name: via
    type: via
    base_url: {via}
    client_id: itest-client
    access_token: ${{IT_VIA_TOKEN}}
    category_map: {categories}
    warehouses: [CD01, LJ01]
    order_warehouse: CD01
    shadow: {shadow}
    adopt: {adopt}
    http: {{max_attempts: 3, connect_timeout: 2, read_timeout: 10}}
    flows:
      products: {{every: 15m}}
      prices: {{every: 15m}}
      stock: {{every: 15m}}
      orders: {{every: 2m}}
      order-events: {{every: 5m}}
{extra}"""


@dataclass
class World:
    bo: Sim
    via: Sim
    tmp: Path

    def config(self, *, shadow: bool = False, adopt: bool = False, extra: str = "") -> Path:
        path = self.tmp / "syncagent.yaml"
        path.write_text(CONFIG.format(journal=self.tmp / "journal.db", bo=self.bo.url, via=self.via.url,
                                      categories=json.dumps(CATEGORIES), shadow=str(shadow).lower(),
                                      adopt=str(adopt).lower(), extra=extra))
        return path

    def run(self, **kw: Any) -> list[Any]:
        with Agent(load_config(self.config(**kw))) as agent:
            results = agent.run_once()
        assert all(r.status == "ok" for r in results), [(r.channel, r.flow, r.status, r.error) for r in results]
        return results

    def via_writes(self, after: int = 0) -> list[dict[str, Any]]:
        return [r for r in self.via.requests_log(after) if r["method"] in ("POST", "PUT")]

    def bo_orders(self) -> list[dict[str, Any]]:
        return [o for o in self.bo.admin("GET", "/_admin/orders")["items"] if o.get("channel") == "via"]


def start_via(tmp_path: Path, **options: str) -> Sim:
    opts = {"client_id": "itest-client", "access_token": TOKEN, "orders": "0", **options}
    return Sim(serve_in_thread(build("via", str(tmp_path / "via.db"), products=60, seed=7, **opts)))


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> Iterator[World]:
    monkeypatch.setenv("IT_BO_SECRET", BO_SECRET)
    monkeypatch.setenv("IT_VIA_TOKEN", TOKEN)
    bo = Sim(serve_in_thread(build("gestao-lojas", str(tmp_path / "bo.db"), products=60, seed=7,
                                   client_secret=BO_SECRET)))
    via = start_via(tmp_path)
    yield World(bo, via, tmp_path)
    via.server.stop()
    bo.server.stop()
    out, err = capfd.readouterr()
    journal = b"".join(p.read_bytes() for p in tmp_path.glob("journal*"))
    assert TOKEN not in out + err and TOKEN.encode() not in journal


def test_new_skus_are_loaded_then_only_differences_go(world: World) -> None:
    world.run()
    offers = {o["skuSellerId"]: o for o in world.via.admin("GET", "/_admin/offers")["items"]}
    assert len(offers) == world.bo.admin("GET", "/_admin/counts")["products"]
    some = offers["P000001"]
    assert set(some["prices"]) == {"CB", "PF", "EX"} and some["titulo"]
    inactive = {seeddata.product_code(i) for i in range(1, 61) if not seeddata.product(7, i)["active"]}
    assert inactive and all(set(offers[c]["status"].values()) == {False} for c in inactive)  # loaded, switched off
    assert all(set(o["status"].values()) == {True} for c, o in offers.items() if c not in inactive)
    mark = world.via.last_request_id()
    world.bo.admin("PATCH", "/_admin/prices/P000005", json={"list_price": "321.00", "promo_price": None})
    world.bo.admin("PUT", "/_admin/stock/P000006/CD01", json={"available": 55, "reserved": 0})
    world.run()
    writes = [(r["path"], json.loads(r["body"])) for r in world.via_writes(mark)]
    assert [p for p, _ in writes] == ["/api/v2/sellerItems/P000005/prices"] * 3 + ["/api/v2/sellerItems/P000006/stock"]
    assert {b["site"] for _, b in writes[:3]} == {"CB", "PF", "EX"} and writes[0][1]["default"] == "321.00"
    mark = world.via.last_request_id()
    world.run()
    assert world.via_writes(mark) == []


def _bo_event(world: World, number: str, kind: str, **body: Any) -> dict[str, Any]:
    return world.bo.admin("POST", f"/_admin/orders/{number}/events", json={"type": kind, **body})


def test_orders_once_fulfilment_in_order_corrections_and_cancellations_both_ways(world: World) -> None:
    approved = world.via.admin("POST", "/_admin/orders", json={"count": 3})["items"]
    new = world.via.admin("POST", "/_admin/orders", json={"status": "NEW"})["items"][0]
    world.run()
    world.run()
    imported = {o["external_id"]: o for o in world.bo_orders()}
    assert sorted(imported) == sorted(o["id"] for o in approved) and new["id"] not in imported
    first, second, third = (imported[o["id"]] for o in approved)
    lines = approved[0]["items"]
    assert sum(i["quantity"] for i in first["items"]) == len(lines)  # one line per unit, counted

    mark = world.via.last_request_id()
    for kind in ("invoiced", "shipped", "delivered"):
        _bo_event(world, first["number"], kind)
    world.run()
    posts = [r["path"].rsplit("/", 1)[1] for r in world.via_writes(mark)]
    assert posts == ["invoice", "sent", "delivered"]
    order = world.via.admin("GET", f"/_admin/orders/{approved[0]['id']}")
    assert order["status"] == "DLV" and order["trackings"]["invoice"]["invoice"]["accessKey"]
    shipped = next(e for e in world.bo.admin("GET", f"/_admin/orders/{first['number']}")["events"]
                   if e["type"] == "shipped")
    assert order["trackings"]["sent"]["number"] == shipped["shipment"]["tracking_code"]
    assert order["trackings"]["delivered"]["number"] == shipped["shipment"]["tracking_code"]
    # a corrected tracking code is sent again; the order stays delivered
    mark = world.via.last_request_id()
    world.bo.admin("PATCH", f"/_admin/events/{shipped['id']}", json={"shipment": {"tracking_code": "QB123456785BR"}})
    world.run()
    (again,) = world.via_writes(mark)
    assert again["path"].endswith("/trackings/sent") and json.loads(again["body"])["number"] == "QB123456785BR"
    assert world.via.admin("GET", f"/_admin/orders/{approved[0]['id']}")["status"] == "DLV"

    # cancelled on Via: cancelled in the back office; cancelled in the back office: cancelled on Via
    world.via.admin("POST", f"/_admin/orders/{approved[1]['id']}/status", json={"status": "CAN"})
    _bo_event(world, third["number"], "cancelled")
    world.run()
    assert world.bo.admin("GET", f"/_admin/orders/{second['number']}")["status"] == "cancelled"
    assert world.via.admin("GET", f"/_admin/orders/{approved[2]['id']}")["status"] == "CAN"
    mark = world.via.last_request_id()
    world.run()
    assert world.via_writes(mark) == []


def test_integrator_switch_de_para_shadow_first_then_only_differences(world: World) -> None:
    """The retailer's guide: SKUs kept (DE/PARA), the old token kept active while we run in shadow, orders in
    progress recognised; then the switch, and the old token revoked."""
    codes = [seeddata.product_code(i) for i in range(1, 61)]
    old = {code: f"CB-{code[1:]}" for code in codes}  # the old integrator's SKUs
    (world.tmp / "de-para.csv").write_text("code;channel_sku\n" + "".join(f"{c};{s}\n" for c, s in old.items()))
    config = world.config(shadow=True)
    assert cli(config, "mapping", "import", "--channel", "via", str(world.tmp / "de-para.csv")).returncode == 0
    # orders in progress (first: the one taken reserves stock in the back office): one the old integrator already put in the back office, one it did not
    taken, fresh = world.via.admin("POST", "/_admin/orders", json={"count": 2, "skus": [old["P000002"]]})["items"]
    backoffice = GestaoLojasConnector.from_config(load_config(config).backoffice)
    customer = backoffice.lookup("customers", document=seeddata.customer(7, 1)["document"])
    order = Order(taken["id"], "approved", (OrderItem("P000002", 1, Decimal("10.00")),), Decimal("10.00"),
                  (OrderPayment("CC", Decimal("10.00")),))
    (made,) = backoffice.push("orders", [backoffice.prepare("orders", BackOfficeOrder("via", order, customer.code,
                                                                                       "CD01"))])
    assert made.ok
    backoffice.close()

    # what the old integrator left on Via: offers as the back office has them, but for two prices and one stock
    with Agent(load_config(config)) as agent:
        planned = {entity: {p.key: p.payload for p in agent.engine.plan_step("via", entity, full=True)[1]}
                   for entity in ("products", "prices", "stock")}
    offers = []
    for code in codes:
        sku = old[code]
        if sku not in planned["products"]:
            continue  # inactive in the back office: never listed by the old integrator either
        price = planned["prices"].get(sku) or {"default": "10.00", "offer": "10.00"}
        content = {k: planned["products"][sku][k] for k in ("titulo", "descricao", "marca", "idCategoria",
                                                           "garantia", "dimensao")}
        active = planned["products"][sku]["active"]
        offers.append({"skuSellerId": sku, **content, "status": dict.fromkeys(("CB", "PF", "EX"), active),
                       "prices": dict.fromkeys(
            ("CB", "PF", "EX"), {"default": price["default"], "offer": price["offer"]}),
            "stock": {"quantity": (planned["stock"].get(sku) or {"quantity": 0})["quantity"], "crossDockingTime": 0}})
    drifted = [offers[3]["skuSellerId"], offers[4]["skuSellerId"]]
    for offer in offers[3:5]:
        offer["prices"] = {site: {"default": "999.00", "offer": "999.00"} for site in ("CB", "PF", "EX")}
    offers[7]["stock"] = {"quantity": 987, "crossDockingTime": 0}
    world.via.admin("POST", "/_admin/offers", json={"items": offers})
    # 1. shadow: read everything, plan everything, send nothing
    mark, bo_mark = world.via.last_request_id(), world.bo.last_request_id()
    results = world.run(shadow=True)
    assert world.via_writes(mark) == []
    assert [r for r in world.bo.requests_log(bo_mark) if r["method"] == "POST" and r["path"] == "/orders"] == []
    by_flow = {r.flow: r for r in results}
    assert by_flow["prices"].details.get("would_send") is None or by_flow["prices"].sent == 0
    report = cli(config, "reconcile", "--channel", "via", "--entity", "prices", "--json")
    found = json.loads(report.stdout)
    assert sorted(d["key"] for d in found["differing"]) == sorted(drifted) and found["counts"]["missing"] == 0
    stock = json.loads(cli(config, "reconcile", "--channel", "via", "--entity", "stock", "--json").stdout)
    assert [d["key"] for d in stock["differing"]] == [offers[7]["skuSellerId"]]

    # 2. the switch: only the differences go, no SKU is loaded again, no order is imported twice
    mark = world.via.last_request_id()
    world.run()
    writes = [r["path"] for r in world.via_writes(mark)]
    # the drifted prices (one PUT per site), the drifted stock, and the stock of P000002, which the new order
    # imported in this very run reserved in the back office
    assert sorted(writes) == sorted([f"/api/v2/sellerItems/{sku}/prices" for sku in drifted for _ in range(3)] +
                                    [f"/api/v2/sellerItems/{offers[7]['skuSellerId']}/stock",
                                     f"/api/v2/sellerItems/{old['P000002']}/stock"])
    ids = sorted(o["external_id"] for o in world.bo_orders())
    assert ids == sorted([taken["id"], fresh["id"]])  # the order taken before is there once
    imported = next(o for o in world.bo_orders() if o["external_id"] == fresh["id"])
    assert {i["sku"] for i in imported["items"]} == {"P000002"}  # the old SKU read back through the DE/PARA
    # the order the old integrator took still gets its fulfilment on Via
    number = next(o["number"] for o in world.bo_orders() if o["external_id"] == taken["id"])
    _bo_event(world, number, "invoiced")
    world.run()
    assert world.via.admin("GET", f"/_admin/orders/{taken['id']}")["status"] == "INV"

    # 3. the second ticket: the old integrator's token is revoked; ours goes on
    world.via.admin("POST", "/_admin/tokens", json={"access_token": OLD_TOKEN})
    world.via.admin("POST", "/_admin/tokens/revoke", json={"access_token": OLD_TOKEN})
    world.run()


def test_adopt_binds_the_old_integrators_offers_by_ean_in_shadow(world: World) -> None:
    """`adopt: true` where Via lists the store's offers: each one whose EAN is a product's barcode is bound."""
    offers = [{"skuSellerId": f"OLD-{i:04d}", "ean": seeddata.ean13(i)} for i in range(1, 11)]
    offers.append({"skuSellerId": "OLD-9999", "ean": "7890000099999"})  # a product the back office does not have
    world.via.admin("POST", "/_admin/offers", json={"items": offers})
    mark = world.via.last_request_id()
    world.run(shadow=True, adopt=True)
    assert world.via_writes(mark) == []
    listed = json.loads(cli(world.config(shadow=True, adopt=True), "mapping", "list", "--channel", "via",
                            "--json").stdout)
    pairs = {(p["code"], p["channel_sku"], p["source"]) for p in listed}
    assert pairs == {(seeddata.product_code(i), f"OLD-{i:04d}", "adopt") for i in range(1, 11)}


def test_a_revoked_token_stops_that_channel_only_with_a_clear_status(world: World, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "other").mkdir()
    other = start_via(tmp_path / "other", access_token="other-store-token-1234")  # another store's Via account
    monkeypatch.setenv("IT_VIA_TOKEN_2", "other-store-token-1234")
    extra = (f"  - name: via-outra\n    type: via\n    base_url: {other.url}\n    client_id: itest-client\n"
             "    access_token: ${IT_VIA_TOKEN_2}\n    category_id: 100\n    warehouses: [CD01]\n"
             "    order_warehouse: CD01\n    flows:\n      products: {every: 15m}\n      orders: {every: 2m}\n")
    try:
        world.via.admin("POST", "/_admin/tokens/revoke")  # the seller changed integrator: Via revoked ours
        config = world.config(extra=extra)
        run = cli(config, "run", "--once", "--json")
        assert run.returncode == 1
        steps = json.loads(run.stdout)
        ours = [s for s in steps if s["channel"] == "via"]
        assert ours[0]["status"] == "auth_failed" and "Auth-token inválido" in ours[0]["error"]
        assert {s["status"] for s in ours[1:]} == {"skipped"}
        assert {s["status"] for s in steps if s["channel"] == "via-outra"} == {"ok"}
        status = {c["name"]: c for c in json.loads(cli(config, "status", "--json").stdout)["channels"]}
        assert status["via"]["auth_state"] == "auth_failed" and status["via-outra"]["auth_state"] == "ok"
    finally:
        other.server.stop()


def test_429_is_waited_out_and_an_offer_not_approved_yet_is_a_rejection(tmp_path: Path) -> None:
    via = start_via(tmp_path, manual_approval="1")
    try:
        sleeps: list[float] = []
        conn = ViaConnector("via", via.url, {"client_id": "itest-client", "access_token": TOKEN, "category_id": 100},
                            HttpSettings(max_attempts=3), sleep=sleeps.append,
                            clock=lambda: datetime(2026, 11, 23, tzinfo=UTC))
        from syncagent.model import Price, Product

        (loaded,) = conn.push("products", [conn.prepare("products", Product("P000001", "Camiseta", True))])
        assert loaded.status == "created"
        (price,) = conn.push("prices", [conn.prepare("prices", Price("P000001", Decimal("10.00")))])
        assert (price.status, price.reason_code) == ("rejected", "not_an_offer")  # the load waits for approval
        via.admin("POST", "/_admin/loads/approve")
        via.admin("POST", "/_admin/faults", json={"fail_next": 1, "fail_status": 429, "retry_after": 62})
        (price,) = conn.push("prices", [Outgoing("P000001", {"sku": "P000001", "default": "10.00", "offer": "9.00"})])
        assert price.status == "updated" and sleeps == [62.0]
    finally:
        via.server.stop()


def test_the_buyers_of_every_page_are_known_when_the_engine_asks(tmp_path: Path) -> None:
    via = start_via(tmp_path)
    try:
        made = via.admin("POST", "/_admin/orders", json={"count": 5})["items"]
        conn = ViaConnector("via", via.url, {"client_id": "itest-client", "access_token": TOKEN},
                            HttpSettings(max_attempts=3), sleep=lambda s: None, page_size=2)
        pages = conn.pull("orders", None)
        assert len(next(pages).records) == 2
        (buyers,) = list(conn.pull("channel-customers", None))
        assert {c.remote_id for c in buyers.records} == {o["customer"]["documentNumber"] for o in made}
        assert sum(len(p.records) for p in pages) == 3
    finally:
        via.server.stop()


def test_the_per_minute_budget_answers_429_with_retry_after_which_is_waited_out(tmp_path: Path) -> None:
    via = start_via(tmp_path, per_minute="2")
    try:
        sleeps: list[float] = []
        conn = ViaConnector("via", via.url, {"client_id": "itest-client", "access_token": TOKEN},
                            HttpSettings(max_attempts=2), sleep=sleeps.append)
        conn.check()
        conn.check()
        with pytest.raises(TransientError):  # the sleeps are not real here: still over the budget, then given up
            conn.check()
        assert len(sleeps) == 1 and 1 <= sleeps[0] <= 61  # the Retry-After Via gave: the rest of its minute
        assert [r["status"] for r in via.requests_log()][-2:] == [429, 429]
    finally:
        via.server.stop()
