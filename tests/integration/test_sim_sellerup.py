"""The Seller Up simulator over real HTTP: the contract's rules, strictness, seed data and speed.

The agent's tests trust this simulator to behave like the tablet app; these tests are why they may.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from syncagent.model import valid_document
from syncagent.simulators import seeddata
from syncagent.simulators.common import RunningServer, serve_in_thread
from syncagent.simulators.sellerup import build, valid_nfe_key

KEY = seeddata.DEMO_API_KEY
SEED = 1
PRODUCTS = 50


@dataclass
class Client:
    server: RunningServer
    http: requests.Session = field(default_factory=requests.Session)

    def call(self, method: str, path: str, *, key: str | None = KEY, **kw: Any) -> requests.Response:
        headers = kw.pop("headers", {}) | ({"X-Api-Key": key} if key is not None else {})
        return self.http.request(method, self.server.url + path, headers=headers, timeout=10, **kw)

    def ok(self, method: str, path: str, **kw: Any) -> Any:
        resp = self.call(method, path, **kw)
        assert resp.status_code < 300, f"{method} {path}: {resp.status_code} {resp.text[:300]}"
        return resp.json() if resp.content else None

    def admin(self, method: str, path: str, **kw: Any) -> Any:
        return self.ok(method, path, key=None, **kw)


def start(db: Path, **options: str) -> Client:
    return Client(serve_in_thread(build(str(db), products=PRODUCTS, seed=SEED, **options)))


STOPPING: list[threading.Thread] = []


@pytest.fixture(scope="module", autouse=True)
def _stopped_at_the_end() -> Iterator[None]:
    yield
    for thread in STOPPING:
        thread.join()


def stop_later(client: Client) -> None:
    thread = threading.Thread(target=client.server.stop, daemon=True)
    thread.start()
    STOPPING.append(thread)


@pytest.fixture
def su(tmp_path: Path) -> Iterator[Client]:
    """A fresh simulator per test; stopped in the background (a shutdown waits up to 0.5 s for its poll)."""
    client = start(tmp_path / "s.db")
    yield client
    stop_later(client)


def error_of(resp: requests.Response) -> dict[str, Any]:
    body = resp.json()
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"]), body
    return body["error"]  # type: ignore[no-any-return]


def nfe_key(first43: str) -> str:
    """A 44-digit NF-e key with its mod-11 check digit, computed independently of the simulator."""
    weights = [2, 3, 4, 5, 6, 7, 8, 9] * 6
    total = sum(int(d) * w for d, w in zip(reversed(first43), weights, strict=False))
    remainder = total % 11
    return first43 + str(0 if remainder in (0, 1) else 11 - remainder)


INVOICE_KEY = nfe_key("3526010123456700019055001000012345" + "123456789")


def product(i: int, **changes: Any) -> dict[str, Any]:
    p = seeddata.product(SEED, i)
    return {"key": p["code"], "name": p["description"], "barcode": p["barcode"], "brand": p["brand"],
            "group_key": p["group_code"], "unit": p["unit"], "active": p["active"]} | changes


def statuses(resp: requests.Response) -> list[str]:
    assert resp.status_code == 200, resp.text
    return [r["status"] for r in resp.json()["results"]]


# -- auth --------------------------------------------------------------------------------------------
def test_missing_or_wrong_key_is_401_invalid_key_and_admin_needs_none(su: Client) -> None:
    for key in (None, "wrong-key", ""):
        resp = su.call("GET", "/v1/orders", key=key)
        assert resp.status_code == 401 and error_of(resp)["code"] == "invalid_key"
    assert su.call("PUT", "/v1/products", key="nope", json={"items": []}).status_code == 401
    assert su.call("GET", "/v1/orders").status_code == 200
    assert su.admin("GET", "/_admin/health")["system"] == "sellerup"


def test_revoked_key_answers_key_revoked_on_every_call_until_restored(su: Client) -> None:
    order_id = su.admin("GET", "/_admin/orders")["items"][0]["id"]
    su.admin("POST", "/_admin/keys/revoke")
    calls = [("GET", "/v1/orders", {}), ("GET", "/v1/tablet-customers", {}), ("GET", "/v1/products", {}),
             ("PUT", "/v1/stock", {"json": {"items": [{"key": "P000001", "available": 1}]}}),
             ("POST", f"/v1/orders/{order_id}/acknowledge", {"json": {"backoffice_number": "1"}}),
             ("POST", f"/v1/orders/{order_id}/events", {"json": {"type": "invoiced"}}),
             ("POST", "/v1/tablet-customers/x/link", {"json": {"code": "C000001"}}), ("GET", "/v1/no-such-thing", {})]
    for method, path, kw in calls:
        for key in (KEY, "other", None):
            resp = su.call(method, path, key=key, **kw)
            assert resp.status_code == 401 and error_of(resp)["code"] == "key_revoked", (method, path, key)
    assert su.admin("GET", "/_admin/collections/stock")["items"] == []  # nothing was applied
    su.admin("POST", "/_admin/keys/restore")
    assert su.call("GET", "/v1/orders").status_code == 200


def test_admin_config_changes_the_accepted_key(su: Client) -> None:
    su.admin("POST", "/_admin/config", json={"api_key": "new-key"})
    assert error_of(su.call("GET", "/v1/orders"))["code"] == "invalid_key"
    assert su.call("GET", "/v1/orders", key="new-key").status_code == 200
    assert su.call("POST", "/_admin/config", json={"api_key": 5}).status_code == 400


# -- batch upserts -----------------------------------------------------------------------------------
def test_batch_upsert_created_then_unchanged_then_updated(su: Client) -> None:
    batch = [product(1), product(2), product(3)]
    assert statuses(su.call("PUT", "/v1/products", json={"items": batch})) == ["created"] * 3
    assert statuses(su.call("PUT", "/v1/products", json={"items": batch})) == ["unchanged"] * 3
    changed = [product(1), product(2, name="Camiseta renomeada"), product(3)]
    resp = su.call("PUT", "/v1/products", json={"items": changed})
    assert statuses(resp) == ["unchanged", "updated", "unchanged"]
    assert [r["key"] for r in resp.json()["results"]] == ["P000001", "P000002", "P000003"]
    held = {p["key"]: p for p in su.admin("GET", "/_admin/collections/products")["items"]}
    assert held["P000002"]["name"] == "Camiseta renomeada" and len(held) == 3


def test_a_document_as_people_type_it_is_taken_as_the_contract_allows(su: Client) -> None:
    """The contract's Customer.document is a plain string: a formatted valid CPF/CNPJ is not refused."""
    batch = [{"key": "C000002", "document": "529.982.247-25", "name": "Ana"},
             {"key": "C000003", "document": "11.222.333/0001-81", "name": "Loja"}]
    assert statuses(su.call("PUT", "/v1/customers", json={"items": batch})) == ["created"] * 2


