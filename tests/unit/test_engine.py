"""The engine against in-memory connectors: diffing, quarantine, cursors, orders, events."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from syncagent.engine import ChannelSetup, Engine
from syncagent.errors import AmbiguousError
from syncagent.journal import Journal
from syncagent.model import (
    BadRecord,
    Group,
    Order,
    OrderEvent,
    OrderItem,
    Page,
    Price,
    Product,
    StockBalance,
    fingerprint,
)
from tests.support.fakes import NOW, FakeBackoffice, FakeChannel


def sent_keys(channel: FakeChannel, entity: str) -> list[str]:
    return [o.key for e, batch in channel.pushed if e == entity for o in batch]


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[tuple[Engine, FakeBackoffice, FakeChannel, Journal]]:
    journal = Journal(tmp_path / "j.db")
    bo, ch = FakeBackoffice(), FakeChannel()
    setup = ChannelSetup("loja", ch, warehouses=("CD01", "LJ01"), order_warehouse="LJ01", safety_stock=1)  # type: ignore[arg-type]
    # prices live at NOW; the journal's rows are stamped and aged with the real time
    engine = Engine(journal, bo, {"loja": setup}, clock=lambda: NOW, wall=time.time)  # type: ignore[arg-type]
    yield engine, bo, ch, journal
    journal.close()


def products(*names: str) -> list[Product]:
    return [Product(f"P{i}", name, True) for i, name in enumerate(names)]


def test_unchanged_records_are_not_sent_again(parts: Any) -> None:
    engine, bo, ch, _ = parts
    bo.feeds["products"] = products("a", "b", "c")
    first = engine.run_step("loja", "products")
    assert (first.read, first.sent, first.status) == (3, 3, "ok")
    second = engine.run_step("loja", "products")
    assert second.sent == 0 and second.unchanged >= 1
    bo.feeds["products"] = [*products("a", "b", "c"), Product("P1", "b2", True)]  # P1 changed
    third = engine.run_step("loja", "products")
    assert sent_keys(ch, "products")[-1:] == ["P1"] and third.sent == 1


def test_rejected_and_unmappable_records_are_quarantined_the_rest_go_on(parts: Any) -> None:
    engine, bo, ch, journal = parts
    ch.reject = {"P1"}
    bo.feeds["products"] = [*products("a", "b", ""), BadRecord("P9", "bad_type", "active is not a boolean")]
    result = engine.run_step("loja", "products")
    assert result.status == "quarantined" and result.quarantined == 3 and result.sent == 1
    assert {(q.key, q.reason_code) for q in journal.quarantined()} == {
        ("P1", "invalid"), ("P2", "missing_field"), ("P9", "bad_type")}
    again = engine.run_step("loja", "products")  # the unchanged bad records are not retried in a loop
    assert again.quarantined == 0 and again.status == "ok"
    ch.reject = set()
    bo.feeds["products"] = [*products("a", "b fixed", "c")]
    engine.run_step("loja", "products", full=True)
    assert {q.key for q in journal.quarantined()} == {"P9"}


def test_a_key_repeated_on_the_next_pages_goes_out_in_feed_order_and_once_per_version(parts: Any) -> None:
    engine, bo, ch, journal = parts
    bo.feeds["products"] = [Product("P0", "a", True), Product("P1", "b", True), Product("P0", "a2", True),
                            Product("P2", "c", True), Product("P0", "a2", True), Product("P3", "d", True),
                            Product("P4", "e", True), Product("P5", "f", True)]
    ch.slow_key = "P0"  # pages are sent two at a time: a later version must not overtake an earlier one
    result = engine.run_step("loja", "products")
    assert result.status == "ok" and result.sent == 7 and result.unchanged == 1
    assert [o.payload["name"] for _, batch in ch.pushed for o in batch if o.key == "P0"] == ["a", "a2"]
    assert journal.fingerprints("loja", "products", ["P0"])["P0"] == fingerprint(asdict(Product("P0", "a2", True)))
    assert sorted(sent_keys(ch, "products")) == ["P0", "P0", "P1", "P2", "P3", "P4", "P5"]


def test_cursor_does_not_pass_a_page_that_failed(parts: Any) -> None:
    engine, bo, ch, journal = parts
    bo.page_size = 4
    bo.feeds["products"] = products("a", "b", "c", "d", "e", "f")
    ch.fail_on_key = "P2"  # the first batch of the first page (2 records) goes, the second fails
    result = engine.run_step("loja", "products")
    assert result.status == "failed" and "channel down" in (result.error or "")
    assert journal.cursor("loja", "products") is None
    assert set(journal.fingerprints("loja", "products", ["P0", "P1", "P2", "P3"])) == {"P0", "P1"}
    engine.run_step("loja", "products")
    assert sorted(sent_keys(ch, "products")) == ["P0", "P1", "P2", "P3", "P4", "P5"]  # nothing sent twice


def test_stock_sums_channel_warehouses_across_pages(parts: Any) -> None:
    engine, bo, ch, _ = parts
    bo.feeds["stock"] = [StockBalance("A", "CD01", 10, 2), StockBalance("B", "CD01", 1, 0),
                         StockBalance("A", "LJ01", 5, 0), StockBalance("A", "LJ02", 100, 0),
                         StockBalance("B", "LJ01", -3, 0)]
    engine.run_step("loja", "stock")
    levels = {}
    for _entity, batch in ch.pushed:
        for out in batch:
            levels[out.key] = out.payload["available"]
    assert levels == {"A": 10 - 2 + 5 - 1, "B": 0}


def test_price_resent_when_promotion_ends_without_a_feed_change(tmp_path: Path) -> None:
    clock = {"now": NOW}
    journal = Journal(tmp_path / "j.db")
    bo, ch = FakeBackoffice(), FakeChannel(clock=lambda: clock["now"])
    engine = Engine(journal, bo, {"loja": ChannelSetup("loja", ch)}, clock=lambda: clock["now"])  # type: ignore[arg-type]
    bo.feeds["prices"] = [Price("P1", Decimal("100.00"), Decimal("80.00"), NOW - timedelta(days=1),
                                NOW + timedelta(hours=2))]
    engine.run_step("loja", "prices")
    engine.run_step("loja", "prices")
    assert [o.payload["promo"] for _, b in ch.pushed for o in b] == ["80.00"]
    clock["now"] = NOW + timedelta(hours=3)
    engine.run_step("loja", "prices")
    assert [o.payload["promo"] for _, b in ch.pushed for o in b] == ["80.00", None]
    engine.run_step("loja", "prices")
    assert len(ch.pushed) == 2
    journal.close()


def order(remote_id: str, status: str = "approved", version: str = "1") -> Order:
    return Order(remote_id, status, (OrderItem("P1", 1, Decimal("10.00")),), Decimal("10.00"),
                 customer_code="C1", version=version)


def test_order_created_once_even_when_the_answer_is_lost(parts: Any) -> None:
    engine, bo, ch, journal = parts
    ch.orders = [order("o1"), order("o2")]
    bo.fail_next_post = AmbiguousError("answer lost")
    bo.commit_then_fail = True  # the back office created o1, then the answer was lost
    first = engine.run_step("loja", "orders")
    assert first.status == "ok"
    assert [p["external_id"] for p in bo.posts] == ["o1", "o2"]  # o1 found by lookup, not posted again
    assert sorted(sent_keys(ch, "order-acks")) == ["o1", "o2"]


def test_ambiguous_order_waits_in_creating_and_recovers_next_cycle(parts: Any, monkeypatch: Any) -> None:
    engine, bo, ch, journal = parts
    ch.orders = [order("o1")]
    calls = {"n": 0}
    real_push = bo.push

    def always_lost(entity: str, batch: Any) -> Any:
        calls["n"] += 1
        raise AmbiguousError("answer lost")  # nothing created, every answer lost

    monkeypatch.setattr(bo, "push", always_lost)
    first = engine.run_step("loja", "orders")
    assert first.status == "failed" and calls["n"] == 4  # once, then up to three settle rounds at the end
    row = journal.order("loja", "o1")
    assert row is not None and row.state == "creating"
    monkeypatch.setattr(bo, "push", real_push)
    second = engine.run_step("loja", "orders")
    assert second.status == "ok" and [p["external_id"] for p in bo.posts] == ["o1"]
    assert journal.order("loja", "o1").state == "acknowledged"  # type: ignore[union-attr]


def test_order_cancelled_on_the_channel_and_redelivery_is_harmless(parts: Any) -> None:
    engine, bo, ch, journal = parts
    ch.orders = [order("o1"), order("o2", status="draft")]
    engine.run_step("loja", "orders")
    engine.run_step("loja", "orders")
    assert [p["external_id"] for p in bo.posts] == ["o1"]
    assert journal.order("loja", "o2") is None


def test_events_held_back_until_their_predecessor_is_delivered(parts: Any) -> None:
    engine, bo, ch, journal = parts
    journal.set_order("loja", "o1", "acknowledged", bo_number="1000")
    shipped = OrderEvent("e2", "1000", "loja", "o1", "shipped", NOW)
    invoiced = OrderEvent("e1", "1000", "loja", "o1", "invoiced", NOW)
    other = OrderEvent("e3", "1001", "other-channel", "o9", "invoiced", NOW)
    bo.feeds["order-events"] = [shipped, other]
    first = engine.run_step("loja", "order-events")
    assert first.sent == 0 and ch.event_log == []
    bo.feeds["order-events"] = [shipped, other, invoiced]
    engine.run_step("loja", "order-events")
    assert ch.event_log == [("o1", "invoiced"), ("o1", "shipped")]
    engine.run_step("loja", "order-events")
    assert ch.event_log == [("o1", "invoiced"), ("o1", "shipped")]


def test_stock_per_channel_warehouse_when_the_channel_holds_several(tmp_path: Path) -> None:
    class PerWarehouseChannel(FakeChannel):
        def stock_locations(self) -> dict[str, tuple[str, ...]]:
            return {"vtex-sp": ("CD01",), "vtex-rj": ("LJ01", "LJ02")}

    journal = Journal(tmp_path / "j.db")
    bo, ch = FakeBackoffice(), PerWarehouseChannel()
    setup = ChannelSetup("loja", ch, warehouses=("CD01", "LJ01"), safety_stock=1)  # type: ignore[arg-type]
    # prices live at NOW; the journal's rows are stamped and aged with the real time
    engine = Engine(journal, bo, {"loja": setup}, clock=lambda: NOW, wall=time.time)  # type: ignore[arg-type]
    bo.feeds["stock"] = [StockBalance("A", "CD01", 10, 2), StockBalance("A", "LJ01", 5, 0),
                         StockBalance("A", "LJ02", 7, 1), StockBalance("A", "LJ03", 100, 0)]
    engine.run_step("loja", "stock")
    levels = {o.payload["code"] + "@" + str(o.payload["location"]): o.payload["available"]
              for _, batch in ch.pushed for o in batch}
    assert levels == {"A@vtex-sp": 10 - 2 - 1, "A@vtex-rj": (5 + 7 - 1) - 1}
    journal.close()


def test_a_stop_during_the_orders_step_skips_the_settle_rounds(parts: Any, monkeypatch: Any) -> None:
    engine, bo, ch, journal = parts
    ch.orders = [order("o1")]
    calls = {"push": 0, "asked": 0}

    def lost(entity: str, batch: Any) -> Any:
        calls["push"] += 1
        raise AmbiguousError("answer lost")

    def stop_after_the_page() -> bool:
        calls["asked"] += 1
        return calls["asked"] > 1  # the page's own check says go on; the stop arrives just after it

    monkeypatch.setattr(bo, "push", lost)
    engine.should_stop = stop_after_the_page
    result = engine.run_step("loja", "orders")
    assert calls["push"] == 1  # no settle round: the stop did not wait for them
    assert result.status == "ok" and journal.order("loja", "o1").state == "creating"  # type: ignore[union-attr]


def test_a_catalogue_push_commits_without_fsync_and_orders_with_it(parts: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    engine, bo, ch, journal = parts
    seen: list[tuple[str, int]] = []
    states: dict[str, set[int]] = {}

    def spy(name: str) -> Any:
        original = getattr(journal, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            level = journal.conn.execute("PRAGMA synchronous").fetchone()[0]
            seen.append((name, level))
            if name == "set_order":
                states.setdefault(str(args[2]), set()).add(level)
            return original(*args, **kwargs)
        return call

    monkeypatch.setattr(journal, "record_sent", spy("record_sent"))
    monkeypatch.setattr(journal, "set_order", spy("set_order"))
    bo.feeds["products"] = products("a", "b", "c")
    assert engine.run_step("loja", "products").sent == 3
    ch.orders = [order("o1")]
    assert engine.run_step("loja", "orders").status == "ok"
    assert {v for n, v in seen if n == "record_sent"} == {1}  # NORMAL: a page lost to a power cut goes again
    # FULL: the states that decide whether an order is created survive a power cut; `acknowledged` needs
    # no fsync of its own (lost, the order is still `created` and is acknowledged again: the same answer)
    assert states == {"creating": {2}, "created": {2}, "acknowledged": {1}}
    assert journal.conn.execute("PRAGMA synchronous").fetchone()[0] == 2


def test_price_boundary_inside_a_second_is_due_at_its_exact_instant(tmp_path: Path) -> None:
    """A promotion ending at .701941 s is re-sent once that instant passed, not at the whole second before."""
    end = NOW + timedelta(hours=2, microseconds=701941)
    clock = {"now": NOW}
    journal = Journal(tmp_path / "j.db")
    bo, ch = FakeBackoffice(), FakeChannel(clock=lambda: clock["now"])
    engine = Engine(journal, bo, {"loja": ChannelSetup("loja", ch)}, clock=lambda: clock["now"])  # type: ignore[arg-type]
    bo.feeds["prices"] = [Price("P1", Decimal("100.00"), Decimal("80.00"), NOW - timedelta(days=1), end)]
    engine.run_step("loja", "prices")
    for at, promo in ((end - timedelta(microseconds=200000), ["80.00"]), (end + timedelta(microseconds=98000),
                                                                            ["80.00", None])):
        clock["now"] = at
        engine.run_step("loja", "prices")
        assert [o.payload["promo"] for _, b in ch.pushed for o in b] == promo
    assert journal.due_prices("loja", "9999") == []  # nothing left waiting once the promotion is over
    journal.close()


def settling_engine(tmp_path: Path, settle: float) -> tuple[Engine, FakeBackoffice, FakeChannel, Journal, list[float]]:
    """An engine whose wall clock moves only by its own sleeps (recorded), with the default settle time."""
    journal = Journal(tmp_path / "j.db")
    bo, ch = FakeBackoffice(), FakeChannel()
    skew = {"s": 0.0}
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        skew["s"] += seconds

    setup = ChannelSetup("loja", ch, settle_seconds=settle)  # type: ignore[arg-type]
    engine = Engine(journal, bo, {"loja": setup}, clock=lambda: NOW, sleep=sleep,  # type: ignore[arg-type]
                    wall=lambda: time.time() + skew["s"])
    return engine, bo, ch, journal, slept


def test_a_lost_answer_is_looked_up_at_once_not_after_the_settle_time(tmp_path: Path) -> None:
    engine, bo, ch, journal, slept = settling_engine(tmp_path, settle=35.0)
    ch.orders = [order("o1"), order("o2")]
    bo.fail_next_post, bo.commit_then_fail = AmbiguousError("answer lost"), True  # o1 committed, answer lost
    result = engine.run_step("loja", "orders")
    assert result.status == "ok" and slept == []  # found by the lookup right away: nothing waits
    assert [p["external_id"] for p in bo.posts] == ["o1", "o2"] and sorted(sent_keys(ch, "order-acks")) == ["o1", "o2"]
    assert journal.order("loja", "o1").state == "acknowledged"  # type: ignore[union-attr]
    journal.close()


def test_a_cron_cycle_waits_out_the_settle_time_before_posting_again(tmp_path: Path) -> None:
    engine, bo, ch, journal, slept = settling_engine(tmp_path, settle=35.0)
    ch.orders = [order("o1")]
    bo.fail_next_post = AmbiguousError("answer lost")  # nothing committed: the lookup misses it
    result = engine.run_step("loja", "orders")
    assert result.status == "ok" and [p["external_id"] for p in bo.posts] == ["o1"]
    assert len(slept) == 1 and 34 < slept[0] <= 35.1  # one wait, the settle time and no more, then one POST
    assert journal.order("loja", "o1").state == "acknowledged"  # type: ignore[union-attr]
    journal.close()


def test_the_daemon_defers_a_lost_answer_to_its_next_cycle(tmp_path: Path) -> None:
    engine, bo, ch, journal, slept = settling_engine(tmp_path, settle=35.0)
    engine.settle_wait_limit = 5.0
    ch.orders = [order("o1")]
    bo.fail_next_post = AmbiguousError("answer lost")
    first = engine.run_step("loja", "orders")
    assert first.status == "failed" and slept == [] and bo.posts == []  # not posted again inside the settle time
    assert journal.order("loja", "o1").state == "creating"  # type: ignore[union-attr]
    engine.sleep(36.0)  # the next cycle, later than the settle time
    second = engine.run_step("loja", "orders")
    assert second.status == "ok" and [p["external_id"] for p in bo.posts] == ["o1"]
    journal.close()


def test_first_stock_sync_sends_no_partial_sum_even_across_runs(parts: Any) -> None:
    """Rows of a code on different pages (or in one warehouse only): held back until the sum is whole."""
    engine, bo, ch, journal = parts  # warehouses CD01 + LJ01, safety stock 1, pages of 2 rows
    bo.feeds["stock"] = [StockBalance("A", "CD01", 10, 0), StockBalance("B", "CD01", 4, 0),
                         StockBalance("B", "LJ01", 2, 0), StockBalance("C", "CD01", 7, 0),
                         StockBalance("A", "LJ01", 0, 6), StockBalance("D", "LJ01", 3, 0)]
    asked = {"n": 0}

    def stop_after_two_pages() -> bool:
        asked["n"] += 1
        return asked["n"] == 2

    engine.should_stop = stop_after_two_pages  # the first run ends half way through the feed
    engine.run_step("loja", "stock")
    assert [(o.key, o.payload["available"]) for _, b in ch.pushed for o in b] == [("B", 5)]
    engine.should_stop = lambda: False
    engine.run_step("loja", "stock")
    levels = [(o.key, o.payload["available"]) for _, b in ch.pushed for o in b]
    assert sorted(levels) == [("A", 3), ("B", 5), ("C", 6), ("D", 2)]  # each once, each its whole sum
    engine.run_step("loja", "stock")
    assert len([o for _, b in ch.pushed for o in b]) == 4  # the pass is over: nothing held, nothing re-sent


@pytest.mark.parametrize("held_max", [0, 50_000])
def test_stock_held_back_in_one_run_is_sent_at_the_end_of_the_feed(parts: Any, monkeypatch: pytest.MonkeyPatch,
                                                                  held_max: int) -> None:
    """The codes held back are remembered (or, past the limit, every code is looked at again at the end)."""
    monkeypatch.setattr("syncagent.engine.catalogue.STOCK_HELD_MAX", held_max)
    engine, bo, ch, journal = parts
    bo.feeds["stock"] = [StockBalance("A", "CD01", 10, 0), StockBalance("B", "CD01", 4, 0),
                         StockBalance("B", "LJ01", 2, 0), StockBalance("A", "LJ01", 0, 6),
                         StockBalance("C", "CD01", 7, 0)]
    engine.run_step("loja", "stock")
    assert [(o.key, o.payload["available"]) for _, b in ch.pushed for o in b] == [("B", 5), ("A", 3), ("C", 6)]


# -- feeds whose cursors go round in a circle --------------------------------------------------------
def circling(records: list[Any], cursors: list[str], pulls: list[str | None]) -> Any:
    """A pull whose pages carry `cursors` in turn, for ever (bounded at 50 pages so a test cannot hang)."""
    def pull(entity: str, cursor: str | None, filters: Mapping[str, Any] | None = None) -> Iterator[Page]:
        for n in range(50):
            pulls.append(cursor)
            cursor = cursors[n % len(cursors)]
            yield Page([records[n % len(records)]], cursor)
        yield Page([], None)
    return pull


@pytest.mark.parametrize("flow", ["products", "orders", "order-events"])
def test_a_feed_whose_cursors_come_back_round_fails_the_step_with_its_cursor_kept(
        parts: Any, flow: str, monkeypatch: pytest.MonkeyPatch) -> None:
    engine, bo, ch, journal = parts
    pulls: list[str | None] = []
    records = {"products": products("a", "b", "c"), "orders": [order("o1"), order("o2"), order("o3")],
               "order-events": [OrderEvent(f"e{i}", f"9{i}", "loja", f"o{i}", "invoiced", NOW) for i in range(3)]}[flow]
    source = ch if flow == "orders" else bo
    cursor_key = flow
    journal.save_cursor("loja", cursor_key, "A")
    monkeypatch.setattr(source, "pull", circling(records, ["B", "C", "A"], pulls))
    result = engine.run_step("loja", flow)
    assert result.status == "failed" and "go round in a circle" in (result.error or "") and "'A'" in result.error
    assert len(pulls) <= 4  # stopped at the first cursor met again, not at the 50th page
    assert journal.cursor("loja", cursor_key) == "C"  # the pages before were taken, the circling one not


def test_a_page_giving_back_its_own_cursor_ends_the_feed_once_but_not_for_ever(
        parts: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    engine, bo, ch, journal = parts
    journal.save_cursor("loja", "products", "A")
    pulls: list[str | None] = []
    monkeypatch.setattr(bo, "pull", circling(products("a"), ["A"], pulls))
    result = engine.run_step("loja", "products")
    assert result.status == "failed" and "go round in a circle" in (result.error or "") and len(pulls) <= 3
    assert journal.cursor("loja", "products") == "A"


def test_retry_of_a_reference_table_record_reads_that_tables_feed(parts: Any) -> None:
    """A quarantine retry runs the flow's handler under a step named `retry:groups`: it must still read `groups`."""
    engine, bo, ch, journal = parts
    bo.feeds["groups"] = [Group("G1", "Roupas", True)]
    ch.reject = {"G1"}
    assert engine.run_step("loja", "groups").quarantined == 1
    ch.reject = set()
    bo.feeds["groups"] = [Group("G1", "Roupas e acessórios", True)]  # fixed at its source meanwhile
    applied, message = engine.retry("loja", "groups", "G1")
    assert (applied, message) == (True, "applied (as it is now at its source)")
    assert [o.payload["name"] for e, b in ch.pushed if e == "groups" for o in b] == ["Roupas", "Roupas e acessórios"]
    assert journal.cursor("loja", "retry:groups") is None and not journal.quarantined("loja", "groups")
