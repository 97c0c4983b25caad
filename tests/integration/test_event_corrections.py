"""A correction in the back office (an NF-e re-issued, a tracking code fixed) reaches the channel once, in order."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncagent.agent import Agent
from syncagent.config import load_config
from syncagent.journal import Journal
from syncagent.simulators import build
from syncagent.simulators.common import serve_in_thread
from syncagent.simulators.gestao_lojas import nfe_key
from tests.integration.harness import Sims, run_once, write_config
from tests.integration.test_vtex import (
    APP_KEY,
    APP_TOKEN,
    BO_SECRET,
    BRANDS,
    CATEGORIES,
    CONFIG,
    Vtex,
    start_vtex,
)


def _events(bo: Any, number: str) -> dict[str, dict[str, Any]]:
    return {e["type"]: e for e in bo.admin("GET", f"/_admin/orders/{number}")["events"]}


def _event_posts(sims: Sims, mark: int) -> list[dict[str, Any]]:
    return [json.loads(r["body"]) for r in sims.su.requests_log(mark)
            if r["method"] == "POST" and r["path"].endswith("/events")]


def test_a_corrected_nfe_and_tracking_code_reach_the_tablet_once_in_order(sims: Sims, tmp_path: Path) -> None:
    config = write_config(tmp_path, sims, flows=["orders", "order-events", "customers"])
    run_once(config)
    order = next(o for o in sims.bo.admin("GET", "/_admin/orders")["items"] if o["channel"] == "loja-centro")
    for kind in ("invoiced", "shipped"):
        sims.bo.admin("POST", f"/_admin/orders/{order['number']}/events", json={"type": kind})
    run_once(config)
    events = _events(sims.bo, order["number"])
    # the NF-e is re-issued (new number and key) and the carrier's tracking code fixed, after shipping
    key = nfe_key("corrected", number=777001)
    assert key != events["invoiced"]["invoice"]["key"]
    sims.bo.admin("PATCH", f"/_admin/events/{events['invoiced']['id']}",
                  json={"invoice": {"key": key, "number": "777001"}})
    sims.bo.admin("PATCH", f"/_admin/events/{events['shipped']['id']}",
                  json={"shipment": {"tracking_code": "QB123456785BR"}})
    mark = sims.su.last_request_id()
    results = {r.flow: r for r in run_once(config)}
    assert (results["order-events"].status, results["order-events"].sent) == ("ok", 2)
    posts = _event_posts(sims, mark)
    assert [(p["type"], p["invoice_number"] or p["tracking_code"]) for p in posts] == [
        ("invoiced", "777001"), ("shipped", "QB123456785BR")]  # in order
    held = sims.su.admin("GET", f"/_admin/orders/{order['external_id']}")["events"]
    latest = {e["type"]: e for e in held}  # the tablet shows the latest of each type
    assert (latest["invoiced"]["invoice_key"], latest["invoiced"]["invoice_number"]) == (key, "777001")
    assert latest["shipped"]["tracking_code"] == "QB123456785BR"

    # the feed carries the events again unchanged (a re-delivery): nothing is sent
    for kind in ("invoiced", "shipped"):
        sims.bo.admin("PATCH", f"/_admin/events/{events[kind]['id']}", json={})
    mark = sims.su.last_request_id()
    results = {r.flow: r for r in run_once(config)}
    assert (results["order-events"].status, results["order-events"].sent) == ("ok", 0)
    assert results["order-events"].unchanged >= 2
    assert _event_posts(sims, mark) == []


@pytest.fixture
def bo_and_vtex(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Vtex, Vtex, Path]]:
    monkeypatch.setenv("IT_BO_SECRET", BO_SECRET)
    monkeypatch.setenv("IT_VTEX_KEY", APP_KEY)
    monkeypatch.setenv("IT_VTEX_TOKEN", APP_TOKEN)
    bo = Vtex(serve_in_thread(build("gestao-lojas", str(tmp_path / "bo.db"), products=60, seed=7,
                                    client_secret=BO_SECRET)))
    vtex = start_vtex(tmp_path, orders="2")
    path = tmp_path / "syncagent.yaml"
    path.write_text(CONFIG.format(journal=tmp_path / "journal.db", bo=bo.url, vtex=vtex.url,
                                  categories=json.dumps(CATEGORIES), brands=json.dumps(BRANDS)))
    try:
        yield bo, vtex, path
    finally:
        vtex.server.stop()
        bo.server.stop()


def _events_step(path: Path) -> Any:
    with Agent(load_config(path)) as agent:
        (result,) = [r for r in agent.run_once() if r.flow == "order-events"]
    return result


def test_vtex_gets_a_reissued_nfe_and_a_fixed_tracking_code_and_refuses_a_key_change_by_name(
        bo_and_vtex: tuple[Vtex, Vtex, Path], tmp_path: Path) -> None:
    bo, vtex, path = bo_and_vtex
    assert _events_step(path).status == "ok"
    first, second = [o for o in bo.admin("GET", "/_admin/orders")["items"] if o.get("channel") == "vtex-loja"]
    for order in (first, second):
        for kind in ("invoiced", "shipped"):
            bo.admin("POST", f"/_admin/orders/{order['number']}/events", json={"type": kind})
    assert _events_step(path).sent == 4

    # first order: the NF-e re-issued under a new number, then the tracking code fixed
    events = _events(bo, first["number"])
    key = nfe_key("reissued", number=880001)
    bo.admin("PATCH", f"/_admin/events/{events['invoiced']['id']}", json={"invoice": {"key": key, "number": "880001"}})
    bo.admin("PATCH", f"/_admin/events/{events['shipped']['id']}", json={"shipment": {"tracking_code": "QB987654321BR"}})
    # second order: only the key of the same NF-e number changes, which VTEX's contract cannot take
    other = _events(bo, second["number"])["invoiced"]
    bo.admin("PATCH", f"/_admin/events/{other['id']}", json={"invoice": {"key": nfe_key("other", number=5)}})
    result = _events_step(path)
    assert (result.sent, result.quarantined) == (2, 1)
    packages = vtex.admin("GET", f"/_admin/orders/{first['external_id']}")["packageAttachment"]["packages"]
    assert (packages[-1]["invoiceNumber"], packages[-1]["invoiceKey"]) == ("880001", key)
    assert packages[-1]["trackingNumber"] == "QB987654321BR"
    journal = Journal(tmp_path / "journal.db", lock=False)
    try:
        (row,) = journal.quarantined(entity="order-events")
    finally:
        journal.close()
    assert row.key == other["id"] and row.reason_code == "not_correctable"
    assert "VTEX admin" in row.reason and "new number" in row.reason

    # the same events again, unchanged: nothing is written to VTEX, nothing quarantined again
    for event_id in (events["invoiced"]["id"], events["shipped"]["id"], other["id"]):
        bo.admin("PATCH", f"/_admin/events/{event_id}", json={})
    mark = len(vtex.writes())
    result = _events_step(path)
    assert (result.status, result.sent, result.quarantined) == ("ok", 0, 0) and result.unchanged >= 3
    assert vtex.writes()[mark:] == []

    # the refused NF-e is re-issued under a new number; the operator retries before the next cycle: what goes
    # is the event as it is now at its source, not the stored copy VTEX refused
    reissued = nfe_key("other-reissued", number=880002)
    bo.admin("PATCH", f"/_admin/events/{other['id']}", json={"invoice": {"key": reissued, "number": "880002"}})
    with Agent(load_config(path)) as agent:
        applied, message = agent.engine.retry("vtex-loja", "order-events", other["id"])
    assert applied, message
    packages = vtex.admin("GET", f"/_admin/orders/{second['external_id']}")["packageAttachment"]["packages"]
    assert (packages[-1]["invoiceNumber"], packages[-1]["invoiceKey"]) == ("880002", reissued)