BAD_ITEMS = [
    ("products", {"key": "P000002", "name": "Boné", "active": True, "barcode": "7891234567890"}, "barcode",
     "invalid_barcode"),
    ("products", {"key": "P000002", "name": "Boné", "active": True, "barcode": "036000291452"}, "barcode",
     "invalid_barcode"),  # a valid UPC-A is not an EAN-8/13/14
    ("products", {"key": "P000002", "name": "Boné", "active": "true"}, "active", "invalid_type"),
    ("products", {"key": "P000002", "active": True}, "name", "required"),
    ("products", {"key": "P000002", "name": "  ", "active": True}, "name", "empty"),
    ("products", {"key": "P000002", "name": "Boné", "active": True, "unit": None}, "unit", "invalid_type"),
    ("products", {"key": 7, "name": "Boné", "active": True}, "key", "invalid_type"),
    ("prices", {"key": "P000002", "price": "12.5"}, "price", "invalid_money"),
    ("prices", {"key": "P000002", "price": 12.50}, "price", "invalid_type"),
    ("prices", {"key": "P000002", "price": "12.50", "promo_price": "9,90"}, "promo_price", "invalid_money"),
    ("prices", {"key": "P000002", "price": "12.50", "promo_until": "2026-01-05"}, "promo_until",
     "invalid_date_time"),
    ("stock", {"key": "P000002", "available": -1}, "available", "out_of_range"),
    ("stock", {"key": "P000002", "available": "3"}, "available", "invalid_type"),
    ("stock", {"key": "P000002", "available": True}, "available", "invalid_type"),
    ("stock", {"key": "P000002", "available": 2.5}, "available", "invalid_type"),
    ("customers", {"key": "C000002", "document": "12345678900", "name": "Ana"}, "document", "invalid_document"),
    ("customers", {"key": "C000002", "document": "529.982.247-24", "name": "Ana"}, "document",
     "invalid_document"),
    ("customers", {"key": "C000002", "document": "52998224725", "name": "Ana", "email": 3}, "email",
     "invalid_type"),
    ("payment-methods", {"key": "X", "name": "Pix", "type": "pix", "active": True, "max_installments": "3"},
     "max_installments", "invalid_type"),
    ("groups", {"key": "G", "name": "Grupo", "active": 1}, "active", "invalid_type"),
    ("sellers", {"key": "V009", "name": "Ana", "active": True, "store": 1}, "store", "invalid_type"),
]
GOOD_ITEMS = {
    "products": lambda k: product(int(k[1:])), "prices": lambda k: {"key": k, "price": "10.00", "promo_price": None},
    "stock": lambda k: {"key": k, "available": 0},
    "customers": lambda k: {"key": k, "document": "11222333000181", "name": "Loja Ltda", "email": None},
    "payment-methods": lambda k: {"key": k, "name": "Pix", "type": "pix", "active": True, "max_installments": 1},
    "groups": lambda k: {"key": k, "name": "Grupo", "active": True, "parent_key": None},
    "sellers": lambda k: {"key": k, "name": "Ana", "active": True, "store": "L01"},
}


