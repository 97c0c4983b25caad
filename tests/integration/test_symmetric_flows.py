"""A flow turned around by the config: products from a Seller Up channel into the back office, over real HTTP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from syncagent.agent import Agent
from syncagent.config import ConfigProblems, load_config
from syncagent.model import Product
from syncagent.simulators import seeddata
from tests.integration.harness import CANARY_KEY, Sims, run_once, write_config

# the shop's catalogue: two products the back office does not have, one it has under the same code
SHOP = [
    {"key": "SHOP-0001", "name": "Caneca esmaltada azul", "barcode": seeddata.ean13(900001), "brand": "Tramontina",
     "group_key": None, "unit": "UN", "active": True},
    {"key": "SHOP-0002", "name": "Pano de prato xadrez", "barcode": None, "brand": None, "group_key": None,
     "unit": "UN", "active": True},
]


def shop_put(sims: Sims, items: list[dict[str, Any]]) -> None:
    """Write the shop's catalogue the way its own back end does: the Seller Up API."""
    resp = sims.su.http.put(sims.su.url + "/v1/products", json={"items": items},
                            headers={"X-Api-Key": CANARY_KEY}, timeout=30)
    assert resp.status_code == 200, resp.text
    assert all(r["status"] in ("created", "updated") for r in resp.json()["results"])


def product_writes(sims: Sims, after: int) -> list[tuple[str, str, dict[str, Any]]]:
    return [(r["method"], r["path"], json.loads(r["body"])) for r in sims.bo.writes(after)
            if r["path"].startswith("/products")]


def config_from_shop(tmp_path: Path, sims: Sims, flow: str = "products: {every: 1m, source: channel, sink: backoffice}"
                     ) -> Path:
    path = write_config(tmp_path, sims, flows=["orders"])
    text = path.read_text().replace("      orders: {every: 1m}", f"      {flow}")
    path.write_text(text)
    return path


def test_products_flow_from_the_channel_into_the_back_office_and_a_second_run_sends_nothing(
        tmp_path: Path, sims: Sims) -> None:
    existing = seeddata.product_code(1)  # seeded in the back office: the shop's version of it wins
    shop_put(sims, [*SHOP, {"key": existing, "name": "Nome vindo da loja", "barcode": None, "brand": None,
                            "group_key": None, "unit": "UN", "active": False}])
    config = config_from_shop(tmp_path, sims)
    loaded = load_config(config)
    assert loaded.channels[0].flow("products").direction == "pull"  # type: ignore[union-attr]
    su_before, bo_before = sims.su.last_request_id(), sims.bo.last_request_id()

    (first,) = run_once(config)
    assert (first.flow, first.status, first.read, first.sent) == ("products", "ok", 3, 3)
    writes = product_writes(sims, bo_before)
    assert sorted((method, path) for method, path, _ in writes) == sorted([
        ("PUT", "/products/SHOP-0001"), ("POST", "/products"),  # not there yet: created
        ("PUT", "/products/SHOP-0002"), ("POST", "/products"),
        ("PUT", f"/products/{existing}"),  # there: updated in place
    ])
    assert sims.su.writes(su_before) == []  # the channel is read, never written
    with Agent(load_config(config)) as agent:
        created = agent.backoffice.lookup("products", code="SHOP-0001")
        updated = agent.backoffice.lookup("products", code=existing)
    assert isinstance(created, Product) and created.name == "Caneca esmaltada azul"
    assert created.barcode == SHOP[0]["barcode"] and created.brand == "Tramontina"
    assert isinstance(updated, Product) and (updated.name, updated.active) == ("Nome vindo da loja", False)

    bo_after_first = sims.bo.last_request_id()
    (second,) = run_once(config)
    assert (second.status, second.read, second.sent, second.unchanged) == ("ok", 3, 0, 3)
    assert product_writes(sims, bo_after_first) == []  # nothing changed: nothing sent

    shop_put(sims, [{**SHOP[1], "name": "Pano de prato listrado"}])
    bo_after_second = sims.bo.last_request_id()
    (third,) = run_once(config)
    assert third.sent == 1
    assert [(m, p, b["description"]) for m, p, b in product_writes(sims, bo_after_second)] == [
        ("PUT", "/products/SHOP-0002", "Pano de prato listrado")]


def test_a_product_the_back_office_refuses_is_quarantined_and_the_rest_go_in(tmp_path: Path, sims: Sims) -> None:
    shop_put(sims, [*SHOP, {"key": "SHOP-0003", "name": "Sem grupo", "barcode": None, "brand": None,
                            "group_key": "NO-SUCH-GROUP", "unit": "UN", "active": True}])
    (result,) = run_once(config_from_shop(tmp_path, sims))
    assert (result.status, result.sent, result.quarantined) == ("quarantined", 2, 1)
    with Agent(load_config(config_from_shop(tmp_path, sims))) as agent:
        (row,) = agent.journal.quarantined("loja-centro", "products")
    assert row.key == "SHOP-0003" and "group" in row.reason


@pytest.mark.parametrize(("flow", "key", "says"), [
    ("products: {source: channel, sink: channel}", "sink", ["the other end of the flow"]),
    ("products: {source: channel, direction: push}", "source", ["agrees with direction: push"]),
    # neither end can: the channel cannot read its prices, the back office cannot take them
    ("prices: {source: channel}", "prices", ["sellerup cannot pull prices", "gestao-lojas cannot take prices"]),
])
def test_a_turned_around_flow_that_cannot_run_is_refused_at_load(tmp_path: Path, sims: Sims, flow: str, key: str,
                                                                 says: list[str]) -> None:
    with pytest.raises(ConfigProblems) as caught:
        load_config(config_from_shop(tmp_path, sims, flow))
    found = [f"{p.expected} / {p.found}" for p in caught.value.problems if p.key.endswith(key)]
    assert len(found) == len(says) == len(caught.value.problems), caught.value.problems
    assert all(any(text in problem for problem in found) for text in says), found
