"""`reconcile`: does the channel hold what the back office says it should? Changes nothing.

The back office side is read from the start of its feed and prepared exactly as a push would
(DE/PARA SKUs, effective prices, stock summed over the channel's warehouses); the channel side
is its listing (Seller Up: GET /v1/{collection}). Both go through a throw-away SQLite file so
that memory stays flat at a million records. Only the fields the agent sends are compared; a
money string compares by value ("10.0" equals "10.00").
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from syncagent import entities
from syncagent.connectors.base import Connector
from syncagent.engine import Engine
from syncagent.engine.catalogue import stock_groups, stock_levels
from syncagent.errors import ChannelError
from syncagent.journal import rows_in
from syncagent.model import StockBalance

ENTITIES = entities.CATALOGUE


@dataclass
class Reconciliation:
    channel: str
    entity: str
    backoffice: int = 0  # records the channel should hold
    on_channel: int = 0  # records the channel holds
    unpreparable: int = 0  # back office records that cannot be sent (they are in quarantine on a push)
    missing: list[str] = field(default_factory=list)  # should be there, are not
    extra: list[str] = field(default_factory=list)  # are there, the back office does not have them
    differing: list[tuple[str, list[str]]] = field(default_factory=list)  # (key, fields that differ)
    counts: dict[str, int] = field(default_factory=lambda: {"missing": 0, "extra": 0, "differing": 0})

    @property
    def differs(self) -> bool:
        return any(self.counts.values())

    def as_json(self) -> dict[str, Any]:
        return {"channel": self.channel, "entity": self.entity, "backoffice": self.backoffice,
                "channel_count": self.on_channel, "unpreparable": self.unpreparable, "counts": dict(self.counts),
                "missing": self.missing, "extra": self.extra,
                "differing": [{"key": k, "fields": f} for k, f in self.differing], "differs": self.differs}


def reconcile(engine: Engine, channel: str, entity: str, *, show: int = 20) -> Reconciliation:
    """Compare; keep the first `show` keys of each kind of difference (counts are complete)."""
    if entity not in ENTITIES:
        raise ChannelError(f"reconcile compares the catalogue ({', '.join(ENTITIES)}), not {entity}")
    setup = engine.channels[channel]
    if entity not in setup.connector.capabilities.listing:
        raise ChannelError(f"a {setup.connector.type_name} channel cannot list what it holds; reconcile needs that")
    result = Reconciliation(channel, entity)
    with tempfile.TemporaryDirectory(prefix="syncagent-reconcile-") as tmp:
        db = sqlite3.connect(str(Path(tmp) / "reconcile.db"))
        try:
            db.execute("CREATE TABLE expected (key TEXT PRIMARY KEY, payload TEXT NOT NULL, seen INTEGER DEFAULT 0)")
            for page in _expected_pages(engine, channel, entity):
                prepared, bad = engine.prepare_for(channel, entity, page)
                result.unpreparable += bad
                db.executemany("INSERT OR REPLACE INTO expected (key, payload) VALUES (?, ?)",
                               [(out.key, json.dumps(out.payload, default=str)) for out in prepared])
            result.backoffice = db.execute("SELECT count(*) FROM expected").fetchone()[0]
            for items in setup.connector.listing(entity):
                result.on_channel += len(items)
                _compare_page(db, items, result, show)
            result.counts["missing"] = db.execute("SELECT count(*) FROM expected WHERE seen = 0").fetchone()[0]
            result.missing = [k for (k,) in db.execute(
                "SELECT key FROM expected WHERE seen = 0 ORDER BY key LIMIT ?", (show,))]
        finally:
            db.close()
    return result


def _compare_page(db: sqlite3.Connection, items: list[Any], result: Reconciliation, show: int) -> None:
    found: dict[str, str] = dict(rows_in(db, "SELECT key, payload FROM expected WHERE key IN ({})", (),
                                         [item.key for item in items]))
    db.executemany("UPDATE expected SET seen = 1 WHERE key = ?", [(k,) for k in found])
    for item in items:
        text = found.get(item.key)
        if text is None:
            result.counts["extra"] += 1
            if len(result.extra) < show:
                result.extra.append(item.key)
            continue
        fields = _differing_fields(json.loads(text), item.payload)
        if fields:
            result.counts["differing"] += 1
            if len(result.differing) < show:
                result.differing.append((item.key, fields))


def _differing_fields(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    return [name for name, value in expected.items() if not _same(value, actual.get(name))]


def _same(expected: Any, actual: Any) -> bool:
    if expected == actual:
        return True
    if isinstance(expected, str) and isinstance(actual, (str, int, float)) and not isinstance(actual, bool):
        try:
            return Decimal(expected) == Decimal(str(actual))
        except (InvalidOperation, ValueError):
            return False
    if isinstance(expected, int) and not isinstance(expected, bool) and isinstance(actual, str):
        return _same(actual, expected)
    return False


def _expected_pages(engine: Engine, channel: str, entity: str) -> Iterator[list[Any]]:
    """The back office records the channel should hold, in pages (stock: one level per code)."""
    if entity != "stock":
        for page in engine.backoffice.pull(entity, None):
            yield page.records
        return
    setup = engine.channels[channel]
    groups, warehouses = stock_groups(setup.connector, setup.warehouses)  # as the stock push sums them
    rows: dict[tuple[str, str], tuple[int, int]] = {}  # a row that changed while paging comes again: the last counts
    for page in engine.backoffice.pull("stock", None, {"warehouses": list(warehouses)}):
        for record in page.records:
            if isinstance(record, StockBalance) and record.warehouse in warehouses:
                rows[(record.code, record.warehouse)] = (record.available, record.reserved)
    codes = list(dict.fromkeys(code for code, _ in rows))
    levels = stock_levels(rows, codes, groups, setup.warehouses, setup.safety_stock)
    for start in range(0, len(levels), 1000):
        yield levels[start : start + 1000]


def changed_fields(connector: Connector, entity: str, plan: list[Any]) -> dict[str, list[str]]:
    """For `push --dry-run`: which fields each planned update changes, from the channel's listing.

    Empty when the channel cannot list what it holds (the dry run then shows the payload only).
    The listing is read only until every planned update has been found.
    """
    wanted = {w.key: w.payload for w in plan if w.action == "update"}
    if entity not in connector.capabilities.listing or not wanted or entity not in ENTITIES:
        return {}
    found: dict[str, list[str]] = {}
    for items in connector.listing(entity):
        for item in items:
            payload = wanted.get(item.key)
            if payload is not None:
                found[item.key] = _differing_fields(payload, item.payload)
        if len(found) == len(wanted):
            break
    return found
