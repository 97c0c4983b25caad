"""Hostile servers on 127.0.0.1 against a whole agent: what each attack costs is one bad page or record.

The back office (or a channel) is a `tests.hostile.HostileServer` answering what each test scripts;
the other side is a real simulator. Each test checks that no exception escapes the run, that every
run row is finished, that the other channel still gets its turn, and what reached the channel.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncagent.agent import Agent
from syncagent.config import load_config
from syncagent.engine import StepResult
from syncagent.journal import Journal
from tests.hostile import Answer, HostileServer, page, wait_until
from tests.integration.harness import CHANNEL, CONFIG, ROOT, Sims, items_written, start

DEEP = b'{"items": [' + b"[" * 100_000 + b"]" * 100_000 + b'], "next_cursor": null}'
GOOD_PRODUCT = {"code": "P1", "description": "Camiseta", "active": True, "barcode": "7890000000017",
                "brand": "Hering", "group_code": "VEST", "unit": "UN", "updated_at": "2026-11-30T12:00:00Z"}


def no_wait(seconds: float) -> None:
    return None


def product(code: str, **extra: Any) -> dict[str, Any]:
    return {**GOOD_PRODUCT, "code": code, **extra}


def config(tmp_path: Path, bo_url: str, channels: dict[str, str], flows: list[str]) -> Path:
    """A config: the back office at `bo_url`, one Seller Up channel per {name: url} with these flows."""
    lines = "\n".join(f"      {f}: {{every: 1m}}" for f in flows)
    blocks = "".join(CHANNEL.format(name=name, url=url, flows=lines, safety=0) for name, url in channels.items())
    path = tmp_path / "syncagent.yaml"
    path.write_text(CONFIG.format(journal=tmp_path / "journal.db", bo=bo_url, channels=blocks))
    return path


def run_once(path: Path) -> list[StepResult]:
    with Agent(load_config(path), sleep=no_wait) as agent:
        return agent.run_once()


def finished_runs(tmp_path: Path) -> list[Any]:
    journal = Journal(tmp_path / "journal.db")
    try:
        runs = journal.last_runs()
    finally:
        journal.close()
    assert runs and all(r.finished_at is not None and r.result is not None for r in runs), runs
    return runs


@pytest.fixture
def hostile() -> Iterator[HostileServer]:
    with HostileServer() as server:
        yield server


# -- 6: JSON nested 10^5 deep -----------------------------------------------------------------------
def test_deep_json_from_a_channel_fails_its_steps_and_the_other_channel_runs(
        sims: Sims, tmp_path: Path, hostile: HostileServer) -> None:
    hostile.on("GET", "/v1/orders", lambda req: Answer(body=DEEP))  # a feed page
    hostile.on("PUT", "/v1/products", lambda req: Answer(400, b'{"error": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"))
    path = config(tmp_path, sims.bo.url, {"loja-hostil": hostile.url, "loja-centro": sims.su.url},
                  ["orders", "products"])
    results = {(r.channel, r.flow): r for r in run_once(path)}  # no RecursionError escapes
    orders, products = results[("loja-hostil", "orders")], results[("loja-hostil", "products")]
    assert orders.status == "failed" and "nested too deep" in (orders.error or ""), orders.error
    assert products.status == "failed" and "400" in (products.error or ""), products.error
    assert results[("loja-centro", "orders")].status == "ok"
    assert results[("loja-centro", "products")].status == "ok" and results[("loja-centro", "products")].sent > 0
    assert len(finished_runs(tmp_path)) == 4


@pytest.mark.parametrize("where", ["token answer", "feed page", "error body"])
def test_deep_json_from_the_back_office_is_a_failed_step_on_every_channel(
        sims: Sims, tmp_path: Path, hostile: HostileServer, where: str) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    hostile.back_office()
    if where == "token answer":
        hostile.on("POST", "/oauth/token", lambda req: Answer(body=b'{"access_token": ' + deep + b"}"))
    elif where == "feed page":
        hostile.on("GET", "/products", lambda req: Answer(body=DEEP))
    else:
        hostile.on("GET", "/products", lambda req: Answer(400, b'{"error": ' + deep + b"}"))
    sims.su2 = start("sellerup", tmp_path / "su2.db")
    try:
        path = config(tmp_path, hostile.url, {"loja-centro": sims.su.url, "loja-norte": sims.su2.url}, ["products"])
        results = run_once(path)
    finally:
        sims.su2.server.stop()
    assert [(r.channel, r.status) for r in results] == [("loja-centro", "failed"), ("loja-norte", "failed")]
    for r in results:
        assert "Recursion" not in (r.error or "") and r.error
    assert len(finished_runs(tmp_path)) == 2


# -- 9: one integer of 5000 digits ------------------------------------------------------------------
def test_a_5000_digit_integer_makes_its_record_bad_and_the_rest_of_the_page_goes(
        sims: Sims, tmp_path: Path, hostile: HostileServer) -> None:
    body = json.dumps({"items": [product("P1"), product("P2", weight=0), product("P3")], "next_cursor": "c1"})
    body = body.replace('"weight": 0', '"weight": ' + "7" * 5000)
    hostile.back_office().on("GET", "/products", lambda req: Answer(body=body.encode()) if req.arg("cursor") is None
                             else page([], None))
    path = config(tmp_path, hostile.url, {"loja-centro": sims.su.url}, ["products"])
    (result,) = run_once(path)
    assert result.status == "quarantined" and result.quarantined == 1
    sent = {i["key"] for i in items_written(sims.su.requests_log(), "/v1/products")}
    assert sent == {"P1", "P3"}
    journal = Journal(tmp_path / "journal.db")
    try:
        (bad,) = journal.quarantined()
        assert (bad.key, bad.reason_code) == ("P2", "number_too_long") and "5000 digits" in bad.reason
        assert journal.cursor("loja-centro", "products") == "c1"
    finally:
        journal.close()


# -- 10: a key given twice --------------------------------------------------------------------------
def test_a_key_given_twice_in_a_record_makes_that_record_bad(
        sims: Sims, tmp_path: Path, hostile: HostileServer) -> None:
    twice = json.dumps(product("P2"))[:-1] + ', "description": "Camiseta azul"}'
    body = '{"items": [' + json.dumps(product("P1")) + ", " + twice + "], \"next_cursor\": null}"
    hostile.back_office().on("GET", "/products", lambda req: Answer(body=body.encode()))
    path = config(tmp_path, hostile.url, {"loja-centro": sims.su.url}, ["products"])
    (result,) = run_once(path)
    assert result.status == "quarantined"
    assert {i["key"] for i in items_written(sims.su.requests_log(), "/v1/products")} == {"P1"}
    journal = Journal(tmp_path / "journal.db")
    try:
        (bad,) = journal.quarantined()
        assert (bad.key, bad.reason_code) == ("P2", "duplicate_key") and "'description'" in bad.reason
    finally:
        journal.close()


def test_items_given_twice_on_a_page_fail_the_step_and_keep_the_cursor(
        sims: Sims, tmp_path: Path, hostile: HostileServer) -> None:
    first = page([product("P1")], "c1")
    hostile.back_office().on("GET", "/products", lambda req: first if req.arg("cursor") is None else Answer(
        body=b'{"items": [' + json.dumps(product("P2")).encode() + b'], "items": [], "next_cursor": null}'))
    path = config(tmp_path, hostile.url, {"loja-centro": sims.su.url}, ["products"])
    (result,) = run_once(path)
    assert result.status == "failed" and "'items' is given more than once" in (result.error or ""), result.error
    assert {i["key"] for i in items_written(sims.su.requests_log(), "/v1/products")} == {"P1"}
    journal = Journal(tmp_path / "journal.db")
    try:
        assert journal.cursor("loja-centro", "products") == "c1"  # the page before was recorded, this one not
    finally:
        journal.close()


# -- 11: negative prices and reservations -----------------------------------------------------------
def test_negative_prices_and_reservations_are_refused_before_any_channel(
        sims: Sims, tmp_path: Path, hostile: HostileServer) -> None:
    def price(sku: str, **extra: Any) -> dict[str, Any]:
        return {"sku": sku, "price_list": "default", "list_price": "10.00", "promo_price": None, **extra}

    hostile.back_office()
    hostile.on("GET", "/prices", lambda req: page([
        price("P1"), price("P2", list_price="-10.00"), price("P3", promo_price="-1.00"),
        price("P4", scheduled=[{"list_price": "-5.00", "starts_at": "2031-01-01T00:00:00Z"}]),
    ], None))
    hostile.on("GET", "/stock", lambda req: page([
        {"sku": "P1", "warehouse": "CD01", "available": 5, "reserved": 0},
        {"sku": "P5", "warehouse": "CD01", "available": 5, "reserved": -50},
        {"sku": "P6", "warehouse": "CD01", "available": -3, "reserved": 0},  # oversold: real, sent as 0
    ], None))
    path = config(tmp_path, hostile.url, {"loja-centro": sims.su.url}, ["prices", "stock"])
    results = {r.flow: r for r in run_once(path)}
    assert results["prices"].quarantined == 3 and results["stock"].quarantined == 1
    log = sims.su.requests_log()
    assert {p["key"]: p["price"] for p in items_written(log, "/v1/prices")} == {"P1": "10.00"}
    assert {s["key"]: s["available"] for s in items_written(log, "/v1/stock")} == {"P1": 5, "P6": 0}
    journal = Journal(tmp_path / "journal.db")
    try:
        bad = {q.key: q for q in journal.quarantined()}
        assert {k: q.reason_code for k, q in bad.items()} == {"P2": "negative_price", "P3": "negative_price",
                                                              "P4": "negative_price", "P5": "negative_quantity"}
        assert "promo_price" in bad["P3"].reason and "scheduled[0]" in bad["P4"].reason
    finally:
        journal.close()


# -- 8: cursors that go round, or change with every page of the same items ---------------------------
def test_a_feed_whose_cursors_go_a_b_a_stops_after_a_few_requests_with_its_cursor_kept(
        sims: Sims, tmp_path: Path, hostile: HostileServer) -> None:
    pages = {None: page([product("P1")], "A"), "A": page([product("P2")], "B"), "B": page([product("P3")], "A")}

    def feed(req: Any) -> Answer:
        if len(hostile.gets("/products")) > 50:  # a bound for the test only: without the fix it would loop on
            return page([], None)
        return pages[req.arg("cursor")]

    hostile.back_office().on("GET", "/products", feed)
    path = config(tmp_path, hostile.url, {"loja-centro": sims.su.url}, ["products"])
    (result,) = run_once(path)
    assert result.status == "failed" and "go round in a circle" in (result.error or ""), result.error
    assert len(hostile.gets("/products")) <= 4
    journal = Journal(tmp_path / "journal.db")
    try:
        assert journal.cursor("loja-centro", "products") == "B"
    finally:
        journal.close()
    assert finished_runs(tmp_path)[0].error == result.error


def test_a_feed_that_changes_its_cursor_with_every_page_of_the_same_items_stops(
        sims: Sims, tmp_path: Path, hostile: HostileServer) -> None:
    def feed(req: Any) -> Answer:
        n = len(hostile.gets("/products"))
        return page([product("P1"), product("P2")], f"c{n}" if n < 50 else None)

    hostile.back_office().on("GET", "/products", feed)
    path = config(tmp_path, hostile.url, {"loja-centro": sims.su.url}, ["products"])
    (result,) = run_once(path)
    assert result.status == "failed" and "does not move on" in (result.error or ""), result.error
    assert len(hostile.gets("/products")) <= 4
    journal = Journal(tmp_path / "journal.db")
    try:
        assert journal.cursor("loja-centro", "products") == "c2"  # two pages taken, the third (same items) not
    finally:
        journal.close()


# -- 7: a server dripping one byte a second ---------------------------------------------------------
def test_sigterm_ends_the_daemon_within_10_s_while_the_back_office_drips_its_answer(
        sims: Sims, tmp_path: Path, hostile: HostileServer) -> None:
    hostile.back_office().on("GET", "/products", lambda req: Answer(body=json.dumps(
        {"items": [product("P1")], "next_cursor": None}).encode(), drip=1.0))  # minutes of it
    path = config(tmp_path, hostile.url, {"loja-centro": sims.su.url}, ["products"])
    proc = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "syncagent", "-c", str(path), "run"], cwd=ROOT, env=dict(os.environ),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until("the back office to start dripping", hostile.dripping.is_set)
        time.sleep(1.5)  # well into the drip: the read timeout (10 s) would never fire
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)  # a generous bound for the test; the requirement is checked below
        except subprocess.TimeoutExpired:
            pytest.fail("the daemon ignored SIGTERM for 30 s while the server dripped")
        took = time.monotonic() - signalled
    finally:
        if proc.poll() is None:
            proc.kill()
        out, err = proc.communicate()
        sys.stdout.write(out)
        sys.stderr.write(err)  # echoed for the fixture's secret scan
    assert proc.returncode == 0, err
    assert took < 10, f"SIGTERM took {took:.1f} s"
    (run,) = finished_runs(tmp_path)
    assert run.result == "failed" and "stopping" in (run.error or "")


def test_a_channel_dripping_its_answers_fails_at_the_deadline_and_the_other_channel_gets_its_turn(
        sims: Sims, tmp_path: Path, hostile: HostileServer) -> None:
    hostile.on("GET", "/v1/orders", lambda req: Answer(body=b'{"items": []}', drip=0.5))  # 7 s and more
    path = config(tmp_path, sims.bo.url, {"loja-hostil": hostile.url, "loja-centro": sims.su.url}, ["orders"])
    path.write_text(path.read_text().replace("read_timeout: 10}", "read_timeout: 10, total_timeout: 1.5}", 2))
    results = {r.channel: r for r in run_once(path)}
    assert results["loja-hostil"].status == "failed" and "1.5 s deadline" in (results["loja-hostil"].error or "")
    assert results["loja-centro"].status == "ok"
    assert len(hostile.gets("/v1/orders")) == 1  # cut, not tried again
    assert len(finished_runs(tmp_path)) == 2
