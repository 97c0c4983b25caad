"""Rendering for people (rich tables) and the stable `--json` shapes for machines.

The JSON shapes are documented in docs/cli.md; change them only with that page and its tests.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from syncagent.config import Config
from syncagent.engine import BACKOFFICE_STATE, StepResult
from syncagent.journal import Journal

STATUS_SCHEMA_VERSION = 1


def summary_table(results: Iterable[StepResult], title: str = "sync summary", *, compact: bool = False) -> Table:
    """One row per step; the causes of failures are printed whole under it (`print_causes`).

    `compact` (a terminal under 100 columns): no box, one space between columns, so that an
    80-column terminal shows every name and number whole.
    """
    table = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 0), pad_edge=False) if compact else Table(title=title)
    for column in ("channel", "flow", "read", "sent", "unchanged", "quarantined", "result"):
        table.add_column(column, justify="right" if column in ("read", "sent", "unchanged", "quarantined") else "left",
                         no_wrap=column != "result")
    for r in results:
        table.add_row(r.channel, r.flow, str(r.read), str(r.sent), str(r.unchanged), str(r.quarantined),
                      r.status + (" (see below)" if r.error else ""))
    return table


def print_causes(console: Console, causes: Iterable[tuple[str, str]]) -> None:
    """Each cause whole, on its own lines, first: a table cell would cut it off or fold it into a column."""
    for where, cause in causes:
        console.print(f"{where}: {cause}", highlight=False, markup=False, overflow="fold")


def results_json(results: Iterable[StepResult]) -> list[dict[str, Any]]:
    return [
        {"channel": r.channel, "flow": r.flow, "read": r.read, "sent": r.sent, "unchanged": r.unchanged,
         "quarantined": r.quarantined, "status": r.status, "error": r.error}
        for r in results
    ]


def make_console() -> Console:
    """A terminal gets its own width (or $COLUMNS); a pipe or a log file gets room for the whole table."""
    console = Console()
    if console.is_terminal or os.environ.get("COLUMNS", "").isdigit():
        return console
    return Console(width=160)


def when(stamp: str | None) -> str:
    """A journal time (UTC) in this machine's zone, the zone written out: "2026-12-04 13:58:16 -03"."""
    if not stamp:
        return "never"
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return stamp
    if moment.tzinfo is None:  # the journal writes UTC
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def print_summary(results: list[StepResult], console: Console | None = None) -> None:
    console = console or make_console()
    console.print(summary_table(results, compact=console.width < 100))
    print_causes(console, _grouped_causes(results))
    totals = {k: sum(getattr(r, k) for r in results) for k in ("read", "sent", "unchanged", "quarantined")}
    failed = [r for r in results if r.status in ("failed", "auth_failed", "skipped")]
    interrupted = sum(1 for r in results if r.status == "interrupted")
    console.print(
        f"{len(results)} steps: read {totals['read']}, sent {totals['sent']}, unchanged {totals['unchanged']},"
        f" quarantined {totals['quarantined']}, failed {len(failed)}"
        + (f", interrupted {interrupted}" if interrupted else ""), highlight=False
    )


def _grouped_causes(results: Iterable[StepResult]) -> list[tuple[str, str]]:
    """Each failed step's cause whole; the steps of a channel skipped for one reason share one line."""
    groups: dict[tuple[str, str, str], list[str]] = {}
    for r in results:
        if r.error:
            groups.setdefault((r.channel, r.status, r.error), []).append(r.flow)
    return [(f"{channel}/{', '.join(flows)} {status}", error) for (channel, status, error), flows in groups.items()]


CREDENTIALS = {"ok": "accepted", "auth_failed": "REJECTED (see below)", "unknown": "not tried yet"}


def _age_seconds(stamp: str | None, now: datetime) -> float | None:
    if not stamp:
        return None
    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return round((now - moment).total_seconds(), 1)


