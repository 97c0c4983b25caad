"""Order events: fulfilment news (invoiced, shipped, delivered, cancelled) back to the channel, in order, once."""

from __future__ import annotations

from syncagent import failpoints
from syncagent.connectors.base import Outgoing
from syncagent.engine.core import CursorTrail, EngineCore, _bad_key, _Ctx, _describe, _out, _src
from syncagent.engine.order_states import OrderState as S
from syncagent.errors import MappingError
from syncagent.model import BadRecord, OrderEvent, fingerprint


class OrderEvents(EngineCore):
    """Reads the source's event feed and delivers each channel's events; held-back ones go first next time."""

    def _order_events(self, ctx: _Ctx) -> None:
        self._retry_pending_events(ctx)
        cursor = self.journal.cursor(ctx.name, "order-events")
        trail = CursorTrail(f"{ctx.name}/order-events", cursor)
        for page in trail.follow(self.shared.pull("order-events", cursor)):
            mine: list[OrderEvent] = []
            for record in page.records:
                if isinstance(record, BadRecord):
                    self._quarantine(ctx, "order-events", _bad_key(record), record.code, record.reason,
                                     _src(record.raw))
                elif record.channel == ctx.name:
                    mine.append(record)
            ctx.result.read += len(mine)
            marks = self.journal.event_marks(ctx.name, [e.id for e in mine])
            mine.sort(key=lambda e: (e.remote_order_id, e.rank, e.occurred_at))
            for event in mine:
                # an event the feed carries again is a correction (an NF-e re-issued, a tracking code fixed)
                # when its payload differs from what the channel was handed: sent once per change, in order
                self._deliver_event(ctx, event, marks.get(event.id))
            with self.journal.transaction():
                self._advance(ctx.name, "order-events", page.cursor)
            if self.should_stop():
                return  # the page is recorded; held-back events are retried at the next run's start
        self._retry_pending_events(ctx)

    def _retry_pending_events(self, ctx: _Ctx) -> None:
        """Events held back because an earlier one had not reached the channel: try them again."""
        for event_id, order_id, type_, rank, payload in self.journal.pending_events(ctx.name):
            out = Outgoing(event_id, payload["payload"], payload.get("meta", {}))
            self._send_event(ctx, event_id, order_id, type_, rank, out)

    def _deliver_event(self, ctx: _Ctx, event: OrderEvent, mark: tuple[str, str | None] | None = None) -> None:
        """Hand one event to the channel unless `mark` (its journal state, fingerprint) says it has it as is."""
        state, known = mark or (None, None)
        if state == "skipped":
            ctx.result.unchanged += 1
            return
        order = self.journal.order(ctx.name, event.remote_order_id)
        if state is None and event.type == "cancelled" and order is not None and order.state == S.CANCELLED:
            with self.journal.transaction():  # the channel cancelled it itself: nothing to tell
                self.journal.set_event(ctx.name, event.id, event.remote_order_id, event.type, event.rank, "skipped")
            return
        try:
            out = ctx.conn.prepare("order-events", event)
        except MappingError as exc:
            source = _src(_describe(event))
            if state == "quarantined" and known == fingerprint(source):
                ctx.result.unchanged += 1
                return
            with self.journal.transaction():
                self.journal.set_event(ctx.name, event.id, event.remote_order_id, event.type, event.rank,
                                       "quarantined", reason=exc.reason, fingerprint=fingerprint(source))
                self.journal.quarantine(ctx.name, "order-events", event.id, exc.code, exc.reason, source,
                                        fingerprint(source))
            ctx.result.quarantined += 1
            return
        # handed over before as it is now (delivered, refused, or held back behind an earlier one): nothing new;
        # an event delivered before its fingerprint was kept goes again (the channel answers it already has it)
        if state is not None and known == fingerprint(out.payload):
            ctx.result.unchanged += 1
            return
        self._send_event(ctx, event.id, event.remote_order_id, event.type, event.rank, out)

    def _send_event(self, ctx: _Ctx, event_id: str, order_id: str, type_: str, rank: int, out: Outgoing) -> None:
        if ctx.setup.shadow:
            return
        failpoints.hit("event.before_send")
        (res,) = ctx.conn.push("order-events", [out])
        failpoints.hit("event.after_send")
        stored = {"payload": out.payload, "meta": out.meta}
        fp = fingerprint(out.payload)
        with self.journal.transaction():
            if res.ok:
                self.journal.set_event(ctx.name, event_id, order_id, type_, rank, "delivered", fingerprint=fp)
                self.journal.release(ctx.name, "order-events", [event_id])
                ctx.result.sent += 1
            elif res.reason_code == "out_of_order":
                # an earlier event has not reached the channel yet: hold this one and retry it first next time
                self.journal.set_event(ctx.name, event_id, order_id, type_, rank, "pending", stored, res.reason,
                                       fingerprint=fp)
            else:
                self.journal.set_event(ctx.name, event_id, order_id, type_, rank, "quarantined", stored, res.reason,
                                       fingerprint=fp)
                self.journal.quarantine(ctx.name, "order-events", event_id, res.reason_code or "rejected",
                                        res.reason or "rejected", _out(out), fp)
                ctx.result.quarantined += 1
