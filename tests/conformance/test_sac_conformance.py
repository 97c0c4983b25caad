"""Contract 1.1 conformance: the back office's ticket and delivery endpoints, every ticket channel, every carrier.

Each runs against its simulator over real HTTP, through the connector the agent uses. A new ticket
channel adds a `SacCase`, a new carrier a `CarrierCase`: the engine relies on exactly these
behaviours (stable ticket keys, a refused answer as a result, tracking events oldest first in the
back office's statuses, credentials refused as an AuthError that never quotes the secret).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from syncagent.connectors.base import Connector, Outgoing
from syncagent.connectors.gestao_lojas import GestaoLojasConnector
from syncagent.errors import AuthError
from syncagent.http import HttpSettings
from syncagent.model import BadRecord
from syncagent.model_sac import (
    DELIVERY_STATUSES,
    BackOfficeTicket,
    DeliveryUpdate,
    ShipmentRef,
    Ticket,
    TicketAnswer,
    TicketMessage,
    Tracking,
    TrackingEvent,
)
from syncagent.simulators import build, seeddata
from syncagent.simulators.common import RunningServer, serve_in_thread

SECRET = "conformance-sac-secret-0042"
FAST = HttpSettings(max_attempts=2)
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _serve(system: str, tmp_path: Path, **options: str) -> RunningServer:
    return serve_in_thread(build(system, str(tmp_path / f"{system}.db"), products=20, seed=3, **options))


def _admin(server: RunningServer, method: str, path: str, **kw: Any) -> Any:
    resp = requests.request(method, server.url + path, timeout=10, **kw)
    assert resp.status_code < 400, resp.text
    return resp.json() if resp.content else None


# -- the back office, contract 1.1 --------------------------------------------------------------------
@pytest.fixture
def bo(tmp_path: Path) -> Iterator[tuple[GestaoLojasConnector, RunningServer]]:
    server = _serve("gestao-lojas", tmp_path, client_secret=SECRET)
    conn = GestaoLojasConnector("backoffice", server.url, {"client_id": seeddata.DEMO_CLIENT_ID,
                                                           "client_secret": SECRET}, FAST, sleep=lambda s: None)
    yield conn, server
    conn.close()
    server.stop()


def _ticket(key: str = "question:1") -> BackOfficeTicket:
    kind, remote_id = key.split(":", 1)
    first = TicketMessage("m1", "customer", "Olá?", T0)
    return BackOfficeTicket("loja", Ticket(kind, remote_id, "Pergunta", "waiting_seller", T0, (first,)))


def test_tickets_are_not_idempotent_and_are_found_by_channel_and_external_id(bo: Any) -> None:
    conn, server = bo
    assert conn.lookup("tickets", channel="loja", external_id="question:1") is None
    out = conn.prepare("tickets", _ticket())
    (first,) = conn.push("tickets", [out])
    (second,) = conn.push("tickets", [out])  # NOT idempotent: a second ticket, as the contract says
    assert first.status == second.status == "created" and first.remote_id != second.remote_id
    found = conn.lookup("tickets", channel="loja", external_id="question:1")
    assert found == {"id": first.remote_id, "messages": ["m1"]}
    assert conn.lookup("tickets", channel="other", external_id="question:1") is None


def test_messages_are_idempotent_by_external_id_and_refused_for_an_unknown_ticket(bo: Any) -> None:
    conn, _ = bo
    (ticket,) = conn.push("tickets", [conn.prepare("tickets", _ticket())])
    message = {"ticket_id": ticket.remote_id, "message": TicketMessage("m2", "customer", "Alô?", T0)}
    out = conn.prepare("ticket-messages", message)
    assert [r.status for r in conn.push("ticket-messages", [out, out])] == ["created", "exists"]
    ghost = conn.prepare("ticket-messages", {"ticket_id": "TK999999", "message": message["message"]})
    (refused,) = conn.push("ticket-messages", [ghost])
    assert (refused.status, refused.reason_code) == ("rejected", "not_found")


def test_ticket_events_carry_only_tickets_from_a_channel_in_order(bo: Any) -> None:
    conn, server = bo
    (ticket,) = conn.push("tickets", [conn.prepare("tickets", _ticket())])
    internal = _admin(server, "POST", "/_admin/tickets", json={"subject": "interno"})
    _admin(server, "POST", f"/_admin/tickets/{internal['id']}/reply", json={"body": "nota"})
    _admin(server, "POST", f"/_admin/tickets/{ticket.remote_id}/reply", json={"body": "Resposta"})
    _admin(server, "POST", f"/_admin/tickets/{ticket.remote_id}/status", json={"status": "closed"})
    records = [r for page in conn.pull("ticket-events", None) for r in page.records]
    assert all(isinstance(r, TicketAnswer) for r in records)
    assert [(r.ticket_key, r.type, r.body, r.status) for r in records] == [
        ("question:1", "reply", "Resposta", None), ("question:1", "status", None, "closed")]


def test_delivery_updates_are_idempotent_and_need_a_known_order(bo: Any) -> None:
    conn, server = bo
    customer = _admin(server, "GET", "/_admin/customers")["items"][0]["code"]
    resp = conn.client.get("/products", params={"limit": 50})
    sku = next(p["code"] for p in resp.json()["items"] if p["active"])
    method = conn.client.get("/payment-methods").json()["items"][0]["code"]
    order = {"external_id": "X1", "channel": "loja", "customer_code": customer, "total": "10.00",
             "items": [{"sku": sku, "quantity": 1, "unit_price": "10.00"}],
             "payments": [{"method_code": method, "amount": "10.00"}]}
    (created,) = conn.push("orders", [Outgoing("X1", order)])
    update = DeliveryUpdate(str(created.remote_id), "Correios", "AA123456785BR", TrackingEvent("posted", T0), "carrier")
    out = conn.prepare("deliveries", update)
    assert [r.status for r in conn.push("deliveries", [out, out])] == ["created", "exists"]
    ghost = conn.prepare("deliveries", DeliveryUpdate("1", "Correios", "AA123456785BR", TrackingEvent("posted", T0),
                                                      "carrier"))
    (refused,) = conn.push("deliveries", [ghost])
    assert (refused.status, refused.reason_code) == ("rejected", "not_found")


# -- ticket channels ----------------------------------------------------------------------------------
@dataclass
class SacCase:
    system: str
    sim_options: dict[str, str]
    connector: Callable[[str, str], Connector]
    seed: Callable[[RunningServer], str]  # opens a conversation; the ticket key it becomes
    revoke: dict[str, str]  # sim options under which our secret is wrong


ML_CLIENT_ID = "1234567890123456"


def _ml(url: str, secret: str) -> Connector:
    """Authorized as `syncagent auth` does it (a code exchanged, the tokens kept); a refused code: not authorized."""
    from syncagent.connectors.base import MemoryState
    from syncagent.connectors.mercadolivre import MercadoLivreConnector
    from syncagent.connectors.oauth import exchange_code
    from syncagent.errors import ChannelError
    from syncagent.http import HttpClient

    state = MemoryState()
    code = requests.post(url + "/_admin/auth/code", timeout=10).json()["code"]
    with contextlib.suppress(ChannelError):  # wrong credentials: the connector then has no token to use
        exchange_code(HttpClient(url), state, client_id=ML_CLIENT_ID, client_secret=secret, code=code,
                      redirect_uri="https://loja.example/ml")
    options = {"client_id": ML_CLIENT_ID, "client_secret": secret, "redirect_uri": "https://loja.example/ml",
               "authorize_url": "https://auth.mercadolivre.com.br/authorization"}
    return MercadoLivreConnector("conf", url, options, FAST, sleep=lambda s: None, state=state)


def _skyhub(url: str, secret: str) -> Connector:
    from syncagent.connectors.skyhub import SkyHubConnector

    return SkyHubConnector("conf", url, {"email": "loja@example.com", "api_key": secret,
                                         "account_manager_key": "conf-manager", "reply_call": "chats"},
                           FAST, sleep=lambda s: None)


def _seed_ml(server: RunningServer) -> str:
    _admin(server, "POST", "/_admin/questions", json={"id": 42, "text": "Serve no modelo 2020?"})
    return "question:42"


def _seed_skyhub(server: RunningServer) -> str:
    _admin(server, "POST", "/_admin/sacs/Lojas Americanas-1/messages", json={"parts": "CUSTOMER_SELLER",
                                                                            "content": "Cadê?"})
    return "ticket:Lojas Americanas-1#CUSTOMER_SELLER"


SAC_CASES = [
    SacCase("mercadolivre", {"client_secret": SECRET, "client_id": ML_CLIENT_ID}, _ml, _seed_ml,
            {"client_secret": "other-" + SECRET, "client_id": ML_CLIENT_ID}),
    SacCase("skyhub", {"api_key": SECRET, "account_manager_key": "conf-manager", "email": "loja@example.com"},
            _skyhub, _seed_skyhub, {"api_key": "other-" + SECRET, "account_manager_key": "conf-manager",
                                    "email": "loja@example.com"}),
]


@pytest.mark.parametrize("case", SAC_CASES, ids=lambda c: c.system)
def test_a_ticket_channel_gives_stable_keys_and_refuses_answers_as_results(case: SacCase, tmp_path: Path) -> None:
    server = _serve(case.system, tmp_path, **case.sim_options)
    conn = case.connector(server.url, SECRET)
    try:
        assert {"tickets"} <= conn.capabilities.pull and {"ticket-answers"} <= conn.capabilities.push
        key = case.seed(server)
        first = [r.key for page in conn.pull("tickets", None) for r in page.records if isinstance(r, Ticket)]
        again = [r.key for page in conn.pull("tickets", None) for r in page.records if isinstance(r, Ticket)]
        assert key in first and (key in again or again == [])  # a forward-only feed may give nothing new
        kind = key.split(":", 1)[0]
        ghost = TicketAnswer("E1", "TK1", "conf", f"{kind}:999999#CUSTOMER_SELLER" if kind == "ticket"
                             else f"{kind}:999999", "reply", T0, body="Olá")
        (result,) = conn.push("ticket-answers", [conn.prepare("ticket-answers", ghost)])
        assert result.status == "rejected" and result.reason
    finally:
        conn.close()
        server.stop()


@pytest.mark.parametrize("case", SAC_CASES, ids=lambda c: c.system)
def test_a_ticket_channel_refuses_wrong_credentials_without_quoting_them(case: SacCase, tmp_path: Path) -> None:
    server = _serve(case.system, tmp_path, **case.revoke)
    conn = case.connector(server.url, SECRET)
    try:
        with pytest.raises(AuthError) as caught:
            list(conn.pull("tickets", None))
        assert SECRET not in str(caught.value)
    finally:
        conn.close()
        server.stop()


# -- carriers -------------------------------------------------------------------------------------------
@dataclass
class CarrierCase:
    system: str
    sim_options: dict[str, str]
    connector: Callable[[str, str], Connector]
    seed: Callable[[RunningServer], str]  # a shipment posted then delivered; its code


def _correios(url: str, secret: str) -> Connector:
    from syncagent.connectors.correios import CorreiosConnector

    return CorreiosConnector("correios", url, {"user": "syncagent-demo", "access_code": secret}, FAST,
                             sleep=lambda s: None)


def _jadlog(url: str, secret: str) -> Connector:
    from syncagent.connectors.jadlog import JadlogConnector

    return JadlogConnector("jadlog", url, {"token": secret}, FAST, sleep=lambda s: None)


def _seed_correios(server: RunningServer) -> str:
    for event in ({"codigo": "PO", "tipo": "01", "dtHrCriado": "2026-12-01T08:00:00"},
                  {"codigo": "BDE", "tipo": "01", "dtHrCriado": "2026-12-02T08:00:00"}):
        _admin(server, "POST", "/_admin/objects/AA123456785BR/events", json=event)
    return "AA123456785BR"


def _seed_jadlog(server: RunningServer) -> str:
    for event in ({"status": "EMISSAO", "data": "2026-12-01 08:00:00"}, {"status": "ENTREGUE",
                                                                         "data": "2026-12-02 08:00:00"}):
        _admin(server, "POST", "/_admin/shipments/12345678901234/events", json=event)
    return "12345678901234"


CARRIER_CASES = [
    CarrierCase("correios", {"access_code": SECRET}, _correios, _seed_correios),
    CarrierCase("jadlog", {"token": SECRET}, _jadlog, _seed_jadlog),
]


@pytest.mark.parametrize("case", CARRIER_CASES, ids=lambda c: c.system)
def test_a_carrier_tracks_codes_oldest_first_in_back_office_statuses(case: CarrierCase, tmp_path: Path) -> None:
    server = _serve(case.system, tmp_path, **case.sim_options)
    conn = case.connector(server.url, SECRET)
    try:
        code = case.seed(server)
        other = "AA000000005BR" if case.system == "correios" else "99999999999999"
        refs = [ShipmentRef(case.system, c, "100001", "X1") for c in (code, other)]
        found = {r.key: r for page in conn.pull("tracking", None, {"shipments": refs}) for r in page.records}
        tracking = found[code]
        assert isinstance(tracking, Tracking)
        assert [e.status for e in tracking.events] == ["posted", "delivered"]
        assert all(e.status in DELIVERY_STATUSES and e.occurred_at.tzinfo for e in tracking.events)
        assert isinstance(found.get(other), Tracking | BadRecord | type(None))
        assert not getattr(found.get(other), "events", ())  # unknown to the carrier: no news, no failure
        with pytest.raises(AuthError) as caught:
            list(case.connector(server.url, "wrong-" + SECRET).pull("tracking", None, {"shipments": refs}))
        assert SECRET not in str(caught.value)
    finally:
        conn.close()
        server.stop()
