"""SKU DE/PARA: which SKU a channel knows each back office product by.

When a retailer switches integrator, the channel already lists its products under the old
integrator's SKUs. Delisting and re-creating them would lose reviews, rankings and sales
history, so the agent sends each product, price and stock level under the channel's SKU (the
"PARA" of the back office code "DE") and reads order items back through the same map.

The map lives in the journal (`sku_map`); it is filled from a CSV (`syncagent mapping import`)
or by adopting a channel's existing listings (`adopt: true`). Nothing here touches the network.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from syncagent import entities
from syncagent.model import Price, Product, StockLevel, price_from_json, price_to_json

SKU_ENTITIES = entities.SKU_KEYED
CODE_HEADERS = ("code", "backoffice_code", "de")
SKU_HEADERS = ("channel_sku", "sku", "para")
MAX_SKU = 100


@dataclass(frozen=True, slots=True)
class CsvProblem:
    line: int
    message: str

    def render(self, path: str) -> str:
        return f"{path}:{self.line}: {self.message}"


def read_csv(text: str) -> tuple[list[tuple[str, str]], list[CsvProblem]]:
    """Parse a DE/PARA CSV: a header naming the code and SKU columns, then one pair per line.

    Every problem is reported with its line; a file with any problem imports nothing.
    Separators `,` and `;` are both accepted (spreadsheets in Brazil save with `;`).
    """
    problems: list[CsvProblem] = []
    sample = text[:4096]
    delimiter = ";" if sample.count(";") > sample.count(",") else ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        return [], [CsvProblem(1, "the file is empty: expected a header line `code,channel_sku`")]
    names = [h.strip().lower().lstrip("\ufeff") for h in header]
    code_col = next((names.index(h) for h in CODE_HEADERS if h in names), None)
    sku_col = next((names.index(h) for h in SKU_HEADERS if h in names), None)
    if code_col is None or sku_col is None:
        return [], [CsvProblem(1, f"expected a header with the columns `code` and `channel_sku`, found {header!r}")]
    pairs: list[tuple[str, str]] = []
    codes: dict[str, int] = {}
    skus: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) <= max(code_col, sku_col):
            problems.append(CsvProblem(line, f"expected {max(code_col, sku_col) + 1} columns, found {len(row)}"))
            continue
        code, sku = row[code_col].strip(), row[sku_col].strip()
        if not code:
            problems.append(CsvProblem(line, "the back office code is empty"))
            continue
        if not sku:
            problems.append(CsvProblem(line, f"the channel SKU of {code!r} is empty"))
            continue
        if len(sku) > MAX_SKU or any(ch in sku for ch in "\r\n\t"):
            problems.append(CsvProblem(line, f"the channel SKU {sku[:40]!r} is not a SKU (at most {MAX_SKU} "
                                             "characters, no tabs or line breaks)"))
            continue
        if code in codes:
            problems.append(CsvProblem(line, f"the code {code!r} is already mapped on line {codes[code]}"))
            continue
        if sku in skus:
            problems.append(CsvProblem(line, f"the channel SKU {sku!r} is already used on line {skus[sku]}"))
            continue
        codes[code], skus[sku] = line, line
        pairs.append((code, sku))
    return pairs, problems


def write_csv(rows: Iterable[tuple[str, str, str, str]]) -> Iterator[str]:
    """The export: the same columns `import` reads, plus where each pair came from."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["code", "channel_sku", "source", "updated_at"])
    yield buffer.getvalue()
    for row in rows:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(row)
        yield buffer.getvalue()


def load_text(path: Path) -> str:
    """A CSV as text: UTF-8 (with or without BOM), else Latin-1 as older spreadsheets save it."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def renamed(record: Any, sku: str) -> Any:
    """The record as the channel knows it: the same fields under the channel's SKU."""
    return replace(record, code=sku)


def record_to_json(entity: str, record: Any) -> dict[str, Any]:
    """A catalogue record kept in the quarantine so it can be sent once its SKU is mapped."""
    if isinstance(record, Price):
        return {"entity": entity, "price": json.loads(price_to_json(record))}
    return {"entity": entity, "fields": asdict(record)}


def record_from_json(data: Any) -> Any | None:
    """Inverse of `record_to_json`; None for anything it did not write."""
    if not isinstance(data, dict):
        return None
    try:
        if data.get("entity") == "prices" and isinstance(data.get("price"), dict):
            return price_from_json(json.dumps(data["price"]))
        fields = data.get("fields")
        if data.get("entity") == "products" and isinstance(fields, dict):
            return Product(**fields)
        if data.get("entity") == "stock" and isinstance(fields, dict):
            return StockLevel(**fields)
    except (KeyError, TypeError, ValueError, ArithmeticError):
        return None
    return None
