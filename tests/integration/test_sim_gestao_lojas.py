"""The back office simulator over real HTTP: the contract's rules, its strictness, seed data, determinism.

The agent's integration, crash and benchmark tests trust this simulator to behave like the real
back office; these tests are why they may.
"""

from __future__ import annotations

import base64
import json
import re
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from syncagent.model import valid_document, valid_ean
from syncagent.simulators import gestao_lojas, seeddata
from syncagent.simulators.common import RunningServer, serve_in_thread
from syncagent.simulators.gestao_lojas import CARRIERS, ENCODE, build, catalogue_chunk, customer_chunk
from syncagent.simulators.sellerup import valid_nfe_key

SEED = 3
PRODUCTS = 40
CLIENT = {"client_id": seeddata.DEMO_CLIENT_ID, "client_secret": seeddata.DEMO_CLIENT_SECRET}
CONTRACT = Path(__file__).resolve().parents[3] / "shared" / "contracts" / "gestao-lojas" / "openapi.yaml"
MONEY = re.compile(r"-?[0-9]+\.[0-9]{2}")
UTC_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?Z")
ACTIVE = [i for i in range(1, PRODUCTS) if seeddata.product(SEED, i)["active"]]
SKU = seeddata.product_code(ACTIVE[0])
RETIRED = seeddata.product_code(PRODUCTS)  # deactivated by the tests that need an inactive product


@dataclass
class Client:
    server: RunningServer
    http: requests.Session = field(default_factory=requests.Session)
    token: str | None = None

    def get_token(self, **form: str) -> requests.Response:
        data = {"grant_type": "client_credentials", **CLIENT, **form}
        return self.http.post(self.server.url + "/oauth/token", data=data, timeout=10)

    def call(self, method: str, path: str, *, auth: bool = True, **kw: Any) -> requests.Response:
        headers = kw.pop("headers", {})
        if auth:
            if self.token is None:
                resp = self.get_token()
                assert resp.status_code == 200, resp.text
                self.token = resp.json()["access_token"]
            headers.setdefault("Authorization", f"Bearer {self.token}")
        return self.http.request(method, self.server.url + path, headers=headers, timeout=10, **kw)

    def ok(self, method: str, path: str, **kw: Any) -> Any:
        resp = self.call(method, path, **kw)
        assert resp.status_code < 300, f"{method} {path}: {resp.status_code} {resp.text[:400]}"
        return resp.json() if resp.content else None

    def admin(self, method: str, path: str, **kw: Any) -> Any:
        return self.ok(method, path, auth=False, **kw)

    def pages(self, path: str, cursor: str | None = None, **params: Any) -> list[dict[str, Any]]:
        """Every page of a feed from `cursor` to the page whose next_cursor is null."""
        pages = []
        while True:
            query = {**params, **({"cursor": cursor} if cursor else {})}
            body = self.ok("GET", path, params=query)
            assert set(body) == {"items", "next_cursor"}, body.keys()
            pages.append(body)
            cursor = body["next_cursor"]
            if cursor is None:
                return pages
            assert len(pages) < 1000, "the feed never ends"


