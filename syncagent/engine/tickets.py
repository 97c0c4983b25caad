"""Customer-service tickets: brought into the back office once, each message once, each answer back once.

`tickets` (channel → back office): every ticket the channel's feed shows is created once in the
back office, where `POST /tickets` is not idempotent: its journal row says `creating` before the
POST, and a row found `creating` is looked up by (channel, external id) before any second POST,
which waits until the first one's settle time has passed (as orders do). Each message the
channel shows is then appended once (the journal keeps the ids appended; the back office also
answers a repeat with the stored message).

`ticket-answers` (back office → channel): the back office's feed of answers and status changes
is read from the step's cursor; an event goes to the channel only when its ticket was first
downloaded from this channel (its journal row is `created` with the same back office id), never
to a ticket the back office opened itself. An answer is marked `sending` before it leaves; one
found `sending` after a crash is asked of the channel (`lookup`), and quarantined as in doubt when
the channel cannot tell, never sent blind a second time. A refused answer (a closed question, a
banned one) is quarantined with the channel's reason. A transient failure stops the step before
the cursor passes the event, so the events after it wait and go in order.
"""

from __future__ import annotations

from typing import Any

from syncagent import failpoints
from syncagent.connectors.base import Outgoing, PushResult
from syncagent.engine.core import CursorTrail, EngineCore, _bad_key, _Ctx, _describe, _out, _src, _stamp, log
from syncagent.errors import AmbiguousError, ChannelError, MappingError, TransientError
from syncagent.journal_sac import TicketRow
from syncagent.model import BadRecord, time_key
from syncagent.model_sac import BackOfficeTicket, Ticket, TicketAnswer, answer_from_dict, ticket_from_dict

NOT_FROM_CHANNEL = "not_from_channel"
IN_DOUBT = "in_doubt"


