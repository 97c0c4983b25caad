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
    import time

    import time_machine

    # a timestamp, not an aware datetime: travelling to a datetime in UTC would also set the process's
    # time zone to UTC, and a test that sets TZ would no longer see its zone
    time_machine.travel(time.time() + float(_DAYS) * 86400, tick=True).start()
