"""The config file (DESIGN §2, a user contract): YAML → frozen dataclasses, with line-accurate errors.

The YAML is composed into nodes (not loaded into plain values) so every key and value keeps its
line; `${VAR}` / `${VAR:-default}` are expanded from the environment inside strings; `defaults`
are inherited by channels and flows. Every mistake becomes a `Problem` naming file, line, key,
what was expected and what was found, and all of them are reported at once: a user fixing a
file should not have to run `check-config` once per typo.

The keys of each connector type (credentials, account names) are not listed here: they come from
the connector's `options` schema through `syncagent.connectors.registry`, imported lazily.
"""

from __future__ import annotations

import difflib
import os
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from email.utils import parseaddr
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from syncagent import entities
from syncagent.errors import ConfigError
from syncagent.model import ALL_FLOWS

DIRECTIONS = entities.DIRECTIONS
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
DEFAULT_EVERY = 900.0  # 15m
DEFAULT_BATCH = 200
DEFAULT_FILE = "syncagent.yaml"
DEFAULT_JOURNAL = "syncagent.db"
DEFAULT_SILENT_AFTER = 7 * 86400.0  # a shipment with no news this long raises an alert

NAME_RE = re.compile(r"^[a-z0-9-]+$")
URL_RE = re.compile(r"^https?://[^\s/?#]+\S*$")
# `$${` is an escaped literal `${`; a `${` that matches neither form is reported, never kept silently
ENV_RE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{")
# every ${...} is swapped for a plain token before parsing: `{username: ${SMTP_USER}}` (DESIGN §2)
# is not valid YAML as written, since `{` opens a flow mapping inside a flow mapping
REF_RE = re.compile(r"\$?\$\{[^}\n]*\}")
DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
STR_TAG = "tag:yaml.org,2002:str"
MERGE_TAG = "tag:yaml.org,2002:merge"
# after ${VAR} expansion a plain scalar may become one of these (`smtp_port: ${SMTP_PORT:-587}`)
RETYPED_TAGS = {"tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool"}
# values the file may hold once aliases and merge keys are expanded: a real config has a few
# thousand; a "billion laughs" file of a few hundred bytes expands to billions and would eat memory
MAX_EXPANDED_VALUES = 100_000


def _empty() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class RateLimit:
    per_second: float
    burst: int = 1


@dataclass(frozen=True, slots=True)
class HttpOptions:
    """Connection settings of one endpoint; `defaults.http` is inherited key by key."""

    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    max_attempts: int = 5
    rate_limit: RateLimit | None = None
    ca_bundle: str | None = None
    verify_tls: bool = True
    total_timeout: float | None = None  # one attempt in all; None: connect_timeout + 2 x read_timeout


@dataclass(frozen=True, slots=True)
class FlowConfig:
    name: str
    every: float
    enabled: bool = True
    direction: str = "push"
    batch_size: int = DEFAULT_BATCH
    options: Mapping[str, Any] = field(default_factory=_empty)


@dataclass(frozen=True, slots=True)
class NotificationSettings:
    """What a channel's notifications (webhooks, callbacks) are checked against (`notifications:`)."""

    secret: str | None = None  # a shared secret: HMAC key (Jumpseller's hooks token) or token sent with each call
    header: str | None = None  # the header that carries the token (else the `token` query parameter)
    application_id: str | None = None  # the platform's app id a notification must name (Mercado Livre)
    user_id: str | None = None  # the seller a notification must name (Mercado Livre)


@dataclass(frozen=True, slots=True)
class ListenConfig:
    """`listen:` the daemon's HTTP endpoint for notifications (off when absent); TLS is the proxy's job."""

    host: str = "127.0.0.1"
    port: int = 8787
    max_body: int = 65_536  # bytes; a larger notification is refused (413) unread
    per_second: float = 20.0  # notifications per source and second (token bucket) ...
    burst: int = 100  # ... with this burst; past it: 429 with Retry-After
    client_timeout: float = 10.0  # seconds a client may take to send its request before it is cut off
    connections: int = 100  # open connections at most; more wait in the listen backlog


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    name: str
    type: str
    enabled: bool
    base_url: str
    flows: tuple[FlowConfig, ...]
    warehouses: tuple[str, ...] = ()
    order_warehouse: str | None = None
    safety_stock: int = 0
    shadow: bool = False
    http: HttpOptions = HttpOptions()
    options: Mapping[str, Any] = field(default_factory=_empty)
    sku_mapping: str = "optional"  # required: a product with no DE/PARA SKU waits in quarantine
    adopt: bool = False  # before the first products push, bind the channel's existing listings by SKU or EAN
    notifications: NotificationSettings = NotificationSettings()

    def flow(self, name: str) -> FlowConfig | None:
        """The configured flow `name`, or None when the file does not list it (it does not run)."""
        return next((f for f in self.flows if f.name == name), None)


@dataclass(frozen=True, slots=True)
class CarrierConfig:
    """A carrier connector (`carriers:`): the carrier names of shipped events it tracks, and how often."""

    name: str
    type: str
    base_url: str
    names: tuple[str, ...]
    silent_after: float = DEFAULT_SILENT_AFTER
    poll_every: float = 0.0  # 0: every run of a channel's deliveries flow
    http: HttpOptions = HttpOptions()
    options: Mapping[str, Any] = field(default_factory=_empty)
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class BackofficeConfig:
    type: str
    base_url: str
    http: HttpOptions = HttpOptions()
    options: Mapping[str, Any] = field(default_factory=_empty)
    name: str = "backoffice"  # so connectors can take a back office or a channel config alike


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: str = "info"
    format: str = "text"
    file: str | None = None


@dataclass(frozen=True, slots=True)
class EmailAlerts:
    smtp_host: str
    from_addr: str
    to: tuple[str, ...]
    smtp_port: int = 587
    starttls: bool = True
    username: str | None = None
    password: str | None = None
    failing_cycles: int = 3
    order_late_minutes: int = 15
    allow_plaintext_login: bool = False  # log in without STARTTLS: the password crosses the network readable


@dataclass(frozen=True, slots=True)
class Config:
    path: Path
    journal: Path
    log: LogConfig
    alerts: EmailAlerts | None
    backoffice: BackofficeConfig
    channels: tuple[ChannelConfig, ...]
    secrets: tuple[str, ...] = ()  # every value read from a secret key, for redaction
    carriers: tuple[CarrierConfig, ...] = ()
    listen: ListenConfig | None = None  # the notification endpoint of the daemon; None: it does not listen

    def endpoints(self) -> list[tuple[str, BackofficeConfig | ChannelConfig | CarrierConfig]]:
        """(name, config) of every system the agent talks to: the back office, the enabled channels, the carriers."""
        return ([("backoffice", self.backoffice)] + [(c.name, c) for c in self.channels if c.enabled]
                + [(c.name, c) for c in self.carriers])

    def channel(self, name: str) -> ChannelConfig:
        """The channel `name`; a ConfigError names the known ones (a CLI typo is a usage error)."""
        for channel in self.channels:
            if channel.name == name:
                return channel
        known = ", ".join(c.name for c in self.channels) or "none"
        raise ConfigError(f"no channel named {name!r} in {self.path} (channels: {known})")


@dataclass(frozen=True, slots=True)
class Problem:
    """One mistake in the file, with enough context to fix it without reading the docs."""

    file: str
    line: int
    key: str
    expected: str
    found: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.key}: expected {self.expected}, found {self.found}"


