"""The push pipeline: read a source feed → map each record → diff against the journal → send → record.

One journal transaction per page records what the sink accepted (fingerprints), what it refused
or could not be mapped (quarantine), and the cursor after the page. The cursor only moves past
records recorded as sent or quarantined. Concurrency is behind `executor` (a feed read ahead,
pages sent ahead); page skipping is `pages.PageSkipper`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from syncagent import entities, failpoints
from syncagent.connectors.base import Outgoing
from syncagent.engine.core import (
    CursorTrail,
    EngineCore,
    PlannedWrite,
    StepResult,
    _bad_key,
    _Ctx,
    _describe,
    _out,
    _src,
    log,
)
from syncagent.engine.executor import SendAhead, read_ahead
from syncagent.engine.pages import PageSkipper, _count_unparsed
from syncagent.engine.shared import network_wait
from syncagent.errors import ChannelError, MappingError
from syncagent.mapping import SKU_ENTITIES
from syncagent.model import BadRecord, fingerprint

SEND_AHEAD = 2  # pages of a push sent at once: the channel works on one while the agent hands over the other
# with steps of other channels side by side, the agent has their pages to work on while one channel works:
# one page in flight each is enough to keep it busy, and memory stays within its bound however many channels
SEND_AHEAD_SIDE_BY_SIDE = 1


class PushPipeline(EngineCore):
    """One feed pushed to one channel, page by page."""

    def _push_feed(
        self, ctx: _Ctx, entity: str, full: bool, filters: Mapping[str, Any] | None = None,
        transform: Callable[[list[Any]], tuple[list[Any], Callable[[], None] | None]] | None = None,
        cursor_key: str | None = None,
    ) -> None:
        """Push one feed; its page transactions need no fsync each: a page lost to a power cut is sent again."""
        with self.journal.replayable():
            self._push_feed_pages(ctx, entity, full, filters, transform, cursor_key)

    def _push_from_channel(self, ctx: _Ctx, entity: str, full: bool) -> None:
        """A flow the config turned around (source: channel, sink: backoffice): the same pipeline, ends swapped.

        The channel's records (under its SKUs, renamed back through the DE/PARA map) are mapped by
        the back office's connector, diffed against what was last written there, and written.
        """
        ctx.flow_source, ctx.flow_sink = ctx.conn, self.backoffice
        self._push_feed(ctx, entity, full, cursor_key=f"{entity}-from-channel")

    def _push_feed_pages(
        self, ctx: _Ctx, entity: str, full: bool, filters: Mapping[str, Any] | None,
        transform: Callable[[list[Any]], tuple[list[Any], Callable[[], None] | None]] | None,
        cursor_key: str | None,
    ) -> None:
        cursor_key = cursor_key or entity
        ctx.fed_to_end = False
        if entity in SKU_ENTITIES and not ctx.plan_only and not ctx.reversed:
            self._release_unmapped(ctx, entity)
        cursor = None if full else self.journal.cursor(ctx.name, cursor_key)
        stable = transform is None and entity in entities.STABLE and entity in ctx.sink.capabilities.stable
        skip = PageSkipper(self.journal, ctx, entity, cursor_key, cursor, full=full, stable=stable,
                           save=lambda to: self._save_cursor(ctx, cursor_key, to))
        # Without a transform (which reads the journal), up to SEND_AHEAD pages are being sent by sender
        # threads while the next is mapped and diffed here (against the journal and the pages in flight);
        # pages are recorded in page order, by this thread alone, so cursors, fingerprints and quarantine
        # are written as without the overlap. A page naming a key of a page in flight with other data
        # waits for that page, so the channel gets each key's versions in feed order.
        overlap = transform is None and not ctx.plan_only

        def record(work: _PageWork, page_cursor: str | None, failed: bool) -> None:
            self._record_page(ctx, entity, work, None if failed else cursor_key, page_cursor)
            self._progress(ctx)

        trail = CursorTrail(f"{ctx.name}/{entity}", cursor)
        width = SEND_AHEAD_SIDE_BY_SIDE if self.shared.takers > 1 else SEND_AHEAD
        sender: SendAhead[_PageWork] = SendAhead(width, lambda work: self._send_page(ctx, entity, work), record)
        try:
            # page k+1 is read and parsed by a helper thread while page k is mapped, sent and recorded here
            feed = skip.parse_needed(self._source(ctx).pull(entity, cursor, filters))
            with contextlib.closing(read_ahead(feed, more=lambda page: page.cursor is not None)) as pages:
                for page in trail.follow(pages):
                    page_digest = skip.meet(page)
                    if skip.known(page):
                        log.debug("%s/%s: page skipped: the same bytes were recorded whole before", ctx.name, entity)
                        sender.record_all()  # the pages before, if in flight
                        _count_unparsed(ctx, page)
                        skip.skipped_to = page.cursor
                        if page.cursor is None and not ctx.plan_only:
                            with self.journal.transaction():
                                self._advance(ctx.name, cursor_key, None)
                                if not ctx.setup.shadow:
                                    self.journal.set_tail_digest(ctx.name, cursor_key, page_digest)
                        self._progress(ctx)
                        if self.should_stop():
                            skip.save_skipped()
                            return
                        continue
                    if skip.skipped_to is not None and (not overlap or page.cursor is None):
                        skip.save_skipped()  # else this page's record moves the cursor on past them
                    skip.skipped_to = None
                    digest = skip.unchanged_tail(page)
                    if skip.is_tail(digest):
                        log.debug("%s/%s: last page unchanged since it was recorded: nothing to send", ctx.name,
                                  entity)
                        if sender.record_all() and self.should_stop():
                            return
                        if page.parsed:
                            ctx.result.read += len(page.records)
                            ctx.result.unchanged += sum(1 for r in page.records if not isinstance(r, BadRecord))
                        else:
                            _count_unparsed(ctx, page)
                        with self.journal.transaction():
                            self._advance(ctx.name, cursor_key, None)
                        continue
                    records = page.records
                    ctx.result.read += len(records)
                    if overlap:
                        work = self._map_page(ctx, entity, records)  # while the pages before are being sent
                        work.page = skip.page_to_note(page, page_digest, len(records))
                        if page.cursor is None:  # the last page: nothing left to overlap with
                            if sender.record_all() and self.should_stop():
                                return
                            self._diff_page(ctx, entity, work)
                            self._record_page(ctx, entity, self._send_page(ctx, entity, work), cursor_key, None,
                                              tail_digest=digest)
                        else:
                            sender.make_room()
                            if len(sender) and self.should_stop():  # stopping only once a page is sent: progress
                                sender.record_all()
                                return  # the pages before are recorded; this one waits for the next run
                            before = sender.in_flight()  # sent or being sent, not yet recorded
                            self._diff_page(ctx, entity, work, before)
                            work.prepared = {}  # the records are not needed any more: memory stays flat
                            if _shares_changed_keys(work, before):
                                sender.record_all()  # a key's next version goes once its previous one is in
                            # the pages back from the channel are recorded while it works on this one
                            sender.submit(work, page.cursor)
                            continue
                    else:
                        extra = None
                        if transform is not None:
                            records, extra = transform(records)
                        self._push_records(ctx, entity, records, cursor_key, page.cursor, extra, tail_digest=digest)
                    self._progress(ctx)
                    if self.should_stop():
                        return  # the page is recorded; the rest waits for the next run
            sender.record_all()
            skip.save_skipped()
            ctx.fed_to_end = True
            skip.finish()
        finally:
            # the step ends on an error: the pages already sent are still recorded, in order; after a page
            # whose send failed, the cursor stays before it (its records are read and diffed again)
            sender.close()

    def _save_cursor(self, ctx: _Ctx, cursor_key: str, cursor: str | None) -> None:
        with self.journal.transaction():
            self._advance(ctx.name, cursor_key, cursor)

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
        if entity in SKU_ENTITIES and ctx.reversed:
            records = self._backoffice_codes(ctx, records)
        elif entity in SKU_ENTITIES:
            records, work.renames = self._channel_skus(ctx, entity, records)
        prepare = ctx.sink.prepare  # looked up once a page, not once a record
        for record in records:
            if isinstance(record, BadRecord):
                key = _bad_key(record)
                work.bad.append((key, record.code, record.reason, _src(record.raw), fingerprint(record.raw)))
                continue
            try:
                out = prepare(entity, record)
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
        # open rows and rows an operator dropped: a record not changed since is neither sent nor quarantined again
        marks = self.journal.held_quarantine(ctx.name, entity, keys + [b[0] for b in work.bad]) \
            if work.release or self.journal.has_held_quarantine(ctx.name, entity) else {}
        held = {key: fp for key, (_, fp) in marks.items() if fp}
        work.changed = [(o, fp) for _, o, fp in prepared.values() if known.get(o.key) != fp and held.get(o.key) != fp]
        # valid again at its source with what the channel already holds: nothing to send, the open row is resolved
        work.resolved = [key for key, (_, _, fp) in prepared.items()
                         if known.get(key) == fp and marks.get(key, ("",))[0] == "open" and held.get(key) != fp]
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
        with network_wait():  # in the step's own thread: steps of other channels side by side work meanwhile
            return self._send_batches(ctx, entity, work)

    def _send_batches(self, ctx: _Ctx, entity: str, work: _PageWork) -> _PageWork:
        batch_size = max(1, min(ctx.setup.batch_size.get(entity, 200), ctx.sink.capabilities.max_batch))
        changed, accepted, rejected = work.changed, work.accepted, work.rejected
        try:
            for start in range(0, len(changed), batch_size):
                batch = changed[start : start + batch_size]
                failpoints.hit("push.before_send")
                results = ctx.sink.push(entity, [o for o, _ in batch])
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
                self.journal.release(ctx.name, entity, work.resolved,
                                     why="resolved: valid again at its source, and the channel already holds it")
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

    def prepare_for(self, channel: str, entity: str, records: Iterable[Any]) -> tuple[list[Outgoing], int]:
        """The payloads a page of records becomes on `channel` (DE/PARA SKUs applied); nothing recorded.

        Returns the prepared records and how many could not be prepared (for `reconcile`).
        """
        work = self._map_page(_Ctx(self.channels[channel], StepResult(channel, entity), plan_only=True), entity, records)
        return [out for _, out, _ in work.prepared.values()], len(work.bad)


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
    resolved: list[str] = field(default_factory=list)  # open rows whose record is valid again and already held
    renames: dict[str, str] = field(default_factory=dict)  # channel SKU → back office code (DE/PARA)
    clean: bool = False  # no bad record and nothing held in quarantine: the page may be recorded whole
    # (digest, mapping context, items, next cursor) to note once the page is recorded whole
    page: tuple[str, str, int, str | None] | None = None

    def pairs(self) -> list[tuple[Any, Outgoing]]:
        return [(record, out) for record, out, _ in self.prepared.values()]


def _shares_changed_keys(work: _PageWork, inflight: Iterable[_PageWork]) -> bool:
    """Whether a page sends a key that a page in flight sends too (a feed may repeat a record)."""
    return bool(work.sending) and any(not work.sending.keys().isdisjoint(before.sending) for before in inflight)