def items(pages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [item for p in pages for item in p["items"]]


def start(db: Path, *, products: int = PRODUCTS, seed: int = SEED, **options: str) -> Client:
    return Client(serve_in_thread(build(str(db), products=products, seed=seed, **options)))


STOPPING: list[threading.Thread] = []


@pytest.fixture(scope="module", autouse=True)
def _stopped_at_the_end() -> Iterator[None]:
    yield
    for thread in STOPPING:
        thread.join()


def stop_later(client: Client) -> None:
    """A shutdown waits up to 0.5 s for the server's poll: done in the background, joined at the end."""
    thread = threading.Thread(target=client.server.stop, daemon=True)
    thread.start()
    STOPPING.append(thread)


@pytest.fixture
def bo(tmp_path: Path) -> Iterator[Client]:
    client = start(tmp_path / "bo.db")
    yield client
    stop_later(client)


def error_of(resp: requests.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The contract's error envelope, with the status (and code) expected."""
    assert resp.status_code == status, f"{resp.status_code} {resp.text[:400]}"
    body = resp.json()
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"]), body
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]  # type: ignore[no-any-return]


def fields_of(error: dict[str, Any]) -> set[str]:
    assert error["details"] and all(set(d) == {"field", "message"} for d in error["details"]), error
    return {d["field"] for d in error["details"]}


def order(external_id: str = "SU-1", *, channel: str = "loja-centro", warehouse: str | None = "CD01",
          lines: tuple[tuple[int, int], ...] = ((ACTIVE[0], 2), (ACTIVE[1], 1)), **changes: Any) -> dict[str, Any]:
    """A valid OrderIn over seeded records; the total adds up."""
    body_items = [{"sku": seeddata.product_code(i), "quantity": q, "unit_price": "10.00", "discount": "1.00"}
                  for i, q in lines]
    total = sum(Decimal("10.00") * q - Decimal("1.00") for _, q in lines) + Decimal("5.00")
    body = {"external_id": external_id, "channel": channel, "customer_code": "C000001", "seller_code": "V001",
            "store_code": "L01", "warehouse": warehouse, "created_at": "2026-01-05T09:00:00Z", "items": body_items,
            "payments": [{"method_code": "PIX", "amount": f"{total:.2f}", "installments": 1}],
            "shipping": "5.00", "total": f"{total:.2f}", "notes": None}
    return body | changes


@lru_cache(maxsize=1)
def contract_schemas() -> dict[str, Any]:
    return yaml.safe_load(CONTRACT.read_text(encoding="utf-8"))["components"]["schemas"]  # type: ignore[no-any-return]


def contract_fields(schema: str) -> set[str]:
    """The property names the contract gives a schema: items must carry exactly these."""
    if not CONTRACT.exists():
        pytest.skip(f"contract not found at {CONTRACT}")
    return set(contract_schemas()[schema]["properties"])


# -- auth ------------------------------------------------------------------------------------------
def test_token_required_expired_by_admin_and_by_ttl(bo: Client) -> None:
    resp = bo.call("GET", "/products", auth=False)
    error_of(resp, 401, "invalid_token")
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    error_of(bo.call("GET", "/products", headers={"Authorization": "Bearer made-up"}), 401, "invalid_token")
    error_of(bo.get_token(client_secret="wrong"), 401, "invalid_client")
    error_of(bo.get_token(grant_type="password"), 400, "unsupported_grant_type")

    token = bo.get_token()
    assert token.status_code == 200 and token.json()["token_type"] == "Bearer"
    assert token.json()["expires_in"] == 3600 and token.json()["access_token"]
    assert len(bo.ok("GET", "/warehouses")["items"]) == len(seeddata.WAREHOUSES)

    bo.admin("POST", "/_admin/tokens/expire")
    error_of(bo.call("GET", "/warehouses"), 401, "invalid_token")
    bo.token = None  # the client fetches a new token once, and the call works again
    assert bo.call("GET", "/warehouses").status_code == 200

    bo.admin("POST", "/_admin/config", json={"token_ttl": 1})
    bo.token = None
    assert bo.call("GET", "/warehouses").status_code == 200
    time.sleep(1.1)
    assert "expired" in error_of(bo.call("GET", "/warehouses"), 401, "invalid_token")["message"]

    bo.admin("POST", "/_admin/config", json={"client_secret": "rotated", "token_ttl": 3600})
    error_of(bo.get_token(), 401, "invalid_client")
    assert bo.get_token(client_secret="rotated").status_code == 200
    basic = base64.b64encode(f"{seeddata.DEMO_CLIENT_ID}:rotated".encode()).decode()
    resp = bo.http.post(bo.server.url + "/oauth/token", data={"grant_type": "client_credentials"},
                        headers={"Authorization": f"Basic {basic}"}, timeout=10)
    assert resp.status_code == 200, resp.text
    error_of(bo.call("POST", "/_admin/config", auth=False, json={"token_ttl": 0}), 400, "validation_error")


# -- feeds -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("feed,key", [("products", ("code",)), ("prices", ("sku",)), ("customers", ("code",)),
                                      ("stock", ("sku", "warehouse"))])