class ConfigProblems(ConfigError):
    """Every problem of one file at once; str() is one problem a line."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


# -- reading nodes ------------------------------------------------------------------------------
@dataclass(slots=True)
class _Value:
    """A YAML value with its line (1-based; a key's value carries the key's line)."""

    value: Any
    line: int
    from_env: bool = False  # the scalar used ${VAR}: how secrets prove they are not in the file
    text: str | None = None  # the scalar as written (after ${VAR}): `01` stays "01" where a string is wanted
    broken: bool = False  # already reported (unset ${VAR}, bad tag): no second problem about the same value


class _Refs:
    """Hides each `${...}` behind a plain token while YAML is parsed, and puts it back after."""

    def __init__(self, text: str) -> None:
        nonce = os.urandom(4).hex()
        while nonce in text:
            nonce = os.urandom(4).hex()
        self.originals: dict[str, str] = {}
        self.token_re = re.compile(rf"envref{nonce}n\d+z")

        def hide(match: re.Match[str]) -> str:
            token = f"envref{nonce}n{len(self.originals)}z"
            self.originals[token] = match.group(0)
            return token

        self.text = REF_RE.sub(hide, text)

    def restore(self, text: str) -> str:
        if not self.originals:
            return text
        return self.token_re.sub(lambda m: self.originals[m.group(0)], text)


class _Reader:
    """Turns composed nodes into `_Value` trees and collects problems and secrets on the way."""

    def __init__(self, file: str, env: Mapping[str, str], base_dir: Path, refs: _Refs) -> None:
        self.file = file
        self.env = env
        self.base_dir = base_dir
        self.refs = refs
        self.problems: list[Problem] = []
        self.secrets: list[str] = []
        self._loader = yaml.SafeLoader("")

    def problem(self, line: int, key: str, expected: str, found: str) -> None:
        self.problems.append(Problem(self.file, line, key or "(top level)", expected, found))

    def path(self, text: str) -> str:
        """Relative paths are taken from the config file's directory, not from the working directory."""
        path = Path(text).expanduser()
        return str(path if path.is_absolute() else self.base_dir / path)

    def convert(self, node: yaml.Node, key: str) -> _Value:
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, key, line)
        if isinstance(node, yaml.SequenceNode):
            return _Value([self.convert(n, f"{key}[{i}]") for i, n in enumerate(node.value)], line)
        return self._scalar(node, key, line)

    def _mapping(self, node: yaml.MappingNode, key: str, line: int) -> _Value:
        own = {id(k) for k, _ in node.value if k.tag != MERGE_TAG}
        try:
            self._loader.flatten_mapping(node)  # `<<: *anchor` merges, as yaml.safe_load would
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark
            self.problem(mark.line + 1 if mark else line, _join(key, "<<"), "a mapping or a list of mappings to merge",
                         "something else")
        result: dict[str, _Value] = {}
        seen: dict[str, tuple[int, bool]] = {}
        for knode, vnode in node.value:
            kline = knode.start_mark.line + 1
            if not isinstance(knode, yaml.ScalarNode):
                self.problem(kline, key, "plain keys", "a mapping or list used as a key")
                continue
            name = self.refs.restore(str(knode.value))
            is_own = id(knode) in own
            if name in seen and seen[name][1] and is_own:  # a merged key may be overridden, an own one not
                self.problem(kline, _join(key, name), "each key once", f"a second {name!r} (first on line "
                             f"{seen[name][0]})")
            seen[name] = (kline, is_own)
            child = self.convert(vnode, _join(key, name))
            child.line = kline
            result[name] = child
        return _Value(result, line)

    def _scalar(self, node: yaml.ScalarNode, key: str, line: int) -> _Value:
        text, used = self.refs.restore(node.value), False
        if node.tag == STR_TAG:
            before = len(self.problems)
            text, used = self.expand(text, line, key)
            broken = len(self.problems) > before
            tag = self._loader.resolve(yaml.ScalarNode, text, (True, False)) if used and node.style is None else None
            if broken or tag not in RETYPED_TAGS:
                return _Value(text, line, used, text, broken)
            node = yaml.ScalarNode(tag, text, node.start_mark, node.end_mark)
        elif text != node.value:
            node = yaml.ScalarNode(node.tag, text, node.start_mark, node.end_mark, style=node.style)
        try:
            value = self._loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            self.problem(line, key, "a plain value", str(exc).splitlines()[0])
            return _Value(None, line, used, text, broken=True)
        return _Value(value, line, used, text)

    def expand(self, text: str, line: int, key: str) -> tuple[str, bool]:
        """Expand ${VAR} and ${VAR:-default} (default also when VAR is empty, as in the shell)."""
        used = False

        def sub(match: re.Match[str]) -> str:
            nonlocal used
            whole, name, default = match.group(0), match.group(1), match.group(2)
            if whole == "$${":
                return "${"
            if name is None:
                self.problem(line, key, "${NAME} or ${NAME:-default} (write $${ for a literal ${)",
                             "a malformed ${ reference")
                return whole
            used = True
            value = self.env.get(name)
            if default is not None and not value:
                return default
            if value is None:
                self.problem(line, key, f"a value for ${{{name}}} (set it, or write ${{{name}:-default}})",
                             f"environment variable {name} is not set")
                return ""
            return value

        return ENV_RE.sub(sub, text), used


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _plain(item: _Value | None) -> Any:
    if item is None:
        return None
    if isinstance(item.value, dict):
        return {k: _plain(v) for k, v in item.value.items()}
    if isinstance(item.value, list):
        return [_plain(v) for v in item.value]
    return item.value


