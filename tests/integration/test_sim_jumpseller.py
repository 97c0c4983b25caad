"""The Jumpseller simulator is as strict as the reference: auth, page bounds, rate limits, shapes, seeded data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from syncagent.simulators import build
from syncagent.simulators.common import RunningServer, serve_in_thread
from syncagent.simulators.jumpseller import DEMO_LOGIN, DEMO_TOKEN

AUTH = (DEMO_LOGIN, DEMO_TOKEN)


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[RunningServer]:
    server = serve_in_thread(build("jumpseller", str(tmp_path / "js.db"), products=9, seed=4, orders="6",
                                   per_second="3", clock="frozen"))
    yield server
    server.stop()


def get(sim: RunningServer, path: str, **kw: object) -> requests.Response:
    return requests.get(sim.url + path, timeout=10, **kw)  # type: ignore[arg-type]


def tick(sim: RunningServer) -> None:
    requests.post(sim.url + "/_admin/clock", json={"advance": 1}, timeout=10)


def test_basic_auth_or_the_deprecated_query_pair_else_401_with_a_message(sim: RunningServer) -> None:
    assert get(sim, "/products/count.json", auth=AUTH).json() == {"count": 9}
    assert get(sim, "/products/count.json", params={"login": DEMO_LOGIN, "authtoken": DEMO_TOKEN}).status_code == 200
    tick(sim)
    for kw in ({}, {"auth": (DEMO_LOGIN, "wrong")}, {"params": {"login": DEMO_LOGIN}}):
        resp = get(sim, "/products/count.json", **kw)
        assert resp.status_code == 401 and set(resp.json()) == {"message"}


def test_page_and_limit_as_the_spec_bounds_them(sim: RunningServer) -> None:
    first = get(sim, "/products.json", auth=AUTH, params={"page": 1, "limit": 4}).json()
    second = get(sim, "/products.json", auth=AUTH, params={"page": 2, "limit": 4}).json()
    last = get(sim, "/products.json", auth=AUTH, params={"page": 3, "limit": 4}).json()
    ids = [p["product"]["id"] for p in first + second + last]
    assert len(ids) == 9 and ids == sorted(ids) and len(last) == 1
    tick(sim)
    for params in ({"limit": 101}, {"page": 0}, {"limit": "many"}):
        resp = get(sim, "/products.json", auth=AUTH, params=params)
        assert resp.status_code == 400 and "message" in resp.json()


def test_twenty_a_second_is_answered_429_with_the_documented_headers_and_the_next_second_is_free(
        sim: RunningServer) -> None:
    statuses = [get(sim, "/orders.json", auth=AUTH) for _ in range(4)]
    assert [r.status_code for r in statuses] == [200, 200, 200, 429]
    assert statuses[0].headers["Jumpseller-PerSecondRateLimit-Limit"] == "3"
    assert statuses[0].headers["Jumpseller-PerSecondRateLimit-Remaining"] == "2"
    assert statuses[0].headers["Jumpseller-PerMinuteRateLimit-Limit"] == "800"
    assert statuses[3].headers["Retry-After"] == "1"
    tick(sim)
    assert get(sim, "/orders.json", auth=AUTH).status_code == 200


def test_seeded_orders_have_every_state_and_totals_that_add_up(sim: RunningServer) -> None:
    orders = [o["order"] for o in get(sim, "/orders.json", auth=AUTH, params={"limit": 100}).json()]
    assert {o["status_enum"] for o in orders} == {"paid", "pending_payment", "canceled", "abandoned"}
    assert any(o["status_enum"] == "pending_payment" and o["shipment_status_enum"] == "in_transit" for o in orders)
    for o in orders:
        lines = sum(p["price"] * p["qty"] - p["discount"] * p["qty"] for p in o["products"])
        assert round(lines - o["discount"] + o["shipping"], 2) == o["total"]
    tick(sim)
    paid = get(sim, "/orders.json", auth=AUTH, params={"status_filters[]": "paid"}).json()
    assert paid and {o["order"]["status_enum"] for o in paid} == {"paid"}


def test_the_same_seed_gives_the_same_store(tmp_path: Path) -> None:
    a = build("jumpseller", str(tmp_path / "a.db"), products=6, seed=9, orders="0")
    b = build("jumpseller", str(tmp_path / "b.db"), products=6, seed=9, orders="0")
    strip = ("created_at", "updated_at")
    docs = [[{k: v for k, v in d.items() if k not in strip} for _, d in app.store.all("products")] for app in (a, b)]
    assert docs[0] == docs[1]
