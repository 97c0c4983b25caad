"""orjson on the hot paths must answer exactly as the stdlib json module would, or hand over to it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncagent import fastjson


def reference(payload: Any) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str).encode("utf-8", "surrogatepass")


@pytest.mark.parametrize("body", [
    b'{"n": 123456789012345678901234567890}',  # beyond 64 bits: orjson would make it a float
    b'{"n": -9223372036854775809}',
    b'{"n": 18446744073709551616}',
    b'{"s": "\\ud800"}',  # a lone surrogate: orjson refuses it
    b'{"n": NaN, "m": Infinity}',  # not JSON, but the stdlib reads it
    '{"s": "Café"}'.encode("utf-16"),  # the stdlib detects UTF-16
    b'{"n": 1e400}',
])
def test_bodies_orjson_reads_differently_are_read_as_the_stdlib_reads_them(body: bytes) -> None:
    got, want = fastjson.loads(body), json.loads(body)
    assert repr(got) == repr(want)
    assert [type(v) for v in got.values()] == [type(v) for v in want.values()]


def test_a_long_digit_run_inside_a_string_is_still_read_right() -> None:
    body = b'{"nfe_key": "35261112345678000190550010000012341000012345", "n": 7}'
    assert fastjson.loads(body) == {"nfe_key": "35261112345678000190550010000012341000012345", "n": 7}


@pytest.mark.parametrize("body", [b"{", b'{"a": }', b"\xff\xfe\x00", b'{"a": 1} x'])
def test_invalid_json_raises_the_stdlib_error(body: bytes) -> None:
    with pytest.raises(ValueError) as caught:
        fastjson.loads(body)
    with pytest.raises(ValueError) as expected:
        json.loads(body)
    assert str(caught.value) == str(expected.value)


@dataclass
class Thing:
    name: str


def test_canonical_bytes_match_the_stdlib_for_the_types_payloads_hold() -> None:
    payload = {"b": 1, "a": "Café ☕ 𝄞", "price": Decimal("10.00"), "when": datetime(2026, 11, 30, 12, tzinfo=UTC),
               "f": [129.9, 0.5, -3.25, 1.0], "big": 2**70, "z": {"y": None, "x": True}, "thing": Thing("x")}
    assert fastjson.canonical(payload) == reference(payload)
    assert fastjson.canonical({"bad": "\ud800"}) == reference({"bad": "\ud800"})
    assert fastjson.canonical({10: "a", 9: "b"}) == reference({10: "a", 9: "b"})


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text() | st.decimals(allow_nan=False, allow_infinity=False)
    | st.floats(min_value=-1e15, max_value=1e15, allow_nan=False).filter(lambda f: f == 0 or abs(f) >= 1e-4),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)


@given(st.dictionaries(st.text(max_size=8), json_values, max_size=6))
def test_canonical_and_round_trip(payload: dict[str, Any]) -> None:
    assert fastjson.canonical(payload) == reference(payload)
    plain = json.loads(json.dumps(payload, default=str))
    assert fastjson.loads(fastjson.dumps(plain)) == plain


def test_a_request_body_refuses_what_json_cannot_say() -> None:
    assert json.loads(fastjson.dumps({"name": "Café", "n": [1, 2]})) == {"name": "Café", "n": [1, 2]}
    with pytest.raises(TypeError):
        fastjson.dumps({"price": Decimal("1.00")})


# -- hostile bodies: too deep, too long a number, a key twice ---------------------------------------
def nest(depth: int, inner: bytes = b"1") -> bytes:
    return b'{"a":' * depth + inner + b"}" * depth


@pytest.mark.parametrize("depth", [1_100, 100_000])
def test_a_body_nested_past_the_parsers_reach_is_a_value_error_not_a_recursion_error(depth: int) -> None:
    with pytest.raises(ValueError, match="nested too deep"):
        fastjson.loads(b'{"items": [' + nest(depth) + b"]}")


def test_a_record_nested_deeper_than_the_agent_writes_is_marked_and_cut_and_its_neighbours_are_not() -> None:
    body = b'{"items": [{"code": "P1", "x": ' + nest(400) + b'}, {"code": "P2"}], "next_cursor": null}'
    value = fastjson.loads(body)
    bad, good = value["items"]
    assert fastjson.problem_of(bad)[0] == "too_deep" and fastjson.problem_of(good) is None
    assert not value.own and fastjson.canonical(value)  # cut, so it can be written (quarantine, fingerprint)


def test_an_integer_past_the_conversion_limit_marks_its_record_only() -> None:
    value = fastjson.loads(b'{"items": [{"code": "P1", "n": [-' + b"9" * 5000 + b']}, {"code": "P2", "n": 7}]}')
    bad, good = value["items"]
    code, reason = fastjson.problem_of(bad)
    assert code == "number_too_long" and "5000 digits" in reason and good == {"code": "P2", "n": 7}


wire_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text() | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)


@given(st.dictionaries(st.text(min_size=1, max_size=4), wire_values, min_size=1, max_size=5), st.data())
def test_a_key_given_twice_anywhere_is_found_and_bodies_without_one_read_as_the_stdlib_reads_them(
        record: dict[str, Any], data: st.DataObject) -> None:
    plain = json.dumps({"items": [record, {"k": 1}]}, separators=data.draw(st.sampled_from([(",", ":"), (", ", ": ")])),
                       ensure_ascii=data.draw(st.booleans())).encode()
    assert fastjson.problem_of(fastjson.loads(plain)) is None and fastjson.loads(plain) == json.loads(plain)
    key = data.draw(st.sampled_from(sorted(record)))
    twice = json.dumps({"items": [{"k": 1}, record]})[:-3].encode() + b", " + json.dumps(key).encode() + b": 0}]}"
    good, bad = fastjson.loads(twice)["items"]
    assert fastjson.problem_of(bad)[0] == "duplicate_key" and fastjson.problem_of(good) is None


def test_a_colon_escaped_in_a_string_cannot_hide_a_key_given_twice() -> None:
    body = b'{"items": [{"code": "P1", "note": "a\\u003ab", "code": "P2"}]}'
    assert fastjson.problem_of(fastjson.loads(body)["items"][0])[0] == "duplicate_key"


def test_the_page_objects_own_duplicate_is_told_apart_from_one_in_a_record() -> None:
    own = fastjson.loads(b'{"items": [{"a": 1}], "items": []}')
    inner = fastjson.loads(b'{"items": [{"a": 1, "a": 2}]}')
    assert own.own and fastjson.problem_of(own)[0] == "duplicate_key"
    assert not inner.own and inner["items"][0].own
