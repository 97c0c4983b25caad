"""The push pipeline's concurrency, in one place: a feed read ahead, and pages sent ahead.

Two helpers, each small enough to check by reading: `read_ahead` fetches a feed's next page in
one helper thread while the caller works on this one; `SendAhead` sends up to `width` pages in
sender threads while the caller maps and diffs the next, and hands them back to the caller to be
recorded strictly in page order. The journal is only ever touched by the caller's thread.
"""

from __future__ import annotations

import collections
import contextlib
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, Generic, Protocol, TypeVar

from syncagent.engine.shared import network_wait
from syncagent.errors import ChannelError

_NOTHING = object()  # the end of an iterator, told apart from any item


class Sendable(Protocol):
    """A unit of work a sender thread fills in; `error` is set when its send failed."""

    error: ChannelError | None


W = TypeVar("W", bound=Sendable)


class SendAhead(Generic[W]):
    """Up to `width` pages being sent while the caller prepares the next; recorded in page order.

    `send(work)` runs in a sender thread and must touch no journal; `record(work, cursor, failed)`
    runs in the caller's thread, oldest page first; `failed` says a page before it failed to send
    (its cursor must then stay where it is). A `record` that raises `ChannelError` marks the
    pipeline failed; closing records what is left (errors swallowed) and stops the threads.
    """

    def __init__(self, width: int, send: Callable[[W], W], record: Callable[[W, str | None, bool], None]) -> None:
        self.width = width
        self._send, self._record = send, record
        self._pool: ThreadPoolExecutor | None = None
        self._inflight: collections.deque[tuple[Future[W], str | None, W]] = collections.deque()
        self.failed = False  # after a page whose send failed, the cursor stays before it

    def __len__(self) -> int:
        return len(self._inflight)

    def in_flight(self) -> list[W]:
        """The pages sent or being sent, not yet recorded (what the next page is diffed against)."""
        return [work for _, _, work in self._inflight]

    def record_oldest(self) -> bool:
        """Record the oldest page in flight, if any (its send error is raised here)."""
        if not self._inflight:
            return False
        future, cursor, _ = self._inflight.popleft()
        if not future.done():
            with network_wait():  # the channel is still answering: steps of other channels work meanwhile
                wait([future])
        try:
            self._record(future.result(), cursor, self.failed)
        except BaseException:  # not only a send error: whatever stopped this page, no later page moves the cursor
            self.failed = True
            raise
        return True

    def record_all(self) -> bool:
        """Record every page in flight, in order; True if there was one."""
        recorded = False
        while self.record_oldest():
            recorded = True
        return recorded

    def make_room(self) -> None:
        """Wait until a sender is free; a page whose send failed ends the pipeline here (its error is raised)."""
        while len(self._inflight) > self.width:  # the oldest is slow: no pile of pages behind it
            self.record_oldest()
        while len(running := [f for f, _, _ in self._inflight if not f.done()]) >= self.width:
            with network_wait():
                wait(running, return_when=FIRST_COMPLETED)
        if any(f.done() and w.error is not None for f, _, w in self._inflight):
            self.record_all()  # a send failed: its error ends the step here, nothing more is sent

    def submit(self, work: W, cursor: str | None) -> None:
        """Send `work` in a sender thread; record the pages before it that are back from the channel."""
        self._pool = self._pool or ThreadPoolExecutor(self.width, thread_name_prefix="syncagent-send")
        self._inflight.append((self._pool.submit(self._send, work), cursor, work))
        while len(self._inflight) > 1 and self._inflight[0][0].done():
            self.record_oldest()

    def close(self) -> None:
        """Record the pages already sent, in order (their errors swallowed: the step already failed), then stop."""
        while self._inflight:
            with contextlib.suppress(ChannelError):
                self.record_oldest()
        if self._pool is not None:
            with network_wait():
                self._pool.shutdown(wait=True)


def read_ahead(source: Iterator[Any], more: Callable[[Any], bool] = lambda item: True) -> Iterator[Any]:
    """The items of `source`, the next one fetched by one helper thread while the caller works on this one.

    Only the helper touches `source` (the journal stays with the caller's thread); it holds at
    most one item ahead. An exception of `source` is raised here, in the caller's thread, after
    the items before it. Closing this generator stops the helper and waits for it, so nothing is
    read on once a step has ended. The first item is read here; when `more(first)` says it is
    the last (a feed's null cursor, e.g. each feed of a quiet cycle), no helper is started.
    """
    with network_wait():  # the first page is read here, in the caller's thread
        first = next(source, _NOTHING)
    if first is _NOTHING or not more(first):
        try:
            if first is not _NOTHING:
                yield first
                yield from source
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()
        return
    slot: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=1)
    stop, taken = threading.Event(), threading.Event()

    def hand_over(kind: str, value: Any) -> bool:
        """Put one item in the slot and wait until it is taken: the next is read only then (memory)."""
        taken.clear()
        while not stop.is_set():
            try:
                slot.put((kind, value), timeout=0.1)
                break
            except queue.Full:
                continue
        while not stop.is_set():
            if taken.wait(0.1):
                return not stop.is_set()
        return False

    def read() -> None:
        try:
            for item in source:
                if not hand_over("item", item):
                    return
            hand_over("end", None)
        except BaseException as exc:  # noqa: BLE001 - every failure goes to the caller, as it is
            hand_over("error", exc)
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    reader = threading.Thread(target=read, name="syncagent-read-ahead", daemon=True)
    reader.start()
    try:
        yield first
        while True:
            try:
                kind, value = slot.get_nowait()
            except queue.Empty:
                with network_wait():  # the helper still reads: steps of other channels work meanwhile
                    kind, value = slot.get()
            taken.set()
            if kind == "item":
                yield value
            elif kind == "error":
                raise value
            else:
                return
    finally:
        stop.set()
        with contextlib.suppress(queue.Empty):
            slot.get_nowait()  # a helper waiting to hand over an item sees the stop at once
        reader.join()
