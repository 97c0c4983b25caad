"""Every connector, in each role it declares: as the source of a catalogue entity, and as its sink.

A flow may run either way (`source:` / `sink:` in the config); a connector declaring a catalogue
entity in `capabilities.pull` can be that flow's source, one declaring it in `push` its sink.
These run for exactly the (connector, entity) pairs declared, against the connector's simulator.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from syncagent import entities
from syncagent.connectors import registry
from syncagent.connectors.base import Connector
from syncagent.connectors.gestao_lojas import GestaoLojasConnector
from syncagent.http import HttpSettings
from syncagent.model import BadRecord, Product
from syncagent.simulators import build, seeddata
from syncagent.simulators.common import RunningServer, serve_in_thread
from tests.conformance.test_channel_conformance import CASES, SECRET, ChannelCase

SOURCES = [(case, entity) for case in CASES for entity in entities.CATALOGUE
           if entity in registry.capabilities(case.system).pull]  # type: ignore[union-attr]
# customers (both ways) come into the back office by their own binding, proven by the customer tests
BACKOFFICE_SINKS = [entity for entity in entities.CATALOGUE
                    if entity in GestaoLojasConnector.capabilities.push and entities.get(entity).direction == "push"]


@pytest.fixture
def server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    system, options = request.param
    server = serve_in_thread(build(system, str(tmp_path / "sim.db"), products=30, seed=3, **options))
    yield server
    server.stop()


def all_records(connector: Connector, entity: str) -> list[Any]:
    return [record for page in connector.pull(entity, None) for record in page.records]


@pytest.mark.parametrize(("case", "entity"), SOURCES, ids=[f"{c.name}-{e}" for c, e in SOURCES])
def test_a_source_gives_back_what_it_holds_the_same_each_time(tmp_path: Path, case: ChannelCase, entity: str) -> None:
    server = serve_in_thread(build(case.system, str(tmp_path / "sim.db"), products=30, seed=3, **case.sim_options))
    connector = case.connector(server.url, SECRET)
    if entity not in connector.capabilities.push:  # only a source (a shop's own catalogue): what it holds
        try:
            first = all_records(connector, entity)
            assert first and not [r for r in first if isinstance(r, BadRecord)]
            assert len({r.key for r in first}) == len(first)  # one record per key: nothing sent twice a run
            assert all_records(connector, entity) == first  # read again unchanged: a second run sends nothing
        finally:
            connector.close()
            server.stop()
        return
    assert entity == "products", "add the round trip of this entity here"
    try:
        sent = [case.product(f"SRC{i:03d}", f"Produto {i}", None) for i in range(5)]
        results = connector.push("products", [connector.prepare("products", p) for p in sent])
        assert all(r.ok for r in results)
        first = {r.code: r for r in all_records(connector, entity) if isinstance(r, Product)}
        assert {p.code: (p.name, p.active) for p in sent} == {c: (first[c].name, first[c].active) for c in first
                                                              if c.startswith("SRC")}
        again = {r.code: r for r in all_records(connector, entity) if isinstance(r, Product)}
        assert again == first  # read again unchanged: the same records (a second run sends nothing)
        assert not [r for r in all_records(connector, entity) if isinstance(r, BadRecord)]
    finally:
        connector.close()
        server.stop()


def _backoffice(url: str) -> GestaoLojasConnector:
    return GestaoLojasConnector("backoffice", url, {"client_id": "syncagent-demo", "client_secret": SECRET},
                                HttpSettings(max_attempts=2), sleep=lambda s: None)


@pytest.mark.parametrize("server", [("gestao-lojas", {"client_secret": SECRET})], indirect=True)
@pytest.mark.parametrize("entity", BACKOFFICE_SINKS)
def test_the_back_office_as_a_sink_writes_once_repeats_harmlessly_and_refuses_as_data(
        server: RunningServer, entity: str) -> None:
    assert entity == "products", "add this entity's sink case here"
    bo = _backoffice(server.url)
    try:
        new, existing = Product("NEW-001", "Produto novo", True), Product(seeddata.product_code(1), "Renomeado", False)
        refused = Product("NEW-002", "Sem grupo", True, group_code="NO-SUCH-GROUP")
        batch = [bo.prepare(entity, p) for p in (new, existing, refused)]
        results = bo.push(entity, batch)
        assert [(r.key, r.status) for r in results[:2]] == [("NEW-001", "created"), (existing.code, "updated")]
        assert not results[2].ok and results[2].reason_code and "group" in (results[2].reason or "")
        assert [r.status for r in bo.push(entity, batch[:2])] == ["updated", "updated"]  # a repeat is harmless
        found = bo.lookup("products", code=existing.code)
        assert isinstance(found, Product) and (found.name, found.active) == ("Renomeado", False)
    finally:
        bo.close()


VENDUS_KEY = "conformance-vendus-key"


@pytest.mark.parametrize("server", [("vendus", {"api_key": VENDUS_KEY})], indirect=True)
@pytest.mark.parametrize("entity", ["products", "prices", "stock"])
def test_vendus_as_the_sink_of_a_shops_catalogue_writes_once_repeats_harmlessly_and_refuses_as_data(
        server: RunningServer, entity: str) -> None:
    from decimal import Decimal

    from syncagent.connectors.vendus import VendusConnector
    from syncagent.model import Price, StockLevel
    from syncagent.simulators.vendus import API

    bo = VendusConnector("backoffice", server.url + API, {"api_key": VENDUS_KEY, "register_id": 2,
                                                          "payment_method_id": 2, "default_vat_rate": 23},
                         HttpSettings(max_attempts=2), sleep=lambda s: None)
    try:
        product = Product("SHOP-1", "Caneca", True, barcode="5601234567890", brand="Vista Alegre", group_code="Casa")
        record = {"products": product, "prices": Price("SHOP-1", Decimal("12.50")),
                  "stock": StockLevel("SHOP-1", 4)}[entity]
        unknown = {"products": Product("SHOP-2", "Pano", True), "prices": Price("NOPE", Decimal("1.00")),
                   "stock": StockLevel("NOPE", 1)}[entity]
        if entity != "products":
            bo.push("products", [bo.prepare("products", product)])
        batch = [bo.prepare(entity, record), bo.prepare(entity, unknown)]
        first = bo.push(entity, batch)
        assert first[0].status in ("created", "updated")
        if entity == "products":
            assert first[1].status == "created"
        else:  # a price or a level for a product Vendus lacks: refused as data, naming what it waits for
            assert (first[1].status, first[1].missing) == ("rejected", (("product", "NOPE"),))
        assert [r.status for r in bo.push(entity, batch[:1])] == ["updated"]  # a repeat is harmless
        held = [p for p in requests.get(server.url + "/_admin/products", timeout=10).json()["items"]
                if p.get("reference") == "SHOP-1"]
        assert len(held) == 1 and bo.lookup("products", code="SHOP-1") is not None
    finally:
        bo.close()
