"""E-mail alerts: one message per new problem, one when it recovers, no flood when it flaps.

A *problem* has a stable key (``auth:loja-centro``, ``failing:loja-centro``,
``quarantine:loja-centro``, ``late-order:loja-centro:<id>``, ``silent-shipment:loja-centro:<code>``). After each cycle the agent
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
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from functools import partial

from syncagent.config import EmailAlerts
from syncagent.engine import StepResult
from syncagent.http import redact
from syncagent.journal import Journal
from syncagent.model import time_key

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
    "silent-shipment": "The carrier has said nothing new of this shipment for longer than the carrier's "
                       "silent_after (config, carriers:). Look the tracking code up on the carrier's site; if the "
                       "parcel is lost, open a claim with the carrier. The alert clears by itself at the next news.",
    "late-order": "The order is approved on the channel but not in the back office. See `syncagent status` and "
                  "`syncagent quarantine list`; once the cause is fixed, `syncagent quarantine retry <id>`.",
}


RELAY_BACKOFF_MIN = timedelta(minutes=1)
RELAY_BACKOFF_MAX = timedelta(minutes=15)


class Alerter:
    def __init__(self, cfg: EmailAlerts, journal: Journal, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 quiet_period: timedelta = timedelta(hours=1),
                 send: Callable[[EmailMessage], None] | None = None, secrets: Iterable[str] = ()) -> None:
        self.cfg = cfg
        self.secrets = tuple(secrets)
        self.journal = journal
        self.clock = clock
        self.quiet_period = quiet_period
        # after the relay could not be reached, e-mails wait until then: the daemon evaluates alerts
        # after every step, and a relay that drops packets would cost each step its 20 s timeout
        self.relay_retry_at: datetime | None = None
        self.relay_backoff = RELAY_BACKOFF_MIN
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
        for row in self.journal.silent_shipments(time_key(self.clock()) or ""):
            found.append(Problem(
                f"silent-shipment:{row.channel}:{row.tracking_code}",
                f"[syncagent] {row.channel}: shipment {row.tracking_code} silent",
                f"The shipment {row.tracking_code} ({row.carrier}) of order {row.order_number} on {row.channel} has "
                f"had no news since before {row.silent_at} (last status: {row.last_status or 'none yet'}).\n\n"
                f"How to fix: {FIXES['silent-shipment']}\n"))
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
        """Compare the problems holding now with the journal's memory; send what is new.

        An e-mail counts as sent only once the SMTP server accepted it: its journal change is
        committed after the send, so one that could not go (server down) is tried again next
        cycle. A crash between the two sends it twice, which beats never.
        """
        now = self.clock()
        current = {p.key: p for p in self.problems(results)}
        outbox: list[tuple[EmailMessage, Callable[[], None]]] = []  # (message, what to record once it went)
        known = self.journal.alerts()
        with self.journal.transaction():
            for key, problem in current.items():
                row = known.get(key)
                if row is None or (row[1] == "closed" and not (row[3] and now - _parse(row[3]) < self.quiet_period)):
                    outbox.append((self._message(problem.subject, problem.body),
                                   partial(self._upsert, key, "open", now, problem.subject, flaps=0)))
                elif row[1] in ("closed", "recovering"):
                    self._upsert(key, "open", None, problem.subject, flaps=row[4] + 1)  # back soon: flapping
            for key, row in known.items():
                if key in current or row[1] == "closed":
                    continue
                if row[1] == "open" and row[4]:
                    # a flapping problem must stay quiet a while first
                    self.journal.resolve_alert(key, "recovering", _iso(now))
                elif row[1] == "open" or (row[1] == "recovering" and now - _parse(row[3]) >= self.quiet_period):
                    flaps = f" (it came and went {row[4]} more times meanwhile)" if row[4] else ""
                    outbox.append((self._message(f"[syncagent] recovered: {row[5].removeprefix('[syncagent] ')}",
                                                 f"This problem has cleared{flaps}:\n\n{row[5]}\n"),
                                   partial(self._close, key, now)))
        return self._deliver(outbox)

    def _deliver(self, outbox: list[tuple[EmailMessage, Callable[[], None]]]) -> list[EmailMessage]:
        """Send each message and record it once accepted; the rest wait for a later cycle."""
        sent: list[EmailMessage] = []
        now = self.clock()
        if not outbox or (self.relay_retry_at is not None and now < self.relay_retry_at):
            return sent
        for message, record in outbox:
            try:
                self._send(message)
            except Exception as exc:  # noqa: BLE001 - an alert that cannot go must never stop the agent
                unreachable = isinstance(exc, OSError) and not isinstance(exc, smtplib.SMTPResponseException)
                if unreachable:  # no server to talk to: the others would fail alike
                    self.relay_retry_at = now + self.relay_backoff
                    self.relay_backoff = min(self.relay_backoff * 2, RELAY_BACKOFF_MAX)
                log.error("could not send the alert e-mail %r: %s; %d alert e-mail(s) wait and are tried again %s",
                          message["Subject"], redact(f"{type(exc).__name__}: {exc}", self.secrets),
                          len(outbox) - len(sent) if unreachable else 1,
                          f"after {_iso(self.relay_retry_at)}" if unreachable and self.relay_retry_at
                          else "next cycle")
                if unreachable:
                    break
                continue
            self.relay_retry_at, self.relay_backoff = None, RELAY_BACKOFF_MIN
            with self.journal.transaction():
                record()
            sent.append(message)
        return sent

    def _close(self, key: str, now: datetime) -> None:
        self.journal.resolve_alert(key, "closed", _iso(now))

    def _upsert(self, key: str, state: str, opened: datetime | None, subject: str, *, flaps: int) -> None:
        self.journal.set_alert(key, state, _iso(opened) if opened else None, subject, flaps=flaps)

    # -- sending ---------------------------------------------------------------------------------
    def _message(self, subject: str, body: str) -> EmailMessage:
        """The e-mail; the subject made one safe line (an order id may hold CR/LF), secrets masked."""
        message = EmailMessage()
        message["Subject"] = header_value(redact(subject, self.secrets))
        message["From"] = self.cfg.from_addr
        message["To"] = ", ".join(self.cfg.to)
        message.set_content(redact(body, self.secrets) + "\n-- \nsyncagent\n")
        return message

    def _smtp_send(self, message: EmailMessage) -> None:
        with smtplib.SMTP(self.cfg.smtp_host, self.cfg.smtp_port, timeout=20) as smtp:
            if self.cfg.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self.cfg.username:
                if not self.cfg.starttls and not self.cfg.allow_plaintext_login:  # the loader refuses it too
                    raise smtplib.SMTPException("refusing to send the SMTP password without TLS "
                                                "(starttls: false; see allow_plaintext_login)")
                smtp.login(self.cfg.username, self.cfg.password or "")
            smtp.send_message(message)


def header_value(text: str, limit: int = 200) -> str:
    """One line fit for a mail header: control and line-separator characters become spaces.

    The values come from servers (order ids, error messages); a CR/LF in one would otherwise make
    the header refused (the whole alert lost) or, worse, add a header of the server's choosing.
    """
    clean = "".join(" " if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in text)
    clean = " ".join(clean.split())
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
