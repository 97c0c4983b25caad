"""The local SQLite change-journal: what was sent, where each feed stands, each order's fate.

Durability: WAL with ``synchronous=FULL`` (a committed transaction survives a power cut; a
catalogue push, whose pages are safe to send again, commits with ``synchronous=NORMAL``),
migrations recorded in ``migrations``, an integrity check at open, and an exclusive lock file
so that a second agent on the same journal stops at once (exit 3). A corrupt journal or one
written by a newer syncagent is refused with a clear error, never silently reset.

The engine writes one transaction per feed page (fingerprints, quarantine, cursor together);
order intake commits each state change of an order on its own, before the next network call.
Nothing stored here is a secret.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import pwd
import re
import sqlite3
import stat
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from syncagent import failpoints
from syncagent.errors import JournalError, JournalFull, JournalGone, JournalLocked
from syncagent.journal_sac import MIGRATION as SAC_MIGRATION
from syncagent.journal_sac import SacJournal

MIGRATIONS: list[tuple[str, str]] = [
    (
        "initial schema",
        """
        CREATE TABLE sent (channel TEXT NOT NULL, entity TEXT NOT NULL, key TEXT NOT NULL,
            fingerprint TEXT NOT NULL, remote_id TEXT, sent_at TEXT NOT NULL,
            PRIMARY KEY (channel, entity, key)) WITHOUT ROWID;
        CREATE TABLE cursors (channel TEXT NOT NULL, flow TEXT NOT NULL, cursor TEXT, updated_at TEXT NOT NULL,
            PRIMARY KEY (channel, flow));
        CREATE TABLE bindings (channel TEXT NOT NULL, entity TEXT NOT NULL, remote_id TEXT NOT NULL,
            local_key TEXT NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (channel, entity, remote_id));
        CREATE TABLE orders (channel TEXT NOT NULL, order_id TEXT NOT NULL, state TEXT NOT NULL,
            version TEXT, bo_number TEXT, payload TEXT, reason_code TEXT, reason TEXT,
            seen_at TEXT NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (channel, order_id));
        CREATE INDEX orders_state ON orders (channel, state);
        CREATE TABLE events (channel TEXT NOT NULL, event_id TEXT NOT NULL, order_id TEXT NOT NULL,
            type TEXT NOT NULL, rank INTEGER NOT NULL, state TEXT NOT NULL, payload TEXT,
            reason TEXT, updated_at TEXT NOT NULL, PRIMARY KEY (channel, event_id));
        CREATE INDEX events_state ON events (channel, state);
        CREATE TABLE quarantine (channel TEXT NOT NULL, entity TEXT NOT NULL, key TEXT NOT NULL,
            state TEXT NOT NULL, reason_code TEXT NOT NULL, reason TEXT NOT NULL, payload TEXT,
            source_fingerprint TEXT, first_seen TEXT NOT NULL, last_seen TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 1, closed_by TEXT, close_reason TEXT,
            PRIMARY KEY (channel, entity, key));
        CREATE INDEX quarantine_state ON quarantine (state, channel);
        CREATE TABLE stock_balances (channel TEXT NOT NULL, code TEXT NOT NULL, warehouse TEXT NOT NULL,
            available INTEGER NOT NULL, reserved INTEGER NOT NULL, PRIMARY KEY (channel, code, warehouse))
            WITHOUT ROWID;
        CREATE TABLE price_boundaries (channel TEXT NOT NULL, code TEXT NOT NULL, next_at TEXT NOT NULL,
            record TEXT NOT NULL, PRIMARY KEY (channel, code));
        CREATE INDEX price_boundaries_due ON price_boundaries (channel, next_at);
        CREATE TABLE runs (id INTEGER PRIMARY KEY, channel TEXT NOT NULL, flow TEXT NOT NULL,
            started_at TEXT NOT NULL, finished_at TEXT, result TEXT, read INTEGER DEFAULT 0,
            sent INTEGER DEFAULT 0, unchanged INTEGER DEFAULT 0, quarantined INTEGER DEFAULT 0, error TEXT);
        CREATE INDEX runs_step ON runs (channel, flow, id);
        CREATE TABLE channel_state (channel TEXT PRIMARY KEY, auth_state TEXT NOT NULL, message TEXT,
            updated_at TEXT NOT NULL);
        """,
    ),
    (
        "alert memory",
        """
        CREATE TABLE alerts (key TEXT PRIMARY KEY, state TEXT NOT NULL, opened_at TEXT, resolved_at TEXT,
            flaps INTEGER NOT NULL DEFAULT 0, subject TEXT NOT NULL);
        """,
    ),
    (
        "SKU DE/PARA map",
        """
        CREATE TABLE sku_map (channel TEXT NOT NULL, code TEXT NOT NULL, channel_sku TEXT NOT NULL,
            source TEXT NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (channel, code)) WITHOUT ROWID;
        CREATE UNIQUE INDEX sku_map_channel_sku ON sku_map (channel, channel_sku);
        """,
    ),
    (
        "digest of the last page of a feed",
        """
        ALTER TABLE cursors ADD COLUMN tail_digest TEXT;
        """,
    ),
    (
        "digests of feed pages recorded whole",
        """
        CREATE TABLE page_digests (channel TEXT NOT NULL, entity TEXT NOT NULL, digest TEXT NOT NULL,
            context TEXT NOT NULL, items INTEGER NOT NULL, next_cursor TEXT,
            PRIMARY KEY (channel, entity, digest)) WITHOUT ROWID;
        """,
    ),
    (
        "fingerprint of each order event as last handed to the channel",
        """
        ALTER TABLE events ADD COLUMN fingerprint TEXT;
        """,
    ),
    (
        "a parked order is called parked ('pending' is an event waiting to be sent)",
        """
        UPDATE orders SET state = 'parked' WHERE state = 'pending';
        """,
    ),
    (
        "what a quarantined record waits for, as data",
        """
        ALTER TABLE quarantine ADD COLUMN waiting_for TEXT;
        """,
    ),
    (
        "connector state",
        """
        CREATE TABLE connector_state (channel TEXT NOT NULL, key TEXT NOT NULL, value TEXT,
            updated_at TEXT NOT NULL, PRIMARY KEY (channel, key)) WITHOUT ROWID;
        """,
    ),
    (
        "notifications",
        """
        CREATE TABLE notifications (id INTEGER PRIMARY KEY, channel TEXT NOT NULL, flow TEXT NOT NULL,
            topic TEXT, key TEXT, digest TEXT NOT NULL, source TEXT, received_at TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'waiting', done_at TEXT, UNIQUE (channel, digest));
        CREATE INDEX notifications_waiting ON notifications (channel, flow, state);
        """,
    ),
    SAC_MIGRATION,
]
SCHEMA_VERSION = len(MIGRATIONS)


def create_private(path: Path) -> None:
    """Create `path` empty and 0600 if it does not exist, whatever the umask: it holds order payloads.

    SQLite gives the -wal and -shm files it creates beside a database the database's own mode, so
    they are private too. An existing file keeps the mode its owner gave it.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except (FileExistsError, FileNotFoundError):  # no folder: the caller's own open says so
        return
    try:
        os.fchmod(fd, 0o600)  # a umask such as 0o277 would have taken the owner's write bit
    finally:
        os.close(fd)


