"""Notifications over real HTTP: the daemon (`syncagent run`) listens, the Seller Up simulator sends.

A verified notification is stored, answered and wakes the orders step (its interval is an hour, so
only the notification can bring the order in quickly); an unverified one is refused with 401,
logged once and never stored; a flood neither grows the daemon's memory nor stops the sync; an
order whose notification was lost comes in with the next poll.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.integration.harness import CHANNEL, CONFIG, ROOT, Sim, Sims

TOKEN = "hook-token-" + os.urandom(6).hex()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write(tmp_path: Path, sims: Sims, port: int, *, orders_every: str = "1h", rate: str = "") -> Path:
    channel = CHANNEL.format(name="loja-centro", url=sims.su.url, safety=0,
                             flows=f"      orders: {{every: {orders_every}}}")
    channel += "    notifications: {secret: ${HOOK_TOKEN}}\n"
    text = CONFIG.format(journal=tmp_path / "journal.db", bo=sims.bo.url, channels=channel)
    text += f"listen: {{host: 127.0.0.1, port: {port}{rate}}}\n"
    path = tmp_path / "syncagent.yaml"
    path.write_text(text)
    return path


def wait_for(what: str, cond: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def daemon(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Path, int], subprocess.Popen[str]]]:
    monkeypatch.setenv("HOOK_TOKEN", TOKEN)
    procs: list[subprocess.Popen[str]] = []

    def spawn(config: Path, port: int) -> subprocess.Popen[str]:
        proc = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "syncagent", "-c", str(config), "run"], cwd=ROOT, env=dict(os.environ),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        wait_for("the endpoint", lambda: _up(port) or proc.poll() is not None)
        assert proc.poll() is None, proc.communicate()
        return proc

    yield spawn
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _up(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except requests.RequestException:
        return False


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    sys.stdout.write(out)
    sys.stderr.write(err)
    assert proc.returncode == 0, err[-2000:]
    return err


def bo_orders(sims: Sims) -> set[str]:
    return {o.get("external_id") or o.get("channel_order_id") or "" for o in
            sims.bo.admin("GET", "/_admin/orders")["items"]}


def send(su: Sim, port: int, count: int, **extra: Any) -> None:
    su.admin("POST", "/_admin/webhooks/send", json={"url": f"http://127.0.0.1:{port}/hooks/loja-centro",
                                                    "token": TOKEN, "count": count, "status": "approved",
                                                    "backoffice_customers": True, **extra})


def sent_log(su: Sim, count: int) -> list[dict[str, Any]]:
    return wait_for("the simulator's sends", lambda: (lambda log: log if len(log) >= count and not log[-1].get(
        "running") else None)(su.admin("GET", "/_admin/webhooks")["items"]))


def first_poll_done(tmp_path: Path) -> bool:
    """The daemon's first orders step (every step runs once at start) has finished."""
    try:
        with sqlite3.connect(tmp_path / "journal.db") as conn:
            return bool(conn.execute("SELECT 1 FROM runs WHERE flow = 'orders' AND finished_at IS NOT NULL")
                        .fetchone())
    except sqlite3.Error:
        return False


