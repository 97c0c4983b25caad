"""The daemon's notification endpoint: `POST /hooks/<channel>`, served by waitress.

waitress is a maintained, pure-Python production WSGI server with no dependencies of its own: it
reads each request whole in its I/O loop before a worker thread sees it (a slow client holds no
worker), refuses a body over `max_request_body_size` with 413, bounds open connections, and
understands the proxy's X-Forwarded-For. On top of it, here:

* verification by the channel's connector (`verify_notification`): unverified → 401, logged once
  per (channel, source), never stored or acted on;
* a token bucket per source (429 with Retry-After past it), a bounded queue to the journal (503
  with Retry-After when full): a flood costs neither memory nor the sync's time;
* a client still sending its request `client_timeout` seconds after it began is cut off;
* durability before the answer: one writer thread stores what the request threads hand it in one
  journal transaction per batch (a flood of 10,000 is a few hundred commits, not 10,000), on a
  connection of its own to the journal; only then is the request answered 200 and the step woken.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from syncagent.config import ListenConfig, NotificationSettings
from syncagent.connectors.base import Connector, InboundRequest, Notification
from syncagent.journal import Journal

log = logging.getLogger("syncagent.inbound")

THREADS = 16  # request threads: each waits for its notification's commit, so one commit serves up to this many
QUEUE_MAX = 1000  # notifications waiting for the writer; past it a sender is asked to come back (503)
BATCH_MAX = 500  # notifications stored in one journal transaction
ANSWER_WITHIN = 5.0  # seconds a request waits for its notification to be stored before a 503
KEEP_DONE = timedelta(days=7)  # notifications done are kept this long (status, replays seen as such)
SOURCES_MAX = 4096  # sources with a rate bucket (or a refusal logged) remembered at once

Wake = Callable[[str, str], None]


@dataclass(frozen=True)
class Hook:
    """One channel's endpoint: its connector (which verifies), its settings, the flows it schedules."""

    connector: Connector
    settings: NotificationSettings
    flows: frozenset[str]


