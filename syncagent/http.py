"""The one HTTP layer every connector uses (DESIGN §5).

* one pooled `requests.Session` per client: timeouts on every call, ``trust_env = False`` (no
  proxy or netrc picked up from the environment), TLS verification on, optional CA bundle;
* retries with tenacity on connection errors, timeouts, 429 and 5xx: capped attempts, full-jitter
  exponential backoff, ``Retry-After`` honoured; a non-idempotent request is retried only when
  the server certainly did not apply it (connection never made, 429) and otherwise raises
  `AmbiguousError` so the caller looks the record up before writing again;
* 401: one single-flight credential refresh and one repeat, then `AuthError`;
* a per-client token bucket (``rate_per_second``), a response size cap, no redirects when
  authenticated;
* an overall deadline per attempt (``total_timeout``): the read timeout bounds each wait for a
  byte, so a server dripping one byte a second would hold a request for ever; a watchdog thread
  cuts the connection of a request past its deadline, and of every request a few seconds after
  `stop_requests()` (SIGTERM), so the daemon stops in seconds whatever a server does;
* every exception message and log line scrubbed of secrets; request headers and bodies are never
  quoted, and a response body only as a short excerpt with anything token-like masked.
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import functools
import json as jsonlib
import logging
import os
import random
import re
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol

import requests
import tenacity
import urllib3.connection
import urllib3.connectionpool
import urllib3.exceptions
from requests.adapters import HTTPAdapter

from syncagent import __version__, failpoints, fastjson
from syncagent.errors import AmbiguousError, AuthError, ChannelError, PermanentError, TransientError

log = logging.getLogger("syncagent.http")

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """Per-client knobs; the defaults suit a well-behaved REST API over the internet."""

    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    max_attempts: int = 5  # total tries of one request, the first included
    backoff_base: float = 0.5  # full jitter: sleep = uniform(0, min(backoff_max, base * 2**retry))
    backoff_max: float = 30.0
    max_retry_after: float = 120.0  # a larger Retry-After is capped: a cycle must not hang for hours
    rate_per_second: float | None = None  # per-client token bucket; None = unlimited
    rate_burst: int = 1
    max_response_bytes: int = 64 * 1024 * 1024
    verify_tls: bool = True
    ca_bundle: str | None = None  # a PEM CA bundle used instead of the system store
    total_timeout: float | None = None  # one attempt, connect to last byte; None: connect + 2 x read

    @property
    def deadline(self) -> float:
        """Seconds one attempt may take in all: time to connect, to the first byte, and as long again for the rest."""
        if self.total_timeout is not None:
            return self.total_timeout
        return self.connect_timeout + 2 * self.read_timeout


STOP_GRACE = 3.0  # seconds a request in flight may still take once the agent is asked to stop


class _Flight:
    """One attempt on the wire: its deadline and the connection it uses, which the watchdog may cut."""

    __slots__ = ("deadline", "conn", "cut")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.conn: Any = None
        self.cut: str | None = None  # why it was cut: "deadline" or "stop"


class _Watchdog:
    """Cuts the connection of an attempt past its deadline, or past the grace after a stop.

    A socket timeout only bounds each wait for a byte; shutting the socket down from another
    thread ends whatever read the request is blocked in (headers or body, plain or TLS). One
    daemon thread for the process, started with the first request; it looks every 0.2 s while
    requests are in flight and sleeps otherwise. `stop()` is safe from a signal handler: it only
    sets values.
    """

    TICK = 0.2

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.lock = threading.Condition(threading.RLock())
        self.flights: set[_Flight] = set()
        self.thread: threading.Thread | None = None
        self.stop_at: float | None = None
        self.stopping = threading.Event()

    def begin(self, seconds: float) -> _Flight:
        flight = _Flight(self.clock() + seconds)
        with self.lock:
            self.flights.add(flight)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._watch, name="syncagent-http-watchdog", daemon=True)
                self.thread.start()
            self.lock.notify()
        return flight

    def attach(self, flight: _Flight, conn: Any) -> None:
        """The connection `flight` sends on (a pooled one may serve many flights, one at a time)."""
        with self.lock:
            flight.conn = conn
            conn.syncagent_flight = flight

    def end(self, flight: _Flight) -> None:
        with self.lock:
            self.flights.discard(flight)
            if flight.conn is not None and getattr(flight.conn, "syncagent_flight", None) is flight:
                flight.conn.syncagent_flight = None

    def stop(self, grace: float) -> None:
        """Every attempt in flight, and every later one, ends at the latest `grace` seconds from now."""
        if self.stop_at is None:
            self.stop_at = self.clock() + grace
        self.stopping.set()

    def resume(self) -> None:
        self.stop_at = None
        self.stopping.clear()

    def sleep(self, seconds: float) -> None:
        """A backoff pause that a stop ends at once."""
        self.stopping.wait(seconds)

    def _watch(self) -> None:
        while True:
            with self.lock:
                while not self.flights:
                    self.lock.wait()
                now, stop_at = self.clock(), self.stop_at
                for flight in list(self.flights):
                    if flight.cut is None and stop_at is not None and now >= stop_at:
                        self._cut(flight, "stop")
                    elif flight.cut is None and now >= flight.deadline:
                        self._cut(flight, "deadline")
                    elif flight.cut is not None:
                        self._cut(flight, flight.cut)  # a connection made after the cut (a retry inside urllib3)
            time.sleep(self.TICK)

    @staticmethod
    def _cut(flight: _Flight, why: str) -> None:
        flight.cut = why
        socket_conn = flight.conn  # urllib3's HTTP connection (not a connector)
        sock = getattr(socket_conn, "sock", None) if socket_conn is not None else None
        if sock is None or getattr(socket_conn, "syncagent_flight", None) is not flight:
            return  # not connected yet (connect_timeout bounds that), or the connection serves another request
        try:
            socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the blocked read returns at once
        except OSError:
            pass  # already closed


_WATCHDOG = _Watchdog()
_CURRENT = threading.local()  # the flight of the request this thread is sending, for the connection to find


def _after_fork() -> None:
    """A forked child starts with a watchdog of its own: the parent's thread and lock state do not come along."""
    global _WATCHDOG
    _WATCHDOG = _Watchdog()


