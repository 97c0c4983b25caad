"""The one narrow interface every system (the back office included) sits behind.

The engine speaks only in entity names and the dataclasses of `syncagent.model`:

* ``pull(entity, cursor)`` yields pages of model objects (or `BadRecord`s), each page carrying
  the cursor that resumes after it;
* ``prepare(entity, record)`` maps one model object into the wire payload (a dict) that will be
  fingerprinted and sent; it raises `MappingError` for a record this system cannot take;
* ``push(entity, batch)`` sends prepared payloads and answers one `PushResult` per item, as data;
  a failure of the whole call raises a `ChannelError`;
* ``lookup(entity, **keys)`` finds one remote record (an order by external id, a customer by
  document) so the engine can resolve ambiguity before writing again;
* ``listing(entity)`` yields pages of what the system holds now (`Listed`), for ``reconcile``
  and for adopting a channel's existing listings, for the entities in ``capabilities.listing``;
* ``stock_locations()`` names the system's own stock locations and the back office warehouses
  summed into each (empty: one level per product, the sum of the channel's warehouses);
* ``http_clients()`` are its HTTP clients, for ``doctor`` (clock skew, reachability);
* ``from_config(cfg, sleep=, clock=, state=)`` builds it from its config section, whose type-specific
  keys are declared in ``options`` (an `OptionSpec` each) and validated by the config loader;
  ``state`` is the channel's `ConnectorState` in the journal (None: nothing kept across runs).
* ``verify_notification(request, settings)`` checks a notification (webhook, callback) the
  platform sent to ``/hooks/<channel>`` as the platform documents it, and says which flow it
  concerns (`Notification`); None refuses it (401). A notification only wakes that flow's step:
  nothing in it is trusted without reading it back from the platform's API.

Everything the engine, the agent, ``doctor`` and ``reconcile`` use of a connector is declared
here: nothing probes a connector for an attribute. `BaseConnector` gives the optional parts a
default (nothing to list, no stock locations, nothing to look up), so a connector writes only
what it supports and declares it in its `Capabilities`.

Entities beyond the catalogue are plain names too: ``orders`` (create in the back office),
``order-acks`` (tell the channel its order was imported), ``order-events`` (fulfilment news),
``order-cancels`` (cancel in the back office), ``customer-links`` (tell the channel which back
office code its customer became), ``channel-customers`` (customers registered on the channel),
``tickets`` (customer-service conversations read from a channel, `model_sac.Ticket`),
``ticket-answers`` (the back office's answers sent to a channel; ``lookup("ticket-answers",
ticket=, body=, status=)`` answers {"found": bool} when the channel can tell whether it holds one
already, None when it cannot), ``tracking`` (``pull("tracking", None, {"shipments": [ShipmentRef]})``
yields `model_sac.Tracking` per code: a carrier, or a channel for the carriers in
``owned_tracking``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from syncagent.errors import ChannelError
from syncagent.model import Page

if TYPE_CHECKING:
    from syncagent.config import NotificationSettings
    from syncagent.http import HttpClient


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a connector can do; the config loader refuses flows a connector cannot run."""

    push: frozenset[str] = frozenset()
    pull: frozenset[str] = frozenset()
    max_batch: int = 500
    # order statuses that may be imported when the config says nothing
    importable_statuses: tuple[str, ...] = ("approved",)
    cancelled_statuses: tuple[str, ...] = ("cancelled",)
    # entities whose payload `prepare` builds from the record and the channel's config alone (not the
    # clock, not remote state): a feed page read again byte for byte need not be mapped again
    stable: frozenset[str] = frozenset()
    # entities whose records `listing` can show as the system holds them now (reconcile, adopt)
    listing: frozenset[str] = frozenset()
    # orders come from a queue that hands an order over, one at a time, until it is acknowledged: an
    # order handed over again after it was acknowledged is acknowledged again (else it would come back
    # for ever), and the channel's buyers are pulled again for each page (each page brings new ones)
    order_queue: bool = False
    # carrier names (case-folded) whose tracking this channel owns (its own logistics): the `deliveries`
    # flow reads their statuses from the channel (`pull("tracking", ...)`), never from a carrier
    owned_tracking: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One prepared record: the key it is journaled under and the payload sent on the wire."""

    key: str
    payload: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PushResult:
    """The fate of one pushed record.

    status: ``created`` | ``updated`` | ``unchanged`` | ``exists`` (a duplicate the server already
    had: remote_id names it) | ``rejected`` (reason_code/reason say why; quarantine it).
    missing: on a rejection, the (kind, reference) pairs the system said it does not know
    (("product", "P1"), ("payment method", "PIX")): the record waits for them and goes once they exist.
    """

    key: str
    status: str
    remote_id: str | None = None
    reason_code: str | None = None
    reason: str | None = None
    missing: tuple[tuple[str, str], ...] = ()

    @property
    def ok(self) -> bool:
        return self.status != "rejected"


@dataclass(frozen=True, slots=True)
class Listed:
    """One record a channel holds now, as its listing shows it (for reconcile and adopt)."""

    key: str
    payload: dict[str, Any]
    barcode: str | None = None


@dataclass(frozen=True, slots=True)
class InboundRequest:
    """A notification as it arrived: headers (lower-case names), query parameters, the body's bytes."""

    headers: Mapping[str, str]
    query: Mapping[str, str]
    body: bytes
    source: str = ""  # the client's address (the proxy's, or the one it forwarded)


