"""A catalogue flow turned around: the channel read, the back office written, by the same pipeline."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from syncagent.connectors.base import Outgoing, PushResult
from syncagent.engine import ChannelSetup, Engine
from syncagent.journal import Journal
from syncagent.model import BadRecord, Page, Product
from tests.support.fakes import NOW, FakeBackoffice, FakeChannel


class Shop(FakeChannel):
    """A channel that is the catalogue's master: it lists its products, two to a page, with no cursor."""

    def __init__(self) -> None:
        super().__init__()
        self.products: list[Any] = []

    def pull(self, entity: str, cursor: str | None, filters: Mapping[str, Any] | None = None) -> Iterator[Page]:
        assert entity == "products" and cursor is None  # read whole each time
        for start in range(0, len(self.products), 2):
            yield Page(self.products[start : start + 2], None)


class Hub(FakeBackoffice):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[dict[str, Any]] = []

    def prepare(self, entity: str, record: Any) -> Outgoing:
        if entity == "products":
            return Outgoing(record.code, {"code": record.code, "description": record.name})
        return super().prepare(entity, record)

    def push(self, entity: str, batch: Sequence[Outgoing]) -> list[PushResult]:
        if entity != "products":
            return super().push(entity, batch)
        self.written += [out.payload for out in batch]
        return [PushResult(out.key, "rejected", reason_code="invalid", reason="no") if out.key == "BAD"
                else PushResult(out.key, "updated") for out in batch]


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[tuple[Engine, Hub, Shop, Journal]]:
    journal = Journal(tmp_path / "j.db")
    hub, shop = Hub(), Shop()
    setup = ChannelSetup("loja", shop, directions={"products": "pull"})  # type: ignore[arg-type]
    engine = Engine(journal, hub, {"loja": setup}, clock=lambda: NOW, wall=time.time)  # type: ignore[arg-type]
    yield engine, hub, shop, journal
    journal.close()


def test_the_channels_products_go_to_the_back_office_once_each_under_their_back_office_codes(parts: Any) -> None:
    engine, hub, shop, journal = parts
    with journal.transaction():
        journal.set_sku_map("loja", [("P1", "SHOP-1")], "csv")  # the shop's SKU SHOP-1 is our P1
    shop.products = [Product("SHOP-1", "Caneca", True), Product("P2", "Pano", True), Product("BAD", "x", True),
                     BadRecord("?", "bad_type", "expected an object", 7)]
    first = engine.run_step("loja", "products")
    assert (first.status, first.read, first.sent, first.quarantined) == ("quarantined", 4, 2, 2)
    assert [w["code"] for w in hub.written] == ["P1", "P2", "BAD"]
    assert shop.pushed == []  # nothing is written to the channel
    hub.written.clear()
    second = engine.run_step("loja", "products")
    assert (second.sent, second.unchanged, hub.written) == (0, 3, [])  # BAD waits in quarantine, unchanged
    shop.products[1] = Product("P2", "Pano listrado", True)
    assert engine.run_step("loja", "products").sent == 1 and hub.written == [{"code": "P2",
                                                                                "description": "Pano listrado"}]


def test_a_dry_run_of_a_turned_around_flow_plans_back_office_writes(parts: Any) -> None:
    engine, hub, shop, _ = parts
    shop.products = [Product("P2", "Pano", True)]
    result, plan = engine.plan_step("loja", "products")
    assert result.status == "ok" and [(w.key, w.payload["description"]) for w in plan] == [("P2", "Pano")]
    assert hub.written == []
