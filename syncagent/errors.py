"""The whole error tree, grouped by what the caller does about it.

    SyncAgentError
    ├── ConfigError            bad config or usage: fix the file, exit 2
    ├── JournalError           the journal cannot be used (corrupt, newer schema, no permission): exit 2
    │   ├── JournalLocked      another agent holds the journal: exit 3
    │   ├── JournalGone        the journal was removed or replaced under the running agent: exit 2
    │   └── JournalFull        the disk is full: exit 1 (what was recorded is kept; the rest waits)
    ├── ChannelError           one channel/step failed; the others go on: exit 1
    │   ├── TransientError     retry later (timeouts, 5xx, 429, dropped connection)
    │   │   └── AmbiguousError the request may have been applied (lost answer after a POST)
    │   ├── AuthError          credentials rejected (after one refresh): channel marked auth_failed
    │   └── PermanentError     the server refuses the whole request (4xx that a retry cannot fix)
    └── RecordError            one record cannot be applied: quarantine it, the batch goes on
        └── MappingError       a feed record cannot be mapped (missing field, bad money, unknown ref)
"""

from __future__ import annotations

from typing import Any


class SyncAgentError(Exception):
    """Base of every error syncagent raises on purpose."""

    exit_code = 1


class ConfigError(SyncAgentError):
    exit_code = 2


class JournalError(SyncAgentError):
    exit_code = 2


class JournalLocked(JournalError):
    exit_code = 3


class JournalGone(JournalError):
    """The journal file was removed or replaced while open: what is written goes nowhere anyone reads.

    Exit 2, not 3: it is not another agent's lock (cron's "already running, fine"), and a restart
    would not fix it by itself (the systemd unit does not restart on 2): a person must look.
    """


class JournalFull(JournalError):
    """No space left for the journal: the run stops; `results` are the steps it finished (its summary)."""

    exit_code = 1

    def __init__(self, message: str, results: list[Any] | None = None) -> None:
        super().__init__(message)
        self.results: list[Any] = results or []


class ChannelError(SyncAgentError):
    """A whole step failed; carries an optional HTTP status and server error code."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 target: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.target = target  # the endpoint that failed (a client name): logs are rate-limited per target


class TransientError(ChannelError):
    pass


class AmbiguousError(TransientError):
    """The request may or may not have been applied: the answer was lost after sending."""


class AuthError(ChannelError):
    pass


class PermanentError(ChannelError):
    pass


class RecordError(SyncAgentError):
    """One record cannot be applied. `code` is a stable machine reason, `reason` is for people."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


class MappingError(RecordError):
    """A record this system cannot take as it is; `missing` names what it waits for, as `PushResult.missing`
    does ((kind, reference) pairs): once that exists (or is configured) the record may go."""

    def __init__(self, code: str, reason: str, missing: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(code, reason)
        self.missing = missing
