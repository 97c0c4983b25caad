from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

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
