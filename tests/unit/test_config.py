"""The config loader: inheritance, ${VAR}, and every problem reported with its file, line and key."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from syncagent.config import (
    ChannelConfig,
    Config,
    ConfigProblems,
    HttpOptions,
    Problem,
    RateLimit,
    describe,
    load_config,
)
from syncagent.connectors import registry
from syncagent.connectors.base import Capabilities, OptionSpec
from syncagent.errors import ConfigError
from syncagent.model import ALL_FLOWS

# the flows of contract 1.1 (tickets need a channel with a ticket API; deliveries a carriers: section): the
# examples' Seller Up channel lists every other flow
SAC_FLOWS = ("tickets", "ticket-answers", "deliveries")
CHANNEL_FLOWS = tuple(f for f in ALL_FLOWS if f not in SAC_FLOWS)

ROOT = Path(__file__).resolve().parents[2]

FAKE_SCHEMAS: dict[str, dict[str, OptionSpec]] = {
    "sellerup": {"api_key": OptionSpec("str", required=True, secret=True)},
    "gestao-lojas": {"client_id": OptionSpec("str", required=True),
                     "client_secret": OptionSpec("str", required=True, secret=True)},
}

GOOD = """\
journal: ./j.db
log: {file: "./$${HOST}.log"}
backoffice:
  type: gestao-lojas
  base_url: http://127.0.0.1:1
  client_id: ${GL_ID:-agent}
  client_secret: ${GL_SECRET}
defaults:
  every: 10m
  batch_size: 50
  safety_stock: 2
  http: {read_timeout: 12, rate_limit: {per_second: 5, burst: 10}}
channels:
  - name: loja-a
    type: sellerup
    base_url: http://127.0.0.1:2
    api_key: ${KEY_A}
    warehouses: [CD01]
    order_warehouse: CD01
    every: 5m
    flows:
      orders: {every: 30s, statuses: [approved, paid]}
      products: {}
      stock: {batch_size: 500}
      customers: {direction: pull}
  - name: loja-b
    type: sellerup
    enabled: false
    base_url: https://example.com
    api_key: ${KEY_B:-}
    safety_stock: 0
    http: {connect_timeout: 1}
    rate_limit: {per_second: 1}
    flows:
      products: {enabled: true}
      prices:
"""
ENV = {"GL_SECRET": "s3cret-value", "KEY_A": "key-a-value"}

# DESIGN §2 verbatim: the user contract, `${VAR}` inside flow mappings included
DESIGN_EXAMPLE = """\
journal: ./syncagent.db            # SQLite change-journal (default next to the config)
log: {level: info, format: text}   # text | json
alerts:                            # optional: one e-mail per new problem, with its cause and fix
  email: {smtp_host: smtp.example.com, smtp_port: 587, starttls: true,
          username: ${SMTP_USER}, password: ${SMTP_PASSWORD},
          from: syncagent@example.com, to: [ti@example.com]}
backoffice:
  type: gestao-lojas
  base_url: https://retaguarda.example.com/api
  client_id: ${GL_CLIENT_ID}
  client_secret: ${GL_CLIENT_SECRET}
defaults:                          # inherited by every channel, overridable per channel and per flow
  every: 15m
  batch_size: 200
channels:
  - name: loja-centro              # unique, [a-z0-9-]; used in logs, the journal and the CLI
    type: sellerup
    enabled: true                  # false: configured but no flow runs (integration switched off)
    base_url: https://sellerup.example.com
    api_key: ${SELLERUP_KEY_CENTRO}
    warehouses: [CD01, LJ01]       # stock sent = sum of these
    order_warehouse: LJ01          # orders from this channel debit this warehouse
    safety_stock: 0
    flows:                         # a flow not listed does not run; `direction` overrides the default
      products: {every: 15m}
      prices: {every: 15m}
      stock: {every: 5m}
      customers: {every: 15m, direction: both}   # push | pull | both
      payment-methods: {every: 1h}
      groups: {every: 1h}
      sellers: {every: 1h}
      orders: {every: 2m}
      order-events: {every: 5m}
"""


@pytest.fixture
def fake_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Judge the loader, not the connectors: fixed option schemas and no capability checks."""
    monkeypatch.setattr(registry, "option_schema", FAKE_SCHEMAS.get)
    monkeypatch.setattr(registry, "capabilities", lambda type_name: None)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Config:
    return load_config(write(tmp_path, text), env=ENV if env is None else env)


