"""The command line: parse, call the library, render. Nothing else lives here.

Exit codes (a user contract, DESIGN §3): 0 ok; 1 some records quarantined or a channel failed
(the rest ran); 2 bad config or usage; 3 another instance holds the journal lock; 130 stopped by
Ctrl-C (what was done is recorded and summed up).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any, NoReturn

import click

from syncagent import __version__, entities
from syncagent.errors import (
    ChannelError,
    ConfigError,
    JournalError,
    JournalFull,
    JournalLocked,
    SyncAgentError,
)

EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report it (128 + SIGINT)
PUSH_ENTITIES = list(entities.PUSHABLE)


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _load(ctx: click.Context) -> Any:
    from syncagent.config import load_config
    from syncagent.logs import setup_logging

    try:
        config = load_config(ctx.obj["config_path"])
    except ConfigError as exc:
        problems = getattr(exc, "problems", None)
        if problems:
            for problem in problems:
                click.echo(str(problem), err=True)
            _fail(f"{len(problems)} problem(s) in the configuration", 2)
        _fail(str(exc), 2)
    setup_logging(config.log, config.secrets, verbose=ctx.obj["verbose"])
    return config


# what to do instead when a command that writes finds the daemon holding the journal
BESIDE_THE_DAEMON = {
    "run": "the daemon already runs every flow on its interval; to run a cycle now, restart it "
           "(`systemctl restart syncagent`: it runs every step at start)",
    "push": "the daemon pushes this flow on its interval; to push now, stop it (`systemctl stop syncagent`), "
            "push, start it again (`systemctl start syncagent`)",
    "pull": "the daemon pulls on its interval; to pull now, stop it (`systemctl stop syncagent`), pull, start it "
            "again",
    "replay": "stop the daemon (`systemctl stop syncagent`), replay, start it again: two agents must never write "
              "to the channels from one journal",
    "retry": "the daemon retries a record by itself when its source changes; to retry now, stop it "
             "(`systemctl stop syncagent`), retry, start it again",
}
READ_ONLY_BESIDE = "`status`, `doctor`, `reconcile`, `push --dry-run` and `quarantine list|show|drop` work beside it"


def _locked(exc: JournalLocked) -> NoReturn:
    """Exit 3, saying who holds the journal and how to do this with the daemon running."""
    ctx = click.get_current_context(silent=True)
    words = ctx.command_path.split()[1:] if ctx is not None else []  # "replay order", "quarantine retry"
    advice = next((BESIDE_THE_DAEMON[w] for w in words if w in BESIDE_THE_DAEMON),
                  "stop the daemon first (`systemctl stop syncagent`), then start it again")
    _fail(f"{exc}\n{advice}; {READ_ONLY_BESIDE}", 3)


def _agent(config: Any) -> Any:
    from syncagent.agent import Agent

    try:
        return Agent(config)
    except JournalFull:
        raise  # exit 1, as a disk filling up during a run
    except JournalLocked as exc:
        _locked(exc)
    except (JournalError, ConfigError) as exc:
        _fail(str(exc), 2)


def _read_only_journal(config: Any) -> Any:
    """The journal for commands that only read: no lock, and SQLite refuses any write (query_only), so they
    run beside a daemon; with no journal yet, an empty one in memory (what a first run would see)."""
    from syncagent.journal import Journal

    if not config.journal.exists():
        return Journal(":memory:", lock=False)
    journal = Journal(config.journal, lock=False, readonly=True)
    journal.refuse_writes()
    return journal


def _read_only_agent(config: Any) -> Any:
    from syncagent.agent import Agent

    try:
        return Agent(config, journal=_read_only_journal(config))
    except (JournalError, ConfigError) as exc:
        _fail(str(exc), 2)


@contextlib.contextmanager
def _ctrl_c(agent: Any) -> Iterator[threading.Event]:
    """Ctrl-C: the step stops after the page in hand (recorded), no other step starts, the run is recorded
    as interrupted with its counts, the summary so far is printed, and the exit is 130.

    The engine is never interrupted in the middle of a page (a KeyboardInterrupt there could record a
    cursor apart from its page); a second Ctrl-C only arms a third, which stops the process at once,
    as a kill would: the journal stays consistent and the page in hand is sent again by the next run.
    """
    pressed = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        if pressed.is_set():
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            click.echo("\nstill finishing the page in hand (bounded by the HTTP timeouts); Ctrl-C once more stops "
                       "at once, as a kill: nothing recorded is lost, the page in hand is sent again next run",
                       err=True)
            return
        pressed.set()
        click.echo("\nCtrl-C: stopping after the page in hand, which is recorded", err=True)

    cut_short = threading.Event()  # the engine stopped a step before its end because of it

    def should_stop() -> bool:
        if pressed.is_set():
            cut_short.set()
        return pressed.is_set()

    previous = signal.signal(signal.SIGINT, handler)
    agent.engine.should_stop = should_stop
    agent.engine.interrupted = cut_short.is_set
    agent.stop_requested = pressed.is_set  # no step starts after it
    try:
        yield pressed
    finally:
        signal.signal(signal.SIGINT, previous)


def _run_steps(agent: Any, work: Callable[[], list[Any]], *, as_json: bool, progress: bool = True) -> int:
    """Run steps with the progress display; print the results (those so far after a Ctrl-C) and say the exit code."""
    from syncagent.agent import exit_code
    from syncagent.report import PushProgress, dumps, print_summary, results_json

    with _ctrl_c(agent) as pressed:
        if progress:
            with PushProgress(expected=agent.expected_reads) as bar:
                agent.engine.on_page = bar.update
                results = work()
        else:
            results = work()
        interrupted = pressed.is_set() or any(r.status == "interrupted" for r in results)
    click.echo(dumps(results_json(results))) if as_json else print_summary(results)
    if interrupted:
        click.echo("interrupted (Ctrl-C): what the summary counts was sent and recorded; run the command again to "
                   "go on from there (`syncagent status` shows the run as interrupted)", err=True)
        return EXIT_INTERRUPTED
    return exit_code(results)


def _guard(fn: Callable[[], int]) -> NoReturn:
    """Run a command body and turn the library's errors into the documented exit codes."""
    try:
        code = fn()
    except JournalFull as exc:  # exit 1: what was recorded is kept; the summary says what got done
        if exc.results:
            from syncagent.report import print_summary

            print_summary(exc.results)
        _fail(str(exc), 1)
    except JournalLocked as exc:
        _locked(exc)
    except (JournalError, ConfigError) as exc:
        _fail(str(exc), 2)
    except SyncAgentError as exc:
        _fail(str(exc), 1)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False),
              help="Config file (default: $SYNCAGENT_CONFIG, else ./syncagent.yaml).")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.version_option(__version__, prog_name="syncagent")
