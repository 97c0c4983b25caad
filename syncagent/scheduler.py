"""The daemon loop: every (channel, flow) on its own interval, fair time-slicing, signals, reload.

Built on `schedule`: one job per step. Rules, in the order the loop applies them:

* When several steps are due, they run in flow priority (orders and order events first), then
  in channel order of the file.
* A step never overlaps itself: one step runs at a time, a step already in progress is never
  started again, and a step that ran longer than its interval is not run back to back to "catch
  up": `schedule` counts its next run from when it finished, so it runs again at most once.
* Cooperative time-slicing: while a step runs, `engine.should_stop` answers True as soon as a
  step of *another* channel is due (or an intake step, orders / order-events, of the same
  channel, or a stop is requested). The engine checks it after each page it has recorded, so
  one slow channel delays the others by one page at most. The interrupted step is queued to
  run again right after the due steps, not a whole interval later; its cursor kept its place.
* SIGTERM/SIGINT: the step in progress stops after the page in hand (recorded), then the loop
  returns (exit 0). A request still in flight STOP_GRACE seconds later is cut (syncagent.http).
* SIGHUP: the config file is read again between steps. Valid: connectors and steps are
  rebuilt (intervals, enabled flags, channels added or removed) on the same journal and lock.
  Invalid: each problem is logged with file:line:key and the old config goes on running.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import FrameType

import schedule

from syncagent import entities, http
from syncagent.agent import Agent, Step
from syncagent.config import Config, load_config
from syncagent.engine import MAX_SETTLE_WAIT, StepResult
from syncagent.errors import ConfigError, SyncAgentError

log = logging.getLogger("syncagent.scheduler")

INTAKE_FLOWS = entities.INTAKE  # worth interrupting a catalogue push of the same channel
MIN_INTERVAL = 0.1  # seconds; the config accepts fractions, a busy loop it must not become
StepKey = tuple[str, str]


def _key(step: Step) -> StepKey:
    return (step.channel, step.flow)


class Daemon:
    """Runs an agent's steps until stopped. Single-threaded: signal handlers only set flags."""

    def __init__(self, agent: Agent, *, sleep: Callable[[float], None] = time.sleep,
                 on_result: Callable[[StepResult], None] | None = None,
                 config_path: str | Path | None = None,
                 load: Callable[[Path], Config] = load_config) -> None:
        self.agent = agent
        self.sleep = sleep
        self.on_result = on_result
        self.config_path = Path(config_path) if config_path is not None else Path(agent.config.path)
        self.load = load
        self.stopping = False
        self.running = False  # inside run(): a stop then also cuts the requests in flight
        self.reload_requested = False
        self.current: Step | None = None  # the step in progress, if any
        # steps that gave way to others, with when: each runs again right after the steps due by then
        self.resume: dict[StepKey, dt.datetime] = {}
        self.reloads = 0  # successful reloads (for tests and logs)
        self.after_reload: Callable[[], None] | None = None  # e.g. the notification endpoint learns the new channels
        # notifications (from the endpoint's threads) wake their step: due now, and the loop's nap cut short
        self._wakes: collections.deque[StepKey] = collections.deque(maxlen=10_000)
        self._woken = threading.Event()
        self._woken_during: set[StepKey] = set()  # woken while it ran
        self._yielded = False
        self.scheduler = schedule.Scheduler()
        self.jobs: dict[StepKey, schedule.Job] = {}
        self.steps: dict[schedule.Job, Step] = {}
        self._attach()
        self._build(agent.steps(), due_now=True)

    # -- set-up ---------------------------------------------------------------------------------
    def _attach(self) -> None:
        """Hook our stop test into the engine (again after a reload: the agent may have a new engine)."""
        self.agent.engine.should_stop = self.should_stop
        self.agent.engine.settle_wait_limit = MAX_SETTLE_WAIT  # a lost answer left unsettled waits for the next cycle

    def _build(self, steps: Iterable[Step], *, due_now: bool) -> None:
        """One job per step. Kept steps keep their timing; new or changed ones are due now."""
        old = {key: (self.steps[job], job) for key, job in self.jobs.items()}
        self.scheduler.clear()
        self.jobs, self.steps = {}, {}
        now = dt.datetime.now()
        for step in steps:
            job = self.scheduler.every(max(MIN_INTERVAL, float(step.every))).seconds.do(self._run, step)
            previous = old.get(_key(step))
            if due_now or previous is None or previous[0].every != step.every:
                job.next_run = now
            else:
                job.last_run, job.next_run = previous[1].last_run, previous[1].next_run
            self.jobs[_key(step)] = job
            self.steps[job] = step
        self.resume = {key: since for key, since in self.resume.items() if key in self.jobs}

    # -- notifications --------------------------------------------------------------------------
    def wake(self, channel: str, flow: str) -> None:
        """A notification came for (channel, flow): its step is due at once. Safe from any thread."""
        self._wakes.append((channel, flow))
        self._woken.set()

    def _apply_wakes(self) -> None:
        """The steps woken since the last look are due now (each once, however many notifications came)."""
        now = dt.datetime.now()
        while self._wakes:
            key = self._wakes.popleft()
            if self.current is not None and key == _key(self.current):
                self._woken_during.add(key)  # it may have read its feed already: it runs once more after
                continue
            job = self.jobs.get(key)
            if job is not None and (job.next_run is None or job.next_run > now):
                job.next_run = now
                log.debug("%s/%s woken by a notification", *key)

    def _nap(self, seconds: float) -> None:
        """Wait for the next due step; a notification cuts the wait short (unless a test gave its own sleep)."""
        if self.sleep is time.sleep:
            self._woken.wait(seconds)
        else:
            self.sleep(seconds)
        self._woken.clear()

    # -- signals --------------------------------------------------------------------------------
    def request_stop(self, signum: int | None = None, frame: FrameType | None = None) -> None:
        if not self.stopping:
            log.info("stop requested; finishing the page in progress")
        self.stopping = True
        # a request in flight gets a few seconds to finish, then is cut: a server dripping its answer
        # one byte a second cannot hold the stop back (process-wide, so only while this loop runs)
        if self.running:
            http.stop_requests()

    def request_reload(self, signum: int | None = None, frame: FrameType | None = None) -> None:
        """SIGHUP: only a flag; the file is read between steps, never in the middle of one."""
        self.reload_requested = True

    # -- fairness -------------------------------------------------------------------------------
    def _due(self) -> list[schedule.Job]:
        """Due jobs, not the one in progress, in run order (priority, then channel order)."""
        order = {job: i for i, job in enumerate(self.jobs.values())}
        due = [job for job in self.jobs.values() if job.should_run and self.steps[job] is not self.current]
        return sorted(due, key=lambda j: (self.steps[j].priority, order[j]))

    def _waiting_for(self, current: Step) -> Step | None:
        """A step that should get its turn before `current` goes on.

        A due step of another channel, or a due intake step of the same channel, always does.
        A step waiting to resume interrupts only a step of lower priority (an orders step that gave
        way goes on before a catalogue push runs to its end); two long pushes of the same priority
        do not hand the turn back and forth forever.
        """
        for step in (self.steps[job] for job in self._due()):
            if step.channel != current.channel:
                return step
            if step.flow in INTAKE_FLOWS and current.flow not in INTAKE_FLOWS:
                return step
        for key in self.resume:
            step = self.steps[self.jobs[key]]
            if step.channel != current.channel and step.priority < current.priority:
                return step
        return None

    def should_stop(self) -> bool:
        """Asked by the engine after each recorded page: stop now, or yield to a waiting step."""
        if self.stopping:
            return True
        self._apply_wakes()
        current = self.current
        if current is None:
            return False
        other = self._waiting_for(current)
        if other is not None:
            log.info("%s/%s yields to %s/%s after a recorded page", current.channel, current.flow,
                     other.channel, other.flow)
            self._yielded = True
            return True
        return False

    # -- running --------------------------------------------------------------------------------
    def _run(self, step: Step) -> None:
        """Run one step (the job's body). A step already in progress is never started again."""
        if self.current is not None:
            log.warning("%s/%s not started: %s/%s is still in progress", step.channel, step.flow,
                        self.current.channel, self.current.flow)
            return
        key = _key(step)
        self.resume.pop(key, None)  # this run is the resumption: at most one run when due
        mates = self._mates(step)
        for mate in mates:  # they run now, beside this one: their next run counts from now, as this one's
            job = self.jobs[_key(mate)]
            job.last_run = dt.datetime.now()
            job._schedule_next_run()  # noqa: SLF001 - what `schedule` does after a job ran
            self.resume.pop(_key(mate), None)
        self.current, self._yielded = step, False
        try:
            self.agent.begin_cycle()  # the steps run back to back share the back office's pages
            results = self.agent.run_steps([step, *mates], new_cycle=False)
        finally:
            self.current = None
        yielded = self._yielded and not self.stopping
        for done in (step, *mates):
            if yielded and _key(done) in self.jobs:
                # a step that gave way at its very last page runs once more: it re-reads that page (its
                # cursor stays at a feed's end) and sends nothing unchanged
                self.resume[_key(done)] = dt.datetime.now()
        self.agent.alert(results)
        for result in results:
            if yielded:
                result.details["yielded"] = 1
            if self.on_result:
                self.on_result(result)

    def _mates(self, step: Step) -> list[Step]:
        """Steps of the same flow on other channels, due or waiting to resume, that read the back office feed
        as `step` does: they run side by side with it, each page of that feed read once for all of them."""
        shares = getattr(self.agent, "shares_feed", None)
        if shares is None or not shares(step):
            return []
        waiting = [self.steps[job] for job in self._due()] + [self.steps[self.jobs[k]] for k in self.resume]
        mates: dict[StepKey, Step] = {}
        for other in waiting:
            if other.flow == step.flow and other.channel != step.channel and shares(other):
                mates.setdefault(_key(other), other)
        return list(mates.values())

    def _next_job(self) -> schedule.Job | None:
        """The next step: due ones by priority, but an interrupted step before those due after it gave way."""
        due = self._due()
        if self.resume:
            key, since = next(iter(self.resume.items()))
            ahead = [job for job in due if job.next_run <= since]
            return ahead[0] if ahead else self.jobs[key]
        return due[0] if due else None

    def run(self, *, max_cycles: int | None = None) -> None:
        """Run every step once now, then each on its interval until a stop is requested."""
        handlers = {signal.SIGTERM: self.request_stop, signal.SIGINT: self.request_stop,
                    signal.SIGHUP: self.request_reload}
        previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
        self.running = True
        try:
            log.info("syncagent daemon started: %d steps", len(self.jobs))
            cycles = 0
            while not self.stopping and (max_cycles is None or cycles < max_cycles):
                if self.reload_requested:
                    self.reload()
                self._apply_wakes()
                job = self._next_job()
                if job is not None:
                    job.run()
                    self._wakes.extend(self._woken_during)  # `schedule` set their next run: due again now
                    self._woken_during.clear()
                    continue
                cycles += 1
                self.agent.end_cycle()  # nothing due: the cycle ended; the next one reads anew
                idle = self.scheduler.idle_seconds
                self._nap(min(1.0, max(0.05, idle if idle is not None else 1.0)))
            log.info("syncagent daemon stopped")
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.running = False
            http.resume_requests()

    # -- reload ---------------------------------------------------------------------------------
    def reload(self) -> bool:
        """Read the config file again; apply it if valid, else log each problem and keep the old one."""
        self.reload_requested = False
        try:
            config = self.load(self.config_path)
        except ConfigError as exc:
            problems = getattr(exc, "problems", None) or [exc]
            for problem in problems:
                log.error("config reload refused: %s", problem)
            log.error("config reload refused: %d problem(s) in %s; still running with the previous configuration",
                      len(problems), self.config_path)
            return False
        previous = self.agent.config
        try:
            self.agent.reload(config)
        except Exception as exc:  # noqa: BLE001 - whatever breaks a rebuild, the running config goes on
            text = str(exc) if isinstance(exc, SyncAgentError) else f"{type(exc).__name__}: {exc}"
            log.error("config reload refused: %s; still running with the previous configuration", text)
            return False
        root = logging.getLogger("syncagent")
        if root.handlers:  # logging was set up (the CLI): mask the new secrets, apply a new level or format
            from syncagent.logs import setup_logging

            verbose = root.level == logging.DEBUG and previous.log.level != "debug"
            setup_logging(config.log, (*previous.secrets, *config.secrets), verbose=verbose)
        self._attach()
        self._build(self.agent.steps(), due_now=False)
        if self.after_reload is not None:
            self.after_reload()
        self.reloads += 1
        log.warning("configuration reloaded from %s: %d steps", self.config_path, len(self.jobs))
        return True
