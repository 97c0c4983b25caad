"""A Jumpseller shop as the source over real HTTP: its catalogue into the back office, its paid orders once."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import requests

from syncagent.agent import Agent
from syncagent.config import ConfigProblems, load_config
from syncagent.connectors import jumpseller
from syncagent.connectors.base import Outgoing, PushResult
from syncagent.connectors.jumpseller import JumpsellerConnector
from syncagent.engine import ChannelSetup, Engine
from syncagent.errors import AuthError
from syncagent.http import HttpSettings
from syncagent.journal import Journal
from syncagent.model import Product, StockLevel
from syncagent.simulators import build, seeddata
from syncagent.simulators.common import RunningServer, serve_in_thread
from tests.integration.harness import assert_no_canary, cli
from tests.support.fakes import NOW, FakeBackoffice

LOGIN = "loja-pt"
TOKEN = "canary-js-token-" + "7" * 16
BO_SECRET = "canary-js-bo-secret-0042"
CUSTOMER = seeddata.customer(7, 1)["code"]  # the walk-in customer of the back office


class Shop:
    """A simulator and an admin session to it."""

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

    def calls(self) -> list[dict[str, Any]]:
        return [r for r in self.admin("GET", "/_admin/requests")["items"] if not r["path"].startswith("/_admin")]


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
          ) -> Iterator[tuple[Shop, Shop]]:
    monkeypatch.setenv("IT_JS_LOGIN", LOGIN)
    monkeypatch.setenv("IT_JS_TOKEN", TOKEN)
    monkeypatch.setenv("IT_BO_SECRET", BO_SECRET)
    shop = Shop(serve_in_thread(build("jumpseller", str(tmp_path / "js.db"), products=9, seed=5, orders="0",
                                      login=LOGIN, auth_token=TOKEN)))
    bo = Shop(serve_in_thread(build("gestao-lojas", str(tmp_path / "bo.db"), products=20, seed=7,
                                    client_secret=BO_SECRET)))
    yield shop, bo
    shop.server.stop()
    bo.server.stop()
    out, err = capfd.readouterr()
    for place in [out, err, *(p.read_text(errors="replace") for p in tmp_path.rglob("*.yaml"))]:
        assert TOKEN not in place and BO_SECRET not in place
    journal = tmp_path / "journal.db"
    assert not journal.exists() or TOKEN.encode() not in journal.read_bytes()
    assert_no_canary(tmp_path, capfd)


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
  - name: loja-online
    type: jumpseller
    base_url: {shop}
    login: ${{IT_JS_LOGIN}}
    auth_token: ${{IT_JS_TOKEN}}
    customer_code: {customer}
    payment_map: {{mbway: CD, multibanco: DIN}}
    category_map: {{"1": VEST, "2": CALC, "3": ACES}}
    warehouses: [CD01, LJ01]
    order_warehouse: LJ01
    http: {{max_attempts: 3, connect_timeout: 2, read_timeout: 10}}
    flows:
{flows}
"""


def config(tmp_path: Path, shop: Shop, bo: Shop, flows: list[str]) -> Path:
    path = tmp_path / "syncagent.yaml"
    path.write_text(CONFIG.format(journal=tmp_path / "journal.db", bo=bo.url, shop=shop.url, customer=CUSTOMER,
                                  flows="\n".join(f"      {f}" for f in flows)))
    return path


def run(path: Path) -> dict[str, Any]:
    with Agent(load_config(path)) as agent:
        return {r.flow: r for r in agent.run_once()}


PRODUCTS = "products: {every: 1m, source: channel, sink: backoffice}"


def bo_products(bo: Shop) -> dict[str, dict[str, Any]]:
    return {p["code"]: p for p in (json.loads(r["body"]) for r in bo.calls()
                                   if r["method"] in ("PUT", "POST") and r["path"].startswith("/products")
                                   and r["status"] in (200, 201))}


