"""SkyHub order intake under crashes and faults: no duplicate, no loss, never deleted from the queue before creation.

The scenario: the back office simulator and a SkyHub store whose order queue holds PAID paid orders
and one unpaid order, the orders flow only. The queue answers its head until the head is deleted
(API.md L99-103, the simulator's "head" reading); an order read and not deleted for 5 minutes goes
to the back of the queue. Between runs the SkyHub simulator's clock is moved past those 5 minutes,
as the minutes between real cycles would.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
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

PAID = 3
CHANNEL = "skyhub-loja"
EMAIL = "crash@exemplo.com.br"
API_KEY = "skyhub-crash-key-9c1e"
ACCOUNT_KEY = "skyhub-crash-accountmanager-41"
ENV = {"SKY_API_KEY": API_KEY, "SKY_ACCOUNT_KEY": ACCOUNT_KEY}
HTTP = "{max_attempts: 4, connect_timeout: 0.1, read_timeout: 0.3}"
SETTLE = 0.45  # connect_timeout + read_timeout of HTTP, and a little more
STORM_EXTRA = 8  # more paid orders in the storm, so that some POST /orders are committed then failed
STORM_HTTP = "{max_attempts: 6, connect_timeout: 0.5, read_timeout: 0.15}"
INTAKE_POINTS = ("order.before_create", "order.after_create", "ack.before_send", "ack.after_send",
                 "journal.before_commit", "journal.after_commit")
SIM_OPTIONS = {"email": EMAIL, "api_key": API_KEY, "account_manager_key": ACCOUNT_KEY, "rate_limits": "0"}

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
    type: skyhub
    base_url: {sky}
    email: {email}
    api_key: ${{SKY_API_KEY}}
    account_manager_key: ${{SKY_ACCOUNT_KEY}}
    warehouses: [CD01, LJ01]
    order_warehouse: LJ01
    http: {http}
    flows:
      orders: {{every: 1m}}
"""


@dataclass
class SkyScenario:
    bo: Sim
    sky: Sim
    config: Path
    journal: Path

    def stop(self) -> None:
        self.sky.server.stop()
        self.bo.server.stop()

    def later(self) -> None:
        """Time passes between runs: an order read and not deleted for 5 minutes is queued again."""
        self.sky.admin("POST", "/_admin/clock", json={"advance": 301})


def make_templates(directory: Path) -> Path:
    """A back office and a SkyHub store with PAID paid orders and one unpaid, seeded once, copied per case."""
    directory.mkdir(parents=True, exist_ok=True)
    bo = build("gestao-lojas", str(directory / "bo.db"), products=SCENARIO_PRODUCTS, seed=7,
               client_secret=CANARY_SECRET)
    server = serve_in_thread(build("skyhub", str(directory / "sky.db"), products=SCENARIO_PRODUCTS, seed=7,
                                   **SIM_OPTIONS))
    try:
        sky = Sim(server)
        sky.admin("POST", "/_admin/orders", json={"count": PAID - 1})
        sky.admin("POST", "/_admin/orders", json={"status": "book_product"})  # unpaid: consumed, never imported
        sky.admin("POST", "/_admin/orders", json={"count": 1})
    finally:
        server.stop()
    bo.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    bo.db.close()
    return directory


def start(templates: Path, workdir: Path, *, http: str = HTTP) -> SkyScenario:
    workdir.mkdir(parents=True, exist_ok=True)
    for name in ("bo.db", "sky.db"):
        shutil.copy(templates / name, workdir / name)
    bo = Sim(serve_in_thread(build("gestao-lojas", str(workdir / "bo.db"), products=SCENARIO_PRODUCTS, seed=7,
                                   client_secret=CANARY_SECRET)))
    sky = Sim(serve_in_thread(build("skyhub", str(workdir / "sky.db"), products=SCENARIO_PRODUCTS, seed=7,
                                    **SIM_OPTIONS)))
    journal, config = workdir / "journal.db", workdir / "syncagent.yaml"
    config.write_text(CONFIG.format(journal=journal, bo=bo.url, sky=sky.url, http=http, channel=CHANNEL,
                                    email=EMAIL))
    return SkyScenario(bo, sky, config, journal)


