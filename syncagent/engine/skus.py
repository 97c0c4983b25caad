"""SKU DE/PARA: the channel's own SKUs for back office codes, and adopting a channel's listings."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from syncagent.engine.core import EngineCore, _Ctx, log
from syncagent.errors import ChannelError
from syncagent.mapping import record_from_json, record_to_json, renamed
from syncagent.model import BadRecord, Order, Product

ADOPT_CURSOR = "adopt:products"


class SkuMapping(EngineCore):
    """Renames records to the channel's SKUs on the way out, and order items back on the way in."""

    def _channel_skus(self, ctx: _Ctx, entity: str, records: Iterable[Any]) -> tuple[list[Any], dict[str, str]]:
        """Records renamed to the channel's SKU (one journal query per page; none without a map).

        Returns the records and {channel SKU: back office code} of those renamed. With
        `sku_mapping: required`, a record with no SKU becomes a bad record (quarantined until
        its SKU is imported, then sent by `_release_unmapped`).
        """
        records = list(records)
        mapped = self._has_sku_map(ctx)
        required = ctx.setup.sku_mapping == "required"
        if not mapped and not required:
            return records, {}
        codes = [r.code for r in records if not isinstance(r, BadRecord)]
        skus = self.journal.channel_skus(ctx.name, codes) if mapped else {}
        out: list[Any] = []
        renames: dict[str, str] = {}
        for record in records:
            if isinstance(record, BadRecord):
                out.append(record)
                continue
            sku = skus.get(record.code)
            if sku is None:
                out.append(BadRecord(record.code, "unmapped_sku",
                                     f"no channel SKU is mapped for the back office code {record.code!r} "
                                     f"(sku_mapping: required); add it with `syncagent mapping import --channel "
                                     f"{ctx.name} FILE.csv`", record_to_json(entity, record))
                           if required else record)
                continue
            if sku != record.code:
                renames[sku] = record.code
            out.append(renamed(record, sku))
        return out, renames

    def _has_sku_map(self, ctx: _Ctx) -> bool:
        """Whether the channel has a DE/PARA map, asked of the journal once per step."""
        if ctx.sku_mapped is None:
            ctx.sku_mapped = self.journal.sku_map_size(ctx.name) > 0
        return ctx.sku_mapped

    def _release_unmapped(self, ctx: _Ctx, entity: str) -> None:
        """Records quarantined for want of a SKU go out as soon as their SKU is mapped."""
        rows = [r for r in self.journal.quarantined(ctx.name, entity) if r.reason_code == "unmapped_sku"]
        if not rows:
            return
        mapped = self.journal.channel_skus(ctx.name, [r.key for r in rows])
        records = []
        for row in rows:
            payload = row.payload if isinstance(row.payload, dict) else {}
            record = record_from_json(payload.get("source")) if row.key in mapped else None
            if record is not None:
                records.append(record)
        if records:
            log.info("%s/%s: %d record(s) whose SKU is now mapped leave the quarantine", ctx.name, entity,
                     len(records))
            ctx.result.read += len(records)
            self._push_records(ctx, entity, records, None, None)

    def _adopt(self, ctx: _Ctx) -> None:
        """Once, before the first products push: bind the channel's existing listings by SKU or EAN.

        A channel taken over from another integrator already lists the products; creating them
        again under the back office codes would list each twice. A listing whose SKU is a back
        office code is bound to it; one whose EAN is a product's barcode maps that code to its SKU.
        """
        if self.journal.cursor(ctx.name, ADOPT_CURSOR) is not None:
            return
        if "products" not in ctx.conn.capabilities.listing:
            raise ChannelError(f"{ctx.name}: adopt: a {ctx.conn.type_name} channel cannot list its products; "
                               "import a DE/PARA CSV with `syncagent mapping import` instead", code="bad_config")
        skus: set[str] = set()
        by_barcode: dict[str, str] = {}
        for page in ctx.conn.listing("products"):
            for item in page:
                skus.add(item.key)
                if item.barcode:
                    by_barcode.setdefault(item.barcode, item.key)
        known = {code for code, *_ in self.journal.sku_map(ctx.name)}
        by_sku: list[str] = []  # a listing under the back office code itself wins over an EAN match
        by_ean: dict[str, str] = {}  # channel SKU → back office code
        for page in self.backoffice.pull("products", None):
            for record in page.records:
                if not isinstance(record, Product) or record.code in known:
                    continue
                if record.code in skus:
                    by_sku.append(record.code)
                elif record.barcode and (sku := by_barcode.get(record.barcode)) is not None:
                    by_ean.setdefault(sku, record.code)
        identity = set(by_sku)
        pairs = [(code, code) for code in by_sku]
        pairs += [(code, sku) for sku, code in by_ean.items() if sku not in identity]
        with self.journal.transaction():
            self.journal.set_sku_map(ctx.name, pairs, "adopt")
            self.journal.save_cursor(ctx.name, ADOPT_CURSOR, "done")
        ctx.sku_mapped = None
        log.info("%s: adopted %d existing listing(s): %d by SKU, %d by EAN; %d listing(s) matched no product",
                 ctx.name, len(pairs), len(by_sku), len(pairs) - len(by_sku), len(skus) - len(pairs))
        ctx.result.details["adopted"] = len(pairs)

    def _backoffice_skus(self, ctx: _Ctx, order: Order) -> Order:
        """Order items name the channel's SKUs; the back office wants its own codes (DE/PARA)."""
        if not self._has_sku_map(ctx):
            return order
        codes = self.journal.backoffice_codes(ctx.name, [item.code for item in order.items])
        if not codes:
            return order
        return replace(order, items=tuple(replace(i, code=codes.get(i.code, i.code)) for i in order.items))

    def _backoffice_codes(self, ctx: _Ctx, records: Iterable[Any]) -> list[Any]:
        """Records read from a channel (its SKUs) renamed to the back office codes of its DE/PARA map."""
        records = list(records)
        if not self._has_sku_map(ctx):
            return records
        codes = self.journal.backoffice_codes(ctx.name, [r.code for r in records if not isinstance(r, BadRecord)])
        return [r if isinstance(r, BadRecord) or r.code not in codes else renamed(r, codes[r.code]) for r in records]
