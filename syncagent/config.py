"""The config file (DESIGN §2, a user contract): YAML → frozen dataclasses, with line-accurate errors.

The YAML is composed into nodes (not loaded into plain values) so every key and value keeps its
line; `${VAR}` / `${VAR:-default}` are expanded from the environment inside strings; `defaults`
are inherited by channels and flows. Every mistake becomes a `Problem` naming file, line, key,
what was expected and what was found, and all of them are reported at once.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from syncagent.errors import ConfigError
from syncagent.model import ALL_FLOWS

DEFAULT_DIRECTIONS = {"orders": "pull", "customers": "both"}
NAME_RE = re.compile(r"^[a-z0-9-]+$")
ENV_RE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True, slots=True)
class RateLimit:
    per_second: float
    burst: int = 1


@dataclass(frozen=True, slots=True)
class HttpOptions:
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    max_attempts: int = 5
    rate_limit: RateLimit | None = None
    ca_bundle: str | None = None
    verify_tls: bool = True


@dataclass(frozen=True, slots=True)
class FlowConfig:
    name: str
    every: float
    enabled: bool = True
    direction: str = "push"
    batch_size: int = 200
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


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
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def flow(self, name: str) -> FlowConfig | None:
        return next((f for f in self.flows if f.name == name), None)


@dataclass(frozen=True, slots=True)
class BackofficeConfig:
    type: str
    base_url: str
    http: HttpOptions = HttpOptions()
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    name: str = "backoffice"


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


@dataclass(frozen=True, slots=True)
class Config:
    path: Path
    journal: Path
    log: LogConfig
    alerts: EmailAlerts | None
    backoffice: BackofficeConfig
    channels: tuple[ChannelConfig, ...]
    secrets: tuple[str, ...] = ()

    def channel(self, name: str) -> ChannelConfig:
        for channel in self.channels:
            if channel.name == name:
                return channel
        known = ", ".join(c.name for c in self.channels) or "none"
        raise ConfigError(f"no channel named {name!r} in {self.path} (channels: {known})")


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    line: int
    key: str
    expected: str
    found: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.key}: expected {self.expected}, found {self.found}"


class ConfigProblems(ConfigError):
    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


# -- reading nodes ------------------------------------------------------------------------------
@dataclass
class _Value:
    """A YAML value with the line it came from (1-based) and whether it came from ${VAR}."""

    value: Any
    line: int
    from_env: bool = False


class _Reader:
    def __init__(self, file: str, env: Mapping[str, str]) -> None:
        self.file = file
        self.env = env
        self.problems: list[Problem] = []
        self.secrets: list[str] = []
        self._loader = yaml.SafeLoader("")

    def problem(self, line: int, key: str, expected: str, found: str) -> None:
        self.problems.append(Problem(self.file, line, key, expected, found))

    def convert(self, node: yaml.Node, key: str) -> _Value:
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            result: dict[str, _Value] = {}
            keys: dict[str, int] = {}
            for knode, vnode in node.value:
                name = str(knode.value)
                if name in keys:
                    self.problem(knode.start_mark.line + 1, _join(key, name), "each key once",
                                 f"a second {name!r} (first on line {keys[name]})")
                keys[name] = knode.start_mark.line + 1
                child = self.convert(vnode, _join(key, name))
                child.line = knode.start_mark.line + 1 if isinstance(vnode, yaml.ScalarNode) else child.line
                result[name] = child
            return _Value(result, line)
        if isinstance(node, yaml.SequenceNode):
            return _Value([self.convert(n, f"{key}[{i}]") for i, n in enumerate(node.value)], line)
        try:
            value = self._loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            self.problem(line, key, "a plain value", str(exc).splitlines()[0])
            return _Value(None, line)
        if isinstance(value, str):
            text, from_env = self.expand(value, line, key)
            return _Value(text, line, from_env)
        return _Value(value, line)

    def expand(self, text: str, line: int, key: str) -> tuple[str, bool]:
        used = False

        def sub(match: re.Match[str]) -> str:
            nonlocal used
            if match.group(0) == "$${":
                return "${"
            used = True
            name, default = match.group(1), match.group(2)
            if name in self.env:
                return self.env[name]
            if default is not None:
                return default
            self.problem(line, key, f"environment variable {name} to be set", "it is not set")
            return ""

        return ENV_RE.sub(sub, text), used


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _plain(value: _Value | None) -> Any:
    if value is None:
        return None
    if isinstance(value.value, dict):
        return {k: _plain(v) for k, v in value.value.items()}
    if isinstance(value.value, list):
        return [_plain(v) for v in value.value]
    return value.value


def _describe_found(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    return repr(value) if not isinstance(value, str) else repr(value[:60])


# -- typed getters ------------------------------------------------------------------------------
class _Section:
    """One mapping of the file: typed getters that record problems instead of raising."""

    def __init__(self, reader: _Reader, value: _Value | None, key: str, line: int) -> None:
        self.reader = reader
        self.key = key
        self.line = value.line if value is not None else line
        self.items: dict[str, _Value] = {}
        if value is not None:
            if isinstance(value.value, dict):
                self.items = value.value
            else:
                reader.problem(value.line, key, "a mapping", _describe_found(_plain(value)))
        self.used: set[str] = set()

    def raw(self, name: str) -> _Value | None:
        self.used.add(name)
        return self.items.get(name)

    def has(self, name: str) -> bool:
        return name in self.items

    def line_of(self, name: str) -> int:
        item = self.items.get(name)
        return item.line if item is not None else self.line

    def get(self, name: str, kind: str, default: Any = None, *, required: bool = False,
            choices: tuple[str, ...] | None = None, secret: bool = False) -> Any:
        item = self.raw(name)
        key = _join(self.key, name)
        if item is None or item.value is None:
            if required:
                self.reader.problem(self.line, key, f"{_KIND_TEXT.get(kind, kind)} (required)", "nothing")
            return default
        value = item.value
        ok, converted = _check(kind, value)
        if not ok:
            self.reader.problem(item.line, key, _KIND_TEXT.get(kind, kind), _describe_found(_plain(item)))
            return default
        if choices is not None and converted not in choices:
            self.reader.problem(item.line, key, "one of " + ", ".join(choices), _describe_found(converted))
            return default
        if secret:
            if not item.from_env and converted:
                self.reader.problem(item.line, key, "a secret from the environment: put ${VAR} here and the value "
                                    "in the environment", "a literal value")
            if converted:
                self.reader.secrets.append(str(converted))
        return converted

    def section(self, name: str) -> _Section | None:
        item = self.raw(name)
        if item is None or item.value is None:
            return None
        return _Section(self.reader, item, _join(self.key, name), self.line)

    def unknown(self, accepted: set[str] | list[str]) -> None:
        for name, item in self.items.items():
            if name not in accepted:
                close = difflib.get_close_matches(name, list(accepted), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.reader.problem(item.line, _join(self.key, name),
                                    f"one of the keys {', '.join(sorted(accepted))}{hint}", f"unknown key {name!r}")


_KIND_TEXT = {
    "str": "a string", "int": "an integer", "float": "a number", "bool": "true or false",
    "list[str]": "a list of strings", "dict": "a mapping", "duration": "a duration like 30s, 15m, 1h or seconds > 0",
    "url": "an http:// or https:// URL", "name": "a name of lower-case letters, digits and -",
    "count": "an integer >= 0", "batch": "an integer from 1 to 1000", "positive": "a number > 0",
}


def _check(kind: str, value: Any) -> tuple[bool, Any]:
    if kind == "str":
        return (isinstance(value, str | int | float) and not isinstance(value, bool)), str(value)
    if kind == "int":
        return (isinstance(value, int) and not isinstance(value, bool)), value
    if kind == "count":
        return (isinstance(value, int) and not isinstance(value, bool) and value >= 0), value
    if kind == "batch":
        return (isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 1000), value
    if kind in ("float", "positive"):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok and kind == "positive":
            ok = value > 0
        return ok, float(value) if ok else value
    if kind == "bool":
        return isinstance(value, bool), value
    if kind == "list[str]":
        ok = isinstance(value, list) and all(isinstance(v.value, str) for v in value)
        return ok, tuple(v.value for v in value) if ok else value
    if kind == "dict":
        return isinstance(value, dict), {k: _plain(v) for k, v in value.items()} if isinstance(value, dict) else value
    if kind == "duration":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value > 0, float(value)
        match = DURATION_RE.match(str(value)) if isinstance(value, str) else None
        if not match:
            return False, value
        seconds = float(match.group(1)) * UNITS[match.group(2)]
        return seconds > 0, seconds
    if kind == "url":
        return isinstance(value, str) and bool(re.match(r"^https?://[^\s/]+", value)), value
    if kind == "name":
        return isinstance(value, str) and bool(NAME_RE.match(value)), value
    raise AssertionError(kind)


# -- the file -----------------------------------------------------------------------------------
TOP_KEYS = {"journal", "log", "alerts", "backoffice", "defaults", "channels"}
HTTP_KEYS = {"connect_timeout", "read_timeout", "max_attempts", "rate_limit", "ca_bundle", "verify_tls"}
DEFAULT_KEYS = {"every", "batch_size", "enabled", "safety_stock", "http", "rate_limit"}
CHANNEL_KEYS = {"name", "type", "enabled", "base_url", "warehouses", "order_warehouse", "safety_stock", "shadow",
                "flows", "every", "batch_size", "http", "rate_limit"}
FLOW_KEYS = {"every", "enabled", "direction", "batch_size", "statuses"}


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate the config; raises `ConfigProblems` listing every problem found."""
    env = os.environ if env is None else env
    if path is None:
        path = env.get("SYNCAGENT_CONFIG") or "syncagent.yaml"
    path = Path(path)
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigProblems([Problem(file, 0, "(file)", "a config file", "no such file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigProblems([Problem(file, 0, "(file)", "a readable UTF-8 file", str(exc))]) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 0
        raise ConfigProblems([Problem(file, line, "(syntax)", "valid YAML", str(getattr(exc, "problem", exc)))]) from None
    reader = _Reader(file, env)
    root = reader.convert(node, "") if node is not None else _Value({}, 1)
    config = _build(reader, path, root)
    if reader.problems:
        raise ConfigProblems(sorted(reader.problems, key=lambda p: p.line))
    assert config is not None
    return config


def _http(section: _Section | None, base: HttpOptions, rate_limit: _Section | None = None) -> HttpOptions:
    if section is None and rate_limit is None:
        return base
    values: dict[str, Any] = {}
    if section is not None:
        section.unknown(HTTP_KEYS)
        for name, kind in (("connect_timeout", "positive"), ("read_timeout", "positive"),
                           ("max_attempts", "int"), ("ca_bundle", "str"), ("verify_tls", "bool")):
            if section.has(name):
                values[name] = section.get(name, kind, getattr(base, name))
        rate_limit = section.section("rate_limit") or rate_limit
    if rate_limit is not None:
        rate_limit.unknown({"per_second", "burst"})
        per_second = rate_limit.get("per_second", "positive", required=True)
        burst = rate_limit.get("burst", "int", 1)
        if per_second is not None:
            values["rate_limit"] = RateLimit(per_second, max(1, burst or 1))
    return HttpOptions(**{**{k: getattr(base, k) for k in HttpOptions.__slots__}, **values})


def _build(reader: _Reader, path: Path, root: _Value) -> Config | None:
    top = _Section(reader, root, "", 1)
    top.unknown(TOP_KEYS)
    base_dir = path.resolve().parent
    journal_text = top.get("journal", "str", "syncagent.db")
    journal = Path(journal_text)
    journal = journal if journal.is_absolute() else base_dir / journal

    log_cfg = LogConfig()
    log_section = top.section("log")
    if log_section is not None:
        log_section.unknown({"level", "format", "file"})
        log_cfg = LogConfig(
            log_section.get("level", "str", "info", choices=("debug", "info", "warning", "error")),
            log_section.get("format", "str", "text", choices=("text", "json")),
            log_section.get("file", "str"),
        )

    alerts = None
    alerts_section = top.section("alerts")
    if alerts_section is not None:
        alerts_section.unknown({"email"})
        email = alerts_section.section("email")
        if email is not None:
            email.unknown({"smtp_host", "smtp_port", "starttls", "username", "password", "from", "to",
                           "failing_cycles", "order_late_minutes"})
            to = email.get("to", "list[str]", (), required=True)
            alerts = EmailAlerts(
                smtp_host=email.get("smtp_host", "str", "", required=True),
                from_addr=email.get("from", "str", "", required=True), to=tuple(to or ()),
                smtp_port=email.get("smtp_port", "int", 587), starttls=email.get("starttls", "bool", True),
                username=email.get("username", "str"), password=email.get("password", "str", secret=True),
                failing_cycles=email.get("failing_cycles", "int", 3),
                order_late_minutes=email.get("order_late_minutes", "int", 15),
            )

    defaults = top.section("defaults") or _Section(reader, None, "defaults", 1)
    defaults.unknown(DEFAULT_KEYS)
    d_every = defaults.get("every", "duration", 900.0)
    d_batch = defaults.get("batch_size", "batch", 200)
    d_enabled = defaults.get("enabled", "bool", True)
    d_safety = defaults.get("safety_stock", "count", 0)
    d_http = _http(defaults.section("http"), HttpOptions(), defaults.section("rate_limit"))

    backoffice = None
    bo = top.section("backoffice")
    if bo is None:
        reader.problem(1, "backoffice", "a backoffice section (type, base_url, credentials)", "nothing")
    else:
        bo_type = bo.get("type", "str", required=True)
        schema = _schema(reader, bo, bo_type, "backoffice.type")
        options = _options(bo, schema)
        bo.unknown({"type", "base_url", "http", "rate_limit", *(schema or {})})
        backoffice = BackofficeConfig(
            type=bo_type or "", base_url=bo.get("base_url", "url", "", required=True),
            http=_http(bo.section("http"), d_http, bo.section("rate_limit")), options=MappingProxyType(options),
        )

    channels: list[ChannelConfig] = []
    names: dict[str, int] = {}
    items = top.raw("channels")
    if items is not None and not isinstance(items.value, list):
        reader.problem(items.line, "channels", "a list of channels", _describe_found(_plain(items)))
    for index, item in enumerate(items.value if items is not None and isinstance(items.value, list) else []):
        channel = _channel(reader, item, f"channels[{index}]", d_every, d_batch, d_enabled, d_safety, d_http)
        if channel is None:
            continue
        if channel.name in names:
            reader.problem(item.line, f"channels[{index}].name", "a unique channel name",
                           f"{channel.name!r} again (first on line {names[channel.name]})")
        names[channel.name] = item.line
        channels.append(channel)
    if backoffice is None:
        return None
    return Config(path=path, journal=journal, log=log_cfg, alerts=alerts, backoffice=backoffice,
                  channels=tuple(channels), secrets=tuple(dict.fromkeys(reader.secrets)))


def _schema(reader: _Reader, section: _Section, type_name: str | None, key: str) -> dict[str, Any] | None:
    if not type_name:
        return None
    from syncagent.connectors import registry

    schema = registry.option_schema(type_name)
    if schema is None:
        reader.problem(section.line_of("type"), key, "one of the types " + ", ".join(sorted(registry.CONNECTORS)),
                       repr(type_name))
    return schema


def _options(section: _Section, schema: dict[str, Any] | None) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for name, spec in (schema or {}).items():
        value = section.get(name, spec.kind, spec.default, required=spec.required, choices=spec.choices,
                            secret=spec.secret)
        if value is not None:
            options[name] = value
    return options


def _channel(reader: _Reader, item: _Value, key: str, d_every: float, d_batch: int, d_enabled: bool,
             d_safety: int, d_http: HttpOptions) -> ChannelConfig | None:
    section = _Section(reader, item, key, item.line)
    if not section.items:
        return None
    name = section.get("name", "name", "", required=True)
    type_name = section.get("type", "str", required=True)
    schema = _schema(reader, section, type_name, f"{key}.type")
    options = _options(section, schema)
    if schema is not None or not type_name:  # with an unknown type its own keys cannot be judged
        section.unknown(CHANNEL_KEYS | set(schema or {}))
    every = section.get("every", "duration", d_every)
    batch = section.get("batch_size", "batch", d_batch)
    enabled = section.get("enabled", "bool", d_enabled)
    warehouses = section.get("warehouses", "list[str]", ())
    order_warehouse = section.get("order_warehouse", "str")
    capabilities = None
    if schema is not None and type_name:
        from syncagent.connectors import registry

        capabilities = registry.capabilities(type_name)
    flows: list[FlowConfig] = []
    flow_section = section.section("flows")
    if flow_section is None:
        reader.problem(section.line, f"{key}.flows", "a mapping of flows (products: {every: 15m}, ...)", "nothing")
    else:
        for flow_name, flow_value in flow_section.items.items():
            fkey = f"{key}.flows.{flow_name}"
            flow_section.used.add(flow_name)
            if flow_name not in ALL_FLOWS:
                close = difflib.get_close_matches(flow_name, ALL_FLOWS, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                reader.problem(flow_value.line, fkey, f"one of the flows {', '.join(ALL_FLOWS)}{hint}",
                               f"unknown flow {flow_name!r}")
                continue
            fs = _Section(reader, flow_value if flow_value.value is not None else _Value({}, flow_value.line), fkey,
                          flow_value.line)
            fs.unknown(FLOW_KEYS)
            direction = fs.get("direction", "str", DEFAULT_DIRECTIONS.get(flow_name, "push"),
                               choices=("push", "pull", "both"))
            statuses = fs.get("statuses", "list[str]")
            if capabilities is not None and direction:
                _check_capability(reader, capabilities, flow_name, direction, type_name or "", fkey, flow_value.line)
            flows.append(FlowConfig(
                name=flow_name, every=fs.get("every", "duration", every), enabled=fs.get("enabled", "bool", True),
                direction=direction, batch_size=fs.get("batch_size", "batch", batch),
                options=MappingProxyType({"statuses": statuses} if statuses else {}),
            ))
    names = {f.name for f in flows}
    if "orders" in names and not order_warehouse:
        reader.problem(section.line, f"{key}.order_warehouse", "the warehouse that this channel's orders debit "
                       "(required with the orders flow)", "nothing")
    if "stock" in names and not warehouses:
        reader.problem(section.line, f"{key}.warehouses", "a non-empty list of warehouses (required with the stock "
                       "flow)", "nothing")
    flows.sort(key=lambda f: ALL_FLOWS.index(f.name))
    return ChannelConfig(
        name=name or "", type=type_name or "", enabled=enabled, base_url=section.get("base_url", "url", "",
                                                                                      required=True),
        flows=tuple(flows), warehouses=tuple(warehouses or ()), order_warehouse=order_warehouse,
        safety_stock=section.get("safety_stock", "count", d_safety), shadow=section.get("shadow", "bool", False),
        http=_http(section.section("http"), d_http, section.section("rate_limit")), options=MappingProxyType(options),
    )


FLOW_NEEDS = {  # what the connector must support for each flow and direction
    ("orders", "pull"): ("pull", "orders"),
    ("customers", "pull"): ("pull", "channel-customers"),
    ("order-events", "push"): ("push", "order-events"),
}


def _check_capability(reader: _Reader, caps: Any, flow: str, direction: str, type_name: str, key: str,
                      line: int) -> None:
    wanted = []
    for d in (("push", "pull") if direction == "both" else (direction,)):
        kind, entity = FLOW_NEEDS.get((flow, d), (d, flow))
        wanted.append((kind, entity))
    for kind, entity in wanted:
        supported = caps.push if kind == "push" else caps.pull
        if entity not in supported:
            reader.problem(line, key, f"a flow that {type_name} can {kind}", f"{flow} ({kind} is not supported)")


def describe(config: Config) -> str:
    """The summary `check-config` prints; secrets are masked."""

    def show(options: Mapping[str, Any]) -> str:
        parts = []
        for name, value in options.items():
            text = "***" if str(value) in config.secrets else str(value)
            parts.append(f"{name}={text}")
        return ", ".join(parts)

    lines = [f"config:  {config.path}", f"journal: {config.journal}",
             f"log:     {config.log.level}, {config.log.format}" + (f", {config.log.file}" if config.log.file else ""),
             f"alerts:  {'e-mail to ' + ', '.join(config.alerts.to) if config.alerts else 'off'}",
             f"backoffice: {config.backoffice.type} at {config.backoffice.base_url} ({show(config.backoffice.options)})",
             f"channels: {len(config.channels)}"]
    for channel in config.channels:
        state = "enabled" if channel.enabled else "DISABLED"
        extra = " shadow" if channel.shadow else ""
        lines.append(f"  {channel.name} ({channel.type}, {state}{extra}) at {channel.base_url}")
        lines.append(f"    warehouses: {', '.join(channel.warehouses) or '-'}; orders debit: "
                     f"{channel.order_warehouse or '-'}; safety stock: {channel.safety_stock}")
        if channel.options:
            lines.append(f"    options: {show(channel.options)}")
        for flow in channel.flows:
            lines.append(f"    {flow.name:<16} every {_human(flow.every):>5}  {flow.direction:<4}  batch {flow.batch_size}"
                         + ("" if flow.enabled else "  (disabled)"))
    return "\n".join(lines)


def _human(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
