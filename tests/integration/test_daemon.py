"""The daemon over real HTTP: fairness between channels, SIGTERM mid-push, SIGHUP reload.

tests/integration/test_cli.py already covers the plain cases (steps repeat on their interval,
SIGTERM exits 0, a second agent exits 3); these add what happens *during* a long push.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from syncagent.agent import Agent
from syncagent.config import load_config
from syncagent.engine import StepResult
from syncagent.journal import Journal
from syncagent.scheduler import Daemon
from tests.integration.harness import CHANNEL, CONFIG, ROOT, Sim, Sims, cli, items_written, start

PRODUCTS = 1200  # three back office pages of 500


def config_text(tmp_path: Path, bo: Sim, channels: list[tuple[str, Sim, dict[str, str]]]) -> str:
    """A config with the given channels, each with its own flows ({flow: "every: 1s, batch_size: 50"})."""
    blocks = ""
    for name, sim, flows in channels:
        lines = "\n".join(f"      {flow}: {{{spec}}}" for flow, spec in flows.items())
        blocks += CHANNEL.format(name=name, url=sim.url, flows=lines, safety=0)
    return CONFIG.format(journal=tmp_path / "journal.db", bo=bo.url, channels=blocks)


def wait_for(what: str, cond: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def product_puts(sim: Sim, after: int = 0) -> list[dict[str, Any]]:
    return [r for r in sim.requests_log(after) if r["method"] == "PUT" and r["path"] == "/v1/products"]


@pytest.fixture
def big_sims(tmp_path: Path, sims: Sims) -> Iterator[Sims]:
    """A back office with a catalogue of three pages, and a second Seller Up store."""
    sims.bo.server.stop()
    bo = start("gestao-lojas", tmp_path / "bo-big.db", products=PRODUCTS)
    su2 = start("sellerup", tmp_path / "su2.db")
    yield Sims(bo, sims.su, su2)
    su2.server.stop()
    bo.server.stop()


@pytest.fixture
def daemon_proc() -> Iterator[Callable[[Path], subprocess.Popen[str]]]:
    """`syncagent run` as a child process; killed at the end if a test left it running."""
    procs: list[subprocess.Popen[str]] = []

    def spawn(config: Path) -> subprocess.Popen[str]:
        proc = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "syncagent", "-c", str(config), "run"], cwd=ROOT, env=dict(os.environ),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        procs.append(proc)
        return proc

    yield spawn
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    """SIGTERM, then the exit code (within 10 s) and stderr, echoed for the fixture's secret scan."""
    proc.send_signal(signal.SIGTERM)
    started = time.monotonic()
    out, err = proc.communicate(timeout=15)
    took = time.monotonic() - started
    sys.stdout.write(out)
    sys.stderr.write(err)
    assert took < 10, f"the daemon took {took:.1f} s to stop"
    return proc.returncode, err


def test_a_slow_channel_does_not_hold_back_the_other_channels_orders(big_sims: Sims, tmp_path: Path) -> None:
    sims = big_sims
    assert sims.su2 is not None
    slow, fast = sims.su2, sims.su
    slow.admin("POST", "/_admin/faults", json={"latency_ms": 120})  # every call to the slow store lags
    path = tmp_path / "syncagent.yaml"
    path.write_text(config_text(tmp_path, sims.bo, [
        ("loja-centro", fast, {"orders": "every: 0.5"}),
        ("loja-norte", slow, {"products": "every: 1h, batch_size: 50"}),
    ]))
    results: list[tuple[float, StepResult]] = []
    with Agent(load_config(path)) as agent:
        daemon = Daemon(agent)

        def record(result: StepResult) -> None:
            results.append((time.time(), result))
            if result.channel == "loja-norte" and not result.details.get("yielded"):
                daemon.request_stop()  # the slow push reached the end of the feed
            if time.monotonic() - began > 60:
                daemon.request_stop()

        daemon.on_result = record
        began = time.monotonic()
        daemon.run()
        recorded = agent.journal.count_sent("loja-norte", "products")

    puts = product_puts(slow)
    first_put, last_put = puts[0]["ts"], puts[-1]["ts"]
    order_reads = [r["ts"] for r in fast.requests_log() if r["method"] == "GET" and r["path"] == "/v1/orders"]
    during = [ts for ts in order_reads if first_put < ts < last_put]
    assert len(during) >= 2, "the fast channel's orders step waited for the slow channel's whole push"
    slow_runs = [r for _, r in results if r.channel == "loja-norte"]
    assert len(slow_runs) >= 2 and slow_runs[0].details.get("yielded"), "the slow push never gave way"
    assert slow_runs[-1].status == "ok" and not slow_runs[-1].details.get("yielded")
    # the interrupted push went on right after the fast step, not an hour (its interval) later
    assert last_put - first_put < 30
    keys = [item["key"] for item in items_written(slow.requests_log(), "/v1/products")]
    assert len(keys) == len(set(keys)) == PRODUCTS == recorded, "every product sent exactly once"
    assert sum(r.sent for r in slow_runs) == PRODUCTS