os.register_at_fork(after_in_child=_after_fork)


def stop_requests(grace: float = STOP_GRACE) -> None:
    """The agent is stopping: requests in flight get `grace` seconds more, then are cut; none is retried."""
    _WATCHDOG.stop(grace)


def _pause(seconds: float) -> None:
    _WATCHDOG.sleep(seconds)


def resume_requests() -> None:
    """Undo `stop_requests` (the daemon returned; a test runs another)."""
    _WATCHDOG.resume()


class _WatchedConnection:
    """Tells the watchdog which connection the current thread's attempt goes out on."""

    def request(self, *args: Any, **kwargs: Any) -> Any:
        flight = getattr(_CURRENT, "flight", None)
        if flight is not None:
            _WATCHDOG.attach(flight, self)
        return super().request(*args, **kwargs)  # type: ignore[misc]


class _HTTPConnection(_WatchedConnection, urllib3.connection.HTTPConnection):
    pass


class _HTTPSConnection(_WatchedConnection, urllib3.connection.HTTPSConnection):
    pass


class _HTTPPool(urllib3.connectionpool.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(urllib3.connectionpool.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class _Adapter(HTTPAdapter):
    """requests' adapter, with connections the watchdog can cut."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret (4 characters or more), in every form it may be quoted in, with ***.

    Shorter values are skipped: masking "ab" everywhere would garble messages and hide nothing.
    Longest first, so a secret that contains another is masked whole.
    """
    return mask(text, masks(secrets))


def mask(text: str, forms: Iterable[str]) -> str:
    """`text` with each of `forms` (from `masks`, longest first) replaced by ***."""
    for form in forms:
        if form in text:
            text = text.replace(form, "***")
    return text


def masks(secrets: Iterable[str]) -> tuple[str, ...]:
    """Every form of every secret worth masking, longest first."""
    forms = {form for secret in secrets if secret and len(secret) >= 4 for form in secret_forms(secret)}
    return tuple(sorted(forms, key=lambda f: (-len(f), f)))


@functools.lru_cache(maxsize=512)
def secret_forms(secret: str) -> frozenset[str]:
    """The ways a library or a server may quote `secret` in a message.

    Raw; escaped as Python (``repr``, of the text and of its bytes) and JSON write it (a trailing
    CR/LF becomes ``\\r\\n``); percent-encoded as in a URL or a form body; base64 as in a Basic
    ``Authorization`` header. Base64 of ``user:secret`` depends on where the secret starts: for
    each of the three alignments the characters made of the secret's bits alone are masked, so at
    most a few bits at its edges can show.
    """
    raw = secret.encode("utf-8", "surrogatepass")
    forms = {
        secret, repr(secret)[1:-1], repr(secret + "'\"")[1:-4], repr(raw)[2:-1],
        secret.encode("unicode_escape").decode("ascii"),
        jsonlib.dumps(secret)[1:-1], jsonlib.dumps(secret, ensure_ascii=False)[1:-1],
        urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret, safe=""), urllib.parse.quote(secret),
    }
    forms.add(base64.b64encode(raw).decode("ascii"))
    for pad in range(3):
        encoded = base64.b64encode(b"\0" * pad + raw).decode("ascii")
        first, end = -(-8 * pad // 6), 8 * (pad + len(raw)) // 6  # characters made of the secret's bits only
        core = encoded[first:end]
        if len(core) >= 6:  # shorter runs would mask unrelated base64 here and there
            forms.update((core, core.replace("+", "-").replace("/", "_")))
    return frozenset(f for f in forms if len(f) >= 4)


# runs of characters tokens are made of: long ones, or shorter ones holding a digit, are masked in
# body excerpts, because a server may echo a credential we do not know (e.g. a token just issued)
_TOKENISH = re.compile(r"[A-Za-z0-9_\-.~+/=%]{6,}")


def _mask_tokenish(match: re.Match[str]) -> str:
    run = match.group(0)
    return "***" if len(run) >= 16 or any(c.isdigit() for c in run) else run


def excerpt(content: bytes, secrets: Iterable[str] = (), limit: int = 60) -> str:
    """A short, one-line, secret-free glimpse of a body, enough to tell an HTML error page from JSON."""
    text = redact(content[:1024].decode("utf-8", "replace"), secrets)
    text = _TOKENISH.sub(_mask_tokenish, " ".join(text.split()))
    return text if len(text) <= limit else text[:limit] + "…"


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """A fully read answer: the caller interprets statuses other than 401/429/5xx itself."""

    status: int
    headers: Mapping[str, str]
    content: bytes
    url: str = ""
    secrets: tuple[str, ...] = field(default=(), repr=False, compare=False)

    def json(self) -> Any:
        """The parsed body (None when empty); a non-JSON answer is a transient bad_response."""
        ctype = self.headers.get("Content-Type", self.headers.get("content-type", "")) or ""
        where = redact(self.url, self.secrets) or "answer"
        if self.content and "json" not in ctype.lower():
            raise TransientError(f"{where}: expected JSON, got {ctype or 'no content type'} "
                                 f"({len(self.content)} bytes: {excerpt(self.content, self.secrets)!r})",
                                 status=self.status, code="bad_response")
        try:
            return fastjson.loads(self.content) if self.content else None
        except (ValueError, UnicodeDecodeError) as exc:
            at = f"{type(exc).__name__} at {exc.pos}" if hasattr(exc, "pos") else str(exc)
            raise TransientError(f"{where}: the answer is not valid JSON ({at} of {len(self.content)} bytes: "
                                 f"{excerpt(self.content, self.secrets)!r})",
                                 status=self.status, code="bad_response") from None

    def _error(self) -> dict[str, Any]:
        try:  # fastjson: a hostile error body (nested 10^5 deep, say) is no envelope, not a crash
            body = fastjson.loads(self.content)
        except (ValueError, UnicodeDecodeError):
            return {}
        error = body.get("error") if isinstance(body, dict) else None
        return error if isinstance(error, dict) else {}

    def error_code(self) -> str | None:
        """`error.code` of the envelope {"error": {"code", "message", ...}}, if the body has one."""
        code = self._error().get("code")
        return str(code) if code is not None else None

    def error_message(self) -> str | None:
        message = self._error().get("message")
        return str(message) if message is not None else None

    def error_field(self, name: str) -> Any:
        """Any other envelope field, e.g. `existing_code` on a 409."""
        return self._error().get(name)


class AuthProvider(Protocol):
    """What a client needs from credentials: headers now, and one refresh after a 401."""

    secrets: tuple[str, ...]

    def headers(self) -> dict[str, str]: ...

    def refresh(self, stale: dict[str, str]) -> bool: ...


class ApiKeyAuth:
    """A static key in a header: it cannot be refreshed, so a 401 is final."""

    def __init__(self, header: str, key: str) -> None:
        self.header = header
        self.key = key
        self.secrets: tuple[str, ...] = (key,)

    def headers(self) -> dict[str, str]:
        return {self.header: self.key}

    def refresh(self, stale: dict[str, str]) -> bool:
        return False


class CachedToken:
    """A bearer token fetched lazily, kept until it expires, fetched again once after a 401.

    Thread-safe and single-flight: concurrent callers that saw the same stale token wait on one
    lock for one fetch instead of each fetching their own. A subclass writes `_fetch`, which sets
    `_headers` and `_expires` (on `clock`'s scale).
    """

    clock: Callable[[], float]
    _headers: dict[str, str] | None
    _expires: float
    _lock: threading.Lock

    def headers(self) -> dict[str, str]:
        """The current token's headers; the same dict object until the token changes."""
        with self._lock:
            if self._headers is None or self.clock() >= self._expires:
                self._fetch()
            assert self._headers is not None
            return self._headers

    def refresh(self, stale: dict[str, str]) -> bool:
        """Fetch a new token unless another caller already replaced the one `stale` came from."""
        with self._lock:
            if self._headers is None or stale is self._headers:
                self._fetch()
            return True

    def _fetch(self) -> None:
        raise NotImplementedError


class OAuthClientCredentials(CachedToken):
    """OAuth2 token fetched lazily, renewed before expiry or once on a 401 (client credentials by default).

    `grant` names another grant whose fields are known up front and may be asked again at will
    (``{"grant_type": "password", "username": …, "password": …}``); its `grant_secrets` are masked
    like the client secret. Such a grant is simply asked again at renewal: no refresh token is kept,
    since platforms that rotate them (single use) would otherwise need each new one stored atomically.

    Thread-safe and single-flight: concurrent callers that saw the same stale token wait on one
    lock for one fetch instead of each fetching their own.
    """

    def __init__(self, client: HttpClient, client_id: str, client_secret: str, *, token_path: str = "/oauth/token",
                 clock: Callable[[], float] = time.monotonic, margin: float = 30.0,
                 grant: Mapping[str, str] | None = None, grant_secrets: tuple[str, ...] = ()) -> None:
        self.client = client
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_path = token_path
        self.clock = clock
        self.margin = margin
        self.grant = dict(grant or {"grant_type": "client_credentials"})
        self.grant_secrets = tuple(s for s in grant_secrets if s)
        self.secrets: tuple[str, ...] = (client_secret, *self.grant_secrets)
        self.fetches = 0
        self._headers: dict[str, str] | None = None
        self._expires = 0.0
        self._lock = threading.Lock()

    def _fetch(self) -> None:
        failpoints.hit("token.refresh")
        name = self.client.name
        try:
            resp = self.client.request(
                "POST", self.token_path, authenticated=False, idempotent=True,  # a second token is harmless
                data={**self.grant, "client_id": self.client_id, "client_secret": self.client_secret},
            )
        except ChannelError as exc:  # the token client may not know our secret: scrub here too
            exc.args = (redact(str(exc), self.secrets),)
            raise
        if resp.status in (400, 401, 403):
            code = resp.error_code()
            raise AuthError(redact(f"{name}: credentials rejected by {name} ({self.token_path}): "
                                   f"{code or resp.status}: {resp.error_message() or 'no message'}", self.secrets),
                            status=resp.status, code=code, target=name)
        if resp.status != 200:
            raise TransientError(f"{name}: token endpoint {self.token_path} answered {resp.status}",
                                 status=resp.status, code=resp.error_code(), target=name)
        # the body holds a token nobody knows yet: never quote it, even as an excerpt
        try:
            body = fastjson.loads(resp.content)
        except (ValueError, UnicodeDecodeError):
            body = None
        problem = fastjson.problem_of(body)
        if problem is not None:  # e.g. access_token given twice: which one is meant? (the text is not quoted)
            raise TransientError(f"{name}: token endpoint {self.token_path} gave an unusable answer ({problem[0]})",
                                 status=resp.status, code="bad_response", target=name)
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise TransientError(f"{name}: token endpoint {self.token_path} gave no access_token",
                                 status=resp.status, code="bad_response", target=name)
        try:
            lifetime = float((body.get("expires_in") if isinstance(body, dict) else None) or 3600)
        except (TypeError, ValueError):
            lifetime = 3600.0
        lifetime = max(lifetime, 1.0)
        previous = self._headers.get("Authorization", "")[len("Bearer "):] if self._headers else ""
        self._headers = {"Authorization": f"Bearer {token}"}
        # the previous token stays a secret too: a server may quote it while rejecting it
        self.secrets = tuple(s for s in (self.client_secret, *self.grant_secrets, token, previous) if s)
        self._expires = self.clock() + max(lifetime - min(self.margin, lifetime / 2), 0.0)
        self.fetches += 1


class RateLimiter:
    """Token bucket: at most `rate` requests a second on average, bursts of `burst`.

    A caller reserves its token under the lock and sleeps outside it, so concurrent callers queue
    fairly without holding each other up longer than the rate demands.
    """

    def __init__(self, rate: float, burst: int, clock: Callable[[], float], sleep: Callable[[float], None]) -> None:
        self.rate = rate
        self.capacity = max(1, burst)
        self.tokens = float(self.capacity)
        self.clock = clock
        self.sleep = sleep
        self.last = clock()
        self.lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token, sleeping until there is one; returns the time slept."""
        with self.lock:
            now = self.clock()
            self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
            self.last = now
            self.tokens -= 1
            wait = -self.tokens / self.rate if self.tokens < 0 else 0.0
        if wait > 0:
            self.sleep(wait)
        return wait


def make_session(settings: HttpSettings) -> requests.Session:
    """A pooled session that ignores the environment and never retries on its own (we do)."""
    session = requests.Session()
    session.trust_env = False
    session.verify = settings.ca_bundle or settings.verify_tls
    adapter = _Adapter(pool_connections=4, pool_maxsize=16, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = f"syncagent/{__version__}"
    return session


class _Retry(Exception):
    """A failed attempt worth another try; carries the wait the server asked for."""

    def __init__(self, cause: str, *, status: int | None = None, code: str | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(cause)
        self.cause = cause
        self.status = status
        self.code = code
        self.retry_after = retry_after


@dataclass
class _Call:
    """One request()'s state, kept per call so that threads sharing a client never mix them up."""

    method: str
    path: str
    params: Any
    json: Any
    data: Any
    idempotent: bool
    authenticated: bool
    headers: Mapping[str, str] | None = None  # the call's own, e.g. a Content-Type for a raw body
    attempts: int = 0
    refreshed: bool = False
    auth_headers: dict[str, str] = field(default_factory=dict)  # the exact dict sent: refresh()'s `stale`


class HttpClient:
    """One base URL, one session, one rate limit, one set of credentials."""

    def __init__(self, base_url: str, settings: HttpSettings | None = None, *, name: str = "",
                 auth: AuthProvider | None = None, secrets: Sequence[str] = (),
                 sleep: Callable[[float], None] | None = None, clock: Callable[[], float] = time.monotonic,
                 session: requests.Session | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.settings = settings or HttpSettings()
        self.name = name or self.base_url
        self.auth = auth
        self._secrets = tuple(secrets)
        self._sleep = sleep if sleep is not None else _pause  # a stop ends a backoff pause
        self.clock = clock
        self.session = session or make_session(self.settings)
        self.stats: dict[str, int] = {"requests": 0, "attempts": 0, "retries": 0, "refreshes": 0,
                                      "throttled_sleeps": 0}
        self._stats_lock = threading.Lock()
        self.last_attempts = 0
        s = self.settings
        self.limiter = RateLimiter(s.rate_per_second, s.rate_burst, clock, self._sleep) if s.rate_per_second else None

    @property
    def secrets(self) -> tuple[str, ...]:
        """The given secrets plus the auth provider's current ones (a new token joins them)."""
        return self._secrets + (tuple(self.auth.secrets) if self.auth is not None else ())

    def redact(self, text: str) -> str:
        return redact(text, self.secrets)

    # -- public ---------------------------------------------------------------------------------
    def get(self, path: str, **kw: Any) -> HttpResponse:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> HttpResponse:
        return self.request("POST", path, **kw)

    def put(self, path: str, **kw: Any) -> HttpResponse:
        return self.request("PUT", path, **kw)

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
                json: Any = None, data: Mapping[str, str] | bytes | None = None, idempotent: bool | None = None,
                authenticated: bool = True, headers: Mapping[str, str] | None = None) -> HttpResponse:
        """Send with retries; returns any answer but 401/429/5xx (and 3xx when authenticated).

        Raises TransientError (retries used up), AmbiguousError (a non-idempotent request may
        have been applied), AuthError (credentials rejected after one refresh) or PermanentError
        (a redirect on an authenticated call).
        """
        method = method.upper()
        if idempotent is None:
            idempotent = method in IDEMPOTENT_METHODS
        call = _Call(method, path, params, json, data, idempotent, authenticated, headers)
        self._count("requests")
        retrying = tenacity.Retrying(
            # once the agent is stopping, a failed attempt is not tried again
            stop=tenacity.stop_after_attempt(max(1, self.settings.max_attempts)) | _stopping,
            wait=self._wait,
            retry=tenacity.retry_if_exception_type(_Retry),
            sleep=self._sleep,
            before_sleep=lambda rs: self._log_retry(call, rs),
            reraise=True,
        )
        try:
            # tenacity's state of a call is a reference cycle, freed only by a full garbage collection
            # (a request lasts long enough for it to reach the oldest generation): it must not hold the
            # answer, so the attempt hands it over in a box emptied here, and the payload is let go below
            return retrying(self._boxed_attempt, call).pop()
        except ChannelError as exc:
            # one choke point: whatever raised it (us, the auth provider, the token client), the
            # message leaves here scrubbed of every secret this client knows
            exc.args = (self.redact(str(exc)),)
            exc.target = exc.target or self.name
            raise
        except _Retry as exc:
            raise TransientError(
                self.redact(f"{self.name}: {method} {path} failed after {call.attempts} attempts: {exc.cause}"),
                status=exc.status, code=exc.code, target=self.name,
            ) from None
        finally:
            self.last_attempts = call.attempts
            call.json = call.data = call.params = None

    def close(self) -> None:
        self.session.close()

    # -- one attempt ----------------------------------------------------------------------------
    def _boxed_attempt(self, call: _Call) -> list[HttpResponse]:
        return [self._attempt(call)]

    def _attempt(self, call: _Call) -> HttpResponse:
        call.attempts += 1
        self._count("attempts")
        if call.attempts > 1:
            self._count("retries")
        resp = self._send(call)
        if resp.status == 401 and call.authenticated:
            # a refresh and its repeat live inside this attempt: they do not use up a retry
            if self.auth is not None and not call.refreshed and self.auth.refresh(call.auth_headers):
                call.refreshed = True
                self._count("refreshes")
                resp = self._send(call)
            if resp.status == 401:
                code = resp.error_code()
                raise AuthError(f"{self.name}: credentials rejected: {code or 'unauthorized'}: "
                                f"{resp.error_message() or 'no message'}", status=401, code=code)
        if resp.status == 429:
            raise _Retry(f"429 {resp.error_code() or 'too many requests'}", status=429, code=resp.error_code(),
                         retry_after=_retry_after(resp))
        if resp.status >= 500:
            cause = f"{resp.status} {resp.error_code() or 'server error'}"
            if not call.idempotent:
                raise AmbiguousError(f"{self.name}: {call.method} {call.path}: {cause}; the request may have"
                                     " been applied", status=resp.status, code=resp.error_code())
            raise _Retry(cause, status=resp.status, code=resp.error_code(), retry_after=_retry_after(resp))
        if 300 <= resp.status < 400 and call.authenticated:
            # raised here rather than returned: following it would hand our credentials to another
            # host, and no connector expects one
            raise PermanentError(f"{self.name}: {call.method} {call.path}: unexpected redirect {resp.status}"
                                 " (not followed)", status=resp.status)
        return resp

    def _send(self, call: _Call) -> HttpResponse:
        headers: dict[str, str] = dict(call.headers or {})
        call.auth_headers = {}
        if call.authenticated and self.auth is not None:
            call.auth_headers = self.auth.headers()
            headers.update(call.auth_headers)
        if self.limiter is not None and self.limiter.acquire() > 0:
            self._count("throttled_sleeps")
        url = self.base_url + call.path
        body = call.data
        if call.json is not None:  # what requests' json= does, written by orjson (a third of the CPU of a batch PUT)
            body = fastjson.dumps(call.json)
            headers["Content-Type"] = "application/json"
        s = self.settings
        # redirects only for plain unauthenticated reads: a redirected POST could carry its form
        # (a token request's client secret) to another host
        follow = not call.authenticated and call.method in ("GET", "HEAD")
        where = f"{self.name}: {call.method} {call.path}"
        started, answer = time.perf_counter(), "no answer"
        with self._watched(call) as flight:
            try:
                raw = self.session.request(
                    call.method, url, params=call.params, data=body, headers=headers,
                    stream=True, timeout=(s.connect_timeout, s.read_timeout), allow_redirects=follow,
                )
                answer = str(raw.status_code)
                try:
                    content = self._read_capped(raw, call)
                finally:
                    _WATCHDOG.end(flight)  # before the connection goes back to the pool
                    raw.close()
                if flight.cut:  # a body that ends with the connection looks whole once cut: it is not
                    self._cut(call, flight)
            except requests.exceptions.ConnectTimeout as exc:
                raise _Retry(f"connect timeout ({_short(exc, self.redact)})") from None
            except requests.exceptions.SSLError as exc:
                if _cert_rejected(exc):  # a bad certificate does not heal within one request
                    raise TransientError(f"{where}: TLS certificate verification failed ({_short(exc, self.redact)})",
                                         code="tls_verify_failed") from None
                self._lost(call, f"TLS error ({_short(exc, self.redact)})", exc)
            except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError,
                    requests.exceptions.ContentDecodingError) as exc:
                self._lost(call, f"connection failed ({_short(exc, self.redact)})", exc)
            except requests.exceptions.Timeout as exc:  # ReadTimeout: sent, no answer
                if call.idempotent:
                    raise _Retry(f"read timeout ({_short(exc, self.redact)})") from None
                raise AmbiguousError(f"{where}: no answer within {s.read_timeout} s; the request may have"
                                     " been applied") from None
            except requests.exceptions.RequestException as exc:  # bad URL and the like: retrying will not help
                raise TransientError(f"{where}: {_short(exc, self.redact)}") from None
            finally:
                if log.isEnabledFor(logging.DEBUG):
                    self._log_request(call, started, answer)
        return HttpResponse(raw.status_code, raw.headers, content, url, self.secrets)

    @contextlib.contextmanager
    def _watched(self, call: _Call) -> Iterator[_Flight]:
        """One attempt under the watchdog: whatever error a cut connection gave becomes the cut's own."""
        flight = _WATCHDOG.begin(self.settings.deadline)
        _CURRENT.flight = flight
        try:
            yield flight
        except (_Retry, ChannelError):
            if flight.cut:
                self._cut(call, flight)
            raise
        finally:
            _CURRENT.flight = None
            _WATCHDOG.end(flight)

    def _cut(self, call: _Call, flight: _Flight) -> NoReturn:
        """An attempt the watchdog ended: not retried (the server would drip again, or we are stopping)."""
        if flight.cut == "stop":
            cause = "cut short: the agent is stopping"
        else:
            cause = f"no whole answer within the {self.settings.deadline:g} s deadline (http total_timeout)"
        if call.idempotent:
            raise TransientError(f"{self.name}: {call.method} {call.path}: {cause}", code="deadline") from None
        raise AmbiguousError(f"{self.name}: {call.method} {call.path}: {cause}; the request may have been applied",
                             code="deadline") from None

    def _log_request(self, call: _Call, started: float, answer: str) -> None:
        """Debug: method, path, status, milliseconds. Never the query string, headers or bodies (secrets)."""
        path = call.path.split("?", 1)[0]
        log.debug(self.redact(f"{self.name}: {call.method} {path} -> {answer} in "
                              f"{(time.perf_counter() - started) * 1000:.0f} ms (attempt {call.attempts})"))

    def _lost(self, call: _Call, cause: str, exc: BaseException) -> NoReturn:
        """A connection failure: retry if the server saw nothing or repeating is safe, else ambiguous."""
        if call.idempotent or _never_sent(exc):
            raise _Retry(cause) from None
        raise AmbiguousError(f"{self.name}: {call.method} {call.path}: connection lost after sending ({cause});"
                             " the request may have been applied") from None

    def _read_capped(self, raw: requests.Response, call: _Call) -> bytes:
        """The body, streamed, refused past the cap so a runaway answer cannot exhaust memory."""
        cap = self.settings.max_response_bytes
        # the server answered, so a non-idempotent request was applied: the caller must look it up
        error = TransientError if call.idempotent else AmbiguousError
        declared = raw.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > cap:
            raise error(f"{self.name}: {call.method} {call.path}: answer of {declared} bytes exceeds the "
                        f"{cap}-byte cap", status=raw.status_code, code="response_too_large")
        chunks, size = [], 0
        for chunk in raw.iter_content(65536):
            size += len(chunk)
            if size > cap:
                raise error(f"{self.name}: {call.method} {call.path}: answer exceeds the {cap}-byte cap",
                            status=raw.status_code, code="response_too_large")
            chunks.append(chunk)
        return b"".join(chunks)

    # -- bookkeeping ----------------------------------------------------------------------------
    def _count(self, key: str) -> None:
        with self._stats_lock:
            self.stats[key] += 1

    def _wait(self, retry_state: tenacity.RetryCallState) -> float:
        """Retry-After when the server gave one (capped), else full-jitter exponential backoff."""
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, _Retry) and exc.retry_after is not None:
            return min(exc.retry_after, self.settings.max_retry_after)
        retry = retry_state.attempt_number - 1  # 0 before the first retry
        ceiling = min(self.settings.backoff_max, self.settings.backoff_base * 2 ** retry)
        return random.uniform(0, ceiling)  # noqa: S311 - jitter, not security

    def _log_retry(self, call: _Call, retry_state: tenacity.RetryCallState) -> None:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        wait = retry_state.next_action.sleep if retry_state.next_action else 0.0
        cause = exc.cause if isinstance(exc, _Retry) else type(exc).__name__
        log.warning(self.redact(f"{self.name}: {call.method} {call.path} attempt {retry_state.attempt_number}/"
                                f"{max(1, self.settings.max_attempts)} failed ({cause}); retrying in {wait:.1f} s"),
                    extra={"target": self.name})


