"""One read of a feed for every channel: the shared reader's cache, single flight and bounds; the turns."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import Any

from syncagent.engine.shared import SharedReader, Turns, network_wait
from syncagent.model import Page


class Feed:
    """A source of `pages` pages; counts what it reads, each page by the cursor asked."""

    def __init__(self, pages: int, gate: threading.Event | None = None) -> None:
        self.pages, self.gate = pages, gate
        self.reads: list[str | None] = []

    def pull(self, entity: str, cursor: str | None, filters: Mapping[str, Any] | None = None) -> Iterator[Page]:
        n = int(cursor or 0)
        while n < self.pages:
            if self.gate is not None:
                self.gate.wait(5)
            self.reads.append(cursor)
            n += 1
            nxt = str(n) if n < self.pages else None
            yield Page([f"{entity}-{n}"], nxt)
            cursor = nxt


def cursors(pages: Iterator[Page]) -> list[str | None]:
    return [p.cursor for p in pages]


def test_outside_a_cycle_every_read_goes_to_the_source() -> None:
    feed = Feed(3)
    shared = SharedReader(feed)  # type: ignore[arg-type]
    assert cursors(shared.pull("products", None)) == ["1", "2", None]
    assert cursors(shared.pull("products", None)) == ["1", "2", None]
    assert len(feed.reads) == 6 and len(shared) == 0


def test_in_a_cycle_each_page_is_read_once_and_a_channel_resumes_at_its_own_cursor() -> None:
    feed = Feed(4)
    shared = SharedReader(feed)  # type: ignore[arg-type]
    shared.takers = 3  # three steps side by side: a page stays until the three took it
    with shared.cycle():
        first = list(shared.pull("products", None))
        second = list(shared.pull("products", None))
        later = list(shared.pull("products", "2"))  # a channel further on: only its pages
        list(shared.pull("products", None, {"warehouses": ["A"]}))
    assert [p.records for p in first] == [p.records for p in second]
    assert all(a is b for a, b in zip(first, second, strict=True))  # the very same pages, parsed once
    assert cursors(iter(later)) == ["3", None]
    assert feed.reads == [None, "1", "2", "3", None, "1", "2", "3"]  # the other filters are another feed
    assert len(shared) == 0  # nothing kept after the cycle
    assert shared.fetched == 8 and shared.served == 6


def test_the_cache_is_bounded_and_a_channel_left_behind_reads_for_itself() -> None:
    feed = Feed(30)
    shared = SharedReader(feed, max_pages=5)  # type: ignore[arg-type]
    shared.takers = 2
    with shared.cycle():
        assert len(list(shared.pull("products", None))) == 30
        assert len(shared) == 5
        assert len(list(shared.pull("products", None))) == 30  # its early pages were dropped: read again
        assert len(shared) == 0  # the pages it read again are not kept: the first step had them already
    assert len(feed.reads) == 30 + 25  # the last five came from the cache


def test_pages_older_than_max_age_are_read_again() -> None:
    now = [0.0]
    feed = Feed(1)
    shared = SharedReader(feed, max_age=30, clock=lambda: now[0])  # type: ignore[arg-type]
    with shared.cycle():
        list(shared.pull("stock", None))
        now[0] = 31
        list(shared.pull("stock", None))
    assert feed.reads == [None, None]


def test_two_steps_asking_for_the_same_page_at_once_share_one_read() -> None:
    gate = threading.Event()
    feed = Feed(1, gate)
    shared = SharedReader(feed)  # type: ignore[arg-type]
    got: list[list[Any]] = []
    with shared.cycle():
        threads = [threading.Thread(target=lambda: got.append(list(shared.pull("products", None))))
                   for _ in range(3)]
        for t in threads:
            t.start()
        gate.set()
        for t in threads:
            t.join(5)
    assert feed.reads == [None] and len(got) == 3


def test_turns_let_one_step_work_while_another_waits_on_the_network() -> None:
    journal_busy = [False]
    turns = Turns(lambda: journal_busy[0])
    order: list[str] = []
    waiting = threading.Event()
    done = threading.Event()

    def slow() -> None:
        with turns.hold():
            order.append("slow starts")
            with network_wait():  # its channel is slow to answer
                waiting.set()
                done.wait(5)
            order.append("slow ends")

    def quick() -> None:
        waiting.wait(5)
        with turns.hold():
            order.append("quick works")
        done.set()

    threads = [threading.Thread(target=slow), threading.Thread(target=quick)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert order == ["slow starts", "quick works", "slow ends"]


def test_a_turn_is_kept_inside_a_journal_transaction() -> None:
    turns = Turns(lambda: True)  # a transaction is open
    with turns.hold():
        with network_wait():
            t = threading.Thread(target=lambda: turns.hold().__enter__() and None)
            t.daemon = True
            t.start()
            t.join(0.2)
        assert t.is_alive()  # the other step could not take the turn


def test_a_failed_read_fails_the_steps_waiting_for_it_without_a_second_read() -> None:
    gate = threading.Event()

    class Failing(Feed):
        def pull(self, entity: str, cursor: str | None, filters: Mapping[str, Any] | None = None) -> Iterator[Page]:
            gate.wait(5)
            self.reads.append(cursor)
            raise OSError("the back office is down")
            yield  # pragma: no cover

    feed = Failing(1)
    shared = SharedReader(feed)  # type: ignore[arg-type]
    errors: list[BaseException] = []

    def step() -> None:
        try:
            list(shared.pull("products", None))
        except OSError as exc:
            errors.append(exc)

    with shared.cycle():
        threads = [threading.Thread(target=step) for _ in range(3)]
        for t in threads:
            t.start()
        gate.set()
        for t in threads:
            t.join(5)
    assert len(errors) == 3 and feed.reads == [None]


def test_a_page_every_step_side_by_side_took_is_dropped_at_once() -> None:
    feed = Feed(5)
    shared = SharedReader(feed)  # type: ignore[arg-type]
    shared.takers = 2
    with shared.cycle():
        first = shared.pull("products", None)
        second = shared.pull("products", None)
        next(first)
        assert len(shared) == 1  # read, one of the two took it
        next(second)
        assert len(shared) == 0  # both took it: not kept
        list(first)
        list(second)
    assert len(feed.reads) == 5


def test_steps_one_after_the_other_share_only_the_feeds_last_page() -> None:
    feed = Feed(3)
    shared = SharedReader(feed)  # type: ignore[arg-type]
    with shared.cycle():
        list(shared.pull("products", None))
        assert len(shared) == 1  # the tail: what a quiet cycle reads on every channel
        list(shared.pull("products", "2"))  # another channel, at the end of the feed
    assert feed.reads == [None, "1", "2"]
