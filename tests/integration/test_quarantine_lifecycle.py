"""A quarantined record's life over real HTTP: resolved when its source is valid again, retried as it is now
at its source, and dropped for good until it changes there."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from syncagent.journal import Journal, QuarantineRow
from syncagent.model import valid_ean
from tests.integration.harness import Sims, cli, items_written, run_once, write_config

BAD_EAN = "7891234567890"  # 13 digits, wrong check digit: the tablet app refuses it


def _ean13(body: str) -> str:
    code = next(body + str(d) for d in range(10) if valid_ean(body + str(d)))
    assert valid_ean(code)
    return code


def _rows(tmp_path: Path, state: str | None = None) -> dict[tuple[str, str], QuarantineRow]:
    journal = Journal(tmp_path / "journal.db", lock=False)
    try:
        return {(r.entity, r.key): r for r in journal.quarantined(state=state)}
    finally:
        journal.close()


def _product(sims: Sims, code: str) -> dict[str, Any]:
    held = {p["key"]: p for p in sims.su.admin("GET", "/_admin/collections/products")["items"]}
    return held[code]


def _products_sent(sims: Sims, mark: int) -> list[str]:
    return [i["key"] for i in items_written(sims.su.requests_log(mark), "/v1/products")]


def test_a_record_valid_again_with_what_the_channel_holds_is_closed_as_resolved(sims: Sims, tmp_path: Path) -> None:
    config = write_config(tmp_path, sims, flows=["products"])
    run_once(config)
    rejected, unmappable = "P000010", "P000011"
    barcode, name = _product(sims, rejected)["barcode"], _product(sims, unmappable)["name"]
    sims.bo.admin("PATCH", f"/_admin/products/{rejected}", json={"barcode": BAD_EAN})
    sims.bo.admin("PATCH", f"/_admin/products/{unmappable}", json={"description": ""})
    run_once(config)
    assert set(_rows(tmp_path, "open")) == {("products", rejected), ("products", unmappable)}
    # back at the source to exactly what the channel already holds: nothing to send, and nothing left open
    sims.bo.admin("PATCH", f"/_admin/products/{rejected}", json={"barcode": barcode})
    sims.bo.admin("PATCH", f"/_admin/products/{unmappable}", json={"description": name})
    mark = sims.su.last_request_id()
    (result,) = run_once(config)
    assert (result.status, result.quarantined) == ("ok", 0)
    assert _products_sent(sims, mark) == []
    assert _rows(tmp_path, "open") == {}
    closed = _rows(tmp_path, "released")
    assert {k: r.close_reason.split(":")[0] for k, r in closed.items() if r.close_reason} == {
        ("products", rejected): "resolved", ("products", unmappable): "resolved"}
    assert cli(config, "status").returncode == 0  # nothing quarantined any more: the exit code says so


def test_quarantine_retry_sends_the_record_as_it_is_now_at_its_source(sims: Sims, tmp_path: Path) -> None:
    config = write_config(tmp_path, sims, flows=["products"])
    run_once(config)
    code = "P000012"
    sims.bo.admin("PATCH", f"/_admin/products/{code}", json={"barcode": BAD_EAN})
    run_once(config)
    (row,) = _rows(tmp_path, "open").values()
    # fixed at the source (a new barcode, a new name); the operator retries before the next cycle
    fixed = _ean13("789100000123")
    sims.bo.admin("PATCH", f"/_admin/products/{code}", json={"barcode": fixed, "description": "Boné corrigido"})
    mark = sims.su.last_request_id()
    retry = cli(config, "quarantine", "retry", str(row.id))
    assert retry.returncode == 0, retry.stdout + retry.stderr
    assert "applied" in retry.stdout
    sent = [i for i in items_written(sims.su.requests_log(mark), "/v1/products") if i["key"] == code]
    assert [(i["barcode"], i["name"]) for i in sent] == [(fixed, "Boné corrigido")]  # never the stale copy
    assert (_product(sims, code)["barcode"], _product(sims, code)["name"]) == (fixed, "Boné corrigido")
    assert _rows(tmp_path, "open") == {}


def test_quarantine_retry_of_a_record_still_bad_at_its_source_says_so_and_sends_nothing_stale(
        sims: Sims, tmp_path: Path) -> None:
    config = write_config(tmp_path, sims, flows=["products"])
    run_once(config)
    code = "P000013"
    sims.bo.admin("PATCH", f"/_admin/products/{code}", json={"barcode": BAD_EAN})
    run_once(config)
    (row,) = _rows(tmp_path, "open").values()
    other_bad = "7891234567891"
    assert not valid_ean(other_bad)
    sims.bo.admin("PATCH", f"/_admin/products/{code}", json={"barcode": other_bad})
    mark = sims.su.last_request_id()
    retry = cli(config, "quarantine", "retry", str(row.id))
    assert retry.returncode == 1 and "still refused" in retry.stdout
    sent = [i["barcode"] for i in items_written(sims.su.requests_log(mark), "/v1/products") if i["key"] == code]
    assert sent == [other_bad]  # the current version, once; the stale one is not sent again
    assert json.dumps(_rows(tmp_path, "open")[("products", code)].payload).count(other_bad) == 1


def test_a_dropped_record_stays_dropped_until_it_changes_at_its_source(sims: Sims, tmp_path: Path) -> None:
    config = write_config(tmp_path, sims, flows=["products"])
    run_once(config)
    rejected, unmappable, unrelated = "P000014", "P000015", "P000016"
    sims.bo.admin("PATCH", f"/_admin/products/{rejected}", json={"barcode": BAD_EAN})
    sims.bo.admin("PATCH", f"/_admin/products/{unmappable}", json={"description": ""})
    run_once(config)
    rows = _rows(tmp_path, "open")
    ids = [str(rows[("products", key)].id) for key in (rejected, unmappable)]
    drop = cli(config, "quarantine", "drop", *ids, "--reason", "descontinuado", "--by", "ana")
    assert drop.returncode == 0, drop.stdout + drop.stderr
    # an unrelated record on the same feed page changes: the page is read and mapped again
    sims.bo.admin("PATCH", f"/_admin/products/{unrelated}", json={"description": "Outro produto"})
    mark = sims.su.last_request_id()
    (result,) = run_once(config)
    assert (result.status, result.quarantined) == ("ok", 0)
    assert _products_sent(sims, mark) == [unrelated]  # the dropped record is not sent to be refused again
    assert _rows(tmp_path, "open") == {}
    assert {k for k, r in _rows(tmp_path, "dropped").items() if r.closed_by == "ana"} == {
        ("products", rejected), ("products", unmappable)}
    assert cli(config, "run", "--once").returncode == 0
    # the dropped record itself changes at its source (still bad): it is looked at again
    sims.bo.admin("PATCH", f"/_admin/products/{rejected}", json={"barcode": "7891234567891"})
    (result,) = run_once(config)
    assert result.quarantined == 1
    assert set(_rows(tmp_path, "open")) == {("products", rejected)}
    assert set(_rows(tmp_path, "dropped")) == {("products", unmappable)}


def test_a_tablet_customer_valid_again_after_it_was_bound_is_closed_as_resolved(sims: Sims, tmp_path: Path) -> None:
    config = write_config(tmp_path, sims, flows=["customers"])
    run_once(config)
    tablet = sims.su.admin("GET", "/_admin/tablet-customers")["items"][0]
    assert tablet["code"]  # bound on the first run
    sims.su.admin("PATCH", f"/_admin/tablet-customers/{tablet['id']}", json={"document": "123.456.789-00"})
    run_once(config)
    assert set(_rows(tmp_path, "open")) == {("channel-customers", tablet["id"])}
    sims.su.admin("PATCH", f"/_admin/tablet-customers/{tablet['id']}", json={"document": tablet["document"]})
    bo_mark = sims.bo.last_request_id()
    (result,) = run_once(config)
    assert (result.status, result.quarantined) == ("ok", 0)
    assert _rows(tmp_path, "open") == {}
    assert sims.bo.writes(bo_mark) == []  # bound before: nothing created