def _stopping(retry_state: tenacity.RetryCallState) -> bool:
    return _WATCHDOG.stopping.is_set()


# without Retry-After, a rate-limited answer may say when its window resets: the IETF draft's
# `RateLimit-Reset` or its hyphenated spelling, both in seconds from now (a larger number is some
# other convention, an epoch time say, and is not read)
RESET_HEADERS = ("RateLimit-Reset", "Rate-Limit-Reset")
MAX_RESET_DELTA = 86400


def _retry_after(resp: HttpResponse) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP-date; else a window reset in seconds; None when absent."""
    value = (resp.headers.get("Retry-After") or "").strip()
    if not value:
        for name in RESET_HEADERS:
            reset = (resp.headers.get(name) or "").strip()
            if reset.isascii() and reset.isdigit() and int(reset) <= MAX_RESET_DELTA:
                return float(reset)
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if moment.tzinfo is None:  # an HTTP-date is GMT
            return None
        return max(0.0, moment.timestamp() - time.time())
    return seconds if seconds >= 0 and seconds == seconds else None  # NaN and negatives are nonsense


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and everything it wraps (args, urllib3 `reason`, cause, context)."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        nested = [*current.args, getattr(current, "reason", None), current.__cause__, current.__context__]
        todo.extend(x for x in nested if isinstance(x, BaseException))


def _never_sent(exc: BaseException) -> bool:
    """True when no connection was ever made (refused, unresolvable, no route): the server saw nothing."""
    for inner in _chain(exc):
        if isinstance(inner, urllib3.exceptions.NewConnectionError | ConnectionRefusedError):
            return True
    text = repr(exc)
    return any(marker in text for marker in ("NewConnectionError", "Connection refused", "Name or service not known",
                                             "Failed to establish", "Failed to resolve"))


def _cert_rejected(exc: BaseException) -> bool:
    """True when the TLS handshake failed on the certificate (untrusted, expired, wrong host)."""
    return (any(isinstance(inner, ssl.SSLCertVerificationError) for inner in _chain(exc))
            or "CERTIFICATE_VERIFY_FAILED" in repr(exc))


_HOST_PORT = re.compile(r"host='([^']{1,255})', port=(\d{1,5})")


def _short(exc: BaseException, clean: Callable[[str], str] = str) -> str:
    """The cause in a few words, whole: "Connection refused at 127.0.0.1:8080", not a wrapper's repr.

    requests wraps the socket's error three times over ("HTTPConnectionPool(host=…): Max retries
    exceeded with url: … (Caused by NewConnectionError(…" ): the operator wants its last words.
    `clean` (redaction) runs before any cut, so no secret is half shown.
    """
    text = clean(str(exc))
    root = next((e for e in _chain(exc) if isinstance(e, OSError) and getattr(e, "strerror", None)
                 and type(e).__module__ in ("builtins", "socket", "ssl")), None)
    where = _HOST_PORT.search(text)
    if root is not None:
        text = clean(str(root.strerror))
    elif "(Caused by " in text:
        text = text.split("(Caused by ", 1)[1].rstrip(")").split(": ", 1)[-1]
    elif text.startswith(("HTTPConnectionPool(", "HTTPSConnectionPool(")):
        text = text.split("): ", 1)[-1]
    else:
        where = None
    if where:
        text += f" at {where.group(1)}:{where.group(2)}"
    return text if len(text) < 500 else text[:500] + "…"
