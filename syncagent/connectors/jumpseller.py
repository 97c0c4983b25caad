"""Jumpseller, an online shop: the source of its catalogue (one product per variant), stock and paid orders.

Contract: ../shared/contracts/jumpseller/openapi.json (the vendor's OpenAPI 3.0.3; the prose rules
are in its `info.description`). Auth is HTTP Basic with the store's login and auth token (the
method the spec recommends), or OAuth 2.0 for an installed App (`jumpseller_auth`, tokens in the journal). Listings page
by `?page=N&limit=` (at most 100); the products listing carries each product's variants, so the
products, prices and stock flows each read that one listing. Nothing flows into the shop: stock in
particular never goes there (`capabilities.push` has no catalogue entity), and an order's
acknowledgement is kept in the journal, so the agent needs read scopes only (writing it as an order
history entry would need `write_orders`).

Orders: only a **paid** one is imported (`status_enum` "paid"), whatever its shipping says; a
"canceled" one is cancelled in the back office if it got there. The spec has no change feed and no
"updated since" filter, so every listing is read whole each cycle with no cursor; the journal
makes a record read again harmless and the engine sends only what changed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from functools import partial
from typing import Any, ClassVar

from syncagent import fastjson
from syncagent.connectors.base import (
    BaseConnector,
    Capabilities,
    ConnectorState,
    OptionSpec,
    Outgoing,
    PushResult,
)
from syncagent.connectors.common import http_settings, parse_items, refused
from syncagent.connectors.jumpseller_auth import TOKEN_URL, StoreOrApp
from syncagent.connectors.jumpseller_map import (
    order_in,
    order_key,
    price_in,
    product_in,
    row_key,
    rows,
    stock_in,
    stocked_rows,
)
from syncagent.connectors.rest import AuthKind, Feed, PageNumber, RestConnector
from syncagent.errors import MappingError
from syncagent.http import HttpSettings
from syncagent.model import Page, utcnow

API_URL = "https://api.jumpseller.com/v1"  # the spec's `servers`
MAX_LIMIT = 100  # "There is a maximum of 100" (info.description, Pagination)
# 800 requests a minute and 20 a second (info.description, Rate Limit): 13/s stays under both
RATE_PER_SECOND = 13.0
RATE_BURST = 5
CATALOGUE = ("products", "prices", "stock")
LISTING = PageNumber(param="page", size_param="limit", first=1, items=None)


class JumpsellerConnector(RestConnector):
    """Reads a Jumpseller store; writes nothing to it."""

    type_name: ClassVar[str] = "jumpseller"
    options: ClassVar[dict[str, OptionSpec]] = {
        "login": OptionSpec("str", help="the store's API login (Admin Panel > Account)"),
        "auth_token": OptionSpec("str", secret=True,
                                 help="the store's API auth token, 32 characters (Admin Panel > Account)"),
        # or, for a Jumpseller App installed in the store (OAuth 2.0):
        "client_id": OptionSpec("str", help="the App's OAuth client id (instead of login/auth_token)"),
        "client_secret": OptionSpec("str", secret=True, help="the App's OAuth client secret"),
        "refresh_token": OptionSpec("str", secret=True, help="the refresh token the App got when installed; the "
                                    "journal keeps the newer ones (they rotate)"),
        "token_url": OptionSpec("str", default=TOKEN_URL, help="OAuth token endpoint"),
        "customer_code": OptionSpec("str", help="back office customer the orders are created under (the walk-in "
                                    "customer); the buyer's tax id, name, e-mail and country travel on the order"),
        "payment_map": OptionSpec("dict", help="Jumpseller payment_method_type or payment_method_name -> back office "
                                  "payment method code (without it, orders carry no payment)"),
        "category_map": OptionSpec("dict", help="Jumpseller category id or name -> back office group code "
                                   "(default: the category's name)"),
    }
    capabilities: ClassVar[Capabilities] = Capabilities(
        push=frozenset({"order-acks"}), pull=frozenset({*CATALOGUE, "orders"}), max_batch=MAX_LIMIT,
        importable_statuses=("paid",), cancelled_statuses=("canceled",),
    )
    auth: ClassVar[AuthKind] = StoreOrApp()
    check_path: ClassVar[str] = "/products/count.json"
    max_page: ClassVar[int] = MAX_LIMIT

    def __init__(self, name: str, base_url: str | None, options: Mapping[str, Any], http: HttpSettings, *,
                 sleep: Callable[[float], None] | None = None, clock: Callable[[], datetime] = utcnow,
                 page_size: int = MAX_LIMIT, order_statuses: Sequence[str] | None = None,
                 state: ConnectorState | None = None) -> None:
        super().__init__(name, (base_url or API_URL).rstrip("/"), options, http, sleep=sleep, clock=clock,
                         page_size=page_size, order_statuses=order_statuses, state=state)
        self.customer_code = str(options["customer_code"]) if options.get("customer_code") else None
        self.payment_map = {str(k): str(v) for k, v in (options.get("payment_map") or {}).items()}
        self.category_map = {str(k): str(v) for k, v in (options.get("category_map") or {}).items()}
        self.parsers: dict[str, Callable[[dict[str, Any]], Any]] = {
            "products": partial(product_in, category_map=self.category_map), "prices": price_in,
            "stock": stock_in,
            "orders": partial(order_in, payment_map=self.payment_map, customer_code=self.customer_code),
        }

    @classmethod
    def from_config(cls, cfg: Any, *, sleep: Callable[[float], None] | None = None,
                    clock: Callable[[], datetime] = utcnow, state: ConnectorState | None = None
                    ) -> JumpsellerConnector:
        settings = http_settings(cfg.http)
        if settings.rate_per_second is None:  # the documented limits hold whatever the config forgot
            settings = replace(settings, rate_per_second=RATE_PER_SECOND, rate_burst=RATE_BURST)
        flow = cfg.flow("orders")
        # an App's tokens are read from the channel's state while the connector is built
        return cls(cfg.name, cfg.base_url, cfg.options, settings, sleep=sleep, clock=clock,
                   order_statuses=flow.options.get("statuses") if flow is not None else None, state=state)

    def check(self) -> None:
        """The credentials are accepted: GET /products/count.json, the cheapest authenticated call."""
        resp = self.client.get(self.check_path)
        if resp.status != 200:
            raise refused(self.client, f"GET {self.check_path}", resp)

    def pull(self, entity: str, cursor: str | None, filters: Mapping[str, Any] | None = None) -> Iterator[Page]:
        """Walk the listing page by page; each product becomes one row per variant before it is parsed."""
        feed = self.feeds.get(entity)
        if feed is None:
            raise ValueError(f"{self.name} has no {entity} feed")
        explode, parse = EXPLODE.get(entity), self.parsers[entity]
        for items, next_cursor in feed.paging.pages(self, feed, entity, cursor):
            if explode is None:
                yield Page(parse_items(items, parse, feed.key), next_cursor)
                continue
            # a catalogue page is parsed only if the engine asks (`Page.load`): one whose content it
            # recorded whole before (its digest) is counted unchanged without being parsed again
            found = [row for item in items for row in explode(item)]
            digest = hashlib.sha256(fastjson.canonical(items)).hexdigest()
            yield Page(None, next_cursor, {"digest": digest, "items": len(found)},
                       load=partial(parse_items, found, parse, feed.key))

    # it is the catalogue's source: nothing of it is "listed on the channel" for reconcile or adopt
    listing = BaseConnector.listing

    def prepare(self, entity: str, record: Any) -> Outgoing:
        """Only an order's acknowledgement goes the shop's way, and it stays on our side."""
        if entity != "order-acks":
            raise ValueError(f"{self.name}: a Jumpseller store takes no {entity} (it is a source)")
        order_id = str(record.get("order_id") or "").strip()
        number = str(record.get("backoffice_number") or "").strip()
        if not order_id or not number:
            raise MappingError("missing_field", "order_id and backoffice_number are required")
        return Outgoing(order_id, {"backoffice_number": number})

    def push(self, entity: str, batch: Sequence[Outgoing]) -> list[PushResult]:
        """Acknowledging is recorded by the journal alone: the agent only ever reads the shop (read scopes)."""
        if entity != "order-acks":
            raise ValueError(f"{self.name}: a Jumpseller store takes no {entity} (it is a source)")
        return [PushResult(out.key, "unchanged") for out in batch]


EXPLODE: dict[str, Callable[[Any], list[Any]]] = {"products": rows, "prices": rows, "stock": stocked_rows}

JumpsellerConnector.feeds = {
    **{entity: Feed("/products.json", LISTING, key=row_key) for entity in CATALOGUE},
    "orders": Feed("/orders.json", LISTING, key=order_key),
}
