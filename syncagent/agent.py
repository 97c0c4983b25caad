"""Assembles one agent from a config: the journal, the connectors and the engine.

The CLI and the daemon both go through `Agent`; it knows which steps exist, in which order
they run, and which are switched off, so that ordering rules live in one place.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from syncagent.config import BackofficeConfig, CarrierConfig, ChannelConfig, Config
from syncagent.connectors import registry
from syncagent.connectors.base import Connector
from syncagent.engine import BACKOFFICE_REFUSED, CarrierSetup, ChannelSetup, Engine, StepResult
from syncagent.engine.shared import Turns
from syncagent.errors import ConfigError, JournalError, JournalFull
from syncagent.journal import Journal, journal_failure
from syncagent.model import ALL_FLOWS, CATALOGUE_ENTITIES, utcnow

if TYPE_CHECKING:
    from syncagent.alerts import Alerter

log = logging.getLogger("syncagent.agent")

# catalogue flows whose feed is read from a cursor: a pass over all of it reads as much as the last one did
WHOLE_FEED_FLOWS = frozenset({"groups", "payment-methods", "sellers", "products", "prices", "stock"})
# when several steps are due, these go first (an order waiting costs more than a stale price)
FLOW_PRIORITY = {name: i for i, name in enumerate(ALL_FLOWS)}


@dataclass(frozen=True)
class Step:
    channel: str
    flow: str
    every: float
    # a catalogue flow the config turned around (the channel is its source) goes before the orders: an
    # order may name a product that only this catalogue brings into the back office
    lead: bool = False

    @property
    def priority(self) -> int:
        return FLOW_PRIORITY.get(self.flow, 99) - (100 if self.lead else 0)


def cap_malloc_arenas(arenas: int = 2) -> None:
    """Keep the process's memory flat: glibc gives each thread a malloc arena that never shrinks.

    The engine reads ahead and sends in two helper threads; without a cap each grows an arena of
    its own and the peak resident size creeps up with the catalogue. Two arenas are plenty for
    three threads that mostly wait on sockets. No-op where there is no glibc.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name:
        return
    try:
        ctypes.CDLL(name).mallopt(-8, arenas)  # -8: M_ARENA_MAX
    except (OSError, AttributeError):
        pass


def build_connector(cfg: ChannelConfig | BackofficeConfig | CarrierConfig, *,
                    sleep: Callable[[float], None] | None = None, clock: Callable[[], datetime] = utcnow,
                    journal: Journal | None = None) -> Connector:
    """A connector from its config section; with `journal`, the channel's state is kept there."""
    cls: type[Connector] = registry.load(cfg.type)
    state = journal.state_of(getattr(cfg, "name", None) or "backoffice") if journal is not None else None
    return cls.from_config(cfg, sleep=sleep, clock=clock, state=state)


def channel_setup(cfg: ChannelConfig, connector: Connector, settle_seconds: float = 0.0) -> ChannelSetup:
    orders = cfg.flow("orders")
    statuses = orders.options.get("statuses") if orders is not None else None
    return ChannelSetup(
        name=cfg.name,
        connector=connector,
        warehouses=tuple(cfg.warehouses),
        order_warehouse=cfg.order_warehouse,
        safety_stock=cfg.safety_stock,
        shadow=cfg.shadow,
        batch_size={f.name: f.batch_size for f in cfg.flows},
        directions={f.name: f.direction for f in cfg.flows},
        order_statuses=tuple(statuses) if statuses else None,
        settle_seconds=settle_seconds,
        sku_mapping=cfg.sku_mapping,
        adopt=cfg.adopt,
        config_digest=hashlib.sha256(repr(cfg).encode("utf-8", "surrogatepass")).hexdigest(),
    )