@pytest.mark.parametrize(("collection", "bad", "field_name", "code"), BAD_ITEMS)
def test_one_invalid_item_is_rejected_with_its_field_and_the_rest_applies(
        su: Client, collection: str, bad: dict[str, Any], field_name: str, code: str) -> None:
    batch = [GOOD_ITEMS[collection]("P000001"), bad, GOOD_ITEMS[collection]("P000003")]
    resp = su.call("PUT", f"/v1/{collection}", json={"items": batch})
    assert statuses(resp) == ["created", "rejected", "created"]
    rejected = resp.json()["results"][1]
    assert rejected["error"]["field"] == field_name and rejected["error"]["code"] == code, rejected
    assert rejected["error"]["message"]
    held = su.admin("GET", f"/_admin/collections/{collection}")["items"]
    assert sorted(i["key"] for i in held) == ["P000001", "P000003"]


def test_non_object_item_is_rejected_alone(su: Client) -> None:
    resp = su.call("PUT", "/v1/stock", json={"items": ["P000001", {"key": "P000002", "available": 4}]})
    assert statuses(resp) == ["rejected", "created"]
    assert resp.json()["results"][0]["error"]["code"] == "invalid_item"


def test_more_than_500_items_is_413_and_nothing_applies(su: Client) -> None:
    items = [{"key": f"P{i:06d}", "available": 1} for i in range(1, 502)]
    resp = su.call("PUT", "/v1/stock", json={"items": items})
    assert resp.status_code == 413 and error_of(resp)["code"] == "batch_too_large"
    assert su.admin("GET", "/_admin/collections/stock")["items"] == []
    assert statuses(su.call("PUT", "/v1/stock", json={"items": items[:500]})) == ["created"] * 500


def test_bad_bodies_and_unknown_collections(su: Client) -> None:
    resp = su.call("PUT", "/v1/products", data="{not json", headers={"Content-Type": "application/json"})
    assert resp.status_code == 400 and error_of(resp)["code"] == "invalid_json"
    for body in ({"products": []}, [product(1)], {"items": {"key": "P000001"}}):
        resp = su.call("PUT", "/v1/products", json=body)
        assert resp.status_code == 400 and error_of(resp)["code"] == "validation_error", body
    assert su.call("PUT", "/v1/widgets", json={"items": []}).status_code == 404
    assert su.call("GET", "/v1/widgets").status_code == 404
    assert su.call("PUT", "/v1/orders", json={"items": []}).status_code == 404


def test_second_item_with_the_same_key_is_rejected_as_duplicate(su: Client) -> None:
    batch = [{"key": "P000001", "available": 5}, {"key": "P000001", "available": 9}, {"key": "P000002", "available": 1}]
    resp = su.call("PUT", "/v1/stock", json={"items": batch})
    assert statuses(resp) == ["created", "rejected", "created"]
    assert resp.json()["results"][1]["error"] == {"code": "duplicate_key", "field": "key",
                                                   "message": resp.json()["results"][1]["error"]["message"]}
    held = {s["key"]: s["available"] for s in su.admin("GET", "/_admin/collections/stock")["items"]}
    assert held == {"P000001": 5, "P000002": 1}


