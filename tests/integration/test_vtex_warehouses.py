"""The agent sends VTEX one level per VTEX warehouse, each the sum of the back office warehouses feeding it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from syncagent.agent import Agent
from syncagent.config import load_config
from syncagent.simulators import build
from syncagent.simulators.common import serve_in_thread
from tests.integration.test_vtex import (
    APP_KEY,
    APP_TOKEN,
    BO_SECRET,
    BRANDS,
    CATEGORIES,
    CONFIG,
    Vtex,
    start_vtex,
)


def test_several_vtex_warehouses_get_their_own_sums(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IT_BO_SECRET", BO_SECRET)
    monkeypatch.setenv("IT_VTEX_KEY", APP_KEY)
    monkeypatch.setenv("IT_VTEX_TOKEN", APP_TOKEN)
    bo = Vtex(serve_in_thread(build("gestao-lojas", str(tmp_path / "bo.db"), products=20, seed=7,
                                    client_secret=BO_SECRET)))
    vtex = start_vtex(tmp_path, orders="0")
    try:
        for warehouse, (available, reserved) in {"CD01": (10, 2), "LJ01": (5, 0), "LJ02": (7, 1)}.items():
            bo.admin("PUT", f"/_admin/stock/P000003/{warehouse}", json={"available": available, "reserved": reserved})
        text = CONFIG.format(journal=tmp_path / "journal.db", bo=bo.url, vtex=vtex.url,
                             categories=json.dumps(CATEGORIES), brands=json.dumps(BRANDS))
        text = text.replace("    warehouse_id: cd01\n", "    warehouse_map: {cd01: [CD01], lj01: [LJ01, LJ02]}\n")
        text = text.replace("    warehouses: [CD01, LJ01]\n", "    warehouses: [CD01, LJ01, LJ02]\n")
        text = text.replace("      orders: {every: 1m}\n      order-events: {every: 1m}\n", "")
        path = tmp_path / "syncagent.yaml"
        path.write_text(text)
        with Agent(load_config(path)) as agent:
            results = agent.run_once()
        assert all(r.status == "ok" for r in results), [(r.flow, r.error) for r in results]
        state = vtex.admin("GET", "/_admin/state")
        sku_of = {str(s["Id"]): s["RefId"] for s in state["skus"]}
        levels = {(sku_of[str(i["skuId"])], i["warehouseId"]): i["quantity"] for i in state["inventory"]}
        assert levels[("P000003", "cd01")] == 10 - 2
        assert levels[("P000003", "lj01")] == (5 - 0) + (7 - 1)
        assert len(levels) == 2 * 20
    finally:
        vtex.server.stop()
        bo.server.stop()
