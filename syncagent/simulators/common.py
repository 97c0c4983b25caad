"""The small HTTP framework every simulator shares: routing, request log, fault knobs, admin API.

A simulator is a `SimApp` subclass that registers routes and owns one SQLite file. This module
gives each of them, identically:

* ``GET /_admin/requests?after=N`` - every request received (id, ts, method, path, query, body,
  status), in order; ``DELETE /_admin/requests`` clears it;
* ``POST /_admin/faults`` - a seeded fault schedule (see `Faults`); ``DELETE`` clears it;
* ``GET /_admin/health``.

Faults never touch ``/_admin`` paths, so tests can always inspect a misbehaving server.
"""

from __future__ import annotations

import json
import random
import re
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    params: dict[str, str] = field(default_factory=dict)
    # when it arrived: the request log's stamp, so that an answer a fault delays (a timeout) does not
    # place the request after those the client sent meanwhile
    received: float = field(default_factory=time.time)

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def args(self, name: str) -> list[str]:
        return self.query.get(name, [])

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self) -> Any:
        """The JSON body; raises `HttpError` 400 with the error envelope when it is not JSON."""
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise HttpError(400, "invalid_json", f"body is not valid JSON: {exc}") from None


@dataclass
class Response:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    content_type: str = "application/json"

    def encode(self) -> bytes:
        if self.raw is not None:
            return self.raw
        if self.body is None:
            return b""
        return json.dumps(self.body, ensure_ascii=False).encode("utf-8")


class HttpError(Exception):
    """Raised by a handler to answer with the contract's error envelope."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra
        self.headers: dict[str, str] = {}

    def response(self) -> Response:
        error = {"code": self.code, "message": self.message, **self.extra}
        return Response(self.status, {"error": error}, dict(self.headers))


class PerMinute:
    """A platform's budget of calls per minute: past it, 429 with the seconds until a call is free again."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def check(self, budget: int, now: float) -> None:
        """Count one call at `now`; raise 429 when `budget` calls were made in the last 60 s (0: no budget)."""
        if not budget:
            return
        self.calls = [t for t in self.calls if t > now - 60]
        if len(self.calls) >= budget:
            err = HttpError(429, "too_many_requests", "rate limit exceeded")
            err.headers["Retry-After"] = str(max(1, int(self.calls[0] + 60 - now) + 1))
            raise err
        self.calls.append(now)


