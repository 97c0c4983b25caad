"""Connector types by name. Adding a system means one line here and one module.

Connector modules are imported lazily: loading the config or the CLI must not pay for (or be broken
by) a connector the file does not use.
"""

from __future__ import annotations

import importlib

from syncagent.connectors.base import Capabilities, Connector, OptionSpec
from syncagent.errors import ConfigError

CONNECTORS: dict[str, str] = {
    "gestao-lojas": "syncagent.connectors.gestao_lojas:GestaoLojasConnector",
    "jumpseller": "syncagent.connectors.jumpseller:JumpsellerConnector",
    "mercadolivre": "syncagent.connectors.mercadolivre:MercadoLivreConnector",
    "netshoes": "syncagent.connectors.netshoes:NetshoesConnector",
    "pluggto": "syncagent.connectors.pluggto:PluggtoConnector",
    "sellerup": "syncagent.connectors.sellerup:SellerUpConnector",
    "skyhub": "syncagent.connectors.skyhub:SkyHubConnector",
    "vendus": "syncagent.connectors.vendus:VendusConnector",
    "via": "syncagent.connectors.via:ViaConnector",
    "vtex": "syncagent.connectors.vtex:VtexConnector",
}


def load(type_name: str) -> type[Connector]:
    """The connector class of `type_name`; any failure to find or import it is a ConfigError."""
    try:
        module_name, _, class_name = CONNECTORS[type_name].partition(":")
    except KeyError:
        raise ConfigError(f"unknown connector type {type_name!r} (known: {', '.join(sorted(CONNECTORS))})") from None
    try:
        cls: type[Connector] = getattr(importlib.import_module(module_name), class_name)
        return cls
    except (ImportError, AttributeError, SyntaxError) as exc:
        raise ConfigError(f"connector type {type_name!r} cannot be loaded from {CONNECTORS[type_name]}: "
                          f"{exc}") from exc


def option_schema(type_name: str) -> dict[str, OptionSpec] | None:
    """The type-specific config keys of a connector; None when the type is unknown."""
    if type_name not in CONNECTORS:
        return None
    return dict(load(type_name).options)


def capabilities(type_name: str) -> Capabilities | None:
    """What a connector type can push and pull; None when the type is unknown."""
    if type_name not in CONNECTORS:
        return None
    return load(type_name).capabilities
