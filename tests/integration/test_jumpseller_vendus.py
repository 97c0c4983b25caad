"""A Jumpseller shop with Vendus as the back office, over real HTTP: catalogue into the POS, an invoice per paid order."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from syncagent.agent import Agent
from syncagent.config import load_config
from syncagent.connectors.vendus_tax import valid_nif
from syncagent.engine.actions import RELEASE_EVERY
from syncagent.simulators import build
from syncagent.simulators.common import RunningServer, serve_in_thread
from syncagent.simulators.vendus import API
from tests.integration.harness import assert_no_canary
from tests.integration.test_alerts import Inbox, inbox  # noqa: F401 - the fixture: a real SMTP server

LOGIN = "loja-pt"
TOKEN = "canary-js-token-" + "5" * 16
KEY = "canary-vendus-key-0123456789"
NIF = "501964843"  # a valid NIF, typed at checkout as "PT 501 964 843"


class Sim:
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

    def items(self, what: str) -> list[dict[str, Any]]:
        return list(self.admin("GET", f"/_admin/{what}")["items"])

    def calls(self) -> list[dict[str, Any]]:
        return [r for r in self.admin("GET", "/_admin/requests")["items"] if not r["path"].startswith("/_admin")]


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
          ) -> Iterator[tuple[Sim, Sim]]:
    monkeypatch.setenv("IT_JS_TOKEN", TOKEN)
    monkeypatch.setenv("IT_VENDUS_KEY", KEY)
    shop = Sim(serve_in_thread(build("jumpseller", str(tmp_path / "js.db"), products=4, seed=5, orders="0",
                                     login=LOGIN, auth_token=TOKEN)))
    vendus = Sim(serve_in_thread(build("vendus", str(tmp_path / "vd.db"), products=2, seed=5, api_key=KEY)))
    yield shop, vendus
    shop.server.stop()
    vendus.server.stop()
    out, err = capfd.readouterr()
    for place in (out, err):
        assert TOKEN not in place and KEY not in place
    journal = tmp_path / "journal.db"
    assert not journal.exists() or KEY.encode() not in journal.read_bytes()
    assert_no_canary(tmp_path, capfd)


CONFIG = """\
journal: {journal}
log: {{level: warning, format: text}}
backoffice:
  type: vendus
  base_url: {vendus}{api}
  api_key: ${{IT_VENDUS_KEY}}
  register_id: 2
  payment_method_id: 2
  oss: {oss}
  http: {{max_attempts: 2, connect_timeout: 2, read_timeout: 10}}
channels:
  - name: loja-online
    type: jumpseller
    base_url: {shop}
    login: {login}
    auth_token: ${{IT_JS_TOKEN}}
    customer_code: consumidor-final
    order_warehouse: LOJA
    http: {{max_attempts: 2, connect_timeout: 2, read_timeout: 10}}
    flows:
      products: {{every: 1m, source: channel, sink: backoffice}}
      prices: {{every: 1m, source: channel, sink: backoffice}}
      stock: {{every: 1m, source: channel, sink: backoffice}}
      orders: {{every: 1m}}