@click.pass_context
def main(ctx: click.Context, config_path: str | None, verbose: bool) -> None:
    """Replicate a retail back office to its sales channels, crash-safely."""
    if ctx.invoked_subcommand is not None:
        from syncagent.agent import cap_malloc_arenas

        cap_malloc_arenas()
    ctx.ensure_object(dict)
    ctx.obj.update(config_path=config_path, verbose=verbose)


@main.command()
@click.option("--once", is_flag=True, help="Run every enabled flow once, then exit (for cron).")
@click.option("--json", "as_json", is_flag=True, help="With --once: print the step results as JSON.")
@click.pass_context
def run(ctx: click.Context, once: bool, as_json: bool) -> None:
    """Run the agent: the daemon, or every flow once with --once."""
    config = _load(ctx)

    def body() -> int:
        from syncagent.scheduler import Daemon

        with _agent(config) as agent:
            if once:
                return _run_steps(agent, agent.run_once, as_json=as_json)
            daemon = Daemon(agent)
            if config.listen is None:
                daemon.run()
            else:
                from syncagent.inbound.server import hooks_of, start_listener

                listener = start_listener(agent, daemon.wake)

                def rebuilt() -> None:  # a reload may add, remove or change channels
                    listener.app.hooks = hooks_of(agent.config, {n: s.connector for n, s in agent.engine.channels.items()})

                daemon.after_reload = rebuilt
                try:
                    daemon.run()
                finally:
                    listener.stop()
            return 0

    _guard(body)


