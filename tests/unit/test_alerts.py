from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from types import SimpleNamespace

import pytest

from syncagent.agent import Agent
from syncagent.alerts import Alerter
from syncagent.config import EmailAlerts
from syncagent.engine import StepResult
from syncagent.journal import Journal


def test_no_flood_when_a_problem_flaps(tmp_path: Path) -> None:
    now = {"t": datetime(2026, 11, 23, 8, 0, tzinfo=UTC)}
    sent: list[EmailMessage] = []
    cfg = EmailAlerts(smtp_host="127.0.0.1", from_addr="a@b.c", to=("ti@b.c",))
    with Journal(tmp_path / "j.db") as journal:
        alerter = Alerter(cfg, journal, clock=lambda: now["t"], send=sent.append)
        down = [StepResult("loja", "orders", status="auth_failed", error="loja: credentials rejected: key_revoked")]
        up = [StepResult("loja", "orders")]

        def cycle(results: list[StepResult], minutes: int = 2) -> list[str]:
            now["t"] += timedelta(minutes=minutes)
            return [str(m["Subject"]) for m in alerter.evaluate(results)]

        assert cycle(down) == ["[syncagent] loja: credentials rejected"]
        assert cycle(down) == []
        assert cycle(up) == ["[syncagent] recovered: loja: credentials rejected"]
        for _ in range(5):  # flapping: back and gone again, minutes apart
            assert cycle(down) == []
            assert cycle(up) == []
        assert cycle(up, minutes=61) == ["[syncagent] recovered: loja: credentials rejected"]
        assert "came and went 5 more times" in sent[-1].get_payload()
        assert cycle(down, minutes=120) == ["[syncagent] loja: credentials rejected"]  # a new problem, later


def test_a_channel_failing_n_cycles_in_a_row_and_a_late_order(tmp_path: Path) -> None:
    now = {"t": datetime.now(UTC)}
    sent: list[EmailMessage] = []
    cfg = EmailAlerts(smtp_host="127.0.0.1", from_addr="a@b.c", to=("ti@b.c",), failing_cycles=3,
                      order_late_minutes=15)
    with Journal(tmp_path / "j.db") as journal:
        alerter = Alerter(cfg, journal, clock=lambda: now["t"], send=sent.append)
        down = [StepResult("loja", "stock", status="failed", error="loja: PUT /v1/stock answered 503")]

        def cycle(results: list[StepResult], minutes: int = 5) -> list[str]:
            now["t"] += timedelta(minutes=minutes)
            return [str(m["Subject"]) for m in alerter.evaluate(results)]

        assert cycle(down) == [] and cycle(down) == []  # two failing cycles: not yet
        assert cycle([StepResult("loja", "stock")]) == []  # one good cycle resets the count
        assert cycle(down) == [] and cycle(down) == []
        assert cycle(down) == ["[syncagent] loja: failing for 3 cycles"]
        assert "answered 503" in sent[-1].get_payload() and "How to fix" in sent[-1].get_payload()
        assert cycle([StepResult("loja", "stock")]) == ["[syncagent] recovered: loja: failing for 3 cycles"]

        with journal.transaction():  # parked: the back office did not answer; it stays past 15 minutes
            journal.set_order("loja", "o-77", "parked", reason="backoffice: POST /orders answered 503")
            journal.set_order("loja", "o-78", "seen")  # not importable (not approved): no alert
        now["t"] = datetime.now(UTC)  # the journal stamps rows with the wall clock
        assert cycle([StepResult("loja", "orders")], minutes=10) == []
        assert cycle([StepResult("loja", "orders")], minutes=10) == ["[syncagent] loja: order o-77 not in the back office"]
        assert "answered 503" in sent[-1].get_payload()
        with journal.transaction():
            journal.set_order("loja", "o-77", "acknowledged", bo_number="100123")
        assert cycle([StepResult("loja", "orders")]) == ["[syncagent] recovered: loja: order o-77 not in the back office"]


def _late_order(journal: Journal, order_id: str) -> None:
    with journal.transaction():
        journal.set_order("loja", order_id, "parked", reason="backoffice: POST /orders answered 503")


def test_a_cr_lf_in_an_order_id_makes_one_safe_subject_line(tmp_path: Path) -> None:
    cfg = EmailAlerts(smtp_host="127.0.0.1", from_addr="a@b.c", to=("ti@b.c",), order_late_minutes=15)
    sent: list[EmailMessage] = []
    with Journal(tmp_path / "j.db") as journal:
        _late_order(journal, "o-9\r\nBcc: all@evil.example\r\n")
        later = datetime.now(UTC) + timedelta(minutes=20)
        alerter = Alerter(cfg, journal, clock=lambda: later, send=sent.append)
        assert len(alerter.evaluate([StepResult("loja", "orders")])) == 1
    subject = str(sent[0]["Subject"])
    assert subject == "[syncagent] loja: order o-9 Bcc: all@evil.example not in the back office"
    headers = sent[0].as_bytes().split(b"\n\n", 1)[0]
    assert sent[0]["Bcc"] is None and b"\nBcc:" not in headers


def test_a_failing_alert_never_stops_the_agent(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def evaluate(self, results: object) -> None:
            raise ValueError("Header values may not contain linefeed or carriage return characters")

    Agent.alert(SimpleNamespace(alerter=Broken()), [])  # type: ignore[arg-type]
    assert "alerts could not be evaluated: ValueError" in caplog.text


def test_an_alert_raised_while_smtp_is_down_is_sent_once_it_is_back(tmp_path: Path) -> None:
    now = {"t": datetime(2026, 11, 23, 8, 0, tzinfo=UTC)}
    inbox: list[EmailMessage] = []
    smtp_up = {"up": False}

    def send(message: EmailMessage) -> None:
        if not smtp_up["up"]:
            raise ConnectionRefusedError(111, "Connection refused")
        inbox.append(message)

    cfg = EmailAlerts(smtp_host="127.0.0.1", from_addr="a@b.c", to=("ti@b.c",))
    down = [StepResult("loja", "orders", status="auth_failed", error="loja: credentials rejected: key_revoked")]
    tries: list[datetime] = []

    def cycle(results: list[StepResult], minutes: float = 2) -> list[str]:
        now["t"] += timedelta(minutes=minutes)
        return [str(m["Subject"]) for m in alerter.evaluate(results)]

    with Journal(tmp_path / "j.db") as journal:
        alerter = Alerter(cfg, journal, clock=lambda: now["t"], send=lambda m: (tries.append(now["t"]), send(m)))
        assert cycle(down) == []  # the server is down: nothing went
        assert cycle(down, minutes=0.5) == [] and len(tries) == 1  # not tried again at once: a step costs no timeout
        assert cycle(down) == [] and len(tries) == 2  # tried again a minute on, still down: waits 2 minutes now
        smtp_up["up"] = True
        assert cycle(down, minutes=1) == [] and len(tries) == 2
        assert cycle(down, minutes=1.5) == ["[syncagent] loja: credentials rejected"]
        assert cycle(down) == []  # sent once, not again
        smtp_up["up"] = False
        assert cycle([StepResult("loja", "orders")]) == []  # the recovery waits too
        smtp_up["up"] = True
        assert cycle([StepResult("loja", "orders")]) == ["[syncagent] recovered: loja: credentials rejected"]
    assert [str(m["Subject"]) for m in inbox] == ["[syncagent] loja: credentials rejected",
                                                 "[syncagent] recovered: loja: credentials rejected"]
