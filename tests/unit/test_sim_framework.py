"""The simulator framework's store and auth: what every new simulator builds on."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from syncagent.simulators.auth import TokenIssuer, require_basic, require_headers
from syncagent.simulators.common import HttpError, Request, SimApp
from syncagent.simulators.store import DocStore


def _req(method: str = "GET", path: str = "/", body: bytes = b"", headers: dict[str, str] | None = None,
         query: dict[str, list[str]] | None = None) -> Request:
    return Request(method, path, query or {}, {k.lower(): v for k, v in (headers or {}).items()}, body)


def test_store_orders_changes_by_seq_and_windows(tmp_path: Path) -> None:
    store = DocStore(SimApp(str(tmp_path / "s.db")).db)
    for key in ("b", "a", "c"):
        store.put("items", key, {"key": key, "sku": key.upper()})
    store.put("items", "b", {"key": "b", "sku": "B2"})  # a change moves it to the end of the feed
    assert [k for _, k, _ in store.after("items", 0, 10)] == ["a", "c", "b"]
    assert [k for _, k, _ in store.after("items", 2, 10)] == ["c", "b"]
    page, total = store.window("items", 1, 1, by_key=True)
    assert total == 3 and page[0][0] == "b"
    assert store.find("items", "sku", "B2")[0][0] == "b"
    assert store.delete("items", "a") and store.get("items", "a") is None and store.count("items") == 2


def test_headers_and_basic_are_checked() -> None:
    require_headers(_req(headers={"X-Key": "k"}), {"x-key": "k"})
    with pytest.raises(HttpError) as err:
        require_headers(_req(headers={"X-Key": "bad"}), {"x-key": "k"})
    assert err.value.status == 401
    good = "Basic " + base64.b64encode(b"key:").decode()
    require_basic(_req(headers={"Authorization": good}), "key", "")
    with pytest.raises(HttpError):
        require_basic(_req(headers={"Authorization": "Basic eDp5"}), "key", "")


def test_refresh_tokens_are_single_use_and_rotate(tmp_path: Path) -> None:
    now = [1000.0]
    issuer = TokenIssuer(SimApp(str(tmp_path / "s.db")), {"app": "s3cret"}, ttl=60, clock=lambda: now[0])
    code = issuer.grant_code("app")
    form = f"grant_type=authorization_code&client_id=app&client_secret=s3cret&code={code}".encode()
    first = issuer.token(_req("POST", "/oauth/token", form))
    assert first.status == 200 and first.body["refresh_token"]
    assert issuer.token(_req("POST", "/oauth/token", form)).status == 400  # a code works once
    token = first.body["access_token"]
    assert issuer.require(_req(headers={"Authorization": f"Bearer {token}"})) == "seller"
    now[0] += 61
    with pytest.raises(HttpError):
        issuer.require(_req(headers={"Authorization": f"Bearer {token}"}))
    refresh = f"grant_type=refresh_token&client_id=app&client_secret=s3cret&refresh_token={first.body['refresh_token']}"
    second = issuer.token(_req("POST", "/oauth/token", refresh.encode()))
    assert second.status == 200 and second.body["refresh_token"] != first.body["refresh_token"]
    assert issuer.token(_req("POST", "/oauth/token", refresh.encode())).status == 400  # the old one is dead
    assert issuer.live_refresh_tokens() == [second.body["refresh_token"]]


def test_password_grant_and_wrong_secret(tmp_path: Path) -> None:
    issuer = TokenIssuer(SimApp(str(tmp_path / "s.db")), {"app": "s"}, users={"seller@x": "pw"})
    ok = issuer.token(_req("POST", "/t", b"grant_type=password&client_id=app&client_secret=s&username=seller%40x&password=pw"))
    assert ok.status == 200 and "refresh_token" in ok.body
    bad = issuer.token(_req("POST", "/t", b"grant_type=password&client_id=app&client_secret=x&username=seller%40x&password=pw"))
    assert bad.status == 401


def test_the_request_log_stamps_a_request_with_the_time_it_arrived(tmp_path: Path) -> None:
    """An answer a fault delays (a timeout) is logged late; its stamp still says when it came."""
    app = SimApp(str(tmp_path / "s.db"))
    post = Request("POST", "/orders", {}, {}, b"{}", received=100.0)  # arrives first, answered last
    lookup = Request("GET", "/orders", {"external_id": ["x"]}, {}, b"", received=100.2)
    app.log_request(lookup, 200)
    app.log_request(post, 201)
    items = app._admin_requests(_req(query={"after": ["0"]})).body["items"]
    assert [(r["method"], r["ts"]) for r in items] == [("GET", 100.2), ("POST", 100.0)]  # logged as answered