def converge(scenario: SkyScenario, *, max_cycles: int = 4) -> int:
    """Clean runs, each 5 minutes (simulated) after the last, until one exits 0 with nothing in flight or queued."""
    code = None
    for cycle in range(1, max_cycles + 1):
        scenario.later()
        code = run_agent(scenario.config, env=ENV)
        in_flight = _journal_in_flight(scenario.journal)
        if code == 0 and not in_flight and not _queued(scenario):
            return cycle
        if in_flight:
            time.sleep(SETTLE)  # an order left `creating` is looked up only once its POST is this old
    raise AssertionError(f"no convergence within {max_cycles} cycles (last exit {code})")


def _queued(scenario: SkyScenario) -> list[str]:
    return [i["code"] for i in scenario.sky.admin("GET", "/_admin/queue")["items"]]


def check_intake(scenario: SkyScenario) -> dict[str, Any]:
    """No duplicate, no loss, no DELETE from the queue of a paid order before the back office created it."""
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
    created_at: dict[str, float] = {}
    for r in scenario.bo.requests_log():
        if r["method"] == "POST" and r["path"] == "/orders" and r["body"]:
            body = json.loads(r["body"])
            if body.get("channel") == CHANNEL:
                created_at.setdefault(str(body.get("external_id")), r["ts"])
    sky_orders = scenario.sky.admin("GET", "/_admin/orders")["items"]
    paid = {o["code"] for o in sky_orders if o["status"]["type"] == "APPROVED"}
    unpaid = {o["code"] for o in sky_orders} - paid
    for code in paid:
        assert code in per_key or code in quarantined, f"order lost: {code}"
    assert not unpaid & set(per_key), "an unpaid order was imported"
    deleted = 0
    for r in scenario.sky.requests_log():
        if r["method"] == "DELETE" and r["path"].startswith("/queues/orders/") and r["status"] == 204:
            code = r["path"].split("/", 3)[3].replace("%20", " ")
            deleted += 1
            if code in paid:
                assert code in created_at and r["ts"] > created_at[code], \
                    f"deleted from the queue before the back office had the order: {code}"
    left = [c for c in _queued(scenario) if c not in quarantined]
    assert not left, f"queue items of handled orders never deleted: {left}"
    assert API_KEY.encode() not in scenario.journal.read_bytes(), "a secret reached the journal"
    return {"orders": len(bo_orders), "paid": len(paid), "quarantined": len(quarantined), "deleted": deleted}


def _crash_case(job: tuple[Path, Path, list[str], str]) -> tuple[int, str | None]:
    templates, workdir, specs, label = job
    scenario = start(templates, workdir)
    try:
        for spec in specs:
            run_agent(scenario.config, spec, env=ENV)
        cycles = converge(scenario)
        check_intake(scenario)
        return cycles, None
    except AssertionError as exc:
        return 0, f"{label}: {exc}"
    finally:
        scenario.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def sky_templates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_templates(tmp_path_factory.mktemp("skyhub-templates"))


def _points(templates: Path, workroot: Path) -> list[str]:
    probe = start(templates, workroot / "probe")
    try:
        log = workroot / "points.log"
        run_agent(probe.config, f"count:{log}", env=ENV)
        return log.read_text().splitlines() if log.exists() else []
    finally:
        probe.stop()


def _crash_every(templates: Path, workroot: Path, points: list[str], chosen: list[int]) -> list[int]:
    jobs = [(templates, workroot / f"k{k}", [f"crash-at:{k}"], f"crash at point {k} ({points[k - 1]})")
            for k in chosen]
    with FORK.Pool(max(1, min(2, os.cpu_count() or 1))) as pool:
        results = pool.map(_crash_case, jobs, chunksize=1)
    errors = [e for _, e in results if e]
    assert not errors, errors[:5]
    return [c for c, _ in results]


def test_clean_run_imports_every_paid_order_once_and_empties_the_queue(sky_templates: Path, workroot: Path) -> None:
    scenario = start(sky_templates, workroot / "clean")
    try:
        assert run_agent(scenario.config, env=ENV) == 0
        assert check_intake(scenario) == {"orders": PAID, "paid": PAID, "quarantined": 0, "deleted": PAID + 1}
    finally:
        scenario.stop()


