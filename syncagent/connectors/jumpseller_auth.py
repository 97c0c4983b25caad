"""How the Jumpseller connector signs in: the store's login and auth token, or OAuth 2.0 for an installed App.

Both are what the spec allows (info.description, "Authentication" and "OAuth 2.0 Authentication"):

* a store's own integration: HTTP Basic `login:authtoken` (the recommended method);
* a Jumpseller App installed in the store: a Bearer access token that lives 1 hour, renewed with
  the refresh token (`grant_type=refresh_token` at `https://accounts.jumpseller.com/oauth/token`).
  The answer brings a new refresh token; the one used may be dead from then on, so the tokens live
  in the channel's state in the journal (`syncagent.connectors.oauth.RotatingRefreshAuth`: stored
  before use, one refresh at a time across processes). The App's first refresh token comes from
  the config (`refresh_token`) and seeds the journal; after the first rotation the journal's wins,
  until the config is given a different one (the App installed again).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from syncagent.connectors.base import ConnectorState, MemoryState
from syncagent.connectors.oauth import RotatingRefreshAuth
from syncagent.connectors.rest import Basic
from syncagent.errors import ConfigError
from syncagent.http import AuthProvider, HttpClient

TOKEN_URL = "https://accounts.jumpseller.com/oauth/token"  # info.description, "OAuth 2.0 Authentication"
# no command can install an App for the store owner (it happens in the store's admin panel)
REINSTALL = ("the store owner must install the App again (or authorize it again) and the new refresh token "
             "go into the channel's `refresh_token` (its environment variable); the agent stores it at its next "
             "start because it differs from the one it started from")
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
        """The store's Basic credentials (an App's tokens need the channel's state: `session`)."""
        if self.is_app(options):
            raise TypeError("a Jumpseller App keeps its tokens in the journal: use session()")
        return self.session(options, lambda root: token_client(), MemoryState(), channel="", type_name="")

    def session(self, options: Mapping[str, Any], token_client: Callable[[str | None], HttpClient],
                state: ConnectorState, *, channel: str, type_name: str) -> AuthProvider:
        """Basic for the store's own credentials; for an App, its rotating tokens kept in the channel's state."""
        if not self.is_app(options):
            missing = [k for k in ("login", "auth_token") if not options.get(k)]
            if missing:
                raise ConfigError(f"a jumpseller channel needs login and auth_token (the store's API credentials), "
                                  f"or client_id, client_secret and refresh_token (an installed App); "
                                  f"missing {', '.join(missing)}")
            return self.basic.provider(options, lambda: token_client(None))
        missing = [k for k in APP_OPTIONS if not options.get(k)]
        if missing:
            raise ConfigError(f"a jumpseller App needs client_id, client_secret and refresh_token; "
                              f"missing {', '.join(missing)}")
        parts = urlsplit(str(options.get("token_url") or TOKEN_URL))  # the accounts host, not the API's
        return RotatingRefreshAuth(token_client(f"{parts.scheme}://{parts.netloc}"), str(options["client_id"]),
                                   str(options["client_secret"]), state, channel=channel, platform="Jumpseller",
                                   token_path=parts.path or "/oauth/token", seed=str(options["refresh_token"]),
                                   reauthorize=f"syncagent auth {type_name} --channel {channel}", remedy=REINSTALL)
