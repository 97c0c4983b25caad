"""Jumpseller's signed webhooks into the daemon over real HTTP: a signed paid order comes in at once, an
unsigned or wrongly signed one is refused (401) and never processed."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncagent.simulators import build
from syncagent.simulators.common import serve_in_thread
from tests.integration.harness import ROOT
from tests.integration.test_inbound import free_port, wait_for
from tests.integration.test_jumpseller import BO_SECRET, LOGIN, PRODUCTS, TOKEN, Shop, config

HOOKS = "canary-hooks-" + os.urandom(6).hex()


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Shop, Shop]]:
    for key, value in {"IT_JS_LOGIN": LOGIN, "IT_JS_TOKEN": TOKEN, "IT_BO_SECRET": BO_SECRET,
                       "JS_HOOKS": HOOKS}.items():
        monkeypatch.setenv(key, value)
    shop = Shop(serve_in_thread(build("jumpseller", str(tmp_path / "js.db"), products=9, seed=5, orders="0",
                                      login=LOGIN, auth_token=TOKEN, hooks_token=HOOKS)))
    bo = Shop(serve_in_thread(build("gestao-lojas", str(tmp_path / "bo.db"), products=20, seed=7,
                                    client_secret=BO_SECRET)))
    yield shop, bo
    shop.server.stop()
    bo.server.stop()


def send(shop: Shop, port: int, count: int, **extra: Any) -> list[dict[str, Any]]:
    shop.admin("POST", "/_admin/webhooks/send", json={"url": f"http://127.0.0.1:{port}/hooks/loja-online",
                                                      "count": count, **extra})
    return wait_for("the shop's hooks", lambda: (lambda d: d["items"] if not d["running"] and len(d["items"]) >= count
                                                 else None)(shop.admin("GET", "/_admin/webhooks")))


def test_a_signed_paid_order_comes_in_at_once_and_an_unsigned_one_is_refused(
        tmp_path: Path, stack: tuple[Shop, Shop]) -> None:
    shop, bo = stack
    port = free_port()
    path = config(tmp_path, shop, bo, [PRODUCTS, "orders: {every: 1h}"])
    path.write_text(path.read_text().replace("    flows:\n", "    notifications: {secret: ${JS_HOOKS}}\n    flows:\n")
                    + f"listen: {{host: 127.0.0.1, port: {port}}}\n")
    proc = subprocess.Popen([sys.executable, "-m", "syncagent", "-c", str(path), "run"], cwd=ROOT,  # noqa: S603
                            env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def first_cycle() -> bool:
            try:
                with sqlite3.connect(tmp_path / "journal.db") as conn:
                    return bool(conn.execute("SELECT 1 FROM runs WHERE flow = 'orders' AND finished_at IS NOT NULL")
                                .fetchone())
            except sqlite3.Error:
                return False

        wait_for("the daemon's first cycle", first_cycle, timeout=30)
        unsigned = send(shop, port, 1, sign=False)
        forged = send(shop, port, 1, token="not-the-hooks-token")
        assert [e["status"] for e in unsigned + forged] == [401, 401]
        signed = send(shop, port, 2)
        assert [e["status"] for e in signed] == [200, 200]
        wanted = {e["key"] for e in signed}

        def in_bo() -> set[str]:
            return {o["external_id"] for o in bo.admin("GET", "/_admin/orders")["items"]}

        wait_for("the signed orders in the back office", lambda: wanted <= in_bo(), timeout=15)
        # the woken step reads every paid order of the shop, the two whose hooks were refused too: a
        # notification only wakes, the orders themselves always come from the API (each created once)
        ids = [o["external_id"] for o in bo.admin("GET", "/_admin/orders")["items"]]
        assert len(ids) == len(set(ids)) == 4
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err[-2000:]
    assert err.count("failed its check and was refused") == 1  # one source, logged once
    assert HOOKS not in out + err and TOKEN not in out + err
    with sqlite3.connect(tmp_path / "journal.db") as conn:
        stored = {row[0] for row in conn.execute("SELECT key FROM notifications")}
    assert stored == wanted
