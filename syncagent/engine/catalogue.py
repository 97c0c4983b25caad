"""The catalogue flows whose payloads are more than one record: prices in force, stock summed."""

from __future__ import annotations

import json
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
    time_key,
)

# which warehouses' rows the journal holds all of, and the warehouses of a pass from the feed's start
STOCK_STATE = "stock:warehouses"
STOCK_FLUSH_CODES = 1000  # codes per page when the levels held back by such a pass are sent at its end
STOCK_HELD_MAX = 50_000  # codes held back remembered in memory; past that the end of the pass walks them all


class CatalogueFlows(EngineCore):
    """Prices (re-sent at their boundaries) and stock (the sum of the channel's warehouses)."""

    def _prices(self, ctx: _Ctx, full: bool) -> None:
        now = self.clock()
        due = self.journal.due_prices(ctx.name, time_key(now) or "")
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
            rows.append((price.code, time_key(nxt), price_to_json(price)))
        self.journal.set_price_boundaries(ctx.name, rows)

    def _stock(self, ctx: _Ctx, full: bool) -> None:
        """Stock per code: the sum of the channel's warehouses − reserved − safety stock, never < 0.

        A channel that holds stock per warehouse of its own declares `stock_locations()`
        ({its warehouse: back office warehouses}); it gets one level per (code, its warehouse).

        Only true sums are sent. The journal's balances stand for a warehouse once a pass from the
        feed's start read its rows to the end; until then (first sync, a journal lost, a warehouse
        added) a code is held back while a row of it in such a warehouse may still come on a later
        page, and the codes held back are sent once the pass reached the end of the feed.
        """
        groups, warehouses = stock_groups(ctx.conn, ctx.setup.warehouses)
        safety = ctx.setup.safety_stock
        unread, restart = self._stock_pass(ctx, warehouses, full)
        held: set[str] = set()  # codes left out by this run's pages, sent at the end of its pass
        overflow: list[bool] = []

        def transform(records: list[Any]) -> tuple[list[Any], Callable[[], None]]:
            rows = [r for r in records if isinstance(r, StockBalance) and r.warehouse in warehouses]
            others = [r for r in records if isinstance(r, BadRecord)]
            codes = list(dict.fromkeys(r.code for r in rows))
            merged = self.journal.balances(ctx.name, codes)
            for r in rows:
                merged[(r.code, r.warehouse)] = (r.available, r.reserved)
            levels: list[Any] = stock_levels(merged, codes, groups, ctx.setup.warehouses, safety, unread, held)
            if len(held) > STOCK_HELD_MAX:  # memory stays flat: the end of the pass looks at every code
                held.clear()
                overflow.append(True)
            updates = [(r.code, r.warehouse, r.available, r.reserved) for r in rows]
            return levels + others, lambda: self.journal.set_balances(ctx.name, updates)

        self._push_feed(ctx, "stock", full or restart, filters={"warehouses": list(warehouses)}, transform=transform)
        if unread and ctx.fed_to_end:  # a pass begun by an earlier run does not know what that run held back
            self._end_stock_pass(ctx, warehouses, groups, held if restart and not overflow else None)

    def _stock_pass(self, ctx: _Ctx, warehouses: tuple[str, ...], full: bool) -> tuple[frozenset[str], bool]:
        """The warehouses whose rows the journal does not hold all of yet, and whether a pass starts now."""
        wanted = sorted(warehouses)
        text = self.journal.cursor(ctx.name, STOCK_STATE)
        writes = not (ctx.plan_only or ctx.setup.shadow)
        if text is None:  # a journal of an earlier version that synced stock already holds its warehouses
            state = {"complete": wanted if self.journal.cursor_updated_at(ctx.name, "stock") else [], "pass": None}
        else:
            state = json.loads(text)
        unread = frozenset(wanted) - frozenset(state["complete"])
        if not unread:
            if writes and (text is None or state["complete"] != wanted):  # a warehouse dropped is unread again
                with self.journal.transaction():
                    self.journal.save_cursor(ctx.name, STOCK_STATE, json.dumps({"complete": wanted, "pass": None}))
            return unread, False
        if state["pass"] == wanted and not full:
            return unread, False  # a pass begun earlier goes on from its cursor
        if writes:
            with self.journal.transaction():
                self.journal.save_cursor(ctx.name, STOCK_STATE, json.dumps({"complete": state["complete"],
                                                                             "pass": wanted}))
                self.journal.save_cursor(ctx.name, "stock", None)
        return unread, True

    def _end_stock_pass(self, ctx: _Ctx, warehouses: tuple[str, ...], groups: Groups, held: set[str] | None) -> None:
        """The feed was read to its end: every sum is whole now; send the levels held back, then say so.

        `held`: the codes held back, when this run read the whole pass; else every code is looked at.
        """
        unchanged = ctx.result.unchanged  # the codes looked at again here were counted by the pass already
        pending = sorted(held) if held is not None else None
        after = ""
        with self.journal.replayable():  # like the pages of a push: lost to a power cut, sent again
            while codes := (pending[:STOCK_FLUSH_CODES] if pending is not None
                            else self.journal.balance_codes(ctx.name, after, STOCK_FLUSH_CODES)):
                after = codes[-1]
                if pending is not None:
                    pending = pending[STOCK_FLUSH_CODES:]
                levels = stock_levels(self.journal.balances(ctx.name, codes), codes, groups, ctx.setup.warehouses,
                                      ctx.setup.safety_stock)
                self._push_records(ctx, "stock", levels, None, None)
                if self.should_stop():
                    ctx.result.unchanged = unchanged
                    return  # the pass ends at the next run, which reads the feed's last page again
        ctx.result.unchanged = unchanged
        if not (ctx.plan_only or ctx.setup.shadow):
            with self.journal.transaction():
                self.journal.save_cursor(ctx.name, STOCK_STATE, json.dumps({"complete": sorted(warehouses),
                                                                             "pass": None}))


