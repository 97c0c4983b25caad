"""Notifications without a server: each platform's check, the endpoint's answers, the rate buckets, the config."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
from pathlib import Path
from typing import Any

import pytest

from syncagent.config import ListenConfig, NotificationSettings, load_config
from syncagent.connectors.base import BaseConnector, InboundRequest, Notification
from syncagent.errors import ConfigError
from syncagent.inbound import verifiers
from syncagent.inbound.server import Buckets, Hook, Inbound, Writer
from syncagent.journal import Journal


def req(body: bytes | dict[str, Any], headers: dict[str, str] | None = None,
        query: dict[str, str] | None = None) -> InboundRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return InboundRequest({k.lower(): v for k, v in (headers or {}).items()}, query or {}, raw, "10.0.0.1")


# -- the platforms' checks ---------------------------------------------------------------------------
def test_jumpseller_checks_the_hmac_of_the_raw_body_with_the_hooks_token() -> None:
    body = json.dumps({"order": {"id": 1017, "status": "Paid"}}).encode()
    sign = base64.b64encode(hmac.new(b"hooks-token", body, hashlib.sha256).digest()).decode()
    settings = NotificationSettings(secret="hooks-token")
    good = verifiers.jumpseller(req(body, {"Jumpseller-Hmac-Sha256": sign, "Jumpseller-Event": "order_paid"}), settings)
    assert good == Notification("orders", "order_paid", "1017")
    assert verifiers.jumpseller(req(body + b" ", {"Jumpseller-Hmac-Sha256": sign}), settings) is None  # body changed
    assert verifiers.jumpseller(req(body, {}), settings) is None  # unsigned
    assert verifiers.jumpseller(req(body, {"Jumpseller-Hmac-Sha256": sign}), NotificationSettings()) is None


def test_mercado_livre_wants_our_application_and_seller_and_a_topic_we_read() -> None:
    note = {"resource": "/orders/2000003508419013", "user_id": 123, "topic": "orders_v2", "application_id": 555,
            "attempts": 1}
    settings = NotificationSettings(application_id="555", user_id="123")
    assert verifiers.mercadolivre(req(note), settings) == Notification("orders", "orders_v2", "2000003508419013")
    assert verifiers.mercadolivre(req({**note, "application_id": 556}), settings) is None
    assert verifiers.mercadolivre(req({**note, "user_id": 9}), settings) is None
    assert verifiers.mercadolivre(req(note), NotificationSettings()) is None  # no app id configured: refused
    assert verifiers.mercadolivre(req({**note, "topic": "items"}), settings) == Notification("", "items")
    assert verifiers.mercadolivre(req(b"not json"), settings) is None


@pytest.mark.parametrize("check", [verifiers.pluggto, verifiers.via, verifiers.vtex, verifiers.sellerup,
                                   verifiers.netshoes])
def test_a_shared_token_in_the_header_or_the_url(check: Any) -> None:
    settings = NotificationSettings(secret="s3cret")
    assert check(req({"type": "orders", "id": "7"}, {"X-Syncagent-Token": "s3cret"}), settings) is not None
    assert check(req({"type": "orders", "id": "7"}, query={"token": "s3cret"}), settings) is not None
    assert check(req({"type": "orders", "id": "7"}, {"X-Syncagent-Token": "s3cre"}), settings) is None
    assert check(req({"type": "orders", "id": "7"}), settings) is None
    assert check(req({"type": "orders"}, {"X-Syncagent-Token": ""}), NotificationSettings()) is None
    custom = NotificationSettings(secret="s3cret", header="X-Hook-Key")
    assert check(req({"id": "7"}, {"X-Hook-Key": "s3cret"}), custom) is not None


def test_what_each_shared_token_platform_wakes() -> None:
    ok = NotificationSettings(secret="t")
    head = {"X-Syncagent-Token": "t"}
    assert verifiers.pluggto(req({"type": "orders", "id": "p1", "action": "updated"}, head), ok) == \
        Notification("orders", "orders", "p1")
    assert verifiers.pluggto(req({"type": "products", "id": "x"}, head), ok) == Notification("", "products", "x")
    assert verifiers.vtex(req({"hookConfig": "ping"}, head), ok) == Notification("", "ping")
    assert verifiers.vtex(req({"OrderId": "v1-01", "State": "ready-for-handling"}, head), ok) == \
        Notification("orders", "ready-for-handling", "v1-01")
    assert verifiers.via(req(b"\xff garbage", head), ok) == Notification("orders", "callback", None)


def test_the_base_connector_refuses_what_no_check_is_known_for() -> None:
    class Unknown(BaseConnector):
        type_name = "nobody-knows"

    class Shop(BaseConnector):
        type_name = "jumpseller"

    assert Unknown().verify_notification(req({}), NotificationSettings(secret="x")) is None
    body = b"{}"
    sign = base64.b64encode(hmac.new(b"k", body, hashlib.sha256).digest()).decode()
    assert Shop().verify_notification(req(body, {"Jumpseller-Hmac-Sha256": sign}), NotificationSettings(secret="k"))


# -- the endpoint ------------------------------------------------------------------------------------
class Seller(BaseConnector):
    type_name = "sellerup"


@pytest.fixture
def app(tmp_path: Path) -> Any:
    Journal(tmp_path / "j.db").close()
    writer = Writer(tmp_path / "j.db")
    writer.start()
    woken: list[tuple[str, str]] = []
    clock = [0.0]
    inbound = Inbound({"loja": Hook(Seller(), NotificationSettings(secret="t"), frozenset({"orders"}))}, writer,
                      lambda c, f: woken.append((c, f)), ListenConfig(max_body=100, per_second=1, burst=3),
                      clock=lambda: clock[0])
    inbound.woken, inbound.clock = woken, clock  # type: ignore[attr-defined]
    yield inbound
    writer.stop()


def call(app: Inbound, body: bytes, *, path: str = "/hooks/loja", method: str = "POST", token: str | None = "t",
         source: str = "10.0.0.1") -> tuple[str, dict[str, Any], dict[str, str]]:
    environ = {"PATH_INFO": path, "REQUEST_METHOD": method, "REMOTE_ADDR": source, "CONTENT_LENGTH": str(len(body)),
               "wsgi.input": io.BytesIO(body), "QUERY_STRING": ""}
    if token is not None:
        environ["HTTP_X_SYNCAGENT_TOKEN"] = token
    status, payload, headers = app.handle(environ)
    return status, json.loads(payload), dict(headers)


def test_the_endpoint_stores_wakes_once_and_refuses(app: Any, caplog: pytest.LogCaptureFixture) -> None:
    status, answer, _ = call(app, b'{"topic": "orders", "id": "A1"}')
    assert status == "200 OK" and answer == {"ok": True, "stored": True, "duplicate": False}
    status, answer, _ = call(app, b'{"topic": "orders", "id": "A1"}')  # the same again: harmless
    assert answer["duplicate"] is True
    assert app.woken == [("loja", "orders")]
    assert call(app, b'{"topic": "products"}')[1] == {"ok": True, "stored": False}  # nothing of ours reads it
    app.clock[0] += 10
    assert call(app, b"{}", token="bad")[0] == "401 Unauthorized"
    assert call(app, b"{}", token=None)[0] == "401 Unauthorized"
    assert sum("refused" in r.message for r in caplog.records) == 1  # once per source
    assert call(app, b"x" * 101)[0] == "413 Content Too Large"
    assert call(app, b"{}", path="/hooks/other")[0] == "404 Not Found"
    assert call(app, b"{}", path="/elsewhere")[0] == "404 Not Found"
    assert call(app, b"{}", method="GET")[0] == "405 Method Not Allowed"
    summary = app.writer.journal.notification_summary()
    assert summary["loja"][1] == 1  # one waiting for its step


def test_a_source_past_its_burst_is_told_when_to_come_back(app: Any) -> None:
    answers = [call(app, b'{"id": "%d"}' % i) for i in range(5)]
    assert [a[0] for a in answers[:3]] == ["200 OK"] * 3
    assert answers[3][0] == "429 Too Many Requests" and answers[3][2]["Retry-After"] == "1"
    assert call(app, b'{"id": "x"}', source="10.0.0.2")[0] == "200 OK"  # another source has its own bucket
    app.clock[0] += 1.0
    assert call(app, b'{"id": "y"}')[0] == "200 OK"


def test_buckets_forget_the_oldest_sources() -> None:
    buckets = Buckets(1, 1, clock=lambda: 0.0)
    for i in range(5000):
        buckets.take(f"s{i}")
    assert len(buckets._buckets) <= 4096


# -- the config --------------------------------------------------------------------------------------
BASE = """\
backoffice: {type: gestao-lojas, base_url: http://127.0.0.1:1, client_id: a, client_secret: ${S}}
channels:
  - name: loja
    type: sellerup
    base_url: http://127.0.0.1:2
    api_key: ${S}
    order_warehouse: LJ01
    flows: {orders: {every: 1m}}
"""


def test_listen_is_off_unless_given_and_checked_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(BASE)
    assert load_config(path, env={"S": "x"}).listen is None
    path.write_text(BASE + "listen: {host: 127.0.0.1, port: 8787}\n")
    assert load_config(path, env={"S": "x"}).listen == ListenConfig(host="127.0.0.1", port=8787)
    path.write_text(BASE + "listen:\n  port: 99999\n  rate_limit: {per_second: 0}\n  backlog: 5\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={"S": "x"})
    text = str(info.value)
    assert "c.yaml:10" in text and "listen.port" in text
    assert "listen.rate_limit.per_second" in text and "listen.backlog" in text


def test_a_channel_notification_secret_comes_from_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(BASE + "    notifications: {secret: ${HOOK}, application_id: 555}\n")
    channel = load_config(path, env={"S": "x", "HOOK": "h"}).channel("loja")
    assert channel.notifications == NotificationSettings(secret="h", application_id="555")
    path.write_text(BASE + "    notifications: {secret: literal}\n")
    with pytest.raises(ConfigError, match="notifications.secret"):
        load_config(path, env={"S": "x"})
