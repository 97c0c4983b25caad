"""In-memory fakes of a back office and a channel, shared by the engine's unit tests.

They keep what the engine sent (`posts`, `pushed`) and can be told to fail (`fail_next_post`,
`commit_then_fail`, `fail_on_key`, `reject`, `slow_key`), so a test drives a scenario by data.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from syncagent.connectors.base import BaseConnector, Capabilities, Outgoing, PushResult
from syncagent.errors import MappingError, TransientError
from syncagent.model import Page, Product, money_str

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


class FakeBackoffice(BaseConnector):
    capabilities = Capabilities(max_batch=1000)
    name = "backoffice"

    def __init__(self) -> None:
        self.feeds: dict[str, list[Any]] = {}
        self.page_size = 2
        self.orders: dict[str, dict[str, Any]] = {}
        self.posts: list[dict[str, Any]] = []
        self.fail_next_post: Exception | None = None
        self.commit_then_fail = False
        self.cancelled: list[str] = []  # back office numbers of the orders cancelled

    def pull(self, entity: str, cursor: str | None, filters: Mapping[str, Any] | None = None) -> Iterator[Page]:
        records = self.feeds.get(entity, [])
        start = int(cursor or 0)
        while True:
            chunk = records[start : start + self.page_size]
            start += len(chunk)
            more = start < len(records)
            yield Page(chunk, str(start) if more else None)
            if not more:
                return

    def prepare(self, entity: str, record: Any) -> Outgoing:
        if entity == "orders":
            return Outgoing(record.order.remote_id, {"external_id": record.order.remote_id, "channel": record.channel,
                                                     "customer_code": record.customer_code})
        if entity == "order-cancels":
            return Outgoing(record["number"], dict(record))
        raise AssertionError(entity)

    def push(self, entity: str, batch: Sequence[Outgoing]) -> list[PushResult]:
        if entity == "order-cancels":
            self.cancelled.extend(out.key for out in batch)
            return [PushResult(out.key, "updated") for out in batch]
        assert entity == "orders"
        out = batch[0]
        if self.fail_next_post is not None:
            exc, self.fail_next_post = self.fail_next_post, None
            if self.commit_then_fail:
                self._create(out)
            raise exc
        number = self._create(out)
        return [PushResult(out.key, "created", remote_id=number)]

    def _create(self, out: Outgoing) -> str:
        number = str(1000 + len(self.posts))
        self.posts.append(out.payload)
        self.orders[number] = out.payload
        return number

    def lookup(self, entity: str, **keys: str) -> Any:
        for number, payload in self.orders.items():
            if payload["external_id"] == keys["external_id"]:
                return {"number": number, "status": "open"}
        return None

    def close(self) -> None:
        pass


class FakeChannel(BaseConnector):
    capabilities = Capabilities(max_batch=2, importable_statuses=("approved",), cancelled_statuses=("cancelled",))
    name = "loja"

    def __init__(self, clock: Any = lambda: NOW) -> None:
        self.clock = clock
        self.pushed: list[tuple[str, list[Outgoing]]] = []
        self.reject: set[str] = set()
        self.fail_on_key: str | None = None  # a batch holding this key fails (once)
        self.lock = threading.Lock()  # the engine sends pages from two threads at once
        self.slow_key: str | None = None  # the first batch holding this key waits a while before it is applied
        self.orders: list[Any] = []
        self.event_log: list[tuple[str, str]] = []

    def pull(self, entity: str, cursor: str | None, filters: Mapping[str, Any] | None = None) -> Iterator[Page]:
        assert entity == "orders"
        yield Page(list(self.orders), str(len(self.orders)) if self.orders else None)

    def prepare(self, entity: str, record: Any) -> Outgoing:
        if entity in ("order-acks", "customer-links"):
            return Outgoing(record.get("order_id") or record["remote_id"], dict(record))
        if entity == "order-events":
            return Outgoing(record.id, {"type": record.type}, {"order_id": record.remote_order_id})
        if entity == "prices":
            eff = record.effective(self.clock())
            return Outgoing(record.code, {"key": record.code, "price": money_str(eff.price),
                                          "promo": money_str(eff.promo_price) if eff.promo_price else None})
        if isinstance(record, Product) and not record.name:
            raise MappingError("missing_field", "name is required")
        data = asdict(record)
        return Outgoing(record.key, data)

    def push(self, entity: str, batch: Sequence[Outgoing]) -> list[PushResult]:
        if self.slow_key is not None and any(out.key == self.slow_key for out in batch):
            self.slow_key = None
            time.sleep(0.2)
        with self.lock:
            return self._push(entity, batch)

    def _push(self, entity: str, batch: Sequence[Outgoing]) -> list[PushResult]:
        if self.fail_on_key is not None and any(out.key == self.fail_on_key for out in batch):
            self.fail_on_key = None
            raise TransientError("channel down")
        self.pushed.append((entity, list(batch)))
        results = []
        for out in batch:
            if entity == "order-events":
                order = out.meta["order_id"]
                have = [t for o, t in self.event_log if o == order]
                need = {"invoiced": [], "shipped": ["invoiced"], "delivered": ["invoiced", "shipped"]}[out.payload["type"]]
                if any(n not in have for n in need):
                    results.append(PushResult(out.key, "rejected", reason_code="out_of_order", reason="earlier missing"))
                    continue
                self.event_log.append((order, out.payload["type"]))
            if out.key in self.reject:
                results.append(PushResult(out.key, "rejected", reason_code="invalid", reason="bad value (field)"))
            else:
                results.append(PushResult(out.key, "created"))
        return results

    def lookup(self, entity: str, **keys: str) -> Any:
        return None

    def close(self) -> None:
        pass
