"""Small helpers every connector shares, so that each one reads its feed and reports errors alike."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

from syncagent import fastjson
from syncagent.config import HttpOptions
from syncagent.connectors.base import Outgoing, PushResult
from syncagent.errors import ChannelError, MappingError, PermanentError, TransientError
from syncagent.http import HttpClient, HttpResponse, HttpSettings
from syncagent.model import Address, BadRecord, Price, parse_money, parse_time

T = TypeVar("T")
OPEN_FROM = datetime(2000, 1, 1, tzinfo=UTC)  # the start of a price window that has none
OPEN_UNTIL = datetime(2099, 12, 31, 23, 59, 59, tzinfo=UTC)  # the end of a price window that has none


def http_settings(opts: HttpOptions) -> HttpSettings:
    """The HTTP layer's settings from the config's `http:` block (the rest keep their defaults)."""
    rate = opts.rate_limit
    return HttpSettings(
        connect_timeout=opts.connect_timeout, read_timeout=opts.read_timeout, max_attempts=opts.max_attempts,
        rate_per_second=rate.per_second if rate else None, rate_burst=rate.burst if rate else 1,
        verify_tls=opts.verify_tls, ca_bundle=opts.ca_bundle, total_timeout=opts.total_timeout,
    )


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of at most `size` items, because servers cap their batch sizes."""
    if size < 1:
        raise ValueError("chunk size must be at least 1")
    for start in range(0, len(items), size):
        yield items[start : start + size]


def error_text(error: Mapping[str, Any] | None, *, with_code: bool = True) -> str:
    """One error envelope as one line for people: "code: message (field)"."""
    error = error if isinstance(error, Mapping) else {}
    text = str(error.get("message") or "no message")
    if with_code and error.get("code"):
        text = f"{error['code']}: {text}"
    if error.get("field"):
        text += f" ({error['field']})"
    details = error.get("details")
    if isinstance(details, list) and details:
        parts = [f"{d.get('field')}: {d.get('message')}" if d.get("field") else str(d.get("message"))
                 for d in details if isinstance(d, Mapping)]
        if parts:
            text += " [" + "; ".join(parts) + "]"
    return text


def reason(resp: HttpResponse, client: HttpClient | None = None) -> str:
    """The error envelope of a refused answer, "code: message (field) [details]", else its status.

    With `client`, its secrets are scrubbed: a server may echo a key back in its message, and the
    text ends up in exceptions, logs and the quarantine.
    """
    error = {"code": resp.error_code() or str(resp.status), "message": resp.error_message(),
             "field": resp.error_field("field"), "details": resp.error_field("details")}
    text = error_text(error)
    return client.redact(text) if client is not None else text


def refused(client: HttpClient, what: str, resp: HttpResponse) -> ChannelError:
    """The exception for a call the server refused as a whole: a 4xx will not heal by retrying."""
    text = f"{client.name}: {what} answered {resp.status}: {reason(resp, client)}"
    if 400 <= resp.status < 500:
        return PermanentError(text, status=resp.status, code=resp.error_code())
    return TransientError(text, status=resp.status, code=resp.error_code())


def body_of(client: HttpClient, what: str, resp: HttpResponse, key: str = "items") -> dict[str, Any]:
    """The JSON object of a 200 answer that must hold a `key` list; anything else is a bad response."""
    try:
        body = resp.json()
    except TransientError as exc:
        raise TransientError(client.redact(str(exc)), status=exc.status, code=exc.code) from None
    if not isinstance(body, dict) or not isinstance(body.get(key), list):
        raise TransientError(f"{client.name}: {what}: the answer is not an object with a {key!r} list",
                             status=resp.status, code="bad_response")
    if isinstance(body, fastjson.Suspect) and body.own:  # e.g. "items" twice: which list is the page?
        raise TransientError(client.redact(f"{client.name}: {what}: the page is unusable: {body.problem[1]}"),
                             status=resp.status, code="bad_response")
    return body


