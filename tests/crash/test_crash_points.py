"""Kill the agent at every dangerous instant, restart it, and check that nothing was duplicated or lost.

Sizes: every point and 100 compound crashes and 50 random SIGKILLs in `make test`; 1000 random
SIGKILLs in `make soak` (`-m slow`). Seeds are printed so any failure can be replayed.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest

from syncagent import failpoints
from tests.crash.harness import check_invariants, converge, count_points, run_agent, start_scenario

REPORT = Path(os.environ.get("SYNCAGENT_RELIABILITY_REPORT", "/dev/null"))


def report(line: str) -> None:
    print(line)
    with REPORT.open("a", encoding="utf-8") as fh:
        fh.write(line + "\n")


def test_failpoints_are_inert_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SYNCAGENT_FAILPOINTS", raising=False)
    failpoints.reset()
    for _ in range(1000):
        failpoints.hit("order.before_create")  # would exit the test process if armed
    monkeypatch.setenv("SYNCAGENT_FAILPOINTS", f"count:{tmp_path / 'n.log'}")
    failpoints.hit("order.before_create")
    assert (tmp_path / "n.log").read_text() == "order.before_create\n"


def test_crash_at_every_point_then_converge(templates: Path, tmp_path: Path) -> None:
    probe = start_scenario(templates, tmp_path / "probe")
    try:
        points = count_points(probe.config, tmp_path)
    finally:
        probe.stop()
    assert len(points) > 50, "the scenario must reach the dangerous instants"
    kinds = set(points)
    for name in ("order.before_create", "order.after_create", "ack.before_send", "ack.after_send",
                 "journal.before_commit", "journal.after_commit", "journal.cursor_save", "push.before_send"):
        assert name in kinds, f"scenario never reaches {name}"
    cycles = []
    started = time.monotonic()
    for k in range(1, len(points) + 1):
        scenario = start_scenario(templates, tmp_path / f"k{k}")
        try:
            code = run_agent(scenario.config, f"crash-at:{k}")
            assert code == failpoints.CRASH_EXIT_CODE, f"point {k} ({points[k - 1]}) was not reached: exit {code}"
            cycles.append(converge(scenario))
            check_invariants(scenario)
        except AssertionError as exc:
            raise AssertionError(f"crash at point {k} ({points[k - 1]}): {exc}") from exc
        finally:
            scenario.stop()
    report(f"every-point crash: {len(points)} points ({len(kinds)} kinds), all converged; "
           f"cycles to converge max {max(cycles)}, mean {sum(cycles) / len(cycles):.2f}; "
           f"{time.monotonic() - started:.0f} s")


def test_compound_crashes_during_recovery(templates: Path, tmp_path: Path) -> None:
    seed = int(os.environ.get("SYNCAGENT_CRASH_SEED", "20261123"))
    rng = random.Random(seed)
    probe = start_scenario(templates, tmp_path / "probe")
    try:
        total = len(count_points(probe.config, tmp_path))
    finally:
        probe.stop()
    iterations = int(os.environ.get("SYNCAGENT_COMPOUND", "100"))
    for i in range(iterations):
        k, j = rng.randint(1, total), rng.randint(1, max(1, total // 2))
        scenario = start_scenario(templates, tmp_path / f"c{i}")
        try:
            assert run_agent(scenario.config, f"crash-at:{k}") == failpoints.CRASH_EXIT_CODE
            run_agent(scenario.config, f"crash-at:{j}")  # may finish first if recovery is short
            converge(scenario)
            check_invariants(scenario)
        except AssertionError as exc:
            raise AssertionError(f"seed {seed}, iteration {i}: crash at {k} then {j}: {exc}") from exc
        finally:
            scenario.stop()
    report(f"compound crashes: {iterations} (seed {seed}), all converged")


def _random_kills(templates: Path, tmp_path: Path, iterations: int) -> None:
    seed = int(os.environ.get("SYNCAGENT_KILL_SEED", str(int(time.time()))))
    print(f"random SIGKILL seed: {seed} (replay with SYNCAGENT_KILL_SEED={seed})")
    rng = random.Random(seed)
    probe = start_scenario(templates, tmp_path / "probe")
    try:
        started = time.monotonic()
        run_agent(probe.config)
        duration = time.monotonic() - started
    finally:
        probe.stop()
    for i in range(iterations):
        scenario = start_scenario(templates, tmp_path / f"r{i}")
        delay = rng.uniform(0, duration)
        try:
            run_agent(scenario.config, kill_after=delay)
            converge(scenario)
            check_invariants(scenario)
        except AssertionError as exc:
            raise AssertionError(f"seed {seed}, iteration {i}, SIGKILL after {delay:.3f} s: {exc}") from exc
        finally:
            scenario.stop()
    report(f"random SIGKILL: {iterations} iterations (seed {seed}, run length {duration:.2f} s), all converged")


def test_random_sigkill(templates: Path, tmp_path: Path) -> None:
    _random_kills(templates, tmp_path, int(os.environ.get("SYNCAGENT_KILLS", "50")))


@pytest.mark.slow
def test_random_sigkill_soak(templates: Path, tmp_path: Path) -> None:
    _random_kills(templates, tmp_path, 1000)