@main.command()
@click.option("--entity", required=True, type=click.Choice(PUSH_ENTITIES), help="The flow to push now.")
@click.option("--channel", help="Only this channel (default: every enabled channel with this flow).")
@click.option("--full", is_flag=True, help="Ignore the cursor and re-read everything; still sends only what differs.")
@click.option("--dry-run", is_flag=True, help="Show what would be sent (create/update); send and record nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the step results as JSON.")
@click.pass_context
def push(ctx: click.Context, entity: str, channel: str | None, full: bool, dry_run: bool, as_json: bool) -> None:
    """Push one flow (back office → channels) now."""
    config = _load(ctx)

    def body() -> int:
        from syncagent.report import dumps, print_plan

        with _read_only_agent(config) if dry_run else _agent(config) as agent:
            if dry_run:
                from syncagent.reconcile import changed_fields

                plans = [agent.engine.plan_step(s.channel, s.flow, full=full)
                         for s in agent.steps(channel=channel, flows=[entity])]
                changes: list[dict[str, list[str]]] = []
                for r, plan in plans:
                    try:  # which fields each update changes, where the channel can list what it holds
                        changes.append(changed_fields(agent.engine.channels[r.channel].connector, r.flow, plan))
                    except SyncAgentError as exc:
                        click.echo(f"{r.channel}: the changed fields are not known ({exc})", err=True)
                        changes.append({})
                if as_json:
                    click.echo(dumps([{"channel": r.channel, "flow": r.flow, "read": r.read, "unchanged": r.unchanged,
                                       "would_send": [{"key": p.key, "action": p.action, "payload": p.payload,
                                                       "changed_fields": changed.get(p.key)} for p in plan],
                                       "error": r.error} for (r, plan), changed in zip(plans, changes, strict=True)]))
                else:
                    print_plan(plans, changes)
                return 1 if any(r.status == "failed" for r, _ in plans) else 0
            return _run_steps(agent, lambda: agent.run_entity(
                entity, channel=channel, full=full, direction="push" if entity == "customers" else None),
                as_json=as_json)

    _guard(body)


@main.command()
@click.option("--entity", required=True, type=click.Choice(["orders", "customers", "tickets", "deliveries"]),
              help="The flow to pull now.")
@click.option("--channel", help="Only this channel.")
@click.option("--json", "as_json", is_flag=True, help="Print the step results as JSON.")
@click.pass_context
def pull(ctx: click.Context, entity: str, channel: str | None, as_json: bool) -> None:
    """Pull orders, customers, tickets or delivery statuses (into the back office) now."""
    config = _load(ctx)

    def body() -> int:
        with _agent(config) as agent:
            return _run_steps(agent, lambda: agent.run_entity(
                entity, channel=channel, direction="pull" if entity == "customers" else None),
                as_json=as_json, progress=False)

    _guard(body)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="The documented machine-readable shape (docs/cli.md).")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Per channel and flow: last run, result, counts, cursor age, quarantined records."""
    config = _load(ctx)

    def body() -> int:
        from syncagent.report import dumps, print_status, status_data

        if not config.journal.exists():
            _fail(f"no journal at {config.journal} yet: run `syncagent run --once` first", 1)
        journal = _read_only_journal(config)
        try:
            data = status_data(config, journal)
        finally:
            journal.close()
        if as_json:
            click.echo(dumps(data))
        else:
            print_status(data)
        failing = any(c["auth_state"] == "auth_failed" for c in data["channels"])
        failing = failing or data["backoffice"]["auth_state"] == "auth_failed"
        return 1 if failing or data["quarantined_total"] else 0

    _guard(body)


@main.command("check-config")
@click.option("--online", is_flag=True, help="Also reach each endpoint and try its credentials.")
@click.pass_context
def check_config(ctx: click.Context, online: bool) -> None:
    """Validate the config file; print its problems (exit 2) or a summary (exit 0)."""
    config = _load(ctx)

    def body() -> int:
        from syncagent.agent import build_connector
        from syncagent.config import describe

        click.echo(describe(config))
        if not online:
            return 0
        from syncagent.doctor import state_journal

        failures = 0
        with state_journal(config) as journal:  # tokens a connector keeps in the journal (OAuth code)
            for name, cfg in config.endpoints():
                failures += _check_online(name, cfg, journal, build_connector)
        return 1 if failures else 0

    _guard(body)


def _check_online(name: str, cfg: Any, journal: Any, build_connector: Callable[..., Any]) -> int:
    """One endpoint's `check-config --online` line; 1 when it failed."""
    try:
        connector = build_connector(cfg, journal=journal)
        try:
            connector.check()
        finally:
            connector.close()
        click.echo(f"{name}: reachable, credentials accepted")
    except SyncAgentError as exc:
        click.echo(f"{name}: FAILED: {exc}")
        return 1
    return 0


