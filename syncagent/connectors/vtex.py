"""VTEX: catalogue, prices and stock out; orders in through the Orders Feed v3; fulfilment news back.

Contracts: VTEX's own OpenAPI files in ../shared/contracts/vtex (Catalog, Pricing, Logistics and
Orders API). The four APIs live on two hosts: Catalog, Logistics and Orders on
``https://{account}.{environment}.com.br``, Pricing on ``https://api.vtex.com/{account}``. A
``base_url`` that is not the account's own host (a simulator, a proxy) is the root of all four;
``api_urls`` overrides the root of each API on its own.

Why it is shaped like this:

* products bind by ``RefId`` (our code) and are never created twice: look up first, create only
  when absent, otherwise update by full replace on top of what VTEX holds (PUT clears what it is
  not sent, so the VTEX-side fields we do not own are carried over);
* the Pricing PUT replaces every fixed price of an SKU, so the fixed prices of other trade
  policies are read first and sent back untouched;
* the Orders Feed v3 is a queue, not a cursor: an item comes back after its visibility timeout
  until its handle is committed. An order that waits for the back office keeps its handle until
  the engine acknowledges it (``push("order-acks")``: start-handling, then commit); every other
  item is committed once the engine has recorded its page (it asks for the next one).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

from syncagent.connectors.base import Capabilities, OptionSpec, Outgoing, PushResult
from syncagent.connectors.common import need, opt, parse_items
from syncagent.connectors.rest import AuthKind, Headers, RestConnector
from syncagent.errors import MappingError, PermanentError, TransientError
from syncagent.http import HttpClient, HttpResponse, HttpSettings
from syncagent.model import (
    CENT,
    Address,
    BadRecord,
    ChannelCustomer,
    Order,
    OrderEvent,
    OrderItem,
    OrderPayment,
    Page,
    Price,
    Product,
    normalize_document,
    parse_time,
    time_str,
    utcnow,
)

log = logging.getLogger("syncagent.connectors.vtex")

APIS = ("catalog", "pricing", "logistics", "orders")
PUSHES = ("products", "prices", "stock", "order-acks", "order-events", "customer-links")
MAX_LOT = 10  # Getfeedorderstatus1: at most 10 items per read
MAX_LOTS = 500  # reads of one pull: a queue refilling as fast as we read must not hold the step forever
FEED_VISIBILITY = 250  # seconds an item read stays invisible (VTEX's default)
FEED_RETENTION = 345_600  # four days; the spec's maximum is 1,209,600
LOCKED_RETRIES = 3  # 423 Locked: only the first of concurrent updates of one SKU and warehouse is kept
LOCKED_WAIT = 2.0
OPEN_FROM = datetime(2000, 1, 1, tzinfo=UTC)  # the start of a fixed price that has no start
OPEN_UNTIL = datetime(2099, 12, 31, 23, 59, 59, tzinfo=UTC)  # the end of a fixed price that has no end
MEASUREMENT_UNITS = {"un", "kg", "g", "mg", "m", "m²", "m³", "cm", "cm²", "cm³", "mm", "mm²", "mm³", "oz", "lb",
                     "ft", "ft²", "ft³", "in", "in²", "in³"}
# VTEX payment groups to the back office's payment method codes; `payment_map` overrides them
PAYMENT_GROUPS = {"creditCard": "CC", "debitCard": "CD", "instantPayment": "PIX", "bankInvoice": "BOL",
                  "giftCard": "VALE", "promissory": "DIN", "cash": "DIN"}
NFE_KEY_DIGITS = 44
# fields of a product / SKU that the back office owns; the rest is left as VTEX holds it
PRODUCT_FIELDS = ("Name", "CategoryId", "BrandId", "RefId", "IsVisible", "IsActive", "Title", "TaxCode")
SKU_FIELDS = ("Name", "RefId", "IsActive", "ActivateIfPossible", "PackagedHeight", "PackagedLength",
              "PackagedWidth", "PackagedWeightKg", "Height", "Length", "Width", "WeightKg", "MeasurementUnit",
              "UnitMultiplier")


@dataclass(frozen=True, slots=True)
class WarehouseLevel:
    """Stock for one VTEX warehouse: what the engine would hand over with per-warehouse sums."""

    code: str
    available: int
    location: str

    @property
    def key(self) -> str:
        return f"{self.code}@{self.location}"


def api_roots(account: str, environment: str, base_url: str | None,
              overrides: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The root URL of each API: VTEX's hosts, or `base_url` for all, then `api_urls` one by one."""
    store = f"https://{account}.{environment}.com.br"
    roots = {"catalog": store, "logistics": store, "orders": store, "pricing": f"https://api.vtex.com/{account}"}
    if base_url and urlsplit(base_url).hostname not in (None, f"{account}.{environment}.com.br"):
        roots = dict.fromkeys(APIS, base_url.rstrip("/"))
    for name, url in (overrides or {}).items():
        if name not in APIS:
            raise PermanentError(f"api_urls: unknown API {name!r} (known: {', '.join(APIS)})", code="bad_config")
        roots[name] = str(url).rstrip("/")
    return roots


