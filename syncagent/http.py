"""The one HTTP layer every connector uses (DESIGN §5).

* one pooled `requests.Session` per client: timeouts on every call, ``trust_env = False`` (no
  proxy or netrc picked up from the environment), TLS verification on, optional CA bundle;
* retries with tenacity on connection errors, timeouts, 429 and 5xx: capped attempts, full-jitter
  exponential backoff, ``Retry-After`` honoured; a non-idempotent request is retried only when
  the server certainly did not apply it (refused connection, 429) and otherwise raises
  `AmbiguousError` so the caller looks the record up before writing again;
* 401: one single-flight credential refresh and one repeat, then `AuthError`;
* a per-client token bucket (``rate_limit``), a response size cap, no redirects when authenticated;
* every message scrubbed of secrets.
"""

from __future__ import annotations

import email.utils
import json as jsonlib
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import requests
import tenacity
from requests.adapters import HTTPAdapter

from syncagent import __version__, failpoints
from syncagent.errors import AmbiguousError, AuthError, ChannelError, PermanentError, TransientError

log = logging.getLogger("syncagent.http")


@dataclass(frozen=True, slots=True)
class HttpSettings:
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    max_attempts: int = 5
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    max_retry_after: float = 120.0
    rate_per_second: float | None = None
    rate_burst: int = 1
    max_response_bytes: int = 64 * 1024 * 1024
    verify_tls: bool = True
    ca_bundle: str | None = None


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret (4 characters or more) in `text` with ***."""
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]
    content: bytes
    url: str = ""

    def json(self) -> Any:
        ctype = self.headers.get("Content-Type", self.headers.get("content-type", ""))
        # the body itself is never quoted in the error: a server may echo credentials back
        if self.content and "json" not in ctype.lower():
            raise TransientError(f"{self.url}: expected JSON, got {ctype or 'no content type'} "
                                 f"({len(self.content)} bytes)", status=self.status, code="bad_response")
        try:
            return jsonlib.loads(self.content) if self.content else None
        except (ValueError, UnicodeDecodeError) as exc:
            raise TransientError(f"{self.url}: the answer is not valid JSON ({type(exc).__name__} at "
                                 f"{getattr(exc, 'pos', '?')} of {len(self.content)} bytes)",
                                 status=self.status, code="bad_response") from None

    def _error(self) -> dict[str, Any]:
        try:
            body = jsonlib.loads(self.content)
        except (ValueError, UnicodeDecodeError):
            return {}
        error = body.get("error") if isinstance(body, dict) else None
        return error if isinstance(error, dict) else {}

    def error_code(self) -> str | None:
        code = self._error().get("code")
        return str(code) if code is not None else None

    def error_message(self) -> str | None:
        message = self._error().get("message")
        return str(message) if message is not None else None

    def error_field(self, name: str) -> Any:
        return self._error().get(name)


class AuthProvider(Protocol):
    secrets: tuple[str, ...]

    def headers(self) -> dict[str, str]: ...

    def refresh(self, stale: dict[str, str]) -> bool: ...


class ApiKeyAuth:
    """A static key in a header: it cannot be refreshed, so a 401 is final."""

    def __init__(self, header: str, key: str) -> None:
        self.header = header
        self.key = key
        self.secrets = (key,)

    def headers(self) -> dict[str, str]:
        return {self.header: self.key}

    def refresh(self, stale: dict[str, str]) -> bool:
        return False


class OAuthClientCredentials:
    """OAuth2 client-credentials: token fetched once, renewed before expiry or once on a 401.

    Thread-safe and single-flight: concurrent callers that saw the same stale token wait for one
    fetch instead of each fetching their own.
    """

    def __init__(self, client: HttpClient, client_id: str, client_secret: str, *, token_path: str = "/oauth/token",
                 clock: Callable[[], float] = time.monotonic, margin: float = 30.0) -> None:
        self.client = client
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_path = token_path
        self.clock = clock
        self.margin = margin
        self.secrets: tuple[str, ...] = (client_secret,)
        self.fetches = 0
        self._headers: dict[str, str] | None = None
        self._expires = 0.0
        self._lock = threading.Lock()

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
            if stale is self._headers:
                self._fetch()
            return True

    def _fetch(self) -> None:
        failpoints.hit("token.refresh")
        resp = self.client.request(
            "POST", self.token_path, authenticated=False, idempotent=True,
            data={"grant_type": "client_credentials", "client_id": self.client_id, "client_secret": self.client_secret},
        )
        if resp.status in (400, 401, 403):
            raise AuthError(self.client.redact(f"{self.client.name}: credentials rejected: {resp.error_code()}: "
                                               f"{resp.error_message()}"), status=resp.status, code=resp.error_code())
        if resp.status != 200:
            raise TransientError(f"{self.client.name}: token endpoint answered {resp.status}", status=resp.status)
        body = resp.json()
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise TransientError(f"{self.client.name}: token endpoint gave no access_token", code="bad_response")
        self._headers = {"Authorization": f"Bearer {token}"}
        self.secrets = (self.client_secret, token)
        lifetime = float(body.get("expires_in") or 3600)
        self._expires = self.clock() + max(lifetime - min(self.margin, lifetime / 2), 0.0)
        self.fetches += 1


class RateLimiter:
    """Token bucket: at most `rate` requests a second on average, bursts of `burst`."""

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
    session = requests.Session()
    session.trust_env = False
    session.verify = settings.ca_bundle or settings.verify_tls
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=16, max_retries=0)
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
class _Attempts:
    count: int = 0
    refreshed: bool = False
    extra: dict[str, int] = field(default_factory=dict)


class HttpClient:
    def __init__(self, base_url: str, settings: HttpSettings | None = None, *, name: str = "",
                 auth: AuthProvider | None = None, secrets: Sequence[str] = (),
                 sleep: Callable[[float], None] | None = None, clock: Callable[[], float] = time.monotonic,
                 session: requests.Session | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.settings = settings or HttpSettings()
        self.name = name or self.base_url
        self.auth = auth
        self._secrets = tuple(secrets)
        self._sleep = sleep if sleep is not None else time.sleep
        self.clock = clock
        self.session = session or make_session(self.settings)
        self.stats = {"requests": 0, "attempts": 0, "retries": 0, "refreshes": 0, "throttled_sleeps": 0}
        self.last_attempts = 0
        s = self.settings
        self.limiter = RateLimiter(s.rate_per_second, s.rate_burst, clock, self._sleep) if s.rate_per_second else None

    @property
    def secrets(self) -> tuple[str, ...]:
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
                json: Any = None, data: Mapping[str, str] | None = None, idempotent: bool | None = None,
                authenticated: bool = True) -> HttpResponse:
        if idempotent is None:
            idempotent = method.upper() not in ("POST", "PATCH")
        state = _Attempts()
        self.stats["requests"] += 1
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(max(1, self.settings.max_attempts)),
            wait=self._wait,
            retry=tenacity.retry_if_exception_type(_Retry),
            sleep=self._sleep,
            before_sleep=lambda rs: self._log_retry(method, path, rs),
            reraise=True,
        )
        try:
            return retrying(self._attempt, method, path, params, json, data, idempotent, authenticated, state)
        except ChannelError as exc:
            exc.target = exc.target or self.name
            raise
        except _Retry as exc:
            raise TransientError(
                self.redact(f"{self.name}: {method} {path} failed after {state.count} attempts: {exc.cause}"),
                status=exc.status, code=exc.code, target=self.name,
            ) from None
        finally:
            self.last_attempts = state.count

    def close(self) -> None:
        self.session.close()

    # -- one attempt ----------------------------------------------------------------------------
    def _attempt(self, method: str, path: str, params: Any, json: Any, data: Any, idempotent: bool,
                 authenticated: bool, state: _Attempts) -> HttpResponse:
        state.count += 1
        self.stats["attempts"] += 1
        if state.count > 1:
            self.stats["retries"] += 1
        resp = self._send(method, path, params, json, data, idempotent, authenticated)
        if resp.status == 401 and authenticated and self.auth is not None:
            stale = self._auth_headers_used
            if not state.refreshed and self.auth.refresh(stale):
                state.refreshed = True
                self.stats["refreshes"] += 1
                resp = self._send(method, path, params, json, data, idempotent, authenticated)
            if resp.status == 401:
                raise AuthError(self.redact(f"{self.name}: credentials rejected: {resp.error_code() or 'unauthorized'}:"
                                            f" {resp.error_message() or ''}".rstrip(": ")),
                                status=401, code=resp.error_code())
        if resp.status == 429:
            raise _Retry("429 too many requests", status=429, code=resp.error_code(),
                         retry_after=self._retry_after(resp))
        if resp.status >= 500:
            cause = f"{resp.status} {resp.error_code() or 'server error'}"
            if not idempotent:
                raise AmbiguousError(self.redact(f"{self.name}: {method} {path}: {cause}; the request may have"
                                                 " been applied"), status=resp.status, code=resp.error_code())
            raise _Retry(cause, status=resp.status, code=resp.error_code(), retry_after=self._retry_after(resp))
        if 300 <= resp.status < 400 and authenticated:
            raise PermanentError(f"{self.name}: {method} {path}: unexpected redirect {resp.status} (not followed)",
                                 status=resp.status)
        return resp

    def _send(self, method: str, path: str, params: Any, json: Any, data: Any, idempotent: bool,
              authenticated: bool) -> HttpResponse:
        headers: dict[str, str] = {}
        self._auth_headers_used: dict[str, str] = {}
        if authenticated and self.auth is not None:
            self._auth_headers_used = self.auth.headers()
            headers.update(self._auth_headers_used)
        if self.limiter is not None and self.limiter.acquire() > 0:
            self.stats["throttled_sleeps"] += 1
        url = self.base_url + path
        s = self.settings
        try:
            raw = self.session.request(
                method, url, params=params, json=json, data=data, headers=headers, stream=True,
                timeout=(s.connect_timeout, s.read_timeout), allow_redirects=not authenticated,
            )
            try:
                content = self._read_capped(raw)
            finally:
                raw.close()
        except requests.exceptions.ConnectTimeout as exc:
            raise _Retry(f"connect timeout ({_short(exc)})") from None
        except requests.exceptions.ConnectionError as exc:
            if _never_sent(exc) or idempotent:
                raise _Retry(f"connection failed ({_short(exc)})") from None
            raise AmbiguousError(self.redact(f"{self.name}: {method} {path}: connection lost after sending"
                                             f" ({_short(exc)}); the request may have been applied")) from None
        except requests.exceptions.Timeout as exc:
            if idempotent:
                raise _Retry(f"read timeout ({_short(exc)})") from None
            raise AmbiguousError(self.redact(f"{self.name}: {method} {path}: no answer within"
                                             f" {s.read_timeout} s; the request may have been applied")) from None
        except requests.exceptions.RequestException as exc:
            raise TransientError(self.redact(f"{self.name}: {method} {path}: {_short(exc)}")) from None
        return HttpResponse(raw.status_code, raw.headers, content, url)

    def _read_capped(self, raw: requests.Response) -> bytes:
        cap = self.settings.max_response_bytes
        declared = raw.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > cap:
            raise TransientError(f"{self.name}: answer of {declared} bytes exceeds the {cap}-byte cap",
                                 code="response_too_large")
        chunks, size = [], 0
        for chunk in raw.iter_content(65536):
            size += len(chunk)
            if size > cap:
                raise TransientError(f"{self.name}: answer exceeds the {cap}-byte cap", code="response_too_large")
            chunks.append(chunk)
        return b"".join(chunks)

    # -- waits ----------------------------------------------------------------------------------
    def _wait(self, retry_state: tenacity.RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, _Retry) and exc.retry_after is not None:
            return min(exc.retry_after, self.settings.max_retry_after)
        attempt = retry_state.attempt_number
        ceiling = min(self.settings.backoff_max, self.settings.backoff_base * 2 ** (attempt - 1))
        return random.uniform(0, ceiling)  # noqa: S311 - jitter, not security

    def _retry_after(self, resp: HttpResponse) -> float | None:
        value = resp.headers.get("Retry-After")
        if not value:
            return None
        value = value.strip()
        if value.isdigit():
            return float(value)
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, moment.timestamp() - time.time())

    def _log_retry(self, method: str, path: str, retry_state: tenacity.RetryCallState) -> None:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        wait = retry_state.next_action.sleep if retry_state.next_action else 0.0
        cause = exc.cause if isinstance(exc, _Retry) else repr(exc)
        log.warning(self.redact(f"{self.name}: {method} {path} attempt {retry_state.attempt_number}/"
                                f"{self.settings.max_attempts} failed ({cause}); retrying in {wait:.1f} s"),
                    extra={"target": self.name})


def _never_sent(exc: BaseException) -> bool:
    """True when the connection was refused or never established: the server saw nothing."""
    text = repr(exc)
    return any(marker in text for marker in ("NewConnectionError", "Connection refused", "Name or service not known",
                                             "Failed to establish"))


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) < 200 else text[:200] + "…"
