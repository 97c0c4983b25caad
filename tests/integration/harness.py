"""Integration harness: both simulators on 127.0.0.1 (real HTTP), a config file, agents on it."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from syncagent.agent import Agent
from syncagent.config import load_config
from syncagent.simulators import build
from syncagent.simulators.common import RunningServer, serve_in_thread

ROOT = Path(__file__).resolve().parents[2]
# Canary secrets: the simulators accept only these, the config reads them from the environment,
# and every integration test checks they never show up in output, logs or the journal.
CANARY_SECRET = "canary-secret-" + secrets.token_hex(8)
CANARY_KEY = "canary-key-" + secrets.token_hex(8)
CANARY_ENV = {"GL_CLIENT_ID": "syncagent-demo", "GL_CLIENT_SECRET": CANARY_SECRET, "SELLERUP_KEY": CANARY_KEY}


@dataclass
class Sim:
    server: RunningServer
    http: requests.Session = field(default_factory=requests.Session)

    @property
    def url(self) -> str:
        return self.server.url

    def admin(self, method: str, path: str, **kw: Any) -> Any:
        resp = self.http.request(method, self.url + path, timeout=30, **kw)
        assert resp.status_code < 400, f"{method} {path}: {resp.status_code} {resp.text[:300]}"
        return resp.json() if resp.content else None

    def requests_log(self, after: int = 0) -> list[dict[str, Any]]:
        """Requests the agent made (the tests' own /_admin calls left out)."""
        items = self.admin("GET", f"/_admin/requests?after={after}")["items"]
        return [r for r in items if not r["path"].startswith("/_admin")]

    def last_request_id(self) -> int:
        log = self.requests_log()
        return log[-1]["id"] if log else 0

    def writes(self, after: int = 0) -> list[dict[str, Any]]:
        """Requests that change data (not admin, not the token endpoint)."""
        return [r for r in self.requests_log(after)
                if r["method"] in ("POST", "PUT", "PATCH", "DELETE") and r["path"] != "/oauth/token"]


@dataclass
class Sims:
    bo: Sim
    su: Sim
    su2: Sim | None = None


def start(system: str, db: Path, **options: Any) -> Sim:
    credentials = {"gestao-lojas": {"client_secret": CANARY_SECRET}, "sellerup": {"api_key": CANARY_KEY}}
    opts = {**credentials.get(system, {}), **{k: str(v) for k, v in options.items()}}
    products = int(opts.pop("products", "60"))
    seed = int(opts.pop("seed", "7"))
    return Sim(serve_in_thread(build(system, str(db), products=products, seed=seed, **opts)))


@pytest.fixture
def sims(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> Iterator[Sims]:
    for key, value in CANARY_ENV.items():
        monkeypatch.setenv(key, value)
    bo = start("gestao-lojas", tmp_path / "bo.db")
    su = start("sellerup", tmp_path / "su.db")
    yield Sims(bo, su)
    su.server.stop()
    bo.server.stop()
    assert_no_canary(tmp_path, capfd)


def assert_no_canary(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """No secret in anything the agent wrote: stdout, stderr, log files, the journal's bytes."""
    out, err = capfd.readouterr()
    places = {"stdout": out.encode(), "stderr": err.encode()}
    for path in tmp_path.rglob("*"):
        if path.is_file() and (path.name.startswith("journal") or path.suffix in (".log", ".yaml", ".json")):
            places[str(path)] = path.read_bytes()
    for name, data in places.items():
        for canary in (CANARY_SECRET, CANARY_KEY):
            assert canary.encode() not in data, f"a secret leaked into {name}"


CONFIG = """\
journal: {journal}
log: {{level: warning, format: text}}
backoffice:
  type: gestao-lojas
  base_url: {bo}
  client_id: ${{GL_CLIENT_ID}}
  client_secret: ${{GL_CLIENT_SECRET}}
  http: {{max_attempts: 3, connect_timeout: 2, read_timeout: 10}}
defaults:
  every: 1m
  batch_size: 200
channels:
{channels}
"""

CHANNEL = """\
  - name: {name}
    type: sellerup
    base_url: {url}
    api_key: ${{SELLERUP_KEY}}
    warehouses: [CD01, LJ01]
    order_warehouse: LJ01
    safety_stock: {safety}
    http: {{max_attempts: 3, connect_timeout: 2, read_timeout: 10}}
    flows:
{flows}
"""
ALL_FLOWS = ["orders", "order-events", "groups", "payment-methods", "sellers", "products", "prices", "stock",
             "customers"]


def write_config(tmp_path: Path, sims: Sims, *, flows: list[str] | None = None, safety: int = 0,
                 extra_channel: str = "") -> Path:
    flow_lines = "\n".join(
        f"      {f}: {{every: 1m{', direction: both' if f == 'customers' else ''}}}" for f in (flows or ALL_FLOWS)
    )
    channels = CHANNEL.format(name="loja-centro", url=sims.su.url, flows=flow_lines, safety=safety)
    if sims.su2 is not None:
        channels += CHANNEL.format(name="loja-norte", url=sims.su2.url, flows=flow_lines, safety=safety)
    channels += extra_channel
    path = tmp_path / "syncagent.yaml"
    path.write_text(CONFIG.format(journal=tmp_path / "journal.db", bo=sims.bo.url, channels=channels))
    return path


def run_once(config_path: Path) -> list[Any]:
    with Agent(load_config(config_path)) as agent:
        return agent.run_once()


def cli(config_path: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120,
        ) -> subprocess.CompletedProcess[str]:
    """Run the real command line in a child process (exit codes, locks, signals, crashes)."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "syncagent", "-c", str(config_path), *args],
        capture_output=True, text=True, env=full_env, timeout=timeout, cwd=ROOT,
    )
    sys.stdout.write(proc.stdout)  # echoed so the fixture's secret scan sees the child's output too
    sys.stderr.write(proc.stderr)
    return proc


def items_written(requests_log: list[dict[str, Any]], path: str) -> list[dict[str, Any]]:
    """Every item of the batch PUTs to `path` found in a request log."""
    found = []
    for r in requests_log:
        if r["method"] == "PUT" and r["path"] == path:
            found += json.loads(r["body"])["items"]
    return found