def test_the_shops_catalogue_goes_into_the_back_office_one_product_per_variant_and_changes_follow(
        tmp_path: Path, stack: tuple[Shop, Shop], monkeypatch: pytest.MonkeyPatch) -> None:
    shop, bo = stack
    path = config(tmp_path, shop, bo, [PRODUCTS])
    first = run(path)["products"]
    sent = bo_products(bo)
    held = [p for p in shop.admin("GET", "/_admin/products")["items"]]
    expected = sum(len(p["variants"]) or 1 for p in held)
    assert (first.status, first.read, first.sent) == ("ok", expected, expected) and len(sent) == expected
    sized = next(p for p in held if p["variants"])
    variant = sized["variants"][1]
    assert sent[variant["sku"]] == {**sent[variant["sku"]], "barcode": variant["barcode"], "brand": sized["brand"],
                                    "description": f"{sized['name']} ({variant['options'][0]['value']})",
                                    "group_code": {1: "VEST", 2: "CALC", 3: "ACES"}[sized["categories"][0]["id"]]}
    no_sku = next(p for p in held if not p["sku"] and not p["variants"])
    assert f"JS-{no_sku['id']}" in sent  # a stable code of its own
    assert all(r["method"] == "GET" for r in shop.calls())  # the shop is read, never written

    bo_before = len(bo.calls())
    parsed: list[str] = []
    real = jumpseller.product_in
    monkeypatch.setattr(jumpseller, "product_in", lambda row, category_map: parsed.append("x") or real(row, category_map))
    again = run(path)["products"]
    assert (again.sent, again.unchanged) == (0, expected) and bo_products_after(bo, bo_before) == {}
    assert parsed == []  # every page met again byte for byte: counted unchanged, not even parsed

    shop.admin("PATCH", f"/_admin/products/{sized['id']}", json={"name": "Ténis novos", "status": "disabled"})
    bo_before = len(bo.calls())
    third = run(path)["products"]
    changed = bo_products_after(bo, bo_before)
    assert third.sent == len(sized["variants"]) and parsed  # the changed page was parsed
    assert {c: (p["description"].split(" (")[0], p["active"]) for c, p in changed.items()} == {
        v["sku"]: ("Ténis novos", False) for v in sized["variants"]}
    with Agent(load_config(path)) as agent:
        found = agent.backoffice.lookup("products", code=variant["sku"])
    assert isinstance(found, Product) and found.barcode == variant["barcode"]


def bo_products_after(bo: Shop, after: int) -> dict[str, dict[str, Any]]:
    calls = bo.calls()[after:]
    return {p["code"]: p for p in (json.loads(r["body"]) for r in calls
                                   if r["method"] in ("PUT", "POST") and r["path"].startswith("/products")
                                   and r["status"] in (200, 201))}


def test_only_paid_orders_are_imported_once_whatever_their_shipping_and_a_cancel_follows(
        tmp_path: Path, stack: tuple[Shop, Shop]) -> None:
    shop, bo = stack
    run(config(tmp_path, shop, bo, [PRODUCTS]))  # the back office learns the shop's SKUs first
    skus = [v["sku"] for p in shop.admin("GET", "/_admin/products")["items"] for v in p["variants"]]
    buyer = {"name": "Rita Marques", "email": "rita@example.pt", "taxid": "PT 509 442 013", "country": "PT"}
    made = {state: shop.admin("POST", "/_admin/orders", json={
        "state": state, "items": [{"sku": skus[0], "qty": 2, "discount": 1.0}, {"sku": skus[1], "qty": 1}],
        "customer": buyer, "discount": 2.5})["order"]["id"]
        for state in ("paid", "paid_shipped", "pending_payment", "shipped_unpaid", "abandoned", "paid_then_canceled")}
    path = config(tmp_path, shop, bo, [PRODUCTS, "orders: {every: 1m}"])

    first = run(path)["orders"]
    created = {o["external_id"]: o for o in bo.admin("GET", "/_admin/orders")["items"]}
    assert set(created) == {str(made["paid"]), str(made["paid_shipped"])}, first
    order = created[str(made["paid"])]
    assert (order["customer_code"], order["channel"], order["warehouse"]) == (CUSTOMER, "loja-online", "LJ01")
    assert [(i["sku"], i["quantity"]) for i in order["items"]] == [(skus[0], 2), (skus[1], 1)]
    assert [p["method_code"] for p in order["payments"]] == ["CD"]  # MB WAY
    assert first.status == "ok"

    posts = [r for r in bo.calls() if r["method"] == "POST" and r["path"] == "/orders"]
    again = run(path)["orders"]
    assert again.status == "ok" and [r for r in bo.calls() if r["method"] == "POST" and r["path"] == "/orders"] == posts

    shop.admin("PATCH", f"/_admin/orders/{made['pending_payment']}", json={"state": "paid"})  # the payment arrives
    shop.admin("PATCH", f"/_admin/orders/{made['paid']}", json={"state": "paid_then_canceled"})
    run(path)
    created = {o["external_id"]: o for o in bo.admin("GET", "/_admin/orders")["items"]}
    assert set(created) == {str(made[s]) for s in ("paid", "paid_shipped", "pending_payment")}
    assert created[str(made["paid"])]["status"] == "cancelled"
    assert len([r for r in bo.calls() if r["method"] == "POST" and r["path"] == "/orders"]) == 3


