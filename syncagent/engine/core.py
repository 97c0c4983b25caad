"""What every part of the engine shares: a step's result and context, the channel setup, the core state.

The engine is one class (`syncagent.engine.Engine`) assembled from one mixin per concern
(push pipeline, catalogue flows, SKU mapping, customers, order intake, order events, operator
actions); each mixin reads and writes only the state declared here on `EngineCore`.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from syncagent.connectors.base import Connector, Outgoing
from syncagent.engine.shared import SharedReader, pass_turn
from syncagent.errors import TransientError
from syncagent.journal import Journal
from syncagent.model import BadRecord, Page, utcnow

log = logging.getLogger("syncagent.engine")


@dataclass
class StepResult:
    """What one step did. status: ok | quarantined | failed | auth_failed | skipped | interrupted."""

    channel: str
    flow: str
    read: int = 0
    sent: int = 0
    unchanged: int = 0
    quarantined: int = 0
    status: str = "ok"
    error: str | None = None
    details: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True)
class ChannelSetup:
    """What the engine needs to know of one channel, taken from its config."""

    name: str
    connector: Connector
    warehouses: tuple[str, ...] = ()
    order_warehouse: str | None = None
    safety_stock: int = 0
    shadow: bool = False
    batch_size: Mapping[str, int] = field(default_factory=dict)
    directions: Mapping[str, str] = field(default_factory=dict)
    order_statuses: tuple[str, ...] | None = None
    settle_seconds: float = 0.0  # how long a POST whose answer was lost may still be running
    sku_mapping: str = "optional"  # required: records with no channel SKU wait in quarantine
    adopt: bool = False  # bind the channel's existing listings by SKU or EAN before the first products push
    config_digest: str = ""  # a digest of the channel's config: a change maps every page again


@dataclass(frozen=True, slots=True)
class PlannedWrite:
    """What a dry run (or a shadow channel) would send."""

    entity: str
    key: str
    action: str  # create | update
    payload: dict[str, Any]


@dataclass
class _Ctx:
    setup: ChannelSetup
    result: StepResult
    plan_only: bool = False
    plan: list[PlannedWrite] = field(default_factory=list)
    customers_pulled: bool = False
    failures_in_row: int = 0
    parked: int = 0
    unsettled: int = 0
    from_journal: bool = False
    last_error: str = ""
    sku_mapped: bool | None = None  # does this channel have a DE/PARA map (asked once per step)
    dry_run: bool = False  # push --dry-run: not even the journal changes
    fed_to_end: bool = False  # the last push read its feed to the end (not stopped half way)
    operator: bool = False  # an operator action (retry, replay): it may reopen an order in any state
    # a flow turned around by the config (source: channel, sink: backoffice): the channel is read and the
    # back office written; None: the default, the back office read and the channel written
    flow_source: Connector | None = None
    flow_sink: Connector | None = None

    @property
    def name(self) -> str:
        return self.setup.name

    @property
    def conn(self) -> Connector:
        return self.setup.connector

    @property
    def sink(self) -> Connector:
        """Where a push step writes: the channel, or the back office for a flow turned around."""
        return self.flow_sink or self.setup.connector

    @property
    def reversed(self) -> bool:
        return self.flow_sink is not None


class EngineCore:
    """The state every concern of the engine works on, and the few helpers they all use."""

    def __init__(
        self,
        journal: Journal,
        backoffice: Connector,
        channels: Mapping[str, ChannelSetup],
        *,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], None] = time.sleep,
        wall: Callable[[], float] | None = None,
        carriers: Mapping[str, Any] | None = None,
    ) -> None:
        self.sleep = sleep
        # carrier connectors by config name (`engine.deliveries.CarrierSetup`): who tracks which shipment
        self.carriers: dict[str, Any] = dict(carriers or {})
        # ages of journal rows (stamped with the wall clock) are measured with `wall`; it follows `clock`
        # unless given, so a simulated clock ages them too (a test may pin `clock` and keep `wall` real)
        self.wall: Callable[[], float] = wall or (lambda: self.clock().timestamp())
        self.should_stop: Callable[[], bool] = lambda: False  # set by the daemon: stop after the page in hand
        # how long the orders step may wait at its end for a lost answer's settle time: a cron cycle
        # (`run --once`) waits it out (it is bounded by the configured timeouts); the daemon lowers it
        # to MAX_SETTLE_WAIT and defers what is left to its next cycle
        self.settle_wait_limit: float = math.inf
        self.on_page: Callable[[StepResult], None] | None = None  # progress display: called after each page
        # set by the command line: the operator's Ctrl-C made should_stop end the step before its end
        self.interrupted: Callable[[], bool] = lambda: False
        self.journal = journal
        self.backoffice = backoffice
        # the back office's feed pages, read once and handed to every channel at the same cursor
        self._shared = SharedReader(backoffice)
        self.channels = dict(channels)
        self.clock = clock

    @property
    def shared(self) -> SharedReader:
        """The shared reader of the back office in use (a test may swap the back office)."""
        if self._shared.source is not self.backoffice:
            self._shared = SharedReader(self.backoffice)
        return self._shared

    def _source(self, ctx: _Ctx) -> Connector | SharedReader:
        """Where a push step reads: the back office (through the shared reader), or the channel for a flow
        turned around."""
        return ctx.flow_source or self.shared

    def _progress(self, ctx: _Ctx) -> None:
        r = ctx.result
        log.debug("%s/%s: page done: so far read %d, sent %d, unchanged %d, quarantined %d", r.channel, r.flow,
                  r.read, r.sent, r.unchanged, r.quarantined)
        if self.on_page is not None:
            self.on_page(ctx.result)
        pass_turn()  # steps of other channels side by side (Agent.run_steps) take their turn

    def _advance(self, channel: str, cursor_key: str, cursor: str | None) -> None:
        """Move the cursor past a recorded page; None (end of the feed for now) keeps it."""
        if self.channels[channel].shadow:
            return  # a shadow channel applied nothing: it must read the same records again when it goes live
        if cursor is not None:
            self.journal.save_cursor(channel, cursor_key, cursor)
        else:
            self.journal.touch_cursor(channel, cursor_key)

    def _quarantine(self, ctx: _Ctx, entity: str, key: str, code: str, reason: str, payload: Any) -> None:
        with self.journal.transaction():
            self.journal.quarantine(ctx.name, entity, key, code, reason, payload)
        ctx.result.quarantined += 1
        log.warning("%s/%s: quarantined %s: %s: %s", ctx.name, entity, key, code, reason)


def _stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _newer(stored: str | None, seen: str) -> bool:
    """True when the journal's copy is a later version than the one just read (numeric versions only)."""
    return bool(stored and seen and stored.isdigit() and seen.isdigit() and int(stored) > int(seen))


