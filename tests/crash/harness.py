"""Crash and fault harness: agents in forked children killed at failpoints, invariants checked after.

Simulators run in threads of the test process (they outlive every crash); each agent run is a
forked child so that a failpoint's abrupt exit (or a SIGKILL) hits a real process with no
cleanup, at the cost of a fork instead of a new interpreter.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sqlite3
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from syncagent import failpoints
from syncagent.agent import Agent, exit_code
from syncagent.config import load_config
from syncagent.simulators import build
from syncagent.simulators.common import serve_in_thread
from tests.integration.harness import CANARY_ENV, CANARY_KEY, CANARY_SECRET, CHANNEL, CONFIG, Sim, Sims

FORK = multiprocessing.get_context("fork")
SCENARIO_PRODUCTS = 40
SCENARIO_ORDERS = 20
SETTLE = 0.8  # connect_timeout + read_timeout of the scenario's back office, and a little more
CREDENTIALS = {"gestao-lojas": {"client_secret": CANARY_SECRET}, "sellerup": {"api_key": CANARY_KEY}}


@dataclass
class Scenario:
    sims: Sims
    config: Path
    journal: Path

    def stop(self) -> None:
        stop_servers(*(sim for sim in (self.sims.bo, self.sims.su, self.sims.su2) if sim is not None))


def stop_servers(*sims: Sim) -> None:
    """Stop servers at once, each woken by a connection so it need not wait out its poll interval."""
    stopping = [threading.Thread(target=sim.server.stop) for sim in sims]
    for thread in stopping:
        thread.start()
    while any(thread.is_alive() for thread in stopping):
        for sim in sims:
            try:
                socket.create_connection(("127.0.0.1", sim.server.port), timeout=0.1).close()
            except OSError:
                pass
        for thread in stopping:
            thread.join(0.01)


def make_templates(directory: Path) -> Path:
    """Seed the three simulator databases once; each scenario starts from a copy."""
    directory.mkdir(parents=True, exist_ok=True)
    specs = [("gestao-lojas", "bo.db", {}), ("sellerup", "su.db", {"orders": str(SCENARIO_ORDERS)}),
             ("sellerup", "su2.db", {"orders": str(SCENARIO_ORDERS)})]
    for system, name, options in specs:
        options = {**options, **CREDENTIALS[system]}
        app = build(system, str(directory / name), products=SCENARIO_PRODUCTS, seed=7, **options)
        app.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        app.db.close()
    return directory


def start_scenario(templates: Path, workdir: Path, *, secret_env: dict[str, str] | None = None,
                   http: str = "{max_attempts: 4, connect_timeout: 0.2, read_timeout: 0.5}") -> Scenario:
    workdir.mkdir(parents=True, exist_ok=True)
    sims = []
    for name in ("bo.db", "su.db", "su2.db"):
        shutil.copy(templates / name, workdir / name)
    for system, name in (("gestao-lojas", "bo.db"), ("sellerup", "su.db"), ("sellerup", "su2.db")):
        app = build(system, str(workdir / name), products=SCENARIO_PRODUCTS, seed=7, **CREDENTIALS[system])
        sims.append(Sim(serve_in_thread(app)))
    bo, su, su2 = sims
    flows = "\n".join(f"      {f}: {{every: 1m{', direction: both' if f == 'customers' else ''}}}" for f in (
        "orders", "order-events", "groups", "payment-methods", "sellers", "products", "prices", "stock", "customers"))
    channels = CHANNEL.format(name="loja-centro", url=su.url, flows=flows, safety=0)
    channels += CHANNEL.format(name="loja-norte", url=su2.url, flows=flows, safety=0)
    channels = channels.replace("{max_attempts: 3, connect_timeout: 2, read_timeout: 10}", http)
    journal = workdir / "journal.db"
    text = CONFIG.format(journal=journal, bo=bo.url, channels=channels)
    text = text.replace("{max_attempts: 3, connect_timeout: 2, read_timeout: 10}", http)
    config = workdir / "syncagent.yaml"
    config.write_text(text)
    return Scenario(Sims(bo, su, su2), config, journal)


def _child(config: str, spec: str | None, env: dict[str, str]) -> None:
    os.environ.update({**CANARY_ENV, **env})
    if spec:
        os.environ["SYNCAGENT_FAILPOINTS"] = spec
    else:
        os.environ.pop("SYNCAGENT_FAILPOINTS", None)
    failpoints.reset()
    no_wait = os.environ.get("SYNCAGENT_TEST_NO_SLEEP")
    logging.getLogger("syncagent").setLevel(logging.CRITICAL)
    code = 99
    try:  # with no_wait the HTTP backoff waits are skipped (the engine's own settle wait is kept)
        with Agent(load_config(config), sleep=(lambda seconds: None) if no_wait else None) as agent:
            code = exit_code(agent.run_once())
    except BaseException:  # an escaped exception is a bug the tests must see, not a crash to recover from
        traceback.print_exc()
    finally:
        os._exit(code)


def run_agent(config: Path, spec: str | None = None, *, env: dict[str, str] | None = None,
              kill_after: float | None = None, timeout: float = 120) -> int:
    """Run one `run --once` cycle in a forked child; optionally SIGKILL it after `kill_after` s."""
    pid = os.fork()
    if pid == 0:  # the child: never returns
        try:
            _child(str(config), spec, env or {})
        finally:
            os._exit(98)
    started = time.monotonic()
    killed = False
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        elapsed = time.monotonic() - started
        if kill_after is not None and not killed and elapsed >= kill_after:
            os.kill(pid, signal.SIGKILL)
            killed = True
        if elapsed > timeout:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError(f"agent did not finish within {timeout} s")
        time.sleep(0.002)


def count_points(config: Path, tmp: Path, *, env: dict[str, str] | None = None) -> list[str]:
    """The failpoints one clean run passes, in order: the instants a crash test can pick from."""
    log = tmp / "points.log"
    run_agent(config, f"count:{log}", env=env)
    return log.read_text().splitlines() if log.exists() else []


def converge(scenario: Scenario, *, max_cycles: int = 4, env: dict[str, str] | None = None) -> int:
    """Run clean cycles until one exits 0 and changes nothing; returns the cycles it took."""
    return converge_runs(scenario.config, scenario.journal, env=env, max_cycles=max_cycles)


def converge_runs(config: Path, journal: Path, *, env: dict[str, str] | None = None, max_cycles: int = 4,
                  settle: float = SETTLE, before: Callable[[], None] | None = None,
                  idle: Callable[[], bool] | None = None) -> int:
    """Clean runs until one exits 0 with nothing in flight (and `idle()` holds); returns the runs it took.

    `before` is called ahead of every run: time passing between real cycles, for a channel whose
    queue gives an item read by a dead run back only after a while.
    """
    code = None
    for cycle in range(1, max_cycles + 1):
        if before is not None:
            before()
        code = run_agent(config, env=env)
        in_flight = _journal_in_flight(journal)
        if code == 0 and not in_flight and (idle is None or idle()):
            return cycle
        if in_flight:
            time.sleep(settle)  # an order left `creating` is looked up only once its POST is this old
    raise AssertionError(f"no convergence within {max_cycles} cycles (last exit {code})")


def _journal_in_flight(journal: Path) -> int:
    conn = sqlite3.connect(journal)
    try:
        orders = conn.execute("SELECT count(*) FROM orders WHERE state IN ('creating', 'created', 'parked')").fetchone()[0]
        events = conn.execute("SELECT count(*) FROM events WHERE state = 'pending'").fetchone()[0]
        return int(orders + events)
    finally:
        conn.close()


def assert_created_once(keys: Iterable[Hashable]) -> Counter[Any]:
    """How many times the back office holds each order key; none may be there twice."""
    per_key = Counter(keys)
    duplicates = [k for k, n in per_key.items() if n > 1]
    assert not duplicates, f"orders created twice: {duplicates}"
    return per_key


def journal_health(journal: Path) -> set[tuple[str, str]]:
    """A sound journal with no order left in flight; returns the (channel, key) of orders quarantined."""
    conn = sqlite3.connect(journal)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        quarantined = {(c, k) for c, k in conn.execute(
            "SELECT channel, key FROM quarantine WHERE entity = 'orders' AND state = 'open'")}
        stuck = conn.execute("SELECT count(*) FROM orders WHERE state IN ('creating', 'created', 'parked')").fetchone()[0]
        assert stuck == 0, f"{stuck} orders stuck in flight"
        return quarantined
    finally:
        conn.close()


def first_creations(bo: Sim) -> dict[tuple[Any, Any], float]:
    """When the back office was first asked to create each (channel, external_id): what a channel is told after."""
    created_at: dict[tuple[Any, Any], float] = {}
    for r in bo.requests_log():
        if r["method"] == "POST" and r["path"] == "/orders" and r["body"]:
            body = json.loads(r["body"])
            created_at.setdefault((body.get("channel"), body.get("external_id")), r["ts"])
    return created_at


def check_invariants(scenario: Scenario, *, secrets: tuple[str, ...] = (CANARY_SECRET, CANARY_KEY)) -> dict[str, Any]:
    """The promises of DESIGN §4, checked from the simulators' state and request logs."""
    bo, channels = scenario.sims.bo, {"loja-centro": scenario.sims.su, "loja-norte": scenario.sims.su2}
    bo_orders = bo.admin("GET", "/_admin/orders")["items"]
    per_key = assert_created_once((o["channel"], o["external_id"]) for o in bo_orders)
    quarantined = journal_health(scenario.journal)
    created_at = first_creations(bo)
    numbers = {(o["channel"], o["external_id"]): o["number"] for o in bo_orders}
    approved = 0
    for name, sim in channels.items():
        for order in sim.admin("GET", "/_admin/orders")["items"]:
            key = (name, order["id"])
            if order["status"] == "approved":
                approved += 1
                assert key in per_key or key in quarantined, f"order lost: {key}"
            if order.get("exported"):
                assert order["backoffice_number"] == numbers[key], f"acknowledged with a wrong number: {key}"
        for r in sim.requests_log():
            if r["path"].endswith("/acknowledge") and r["status"] == 204:
                key = (name, r["path"].split("/")[3])
                assert key in created_at and r["ts"] > created_at[key], f"acknowledged before creation: {key}"
    for secret in secrets:
        raw = scenario.journal.read_bytes()
        assert secret.encode() not in raw, "a secret reached the journal"
    return {"orders": len(bo_orders), "approved": approved, "quarantined": len(quarantined)}


