"""A simulator's notification sender: what a platform does when it POSTs a webhook to the agent.

An admin action starts it (`POST /_admin/webhooks/send` on the Seller Up simulator): in a thread
of its own it makes each record (an order), then POSTs its notification to the URL given, one
after the other at the rate given, and logs when each was made, sent and answered, and how
(`GET /_admin/webhooks`), so tests and the bench can tell how long an order took to arrive.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import requests

MAX_LOG = 200_000  # entries kept (a bench sends 1,000)


class WebhookSender:
    """One sending run at a time; its log stays until the next run starts."""

    def __init__(self) -> None:
        self.log: list[dict[str, Any]] = []
        self.thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def start(self, url: str, headers: Mapping[str, str] | Callable[[bytes], Mapping[str, str]],
              make: Callable[[int], tuple[dict[str, Any], str]], count: int, *, rate: float | None = None,
              notify: bool = True) -> None:
        """Make `count` records with `make(i)` -> (notification body, key); POST each body unless `notify` is
        false (a notification lost on the way: the record exists, nobody is told). `headers` may be worked
        out from the body's bytes (a signature)."""
        with self._lock:
            self.log = []
        gap = 1.0 / rate if rate else 0.0

        def run() -> None:
            start = time.monotonic()
            for i in range(count):
                if gap:
                    ahead = start + i * gap - time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)
                body, key = make(i)
                entry: dict[str, Any] = {"key": key, "made_at": time.time(), "sent_at": None, "status": None}
                if notify:
                    entry["sent_at"] = time.time()
                    entry["status"] = _post(url, headers, body)
                    entry["answered_at"] = time.time()
                with self._lock:
                    if len(self.log) < MAX_LOG:
                        self.log.append(entry)

        self.thread = threading.Thread(target=run, name="sim-webhooks", daemon=True)
        self.thread.start()

    def entries(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.log)


def _post(url: str, headers: Mapping[str, str] | Callable[[bytes], Mapping[str, str]], body: dict[str, Any]) -> int:
    """POST one notification; its HTTP status (0: no answer)."""
    data = json.dumps(body).encode()
    extra = headers(data) if callable(headers) else headers
    try:
        resp = requests.post(url, data=data, headers={"Content-Type": "application/json", **extra}, timeout=10,
                             allow_redirects=False)
    except requests.RequestException:
        return 0
    return int(resp.status_code)
