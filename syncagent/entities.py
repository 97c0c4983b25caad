"""Every entity the agent moves, defined once: its name, key, default direction and traits.

Engine, config, CLI, reconcile and connectors read these instead of spelling entity names and
their rules in several places. A *flow* is an entity the config can schedule (``products:
{every: 15m}``); the other entities are the messages a flow exchanges on the way (an order's
acknowledgement, a customer's link, a cancellation in the back office).

Directions are seen from the back office, the default source of master data: ``push`` means
back office → channel, ``pull`` channel → back office, ``both`` each way. A flow's config may
name another source and sink (`FlowConfig.source` / `sink`); the default direction only says
which way a flow runs when the config says nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

PUSH, PULL, BOTH = "push", "pull", "both"
DIRECTIONS = (PUSH, PULL, BOTH)


@dataclass(frozen=True, slots=True)
class Entity:
    """One kind of record and the rules the engine applies to it."""

    name: str
    key: str  # what identifies one record of it, in words (the journal keys it by this)
    direction: str = PUSH  # the default direction of its flow
    flow: bool = True  # the config may schedule it; False: a message exchanged inside another flow
    catalogue: bool = False  # master data a push reads from a feed: dry-run, reconcile, --full apply
    sku: bool = False  # keyed by the product code: the channel's DE/PARA SKU applies
    # the mapped payload depends on the record and the channel's config only (not the clock, not other
    # records): a feed page read again byte for byte need not be mapped again
    stable: bool = False


# Order of flows here is the default run order and the order the config lists them.
ENTITIES: dict[str, Entity] = {e.name: e for e in (
    Entity("orders", "(channel, channel order id)", PULL),
    Entity("order-events", "(order, event id)"),
    # customer service: tickets opened on the channel come in; the back office's answers go back to them only
    Entity("tickets", "(channel, ticket kind, channel ticket id)", PULL),
    Entity("ticket-answers", "(ticket, back office event id)"),
    # delivery statuses of the channel's shipments, read from their carrier (or the channel) into the back office
    Entity("deliveries", "(tracking code, status, time)", PULL),
    Entity("groups", "group code", catalogue=True, stable=True),
    Entity("payment-methods", "payment method code", catalogue=True, stable=True),
    Entity("sellers", "seller code", catalogue=True, stable=True),
    Entity("products", "product code (SKU)", catalogue=True, sku=True, stable=True),
    Entity("prices", "product code", catalogue=True, sku=True),  # the price in force depends on the clock
    Entity("stock", "product code (and channel location)", catalogue=True, sku=True),  # summed over warehouses
    Entity("customers", "customer code ⇄ channel customer id", BOTH, catalogue=True, stable=True),
    Entity("channel-customers", "channel customer id", PULL, flow=False),
    Entity("customer-links", "channel customer id", flow=False),
    Entity("order-acks", "channel order id", flow=False),
    Entity("order-cancels", "channel order id", PULL, flow=False),
    Entity("ticket-messages", "(ticket, channel message id)", PULL, flow=False),
    Entity("ticket-events", "back office ticket event id", flow=False),  # the back office's feed of answers
    Entity("tracking", "tracking code", PULL, flow=False),  # what a carrier (or a shipping channel) says of one
)}

FLOWS: tuple[str, ...] = tuple(e.name for e in ENTITIES.values() if e.flow)
CATALOGUE: tuple[str, ...] = tuple(e.name for e in ENTITIES.values() if e.catalogue)
SKU_KEYED: tuple[str, ...] = tuple(e.name for e in ENTITIES.values() if e.sku)
STABLE: frozenset[str] = frozenset(e.name for e in ENTITIES.values() if e.stable)
# what `push --entity` may run now: the catalogue and the fulfilment news
PUSHABLE: tuple[str, ...] = tuple(e.name for e in ENTITIES.values() if e.flow and e.direction != PULL)
# what the scheduler lets interrupt a long catalogue push of the same channel
INTAKE: frozenset[str] = frozenset(e.name for e in ENTITIES.values() if e.flow and not e.catalogue)


def get(name: str) -> Entity:
    """The entity called `name`; KeyError names the known ones."""
    try:
        return ENTITIES[name]
    except KeyError:
        raise KeyError(f"unknown entity {name!r} (known: {', '.join(ENTITIES)})") from None


def default_direction(flow: str) -> str:
    """Which way a flow runs when the config says nothing (push for anything unknown)."""
    entity = ENTITIES.get(flow)
    return entity.direction if entity is not None else PUSH
