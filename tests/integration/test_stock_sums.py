"""Stock is sent as the true sum of the channel's warehouses, never a partial one (real HTTP).

1500 SKUs × 2 warehouses: a first sync, a lost journal and a warehouse added all read the feed
from its start, where the rows of one code may lie on different pages (rows that changed move
to the feed's end). Every value the channel ever received is checked against the back office.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import (
    CANARY_ENV,
    Sims,
    assert_no_canary,
    items_written,
    run_once,
    start,
    write_config,
)

SKUS = 1500


@pytest.fixture
def big(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> Iterator[Sims]:
    for key, value in CANARY_ENV.items():
        monkeypatch.setenv(key, value)
    bo = start("gestao-lojas", tmp_path / "bo.db", products=SKUS)
    su = start("sellerup", tmp_path / "su.db", products=SKUS)
    yield Sims(bo, su)
    su.server.stop()
    bo.server.stop()
    assert_no_canary(tmp_path, capfd)


def truth(bo_db: Path, warehouses: tuple[str, ...], safety: int) -> dict[str, int]:
    """The sum the channel must hold per code, from the back office's own rows."""
    conn = sqlite3.connect(bo_db)
    try:
        sums: dict[str, int] = {}
        for sku, warehouse, data in conn.execute("SELECT sku, warehouse, data FROM stock"):
            level = json.loads(data)
            sums.setdefault(sku, 0)
            if warehouse in warehouses:
                sums[sku] += level["available"] - level.get("reserved", 0)
        return {sku: max(0, total - safety) for sku, total in sums.items()}
    finally:
        conn.close()


def scatter(sims: Sims, step: int, warehouse: str, available: int, reserved: int) -> None:
    """Change one warehouse row of every `step`-th code: it moves to the end of the feed."""
    for i in range(1, SKUS + 1, step):
        sims.bo.admin("PUT", f"/_admin/stock/P{i:06d}/{warehouse}",
                      json={"available": available + i % 5, "reserved": reserved})


def sent_since(sims: Sims, mark: int) -> list[dict[str, Any]]:
    return items_written(sims.su.requests_log(mark), "/v1/stock")


def check_sent(sent: list[dict[str, Any]], expected: dict[str, int]) -> None:
    wrong = [(s["key"], s["available"], expected[s["key"]]) for s in sent if s["available"] != expected[s["key"]]]
    assert not wrong, f"{len(wrong)} values sent that are not the true sum, e.g. (code, sent, true) {wrong[:5]}"


def channel_levels(sims: Sims) -> dict[str, int]:
    return {s["key"]: s["available"] for s in sims.su.admin("GET", "/_admin/collections/stock")["items"]}


def stock_config(tmp_path: Path, sims: Sims, warehouses: str = "[CD01, LJ01]") -> Path:
    config = write_config(tmp_path, sims, flows=["stock"], safety=1)
    config.write_text(config.read_text().replace("warehouses: [CD01, LJ01]", f"warehouses: {warehouses}"))
    return config


def test_first_sync_and_a_lost_journal_send_only_true_sums(big: Sims, tmp_path: Path) -> None:
    scatter(big, 7, "LJ01", 3, 40)  # the LJ01 row lies far from the CD01 row, and takes more than it adds
    scatter(big, 11, "CD01", 2, 0)
    config = stock_config(tmp_path, big)
    expected = truth(tmp_path / "bo.db", ("CD01", "LJ01"), safety=1)
    (result,) = run_once(config)
    assert result.status == "ok", result.error
    sent = sent_since(big, 0)
    check_sent(sent, expected)
    assert sorted(s["key"] for s in sent) == sorted(expected)  # each code once: no partial value to correct
    assert channel_levels(big) == expected

    (tmp_path / "journal.db").unlink()  # a lost journal: the feed is read again from its start
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"journal.db{suffix}").unlink(missing_ok=True)
    scatter(big, 13, "LJ01", 1, 9)
    expected = truth(tmp_path / "bo.db", ("CD01", "LJ01"), safety=1)
    mark = big.su.last_request_id()
    (result,) = run_once(config)
    assert result.status == "ok", result.error
    check_sent(sent_since(big, mark), expected)
    assert channel_levels(big) == expected


def test_a_warehouse_added_sends_no_partial_sum(big: Sims, tmp_path: Path) -> None:
    scatter(big, 5, "LJ01", 4, 30)
    (result,) = run_once(stock_config(tmp_path, big, "[CD01]"))
    assert result.status == "ok", result.error
    assert channel_levels(big) == truth(tmp_path / "bo.db", ("CD01",), safety=1)
    config = stock_config(tmp_path, big, "[CD01, LJ01]")
    before = truth(tmp_path / "bo.db", ("CD01", "LJ01"), safety=1)
    scatter(big, 9, "CD01", 6, 1)  # changes after the first sync: the incremental part of the feed
    expected = truth(tmp_path / "bo.db", ("CD01", "LJ01"), safety=1)
    mark = big.su.last_request_id()
    (result,) = run_once(config)
    assert result.status == "ok", result.error
    sent = sent_since(big, mark)
    # a change feed is read in its order: a code may first get the two-warehouse sum from before its
    # later change (true then), never a sum that leaves a warehouse out
    old = [s for s in sent if s["available"] == before[s["key"]] != expected[s["key"]]]
    check_sent([s for s in sent if s not in old], expected)
    assert channel_levels(big) == expected
    mark = big.su.last_request_id()
    (result,) = run_once(config)  # the pass is over: nothing read again, nothing sent again
    assert result.status == "ok" and sent_since(big, mark) == []
