"""The auth kinds of a REST channel: how it proves who it is, declared on the connector class.

Each kind names the config options that hold its credentials and builds the `AuthProvider`
every `HttpClient` of the channel uses; a kind whose tokens must outlive the process (single-use
rotating refresh tokens) keeps them in the channel's `ConnectorState`, the journal.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlencode

from syncagent.connectors.base import ConnectorState
from syncagent.connectors.oauth import RotatingRefreshAuth
from syncagent.http import ApiKeyAuth, AuthProvider, HttpClient, OAuthClientCredentials


# -- auth kinds -------------------------------------------------------------------------------------
class AuthKind(Protocol):
    """How a channel signs in. A kind whose tokens live in the channel's state (the journal) has a
    ``session(options, token_client, state, *, channel, type_name)`` too (see `StatefulAuthKind`),
    which the connector calls instead of ``provider``."""

    def secrets(self, options: Mapping[str, Any]) -> tuple[str, ...]: ...

    def provider(self, options: Mapping[str, Any], token_client: Callable[[], HttpClient]) -> AuthProvider: ...


@runtime_checkable
class StatefulAuthKind(AuthKind, Protocol):
    def session(self, options: Mapping[str, Any], token_client: Callable[[str | None], HttpClient],
                state: ConnectorState, *, channel: str, type_name: str) -> AuthProvider:
        """The provider, given the channel's state; token_client(root) is a client of that root (None: the API's)
        with the channel's HTTP settings."""
        ...


def _header_auth(header: str, value: str, secrets: tuple[str, ...]) -> AuthProvider:
    """A fixed header on every request, masked in every form the options give (raw, base64)."""
    auth = ApiKeyAuth(header, value)
    auth.secrets = (*auth.secrets, *secrets)
    return auth


@dataclass(frozen=True, slots=True)
class StaticKey:
    """A fixed key in a header (``X-Api-Key: …``, ``Authorization: Token …``); a 401 is final."""

    header: str
    option: str
    prefix: str = ""

    def secrets(self, options: Mapping[str, Any]) -> tuple[str, ...]:
        return (str(options[self.option]),)

    def provider(self, options: Mapping[str, Any], token_client: Callable[[], HttpClient]) -> AuthProvider:
        return _header_auth(self.header, self.prefix + str(options[self.option]), self.secrets(options))


@dataclass(frozen=True, slots=True)
class Basic:
    """HTTP Basic: user and password from two options."""

    user_option: str
    password_option: str

    def _encoded(self, options: Mapping[str, Any]) -> str:
        pair = f"{options[self.user_option]}:{options[self.password_option]}"
        return base64.b64encode(pair.encode()).decode()

    def secrets(self, options: Mapping[str, Any]) -> tuple[str, ...]:
        return (str(options[self.password_option]), self._encoded(options))

    def provider(self, options: Mapping[str, Any], token_client: Callable[[], HttpClient]) -> AuthProvider:
        return _header_auth("Authorization", "Basic " + self._encoded(options), self.secrets(options))


@dataclass(frozen=True, slots=True)
class ClientCredentials:
    """OAuth2 client credentials: a token fetched once, renewed before expiry or once on a 401."""

    id_option: str
    secret_option: str
    token_path: str = "/oauth/token"

    def secrets(self, options: Mapping[str, Any]) -> tuple[str, ...]:
        return (str(options[self.secret_option]),)

    def provider(self, options: Mapping[str, Any], token_client: Callable[[], HttpClient]) -> AuthProvider:
        return OAuthClientCredentials(token_client(), str(options[self.id_option]), str(options[self.secret_option]),
                                      token_path=self.token_path)


@dataclass(frozen=True, slots=True)
class PasswordGrant:
    """OAuth2 password grant: the app's client id/secret and the seller's API user/password, all options.

    The token is fetched once, renewed before expiry or once on a 401 by asking the same grant again
    (no refresh token kept: a rotating, single-use one is lost with a crash between two writes).
    """

    id_option: str
    secret_option: str
    user_option: str
    password_option: str
    token_path: str = "/oauth/token"

    def secrets(self, options: Mapping[str, Any]) -> tuple[str, ...]:
        return (str(options[self.secret_option]), str(options[self.password_option]))

    def provider(self, options: Mapping[str, Any], token_client: Callable[[], HttpClient]) -> AuthProvider:
        password = str(options[self.password_option])
        grant = {"grant_type": "password", "username": str(options[self.user_option]), "password": password}
        return OAuthClientCredentials(token_client(), str(options[self.id_option]), str(options[self.secret_option]),
                                      token_path=self.token_path, grant=grant, grant_secrets=(password,))


class FixedHeaders:
    """Headers that never change (an app key pair, a store id): a 401 is final."""

    def __init__(self, headers: Mapping[str, str], secrets: tuple[str, ...]) -> None:
        self._headers = dict(headers)
        self.secrets = secrets

    def headers(self) -> dict[str, str]:
        return self._headers

    def refresh(self, stale: dict[str, str]) -> bool:
        return False


@dataclass(frozen=True, slots=True)
class Headers:
    """Several fixed headers, each from an option (header → option name), plus constant ones (`fixed`).

    Every option named is a secret (an app key and its token, a user e-mail and its key).
    """

    options: Mapping[str, str]
    fixed: Mapping[str, str] = field(default_factory=dict)

    def secrets(self, options: Mapping[str, Any]) -> tuple[str, ...]:
        return tuple(str(options[option]) for option in self.options.values())

    def provider(self, options: Mapping[str, Any], token_client: Callable[[], HttpClient]) -> AuthProvider:
        headers = {header: str(options[option]) for header, option in self.options.items()}
        return FixedHeaders({**headers, **self.fixed}, self.secrets(options))


@dataclass(frozen=True, slots=True)
class AuthorizationCode:
    """OAuth2 authorization code, then single-use refresh tokens that rotate at every refresh.

    The tokens live in the channel's `ConnectorState` (the journal), stored before they are used
    (see `syncagent.connectors.oauth`); ``syncagent auth <type> --channel C`` stores the first ones.
    """

    id_option: str
    secret_option: str
    redirect_option: str
    authorize_url_option: str
    platform: str
    token_path: str = "/oauth/token"

    def secrets(self, options: Mapping[str, Any]) -> tuple[str, ...]:
        return (str(options[self.secret_option]),)

    def provider(self, options: Mapping[str, Any], token_client: Callable[[], HttpClient]) -> AuthProvider:
        raise TypeError("AuthorizationCode keeps its tokens in the journal: use session()")

    def session(self, options: Mapping[str, Any], token_client: Callable[[str | None], HttpClient],
                state: ConnectorState, *, channel: str, type_name: str) -> RotatingRefreshAuth:
        return RotatingRefreshAuth(token_client(None), str(options[self.id_option]), str(options[self.secret_option]),
                                   state, channel=channel, platform=self.platform, token_path=self.token_path,
                                   reauthorize=f"syncagent auth {type_name} --channel {channel}")

    def consent_url(self, options: Mapping[str, Any]) -> str:
        """The page where the seller lets the app in; it redirects to redirect_uri with ?code=."""
        query = urlencode({"response_type": "code", "client_id": str(options[self.id_option]),
                           "redirect_uri": str(options[self.redirect_option])})
        return f"{str(options[self.authorize_url_option]).rstrip('?')}?{query}"
