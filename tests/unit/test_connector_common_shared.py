"""The helpers several marketplaces share: one push loop, one set of price windows, one order-line check."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from syncagent.connectors.base import Outgoing, PushResult
from syncagent.connectors.common import (
    OPEN_FROM,
    OPEN_UNTIL,
    entry_code,
    entry_quantity,
    order_entries,
    price_windows,
    push_each,
)
from syncagent.errors import MappingError, PermanentError
from syncagent.model import Price, ScheduledPrice

NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)


def test_push_each_rejects_a_refused_record_and_goes_on() -> None:
    def handler(out: Outgoing) -> PushResult:
        if out.key == "B":
            raise PermanentError("no such SKU", status=404, code="not_found")
        if out.key == "C":
            raise PermanentError("bad", status=422)
        return PushResult(out.key, "updated")

    results = push_each("ch", "stock", [Outgoing("A", {}), Outgoing("B", {}), Outgoing("C", {})],
                        {"stock": handler})
    assert [(r.key, r.status, r.reason_code) for r in results] == [
        ("A", "updated", None), ("B", "rejected", "not_found"), ("C", "rejected", "http_422")]


@pytest.mark.parametrize("status", [401, 403])
def test_push_each_fails_the_step_on_a_missing_permission(status: int) -> None:
    def handler(out: Outgoing) -> PushResult:
        raise PermanentError("forbidden", status=status)

    with pytest.raises(PermanentError):
        push_each("ch", "stock", [Outgoing("A", {})], {"stock": handler})


def test_push_each_refuses_an_entity_it_has_no_handler_for() -> None:
    with pytest.raises(ValueError, match="ch cannot take prices"):
        push_each("ch", "prices", [], {})


def test_price_windows_skip_the_spans_already_over() -> None:
    start, end = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 20, tzinfo=UTC)
    change = datetime(2026, 4, 1, tzinfo=UTC)
    price = Price("P1", Decimal("10.00"), Decimal("8.00"), start, end,
                  (ScheduledPrice(Decimal("12.00"), change),))
    assert list(price_windows(price, NOW)) == [(start, end), (end, change), (change, OPEN_UNTIL)]
    assert list(price_windows(Price("P2", Decimal("10.00")), NOW)) == [(OPEN_FROM, OPEN_UNTIL)]


def test_order_entries_name_the_first_bad_line() -> None:
    lines: list[Any] = [{"sku": "", "qty": 1}, "not an object"]
    with pytest.raises(MappingError) as caught:
        for i, entry in order_entries({"items": lines}):
            entry_code(entry, f"items[{i}]", "sku", "the line has no SKU")
    assert (caught.value.code, caught.value.reason) == ("missing_field", "items[0].sku: the line has no SKU")
    with pytest.raises(MappingError, match="an order needs at least one item"):
        list(order_entries({"items": []}))
    with pytest.raises(MappingError, match=r"items\[0\]\.qty: 0 is not a quantity"):
        entry_quantity({"qty": 0}, "items[0]", "qty")
