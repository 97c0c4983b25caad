"""The suite a channel that is only a *source* passes (a shop read, never written), over real HTTP.

`test_channel_conformance.py` is for channels that take the catalogue; a shop whose catalogue,
stock and orders flow out of it takes nothing but the acknowledgement of its orders. A new such
channel adds one `SourceCase` to SOURCE_CASES. The engine relies on exactly these behaviours.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from syncagent import entities
from syncagent.connectors.base import Connector
from syncagent.errors import AuthError
from syncagent.http import HttpSettings
from syncagent.model import BadRecord, Order, Page, Price, Product, StockLevel
from syncagent.simulators import build
from syncagent.simulators.common import RunningServer, serve_in_thread

SECRET = "conformance-source-token-0042"


@dataclass
class SourceCase:
    name: str
    system: str
    connector: Callable[[str, str], Connector]  # (base_url, secret) -> connector
    sim_options: dict[str, str]
    revoke: Callable[[RunningServer], None]


def _jumpseller(url: str, secret: str) -> Connector:
    from syncagent.connectors.jumpseller import JumpsellerConnector

    return JumpsellerConnector("conf", url, {"login": "conf-login", "auth_token": secret, "customer_code": "C1"},
                               HttpSettings(max_attempts=2), sleep=lambda s: None, page_size=4)


def _revoke_jumpseller(server: RunningServer) -> None:
    requests.post(server.url + "/_admin/config", json={"auth_token": "reset-" + SECRET[::-1]}, timeout=10)


SOURCE_CASES = [
    SourceCase("jumpseller", "jumpseller", _jumpseller, {"login": "conf-login", "auth_token": SECRET, "orders": "12"},
               _revoke_jumpseller),
]
KINDS: dict[str, type] = {"products": Product, "prices": Price, "stock": StockLevel}


@pytest.fixture(params=SOURCE_CASES, ids=[c.name for c in SOURCE_CASES])
def source(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[SourceCase, Connector, RunningServer]]:
    case: SourceCase = request.param
    server = serve_in_thread(build(case.system, str(tmp_path / "sim.db"), products=14, seed=3, **case.sim_options))
    connector = case.connector(server.url, SECRET)
    yield case, connector, server
    connector.close()
    server.stop()


def read(connector: Connector, entity: str) -> list[Any]:
    records: list[Any] = []
    for page in connector.pull(entity, None):
        assert isinstance(page, Page)
        records += page.records
    return records


def test_declares_a_source_that_takes_nothing_but_acknowledgements(
        source: tuple[SourceCase, Connector, RunningServer]) -> None:
    _, connector, _ = source
    caps = connector.capabilities
    assert "orders" in caps.pull and set(caps.pull) & set(entities.CATALOGUE)
    assert caps.push == frozenset({"order-acks"}) and caps.importable_statuses and caps.cancelled_statuses
    assert any(spec.secret for spec in type(connector).options.values())  # type: ignore[attr-defined]
    connector.check()


@pytest.mark.parametrize("entity", sorted(KINDS))
def test_a_catalogue_read_twice_gives_the_same_records_with_unique_keys(
        source: tuple[SourceCase, Connector, RunningServer], entity: str) -> None:
    _, connector, _ = source
    if entity not in connector.capabilities.pull:
        pytest.skip(f"it is not a source of {entity}")
    first = read(connector, entity)
    assert first and all(isinstance(r, KINDS[entity]) for r in first)
    assert all(page.cursor is None for page in connector.pull(entity, None))  # read whole: nothing to resume
    assert len({r.key for r in first}) == len(first)
    assert read(connector, entity) == first  # unchanged: a second run sends nothing


def test_orders_then_acknowledging_twice_is_harmless(source: tuple[SourceCase, Connector, RunningServer]) -> None:
    _, connector, _ = source
    records = read(connector, "orders")
    assert records and not [r for r in records if isinstance(r, BadRecord)]
    caps = connector.capabilities
    importable = [r for r in records if r.status in caps.importable_statuses]
    assert importable and [r for r in records if r.status in caps.cancelled_statuses]
    assert [r for r in records if r.status not in (*caps.importable_statuses, *caps.cancelled_statuses)]
    order: Order = importable[0]
    assert order.items and all(i.quantity >= 1 for i in order.items) and order.total >= Decimal("0")
    lines = sum((i.unit_price * i.quantity - i.discount for i in order.items), Decimal("0"))
    assert lines + order.shipping == order.total  # what a back office checks before it takes the order
    ack = connector.prepare("order-acks", {"order_id": order.remote_id, "backoffice_number": "900001"})
    assert connector.push("order-acks", [ack])[0].ok and connector.push("order-acks", [ack])[0].ok


def test_rejected_credentials_raise_auth_error_without_the_secret(
        source: tuple[SourceCase, Connector, RunningServer]) -> None:
    case, connector, server = source
    case.revoke(server)
    with pytest.raises(AuthError) as err:
        read(connector, "orders")
    assert SECRET not in str(err.value)
