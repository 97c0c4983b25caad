"""VTEX catalogue, prices and stock: the writes of a mixin of `VtexConnector`.

Products bind by ``RefId`` (our code) and are never created twice: look up first, create only when
absent, otherwise update by full replace on top of what VTEX holds (PUT clears what it is not sent,
so the VTEX-side fields we do not own are carried over). The Pricing PUT replaces every fixed price
of an SKU, so the fixed prices of other trade policies are read first and sent back untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import quote

from syncagent.connectors.base import Outgoing, PushResult
from syncagent.connectors.common import price_windows
from syncagent.connectors.vtex_wire import (
    MEASUREMENT_UNITS,
    id_of,
    json_of,
    measure,
    merged_body,
    refused,
    rejection,
    required,
)
from syncagent.errors import MappingError
from syncagent.http import HttpClient
from syncagent.model import Price, Product, time_str

LOCKED_RETRIES = 3  # 423 Locked: only the first of concurrent updates of one SKU and warehouse is kept
LOCKED_WAIT = 2.0
# fields of a product / SKU that the back office owns; the rest is left as VTEX holds it
PRODUCT_FIELDS = ("Name", "CategoryId", "BrandId", "RefId", "IsVisible", "IsActive", "Title", "TaxCode")
SKU_FIELDS = ("Name", "RefId", "IsActive", "ActivateIfPossible", "PackagedHeight", "PackagedLength",
              "PackagedWidth", "PackagedWeightKg", "Height", "Length", "Width", "WeightKg", "MeasurementUnit",
              "UnitMultiplier")


class VtexCatalog:
    """Catalogue, price and stock writes (a mixin of `VtexConnector`, which sets the clients and the options)."""

    catalog: HttpClient
    pricing: HttpClient
    logistics: HttpClient
    clock: Callable[[], datetime]
    _sleep: Callable[[float], None]
    sales_channel: str
    lead_time: str
    warehouse_id: str | None
    warehouse_map: dict[str, tuple[str, ...]]
    category_map: dict[str, int]
    brand_map: dict[str, int]
    category_id: Any
    brand_id: Any
    _sku_ids: dict[str, int]

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
        name = required(p.name, "name")
        product = {"Name": name, "CategoryId": int(category), "BrandId": int(brand), "RefId": p.code,
                   "IsVisible": True, "IsActive": p.active, "Title": name[:150], "TaxCode": p.ncm or ""}
        height, width, length = (measure(v, f) for v, f in ((p.height_cm, "height_cm"), (p.width_cm, "width_cm"),
                                                             (p.length_cm, "length_cm")))
        grams = int((measure(p.weight_kg, "weight_kg") * 1000).to_integral_value())
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
        fixed: list[dict[str, Any]] = []
        for start, end in price_windows(p, now):
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
        code = required(level.code, "code")
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
    # products
    def _push_product(self, out: Outgoing) -> PushResult:
        code = out.key
        want_product, want_sku, ean = out.payload["product"], out.payload["sku"], out.payload.get("ean")
        existing = self._product_by_ref(code)
        if existing is None:
            resp = self.catalog.post("/api/catalog/pvt/product", json=want_product, idempotent=False)
            if resp.status != 200:
                return rejection(code, resp, self.catalog, "POST /api/catalog/pvt/product")
            product_id = id_of(self.catalog, resp, "POST /api/catalog/pvt/product")
            status = "created"
        else:
            product_id = int(existing["Id"])
            merged = merged_body(existing, want_product, PRODUCT_FIELDS)
            status = "unchanged"
            if any(existing.get(k) != merged.get(k) for k in PRODUCT_FIELDS):
                what = f"PUT /api/catalog/pvt/product/{product_id}"
                resp = self.catalog.put(f"/api/catalog/pvt/product/{product_id}", json=merged)
                if resp.status != 200:
                    return rejection(code, resp, self.catalog, what)
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
            raise refused(self.catalog, what, resp)
        body = json_of(self.catalog, resp, "the product")
        if not isinstance(body, dict) or not body.get("Id"):
            return None
        return body

    def _upsert_sku(self, code: str, product_id: int, want: dict[str, Any]) -> tuple[Any, int]:
        what = f"GET /api/catalog/pvt/stockkeepingunit?RefId={code}"
        resp = self.catalog.get("/api/catalog/pvt/stockkeepingunit", params={"RefId": code})
        existing = None
        if resp.status == 200:
            body = json_of(self.catalog, resp, "the SKU")
            existing = body if isinstance(body, dict) and body.get("Id") else None
        elif resp.status != 404:
            raise refused(self.catalog, what, resp)
        if existing is None:
            # an SKU is created inactive (the API refuses IsActive true here); ActivateIfPossible turns it on
            body = {**want, "ProductId": product_id, "IsActive": False}
            resp = self.catalog.post("/api/catalog/pvt/stockkeepingunit", json=body, idempotent=False)
            if resp.status != 200:
                return rejection(code, resp, self.catalog, "POST /api/catalog/pvt/stockkeepingunit"), 0
            sku_id = id_of(self.catalog, resp, "POST /api/catalog/pvt/stockkeepingunit")
            self._sku_ids[code] = sku_id
            return "created", sku_id
        sku_id = int(existing["Id"])
        self._sku_ids[code] = sku_id
        merged = merged_body(existing, {**want, "ProductId": product_id}, (*SKU_FIELDS, "ProductId"))
        if all(existing.get(k) == merged.get(k) for k in (*SKU_FIELDS, "ProductId")):
            return "unchanged", sku_id
        what = f"PUT /api/catalog/pvt/stockkeepingunit/{sku_id}"
        resp = self.catalog.put(f"/api/catalog/pvt/stockkeepingunit/{sku_id}", json=merged)
        if resp.status != 200:
            return rejection(code, resp, self.catalog, what), sku_id
        return "updated", sku_id

    def _ensure_ean(self, code: str, sku_id: int, ean: str | None) -> PushResult | None:
        """The SKU's EAN is the product's barcode: add it, drop any other (all of them when it has none)."""
        path = f"/api/catalog/pvt/stockkeepingunit/{sku_id}/ean"
        resp = self.catalog.get(path)
        if resp.status != 200:
            raise refused(self.catalog, f"GET {path}", resp)
        current = [str(e) for e in (json_of(self.catalog, resp, "the EAN list") or [])]
        if ean and ean not in current:
            added = self.catalog.post(f"{path}/{quote(ean, safe='')}", idempotent=True)
            if added.status != 200:
                return rejection(code, added, self.catalog, f"POST {path}/{ean}")
        for old in current:
            if old != ean:
                gone = self.catalog.request("DELETE", f"{path}/{quote(old, safe='')}")
                if gone.status not in (200, 404):
                    raise refused(self.catalog, f"DELETE {path}/{old}", gone)
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
            raise refused(self.catalog, what, resp)
        body = json_of(self.catalog, resp, "the SKU id")
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
            fixed = json_of(self.pricing, resp, "the fixed prices")
            others = [f for f in fixed if isinstance(f, dict) and str(f.get("tradePolicyId")) != self.sales_channel] \
                if isinstance(fixed, list) else []
        elif resp.status != 404:
            raise refused(self.pricing, f"GET {path}/fixed", resp)
        body = {k: v for k, v in out.payload.items()}
        # PUT replaces every fixed price of the SKU: keep those of the other trade policies
        body["fixedPrices"] = [*others, *out.payload["fixedPrices"]]
        resp = self.pricing.put(path, json=body)
        if resp.status != 200:
            return rejection(code, resp, self.pricing, f"PUT {path}")
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
            return rejection(out.key, resp, self.logistics, f"PUT {path}")
        return PushResult(out.key, "updated", remote_id=str(sku_id))