def problems(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> list[Problem]:
    with pytest.raises(ConfigProblems) as err:
        load(tmp_path, text, env)
    return err.value.problems


def line_of(text: str, snippet: str) -> int:
    """The 1-based line of the only line of `text` containing `snippet`."""
    lines = [n for n, line in enumerate(text.splitlines(), 1) if snippet in line]
    assert len(lines) == 1, (snippet, lines)
    return lines[0]


# -- the example --------------------------------------------------------------------------------
def test_example_config_loads_with_an_empty_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    try:  # the real connectors' schemas when they import; the documented fakes otherwise
        for type_name in FAKE_SCHEMAS:
            registry.option_schema(type_name)
    except Exception:
        monkeypatch.setattr(registry, "option_schema", FAKE_SCHEMAS.get)
        monkeypatch.setattr(registry, "capabilities", lambda type_name: None)
    config = load_config(ROOT / "config.example.yaml", env={})
    assert config.journal == ROOT / "syncagent.db"
    assert config.backoffice.type == "gestao-lojas"
    assert config.backoffice.options["client_id"] == "syncagent-demo"
    assert [c.name for c in config.channels] == ["loja-centro", "loja-norte"]
    centro = config.channel("loja-centro")
    assert centro.enabled and not centro.shadow
    assert tuple(f.name for f in centro.flows) == CHANNEL_FLOWS  # every flow, in ALL_FLOWS order
    directions = {f.name: f.direction for f in centro.flows}
    assert directions == {**{name: "push" for name in CHANNEL_FLOWS}, "orders": "pull", "customers": "both"}
    stock = centro.flow("stock")
    assert stock is not None and (stock.every, stock.batch_size) == (300, 500)
    assert centro.http.rate_limit == RateLimit(20, 40)
    assert centro.flow("orders").options["statuses"] == ("approved",)  # type: ignore[union-attr]
    norte = config.channel("loja-norte")
    assert not norte.enabled and norte.options["api_key"] == "" and norte.safety_stock == 2
    assert set(config.secrets) == {"demo-secret", "demo-key"}
    assert "demo-secret" not in describe(config) and "demo-key" not in describe(config)


def test_the_environment_overrides_the_example_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "option_schema", FAKE_SCHEMAS.get)
    monkeypatch.setattr(registry, "capabilities", lambda type_name: None)
    config = load_config(ROOT / "config.example.yaml", env={"GL_CLIENT_SECRET": "real-secret-1"})
    assert config.backoffice.options["client_secret"] == "real-secret-1"
    assert "real-secret-1" in config.secrets and "demo-secret" not in config.secrets


@pytest.mark.usefixtures("fake_registry")
def test_the_design_example_loads_verbatim(tmp_path: Path) -> None:
    env = {"SMTP_USER": "agent", "SMTP_PASSWORD": "smtp-pass", "GL_CLIENT_ID": "id", "GL_CLIENT_SECRET": "gl-pass",
           "SELLERUP_KEY_CENTRO": "su-key"}
    config = load(tmp_path, DESIGN_EXAMPLE, env)
    assert config.alerts is not None and (config.alerts.username, config.alerts.password) == ("agent", "smtp-pass")
    assert config.alerts.from_addr == "syncagent@example.com" and config.alerts.to == ("ti@example.com",)
    centro = config.channel("loja-centro")
    assert tuple(f.name for f in centro.flows) == CHANNEL_FLOWS and centro.flow("orders").every == 120  # type: ignore[union-attr]
    assert set(config.secrets) == {"smtp-pass", "gl-pass", "su-key"}


# -- inheritance --------------------------------------------------------------------------------
@pytest.mark.usefixtures("fake_registry")
def test_defaults_are_inherited_and_overridden_at_channel_and_flow_level(tmp_path: Path) -> None:
    config = load(tmp_path, GOOD)
    a = config.channel("loja-a")
    assert a.safety_stock == 2  # from defaults
    assert a.http == HttpOptions(read_timeout=12, rate_limit=RateLimit(5, 10))  # defaults.http, key by key
    flows = {f.name: f for f in a.flows}
    assert flows["orders"].every == 30  # flow beats channel
    assert flows["products"].every == 300  # channel beats defaults
    assert flows["stock"].batch_size == 500 and flows["products"].batch_size == 50
    assert flows["orders"].options["statuses"] == ("approved", "paid")
    assert flows["customers"].direction == "pull" and flows["orders"].direction == "pull"
    assert flows["products"].direction == "push"
    assert [f.name for f in a.flows] == ["orders", "products", "stock", "customers"]  # ALL_FLOWS order
    assert a.flow("prices") is None
    b = config.channel("loja-b")
    assert not b.enabled and b.options["api_key"] == "" and b.safety_stock == 0
    assert b.http == HttpOptions(connect_timeout=1, read_timeout=12, rate_limit=RateLimit(1, 1))
    assert b.flow("products").enabled and not b.flow("prices").enabled  # type: ignore[union-attr]
    assert b.flow("prices").every == 600  # type: ignore[union-attr]  # a flow with no body: all inherited
    assert config.log.file == str(tmp_path / "${HOST}.log")  # $${ escapes; relative to the file
    assert config.journal == tmp_path / "j.db"
    assert set(config.secrets) == {"s3cret-value", "key-a-value"}


