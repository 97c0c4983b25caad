"""Mercado Livre under kills: at every point of a token refresh and of order intake; and intake in a fault storm.

Each refresh answers a new refresh token and kills the old one at once (API.md L26). The agent is
killed (a failpoint's abrupt exit: no cleanup) at each named point of a refresh, then run again:

* before the POST, or once the new tokens are stored: the next run goes on, no authorization lost;
* after the platform answered but before the answer was stored (the answer is gone with the
  process, and the old token is dead at the platform): no client can keep that authorization.
  The channel then stops with a status that says to run `syncagent auth mercadolivre`; after that
  it works again. Never a silent failure.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncagent.authorize import authorize
from syncagent.config import load_config
from syncagent.failpoints import CRASH_EXIT_CODE
from syncagent.journal import Journal
from tests.crash.harness import count_points, run_agent
from tests.integration.harness import start
from tests.integration.test_mercadolivre import (
    CHANNEL,
    ENV,
    HTTP,
    ML_CLIENT,
    ML_SECRET,
    stop_all,
    write_config,
)

REFRESH_POINTS = ("oauth.refresh.before_post", "oauth.refresh.answered", "state.before_commit",
                  "state.after_commit", "oauth.refresh.stored")
LOST_ANSWER = {"oauth.refresh.answered", "state.before_commit"}  # rotated at the platform, not yet stored


class World:
    def __init__(self, root: Path, flows: list[str], http: str = HTTP, **ml_options: str) -> None:
        self.bo = start("gestao-lojas", root / "bo.db", products=8)
        self.ml = start("mercadolivre", root / "ml.db", products=8, client_secret=ML_SECRET, client_id=ML_CLIENT,
                        **ml_options)
        self.config = write_config(root, self.bo, self.ml, flows, http)
        self.journal = root / "journal.db"

    def authorize(self) -> None:
        code = self.ml.admin("POST", "/_admin/auth/code")["code"]
        config = load_config(self.config)
        with Journal(self.journal, lock=False) as journal:
            authorize(config.channel(CHANNEL), journal, code)

    def tokens(self) -> dict[str, object]:
        with Journal(self.journal, lock=False) as journal:
            return json.loads(journal.state(CHANNEL, "oauth") or "{}")

    def channel_state(self) -> tuple[str, str | None]:
        with Journal(self.journal, lock=False) as journal:
            return journal.channel_states().get(CHANNEL, ("unknown", None))

    def stop(self) -> None:
        stop_all(self.ml, self.bo)

    def __enter__(self) -> World:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture
def ml_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The secrets the config reads, for the authorization done in this process."""
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)


@pytest.fixture
def world(workroot: Path, ml_env: None) -> Iterator[World]:
    with World(workroot, ["products"]) as made:
        yield made


def test_a_refresh_reaches_every_point_named_here(world: World, workroot: Path) -> None:
    world.authorize()
    world.ml.admin("POST", "/_admin/tokens/expire")
    points = count_points(world.config, workroot)
    at = [p for p in points if p.startswith(("oauth.", "state."))]
    assert at[:len(REFRESH_POINTS)] == list(REFRESH_POINTS)


@pytest.mark.parametrize("point", REFRESH_POINTS)
def test_a_kill_at_any_point_of_a_refresh_never_loses_access_silently(world: World, point: str) -> None:
    world.authorize()
    before = world.tokens()
    world.ml.admin("POST", "/_admin/tokens/expire")  # the next call refreshes
    assert run_agent(world.config, f"crash:{point}", env=ENV) == CRASH_EXIT_CODE
    live = world.ml.admin("GET", "/_admin/tokens/refresh")["items"]
    code = run_agent(world.config, env=ENV)
    if point not in LOST_ANSWER:
        assert code == 0, world.channel_state()
        assert world.channel_state()[0] == "ok"
        # the token stored is the one alive at the platform: the seller stays connected
        assert world.ml.admin("GET", "/_admin/tokens/refresh")["items"] == [world.tokens()["refresh_token"]]
        if point == "oauth.refresh.before_post":
            assert live == [before["refresh_token"]]  # nothing was sent: the stored token still worked
        return
    # the platform rotated the token and its answer died with the process: the channel says what to do
    assert code == 1
    state, message = world.channel_state()
    assert state == "auth_failed" and f"syncagent auth mercadolivre --channel {CHANNEL}" in (message or "")
    assert world.tokens().get("locked")
    world.authorize()
    assert run_agent(world.config, env=ENV) == 0
    assert world.channel_state()[0] == "ok"


INTAKE_POINTS = ("order.before_create", "order.after_create", "ack.before_send", "ack.after_send",
                 "journal.cursor_save", "journal.before_commit", "journal.after_commit")
FAST = "{max_attempts: 4, connect_timeout: 0.2, read_timeout: 0.5, rate_limit: {per_second: 1000, burst: 100}}"


@pytest.mark.parametrize("point", INTAKE_POINTS)
def test_a_kill_at_each_point_of_order_intake_neither_loses_nor_duplicates(
        point: str, workroot: Path, ml_env: None) -> None:
    with World(workroot, ["orders"], http=FAST, orders="3") as world:
        world.authorize()
        # the point's first instant, then its second in the recovery run (another order, or the same one again)
        codes = [run_agent(world.config, f"crash:{point}:{nth}", env=ENV) for nth in (1, 2)]
        assert codes[0] == CRASH_EXIT_CODE and codes[1] in (CRASH_EXIT_CODE, 0, 1)
        assert run_agent(world.config, env=ENV) == 0
        created = Counter(o["external_id"] for o in world.bo.admin("GET", "/_admin/orders")["items"])
        assert len(created) == 3 and set(created.values()) == {1}, created
        with Journal(world.journal, lock=False) as journal:
            assert journal.order_counts(CHANNEL) == {"acknowledged": 3}


def test_order_intake_in_a_fault_storm_imports_each_paid_order_once(workroot: Path, ml_env: None) -> None:
    """429s (in ML's shape), 5xx and lost answers on both sides: every paid order once in the back office."""
    with World(workroot, ["orders"], http=FAST, orders="6") as world:
        world.authorize()
        world.ml.admin("POST", "/_admin/faults", json={"seed": 3, "rate_5xx": 0.15, "rate_429": 0.1,
                                                       "retry_after": 0, "only": "GET /orders"})
        world.bo.admin("POST", "/_admin/faults", json={"seed": 5, "commit_then_fail": {"POST /orders$": 0.5},
                                                       "commit_first": 1, "rate_5xx": 0.1, "only": "/orders"})
        world.ml.admin("POST", "/_admin/throttle", json={"count": 2})
        for _ in range(6):
            run_agent(world.config, env={**ENV, "SYNCAGENT_TEST_NO_SLEEP": "1"})
        hit = {name: sim.admin("GET", "/_admin/faults")["counts"] for name, sim in (("ml", world.ml), ("bo", world.bo))}
        assert hit["ml"] and hit["bo"].get("commit_500", 0) + hit["bo"].get("commit_drop", 0) >= 1, hit
        for sim in (world.ml, world.bo):
            sim.admin("DELETE", "/_admin/faults")
        assert run_agent(world.config, env={**ENV, "SYNCAGENT_TEST_NO_SLEEP": "1"}) in (0, 1)
        created = Counter(o["external_id"] for o in world.bo.admin("GET", "/_admin/orders")["items"])
        assert len(created) == 6 and set(created.values()) == {1}, created
