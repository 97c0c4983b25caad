"""A REST channel as declarations: how it authenticates, how each feed pages, what it reads and lists.

A connector built on `RestConnector` declares

* ``auth``: one of the auth kinds below, naming the config options that hold the credentials;
* ``check_path``: the cheapest authenticated GET (``check-config --online``, doctor);
* ``feeds``: per entity it can read, a `Feed`: the path, the pagination kind, the item parser
  and the item's key; ``pull`` follows it, each page carrying the cursor that resumes after it.
  Pagination kinds: `AfterSeq` (a growing change number), `Keyset` (an opaque next key),
  `OffsetLimit`, `PageNumber` (listings read whole each cycle), `DateWindow` ("changed since" the
  latest time read), `Queue` (one head at a time, gone once acknowledged);
* ``lists``: per entity it can show as it holds it now (`listing`), a `Feed` too;

and writes only its mappers (model → wire) and writers (one per entity it takes). Errors are
mapped alike for every such connector (`common.refused`: 401/403 → `AuthError`, 429/5xx →
`TransientError`, others → `PermanentError`, secrets scrubbed), and every request goes through
`syncagent.http` with the channel's timeouts, retries and rate limit from the config.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Protocol, runtime_checkable
from urllib.parse import urlencode

from syncagent.connectors.base import BaseConnector, ConnectorState, Listed, MemoryState
from syncagent.connectors.common import KeyOf, body_of, http_settings, parse_items, refused
from syncagent.connectors.oauth import RotatingRefreshAuth
from syncagent.errors import MappingError, PermanentError
from syncagent.http import ApiKeyAuth, AuthProvider, HttpClient, HttpSettings, OAuthClientCredentials
from syncagent.model import Page, parse_time, time_str, utcnow


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


def _items_of(conn: RestConnector, what: str, resp: Any, field: str | None) -> tuple[list[Any], dict[str, Any]]:
    """The items of a 200 answer (a list body, or the list under `field`) and the body as a dict."""
    if resp.status != 200:
        raise refused(conn.client, what, resp)
    if field is None:
        body = resp.json()
        if not isinstance(body, list):
            raise PermanentError(f"{conn.name}: {what} answered {type(body).__name__}, not a list",
                                 code="bad_response")
        return body, {}
    body = body_of(conn.client, what, resp, field)
    return list(body[field]), body


@dataclass(frozen=True, slots=True)
class OffsetLimit:
    """A listing by ``?offset=&limit=``, read whole every time (no cursor kept): a short page or the total ends it.

    items: the body's field holding the list (None: the body is the list); total: the field with the
    count of all records, if the API gives one. `params` are fixed query parameters (a sort order).
    """

    offset_param: str = "offset"
    limit_param: str = "limit"
    items: str | None = "items"
    total: str | None = None
    params: tuple[tuple[str, str], ...] = ()
    first: int = 0

    def pages(self, conn: RestConnector, feed: Feed, entity: str, cursor: str | None
              ) -> Iterator[tuple[list[Any], str | None]]:
        yield from ((items, None) for items, _ in self.walk(conn, feed, entity, dict(self.params)))

    def walk(self, conn: RestConnector, feed: Feed, entity: str, params: dict[str, Any]
             ) -> Iterator[tuple[list[Any], dict[str, Any]]]:
        """Pages (items, body) of the listing filtered by `params`; stops by itself on a server that never ends."""
        path, size = feed.path.format(entity=entity), feed.limit or conn.page_size
        offset = self.first
        for _ in range(MAX_PAGES):
            what = f"GET {path}"
            resp = conn.client.get(path, params={**params, self.offset_param: offset, self.limit_param: size})
            items, body = _items_of(conn, what, resp, self.items)
            yield items, body
            offset += len(items)
            total = body.get(self.total) if self.total else None
            if len(items) < size or (isinstance(total, int) and offset - self.first >= total):
                return
        raise PermanentError(f"{conn.name}: GET {path} did not end after {MAX_PAGES} pages", code="endless_listing")


@dataclass(frozen=True, slots=True)
class PageNumber:
    """A listing by ``?page=N&limit=`` from page `first`, read whole every time: a short or empty page ends it."""

    param: str = "page"
    size_param: str = "limit"
    first: int = 1
    items: str | None = "items"
    params: tuple[tuple[str, str], ...] = ()

    def pages(self, conn: RestConnector, feed: Feed, entity: str, cursor: str | None
              ) -> Iterator[tuple[list[Any], str | None]]:
        path, size = feed.path.format(entity=entity), feed.limit or conn.page_size
        previous: list[Any] | None = None
        for page in range(self.first, self.first + MAX_PAGES):
            what = f"GET {path}"
            resp = conn.client.get(path, params={**dict(self.params), self.param: page, self.size_param: size})
            items, _ = _items_of(conn, what, resp, self.items)
            if items and items == previous:  # a server that answers the last page for any number past it
                return
            yield items, None
            if len(items) < size:
                return
            previous = items
        raise PermanentError(f"{conn.name}: GET {path} did not end after {MAX_PAGES} pages", code="endless_listing")


@dataclass(frozen=True, slots=True)
class DateWindow:
    """A feed filtered by "changed since": ``?<since>=<cursor>`` sorted oldest first, paged by offset inside.

    The cursor is the latest `field` time read so far, so the next cycle asks again from that
    instant: records sharing it come again, which the journal makes harmless, and none is skipped.
    `start` is the first cycle's lower bound (None: no bound, the whole history).
    """

    since_param: str
    field: str
    inner: OffsetLimit = OffsetLimit()
    start: str | None = None

    def pages(self, conn: RestConnector, feed: Feed, entity: str, cursor: str | None
              ) -> Iterator[tuple[list[Any], str | None]]:
        since = cursor or self.start
        try:
            latest: datetime | None = parse_time(since, "cursor") if since else None
        except MappingError:
            raise PermanentError(f"{conn.name}: {entity} cursor {str(since)[:40]!r} is not a date-time",
                                 code="bad_cursor") from None
        params = dict(self.inner.params)
        if since:
            params[self.since_param] = since
        for items, _ in self.inner.walk(conn, feed, entity, params):
            for item in items:
                when = item.get(self.field) if isinstance(item, dict) else None
                try:
                    stamp = parse_time(when, self.field) if isinstance(when, str) else None
                except MappingError:
                    stamp = None  # the item is quarantined by its parser; the window does not move for it
                if stamp is not None and (latest is None or stamp > latest):
                    latest = stamp
            yield items, time_str(latest) if latest is not None else None


@dataclass(frozen=True, slots=True)
class Queue:
    """A queue read one head at a time (``GET path`` answers the oldest unacknowledged item, or nothing).

    The item leaves the queue only when the engine acknowledges it (`order-acks`, after the back office
    has it), so a crash before that reads it again. A head that comes back before it was acknowledged
    (an ack that failed, or that the engine holds) ends the pull, so a queue never loops.
    `empty`: the statuses meaning "nothing queued"; items: the field holding the item (None: the body).
    """

    items: str | None = None
    empty: tuple[int, ...] = (204, 404)
    key: str = "id"
    max_items: int = 1000

    def pages(self, conn: RestConnector, feed: Feed, entity: str, cursor: str | None
              ) -> Iterator[tuple[list[Any], str | None]]:
        path = feed.path.format(entity=entity)
        seen: set[str] = set()
        for _ in range(self.max_items):
            resp = conn.client.get(path)
            if resp.status in self.empty:
                return
            if resp.status != 200:
                raise refused(conn.client, f"GET {path}", resp)
            body = resp.json()
            item = body.get(self.items) if self.items and isinstance(body, dict) else body
            if item is None or item == {} or item == []:
                return
            head = item.get(self.key) if isinstance(item, dict) else None
            if head is None or str(head) in seen:
                if head is None:
                    yield [item], None  # quarantined by its parser; it cannot be told apart, so read no further
                return
            seen.add(str(head))
            yield [item], None


MAX_PAGES = 100_000  # a listing longer than this is a server that never ends, not a catalogue


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

    def __init__(self, name: str, base_url: str | None, options: Mapping[str, Any], http: HttpSettings, *,
                 sleep: Callable[[float], None] | None = None, clock: Callable[[], datetime] = utcnow,
                 page_size: int = 500, order_statuses: Sequence[str] | None = None,
                 state: ConnectorState | None = None) -> None:
        self.name = name
        self.clock = clock
        self.page_size = max(1, min(page_size, self.max_page))
        # the order statuses the config imports (`orders: {statuses: [...]}`), else the connector's own
        self.importable: tuple[str, ...] = tuple(order_statuses or self.capabilities.importable_statuses)
        self.state: ConnectorState = state if state is not None else MemoryState()
        self.secrets: tuple[str, ...] = self.auth.secrets(options)
        roots = self.api_roots(base_url, options)
        token_root = next(iter(roots.values()))

        def token_client(root: str | None = None) -> HttpClient:
            return HttpClient(root or token_root, http, name=name, secrets=self.secrets, sleep=sleep)

        kind = self.auth
        auth: AuthProvider = (kind.session(options, token_client, self.state, channel=name, type_name=self.type_name)
                              if isinstance(kind, StatefulAuthKind) else kind.provider(options, token_client))
        clients: dict[str, HttpClient] = {}
        for api, root in roots.items():  # one pooled client per distinct root
            same = next((c for other, c in clients.items() if roots[other] == root), None)
            clients[api] = same or HttpClient(root, http, name=name, auth=auth, secrets=self.secrets, sleep=sleep)
        self.clients = clients
        self.client = next(iter(clients.values()))

    @classmethod
    def api_roots(cls, base_url: str | None, options: Mapping[str, Any]) -> dict[str, str]:
        """The root URL of each API the system splits itself into (most have one: `base_url`)."""
        if not base_url:
            raise PermanentError(f"a {cls.type_name} channel needs base_url", code="bad_config")
        return {"api": base_url}

    @classmethod
    def from_config(cls, cfg: Any, *, sleep: Callable[[float], None] | None = None,
                    clock: Callable[[], datetime] = utcnow, state: ConnectorState | None = None) -> RestConnector:
        flow = cfg.flow("orders") if hasattr(cfg, "flow") else None
        statuses = flow.options.get("statuses") if flow is not None else None
        if isinstance(cls.auth, StatefulAuthKind):  # its tokens are read from the state while it is built
            return cls(cfg.name, cfg.base_url, cfg.options, http_settings(cfg.http), sleep=sleep, clock=clock,
                       order_statuses=statuses, state=state)
        conn = cls(cfg.name, cfg.base_url, cfg.options, http_settings(cfg.http), sleep=sleep, clock=clock,
                   order_statuses=statuses)
        if state is not None:
            conn.state = state
        return conn

    def check(self) -> None:
        """The credentials are accepted and the system reachable: the cheapest authenticated call."""
        resp = self.client.get(self.check_path, params={"limit": 1})
        if resp.status != 200:
            raise refused(self.client, f"GET {self.check_path}", resp)

    def close(self) -> None:
        for client in self.http_clients():
            client.close()
        closer = getattr(self.client.auth, "close", None)  # a token endpoint's own client
        if callable(closer):
            closer()

    def http_clients(self) -> tuple[HttpClient, ...]:
        return tuple({id(c): c for c in self.clients.values()}.values())

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
            if not self.lists:
                return super().listing(entity)
            raise ValueError(f"{self.name} lists only {', '.join(self.lists)}, not {entity}")
        field = feed.key if isinstance(feed.key, str) else "key"
        for items, _ in feed.paging.pages(self, feed, entity, None):
            items = [i for i in items if isinstance(i, dict) and isinstance(i.get(field), str)]
            yield [Listed(i[field], i, i.get("barcode") if isinstance(i.get("barcode"), str) else None)
                   for i in items]
