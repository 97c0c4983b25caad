"""Logging set-up: text or JSON lines on stderr (and a file), every line scrubbed of secrets."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from syncagent.config import LogConfig
from syncagent.http import mask, masks


class RedactingFilter(logging.Filter):
    """Replaces every known secret, in every form it may be quoted in (escaped, percent-encoded,
    base64), in the rendered message and its traceback with ***."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = tuple(secrets)
        self.forms = masks(self.secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        if self.forms:
            record.msg, record.args = mask(record.getMessage(), self.forms), None
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = mask(record.exc_text, self.forms)
                record.exc_info = None  # rendered (and masked) once: formatters use exc_text
        return True


class RateLimitFilter(logging.Filter):
    """At most one line per `interval` seconds for each failing target (an endpoint that is down).

    Lines that carry a `target` (``extra={"target": ...}``) are counted; the next line let
    through says how many similar ones were held back, so an outage of hours writes a line a
    minute, not thousands.
    """

    def __init__(self, interval: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval = interval
        self.clock = clock
        self.last: dict[str, tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        target = getattr(record, "target", None)
        if target is None or record.levelno < logging.WARNING:
            return True
        now = self.clock()
        seen = self.last.get(target)
        if seen is not None and now - seen[0] < self.interval:
            self.last[target] = (seen[0], seen[1] + 1)
            return False
        if seen is not None and seen[1]:
            record.msg, record.args = f"{record.getMessage()} ({seen[1]} similar lines held back)", None
        self.last[target] = (now, 0)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:  # already rendered and masked by RedactingFilter
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(cfg: LogConfig, secrets: Iterable[str], *, verbose: bool = False) -> None:
    root = logging.getLogger("syncagent")
    for handler in list(root.handlers):
        root.removeHandler(handler)
    level = logging.DEBUG if verbose else getattr(logging, cfg.level.upper(), logging.INFO)
    root.setLevel(level)
    root.propagate = False
    formatter: logging.Formatter = (
        JsonFormatter() if cfg.format == "json" else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if cfg.file:
        from syncagent.journal import create_private

        create_private(Path(cfg.file))  # log lines quote order ids, customers, causes: not for every user
        handlers.append(logging.FileHandler(cfg.file, encoding="utf-8"))
    redactor = RedactingFilter(secrets)
    limiter = RateLimitFilter()
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(redactor)
        handler.addFilter(limiter)
        root.addHandler(handler)
