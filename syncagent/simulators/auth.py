"""How simulators check credentials: fixed headers, HTTP Basic, and an OAuth2 token endpoint.

One place for what every simulator needs of auth, so a new one declares its credentials instead
of copying checks:

* `require_headers` - fixed headers (``X-Api-Key``, ``x-vtex-api-appkey``/``apptoken``, ``X-User-Email``…);
* `require_basic` - HTTP Basic user and password;
* `TokenIssuer` - an OAuth2 token endpoint with the grants real platforms use (client credentials,
  password, authorization code) and refresh tokens that may be **single use and rotating** (each
  refresh answers a new refresh token and the old one is dead at once, as Mercado Livre does), and
  `TokenIssuer.require` to check a Bearer token on every call. Tokens expire by the simulator's clock;
  admin hooks expire or revoke them so tests can prove renewal and revocation.
"""

from __future__ import annotations

import base64
import hmac
import secrets as _secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from syncagent.simulators.common import HttpError, Request, Response, SimApp
from syncagent.simulators.store import DocStore


def _same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def require_headers(req: Request, expected: Mapping[str, str], *, status: int = 401,
                    code: str = "unauthorized") -> None:
    """Every header of `expected` is present with its value, or the call is refused."""
    for name, value in expected.items():
        if not _same(req.header(name), value):
            raise HttpError(status, code, f"missing or wrong {name} header")


def require_basic(req: Request, user: str, password: str, *, code: str = "unauthorized") -> None:
    """HTTP Basic with exactly this user and password."""
    expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    if not _same(req.header("authorization"), expected):
        err = HttpError(401, code, "missing or wrong HTTP Basic credentials")
        err.headers["WWW-Authenticate"] = 'Basic realm="api"'
        raise err


def form_or_json(req: Request) -> dict[str, str]:
    """A token request's fields, sent as a form (RFC 6749) or as JSON (as some platforms accept)."""
    ctype = (req.header("content-type") or "").lower()
    if "json" in ctype:
        body = req.json()
        if not isinstance(body, dict):
            raise HttpError(400, "invalid_request", "the token request must be an object")
        return {str(k): str(v) for k, v in body.items() if v is not None}
    fields = parse_qs(req.body.decode("utf-8", "replace"), keep_blank_values=True)
    fields.update({k: v for k, v in req.query.items() if k not in fields})
    return {k: v[0] for k, v in fields.items() if v}


@dataclass
class TokenIssuer:
    """An OAuth2 token endpoint and the Bearer check that goes with it.

    clients: client id → secret. users: user → password (password grant). codes: authorization
    codes accepted once each (authorization code grant; `grant_code` makes new ones). ttl: access
    token lifetime in seconds. rotate_refresh: a refresh token works once and each refresh answers
    a new one. `error_body` shapes the error answers as the platform does.
    """

    app: SimApp
    clients: dict[str, str]
    users: dict[str, str] = field(default_factory=dict)
    ttl: int = 3600
    rotate_refresh: bool = True
    grants: tuple[str, ...] = ("client_credentials", "password", "authorization_code", "refresh_token")
    clock: Callable[[], float] = time.time
    error_body: Callable[[int, str, str], Any] | None = None

    def __post_init__(self) -> None:
        self.store = DocStore(self.app.db, self.app.lock)

    # -- admin ----------------------------------------------------------------------------------
    def grant_code(self, client_id: str, user: str = "seller", redirect_uri: str | None = None) -> str:
        """A new single-use authorization code, as the platform's consent page would hand out."""
        code = "TG-" + _secrets.token_hex(12)
        self.store.put("_oauth_codes", code, {"client_id": client_id, "user": user, "redirect_uri": redirect_uri})
        return code

    def expire_all(self) -> None:
        for key, doc in list(self.store.all("_oauth_access")):
            self.store.put("_oauth_access", key, {**doc, "expires": 0})

    def revoke_all(self) -> None:
        for collection in ("_oauth_access", "_oauth_refresh"):
            for key, _ in list(self.store.all(collection)):
                self.store.delete(collection, key)

    def live_refresh_tokens(self) -> list[str]:
        return [key for key, _ in self.store.all("_oauth_refresh")]

    # -- the endpoint ---------------------------------------------------------------------------
    def _fail(self, status: int, code: str, message: str) -> Response:
        body = self.error_body(status, code, message) if self.error_body else {"error": code,
                                                                                "error_description": message}
        return Response(status, body)

    def token(self, req: Request) -> Response:
        """POST /oauth/token (wherever the simulator routes it)."""
        fields = form_or_json(req)
        client_id, client_secret = fields.get("client_id"), fields.get("client_secret")
        auth = req.header("authorization") or ""
        if auth.startswith("Basic ") and client_id is None:
            try:
                client_id, _, client_secret = base64.b64decode(auth[6:]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return self._fail(401, "invalid_client", "malformed Basic credentials")
        if client_id not in self.clients or not _same(client_secret, self.clients[client_id]):
            return self._fail(401, "invalid_client", "unknown client or wrong secret")
        grant = fields.get("grant_type", "")
        if grant not in self.grants:
            return self._fail(400, "unsupported_grant_type", f"grant_type {grant!r} is not supported")
        user = "client"
        if grant == "password":
            user = fields.get("username", "")
            if user not in self.users or not _same(fields.get("password"), self.users[user]):
                return self._fail(400, "invalid_grant", "wrong username or password")
        elif grant == "authorization_code":
            doc = self.store.get("_oauth_codes", fields.get("code", ""))
            if doc is None or doc["client_id"] != client_id:
                return self._fail(400, "invalid_grant", "the authorization code is unknown, used or expired")
            self.store.delete("_oauth_codes", fields["code"])
            user = doc["user"]
        elif grant == "refresh_token":
            doc = self.store.get("_oauth_refresh", fields.get("refresh_token", ""))
            if doc is None or doc["client_id"] != client_id:
                return self._fail(400, "invalid_grant", "the refresh token is unknown, used or revoked")
            if self.rotate_refresh:
                self.store.delete("_oauth_refresh", fields["refresh_token"])
            user = doc["user"]
        return Response(200, self._issue(client_id, user, grant, fields.get("refresh_token")))

    def _issue(self, client_id: str, user: str, grant: str, old_refresh: str | None) -> dict[str, Any]:
        access = "APP_USR-" + _secrets.token_hex(16)
        self.store.put("_oauth_access", access, {"client_id": client_id, "user": user,
                                                 "expires": self.clock() + self.ttl})
        answer: dict[str, Any] = {"access_token": access, "token_type": "Bearer", "expires_in": self.ttl}
        if grant != "client_credentials":
            refresh = old_refresh if (grant == "refresh_token" and not self.rotate_refresh) else \
                "TG-" + _secrets.token_hex(16)
            self.store.put("_oauth_refresh", refresh, {"client_id": client_id, "user": user})
            answer["refresh_token"] = refresh
        return answer

    def require(self, req: Request) -> str:
        """The Bearer token of the call is live; answers the user it was issued for, else 401."""
        auth = req.header("authorization") or ""
        token = auth[7:] if auth[:7].lower() == "bearer " else req.arg("access_token")
        doc = self.store.get("_oauth_access", token) if token else None
        if doc is None:
            raise HttpError(401, "invalid_token", "missing or unknown access token")
        if doc["expires"] <= self.clock():
            raise HttpError(401, "expired_token", "the access token has expired")
        return str(doc["user"])
