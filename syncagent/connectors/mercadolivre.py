"""Mercado Livre (MLB): listings, price and stock out; paid orders in by polling; NF-e and tracking back.

Reference: ../shared/contracts/mercadolivre/API.md (cited by line). Why it is shaped like this:

* auth is per seller, by authorization code, and every refresh rotates a single-use refresh
  token (L18-28): `AuthorizationCode` keeps the tokens in the journal and stores each new one
  before it is used; ``syncagent auth mercadolivre --channel C`` gives the first authorization;
* our code is the listing's (or variation's) ``SELLER_SKU`` (L49); ``POST /items`` is not
  idempotent (L157), so a code is looked up by seller SKU before a listing is created, and the
  listing found is remembered in the channel's state;
* a new listing is created paused with no stock (its price is not known to the products flow);
  it goes live with the first price sent, if the product is active (status paused/active, L51);
* paid orders are read by polling ``/orders/search`` by date windows of last update (L92-97)
  with a saved ``date|id`` cursor; ML has no acknowledge call (L116): an order's id is the dedupe
  key and the journal does the rest. Orders of one pack (cart, L108) are imported one by one and
  share the pack's shipment: its one NF-e and its tracking are sent once, and count for all;
* the NF-e goes as the signed XML to the shipment (L125); tracking is sent only where the seller
  ships (ME1/custom, L141); where Mercado Livre ships (ME2, L139) there is nothing to send.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import quote

from syncagent.connectors.base import (
    BaseConnector,
    Capabilities,
    ConnectorState,
    OptionSpec,
    Outgoing,
    PushResult,
)
from syncagent.connectors.common import parse_items, push_each
from syncagent.connectors.mercadolivre_fulfil import Fulfilment
from syncagent.connectors.mercadolivre_orders import SEARCH, DateWindows
from syncagent.connectors.mercadolivre_sac import ME2_CARRIERS, MercadoLivreSac
from syncagent.connectors.mercadolivre_wire import (
    as_number,
    event_out,
    find_variation,
    item_fields,
    json_of,
    parse_buyer,
    parse_order,
    refused,
    rejection,
    sku_of,
)
from syncagent.connectors.rest import AuthKind, AuthorizationCode, Feed, RestConnector
from syncagent.errors import AmbiguousError, MappingError, TransientError
from syncagent.http import HttpSettings
from syncagent.model import ChannelCustomer, Page, utcnow

log = logging.getLogger("syncagent.connectors.mercadolivre")

ORDERS = Feed(SEARCH, DateWindows(), key="id")  # paged by the connector's own DateWindows (its options)
PUSHES = ("products", "prices", "stock", "order-acks", "order-events", "customer-links")
CREATE_PRICE = 1  # a new listing's price until the prices flow sends it (it stays paused until then)
SEARCH_LIMIT = 5  # listings looked at for one seller SKU
DEFAULT_RATE = 5  # requests per second when the config sets no `http.rate_limit` (API.md L33: UNKNOWN)


class MercadoLivreConnector(MercadoLivreSac, RestConnector):
    """One seller's Mercado Livre account; its customer service (questions, post-sale messages, claims) comes in as
    tickets and the back office's answers go back (`mercadolivre_sac`)."""

    type_name: ClassVar[str] = "mercadolivre"
    options: ClassVar[dict[str, OptionSpec]] = {
        "client_id": OptionSpec("str", required=True, help="the app's APP_ID"),
        "client_secret": OptionSpec("str", required=True, secret=True, help="the app's secret key"),
        "redirect_uri": OptionSpec("str", required=True, help="the redirect URI registered for the app (the "
                                   "authorization code is handed to it)"),
        "authorize_url": OptionSpec("str", default="https://auth.mercadolivre.com.br/authorization",
                                    help="the consent page the seller opens (API.md L22)"),
        "site_id": OptionSpec("str", default="MLB", help="Mercado Livre site"),
        "category_id": OptionSpec("str", help="ML category of products whose group is not in category_map"),
        "category_map": OptionSpec("dict", help="back office group code -> ML category id"),
        "listing_type_id": OptionSpec("str", default="gold_special", help="listing type of new listings"),
        "condition": OptionSpec("str", default="new", choices=("new", "used", "not_specified")),
        "payment_map": OptionSpec("dict", help="ML payment_method_id or payment_type -> back office payment code"),
        "orders_since_days": OptionSpec("int", default=30, help="how far back the first orders poll looks"),
        "order_window_hours": OptionSpec("int", default=24, help="date window of one orders search"),
        "order_overlap_minutes": OptionSpec("int", default=10, help="each poll reads again this far before its "
                                            "cursor (late-indexed orders; the journal makes repeats harmless)"),
        "max_offset": OptionSpec("int", default=1000, help="deepest offset read in one window (API.md L96: "
                                 "UNKNOWN cap); a fuller window is split"),
        "billing_info_path": OptionSpec("str", default="/orders/{order_id}/billing_info",
                                        help="where the buyer's CPF/CNPJ is read (API.md L113-114: path UNKNOWN)"),
        "tracking": OptionSpec("str", default="seller_notifications", choices=("seller_notifications", "none"),
                               help="how tracking of ME1/custom shipments is sent (API.md L141-144)"),
        "claim_reply_path": OptionSpec("str", help="customer service: the path that posts a claim message, with "
                                       "{claim_id} (UNKNOWN in the reference: none by default, claim answers wait in "
                                       "quarantine; docs/connectors/sac.md)"),
    }
    capabilities: ClassVar[Capabilities] = Capabilities(
        push=frozenset({*PUSHES, "ticket-answers"}),
        pull=frozenset({"orders", "channel-customers", "tickets", "tracking"}), max_batch=50,
        owned_tracking=ME2_CARRIERS,  # API.md L139: under Mercado Envios, ML owns tracking and delivery
        importable_statuses=("paid",), cancelled_statuses=("cancelled",),  # API.md L106-107
        stable=frozenset({"products"}),
    )
    auth: ClassVar[AuthKind] = AuthorizationCode("client_id", "client_secret", "redirect_uri", "authorize_url",
                                                 "Mercado Livre")
    check_path: ClassVar[str] = "/users/me"
    max_page: ClassVar[int] = 50  # API.md L96-97: keep limit <= 50

    def __init__(self, name: str, base_url: str | None, options: Mapping[str, Any], http: HttpSettings, *,
                 sleep: Callable[[float], None] | None = None, clock: Callable[[], datetime] = utcnow,
                 page_size: int = 50, order_statuses: Sequence[str] | None = None,
                 state: ConnectorState | None = None) -> None:
        if http.rate_per_second is None:  # API.md L33: no published limit; a gentle pace unless the config sets one
            http = replace(http, rate_per_second=DEFAULT_RATE, rate_burst=DEFAULT_RATE)
        super().__init__(name, base_url, options, http, sleep=sleep, clock=clock, page_size=page_size,
                         order_statuses=order_statuses, state=state)
        opts = dict(options)
        self.site_id = str(opts.get("site_id") or "MLB")
        self.category_id = str(opts["category_id"]) if opts.get("category_id") else None
        self.category_map = {str(k): str(v) for k, v in (opts.get("category_map") or {}).items()}
        self.listing_type = str(opts.get("listing_type_id") or "gold_special")
        self.condition = str(opts.get("condition") or "new")
        self.payment_map = {str(k): str(v) for k, v in (opts.get("payment_map") or {}).items()}
        self.billing_path = str(opts.get("billing_info_path") or "/orders/{order_id}/billing_info")
        self.tracking = str(opts.get("tracking") or "seller_notifications")
        self.claim_reply_path = str(opts["claim_reply_path"]) if opts.get("claim_reply_path") else None
        self.windows = DateWindows(since=timedelta(days=int(opts.get("orders_since_days") or 30)),
                                   window=timedelta(hours=int(opts.get("order_window_hours") or 24)),
                                   overlap=timedelta(minutes=int(opts.get("order_overlap_minutes") or 10)),
                                   max_offset=int(opts.get("max_offset") or 1000))
        self._seller: str | None = None
        self._listings: dict[str, dict[str, Any]] = {}  # our code -> {item, variation, priced, active}
        self._customers: dict[str, ChannelCustomer] = {}
        self.fulfilment = Fulfilment(self)
        self._ahead: deque[tuple[list[Any], str | None]] = deque()
        self._source: Iterator[tuple[list[Any], str | None]] | None = None

    listing = BaseConnector.listing  # what ML holds is not listed (reconcile, adopt): listings are found by SKU

    def check(self) -> None:
        """The stored tokens work (refreshed if due) and name a seller."""
        resp = self.client.get(self.check_path)
        if resp.status != 200:
            raise refused(self.client, f"GET {self.check_path}", resp)

    def sac_seller(self) -> str:
        return self.seller()

    def seller(self) -> str:
        """The seller's user id: from the token answer (API.md L25), else GET /users/me."""
        user = self._seller or getattr(self.client.auth, "user_id", None)
        if user:
            self._seller = str(user)
            return self._seller
        resp = self.client.get("/users/me")
        if resp.status != 200:
            raise refused(self.client, "GET /users/me", resp)
        body = json_of(self.client, resp, "the user")
        if not isinstance(body, dict) or body.get("id") is None:
            raise TransientError(f"{self.name}: GET /users/me answered no id", code="bad_response")
        self._seller = str(body["id"])
        return self._seller

    # -- orders ----------------------------------------------------------------------------------
    def pull(self, entity: str, cursor: str | None, filters: Mapping[str, Any] | None = None) -> Iterator[Page]:
        """Orders by date windows; the buyers of the orders of this pull (read ahead when asked)."""
        if entity == "channel-customers":
            self._read_ahead()
            yield Page(list(self._customers.values()), None)
            return
        if entity == "tickets":  # customer service (mercadolivre_sac)
            yield from self.sac_tickets()
            return
        if entity == "tracking":  # ME2 shipments: their status is Mercado Livre's (mercadolivre_sac)
            yield Page(self.me2_tracking((filters or {}).get("shipments") or ()), None)
            return
        if entity != "orders":
            raise ValueError(f"{self.name} has no {entity} feed")
        self._ahead = deque()
        self._source = self._order_pages(cursor)
        try:
            while True:
                page = self._ahead.popleft() if self._ahead else next(self._source, None)
                if page is None:
                    return
                yield Page(page[0], page[1])
        finally:
            self._source, self._ahead = None, deque()

    def _read_ahead(self) -> None:
        """The engine wants the buyers while holding a page: read the rest of this pull now."""
        if self._source is not None:
            self._ahead.extend(self._source)

    def _order_pages(self, cursor: str | None) -> Iterator[tuple[list[Any], str | None]]:
        for items, next_cursor in self.windows.pages(self, ORDERS, "orders", cursor):
            yield [self._order_record(item) for item in items], next_cursor

    def _order_record(self, item: Any) -> Any:
        """One order of a search page as an Order (its buyer noted) or a BadRecord."""
        document = None
        # the buyer's document is read for the orders that will be imported (hidden until payment, API.md L115)
        if isinstance(item, dict) and item.get("status") in self.importable and item.get("id") is not None:
            billing = self._billing(str(item["id"]))
            buyer = parse_buyer(item, billing)
            if buyer is not None:
                self._customers[buyer.remote_id] = buyer
                document = buyer.document
        (record,) = parse_items([item], lambda d: parse_order(d, self.payment_map, document),
                                lambda d: d.get("id"))
        return record

    def _billing(self, order_id: str) -> dict[str, Any] | None:
        path = self.billing_path.format(order_id=quote(order_id, safe=""))
        resp = self.client.get(path)
        if resp.status == 404:
            return None
        if resp.status != 200:
            raise refused(self.client, f"GET {path}", resp)
        body = json_of(self.client, resp, "the billing info")
        return body if isinstance(body, dict) else None

    # -- writes ----------------------------------------------------------------------------------
    def prepare(self, entity: str, record: Any) -> Outgoing:
        """Map one model record (or an engine dict for acks and links) to what is sent to ML."""
        if entity == "products":
            category = self.category_map.get(record.group_code or "", self.category_id)
            return Outgoing(record.code, item_fields(record, category))
        if entity == "prices":
            effective = record.effective(self.clock())  # the price in force now; the engine re-sends at boundaries
            price = effective.promo_price if effective.promo_price is not None else effective.price
            if price <= 0:
                raise MappingError("bad_value", f"price {price} is not a sale price")
            return Outgoing(record.code, {"price": as_number(price)})
        if entity == "stock":
            if getattr(record, "location", None):
                raise MappingError("needs_sum", "Mercado Livre takes one quantity per listing (multi-origin stock "
                                   "writes are UNKNOWN, API.md L72)")
            return Outgoing(record.code, {"available_quantity": max(0, int(record.available))})
        if entity == "order-events":
            return event_out(record)
        if entity == "ticket-answers":
            return self.sac_prepare(record)
        if entity in ("order-acks", "customer-links"):
            key = record.get("order_id") or record.get("remote_id")
            if not key:
                raise MappingError("missing_field", "the record names no order or customer")
            return Outgoing(str(key), {})
        raise ValueError(f"{self.name} cannot take {entity}")

    def push(self, entity: str, batch: Sequence[Outgoing]) -> list[PushResult]:
        """One call per record (ML has no batch writes); one result per record."""
        handlers: dict[str, Callable[[Outgoing], PushResult]] = {
            "products": self._push_product, "prices": self._push_price, "stock": self._push_stock,
            "order-events": self.fulfilment.push,
            # API.md L116: there is no acknowledge call; ML keeps no back office code either
            "order-acks": lambda out: PushResult(out.key, "unchanged"),
            "customer-links": lambda out: PushResult(out.key, "unchanged"),
            "ticket-answers": self.sac_push,
        }
        return push_each(self.name, entity, batch, handlers)

    # listings
    def _listing(self, code: str) -> dict[str, Any] | None:
        """Where our code is listed: remembered, else searched by seller SKU (API.md L50)."""
        known = self._listings.get(code)
        if known is None:
            known = _stored_listing(self.state.get(f"sku:{code}"))
        if known is None:
            known = self._search(code)  # not remembered when absent: a listing made in ML meanwhile is found
            if known is not None:
                self._remember(code, known)
        else:
            self._listings[code] = known
        return known

    def _remember(self, code: str, listing: dict[str, Any]) -> None:
        self._listings[code] = listing
        self.state.put(f"sku:{code}", json.dumps(listing))

    def _search(self, code: str) -> dict[str, Any] | None:
        path = f"/users/{quote(self.seller(), safe='')}/items/search"
        resp = self.client.get(path, params={"seller_sku": code})
        if resp.status != 200:
            raise refused(self.client, f"GET {path}", resp)
        body = json_of(self.client, resp, "the item search")
        ids = body.get("results") if isinstance(body, dict) else None
        for item_id in (ids if isinstance(ids, list) else [])[:SEARCH_LIMIT]:
            item = self._item(str(item_id))
            if item is None:
                continue
            variation = find_variation(item, code)
            if variation is not None or sku_of(item) == code:
                return {"item": str(item_id), "variation": variation, "priced": True}
        return None

    def _item(self, item_id: str) -> dict[str, Any] | None:
        path = f"/items/{quote(item_id, safe='')}"
        resp = self.client.get(path)
        if resp.status == 404:
            return None
        if resp.status != 200:
            raise refused(self.client, f"GET {path}", resp)
        body = json_of(self.client, resp, "the item")
        return body if isinstance(body, dict) else None

    def _push_product(self, out: Outgoing) -> PushResult:
        code, want = out.key, out.payload
        listing = self._listing(code)
        item = self._item(listing["item"]) if listing else None
        if listing and item is None:  # deleted in ML since: look again, create if it is gone
            self.state.put(f"sku:{code}", None)
            self._listings.pop(code, None)
            listing = self._listing(code)
            item = self._item(listing["item"]) if listing else None
        if listing is None or item is None:
            return self._create(code, want)
        if listing.get("variation") is not None:
            return PushResult(code, "unchanged", remote_id=listing["item"])  # title and status are the item's
        live = want["status"] == "active" and listing.get("priced", True)
        change: dict[str, Any] = {}
        if item.get("status") == "closed":
            return PushResult(code, "rejected", reason_code="closed", reason=f"listing {listing['item']} is closed "
                              "(final, API.md L51): delete it in ML so that a new one is created")
        if item.get("status") != ("active" if live else "paused"):
            change["status"] = "active" if live else "paused"
        if item.get("title") != want["title"]:
            if int(item.get("sold_quantity") or 0) > 0:  # API.md L48: locked after the first sale
                log.info("%s: %s: the title of listing %s is locked after its first sale; not changed",
                         self.name, code, listing["item"])
            else:
                change["title"] = want["title"]
        if listing.get("active") != (want["status"] == "active"):
            self._remember(code, {**listing, "active": want["status"] == "active"})
        if not change:
            return PushResult(code, "unchanged", remote_id=listing["item"])
        return self._put_item(code, listing["item"], change, "updated")

    def _create(self, code: str, want: dict[str, Any]) -> PushResult:
        body = {**want, "status": "paused", "price": CREATE_PRICE, "currency_id": "BRL", "available_quantity": 0,
                "buying_mode": "buy_it_now", "listing_type_id": self.listing_type, "condition": self.condition,
                "pictures": []}
        try:
            resp = self.client.post("/items", json=body, idempotent=False)  # API.md L157: not idempotent
        except AmbiguousError:
            found = self._search(code)  # the listing may exist: never create a second one blindly
            if found is None:
                raise
            self._remember(code, {**found, "priced": False, "active": want["status"] == "active"})
            return PushResult(code, "created", remote_id=found["item"])
        if resp.status not in (200, 201):
            return rejection(code, resp, self.client, "POST /items")
        created = json_of(self.client, resp, "the new item")
        item_id = created.get("id") if isinstance(created, dict) else None
        if not isinstance(item_id, str) or not item_id:
            raise TransientError(f"{self.name}: POST /items answered without the new id", code="bad_response")
        self._remember(code, {"item": item_id, "variation": None, "priced": False, "active": want["status"] == "active"})
        return PushResult(code, "created", remote_id=item_id)

    def _put_item(self, key: str, item_id: str, body: dict[str, Any], status: str) -> PushResult:
        path = f"/items/{quote(item_id, safe='')}"
        resp = self.client.put(path, json=body)
        if resp.status != 200:
            return rejection(key, resp, self.client, f"PUT {path}")
        return PushResult(key, status, remote_id=item_id)

    def _per_listing(self, out: Outgoing, field: str) -> PushResult:
        """Price or stock: on the item, or on the variation that holds our code (API.md L55, L65-66)."""
        listing = self._listing(out.key)
        if not listing:
            return PushResult(out.key, "rejected", reason_code="unknown_sku", reason=f"no Mercado Livre listing has "
                              f"SELLER_SKU {out.key} (its product has not been sent yet)")
        value = out.payload[field]
        if listing.get("variation") is not None:
            body: dict[str, Any] = {"variations": [{"id": listing["variation"], field: value}]}
        else:
            body = {field: value}
            if field == "price" and not listing.get("priced", True) and listing.get("active"):
                body["status"] = "active"  # created paused: live once it has its price
        result = self._put_item(out.key, listing["item"], body, "updated")
        if result.ok and field == "price" and not listing.get("priced", True):
            self._remember(out.key, {**listing, "priced": True})
        return result

    def _push_price(self, out: Outgoing) -> PushResult:
        return self._per_listing(out, "price")

    def _push_stock(self, out: Outgoing) -> PushResult:
        return self._per_listing(out, "available_quantity")


def _stored_listing(text: str | None) -> dict[str, Any] | None:
    """A listing remembered in the journal; anything unreadable is as good as none (searched again)."""
    try:
        found = json.loads(text) if text else None
    except ValueError:
        return None
    return found if isinstance(found, dict) and isinstance(found.get("item"), str) else None
