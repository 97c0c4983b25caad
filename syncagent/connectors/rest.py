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

from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

from syncagent.connectors.base import BaseConnector, ConnectorState, Listed, MemoryState
from syncagent.connectors.common import http_settings, parse_items, refused
from syncagent.connectors.rest_auth import (
    AuthKind,
    AuthorizationCode,
    Basic,
    ClientCredentials,
    FixedHeaders,
    Headers,
    PasswordGrant,
    StatefulAuthKind,
    StaticKey,
)
from syncagent.connectors.rest_paging import (
    MAX_PAGES,
    AfterSeq,
    DateWindow,
    Feed,
    Keyset,
    OffsetLimit,
    PageNumber,
    Paging,
    Queue,
)
from syncagent.errors import PermanentError, TransientError
from syncagent.http import AuthProvider, HttpClient, HttpSettings
from syncagent.model import Page, utcnow

__all__ = [
    "MAX_PAGES", "AfterSeq", "AuthKind", "AuthorizationCode", "Basic", "ClientCredentials", "DateWindow", "Feed",
    "FixedHeaders", "Headers", "Keyset", "OffsetLimit", "PageNumber", "Paging", "PasswordGrant", "Queue",
    "RestConnector", "StatefulAuthKind", "StaticKey",
]


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

    def get_object(self, path: str, what: str = "an object") -> dict[str, Any] | None:
        """One record by its path: None when the system answers 404, its JSON object otherwise."""
        resp = self.client.get(path)
        if resp.status == 404:
            return None
        if resp.status != 200:
            raise refused(self.client, f"GET {path}", resp)
        body = resp.json()
        if not isinstance(body, dict):
            raise TransientError(f"{self.name}: GET {path}: the answer is not {what}", code="bad_response")
        return body

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