@pytest.mark.usefixtures("fake_registry")
def test_journal_defaults_next_to_the_config_and_every_defaults_to_15m(tmp_path: Path) -> None:
    text = GOOD.replace("journal: ./j.db\n", "").replace("  every: 10m\n", "").replace("    every: 5m\n", "")
    config = load(tmp_path, text)
    assert config.journal == tmp_path / "syncagent.db"
    assert config.channel("loja-a").flow("products").every == 900  # type: ignore[union-attr]


@pytest.mark.usefixtures("fake_registry")
def test_defaults_enabled_false_switches_channels_and_their_flows_off(tmp_path: Path) -> None:
    config = load(tmp_path, GOOD.replace("  batch_size: 50\n", "  batch_size: 50\n  enabled: false\n"))
    a = config.channel("loja-a")
    assert not a.enabled and not any(f.enabled for f in a.flows)
    on = load(tmp_path, GOOD.replace("  batch_size: 50\n", "  batch_size: 50\n  enabled: false\n")
              .replace("    every: 5m\n", "    every: 5m\n    enabled: true\n"))
    assert on.channel("loja-a").enabled and all(f.enabled for f in on.channel("loja-a").flows)


# -- the environment ----------------------------------------------------------------------------
@pytest.mark.usefixtures("fake_registry")
def test_env_variables_defaults_and_escapes(tmp_path: Path) -> None:
    config = load(tmp_path, GOOD)
    assert config.backoffice.options["client_id"] == "agent"  # ${GL_ID:-agent}, GL_ID unset
    assert config.backoffice.options["client_secret"] == "s3cret-value"
    config = load(tmp_path, GOOD, env={**ENV, "GL_ID": "from-env"})
    assert config.backoffice.options["client_id"] == "from-env"
    config = load(tmp_path, GOOD, env={**ENV, "GL_ID": ""})  # empty counts as unset for :-, as in the shell
    assert config.backoffice.options["client_id"] == "agent"
    # a plain scalar takes the type of what it expands to; a quoted one stays a string
    text = GOOD.replace("  batch_size: 50\n", "  batch_size: ${BATCH:-50}\n") \
        .replace("order_warehouse: CD01", 'order_warehouse: "${WH:-007}"')
    config = load(tmp_path, text, env={**ENV, "BATCH": "70"})
    assert config.channel("loja-a").flow("products").batch_size == 70  # type: ignore[union-attr]
    assert config.channel("loja-a").order_warehouse == "007"


@pytest.mark.usefixtures("fake_registry")
def test_unset_variable_is_one_problem_on_its_line(tmp_path: Path) -> None:
    found = problems(tmp_path, GOOD, env={"GL_SECRET": "x" * 8})
    assert len(found) == 1, found
    assert (found[0].line, found[0].key) == (line_of(GOOD, "${KEY_A}"), "channels[0].api_key")
    assert "environment variable KEY_A is not set" in str(found[0])


@pytest.mark.usefixtures("fake_registry")
def test_malformed_reference_is_a_problem(tmp_path: Path) -> None:
    found = problems(tmp_path, GOOD.replace("${GL_ID:-agent}", "${GL_ID:-agent"))
    assert [(p.line, p.key) for p in found] == [(line_of(GOOD, "GL_ID"), "backoffice.client_id")]


# -- problems -----------------------------------------------------------------------------------
@pytest.mark.usefixtures("fake_registry")
def test_four_mistakes_are_four_problems_with_their_lines_and_keys(tmp_path: Path) -> None:
    text = GOOD.replace("every: 10m", "every: soon").replace("batch_size: 500", "batch_size: 5000") \
        .replace("name: loja-b", "name: Loja B").replace("direction: pull", "direction: sideways")
    found = problems(tmp_path, text)
    file = str(tmp_path / "c.yaml")
    assert [(p.file, p.line, p.key) for p in found] == [
        (file, line_of(text, "every: soon"), "defaults.every"),
        (file, line_of(text, "5000"), "channels[0].flows.stock.batch_size"),
        (file, line_of(text, "sideways"), "channels[0].flows.customers.direction"),
        (file, line_of(text, "Loja B"), "channels[1].name"),
    ]
    assert str(found[0]) == (f"{file}:9: defaults.every: expected a duration > 0 like 30s, 15m, 1h, 1d or a "
                             "number of seconds, found 'soon'")
    assert found[1].expected == "an integer from 1 to 1000" and found[1].found == "5000"
    assert found[2].expected == "one of push, pull, both" and found[2].found == "'sideways'"
    assert "lower-case" in found[3].expected and found[3].found == "'Loja B'"
    assert str(ConfigProblems(found)).count("\n") == 3  # one line each, all at once


@pytest.mark.usefixtures("fake_registry")
def test_problem_text_has_the_documented_shape(tmp_path: Path) -> None:
    found = problems(tmp_path, GOOD.replace("safety_stock: 0", "safety_stock: abc"))
    assert [str(p) for p in found] == [
        f"{tmp_path / 'c.yaml'}:{line_of(GOOD, 'safety_stock: 0')}: channels[1].safety_stock: "
        "expected an integer >= 0, found 'abc'"
    ]


