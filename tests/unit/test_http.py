"""The HTTP layer with `responses`: retries, Retry-After, ambiguity, tokens, rate limit, caps, TLS."""

from __future__ import annotations

import http.server
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import responses
import trustme

from syncagent.errors import AmbiguousError, AuthError, PermanentError, TransientError
from syncagent.http import ApiKeyAuth, HttpClient, HttpSettings, OAuthClientCredentials, redact

BASE = "http://api.test"
CANARY = "canary-secret-value-123"


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def client(sleeps: Sleeps, **settings: object) -> HttpClient:
    return HttpClient(BASE, HttpSettings(**settings), name="api", sleep=sleeps)  # type: ignore[arg-type]


@responses.activate
def test_retries_5xx_then_succeeds(sleeps: Sleeps) -> None:
    responses.get(f"{BASE}/x", status=503)
    responses.get(f"{BASE}/x", status=502)
    responses.get(f"{BASE}/x", json={"ok": True})
    c = client(sleeps, max_attempts=5, backoff_base=1.0)
    assert c.get("/x").json() == {"ok": True}
    assert c.last_attempts == 3 and len(sleeps) == 2
    assert 0 <= sleeps[0] <= 1.0 and 0 <= sleeps[1] <= 2.0  # full jitter under the exponential ceiling


@responses.activate
def test_retry_after_is_honoured_and_capped(sleeps: Sleeps) -> None:
    responses.get(f"{BASE}/x", status=429, headers={"Retry-After": "7"})
    responses.get(f"{BASE}/x", status=429, headers={"Retry-After": "9999"})
    responses.get(f"{BASE}/x", json={})
    client(sleeps, max_retry_after=60).get("/x")
    assert sleeps == [7.0, 60.0]


@responses.activate
def test_attempts_are_capped(sleeps: Sleeps) -> None:
    responses.get(f"{BASE}/x", status=500)
    c = client(sleeps, max_attempts=4)
    with pytest.raises(TransientError) as err:
        c.get("/x")
    assert "after 4 attempts" in str(err.value) and err.value.status == 500
    assert len(responses.calls) == 4 and c.last_attempts == 4


@responses.activate
def test_non_idempotent_post_is_ambiguous_on_5xx_and_never_repeated(sleeps: Sleeps) -> None:
    responses.post(f"{BASE}/orders", status=500)
    with pytest.raises(AmbiguousError):
        client(sleeps).post("/orders", json={})
    assert len(responses.calls) == 1


@responses.activate
def test_non_idempotent_post_retried_on_429_and_refused_connection(sleeps: Sleeps) -> None:
    responses.post(f"{BASE}/orders", status=429, headers={"Retry-After": "1"})
    responses.post(f"{BASE}/orders", body=requests.exceptions.ConnectionError("NewConnectionError: Connection refused"))
    responses.post(f"{BASE}/orders", status=201, json={"number": "1"})
    assert client(sleeps).post("/orders", json={}).status == 201
    assert len(responses.calls) == 3


@responses.activate
def test_non_idempotent_post_read_timeout_is_ambiguous(sleeps: Sleeps) -> None:
    responses.post(f"{BASE}/orders", body=requests.exceptions.ReadTimeout("read timed out"))
    with pytest.raises(AmbiguousError):
        client(sleeps).post("/orders", json={})
    assert len(responses.calls) == 1


def oauth(sleeps: Sleeps, clock: list[float] | None = None) -> tuple[HttpClient, OAuthClientCredentials]:
    now = clock if clock is not None else [0.0]
    token_client = HttpClient(BASE, HttpSettings(), name="bo", sleep=sleeps)
    auth = OAuthClientCredentials(token_client, "id", CANARY, clock=lambda: now[0])
    return HttpClient(BASE, HttpSettings(), name="bo", auth=auth, sleep=sleeps), auth


@responses.activate
def test_token_fetched_once_and_refreshed_once_on_401(sleeps: Sleeps) -> None:
    responses.post(f"{BASE}/oauth/token", json={"access_token": "t1", "token_type": "Bearer", "expires_in": 3600})
    responses.post(f"{BASE}/oauth/token", json={"access_token": "t2", "token_type": "Bearer", "expires_in": 3600})
    responses.get(f"{BASE}/a", json={})
    responses.get(f"{BASE}/a", json={})
    responses.get(f"{BASE}/a", status=401, json={"error": {"code": "invalid_token", "message": "expired"}})
    responses.get(f"{BASE}/a", json={"after": "refresh"})
    c, auth = oauth(sleeps)
    c.get("/a")
    c.get("/a")
    assert auth.fetches == 1
    assert c.get("/a").json() == {"after": "refresh"}
    assert auth.fetches == 2 and c.stats["refreshes"] == 1
    assert responses.calls[-1].request.headers["Authorization"] == "Bearer t2"


