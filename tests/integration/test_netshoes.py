"""The Netshoes / Zattini connector against its simulator over real HTTP, alone and inside a whole agent run."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from syncagent.agent import Agent
from syncagent.config import load_config
from syncagent.connectors.netshoes import NetshoesConnector
from syncagent.errors import AuthError, PermanentError, TransientError
from syncagent.http import HttpSettings
from syncagent.model import BadRecord, Invoice, Order, OrderEvent, Price, Product, ScheduledPrice, Shipment
from syncagent.simulators import build
from syncagent.simulators.common import serve_in_thread
from syncagent.simulators.gestao_lojas import nfe_key
from tests.integration.harness import Sim

CLIENT_ID = "netshoes-itest-app"
TOKEN = "netshoes-itest-token-5a1f"
BO_SECRET = "itest-bo-secret-ns-0042"
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def start_ns(tmp_path: Path, name: str = "ns.db", **options: str) -> Sim:
    opts = {"client_id": CLIENT_ID, "access_token": TOKEN, "orders": "0", "rate_per_minute": "0", **options}
    return Sim(serve_in_thread(build("netshoes", str(tmp_path / name), products=40, seed=7, **opts)))


@pytest.fixture
def ns(tmp_path: Path) -> Iterator[Sim]:
    sim = start_ns(tmp_path)
    yield sim
    sim.server.stop()


def connector(sim: Sim, *, clock: Any = None, sleeps: list[float] | None = None, **options: Any) -> NetshoesConnector:
    opts = {"client_id": CLIENT_ID, "access_token": TOKEN, "department": "esporte", "product_type": "camiseta",
            "cancellation_reason": 3, **options}
    return NetshoesConnector("ns-loja", sim.url, opts, HttpSettings(max_attempts=3),
                             sleep=(sleeps.append if sleeps is not None else lambda s: None),
                             **({"clock": clock} if clock else {}))


def product(code: str, name: str = "Camiseta Dry Fit", active: bool = True) -> Product:
    return Product(code, name, active, barcode="7890000000017", brand="Olympikus", group_code="VEST-MASC",
                   weight_kg="0.250", height_cm="3", width_cm="30", length_cm="40")


def push(conn: NetshoesConnector, entity: str, *records: Any) -> list[Any]:
    return conn.push(entity, [conn.prepare(entity, r) for r in records])


def writes(sim: Sim, after: int = 0) -> list[tuple[str, str]]:
    return [(r["method"], r["path"]) for r in sim.writes(after)]


# -- catalogue --------------------------------------------------------------------------------------
def test_a_family_is_created_whole_then_only_changes_go(ns: Sim) -> None:
    conn = connector(ns, product_id_pattern=r"^(.*)-[^-]+$")
    results = push(conn, "products", product("CAM1-P"), product("CAM1-M"))
    assert [(r.status, r.remote_id) for r in results] == [("created", "CAM1"), ("created", "CAM1")]
    assert writes(ns) == [("POST", "/products"), ("PUT", "/skus/CAM1-P/bus/NS/status"),
                          ("PUT", "/skus/CAM1-M/bus/NS/status")]
    (created,) = [json.loads(r["body"]) for r in ns.writes() if r["path"] == "/products"]
    assert [s["sku"] for s in created["skus"]] == ["CAM1-P", "CAM1-M"]  # the whole family in one product
    mark = ns.last_request_id()
    again = connector(ns, product_id_pattern=r"^(.*)-[^-]+$")  # a new process: nothing cached
    results = push(again, "products", product("CAM1-M"), product("CAM1-G"), product("CAM1-P", "Camiseta Nova"))
    assert [r.status for r in results] == ["unchanged", "created", "updated"]
    assert writes(ns, mark) == [("POST", "/products/CAM1/skus"), ("PUT", "/skus/CAM1-G/bus/NS/status"),
                                ("PUT", "/products/CAM1/skus/CAM1-P"), ("PUT", "/skus/CAM1-P/bus/NS/status")]
    mark = ns.last_request_id()
    assert [r.status for r in push(again, "products", product("CAM1-G", active=False))] == ["updated"]
    assert writes(ns, mark) == [("PUT", "/skus/CAM1-G/bus/NS/status")]  # the SKU itself is as it was
    state = ns.admin("GET", "/_admin/state")
    (family,) = state["products"]
    assert sorted(s["sku"] for s in family["skus"]) == ["CAM1-G", "CAM1-M", "CAM1-P"]
    assert {b["sku"]: b["active"] for b in state["bu_status"]} == {"CAM1-P": True, "CAM1-M": True, "CAM1-G": False}


def test_zattini_is_a_business_unit_of_the_same_api(ns: Sim) -> None:
    conn = connector(ns, business_unit="ZT")
    assert push(conn, "products", product("P000001"))[0].ok
    assert [(b["sku"], b["buId"]) for b in ns.admin("GET", "/_admin/state")["bu_status"]] == [("P000001", "ZT")]
    ns.admin("POST", "/_admin/orders", json={"count": 2, "businessUnit": "NS"})
    (zattini,) = ns.admin("POST", "/_admin/orders", json={"businessUnit": "ZT"})["items"]
    read = {r.number for p in conn.pull("orders", None) for r in p.records}
    assert read == {zattini["orderNumber"]}  # each channel reads only its own unit's orders
    netshoes = {r.number for p in connector(ns).pull("orders", None) for r in p.records}
    assert len(netshoes) == 2 and zattini["orderNumber"] not in netshoes


def test_a_product_the_channel_refuses_is_a_result(ns: Sim) -> None:
    conn = connector(ns)
    bad = Product("P000002", "Ruim", True, barcode="7890000000018", brand="Hering")  # bad EAN check digit
    good, refused = push(conn, "products", product("P000001"), bad)
    assert good.ok and (refused.status, refused.reason_code) == ("rejected", "Invalid_Request")
    assert "eanIsbn" in (refused.reason or "")
    with pytest.raises(Exception) as caught:
        connector(ns, department=None).prepare("products", product("P000003"))
    assert getattr(caught.value, "code", None) == "unmapped_department"


# -- prices and schedules -----------------------------------------------------------------------------
def test_promotion_and_scheduled_price_reach_the_channel_at_their_boundaries(ns: Sim) -> None:
    now = [T0]
    conn = connector(ns, clock=lambda: now[0])
    push(conn, "products", product("P000001"))
    price = Price("P000001", Decimal("129.90"), Decimal("99.90"), T0 + timedelta(days=1), T0 + timedelta(days=3),
                  (ScheduledPrice(Decimal("139.90"), T0 + timedelta(days=10)),))
    assert push(conn, "prices", price)[0].status == "updated"

    def seen(moment: datetime) -> tuple[float, float]:
        answer = ns.admin("GET", "/_admin/price/P000001", params={"at": moment.isoformat()})
        return answer["price"], answer["listPrice"]

    assert seen(T0) == (129.9, 129.9)
    assert seen(T0 + timedelta(days=1)) == (99.9, 129.9)  # the promotion starts on Netshoes' own clock
    assert seen(T0 + timedelta(days=3)) == (129.9, 129.9)
    assert seen(T0 + timedelta(days=10)) == (139.9, 139.9)  # the scheduled list price too
    first = conn.prepare("prices", price)
    assert conn.prepare("prices", price).payload == first.payload  # stable between boundaries
    # at each boundary the engine sends the price again: the base follows, no schedule is sent twice
    for days in (1, 3, 10):
        now[0] = T0 + timedelta(days=days)
        result = push(conn, "prices", price)[0]
        assert result.status == "updated", result.reason
    state = ns.admin("GET", "/_admin/state")
    assert len(state["schedules"]) == 2
    assert state["prices"] == [{"sku": "P000001", "price": 139.9}]


def test_a_schedule_the_back_office_dropped_is_reported_not_hidden(ns: Sim) -> None:
    conn = connector(ns, clock=lambda: T0)
    push(conn, "products", product("P000001"))
    promo = Price("P000001", Decimal("50.00"), Decimal("40.00"), T0 + timedelta(days=1), T0 + timedelta(days=2))
    assert push(conn, "prices", promo)[0].ok
    (result,) = push(conn, "prices", Price("P000001", Decimal("50.00")))
    assert (result.status, result.reason_code) == ("rejected", "stale_schedule")
    assert "seller portal" in (result.reason or "")


def test_price_and_stock_of_an_unknown_sku_are_rejected(ns: Sim) -> None:
    from syncagent.model import StockLevel

    conn = connector(ns)
    assert push(conn, "prices", Price("P000404", Decimal("10.00")))[0].reason_code == "unknown_sku"
    assert push(conn, "stock", StockLevel("P000404", 3))[0].reason_code == "unknown_sku"


# -- orders and fulfilment ----------------------------------------------------------------------------
def event(order_id: str, kind: str, **kw: Any) -> OrderEvent:
    return OrderEvent(f"ev-{kind}", "100001", "ns-loja", order_id, kind, T0, **kw)


INVOICE = Invoice(nfe_key("ns-itest"), "4003", "1", T0)
SHIPPED = {"shipment": Shipment("Correios", "BR123456789BR", "https://rastreio.example/BR1")}


@pytest.mark.parametrize("shape", ["flat", "envelope"])
def test_status_bodies_in_the_configured_shape(tmp_path: Path, shape: str) -> None:
    sim = start_ns(tmp_path, status_body=shape)
    try:
        (order,) = sim.admin("POST", "/_admin/orders", json={"shippings": 1})["items"]
        key = f"{order['orderNumber']}-{order['shippings'][0]['shippingCode']}"
        other = "envelope" if shape == "flat" else "flat"
        wrong = push(connector(sim, status_body=other), "order-events", event(key, "invoiced", invoice=INVOICE))[0]
        assert (wrong.status, wrong.reason_code) == ("rejected", "Invalid_Request")  # the other shape is refused
        conn = connector(sim, status_body=shape)
        early = push(conn, "order-events", event(key, "shipped", **SHIPPED))[0]
        assert (early.status, early.reason_code) == ("rejected", "out_of_order")
        results = push(conn, "order-events", event(key, "invoiced", invoice=INVOICE), event(key, "shipped", **SHIPPED),
                       event(key, "delivered", delivered_at=T0 + timedelta(days=2)))
        assert [r.status for r in results] == ["created"] * 3
        shipping = sim.admin("GET", f"/_admin/orders/{order['orderNumber']}")["shippings"][0]
        assert shipping["status"] == "Delivered"
        assert (shipping["invoice"]["accessKey"], str(shipping["invoice"]["number"])) == (INVOICE.key, "4003")
        assert shipping["transport"]["trackingNumber"] == "BR123456789BR"
        bodies = [json.loads(r["body"]) for r in sim.writes() if r["path"].endswith("/status/invoiced")
                  and r["status"] == 200]
        assert ("shippings" in bodies[0]) is (shape == "envelope")
        mark = sim.last_request_id()  # every event again: read, found there, nothing written
        assert [r.status for r in push(conn, "order-events", event(key, "invoiced", invoice=INVOICE),
                                       event(key, "shipped", **SHIPPED))] == ["exists", "exists"]
        assert sim.writes(mark) == []
    finally:
        sim.server.stop()


def test_a_corrected_invoice_is_sent_again_and_cancellation_only_from_approved(ns: Sim) -> None:
    conn = connector(ns)
    first, second = ns.admin("POST", "/_admin/orders", json={"count": 2})["items"]
    key = f"{first['orderNumber']}-{first['shippings'][0]['shippingCode']}"
    assert push(conn, "order-events", event(key, "invoiced", invoice=INVOICE))[0].status == "created"
    fixed = Invoice(nfe_key("ns-itest-2"), "4004", "1", T0)
    assert push(conn, "order-events", event(key, "invoiced", invoice=fixed))[0].status == "created"
    held = ns.admin("GET", f"/_admin/orders/{first['orderNumber']}")["shippings"][0]
    assert held["invoice"]["accessKey"] == fixed.key
    late = push(conn, "order-events", event(key, "cancelled"))[0]
    assert (late.status, late.reason_code) == ("rejected", "not_cancellable")
    other = f"{second['orderNumber']}-{second['shippings'][0]['shippingCode']}"
    assert [r.status for r in push(conn, "order-events", event(other, "cancelled"), event(other, "cancelled"))] == \
        ["created", "exists"]
    assert push(conn, "order-events", event(other + "0", "invoiced", invoice=INVOICE))[0].reason_code == "not_found"


def test_orders_in_shippings_with_a_hostile_one_quarantined(ns: Sim) -> None:
    (two,) = ns.admin("POST", "/_admin/orders", json={"shippings": 2})["items"]
    ns.admin("POST", "/_admin/orders", json={"status": "Invoiced"})  # not waiting: not read
    hostile = {**two, "orderNumber": "666", "shippings": [
        {**two["shippings"][0], "shippingCode": 901, "items": [{"sku": "P000001", "quantity": "x",
                                                               "grossUnitValue": 10}]},
        {**two["shippings"][1], "shippingCode": 902, "freightAmount": 1e300}]}
    ns.admin("POST", "/_admin/orders", json={"raw": hostile})
    records = [r for p in connector(ns, payment_method="PIX").pull("orders", None) for r in p.records]
    orders = {r.remote_id: r for r in records if isinstance(r, Order)}
    bad = {r.key: r.code for r in records if isinstance(r, BadRecord)}
    codes = [s["shippingCode"] for s in two["shippings"]]
    assert set(orders) == {f"{two['orderNumber']}-{c}" for c in codes}
    assert bad == {"666-901": "bad_type", "666-902": "bad_money"}
    order = orders[f"{two['orderNumber']}-{codes[0]}"]
    shipping = two["shippings"][0]
    assert order.status == "approved" and order.shipping == Decimal(str(shipping["freightAmount"])).quantize(
        Decimal("0.01"))
    assert order.total == sum((i.unit_price * i.quantity - i.discount for i in order.items), order.shipping)
    assert [p.method_code for p in order.payments] == ["PIX"] and order.payments[0].amount == order.total
    assert order.channel_customer_id == shipping["customer"]["document"]


def test_first_page_number_auth_and_rate_limit(tmp_path: Path) -> None:
    sim = start_ns(tmp_path, first_page="1", orders="3")
    try:
        with pytest.raises(PermanentError):
            list(connector(sim).pull("orders", None))  # page 0 of an API that counts from 1 is refused
        assert len([r for p in connector(sim, first_page=1).pull("orders", None) for r in p.records]) == 3
        with pytest.raises(AuthError) as caught:
            connector(sim, access_token="wrong-token-value").check()
        assert "wrong-token-value" not in str(caught.value)
        sim.admin("POST", "/_admin/config", json={"rate_per_minute": 1})
        sleeps: list[float] = []
        conn = connector(sim, first_page=1, sleeps=sleeps)
        conn.check()
        with pytest.raises(TransientError):  # 429 without Retry-After: backed off, then the step fails
            conn.check()
        assert len(sleeps) == 2
    finally:
        sim.server.stop()


# -- a whole agent: back office simulator -> Netshoes simulator and back -------------------------------
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
  - name: ns-loja
    type: netshoes
    base_url: {ns}
    client_id: ${{IT_NS_CLIENT}}
    access_token: ${{IT_NS_TOKEN}}
    department: esporte
    product_type: camiseta
    payment_method: PIX
    status_body: {shape}
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


def test_agent_catalogue_then_changes_orders_once_and_fulfilment_back(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IT_BO_SECRET", BO_SECRET)
    monkeypatch.setenv("IT_NS_CLIENT", CLIENT_ID)
    monkeypatch.setenv("IT_NS_TOKEN", TOKEN)
    bo = Sim(serve_in_thread(build("gestao-lojas", str(tmp_path / "bo.db"), products=40, seed=7,
                                   client_secret=BO_SECRET)))
    ns = start_ns(tmp_path, orders="4", status_body="envelope")
    try:
        path = tmp_path / "syncagent.yaml"
        path.write_text(CONFIG.format(journal=tmp_path / "journal.db", bo=bo.url, ns=ns.url, shape="envelope"))
        now = [datetime.now(UTC)]

        def run() -> dict[str, Any]:
            with Agent(load_config(path), clock=lambda: now[0]) as agent:
                results = agent.run_once()
            assert all(r.status == "ok" for r in results), [(r.flow, r.status, r.error) for r in results]
            return {r.flow: r for r in results}

        run()
        state = ns.admin("GET", "/_admin/state")
        counts = bo.admin("GET", "/_admin/counts")
        skus = [s["sku"] for p in state["products"] for s in p["skus"]]
        assert len(skus) == len(set(skus)) == counts["products"]
        assert len(state["prices"]) == len(state["stocks"]) == counts["products"]

        # paid shippings are in the back office once each; the buyers bound by CPF/CNPJ
        shippings = {f"{o['orderNumber']}-{s['shippingCode']}" for o in ns.admin("GET", "/_admin/orders")["items"]
                     for s in o["shippings"]}
        bo_orders = [o for o in bo.admin("GET", "/_admin/orders")["items"] if o.get("channel") == "ns-loja"]
        assert sorted(o["external_id"] for o in bo_orders) == sorted(shippings)

        # a second run: nothing written to Netshoes, no order created again
        mark = ns.last_request_id()
        run()
        assert ns.writes(mark) == []
        assert len([o for o in bo.admin("GET", "/_admin/orders")["items"] if o.get("channel") == "ns-loja"]) == 4

        # a change in the back office: only that SKU's price goes, with its promotion as a schedule
        start, end = now[0] + timedelta(days=1), now[0] + timedelta(days=2)
        bo.admin("PATCH", "/_admin/prices/P000005", json={"list_price": "199.90", "promo_price": "149.90",
                                                          "promo_start": start.isoformat(),
                                                          "promo_end": end.isoformat(), "scheduled": []})
        mark = ns.last_request_id()
        run()
        assert writes(ns, mark) == [("PUT", "/skus/P000005/prices"), ("POST", "/skus/P000005/priceSchedules")]
        assert ns.admin("GET", "/_admin/price/P000005",
                        params={"at": (start + timedelta(hours=1)).isoformat()})["price"] == 149.9
        now[0] = end + timedelta(minutes=1)  # past the promotion's end: the price is sent again, nothing new
        mark = ns.last_request_id()
        run()
        assert ("PUT", "/skus/P000005/prices") in writes(ns, mark)
        assert ("POST", "/skus/P000005/priceSchedules") not in writes(ns, mark)

        # fulfilment in the back office reaches the shipping in order (envelope bodies, as configured)
        order = bo_orders[0]
        for kind in ("invoiced", "shipped", "delivered"):
            bo.admin("POST", f"/_admin/orders/{order['number']}/events", json={"type": kind})
        assert run()["order-events"].sent == 3
        number, code = order["external_id"].rsplit("-", 1)
        shipping = next(s for s in ns.admin("GET", f"/_admin/orders/{number}")["shippings"]
                        if str(s["shippingCode"]) == code)
        assert shipping["status"] == "Delivered" and len(shipping["invoice"]["accessKey"]) == 44
        assert shipping["transport"]["trackingNumber"]

        # the customer cancels a shipping on Netshoes: the back office order is cancelled
        number, code = bo_orders[1]["external_id"].rsplit("-", 1)
        ns.admin("POST", f"/_admin/orders/{number}/shippings/{code}/status", json={"status": "Canceled"})
        run()
        assert bo.admin("GET", f"/_admin/orders/{bo_orders[1]['number']}")["status"] == "cancelled"
        assert TOKEN.encode() not in (tmp_path / "journal.db").read_bytes()
    finally:
        ns.server.stop()
        bo.server.stop()


def test_netshoes_and_zattini_channels_on_one_account_import_each_order_once(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IT_BO_SECRET", BO_SECRET)
    monkeypatch.setenv("IT_NS_CLIENT", CLIENT_ID)
    monkeypatch.setenv("IT_NS_TOKEN", TOKEN)
    bo = Sim(serve_in_thread(build("gestao-lojas", str(tmp_path / "bo.db"), products=40, seed=7,
                                   client_secret=BO_SECRET)))
    ns = start_ns(tmp_path, orders="0")
    try:
        ns.admin("POST", "/_admin/orders", json={"count": 3, "businessUnit": "NS"})
        ns.admin("POST", "/_admin/orders", json={"count": 2, "businessUnit": "ZT"})
        text = CONFIG.format(journal=tmp_path / "journal.db", bo=bo.url, ns=ns.url, shape="flat")
        head, channel = text.split("channels:\n", 1)
        channel = re.sub(r"      (products|prices|stock|order-events): \{every: 1m\}\n", "", channel)
        zattini = channel.replace("name: ns-loja", "name: zt-loja").replace("status_body: flat",
                                                                             "status_body: flat\n    business_unit: ZT")
        (tmp_path / "syncagent.yaml").write_text(head + "channels:\n" + channel + zattini)
        for _ in range(2):  # twice: the second poll reads the same approved shippings and creates nothing
            with Agent(load_config(tmp_path / "syncagent.yaml")) as agent:
                assert all(r.status == "ok" for r in agent.run_once())
        units = {o["orderNumber"]: o["businessUnit"] for o in ns.admin("GET", "/_admin/orders")["items"]}
        created = [(o["channel"], o["external_id"]) for o in bo.admin("GET", "/_admin/orders")["items"]]
        assert len(created) == len(set(created)) == 5
        assert all(units[key.rsplit("-", 1)[0]] == {"ns-loja": "NS", "zt-loja": "ZT"}[name] for name, key in created)
    finally:
        ns.server.stop()
        bo.server.stop()
