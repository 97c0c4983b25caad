"""E-mail alerts: one message per new problem, one when it recovers, no flood when it flaps.

A *problem* has a stable key (``auth:loja-centro``, ``failing:loja-centro``,
``quarantine:loja-centro``, ``late-order:loja-centro:<id>``). After each cycle the agent
evaluates which problems hold now; the alerter compares with what the journal remembers:

* a problem that starts → one e-mail saying what happened, the cause the server gave, how to fix;
* a problem that stops → one recovery e-mail;
* a problem that starts again within ``quiet_period`` of its recovery → no new e-mail (flapping),
  only its count grows; the recovery e-mail is then held until it has stayed quiet that long.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

from syncagent.config import EmailAlerts
from syncagent.engine import StepResult
from syncagent.journal import Journal

log = logging.getLogger("syncagent.alerts")


@dataclass(frozen=True, slots=True)
class Problem:
    key: str
    subject: str
    body: str


FIXES = {
    "auth": "Check the credentials in the environment file (the ${VAR} the config names); for Seller Up, a "
            "revoked key means the store issued a new one: put it in the environment and restart syncagent.",
    "failing": "Check that the server is reachable from this machine (`syncagent check-config --online`); "
               "syncagent retries by itself and sends everything that waited once it answers again.",
    "quarantine": "Run `syncagent quarantine list` and `syncagent quarantine show <id>`; fix the record at its "
                  "source (it is retried when it changes) or run `syncagent quarantine retry <id>`. An order "
                  "naming an unknown product or payment method, or a product with no mapped SKU, goes by itself "
                  "once the missing product, method or SKU exists (`syncagent mapping import` for SKUs).",
    "late-order": "The order is approved on the channel but not in the back office. See `syncagent status` and "
                  "`syncagent quarantine list`; once the cause is fixed, `syncagent quarantine retry <id>`.",
}


class Alerter:
    def __init__(self, cfg: EmailAlerts, journal: Journal, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 quiet_period: timedelta = timedelta(hours=1),
                 send: Callable[[EmailMessage], None] | None = None) -> None:
        self.cfg = cfg
        self.journal = journal
        self.clock = clock
        self.quiet_period = quiet_period
        self._send = send or self._smtp_send
        self.failing_cycles: dict[str, int] = {}

    # -- evaluating ------------------------------------------------------------------------------
    def problems(self, results: Iterable[StepResult]) -> list[Problem]:
        found: list[Problem] = []
        by_channel: dict[str, list[StepResult]] = {}
        for r in results:
            by_channel.setdefault(r.channel, []).append(r)
        for channel, steps in by_channel.items():
            auth = [s for s in steps if s.status == "auth_failed"]
            failed = [s for s in steps if s.status == "failed"]
            if auth:
                found.append(Problem(
                    f"auth:{channel}", f"[syncagent] {channel}: credentials rejected",
                    f"The channel {channel} rejected syncagent's credentials.\n\nServer said: {auth[0].error}\n\n"
                    f"How to fix: {FIXES['auth']}\n"))
            self.failing_cycles[channel] = self.failing_cycles.get(channel, 0) + 1 if failed else 0
            if self.failing_cycles[channel] >= self.cfg.failing_cycles:
                causes = "\n".join(f"- {s.flow}: {s.error}" for s in failed)
                found.append(Problem(
                    f"failing:{channel}", f"[syncagent] {channel}: failing for {self.failing_cycles[channel]} cycles",
                    f"Steps of {channel} have failed {self.failing_cycles[channel]} cycles in a row.\n\n"
                    f"Causes:\n{causes}\n\nHow to fix: {FIXES['failing']}\n"))
        for (channel, entity), count in sorted(self.journal.quarantine_counts().items()):
            rows = self.journal.quarantined(channel, entity)[:10]
            lines = "\n".join(f"- id {r.id}: {r.key}: {r.reason_code}: {r.reason}" for r in rows)
            found.append(Problem(
                f"quarantine:{channel}:{entity}", f"[syncagent] {channel}: {count} {entity} record(s) quarantined",
                f"{count} {entity} record(s) of {channel} could not be applied and wait in quarantine.\n\n"
                f"{lines}\n\nHow to fix: {FIXES['quarantine']}\n"))
        cutoff = (self.clock() - timedelta(minutes=self.cfg.order_late_minutes)).isoformat()
        for channel, order_id, state, reason in self.journal.late_orders(cutoff.replace("+00:00", "Z")):
            found.append(Problem(
                f"late-order:{channel}:{order_id}", f"[syncagent] {channel}: order {order_id} not in the back office",
                f"The approved order {order_id} of {channel} is not in the back office after "
                f"{self.cfg.order_late_minutes} minutes (state: {state}).\n\nCause: {reason or 'unknown'}\n\n"
                f"How to fix: {FIXES['late-order']}\n"))
        return found

    # -- deciding what to send -------------------------------------------------------------------
    def evaluate(self, results: Iterable[StepResult]) -> list[EmailMessage]:
        """Compare the problems holding now with the journal's memory; send what is new."""
        now = self.clock()
        current = {p.key: p for p in self.problems(results)}
        sent: list[EmailMessage] = []
        known = self.journal.alerts()
        with self.journal.transaction():
            for key, problem in current.items():
                row = known.get(key)
                if row is None:
                    self._upsert(key, "open", now, problem.subject, flaps=0)
                    sent.append(self._message(problem.subject, problem.body))
                elif row[1] == "closed":
                    if row[3] and now - _parse(row[3]) < self.quiet_period:
                        self._upsert(key, "open", None, problem.subject, flaps=row[4] + 1)  # back soon: flapping
                    else:
                        self._upsert(key, "open", now, problem.subject, flaps=0)
                        sent.append(self._message(problem.subject, problem.body))
                elif row[1] == "recovering":
                    self._upsert(key, "open", None, problem.subject, flaps=row[4] + 1)  # flapping: no e-mail
            for key, row in known.items():
                if key in current or row[1] == "closed":
                    continue
                if row[1] == "open" and row[4]:
                    # a flapping problem must stay quiet a while first
                    self.journal.resolve_alert(key, "recovering", _iso(now))
                elif row[1] == "open" or (row[1] == "recovering" and now - _parse(row[3]) >= self.quiet_period):
                    self.journal.resolve_alert(key, "closed", _iso(now))
                    flaps = f" (it came and went {row[4]} more times meanwhile)" if row[4] else ""
                    sent.append(self._message(f"[syncagent] recovered: {row[5].removeprefix('[syncagent] ')}",
                                              f"This problem has cleared{flaps}:\n\n{row[5]}\n"))
        for message in sent:
            try:
                self._send(message)
            except (OSError, smtplib.SMTPException) as exc:
                log.error("could not send the alert e-mail %r: %s", message["Subject"], exc)
        return sent

    def _upsert(self, key: str, state: str, opened: datetime | None, subject: str, *, flaps: int) -> None:
        self.journal.set_alert(key, state, _iso(opened) if opened else None, subject, flaps=flaps)

    # -- sending ---------------------------------------------------------------------------------
    def _message(self, subject: str, body: str) -> EmailMessage:
        message = EmailMessage()
        message["Subject"] = subject
        message["From"] = self.cfg.from_addr
        message["To"] = ", ".join(self.cfg.to)
        message.set_content(body + "\n-- \nsyncagent\n")
        return message

    def _smtp_send(self, message: EmailMessage) -> None:
        with smtplib.SMTP(self.cfg.smtp_host, self.cfg.smtp_port, timeout=20) as smtp:
            if self.cfg.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self.cfg.username:
                smtp.login(self.cfg.username, self.cfg.password or "")
            smtp.send_message(message)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
