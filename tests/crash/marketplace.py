"""The back office and one marketplace channel, orders flow only: the scenario of the intake crash tests.

A test file describes its marketplace once (a `Marketplace`: simulator, config keys, secrets, how
its orders are seeded and, for a queue, how time passes between runs); the scenario is then started
from templates seeded once, crashed at failpoints in forked workers, converged and checked, or
ridden through a seeded fault storm. What the channel must be told, and when, stays in each file.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from syncagent.simulators import build
from syncagent.simulators.common import SimApp, serve_in_thread
from tests.crash.harness import (
    FORK,
    SCENARIO_PRODUCTS,
    converge_runs,
    count_points,
    first_creations,
    run_agent,
    stop_servers,
)
from tests.crash.test_fault_storm import identical_requests, storm
from tests.integration.harness import CANARY_SECRET, Sim

HTTP = "{max_attempts: 4, connect_timeout: 0.1, read_timeout: 0.3}"
SETTLE = 0.45  # connect_timeout + read_timeout of HTTP, and a little more
STORM_HTTP = "{max_attempts: 6, connect_timeout: 0.5, read_timeout: 0.15}"

CONFIG = """\
journal: {journal}
log: {{level: warning, format: text}}
backoffice:
  type: gestao-lojas
  base_url: {bo}
  client_id: ${{GL_CLIENT_ID}}
  client_secret: ${{GL_CLIENT_SECRET}}
  http: {http}
channels:
  - name: {channel}
    base_url: {url}
{keys}
    warehouses: [CD01, LJ01]
    order_warehouse: LJ01
    http: {http}
    flows:
      orders: {{every: 1m}}
"""


@dataclass(frozen=True)
class Marketplace:
    """What differs between marketplaces; module-level functions only, so that a crash job can be pickled."""

    system: str  # its simulator
    channel: str  # the channel's name in the config
    sim_options: dict[str, str]
    keys: dict[str, str]  # the channel's own config keys: type, credentials (as ${VAR}), mappings
    env: dict[str, str]  # the secrets those keys read
    secret: str  # must never reach the journal
    seed_orders: Callable[[Sim], None]
    later: Callable[[Sim], None] | None = None  # time passing between runs, for a queue that gives items back
    idle: Callable[[Sim], bool] | None = None  # nothing left for the agent in the channel (its queue empty)


@dataclass
class MarketScenario:
    market: Marketplace
    bo: Sim
    sim: Sim
    config: Path
    journal: Path
    linger: float = 0.0  # how long a request a fault made sleep may still be served

    def __enter__(self) -> MarketScenario:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        time.sleep(self.linger)  # such a request ends before its database closes
        stop_servers(self.bo, self.sim)

    def later(self) -> None:
        """Minutes pass between runs, as between real cycles (a no-op for a channel without a queue)."""
        if self.market.later is not None:
            self.market.later(self.sim)

    def created(self) -> list[dict[str, Any]]:
        """The back office's orders of this channel."""
        return [o for o in self.bo.admin("GET", "/_admin/orders")["items"] if o.get("channel") == self.market.channel]

    def first_creations(self) -> dict[str, float]:
        """Channel order id -> when the back office was first asked to create it."""
        return {str(external_id): at for (channel, external_id), at in first_creations(self.bo).items()
                if channel == self.market.channel}

    def assert_no_secret_kept(self) -> None:
        assert self.market.secret.encode() not in self.journal.read_bytes(), "a secret reached the journal"


def _back_office(path: Path) -> SimApp:
    return build("gestao-lojas", str(path), products=SCENARIO_PRODUCTS, seed=7, client_secret=CANARY_SECRET)


def _channel(market: Marketplace, path: Path) -> SimApp:
    return build(market.system, str(path), products=SCENARIO_PRODUCTS, seed=7, **market.sim_options)


def make_templates(market: Marketplace, directory: Path) -> Path:
    """Both simulator databases seeded once (the channel's orders through its admin routes); copied per case."""
    directory.mkdir(parents=True, exist_ok=True)
    bo = _back_office(directory / "bo.db")
    server = serve_in_thread(_channel(market, directory / "channel.db"))
    try:
        market.seed_orders(Sim(server))
    finally:
        server.stop()  # which closes the channel's database, folding its WAL into the file
    bo.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    bo.db.close()
    return directory


