"""The VTEX connector against the VTEX simulator over real HTTP, alone and inside a whole agent run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from syncagent.agent import Agent
from syncagent.config import load_config
from syncagent.connectors.vtex import VtexConnector, WarehouseLevel
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
from syncagent.simulators import build, seeddata
from syncagent.simulators.common import RunningServer, serve_in_thread

APP_KEY = "vtexappkey-itest-QWERTY"
APP_TOKEN = "itest-token-0123456789"
BO_SECRET = "itest-bo-secret-0123"
CATEGORIES = {code: i for i, (code, _name, _parent) in enumerate(seeddata.GROUPS, start=1)}
BRANDS = {name: 2_000_000 + i for i, name in enumerate(seeddata.BRANDS, start=1)}


class Vtex:
    """The simulator and an admin session to it."""

    def __init__(self, server: RunningServer) -> None:
        self.server = server
        self.http = requests.Session()

    @property
    def url(self) -> str:
        return self.server.url

    def admin(self, method: str, path: str, **kw: Any) -> Any:
        resp = self.http.request(method, self.url + path, timeout=30, **kw)
        assert resp.status_code < 400, f"{method} {path}: {resp.status_code} {resp.text[:300]}"
        return resp.json() if resp.content else None

    def log(self) -> list[dict[str, Any]]:
        return self.admin("GET", "/_admin/requests")["items"]

    def writes(self) -> list[dict[str, Any]]:
        return [r for r in self.log() if r["method"] != "GET" and not r["path"].startswith("/_admin")]

    def api(self, method: str, path: str, **kw: Any) -> requests.Response:
        headers = {"X-VTEX-API-AppKey": APP_KEY, "X-VTEX-API-AppToken": APP_TOKEN, "Accept": "application/json",
                   "Content-Type": "application/json"}
        return self.http.request(method, self.url + path, headers=headers, timeout=30, **kw)


def start_vtex(tmp_path: Path, **options: str) -> Vtex:
    opts = {"app_key": APP_KEY, "app_token": APP_TOKEN, "orders": "0", **options}
    return Vtex(serve_in_thread(build("vtex", str(tmp_path / "vtex.db"), products=60, seed=7, **opts)))


@pytest.fixture
def vtex(tmp_path: Path) -> Iterator[Vtex]:
    sim = start_vtex(tmp_path)
    yield sim
    sim.server.stop()


def connector(sim: Vtex, sleeps: list[float] | None = None, **options: Any) -> VtexConnector:
    opts = {"account": "lojademo", "app_key": APP_KEY, "app_token": APP_TOKEN, "category_map": CATEGORIES,
            "brand_map": BRANDS, "warehouse_id": "cd01", **options}
    return VtexConnector("vtex-loja", sim.url, opts, HttpSettings(max_attempts=3),
                         sleep=(sleeps.append if sleeps is not None else lambda s: None))


def product(code: str = "P000001", name: str = "Camiseta Hering Azul M", active: bool = True,
            barcode: str = "7890000000017") -> Product:
    return Product(code, name, active, barcode=barcode, brand="Hering", group_code="VEST-MASC", unit="UN",
                   ncm="61091000", weight_kg="0.250", height_cm="3", width_cm="30", length_cm="40")


def push_one(conn: VtexConnector, entity: str, record: Any) -> Any:
    (result,) = conn.push(entity, [conn.prepare(entity, record)])
    return result


# -- catalogue ---------------------------------------------------------------------------------------
def test_product_create_then_update_binds_and_never_duplicates(vtex: Vtex) -> None:
    first = push_one(connector(vtex), "products", product())
    assert first.status == "created" and first.remote_id
    # a new process (nothing cached) finds the product and its SKU by RefId and updates them
    again = connector(vtex)
    second = push_one(again, "products", product(name="Camiseta Hering Azul G", active=False,
                                                 barcode="7890000000024"))
    assert (second.status, second.remote_id) == ("updated", first.remote_id)
    assert push_one(again, "products", product(name="Camiseta Hering Azul G", active=False,
                                               barcode="7890000000024")).status == "unchanged"
    state = vtex.admin("GET", "/_admin/state")
    assert len(state["products"]) == 1 and len(state["skus"]) == 1
    (prod,), (sku,) = state["products"], state["skus"]
    assert (prod["RefId"], prod["Name"], prod["IsActive"], prod["CategoryId"], prod["BrandId"]) == \
        ("P000001", "Camiseta Hering Azul G", False, CATEGORIES["VEST-MASC"], BRANDS["Hering"])
    assert (sku["RefId"], sku["ProductId"], sku["PackagedWeightKg"], sku["IsActive"]) == \
        ("P000001", prod["Id"], 250, False)
    assert state["eans"] == [{"skuId": sku["Id"], "ean": "7890000000024"}]  # the old barcode is gone
    # the SKU was created inactive, as the Catalog API demands, then updated in place
    creates = [r for r in vtex.writes() if r["method"] == "POST" and r["path"] == "/api/catalog/pvt/stockkeepingunit"]
    assert len(creates) == 1 and json.loads(creates[0]["body"])["IsActive"] is False


def test_a_product_that_cannot_be_mapped_is_a_mapping_error(vtex: Vtex) -> None:
    from syncagent.errors import MappingError

    conn = connector(vtex, category_map={}, brand_map=BRANDS)
    with pytest.raises(MappingError) as caught:
        conn.prepare("products", product())
    assert caught.value.code == "unmapped_category"


def test_prices_base_and_fixed_prices_keep_other_trade_policies(vtex: Vtex) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    conn = connector(vtex, sales_channel="1")
    sku_id = int(push_one(conn, "products", product()).remote_id)
    # a fixed price someone set by hand on another trade policy
    other = {"tradePolicyId": "2", "value": 50.0, "listPrice": 60.0, "minQuantity": 1}
    assert vtex.api("PUT", f"/pricing/prices/{sku_id}", json={"basePrice": 10.0, "markup": 0,
                                                               "fixedPrices": [other]}).status_code == 200
    price = Price("P000001", Decimal("129.90"), Decimal("99.90"), now - timedelta(days=1), now + timedelta(days=3),
                  (ScheduledPrice(Decimal("139.90"), now + timedelta(days=10)),))
    result = push_one(connector(vtex), "prices", price)  # a fresh connector learns the SKU id by RefId
    assert (result.status, result.remote_id) == ("updated", str(sku_id))
    (stored,) = vtex.admin("GET", "/_admin/state")["prices"]
    assert (stored["basePrice"], stored["listPrice"]) == (129.9, 129.9)
    fixed = stored["fixedPrices"]
    assert other in fixed
    ours = [f for f in fixed if f["tradePolicyId"] == "1"]
    assert [(f["value"], f["listPrice"]) for f in ours] == [(99.9, 129.9), (139.9, 139.9)]
    assert ours[0]["dateRange"]["to"] == (now + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert ours[1]["dateRange"]["from"] == (now + timedelta(days=10)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_price_of_an_sku_not_in_vtex_is_rejected_for_quarantine(vtex: Vtex) -> None:
    result = push_one(connector(vtex), "prices", Price("P000404", Decimal("10.00")))
    assert (result.status, result.reason_code) == ("rejected", "unknown_sku")


def test_inventory_per_vtex_warehouse(vtex: Vtex) -> None:
    conn = connector(vtex, warehouse_id=None, warehouse_map={"cd01": ["CD01"], "lj01": ["LJ01", "LJ02"]})
    sku_id = int(push_one(conn, "products", product()).remote_id)
    results = conn.push("stock", [conn.prepare("stock", WarehouseLevel("P000001", 12, "cd01")),
                                  conn.prepare("stock", WarehouseLevel("P000001", 5, "lj01"))])
    assert [(r.key, r.status) for r in results] == [("P000001@cd01", "updated"), ("P000001@lj01", "updated")]
    summed = connector(vtex)  # one VTEX warehouse gets the level summed by the engine
    assert push_one(summed, "stock", StockLevel("P000001", 40)).status == "updated"
    inventory = {(i["skuId"], i["warehouseId"]): i["quantity"] for i in vtex.admin("GET", "/_admin/state")["inventory"]}
    assert inventory == {(sku_id, "cd01"): 40, (sku_id, "lj01"): 5}


def test_inventory_423_locked_is_sent_again(vtex: Vtex) -> None:
    sleeps: list[float] = []
    conn = connector(vtex, sleeps)
    push_one(conn, "products", product())
    assert push_one(conn, "stock", StockLevel("P000001", 3)).status == "updated"
    vtex.admin("POST", "/_admin/config", json={"lock_window": 0.5})
    result = push_one(conn, "stock", StockLevel("P000001", 4))
    assert result.status == "rejected" and result.reason_code == "locked"  # the sleeps are patched: still locked
    assert sleeps == [2.0, 2.0, 2.0]
    vtex.admin("POST", "/_admin/config", json={"lock_window": 0})
    assert push_one(conn, "stock", StockLevel("P000001", 4)).status == "updated"


# -- orders ------------------------------------------------------------------------------------------
def feed(vtex: Vtex) -> dict[str, Any]:
    return vtex.admin("GET", "/_admin/feed")


def test_feed_is_configured_then_orders_come_as_pages_and_only_the_ack_commits(tmp_path: Path) -> None:
    vtex = start_vtex(tmp_path, feed_config="0")
    try:
        conn = connector(vtex)
        assert list(conn.pull("orders", None)) == []  # creates the feed configuration, finds nothing yet
        assert feed(vtex)["config"]["filter"] == {"type": "FromWorkflow", "status": ["ready-for-handling", "canceled"]}
        created = vtex.admin("POST", "/_admin/orders", json={"count": 12})["items"]
        cancelled = vtex.admin("POST", "/_admin/orders", json={"status": "canceled"})["items"][0]
        pages = []
        for page in conn.pull("orders", None):
            pages.append(page)
            assert page.cursor is None
            # while the engine holds the page nothing of it has been committed
            assert not feed(vtex)["commits"]
        orders = [r for p in pages for r in p.records]
        assert [len(p.records) for p in pages] == [10, 3]
        assert all(isinstance(o, Order) for o in orders)
        by_id = {o.remote_id: o for o in orders}
        first = by_id[created[0]["orderId"]]
        assert first.status == "ready-for-handling" and first.items[0].code.startswith("P")
        assert first.total == Decimal(created[0]["value"]) / 100
        assert sum(p.amount for p in first.payments) == first.total
        assert first.channel_customer_id == created[0]["clientProfileData"]["document"]
        # the cancelled order does not wait for the back office: its item left the queue with the page
        assert [c["orderId"] for c in feed(vtex)["commits"]] == [cancelled["orderId"]]
        assert len(feed(vtex)["items"]) == 12
        # the customers of the orders read are there for the engine to bind
        (customers,) = list(conn.pull("channel-customers", None))
        assert first.channel_customer_id in {c.remote_id for c in customers.records}

        # not acknowledged: after the visibility timeout the items come back (new handles) and are read again
        vtex.admin("POST", "/_admin/clock", json={"advance": 251})
        again = [r for p in conn.pull("orders", None) for r in p.records]
        assert sorted(o.remote_id for o in again) == sorted(o["orderId"] for o in created)

        # the ack: start-handling, then the feed item is committed, and only that order's
        (ack,) = conn.push("order-acks", [conn.prepare("order-acks", {"order_id": first.remote_id,
                                                                      "backoffice_number": "100001"})])
        assert ack.ok
        assert vtex.admin("GET", f"/_admin/orders/{first.remote_id}")["status"] == "handling"
        left = {i["orderId"] for i in feed(vtex)["items"]}
        assert first.remote_id not in left and len(left) == 11
        writes = [(r["method"], r["path"]) for r in vtex.writes()][-2:]
        assert writes == [("POST", f"/api/oms/pvt/orders/{first.remote_id}/start-handling"),
                          ("POST", "/api/orders/feed")]
        # acknowledging again (a retry after a lost answer) is harmless
        (repeat,) = conn.push("order-acks", [conn.prepare("order-acks", {"order_id": first.remote_id,
                                                                         "backoffice_number": "100001"})])
        assert repeat.status == "exists"
    finally:
        vtex.server.stop()


def test_an_order_that_cannot_be_mapped_is_a_bad_record_and_comes_back_once_fixed(vtex: Vtex) -> None:
    order = vtex.admin("POST", "/_admin/orders", json={})["items"][0]
    system = order["paymentData"]["transactions"][0]["payments"][0]["paymentSystem"]
    unmapped = {"paymentData": {"giftCards": [], "transactions": [{"payments": [
        {**order["paymentData"]["transactions"][0]["payments"][0], "group": "crypto"}]}]}}
    other = vtex.admin("POST", "/_admin/orders", json=unmapped)["items"][0]
    (page,) = list(connector(vtex).pull("orders", None))
    bad = next(r for r in page.records if isinstance(r, BadRecord))
    assert (bad.key, bad.code) == (other["orderId"], "unmapped_payment")
    assert {i["orderId"] for i in feed(vtex)["items"]} == {order["orderId"], other["orderId"]}  # neither let go
    vtex.admin("POST", "/_admin/clock", json={"advance": 251})
    fixed = connector(vtex, payment_map={system: "CC"})
    (again,) = list(fixed.pull("orders", None))
    assert all(isinstance(r, Order) for r in again.records) and len(again.records) == 2


def event(order_id: str, kind: str, **kw: Any) -> OrderEvent:
    return OrderEvent(f"ev-{kind}", "100001", "vtex-loja", order_id, kind, datetime(2026, 11, 23, 12, 0, tzinfo=UTC),
                      **kw)


def test_event_sequence_invoice_tracking_delivered(vtex: Vtex) -> None:
    conn = connector(vtex)
    order = vtex.admin("POST", "/_admin/orders", json={})["items"][0]
    order_id = order["orderId"]
    invoice = Invoice("35261112345678000190550010000123451000123456", "12345", "1",
                      datetime(2026, 11, 23, 11, 0, tzinfo=UTC), None, "https://nfe.example.com/12345.xml")
    shipped = event(order_id, "shipped", shipment=Shipment("Correios", "BR123456789BR", "https://rastreio/BR1"))
    delivered = event(order_id, "delivered", delivered_at=datetime(2026, 11, 25, 15, 30, tzinfo=UTC))
    # before the invoice there is nothing to attach tracking to: held back as out of order
    early = push_one(conn, "order-events", shipped)
    assert (early.status, early.reason_code) == ("rejected", "out_of_order")
    results = [push_one(conn, "order-events", e) for e in (event(order_id, "invoiced", invoice=invoice), shipped,
                                                           delivered)]
    assert [r.status for r in results] == ["created", "created", "created"]
    stored = vtex.admin("GET", f"/_admin/orders/{order_id}")
    assert stored["status"] == "invoiced"
    (package,) = stored["packageAttachment"]["packages"]
    assert (package["invoiceNumber"], package["invoiceKey"], package["invoiceValue"]) == \
        ("12345", invoice.key, order["value"])
    assert (package["trackingNumber"], package["courier"]) == ("BR123456789BR", "Correios")
    assert package["courierStatus"]["finished"] is True
    assert package["courierStatus"]["deliveredDate"] == "2026-11-25 15:30"
    # each event again (a retry): counted as done, nothing sent twice
    mark = len(vtex.writes())
    assert [push_one(conn, "order-events", e).status for e in (event(order_id, "invoiced", invoice=invoice),
                                                               shipped, delivered)] == ["exists"] * 3
    assert len(vtex.writes()) == mark


def test_cancel_event_and_its_repeat(vtex: Vtex) -> None:
    conn = connector(vtex)
    order_id = vtex.admin("POST", "/_admin/orders", json={})["items"][0]["orderId"]
    assert push_one(conn, "order-events", event(order_id, "cancelled")).status == "created"
    assert vtex.admin("GET", f"/_admin/orders/{order_id}")["status"] == "canceled"
    assert push_one(conn, "order-events", event(order_id, "cancelled")).status == "exists"


def test_429_with_retry_after_is_waited_out(vtex: Vtex) -> None:
    sleeps: list[float] = []
    conn = connector(vtex, sleeps)
    vtex.admin("POST", "/_admin/faults", json={"fail_next": 2, "fail_status": 429, "retry_after": 7})
    assert push_one(conn, "products", product()).status == "created"
    assert sleeps == [7.0, 7.0]
    statuses = [r["status"] for r in vtex.log() if not r["path"].startswith("/_admin")]
    assert statuses[:3] == [429, 429, 200]


def test_wrong_app_token_is_an_auth_failure(vtex: Vtex) -> None:
    from syncagent.errors import AuthError

    with pytest.raises(AuthError):
        connector(vtex, app_token="wrong-token-000").check()


# -- a whole agent: back office simulator -> VTEX simulator and back -----------------------------------
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
  - name: vtex-loja
    type: vtex
    base_url: {vtex}
    account: lojademo
    app_key: ${{IT_VTEX_KEY}}
    app_token: ${{IT_VTEX_TOKEN}}
    warehouse_id: cd01
    category_map: {categories}
    brand_map: {brands}
    warehouses: [CD01, LJ01]
    order_warehouse: LJ01
    http: {{max_attempts: 3, connect_timeout: 2, read_timeout: 10}}
    flows:
      products: {{every: 1m}}
      prices: {{every: 1m}}
      stock: {{every: 1m}}
      orders: {{every: 1m}}
      order-events: {{every: 1m}}
"""


