"""Polling Mercado Livre's orders search by date windows, with a saved ``date|id`` cursor.

API.md L92-97: ``GET /orders/search`` pages by offset, and neither the largest ``limit`` nor a cap
on ``offset`` is published: pages stay at 50 and a window whose total would go deeper than
``max_offset`` is split in two until it fits. Windows are of last update, so an order that changes
(paid, then cancelled) is read again. Each poll starts ``overlap`` before the saved cursor, for
orders indexed late; an order read twice is harmless (the journal knows it). The cursor is the
last update and id of the newest order handed over, and never moves back.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from syncagent.connectors.mercadolivre_wire import json_of, refused
from syncagent.errors import PermanentError, TransientError
from syncagent.http import HttpClient

if TYPE_CHECKING:
    from syncagent.connectors.mercadolivre import MercadoLivreConnector
    from syncagent.connectors.rest import Feed

SEARCH = "/orders/search"
MIN_WINDOW = timedelta(seconds=1)

Key = tuple[datetime, int, str]


def stamp(moment: datetime) -> str:
    """ISO 8601 with an offset, as ML writes and reads dates (API.md L16, L93)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def _key(moment: datetime, order_id: str) -> Key:
    return moment, int(order_id) if order_id.isdigit() else 0, order_id


def parse_cursor(cursor: str | None) -> Key | None:
    if not cursor:
        return None
    when, _, order_id = cursor.partition("|")
    moment = _when(when)
    if moment is None:
        raise PermanentError(f"orders cursor {cursor[:60]!r} is not 'date|id'", code="bad_cursor")
    return _key(moment, order_id)


def cursor_of(key: Key) -> str:
    return f"{stamp(key[0])}|{key[2]}"


@dataclass(frozen=True, slots=True)
class DateWindows:
    """The paging of the orders search: (items, cursor) pages, oldest update first.

    The shape of the REST base's paging kinds (`pages(conn, feed, entity, cursor)`); not its
    `DateWindow`, which asks "changed since" with no upper bound and needs an oldest-first sort:
    ML's search is documented with both bounds and newest first, and an unknown offset cap.
    """

    since: timedelta = timedelta(days=30)
    window: timedelta = timedelta(hours=24)
    overlap: timedelta = timedelta(minutes=10)
    max_offset: int = 1000
    limit: int = 50

    def pages(self, conn: MercadoLivreConnector, feed: Feed, entity: str, cursor: str | None
              ) -> Iterator[tuple[list[Any], str | None]]:
        return self.walk(conn.client, feed.path, conn.seller(), cursor, conn.clock())

    def walk(self, client: HttpClient, path: str, seller: str, cursor: str | None, now: datetime
             ) -> Iterator[tuple[list[Any], str | None]]:
        floor = parse_cursor(cursor)
        start = floor[0] - self.overlap if floor else now - self.since
        mark: Key | None = None  # the end of the windows read empty since the last page handed over
        while start < now:
            end = min(start + self.window, now)
            items, end = self._window(client, path, seller, start, end)
            keyed = sorted(((self._item_key(item, start), item) for item in items), key=lambda pair: pair[0])
            mark = _key(end, "") if not keyed else None
            for i in range(0, len(keyed), self.limit):
                chunk = keyed[i:i + self.limit]
                newest = chunk[-1][0]
                moved = floor is None or newest > floor
                floor = newest if moved else floor
                yield [item for _, item in chunk], cursor_of(newest) if moved else None
            start = end
        if mark is not None and (floor is None or mark > floor):  # nothing new up to now: start there next time
            yield [], cursor_of(mark)

    def _item_key(self, item: Any, default: datetime) -> Key:
        if not isinstance(item, dict):
            return _key(default, "")
        moment = _when(item.get("last_updated") or item.get("date_last_updated")) or default
        return _key(moment, str(item.get("id") or ""))

    def _window(self, client: HttpClient, path: str, seller: str, start: datetime, end: datetime
                ) -> tuple[list[Any], datetime]:
        """Every order last updated in [start, end), the window narrowed while it is too deep to read."""
        collected: list[Any] = []
        offset = 0
        while True:
            params = {"seller": seller, "order.date_last_updated.from": stamp(start),
                      "order.date_last_updated.to": stamp(end), "sort": "date_desc", "offset": offset,
                      "limit": self.limit}
            resp = client.get(path, params=params)
            if resp.status != 200:
                raise refused(client, f"GET {path}", resp)
            body = json_of(client, resp, "the orders search")
            results = body.get("results") if isinstance(body, dict) else None
            paging = body.get("paging") if isinstance(body, dict) else None
            total = paging.get("total") if isinstance(paging, dict) else None
            if not isinstance(results, list) or not isinstance(total, int) or isinstance(total, bool):
                raise TransientError(f"{client.name}: GET {path}: the answer has no results list and paging total",
                                     code="bad_response")
            if offset == 0 and total > self.max_offset + self.limit and end - start > MIN_WINDOW:
                end = start + (end - start) / 2  # too deep to page through: half the window, read again
                continue
            collected += results
            offset += self.limit
            if not results or offset >= total or offset > self.max_offset:
                return collected, end