def test_collection_is_paged_by_key(su: Client) -> None:
    items = [{"key": f"P{i:06d}", "available": i} for i in range(25, 0, -1)]
    assert set(statuses(su.call("PUT", "/v1/stock", json={"items": items}))) == {"created"}
    keys: list[str] = []
    after: str | None = ""
    pages = 0
    while after is not None:
        page = su.ok("GET", "/v1/stock", params={"after_key": after, "limit": 10})
        keys += [i["key"] for i in page["items"]]
        after = page["next_after_key"]
        pages += 1
    assert keys == sorted(i["key"] for i in items) and pages == 3
    assert su.ok("GET", "/v1/stock", params={"limit": 25})["next_after_key"] is None
    assert su.ok("GET", "/v1/stock", params={"after_key": "P000025"}) == {"items": [], "next_after_key": None}
    for limit in ("0", "1001", "abc", "-1"):
        resp = su.call("GET", "/v1/stock", params={"limit": limit})
        assert resp.status_code == 400 and error_of(resp)["code"] == "validation_error", limit


def test_500_item_batch_upsert_repeated_is_unchanged(su: Client) -> None:
    # how fast the simulator takes a batch is measured by `make bench` (its server-CPU column), not here:
    # a timed assertion would fail on a busy machine
    batch = {"items": [product(1 + i % PRODUCTS, key=f"P{i:06d}") for i in range(1, 501)]}
    for _ in range(3):
        resp = su.call("PUT", "/v1/products", json=batch)
        assert resp.status_code == 200
    assert statuses(resp) == ["unchanged"] * 500


# -- tablet customers --------------------------------------------------------------------------------
def test_tablet_customer_feed_by_seq_and_link_moves_it_to_the_end(su: Client) -> None:
    seen: list[dict[str, Any]] = []
    after = 0
    while True:
        page = su.ok("GET", "/v1/tablet-customers", params={"after": after, "limit": 10})["items"]
        seen += page
        if len(page) < 10:
            break
        after = page[-1]["seq"]
    assert len(seen) == 24 and len({c["id"] for c in seen}) == 24
    seqs = [c["seq"] for c in seen]
    assert seqs == sorted(seqs) and len(set(seqs)) == 24
    last = max(seqs)
    target = next(c for c in seen if not c.get("code"))
    assert su.call("POST", f"/v1/tablet-customers/{target['id']}/link", json={"code": "C000042"}).status_code == 204
    moved = su.ok("GET", "/v1/tablet-customers", params={"after": last})["items"]
    assert [c["id"] for c in moved] == [target["id"]]
    assert moved[0]["code"] == "C000042" and moved[0]["seq"] > last
    # linking again to the same code changes nothing, so the feed does not move
    assert su.call("POST", f"/v1/tablet-customers/{target['id']}/link", json={"code": "C000042"}).status_code == 204
    assert su.ok("GET", "/v1/tablet-customers", params={"after": moved[0]["seq"]})["items"] == []
    assert su.call("POST", "/v1/tablet-customers/nope/link", json={"code": "C1"}).status_code == 404
    assert su.call("POST", f"/v1/tablet-customers/{target['id']}/link", json={}).status_code == 422
    assert su.call("POST", f"/v1/tablet-customers/{target['id']}/link", data="code").status_code == 400
    assert su.call("GET", "/v1/tablet-customers", params={"limit": 501}).status_code == 400
    assert su.call("GET", "/v1/tablet-customers", params={"after": "x"}).status_code == 400


def test_admin_tablet_customers_create_and_edit_come_in_the_feed(su: Client) -> None:
    last = su.admin("GET", "/_admin/tablet-customers")["items"][-1]["seq"]
    created = su.admin("POST", "/_admin/tablet-customers", json={"name": "Cliente Novo"})
    assert created["name"] == "Cliente Novo" and valid_document(created["document"]) and created["code"] is None
    su.admin("PATCH", f"/_admin/tablet-customers/{created['id']}", json={"phone": "+5511999990000"})
    feed = su.ok("GET", "/v1/tablet-customers", params={"after": last})["items"]
    assert [c["id"] for c in feed] == [created["id"]] and feed[0]["phone"] == "+5511999990000"