def _src(raw: Any) -> dict[str, Any]:
    """Quarantine payload of a record that never mapped: what the source said."""
    return {"source": raw}


def _out(out: Outgoing) -> dict[str, Any]:
    """Quarantine payload of a record the sink refused: what was sent, so it can be re-sent as is."""
    return {"outgoing": out.payload, "meta": out.meta}


def _bad_key(record: BadRecord) -> str:
    if record.key and record.key != "?":
        return record.key
    return "?" + hashlib.sha256(repr(record.raw).encode("utf-8", "replace")).hexdigest()[:12]


def _describe(record: Any) -> Any:
    """A JSON-able view of a model object for the quarantine (payload to show to people)."""
    from dataclasses import asdict, is_dataclass

    if is_dataclass(record) and not isinstance(record, type):
        return asdict(record)
    return record


class CursorTrail:
    """The cursors one pass over a feed went through: a feed whose cursors come back round would never end.

    A cursor met again (A → B → A) stops the step before its page is taken: the pages before it
    are recorded, the cursor saved stays the last new one, and the next run meets the same circle
    after a page or two instead of looping. A null cursor (the end for now) is never a repeat, nor
    is a page that gives back the cursor it was read from (a feed's way to say "nothing after this";
    the connector ends there), unless it does so again.
    """

    def __init__(self, what: str, start: str | None) -> None:
        self.what = what
        self.seen: set[str] = {start} if start else set()
        self.last = start
        self.stalled = False

    def check(self, cursor: str | None) -> None:
        if cursor is None:
            return
        if cursor == self.last and not self.stalled:
            self.stalled = True
            return
        if cursor in self.seen:
            raise TransientError(f"{self.what}: the feed's cursors go round in a circle: cursor {cursor[:40]!r} "
                                 f"came back after {len(self.seen)} distinct cursors; that page is not taken",
                                 code="cursor_loop")
        self.seen.add(cursor)
        self.last, self.stalled = cursor, False

    def follow(self, pages: Iterable[Page]) -> Iterator[Page]:
        """The pages of one pass, each checked before the caller takes it."""
        for page in pages:
            self.check(page.cursor)
            yield page
