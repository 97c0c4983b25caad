"""Benchmarks of inbound notifications (issue "orders in seconds", part A).

The daemon (`syncagent run`, a process of its own) listens; its orders step polls only every
10 minutes, so an order comes in quickly only because its notification woke the step. The Seller Up
simulator makes paid orders one by one and POSTs a notification for each (`/_admin/webhooks/send`):
the time from its notification to its creation in the back office (the back office simulator's
own creation stamp) is the figure; the notification's answer time is measured by the sender.
Then a flood from several client threads: answers, memory, and an order notified right after it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

from bench.common import ENV, PY, ROOT, Channel, Row, backoffice_db, fresh_db, start_sim, write_config

TOKEN = "bench-hook-token"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def _wait(what: str, cond: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


def _rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status", encoding="ascii"):  # noqa: SIM115 - read at once
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def notifications(b: Any, catalogue: int, count: int, rate: float, flood: int) -> None:
    w = b.workdir
    bo = start_sim("gestao-lojas", backoffice_db(w, catalogue, "bo-hooks"), catalogue)
    su = start_sim("sellerup", fresh_db(w, "su-hooks"), catalogue, "orders=0")
    port = _free_port()
    cfg = write_config(w / "hooks.yaml", fresh_db(w, "journal-hooks"), bo.url, [Channel("loja", su.url, ("orders",))])
    text = cfg.read_text().replace("    flows:\n      orders: {}", "    notifications: {secret: ${HOOK_TOKEN}}\n"
                                   "    flows:\n      orders: {every: 10m}")
    cfg.write_text(text + f"listen: {{host: 127.0.0.1, port: {port}, rate_limit: {{per_second: 1000, burst: 1000}}}}\n")
    env = {**os.environ, **ENV, "HOOK_TOKEN": TOKEN}
    daemon = subprocess.Popen([PY, "-m", "syncagent", "-c", str(cfg), "run"], cwd=ROOT, env=env,  # noqa: S603
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/hooks/loja"
    try:
        _wait("the endpoint", lambda: _healthy(port), 60)
        time.sleep(2.0)  # the first cycle (every step runs once at start) is over: only notifications wake it now
        su.admin("POST", "/_admin/webhooks/send", {"url": url, "token": TOKEN, "count": count, "rate": rate,
                                                   "status": "approved", "backoffice_customers": True})
        log = _wait("the sends", lambda: (lambda d: d["items"] if not d["running"] else None)(
            su.admin("GET", "/_admin/webhooks")), count / rate + 120)

        def created() -> dict[str, float] | None:
            found = {o["external_id"]: o["created_ts"] for o in bo.admin("GET", "/_admin/orders")["items"]}
            return found if all(e["key"] in found for e in log) else None

        arrived = _wait("every notified order in the back office", created, 120)
        delays = [arrived[e["key"]] - e["sent_at"] for e in log]
        answers = [e["answered_at"] - e["sent_at"] for e in log]
        statuses = {e["status"] for e in log}
        assert statuses == {200}, f"notifications answered {statuses}"
        p99 = _pct(delays, 0.99)
        b.fact(f"notifications: {count:,} paid orders made and notified by the Seller Up simulator at {rate:g}/s; "
               f"notification to back office order: median {statistics.median(delays) * 1000:.0f} ms, p99 "
               f"{p99 * 1000:.0f} ms, max {max(delays) * 1000:.0f} ms (the orders step polls every 10 min); "
               f"answers: median {statistics.median(answers) * 1000:.1f} ms, p99 {_pct(answers, 0.99) * 1000:.1f} ms")
        b.add("hooks", Row(f"paid order in the back office after its notification (p99, {rate:g}/s)", f"{count:,}",
                           f"{p99 * 1000:.0f} ms", "—", "—", "≤ 2 s at p99", p99 <= 2.0, "—"))
        p99_answer = _pct(answers, 0.99)
        b.add("hooks-answer", Row("notification answered, stored durably first (p99)", f"{count:,}",
                                  f"{p99_answer * 1000:.1f} ms", "—", "—", "≤ 50 ms at p99", p99_answer <= 0.050, "—"))
        _flood(b, daemon.pid, url, flood, su, bo)
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            daemon.kill()
        su.stop()
        bo.stop()


def _healthy(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except requests.RequestException:
        return False


def _flood(b: Any, pid: int, url: str, count: int, su: Any, bo: Any) -> None:
    """`count` notifications in about a minute from 8 threads (new ones: each stored and waking the step)."""
    rss_before = _rss_mb(pid)
    local = threading.local()
    times: list[float] = []
    codes: list[int] = []
    gap = 60.0 / count
    start = time.monotonic()

    def one(i: int) -> None:
        ahead = start + i * gap - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
        session = getattr(local, "s", None) or requests.Session()
        local.s = session
        t0 = time.perf_counter()
        resp = session.post(url, data=json.dumps({"topic": "orders", "id": f"flood-{i}"}),
                            headers={"X-Syncagent-Token": TOKEN}, timeout=30)
        times.append(time.perf_counter() - t0)
        codes.append(resp.status_code)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(count)))
    took = time.monotonic() - start
    rss_after = _rss_mb(pid)
    # the sync goes on: an order notified right after the flood comes in
    su.admin("POST", "/_admin/webhooks/send", {"url": url, "token": TOKEN, "count": 1, "status": "approved",
                                               "backoffice_customers": True})
    (entry,) = _wait("the send", lambda: (lambda d: d["items"] if not d["running"] else None)(
        su.admin("GET", "/_admin/webhooks")), 30)
    found = _wait("the order after the flood", lambda: next((o for o in bo.admin("GET", "/_admin/orders")["items"]
                                                              if o["external_id"] == entry["key"]), None), 60)
    after = found["created_ts"] - entry["sent_at"]
    ok = codes.count(200)
    p99 = _pct(times, 0.99)
    b.fact(f"flood: {count:,} notifications in {took:.0f} s from 8 client threads: {ok:,} answered 200, "
           f"others {sorted(set(codes) - {200})}; answer p99 {p99 * 1000:.1f} ms; daemon RSS {rss_before:.1f} MB before, "
           f"{rss_after:.1f} MB after; an order notified right after it reached the back office in {after * 1000:.0f} ms")
    b.add("flood", Row(f"flood of {count:,} notifications in a minute: daemon RSS growth", f"{count:,}",
                       f"{rss_after - rss_before:+.1f} MB, p99 answer {p99 * 1000:.0f} ms", "—", "—",
                       "≤ +5 MB, every one answered, the sync goes on",
                       rss_after - rss_before <= 5 and ok == count and after <= 2.0, "—"))
