"""The engine: push steps, order intake and order events. It names no system.

A *step* is one (channel, flow). The engine reads a source feed page by page, maps each record
through the sink's connector, fingerprints the mapped payload, sends only what changed, and
records the outcome (fingerprints, quarantine, cursor) in one journal transaction per page.
Order intake is a small state machine per order (seen → creating → created → acknowledged, or
quarantined / cancelled) whose every transition is committed before the next network call.

One module per concern, each a mixin of `Engine` over the state of `core.EngineCore`:

  core.py          StepResult, ChannelSetup, the step context, the state all concerns share;
                   CursorTrail, which stops a feed whose cursors go round (every pull loop uses it)
  push.py          the push pipeline: read → map → diff → send → record, one transaction a page
  executor.py      its concurrency: the read-ahead helper thread and the pages sent ahead
  pages.py         page skipping: pages recorded whole and read again byte for byte are not mapped
  shared.py        one read of a back office page per cycle for every channel (a bounded cache), and
                   the turns that let steps of several channels run side by side on one journal
  catalogue.py     prices in force (re-sent at their boundaries) and stock summed over warehouses
                   (a sum is held back until every warehouse's rows were read to the feed's end)
  skus.py          SKU DE/PARA and adopting a channel's existing listings
  customers.py     binding a channel's customers to the back office's
  order_states.py  the order states and the one table of their transitions
  orders.py        order intake: created once (a lost answer looked up at once), then acknowledged
  events.py        order events back to the channel, in order, once per change (corrections)
  actions.py       operator actions: quarantine retry, replay; the self-releasing quarantine
  tickets.py       customer-service tickets in once, messages once; answers back once, in order, only to
                   tickets downloaded from that channel
  deliveries.py    shipments announced in order-events tracked at their carrier (or channel) to a final
                   status, each status written once
"""

from __future__ import annotations

from collections.abc import Callable

from syncagent import entities
from syncagent.connectors.base import PushResult
from syncagent.engine.actions import OperatorActions
from syncagent.engine.catalogue import CatalogueFlows
from syncagent.engine.core import ChannelSetup, PlannedWrite, StepResult, _Ctx, log
from syncagent.engine.customers import Customers
from syncagent.engine.deliveries import CarrierSetup, DeliveryFlows
from syncagent.engine.events import OrderEvents
from syncagent.engine.orders import MAX_SETTLE_WAIT, OrderIntake
from syncagent.engine.push import PushPipeline
from syncagent.engine.skus import SkuMapping
from syncagent.engine.tickets import TicketFlows
from syncagent.errors import AuthError, ChannelError

CATALOGUE_PUSH = entities.CATALOGUE
BACKOFFICE_STATE = "@backoffice"  # the back office's credential state, kept beside the channels' (no channel name has @)
BACKOFFICE_REFUSED = "back office credentials rejected"
READS_BACKOFFICE_FEED = frozenset({"groups", "payment-methods", "sellers", "products", "prices", "stock", "order-events",
                                   "ticket-answers", "deliveries"})
INTERRUPTED = "interrupted by the operator (Ctrl-C); what was recorded stays, the next run goes on from there"


