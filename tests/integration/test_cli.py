"""The real command line in child processes: exit codes, lock, signals, status, quarantine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from syncagent.simulators import seeddata
from tests.integration.harness import CANARY_KEY, CANARY_SECRET, ROOT, Sims, cli, write_config


def test_check_config_reports_every_problem_with_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "backoffice:\n  type: gestao-lojas\n  base_url: ftp://nowhere\n  client_id: x\n"
        "  client_secret: ${GL_SECRET:-s3cr3t-value}\n"
        "channels:\n  - name: Loja Centro\n    type: sellerup\n    base_url: http://127.0.0.1:1\n"
        "    api_key: ${KEY:-k3y-value}\n    safety_stock: abc\n    flows:\n      stokc: {every: 5m}\n"
    )
    proc = cli(bad, "check-config")
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith(str(bad))]
    assert len(lines) >= 4, proc.stderr
    assert any(":3:" in line and "base_url" in line for line in lines)
    assert any(":7:" in line and "name" in line for line in lines)
    assert any(":11:" in line and "safety_stock" in line for line in lines)
    assert any(":13:" in line and "stock" in line for line in lines)  # the suggestion
    assert "s3cr3t-value" not in proc.stderr + proc.stdout


def test_check_config_summary_masks_secrets(sims: Sims, tmp_path: Path) -> None:
    config = write_config(tmp_path, sims)
    proc = cli(config, "check-config", "--online")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "loja-centro" in proc.stdout
    assert CANARY_SECRET not in proc.stdout and CANARY_KEY not in proc.stdout
    assert "credentials accepted" in proc.stdout


def test_run_once_status_and_quiet_second_run(sims: Sims, tmp_path: Path) -> None:
    config = write_config(tmp_path, sims)
    first = cli(config, "run", "--once")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "products" in first.stdout and "sent" in first.stdout
    assert "loja-centro/groups: read" in first.stderr  # no terminal: progress as a plain line, no bar
    assert "\x1b[" not in first.stderr
    second = cli(config, "run", "--once", "--json")
    assert second.returncode == 0
    steps = json.loads(second.stdout)
    assert sum(s["sent"] for s in steps) == 0 and {s["status"] for s in steps} == {"ok"}
    status = cli(config, "status", "--json")
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert data["schema"] == 1
    channel = data["channels"][0]
    assert channel["name"] == "loja-centro" and channel["auth_state"] == "ok"
    flows = {f["flow"]: f for f in channel["flows"]}
    assert flows["products"]["last_run"]["result"] == "ok"
    assert flows["products"]["cursor_age_seconds"] is not None
    assert channel["orders"]["acknowledged"] >= 5
    assert channel["orders_waiting"] == 0 and channel["oldest_waiting_order_age_seconds"] is None
    assert {f["flow"]: (f["backlog"], f["behind"]) for f in channel["flows"]}["prices"] == (0, False)
    table = cli(config, "status")
    assert table.returncode == 0 and "loja-centro" in table.stdout and "backlog" in table.stdout


def test_push_one_entity_and_unknown_channel(sims: Sims, tmp_path: Path) -> None:
    config = write_config(tmp_path, sims)
    proc = cli(config, "push", "--entity", "products", "--json")
    assert proc.returncode == 0, proc.stderr
    (step,) = json.loads(proc.stdout)
    assert step["flow"] == "products" and step["sent"] == step["read"] > 0
    again = cli(config, "push", "--entity", "products", "--full", "--json")
    assert json.loads(again.stdout)[0]["sent"] == 0
    bad = cli(config, "push", "--entity", "products", "--channel", "nope")
    assert bad.returncode == 2 and "nope" in bad.stderr
    usage = cli(config, "push", "--entity", "frobs")
    assert usage.returncode == 2


def test_pull_orders_and_customers(sims: Sims, tmp_path: Path) -> None:
    config = write_config(tmp_path, sims)
    customers = cli(config, "pull", "--entity", "customers", "--json")
    assert customers.returncode == 0, customers.stderr
    orders = cli(config, "pull", "--entity", "orders", "--json")
    assert orders.returncode == 0, orders.stderr
    (step,) = json.loads(orders.stdout)
    assert step["sent"] >= 5
    assert len(sims.bo.admin("GET", "/_admin/orders")["items"]) == step["sent"]


def _start_daemon(config: Path, tmp_path: Path) -> subprocess.Popen[str]:
    """`syncagent run` in a child, returned once it holds the journal lock (30 s at most)."""
    daemon = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "syncagent", "-c", str(config), "run"], cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 30
    while not (tmp_path / "journal.db.lock").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    return daemon


def test_second_agent_on_the_same_journal_exits_3(sims: Sims, tmp_path: Path) -> None:
    config = write_config(tmp_path, sims)
    daemon = _start_daemon(config, tmp_path)
    try:
        second = cli(config, "run", "--once")
        assert second.returncode == 3, second.stderr
        assert "another syncagent" in second.stderr
    finally:
        daemon.send_signal(signal.SIGTERM)
        started = time.monotonic()
        code = daemon.wait(timeout=20)
        assert code == 0, daemon.stderr.read() if daemon.stderr else ""
        assert time.monotonic() - started < 10


def test_daemon_runs_steps_on_their_interval_and_stops_on_sigterm(sims: Sims, tmp_path: Path) -> None:
    config = write_config(tmp_path, sims, flows=["products", "orders", "customers"])
    text = config.read_text().replace("products: {every: 1m}", "products: {every: 1s}")
    config.write_text(text)
    daemon = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "syncagent", "-c", str(config), "run"], cwd=ROOT, env=dict(os.environ),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            reads = [r for r in sims.bo.requests_log() if r["path"] == "/products" and r["method"] == "GET"]
            if len(reads) >= 4:
                break
            time.sleep(0.3)
        assert len(reads) >= 4, "the products step did not repeat on its 1 s interval"
        orders_reads = [r for r in sims.su.requests_log() if r["path"] == "/v1/orders"]
        assert orders_reads and orders_reads[0]["ts"] < reads[0]["ts"], "orders must run before products"
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=15) == 0


def test_quarantine_list_show_retry_drop(sims: Sims, tmp_path: Path) -> None:
    config = write_config(tmp_path, sims, flows=["orders", "customers"])
    orders = [o for o in sims.su.admin("GET", "/_admin/orders")["items"] if o["status"] == "approved"]
    first, second = orders[0]["id"], orders[1]["id"]
    for order_id, sku in ((first, "NOVO-1"), (second, "NOVO-2")):
        items = sims.su.admin("GET", f"/_admin/orders/{order_id}")
        items = items.get("items") or items["order"]["items"]
        items[0]["key"] = sku
        sims.su.admin("PATCH", f"/_admin/orders/{order_id}", json={"items": items})
    run = cli(config, "run", "--once")
    assert run.returncode == 1, run.stdout + run.stderr
    listing = cli(config, "quarantine", "list", "--json")
    rows = {r["key"]: r for r in json.loads(listing.stdout)}
    assert set(rows) == {first, second}
    show = cli(config, "quarantine", "show", str(rows[first]["id"]))
    assert show.returncode == 0 and "NOVO-1" in show.stdout and "first seen" in show.stdout

    # the missing product now exists in the back office: retry applies the order now
    token = requests.post(sims.bo.url + "/oauth/token", data={
        "grant_type": "client_credentials", "client_id": seeddata.DEMO_CLIENT_ID,
        "client_secret": CANARY_SECRET}, timeout=10).json()["access_token"]
    created = requests.post(sims.bo.url + "/products", headers={"Authorization": f"Bearer {token}"}, timeout=10,
                            json={"code": "NOVO-1", "description": "Produto novo", "active": True, "unit": "UN"})
    assert created.status_code == 201, created.text
    retry = cli(config, "quarantine", "retry", str(rows[first]["id"]))
    assert retry.returncode == 0, retry.stdout + retry.stderr
    externals = [o["external_id"] for o in sims.bo.admin("GET", "/_admin/orders")["items"]]
    assert externals.count(first) == 1
    still = cli(config, "quarantine", "retry", str(rows[second]["id"]))
    assert still.returncode == 1 and "still refused" in still.stdout

    drop = cli(config, "quarantine", "drop", str(rows[second]["id"]), "--reason", "produto descontinuado",
               "--by", "ana")
    assert drop.returncode == 0
    listing = json.loads(cli(config, "quarantine", "list", "--all", "--json").stdout)
    states = {r["key"]: (r["state"], r["closed_by"], r["close_reason"]) for r in listing}
    assert states[second] == ("dropped", "ana", "produto descontinuado")
    assert states[first][0] == "released"
    assert json.loads(cli(config, "quarantine", "list", "--json").stdout) == []


def test_push_dry_run_shows_changes_and_sends_nothing(sims: Sims, tmp_path: Path) -> None:
    config = write_config(tmp_path, sims, flows=["products", "prices"])
    assert cli(config, "run", "--once").returncode == 0
    for sku, price in (("P000002", "11.11"), ("P000003", "22.22")):
        sims.bo.admin("PATCH", f"/_admin/prices/{sku}", json={"list_price": price, "promo_price": None,
                                                              "promo_start": None, "promo_end": None, "scheduled": []})
    journal_before = (tmp_path / "journal.db").read_bytes()
    mark = sims.su.last_request_id()
    proc = cli(config, "push", "--entity", "prices", "--dry-run", "--json")
    assert proc.returncode == 0, proc.stderr
    (step,) = json.loads(proc.stdout)
    assert sorted((w["key"], w["action"], w["payload"]["price"]) for w in step["would_send"]) == [
        ("P000002", "update", "11.11"), ("P000003", "update", "22.22")]
    assert all("price" in w["changed_fields"] for w in step["would_send"])  # read from the channel's listing
    assert sims.su.writes(mark) == []
    assert (tmp_path / "journal.db").read_bytes() == journal_before
    table = cli(config, "push", "--entity", "prices", "--dry-run")
    assert "2 update" in table.stdout and "P000003" in table.stdout and "changed fields" in table.stdout
    real = json.loads(cli(config, "push", "--entity", "prices", "--json").stdout)
    assert real[0]["sent"] == 2


def test_shadow_channel_computes_everything_and_sends_nothing(sims: Sims, tmp_path: Path) -> None:
    config = write_config(tmp_path, sims)
    config.write_text(config.read_text().replace("    safety_stock: 0\n", "    safety_stock: 0\n    shadow: true\n"))
    run = cli(config, "run", "--once", "--json")
    assert run.returncode == 0, run.stderr
    assert sims.su.writes() == [] and sims.bo.writes() == []
    assert sum(s["read"] for s in json.loads(run.stdout)) > 0
    config.write_text(config.read_text().replace("    shadow: true\n", ""))  # the switch: go live
    live = json.loads(cli(config, "run", "--once", "--json").stdout)
    by_flow = {s["flow"]: s for s in live}
    assert by_flow["products"]["sent"] == 60 and by_flow["orders"]["sent"] > 0  # nothing was skipped


def test_a_crlf_environment_file_is_refused_and_no_form_of_the_secret_shows(sims: Sims, tmp_path: Path) -> None:
    """An env file saved with CRLF: every value ends in \\r. Refused at load, with file:line:key, nothing leaked."""
    config = write_config(tmp_path, sims, flows=["groups"])
    crlf = {"SELLERUP_KEY": CANARY_KEY + "\r", "GL_CLIENT_SECRET": CANARY_SECRET + "\r\n"}
    secret_line = next(n for n, line in enumerate(config.read_text().splitlines(), 1) if "${SELLERUP_KEY}" in line)
    for args in (("check-config",), ("run", "--once"), ("doctor", "--json", "--offline")):
        proc = cli(config, *args, env=crlf)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        shown = proc.stdout + proc.stderr
        assert f"{config}:{secret_line}: channels[0].api_key" in shown and "carriage return" in shown, shown
        assert CANARY_KEY not in shown and CANARY_SECRET not in shown
    assert not (tmp_path / "journal.db").exists()


def test_daemon_keeps_the_journal_when_its_lock_file_goes_and_stops_when_the_journal_goes(
        sims: Sims, tmp_path: Path) -> None:
    config = write_config(tmp_path, sims, flows=["groups"])
    config.write_text(config.read_text().replace("groups: {every: 1m}", "groups: {every: 1s}"))
    journal = tmp_path / "journal.db"
    daemon = _start_daemon(config, tmp_path)
    try:
        (tmp_path / "journal.db.lock").unlink()  # a tidy-up script, a careless `rm *.lock`
        second = cli(config, "run", "--once")
        assert second.returncode == 3 and "another syncagent" in second.stderr, second.stderr
        for side in tmp_path.glob("journal.db*"):
            side.unlink()
        code = daemon.wait(timeout=30)  # the groups step runs every second: the next one notices
        err = daemon.stderr.read() if daemon.stderr else ""
        assert code == 2, err
        assert f"the journal {journal} was removed" in err and "Traceback" not in err
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait(timeout=10)


def test_a_full_disk_says_so_with_the_path_exits_1_and_prints_the_summary_so_far(
        sims: Sims, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLITE_FULL without a mount: the journal may not grow past its size once the products step starts."""
    from click.testing import CliRunner

    from syncagent.cli import main
    from syncagent.engine import Engine

    config = write_config(tmp_path, sims, flows=["groups", "products"])
    original = Engine.run_step

    def disk_fills_up(self: Engine, channel: str, flow: str, **kw: Any) -> Any:
        if flow == "products":
            pages = self.journal.conn.execute("PRAGMA page_count").fetchone()[0]
            self.journal.conn.execute(f"PRAGMA max_page_count = {pages}")
        return original(self, channel, flow, **kw)

    monkeypatch.setattr(Engine, "run_step", disk_fills_up)
    result = CliRunner().invoke(main, ["-c", str(config), "run", "--once"])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert f"disk full: the journal {tmp_path / 'journal.db'} cannot grow" in result.output
    assert "Traceback" not in result.output and "OperationalError" not in result.output.split("(")[0]
    assert "loja-centro" in result.output and "groups" in result.output and "2 steps:" in result.output
    status = cli(config, "status", "--json")  # what was recorded before is kept
    assert status.returncode in (0, 1), status.stderr
    runs = {s["flow"]: s for c in json.loads(status.stdout)["channels"] for s in c["flows"]}
    assert runs["groups"]["last_run"]["result"] == "ok", runs


