"""Order intake of the marketplace hubs (Plugg.to, Via) under crashes and a fault storm.

No duplicate in the back office, no approved order lost, and the channel told (Plugg.to: our number
in the order's `external`) only after the back office has the order. Small on purpose: one crash
at the first instant of each kind the intake reaches (not every instant, which the Seller Up and
VTEX suites cover for the engine), and one seeded storm.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from syncagent.simulators import build
from syncagent.simulators.common import serve_in_thread
from tests.crash.harness import FORK, SCENARIO_PRODUCTS, _journal_in_flight, run_agent
from tests.crash.test_fault_storm import identical_requests, storm
from tests.integration.harness import CANARY_SECRET, Sim

APPROVED, PENDING = 8, 2
HTTP = "{max_attempts: 4, connect_timeout: 0.1, read_timeout: 0.3}"
STORM_HTTP = "{max_attempts: 6, connect_timeout: 0.5, read_timeout: 0.15}"
SETTLE = 0.45
POINTS = ("order.before_create", "order.after_create", "ack.before_send", "ack.after_send",
          "journal.before_commit", "journal.after_commit")  # Via's acknowledgement is a no-op, its points still pass
HUB_SECRET = "hub-crash-secret-5c1e"

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
  - name: hub
    base_url: {hub}
{channel}
    warehouses: [CD01, LJ01]
    order_warehouse: LJ01
    http: {http}
    flows:
      orders: {{every: 1m}}
"""


@dataclass(frozen=True)
class Hub:
    system: str
    sim_options: dict[str, str]
    channel: str  # its type and credential lines of the config
    seed_orders: Callable[[Sim], None]
    orders: Callable[[Sim], list[dict[str, Any]]]  # every order the channel holds, as {id, status, acked}
    acks: Callable[[Sim], dict[str, float]]  # order id -> when the channel was told (its request's time)


def _pluggto_seed(sim: Sim) -> None:
    sim.admin("POST", "/_admin/orders", json={"count": APPROVED})
    sim.admin("POST", "/_admin/orders", json={"count": PENDING, "status": "pending"})


def _pluggto_orders(sim: Sim) -> list[dict[str, Any]]:
    return [{"id": o["id"], "status": o["status"], "acked": o["external"] is not None}
            for o in sim.admin("GET", "/_admin/orders")["items"]]


def _pluggto_acks(sim: Sim) -> dict[str, float]:
    acks: dict[str, float] = {}
    for r in sim.requests_log():
        if r["method"] == "PUT" and r["path"].startswith("/orders/") and r["status"] == 200 and \
                "external" in json.loads(r["body"] or "{}"):
            acks.setdefault(r["path"].split("/")[2], r["ts"])
    return acks


def _via_seed(sim: Sim) -> None:
    sim.admin("POST", "/_admin/orders", json={"count": APPROVED})
    sim.admin("POST", "/_admin/orders", json={"count": PENDING, "status": "NEW"})


def _via_orders(sim: Sim) -> list[dict[str, Any]]:
    # Via has no acknowledge call (API.md L79): nothing to tell, so nothing told early
    return [{"id": o["id"], "status": "approved" if o["status"] == "APR" else o["status"], "acked": True}
            for o in sim.admin("GET", "/_admin/orders")["items"]]


HUBS = {
    "pluggto": Hub("pluggto", {"client_id": "crash-app", "client_secret": HUB_SECRET, "api_user": "crash-seller",
                               "api_password": HUB_SECRET, "orders": "0"},
                   "    type: pluggto\n    client_id: crash-app\n    client_secret: ${HUB_SECRET}\n"
                   "    api_user: crash-seller\n    api_password: ${HUB_SECRET}",
                   _pluggto_seed, _pluggto_orders, _pluggto_acks),
    "via": Hub("via", {"client_id": "crash-client", "access_token": HUB_SECRET, "orders": "0"},
               "    type: via\n    client_id: crash-client\n    access_token: ${HUB_SECRET}\n    category_id: 100",
               _via_seed, _via_orders, lambda sim: {}),
}
ENV = {"HUB_SECRET": HUB_SECRET}


@dataclass
class Scenario:
    hub: Hub
    bo: Sim
    sim: Sim
    config: Path
    journal: Path

    def stop(self) -> None:
        self.sim.server.stop()
        self.bo.server.stop()


