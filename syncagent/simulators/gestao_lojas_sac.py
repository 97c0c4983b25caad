"""The back office's contract 1.1 routes: customer-service tickets and delivery updates.

openapi.yaml (../shared/contracts/gestao-lojas) version 1.1: `POST /tickets` is NOT idempotent
(each POST is a new ticket; clients look up by channel and external id first), `POST
/tickets/{id}/messages` is idempotent by the message's external id (200 with the stored message),
`GET /ticket-events` carries the back office's answers and status changes only for tickets that
came from a channel, and `POST /orders/{number}/deliveries` is idempotent by (tracking_code,
status, occurred_at). State lives in the simulator's document store; admin routes let tests answer
a ticket as a back office user would, open a back-office-only ticket, and read what was recorded.
"""

from __future__ import annotations

from typing import Any

import syncagent.simulators.gestao_lojas as gl
from syncagent.simulators.common import HttpError, Request, Response
from syncagent.simulators.store import DocStore

# Field = (name, kind, required, nullable), as in gestao_lojas
MESSAGE_IN = (  # openapi.yaml L579-L587
    ("external_id", "text", True, False), ("author", "author", True, False), ("author_name", "str", False, True),
    ("body", "text", True, False), ("sent_at", "date-time", True, False),
)
TICKET_IN = (  # openapi.yaml L595-L614
    ("channel", "text", True, False), ("external_id", "text", True, False), ("kind", "ticket-kind", True, False),
    ("order_number", "str", False, True), ("external_order_id", "str", False, True), ("subject", "str", True, False),
    ("status", "ticket-status", True, False), ("opened_at", "date-time", True, False),
    ("customer", "object", False, True), ("messages", "list", True, False),
)
CUSTOMER = (("name", "str", False, False), ("document", "str", False, True), ("email", "str", False, True))
DELIVERY = (  # openapi.yaml L641-L652
    ("carrier", "text", True, False), ("tracking_code", "text", True, False), ("status", "delivery-status", True, False),
    ("occurred_at", "date-time", True, False), ("location", "str", False, True), ("description", "str", False, True),
    ("carrier_event", "str", False, True), ("source", "delivery-source", True, False),
)
MAX_BODY = 20_000  # openapi.yaml L586


