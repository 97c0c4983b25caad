"""A document store for simulators: JSON records by collection and key, each change numbered.

A new simulator keeps its state here instead of writing SQL of its own: ``put`` stores a record
and gives it the next ``seq`` (so change feeds, offset and page-number listings and queues come
for free), ``get``/``delete`` by key, ``after`` for a seq feed, ``window`` for offset/limit or
page-number listings, ``find`` for a lookup by one field. It lives in the simulator's SQLite file
beside the request log, so an admin reset or a restart keeps it as a real system would.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS _docs (collection TEXT NOT NULL, key TEXT NOT NULL, seq INTEGER NOT NULL,
    doc TEXT NOT NULL, updated REAL NOT NULL, PRIMARY KEY (collection, key));
CREATE UNIQUE INDEX IF NOT EXISTS _docs_seq ON _docs (collection, seq);
CREATE TABLE IF NOT EXISTS _seqs (collection TEXT PRIMARY KEY, last INTEGER NOT NULL);
"""


class DocStore:
    """Collections of JSON documents keyed by a string, in insertion/change order (``seq``)."""

    def __init__(self, db: sqlite3.Connection, lock: threading.RLock | None = None) -> None:
        self.db = db
        self.lock = lock or threading.RLock()
        with self.lock:
            self.db.executescript(SCHEMA)

    def _next_seq(self, collection: str) -> int:
        row = self.db.execute("SELECT last FROM _seqs WHERE collection = ?", (collection,)).fetchone()
        seq = (row[0] if row else 0) + 1
        self.db.execute("INSERT INTO _seqs (collection, last) VALUES (?, ?) ON CONFLICT (collection) "
                        "DO UPDATE SET last = excluded.last", (collection, seq))
        return seq

    def put(self, collection: str, key: str, doc: dict[str, Any]) -> int:
        """Store (create or replace) one record; it moves to the end of the collection's change order."""
        with self.lock:
            seq = self._next_seq(collection)
            self.db.execute(
                "INSERT INTO _docs (collection, key, seq, doc, updated) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (collection, key) DO UPDATE SET seq = excluded.seq, doc = excluded.doc, "
                "updated = excluded.updated",
                (collection, key, seq, json.dumps(doc, ensure_ascii=False), time.time()))
            return seq

    def get(self, collection: str, key: str) -> dict[str, Any] | None:
        with self.lock:
            row = self.db.execute("SELECT doc FROM _docs WHERE collection = ? AND key = ?", (collection, key)).fetchone()
        return json.loads(row[0]) if row else None

    def delete(self, collection: str, key: str) -> bool:
        with self.lock:
            cur = self.db.execute("DELETE FROM _docs WHERE collection = ? AND key = ?", (collection, key))
        return cur.rowcount > 0

    def count(self, collection: str) -> int:
        with self.lock:
            return int(self.db.execute("SELECT COUNT(*) FROM _docs WHERE collection = ?", (collection,)).fetchone()[0])

    def all(self, collection: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every record as (key, doc), oldest change first."""
        with self.lock:
            rows = self.db.execute("SELECT key, doc FROM _docs WHERE collection = ? ORDER BY seq",
                                   (collection,)).fetchall()
        for key, doc in rows:
            yield key, json.loads(doc)

    def after(self, collection: str, seq: int, limit: int) -> list[tuple[int, str, dict[str, Any]]]:
        """A change feed page: (seq, key, doc) of the records changed after `seq`, in change order."""
        with self.lock:
            rows = self.db.execute("SELECT seq, key, doc FROM _docs WHERE collection = ? AND seq > ? ORDER BY seq "
                                   "LIMIT ?", (collection, seq, limit)).fetchall()
        return [(s, k, json.loads(d)) for s, k, d in rows]

    def window(self, collection: str, offset: int, limit: int,
               where: Callable[[dict[str, Any]], bool] | None = None, *, by_key: bool = False
               ) -> tuple[list[tuple[str, dict[str, Any]]], int]:
        """One offset/limit (or page-number) window of the records `where` keeps, and their total."""
        order = "key" if by_key else "seq"
        with self.lock:
            rows = self.db.execute(f"SELECT key, doc FROM _docs WHERE collection = ? ORDER BY {order}",  # noqa: S608 # nosec B608
                                   (collection,)).fetchall()
        kept = [(k, d) for k, d in ((k, json.loads(d)) for k, d in rows) if where is None or where(d)]
        return kept[offset:offset + limit], len(kept)

    def find(self, collection: str, field: str, value: Any) -> list[tuple[str, dict[str, Any]]]:
        """The records whose top-level `field` equals `value` (a lookup by reference, SKU, e-mail…)."""
        with self.lock:
            rows = self.db.execute("SELECT key, doc FROM _docs WHERE collection = ? "
                                   "AND json_extract(doc, '$.' || ?) = ? ORDER BY seq",
                                   (collection, field, value)).fetchall()
        return [(k, json.loads(d)) for k, d in rows]
