"""Kill the agent at every dangerous instant, restart it, and check that nothing was duplicated or lost.

Sizes in `make test`: the first three instants of every kind of point and every third point
(`SYNCAGENT_CRASH_STRIDE=3`), 40 compound crashes and 30 random SIGKILLs; `make soak` kills at
every point (stride 1), 100 compound crashes and 1000 random SIGKILLs. Seeds are printed so any
failure can be replayed.
The scenario (tests/crash/harness.py): 2 Seller Up channels × 20 tablet orders, a full catalogue
sync, customers to bind or create, and a back office token that expires during the run.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest

from syncagent import failpoints
from tests.crash.harness import count_points, run_agent, run_cases, sampled, start_scenario

REPORT = Path(os.environ.get("SYNCAGENT_RELIABILITY_REPORT", "/dev/null"))
DANGEROUS = ("order.before_create", "order.after_create", "ack.before_send", "ack.after_send",
             "journal.before_commit", "journal.after_commit", "journal.cursor_save", "push.before_send",
             "push.after_send", "customer.before_create", "customer.after_create", "token.refresh")


def report(line: str) -> None:
    print(line)
    with REPORT.open("a", encoding="utf-8") as fh:
        fh.write(line + "\n")


def probe_points(templates: Path, workroot: Path) -> list[str]:
    probe = start_scenario(templates, workroot / "probe")
    try:
        return count_points(probe.config, workroot)
    finally:
        probe.stop()


def failures(results: list[tuple[int, str | None]]) -> list[str]:
    return [error for _, error in results if error]


def test_failpoints_are_inert_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SYNCAGENT_FAILPOINTS", raising=False)
    failpoints.reset()
    for _ in range(1000):
        failpoints.hit("order.before_create")  # would exit the test process if armed
    monkeypatch.setenv("SYNCAGENT_FAILPOINTS", f"count:{tmp_path / 'n.log'}")
    failpoints.hit("order.before_create")
    assert (tmp_path / "n.log").read_text() == "order.before_create\n"


def test_a_crash_point_really_kills_the_agent(templates: Path, workroot: Path) -> None:
    scenario = start_scenario(templates, workroot / "one")
    try:
        assert run_agent(scenario.config, "crash:order.after_create:3") == failpoints.CRASH_EXIT_CODE
        orders = scenario.sims.bo.admin("GET", "/_admin/orders")["items"]
        assert len(orders) == 3  # it stopped right after the third creation
    finally:
        scenario.stop()


@pytest.mark.timeout(1200)
def test_crash_at_every_point_then_converge(templates: Path, workroot: Path) -> None:
    points = probe_points(templates, workroot)
    assert len(points) > 100, "the scenario must reach the dangerous instants"
    missing = [name for name in DANGEROUS if name not in points]
    assert not missing, f"the scenario never reaches {missing}"
    started = time.monotonic()
    chosen = sampled(points, int(os.environ.get("SYNCAGENT_CRASH_STRIDE", "3")))
    jobs = [(templates, workroot / f"k{k}", [f"crash-at:{k}"], [f"point {k} ({points[k - 1]})"]) for k in chosen]
    results = run_cases(jobs)
    assert not failures(results), failures(results)[:5]
    cycles = [c for c, _ in results]
    report(f"every-point crash: {len(chosen)} of {len(points)} points ({len(set(points))} kinds), all converged "
           f"with no duplicate, no loss, no early ack; cycles to converge max {max(cycles)}, "
           f"mean {sum(cycles) / len(cycles):.2f}; {time.monotonic() - started:.0f} s")


def test_the_sample_keeps_every_kind_and_stride_one_is_every_point() -> None:
    points = ["a", "b", "a", "a", "a", "c", "a", "a", "b"]
    assert sampled(points, 1) == list(range(1, 10))
    assert sampled(points, 3) == [1, 2, 3, 4, 6, 9]  # a×3, b, c first; 6 and 9 by the stride


@pytest.mark.timeout(900)
def test_compound_crashes_during_recovery(templates: Path, workroot: Path) -> None:
    seed = int(os.environ.get("SYNCAGENT_CRASH_SEED", "20261123"))
    rng = random.Random(seed)
    points = probe_points(templates, workroot)
    iterations = int(os.environ.get("SYNCAGENT_COMPOUND", "40"))
    jobs = []
    for i in range(iterations):
        k, j = rng.randint(1, len(points)), rng.randint(1, max(1, len(points) // 2))
        jobs.append((templates, workroot / f"c{i}", [f"crash-at:{k}", f"crash-at:{j}"],
                     [f"seed {seed} #{i}: crash at {k} ({points[k - 1]})", f"at {j} during recovery"]))
    results = run_cases(jobs)
    assert not failures(results), failures(results)[:5]
    report(f"compound crashes: {iterations} (seed {seed}), all converged; "
           f"max cycles {max(c for c, _ in results)}")


def _random_kills(templates: Path, workroot: Path, iterations: int) -> None:
    seed = int(os.environ.get("SYNCAGENT_KILL_SEED", str(int(time.time()))))
    print(f"random SIGKILL seed: {seed} (replay with SYNCAGENT_KILL_SEED={seed})")
    rng = random.Random(seed)
    probe = start_scenario(templates, workroot / "probe")
    try:
        started = time.monotonic()
        run_agent(probe.config)
        duration = time.monotonic() - started
    finally:
        probe.stop()
    jobs = []
    for i in range(iterations):
        delay = rng.uniform(0, duration)
        jobs.append((templates, workroot / f"r{i}", [f"kill-after:{delay:.4f}"],
                     [f"seed {seed} #{i}: SIGKILL after {delay:.3f} s"]))
    results = run_cases(jobs)
    assert not failures(results), failures(results)[:5]
    report(f"random SIGKILL: {iterations} iterations (seed {seed}, run length {duration:.2f} s), all converged")


@pytest.mark.timeout(900)
def test_random_sigkill(templates: Path, workroot: Path) -> None:
    _random_kills(templates, workroot, int(os.environ.get("SYNCAGENT_KILLS", "30")))


@pytest.mark.slow
@pytest.mark.timeout(7200)
def test_random_sigkill_soak(templates: Path, workroot: Path) -> None:
    _random_kills(templates, workroot, 1000)
