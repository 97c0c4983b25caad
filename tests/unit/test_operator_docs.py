"""The documents a new user reads first say what the code does: commands, simulators, ports, the demo."""

from __future__ import annotations

import re
from pathlib import Path

import click
import yaml

from syncagent import demo
from syncagent.cli import main
from syncagent.simulators import netshoes, seeddata, vtex

ROOT = Path(__file__).resolve().parents[2]
SIMULATORS = ROOT / "syncagent" / "simulators"


def command_paths(group: click.Group, prefix: str = "syncagent") -> list[str]:
    paths = []
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            paths += command_paths(command, f"{prefix} {name}")
        else:
            paths.append(f"{prefix} {name}")
    return paths


def test_cli_md_lists_every_command_the_quarantine_ones_included() -> None:
    text = (ROOT / "docs" / "cli.md").read_text()
    paths = command_paths(main)
    assert "syncagent quarantine drop" in paths
    missing = [p for p in paths if f"`{p}" not in text]
    assert missing == []


def test_every_admin_endpoint_and_default_credential_of_the_simulators_is_documented() -> None:
    text = (ROOT / "docs" / "simulators.md").read_text()
    routes = set()
    for source in SIMULATORS.glob("*.py"):
        routes |= set(re.findall(r'"(/_admin/[^"?]*)"', source.read_text()))
    assert len(routes) > 20
    missing = sorted(r for r in routes if r not in text)
    assert missing == []
    for credential in (seeddata.DEMO_CLIENT_ID, seeddata.DEMO_CLIENT_SECRET, seeddata.DEMO_API_KEY,
                       vtex.DEMO_APP_KEY, vtex.DEMO_APP_TOKEN, netshoes.DEMO_CLIENT_ID, netshoes.DEMO_ACCESS_TOKEN):
        assert f"`{credential}`" in text


def test_the_example_config_says_which_ports_its_simulators_need() -> None:
    text = (ROOT / "config.example.yaml").read_text()
    header = text.split("\njournal:", 1)[0]
    ports = re.findall(r"http://127\.0\.0\.1:(\d+)", text)
    assert ports
    for port in ports:
        assert f"--port {port}" in header and port in header


def test_the_demo_config_says_what_it_holds_and_the_readme_the_first_install() -> None:
    config = yaml.safe_load(demo.CONFIG.format(backoffice="http://b", sellerup="http://s"))
    comment = demo.CONFIG.split("\njournal:", 1)[0]
    types = [c["type"] for c in config["channels"]]
    assert types == ["sellerup"] and "one Seller Up tablet channel" in comment
    assert "VTEX" in comment and "demo-vtex" in comment  # the channel `make demo-vtex` adds
    readme = (ROOT / "README.md").read_text()
    assert re.search(r"first `make demo`.*installs.*about 40 s", readme, re.S)
