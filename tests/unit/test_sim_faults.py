"""The simulators' fault schedule: what a storm injects must not hang on thread timing or load."""

from __future__ import annotations

from syncagent.simulators.common import Faults


def _outcomes(faults: Faults, n: int, *, noise_every: int = 0) -> list[str | None]:
    seen = []
    for i in range(n):
        if noise_every and i % noise_every == 0:
            faults.rng.random()  # another request's 5xx/429/timeout draw, in whatever order threads ran
        seen.append(faults.commit_fault("POST /orders"))
    return seen


def test_commit_faults_do_not_shift_with_the_other_faults_draws() -> None:
    spec = {"seed": 5151, "rate_5xx": 0.2, "commit_then_fail": {"^POST /orders$": 0.05}}
    quiet = _outcomes(Faults(**spec), 400)
    busy = _outcomes(Faults(**spec), 400, noise_every=3)
    assert quiet == busy
    assert any(quiet), "a 5 % rate over 400 commits injects something"


def test_commit_first_fails_the_first_matching_commits_whatever_the_draw() -> None:
    faults = Faults(seed=1, commit_then_fail={"^POST /orders$": 0.0}, commit_first=2, commit_mode="drop")
    assert faults.commit_fault("GET /orders") is None  # not matching: not counted
    assert [faults.commit_fault("POST /orders") for _ in range(4)] == ["drop", "drop", None, None]


def test_mixed_mode_draws_both_kinds() -> None:
    faults = Faults(seed=7, commit_then_fail={"POST": 1.0})
    kinds = {faults.commit_fault("POST /orders") for _ in range(50)}
    assert kinds == {"500", "drop"}