# -- orders ------------------------------------------------------------------------------------------
def test_orders_feed_by_seq_with_status_filter(su: Client) -> None:
    everything = su.ok("GET", "/v1/orders", params={"limit": 500})["items"]
    assert len(everything) == 30
    by_status = Counter(o["status"] for o in everything)
    for status in ("draft", "approved", "cancelled"):
        only = su.ok("GET", "/v1/orders", params={"status": status, "limit": 500})["items"]
        assert len(only) == by_status[status] and {o["status"] for o in only} <= {status}
    approved = [o for o in everything if o["status"] == "approved"]
    page = su.ok("GET", "/v1/orders", params={"status": "approved", "after": approved[2]["seq"], "limit": 2})
    assert [o["id"] for o in page["items"]] == [o["id"] for o in approved[3:5]]
    resp = su.call("GET", "/v1/orders", params={"status": "open"})
    assert resp.status_code == 400 and error_of(resp)["field"] == "status"


def test_acknowledging_twice_is_harmless_and_keeps_the_first_number(su: Client) -> None:
    order = su.ok("GET", "/v1/orders", params={"status": "approved", "limit": 1})["items"][0]
    path = f"/v1/orders/{order['id']}/acknowledge"
    assert su.call("POST", path, json={"backoffice_number": "100001"}).status_code == 204
    moved = su.ok("GET", "/v1/orders", params={"after": order["seq"]})["items"]
    acked = next(o for o in moved if o["id"] == order["id"])
    assert acked["exported"] is True and acked["seq"] > order["seq"]
    assert su.call("POST", path, json={"backoffice_number": "100002"}).status_code == 204
    assert su.ok("GET", "/v1/orders", params={"after": acked["seq"]})["items"] == []  # the repeat changed nothing
    held = su.admin("GET", f"/_admin/orders/{order['id']}")
    assert held["backoffice_number"] == "100001" and held["exported"] is True
    assert [a["backoffice_number"] for a in held["acks"]] == ["100001", "100002"]
    assert held["acks"][0]["received"] <= held["acks"][1]["received"]
    assert len(su.admin("GET", "/_admin/acks")["items"]) == 2
    assert su.call("POST", "/v1/orders/nope/acknowledge", json={"backoffice_number": "1"}).status_code == 404
    assert su.call("POST", path, json={"number": "1"}).status_code == 422


def post_event(su: Client, order_id: str, kind: str, **extra: Any) -> requests.Response:
    body: dict[str, Any] = {"type": kind, "occurred_at": "2026-01-06T10:00:00Z"}
    if kind == "invoiced":
        body |= {"invoice_key": INVOICE_KEY, "invoice_number": "12345"}
    if kind == "shipped":
        body |= {"carrier": "Correios", "tracking_code": "BR123456789BR"}
    return su.call("POST", f"/v1/orders/{order_id}/events", json=body | extra)


def approved_id(su: Client, index: int = 0) -> str:
    return str(su.ok("GET", "/v1/orders", params={"status": "approved"})["items"][index]["id"])


def test_events_in_order_are_recorded_with_the_time_received(su: Client) -> None:
    order_id = approved_id(su)
    for kind in ("invoiced", "shipped", "delivered"):
        assert post_event(su, order_id, kind).status_code == 204, kind
    held = su.admin("GET", f"/_admin/orders/{order_id}")
    assert [e["type"] for e in held["events"]] == ["invoiced", "shipped", "delivered"]
    assert held["events"][0]["invoice_key"] == INVOICE_KEY and all(e["received"] > 0 for e in held["events"])
    resp = post_event(su, order_id, "cancelled")
    assert resp.status_code == 409 and error_of(resp)["code"] == "out_of_order"


def test_events_out_of_order_or_repeated_are_409(su: Client) -> None:
    order_id = approved_id(su)
    for kind in ("shipped", "delivered"):
        resp = post_event(su, order_id, kind)
        assert resp.status_code == 409 and error_of(resp)["code"] == "out_of_order", kind
    assert post_event(su, order_id, "invoiced").status_code == 204
    resp = post_event(su, order_id, "invoiced")
    assert resp.status_code == 409 and error_of(resp)["code"] == "already_recorded"
    resp = post_event(su, order_id, "delivered")
    assert resp.status_code == 409 and error_of(resp)["code"] == "out_of_order"
    # cancelled is allowed before delivery, and nothing follows it
    assert post_event(su, order_id, "cancelled").status_code == 204
    assert error_of(post_event(su, order_id, "shipped"))["code"] == "out_of_order"


