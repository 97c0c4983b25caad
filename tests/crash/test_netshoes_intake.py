"""Netshoes order intake under crashes and faults: every approved shipping in the back office once, none lost.

The scenario: the back office simulator and a Netshoes store with approved orders (one of them
with two shippings, and one Zattini order the Netshoes channel must leave alone), the orders flow
only. Netshoes has no queue and no acknowledge call: every poll reads the approved shippings
again, so what a dead run left half done is met again and finished from the journal.
"""

from __future__ import annotations

import json
import shutil
import socket
import sqlite3
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from syncagent.simulators import build
from syncagent.simulators.common import serve_in_thread
from tests.crash.harness import FORK, SCENARIO_PRODUCTS, _journal_in_flight, run_agent
from tests.crash.test_fault_storm import identical_requests, storm
from tests.integration.harness import CANARY_SECRET, Sim

CHANNEL = "ns-loja"
CLIENT_ID = "netshoes-crash-app"
TOKEN = "netshoes-crash-token-9e2b"
ENV = {"NS_CLIENT": CLIENT_ID, "NS_TOKEN": TOKEN}
ORDERS = 4  # plus one of two shippings and one on Zattini
HTTP = "{max_attempts: 4, connect_timeout: 0.1, read_timeout: 0.3}"
SETTLE = 0.45  # connect_timeout + read_timeout of HTTP, and a little more
STORM_EXTRA = 16
STORM_HTTP = "{max_attempts: 6, connect_timeout: 0.5, read_timeout: 0.15}"
INTAKE_POINTS = ("order.before_create", "order.after_create", "journal.before_commit", "journal.after_commit")

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
    type: netshoes
    base_url: {ns}
    client_id: ${{NS_CLIENT}}
    access_token: ${{NS_TOKEN}}
    payment_method: PIX
    warehouses: [CD01, LJ01]
    order_warehouse: LJ01
    http: {http}
    flows:
      orders: {{every: 1m}}