def test_paging_a_feed_returns_every_record_exactly_once(bo: Client, feed: str, key: tuple[str, ...]) -> None:
    pages = bo.pages(f"/{feed}", limit=7)
    total = bo.admin("GET", "/_admin/counts")[feed]
    seen = Counter(tuple(i[k] for k in key) for i in items(pages))
    assert len(seen) == total and set(seen.values()) == {1}
    assert len(pages) > 2 and all(isinstance(p["next_cursor"], str) for p in pages[:-1])
    assert pages[-1]["next_cursor"] is None and 0 < len(pages[-1]["items"]) <= 7
    whole = bo.ok("GET", f"/{feed}", params={"limit": 1000})
    assert whole["next_cursor"] is None and len(whole["items"]) == total
    assert total % 4 == 0  # a page that ends exactly at the end says so: no empty page after it
    assert [len(p["items"]) for p in bo.pages(f"/{feed}", limit=total // 4)] == [total // 4] * 4


def test_stock_feed_filtered_by_warehouses(bo: Client) -> None:
    rows = items(bo.pages("/stock", limit=9, warehouse=["CD01", "LJ02", "CD01"]))
    assert Counter(r["warehouse"] for r in rows) == {"CD01": PRODUCTS, "LJ02": PRODUCTS}
    assert len({(r["sku"], r["warehouse"]) for r in rows}) == len(rows)
    assert [r["sku"] for r in rows if r["warehouse"] == "LJ02"] == [seeddata.product_code(i)
                                                                     for i in range(1, PRODUCTS + 1)]
    error_of(bo.call("GET", "/stock", params={"warehouse": "NOPE"}), 400, "validation_error")
    assert bo.ok("GET", "/prices", params={"price_list": "atacado"}) == {"items": [], "next_cursor": None}


def test_a_record_changed_while_paging_comes_again_after_the_cursor(bo: Client) -> None:
    first = bo.ok("GET", "/products", params={"limit": 10})
    assert "P000003" in [p["code"] for p in first["items"]]
    bo.admin("PATCH", "/_admin/products/P000003", json={"description": "Camiseta renomeada"})
    bo.admin("PUT", "/_admin/stock/P000001/LJ01", json={"available": 3, "reserved": 1})
    rest = items(bo.pages("/products", first["next_cursor"], limit=10))
    assert len(rest) == PRODUCTS - 10 + 1
    assert rest[-1]["code"] == "P000003" and rest[-1]["description"] == "Camiseta renomeada"
    assert rest[-1]["updated_at"] > first["items"][2]["updated_at"]
    last = bo.ok("GET", "/stock", params={"limit": 1000})["items"][-1]
    assert (last["sku"], last["warehouse"], last["available"], last["reserved"]) == ("P000001", "LJ01", 3, 1)


@pytest.mark.parametrize("params", [
    {"cursor": "not a cursor!"}, {"cursor": base64.urlsafe_b64encode(b'{"x": 1}').decode()}, {"cursor": "e30"},
    {"limit": "0"}, {"limit": "1001"}, {"limit": "abc"}, {"limit": ""}, {"limit": "1.5"}, {"limit": "-3"},
])
def test_bad_cursor_or_limit_is_400(bo: Client, params: dict[str, str]) -> None:
    error_of(bo.call("GET", "/products", params=params), 400)


def test_a_cursor_belongs_to_its_feed(bo: Client) -> None:
    cursor = bo.ok("GET", "/products", params={"limit": 2})["next_cursor"]
    assert isinstance(cursor, str) and "P0000" not in cursor  # opaque
    error_of(bo.call("GET", "/stock", params={"cursor": cursor}), 400, "invalid_cursor")
    assert len(bo.ok("GET", "/products", params={"cursor": cursor})["items"]) == min(PRODUCTS - 2, 200)


# -- orders ----------------------------------------------------------------------------------------
def test_post_orders_twice_creates_two_orders_found_by_external_id(bo: Client) -> None:
    first = bo.call("POST", "/orders", json=order("SU-7"))
    second = bo.call("POST", "/orders", json=order("SU-7"))
    assert first.status_code == second.status_code == 201, second.text
    a, b = first.json(), second.json()
    assert isinstance(a["number"], str) and int(b["number"]) == int(a["number"]) + 1
    assert a["status"] == "open" and a["total"] == order()["total"] and a["items"][0]["discount"] == "1.00"
    assert set(a) == contract_fields("OrderIn") | {"number", "status"}
    found = bo.ok("GET", "/orders", params={"external_id": "SU-7", "channel": "loja-centro"})["items"]
    assert [o["number"] for o in found] == [a["number"], b["number"]]
    assert bo.ok("GET", "/orders", params={"external_id": "SU-7", "channel": "other"}) == {"items": []}
    error_of(bo.call("GET", "/orders", params={"external_id": "SU-7"}), 400)
    admin = bo.admin("GET", "/_admin/orders")["items"]
    assert [o["created_seq"] for o in admin] == [1, 2] and admin[0]["items"] == a["items"]


@pytest.mark.parametrize("changes,field_name", [
    ({"items": [{"sku": "NOPE", "quantity": 1, "unit_price": "10.00"}], "total": "10.00"}, "items[0].sku"),
    ({"total": "999.99"}, "total"),
    ({"items": [{"sku": RETIRED, "quantity": 1, "unit_price": "1.00"}], "total": "6.00"}, "items[0].sku"),
    ({"items": [{"sku": SKU, "quantity": 0, "unit_price": "10.00"}]}, "items[0].quantity"),
    ({"items": [{"sku": SKU, "quantity": 1.0, "unit_price": "10.00"}]}, "items[0].quantity"),
    ({"items": [{"sku": SKU, "quantity": True, "unit_price": "10.00"}]}, "items[0].quantity"),
    ({"items": [{"sku": SKU, "quantity": 1, "unit_price": "10.5"}]}, "items[0].unit_price"),
    ({"items": [{"sku": SKU, "quantity": 1, "unit_price": 10.5}]}, "items[0].unit_price"),
    ({"items": [{"sku": SKU, "quantity": 1, "unit_price": "10.00", "discount": "11.00"}], "total": "4.00"},
     "items[0].discount"),
    ({"items": []}, "items"),
    ({"items": ["P000001"]}, "items[0]"),
    ({"customer_code": "C999999"}, "customer_code"),
    ({"seller_code": "V999"}, "seller_code"),
    ({"warehouse": "XX99"}, "warehouse"),
    ({"payments": [{"method_code": "BITCOIN", "amount": "24.00"}]}, "payments[0].method_code"),
    ({"payments": [{"method_code": "CC", "amount": "24.00", "installments": 99}]}, "payments[0].installments"),
    ({"shipping": "5"}, "shipping"),
    ({"created_at": "yesterday"}, "created_at"),
    ({"surprise": 1}, "surprise"),
    ({"external_id": ""}, "external_id"),
    ({"total": None}, "total"),
])
def test_invalid_orders_are_422_with_details_and_change_nothing(bo: Client, changes: dict[str, Any],
                                                                 field_name: str) -> None:
    bo.admin("PATCH", f"/_admin/products/{RETIRED}", json={"active": False})
    stock = bo.ok("GET", "/stock", params={"limit": 1000})
    error = error_of(bo.call("POST", "/orders", json=order() | changes), 422, "validation_error")
    assert field_name in fields_of(error), error
    assert bo.admin("GET", "/_admin/orders")["items"] == []
    assert bo.ok("GET", "/stock", params={"limit": 1000}) == stock


def test_order_bodies_that_are_not_json_or_not_objects(bo: Client) -> None:
    error_of(bo.call("POST", "/orders", data=b"{not json", headers={"Content-Type": "application/json"}),
             400, "invalid_json")
    error_of(bo.call("POST", "/orders", json=[order()]), 422, "validation_error")
    error = error_of(bo.call("POST", "/orders", json={}), 422, "validation_error")
    assert {"external_id", "channel", "customer_code", "items", "payments", "total"} <= fields_of(error)


def test_an_order_debits_its_warehouse_and_a_cancel_gives_it_back(bo: Client) -> None:
    sku, other = seeddata.product_code(ACTIVE[0]), seeddata.product_code(ACTIVE[1])
    bo.admin("PUT", f"/_admin/stock/{sku}/CD01", json={"available": 10, "reserved": 0})
    before = items(bo.pages("/stock", limit=1000))
    held = {(r["sku"], r["warehouse"]): r["available"] for r in before}
    cursor = bo.ok("GET", "/stock", params={"limit": len(before) - 1})["next_cursor"]
    created = bo.ok("POST", "/orders", json=order(lines=((ACTIVE[0], 3), (ACTIVE[0], 2), (ACTIVE[1], 1))))
    moved = {(r["sku"], r["warehouse"]): r["available"] for r in items(bo.pages("/stock", cursor, limit=50))}
    assert moved == {(sku, "CD01"): 5, (other, "CD01"): held[(other, "CD01")] - 1}  # they came again, debited
    bo.ok("POST", f"/orders/{created['number']}/cancel", json={"reason": "desistência"})
    after = bo.ok("GET", "/stock", params={"limit": 1000})
    assert {(r["sku"], r["warehouse"]): r["available"] for r in after["items"]} == held
    bo.ok("POST", "/orders", json=order("SU-2", warehouse=None))  # no warehouse: nothing to debit
    assert bo.ok("GET", "/stock", params={"limit": 1000}) == after


def test_cancel_twice_is_harmless_and_409_once_invoiced(bo: Client) -> None:
    number = bo.ok("POST", "/orders", json=order("SU-3"))["number"]
    first = bo.call("POST", f"/orders/{number}/cancel", json={"reason": "cliente desistiu"})
    again = bo.call("POST", f"/orders/{number}/cancel")
    assert first.status_code == again.status_code == 200
    assert first.json()["status"] == again.json()["status"] == "cancelled"
    events = bo.ok("GET", "/order-events")["items"]
    assert [(e["type"], e["order_number"], e["external_id"]) for e in events] == [("cancelled", number, "SU-3")]

    other = bo.ok("POST", "/orders", json=order("SU-4"))["number"]
    bo.admin("POST", f"/_admin/orders/{other}/events", json={"type": "invoiced"})
    error_of(bo.call("POST", f"/orders/{other}/cancel", json={}), 409)
    error_of(bo.call("POST", "/orders/424242/cancel", json={}), 404, "not_found")
    error_of(bo.call("POST", f"/orders/{other}/cancel", json={"reason": 5}), 422, "validation_error")


def test_events_only_in_the_order_invoiced_shipped_delivered(bo: Client) -> None:
    created = bo.ok("POST", "/orders", json=order("SU-5"))
    number = created["number"]
    url = f"/_admin/orders/{number}/events"
    error_of(bo.call("POST", url, auth=False, json={"type": "shipped"}), 409, "out_of_order")
    error_of(bo.call("POST", url, auth=False, json={"type": "delivered"}), 409, "out_of_order")
    error_of(bo.call("POST", url, auth=False, json={"type": "lost"}), 400)
    invoiced = bo.admin("POST", url, json={"type": "invoiced"})
    invoice = invoiced["invoice"]
    assert valid_nfe_key(invoice["key"]) and invoice["series"] == "1" and invoice["total"] == created["total"]
    assert UTC_TIME.fullmatch(invoice["issued_at"]) and invoice["number"] and invoice["xml_url"]
    error_of(bo.call("POST", url, auth=False, json={"type": "invoiced"}), 409, "out_of_order")
    error_of(bo.call("POST", url, auth=False, json={"type": "cancelled"}), 409, "out_of_order")
    shipped = bo.admin("POST", url, json={"type": "shipped", "shipment": {"tracking_url": None}})
    assert shipped["shipment"]["carrier"] in CARRIERS and shipped["shipment"]["tracking_code"]
    assert shipped["shipment"]["tracking_url"] is None
    delivered = bo.admin("POST", url, json={"type": "delivered", "delivered_at": "2026-02-01T12:00:00Z"})
    assert delivered["delivered_at"] == "2026-02-01T12:00:00Z"
    error_of(bo.call("POST", url, auth=False, json={"type": "delivered"}), 409, "out_of_order")

    feed = items(bo.pages("/order-events", limit=2))
    assert [e["type"] for e in feed] == ["invoiced", "shipped", "delivered"]
    assert len({e["id"] for e in feed}) == 3 and all(isinstance(e["id"], str) for e in feed)
    assert all(set(e) == contract_fields("OrderEvent") for e in feed)
    assert all((e["order_number"], e["external_id"], e["channel"]) == (number, "SU-5", "loja-centro") for e in feed)
    assert bo.admin("GET", f"/_admin/orders/{number}")["status"] == "delivered"
    assert bo.ok("GET", "/orders", params={"external_id": "SU-5", "channel": "loja-centro"})["items"][0][
        "status"] == "delivered"
    error_of(bo.call("POST", "/_admin/orders/999/events", auth=False, json={"type": "invoiced"}), 404)


# -- customers and products ------------------------------------------------------------------------
def test_customers_created_with_a_valid_unique_document(bo: Client) -> None:
    existing = seeddata.customer(SEED, 5)
    duplicate = bo.call("POST", "/customers", json={"document": existing["document"], "name": "Outra Pessoa"})
    assert error_of(duplicate, 409)["existing_code"] == existing["code"]

    wrong = existing["document"][:-1] + str((int(existing["document"][-1]) + 1) % 10)
    assert "document" in fields_of(error_of(bo.call("POST", "/customers", json={"document": wrong, "name": "X"}), 422))
    for bad in ({"document": "123.456.789-09", "name": "X"}, {"document": "529982247251", "name": "X"},
                {"document": "52998224725"}, {"document": "52998224725", "name": "X", "address": {"zip": "1"}}):
        error_of(bo.call("POST", "/customers", json=bad), 422, "validation_error")

    new = {"document": "52998224725", "name": "Ana Souza", "email": "ana@exemplo.com.br", "phone": None,
           "address": {"street": "Rua A", "number": "1", "city": "Recife", "state": "PE", "zip": "50000000"}}
    created = bo.call("POST", "/customers", json=new)
    assert created.status_code == 201, created.text
    customer = created.json()
    assert customer["code"] not in (None, "") and customer["address"]["country"] == "BR"
    assert set(customer) == contract_fields("Customer")
    assert bo.ok("GET", "/customers", params={"document": "52998224725", "limit": 1})["items"] == [customer]
    assert bo.ok("GET", "/customers", params={"limit": 1000})["items"][-1] == customer
    error_of(bo.call("GET", "/customers", params={"document": "529.982.247-25"}), 400)

    moved = bo.call("PUT", f"/customers/{customer['code']}", json=new | {"document": existing["document"]})
    assert error_of(moved, 409)["existing_code"] == existing["code"]
    renamed = bo.ok("PUT", f"/customers/{customer['code']}", json=new | {"name": "Ana S. Souza"})
    assert renamed["name"] == "Ana S. Souza" and renamed["code"] == customer["code"]
    error_of(bo.call("PUT", "/customers/C999999", json=new), 404)


def test_products_created_and_updated_strictly(bo: Client) -> None:
    seeded = bo.ok("GET", "/products/P000001")
    error_of(bo.call("POST", "/products", json=seeded), 409)
    new = {"code": "NOVO-1", "description": "Produto novo", "barcode": "7891234567895", "group_code": "ACES",
           "active": True}
    created = bo.call("POST", "/products", json=new)
    assert created.status_code == 201, created.text
    assert created.json()["unit"] == "UN" and set(created.json()) == contract_fields("Product")
    assert bo.ok("GET", "/products", params={"limit": 1000})["items"][-1]["code"] == "NOVO-1"
    bad = new | {"code": "X" * 31, "barcode": "7891234567890", "ncm": "123", "group_code": "NOPE"}
    del bad["active"]
    assert {"code", "barcode", "ncm", "active"} <= fields_of(error_of(bo.call("POST", "/products", json=bad), 422))
    error_of(bo.call("POST", "/products", json=new | {"code": "N2", "group_code": "NOPE"}), 422)
    updated = bo.ok("PUT", "/products/NOVO-1", json=new | {"active": False})
    assert updated["active"] is False and bo.ok("GET", "/products/NOVO-1") == updated
    error_of(bo.call("PUT", "/products/NOVO-1", json=new | {"code": "OTHER"}), 422)
    error_of(bo.call("PUT", "/products/NOPE", json=new), 404)
    error_of(bo.call("GET", "/products/NOPE"), 404, "not_found")


def test_admin_bodies_are_checked_for_json_types(bo: Client) -> None:
    error_of(bo.call("PATCH", "/_admin/products/P000001", auth=False, data=b"{oops"), 400, "invalid_json")
    error_of(bo.call("PATCH", "/_admin/products/P000001", auth=False, json={"active": "no"}), 400)
    error_of(bo.call("PATCH", "/_admin/products/P000001", auth=False, json={"colour": "red"}), 400)
    error_of(bo.call("PATCH", "/_admin/products/NOPE", auth=False, json={"active": False}), 404)
    error_of(bo.call("PUT", "/_admin/stock/P000001/CD01", auth=False, json={"available": "5"}), 400)
    error_of(bo.call("PUT", "/_admin/stock/P000001/XX", auth=False, json={"available": 5}), 404)
    error_of(bo.call("PATCH", "/_admin/prices/P000001", auth=False, json={"list_price": 10}), 400)
    # legacy junk of the right JSON type is accepted: the agent must cope with it
    assert bo.admin("PATCH", "/_admin/products/P000002", json={"description": ""})["description"] == ""
    price = bo.admin("PATCH", "/_admin/prices/P000002", json={"list_price": "99.90", "promo_price": None})
    assert price["list_price"] == "99.90" and bo.ok("GET", "/prices", params={"limit": 1000})["items"][-1] == price
    assert bo.admin("PATCH", "/_admin/payment-methods/PIX", json={"active": False})["active"] is False
    assert bo.ok("GET", "/payment-methods")["items"][-1]["code"] == "PIX"
    group = bo.call("PATCH", "/_admin/groups/NOVO", auth=False, json={"description": "Novo", "active": True})
    assert group.status_code == 201 and bo.ok("GET", "/groups")["items"][-1]["code"] == "NOVO"
    error_of(bo.call("PATCH", "/_admin/sellers/V999", auth=False, json={"active": False}), 404)
    customer = bo.call("POST", "/_admin/customers", auth=False, json={"document": "11144477735", "name": "Balcão"})
    assert customer.status_code == 201
    error_of(bo.call("POST", "/_admin/customers", auth=False, json={"document": "11144477735", "name": "B"}), 409)
    counts = bo.admin("GET", "/_admin/counts")
    assert counts["customers"] == seeddata.customer_count(PRODUCTS) + 1 and counts["groups"] == len(seeddata.GROUPS) + 1


# -- seed ------------------------------------------------------------------------------------------
def test_seeded_data_is_valid_and_matches_the_shared_seed(bo: Client) -> None:
    products = items(bo.pages("/products", limit=1000))
    assert [p["code"] for p in products] == [seeddata.product_code(i) for i in range(1, PRODUCTS + 1)]
    assert all(set(p) == contract_fields("Product") and valid_ean(p["barcode"]) for p in products)
    assert {k: v for k, v in products[0].items() if k != "updated_at"} == seeddata.product(SEED, 1)
    prices = items(bo.pages("/prices", limit=1000))
    assert all(MONEY.fullmatch(p["list_price"]) and (p["promo_price"] is None or MONEY.fullmatch(p["promo_price"]))
               for p in prices)
    assert all(set(p) == contract_fields("Price") for p in prices)
    stock = items(bo.pages("/stock", limit=1000))
    assert len(stock) == 4 * PRODUCTS and all(type(s["available"]) is int and type(s["reserved"]) is int
                                              for s in stock)
    customers = items(bo.pages("/customers", limit=1000))
    assert len(customers) == seeddata.customer_count(PRODUCTS)
    assert all(valid_document(c["document"]) for c in customers)
    assert len({c["document"] for c in customers}) == len(customers)
    sellers = bo.ok("GET", "/sellers")["items"]
    assert [s["code"] for s in sellers] == [f"V{i:03d}" for i in range(1, seeddata.seller_count() + 1)]
    assert [m["code"] for m in bo.ok("GET", "/payment-methods")["items"]] == [m[0] for m in seeddata.PAYMENT_METHODS]
    assert all(set(m) == contract_fields("PaymentMethod") for m in bo.ok("GET", "/payment-methods")["items"])
    assert [g["code"] for g in bo.ok("GET", "/groups")["items"]] == [g[0] for g in seeddata.GROUPS]
    warehouses = bo.ok("GET", "/warehouses")
    assert set(warehouses) == {"items"} and all(set(w) == {"code", "name", "store_code"} for w in warehouses["items"])
    assert [w["code"] for w in warehouses["items"]] == sorted(w[0] for w in seeddata.WAREHOUSES)
    for record in [*products, *prices, *stock, *customers, *sellers]:
        assert UTC_TIME.fullmatch(record["updated_at"]), record


def test_same_seed_same_data_and_a_restart_does_not_reseed(bo: Client, tmp_path: Path) -> None:
    twin = start(tmp_path / "twin.db")
    other = start(tmp_path / "other.db", seed=SEED + 1)
    try:
        def first_page(client: Client, feed: str) -> list[dict[str, Any]]:
            return [{k: v for k, v in i.items() if k != "updated_at"}
                    for i in client.ok("GET", f"/{feed}", params={"limit": 25})["items"]]

        for feed in ("products", "customers", "stock", "sellers"):
            assert first_page(bo, feed) == first_page(twin, feed)
        assert first_page(bo, "products") != first_page(other, "products")
    finally:
        stop_later(twin)
        stop_later(other)

    bo.admin("PATCH", "/_admin/products/P000004", json={"description": "Mudou antes de reiniciar"})
    number = bo.ok("POST", "/orders", json=order("SU-9"))["number"]
    counts = bo.admin("GET", "/_admin/counts")
    bo.server.stop()
    again = start(tmp_path / "bo.db", products=PRODUCTS * 2)  # a different size does not reseed either
    bo.server = again.server  # the fixture stops this one
    assert again.admin("GET", "/_admin/counts") == counts
    assert again.ok("GET", "/products/P000004")["description"] == "Mudou antes de reiniciar"
    assert again.ok("POST", "/orders", json=order("SU-10"))["number"] == str(int(number) + 1)


def test_templated_seed_rows_are_the_shared_records_encoded() -> None:
    """The seed writes its JSON from templates; it must be what encoding seeddata's records makes."""
    hour, stamp = datetime(2026, 3, 1, 10, tzinfo=UTC), "2026-03-01T10:00:00.000Z"
    for start_at in (1, 999_001):
        codes, products, prices, stock = (t.split("\n") for t in catalogue_chunk(SEED, start_at, start_at + 1000,
                                                                                  stamp, hour))
        for k, i in enumerate(range(start_at, start_at + 1000)):
            assert codes[k] == seeddata.product_code(i)
            assert products[k] == ENCODE(seeddata.product(SEED, i) | {"updated_at": stamp})
            assert prices[k] == ENCODE(seeddata.price(SEED, i, hour) | {"updated_at": stamp})
            assert stock[4 * k:4 * k + 4] == [ENCODE(seeddata.stock(SEED, i, w) | {"updated_at": stamp})
                                              for w, _name, _store in seeddata.WAREHOUSES]
    codes, documents, texts = (t.split("\n") for t in customer_chunk(SEED, 1, 701, stamp))
    assert texts == [ENCODE(seeddata.customer(SEED, i) | {"updated_at": stamp}) for i in range(1, 701)]
    assert [json.loads(t)["document"] for t in texts] == documents


def test_seed_data_keeps_its_shape_and_odds() -> None:
    count = 20_000
    products = [seeddata.product(SEED, i) for i in range(1, count + 1)]
    prices = [seeddata.price(SEED, i, seeddata.EPOCH) for i in range(1, count + 1)]
    assert all(valid_ean(p["barcode"]) and p["barcode"] == seeddata.ean13(i) for i, p in enumerate(products, 1))
    assert 0.02 < sum(not p["active"] for p in products) / count < 0.04
    assert all(0.1 <= float(p["weight_kg"]) <= 2.5 and 2 <= int(p["height_cm"]) <= 40 for p in products)
    assert {p["group_code"] for p in products} == {"VEST-MASC", "VEST-FEM", "CALC", "CALC-ESP", "ACES"}
    now = seeddata.iso(seeddata.EPOCH)
    running = [p for p in prices if p["promo_start"] is not None and p["promo_start"] < now < p["promo_end"]]
    later = [p for p in prices if p["promo_start"] is not None and p["promo_start"] > now]
    assert 0.13 < len(running) / count < 0.17 and 0.04 < len(later) / count < 0.06
    assert 0.06 < sum(bool(p["scheduled"]) for p in prices) / count < 0.10
    assert all(Decimal("19.90") <= Decimal(p["list_price"]) <= Decimal("599.90") for p in prices)
    levels = [seeddata.stock(SEED, i, w) for i in range(1, 2001) for w, _name, _store in seeddata.WAREHOUSES]
    assert max(s["available"] for s in levels if s["warehouse"] == "CD01") > 100
    assert all(0 <= s["reserved"] <= min(s["available"], 5) for s in levels)
    assert all(s["available"] <= 25 for s in levels if s["warehouse"] != "CD01")
    customers = [seeddata.customer(SEED, i) for i in range(1, 2001)]
    assert all(valid_document(c["document"]) and len(c["document"]) == (14 if i % 7 == 0 else 11)
               for i, c in enumerate(customers, 1))
    assert seeddata.product(SEED, 7) == seeddata.product(SEED, 7) != seeddata.product(SEED + 1, 7)


def rows_of(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every seeded row, the write time left out (two seeds never share it)."""
    with closing(sqlite3.connect(db)) as conn:
        return {table: [tuple(re.sub(r'"updated_at":"[^"]*"', "", str(v)) for v in row)
                        for row in conn.execute(f"SELECT * FROM {table} ORDER BY seq")]  # noqa: S608 - our names
                for table in ("products", "prices", "stock", "customers")}


def test_a_seed_worker_process_makes_the_same_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    products = gestao_lojas.CHUNK + 100  # two catalogue chunks and a customer chunk
    monkeypatch.setattr(gestao_lojas, "SEED_WORKER", False)
    build(str(tmp_path / "here.db"), products=products, seed=SEED).db.close()
    monkeypatch.setattr(gestao_lojas, "SEED_WORKER", True)
    monkeypatch.setattr(gestao_lojas, "PARALLEL_FROM", 1)
    app = build(str(tmp_path / "worker.db"), products=products, seed=SEED)
    assert app.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # the seed's rollback journal is gone
    app.db.close()
    here, worker = rows_of(tmp_path / "here.db"), rows_of(tmp_path / "worker.db")
    assert len(worker["stock"]) == 4 * products and len(worker["customers"]) == seeddata.customer_count(products)
    assert here == worker


def test_a_failed_seed_worker_fails_the_seed_and_leaves_nothing(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gestao_lojas, "SEED_WORKER", True)
    monkeypatch.setattr(gestao_lojas, "PARALLEL_FROM", 1)
    monkeypatch.setattr(gestao_lojas, "WORKER", "import sys; sys.exit(3)")
    with pytest.raises(RuntimeError, match="seed worker ended early"):
        build(str(tmp_path / "x.db"), products=10, seed=SEED)
    monkeypatch.undo()
    app = build(str(tmp_path / "x.db"), products=10, seed=SEED)  # rolled back, so seeded now
    assert app.db.execute("SELECT count(*) FROM products").fetchone()[0] == 10
    app.db.close()


def test_unknown_or_bad_options_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown"):
        build(str(tmp_path / "x.db"), products=1, seed=1, api_key="x")
    with pytest.raises(ValueError, match="token_ttl"):
        build(str(tmp_path / "y.db"), products=1, seed=1, token_ttl="soon")