def test_an_event_again_with_other_data_is_a_correction_the_same_again_is_409(su: Client) -> None:
    order_id = approved_id(su)
    for kind in ("invoiced", "shipped"):
        assert post_event(su, order_id, kind).status_code == 204
    # after shipping, the NF-e is re-issued and the tracking code fixed: each recorded as a correction
    fixed_key = nfe_key("3526010123456700019055001000099999" + "123456789")
    assert post_event(su, order_id, "invoiced", invoice_key=fixed_key, invoice_number="99999").status_code == 204
    assert post_event(su, order_id, "shipped", tracking_code="QB123456785BR").status_code == 204
    resp = post_event(su, order_id, "shipped", tracking_code="QB123456785BR")
    assert resp.status_code == 409 and error_of(resp)["code"] == "already_recorded"
    resp = post_event(su, order_id, "invoiced", invoice_key="1" * 44, invoice_number="99999")
    assert resp.status_code == 422 and error_of(resp)["code"] == "invalid_invoice_key"  # still checked
    held = su.admin("GET", f"/_admin/orders/{order_id}")["events"]
    assert [(e["type"], e.get("invoice_number") or e.get("tracking_code")) for e in held] == [
        ("invoiced", "12345"), ("shipped", "BR123456789BR"), ("invoiced", "99999"), ("shipped", "QB123456785BR")]


def test_event_bodies_are_checked_and_only_approved_orders_take_events(su: Client) -> None:
    order_id = approved_id(su)
    wrong_digit = INVOICE_KEY[:43] + str((int(INVOICE_KEY[43]) + 1) % 10)
    for extra in ({"invoice_key": INVOICE_KEY[:43]}, {"invoice_key": wrong_digit}, {"invoice_key": None},
                  {"invoice_key": INVOICE_KEY + "0"}, {"invoice_number": None}):
        resp = post_event(su, order_id, "invoiced", **extra)
        assert resp.status_code == 422, extra
        assert error_of(resp)["field"] == next(iter(extra)), extra
    assert valid_nfe_key(INVOICE_KEY) and not valid_nfe_key(wrong_digit)
    assert post_event(su, order_id, "invoiced").status_code == 204
    assert post_event(su, order_id, "shipped", carrier=None).status_code == 422
    assert post_event(su, order_id, "shipped", tracking_code="").status_code == 422
    assert post_event(su, order_id, "returned").status_code == 422
    assert post_event(su, order_id, "shipped", occurred_at="yesterday").status_code == 422
    assert su.call("POST", f"/v1/orders/{order_id}/events", data="{").status_code == 400
    draft = su.ok("GET", "/v1/orders", params={"status": "draft"})["items"][0]["id"]
    resp = post_event(su, draft, "invoiced")
    assert resp.status_code == 409 and error_of(resp)["code"] == "not_approved"
    assert post_event(su, "no-such-order", "invoiced").status_code == 404


def test_admin_orders_create_generate_approve_cancel_patch(su: Client) -> None:
    last = su.ok("GET", "/v1/orders", params={"limit": 500})["items"][-1]["seq"]
    created = su.admin("POST", "/_admin/orders", json={
        "items": [{"key": "P000004", "quantity": 2, "unit_price": "10.00", "discount": "1.00"}]})
    assert created["status"] == "approved" and created["total"] == "19.00"
    assert sum(Decimal(p["amount"]) for p in created["payments"]) == Decimal("19.00")
    draft = su.admin("POST", "/_admin/orders", json={"status": "draft"})
    su.admin("POST", f"/_admin/orders/{draft['id']}/approve")
    su.admin("POST", f"/_admin/orders/{created['id']}/cancel")
    items = [{"key": "NAO-EXISTE", "quantity": 1, "unit_price": "5.00"}]
    su.admin("PATCH", f"/_admin/orders/{draft['id']}", json={"items": items})
    feed = su.ok("GET", "/v1/orders", params={"after": last})["items"]
    assert [o["id"] for o in feed] == [created["id"], draft["id"]]
    assert feed[0]["status"] == "cancelled" and feed[1]["status"] == "approved" and feed[1]["items"] == items
    assert su.call("POST", "/_admin/orders", json={"status": "open"}).status_code == 400
    assert su.call("POST", "/_admin/orders/nope/approve").status_code == 404

    generated = su.admin("POST", "/_admin/orders/generate", json={"count": 1000, "status": "approved"})
    assert generated["count"] == 1000 and len(set(generated["ids"])) == 1000
    orders = su.admin("GET", "/_admin/orders")["items"]
    assert len(orders) == 1032 and len({o["id"] for o in orders}) == 1032
    assert Counter(o["status"] for o in orders if o["id"] in set(generated["ids"])) == {"approved": 1000}