def status_data(config: Config, journal: Journal, now: datetime | None = None) -> dict[str, Any]:
    """The documented `status --json` shape (docs/cli.md)."""
    now = now or datetime.now(UTC)
    runs = {(r.channel, r.flow): r for r in journal.last_runs()}
    quarantine = journal.quarantine_counts()
    states = journal.channel_states()
    notes = journal.notification_summary()
    channels = []
    stamp = now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    for channel in config.channels:
        auth_state, auth_message = states.get(channel.name, ("unknown", None))
        backlog = journal.backlog(channel.name, stamp)
        flows = []
        for flow in channel.flows:
            run = runs.get((channel.name, flow.name))
            cursor_key = "customers-pull" if flow.name == "customers" and flow.direction == "pull" else flow.name
            entities = {flow.name}
            if flow.name == "customers":
                entities.add("channel-customers")
            if flow.name == "orders":
                entities |= {"order-acks", "order-cancels"}
            flows.append({
                "flow": flow.name,
                "enabled": channel.enabled and flow.enabled,
                "every_seconds": flow.every,
                "direction": flow.direction,
                "last_run": None if run is None else {
                    "started_at": run.started_at, "finished_at": run.finished_at, "result": run.result,
                    "read": run.read, "sent": run.sent, "unchanged": run.unchanged,
                    "quarantined": run.quarantined, "error": run.error,
                },
                "cursor_age_seconds": _age_seconds(journal.cursor_updated_at(channel.name, cursor_key), now),
                "backlog": backlog.get(flow.name, 0),
                "behind": run is not None and run.result in ("failed", "auth_failed", "interrupted"),
                "quarantined": sum(quarantine.get((channel.name, e), 0) for e in entities),
            })
        waiting = journal.orders_in_state(channel.name, ("parked", "creating", "created", "quarantined"))
        oldest = min((row.seen_at for row in waiting), default=None)
        shipments = journal.shipment_counts(channel.name)
        channels.append({
            "name": channel.name, "type": channel.type, "enabled": channel.enabled,
            "shipments": shipments,  # tracked by the deliveries flow: open, final, unknown_carrier, quarantined
            "unknown_carriers": journal.unknown_carriers(channel.name) if shipments.get("unknown_carrier") else {},
            "auth_state": "disabled" if not channel.enabled else auth_state, "auth_message": auth_message,
            "orders": journal.order_counts(channel.name),
            "orders_waiting": len(waiting),
            "oldest_waiting_order_age_seconds": _age_seconds(oldest, now),
            "notifications": None if channel.name not in notes else {
                "last_received_at": notes[channel.name][0], "waiting": notes[channel.name][1]},
            "flows": flows,
        })
    bo_state, bo_message = states.get(BACKOFFICE_STATE, ("unknown", None))
    return {
        "schema": STATUS_SCHEMA_VERSION,
        "generated_at": now.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "journal": str(config.journal),
        "backoffice": {"type": config.backoffice.type, "auth_state": bo_state, "auth_message": bo_message},
        "quarantined_total": sum(quarantine.values()),
        "channels": channels,
    }


def status_tables(data: dict[str, Any], now: datetime | None = None) -> list[Table]:
    """One narrow table per channel (fits 80 columns); its credential state in the title, the causes go under."""
    now = now or datetime.now(UTC)
    tables = []
    for channel in data["channels"]:
        state = channel["auth_state"]
        table = Table(title=f"{channel['name']} ({channel['type']}): credentials {CREDENTIALS.get(state, state)}"
                      if channel["enabled"]
                      else f"{channel['name']} ({channel['type']}): disabled",
                      box=box.SIMPLE_HEAD, padding=(0, 0), pad_edge=False,
                      title_justify="left")
        widest = max((len(f["flow"]) for f in channel["flows"]), default=4)
        table.add_column("flow", no_wrap=True, min_width=widest)
        for column in ("last\nrun", "result", "read", "sent", "unch.", "quar.", "backlog", "cursor\nage"):
            table.add_column(column, justify="left" if column in ("last\nrun", "result") else "right",
                             no_wrap=column not in ("backlog",))
        for flow in channel["flows"]:
            run = flow["last_run"] or {}
            age = flow["cursor_age_seconds"]
            result = "disabled" if not flow["enabled"] else str(run.get("result") or "-")
            if run.get("started_at") and not run.get("finished_at"):
                result = "running"  # or stopped by a kill or a crash: it never recorded its end
            table.add_row(
                flow["flow"], _ago(run.get("finished_at") or run.get("started_at"), now), result,
                str(run.get("read", "-")), str(run.get("sent", "-")), str(run.get("unchanged", "-")),
                str(flow["quarantined"]), str(flow["backlog"]) + (" behind" if flow["behind"] else ""),
                "-" if age is None else _duration(age),
            )
        tables.append(table)
    return tables