def test_stock_can_only_flow_out_of_the_shop(tmp_path: Path, stack: tuple[Shop, Shop]) -> None:
    shop, bo = stack
    with pytest.raises(ConfigProblems) as caught:
        load_config(config(tmp_path, shop, bo, ["stock: {every: 1m}"]))  # back office → shop: refused
    assert any("jumpseller cannot push stock" in f"{p.expected} / {p.found}" for p in caught.value.problems)
    conn = JumpsellerConnector("js", shop.url, {"login": LOGIN, "auth_token": TOKEN}, HttpSettings(max_attempts=2),
                               sleep=lambda s: None)
    sku = next(v["sku"] for p in shop.admin("GET", "/_admin/products")["items"] for v in p["variants"])
    shop.admin("POST", "/_admin/stock", json={"sku": sku, "stock": 31})
    levels = {r.code: r for page in conn.pull("stock", None) for r in page.records}
    assert levels[sku] == StockLevel(sku, 31)
    conn.close()


def test_the_documented_rate_limit_is_answered_429_and_the_client_waits_it_out(tmp_path: Path) -> None:
    server = serve_in_thread(build("jumpseller", str(tmp_path / "js.db"), products=12, seed=5, orders="0",
                                 login=LOGIN, auth_token=TOKEN, per_second="2", clock="frozen"))
    shop = Shop(server)
    waited: list[float] = []

    def sleep(seconds: float) -> None:  # the client's pause moves the store's clock: no real waiting
        waited.append(seconds)
        shop.admin("POST", "/_admin/clock", json={"advance": seconds})

    conn = JumpsellerConnector("js", server.url, {"login": LOGIN, "auth_token": TOKEN},
                               HttpSettings(max_attempts=4), sleep=sleep, page_size=3)
    try:
        products = [r for page in conn.pull("products", None) for r in page.records]
        assert len(products) == 12 + 4 * 2  # 4 of the 12 come in 3 sizes
        statuses = [r["status"] for r in shop.calls()]
        # 12 products, 3 a page: 4 full pages and the empty one that ends the listing
        assert statuses.count(429) >= 1 and statuses.count(200) == 5 and waited
        assert all(w >= 1 for w in waited)  # Retry-After: 1, honoured
        resp = requests.get(server.url + "/products/count.json", auth=(LOGIN, TOKEN), timeout=10)
        assert "Jumpseller-PerSecondRateLimit-Remaining" in resp.headers or resp.status_code == 429
        shop.admin("POST", "/_admin/config", json={"auth_token": "reset-" + TOKEN[::-1]})  # the token was reset
        with pytest.raises(AuthError) as err:
            shop.admin("POST", "/_admin/clock", json={"advance": 5})
            conn.check()
        assert TOKEN not in str(err.value)
    finally:
        conn.close()
        server.stop()


def test_an_order_whose_creation_answer_is_lost_is_found_and_not_created_twice(
        tmp_path: Path, stack: tuple[Shop, Shop]) -> None:
    shop, bo = stack
    run(config(tmp_path, shop, bo, [PRODUCTS]))
    sku = next(v["sku"] for p in shop.admin("GET", "/_admin/products")["items"] for v in p["variants"])
    paid = shop.admin("POST", "/_admin/orders", json={"state": "paid", "items": [{"sku": sku, "qty": 1}]})["order"]
    # the back office creates the order, then the answer never arrives
    bo.admin("POST", "/_admin/faults", json={"commit_then_fail": {"^POST /orders$": 1.0}, "commit_first": 1,
                                               "commit_mode": "drop"})
    path = config(tmp_path, shop, bo, [PRODUCTS, "orders: {every: 1m}"])
    run(path)
    bo.admin("DELETE", "/_admin/faults")
    run(path)
    created = [o for o in bo.admin("GET", "/_admin/orders")["items"] if o["external_id"] == str(paid["id"])]
    assert len(created) == 1
    posts = [r["status"] for r in bo.calls() if r["method"] == "POST" and r["path"] == "/orders"]
    assert posts == [0]  # the one POST, its answer dropped: found by the lookup, never posted again
    with Agent(load_config(path)) as agent:
        row = agent.journal.order("loja-online", str(paid["id"]))
    assert row is not None and row.state == "acknowledged" and row.bo_number == str(created[0]["number"])


