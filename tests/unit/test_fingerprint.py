"""The fingerprint is stored in every journal: its bytes must never change between versions."""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from syncagent.model import fingerprint


def reference(payload: Any) -> str:
    raw = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def test_known_values_do_not_change() -> None:
    payload = {"key": "P1", "name": "Café", "price": Decimal("10.00"), "tags": [1, None, True], "z": {"b": 1, "a": 2}}
    assert fingerprint(payload) == reference(payload)
    assert fingerprint({"a": 1, "b": 2}) == fingerprint({"b": 2, "a": 1})
    assert fingerprint({"key": "P1"}) == hashlib.sha256(b'{"key":"P1"}').hexdigest()
    assert fingerprint({"bad": "\ud800"}) == reference({"bad": "\ud800"})  # a lone surrogate does not crash


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text() | st.decimals(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)


@given(st.dictionaries(st.text(max_size=8), json_values, max_size=6))
def test_same_bytes_as_the_canonical_dump(payload: dict[str, Any]) -> None:
    assert fingerprint(payload) == reference(payload)
