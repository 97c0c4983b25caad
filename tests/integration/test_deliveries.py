"""Delivery tracking over real HTTP: shipments in order-events polled at Correios/Jadlog into the back office."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from syncagent.agent import Agent
from syncagent.alerts import Alerter
from syncagent.authorize import authorize
from syncagent.config import EmailAlerts, load_config
from syncagent.connectors import registry
from syncagent.connectors.sellerup import SellerUpConnector
from syncagent.journal import Journal
from syncagent.model import Page
from syncagent.model_sac import Tracking, TrackingEvent
from syncagent.report import status_data, status_notes
from tests.integration.harness import Sims, start, write_config
from tests.integration.sac_harness import (
    CARRIER_ENV,
    agent_requests,
    carriers_yaml,
    deliveries,
    place_order,
    s10,
    ship,
    start_carriers,
)


class Me2Channel(SellerUpConnector):
    """A channel that ships with its own logistics ("Mercado Envios"): the tracking is read from it."""

    type_name = "me2-test"
    capabilities = replace(SellerUpConnector.capabilities, owned_tracking=frozenset({"mercado envios"}),
                           pull=SellerUpConnector.capabilities.pull | {"tracking"})
    events: dict[str, list[TrackingEvent]] = {}
    asked: list[str] = []

    def pull(self, entity, cursor, filters=None):  # type: ignore[no-untyped-def, override]
        if entity != "tracking":
            return super().pull(entity, cursor, filters)
        refs = (filters or {})["shipments"]
        type(self).asked += [r.tracking_code for r in refs]
        return iter([Page([Tracking(r.tracking_code, tuple(self.events.get(r.tracking_code, ()))) for r in refs],
                          None)])


@pytest.fixture
def setup(sims: Sims, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    for key, value in CARRIER_ENV.items():
        monkeypatch.setenv(key, value)
    correios, jadlog = start_carriers(tmp_path)
    path = write_config(tmp_path, sims, flows=["deliveries"])
    path.write_text(path.read_text() + carriers_yaml(correios, jadlog))
    yield sims, correios, jadlog, path
    correios.server.stop()
    jadlog.server.stop()


def run(path: Path) -> None:
    with Agent(load_config(path)) as agent:
        (result,) = agent.run_entity("deliveries")
    assert result.status == "ok", result.error


def test_a_correios_parcel_goes_posted_in_transit_delivered_each_once_then_polling_stops(setup) -> None:  # type: ignore[no-untyped-def]
    sims, correios, _, path = setup
    code = s10(12345678)
    number = place_order(sims.bo, "loja-centro", "SU-1001")
    ship(sims.bo, number, "Correios", code)
    correios.admin("POST", f"/_admin/objects/{code}/events", json={"codigo": "PO", "tipo": "01",
                                                                 "dtHrCriado": "2026-12-01T09:30:00"})
    run(path)
    (posted,) = deliveries(sims.bo, number)
    assert (posted["status"], posted["source"], posted["carrier_event"]) == ("posted", "carrier", "PO/01")
    assert posted["occurred_at"] == "2026-12-01T12:30:00Z"  # Brasília local time, given its zone
    run(path)  # nothing new: nothing written again
    assert len(deliveries(sims.bo, number)) == 1
    correios.admin("POST", f"/_admin/objects/{code}/events", json={"codigo": "RO", "tipo": "1",
                                                                 "dtHrCriado": "2026-12-02T08:00:00"})
    run(path)
    correios.admin("POST", f"/_admin/objects/{code}/events", json={"codigo": "BDE", "tipo": "01",
                                                                 "dtHrCriado": "2026-12-03T15:10:00"})
    run(path)
    assert [d["status"] for d in deliveries(sims.bo, number)] == ["posted", "in_transit", "delivered"]
    before = len(agent_requests(correios))
    run(path)
    assert len(agent_requests(correios)) == before  # final: the shipment is not polled any more
    assert len(deliveries(sims.bo, number)) == 3


def test_a_returned_parcel_ends_returned_not_delivered(setup) -> None:  # type: ignore[no-untyped-def]
    sims, correios, jadlog, path = setup
    code = s10(87654321, "QB")
    number = place_order(sims.bo, "loja-centro", "SU-1002")
    ship(sims.bo, number, "SEDEX", code)
    for event in ({"codigo": "PO", "tipo": "01"}, {"codigo": "BDE", "tipo": "20"}, {"codigo": "BDR", "tipo": "23"}):
        correios.admin("POST", f"/_admin/objects/{code}/events", json=event)
    jadlog_number = place_order(sims.bo, "loja-centro", "SU-1003")
    ship(sims.bo, jadlog_number, "Jadlog", "10000000000001")
    for status in ("EMISSAO", "TRANSFERENCIA", "DEVOLVIDO"):
        jadlog.admin("POST", "/_admin/shipments/10000000000001/events", json={"status": status})
    run(path)
    assert [d["status"] for d in deliveries(sims.bo, number)][-1] == "returned"
    assert "delivered" not in [d["status"] for d in deliveries(sims.bo, number)]
    assert [d["status"] for d in deliveries(sims.bo, jadlog_number)] == ["posted", "in_transit", "returned"]
    with Agent(load_config(path)) as agent:
        assert agent.journal.shipment_counts("loja-centro") == {"final": 2}


def test_unknown_carrier_and_bad_code_are_said_not_silent_and_a_silent_shipment_alerts(setup) -> None:  # type: ignore[no-untyped-def]
    sims, correios, _, path = setup
    unknown = place_order(sims.bo, "loja-centro", "SU-1004")
    ship(sims.bo, unknown, "Total Express", "TE0000000001")
    typo = place_order(sims.bo, "loja-centro", "SU-1005")
    ship(sims.bo, typo, "Correios", "AA123456784BR")  # wrong S10 check digit
    quiet = place_order(sims.bo, "loja-centro", "SU-1006")
    ship(sims.bo, quiet, "Correios", s10(11111111))
    with Agent(load_config(path)) as agent:
        (result,) = agent.run_entity("deliveries")
        assert result.status == "quarantined" and result.quarantined == 1
        data = status_data(agent.config, agent.journal)
        (channel,) = data["channels"]
        assert channel["unknown_carriers"] == {"Total Express": 1}
        notes = dict(status_notes(data))
        assert "loja-centro/deliveries: unknown carrier 'Total Express'" in notes
        assert "AA123456784BR" not in json.dumps(correios.requests_log())  # never asked: it cannot exist
        (row,) = agent.journal.quarantined("loja-centro", "deliveries")
        assert row.reason_code == "bad_tracking_code" and "check digit" in row.reason
        later = datetime.now(UTC) + timedelta(days=8)
        alerter = Alerter(EmailAlerts("smtp.invalid", "a@b.c", ("d@e.f",)), agent.journal, clock=lambda: later)
        keys = {p.key for p in alerter.problems([])}
        assert f"silent-shipment:loja-centro:{s10(11111111)}" in keys


def test_marketplace_logistics_are_read_from_the_channel_never_a_carrier(setup, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    sims, correios, _, path = setup
    monkeypatch.setitem(registry.CONNECTORS, "me2-test", f"{__name__}:Me2Channel")
    path.write_text(path.read_text().replace("type: sellerup", "type: me2-test"))
    number = place_order(sims.bo, "loja-centro", "SU-2001")
    ship(sims.bo, number, "Mercado Envios", "ME2-000123")
    Me2Channel.events = {"ME2-000123": [TrackingEvent("posted", datetime(2026, 12, 1, 10, tzinfo=UTC))]}
    run(path)
    Me2Channel.events["ME2-000123"].append(TrackingEvent("delivered", datetime(2026, 12, 2, 10, tzinfo=UTC)))
    run(path)
    run(path)
    assert [(d["status"], d["source"]) for d in deliveries(sims.bo, number)] == [("posted", "channel"),
                                                                                ("delivered", "channel")]
    assert Me2Channel.asked == ["ME2-000123", "ME2-000123"]  # asked until delivered, then no more
    assert agent_requests(correios) == []


def test_americanas_entrega_is_read_from_the_skyhub_order_not_a_carrier(setup, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    sims, correios, _, path = setup
    monkeypatch.setenv("SH_KEY", "sh-key-deliveries")
    monkeypatch.setenv("SH_MANAGER", "skyhub-demo-accountmanager")
    skyhub = start("skyhub", tmp_path / "skyhub.db", products=0, api_key="sh-key-deliveries")
    try:
        (order,) = skyhub.admin("POST", "/_admin/orders", json={"count": 1})["items"]
        code = order["code"]
        channel = f"""\
  - name: americanas
    type: skyhub
    base_url: {skyhub.url}
    email: loja@exemplo.com.br
    api_key: ${{SH_KEY}}
    account_manager_key: ${{SH_MANAGER}}
    flows: {{deliveries: {{}}}}
