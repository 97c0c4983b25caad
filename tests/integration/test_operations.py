"""Operator commands over real HTTP: SKU DE/PARA, adopt, replay, reconcile, self-releasing quarantine."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import requests

from syncagent.simulators import seeddata
from tests.integration.harness import (
    CANARY_KEY,
    CANARY_SECRET,
    Sims,
    cli,
    items_written,
    run_once,
    write_config,
)


def bo_token(sims: Sims) -> str:
    return str(requests.post(sims.bo.url + "/oauth/token", data={
        "grant_type": "client_credentials", "client_id": seeddata.DEMO_CLIENT_ID,
        "client_secret": CANARY_SECRET}, timeout=10).json()["access_token"])


def bo_products(sims: Sims) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {bo_token(sims)}"}
    return requests.get(sims.bo.url + "/products", params={"limit": 500}, headers=headers, timeout=10).json()["items"]


def su_put(sims: Sims, collection: str, items: list[dict[str, Any]]) -> None:
    """Write to the app as another integrator would have (the channel's own API)."""
    resp = requests.put(f"{sims.su.url}/v1/{collection}", json={"items": items},
                        headers={"X-Api-Key": CANARY_KEY}, timeout=10)
    assert resp.status_code == 200, resp.text


def su_collection(sims: Sims, collection: str) -> dict[str, dict[str, Any]]:
    items: dict[str, dict[str, Any]] = {}
    after = None
    while True:
        params: dict[str, Any] = {"limit": 1000} | ({"after_key": after} if after else {})
        body = requests.get(f"{sims.su.url}/v1/{collection}", params=params, headers={"X-Api-Key": CANARY_KEY},
                            timeout=10).json()
        items.update((i["key"], i) for i in body["items"])
        after = body["next_after_key"]
        if not after:
            return items


def bo_orders(sims: Sims) -> list[dict[str, Any]]:
    return list(sims.bo.admin("GET", "/_admin/orders")["items"])


def approved_order(sims: Sims, items: list[dict[str, Any]], **fields: Any) -> str:
    """A new approved tablet order for a customer the back office knows."""
    customer = next(c for c in sims.bo.admin("GET", "/_admin/customers")["items"])
    body = {"status": "approved", "items": items, "customer": {"code": customer["code"]}, **fields}
    return str(sims.su.admin("POST", "/_admin/orders", json=body)["id"])


def test_mapping_import_errors_by_line_and_nothing_imported(sims: Sims, tmp_path: Path) -> None:
    config = write_config(tmp_path, sims, flows=["products"])
    bad = tmp_path / "depara.csv"
    bad.write_text("code;channel_sku\nP000001;ANTIGO-1\n;ANTIGO-2\nP000003;\nP000001;ANTIGO-4\nP000005;ANTIGO-1\n")
    proc = cli(config, "mapping", "import", "--channel", "loja-centro", str(bad))
    assert proc.returncode == 1
    assert f"{bad}:3: the back office code is empty" in proc.stderr
    assert f"{bad}:4: the channel SKU of 'P000003' is empty" in proc.stderr
    assert f"{bad}:5: the code 'P000001' is already mapped on line 2" in proc.stderr
    assert f"{bad}:6: the channel SKU 'ANTIGO-1' is already used on line 2" in proc.stderr
    assert "nothing imported" in proc.stderr
    listed = cli(config, "mapping", "list", "--channel", "loja-centro", "--json")
    assert json.loads(listed.stdout) == []
    unknown = cli(config, "mapping", "import", "--channel", "loja-sul", str(bad))
    assert unknown.returncode == 2 and "loja-centro" in unknown.stderr


def test_pushes_and_orders_go_through_the_channel_sku(sims: Sims, tmp_path: Path) -> None:
    config = write_config(tmp_path, sims, flows=["orders", "products", "prices", "stock"])
    depara = tmp_path / "depara.csv"
    depara.write_text("code,channel_sku\nP000001,ANTIGO-1\nP000002,ANTIGO-2\n")
    proc = cli(config, "mapping", "import", "--channel", "loja-centro", str(depara))
    assert proc.returncode == 0, proc.stderr
    assert "2 pair(s) imported" in proc.stdout
    exported = cli(config, "mapping", "export", "--channel", "loja-centro")
    lines = exported.stdout.splitlines()
    assert lines[0] == "code,channel_sku,source,updated_at"
    assert [line.split(",")[:2] for line in lines[1:]] == [["P000001", "ANTIGO-1"], ["P000002", "ANTIGO-2"]]
    reimport = tmp_path / "back.csv"
    reimport.write_text(exported.stdout)
    assert cli(config, "mapping", "import", "--channel", "loja-centro", str(reimport)).returncode == 0

    mark = sims.su.last_request_id()
    run_once(config)
    log = sims.su.requests_log(mark)
    for path in ("/v1/products", "/v1/prices", "/v1/stock"):
        keys = [i["key"] for i in items_written(log, path)]
        assert "ANTIGO-1" in keys and "ANTIGO-2" in keys, path
        assert "P000001" not in keys and "P000002" not in keys, path
    held = su_collection(sims, "products")
    assert "ANTIGO-1" in held and "P000001" not in held

    # a pair imported after the first push: push --full moves that product to its SKU, and only it
    later = tmp_path / "later.csv"
    later.write_text("code,channel_sku\nP000003,ANTIGO-3\n")
    assert cli(config, "mapping", "import", "--channel", "loja-centro", str(later)).returncode == 0
    mark = sims.su.last_request_id()
    assert cli(config, "push", "--entity", "products", "--full").returncode == 0
    assert [i["key"] for i in items_written(sims.su.requests_log(mark), "/v1/products")] == ["ANTIGO-3"]

    # an order taken on the tablet names the channel SKU; the back office gets its own code
    order_id = approved_order(sims, [{"key": "ANTIGO-2", "quantity": 1, "unit_price": "10.00"}])
    run_once(config)
    (created,) = [o for o in bo_orders(sims) if o["external_id"] == order_id]
    assert [i["sku"] for i in created["items"]] == ["P000002"]


def test_required_mapping_quarantines_then_releases_when_the_sku_arrives(sims: Sims, tmp_path: Path) -> None:
    config = write_config(tmp_path, sims, flows=["products"])
    config.write_text(config.read_text().replace("    safety_stock: 0\n", "    safety_stock: 0\n    sku_mapping: required\n"))
    depara = tmp_path / "depara.csv"
    codes = sorted(p["code"] for p in bo_products(sims))
    depara.write_text("code,channel_sku\n" + "".join(f"{c},{c}\n" for c in codes[:-2]))
    assert cli(config, "mapping", "import", "--channel", "loja-centro", str(depara)).returncode == 0
    first = cli(config, "run", "--once", "--json")
    assert first.returncode == 1
    (step,) = json.loads(first.stdout)
    assert step["sent"] == len(codes) - 2 and step["quarantined"] == 2
    rows = json.loads(cli(config, "quarantine", "list", "--json").stdout)
    assert sorted(r["key"] for r in rows) == codes[-2:]
    assert {r["reason_code"] for r in rows} == {"unmapped_sku"}

    late = tmp_path / "late.csv"
    late.write_text(f"code,channel_sku\n{codes[-2]},NOVO-A\n{codes[-1]},NOVO-B\n")
    assert cli(config, "mapping", "import", "--channel", "loja-centro", str(late)).returncode == 0
    mark = sims.su.last_request_id()
    second = cli(config, "run", "--once", "--json")
    assert second.returncode == 0, second.stdout + second.stderr
    keys = [i["key"] for i in items_written(sims.su.requests_log(mark), "/v1/products")]
    assert sorted(keys) == ["NOVO-A", "NOVO-B"]
    assert json.loads(cli(config, "quarantine", "list", "--json").stdout) == []


def test_adopt_binds_existing_listings_by_sku_and_ean(sims: Sims, tmp_path: Path) -> None:
    products = sorted(bo_products(sims), key=lambda p: p["code"])
    with_barcode = [p for p in products if p.get("barcode")]
    assert len(with_barcode) >= 3
    # the old integrator listed two products under its own SKUs (same EAN) and one under the code itself
    old = [{"key": f"VELHO-{i}", "name": p["description"], "barcode": p["barcode"], "brand": None, "group_key": None,
            "unit": "UN", "active": True} for i, p in enumerate(with_barcode[:2])]
    same = with_barcode[2]
    old.append({"key": same["code"], "name": same["description"], "barcode": same["barcode"], "brand": None,
                "group_key": None, "unit": "UN", "active": True})
    su_put(sims, "products", old)
    config = write_config(tmp_path, sims, flows=["products"])
    config.write_text(config.read_text().replace("    safety_stock: 0\n", "    safety_stock: 0\n    adopt: true\n"
                                                                            "    shadow: true\n"))
    mark = sims.su.last_request_id()
    (step,) = run_once(config)  # the read-only period of a switch: the map is made, nothing is sent
    assert step.status == "ok" and step.details["adopted"] == 3, step.error
    assert sims.su.writes(mark) == []
    plan = json.loads(cli(config, "push", "--entity", "products", "--dry-run", "--json").stdout)
    actions = {w["key"]: w["action"] for w in plan[0]["would_send"]}
    assert actions["VELHO-0"] == "create" and with_barcode[0]["code"] not in actions
    config.write_text(config.read_text().replace("    shadow: true\n", ""))
    (step,) = run_once(config)
    assert step.status == "ok", step.error
    held = su_collection(sims, "products")
    assert len(held) == len(products), "a product was listed twice"
    assert held["VELHO-0"]["name"] == with_barcode[0]["description"]
    assert with_barcode[0]["code"] not in held and with_barcode[1]["code"] not in held
    pairs = json.loads(cli(config, "mapping", "list", "--channel", "loja-centro", "--json").stdout)
    mapped = {p["code"]: (p["channel_sku"], p["source"]) for p in pairs}
    assert mapped[with_barcode[0]["code"]] == ("VELHO-0", "adopt")
    assert mapped[with_barcode[1]["code"]] == ("VELHO-1", "adopt")
    assert mapped[same["code"]] == (same["code"], "adopt")
    mark = sims.su.last_request_id()
    run_once(config)  # adoption happens once: no second listing read
    assert not [r for r in sims.su.requests_log(mark) if r["method"] == "GET" and r["path"] == "/v1/products"]


def test_reconcile_reports_differences_and_changes_nothing(sims: Sims, tmp_path: Path) -> None:
    config = write_config(tmp_path, sims, flows=["products", "prices", "stock"])
    run_once(config)
    for entity in ("products", "prices", "stock"):
        proc = cli(config, "reconcile", "--channel", "loja-centro", "--entity", entity, "--json")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        data = json.loads(proc.stdout)
        assert data["differs"] is False and data["backoffice"] == data["channel_count"] > 0, data

    held = su_collection(sims, "products")
    changed = dict(held["P000004"], name="Nome trocado na loja")
    stray = dict(held["P000005"], key="SOBRA-1")
    su_put(sims, "products", [changed, stray])
    sims.bo.admin("PATCH", "/_admin/prices/P000006", json={"list_price": "1.23", "promo_price": None,
                                                             "promo_start": None, "promo_end": None, "scheduled": []})
    journal = tmp_path / "journal.db"
    before = sqlite3.connect(journal).execute("SELECT count(*), max(sent_at) FROM sent").fetchone()
    bo_mark, su_mark = sims.bo.last_request_id(), sims.su.last_request_id()
    proc = cli(config, "reconcile", "--channel", "loja-centro", "--entity", "products", "--json")
    assert proc.returncode == 1
    data = json.loads(proc.stdout)
    assert data["counts"] == {"missing": 0, "extra": 1, "differing": 1}
    assert data["extra"] == ["SOBRA-1"] and data["differing"] == [{"key": "P000004", "fields": ["name"]}]
    prices = cli(config, "reconcile", "--channel", "loja-centro", "--entity", "prices")
    assert prices.returncode == 1 and "P000006" in prices.stdout and "price" in prices.stdout
    assert sims.su.writes(su_mark) == [] and sims.bo.writes(bo_mark) == []
    assert sqlite3.connect(journal).execute("SELECT count(*), max(sent_at) FROM sent").fetchone() == before


def test_replay_product_sends_it_again_under_its_sku(sims: Sims, tmp_path: Path) -> None:
    config = write_config(tmp_path, sims, flows=["products"])
    run_once(config)
    mark = sims.su.last_request_id()
    proc = cli(config, "replay", "product", "P000003")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [i["key"] for i in items_written(sims.su.requests_log(mark), "/v1/products")] == ["P000003"]
    missing = cli(config, "replay", "product", "NAO-EXISTE")
    assert missing.returncode == 1 and "no product 'NAO-EXISTE'" in missing.stderr


def test_replay_order_never_duplicates(sims: Sims, tmp_path: Path) -> None:
    config = write_config(tmp_path, sims, flows=["orders"])
    run_once(config)
    done = next(o["external_id"] for o in bo_orders(sims))
    mark = sims.bo.last_request_id()
    proc = cli(config, "replay", "order", done, "--channel", "loja-centro")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "already in the back office" in proc.stdout
    assert [w for w in sims.bo.writes(mark) if w["path"] == "/orders"] == []

    # an order refused for an unknown payment method is created once the method exists
    waiting = approved_order(sims, [{"key": "P000001", "quantity": 1, "unit_price": "10.00"}],
                             payments=[{"method": "PIX-NOVO", "amount": "10.00", "installments": 1}], total="10.00")
    run_once(config)
    assert not [o for o in bo_orders(sims) if o["external_id"] == waiting]
    refused = cli(config, "replay", "order", waiting, "--channel", "loja-centro")
    assert refused.returncode == 1 and "unknown payment method" in refused.stdout
    sims.bo.admin("PATCH", "/_admin/payment-methods/PIX-NOVO",
                  json={"description": "Pix novo", "type": "pix", "active": True, "max_installments": 1})
    again = cli(config, "replay", "order", waiting, "--channel", "loja-centro")
    assert again.returncode == 0, again.stdout + again.stderr
    twice = cli(config, "replay", "order", waiting, "--channel", "loja-centro")
    assert twice.returncode == 0 and "already in the back office" in twice.stdout
    assert [o["external_id"] for o in bo_orders(sims)].count(waiting) == 1
    acks = sims.su.admin("GET", "/_admin/acks")
    assert acks


def test_quarantined_order_leaves_by_itself_when_the_product_appears(sims: Sims, tmp_path: Path) -> None:
    config = write_config(tmp_path, sims, flows=["orders"])
    run_once(config)
    waiting = approved_order(sims, [{"key": "LANCAMENTO-1", "quantity": 2, "unit_price": "5.00"}])
    paying = approved_order(sims, [{"key": "P000001", "quantity": 1, "unit_price": "10.00"}],
                            payments=[{"method": "CASHBACK", "amount": "10.00", "installments": 1}], total="10.00")
    (step,) = run_once(config)
    assert step.quarantined == 2
    mark = sims.bo.last_request_id()
    (step,) = run_once(config)  # still unknown: the references are checked, the orders not posted again
    assert [w for w in sims.bo.writes(mark) if w["path"] == "/orders"] == []
    assert not [o for o in bo_orders(sims) if o["external_id"] in (waiting, paying)]
    created = requests.post(sims.bo.url + "/products", headers={"Authorization": f"Bearer {bo_token(sims)}"},
                            json={"code": "LANCAMENTO-1", "description": "Lançamento", "active": True, "unit": "UN"},
                            timeout=10)
    assert created.status_code == 201, created.text
    (step,) = run_once(config)
    assert step.details.get("released") == 1  # the product order went; the other still waits
    assert [o["external_id"] for o in bo_orders(sims)].count(waiting) == 1
    sims.bo.admin("PATCH", "/_admin/payment-methods/CASHBACK",
                  json={"description": "Cashback", "type": "pix", "active": True, "max_installments": 1})
    (step,) = run_once(config)
    assert step.status == "ok", step.error
    assert [o["external_id"] for o in bo_orders(sims)].count(paying) == 1
    assert json.loads(cli(config, "quarantine", "list", "--json").stdout) == []
    released = json.loads(cli(config, "quarantine", "list", "--all", "--json").stdout)
    assert {r["key"]: r["state"] for r in released} == {waiting: "released", paying: "released"}
