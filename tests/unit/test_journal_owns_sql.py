"""The journal owns all SQL on the journal: no other module writes a query against its tables."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# reconcile's scratch database is its own throw-away file, not the journal; simulators are other systems
ALLOWED = {"journal.py", "journal_sac.py", "reconcile.py"}  # journal_sac: a mixin of the Journal class


def test_no_module_but_the_journal_runs_sql() -> None:
    query = re.compile(r"\.execute(many|script)?\(|\bjournal\.conn\b")
    found = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
             for path in sorted((ROOT / "syncagent").rglob("*.py"))
             if "simulators" not in path.parts and path.name not in ALLOWED
             for n, line in enumerate(path.read_text().splitlines(), 1) if query.search(line)]
    assert found == []