"""
        path.write_text(path.read_text().replace("carriers:\n", channel + "carriers:\n", 1))
        number = place_order(sims.bo, "americanas", code)
        ship(sims.bo, number, "Americanas Entrega", "AE-778899")
        skyhub.admin("POST", f"/_admin/orders/{code}/status", json={"status": "order_shipped"})
        with Agent(load_config(path)) as agent:
            (result,) = agent.run_entity("deliveries", channel="americanas")
            assert result.status == "ok", result.error
            skyhub.admin("POST", f"/_admin/orders/{code}/status", json={"status": "complete"})
            agent.run_entity("deliveries", channel="americanas")
            agent.run_entity("deliveries", channel="americanas")
            assert agent.journal.shipment_counts("americanas") == {"final": 1}
        assert [(d["status"], d["source"]) for d in deliveries(sims.bo, number)] == [("in_transit", "channel"),
                                                                                    ("delivered", "channel")]
        assert agent_requests(correios) == []
    finally:
        skyhub.server.stop()


def test_mercado_envios_is_read_from_the_ml_shipment_not_a_carrier(setup, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    sims, correios, _, path = setup
    monkeypatch.setenv("ML_SECRET", "ml-secret-deliveries")
    ml = start("mercadolivre", tmp_path / "ml.db", products=0, client_secret="ml-secret-deliveries",
               client_id="1234567890123456")
    try:
        (order,) = ml.admin("POST", "/_admin/orders", json={"count": 1, "shipping_mode": "me2"})["items"]
        channel = f"""\
  - name: ml
    type: mercadolivre
    base_url: {ml.url}
    client_id: "1234567890123456"
    client_secret: ${{ML_SECRET}}
    redirect_uri: https://loja.example/ml/callback
    flows: {{deliveries: {{}}}}