def make_templates(hub: Hub, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    bo = build("gestao-lojas", str(directory / "bo.db"), products=SCENARIO_PRODUCTS, seed=7, client_secret=CANARY_SECRET)
    server = serve_in_thread(build(hub.system, str(directory / "hub.db"), products=SCENARIO_PRODUCTS, seed=7,
                                   **hub.sim_options))
    try:
        hub.seed_orders(Sim(server))
    finally:
        server.stop()
    bo.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    bo.db.close()
    return directory


def start(hub: Hub, templates: Path, workdir: Path, *, http: str = HTTP) -> Scenario:
    workdir.mkdir(parents=True, exist_ok=True)
    for name in ("bo.db", "hub.db"):
        shutil.copy(templates / name, workdir / name)
    bo = Sim(serve_in_thread(build("gestao-lojas", str(workdir / "bo.db"), products=SCENARIO_PRODUCTS, seed=7,
                                   client_secret=CANARY_SECRET)))
    sim = Sim(serve_in_thread(build(hub.system, str(workdir / "hub.db"), products=SCENARIO_PRODUCTS, seed=7,
                                    **hub.sim_options)))
    journal, config = workdir / "journal.db", workdir / "syncagent.yaml"
    config.write_text(CONFIG.format(journal=journal, bo=bo.url, hub=sim.url, http=http, channel=hub.channel))
    return Scenario(hub, bo, sim, config, journal)


def converge(scenario: Scenario, max_cycles: int = 4) -> int:
    code = None
    for cycle in range(1, max_cycles + 1):
        code = run_agent(scenario.config, env=ENV)
        in_flight = _journal_in_flight(scenario.journal)
        if code == 0 and not in_flight:
            return cycle
        if in_flight:
            time.sleep(SETTLE)
    raise AssertionError(f"no convergence within {max_cycles} cycles (last exit {code})")


def check_intake(scenario: Scenario) -> dict[str, int]:
    bo_orders = [o for o in scenario.bo.admin("GET", "/_admin/orders")["items"] if o.get("channel") == "hub"]
    per_id = Counter(o["external_id"] for o in bo_orders)
    assert not [k for k, n in per_id.items() if n > 1], f"orders created twice: {per_id}"
    created_at: dict[str, float] = {}
    for r in scenario.bo.requests_log():
        if r["method"] == "POST" and r["path"] == "/orders" and r["body"]:
            created_at.setdefault(str(json.loads(r["body"]).get("external_id")), r["ts"])
    for order in scenario.hub.orders(scenario.sim):
        if order["status"] == "approved":
            assert order["id"] in per_id, f"approved order lost: {order['id']}"
            assert order["acked"], f"imported but the channel was never told: {order['id']}"
        else:
            assert order["id"] not in per_id, f"a {order['status']} order was imported: {order['id']}"
    for order_id, at in scenario.hub.acks(scenario.sim).items():
        assert order_id in created_at and at > created_at[order_id], f"told before the back office had {order_id}"
    conn = sqlite3.connect(scenario.journal)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
    assert HUB_SECRET.encode() not in scenario.journal.read_bytes()
    return {"orders": len(bo_orders)}


def _crash_case(job: tuple[str, Path, Path, str]) -> str | None:
    system, templates, workdir, spec = job
    scenario = start(HUBS[system], templates, workdir)
    try:
        run_agent(scenario.config, spec, env=ENV)
        converge(scenario)
        assert check_intake(scenario) == {"orders": APPROVED}
        return None
    except AssertionError as exc:
        return f"{spec}: {exc}"
    finally:
        scenario.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.mark.parametrize("system", sorted(HUBS))
@pytest.mark.timeout(300)
def test_a_crash_at_each_intake_instant_then_converge(system: str, workroot: Path) -> None:
    templates = make_templates(HUBS[system], workroot / "templates")
    probe = start(HUBS[system], templates, workroot / "probe")
    try:
        log = workroot / "points.log"
        run_agent(probe.config, f"count:{log}", env=ENV)
        points = log.read_text().splitlines()
    finally:
        probe.stop()
    missing = [p for p in POINTS if p not in points]
    assert not missing, f"the intake never reaches {missing}"
    firsts = sorted({points.index(name) + 1 for name in POINTS} | {len(points) // 2})
    jobs = [(system, templates, workroot / f"k{k}", f"crash-at:{k}") for k in firsts]
    with FORK.Pool(2) as pool:
        errors = [e for e in pool.map(_crash_case, jobs, chunksize=1) if e]
    assert not errors, errors


@pytest.mark.parametrize("system", sorted(HUBS))
@pytest.mark.timeout(300)
def test_intake_converges_through_a_fault_storm(system: str, workroot: Path) -> None:
    hub = HUBS[system]
    scenario = start(hub, make_templates(hub, workroot / "templates"), workroot / "storm", http=STORM_HTTP)
    try:
        scenario.bo.admin("POST", "/_admin/faults", json=storm(61, commit_then_fail=True))
        scenario.sim.admin("POST", "/_admin/faults", json=storm(62, commit_then_fail=False))
        worst = 0
        for cycle in range(1, 7):
            if cycle > 1:
                time.sleep(1.0)  # the settle time of an order whose answer was lost
            run_agent(scenario.config, env={**ENV, "SYNCAGENT_TEST_NO_SLEEP": "1"}, timeout=120)
            worst = max(worst, identical_requests(scenario.sim.requests_log()))
            created = [o for o in scenario.bo.admin("GET", "/_admin/orders")["items"] if o["channel"] == "hub"]
            if _journal_in_flight(scenario.journal) == 0 and len(created) >= APPROVED:
                break
        faults = scenario.bo.admin("GET", "/_admin/faults")["counts"]
        for sim in (scenario.bo, scenario.sim):
            sim.admin("DELETE", "/_admin/faults")
        converge(scenario)  # the storm over, whatever a last failed step left is finished
        assert check_intake(scenario) == {"orders": APPROVED}
        assert faults.get("commit_500", 0) + faults.get("commit_drop", 0) > 0  # a lost answer was injected
        assert worst <= 7
    finally:
        time.sleep(0.3)
        scenario.stop()
