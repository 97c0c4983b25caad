"""VTEX: catalogue, prices and stock out; orders in through the Orders Feed v3; fulfilment news back.

Contracts: VTEX's own OpenAPI files in ../shared/contracts/vtex (Catalog, Pricing, Logistics and
Orders API). The four APIs live on two hosts: Catalog, Logistics and Orders on
``https://{account}.{environment}.com.br``, Pricing on ``https://api.vtex.com/{account}``. A
``base_url`` that is not the account's own host (a simulator, a proxy) is the root of all four;
``api_urls`` overrides the root of each API on its own.

The connector class and its declarations live here; the catalogue, price and stock writes in
``vtex_catalog.py``, the Orders Feed v3 and what goes back on an order in ``vtex_orders.py``, the
wire shapes in ``vtex_wire.py``. Why it is shaped like this:

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

import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

from syncagent.connectors.base import Capabilities, OptionSpec, Outgoing, PushResult
from syncagent.connectors.common import OPEN_FROM, OPEN_UNTIL, push_each
from syncagent.connectors.rest import AuthKind, Headers, RestConnector
from syncagent.connectors.vtex_catalog import VtexCatalog
from syncagent.connectors.vtex_orders import FEED_VISIBILITY, MAX_LOT, VtexOrders
from syncagent.connectors.vtex_wire import (
    MEASUREMENT_UNITS,
    as_int,
    event_out,
    json_of,
    parse_customer,
    parse_order,
    refused,
    required,
)
from syncagent.errors import PermanentError
from syncagent.http import HttpSettings
from syncagent.model import ChannelCustomer, utcnow

APIS = ("catalog", "pricing", "logistics", "orders")
PUSHES = ("products", "prices", "stock", "order-acks", "order-events", "customer-links")


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


class VtexConnector(VtexOrders, VtexCatalog, RestConnector):
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
        self.category_map = {str(k): as_int(v, f"category_map.{k}") for k, v in
                             (opts.get("category_map") or {}).items()}
        self.brand_map = {str(k): as_int(v, f"brand_map.{k}") for k, v in (opts.get("brand_map") or {}).items()}
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
            raise refused(self.logistics, "GET /api/logistics/pvt/configuration/warehouses", resp)
        body = json_of(self.logistics, resp, "the warehouse list")
        known = {str(w.get("id")) for w in body if isinstance(w, dict)} if isinstance(body, list) else set()
        wanted = set(self.warehouse_map) | ({self.warehouse_id} if self.warehouse_id else set())
        missing = sorted(wanted - known)
        if missing:
            raise PermanentError(f"{self.name}: VTEX has no warehouse {', '.join(missing)} (it has: "
                                 f"{', '.join(sorted(known)) or 'none'})", code="unknown_warehouse")

    def stock_locations(self) -> dict[str, tuple[str, ...]]:
        """VTEX warehouse -> back office warehouses whose stock it gets (for per-warehouse sums)."""
        return dict(self.warehouse_map)

    # -- writes ------------------------------------------------------------------------------------
    def prepare(self, entity: str, record: Any) -> Outgoing:
        """Map one model record (or an engine dict for acks and links) to what is sent to VTEX."""
        if entity == "products":
            return Outgoing(required(record.code, "code"), self.product_out(record))
        if entity == "prices":
            return Outgoing(required(record.code, "code"), self.price_out(record))
        if entity == "stock":
            return self.stock_out(record)
        if entity == "order-events":
            return event_out(record)
        if entity == "order-acks":
            number = required(str(record.get("backoffice_number") or ""), "backoffice_number")
            return Outgoing(required(record.get("order_id"), "order_id"), {"backoffice_number": number})
        if entity == "customer-links":
            return Outgoing(required(record.get("remote_id"), "remote_id"), {"code": str(record.get("code"))})
        raise ValueError(f"{self.name} cannot take {entity}")

    def push(self, entity: str, batch: Sequence[Outgoing]) -> list[PushResult]:
        """One record at a time (VTEX has no batch writes for these); one result per record."""
        handlers: dict[str, Callable[[Outgoing], PushResult]] = {
            "products": self._push_product, "prices": self._push_price, "stock": self._push_stock,
            "order-acks": self._push_ack, "order-events": self._push_event,
            "customer-links": lambda out: PushResult(out.key, "unchanged"),  # VTEX keeps no back office code
        }
        return push_each(self.name, entity, batch, handlers)

    def lookup(self, entity: str, **keys: str) -> Any:
        """Nothing to look up: every write here is found by RefId or is safe to repeat."""
        return None


__all__ = ["FEED_VISIBILITY", "MAX_LOT", "MEASUREMENT_UNITS", "OPEN_FROM", "OPEN_UNTIL", "VtexConnector",
           "WarehouseLevel", "api_roots", "event_out", "parse_customer", "parse_order"]
