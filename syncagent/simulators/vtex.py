"""Simulator of a VTEX store: the Catalog, Pricing, Logistics and Orders API subset syncagent uses.

Every rule cites the operation of VTEX's official OpenAPI files it follows (../shared/contracts/vtex:
"VTEX - Catalog API.json", "VTEX - Pricing API.json", "VTEX - Logistics API.json", "VTEX - Orders
API.json"), by operationId or, where the spec gives none, by METHOD path. All four APIs are served at
the root, as if every API host were this one server.

As strict as the spec: the app key pair on every call (401 otherwise), the `Content-Type` and
`Accept` headers the spec declares required on every operation (400), the required fields of each
body, SKUs created inactive, the base price given as exactly two of basePrice/costPrice/markup.
The Orders Feed v3 is a queue per app key: an item read is invisible for the configured visibility
timeout and comes back with a new handle unless committed; items expire after the retention
period; committing is idempotent and ignores unknown handles. `POST /_admin/clock` moves the
simulator's clock so tests see items come back without waiting.
"""

from __future__ import annotations

import json
import random
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from syncagent.simulators import seeddata
from syncagent.simulators.common import HttpError, Request, Response, SimApp

DEMO_APP_KEY = "vtexappkey-demo-ABCDEF"
DEMO_APP_TOKEN = "demo-token"  # noqa: S105 - a simulator's demo credential, not a real secret
JSON_UTF8 = "application/json; charset=utf-8"
SKU_ID_BASE = 1_000  # VTEX ids of SKUs created here; orders of products never sent use 900000 + index
MEASUREMENT_UNITS = {"un", "kg", "g", "mg", "m", "m²", "m³", "cm", "cm²", "cm³", "mm", "mm²", "mm³", "oz", "lb",
                     "ft", "ft²", "ft³", "in", "in²", "in³"}
# VTEX payment systems of the seeded orders: (paymentSystem, name, group) -> the back office code they map to
PAYMENT_SYSTEMS = [("2", "Visa", "creditCard"), ("4", "Mastercard", "creditCard"), ("125", "Pix", "instantPayment"),
                   ("6", "Boleto Bancário", "bankInvoice"), ("44", "Maestro", "debitCard")]
WAREHOUSES = [(code.lower(), name) for code, name, _store in seeddata.WAREHOUSES]
TRACKING_DATE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS categories (id INTEGER PRIMARY KEY, name TEXT);
CREATE TABLE IF NOT EXISTS brands (id INTEGER PRIMARY KEY, name TEXT);
CREATE TABLE IF NOT EXISTS products (id INTEGER PRIMARY KEY, ref_id TEXT, data TEXT);
CREATE UNIQUE INDEX IF NOT EXISTS products_ref ON products (ref_id) WHERE ref_id IS NOT NULL AND ref_id != '';
CREATE TABLE IF NOT EXISTS skus (id INTEGER PRIMARY KEY, ref_id TEXT, product_id INTEGER, data TEXT);
CREATE UNIQUE INDEX IF NOT EXISTS skus_ref ON skus (ref_id) WHERE ref_id IS NOT NULL AND ref_id != '';
CREATE TABLE IF NOT EXISTS eans (sku_id INTEGER, ean TEXT, PRIMARY KEY (sku_id, ean));
CREATE TABLE IF NOT EXISTS prices (sku_id INTEGER PRIMARY KEY, data TEXT);
CREATE TABLE IF NOT EXISTS warehouses (id TEXT PRIMARY KEY, name TEXT, active INTEGER);
CREATE TABLE IF NOT EXISTS inventory (sku_id INTEGER, warehouse_id TEXT, quantity INTEGER, unlimited INTEGER,
    lead_time TEXT, updated REAL, PRIMARY KEY (sku_id, warehouse_id));
CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, seq INTEGER, data TEXT);
CREATE TABLE IF NOT EXISTS feed_config (app_key TEXT PRIMARY KEY, data TEXT);
CREATE TABLE IF NOT EXISTS feed (event_id TEXT PRIMARY KEY, app_key TEXT, order_id TEXT, domain TEXT, state TEXT,
    last_state TEXT, last_change TEXT, current_change TEXT, created REAL, visible_at REAL, handle TEXT,
    receives INTEGER);
