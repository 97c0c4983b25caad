"""E-mail alerts received by a real SMTP server on 127.0.0.1: one per new problem, one on recovery."""

from __future__ import annotations

import email
import socket
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from syncagent.agent import Agent
from syncagent.config import load_config
from tests.integration.harness import Sims, write_config


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"

    def subjects(self) -> list[str]:
        return [str(m["Subject"]) for m in self.messages]


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    handler = Inbox()
    with socket.socket() as probe:  # a free port: the controller checks its server by connecting to it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    controller.stop()


def with_alerts(config: Path, port: int) -> None:
    text = config.read_text().replace("log: {level: warning, format: text}\n", (
        "log: {level: warning, format: text}\n"
        "alerts:\n  email:\n"
        f"    smtp_host: 127.0.0.1\n    smtp_port: {port}\n    starttls: false\n"
        "    from: syncagent@loja.example\n    to: [ti@loja.example]\n    failing_cycles: 2\n"))
    config.write_text(text)


def test_one_mail_per_new_problem_and_one_on_recovery(sims: Sims, tmp_path: Path,
                                                      inbox: tuple[Inbox, int]) -> None:
    box, port = inbox
    config = write_config(tmp_path, sims, flows=["products"])
    with_alerts(config, port)
    sims.su.admin("POST", "/_admin/keys/revoke")
    with Agent(load_config(config), sleep=lambda s: None) as agent:
        agent.run_once()
        agent.run_once()
        agent.run_once()  # still revoked: no second e-mail
        assert box.subjects() == ["[syncagent] loja-centro: credentials rejected"]
        body = box.messages[0].get_payload()
        assert "key_revoked" in body and "How to fix" in body and "environment" in body
        sims.su.admin("POST", "/_admin/keys/restore")
        agent.run_once()
        assert box.subjects()[1:] == ["[syncagent] recovered: loja-centro: credentials rejected"]
        sims.bo.admin("PATCH", "/_admin/products/P000003", json={"description": ""})
        agent.run_once()
        agent.run_once()
    assert len(box.messages) == 3
    quarantine = box.messages[2]
    assert "quarantined" in str(quarantine["Subject"]) and "P000003" in quarantine.get_payload()
    assert "syncagent quarantine" in quarantine.get_payload()
    assert all(m["To"] == "ti@loja.example" for m in box.messages)


def test_mail_goes_over_starttls_with_login(sims: Sims, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real path of a store's mail relay: STARTTLS required, then AUTH, then the message."""
    import ssl

    import trustme
    from aiosmtpd.smtp import AuthResult, LoginPassword

    ca = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_tls)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))  # the relay's CA, as an operator would install it
    logins: list[tuple[str, bool]] = []

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"alertas", b"senha-smtp-123")
        logins.append((mechanism, ok))
        return AuthResult(success=ok)

    box = Inbox()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(box, hostname="127.0.0.1", port=port, tls_context=server_tls, require_starttls=True,
                            auth_require_tls=True, authenticator=authenticator)
    controller.start()
    try:
        monkeypatch.setenv("SMTP_PASSWORD", "senha-smtp-123")
        config = write_config(tmp_path, sims, flows=["products"])
        config.write_text(config.read_text().replace("log: {level: warning, format: text}\n", (
            "log: {level: warning, format: text}\n"
            "alerts:\n  email:\n"
            f"    smtp_host: 127.0.0.1\n    smtp_port: {port}\n    starttls: true\n"
            "    username: alertas\n    password: ${SMTP_PASSWORD}\n"
            "    from: syncagent@loja.example\n    to: [ti@loja.example]\n")))
        sims.su.admin("POST", "/_admin/keys/revoke")
        with Agent(load_config(config), sleep=lambda s: None) as agent:
            agent.run_once()
    finally:
        controller.stop()
    assert logins and all(ok for _, ok in logins)
    assert box.subjects() == ["[syncagent] loja-centro: credentials rejected"]
    assert "senha-smtp-123" not in (tmp_path / "journal.db").read_bytes().decode("latin-1")


def test_an_alert_raised_while_the_relay_is_down_goes_once_it_answers(tmp_path: Path,
                                                                      inbox: tuple[Inbox, int]) -> None:
    """A real smtplib against a closed port, then against a real server: the alert is not lost."""
    from dataclasses import replace
    from datetime import UTC, datetime, timedelta

    from syncagent.alerts import Alerter
    from syncagent.config import EmailAlerts
    from syncagent.engine import StepResult
    from syncagent.journal import Journal

    box, port = inbox
    with socket.socket() as probe:  # a port nothing listens on: the relay is down
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    cfg = EmailAlerts(smtp_host="127.0.0.1", smtp_port=closed, starttls=False, from_addr="a@loja.example",
                      to=("ti@loja.example",))
    down = [StepResult("loja", "orders", status="auth_failed", error="loja: credentials rejected: key_revoked")]
    now = {"t": datetime(2026, 11, 23, 8, 0, tzinfo=UTC)}
    with Journal(tmp_path / "j.db") as journal:
        alerter = Alerter(cfg, journal, clock=lambda: now["t"])
        assert alerter.evaluate(down) == []
        alerter.cfg = replace(cfg, smtp_port=port)  # the relay is back
        now["t"] += timedelta(minutes=2)  # past the wait after a relay that did not answer
        assert len(alerter.evaluate(down)) == 1
        assert alerter.evaluate(down) == []
    assert box.subjects() == ["[syncagent] loja: credentials rejected"]


def test_the_smtp_password_is_never_sent_without_tls(tmp_path: Path) -> None:
    """A relay that offers AUTH in clear: syncagent does not log in (the loader refuses the config too)."""
    from datetime import UTC, datetime

    from aiosmtpd.smtp import AuthResult

    from syncagent.alerts import Alerter
    from syncagent.config import EmailAlerts
    from syncagent.engine import StepResult
    from syncagent.journal import Journal

    logins: list[Any] = []

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        logins.append(data)
        return AuthResult(success=True)

    box = Inbox()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(box, hostname="127.0.0.1", port=port, auth_require_tls=False, authenticator=authenticator)
    controller.start()
    try:
        cfg = EmailAlerts(smtp_host="127.0.0.1", smtp_port=port, starttls=False, username="alertas",
                          password="senha-smtp-123", from_addr="a@loja.example", to=("ti@loja.example",))
        down = [StepResult("loja", "orders", status="auth_failed", error="loja: credentials rejected")]
        with Journal(tmp_path / "j.db") as journal:
            alerter = Alerter(cfg, journal, clock=lambda: datetime(2026, 11, 23, 8, 0, tzinfo=UTC))
            assert alerter.evaluate(down) == []
    finally:
        controller.stop()
    assert logins == [] and box.messages == []