class VtexConnector(RestConnector):
    """Writes catalogue, prices and stock to a VTEX store and reads its orders from the Feed v3."""

    type_name: ClassVar[str] = "vtex"
    options: ClassVar[dict[str, OptionSpec]] = {
        "account": OptionSpec("str", required=True, help="VTEX account name (the {accountName} of its URLs)"),
        "environment": OptionSpec("str", default="vtexcommercestable", help="VTEX environment of the store host"),
        "app_key": OptionSpec("str", required=True, secret=True, help="app key (X-VTEX-API-AppKey)"),
        "app_token": OptionSpec("str", required=True, secret=True, help="app token (X-VTEX-API-AppToken)"),
        "sales_channel": OptionSpec("str", default="1", help="trade policy that gets the fixed (promotional and "
                                    "scheduled) prices"),
        "warehouse_id": OptionSpec("str", help="VTEX warehouse that receives the stock summed over `warehouses`"),
        "warehouse_map": OptionSpec("dict", help="VTEX warehouse id -> list of back office warehouses"),
        "lead_time": OptionSpec("str", default="00.00:00:00", help="lead time sent with every stock update "
                                "(dd.hh:mm:ss)"),
        "category_map": OptionSpec("dict", help="back office group code -> VTEX category id"),
        "category_id": OptionSpec("int", help="VTEX category id of products whose group is not in category_map"),
        "brand_map": OptionSpec("dict", help="back office brand -> VTEX brand id"),
        "brand_id": OptionSpec("int", help="VTEX brand id of products whose brand is not in brand_map"),
        "payment_map": OptionSpec("dict", help="VTEX paymentSystem id or name -> back office payment method code"),
        "configure_feed": OptionSpec("bool", default=True, help="create the Orders Feed v3 configuration of this "
                                     "app key when it has none"),
        "api_urls": OptionSpec("dict", help="root URL per API (catalog, pricing, logistics, orders), e.g. for a "
                               "proxy"),
    }
    capabilities: ClassVar[Capabilities] = Capabilities(
        push=frozenset(PUSHES), pull=frozenset({"orders", "channel-customers"}), max_batch=50,
        importable_statuses=("ready-for-handling",), cancelled_statuses=("canceled",),
        stable=frozenset({"products"}),
    )
    # the app key pair on every request, with the two headers every VTEX operation declares required
    auth: ClassVar[AuthKind] = Headers({"X-VTEX-API-AppKey": "app_key", "X-VTEX-API-AppToken": "app_token"},
                                       {"Accept": "application/json", "Content-Type": "application/json"})
    check_path: ClassVar[str] = "/api/logistics/pvt/configuration/warehouses"

    def __init__(self, name: str, base_url: str | None, options: Mapping[str, Any], http: HttpSettings, *,
                 sleep: Callable[[float], None] | None = None, clock: Callable[[], datetime] = utcnow,
                 order_statuses: Sequence[str] | None = None) -> None:
        super().__init__(name, base_url, options, http, sleep=sleep, clock=clock, order_statuses=order_statuses)
        self._sleep = sleep if sleep is not None else time.sleep
        opts = dict(options)
        self.account = str(opts["account"])
        self.sales_channel = str(opts.get("sales_channel") or "1")
        self.lead_time = str(opts.get("lead_time") or "00.00:00:00")
        self.warehouse_id = str(opts["warehouse_id"]) if opts.get("warehouse_id") else None
        self.warehouse_map = {str(k): tuple(str(w) for w in (v if isinstance(v, list | tuple) else [v]))
                              for k, v in (opts.get("warehouse_map") or {}).items()}
        self.category_map = {str(k): _as_int(v, f"category_map.{k}") for k, v in
                             (opts.get("category_map") or {}).items()}
        self.brand_map = {str(k): _as_int(v, f"brand_map.{k}") for k, v in (opts.get("brand_map") or {}).items()}
        self.category_id = opts.get("category_id")
        self.brand_id = opts.get("brand_id")
        self.payment_map = {str(k): str(v) for k, v in (opts.get("payment_map") or {}).items()}
        self.configure_feed = bool(opts.get("configure_feed", True))
        self.catalog, self.pricing = self.clients["catalog"], self.clients["pricing"]
        self.logistics, self.oms = self.clients["logistics"], self.clients["orders"]
        self._sku_ids: dict[str, int] = {}  # our code -> VTEX SKU id, learnt on the way
        self._handles: dict[str, dict[str, str]] = {}  # orderId -> {eventId: latest handle}
        self._customers: dict[str, ChannelCustomer] = {}  # from the orders read, for the engine to bind
        # the orders pull under way: lots read ahead (for the buyers) and the orders they name
        self._pulling = False
        self._waits: dict[str, bool] = {}
        self._ahead: deque[list[Any]] = deque()
        self._prefetched: dict[str, Any] = {}
        self._lots = 0
        self._feed_done = False
        self._feed_checked = False

    @classmethod
    def api_roots(cls, base_url: str | None, options: Mapping[str, Any]) -> dict[str, str]:
        """VTEX splits itself into four APIs, with pricing on a host of its own."""
        return api_roots(str(options["account"]), str(options.get("environment") or "vtexcommercestable"),
                         base_url, options.get("api_urls"))

    def check(self) -> None:
        """Credentials and reachability, and that the configured warehouses exist (AllWarehouses)."""
        resp = self.logistics.get("/api/logistics/pvt/configuration/warehouses")
        if resp.status != 200:
            raise _refused(self.logistics, "GET /api/logistics/pvt/configuration/warehouses", resp)
        body = _json(self.logistics, resp, "the warehouse list")
        known = {str(w.get("id")) for w in body if isinstance(w, dict)} if isinstance(body, list) else set()
        wanted = set(self.warehouse_map) | ({self.warehouse_id} if self.warehouse_id else set())
        missing = sorted(wanted - known)
        if missing:
            raise PermanentError(f"{self.name}: VTEX has no warehouse {', '.join(missing)} (it has: "
                                 f"{', '.join(sorted(known)) or 'none'})", code="unknown_warehouse")

    def stock_locations(self) -> dict[str, tuple[str, ...]]:
        """VTEX warehouse -> back office warehouses whose stock it gets (for per-warehouse sums)."""
        return dict(self.warehouse_map)

    # -- orders: Feed v3 ---------------------------------------------------------------------------
    def pull(self, entity: str, cursor: str | None, filters: Mapping[str, Any] | None = None) -> Iterator[Page]:
        """Read the feed lot by lot; the feed has no cursor, so every page carries None."""
        if entity == "channel-customers":
            # the engine asks for the buyers once per orders step, while it holds the first page that
            # needs one: read the rest of the feed now, so the buyers of the later lots are known too
            self._read_ahead()
            yield Page(list(self._customers.values()), None)
            return
        if entity != "orders":
            raise ValueError(f"{self.name} has no {entity} feed")
        self._ensure_feed()
        self._waits = {}  # orders read in this pull -> waiting for the back office
        self._ahead, self._prefetched, self._lots, self._feed_done = deque(), {}, 0, False
        self._pulling = True
        try:
            while True:
                if self._ahead:
                    items = self._ahead.popleft()
                elif self._feed_done or self._lots >= MAX_LOTS:
                    return
                else:
                    items = self._read_lot()
                if not items:
                    return
                lot = _lot_handles(items)
                records: list[Any] = []
                waiting: set[str] = set()
                for order_id, handles in lot.items():
                    self._handles.setdefault(order_id, {}).update(handles)
                    if order_id not in self._waits:  # an order read again within one pull is not handed over twice
                        record = self._prefetched.pop(order_id, None) or self._read_order(order_id)
                        records.append(record)
                        # an order that could not be mapped (a payment not in payment_map, say) keeps its handle
                        # too: it comes back after the visibility timeout and goes through once the cause is fixed
                        self._waits[order_id] = (record.status in self.importable if isinstance(record, Order)
                                                 else record.code != "not_found")
                    if self._waits[order_id]:
                        waiting.add(order_id)
                new = bool(records)
                yield Page(records, None)
                # the engine asks for more only after recording the page: what does not wait for the
                # back office (other statuses, cancellations, quarantined items) can leave the queue now
                done = [h for order_id in lot if order_id not in waiting
                        for h in self._handles.pop(order_id, {}).values()]
                if done:
                    self._commit(done)
                if not new:
                    return
        finally:
            self._pulling = False
            self._ahead, self._prefetched = deque(), {}

    def _read_lot(self) -> list[Any]:
        """One Getfeedorderstatus1 read: up to MAX_LOT items, each invisible for the visibility timeout."""
        what = "GET /api/orders/feed"
        resp = self.oms.get("/api/orders/feed", params={"maxlot": MAX_LOT})
        if resp.status != 200:
            raise _refused(self.oms, what, resp)
        items = _json(self.oms, resp, "the feed")
        if not isinstance(items, list):
            raise TransientError(f"{self.name}: {what}: the answer is not a list", code="bad_response")
        self._lots += 1
        return items

    def _read_ahead(self) -> None:
        """During an orders pull: read the remaining lots and their orders now, to be handed over later."""
        if not self._pulling:
            return
        while not self._feed_done and self._lots < MAX_LOTS:
            items = self._read_lot()
            self._ahead.append(items)
            new = False
            for order_id in _lot_handles(items):
                if order_id not in self._waits and order_id not in self._prefetched:
                    self._prefetched[order_id] = self._read_order(order_id)
                    new = True
            if not new:  # an empty lot, or only orders already read: the pull ends with this lot
                self._feed_done = True

    def _ensure_feed(self) -> None:
        """A Feed v3 exists per app key only once configured: create it (FeedConfiguration) if absent."""
        if self._feed_checked or not self.configure_feed:
            return
        resp = self.oms.get("/api/orders/feed/config")
        if resp.status == 404 or (resp.status == 200 and not _json(self.oms, resp, "the feed configuration")):
            statuses = list(dict.fromkeys([*self.importable, *self.capabilities.cancelled_statuses]))
            body = {"filter": {"type": "FromWorkflow", "status": statuses},
                    "queue": {"visibilityTimeoutInSeconds": FEED_VISIBILITY,
                              "MessageRetentionPeriodInSeconds": FEED_RETENTION}}
            created = self.oms.post("/api/orders/feed/config", json=body, idempotent=True)
            if created.status != 200:
                raise _refused(self.oms, "POST /api/orders/feed/config", created)
            log.info("%s: created the Orders Feed v3 configuration for statuses %s", self.name, ", ".join(statuses))
        elif resp.status != 200:
            raise _refused(self.oms, "GET /api/orders/feed/config", resp)
        self._feed_checked = True

    def _commit(self, handles: list[str]) -> None:
        """Commititemfeedorderstatus: committed items do not come back."""
        resp = self.oms.post("/api/orders/feed", json={"handles": handles}, idempotent=True)
        if resp.status != 200:
            raise _refused(self.oms, "POST /api/orders/feed", resp)

    def _read_order(self, order_id: str) -> Any:
        what = f"GET /api/oms/pvt/orders/{order_id}"
        resp = self.oms.get(f"/api/oms/pvt/orders/{quote(order_id, safe='')}")
        if resp.status == 404:
            return BadRecord(order_id, "not_found", "the feed names an order VTEX does not return", None)
        if resp.status != 200:
            raise _refused(self.oms, what, resp)
        data = _json(self.oms, resp, "the order")
        (record,) = parse_items([data], lambda d: self._parse_order(d), lambda d: d.get("orderId") or order_id)
        if isinstance(record, BadRecord) and record.key == "?":
            record = BadRecord(order_id, record.code, record.reason, record.raw)
        return record

    def _parse_order(self, data: dict[str, Any]) -> Order:
        order = parse_order(data, self.payment_map)
        customer = parse_customer(data)
        if customer is not None:
            self._customers[customer.remote_id] = customer
        return order

    # -- writes ------------------------------------------------------------------------------------
    def prepare(self, entity: str, record: Any) -> Outgoing:
        """Map one model record (or an engine dict for acks and links) to what is sent to VTEX."""
        if entity == "products":
            return Outgoing(_required(record.code, "code"), self.product_out(record))
        if entity == "prices":
            return Outgoing(_required(record.code, "code"), self.price_out(record))
        if entity == "stock":
            return self.stock_out(record)
        if entity == "order-events":
            return event_out(record)
        if entity == "order-acks":
            number = _required(str(record.get("backoffice_number") or ""), "backoffice_number")
            return Outgoing(_required(record.get("order_id"), "order_id"), {"backoffice_number": number})
        if entity == "customer-links":
            return Outgoing(_required(record.get("remote_id"), "remote_id"), {"code": str(record.get("code"))})
        raise ValueError(f"{self.name} cannot take {entity}")

    def product_out(self, p: Product) -> dict[str, Any]:
        """The fields of the VTEX product and SKU that the back office owns."""
        category = self.category_map.get(p.group_code or "", self.category_id)
        if category is None:
            raise MappingError("unmapped_category", f"group {p.group_code!r} has no VTEX category: add it to "
                               "category_map or set category_id")
        brand = self.brand_map.get(p.brand or "", self.brand_id)
        if brand is None:
            raise MappingError("unmapped_brand", f"brand {p.brand!r} has no VTEX brand id: add it to brand_map or "
                               "set brand_id")
        name = _required(p.name, "name")
        product = {"Name": name, "CategoryId": int(category), "BrandId": int(brand), "RefId": p.code,
                   "IsVisible": True, "IsActive": p.active, "Title": name[:150], "TaxCode": p.ncm or ""}
        height, width, length = (_measure(v, f) for v, f in ((p.height_cm, "height_cm"), (p.width_cm, "width_cm"),
                                                              (p.length_cm, "length_cm")))
        grams = int((_measure(p.weight_kg, "weight_kg") * 1000).to_integral_value())
        unit = (p.unit or "un").lower()
        sku = {"Name": name, "RefId": p.code, "IsActive": p.active, "ActivateIfPossible": p.active,
               "PackagedHeight": float(height), "PackagedLength": float(length), "PackagedWidth": float(width),
               "PackagedWeightKg": max(1, grams), "Height": float(height), "Length": float(length),
               "Width": float(width), "WeightKg": float(max(1, grams)),
               "MeasurementUnit": unit if unit in MEASUREMENT_UNITS else "un", "UnitMultiplier": 1.0}
        return {"product": product, "sku": sku, "ean": p.barcode or None}

    def price_out(self, p: Price) -> dict[str, Any]:
        """Base price now, plus fixed prices (our trade policy) for every promotion and scheduled change ahead.

        The payload changes only when a boundary passes, which is when the engine re-sends it.
        """
        now = self.clock()
        base = p.list_price_at(now)
        moments = sorted({m for m in [s.starts_at for s in p.scheduled] + [p.promo_start, p.promo_end]
                          if m is not None})
        starts = [OPEN_FROM, *[m for m in moments if m > OPEN_FROM]]
        fixed: list[dict[str, Any]] = []
        for i, start in enumerate(starts):
            end = starts[i + 1] if i + 1 < len(starts) else OPEN_UNTIL
            if end <= now:
                continue
            eff = p.effective(start)
            if eff.promo_price is not None:
                value, list_price = eff.promo_price, eff.price
            elif eff.price != base:
                value, list_price = eff.price, eff.price
            else:
                continue
            entry = {"tradePolicyId": self.sales_channel, "value": float(value), "listPrice": float(list_price),
                     "minQuantity": 1, "dateRange": {"from": time_str(start), "to": time_str(end)}}
            last = fixed[-1] if fixed else None
            if last and (last["value"], last["listPrice"], last["dateRange"]["to"]) == \
                    (entry["value"], entry["listPrice"], entry["dateRange"]["from"]):
                last["dateRange"]["to"] = entry["dateRange"]["to"]
            else:
                fixed.append(entry)
        return {"basePrice": float(base), "listPrice": float(base), "markup": 0, "fixedPrices": fixed}

    def stock_out(self, level: Any) -> Outgoing:
        """One VTEX warehouse's quantity: the level's own location, else the one configured warehouse."""
        code = _required(level.code, "code")
        location = getattr(level, "location", None)
        if location:
            if self.warehouse_map and location not in self.warehouse_map:
                raise MappingError("unknown_warehouse", f"VTEX warehouse {location!r} is not in warehouse_map")
            key = f"{code}@{location}"
        elif len(self.warehouse_map) == 1:
            location, key = next(iter(self.warehouse_map)), code
        elif self.warehouse_map:
            raise MappingError("needs_per_warehouse_levels", "warehouse_map names several VTEX warehouses but the "
                               "level is a sum over all of them; set warehouse_id or one warehouse_map entry")
        elif self.warehouse_id:
            location, key = self.warehouse_id, code
        else:
            raise MappingError("no_warehouse", "set warehouse_id (or warehouse_map) for the stock flow")
        quantity = max(0, int(level.available))
        return Outgoing(key, {"code": code, "warehouse": location, "quantity": quantity})

    def push(self, entity: str, batch: Sequence[Outgoing]) -> list[PushResult]:
        """One record at a time (VTEX has no batch writes for these); one result per record."""
        handlers: dict[str, Callable[[Outgoing], PushResult]] = {
            "products": self._push_product, "prices": self._push_price, "stock": self._push_stock,
            "order-acks": self._push_ack, "order-events": self._push_event,
            "customer-links": lambda out: PushResult(out.key, "unchanged"),  # VTEX keeps no back office code
        }
        handler = handlers.get(entity)
        if handler is None:
            raise ValueError(f"{self.name} cannot take {entity}")
        results = []
        for out in batch:
            try:
                results.append(handler(out))
            except PermanentError as exc:  # one record refused: that record's problem, not the batch's
                if exc.status in (401, 403):  # a permission missing is the channel's problem: fail the step
                    raise
                results.append(PushResult(out.key, "rejected", reason_code=exc.code or f"http_{exc.status}",
                                          reason=str(exc)))
        return results

    # products
    def _push_product(self, out: Outgoing) -> PushResult:
        code = out.key
        want_product, want_sku, ean = out.payload["product"], out.payload["sku"], out.payload.get("ean")
        existing = self._product_by_ref(code)
        if existing is None:
            resp = self.catalog.post("/api/catalog/pvt/product", json=want_product, idempotent=False)
            if resp.status != 200:
                return _rejection(code, resp, self.catalog, "POST /api/catalog/pvt/product")
            product_id = _id_of(self.catalog, resp, "POST /api/catalog/pvt/product")
            status = "created"
        else:
            product_id = int(existing["Id"])
            merged = _merged(existing, want_product, PRODUCT_FIELDS)
            status = "unchanged"
            if any(existing.get(k) != merged.get(k) for k in PRODUCT_FIELDS):
                what = f"PUT /api/catalog/pvt/product/{product_id}"
                resp = self.catalog.put(f"/api/catalog/pvt/product/{product_id}", json=merged)
                if resp.status != 200:
                    return _rejection(code, resp, self.catalog, what)
                status = "updated"
        sku_status, sku_id = self._upsert_sku(code, product_id, want_sku)
        if isinstance(sku_status, PushResult):
            return sku_status
        if ean or sku_status != "created":  # a barcode cleared in the back office leaves no EAN behind
            rejected = self._ensure_ean(code, sku_id, ean)
            if rejected is not None:
                return rejected
        if status == "unchanged":
            status = sku_status
        return PushResult(code, status, remote_id=str(sku_id))

    def _product_by_ref(self, code: str) -> dict[str, Any] | None:
        """ProductbyRefId; VTEX answers 200 `null` for an unknown RefId (a known issue), or 404."""
        what = f"GET /api/catalog_system/pvt/products/productgetbyrefid/{code}"
        resp = self.catalog.get(f"/api/catalog_system/pvt/products/productgetbyrefid/{quote(code, safe='')}")
        if resp.status == 404:
            return None
        if resp.status != 200:
            raise _refused(self.catalog, what, resp)
        body = _json(self.catalog, resp, "the product")
        if not isinstance(body, dict) or not body.get("Id"):
            return None
        return body

    def _upsert_sku(self, code: str, product_id: int, want: dict[str, Any]) -> tuple[Any, int]:
        what = f"GET /api/catalog/pvt/stockkeepingunit?RefId={code}"
        resp = self.catalog.get("/api/catalog/pvt/stockkeepingunit", params={"RefId": code})
        existing = None
        if resp.status == 200:
            body = _json(self.catalog, resp, "the SKU")
            existing = body if isinstance(body, dict) and body.get("Id") else None
        elif resp.status != 404:
            raise _refused(self.catalog, what, resp)
        if existing is None:
            # an SKU is created inactive (the API refuses IsActive true here); ActivateIfPossible turns it on
            body = {**want, "ProductId": product_id, "IsActive": False}
            resp = self.catalog.post("/api/catalog/pvt/stockkeepingunit", json=body, idempotent=False)
            if resp.status != 200:
                return _rejection(code, resp, self.catalog, "POST /api/catalog/pvt/stockkeepingunit"), 0
            sku_id = _id_of(self.catalog, resp, "POST /api/catalog/pvt/stockkeepingunit")
            self._sku_ids[code] = sku_id
            return "created", sku_id
        sku_id = int(existing["Id"])
        self._sku_ids[code] = sku_id
        merged = _merged(existing, {**want, "ProductId": product_id}, (*SKU_FIELDS, "ProductId"))
        if all(existing.get(k) == merged.get(k) for k in (*SKU_FIELDS, "ProductId")):
            return "unchanged", sku_id
        what = f"PUT /api/catalog/pvt/stockkeepingunit/{sku_id}"
        resp = self.catalog.put(f"/api/catalog/pvt/stockkeepingunit/{sku_id}", json=merged)
        if resp.status != 200:
            return _rejection(code, resp, self.catalog, what), sku_id
        return "updated", sku_id

    def _ensure_ean(self, code: str, sku_id: int, ean: str | None) -> PushResult | None:
        """The SKU's EAN is the product's barcode: add it, drop any other (all of them when it has none)."""
        path = f"/api/catalog/pvt/stockkeepingunit/{sku_id}/ean"
        resp = self.catalog.get(path)
        if resp.status != 200:
            raise _refused(self.catalog, f"GET {path}", resp)
        current = [str(e) for e in (_json(self.catalog, resp, "the EAN list") or [])]
        if ean and ean not in current:
            added = self.catalog.post(f"{path}/{quote(ean, safe='')}", idempotent=True)
            if added.status != 200:
                return _rejection(code, added, self.catalog, f"POST {path}/{ean}")
        for old in current:
            if old != ean:
                gone = self.catalog.request("DELETE", f"{path}/{quote(old, safe='')}")
                if gone.status not in (200, 404):
                    raise _refused(self.catalog, f"DELETE {path}/{old}", gone)
        return None

    def _sku_id(self, code: str) -> int | None:
        """SkuIdbyRefId, remembered: prices and stock address the SKU by VTEX's id."""
        if code in self._sku_ids:
            return self._sku_ids[code]
        what = f"GET /api/catalog_system/pvt/sku/stockkeepingunitidbyrefid/{code}"
        resp = self.catalog.get(f"/api/catalog_system/pvt/sku/stockkeepingunitidbyrefid/{quote(code, safe='')}")
        if resp.status == 404:
            return None
        if resp.status != 200:
            raise _refused(self.catalog, what, resp)
        body = _json(self.catalog, resp, "the SKU id")
        try:
            sku_id = int(str(body))
        except ValueError:
            return None
        self._sku_ids[code] = sku_id
        return sku_id

    def _missing_sku(self, key: str, code: str) -> PushResult:
        return PushResult(key, "rejected", reason_code="unknown_sku",
                          reason=f"SKU {code} is not in the VTEX catalogue (its product has not been sent yet)")

    # prices
    def _push_price(self, out: Outgoing) -> PushResult:
        code = out.key
        sku_id = self._sku_id(code)
        if sku_id is None:
            return self._missing_sku(code, code)
        path = f"/pricing/prices/{sku_id}"
        resp = self.pricing.get(f"{path}/fixed")  # GetFixedPrices; 404 while the SKU has no price
        others: list[dict[str, Any]] = []
        if resp.status == 200:
            fixed = _json(self.pricing, resp, "the fixed prices")
            others = [f for f in fixed if isinstance(f, dict) and str(f.get("tradePolicyId")) != self.sales_channel] \
                if isinstance(fixed, list) else []
        elif resp.status != 404:
            raise _refused(self.pricing, f"GET {path}/fixed", resp)
        body = {k: v for k, v in out.payload.items()}
        # PUT replaces every fixed price of the SKU: keep those of the other trade policies
        body["fixedPrices"] = [*others, *out.payload["fixedPrices"]]
        resp = self.pricing.put(path, json=body)
        if resp.status != 200:
            return _rejection(code, resp, self.pricing, f"PUT {path}")
        return PushResult(code, "updated", remote_id=str(sku_id))

    # stock
    def _push_stock(self, out: Outgoing) -> PushResult:
        code, warehouse = out.payload["code"], out.payload["warehouse"]
        sku_id = self._sku_id(code)
        if sku_id is None:
            return self._missing_sku(out.key, code)
        path = f"/api/logistics/pvt/inventory/skus/{sku_id}/warehouses/{quote(str(warehouse), safe='')}"
        body = {"quantity": out.payload["quantity"], "unlimitedQuantity": False, "leadTime": self.lead_time}
        for attempt in range(LOCKED_RETRIES + 1):
            resp = self.logistics.put(path, json=body)
            if resp.status != 423 or attempt == LOCKED_RETRIES:
                break
            # 423 Locked: another update of this SKU and warehouse won; ours was discarded, send it again
            self._sleep(LOCKED_WAIT)
        if resp.status != 200:
            return _rejection(out.key, resp, self.logistics, f"PUT {path}")
        return PushResult(out.key, "updated", remote_id=str(sku_id))

    # order acknowledgement
    def _push_ack(self, out: Outgoing) -> PushResult:
        """The back office has the order: start handling it in VTEX, then let its feed items go."""
        order_id = out.key
        path = f"/api/oms/pvt/orders/{quote(order_id, safe='')}/start-handling"
        resp = self.oms.post(path, idempotent=True)
        status = "updated"
        if resp.status == 409:
            status = "exists"  # already in handling (or past it): what we asked for is done
        elif resp.status != 204:
            return _rejection(order_id, resp, self.oms, f"POST {path}")
        handles = list(self._handles.get(order_id, {}).values())
        if handles:
            self._commit(handles)
            self._handles.pop(order_id, None)
        return PushResult(order_id, status)

    # order events
    def _push_event(self, out: Outgoing) -> PushResult:
        order_id = str(out.meta.get("order_id") or "")
        if not order_id:
            return PushResult(out.key, "rejected", reason_code="missing_field", reason="the event has no order id")
        kind = out.payload["type"]
        order = self._order_doc(order_id)
        if order is None:
            return PushResult(out.key, "rejected", reason_code="not_found", reason=f"VTEX has no order {order_id}")
        base = f"/api/oms/pvt/orders/{quote(order_id, safe='')}"
        if kind == "cancelled":
            if order.get("status") == "canceled":
                return PushResult(out.key, "exists")
            resp = self.oms.post(f"{base}/cancel", json={"reason": "cancelled in the back office"}, idempotent=True)
            if resp.status == 200:
                return PushResult(out.key, "created")
            again = self._order_doc(order_id)
            if again is not None and again.get("status") == "canceled":
                return PushResult(out.key, "exists")
            return _rejection(out.key, resp, self.oms, f"POST {base}/cancel")
        if kind == "invoiced":
            body = invoice_body(out.payload, order)
            same = next((p for p in _packages(order) if p.get("invoiceNumber") == body["invoiceNumber"]), None)
            if same is not None and same.get("invoiceKey") not in (None, body["invoiceKey"]):
                # InvoiceNotification: "Every time this endpoint is called using the same invoiceNumber, [...] you
                # cannot change other information, only the receipt code": sending it would change nothing
                return PushResult(out.key, "rejected", reason_code="not_correctable", reason=(
                    f"VTEX keeps invoice {body['invoiceNumber']} with the NF-e key first sent (the same invoice "
                    "number again changes only its receipt); correct the key in the VTEX admin, or issue the "
                    "corrected NF-e under a new number"))
            if same is not None:
                return PushResult(out.key, "exists")
            # a new number (first invoice, or a corrected NF-e re-issued under a new number, which VTEX adds as the
            # order's latest invoice: tracking and delivery go on it)
            resp = self.oms.post(f"{base}/invoice", json=body, idempotent=True)  # same number: same invoice
            if resp.status == 200:
                return PushResult(out.key, "created")
            return _rejection(out.key, resp, self.oms, f"POST {base}/invoice")
        package = _invoice_package(order, out.payload.get("invoiceNumber"))
        if package is None:
            return PushResult(out.key, "rejected", reason_code="out_of_order",
                              reason=f"the order has no invoice yet to attach the {kind} event to")
        number = quote(str(package["invoiceNumber"]), safe="")
        if kind == "shipped":
            if package.get("trackingNumber") == out.payload["trackingNumber"]:
                return PushResult(out.key, "exists")
            body = {k: out.payload[k] for k in ("trackingNumber", "trackingUrl", "dispatchedDate", "courier")}
            resp = self.oms.request("PATCH", f"{base}/invoice/{number}", json=body, idempotent=True)
        else:  # delivered
            if not package.get("trackingNumber"):
                return PushResult(out.key, "rejected", reason_code="out_of_order",
                                  reason="the invoice has no tracking number yet")
            if (package.get("courierStatus") or {}).get("finished"):
                return PushResult(out.key, "exists")
            body = {"isDelivered": True, "deliveredDate": out.payload["deliveredDate"], "events": []}
            resp = self.oms.put(f"{base}/invoice/{number}/tracking", json=body)
        if resp.status == 200:
            return PushResult(out.key, "created")
        return _rejection(out.key, resp, self.oms, f"{kind} on {base}")

    def _order_doc(self, order_id: str) -> dict[str, Any] | None:
        path = f"/api/oms/pvt/orders/{quote(order_id, safe='')}"
        resp = self.oms.get(path)
        if resp.status == 404:
            return None
        if resp.status != 200:
            raise _refused(self.oms, f"GET {path}", resp)
        body = _json(self.oms, resp, "the order")
        if not isinstance(body, dict):
            raise TransientError(f"{self.name}: GET {path}: the answer is not an order", code="bad_response")
        return body

    def lookup(self, entity: str, **keys: str) -> Any:
        """Nothing to look up: every write here is found by RefId or is safe to repeat."""
        return None


