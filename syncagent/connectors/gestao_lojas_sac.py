"""The back office's contract 1.1 on the client side: tickets, their messages, answers, deliveries.

`POST /tickets` is NOT idempotent: never retried here (a lost answer raises AmbiguousError) and the
engine looks the ticket up by (channel, external id) before any second POST. `POST
/tickets/{id}/messages` is idempotent by the message's external id and `POST
/orders/{number}/deliveries` by (tracking code, status, time): both may be retried.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from syncagent.connectors.base import Outgoing, PushResult
from syncagent.connectors.common import body_of, need, need_time, opt, reason, refused
from syncagent.errors import AmbiguousError, MappingError, TransientError
from syncagent.http import HttpClient, HttpResponse
from syncagent.model import time_str
from syncagent.model_sac import (
    AUTHORS,
    DELIVERY_STATUSES,
    TICKET_KINDS,
    TICKET_STATUSES,
    BackOfficeTicket,
    DeliveryUpdate,
    TicketAnswer,
    TicketMessage,
)

MAX_BODY = 20_000  # openapi.yaml TicketMessageIn.body maxLength


def parse_ticket_event(item: dict[str, Any]) -> TicketAnswer:
    """A TicketEvent: an answer carries its message, a status change its status."""
    kind = need(item, "type")
    if kind not in ("reply", "status"):
        raise MappingError("bad_value", f"type: unknown ticket event type {kind[:40]!r}")
    body = author = status = None
    if kind == "reply":
        message = need(item, "message", dict)
        body, author = need(message, "body"), opt(message, "author_name")
    else:
        status = need(item, "status")
        if status not in TICKET_STATUSES:
            raise MappingError("bad_value", f"status: unknown ticket status {status[:40]!r}")
    return TicketAnswer(id=str(need(item, "id", (str, int))), ticket_id=str(need(item, "ticket_id", (str, int))),
                        channel=need(item, "channel"), ticket_key=need(item, "external_id"), type=kind,
                        occurred_at=need_time(item, "occurred_at"), body=body, author_name=author, status=status)


def message_in(message: TicketMessage) -> dict[str, Any]:
    """TicketMessageIn; a message the contract cannot hold (empty, too long, unknown author) is refused."""
    if message.author not in AUTHORS:
        raise MappingError("bad_value", f"author: {message.author[:30]!r} is not one of {', '.join(AUTHORS)}")
    if not message.body.strip():
        raise MappingError("missing_field", f"message {message.remote_id}: the body is empty")
    if len(message.body) > MAX_BODY:
        raise MappingError("too_long", f"message {message.remote_id}: {len(message.body)} characters, the back office "
                                       f"takes {MAX_BODY}")
    return {"external_id": message.remote_id, "author": message.author, "author_name": message.author_name,
            "body": message.body, "sent_at": time_str(message.sent_at)}


def ticket_in(record: BackOfficeTicket) -> dict[str, Any]:
    """TicketIn: the channel's ticket with every message known now."""
    t = record.ticket
    if t.kind not in TICKET_KINDS:
        raise MappingError("bad_value", f"kind: {t.kind[:30]!r} is not one of {', '.join(TICKET_KINDS)}")
    if t.status not in TICKET_STATUSES:
        raise MappingError("bad_value", f"status: {t.status[:30]!r} is not one of {', '.join(TICKET_STATUSES)}")
    customer = None
    if t.customer_name or t.customer_email:
        customer = {"name": t.customer_name or "", "document": None, "email": t.customer_email}
    return {"channel": record.channel, "external_id": t.key, "kind": t.kind, "order_number": record.order_number,
            "external_order_id": t.order_id, "subject": t.subject[:200], "status": t.status,
            "opened_at": time_str(t.opened_at), "customer": customer,
            "messages": [message_in(m) for m in t.messages]}


