"""CPF/CNPJ as people type them (dots, dashes, slashes, spaces) are read as their digits everywhere."""

from __future__ import annotations

import json
from pathlib import Path

from syncagent.journal import Journal
from syncagent.simulators import seeddata
from tests.integration.harness import Sims, items_written, run_once, write_config


def _formatted(document: str) -> str:
    """A CPF as typed on a tablet: 436.555.472-77."""
    return f"{document[:3]}.{document[3:6]}.{document[6:9]}-{document[9:]}"


def test_tablet_customers_with_formatted_documents_are_bound_not_quarantined(sims: Sims, tmp_path: Path) -> None:
    config = write_config(tmp_path, sims, flows=["customers"])
    run_once(config)  # the seeded tablet customers are bound first
    existing = seeddata.customer(7, 3)  # the simulators are seeded with seed 7
    assert len(existing["document"]) == 11
    known = sims.su.admin("POST", "/_admin/tablet-customers",
                          json={"document": _formatted(existing["document"]), "name": "Cliente conhecido"})
    new = sims.su.admin("POST", "/_admin/tablet-customers", json={"document": "436.555.472-77", "name": "Cliente novo"})
    bo_mark = sims.bo.last_request_id()
    results = run_once(config)
    assert [(r.status, r.quarantined) for r in results] == [("ok", 0)], results
    posts = [json.loads(r["body"]) for r in sims.bo.writes(bo_mark) if r["path"] == "/customers"]
    assert [p["document"] for p in posts] == ["43655547277"]  # the contract's digits only; the known one bound
    linked = {c["id"]: c["code"] for c in sims.su.admin("GET", "/_admin/tablet-customers")["items"]}
    assert linked[known["id"]] == existing["code"]
    created = sims.bo.admin("GET", "/_admin/customers?document=43655547277")["items"]
    assert [c["code"] for c in created] == [linked[new["id"]]]
    journal = Journal(tmp_path / "journal.db", lock=False)
    try:
        assert journal.quarantined() == []
    finally:
        journal.close()


def test_a_back_office_document_typed_with_punctuation_reaches_the_tablet_as_digits(sims: Sims,
                                                                                  tmp_path: Path) -> None:
    config = write_config(tmp_path, sims, flows=["customers"])
    run_once(config)
    customer = seeddata.customer(7, 5)
    document = customer["document"]
    typed = _formatted(document) if len(document) == 11 else \
        f"{document[:2]}.{document[2:5]}.{document[5:8]}/{document[8:12]}-{document[12:]}"
    sims.bo.admin("PATCH", f"/_admin/customers/{customer['code']}", json={"document": typed, "name": "Renomeado"})
    mark = sims.su.last_request_id()
    results = run_once(config)
    assert [(r.status, r.quarantined) for r in results] == [("ok", 0)], results
    sent = [i for i in items_written(sims.su.requests_log(mark), "/v1/customers") if i["key"] == customer["code"]]
    assert [(i["document"], i["name"]) for i in sent] == [(document, "Renomeado")]
