"""The DE/PARA CSV: every problem by line, both separators, BOM and Latin-1, and the export format."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from syncagent.mapping import load_text, read_csv, record_from_json, record_to_json, write_csv
from syncagent.model import Price, Product, StockLevel


def test_semicolon_file_with_bom_and_alternative_headers(tmp_path: Path) -> None:
    path = tmp_path / "depara.csv"
    path.write_bytes("\ufeffDE;PARA\nP1;ANT-1\n\nP2; ANT-2 \n".encode())
    pairs, problems = read_csv(load_text(path))
    assert problems == [] and pairs == [("P1", "ANT-1"), ("P2", "ANT-2")]


def test_latin1_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("code,channel_sku\nCAFÉ-1,CAFÉ-ANTIGO\n".encode("latin-1"))
    assert read_csv(load_text(path))[0] == [("CAFÉ-1", "CAFÉ-ANTIGO")]


def test_every_problem_is_reported_with_its_line() -> None:
    pairs, problems = read_csv("code,channel_sku\nP1\nP2," + "x" * 101 + "\nP3,A\tB\n")
    assert [(p.line, p.message.split(" ")[0]) for p in problems] == [(2, "expected"), (3, "the"), (4, "the")]
    assert problems[0].render("f.csv") == "f.csv:2: expected 2 columns, found 1"
    assert pairs == []
    assert read_csv("")[1][0].message.startswith("the file is empty")
    assert "expected a header" in read_csv("sku_antigo,sku_novo\n")[1][0].message


def test_export_reads_back() -> None:
    text = "".join(write_csv([("P1", "A,1", "import:x.csv", "2026-11-30T10:00:00Z")]))
    assert text.splitlines()[0] == "code,channel_sku,source,updated_at"
    assert read_csv(text) == ([("P1", "A,1")], [])


def test_quarantined_records_rebuild() -> None:
    price = Price("P1", Decimal("10.00"), Decimal("8.00"))
    for entity, record in (("products", Product("P1", "Camiseta", True, barcode="7891234567895")),
                           ("prices", price), ("stock", StockLevel("P1", 7))):
        assert record_from_json(record_to_json(entity, record)) == record
    assert record_from_json({"entity": "products", "fields": {"nope": 1}}) is None
    assert record_from_json("junk") is None