@pytest.mark.usefixtures("fake_registry")
def test_duplicate_channel_names(tmp_path: Path) -> None:
    text = GOOD.replace("name: loja-b", "name: loja-a")
    found = problems(tmp_path, text)
    assert len(found) == 1
    assert (found[0].line, found[0].key) == (line_of(GOOD, "name: loja-b"), "channels[1].name")
    assert found[0].expected == "a unique channel name"
    assert f"first on line {line_of(GOOD, 'name: loja-a')}" in found[0].found


@pytest.mark.usefixtures("fake_registry")
@pytest.mark.parametrize("value", ["0", "-5", "5x", "1w", "soon", "true", "0s", "[1]"])
def test_bad_durations(tmp_path: Path, value: str) -> None:
    found = problems(tmp_path, GOOD.replace("every: 30s", f"every: {value}"))
    assert [(p.line, p.key) for p in found] == [(line_of(GOOD, "every: 30s"), "channels[0].flows.orders.every")]
    assert "duration" in found[0].expected


@pytest.mark.usefixtures("fake_registry")
@pytest.mark.parametrize(("value", "seconds"), [("30s", 30), ("15m", 900), ("1h", 3600), ("1d", 86400),
                                                ("45", 45), ("2.5", 2.5), ("1.5h", 5400), ('"90"', 90)])
def test_good_durations(tmp_path: Path, value: str, seconds: float) -> None:
    config = load(tmp_path, GOOD.replace("every: 30s", f"every: {value}"))
    assert config.channel("loja-a").flow("orders").every == seconds  # type: ignore[union-attr]


@pytest.mark.usefixtures("fake_registry")
def test_literal_secret_is_refused_and_not_echoed(tmp_path: Path) -> None:
    text = GOOD.replace("api_key: ${KEY_A}", "api_key: plain-text-key")
    found = problems(tmp_path, text)
    assert [(p.line, p.key) for p in found] == [(line_of(text, "plain-text-key"), "channels[0].api_key")]
    assert "put secrets in the environment: ${VAR}" in str(found[0])
    assert "plain-text-key" not in str(found[0])


@pytest.mark.usefixtures("fake_registry")
def test_empty_required_secret_is_refused_only_on_an_enabled_channel(tmp_path: Path) -> None:
    text = GOOD.replace("    enabled: false\n", "")
    found = problems(tmp_path, text)
    assert [(p.line, p.key, p.found) for p in found] == [
        (line_of(text, "${KEY_B:-}"), "channels[1].api_key", "an empty value")]


@pytest.mark.usefixtures("fake_registry")
def test_unknown_keys_suggest_the_closest(tmp_path: Path) -> None:
    text = GOOD.replace("    every: 5m\n", "    evry: 5m\n").replace("log:", "logs:") \
        .replace("products: {}", "prodcts: {}").replace("{every: 30s,", "{every: 30s, batch: 3,")
    found = {p.key: p for p in problems(tmp_path, text)}
    assert set(found) == {"channels[0].evry", "logs", "channels[0].flows.prodcts", "channels[0].flows.orders.batch"}
    assert found["channels[0].evry"].found == "unknown key 'evry' (did you mean 'every'?)"
    assert "api_key" in found["channels[0].evry"].expected  # the connector's own keys are listed too
    assert found["channels[0].evry"].line == line_of(text, "evry")
    assert "did you mean 'log'" in found["logs"].found
    assert "did you mean 'products'" in found["channels[0].flows.prodcts"].found
    assert "did you mean 'batch_size'" in found["channels[0].flows.orders.batch"].found


@pytest.mark.usefixtures("fake_registry")
def test_statuses_is_an_orders_option_only(tmp_path: Path) -> None:
    found = problems(tmp_path, GOOD.replace("products: {}", "products: {statuses: [x]}"))
    assert [p.key for p in found] == ["channels[0].flows.products.statuses"]


@pytest.mark.usefixtures("fake_registry")
def test_unknown_type_lists_the_known_types(tmp_path: Path) -> None:
    text = GOOD.replace("type: sellerup\n    base_url: http://127.0.0.1:2", "type: selerup\n    base_url: http://x")
    found = problems(tmp_path, text)
    assert [(p.line, p.key) for p in found] == [(line_of(text, "selerup"), "channels[0].type")]
    assert re.search(r"gestao-lojas, (.+, )?sellerup", found[0].expected) and "did you mean 'sellerup'" in found[0].found


@pytest.mark.usefixtures("fake_registry")
def test_required_option_missing_and_type_mismatch(tmp_path: Path) -> None:
    text = GOOD.replace("  client_id: ${GL_ID:-agent}\n", "").replace("safety_stock: 2", "safety_stock: [2]")
    found = {p.key: p for p in problems(tmp_path, text)}
    assert set(found) == {"backoffice.client_id", "defaults.safety_stock"}
    assert found["backoffice.client_id"].expected == "a string (required)"
    assert found["backoffice.client_id"].line == line_of(text, "backoffice:")
    assert (found["defaults.safety_stock"].expected, found["defaults.safety_stock"].found) == \
        ("an integer >= 0", "a list")