def test_sigterm_during_a_long_push_records_the_pages_sent_and_run_once_sends_only_the_rest(
        big_sims: Sims, tmp_path: Path, daemon_proc: Callable[[Path], subprocess.Popen[str]]) -> None:
    sims = big_sims
    sims.su.admin("POST", "/_admin/faults", json={"latency_ms": 100})
    path = tmp_path / "syncagent.yaml"
    path.write_text(config_text(tmp_path, sims.bo, [("loja-centro", sims.su, {"products": "every: 1h, batch_size: 50"})]))
    proc = daemon_proc(path)
    wait_for("the push to pass its first page", lambda: len(product_puts(sims.su)) >= 12)
    code, err = stop(proc)
    assert code == 0, err
    sent_before = [item["key"] for item in items_written(sims.su.requests_log(), "/v1/products")]
    with Journal(tmp_path / "journal.db", lock=False, readonly=True) as journal:
        recorded = journal.count_sent("loja-centro", "products")
    assert 0 < recorded < PRODUCTS, "the daemon should have stopped mid-push"
    assert recorded == len(set(sent_before)) == len(sent_before), "every batch sent before the stop is recorded"

    sims.su.admin("DELETE", "/_admin/faults")
    mark = sims.su.last_request_id()
    again = cli(path, "run", "--once", "--json")
    assert again.returncode == 0, again.stdout + again.stderr
    rest = [item["key"] for item in items_written(sims.su.requests_log(mark), "/v1/products")]
    assert len(rest) == PRODUCTS - recorded and not set(rest) & set(sent_before), "only the rest is sent"
    assert json.loads(again.stdout)[0]["sent"] == len(rest)


def test_sighup_applies_a_changed_config_without_a_restart(
        sims: Sims, tmp_path: Path, daemon_proc: Callable[[Path], subprocess.Popen[str]]) -> None:
    path = tmp_path / "syncagent.yaml"
    path.write_text(config_text(tmp_path, sims.bo, [("loja-centro", sims.su, {"orders": "every: 1h"})]))
    proc = daemon_proc(path)
    wait_for("the first orders step", lambda: any(r["path"] == "/v1/orders" for r in sims.su.requests_log()))
    lock = (tmp_path / "journal.db.lock").read_text()
    assert lock == str(proc.pid)
    # an operator enables a flow and shortens an interval, then reloads
    path.write_text(config_text(tmp_path, sims.bo, [("loja-centro", sims.su, {
        "orders": "every: 1s", "payment-methods": "every: 1s"})]))
    mark = sims.su.last_request_id()
    proc.send_signal(signal.SIGHUP)
    wait_for("the newly enabled flow to run", lambda: items_written(sims.su.requests_log(mark),
                                                                    "/v1/payment-methods"))
    wait_for("orders on the new 1 s interval", lambda: len([
        r for r in sims.su.requests_log(mark) if r["method"] == "GET" and r["path"] == "/v1/orders"]) >= 3)
    assert proc.poll() is None
    assert (tmp_path / "journal.db.lock").read_text() == str(proc.pid), "the same process kept the journal lock"
    code, err = stop(proc)
    assert code == 0, err
    assert "configuration reloaded" in err


def test_sighup_with_a_broken_config_logs_file_and_line_and_keeps_syncing(
        sims: Sims, tmp_path: Path, daemon_proc: Callable[[Path], subprocess.Popen[str]]) -> None:
    path = tmp_path / "syncagent.yaml"
    good = config_text(tmp_path, sims.bo, [("loja-centro", sims.su, {"orders": "every: 1s"})])
    path.write_text(good)
    proc = daemon_proc(path)
    wait_for("the first orders step", lambda: any(r["path"] == "/v1/orders" for r in sims.su.requests_log()))
    broken = good.replace("orders: {every: 1s}", "orders: {every: soon}")
    line = next(i for i, text in enumerate(broken.splitlines(), 1) if "every: soon" in text)
    path.write_text(broken)
    proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    mark = sims.su.last_request_id()
    wait_for("orders to go on with the old config", lambda: len([
        r for r in sims.su.requests_log(mark) if r["method"] == "GET" and r["path"] == "/v1/orders"]) >= 2)
    assert proc.poll() is None, "a broken config must not stop the daemon"
    code, err = stop(proc)
    assert code == 0, err
    assert f"{path}:{line}: " in err and "every" in err, err
    assert "previous configuration" in err
