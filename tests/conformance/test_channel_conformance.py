"""The suite every channel connector passes, against its own simulator over real HTTP.

A new channel adds one `ChannelCase` to CASES: how to start its simulator and build its
connector, and a few records it can take. The engine relies on exactly these behaviours.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from syncagent.connectors.base import Connector, PushResult
from syncagent.errors import AuthError
from syncagent.http import HttpSettings
from syncagent.model import BadRecord, Invoice, Order, OrderEvent, Page, Product, Shipment, StockLevel, utcnow
from syncagent.simulators import build
from syncagent.simulators.common import RunningServer, serve_in_thread
from syncagent.simulators.gestao_lojas import nfe_key

SECRET = "conformance-secret-key-0042"


@dataclass
class ChannelCase:
    name: str
    system: str
    connector: Callable[[str, str], Connector]   # (base_url, secret) -> connector
    sim_options: dict[str, str]
    revoke: Callable[[RunningServer], None]
    # (code, name, barcode) -> a product with everything this channel needs to take it
    product: Callable[[str, str, str | None], Product]
    # a product that maps fine but the channel itself refuses when it is sent
    refused: Product
    # where the signed NF-e XML of a key is (channels that take the XML itself); None: nowhere
    xml_url: Callable[[RunningServer, str], str | None] = lambda server, key: None


def _sellerup(url: str, secret: str) -> Connector:
    from syncagent.connectors.sellerup import SellerUpConnector

    return SellerUpConnector("conf", url, {"api_key": secret}, HttpSettings(max_attempts=2), sleep=lambda s: None)


def _revoke_sellerup(server: RunningServer) -> None:
    import requests

    requests.post(server.url + "/_admin/keys/revoke", timeout=10)


def _plain_product(code: str, name: str, barcode: str | None) -> Product:
    return Product(code, name, True, barcode=barcode)


VTEX_APP_KEY = "vtexappkey-conformance-0001"
VTEX_GHOST_GROUP = "SEM-CATEGORIA-VTEX"  # mapped to a category id VTEX does not have


def _vtex(url: str, secret: str) -> Connector:
    from syncagent.connectors.vtex import VtexConnector
    from syncagent.simulators import seeddata

    categories: dict[str, int] = {code: i for i, (code, _n, _p) in enumerate(seeddata.GROUPS, start=1)}
    categories[VTEX_GHOST_GROUP] = 999_999
    brands = {name: 2_000_000 + i for i, name in enumerate(seeddata.BRANDS, start=1)}
    options = {"account": "conf", "app_key": VTEX_APP_KEY, "app_token": secret, "category_map": categories,
               "brand_map": brands, "warehouse_id": "cd01"}
    return VtexConnector("conf", url, options, HttpSettings(max_attempts=2), sleep=lambda s: None)


def _vtex_product(code: str, name: str, barcode: str | None, group: str = "VEST-MASC") -> Product:
    return Product(code, name, True, barcode=barcode, brand="Hering", group_code=group, unit="UN",
                   ncm="61091000", weight_kg="0.250", height_cm="3", width_cm="30", length_cm="40")


def _revoke_vtex(server: RunningServer) -> None:
    import requests

    requests.post(server.url + "/_admin/config", json={"app_token": "revoked-" + SECRET[::-1]}, timeout=10)


ML_CLIENT_ID = "1234567890123456"


def _mercadolivre(url: str, secret: str) -> Connector:
    """Authorized as `syncagent auth` does it: a code from the consent page, exchanged, the tokens stored."""
    import requests

    from syncagent.connectors.base import MemoryState
    from syncagent.connectors.mercadolivre import MercadoLivreConnector
    from syncagent.connectors.oauth import exchange_code
    from syncagent.http import HttpClient

    state = MemoryState()
    code = requests.post(url + "/_admin/auth/code", timeout=10).json()["code"]
    exchange_code(HttpClient(url), state, client_id=ML_CLIENT_ID, client_secret=secret, code=code,
                  redirect_uri="https://loja.example/ml")
    options = {"client_id": ML_CLIENT_ID, "client_secret": secret, "redirect_uri": "https://loja.example/ml",
               "authorize_url": "https://auth.mercadolivre.com.br/authorization", "category_id": "MLB31447",
               "category_map": {VTEX_GHOST_GROUP: "MLB999999"}}
    return MercadoLivreConnector("conf", url, options, HttpSettings(max_attempts=2), sleep=lambda s: None,
                                 state=state)


def _revoke_mercadolivre(server: RunningServer) -> None:
    import requests

    requests.post(server.url + "/_admin/tokens/revoke", timeout=10)


CASES = [
    ChannelCase("sellerup", "sellerup", _sellerup, {"api_key": SECRET, "orders": "12"}, _revoke_sellerup,
                _plain_product, Product("P000002", "Ruim", True, barcode="7890000000018")),  # bad check digit
    ChannelCase("vtex", "vtex", _vtex, {"app_key": VTEX_APP_KEY, "app_token": SECRET, "orders": "12"}, _revoke_vtex,
                _vtex_product, _vtex_product("P000002", "Ruim", None, group=VTEX_GHOST_GROUP)),  # unknown category
    ChannelCase("mercadolivre", "mercadolivre", _mercadolivre,
                {"client_secret": SECRET, "orders": "12", "shipping_mode": "me1"}, _revoke_mercadolivre,
                _vtex_product, _vtex_product("P000002", "Ruim", None, group=VTEX_GHOST_GROUP),  # unknown category
                lambda server, key: f"{server.url}/_admin/nfe/{key}.xml"),
]


@pytest.fixture(params=CASES, ids=[c.name for c in CASES])
def channel(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[ChannelCase, Connector, RunningServer]]:
    case: ChannelCase = request.param
    server = serve_in_thread(build(case.system, str(tmp_path / "sim.db"), products=30, seed=3, **case.sim_options))
    connector = case.connector(server.url, SECRET)
    yield case, connector, server
    connector.close()
    server.stop()


def orders(connector: Connector) -> list[Any]:
    records: list[Any] = []
    for page in connector.pull("orders", None):
        assert isinstance(page, Page)
        records += page.records
    return records


def test_declares_what_it_does(channel: tuple[ChannelCase, Connector, RunningServer]) -> None:
    case, connector, _ = channel
    caps = connector.capabilities
    assert "products" in caps.push and "orders" in caps.pull and "order-acks" in caps.push
    assert caps.max_batch >= 1 and caps.importable_statuses
    assert any(spec.secret for spec in type(connector).options.values())  # type: ignore[attr-defined]
    connector.check()


def test_catalogue_batch_gives_one_result_per_record(channel: tuple[ChannelCase, Connector, RunningServer]) -> None:
    case, connector, _ = channel
    good = [connector.prepare("products", case.product(f"P{i:06d}", f"Produto {i}", "7890000000017"))
            for i in range(1, 4)]
    results = connector.push("products", good)
    assert [r.key for r in results] == [o.key for o in good]
    assert all(isinstance(r, PushResult) and r.ok for r in results)
    again = connector.push("products", good)
    assert all(r.ok for r in again)  # a repeat is harmless
    stock = connector.push("stock", [connector.prepare("stock", StockLevel("P000001", 7))])
    assert stock[0].ok


def test_a_refused_record_is_a_result_not_an_exception(channel: tuple[ChannelCase, Connector, RunningServer]) -> None:
    case, connector, _ = channel
    good = connector.prepare("products", case.product("P000001", "Bom", None))
    bad = connector.prepare("products", case.refused)
    results = connector.push("products", [good, bad])
    assert results[0].ok and not results[1].ok
    assert results[1].reason_code and results[1].reason


def test_orders_feed_then_ack_and_events_in_order(channel: tuple[ChannelCase, Connector, RunningServer]) -> None:
    case, connector, server = channel
    records = orders(connector)
    assert records and all(isinstance(r, Order | BadRecord) for r in records)
    approved = [r for r in records if isinstance(r, Order) and r.status in connector.capabilities.importable_statuses]
    assert approved
    order = approved[0]
    assert order.items and all(i.quantity >= 1 for i in order.items) and order.total >= Decimal("0")
    ack = connector.prepare("order-acks", {"order_id": order.remote_id, "backoffice_number": "900001"})
    assert connector.push("order-acks", [ack])[0].ok
    assert connector.push("order-acks", [ack])[0].ok  # acknowledging twice is harmless
    now = utcnow()
    key = nfe_key("conformance")
    invoiced = OrderEvent("ev1", "900001", "conf", order.remote_id, "invoiced", now,
                          invoice=Invoice(key, "1", "1", xml_url=case.xml_url(server, key)))
    shipped = OrderEvent("ev2", "900001", "conf", order.remote_id, "shipped", now,
                         shipment=Shipment("Correios", "BR123456789BR"))
    early = connector.push("order-events", [connector.prepare("order-events", shipped)])[0]
    assert not early.ok and early.reason_code  # out of order is refused, with a reason
    first = connector.push("order-events", [connector.prepare("order-events", invoiced)])[0]
    assert first.ok, first.reason
    assert connector.push("order-events", [connector.prepare("order-events", shipped)])[0].ok
    assert connector.push("order-events", [connector.prepare("order-events", invoiced)])[0].ok  # already has it


def test_rejected_credentials_raise_auth_error_without_the_secret(
        channel: tuple[ChannelCase, Connector, RunningServer]) -> None:
    case, connector, server = channel
    case.revoke(server)
    with pytest.raises(AuthError) as err:
        orders(connector)
    assert SECRET not in str(err.value)
