"""Netshoes order intake under crashes and faults: every approved shipping in the back office once, none lost.

The scenario: the back office simulator and a Netshoes store with approved orders (one of them
with two shippings, and one Zattini order the Netshoes channel must leave alone), the orders flow
only. Netshoes has no queue and no acknowledge call: every poll reads the approved shippings
again, so what a dead run left half done is met again and finished from the journal.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.crash.harness import _journal_in_flight, assert_created_once, journal_health, run_agent
from tests.crash.marketplace import (
    STORM_HTTP,
    FaultStorm,
    Marketplace,
    MarketScenario,
    crash_at,
    make_templates,
    probe_points,
    start,
)
from tests.integration.harness import Sim

CLIENT_ID = "netshoes-crash-app"
TOKEN = "netshoes-crash-token-9e2b"
ORDERS = 4  # plus one of two shippings and one on Zattini
STORM_EXTRA = 16
INTAKE_POINTS = ("order.before_create", "order.after_create", "journal.before_commit", "journal.after_commit")


def _seed(ns: Sim) -> None:
    ns.admin("POST", "/_admin/orders", json={"count": ORDERS, "businessUnit": "NS"})
    ns.admin("POST", "/_admin/orders", json={"shippings": 2, "businessUnit": "NS"})
    ns.admin("POST", "/_admin/orders", json={"businessUnit": "ZT"})


NETSHOES = Marketplace(
    "netshoes", "ns-loja",
    sim_options={"orders": "0", "client_id": CLIENT_ID, "access_token": TOKEN, "rate_per_minute": "0"},
    keys={"type": "netshoes", "client_id": "${NS_CLIENT}", "access_token": "${NS_TOKEN}", "payment_method": "PIX"},
    env={"NS_CLIENT": CLIENT_ID, "NS_TOKEN": TOKEN}, secret=TOKEN, seed_orders=_seed)


@pytest.fixture(scope="module")
def ns_templates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_templates(NETSHOES, tmp_path_factory.mktemp("ns-templates"))


def check_intake(scenario: MarketScenario) -> dict[str, int]:
    """No duplicate, no approved NS shipping lost, no Zattini order taken, nothing stuck, no secret kept."""
    bo_orders = scenario.created()
    per_key = assert_created_once(o["external_id"] for o in bo_orders)
    quarantined = {key for _, key in journal_health(scenario.journal)}
    shippings: dict[str, list[str]] = {}
    for order in scenario.sim.admin("GET", "/_admin/orders")["items"]:
        shippings.setdefault(order["businessUnit"], []).extend(
            f"{order['orderNumber']}-{s['shippingCode']}" for s in order["shippings"])
    for key in shippings["NS"]:
        assert key in per_key or key in quarantined, f"shipping lost: {key}"
    assert not set(shippings.get("ZT", [])) & set(per_key), "a Zattini order imported by the Netshoes channel"
    scenario.assert_no_secret_kept()
    return {"orders": len(bo_orders), "shippings": len(shippings["NS"]), "quarantined": len(quarantined)}


def test_clean_run_imports_every_approved_shipping_once(ns_templates: Path, workroot: Path) -> None:
    with start(NETSHOES, ns_templates, workroot / "clean") as scenario:
        assert run_agent(scenario.config, env=NETSHOES.env) == 0
        assert check_intake(scenario) == {"orders": ORDERS + 2, "shippings": ORDERS + 2, "quarantined": 0}
        mark = scenario.bo.last_request_id()
        assert run_agent(scenario.config, env=NETSHOES.env) == 0  # read again next poll: nothing created twice
        assert not [r for r in scenario.bo.writes(mark) if r["path"] == "/orders"]


def test_crash_at_the_first_and_last_of_each_kind_of_point_then_converge(ns_templates: Path, workroot: Path) -> None:
    points = probe_points(NETSHOES, ns_templates, workroot)
    missing = [name for name in INTAKE_POINTS if name not in points]
    assert not missing, f"the scenario never reaches {missing}"
    # the first and the last instant of every kind of point (the whole sweep is the slow test below)
    picks = sorted({k for name in set(points) for k in (points.index(name) + 1,
                                                         len(points) - points[::-1].index(name))})
    crash_at(NETSHOES, ns_templates, workroot, points, picks, check_intake)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_crash_at_every_intake_point_then_converge(ns_templates: Path, workroot: Path) -> None:
    points = probe_points(NETSHOES, ns_templates, workroot)
    crash_at(NETSHOES, ns_templates, workroot, points, list(range(1, len(points) + 1)), check_intake)


@pytest.mark.timeout(300)
def test_netshoes_intake_converges_through_a_fault_storm(ns_templates: Path, workroot: Path) -> None:
    seed = 6161
    total = ORDERS + 2 + STORM_EXTRA
    with start(NETSHOES, ns_templates, workroot / "storm", http=STORM_HTTP) as scenario:
        scenario.sim.admin("POST", "/_admin/orders", json={"count": STORM_EXTRA, "businessUnit": "NS"})
        weather = FaultStorm(scenario, seed)
        for _ in weather.runs(6):
            created = len(scenario.created())
            if _journal_in_flight(scenario.journal) == 0 and created >= total:
                break
        else:
            pytest.fail(f"not converged after 6 cycles: {created}/{total} created")
        faults = weather.calm()
        figures = check_intake(scenario)
        assert figures == {"orders": total, "shippings": total, "quarantined": 0}
        assert faults["bo"].get("commit_500", 0) + faults["bo"].get("commit_drop", 0) > 0
        assert weather.worst <= 6 + 1, f"a request was sent {weather.worst} times in one cycle"
        print(f"Netshoes intake fault storm (seed {seed}): {total} shippings converged in {weather.cycles} cycles, "
              f"0 duplicates; faults injected: {json.dumps(faults, sort_keys=True)}")
