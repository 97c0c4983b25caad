"""Every flow end to end over real HTTP against both simulators."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from syncagent.agent import Agent
from syncagent.config import load_config
from syncagent.journal import Journal
from syncagent.simulators import seeddata
from tests.integration.harness import Sims, items_written, run_once, write_config


def approved_order_ids(sims: Sims) -> list[str]:
    return [o["id"] for o in sims.su.admin("GET", "/_admin/orders")["items"] if o["status"] == "approved"]


def test_full_sync_then_second_run_sends_zero_writes(sims: Sims, tmp_path: Path) -> None:
    config = write_config(tmp_path, sims)
    first = run_once(config)
    assert {r.flow for r in first} >= {"products", "prices", "stock", "orders", "customers"}
    assert all(r.status == "ok" for r in first), [(r.flow, r.status, r.error) for r in first]
    products = sims.su.admin("GET", "/_admin/collections/products")["items"]
    bo_products = sims.bo.admin("GET", "/_admin/counts")
    assert len(products) == bo_products["products"]

    su_mark, bo_mark = sims.su.last_request_id(), sims.bo.last_request_id()
    second = run_once(config)
    assert all(r.status == "ok" for r in second)
    assert sims.su.writes(su_mark) == []
    assert sims.bo.writes(bo_mark) == []
    assert sum(r.sent for r in second) == 0


def test_changes_send_exactly_the_changed_records(sims: Sims, tmp_path: Path) -> None:
    config = write_config(tmp_path, sims)
    run_once(config)
    su_mark = sims.su.last_request_id()
    for sku, price in (("P000002", "11.11"), ("P000003", "22.22"), ("P000004", "33.33")):
        sims.bo.admin("PATCH", f"/_admin/prices/{sku}", json={"list_price": price, "promo_price": None,
                                                              "promo_start": None, "promo_end": None, "scheduled": []})
    sims.bo.admin("PATCH", "/_admin/products/P000005", json={"active": False, "description": "Produto desativado"})
    sims.bo.admin("PUT", "/_admin/stock/P000006/CD01", json={"available": 77, "reserved": 2})

    results = run_once(config)
    log = sims.su.requests_log(su_mark)
    prices = items_written(log, "/v1/prices")
    products = items_written(log, "/v1/products")
    stock = items_written(log, "/v1/stock")
    assert sorted(p["key"] for p in prices) == ["P000002", "P000003", "P000004"]
    assert {p["key"]: p["price"] for p in prices}["P000003"] == "22.22"
    assert [(p["key"], p["active"]) for p in products] == [("P000005", False)]
    assert [s["key"] for s in stock] == ["P000006"]
    assert len(prices) + len(products) + len(stock) == 5
    assert sum(r.sent for r in results) == 5


def test_stock_is_sum_of_channel_warehouses_minus_reserved_and_safety(sims: Sims, tmp_path: Path) -> None:
    config = write_config(tmp_path, sims, flows=["stock"], safety=3)
    sims.bo.admin("PUT", "/_admin/stock/P000010/CD01", json={"available": 10, "reserved": 2})
    sims.bo.admin("PUT", "/_admin/stock/P000010/LJ01", json={"available": 5, "reserved": 1})
    sims.bo.admin("PUT", "/_admin/stock/P000010/LJ02", json={"available": 500, "reserved": 0})  # not this channel's
    sims.bo.admin("PUT", "/_admin/stock/P000011/CD01", json={"available": 1, "reserved": 0})
    sims.bo.admin("PUT", "/_admin/stock/P000011/LJ01", json={"available": -4, "reserved": 0})
    run_once(config)
    held = {s["key"]: s["available"] for s in sims.su.admin("GET", "/_admin/collections/stock")["items"]}
    assert held["P000010"] == (10 - 2) + (5 - 1) - 3
    assert held["P000011"] == 0  # never below zero


def test_orders_created_once_and_acknowledged_after_creation(sims: Sims, tmp_path: Path) -> None:
    config = write_config(tmp_path, sims)
    approved = approved_order_ids(sims)
    assert len(approved) >= 5
    run_once(config)
    run_once(config)  # redelivery of acknowledged orders must not create anything
    bo_orders = sims.bo.admin("GET", "/_admin/orders")["items"]
    per_external = Counter(o["external_id"] for o in bo_orders if o["channel"] == "loja-centro")
    assert set(per_external) == set(approved)
    assert all(n == 1 for n in per_external.values())
    assert all(o["warehouse"] == "LJ01" for o in bo_orders)

    bo_log = sims.bo.requests_log()
    created_at = {}
    for r in bo_log:
        if r["method"] == "POST" and r["path"] == "/orders" and r["status"] == 201:
            created_at[json.loads(r["body"])["external_id"]] = r["ts"]
    for r in sims.su.requests_log():
        if r["path"].endswith("/acknowledge"):
            order_id = r["path"].split("/")[3]
            assert r["ts"] > created_at[order_id], "acknowledged before the back office had it"
    acks = {o["id"]: o for o in sims.su.admin("GET", "/_admin/orders")["items"]}
    numbers = {o["external_id"]: o["number"] for o in bo_orders}
    for order_id in approved:
        assert acks[order_id]["exported"] is True
        assert acks[order_id]["backoffice_number"] == numbers[order_id]


def test_only_importable_statuses_are_imported_and_approval_later_imports(sims: Sims, tmp_path: Path) -> None:
    config = write_config(tmp_path, sims, flows=["orders", "customers"])
    drafts = [o["id"] for o in sims.su.admin("GET", "/_admin/orders")["items"] if o["status"] == "draft"]
    run_once(config)
    externals = {o["external_id"] for o in sims.bo.admin("GET", "/_admin/orders")["items"]}
    assert not externals & set(drafts)
    sims.su.admin("POST", f"/_admin/orders/{drafts[0]}/approve")
    run_once(config)
    externals = Counter(o["external_id"] for o in sims.bo.admin("GET", "/_admin/orders")["items"])
    assert externals[drafts[0]] == 1


def test_tablet_customer_with_existing_document_is_bound_not_duplicated(sims: Sims, tmp_path: Path) -> None:
    config = write_config(tmp_path, sims, flows=["customers"])
    existing = seeddata.customer(7, 3)  # the simulators are seeded with seed 7
    document = existing["document"]
    tablet = sims.su.admin("POST", "/_admin/tablet-customers", json={"document": document, "name": "Cliente do Tablet"})
    bo_mark = sims.bo.last_request_id()
    run_once(config)
    posts = [json.loads(r["body"]) for r in sims.bo.writes(bo_mark) if r["path"] == "/customers"]
    assert document not in [p["document"] for p in posts]
    linked = {c["id"]: c for c in sims.su.admin("GET", "/_admin/tablet-customers")["items"]}
    assert linked[tablet["id"]]["code"] == existing["code"]
    # every tablet customer is now linked, and new documents were created exactly once
    assert all(c["code"] for c in linked.values())
    created = Counter(p["document"] for p in posts)
    assert all(n == 1 for n in created.values())
    bo_mark = sims.bo.last_request_id()
    run_once(config)
    assert sims.bo.writes(bo_mark) == []


def test_order_cancelled_on_tablet_is_cancelled_in_back_office(sims: Sims, tmp_path: Path) -> None:
    config = write_config(tmp_path, sims, flows=["orders", "customers"])
    run_once(config)
    order_id = approved_order_ids(sims)[0]
    sims.su.admin("POST", f"/_admin/orders/{order_id}/cancel")
    run_once(config)
    order = next(o for o in sims.bo.admin("GET", "/_admin/orders")["items"] if o["external_id"] == order_id)
    assert order["status"] == "cancelled"
    cancels = [r for r in sims.bo.requests_log() if r["path"].endswith("/cancel")]
    assert len(cancels) == 1
    run_once(config)
    assert len([r for r in sims.bo.requests_log() if r["path"].endswith("/cancel")]) == 1


def test_order_events_reach_the_tablet_in_order_exactly_once(sims: Sims, tmp_path: Path) -> None:
    config = write_config(tmp_path, sims, flows=["orders", "order-events", "customers"])
    run_once(config)
    order = next(o for o in sims.bo.admin("GET", "/_admin/orders")["items"] if o["channel"] == "loja-centro")
    for kind in ("invoiced", "shipped", "delivered"):
        sims.bo.admin("POST", f"/_admin/orders/{order['number']}/events", json={"type": kind})
    run_once(config)
    run_once(config)
    held = sims.su.admin("GET", f"/_admin/orders/{order['external_id']}")
    assert [e["type"] for e in held["events"]] == ["invoiced", "shipped", "delivered"]
    invoice = held["events"][0]
    assert len(invoice["invoice_key"]) == 44 and invoice["invoice_number"]
    assert held["events"][1]["tracking_code"] and held["events"][1]["carrier"]
    posts = [r for r in sims.su.requests_log() if r["path"].endswith("/events")]
    assert len(posts) == 3


def test_bad_records_are_quarantined_and_the_rest_goes_on(sims: Sims, tmp_path: Path) -> None:
    config = write_config(tmp_path, sims, flows=["orders", "customers", "products", "prices"])
    approved = approved_order_ids(sims)
    bad_order = approved[0]
    order = sims.su.admin("GET", f"/_admin/orders/{bad_order}")
    items = order.get("items") or order["order"]["items"]
    items[0]["key"] = "NAO-EXISTE"
    sims.su.admin("PATCH", f"/_admin/orders/{bad_order}", json={"items": items})
    sims.bo.admin("PATCH", "/_admin/products/P000007", json={"description": ""})
    sims.bo.admin("PATCH", "/_admin/prices/P000008", json={"list_price": "abc"})

    results = run_once(config)
    by_flow = {r.flow: r for r in results}
    assert by_flow["orders"].quarantined == 1 and by_flow["orders"].status == "quarantined"
    assert by_flow["products"].quarantined == 1
    assert by_flow["prices"].quarantined == 1
    externals = {o["external_id"] for o in sims.bo.admin("GET", "/_admin/orders")["items"]}
    assert externals == set(approved) - {bad_order}
    keys = {p["key"] for p in sims.su.admin("GET", "/_admin/collections/products")["items"]}
    assert "P000007" not in keys and "P000009" in keys

    journal = Journal(tmp_path / "journal.db", lock=False)
    rows = {(q.entity, q.key): q for q in journal.quarantined()}
    journal.close()
    assert "NAO-EXISTE" in rows[("orders", bad_order)].reason
    assert rows[("prices", "P000008")].reason_code == "bad_money"

    # fixed at the source: retried because it changed, and released from quarantine
    sims.bo.admin("PATCH", "/_admin/products/P000007", json={"description": "Camiseta corrigida"})
    results = run_once(config)
    assert {p["key"] for p in sims.su.admin("GET", "/_admin/collections/products")["items"]} >= {"P000007"}
    journal = Journal(tmp_path / "journal.db", lock=False)
    assert ("products", "P000007") not in {(q.entity, q.key) for q in journal.quarantined()}
    journal.close()


def test_token_expiry_mid_life_refreshes_once(sims: Sims, tmp_path: Path) -> None:
    config = write_config(tmp_path, sims, flows=["products"])
    with Agent(load_config(config)) as agent:
        agent.run_once()
        sims.bo.admin("PATCH", "/_admin/products/P000001", json={"description": "Nova descrição"})
        mark = sims.bo.last_request_id()
        sims.bo.admin("POST", "/_admin/tokens/expire")
        results = agent.run_once()
    assert results[0].status == "ok" and results[0].sent == 1
    log = sims.bo.requests_log(mark)
    assert [r["path"] for r in log if r["path"] == "/oauth/token"] == ["/oauth/token"]
    assert [r["status"] for r in log if r["path"] == "/products"][0] == 401
