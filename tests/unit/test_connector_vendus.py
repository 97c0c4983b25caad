"""The Vendus connector against its simulator (in-thread): tax rules, invoices, credit notes, refusals as data."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from syncagent.connectors.base import Outgoing
from syncagent.connectors.vendus import VendusConnector
from syncagent.connectors.vendus_docs import InvoiceRules, explain, invoice_out, line_rate
from syncagent.connectors.vendus_tax import normalise_nif, parse_rates, valid_nif
from syncagent.engine import ChannelSetup, Engine
from syncagent.engine.actions import RELEASE_EVERY
from syncagent.errors import AmbiguousError, ConfigError, MappingError, TransientError
from syncagent.http import HttpSettings
from syncagent.journal import Journal
from syncagent.model import BackOfficeOrder, Order, OrderItem, OrderPayment, Price, Product, StockLevel
from syncagent.simulators import build
from syncagent.simulators.common import RunningServer, serve_in_thread
from syncagent.simulators.vendus import API
from tests.support.fakes import NOW, FakeBackoffice, FakeChannel

KEY = "unit-vendus-key"
NIF = "501964843"


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[RunningServer]:
    server = serve_in_thread(build("vendus", str(tmp_path / "vd.db"), products=2, seed=1, api_key=KEY))
    yield server
    server.stop()


def connector(server: RunningServer, **options: Any) -> VendusConnector:
    opts = {"api_key": KEY, "register_id": 2, "payment_method_id": 2, "default_vat_rate": 23.0, **options}
    return VendusConnector("backoffice", server.url + API, opts, HttpSettings(max_attempts=2), sleep=lambda s: None)


def sale(order_id: str = "7001", *, document: str | None = None, country: str | None = "PT",
         rate: Decimal | None = Decimal("23"), code: str = "VD0001", shipping: str = "4.90") -> BackOfficeOrder:
    items = (OrderItem(code, 2, Decimal("9.90"), Decimal("0.00"), rate),)
    total = Decimal("19.80") + Decimal(shipping)
    order = Order(order_id, "paid", items, total, customer_code="cf", shipping=Decimal(shipping),
                  shipping_total=Decimal(shipping), currency="EUR", customer_document=document,
                  customer_name="Ana Lopes", customer_email="ana@example.pt", customer_country=country)
    return BackOfficeOrder("loja", order, "cf", None)


def admin(server: RunningServer, method: str, path: str, **kw: Any) -> Any:
    resp = requests.request(method, server.url + path, timeout=10, **kw)
    assert resp.status_code < 400, resp.text
    return resp.json() if resp.content else None


def documents(server: RunningServer) -> list[dict[str, Any]]:
    return list(admin(server, "GET", "/_admin/documents")["items"])


# -- tax rules --------------------------------------------------------------------------------------
def test_a_nif_is_checked_by_its_check_digit_and_read_as_typed() -> None:
    assert normalise_nif("PT 501.964.843") == NIF and valid_nif(NIF)
    assert not valid_nif("501964844") and not valid_nif("50196484") and not valid_nif("401964843")
    assert not valid_nif("５01964843")  # digits of another script are not a NIF


def test_vat_rate_of_a_line_default_oss_and_an_overridden_table() -> None:
    rules = InvoiceRules(register_id=2, payment_method_id=2, default_vat_rate=Decimal("23"), oss=True,
                         oss_rates=parse_rates({"FR": 5.5}))
    es, fr = sale(country="ES").order, sale(country="FR").order
    assert line_rate(es, es.items[0], rules) == Decimal("21")  # the table in the code
    assert line_rate(fr, fr.items[0], rules) == Decimal("5.5")  # the config's override wins
    with_nif = replace(es, customer_document="ESB12345678")  # a business buyer: not a consumer, not OSS
    assert line_rate(with_nif, with_nif.items[0], rules) == Decimal("23")
    assert line_rate(es, es.items[0], replace(rules, oss=False)) == Decimal("23")
    no_rate = sale(rate=None).order
    assert line_rate(no_rate, no_rate.items[0], rules) == Decimal("23")  # default_vat_rate
    with pytest.raises(MappingError) as caught:
        line_rate(no_rate, no_rate.items[0], replace(rules, default_vat_rate=None))
    assert caught.value.code == "missing_vat_rate" and "default_vat_rate" in caught.value.reason
    assert caught.value.missing == (("tax rate", "VD0001"),)
    with pytest.raises(ValueError, match="oss_rates.ES"):
        parse_rates({"ES": "vinte"})


def test_an_invoice_carries_shipping_as_a_line_and_the_final_consumer_has_no_client() -> None:
    rules = InvoiceRules(register_id=2, payment_method_id=2)
    body = invoice_out(sale(), rules)
    assert body["client"] is None and body["type"] == "FR" and body["register_id"] == 2
    assert [(i["reference"], i["gross_price"], i["tax_id"]) for i in body["items"]] == [
        ("VD0001", "9.90", "NOR"), ("PORTES", "4.90", "NOR")]
    assert body["payments"] == [{"id": 2, "amount": "24.70"}] and body["external_reference"] == "loja:7001"
    assert invoice_out(sale(document="PT 501 964 843"), rules)["client"]["fiscal_id"] == NIF
    with pytest.raises(MappingError, match="not a valid Portuguese NIF"):
        invoice_out(sale(document="501964844"), rules)
    assert "payments" not in invoice_out(sale(), replace(rules, document_type="FT"))
    mapped = sale()  # the channel's payment_map named a Vendus payment method: it wins over the default
    mapped = replace(mapped, order=replace(mapped.order, payments=(OrderPayment("3", Decimal("24.70")),)))
    assert invoice_out(mapped, rules)["payments"] == [{"id": 3, "amount": "24.70"}]


def test_refusals_name_their_cause_fix_and_what_they_wait_for() -> None:
    code, why, waits = explain(422, "D004", "register 2 (Loja online) is closed: open it", 2)
    assert code == "register_closed" and "Open it in Vendus" in why and waits == (("register", "2"),)
    code, _, waits = explain(422, "D013", "items[1]: unknown product 'JS1'; send title", 2)
    assert (code, waits) == ("unknown_product", (("product", "JS1"),))
    assert explain(422, "C003", "fiscal_id '1' is not a valid Portuguese NIF", 2)[0] == "nif_refused"


# -- against the simulator ---------------------------------------------------------------------------
def test_config_errors_are_clear() -> None:
    with pytest.raises(ConfigError, match="payment_method_id is required"):
        VendusConnector("bo", "http://127.0.0.1:9", {"api_key": "k", "register_id": 1}, HttpSettings())
    with pytest.raises(ConfigError, match="oss_rates"):
        VendusConnector("bo", "http://127.0.0.1:9", {"api_key": "k", "register_id": 1, "document_type": "FT",
                                                      "oss_rates": {"ESP": 21}}, HttpSettings())


def test_catalogue_writes_find_by_reference_before_creating(sim: RunningServer) -> None:
    bo = connector(sim)
    product = Product("JS-1", "Caneca", True, barcode="5601234567890", brand="Vista Alegre", group_code="Casa")
    assert [r.status for r in bo.push("products", [bo.prepare("products", product)])] == ["created"]
    again = connector(sim)  # a new run: nothing cached, found by reference
    assert [r.status for r in again.push("products", [again.prepare("products", product)])] == ["updated"]
    price, stock = Price("JS-1", Decimal("12.50")), StockLevel("JS-1", 7)
    assert again.push("prices", [again.prepare("prices", price)])[0].status == "updated"
    assert again.push("stock", [again.prepare("stock", stock)])[0].status == "updated"
    (held,) = [p for p in admin(sim, "GET", "/_admin/products")["items"] if p.get("reference") == "JS-1"]
    assert (held["gross_price"], held["stock"], held["tax_id"]) == ("12.50", 7, "NOR")
    missing = again.push("stock", [again.prepare("stock", StockLevel("NOPE", 1))])[0]
    assert (missing.status, missing.missing) == ("rejected", (("product", "NOPE"),))
    assert len(admin(sim, "GET", "/_admin/brands")["items"]) == 1  # made once, found after


def test_an_invoice_is_found_by_its_reference_and_a_duplicate_transaction_answers_the_same(
        sim: RunningServer) -> None:
    bo = connector(sim)
    assert bo.lookup("orders", external_id="7001", channel="loja") is None  # 404 "No data" is none
    out = bo.prepare("orders", sale(document="PT 501 964 843"))
    (created,) = bo.push("orders", [out])
    assert created.status == "created"
    assert bo.lookup("orders", external_id="7001", channel="loja")["number"] == created.remote_id  # type: ignore[index]
    admin(sim, "POST", "/_admin/config", json={"reject_duplicate_tx": True})  # L97, the switch on
    (again,) = bo.push("orders", [out])
    assert (again.status, again.remote_id) == ("exists", created.remote_id) and len(documents(sim)) == 1
    admin(sim, "POST", "/_admin/config", json={"reject_duplicate_tx": False})  # off: a repeat would duplicate,
    bo.push("orders", [bo.prepare("orders", sale("7002", document=NIF))])  # which is why it is looked up first
    assert len([c for c in admin(sim, "GET", "/_admin/clients")["items"] if c.get("fiscal_id") == NIF]) == 1


def test_a_closed_register_and_a_refused_nif_are_rejections_with_their_reasons(sim: RunningServer) -> None:
    bo = connector(sim)
    admin(sim, "PATCH", "/_admin/registers/2", json={"status": "close"})
    (closed,) = bo.push("orders", [bo.prepare("orders", sale())])
    assert (closed.status, closed.reason_code, closed.missing) == ("rejected", "register_closed",
                                                                   (("register", "2"),))
    assert "Open it in Vendus" in (closed.reason or "")
    admin(sim, "PATCH", "/_admin/registers/2", json={"status": "open"})
    foreign = Outgoing("7003", {**bo.prepare("orders", sale("7003")).payload,
                                "client": {"fiscal_id": "123", "country": "PT", "name": "X"}})
    (refused,) = bo.push("orders", [foreign])  # what the mapping would have caught, refused by Vendus too
    assert (refused.status, refused.reason_code) == ("rejected", "nif_refused")
    assert "Correct the tax id" in (refused.reason or "") and documents(sim) == []


def test_one_credit_note_per_invoice_referencing_its_rows(sim: RunningServer) -> None:
    bo = connector(sim)
    (created,) = bo.push("orders", [bo.prepare("orders", sale())])
    cancel = bo.prepare("order-cancels", {"number": created.remote_id, "reason": "cancelled in the shop"})
    assert bo.push("order-cancels", [cancel])[0].status == "created"
    assert bo.push("order-cancels", [cancel])[0].status == "exists"  # found by its reference: not twice
    (note,) = [d for d in documents(sim) if d["type"] == "NC"]
    (invoice,) = [d for d in documents(sim) if d["type"] == "FR"]
    assert [r["reference_document"] for r in note["items"]] == [
        {"document_number": invoice["number"], "document_row": r["row"]} for r in invoice["items"]]
    assert note["amount_gross"] == invoice["amount_gross"]


def test_the_simulator_is_strict_as_the_reference(sim: RunningServer) -> None:
    url, auth = sim.url + API, (KEY, "")
    assert requests.delete(f"{url}/documents/1", auth=auth, timeout=5).status_code == 403  # never deletable
    assert requests.post(f"{url}/documents/", data="{}", auth=auth, timeout=5).status_code == 415
    assert requests.get(f"{url}/registers/", auth=("wrong", ""), timeout=5).status_code == 401
    assert requests.get(f"{url}/registers/", auth=(KEY, "x"), timeout=5).status_code == 401  # empty password
    resp = requests.post(f"{url}/documents/", json={"type": "FT", "items": [{"reference": "VD0001", "qty": 1}]},
                         auth=auth, timeout=5)
    assert resp.status_code == 422 and resp.json()["errors"][0]["message"].startswith("register_id is required")
    resp = requests.post(f"{url}/documents/", json={"type": "NC", "register_id": 2, "notes": "x", "items": [
        {"qty": 1, "reference_document": {"document_number": "FT X/1", "document_row": 1}}]}, auth=auth, timeout=5)
    assert resp.status_code == 422 and "no invoice" in resp.json()["errors"][0]["message"]
    resp = requests.post(f"{url}/clients/", json={"fiscal_id": "999999990", "name": "x"}, auth=auth, timeout=5)
    assert resp.status_code == 422  # the final consumer is never a client


def test_rate_limits_are_honoured_with_the_servers_wait(tmp_path: Path) -> None:
    sim = serve_in_thread(build("vendus", str(tmp_path / "rl.db"), products=1, api_key=KEY, clock="frozen",
                                rate_limit="2"))  # the window moves only when the test says
    waits: list[float] = []
    bo = VendusConnector("backoffice", sim.url + API, {"api_key": KEY, "register_id": 2, "payment_method_id": 2},
                         HttpSettings(max_attempts=3), sleep=waits.append)
    try:
        bo.check()
        bo.check()
        with pytest.raises(TransientError, match="429"):
            bo.check()
        assert waits == [60.0, 60.0]  # Rate-Limit-Reset (the frozen clock sits on a whole minute), not a guess
        admin(sim, "POST", "/_admin/clock", json={"advance": 60})
        bo.check()  # a new window
    finally:
        sim.stop()


def test_a_lost_answer_is_ambiguous_never_retried_blindly(sim: RunningServer) -> None:
    bo = connector(sim)
    admin(sim, "POST", "/_admin/faults", json={"commit_then_fail": {"POST .*/documents/": 1.0}, "commit_mode": "500"})
    with pytest.raises(AmbiguousError):
        bo.push("orders", [bo.prepare("orders", sale())])
    admin(sim, "DELETE", "/_admin/faults")
    assert len(documents(sim)) == 1 and bo.lookup("orders", external_id="7001", channel="loja") is not None


# -- the engine: an order refused for what may come later goes by itself ------------------------------
class TaxedHub(FakeBackoffice):
    """A back office that cannot invoice until a VAT rate is configured."""

    rate_set = False

    def prepare(self, entity: str, record: Any) -> Outgoing:
        if entity == "orders" and not self.rate_set:
            raise MappingError("missing_vat_rate", "set default_vat_rate", (("tax rate", "P1"),))
        return super().prepare(entity, record)


def test_an_order_waiting_for_a_mapping_cause_is_retried_by_the_engine(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.db")
    hub, shop = TaxedHub(), FakeChannel()
    shop.orders = [Order("O1", "approved", (OrderItem("P1", 1, Decimal("5.00")),), Decimal("5.00"),
                         customer_code="C1", version="v1")]
    clock = {"now": time.time()}
    engine = Engine(journal, hub, {"loja": ChannelSetup("loja", shop)}, clock=lambda: NOW,  # type: ignore[arg-type]
                    wall=lambda: clock["now"])
    try:
        assert engine.run_step("loja", "orders").quarantined == 1
        (row,) = journal.quarantined("loja", "orders")
        assert row.waiting_for == (("tax rate", "P1"),)
        hub.rate_set = True
        engine.run_step("loja", "orders")
        assert hub.posts == []  # the same order, unchanged: not tried at once
        clock["now"] += RELEASE_EVERY + 1
        engine.run_step("loja", "orders")
        assert len(hub.posts) == 1 and journal.quarantined("loja", "orders") == []
    finally:
        journal.close()


# -- config ------------------------------------------------------------------------------------------
YAML = """\
journal: {journal}
backoffice:
  type: vendus
  base_url: http://127.0.0.1:9/ws/v1.1
  api_key: ${{UT_VENDUS_KEY}}
  register_id: 2
  payment_method_id: 2
  document_type: {kind}
