"""`source:` and `sink:` per flow: a flow turned around by the config; files without them load as before."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_config import GOOD, line_of, load, problems


def with_products(flow: str) -> str:
    return GOOD.replace("      products: {}\n", f"      products: {flow}\n", 1)


@pytest.mark.parametrize("flow", ["{source: channel}", "{sink: backoffice}", "{source: channel, sink: backoffice}",
                                  "{source: channel, direction: pull}"])
def test_source_channel_or_sink_backoffice_turns_the_catalogue_around(tmp_path: Path, flow: str) -> None:
    products = load(tmp_path, with_products(flow)).channel("loja-a").flow("products")  # type: ignore[union-attr]
    assert products is not None and products.direction == "pull"


def test_the_default_ends_say_what_direction_said(tmp_path: Path) -> None:
    a = load(tmp_path, with_products("{source: backoffice, sink: channel}")).channel("loja-a")
    assert a.flow("products").direction == "push"  # type: ignore[union-attr]
    plain = load(tmp_path, GOOD).channel("loja-a")
    assert {f.name: f.direction for f in plain.flows} == {"orders": "pull", "products": "push", "stock": "push",
                                                          "customers": "pull"}


def test_ends_that_contradict_each_other_or_the_direction_are_reported_at_their_line(tmp_path: Path) -> None:
    text = with_products("{source: channel,\n                 sink: channel}")
    (problem,) = problems(tmp_path, text)
    assert (problem.key, problem.line) == ("channels[0].flows.products.sink", line_of(text, "sink: channel"))
    text = with_products("{direction: push, source: channel}")
    (problem,) = problems(tmp_path, text)
    assert problem.key == "channels[0].flows.products.source" and "direction: pull" in problem.found
    (problem,) = problems(tmp_path, with_products("{source: shop}"))
    assert problem.key == "channels[0].flows.products.source" and "backoffice, channel" in problem.expected


def test_a_flow_the_back_office_cannot_take_is_refused(tmp_path: Path) -> None:
    text = GOOD.replace("      stock: {batch_size: 500}\n", "      stock: {batch_size: 500, source: channel}\n")
    found = {p.found for p in problems(tmp_path, text)}
    assert found == {"stock with direction pull (sellerup cannot pull stock)",
                     "stock from the channel (gestao-lojas cannot take stock)"}
