"""What the operator reads: whole causes, 80 columns, times with their zone, progress totals; and the
cursor kept before a page that could not be recorded, whatever stopped it."""

from __future__ import annotations

import io
import logging
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from syncagent.engine import ChannelSetup, Engine, StepResult
from syncagent.errors import TransientError
from syncagent.http import HttpClient, HttpSettings
from syncagent.journal import Journal
from syncagent.report import PushProgress, print_status, print_summary, when
from tests.unit.test_engine import NOW, FakeBackoffice, FakeChannel, products

CAUSE = ("backoffice: GET /products failed after 5 attempts: connection failed (Connection refused at "
         "retaguarda.example.com:443); the next cycle tries again")


def render(fn: Any, *args: Any, width: int = 80) -> list[str]:
    out = io.StringIO()
    fn(*args, console=Console(file=out, width=width, force_terminal=False))
    return out.getvalue().splitlines()


def test_the_summary_gives_each_cause_whole_under_the_table() -> None:
    results = [StepResult("loja-centro", "payment-methods", read=6, sent=6),
               StepResult("loja-centro", "products", read=7000, sent=7000, status="failed", error=CAUSE),
               StepResult("loja-centro", "prices", status="skipped", error="the back office's credentials were "
                          "rejected earlier in this cycle"),
               StepResult("loja-centro", "stock", status="skipped", error="the back office's credentials were "
                          "rejected earlier in this cycle")]
    lines = render(print_summary, results)
    assert max(len(line) for line in lines) <= 80
    text = " ".join(line.strip() for line in lines)
    assert f"loja-centro/products failed: {CAUSE}" in text  # whole, not cut at a column's edge
    assert text.count("rejected earlier in this cycle") == 1  # steps skipped for one reason share a line
    assert "loja-centro/prices, stock skipped" in text
    assert "payment-methods" in text  # every name whole at 80 columns


def status(**run: Any) -> dict[str, Any]:
    flows = []
    for name in ("orders", "order-events", "payment-methods", "products", "stock"):
        last = {"started_at": "2026-12-04T16:58:10.000Z", "finished_at": "2026-12-04T16:58:16.981Z",
                "result": "ok", "read": 1_000_000, "sent": 1_000_000, "unchanged": 0, "quarantined": 0,
                "error": None} | (run if name == "products" else {})
        flows.append({"flow": name, "enabled": True, "every_seconds": 60, "direction": "push", "last_run": last,
                      "cursor_age_seconds": 86_000.0, "backlog": 12_345, "behind": name == "products",
                      "quarantined": 3})
    return {"schema": 1, "generated_at": "2026-12-04T17:00:00Z", "journal": "/var/lib/syncagent/syncagent.db",
            "backoffice": {"type": "gestao-lojas", "auth_state": "ok", "auth_message": None},
            "quarantined_total": 15,
            "channels": [{"name": "loja-centro-shopping", "type": "sellerup", "enabled": True,
                          "auth_state": "ok", "auth_message": None, "flows": flows}]}


def test_status_fits_80_columns_and_times_carry_their_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/Sao_Paulo")
    time.tzset()
    try:
        lines = render(print_status, status(result="failed", error=CAUSE))
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert max(len(line.rstrip()) for line in lines) <= 80
    body = "\n".join(lines)
    for word in ("payment-methods", "order-events", "1000000", "12345 behind", "failed"):
        assert word in body  # whole words and numbers, not folded into a narrow column
    text = " ".join(line.strip() for line in lines)
    assert f"loja-centro-shopping/products failed at 2026-12-04 13:58:16 -03: {CAUSE}" in text
    assert "status at 2026-12-04 14:00:00 -03" in text


def test_when_writes_the_zone_and_reads_both_z_and_offsets() -> None:
    assert when(None) == "never"
    assert when("2026-12-04T16:58:16.981Z").endswith(time.strftime("%Z", time.localtime(1796403496)))
    assert when("not a time") == "not a time"


def test_the_bar_shows_a_total_and_the_time_left_where_the_total_is_known() -> None:
    out = io.StringIO()
    now = [100.0]
    expected = {("loja", "products"): 1000}
    progress = PushProgress(Console(file=out, force_terminal=False, width=120), every=0.0, clock=lambda: now[0],
                            expected=lambda channel, flow: expected.get((channel, flow)))
    with progress:
        now[0] = 110.0
        progress.update(StepResult("loja", "products", read=250, sent=250))  # its first page: the clock starts
        now[0] = 120.0
        progress.update(StepResult("loja", "products", read=500, sent=500))
        progress.update(StepResult("loja", "stock", read=500, sent=500))
    lines = out.getvalue().splitlines()
    assert lines[1] == "loja/products: read 500 of ~1000, sent 500, unchanged 0, about 10 s left"
    assert lines[2] == "loja/stock: read 500, sent 500, unchanged 0"  # a feed read from its cursor: no total

    live = io.StringIO()
    with PushProgress(Console(file=live, force_terminal=True, width=120),
                      expected=lambda channel, flow: 1000) as bar:
        bar.update(StepResult("loja", "products", read=500, sent=500))
        assert bar._bar is not None and bar._bar.tasks[0].total == 1000
    assert "read 500 of ~1000" in live.getvalue()


