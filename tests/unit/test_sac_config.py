"""The contract 1.1 parts of the config, doctor and the Correios rules, without a network."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncagent.config import ConfigProblems, describe, load_config
from syncagent.connectors.correios import check_digit, code_problem, status_of
from syncagent.doctor import check_sac

BASE = """\
backoffice: {type: gestao-lojas, base_url: "http://127.0.0.1:1", client_id: a, client_secret: "${S}"}
channels:
  - name: loja
    type: sellerup
    base_url: http://127.0.0.1:2
    api_key: ${S}
    flows: {deliveries: {every: 30m}}
"""
CARRIERS = """\
carriers:
  - name: correios
    type: correios
    base_url: https://api.correios.com.br
    names: [Correios, SEDEX]
    user: u
    access_code: ${S}
    silent_after: 5d
    poll_every: 2h
  - name: jadlog
    type: jadlog
    base_url: https://www.jadlog.com.br
    names: [Jadlog]
    token: ${S}
"""


def load(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return load_config(path, env={"S": "secret-value"})


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigProblems) as caught:
        load(tmp_path, text)
    return [f"{p.line}: {p.key}: {p.expected} / {p.found}" for p in caught.value.problems]


def test_carriers_load_with_their_names_silence_and_poll_interval(tmp_path: Path) -> None:
    config = load(tmp_path, BASE + CARRIERS)
    correios, jadlog = config.carriers
    assert (correios.name, correios.type, correios.names) == ("correios", "correios", ("Correios", "SEDEX"))
    assert (correios.silent_after, correios.poll_every) == (5 * 86400, 7200)
    assert jadlog.silent_after == 7 * 86400 and jadlog.poll_every == 0
    assert "secret-value" in config.secrets
    assert [name for name, _ in config.endpoints()] == ["backoffice", "loja", "correios", "jadlog"]
    summary = describe(config)
    assert "correios (correios) at https://api.correios.com.br: tracks Correios, SEDEX" in summary
    assert "silent after 5d; each shipment polled at most every 2h" in summary and "secret-value" not in summary


def test_carrier_mistakes_are_named_with_their_line(tmp_path: Path) -> None:
    text = BASE + CARRIERS.replace("names: [Jadlog]", "names: [sedex]").replace("type: jadlog", "type: sellerup")
    found = problems(tmp_path, text)
    assert any("carriers[1].type" in p and "(a channel type)" in p for p in found), found
    bad = BASE + CARRIERS.replace("    names: [Jadlog]\n", "").replace("name: jadlog", "name: correios")
    found = problems(tmp_path, bad)
    assert any("carriers[1].name" in p and "'correios' again" in p for p in found), found
    assert any("carriers[1].names" in p and "required" in p for p in found), found
    swapped = BASE.replace("type: sellerup", "type: correios")
    assert any("channels[0].type" in p and "carriers:" in p for p in problems(tmp_path, swapped))
    twice = BASE + CARRIERS.replace("names: [Jadlog]", "names: [Jadlog, SEDEX]")
    assert any("'SEDEX', also in the names of 'correios'" in p for p in problems(tmp_path, twice))


@pytest.mark.parametrize("flow", ["tickets", "ticket-answers"])
def test_tickets_on_a_channel_without_a_ticket_api_are_refused_with_why(tmp_path: Path, flow: str) -> None:
    text = BASE.replace("type: sellerup\n    base_url: http://127.0.0.1:2\n    api_key: ${S}",
                        "type: vtex\n    base_url: http://127.0.0.1:2\n    account: loja\n    app_key: ${S}\n"
                        "    app_token: ${S}").replace("{deliveries: {every: 30m}}", f"{{{flow}: {{}}}}")
    (problem,) = [p for p in problems(tmp_path, text) if flow in p]
    assert "not offered for vtex" in problem and "e-mail log" in problem


def test_a_ticket_flow_on_a_channel_that_cannot_is_refused(tmp_path: Path) -> None:
    text = BASE.replace("{deliveries: {every: 30m}}", "{tickets: {}}")
    assert any("sellerup cannot pull tickets" in p for p in problems(tmp_path, text))


def test_doctor_says_plainly_which_channels_have_no_ticket_api(tmp_path: Path) -> None:
    text = BASE.replace("type: sellerup\n    base_url: http://127.0.0.1:2\n    api_key: ${S}",
                        "type: vtex\n    base_url: http://127.0.0.1:2\n    account: loja\n    app_key: ${S}\n"
                        "    app_token: ${S}").replace("{deliveries: {every: 30m}}", "{orders: {}}\n    order_warehouse: CD01")
    (finding,) = check_sac(load(tmp_path, text))
    assert finding.check == "sac:loja" and "not offered" in finding.message and "vtex" in finding.message


def test_correios_check_digit_and_event_table() -> None:
    assert check_digit("12345678") == 5  # the reference's worked example: AA123456785BR
    assert code_problem("AA123456785BR") is None
    assert "check digit" in (code_problem("AA123456784BR") or "")
    assert "not a Correios object code" in (code_problem("123") or "")
    assert [status_of("PO", 9), status_of("RO", 1), status_of("OEC", 1)] == ["posted", "in_transit",
                                                                              "out_for_delivery"]
    assert [status_of(c, 1) for c in ("BDE", "BDI", "BDR")] == ["delivered"] * 3
    assert [status_of("BDE", t) for t in (20, 25, 34, 35, 46, 47)] == ["delivery_failed"] * 6
    assert status_of("BDR", 23) == "returned" and status_of("BDE", 99) == "exception"
    assert status_of("LDI", 1) == "in_transit"  # not in the reference's table: still on its way