"""


@dataclass
class NsScenario:
    bo: Sim
    ns: Sim
    config: Path
    journal: Path

    def stop(self) -> None:
        """Both servers at once, each woken by a connection so it need not wait out its poll interval."""
        stopping = [threading.Thread(target=sim.server.stop) for sim in (self.bo, self.ns)]
        for thread in stopping:
            thread.start()
        while any(thread.is_alive() for thread in stopping):
            for sim in (self.bo, self.ns):
                try:
                    socket.create_connection(("127.0.0.1", sim.server.port), timeout=0.1).close()
                except OSError:
                    pass
            for thread in stopping:
                thread.join(0.01)


def _ns(path: Path) -> Any:
    return build("netshoes", str(path), products=SCENARIO_PRODUCTS, seed=7, orders="0", client_id=CLIENT_ID,
                 access_token=TOKEN, rate_per_minute="0")


@pytest.fixture(scope="module")
def ns_templates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("ns-templates")
    bo = build("gestao-lojas", str(directory / "bo.db"), products=SCENARIO_PRODUCTS, seed=7,
               client_secret=CANARY_SECRET)
    server = serve_in_thread(_ns(directory / "ns.db"))
    try:
        ns = Sim(server)
        ns.admin("POST", "/_admin/orders", json={"count": ORDERS, "businessUnit": "NS"})
        ns.admin("POST", "/_admin/orders", json={"shippings": 2, "businessUnit": "NS"})
        ns.admin("POST", "/_admin/orders", json={"businessUnit": "ZT"})
    finally:
        server.stop()
    bo.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    bo.db.close()
    return directory


def start(templates: Path, workdir: Path, *, http: str = HTTP) -> NsScenario:
    workdir.mkdir(parents=True, exist_ok=True)
    for name in ("bo.db", "ns.db"):
        shutil.copy(templates / name, workdir / name)
    bo = Sim(serve_in_thread(build("gestao-lojas", str(workdir / "bo.db"), products=SCENARIO_PRODUCTS, seed=7,
                                   client_secret=CANARY_SECRET)))
    ns = Sim(serve_in_thread(_ns(workdir / "ns.db")))
    journal, config = workdir / "journal.db", workdir / "syncagent.yaml"
    config.write_text(CONFIG.format(journal=journal, bo=bo.url, ns=ns.url, http=http, channel=CHANNEL))
    return NsScenario(bo, ns, config, journal)


def converge(scenario: NsScenario, *, max_cycles: int = 4) -> int:
    code = None
    for cycle in range(1, max_cycles + 1):
        code = run_agent(scenario.config, env=ENV)
        in_flight = _journal_in_flight(scenario.journal)
        if code == 0 and not in_flight:
            return cycle
        if in_flight:
            time.sleep(SETTLE)  # an order left `creating` is looked up only once its POST is this old
    raise AssertionError(f"no convergence within {max_cycles} cycles (last exit {code})")


def check_intake(scenario: NsScenario) -> dict[str, int]:
    """No duplicate, no approved NS shipping lost, no Zattini order taken, nothing stuck, no secret kept."""
    bo_orders = [o for o in scenario.bo.admin("GET", "/_admin/orders")["items"] if o.get("channel") == CHANNEL]
    per_key = Counter(o["external_id"] for o in bo_orders)
    duplicates = [k for k, n in per_key.items() if n > 1]
    assert not duplicates, f"orders created twice: {duplicates}"
    conn = sqlite3.connect(scenario.journal)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        quarantined = {k for (k,) in conn.execute(
            "SELECT key FROM quarantine WHERE entity = 'orders' AND state = 'open'")}
        stuck = conn.execute("SELECT count(*) FROM orders WHERE state IN ('creating', 'created', 'parked')"
                             ).fetchone()[0]
        assert stuck == 0, f"{stuck} orders stuck in flight"
    finally:
        conn.close()
    shippings = {o["businessUnit"]: [] for o in scenario.ns.admin("GET", "/_admin/orders")["items"]}
    for order in scenario.ns.admin("GET", "/_admin/orders")["items"]:
        shippings[order["businessUnit"]] += [f"{order['orderNumber']}-{s['shippingCode']}" for s in order["shippings"]]
    for key in shippings["NS"]:
        assert key in per_key or key in quarantined, f"shipping lost: {key}"
    assert not set(shippings.get("ZT", [])) & set(per_key), "a Zattini order imported by the Netshoes channel"
    assert TOKEN.encode() not in scenario.journal.read_bytes(), "a secret reached the journal"
    return {"orders": len(bo_orders), "shippings": len(shippings["NS"]), "quarantined": len(quarantined)}


def _crash_case(job: tuple[Path, Path, str, str]) -> tuple[int, str | None]:
    templates, workdir, spec, label = job
    scenario = start(templates, workdir)
    try:
        run_agent(scenario.config, spec, env=ENV)
        cycles = converge(scenario)
        check_intake(scenario)
        return cycles, None
    except AssertionError as exc:
        return 0, f"{label}: {exc}"
    finally:
        scenario.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _points(templates: Path, workroot: Path) -> list[str]:
    probe = start(templates, workroot / "probe")
    try:
        log = workroot / "points.log"
        run_agent(probe.config, f"count:{log}", env=ENV)
        return log.read_text().splitlines() if log.exists() else []
    finally:
        probe.stop()


def _crash_at(templates: Path, workroot: Path, picks: list[int], points: list[str]) -> None:
    jobs = [(templates, workroot / f"k{k}", f"crash-at:{k}", f"crash at point {k} ({points[k - 1]})") for k in picks]
    with FORK.Pool(2) as pool:
        results = pool.map(_crash_case, jobs, chunksize=1)
    errors = [e for _, e in results if e]
    assert not errors, errors[:5]


def test_clean_run_imports_every_approved_shipping_once(ns_templates: Path, workroot: Path) -> None:
    scenario = start(ns_templates, workroot / "clean")
    try:
        assert run_agent(scenario.config, env=ENV) == 0
        assert check_intake(scenario) == {"orders": ORDERS + 2, "shippings": ORDERS + 2, "quarantined": 0}
        mark = scenario.bo.last_request_id()
        assert run_agent(scenario.config, env=ENV) == 0  # read again next poll: nothing created twice
        assert not [r for r in scenario.bo.writes(mark) if r["path"] == "/orders"]
    finally:
        scenario.stop()


def test_crash_at_the_first_and_last_of_each_kind_of_point_then_converge(ns_templates: Path, workroot: Path) -> None:
    points = _points(ns_templates, workroot)
    missing = [name for name in INTAKE_POINTS if name not in points]
    assert not missing, f"the scenario never reaches {missing}"
    # the first and the last instant of every kind of point (the whole sweep is the slow test below)
    picks = sorted({k for name in set(points) for k in (points.index(name) + 1,
                                                         len(points) - points[::-1].index(name))})
    _crash_at(ns_templates, workroot, picks, points)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_crash_at_every_intake_point_then_converge(ns_templates: Path, workroot: Path) -> None:
    points = _points(ns_templates, workroot)
    _crash_at(ns_templates, workroot, list(range(1, len(points) + 1)), points)


@pytest.mark.timeout(300)
def test_netshoes_intake_converges_through_a_fault_storm(ns_templates: Path, workroot: Path) -> None:
    seed = 6161
    scenario = start(ns_templates, workroot / "storm", http=STORM_HTTP)
    try:
        scenario.ns.admin("POST", "/_admin/orders", json={"count": STORM_EXTRA, "businessUnit": "NS"})
        scenario.bo.admin("POST", "/_admin/faults", json=storm(seed, commit_then_fail=True))
        scenario.ns.admin("POST", "/_admin/faults", json=storm(seed + 1, commit_then_fail=False))
        total = ORDERS + 2 + STORM_EXTRA
        marks = {"bo": 0, "ns": 0}
        worst = cycles = 0
        for cycle in range(1, 7):
            cycles = cycle
            if cycle > 1:
                time.sleep(1.0)  # at least the settle time of an order whose answer was lost
            run_agent(scenario.config, env={**ENV, "SYNCAGENT_TEST_NO_SLEEP": "1"}, timeout=120)
            for name, sim in (("bo", scenario.bo), ("ns", scenario.ns)):
                log = sim.requests_log(marks[name])
                worst = max(worst, identical_requests(log))
                marks[name] = log[-1]["id"] if log else marks[name]
            created = len([o for o in scenario.bo.admin("GET", "/_admin/orders")["items"] if o["channel"] == CHANNEL])
            if _journal_in_flight(scenario.journal) == 0 and created >= total:
                break
        else:
            pytest.fail(f"not converged after 6 cycles: {created}/{total} created")
        faults = {name: sim.admin("GET", "/_admin/faults")["counts"] for name, sim in (("bo", scenario.bo),
                                                                                       ("ns", scenario.ns))}
        for sim in (scenario.bo, scenario.ns):
            sim.admin("DELETE", "/_admin/faults")
        figures = check_intake(scenario)
        assert figures == {"orders": total, "shippings": total, "quarantined": 0}
        assert faults["bo"].get("commit_500", 0) + faults["bo"].get("commit_drop", 0) > 0
        assert worst <= 6 + 1, f"a request was sent {worst} times in one cycle"
        print(f"Netshoes intake fault storm (seed {seed}): {total} shippings converged in {cycles} cycles, "
              f"0 duplicates; faults injected: {json.dumps(faults, sort_keys=True)}")
    finally:
        time.sleep(0.3)  # a request the storm made sleep (timeout_sleep) ends before its database closes
        scenario.stop()