@pytest.mark.usefixtures("fake_registry")
def test_orders_need_an_order_warehouse_and_stock_needs_warehouses(tmp_path: Path) -> None:
    text = GOOD.replace("    warehouses: [CD01]\n    order_warehouse: CD01\n", "")
    found = {p.key: p for p in problems(tmp_path, text)}
    assert set(found) == {"channels[0].order_warehouse", "channels[0].warehouses"}
    assert "orders flow" in found["channels[0].order_warehouse"].expected
    assert "stock flow" in found["channels[0].warehouses"].expected
    empty = problems(tmp_path, GOOD.replace("warehouses: [CD01]", "warehouses: []"))
    assert [(p.line, p.key) for p in empty] == [(line_of(GOOD, "warehouses: [CD01]"), "channels[0].warehouses")]


@pytest.mark.usefixtures("fake_registry")
def test_values_are_checked(tmp_path: Path) -> None:
    text = (GOOD.replace("base_url: http://127.0.0.1:2", "base_url: 127.0.0.1:2")
            .replace("log: {", "log: {level: loud, format: xml, ")
            .replace("  batch_size: 50\n", "  batch_size: 0\n")
            .replace("read_timeout: 12", "read_timeout: -1"))
    found = {p.key: p.found for p in problems(tmp_path, text)}
    assert found == {"channels[0].base_url": "'127.0.0.1:2'", "log.level": "'loud'", "log.format": "'xml'",
                     "defaults.batch_size": "0", "defaults.http.read_timeout": "-1"}


@pytest.mark.usefixtures("fake_registry")
def test_codes_stay_strings(tmp_path: Path) -> None:
    """Warehouse codes like 01 are kept as written, not read as numbers."""
    text = GOOD.replace("warehouses: [CD01]", "warehouses: [01, 002, CD01]").replace("order_warehouse: CD01",
                                                                                     "order_warehouse: 01")
    channel = load(tmp_path, text).channel("loja-a")
    assert channel.warehouses == ("01", "002", "CD01") and channel.order_warehouse == "01"


@pytest.mark.usefixtures("fake_registry")
def test_unknown_top_level_key_and_x_extensions_with_merge_keys(tmp_path: Path) -> None:
    found = problems(tmp_path, GOOD + "chanels: []\n")
    assert [(p.key, p.line) for p in found] == [("chanels", len(GOOD.splitlines()) + 1)]
    assert "did you mean 'channels'" in found[0].found
    text = GOOD.replace("channels:\n", "x-sellerup: &su\n  type: sellerup\n  api_key: ${KEY_A}\nchannels:\n") \
        + "  - <<: *su\n    name: loja-c\n    base_url: https://c.example.com\n    flows: {products: {}}\n"
    c = load(tmp_path, text).channel("loja-c")
    assert (c.type, c.options["api_key"]) == ("sellerup", "key-a-value")


@pytest.mark.usefixtures("fake_registry")
def test_duplicate_keys_are_problems(tmp_path: Path) -> None:
    text = GOOD.replace("    every: 5m\n", "    every: 5m\n    every: 6m\n")
    found = problems(tmp_path, text)
    assert [(p.line, p.key) for p in found] == [(line_of(text, "every: 6m"), "channels[0].every")]


@pytest.mark.usefixtures("fake_registry")
def test_rate_limit_shorthand_and_conflict(tmp_path: Path) -> None:
    text = GOOD.replace("http: {connect_timeout: 1}", "http: {connect_timeout: 1, rate_limit: {per_second: 3}}")
    found = problems(tmp_path, text)
    assert [(p.line, p.key) for p in found] == [(line_of(text, "    rate_limit: {per_second: 1}"),
                                                 "channels[1].rate_limit")]
    off = load(tmp_path, GOOD.replace("rate_limit: {per_second: 1}", "rate_limit: null"))
    assert off.channel("loja-b").http.rate_limit is None  # an inherited limit switched off


@pytest.mark.usefixtures("fake_registry")
def test_alerts(tmp_path: Path) -> None:
    alerts = ("alerts:\n  email: {smtp_host: smtp.example.com, username: ${SMTP_USER:-}, password: ${SMTP_PW},\n"
              "          from: syncagent@example.com, to: [ti@example.com, ops@example.com]}\n")
    config = load(tmp_path, alerts + GOOD, env={**ENV, "SMTP_PW": "mail-secret"})
    assert config.alerts is not None
    assert (config.alerts.smtp_port, config.alerts.starttls, config.alerts.username) == (587, True, None)
    assert config.alerts.to == ("ti@example.com", "ops@example.com") and "mail-secret" in config.secrets
    bad = alerts.replace("[ti@example.com, ops@example.com]", "ti@example.com").replace("${SMTP_PW}", "pw1234")
    found = {p.key: p for p in problems(tmp_path, bad + GOOD)}
    assert set(found) == {"alerts.email.to", "alerts.email.password"}
    assert "list of e-mail addresses" in found["alerts.email.to"].expected
    assert found["alerts.email.to"].line == 3


