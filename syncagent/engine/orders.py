"""Order intake: each channel order created once in the back office, then acknowledged.

A small state machine per (channel, order id) in the journal; its states and the one table of
allowed transitions are in `syncagent.engine.order_states`. Every transition is committed before
the next network call, so a crash at any instant leaves a state the next run knows how to finish.
`creating` and `created` are fsync'd; `acknowledged` is not (a power cut that loses it only makes
the agent acknowledge the order again).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from syncagent import failpoints
from syncagent.connectors.base import Outgoing, PushResult
from syncagent.engine import order_states
from syncagent.engine.core import (
    CursorTrail,
    EngineCore,
    PlannedWrite,
    _bad_key,
    _Ctx,
    _describe,
    _newer,
    _out,
    _src,
    _stamp,
    log,
)
from syncagent.engine.order_states import IN_FLIGHT, OPEN
from syncagent.engine.order_states import OrderState as S
from syncagent.errors import AmbiguousError, AuthError, ChannelError, MappingError, TransientError
from syncagent.journal import OrderRow
from syncagent.model import BackOfficeOrder, BadRecord, Order, order_from_dict

PARKED_PATIENCE = 3600.0  # a parked order waits this long for its customer before quarantine
MAX_SETTLE_WAIT = 5.0  # seconds the daemon's orders step may wait at its end to re-POST lost answers
SETTLE_ROUNDS = 3  # end-of-step retry rounds of the orders that failed or were too fresh
MAX_FAILURES_IN_ROW = 5  # orders failing one after another: the server is down, stop the step


class OrderIntake(EngineCore):
    """Pull the channel's orders; create each once in the back office (lookup first), then acknowledge."""

    def _set_order(self, ctx: _Ctx, order_id: str, state: S, **fields: Any) -> None:
        """Move one order to `state` along the one transition table (`order_states`), in the caller's transaction.

        `fields` are those of `Journal.set_order` (None keeps the stored value).
        """
        row = self.journal.order(ctx.name, order_id)
        order_states.check(row.state if row is not None else None, state, operator=ctx.operator)
        self.journal.set_order(ctx.name, order_id, state, **fields)

    def _orders(self, ctx: _Ctx) -> None:
        ctx.customers_pulled = False
        self._recover_orders(ctx)
        if not ctx.plan_only:
            self._release_waiting_orders(ctx)
        cursor = self.journal.cursor(ctx.name, "orders")
        trail = CursorTrail(f"{ctx.name}/orders", cursor)
        queue = ctx.conn.capabilities.order_queue
        for page in trail.follow(ctx.conn.pull("orders", cursor)):
            if queue:
                ctx.customers_pulled = False  # a queue's next order may bring a buyer the last pull did not have
            for record in page.records:
                ctx.result.read += 1
                if isinstance(record, BadRecord):
                    self._quarantine_bad_order(ctx, record)
                else:
                    self._guarded(ctx, record, lambda r=record: self._process_order(ctx, r))
            with self.journal.transaction():
                self._advance(ctx.name, "orders", page.cursor)
            if self.should_stop():
                return
        for _round in range(SETTLE_ROUNDS):  # what failed or was too fresh gets a few more tries once settled
            if not (ctx.parked or ctx.unsettled):
                break
            if self.should_stop():  # a stop or another channel's due step does not wait for the settle time:
                return  # what waits is in the journal, first in line at the next run
            ctx.parked = ctx.unsettled = 0
            self._wait_to_settle(ctx)
            self._recover_orders(ctx, look_up_fresh=False)  # what could not wait was looked up already
        waiting = self.journal.orders_in_state(ctx.name, IN_FLIGHT)
        if waiting:
            raise TransientError(f"{len(waiting)} order(s) wait in the journal for the next cycle "
                                 f"(a transient failure or an answer lost); last cause: {ctx.last_error or 'none'}")

    def _wait_to_settle(self, ctx: _Ctx) -> None:
        """Wait until the orders whose answer was lost may be posted again (never past `settle_wait_limit`)."""
        settle = ctx.setup.settle_seconds
        if not 0 < settle <= self.settle_wait_limit:
            return
        creating = self.journal.orders_in_state(ctx.name, (S.CREATING,))
        if creating:
            newest = max(_stamp(row.updated_at) for row in creating)
            remaining = min(newest + settle - self.wall(), settle)  # a clock stepped back never waits longer
            if remaining > 0:
                self.sleep(remaining + 0.05)

    def _guarded(self, ctx: _Ctx, order: Order | None, work: Callable[[], None], row: OrderRow | None = None) -> None:
        """Run one order's work; a transient failure parks the order in the journal and the page goes on.

        Several failures in a row mean the server is down: the step stops there (the cursor does
        not pass the orders not yet looked at).
        """
        try:
            work()
            ctx.failures_in_row = 0
        except AuthError:
            raise
        except ChannelError as exc:
            ctx.failures_in_row += 1
            ctx.parked += 1
            ctx.last_error = str(exc)
            if order is not None:
                self._park(ctx, order)
            if ctx.failures_in_row >= MAX_FAILURES_IN_ROW:
                raise

    def _park(self, ctx: _Ctx, order: Order) -> None:
        """Keep an order whose intake failed half way, so the cursor may move on without losing it."""
        row = self.journal.order(ctx.name, order.remote_id)
        if row is None or row.state in OPEN:
            with self.journal.transaction():
                self._set_order(ctx, order.remote_id, S.PARKED, version=order.version,
                                       payload={"source": _describe(order)})

    def _quarantine_bad_order(self, ctx: _Ctx, record: BadRecord) -> None:
        key = _bad_key(record)
        row = self.journal.order(ctx.name, key)
        if row is None or row.state in OPEN:
            with self.journal.transaction():
                self._set_order(ctx, key, S.QUARANTINED, reason_code=record.code, reason=record.reason)
                self.journal.quarantine(ctx.name, "orders", key, record.code, record.reason, _src(record.raw))
            ctx.result.quarantined += 1

    def _young(self, ctx: _Ctx, order: Order) -> bool:
        row = self.journal.order(ctx.name, order.remote_id)
        return row is not None and self.wall() - _stamp(row.seen_at) < PARKED_PATIENCE

    def _process_parked(self, ctx: _Ctx, order: Order) -> None:
        ctx.from_journal = True
        try:
            self._process_order(ctx, order)
        finally:
            ctx.from_journal = False

    def _process_order(self, ctx: _Ctx, order: Order) -> None:
        caps = ctx.conn.capabilities
        importable = ctx.setup.order_statuses or caps.importable_statuses
        log.debug("%s/orders: %s (status %s): %s", ctx.name, order.remote_id, order.status,
                  "cancel" if order.status in caps.cancelled_statuses else "import" if order.status in importable
                  else "not importable yet, left on the channel")
        if order.status in caps.cancelled_statuses:
            self._cancel_order(ctx, order)
        elif order.status in importable:
            self._import_order(ctx, order)
        else:
            row = self.journal.order(ctx.name, order.remote_id)
            if row is not None and row.state == S.PARKED:  # it left the importable statuses meanwhile
                with self.journal.transaction():
                    self._set_order(ctx, order.remote_id, S.SEEN, version=order.version)

    def _recover_orders(self, ctx: _Ctx, *, look_up_fresh: bool = True) -> None:
        """Finish what a crash or a failure left half done.

        An order left in `creating` is looked up at once; it is posted again only once its last
        POST is older than the settle time: a POST whose answer was lost may still be running in
        the back office, and a second POST racing it would create the order twice.
        `look_up_fresh=False` (the end-of-step rounds): one not that old yet is not looked up again.
        """
        settled_before = self.wall() - ctx.setup.settle_seconds
        for row in self.journal.orders_in_state(ctx.name, IN_FLIGHT):
            if row.state == S.CREATING:
                settled = _stamp(row.updated_at) <= settled_before
                if not (settled or look_up_fresh):
                    ctx.unsettled += 1  # the daemon did not wait for it: its next cycle looks it up
                    continue
                work = lambda row=row, settled=settled: self._create_in_backoffice(  # noqa: E731
                    ctx, row.order_id, row.payload or {}, retry=True, may_post=settled)
            elif row.state == S.CREATED:
                work = lambda row=row: self._acknowledge(ctx, row.order_id, row.bo_number or "")  # noqa: E731
            else:
                source = (row.payload or {}).get("source")
                if not isinstance(source, dict):
                    continue
                work = lambda source=source: self._process_parked(ctx, order_from_dict(source))  # noqa: E731
            self._guarded(ctx, None, work)

    def _import_order(self, ctx: _Ctx, order: Order) -> None:
        row = self.journal.order(ctx.name, order.remote_id)
        if row is not None:
            if row.state == S.ACKNOWLEDGED and ctx.conn.capabilities.order_queue and not ctx.plan_only:
                self._acknowledge_again(ctx, order.remote_id, row.bo_number or "")
                return
            if row.state in (S.ACKNOWLEDGED, S.CANCELLED):
                return
            if row.state == S.CREATED:
                self._acknowledge(ctx, order.remote_id, row.bo_number or "")
                return
            if row.state == S.CREATING:
                return  # settled by _recover_orders: looked up, posted again once its last POST is old enough
            if row.state == S.QUARANTINED and row.version == order.version and row.version:
                return  # unchanged since it was quarantined: wait for a change or a manual retry
            if row.state == S.PARKED and _newer(row.version, order.version):
                return  # the journal holds a newer version of this order
        if ctx.plan_only:  # a shadow channel: note the order it would import, touch nothing
            ctx.plan.append(PlannedWrite("orders", order.remote_id, "create", {"total": str(order.total)}))
            return
        customer_code = self._customer_of(ctx, order)
        if customer_code is None and ctx.from_journal and self._young(ctx, order):
            # a parked order retried from the journal: its customer may only be known once the channel
            # hands the order over again (a queue-like feed), so it waits a while before quarantine
            raise TransientError(f"order {order.remote_id}: customer {order.channel_customer_id} not known yet")
        if customer_code is None:
            self._quarantine_order(ctx, order, "missing_reference",
                                   f"customer {order.channel_customer_id or '(none)'} is not known in the back office",
                                   waiting_for=(("customer", order.channel_customer_id or "(none)"),))
            return
        source = order  # as the channel gave it (channel SKUs), kept if the back office refuses it
        order = self._backoffice_skus(ctx, order)
        bo_order = BackOfficeOrder(ctx.name, order, customer_code, ctx.setup.order_warehouse)
        try:
            out = self.backoffice.prepare("orders", bo_order)
        except MappingError as exc:
            self._quarantine_order(ctx, order, exc.code, exc.reason, waiting_for=exc.missing)
            return
        if ctx.setup.shadow:
            return
        with self.journal.transaction():
            self._set_order(ctx, order.remote_id, S.CREATING, version=order.version, payload=out.payload)
        self._create_in_backoffice(ctx, order.remote_id, out.payload, source=source)

    def _create_in_backoffice(self, ctx: _Ctx, order_id: str, payload: dict[str, Any], *, retry: bool = False,
                              source: Any = None, may_post: bool = True) -> None:
        """Create once: look the order up first (POST /orders is not idempotent), then POST.

        A lost answer (AmbiguousError) is looked up at once: an order the back office committed
        before the answer was lost is recorded now. Not found, it stays in `creating`, posted
        again only once the settle time passed (`may_post`), never at once.
        """
        found = self.backoffice.lookup("orders", external_id=order_id, channel=ctx.name)
        if found is None and not may_post:
            ctx.unsettled += 1  # not there yet; its last POST may still be running: the end of the step waits
            return
        if found is not None:
            number = str(found["number"])
        else:
            if retry:  # note the new attempt's time first: the settle time counts from it
                with self.journal.transaction():
                    self._set_order(ctx, order_id, S.CREATING)
            failpoints.hit("order.before_create")
            try:
                (res,) = self.backoffice.push("orders", [Outgoing(order_id, payload)])
            except AmbiguousError:
                log.warning("%s: order %s: the back office answer was lost; looking it up", ctx.name, order_id)
                found = self._look_up_lost(ctx, order_id)
                if found is None:
                    raise
                res = PushResult(order_id, "created", remote_id=str(found["number"]))
            failpoints.hit("order.after_create")
            if not res.ok or res.remote_id is None:
                with self.journal.transaction():
                    self._set_order(ctx, order_id, S.QUARANTINED, reason_code=res.reason_code,
                                           reason=res.reason)
                    # the source order is kept too: once a missing reference appears it is mapped again
                    kept = {"outgoing": payload, **({"source": _describe(source)} if source is not None else {})}
                    self.journal.quarantine(ctx.name, "orders", order_id, res.reason_code or "rejected",
                                            res.reason or "rejected by the back office", kept,
                                            waiting_for=res.missing)
                ctx.result.quarantined += 1
                return
            number = res.remote_id
            ctx.result.sent += 1
        with self.journal.transaction():
            self._set_order(ctx, order_id, S.CREATED, bo_number=number)
            self.journal.release(ctx.name, "orders", [order_id])
        self._acknowledge(ctx, order_id, number)

    def _look_up_lost(self, ctx: _Ctx, order_id: str) -> dict[str, Any] | None:
        """The order whose POST answer was lost, if the back office has it already (None: not yet, or unknown)."""
        try:
            found = self.backoffice.lookup("orders", external_id=order_id, channel=ctx.name)
        except ChannelError as exc:
            log.warning("%s: order %s: the lookup after a lost answer failed too: %s", ctx.name, order_id, exc)
            return None
        return found if isinstance(found, dict) else None

    def _acknowledge(self, ctx: _Ctx, order_id: str, number: str) -> None:
        out = ctx.conn.prepare("order-acks", {"order_id": order_id, "backoffice_number": number})
        failpoints.hit("ack.before_send")
        (res,) = ctx.conn.push("order-acks", [out])
        failpoints.hit("ack.after_send")
        # no fsync of its own: lost to a power cut (never to a crash of the process), the order is still
        # `created` and is acknowledged again, which the channel takes as the same answer
        with self.journal.replayable(), self.journal.transaction():
            if res.ok:
                self._set_order(ctx, order_id, S.ACKNOWLEDGED)
                self.journal.release(ctx.name, "order-acks", [order_id])
            else:
                self.journal.quarantine(ctx.name, "order-acks", order_id, res.reason_code or "rejected",
                                        res.reason or "acknowledge refused", _out(out))
                ctx.result.quarantined += 1

    def _acknowledge_again(self, ctx: _Ctx, order_id: str, number: str) -> None:
        """A queue handed an acknowledged order over again (its item came back): take it off the queue again.

        Nothing changes in the journal; a refusal is quarantined like a first acknowledgement's.
        """
        out = ctx.conn.prepare("order-acks", {"order_id": order_id, "backoffice_number": number})
        (res,) = ctx.conn.push("order-acks", [out])
        if not res.ok:
            self._quarantine(ctx, "order-acks", order_id, res.reason_code or "rejected",
                             res.reason or "acknowledge refused", _out(out))

    def _cancel_order(self, ctx: _Ctx, order: Order) -> None:
        """An order cancelled on the channel is cancelled in the back office (if it got there)."""
        row = self.journal.order(ctx.name, order.remote_id)
        if row is not None and row.state == S.CANCELLED:
            return
        number = row.bo_number if row is not None else None
        if row is not None and row.state == S.CREATING:
            found = self.backoffice.lookup("orders", external_id=order.remote_id, channel=ctx.name)
            number = str(found["number"]) if found is not None else None
        if number and not ctx.setup.shadow:
            out = self.backoffice.prepare("order-cancels", {"number": number, "reason": "cancelled on the channel"})
            failpoints.hit("cancel.before_send")
            (res,) = self.backoffice.push("order-cancels", [out])
            failpoints.hit("cancel.after_send")
            if not res.ok:
                self._quarantine(ctx, "order-cancels", order.remote_id, res.reason_code or "rejected",
                                 res.reason or "cancel refused", _out(out))
                return
            ctx.result.sent += 1
        if ctx.setup.shadow:
            return
        with self.journal.transaction():
            self._set_order(ctx, order.remote_id, S.CANCELLED, version=order.version, bo_number=number)
            self.journal.release(ctx.name, "orders", [order.remote_id])

    def _quarantine_order(self, ctx: _Ctx, order: Order, code: str, reason: str,
                          waiting_for: tuple[tuple[str, str], ...] = ()) -> None:
        with self.journal.transaction():
            self._set_order(ctx, order.remote_id, S.QUARANTINED, version=order.version,
                                   reason_code=code, reason=reason)
            self.journal.quarantine(ctx.name, "orders", order.remote_id, code, reason, _src(_describe(order)),
                                    waiting_for=waiting_for)
        ctx.result.quarantined += 1
        log.warning("%s/orders: quarantined %s: %s: %s", ctx.name, order.remote_id, code, reason)
