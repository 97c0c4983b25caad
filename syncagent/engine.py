"""The engine: push steps, order intake and order events. It names no system.

A *step* is one (channel, flow). The engine reads a source feed page by page, maps each record
through the sink's connector, fingerprints the mapped payload, sends only what changed, and
records the outcome (fingerprints, quarantine, cursor) in one journal transaction per page.
Order intake is a small state machine per order (seen → creating → created → acknowledged, or
quarantined / cancelled) whose every transition is committed before the next network call.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import hashlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from syncagent import entities, failpoints
from syncagent.connectors.base import Connector, Outgoing, PushResult
from syncagent.errors import AmbiguousError, AuthError, ChannelError, MappingError, TransientError
from syncagent.journal import Journal, OrderRow, QuarantineRow, missing_references
from syncagent.mapping import SKU_ENTITIES, record_from_json, record_to_json, renamed
from syncagent.model import (
    EVENT_ORDER,
    BackOfficeOrder,
    BadRecord,
    ChannelCustomer,
    Customer,
    Order,
    OrderEvent,
    Page,
    Price,
    Product,
    StockBalance,
    StockLevel,
    channel_customer_from_dict,
    fingerprint,
    order_from_dict,
    price_from_json,
    price_to_json,
    time_str,
    utcnow,
)

log = logging.getLogger("syncagent.engine")

PARKED_PATIENCE = 3600.0  # a parked order waits this long for its customer before quarantine
MAX_SETTLE_WAIT = 5.0
SETTLE_ROUNDS = 3  # end-of-step retry rounds of the orders that failed or were too fresh  # seconds the orders step may wait at its end to retry lost answers
MAX_FAILURES_IN_ROW = 5  # orders failing one after another: the server is down, stop the step
CATALOGUE_PUSH = entities.CATALOGUE
SEND_AHEAD = 2  # pages of a push sent at once: the channel works on one while the agent hands over the other
RELEASE_EVERY = 600.0  # a quarantined order whose missing reference cannot be checked is retried this often
RELEASE_BATCH = 50  # quarantined orders looked at per orders step for a reference that appeared
# what the back office may come to know later (an order naming one of these waits for it)
WAITING_KINDS = frozenset({"product", "payment method", "customer", "seller", "group", "store", "warehouse"})
ADOPT_CURSOR = "adopt:products"


@dataclass
class StepResult:
    """What one step did. status: ok | quarantined | failed | auth_failed | skipped."""

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

    @property
    def name(self) -> str:
        return self.setup.name

    @property
    def conn(self) -> Connector:
        return self.setup.connector


class Engine:
    def __init__(
        self,
        journal: Journal,
        backoffice: Connector,
        channels: Mapping[str, ChannelSetup],
        *,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], None] = time.sleep,
        wall: Callable[[], float] | None = None,
    ) -> None:
        self.sleep = sleep
        # ages of journal rows (stamped with the wall clock) are measured with `wall`; it follows `clock`
        # unless given, so a simulated clock ages them too (a test may pin `clock` and keep `wall` real)
        self.wall: Callable[[], float] = wall or (lambda: self.clock().timestamp())
        self.should_stop: Callable[[], bool] = lambda: False  # set by the daemon: stop after the page in hand
        self.on_page: Callable[[StepResult], None] | None = None  # progress display: called after each page
        self.journal = journal
        self.backoffice = backoffice
        self.channels = dict(channels)
        self.clock = clock

    # -- entry point ---------------------------------------------------------------------------
    def plan_step(self, channel: str, flow: str, *, full: bool = False) -> tuple[StepResult, list[PlannedWrite]]:
        """`push --dry-run`: what one push step would send now; nothing is sent, the journal is untouched."""
        if flow not in CATALOGUE_PUSH:
            raise ChannelError(f"--dry-run applies to the catalogue flows ({', '.join(CATALOGUE_PUSH)}), not {flow}")
        ctx = _Ctx(self.channels[channel], StepResult(channel, flow), plan_only=True, dry_run=True)
        try:
            self._dispatch(ctx, flow, full, "push")
        except ChannelError as exc:
            ctx.result.status, ctx.result.error = "failed", str(exc)
        ctx.result.details["would_send"] = len(ctx.plan)
        return ctx.result, ctx.plan

    def run_step(self, channel: str, flow: str, *, full: bool = False, direction: str | None = None) -> StepResult:
        """Run one step; `direction` overrides the configured one (``pull --entity customers``)."""
        setup = self.channels[channel]
        ctx = _Ctx(setup, StepResult(channel, flow), plan_only=setup.shadow)
        run_id = self.journal.start_run(channel, flow)
        try:
            self._dispatch(ctx, flow, full, direction)
            if ctx.result.quarantined and ctx.result.status == "ok":
                ctx.result.status = "quarantined"
            self.journal.set_channel_state(channel, "ok")
        except AuthError as exc:
            ctx.result.status, ctx.result.error = "auth_failed", str(exc)
            self.journal.set_channel_state(channel, "auth_failed", str(exc))
            log.error("%s/%s: %s", channel, flow, exc, extra={"target": exc.target or channel})
        except ChannelError as exc:
            ctx.result.status, ctx.result.error = "failed", str(exc)
            log.error("%s/%s failed: %s", channel, flow, exc, extra={"target": exc.target or channel})
        r = ctx.result
        self.journal.finish_run(
            run_id, r.status, read=r.read, sent=r.sent, unchanged=r.unchanged, quarantined=r.quarantined, error=r.error
        )
        return r

    def _dispatch(self, ctx: _Ctx, flow: str, full: bool, direction: str | None) -> None:
        direction = direction or ctx.setup.directions.get(flow) or entities.default_direction(flow)
        if flow == "orders":
            self._orders(ctx)
        elif flow == "order-events":
            self._order_events(ctx)
        elif flow == "stock":
            self._stock(ctx, full)
        elif flow == "prices":
            self._prices(ctx, full)
        elif flow == "customers":
            if direction in ("pull", "both"):
                self._pull_customers(ctx, may_stop=True)
            if direction in ("push", "both"):
                self._push_feed(ctx, "customers", full)
        elif flow in CATALOGUE_PUSH:
            if flow == "products" and ctx.setup.adopt and not ctx.dry_run:
                self._adopt(ctx)  # reads the channel, writes only the local map: a shadow channel adopts too
            self._push_feed(ctx, flow, full)
        else:
            raise ChannelError(f"unknown flow {flow!r}")

    # -- catalogue push ------------------------------------------------------------------------
    def _push_feed(
        self, ctx: _Ctx, entity: str, full: bool, filters: Mapping[str, Any] | None = None,
        transform: Callable[[list[Any]], tuple[list[Any], Callable[[], None] | None]] | None = None,
        cursor_key: str | None = None,
    ) -> None:
        """Push one feed; its page transactions need no fsync each: a page lost to a power cut is sent again."""
        with self.journal.replayable():
            self._push_feed_pages(ctx, entity, full, filters, transform, cursor_key)

    def _push_feed_pages(
        self, ctx: _Ctx, entity: str, full: bool, filters: Mapping[str, Any] | None,
        transform: Callable[[list[Any]], tuple[list[Any], Callable[[], None] | None]] | None,
        cursor_key: str | None,
    ) -> None:
        cursor_key = cursor_key or entity
        if entity in SKU_ENTITIES and not ctx.plan_only:
            self._release_unmapped(ctx, entity)
        cursor = None if full else self.journal.cursor(ctx.name, cursor_key)
        # the feed's last page, read again every cycle, is skipped when its digest says it did not change
        # since it was recorded whole (not with --full, whose whole pass goes by the page digests below,
        # which also know the mapping context: code, config, SKU map)
        tail = None if full or ctx.plan_only else self.journal.tail_digest(ctx.name, cursor_key)
        if tail is not None:  # a connector may then leave that page unparsed (its records empty)
            filters = {**(filters or {}), "known_tail_digest": tail}
        # A pass over the whole feed (first sync, --full) notes the digest of each page it records whole;
        # a later pass skips a page whose bytes it meets again, under the same mapping context (code,
        # channel config, SKU map): same bytes, same records, same payloads, already recorded.
        stable = transform is None and entity in entities.STABLE and entity in ctx.conn.capabilities.stable
        context = self._page_context(ctx, entity) if stable else ""
        known_pages = self.journal.page_digests(ctx.name, entity, context) if stable else {}
        if known_pages:
            filters = {**(filters or {}), "known_pages": known_pages}
        whole_pass = stable and cursor is None and not ctx.plan_only and not ctx.setup.shadow
        seen: set[str] = set()  # the digests a whole pass met
        skipped_to: str | None = None  # the cursor after known pages skipped, not yet saved
        # Without a transform (which reads the journal), up to SEND_AHEAD pages are being sent by sender
        # threads while the next is mapped and diffed here (against the journal and the pages in flight);
        # pages are recorded in page order, by this thread alone, so cursors, fingerprints and quarantine
        # are written as without the overlap. A page naming a key of a page in flight with other data
        # waits for that page, so the channel gets each key's versions in feed order.
        overlap = transform is None and not ctx.plan_only
        sender: ThreadPoolExecutor | None = None
        inflight: collections.deque[tuple[Future[_PageWork], str | None, _PageWork]] = collections.deque()
        send_failed = False  # after a page whose send failed, the cursor stays before it

        def settle() -> bool:
            """Record the oldest page in flight, if any (its send error is raised here)."""
            nonlocal send_failed
            if not inflight:
                return False
            future, page_cursor, _ = inflight.popleft()
            try:
                self._record_page(ctx, entity, future.result(), None if send_failed else cursor_key, page_cursor)
            except ChannelError:
                send_failed = True
                raise
            self._progress(ctx)
            return True

        def settle_all() -> bool:
            settled = False
            while settle():
                settled = True
            return settled

        def save_skipped() -> None:
            """Move the cursor past the known pages skipped since the last page recorded."""
            nonlocal skipped_to
            if skipped_to is not None and not ctx.plan_only:
                with self.journal.transaction():
                    self._advance(ctx.name, cursor_key, skipped_to)
            skipped_to = None

        try:
            # page k+1 is read and parsed by a helper thread while page k is mapped, sent and recorded here
            with contextlib.closing(self._read_ahead(self.backoffice.pull(entity, cursor, filters),
                                                 more=lambda page: page.cursor is not None)) as pages:
                for page in pages:
                    records = page.records
                    ctx.result.read += len(records)
                    page_digest = page.extra.get("digest")
                    if whole_pass and page_digest is not None:
                        seen.add(page_digest)
                    if page.extra.get("known") and page_digest in known_pages:
                        settle_all()  # the pages before, if in flight
                        _count_unparsed(ctx, page)
                        skipped_to = page.cursor
                        if page.cursor is None and not ctx.plan_only:
                            with self.journal.transaction():
                                self._advance(ctx.name, cursor_key, None)
                                if not ctx.setup.shadow:
                                    self.journal.set_tail_digest(ctx.name, cursor_key, page_digest)
                        self._progress(ctx)
                        if self.should_stop():
                            save_skipped()
                            return
                        continue
                    if skipped_to is not None and (not overlap or page.cursor is None):
                        save_skipped()  # else this page's record moves the cursor on past them
                    skipped_to = None
                    digest = page_digest if page.cursor is None else None
                    if digest is not None and digest == tail:
                        if settle_all() and self.should_stop():
                            return
                        if records:
                            ctx.result.unchanged += sum(1 for r in records if not isinstance(r, BadRecord))
                        else:
                            _count_unparsed(ctx, page)
                        with self.journal.transaction():
                            self._advance(ctx.name, cursor_key, None)
                        continue
                    if overlap:
                        work = self._map_page(ctx, entity, records)  # while the pages before are being sent
                        if whole_pass and page_digest is not None:
                            work.page = (page_digest, context, len(records), page.cursor)
                        if page.cursor is None:  # the last page: nothing left to overlap with
                            if settle_all() and self.should_stop():
                                return
                            self._diff_page(ctx, entity, work)
                            self._record_page(ctx, entity, self._send_page(ctx, entity, work), cursor_key, None,
                                              tail_digest=digest)
                        else:
                            while len(inflight) > SEND_AHEAD:  # the oldest is slow: no pile of pages behind it
                                settle()
                            while len(running := [f for f, _, _ in inflight if not f.done()]) >= SEND_AHEAD:
                                wait(running, return_when=FIRST_COMPLETED)
                            if any(f.done() and w.error is not None for f, _, w in inflight):
                                settle_all()  # a send failed: its error ends the step here, nothing more is sent
                            if inflight and self.should_stop():  # stopping only once a page is sent: progress
                                settle_all()
                                return  # the pages before are recorded; this one waits for the next run
                            before = [w for _, _, w in inflight]  # sent or being sent, not yet recorded
                            self._diff_page(ctx, entity, work, before)
                            work.prepared = {}  # the records are not needed any more: memory stays flat
                            if _shares_changed_keys(work, before):
                                settle_all()  # a key's next version goes once its previous one is in
                            sender = sender or ThreadPoolExecutor(SEND_AHEAD, thread_name_prefix="syncagent-send")
                            inflight.append((sender.submit(self._send_page, ctx, entity, work), page.cursor, work))
                            # the pages back from the channel are recorded while it works on this one
                            while len(inflight) > 1 and inflight[0][0].done():
                                settle()
                            continue
                    else:
                        extra = None
                        if transform is not None:
                            records, extra = transform(records)
                        self._push_records(ctx, entity, records, cursor_key, page.cursor, extra, tail_digest=digest)
                    self._progress(ctx)
                    if self.should_stop():
                        return  # the page is recorded; the rest waits for the next run
            settle_all()
            save_skipped()
            if whole_pass:  # the feed read to its end: pages not met any more are forgotten
                with self.journal.transaction():
                    self.journal.keep_page_digests(ctx.name, entity, context, seen)
        finally:
            # the step ends on an error: the pages already sent are still recorded, in order; after a page
            # whose send failed, the cursor stays before it (its records are read and diffed again)
            while inflight:
                with contextlib.suppress(ChannelError):
                    settle()
            if sender is not None:
                sender.shutdown(wait=True)

    def _page_context(self, ctx: _Ctx, entity: str) -> str:
        """What a page's payloads depend on besides its bytes: our code and the channel's config."""
        return hashlib.sha256(f"{_code_digest()}|{ctx.setup.config_digest}|{ctx.setup.sku_mapping}|{entity}"
                              .encode()).hexdigest()

    @staticmethod
    def _read_ahead(source: Iterator[Any], more: Callable[[Any], bool] = lambda item: True) -> Iterator[Any]:
        """The items of `source`, the next one fetched by one helper thread while the caller works on this one.

        Only the helper touches `source` (the journal stays with the caller's thread); it holds at
        most one item ahead. An exception of `source` is raised here, in the caller's thread, after
        the items before it. Closing this generator stops the helper and waits for it, so nothing is
        read on once a step has ended. The first item is read here; when `more(first)` says it is
        the last (a feed's null cursor, e.g. each feed of a quiet cycle), no helper is started.
        """
        first = next(source, _NOTHING)
        if first is _NOTHING or not more(first):
            try:
                if first is not _NOTHING:
                    yield first
                    yield from source
            finally:
                close = getattr(source, "close", None)
                if close is not None:
                    close()
            return
        slot: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=1)
        stop, taken = threading.Event(), threading.Event()

        def hand_over(kind: str, value: Any) -> bool:
            """Put one item in the slot and wait until it is taken: the next is read only then (memory)."""
            taken.clear()
            while not stop.is_set():
                try:
                    slot.put((kind, value), timeout=0.1)
                    break
                except queue.Full:
                    continue
            while not stop.is_set():
                if taken.wait(0.1):
                    return not stop.is_set()
            return False

        def read() -> None:
            try:
                for item in source:
                    if not hand_over("item", item):
                        return
                hand_over("end", None)
            except BaseException as exc:  # noqa: BLE001 - every failure goes to the caller, as it is
                hand_over("error", exc)
            finally:
                close = getattr(source, "close", None)
                if close is not None:
                    close()

        reader = threading.Thread(target=read, name="syncagent-read-ahead", daemon=True)
        reader.start()
        try:
            yield first
            while True:
                kind, value = slot.get()
                taken.set()
                if kind == "item":
                    yield value
                elif kind == "error":
                    raise value
                else:
                    return
        finally:
            stop.set()
            with contextlib.suppress(queue.Empty):
                slot.get_nowait()  # a helper waiting to hand over an item sees the stop at once
            reader.join()

    def _progress(self, ctx: _Ctx) -> None:
        if self.on_page is not None:
            self.on_page(ctx.result)

    def _push_records(
        self, ctx: _Ctx, entity: str, records: Iterable[Any], cursor_key: str | None, cursor: str | None,
        extra: Callable[[], None] | None = None, *, tail_digest: str | None = None,
    ) -> list[tuple[Any, Outgoing]]:
        """Map, diff, send and record one page. Returns the (record, outgoing) pairs that mapped.

        `tail_digest` (the last page of a feed) is kept with the cursor once the whole page is recorded.
        """
        work = self._map_page(ctx, entity, records)
        if not self._diff_page(ctx, entity, work):
            return work.pairs()
        return self._record_page(ctx, entity, self._send_page(ctx, entity, work), cursor_key, cursor, extra,
                                 tail_digest=tail_digest)

    def _map_page(self, ctx: _Ctx, entity: str, records: Iterable[Any]) -> _PageWork:
        """Map and fingerprint one page: no journal, no network."""
        work = _PageWork()
        if entity in SKU_ENTITIES:
            records, work.renames = self._channel_skus(ctx, entity, records)
        for record in records:
            if isinstance(record, BadRecord):
                key = _bad_key(record)
                work.bad.append((key, record.code, record.reason, _src(record.raw), fingerprint(record.raw)))
                continue
            try:
                out = ctx.conn.prepare(entity, record)
            except MappingError as exc:
                raw = _describe(record)
                work.bad.append((record.key, exc.code, exc.reason, _src(raw), fingerprint(raw)))
                continue
            work.prepared[out.key] = (record, out, fingerprint(out.payload))
        return work

    def _diff_page(self, ctx: _Ctx, entity: str, work: _PageWork, inflight: Iterable[_PageWork] = ()) -> bool:
        """What changed since it was last sent (journal lookups). False: a plan-only run, planned and done.

        `inflight`: pages being sent, not yet recorded; what they send counts as sent.
        """
        prepared = work.prepared
        keys = list(prepared)
        known = self.journal.fingerprints(ctx.name, entity, keys)
        for before in inflight:
            known.update((key, before.sending[key]) for key in before.sending.keys() & prepared.keys())
        # with nothing of this entity in quarantine (the usual case) there is nothing to hold back or to
        # release: one indexed LIMIT 1 query instead of a lookup of the page's keys and an UPDATE per record sent
        work.release = self.journal.has_open_quarantine(ctx.name, entity)
        held = self.journal.quarantine_fingerprints(ctx.name, entity, keys + [b[0] for b in work.bad]) \
            if work.release else {}
        work.changed = [(o, fp) for _, o, fp in prepared.values() if known.get(o.key) != fp and held.get(o.key) != fp]
        work.sending = {o.key: fp for o, fp in work.changed}
        work.clean = not work.bad and not held
        work.bad = [b for b in work.bad if held.get(b[0]) != b[4]]
        ctx.result.unchanged += len(prepared) - len(work.changed)
        if ctx.plan_only:  # shadow channel or --dry-run: say what would be sent, send and record nothing
            for out, _fp in work.changed:
                ctx.plan.append(PlannedWrite(entity, out.key, "update" if out.key in known else "create", out.payload))
            ctx.result.quarantined += len(work.bad)
            return False
        return True

    def _send_page(self, ctx: _Ctx, entity: str, work: _PageWork) -> _PageWork:
        """Send what changed, in batches. Network only (no journal, no counters): it may run in a sender thread."""
        batch_size = max(1, min(ctx.setup.batch_size.get(entity, 200), ctx.conn.capabilities.max_batch))
        changed, accepted, rejected = work.changed, work.accepted, work.rejected
        try:
            for start in range(0, len(changed), batch_size):
                batch = changed[start : start + batch_size]
                failpoints.hit("push.before_send")
                results = ctx.conn.push(entity, [o for o, _ in batch])
                failpoints.hit("push.after_send")
                by_key = {r.key: r for r in results}
                for out, fp in batch:
                    res = by_key.get(out.key)
                    if res is None:
                        rejected.append((out.key, "no_result", "the channel answered no result for it", _out(out), fp))
                    elif res.ok:
                        accepted.append((out.key, fp, res.remote_id))
                    else:
                        rejected.append((out.key, res.reason_code or "rejected", res.reason or "rejected",
                                         _out(out), fp))
        except ChannelError as exc:
            work.error = exc
        work.changed = []  # the payloads are gone; `sending` keeps what the pages after it are diffed against
        return work

    def _record_page(
        self, ctx: _Ctx, entity: str, work: _PageWork, cursor_key: str | None, cursor: str | None,
        extra: Callable[[], None] | None = None, *, tail_digest: str | None = None,
    ) -> list[tuple[Any, Outgoing]]:
        """One journal transaction for a sent page: fingerprints, quarantine, then (no error) the cursor."""
        accepted, bad, rejected, error = work.accepted, work.bad, work.rejected, work.error
        with self.journal.transaction():
            self.journal.record_sent(ctx.name, entity, accepted)
            if work.release:
                self.journal.release(ctx.name, entity, [a[0] for a in accepted])
                if work.renames:  # a record waiting for its SKU was quarantined under its back office code
                    self.journal.release(ctx.name, entity, [work.renames[a[0]] for a in accepted if a[0] in work.renames])
            for key, code, reason, payload, fp in bad + rejected:
                self.journal.quarantine(ctx.name, entity, key, code, reason, payload, fp)
                log.warning("%s/%s: quarantined %s: %s: %s", ctx.name, entity, key, code, reason)
            if error is None:
                if extra is not None:
                    extra()
                if cursor_key is not None:
                    self._advance(ctx.name, cursor_key, cursor)
                    if not ctx.setup.shadow:
                        self.journal.set_tail_digest(ctx.name, cursor_key, tail_digest)
                if work.page is not None and work.clean and not rejected and not ctx.setup.shadow:
                    self.journal.add_page_digest(ctx.name, entity, *work.page)
        ctx.result.sent += len(accepted)
        ctx.result.quarantined += len(bad) + len(rejected)
        if error is not None:
            raise error
        return work.pairs()

    def _advance(self, channel: str, cursor_key: str, cursor: str | None) -> None:
        """Move the cursor past a recorded page; None (end of the feed for now) keeps it."""
        if self.channels[channel].shadow:
            return  # a shadow channel applied nothing: it must read the same records again when it goes live
        if cursor is not None:
            self.journal.save_cursor(channel, cursor_key, cursor)
        else:
            self.journal.touch_cursor(channel, cursor_key)

    def prepare_for(self, channel: str, entity: str, records: Iterable[Any]) -> tuple[list[Outgoing], int]:
        """The payloads a page of records becomes on `channel` (DE/PARA SKUs applied); nothing recorded.

        Returns the prepared records and how many could not be prepared (for `reconcile`).
        """
        work = self._map_page(_Ctx(self.channels[channel], StepResult(channel, entity), plan_only=True), entity, records)
        return [out for _, out, _ in work.prepared.values()], len(work.bad)

    # -- SKU DE/PARA ----------------------------------------------------------------------------
    def _channel_skus(self, ctx: _Ctx, entity: str, records: Iterable[Any]) -> tuple[list[Any], dict[str, str]]:
        """Records renamed to the channel's SKU (one journal query per page; none without a map).

        Returns the records and {channel SKU: back office code} of those renamed. With
        `sku_mapping: required`, a record with no SKU becomes a bad record (quarantined until
        its SKU is imported, then sent by `_release_unmapped`).
        """
        records = list(records)
        mapped = self._has_sku_map(ctx)
        required = ctx.setup.sku_mapping == "required"
        if not mapped and not required:
            return records, {}
        codes = [r.code for r in records if not isinstance(r, BadRecord)]
        skus = self.journal.channel_skus(ctx.name, codes) if mapped else {}
        out: list[Any] = []
        renames: dict[str, str] = {}
        for record in records:
            if isinstance(record, BadRecord):
                out.append(record)
                continue
            sku = skus.get(record.code)
            if sku is None:
                out.append(BadRecord(record.code, "unmapped_sku",
                                     f"no channel SKU is mapped for the back office code {record.code!r} "
                                     f"(sku_mapping: required); add it with `syncagent mapping import --channel "
                                     f"{ctx.name} FILE.csv`", record_to_json(entity, record))
                           if required else record)
                continue
            if sku != record.code:
                renames[sku] = record.code
            out.append(renamed(record, sku))
        return out, renames

    def _has_sku_map(self, ctx: _Ctx) -> bool:
        """Whether the channel has a DE/PARA map, asked of the journal once per step."""
        if ctx.sku_mapped is None:
            ctx.sku_mapped = self.journal.sku_map_size(ctx.name) > 0
        return ctx.sku_mapped

    def _release_unmapped(self, ctx: _Ctx, entity: str) -> None:
        """Records quarantined for want of a SKU go out as soon as their SKU is mapped."""
        rows = [r for r in self.journal.quarantined(ctx.name, entity) if r.reason_code == "unmapped_sku"]
        if not rows:
            return
        mapped = self.journal.channel_skus(ctx.name, [r.key for r in rows])
        records = []
        for row in rows:
            payload = row.payload if isinstance(row.payload, dict) else {}
            record = record_from_json(payload.get("source")) if row.key in mapped else None
            if record is not None:
                records.append(record)
        if records:
            log.info("%s/%s: %d record(s) whose SKU is now mapped leave the quarantine", ctx.name, entity,
                     len(records))
            ctx.result.read += len(records)
            self._push_records(ctx, entity, records, None, None)

    def _adopt(self, ctx: _Ctx) -> None:
        """Once, before the first products push: bind the channel's existing listings by SKU or EAN.

        A channel taken over from another integrator already lists the products; creating them
        again under the back office codes would list each twice. A listing whose SKU is a back
        office code is bound to it; one whose EAN is a product's barcode maps that code to its SKU.
        """
        if self.journal.cursor(ctx.name, ADOPT_CURSOR) is not None:
            return
        listing = getattr(ctx.conn, "listing", None)
        if listing is None:
            raise ChannelError(f"{ctx.name}: adopt: a {ctx.conn.type_name} channel cannot list its products; "
                               "import a DE/PARA CSV with `syncagent mapping import` instead", code="bad_config")
        skus: set[str] = set()
        by_barcode: dict[str, str] = {}
        for page in listing("products"):
            for item in page:
                skus.add(item.key)
                if item.barcode:
                    by_barcode.setdefault(item.barcode, item.key)
        known = {code for code, *_ in self.journal.sku_map(ctx.name)}
        by_sku: list[str] = []  # a listing under the back office code itself wins over an EAN match
        by_ean: dict[str, str] = {}  # channel SKU → back office code
        for page in self.backoffice.pull("products", None):
            for record in page.records:
                if not isinstance(record, Product) or record.code in known:
                    continue
                if record.code in skus:
                    by_sku.append(record.code)
                elif record.barcode and (sku := by_barcode.get(record.barcode)) is not None:
                    by_ean.setdefault(sku, record.code)
        identity = set(by_sku)
        pairs = [(code, code) for code in by_sku]
        pairs += [(code, sku) for sku, code in by_ean.items() if sku not in identity]
        with self.journal.transaction():
            self.journal.set_sku_map(ctx.name, pairs, "adopt")
            self.journal.save_cursor(ctx.name, ADOPT_CURSOR, "done")
        ctx.sku_mapped = None
        log.info("%s: adopted %d existing listing(s): %d by SKU, %d by EAN; %d listing(s) matched no product",
                 ctx.name, len(pairs), len(by_sku), len(pairs) - len(by_sku), len(skus) - len(pairs))
        ctx.result.details["adopted"] = len(pairs)

    # -- prices: the price in force changes at promotion / schedule boundaries ----------------
    def _prices(self, ctx: _Ctx, full: bool) -> None:
        now = self.clock()
        due = self.journal.due_prices(ctx.name, time_str(now) or "")
        if due:
            records = [price_from_json(text) for _, text in due]
            ctx.result.read += len(records)
            mapped = self._push_records(ctx, "prices", records, None, None)
            if not ctx.plan_only:
                self._record_boundaries(ctx, [r for r, _ in mapped], now)

        def transform(records: list[Any]) -> tuple[list[Any], Callable[[], None]]:
            prices = [r for r in records if isinstance(r, Price)]
            return records, lambda: self._set_boundaries(ctx, prices, now)

        self._push_feed(ctx, "prices", full, transform=transform)

    def _record_boundaries(self, ctx: _Ctx, prices: list[Price], now: datetime) -> None:
        with self.journal.transaction():
            self._set_boundaries(ctx, prices, now)

    def _set_boundaries(self, ctx: _Ctx, prices: list[Price], now: datetime) -> None:
        rows = []
        for price in prices:
            nxt = price.next_boundary(now)
            rows.append((price.code, time_str(nxt), price_to_json(price)))
        self.journal.set_price_boundaries(ctx.name, rows)

    # -- stock: the sum of the channel's warehouses -------------------------------------------
    def _stock(self, ctx: _Ctx, full: bool) -> None:
        """Stock per code: the sum of the channel's warehouses − reserved − safety stock, never < 0.

        A channel that holds stock per warehouse of its own declares `stock_locations()`
        ({its warehouse: back office warehouses}); it gets one level per (code, its warehouse).
        """
        locations: dict[str, tuple[str, ...]] = dict(getattr(ctx.conn, "stock_locations", dict)())
        groups = {loc: tuple(whs) for loc, whs in locations.items()} if len(locations) > 1 else {None: ()}
        warehouses = tuple(dict.fromkeys([*ctx.setup.warehouses, *(w for whs in groups.values() for w in whs)]))
        safety = ctx.setup.safety_stock

        def transform(records: list[Any]) -> tuple[list[Any], Callable[[], None]]:
            rows = [r for r in records if isinstance(r, StockBalance) and r.warehouse in warehouses]
            others = [r for r in records if isinstance(r, BadRecord)]
            codes = list(dict.fromkeys(r.code for r in rows))
            merged = self.journal.balances(ctx.name, codes)
            for r in rows:
                merged[(r.code, r.warehouse)] = (r.available, r.reserved)
            # one pass over the balances: per (code, location) total, instead of a scan of them all per code
            feeding = [(location, frozenset(sources or ctx.setup.warehouses)) for location, sources in groups.items()]
            totals: dict[tuple[str, str | None], int] = {}
            for (c, w), (a, res) in merged.items():
                for location, whs in feeding:
                    if w in whs:
                        totals[(c, location)] = totals.get((c, location), 0) + a - res
            levels: list[Any] = [StockLevel(code, max(0, totals.get((code, location), 0) - safety), location)
                                 for code in codes for location in groups]
            updates = [(r.code, r.warehouse, r.available, r.reserved) for r in rows]
            return levels + others, lambda: self.journal.set_balances(ctx.name, updates)

        self._push_feed(ctx, "stock", full, filters={"warehouses": list(warehouses)}, transform=transform)

    # -- customers registered on the channel ---------------------------------------------------
    def _pull_customers(self, ctx: _Ctx, *, may_stop: bool = False) -> None:
        """Bind the channel's customers; as a step of its own (`may_stop`) it yields after a recorded page."""
        if ctx.plan_only:
            return  # binding may create back office customers: a shadow channel writes nothing
        cursor = self.journal.cursor(ctx.name, "customers-pull")
        for page in ctx.conn.pull("channel-customers", cursor):
            for record in page.records:
                ctx.result.read += 1
                if isinstance(record, BadRecord):
                    self._quarantine(ctx, "channel-customers", _bad_key(record), record.code, record.reason,
                                     _src(record.raw))
                    continue
                self._bind_customer(ctx, record)
            with self.journal.transaction():
                self._advance(ctx.name, "customers-pull", page.cursor)
            if may_stop and self.should_stop():
                return

    def _bind_customer(self, ctx: _Ctx, cc: ChannelCustomer) -> str | None:
        """Bind a channel customer to a back office code: found by CPF/CNPJ, else created once."""
        code = self.journal.binding(ctx.name, "customers", cc.remote_id)
        if code is None:
            code = cc.linked_code
            if code is None:
                found = self.backoffice.lookup("customers", document=cc.document)
                if found is not None:
                    code = found.code
                else:
                    customer = Customer(document=cc.document, name=cc.name, email=cc.email, phone=cc.phone,
                                        address=cc.address)
                    try:
                        out = self.backoffice.prepare("customers", customer)
                    except MappingError as exc:
                        self._quarantine(ctx, "channel-customers", cc.remote_id, exc.code, exc.reason,
                                         _src(_describe(cc)))
                        return None
                    failpoints.hit("customer.before_create")
                    (res,) = self.backoffice.push("customers", [out])
                    failpoints.hit("customer.after_create")
                    if not res.ok or res.remote_id is None:
                        self._quarantine(ctx, "channel-customers", cc.remote_id, res.reason_code or "rejected",
                                         res.reason or "rejected by the back office", _src(_describe(cc)))
                        return None
                    code = res.remote_id
                    ctx.result.sent += 1
            with self.journal.transaction():
                self.journal.bind(ctx.name, "customers", cc.remote_id, code)
                self.journal.release(ctx.name, "channel-customers", [cc.remote_id])
        if cc.linked_code != code and not ctx.setup.shadow:
            link = ctx.conn.prepare("customer-links", {"remote_id": cc.remote_id, "code": code})
            (res,) = ctx.conn.push("customer-links", [link])
            if not res.ok:
                self._quarantine(ctx, "channel-customers", cc.remote_id, res.reason_code or "rejected",
                                 res.reason or "link refused", _src(_describe(cc)))
        return code

    # -- order intake ----------------------------------------------------------------------------
    def _orders(self, ctx: _Ctx) -> None:
        ctx.customers_pulled = False
        self._recover_orders(ctx)
        if not ctx.plan_only:
            self._release_waiting_orders(ctx)
        cursor = self.journal.cursor(ctx.name, "orders")
        for page in ctx.conn.pull("orders", cursor):
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
            self._recover_orders(ctx)
        waiting = self.journal.orders_in_state(ctx.name, ("creating", "created", "pending"))
        if waiting:
            raise TransientError(f"{len(waiting)} order(s) wait in the journal for the next cycle "
                                 f"(a transient failure or an answer lost); last cause: {ctx.last_error or 'none'}")

    def _wait_to_settle(self, ctx: _Ctx) -> None:
        """Wait (a few seconds at most) until the orders whose answer was lost may be looked up."""
        if not 0 < ctx.setup.settle_seconds <= MAX_SETTLE_WAIT:
            return
        creating = self.journal.orders_in_state(ctx.name, ("creating",))
        if creating:
            newest = max(_stamp(row.updated_at) for row in creating)
            remaining = newest + ctx.setup.settle_seconds - self.wall()
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
        if row is None or row.state in ("seen", "pending", "quarantined"):
            with self.journal.transaction():
                self.journal.set_order(ctx.name, order.remote_id, "pending", version=order.version,
                                       payload={"source": _describe(order)})

    def _quarantine_bad_order(self, ctx: _Ctx, record: BadRecord) -> None:
        key = _bad_key(record)
        row = self.journal.order(ctx.name, key)
        if row is None or row.state in ("seen", "pending", "quarantined"):
            with self.journal.transaction():
                self.journal.set_order(ctx.name, key, "quarantined", reason_code=record.code, reason=record.reason)
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
        if order.status in caps.cancelled_statuses:
            self._cancel_order(ctx, order)
        elif order.status in importable:
            self._import_order(ctx, order)
        else:
            row = self.journal.order(ctx.name, order.remote_id)
            if row is not None and row.state == "pending":  # it left the importable statuses meanwhile
                with self.journal.transaction():
                    self.journal.set_order(ctx.name, order.remote_id, "seen", version=order.version)

    def _customer_of(self, ctx: _Ctx, order: Order) -> str | None:
        """The back office code of the order's customer; pulls the channel's customers once if needed."""
        if order.customer_code is not None:
            return order.customer_code
        if not order.channel_customer_id:
            return None
        code = self.journal.binding(ctx.name, "customers", order.channel_customer_id)
        if code is None and not ctx.customers_pulled:
            self._pull_customers(ctx)  # a failure here parks the order: no quarantine for a passing fault
            ctx.customers_pulled = True
            code = self.journal.binding(ctx.name, "customers", order.channel_customer_id)
        return code

    def _recover_orders(self, ctx: _Ctx) -> None:
        """Finish what a crash or a failure left half done.

        An order left in `creating` is looked up only once its last POST is older than the
        settle time: a POST whose answer was lost may still be running in the back office, and a
        lookup that races it would post the order a second time.
        """
        settled_before = self.wall() - ctx.setup.settle_seconds
        for row in self.journal.orders_in_state(ctx.name, ("creating", "created", "pending")):
            if row.state == "creating":
                if _stamp(row.updated_at) > settled_before:
                    ctx.unsettled += 1  # too fresh to look up: the end of the step waits for it
                    continue
                work = lambda row=row: self._create_in_backoffice(ctx, row.order_id, row.payload or {},  # noqa: E731
                                                                  retry=True)
            elif row.state == "created":
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
            if row.state in ("acknowledged", "cancelled"):
                return
            if row.state == "created":
                self._acknowledge(ctx, order.remote_id, row.bo_number or "")
                return
            if row.state == "creating":
                return  # settled by _recover_orders once its last POST is old enough
            if row.state == "quarantined" and row.version == order.version and row.version:
                return  # unchanged since it was quarantined: wait for a change or a manual retry
            if row.state == "pending" and _newer(row.version, order.version):
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
                                   f"customer {order.channel_customer_id or '(none)'} is not known in the back office")
            return
        source = order  # as the channel gave it (channel SKUs), kept if the back office refuses it
        order = self._backoffice_skus(ctx, order)
        bo_order = BackOfficeOrder(ctx.name, order, customer_code, ctx.setup.order_warehouse)
        try:
            out = self.backoffice.prepare("orders", bo_order)
        except MappingError as exc:
            self._quarantine_order(ctx, order, exc.code, exc.reason)
            return
        if ctx.setup.shadow:
            return
        with self.journal.transaction():
            self.journal.set_order(ctx.name, order.remote_id, "creating", version=order.version, payload=out.payload)
        self._create_in_backoffice(ctx, order.remote_id, out.payload, source=source)

    def _backoffice_skus(self, ctx: _Ctx, order: Order) -> Order:
        """Order items name the channel's SKUs; the back office wants its own codes (DE/PARA)."""
        if not self._has_sku_map(ctx):
            return order
        codes = self.journal.backoffice_codes(ctx.name, [item.code for item in order.items])
        if not codes:
            return order
        return replace(order, items=tuple(replace(i, code=codes.get(i.code, i.code)) for i in order.items))

    def _create_in_backoffice(self, ctx: _Ctx, order_id: str, payload: dict[str, Any], *, retry: bool = False,
                              source: Any = None) -> None:
        """Create once: look the order up first (POST /orders is not idempotent), then POST.

        A lost answer (AmbiguousError) leaves the order in `creating`; it is settled later by the
        same lookup, never by posting again at once.
        """
        found = self.backoffice.lookup("orders", external_id=order_id, channel=ctx.name)
        if found is not None:
            number = str(found["number"])
        else:
            if retry:  # note the new attempt's time first: the settle time counts from it
                with self.journal.transaction():
                    self.journal.set_order(ctx.name, order_id, "creating")
            failpoints.hit("order.before_create")
            try:
                (res,) = self.backoffice.push("orders", [Outgoing(order_id, payload)])
            except AmbiguousError:
                log.warning("%s: order %s: the back office answer was lost; it will be looked up", ctx.name, order_id)
                raise
            failpoints.hit("order.after_create")
            if not res.ok or res.remote_id is None:
                with self.journal.transaction():
                    self.journal.set_order(ctx.name, order_id, "quarantined", reason_code=res.reason_code,
                                           reason=res.reason)
                    # the source order is kept too: once a missing reference appears it is mapped again
                    kept = {"outgoing": payload, **({"source": _describe(source)} if source is not None else {})}
                    self.journal.quarantine(ctx.name, "orders", order_id, res.reason_code or "rejected",
                                            res.reason or "rejected by the back office", kept)
                ctx.result.quarantined += 1
                return
            number = res.remote_id
            ctx.result.sent += 1
        with self.journal.transaction():
            self.journal.set_order(ctx.name, order_id, "created", bo_number=number)
            self.journal.release(ctx.name, "orders", [order_id])
        self._acknowledge(ctx, order_id, number)

    def _acknowledge(self, ctx: _Ctx, order_id: str, number: str) -> None:
        out = ctx.conn.prepare("order-acks", {"order_id": order_id, "backoffice_number": number})
        failpoints.hit("ack.before_send")
        (res,) = ctx.conn.push("order-acks", [out])
        failpoints.hit("ack.after_send")
        with self.journal.transaction():
            if res.ok:
                self.journal.set_order(ctx.name, order_id, "acknowledged")
                self.journal.release(ctx.name, "order-acks", [order_id])
            else:
                self.journal.quarantine(ctx.name, "order-acks", order_id, res.reason_code or "rejected",
                                        res.reason or "acknowledge refused", _out(out))
                ctx.result.quarantined += 1

    def _cancel_order(self, ctx: _Ctx, order: Order) -> None:
        """An order cancelled on the channel is cancelled in the back office (if it got there)."""
        row = self.journal.order(ctx.name, order.remote_id)
        if row is not None and row.state == "cancelled":
            return
        number = row.bo_number if row is not None else None
        if row is not None and row.state == "creating":
            found = self.backoffice.lookup("orders", external_id=order.remote_id, channel=ctx.name)
            number = str(found["number"]) if found is not None else None
        if number and not ctx.setup.shadow:
            out = self.backoffice.prepare("order-cancels", {"number": number, "reason": "cancelled on the channel"})
            (res,) = self.backoffice.push("order-cancels", [out])
            if not res.ok:
                self._quarantine(ctx, "order-cancels", order.remote_id, res.reason_code or "rejected",
                                 res.reason or "cancel refused", _out(out))
                return
            ctx.result.sent += 1
        if ctx.setup.shadow:
            return
        with self.journal.transaction():
            self.journal.set_order(ctx.name, order.remote_id, "cancelled", version=order.version, bo_number=number)
            self.journal.release(ctx.name, "orders", [order.remote_id])

    def _quarantine_order(self, ctx: _Ctx, order: Order, code: str, reason: str) -> None:
        with self.journal.transaction():
            self.journal.set_order(ctx.name, order.remote_id, "quarantined", version=order.version,
                                   reason_code=code, reason=reason)
            self.journal.quarantine(ctx.name, "orders", order.remote_id, code, reason, _src(_describe(order)))
        ctx.result.quarantined += 1
        log.warning("%s/orders: quarantined %s: %s: %s", ctx.name, order.remote_id, code, reason)

    def _quarantine(self, ctx: _Ctx, entity: str, key: str, code: str, reason: str, payload: Any) -> None:
        with self.journal.transaction():
            self.journal.quarantine(ctx.name, entity, key, code, reason, payload)
        ctx.result.quarantined += 1
        log.warning("%s/%s: quarantined %s: %s: %s", ctx.name, entity, key, code, reason)

    # -- quarantine retry -------------------------------------------------------------------------
    def retry(self, channel: str, entity: str, key: str, ctx: _Ctx | None = None) -> tuple[bool, str]:
        """Re-apply one quarantined record now. Returns (applied, what happened)."""
        row = next(iter(self.journal.quarantined(channel, entity, key=key)), None)
        if row is None:
            return False, "not in quarantine"
        ctx = ctx or _Ctx(self.channels[channel], StepResult(channel, f"retry:{entity}"))
        payload = row.payload if isinstance(row.payload, dict) else {}
        from_source = entity == "orders" and isinstance(payload.get("source"), dict)
        if entity in SKU_ENTITIES and (record := record_from_json(payload.get("source"))) is not None:
            self._push_records(ctx, entity, [record], None, None)
        elif "outgoing" in payload and not from_source:
            out = Outgoing(key, payload["outgoing"], payload.get("meta") or {})
            self._resend(ctx, entity, out, row.source_fingerprint)
        elif "source" in payload and isinstance(payload["source"], dict) and entity in ("orders", "channel-customers"):
            source = payload["source"]
            try:
                if entity == "orders":
                    order = order_from_dict(source)
                    with self.journal.transaction():
                        self.journal.set_order(channel, key, "seen")
                    self._import_order(ctx, order)
                else:
                    self._bind_customer(ctx, channel_customer_from_dict(source))
            except (KeyError, TypeError, ValueError, ArithmeticError):
                return False, "the quarantined copy cannot be rebuilt; fix the record at its source or drop it"
        else:
            return False, ("the record is malformed at its source: fix it there (it is retried automatically"
                           " once it changes) or drop it")
        still = next(iter(self.journal.quarantined(channel, entity, key=key)), None)
        if still is None:
            return True, "applied"
        return False, f"still refused: {still.reason_code}: {still.reason}"

    # -- self-releasing quarantine: an order waiting for a reference goes once it exists -------------
    def _release_waiting_orders(self, ctx: _Ctx) -> None:
        """Retry quarantined orders whose missing product, payment method or customer now exists.

        The back office names what it did not know ("unknown product 'X'"); each such reference
        is checked (a product by GET, a payment method in its small table, a SKU in the DE/PARA
        map, a customer by its binding). One that cannot be checked is retried every
        RELEASE_EVERY seconds. A lookup failure leaves the order where it is.
        """
        rows = [r for r in self.journal.quarantined(ctx.name, "orders") if _waits_for_reference(r)]
        cache: dict[tuple[str, str], bool | None] = {}
        now = self.wall()
        for row in rows[:RELEASE_BATCH]:
            ready = self._references_ready(ctx, row, cache)
            if ready is False or (ready is None and now - _stamp(row.last_seen) < RELEASE_EVERY):
                continue
            log.info("%s/orders: %s: retrying, %s", ctx.name, row.key,
                     "its missing reference now exists" if ready else "its reference cannot be checked")
            before = ctx.result.quarantined
            self._guarded(ctx, None, lambda row=row: self.retry(ctx.name, "orders", row.key, ctx))
            if ctx.result.quarantined == before and not self.journal.quarantined(ctx.name, "orders", row_id=row.id):
                ctx.result.details["released"] = ctx.result.details.get("released", 0) + 1

    def _references_ready(self, ctx: _Ctx, row: QuarantineRow, cache: dict[tuple[str, str], bool | None]) -> bool | None:
        """True when every reference the order lacked exists now, False if one still does not, None if unknown."""
        payload = row.payload if isinstance(row.payload, dict) else {}
        source = payload.get("source") if isinstance(payload.get("source"), dict) else {}
        if row.reason_code == "missing_reference":  # the engine's own: the order's customer is not known
            customer = source.get("channel_customer_id") if isinstance(source, dict) else None
            if isinstance(customer, str) and self.journal.binding(ctx.name, "customers", customer):
                return True
            return None
        answer: bool | None = True
        for kind, key in _back_office_references(row):
            if (kind, key) not in cache:
                cache[(kind, key)] = self._reference_exists(ctx, kind, key)
            found = cache[(kind, key)]
            if found is False:
                return False
            if found is None:
                answer = None
        return answer

    def _reference_exists(self, ctx: _Ctx, kind: str, key: str) -> bool | None:
        try:
            if kind == "product":
                if self.journal.backoffice_codes(ctx.name, [key]):
                    return True  # a channel SKU now mapped to a back office code
                return self.backoffice.lookup("products", code=key) is not None
            if kind == "payment method":
                return self.backoffice.lookup("payment-methods", code=key) is not None
        except ChannelError as exc:
            log.info("%s/orders: cannot check %s %r now: %s", ctx.name, kind, key, exc)
            return False
        return None

    # -- replay: one object again, now, without duplicates ---------------------------------------------
    def replay_order(self, channel: str, order_id: str) -> str:
        """Re-apply one channel order: found in the back office → recorded and acknowledged; else created once.

        The order comes from what the journal kept of it (its quarantined or parked copy, or the
        payload of its last creation attempt), else from the channel's feed read from the start.
        """
        ctx = _Ctx(self.channels[channel], StepResult(channel, "replay:orders"))
        if ctx.setup.shadow:
            raise ChannelError(f"{channel} is a shadow channel: it sends nothing, so there is nothing to replay")
        row = self.journal.order(channel, order_id)
        if row is not None and row.state == "creating" \
                and self.wall() - _stamp(row.updated_at) < ctx.setup.settle_seconds:
            raise TransientError(f"order {order_id}: a creation attempt may still be running in the back office; "
                                 f"try again in {ctx.setup.settle_seconds:.0f} s")
        found = self.backoffice.lookup("orders", external_id=order_id, channel=channel)
        if found is not None:
            number = str(found["number"])
            with self.journal.transaction():
                self.journal.set_order(channel, order_id, "created", bo_number=number)
                self.journal.release(channel, "orders", [order_id])
            self._acknowledge(ctx, order_id, number)
            return f"already in the back office as {number}; the channel was told (acknowledged)"
        kept = next(iter(self.journal.quarantined(channel, "orders", key=order_id)), None)
        kept_source = kept.payload.get("source") if kept is not None and isinstance(kept.payload, dict) else None
        parked = (row.payload or {}).get("source") if row is not None else None
        source = kept_source if isinstance(kept_source, dict) else parked if isinstance(parked, dict) else None
        if source is not None:
            with self.journal.transaction():
                self.journal.set_order(channel, order_id, "seen")
            self._import_order(ctx, order_from_dict(source))
        elif row is not None and row.payload and "source" not in row.payload:
            with self.journal.transaction():
                self.journal.set_order(channel, order_id, "creating")
            self._create_in_backoffice(ctx, order_id, row.payload)
        else:
            order = self._find_in_feed(ctx, order_id)
            if order is None:
                raise ChannelError(f"order {order_id} is neither in the journal nor in {channel}'s order feed")
            with self.journal.transaction():
                self.journal.set_order(channel, order_id, "seen", version=order.version)
            self._process_order(ctx, order)
        after = self.journal.order(channel, order_id)
        state = after.state if after is not None else "not imported"
        number = f" as {after.bo_number}" if after is not None and after.bo_number else ""
        why = f" ({after.reason_code}: {after.reason})" if after is not None and after.reason else ""
        return f"{state}{number}{why}"

    def _find_in_feed(self, ctx: _Ctx, order_id: str) -> Order | None:
        for page in ctx.conn.pull("orders", None):
            for record in page.records:
                if isinstance(record, Order) and record.remote_id == order_id:
                    return record
        return None

    def replay_product(self, channel: str, product: Product) -> str:
        """Send one product to one channel now, whatever the journal says was sent (under its DE/PARA SKU)."""
        ctx = _Ctx(self.channels[channel], StepResult(channel, "replay:products"))
        work = self._map_page(ctx, "products", [product])
        if ctx.setup.shadow:
            return "shadow channel: nothing sent"
        work.changed = [(out, fp) for _, out, fp in work.prepared.values()]  # sent even if unchanged
        self._record_page(ctx, "products", self._send_page(ctx, "products", work), None, None)
        if work.bad or work.rejected:
            _, code, reason, _, _ = (work.bad + work.rejected)[0]
            return f"{'quarantined' if work.bad else 'refused'}: {code}: {reason}"
        (_, out, _), = work.prepared.values()
        return "sent" + (f" as {out.key}" if out.key != product.code else "")

    def _resend(self, ctx: _Ctx, entity: str, out: Outgoing, source_fp: str | None) -> None:
        if entity == "orders":
            with self.journal.transaction():
                self.journal.set_order(ctx.name, out.key, "creating", payload=out.payload)
            self._create_in_backoffice(ctx, out.key, out.payload)
        elif entity == "order-acks":
            self._acknowledge(ctx, out.key, str(out.payload.get("backoffice_number", "")))
        elif entity == "order-events":
            type_ = str(out.payload.get("type"))
            self._send_event(ctx, out.key, str(out.meta.get("order_id", "")), type_, EVENT_ORDER.get(type_, 0), out)
        elif entity == "order-cancels":
            (res,) = self.backoffice.push(entity, [out])
            self._settle(ctx, entity, out, res, source_fp, record=False)
        else:
            (res,) = ctx.conn.push(entity, [out])
            self._settle(ctx, entity, out, res, source_fp, record=True)

    def _settle(self, ctx: _Ctx, entity: str, out: Outgoing, res: PushResult, source_fp: str | None,
                *, record: bool) -> None:
        with self.journal.transaction():
            if res.ok:
                if record:
                    self.journal.record_sent(ctx.name, entity, [(out.key, fingerprint(out.payload), res.remote_id)])
                self.journal.release(ctx.name, entity, [out.key])
            else:
                self.journal.quarantine(ctx.name, entity, out.key, res.reason_code or "rejected",
                                        res.reason or "rejected", _out(out), source_fp)

    # -- order events: fulfilment news back to the channel, in order, once ----------------------
    def _order_events(self, ctx: _Ctx) -> None:
        self._retry_pending_events(ctx)
        cursor = self.journal.cursor(ctx.name, "order-events")
        for page in self.backoffice.pull("order-events", cursor):
            mine: list[OrderEvent] = []
            for record in page.records:
                if isinstance(record, BadRecord):
                    self._quarantine(ctx, "order-events", _bad_key(record), record.code, record.reason,
                                     _src(record.raw))
                elif record.channel == ctx.name:
                    mine.append(record)
            ctx.result.read += len(mine)
            states = self.journal.event_states(ctx.name, [e.id for e in mine])
            mine.sort(key=lambda e: (e.remote_order_id, e.rank, e.occurred_at))
            for event in mine:
                if states.get(event.id) in ("delivered", "skipped", "quarantined", "pending"):
                    ctx.result.unchanged += 1
                    continue
                self._deliver_event(ctx, event)
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

    def _deliver_event(self, ctx: _Ctx, event: OrderEvent) -> None:
        order = self.journal.order(ctx.name, event.remote_order_id)
        if event.type == "cancelled" and order is not None and order.state == "cancelled":
            with self.journal.transaction():  # the channel cancelled it itself: nothing to tell
                self.journal.set_event(ctx.name, event.id, event.remote_order_id, event.type, event.rank, "skipped")
            return
        try:
            out = ctx.conn.prepare("order-events", event)
        except MappingError as exc:
            with self.journal.transaction():
                self.journal.set_event(ctx.name, event.id, event.remote_order_id, event.type, event.rank,
                                       "quarantined", reason=exc.reason)
                self.journal.quarantine(ctx.name, "order-events", event.id, exc.code, exc.reason,
                                        _src(_describe(event)))
            ctx.result.quarantined += 1
            return
        self._send_event(ctx, event.id, event.remote_order_id, event.type, event.rank, out)

    def _send_event(self, ctx: _Ctx, event_id: str, order_id: str, type_: str, rank: int, out: Outgoing) -> None:
        if ctx.setup.shadow:
            return
        failpoints.hit("event.before_send")
        (res,) = ctx.conn.push("order-events", [out])
        failpoints.hit("event.after_send")
        stored = {"payload": out.payload, "meta": out.meta}
        with self.journal.transaction():
            if res.ok:
                self.journal.set_event(ctx.name, event_id, order_id, type_, rank, "delivered")
                self.journal.release(ctx.name, "order-events", [event_id])
                ctx.result.sent += 1
            elif res.reason_code == "out_of_order":
                # an earlier event has not reached the channel yet: hold this one and retry it first next time
                self.journal.set_event(ctx.name, event_id, order_id, type_, rank, "pending", stored, res.reason)
            else:
                self.journal.set_event(ctx.name, event_id, order_id, type_, rank, "quarantined", stored, res.reason)
                self.journal.quarantine(ctx.name, "order-events", event_id, res.reason_code or "rejected",
                                        res.reason or "rejected", _out(out))
                ctx.result.quarantined += 1


_NOTHING = object()  # the end of an iterator, told apart from any item


@dataclass
class _PageWork:
    """One page on its way through the push: mapped, diffed, sent, then recorded."""

    prepared: dict[str, tuple[Any, Outgoing, str]] = field(default_factory=dict)  # key: (record, outgoing, fp)
    bad: list[tuple[str, str, str, Any, str]] = field(default_factory=list)  # (key, code, reason, payload, fp)
    changed: list[tuple[Outgoing, str]] = field(default_factory=list)
    sending: dict[str, str] = field(default_factory=dict)  # key → fingerprint of what `changed` sends
    accepted: list[tuple[str, str, str | None]] = field(default_factory=list)
    rejected: list[tuple[str, str, str, Any, str]] = field(default_factory=list)
    error: ChannelError | None = None
    release: bool = True  # whether the keys accepted may have open quarantine rows to close
    renames: dict[str, str] = field(default_factory=dict)  # channel SKU → back office code (DE/PARA)
    clean: bool = False  # no bad record and nothing held in quarantine: the page may be recorded whole
    # (digest, mapping context, items, next cursor) to note once the page is recorded whole
    page: tuple[str, str, int, str | None] | None = None

    def pairs(self) -> list[tuple[Any, Outgoing]]:
        return [(record, out) for record, out, _ in self.prepared.values()]


@functools.cache
def _code_digest() -> str:
    """A digest of the agent's own code: after an upgrade every page is mapped again once."""
    digest = hashlib.sha256()
    root = Path(__file__).parent
    for path in sorted(root.rglob("*.py")):
        if "simulators" not in path.parts:
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _count_unparsed(ctx: _Ctx, page: Page) -> None:
    """A page the connector left unparsed (the engine knew it): its items count as read and unchanged."""
    items = int(page.extra.get("items") or 0)
    ctx.result.read += items
    ctx.result.unchanged += items


def _shares_changed_keys(work: _PageWork, inflight: Iterable[_PageWork]) -> bool:
    """Whether a page sends a key that a page in flight sends too (a feed may repeat a record)."""
    return bool(work.sending) and any(not work.sending.keys().isdisjoint(before.sending) for before in inflight)


def _back_office_references(row: QuarantineRow) -> list[tuple[str, str]]:
    """The things the back office said it did not know ("unknown product 'X'"), of the kinds that may appear."""
    return [(kind, key) for kind, key in missing_references(row.reason_code, row.reason) if kind in WAITING_KINDS]


def _waits_for_reference(row: QuarantineRow) -> bool:
    """A quarantined order refused for something that may exist later (not for a bad record)."""
    return row.reason_code == "missing_reference" or bool(_back_office_references(row))


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


__all__ = ["ChannelSetup", "Engine", "PushResult", "StepResult"]
