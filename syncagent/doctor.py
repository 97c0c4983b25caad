"""`syncagent doctor`: everything that can stop a sync, checked at once, each with how to fix it.

Each check returns plain `Finding`s (ok | warn | fail) so the CLI renders them for people or as
JSON, and tests assert on data. Doctor only reads: it opens the journal read-only, never takes
its lock (a running daemon is not disturbed), and sends no write to any endpoint.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from syncagent.config import Config, load_config
from syncagent.connectors.base import Connector
from syncagent.errors import (
    AuthError,
    ConfigError,
    JournalError,
    PermanentError,
    SyncAgentError,
    TransientError,
)
from syncagent.http import HttpClient
from syncagent.journal import (
    SCHEMA_VERSION,
    Journal,
    integrity_problems,
    is_corrupt,
    journal_failure,
    missing_references,
    open_quarantine,
    open_readonly,
    quarantine_backlog,
    schema_version_of,
)
from syncagent.model import utcnow

MAX_SKEW = 60.0  # seconds; promotions, cursors and "order late" alerts all compare clocks
OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass(frozen=True, slots=True)
class Finding:
    """One result: what was checked, how it stands, and what to do when it is not ok."""

    check: str
    status: str  # ok | warn | fail
    message: str
    fix: str = ""

    def to_json(self) -> dict[str, str]:
        return asdict(self)


# -- config -------------------------------------------------------------------------------------
def check_config(path: str | Path | None) -> tuple[Config | None, list[Finding]]:
    """Load the config; on failure one finding per problem (file:line: key), as check-config prints them."""
    try:
        config = load_config(path)
    except ConfigError as exc:
        problems = getattr(exc, "problems", None) or [exc]
        return None, [Finding("config", FAIL, str(p), _config_fix(p)) for p in problems]
    channels = [c for c in config.channels if c.enabled]
    return config, [Finding("config", OK, f"{config.path}: loaded; {len(channels)} enabled channel(s) of "
                            f"{len(config.channels)}")]


def _config_fix(problem: Any) -> str:
    if getattr(problem, "line", None):
        return "edit the file at that line (docs/configuration.md), then `syncagent check-config`"
    return ("give the config file with -c FILE or $SYNCAGENT_CONFIG (or create ./syncagent.yaml from "
            "config.example.yaml), readable by this user")


def check_transport(config: Config) -> list[Finding]:
    """Settings that expose credentials on the wire: unverified TLS, an SMTP login without TLS."""
    findings: list[Finding] = []
    for name, cfg in config.endpoints():
        if not cfg.http.verify_tls and not cfg.http.ca_bundle:
            findings.append(Finding(f"tls:{name}", WARN, "TLS certificates are NOT verified (verify_tls: false): "
                                    f"anyone between this machine and {cfg.base_url} can read the credentials",
                                    "remove `verify_tls: false`; for a server with a private CA give its CA "
                                    "file as `ca_bundle`"))
    alerts = config.alerts
    if alerts is not None and alerts.username and not alerts.starttls:
        findings.append(Finding("tls:alerts", WARN, f"the SMTP password goes to {alerts.smtp_host} unencrypted "
                                "(starttls: false, allow_plaintext_login: true)",
                                "use a relay that offers STARTTLS and set `starttls: true`"))
    if not findings:
        findings.append(Finding("tls", OK, "every endpoint verifies TLS certificates"))
    return findings


# -- endpoints ----------------------------------------------------------------------------------
def _clients(connector: Connector) -> list[HttpClient]:
    """The connector's HTTP clients (several for multi-API systems), as its contract declares them."""
    return list(connector.http_clients())


def server_date(client: HttpClient) -> tuple[datetime, datetime] | None:
    """(the server's Date header, our clock at the middle of the exchange), or None without a Date.

    A plain unauthenticated GET of the base URL on the client's own session (same TLS and
    timeouts); any status will do, only the header is read.
    """
    s = client.settings
    before = time.time()
    resp = client.session.get(client.base_url + "/", timeout=(s.connect_timeout, s.read_timeout),
                              allow_redirects=False, stream=True)
    after = time.time()
    resp.close()
    header = resp.headers.get("Date")
    if not header:
        return None
    try:
        theirs = parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    if theirs.tzinfo is None:
        theirs = theirs.replace(tzinfo=UTC)
    return theirs, datetime.fromtimestamp((before + after) / 2, UTC)


