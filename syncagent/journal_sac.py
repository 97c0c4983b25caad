"""The journal's part for contract 1.1: tickets brought in, messages appended, answers sent, shipments tracked.

A mixin of `syncagent.journal.Journal` (the journal owns all SQL on its file; this is the same
class, split so neither module grows past reading size). Its tables come from the migration
"tickets, ticket answers and shipments" in `journal.MIGRATIONS`.

Times the engine decides with (a shipment's next poll, when it counts as silent) are given by the
caller in `model.time_key` form, from the engine's clock, so tests drive them without waiting.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

MIGRATION = (
    "tickets, ticket answers and shipments",
    """
    CREATE TABLE tickets (channel TEXT NOT NULL, ticket_key TEXT NOT NULL, state TEXT NOT NULL, bo_id TEXT,
        payload TEXT, updated_at TEXT NOT NULL, PRIMARY KEY (channel, ticket_key));
    CREATE INDEX tickets_state ON tickets (channel, state);
    CREATE TABLE ticket_messages (channel TEXT NOT NULL, ticket_key TEXT NOT NULL, message_id TEXT NOT NULL,
        PRIMARY KEY (channel, ticket_key, message_id)) WITHOUT ROWID;
    CREATE TABLE ticket_answers (channel TEXT NOT NULL, event_id TEXT NOT NULL, ticket_key TEXT NOT NULL,
        state TEXT NOT NULL, reason TEXT, updated_at TEXT NOT NULL, PRIMARY KEY (channel, event_id));
    CREATE INDEX ticket_answers_state ON ticket_answers (channel, state);
    CREATE TABLE shipments (channel TEXT NOT NULL, tracking_code TEXT NOT NULL, carrier TEXT NOT NULL,
        order_number TEXT NOT NULL, order_id TEXT NOT NULL, tracker TEXT, state TEXT NOT NULL,
        failures INTEGER NOT NULL DEFAULT 0, next_poll_at TEXT NOT NULL, silent_at TEXT, last_status TEXT,
        reason TEXT, opened_at TEXT NOT NULL, updated_at TEXT NOT NULL, event_id TEXT,
        PRIMARY KEY (channel, tracking_code));
    CREATE INDEX shipments_due ON shipments (channel, state, next_poll_at);
    CREATE TABLE delivery_statuses (channel TEXT NOT NULL, tracking_code TEXT NOT NULL, status_key TEXT NOT NULL,
        PRIMARY KEY (channel, tracking_code, status_key)) WITHOUT ROWID;
    """,
)

SHIPMENT_COLUMNS = ("channel, tracking_code, carrier, order_number, order_id, tracker, state, failures, next_poll_at,"
                    " silent_at, last_status, reason, opened_at, updated_at")
SHIPMENT_FIELDS = frozenset({"tracker", "state", "failures", "next_poll_at", "silent_at", "last_status", "reason"})


@dataclass(frozen=True, slots=True)
class TicketRow:
    channel: str
    ticket_key: str
    state: str  # creating | created | quarantined
    bo_id: str | None
    payload: dict[str, Any] | None
    updated_at: str


@dataclass(frozen=True, slots=True)
class ShipmentRow:
    channel: str
    tracking_code: str
    carrier: str
    order_number: str
    order_id: str
    tracker: str | None  # "carrier:<name>", "channel", or None (no connector tracks this carrier)
    state: str  # open | unknown_carrier | final | quarantined | replaced
    failures: int
    next_poll_at: str
    silent_at: str | None
    last_status: str | None
    reason: str | None
    opened_at: str
    updated_at: str


class SacJournal:
    """Tickets, answers and shipments; mixed into `Journal` (which gives `conn`)."""

    conn: sqlite3.Connection

    # -- tickets ---------------------------------------------------------------------------------------
    def ticket(self, channel: str, key: str) -> TicketRow | None:
        row = self.conn.execute("SELECT channel, ticket_key, state, bo_id, payload, updated_at FROM tickets"
                                " WHERE channel = ? AND ticket_key = ?", (channel, key)).fetchone()
        return _ticket_row(row) if row else None

    def tickets_in_state(self, channel: str, state: str) -> list[TicketRow]:
        rows = self.conn.execute("SELECT channel, ticket_key, state, bo_id, payload, updated_at FROM tickets"
                                 " WHERE channel = ? AND state = ? ORDER BY updated_at", (channel, state))
        return [_ticket_row(r) for r in rows]

    def set_ticket(self, channel: str, key: str, state: str, *, bo_id: str | None = None,
                   payload: dict[str, Any] | None = None, stamp: str) -> None:
        """Create or move a ticket's row; None keeps the stored back office id and payload."""
        self.conn.execute(
            "INSERT INTO tickets (channel, ticket_key, state, bo_id, payload, updated_at) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (channel, ticket_key) DO UPDATE SET state = excluded.state,"
            " bo_id = coalesce(excluded.bo_id, tickets.bo_id), payload = coalesce(excluded.payload, tickets.payload),"
            " updated_at = excluded.updated_at",
            (channel, key, state, bo_id, json.dumps(payload, default=str) if payload is not None else None, stamp))

    def ticket_messages(self, channel: str, key: str) -> set[str]:
        rows = self.conn.execute("SELECT message_id FROM ticket_messages WHERE channel = ? AND ticket_key = ?",
                                 (channel, key))
        return {r[0] for r in rows}

    def add_ticket_messages(self, channel: str, key: str, message_ids: list[str]) -> None:
        self.conn.executemany("INSERT OR IGNORE INTO ticket_messages (channel, ticket_key, message_id) VALUES (?, ?, ?)",
                              [(channel, key, m) for m in message_ids])

    # -- answers ---------------------------------------------------------------------------------------
    def answer_state(self, channel: str, event_id: str) -> str | None:
        row = self.conn.execute("SELECT state FROM ticket_answers WHERE channel = ? AND event_id = ?",
                                (channel, event_id)).fetchone()
        return str(row[0]) if row else None

    def set_answer(self, channel: str, event_id: str, key: str, state: str, *, reason: str | None = None,
                   stamp: str) -> None:
        self.conn.execute(
            "INSERT INTO ticket_answers (channel, event_id, ticket_key, state, reason, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (channel, event_id) DO UPDATE SET state = excluded.state,"
            " reason = excluded.reason, updated_at = excluded.updated_at",
            (channel, event_id, key, state, reason, stamp))

    def answer_ticket(self, channel: str, event_id: str) -> str | None:
        row = self.conn.execute("SELECT ticket_key FROM ticket_answers WHERE channel = ? AND event_id = ?",
                                (channel, event_id)).fetchone()
        return str(row[0]) if row else None

    def answers_in_state(self, channel: str, state: str) -> list[tuple[str, str]]:
        """(event id, ticket key) of the answers in `state`, oldest first."""
        rows = self.conn.execute("SELECT event_id, ticket_key FROM ticket_answers WHERE channel = ? AND state = ?"
                                 " ORDER BY updated_at, event_id", (channel, state))
        return [(r[0], r[1]) for r in rows]

    # -- shipments -------------------------------------------------------------------------------------
    def add_shipment(self, channel: str, tracking_code: str, carrier: str, order_number: str, order_id: str,
                     tracker: str | None, state: str, *, now: str, silent_at: str | None, event_id: str) -> bool:
        """Note a shipment to track; False when it is known already (a shipped event read again).

        A shipped event corrected with another tracking code (a typo fixed in the back office) replaces
        the shipment it announced before: that one is no longer polled (state `replaced`).
        """
        cur = self.conn.execute(
            f"INSERT OR IGNORE INTO shipments ({SHIPMENT_COLUMNS}, event_id) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?,"
            " NULL, NULL, ?, ?, ?)", (channel, tracking_code, carrier, order_number, order_id, tracker, state, now,
                                     silent_at, now, now, event_id))
        if cur.rowcount > 0:
            self.conn.execute("UPDATE shipments SET state = 'replaced', updated_at = ? WHERE channel = ? AND"
                              " event_id = ? AND tracking_code != ? AND state IN ('open', 'unknown_carrier')",
                              (now, channel, event_id, tracking_code))
        return cur.rowcount > 0

    def shipment(self, channel: str, tracking_code: str) -> ShipmentRow | None:
        row = self.conn.execute(f"SELECT {SHIPMENT_COLUMNS} FROM shipments WHERE channel = ? AND tracking_code = ?",  # nosec B608
                                (channel, tracking_code)).fetchone()
        return ShipmentRow(*row) if row else None

    def due_shipments(self, channel: str, now: str, limit: int) -> list[ShipmentRow]:
        """Open shipments whose next poll is due, the longest waiting first."""
        rows = self.conn.execute(f"SELECT {SHIPMENT_COLUMNS} FROM shipments WHERE channel = ? AND state = 'open'"  # nosec B608
                                 " AND next_poll_at <= ? ORDER BY next_poll_at, tracking_code LIMIT ?",
                                 (channel, now, limit))
        return [ShipmentRow(*r) for r in rows]

    def shipments_in_state(self, channel: str, state: str) -> list[ShipmentRow]:
        rows = self.conn.execute(f"SELECT {SHIPMENT_COLUMNS} FROM shipments WHERE channel = ? AND state = ?"  # nosec B608
                                 " ORDER BY opened_at, tracking_code", (channel, state))
        return [ShipmentRow(*r) for r in rows]

    def update_shipment(self, channel: str, tracking_code: str, *, now: str, **fields: Any) -> None:
        unknown = set(fields) - SHIPMENT_FIELDS
        if unknown:
            raise ValueError(f"not shipment fields: {sorted(unknown)}")
        sets = "".join(f", {name} = ?" for name in fields)
        self.conn.execute(f"UPDATE shipments SET updated_at = ?{sets} WHERE channel = ? AND tracking_code = ?",  # nosec B608
                          (now, *fields.values(), channel, tracking_code))

    def shipment_counts(self, channel: str) -> dict[str, int]:
        rows = self.conn.execute("SELECT state, count(*) FROM shipments WHERE channel = ? GROUP BY state", (channel,))
        return {r[0]: int(r[1]) for r in rows}

    def unknown_carriers(self, channel: str) -> dict[str, int]:
        """Carrier name → shipments that no configured connector tracks."""
        rows = self.conn.execute("SELECT carrier, count(*) FROM shipments WHERE channel = ? AND state ="
                                 " 'unknown_carrier' GROUP BY carrier ORDER BY carrier", (channel,))
        return {r[0]: int(r[1]) for r in rows}

    def silent_shipments(self, now: str) -> list[ShipmentRow]:
        """Open shipments with no news since their silence deadline passed."""
        rows = self.conn.execute(f"SELECT {SHIPMENT_COLUMNS} FROM shipments WHERE state = 'open'"  # nosec B608
                                 " AND silent_at IS NOT NULL AND silent_at <= ? ORDER BY channel, tracking_code",
                                 (now,))
        return [ShipmentRow(*r) for r in rows]

    def delivery_statuses(self, channel: str, tracking_code: str) -> set[str]:
        rows = self.conn.execute("SELECT status_key FROM delivery_statuses WHERE channel = ? AND tracking_code = ?",
                                 (channel, tracking_code))
        return {r[0] for r in rows}

    def record_delivery_status(self, channel: str, tracking_code: str, status_key: str) -> None:
        self.conn.execute("INSERT OR IGNORE INTO delivery_statuses (channel, tracking_code, status_key) VALUES"
                          " (?, ?, ?)", (channel, tracking_code, status_key))

    def sac_backlog(self, channel: str, now: str) -> dict[str, int]:
        """Per flow, what waits: tickets not yet in the back office, shipments due a poll."""
        one = self.conn.execute
        tickets = one("SELECT count(*) FROM tickets WHERE channel = ? AND state = 'creating'", (channel,)).fetchone()
        due = one("SELECT count(*) FROM shipments WHERE channel = ? AND state = 'open' AND next_poll_at <= ?",
                  (channel, now)).fetchone()
        return {"tickets": int(tickets[0]), "deliveries": int(due[0])}


def _ticket_row(row: Any) -> TicketRow:
    return TicketRow(row[0], row[1], row[2], row[3], json.loads(row[4]) if row[4] else None, row[5])
