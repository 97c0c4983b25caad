"""Servers misbehaving on a seeded schedule: 1000 orders still arrive once each, within 6 cycles.

Faults on both simulators: 20 % 5xx, 10 % 429 with Retry-After, 5 % timeouts, 2 % connection
resets, and on the back office 5 % commit-then-fail on POST /orders (the order is created, then
the answer is a 500 or a dropped connection). Backoff sleeps are skipped in the forked agent.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest

from tests.crash.harness import _journal_in_flight, check_invariants, run_agent, start_scenario

MAX_ATTEMPTS = 6
STORM_HTTP = f"{{max_attempts: {MAX_ATTEMPTS}, connect_timeout: 0.5, read_timeout: 0.15}}"
SETTLE = 0.5 + 0.15  # the engine waits at least this long before it looks a lost order up again
REPORT = Path(os.environ.get("SYNCAGENT_RELIABILITY_REPORT", "/dev/null"))


def storm(seed: int, *, commit_then_fail: bool) -> dict[str, object]:
    faults: dict[str, object] = {"seed": seed, "rate_5xx": 0.20, "rate_429": 0.10, "retry_after": 1,
                                 "rate_timeout": 0.05, "timeout_sleep": 0.25, "rate_reset": 0.02}
    if commit_then_fail:
        faults["commit_then_fail"] = {"^POST /orders$": 0.05}
        faults["commit_first"] = 1  # the lost answer this storm exists for happens whatever the draws
    return faults


def identical_requests(log: list[dict[str, object]]) -> int:
    """The longest run of one identical request sent back to back: the attempts of one logical request.

    The agent sends one request at a time and the backoff waits are skipped here, so the attempts
    of one request stand next to each other in the server's log. The engine's settle wait is not
    skipped: an order whose answer was lost is looked up at once and again after that wait (two
    lookups, the same request), so a gap of the settle time starts a new run. The log is read in
    the order the requests arrived (its stamps), not the order they were answered: a POST whose
    answer a timeout fault delays is logged after the lookup the agent makes once it gave up on
    it, yet it came between that lookup and the one before the POST.
    """
    worst, run, last, at = 0, 0, None, 0.0
    for r in sorted(log, key=lambda r: (float(r["ts"]), int(r["id"]))):  # type: ignore[arg-type]
        if str(r["path"]).startswith("/_admin"):
            continue
        key = hashlib.sha256(json.dumps([r["method"], r["path"], r["query"], r["body"]]).encode()).hexdigest()
        stamp = float(r["ts"])  # type: ignore[arg-type]
        run = run + 1 if key == last and stamp - at < SETTLE else 1
        last, at = key, stamp
        worst = max(worst, run)
    return worst


def _logged(i: int, ts: float, method: str, query: dict[str, list[str]]) -> dict[str, object]:
    return {"id": i, "ts": ts, "method": method, "path": "/orders", "query": query, "body": None}


def test_a_post_answered_late_still_separates_the_lookups_around_it() -> None:
    """The storm's log as a timeout fault leaves it: the lookup before a POST (2 attempts), the POST
    (held 0.25 s by the fault, so logged last) and the lookup after its lost answer (6 attempts)."""
    one = {"external_id": ["x"], "channel": ["c"]}
    log = [_logged(1, 0.000, "GET", one), _logged(2, 0.001, "GET", one)]
    log += [_logged(3 + i, 0.152 + i / 1000, "GET", one) for i in range(MAX_ATTEMPTS)]
    log.append(_logged(9, 0.002, "POST", {}))
    assert identical_requests(log) == MAX_ATTEMPTS  # not 2 + 6: the POST came between them
    assert identical_requests(sorted(log, key=lambda r: -int(r["id"]))) == MAX_ATTEMPTS  # whatever the log order


@pytest.mark.timeout(900)
def test_thousand_orders_converge_through_a_fault_storm(templates: Path, workroot: Path) -> None:
    seed = int(os.environ.get("SYNCAGENT_STORM_SEED", "4242"))
    scenario = start_scenario(templates, workroot / "storm", http=STORM_HTTP)
    sims = scenario.sims
    try:
        for sim in (sims.su, sims.su2):
            assert sim is not None
            sim.admin("POST", "/_admin/orders/generate", json={"count": 500, "status": "approved"})
        sims.bo.admin("POST", "/_admin/faults", json=storm(seed, commit_then_fail=True))
        sims.su.admin("POST", "/_admin/faults", json=storm(seed + 1, commit_then_fail=False))
        sims.su2.admin("POST", "/_admin/faults", json=storm(seed + 2, commit_then_fail=False))  # type: ignore[union-attr]
        marks = {name: 0 for name in ("bo", "su", "su2")}
        worst = 0
        cycles = 0
        for cycle in range(1, 7):
            cycles = cycle
            if cycle > 1:
                time.sleep(1.0)  # cycles come minutes apart in real life; at least the settle time here
            run_agent(scenario.config, env={"SYNCAGENT_TEST_NO_SLEEP": "1"}, timeout=600)
            for name, sim in (("bo", sims.bo), ("su", sims.su), ("su2", sims.su2)):
                assert sim is not None
                log = sim.requests_log(marks[name])
                worst = max(worst, identical_requests(log))
                marks[name] = log[-1]["id"] if log else marks[name]
            in_flight = _journal_in_flight(scenario.journal)
            approved = sum(1 for sim in (sims.su, sims.su2) if sim is not None
                           for o in sim.admin("GET", "/_admin/orders")["items"] if o["status"] == "approved")
            created = len(sims.bo.admin("GET", "/_admin/orders")["items"])
            if in_flight == 0 and created >= approved:
                break
        else:
            pytest.fail(f"not converged after 6 cycles: {in_flight} in flight, {created}/{approved} created")
        faults = {name: sim.admin("GET", "/_admin/faults")["counts"]
                  for name, sim in (("bo", sims.bo), ("su", sims.su), ("su2", sims.su2)) if sim is not None}
        for sim in (sims.bo, sims.su, sims.su2):
            assert sim is not None
            sim.admin("DELETE", "/_admin/faults")
        figures = check_invariants(scenario)
        assert figures["approved"] >= 1000
        # a request is sent at most max_attempts times in a cycle, plus once more after a token refresh
        assert worst <= MAX_ATTEMPTS + 1, f"a request was sent {worst} times in one cycle"
        assert faults["bo"].get("commit_500", 0) + faults["bo"].get("commit_drop", 0) > 0
        line = (f"fault storm (seed {seed}): {figures['approved']} approved orders over 2 channels, converged in "
                f"{cycles} cycles, 0 duplicates, max identical sends in a cycle {worst} (limit {MAX_ATTEMPTS}); "
                f"faults injected: {json.dumps(faults, sort_keys=True)}")
        print(line)
        with REPORT.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")
    finally:
        scenario.stop()
