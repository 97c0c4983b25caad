"""JSON on the hot paths (feed pages, batch bodies, fingerprints): orjson, and the stdlib wherever they differ.

orjson reads and writes JSON about 2-4x faster than the stdlib module, which was a quarter of a
push's CPU. Where the two would give different answers, the stdlib's is used, so nothing the
agent decides (a record's bad-record reason, a fingerprint already in a journal) changes:

- reading: orjson turns integers beyond 64 bits into floats, so a body holding a run of 19 or more
  digits is read by the stdlib; orjson refuses lone surrogates, NaN, Infinity, invalid UTF-8 and
  UTF-16/32 bodies, which the stdlib then reads (or refuses with its own error) as before;
- canonical bytes: the same bytes as `json.dumps(sort_keys=True, separators=(",", ":"),
  ensure_ascii=False, default=str)` for every payload of strings, integers, booleans, None, lists
  and objects; anything orjson will not take (a lone surrogate, an integer beyond 64 bits, a key
  that is not a string) goes to the stdlib. Floats are written by both as the shortest repr, except
  an exponent (1e+16 against 1e16) and NaN/Infinity (null): such a payload's fingerprint differs
  from the stdlib's, which at worst sends that record once more.

What a hostile server may send becomes data the agent can handle rather than an exception that
stops the run (`loads` raises nothing but ValueError):

- nesting deeper than MAX_DEPTH (as deep as orjson writes): a container that deep is replaced by
  None and its record marked; a body nested past what the stdlib's parser reaches (about 1000
  levels) is refused as a whole with a ValueError, not a RecursionError;
- an integer past Python's int-string conversion limit (4300 digits) becomes a `HugeNumber` and
  marks its record, so the rest of the page is read;
- an object with a key given twice (both parsers keep the last value silently) is marked, so the
  record, or the page when it is the page's own object, is refused with its reason. A text holds
  a duplicate only if it has more colons than orjson's compact rendering of what it read, so the
  stdlib's pair-by-pair decode runs only then.

A marked container is a `Suspect` (dict) or `SuspectList` (list) carrying `problem` (code,
reason) and `own` (the problem is one of its own members, not deeper down); its parents up to
the top are marked too, so a page parser looks at each record once, and only on such pages.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from typing import Any

import orjson

_DIGIT_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_NUMBER = b"0" * 19
_CANONICAL_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


MAX_DEPTH = 254  # containers within containers: orjson writes no deeper, so the agent reads no deeper
_ESCAPED_COLON = re.compile(rb"\\u003[aA]")  # a colon escaped in a string: the colon count cannot tell


class HugeNumber:
    """An integer too long for Python to convert (its int-string limit): never a value, only its size."""

    __slots__ = ("digits",)

    def __init__(self, digits: int) -> None:
        self.digits = digits

    def __repr__(self) -> str:
        return f"<integer of {self.digits} digits>"

    __str__ = __repr__


class Suspect(dict):  # type: ignore[type-arg]
    """An object holding something the agent will not take (see `problem`): its record is bad."""

    __slots__ = ("problem", "own")

    def __init__(self, *args: Any, problem: tuple[str, str], own: bool) -> None:
        super().__init__(*args)
        self.problem, self.own = problem, own


class SuspectList(list):  # type: ignore[type-arg]
    """A list holding something the agent will not take (see `problem`)."""

    __slots__ = ("problem", "own")

    def __init__(self, *args: Any, problem: tuple[str, str], own: bool) -> None:
        super().__init__(*args)
        self.problem, self.own = problem, own


def problem_of(value: Any) -> tuple[str, str] | None:
    """(code, reason) when `value` is or holds something the agent will not take, else None."""
    if isinstance(value, Suspect | SuspectList):
        return value.problem
    if isinstance(value, HugeNumber):
        return _huge(value)
    return None


def loads(data: bytes) -> Any:
    """Parse a JSON body; raises ValueError (the stdlib's, with its position) on invalid JSON.

    The value may hold marked containers and HugeNumbers (see the module docstring).
    """
    if _LONG_NUMBER not in data.translate(_DIGIT_TO_ZERO):  # ~0.1 ms for a 150 kB page
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError:
            pass  # the stdlib reads it its way, or says what is wrong
        else:
            if not isinstance(value, dict | list) or _plain(data, value):
                return value
    return _careful(data)


def _plain(data: bytes, value: Any) -> bool:
    """True when orjson's reading needs no second look: not too deep, no key given twice.

    orjson writes what it read back compactly, each key followed by one colon; the colons inside
    strings are the same on both sides (JSON never escapes a colon, unless as \\u003a). Fewer
    colons written than read means a key was dropped. ~0.2 ms for a 150 kB page.
    """
    try:
        written = orjson.dumps(value)
    except orjson.JSONEncodeError:  # nested deeper than orjson writes
        return False
    return written.count(b":") == data.count(b":") and _ESCAPED_COLON.search(data) is None


def _careful(data: bytes) -> Any:
    """The stdlib's decode, object by object and integer by integer, then every problem marked."""
    try:
        value = json.loads(data, object_pairs_hook=_object, parse_int=_int)
    except RecursionError:
        raise ValueError(f"JSON nested too deep (far more than {MAX_DEPTH} levels)") from None
    return _mark(value)


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    seen: set[str] = set()
    twice = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
    return Suspect(obj, problem=("duplicate_key", f"the key {twice!r} is given more than once in one object"),
                   own=True)


def _int(text: str) -> int | HugeNumber:
    try:
        return int(text)
    except ValueError:  # past sys.get_int_max_str_digits()
        return HugeNumber(len(text.lstrip("-")))


def _huge(number: HugeNumber) -> tuple[str, str]:
    return ("number_too_long", f"an integer of {number.digits} digits (Python reads at most "
                               f"{sys.get_int_max_str_digits()})")


class _Frame:
    """One container being looked through by `_mark`."""

    __slots__ = ("container", "members", "depth", "key", "problem", "own")

    def __init__(self, container: Any, depth: int) -> None:
        self.container, self.depth = container, depth
        self.members: Iterator[tuple[Any, Any]] = iter(container.items() if isinstance(container, dict)
                                                       else enumerate(container))
        self.key: Any = None
        self.problem: tuple[str, str] | None = getattr(container, "problem", None)
        self.own = bool(getattr(container, "own", False))

    def note(self, problem: tuple[str, str], *, own: bool) -> None:
        if self.problem is None:
            self.problem, self.own = problem, own
        elif own and not self.own:
            self.own = True  # the page object's own duplicate key counts, whatever was found below it


def _mark(root: Any) -> Any:
    """Mark every container holding a problem, and its parents; cut what is nested past MAX_DEPTH.

    Iterative, so no depth of nesting can exhaust the stack; post-order: a child before its parent.
    Only ever run on bodies the stdlib decoded, never on orjson's fast path.
    """
    if not isinstance(root, dict | list):
        return root
    stack = [_Frame(root, 1)]
    while True:
        frame = stack[-1]
        member = next(frame.members, None)
        if member is not None:
            key, child = member
            if isinstance(child, HugeNumber):
                code, text = _huge(child)
                frame.note((code, f"{key}: {text}"), own=True)
            elif isinstance(child, dict | list):
                if frame.depth >= MAX_DEPTH:
                    frame.container[key] = None  # changing a value, not the keys, while iterating is safe
                    frame.note(("too_deep", f"{key}: nested deeper than {MAX_DEPTH} levels"), own=True)
                else:
                    frame.key = key
                    stack.append(_Frame(child, frame.depth + 1))
            continue
        stack.pop()
        marked = frame.container
        if frame.problem is not None:
            if isinstance(marked, Suspect | SuspectList):
                marked.problem, marked.own = frame.problem, frame.own
            else:
                kind = Suspect if isinstance(marked, dict) else SuspectList
                marked = kind(marked, problem=frame.problem, own=frame.own)
        if not stack:
            return marked
        parent = stack[-1]
        if marked is not frame.container:
            parent.container[parent.key] = marked
        if frame.problem is not None:
            parent.note(frame.problem, own=False)


def dumps(payload: Any) -> bytes:
    """A request body (UTF-8). A type JSON has no word for is refused, as by requests' `json=`.

    Unlike `json=`, a NaN or infinite float is written as null (orjson's way) rather than refused;
    the payloads we build carry money as decimal strings, not floats.
    """
    try:
        return orjson.dumps(payload)
    except TypeError:
        return json.dumps(payload, allow_nan=False).encode("utf-8")


def canonical(payload: Any) -> bytes:
    """Key-sorted compact UTF-8 JSON of a payload: the bytes its fingerprint is taken of."""
    try:
        return orjson.dumps(payload, option=_CANONICAL_OPTIONS, default=str)
    except TypeError:
        return _CANONICAL.encode(payload).encode("utf-8", "surrogatepass")