SQLITE_FULL = 13
SQLITE_CORRUPT_CODES = frozenset({11, 26})  # SQLITE_CORRUPT, SQLITE_NOTADB: the file itself is bad
SQLITE_ACCESS_CODES = frozenset({3, 8, 14})  # SQLITE_PERM, SQLITE_READONLY, SQLITE_CANTOPEN


def _sqlite_code(exc: BaseException) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None  # the primary code of an extended one


def is_corrupt(exc: BaseException) -> bool:
    """Only these errors justify telling an operator the journal file is damaged."""
    return _sqlite_code(exc) in SQLITE_CORRUPT_CODES


def journal_failure(exc: BaseException, path: Path, *, write: bool = True) -> JournalError | None:
    """What an OS or SQLite error on the journal means for the operator, or None if it is neither
    a full disk nor a missing permission (the caller then handles it as before)."""
    if isinstance(exc, JournalError) or str(path) == ":memory:":
        return None
    code = _sqlite_code(exc)
    if code == SQLITE_FULL or (isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)):
        return JournalFull(
            f"disk full: the journal {path} cannot grow ({exc}); free space in {path.parent}, then run again: "
            "what was recorded is kept and the rest is done then")
    if isinstance(exc, PermissionError) or code in SQLITE_ACCESS_CODES or (
            isinstance(exc, OSError) and exc.errno == errno.EROFS):
        problem = access_problem(path, write=write)
        if problem is not None:
            return JournalError(problem)
    return None