@dataclass
class Faults:
    """A seeded fault schedule. Rates are probabilities per request (0..1).

    fail_next / fail_status: the next N matching requests answer fail_status.
    rate_5xx, rate_429 (with Retry-After: retry_after), rate_timeout (sleep timeout_sleep s, then
    answer), rate_reset (close the socket without an answer), latency_ms (added to every call).
    commit_then_fail: {"method path regex": rate}: the request is applied, then the answer is a 500
    or a dropped connection (commit_mode: "500" | "drop" | "mixed"). These draws come from a random
    stream of their own, so the requests that other faults hit (whose order varies with thread timing
    and machine load) never shift which commits fail; commit_first: the first N matching commits fail
    whatever the draw, so a schedule that exists to test a lost answer always injects one.
    only: regex of "METHOD /path" that the random faults apply to (default: all but /_admin).
    """

    seed: int = 0
    fail_next: int = 0
    fail_status: int = 500
    rate_5xx: float = 0.0
    rate_429: float = 0.0
    retry_after: int = 1
    rate_timeout: float = 0.0
    timeout_sleep: float = 2.0
    rate_reset: float = 0.0
    latency_ms: int = 0
    commit_then_fail: dict[str, float] = field(default_factory=dict)
    commit_mode: str = "mixed"
    commit_first: int = 0
    only: str | None = None
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.commit_rng = random.Random(f"commit-then-fail:{self.seed}")
        self.commits_matched = 0

    def commit_fault(self, target: str) -> str | None:
        """How an applied request matching `target` ("METHOD /path") fails afterwards, or None."""
        for pattern, rate in self.commit_then_fail.items():
            if not re.search(pattern, target):
                continue
            self.commits_matched += 1
            if self.commits_matched <= self.commit_first or self.commit_rng.random() < rate:
                return self.commit_rng.choice(["500", "drop"]) if self.commit_mode == "mixed" else self.commit_mode
        return None

    def count(self, kind: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1


Handler = Callable[[Request], Response]


class SimApp:
    """Base of every simulator: routes + one SQLite file + request log + faults."""

    system = "sim"

    def __init__(self, db_path: str, *, log_bodies: bool = True) -> None:
        self.db_path = db_path
        self.db = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.lock = threading.RLock()
        self.log_bodies = log_bodies
        self.faults = Faults()
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS _requests (id INTEGER PRIMARY KEY, ts REAL, method TEXT, path TEXT,"
            " query TEXT, body TEXT, status INTEGER, headers TEXT)"
        )
        self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        self.route("GET", "/_admin/requests", self._admin_requests)
        self.route("DELETE", "/_admin/requests", self._admin_clear_requests)
        self.route("POST", "/_admin/faults", self._admin_set_faults)
        self.route("GET", "/_admin/faults", self._admin_get_faults)
        self.route("DELETE", "/_admin/faults", self._admin_clear_faults)
        self.route("GET", "/_admin/health", lambda req: Response(200, {"ok": True, "system": self.system}))

    # -- storage shared by every simulator -----------------------------------------------
    @contextmanager
    def tx(self) -> Iterator[None]:
        """One transaction: a write and what it moves happen together or not at all."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def meta(self, key: str) -> str | None:
        """A setting or counter kept in the simulator's file (it outlives a restart, as the real system's)."""
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row and row[0] is not None else None

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def counter(self, name: str, start: int = 0) -> int:
        """The next value of a named counter (invoice numbers, customer codes, ids), kept in meta."""
        value = int(self.meta(name) or start) + 1
        self.set_meta(name, str(value))
        return value

    # -- routing -------------------------------------------------------------------------
    def route(self, method: str, pattern: str, handler: Handler) -> None:
        """Register a handler; `{name}` in the pattern captures one path segment."""
        regex = "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "$"
        self.routes.append((method, re.compile(regex), handler))

    def dispatch(self, req: Request) -> Response:
        allowed = False
        for method, regex, handler in self.routes:
            match = regex.match(req.path)
            if not match:
                continue
            allowed = True
            if method != req.method:
                continue
            req.params = match.groupdict()
            try:
                with self.lock:
                    return handler(req)
            except HttpError as err:
                return err.response()
        if allowed:
            return HttpError(405, "method_not_allowed", f"{req.method} not allowed on {req.path}").response()
        return HttpError(404, "not_found", f"no route for {req.method} {req.path}").response()

    # -- request log ---------------------------------------------------------------------
    def log_request(self, req: Request, status: int) -> None:
        body = req.body.decode("utf-8", "replace") if self.log_bodies else None
        query = json.dumps(req.query)
        headers = json.dumps({k: v for k, v in req.headers.items() if k not in ("authorization", "x-api-key")})
        with self.lock:
            self.db.execute(
                "INSERT INTO _requests (ts, method, path, query, body, status, headers) VALUES (?,?,?,?,?,?,?)",
                (req.received, req.method, req.path, query, body, status, headers),
            )

    def _admin_requests(self, req: Request) -> Response:
        after = int(req.arg("after", "0") or 0)
        rows = self.db.execute(
            "SELECT id, ts, method, path, query, body, status FROM _requests WHERE id > ? ORDER BY id", (after,)
        ).fetchall()
        items = [
            {"id": r[0], "ts": r[1], "method": r[2], "path": r[3], "query": json.loads(r[4]), "body": r[5], "status": r[6]}
            for r in rows
        ]
        return Response(200, {"items": items})

    def _admin_clear_requests(self, req: Request) -> Response:
        self.db.execute("DELETE FROM _requests")
        return Response(204)

    def _admin_set_faults(self, req: Request) -> Response:
        spec = req.json()
        known = set(Faults.__dataclass_fields__) - {"counts"}
        unknown = set(spec) - known
        if unknown:
            raise HttpError(400, "validation_error", f"unknown fault keys: {sorted(unknown)}")
        self.faults = Faults(**spec)
        return Response(200, self._faults_view())

    def _admin_get_faults(self, req: Request) -> Response:
        return Response(200, self._faults_view())

    def _admin_clear_faults(self, req: Request) -> Response:
        self.faults = Faults()
        return Response(204)

    def _faults_view(self) -> dict[str, Any]:
        view = {k: getattr(self.faults, k) for k in Faults.__dataclass_fields__}
        return view


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet by design
        return

    def _handle(self) -> None:
        app = self.server.app
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        req = Request(
            method=self.command,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        admin = req.path.startswith("/_admin")
        faults = app.faults
        decision = None if admin else self._decide_fault(app, req)
        if decision == "reset":
            faults.count("reset")
            app.log_request(req, 0)
            self._drop()
            return
        if decision in ("5xx", "429", "fail_next"):
            faults.count(decision)
            status = 429 if decision == "429" else (faults.fail_status if decision == "fail_next" else 503)
            err = HttpError(status, "rate_limited" if status == 429 else "server_error", "simulated fault")
            if status == 429:
                err.headers["Retry-After"] = str(faults.retry_after)
            app.log_request(req, status)
            self._send(err.response())
            return
        if decision == "timeout":
            faults.count("timeout")
            time.sleep(faults.timeout_sleep)
        if not admin and faults.latency_ms:
            time.sleep(faults.latency_ms / 1000)
        resp = app.dispatch(req)
        commit_fail = None if admin else self._commit_then_fail(app, req, resp)
        app.log_request(req, resp.status if commit_fail is None else 0 if commit_fail == "drop" else 500)
        if commit_fail == "drop":
            faults.count("commit_drop")
            self._drop()
            return
        if commit_fail == "500":
            faults.count("commit_500")
            self._send(HttpError(500, "server_error", "simulated failure after commit").response())
            return
        self._send(resp)

    def _decide_fault(self, app: SimApp, req: Request) -> str | None:
        f = app.faults
        with app.lock:
            if f.only and not re.search(f.only, f"{req.method} {req.path}"):
                return None
            if f.fail_next > 0:
                f.fail_next -= 1
                return "fail_next"
            roll = f.rng.random()
            for kind, rate in (("5xx", f.rate_5xx), ("429", f.rate_429), ("timeout", f.rate_timeout), ("reset", f.rate_reset)):
                if roll < rate:
                    return kind
                roll -= rate
        return None

    def _commit_then_fail(self, app: SimApp, req: Request, resp: Response) -> str | None:
        if resp.status >= 300 or not app.faults.commit_then_fail:
            return None
        with app.lock:
            return app.faults.commit_fault(f"{req.method} {req.path}")

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _send(self, resp: Response) -> None:
        payload = resp.encode()
        try:
            self.send_response(resp.status)
            if payload:
                self.send_header("Content-Type", resp.content_type)
            self.send_header("Content-Length", str(len(payload)))
            for key, value in resp.headers.items():
                self.send_header(key, value)
            self.end_headers()
            if payload:
                self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, app: SimApp, port: int) -> None:
        self.app = app
        super().__init__(("127.0.0.1", port), _Handler)


@dataclass
class RunningServer:
    """A simulator serving in a background thread of this process (for tests and the demo)."""

    app: SimApp
    server: _Server
    thread: threading.Thread

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.app.db.close()


def serve_in_thread(app: SimApp, port: int = 0) -> RunningServer:
    server = _Server(app, port)
    thread = threading.Thread(target=server.serve_forever, name=f"sim-{app.system}", daemon=True)
    thread.start()
    return RunningServer(app, server, thread)


def serve_forever(app: SimApp, port: int, port_file: str | None = None) -> None:
    """Serve in the foreground: print the chosen port (and write it to port_file) first."""
    server = _Server(app, port)
    chosen = server.server_address[1]
    if port_file:
        with open(port_file, "w", encoding="utf-8") as fh:
            fh.write(str(chosen))
    print(f"{app.system} simulator listening on http://127.0.0.1:{chosen}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


DATE_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})")


def json_type(value: Any) -> str:
    """The JSON name of a value's type, for messages a client developer recognises."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def valid_date_time(text: str) -> bool:
    """An RFC 3339 date-time with an offset: a date alone or a time without offset is not one."""
    if not DATE_TIME.fullmatch(text):
        return False
    try:
        datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError:
        return False
    return True