@pytest.mark.usefixtures("fake_registry")
def test_capabilities_refuse_a_flow_the_connector_cannot_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    caps = Capabilities(push=frozenset({"products", "stock", "customers"}), pull=frozenset({"orders"}))
    monkeypatch.setattr(registry, "capabilities", lambda type_name: caps)
    found = problems(tmp_path, GOOD)
    assert [(p.line, p.key) for p in found] == [(line_of(GOOD, "direction: pull"), "channels[0].flows.customers"),
                                                (line_of(GOOD, "prices:"), "channels[1].flows.prices")]
    assert "cannot pull channel-customers" in found[0].found


def test_invalid_yaml_is_one_problem_with_the_parser_line(tmp_path: Path) -> None:
    found = problems(tmp_path, "journal: ./j.db\nbackoffice: [unclosed\nchannels: []\n")
    assert len(found) == 1
    assert (found[0].line, found[0].key, found[0].expected) == (3, "(syntax)", "valid YAML")
    found = problems(tmp_path, "journal: ./j.db\nlog:\n\tlevel: info\n")
    assert [(p.line, p.key) for p in found] == [(3, "(syntax)")]


def test_missing_file_and_where_the_file_is_looked_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigProblems) as err:
        load_config(tmp_path / "nope.yaml", env={})
    assert [(p.line, p.found) for p in err.value.problems] == [(0, "file not found")]
    assert isinstance(err.value, ConfigError) and err.value.exit_code == 2
    with pytest.raises(ConfigProblems) as err:
        load_config(env={"SYNCAGENT_CONFIG": str(tmp_path / "from-env.yaml")})
    assert err.value.problems[0].file == str(tmp_path / "from-env.yaml")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigProblems) as err:
        load_config(env={})
    assert err.value.problems[0].file == "syncagent.yaml"


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    found = problems(tmp_path, "- a\n- b\n")
    assert [(p.line, p.key, p.found) for p in found] == [(1, "(top level)", "a list")]


# -- lookups and the summary --------------------------------------------------------------------
@pytest.mark.usefixtures("fake_registry")
def test_channel_lookup_names_the_known_channels(tmp_path: Path) -> None:
    config = load(tmp_path, GOOD)
    assert isinstance(config.channel("loja-a"), ChannelConfig)
    with pytest.raises(ConfigError, match="loja-a, loja-b"):
        config.channel("loja-z")


@pytest.mark.usefixtures("fake_registry")
def test_describe_masks_secrets(tmp_path: Path) -> None:
    config = load(tmp_path, GOOD.replace("http://127.0.0.1:2", "http://127.0.0.1:2/${KEY_A}"))
    text = describe(config)
    assert "s3cret-value" not in text and "key-a-value" not in text  # in options and inside the URL
    assert "client_secret=***" in text and "api_key=***" in text and "client_id=agent" in text
    assert "loja-a (sellerup, enabled)" in text and "loja-b (sellerup, DISABLED)" in text
    assert "warehouses: CD01" in text
    assert any(line.split()[:5] == ["orders", "every", "30s", "pull", "batch"] for line in text.splitlines())
    assert any(line.split()[:4] == ["stock", "every", "5m", "push"] for line in text.splitlines())


# -- the registry -------------------------------------------------------------------------------
def test_registry_knows_its_types_and_refuses_others(monkeypatch: pytest.MonkeyPatch) -> None:
    assert registry.option_schema("nope") is None and registry.capabilities("nope") is None
    with pytest.raises(ConfigError, match=r"gestao-lojas, (.+, )?sellerup"):
        registry.load("nope")
    monkeypatch.setitem(registry.CONNECTORS, "broken", "syncagent.connectors.does_not_exist:Nothing")
    with pytest.raises(ConfigError, match="cannot be loaded"):
        registry.load("broken")


def test_registry_reads_the_connector_class(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.CONNECTORS, "fake", f"{__name__}:FakeConnector")
    assert registry.load("fake") is FakeConnector
    assert registry.option_schema("fake") == FakeConnector.options
    assert registry.capabilities("fake") == FakeConnector.capabilities


def test_a_registered_fake_type_is_validated_like_any_other(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.CONNECTORS, "fake", f"{__name__}:FakeConnector")
    monkeypatch.setattr(registry, "option_schema", lambda t: FakeConnector.options if t == "fake" else
                        FAKE_SCHEMAS.get(t))
    text = GOOD.replace("type: sellerup\n    base_url: http://127.0.0.1:2\n    api_key: ${KEY_A}",
                        "type: fake\n    base_url: http://127.0.0.1:2\n    account: 7\n    region: mars")
    found = {p.key: p for p in problems(tmp_path, text)}
    assert set(found) == {"channels[0].region", "channels[0].flows.customers"}
    assert found["channels[0].region"].expected == "one of eu, us"
    text = text.replace("region: mars", "region: eu").replace("      customers: {direction: pull}\n", "")
    channel = load(tmp_path, text).channel("loja-a")
    assert dict(channel.options) == {"account": "7", "region": "eu", "tags": ()}


