"""Mercado Livre notifications into the daemon over real HTTP: a pointer naming our application, our seller
and `orders_v2` wakes the orders step at once (the order is read back from the API); one naming another
application is refused (401) and never stored; a topic we do not read is answered and dropped."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import requests

from tests.integration.harness import ROOT
from tests.integration.test_inbound import free_port, wait_for
from tests.integration.test_mercadolivre import CHANNEL, ENV, ML_CLIENT, World, authorize, world  # noqa: F401

SELLER = "123456789"  # the simulator's seller (its token answer's user_id)


def test_a_notification_of_our_app_brings_the_paid_order_in_and_a_foreign_one_is_refused(
        world: World, tmp_path: Path) -> None:  # noqa: F811 - the fixture imported above
    authorize(world)
    port = free_port()
    text = world.config.read_text().replace("orders: {every: 1m}", "orders: {every: 1h}")
    text = text.replace("    flows:\n", f'    notifications: {{application_id: "{ML_CLIENT}", user_id: "{SELLER}"}}\n'
                                       "    flows:\n", 1)
    world.config.write_text(text + f"listen: {{host: 127.0.0.1, port: {port}}}\n")
    proc = subprocess.Popen([sys.executable, "-m", "syncagent", "-c", str(world.config), "run"], cwd=ROOT,  # noqa: S603
                            env={**os.environ, **ENV}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/hooks/{CHANNEL}"
    try:
        def first_cycle() -> bool:
            try:
                with sqlite3.connect(world.journal) as conn:
                    return bool(conn.execute("SELECT 1 FROM runs WHERE flow = 'orders' AND finished_at IS NOT NULL")
                                .fetchone())
            except sqlite3.Error:
                return False

        wait_for("the daemon's first cycle", first_cycle, timeout=30)
        (paid,) = world.ml.admin("POST", "/_admin/orders", json={"count": 1, "shipping_mode": "me2"})["items"]
        note = {"resource": f"/orders/{paid['id']}", "user_id": int(SELLER), "topic": "orders_v2",
                "application_id": int(ML_CLIENT), "attempts": 1, "sent": "2026-12-05T10:00:00.000Z",
                "received": "2026-12-05T10:00:00.000Z"}
        forged = requests.post(url, data=json.dumps({**note, "application_id": 999}), timeout=5)
        other_seller = requests.post(url, data=json.dumps({**note, "user_id": 1}), timeout=5)
        items = requests.post(url, data=json.dumps({**note, "topic": "items", "resource": "/items/MLB1"}), timeout=5)
        assert (forged.status_code, other_seller.status_code) == (401, 401)
        assert items.status_code == 200 and items.json()["stored"] is False
        ok = requests.post(url, data=json.dumps(note), timeout=5)
        assert ok.status_code == 200 and ok.json()["stored"] is True
        again = requests.post(url, data=json.dumps(note), timeout=5)  # ML sends duplicates: harmless
        assert again.json()["duplicate"] is True

        def in_bo() -> list[str]:
            return [o["external_id"] for o in world.bo.admin("GET", "/_admin/orders")["items"]]

        wait_for("the notified order in the back office", lambda: str(paid["id"]) in in_bo(), timeout=20)
        assert in_bo().count(str(paid["id"])) == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err[-2000:]
    assert err.count("failed its check and was refused") == 1
    with sqlite3.connect(world.journal) as conn:
        stored = conn.execute("SELECT channel, flow, key FROM notifications").fetchall()
    assert stored == [(CHANNEL, "orders", str(paid["id"]))]