def test_agent_syncs_catalogue_imports_orders_once_and_sends_events(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IT_BO_SECRET", BO_SECRET)
    monkeypatch.setenv("IT_VTEX_KEY", APP_KEY)
    monkeypatch.setenv("IT_VTEX_TOKEN", APP_TOKEN)
    bo = Vtex(serve_in_thread(build("gestao-lojas", str(tmp_path / "bo.db"), products=60, seed=7,
                                    client_secret=BO_SECRET)))
    vtex = start_vtex(tmp_path, orders="5")
    try:
        path = tmp_path / "syncagent.yaml"
        path.write_text(CONFIG.format(journal=tmp_path / "journal.db", bo=bo.url, vtex=vtex.url,
                                      categories=json.dumps(CATEGORIES), brands=json.dumps(BRANDS)))
        with Agent(load_config(path)) as agent:
            results = agent.run_once()
        assert all(r.status == "ok" for r in results), [(r.flow, r.status, r.error) for r in results]
        state = vtex.admin("GET", "/_admin/state")
        bo_counts = bo.admin("GET", "/_admin/counts")
        assert len(state["products"]) == len(state["skus"]) == bo_counts["products"]
        assert len(state["prices"]) == bo_counts["products"]
        assert len(state["inventory"]) == bo_counts["products"]

        # every seeded VTEX order is in the back office once, and was acknowledged only after that
        vtex_orders = vtex.admin("GET", "/_admin/orders")["items"]
        bo_orders = [o for o in bo.admin("GET", "/_admin/orders")["items"] if o.get("channel") == "vtex-loja"]
        assert sorted(o["external_id"] for o in bo_orders) == sorted(o["orderId"] for o in vtex_orders)
        assert all(o["status"] == "handling" for o in vtex_orders)
        created_at = {json.loads(r["body"])["external_id"]: r["ts"] for r in bo.log()
                      if r["method"] == "POST" and r["path"] == "/orders" and r["status"] == 201}
        commits = feed(vtex)["commits"]
        assert {c["orderId"] for c in commits} == set(created_at)
        assert all(c["at"] > created_at[c["orderId"]] for c in commits)
        assert feed(vtex)["items"] == []

        # a second run writes nothing to VTEX
        mark = len(vtex.writes())
        with Agent(load_config(path)) as agent:
            again = agent.run_once()
        assert all(r.status == "ok" for r in again)
        assert vtex.writes()[mark:] == []

        # fulfilment in the back office reaches VTEX in order
        number = bo_orders[0]["number"]
        for kind in ("invoiced", "shipped", "delivered"):
            bo.admin("POST", f"/_admin/orders/{number}/events", json={"type": kind})
        with Agent(load_config(path)) as agent:
            (result,) = [r for r in agent.run_once() if r.flow == "order-events"]
        assert result.status == "ok" and result.sent == 3
        stored = vtex.admin("GET", f"/_admin/orders/{bo_orders[0]['external_id']}")
        (package,) = stored["packageAttachment"]["packages"]
        assert stored["status"] == "invoiced" and package["trackingNumber"] and package["courierStatus"]["finished"]
    finally:
        vtex.server.stop()
        bo.server.stop()
