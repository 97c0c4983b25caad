"""Small helpers every connector shares."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from syncagent.config import HttpOptions
from syncagent.errors import MappingError
from syncagent.http import HttpResponse, HttpSettings

T = TypeVar("T")


def http_settings(opts: HttpOptions) -> HttpSettings:
    rate = opts.rate_limit
    return HttpSettings(
        connect_timeout=opts.connect_timeout, read_timeout=opts.read_timeout, max_attempts=opts.max_attempts,
        rate_per_second=rate.per_second if rate else None, rate_burst=rate.burst if rate else 1,
        verify_tls=opts.verify_tls, ca_bundle=opts.ca_bundle,
    )


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def reason(resp: HttpResponse) -> str:
    """The server's error envelope as one line for people: "code: message (field) [details]"."""
    text = f"{resp.error_code() or resp.status}: {resp.error_message() or 'no message'}"
    field = resp.error_field("field")
    if field:
        text += f" ({field})"
    details = resp.error_field("details")
    if isinstance(details, list) and details:
        text += " [" + "; ".join(f"{d.get('field')}: {d.get('message')}" for d in details if isinstance(d, dict)) + "]"
    return text


def need(item: dict[str, Any], name: str, kind: type | tuple[type, ...] = str) -> Any:
    """A required field of a feed item, of the right type, or a MappingError saying which."""
    if name not in item or item[name] is None:
        raise MappingError("missing_field", f"{name} is required")
    value = item[name]
    if kind is str and isinstance(value, str) and not value.strip():
        raise MappingError("missing_field", f"{name} is empty")
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise MappingError("bad_type", f"{name}: expected {getattr(kind, '__name__', kind)}, found {type(value).__name__}")
    return value


def opt(item: dict[str, Any], name: str, kind: type | tuple[type, ...] = str) -> Any:
    value = item.get(name)
    if value is None:
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise MappingError("bad_type", f"{name}: expected {getattr(kind, '__name__', kind)}, found {type(value).__name__}")
    return value


def parse_items(items: Any, parse: Callable[[dict[str, Any]], Any], key_field: str) -> list[Any]:
    """Parse every item of a page; one that cannot be parsed becomes a BadRecord, the rest go on."""
    from syncagent.model import BadRecord

    records = []
    for item in items:
        if not isinstance(item, dict):
            records.append(BadRecord("?", "bad_type", f"expected an object, found {type(item).__name__}", item))
            continue
        try:
            records.append(parse(item))
        except MappingError as exc:
            key = item.get(key_field)
            records.append(BadRecord(key if isinstance(key, str) and key else "?", exc.code, exc.reason, item))
        except (TypeError, ValueError, ArithmeticError) as exc:
            key = item.get(key_field)
            records.append(BadRecord(key if isinstance(key, str) and key else "?", "bad_value", str(exc)[:200], item))
    return records
