"""The operator's view over real HTTP: logging levels, whole causes, Ctrl-C, commands beside a daemon, replay.

Each test drives the real command line in a child process against the bundled simulators.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import (
    ALL_FLOWS,
    CANARY_ENV,
    ROOT,
    Sims,
    assert_no_canary,
    cli,
    items_written,
    run_once,
    start,
    write_config,
)

REQUEST_LINE = re.compile(r"DEBUG syncagent\.http: (\S+): (GET|POST|PUT|PATCH|DELETE) (\S+) -> (\d{3}) in (\d+) ms")


def status_json(config: Path) -> dict[str, Any]:
    proc = cli(config, "status", "--json")
    assert proc.returncode in (0, 1), proc.stderr
    return dict(json.loads(proc.stdout))


def last_run(status: dict[str, Any], flow: str) -> dict[str, Any]:
    channel = status["channels"][0]
    return dict(next(f for f in channel["flows"] if f["flow"] == flow)["last_run"] or {})


def with_log_level(config: Path, level: str, log_file: Path | None = None) -> Path:
    extra = f", file: {log_file}" if log_file is not None else ""
    config.write_text(config.read_text().replace("log: {level: warning, format: text}",
                                                 f"log: {{level: {level}, format: text{extra}}}"))
    return config


def popen(config: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(  # noqa: S603 - our own module
        [sys.executable, "-m", "syncagent", "-c", str(config), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ},
    )


def wait_for(condition: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


# -- item 22: -v shows each request and each decision; info shows one line per step -------------------------
def test_verbose_logs_each_request_and_the_steps_decisions(sims: Sims, tmp_path: Path) -> None:
    config = write_config(tmp_path, sims, flows=["groups"])
    proc = cli(config, "-v", "push", "--entity", "groups")
    assert proc.returncode == 0, proc.stderr
    requests_seen = [r[:4] for r in REQUEST_LINE.findall(proc.stderr)]
    assert ("backoffice", "GET", "/groups", "200") in requests_seen
    assert ("loja-centro", "PUT", "/v1/groups", "200") in requests_seen  # the channel's side too
    assert "loja-centro/groups: step starts" in proc.stderr
    assert "loja-centro/groups: page done: so far read 6, sent 6" in proc.stderr
    for line in proc.stderr.splitlines():
        if "syncagent.http" in line:
            assert "?" not in line and "Bearer" not in line  # never a query string (tokens) nor a header

    again = cli(config, "-v", "push", "--entity", "groups")
    assert "loja-centro/groups: page skipped: the same bytes were recorded whole before" in again.stderr

    quiet = cli(config, "push", "--entity", "groups")
    assert quiet.returncode == 0 and "DEBUG" not in quiet.stderr  # level warning: no debug without -v


def test_info_level_gives_one_line_per_step_with_its_counts(sims: Sims, tmp_path: Path) -> None:
    log_file = tmp_path / "agent.log"
    config = with_log_level(write_config(tmp_path, sims), "info", log_file)
    proc = cli(config, "run", "--once")
    assert proc.returncode in (0, 1), proc.stderr
    step_line = re.compile(r"INFO syncagent\.agent: loja-centro/([a-z-]+): (ok|quarantined) in [\d.]+ s: "
                           r"read (\d+), sent (\d+), unchanged (\d+), quarantined (\d+)")
    found = [m.groups() for m in step_line.finditer(proc.stderr)]
    assert sorted(f[0] for f in found) == sorted(ALL_FLOWS)  # one line per step, no more
    products = next(f for f in found if f[0] == "products")
    assert products[2:4] == ("60", "60")

    # the daemon, at level info, says what each step did as it goes
    log_file.write_text("")
    daemon = popen(config, "run")
    try:
        wait_for(lambda: len(step_line.findall(log_file.read_text())) >= len(ALL_FLOWS), "a line per step")
    finally:
        daemon.send_signal(signal.SIGTERM)
        out, err = daemon.communicate(timeout=60)
        sys.stderr.write(err)
    assert daemon.returncode == 0, err
    assert "products: ok in" in log_file.read_text()


# -- item 23: the whole cause, the back office's own failure, 80 columns, times with their zone ------------
def test_a_back_office_credential_failure_is_shown_whole_and_as_the_back_offices(sims: Sims, tmp_path: Path) -> None:
    config = write_config(tmp_path, sims, flows=["orders", "products"])
    proc = cli(config, "run", "--once", env={"GL_CLIENT_SECRET": "not-the-secret", "COLUMNS": "80"})
    assert proc.returncode == 1
    assert "invalid_client: client authentication failed" in proc.stdout  # whole, not "invalid_client: c"
    assert "back office credentials rejected" in proc.stdout

    status = status_json(config)
    assert status["backoffice"]["auth_state"] == "auth_failed"
    assert status["channels"][0]["auth_state"] != "auth_failed"  # the tablet's key was never refused

    shown = cli(config, "status", env={"COLUMNS": "80", "TZ": "America/Sao_Paulo"})
    assert shown.returncode == 1
    lines = shown.stdout.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= 80
    assert "payment-methods" not in shown.stdout  # (not configured here) - the flows shown are whole words:
    assert re.search(r"^\s+products\s", shown.stdout, re.M) and re.search(r"^\s+orders\s", shown.stdout, re.M)
    text = " ".join(line.strip() for line in lines)
    assert "invalid_client: client authentication failed" in text
    assert re.search(r"at \d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} -03", text)  # a time carries its zone
    assert "credentials REJECTED" in shown.stdout

    fixed = cli(config, "run", "--once")  # the right secret again: the back office is fine once it is read
    assert fixed.returncode in (0, 1), fixed.stderr
    assert status_json(config)["backoffice"]["auth_state"] == "ok"


def test_a_server_down_is_said_in_a_few_whole_words(sims: Sims, tmp_path: Path) -> None:
    config = write_config(tmp_path, sims, flows=["groups"])
    config.write_text(config.read_text().replace(sims.bo.url, "http://127.0.0.1:9"))  # discard port: refused
    proc = cli(config, "push", "--entity", "groups", env={"COLUMNS": "80"})
    assert proc.returncode == 1
    text = " ".join(line.strip() for line in proc.stdout.splitlines())
    assert "Connection refused at 127.0.0.1:9" in text
    assert "HTTPConnectionPool" not in proc.stdout


# -- item 24: Ctrl-C prints the summary so far, exits 130, and the run is recorded as interrupted ----------
@pytest.fixture
def big(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> Iterator[Sims]:
    for key, value in CANARY_ENV.items():
        monkeypatch.setenv(key, value)
    bo = start("gestao-lojas", tmp_path / "bo.db", products=1500)
    su = start("sellerup", tmp_path / "su.db", products=1500)
    yield Sims(bo, su)
    su.server.stop()
    bo.server.stop()
    assert_no_canary(tmp_path, capfd)


@pytest.mark.parametrize("presses", [1, 2], ids=["once", "twice"])
def test_ctrl_c_during_a_push_keeps_its_counts(big: Sims, tmp_path: Path, presses: int) -> None:
    config = write_config(tmp_path, big, flows=["products"])
    big.su.admin("POST", "/_admin/faults", json={"latency_ms": 150, "only": "PUT /v1/products"})
    proc = popen(config, "push", "--entity", "products")
    try:
        wait_for(lambda: any(w["path"] == "/v1/products" for w in big.su.writes()), "the first page sent")
        for _ in range(presses):
            proc.send_signal(signal.SIGINT)
            time.sleep(0.1)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    sys.stdout.write(out)
    sys.stderr.write(err)
    assert proc.returncode == 130, out + err
    assert "Aborted!" not in out + err and "Traceback" not in err
    assert "interrupted" in out and "sync summary" in out

    run = last_run(status_json(config), "products")
    assert run["result"] == "interrupted"
    received = items_written(big.su.requests_log(), "/v1/products")
    assert 0 < run["sent"] < 1500
    assert run["sent"] <= len(received)  # what it counts as sent, the channel has
    assert f"sent {run['sent']}" in out

    big.su.admin("DELETE", "/_admin/faults")
    again = cli(config, "push", "--entity", "products", "--json")
    assert again.returncode == 0, again.stderr
    second = json.loads(again.stdout)[0]
    assert second["status"] == "ok"
    assert run["sent"] + second["sent"] >= 1500 > second["sent"]  # it went on from where it stopped


# -- item 25: read-only commands work beside the daemon; the others say how ----------------------------------
def test_read_only_commands_work_beside_the_daemon(sims: Sims, tmp_path: Path) -> None:
    config = write_config(tmp_path, sims, flows=["groups", "products", "prices"])
    daemon = popen(config, "run")
    try:
        wait_for(lambda: (tmp_path / "journal.db").exists() and last_run(status_json(config), "prices"),
                 "the daemon's first cycle")
        assert daemon.poll() is None
        dry = cli(config, "push", "--entity", "products", "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert "dry run" in dry.stdout
        reconciled = cli(config, "reconcile", "--channel", "loja-centro", "--entity", "products")
        assert reconciled.returncode == 0, reconciled.stderr
        assert cli(config, "status").returncode == 0
        doctor = cli(config, "doctor", "--offline", "--json")
        assert doctor.returncode in (0, 1) and json.loads(doctor.stdout)["exit_code"] != 3
        listed = cli(config, "quarantine", "list")
        assert listed.returncode == 0, listed.stderr

        writes = cli(config, "push", "--entity", "groups")
        assert writes.returncode == 3
        assert "systemctl stop syncagent" in writes.stderr and "push --dry-run" in writes.stderr
        replay = cli(config, "replay", "product", "P000001", "--channel", "loja-centro")
        assert replay.returncode == 3 and "two agents must never write" in replay.stderr
        assert daemon.poll() is None  # nothing above disturbed it
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=60)
        sys.stderr.write(err)
    assert daemon.returncode == 0, err


# -- item 26: replay by the number the tablet shows; the progress bar's total ------------------------------
def test_replay_order_accepts_the_number_the_tablet_shows(sims: Sims, tmp_path: Path) -> None:
    config = write_config(tmp_path, sims, flows=["orders"])
    run_once(config)
    imported = {o["external_id"] for o in sims.bo.admin("GET", "/_admin/orders")["items"]}
    order = next(o for o in sims.su.admin("GET", "/_admin/orders")["items"] if o["id"] in imported)
    assert order["number"].startswith("T") and order["number"] != order["id"]
    mark = sims.bo.last_request_id()
    proc = cli(config, "replay", "order", order["number"], "--channel", "loja-centro")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"order number {order['number']} is the order {order['id']}" in proc.stdout
    assert "already in the back office" in proc.stdout
    assert [w for w in sims.bo.writes(mark) if w["path"] == "/orders"] == []

    unknown = cli(config, "replay", "order", "T99999", "--channel", "loja-centro")
    assert unknown.returncode == 1 and "T99999 is neither in the journal" in unknown.stderr


def test_a_whole_pass_shows_its_total(sims: Sims, tmp_path: Path) -> None:
    config = write_config(tmp_path, sims, flows=["products"])
    first = cli(config, "push", "--entity", "products")
    assert first.returncode == 0 and " of ~" not in first.stderr  # the first pass: its length is not known
    full = cli(config, "push", "--entity", "products", "--full")
    assert full.returncode == 0, full.stderr
    assert re.search(r"loja-centro/products: read \d+ of ~60", full.stderr)
