"""Round trip through the real simulators: what the back office publishes is what the channel holds.

Generated values (hypothesis, few examples so it runs in seconds): sub-second times in several
time zones, accents and emoji, long amounts, empty optional fields. Each example is written into
the back office simulator through its admin API, pushed by a real agent over HTTP, and read back
from the channel simulator's admin state, field by field. Where a channel's contract cannot hold
a field as the back office gives it, the documented transformation is asserted instead
(docs/connectors/<name>.md).
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncagent.agent import Agent
from syncagent.config import load_config
from syncagent.connectors.vtex import MEASUREMENT_UNITS, OPEN_FROM, OPEN_UNTIL
from syncagent.simulators import build
from syncagent.simulators.common import serve_in_thread
from tests.integration import test_vtex as vt
from tests.integration.harness import CANARY_ENV, Sim, Sims, start, write_config

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)  # the agent's clock: which promotion is running is decided here
FLOWS = ["groups", "payment-methods", "sellers", "products", "prices", "customers"]
EXAMPLES = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# text as people type it: accents, emoji, CJK, spaces inside; no control characters
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), min_size=1, max_size=30).filter(
    lambda s: s.strip() != "")
WORDS = st.sampled_from(["Açaí", "Pão de Queijo 🧀", "Camiseta Básica — Algodão", "Tênis 👟 Corrida", "São João",
                         "Café ☕ Orgânico 500g", "Ñandú", "Maçã Fuji", "🎉", "Coração ❤️"])
NAMES = st.one_of(WORDS, TEXT)
OPTIONAL = st.one_of(st.none(), NAMES)
# amounts with two places, from cents to hundreds of billions
MONEY = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("999999999999.99"), places=2).map(str)
ZONES = st.sampled_from([UTC, timezone(timedelta(hours=-3)), timezone(timedelta(hours=5, minutes=30)),
                         timezone(timedelta(hours=-9, minutes=-30)), timezone(timedelta(hours=14))])
OFFSETS = st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(days=400))


def ean13(body: int) -> str:
    digits = f"{body:012d}"
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(digits))
    return digits + str((10 - total % 10) % 10)


BARCODES = st.one_of(st.none(), st.integers(min_value=10**11, max_value=10**12 - 1).map(ean13))


def moment(base: datetime, sign: int) -> st.SearchStrategy[str]:
    """An instant before (-1) or after (+1) `base`, with microseconds, written in one of several zones."""
    return st.tuples(OFFSETS, st.integers(0, 999999), ZONES).map(
        lambda t: (base + sign * t[0]).replace(microsecond=t[1]).astimezone(t[2]).isoformat())


@dataclass
class Rig:
    sims: Sims
    config: Path
    bo_db: Path
    codes: dict[str, list[str]]


@pytest.fixture(scope="module")
def sellerup_rig() -> Iterator[Rig]:
    saved = {k: os.environ.get(k) for k in CANARY_ENV}
    os.environ.update(CANARY_ENV)
    root = Path(tempfile.mkdtemp(prefix="syncagent-roundtrip-"))
    bo = start("gestao-lojas", root / "bo.db", products=6)
    su = start("sellerup", root / "su.db", products=6)
    sims = Sims(bo, su)
    config = write_config(root, sims, flows=FLOWS)
    config.write_text(config.read_text().replace("direction: both", "direction: push"))
    conn = sqlite3.connect(root / "bo.db")
    try:
        codes = {table: [r[0] for r in conn.execute(f"SELECT code FROM {table} ORDER BY code LIMIT 3")]  # noqa: S608
                 for table in ("item_groups", "payment_methods", "sellers", "customers", "products")}
    finally:
        conn.close()
    yield Rig(sims, config, root / "bo.db", codes)
    su.server.stop()
    bo.server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def push_all(config: Path) -> None:
    with Agent(load_config(config), clock=lambda: NOW) as agent:
        results = agent.run_steps(agent.steps())
    failed = [(r.flow, r.status, r.error) for r in results if r.status != "ok"]
    assert not failed, failed


def held(sim: Sim, collection: str, key: str) -> dict[str, Any]:
    items = {i["key"]: i for i in sim.admin("GET", f"/_admin/collections/{collection}")["items"]}
    return items[key]


def instant(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text.replace("Z", "+00:00"))


@st.composite
def catalogue(draw: st.DrawFn, codes: dict[str, list[str]]) -> dict[str, dict[str, Any]]:
    """One change of each entity the back office publishes to Seller Up."""
    running = draw(st.booleans())
    return {
        "group": {"description": draw(NAMES), "parent_code": draw(st.one_of(st.none(), st.just(codes["item_groups"][0]))),
                  "active": draw(st.booleans())},
        "payment": {"description": draw(NAMES), "type": draw(st.sampled_from(["cash", "credit_card", "pix", "boleto"])),
                    "max_installments": draw(st.integers(1, 24)),
                    "active": draw(st.booleans())},
        "seller": {"name": draw(NAMES), "email": None, "store_code": draw(st.sampled_from(["L01", "L02"])),
                   "active": draw(st.booleans())},
        "product": {"description": draw(NAMES), "brand": draw(OPTIONAL), "barcode": draw(BARCODES),
                    "group_code": draw(st.one_of(st.none(), st.sampled_from(codes["item_groups"]))),
                    "unit": draw(st.sampled_from(["UN", "KG", "PAR", "CX"])), "active": draw(st.booleans())},
        "price": {"list_price": draw(MONEY), "promo_price": draw(st.one_of(st.none(), MONEY)),
                  "promo_start": draw(st.one_of(st.none(), moment(NOW, -1 if running else 1))),
                  "promo_end": draw(st.one_of(st.none(), moment(NOW, 1 if running else -1))), "scheduled": []},
        "customer": {"name": draw(NAMES), "email": draw(st.one_of(st.none(), st.just("ana.açaí@exemplo.com.br"))),
                     "phone": draw(st.one_of(st.none(), st.just("+55 (11) 98765-4321"))),
                     "address": draw(st.one_of(st.none(), st.builds(
                         lambda city, state: {"street": "Rua São Bento", "number": "1", "complement": None,
                                              "district": "Sé", "city": city, "state": state, "zip": "01010000",
                                              "country": "BR"}, NAMES, st.sampled_from(["SP", "MG", "BA"]))))},
    }


def test_what_the_back_office_publishes_seller_up_holds(sellerup_rig: Rig) -> None:
    rig = sellerup_rig
    codes = rig.codes

    @EXAMPLES
    @given(change=catalogue(codes))
    def round_trip(change: dict[str, dict[str, Any]]) -> None:
        group, method, seller = codes["item_groups"][1], codes["payment_methods"][1], codes["sellers"][1]
        product, customer = codes["products"][0], codes["customers"][0]
        bo = rig.sims.bo
        bo.admin("PATCH", f"/_admin/groups/{group}", json=change["group"])
        bo.admin("PATCH", f"/_admin/payment-methods/{method}", json=change["payment"])
        bo.admin("PATCH", f"/_admin/sellers/{seller}", json=change["seller"])
        bo.admin("PATCH", f"/_admin/products/{product}", json=change["product"])
        bo.admin("PATCH", f"/_admin/prices/{product}", json=change["price"])
        bo.admin("PATCH", f"/_admin/customers/{customer}", json=change["customer"])
        push_all(rig.config)
        su = rig.sims.su

        g = change["group"]
        assert held(su, "groups", group) == {"key": group, "name": g["description"], "parent_key": g["parent_code"],
                                             "active": g["active"]}
        m = change["payment"]
        assert held(su, "payment-methods", method) == {
            "key": method, "name": m["description"], "type": m["type"], "max_installments": m["max_installments"],
            "active": m["active"]}
        s = change["seller"]
        assert held(su, "sellers", seller) == {"key": seller, "name": s["name"], "store": s["store_code"],
                                               "active": s["active"]}
        p = change["product"]
        assert held(su, "products", product) == {"key": product, "name": p["description"], "barcode": p["barcode"],
                                                 "brand": p["brand"], "group_key": p["group_code"], "unit": p["unit"],
                                                 "active": p["active"]}
        # Seller Up holds the price in force (docs/connectors/sellerup.md): the promotion running at NOW
        pr = change["price"]
        start, end = instant(pr["promo_start"]), instant(pr["promo_end"])
        running = pr["promo_price"] is not None and (start is None or start <= NOW) and (end is None or end > NOW)
        got = held(su, "prices", product)
        assert (got["price"], got["promo_price"]) == (pr["list_price"], pr["promo_price"] if running else None)
        assert instant(got["promo_until"]) == (end if running else None)  # the instant exactly, sub-second too
        c = change["customer"]
        address = c["address"] or {}
        got = held(su, "customers", customer)
        assert {k: got[k] for k in ("name", "email", "phone", "city", "state")} == {
            "name": c["name"], "email": c["email"], "phone": c["phone"], "city": address.get("city"),
            "state": address.get("state")}

    round_trip()


# -- VTEX -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def vtex_rig() -> Iterator[Rig]:
    env = {"IT_BO_SECRET": vt.BO_SECRET, "IT_VTEX_KEY": vt.APP_KEY, "IT_VTEX_TOKEN": vt.APP_TOKEN}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    root = Path(tempfile.mkdtemp(prefix="syncagent-roundtrip-vtex-"))
    bo = Sim(serve_in_thread(build("gestao-lojas", str(root / "bo.db"), products=3, seed=7,
                                   client_secret=vt.BO_SECRET)))
    vtex = Sim(serve_in_thread(build("vtex", str(root / "vtex.db"), products=3, seed=7, app_key=vt.APP_KEY,
                                     app_token=vt.APP_TOKEN, orders="0")))
    config = root / "syncagent.yaml"
    text = vt.CONFIG.format(journal=root / "journal.db", bo=bo.url, vtex=vtex.url,
                            categories=json.dumps(vt.CATEGORIES), brands=json.dumps(vt.BRANDS))
    config.write_text(text.replace("      stock: {every: 1m}\n      orders: {every: 1m}\n      order-events: {every: 1m}\n",
                                   ""))
    yield Rig(Sims(bo, vtex), config, root / "bo.db", {})
    vtex.server.stop()
    bo.server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


MEASURES = st.decimals(min_value=Decimal("0.001"), max_value=Decimal("99999"), places=12).map(str)


@st.composite
def vtex_change(draw: st.DrawFn) -> dict[str, dict[str, Any]]:
    """A product and its price as the back office may give them (VTEX needs a mapped group and brand)."""
    start = draw(st.one_of(st.none(), st.tuples(st.timedeltas(timedelta(days=-400), timedelta(days=400)),
                                                st.integers(0, 999999))))
    begin = None if start is None else (NOW + start[0]).replace(microsecond=start[1])
    length = draw(st.timedeltas(timedelta(seconds=1), timedelta(days=400)))
    end = draw(st.one_of(st.none(), st.tuples(st.integers(0, 999999), ZONES)))
    until = None if end is None else ((begin or NOW - timedelta(days=1)) + length).replace(microsecond=end[0])
    zone = draw(ZONES)
    return {
        "product": {"description": draw(NAMES), "brand": draw(st.sampled_from(sorted(vt.BRANDS))),
                    "group_code": draw(st.sampled_from(sorted(vt.CATEGORIES))), "barcode": draw(BARCODES),
                    "ncm": draw(st.one_of(st.none(), st.integers(10**7, 10**8 - 1).map(str))),
                    "unit": draw(st.sampled_from(["UN", "KG", "PAR", "CX", "M", "G"])), "active": draw(st.booleans()),
                    "weight_kg": draw(MEASURES), "height_cm": draw(MEASURES), "width_cm": draw(MEASURES),
                    "length_cm": draw(MEASURES)},
        "price": {"list_price": draw(MONEY), "promo_price": draw(st.one_of(st.none(), MONEY)),
                  "promo_start": None if begin is None else begin.astimezone(zone).isoformat(),
                  "promo_end": None if until is None else until.astimezone(end[1]).isoformat(),  # type: ignore[index]
                  "scheduled": []},
    }


def by_ref(items: list[dict[str, Any]], ref: str) -> dict[str, Any]:
    (item,) = [i for i in items if i.get("RefId") == ref]
    return item


def test_what_the_back_office_publishes_vtex_holds(vtex_rig: Rig) -> None:
    rig = vtex_rig
    code = "P000001"

    @EXAMPLES
    @given(change=vtex_change())
    def round_trip(change: dict[str, dict[str, Any]]) -> None:
        bo, vtex = rig.sims.bo, rig.sims.su
        bo.admin("PATCH", f"/_admin/products/{code}", json=change["product"])
        bo.admin("PATCH", f"/_admin/prices/{code}", json=change["price"])
        push_all(rig.config)
        state = vtex.admin("GET", "/_admin/state")
        p = change["product"]
        product, sku = by_ref(state["products"], code), by_ref(state["skus"], code)
        assert {k: product[k] for k in ("Name", "CategoryId", "BrandId", "IsActive", "IsVisible", "Title", "TaxCode")} \
            == {"Name": p["description"], "CategoryId": vt.CATEGORIES[p["group_code"]],
                "BrandId": vt.BRANDS[p["brand"]], "IsActive": p["active"], "IsVisible": True,
                "Title": p["description"][:150], "TaxCode": p["ncm"] or ""}
        assert (sku["Name"], sku["ActivateIfPossible"]) == (p["description"], p["active"])
        # VTEX holds measures as JSON numbers (doubles) and the weight in whole grams (docs/connectors/vtex.md)
        for ours, theirs in (("height_cm", "Height"), ("width_cm", "Width"), ("length_cm", "Length")):
            assert sku[theirs] == sku[f"Packaged{theirs}"] == float(Decimal(p[ours]))
        grams = Decimal(p["weight_kg"]) * 1000
        assert sku["PackagedWeightKg"] == max(1, int(grams.to_integral_value())) and abs(
            max(1, sku["PackagedWeightKg"]) - max(Decimal(1), grams)) <= Decimal("0.5")
        unit = p["unit"].lower()
        assert sku["MeasurementUnit"] == (unit if unit in MEASUREMENT_UNITS else "un")
        assert [e["ean"] for e in state["eans"] if e["skuId"] == sku["Id"]] == ([p["barcode"]] if p["barcode"] else [])

        pr = change["price"]
        (price,) = [x for x in state["prices"] if x["itemId"] == str(sku["Id"])]
        assert Decimal(repr(price["basePrice"])) == Decimal(pr["list_price"])  # an amount of 2 places, exactly
        start, end = instant(pr["promo_start"]), instant(pr["promo_end"])
        expected = []
        if pr["promo_price"] is not None and (end is None or end > NOW):
            expected = [(Decimal(pr["promo_price"]), Decimal(pr["list_price"]), start or OPEN_FROM, end or OPEN_UNTIL)]
        assert [(Decimal(repr(f["value"])), Decimal(repr(f["listPrice"])), instant(f["dateRange"]["from"]),
                 instant(f["dateRange"]["to"])) for f in price["fixedPrices"]] == expected  # instants exactly

    round_trip()
