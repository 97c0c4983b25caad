from __future__ import annotations

from pathlib import Path

import pytest

from syncagent.config import ConfigProblems, describe, load_config

ROOT = Path(__file__).resolve().parents[2]

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
    flows:
      products: {enabled: false}
"""


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> object:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return load_config(path, env={"GL_SECRET": "s3cret-value", "KEY_A": "key-a-value"} if env is None else env)


def problems(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigProblems) as err:
        load(tmp_path, text, env)
    return [str(p) for p in err.value.problems]


def test_example_config_loads_with_an_empty_environment() -> None:
    config = load_config(ROOT / "config.example.yaml", env={})
    assert [c.name for c in config.channels] == ["loja-centro", "loja-norte"]
    centro = config.channel("loja-centro")
    assert centro.flow("stock") is not None and centro.flow("stock").every == 300  # type: ignore[union-attr]
    assert centro.http.rate_limit is not None and centro.http.rate_limit.per_second == 20
    assert not config.channel("loja-norte").enabled


def test_defaults_are_inherited_and_overridden(tmp_path: Path) -> None:
    config = load(tmp_path, GOOD)
    a = config.channel("loja-a")  # type: ignore[attr-defined]
    assert a.safety_stock == 2 and a.http.read_timeout == 12 and a.http.rate_limit.burst == 10
    flows = {f.name: f for f in a.flows}
    assert flows["orders"].every == 30 and flows["products"].every == 300  # channel every beats defaults
    assert flows["stock"].batch_size == 500 and flows["products"].batch_size == 50
    assert flows["orders"].options["statuses"] == ("approved", "paid")
    assert flows["customers"].direction == "pull" and flows["orders"].direction == "pull"
    assert [f.name for f in a.flows] == ["orders", "products", "stock", "customers"]
    b = config.channel("loja-b")  # type: ignore[attr-defined]
    assert not b.enabled and b.options["api_key"] == ""
    assert config.log.file == "./${HOST}.log"  # type: ignore[attr-defined]  # $${ escapes
    assert config.journal == tmp_path / "j.db"  # type: ignore[attr-defined]
    assert set(config.secrets) == {"s3cret-value", "key-a-value"}  # type: ignore[attr-defined]


def test_env_default_and_unset_variable(tmp_path: Path) -> None:
    config = load(tmp_path, GOOD)
    assert config.backoffice.options["client_id"] == "agent"  # type: ignore[attr-defined]
    found = problems(tmp_path, GOOD, env={"GL_SECRET": "x" * 8})
    assert any(":17:" in p and "KEY_A" in p for p in found), found


def test_every_mistake_reported_at_once_with_line_and_key(tmp_path: Path) -> None:
    text = GOOD.replace("every: 10m", "every: soon").replace("batch_size: 500", "batch_size: 5000") \
        .replace("name: loja-b", "name: Loja B").replace("direction: pull", "direction: sideways")
    found = problems(tmp_path, text)
    assert len(found) == 4, found
    assert found[0].startswith(f"{tmp_path / 'c.yaml'}:9: defaults.every: expected a duration")
    assert any(":24:" in p and "channels[0].flows.stock.batch_size" in p and "5000" in p for p in found)
    assert any(":25:" in p and "sideways" in p for p in found)
    assert any(":26:" in p and "channels[1].name" in p for p in found)


def test_duplicate_names_unknown_keys_and_literal_secrets(tmp_path: Path) -> None:
    text = GOOD.replace("name: loja-b", "name: loja-a").replace("api_key: ${KEY_A}", "api_key: plain-text-key") \
        .replace("every: 5m\n", "evry: 5m\n")
    found = problems(tmp_path, text)
    assert any("unique channel name" in p for p in found)
    assert any("evry" in p and "did you mean 'every'" in p for p in found)
    assert any("api_key" in p and "environment" in p for p in found)


def test_flow_requirements_and_unknown_flow(tmp_path: Path) -> None:
    text = GOOD.replace("    warehouses: [CD01]\n    order_warehouse: CD01\n", "").replace("products: {}", "prodcts: {}")
    found = problems(tmp_path, text)
    assert any("order_warehouse" in p for p in found)
    assert any("warehouses" in p and "stock" in p for p in found)
    assert any("prodcts" in p and "did you mean 'products'" in p for p in found)


def test_invalid_yaml_and_missing_file(tmp_path: Path) -> None:
    found = problems(tmp_path, "backoffice: [unclosed\nchannels: []\n")
    assert len(found) == 1 and "valid YAML" in found[0]
    with pytest.raises(ConfigProblems) as err:
        load_config(tmp_path / "nope.yaml", env={})
    assert "no such file" in str(err.value)


def test_describe_masks_secrets(tmp_path: Path) -> None:
    text = describe(load(tmp_path, GOOD))  # type: ignore[arg-type]
    assert "s3cret-value" not in text and "key-a-value" not in text
    assert "***" in text and "loja-a" in text and "DISABLED" in text