"""


def config(tmp_path: Path, shop: Sim, vendus: Sim, *, oss: bool = False) -> Path:
    path = tmp_path / "syncagent.yaml"
    path.write_text(CONFIG.format(journal=tmp_path / "journal.db", vendus=vendus.url, api=API, shop=shop.url,
                                  login=LOGIN, oss=str(oss).lower()))
    return path


def run(path: Path, *, later: float = 0.0) -> dict[str, Any]:
    """One cycle; `later` moves the engine's wall clock on (a quarantined order's periodic retry)."""
    with Agent(load_config(path), sleep=lambda s: None) as agent:
        if later:
            agent.engine.wall = lambda: time.time() + later  # type: ignore[method-assign]
        return {r.flow: r for r in agent.run_once()}


def order(shop: Sim, state: str, **customer: str) -> int:
    return int(shop.admin("POST", "/_admin/orders", json={"state": state, "customer": customer})["order"]["id"])


def invoices(vendus: Sim, order_id: int, kinds: tuple[str, ...] = ("FR", "FT")) -> list[dict[str, Any]]:
    return [d for d in vendus.items("documents") if d["external_reference"] == f"loja-online:{order_id}"
            and d["type"] in kinds]


def credit_notes(vendus: Sim) -> list[dict[str, Any]]:
    return [d for d in vendus.items("documents") if d["type"] == "NC"]


def test_the_shops_catalogue_reaches_vendus_with_its_five_fields_and_stock_flows_one_way(
        tmp_path: Path, stack: tuple[Sim, Sim]) -> None:
    shop, vendus = stack
    path = config(tmp_path, shop, vendus)
    first = run(path)
    held = shop.items("products")
    rows = sum(len(p["variants"]) or 1 for p in held)
    assert {f: (first[f].status, first[f].sent) for f in ("products", "prices", "stock")} == {
        "products": ("ok", rows), "prices": ("ok", rows), "stock": ("ok", rows)}
    products = {p.get("reference"): p for p in vendus.items("products")}
    brands = {b["id"]: b["title"] for b in vendus.items("brands")}
    categories = {c["id"]: c["title"] for c in vendus.items("categories")}
    sized = next(p for p in held if p["variants"])
    variant = sized["variants"][1]
    got = products[variant["sku"]]  # a variant is a product of its own, with its own reference and barcode
    assert (got["title"], got["barcode"], brands[got["brand_id"]], categories[got["category_id"]]) == (
        f"{sized['name']} ({variant['options'][0]['value']})", variant["barcode"], sized["brand"],
        sized["categories"][0]["name"])
    assert Decimal(got["gross_price"]) == Decimal(str(variant["price"])) and got["tax_id"] == "NOR"
    assert got["stock"] == variant["stock"]

    shop.admin("POST", "/_admin/stock", json={"sku": variant["sku"], "stock": 2})  # a sale in the shop
    shop_before = len(shop.calls())
    second = run(path)
    assert (second["stock"].sent, second["products"].sent) == (1, 0)
    assert next(p for p in vendus.items("products") if p.get("reference") == variant["sku"])["stock"] == 2

    vendus.admin("PATCH", f"/_admin/products/{got['id']}", json={"stock": 40})  # counted at the POS
    run(path)
    after = next(p for p in shop.items("products") if p["id"] == sized["id"])["variants"][1]
    assert after["stock"] == 2  # Vendus's count never reaches the shop
    assert all(c["method"] == "GET" for c in shop.calls()[shop_before:])  # the shop is only ever read


def test_a_paid_order_gives_exactly_one_invoice_with_its_customer_and_an_unpaid_shipped_one_none(
        tmp_path: Path, stack: tuple[Sim, Sim]) -> None:
    shop, vendus = stack
    path = config(tmp_path, shop, vendus)
    paid = order(shop, "paid", taxid="PT 501 964 843", name="Ana Lopes", email="ana@example.pt")
    unpaid = order(shop, "shipped_unpaid", taxid="PT 501 964 843", name="Ana Lopes")
    anonymous = order(shop, "paid", name="Rui Costa")  # no NIF: the final consumer
    run(path)
    run(path)  # the first cycle may have met the orders before their products existed in Vendus
    (invoice,) = invoices(vendus, paid)
    assert invoice["type"] == "FR" and invoice["register_id"] == 2 and invoice["payments"][0]["id"] == 2
    clients = {c["id"]: c for c in vendus.items("clients")}
    assert clients[invoice["client"]["id"]]["fiscal_id"] == NIF and valid_nif(NIF)
    assert clients[invoice["client"]["id"]]["email"] == "ana@example.pt"
    source = next(o for o in shop.items("orders") if o["id"] == paid)
    assert Decimal(invoice["amount_gross"]) == Decimal(str(source["total"]))
    assert invoice["items"][-1]["reference"] == "PORTES"  # shipping is a line of its own
    assert invoices(vendus, unpaid) == []  # shipped but not paid: no invoice
    (walk_in,) = invoices(vendus, anonymous)
    assert walk_in["client"] is None and NIF not in str(walk_in)
    documents = len(vendus.items("documents"))
    run(path)
    assert len(vendus.items("documents")) == documents  # read again: nothing invoiced twice
    shop.admin("PATCH", f"/_admin/orders/{unpaid}", json={"state": "paid_shipped"})  # the payment arrives
    run(path)
    assert len(invoices(vendus, unpaid)) == 1
    assert len({c["fiscal_id"] for c in vendus.items("clients") if c.get("fiscal_id") == NIF}) == 1


def test_paid_then_cancelled_gives_one_credit_note_and_cancelled_before_payment_nothing(
        tmp_path: Path, stack: tuple[Sim, Sim]) -> None:
    shop, vendus = stack
    path = config(tmp_path, shop, vendus)
    run(path)  # the catalogue first
    paid = order(shop, "paid", taxid=NIF, name="Ana Lopes")
    never_paid = order(shop, "pending_payment")
    run(path)
    (invoice,) = invoices(vendus, paid)
    shop.admin("PATCH", f"/_admin/orders/{paid}", json={"state": "paid_then_canceled"})
    shop.admin("PATCH", f"/_admin/orders/{never_paid}", json={"state": "paid_then_canceled"})
    run(path)
    run(path)
    (note,) = credit_notes(vendus)
    assert {r["reference_document"]["document_number"] for r in note["items"]} == {invoice["number"]}
    assert Decimal(note["amount_gross"]) == Decimal(invoice["amount_gross"])
    assert invoices(vendus, never_paid) == []


def test_an_oss_order_to_spain_is_invoiced_at_spains_rate(tmp_path: Path, stack: tuple[Sim, Sim]) -> None:
    shop, vendus = stack
    path = config(tmp_path, shop, vendus, oss=True)
    run(path)
    spain = order(shop, "paid", name="Lucía García", country="ES")
    home = order(shop, "paid", name="Rui Costa", country="PT")
    run(path)
    (es,) = invoices(vendus, spain)
    (pt,) = invoices(vendus, home)
    assert {r["tax_rate"] for r in es["items"]} == {"21"}  # the goods and the shipping line alike
    assert {r["tax_rate"] for r in pt["items"]} == {"23"}


def test_an_invoicing_error_is_mailed_with_its_cause_and_the_order_goes_once_fixed(
        tmp_path: Path, stack: tuple[Sim, Sim], inbox: tuple[Inbox, int]) -> None:  # noqa: F811
    shop, vendus = stack
    box, port = inbox
    path = config(tmp_path, shop, vendus)
    path.write_text(path.read_text().replace("log: {level: warning, format: text}\n", (
        "log: {level: warning, format: text}\nalerts:\n  email:\n"
        f"    smtp_host: 127.0.0.1\n    smtp_port: {port}\n    starttls: false\n"
        "    from: syncagent@loja.example\n    to: [contabilidade@loja.example]\n")))
    run(path)
    vendus.admin("PATCH", "/_admin/registers/2", json={"status": "close"})
    closed = order(shop, "paid", name="Rui Costa")
    bad_nif = order(shop, "paid", taxid="PT 501 964 844", name="Ana Lopes")
    first = run(path)
    assert first["orders"].quarantined == 2 and vendus.items("documents") == []
    (mail,) = [m for m in box.messages if "quarantined" in str(m["Subject"])]
    body = mail.get_payload(decode=True).decode()
    assert "register (caixa) 2 is closed" in body and "Open it in Vendus" in body
    assert "501964844" in body and "not a valid Portuguese NIF" in body and "correct the tax id" in body

    vendus.admin("PATCH", "/_admin/registers/2", json={"status": "open"})
    run(path)
    assert invoices(vendus, closed) == []  # not retried at once: the register is checked every RELEASE_EVERY
    run(path, later=RELEASE_EVERY + 1)
    assert len(invoices(vendus, closed)) == 1  # went by itself once the register was open
    assert invoices(vendus, bad_nif) == []  # waits for its NIF to be corrected in the shop
    orders = {o["id"]: o for o in shop.items("orders")}
    shop.admin("PATCH", f"/_admin/orders/{bad_nif}", json={  # the customer's tax id corrected at the shop
        "billing_address": {**orders[bad_nif]["billing_address"], "taxid": "PT 501 964 843"}})
    run(path)
    assert len(invoices(vendus, bad_nif)) == 1
