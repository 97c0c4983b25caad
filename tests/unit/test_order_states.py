"""Order intake states: one table of transitions, each move checked, each move made by a real scenario."""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from syncagent.engine import ChannelSetup, Engine
from syncagent.engine.order_states import NEW, REOPEN, TRANSITIONS, IllegalTransition, OrderState, check
from syncagent.errors import AmbiguousError, TransientError
from syncagent.journal import Journal
from syncagent.model import BadRecord, Order, OrderItem
from tests.support.fakes import NOW, FakeBackoffice, FakeChannel

S = OrderState
ALL: list[OrderState | None] = [NEW, *OrderState]


@pytest.mark.parametrize(("before", "after"), list(itertools.product(ALL, list(OrderState))))
def test_check_allows_exactly_the_moves_of_the_table(before: OrderState | None, after: OrderState) -> None:
    if after in TRANSITIONS[before]:
        check(before, after)
    else:
        with pytest.raises(IllegalTransition, match=re.escape(f"{before or '(new)'} → {after}")):
            check(before, after)
    if after in REOPEN:
        check(before, after, operator=True)  # an operator may reopen an order from any state


def test_a_cancelled_order_is_final_for_the_intake_and_an_acknowledged_one_can_only_be_cancelled() -> None:
    assert TRANSITIONS[S.CANCELLED] == frozenset()
    assert TRANSITIONS[S.ACKNOWLEDGED] == {S.CANCELLED}
    assert TRANSITIONS[S.CREATED] == {S.ACKNOWLEDGED, S.CANCELLED}  # never created twice
    assert S.CREATED not in TRANSITIONS[NEW] | TRANSITIONS[S.SEEN]  # created only after creating
    assert S.ACKNOWLEDGED not in set().union(*(TRANSITIONS[s] for s in ALL if s is not S.CREATED))  # no ack before apply


# -- every move of the table, made by the engine ---------------------------------------------------
class Moves:
    """Records every (before, after) the engine writes to the journal."""

    def __init__(self, journal: Journal) -> None:
        self.seen: list[tuple[str | None, str]] = []
        real = journal.set_order

        def spy(channel: str, order_id: str, state: str, **fields: Any) -> None:
            row = journal.order(channel, order_id)
            self.seen.append((row.state if row is not None else None, str(state)))
            real(channel, order_id, state, **fields)

        journal.set_order = spy  # type: ignore[method-assign]


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[tuple[Engine, FakeBackoffice, FakeChannel, Journal, Moves]]:
    journal = Journal(tmp_path / "j.db")
    bo, ch = FakeBackoffice(), FakeChannel()
    setup = ChannelSetup("loja", ch, order_warehouse="LJ01")  # type: ignore[arg-type]
    engine = Engine(journal, bo, {"loja": setup}, clock=lambda: NOW, wall=time.time)  # type: ignore[arg-type]
    yield engine, bo, ch, journal, Moves(journal)
    journal.close()


def order(remote_id: str, status: str = "approved", version: str = "1", customer: str | None = "C1") -> Order:
    return Order(remote_id, status, (OrderItem("P1", 1, Decimal("10.00")),), Decimal("10.00"),
                 customer_code=customer, channel_customer_id=None if customer else "X9", version=version)


def test_the_happy_path_is_new_creating_created_acknowledged(parts: Any) -> None:
    engine, _, ch, _, moves = parts
    ch.orders = [order("o1")]
    engine.run_step("loja", "orders")
    assert moves.seen == [(None, "creating"), ("creating", "created"), ("created", "acknowledged")]


def test_a_lost_answer_leaves_creating_and_the_lookup_moves_it_on(parts: Any) -> None:
    engine, bo, ch, journal, moves = parts
    ch.orders = [order("o1")]
    bo.fail_next_post, bo.commit_then_fail = AmbiguousError("answer lost"), True
    engine.run_step("loja", "orders")
    assert ("creating", "created") in moves.seen and journal.order("loja", "o1").state == "acknowledged"
    assert [p["external_id"] for p in bo.posts] == ["o1"]