def _type_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def need(item: Mapping[str, Any], name: str, kind: type | tuple[type, ...] = str) -> Any:
    """A required field of a feed item, of the right type, or a MappingError saying which."""
    value = item.get(name)
    if value is None:
        raise MappingError("missing_field", f"{name} is required")
    if isinstance(value, str) and not value.strip() and (kind is str or (isinstance(kind, tuple) and str in kind)):
        raise MappingError("missing_field", f"{name} is empty")
    return _typed(value, name, kind)


def opt(item: Mapping[str, Any], name: str, kind: type | tuple[type, ...] = str) -> Any:
    """An optional field: None when absent or null, else it must have the right type."""
    value = item.get(name)
    return None if value is None else _typed(value, name, kind)


def _typed(value: Any, name: str, kind: type | tuple[type, ...]) -> Any:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # bool is an int to Python but never a quantity or a count on the wire
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise MappingError("bad_type", f"{name}: expected {_type_name(kind)}, found {type(value).__name__}")
    return value


def order_entries(data: Mapping[str, Any], name: str = "items") -> Iterator[tuple[int, dict[str, Any]]]:
    """The lines of an order, at least one, each an object: one at a time, so the first bad line is the one named."""
    entries = need(data, name, list)
    if not entries:
        raise MappingError("missing_field", f"{name}: an order needs at least one item")
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise MappingError("bad_type", f"{name}[{i}]: expected an object")
        yield i, entry


def entry_code(entry: Mapping[str, Any], label: str, name: str, why: str) -> str:
    """The product code of an order line: a non-blank string, or `missing_field` saying `why`."""
    code = entry.get(name)
    if not isinstance(code, str) or not code.strip():
        raise MappingError("missing_field", f"{label}.{name}: {why}")
    return code


def entry_quantity(entry: Mapping[str, Any], label: str, name: str = "quantity") -> int:
    """The quantity of an order line: an integer of at least 1."""
    quantity: int = need(entry, name, int)
    if quantity < 1:
        raise MappingError("bad_quantity", f"{label}.{name}: {quantity} is not a quantity")
    return quantity


def need_money(item: Mapping[str, Any], name: str, label: str | None = None) -> Decimal:
    """A required money field: absent is `missing_field`, malformed is `bad_money`."""
    if item.get(name) is None:
        raise MappingError("missing_field", f"{label or name} is required")
    return parse_money(item[name], label or name)


def opt_money(item: Mapping[str, Any], name: str, label: str | None = None) -> Decimal | None:
    value = item.get(name)
    return None if value is None else parse_money(value, label or name)


def need_time(item: Mapping[str, Any], name: str, label: str | None = None) -> datetime:
    """A required ISO date-time field as aware UTC."""
    moment = parse_time(item.get(name), label or name, required=True)
    if moment is None:  # parse_time raises first; this only narrows the type
        raise MappingError("missing_field", f"{label or name} is required")
    return moment


def parse_address(data: Any) -> Address | None:
    """An address object, its parts as text; anything that is not an object is no address."""
    if not isinstance(data, dict):
        return None
    parts = {k: data.get(k) for k in ("street", "number", "complement", "district", "city", "state", "zip")}
    return Address(**{k: (str(v) if v is not None else None) for k, v in parts.items()},
                   country=str(data.get("country") or "BR"))


def price_windows(p: Price, now: datetime) -> Iterator[tuple[datetime, datetime]]:
    """The spans between a price's boundaries (scheduled changes, promotion start and end) not over by `now`.

    A channel sends one entry per span that differs from the base price; the spans change only when
    a boundary passes, which is when the engine re-sends the price.
    """
    moments = sorted({m for m in [s.starts_at for s in p.scheduled] + [p.promo_start, p.promo_end] if m is not None})
    starts = [OPEN_FROM, *[m for m in moments if m > OPEN_FROM]]
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else OPEN_UNTIL
        if end > now:
            yield start, end


def push_each(name: str, entity: str, batch: Sequence[Outgoing],
              handlers: Mapping[str, Callable[[Outgoing], PushResult]]) -> list[PushResult]:
    """A push one record at a time through the entity's handler, one result per record."""
    handler = handlers.get(entity)
    if handler is None:
        raise ValueError(f"{name} cannot take {entity}")
    return [push_one(out, handler) for out in batch]