class Agent:
    """One running agent: owns the journal lock for as long as it lives."""

    def __init__(self, config: Config, *, journal: Journal | None = None,
                 sleep: Callable[[float], None] | None = None, clock: Callable[[], datetime] = utcnow) -> None:
        self.config = config
        self.journal = journal or Journal(config.journal)
        self._sleep, self._clock = sleep, clock
        try:
            self.backoffice, setups = self._connect(config)
        except Exception:
            self.journal.close()
            raise
        try:
            carriers = self._carriers(config)
        except Exception:
            _close_all(self.backoffice, setups, {})
            self.journal.close()
            raise
        self.engine = Engine(self.journal, self.backoffice, setups, clock=clock, carriers=carriers)
        self.alerter = self._alerter(config)
        self._whole_pass: tuple[str, str] | None = None  # the step in progress, when it reads its whole feed
        self.stop_requested: Callable[[], bool] = lambda: False  # the command line's Ctrl-C: start no more steps

    def _connect(self, config: Config) -> tuple[Connector, dict[str, ChannelSetup]]:
        """The back office and one setup per enabled channel; nothing is left open on failure."""
        sleep, clock = self._sleep, self._clock
        backoffice = build_connector(config.backoffice, sleep=sleep, clock=clock, journal=self.journal)
        setups: dict[str, ChannelSetup] = {}
        try:
            # a POST whose answer was lost can run at most this long in the back office
            http = config.backoffice.http
            settle = http.connect_timeout + http.read_timeout
            for channel in config.channels:
                if channel.enabled:
                    connector = build_connector(channel, sleep=sleep, clock=clock, journal=self.journal)
                    setups[channel.name] = channel_setup(channel, connector, settle)
        except Exception:
            for setup in setups.values():
                setup.connector.close()
            backoffice.close()
            raise
        return backoffice, setups

    def _carriers(self, config: Config) -> dict[str, CarrierSetup]:
        """One connector per configured carrier, shared by every channel's deliveries flow (one rate limit)."""
        built: dict[str, CarrierSetup] = {}
        try:
            for cfg in config.carriers:
                connector = build_connector(cfg, sleep=self._sleep, clock=self._clock)
                built[cfg.name] = CarrierSetup(cfg.name, connector, frozenset(n.strip().casefold() for n in cfg.names),
                                               silent_after=cfg.silent_after, poll_every=cfg.poll_every)
        except Exception:
            for setup in built.values():
                setup.connector.close()
            raise
        return built

    def _alerter(self, config: Config) -> Alerter | None:
        if config.alerts is None:
            return None
        from syncagent.alerts import Alerter

        return Alerter(config.alerts, self.journal, clock=self._clock, secrets=config.secrets)

    def reload(self, config: Config) -> None:
        """Swap in a new config (SIGHUP) between steps: new connectors and engine, same journal and lock.

        Connectors are built first, so a failure leaves the running config untouched. The journal
        path cannot change without a restart (the lock belongs to the open one).
        """
        if config.journal.resolve() != self.config.journal.resolve():
            log.warning("the journal path changed to %s: it takes effect at the next restart; still using %s",
                        config.journal, self.journal.path)
        backoffice, setups = self._connect(config)
        try:
            carriers = self._carriers(config)
        except Exception:
            _close_all(backoffice, setups, {})
            raise
        old_engine, old_backoffice = self.engine, self.backoffice
        self.engine = Engine(self.journal, backoffice, setups, clock=self._clock, carriers=carriers)
        self.engine.should_stop = old_engine.should_stop
        if config.alerts != self.config.alerts:
            alerter = self._alerter(config)
            if alerter is not None and self.alerter is not None:
                alerter.failing_cycles = self.alerter.failing_cycles  # "failing N cycles" counts on
            self.alerter = alerter
        self.backoffice, self.config = backoffice, config
        _close_all(old_backoffice, old_engine.channels, old_engine.carriers)

    def alert(self, results: list[StepResult]) -> None:
        """After a cycle: one e-mail per new problem, one per recovery (see syncagent.alerts)."""
        if self.alerter is None:
            return
        try:
            self.alerter.evaluate(results)
        except JournalError:
            raise  # the journal itself is gone or full: that stops the agent, with its own message
        except Exception as exc:  # noqa: BLE001 - a failing alert never stops the sync it reports on
            log.error("alerts could not be evaluated: %s: %s", type(exc).__name__, exc)

    def steps(self, *, channel: str | None = None, flows: Iterable[str] | None = None) -> list[Step]:
        """Enabled steps, in run order: by flow priority, then channel order in the file."""
        wanted = set(flows) if flows is not None else None
        if channel is not None:
            self.config.channel(channel)  # raises ConfigError naming the known channels
        found = []
        for cfg in self.config.channels:
            if not cfg.enabled or (channel is not None and cfg.name != channel):
                continue
            for flow in cfg.flows:
                if flow.enabled and (wanted is None or flow.name in wanted):
                    lead = flow.direction == "pull" and flow.name in CATALOGUE_ENTITIES and flow.name != "customers"
                    found.append(Step(cfg.name, flow.name, flow.every, lead))
        return sorted(found, key=lambda s: s.priority)

    def run_steps(self, steps: Iterable[Step], *, full: bool = False, direction: str | None = None,
                  should_stop: Callable[[], bool] = lambda: False, new_cycle: bool = True) -> list[StepResult]:
        """Run steps in order; a step of a channel (or of any channel, for the back office) whose
        credentials were rejected earlier in the cycle is skipped.

        Catalogue steps of one flow on several channels, next to each other in the run order, run side
        by side (`side_by_side`): the back office's pages are read once and handed to each of them.
        `new_cycle`: these steps are a cycle of their own (pages read are shared among them only); the daemon
        says itself when its cycles begin and end.
        """
        if new_cycle:
            with self.engine.shared.cycle():
                return self.run_steps(steps, full=full, direction=direction, should_stop=should_stop,
                                      new_cycle=False)
        results: list[StepResult] = []
        auth_failed: set[str] = set()
        backoffice_refused = False
        for group in self._groups(list(steps), direction):
            if should_stop() or self.stop_requested():
                break
            ready: list[Step] = []
            for step in group:
                if step.channel in auth_failed or backoffice_refused:
                    whose = "the back office's" if backoffice_refused else f"{step.channel}'s"
                    results.append(StepResult(step.channel, step.flow, status="skipped",
                                              error=f"{whose} credentials were rejected earlier in this cycle"))
                    log.info("%s/%s: skipped: %s", step.channel, step.flow, results[-1].error)
                else:
                    ready.append(step)
            if len(ready) > 1:
                done = self._side_by_side(ready, full, direction, results)
            else:
                done = [self._run_one(step, full, direction, results) for step in ready]
            for result in done:
                if result.status == "auth_failed":
                    auth_failed.add(result.channel)
                backoffice_refused = backoffice_refused or (result.error or "").startswith(BACKOFFICE_REFUSED)
                results.append(result)
        return results

    def begin_cycle(self) -> None:
        """Steps run from now on share the back office pages they read (the daemon's steps run back to back)."""
        self.engine.shared.begin()

    def end_cycle(self) -> None:
        """The cycle is over: no page read in it is handed out again."""
        self.engine.shared.end()

    def _groups(self, steps: list[Step], direction: str | None) -> list[list[Step]]:
        """The steps in run order, those that may run side by side together (a flow read from the back office
        on several channels, next to each other); every other step on its own."""
        groups: list[list[Step]] = []
        for step in steps:
            last = groups[-1] if groups else None
            if (last is not None and last[0].flow == step.flow and self._shares_feed(step, direction)
                    and self._shares_feed(last[0], direction) and all(s.channel != step.channel for s in last)):
                last.append(step)
            else:
                groups.append([step])
        return groups

    def shares_feed(self, step: Step) -> bool:
        """Whether `step` reads the back office feed that the same flow of other channels reads (the daemon
        runs such due steps side by side)."""
        return self._shares_feed(step, None)

    def _shares_feed(self, step: Step, direction: str | None) -> bool:
        if step.flow not in WHOLE_FEED_FLOWS:
            return False
        configured = self.engine.channels[step.channel].directions.get(step.flow) if step.channel in \
            self.engine.channels else None
        return (direction or configured or "push") != "pull"  # a flow turned around reads the channel

    def _run_one(self, step: Step, full: bool, direction: str | None, results: list[StepResult], *,
                 note: bool = True) -> StepResult:
        """One step; a journal failure (not the network's) stops the agent with its own message."""
        started = time.monotonic()
        try:
            if note:
                self._note_whole_pass(step, full)
            # the notifications that came for this step so far are done once it ran (a later one waits on)
            woken = self.journal.notifications_through(step.channel, step.flow) if self.config.listen else 0
            result = self.engine.run_step(step.channel, step.flow, full=full, direction=direction)
            if woken and result.status in ("ok", "quarantined"):
                self.journal.finish_notifications(step.channel, step.flow, woken)
        except (sqlite3.Error, OSError) as exc:  # the journal, not the network: the network's are ChannelErrors
            failure = journal_failure(exc, self.journal.path)
            if failure is None:
                raise
            results.append(StepResult(step.channel, step.flow, status="failed", error=str(failure)))
            if isinstance(failure, JournalFull):
                failure.results = results  # the summary so far: what each finished step did
            raise failure from None
        log_step(result, time.monotonic() - started)
        return result

    def _side_by_side(self, steps: list[Step], full: bool, direction: str | None,
                      results: list[StepResult]) -> list[StepResult]:
        """Steps of one flow on several channels, each in a thread of its own, one at a time on the journal.

        Each keeps its own cursor, journal rows and pace: one waiting on its channel lets the others
        work, one that fails ends alone. The back office's pages they share are read once.
        """
        turns = Turns(self.journal.in_transaction)
        done: dict[int, StepResult] = {}
        errors: list[BaseException] = []
        self._whole_pass = None

        def work(i: int, step: Step) -> None:
            with turns.hold():
                try:
                    done[i] = self._run_one(step, full, direction, results, note=False)
                except BaseException as exc:  # noqa: BLE001 - raised again by the caller's thread
                    errors.append(exc)

        threads = [threading.Thread(target=work, args=(i, step), name=f"syncagent-step-{step.channel}", daemon=True)
                   for i, step in enumerate(steps)]
        self.engine.shared.takers = len(steps)  # a page all of them took is not kept: memory stays flat
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            self.engine.shared.takers = 0
        if errors:
            raise errors[0]
        return [done[i] for i in sorted(done)]

    def _note_whole_pass(self, step: Step, full: bool) -> None:
        """Remember whether this step reads its whole feed (--full, or no cursor yet): its length is then known."""
        whole = step.flow in WHOLE_FEED_FLOWS and (full or self.journal.cursor(step.channel, step.flow) is None)
        self._whole_pass = (step.channel, step.flow) if whole else None

    def expected_reads(self, channel: str, flow: str) -> int | None:
        """How many records the running step will read, where that is known: a pass over the whole feed
        reads what the largest earlier complete run read. None otherwise (a feed does not say its length)."""
        if self._whole_pass != (channel, flow):
            return None
        return self.journal.most_read(channel, flow)

    def order_id_by_number(self, channel: str, number: str) -> str | None:
        """The channel's id of the order people know by `number` (the tablet's "T00002"), from its feed.

        Asked only once the number is known not to be an id: a queue-like feed (VTEX) hides what it
        hands out for a while, so it is not read twice for one order.
        """
        wanted = number.strip().casefold()
        for page in self.engine.channels[channel].connector.pull("orders", None):
            for record in page.records:
                found = getattr(record, "number", None)
                if found is not None and str(found).strip().casefold() == wanted:
                    return str(record.remote_id)
        return None

    def run_once(self) -> list[StepResult]:
        results = self.run_steps(self.steps())
        self.alert(results)
        return results

    def run_entity(self, entity: str, *, channel: str | None = None, full: bool = False,
                   direction: str | None = None) -> list[StepResult]:
        steps = self.steps(channel=channel, flows=[entity])
        if not steps:
            where = f"channel {channel!r}" if channel else "any enabled channel"
            raise ConfigError(f"the flow {entity!r} is not enabled on {where}")
        return self.run_steps(steps, full=full, direction=direction)

    def close(self) -> None:
        _close_all(self.backoffice, self.engine.channels, self.engine.carriers)
        self.journal.close()

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _close_all(backoffice: Connector, channels: dict[str, ChannelSetup], carriers: dict[str, CarrierSetup]) -> None:
    for setup in (*channels.values(), *carriers.values()):
        setup.connector.close()
    backoffice.close()


def log_step(r: StepResult, seconds: float) -> None:
    """One info line per step, with its counts (a daemon at `level: info` shows what it does)."""
    level = logging.INFO if r.status in ("ok", "quarantined", "interrupted") else logging.WARNING
    log.log(level, "%s/%s: %s in %.1f s: read %d, sent %d, unchanged %d, quarantined %d%s", r.channel, r.flow,
            r.status, seconds, r.read, r.sent, r.unchanged, r.quarantined, f" ({r.error})" if r.error else "")


def exit_code(results: Iterable[StepResult]) -> int:
    """0 when every step was clean; 1 when a record was quarantined or a step failed."""
    return 0 if all(r.status == "ok" for r in results) else 1
