"""How the Jumpseller connector signs in: the store's login and auth token, or OAuth 2.0 for an installed App.

Both are what the spec allows (info.description, "Authentication" and "OAuth 2.0 Authentication"):

* a store's own integration: HTTP Basic `login:authtoken` (the recommended method);
* a Jumpseller App installed in the store: a Bearer access token that lives 1 hour, renewed with
  the refresh token (`grant_type=refresh_token` at `https://accounts.jumpseller.com/oauth/token`).
  The answer brings a new refresh token; the one used may be dead from then on, so the newest is
  written to `token_file` (mode 0600) before the access token is used, and read from there first
  at the next start. Without `token_file` it lives in memory only: after a restart the refresh
  token of the environment must still be valid.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from syncagent import fastjson
from syncagent.connectors.rest import Basic
from syncagent.errors import AuthError, ChannelError, ConfigError, TransientError
from syncagent.http import AuthProvider, HttpClient, redact

TOKEN_URL = "https://accounts.jumpseller.com/oauth/token"  # info.description, "OAuth 2.0 Authentication"
APP_OPTIONS = ("client_id", "client_secret", "refresh_token")


@dataclass(frozen=True, slots=True)
class StoreOrApp:
    """Basic with `login`/`auth_token` when they are set, else the installed App's OAuth 2.0 refresh token."""

    basic: Basic = Basic("login", "auth_token")

    @staticmethod
    def is_app(options: Mapping[str, Any]) -> bool:
        return not options.get("login") and not options.get("auth_token") and bool(options.get("client_id"))

    def secrets(self, options: Mapping[str, Any]) -> tuple[str, ...]:
        if self.is_app(options):
            return tuple(str(options[k]) for k in ("client_secret", "refresh_token") if options.get(k))
        return self.basic.secrets(options) if options.get("login") and options.get("auth_token") else ()

    def provider(self, options: Mapping[str, Any], token_client: Callable[[], HttpClient]) -> AuthProvider:
        if not self.is_app(options):
            missing = [k for k in ("login", "auth_token") if not options.get(k)]
            if missing:
                raise ConfigError(f"a jumpseller channel needs login and auth_token (the store's API credentials), "
                                  f"or client_id, client_secret and refresh_token (an installed App); "
                                  f"missing {', '.join(missing)}")
            return self.basic.provider(options, token_client)
        missing = [k for k in APP_OPTIONS if not options.get(k)]
        if missing:
            raise ConfigError(f"a jumpseller App needs client_id, client_secret and refresh_token; "
                              f"missing {', '.join(missing)}")
        file = options.get("token_file")
        return RefreshTokenAuth(token_client, str(options.get("token_url") or TOKEN_URL), str(options["client_id"]),
                                str(options["client_secret"]), str(options["refresh_token"]),
                                Path(str(file)) if file else None)


class RefreshTokenAuth:
    """OAuth 2.0 with a refresh token that may rotate: access token fetched lazily, renewed before expiry or on a 401.

    Single-flight: concurrent callers that saw the same stale token wait on one lock for one refresh
    (two refreshes with one rotating refresh token would kill the second).
    """

    def __init__(self, token_client: Callable[[], HttpClient], token_url: str, client_id: str, client_secret: str,
                 refresh_token: str, token_file: Path | None, *, clock: Callable[[], float] = time.monotonic,
                 margin: float = 60.0) -> None:
        parts = urlsplit(token_url)
        self.root, self.path = f"{parts.scheme}://{parts.netloc}", parts.path or "/oauth/token"
        self.token_client = token_client
        self.client_id, self.client_secret = client_id, client_secret
        self.token_file = token_file
        kept = token_file.read_text(encoding="utf-8").strip() if token_file and token_file.is_file() else ""
        self.refresh_token = kept or refresh_token
        self.first_refresh = refresh_token
        self.clock, self.margin = clock, margin
        self.secrets: tuple[str, ...] = (client_secret, refresh_token, self.refresh_token)
        self.fetches = 0
        self._client: HttpClient | None = None
        self._headers: dict[str, str] | None = None
        self._expires = 0.0
        self._lock = threading.Lock()

    def headers(self) -> dict[str, str]:
        with self._lock:
            if self._headers is None or self.clock() >= self._expires:
                self._fetch()
            assert self._headers is not None
            return self._headers

    def refresh(self, stale: dict[str, str]) -> bool:
        with self._lock:
            if self._headers is None or stale is self._headers:
                self._fetch()
            return True

    def _accounts(self) -> HttpClient:
        """A client of the accounts host, with the channel's HTTP settings."""
        if self._client is None:
            channel = self.token_client()
            self._client = HttpClient(self.root, channel.settings, name=channel.name)
            channel.close()
        return self._client

    def _fetch(self) -> None:
        client = self._accounts()
        name = client.name
        try:
            # not repeated by the client: a refresh whose answer is lost may have used up the token already
            resp = client.request("POST", self.path, authenticated=False, idempotent=False, data={
                "grant_type": "refresh_token", "client_id": self.client_id, "client_secret": self.client_secret,
                "refresh_token": self.refresh_token})
        except ChannelError as exc:
            exc.args = (redact(str(exc), self.secrets),)
            raise
        if resp.status in (400, 401, 403):
            raise AuthError(f"{name}: the App's refresh token was refused ({resp.status}); authorise the App again "
                            "and put the new refresh token in the environment", status=resp.status, target=name)
        if resp.status != 200:
            raise TransientError(f"{name}: token endpoint {self.path} answered {resp.status}", status=resp.status,
                                 target=name)
        try:  # the body holds tokens nobody knows yet: never quote it
            body = fastjson.loads(resp.content)
        except (ValueError, UnicodeDecodeError):
            body = None
        access = body.get("access_token") if isinstance(body, dict) else None
        renewed = body.get("refresh_token") if isinstance(body, dict) else None
        if not isinstance(access, str) or not access:
            raise TransientError(f"{name}: token endpoint {self.path} gave no access_token", target=name,
                                 code="bad_response")
        if isinstance(renewed, str) and renewed and renewed != self.refresh_token:
            self._keep(renewed)
        try:
            lifetime = max(float(body.get("expires_in") or 3600), 1.0)  # type: ignore[union-attr]
        except (TypeError, ValueError):
            lifetime = 3600.0
        self._headers = {"Authorization": f"Bearer {access}"}
        # the tokens of this run stay secrets too (a server may quote an old one while refusing it)
        recent = tuple(dict.fromkeys(s for s in (*self.secrets[2:], access, self.refresh_token) if s))[-6:]
        self.secrets = (self.client_secret, self.first_refresh, *recent)
        self._expires = self.clock() + max(lifetime - min(self.margin, lifetime / 2), 0.0)
        self.fetches += 1

    def _keep(self, token: str) -> None:
        """The newest refresh token, on disk before it is relied on (atomic, readable by the agent's user only)."""
        self.refresh_token = token
        if self.token_file is None:
            return
        tmp = self.token_file.with_name(self.token_file.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(token)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.token_file)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
