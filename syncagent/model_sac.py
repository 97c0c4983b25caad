"""Model of the two flows of contract 1.1: customer-service tickets and delivery tracking.

Kept beside `syncagent.model` (same rules: aware UTC datetimes, frozen dataclasses). A ticket's
key is ``kind:channel id`` (``question:1234``): a channel has several kinds of conversation whose
ids may collide (a question and a pack of Mercado Livre), so the back office's external id is the
key, and the channel reads the kind back from it when an answer comes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from syncagent.model import parse_time

TICKET_KINDS = ("question", "message", "claim", "ticket")
TICKET_STATUSES = ("open", "waiting_seller", "waiting_customer", "closed")
AUTHORS = ("customer", "seller", "marketplace")
DELIVERY_STATUSES = ("posted", "in_transit", "out_for_delivery", "delivered", "delivery_failed", "returned",
                     "exception")
FINAL_STATUSES = frozenset({"delivered", "returned"})  # polling stops at these


def ticket_key(kind: str, remote_id: str) -> str:
    return f"{kind}:{remote_id}"


def split_ticket_key(key: str) -> tuple[str, str]:
    """("question", "1234") from "question:1234"; ValueError for a key no channel ticket has."""
    kind, sep, remote_id = key.partition(":")
    if not sep or kind not in TICKET_KINDS or not remote_id:
        raise ValueError(f"{key[:60]!r} is not a channel ticket key (kind:id)")
    return kind, remote_id


@dataclass(frozen=True, slots=True)
class TicketMessage:
    """One message of a conversation as the channel shows it."""

    remote_id: str
    author: str  # customer | seller | marketplace
    body: str
    sent_at: datetime
    author_name: str | None = None


@dataclass(frozen=True, slots=True)
class Ticket:
    """A conversation opened on a channel (a question, a post-sale thread, a claim, a channel ticket).

    `context` holds what the channel needs later to answer inside it (e.g. the thread's parties).
    """

    kind: str
    remote_id: str
    subject: str
    status: str
    opened_at: datetime
    messages: tuple[TicketMessage, ...] = ()
    order_id: str | None = None  # the channel's order id, when the ticket is about an order
    customer_name: str | None = None
    customer_email: str | None = None
    context: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return ticket_key(self.kind, self.remote_id)


@dataclass(frozen=True, slots=True)
class BackOfficeTicket:
    """A channel's ticket on its way into the back office."""

    channel: str
    ticket: Ticket
    order_number: str | None = None

    @property
    def key(self) -> str:
        return self.ticket.key


@dataclass(frozen=True, slots=True)
class TicketAnswer:
    """An event of the back office's ticket feed: an answer (`reply`) or a status change (`status`)."""

    id: str
    ticket_id: str  # the back office's
    channel: str
    ticket_key: str  # the channel's kind:id
    type: str  # reply | status
    occurred_at: datetime
    body: str | None = None
    author_name: str | None = None
    status: str | None = None

    @property
    def key(self) -> str:
        return self.id


@dataclass(frozen=True, slots=True)
class ShipmentRef:
    """A shipment to track: what the back office's `shipped` event said, and the channel's order id."""

    carrier: str
    tracking_code: str
    order_number: str
    order_id: str
    last_status: str | None = None  # the last status written: a carrier may ask the whole history only on news


@dataclass(frozen=True, slots=True)
class TrackingEvent:
    """One status of a shipment in the back office's terms (DeliveryUpdate)."""

    status: str
    occurred_at: datetime
    location: str | None = None
    description: str | None = None
    carrier_event: str | None = None


@dataclass(frozen=True, slots=True)
class Tracking:
    """What a carrier (or a shipping channel) says of one tracking code: its events, oldest first."""

    tracking_code: str
    events: tuple[TrackingEvent, ...] = ()

    @property
    def key(self) -> str:
        return self.tracking_code


@dataclass(frozen=True, slots=True)
class DeliveryUpdate:
    """One status to record in the back office for an order's shipment."""

    order_number: str
    carrier: str
    tracking_code: str
    event: TrackingEvent
    source: str  # carrier | channel

    @property
    def key(self) -> str:
        return f"{self.tracking_code}|{self.event.status}|{self.event.occurred_at.isoformat()}"


def _moment(value: Any, name: str) -> datetime:
    moment = parse_time(value, name, required=True)
    assert moment is not None
    return moment


def ticket_from_dict(data: dict[str, Any]) -> Ticket:
    """A `Ticket` from its quarantined JSON view (times as text)."""
    messages = tuple(TicketMessage(str(m["remote_id"]), str(m["author"]), str(m["body"]),
                                   _moment(m["sent_at"], "sent_at"), m.get("author_name"))
                     for m in data.get("messages") or ())
    return Ticket(str(data["kind"]), str(data["remote_id"]), str(data["subject"]), str(data["status"]),
                  _moment(data["opened_at"], "opened_at"), messages, data.get("order_id"), data.get("customer_name"),
                  data.get("customer_email"), dict(data.get("context") or {}))


def answer_from_dict(data: dict[str, Any]) -> TicketAnswer:
    """A `TicketAnswer` from its quarantined JSON view."""
    return TicketAnswer(str(data["id"]), str(data["ticket_id"]), str(data["channel"]), str(data["ticket_key"]),
                        str(data["type"]), _moment(data["occurred_at"], "occurred_at"), data.get("body"),
                        data.get("author_name"), data.get("status"))
