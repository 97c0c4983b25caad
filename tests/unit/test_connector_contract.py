"""The connector contract is explicit: every registered connector has every part of it, declared, not probed."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from syncagent.connectors import registry
from syncagent.connectors.base import BaseConnector, Connector
from syncagent.connectors.rest import RestConnector
from syncagent.doctor import _clients
from syncagent.errors import ChannelError
from syncagent.http import HttpClient, HttpSettings

ROOT = Path(__file__).resolve().parents[2]
MEMBERS = sorted({name for name in vars(Connector) if not name.startswith("_")} | set(Connector.__annotations__))


@pytest.mark.parametrize("type_name", sorted(registry.CONNECTORS))
def test_every_connector_has_every_member_of_the_contract(type_name: str) -> None:
    cls = registry.load(type_name)
    assert issubclass(cls, BaseConnector)
    missing = [name for name in MEMBERS if name != "name" and not hasattr(cls, name)]
    assert missing == []
    assert cls.type_name == type_name and isinstance(dict(cls.options), dict)
    assert inspect.ismethod(cls.from_config)  # a classmethod: built from its own config section
    # a REST connector lists what it declares in `lists`; any other overrides `listing`
    lists = bool(cls.lists) if issubclass(cls, RestConnector) else cls.listing is not BaseConnector.listing
    assert lists == bool(cls.capabilities.listing)  # it lists exactly when it says it does


def test_the_defaults_of_the_optional_parts_say_what_is_missing() -> None:
    class Minimal(BaseConnector):
        type_name = "minimal"

    conn = Minimal()
    conn.name = "loja"
    assert conn.stock_locations() == {} and conn.http_clients() == () and conn.lookup("orders", x="1") is None
    with pytest.raises(ChannelError, match="loja: a minimal system cannot list its products"):
        next(iter(conn.listing("products")))
    conn.close()  # nothing to close


def test_doctor_asks_the_connector_for_its_http_clients() -> None:
    client = HttpClient("http://127.0.0.1:9", HttpSettings(), name="x")

    class Several(BaseConnector):
        def http_clients(self) -> tuple[HttpClient, ...]:
            return (client, client)

    assert _clients(Several()) == [client, client]
    client.close()


def test_nothing_outside_the_registry_probes_a_connector_for_an_attribute() -> None:
    probe = re.compile(r"(?:get|has)attr\((?:connector|ctx\.conn|setup\.connector|self\.backoffice|"
                       r"registry\.load\([^)]*\)|cls|conn)\s*,")
    found = [f"{path.relative_to(ROOT)}:{n}" for path in sorted((ROOT / "syncagent").rglob("*.py"))
             if "simulators" not in path.parts and path.name != "registry.py"
             for n, line in enumerate(path.read_text().splitlines(), 1) if probe.search(line)]
    assert found == []
