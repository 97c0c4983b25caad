from __future__ import annotations

import logging
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from syncagent.config import LogConfig
from syncagent.errors import JournalError, JournalGone, JournalLocked
from syncagent.journal import SCHEMA_VERSION, Journal
from syncagent.logs import setup_logging


def test_migrations_are_recorded_and_pragmas_set(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db") as journal:
        assert journal.schema_version() == SCHEMA_VERSION
        assert journal.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert journal.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        rows = journal.conn.execute("SELECT version, description FROM migrations").fetchall()
        assert [r[0] for r in rows] == list(range(1, SCHEMA_VERSION + 1))
        assert journal.integrity() == ["ok"]


def test_second_journal_on_same_file_is_locked_out(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db"), pytest.raises(JournalLocked) as err:
        Journal(tmp_path / "j.db")
    assert "another syncagent" in str(err.value)
    assert err.value.exit_code == 3
    Journal(tmp_path / "j.db").close()  # released on close


def test_lock_is_released_when_the_holder_dies(tmp_path: Path) -> None:
    code = f"from syncagent.journal import Journal; import os; j = Journal({str(tmp_path / 'j.db')!r}); os._exit(9)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 9  # noqa: S603
    Journal(tmp_path / "j.db").close()


def test_newer_schema_is_refused_not_reset(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db") as journal:
        journal.conn.execute("INSERT INTO migrations VALUES (?, 'now', 'from the future')", (SCHEMA_VERSION + 1,))
        journal.record_sent("c", "products", [("P1", "fp", None)])
    with pytest.raises(JournalError) as err:
        Journal(tmp_path / "j.db")
    assert "newer" in str(err.value) and err.value.exit_code == 2
    conn = sqlite3.connect(tmp_path / "j.db")
    assert conn.execute("SELECT count(*) FROM sent").fetchone()[0] == 1  # nothing was reset


def test_corrupt_journal_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    path.write_bytes(b"this is not a database" * 200)
    with pytest.raises(JournalError) as err:
        Journal(path)
    assert str(path) in str(err.value) and "backup" in str(err.value)
    assert path.read_bytes().startswith(b"this is not a database")


def test_transaction_rolls_back_everything_on_error(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db") as journal:
        with pytest.raises(RuntimeError), journal.transaction():
            journal.record_sent("c", "products", [("P1", "fp1", None)])
            journal.save_cursor("c", "products", "cur-1")
            raise RuntimeError("boom")
        assert journal.fingerprints("c", "products", ["P1"]) == {}
        assert journal.cursor("c", "products") is None


def test_fingerprints_and_cursor_round_trip(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db") as journal, journal.transaction():
        journal.record_sent("c", "products", [(f"P{i}", f"fp{i}", None) for i in range(2000)])
        journal.save_cursor("c", "products", "abc")
    with Journal(tmp_path / "j.db") as journal:
        found = journal.fingerprints("c", "products", [f"P{i}" for i in range(0, 2000, 2)] + ["nope"])
        assert len(found) == 1000 and found["P10"] == "fp10"
        assert journal.cursor("c", "products") == "abc"
        assert journal.fingerprints("other", "products", ["P1"]) == {}


def test_order_state_machine_keeps_fields(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db") as journal:
        journal.set_order("c", "o1", "creating", version="3", payload={"total": "10.00"})
        journal.set_order("c", "o1", "created", bo_number="123")
        row = journal.order("c", "o1")
        assert row is not None
        assert (row.state, row.bo_number, row.version, row.payload) == ("created", "123", "3", {"total": "10.00"})
        assert [r.order_id for r in journal.orders_in_state("c", ["created"])] == ["o1"]


def test_quarantine_open_release_drop(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db") as journal:
        journal.quarantine("c", "products", "P1", "missing_field", "name is required", {"key": "P1"}, "fp")
        journal.quarantine("c", "products", "P1", "missing_field", "name is required", {"key": "P1"}, "fp")
        journal.quarantine("c", "products", "P2", "bad_money", "price 'abc'", None)
        rows = journal.quarantined()
        assert [(r.key, r.attempts) for r in rows] == [("P1", 2), ("P2", 1)]
        journal.release("c", "products", ["P1"])
        assert journal.drop_quarantine("c", "products", "P2", "ana", "discontinued item")
        assert journal.quarantined() == []
        dropped = journal.quarantined(state="dropped")
        assert (dropped[0].closed_by, dropped[0].close_reason) == ("ana", "discontinued item")


def test_sku_map_both_ways_and_a_sku_moving_to_another_code(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db") as journal:
        with journal.transaction():
            journal.set_sku_map("loja", [("P1", "A-1"), ("P2", "A-2")], "import:a.csv")
        assert journal.channel_skus("loja", ["P1", "P2", "P3"]) == {"P1": "A-1", "P2": "A-2"}
        assert journal.backoffice_codes("loja", ["A-2", "X"]) == {"A-2": "P2"}
        assert journal.channel_skus("outra", ["P1"]) == {}
        with journal.transaction():  # A-1 now belongs to P3: P1 loses it (a SKU is unique per channel)
            journal.set_sku_map("loja", [("P3", "A-1")], "import:b.csv")
        assert journal.channel_skus("loja", ["P1", "P3"]) == {"P3": "A-1"}
        with journal.transaction():
            journal.set_sku_map("loja", [("P9", "Z")], "import:c.csv", replace=True)
        assert [row[:3] for row in journal.sku_map("loja")] == [("P9", "Z", "import:c.csv")]
        assert journal.sku_map_size("loja") == 1


def test_backlog_counts_what_the_journal_knows_is_waiting(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db") as journal, journal.transaction():
        journal.set_price_boundaries("loja", [("P1", "2026-01-01T00:00:00Z", "{}"), ("P2", "2099-01-01T00:00:00Z", "{}")])
        journal.set_event("loja", "e1", "o1", "shipped", 2, "pending", {"payload": {}})
        journal.set_order("loja", "o2", "creating")
        journal.set_order("loja", "o3", "acknowledged")
        journal.quarantine("loja", "products", "P7", "unmapped_sku", "no SKU", None)
        journal.quarantine("loja", "products", "P8", "invalid", "bad", None)
        assert journal.backlog("loja", "2026-11-30T00:00:00Z") == {
            "prices": 1, "order-events": 1, "orders": 1, "products": 1}
        assert journal.backlog("outra", "2026-11-30T00:00:00Z") == {"prices": 0, "order-events": 0, "orders": 0}


def test_journal_and_its_side_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        with Journal(tmp_path / "j.db") as journal:
            journal.record_sent("c", "products", [("P1", "fp", None)])
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    finally:
        os.umask(old)
    assert {"j.db", "j.db-wal", "j.db-shm"} <= set(modes)
    assert modes == dict.fromkeys(modes, 0o600), modes


def test_log_file_is_private_whatever_the_umask(tmp_path: Path) -> None:
    root = logging.getLogger("syncagent")
    saved = (list(root.handlers), root.level, root.propagate)
    old = os.umask(0o022)
    try:
        setup_logging(LogConfig(file=str(tmp_path / "agent.log")), ())
        logging.getLogger("syncagent.test").warning("order o-1 payload")
    finally:
        os.umask(old)
        for handler in list(root.handlers):
            handler.close()
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
        root.propagate = saved[2]
    assert "order o-1" in (tmp_path / "agent.log").read_text()
    assert stat.S_IMODE((tmp_path / "agent.log").stat().st_mode) == 0o600


def test_deleting_the_lock_file_does_not_let_a_second_agent_in(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db"):
        (tmp_path / "j.db.lock").unlink()
        with pytest.raises(JournalLocked):
            Journal(tmp_path / "j.db")
    Journal(tmp_path / "j.db").close()


def test_a_journal_removed_under_the_agent_stops_it_before_the_next_write(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    with Journal(path) as journal:
        journal.start_run("c", "products")
        for side in tmp_path.glob("j.db*"):
            side.unlink()
        with pytest.raises(JournalGone) as err, journal.transaction():
            journal.record_sent("c", "products", [("P1", "fp", None)])
        assert "was removed" in str(err.value) and str(path) in str(err.value) and err.value.exit_code == 2
        with pytest.raises(JournalGone):
            journal.start_run("c", "products")
    assert not path.exists()


def test_a_journal_replaced_under_the_agent_stops_it(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    Journal(tmp_path / "other.db").close()
    with Journal(path) as journal:
        os.replace(tmp_path / "other.db", path)
        with pytest.raises(JournalGone) as err, journal.transaction():
            journal.record_sent("c", "products", [("P1", "fp", None)])
        assert "was replaced" in str(err.value)
    assert sqlite3.connect(path).execute("SELECT count(*) FROM sent").fetchone()[0] == 0


def test_a_journal_of_schema_6_keeps_its_parked_orders_under_their_new_name(tmp_path: Path) -> None:
    from syncagent.journal import MIGRATIONS

    conn = sqlite3.connect(tmp_path / "j.db")  # a journal as syncagent wrote it before the rename
    with conn:
        conn.execute("CREATE TABLE migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL,"
                     " description TEXT NOT NULL)")
        for version, (description, script) in enumerate(MIGRATIONS[:6], start=1):
            conn.executescript(script)
            conn.execute("INSERT INTO migrations VALUES (?, 'then', ?)", (version, description))
        conn.execute("INSERT INTO orders (channel, order_id, state, reason, seen_at, updated_at)"
                     " VALUES ('loja', 'o1', 'pending', 'back office down', 'then', 'then')")
    conn.close()
    with Journal(tmp_path / "j.db") as journal:
        row = journal.order("loja", "o1")
        assert row is not None and row.state == "parked" and row.reason == "back office down"


def test_what_a_quarantined_record_waits_for_is_kept_as_data(tmp_path: Path) -> None:
    from syncagent.journal import missing_references, open_quarantine

    with Journal(tmp_path / "j.db") as journal:
        journal.quarantine("loja", "orders", "o1", "validation_error", "the back office said no", {},
                           waiting_for=(("product", "P 1"), ("customer", "c'9")))
        journal.quarantine("loja", "orders", "o2", "validation_error", "unknown product 'P2'", {})  # before schema 8
        rows = {r.key: r for r in journal.quarantined("loja")}
        assert rows["o1"].waiting_for == (("product", "P 1"), ("customer", "c'9"))
        assert missing_references("validation_error", rows["o1"].reason, rows["o1"].waiting_for) == {
            ("product", "P 1"), ("customer", "c'9")}
        assert missing_references("validation_error", rows["o2"].reason, rows["o2"].waiting_for) == {("product", "P2")}
        assert [r[5] for r in open_quarantine(journal.conn)] == [(("product", "P 1"), ("customer", "c'9")), ()]
