"""A POST /orders whose answer is lost: looked up at once, posted again only after the settle time.

The back office's settle time here (connect + read timeout = 5.5 s) is longer than the daemon's
5 s, as the 35 s default is: a cron cycle (`run --once`) must still end with its work done and
exit 0, with every order created exactly once, after commit-then-fail answers, answers dropped
before the back office saw the order, and SIGKILLs at random instants.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.crash.harness import _journal_in_flight, check_invariants, run_agent, start_scenario

SLOW_SETTLE_HTTP = "{max_attempts: 4, connect_timeout: 5, read_timeout: 0.5}"
FAST = {"SYNCAGENT_TEST_NO_SLEEP": "1"}  # HTTP backoff skipped; the engine's settle wait is real


def posts_per_order(scenario: object) -> Counter[tuple[str, str]]:
    """How many POST /orders reached the back office's handler, per (channel, external id)."""
    posts: Counter[tuple[str, str]] = Counter()
    for r in scenario.sims.bo.requests_log():  # type: ignore[attr-defined]
        if r["method"] == "POST" and r["path"] == "/orders" and r["body"]:
            body = json.loads(r["body"])
            posts[(body["channel"], body["external_id"])] += 1
    return posts


@pytest.mark.timeout(300)
def test_commit_then_fail_is_settled_in_the_same_cron_cycle(templates: Path, workroot: Path) -> None:
    scenario = start_scenario(templates, workroot / "ctf", http=SLOW_SETTLE_HTTP)
    try:
        scenario.sims.bo.admin("POST", "/_admin/faults", json={"seed": 5, "commit_then_fail": {"^POST /orders$": 1.0}})
        started = time.monotonic()
        code = run_agent(scenario.config, env=FAST)
        elapsed = time.monotonic() - started
        counts = scenario.sims.bo.admin("GET", "/_admin/faults")["counts"]
        assert counts.get("commit_500", 0) + counts.get("commit_drop", 0) >= 20  # every answer was lost
        assert code == 0, "the orders were in the back office: the cycle had nothing left to wait for"
        assert _journal_in_flight(scenario.journal) == 0
        figures = check_invariants(scenario)
        assert figures["orders"] >= 20
        assert max(posts_per_order(scenario).values()) == 1  # found by the lookup, never posted twice
        assert elapsed < 120  # generous: it never waited a settle time per order
    finally:
        scenario.stop()


@pytest.mark.timeout(600)
def test_random_kills_and_lost_answers_end_in_one_clean_cron_cycle(templates: Path, workroot: Path) -> None:
    seed = int(os.environ.get("SYNCAGENT_KILL_SEED", str(int(time.time()))))
    print(f"lost answers + SIGKILL seed: {seed} (replay with SYNCAGENT_KILL_SEED={seed})")
    rng = random.Random(seed)
    for i in range(int(os.environ.get("SYNCAGENT_LOST_KILLS", "4"))):
        scenario = start_scenario(templates, workroot / f"k{i}", http=SLOW_SETTLE_HTTP)
        label = f"seed {seed} #{i}"
        try:
            # half the POSTs are applied then answered 500 / dropped; some are dropped before the handler
            scenario.sims.bo.admin("POST", "/_admin/faults", json={
                "seed": seed + i, "only": "^POST /orders$", "rate_reset": 0.15,
                "commit_then_fail": {"^POST /orders$": 0.5}})
            killed = run_agent(scenario.config, env=FAST, kill_after=rng.uniform(0.1, 1.5))
            code = run_agent(scenario.config, env=FAST)  # the next cron cycle, the same faults on
            counts = scenario.sims.bo.admin("GET", "/_admin/faults")["counts"]
            print(f"{label}: kill run exit {killed}, then exit {code}, faults {counts}")
            assert code == 0, f"{label}: the cron cycle after the kill did not settle its orders (exit {code})"
            assert _journal_in_flight(scenario.journal) == 0, label
            check_invariants(scenario)
            assert counts.get("commit_500", 0) + counts.get("commit_drop", 0) > 0, label
        finally:
            scenario.stop()
