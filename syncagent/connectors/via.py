"""Via marketplace (Casas Bahia, Ponto, Extra): SKUs loaded, price per site and stock on the offers; approved
orders in; invoice, dispatch and delivery back; cancellations both ways.

Reference: ../shared/contracts/via/API.md (trust: low-to-medium; see docs/connectors/via.md for every
UNKNOWN and the choice made). Why it is shaped like this:

* Via holds the offer (``GET /api/v2/sellerItems/{sku}``): every write reads it first and sends only what
  differs, so a store taken over from another integrator (its SKUs mapped by DE/PARA or adopted) gets
  only the differences, and a SKU Via already has is never loaded again (a load goes through Via's
  catalogue approval);
* orders are read from the ``approved`` and ``canceled`` status lists over the last `order_days` days
  (no cursor, no acknowledge call: the journal dedupes by order id, the back office lookup by
  channel order id catches orders an earlier integrator already imported);
* fulfilment is a tracking POST per event; the order is read first so an event Via already holds is
  not posted again (no idempotency key is known), a correction is, and a step before its predecessor
  is held back (``out_of_order``);
* the token does not expire; a 401 means it was revoked (an integrator change): the channel stops
  with an auth failure, the other channels go on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, timedelta
from decimal import Decimal
from typing import Any, ClassVar
from urllib.parse import quote

from syncagent.connectors.base import Capabilities, Listed, OptionSpec, Outgoing, PushResult
from syncagent.connectors.common import parse_items, reason, refused
from syncagent.connectors.rest import AuthKind, Feed, FixedHeaders, OffsetLimit, RestConnector
from syncagent.connectors.via_mapping import CONTENT, LISTED, MAPPERS, event_out, parse_customer, parse_order
from syncagent.errors import MappingError, PermanentError
from syncagent.http import AuthProvider, HttpClient, HttpResponse, HttpSettings
from syncagent.model import (
    ChannelCustomer,
    Order,
    Page,
    parse_time,
    time_str,
)

SITES = ("CB", "PF", "EX")  # API.md L50
PAGE = 50  # L22: the integrator uses _limit=50
IMPORTER = "/api/v4/api-front-importer-v4/jersey/import/itens"
STATUS_CODES = {"INV": "invoiced", "SHP": "shipped", "DLV": "delivered", "CAN": "cancelled"}  # L76-78 (SHP, DLV known)
STEP = {"invoiced": 1, "shipped": 2, "delivered": 3}
TRACKING = {"invoiced": "invoice", "shipped": "sent", "delivered": "delivered", "cancelled": "cancel"}
COMPARED = {"invoice": ("invoice",), "sent": ("number", "url", "carrier"), "delivered": ("number",)}


@dataclass(frozen=True, slots=True)
class ViaAuth:
    """API.md L19: `client_id` (the integrator's app, not secret) and `access_token` (the seller's, secret)."""

    def secrets(self, options: Mapping[str, Any]) -> tuple[str, ...]:
        return (str(options["access_token"]),)

    def provider(self, options: Mapping[str, Any], token_client: Callable[[], HttpClient]) -> AuthProvider:
        headers = {"client_id": str(options["client_id"]), "access_token": str(options["access_token"]),
                   "Accept": "application/json;charset=UTF-8", "Content-Type": "application/json"}  # L21
        return FixedHeaders(headers, self.secrets(options))


@dataclass(frozen=True, slots=True)
class OrderLists:
    """L67-68: each status list (``approved``, ``canceled``) over the last days, by ``_offset``/``_limit``.

    Read whole every cycle (no cursor): each item is tagged with the list it came from, its status to us.
    """

    inner: OffsetLimit = OffsetLimit("_offset", "_limit", "orders", "total")

    def pages(self, conn: RestConnector, feed: Feed, entity: str, cursor: str | None
              ) -> Iterator[tuple[list[Any], str | None]]:
        now = conn.clock().astimezone(UTC)
        days = conn.order_days if isinstance(conn, ViaConnector) else 15
        window = f"{(now - timedelta(days=days)):%Y-%m-%dT%H:%M:%S},{(now + timedelta(hours=1)):%Y-%m-%dT%H:%M:%S}"
        for status in dict.fromkeys([*conn.importable, *conn.capabilities.cancelled_statuses]):
            listed = Feed(f"{feed.path}/{quote(status, safe='')}", self.inner, limit=feed.limit)
            for items, _ in self.inner.walk(conn, listed, entity, {"purchasedAt": window}):
                yield [{**i, "_list": status} if isinstance(i, dict) else i for i in items], None


class ViaConnector(RestConnector):
    """Writes offers (price per site, stock) and loads new SKUs to Via; reads its approved and cancelled orders."""

    type_name: ClassVar[str] = "via"
    options: ClassVar[dict[str, OptionSpec]] = {
        "client_id": OptionSpec("str", required=True, help="the integrator's Client ID (the one given to Via)"),
        "access_token": OptionSpec("str", required=True, secret=True, help="the seller's token for that Client ID"),
        "sites": OptionSpec("list[str]", default=list(SITES), help="banners whose prices are set: CB, PF, EX"),
        "category_map": OptionSpec("dict", help="back office group code -> Via category id (new SKUs' load)"),
        "category_id": OptionSpec("int", help="Via category id of products whose group is not in category_map"),
        "warranty_months": OptionSpec("int", help="garantia sent in a new SKU's load"),
        "cross_docking_days": OptionSpec("int", default=0, help="days to dispatch, sent with stock and loads"),
        "payment_map": OptionSpec("dict", help="Via payment method -> back office payment method code"),
        "order_days": OptionSpec("int", default=15, help="how many days back the order lists are read"),
        "status_codes": OptionSpec("dict", help="Via order status code -> invoiced|shipped|delivered|cancelled"),
    }
    capabilities: ClassVar[Capabilities] = Capabilities(
        push=frozenset({"products", "prices", "stock", "order-acks", "order-events", "customer-links"}),
        pull=frozenset({"orders", "channel-customers"}), max_batch=50,
        importable_statuses=("approved",), cancelled_statuses=("canceled",),
        stable=frozenset({"products"}), listing=frozenset({"products", "prices", "stock"}),
    )
    auth: ClassVar[AuthKind] = ViaAuth()
    check_path: ClassVar[str] = "/api/v2/sellerItems"
    max_page: ClassVar[int] = PAGE
    # one list of offers, shown as each entity's payload (`listing` below)
    lists: ClassVar[Mapping[str, Feed]] = {
        entity: Feed("/api/v2/sellerItems", OffsetLimit("_offset", "_limit", "sellerItems", "total"), key="skuSellerId",
                     limit=PAGE) for entity in ("products", "prices", "stock")}
    feeds: ClassVar[Mapping[str, Feed]] = {}  # set at the end of the module

    def __init__(self, name: str, base_url: str | None, options: Mapping[str, Any], http: HttpSettings,
                 **kwargs: Any) -> None:
        super().__init__(name, base_url, options, http, **kwargs)
        self.sites = tuple(options.get("sites") or SITES)
        unknown = sorted(set(self.sites) - set(SITES))
        if unknown:
            raise PermanentError(f"{name}: sites: {', '.join(unknown)} (known: {', '.join(SITES)})", code="bad_config")
        self.category_map = {str(k): int(v) for k, v in (options.get("category_map") or {}).items()}
        self.category_id = options.get("category_id")
        self.warranty = options.get("warranty_months")
        self.cross_docking = int(options.get("cross_docking_days") or 0)
        self.payment_map = {str(k): str(v) for k, v in (options.get("payment_map") or {}).items()}
        self.order_days = int(options.get("order_days") or 15)
        self.status_codes = {**STATUS_CODES, **{str(k): str(v) for k, v in (options.get("status_codes") or {}).items()}}
        self._customers: dict[str, ChannelCustomer] = {}

    def check(self) -> None:
        resp = self.client.get(self.check_path, params={"_offset": 0, "_limit": 1})
        if resp.status != 200:
            raise refused(self.client, f"GET {self.check_path}", resp)

    # -- reads ------------------------------------------------------------------------------------
    def pull(self, entity: str, cursor: str | None, filters: Mapping[str, Any] | None = None) -> Iterator[Page]:
        if entity == "channel-customers":
            yield Page(list(self._customers.values()), None)
            return
        feed = self.feeds.get(entity)
        if feed is None:
            raise ValueError(f"{self.name} has no {entity} feed")
        # every page is read before the first is handed over: the engine asks for the buyers once per step, when
        # the first order needs one, and they come with the orders (no customer feed): all of them are known then
        pages = [(parse_items(items, self._parse_order, "id"), next_cursor)
                 for items, next_cursor in feed.paging.pages(self, feed, entity, cursor)]
        for records, next_cursor in pages:
            yield Page(records, next_cursor)

    def _parse_order(self, data: dict[str, Any]) -> Order:
        order = parse_order(data, self.payment_map)
        customer = parse_customer(data)
        if customer is not None:
            self._customers[customer.remote_id] = customer
        return order

    def listing(self, entity: str) -> Iterator[list[Listed]]:
        """The offers Via holds, shown as each entity's payload (reconcile, adopt)."""
        shape, feed = LISTED.get(entity), self.lists.get(entity)
        if shape is None or feed is None:
            raise ValueError(f"{self.name} lists only {', '.join(LISTED)}, not {entity}")
        for items, _ in feed.paging.pages(self, feed, entity, None):
            offers = [i for i in items if isinstance(i, dict) and isinstance(i.get("skuSellerId"), str)]
            yield [Listed(o["skuSellerId"], shape(self, o), o.get("ean") if isinstance(o.get("ean"), str) else None)
                   for o in offers]

    def _offer(self, sku: str) -> dict[str, Any] | None:
        # L42: a 404 is not (yet) an offer
        return self.get_object(f"/api/v2/sellerItems/{quote(sku, safe='')}", "an offer")

    def _order_doc(self, order_id: str) -> dict[str, Any] | None:
        return self.get_object(f"/api/v2/orders/{quote(order_id, safe='')}", "an order")

    # -- writes -----------------------------------------------------------------------------------
    def prepare(self, entity: str, record: Any) -> Outgoing:
        if entity == "order-events":
            return event_out(record)
        if entity in ("order-acks", "customer-links"):  # Via has no acknowledge call (L79) and keeps no codes
            key = record.get("order_id") if entity == "order-acks" else record.get("remote_id")
            return Outgoing(_required(key, "key"), {})
        mapper = MAPPERS.get(entity)
        if mapper is None:
            raise ValueError(f"{self.name} cannot take {entity}")
        payload = mapper(self, record)
        return Outgoing(payload["sku"], payload)

    def push(self, entity: str, batch: Sequence[Outgoing]) -> list[PushResult]:
        writers: dict[str, Callable[[Outgoing], PushResult]] = {
            "products": self._product, "prices": self._prices, "stock": self._stock, "order-events": self._event,
            "order-acks": lambda out: PushResult(out.key, "unchanged"),
            "customer-links": lambda out: PushResult(out.key, "unchanged"),
        }
        writer = writers.get(entity)
        if writer is None:
            raise ValueError(f"{self.name} cannot take {entity}")
        return [writer(out) for out in batch]

    def _product(self, out: Outgoing) -> PushResult:
        """A SKU Via lacks is loaded (L38); one it has gets its active flag per site, and a load only if its
        content differs (a load goes through Via's approval, L44)."""
        offer = self._offer(out.key)
        p = out.payload
        # an offer another integrator made may not show its content: only what it shows is compared
        differs = offer is not None and any(k in offer and offer.get(k) != p.get(k) for k in CONTENT)
        if offer is None or differs:
            sku = {"idSkuLojista": p["sku"], "estoque": {"quantidade": 0, "tempoDePreparacao": self.cross_docking},
                   "imagens": [], "dimensao": p["dimensao"], "atributos": []}
            item = {"idItem": p["sku"], **{k: p[k] for k in CONTENT if k != "dimensao"}, "atributos": [],
                    "skus": [sku]}
            resp = self.client.post(IMPORTER, json={"itens": [item]}, idempotent=True)  # a load again: same result
            if resp.status not in (200, 201, 202):
                return self._rejection(out.key, resp, f"POST {IMPORTER}")
            if offer is None and p["active"]:
                return PushResult(out.key, "created")
            if offer is None:  # an inactive product: loaded (its price and stock need the offer), then switched off
                offer = self._offer(out.key)
                if offer is None:
                    return _not_an_offer(out.key, "loaded; it is switched off once Via approves the load")
        changed = differs
        for site in self.sites:
            if offer is not None and (offer.get("status") or {}).get(site, True) != p["active"]:
                path = f"/api/v2/sellerItems/{quote(out.key, safe='')}/status"
                resp = self.client.put(path, json={"active": p["active"], "site": site})  # L61
                if resp.status != 200:
                    return self._rejection(out.key, resp, f"PUT {path}")
                changed = True
        return PushResult(out.key, "updated" if changed else "unchanged")

    def _prices(self, out: Outgoing) -> PushResult:
        """L49: one PUT per site whose price differs from the offer's."""
        offer = self._offer(out.key)
        if offer is None:
            return _not_an_offer(out.key)
        want = {"default": out.payload["default"], "offer": out.payload["offer"]}
        sent = False
        for site in self.sites:
            have = (offer.get("prices") or {}).get(site) or {}
            if all(_same_money(have.get(k), v) for k, v in want.items()):
                continue
            path = f"/api/v2/sellerItems/{quote(out.key, safe='')}/prices"
            resp = self.client.put(path, json={**want, "site": site})
            if resp.status != 200:
                return self._rejection(out.key, resp, f"PUT {path} ({site})")
            sent = True
        return PushResult(out.key, "updated" if sent else "unchanged")

    def _stock(self, out: Outgoing) -> PushResult:
        """L58: the absolute quantity, when it differs from the offer's."""
        offer = self._offer(out.key)
        if offer is None:
            return _not_an_offer(out.key)
        if (offer.get("stock") or {}).get("quantity") == out.payload["quantity"]:
            return PushResult(out.key, "unchanged")
        path = f"/api/v2/sellerItems/{quote(out.key, safe='')}/stock"
        resp = self.client.put(path, json={"quantity": out.payload["quantity"], "crossDockingTime": self.cross_docking})
        if resp.status != 200:
            return self._rejection(out.key, resp, f"PUT {path}")
        return PushResult(out.key, "updated")

    def _event(self, out: Outgoing) -> PushResult:
        order_id = str(out.meta.get("order_id") or "")
        order = self._order_doc(order_id)
        if order is None:
            return PushResult(out.key, "rejected", reason_code="not_found", reason=f"Via has no order {order_id}")
        kind, tracking = out.payload["type"], TRACKING[out.payload["type"]]
        reached = self.status_codes.get(str(order.get("status") or ""), "approved")
        held = (order.get("trackings") or {}).get(tracking) if isinstance(order.get("trackings"), dict) else None
        items = [i for i in order.get("items") or [] if isinstance(i, dict)]
        if kind == "cancelled":
            if reached == "cancelled":
                return PushResult(out.key, "exists")
            counts = Counter(str(i.get("skuSellerId")) for i in items)
            body: dict[str, Any] = {"items": [{"skuSellerId": s, "quantity": n} for s, n in counts.items()],
                                    "info": "Pedido Cancelado"}
        else:
            if reached == "cancelled":
                return PushResult(out.key, "rejected", reason_code="cancelled",
                                  reason=f"order {order_id} is cancelled in Via: it cannot be {kind}")
            now, step = STEP.get(reached, 0), STEP[kind]
            if now < step - 1:
                return PushResult(out.key, "rejected", reason_code="out_of_order",
                                  reason=f"Via has order {order_id} {reached}: the step before {kind} first")
            body = {"items": items, **{k: v for k, v in out.payload.items() if k != "type"}}
            if kind == "delivered" and not body.get("number") and isinstance((order.get("trackings") or {}).get("sent"),
                                                                               dict):
                sent = order["trackings"]["sent"]  # L87: the same shape as `sent`: its tracking, as Via holds it
                body |= {k: sent[k] for k in ("sellerDeliveryId", "number", "url", "carrier") if k in sent}
            if kind != "invoiced":  # L92: after the approval (the integrator forces it so)
                body["occurredAt"] = _after_approval(body["occurredAt"], order.get("approvedAt"))
            # Via has this step already: a repeat (nothing to send), or a correction (sent again)
            if now >= step and (held is None or all(held.get(k) == body.get(k) for k in COMPARED[tracking])):
                return PushResult(out.key, "exists")
        path = f"/api/v2/orders/{quote(order_id, safe='')}/trackings/{tracking}"
        resp = self.client.post(path, json=body, idempotent=True)  # the order is read first on every retry
        if resp.status in (200, 201, 204):
            return PushResult(out.key, "created")
        return self._rejection(out.key, resp, f"POST {path}")

    def _rejection(self, key: str, resp: HttpResponse, what: str) -> PushResult:
        """One record refused (4xx): quarantine it; a 401/403 (revoked token), 429 or 5xx fails the step."""
        if not 400 <= resp.status < 500 or resp.status in (401, 403, 429):
            raise refused(self.client, what, resp)
        code = "not_found" if resp.status == 404 else resp.error_code() or f"http_{resp.status}"
        return PushResult(key, "rejected", reason_code=code, reason=f"{what}: {reason(resp, self.client)}")


def _not_an_offer(key: str, why: str = "its load is not approved, or it was never sent") -> PushResult:
    return PushResult(key, "rejected", reason_code="not_an_offer", reason=f"SKU {key} is not an offer on Via yet ({why})")


def _same_money(have: Any, want: str) -> bool:
    try:
        return have is not None and Decimal(str(have)) == Decimal(want)
    except ArithmeticError:
        return False


def _after_approval(occurred: str, approved: Any) -> str:
    moment = parse_time(occurred, "occurredAt", required=True)
    try:
        floor = parse_time(approved, "approvedAt")
    except MappingError:
        floor = None
    if moment is not None and floor is not None and moment <= floor:
        moment = floor + timedelta(minutes=1)
    return time_str(moment) or occurred


def _required(value: Any, name: str) -> str:
    if value is None or not str(value).strip():
        raise MappingError("missing_field", f"{name} is required")
    return str(value)


ViaConnector.feeds = {"orders": Feed("/api/v2/orders/status", OrderLists(), parse_order, "id")}  # pages of page_size

__all__ = ["ViaConnector", "event_out", "parse_order"]
