"""The first authorization of a channel whose platform signs sellers in by OAuth authorization code.

``syncagent auth <type> --channel C`` prints the consent page's URL; the seller opens it on any
machine with a browser, lets the app in, and the platform redirects to the app's redirect URI with
``?code=…``. That code (or the whole redirected URL) is given back here, exchanged for the first
tokens, and the tokens are stored in the journal, where the channel's connector reads them.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from syncagent.config import ChannelConfig
from syncagent.connectors import registry
from syncagent.connectors.common import http_settings
from syncagent.connectors.oauth import exchange_code
from syncagent.connectors.rest import AuthorizationCode, RestConnector
from syncagent.errors import ConfigError
from syncagent.http import HttpClient
from syncagent.journal import Journal


def _kind(cfg: ChannelConfig) -> AuthorizationCode:
    cls = registry.load(cfg.type)
    kind = cls.auth if isinstance(cls, type) and issubclass(cls, RestConnector) else None
    if not isinstance(kind, AuthorizationCode):
        raise ConfigError(f"channel {cfg.name!r} ({cfg.type}) does not sign in by authorization code: it has "
                          "nothing to authorize")
    return kind


def consent_url(cfg: ChannelConfig) -> str:
    """The page the seller opens to let the app in."""
    return _kind(cfg).consent_url(cfg.options)


def code_of(text: str) -> str:
    """The code as pasted: the code itself, or the whole URL the browser was redirected to."""
    text = text.strip()
    if "://" in text or text.startswith("?"):
        values = parse_qs(urlsplit(text).query).get("code")
        if not values or not values[0].strip():
            raise ConfigError("the URL given has no ?code= (copy the address the browser was sent to after the "
                              "seller allowed the app)")
        return values[0].strip()
    if not text:
        raise ConfigError("no authorization code given")
    return text


def authorize(cfg: ChannelConfig, journal: Journal, code: str) -> dict[str, Any]:
    """Exchange the code and store the tokens in the journal; the connector reads them from there."""
    kind = _kind(cfg)
    options = cfg.options
    client = HttpClient(cfg.base_url, http_settings(cfg.http), name=cfg.name,
                        secrets=(str(options[kind.secret_option]),))
    try:
        return exchange_code(client, journal.state_of(cfg.name), client_id=str(options[kind.id_option]),
                             client_secret=str(options[kind.secret_option]), code=code_of(code),
                             redirect_uri=str(options[kind.redirect_option]), token_path=kind.token_path)
    finally:
        client.close()
