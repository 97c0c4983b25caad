"""Hostile answers of carriers and ticket channels: a quarantined record or a clear channel error, never a crash."""

from __future__ import annotations

import pytest
import responses

from syncagent.connectors.correios import CorreiosConnector
from syncagent.connectors.mercadolivre_sac import MercadoLivreSac
from syncagent.errors import AuthError, TransientError
from syncagent.http import HttpClient, HttpSettings
from syncagent.model import BadRecord
from syncagent.model_sac import ShipmentRef, Ticket, Tracking

CO, ML = "http://correios.test", "http://ml.test"
SECRET = "hostile-secret-123456"
FAST = HttpSettings(max_attempts=1)


def correios() -> CorreiosConnector:
    responses.add(responses.POST, f"{CO}/token/v1/autentica", json={"token": "T1", "expiraEm": "2999-01-01T00:00:00"},
                  status=201)
    return CorreiosConnector("correios", CO, {"user": "u", "access_code": SECRET}, FAST, sleep=lambda s: None)


def track(conn: CorreiosConnector, *codes: str) -> list[object]:
    refs = [ShipmentRef("Correios", c, "1", "X") for c in codes]
    return [r for page in conn.pull("tracking", None, {"shipments": refs}) for r in page.records]


@responses.activate
def test_correios_events_that_make_no_sense_quarantine_that_object_only() -> None:
    conn = correios()
    responses.add(responses.GET, f"{CO}/srorastro/v1/objetos", json={"objetos": [
        {"codObjeto": "AA123456785BR", "eventos": [{"codigo": "BDE", "tipo": "x1", "dtHrCriado": "2026-12-01T10:00:00"}]},
        {"codObjeto": "AA000000005BR", "eventos": "not a list"},
        {"codObjeto": "AA111111115BR", "eventos": [{"codigo": "PO", "tipo": "01", "dtHrCriado": "yesterday"}]},
        {"codObjeto": "ZZ999999999BR", "eventos": []},  # not asked for: ignored
        "junk"]})
    found = {r.key: r for r in track(conn, "AA123456785BR", "AA000000005BR", "AA111111115BR")}  # type: ignore[attr-defined]
    assert all(isinstance(r, BadRecord) for r in found.values()) and set(found) == {
        "AA123456785BR", "AA000000005BR", "AA111111115BR"}
    assert found["AA111111115BR"].code == "bad_time"  # type: ignore[attr-defined]


@responses.activate
def test_correios_non_json_is_a_clear_channel_error_and_a_refused_login_names_no_secret() -> None:
    conn = correios()
    responses.add(responses.GET, f"{CO}/srorastro/v1/objetos/AA123456785BR", body="<html>oops</html>",
                  content_type="text/html")
    with pytest.raises(TransientError, match="expected JSON"):
        track(conn, "AA123456785BR")
    responses.replace(responses.POST, f"{CO}/token/v1/autentica", status=401, json={"msgs": ["bad"]})
    bad = CorreiosConnector("correios", CO, {"user": "u", "access_code": SECRET}, FAST, sleep=lambda s: None)
    with pytest.raises(AuthError) as caught:
        track(bad, "AA123456785BR")
    assert SECRET not in str(caught.value)


@responses.activate
def test_correios_unknown_object_is_no_news_and_events_come_oldest_first() -> None:
    conn = correios()
    responses.add(responses.GET, f"{CO}/srorastro/v1/objetos/AA123456785BR", json={"objetos": [
        {"codObjeto": "AA123456785BR", "eventos": [
            {"codigo": "BDE", "tipo": "1", "dtHrCriado": "2026-12-02T10:00:00", "unidade": {"endereco": {
                "cidade": "SAO PAULO", "uf": "SP"}}},
            {"codigo": "PO", "tipo": "01", "dtHrCriado": "2026-12-01T10:00:00"}]}]})
    (tracking,) = track(conn, "AA123456785BR")
    assert isinstance(tracking, Tracking)
    assert [(e.status, e.carrier_event, e.location) for e in tracking.events] == [
        ("posted", "PO/01", None), ("delivered", "BDE/01", "SAO PAULO/SP")]
    assert tracking.events[0].occurred_at.isoformat() == "2026-12-01T13:00:00+00:00"


class MlHost(MercadoLivreSac):
    """The SAC part alone, over a plain client (the Mercado Livre connector gives it its logged-in one)."""

    def __init__(self) -> None:
        self.name, self.client, self.claim_reply_path = "ml", HttpClient(ML, FAST, sleep=lambda s: None), None

    def sac_seller(self) -> str:
        return "77"


@responses.activate
def test_ml_questions_missing_fields_are_quarantined_one_by_one() -> None:
    responses.add(responses.GET, f"{ML}/questions/search", json={"total": 3, "limit": 50, "questions": [
        {"id": 1, "text": "ok?", "date_created": "2026-12-01T10:00:00.000-03:00", "status": "UNANSWERED"},
        {"id": 2, "text": "no date", "status": "UNANSWERED"},
        "junk"]})
    responses.add(responses.GET, f"{ML}/messages/unread", json={"results": [{"resource": "/packs/9/sellers/77"},
                                                                           {"resource": "/elsewhere"}]})
    responses.add(responses.GET, f"{ML}/messages/packs/9/sellers/77", json={"messages": [
        {"id": "m1", "from": {"user_id": 5}, "text": "oi", "date_created": "not a date"}]})
    responses.add(responses.GET, f"{ML}/post-purchase/v1/claims/search", json={"paging": {"total": 0}, "data": []})
    records = [r for page in MlHost().sac_tickets() for r in page.records]
    assert [r.key for r in records if isinstance(r, Ticket)] == ["question:1"]
    bad = {r.key: r.code for r in records if isinstance(r, BadRecord)}
    assert bad == {"question:2": "missing_field", "question:?": "bad_type", "message:9": "bad_time"}


@responses.activate
def test_correios_batch_reads_whole_only_the_objects_that_moved() -> None:
    conn = correios()
    moved, still = "AA123456785BR", "AA000000005BR"
    responses.add(responses.GET, f"{CO}/srorastro/v1/objetos", json={"objetos": [
        {"codObjeto": moved, "eventos": [{"codigo": "BDE", "tipo": "01", "dtHrCriado": "2026-12-03T10:00:00"}]},
        {"codObjeto": still, "eventos": [{"codigo": "RO", "tipo": "01", "dtHrCriado": "2026-12-02T10:00:00"}]}]})
    responses.add(responses.GET, f"{CO}/srorastro/v1/objetos/{moved}", json={"objetos": [{"codObjeto": moved, "eventos": [
        {"codigo": "BDE", "tipo": "01", "dtHrCriado": "2026-12-03T10:00:00"},
        {"codigo": "OEC", "tipo": "01", "dtHrCriado": "2026-12-03T08:00:00"},
        {"codigo": "RO", "tipo": "01", "dtHrCriado": "2026-12-02T09:00:00"}]}]})
    refs = [ShipmentRef("Correios", moved, "1", "X", "in_transit"), ShipmentRef("Correios", still, "2", "Y", "in_transit")]
    found = {r.key: r for page in conn.pull("tracking", None, {"shipments": refs}) for r in page.records}
    assert [e.status for e in found[moved].events] == ["in_transit", "out_for_delivery", "delivered"]  # type: ignore[union-attr]
    assert [e.status for e in found[still].events] == ["in_transit"]  # type: ignore[union-attr]
    calls = [c.request.url for c in responses.calls if "srorastro" in c.request.url]
    assert len(calls) == 2 and "resultado=U" in calls[0] and "resultado=T" in calls[1]