class Engine(PushPipeline, CatalogueFlows, SkuMapping, Customers, OrderIntake, OrderEvents, TicketFlows, DeliveryFlows,
             OperatorActions):
    """Runs steps; each concern lives in its own module (see the package docstring)."""

    # -- entry point ---------------------------------------------------------------------------
    def plan_step(self, channel: str, flow: str, *, full: bool = False) -> tuple[StepResult, list[PlannedWrite]]:
        """`push --dry-run`: what one push step would send now; nothing is sent, the journal is untouched."""
        if flow not in CATALOGUE_PUSH:
            raise ChannelError(f"--dry-run applies to the catalogue flows ({', '.join(CATALOGUE_PUSH)}), not {flow}")
        ctx = _Ctx(self.channels[channel], StepResult(channel, flow), plan_only=True, dry_run=True)
        try:
            self._dispatch(ctx, flow, full, "push" if flow == "customers" else None)
        except ChannelError as exc:
            ctx.result.status, ctx.result.error = "failed", str(exc)
        ctx.result.details["would_send"] = len(ctx.plan)
        return ctx.result, ctx.plan

    def run_step(self, channel: str, flow: str, *, full: bool = False, direction: str | None = None) -> StepResult:
        """Run one step; `direction` overrides the configured one (``pull --entity customers``)."""
        setup = self.channels[channel]
        ctx = _Ctx(setup, StepResult(channel, flow), plan_only=setup.shadow)
        run_id = self.journal.start_run(channel, flow)
        log.debug("%s/%s: step starts (%s)", channel, flow, "--full: the whole feed is read again" if full
                  else "from the saved cursor")
        try:
            self._dispatch(ctx, flow, full, direction)
            if ctx.result.quarantined and ctx.result.status == "ok":
                ctx.result.status = "quarantined"
            if self.interrupted():
                ctx.result.status, ctx.result.error = "interrupted", INTERRUPTED
            self.journal.set_channel_state(channel, "ok")
        except AuthError as exc:
            if exc.target is not None and exc.target == self.backoffice.name:
                # the back office refused *our* credentials: no channel is at fault
                ctx.result.status, ctx.result.error = "failed", _backoffice_refusal(str(exc))
                self.journal.set_channel_state(BACKOFFICE_STATE, "auth_failed", ctx.result.error)
            else:
                ctx.result.status, ctx.result.error = "auth_failed", str(exc)
                self.journal.set_channel_state(channel, "auth_failed", str(exc))
            log.error("%s/%s: %s", channel, flow, ctx.result.error, extra={"target": exc.target or channel})
        except ChannelError as exc:
            ctx.result.status, ctx.result.error = "failed", str(exc)
            log.error("%s/%s failed: %s", channel, flow, exc, extra={"target": exc.target or channel})
        if flow in READS_BACKOFFICE_FEED and ctx.result.status in ("ok", "quarantined", "interrupted"):
            self.journal.set_channel_state(BACKOFFICE_STATE, "ok")  # it read the back office: our credentials work
        r = ctx.result
        self.journal.finish_run(
            run_id, r.status, read=r.read, sent=r.sent, unchanged=r.unchanged, quarantined=r.quarantined, error=r.error
        )
        return r

    def _dispatch(self, ctx: _Ctx, flow: str, full: bool, direction: str | None) -> None:
        direction = direction or ctx.setup.directions.get(flow) or entities.default_direction(flow)
        if flow in CATALOGUE_PUSH and flow != "customers" and direction == entities.PULL:
            self._push_from_channel(ctx, flow, full)  # the config made the channel this flow's source
            return
        run = self._flow_handlers().get(flow)
        if run is None:
            raise ChannelError(f"unknown flow {flow!r}")
        run(ctx, full, direction)

    def _flow_handlers(self) -> dict[str, Callable[[_Ctx, bool, str], None]]:
        """One handler per flow (the ones the config may schedule: `entities.FLOWS`)."""
        return {
            "orders": lambda ctx, full, direction: self._orders(ctx),
            "order-events": lambda ctx, full, direction: self._order_events(ctx),
            "tickets": lambda ctx, full, direction: self._tickets(ctx),
            "ticket-answers": lambda ctx, full, direction: self._ticket_answers(ctx),
            "deliveries": lambda ctx, full, direction: self._deliveries(ctx),
            "stock": lambda ctx, full, direction: self._stock(ctx, full),
            "prices": lambda ctx, full, direction: self._prices(ctx, full),
            "customers": self._customers,
            "products": self._products,
            **{name: self._reference_table(name) for name in ("groups", "payment-methods", "sellers")},
        }

    def _customers(self, ctx: _Ctx, full: bool, direction: str) -> None:
        if direction in ("pull", "both"):
            self._pull_customers(ctx, may_stop=True)
        if direction in ("push", "both"):
            self._push_feed(ctx, "customers", full)

    def _products(self, ctx: _Ctx, full: bool, direction: str) -> None:
        if ctx.setup.adopt and not ctx.dry_run:
            self._adopt(ctx)  # reads the channel, writes only the local map: a shadow channel adopts too
        self._push_feed(ctx, "products", full)

    def _reference_table(self, flow: str) -> Callable[[_Ctx, bool, str], None]:
        """A small table pushed as it is (named here, not by the step: a quarantine retry runs it too)."""
        return lambda ctx, full, direction: self._push_feed(ctx, flow, full)



def _backoffice_refusal(message: str) -> str:
    """ "backoffice: credentials rejected by backoffice (/oauth/token): invalid_client: …", said once, cause whole."""
    _, found, rest = message.partition(" credentials rejected")
    return BACKOFFICE_REFUSED + (rest if found else f": {message}")


__all__ = ["BACKOFFICE_REFUSED", "BACKOFFICE_STATE", "MAX_SETTLE_WAIT", "CarrierSetup", "ChannelSetup", "Engine", "PlannedWrite",
           "PushResult", "StepResult"]
