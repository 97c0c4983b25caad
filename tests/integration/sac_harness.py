"""What the tickets and deliveries tests share: orders placed in the back office simulator, carrier simulators."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests

from tests.integration.harness import CANARY_SECRET, Sim, start

CORREIOS_CODE = "canary-correios-" + CANARY_SECRET[-8:]
JADLOG_TOKEN = "canary-jadlog-" + CANARY_SECRET[-8:]
CARRIER_ENV = {"CORREIOS_CODE": CORREIOS_CODE, "JADLOG_TOKEN": JADLOG_TOKEN}


def s10(serial: int, prefix: str = "AA") -> str:
    """A valid Correios object code for an 8-digit serial (UPU S10 check digit)."""
    body = f"{serial:08d}"
    r = sum(int(d) * w for d, w in zip(body, (8, 6, 4, 2, 3, 5, 9, 7), strict=True)) % 11
    return f"{prefix}{body}{5 if r == 0 else 0 if r == 1 else 11 - r}BR"


def bo_token(bo: Sim) -> dict[str, str]:
    resp = requests.post(bo.url + "/oauth/token", data={"grant_type": "client_credentials",
                                                        "client_id": "syncagent-demo", "client_secret": CANARY_SECRET},
                         timeout=10)
    resp.raise_for_status()
    return {"Authorization": "Bearer " + resp.json()["access_token"]}


def place_order(bo: Sim, channel: str, external_id: str) -> str:
    """An order of `channel` in the back office (as the orders flow would create it); its number."""
    auth = bo_token(bo)
    customer = bo.admin("GET", "/_admin/customers")["items"][0]["code"]
    products = requests.get(bo.url + "/products", params={"limit": 50}, headers=auth, timeout=10).json()["items"]
    sku = next(p["code"] for p in products if p["active"])
    method = requests.get(bo.url + "/payment-methods", headers=auth, timeout=10).json()["items"][0]["code"]
    order = {"external_id": external_id, "channel": channel, "customer_code": customer,
             "items": [{"sku": sku, "quantity": 1, "unit_price": "10.00"}],
             "payments": [{"method_code": method, "amount": "10.00", "installments": 1}], "total": "10.00"}
    resp = requests.post(bo.url + "/orders", json=order, headers=auth, timeout=10)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["number"])


def ship(bo: Sim, number: str, carrier: str, code: str) -> None:
    bo.admin("POST", f"/_admin/orders/{number}/events", json={"type": "invoiced"})
    bo.admin("POST", f"/_admin/orders/{number}/events", json={"type": "shipped", "shipment": {
        "carrier": carrier, "tracking_code": code}})


def start_carriers(tmp_path: Path) -> tuple[Sim, Sim]:
    correios = start("correios", tmp_path / "correios.db", access_code=CORREIOS_CODE)
    jadlog = start("jadlog", tmp_path / "jadlog.db", token=JADLOG_TOKEN)
    return correios, jadlog


def carriers_yaml(correios: Sim, jadlog: Sim, *, silent_after: str = "7d") -> str:
    return f"""\
carriers:
  - name: correios
    type: correios
    base_url: {correios.url}
    names: [Correios, SEDEX]
    user: syncagent-demo
    access_code: ${{CORREIOS_CODE}}
    silent_after: {silent_after}
    rate_limit: {{per_second: 50, burst: 10}}
    http: {{max_attempts: 2, connect_timeout: 2, read_timeout: 10}}
  - name: jadlog
    type: jadlog
    base_url: {jadlog.url}
    names: [Jadlog]
    token: ${{JADLOG_TOKEN}}
    returned_statuses: [DEVOLVIDO]
    http: {{max_attempts: 2, connect_timeout: 2, read_timeout: 10}}
"""


def deliveries(bo: Sim, number: str | None = None) -> list[dict[str, Any]]:
    items = bo.admin("GET", "/_admin/deliveries")["items"]
    return [i for i in items if number is None or i["order_number"] == number]


def agent_requests(sim: Sim) -> list[dict[str, Any]]:
    return [r for r in sim.requests_log() if not r["path"].startswith("/token")]
