"""Five channels fed from one read of the back office feed (real HTTP), one of them failing.

Each back office page is read once per cycle and handed to every channel; the failing channel
reports its failure while the others finish, and catches up from its own cursor at the next cycle.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncagent.agent import Agent
from syncagent.config import load_config
from tests.integration.harness import CANARY_ENV, CONFIG, Sim, assert_no_canary, items_written, start

PRODUCTS = 1600  # four pages of the back office's 500
NAMES = ["loja-a", "loja-b", "loja-c", "loja-d", "loja-e"]
FAILING = "loja-c"

CHANNEL = """\
  - name: {name}
    type: sellerup
    base_url: {url}
    api_key: ${{SELLERUP_KEY}}
    warehouses: [CD01, LJ01]
    order_warehouse: LJ01
    http: {{max_attempts: 2, connect_timeout: 2, read_timeout: 10}}
    flows:
      groups: {{every: 1m}}
      products: {{every: 1m}}
      stock: {{every: 1m}}
"""


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
          capfd: pytest.CaptureFixture[str]) -> Iterator[tuple[Sim, dict[str, Sim], Path]]:
    for key, value in CANARY_ENV.items():
        monkeypatch.setenv(key, value)
    bo = start("gestao-lojas", tmp_path / "bo.db", products=PRODUCTS)
    channels = {name: start("sellerup", tmp_path / f"{name}.db") for name in NAMES}
    text = "".join(CHANNEL.format(name=name, url=sim.url) for name, sim in channels.items())
    path = tmp_path / "syncagent.yaml"
    path.write_text(CONFIG.format(journal=tmp_path / "journal.db", bo=bo.url, channels=text))
    yield bo, channels, path
    for sim in channels.values():
        sim.server.stop()
    bo.server.stop()
    assert_no_canary(tmp_path, capfd)


def _cycle(path: Path) -> dict[tuple[str, str], Any]:
    with Agent(load_config(path), sleep=lambda seconds: None) as agent:
        return {(r.channel, r.flow): r for r in agent.run_once()}


def _feed_reads(bo: Sim, after: int, feed: str) -> Counter[str]:
    """GETs of a back office feed since request `after`, by the query (cursor) asked for."""
    return Counter(repr(r["query"]) for r in bo.requests_log(after) if r["method"] == "GET" and r["path"] == feed)


def test_five_channels_share_each_page_and_a_failing_one_catches_up(
        world: tuple[Sim, dict[str, Sim], Path]) -> None:
    bo, channels, path = world
    channels[FAILING].admin("POST", "/_admin/faults", json={"fail_next": 10_000, "fail_status": 503,
                                                            "only": "PUT /v1/products"})
    channels["loja-e"].admin("POST", "/_admin/faults", json={"latency_ms": 30})  # a slow one, not held back

    results = _cycle(path)

    for name in NAMES:
        if name == FAILING:
            assert results[(name, "products")].status == "failed"
            assert "503" in (results[(name, "products")].error or "")
        else:
            assert results[(name, "products")].status == "ok", results[(name, "products")]
            assert len({i["key"] for i in items_written(channels[name].requests_log(), "/v1/products")}) == PRODUCTS
    for feed in ("/products", "/groups"):
        reads = _feed_reads(bo, 0, feed)
        assert reads and max(reads.values()) == 1, f"{feed}: a page was read more than once: {reads}"
    assert sum(_feed_reads(bo, 0, "/products").values()) == PRODUCTS // 500 + 1  # four pages, one read each
    assert results[("loja-a", "stock")].status == "ok"  # stock was not held back by the failing channel

    # the next cycle: the failing channel is back and catches up from its own cursor
    channels[FAILING].admin("DELETE", "/_admin/faults")
    mark = bo.last_request_id()
    results = _cycle(path)

    assert all(r.status == "ok" for r in results.values()), results
    assert len({i["key"] for i in items_written(channels[FAILING].requests_log(), "/v1/products")}) == PRODUCTS
    for name in NAMES:
        if name != FAILING:
            assert results[(name, "products")].sent == 0  # nothing new for those that finished
    reads = _feed_reads(bo, mark, "/products")
    assert max(reads.values()) == 1, f"a page was read more than once in the catch-up cycle: {reads}"


def test_a_quiet_cycle_reads_each_feed_tail_once_for_five_channels(
        world: tuple[Sim, dict[str, Sim], Path]) -> None:
    bo, channels, path = world
    _cycle(path)
    mark = bo.last_request_id()

    results = _cycle(path)

    assert all(r.status == "ok" and r.sent == 0 for r in results.values()), results
    gets = Counter(r["path"] for r in bo.requests_log(mark) if r["method"] == "GET")
    assert gets["/products"] == 1 and gets["/groups"] == 1 and gets["/stock"] == 1, gets


def test_the_daemon_runs_the_due_pushes_of_five_channels_side_by_side_reading_each_page_once(
        world: tuple[Sim, dict[str, Sim], Path]) -> None:
    import os
    import signal
    import sqlite3
    import subprocess
    import sys
    import time

    from tests.integration.harness import ROOT

    bo, channels, path = world
    path.write_text(path.read_text().replace("      groups: {every: 1m}\n", "").replace("      stock: {every: 1m}\n", "")
                    .replace("products: {every: 1m}", "products: {every: 1h}"))
    proc = subprocess.Popen([sys.executable, "-m", "syncagent", "-c", str(path), "run"], cwd=ROOT,  # noqa: S603
                            env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        done = 0
        while time.monotonic() < deadline and done < len(NAMES):
            time.sleep(0.1)
            try:
                with sqlite3.connect(path.parent / "journal.db") as conn:
                    done = conn.execute("SELECT count(*) FROM runs WHERE flow = 'products' AND result = 'ok'"
                                        ).fetchone()[0]
            except sqlite3.Error:
                continue
        assert done >= len(NAMES), "the five pushes did not finish"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    assert proc.returncode == 0
    reads = _feed_reads(bo, 0, "/products")
    assert sum(reads.values()) == PRODUCTS // 500 + 1 and max(reads.values()) == 1, reads
    for name in NAMES:
        assert len({i["key"] for i in items_written(channels[name].requests_log(), "/v1/products")}) == PRODUCTS
