"""Order intake of the marketplace hubs (Plugg.to, Via) under crashes and a fault storm.

No duplicate in the back office, no approved order lost, and the channel told (Plugg.to: our number
in the order's `external`) only after the back office has the order. Small on purpose: one crash
at the first instant of each kind the intake reaches (not every instant, which the Seller Up and
VTEX suites cover for the engine), and one seeded storm.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.crash.harness import _journal_in_flight, assert_created_once, journal_health
from tests.crash.marketplace import (
    STORM_HTTP,
    FaultStorm,
    Marketplace,
    MarketScenario,
    converge,
    crash_at,
    make_templates,
    probe_points,
    start,
)
from tests.integration.harness import Sim

APPROVED, PENDING = 8, 2
POINTS = ("order.before_create", "order.after_create", "ack.before_send", "ack.after_send",
          "journal.before_commit", "journal.after_commit")  # Via's acknowledgement is a no-op, its points still pass
HUB_SECRET = "hub-crash-secret-5c1e"
ENV = {"HUB_SECRET": HUB_SECRET}


@dataclass(frozen=True)
class Hub:
    market: Marketplace
    orders: Callable[[Sim], list[dict[str, Any]]]  # every order the channel holds, as {id, status, acked}
    acks: Callable[[Sim], dict[str, float]]  # order id -> when the channel was told (its request's time)


def _pluggto_seed(sim: Sim) -> None:
    sim.admin("POST", "/_admin/orders", json={"count": APPROVED})
    sim.admin("POST", "/_admin/orders", json={"count": PENDING, "status": "pending"})


def _pluggto_orders(sim: Sim) -> list[dict[str, Any]]:
    return [{"id": o["id"], "status": o["status"], "acked": o["external"] is not None}
            for o in sim.admin("GET", "/_admin/orders")["items"]]


def _pluggto_acks(sim: Sim) -> dict[str, float]:
    acks: dict[str, float] = {}
    for r in sim.requests_log():
        if r["method"] == "PUT" and r["path"].startswith("/orders/") and r["status"] == 200 and \
                "external" in json.loads(r["body"] or "{}"):
            acks.setdefault(r["path"].split("/")[2], r["ts"])
    return acks


def _via_seed(sim: Sim) -> None:
    sim.admin("POST", "/_admin/orders", json={"count": APPROVED})
    sim.admin("POST", "/_admin/orders", json={"count": PENDING, "status": "NEW"})


def _via_orders(sim: Sim) -> list[dict[str, Any]]:
    # Via has no acknowledge call (API.md L79): nothing to tell, so nothing told early
    return [{"id": o["id"], "status": "approved" if o["status"] == "APR" else o["status"], "acked": True}
            for o in sim.admin("GET", "/_admin/orders")["items"]]


def _via_acks(sim: Sim) -> dict[str, float]:
    return {}


HUBS = {
    "pluggto": Hub(Marketplace(
        "pluggto", "hub",
        sim_options={"client_id": "crash-app", "client_secret": HUB_SECRET, "api_user": "crash-seller",
                     "api_password": HUB_SECRET, "orders": "0"},
        keys={"type": "pluggto", "client_id": "crash-app", "client_secret": "${HUB_SECRET}",
              "api_user": "crash-seller", "api_password": "${HUB_SECRET}"},
        env=ENV, secret=HUB_SECRET, seed_orders=_pluggto_seed), _pluggto_orders, _pluggto_acks),
    "via": Hub(Marketplace(
        "via", "hub",
        sim_options={"client_id": "crash-client", "access_token": HUB_SECRET, "orders": "0"},
        keys={"type": "via", "client_id": "crash-client", "access_token": "${HUB_SECRET}", "category_id": "100"},
        env=ENV, secret=HUB_SECRET, seed_orders=_via_seed), _via_orders, _via_acks),
}


def check_intake(scenario: MarketScenario) -> dict[str, int]:
    hub = HUBS[scenario.market.system]
    bo_orders = scenario.created()
    per_id = assert_created_once(o["external_id"] for o in bo_orders)
    created_at = scenario.first_creations()
    for order in hub.orders(scenario.sim):
        if order["status"] == "approved":
            assert order["id"] in per_id, f"approved order lost: {order['id']}"
            assert order["acked"], f"imported but the channel was never told: {order['id']}"
        else:
            assert order["id"] not in per_id, f"a {order['status']} order was imported: {order['id']}"
    for order_id, at in hub.acks(scenario.sim).items():
        assert order_id in created_at and at > created_at[order_id], f"told before the back office had {order_id}"
    journal_health(scenario.journal)
    scenario.assert_no_secret_kept()
    return {"orders": len(bo_orders)}


def check_every_approved_order_imported(scenario: MarketScenario) -> None:
    assert check_intake(scenario) == {"orders": APPROVED}


@pytest.mark.parametrize("system", sorted(HUBS))
@pytest.mark.timeout(300)
def test_a_crash_at_each_intake_instant_then_converge(system: str, workroot: Path) -> None:
    market = HUBS[system].market
    templates = make_templates(market, workroot / "templates")
    points = probe_points(market, templates, workroot)
    missing = [p for p in POINTS if p not in points]
    assert not missing, f"the intake never reaches {missing}"
    firsts = sorted({points.index(name) + 1 for name in POINTS} | {len(points) // 2})
    crash_at(market, templates, workroot, points, firsts, check_every_approved_order_imported)


@pytest.mark.parametrize("system", sorted(HUBS))
@pytest.mark.timeout(300)
def test_intake_converges_through_a_fault_storm(system: str, workroot: Path) -> None:
    market = HUBS[system].market
    with start(market, make_templates(market, workroot / "templates"), workroot / "storm",
               http=STORM_HTTP) as scenario:
        weather = FaultStorm(scenario, 61)
        for _ in weather.runs(6):
            if _journal_in_flight(scenario.journal) == 0 and len(scenario.created()) >= APPROVED:
                break
        faults = weather.calm()["bo"]
        converge(scenario)  # the storm over, whatever a last failed step left is finished
        assert check_intake(scenario) == {"orders": APPROVED}
        assert faults.get("commit_500", 0) + faults.get("commit_drop", 0) > 0  # a lost answer was injected
        assert weather.worst <= 7