def _as_a_plain_user() -> None:
    """In the child, before exec: root loses the power to ignore permission bits (CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH leave its bounding set), so a read-only folder is read-only to it, as to anyone."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_a_journal_in_a_read_only_folder_is_named_with_the_permission_never_called_corrupt(
        sims: Sims, tmp_path: Path) -> None:
    state = tmp_path / "state"
    config = write_config(tmp_path, sims, flows=["groups"])
    config.write_text(config.read_text().replace(f"journal: {tmp_path / 'journal.db'}",
                                                 f"journal: {state / 'journal.db'}"))
    assert cli(config, "run", "--once").returncode == 0
    before = (state / "journal.db").read_bytes()
    state.chmod(0o555)  # the operator ran the first sync as another user, or a read-only mount
    try:
        outputs = {}
        for args in (("run", "--once"), ("status", "--json"), ("doctor", "--json", "--offline")):
            proc = subprocess.run(  # noqa: S603
                [sys.executable, "-m", "syncagent", "-c", str(config), *args], cwd=ROOT, capture_output=True,
                text=True, timeout=60, preexec_fn=_as_a_plain_user if os.geteuid() == 0 else None,  # noqa: PLW1509
            )
            outputs[args[0]] = proc
    finally:
        state.chmod(0o755)
    for name in ("run", "status"):
        proc = outputs[name]
        assert proc.returncode == 2, (name, proc.stdout, proc.stderr)
        assert f"no write permission on the journal folder {state}" in proc.stderr, proc.stderr
        assert "dr-xr-xr-x" in proc.stderr and "not damaged" in proc.stderr
    doctor = json.loads(outputs["doctor"].stdout)
    (access,) = [f for f in doctor["findings"] if f["check"] == "journal:access"]
    assert access["status"] == "fail" and f"journal folder {state}" in access["message"], access
    for proc in outputs.values():
        text = proc.stdout + proc.stderr
        assert "Traceback" not in text and "move it aside" not in text and "not a usable" not in text, text
        assert "restore it from a backup" not in text
    assert (state / "journal.db").read_bytes() == before  # the healthy journal is untouched
