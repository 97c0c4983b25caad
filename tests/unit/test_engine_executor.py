"""The push pipeline's executor: pages sent ahead in threads, recorded in page order by the caller."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest

from syncagent.engine.executor import SendAhead
from syncagent.errors import ChannelError, TransientError


@dataclass
class Work:
    name: str
    error: ChannelError | None = None


def test_pages_sent_out_of_order_are_recorded_in_page_order_in_the_callers_thread() -> None:
    release_first = threading.Event()
    recorded: list[tuple[str, str | None, bool, bool]] = []
    caller = threading.get_ident()

    def send(work: Work) -> Work:
        if work.name == "p1":
            assert release_first.wait(5)  # the first page is slow: the second is back first
        return work

    def record(work: Work, cursor: str | None, failed: bool) -> None:
        recorded.append((work.name, cursor, failed, threading.get_ident() == caller))

    sender: SendAhead[Work] = SendAhead(2, send, record)
    sender.submit(Work("p1"), "c1")
    sender.submit(Work("p2"), "c2")
    assert recorded == [] and len(sender) == 2 and [w.name for w in sender.in_flight()] == ["p1", "p2"]
    release_first.set()
    assert sender.record_all()
    sender.close()
    assert recorded == [("p1", "c1", False, True), ("p2", "c2", False, True)]
    assert not sender.record_all()


def test_after_a_failed_send_the_pages_behind_are_recorded_without_moving_the_cursor() -> None:
    recorded: list[tuple[str, bool]] = []
    gate = threading.Event()

    def send(work: Work) -> Work:
        if work.name == "p1":
            assert gate.wait(5)
            work.error = TransientError("channel down")
        return work

    def record(work: Work, cursor: str | None, failed: bool) -> None:
        recorded.append((work.name, failed))
        if work.error is not None:
            raise work.error

    sender: SendAhead[Work] = SendAhead(2, send, record)
    sender.submit(Work("p1"), "c1")
    sender.submit(Work("p2"), "c2")
    gate.set()
    with pytest.raises(TransientError):
        sender.record_all()  # the failed page's error reaches the caller when it is recorded
    sender.close()
    assert recorded == [("p1", False), ("p2", True)] and sender.failed


def test_make_room_keeps_at_most_width_pages_being_sent() -> None:
    gate = threading.Event()
    started: list[str] = []

    def send(work: Work) -> Work:
        started.append(work.name)
        assert gate.wait(5)
        return work

    sender: SendAhead[Work] = SendAhead(1, send, lambda work, cursor, failed: None)
    sender.submit(Work("p1"), "c1")
    threading.Timer(0.05, gate.set).start()
    sender.make_room()  # waits until p1 is sent
    assert started == ["p1"] and all(not w.error for w in sender.in_flight())
    sender.close()