def _who(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _mode(path: Path) -> str:
    info = path.stat()
    return f"{stat.filemode(info.st_mode)}, owner {_who(info.st_uid)}"


def access_problem(path: Path, *, write: bool = True) -> str | None:
    """The permission this user lacks to use the journal at `path`, said so it can be granted; None if none.

    The folder must be writable even to read: in WAL mode SQLite keeps `-wal` and `-shm` files
    beside the journal. A journal that cannot be opened for want of a permission is healthy:
    the message says so, so that nobody deletes it as "corrupt".
    """
    user = f"{_who(os.geteuid())}"
    keep = "The journal is not damaged: do not delete or move it."
    folder = path.parent
    if not folder.exists():
        parent = next((p for p in folder.parents if p.exists()), Path("/"))
        if not os.access(parent, os.W_OK | os.X_OK):
            return (f"the journal folder {folder} does not exist and this user ({user}) may not create it: no write "
                    f"permission on {parent} ({_mode(parent)}); create it for {user}, or set `journal:` to a "
                    "folder this user can write")
        return None
    if not os.access(folder, os.W_OK | os.X_OK):
        return (f"this user ({user}) has no write permission on the journal folder {folder} ({_mode(folder)}): "
                f"SQLite creates {path.name}-wal and {path.name}-shm there{'' if write else ', even to read'}. "
                f"{keep} Give {user} write permission on {folder} (`chown {user} {folder}` or `chmod u+w "
                f"{folder}`; a read-only mount: remount it read-write), or run syncagent as its owner")
    wanted = os.R_OK | (os.W_OK if write else 0)
    for name in ("", "-wal", "-shm", ".lock") if write else ("", "-wal", "-shm"):
        file = Path(f"{path}{name}")
        if file.exists() and not os.access(file, wanted if name != "-shm" else os.R_OK | os.W_OK):
            need = "read and write" if write or name == "-shm" else "read"
            return (f"this user ({user}) has no {need} permission on {file} ({_mode(file)}). {keep} "
                    f"Give {user} that permission (`chown {user} {file}`), or run syncagent as its owner")
    return None


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class OrderRow:
    channel: str
    order_id: str
    state: str
    version: str | None
    bo_number: str | None
    payload: dict[str, Any] | None
    reason_code: str | None
    reason: str | None
    seen_at: str
    updated_at: str


@dataclass(frozen=True, slots=True)
class QuarantineRow:
    id: int
    channel: str
    entity: str
    key: str
    state: str
    reason_code: str
    reason: str
    payload: Any
    source_fingerprint: str | None
    first_seen: str
    last_seen: str
    attempts: int
    closed_by: str | None
    close_reason: str | None
    # (kind, reference) the sink said it does not know, or the engine could not resolve: the record
    # may go once they exist
    waiting_for: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class RunRow:
    id: int
    channel: str
    flow: str
    started_at: str
    finished_at: str | None
    result: str | None
    read: int
    sent: int
    unchanged: int
    quarantined: int
    error: str | None


class Journal(SacJournal):
    """One open journal. Not thread-safe: the agent drives it from one thread."""

    def __init__(self, path: str | Path, *, lock: bool = True, readonly: bool = False) -> None:
        self.path = Path(path)
        self._lock_fds: list[int] = []
        self._identity: tuple[int, int] | None = None  # (device, inode) of the file opened
        self._depth = 0
        self._replayable = 0  # steps of several channels side by side may each be in replayable()
        self._write = not readonly
        self._state_conn: sqlite3.Connection | None = None
        self._state_lock = threading.Lock()
        self._tx_thread: int | None = None
        self._named_locks: dict[str, threading.Lock] = {}
        try:
            if lock:
                self._take_lock()
            self.conn = self._open()
            self._identity = self._same_file()
            if not readonly:
                self._migrate()
        except BaseException as exc:
            self.close()
            failure = journal_failure(exc, self.path, write=not readonly)
            if failure is None:
                raise
            raise failure from None

    def refuse_writes(self) -> None:
        """SQLite refuses any write on this connection from now on (query_only): for commands that only read."""
        self.conn.execute("PRAGMA query_only=ON")

    # -- opening ------------------------------------------------------------------------------
    def _take_lock(self) -> None:
        """Lock the journal file itself, then the .lock file beside it (its pid is for `doctor`).

        The journal's own lock is the one that counts: deleting the .lock file cannot let a second
        agent in. (SQLite's byte-range locks on the same file are of another kind on Linux and do
        not interfere.) The .lock file is locked too, so an older syncagent, which knows only it,
        is kept out as well.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        create_private(self.path)
        lock_path = str(self.path) + ".lock"
        self._lock_fds = [os.open(self.path, os.O_RDONLY)]
        try:
            self._lock_fds.append(os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600))
            for fd in self._lock_fds:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._release_lock()
            raise JournalLocked(
                f"another syncagent holds the journal {self.path} (lock {lock_path}); "
                "stop it first, or give this agent its own journal"
            ) from None
        except BaseException:
            self._release_lock()
            raise
        os.ftruncate(self._lock_fds[1], 0)
        os.write(self._lock_fds[1], str(os.getpid()).encode())

    def _release_lock(self) -> None:
        """Called after the connection is closed: closing a descriptor of the journal file drops this
        process's SQLite locks on it too."""
        for fd in self._lock_fds:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        self._lock_fds = []

    def _same_file(self) -> tuple[int, int] | None:
        """(device, inode) of the journal; with the lock held, the file locked must be the file opened."""
        if str(self.path) == ":memory:":
            return None
        found = os.stat(self.path)
        if self._lock_fds:
            locked = os.fstat(self._lock_fds[0])
            if (locked.st_dev, locked.st_ino) != (found.st_dev, found.st_ino):
                raise JournalGone(f"the journal {self.path} was replaced while syncagent was opening it; "
                                  "start it again once nothing else writes that path")
        return found.st_dev, found.st_ino

    def check_still_there(self) -> None:
        """Stop when the journal was removed or replaced under this agent (checked before each write).

        Otherwise the agent would go on recording in a file nobody will read, while another agent
        could start on a new file at the same path and send everything a second time.
        """
        if self._identity is None:
            return
        who = f"this syncagent (pid {os.getpid()})"
        try:
            found = os.stat(self.path)
        except FileNotFoundError:
            raise JournalGone(
                f"the journal {self.path} was removed while {who} was using it; stopping, so that no work is "
                "recorded where nobody will read it. Restore it from a backup and start syncagent again (with a "
                "new, empty journal every record is sent once more)") from None
        if (found.st_dev, found.st_ino) != self._identity:
            raise JournalGone(
                f"the journal {self.path} was replaced by another file while {who} was using it; stopping, so "
                "that two journals are not mixed. Find out what replaced it, then start syncagent again") from None

    def _open(self) -> sqlite3.Connection:
        if str(self.path) != ":memory:":
            create_private(self.path)
        conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=5000")
            problems = [row[0] for row in conn.execute("PRAGMA quick_check")]
        except sqlite3.DatabaseError as exc:
            conn.close()
            failure = journal_failure(exc, self.path, write=self._write)
            if failure is not None:
                raise failure from None
            if not is_corrupt(exc):  # locked, an I/O error...: nothing says the file is bad
                raise JournalError(f"the journal {self.path} cannot be opened now ({exc}); it is not known to be "
                                   "damaged: keep it, fix the cause and run again") from None
            raise JournalError(
                f"the journal {self.path} is not a usable SQLite database ({exc}); "
                "restore it from a backup or move it aside to start a new one (every record will be re-sent once)"
            ) from None
        if problems != ["ok"]:
            raise JournalError(
                f"the journal {self.path} failed its integrity check: {'; '.join(problems[:5])}; "
                "restore it from a backup (sqlite3 .recover can salvage rows)"
            )
        return conn

    def _migrate(self) -> None:
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL,"
            " description TEXT NOT NULL)"
        )
        current = self.schema_version()
        if current > SCHEMA_VERSION:
            raise JournalError(
                f"the journal {self.path} has schema version {current}, newer than this syncagent "
                f"understands ({SCHEMA_VERSION}); upgrade syncagent or restore a journal of this version"
            )
        for version in range(current + 1, SCHEMA_VERSION + 1):
            description, script = MIGRATIONS[version - 1]
            statements = [s.strip() for s in script.split(";") if s.strip()]
            with self.transaction():
                for statement in statements:
                    self.conn.execute(statement)
                self.conn.execute(
                    "INSERT INTO migrations (version, applied_at, description) VALUES (?, ?, ?)",
                    (version, now_iso(), description),
                )

    def schema_version(self) -> int:
        try:
            row = self.conn.execute("SELECT max(version) FROM migrations").fetchone()
        except sqlite3.OperationalError:
            return 0
        return int(row[0] or 0)

    def integrity(self) -> list[str]:
        return [row[0] for row in self.conn.execute("PRAGMA integrity_check")]

    def close(self) -> None:
        conn = getattr(self, "conn", None)  # None when opening failed half way
        for each in (getattr(self, "_state_conn", None), conn):
            if each is not None:
                with contextlib.suppress(sqlite3.Error):
                    each.close()
        self._state_conn = None
        self._release_lock()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions -------------------------------------------------------------------------
    @contextlib.contextmanager
    def replayable(self) -> Iterator[None]:
        """Commits without an fsync each (WAL, synchronous=NORMAL) for work that is safe to redo.

        For a catalogue push: a killed process loses nothing (the OS has the pages); a power cut may
        lose the last pages recorded, which are then read and sent again (an upsert, harmless) with
        the cursor still before them. Order and event steps never run inside this.
        """
        if self._depth:
            raise RuntimeError("replayable() inside a transaction")
        if not self._replayable:
            self.conn.execute("PRAGMA synchronous=NORMAL")
        self._replayable += 1
        try:
            yield
        finally:
            self._replayable -= 1
            if not self._replayable:
                self.conn.execute("PRAGMA synchronous=FULL")

    def in_transaction(self) -> bool:
        """Whether a transaction is open (a step side by side with others keeps its turn until it ends)."""
        return self._depth > 0

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE … COMMIT; nested calls join the outer transaction."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self.check_still_there()
        self.conn.execute("BEGIN IMMEDIATE")
        self._depth = 1
        self._tx_thread = threading.get_ident()
        try:
            yield
            failpoints.hit("journal.before_commit")
            self.conn.execute("COMMIT")
            failpoints.hit("journal.after_commit")
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        finally:
            self._depth = 0

    # -- notifications ------------------------------------------------------------------------
    def add_notifications(self, rows: Sequence[tuple[str, str, str, str | None, str, str]]) -> list[bool]:
        """Store notifications (channel, flow, topic, key, digest of the body, source) in one transaction;
        whether each is new (the same body again, a replay, is kept once)."""
        now = now_iso()
        new = []
        with self.transaction():
            for channel, flow, topic, key, digest, source in rows:
                cur = self.conn.execute(
                    "INSERT OR IGNORE INTO notifications (channel, flow, topic, key, digest, source, received_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)", (channel, flow, topic, key, digest, source, now))
                new.append(cur.rowcount == 1)
        return new

    def notifications_through(self, channel: str, flow: str) -> int:
        """The id of the last notification waiting for this step (0: none)."""
        row = self.conn.execute("SELECT max(id) FROM notifications WHERE channel = ? AND flow = ? AND state = ?",
                                (channel, flow, "waiting")).fetchone()
        return int(row[0] or 0)

    def finish_notifications(self, channel: str, flow: str, through: int) -> None:
        """The step ran after these notifications came: they are done (a later one waits for the next run)."""
        with self.transaction():
            self.conn.execute("UPDATE notifications SET state = 'done', done_at = ? WHERE channel = ? AND flow = ?"
                              " AND state = 'waiting' AND id <= ?", (now_iso(), channel, flow, through))

    def notification_summary(self) -> dict[str, tuple[str, int]]:
        """Per channel: when the last notification came, and how many wait for their step."""
        try:
            rows = self.conn.execute("SELECT channel, max(received_at), sum(state = 'waiting') FROM notifications"
                                     " GROUP BY channel").fetchall()
        except sqlite3.OperationalError:  # a journal of an earlier version, opened read-only (not migrated)
            return {}
        return {channel: (last, int(waiting or 0)) for channel, last, waiting in rows}

    def prune_notifications(self, before: str) -> None:
        """Forget notifications done before `before` (a replay of one forgotten only wakes its step again)."""
        with self.transaction():
            self.conn.execute("DELETE FROM notifications WHERE state = 'done' AND done_at < ?", (before,))

    # -- fingerprints -------------------------------------------------------------------------
    def fingerprints(self, channel: str, entity: str, keys: Sequence[str]) -> dict[str, str]:
        """The last accepted fingerprint of each key (one query per page)."""
        return dict(rows_in(self.conn, "SELECT key, fingerprint FROM sent WHERE channel = ? AND entity = ?"
                                       " AND key IN ({})", (channel, entity), keys))

    def record_sent(self, channel: str, entity: str, rows: Iterable[tuple[str, str, str | None]]) -> None:
        """rows: (key, fingerprint, remote_id)."""
        stamp = now_iso()
        self.conn.executemany(
            "INSERT INTO sent (channel, entity, key, fingerprint, remote_id, sent_at) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (channel, entity, key) DO UPDATE SET fingerprint = excluded.fingerprint,"
            " remote_id = coalesce(excluded.remote_id, sent.remote_id), sent_at = excluded.sent_at",
            [(channel, entity, key, fp, remote, stamp) for key, fp, remote in rows],
        )

    def count_sent(self, channel: str, entity: str | None = None) -> int:
        if entity is None:
            return int(self.conn.execute("SELECT count(*) FROM sent WHERE channel = ?", (channel,)).fetchone()[0])
        row = self.conn.execute("SELECT count(*) FROM sent WHERE channel = ? AND entity = ?", (channel, entity))
        return int(row.fetchone()[0])

    # -- cursors ------------------------------------------------------------------------------
    def cursor(self, channel: str, flow: str) -> str | None:
        row = self.conn.execute("SELECT cursor FROM cursors WHERE channel = ? AND flow = ?", (channel, flow)).fetchone()
        return row[0] if row else None

    def cursor_updated_at(self, channel: str, flow: str) -> str | None:
        row = self.conn.execute(
            "SELECT updated_at FROM cursors WHERE channel = ? AND flow = ?", (channel, flow)
        ).fetchone()
        return row[0] if row else None

    def save_cursor(self, channel: str, flow: str, cursor: str | None) -> None:
        failpoints.hit("journal.cursor_save")
        self.conn.execute(
            "INSERT INTO cursors (channel, flow, cursor, updated_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (channel, flow) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at",
            (channel, flow, cursor, now_iso()),
        )

    def touch_cursor(self, channel: str, flow: str) -> None:
        """The feed was read to its end: keep the cursor, note when (the cursor age in `status`)."""
        self.conn.execute(
            "INSERT INTO cursors (channel, flow, cursor, updated_at) VALUES (?, ?, NULL, ?)"
            " ON CONFLICT (channel, flow) DO UPDATE SET updated_at = excluded.updated_at",
            (channel, flow, now_iso()),
        )

    def tail_digest(self, channel: str, flow: str) -> str | None:
        """The digest of the feed's last page as it was when last recorded (None: unknown)."""
        row = self.conn.execute(
            "SELECT tail_digest FROM cursors WHERE channel = ? AND flow = ?", (channel, flow)
        ).fetchone()
        return row[0] if row else None

    def set_tail_digest(self, channel: str, flow: str, digest: str | None) -> None:
        """Note the digest of the last page just recorded (in the page's transaction, after its cursor)."""
        self.conn.execute(
            "UPDATE cursors SET tail_digest = ? WHERE channel = ? AND flow = ? AND tail_digest IS NOT ?",
            (digest, channel, flow, digest),
        )

    # -- pages recorded whole: a page read again as it was (same bytes, same mapping) is not mapped again
    def page_digests(self, channel: str, entity: str, context: str) -> dict[str, tuple[int, str | None]]:
        """digest → (item count, next cursor) of the pages of `entity` recorded whole under this `context`."""
        return {d: (n, c) for d, n, c in self.conn.execute(
            "SELECT digest, items, next_cursor FROM page_digests WHERE channel = ? AND entity = ? AND context = ?",
            (channel, entity, context))}

    def add_page_digest(self, channel: str, entity: str, digest: str, context: str, items: int,
                        next_cursor: str | None) -> None:
        """Note a page whose every record is recorded as sent or unchanged (in the page's transaction)."""
        self.conn.execute(
            "INSERT INTO page_digests (channel, entity, digest, context, items, next_cursor) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (channel, entity, digest) DO UPDATE SET context = excluded.context, items = excluded.items,"
            " next_cursor = excluded.next_cursor",
            (channel, entity, digest, context, items, next_cursor))

    def keep_page_digests(self, channel: str, entity: str, context: str, keep: Iterable[str]) -> None:
        """After a whole pass over a feed: forget the pages it did not meet (the feed has moved on)."""
        keep = set(keep)
        known = self.conn.execute("SELECT digest, context FROM page_digests WHERE channel = ? AND entity = ?",
                                  (channel, entity)).fetchall()
        gone = [(channel, entity, d) for d, c in known if c != context or d not in keep]
        self.conn.executemany("DELETE FROM page_digests WHERE channel = ? AND entity = ? AND digest = ?", gone)

    def forget_page_digests(self, channel: str) -> None:
        """The channel's mapping inputs changed (its SKU map): every page is mapped again once."""
        self.conn.execute("DELETE FROM page_digests WHERE channel = ?", (channel,))

    # -- bindings -----------------------------------------------------------------------------
    def binding(self, channel: str, entity: str, remote_id: str) -> str | None:
        row = self.conn.execute(
            "SELECT local_key FROM bindings WHERE channel = ? AND entity = ? AND remote_id = ?",
            (channel, entity, remote_id),
        ).fetchone()
        return row[0] if row else None

    def bind(self, channel: str, entity: str, remote_id: str, local_key: str) -> None:
        self.conn.execute(
            "INSERT INTO bindings (channel, entity, remote_id, local_key, updated_at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (channel, entity, remote_id) DO UPDATE SET local_key = excluded.local_key,"
            " updated_at = excluded.updated_at",
            (channel, entity, remote_id, local_key, now_iso()),
        )

    # -- orders -------------------------------------------------------------------------------
    def order(self, channel: str, order_id: str) -> OrderRow | None:
        row = self.conn.execute(
            "SELECT channel, order_id, state, version, bo_number, payload, reason_code, reason, seen_at, updated_at"
            " FROM orders WHERE channel = ? AND order_id = ?",
            (channel, order_id),
        ).fetchone()
        return _order_row(row) if row else None

    def orders_in_state(self, channel: str, states: Sequence[str]) -> list[OrderRow]:
        marks = ",".join("?" * len(states))
        rows = self.conn.execute(
            "SELECT channel, order_id, state, version, bo_number, payload, reason_code, reason, seen_at, updated_at"  # nosec B608
            f" FROM orders WHERE channel = ? AND state IN ({marks}) ORDER BY seen_at, order_id",  # noqa: S608
            (channel, *states),
        ).fetchall()
        return [_order_row(r) for r in rows]

    def set_order(
        self,
        channel: str,
        order_id: str,
        state: str,
        *,
        version: str | None = None,
        bo_number: str | None = None,
        payload: dict[str, Any] | None = None,
        reason_code: str | None = None,
        reason: str | None = None,
    ) -> None:
        """Upsert one order's state; fields given as None keep their stored value."""
        stamp = now_iso()
        self.conn.execute(
            "INSERT INTO orders (channel, order_id, state, version, bo_number, payload, reason_code, reason,"
            " seen_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (channel, order_id) DO UPDATE SET state = excluded.state,"
            " version = coalesce(excluded.version, orders.version),"
            " bo_number = coalesce(excluded.bo_number, orders.bo_number),"
            " payload = coalesce(excluded.payload, orders.payload),"
            " reason_code = excluded.reason_code, reason = excluded.reason, updated_at = excluded.updated_at",
            (
                channel, order_id, state, version, bo_number,
                json.dumps(payload, default=str) if payload is not None else None,
                reason_code, reason, stamp, stamp,
            ),
        )

    def order_counts(self, channel: str) -> dict[str, int]:
        rows = self.conn.execute("SELECT state, count(*) FROM orders WHERE channel = ? GROUP BY state", (channel,))
        return dict(rows.fetchall())

    # -- order events -------------------------------------------------------------------------
    def event_states(self, channel: str, event_ids: Sequence[str]) -> dict[str, str]:
        return dict(rows_in(self.conn, "SELECT event_id, state FROM events WHERE channel = ? AND event_id IN ({})",
                            (channel,), event_ids))

    def event_marks(self, channel: str, event_ids: Sequence[str]) -> dict[str, tuple[str, str | None]]:
        """event_id → (state, fingerprint of the event as last handed to the channel; None if unknown)."""
        return {e: (state, fp) for e, state, fp in rows_in(
            self.conn, "SELECT event_id, state, fingerprint FROM events WHERE channel = ? AND event_id IN ({})",
            (channel,), event_ids)}

    def set_event(
        self, channel: str, event_id: str, order_id: str, type_: str, rank: int, state: str,
        payload: dict[str, Any] | None = None, reason: str | None = None, fingerprint: str | None = None,
    ) -> None:
        self.conn.execute(
            "INSERT INTO events (channel, event_id, order_id, type, rank, state, payload, reason, updated_at,"
            " fingerprint) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (channel, event_id) DO UPDATE SET"
            " state = excluded.state, payload = coalesce(excluded.payload, events.payload),"
            " reason = excluded.reason, updated_at = excluded.updated_at,"
            " fingerprint = coalesce(excluded.fingerprint, events.fingerprint)",
            (channel, event_id, order_id, type_, rank, state, json.dumps(payload, default=str) if payload else None, reason,
             now_iso(), fingerprint),
        )

    def pending_events(self, channel: str) -> list[tuple[str, str, str, int, dict[str, Any]]]:
        """(event_id, order_id, type, rank, payload) of events held back, in send order."""
        rows = self.conn.execute(
            "SELECT event_id, order_id, type, rank, payload FROM events WHERE channel = ? AND state = 'pending'"
            " ORDER BY order_id, rank",
            (channel,),
        ).fetchall()
        return [(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in rows]

    # -- stock --------------------------------------------------------------------------------
    def set_balances(self, channel: str, rows: Iterable[tuple[str, str, int, int]]) -> None:
        """rows: (code, warehouse, available, reserved)."""
        self.conn.executemany(
            "INSERT INTO stock_balances (channel, code, warehouse, available, reserved) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (channel, code, warehouse) DO UPDATE SET available = excluded.available,"
            " reserved = excluded.reserved"
            # an unchanged balance is not rewritten: a no-change cycle re-reads the last page of the feed
            " WHERE stock_balances.available IS NOT excluded.available"
            " OR stock_balances.reserved IS NOT excluded.reserved",
            [(channel, *row) for row in rows],
        )

    def balances(self, channel: str, codes: Sequence[str]) -> dict[tuple[str, str], tuple[int, int]]:
        rows = rows_in(self.conn, "SELECT code, warehouse, available, reserved FROM stock_balances"
                                  " WHERE channel = ? AND code IN ({})", (channel,), codes)
        return {(code, warehouse): (available, reserved) for code, warehouse, available, reserved in rows}

    def balance_codes(self, channel: str, after: str, limit: int) -> list[str]:
        """The codes with a balance, in code order after `after`: a walk over all of them, page by page."""
        rows = self.conn.execute("SELECT DISTINCT code FROM stock_balances WHERE channel = ? AND code > ?"
                                 " ORDER BY code LIMIT ?", (channel, after, limit))
        return [r[0] for r in rows]

    # -- price boundaries ---------------------------------------------------------------------
    def set_price_boundaries(self, channel: str, rows: Iterable[tuple[str, str | None, str]]) -> None:
        """rows: (code, next_at or None to forget, serialized record)."""
        rows = list(rows)
        self.conn.executemany(
            "DELETE FROM price_boundaries WHERE channel = ? AND code = ?",
            [(channel, code) for code, next_at, _ in rows if next_at is None],
        )
        self.conn.executemany(
            "INSERT INTO price_boundaries (channel, code, next_at, record) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (channel, code) DO UPDATE SET next_at = excluded.next_at, record = excluded.record"
            " WHERE price_boundaries.next_at IS NOT excluded.next_at OR price_boundaries.record IS NOT excluded.record",
            [(channel, code, next_at, record) for code, next_at, record in rows if next_at is not None],
        )

    def due_prices(self, channel: str, now: str, limit: int = 1000) -> list[tuple[str, str]]:
        rows = self.conn.execute(
            "SELECT code, record FROM price_boundaries WHERE channel = ? AND next_at <= ? ORDER BY next_at LIMIT ?",
            (channel, now, limit),
        )
        return rows.fetchall()

    # -- quarantine ---------------------------------------------------------------------------
    def quarantine(
        self, channel: str, entity: str, key: str, reason_code: str, reason: str, payload: Any,
        source_fingerprint: str | None = None, waiting_for: Sequence[tuple[str, str]] = (),
    ) -> None:
        stamp = now_iso()
        waits = json.dumps([[kind, ref] for kind, ref in waiting_for], ensure_ascii=False) if waiting_for else None
        self.conn.execute(
            "INSERT INTO quarantine (channel, entity, key, state, reason_code, reason, payload, source_fingerprint,"
            " first_seen, last_seen, attempts, waiting_for) VALUES (?, ?, ?, 'open', ?, ?, ?, ?, ?, ?, 1, ?)"
            " ON CONFLICT (channel, entity, key) DO UPDATE SET state = 'open', reason_code = excluded.reason_code,"
            " reason = excluded.reason, payload = excluded.payload, waiting_for = excluded.waiting_for,"
            " source_fingerprint = excluded.source_fingerprint, last_seen = excluded.last_seen,"
            " first_seen = CASE WHEN quarantine.state = 'open' THEN quarantine.first_seen ELSE excluded.first_seen END,"
            " attempts = CASE WHEN quarantine.state = 'open' THEN quarantine.attempts + 1 ELSE 1 END,"
            " closed_by = NULL, close_reason = NULL"
            # a record dropped by an operator stays dropped until it changes at its source
            " WHERE NOT (quarantine.state = 'dropped' AND excluded.source_fingerprint IS NOT NULL"
            " AND quarantine.source_fingerprint IS excluded.source_fingerprint)",
            (channel, entity, _text(key), _text(reason_code), _text(reason[:2000]), _dump(payload), source_fingerprint,
             stamp, stamp, waits),
        )

    def has_open_quarantine(self, channel: str, entity: str) -> bool:
        """Any open row of (channel, entity): one indexed LIMIT 1 query (usually there is none)."""
        return self.conn.execute(
            "SELECT 1 FROM quarantine WHERE state = 'open' AND channel = ? AND entity = ? LIMIT 1", (channel, entity)
        ).fetchone() is not None

    def has_held_quarantine(self, channel: str, entity: str) -> bool:
        """Any open or dropped row of (channel, entity): the records a push must not send again unchanged."""
        return self.conn.execute(
            "SELECT 1 FROM quarantine WHERE state IN ('open', 'dropped') AND channel = ? AND entity = ? LIMIT 1",
            (channel, entity)).fetchone() is not None

    def held_quarantine(self, channel: str, entity: str, keys: Sequence[str]) -> dict[str, tuple[str, str | None]]:
        """key → (state, source fingerprint) of the open and dropped rows among `keys` (one query per 900)."""
        rows = rows_in(self.conn, "SELECT key, state, source_fingerprint FROM quarantine WHERE channel = ?"
                                  " AND entity = ? AND state IN ('open', 'dropped') AND key IN ({})",
                       (channel, entity), keys)
        return {key: (state, fp) for key, state, fp in rows}

    def quarantine_fingerprints(self, channel: str, entity: str, keys: Sequence[str]) -> dict[str, str]:
        """Source fingerprints of the open rows among `keys`: an unchanged rejected record is not sent again."""
        rows = rows_in(self.conn, "SELECT key, source_fingerprint FROM quarantine WHERE channel = ? AND entity = ?"
                                  " AND state = 'open' AND key IN ({})", (channel, entity), keys)
        return {key: fp for key, fp in rows if fp}

    def release(self, channel: str, entity: str, keys: Iterable[str], by: str = "syncagent",
                why: str = "applied") -> None:
        """Close open quarantine rows for keys that have now been applied (or are `why` else)."""
        self.conn.executemany(
            "UPDATE quarantine SET state = 'released', closed_by = ?, close_reason = ?, last_seen = ?"
            " WHERE channel = ? AND entity = ? AND key = ? AND state = 'open'",
            [(by, why, now_iso(), channel, entity, key) for key in keys],
        )

    def drop_quarantine(self, channel: str, entity: str, key: str, by: str, why: str) -> bool:
        cur = self.conn.execute(
            "UPDATE quarantine SET state = 'dropped', closed_by = ?, close_reason = ?, last_seen = ?"
            " WHERE channel = ? AND entity = ? AND key = ? AND state = 'open'",
            (by, why, now_iso(), channel, entity, key),
        )
        return cur.rowcount > 0

    def quarantined(
        self, channel: str | None = None, entity: str | None = None, state: str | None = "open",
        row_id: int | None = None, key: str | None = None,
    ) -> list[QuarantineRow]:
        sql = ("SELECT rowid, channel, entity, key, state, reason_code, reason, payload, source_fingerprint,"
               " first_seen, last_seen, attempts, closed_by, close_reason, waiting_for FROM quarantine WHERE 1 = 1")
        args: list[Any] = []
        for column, value in (("channel", channel), ("entity", entity), ("state", state), ("rowid", row_id),
                              ("key", key)):
            if value is not None:
                sql += f" AND {column} = ?"
                args.append(value)
        rows = self.conn.execute(sql + " ORDER BY first_seen, channel, entity, key", args).fetchall()
        return [QuarantineRow(*r[:7], _load(r[7]), *r[8:14], _waits(r[14])) for r in rows]

    def quarantine_counts(self) -> dict[tuple[str, str], int]:
        rows = self.conn.execute(
            "SELECT channel, entity, count(*) FROM quarantine WHERE state = 'open' GROUP BY channel, entity"
        )
        return {(c, e): n for c, e, n in rows}

    # -- SKU DE/PARA map: back office code → the channel's SKU ------------------------------
    def sku_map_size(self, channel: str) -> int:
        row = self.conn.execute("SELECT count(*) FROM sku_map WHERE channel = ?", (channel,)).fetchone()
        return int(row[0])

    def channel_skus(self, channel: str, codes: Sequence[str]) -> dict[str, str]:
        """code → channel SKU for the mapped ones among `codes` (one query per 900)."""
        return dict(rows_in(self.conn, "SELECT code, channel_sku FROM sku_map WHERE channel = ? AND code IN ({})",
                            (channel,), codes))

    def backoffice_codes(self, channel: str, skus: Sequence[str]) -> dict[str, str]:
        """channel SKU → back office code for the mapped ones among `skus`."""
        return dict(rows_in(self.conn, "SELECT channel_sku, code FROM sku_map WHERE channel = ?"
                                       " AND channel_sku IN ({})", (channel,), skus))

    def set_sku_map(self, channel: str, rows: Iterable[tuple[str, str]], source: str, *, replace: bool = False) -> int:
        """Store (code, channel_sku) pairs; `replace` forgets the channel's other pairs first."""
        rows = list(rows)
        self.forget_page_digests(channel)  # the records go out under other SKUs now
        if replace:
            self.conn.execute("DELETE FROM sku_map WHERE channel = ?", (channel,))
        else:  # a SKU moving to another code: the old pair goes first (the SKU is unique per channel)
            self.conn.executemany("DELETE FROM sku_map WHERE channel = ? AND channel_sku = ? AND code <> ?",
                                  [(channel, sku, code) for code, sku in rows])
        stamp = now_iso()
        self.conn.executemany(
            "INSERT INTO sku_map (channel, code, channel_sku, source, updated_at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (channel, code) DO UPDATE SET channel_sku = excluded.channel_sku,"
            " source = excluded.source, updated_at = excluded.updated_at",
            [(channel, code, sku, source, stamp) for code, sku in rows],
        )
        return len(rows)

    def sku_map(self, channel: str) -> Iterator[tuple[str, str, str, str]]:
        """(code, channel_sku, source, updated_at) ordered by code, streamed."""
        yield from self.conn.execute(
            "SELECT code, channel_sku, source, updated_at FROM sku_map WHERE channel = ? ORDER BY code", (channel,)
        )

    # -- backlog: work the journal knows is waiting --------------------------------------------
    def backlog(self, channel: str, now: str) -> dict[str, int]:
        """Per flow, records known to wait: prices due at a boundary, events held back, orders not
        yet in the back office or not acknowledged, catalogue records waiting for their SKU."""
        one = self.conn.execute
        due = one("SELECT count(*) FROM price_boundaries WHERE channel = ? AND next_at <= ?", (channel, now))
        events = one("SELECT count(*) FROM events WHERE channel = ? AND state = 'pending'", (channel,))
        orders = one("SELECT count(*) FROM orders WHERE channel = ? AND state IN ('parked', 'creating', 'created')",
                     (channel,))
        found = {"prices": int(due.fetchone()[0]), "order-events": int(events.fetchone()[0]),
                 "orders": int(orders.fetchone()[0])}
        rows = one("SELECT entity, count(*) FROM quarantine WHERE channel = ? AND state = 'open'"
                   " AND reason_code = 'unmapped_sku' GROUP BY entity", (channel,))
        for entity, count in rows:
            found[entity] = found.get(entity, 0) + int(count)
        found.update({flow: n for flow, n in self.sac_backlog(channel, now).items() if n})
        return found

    # -- alerts: what was e-mailed, so each problem is told once and its recovery once ------------
    def late_orders(self, seen_before: str) -> list[tuple[str, str, str, str | None]]:
        """(channel, order id, state, reason) of orders not in the back office yet, first seen before the time."""
        return self.conn.execute(
            "SELECT channel, order_id, state, reason FROM orders WHERE state IN ('parked', 'creating', 'quarantined')"
            " AND seen_at < ?", (seen_before,)).fetchall()

    def alerts(self) -> dict[str, tuple[str, str, str | None, str | None, int, str]]:
        """key → (key, state, opened_at, resolved_at, flaps, subject)."""
        return {row[0]: row for row in self.conn.execute(
            "SELECT key, state, opened_at, resolved_at, flaps, subject FROM alerts")}

    def set_alert(self, key: str, state: str, opened_at: str | None, subject: str, *, flaps: int) -> None:
        """Upsert one alert; opened_at None keeps the stored one."""
        self.conn.execute(
            "INSERT INTO alerts (key, state, opened_at, resolved_at, flaps, subject) VALUES (?, ?, ?, NULL, ?, ?)"
            " ON CONFLICT (key) DO UPDATE SET state = excluded.state,"
            " opened_at = coalesce(excluded.opened_at, alerts.opened_at),"
            " flaps = excluded.flaps, subject = excluded.subject",
            (key, state, opened_at, flaps, subject),
        )

    def resolve_alert(self, key: str, state: str, resolved_at: str) -> None:
        """An alert whose problem cleared: `recovering` (it flapped; wait) or `closed`."""
        self.conn.execute("UPDATE alerts SET state = ?, resolved_at = ? WHERE key = ?", (state, resolved_at, key))

    # -- runs and channel state ---------------------------------------------------------------
    def start_run(self, channel: str, flow: str) -> int:
        self.check_still_there()  # each step starts here: a daemon notices between its steps too
        cur = self.conn.execute(
            "INSERT INTO runs (channel, flow, started_at) VALUES (?, ?, ?)", (channel, flow, now_iso())
        )
        return int(cur.lastrowid or 0)

    def finish_run(
        self, run_id: int, result: str, *, read: int, sent: int, unchanged: int, quarantined: int,
        error: str | None = None,
    ) -> None:
        self.conn.execute(
            "UPDATE runs SET finished_at = ?, result = ?, read = ?, sent = ?, unchanged = ?, quarantined = ?,"
            " error = ? WHERE id = ?",
            (now_iso(), result, read, sent, unchanged, quarantined, error, run_id),
        )

    def most_read(self, channel: str, flow: str) -> int | None:
        """The most records one complete run of the step read (None: no such run yet)."""
        row = self.conn.execute(
            "SELECT max(read) FROM runs WHERE channel = ? AND flow = ? AND result IN ('ok', 'quarantined')",
            (channel, flow)).fetchone()
        return int(row[0]) if row and row[0] else None

    def last_runs(self) -> list[RunRow]:
        rows = self.conn.execute(
            "SELECT id, channel, flow, started_at, finished_at, result, read, sent, unchanged, quarantined, error"
            " FROM runs WHERE id IN (SELECT max(id) FROM runs GROUP BY channel, flow) ORDER BY channel, flow"
        ).fetchall()
        return [RunRow(*r) for r in rows]

    def set_channel_state(self, channel: str, auth_state: str, message: str | None = None) -> None:
        """Written only when it changes (updated_at: since when), so a quiet cycle commits nothing here."""
        self.conn.execute(
            "INSERT INTO channel_state (channel, auth_state, message, updated_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (channel) DO UPDATE SET auth_state = excluded.auth_state, message = excluded.message,"
            " updated_at = excluded.updated_at"
            " WHERE channel_state.auth_state IS NOT excluded.auth_state OR channel_state.message IS NOT excluded.message",
            (channel, auth_state, message, now_iso()),
        )

    def channel_states(self) -> dict[str, tuple[str, str | None]]:
        rows = self.conn.execute("SELECT channel, auth_state, message FROM channel_state")
        return {c: (s, m) for c, s, m in rows}

    # -- connector state (what a connector must keep across runs: e.g. a rotating refresh token) ----
    def _state_connection(self) -> sqlite3.Connection:
        """A connection of its own: a connector may save state from a sender thread while the engine's
        thread holds a transaction on the main one, and the write must be committed on its own."""
        if str(self.path) == ":memory:":
            return self.conn
        if self._state_conn is None:
            conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=10000")
            self._state_conn = conn
        return self._state_conn

    def state(self, channel: str, key: str) -> str | None:
        """A connector's saved value (None: never saved, or cleared)."""
        with self._state_lock:
            row = self._state_connection().execute(
                "SELECT value FROM connector_state WHERE channel = ? AND key = ?", (channel, key)).fetchone()
        return row[0] if row else None

    def set_state(self, channel: str, key: str, value: str | None, *, expected: str | None | object = ...) -> bool:
        """Save one value, committed and on disk (synchronous=FULL) before returning: the caller may act on
        it at once (a refresh token that works only once must be stored before its access token is used).

        With `expected`, only if the value is still that (another process may have stored a newer one
        meanwhile): answers whether it was saved.
        """
        with self._state_lock:
            conn = self._state_connection()
            self.check_still_there()
            if self.conn.in_transaction and self._tx_thread == threading.get_ident():
                # it would wait for this very thread's transaction to end: a bug, not a busy journal
                raise JournalError("connector state cannot be saved inside a journal transaction of the same "
                                   "thread (it must be durable on its own before it is used)")
            failpoints.hit("state.before_commit")
            conn.execute("BEGIN IMMEDIATE")
            try:
                if expected is not ...:
                    row = conn.execute("SELECT value FROM connector_state WHERE channel = ? AND key = ?",
                                       (channel, key)).fetchone()
                    if (row[0] if row else None) != expected:
                        conn.execute("ROLLBACK")
                        return False
                conn.execute(_SET_STATE, (channel, key, value, now_iso()))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            failpoints.hit("state.after_commit")
            return True

    @contextlib.contextmanager
    def exclusive(self, name: str) -> Iterator[None]:
        """Held by one thread of one process at a time (flock on `<journal>.<name>.lock`); a journal in memory
        has only this process to keep out."""
        lock = self._named_locks.setdefault(name, threading.Lock())
        with lock:
            if str(self.path) == ":memory:":
                yield
                return
            safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:100]
            fd = os.open(f"{self.path}.{safe}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # closing releases the lock

    def state_of(self, channel: str) -> JournalState:
        """The `ConnectorState` of one channel, backed by this journal."""
        return JournalState(self, channel)


_SET_STATE = ("INSERT INTO connector_state (channel, key, value, updated_at) VALUES (?, ?, ?, ?)"
              " ON CONFLICT (channel, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at")


class JournalState:
    """One channel's connector state in the journal (the `ConnectorState` a connector is given)."""

    def __init__(self, journal: Journal, channel: str) -> None:
        self.journal = journal
        self.channel = channel

    def get(self, key: str) -> str | None:
        return self.journal.state(self.channel, key)

    def put(self, key: str, value: str | None) -> None:
        self.journal.set_state(self.channel, key, value)

    def put_if(self, key: str, value: str | None, expected: str | None) -> bool:
        return self.journal.set_state(self.channel, key, value, expected=expected)

    @contextlib.contextmanager
    def exclusive(self, name: str) -> Iterator[None]:
        """A lock file beside the journal, per channel and name: the daemon, `doctor`, `check-config --online`
        and `auth` may run at once, and some work (a refresh) must never."""
        with self.journal.exclusive(f"{self.channel}.{name}"):
            yield


REFERENCE_CODES = ("missing_reference", "unmapped_sku")
# "unknown payment method 'CRIPTO'", "unknown product 'NOVO-1'" (back office 422 details)
_UNKNOWN = re.compile(r"unknown ([a-z][a-z ]{1,30}?) '([^']{1,80})'")
# "customer 123 is not known in the back office" (the engine's missing_reference)
_NOT_KNOWN = re.compile(r"\b(customer|product|seller|payment method) (\S{1,80}) is not known")
_QUOTED = re.compile(r"'([^']{1,80})'")


# -- read-only views for `doctor`, on a connection of its own (the journal may be locked or damaged) -----
def open_readonly(path: str | Path) -> sqlite3.Connection:
    """A read-only connection that takes no lock and runs no migration (it waits 5 s for a writer)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


def integrity_problems(conn: sqlite3.Connection) -> list[str]:
    """SQLite's integrity check: ["ok"] when the file is sound."""
    return [row[0] for row in conn.execute("PRAGMA integrity_check")]


def schema_version_of(conn: sqlite3.Connection) -> int:
    """The journal's recorded schema version (0: none recorded)."""
    try:
        return int(conn.execute("SELECT max(version) FROM migrations").fetchone()[0] or 0)
    except sqlite3.OperationalError:
        return 0


def open_quarantine(conn: sqlite3.Connection
                    ) -> list[tuple[str, str, str, str | None, str | None, tuple[tuple[str, str], ...]]]:
    """(channel, entity, key, reason code, reason, waiting for) of every open quarantine row."""
    rows = conn.execute("SELECT channel, entity, key, reason_code, reason, waiting_for FROM quarantine"
                        " WHERE state = 'open' ORDER BY channel, entity, key").fetchall()
    return [(*r[:5], _waits(r[5])) for r in rows]


def quarantine_backlog(conn: sqlite3.Connection) -> list[tuple[str, str, int, str | None]]:
    """(channel, entity, open rows, oldest first_seen) per channel and entity."""
    return conn.execute("SELECT channel, entity, count(*), min(first_seen) FROM quarantine WHERE state = 'open'"
                        " GROUP BY channel, entity ORDER BY channel, entity").fetchall()


def missing_references(code: str, reason: str, waiting_for: Sequence[tuple[str, str]] = ()
                       ) -> set[tuple[str, str]]:
    """What a quarantined record waits for: {(kind, reference)}.

    The engine retries an order once these exist; `doctor` groups the waiting records by them.
    Rows carry it as data (`waiting_for`: what the sink's connector or the engine named); only
    rows recorded before that (journal schema < 8) are read from their reason's words.
    """
    if waiting_for:
        return {(kind, ref) for kind, ref in waiting_for}
    found = {(m.group(1).strip(), m.group(2)) for m in _UNKNOWN.finditer(reason)}
    found |= {(m.group(1), m.group(2)) for m in _NOT_KNOWN.finditer(reason)}
    if not found and (code in REFERENCE_CODES or code.startswith(("unmapped_", "unknown_"))):
        quoted = _QUOTED.search(reason)
        found.add((code.removeprefix("unmapped_").removeprefix("unknown_").replace("_", " "),
                   quoted.group(1) if quoted else reason[:80]))
    return found


def rows_in(conn: sqlite3.Connection, sql: str, args: Sequence[Any], keys: Sequence[str]) -> Iterator[Any]:
    """The rows of `sql` (its `IN ({})` filled with `keys`), 900 keys a query: SQLite's variable limit."""
    for start in range(0, len(keys), 900):
        chunk = list(keys[start : start + 900])
        yield from conn.execute(sql.format(",".join("?" * len(chunk))), (*args, *chunk))  # nosec B608


def _order_row(row: Sequence[Any]) -> OrderRow:
    payload = json.loads(row[5]) if row[5] else None
    return OrderRow(row[0], row[1], row[2], row[3], row[4], payload, row[6], row[7], row[8], row[9])


def _text(value: str) -> str:
    """Text safe to store: invalid UTF-8 (lone surrogates) replaced."""
    return value.encode("utf-8", "replace").decode("utf-8")


def _dump(payload: Any) -> str | None:
    if payload is None:
        return None
    try:
        return json.dumps(payload, ensure_ascii=True, default=str)[:1_000_000]  # ascii: survives any junk
    except (TypeError, ValueError):
        return repr(payload)[:1_000_000]


def _waits(text: str | None) -> tuple[tuple[str, str], ...]:
    """The stored `waiting_for` list as pairs; anything unreadable is nothing to wait for."""
    try:
        pairs = json.loads(text) if text else []
    except ValueError:
        return ()
    return tuple((str(p[0]), str(p[1])) for p in pairs if isinstance(p, list) and len(p) == 2)


def _load(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text