CREATE TABLE IF NOT EXISTS commits (handle TEXT, order_id TEXT, event_id TEXT, at REAL);
"""


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _compact(doc: dict[str, Any]) -> dict[str, Any]:
    """A catalogue document as answered: fields without a value are left out, never sent as null."""
    return {k: v for k, v in doc.items() if v is not None}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _oms_error(status: int, message: str, code: str = "1") -> HttpError:
    """The Orders API error body: {"error": {"code", "message", "exception"}} (StartHandling 401/409)."""
    return HttpError(status, code, message, exception=None)


class VtexSim(SimApp):
    system = "vtex"
    lock_window = 0.0  # seconds an inventory row stays locked after an update; tests raise it to see 423

    def __init__(self, db_path: str, *, products: int, seed: int, log_bodies: bool, options: dict[str, str]) -> None:
        super().__init__(db_path, log_bodies=log_bodies)
        self.db.executescript(SCHEMA)
        self.products = products
        self.seed = seed
        self.account = options.get("account", "lojademo")
        self.app_key = options.get("app_key", DEMO_APP_KEY)
        self.app_token = options.get("app_token", DEMO_APP_TOKEN)
        # how an unknown RefId is answered by ProductbyRefId: "null" as VTEX does (its known issue
        # "GET Product by Refid Returning 'Null' when not Found"), or "404" as a spec-abiding server would
        self.refid_miss = options.get("refid_miss", "null")
        self.clock_offset = 0.0
        self.rng = random.Random(f"{seed}:vtex-admin")
        if self.meta("seeded") is None:
            self._seed(int(options.get("orders", "10")), options.get("feed_config", "1") == "1")
        self._routes()

    # -- clock and storage ------------------------------------------------------------------------
    def now(self) -> float:
        return time.time() + self.clock_offset

    def now_iso(self) -> str:
        return _iso(datetime.fromtimestamp(self.now(), UTC))

    def _seed(self, orders: int, feed_config: bool) -> None:
        self.db.execute("BEGIN")
        for i, (code, name, _parent) in enumerate(seeddata.GROUPS, start=1):
            self.db.execute("INSERT INTO categories VALUES (?, ?)", (i, f"{name} ({code})"))
        for i, name in enumerate(seeddata.BRANDS, start=1):
            self.db.execute("INSERT INTO brands VALUES (?, ?)", (2_000_000 + i, name))
        for wid, name in WAREHOUSES:
            self.db.execute("INSERT INTO warehouses VALUES (?, ?, 1)", (wid, name))
        if feed_config:
            self._save_feed_config(self.app_key, {
                "filter": {"type": "FromWorkflow", "status": ["ready-for-handling", "canceled"]},
                "queue": {"visibilityTimeoutInSeconds": 250, "MessageRetentionPeriodInSeconds": 345600}})
        for _ in range(orders):
            self._new_order({"status": "ready-for-handling"})
        self.db.execute("INSERT OR REPLACE INTO meta VALUES ('seeded', '1')")
        self.db.execute("COMMIT")

    # -- routes -----------------------------------------------------------------------------------
    def _routes(self) -> None:
        r = self.route
        # Catalog API
        r("GET", "/api/catalog_system/pvt/products/productgetbyrefid/{refId}", self.api(self.product_by_ref))
        r("POST", "/api/catalog/pvt/product", self.api(self.create_product))
        r("GET", "/api/catalog/pvt/product/{productId}", self.api(self.get_product))
        r("PUT", "/api/catalog/pvt/product/{productId}", self.api(self.update_product))
        r("GET", "/api/catalog_system/pvt/sku/stockkeepingunitidbyrefid/{refId}", self.api(self.sku_id_by_ref))
        r("GET", "/api/catalog/pvt/stockkeepingunit", self.api(self.sku_by_ref))
        r("POST", "/api/catalog/pvt/stockkeepingunit", self.api(self.create_sku))
        r("GET", "/api/catalog/pvt/stockkeepingunit/{skuId}", self.api(self.get_sku))
        r("PUT", "/api/catalog/pvt/stockkeepingunit/{skuId}", self.api(self.update_sku))
        r("GET", "/api/catalog/pvt/stockkeepingunit/{skuId}/ean", self.api(self.list_eans))
        r("POST", "/api/catalog/pvt/stockkeepingunit/{skuId}/ean/{ean}", self.api(self.add_ean))
        r("DELETE", "/api/catalog/pvt/stockkeepingunit/{skuId}/ean/{ean}", self.api(self.delete_ean))
        # Pricing API
        r("GET", "/pricing/prices/{itemId}", self.api(self.get_price))
        r("PUT", "/pricing/prices/{itemId}", self.api(self.put_price))
        r("GET", "/pricing/prices/{itemId}/fixed", self.api(self.get_fixed_prices))
        # Logistics API
        r("GET", "/api/logistics/pvt/configuration/warehouses", self.api(self.list_warehouses))
        r("GET", "/api/logistics/pvt/inventory/skus/{skuId}", self.api(self.inventory_by_sku))
        r("PUT", "/api/logistics/pvt/inventory/skus/{skuId}/warehouses/{warehouseId}", self.api(self.put_inventory))
        # Orders API
        r("GET", "/api/orders/feed/config", self.api(self.get_feed_config))
        r("POST", "/api/orders/feed/config", self.api(self.set_feed_config))
        r("GET", "/api/orders/feed", self.api(self.read_feed))
        r("POST", "/api/orders/feed", self.api(self.commit_feed))
        r("GET", "/api/oms/pvt/orders/{orderId}", self.api(self.get_order))
        r("POST", "/api/oms/pvt/orders/{orderId}/start-handling", self.api(self.start_handling))
        r("POST", "/api/oms/pvt/orders/{orderId}/invoice", self.api(self.invoice))
        r("PATCH", "/api/oms/pvt/orders/{orderId}/invoice/{invoiceNumber}", self.api(self.invoice_tracking))
        r("PUT", "/api/oms/pvt/orders/{orderId}/invoice/{invoiceNumber}/tracking", self.api(self.tracking_status))
        r("POST", "/api/oms/pvt/orders/{orderId}/cancel", self.api(self.cancel))
        # admin: tests and the demo
        r("POST", "/_admin/config", self.admin_config)
        r("POST", "/_admin/clock", self.admin_clock)
        r("POST", "/_admin/orders", self.admin_create_orders)
        r("GET", "/_admin/orders", self.admin_orders)
        r("GET", "/_admin/orders/{id}", self.admin_order)
        r("POST", "/_admin/orders/{id}/status", self.admin_order_status)
        r("GET", "/_admin/feed", self.admin_feed)
        r("GET", "/_admin/state", self.admin_state)

    def api(self, handler: Any) -> Any:
        """Security of every spec file (appKey + appToken) and its required Content-Type/Accept headers."""
        def wrapped(req: Request) -> Response:
            if req.header("x-vtex-api-appkey") != self.app_key or req.header("x-vtex-api-apptoken") != self.app_token:
                raise _oms_error(401, "Unauthorized: unknown X-VTEX-API-AppKey / X-VTEX-API-AppToken")
            missing = [h for h in ("content-type", "accept") if not req.header(h)]
            if missing:
                raise HttpError(400, "bad_request", f"required header(s) missing: {', '.join(missing)}")
            return handler(req)

        return wrapped

    def _body(self, req: Request, kind: type = dict) -> Any:
        body = req.json()
        if not isinstance(body, kind):
            raise HttpError(400, "bad_request", f"the body must be a JSON {'object' if kind is dict else 'array'}")
        return body

    @staticmethod
    def _int_param(req: Request, name: str) -> int:
        raw = req.params[name]
        if not raw.isdigit():
            raise HttpError(400, "bad_request", f"{name} must be an integer")
        return int(raw)

    # -- catalog: products ------------------------------------------------------------------------
    def _product(self, product_id: int) -> dict[str, Any] | None:
        row = self.db.execute("SELECT data FROM products WHERE id = ?", (product_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def product_by_ref(self, req: Request) -> Response:
        # ProductbyRefId (Catalog): the product whose RefId is given
        row = self.db.execute("SELECT data FROM products WHERE ref_id = ?", (req.params["refId"],)).fetchone()
        if row is None:
            if self.refid_miss == "404":
                raise HttpError(404, "not_found", "Product not found")
            return Response(200, raw=b"null")
        return Response(200, _compact(json.loads(row[0])))

    def _check_product(self, body: dict[str, Any], product_id: int | None) -> None:
        # POST /api/catalog/pvt/product and PUT /api/catalog/pvt/product/{productId}: Name required;
        # PUT also requires CategoryId and BrandId; ids must name an existing category / brand
        if not isinstance(body.get("Name"), str) or not body["Name"].strip():
            raise HttpError(400, "bad_request", "Name is required")
        lookups = {"CategoryId": "SELECT 1 FROM categories WHERE id = ?", "BrandId": "SELECT 1 FROM brands WHERE id = ?"}
        for name, sql in lookups.items():
            value = body.get(name)
            if value is None and product_id is None:
                continue
            if not _is_int(value):
                raise HttpError(400, "bad_request", f"{name} is required and must be an integer")
            if self.db.execute(sql, (value,)).fetchone() is None:
                raise HttpError(400, "bad_request", f"{name} {value} does not exist")
        ref = body.get("RefId")
        if ref:
            row = self.db.execute("SELECT id FROM products WHERE ref_id = ?", (ref,)).fetchone()
            if row is not None and row[0] != product_id:
                raise HttpError(409, "conflict", f"RefId {ref} is already used by product {row[0]}")

    def _product_doc(self, product_id: int, body: dict[str, Any]) -> dict[str, Any]:
        # PUT is a full replace: a field not sent is cleared and a boolean not sent turns false
        name = body["Name"]
        return {
            "Id": product_id, "Name": name, "DepartmentId": body.get("DepartmentId") or 1,
            "CategoryId": body.get("CategoryId"), "BrandId": body.get("BrandId"),
            "LinkId": body.get("LinkId") or re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-"),
            "RefId": body.get("RefId") or "", "IsVisible": bool(body.get("IsVisible")),
            "Description": body.get("Description") or "", "DescriptionShort": body.get("DescriptionShort") or "",
            "ReleaseDate": body.get("ReleaseDate") or self.now_iso()[:19], "KeyWords": body.get("KeyWords") or "",
            "Title": body.get("Title") or "", "IsActive": bool(body.get("IsActive")),
            "TaxCode": body.get("TaxCode") or "", "MetaTagDescription": body.get("MetaTagDescription") or "",
            "SupplierId": body.get("SupplierId"), "ShowWithoutStock": bool(body.get("ShowWithoutStock")),
            "AdWordsRemarketingCode": body.get("AdWordsRemarketingCode"),
            "LomadeeCampaignCode": body.get("LomadeeCampaignCode"), "Score": body.get("Score"),
        }

    def create_product(self, req: Request) -> Response:
        # POST /api/catalog/pvt/product (Catalog, no operationId): create; an integer Id may be given
        body = self._body(req)
        self._check_product(body, None)
        product_id = body.get("Id") if _is_int(body.get("Id")) else self.counter("product_id", 0)
        if self._product(product_id) is not None:
            raise HttpError(409, "conflict", f"product {product_id} already exists")
        doc = self._product_doc(product_id, body)
        self.db.execute("INSERT INTO products VALUES (?, ?, ?)", (product_id, doc["RefId"] or None, json.dumps(doc)))
        return Response(200, _compact(doc))

    def get_product(self, req: Request) -> Response:
        # GetProductbyid (Catalog)
        doc = self._product(self._int_param(req, "productId"))
        if doc is None:
            raise HttpError(404, "not_found", "Product not found")
        return Response(200, _compact(doc))

    def update_product(self, req: Request) -> Response:
        # PUT /api/catalog/pvt/product/{productId} (Catalog, no operationId): full replace
        product_id = self._int_param(req, "productId")
        if self._product(product_id) is None:
            raise HttpError(404, "not_found", "Product not found")
        body = self._body(req)
        self._check_product(body, product_id)
        doc = self._product_doc(product_id, body)
        self.db.execute("UPDATE products SET ref_id = ?, data = ? WHERE id = ?",
                        (doc["RefId"] or None, json.dumps(doc), product_id))
        return Response(200, _compact(doc))

    # -- catalog: SKUs ----------------------------------------------------------------------------
    def _sku(self, sku_id: int) -> dict[str, Any] | None:
        row = self.db.execute("SELECT data FROM skus WHERE id = ?", (sku_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def sku_id_by_ref(self, req: Request) -> Response:
        # SkuIdbyRefId (Catalog): the SKU id as a JSON string
        row = self.db.execute("SELECT id FROM skus WHERE ref_id = ?", (req.params["refId"],)).fetchone()
        if row is None:
            raise HttpError(404, "not_found", "Sku not found")
        return Response(200, str(row[0]))

    def sku_by_ref(self, req: Request) -> Response:
        # GET /api/catalog/pvt/stockkeepingunit?RefId= (Catalog, no operationId): RefId is required
        ref = req.arg("RefId")
        if not ref:
            raise HttpError(400, "bad_request", "RefId is required")
        row = self.db.execute("SELECT data FROM skus WHERE ref_id = ?", (ref,)).fetchone()
        if row is None:
            raise HttpError(404, "not_found", "Sku not found")
        return Response(200, _compact(json.loads(row[0])))

    def _check_sku(self, body: dict[str, Any], sku_id: int | None) -> None:
        # POST /api/catalog/pvt/stockkeepingunit: ProductId, Name, PackagedHeight/Length/Width/WeightKg
        # required; PUT /api/catalog/pvt/stockkeepingunit/{skuId} also requires IsActive
        required = ["ProductId", "Name", "PackagedHeight", "PackagedLength", "PackagedWidth", "PackagedWeightKg"]
        if sku_id is not None:
            required.append("IsActive")
        missing = [k for k in required if body.get(k) is None]
        if missing:
            raise HttpError(400, "bad_request", f"required: {', '.join(missing)}")
        if not _is_int(body["ProductId"]) or self._product(body["ProductId"]) is None:
            raise HttpError(400, "bad_request", f"ProductId {body['ProductId']} does not exist")
        if not _is_int(body["PackagedWeightKg"]) or body["PackagedWeightKg"] <= 0:
            raise HttpError(400, "bad_request", "PackagedWeightKg must be an integer above 0 (do not send 0)")
        for name in ("PackagedHeight", "PackagedLength", "PackagedWidth"):
            if not _is_number(body[name]) or body[name] <= 0:
                raise HttpError(400, "bad_request", f"{name} must be a number above 0")
        unit = body.get("MeasurementUnit")
        if unit is not None and unit not in MEASUREMENT_UNITS:
            raise HttpError(400, "bad_request", f"MeasurementUnit {unit!r} is not accepted")
        # the SKU `IsActive` of the POST: "During SKU creation, do not set this field as true or you
        # will receive a 400 Bad Request error"
        if sku_id is None and body.get("IsActive") is True:
            raise HttpError(400, "bad_request", "an SKU cannot be created active; activate it afterwards")
        ref = body.get("RefId")
        if ref is not None and (not isinstance(ref, str) or len(ref) > 50):
            raise HttpError(400, "bad_request", "RefId must be a string of at most 50 characters")
        if ref:
            row = self.db.execute("SELECT id FROM skus WHERE ref_id = ?", (ref,)).fetchone()
            if row is not None and row[0] != sku_id:
                raise HttpError(409, "conflict", f"RefId {ref} is already used by SKU {row[0]}")

    def _sku_doc(self, sku_id: int, body: dict[str, Any], created: str) -> dict[str, Any]:
        return {
            "Id": sku_id, "ProductId": body["ProductId"], "IsActive": bool(body.get("IsActive")),
            "ActivateIfPossible": bool(body.get("ActivateIfPossible")), "Name": body["Name"],
            "RefId": body.get("RefId") or "", "PackagedHeight": body["PackagedHeight"],
            "PackagedLength": body["PackagedLength"], "PackagedWidth": body["PackagedWidth"],
            "PackagedWeightKg": body["PackagedWeightKg"], "Height": body.get("Height"),
            "Length": body.get("Length"), "Width": body.get("Width"), "WeightKg": body.get("WeightKg"),
            "CubicWeight": body.get("CubicWeight") or 0.0, "IsKit": bool(body.get("IsKit")),
            "CreationDate": created, "RewardValue": body.get("RewardValue") or 0.0,
            "EstimatedDateArrival": body.get("EstimatedDateArrival"),
            "ManufacturerCode": body.get("ManufacturerCode") or "",
            "CommercialConditionId": body.get("CommercialConditionId") or 1,
            "MeasurementUnit": body.get("MeasurementUnit") or "un",
            "UnitMultiplier": body.get("UnitMultiplier") or 1.0, "ModalType": body.get("ModalType"),
            "KitItensSellApart": bool(body.get("KitItensSellApart")), "Videos": body.get("Videos") or [],
        }

    def create_sku(self, req: Request) -> Response:
        # POST /api/catalog/pvt/stockkeepingunit (Catalog, no operationId)
        body = self._body(req)
        self._check_sku(body, None)
        sku_id = body.get("Id") if _is_int(body.get("Id")) else self.counter("sku_id", SKU_ID_BASE)
        if self._sku(sku_id) is not None:
            raise HttpError(409, "conflict", f"SKU {sku_id} already exists")
        doc = self._sku_doc(sku_id, body, self.now_iso()[:19])
        self.db.execute("INSERT INTO skus VALUES (?, ?, ?, ?)",
                        (sku_id, doc["RefId"] or None, doc["ProductId"], json.dumps(doc)))
        return Response(200, _compact(doc))

    def get_sku(self, req: Request) -> Response:
        # Sku (Catalog): GET /api/catalog/pvt/stockkeepingunit/{skuId}
        doc = self._sku(self._int_param(req, "skuId"))
        if doc is None:
            raise HttpError(404, "not_found", "Sku not found")
        return Response(200, _compact(doc))

    def update_sku(self, req: Request) -> Response:
        # PUT /api/catalog/pvt/stockkeepingunit/{skuId} (Catalog, no operationId)
        sku_id = self._int_param(req, "skuId")
        old = self._sku(sku_id)
        if old is None:
            raise HttpError(404, "not_found", "Sku not found")
        body = self._body(req)
        self._check_sku(body, sku_id)
        doc = self._sku_doc(sku_id, body, old["CreationDate"])
        self.db.execute("UPDATE skus SET ref_id = ?, product_id = ?, data = ? WHERE id = ?",
                        (doc["RefId"] or None, doc["ProductId"], json.dumps(doc), sku_id))
        return Response(200, _compact(doc))

    def _existing_sku(self, req: Request) -> int:
        sku_id = self._int_param(req, "skuId")
        if self._sku(sku_id) is None:
            raise HttpError(404, "not_found", "Sku not found")
        return sku_id

    def list_eans(self, req: Request) -> Response:
        # GET /api/catalog/pvt/stockkeepingunit/{skuId}/ean (Catalog, no operationId): a list of strings
        sku_id = self._existing_sku(req)
        rows = self.db.execute("SELECT ean FROM eans WHERE sku_id = ? ORDER BY ean", (sku_id,))
        return Response(200, [r[0] for r in rows])

    def add_ean(self, req: Request) -> Response:
        # POST /api/catalog/pvt/stockkeepingunit/{skuId}/ean/{ean} (Catalog, no operationId); adding it again is a no-op
        sku_id = self._existing_sku(req)
        ean = req.params["ean"]
        if not ean.isdigit() or len(ean) > 14:
            raise HttpError(400, "bad_request", "EAN must be up to 14 digits")
        self.db.execute("INSERT OR IGNORE INTO eans VALUES (?, ?)", (sku_id, ean))
        return Response(200)

    def delete_ean(self, req: Request) -> Response:
        # DELETE /api/catalog/pvt/stockkeepingunit/{skuId}/ean/{ean} (Catalog, no operationId)
        sku_id = self._existing_sku(req)
        self.db.execute("DELETE FROM eans WHERE sku_id = ? AND ean = ?", (sku_id, req.params["ean"]))
        return Response(200)

    # -- pricing ----------------------------------------------------------------------------------
    def _price(self, sku_id: int) -> dict[str, Any] | None:
        row = self.db.execute("SELECT data FROM prices WHERE sku_id = ?", (sku_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def get_price(self, req: Request) -> Response:
        # GetPrice (Pricing): 404 while the SKU has no price
        sku_id = self._int_param(req, "itemId")
        price = self._price(sku_id)
        if price is None:
            raise HttpError(404, "not_found", f"no price for item {sku_id}")
        return Response(200, price)

    def get_fixed_prices(self, req: Request) -> Response:
        # GetFixedPrices (Pricing): every fixed price of the SKU, all trade policies
        sku_id = self._int_param(req, "itemId")
        price = self._price(sku_id)
        if price is None:
            raise HttpError(404, "not_found", f"no price for item {sku_id}")
        return Response(200, price["fixedPrices"], content_type=JSON_UTF8)

    def put_price(self, req: Request) -> Response:
        # CreateUpdatePriceOrFixedPrice (Pricing): exactly two of basePrice/costPrice/markup; replaces
        # every fixed price of the SKU ("any existing prices not included in the request body will be deleted")
        sku_id = self._int_param(req, "itemId")
        if self._sku(sku_id) is None:
            raise HttpError(404, "not_found", f"item {sku_id} is not in the catalog")
        body = self._body(req)
        given = [k for k in ("basePrice", "costPrice", "markup") if body.get(k) is not None]
        if len(given) != 2:
            raise HttpError(400, "bad_request", "provide exactly two of basePrice, costPrice and markup")
        for k in (*given, "listPrice"):
            if body.get(k) is not None and (not _is_number(body[k]) or body[k] < 0):
                raise HttpError(400, "bad_request", f"{k} must be a number >= 0")
        if body.get("markup") is not None and not _is_int(body["markup"]):
            raise HttpError(400, "bad_request", "markup must be an integer")
        fixed = body.get("fixedPrices") or []
        if not isinstance(fixed, list):
            raise HttpError(400, "bad_request", "fixedPrices must be an array")
        for i, f in enumerate(fixed):
            self._check_fixed(f, i)
        markup = body.get("markup")
        base = body.get("basePrice")
        cost = body.get("costPrice")
        if base is None:
            base = round(cost * (1 + markup / 100), 2)
        elif cost is None:
            cost = round(base / (1 + markup / 100), 2)
        else:
            markup = round((base / cost - 1) * 100) if cost else 0
        price = {"itemId": str(sku_id), "listPrice": body.get("listPrice"), "costPrice": cost, "markup": markup,
                 "basePrice": base, "fixedPrices": fixed}
        self.db.execute("INSERT OR REPLACE INTO prices VALUES (?, ?)", (sku_id, json.dumps(price)))
        return Response(200)

    @staticmethod
    def _check_fixed(f: Any, i: int) -> None:
        # fixedPrices[]: tradePolicyId, value, minQuantity required; dateRange needs from and to (RFC 3339)
        if not isinstance(f, dict):
            raise HttpError(400, "bad_request", f"fixedPrices[{i}] must be an object")
        if not isinstance(f.get("tradePolicyId"), str) or not _is_number(f.get("value")) \
                or not _is_int(f.get("minQuantity")) or f["minQuantity"] < 1:
            raise HttpError(400, "bad_request", f"fixedPrices[{i}]: tradePolicyId, value and minQuantity >= 1 "
                            "are required")
        dates = f.get("dateRange")
        if dates is not None:
            try:
                start = datetime.fromisoformat(dates["from"].replace("Z", "+00:00"))
                end = datetime.fromisoformat(dates["to"].replace("Z", "+00:00"))
            except (KeyError, TypeError, AttributeError, ValueError):
                raise HttpError(400, "bad_request", f"fixedPrices[{i}].dateRange needs from and to dates") from None
            if end <= start:
                raise HttpError(400, "bad_request", f"fixedPrices[{i}].dateRange ends before it starts")

    # -- logistics --------------------------------------------------------------------------------
    def list_warehouses(self, req: Request) -> Response:
        # AllWarehouses (Logistics)
        rows = self.db.execute("SELECT id, name, active FROM warehouses ORDER BY id")
        return Response(200, [{"id": w, "name": n, "warehouseDocks": [], "pickupPointIds": [], "priority": 0,
                               "isActive": bool(a)} for w, n, a in rows])

    def inventory_by_sku(self, req: Request) -> Response:
        # InventoryBySku (Logistics)
        sku_id = req.params["skuId"]
        rows = self.db.execute("SELECT i.warehouse_id, w.name, i.quantity, i.unlimited, i.lead_time FROM inventory i"
                               " JOIN warehouses w ON w.id = i.warehouse_id WHERE i.sku_id = ? ORDER BY 1",
                               (int(sku_id) if sku_id.isdigit() else -1,))
        return Response(200, {"skuId": sku_id, "balance": [
            {"warehouseId": w, "warehouseName": n, "totalQuantity": q, "reservedQuantity": 0,
             "hasUnlimitedQuantity": bool(u), "timeToRefill": None, "dateOfSupplyUtc": None, "leadTime": lt}
            for w, n, q, u, lt in rows]})

    def put_inventory(self, req: Request) -> Response:
        # UpdateInventoryBySkuandWarehouse (Logistics): quantity, unlimitedQuantity, leadTime required;
        # 200 `true`; 423 Locked when the same SKU and warehouse was updated within the last moments
        sku_id = self._int_param(req, "skuId")
        warehouse = req.params["warehouseId"]
        if self._sku(sku_id) is None:
            raise HttpError(400, "bad_request", f"SKU {sku_id} does not exist")
        if self.db.execute("SELECT 1 FROM warehouses WHERE id = ?", (warehouse,)).fetchone() is None:
            raise HttpError(400, "bad_request", f"warehouse {warehouse} does not exist")
        body = self._body(req)
        if not _is_int(body.get("quantity")) or body["quantity"] < 0:
            raise HttpError(400, "bad_request", "quantity must be an integer >= 0")
        if not isinstance(body.get("unlimitedQuantity"), bool):
            raise HttpError(400, "bad_request", "unlimitedQuantity must be a boolean")
        lead = body.get("leadTime")
        if not isinstance(lead, str) or not re.fullmatch(r"\d{1,3}\.\d{2}:\d{2}:\d{2}|\d{2}:\d{2}:\d{2}", lead):
            raise HttpError(400, "bad_request", "leadTime must be dd.hh:mm:ss")
        row = self.db.execute("SELECT updated FROM inventory WHERE sku_id = ? AND warehouse_id = ?",
                              (sku_id, warehouse)).fetchone()
        now = self.now()
        if row is not None and now - row[0] < self.lock_window:
            return Response(423, raw=f"Unable to acquire lock for key: {self.account}_item_logistics_{sku_id}_"
                            f"{warehouse}.".encode(), content_type="text/plain")
        self.db.execute("INSERT OR REPLACE INTO inventory VALUES (?, ?, ?, ?, ?, ?)",
                        (sku_id, warehouse, body["quantity"], int(body["unlimitedQuantity"]), lead, now))
        return Response(200, True)

    # -- orders: documents ------------------------------------------------------------------------
    def _order(self, order_id: str) -> dict[str, Any]:
        row = self.db.execute("SELECT data FROM orders WHERE id = ?", (order_id,)).fetchone()
        if row is None:
            raise _oms_error(404, f"Order {order_id} not found")
        return json.loads(row[0])  # type: ignore[no-any-return]

    def _save_order(self, order: dict[str, Any]) -> None:
        order["lastChange"] = self.now_iso()
        self.db.execute("UPDATE orders SET data = ? WHERE id = ?", (json.dumps(order, ensure_ascii=False),
                                                                   order["orderId"]))

    def _set_status(self, order: dict[str, Any], status: str) -> None:
        """A workflow change: saved, and queued in every feed whose filter takes the new status."""
        last = order["status"]
        order["status"], order["statusDescription"] = status, status.replace("-", " ").capitalize()
        self._save_order(order)
        self._enqueue(order, last)

    def _sku_for(self, index: int) -> tuple[str, str, str]:
        """(sku id, product id, ean) of product `index`: its catalogue ids once it was sent here."""
        code = seeddata.product_code(index)
        row = self.db.execute("SELECT id, product_id FROM skus WHERE ref_id = ?", (code,)).fetchone()
        if row is not None:
            return str(row[0]), str(row[1]), seeddata.ean13(index)
        return str(900_000 + index), str(800_000 + index), seeddata.ean13(index)

    def _new_order(self, fields: dict[str, Any]) -> dict[str, Any]:
        seq = self.counter("order_seq", 500_000)
        rng = random.Random(f"{self.seed}:vtex-order:{seq}")
        items = []
        for n in range(rng.randint(1, 3)):
            for _attempt in range(50):
                index = rng.randint(1, max(1, self.products))
                if seeddata.product(self.seed, index)["active"]:
                    break
            info = seeddata.product(self.seed, index)
            cents = int(Decimal(seeddata.price(self.seed, index)["list_price"]) * 100)
            selling = cents if rng.random() > 0.25 else cents * 90 // 100
            sku_id, product_id, ean = self._sku_for(index)
            quantity = rng.randint(1, 3)
            items.append({
                "uniqueId": uuid.UUID(int=rng.getrandbits(128)).hex.upper(), "id": sku_id, "productId": product_id,
                "ean": ean, "lockId": f"00-{seq}-01", "quantity": quantity, "seller": "1", "name": info["description"],
                "refId": info["code"], "price": cents, "listPrice": cents, "manualPrice": None,
                # GetOrder types priceTags as a list of strings (real VTEX sends objects): none are sent, the
                # discount shows in sellingPrice below price
                "priceTags": [],
                "imageUrl": "", "detailUrl": f"/{info['code'].lower()}/p", "components": [], "bundleItems": [],
                "params": [], "offerings": [], "sellerSku": sku_id, "priceValidUntil": None, "commission": 0,
                "tax": 0, "preSaleDate": None, "measurementUnit": "un", "unitMultiplier": 1,
                "sellingPrice": selling, "isGift": False, "shippingPrice": None, "rewardValue": 0,
                "freightCommission": 0, "priceDefinitions": {}, "taxCode": info["ncm"], "costPrice": cents // 2,
                "itemIndex": n,
            })
        items_total = sum(i["price"] * i["quantity"] for i in items)
        discounts = sum((i["sellingPrice"] - i["price"]) * i["quantity"] for i in items)
        shipping = rng.choice([0, 1500, 2390])
        value = items_total + discounts + shipping
        customers = seeddata.customer_count(self.products)
        person = seeddata.customer(self.seed, rng.randint(1, customers))
        if person["document"] and len(person["document"]) == 14:
            person = seeddata.customer(self.seed, 1 if rng.random() < 0.5 else 2)
        if rng.random() < 0.4:  # a buyer the back office does not know yet
            person = {**person, "document": seeddata.cpf(rng), "name": seeddata.person_name(rng),
                      "email": f"cliente{seq}@exemplo.com.br"}
        first, _, last = person["name"].partition(" ")
        address = person["address"]
        system, system_name, group = rng.choice(PAYMENT_SYSTEMS)
        created = datetime.fromtimestamp(self.now(), UTC) - timedelta(minutes=rng.randint(1, 120))
        order_id = f"{1_350_000_000_000 + seq}-01"
        order = {
            "orderId": order_id, "sequence": str(seq), "marketplaceOrderId": "", "marketplaceServicesEndpoint": "",
            "sellerOrderId": f"00-{order_id}", "origin": "Marketplace", "affiliateId": "", "salesChannel": "1",
            "merchantName": None, "status": "order-created", "workflowIsInError": False,
            "statusDescription": "Order created", "value": value, "creationDate": _iso(created),
            "lastChange": _iso(created), "orderGroup": str(1_350_000_000_000 + seq), "followUpEmail": "",
            "lastMessage": None, "hostname": self.account, "isCompleted": True, "roundingError": 0,
            "orderFormId": uuid.UUID(int=rng.getrandbits(128)).hex, "allowCancellation": True,
            "allowEdition": False, "isCheckedIn": False, "authorizedDate": _iso(created), "invoicedDate": None,
            "cancelReason": None, "checkedInPickupPointId": None,
            "totals": [{"id": "Items", "name": "Total dos Itens", "value": items_total},
                       {"id": "Discounts", "name": "Total dos Descontos", "value": discounts},
                       {"id": "Shipping", "name": "Total do Frete", "value": shipping},
                       {"id": "Tax", "name": "Total da Taxa", "value": 0}],
            "items": items,
            "clientProfileData": {
                "id": "clientProfileData", "email": person["email"] or f"cliente{seq}@exemplo.com.br",
                "firstName": first, "lastName": last, "documentType": "cpf", "document": person["document"],
                "phone": person["phone"] or "+5511999999999", "corporateName": None, "tradeName": None,
                "corporateDocument": None, "stateInscription": None, "corporatePhone": None, "isCorporate": False,
                "userProfileId": str(uuid.UUID(int=rng.getrandbits(128))), "userProfileVersion": None,
                "customerClass": None, "customerCode": None},
            "shippingData": {
                "id": "shippingData",
                "address": {"addressType": "residential", "receiverName": person["name"], "addressId": f"a{seq}",
                            "versionId": None, "entityId": None, "postalCode": address["zip"],
                            "city": address["city"], "state": address["state"], "country": "BRA",
                            "street": address["street"], "number": address["number"],
                            "neighborhood": address["district"], "complement": "", "reference": None,
                            "geoCoordinates": []},
                "logisticsInfo": [], "trackingHints": None, "selectedAddresses": [], "contactInformation": []},
            "paymentData": {"giftCards": [], "transactions": [{
                "isActive": True, "transactionId": uuid.UUID(int=rng.getrandbits(128)).hex.upper(),
                "merchantName": self.account.upper(), "payments": [{
                    "id": uuid.UUID(int=rng.getrandbits(128)).hex.upper(), "paymentSystem": system,
                    "paymentSystemName": system_name, "value": value,
                    "installments": rng.randint(1, 6) if group == "creditCard" else 1, "referenceValue": value,
                    "cardHolder": None, "cardNumber": None, "firstDigits": None, "lastDigits": None, "cvv2": None,
                    "expireMonth": None, "expireYear": None, "url": None, "giftCardId": None, "giftCardName": None,
                    "giftCardCaption": None, "redemptionCode": None, "group": group, "tid": "", "dueDate": None,
                    "connectorResponses": {}}]}]},
            "packageAttachment": {"packages": []},
            "sellers": [{"id": "1", "name": self.account, "logo": None, "fulfillmentEndpoint": ""}],
            "cancellationData": None, "marketingData": None, "giftRegistryData": None,
            "clientPreferencesData": {"locale": "pt-BR", "optinNewsLetter": False},
            "storePreferencesData": {"countryCode": "BRA", "currencyCode": "BRL", "currencyFormatInfo": {},
                                     "currencyLocale": 1046, "currencySymbol": "R$", "timeZone": "E. South America"
                                                                                                 " Standard Time"},
            "itemMetadata": {"Items": []}, "marketplaceItems": [], "authorizationPolicyData": [],
        }
        status = fields.pop("status", "ready-for-handling")
        order |= fields
        self.db.execute("INSERT INTO orders VALUES (?, ?, ?)", (order_id, seq, json.dumps(order, ensure_ascii=False)))
        self._set_status(order, status)
        return order

    # -- orders: Feed v3 --------------------------------------------------------------------------
    def _feed_config(self, app_key: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT data FROM feed_config WHERE app_key = ?", (app_key,)).fetchone()
        return json.loads(row[0]) if row else None

    def _save_feed_config(self, app_key: str, config: dict[str, Any]) -> None:
        self.db.execute("INSERT OR REPLACE INTO feed_config VALUES (?, ?)", (app_key, json.dumps(config)))

    def _enqueue(self, order: dict[str, Any], last_state: str) -> None:
        """A status change goes into each feed whose FromWorkflow filter lists the new status."""
        for app_key, text in self.db.execute("SELECT app_key, data FROM feed_config").fetchall():
            config = json.loads(text)
            wanted = config["filter"].get("status") or []
            if config["filter"]["type"] == "FromWorkflow" and order["status"] not in wanted:
                continue
            now = self.now()
            self.db.execute("INSERT INTO feed VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, 0)", (
                str(uuid.uuid4()), app_key, order["orderId"], "Marketplace", order["status"], last_state,
                order["lastChange"], order["lastChange"], now, now))

    def get_feed_config(self, req: Request) -> Response:
        # GetFeedConfiguration (Orders): the feed of the caller's app key; 404 when it has none
        config = self._feed_config(self.app_key)
        if config is None:
            raise _oms_error(404, "Feed configuration not found for this app key")
        waiting = self.db.execute("SELECT count(*), min(created) FROM feed WHERE app_key = ?", (self.app_key,))
        count, oldest = waiting.fetchone()
        return Response(200, {**config, "quantity": count,
                              "approximateAgeOfOldestMessageInSeconds": round(self.now() - oldest, 3) if oldest else 0})

    def set_feed_config(self, req: Request) -> Response:
        # FeedConfiguration (Orders): filter.type FromWorkflow (+ status[]) or FromOrders (+ expression);
        # queue.visibilityTimeoutInSeconds and queue.MessageRetentionPeriodInSeconds (max 1,209,600) required
        body = self._body(req)
        flt, queue = body.get("filter"), body.get("queue")
        if not isinstance(flt, dict) or flt.get("type") not in ("FromWorkflow", "FromOrders"):
            raise HttpError(400, "bad_request", "filter.type must be FromWorkflow or FromOrders")
        if flt["type"] == "FromWorkflow" and not (isinstance(flt.get("status"), list) and flt["status"]):
            raise HttpError(400, "bad_request", "a FromWorkflow filter needs a status list")
        if flt["type"] == "FromOrders" and not isinstance(flt.get("expression"), str):
            raise HttpError(400, "bad_request", "a FromOrders filter needs a JSONata expression")
        if not isinstance(queue, dict) or not _is_int(queue.get("visibilityTimeoutInSeconds")) \
                or not _is_int(queue.get("MessageRetentionPeriodInSeconds")):
            raise HttpError(400, "bad_request", "queue.visibilityTimeoutInSeconds and "
                            "queue.MessageRetentionPeriodInSeconds are required integers")
        if not 1 <= queue["MessageRetentionPeriodInSeconds"] <= 1_209_600:
            raise HttpError(400, "bad_request", "MessageRetentionPeriodInSeconds must be at most 1209600")
        self._save_feed_config(self.app_key, {"filter": flt, "queue": queue})
        return Response(200)

    def read_feed(self, req: Request) -> Response:
        # Getfeedorderstatus1 (Orders): up to `maxlot` (1..10) visible items; each item read becomes
        # invisible for the visibility timeout and gets a new handle; 404 without a feed configuration
        config = self._feed_config(self.app_key)
        if config is None:
            raise _oms_error(404, "Feed configuration not found for this app key")
        raw = req.arg("maxlot")
        if raw is None or not raw.isdigit() or not 1 <= int(raw) <= 10:
            raise HttpError(400, "bad_request", "maxlot must be an integer from 1 to 10")
        now = self.now()
        retention = config["queue"]["MessageRetentionPeriodInSeconds"]
        self.db.execute("DELETE FROM feed WHERE app_key = ? AND created < ?", (self.app_key, now - retention))
        rows = self.db.execute(
            "SELECT event_id, order_id, domain, state, last_state, last_change, current_change FROM feed"
            " WHERE app_key = ? AND visible_at <= ? ORDER BY created, rowid LIMIT ?",
            (self.app_key, now, int(raw))).fetchall()
        items = []
        hidden_until = now + config["queue"]["visibilityTimeoutInSeconds"]
        for event_id, order_id, domain, state, last_state, last_change, current_change in rows:
            handle = uuid.uuid4().hex + uuid.uuid4().hex
            self.db.execute("UPDATE feed SET visible_at = ?, handle = ?, receives = receives + 1 WHERE event_id = ?",
                            (hidden_until, handle, event_id))
            items.append({"eventId": event_id, "handle": handle, "domain": domain, "state": state,
                          "lastState": last_state, "orderId": order_id, "lastChange": last_change,
                          "currentChange": current_change})
        return Response(200, items)

    def commit_feed(self, req: Request) -> Response:
        # Commititemfeedorderstatus (Orders): `handles` required; a committed item never comes back;
        # an unknown or superseded handle is ignored, so committing twice is harmless
        body = self._body(req)
        handles = body.get("handles")
        if not isinstance(handles, list) or not all(isinstance(h, str) for h in handles):
            raise HttpError(400, "bad_request", "handles must be a list of strings")
        for handle in handles:
            row = self.db.execute("SELECT order_id, event_id FROM feed WHERE app_key = ? AND handle = ?",
                                  (self.app_key, handle)).fetchone()
            if row is not None:
                self.db.execute("DELETE FROM feed WHERE event_id = ?", (row[1],))
            self.db.execute("INSERT INTO commits VALUES (?, ?, ?, ?)",
                            (handle, row[0] if row else None, row[1] if row else None, time.time()))
        return Response(200)

    # -- orders: workflow -------------------------------------------------------------------------
    def get_order(self, req: Request) -> Response:
        # GetOrder (Orders)
        return Response(200, self._order(req.params["orderId"]))

    def start_handling(self, req: Request) -> Response:
        # StartHandling (Orders): ready-for-handling -> handling, 204; any other status is a 409
        order = self._order(req.params["orderId"])
        if order["status"] != "ready-for-handling":
            raise _oms_error(409, f"Order {order['orderId']} is {order['status']}; it must be ready-for-handling "
                             "to start handling", code="OMS003")
        self._set_status(order, "handling")
        return Response(204)

    def _receipt(self, order_id: str) -> dict[str, Any]:
        return {"date": self.now_iso(), "orderId": order_id, "receipt": uuid.uuid4().hex}

    def invoice(self, req: Request) -> Response:
        # InvoiceNotification (Orders): type, issuanceDate, invoiceNumber, invoiceValue (cents as a
        # string, > 0), items[] required; the same invoiceNumber again only regenerates the receipt;
        # when the sale invoices cover the order's value the order becomes `invoiced`
        order = self._order(req.params["orderId"])
        body = self._body(req)
        if body.get("type") not in ("Output", "Input"):
            raise HttpError(400, "bad_request", "type must be Output or Input")
        for name in ("issuanceDate", "invoiceNumber", "invoiceValue"):
            if not isinstance(body.get(name), str) or not body[name].strip():
                raise HttpError(400, "bad_request", f"{name} is required")
        if not body["invoiceValue"].isdigit() or int(body["invoiceValue"]) <= 0:
            raise HttpError(400, "bad_request", "invoiceValue is in cents, greater than 0, with no separator")
        items = body.get("items")
        if not isinstance(items, list) or not items or not all(
                isinstance(i, dict) and isinstance(i.get("id"), str) and _is_int(i.get("price"))
                and _is_int(i.get("quantity")) for i in items):
            raise HttpError(400, "bad_request", "items[] with id, price and quantity is required")
        if order["status"] in ("canceled", "cancellation-requested"):
            raise _oms_error(409, f"Order {order['orderId']} is {order['status']} and cannot be invoiced")
        packages = order["packageAttachment"]["packages"]
        package = next((p for p in packages if p["invoiceNumber"] == body["invoiceNumber"]), None)
        if package is not None:
            # "Every time this endpoint is called using the same invoiceNumber, a new receipt code is generated
            # [...] you cannot change other information, only the receipt code" (InvoiceNotification)
            return Response(200, self._receipt(order["orderId"]))
        package = {"items": [], "courier": None, "invoiceNumber": body["invoiceNumber"], "invoiceValue": 0,
                   "invoiceUrl": None, "issuanceDate": "", "trackingNumber": None, "invoiceKey": None,
                   "trackingUrl": None, "embeddedInvoice": "", "type": body["type"], "courierStatus": None,
                   "cfop": None, "restitutions": {}, "volumes": 1, "EnableInferItems": None}
        packages.append(package)
        index = {i["id"]: n for n, i in enumerate(order["items"])}
        package.update({
            "items": [{"itemIndex": index.get(i["id"], 0), "quantity": i["quantity"], "price": i["price"],
                       "description": i.get("description"), "unitMultiplier": 1.0} for i in items],
            "invoiceValue": int(body["invoiceValue"]), "issuanceDate": body["issuanceDate"],
            "invoiceKey": body.get("invoiceKey"), "invoiceUrl": body.get("invoiceUrl"),
            "embeddedInvoice": body.get("embeddedInvoice") or "", "courier": body.get("courier") or None,
            "trackingNumber": body.get("trackingNumber") or package["trackingNumber"],
            "trackingUrl": body.get("trackingUrl") or package["trackingUrl"]})
        invoiced = sum(p["invoiceValue"] for p in packages if p["type"] == "Output")
        if body["type"] == "Output" and invoiced >= order["value"] and order["status"] != "invoiced":
            order["invoicedDate"] = self.now_iso()
            self._set_status(order, "invoiced")
        else:
            self._save_order(order)
        return Response(200, self._receipt(order["orderId"]))

    def _package(self, order: dict[str, Any], number: str) -> dict[str, Any]:
        package = next((p for p in order["packageAttachment"]["packages"] if p["invoiceNumber"] == number), None)
        if package is None:
            raise _oms_error(404, f"Invoice {number} not found in order {order['orderId']}")
        return package  # type: ignore[no-any-return]

    def invoice_tracking(self, req: Request) -> Response:
        # Updatepartialinvoice.SendTrackingNumber (Orders): trackingNumber, trackingUrl, dispatchedDate,
        # courier all required (the last three may be null)
        order = self._order(req.params["orderId"])
        package = self._package(order, req.params["invoiceNumber"])
        body = self._body(req)
        if not isinstance(body.get("trackingNumber"), str) or not body["trackingNumber"]:
            raise HttpError(400, "bad_request", "trackingNumber is required")
        missing = [k for k in ("trackingUrl", "dispatchedDate", "courier") if k not in body]
        if missing:
            raise HttpError(400, "bad_request", f"required: {', '.join(missing)}")
        package.update({"trackingNumber": body["trackingNumber"], "trackingUrl": body["trackingUrl"],
                        "courier": body["courier"], "dispatchedDate": body["dispatchedDate"]})
        self._save_order(order)
        return Response(200, self._receipt(order["orderId"]))

    def tracking_status(self, req: Request) -> Response:
        # UpdateTrackingStatus (Orders): isDelivered, deliveredDate (`yyyy-mm-dd hh:mm`, may be null) and
        # events[] required; only for an invoice that already has a tracking number
        order = self._order(req.params["orderId"])
        package = self._package(order, req.params["invoiceNumber"])
        if not package.get("trackingNumber"):
            raise _oms_error(400, "the invoice has no tracking number: send it first (PATCH the invoice)")
        body = self._body(req)
        if not isinstance(body.get("isDelivered"), bool) or not isinstance(body.get("events"), list) \
                or "deliveredDate" not in body:
            raise HttpError(400, "bad_request", "isDelivered, deliveredDate and events are required")
        delivered = body["deliveredDate"]
        if delivered is not None and (not isinstance(delivered, str) or not TRACKING_DATE.match(delivered)):
            raise HttpError(400, "bad_request", "deliveredDate must be yyyy-mm-dd hh:mm")
        for event in body["events"]:
            if not isinstance(event, dict) or any(not isinstance(event.get(k), str)
                                                  for k in ("city", "state", "description", "date")):
                raise HttpError(400, "bad_request", "each event needs city, state, description and date")
        status = package.get("courierStatus") or {"status": None, "finished": False, "deliveredDate": "", "data": []}
        status["data"] = status["data"] + body["events"]
        if body["isDelivered"]:
            status.update({"status": "delivered", "finished": True, "deliveredDate": delivered or ""})
        package["courierStatus"] = status
        self._save_order(order)
        return Response(200, self._receipt(order["orderId"]), content_type=JSON_UTF8)

    def cancel(self, req: Request) -> Response:
        # CancelOrder (Orders): not for invoiced or partially invoiced orders (400); a canceled order
        # answers 409
        order = self._order(req.params["orderId"])
        body = req.json() if req.body else {}
        if not isinstance(body, dict) or (body.get("reason") is not None and not isinstance(body["reason"], str)):
            raise HttpError(400, "bad_request", "reason must be a string")
        if order["status"] == "canceled":
            raise _oms_error(409, f"Order {order['orderId']} is already canceled")
        if order["status"] == "invoiced" or order["packageAttachment"]["packages"]:
            raise _oms_error(400, f"Order {order['orderId']} is invoiced (or partially) and cannot be canceled")
        order["cancellationData"] = {"RequestedByUser": False, "RequestedBySystem": False,
                                     "RequestedBySellerNotification": True, "RequestedByPaymentNotification": False,
                                     "Reason": body.get("reason"), "CancellationDate": self.now_iso()}
        order["cancelReason"] = body.get("reason")
        self._set_status(order, "canceled")
        return Response(200, self._receipt(order["orderId"]))

    # -- admin ------------------------------------------------------------------------------------
    def _admin_body(self, req: Request) -> dict[str, Any]:
        try:
            body = json.loads(req.body or b"{}")
        except ValueError:
            raise HttpError(400, "invalid_json", "admin body is not JSON") from None
        if not isinstance(body, dict):
            raise HttpError(400, "validation_error", "admin body must be an object")
        return body

    def admin_config(self, req: Request) -> Response:
        body = self._admin_body(req)
        for name in ("app_key", "app_token", "refid_miss", "lock_window"):
            if name in body:
                setattr(self, name, body[name])
        if body.get("drop_feed_config"):
            self.db.execute("DELETE FROM feed_config")
        return Response(204)

    def admin_clock(self, req: Request) -> Response:
        self.clock_offset += float(self._admin_body(req).get("advance", 0))
        return Response(200, {"now": self.now_iso(), "offset": self.clock_offset})

    def admin_create_orders(self, req: Request) -> Response:
        """{"count": n, "status": "ready-for-handling", ...order fields}: new orders, queued in the feed."""
        body = self._admin_body(req)
        count = int(body.pop("count", 1))
        created = [self._new_order(dict(body)) for _ in range(count)]
        return Response(201, {"items": created})

    def admin_orders(self, req: Request) -> Response:
        rows = self.db.execute("SELECT data FROM orders ORDER BY seq").fetchall()
        return Response(200, {"items": [json.loads(r[0]) for r in rows]})

    def admin_order(self, req: Request) -> Response:
        return Response(200, self._order(req.params["id"]))

    def admin_order_status(self, req: Request) -> Response:
        order = self._order(req.params["id"])
        status = self._admin_body(req).get("status")
        if not isinstance(status, str) or not status:
            raise HttpError(400, "validation_error", "status is required")
        self._set_status(order, status)
        return Response(200, order)

    def admin_feed(self, req: Request) -> Response:
        rows = self.db.execute("SELECT event_id, order_id, state, last_state, handle, receives, visible_at, created"
                               " FROM feed ORDER BY created, rowid").fetchall()
        now = self.now()
        return Response(200, {
            "items": [{"eventId": e, "orderId": o, "state": s, "lastState": ls, "handle": h, "receives": n,
                       "visible": v <= now, "created": c} for e, o, s, ls, h, n, v, c in rows],
            "config": self._feed_config(self.app_key),
            "commits": [{"handle": h, "orderId": o, "eventId": e, "at": a} for h, o, e, a in self.db.execute(
                "SELECT handle, order_id, event_id, at FROM commits ORDER BY rowid")]})

    def admin_state(self, req: Request) -> Response:
        """Every stored catalogue object, for tests to compare with what was sent."""
        def rows(sql: str) -> list[Any]:
            return [json.loads(r[0]) for r in self.db.execute(sql)]

        inventory = [{"skuId": s, "warehouseId": w, "quantity": q, "unlimited": bool(u), "leadTime": lt}
                     for s, w, q, u, lt in self.db.execute(
                         "SELECT sku_id, warehouse_id, quantity, unlimited, lead_time FROM inventory ORDER BY 1, 2")]
        return Response(200, {
            "products": rows("SELECT data FROM products ORDER BY id"),
            "skus": rows("SELECT data FROM skus ORDER BY id"),
            "eans": [{"skuId": s, "ean": e} for s, e in self.db.execute("SELECT sku_id, ean FROM eans ORDER BY 1, 2")],
            "prices": rows("SELECT data FROM prices ORDER BY sku_id"),
            "inventory": inventory,
            "categories": [{"id": i, "name": n} for i, n in self.db.execute("SELECT id, name FROM categories")],
            "brands": [{"id": i, "name": n} for i, n in self.db.execute("SELECT id, name FROM brands")],
            "warehouses": [{"id": i, "name": n} for i, n, _ in self.db.execute("SELECT * FROM warehouses")],
        })


def build(db_path: str, *, products: int, seed: int, log_bodies: bool = True, **options: str) -> SimApp:
    return VtexSim(db_path, products=products, seed=seed, log_bodies=log_bodies, options=options)
