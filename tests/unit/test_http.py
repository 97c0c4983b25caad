"""The HTTP layer: retries, Retry-After, ambiguity, tokens, rate limit, caps, secrets, TLS.

`responses` stands in for servers everywhere except where the real socket behaviour is the point
(refused connection, read timeout, dropped connection, TLS). Sleeps are captured, never taken.
"""

from __future__ import annotations

import gc
import http.server
import json
import logging
import socket
import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
import trustme

from syncagent import __version__
from syncagent.errors import AmbiguousError, AuthError, PermanentError, TransientError
from syncagent.http import (
    ApiKeyAuth,
    HttpClient,
    HttpResponse,
    HttpSettings,
    OAuthClientCredentials,
    make_session,
    redact,
)

BASE = "http://api.test"
CANARY = "canary-secret-value-123"


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def client(sleeps: Sleeps, **settings: Any) -> HttpClient:
    return HttpClient(BASE, HttpSettings(**settings), name="api", sleep=sleeps)


def calls_to(path: str) -> int:
    return len([c for c in responses.calls if (c.request.url or "").split("?")[0].endswith(path)])


# -- retries ------------------------------------------------------------------------------------

@responses.activate
def test_retries_5xx_then_succeeds(sleeps: Sleeps) -> None:
    responses.get(f"{BASE}/x", status=503)
    responses.get(f"{BASE}/x", status=502)
    responses.get(f"{BASE}/x", json={"ok": True})
    c = client(sleeps, max_attempts=5, backoff_base=1.0)
    assert c.get("/x").json() == {"ok": True}
    assert c.last_attempts == 3 and len(sleeps) == 2 and len(responses.calls) == 3
    assert 0 <= sleeps[0] <= 1.0 and 0 <= sleeps[1] <= 2.0  # full jitter under the exponential ceiling
    assert c.stats == {"requests": 1, "attempts": 3, "retries": 2, "refreshes": 0, "throttled_sleeps": 0}


@responses.activate
def test_retry_after_seconds_is_honoured_instead_of_backoff(sleeps: Sleeps) -> None:
    responses.get(f"{BASE}/x", status=429, headers={"Retry-After": "7"})
    responses.get(f"{BASE}/x", json={})
    c = client(sleeps, backoff_base=100.0)
    assert c.get("/x").status == 200
    assert sleeps == [7.0] and c.last_attempts == 2


@responses.activate
def test_retry_after_is_capped(sleeps: Sleeps) -> None:
    responses.get(f"{BASE}/x", status=503, headers={"Retry-After": "9999"})
    responses.get(f"{BASE}/x", json={})
    client(sleeps, max_retry_after=60).get("/x")
    assert sleeps == [60.0]


@responses.activate
def test_retry_after_http_date(sleeps: Sleeps) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=40), usegmt=True)
    responses.get(f"{BASE}/x", status=429, headers={"Retry-After": when})
    responses.get(f"{BASE}/x", json={})
    client(sleeps, backoff_base=0.001).get("/x")
    assert len(sleeps) == 1 and 35 <= sleeps[0] <= 40


@responses.activate
def test_attempts_are_capped_then_transient_error_with_the_count(sleeps: Sleeps) -> None:
    responses.get(f"{BASE}/x", status=500, json={"error": {"code": "db_down", "message": "x"}})
    c = client(sleeps, max_attempts=4)
    with pytest.raises(TransientError) as err:
        c.get("/x")
    assert type(err.value) is TransientError
    assert str(err.value).startswith("api: GET /x failed after 4 attempts: 500 db_down")
    assert err.value.status == 500 and err.value.code == "db_down" and err.value.target == "api"
    assert len(responses.calls) == 4 and c.last_attempts == 4 and len(sleeps) == 3


