"""One read of a source feed for every channel: a bounded cache of the pages read, and the turn steps share.

Each channel keeps its own cursor: a step asks for the page *at its cursor*. The first step to ask
reads it from the source; a step of another channel asking for the same page (same feed, filters and
cursor) a moment later gets the very same page, parsed once. Pages are kept for steps running side
by side (each page until all of them took it) and, for steps one after the other, a feed's last page
(the one a quiet cycle reads on every channel). A page read while another thread reads
it waits for that read (single flight). The cache holds at most `max_pages` pages, none older than
`max_age` seconds: a channel that fell further behind (slow, failing, added later) reads the pages it
needs itself, from its own cursor; memory stays flat whatever the catalogue's size.

A served page is one the source gave for that cursor a moment ago: to the step that gets it, it is
as if it had run that moment earlier, which a change feed allows (what changed since comes after).

`Turns` lets steps of several channels run side by side while only one of them at a time works on
the journal: a step holds the turn while it maps, diffs and records, and gives it up while it waits
on the network (its channel's answer, the next page).
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from syncagent.connectors.base import Connector
from syncagent.model import Page

MAX_PAGES = 12  # pages kept: the spread between channels moving side by side (read ahead, pages in flight)
MAX_AGE = 30.0  # seconds: a page older than this is read again (a cycle's steps run well within it)

_Key = tuple[str, str, str | None]
_CURRENT = threading.local()  # the turns the thread's step takes part in, if any


def filters_key(filters: Mapping[str, Any] | None) -> str:
    """A stable text for a feed's filters (the same warehouses in another order are another feed: kept apart)."""
    if not filters:
        return ""
    return repr(sorted((k, repr(v)) for k, v in filters.items()))


