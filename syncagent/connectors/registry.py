"""Connector types by name. Adding a channel means one line here and one module."""

from __future__ import annotations

import importlib
from typing import Any

from syncagent.connectors.base import Capabilities, OptionSpec
from syncagent.errors import ConfigError

CONNECTORS: dict[str, str] = {
    "gestao-lojas": "syncagent.connectors.gestao_lojas:GestaoLojasConnector",
    "sellerup": "syncagent.connectors.sellerup:SellerUpConnector",
}


def load(type_name: str) -> Any:
    try:
        module_name, _, class_name = CONNECTORS[type_name].partition(":")
    except KeyError:
        raise ConfigError(f"unknown connector type {type_name!r} (known: {', '.join(sorted(CONNECTORS))})") from None
    return getattr(importlib.import_module(module_name), class_name)


def option_schema(type_name: str) -> dict[str, OptionSpec] | None:
    if type_name not in CONNECTORS:
        return None
    return dict(load(type_name).options)


def capabilities(type_name: str) -> Capabilities:
    return load(type_name).capabilities  # type: ignore[no-any-return]