class Buckets:
    """A token bucket per source, the least recently seen forgotten past `SOURCES_MAX` (memory stays flat)."""

    def __init__(self, per_second: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_second, self.burst, self.clock = per_second, burst, clock
        self._buckets: collections.OrderedDict[str, tuple[float, float]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def take(self, source: str) -> float:
        """0 when the source may go on; else how many seconds until it may."""
        now = self.clock()
        with self._lock:
            tokens, last = self._buckets.pop(source, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.per_second)
            wait = 0.0 if tokens >= 1 else (1 - tokens) / self.per_second
            self._buckets[source] = (tokens - 1 if tokens >= 1 else tokens, now)
            while len(self._buckets) > SOURCES_MAX:
                self._buckets.popitem(last=False)
        return wait


@dataclass
class _Pending:
    row: tuple[str, str, str, str | None, str, str]
    done: threading.Event = field(default_factory=threading.Event)
    new: bool = False
    error: str | None = None


class Writer:
    """Stores notifications in the journal, a batch per transaction, on a connection of its own."""

    def __init__(self, journal_path: Path, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.journal = Journal(journal_path, lock=False)  # the agent holds the lock; WAL lets both write
        self.clock = clock
        self.queue: queue.Queue[_Pending | None] = queue.Queue(maxsize=QUEUE_MAX)
        self.thread = threading.Thread(target=self._run, name="syncagent-inbound-writer", daemon=True)
        self.stored = 0
        self._pruned = 0.0

    def start(self) -> None:
        self.thread.start()

    def submit(self, row: tuple[str, str, str, str | None, str, str]) -> _Pending | None:
        """Hand a notification over; None when the queue is full (the sender comes back later)."""
        pending = _Pending(row)
        try:
            self.queue.put_nowait(pending)
        except queue.Full:
            return None
        return pending

    def stop(self) -> None:
        with contextlib.suppress(queue.Full):
            self.queue.put(None, timeout=1)
        self.thread.join(timeout=10)
        self.journal.close()

    def _run(self) -> None:
        while True:
            first = self.queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < BATCH_MAX:
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._store(batch)
                    return
                batch.append(item)
            self._store(batch)

    def _store(self, batch: list[_Pending]) -> None:
        try:
            news = self.journal.add_notifications([p.row for p in batch])
        except Exception as exc:  # noqa: BLE001 - each sender is told; the next batch tries again
            log.error("notifications could not be stored in the journal: %s: %s", type(exc).__name__, exc)
            for pending in batch:
                pending.error = str(exc)
                pending.done.set()
            return
        self.stored += len(batch)
        for pending, new in zip(batch, news, strict=True):
            pending.new = new
            pending.done.set()
        if time.monotonic() - self._pruned > 3600:
            self._pruned = time.monotonic()
            with contextlib.suppress(Exception):
                self.journal.prune_notifications((self.clock() - KEEP_DONE).strftime("%Y-%m-%dT%H:%M:%S"))


class Inbound:
    """The WSGI application of `/hooks/<channel>` (also usable without the server, e.g. in unit tests)."""

    def __init__(self, hooks: Mapping[str, Hook], writer: Writer, wake: Wake, listen: ListenConfig,
                 *, clock: Callable[[], float] = time.monotonic) -> None:
        self.hooks = dict(hooks)
        self.writer, self.wake, self.listen = writer, wake, listen
        self.buckets = Buckets(listen.per_second, listen.burst, clock)
        self._refused_logged: collections.OrderedDict[tuple[str, str], None] = collections.OrderedDict()
        self._lock = threading.Lock()
        self.counts: collections.Counter[str] = collections.Counter()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        status, body, headers = self.handle(environ)
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                                *headers])
        return [body]

    def handle(self, environ: dict[str, Any]) -> tuple[str, bytes, list[tuple[str, str]]]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "")
        if path == "/healthz" and method == "GET":
            return _answer("200 OK", {"ok": True})
        parts = path.strip("/").split("/")
        if len(parts) != 2 or parts[0] != "hooks":
            return _answer("404 Not Found", {"error": "not_found"})
        hook = self.hooks.get(parts[1])
        if hook is None:
            return _answer("404 Not Found", {"error": "unknown_channel"})
        if method != "POST":
            return _answer("405 Method Not Allowed", {"error": "method_not_allowed"}, [("Allow", "POST")])
        channel, source = parts[1], str(environ.get("REMOTE_ADDR") or "?")
        wait = self.buckets.take(source)
        if wait:
            self.counts["limited"] += 1
            return _answer("429 Too Many Requests", {"error": "rate_limited"}, [("Retry-After", str(max(1, math.ceil(wait))))])
        body = _read(environ, self.listen.max_body)
        if body is None:
            return _answer("413 Content Too Large", {"error": "too_large", "max_body": self.listen.max_body})
        request = InboundRequest(_headers(environ), dict(parse_qsl(environ.get("QUERY_STRING", ""))), body, source)
        try:
            note = hook.connector.verify_notification(request, hook.settings)
        except Exception as exc:  # noqa: BLE001 - a hostile body never takes the endpoint down
            log.warning("%s: a notification from %s could not be checked: %s: %s", channel, source,
                        type(exc).__name__, exc)
            note = None
        if note is None:
            self._refused(channel, source)
            return _answer("401 Unauthorized", {"error": "unverified"})
        if not note.flow or note.flow not in hook.flows:
            self.counts["ignored"] += 1
            return _answer("200 OK", {"ok": True, "stored": False})  # verified, but no step of ours reads it
        return self._store(channel, source, note, body)

    def _store(self, channel: str, source: str, note: Notification,
               body: bytes) -> tuple[str, bytes, list[tuple[str, str]]]:
        digest = hashlib.sha256(body).hexdigest()
        pending = self.writer.submit((channel, note.flow, note.topic[:100], note.key, digest, source[:100]))
        if pending is None or not pending.done.wait(ANSWER_WITHIN) or pending.error is not None:
            self.counts["busy"] += 1
            return _answer("503 Service Unavailable", {"error": "busy"}, [("Retry-After", "1")])
        self.counts["stored" if pending.new else "duplicate"] += 1
        if pending.new:
            self.wake(channel, note.flow)
        return _answer("200 OK", {"ok": True, "stored": True, "duplicate": not pending.new})

    def _refused(self, channel: str, source: str) -> None:
        self.counts["refused"] += 1
        with self._lock:
            if (channel, source) in self._refused_logged:
                return
            self._refused_logged[(channel, source)] = None
            while len(self._refused_logged) > SOURCES_MAX:
                self._refused_logged.popitem(last=False)
        log.warning("%s: a notification from %s failed its check and was refused (401); further ones from there "
                    "are not logged", channel, source)