# -- seed data ---------------------------------------------------------------------------------------
def test_seeded_data_is_valid_and_consistent_with_the_back_office_seed(su: Client) -> None:
    bo_customers = seeddata.customer_count(PRODUCTS)
    documents = {seeddata.customer(SEED, i)["document"]: f"C{i:06d}" for i in range(1, bo_customers + 1)}
    customers = su.admin("GET", "/_admin/tablet-customers")["items"]
    assert len(customers) == 24
    for c in customers:
        assert uuid.UUID(c["id"]).version == 4 and valid_document(c["document"]) and c["name"]
        if c["code"] is not None:  # linked: to the back office customer holding the same document
            assert documents[c["document"]] == c["code"]
    linked = [c for c in customers if c["code"]]
    known = [c for c in customers if c["document"] in documents]
    assert len(known) == 8 and 6 <= len(linked) < len(known)  # about a third linked, some left to bind

    tablet_ids = {c["id"] for c in customers}
    methods = {code for code, *_ in seeddata.PAYMENT_METHODS}
    orders = su.admin("GET", "/_admin/orders")["items"]
    assert len(orders) == 30
    assert {o["status"] for o in orders} == {"approved", "draft", "cancelled"}
    assert Counter(o["status"] for o in orders)["approved"] >= 12
    for o in orders:
        assert uuid.UUID(o["id"]) and o["number"].startswith("T") and o["exported"] is False
        assert datetime.fromisoformat(o["created_at"].replace("Z", "+00:00"))
        assert o["store"] in seeddata.STORES and o["seller"] in {f"V{i:03d}" for i in range(1, 9)}
        assert 1 <= len(o["items"]) <= 4 and len({i["key"] for i in o["items"]}) == len(o["items"])
        total = Decimal("0.00")
        for item in o["items"]:
            index = int(item["key"][1:])
            assert 1 <= index <= PRODUCTS and seeddata.product(SEED, index)["active"], item
            assert item["unit_price"] == seeddata.price(SEED, index)["list_price"]
            assert item["quantity"] >= 1
            total += Decimal(item["unit_price"]) * item["quantity"] - Decimal(item["discount"])
        assert o["total"] == f"{total:.2f}"
        assert sum(Decimal(p["amount"]) for p in o["payments"]) == total
        assert all(p["method"] in methods and p["installments"] >= 1 for p in o["payments"])
        customer = o["customer"]
        if customer["code"] is not None:
            assert customer["tablet_customer_id"] is None and 1 <= int(customer["code"][1:]) <= bo_customers
        else:
            assert customer["tablet_customer_id"] in tablet_ids
    assert any(o["customer"]["tablet_customer_id"] for o in orders) and any(o["customer"]["code"] for o in orders)
    assert any(Decimal(i["discount"]) > 0 for o in orders for i in o["items"])


def test_same_seed_same_data_and_a_restart_does_not_reseed(su: Client, tmp_path: Path) -> None:
    twin = start(tmp_path / "twin.db")
    other = Client(serve_in_thread(build(str(tmp_path / "other.db"), products=PRODUCTS, seed=SEED + 1)))
    try:
        for path in ("/_admin/orders", "/_admin/tablet-customers"):
            assert su.admin("GET", path) == twin.admin("GET", path)
            assert su.admin("GET", path) != other.admin("GET", path)
    finally:
        stop_later(other)
    before = twin.admin("GET", "/_admin/orders")["items"]
    twin.admin("POST", "/_admin/keys/revoke")
    twin.server.stop()
    again = start(tmp_path / "twin.db", orders="5")
    try:
        assert again.admin("GET", "/_admin/orders")["items"] == before
        assert error_of(again.call("GET", "/v1/orders"))["code"] == "key_revoked"  # a revocation outlives restarts
        again.admin("POST", "/_admin/keys/restore")
        created = again.admin("POST", "/_admin/orders")
        assert created["seq"] > max(o["seq"] for o in before) and created["id"] not in {o["id"] for o in before}
    finally:
        stop_later(again)


def test_unknown_options_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown sellerup options"):
        build(str(tmp_path / "x.db"), products=5, seed=1, order="3")
    with pytest.raises(ValueError, match="orders"):
        build(str(tmp_path / "y.db"), products=5, seed=1, orders="many")
