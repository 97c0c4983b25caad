"""Named points at the dangerous instants (around POSTs, commits, acks, token refresh, cursor save).

Inert unless ``SYNCAGENT_FAILPOINTS`` is set, so production pays one dict lookup per point.
The crash tests set it to one of:

* ``count:<file>``        append each point's name to <file> (to learn how many points a run reaches)
* ``crash-at:<k>``        exit the process abruptly (no cleanup, like SIGKILL) at the k-th point reached
* ``crash:<name>[:<n>]``  exit at the n-th (default 1st) time the named point is reached
"""

from __future__ import annotations

import os

CRASH_EXIT_CODE = 86

_state: dict[str, object] = {"spec": None, "hits": 0, "named": {}}


def _spec() -> str | None:
    spec = os.environ.get("SYNCAGENT_FAILPOINTS")
    return spec or None


def hit(name: str) -> None:
    """Mark that execution reached `name`; crash here if the armed schedule says so."""
    spec = _spec()
    if spec is None:
        return
    _state["hits"] = int(_state["hits"]) + 1  # type: ignore[call-overload]
    mode, _, arg = spec.partition(":")
    if mode == "count":
        with open(arg, "a", encoding="utf-8") as fh:
            fh.write(name + "\n")
            fh.flush()
            os.fsync(fh.fileno())
    elif mode == "crash-at":
        if _state["hits"] == int(arg):
            _crash(name)
    elif mode == "crash":
        target, _, nth = arg.partition(":")
        if name == target:
            named: dict[str, int] = _state["named"]  # type: ignore[assignment]
            named[name] = named.get(name, 0) + 1
            if named[name] == int(nth or 1):
                _crash(name)


def _crash(name: str) -> None:
    os.write(2, f"failpoint: crashing at {name}\n".encode())
    os._exit(CRASH_EXIT_CODE)


def reset() -> None:
    """Forget hit counts (tests that run several agents in one process)."""
    _state["hits"] = 0
    _state["named"] = {}
