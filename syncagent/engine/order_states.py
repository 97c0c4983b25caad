"""The states of one channel order in the journal, and the one table of the moves between them.

Each state name means one thing:

* ``seen``: read from the channel and not being imported (its status is not importable now, or
  an operator reopened it for retry/replay);
* ``parked``: its intake failed half way for a passing reason (back office down, its
  customer not known yet); the journal keeps the channel's copy and the next run retries it;
* ``creating``: a POST to the back office may be under way or its answer was lost; before any
  new POST the order is looked up in the back office by its external id;
* ``created``: the back office has it (its number is kept); the channel is not told yet;
* ``acknowledged``: the channel was told: nothing is left to do;
* ``quarantined``: refused (unreadable, unmappable, missing reference, refused by the back
  office); waits for a change at its source, a reference to appear, or an operator;
* ``cancelled``: cancelled on the channel (and in the back office, if it got there).

The intake moves an order only along `TRANSITIONS`; an operator action (`quarantine retry`,
`replay`) may also reopen an order from any state (`REOPEN`), since it looks the order up in the
back office before it creates anything. A move outside the table is a bug and raises.
"""

from __future__ import annotations

from enum import StrEnum


class OrderState(StrEnum):
    SEEN = "seen"
    PARKED = "parked"
    CREATING = "creating"
    CREATED = "created"
    ACKNOWLEDGED = "acknowledged"
    QUARANTINED = "quarantined"
    CANCELLED = "cancelled"


S = OrderState
NEW = None  # no row yet: the order was never recorded

# from → where the intake may move it next
TRANSITIONS: dict[OrderState | None, frozenset[OrderState]] = {
    NEW: frozenset({S.PARKED, S.QUARANTINED, S.CREATING, S.CANCELLED}),
    S.SEEN: frozenset({S.PARKED, S.QUARANTINED, S.CREATING, S.CANCELLED}),
    S.PARKED: frozenset({S.SEEN, S.PARKED, S.QUARANTINED, S.CREATING, S.CANCELLED}),
    S.QUARANTINED: frozenset({S.PARKED, S.QUARANTINED, S.CREATING, S.CANCELLED}),
    S.CREATING: frozenset({S.CREATING, S.CREATED, S.QUARANTINED, S.CANCELLED}),
    S.CREATED: frozenset({S.ACKNOWLEDGED, S.CANCELLED}),
    S.ACKNOWLEDGED: frozenset({S.CANCELLED}),
    S.CANCELLED: frozenset(),
}
# what an operator action may make of an order in any state: read again (seen), posted again once
# looked up (creating), found in the back office (created), acknowledged again (acknowledged)
REOPEN: frozenset[OrderState] = frozenset({S.SEEN, S.CREATING, S.CREATED, S.ACKNOWLEDGED})

# the states that still need the intake's work (a clean run leaves none of these)
IN_FLIGHT: tuple[OrderState, ...] = (S.CREATING, S.CREATED, S.PARKED)
# where the intake may (re)start an order from the channel's copy
OPEN: tuple[OrderState, ...] = (S.SEEN, S.PARKED, S.QUARANTINED)


class IllegalTransition(RuntimeError):
    """A move the table does not allow: a bug in the engine, never a fault of the data."""


def check(before: str | None, after: OrderState, *, operator: bool = False) -> None:
    """Raise `IllegalTransition` unless `before` → `after` is in the table (or an operator's reopening)."""
    state = OrderState(before) if before is not None else NEW
    if after in TRANSITIONS[state] or (operator and after in REOPEN):
        return
    raise IllegalTransition(f"order state {before or '(new)'} → {after}: not an allowed transition")