class FakeConnector:
    """A connector type that exists only for these tests."""

    options: dict[str, Any] = {
        "account": OptionSpec("str", required=True),
        "region": OptionSpec("str", choices=("eu", "us")),
        "tags": OptionSpec("list[str]", default=()),
    }
    capabilities = Capabilities(push=frozenset({"products", "stock"}), pull=frozenset({"orders"}))


def test_the_docs_and_the_example_name_every_key() -> None:
    """docs/configuration.md and config.example.yaml are kept true: every key the loader accepts is in both."""
    from syncagent import config as module

    docs = (ROOT / "docs" / "configuration.md").read_text()
    example = (ROOT / "config.example.yaml").read_text()
    keys = set().union(module.TOP_KEYS, module.LOG_KEYS, module.EMAIL_KEYS, module.HTTP_KEYS, module.RATE_KEYS,
                       module.DEFAULT_KEYS, module.BACKOFFICE_KEYS, module.CHANNEL_KEYS, module.FLOW_KEYS,
                       module.CARRIER_KEYS, module.LISTEN_KEYS, module.NOTIFICATION_KEYS,
                       *module.FLOW_OPTIONS.values(), *FAKE_SCHEMAS.values())
    assert not [k for k in sorted(keys) if f"`{k}`" not in docs]
    assert not [k for k in sorted(keys) if f"{k}:" not in example]
    assert not [f for f in ALL_FLOWS if f"`{f}`" not in docs or f"{f}:" not in example]


def test_sku_mapping_and_adopt(tmp_path: Path) -> None:
    text = GOOD.replace("    order_warehouse: CD01\n", "    order_warehouse: CD01\n    sku_mapping: required\n    adopt: true\n")
    channel = load(tmp_path, text).channel("loja-a")
    assert (channel.sku_mapping, channel.adopt) == ("required", True)
    assert (load(tmp_path, GOOD).channel("loja-a").sku_mapping, load(tmp_path, GOOD).channel("loja-a").adopt) == (
        "optional", False)
    bad = GOOD.replace("    order_warehouse: CD01\n", "    order_warehouse: CD01\n    sku_mapping: sometimes\n")
    (problem,) = problems(tmp_path, bad)
    assert (problem.key, problem.line, problem.found) == ("channels[0].sku_mapping", line_of(bad, "sometimes"),
                                                          "'sometimes'")


def test_adopt_needs_a_channel_that_can_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from syncagent.connectors.sellerup import SellerUpConnector

    caps = SellerUpConnector.capabilities
    monkeypatch.setattr(SellerUpConnector, "capabilities", replace(caps, listing=caps.listing - {"products"}))
    text = GOOD.replace("    order_warehouse: CD01\n", "    order_warehouse: CD01\n    adopt: true\n")
    (problem,) = problems(tmp_path, text)
    assert (problem.key, problem.line) == ("channels[0].adopt", line_of(text, "adopt: true"))
    assert "mapping import" in problem.expected


@pytest.mark.usefixtures("fake_registry")
def test_an_smtp_login_without_tls_is_refused_unless_allowed(tmp_path: Path) -> None:
    alerts = ("alerts:\n  email: {smtp_host: smtp.example.com, starttls: false, username: alertas,\n"
              "          password: ${SMTP_PW}, from: syncagent@example.com, to: [ti@example.com]}\n")
    env = {**ENV, "SMTP_PW": "mail-secret"}
    (found,) = problems(tmp_path, alerts + GOOD, env=env)
    assert (found.line, found.key) == (2, "alerts.email.starttls")
    assert "allow_plaintext_login" in found.expected and "in clear" in found.found
    allowed = load(tmp_path, alerts.replace("starttls: false,", "starttls: false, allow_plaintext_login: true,")
                   + GOOD, env=env)
    assert allowed.alerts is not None and allowed.alerts.allow_plaintext_login
    assert "LOGIN WITHOUT TLS" in describe(allowed)
    anonymous = load(tmp_path, alerts.replace(" username: alertas,\n         ", "") + GOOD, env=env)
    assert anonymous.alerts is not None and anonymous.alerts.username is None  # no password to protect