class Listener:
    """The endpoint running: waitress in a thread of its own, the writer in another."""

    def __init__(self, listen: ListenConfig, hooks: Mapping[str, Hook], journal_path: Path, wake: Wake) -> None:
        from waitress.server import create_server

        self.writer = Writer(journal_path)
        self.app = Inbound(hooks, self.writer, wake, listen)
        self.listen = listen
        self.server = create_server(
            self.app, host=listen.host, port=listen.port, threads=THREADS, connection_limit=listen.connections,
            channel_timeout=listen.client_timeout, cleanup_interval=max(0.5, min(5.0, listen.client_timeout / 2)),
            max_request_body_size=listen.max_body, ident="syncagent", expose_tracebacks=False,
            trusted_proxy="127.0.0.1", trusted_proxy_count=1, trusted_proxy_headers={"x-forwarded-for"},
            clear_untrusted_proxy_headers=True, log_untrusted_proxy_headers=False,
        )
        timeout = listen.client_timeout
        sending: dict[int, float] = {}  # a request being received (its parser's id) -> when it was first seen

        def maintenance(now: float) -> None:
            """waitress closes idle connections; this also cuts a client still sending its request (a trickle
            that keeps the connection busy) `client_timeout` after it was first seen half received."""
            seen = set()
            for channel in list(self.server.active_channels.values()):
                partial = getattr(channel, "request", None)
                if partial is not None and not channel.requests:
                    seen.add(id(partial))
                    if now - sending.setdefault(id(partial), now) > timeout:
                        channel.will_close = True
                elif not channel.requests and now - channel.last_activity > timeout:
                    channel.will_close = True
            for key in [k for k in sending if k not in seen]:
                del sending[key]

        self.server.maintenance = maintenance  # type: ignore[method-assign]
        self.thread = threading.Thread(target=self.server.run, name="syncagent-inbound", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.effective_port)

    def start(self) -> None:
        self.writer.start()
        self.thread.start()
        log.info("listening for notifications on http://%s:%d/hooks/<channel>", self.listen.host, self.port)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.server.close()
        self.thread.join(timeout=5)
        self.writer.stop()


def _answer(status: str, payload: dict[str, Any],
            headers: list[tuple[str, str]] | None = None) -> tuple[str, bytes, list[tuple[str, str]]]:
    return status, json.dumps(payload).encode(), headers or []


def _headers(environ: Mapping[str, Any]) -> dict[str, str]:
    """The request's headers, names lower-case with dashes (as the platforms document them)."""
    found = {key[5:].lower().replace("_", "-"): str(value) for key, value in environ.items()
             if key.startswith("HTTP_")}
    if environ.get("CONTENT_TYPE"):
        found["content-type"] = str(environ["CONTENT_TYPE"])
    return found


def _read(environ: Mapping[str, Any], limit: int) -> bytes | None:
    """The body, at most `limit` bytes (None: larger). waitress already refused a body over its own cap."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None
    if length > limit:
        return None
    body = environ["wsgi.input"].read(length) if length > 0 else b""
    return body if len(body) <= limit else None


def hooks_of(config: Any, connectors: Mapping[str, Connector]) -> dict[str, Hook]:
    """One hook per enabled channel: its connector, its `notifications:` settings, the flows it schedules."""
    return {c.name: Hook(connectors[c.name], c.notifications, frozenset(f.name for f in c.flows if f.enabled))
            for c in config.channels if c.enabled and c.name in connectors}


def start_listener(agent: Any, wake: Wake) -> Listener:
    """The endpoint of `agent`'s config (`listen:`), started; `wake(channel, flow)` is called per new notification."""
    connectors = {name: setup.connector for name, setup in agent.engine.channels.items()}
    listener = Listener(agent.config.listen, hooks_of(agent.config, connectors), agent.journal.path, wake)
    listener.start()
    return listener
