"""The fast paths of the feed parsers and the engine's read-ahead keep the slow paths' meaning."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncagent.connectors.base import Capabilities, Outgoing, PushResult
from syncagent.connectors.common import parse_items
from syncagent.connectors.gestao_lojas import parse_product
from syncagent.engine import ChannelSetup, Engine
from syncagent.engine.executor import read_ahead
from syncagent.errors import MappingError, TransientError
from syncagent.journal import Journal
from syncagent.model import BadRecord, Page, Product

GOOD = {"code": "P1", "description": "Caneca", "active": True}


@pytest.mark.parametrize("raw", [
    json.dumps({"items": [dict(GOOD, brand="\udcff")]}, ensure_ascii=True).encode(),  # a \udcff escape
    b'{"items": [{"code": "P1", "description": "Caneca", "active": true, "brand": "\\uD800x"}]}',  # upper case
    b'{"items": [{"code": "P1", "description": "Caneca", "active": true, "brand": "\xed\xa0\x80"}]}',
])
def test_a_lone_surrogate_is_found_from_the_raw_body(raw: bytes) -> None:
    items = json.loads(raw)["items"]
    (record,) = parse_items(items, parse_product, "code", raw=raw)
    assert isinstance(record, BadRecord) and record.code == "invalid_text"


def test_a_utf16_body_and_no_body_fall_back_to_the_full_check() -> None:
    items = [dict(GOOD, brand="\udcff"), dict(GOOD, code="P2")]
    raw = json.dumps({"items": items}, ensure_ascii=False).encode("utf-16", "surrogatepass")
    for given in (raw, None):
        bad, good = parse_items(json.loads(raw)["items"], parse_product, "code", raw=given)
        assert isinstance(bad, BadRecord) and bad.code == "invalid_text" and isinstance(good, Product)


def test_a_clean_page_and_an_emoji_are_not_bad_text() -> None:
    items: list[Any] = [dict(GOOD, brand="Caf\u00e9 \U0001f600")]
    for raw in (json.dumps({"items": items}).encode(), json.dumps({"items": items}, ensure_ascii=False).encode()):
        (record,) = parse_items(json.loads(raw)["items"], parse_product, "code", raw=raw)
        assert isinstance(record, Product) and record.brand == "Caf\u00e9 \U0001f600"


def _outcome(parse: Any, item: dict[str, Any]) -> Any:
    try:
        return parse(item)
    except MappingError as exc:
        return ("error", exc.code, exc.reason)
    except (TypeError, ValueError, ArithmeticError) as exc:
        return ("error", type(exc).__name__, str(exc))


WELL_FORMED = {
    "products": {"code": "P1", "description": "Caneca", "active": True, "barcode": "789", "brand": "B",
                 "group_code": "G", "unit": "CX", "ncm": "1", "weight_kg": "0.5", "height_cm": "1",
                 "width_cm": "2", "length_cm": "3"},
    "prices": {"sku": "P1", "list_price": "10.00", "promo_price": "9.00", "promo_start": "2026-01-01T00:00:00Z",
               "promo_end": "2026-02-01T00:00:00Z", "scheduled": [], "price_list": "atacado"},
    "stock": {"sku": "P1", "warehouse": "LJ01", "available": 5, "reserved": 1},
    "customers": {"document": "12345678909", "name": "Ana", "code": "C1", "email": "a@b.c", "phone": "1",
                  "birth_date": "2000-01-01", "state_registration": "ISENTO", "address": {"city": "X"}},
}
ODD_VALUES = [None, "", "  ", "x", "1.5", 0, 7, -3, 10**13, True, False, 1.5, [], [{}], {}, {"a": 1}]


@pytest.mark.parametrize("entity", sorted(WELL_FORMED))
def test_the_fast_parsers_decide_exactly_like_the_checked_ones(entity: str) -> None:
    from syncagent.connectors import gestao_lojas as gl

    fast = gl.PARSERS[entity][0]
    checked = getattr(gl, f"_{fast.__name__}_checked")
    base = WELL_FORMED[entity]
    assert _outcome(fast, base) == _outcome(checked, base) and not isinstance(_outcome(fast, base), tuple)
    for name in list(base) + ["unknown"]:
        for value in ODD_VALUES:
            item = dict(base, **{name: value})
            assert _outcome(fast, item) == _outcome(checked, item), (name, value)
            del item[name]
            assert _outcome(fast, item) == _outcome(checked, item), (name, "absent")


# -- the engine's read-ahead of feed pages -----------------------------------------------------------
class _Feed:
    """A back office feed that notes which thread read each page and whether it was closed."""

    def __init__(self, pages: int, fail_at: int | None = None) -> None:
        self.pages, self.fail_at = pages, fail_at
        self.read: list[int] = []
        self.threads: set[int] = set()
        self.closed = threading.Event()

    def pull(self, entity: str, cursor: str | None, filters: Any = None) -> Iterator[Page]:
        try:
            for k in range(int(cursor or 0), self.pages):
                self.threads.add(threading.get_ident())
                if k == self.fail_at:
                    raise TransientError(f"page {k} lost")
                self.read.append(k)
                yield Page([Product(f"P{k}", "name", True)], str(k + 1) if k + 1 < self.pages else None)
        finally:
            self.closed.set()


class _Sink:
    capabilities = Capabilities(max_batch=100)
    name = "loja"

    def __init__(self) -> None:
        self.threads: set[int] = set()
        self.sent: list[str] = []

    def prepare(self, entity: str, record: Any) -> Outgoing:
        return Outgoing(record.code, {"name": record.name})

    def push(self, entity: str, batch: Any) -> list[PushResult]:
        self.threads.add(threading.get_ident())
        self.sent += [o.key for o in batch]
        return [PushResult(o.key, "created") for o in batch]


@pytest.fixture
def step(tmp_path: Path) -> Iterator[tuple[Engine, _Sink, Journal]]:
    journal = Journal(tmp_path / "j.db")
    sink = _Sink()
    engine = Engine(journal, None, {"loja": ChannelSetup("loja", sink)})  # type: ignore[arg-type, dict-item]
    yield engine, sink, journal
    journal.close()


def test_read_ahead_hands_over_every_page_in_order_and_reads_in_its_own_thread(step: Any) -> None:
    engine, sink, journal = step
    engine.backoffice = feed = _Feed(5)
    result = engine.run_step("loja", "products")
    assert result.ok and sink.sent == ["P0", "P1", "P2", "P3", "P4"] and journal.cursor("loja", "products") == "4"
    # the first page is read in the step's thread, the next ones in the reader thread, which sends nothing
    readers = feed.threads - {threading.get_ident()}
    assert len(readers) == 1 and not sink.threads & readers
    assert feed.closed.is_set() and not [t for t in threading.enumerate() if t.name == "syncagent-read-ahead"]


def test_a_read_error_reaches_the_step_after_the_pages_before_it(step: Any) -> None:
    engine, sink, journal = step
    engine.backoffice = _Feed(5, fail_at=2)
    result = engine.run_step("loja", "products")
    assert result.status == "failed" and "page 2 lost" in (result.error or "")
    assert sink.sent == ["P0", "P1"] and journal.cursor("loja", "products") == "2"


def test_the_read_error_keeps_its_type() -> None:
    def source() -> Iterator[int]:
        yield 1
        raise KeyError("boom")

    got = []
    with pytest.raises(KeyError, match="boom"):
        for item in read_ahead(source()):
            got.append(item)
    assert got == [1]


def test_should_stop_ends_after_the_page_in_hand_and_stops_the_reader(step: Any) -> None:
    engine, sink, journal = step
    engine.backoffice = feed = _Feed(50)
    engine.should_stop = lambda: len(sink.sent) >= 2
    result = engine.run_step("loja", "products")
    # the stop is seen before the next page goes out; the page already in flight when it came (P2, if
    # the channel had not finished P1 at the check: a matter of thread timing) is sent and recorded too
    sent = len(sink.sent)
    assert result.ok and 2 <= sent <= 3 and sink.sent == [f"P{k}" for k in range(sent)]
    assert journal.cursor("loja", "products") == str(sent)
    # read at most: the pages recorded, the one mapped meanwhile, one in the slot and one being read
    assert feed.closed.is_set() and len(feed.read) <= sent + 3
    assert not [t for t in threading.enumerate() if t.name == "syncagent-read-ahead"]


def test_closing_the_read_ahead_early_closes_the_source_in_time() -> None:
    closed = threading.Event()
    reads: list[int] = []

    def source() -> Iterator[int]:
        try:
            for k in range(1000):
                reads.append(k)
                yield k
        finally:
            closed.set()

    pages = read_ahead(source())
    assert next(pages) == 0
    pages.close()
    assert closed.is_set() and len(reads) <= 3


# -- the journal leaves unchanged rows alone ---------------------------------------------------------
def test_unchanged_balances_boundaries_and_channel_state_are_not_rewritten(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.db")
    try:
        journal.set_balances("loja", [("P1", "LJ01", 5, 1)])
        journal.set_price_boundaries("loja", [("P1", "2026-12-01T00:00:00Z", "{}")])
        journal.set_channel_state("loja", "ok")
        before = journal.conn.total_changes
        journal.set_balances("loja", [("P1", "LJ01", 5, 1)])
        journal.set_price_boundaries("loja", [("P1", "2026-12-01T00:00:00Z", "{}")])
        journal.set_channel_state("loja", "ok")
        assert journal.conn.total_changes == before
        journal.set_balances("loja", [("P1", "LJ01", 4, 1)])
        journal.set_price_boundaries("loja", [("P1", "2026-12-02T00:00:00Z", "{}")])
        journal.set_channel_state("loja", "auth_failed", "401")
        assert journal.balances("loja", ["P1"]) == {("P1", "LJ01"): (4, 1)}
        assert journal.due_prices("loja", "2026-12-03") == [("P1", "{}")]
        assert journal.channel_states() == {"loja": ("auth_failed", "401")}
    finally:
        journal.close()


# -- the last page of a feed, unchanged, is not mapped again -----------------------------------------
class _TailFeed:
    """Two pages; the last carries a digest of its content, as the back office connector gives."""

    def __init__(self) -> None:
        self.names = {"P0": "a", "P1": "b", "P2": "c"}

    def pull(self, entity: str, cursor: str | None, filters: Any = None) -> Iterator[Page]:
        codes = sorted(self.names)
        first = [Product(c, self.names[c], True) for c in codes[:2]]
        last = [Product(c, self.names[c], True) for c in codes[2:]]
        if cursor is None:
            yield Page(first, "2")
        yield Page(last, None, {"digest": repr(last)})


class _CountingSink(_Sink):
    def __init__(self) -> None:
        super().__init__()
        self.prepared = 0
        self.fail = False

    def prepare(self, entity: str, record: Any) -> Outgoing:
        self.prepared += 1
        return super().prepare(entity, record)

    def push(self, entity: str, batch: Any) -> list[PushResult]:
        if self.fail:
            raise TransientError("channel down")
        return super().push(entity, batch)


def test_an_unchanged_last_page_is_skipped_a_changed_one_is_sent(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.db")
    sink, feed = _CountingSink(), _TailFeed()
    engine = Engine(journal, feed, {"loja": ChannelSetup("loja", sink)})  # type: ignore[arg-type, dict-item]
    try:
        assert engine.run_step("loja", "products").sent == 3 and sink.prepared == 3
        again = engine.run_step("loja", "products")
        assert again.ok and (again.read, again.unchanged, again.sent) == (1, 1, 0) and sink.prepared == 3
        feed.names["P2"] = "c changed in place"  # same cursor, new content: it must be sent
        changed = engine.run_step("loja", "products")
        assert changed.sent == 1 and sink.sent[-1] == "P2" and sink.prepared == 4
        assert engine.run_step("loja", "products").unchanged == 1 and sink.prepared == 4
        full = engine.run_step("loja", "products", full=True)  # --full maps every record again
        assert full.unchanged == 3 and sink.prepared == 7
        feed.names["P2"] = "c again"
        sink.fail = True  # the page is not recorded: its digest must not be kept
        assert engine.run_step("loja", "products").status == "failed"
        sink.fail = False
        assert engine.run_step("loja", "products").sent == 1 and sink.sent[-1] == "P2"
    finally:
        journal.close()


def test_a_send_error_of_the_page_in_flight_stops_the_step_before_its_cursor(step: Any) -> None:
    engine, sink, journal = step
    engine.backoffice = _Feed(6)
    real_push = sink.push

    def push(entity: str, batch: Any) -> list[PushResult]:
        if batch[0].key == "P3":
            raise TransientError("channel down")
        return real_push(entity, batch)

    sink.push = push  # type: ignore[method-assign]
    result = engine.run_step("loja", "products")
    assert result.status == "failed" and "channel down" in (result.error or "")
    # the page after it may have been in flight too (two at a time): sent once, recorded, nothing later
    assert sink.sent[:3] == ["P0", "P1", "P2"] and sink.sent[3:] in ([], ["P4"])
    assert journal.cursor("loja", "products") == "3"  # the cursor stays before the page that failed
    assert journal.count_sent("loja", "products") == len(sink.sent)
    assert not [t for t in threading.enumerate() if t.name.startswith(("syncagent-send", "syncagent-read"))]


@pytest.mark.parametrize(("takers", "peak"), [(0, 2), (3, 1)])
def test_a_push_keeps_two_pages_in_flight_alone_and_one_side_by_side(tmp_path: Path, takers: int, peak: int) -> None:
    """Alone, the channel gets the next page while it works on one; beside other channels' steps (which give
    the agent work meanwhile) one page each is in flight, so memory stays bounded however many channels."""
    journal = Journal(tmp_path / "j.db")
    sink = _Sink()
    engine = Engine(journal, None, {"loja": ChannelSetup("loja", sink)})  # type: ignore[arg-type, dict-item]
    engine.backoffice = _Feed(4)  # type: ignore[assignment]
    engine.shared.takers = takers
    real_push, lock, second = sink.push, threading.Lock(), threading.Event()
    active, most = [0], [0]

    def push(entity: str, batch: Any) -> list[PushResult]:
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
            if active[0] > 1:
                second.set()
        try:
            if batch[0].key == "P0":
                second.wait(1 if peak == 1 else 10)  # held until the next page arrives, if it may come
            return real_push(entity, batch)
        finally:
            with lock:
                active[0] -= 1

    sink.push = push  # type: ignore[method-assign]
    try:
        assert engine.run_step("loja", "products").sent == 4
    finally:
        journal.close()
    assert most[0] == peak and sorted(sink.sent) == ["P0", "P1", "P2", "P3"]


def test_a_first_item_said_to_be_the_last_starts_no_reader_and_still_yields_the_rest() -> None:
    closed = threading.Event()

    def source() -> Iterator[int]:
        try:
            yield 1
            yield 2  # more after an item said to be the last: read here, not lost
        finally:
            closed.set()

    before = threading.active_count()
    pages = read_ahead(source(), more=lambda item: item != 1)
    assert next(pages) == 1 and threading.active_count() == before
    assert list(pages) == [2] and closed.is_set()
    early = read_ahead(source(), more=lambda item: False)
    assert next(early) == 1
    closed.clear()
    early.close()
    assert closed.is_set()


def test_the_back_office_leaves_its_pages_undecoded_until_they_are_read() -> None:
    import responses

    from syncagent.connectors.gestao_lojas import GestaoLojasConnector
    from syncagent.http import HttpSettings

    body = json.dumps({"items": [GOOD, dict(GOOD, code="P2")], "next_cursor": None}).encode()
    with responses.RequestsMock() as mock:
        mock.add(responses.POST, "http://bo/oauth/token", json={"access_token": "t", "expires_in": 3600})
        mock.add(responses.GET, "http://bo/products", body=body, content_type="application/json")
        mock.add(responses.GET, "http://bo/products", body=body, content_type="application/json")
        bo = GestaoLojasConnector("backoffice", "http://bo", {"client_id": "c", "client_secret": "s"}, HttpSettings())
        first = bo.pull("products", "c1")
        page = next(first)
        assert not page.parsed and "items" not in page.extra and page.extra["digest"]
        assert len(page.records) == 2 and page.parsed and page.extra["items"] == 2
        assert list(first) == []  # its null next_cursor ended the feed
        feed = bo.pull("products", "c1")
        again = next(feed)
        again.recognised(None, 2)  # the engine knows these bytes: the cursor it remembers, nothing decoded
        assert list(feed) == [] and not again.parsed and again.extra == page.extra