def _ago(stamp: str | None, now: datetime) -> str:
    """How long ago, zone-free ("3m ago"); the moments themselves are written with their zone elsewhere."""
    seconds = _age_seconds(stamp, now)
    return "never" if seconds is None else f"{_duration(max(0.0, seconds))} ago"


def status_notes(data: dict[str, Any]) -> list[tuple[str, str]]:
    """What the table has no room for, whole: credential states and the cause of each failed last run."""
    notes: list[tuple[str, str]] = []
    backoffice = data.get("backoffice") or {}
    if backoffice.get("auth_state") == "auth_failed":
        notes.append(("back office", str(backoffice.get("auth_message") or "credentials rejected")))
    for channel in data["channels"]:
        if channel["auth_state"] == "auth_failed":
            notes.append((f"{channel['name']}: credentials rejected", str(channel["auth_message"] or "")))
        for carrier, count in (channel.get("unknown_carriers") or {}).items():
            notes.append((f"{channel['name']}/deliveries: unknown carrier {carrier!r}",
                          f"{count} shipment(s) are not tracked: no carrier connector lists {carrier!r} in its names "
                          "(add it under carriers: in the config)"))
        for flow in channel["flows"]:
            run = flow["last_run"] or {}
            if run.get("started_at") and not run.get("finished_at"):
                notes.append((f"{channel['name']}/{flow['flow']} running", f"started at {when(run['started_at'])} "
                              "and not finished: still running, or the agent was killed (its next run goes on)"))
            if run.get("error"):
                notes.append((f"{channel['name']}/{flow['flow']} {run.get('result')} at {when(run.get('finished_at'))}",
                              str(run["error"])))
    return notes


def print_status(data: dict[str, Any], console: Console | None = None, now: datetime | None = None) -> None:
    console = console or make_console()
    generated = data["generated_at"]
    console.print(f"syncagent status at {when(generated)}, journal {data['journal']}", highlight=False,
                  markup=False, overflow="fold")
    backoffice = data.get("backoffice") or {}
    state = str(backoffice.get("auth_state"))
    console.print(f"back office ({backoffice.get('type')}): credentials {CREDENTIALS.get(state, state)}",
                  highlight=False, markup=False)
    moment = now or datetime.fromisoformat(generated.replace("Z", "+00:00"))
    for channel, table in zip(data["channels"], status_tables(data, moment), strict=True):
        console.print(table)
        notes = channel.get("notifications")
        if notes:
            console.print(f"notifications: last received {_ago(notes['last_received_at'], moment)}, "
                          f"{notes['waiting']} waiting for their step", highlight=False, markup=False)
    print_causes(console, status_notes(data))
    console.print(f"quarantined records: {data['quarantined_total']}", highlight=False)


def _duration(seconds: float) -> str:
    """A cursor age people read at a glance: 42s, 17m, 5h, 3d."""
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def dumps(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, default=str)


def print_plan(plans: list[tuple[StepResult, list[Any]]], changes: list[dict[str, list[str]]] | None = None,
               limit: int = 50) -> None:
    """`push --dry-run`: per record, create or update, the fields it changes and what would be sent."""
    console = make_console()
    for index, (result, plan) in enumerate(plans):
        changed = changes[index] if changes else {}
        table = Table(title=f"{result.channel}/{result.flow}: dry run (nothing sent, journal unchanged)")
        for column in ("key", "action", "changed fields", "would send"):
            table.add_column(column)
        for write in plan[:limit]:
            fields = "(new)" if write.action == "create" else ", ".join(changed.get(write.key) or []) or "?"
            table.add_row(write.key, write.action, fields, json.dumps(write.payload, ensure_ascii=False)[:100])
        console.print(table)
        more = f" (first {limit} shown)" if len(plan) > limit else ""
        creates = sum(1 for w in plan if w.action == "create")
        console.print(f"read {result.read}: {creates} create, {len(plan) - creates} update, "
                      f"{result.unchanged} unchanged, {result.quarantined} would be quarantined{more}"
                      + (f"; error: {result.error}" if result.error else ""))