def _text(item: _Value) -> str | None:
    """A scalar as a string: what the user wrote, so `01` or `on` are not read as 1 or True."""
    value = item.value
    if isinstance(value, str):
        return value
    if value is None or isinstance(value, dict | list):
        return None
    return item.text if item.text is not None else str(value)


def _found(item: _Value) -> str:
    value = item.value
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    if isinstance(value, str):
        return repr(value[:60]) if value else "an empty string"
    return item.text if item.text is not None else repr(value)


def _shape(item: _Value) -> str:
    """What a secret value looks like, without showing it."""
    value = item.value
    kind = "mapping" if isinstance(value, dict) else "list" if isinstance(value, list) else type(value).__name__
    return f"a hidden value ({kind})"


_CONTROL_NAMES = {"\r": "a carriage return (\\r)", "\n": "a line feed (\\n)", "\t": "a tab (\\t)",
                  "\0": "a NUL byte"}


def _controls(text: str) -> str:
    """Which control characters `text` holds, and where, said without showing the text."""
    found = sorted({c for c in text if unicodedata.category(c) == "Cc"})
    if not found:
        return ""
    names = ", ".join(_CONTROL_NAMES.get(c, f"the control character U+{ord(c):04X}") for c in found)
    body = text.rstrip("".join(found))
    at_end = body != text and not any(unicodedata.category(c) == "Cc" for c in body)
    return names + (" at its end" if at_end else "")


# -- typed getters ------------------------------------------------------------------------------
def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _int_in(low: int, high: int | None = None) -> Callable[[_Value], tuple[bool, Any]]:
    def check(item: _Value) -> tuple[bool, Any]:
        value = item.value
        return _is_int(value) and value >= low and (high is None or value <= high), value

    return check


def _check_str(item: _Value) -> tuple[bool, Any]:
    text = _text(item)
    return text is not None, text


def _check_path(item: _Value) -> tuple[bool, Any]:
    text = _text(item)
    return bool(text), text


def _check_number(item: _Value) -> tuple[bool, Any]:
    ok = _is_number(item.value)
    return ok, float(item.value) if ok else item.value


def _check_positive(item: _Value) -> tuple[bool, Any]:
    ok = _is_number(item.value) and item.value > 0
    return ok, float(item.value) if ok else item.value


def _check_bool(item: _Value) -> tuple[bool, Any]:
    return isinstance(item.value, bool), item.value


def _check_list(item: _Value) -> tuple[bool, Any]:
    if not isinstance(item.value, list):
        return False, item.value
    texts = [_text(v) for v in item.value]
    ok = all(t is not None for t in texts)
    return ok, tuple(t for t in texts if t is not None)


def _check_dict(item: _Value) -> tuple[bool, Any]:
    ok = isinstance(item.value, dict)
    return ok, MappingProxyType(_plain(item)) if ok else item.value


def _check_duration(item: _Value) -> tuple[bool, Any]:
    value = item.value
    if _is_number(value):
        return value > 0, float(value)
    match = DURATION_RE.match(value) if isinstance(value, str) else None
    if not match:
        return False, value
    seconds = float(match.group(1)) * UNITS[match.group(2)]
    return seconds > 0, seconds


def _check_url(item: _Value) -> tuple[bool, Any]:
    value = item.value
    return isinstance(value, str) and bool(URL_RE.match(value)), value


def _check_name(item: _Value) -> tuple[bool, Any]:
    value = item.value
    return isinstance(value, str) and bool(NAME_RE.match(value)), value


def _is_address(text: str | None) -> bool:
    if not text or _controls(text):  # a CR/LF would be refused by the mail library (or add a header)
        return False
    address = parseaddr(text)[1]
    local, _, domain = address.partition("@")
    return bool(local) and bool(domain) and " " not in address


def _check_email(item: _Value) -> tuple[bool, Any]:
    text = _text(item)
    return _is_address(text), text


def _check_emails(item: _Value) -> tuple[bool, Any]:
    ok, texts = _check_list(item)
    return ok and bool(texts) and all(_is_address(t) for t in texts), texts


def _check_any(item: _Value) -> tuple[bool, Any]:
    return True, _plain(item)


_CHECKS: dict[str, Callable[[_Value], tuple[bool, Any]]] = {
    "str": _check_str, "path": _check_path, "int": _int_in(-(2**63)), "count": _int_in(0),
    "positive_int": _int_in(1), "batch": _int_in(1, 1000), "port": _int_in(1, 65535), "float": _check_number,
    "positive": _check_positive, "bool": _check_bool, "list[str]": _check_list, "dict": _check_dict,
    "duration": _check_duration, "url": _check_url, "name": _check_name, "email": _check_email,
    "list[email]": _check_emails,
}

_EXPECTED = {
    "str": "a string", "path": "a file path", "int": "an integer", "count": "an integer >= 0",
    "positive_int": "an integer >= 1", "batch": "an integer from 1 to 1000", "port": "a port from 1 to 65535",
    "float": "a number", "positive": "a number > 0", "bool": "true or false", "list[str]": "a list of strings",
    "dict": "a mapping", "duration": "a duration > 0 like 30s, 15m, 1h, 1d or a number of seconds",
    "url": "an http:// or https:// URL", "name": "a name of lower-case letters, digits and -",
    "email": "an e-mail address", "list[email]": "a list of e-mail addresses, like [ti@example.com]",
}