channels:
  - name: loja
    type: jumpseller
    base_url: https://api.jumpseller.com/v1
    login: l
    auth_token: ${{UT_VENDUS_KEY}}
    customer_code: cf
    order_warehouse: LOJA
    flows:
      orders: {{every: 1m}}
      stock: {{every: 1m, source: channel, sink: backoffice}}
      products: {{every: 1m, source: channel, sink: backoffice}}
"""


def test_config_takes_the_shops_catalogue_first_and_names_a_bad_option_by_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from syncagent.agent import Agent
    from syncagent.config import ConfigProblems, load_config

    monkeypatch.setenv("UT_VENDUS_KEY", KEY)
    path = tmp_path / "s.yaml"
    path.write_text(YAML.format(journal=tmp_path / "j.db", kind="FR"))
    # no warehouses: stock read from the shop sums none; its catalogue runs before its orders
    with Agent(load_config(path)) as agent:
        assert [s.flow for s in agent.steps()] == ["products", "stock", "orders"]
    path.write_text(YAML.format(journal=tmp_path / "j.db", kind="FS"))
    with pytest.raises(ConfigProblems) as caught:
        load_config(path)
    assert ":8: backoffice.document_type" in str(caught.value) and KEY not in str(caught.value)


# -- hostile answers: a clear channel error or a rejection, never a crash -----------------------------
@pytest.mark.parametrize(("method", "path", "status", "body", "call"), [
    ("GET", "/documents/", 200, b'{"not": "a list"}', lambda bo: bo.lookup("orders", external_id="1", channel="x")),
    ("GET", "/documents/", 200, b'[{"number": "FR 1"}]', lambda bo: bo.lookup("orders", external_id="1", channel="x")),
    ("GET", "/documents/", 200, b"<html>oops</html>", lambda bo: bo.lookup("orders", external_id="1", channel="x")),
    ("GET", "/products/", 200, b'[{"id": "7"}]', lambda bo: bo.lookup("products", code="P1")),
])
def test_a_hostile_listing_is_a_transient_error(method: str, path: str, status: int, body: bytes, call: Any) -> None:
    import responses

    bo = VendusConnector("backoffice", "http://vendus.test/ws/v1.1", {"api_key": KEY, "register_id": 2,
                                                                        "payment_method_id": 2},
                         HttpSettings(max_attempts=1), sleep=lambda s: None)
    with responses.RequestsMock() as mocked:
        mocked.add(method, "http://vendus.test/ws/v1.1" + path, body=body, status=status,
                   content_type="application/json" if body.startswith((b"{", b"[")) else "text/html")
        with pytest.raises(TransientError) as caught:
            call(bo)
    assert KEY not in str(caught.value)


def test_a_created_answer_without_an_id_is_ambiguous_and_a_broken_invoice_a_rejected_cancel() -> None:
    import responses

    bo = VendusConnector("backoffice", "http://vendus.test/ws/v1.1", {"api_key": KEY, "register_id": 2,
                                                                        "payment_method_id": 2},
                         HttpSettings(max_attempts=1), sleep=lambda s: None)
    base = "http://vendus.test/ws/v1.1"
    with responses.RequestsMock() as mocked:
        mocked.add("POST", base + "/documents/", json={"number": "FR 1"}, status=201)
        with pytest.raises(AmbiguousError):
            bo.push("orders", [bo.prepare("orders", sale())])
    with responses.RequestsMock() as mocked:
        mocked.add("GET", base + "/documents/5", json={"id": 5, "items": [], "number": 7}, status=200)
        mocked.add("GET", base + "/documents/", json={"errors": [{"message": "No data"}]}, status=404)
        (result,) = bo.push("order-cancels", [bo.prepare("order-cancels", {"number": "5"})])
    assert result.status == "rejected" and "no number or rows" in (result.reason or "")


def test_a_client_is_found_by_nif_or_by_e_mail_only_with_the_same_nif(sim: RunningServer) -> None:
    url, auth = sim.url + API, (KEY, "")
    ana = requests.post(f"{url}/clients/", json={"fiscal_id": NIF, "name": "Ana", "email": "a@x.pt"},
                        auth=auth, timeout=5).json()
    rui = requests.post(f"{url}/clients/", json={"fiscal_id": "123456789", "name": "Rui", "email": "r@x.pt"},
                        auth=auth, timeout=5).json()
    bo = connector(sim)
    assert bo._client_id({"fiscal_id": "PT 501 964 843", "email": "a@x.pt", "country": "PT"}) == ana["id"]
    # Rui's e-mail with another NIF is another buyer for the tax authority: a client of its own, never Rui
    new = bo._client_id({"fiscal_id": "200010018", "email": "r@x.pt", "country": "PT", "name": "Rui & Filhos"})
    assert new not in (ana["id"], rui["id"])
    assert bo._client_id({"fiscal_id": "200010018", "email": "r@x.pt", "country": "PT"}) == new  # found again


@pytest.mark.parametrize(("headers", "waited"), [({"Rate-Limit-Reset": "7"}, [7.0]), ({"RateLimit-Reset": "3"}, [3.0]),
                                                 ({"Retry-After": "2", "Rate-Limit-Reset": "9"}, [2.0])])
def test_a_429_waits_for_the_window_its_headers_name(headers: dict[str, str], waited: list[float]) -> None:
    import responses

    from syncagent.http import HttpClient

    sleeps: list[float] = []
    client = HttpClient("http://limited.test", HttpSettings(max_attempts=2), sleep=sleeps.append)
    with responses.RequestsMock() as mocked:
        mocked.add("GET", "http://limited.test/x", status=429, headers=headers, json={})
        mocked.add("GET", "http://limited.test/x", status=200, json={})
        assert client.get("/x").status == 200
    assert sleeps == waited


def test_a_reset_that_is_not_a_delta_is_not_read_as_one() -> None:
    import responses

    from syncagent.http import HttpClient

    sleeps: list[float] = []
    client = HttpClient("http://limited.test", HttpSettings(max_attempts=2), sleep=sleeps.append)
    with responses.RequestsMock() as mocked:
        mocked.add("GET", "http://limited.test/x", status=429, headers={"Rate-Limit-Reset": "1767225600"}, json={})
        mocked.add("GET", "http://limited.test/x", status=200, json={})
        client.get("/x")
    assert len(sleeps) == 1 and sleeps[0] < 60  # the usual backoff, not an epoch time in seconds


def test_a_product_id_gone_stale_is_looked_up_again_and_a_bad_default_rate_stops_at_start(sim: RunningServer) -> None:
    bo = connector(sim)
    product = Product("JS-9", "Caneca", True)
    bo.push("products", [bo.prepare("products", product)])
    real = bo.ids["JS-9"]
    bo.ids["JS-9"] = 99999  # what the agent remembered of a product since deleted in Vendus
    assert bo.push("stock", [bo.prepare("stock", StockLevel("JS-9", 3))])[0].status == "updated"
    assert bo.ids["JS-9"] == real
    bo.ids["JS-9"] = 99999
    assert bo.push("products", [bo.prepare("products", product)])[0].status == "updated"
    with pytest.raises(ConfigError, match="default_vat_rate 21"):
        connector(sim, default_vat_rate=21.0)


def test_the_documented_config_is_valid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from syncagent.config import load_config

    text = (Path(__file__).resolve().parents[2] / "docs" / "connectors" / "vendus.md").read_text()
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    for name in ("VENDUS_API_KEY", "JUMPSELLER_LOGIN", "JUMPSELLER_TOKEN"):
        monkeypatch.setenv(name, "x" * 32)
    path = tmp_path / "syncagent.yaml"
    path.write_text(block.replace("/var/lib/syncagent/journal.db", str(tmp_path / "j.db")))
    loaded = load_config(path)
    assert loaded.backoffice.type == "vendus" and loaded.backoffice.options["register_id"] == 12
