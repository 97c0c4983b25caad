"""The paging kinds of the REST base: each reads its whole feed once, never loops, and resumes where it should."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import responses

from syncagent.connectors.base import Capabilities
from syncagent.connectors.rest import (
    DateWindow,
    Feed,
    OffsetLimit,
    PageNumber,
    Queue,
    RestConnector,
    StaticKey,
)
from syncagent.errors import PermanentError
from syncagent.http import HttpSettings
from syncagent.model import BadRecord

URL = "http://hub.test"


def parse(item: dict[str, Any]) -> str:
    if "bad" in item:
        raise ValueError("bad item")
    return str(item["id"])


class Hub(RestConnector):
    type_name = "hub"
    capabilities = Capabilities(pull=frozenset({"orders", "products", "queue", "listed"}))
    auth: ClassVar[Any] = StaticKey("X-Key", "key")
    check_path = "/ping"
    max_page = 2
    feeds: ClassVar[Any] = {
        "products": Feed("/products", OffsetLimit(items="data", total="total"), parse, "id"),
        "listed": Feed("/skus", PageNumber(items=None), parse, "id"),
        "orders": Feed("/orders", DateWindow("updated_from", "updated_at",
                                             OffsetLimit(params=(("sort", "updated_asc"),))), parse, "id"),
        "queue": Feed("/queue/next", Queue(), parse, "id"),
    }


def hub() -> Hub:
    return Hub("hub", URL, {"key": "k-123"}, HttpSettings(max_attempts=1), sleep=lambda s: None)


@responses.activate
def test_offset_limit_reads_until_the_total() -> None:
    responses.get(URL + "/products", json={"data": [{"id": 1}, {"id": 2}], "total": 4})
    responses.get(URL + "/products", json={"data": [{"id": 3}, {"id": 4}], "total": 4})
    pages = list(hub().pull("products", "ignored"))
    assert [p.records for p in pages] == [["1", "2"], ["3", "4"]] and all(p.cursor is None for p in pages)
    assert "offset=2" in responses.calls[1].request.url and len(responses.calls) == 2  # the total ended it


@responses.activate
def test_page_number_stops_at_a_short_page_and_at_a_page_served_again() -> None:
    responses.get(URL + "/skus", json=[{"id": "a"}, {"id": "b"}])
    responses.get(URL + "/skus", json=[{"id": "c"}, {"id": "d"}])
    responses.get(URL + "/skus", json=[{"id": "c"}, {"id": "d"}])  # past the end, the last page again
    pages = list(hub().pull("listed", None))
    assert [p.records for p in pages] == [["a", "b"], ["c", "d"]]
    assert "page=3" in responses.calls[2].request.url


@responses.activate
def test_date_window_resumes_from_the_latest_time_read_and_a_bad_item_is_quarantined() -> None:
    responses.get(URL + "/orders", json={"items": [{"id": 1, "updated_at": "2026-12-01T10:00:00Z"},
                                                   {"id": 2, "bad": 1, "updated_at": "nonsense"}]})
    responses.get(URL + "/orders", json={"items": [{"id": 3, "updated_at": "2026-12-01T11:30:00-03:00"}]})
    pages = list(hub().pull("orders", "2026-12-01T09:00:00Z"))
    assert [p.cursor for p in pages] == ["2026-12-01T10:00:00Z", "2026-12-01T14:30:00Z"]
    assert isinstance(pages[0].records[1], BadRecord)
    first = responses.calls[0].request.url
    assert "updated_from=2026-12-01T09%3A00%3A00Z" in first and "sort=updated_asc" in first
    with pytest.raises(PermanentError, match="is not a date-time"):
        list(hub().pull("orders", "yesterday"))


@responses.activate
def test_a_queue_is_read_head_by_head_and_a_head_not_yet_acknowledged_ends_the_pull() -> None:
    responses.get(URL + "/queue/next", json={"id": "o1"})
    responses.get(URL + "/queue/next", json={"id": "o2"})
    responses.get(URL + "/queue/next", json={"id": "o2"})  # o2 not acknowledged: the queue serves it again
    assert [p.records for p in hub().pull("queue", None)] == [["o1"], ["o2"]]
    responses.replace(responses.GET, URL + "/queue/next", status=204)
    assert list(hub().pull("queue", None)) == []
