"""Runnable servers of the back office and of each channel, for `make demo` and the tests.

Each module exposes ``build(db_path, *, products, seed, log_bodies, **options) -> SimApp``.
"""

from __future__ import annotations

import importlib

from syncagent.simulators.common import SimApp

SIMULATORS = {
    "gestao-lojas": "syncagent.simulators.gestao_lojas",
    "jumpseller": "syncagent.simulators.jumpseller",
    "mercadolivre": "syncagent.simulators.mercadolivre",
    "netshoes": "syncagent.simulators.netshoes",
    "pluggto": "syncagent.simulators.pluggto",
    "sellerup": "syncagent.simulators.sellerup",
    "skyhub": "syncagent.simulators.skyhub",
    "vendus": "syncagent.simulators.vendus",
    "via": "syncagent.simulators.via",
    "vtex": "syncagent.simulators.vtex",
}


def build(
    system: str, db_path: str, *, products: int = 200, seed: int = 42, log_bodies: bool = True, **options: str
) -> SimApp:
    """Options are strings (from the command line); each simulator converts the ones it knows."""
    module = importlib.import_module(SIMULATORS[system])
    return module.build(db_path, products=products, seed=seed, log_bodies=log_bodies, **options)
