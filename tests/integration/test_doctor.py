"""`syncagent doctor` over real HTTP against the simulators, run as the real command line."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from syncagent.config import load_config
from syncagent.doctor import check_endpoints
from syncagent.model import utcnow
from tests.integration.harness import ROOT, Sims, cli, write_config


def doctor(config: Path, *args: str) -> tuple[int, dict[str, Any]]:
    proc = cli(config, "doctor", "--json", *args, timeout=60)
    return proc.returncode, json.loads(proc.stdout)


def by_check(data: dict[str, Any]) -> dict[str, list[dict[str, str]]]:
    found: dict[str, list[dict[str, str]]] = {}
    for f in data["findings"]:
        found.setdefault(f["check"], []).append(f)
    return found


def test_doctor_all_ok_on_a_healthy_setup(sims: Sims, tmp_path: Path) -> None:
    config = write_config(tmp_path, sims)
    assert cli(config, "run", "--once").returncode == 0
    code, data = doctor(config)
    assert code == 0, data
    assert data["schema"] == 1 and data["exit_code"] == 0
    assert {f["status"] for f in data["findings"]} == {"ok"}, data
    checks = by_check(data)
    for check in ("config", "endpoint:backoffice", "endpoint:loja-centro", "clock:backoffice", "clock:loja-centro",
                  "journal:lock", "journal:integrity", "journal:schema", "references", "quarantine"):
        assert check in checks, f"{check} missing from {sorted(checks)}"
    assert "reachable, credentials accepted" in checks["endpoint:loja-centro"][0]["message"]
    text = cli(config, "doctor")
    assert text.returncode == 0 and "[ok  ] journal:integrity" in text.stdout and "FAIL" not in text.stdout


def test_doctor_fails_on_a_revoked_key_and_says_how_to_fix_it(sims: Sims, tmp_path: Path) -> None:
    config = write_config(tmp_path, sims)
    sims.su.admin("POST", "/_admin/keys/revoke")
    code, data = doctor(config)
    assert code == 1
    (finding,) = by_check(data)["endpoint:loja-centro"]
    assert finding["status"] == "fail" and "credentials rejected" in finding["message"]
    assert "key_revoked" in finding["message"]
    assert "issue a new one" in finding["fix"] and "environment file" in finding["fix"]
    assert by_check(data)["endpoint:backoffice"][0]["status"] == "ok"
    text = cli(config, "doctor")
    assert "[FAIL] endpoint:loja-centro" in text.stdout and "fix: " in text.stdout


def test_doctor_fails_when_the_back_office_is_down(sims: Sims, tmp_path: Path) -> None:
    config = write_config(tmp_path, sims)
    sims.bo.server.stop()
    code, data = doctor(config)
    assert code == 1
    (finding,) = by_check(data)["endpoint:backoffice"]
    assert finding["status"] == "fail" and finding["message"].startswith("unreachable")
    assert sims.bo.url in finding["fix"]
    assert by_check(data)["endpoint:loja-centro"][0]["status"] == "ok"
    assert "clock:backoffice" not in by_check(data)


def test_doctor_groups_orders_waiting_for_an_unknown_payment_method(sims: Sims, tmp_path: Path) -> None:
    config = write_config(tmp_path, sims, flows=["orders", "customers"])
    approved = [o["id"] for o in sims.su.admin("GET", "/_admin/orders")["items"] if o["status"] == "approved"]
    for order_id in approved[:2]:
        payments = sims.su.admin("GET", f"/_admin/orders/{order_id}")["payments"]
        for payment in payments:
            payment["method"] = "CRIPTO"
        sims.su.admin("PATCH", f"/_admin/orders/{order_id}", json={"payments": payments})
    items = sims.su.admin("GET", f"/_admin/orders/{approved[2]}")["items"]
    items[0]["key"] = "NOVO-9"
    sims.su.admin("PATCH", f"/_admin/orders/{approved[2]}", json={"items": items})
    assert cli(config, "run", "--once").returncode == 1

    code, data = doctor(config)
    assert code == 0, "waiting records are warnings, not failures"
    refs = by_check(data)["references"]
    payment = next(f for f in refs if "CRIPTO" in f["message"])
    assert payment["status"] == "warn"
    assert payment["message"].startswith("2 orders wait for payment method 'CRIPTO' (loja-centro: ")
    assert all(order_id in payment["message"] for order_id in approved[:2])
    assert "create payment method 'CRIPTO' in the back office" in payment["fix"]
    assert "quarantine retry --all --channel loja-centro" in payment["fix"]
    product = next(f for f in refs if "NOVO-9" in f["message"])
    assert product["message"].startswith("1 order waits for product 'NOVO-9'")
    (backlog,) = by_check(data)["quarantine"]
    assert backlog["status"] == "warn" and backlog["message"].startswith("loja-centro/orders: 3 open, oldest ")


def test_doctor_names_the_process_that_holds_the_journal_lock(sims: Sims, tmp_path: Path) -> None:
    config = write_config(tmp_path, sims, flows=["groups"])
    assert cli(config, "run", "--once").returncode == 0
    holder = subprocess.Popen(  # noqa: S603 - another agent holding the journal, as a running daemon would
        [sys.executable, "-c", "import sys, time\nfrom syncagent.journal import Journal\n"
         "j = Journal(sys.argv[1]); print('locked', flush=True); time.sleep(60)", str(tmp_path / "journal.db")],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        code, data = doctor(config)
        (lock,) = by_check(data)["journal:lock"]
        assert lock["status"] == "warn" and f"locked by pid {holder.pid}" in lock["message"]
        assert f"kill -TERM {holder.pid}" in lock["fix"]
        assert code == 0
        assert cli(config, "run", "--once").returncode == 3  # what the warning is about
    finally:
        holder.kill()
        holder.wait(timeout=10)
    _, data = doctor(config)
    assert by_check(data)["journal:lock"][0]["status"] == "ok"


def test_doctor_warns_about_a_skewed_clock(sims: Sims, tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, sims))
    findings = check_endpoints(config, now=lambda: utcnow() + timedelta(minutes=5))
    clocks = {f.check: f for f in findings if f.check.startswith("clock:")}
    assert set(clocks) == {"clock:backoffice", "clock:loja-centro"}
    for finding in clocks.values():
        assert finding.status == "warn" and "ahead of" in finding.message and "timedatectl" in finding.fix
        assert 295 <= int(finding.message.split()[3]) <= 305, finding.message
    honest = check_endpoints(config)
    assert {f.status for f in honest} == {"ok"}


def test_doctor_on_a_broken_config_and_a_corrupt_journal(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("backoffice:\n  type: gestao-lojas\n  base_url: ftp://nowhere\n")
    code, data = doctor(bad)
    assert code == 2 and data["exit_code"] == 2
    assert any(f["check"] == "config" and f["status"] == "fail" and f"{bad}:3:" in f["message"]
               for f in data["findings"])

    good = tmp_path / "good.yaml"
    good.write_text(f"journal: {tmp_path / 'journal.db'}\nbackoffice:\n  type: gestao-lojas\n"
                    "  base_url: http://127.0.0.1:9\n  client_id: x\n  client_secret: ${DOCTOR_SECRET:-not-a-real-one}\n"
                    "channels: []\n")
    (tmp_path / "journal.db").write_bytes(b"this is not a database" * 100)
    code, data = doctor(good, "--offline")
    assert code == 1
    (integrity,) = by_check(data)["journal:integrity"]
    assert integrity["status"] == "fail" and "backup" in integrity["fix"]


def test_doctor_groups_every_kind_of_missing_reference(tmp_path: Path) -> None:
    from syncagent.doctor import check_backlog, check_references
    from syncagent.journal import Journal

    with Journal(tmp_path / "journal.db") as journal, journal.transaction():
        for key in ("o1", "o2", "o3"):
            journal.quarantine("loja-centro", "orders", key, "missing_reference",
                               "customer 4711 is not known in the back office", {})
        journal.quarantine("vtex-sp", "orders", "v1", "unmapped_payment",
                           "payment 'Bitcoin' (system 99) has no back office method: add it to payment_map", {})
        journal.quarantine("vtex-sp", "products", "P1", "unmapped_brand", "brand 'Acme' has no VTEX brand id", {})
        journal.quarantine("loja-centro", "products", "P2", "rejected", "name too long", {})
    conn = sqlite3.connect(tmp_path / "journal.db")
    refs = {f.message.split(" (")[0]: f for f in check_references(conn)}
    assert set(refs) == {"3 orders wait for customer '4711'", "1 order waits for payment 'Bitcoin'",
                         "1 product waits for brand 'Acme'"}
    assert "pull --entity customers --channel loja-centro" in refs["3 orders wait for customer '4711'"].fix
    backlog = {f.message.split(":")[0]: f.message for f in check_backlog(conn)}
    assert backlog["loja-centro/orders"].startswith("loja-centro/orders: 3 open, oldest 0 min")
    assert set(backlog) == {"loja-centro/orders", "loja-centro/products", "vtex-sp/orders", "vtex-sp/products"}
    conn.close()


def test_doctor_warns_when_tls_is_not_verified_and_not_when_a_ca_bundle_is(tmp_path: Path) -> None:
    base = (f"journal: {tmp_path / 'journal.db'}\nbackoffice:\n  type: gestao-lojas\n"
            "  base_url: https://retaguarda.example.com\n  client_id: x\n"
            "  client_secret: ${DOCTOR_SECRET:-not-a-real-one}\n  http: {HTTP}\nchannels: []\n")
    config = tmp_path / "syncagent.yaml"
    config.write_text(base.replace("{HTTP}", "{verify_tls: false}"))
    code, data = doctor(config, "--offline")
    (tls,) = by_check(data)["tls:backoffice"]
    assert tls["status"] == "warn" and "NOT verified" in tls["message"] and "ca_bundle" in tls["fix"]
    assert code == 0  # a warning, as the other ones: the agent runs
    config.write_text(base.replace("{HTTP}", "{verify_tls: false, ca_bundle: ./ca.pem}"))
    _, data = doctor(config, "--offline")
    assert "tls:backoffice" not in by_check(data) and by_check(data)["tls"][0]["status"] == "ok"