def test_a_passing_failure_parks_the_order_and_the_next_run_takes_it_from_pending(parts: Any) -> None:
    engine, bo, ch, journal, moves = parts
    ch.orders = [order("o1", customer=None)]  # its customer is not bound: pulling customers fails

    def down(entity: str, cursor: Any, filters: Any = None) -> Any:
        raise TransientError("channel down")
        yield  # a generator

    ch.pull = lambda entity, cursor, filters=None: down(entity, cursor) if entity == "channel-customers" \
        else FakeChannel.pull(ch, entity, cursor, filters)
    engine.run_step("loja", "orders")
    assert (None, "parked") in moves.seen
    ch.orders = [order("o1", status="draft")]  # it left the importable statuses meanwhile
    engine.run_step("loja", "orders")
    assert ("parked", "seen") in moves.seen and journal.order("loja", "o1").state == "seen"


def test_an_unknown_customer_or_an_unreadable_order_is_quarantined(parts: Any) -> None:
    engine, _, ch, journal, moves = parts
    ch.orders = [order("o1", customer=None), BadRecord("o2", "bad_json", "not JSON", "{")]
    ch.pull = lambda entity, cursor, filters=None: iter(()) if entity == "channel-customers" \
        else FakeChannel.pull(ch, entity, cursor, filters)
    engine.run_step("loja", "orders")
    assert moves.seen == [(None, "quarantined"), (None, "quarantined")]
    ch.orders = [order("o1", version="2")]  # a later version, now with its customer
    engine.run_step("loja", "orders")
    assert ("quarantined", "creating") in moves.seen and journal.order("loja", "o1").state == "acknowledged"


def test_a_refused_order_goes_from_creating_to_quarantined(parts: Any, monkeypatch: Any) -> None:
    engine, bo, ch, _, moves = parts
    from syncagent.connectors.base import PushResult

    monkeypatch.setattr(bo, "push", lambda entity, batch: [PushResult(batch[0].key, "rejected",
                                                                      reason_code="invalid", reason="no")])
    ch.orders = [order("o1")]
    engine.run_step("loja", "orders")
    assert moves.seen == [(None, "creating"), ("creating", "quarantined")]


def test_a_cancellation_ends_an_order_in_any_state_and_nothing_moves_it_after(parts: Any) -> None:
    engine, bo, ch, journal, moves = parts
    ch.orders = [order("o1")]
    engine.run_step("loja", "orders")
    ch.orders = [order("o1", status="cancelled", version="2"), order("o2", status="cancelled")]
    engine.run_step("loja", "orders")
    assert ("acknowledged", "cancelled") in moves.seen and (None, "cancelled") in moves.seen
    assert bo.cancelled == ["1000"]
    moves.seen.clear()
    ch.orders = [order("o1", version="3")]  # approved again on the channel: the intake leaves it cancelled
    engine.run_step("loja", "orders")
    assert moves.seen == [] and journal.order("loja", "o1").state == "cancelled"


def test_an_operator_replay_reopens_any_state_and_the_engine_refuses_a_move_outside_the_table(parts: Any) -> None:
    engine, bo, ch, journal, moves = parts
    ch.orders = [order("o1")]
    engine.run_step("loja", "orders")
    assert engine.replay_order("loja", "o1").startswith("already in the back office")
    assert ("acknowledged", "created") in moves.seen  # reopened by the operator, then acknowledged again
    ctx_channel = engine.channels["loja"]
    from syncagent.engine.core import StepResult, _Ctx

    ctx = _Ctx(ctx_channel, StepResult("loja", "orders"))
    with pytest.raises(IllegalTransition), journal.transaction():
        engine._set_order(ctx, "o1", S.CREATING)  # acknowledged → creating: would post it twice
    assert journal.order("loja", "o1").state == "acknowledged"