APP_CHANNEL = """\
  - name: loja-app
    type: jumpseller
    base_url: {shop}
    client_id: {app_id}
    client_secret: ${{IT_JS_APP_SECRET}}
    refresh_token: ${{IT_JS_REFRESH_TOKEN}}
    token_url: {shop}/oauth/token
    customer_code: {customer}
    category_map: {{"1": VEST, "2": CALC, "3": ACES}}
    http: {{max_attempts: 2, connect_timeout: 2, read_timeout: 10}}
    flows:
      products: {{every: 1m, source: channel, sink: backoffice}}
"""


def test_an_installed_app_keeps_its_rotating_refresh_tokens_in_the_journal(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    from syncagent.connectors.oauth import load_doc
    from syncagent.simulators.jumpseller import DEMO_APP_ID, DEMO_APP_SECRET

    shop = Shop(serve_in_thread(build("jumpseller", str(tmp_path / "js.db"), products=4, seed=5, orders="0")))
    bo = Shop(serve_in_thread(build("gestao-lojas", str(tmp_path / "bo.db"), products=20, seed=7,
                                    client_secret=BO_SECRET)))

    def install() -> str:
        """The store owner approves the App; the App swaps the code for its first tokens."""
        code = shop.admin("POST", "/_admin/oauth/code")["code"]
        return str(requests.post(shop.url + "/oauth/token", timeout=10, data={
            "grant_type": "authorization_code", "client_id": DEMO_APP_ID, "client_secret": DEMO_APP_SECRET,
            "code": code, "redirect_uri": "urn:ietf:wg:oauth:2.0:oob"}).json()["refresh_token"])

    def setup(journal: Path, refresh_token: str) -> Path:
        monkeypatch.setenv("IT_JS_REFRESH_TOKEN", refresh_token)
        head = CONFIG[:CONFIG.index("  - name: loja-online")]
        path = tmp_path / "app.yaml"
        path.write_text(head.format(journal=journal, bo=bo.url) + APP_CHANNEL.format(
            shop=shop.url, app_id=DEMO_APP_ID, customer=CUSTOMER))
        return path

    def stored(journal: Path) -> dict[str, Any]:
        with Journal(journal, lock=False) as j:
            return load_doc(j.state_of("loja-app"))

    def token_posts() -> int:
        return sum(1 for r in shop.calls() if r["path"] == "/oauth/token" and r["method"] == "POST")

    monkeypatch.setenv("IT_BO_SECRET", BO_SECRET)
    monkeypatch.setenv("IT_JS_APP_SECRET", DEMO_APP_SECRET)
    journal = tmp_path / "journal.db"
    first = install()
    try:
        path = setup(journal, first)  # the journal holds no tokens yet: seeded from the config
        assert run(path)["products"].status == "ok"
        kept = stored(journal)["refresh_token"]
        assert kept != first and shop.admin("GET", "/_admin/oauth/refresh-tokens")["items"] == [kept]
        assert first.encode() not in journal.read_bytes()  # only a hash of the config's token is kept

        shop.admin("POST", "/_admin/oauth/expire")  # an hour later: the access token is refused, renewed once
        posts = token_posts()
        assert run(path)["products"].status == "ok"
        assert token_posts() == posts + 1 and stored(journal)["refresh_token"] not in (kept, first)

        posts = token_posts()  # a restart: the environment still holds the first (dead) token, the journal wins
        assert run(path)["products"].status == "ok" and token_posts() == posts
        shop.admin("POST", "/_admin/oauth/expire")  # and renews with the journal's token, not the environment's
        assert run(path)["products"].status == "ok" and token_posts() == posts + 1

        lost = tmp_path / "lost.db"  # the journal's tokens lost: the dead first token is refused, saying what to do
        result = run(setup(lost, first))["products"]
        assert result.status == "auth_failed" and "install the App again" in str(result.error)
        posts = token_posts()
        assert run(setup(lost, first))["products"].status == "auth_failed"
        assert token_posts() == posts  # the lock-out is stored: the dead token is not tried again

        again = install()  # installed again: the new refresh token in the environment replaces the lock-out
        assert run(setup(lost, again))["products"].status == "ok"
        assert stored(lost)["refresh_token"] not in (again, first) and not stored(lost).get("locked")
        assert all(r["path"] != "/oauth/token" or r["method"] == "POST" for r in shop.calls())
    finally:
        shop.server.stop()
        bo.server.stop()
    out, err = capfd.readouterr()
    assert all(s not in out + err for s in (first, DEMO_APP_SECRET, BO_SECRET))


def test_the_command_line_checks_the_credentials_and_runs_once(tmp_path: Path, stack: tuple[Shop, Shop]) -> None:
    shop, bo = stack
    path = config(tmp_path, shop, bo, [PRODUCTS, "orders: {every: 1m}"])
    checked = cli(path, "check-config", "--online")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    once = cli(path, "run", "--once", "--json")
    assert once.returncode == 0, once.stdout + once.stderr
    steps = {s["flow"]: s for s in json.loads(once.stdout)}
    assert steps["products"]["status"] == "ok" and steps["products"]["sent"] > 0
    assert TOKEN not in once.stdout + once.stderr + checked.stdout + checked.stderr


class StockHub(FakeBackoffice):
    """A back office that takes stock and prices from a channel (as an invoicing back office does)."""

    def __init__(self) -> None:
        super().__init__()
        self.written: dict[str, list[dict[str, Any]]] = {"stock": [], "prices": []}

    def prepare(self, entity: str, record: Any) -> Outgoing:
        if entity == "stock":
            return Outgoing(record.code, {"sku": record.code, "available": record.available})
        if entity == "prices":
            return Outgoing(record.code, {"sku": record.code, "price": str(record.list_price)})
        return super().prepare(entity, record)

    def push(self, entity: str, batch: Sequence[Outgoing]) -> list[PushResult]:
        if entity not in self.written:
            return super().push(entity, batch)
        self.written[entity] += [out.payload for out in batch]
        return [PushResult(out.key, "updated") for out in batch]


def test_stock_and_prices_flow_from_the_shop_to_a_back_office_that_takes_them(tmp_path: Path) -> None:
    server = serve_in_thread(build("jumpseller", str(tmp_path / "js.db"), products=6, seed=5, orders="0",
                                   login=LOGIN, auth_token=TOKEN))
    shop = Shop(server)
    conn = JumpsellerConnector("loja", server.url, {"login": LOGIN, "auth_token": TOKEN},
                               HttpSettings(max_attempts=2), sleep=lambda s: None)
    journal = Journal(tmp_path / "j.db")
    hub = StockHub()
    setup = ChannelSetup("loja", conn, directions={"stock": "pull", "prices": "pull"})
    engine = Engine(journal, hub, {"loja": setup}, clock=lambda: NOW, wall=time.time)  # type: ignore[arg-type]
    try:
        first = engine.run_step("loja", "stock")
        held = shop.admin("GET", "/_admin/products")["items"]
        levels = {(v or p)["sku"] or f"JS-{p['id']}": (v or p)["stock"] for p in held for v in p["variants"] or [None]}
        assert first.status == "ok" and {w["sku"]: w["available"] for w in hub.written["stock"]} == levels
        sku = next(v["sku"] for p in held for v in p["variants"])
        shop.admin("POST", "/_admin/stock", json={"sku": sku, "stock": 2})  # a sale in the shop
        hub.written["stock"].clear()
        assert engine.run_step("loja", "stock").sent == 1 and hub.written["stock"] == [{"sku": sku, "available": 2}]
        assert engine.run_step("loja", "prices").sent == len(levels)
        assert all(r["method"] == "GET" for r in shop.calls())  # the shop is only read
    finally:
        journal.close()
        conn.close()
        server.stop()