@main.command("auth")
@click.argument("system")
@click.option("--channel", required=True, help="The channel to authorize (its app id, secret and redirect URI "
              "come from the config).")
@click.option("--code", help="The code the platform handed to the redirect URI (?code=...), or that whole URL; "
              "asked for when not given.")
@click.pass_context
def auth(ctx: click.Context, system: str, channel: str, code: str | None) -> None:
    """First authorization of a channel that signs in by OAuth code (e.g. `auth mercadolivre`).

    Prints the consent page's URL: open it on any machine with a browser, sign in as the seller,
    allow the app, then paste the code (or the whole address the browser was sent to). The tokens
    are stored in the journal; it works beside a running daemon. Run it again whenever the channel's
    status says the seller must authorize the app again.
    """
    from syncagent.authorize import authorize, consent_url

    config = _load(ctx)
    _known_channel(config, channel)
    cfg = config.channel(channel)
    if cfg.type != system:
        _fail(f"channel {channel!r} is of type {cfg.type}, not {system}", 2)

    def body() -> int:
        url = consent_url(cfg)
        click.echo(f"1. Open this address in any browser and sign in as the seller of {channel}:\n\n   {url}\n")
        click.echo("2. Allow the app. The browser is sent to the redirect URI with ?code=...: copy that code "
                   "(or the whole address).\n")
        given = code if code is not None else click.prompt("code", err=True)
        with _map_journal(config) as journal:
            doc = authorize(cfg, journal, given)
        seller = f" (seller {doc['user_id']})" if doc.get("user_id") else ""
        click.echo(f"{channel}: authorized{seller}; the tokens are stored in the journal {config.journal}")
        if not doc.get("refresh_token"):
            click.echo(f"warning: {system} gave no refresh token (is the app's offline_access scope on?): the "
                       "access ends when the access token expires, and this command must be run again", err=True)
        return 0

    _guard(body)


@main.group()
def mapping() -> None:
    """SKU DE/PARA: the SKU each channel knows a back office product by (import, export, list)."""


def _known_channel(config: Any, name: str) -> None:
    if name not in {c.name for c in config.channels}:
        _fail(f"no channel {name!r} in {config.path} (channels: {', '.join(c.name for c in config.channels)})", 2)


def _map_journal(config: Any) -> Any:
    """The journal for map commands: no agent lock (SQLite serialises the writes), so they work beside a daemon."""
    from syncagent.journal import Journal

    return Journal(config.journal, lock=False)