def start(market: Marketplace, templates: Path, workdir: Path, *, http: str = HTTP) -> MarketScenario:
    """Copies of the templates served on 127.0.0.1, and the agent's config for them."""
    workdir.mkdir(parents=True, exist_ok=True)
    for name in ("bo.db", "channel.db"):
        shutil.copy(templates / name, workdir / name)
    bo = Sim(serve_in_thread(_back_office(workdir / "bo.db")))
    sim = Sim(serve_in_thread(_channel(market, workdir / "channel.db")))
    journal, config = workdir / "journal.db", workdir / "syncagent.yaml"
    keys = "\n".join(f"    {key}: {value}" for key, value in market.keys.items())
    config.write_text(CONFIG.format(journal=journal, bo=bo.url, url=sim.url, http=http, channel=market.channel,
                                    keys=keys))
    return MarketScenario(market, bo, sim, config, journal)


def converge(scenario: MarketScenario, *, max_cycles: int = 4) -> int:
    """Clean runs, time passing before each, until one exits 0 with nothing in flight and the channel idle."""
    idle = scenario.market.idle
    return converge_runs(scenario.config, scenario.journal, env=scenario.market.env, max_cycles=max_cycles,
                         settle=SETTLE, before=scenario.later,
                         idle=None if idle is None else lambda: idle(scenario.sim))


def probe_points(market: Marketplace, templates: Path, workroot: Path) -> list[str]:
    """The failpoints a clean first run of the scenario passes, in order."""
    probe = start(market, templates, workroot / "probe")
    try:
        return count_points(probe.config, workroot, env=market.env)
    finally:
        probe.stop()


@dataclass(frozen=True)
class CrashJob:
    market: Marketplace
    templates: Path
    workdir: Path
    specs: list[str]  # failpoint specs, one crashed run each
    label: str
    check: Callable[[MarketScenario], object]  # the file's own checks once converged; module-level


def _crash_case(job: CrashJob) -> tuple[int, str | None]:
    """One case in a worker: a fresh scenario, each crashed run in turn, then convergence and the checks."""
    scenario = start(job.market, job.templates, job.workdir)
    try:
        for spec in job.specs:
            run_agent(scenario.config, spec, env=job.market.env)
        cycles = converge(scenario)
        job.check(scenario)
        return cycles, None
    except AssertionError as exc:
        return 0, f"{job.label}: {exc}"
    finally:
        scenario.stop()
        shutil.rmtree(job.workdir, ignore_errors=True)


def crash_at(market: Marketplace, templates: Path, workroot: Path, points: list[str], picks: list[int],
             check: Callable[[MarketScenario], object], *, workers: int = 2) -> list[int]:
    """A crash at each picked instant (1-based), each case in a forked worker; returns the runs each took."""
    jobs = [CrashJob(market, templates, workroot / f"k{k}", [f"crash-at:{k}"],
                     f"crash at point {k} ({points[k - 1]})", check) for k in picks]
    with FORK.Pool(max(1, min(workers, os.cpu_count() or 1))) as pool:
        results = pool.map(_crash_case, jobs, chunksize=1)
    errors = [e for _, e in results if e]
    assert not errors, errors[:5]
    return [c for c, _ in results]


class FaultStorm:
    """Seeded faults on both servers (lost answers of POST /orders on the back office), and runs through them."""

    def __init__(self, scenario: MarketScenario, seed: int) -> None:
        self.scenario = scenario
        self.worst = 0  # the most times one request was sent in one run
        self.cycles = 0  # the runs made so far
        scenario.linger = 0.3  # a request made to sleep (timeout_sleep) ends before the servers stop
        scenario.bo.admin("POST", "/_admin/faults", json=storm(seed, commit_then_fail=True))
        scenario.sim.admin("POST", "/_admin/faults", json=storm(seed + 1, commit_then_fail=False))

    def runs(self, cycles: int) -> Iterator[int]:
        """Up to `cycles` runs with backoff waits skipped, a settle time and `later` apart; yields after each."""
        scenario = self.scenario
        marks = {"bo": 0, "channel": 0}
        for cycle in range(1, cycles + 1):
            self.cycles = cycle
            if cycle > 1:
                time.sleep(1.0)  # at least the settle time of an order whose answer was lost
                scenario.later()  # and what a failed step read from a queue is given back
            run_agent(scenario.config, env={**scenario.market.env, "SYNCAGENT_TEST_NO_SLEEP": "1"}, timeout=120)
            for name, sim in (("bo", scenario.bo), ("channel", scenario.sim)):
                log = sim.requests_log(marks[name])
                self.worst = max(self.worst, identical_requests(log))
                marks[name] = log[-1]["id"] if log else marks[name]
            yield cycle

    def calm(self) -> dict[str, dict[str, int]]:
        """End the storm; returns the faults each server injected."""
        faults = {name: sim.admin("GET", "/_admin/faults")["counts"]
                  for name, sim in (("bo", self.scenario.bo), ("channel", self.scenario.sim))}
        for sim in (self.scenario.bo, self.scenario.sim):
            sim.admin("DELETE", "/_admin/faults")
        return faults
