"""Order intake from a queue (`Capabilities.order_queue`): one order a page, each acknowledged before the next read."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from syncagent.connectors.base import Capabilities
from syncagent.engine import ChannelSetup, Engine
from syncagent.journal import Journal
from syncagent.model import ChannelCustomer, Order, OrderItem, Page
from tests.support.fakes import NOW, FakeBackoffice, FakeChannel


class QueueChannel(FakeChannel):
    """A queue: hands over its head until the head is acknowledged; logs every read and every ack."""

    capabilities = replace(FakeChannel.capabilities, order_queue=True)

    def __init__(self) -> None:
        super().__init__()
        self.queue: list[Order] = []
        self.buyers: dict[str, ChannelCustomer] = {}
        self.log: list[str] = []

    def pull(self, entity: str, cursor: str | None, filters: Mapping[str, Any] | None = None) -> Iterator[Page]:
        if entity == "channel-customers":
            # only the buyers of the orders read so far: a queue knows nothing of the orders behind its head
            read = {line.split()[1] for line in self.log if line.startswith("read")}
            yield Page([c for c in self.buyers.values() if any(o.channel_customer_id == c.remote_id
                                                                for o in self.queue if o.remote_id in read)], None)
            return
        handed: set[str] = set()
        while self.queue:
            head = self.queue[0]
            self.log.append(f"read {head.remote_id}")
            if head.remote_id in handed:
                return
            handed.add(head.remote_id)
            yield Page([head], None)

    def _push(self, entity: str, batch: Any) -> Any:
        if entity == "order-acks":
            for out in batch:
                self.log.append(f"ack {out.key}")
                self.queue = [o for o in self.queue if o.remote_id != out.key]
        return super()._push(entity, batch)


def order(remote_id: str, buyer: str | None = None) -> Order:
    return Order(remote_id, "approved", (OrderItem("P1", 1, Decimal("10.00")),), Decimal("10.00"),
                 customer_code=None if buyer else "C1", channel_customer_id=buyer)


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[tuple[Engine, FakeBackoffice, QueueChannel, Journal]]:
    journal = Journal(tmp_path / "j.db")
    bo, ch = FakeBackoffice(), QueueChannel()
    setup = ChannelSetup("loja", ch, warehouses=("CD01",), order_warehouse="CD01")  # type: ignore[arg-type]
    engine = Engine(journal, bo, {"loja": setup}, clock=lambda: NOW, wall=time.time)  # type: ignore[arg-type]
    yield engine, bo, ch, journal
    journal.close()


def test_each_order_is_created_and_acknowledged_before_the_queue_is_read_again(parts: Any) -> None:
    engine, bo, ch, _ = parts
    ch.queue = [order("A"), order("B")]
    result = engine.run_step("loja", "orders")
    assert result.status == "ok" and [p["external_id"] for p in bo.posts] == ["A", "B"]
    assert ch.log == ["read A", "ack A", "read B", "ack B"]


def test_an_acknowledged_order_the_queue_hands_over_again_is_acknowledged_again_not_created(parts: Any) -> None:
    engine, bo, ch, _ = parts
    ch.queue = [order("A")]
    engine.run_step("loja", "orders")
    ch.queue, ch.log = [order("A")], []  # delivered again (at least once)
    result = engine.run_step("loja", "orders")
    assert result.status == "ok" and len(bo.posts) == 1 and ch.queue == []
    assert ch.log == ["read A", "ack A"]


def test_a_channel_that_is_no_queue_is_not_acknowledged_twice(parts: Any) -> None:
    engine, _, ch, _ = parts
    engine.channels["loja"] = replace(engine.channels["loja"], connector=FakeChannel())
    plain = engine.channels["loja"].connector
    plain.orders = [order("A")]
    engine.run_step("loja", "orders")
    engine.journal.save_cursor("loja", "orders", None)
    engine.run_step("loja", "orders")
    assert [o.key for e, batch in plain.pushed if e == "order-acks" for o in batch] == ["A"]


def test_a_buyer_first_met_on_a_later_page_is_pulled_for_that_page(parts: Any) -> None:
    engine, bo, ch, journal = parts
    ch.buyers = {doc: ChannelCustomer(doc, doc, f"Cliente {doc}") for doc in ("52998224725", "11144477735")}
    ch.queue = [order("A", "52998224725"), order("B", "11144477735")]
    bound: list[str] = []
    engine._bind_customer = lambda ctx, cc: bound.append(cc.remote_id) or journal.bind(  # type: ignore[method-assign]
        "loja", "customers", cc.remote_id, "C" + cc.remote_id[:3])
    result = engine.run_step("loja", "orders")
    assert result.status == "ok" and result.quarantined == 0
    assert [p["external_id"] for p in bo.posts] == ["A", "B"] and bound == ["52998224725", "11144477735"]
    assert Capabilities().order_queue is False  # the default: a feed, not a queue