class SharedReader:
    """The pages of a source's feeds, read once and handed to every step that asks for them."""

    def __init__(self, source: Connector, *, max_pages: int = MAX_PAGES, max_age: float = MAX_AGE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.source = source
        self.max_pages, self.max_age, self.clock = max_pages, max_age, clock
        self._pages: collections.OrderedDict[_Key, tuple[float, Page]] = collections.OrderedDict()
        self._reading: dict[_Key, _Flight] = {}
        self._lock = threading.Lock()
        self.fetched = 0  # pages read from the source
        self.served = 0  # pages handed over from the cache
        self.active = False  # pages are kept only during a cycle; outside one, each read goes to the source
        # steps side by side on this feed (0: not known): a page every one of them took is dropped at once
        self.takers = 0
        self._taken: dict[_Key, int] = {}

    @contextlib.contextmanager
    def cycle(self) -> Iterator[None]:
        """The steps run inside share the pages they read; none is kept after (the next cycle reads anew)."""
        if self.active:
            yield
            return
        self.begin()
        try:
            yield
        finally:
            self.end()

    def begin(self) -> None:
        self.active = True

    def end(self) -> None:
        self.active = False
        self.clear()

    def pull(self, entity: str, cursor: str | None, filters: Mapping[str, Any] | None = None) -> Iterator[Page]:
        """The feed from `cursor`, like the source's `pull`: each page from the cache or read from the source."""
        if not self.active:
            yield from self.source.pull(entity, cursor, filters)
            return
        fkey = filters_key(filters)
        # the source's own walk, kept while this pull reads page after page itself: what the source checks
        # across pages (a feed repeating its items under new cursors) sees them all, as without sharing
        # [generator, the last page it gave]: it stands at that page's cursor, read only when the next page
        # is asked for, so a step that recognises the page (its digest) has given it its cursor undecoded
        live: list[Any] = [None, None]

        def read(at: str | None) -> Page | None:
            stands = live[1].cursor if live[1] is not None else None
            if live[0] is None or live[1] is None or stands != at:
                self._close(live)
                live[0] = iter(self.source.pull(entity, at, filters))
            try:
                page = next(live[0], None)
            except BaseException:
                self._close(live)  # a walk that failed is not resumed: the next read starts afresh
                raise
            live[1] = page
            return page

        try:
            while True:
                page = self._page((entity, fkey, cursor), lambda c=cursor: read(c))
                if page is None:
                    return
                yield page
                if page.cursor is None:  # read once the step took the page: kept for the steps that follow
                    self._keep_tail((entity, fkey, cursor), page)
                if page.cursor is None or page.cursor == cursor:
                    return  # the feed's end (for now), as the source says it
                cursor = page.cursor
        finally:
            self._close(live)

    def clear(self) -> None:
        with self._lock:
            self._pages.clear()
            self._taken.clear()

    def _took(self, key: _Key) -> None:
        """One more step took this page (under the lock); once all the steps side by side did, it goes.

        The count outlives the page (a few bytes a page, for one cycle): a page read again by a step that
        fell behind is not kept for the steps that took it already."""
        if not self.takers:
            return
        count = self._taken[key] = self._taken.get(key, 0) + 1
        if count >= self.takers:
            self._pages.pop(key, None)

    def __len__(self) -> int:
        return len(self._pages)

    @staticmethod
    def _close(live: list[Any]) -> None:
        if live[0] is not None:
            with contextlib.suppress(Exception):
                live[0].close()
        live[0] = live[1] = None

    def _trim(self) -> None:
        """Under the lock: the oldest pages dropped past the cap."""
        while len(self._pages) > self.max_pages:
            self._pages.popitem(last=False)

    def _keep_tail(self, key: _Key, page: Page) -> None:
        """A feed's last page, kept for the steps one after the other (every quiet cycle reads it on each)."""
        if self.takers:
            return  # steps side by side: kept already, while they take it
        with self._lock:
            if key not in self._pages:
                self._pages[key] = (self.clock(), page)
                self._trim()

    def _page(self, key: _Key, read: Callable[[], Page | None]) -> Page | None:
        while True:
            with self._lock:
                found = self._pages.get(key)
                if found is not None and self.clock() - found[0] <= self.max_age:
                    self._pages.move_to_end(key)
                    self.served += 1
                    self._took(key)
                    return found[1]
                flight = self._reading.get(key)
                if flight is None:
                    flight = self._reading[key] = _Flight()
                    break
            flight.done.wait()  # another step reads this very page now: its page, or its failure, is shared
            if flight.error is not None:
                raise flight.error
        try:
            page = read()
            with self._lock:
                self.fetched += 1
                # kept for the steps side by side, or a feed's last page (every quiet cycle reads it on each
                # channel); a page of a step running alone has nobody to wait for it
                if page is not None and self.takers:
                    self._pages[key] = (self.clock(), page)
                    self._pages.move_to_end(key)
                    self._took(key)  # read again by one that fell behind: kept only for those still to take it
                    self._trim()
            return page
        except BaseException as exc:
            flight.error = exc  # the steps waiting for this page fail with it, not with a second read at once
            raise
        finally:
            with self._lock:
                del self._reading[key]
            flight.done.set()


class _Flight:
    """One read of a page in progress, and how it ended."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: BaseException | None = None


class Turns:
    """Steps of several channels side by side, one at a time on the journal (see the module docstring).

    `hold()` is the whole of a step's work; `waiting()` wraps what waits on the network in it. Given up
    only outside a journal transaction (`in_transaction` says), so a transaction is never shared.
    """

    def __init__(self, in_transaction: Callable[[], bool]) -> None:
        self._lock = threading.RLock()
        self._in_transaction = in_transaction
        self._mine = threading.local()

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        with self._lock:
            self._mine.held = True
            _CURRENT.turns = self
            try:
                yield
            finally:
                self._mine.held = False
                _CURRENT.turns = None

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        """Let the other steps work while this one waits (a no-op for a thread that holds no turn)."""
        if not getattr(self._mine, "held", False) or self._in_transaction():
            yield
            return
        self._mine.held = False
        self._lock.release()
        try:
            yield
        finally:
            self._lock.acquire()
            self._mine.held = True

    def pass_turn(self) -> None:
        """Between two pages: another step waiting for the turn gets it now."""
        with self.waiting():
            time.sleep(0)


def network_wait() -> contextlib.AbstractContextManager[None]:
    """Around a wait on the network: the other steps side by side work meanwhile (a no-op otherwise)."""
    turns: Turns | None = getattr(_CURRENT, "turns", None)
    return turns.waiting() if turns is not None else contextlib.nullcontext()


def pass_turn() -> None:
    """Between two pages of a step: the other steps side by side get their turn (a no-op otherwise)."""
    turns: Turns | None = getattr(_CURRENT, "turns", None)
    if turns is not None:
        turns.pass_turn()