def print_reconciliation(result: Any, console: Console | None = None) -> None:
    """`reconcile`: the counts on each side, then the first differing keys of each kind."""
    console = console or make_console()
    table = Table(title=f"{result.channel}/{result.entity}: back office vs channel")
    for column in ("back office", "channel", "missing on channel", "extra on channel", "differing",
                   "not sendable"):
        table.add_column(column, justify="right")
    counts = result.counts
    table.add_row(str(result.backoffice), str(result.on_channel), str(counts["missing"]), str(counts["extra"]),
                  str(counts["differing"]), str(result.unpreparable))
    console.print(table)
    for label, keys in (("missing on the channel", result.missing), ("extra on the channel", result.extra)):
        if keys:
            console.print(f"{label}: " + ", ".join(keys) + (" …" if len(keys) < counts[label.split()[0]] else ""))
    for key, fields in result.differing:
        console.print(f"differs: {key}: {', '.join(fields)}")
    console.print("in step" if not result.differs else "differences found (exit 1); nothing was changed")


class PushProgress:
    """Progress of long steps: a live rich bar on a terminal, a plain line every few seconds elsewhere.

    Fed by `Engine.on_page` after each recorded page. A feed does not say how long it is; where the
    caller knows how many records a step will read (`expected`, e.g. a pass over a whole feed read
    whole before), the bar shows that total and the time left, else it counts records read and sent.
    """

    def __init__(self, console: Console | None = None, *, every: float = 5.0,
                 clock: Any = None, expected: Callable[[str, str], int | None] | None = None) -> None:
        import time

        self.console = console or Console(stderr=True)
        self.every = every
        self.clock = clock or time.monotonic
        self.expected = expected or (lambda channel, flow: None)
        self.live = self.console.is_terminal
        self._last = 0.0
        self._tasks: dict[tuple[str, str], Any] = {}
        self._steps: dict[tuple[str, str], tuple[float, int | None]] = {}  # when it began, the total if known
        self._bar: Any = None

    def __enter__(self) -> PushProgress:
        if self.live:
            from rich.progress import (
                BarColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                 TextColumn("{task.fields[counts]}"), TimeElapsedColumn(),
                                 TimeRemainingColumn(), console=self.console, transient=False)
            self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)

    def _total(self, key: tuple[str, str], read: int) -> int | None:
        """The step's total, learnt at its first page; never below what was read (an estimate may be short)."""
        if key not in self._steps:
            self._steps[key] = (self.clock(), self.expected(*key))
        total = self._steps[key][1]
        return None if total is None else max(total, read)

    def update(self, result: StepResult) -> None:
        key = (result.channel, result.flow)
        total = self._total(key, result.read)
        counts = f"read {result.read}" + (f" of ~{total}" if total is not None else "") + \
            f", sent {result.sent}, unchanged {result.unchanged}"
        if self._bar is not None:
            if key not in self._tasks:
                self._tasks[key] = self._bar.add_task(f"{result.channel}/{result.flow}", total=total, counts=counts)
            self._bar.update(self._tasks[key], counts=counts, completed=result.read, total=total)
            return
        now = self.clock()
        if now - self._last >= self.every:
            self._last = now
            left = self._eta(key, result.read, total, now)
            self.console.print(f"{result.channel}/{result.flow}: {counts}{left}", highlight=False)

    def _eta(self, key: tuple[str, str], read: int, total: int | None, now: float) -> str:
        began = self._steps[key][0]
        if total is None or read <= 0 or now <= began:
            return ""
        return f", about {(now - began) * (total - read) / read:.0f} s left"