Groups = dict[str | None, tuple[str, ...]]


def stock_groups(sink: Connector, warehouses: tuple[str, ...]) -> tuple[Groups, tuple[str, ...]]:
    """The sink's stock locations ({its location: back office warehouses}; {None: ()} for one level per
    code, the sum of the channel's `warehouses`) and every warehouse to read."""
    locations: dict[str, tuple[str, ...]] = dict(sink.stock_locations())
    groups: Groups = {loc: tuple(whs) for loc, whs in locations.items()} if len(locations) > 1 else {None: ()}
    every = tuple(dict.fromkeys([*warehouses, *(w for whs in groups.values() for w in whs)]))
    return groups, every


def stock_levels(balances: Mapping[tuple[str, str], tuple[int, int]], codes: Iterable[str], groups: Groups,
                 warehouses: tuple[str, ...], safety: int, unread: frozenset[str] = frozenset(),
                 held: set[str] | None = None) -> list[StockLevel]:
    """One level per (code, location) whose sum is whole: its warehouses' available − reserved − safety, never < 0.

    `balances`: (code, warehouse) → (available, reserved). Used by the stock push and by reconcile.
    A sum missing a row of a warehouse in `unread` (not read to the end yet) is not known: it is
    left out (and its code added to `held`).
    """
    # one pass over the balances: per (code, location) total, instead of a scan of them all per code
    feeding = [(location, frozenset(sources or warehouses)) for location, sources in groups.items()]
    totals: dict[tuple[str, str | None], int] = {}
    for (c, w), (a, res) in balances.items():
        for location, whs in feeding:
            if w in whs:
                totals[(c, location)] = totals.get((c, location), 0) + a - res
    levels = []
    for code in codes:
        for location, whs in feeding:
            if unread and any((code, w) not in balances for w in whs & unread):
                if held is not None:
                    held.add(code)
                continue
            levels.append(StockLevel(code, max(0, totals.get((code, location), 0) - safety), location))
    return levels