def _crash_case(job: tuple[Path, Path, list[str], list[str]]) -> tuple[int, str | None]:
    """One case in a worker: a fresh scenario, each crash spec in turn, then convergence and invariants."""
    templates, workdir, specs, labels = job
    scenario = start_scenario(templates, workdir)
    try:
        for spec in specs:
            if spec.startswith("kill-after:"):
                run_agent(scenario.config, kill_after=float(spec.split(":", 1)[1]))
            else:
                run_agent(scenario.config, spec)
        cycles = converge(scenario)
        check_invariants(scenario)
        return cycles, None
    except AssertionError as exc:
        return 0, f"{' then '.join(labels)}: {exc}"
    finally:
        scenario.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def run_cases(jobs: list[tuple[Path, Path, list[str], list[str]]], workers: int | None = None,
              ) -> list[tuple[int, str | None]]:
    """Run crash cases on every core: each worker is a forked process with its own simulators."""
    workers = workers or max(1, min(4, os.cpu_count() or 1))
    with FORK.Pool(workers) as pool:
        return pool.map(_crash_case, jobs, chunksize=1)


def wait_for(predicate: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def sampled(points: list[str], stride: int) -> list[int]:
    """The 1-based instants to crash at: every `stride`-th, and the first three of each kind of point."""
    firsts: dict[str, int] = {}
    chosen = set()
    for k, name in enumerate(points, start=1):
        firsts[name] = firsts.get(name, 0) + 1
        if k % max(1, stride) == 0 or firsts[name] <= 3:
            chosen.add(k)
    return sorted(chosen)