@pytest.mark.timeout(300)
def test_crash_at_every_intake_point_of_the_first_order_then_converge(sky_templates: Path, workroot: Path) -> None:
    """The sampled version kept in `make test`: every failpoint until the first order is acknowledged."""
    points = _points(sky_templates, workroot)
    missing = [name for name in INTAKE_POINTS if name not in points]
    assert not missing, f"the scenario never reaches {missing}"
    # the first buyer's creation, then every point from the first order's POST to the commit of its page
    buyer = points.index("customer.before_create") + 1
    start, end = points.index("order.before_create") + 1, points.index("ack.after_send") + 5
    _crash_every(sky_templates, workroot, points, [buyer, buyer + 1, *range(start, end + 1)])


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_crash_at_every_intake_point_then_converge(sky_templates: Path, workroot: Path) -> None:
    points = _points(sky_templates, workroot)
    cycles = _crash_every(sky_templates, workroot, points, list(range(1, len(points) + 1)))
    print(f"SkyHub intake, every-point crash: {len(points)} points, no duplicate, no loss, no early delete; "
          f"cycles to converge max {max(cycles)}")


def test_a_kill_between_creation_and_delete_leaves_the_order_queued_then_deleted_once(sky_templates: Path,
                                                                                       workroot: Path) -> None:
    scenario = start(sky_templates, workroot / "between")
    try:
        run_agent(scenario.config, "crash:order.after_create", env=ENV)
        created = [o["external_id"] for o in scenario.bo.admin("GET", "/_admin/orders")["items"]
                   if o.get("channel") == CHANNEL]
        assert len(created) == 1 and created[0] in _queued(scenario)  # created, and still in the queue
        converge(scenario)
        figures = check_intake(scenario)
        assert figures["orders"] == PAID and not _queued(scenario)
    finally:
        scenario.stop()


@pytest.mark.timeout(300)
def test_skyhub_intake_converges_through_a_fault_storm(sky_templates: Path, workroot: Path) -> None:
    seed = 6161
    scenario = start(sky_templates, workroot / "storm", http=STORM_HTTP)
    total = PAID + STORM_EXTRA
    try:
        scenario.sky.admin("POST", "/_admin/orders", json={"count": STORM_EXTRA})
        scenario.bo.admin("POST", "/_admin/faults", json=storm(seed, commit_then_fail=True))
        scenario.sky.admin("POST", "/_admin/faults", json=storm(seed + 1, commit_then_fail=False))
        marks = {"bo": 0, "sky": 0}
        worst = created = 0
        for cycle in range(1, 9):
            if cycle > 1:
                time.sleep(1.0)  # at least the settle time of an order whose answer was lost
                scenario.later()
            run_agent(scenario.config, env={**ENV, "SYNCAGENT_TEST_NO_SLEEP": "1"}, timeout=120)
            for name, sim in (("bo", scenario.bo), ("sky", scenario.sky)):
                log = sim.requests_log(marks[name])
                worst = max(worst, identical_requests(log))
                marks[name] = log[-1]["id"] if log else marks[name]
            created = len([o for o in scenario.bo.admin("GET", "/_admin/orders")["items"]
                           if o.get("channel") == CHANNEL])
            if not _journal_in_flight(scenario.journal) and created >= total and not _queued(scenario):
                break
        else:
            pytest.fail(f"not converged after 8 cycles: {created}/{total} created, queue {_queued(scenario)}")
        faults = {name: sim.admin("GET", "/_admin/faults")["counts"]
                  for name, sim in (("bo", scenario.bo), ("sky", scenario.sky))}
        for sim in (scenario.bo, scenario.sky):
            sim.admin("DELETE", "/_admin/faults")
        figures = check_intake(scenario)
        assert figures["paid"] == total and figures["orders"] == total
        assert faults["bo"].get("commit_500", 0) + faults["bo"].get("commit_drop", 0) > 0
        assert worst <= 6 + 1, f"a request was sent {worst} times in one cycle"
    finally:
        time.sleep(0.3)  # a request the storm made sleep (timeout_sleep) ends before its database closes
        scenario.stop()
