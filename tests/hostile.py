"""A small hostile HTTP server on 127.0.0.1 for tests: it answers what each test scripts, as badly as asked.

    with HostileServer() as server:
        server.on("GET", "/products", lambda req: Answer(body=b'{"items": ...}'))
        server.on("GET", "/slow", lambda req: Answer(body=b"{}", drip=1.0))   # one byte a second
        ... server.url ...

Unscripted requests get a 404. `back_office()` scripts a token endpoint that works, so a test
only scripts the feeds it attacks. Every request is logged (method, path, query); dripping
stops as soon as the server is closed, so a test never waits on its own server.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: bytes

    def arg(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    drip: float | None = None  # seconds between single bytes, headers included; None: all at once
    length: bool = True  # send Content-Length (False: the body ends when the connection closes)


Handler = Callable[[Request], Answer]


def page(items: list[Any], next_cursor: str | None) -> Answer:
    return Answer(body=json.dumps({"items": items, "next_cursor": next_cursor}).encode())


class HostileServer:
    """A threading HTTP server answering scripted `Answer`s; a context manager that stops it."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Handler] = {}
        self.log: list[Request] = []
        self.closing = threading.Event()
        self.dripping = threading.Event()  # set once a drip has begun (the request is being answered)
        owner = self

        class _Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
                pass

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                size = int(self.headers.get("Content-Length") or 0)
                req = Request(self.command, parts.path, parse_qs(parts.query), self.rfile.read(size) if size else b"")
                owner.log.append(req)
                handler = owner.routes.get((req.method, req.path))
                answer = handler(req) if handler else Answer(404, b'{"error": {"code": "not_found", "message": "no"}}')
                head = f"HTTP/1.1 {answer.status} X\r\nContent-Type: {answer.content_type}\r\n"
                if answer.length:
                    head += f"Content-Length: {len(answer.body)}\r\n"
                else:
                    head += "Connection: close\r\n"
                    self.close_connection = True
                head += "".join(f"{k}: {v}\r\n" for k, v in answer.headers.items()) + "\r\n"
                data = head.encode() + answer.body
                try:
                    if answer.drip is None:
                        self.wfile.write(data)
                        return
                    owner.dripping.set()
                    for i in range(len(data)):
                        if owner.closing.wait(answer.drip):
                            return
                        self.wfile.write(data[i : i + 1])
                        self.wfile.flush()
                except OSError:
                    return  # the client hung up: what a drip is meant to end in

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def on(self, method: str, path: str, handler: Handler) -> HostileServer:
        self.routes[(method, path)] = handler
        return self

    def back_office(self) -> HostileServer:
        """A token endpoint that works: the attack is elsewhere."""
        body = json.dumps({"access_token": "hostile-token", "token_type": "Bearer", "expires_in": 3600}).encode()
        return self.on("POST", "/oauth/token", lambda req: Answer(body=body))

    def gets(self, path: str) -> list[Request]:
        return [r for r in self.log if r.method == "GET" and r.path == path]

    def start(self) -> HostileServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> HostileServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_until(what: str, cond: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Poll `cond` until it is true (bounded), for tests that wait on another process."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
