"""Assembles one agent from a config: the journal, the connectors and the engine.

The CLI and the daemon both go through `Agent`; it knows which steps exist, in which order
they run, and which are switched off, so that ordering rules live in one place.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from syncagent.config import BackofficeConfig, ChannelConfig, Config
from syncagent.connectors import registry
from syncagent.connectors.base import Connector
from syncagent.engine import ChannelSetup, Engine, StepResult
from syncagent.errors import ConfigError
from syncagent.journal import Journal
from syncagent.model import ALL_FLOWS, utcnow

if TYPE_CHECKING:
    from syncagent.alerts import Alerter

log = logging.getLogger("syncagent.agent")

# when several steps are due, these go first (an order waiting costs more than a stale price)
FLOW_PRIORITY = {name: i for i, name in enumerate(ALL_FLOWS)}


@dataclass(frozen=True)
class Step:
    channel: str
    flow: str
    every: float

    @property
    def priority(self) -> int:
        return FLOW_PRIORITY.get(self.flow, 99)


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


def build_connector(cfg: ChannelConfig | BackofficeConfig, *, sleep: Callable[[float], None] | None = None,
                    clock: Callable[[], datetime] = utcnow) -> Connector:
    cls: type[Connector] = registry.load(cfg.type)
    return cls.from_config(cfg, sleep=sleep, clock=clock)


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
        self.engine = Engine(self.journal, self.backoffice, setups, clock=clock)
        self.alerter = self._alerter(config)

    def _connect(self, config: Config) -> tuple[Connector, dict[str, ChannelSetup]]:
        """The back office and one setup per enabled channel; nothing is left open on failure."""
        sleep, clock = self._sleep, self._clock
        backoffice = build_connector(config.backoffice, sleep=sleep, clock=clock)
        setups: dict[str, ChannelSetup] = {}
        try:
            # a POST whose answer was lost can run at most this long in the back office
            http = config.backoffice.http
            settle = http.connect_timeout + http.read_timeout
            for channel in config.channels:
                if channel.enabled:
                    connector = build_connector(channel, sleep=sleep, clock=clock)
                    setups[channel.name] = channel_setup(channel, connector, settle)
        except Exception:
            for setup in setups.values():
                setup.connector.close()
            backoffice.close()
            raise
        return backoffice, setups

    def _alerter(self, config: Config) -> Alerter | None:
        if config.alerts is None:
            return None
        from syncagent.alerts import Alerter

        return Alerter(config.alerts, self.journal, clock=self._clock)

    def reload(self, config: Config) -> None:
        """Swap in a new config (SIGHUP) between steps: new connectors and engine, same journal and lock.

        Connectors are built first, so a failure leaves the running config untouched. The journal
        path cannot change without a restart (the lock belongs to the open one).
        """
        if config.journal.resolve() != self.config.journal.resolve():
            log.warning("the journal path changed to %s: it takes effect at the next restart; still using %s",
                        config.journal, self.journal.path)
        backoffice, setups = self._connect(config)
        old_engine, old_backoffice = self.engine, self.backoffice
        self.engine = Engine(self.journal, backoffice, setups, clock=self._clock)
        self.engine.should_stop = old_engine.should_stop
        if config.alerts != self.config.alerts:
            alerter = self._alerter(config)
            if alerter is not None and self.alerter is not None:
                alerter.failing_cycles = self.alerter.failing_cycles  # "failing N cycles" counts on
            self.alerter = alerter
        self.backoffice, self.config = backoffice, config
        for setup in old_engine.channels.values():
            setup.connector.close()
        old_backoffice.close()

    def alert(self, results: list[StepResult]) -> None:
        """After a cycle: one e-mail per new problem, one per recovery (see syncagent.alerts)."""
        if self.alerter is not None:
            self.alerter.evaluate(results)

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
                    found.append(Step(cfg.name, flow.name, flow.every))
        return sorted(found, key=lambda s: s.priority)

    def run_steps(self, steps: Iterable[Step], *, full: bool = False, direction: str | None = None,
                  should_stop: Callable[[], bool] = lambda: False) -> list[StepResult]:
        results: list[StepResult] = []
        auth_failed: set[str] = set()
        for step in steps:
            if should_stop():
                break
            if step.channel in auth_failed:
                results.append(StepResult(step.channel, step.flow, status="skipped",
                                          error="credentials rejected earlier in this cycle"))
                continue
            result = self.engine.run_step(step.channel, step.flow, full=full, direction=direction)
            if result.status == "auth_failed":
                auth_failed.add(step.channel)
            results.append(result)
        return results

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
        for setup in self.engine.channels.values():
            setup.connector.close()
        self.backoffice.close()
        self.journal.close()

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def exit_code(results: Iterable[StepResult]) -> int:
    """0 when every step was clean; 1 when a record was quarantined or a step failed."""
    return 0 if all(r.status == "ok" for r in results) else 1