# -- helpers ---------------------------------------------------------------------------------------
def _lot_handles(items: Sequence[Any]) -> dict[str, dict[str, str]]:
    """orderId -> {eventId: handle} of one feed read (items without an order or a handle skipped)."""
    lot: dict[str, dict[str, str]] = {}
    for item in items:
        if isinstance(item, dict) and item.get("orderId") and item.get("handle"):
            lot.setdefault(str(item["orderId"]), {})[str(item.get("eventId") or item["handle"])] = str(item["handle"])
    return lot


def _as_int(value: Any, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise PermanentError(f"{name}: {value!r} is not a VTEX id (an integer)", code="bad_config") from None


def _required(value: Any, name: str) -> str:
    if value is None or not str(value).strip():
        raise MappingError("missing_field", f"{name} is required")
    return str(value)


def _measure(value: str | None, name: str) -> Decimal:
    """A positive dimension or weight: VTEX needs them for shipping and refuses 0."""
    if value is None or not str(value).strip():
        raise MappingError("missing_field", f"{name} is required by VTEX for shipping")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise MappingError("bad_value", f"{name}: {str(value)[:20]!r} is not a number") from None
    if not number.is_finite() or number <= 0:
        raise MappingError("bad_value", f"{name}: {value} must be greater than 0")
    return number


def _merged(existing: Mapping[str, Any], want: Mapping[str, Any], owned: Sequence[str]) -> dict[str, Any]:
    """A full-replace body: VTEX's document with the fields we own replaced (read-only ones dropped)."""
    body = {k: v for k, v in existing.items() if k not in ("Id", "CreationDate", "ListStoreId")}
    body.update({k: want[k] for k in owned if k in want})
    return body


def _json(client: HttpClient, resp: HttpResponse, what: str) -> Any:
    try:
        return resp.json()
    except TransientError as exc:
        raise TransientError(client.redact(f"{client.name}: {what}: {exc}"), status=resp.status,
                             code="bad_response") from None


def _error_text(resp: HttpResponse) -> str:
    """VTEX answers errors as {"error": {code, message}}, as {"Message": ...} or as plain text."""
    code, message = resp.error_code(), resp.error_message()
    if code or message:
        return f"{code or resp.status}: {message or 'no message'}"
    text = resp.content[:300].decode("utf-8", "replace").strip().strip('"')
    return f"{resp.status}: {text or 'no message'}"


def _refused(client: HttpClient, what: str, resp: HttpResponse) -> Exception:
    """A whole call refused: a 4xx will not heal by retrying, anything else might."""
    text = client.redact(f"{client.name}: {what} answered {_error_text(resp)}")
    if 400 <= resp.status < 500:
        return PermanentError(text, status=resp.status, code=resp.error_code() or f"http_{resp.status}")
    return TransientError(text, status=resp.status, code=resp.error_code())


def _rejection(key: str, resp: HttpResponse, client: HttpClient, what: str) -> PushResult:
    """One record refused (4xx): quarantine it; anything else fails the step to be retried."""
    if not 400 <= resp.status < 500 or resp.status in (401, 403):
        raise _refused(client, what, resp)
    code = {404: "not_found", 409: "conflict", 423: "locked"}.get(resp.status) or resp.error_code() \
        or f"http_{resp.status}"
    return PushResult(key, "rejected", reason_code=code, reason=client.redact(f"{what}: {_error_text(resp)}"))


def _id_of(client: HttpClient, resp: HttpResponse, what: str) -> int:
    body = _json(client, resp, what)
    value = body.get("Id") if isinstance(body, dict) else None
    if not isinstance(value, int) or isinstance(value, bool):
        raise TransientError(f"{client.name}: {what} answered without the new Id", code="bad_response")
    return value


def _packages(order: Mapping[str, Any]) -> list[dict[str, Any]]:
    attachment = order.get("packageAttachment") or {}
    return [p for p in attachment.get("packages") or [] if isinstance(p, dict)]


def _invoice_package(order: Mapping[str, Any], number: str | None) -> dict[str, Any] | None:
    """The sale invoice an event belongs to: the one named, else the latest."""
    sales = [p for p in _packages(order) if p.get("type", "Output") == "Output" and p.get("invoiceNumber")]
    if number:
        sales = [p for p in sales if p.get("invoiceNumber") == number] or sales
    return sales[-1] if sales else None


def _cents(amount: Decimal) -> int:
    return int((amount * 100).quantize(Decimal(1)))


def _money(cents: Any, name: str) -> Decimal:
    if not isinstance(cents, int) or isinstance(cents, bool):
        raise MappingError("bad_money", f"{name}: expected an integer of cents, found {type(cents).__name__}")
    return (Decimal(cents) / 100).quantize(CENT)


# -- events ----------------------------------------------------------------------------------------
def event_out(event: OrderEvent) -> Outgoing:
    """What each event needs in VTEX: an NF-e for the invoice, carrier and tracking for the shipment."""
    payload: dict[str, Any] = {"type": event.type}
    if event.type == "invoiced":
        invoice = event.invoice
        if invoice is None or not invoice.number:
            raise MappingError("missing_field", "an invoiced event needs the NF-e number and its 44-digit key")
        if not (invoice.key.isdigit() and len(invoice.key) == NFE_KEY_DIGITS):
            raise MappingError("bad_invoice_key", f"NF-e key {invoice.key[:50]!r} does not have 44 digits")
        payload |= {"invoiceNumber": invoice.number, "invoiceKey": invoice.key,
                    "issuanceDate": time_str(invoice.issued_at or event.occurred_at),
                    "invoiceValue": _cents(invoice.total) if invoice.total is not None else None,
                    "invoiceUrl": invoice.xml_url}
    elif event.type == "shipped":
        shipment = event.shipment
        if shipment is None or not shipment.carrier or not shipment.tracking_code:
            raise MappingError("missing_field", "a shipped event needs the carrier and the tracking code")
        payload |= {"trackingNumber": shipment.tracking_code, "trackingUrl": shipment.tracking_url,
                    "courier": shipment.carrier,
                    "dispatchedDate": time_str(shipment.shipped_at or event.occurred_at),
                    "invoiceNumber": event.invoice.number if event.invoice else None}
    elif event.type == "delivered":
        moment = (event.delivered_at or event.occurred_at).astimezone(UTC)
        payload |= {"deliveredDate": moment.strftime("%Y-%m-%d %H:%M"),
                    "invoiceNumber": event.invoice.number if event.invoice else None}
    elif event.type != "cancelled":
        raise MappingError("bad_value", f"unknown event type {event.type!r}")
    return Outgoing(_required(event.id, "id"), payload, {"order_id": _required(event.remote_order_id, "order id")})


def invoice_body(payload: Mapping[str, Any], order: Mapping[str, Any]) -> dict[str, Any]:
    """InvoiceNotification: a sale invoice of every item, at the price the customer paid."""
    items = []
    for item in order.get("items") or []:
        if not isinstance(item, dict):
            continue
        price = item.get("sellingPrice", item.get("price"))
        items.append({"id": str(item.get("id")), "price": int(price or 0), "quantity": int(item.get("quantity") or 0),
                      "description": str(item.get("name") or "")})
    value = payload.get("invoiceValue")
    if value is None:
        value = order.get("value") or 0
    return {"type": "Output", "issuanceDate": payload["issuanceDate"], "invoiceNumber": payload["invoiceNumber"],
            "invoiceValue": str(int(value)), "invoiceKey": payload.get("invoiceKey"),
            "invoiceUrl": payload.get("invoiceUrl"), "courier": "", "trackingNumber": "", "trackingUrl": "",
            "dispatchedDate": None, "items": items}


# -- wire → model ----------------------------------------------------------------------------------
def parse_order(data: dict[str, Any], payment_map: Mapping[str, str] | None = None) -> Order:
    """A VTEX order (GetOrder) in the hub's terms; money comes in cents."""
    payment_map = payment_map or {}
    order_id = need(data, "orderId")
    entries = need(data, "items", list)
    if not entries:
        raise MappingError("missing_field", "items: an order needs at least one item")
    items = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise MappingError("bad_type", f"items[{i}]: expected an object")
        code = entry.get("refId")
        if not isinstance(code, str) or not code.strip():
            raise MappingError("missing_field", f"items[{i}].refId: the SKU has no reference code (our code)")
        quantity = need(entry, "quantity", int)
        if quantity < 1:
            raise MappingError("bad_quantity", f"items[{i}].quantity: {quantity} is not a quantity")
        price = _money(need(entry, "price", int), f"items[{i}].price")
        selling = _money(entry.get("sellingPrice", entry["price"]), f"items[{i}].sellingPrice")
        if price < 0 or selling < 0:  # never passed on to the back office as a sale
            raise MappingError("negative_price", f"items[{i}]: price {price} / sellingPrice {selling} is negative")
        discount = max(Decimal("0.00"), (price - selling) * quantity).quantize(CENT)
        items.append(OrderItem(code, quantity, price, discount))
    totals = {t.get("id"): t.get("value") for t in opt(data, "totals", list) or [] if isinstance(t, dict)}
    shipping = _money(totals.get("Shipping") or 0, "totals.Shipping")
    payments = []
    for transaction in (opt(data, "paymentData", dict) or {}).get("transactions") or []:
        for i, pay in enumerate((transaction or {}).get("payments") or []):
            if not isinstance(pay, dict):
                raise MappingError("bad_type", f"payments[{i}]: expected an object")
            method = payment_map.get(str(pay.get("paymentSystem"))) or payment_map.get(
                str(pay.get("paymentSystemName"))) or PAYMENT_GROUPS.get(str(pay.get("group")))
            if method is None:
                raise MappingError("unmapped_payment", f"payment {pay.get('paymentSystemName')!r} (system "
                                   f"{pay.get('paymentSystem')}, group {pay.get('group')}) is not in payment_map")
            payments.append(OrderPayment(method, _money(need(pay, "value", int), f"payments[{i}].value"),
                                         max(1, int(pay.get("installments") or 1))))
    profile = opt(data, "clientProfileData", dict) or {}
    document = _document(profile)
    return Order(
        remote_id=order_id, status=need(data, "status"), items=tuple(items),
        total=_money(need(data, "value", int), "value"), payments=tuple(payments), number=order_id,
        channel_customer_id=document, shipping=shipping,
        created_at=parse_time(data.get("creationDate"), "creationDate"), version=str(data.get("lastChange") or ""),
    )


def _document(profile: Mapping[str, Any]) -> str | None:
    """The buyer's CPF/CNPJ as typed at checkout, punctuation dropped (never other characters: the
    engine refuses a document that is not valid rather than binding some other number)."""
    raw = profile.get("corporateDocument") if profile.get("isCorporate") else profile.get("document")
    document = normalize_document(str(raw or "")) if isinstance(raw, (str, int)) else ""
    return document or None


def parse_customer(data: Mapping[str, Any]) -> ChannelCustomer | None:
    """The order's buyer, keyed by CPF/CNPJ so the engine binds it to the back office customer."""
    profile = data.get("clientProfileData")
    if not isinstance(profile, dict):
        return None
    document = _document(profile)
    if document is None:
        return None
    if profile.get("isCorporate") and profile.get("corporateName"):
        name = str(profile["corporateName"])
    else:
        name = " ".join(str(profile.get(k) or "").strip() for k in ("firstName", "lastName")).strip()
    shipping = data.get("shippingData") if isinstance(data.get("shippingData"), dict) else {}
    raw = shipping.get("address") if isinstance(shipping.get("address"), dict) else None
    address = None
    if raw:
        address = Address(street=raw.get("street"), number=raw.get("number"), complement=raw.get("complement") or None,
                          district=raw.get("neighborhood"), city=raw.get("city"), state=raw.get("state"),
                          zip=raw.get("postalCode"), country="BR" if raw.get("country") in (None, "BRA", "BR")
                          else str(raw.get("country")))
    return ChannelCustomer(remote_id=document, document=document, name=name or document,
                           email=profile.get("email"), phone=profile.get("phone"), address=address,
                           version=str(data.get("lastChange") or ""))


__all__ = ["VtexConnector", "WarehouseLevel", "api_roots", "event_out", "parse_order"]
