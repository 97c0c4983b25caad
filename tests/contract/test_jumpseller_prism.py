"""Every call the Jumpseller connector makes, validated by Stoplight Prism against Jumpseller's own OpenAPI file.

`prism proxy --errors` with ../shared/contracts/jumpseller/openapi.json stands in front of the
Jumpseller simulator, and the connector is pointed at Prism. With `--errors` a request that breaks
the spec is answered 422 and a response that breaks it 500, so a violation also fails the pull
that made the call; the Prism log is read afterwards to count the validated requests and to list
every violation.

The spec's server is `https://api.jumpseller.com/v1`; Prism's proxy matches a request by its path
(`/products.json`) and forwards it to the upstream with the same path, so the simulator serves the
API at its root and the connector's `base_url` is Prism's root.

What the spec cannot pass as the store answers: the store replaces every empty value with null
(info.description, "Plain JSON only"), but no schema of the spec declares a field nullable, so a
null `sku` or `barcode` would be a response violation. Here the simulator leaves null fields out
(`nulls=omit`); the connector reads both forms (see the unit tests, which feed it nulls).

One repair, in a copy made for Prism: the spec's one dangling reference (`#/components/schemas/Error`,
L8276, a 400 of `GET /fulfillments/{id}/label.json`, an operation syncagent does not use) stops Prism
from loading the file at all, so the copy defines `Error` as the spec's other error objects are
(`{"message": string}`, like NotFound and BadParams). Nothing else is changed.

The spec names no `operationId` on any operation; operations are reported as METHOD path with the
spec's summary. Skipped only when `npx` is missing; Prism is installed by `npm ci` (`make
contract-test`, or the VTEX contract test's `ensure_prism` on a fresh clone).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from syncagent.connectors.jumpseller import JumpsellerConnector
from syncagent.http import HttpSettings
from syncagent.model import BadRecord, Order, Price, Product, StockLevel
from syncagent.simulators import build
from syncagent.simulators.common import RunningServer, serve_in_thread
from syncagent.simulators.jumpseller import DEMO_APP_ID, DEMO_APP_SECRET
from tests.contract.test_vtex_prism import (
    ROOT,
    Prism,
    ensure_prism,
    free_port,
    parse_log,
    stop,
    wait_listening,
)

SPEC = Path(os.environ.get("JUMPSELLER_SPEC", ROOT.parent / "shared" / "contracts" / "jumpseller" / "openapi.json"))
LOGIN, TOKEN = "contract-login", "contract-token-0123456789abcdef01"

pytestmark = pytest.mark.skipif(shutil.which("npx") is None, reason="npx is not installed (Node.js)")


def loadable_spec(tmp: Path) -> Path:
    """The spec as published, with its one dangling $ref defined (see the module docstring)."""
    spec = json.loads(SPEC.read_text(encoding="utf-8"))
    schemas = spec["components"]["schemas"]
    assert "Error" not in schemas, "the spec defines Error now: drop this repair"
    schemas["Error"] = {"type": "object", "properties": {"message": {"type": "string"}}}
    path = tmp / "jumpseller-openapi.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    return path


def start_prism(upstream: str, tmp: Path) -> Prism:
    port = free_port()
    log_path = tmp / "prism-jumpseller.log"
    cmd = ["npx", "--no-install", "prism", "proxy", str(loadable_spec(tmp)), upstream, "--errors", "--host", "127.0.0.1",
           "--port", str(port)]
    with log_path.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,  # noqa: S603
                                start_new_session=True)
    return Prism("jumpseller", port, proc, log_path)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[RunningServer, Prism]]:
    if not SPEC.is_file():
        pytest.skip(f"Jumpseller's spec is not on this machine ({SPEC}); set JUMPSELLER_SPEC")
    ensure_prism()
    sim = serve_in_thread(build("jumpseller", str(tmp_path / "js.db"), products=7, seed=11, orders="6",
                                login=LOGIN, auth_token=TOKEN, nulls="omit"))
    prism = start_prism(sim.url, tmp_path)
    try:
        wait_listening([prism])
        yield sim, prism
    finally:
        stop(prism.proc)
        sim.stop()


def summaries() -> dict[str, str]:
    spec = json.loads(SPEC.read_text())
    return {f"{method.upper()} {path}": str(op.get("operationId") or op.get("summary") or "")
            for path, item in spec["paths"].items() for method, op in item.items() if isinstance(op, dict)}


def test_every_jumpseller_call_is_valid_against_the_official_spec(stack: tuple[RunningServer, Prism]) -> None:
    sim, prism = stack
    conn = JumpsellerConnector("js-contract", prism.url, {"login": LOGIN, "auth_token": TOKEN, "customer_code": "C1"},
                               HttpSettings(max_attempts=2, read_timeout=60), sleep=lambda s: None, page_size=3)
    try:
        conn.check()  # GET /products/count.json
        kinds = {"products": Product, "prices": Price, "stock": StockLevel, "orders": Order}
        for entity, kind in kinds.items():  # GET /products.json (page, limit) x3, GET /orders.json
            found = [r for page in conn.pull(entity, None) for r in page.records]
            assert found and all(isinstance(r, kind) for r in found), [r for r in found if isinstance(r, BadRecord)]
    finally:
        conn.close()
    # an installed App: the same calls with a Bearer token (the token endpoint is on the accounts host, not
    # in this spec, so it is called on the simulator directly)
    code = requests.post(sim.url + "/_admin/oauth/code", timeout=10).json()["code"]
    tokens = requests.post(sim.url + "/oauth/token", timeout=10, data={
        "grant_type": "authorization_code", "client_id": DEMO_APP_ID, "client_secret": DEMO_APP_SECRET,
        "code": code}).json()
    app = JumpsellerConnector("js-app", prism.url, {"client_id": DEMO_APP_ID, "client_secret": DEMO_APP_SECRET,
                                                    "refresh_token": tokens["refresh_token"],
                                                    "token_url": sim.url + "/oauth/token"},
                              HttpSettings(max_attempts=2, read_timeout=60), sleep=lambda s: None)
    try:
        app.check()
        assert all(isinstance(r, Order) for page in app.pull("orders", None) for r in page.records)
    finally:
        app.close()
    forwarded, errors, warnings = parse_log(prism)
    calls = [r for r in requests.get(sim.url + "/_admin/requests", timeout=10).json()["items"]
             if not r["path"].startswith(("/_admin", "/oauth/"))]
    operations = Counter(f"{r['method']} {r['path']}" for r in calls)
    named = summaries()
    print(f"\nPrism validated {forwarded} requests against Jumpseller's openapi.json "
          f"({len(errors)} errors, {len(warnings)} warnings); the spec gives no operationId, so METHOD path (summary):")
    for operation, count in sorted(operations.items()):
        print(f"  {count:3d}  {operation}  ({named.get(operation, '?')})")
    assert not errors and not warnings, "\n".join(errors + warnings)
    assert forwarded == len(calls) > 0 and all(r["status"] == 200 for r in calls)
    assert set(operations) == {"GET /products/count.json", "GET /products.json", "GET /orders.json"}
    assert all(re.fullmatch(r"GET /[a-z/]+\.json", op) for op in operations)