def push_one(out: Outgoing, handler: Callable[[Outgoing], PushResult]) -> PushResult:
    """One record refused (PermanentError) is that record's problem: rejected for quarantine. A permission
    missing (401/403) is the channel's problem: it fails the step."""
    try:
        return handler(out)
    except PermanentError as exc:
        if exc.status in (401, 403):
            raise
        return PushResult(out.key, "rejected", reason_code=exc.code or f"http_{exc.status}", reason=str(exc))


KeyOf = Callable[[Mapping[str, Any]], Any]


def field_key(name: str) -> KeyOf:
    """The key of a raw item for quarantine: one of its fields."""
    return lambda item: item.get(name)


def parse_items(items: Sequence[Any], parse: Callable[[dict[str, Any]], Any], key: str | KeyOf, *,
                raw: bytes | None = None) -> list[Any]:
    """Parse every item of a page; one that cannot be parsed becomes a BadRecord, the rest go on.

    `raw` is the page's JSON body as received, if at hand: it lets the text check look at the page once.
    """
    key_of = field_key(key) if isinstance(key, str) else key
    check_text = _may_hold_surrogates(items, raw)
    records: list[Any] = []
    for item in items:
        if not isinstance(item, dict):
            records.append(BadRecord("?", "bad_type", f"expected an object, found {type(item).__name__}", item))
            continue
        if isinstance(item, fastjson.Suspect):  # a key twice, a number too long, nesting too deep
            records.append(BadRecord(_clean(_key_text(key_of, item)), *item.problem, item))
            continue
        if check_text and _has_surrogates(item):
            records.append(BadRecord(_clean(_key_text(key_of, item)), "invalid_text",
                                     "a text field is not valid UTF-8", item))
            continue
        try:
            records.append(parse(item))
        except MappingError as exc:
            records.append(BadRecord(_key_text(key_of, item), exc.code, exc.reason, item))
        except (TypeError, ValueError, ArithmeticError, KeyError, AttributeError) as exc:
            records.append(BadRecord(_key_text(key_of, item), "bad_value", str(exc)[:200], item))
    return records


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")  # a \uD800-\uDFFF escape in JSON text
_SURROGATE_BYTES = re.compile(rb"\xed[\xa0-\xbf]")  # UTF-8-like bytes of a surrogate (json lets them through)


def _may_hold_surrogates(items: Sequence[Any], raw: bytes | None) -> bool:
    """Whether any string of the page may hold a lone surrogate: one check per page, not one per string.

    From UTF-8 bytes (what json.loads decodes unless the body starts like UTF-16/32) a surrogate
    can only come from a \\uD800-\\uDFFF escape or the bytes ED A0-ED BF. Without the bytes, the
    parsed page is encoded once. True (a false alarm at worst, e.g. an emoji's surrogate pair)
    sends the page to the per-string check, which decides.
    """
    if raw is not None and not raw.startswith((b"\xff\xfe", b"\xfe\xff")) and b"\x00" not in raw[:4]:
        return (b"\xed" in raw and _SURROGATE_BYTES.search(raw) is not None) or \
            _SURROGATE_ESCAPE.search(raw) is not None
    try:
        json.dumps(items, ensure_ascii=False).encode("utf-8")
    except (UnicodeEncodeError, TypeError, ValueError, RecursionError):
        return True
    return False


def _has_surrogates(value: Any) -> bool:
    """True when a string anywhere in the item holds lone surrogates (invalid UTF-8 that was let through)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_has_surrogates(k) or _has_surrogates(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_surrogates(v) for v in value)
    return False


def _clean(text: str) -> str:
    return text.encode("utf-8", "replace").decode("utf-8")


def _key_text(key_of: KeyOf, item: Mapping[str, Any]) -> str:
    try:
        value = key_of(item)
    except (TypeError, ValueError, KeyError, AttributeError):
        return "?"
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return "?"
    text = str(value).strip()
    return text or "?"
