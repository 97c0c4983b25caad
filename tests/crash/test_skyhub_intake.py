"""SkyHub order intake under crashes and faults: no duplicate, no loss, never deleted from the queue before creation.

The scenario: the back office simulator and a SkyHub store whose order queue holds PAID paid orders
and one unpaid order, the orders flow only. The queue answers its head until the head is deleted
(API.md L99-103, the simulator's "head" reading); an order read and not deleted for 5 minutes goes
to the back of the queue. Between runs the SkyHub simulator's clock is moved past those 5 minutes,
as the minutes between real cycles would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.crash.harness import _journal_in_flight, assert_created_once, journal_health, run_agent
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

PAID = 3
EMAIL = "crash@exemplo.com.br"
API_KEY = "skyhub-crash-key-9c1e"
ACCOUNT_KEY = "skyhub-crash-accountmanager-41"
STORM_EXTRA = 8  # more paid orders in the storm, so that some POST /orders are committed then failed
INTAKE_POINTS = ("order.before_create", "order.after_create", "ack.before_send", "ack.after_send",
                 "journal.before_commit", "journal.after_commit")


def _seed(sky: Sim) -> None:
    """PAID paid orders and one unpaid, queued in between."""
    sky.admin("POST", "/_admin/orders", json={"count": PAID - 1})
    sky.admin("POST", "/_admin/orders", json={"status": "book_product"})  # unpaid: consumed, never imported
    sky.admin("POST", "/_admin/orders", json={"count": 1})


def _later(sky: Sim) -> None:
    """Time passes between runs: an order read and not deleted for 5 minutes is queued again."""
    sky.admin("POST", "/_admin/clock", json={"advance": 301})


def _queued(sky: Sim) -> list[str]:
    return [i["code"] for i in sky.admin("GET", "/_admin/queue")["items"]]


def _queue_empty(sky: Sim) -> bool:
    return not _queued(sky)


SKYHUB = Marketplace(
    "skyhub", "skyhub-loja",
    sim_options={"email": EMAIL, "api_key": API_KEY, "account_manager_key": ACCOUNT_KEY, "rate_limits": "0"},
    keys={"type": "skyhub", "email": EMAIL, "api_key": "${SKY_API_KEY}", "account_manager_key": "${SKY_ACCOUNT_KEY}"},
    env={"SKY_API_KEY": API_KEY, "SKY_ACCOUNT_KEY": ACCOUNT_KEY}, secret=API_KEY, seed_orders=_seed,
    later=_later, idle=_queue_empty)


@pytest.fixture(scope="module")
def sky_templates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_templates(SKYHUB, tmp_path_factory.mktemp("skyhub-templates"))


def check_intake(scenario: MarketScenario) -> dict[str, Any]:
    """No duplicate, no loss, no DELETE from the queue of a paid order before the back office created it."""
    bo_orders = scenario.created()
    per_key = assert_created_once(o["external_id"] for o in bo_orders)
    quarantined = {key for _, key in journal_health(scenario.journal)}
    created_at = scenario.first_creations()
    sky_orders = scenario.sim.admin("GET", "/_admin/orders")["items"]
    paid = {o["code"] for o in sky_orders if o["status"]["type"] == "APPROVED"}
    unpaid = {o["code"] for o in sky_orders} - paid
    for code in paid:
        assert code in per_key or code in quarantined, f"order lost: {code}"
    assert not unpaid & set(per_key), "an unpaid order was imported"
    deleted = 0
    for r in scenario.sim.requests_log():
        if r["method"] == "DELETE" and r["path"].startswith("/queues/orders/") and r["status"] == 204:
            code = r["path"].split("/", 3)[3].replace("%20", " ")
            deleted += 1
            if code in paid:
                assert code in created_at and r["ts"] > created_at[code], \
                    f"deleted from the queue before the back office had the order: {code}"
    left = [c for c in _queued(scenario.sim) if c not in quarantined]
    assert not left, f"queue items of handled orders never deleted: {left}"
    scenario.assert_no_secret_kept()
    return {"orders": len(bo_orders), "paid": len(paid), "quarantined": len(quarantined), "deleted": deleted}


def test_clean_run_imports_every_paid_order_once_and_empties_the_queue(sky_templates: Path, workroot: Path) -> None:
    with start(SKYHUB, sky_templates, workroot / "clean") as scenario:
        assert run_agent(scenario.config, env=SKYHUB.env) == 0
        assert check_intake(scenario) == {"orders": PAID, "paid": PAID, "quarantined": 0, "deleted": PAID + 1}


@pytest.mark.timeout(300)
def test_crash_at_every_intake_point_of_the_first_order_then_converge(sky_templates: Path, workroot: Path) -> None:
    """The sampled version kept in `make test`: every failpoint until the first order is acknowledged."""
    points = probe_points(SKYHUB, sky_templates, workroot)
    missing = [name for name in INTAKE_POINTS if name not in points]
    assert not missing, f"the scenario never reaches {missing}"
    # the first buyer's creation, then every point from the first order's POST to the commit of its page
    buyer = points.index("customer.before_create") + 1
    first, end = points.index("order.before_create") + 1, points.index("ack.after_send") + 5
    crash_at(SKYHUB, sky_templates, workroot, points, [buyer, buyer + 1, *range(first, end + 1)], check_intake)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_crash_at_every_intake_point_then_converge(sky_templates: Path, workroot: Path) -> None:
    points = probe_points(SKYHUB, sky_templates, workroot)
    cycles = crash_at(SKYHUB, sky_templates, workroot, points, list(range(1, len(points) + 1)), check_intake)
    print(f"SkyHub intake, every-point crash: {len(points)} points, no duplicate, no loss, no early delete; "
          f"cycles to converge max {max(cycles)}")


def test_a_kill_between_creation_and_delete_leaves_the_order_queued_then_deleted_once(sky_templates: Path,
                                                                                       workroot: Path) -> None:
    with start(SKYHUB, sky_templates, workroot / "between") as scenario:
        run_agent(scenario.config, "crash:order.after_create", env=SKYHUB.env)
        created = [o["external_id"] for o in scenario.created()]
        assert len(created) == 1 and created[0] in _queued(scenario.sim)  # created, and still in the queue
        converge(scenario)
        figures = check_intake(scenario)
        assert figures["orders"] == PAID and not _queued(scenario.sim)


@pytest.mark.timeout(300)
def test_skyhub_intake_converges_through_a_fault_storm(sky_templates: Path, workroot: Path) -> None:
    total = PAID + STORM_EXTRA
    with start(SKYHUB, sky_templates, workroot / "storm", http=STORM_HTTP) as scenario:
        scenario.sim.admin("POST", "/_admin/orders", json={"count": STORM_EXTRA})
        weather = FaultStorm(scenario, 6161)
        for _ in weather.runs(8):
            created = len(scenario.created())
            if not _journal_in_flight(scenario.journal) and created >= total and not _queued(scenario.sim):
                break
        else:
            pytest.fail(f"not converged after 8 cycles: {created}/{total} created, queue {_queued(scenario.sim)}")
        faults = weather.calm()
        figures = check_intake(scenario)
        assert figures["paid"] == total and figures["orders"] == total
        assert faults["bo"].get("commit_500", 0) + faults["bo"].get("commit_drop", 0) > 0
        assert weather.worst <= 6 + 1, f"a request was sent {weather.worst} times in one cycle"
