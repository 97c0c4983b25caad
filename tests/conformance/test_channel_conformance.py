"""The suite every channel connector passes, against its own simulator over real HTTP.

A new channel adds one `ChannelCase` to CASES: how to start its simulator and build its
connector, and a few records it can take. Each check runs for the connectors that declare what
it concerns (`Capabilities`): a source of orders is checked as one, a sink of the catalogue as
one, so a channel that only sends orders (or only receives the catalogue) passes the same suite.
The engine relies on exactly these behaviours.
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


SKYHUB_EMAIL, SKYHUB_ACCOUNT = "conformance@exemplo.com.br", "conformance-accountmanager-0003"


def _skyhub(url: str, secret: str) -> Connector:
    from syncagent.connectors.skyhub import SkyHubConnector

    options = {"email": SKYHUB_EMAIL, "api_key": secret, "account_manager_key": SKYHUB_ACCOUNT}
    return SkyHubConnector("conf", url, options, HttpSettings(max_attempts=2), sleep=lambda s: None)


def _revoke_skyhub(server: RunningServer) -> None:
    import requests

    requests.post(server.url + "/_admin/config", json={"api_key": "revoked-" + SECRET[::-1]}, timeout=10)


def _jumpseller(url: str, secret: str) -> Connector:
    from syncagent.connectors.jumpseller import JumpsellerConnector

    return JumpsellerConnector("conf", url, {"login": "conf-login", "auth_token": secret, "customer_code": "C1"},
                               HttpSettings(max_attempts=2), sleep=lambda s: None, page_size=7)


def _revoke_jumpseller(server: RunningServer) -> None:
    import requests

    requests.post(server.url + "/_admin/config", json={"auth_token": "reset-" + SECRET[::-1]}, timeout=10)
NETSHOES_CLIENT = "netshoes-conformance-app"


def _netshoes(url: str, secret: str) -> Connector:
    from syncagent.connectors.netshoes import NetshoesConnector

    options = {"client_id": NETSHOES_CLIENT, "access_token": secret, "department": "esporte",
               "product_type": "camiseta", "cancellation_reason": 3}
    return NetshoesConnector("conf", url, options, HttpSettings(max_attempts=2), sleep=lambda s: None)


def _netshoes_product(code: str, name: str, barcode: str | None) -> Product:
    return Product(code, name, True, barcode=barcode, brand="Hering", weight_kg="0.250", height_cm="3")


def _revoke_netshoes(server: RunningServer) -> None:
    import requests

    requests.post(server.url + "/_admin/config", json={"access_token": "revoked-" + SECRET[::-1]}, timeout=10)


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


def _pluggto(url: str, secret: str) -> Connector:
    from syncagent.connectors.pluggto import PluggtoConnector

    options = {"client_id": "conf-app", "client_secret": secret, "api_user": "conf-seller", "api_password": secret}
    return PluggtoConnector("conf", url, options, HttpSettings(max_attempts=2), sleep=lambda s: None)


def _revoke_pluggto(server: RunningServer) -> None:
    import requests

    requests.post(server.url + "/_admin/config", json={"api_password": "changed-" + SECRET[::-1]}, timeout=10)


def _via(url: str, secret: str) -> Connector:
    from syncagent.connectors.via import ViaConnector

    options = {"client_id": "conf-client", "access_token": secret, "category_id": 100,
               "category_map": {VIA_GHOST_GROUP: 999_999}}
    return ViaConnector("conf", url, options, HttpSettings(max_attempts=2), sleep=lambda s: None)


VIA_GHOST_GROUP = "SEM-CATEGORIA-VIA"  # mapped to a category Via does not have


def _revoke_via(server: RunningServer) -> None:
    import requests

    requests.post(server.url + "/_admin/tokens/revoke", timeout=10)


CASES = [
    ChannelCase("sellerup", "sellerup", _sellerup, {"api_key": SECRET, "orders": "12"}, _revoke_sellerup,
                _plain_product, Product("P000002", "Ruim", True, barcode="7890000000018")),  # bad check digit
    ChannelCase("vtex", "vtex", _vtex, {"app_key": VTEX_APP_KEY, "app_token": SECRET, "orders": "12"}, _revoke_vtex,
                _vtex_product, _vtex_product("P000002", "Ruim", None, group=VTEX_GHOST_GROUP)),  # unknown category
    ChannelCase("skyhub", "skyhub", _skyhub, {"email": SKYHUB_EMAIL, "api_key": SECRET, "orders": "12",
                                              "account_manager_key": SKYHUB_ACCOUNT, "rate_limits": "0"},
                _revoke_skyhub, _plain_product, Product("P000002", "Ruim", True, brand="Sem Marca")),  # not a brand
    # a shop that is only a source (catalogue, stock, orders out of it): it takes no product to refuse
    ChannelCase("jumpseller", "jumpseller", _jumpseller, {"login": "conf-login", "auth_token": SECRET, "orders": "12"},
                _revoke_jumpseller, _plain_product, _plain_product("P000002", "Ruim", None)),
    ChannelCase("netshoes", "netshoes", _netshoes, {"client_id": NETSHOES_CLIENT, "access_token": SECRET,
                                                    "orders": "12", "rate_per_minute": "0"}, _revoke_netshoes,
                _netshoes_product, Product("P000002", "Ruim", True, barcode="7890000000018", brand="Hering")),
    ChannelCase("mercadolivre", "mercadolivre", _mercadolivre,
                {"client_secret": SECRET, "orders": "12", "shipping_mode": "me1"}, _revoke_mercadolivre,
                _vtex_product, _vtex_product("P000002", "Ruim", None, group=VTEX_GHOST_GROUP),  # unknown category
                lambda server, key: f"{server.url}/_admin/nfe/{key}.xml"),
    ChannelCase("pluggto", "pluggto", _pluggto, {"client_id": "conf-app", "client_secret": SECRET,
                                                 "api_user": "conf-seller", "api_password": SECRET, "orders": "12"},
                _revoke_pluggto, _plain_product, Product("P000002", "Ruim", True, barcode="7890000000018")),  # bad EAN
    ChannelCase("via", "via", _via, {"client_id": "conf-client", "access_token": SECRET, "orders": "12"}, _revoke_via,
                _plain_product, Product("P000002", "Ruim", True, group_code=VIA_GHOST_GROUP)),  # unknown category
]


def _declaring(test: Callable[[ChannelCase], bool]) -> list[ChannelCase]:
    return [case for case in CASES if test(case)]


def _caps(case: ChannelCase) -> Any:
    from syncagent.connectors import registry

    return registry.capabilities(case.system)


PRODUCT_SINKS = _declaring(lambda c: "products" in _caps(c).push)
STOCK_SINKS = _declaring(lambda c: "stock" in _caps(c).push)
ORDER_SOURCES = _declaring(lambda c: "orders" in _caps(c).pull)
LISTERS = _declaring(lambda c: "products" in _caps(c).listing and "products" in _caps(c).push)


def _serve(case: ChannelCase, tmp_path: Path) -> tuple[Connector, RunningServer]:
    server = serve_in_thread(build(case.system, str(tmp_path / "sim.db"), products=30, seed=3, **case.sim_options))
    return case.connector(server.url, SECRET), server


@pytest.fixture
def channel(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[ChannelCase, Connector, RunningServer]]:
    case: ChannelCase = request.param
    connector, server = _serve(case, tmp_path)
    yield case, connector, server
    connector.close()
    server.stop()


def cases(declared: list[ChannelCase]) -> Any:
    """Parametrize `channel` over the cases that declare what a test checks."""
    return pytest.mark.parametrize("channel", declared, ids=[c.name for c in declared], indirect=True)


def orders(connector: Connector, cursor: str | None = None) -> list[Any]:
    records: list[Any] = []
    for page in connector.pull("orders", cursor):
        assert isinstance(page, Page)
        records += page.records
    return records


@cases(CASES)
def test_declares_what_it_does(channel: tuple[ChannelCase, Connector, RunningServer]) -> None:
    case, connector, _ = channel
    caps = connector.capabilities
    assert caps.push or caps.pull
    assert caps.max_batch >= 1 and caps.importable_statuses
    # a cancelled order is never importable: the engine would create it and cancel it at once
    assert not set(caps.importable_statuses) & set(caps.cancelled_statuses)
    assert caps.stable <= caps.push | caps.pull and caps.listing <= caps.push | caps.pull
    assert any(spec.secret for spec in type(connector).options.values())  # type: ignore[attr-defined]
    connector.check()


@cases(PRODUCT_SINKS)
def test_catalogue_batch_gives_one_result_per_record(channel: tuple[ChannelCase, Connector, RunningServer]) -> None:
    case, connector, _ = channel
    good = [connector.prepare("products", case.product(f"P{i:06d}", f"Produto {i}", "7890000000017"))
            for i in range(1, 4)]
    results = connector.push("products", good)
    assert [r.key for r in results] == [o.key for o in good]
    assert all(isinstance(r, PushResult) and r.ok for r in results)
    again = connector.push("products", good)
    assert all(r.ok for r in again)  # a repeat is harmless
    if "stock" in connector.capabilities.push:
        stock = connector.push("stock", [connector.prepare("stock", StockLevel("P000001", 7))])
        assert stock[0].ok


@cases(PRODUCT_SINKS)
def test_stable_payloads_are_the_same_for_the_same_record(channel: tuple[ChannelCase, Connector, RunningServer]) -> None:
    case, connector, _ = channel
    product = case.product("P000009", "Produto estável", None)
    first, second = connector.prepare("products", product), connector.prepare("products", product)
    if "products" in connector.capabilities.stable:  # the engine skips pages it mapped before on this promise
        assert (first.key, first.payload) == (second.key, second.payload)
    assert first.key  # every payload has the key it is journaled under


@cases(STOCK_SINKS)
def test_a_batch_over_the_maximum_still_gives_one_result_per_record_in_order(
        channel: tuple[ChannelCase, Connector, RunningServer]) -> None:
    _, connector, _ = channel
    size = connector.capabilities.max_batch + 1
    batch = [connector.prepare("stock", StockLevel(f"P{i:06d}", i % 5)) for i in range(1, size + 1)]
    results = connector.push("stock", batch)
    assert [r.key for r in results] == [o.key for o in batch]  # a refusal is a result, never a missing one


@cases(PRODUCT_SINKS)
def test_a_refused_record_is_a_result_not_an_exception(channel: tuple[ChannelCase, Connector, RunningServer]) -> None:
    case, connector, _ = channel
    good = connector.prepare("products", case.product("P000001", "Bom", None))
    bad = connector.prepare("products", case.refused)
    results = connector.push("products", [good, bad])
    assert results[0].ok and not results[1].ok
    assert results[1].reason_code and results[1].reason


@cases(LISTERS)
def test_the_listing_shows_what_was_written(channel: tuple[ChannelCase, Connector, RunningServer]) -> None:
    case, connector, _ = channel
    sent = connector.prepare("products", case.product("P000021", "Listado", None))
    assert connector.push("products", [sent])[0].ok
    listed = {item.key for page in connector.listing("products") for item in page}
    assert sent.key in listed


@cases(ORDER_SOURCES)
def test_an_orders_feed_resumed_from_a_cursor_gives_nothing_before_it(
        channel: tuple[ChannelCase, Connector, RunningServer]) -> None:
    _, connector, _ = channel
    pages = list(connector.pull("orders", None))
    assert pages and any(p.records for p in pages)
    cursors = [p.cursor for p in pages if p.cursor is not None]
    if cursors:  # a feed with cursors (a queue or a listing read whole has none to resume from)
        read = {r.key for p in pages for r in p.records if not isinstance(r, BadRecord)}
        resumed = {r.key for r in orders(connector, cursors[-1]) if not isinstance(r, BadRecord)}
        # nothing changed since: at most the last page's records come again (a feed may repeat its tail)
        last = {r.key for r in pages[-1].records if not isinstance(r, BadRecord)}
        assert resumed <= last and resumed <= read


@cases(ORDER_SOURCES)
def test_orders_feed_then_ack_and_events_in_order(channel: tuple[ChannelCase, Connector, RunningServer]) -> None:
    case, connector, server = channel
    records = orders(connector)
    assert records and all(isinstance(r, Order | BadRecord) for r in records)
    approved = [r for r in records if isinstance(r, Order) and r.status in connector.capabilities.importable_statuses]
    assert approved
    order = approved[0]
    assert order.items and all(i.quantity >= 1 for i in order.items) and order.total >= Decimal("0")
    if "order-acks" in connector.capabilities.push:
        ack = connector.prepare("order-acks", {"order_id": order.remote_id, "backoffice_number": "900001"})
        assert connector.push("order-acks", [ack])[0].ok
        assert connector.push("order-acks", [ack])[0].ok  # acknowledging twice is harmless
    if "order-events" not in connector.capabilities.push:
        return
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


@cases(CASES)
def test_rejected_credentials_raise_auth_error_without_the_secret(
        channel: tuple[ChannelCase, Connector, RunningServer]) -> None:
    case, connector, server = channel
    case.revoke(server)
    with pytest.raises(AuthError) as err:
        connector.check()
    assert SECRET not in str(err.value)
