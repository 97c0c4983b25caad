"""A pass over a whole feed skips the pages it recorded whole before, and only those (real HTTP, both simulators).

Three pages of products (1,200 at the agent's 500 per page). A page read again byte for byte,
under the same code, channel config and SKU map, is not decoded, parsed or mapped again; any
change to one of those maps it again.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncagent.agent import Agent
from syncagent.config import load_config
from syncagent.connectors import gestao_lojas
from syncagent.engine import pages as engine_module
from syncagent.journal import Journal
from tests.integration.harness import Sims, cli, items_written, start, write_config

PRODUCTS = 1200


@pytest.fixture
def big(sims: Sims, tmp_path: Path) -> Iterator[Sims]:
    """The same fixture with a back office of three feed pages."""
    sims.bo.server.stop()
    bo = start("gestao-lojas", tmp_path / "bo-big.db", products=PRODUCTS)
    yield Sims(bo, sims.su)
    bo.server.stop()


@pytest.fixture
def parsed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The codes of the product records the back office connector parsed."""
    seen: list[str] = []
    parse, key_of = gestao_lojas.PARSERS["products"]

    def counting(item: dict[str, Any]) -> Any:
        seen.append(item.get("code"))
        return parse(item)

    monkeypatch.setitem(gestao_lojas.PARSERS, "products", (counting, key_of))
    return seen


def push(config: Path, *, full: bool = False) -> Any:
    with Agent(load_config(config)) as agent:
        (result,) = agent.run_entity("products", full=full)
    return result


def page_rows(tmp_path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(tmp_path / "journal.db") as db:
        return db.execute("SELECT entity, items, next_cursor IS NULL FROM page_digests ORDER BY next_cursor IS NULL")\
            .fetchall()


def test_a_rescan_skips_the_pages_it_met_before_and_still_sends_a_change(big: Sims, tmp_path: Path,
                                                                        parsed: list[str]) -> None:
    config = write_config(tmp_path, big, flows=["products"])
    first = push(config)
    assert first.ok and first.sent == PRODUCTS
    assert page_rows(tmp_path) == [("products", 500, 0), ("products", 500, 0), ("products", 200, 1)]

    parsed.clear()
    mark, bo_mark = big.su.last_request_id(), big.bo.last_request_id()
    again = push(config, full=True)
    assert again.ok and again.sent == 0 and again.unchanged == PRODUCTS and again.read == PRODUCTS
    assert parsed == []  # not one record decoded or parsed again
    assert big.su.writes(mark) == []
    assert [r["path"] for r in big.bo.requests_log(bo_mark) if r["path"] == "/products"] == ["/products"] * 3

    # a product changes: it moves to the feed's end, so every page from its old place on is new bytes
    big.bo.admin("PATCH", "/_admin/products/P000005", json={"description": "Camiseta renomeada"})
    mark = big.su.last_request_id()
    changed = push(config, full=True)
    assert changed.ok and changed.sent == 1 and changed.unchanged == PRODUCTS - 1
    assert [(i["key"], i["name"]) for i in items_written(big.su.requests_log(mark), "/v1/products")] == \
        [("P000005", "Camiseta renomeada")]
    assert len(parsed) == PRODUCTS
    assert len(page_rows(tmp_path)) == 3  # the pages of the old feed are forgotten after the whole pass

    parsed.clear()
    assert push(config, full=True).sent == 0
    assert parsed == []


def test_new_code_or_a_config_change_maps_every_page_again(big: Sims, tmp_path: Path, parsed: list[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_config(tmp_path, big, flows=["products"])
    push(config)

    parsed.clear()
    monkeypatch.setattr(engine_module, "_code_digest", lambda: "the next version")
    upgraded = push(config, full=True)
    assert upgraded.sent == 0 and len(parsed) == PRODUCTS  # mapped again, and found unchanged

    parsed.clear()
    config.write_text(config.read_text().replace("safety_stock: 0", "safety_stock: 1"))
    reconfigured = push(config, full=True)
    assert reconfigured.sent == 0 and len(parsed) == PRODUCTS

    parsed.clear()
    assert push(config, full=True).sent == 0 and parsed == []


def test_a_sku_map_import_maps_every_page_again(big: Sims, tmp_path: Path, parsed: list[str]) -> None:
    config = write_config(tmp_path, big, flows=["products"])
    push(config)
    pairs = tmp_path / "depara.csv"
    pairs.write_text("code,channel_sku\nP001100,LOJA-1100\n")
    assert cli(config, "mapping", "import", "--channel", "loja-centro", str(pairs)).returncode == 0
    assert page_rows(tmp_path) == []

    parsed.clear()
    mark = big.su.last_request_id()
    result = push(config, full=True)
    assert len(parsed) == PRODUCTS
    assert [i["key"] for i in items_written(big.su.requests_log(mark), "/v1/products")] == ["LOJA-1100"]
    assert result.sent == 1


def test_a_page_holding_a_quarantined_record_is_mapped_every_time(big: Sims, tmp_path: Path,
                                                                  parsed: list[str]) -> None:
    big.bo.admin("PATCH", "/_admin/products/P000007", json={"description": ""})  # legacy junk: moves to the end
    config = write_config(tmp_path, big, flows=["products"])
    first = push(config)
    assert first.quarantined == 1 and first.sent == PRODUCTS - 1
    assert [r[1:] for r in page_rows(tmp_path)] == [(500, 0), (500, 0)]  # not the last page, which holds it

    parsed.clear()
    again = push(config, full=True)
    assert again.sent == 0 and again.quarantined == 0  # held in quarantine, not retried in a loop
    assert len(parsed) == 200 and "P000007" in parsed  # only the last page was parsed again

    big.bo.admin("PATCH", "/_admin/products/P000007", json={"description": "Consertado"})
    fixed = push(config, full=True)
    assert fixed.sent == 1
    with Journal(tmp_path / "journal.db", lock=False) as journal:
        assert journal.quarantined() == []


def test_a_dry_run_and_a_shadow_channel_note_no_page(big: Sims, tmp_path: Path) -> None:
    config = write_config(tmp_path, big, flows=["products"])
    assert cli(config, "push", "--entity", "products", "--dry-run").returncode == 0
    assert not (tmp_path / "journal.db").exists() or page_rows(tmp_path) == []
    config.write_text(config.read_text().replace("    safety_stock: 0\n", "    safety_stock: 0\n    shadow: true\n"))
    assert push(config).sent == 0
    assert page_rows(tmp_path) == []