class SacRoutes:
    """Tickets, their messages, the ticket-events feed and delivery updates (mixed into GestaoLojasSim)."""

    docs: DocStore

    def _sac_routes(self) -> None:
        self.docs = DocStore(self.db, self.lock)  # type: ignore[attr-defined]
        r = self.route  # type: ignore[attr-defined]
        r("GET", "/tickets", self.find_tickets)
        r("POST", "/tickets", self.create_ticket)
        r("POST", "/tickets/{id}/messages", self.add_ticket_message)
        r("GET", "/ticket-events", self.ticket_events)
        r("POST", "/orders/{number}/deliveries", self.add_delivery)
        r("GET", "/_admin/tickets", self.admin_tickets)
        r("POST", "/_admin/tickets", self.admin_open_ticket)
        r("POST", "/_admin/tickets/{id}/reply", self.admin_reply)
        r("POST", "/_admin/tickets/{id}/status", self.admin_status)
        r("GET", "/_admin/deliveries", self.admin_deliveries)

    def _order_exists(self, number: str) -> bool:
        row = self.db.execute("SELECT 1 FROM orders WHERE number = ?", (number,)).fetchone()  # type: ignore[attr-defined]
        return row is not None

    # -- tickets -------------------------------------------------------------------------------------
    def find_tickets(self, req: Request) -> Response:
        """openapi.yaml L297-L313: both channel and external_id are required."""
        channel, external_id = req.arg("channel"), req.arg("external_id")
        missing = [n for n, v in (("channel", channel), ("external_id", external_id)) if not v]
        if missing:
            raise HttpError(400, "validation_error", f"{' and '.join(missing)} required",
                            details=[{"field": m, "message": "is required"} for m in missing])
        found = [self._ticket_view(doc) for _, doc in self.docs.find("tickets", "external_id", external_id)
                 if doc.get("channel") == channel]
        return Response(200, {"items": found})

    def _check_message(self, body: Any, where: str = "") -> list[dict[str, str]]:
        details = gl.check(body, MESSAGE_IN, where=where)
        if not details and len(body["body"]) > MAX_BODY:  # openapi.yaml L586
            details.append({"field": f"{where}.body" if where else "body",
                            "message": f"must be at most {MAX_BODY} characters, got {len(body['body'])}"})
        return details

    def create_ticket(self, req: Request) -> Response:
        """openapi.yaml L314-L321: NOT idempotent, every valid POST is a new ticket."""
        body = gl.json_body(req)
        details = gl.check(body, TICKET_IN, ignored=("id",))
        if not details:
            if body.get("customer") is not None:
                details += gl.check(body["customer"], CUSTOMER, where="customer")
            for i, message in enumerate(body["messages"]):
                details += self._check_message(message, f"messages[{i}]")
            ids = [m.get("external_id") for m in body["messages"] if isinstance(m, dict)]
            if len(ids) != len(set(ids)):
                details.append({"field": "messages", "message": "two messages with the same external_id"})
        if not details and body.get("order_number") is not None and not self._order_exists(body["order_number"]):
            details.append({"field": "order_number", "message": f"unknown order {gl.safe(body['order_number'], 30)!r}"})
        if details:
            raise gl.invalid(details, "ticket")
        number = self.docs.count("tickets") + 1
        ticket_id = f"TK{number:06d}"
        doc = {k: body.get(k) for k, *_ in TICKET_IN if k != "messages"} | {"id": ticket_id, "created_at": gl.now_iso()}
        self.docs.put("tickets", ticket_id, doc)
        for message in body["messages"]:
            self._store_message(ticket_id, message)
        return Response(201, self._ticket_view(doc))

    def _store_message(self, ticket_id: str, message: dict[str, Any]) -> dict[str, Any]:
        key = f"{ticket_id}/{message['external_id']}"
        stored = {k: message.get(k) for k, *_ in MESSAGE_IN} | {"id": f"M{self.docs.count('messages') + 1:07d}",
                                                               "ticket_id": ticket_id}
        self.docs.put("messages", key, stored)
        return stored

    def _messages(self, ticket_id: str) -> list[dict[str, Any]]:
        return [{k: v for k, v in m.items() if k != "ticket_id"} for _, m in self.docs.find("messages", "ticket_id",
                                                                                            ticket_id)]

    def _ticket_view(self, doc: dict[str, Any]) -> dict[str, Any]:
        view = {k: v for k, v in doc.items() if k != "created_at"}
        return view | {"messages": self._messages(doc["id"])}

    def _ticket(self, ticket_id: str) -> dict[str, Any]:
        doc = self.docs.get("tickets", ticket_id)
        if doc is None:
            raise HttpError(404, "not_found", f"no ticket {gl.safe(ticket_id, 40)}")
        return doc

    def add_ticket_message(self, req: Request) -> Response:
        """openapi.yaml L322-L332: the same external_id again answers 200 with the stored message."""
        ticket_id = gl.param(req, "id")
        self._ticket(ticket_id)
        body = gl.json_body(req)
        details = self._check_message(body)
        if details:
            raise gl.invalid(details, "ticket message")
        known = self.docs.get("messages", f"{ticket_id}/{body['external_id']}")
        if known is not None:
            return Response(200, {k: v for k, v in known.items() if k != "ticket_id"})
        stored = self._store_message(ticket_id, body)
        return Response(201, {k: v for k, v in stored.items() if k != "ticket_id"})

    def ticket_events(self, req: Request) -> Response:
        """openapi.yaml L333-L348: keyset feed of answers and status changes (channel tickets only)."""
        limit = gl.GestaoLojasSim._limit(req)
        cursor = req.arg("cursor")
        after = 0 if cursor is None else gl.decode_cursor("ticket-events", cursor)
        rows = self.docs.after("ticket_events", after, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        return Response(200, {"items": [doc for _, _, doc in rows],
                              "next_cursor": gl.encode_cursor("ticket-events", rows[-1][0]) if more else None})

    def _event(self, ticket: dict[str, Any], kind: str, extra: dict[str, Any]) -> dict[str, Any] | None:
        """A ticket event; none for a ticket opened in the back office itself (openapi.yaml L29-L30)."""
        if not ticket.get("channel"):
            return None
        number = self.docs.count("ticket_events") + 1
        event = {"id": f"TE{number:07d}", "ticket_id": ticket["id"], "channel": ticket["channel"],
                 "external_id": ticket["external_id"], "type": kind, "message": None, "status": None,
                 "occurred_at": gl.now_iso()} | extra
        self.docs.put("ticket_events", event["id"], event)
        return event

    # -- deliveries ----------------------------------------------------------------------------------
    def add_delivery(self, req: Request) -> Response:
        """openapi.yaml L349-L358: idempotent by (tracking_code, status, occurred_at); 404 for an unknown order."""
        number = gl.param(req, "number")
        if not self._order_exists(number):
            raise HttpError(404, "not_found", f"no order {gl.safe(number, 40)}")
        body = gl.json_body(req)
        details = gl.check(body, DELIVERY)
        if details:
            raise gl.invalid(details, "delivery update")
        key = f"{number}/{body['tracking_code']}/{body['status']}/{body['occurred_at']}"
        known = self.docs.get("deliveries", key)
        if known is not None:
            return Response(200, {k: v for k, v in known.items() if k != "order_number"})
        stored = {k: body.get(k) for k, *_ in DELIVERY} | {"order_number": number}
        self.docs.put("deliveries", key, stored)
        return Response(201, body)

    # -- admin ---------------------------------------------------------------------------------------
    def admin_tickets(self, req: Request) -> Response:
        """Every ticket with its messages, in creation order (duplicates show as two tickets)."""
        return Response(200, {"items": [self._ticket_view(doc) for _, doc in self.docs.all("tickets")]})

    def admin_open_ticket(self, req: Request) -> Response:
        """A ticket opened in the back office itself: no channel, so it never reaches the feed."""
        body = gl.json_body(req, optional=True)
        number = self.docs.count("tickets") + 1
        ticket_id = f"TK{number:06d}"
        doc = {"id": ticket_id, "channel": None, "external_id": None, "kind": "ticket",
               "subject": str(body.get("subject") or "opened in the back office"), "status": "open",
               "opened_at": gl.now_iso(), "order_number": body.get("order_number"), "external_order_id": None,
               "customer": None, "created_at": gl.now_iso()}
        self.docs.put("tickets", ticket_id, doc)
        return Response(201, self._ticket_view(doc))

    def admin_reply(self, req: Request) -> Response:
        """{"body": "...", "author_name": "..."}: a back office user answers; the event, if any, is returned."""
        ticket = self._ticket(gl.param(req, "id"))
        body = gl.json_body(req)
        if not isinstance(body, dict) or not isinstance(body.get("body"), str) or not body["body"].strip():
            raise HttpError(400, "validation_error", "body: a non-empty answer is required")
        message = {"body": body["body"], "author_name": str(body.get("author_name") or "Atendimento"),
                   "sent_at": gl.now_iso()}
        event = self._event(ticket, "reply", {"message": message})
        return Response(201, {"event": event})

    def admin_status(self, req: Request) -> Response:
        """{"status": "closed"}: the ticket's status changes (an event when it came from a channel)."""
        ticket = self._ticket(gl.param(req, "id"))
        body = gl.json_body(req)
        status = body.get("status") if isinstance(body, dict) else None
        if status not in gl.ENUMS["ticket-status"]:
            raise HttpError(400, "validation_error", f"status must be one of {', '.join(gl.ENUMS['ticket-status'])}")
        ticket["status"] = status
        self.docs.put("tickets", ticket["id"], ticket)
        return Response(201, {"event": self._event(ticket, "status", {"status": status})})

    def admin_deliveries(self, req: Request) -> Response:
        """Every delivery update recorded, in the order received (a duplicate would show twice)."""
        return Response(200, {"items": [doc for _, doc in self.docs.all("deliveries")]})
