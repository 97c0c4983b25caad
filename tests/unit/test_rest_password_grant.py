"""The REST base's OAuth2 password grant: what it sends, when it renews, and that no secret leaks."""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import parse_qs

import pytest
import responses

from syncagent.connectors.base import Capabilities
from syncagent.connectors.rest import AuthKind, PasswordGrant, RestConnector
from syncagent.errors import AuthError
from syncagent.http import HttpSettings

BASE = "https://hub.example.com"
SECRET = "client-secret-canary-0042"
PASSWORD = "api-password-canary-0042"


class Hub(RestConnector):
    type_name: ClassVar[str] = "hub"
    capabilities: ClassVar[Capabilities] = Capabilities(pull=frozenset({"orders"}))
    auth: ClassVar[AuthKind] = PasswordGrant("client_id", "client_secret", "api_user", "api_password")
    check_path: ClassVar[str] = "/orders"


def hub() -> Hub:
    options = {"client_id": "app-1", "client_secret": SECRET, "api_user": "seller@loja", "api_password": PASSWORD}
    return Hub("hub", BASE, options, HttpSettings(max_attempts=2), sleep=lambda s: None)


def token(value: str, expires_in: int = 3600) -> dict[str, Any]:
    return {"access_token": value, "token_type": "Bearer", "expires_in": expires_in, "refresh_token": "r-" + value}


def form(call: Any) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(call.request.body).items()}


@responses.activate
def test_password_grant_sends_the_app_and_the_seller_user_as_a_form() -> None:
    responses.post(f"{BASE}/oauth/token", json=token("t1"))
    responses.get(f"{BASE}/orders", json={"result": []})
    hub().check()
    assert form(responses.calls[0]) == {"grant_type": "password", "client_id": "app-1", "client_secret": SECRET,
                                        "username": "seller@loja", "password": PASSWORD}
    assert responses.calls[1].request.headers["Authorization"] == "Bearer t1"


@responses.activate
def test_a_401_asks_the_password_grant_again_once_never_the_refresh_token() -> None:
    responses.post(f"{BASE}/oauth/token", json=token("t1"))
    responses.post(f"{BASE}/oauth/token", json=token("t2"))
    responses.get(f"{BASE}/orders", status=401, json={"error": "invalid token"})
    responses.get(f"{BASE}/orders", json={"result": []})
    conn = hub()
    conn.check()
    grants = [form(c)["grant_type"] for c in responses.calls if c.request.url.endswith("/oauth/token")]
    assert grants == ["password", "password"]
    assert responses.calls[-1].request.headers["Authorization"] == "Bearer t2"


@responses.activate
def test_the_token_is_renewed_before_it_expires() -> None:
    responses.post(f"{BASE}/oauth/token", json=token("t1", expires_in=2))  # shorter than the renewal margin
    responses.post(f"{BASE}/oauth/token", json=token("t2"))
    responses.get(f"{BASE}/orders", json={"result": []})
    conn = hub()
    auth = conn.client.auth
    now = [0.0]
    auth.clock = lambda: now[0]  # type: ignore[union-attr]
    conn.check()
    now[0] = 1.5  # past half its life: renewed before the call, not after a 401
    conn.check()
    assert [c.request.headers.get("Authorization") for c in responses.calls if c.request.url.startswith(
        f"{BASE}/orders")] == ["Bearer t1", "Bearer t2"]


@responses.activate
def test_wrong_password_is_an_auth_error_without_any_secret() -> None:
    responses.post(f"{BASE}/oauth/token", status=400,
                   json={"error": "invalid_grant", "error_description": f"bad password {PASSWORD}"})
    with pytest.raises(AuthError) as caught:
        hub().check()
    text = str(caught.value)
    assert "credentials rejected" in text and PASSWORD not in text and SECRET not in text


def test_the_secrets_masked_are_the_client_secret_and_the_password() -> None:
    assert set(hub().secrets) == {SECRET, PASSWORD}