@mapping.command("import")
@click.option("--channel", required=True, help="The channel whose SKUs the file gives.")
@click.option("--replace", "replace_all", is_flag=True, help="Forget the channel's other pairs first.")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False))
@click.pass_context
def mapping_import(ctx: click.Context, channel: str, replace_all: bool, csv_file: str) -> None:
    """Read a CSV `code,channel_sku` (`;` also accepted); any bad line imports nothing (exit 1)."""
    from pathlib import Path

    from syncagent.mapping import load_text, read_csv

    config = _load(ctx)
    _known_channel(config, channel)

    def body() -> int:
        pairs, problems = read_csv(load_text(Path(csv_file)))
        if problems:
            for problem in problems:
                click.echo(problem.render(csv_file), err=True)
            click.echo(f"error: {len(problems)} problem(s) in {csv_file}; nothing imported", err=True)
            return 1
        with _map_journal(config) as journal:
            with journal.transaction():
                count = journal.set_sku_map(channel, pairs, f"import:{Path(csv_file).name}", replace=replace_all)
            total = journal.sku_map_size(channel)
        click.echo(f"{channel}: {count} pair(s) imported from {csv_file}; {total} mapped in all")
        return 0

    _guard(body)


@mapping.command("export")
@click.option("--channel", required=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write here instead of standard output.")
@click.pass_context
def mapping_export(ctx: click.Context, channel: str, output: str | None) -> None:
    """The channel's pairs as a CSV that `mapping import` reads back."""
    from syncagent.mapping import write_csv

    config = _load(ctx)
    _known_channel(config, channel)

    def body() -> int:
        with _map_journal(config) as journal:
            lines = write_csv(journal.sku_map(channel))
            if output:
                with open(output, "w", encoding="utf-8", newline="") as handle:
                    handle.writelines(lines)
            else:
                for line in lines:
                    click.echo(line, nl=False)
        return 0

    _guard(body)


@mapping.command("list")
@click.option("--channel", required=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def mapping_list(ctx: click.Context, channel: str, as_json: bool) -> None:
    """One line per pair: back office code, channel SKU, where it came from."""
    config = _load(ctx)
    _known_channel(config, channel)

    def body() -> int:
        from rich.table import Table

        from syncagent.report import dumps, make_console, when

        with _map_journal(config) as journal:
            rows = list(journal.sku_map(channel))
        if as_json:
            click.echo(dumps([{"code": c, "channel_sku": k, "source": s, "updated_at": u} for c, k, s, u in rows]))
            return 0
        table = Table(title=f"{channel}: SKU DE/PARA ({len(rows)} pairs)")
        for column in ("code", "channel SKU", "source", "updated"):
            table.add_column(column)
        for code, sku, source, updated in rows:
            table.add_row(code, sku, source, when(updated))
        make_console().print(table)
        return 0

    _guard(body)


@main.group()
def replay() -> None:
    """Re-apply one object now, safely: an order is never created twice."""


@replay.command("order")
@click.argument("order_id")
@click.option("--channel", required=True, help="The channel the order came from.")
@click.pass_context
def replay_order(ctx: click.Context, order_id: str, channel: str) -> None:
    """Look the order up in the back office; create it once if missing; acknowledge it on the channel.

    ORDER_ID is the channel's id or the order number people see on the channel (the tablet's T00002).
    """
    config = _load(ctx)
    _known_channel(config, channel)

    def body() -> int:
        with _agent(config) as agent:
            if channel not in agent.engine.channels:
                _fail(f"channel {channel!r} is not enabled in the config", 2)
            remote_id = order_id
            try:
                message = agent.engine.replay_order(channel, order_id)
            except ChannelError:
                if agent.journal.order(channel, order_id) is not None:
                    raise
                found = agent.order_id_by_number(channel, order_id)  # not an id: the number people see?
                if found is None:
                    raise
                remote_id = found
                click.echo(f"{channel}: order number {order_id} is the order {remote_id}")
                message = agent.engine.replay_order(channel, remote_id)
            row = agent.journal.order(channel, remote_id)
        click.echo(f"{channel}/orders/{remote_id}: {message}")
        return 0 if row is not None and row.state in ("acknowledged", "created", "cancelled") else 1

    _guard(body)


@replay.command("product")
@click.argument("code")
@click.option("--channel", help="Only this channel (default: every enabled channel with the products flow).")
@click.pass_context
def replay_product(ctx: click.Context, code: str, channel: str | None) -> None:
    """Read the product from the back office and send it to the channels now, changed or not."""
    config = _load(ctx)

    def body() -> int:
        with _agent(config) as agent:
            steps = agent.steps(channel=channel, flows=["products"])
            if not steps:
                _fail(f"the products flow is not enabled on {channel or 'any channel'}", 2)
            product = agent.backoffice.lookup("products", code=code)
            if product is None:
                _fail(f"the back office has no product {code!r}", 1)
            failed = 0
            for step in steps:
                message = agent.engine.replay_product(step.channel, product)
                failed += message.startswith(("refused", "quarantined"))
                click.echo(f"{step.channel}/products/{code}: {message}")
        return 1 if failed else 0

    _guard(body)


@main.command()
@click.option("--channel", required=True)
@click.option("--entity", required=True, type=click.Choice(
    list(entities.CATALOGUE)))
@click.option("--show", default=20, show_default=True, help="How many differing keys of each kind to print.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def reconcile(ctx: click.Context, channel: str, entity: str, show: int, as_json: bool) -> None:
    """Compare the back office with what the channel holds; exit 1 if they differ. Changes nothing."""
    config = _load(ctx)
    _known_channel(config, channel)

    def body() -> int:
        from syncagent.reconcile import reconcile as compare
        from syncagent.report import dumps, print_reconciliation

        with _read_only_agent(config) as agent:
            if channel not in agent.engine.channels:
                _fail(f"channel {channel!r} is not enabled in the config", 2)
            result = compare(agent.engine, channel, entity, show=show)
        click.echo(dumps(result.as_json())) if as_json else print_reconciliation(result)
        return 1 if result.differs else 0

    _guard(body)


@main.group()
def quarantine() -> None:
    """Records that could not be applied, with the reason: list, show, retry, drop."""


def _open_journal(config: Any, *, lock: bool) -> Any:
    from syncagent.journal import Journal

    if not config.journal.exists():
        _fail(f"no journal at {config.journal} yet: run `syncagent run --once` first", 1)
    return Journal(config.journal, lock=lock)


@quarantine.command("list")
@click.option("--channel", help="Only this channel.")
@click.option("--all", "show_all", is_flag=True, help="Also released and dropped records.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def quarantine_list(ctx: click.Context, channel: str | None, show_all: bool, as_json: bool) -> None:
    """One line per quarantined record: id, where, key, reason."""
    config = _load(ctx)

    def body() -> int:
        from rich.table import Table

        from syncagent.report import dumps, make_console, when

        with _open_journal(config, lock=False) as journal:
            rows = journal.quarantined(channel, state=None if show_all else "open")
        if as_json:
            click.echo(dumps([{k: getattr(r, k) for k in r.__slots__ if k != "payload"} for r in rows]))
            return 0
        table = Table(title=f"quarantine ({len(rows)} records)")
        for column in ("id", "channel", "entity", "key", "state", "reason", "first seen", "attempts"):
            table.add_column(column)
        for r in rows:
            table.add_row(str(r.id), r.channel, r.entity, r.key, r.state, f"{r.reason_code}: {r.reason}",
                          when(r.first_seen), str(r.attempts))
        make_console().print(table)
        return 0

    _guard(body)


def _one(journal: Any, row_id: int) -> Any:
    rows = journal.quarantined(state=None, row_id=row_id)
    if not rows:
        _fail(f"no quarantined record with id {row_id} (see `syncagent quarantine list --all`)", 1)
    return rows[0]


@quarantine.command("show")
@click.argument("row_id", type=int)
@click.pass_context
def quarantine_show(ctx: click.Context, row_id: int) -> None:
    """The reason, the payload and when the record was seen."""
    config = _load(ctx)

    def body() -> int:
        from syncagent.report import dumps

        with _open_journal(config, lock=False) as journal:
            row = _one(journal, row_id)
        click.echo(f"id:          {row.id}\nchannel:     {row.channel}\nentity:      {row.entity}\nkey:         {row.key}")
        click.echo(f"state:       {row.state}\nreason:      {row.reason_code}: {row.reason}")
        click.echo(f"first seen:  {row.first_seen}\nlast seen:   {row.last_seen}\nattempts:    {row.attempts}")
        if row.closed_by:
            click.echo(f"closed by:   {row.closed_by} ({row.close_reason})")
        click.echo("payload:\n" + dumps(row.payload))
        return 0

    _guard(body)


@quarantine.command("retry")
@click.argument("row_ids", type=int, nargs=-1)
@click.option("--all", "retry_all", is_flag=True, help="Every open record (of --channel, if given).")
@click.option("--channel", help="With --all: only this channel.")
@click.pass_context
def quarantine_retry(ctx: click.Context, row_ids: tuple[int, ...], retry_all: bool, channel: str | None) -> None:
    """Re-apply quarantined records now; exit 1 if any is still refused."""
    config = _load(ctx)
    if not row_ids and not retry_all:
        _fail("give record ids or --all", 2)

    def body() -> int:
        failed = 0
        with _agent(config) as agent:
            journal = agent.journal
            rows = journal.quarantined(channel) if retry_all else [_one(journal, i) for i in row_ids]
            for row in rows:
                if row.state != "open":
                    click.echo(f"{row.id}: {row.state}, nothing to retry")
                    continue
                if row.channel not in agent.engine.channels:
                    click.echo(f"{row.id}: channel {row.channel} is not enabled in the config")
                    failed += 1
                    continue
                try:
                    applied, message = agent.engine.retry(row.channel, row.entity, row.key)
                except SyncAgentError as exc:
                    applied, message = False, str(exc)
                failed += not applied
                click.echo(f"{row.id} {row.channel}/{row.entity}/{row.key}: {message}")
        return 1 if failed else 0

    _guard(body)


@quarantine.command("drop")
@click.argument("row_ids", type=int, nargs=-1, required=True)
@click.option("--reason", required=True, help="Why it is dropped (kept in the journal).")
@click.option("--by", "by", envvar="USER", default="operator", show_default="$USER", help="Who drops it.")
@click.pass_context
def quarantine_drop(ctx: click.Context, row_ids: tuple[int, ...], reason: str, by: str) -> None:
    """Give up on records for good, recording who and why."""
    config = _load(ctx)

    def body() -> int:
        # no agent lock, like `mapping import`: SQLite serialises the writes, so a drop works beside the daemon
        with _open_journal(config, lock=False) as journal:
            for row_id in row_ids:
                row = _one(journal, row_id)
                with journal.transaction():
                    dropped = journal.drop_quarantine(row.channel, row.entity, row.key, by, reason)
                click.echo(f"{row_id}: {'dropped' if dropped else row.state + ', unchanged'}")
        return 0

    _guard(body)



@main.command()
@click.option("--json", "as_json", is_flag=True, help="The documented machine-readable shape (docs/cli.md).")
@click.option("--offline", is_flag=True, help="Skip the endpoint and clock checks (no network).")
@click.pass_context
def doctor(ctx: click.Context, as_json: bool, offline: bool) -> None:
    """Check config, endpoints, credentials, clocks, the journal and the quarantine; say how to fix each."""
    import dataclasses

    from syncagent import doctor as checks
    from syncagent.logs import setup_logging
    from syncagent.report import dumps

    config, findings = checks.check_config(ctx.obj["config_path"])
    if config is not None:
        # retries and the like would clutter the findings; errors still show, every secret masked
        quiet = dataclasses.replace(config.log, level="debug" if ctx.obj["verbose"] else "error")
        setup_logging(quiet, config.secrets, verbose=ctx.obj["verbose"])
        findings += checks.diagnose(config, online=not offline)
    code = checks.exit_code(findings, config_ok=config is not None)
    if as_json:
        click.echo(dumps(checks.to_json(findings, code)))
    else:
        marks = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}
        for f in findings:
            click.echo(f"[{marks.get(f.status, f.status)}] {f.check}: {f.message}")
            if f.status != "ok" and f.fix:
                click.echo(f"       fix: {f.fix}")
        counts = checks.to_json(findings, code)["summary"]
        click.echo(f"{counts['ok']} ok, {counts['warn']} warning(s), {counts['fail']} failure(s)")
    sys.exit(code)


if __name__ == "__main__":
    main()
