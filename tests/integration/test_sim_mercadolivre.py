"""The Mercado Livre simulator is as strict as the reference (../shared/contracts/mercadolivre/API.md)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from syncagent.simulators import build
from syncagent.simulators.common import RunningServer, serve_in_thread
from syncagent.simulators.gestao_lojas import nfe_key

SECRET = "sim-ml-secret"
CLIENT = "1234567890123456"


class Ml:
    def __init__(self, server: RunningServer) -> None:
        self.server, self.url, self.http = server, server.url, requests.Session()
        self.token = self.refresh = ""

    def call(self, method: str, path: str, **kw: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}", **kw.pop("headers", {})}
        return self.http.request(method, self.url + path, headers=headers, timeout=10, **kw)

    def grant(self, **fields: str) -> requests.Response:
        return self.http.post(self.url + "/oauth/token", data={"client_id": CLIENT, "client_secret": SECRET,
                                                               **fields}, timeout=10)


@pytest.fixture
def ml(tmp_path: Path) -> Iterator[Ml]:
    sim = Ml(serve_in_thread(build("mercadolivre", str(tmp_path / "ml.db"), products=10, seed=1,
                                   client_secret=SECRET, orders="2", shipping_mode="me2")))
    code = sim.http.post(sim.url + "/_admin/auth/code", timeout=10).json()["code"]
    answer = sim.grant(grant_type="authorization_code", code=code, redirect_uri="https://x.example/cb").json()
    sim.token = answer["access_token"]
    sim.refresh = answer["refresh_token"]
    yield sim
    sim.server.stop()


def test_a_refresh_token_works_once_and_the_answer_names_the_seller(ml: Ml) -> None:
    first = ml.grant(grant_type="refresh_token", refresh_token=ml.refresh)
    body = first.json()
    assert first.status_code == 200 and body["refresh_token"] != ml.refresh
    assert (body["expires_in"], body["user_id"], body["token_type"]) == (21600, 123456789, "Bearer")  # L25-26
    again = ml.grant(grant_type="refresh_token", refresh_token=ml.refresh)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"  # L27


def test_errors_and_throttling_come_in_mercado_livre_shape(ml: Ml) -> None:
    bad = ml.call("POST", "/items", json={"title": "x"})
    assert bad.status_code == 400 and set(bad.json()) == {"message", "error", "status", "cause"}  # L39
    ml.http.post(ml.url + "/_admin/throttle", json={"count": 1}, timeout=10)
    limited = ml.call("GET", "/users/me")
    assert limited.status_code == 429 and limited.json() == {"message": "Too Many Requests", "error":
                                                             "too_many_requests", "status": 429, "cause": []}  # L34
    ml.token = "APP_USR-nope"
    assert ml.call("GET", "/users/me").json()["error"] == "invalid_token"  # L29


def test_a_title_is_locked_after_the_first_sale_and_closed_is_final(ml: Ml) -> None:
    item = ml.call("POST", "/items", json={"title": "Camiseta", "category_id": "MLB31447", "price": 10,
                                           "currency_id": "BRL", "available_quantity": 1, "buying_mode": "buy_it_now",
                                           "listing_type_id": "gold_special", "condition": "new"}).json()
    ml.http.patch(f"{ml.url}/_admin/items/{item['id']}", json={"sold_quantity": 1}, timeout=10)
    locked = ml.call("PUT", f"/items/{item['id']}", json={"title": "Outra"})
    assert locked.status_code == 400 and locked.json()["cause"][0]["code"] == "item.title.not_modifiable"  # L48
    assert ml.call("PUT", f"/items/{item['id']}", json={"status": "closed"}).status_code == 200
    assert ml.call("PUT", f"/items/{item['id']}", json={"status": "active"}).json()["error"] == "item.closed"


def test_the_invoice_is_the_signed_production_xml_once_per_shipment_and_me2_takes_no_tracking(ml: Ml) -> None:
    order = ml.call("GET", "/orders/search", params={"seller": "123456789"}).json()["results"][0]
    shipment = order["shipping"]["id"]
    assert ml.call("GET", f"/shipments/{shipment}").status_code == 400  # L110: x-format-new
    key = nfe_key("sim")
    xml = ml.http.get(f"{ml.url}/_admin/nfe/{key}.xml", timeout=10).content
    upload = f"/shipments/{shipment}/invoice_data"
    xml_type = {"Content-Type": "application/xml"}
    homologation = ml.http.get(f"{ml.url}/_admin/nfe/{key}.xml?tpAmb=2", timeout=10).content
    assert ml.call("POST", upload, params={"siteId": "MLB"}, data=homologation, headers=xml_type).status_code == 400
    assert ml.call("POST", upload, params={"siteId": "MLB"}, data=xml, headers={"Content-Type": "text/plain"}
                   ).status_code == 400  # L125
    assert ml.call("POST", upload, params={"siteId": "MLB"}, data=xml, headers=xml_type).status_code == 201
    again = ml.call("POST", upload, params={"siteId": "MLB"}, data=xml, headers=xml_type)
    assert again.status_code == 400 and again.json()["error"] == "duplicated_fiscal_key"  # L131
    assert ml.call("GET", upload, params={"siteId": "MLB"}).json()["fiscal_key"] == key  # L128
    note = ml.call("POST", f"/shipments/{shipment}/seller_notifications", json={"status": "shipped",
                                                                               "tracking_number": "X"})
    assert note.status_code == 400  # L139-140: ME2 tracking is Mercado Livre's