@responses.activate
def test_401_always_refreshes_once_then_auth_error_without_loop(sleeps: Sleeps) -> None:
    responses.post(f"{BASE}/oauth/token", json={"access_token": "t", "token_type": "Bearer", "expires_in": 3600})
    responses.get(f"{BASE}/a", status=401, json={"error": {"code": "invalid_token", "message": "nope"}})
    c, auth = oauth(sleeps)
    with pytest.raises(AuthError) as err:
        c.get("/a")
    assert err.value.code == "invalid_token"
    assert auth.fetches == 2  # the first token, and exactly one refresh
    assert len([x for x in responses.calls if x.request.url.endswith("/a")]) == 2
    assert CANARY not in str(err.value)


@responses.activate
def test_token_renewed_before_expiry(sleeps: Sleeps) -> None:
    responses.post(f"{BASE}/oauth/token", json={"access_token": "t", "token_type": "Bearer", "expires_in": 100})
    responses.get(f"{BASE}/a", json={})
    clock = [0.0]
    c, auth = oauth(sleeps, clock)
    c.get("/a")
    clock[0] = 60.0
    c.get("/a")
    assert auth.fetches == 1
    clock[0] = 80.0  # inside the renewal margin
    c.get("/a")
    assert auth.fetches == 2


@responses.activate
def test_concurrent_refresh_is_single_flight(sleeps: Sleeps) -> None:
    responses.post(f"{BASE}/oauth/token", json={"access_token": "t", "token_type": "Bearer", "expires_in": 3600})
    c, auth = oauth(sleeps)
    stale = auth.headers()
    threads = [threading.Thread(target=auth.refresh, args=(stale,)) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert auth.fetches == 2  # the first token and one refresh, not ten


@responses.activate
def test_revoked_api_key_is_an_auth_error_with_its_code(sleeps: Sleeps) -> None:
    responses.get(f"{BASE}/v1/orders", status=401, json={"error": {"code": "key_revoked", "message": "revoked"}})
    c = HttpClient(BASE, HttpSettings(), name="su", auth=ApiKeyAuth("X-Api-Key", CANARY), sleep=sleeps)
    with pytest.raises(AuthError) as err:
        c.get("/v1/orders")
    assert err.value.code == "key_revoked" and len(responses.calls) == 1
    assert CANARY not in str(err.value)


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


@responses.activate
def test_response_size_cap(sleeps: Sleeps) -> None:
    responses.get(f"{BASE}/big", body=b"x" * 5000)
    with pytest.raises(TransientError) as err:
        client(sleeps, max_response_bytes=1000).get("/big")
    assert err.value.code == "response_too_large"


@responses.activate
def test_redirect_not_followed_when_authenticated(sleeps: Sleeps) -> None:
    responses.get(f"{BASE}/a", status=302, headers={"Location": "http://evil.test/steal"})
    c = HttpClient(BASE, HttpSettings(), auth=ApiKeyAuth("X-Api-Key", CANARY), sleep=sleeps)
    with pytest.raises(PermanentError):
        c.get("/a")
    assert len(responses.calls) == 1


def test_session_ignores_environment_proxies() -> None:
    assert HttpClient(BASE).session.trust_env is False


def test_redact() -> None:
    assert redact(f"token {CANARY} here", [CANARY, "", "ab"]) == "token *** here"


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
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    yield f"https://127.0.0.1:{server.server_address[1]}", ca_file
    server.shutdown()


def test_tls_verified_and_private_ca_bundle(tls_server: tuple[str, Path], sleeps: Sleeps) -> None:
    url, ca_file = tls_server
    with pytest.raises(TransientError):
        HttpClient(url, HttpSettings(max_attempts=1), sleep=sleeps).get("/")
    ok = HttpClient(url, HttpSettings(ca_bundle=str(ca_file)), sleep=sleeps).get("/")
    assert ok.json() == {"tls": True}