def notifications(tmp_path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(tmp_path / "journal.db") as conn:
        return conn.execute("SELECT channel, flow, key, state FROM notifications ORDER BY id").fetchall()


def test_a_signed_notification_brings_the_order_in_at_once_and_an_unsigned_one_is_refused(
        sims: Sims, tmp_path: Path, daemon: Callable[[Path, int], subprocess.Popen[str]]) -> None:
    port = free_port()
    proc = daemon(write(tmp_path, sims, port), port)
    wait_for("the first orders poll", lambda: first_poll_done(tmp_path))
    before = bo_orders(sims)

    send(sims.su, port, 3)
    log = sent_log(sims.su, 3)
    assert [e["status"] for e in log] == [200, 200, 200]
    wanted = {e["key"] for e in log}
    wait_for("the notified orders in the back office", lambda: wanted <= bo_orders(sims), timeout=15)

    # forged: the wrong token, or none; refused, never stored, logged once for the source
    url = f"http://127.0.0.1:{port}/hooks/loja-centro"
    body = json.dumps({"topic": "orders", "id": "forged"})
    answers = [requests.post(url, data=body, headers=headers, timeout=5).status_code
               for headers in ({"X-Syncagent-Token": "wrong"}, {}, {"X-Syncagent-Token": TOKEN[:-1]})]
    assert answers == [401, 401, 401]
    assert requests.post(f"http://127.0.0.1:{port}/hooks/nobody", data=body, timeout=5).status_code == 404
    too_big = requests.post(url, data=b"x" * 70_000, headers={"X-Syncagent-Token": TOKEN}, timeout=5)
    assert too_big.status_code == 413  # over max_body (64 KiB by default): refused unread
    # a replay of a notification already stored is harmless: answered, not stored twice, no second order
    replay = requests.post(url, data=json.dumps({"topic": "orders", "id": log[0]["key"]}),
                           headers={"X-Syncagent-Token": TOKEN}, timeout=5)
    assert replay.status_code == 200 and replay.json()["duplicate"] is True

    err = stop(proc)
    assert err.count("failed its check and was refused") == 1
    stored = notifications(tmp_path)
    assert sorted(k for _, _, k, _ in stored) == sorted(wanted)
    assert all(state == "done" for *_, state in stored)
    ids = [o["external_id"] for o in sims.bo.admin("GET", "/_admin/orders")["items"]]
    assert len(ids) == len(set(ids)) == len(before) + 3  # each order created once
    assert TOKEN not in err


def test_a_lost_notification_is_caught_by_the_next_poll(
        sims: Sims, tmp_path: Path, daemon: Callable[[Path, int], subprocess.Popen[str]]) -> None:
    port = free_port()
    proc = daemon(write(tmp_path, sims, port, orders_every="2s"), port)
    wait_for("the first orders poll", lambda: first_poll_done(tmp_path))
    send(sims.su, port, 2, notify=False)  # the orders are made, their notifications never leave
    log = sent_log(sims.su, 2)
    assert all(e["sent_at"] is None for e in log)
    wanted = {e["key"] for e in log}
    wait_for("the polled orders in the back office", lambda: wanted <= bo_orders(sims), timeout=15)
    stop(proc)
    assert notifications(tmp_path) == []


def test_a_flood_is_answered_without_memory_growth_and_the_sync_goes_on(
        sims: Sims, tmp_path: Path, daemon: Callable[[Path, int], subprocess.Popen[str]]) -> None:
    port = free_port()
    proc = daemon(write(tmp_path, sims, port, rate=", rate_limit: {per_second: 100000, burst: 100000}"), port)
    wait_for("the first orders poll", lambda: first_poll_done(tmp_path))
    url = f"http://127.0.0.1:{port}/hooks/loja-centro"
    session = requests.Session()

    def flood(i: int) -> int:
        body = json.dumps({"topic": "orders", "id": f"flood-{i}"})  # each a new notification, none an order
        return session.post(url, data=body, headers={"X-Syncagent-Token": TOKEN}, timeout=10).status_code

    def rss_kb() -> int:
        for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    with ThreadPoolExecutor(8) as pool:
        first = list(pool.map(flood, range(600)))
        after_first = rss_kb()
        second = list(pool.map(flood, range(600, 2000)))
    grown = rss_kb() - after_first
    assert set(first + second) <= {200, 503}, set(first + second)
    assert first.count(200) + second.count(200) >= 1800
    assert grown < 8 * 1024, f"the daemon grew {grown} kB over 1,400 more notifications"
    # the sync goes on: a real order notified after the flood comes in
    send(sims.su, port, 1)
    (entry,) = sent_log(sims.su, 1)
    wait_for("the order after the flood", lambda: entry["key"] in bo_orders(sims), timeout=20)
    stop(proc)


def test_a_client_trickling_its_request_is_cut_off(tmp_path: Path) -> None:
    from syncagent.config import ListenConfig
    from syncagent.inbound.server import Listener
    from syncagent.journal import Journal

    Journal(tmp_path / "journal.db").close()
    listener = Listener(ListenConfig(port=0, client_timeout=1.0), {}, tmp_path / "journal.db", lambda c, f: None)
    listener.start()
    try:
        with socket.create_connection(("127.0.0.1", listener.port), timeout=10) as sock:
            sock.sendall(b"POST /hooks/loja HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
            closed = False
            for _ in range(40):  # one byte every 0.25 s keeps it busy; cut within about two seconds
                try:
                    sock.sendall(b" ")
                    sock.settimeout(0.25)
                    if sock.recv(1) == b"":
                        closed = True
                        break
                except TimeoutError:
                    continue
                except OSError:
                    closed = True
                    break
            assert closed, "a client trickling its body for 10 s was not cut off"
    finally:
        listener.stop()