@dataclass(frozen=True, slots=True)
class Notification:
    """A verified notification: the flow whose step it wakes, and what it names (for the log and status)."""

    flow: str
    topic: str = ""
    key: str | None = None  # the record it points at (an order id), if it says


class ConnectorState(Protocol):
    """Small values a connector must keep across runs and crashes (a rotating refresh token, say).

    ``put`` returns only once the value is durably stored: a connector may act on it at once.
    ``put_if`` stores only if the value is still `expected` (another process, e.g. ``syncagent auth``
    beside the daemon, may have stored a newer one) and answers whether it did. Values are text;
    None clears one.
    """

    def get(self, key: str) -> str | None: ...

    def put(self, key: str, value: str | None) -> None: ...

    def put_if(self, key: str, value: str | None, expected: str | None) -> bool: ...

    def exclusive(self, name: str) -> AbstractContextManager[None]:
        """Held by one process (and thread) at a time, e.g. around a refresh that must never run twice at once."""
        ...


class MemoryState:
    """A `ConnectorState` that lives as long as the process: tests, and commands with no journal."""

    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        self.values: dict[str, str] = dict(values or {})
        self._lock = threading.RLock()

    def get(self, key: str) -> str | None:
        return self.values.get(key)

    def put(self, key: str, value: str | None) -> None:
        if value is None:
            self.values.pop(key, None)
        else:
            self.values[key] = value

    def put_if(self, key: str, value: str | None, expected: str | None) -> bool:
        if self.values.get(key) != expected:
            return False
        self.put(key, value)
        return True

    def exclusive(self, name: str) -> AbstractContextManager[None]:
        return self._lock  # one process: a lock of its own keeps its threads apart


class Connector(Protocol):
    """The whole contract of a system: what the engine, the agent, doctor and reconcile call."""

    type_name: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    options: ClassVar[Mapping[str, OptionSpec]]
    name: str

    @classmethod
    def from_config(cls, cfg: Any, *, sleep: Callable[[float], None] | None = None,
                    clock: Callable[[], datetime] = ..., state: ConnectorState | None = None) -> Connector: ...

    def check(self) -> None: ...

    def pull(self, entity: str, cursor: str | None, filters: Mapping[str, Any] | None = None) -> Iterator[Page]: ...

    def prepare(self, entity: str, record: Any) -> Outgoing: ...

    def push(self, entity: str, batch: Sequence[Outgoing]) -> list[PushResult]: ...

    def lookup(self, entity: str, **keys: str) -> Any | None: ...

    def listing(self, entity: str) -> Iterator[list[Listed]]: ...

    def stock_locations(self) -> Mapping[str, tuple[str, ...]]: ...

    def http_clients(self) -> Sequence[HttpClient]: ...

    def verify_notification(self, request: InboundRequest, settings: NotificationSettings) -> Notification | None: ...

    def close(self) -> None: ...


class BaseConnector:
    """The defaults of the contract's optional parts; a connector overrides what it supports.

    A connector that overrides `listing` declares the entities in `Capabilities.listing`.
    """

    type_name: ClassVar[str] = ""
    options: ClassVar[Mapping[str, OptionSpec]] = {}
    name: str = ""

    def lookup(self, entity: str, **keys: str) -> Any | None:
        """Nothing to look up before writing again (writes to this system are idempotent)."""
        return None

    def listing(self, entity: str) -> Iterator[list[Listed]]:
        raise ChannelError(f"{self.name}: a {self.type_name} system cannot list its {entity}", code="bad_config")

    def stock_locations(self) -> Mapping[str, tuple[str, ...]]:
        """No locations of its own: one stock level per product, the sum of the channel's warehouses."""
        return {}

    def http_clients(self) -> Sequence[HttpClient]:
        return ()

    def verify_notification(self, request: InboundRequest, settings: NotificationSettings) -> Notification | None:
        """Refused: a platform that sends notifications documents how they are told from forgeries.

        A connector type whose module does not say, may have its check in `syncagent.inbound.verifiers`
        (keyed by type); that check is used then.
        """
        from syncagent.inbound.verifiers import VERIFIERS

        check = VERIFIERS.get(self.type_name)
        return check(request, settings) if check is not None else None

    def close(self) -> None:
        for client in self.http_clients():
            client.close()


@dataclass(frozen=True, slots=True)
class OptionSpec:
    """One type-specific config key a connector accepts (validated by the config loader).

    kind: "str" | "int" | "float" | "bool" | "list[str]" | "dict"; secret values are masked in
    every output and must come from ``${VAR}``.
    """

    kind: str
    required: bool = False
    default: Any = None
    secret: bool = False
    help: str = ""
    choices: tuple[str, ...] | None = None
