"""An overall deadline per attempt: a server that drips its answer one byte at a time cannot hold a request.

The read timeout only bounds each wait for a byte. These tests talk to a local hostile server that
drips slower than the deadline but faster than the read timeout; each request runs in a thread that
must end within a generous bound (the drip alone would take minutes).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from syncagent import http
from syncagent.config import ConfigProblems, HttpOptions, load_config
from syncagent.connectors.common import http_settings
from syncagent.errors import AmbiguousError, ChannelError, TransientError
from syncagent.http import HttpClient, HttpSettings
from tests.hostile import Answer, HostileServer

BODY = b'{"items": []}' * 40  # 520 bytes: minutes at the drip rates below
BOUND = 20.0  # seconds a request may take here at most: far above the deadline, far below the drip


@pytest.fixture
def server() -> Iterator[HostileServer]:
    with HostileServer() as hostile:
        hostile.on("GET", "/headers", lambda req: Answer(body=BODY, drip=0.3))  # the status line dripped too
        hostile.on("POST", "/headers", lambda req: Answer(body=BODY, drip=0.3))
        hostile.on("GET", "/unframed", lambda req: Answer(body=BODY, drip=0.3, length=False))  # ends with the connection
        yield hostile
    http.resume_requests()


def outcome(call: Callable[[], Any]) -> BaseException | Any:
    """What `call` returned or raised, from a thread that must end within BOUND seconds."""
    box: list[Any] = []

    def run() -> None:
        try:
            box.append(call())
        except BaseException as exc:  # noqa: BLE001 - handed to the test as it is
            box.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(BOUND)
    assert not thread.is_alive(), f"the request was still running after {BOUND} s"
    return box[0]


def client(server: HostileServer, **settings: Any) -> HttpClient:
    opts = {"connect_timeout": 1.0, "read_timeout": 2.0, "max_attempts": 3, **settings}
    return HttpClient(server.url, HttpSettings(**opts), sleep=lambda s: None)


@pytest.mark.parametrize("path", ["/headers", "/unframed"])
def test_a_dripped_answer_ends_at_the_deadline_and_is_not_tried_again(server: HostileServer, path: str) -> None:
    got = outcome(lambda: client(server, total_timeout=1.5).get(path))
    assert isinstance(got, TransientError) and got.code == "deadline", got
    assert "1.5 s deadline" in str(got) and "total_timeout" in str(got)
    assert len(server.gets(path)) == 1  # the server would drip again: no second attempt


def test_a_post_cut_at_the_deadline_is_ambiguous_so_it_is_looked_up_before_any_repeat(server: HostileServer) -> None:
    got = outcome(lambda: client(server, total_timeout=1.5).post("/headers", json={"a": 1}))
    assert isinstance(got, AmbiguousError) and got.code == "deadline", got


def test_the_default_deadline_comes_from_the_timeouts_and_also_ends_a_drip(server: HostileServer) -> None:
    settings = HttpSettings(connect_timeout=0.5, read_timeout=1.0)
    assert settings.deadline == 2.5 and HttpSettings().deadline == 65.0
    got = outcome(lambda: HttpClient(server.url, settings, sleep=lambda s: None).get("/headers"))
    assert isinstance(got, TransientError) and got.code == "deadline", got


def test_a_stop_cuts_a_dripping_request_after_the_grace_and_nothing_is_retried(server: HostileServer) -> None:
    slow = client(server, total_timeout=600.0)  # only the stop can end it
    threading.Timer(0.5, http.stop_requests, kwargs={"grace": 0.5}).start()
    got = outcome(lambda: slow.get("/headers"))
    assert isinstance(got, ChannelError) and "stopping" in str(got), got
    assert len(server.gets("/headers")) == 1
    http.resume_requests()
    assert outcome(lambda: client(server, total_timeout=1.0).get("/headers")).code == "deadline"  # normal again


def test_total_timeout_is_read_from_the_config_and_inherited(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("""\
journal: ./j.db
backoffice: {type: gestao-lojas, base_url: "http://127.0.0.1:1", client_id: i, client_secret: ${S},
             http: {read_timeout: 10}}
defaults: {http: {total_timeout: 12.5}}
channels:
  - {name: a, type: sellerup, base_url: "http://127.0.0.1:2", api_key: ${K}, warehouses: [CD01],
     order_warehouse: CD01, flows: {products: {}}}
  - {name: b, type: sellerup, base_url: "http://127.0.0.1:3", api_key: ${K}, warehouses: [CD01],
     order_warehouse: CD01, http: {total_timeout: 3}, flows: {products: {}}}
""")
    config = load_config(path, env={"S": "s3cret-x", "K": "k3y-value"})
    assert http_settings(config.backoffice.http).deadline == 12.5  # defaults.http reaches the back office too
    assert [http_settings(c.http).deadline for c in config.channels] == [12.5, 3]
    assert http_settings(HttpOptions(read_timeout=10)).deadline == 5 + 2 * 10  # not set: from the timeouts
    path.write_text(path.read_text().replace("total_timeout: 3", "total_timeout: -1"))
    with pytest.raises(ConfigProblems) as caught:
        load_config(path, env={"S": "s3cret-x", "K": "k3y-value"})
    assert "total_timeout" in str(caught.value)
