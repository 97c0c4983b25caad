"""Moves the wall clock of every Python process of a test run ahead, for `make test-future`.

On PYTHONPATH only in that target, so the pytest process, the forked agents and the `python -m
syncagent` and simulator subprocesses all see the same shifted day. Only the wall clock moves
(time.time, datetime.now, localtime...): monotonic clocks, sleeps and timed waits stay real, so a
test can only fail here because its outcome hangs on the date.
"""

from __future__ import annotations

import os

_DAYS = os.environ.get("SYNCAGENT_CLOCK_AHEAD_DAYS")
if _DAYS:
    import datetime

    import time_machine

    _target = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=float(_DAYS))
    time_machine.travel(_target, tick=True).start()