def test_a_refused_connection_is_said_in_its_own_words() -> None:
    client = HttpClient("http://127.0.0.1:9", HttpSettings(max_attempts=1, connect_timeout=2), name="backoffice",
                        sleep=lambda s: None)
    with pytest.raises(TransientError) as caught:
        client.get("/products")
    message = str(caught.value)
    assert message.endswith("connection failed (Connection refused at 127.0.0.1:9)"), message
    assert "HTTPConnectionPool" not in message


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[tuple[Engine, FakeBackoffice, FakeChannel, Journal]]:
    journal = Journal(tmp_path / "j.db")
    bo, ch = FakeBackoffice(), FakeChannel()
    setup = ChannelSetup("loja", ch)  # type: ignore[arg-type]
    yield Engine(journal, bo, {"loja": setup}, clock=lambda: NOW, wall=time.time), bo, ch, journal  # type: ignore[arg-type]
    journal.close()


def test_a_page_that_could_not_be_recorded_keeps_the_cursor_before_it(engine: Any, monkeypatch: Any) -> None:
    """Not only a send error: a disk full or any other failure while recording a page must not let the
    page in flight after it carry the cursor past it (its records would never be sent)."""
    eng, bo, ch, journal = engine
    bo.feeds["products"] = products(*"abcdefgh")  # pages of 2: while one is recorded, the next is in flight
    ch.slow_key = "P2"  # the second page is still being sent when the first is recorded
    record_sent = journal.record_sent

    def failing(channel: str, entity: str, rows: Any) -> None:
        rows = list(rows)
        if any(key == "P0" for key, _, _ in rows):
            raise sqlite3.OperationalError("database or disk is full")
        record_sent(channel, entity, rows)

    monkeypatch.setattr(journal, "record_sent", failing)
    with pytest.raises(sqlite3.OperationalError):
        eng.run_step("loja", "products")
    assert journal.cursor("loja", "products") is None
    monkeypatch.setattr(journal, "record_sent", record_sent)
    again = eng.run_step("loja", "products")
    assert again.status == "ok"
    assert set(journal.fingerprints("loja", "products", [f"P{i}" for i in range(8)])) == {f"P{i}" for i in range(8)}


QUARANTINE_CONFIG = """\
journal: {journal}
log: {{level: warning, format: text}}
backoffice: {{type: gestao-lojas, base_url: "http://127.0.0.1:9", client_id: "${{GL_ID:-x}}",
             client_secret: "${{GL_SECRET:-not-a-real-secret}}"}}
channels:
  - name: loja-centro
    type: sellerup
    base_url: http://127.0.0.1:9
    api_key: ${{SU_KEY:-not-a-real-key}}
    warehouses: [CD01]
    order_warehouse: CD01
    flows: {{products: {{every: 15m}}}}
"""


def test_quarantine_list_gives_the_reason_whole_and_the_time_with_its_zone(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from syncagent.cli import main

    config = tmp_path / "syncagent.yaml"
    config.write_text(QUARANTINE_CONFIG.format(journal=tmp_path / "journal.db"))
    reason = "the channel refused the record: " + "field description is longer than allowed, " * 6 + "TAILWORD"
    with Journal(tmp_path / "journal.db") as journal, journal.transaction():
        journal.quarantine("loja-centro", "products", "P000001", "invalid", reason, {"key": "P000001"})
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    root = logging.getLogger("syncagent")
    handlers, level, propagate = list(root.handlers), root.level, root.propagate
    try:
        result = CliRunner().invoke(main, ["-c", str(config), "quarantine", "list"], env={"COLUMNS": "160"})
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
        root.handlers[:] = handlers  # the command set up logging for this process: leave it as it was
        root.setLevel(level)
        root.propagate = propagate
    assert result.exit_code == 0, result.output
    assert "TAILWORD" in result.output  # not cut at 100 characters
    assert re.search(r"\d{2}:\d{2}:\d{2} UTC", result.output)


def test_a_run_that_never_finished_is_not_shown_as_never_run() -> None:
    """A step killed mid-run (or running now) has a start and no end: say so, with when it started."""
    lines = render(print_status, status(finished_at=None, result=None))
    text = " ".join(line.strip() for line in lines)
    products = next(line for line in lines if line.strip().startswith("products"))
    assert "running" in products and "never" not in products
    assert "loja-centro-shopping/products running: started at 2026-12-04" in text