def test_full_jitter_draws_under_a_capped_exponential_ceiling(sleeps: Sleeps, monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        drawn.append((low, high))
        return high / 2

    monkeypatch.setattr("syncagent.http.random.uniform", uniform)
    with responses.RequestsMock() as mock:
        mock.get(f"{BASE}/x", status=503)
        with pytest.raises(TransientError):
            client(sleeps, max_attempts=6, backoff_base=0.5, backoff_max=3.0).get("/x")
    assert drawn[:5] == [(0, 0.5), (0, 1.0), (0, 2.0), (0, 3.0), (0, 3.0)]
    assert sleeps == [0.25, 0.5, 1.0, 1.5, 1.5]


@responses.activate
def test_full_jitter_really_varies_within_bounds(sleeps: Sleeps) -> None:
    responses.get(f"{BASE}/x", status=503)
    for _ in range(10):
        with pytest.raises(TransientError):
            client(sleeps, max_attempts=3, backoff_base=1.0).get("/x")
    firsts, seconds = sleeps[0::2], sleeps[1::2]
    assert all(0 <= s <= 1.0 for s in firsts) and all(0 <= s <= 2.0 for s in seconds)
    assert len(set(sleeps)) > 10  # drawn, not a fixed schedule


@responses.activate
def test_read_timeout_on_get_is_retried(sleeps: Sleeps) -> None:
    responses.get(f"{BASE}/x", body=requests.exceptions.ReadTimeout("read timed out"))
    responses.get(f"{BASE}/x", json={"ok": 1})
    c = client(sleeps)
    assert c.get("/x").json() == {"ok": 1} and c.last_attempts == 2


@responses.activate
def test_other_statuses_are_returned_for_the_caller(sleeps: Sleeps) -> None:
    responses.post(f"{BASE}/customers", status=409,
                   json={"error": {"code": "duplicate", "message": "exists", "existing_code": "C-7"}})
    responses.get(f"{BASE}/missing", status=404, body="")
    c = client(sleeps)
    resp = c.post("/customers", json={"doc": "1"})
    assert (resp.status, resp.error_code(), resp.error_message(), resp.error_field("existing_code")) == \
        (409, "duplicate", "exists", "C-7")
    missing = c.get("/missing")
    assert missing.status == 404 and missing.error_code() is None and missing.json() is None
    assert sleeps == [] and len(responses.calls) == 2


@responses.activate
def test_every_call_has_timeouts_and_streams(sleeps: Sleeps) -> None:
    responses.get(f"{BASE}/x", json={})
    c = HttpClient(BASE, HttpSettings(connect_timeout=2.0, read_timeout=9.0), auth=ApiKeyAuth("X-Api-Key", CANARY),
                   sleep=sleeps)
    c.get("/x", params={"q": "1"})
    kwargs = responses.calls[0].request.req_kwargs  # type: ignore[attr-defined]
    assert kwargs["timeout"] == (2.0, 9.0) and kwargs["stream"] is True
    assert responses.calls[0].request.headers["User-Agent"] == f"syncagent/{__version__}"
    assert responses.calls[0].request.headers["X-Api-Key"] == CANARY


@responses.activate
def test_a_finished_call_leaves_no_answer_or_payload_for_the_garbage_collector(sleeps: Sleeps) -> None:
    """The retry state of a call is a reference cycle that only a full collection frees; what it holds
    stays in memory until then: a page's answer and a batch's payload must not be in it."""
    responses.add(responses.POST, f"{BASE}/batch", json={"ok": True}, status=200)
    payload = [{"code": f"P{i}"} for i in range(3)]
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        answer = client(sleeps).post("/batch", json=payload)
        assert answer.status == 200
        marker = id(payload)
        del answer, payload
        gc.collect()
        kept = [o for o in gc.garbage if isinstance(o, HttpResponse) or id(o) == marker]
        cycles = len(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert cycles > 0  # the cycle is there (else this test proves nothing) ...
    assert kept == []  # ... and holds neither the answer nor the payload


# -- non-idempotent requests --------------------------------------------------------------------

@responses.activate
def test_post_5xx_is_ambiguous_after_exactly_one_attempt(sleeps: Sleeps) -> None:
    responses.post(f"{BASE}/orders", status=500)
    c = client(sleeps)
    with pytest.raises(AmbiguousError) as err:
        c.post("/orders", json={})
    assert len(responses.calls) == 1 and c.last_attempts == 1 and sleeps == []
    assert err.value.status == 500 and "may have been applied" in str(err.value)


@responses.activate
def test_post_marked_idempotent_is_retried_on_5xx(sleeps: Sleeps) -> None:
    responses.post(f"{BASE}/search", status=500)
    responses.post(f"{BASE}/search", json={})
    c = client(sleeps)
    assert c.post("/search", json={}, idempotent=True).status == 200 and c.last_attempts == 2


@responses.activate
def test_post_retried_on_429_and_refused_connection(sleeps: Sleeps) -> None:
    responses.post(f"{BASE}/orders", status=429, headers={"Retry-After": "1"})
    responses.post(f"{BASE}/orders", body=requests.exceptions.ConnectionError("NewConnectionError: Connection refused"))
    responses.post(f"{BASE}/orders", status=201, json={"number": "1"})
    c = client(sleeps)
    assert c.post("/orders", json={}).status == 201
    assert len(responses.calls) == 3 and c.last_attempts == 3 and sleeps[0] == 1.0


@responses.activate
def test_post_connect_timeout_is_retried(sleeps: Sleeps) -> None:
    responses.post(f"{BASE}/orders", body=requests.exceptions.ConnectTimeout("connect timed out"))
    responses.post(f"{BASE}/orders", status=201, json={})
    assert client(sleeps).post("/orders", json={}).status == 201


@responses.activate
def test_post_read_timeout_is_ambiguous(sleeps: Sleeps) -> None:
    responses.post(f"{BASE}/orders", body=requests.exceptions.ReadTimeout("read timed out"))
    c = client(sleeps)
    with pytest.raises(AmbiguousError):
        c.post("/orders", json={})
    assert len(responses.calls) == 1 and c.last_attempts == 1


@responses.activate
@pytest.mark.parametrize("lost", [
    requests.exceptions.ConnectionError("('Connection aborted.', RemoteDisconnected('closed'))"),
    requests.exceptions.ChunkedEncodingError("Connection broken: IncompleteRead"),
])
def test_post_connection_lost_after_sending_is_ambiguous_but_get_retries(sleeps: Sleeps, lost: Exception) -> None:
    responses.post(f"{BASE}/orders", body=lost)
    responses.get(f"{BASE}/orders", body=lost)
    responses.get(f"{BASE}/orders", json=[])
    c = client(sleeps)
    with pytest.raises(AmbiguousError):
        c.post("/orders", json={})
    assert calls_to("/orders") == 1
    assert c.get("/orders").json() == [] and c.last_attempts == 2


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_real_refused_connection_is_retried_even_for_post(sleeps: Sleeps) -> None:
    c = HttpClient(f"http://127.0.0.1:{closed_port()}", HttpSettings(max_attempts=3), name="down", sleep=sleeps)
    with pytest.raises(TransientError) as err:
        c.post("/orders", json={})
    assert type(err.value) is TransientError  # never sent, so not ambiguous
    assert c.last_attempts == 3 and len(sleeps) == 2 and "failed after 3 attempts" in str(err.value)


@pytest.fixture
def silent_server() -> Iterator[tuple[str, list[int]]]:
    """Accepts, reads the request, then either hangs or hangs up: the answer is lost after sending."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.1)
    seen: list[int] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                seen.append(len(data))
                if b"/hang" in data:
                    stop.wait(1.0)
            # closed without a word

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}", seen
    stop.set()
    thread.join(2)
    listener.close()


def test_real_dropped_connection_after_post_is_ambiguous(silent_server: tuple[str, list[int]],
                                                         sleeps: Sleeps) -> None:
    url, seen = silent_server
    c = HttpClient(url, HttpSettings(max_attempts=3), name="shop", sleep=sleeps)
    with pytest.raises(AmbiguousError):
        c.post("/orders", json={"n": 1})
    assert len(seen) == 1 and c.last_attempts == 1
    with pytest.raises(TransientError) as err:
        c.get("/orders")
    assert type(err.value) is TransientError and c.last_attempts == 3 and len(seen) == 4


def test_real_read_timeout_on_post_is_ambiguous(silent_server: tuple[str, list[int]], sleeps: Sleeps) -> None:
    url, seen = silent_server
    c = HttpClient(url, HttpSettings(read_timeout=0.2, max_attempts=3), name="shop", sleep=sleeps)
    with pytest.raises(AmbiguousError) as err:
        c.post("/hang", json={})
    assert "no answer within 0.2 s" in str(err.value) and c.last_attempts == 1 and len(seen) == 1


# -- credentials --------------------------------------------------------------------------------

def oauth(sleeps: Sleeps, clock: list[float] | None = None) -> tuple[HttpClient, OAuthClientCredentials]:
    now = clock if clock is not None else [0.0]
    token_client = HttpClient(BASE, HttpSettings(), name="bo", sleep=sleeps)
    auth = OAuthClientCredentials(token_client, "id", CANARY, clock=lambda: now[0])
    return HttpClient(BASE, HttpSettings(), name="bo", auth=auth, sleep=sleeps), auth


def token(value: str, expires_in: int = 3600) -> dict[str, Any]:
    return {"access_token": value, "token_type": "Bearer", "expires_in": expires_in}


@responses.activate
def test_token_is_fetched_lazily_with_a_form_post(sleeps: Sleeps) -> None:
    responses.post(f"{BASE}/oauth/token", json=token("t1"))
    responses.get(f"{BASE}/a", json={})
    c, auth = oauth(sleeps)
    assert auth.fetches == 0 and len(responses.calls) == 0
    c.get("/a")
    form = responses.calls[0].request.body
    assert isinstance(form, str) and "grant_type=client_credentials" in form and f"client_secret={CANARY}" in form
    assert responses.calls[0].request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert responses.calls[1].request.headers["Authorization"] == "Bearer t1"


@responses.activate
def test_401_once_refreshes_the_token_once_then_succeeds(sleeps: Sleeps) -> None:
    responses.post(f"{BASE}/oauth/token", json=token("t1"))
    responses.post(f"{BASE}/oauth/token", json=token("t2"))
    responses.get(f"{BASE}/a", json={})
    responses.get(f"{BASE}/a", json={})
    responses.get(f"{BASE}/a", status=401, json={"error": {"code": "invalid_token", "message": "expired"}})
    responses.get(f"{BASE}/a", json={"after": "refresh"})
    c, auth = oauth(sleeps)
    c.get("/a")
    c.get("/a")
    assert auth.fetches == 1
    assert c.get("/a").json() == {"after": "refresh"}
    assert auth.fetches == 2 and c.stats["refreshes"] == 1 and c.last_attempts == 1
    assert responses.calls[-1].request.headers["Authorization"] == "Bearer t2"


@responses.activate
def test_401_always_refreshes_once_repeats_once_then_auth_error(sleeps: Sleeps) -> None:
    responses.post(f"{BASE}/oauth/token", json=token("t"))
    responses.get(f"{BASE}/a", status=401, json={"error": {"code": "invalid_token", "message": "nope"}})
    c, auth = oauth(sleeps)
    with pytest.raises(AuthError) as err:
        c.get("/a")
    assert err.value.code == "invalid_token" and err.value.status == 401
    assert str(err.value) == "bo: credentials rejected: invalid_token: nope"
    assert auth.fetches == 2  # the first token, and exactly one refresh
    assert calls_to("/a") == 2 and calls_to("/oauth/token") == 2 and sleeps == []
    assert CANARY not in str(err.value)


@responses.activate
def test_refresh_does_not_use_up_a_retry_attempt(sleeps: Sleeps) -> None:
    responses.post(f"{BASE}/oauth/token", json=token("t1"))
    responses.post(f"{BASE}/oauth/token", json=token("t2"))
    responses.get(f"{BASE}/a", status=503)
    responses.get(f"{BASE}/a", status=401, json={"error": {"code": "invalid_token", "message": "expired"}})
    responses.get(f"{BASE}/a", json={"ok": True})
    token_client = HttpClient(BASE, HttpSettings(), name="bo", sleep=sleeps)
    auth = OAuthClientCredentials(token_client, "id", CANARY)
    c = HttpClient(BASE, HttpSettings(max_attempts=2), name="bo", auth=auth, sleep=sleeps)
    assert c.get("/a").json() == {"ok": True}
    assert c.last_attempts == 2 and c.stats["refreshes"] == 1 and len(sleeps) == 1


@responses.activate
def test_at_most_one_refresh_per_request_even_across_retries(sleeps: Sleeps) -> None:
    responses.post(f"{BASE}/oauth/token", json=token("t1"))
    responses.post(f"{BASE}/oauth/token", json=token("t2"))
    responses.get(f"{BASE}/a", status=401)
    responses.get(f"{BASE}/a", status=503)
    responses.get(f"{BASE}/a", status=401)
    c, auth = oauth(sleeps)
    with pytest.raises(AuthError):
        c.get("/a")
    assert auth.fetches == 2 and c.stats["refreshes"] == 1 and calls_to("/a") == 3


@responses.activate
def test_revoked_api_key_is_an_auth_error_with_its_code_and_no_repeat(sleeps: Sleeps) -> None:
    responses.get(f"{BASE}/v1/orders", status=401,
                  json={"error": {"code": "key_revoked", "message": f"key {CANARY} revoked"}})
    c = HttpClient(BASE, HttpSettings(), name="su", auth=ApiKeyAuth("X-Api-Key", CANARY), sleep=sleeps)
    with pytest.raises(AuthError) as err:
        c.get("/v1/orders")
    assert err.value.code == "key_revoked" and len(responses.calls) == 1 and c.stats["refreshes"] == 0
    assert str(err.value) == "su: credentials rejected: key_revoked: key *** revoked"


@responses.activate
def test_401_without_a_provider_is_an_auth_error_unless_unauthenticated(sleeps: Sleeps) -> None:
    responses.get(f"{BASE}/a", status=401)
    c = client(sleeps)
    with pytest.raises(AuthError):
        c.get("/a")
    assert c.get("/a", authenticated=False).status == 401


@responses.activate
def test_token_endpoint_rejection_is_an_auth_error_without_the_secret(sleeps: Sleeps) -> None:
    responses.post(f"{BASE}/oauth/token", status=401,
                   json={"error": {"code": "invalid_client", "message": f"unknown secret {CANARY}"}})
    c, _ = oauth(sleeps)
    with pytest.raises(AuthError) as err:
        c.get("/a")
    assert err.value.code == "invalid_client" and "credentials rejected by bo" in str(err.value)
    assert CANARY not in str(err.value) and "client_secret" not in str(err.value)
    assert calls_to("/oauth/token") == 1 and calls_to("/a") == 0


@responses.activate
def test_garbled_token_answer_never_quotes_the_token(sleeps: Sleeps) -> None:
    responses.post(f"{BASE}/oauth/token", body='{"access_token": "fresh-unknown-token-value", "exp',
                   content_type="application/json")
    c, _ = oauth(sleeps)
    with pytest.raises(TransientError) as err:
        c.get("/a")
    assert err.value.code == "bad_response" and "fresh-unknown" not in str(err.value)


@responses.activate
def test_token_renewed_proactively_before_expiry(sleeps: Sleeps) -> None:
    responses.post(f"{BASE}/oauth/token", json=token("t1", expires_in=100))
    responses.post(f"{BASE}/oauth/token", json=token("t2", expires_in=100))
    responses.get(f"{BASE}/a", json={})
    clock = [0.0]
    c, auth = oauth(sleeps, clock)
    c.get("/a")
    clock[0] = 60.0
    c.get("/a")
    assert auth.fetches == 1
    clock[0] = 80.0  # inside the 30 s renewal margin, before the server would refuse it
    c.get("/a")
    assert auth.fetches == 2 and c.stats["refreshes"] == 0
    assert responses.calls[-1].request.headers["Authorization"] == "Bearer t2"


@responses.activate
def test_concurrent_401s_share_one_token_fetch(sleeps: Sleeps) -> None:
    threads_n = 10
    barrier = threading.Barrier(threads_n, timeout=10)
    issued: list[str] = []

    def token_endpoint(request: Any) -> tuple[int, dict[str, str], str]:
        issued.append(f"t{len(issued) + 1}")
        return 200, {"Content-Type": "application/json"}, f'{{"access_token": "{issued[-1]}", "expires_in": 3600}}'

    def api(request: Any) -> tuple[int, dict[str, str], str]:
        if request.headers["Authorization"] == "Bearer t1":
            barrier.wait()  # every thread holds the stale token before anyone refreshes
            return 401, {"Content-Type": "application/json"}, '{"error": {"code": "invalid_token"}}'
        return 200, {"Content-Type": "application/json"}, "{}"

    responses.add_callback(responses.POST, f"{BASE}/oauth/token", callback=token_endpoint)
    responses.add_callback(responses.GET, f"{BASE}/a", callback=api)
    c, auth = oauth(sleeps)
    results: list[int] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(c.get("/a").status)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert errors == [] and results == [200] * threads_n
    assert auth.fetches == 2 and issued == ["t1", "t2"]  # the first token and ONE refresh, not ten


@responses.activate
def test_refresh_with_a_stale_token_is_a_no_op_once_replaced(sleeps: Sleeps) -> None:
    responses.post(f"{BASE}/oauth/token", json=token("t"))
    _, auth = oauth(sleeps)
    stale = auth.headers()
    threads = [threading.Thread(target=auth.refresh, args=(stale,)) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert auth.fetches == 2
    assert ApiKeyAuth("X-Api-Key", CANARY).refresh({}) is False


# -- rate limit, size cap, redirects --------------------------------------------------------------

def test_rate_limit_spaces_requests(sleeps: Sleeps) -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    with responses.RequestsMock() as mock:
        mock.get(f"{BASE}/x", json={})
        c = HttpClient(BASE, HttpSettings(rate_per_second=10, rate_burst=1), sleep=sleep, clock=lambda: now[0])
        for _ in range(20):
            c.get("/x")
    assert sum(sleeps) == pytest.approx(1.9, abs=0.01)
    assert c.stats["throttled_sleeps"] == 19


def test_rate_limit_burst_then_refill(sleeps: Sleeps) -> None:
    now = [0.0]
    with responses.RequestsMock() as mock:
        mock.get(f"{BASE}/x", json={})
        c = HttpClient(BASE, HttpSettings(rate_per_second=2, rate_burst=5), sleep=sleeps, clock=lambda: now[0])
        for _ in range(5):
            c.get("/x")
        assert sleeps == []
        c.get("/x")
        assert sleeps == [pytest.approx(0.5)]
        now[0] = 100.0  # a long pause refills the bucket, but only up to the burst
        for _ in range(5):
            c.get("/x")
    assert len(sleeps) == 1 and c.stats["throttled_sleeps"] == 1


@responses.activate
@pytest.mark.parametrize("declared", [True, False])
def test_response_bigger_than_the_cap(sleeps: Sleeps, declared: bool) -> None:
    responses.get(f"{BASE}/big", body=b"x" * 5000, auto_calculate_content_length=declared)
    responses.get(f"{BASE}/small", body=b"x" * 1000, auto_calculate_content_length=declared)
    c = client(sleeps, max_response_bytes=1000)
    with pytest.raises(TransientError) as err:
        c.get("/big")
    assert err.value.code == "response_too_large" and type(err.value) is TransientError
    assert len(c.get("/small").content) == 1000


@responses.activate
def test_oversized_answer_to_a_post_is_ambiguous(sleeps: Sleeps) -> None:
    responses.post(f"{BASE}/orders", status=201, body=b"x" * 5000)
    with pytest.raises(AmbiguousError) as err:
        client(sleeps, max_response_bytes=1000).post("/orders", json={})
    assert err.value.code == "response_too_large" and len(responses.calls) == 1


@responses.activate
def test_redirect_not_followed_on_authenticated_call(sleeps: Sleeps) -> None:
    responses.get(f"{BASE}/a", status=302, headers={"Location": "http://evil.test/steal"})
    responses.get("http://evil.test/steal", json={})
    c = HttpClient(BASE, HttpSettings(), auth=ApiKeyAuth("X-Api-Key", CANARY), sleep=sleeps)
    with pytest.raises(PermanentError) as err:
        c.get("/a")
    assert err.value.status == 302 and "unexpected redirect" in str(err.value)
    assert len(responses.calls) == 1


@responses.activate
def test_redirect_followed_on_unauthenticated_get_only(sleeps: Sleeps) -> None:
    responses.get(f"{BASE}/public", status=302, headers={"Location": f"{BASE}/moved"})
    responses.post(f"{BASE}/form", status=307, headers={"Location": "http://evil.test/steal"})
    responses.get(f"{BASE}/moved", json={"here": True})
    c = client(sleeps)
    assert c.get("/public", authenticated=False).json() == {"here": True}
    assert c.post("/form", data={"client_secret": CANARY}, authenticated=False).status == 307
    assert not any("evil.test" in (x.request.url or "") for x in responses.calls)


# -- secrets ------------------------------------------------------------------------------------

def test_redact() -> None:
    assert redact(f"token {CANARY} here", [CANARY, "", "ab"]) == "token *** here"
    assert redact("abcdef abc", ["abc", "abcdef"]) == "*** abc"  # short secrets ignored, longest first


@responses.activate
def test_secrets_never_reach_transient_errors_or_logs(sleeps: Sleeps, caplog: pytest.LogCaptureFixture) -> None:
    responses.get(f"{BASE}/x", status=503, json={"error": {"code": f"bad-{CANARY}", "message": CANARY}})
    responses.get(f"{BASE}/y", body=requests.exceptions.ConnectionError(f"refused for http://h/?k={CANARY}"))
    c = HttpClient(BASE, HttpSettings(max_attempts=2), name="api", secrets=[CANARY], sleep=sleeps)
    with caplog.at_level(logging.WARNING, logger="syncagent.http"):
        for path in ("/x", f"/y?key={CANARY}"):
            with pytest.raises(TransientError) as err:
                c.get(path)
            assert CANARY not in str(err.value) and "***" in str(err.value)
    assert len(caplog.records) == 2
    assert all(CANARY not in r.getMessage() for r in caplog.records)


@responses.activate
def test_secrets_never_reach_ambiguous_errors(sleeps: Sleeps) -> None:
    responses.post(f"{BASE}/o", body=requests.exceptions.ReadTimeout(f"timed out {CANARY}"))
    c = HttpClient(BASE, HttpSettings(), auth=ApiKeyAuth("X-Api-Key", CANARY), sleep=sleeps)
    with pytest.raises(AmbiguousError) as err:
        c.post(f"/o?k={CANARY}", json={"secret": CANARY})
    assert CANARY not in str(err.value)


@responses.activate
def test_retry_log_line(sleeps: Sleeps, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("syncagent.http.random.uniform", lambda low, high: high)
    responses.get(f"{BASE}/x", status=503)
    responses.get(f"{BASE}/x", json={})
    with caplog.at_level(logging.WARNING, logger="syncagent.http"):
        client(sleeps, max_attempts=3, backoff_base=0.5).get("/x")
    assert [r.getMessage() for r in caplog.records] == [
        "api: GET /x attempt 1/3 failed (503 server error); retrying in 0.5 s"]
    assert caplog.records[0].levelno == logging.WARNING


def test_bad_json_is_a_bad_response_with_a_scrubbed_excerpt() -> None:
    html = HttpResponse(502, {"Content-Type": "text/html"},
                        b"<html><title>502 Bad Gateway</title> hunterpass tok=Zx81kQ0pLmN2 </html>",
                        "http://api.test/x", secrets=("hunterpass",))
    with pytest.raises(TransientError) as err:
        html.json()
    text = str(err.value)
    assert err.value.code == "bad_response" and "Bad Gateway" in text
    assert "hunterpass" not in text and "Zx81kQ0pLmN2" not in text
    broken = HttpResponse(200, {"Content-Type": "application/json"}, b'{"items": [', "u")
    with pytest.raises(TransientError) as err:
        broken.json()
    assert err.value.code == "bad_response" and "not valid JSON" in str(err.value)
    assert HttpResponse(200, {"content-type": "application/json"}, b'{"a": 1}').json() == {"a": 1}


# -- session and TLS ----------------------------------------------------------------------------

def test_session_ignores_the_environment_and_never_retries_by_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    session = make_session(HttpSettings())
    assert session.trust_env is False and session.verify is True
    assert session.headers["User-Agent"] == f"syncagent/{__version__}"
    adapter = session.get_adapter("https://x.test")
    assert adapter.max_retries.total == 0 and adapter._pool_maxsize == 16  # type: ignore[attr-defined]
    assert make_session(HttpSettings(ca_bundle="/etc/ca.pem")).verify == "/etc/ca.pem"
    assert make_session(HttpSettings(verify_tls=False)).verify is False
    assert HttpClient(BASE).session.trust_env is False


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = b'{"tls": true}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    yield f"https://127.0.0.1:{server.server_address[1]}", ca_file
    server.shutdown()
    server.server_close()


def test_tls_is_verified_and_a_private_ca_bundle_is_trusted(tls_server: tuple[str, Path], sleeps: Sleeps) -> None:
    url, ca_file = tls_server
    untrusted = HttpClient(url, HttpSettings(max_attempts=5), sleep=sleeps)
    with pytest.raises(TransientError) as err:
        untrusted.get("/")
    assert err.value.code == "tls_verify_failed"
    assert untrusted.last_attempts == 1 and sleeps == []  # a bad certificate does not heal in seconds
    ok = HttpClient(url, HttpSettings(ca_bundle=str(ca_file)), sleep=sleeps).get("/")
    assert ok.status == 200 and ok.json() == {"tls": True}


ODD_SECRET = 'sk-live-Ãé"q\\/+ x&=%41\r\n'  # quotes, backslash, non-ASCII, URL-special characters, CR/LF


def _visible(text: str, secret: str) -> list[str]:
    """The 6-character pieces of `secret` (raw) that `text` still shows."""
    return [secret[i:i + 6] for i in range(len(secret) - 5) if secret[i:i + 6] in text]


def test_every_encoded_form_of_a_secret_is_masked() -> None:
    import base64
    import json
    import urllib.parse

    quoted = {
        "repr": repr({"key": ODD_SECRET}), "bytes repr": repr(ODD_SECRET.encode()),
        "json": json.dumps({"key": ODD_SECRET}), "json utf-8": json.dumps({"key": ODD_SECRET}, ensure_ascii=False),
        "unicode escape": ODD_SECRET.encode("unicode_escape").decode(),
        "form body": urllib.parse.urlencode({"client_secret": ODD_SECRET}),
        "url": "https://h/x?k=" + urllib.parse.quote(ODD_SECRET, safe=""),
        "path": "https://h/" + urllib.parse.quote(ODD_SECRET),
    }
    for name, text in quoted.items():
        masked = redact(f"server said: {text}", [ODD_SECRET])
        assert "***" in masked, (name, masked)
        for form in (ODD_SECRET, repr(ODD_SECRET)[1:-1], json.dumps(ODD_SECRET)[1:-1],
                     urllib.parse.quote_plus(ODD_SECRET), urllib.parse.quote(ODD_SECRET, safe="")):
            assert not _visible(masked, form), (name, masked)
    for user in ("a", "ab", "abc", "loja-centro"):  # Basic auth: the secret starts at any base64 alignment
        token = base64.b64encode(f"{user}:{ODD_SECRET}".encode()).decode()
        masked = redact(f"Authorization: Basic {token}", [ODD_SECRET])
        prefix = len(base64.b64encode(f"{user}:".encode()).decode().rstrip("="))
        assert "***" in masked and len(masked.replace("***", "")) <= len("Authorization: Basic ") + prefix + 3, masked


def test_a_secret_with_cr_lf_is_not_quoted_escaped_by_the_http_library(sleeps: Sleeps) -> None:
    """requests refuses the header and quotes it escaped ('…\\r\\n'): the message must not carry it."""
    c = HttpClient(f"http://127.0.0.1:{closed_port()}", HttpSettings(max_attempts=1), name="api",
                   auth=ApiKeyAuth("X-Api-Key", "sk-live-0123456789abcdef\r\n"), sleep=sleeps)
    with pytest.raises(TransientError) as err:
        c.get("/x")
    assert "0123456789" not in str(err.value) and "***" in str(err.value), str(err.value)


@responses.activate
def test_a_server_echoing_the_form_encoded_client_secret_is_masked(sleeps: Sleeps) -> None:
    import urllib.parse

    def echo(request: Any) -> tuple[int, dict[str, str], str]:
        return 401, {"Content-Type": "application/json"}, json.dumps(
            {"error": {"code": "invalid_client", "message": f"bad request body: {request.body}"}})

    responses.add_callback(responses.POST, f"{BASE}/oauth/token", callback=echo)
    c = HttpClient(BASE, HttpSettings(), name="bo", sleep=sleeps)
    c.auth = OAuthClientCredentials(c, "agent", "s3cr3t+/é&x=1")
    with pytest.raises(AuthError) as err:
        c.get("/a")
    assert "invalid_client" in str(err.value) and "client_id=agent" in str(err.value)
    assert urllib.parse.quote_plus("s3cr3t+/é&x=1") not in str(err.value) and "s3cr3t" not in str(err.value)


def test_log_lines_and_their_tracebacks_are_masked_in_every_form(caplog: pytest.LogCaptureFixture) -> None:
    from syncagent.logs import RedactingFilter

    record = logging.LogRecord("syncagent.x", logging.ERROR, __file__, 1, "header %r refused", (ODD_SECRET,), None)
    try:
        raise ValueError(f"bad value {ODD_SECRET!r}")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    assert RedactingFilter([ODD_SECRET]).filter(record)
    text = logging.Formatter().format(record)
    assert "ValueError: bad value '***'" in text and "header '***' refused" in text
    assert not _visible(text, repr(ODD_SECRET)[1:-1]) and not _visible(text, ODD_SECRET)