@pytest.mark.usefixtures("fake_registry")
def test_check_config_says_how_tls_is_verified(tmp_path: Path) -> None:
    bundled = load(tmp_path, GOOD.replace("http: {connect_timeout: 1}",
                                          "http: {connect_timeout: 1, verify_tls: false, ca_bundle: ./ca.pem}"))
    lines = [line for line in describe(bundled).splitlines() if "http:" in line]
    assert "TLS NOT VERIFIED" not in "\n".join(lines)
    assert f"TLS verified against the CA bundle {tmp_path / 'ca.pem'}" in lines[-1]
    off = load(tmp_path, GOOD.replace("http: {connect_timeout: 1}", "http: {connect_timeout: 1, verify_tls: false}"))
    assert "TLS NOT VERIFIED" in describe(off).splitlines()[-1 - len(off.channel("loja-b").flows)]


def _laughs(levels: int = 9) -> str:
    lines = ["x-a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"x-{cur}: &{cur} [{', '.join([f'*{prev}'] * 9)}]")
    return "\n".join(lines) + "\n"


def _merges(levels: int = 9) -> str:
    lines = ["x-a: &a {" + ", ".join(f"k{i}: {i}" for i in range(9)) + "}"]
    for i in range(1, levels):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"x-{cur}: &{cur} {{<<: [{', '.join([f'*{prev}'] * 9)}]}}")
    return "\n".join(lines) + "\n"


HOSTILE_YAML = {  # name → (file text, what the one problem says)
    "alias bomb": (_laughs() + GOOD, "alias bomb"),
    "merge bomb": (_merges() + GOOD, "alias bomb"),
    "alias in its own anchor": ("x-a: &a [1, *a]\n" + GOOD, "inside its own anchor"),
    "deep nesting": ("x-deep: " + "[" * 3000 + "]" * 3000 + "\n" + GOOD, "nesting too deep"),
}

_HOSTILE_RUNNER = """
import json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))  # without the fix: MemoryError, not a full machine
from syncagent.config import ConfigProblems, load_config
from syncagent.scheduler import Daemon
from tests.unit.test_scheduler import FakeAgent
env = json.loads(sys.argv[1])
found = {}
for path in sys.argv[2:]:
    start = time.monotonic()
    try:
        load_config(path, env=env)
        found[path] = [time.monotonic() - start, "loaded"]
    except ConfigProblems as exc:
        found[path] = [time.monotonic() - start, [str(p) for p in exc.problems]]
daemon = Daemon(FakeAgent([]), config_path=sys.argv[2])  # SIGHUP with the bomb swapped in
start = time.monotonic()
found["reload"] = [time.monotonic() - start if not daemon.reload() else -1, daemon.reloads]
print(json.dumps(found))
"""


def test_hostile_yaml_is_refused_at_once_also_on_reload(tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    paths = []
    for index, (text, _) in enumerate(HOSTILE_YAML.values()):
        paths.append(tmp_path / f"hostile{index}.yaml")
        paths[-1].write_text(text)
    proc = subprocess.run(  # noqa: S603 - a child with capped memory: the bug would eat the machine's
        [sys.executable, "-c", _HOSTILE_RUNNER, json.dumps(ENV), *map(str, paths)], cwd=ROOT,
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = json.loads(proc.stdout)
    for path, (name, (_, says)) in zip(paths, HOSTILE_YAML.items(), strict=True):
        elapsed, problems = found[str(path)]
        assert isinstance(problems, list) and len(problems) == 1 and says in problems[0], (name, problems)
        assert problems[0].startswith(f"{path}:"), problems
        assert name == "deep nesting" or elapsed < 1.0, (name, elapsed)  # parsing 6000 brackets takes its time
    elapsed, reloads = found["reload"]
    assert reloads == 0 and 0 <= elapsed < 1.0


@pytest.mark.usefixtures("fake_registry")
def test_aliases_within_the_budget_still_work(tmp_path: Path) -> None:
    config = load(tmp_path, _laughs(4) + GOOD)  # 9^3 values: a big file, not a bomb
    assert config.channel("loja-a").options["api_key"] == "key-a-value"


@pytest.mark.usefixtures("fake_registry")
def test_a_secret_with_control_characters_is_refused_without_showing_it(tmp_path: Path) -> None:
    found = problems(tmp_path, GOOD, env={**ENV, "KEY_A": "key-a-value\r\n", "GL_SECRET": "s3cret\tvalue"})
    assert [(p.line, p.key) for p in found] == [(line_of(GOOD, "${GL_SECRET}"), "backoffice.client_secret"),
                                                (line_of(GOOD, "${KEY_A}"), "channels[0].api_key")]
    assert "a tab" in found[0].found and "carriage return (\\r) at its end" in found[1].found
    assert "LF line ends" in found[1].expected
    text = "\n".join(map(str, found))
    assert "key-a-value" not in text and "s3cret" not in text


@pytest.mark.usefixtures("fake_registry")
def test_an_alert_address_with_a_line_break_is_refused(tmp_path: Path) -> None:
    alerts = "alerts:\n  email: {smtp_host: smtp.example.com, from: ${FROM}, to: [ti@example.com]}\n"
    (found,) = problems(tmp_path, alerts + GOOD, env={**ENV, "FROM": "syncagent@example.com\r"})
    assert (found.line, found.key) == (2, "alerts.email.from")