def _endpoint_failure(name: str, cfg: Any, exc: SyncAgentError) -> Finding:
    url = getattr(cfg, "base_url", "")
    if isinstance(exc, AuthError) and exc.code == "reauthorize":  # an OAuth code grant lost or never given
        return Finding(f"endpoint:{name}", FAIL, f"not authorized: {exc}",
                       f"the seller must authorize the app again: `syncagent auth {cfg.type} --channel {name}` "
                       "(it prints the address to open in any browser)")
    if isinstance(exc, AuthError):
        text = str(exc) if "credentials rejected" in str(exc) else f"credentials rejected: {exc}"
        return Finding(f"endpoint:{name}", FAIL, text,
                       f"the key or client secret of {name} is wrong, expired or revoked: issue a new one in the "
                       "system's admin, put it in the environment file (${VAR} in the config) and restart syncagent")
    if isinstance(exc, TransientError) and exc.status is None:
        return Finding(f"endpoint:{name}", FAIL, f"unreachable: {exc}",
                       f"check that {url} is right and the service is up, and that this machine reaches it "
                       "(DNS, firewall, proxy, TLS certificate)")
    if isinstance(exc, TransientError):
        return Finding(f"endpoint:{name}", FAIL, f"answers with errors: {exc}",
                       f"{url} is up but failing (status {exc.status}): try again later or ask its operator")
    if isinstance(exc, PermanentError):
        return Finding(f"endpoint:{name}", FAIL, f"refused: {exc}",
                       "fix what the message names in the config or in the system itself")
    return Finding(f"endpoint:{name}", FAIL, str(exc), "see the message; `syncagent check-config --online` repeats it")


def check_endpoints(config: Config, *, now: Callable[[], datetime] = utcnow,
                    max_skew: float = MAX_SKEW) -> list[Finding]:
    """Each endpoint: reachable with its credentials (connector.check()), and its clock near ours."""
    findings: list[Finding] = []
    from syncagent.agent import build_connector

    with state_journal(config) as journal:
        for name, cfg in config.endpoints():
            findings += _check_endpoint(name, cfg, journal, now, max_skew, build_connector)
    return findings


@contextlib.contextmanager
def state_journal(config: Config) -> Iterator[Journal | None]:
    """The journal, unlocked (the daemon may hold it), for what connectors keep there (OAuth tokens: a token
    refreshed by a check must be stored, or the seller is locked out); None when there is none yet."""
    if not config.journal.exists():
        yield None
        return
    try:  # read-only: no migration here; a journal of another schema is left to its own findings
        journal = Journal(config.journal, lock=False, readonly=True)
    except JournalError:
        yield None
        return
    if journal.schema_version() != SCHEMA_VERSION:
        journal.close()
        yield None
        return
    try:
        yield journal
    finally:
        journal.close()


def _check_endpoint(name: str, cfg: Any, journal: Journal | None, now: Callable[[], datetime], max_skew: float,
                    build_connector: Callable[..., Connector]) -> list[Finding]:
    try:
        # retries stay, their waits are short: a diagnosis must not hang for minutes
        connector = build_connector(cfg, sleep=lambda seconds: time.sleep(min(seconds, 0.2)), journal=journal)
    except SyncAgentError as exc:
        return [Finding(f"endpoint:{name}", FAIL, f"cannot be set up: {exc}", "fix the config")]
    try:
        try:
            connector.check()
        except SyncAgentError as exc:
            return [_endpoint_failure(name, cfg, exc)]
        return [Finding(f"endpoint:{name}", OK, f"{cfg.base_url}: reachable, credentials accepted"),
                _clock_finding(name, connector, now, max_skew)]
    finally:
        connector.close()


def _clock_finding(name: str, connector: Any, now: Callable[[], datetime], max_skew: float) -> Finding:
    check = f"clock:{name}"
    clients = _clients(connector)
    if not clients:
        return Finding(check, OK, "not checked: the connector exposes no HTTP client")
    try:
        answer = server_date(clients[0])
    except Exception as exc:  # noqa: BLE001 - a clock probe must never break the diagnosis
        return Finding(check, WARN, f"could not read the server's clock: {type(exc).__name__}",
                       "nothing to do if the endpoint checks above are ok")
    if answer is None:
        return Finding(check, OK, "not checked: the server sends no Date header")
    theirs, ours_then = answer
    ours = ours_then + (now() - utcnow())  # the clock under test (a fake one in tests)
    skew = (ours - theirs).total_seconds()
    text = f"local clock is {abs(skew):.0f} s {'ahead of' if skew > 0 else 'behind'} {name}"
    if abs(skew) > max_skew:
        return Finding(check, WARN, text, "synchronise this machine's clock (systemd-timesyncd or chrony: "
                       "`timedatectl set-ntp true`); promotions start and end and orders are judged late by it")
    return Finding(check, OK, text)


