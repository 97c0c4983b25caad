"""Entities are defined once; config, CLI, reconcile, scheduler and connectors follow that table."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from syncagent import cli, entities, reconcile, scheduler
from syncagent.config import DIRECTIONS
from syncagent.connectors import registry
from syncagent.mapping import SKU_ENTITIES
from syncagent.model import ALL_FLOWS, CATALOGUE_ENTITIES


def test_the_flows_and_their_default_directions_are_those_of_design_section_1() -> None:
    assert entities.FLOWS == ("orders", "order-events", "tickets", "ticket-answers", "deliveries", "groups",
                              "payment-methods", "sellers", "products", "prices", "stock", "customers")
    directions = {name: entities.default_direction(name) for name in entities.FLOWS}
    assert directions == {**{name: "push" for name in entities.FLOWS}, "orders": "pull", "customers": "both",
                          "tickets": "pull", "deliveries": "pull"}
    assert entities.default_direction("no-such-flow") == "push"
    assert DIRECTIONS == ("push", "pull", "both")


def test_every_module_reads_the_one_table() -> None:
    assert ALL_FLOWS == entities.FLOWS and CATALOGUE_ENTITIES == entities.CATALOGUE
    assert SKU_ENTITIES == entities.SKU_KEYED == ("products", "prices", "stock")
    assert reconcile.ENTITIES == entities.CATALOGUE
    assert {"orders", "order-events", "tickets", "ticket-answers", "deliveries"} == scheduler.INTAKE_FLOWS
    push = next(p for p in cli.push.params if p.name == "entity")
    assert isinstance(push.type, click.Choice)
    assert set(push.type.choices) == set(entities.PUSHABLE) == set(entities.CATALOGUE) | {"order-events", "ticket-answers"}
    check = next(p for p in cli.reconcile.params if p.name == "entity")
    assert isinstance(check.type, click.Choice) and tuple(check.type.choices) == entities.CATALOGUE


def test_messages_inside_a_flow_are_entities_but_not_flows() -> None:
    for name in ("order-acks", "order-cancels", "customer-links", "channel-customers", "ticket-messages",
                 "ticket-events", "tracking"):
        assert not entities.get(name).flow and name not in entities.FLOWS
    with pytest.raises(KeyError, match="unknown entity 'nope'"):
        entities.get("nope")


@pytest.mark.parametrize("type_name", sorted(registry.CONNECTORS))
def test_no_connector_calls_an_entity_stable_that_depends_on_more_than_the_record(type_name: str) -> None:
    caps = registry.capabilities(type_name)
    assert caps is not None
    assert caps.stable <= entities.STABLE  # prices follow the clock, stock sums several records
    assert caps.push | caps.pull <= set(entities.ENTITIES)  # every entity a connector names is defined


def test_the_engine_has_one_handler_for_every_flow_and_refuses_an_unknown_one(tmp_path: Path) -> None:
    from syncagent.engine import ChannelSetup, Engine
    from syncagent.journal import Journal
    from tests.support.fakes import FakeBackoffice, FakeChannel

    with Journal(tmp_path / "j.db") as journal:
        engine = Engine(journal, FakeBackoffice(), {"loja": ChannelSetup("loja", FakeChannel())})
        assert set(engine._flow_handlers()) == set(entities.FLOWS)
        result = engine.run_step("loja", "invoices")
        assert (result.status, result.error) == ("failed", "unknown flow 'invoices'")
