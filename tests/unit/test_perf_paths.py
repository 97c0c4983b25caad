"""The fast paths of the feed parsers and the engine's read-ahead keep the slow paths' meaning."""

from __future__ import annotations

import json
from typing import Any

import pytest

from syncagent.connectors.common import parse_items
from syncagent.connectors.gestao_lojas import parse_product
from syncagent.errors import MappingError
from syncagent.model import BadRecord, Product

GOOD = {"code": "P1", "description": "Caneca", "active": True}


@pytest.mark.parametrize("raw", [
    json.dumps({"items": [dict(GOOD, brand="\udcff")]}, ensure_ascii=True).encode(),  # a \udcff escape
    b'{"items": [{"code": "P1", "description": "Caneca", "active": true, "brand": "\\uD800x"}]}',  # upper case
    b'{"items": [{"code": "P1", "description": "Caneca", "active": true, "brand": "\xed\xa0\x80"}]}',
])
def test_a_lone_surrogate_is_found_from_the_raw_body(raw: bytes) -> None:
    items = json.loads(raw)["items"]
    (record,) = parse_items(items, parse_product, "code", raw=raw)
    assert isinstance(record, BadRecord) and record.code == "invalid_text"


def test_a_utf16_body_and_no_body_fall_back_to_the_full_check() -> None:
    items = [dict(GOOD, brand="\udcff"), dict(GOOD, code="P2")]
    raw = json.dumps({"items": items}, ensure_ascii=False).encode("utf-16", "surrogatepass")
    for given in (raw, None):
        bad, good = parse_items(json.loads(raw)["items"], parse_product, "code", raw=given)
        assert isinstance(bad, BadRecord) and bad.code == "invalid_text" and isinstance(good, Product)


def test_a_clean_page_and_an_emoji_are_not_bad_text() -> None:
    items: list[Any] = [dict(GOOD, brand="Caf\u00e9 \U0001f600")]
    for raw in (json.dumps({"items": items}).encode(), json.dumps({"items": items}, ensure_ascii=False).encode()):
        (record,) = parse_items(json.loads(raw)["items"], parse_product, "code", raw=raw)
        assert isinstance(record, Product) and record.brand == "Caf\u00e9 \U0001f600"


def _outcome(parse: Any, item: dict[str, Any]) -> Any:
    try:
        return parse(item)
    except MappingError as exc:
        return ("error", exc.code, exc.reason)
    except (TypeError, ValueError, ArithmeticError) as exc:
        return ("error", type(exc).__name__, str(exc))


WELL_FORMED = {
    "products": {"code": "P1", "description": "Caneca", "active": True, "barcode": "789", "brand": "B",
                 "group_code": "G", "unit": "CX", "ncm": "1", "weight_kg": "0.5", "height_cm": "1",
                 "width_cm": "2", "length_cm": "3"},
    "prices": {"sku": "P1", "list_price": "10.00", "promo_price": "9.00", "promo_start": "2026-01-01T00:00:00Z",
               "promo_end": "2026-02-01T00:00:00Z", "scheduled": [], "price_list": "atacado"},
    "stock": {"sku": "P1", "warehouse": "LJ01", "available": 5, "reserved": 1},
    "customers": {"document": "12345678909", "name": "Ana", "code": "C1", "email": "a@b.c", "phone": "1",
                  "birth_date": "2000-01-01", "state_registration": "ISENTO", "address": {"city": "X"}},
}
ODD_VALUES = [None, "", "  ", "x", "1.5", 0, 7, -3, 10**13, True, False, 1.5, [], [{}], {}, {"a": 1}]


@pytest.mark.parametrize("entity", sorted(WELL_FORMED))
def test_the_fast_parsers_decide_exactly_like_the_checked_ones(entity: str) -> None:
    from syncagent.connectors import gestao_lojas as gl

    fast = gl.PARSERS[entity][0]
    checked = getattr(gl, f"_{fast.__name__}_checked")
    base = WELL_FORMED[entity]
    assert _outcome(fast, base) == _outcome(checked, base) and not isinstance(_outcome(fast, base), tuple)
    for name in list(base) + ["unknown"]:
        for value in ODD_VALUES:
            item = dict(base, **{name: value})
            assert _outcome(fast, item) == _outcome(checked, item), (name, value)
            del item[name]
            assert _outcome(fast, item) == _outcome(checked, item), (name, "absent")
