"""A REST channel as declarations: how it authenticates, how each feed pages, what it reads and lists.

A connector built on `RestConnector` declares

* ``auth``: one of the auth kinds below, naming the config options that hold the credentials;
* ``check_path``: the cheapest authenticated GET (``check-config --online``, doctor);
* ``feeds``: per entity it can read, a `Feed`: the path, the pagination kind, the item parser
  and the item's key; ``pull`` follows it, each page carrying the cursor that resumes after it;
* ``lists``: per entity it can show as it holds it now (`listing`), a `Feed` too;

and writes only its mappers (model → wire) and writers (one per entity it takes). Errors are
mapped alike for every such connector (`common.refused`: 401/403 → `AuthError`, 429/5xx →
`TransientError`, others → `PermanentError`, secrets scrubbed), and every request goes through
`syncagent.http` with the channel's timeouts, retries and rate limit from the config.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Protocol
from urllib.parse import urlencode

from syncagent.connectors.base import BaseConnector, ConnectorState, Listed, MemoryState
from syncagent.connectors.common import KeyOf, body_of, http_settings, parse_items, refused
from syncagent.connectors.oauth import RotatingRefreshAuth
from syncagent.errors import PermanentError
from syncagent.http import ApiKeyAuth, AuthProvider, HttpClient, HttpSettings, OAuthClientCredentials
from syncagent.model import Page, utcnow


# -- auth kinds -------------------------------------------------------------------------------------
class AuthKind(Protocol):
    def secrets(self, options: Mapping[str, Any]) -> tuple[str, ...]: ...

    def provider(self, options: Mapping[str, Any], token_client: Callable[[], HttpClient]) -> AuthProvider: ...


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

    def session(self, options: Mapping[str, Any], token_client: HttpClient, state: ConnectorState, *,
                channel: str, type_name: str) -> RotatingRefreshAuth:
        return RotatingRefreshAuth(token_client, str(options[self.id_option]), str(options[self.secret_option]),
                                   state, channel=channel, platform=self.platform, token_path=self.token_path,
                                   reauthorize=f"syncagent auth {type_name} --channel {channel}")

    def consent_url(self, options: Mapping[str, Any]) -> str:
        """The page where the seller lets the app in; it redirects to redirect_uri with ?code=."""
        query = urlencode({"response_type": "code", "client_id": str(options[self.id_option]),
                           "redirect_uri": str(options[self.redirect_option])})
        return f"{str(options[self.authorize_url_option]).rstrip('?')}?{query}"


# -- pagination kinds -------------------------------------------------------------------------------
class Paging(Protocol):
    def pages(self, conn: RestConnector, feed: Feed, entity: str, cursor: str | None
              ) -> Iterator[tuple[list[Any], str | None]]: ...


@dataclass(frozen=True, slots=True)
class AfterSeq:
    """A feed of items numbered by a growing ``seq``: ``?after=<last seq>&limit=``; a short page ends it.

    Each page's cursor is the highest seq it held (None when it held none past the cursor).
    """

    param: str = "after"
    field: str = "seq"

    def pages(self, conn: RestConnector, feed: Feed, entity: str, cursor: str | None
              ) -> Iterator[tuple[list[Any], str | None]]:
        try:
            after = int(cursor or 0)
        except ValueError:
            raise PermanentError(f"{conn.name}: {entity} cursor {str(cursor)[:40]!r} is not a seq number",
                                 code="bad_cursor") from None
        path, size = feed.path, feed.limit or conn.page_size
        while True:
            what = f"GET {path}"
            resp = conn.client.get(path, params={self.param: after, "limit": size})
            if resp.status != 200:
                raise refused(conn.client, what, resp)
            items = body_of(conn.client, what, resp)["items"]
            seqs = [s for s in (self._seq(i) for i in items) if s is not None]
            last = max(seqs, default=after)
            moved = last > after
            yield items, str(last) if moved else None
            # a short page is the end for now; a page that does not move the cursor would loop forever
            if len(items) < size or not moved:
                return
            after = last

    def _seq(self, item: Any) -> int | None:
        seq = item.get(self.field) if isinstance(item, dict) else None
        return seq if isinstance(seq, int) and not isinstance(seq, bool) else None


@dataclass(frozen=True, slots=True)
class Keyset:
    """A listing keyset by key: ``?after_key=&limit=`` and ``next_after_key``; read whole, no cursor kept.

    A collection with no change feed is a source read from its start every cycle: its pages carry
    no cursor, and the engine sends only what differs from what it last wrote.
    """

    param: str = "after_key"
    next_field: str = "next_after_key"

    def pages(self, conn: RestConnector, feed: Feed, entity: str, cursor: str | None
              ) -> Iterator[tuple[list[Any], str | None]]:
        path = feed.path.format(entity=entity)
        after: str | None = None
        while True:
            what = f"GET {path}"
            params: dict[str, Any] = {"limit": feed.limit or conn.page_size}
            if after is not None:
                params[self.param] = after
            resp = conn.client.get(path, params=params)
            if resp.status != 200:
                raise refused(conn.client, what, resp)
            body = body_of(conn.client, what, resp)
            yield list(body["items"]), None
            nxt = body.get(self.next_field)
            if not isinstance(nxt, str) or not nxt or nxt == after:
                return
            after = nxt


@dataclass(frozen=True, slots=True)
class Feed:
    """One readable entity: where, how it pages, how an item becomes a model object, and its key."""

    path: str  # may name {entity}
    paging: Paging
    parse: Callable[[dict[str, Any]], Any] | None = None  # None: items as they are (a listing)
    key: str | KeyOf = "key"
    limit: int | None = None  # page size; None: the connector's page_size


# -- the base ---------------------------------------------------------------------------------------
class RestConnector(BaseConnector):
    """A REST channel: everything but its mappers and writers comes from its declarations."""

    auth: ClassVar[AuthKind]
    check_path: ClassVar[str]
    feeds: ClassVar[Mapping[str, Feed]] = {}
    lists: ClassVar[Mapping[str, Feed]] = {}
    max_page: ClassVar[int] = 500

    def __init__(self, name: str, base_url: str, options: Mapping[str, Any], http: HttpSettings, *,
                 sleep: Callable[[float], None] | None = None, clock: Callable[[], datetime] = utcnow,
                 page_size: int = 500, state: ConnectorState | None = None) -> None:
        self.name = name
        self.clock = clock
        self.page_size = max(1, min(page_size, self.max_page))
        self.state: ConnectorState = state if state is not None else MemoryState()
        self.secrets: tuple[str, ...] = self.auth.secrets(options)
        auth: AuthProvider
        if isinstance(self.auth, AuthorizationCode):  # its tokens live in the channel's state
            auth = self.auth.session(options, HttpClient(base_url, http, name=name, secrets=self.secrets, sleep=sleep),
                                     self.state, channel=name, type_name=self.type_name)
        else:
            auth = self.auth.provider(options, lambda: HttpClient(base_url, http, name=name, secrets=self.secrets,
                                                                  sleep=sleep))
        self.client = HttpClient(base_url, http, name=name, auth=auth, secrets=self.secrets, sleep=sleep)

    @classmethod
    def from_config(cls, cfg: Any, *, sleep: Callable[[float], None] | None = None,
                    clock: Callable[[], datetime] = utcnow, state: ConnectorState | None = None) -> RestConnector:
        return cls(cfg.name, cfg.base_url, cfg.options, http_settings(cfg.http), sleep=sleep, clock=clock,
                   state=state)

    def check(self) -> None:
        """The credentials are accepted and the system reachable: the cheapest authenticated call."""
        resp = self.client.get(self.check_path, params={"limit": 1})
        if resp.status != 200:
            raise refused(self.client, f"GET {self.check_path}", resp)

    def close(self) -> None:
        self.client.close()

    def http_clients(self) -> tuple[HttpClient, ...]:
        return (self.client,)

    def pull(self, entity: str, cursor: str | None, filters: Mapping[str, Any] | None = None) -> Iterator[Page]:
        """Follow the entity's feed from `cursor`; an item that cannot be parsed is a BadRecord, the rest go on."""
        feed = self.feeds.get(entity)
        if feed is None or feed.parse is None:
            raise ValueError(f"{self.name} has no {entity} feed")
        for items, next_cursor in feed.paging.pages(self, feed, entity, cursor):
            yield Page(parse_items(items, feed.parse, feed.key), next_cursor)

    def listing(self, entity: str) -> Iterator[list[Listed]]:
        """What the system holds now, page by page (reconcile, adopt); items without a string key are left out."""
        feed = self.lists.get(entity)
        if feed is None:
            raise ValueError(f"{self.name} lists only {', '.join(self.lists)}, not {entity}")
        field = feed.key if isinstance(feed.key, str) else "key"
        for items, _ in feed.paging.pages(self, feed, entity, None):
            items = [i for i in items if isinstance(i, dict) and isinstance(i.get(field), str)]
            yield [Listed(i[field], i, i.get("barcode") if isinstance(i.get("barcode"), str) else None)
                   for i in items]
