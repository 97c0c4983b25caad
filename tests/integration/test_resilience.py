"""Credentials lifecycle, a long outage, and one channel down while the others go on."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

from syncagent.agent import Agent
from syncagent.config import load_config
from syncagent.journal import Journal
from syncagent.logs import RateLimitFilter
from syncagent.simulators import build
from syncagent.simulators.common import serve_in_thread
from tests.integration.harness import Sims, cli, start, write_config


def no_wait(seconds: float) -> None:
    return None


def two_channels(sims: Sims, tmp_path: Path) -> Path:
    sims.su2 = start("sellerup", tmp_path / "su2.db")
    return write_config(tmp_path, sims)


def test_revoked_key_stops_that_channel_only_with_a_clear_status(sims: Sims, tmp_path: Path) -> None:
    config = two_channels(sims, tmp_path)
    sims.su.admin("POST", "/_admin/keys/revoke")
    mark = sims.su.last_request_id()
    try:
        run = cli(config, "run", "--once", "--json")
        assert run.returncode == 1
        steps = json.loads(run.stdout)
        centro = [s for s in steps if s["channel"] == "loja-centro"]
        norte = [s for s in steps if s["channel"] == "loja-norte"]
        assert centro[0]["status"] == "auth_failed" and "key_revoked" in centro[0]["error"]
        assert {s["status"] for s in centro[1:]} == {"skipped"}
        assert {s["status"] for s in norte} == {"ok"} and sum(s["sent"] for s in norte) > 0
        # no loop: one refused request, then the channel is left alone for this cycle
        assert len([r for r in sims.su.requests_log(mark) if not r["path"].startswith("/_admin")]) == 1
        status = json.loads(cli(config, "status", "--json").stdout)
        by_name = {c["name"]: c for c in status["channels"]}
        assert by_name["loja-centro"]["auth_state"] == "auth_failed"
        assert "key_revoked" in by_name["loja-centro"]["auth_message"]
        assert by_name["loja-norte"]["auth_state"] == "ok"
        assert cli(config, "status").returncode == 1
    finally:
        assert sims.su2 is not None
        sims.su2.server.stop()
    sims.su.admin("POST", "/_admin/keys/restore")


def test_back_office_rejecting_credentials_fails_the_step_without_a_loop(sims: Sims, tmp_path: Path) -> None:
    config = write_config(tmp_path, sims, flows=["products"])
    sims.bo.admin("POST", "/_admin/config", json={"client_secret": "rotated-elsewhere"})
    mark = sims.bo.last_request_id()
    with Agent(load_config(config), sleep=no_wait) as agent:
        (result,) = agent.run_once()
        states = agent.journal.channel_states()
    # the back office's failure, not the channel's: the channel is not marked auth_failed for it
    assert result.status == "failed" and "back office credentials rejected" in (result.error or "")
    assert states.get("loja-centro", ("unknown",))[0] != "auth_failed"
    assert [r["path"] for r in sims.bo.requests_log(mark)] == ["/oauth/token"]


def test_token_refused_once_then_accepted_needs_one_refresh(sims: Sims, tmp_path: Path) -> None:
    config = write_config(tmp_path, sims, flows=["products", "prices"])
    with Agent(load_config(config), sleep=no_wait) as agent:
        agent.run_once()
        sims.bo.admin("POST", "/_admin/tokens/expire")
        mark = sims.bo.last_request_id()
        results = agent.run_once()
    assert {r.status for r in results} == {"ok"}
    log = sims.bo.requests_log(mark)
    assert [r["status"] for r in log][:3] == [401, 200, 200]  # refused, new token, the same call again
    assert len([r for r in log if r["path"] == "/oauth/token"]) == 1


def test_long_outage_no_crash_quiet_logs_and_backlog_drained(sims: Sims, tmp_path: Path) -> None:
    """The back office refuses connections for 30 simulated minutes (a cycle a minute), then returns."""
    config = write_config(tmp_path, sims, flows=["orders", "customers", "products", "stock"])
    approved = [o["id"] for o in sims.su.admin("GET", "/_admin/orders")["items"] if o["status"] == "approved"]
    port = sims.bo.server.port
    sims.bo.server.stop()  # connections are refused from now on
    clock = {"now": 0.0}
    limiter = RateLimitFilter(clock=lambda: clock["now"])
    lines: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record)

    raw: list[logging.LogRecord] = []

    class KeepAll(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            raw.append(record)

    handler = Keep(level=logging.WARNING)
    handler.addFilter(limiter)
    unfiltered = KeepAll(level=logging.WARNING)
    logger = logging.getLogger("syncagent")
    logger.addHandler(handler)
    logger.addHandler(unfiltered)
    started = datetime.now(UTC)
    try:
        with Agent(load_config(config), sleep=no_wait,
                   clock=lambda: started + timedelta(seconds=clock["now"])) as agent:
            for minute in range(30):
                clock["now"] = minute * 60.0
                results = agent.run_once()
                assert {r.status for r in results} <= {"failed", "skipped", "ok"}
            assert any(r.status == "failed" for r in results)
            targets: dict[str, int] = {}
            for record in lines:
                target = getattr(record, "target", None)
                if target is not None:
                    targets[target] = targets.get(target, 0) + 1
            assert targets.get("backoffice", 0) <= 30, targets  # at most one line a simulated minute
            assert len([r for r in raw if getattr(r, "target", None) == "backoffice"]) > 100  # what it held back
            assert all(count <= 30 for count in targets.values()), targets

            # the back office returns on the same address with the same data
            back = serve_in_thread(build("gestao-lojas", str(tmp_path / "bo.db"), products=60, seed=7,
                                         client_secret=_secret()), port=port)
            sims.bo.server = back
            cycles = 0
            while cycles < 2:
                cycles += 1
                clock["now"] += 60.0
                results = agent.run_once()
                if all(r.status == "ok" for r in results):
                    break
        assert all(r.status == "ok" for r in results), [(r.flow, r.error) for r in results]
        assert cycles <= 2
        created = {o["external_id"] for o in sims.bo.admin("GET", "/_admin/orders")["items"]}
        assert created == set(approved)
        journal = Journal(tmp_path / "journal.db", lock=False)
        assert journal.integrity() == ["ok"]
        journal.close()
    finally:
        logger.removeHandler(handler)
        logger.removeHandler(unfiltered)


def _secret() -> str:
    from tests.integration.harness import CANARY_SECRET

    return CANARY_SECRET
