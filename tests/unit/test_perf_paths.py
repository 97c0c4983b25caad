"""The fast paths of the feed parsers and the engine's read-ahead keep the slow paths' meaning."""

from __future__ import annotations

import json
from typing import Any

import pytest

from syncagent.connectors.common import parse_items
from syncagent.connectors.gestao_lojas import parse_product
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
