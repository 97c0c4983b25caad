"""The daemon loop: every (channel, flow) on its own interval, signals, a clean stop.

Built on `schedule`: one job per step. When several are due at once, the loop runs them in
flow priority (orders and order events first). SIGTERM/SIGINT let the step in progress finish
and record its work, then the loop returns (exit 0).
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from types import FrameType

import schedule

from syncagent.agent import Agent, Step
from syncagent.engine import StepResult

log = logging.getLogger("syncagent.scheduler")


class Daemon:
    def __init__(self, agent: Agent, *, sleep: Callable[[float], None] = time.sleep,
                 on_result: Callable[[StepResult], None] | None = None) -> None:
        self.agent = agent
        self.sleep = sleep
        self.on_result = on_result
        self.stopping = False
        agent.engine.should_stop = lambda: self.stopping  # a long step stops after its current page
        self.scheduler = schedule.Scheduler()
        self.steps: dict[schedule.Job, Step] = {}
        for step in agent.steps():
            job = self.scheduler.every(max(1, round(step.every))).seconds.do(self._run, step)
            self.steps[job] = step

    def request_stop(self, signum: int | None = None, frame: FrameType | None = None) -> None:
        if not self.stopping:
            log.info("stop requested; finishing the step in progress")
        self.stopping = True

    def _run(self, step: Step) -> None:
        results = self.agent.run_steps([step])
        self.agent.alert(results)
        for result in results:
            if self.on_result:
                self.on_result(result)

    def run(self, *, max_cycles: int | None = None) -> None:
        """Run every step once now, then each on its interval until a stop is requested."""
        previous = {sig: signal.signal(sig, self.request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            log.info("syncagent daemon started: %d steps", len(self.steps))
            for job in sorted(self.steps, key=lambda j: self.steps[j].priority):
                if self.stopping:
                    break
                job.run()
            cycles = 0
            while not self.stopping and (max_cycles is None or cycles < max_cycles):
                due = sorted((j for j in self.scheduler.jobs if j.should_run), key=lambda j: self.steps[j].priority)
                for job in due:
                    if self.stopping:
                        break
                    job.run()
                cycles += 1
                if not self.stopping:
                    self.sleep(min(1.0, max(0.05, self.scheduler.idle_seconds or 1.0)))
            log.info("syncagent daemon stopped")
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