class TicketFlows(EngineCore):
    """The `tickets` and `ticket-answers` flows of a channel."""

    def _now_key(self) -> str:
        return time_key(self.clock()) or ""

    # -- tickets: channel → back office ----------------------------------------------------------------
    def _tickets(self, ctx: _Ctx) -> None:
        self._recover_tickets(ctx)
        cursor = self.journal.cursor(ctx.name, "tickets")
        trail = CursorTrail(f"{ctx.name}/tickets", cursor)
        for page in trail.follow(ctx.conn.pull("tickets", cursor)):
            for record in page.records:
                ctx.result.read += 1
                if isinstance(record, BadRecord):
                    self._quarantine(ctx, "tickets", _bad_key(record), record.code, record.reason, _src(record.raw))
                else:
                    self._bring_ticket(ctx, record)
            with self.journal.transaction():
                self._advance(ctx.name, "tickets", page.cursor)
            if self.should_stop():
                return
        waiting = self.journal.tickets_in_state(ctx.name, "creating")
        if waiting:
            raise TransientError(f"{len(waiting)} ticket(s) wait in the journal for the next run (an answer of the "
                                 "back office was lost: each is looked up before it is posted again)")

    def _recover_tickets(self, ctx: _Ctx) -> None:
        """Tickets a crash or a lost answer left `creating`: looked up, posted again only once settled."""
        if ctx.setup.shadow or ctx.plan_only:
            return
        for row in self.journal.tickets_in_state(ctx.name, "creating"):
            self._finish_creating(ctx, row.ticket_key, row.payload or {}, row)

    def _bring_ticket(self, ctx: _Ctx, ticket: Ticket) -> None:
        row = self.journal.ticket(ctx.name, ticket.key)
        if row is not None and row.state == "creating":
            return  # in flight: `_recover_tickets` settles it (its messages follow once it is created)
        if row is not None and row.state == "created" and row.bo_id:
            self._append_messages(ctx, ticket, row.bo_id)
            return
        bo_id = self._create_ticket(ctx, ticket)
        if bo_id is not None:
            self._append_messages(ctx, ticket, bo_id)

    def _create_ticket(self, ctx: _Ctx, ticket: Ticket) -> str | None:
        """The back office id of a ticket seen for the first time (or again after quarantine); None: not there."""
        order_number = None
        if ticket.order_id:
            order = self.journal.order(ctx.name, ticket.order_id)
            order_number = order.bo_number if order is not None else None
        try:
            out = self.backoffice.prepare("tickets", BackOfficeTicket(ctx.name, ticket, order_number))
        except MappingError as exc:
            self._quarantine_ticket(ctx, ticket.key, exc.code, exc.reason, _src(_describe(ticket)))
            return None
        if ctx.setup.shadow or ctx.plan_only:
            return None
        with self.journal.transaction():  # before the POST: a crash after it is looked up, never posted blind
            self.journal.set_ticket(ctx.name, ticket.key, "creating", payload=out.payload, stamp=self._now_key())
        return self._finish_creating(ctx, ticket.key, out.payload, None)

    def _finish_creating(self, ctx: _Ctx, key: str, payload: dict[str, object], row: TicketRow | None) -> str | None:
        """Create once: look the ticket up first (POST /tickets is not idempotent), then POST."""
        found = self.backoffice.lookup("tickets", channel=ctx.name, external_id=key)
        if found is None:
            if row is not None:
                # a POST whose answer was lost may still be running in the back office: a second one waits
                if self.wall() - _stamp(row.updated_at) < ctx.setup.settle_seconds:
                    ctx.unsettled += 1
                    return None
                with self.journal.transaction():  # the settle time counts from this attempt
                    self.journal.set_ticket(ctx.name, key, "creating", stamp=self._now_key())
            failpoints.hit("ticket.before_create")
            try:
                (res,) = self.backoffice.push("tickets", [Outgoing(key, dict(payload))])
            except AmbiguousError:
                log.warning("%s/tickets: %s: the back office answer was lost; looking it up", ctx.name, key)
                found = self.backoffice.lookup("tickets", channel=ctx.name, external_id=key)
                if found is None:
                    raise
                res = PushResult(key, "created", remote_id=str(found["id"]))
            failpoints.hit("ticket.after_create")
            if not res.ok or not res.remote_id:
                self._quarantine_ticket(ctx, key, res.reason_code or "rejected", res.reason or
                                        "refused by the back office", {"outgoing": payload})
                return None
            bo_id = str(res.remote_id)
            messages = payload.get("messages")
            known = [str(m["external_id"]) for m in messages if isinstance(m, dict)] if isinstance(messages, list) \
                else []
            ctx.result.sent += 1
        else:
            bo_id, known = str(found["id"]), [str(m) for m in found.get("messages") or ()]
        with self.journal.transaction():
            self.journal.set_ticket(ctx.name, key, "created", bo_id=bo_id, stamp=self._now_key())
            self.journal.add_ticket_messages(ctx.name, key, known)
            self.journal.release(ctx.name, "tickets", [key])
        return bo_id

    def _resend_sac(self, ctx: _Ctx, entity: str, out: Outgoing) -> bool:
        """`quarantine retry` of a record of these flows, by the same path as the flow (True: handled here)."""
        if entity == "tickets":
            with self.journal.transaction():
                self.journal.set_ticket(ctx.name, out.key, "creating", payload=out.payload, stamp=self._now_key())
            self._finish_creating(ctx, out.key, out.payload, None)
        elif entity in ("ticket-messages", "deliveries"):  # idempotent writes to the back office
            (res,) = self.backoffice.push(entity, [out])
            with self.journal.transaction():
                if res.ok:
                    self.journal.release(ctx.name, entity, [out.key])
                else:
                    self.journal.quarantine(ctx.name, entity, out.key, res.reason_code or "rejected",
                                            res.reason or "rejected", _out(out))
        elif entity == "ticket-answers":
            (res,) = ctx.conn.push(entity, [out])
            with self.journal.transaction():
                if res.ok:
                    self.journal.set_answer(ctx.name, out.key, self._answer_ticket(ctx, out.key), "sent",
                                            stamp=self._now_key())
                    self.journal.release(ctx.name, entity, [out.key])
                else:
                    self.journal.quarantine(ctx.name, entity, out.key, res.reason_code or "rejected",
                                            res.reason or "rejected", _out(out))
        else:
            return False
        return True

    def _retry_sac(self, ctx: _Ctx, entity: str, payload: dict[str, Any]) -> bool:
        """`quarantine retry` of a ticket or an answer refused before it was sent (kept as its source)."""
        source = payload.get("source")
        if entity not in ("tickets", "ticket-answers") or not isinstance(source, dict) or "outgoing" in payload:
            return False
        try:
            record = ticket_from_dict(source) if entity == "tickets" else answer_from_dict(source)
        except (KeyError, TypeError, ValueError, MappingError):
            return False
        if isinstance(record, Ticket):
            self._bring_ticket(ctx, record)
        else:
            with self.journal.transaction():  # the operator says: try it again (a setting fixed, a thread reopened)
                self.journal.set_answer(ctx.name, record.id, record.ticket_key, "pending", stamp=self._now_key())
            self._answer(ctx, record)
        return True

    def _answer_ticket(self, ctx: _Ctx, event_id: str) -> str:
        return self.journal.answer_ticket(ctx.name, event_id) or ""

    def _quarantine_ticket(self, ctx: _Ctx, key: str, code: str, reason: str, payload: object) -> None:
        with self.journal.transaction():
            self.journal.set_ticket(ctx.name, key, "quarantined", stamp=self._now_key())
            self.journal.quarantine(ctx.name, "tickets", key, code, reason, payload)
        ctx.result.quarantined += 1
        log.warning("%s/tickets: quarantined %s: %s: %s", ctx.name, key, code, reason)

    def _append_messages(self, ctx: _Ctx, ticket: Ticket, bo_id: str) -> None:
        """Each message the back office does not have yet, oldest first, once."""
        done = self.journal.ticket_messages(ctx.name, ticket.key)
        for message in sorted(ticket.messages, key=lambda m: (m.sent_at, m.remote_id)):
            if message.remote_id in done:
                continue
            key = f"{ticket.key}/{message.remote_id}"
            try:
                out = self.backoffice.prepare("ticket-messages", {"ticket_id": bo_id, "message": message})
            except MappingError as exc:
                with self.journal.transaction():  # not tried again unless an operator retries it
                    self.journal.add_ticket_messages(ctx.name, ticket.key, [message.remote_id])
                    self.journal.quarantine(ctx.name, "ticket-messages", key, exc.code, exc.reason,
                                            _src(_describe(message)))
                ctx.result.quarantined += 1
                continue
            failpoints.hit("ticket.before_message")
            (res,) = self.backoffice.push("ticket-messages", [out])  # idempotent by the message's id
            failpoints.hit("ticket.after_message")
            with self.journal.transaction():
                self.journal.add_ticket_messages(ctx.name, ticket.key, [message.remote_id])
                if not res.ok:
                    self.journal.quarantine(ctx.name, "ticket-messages", key, res.reason_code or "rejected",
                                            res.reason or "refused by the back office", _out(out))
            if res.ok:
                ctx.result.sent += res.status == "created"
            else:
                ctx.result.quarantined += 1

    # -- ticket-answers: back office → channel ---------------------------------------------------------
    def _ticket_answers(self, ctx: _Ctx) -> None:
        cursor = self.journal.cursor(ctx.name, "ticket-answers")
        trail = CursorTrail(f"{ctx.name}/ticket-answers", cursor)
        for page in trail.follow(self.backoffice.pull("ticket-events", cursor)):
            for record in page.records:
                if isinstance(record, BadRecord):
                    self._quarantine(ctx, "ticket-answers", _bad_key(record), record.code, record.reason,
                                     _src(record.raw))
                elif record.channel == ctx.name:
                    ctx.result.read += 1
                    self._answer(ctx, record)
            with self.journal.transaction():
                self._advance(ctx.name, "ticket-answers", page.cursor)
            if self.should_stop():
                return

    def _answer(self, ctx: _Ctx, event: TicketAnswer) -> None:
        state = self.journal.answer_state(ctx.name, event.id)
        if state in ("sent", "quarantined", "refused", "skipped"):
            ctx.result.unchanged += 1
            return
        row = self.journal.ticket(ctx.name, event.ticket_key)
        if row is None or row.state != "created" or row.bo_id != event.ticket_id:
            # the agent never opens a conversation on a channel: only tickets it downloaded from there
            why = (f"ticket {event.ticket_id} ({event.ticket_key[:60]}) was not downloaded from {ctx.name}: "
                   "the answer is not sent (a channel ticket is answered only where it came from)")
            self._refuse_answer(ctx, event, NOT_FROM_CHANNEL, why, _src(_describe(event)), "refused")
            return
        try:
            out = ctx.conn.prepare("ticket-answers", event)
        except MappingError as exc:
            self._refuse_answer(ctx, event, exc.code, exc.reason, _src(_describe(event)), "quarantined")
            return
        if out.meta.get("nothing_to_send"):  # e.g. a status this channel has no call for
            with self.journal.transaction():
                self.journal.set_answer(ctx.name, event.id, event.ticket_key, "skipped",
                                        reason=str(out.meta["nothing_to_send"]), stamp=self._now_key())
            ctx.result.unchanged += 1
            return
        if ctx.setup.shadow or ctx.plan_only:
            return
        if state == "sending" and not self._answer_missing(ctx, event):
            return
        with self.journal.transaction():
            self.journal.set_answer(ctx.name, event.id, event.ticket_key, "sending", stamp=self._now_key())
        failpoints.hit("answer.before_send")
        try:
            (res,) = ctx.conn.push("ticket-answers", [out])
        except AmbiguousError:
            raise  # it stays `sending`: the next run asks the channel before anything else
        except ChannelError:
            with self.journal.transaction():  # the channel answered: nothing was written; tried again in order
                self.journal.set_answer(ctx.name, event.id, event.ticket_key, "pending", stamp=self._now_key())
            raise
        failpoints.hit("answer.after_send")
        if not res.ok:
            self._refuse_answer(ctx, event, res.reason_code or "rejected", res.reason or "refused by the channel",
                                _out(out), "quarantined")
            return
        with self.journal.transaction():
            self.journal.set_answer(ctx.name, event.id, event.ticket_key, "sent", stamp=self._now_key())
            if res.remote_id:  # the channel's copy of our answer is not brought back in as a new message
                self.journal.add_ticket_messages(ctx.name, event.ticket_key, [res.remote_id])
            self.journal.release(ctx.name, "ticket-answers", [event.id])
        ctx.result.sent += 1

    def _answer_missing(self, ctx: _Ctx, event: TicketAnswer) -> bool:
        """An answer left `sending` by a crash: True when the channel says it does not have it (send it)."""
        found = ctx.conn.lookup("ticket-answers", ticket=event.ticket_key, body=event.body or "",
                                status=event.status or "")
        if isinstance(found, dict) and found.get("found") is False:
            return True
        if isinstance(found, dict) and found.get("found"):
            with self.journal.transaction():
                self.journal.set_answer(ctx.name, event.id, event.ticket_key, "sent", stamp=self._now_key())
            ctx.result.unchanged += 1
            return False
        why = ("the agent stopped while sending this answer and the channel cannot tell whether it has it: look at "
               "the conversation on the channel, then retry or drop it")
        self._refuse_answer(ctx, event, IN_DOUBT, why, _src(_describe(event)), "quarantined")
        return False

    def _refuse_answer(self, ctx: _Ctx, event: TicketAnswer, code: str, reason: str, payload: object,
                       state: str) -> None:
        with self.journal.transaction():
            self.journal.set_answer(ctx.name, event.id, event.ticket_key, state, reason=reason, stamp=self._now_key())
            self.journal.quarantine(ctx.name, "ticket-answers", event.id, code, reason, payload)
        ctx.result.quarantined += 1
        log.warning("%s/ticket-answers: %s not sent: %s: %s", ctx.name, event.id, code, reason)