# -- journal ------------------------------------------------------------------------------------
def lock_holder(lock_path: Path) -> int | None:
    """The pid holding the journal lock, or None when it is free. Never takes the lock itself
    when /proc/locks can tell (a daemon starting that instant must not see it taken)."""
    if not lock_path.exists():
        return None
    inode = lock_path.stat().st_ino
    with contextlib.suppress(OSError):
        for line in Path("/proc/locks").read_text().splitlines():
            parts = line.split()
            # "1: FLOCK  ADVISORY  WRITE 4242 08:01:1234567 0 EOF" (blocked waiters have "->")
            if (len(parts) >= 6 and parts[1] == "FLOCK" and parts[2] != "->"
                    and parts[5].rsplit(":", 1)[-1] == str(inode)):
                return _pid_from_file(lock_path) or int(parts[4])
        return None
    fd = os.open(lock_path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _pid_from_file(lock_path) or -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _pid_from_file(lock_path: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(lock_path.read_text().strip())
    return None


def check_journal(config: Config) -> tuple[sqlite3.Connection | None, list[Finding]]:
    """Lock, integrity and schema version; returns a read-only connection for the later checks."""
    path = config.journal
    if not path.exists():
        return None, [Finding("journal", WARN, f"no journal at {path} yet",
                              "it is created by the first run: `syncagent run --once`")]
    findings: list[Finding] = []
    holder = lock_holder(Path(str(path) + ".lock"))
    if holder is None:  # the agent locks the journal itself too: a deleted .lock file hides nothing
        holder = lock_holder(path)
    if holder is None:
        findings.append(Finding("journal:lock", OK, "not locked: no syncagent runs on this journal now"))
    else:
        who = f"pid {holder}" if holder > 0 else "another process"
        findings.append(Finding("journal:lock", WARN, f"locked by {who}: `run` and `push` exit 3 until it stops",
                                f"fine if {who} is the syncagent service; otherwise stop it (`kill -TERM {holder}`)"
                                if holder > 0 else "find it with `fuser` on the .lock file and stop it"))
    try:
        conn = open_readonly(path)
        problems = integrity_problems(conn)
    except sqlite3.DatabaseError as exc:
        failure = journal_failure(exc, path, write=False)
        if failure is not None:  # a missing permission: the journal is healthy, never advise discarding it
            findings.append(Finding("journal:access", FAIL, str(failure),
                                    "grant the permission named above (or run syncagent as the journal's owner); "
                                    "keep the journal: it is not damaged"))
            return None, findings
        if not is_corrupt(exc):
            findings.append(Finding("journal:integrity", FAIL, f"{path} cannot be opened now ({exc})",
                                    "it is not known to be damaged: keep it, fix the cause and run doctor again"))
            return None, findings
        findings.append(Finding("journal:integrity", FAIL, f"{path} is not a usable SQLite database ({exc})",
                                "restore it from a backup (docs/operations.md); or move it aside to start anew "
                                "(every record is sent once more)"))
        return None, findings
    if problems != ["ok"]:
        findings.append(Finding("journal:integrity", FAIL, f"{path} failed its integrity check: "
                                f"{'; '.join(problems[:5])}", "stop syncagent and restore the journal from a "
                                "backup (sqlite3 .recover can salvage rows)"))
        conn.close()
        return None, findings
    findings.append(Finding("journal:integrity", OK, f"{path}: integrity check ok"))
    version = schema_version_of(conn)
    if version > SCHEMA_VERSION:
        findings.append(Finding("journal:schema", FAIL, f"schema version {version} is newer than this syncagent's "
                                f"({SCHEMA_VERSION})", "upgrade syncagent, or restore a journal of this version"))
    elif version < SCHEMA_VERSION:
        findings.append(Finding("journal:schema", WARN, f"schema version {version}; this syncagent migrates it to "
                                f"{SCHEMA_VERSION} at its next start", "back the journal up before that start"))
    else:
        findings.append(Finding("journal:schema", OK, f"schema version {version}, as this syncagent expects"))
    return conn, findings


# -- quarantine ---------------------------------------------------------------------------------
_REFERENCE_FIX = {
    "product": "create product {ref} in the back office (or correct the SKU on the channel)",
    "payment method": "create payment method {ref} in the back office (or map it: payment_map on a VTEX channel)",
    "customer": "bind customer {ref}: run `syncagent pull --entity customers --channel {channel}`",
}


def check_references(conn: sqlite3.Connection) -> list[Finding]:
    """Open quarantine rows waiting for a product, payment method, customer… grouped per missing thing."""
    rows = open_quarantine(conn)
    groups: dict[tuple[str, str], list[tuple[str, str, str]]] = {}
    for channel, entity, key, code, reason, waiting_for in rows:
        for ref in missing_references(code or "", reason or "", waiting_for):
            groups.setdefault(ref, []).append((channel, entity, key))
    if not groups:
        return [Finding("references", OK, "no quarantined record waits for an unknown product, payment method "
                        "or customer")]
    findings = []
    for (kind, ref), waiting in sorted(groups.items(), key=lambda g: (-len(g[1]), g[0])):
        entities = sorted({e for _, e, _ in waiting})
        channels = sorted({c for c, _, _ in waiting})
        keys = ", ".join(k for _, _, k in waiting[:5]) + (", …" if len(waiting) > 5 else "")
        noun = entities[0] if len(entities) == 1 else "records"
        if len(waiting) == 1:
            noun = noun.removesuffix("s") + " waits"
        else:
            noun += " wait"
        fix = _REFERENCE_FIX.get(kind, "add {kind} {ref} where the message says").format(
            ref=repr(ref), kind=kind, channel=channels[0])
        retry = " ".join(f"`syncagent quarantine retry --all --channel {c}`" for c in channels)
        findings.append(Finding("references", WARN, f"{len(waiting)} {noun} for {kind} {ref!r} "
                                f"({', '.join(channels)}: {keys})", f"{fix}; then {retry}"))
    return findings


def check_backlog(conn: sqlite3.Connection, *, now: Callable[[], datetime] = utcnow) -> list[Finding]:
    """Open quarantine rows per channel and entity, with the age of the oldest."""
    rows = quarantine_backlog(conn)
    if not rows:
        return [Finding("quarantine", OK, "no open quarantined record")]
    findings = []
    for channel, entity, count, oldest in rows:
        age = _age(oldest, now())
        findings.append(Finding("quarantine", WARN, f"{channel}/{entity}: {count} open, oldest {age}",
                                f"`syncagent quarantine list --channel {channel}` shows why; fix the cause and "
                                f"`quarantine retry --all --channel {channel}`, or `quarantine drop ID --reason …`"))
    return findings


def _age(stamp: str | None, now: datetime) -> str:
    if not stamp:
        return "unknown"
    try:
        seen = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return stamp
    if seen.tzinfo is None:
        seen = seen.replace(tzinfo=UTC)
    seconds = max(0, int((now - seen).total_seconds()))
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} d {seconds % 86400 // 3600} h"


# -- all of it ----------------------------------------------------------------------------------
def diagnose(config: Config, *, now: Callable[[], datetime] = utcnow, online: bool = True) -> list[Finding]:
    """Every check after the config: endpoints and clocks, the journal, references, backlog."""
    findings = check_transport(config)
    findings += check_endpoints(config, now=now) if online else []
    conn, journal = check_journal(config)
    findings += journal
    if conn is not None:
        try:
            findings += check_references(conn)
            findings += check_backlog(conn, now=now)
        finally:
            conn.close()
    return findings


def exit_code(findings: Iterable[Finding], *, config_ok: bool = True) -> int:
    """2 when the config does not load; 1 when any check failed; 0 otherwise (warnings included)."""
    if not config_ok:
        return 2
    return 1 if any(f.status == FAIL for f in findings) else 0


def to_json(findings: list[Finding], code: int) -> dict[str, Any]:
    """The `doctor --json` shape (docs/cli.md): stable keys, one object per finding."""
    counts = {s: sum(f.status == s for f in findings) for s in (OK, WARN, FAIL)}
    return {"schema": 1, "exit_code": code, "summary": counts, "findings": [f.to_json() for f in findings]}
