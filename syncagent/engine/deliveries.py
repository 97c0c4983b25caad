"""Delivery tracking: each shipment the back office announced is followed to a final status, each status once.

The `deliveries` flow of a channel reads the back office's order-events feed from its own cursor
and notes every `shipped` event of the channel's orders as a shipment to track, tracked by:

* the channel itself when its connector owns that carrier's tracking (`Capabilities.owned_tracking`:
  a marketplace's own logistics), written with `source: channel`;
* else the carrier connector whose configured `names` include the carrier (`source: carrier`);
* else nobody: the shipment is `unknown_carrier`, shown by `syncagent status`, and picked up as soon
  as the config maps that carrier name.

Polling is cheap and bounded: only open shipments whose next poll is due, at most the flow's batch
size a run, in the tracker's batch size a call; a carrier that fails backs its shipments off
(doubling, capped) while the other carriers go on; a final status (delivered, returned) closes the
shipment. Each new status is written once (`POST /orders/{number}/deliveries` is idempotent, and the
journal keeps what was written). A shipment with no news for its carrier's `silent_after` is
listed by `journal.silent_shipments` and raises an alert with its tracking code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from syncagent import failpoints
from syncagent.connectors.base import Connector
from syncagent.connectors.common import chunks
from syncagent.engine.core import CursorTrail, EngineCore, _Ctx, _describe, _out, _src, log
from syncagent.errors import ChannelError, MappingError, TransientError
from syncagent.journal_sac import ShipmentRow
from syncagent.model import BadRecord, OrderEvent, time_key
from syncagent.model_sac import FINAL_STATUSES, DeliveryUpdate, ShipmentRef, Tracking

BACKOFF_FIRST = 300.0  # a carrier that failed is asked again after 5 minutes, then 10, 20… (per shipment)
BACKOFF_MAX = 6 * 3600.0
DEFAULT_SILENT = 7 * 86400.0  # for shipments the channel tracks (no carrier config to say otherwise)
CHANNEL = "channel"


@dataclass(frozen=True)
class CarrierSetup:
    """One configured carrier connector and the carrier names (case-folded) it tracks."""

    name: str
    connector: Connector
    names: frozenset[str]
    silent_after: float = DEFAULT_SILENT  # seconds without news before an alert
    poll_every: float = 0.0  # seconds between two polls of one shipment (0: every run of the flow)


class DeliveryFlows(EngineCore):
    """The `deliveries` flow of a channel."""

    def _deliveries(self, ctx: _Ctx) -> None:
        self._note_shipments(ctx)
        if self.should_stop():
            return
        self._match_unknown_carriers(ctx)
        self._poll_shipments(ctx)

    def _tracker_of(self, ctx: _Ctx, carrier: str) -> tuple[str | None, CarrierSetup | None]:
        name = carrier.strip().casefold()
        if name in ctx.conn.capabilities.owned_tracking:
            return CHANNEL, None
        for setup in self.carriers.values():
            if name in setup.names:
                return f"carrier:{setup.name}", setup
        return None, None

    def _note_shipments(self, ctx: _Ctx) -> None:
        """Every `shipped` event of this channel's orders becomes a shipment to track (once)."""
        cursor = self.journal.cursor(ctx.name, "deliveries")
        trail = CursorTrail(f"{ctx.name}/deliveries", cursor)
        for page in trail.follow(self.backoffice.pull("order-events", cursor)):
            now = self.clock()
            for event in page.records:  # a bad event is the order-events flow's to quarantine
                if not (isinstance(event, OrderEvent) and event.channel == ctx.name and event.type == "shipped"
                        and event.shipment is not None and event.shipment.tracking_code.strip()):
                    continue
                ctx.result.read += 1
                shipment = event.shipment
                tracker, setup = self._tracker_of(ctx, shipment.carrier)
                silent = setup.silent_after if setup is not None else DEFAULT_SILENT
                with self.journal.transaction():
                    added = self.journal.add_shipment(
                        ctx.name, shipment.tracking_code.strip(), shipment.carrier, event.order_number,
                        event.remote_order_id, tracker, "open" if tracker else "unknown_carrier",
                        now=_key(now), silent_at=_key(now + timedelta(seconds=silent)), event_id=event.id)
                if not added:
                    ctx.result.unchanged += 1
                elif tracker is None:
                    log.warning("%s/deliveries: %s of order %s: no carrier connector tracks %r (map it under "
                                "carriers: in the config)", ctx.name, shipment.tracking_code, event.order_number,
                                shipment.carrier)
            with self.journal.transaction():
                self._advance(ctx.name, "deliveries", page.cursor)
            if self.should_stop():
                return

    def _match_unknown_carriers(self, ctx: _Ctx) -> None:
        """Shipments of a carrier nobody tracked: tracked from now on if the config maps it now."""
        for row in self.journal.shipments_in_state(ctx.name, "unknown_carrier"):
            tracker, _ = self._tracker_of(ctx, row.carrier)
            if tracker is not None:
                with self.journal.transaction():
                    self.journal.update_shipment(ctx.name, row.tracking_code, now=_key(self.clock()), state="open",
                                                 tracker=tracker, next_poll_at=_key(self.clock()))

    def _poll_shipments(self, ctx: _Ctx) -> None:
        now = self.clock()
        limit = ctx.setup.batch_size.get("deliveries", 200)
        groups: dict[str, list[ShipmentRow]] = {}
        for row in self.journal.due_shipments(ctx.name, _key(now), limit):
            tracker, _ = self._tracker_of(ctx, row.carrier)  # the config may have moved it since
            if tracker is None:
                with self.journal.transaction():
                    self.journal.update_shipment(ctx.name, row.tracking_code, now=_key(now), state="unknown_carrier",
                                                 tracker=None)
                continue
            groups.setdefault(tracker, []).append(row)
        failures: list[str] = []
        for tracker, rows in groups.items():
            setup = self.carriers[tracker.removeprefix("carrier:")] if tracker != CHANNEL else None
            conn = setup.connector if setup is not None else ctx.conn
            for chunk in chunks(rows, max(1, conn.capabilities.max_batch)):
                try:
                    found = self._ask(conn, chunk)
                except ChannelError as exc:  # this tracker only: its shipments back off, the others go on
                    failures.append(f"{setup.name if setup else ctx.name}: {exc}")
                    self._back_off(ctx, chunk, str(exc))
                    break
                for row in chunk:
                    self._take(ctx, row, found.get(row.tracking_code), setup)
                if self.should_stop():
                    return
        if failures:
            raise TransientError("tracking failed for some shipments (they are asked again later, backing off): "
                                 + "; ".join(failures), code="tracking_failed")

    @staticmethod
    def _ask(conn: Connector, rows: Sequence[ShipmentRow]) -> dict[str, Tracking | BadRecord]:
        refs = [ShipmentRef(r.carrier, r.tracking_code, r.order_number, r.order_id, r.last_status) for r in rows]
        found: dict[str, Tracking | BadRecord] = {}
        for page in conn.pull("tracking", None, {"shipments": refs}):
            for record in page.records:
                if isinstance(record, (Tracking, BadRecord)):
                    found[record.key] = record
        return found

    def _back_off(self, ctx: _Ctx, rows: Sequence[ShipmentRow], why: str) -> None:
        now = self.clock()
        with self.journal.transaction():
            for row in rows:
                wait = min(BACKOFF_FIRST * 2 ** min(row.failures, 16), BACKOFF_MAX)
                self.journal.update_shipment(ctx.name, row.tracking_code, now=_key(now), failures=row.failures + 1,
                                             next_poll_at=_key(now + timedelta(seconds=wait)), reason=why[:500])

    def _take(self, ctx: _Ctx, row: ShipmentRow, record: Tracking | BadRecord | None,
              setup: CarrierSetup | None) -> None:
        """Write the shipment's new statuses, oldest first, each once; close it at a final one."""
        now = self.clock()
        poll_every = setup.poll_every if setup is not None else 0.0
        if isinstance(record, BadRecord):  # e.g. a code the carrier can never know (bad check digit)
            with self.journal.transaction():
                self.journal.update_shipment(ctx.name, row.tracking_code, now=_key(now), state="quarantined",
                                             reason=record.reason)
                self.journal.quarantine(ctx.name, "deliveries", row.tracking_code, record.code, record.reason,
                                        _src(record.raw))
            ctx.result.quarantined += 1
            return
        events = sorted(record.events, key=lambda e: e.occurred_at) if record is not None else []
        done = self.journal.delivery_statuses(ctx.name, row.tracking_code)
        source = "carrier" if setup is not None else "channel"
        news = False
        for event in events:
            update = DeliveryUpdate(row.order_number, row.carrier, row.tracking_code, event, source)
            if update.key in done:
                continue
            news = True
            self._write_status(ctx, row, update)
        last = events[-1] if events else None
        fields: dict[str, object] = {"failures": 0, "reason": None,
                                     "next_poll_at": _key(now + timedelta(seconds=poll_every))}
        if last is not None:
            fields["last_status"] = last.status
            if last.status in FINAL_STATUSES:
                fields["state"] = "final"
        if news and last is not None:
            silent = setup.silent_after if setup is not None else DEFAULT_SILENT
            fields["silent_at"] = _key(last.occurred_at + timedelta(seconds=silent))
        with self.journal.transaction():
            self.journal.update_shipment(ctx.name, row.tracking_code, now=_key(now), **fields)
        if fields.get("state") == "final":
            log.info("%s/deliveries: %s (order %s) is %s: no more polling", ctx.name, row.tracking_code,
                     row.order_number, fields["last_status"])

    def _write_status(self, ctx: _Ctx, row: ShipmentRow, update: DeliveryUpdate) -> None:
        try:
            out = self.backoffice.prepare("deliveries", update)
        except MappingError as exc:
            with self.journal.transaction():
                self.journal.record_delivery_status(ctx.name, row.tracking_code, update.key)
                self.journal.quarantine(ctx.name, "deliveries", update.key, exc.code, exc.reason,
                                        _src(_describe(update)))
            ctx.result.quarantined += 1
            return
        if ctx.setup.shadow or ctx.plan_only:
            return
        failpoints.hit("delivery.before_write")
        (res,) = self.backoffice.push("deliveries", [out])  # idempotent by (code, status, time)
        failpoints.hit("delivery.after_write")
        with self.journal.transaction():
            self.journal.record_delivery_status(ctx.name, row.tracking_code, update.key)
            if not res.ok:
                self.journal.quarantine(ctx.name, "deliveries", update.key, res.reason_code or "rejected",
                                        res.reason or "refused by the back office", _out(out))
        if res.ok:
            ctx.result.sent += res.status == "created"
        else:
            ctx.result.quarantined += 1


def _key(moment: datetime) -> str:
    return time_key(moment) or ""

