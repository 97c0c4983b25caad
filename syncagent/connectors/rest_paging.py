"""The pagination kinds of a REST channel: how each feed is read, page by page, and where it resumes.

`AfterSeq` (a growing change number), `Keyset` (an opaque next key), `OffsetLimit` and
`PageNumber` (listings read whole each cycle), `DateWindow` ("changed since" the latest time
read), `Queue` (one head at a time, gone once acknowledged). Each bounds itself: a listing that
never ends, a page served again or a queue head not yet acknowledged never makes a pull loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from syncagent.connectors.common import KeyOf, body_of, refused
from syncagent.errors import MappingError, PermanentError
from syncagent.model import parse_time, time_str

if TYPE_CHECKING:
    from syncagent.connectors.rest import RestConnector


# -- pagination kinds -------------------------------------------------------------------------------
class Paging(Protocol):
    def pages(self, conn: RestConnector, feed: Feed, entity: str, cursor: str | None
              ) -> Iterator[tuple[list[Any], str | None]]: ...


@dataclass(frozen=True, slots=True)
class AfterSeq:
    """A feed of items numbered by a growing ``seq``: ``?after=<last seq>&limit=``; a short page ends it.

    Each page's cursor is the highest seq it held (None when it held none past the cursor).
    """

    param: str = "after"
    field: str = "seq"

    def pages(self, conn: RestConnector, feed: Feed, entity: str, cursor: str | None
              ) -> Iterator[tuple[list[Any], str | None]]:
        try:
            after = int(cursor or 0)
        except ValueError:
            raise PermanentError(f"{conn.name}: {entity} cursor {str(cursor)[:40]!r} is not a seq number",
                                 code="bad_cursor") from None
        path, size = feed.path, feed.limit or conn.page_size
        while True:
            what = f"GET {path}"
            resp = conn.client.get(path, params={self.param: after, "limit": size})
            if resp.status != 200:
                raise refused(conn.client, what, resp)
            items = body_of(conn.client, what, resp)["items"]
            seqs = [s for s in (self._seq(i) for i in items) if s is not None]
            last = max(seqs, default=after)
            moved = last > after
            yield items, str(last) if moved else None
            # a short page is the end for now; a page that does not move the cursor would loop forever
            if len(items) < size or not moved:
                return
            after = last

    def _seq(self, item: Any) -> int | None:
        seq = item.get(self.field) if isinstance(item, dict) else None
        return seq if isinstance(seq, int) and not isinstance(seq, bool) else None


@dataclass(frozen=True, slots=True)
class Keyset:
    """A listing keyset by key: ``?after_key=&limit=`` and ``next_after_key``; read whole, no cursor kept.

    A collection with no change feed is a source read from its start every cycle: its pages carry
    no cursor, and the engine sends only what differs from what it last wrote.
    """

    param: str = "after_key"
    next_field: str = "next_after_key"

    def pages(self, conn: RestConnector, feed: Feed, entity: str, cursor: str | None
              ) -> Iterator[tuple[list[Any], str | None]]:
        path = feed.path.format(entity=entity)
        after: str | None = None
        while True:
            what = f"GET {path}"
            params: dict[str, Any] = {"limit": feed.limit or conn.page_size}
            if after is not None:
                params[self.param] = after
            resp = conn.client.get(path, params=params)
            if resp.status != 200:
                raise refused(conn.client, what, resp)
            body = body_of(conn.client, what, resp)
            yield list(body["items"]), None
            nxt = body.get(self.next_field)
            if not isinstance(nxt, str) or not nxt or nxt == after:
                return
            after = nxt


def _items_of(conn: RestConnector, what: str, resp: Any, field: str | None) -> tuple[list[Any], dict[str, Any]]:
    """The items of a 200 answer (a list body, or the list under `field`) and the body as a dict."""
    if resp.status != 200:
        raise refused(conn.client, what, resp)
    if field is None:
        body = resp.json()
        if not isinstance(body, list):
            raise PermanentError(f"{conn.name}: {what} answered {type(body).__name__}, not a list",
                                 code="bad_response")
        return body, {}
    body = body_of(conn.client, what, resp, field)
    return list(body[field]), body


@dataclass(frozen=True, slots=True)
class OffsetLimit:
    """A listing by ``?offset=&limit=``, read whole every time (no cursor kept): a short page or the total ends it.

    items: the body's field holding the list (None: the body is the list); total: the field with the
    count of all records, if the API gives one. `params` are fixed query parameters (a sort order).
    """

    offset_param: str = "offset"
    limit_param: str = "limit"
    items: str | None = "items"
    total: str | None = None
    params: tuple[tuple[str, str], ...] = ()
    first: int = 0

    def pages(self, conn: RestConnector, feed: Feed, entity: str, cursor: str | None
              ) -> Iterator[tuple[list[Any], str | None]]:
        yield from ((items, None) for items, _ in self.walk(conn, feed, entity, dict(self.params)))

    def walk(self, conn: RestConnector, feed: Feed, entity: str, params: dict[str, Any]
             ) -> Iterator[tuple[list[Any], dict[str, Any]]]:
        """Pages (items, body) of the listing filtered by `params`; stops by itself on a server that never ends."""
        path, size = feed.path.format(entity=entity), feed.limit or conn.page_size
        offset = self.first
        for _ in range(MAX_PAGES):
            what = f"GET {path}"
            resp = conn.client.get(path, params={**params, self.offset_param: offset, self.limit_param: size})
            items, body = _items_of(conn, what, resp, self.items)
            yield items, body
            offset += len(items)
            total = body.get(self.total) if self.total else None
            if len(items) < size or (isinstance(total, int) and offset - self.first >= total):
                return
        raise PermanentError(f"{conn.name}: GET {path} did not end after {MAX_PAGES} pages", code="endless_listing")


@dataclass(frozen=True, slots=True)
class PageNumber:
    """A listing by ``?page=N&limit=`` from page `first`, read whole every time: a short or empty page ends it."""

    param: str = "page"
    size_param: str = "limit"
    first: int = 1
    items: str | None = "items"
    params: tuple[tuple[str, str], ...] = ()

    def pages(self, conn: RestConnector, feed: Feed, entity: str, cursor: str | None
              ) -> Iterator[tuple[list[Any], str | None]]:
        path, size = feed.path.format(entity=entity), feed.limit or conn.page_size
        previous: list[Any] | None = None
        for page in range(self.first, self.first + MAX_PAGES):
            what = f"GET {path}"
            resp = conn.client.get(path, params={**dict(self.params), self.param: page, self.size_param: size})
            items, _ = _items_of(conn, what, resp, self.items)
            if items and items == previous:  # a server that answers the last page for any number past it
                return
            yield items, None
            if len(items) < size:
                return
            previous = items
        raise PermanentError(f"{conn.name}: GET {path} did not end after {MAX_PAGES} pages", code="endless_listing")


@dataclass(frozen=True, slots=True)
class DateWindow:
    """A feed filtered by "changed since": ``?<since>=<cursor>`` sorted oldest first, paged by offset inside.

    The cursor is the latest `field` time read so far, so the next cycle asks again from that
    instant: records sharing it come again, which the journal makes harmless, and none is skipped.
    `start` is the first cycle's lower bound (None: no bound, the whole history).
    """

    since_param: str
    field: str
    inner: OffsetLimit = OffsetLimit()
    start: str | None = None

    def pages(self, conn: RestConnector, feed: Feed, entity: str, cursor: str | None
              ) -> Iterator[tuple[list[Any], str | None]]:
        since = cursor or self.start
        try:
            latest: datetime | None = parse_time(since, "cursor") if since else None
        except MappingError:
            raise PermanentError(f"{conn.name}: {entity} cursor {str(since)[:40]!r} is not a date-time",
                                 code="bad_cursor") from None
        params = dict(self.inner.params)
        if since:
            params[self.since_param] = since
        for items, _ in self.inner.walk(conn, feed, entity, params):
            for item in items:
                when = item.get(self.field) if isinstance(item, dict) else None
                try:
                    stamp = parse_time(when, self.field) if isinstance(when, str) else None
                except MappingError:
                    stamp = None  # the item is quarantined by its parser; the window does not move for it
                if stamp is not None and (latest is None or stamp > latest):
                    latest = stamp
            yield items, time_str(latest) if latest is not None else None


@dataclass(frozen=True, slots=True)
class Queue:
    """A queue read one head at a time (``GET path`` answers the oldest unacknowledged item, or nothing).

    The item leaves the queue only when the engine acknowledges it (`order-acks`, after the back office
    has it), so a crash before that reads it again. A head that comes back before it was acknowledged
    (an ack that failed, or that the engine holds) ends the pull, so a queue never loops.
    `empty`: the statuses meaning "nothing queued"; items: the field holding the item (None: the body).
    """

    items: str | None = None
    empty: tuple[int, ...] = (204, 404)
    key: str = "id"
    max_items: int = 1000

    def pages(self, conn: RestConnector, feed: Feed, entity: str, cursor: str | None
              ) -> Iterator[tuple[list[Any], str | None]]:
        path = feed.path.format(entity=entity)
        seen: set[str] = set()
        for _ in range(self.max_items):
            resp = conn.client.get(path)
            if resp.status in self.empty:
                return
            if resp.status != 200:
                raise refused(conn.client, f"GET {path}", resp)
            body = resp.json()
            item = body.get(self.items) if self.items and isinstance(body, dict) else body
            if item is None or item == {} or item == []:
                return
            head = item.get(self.key) if isinstance(item, dict) else None
            if head is None or str(head) in seen:
                if head is None:
                    yield [item], None  # quarantined by its parser; it cannot be told apart, so read no further
                return
            seen.add(str(head))
            yield [item], None


MAX_PAGES = 100_000  # a listing longer than this is a server that never ends, not a catalogue


@dataclass(frozen=True, slots=True)
class Feed:
    """One readable entity: where, how it pages, how an item becomes a model object, and its key."""

    path: str  # may name {entity}
    paging: Paging
    parse: Callable[[dict[str, Any]], Any] | None = None  # None: items as they are (a listing)
    key: str | KeyOf = "key"
    limit: int | None = None  # page size; None: the connector's page_size
