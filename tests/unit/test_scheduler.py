"""The daemon loop against a fake agent: priority, no overlap, no catch-up, time-slicing, stop, reload.

The fake agent runs a step as pages: each page takes a little real time, is "recorded" (the
cursor moves) and then the engine's `should_stop` is asked, exactly as the real engine does.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from syncagent.agent import Step
from syncagent.config import ConfigProblems, Problem
from syncagent.engine import StepResult
from syncagent.scheduler import Daemon

Key = tuple[str, str]


@dataclass
class Event:
    what: str  # start | page | end
    channel: str
    flow: str
    at: float


@dataclass
class FakeAgent:
    step_list: list[Step]
    pages: dict[Key, int] = field(default_factory=dict)  # pages of the feed still to read per step
    refill: dict[Key, int] = field(default_factory=dict)  # pages that arrive before each run (orders)
    page_time: dict[Key, float] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    sent: dict[Key, list[int]] = field(default_factory=dict)  # page numbers recorded, per step
    reloaded: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.engine = SimpleNamespace(should_stop=lambda: False)
        self.config = SimpleNamespace(path=Path("fake.yaml"), log=None, secrets=())
        self.inside: Any = None  # called once during a run, to poke the daemon from inside a step

    def steps(self) -> list[Step]:
        return sorted(self.step_list, key=lambda s: s.priority)

    def begin_cycle(self) -> None:
        pass

    def end_cycle(self) -> None:
        pass

    def run_steps(self, steps: Iterable[Step], *, new_cycle: bool = True) -> list[StepResult]:
        results = []
        for step in steps:
            key = (step.channel, step.flow)
            self.events.append(Event("start", *key, time.monotonic()))
            if key in self.refill:
                self.pages[key] = self.pages.get(key, 0) + self.refill[key]
            result = StepResult(*key)
            if self.inside is not None:
                poke, self.inside = self.inside, None
                poke()
            while self.pages.get(key, 0) > 0:
                time.sleep(self.page_time.get(key, 0.0))
                done = self.sent.setdefault(key, [])
                done.append(len(done))
                self.pages[key] -= 1
                result.sent += 1
                self.events.append(Event("page", *key, time.monotonic()))
                if self.engine.should_stop():
                    break
            self.events.append(Event("end", *key, time.monotonic()))
            results.append(result)
        return results

    def alert(self, results: list[StepResult]) -> None:
        pass

    def reload(self, config: Any) -> None:
        self.reloaded.append(config)
        self.step_list = list(config.steps)

    def starts(self, channel: str | None = None, flow: str | None = None) -> list[Event]:
        return [e for e in self.events if e.what == "start" and (channel is None or e.channel == channel)
                and (flow is None or e.flow == flow)]


@pytest.fixture
def watchdog() -> Iterator[list[Daemon]]:
    """Stops a daemon that a broken test would leave running (the loop checks the flag often)."""
    daemons: list[Daemon] = []
    timer = threading.Timer(10.0, lambda: [d.request_stop() for d in daemons])
    timer.start()
    yield daemons
    timer.cancel()


def run_until(daemon: Daemon, done: Any, watchdog: list[Daemon]) -> None:
    watchdog.append(daemon)
    original = daemon.on_result

    def check(result: StepResult) -> None:
        if original:
            original(result)
        if done():
            daemon.request_stop()

    daemon.on_result = check
    daemon.run()


def test_due_steps_run_in_priority_order_then_channel_order(watchdog: list[Daemon]) -> None:
    agent = FakeAgent([Step("a", "products", 60), Step("a", "orders", 60), Step("b", "stock", 60),
                       Step("b", "orders", 60), Step("a", "order-events", 60)])
    daemon = Daemon(agent)  # type: ignore[arg-type]
    run_until(daemon, lambda: len(agent.starts()) == 5, watchdog)
    assert [(e.channel, e.flow) for e in agent.starts()] == [
        ("a", "orders"), ("b", "orders"), ("a", "order-events"), ("a", "products"), ("b", "stock")]


def test_a_step_longer_than_its_interval_is_not_run_back_to_back(watchdog: list[Daemon]) -> None:
    step = Step("a", "stock", 0.2)
    agent = FakeAgent([step], refill={("a", "stock"): 1}, page_time={("a", "stock"): 0.5})
    daemon = Daemon(agent)  # type: ignore[arg-type]
    run_until(daemon, lambda: len(agent.starts()) == 3, watchdog)
    starts = [e.at for e in agent.events if e.what == "start"]
    ends = [e.at for e in agent.events if e.what == "end"]
    assert len(starts) == len(ends) == 3
    for end, next_start in zip(ends, starts[1:], strict=False):
        # a 0.5 s run of a 0.2 s step: the missed runs are not made up; the next one is one interval later
        assert next_start - end >= 0.15, (end, next_start)
    assert sorted(starts + ends) == [x for pair in zip(starts, ends, strict=True) for x in pair]  # never overlapped


def test_a_step_in_progress_is_not_started_again(watchdog: list[Daemon]) -> None:
    step = Step("a", "products", 60)
    agent = FakeAgent([step], pages={("a", "products"): 2})
    daemon = Daemon(agent)  # type: ignore[arg-type]
    job = daemon.jobs[("a", "products")]
    agent.inside = job.run  # the same job fired again while it runs (a re-entrant call)
    run_until(daemon, lambda: len(agent.starts()) >= 1, watchdog)
    assert len(agent.starts()) == 1
    assert agent.sent[("a", "products")] == [0, 1]


def test_a_slow_push_yields_to_another_channels_due_step_and_resumes_at_once(watchdog: list[Daemon]) -> None:
    slow, fast = ("slow", "products"), ("fast", "orders")
    agent = FakeAgent([Step("slow", "products", 3600), Step("fast", "orders", 0.2)],
                      pages={slow: 12}, refill={fast: 1}, page_time={slow: 0.1, fast: 0.01})
    results: list[StepResult] = []
    daemon = Daemon(agent, on_result=results.append)  # type: ignore[arg-type]
    run_until(daemon, lambda: agent.pages.get(slow) == 0 and len(agent.starts("fast")) >= 5, watchdog)

    slow_pages = [e.at for e in agent.events if e.what == "page" and e.channel == "slow"]
    fast_runs = [e.at for e in agent.starts("fast")]
    during = [t for t in fast_runs if slow_pages[0] < t < slow_pages[-1]]
    assert len(during) >= 3, "the fast channel's orders waited for the whole slow push"
    assert agent.sent[slow] == list(range(12)), "every page of the slow push recorded once, in order"
    # the slow push went on right after the fast step each time, not an hour (its interval) later
    assert slow_pages[-1] - slow_pages[0] < 4.0
    assert any(r.details.get("yielded") for r in results if r.channel == "slow")
    # one page at most between a due fast run and the slow step giving way
    gaps = [b - a for a, b in zip(slow_pages, slow_pages[1:], strict=False)]
    assert max(gaps) < 1.0


def test_two_long_pushes_do_not_hand_the_turn_back_and_forth(watchdog: list[Daemon]) -> None:
    a, b = ("a", "products"), ("b", "products")
    agent = FakeAgent([Step("a", "products", 3600), Step("b", "products", 3600)], pages={a: 5, b: 5},
                      page_time={a: 0.02, b: 0.02})
    daemon = Daemon(agent)  # type: ignore[arg-type]
    run_until(daemon, lambda: agent.pages[a] == agent.pages[b] == 0, watchdog)
    # a gives way once (b was due too); b, merely waited for by a's resumption, runs to its end
    assert [(e.channel, e.flow) for e in agent.starts()] == [a, b, a]
    assert agent.sent[a] == agent.sent[b] == list(range(5))
    assert daemon.resume == {}


def test_an_orders_step_that_gave_way_goes_on_before_a_push_runs_to_its_end(watchdog: list[Daemon]) -> None:
    orders, push = ("a", "orders"), ("b", "products")
    agent = FakeAgent([Step("a", "orders", 3600), Step("b", "products", 3600)], pages={orders: 3, push: 10},
                      page_time={orders: 0.02, push: 0.02})
    daemon = Daemon(agent)  # type: ignore[arg-type]
    run_until(daemon, lambda: agent.pages[orders] == agent.pages[push] == 0, watchdog)
    assert [(e.channel, e.flow) for e in agent.starts()] == [orders, push, orders, push]
    pages = [(e.channel, e.flow) for e in agent.events if e.what == "page"]
    assert pages[:5] == [orders, push, orders, orders, push], "the push gives the orders their turn after one page"


def test_intake_of_the_same_channel_interrupts_a_catalogue_push(watchdog: list[Daemon]) -> None:
    push, orders = ("a", "stock"), ("a", "orders")
    agent = FakeAgent([Step("a", "stock", 3600), Step("a", "orders", 0.2)], pages={push: 8},
                      refill={orders: 1}, page_time={push: 0.1})
    daemon = Daemon(agent)  # type: ignore[arg-type]
    run_until(daemon, lambda: agent.pages.get(push) == 0, watchdog)
    push_pages = [e.at for e in agent.events if e.what == "page" and e.channel == "a" and e.flow == "stock"]
    assert [t for t in (e.at for e in agent.starts("a", "orders")) if push_pages[0] < t < push_pages[-1]]


def test_stop_request_ends_the_step_after_the_page_in_hand(watchdog: list[Daemon]) -> None:
    key = ("a", "products")
    agent = FakeAgent([Step("a", "products", 60)], pages={key: 50}, page_time={key: 0.01})
    daemon = Daemon(agent)  # type: ignore[arg-type]
    watchdog.append(daemon)
    agent.inside = daemon.request_stop  # SIGTERM arrives while the first page is being sent
    started = time.monotonic()
    daemon.run()
    assert time.monotonic() - started < 2
    assert agent.sent[key] == [0], "the page in hand is recorded, then the step stops"
    assert daemon.resume == {}, "a stop is not a yield: nothing is queued"


def test_reload_rebuilds_steps_and_keeps_the_timing_of_unchanged_ones(watchdog: list[Daemon]) -> None:
    agent = FakeAgent([Step("a", "orders", 60), Step("a", "products", 60)])
    new_config = SimpleNamespace(steps=[Step("a", "orders", 60), Step("a", "stock", 30), Step("b", "orders", 60)],
                                 log=None, secrets=())
    daemon = Daemon(agent, load=lambda path: new_config)  # type: ignore[arg-type, return-value]
    run_until(daemon, lambda: len(agent.starts()) == 2, watchdog)
    before = daemon.jobs[("a", "orders")].next_run
    daemon.request_reload()
    daemon.stopping = False
    run_until(daemon, lambda: len(agent.starts()) == 4, watchdog)
    assert agent.reloaded == [new_config] and daemon.reloads == 1
    assert set(daemon.jobs) == {("a", "orders"), ("a", "stock"), ("b", "orders")}
    assert daemon.jobs[("a", "orders")].next_run == before, "an unchanged step keeps its schedule"
    assert [(e.channel, e.flow) for e in agent.starts()][2:] == [("b", "orders"), ("a", "stock")]


def test_an_invalid_config_on_reload_is_logged_and_the_old_one_keeps_running(
        watchdog: list[Daemon], caplog: pytest.LogCaptureFixture) -> None:
    agent = FakeAgent([Step("a", "orders", 0.2)], refill={("a", "orders"): 1})

    def broken(path: Path) -> Any:
        raise ConfigProblems([Problem(str(path), 7, "channels[0].flows.orders.every", "a duration", "'soon'"),
                              Problem(str(path), 9, "channels[0].api_key", "a string", "nothing")])

    daemon = Daemon(agent, load=broken, config_path="/etc/syncagent/syncagent.yaml")  # type: ignore[arg-type]
    daemon.request_reload()
    with caplog.at_level(logging.ERROR, logger="syncagent.scheduler"):
        run_until(daemon, lambda: len(agent.starts()) == 3, watchdog)
    text = caplog.text
    assert "/etc/syncagent/syncagent.yaml:7: channels[0].flows.orders.every" in text
    assert "/etc/syncagent/syncagent.yaml:9: channels[0].api_key" in text
    assert "previous configuration" in text
    assert agent.reloaded == [] and daemon.reloads == 0 and set(daemon.jobs) == {("a", "orders")}


def test_a_rebuild_that_fails_on_reload_keeps_the_running_config(
        watchdog: list[Daemon], caplog: pytest.LogCaptureFixture) -> None:
    agent = FakeAgent([Step("a", "orders", 60)])

    def explode(config: Any) -> None:
        raise RuntimeError("connector module missing")

    agent.reload = explode  # type: ignore[method-assign]
    daemon = Daemon(agent, load=lambda path: SimpleNamespace(steps=[]))  # type: ignore[arg-type, return-value]
    daemon.request_reload()
    with caplog.at_level(logging.ERROR, logger="syncagent.scheduler"):
        run_until(daemon, lambda: len(agent.starts()) == 1, watchdog)
    assert "RuntimeError: connector module missing" in caplog.text and "previous configuration" in caplog.text
    assert set(daemon.jobs) == {("a", "orders")} and daemon.reloads == 0


def test_a_notification_wakes_its_step_at_once_and_once_more_when_it_came_during_the_step(
        watchdog: list[Daemon]) -> None:
    agent = FakeAgent([Step("a", "orders", 3600), Step("a", "products", 3600)])
    daemon = Daemon(agent)  # type: ignore[arg-type] - the real sleep: a wake cuts the nap short
    woke: list[bool] = []

    def wake_later() -> None:
        if len(agent.starts("a", "orders")) == 1 and not woke:
            woke.append(True)
            daemon.wake("a", "orders")  # while its first run is still going on
            daemon.wake("a", "nothing")  # a step that does not exist: ignored
    agent.inside = wake_later
    started = time.monotonic()
    run_until(daemon, lambda: len(agent.starts("a", "orders")) == 2, watchdog)
    assert time.monotonic() - started < 5  # not an hour: the wake during the run made it due again

    daemon.stopping = False
    run_until(daemon, lambda: len(agent.starts("a", "products")) == 1, watchdog)  # its first run, due at start
    daemon.stopping = False
    threading.Timer(0.3, lambda: daemon.wake("a", "products")).start()
    started = time.monotonic()
    run_until(daemon, lambda: len(agent.starts("a", "products")) == 2, watchdog)
    assert time.monotonic() - started < 5  # the nap was cut short by the notification