"""
        path.write_text(path.read_text().replace("carriers:\n", channel + "carriers:\n", 1))
        config = load_config(path)
        with Journal(config.journal) as journal:  # `syncagent auth mercadolivre --channel ml`, once
            authorize(config.channel("ml"), journal, ml.admin("POST", "/_admin/auth/code")["code"])
        number = place_order(sims.bo, "ml", str(order["id"]))
        ship(sims.bo, number, "Mercado Envios", "ME2-44556677")
        shipment = order["shipping"]["id"]
        ml.admin("POST", f"/_admin/shipments/{shipment}/status", json={"status": "shipped"})
        with Agent(load_config(path)) as agent:
            (result,) = agent.run_entity("deliveries", channel="ml")
            assert result.status == "ok", result.error
            ml.admin("POST", f"/_admin/shipments/{shipment}/status", json={"status": "not_delivered",
                                                                          "substatus": "returning_to_sender"})
            agent.run_entity("deliveries", channel="ml")
            agent.run_entity("deliveries", channel="ml")
            assert agent.journal.shipment_counts("ml") == {"final": 1}
        assert [(d["status"], d["source"]) for d in deliveries(sims.bo, number)] == [("in_transit", "channel"),
                                                                                    ("returned", "channel")]
        assert agent_requests(correios) == []
    finally:
        ml.server.stop()


def test_a_tracking_code_corrected_in_the_back_office_replaces_the_wrong_one(setup) -> None:  # type: ignore[no-untyped-def]
    sims, correios, _, path = setup
    wrong, right = s10(22222222), s10(33333333)
    number = place_order(sims.bo, "loja-centro", "SU-3001")
    ship(sims.bo, number, "Correios", wrong)
    run(path)
    (event,) = [e for e in sims.bo.admin("GET", f"/_admin/orders/{number}")["events"] if e["type"] == "shipped"]
    sims.bo.admin("PATCH", f"/_admin/events/{event['id']}", json={"shipment": {"tracking_code": right}})
    correios.admin("POST", f"/_admin/objects/{right}/events", json={"codigo": "PO", "tipo": "01"})
    run(path)
    asked = json.dumps(agent_requests(correios)[-1])
    assert right in asked and wrong not in asked  # the wrong code is not polled any more
    assert [d["tracking_code"] for d in deliveries(sims.bo, number)] == [right]
    with Agent(load_config(path)) as agent:
        assert agent.journal.shipment_counts("loja-centro") == {"open": 1, "replaced": 1}


def test_a_failing_carrier_backs_its_shipments_off_and_the_step_says_why(setup) -> None:  # type: ignore[no-untyped-def]
    sims, correios, _, path = setup
    code = s10(44444444)
    number = place_order(sims.bo, "loja-centro", "SU-4001")
    ship(sims.bo, number, "Correios", code)
    correios.admin("POST", f"/_admin/objects/{code}/events", json={"codigo": "PO", "tipo": "01"})
    correios.admin("POST", "/_admin/faults", json={"fail_next": 50, "fail_status": 503,
                                                   "only": "GET /srorastro"})
    now = datetime.now(UTC)
    with Agent(load_config(path), clock=lambda: now, sleep=lambda s: None) as agent:
        (failed,) = agent.run_entity("deliveries")
        assert failed.status == "failed" and "tracking failed" in (failed.error or "") and "correios" in failed.error
        asked = len(agent_requests(correios))
        (quiet,) = agent.run_entity("deliveries")  # backing off: the carrier is not asked again yet
        assert quiet.status == "ok" and len(agent_requests(correios)) == asked
    correios.admin("DELETE", "/_admin/faults")
    later = now + timedelta(minutes=6)
    with Agent(load_config(path), clock=lambda: later, sleep=lambda s: None) as agent:
        (result,) = agent.run_entity("deliveries")
        assert result.status == "ok", result.error
    assert [d["status"] for d in deliveries(sims.bo, number)] == ["posted"]
