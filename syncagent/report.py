"""Rendering for people (rich tables) and the stable `--json` shapes for machines.

The JSON shapes are documented in docs/cli.md; change them only with that page and its tests.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from syncagent.config import Config
from syncagent.engine import StepResult
from syncagent.journal import Journal

STATUS_SCHEMA_VERSION = 1


def summary_table(results: Iterable[StepResult], title: str = "sync summary") -> Table:
    table = Table(title=title)
    for column in ("channel", "flow", "read", "sent", "unchanged", "quarantined", "result"):
        table.add_column(column, justify="right" if column in ("read", "sent", "unchanged", "quarantined") else "left")
    for r in results:
        result = r.status if not r.error else f"{r.status}: {r.error[:80]}"
        table.add_row(r.channel, r.flow, str(r.read), str(r.sent), str(r.unchanged), str(r.quarantined), result)
    return table


def results_json(results: Iterable[StepResult]) -> list[dict[str, Any]]:
    return [
        {"channel": r.channel, "flow": r.flow, "read": r.read, "sent": r.sent, "unchanged": r.unchanged,
         "quarantined": r.quarantined, "status": r.status, "error": r.error}
        for r in results
    ]


def make_console() -> Console:
    """A terminal gets its own width; a pipe or a log file gets room for the whole table."""
    console = Console()
    return console if console.is_terminal else Console(width=160)


def print_summary(results: list[StepResult], console: Console | None = None) -> None:
    console = console or make_console()
    console.print(summary_table(results))
    totals = {k: sum(getattr(r, k) for r in results) for k in ("read", "sent", "unchanged", "quarantined")}
    failed = [r for r in results if r.status in ("failed", "auth_failed", "skipped")]
    console.print(
        f"{len(results)} steps: read {totals['read']}, sent {totals['sent']}, unchanged {totals['unchanged']},"
        f" quarantined {totals['quarantined']}, failed {len(failed)}"
    )


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
                "behind": run is not None and run.result in ("failed", "auth_failed"),
                "quarantined": sum(quarantine.get((channel.name, e), 0) for e in entities),
            })
        waiting = journal.orders_in_state(channel.name, ("pending", "creating", "created", "quarantined"))
        oldest = min((row.seen_at for row in waiting), default=None)
        channels.append({
            "name": channel.name, "type": channel.type, "enabled": channel.enabled,
            "auth_state": "disabled" if not channel.enabled else auth_state, "auth_message": auth_message,
            "orders": journal.order_counts(channel.name),
            "orders_waiting": len(waiting),
            "oldest_waiting_order_age_seconds": _age_seconds(oldest, now),
            "flows": flows,
        })
    return {
        "schema": STATUS_SCHEMA_VERSION,
        "generated_at": now.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "journal": str(config.journal),
        "quarantined_total": sum(quarantine.values()),
        "channels": channels,
    }


def status_table(data: dict[str, Any]) -> Table:
    table = Table(title=f"syncagent status ({data['journal']})")
    for column in ("channel", "flow", "state", "last run", "result", "read", "sent", "unchanged", "quarantined",
                   "backlog", "cursor age"):
        table.add_column(column)
    for channel in data["channels"]:
        for flow in channel["flows"]:
            run = flow["last_run"] or {}
            state = "disabled" if not flow["enabled"] else channel["auth_state"]
            age = flow["cursor_age_seconds"]
            table.add_row(
                channel["name"], flow["flow"], state, (run.get("finished_at") or "never")[:19],
                str(run.get("result") or "-"), str(run.get("read", "-")), str(run.get("sent", "-")),
                str(run.get("unchanged", "-")), str(flow["quarantined"]),
                str(flow["backlog"]) + (" (behind)" if flow["behind"] else ""), "-" if age is None else f"{age:.0f}s",
            )
    return table


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

    Fed by `Engine.on_page` after each recorded page. A feed does not say how long it is, so the
    bar counts records read and sent rather than showing a percentage.
    """

    def __init__(self, console: Console | None = None, *, every: float = 5.0,
                 clock: Any = None) -> None:
        import time

        self.console = console or Console(stderr=True)
        self.every = every
        self.clock = clock or time.monotonic
        self.live = self.console.is_terminal
        self._last = 0.0
        self._tasks: dict[tuple[str, str], Any] = {}
        self._bar: Any = None

    def __enter__(self) -> PushProgress:
        if self.live:
            from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self._bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                 TextColumn("{task.fields[counts]}"), TimeElapsedColumn(), console=self.console,
                                 transient=False)
            self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)

    def update(self, result: StepResult) -> None:
        counts = f"read {result.read}, sent {result.sent}, unchanged {result.unchanged}"
        key = (result.channel, result.flow)
        if self._bar is not None:
            if key not in self._tasks:
                self._tasks[key] = self._bar.add_task(f"{result.channel}/{result.flow}", total=None, counts=counts)
            self._bar.update(self._tasks[key], counts=counts, completed=result.read)
            return
        now = self.clock()
        if now - self._last >= self.every:
            self._last = now
            self.console.print(f"{result.channel}/{result.flow}: {counts}", highlight=False)