def delivery_in(update: DeliveryUpdate) -> dict[str, Any]:
    """DeliveryUpdate of the contract."""
    event = update.event
    if event.status not in DELIVERY_STATUSES:
        raise MappingError("bad_value", f"status: {event.status[:30]!r} is not a delivery status")
    return {"carrier": update.carrier, "tracking_code": update.tracking_code, "status": event.status,
            "occurred_at": time_str(event.occurred_at), "location": event.location,
            "description": event.description, "carrier_event": event.carrier_event, "source": update.source}


def _ticket_message(record: Any) -> Outgoing:
    """record: {"ticket_id": back office id, "message": TicketMessage}."""
    message: TicketMessage = record["message"]
    return Outgoing(message.remote_id, message_in(message), {"ticket_id": str(record["ticket_id"])})


SAC_PREPARERS: dict[str, Callable[[Any], Outgoing]] = {
    "tickets": lambda record: Outgoing(record.key, ticket_in(record)),
    "ticket-messages": _ticket_message,
    "deliveries": lambda update: Outgoing(update.key, delivery_in(update), {"order_number": update.order_number}),
}


class SacWrites:
    """The writes and the lookup of contract 1.1, over the back office connector's client."""

    def __init__(self, client: HttpClient, name: str) -> None:
        self.client = client
        self.name = name

    def ticket(self, out: Outgoing) -> PushResult:
        # NOT idempotent: a lost answer raises AmbiguousError and the engine looks the ticket up
        resp = self.client.post("/tickets", json=out.payload, idempotent=False)
        if resp.status == 201:
            return PushResult(out.key, "created", remote_id=self._created_id(resp))
        return self._rejected(out.key, resp)

    def message(self, out: Outgoing) -> PushResult:
        ticket = quote(str(out.meta["ticket_id"]), safe="")
        resp = self.client.post(f"/tickets/{ticket}/messages", json=out.payload, idempotent=True)
        if resp.status in (200, 201):
            return PushResult(out.key, "created" if resp.status == 201 else "exists")
        return self._rejected(out.key, resp, "not_found" if resp.status == 404 else None)

    def delivery(self, out: Outgoing) -> PushResult:
        number = quote(str(out.meta["order_number"]), safe="")
        resp = self.client.post(f"/orders/{number}/deliveries", json=out.payload, idempotent=True)
        if resp.status in (200, 201):
            return PushResult(out.key, "created" if resp.status == 201 else "exists")
        return self._rejected(out.key, resp, "not_found" if resp.status == 404 else None)

    def find_ticket(self, channel: str, external_id: str) -> dict[str, Any] | None:
        """{"id", "messages": [external ids]} of the ticket the channel's one became, or None."""
        what = "GET /tickets (lookup)"
        resp = self.client.get("/tickets", params={"channel": channel, "external_id": external_id})
        if resp.status != 200:
            raise refused(self.client, what, resp)
        for item in body_of(self.client, what, resp)["items"]:
            if (isinstance(item, dict) and item.get("id") is not None and item.get("channel") == channel
                    and item.get("external_id") == external_id):
                messages = item.get("messages") if isinstance(item.get("messages"), list) else []
                return {"id": str(item["id"]), "messages": [str(m.get("external_id")) for m in messages
                                                            if isinstance(m, dict)]}
        return None

    def _created_id(self, resp: HttpResponse) -> str:
        try:
            body = resp.json()
        except TransientError:
            body = None
        value = body.get("id") if isinstance(body, dict) else None
        if value is None or isinstance(value, bool) or not str(value).strip():
            raise AmbiguousError(f"{self.name}: POST /tickets answered 201 without its id; the ticket was created",
                                 status=resp.status, code="bad_response")
        return str(value)

    def _rejected(self, key: str, resp: HttpResponse, code: str | None = None) -> PushResult:
        return PushResult(key, "rejected", reason_code=code or resp.error_code() or f"http_{resp.status}",
                          reason=reason(resp, self.client))
