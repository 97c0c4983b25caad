"""The catalogue flows whose payloads are more than one record: prices in force, stock summed."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from syncagent.connectors.base import Connector
from syncagent.engine.core import EngineCore, _Ctx
from syncagent.model import (
    BadRecord,
    Price,
    StockBalance,
    StockLevel,
    price_from_json,
    price_to_json,
    time_str,
)


class CatalogueFlows(EngineCore):
    """Prices (re-sent at their boundaries) and stock (the sum of the channel's warehouses)."""

    def _prices(self, ctx: _Ctx, full: bool) -> None:
        now = self.clock()
        due = self.journal.due_prices(ctx.name, time_str(now) or "")
        if due:
            records = [price_from_json(text) for _, text in due]
            ctx.result.read += len(records)
            mapped = self._push_records(ctx, "prices", records, None, None)
            if not ctx.plan_only:
                self._record_boundaries(ctx, [r for r, _ in mapped], now)

        def transform(records: list[Any]) -> tuple[list[Any], Callable[[], None]]:
            prices = [r for r in records if isinstance(r, Price)]
            return records, lambda: self._set_boundaries(ctx, prices, now)

        self._push_feed(ctx, "prices", full, transform=transform)

    def _record_boundaries(self, ctx: _Ctx, prices: list[Price], now: datetime) -> None:
        with self.journal.transaction():
            self._set_boundaries(ctx, prices, now)

    def _set_boundaries(self, ctx: _Ctx, prices: list[Price], now: datetime) -> None:
        rows = []
        for price in prices:
            nxt = price.next_boundary(now)
            rows.append((price.code, time_str(nxt), price_to_json(price)))
        self.journal.set_price_boundaries(ctx.name, rows)

    def _stock(self, ctx: _Ctx, full: bool) -> None:
        """Stock per code: the sum of the channel's warehouses − reserved − safety stock, never < 0.

        A channel that holds stock per warehouse of its own declares `stock_locations()`
        ({its warehouse: back office warehouses}); it gets one level per (code, its warehouse).
        """
        groups, warehouses = stock_groups(ctx.conn, ctx.setup.warehouses)
        safety = ctx.setup.safety_stock

        def transform(records: list[Any]) -> tuple[list[Any], Callable[[], None]]:
            rows = [r for r in records if isinstance(r, StockBalance) and r.warehouse in warehouses]
            others = [r for r in records if isinstance(r, BadRecord)]
            codes = list(dict.fromkeys(r.code for r in rows))
            merged = self.journal.balances(ctx.name, codes)
            for r in rows:
                merged[(r.code, r.warehouse)] = (r.available, r.reserved)
            levels: list[Any] = stock_levels(merged, codes, groups, ctx.setup.warehouses, safety)
            updates = [(r.code, r.warehouse, r.available, r.reserved) for r in rows]
            return levels + others, lambda: self.journal.set_balances(ctx.name, updates)

        self._push_feed(ctx, "stock", full, filters={"warehouses": list(warehouses)}, transform=transform)


Groups = dict[str | None, tuple[str, ...]]


def stock_groups(sink: Connector, warehouses: tuple[str, ...]) -> tuple[Groups, tuple[str, ...]]:
    """The sink's stock locations ({its location: back office warehouses}; {None: ()} for one level per
    code, the sum of the channel's `warehouses`) and every warehouse to read."""
    locations: dict[str, tuple[str, ...]] = dict(sink.stock_locations())
    groups: Groups = {loc: tuple(whs) for loc, whs in locations.items()} if len(locations) > 1 else {None: ()}
    every = tuple(dict.fromkeys([*warehouses, *(w for whs in groups.values() for w in whs)]))
    return groups, every


def stock_levels(balances: Mapping[tuple[str, str], tuple[int, int]], codes: Iterable[str], groups: Groups,
                 warehouses: tuple[str, ...], safety: int) -> list[StockLevel]:
    """One level per (code, location): the sum of its warehouses' available − reserved − safety, never < 0.

    `balances`: (code, warehouse) → (available, reserved). Used by the stock push and by reconcile.
    """
    # one pass over the balances: per (code, location) total, instead of a scan of them all per code
    feeding = [(location, frozenset(sources or warehouses)) for location, sources in groups.items()]
    totals: dict[tuple[str, str | None], int] = {}
    for (c, w), (a, res) in balances.items():
        for location, whs in feeding:
            if w in whs:
                totals[(c, location)] = totals.get((c, location), 0) + a - res
    return [StockLevel(code, max(0, totals.get((code, location), 0) - safety), location)
            for code in codes for location in groups]