class _Section:
    """One mapping of the file: typed getters that record problems instead of raising."""

    def __init__(self, reader: _Reader, item: _Value | None, key: str, line: int,
                 expected: str = "a mapping") -> None:
        self.reader = reader
        self.key = key
        self.line = item.line if item is not None else line
        self.items: dict[str, _Value] = {}
        if item is not None and item.value is not None:
            if isinstance(item.value, dict):
                self.items = item.value
            else:
                reader.problem(item.line, key, expected, _found(item))

    def raw(self, name: str) -> _Value | None:
        return self.items.get(name)

    def has(self, name: str) -> bool:
        return name in self.items

    def line_of(self, name: str) -> int:
        item = self.items.get(name)
        return item.line if item is not None else self.line

    def get(self, name: str, kind: str, default: Any = None, *, required: bool = False,
            choices: tuple[Any, ...] | None = None, secret: bool = False) -> Any:
        """The value of `name` checked against `kind`; on a problem, recorded, the default."""
        item = self.items.get(name)
        key = _join(self.key, name)
        if item is not None and item.broken:
            return default
        if item is None or item.value is None:
            if required:
                self.reader.problem(self.line_of(name), key, f"{_EXPECTED.get(kind, 'a value')} (required)", "nothing")
            return default
        ok, converted = _CHECKS.get(kind, _check_any)(item)
        if not ok:
            self.reader.problem(item.line, key, _EXPECTED.get(kind, kind), _shape(item) if secret else _found(item))
            return default
        if choices is not None and converted not in choices:
            self.reader.problem(item.line, key, "one of " + ", ".join(map(str, choices)),
                                _shape(item) if secret else _found(item))
            return default
        if secret and converted not in (None, ""):
            self.reader.secrets.append(str(converted))
            controls = _controls(str(converted))
            if controls:
                self.reader.problem(item.line, key, "a secret without control characters (an environment file "
                                    "saved with CRLF line ends gives each value a trailing \\r: save it with LF "
                                    "line ends)", f"a hidden value holding {controls}")
                return default
            if not item.from_env:
                self.reader.problem(item.line, key, "a ${VAR} reference (put secrets in the environment: ${VAR})",
                                    "a literal secret in the file")
        return converted

    def section(self, name: str, expected: str = "a mapping") -> _Section | None:
        item = self.items.get(name)
        if item is None or item.value is None:
            return None
        return _Section(self.reader, item, _join(self.key, name), self.line, expected)

    def unknown(self, accepted: set[str] | frozenset[str], *, extensions: bool = False) -> None:
        """Every key not in `accepted` is a problem, with the closest accepted key as a hint.

        extensions: `x-` keys are allowed (a place to keep YAML anchors, as in docker compose files).
        """
        for name, item in self.items.items():
            if name in accepted or (extensions and name.startswith("x-")):
                continue
            close = difflib.get_close_matches(name, sorted(accepted), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            self.reader.problem(item.line, _join(self.key, name), "one of the keys " + ", ".join(sorted(accepted)),
                                f"unknown key {name!r}{hint}")


# -- the file -----------------------------------------------------------------------------------
TOP_KEYS = frozenset({"journal", "log", "alerts", "backoffice", "defaults", "channels", "listen", "carriers"})
CARRIER_KEYS = frozenset({"name", "type", "base_url", "names", "silent_after", "poll_every", "http", "rate_limit"})
LISTEN_KEYS = frozenset({"host", "port", "max_body", "rate_limit", "client_timeout", "connections"})
NOTIFICATION_KEYS = frozenset({"secret", "header", "application_id", "user_id"})
LOG_KEYS = frozenset({"level", "format", "file"})
EMAIL_KEYS = frozenset({"smtp_host", "smtp_port", "starttls", "username", "password", "from", "to",
                        "failing_cycles", "order_late_minutes", "allow_plaintext_login"})
HTTP_FIELDS = (("connect_timeout", "positive"), ("read_timeout", "positive"), ("max_attempts", "positive_int"),
               ("ca_bundle", "path"), ("verify_tls", "bool"), ("total_timeout", "positive"))
HTTP_KEYS = frozenset({*(name for name, _ in HTTP_FIELDS), "rate_limit"})
RATE_KEYS = frozenset({"per_second", "burst"})
DEFAULT_KEYS = frozenset({"every", "batch_size", "enabled", "safety_stock", "http", "rate_limit"})
BACKOFFICE_KEYS = frozenset({"type", "base_url", "http", "rate_limit"})
CHANNEL_KEYS = frozenset({"name", "type", "enabled", "base_url", "warehouses", "order_warehouse", "safety_stock",
                          "shadow", "flows", "every", "batch_size", "http", "rate_limit", "sku_mapping", "adopt",
                          "notifications"})
SKU_MAPPING_MODES = ("optional", "required")
FLOW_KEYS = frozenset({"every", "enabled", "direction", "batch_size", "source", "sink"})
# the two ends of a channel's flow, as `source:` and `sink:` name them
ENDS = ("backoffice", "channel")
FLOW_OPTIONS: dict[str, dict[str, str]] = {  # per-flow extra keys → FlowConfig.options
    "orders": {"statuses": "list[str]"},  # the channel's order statuses that are imported
}
FLOW_NEEDS = {  # (flow, direction) → what the channel's connector must support
    ("orders", "pull"): ("pull", "orders"),
    ("customers", "pull"): ("pull", "channel-customers"),
    ("order-events", "push"): ("push", "order-events"),
}


@dataclass(frozen=True, slots=True)
class _Inherited:
    """What `defaults` hands to a channel, and a channel to its flows."""

    every: float = DEFAULT_EVERY
    batch_size: int = DEFAULT_BATCH
    enabled: bool = True
    safety_stock: int = 0
    http: HttpOptions = HttpOptions()


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate the config; raises `ConfigProblems` listing every problem found.

    path None: $SYNCAGENT_CONFIG, else ./syncagent.yaml. env (default os.environ) feeds ${VAR}.
    """
    env = os.environ if env is None else env
    if path is None:
        path = env.get("SYNCAGENT_CONFIG") or DEFAULT_FILE
    path = Path(path)
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigProblems([Problem(file, 0, "(file)", "a config file (-c FILE, $SYNCAGENT_CONFIG or "
                                      f"./{DEFAULT_FILE})", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigProblems([Problem(file, 0, "(file)", "a readable UTF-8 file", str(exc))]) from None
    refs = _Refs(text)
    try:
        node = yaml.compose(refs.text, Loader=yaml.SafeLoader)
    except RecursionError:
        raise ConfigProblems([Problem(file, 0, "(syntax)", "mappings and lists nested a few levels deep",
                                      "nesting too deep to read")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else 0
        what = str(getattr(exc, "problem", None) or str(exc).splitlines()[0])
        what = refs.restore(what.removeprefix("but found ").removeprefix("found "))
        raise ConfigProblems([Problem(file, line, "(syntax)", "valid YAML", f"a syntax error: {what}")]) from None
    if node is not None:
        _check_expansion(file, node, MAX_EXPANDED_VALUES)
    reader = _Reader(file, env, path.resolve().parent, refs)
    try:
        root = reader.convert(node, "") if node is not None else _Value({}, 1)
    except RecursionError:
        raise ConfigProblems([Problem(file, 0, "(syntax)", "mappings and lists nested a few levels deep",
                                      "nesting too deep to read")]) from None
    config = _build(reader, path, root)
    if reader.problems:
        raise ConfigProblems(sorted(reader.problems, key=lambda p: p.line))
    assert config is not None
    return config


def _check_expansion(file: str, root: yaml.Node, budget: int) -> None:
    """Refuse a file whose aliases expand past `budget` values, or an alias inside its own anchor.

    Aliases stay allowed (anchors and `<<` merges are a documented convenience): composing keeps
    one node per anchor, so sizes are counted once per node, without expanding anything. The
    walk is iterative: nesting depth costs no recursion.
    """
    sizes: dict[int, int] = {}
    active: set[int] = set()  # the nodes on the path being walked: meeting one again is a cycle
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        children = _children(node)
        if done:
            active.discard(id(node))
            size = 1 + sum(sizes[id(child)] for child in children)
            if size > budget:
                raise ConfigProblems([Problem(
                    file, node.start_mark.line + 1, "(aliases)",
                    f"at most {budget} values once aliases (*name) and merges (<<) are expanded",
                    "more: aliases that repeat aliases (a YAML alias bomb?)")])
            sizes[id(node)] = size
            continue
        if id(node) in sizes:
            continue
        active.add(id(node))
        stack.append((node, True))
        for child in children:
            if id(child) in active:
                raise ConfigProblems([Problem(file, child.start_mark.line + 1, "(aliases)",
                                              "an alias to an anchor defined before it", "an alias inside its own "
                                              "anchor (it would never end)")])
            if id(child) not in sizes:
                stack.append((child, False))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _build(reader: _Reader, path: Path, root: _Value) -> Config | None:
    top = _Section(reader, root, "", 1, "a mapping of journal, log, alerts, backoffice, defaults, channels")
    if not isinstance(root.value, dict):
        return None
    top.unknown(TOP_KEYS, extensions=True)
    journal = Path(reader.path(top.get("journal", "path", DEFAULT_JOURNAL)))
    log = _log(top.section("log"), reader)
    alerts = _alerts(top.section("alerts"))
    listen = _listen(top.section("listen"))

    defaults = top.section("defaults") or _Section(reader, None, "defaults", 1)
    defaults.unknown(DEFAULT_KEYS)
    inherited = _Inherited(
        every=defaults.get("every", "duration", DEFAULT_EVERY), batch_size=defaults.get("batch_size", "batch", DEFAULT_BATCH),
        enabled=defaults.get("enabled", "bool", True), safety_stock=defaults.get("safety_stock", "count", 0),
        http=_http(reader, defaults, HttpOptions()),
    )

    backoffice = _backoffice(reader, top, inherited.http)

    channels: list[ChannelConfig] = []
    names: dict[str, int] = {}
    items = top.raw("channels")
    if items is not None and items.value is not None and not isinstance(items.value, list):
        reader.problem(items.line, "channels", "a list of channels (- name: ...)", _found(items))
    elif items is not None and isinstance(items.value, list):
        for index, item in enumerate(items.value):
            section = _Section(reader, item, f"channels[{index}]", item.line,
                               "a channel mapping (name, type, base_url, flows, ...)")
            if item.value is None:
                reader.problem(item.line, section.key, "a channel mapping (name, type, base_url, flows, ...)", "nothing")
            if not isinstance(item.value, dict):
                continue
            channel = _channel(reader, section, inherited, backoffice)
            if channel.name in names:
                reader.problem(section.line_of("name"), f"{section.key}.name", "a unique channel name",
                               f"{channel.name!r} again (first on line {names[channel.name]})")
            elif channel.name:
                names[channel.name] = section.line_of("name")
            channels.append(channel)
    carriers = _carriers(reader, top, inherited.http, set(names))
    if backoffice is None:
        return None
    return Config(path=path, journal=journal, log=log, alerts=alerts, backoffice=backoffice,
                  channels=tuple(channels), secrets=tuple(dict.fromkeys(reader.secrets)), carriers=carriers,
                  listen=listen)


def _carriers(reader: _Reader, top: _Section, http: HttpOptions, channel_names: set[str]) -> tuple[CarrierConfig, ...]:
    """`carriers:` a list of carrier connectors, each with the carrier names (of shipped events) it tracks."""
    items = top.raw("carriers")
    if items is None or items.value is None:
        return ()
    if not isinstance(items.value, list):
        reader.problem(items.line, "carriers", "a list of carriers (- name: correios, type: correios, names: [...])",
                       _found(items))
        return ()
    carriers: list[CarrierConfig] = []
    seen: dict[str, int] = {}
    claimed: dict[str, str] = {}
    for i, item in enumerate(items.value):
        section = _Section(reader, item, f"carriers[{i}]", item.line, "a carrier mapping (name, type, base_url, names)")
        if not isinstance(item.value, dict):
            continue
        name = section.get("name", "name", "", required=True)
        type_name = section.get("type", "str", "", required=True)
        schema = _schema(reader, section, type_name, carrier=True)
        if schema is not None or not type_name:
            section.unknown(CARRIER_KEYS | set(schema or {}))
        caps = _capabilities(type_name) if schema is not None else None
        if caps is not None and "tracking" not in caps.pull:
            reader.problem(section.line_of("type"), f"{section.key}.type", "a carrier connector type (one that tracks "
                           "shipments, like correios or jadlog)", f"{type_name!r}, which tracks no shipments")
        if name in seen or name in channel_names:
            first = f"first on line {seen[name]}" if name in seen else "a channel has it"
            reader.problem(section.line_of("name"), f"{section.key}.name", "a name no other carrier or channel has",
                           f"{name!r} again ({first})")
        elif name:
            seen[name] = section.line_of("name")
        names = section.get("names", "list[str]", (), required=True)
        for carrier in names:
            folded = carrier.strip().casefold()
            if not folded:
                reader.problem(section.line_of("names"), f"{section.key}.names", "carrier names as the back office's "
                               "shipped events write them", "an empty name")
            elif folded in claimed:
                reader.problem(section.line_of("names"), f"{section.key}.names", "each carrier name tracked by one "
                               "carrier connector", f"{carrier!r}, also in the names of {claimed[folded]!r}")
            else:
                claimed[folded] = name
        carriers.append(CarrierConfig(
            name=name, type=type_name, base_url=section.get("base_url", "url", "", required=True), names=names,
            silent_after=section.get("silent_after", "duration", DEFAULT_SILENT_AFTER),
            poll_every=section.get("poll_every", "duration", 0.0), http=_http(reader, section, http),
            options=_options(section, schema, enabled=True),
        ))
    return tuple(carriers)


def _listen(section: _Section | None) -> ListenConfig | None:
    """`listen: {host, port, ...}`: where the daemon takes notifications (absent: it does not listen)."""
    if section is None:
        return None
    section.unknown(LISTEN_KEYS)
    base = ListenConfig()
    rate = section.section("rate_limit")
    if rate is not None:
        rate.unknown(RATE_KEYS)
    return ListenConfig(
        host=section.get("host", "str", base.host), port=section.get("port", "port", base.port),
        max_body=section.get("max_body", "positive_int", base.max_body),
        per_second=rate.get("per_second", "positive", base.per_second) if rate is not None else base.per_second,
        burst=rate.get("burst", "positive_int", base.burst) if rate is not None else base.burst,
        client_timeout=section.get("client_timeout", "positive", base.client_timeout),
        connections=section.get("connections", "positive_int", base.connections),
    )


def _notifications(section: _Section | None) -> NotificationSettings:
    """A channel's `notifications: {secret, header, application_id, user_id}` (what its notifications must carry)."""
    if section is None:
        return NotificationSettings()
    section.unknown(NOTIFICATION_KEYS)
    return NotificationSettings(
        secret=section.get("secret", "str", secret=True) or None, header=section.get("header", "str") or None,
        application_id=_id_text(section.get("application_id", "any")),
        user_id=_id_text(section.get("user_id", "any")),
    )


def _id_text(value: Any) -> str | None:
    """An id given as a number or a string, as text (YAML reads 123 as a number)."""
    return None if value is None or value == "" else str(value)


def _log(section: _Section | None, reader: _Reader) -> LogConfig:
    if section is None:
        return LogConfig()
    section.unknown(LOG_KEYS)
    file = section.get("file", "path")
    return LogConfig(
        level=section.get("level", "str", "info", choices=LOG_LEVELS),
        format=section.get("format", "str", "text", choices=LOG_FORMATS),
        file=reader.path(file) if file else None,
    )


def _alerts(section: _Section | None) -> EmailAlerts | None:
    if section is None:
        return None
    section.unknown(frozenset({"email"}))
    email = section.section("email")
    if email is None:
        return None
    email.unknown(EMAIL_KEYS)
    alerts = EmailAlerts(
        smtp_host=email.get("smtp_host", "str", "", required=True),
        from_addr=email.get("from", "email", "", required=True),
        to=email.get("to", "list[email]", (), required=True),
        smtp_port=email.get("smtp_port", "port", 587),
        starttls=email.get("starttls", "bool", True),
        username=email.get("username", "str") or None,
        password=email.get("password", "str", secret=True) or None,
        failing_cycles=email.get("failing_cycles", "positive_int", 3),
        order_late_minutes=email.get("order_late_minutes", "positive_int", 15),
        allow_plaintext_login=email.get("allow_plaintext_login", "bool", False),
    )
    if alerts.username and not alerts.starttls and not alerts.allow_plaintext_login:
        email.reader.problem(email.line_of("starttls"), _join(email.key, "starttls"),
                             "true when a username is given (or allow_plaintext_login: true, to send the password "
                             "unencrypted on purpose)", "false: the SMTP password would cross the network in clear")
    return alerts


def _http(reader: _Reader, owner: _Section, base: HttpOptions) -> HttpOptions:
    """`base` overridden key by key by `owner.http` (and the `owner.rate_limit` shorthand)."""
    values: dict[str, Any] = {}
    section = owner.section("http")
    shorthand = owner.section("rate_limit")
    rate_section = shorthand
    switched_off = owner.has("rate_limit") and shorthand is None  # `rate_limit: null` drops an inherited one
    if section is not None:
        section.unknown(HTTP_KEYS)
        for name, kind in HTTP_FIELDS:
            if section.has(name):
                values[name] = section.get(name, kind, getattr(base, name))
        if values.get("ca_bundle"):
            values["ca_bundle"] = reader.path(values["ca_bundle"])
        nested = section.section("rate_limit")
        switched_off = switched_off or (section.has("rate_limit") and nested is None)
        if nested is not None and shorthand is not None:
            reader.problem(shorthand.line, shorthand.key, f"rate_limit set once (it is also set as {nested.key})",
                           "two rate limits")
        rate_section = nested or shorthand
    if rate_section is not None:
        rate_section.unknown(RATE_KEYS)
        per_second = rate_section.get("per_second", "positive", required=True)
        burst = rate_section.get("burst", "positive_int", 1)
        if per_second is not None:
            values["rate_limit"] = RateLimit(per_second, burst)
    elif switched_off:
        values["rate_limit"] = None
    return replace(base, **values) if values else base


def _schema(reader: _Reader, section: _Section, type_name: str | None, *, carrier: bool = False
            ) -> dict[str, Any] | None:
    """The connector's option schema, or None (with a problem) when its type is unknown (or of the other kind:
    a carrier connector where a channel is expected, or the reverse)."""
    if not type_name:
        return None
    from syncagent.connectors import registry

    known = sorted(t for t in registry.CONNECTORS if (t in registry.CARRIER_TYPES) == carrier)
    try:
        schema = registry.option_schema(type_name) if type_name in known else None
    except ConfigError as exc:
        reader.problem(section.line_of("type"), _join(section.key, "type"), "a connector type that can be loaded",
                       str(exc))
        return None
    if schema is None:
        close = difflib.get_close_matches(type_name, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        if type_name in registry.CONNECTORS:
            hint = " (a carrier connector: list it under carriers:)" if not carrier else " (a channel type)"
        reader.problem(section.line_of("type"), _join(section.key, "type"),
                       "one of the types " + ", ".join(known), f"{type_name!r}{hint}")
    return schema


def _options(section: _Section, schema: Mapping[str, Any] | None, *, enabled: bool) -> Mapping[str, Any]:
    """The connector's own keys, checked against its OptionSpecs."""
    options: dict[str, Any] = {}
    for name, spec in (schema or {}).items():
        value = section.get(name, spec.kind, spec.default, required=spec.required, choices=spec.choices,
                            secret=spec.secret)
        item = section.raw(name)
        if value == "" and spec.required and enabled and item is not None and not item.broken:
            # `${KEY:-}` left empty: fine while the channel is switched off, not while it runs
            section.reader.problem(section.line_of(name), _join(section.key, name),
                                   f"{_EXPECTED.get(spec.kind, 'a value')} (required)", "an empty value")
        if value is not None:
            options[name] = value
    return MappingProxyType(options)


def _backoffice(reader: _Reader, top: _Section, http: HttpOptions) -> BackofficeConfig | None:
    section = top.section("backoffice")
    if section is None:
        reader.problem(top.line_of("backoffice"), "backoffice", "a backoffice section (type, base_url, credentials)",
                       "nothing")
        return None
    type_name = section.get("type", "str", "", required=True)
    schema = _schema(reader, section, type_name)
    if schema is not None or not type_name:  # with an unknown type its own keys cannot be judged
        section.unknown(BACKOFFICE_KEYS | set(schema or {}))
    return BackofficeConfig(
        type=type_name, base_url=section.get("base_url", "url", "", required=True),
        http=_http(reader, section, http), options=_options(section, schema, enabled=True),
    )


def _channel(reader: _Reader, section: _Section, inherited: _Inherited,
             backoffice: BackofficeConfig | None = None) -> ChannelConfig:
    key = section.key
    name = section.get("name", "name", "", required=True)
    type_name = section.get("type", "str", "", required=True)
    enabled = section.get("enabled", "bool", inherited.enabled)
    schema = _schema(reader, section, type_name)
    if schema is not None or not type_name:
        section.unknown(CHANNEL_KEYS | set(schema or {}))
    options = _options(section, schema, enabled=enabled)
    own = _Inherited(
        every=section.get("every", "duration", inherited.every),
        batch_size=section.get("batch_size", "batch", inherited.batch_size), enabled=enabled,
        safety_stock=section.get("safety_stock", "count", inherited.safety_stock),
        http=_http(reader, section, inherited.http),
    )
    warehouses = section.get("warehouses", "list[str]", ())
    order_warehouse = section.get("order_warehouse", "str") or None
    capabilities = _capabilities(type_name) if schema is not None else None

    flows: list[FlowConfig] = []
    flow_section = section.section("flows", "a mapping of flows, like {products: {every: 15m}}")
    if flow_section is None:
        reader.problem(section.line_of("flows"), f"{key}.flows", "a mapping of flows, like {products: {every: 15m}}",
                       "nothing")
    else:
        for flow_name, flow_item in flow_section.items.items():
            flow = _flow(reader, flow_item, flow_name, f"{key}.flows.{flow_name}", own)
            if flow is None:
                continue
            if capabilities is not None:
                _check_capability(reader, capabilities, flow, type_name, f"{key}.flows.{flow_name}", flow_item.line)
            if backoffice is not None and flow.direction == "pull" and flow.name in entities.CATALOGUE \
                    and flow.name != "customers":
                _check_hub(reader, backoffice.type, flow, f"{key}.flows.{flow_name}", flow_item.line)
            flows.append(flow)
    listed = {f.name for f in flows}
    if "orders" in listed and not order_warehouse:
        reader.problem(section.line_of("order_warehouse"), f"{key}.order_warehouse",
                       "the warehouse this channel's orders debit (required with the orders flow)", "nothing")
    # the warehouses are summed into what a channel gets; stock read from the channel (turned around) sums none
    if any(f.name == "stock" and f.direction != "pull" for f in flows) and not warehouses:
        reader.problem(section.line_of("warehouses"), f"{key}.warehouses",
                       "a non-empty list of warehouses whose stock is summed (required with the stock flow)",
                       "nothing" if not section.has("warehouses") else "an empty list")
    flows.sort(key=lambda f: ALL_FLOWS.index(f.name))
    adopt = section.get("adopt", "bool", False)
    if adopt and capabilities is not None and not _can_list(type_name):
        reader.problem(section.line_of("adopt"), f"{key}.adopt",
                       "false: a channel of this type cannot list its products (import a DE/PARA CSV with "
                       "`syncagent mapping import` instead)", f"true on a {type_name} channel")
    return ChannelConfig(
        name=name, type=type_name, enabled=enabled, base_url=section.get("base_url", "url", "", required=True),
        flows=tuple(flows), warehouses=warehouses, order_warehouse=order_warehouse,
        safety_stock=own.safety_stock, shadow=section.get("shadow", "bool", False), http=own.http, options=options,
        sku_mapping=section.get("sku_mapping", "str", "optional", choices=SKU_MAPPING_MODES),
        adopt=adopt, notifications=_notifications(section.section("notifications")),
    )


def _flow(reader: _Reader, item: _Value, name: str, key: str, inherited: _Inherited) -> FlowConfig | None:
    if name not in ALL_FLOWS:
        close = difflib.get_close_matches(name, ALL_FLOWS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        reader.problem(item.line, key, "one of the flows " + ", ".join(ALL_FLOWS), f"unknown flow {name!r}{hint}")
        return None
    section = _Section(reader, item, key, item.line, "a mapping like {every: 15m} (or nothing)")
    extra = FLOW_OPTIONS.get(name, {})
    section.unknown(FLOW_KEYS | set(extra))
    options = {opt: value for opt, kind in extra.items() if (value := section.get(opt, kind)) is not None}
    return FlowConfig(
        name=name, every=section.get("every", "duration", inherited.every),
        enabled=section.get("enabled", "bool", inherited.enabled),
        direction=_direction(section, name, key),
        batch_size=section.get("batch_size", "batch", inherited.batch_size), options=MappingProxyType(options),
    )


def _direction(section: _Section, name: str, key: str) -> str:
    """The flow's direction: `direction:`, or what `source:` and `sink:` say (they must agree with it).

    `source: channel` (or `sink: backoffice`) turns a catalogue flow around: the channel is read
    and the back office written, as where a shop is the catalogue's master.
    """
    given = section.get("direction", "str", None, choices=DIRECTIONS)
    source = section.get("source", "str", None, choices=ENDS)
    sink = section.get("sink", "str", None, choices=ENDS)
    if source is None and sink is None:
        return given or entities.default_direction(name)
    if source is not None and source == sink:
        section.reader.problem(section.line_of("sink"), f"{key}.sink", "the other end of the flow than its source",
                               f"{sink!r}, the same as source")
        return given or entities.default_direction(name)
    from_backoffice = source == "backoffice" if source is not None else sink == "channel"
    implied = entities.PUSH if from_backoffice else entities.PULL
    if given is not None and given != implied:
        where = "source" if source is not None else "sink"
        section.reader.problem(section.line_of(where), f"{key}.{where}",
                               f"a {where} that agrees with direction: {given} (or no direction)",
                               f"{source if where == 'source' else sink!r}, which means direction: {implied}")
        return given
    return implied


def _check_hub(reader: _Reader, type_name: str, flow: FlowConfig, key: str, line: int) -> None:
    """A flow turned around writes to the back office: its connector must take that entity."""
    caps = _capabilities(type_name)
    if caps is not None and flow.name not in caps.push:
        reader.problem(line, key, f"a flow the back office ({type_name}) can receive",
                       f"{flow.name} from the channel ({type_name} cannot take {flow.name})")


def _capabilities(type_name: str) -> Any:
    """The connector's capabilities, or None when they cannot be had (then flows are not judged)."""
    from syncagent.connectors import registry

    try:
        return registry.capabilities(type_name)
    except ConfigError:
        return None


def _can_list(type_name: str) -> bool:
    """Whether the connector can list what a channel holds (adopt and reconcile need it)."""
    from syncagent.connectors import registry

    try:
        return "products" in registry.load(type_name).capabilities.listing
    except ConfigError:
        return True  # an unloadable type is reported on its own


def _check_capability(reader: _Reader, caps: Any, flow: FlowConfig, type_name: str, key: str, line: int) -> None:
    from syncagent.connectors.sac_support import SAC_FLOWS, no_ticket_api

    if flow.name == "deliveries":
        return  # tracked by the carriers of `carriers:` (or the channel, for its own logistics): nothing to need
    why = no_ticket_api(type_name)
    if flow.name in SAC_FLOWS and why:
        reader.problem(line, key, f"no {flow.name} flow on a {type_name} channel (customer service is not offered "
                       f"for {type_name})", f"{flow.name}: {why}")
        return
    for direction in ("push", "pull") if flow.direction == "both" else (flow.direction,):
        kind, entity = FLOW_NEEDS.get((flow.name, direction), (direction, flow.name))
        supported = caps.push if kind == "push" else caps.pull
        if entity not in supported:
            reader.problem(line, key, f"a flow and direction that {type_name} supports",
                           f"{flow.name} with direction {flow.direction} ({type_name} cannot {kind} {entity})")


# -- summary ------------------------------------------------------------------------------------
def describe(config: Config) -> str:
    """The summary `check-config` prints, so an operator sees what the agent will do; secrets are ***."""
    secrets = set(config.secrets)

    def show(options: Mapping[str, Any]) -> str:
        return ", ".join(f"{name}={'***' if str(value) in secrets else value}" for name, value in options.items())

    def http(options: HttpOptions) -> str:
        rate = (f", {options.rate_limit.per_second:g} req/s burst {options.rate_limit.burst}"
                if options.rate_limit else "")
        return (f"timeouts {options.connect_timeout:g}s/{options.read_timeout:g}s, "
                f"{options.max_attempts} attempts{rate}{tls_wording(options)}")

    alerts = config.alerts
    plain = " (LOGIN WITHOUT TLS: allow_plaintext_login)" if alerts and alerts.username and not alerts.starttls else ""
    lines = [
        f"config:  {config.path}", f"journal: {config.journal}",
        f"log:     {config.log.level}, {config.log.format}" + (f", {config.log.file}" if config.log.file else ""),
        f"alerts:  {'e-mail to ' + ', '.join(alerts.to) + ' via ' + alerts.smtp_host + plain if alerts else 'off'}",
        f"backoffice: {config.backoffice.type} at {config.backoffice.base_url}",
        f"    options: {show(config.backoffice.options) or '-'}",
        f"    http: {http(config.backoffice.http)}",
        f"channels: {len(config.channels)}",
    ]
    for channel in config.channels:
        state = "enabled" if channel.enabled else "DISABLED"
        extra = ", shadow: sends nothing" if channel.shadow else ""
        lines.append(f"  {channel.name} ({channel.type}, {state}{extra}) at {channel.base_url}")
        lines.append(f"    warehouses: {', '.join(channel.warehouses) or '-'}; orders debit: "
                     f"{channel.order_warehouse or '-'}; safety stock: {channel.safety_stock}")
        if channel.options:
            lines.append(f"    options: {show(channel.options)}")
        lines.append(f"    http: {http(channel.http)}")
        for flow in channel.flows:
            off = "  (disabled)" if channel.enabled and not flow.enabled else ""
            opts = "".join(f"  {k}: {', '.join(map(str, v)) if isinstance(v, tuple) else v}"
                           for k, v in flow.options.items())
            lines.append(f"    {flow.name:<16} every {_human(flow.every):>5}  {flow.direction:<4}  "
                         f"batch {flow.batch_size}{opts}{off}")
    if config.carriers:
        lines.append(f"carriers: {len(config.carriers)}")
    for carrier in config.carriers:
        lines.append(f"  {carrier.name} ({carrier.type}) at {carrier.base_url}: tracks {', '.join(carrier.names)}")
        lines.append(f"    silent after {_human(carrier.silent_after)}; each shipment polled "
                     + (f"at most every {_human(carrier.poll_every)}" if carrier.poll_every else "every run"))
        if carrier.options:
            lines.append(f"    options: {show(carrier.options)}")
        lines.append(f"    http: {http(carrier.http)}")
    from syncagent.http import redact

    return redact("\n".join(lines), secrets)  # a secret inside another value (a URL) is hidden too


def tls_wording(options: HttpOptions) -> str:
    """How certificates are checked, as it is: a `ca_bundle` is used even when `verify_tls` is false."""
    if options.ca_bundle:
        return f", TLS verified against the CA bundle {options.ca_bundle}"
    return "" if options.verify_tls else ", TLS NOT VERIFIED"


def _human(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
