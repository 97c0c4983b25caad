"""SkyHub / Americanas customer service (SAC): threads and instances as tickets, answers to the seller's threads.

Reference: ../shared/contracts/sac/API.md, "SkyHub / Americanas Marketplace". `GET /sac` is a
forward-only cursor (`next_page` carries `cursor=`; no page numbers; a filter is ignored with a
cursor): the cursor is the step's, saved after each page, and a SAC with a new message comes again
after it. Each SAC's threads come from `GET /sac/{code}/chats`; a thread is one ticket, keyed
`ticket:<code>#<parts>`, keeping its parties (`CUSTOMER_B2W`, `B2W_SELLER`, `CUSTOMER_SELLER`):
the seller answers only in a thread it is part of. Tickets opened with no message exchange are
read from `GET /sac/{code}/instances` (keyed `ticket:<code>/<instance>`, no messages, never
answered). The reply call is UNKNOWN in the reference: the `reply_call` option of the skyhub
channel chooses it (`none` by default: an answer waits in quarantine saying so; `chats`: `POST
/sac/{code}/chats`; `interactions`: `POST /sac/{code}/interactions`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from syncagent.connectors.base import Outgoing, PushResult
from syncagent.connectors.common import need, need_time, reason, refused
from syncagent.connectors.mercadolivre_sac import message_id
from syncagent.errors import MappingError, TransientError
from syncagent.http import HttpClient
from syncagent.model import BadRecord, Page, parse_time, utcnow
from syncagent.model_sac import (
    ShipmentRef,
    Ticket,
    TicketAnswer,
    TicketMessage,
    Tracking,
    TrackingEvent,
    split_ticket_key,
)

SELLER_THREADS = frozenset({"B2W_SELLER", "CUSTOMER_SELLER"})  # API.md: a seller reply only in these
AUTHORS = {"CUSTOMER": "customer", "SELLER": "seller", "EMPLOYEE": "marketplace"}
REPLY_CALLS = ("none", "chats", "interactions")
MAX_PAGES = 500


def cursor_of(next_page: Any) -> str | None:
    """The `cursor=` of a `next_page` link (a path or a whole URL), or None."""
    if not isinstance(next_page, str) or not next_page:
        return None
    found = parse_qs(urlsplit(next_page).query).get("cursor")
    return found[0] if found else None


class SkyHubSac:
    """SAC over the SkyHub connector's client (a mixin of `SkyHubConnector`, which sets `client`, `name` and
    `reply_call`)."""

    name: str
    client: HttpClient
    reply_call: str

    def _get(self, path: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        resp = self.client.get(path, params=params)
        if resp.status != 200:
            raise refused(self.client, f"GET {path}", resp)
        body = resp.json()
        if not isinstance(body, dict):
            raise TransientError(f"{self.name}: GET {path}: the answer is not an object", code="bad_response")
        return body

    def sac_tickets(self, cursor: str | None) -> Iterator[Page]:
        for _ in range(MAX_PAGES):
            body = self._get("/sac", {"cursor": cursor} if cursor else None)
            sacs = body.get("sacs")
            if not isinstance(sacs, list):
                raise TransientError(f"{self.name}: GET /sac: no sacs list", code="bad_response")
            following = cursor_of(body.get("next_page"))
            records: list[Any] = []
            for sac in sacs:
                records += self._sac(sac)
            if not sacs:
                return  # the end for now: the saved cursor stays where it is
            yield Page(records, following)
            if following is None or following == cursor:
                return
            cursor = following

    def _sac(self, sac: Any) -> list[Any]:
        code = sac.get("code") if isinstance(sac, dict) else None
        if not isinstance(code, str) or not code.strip():
            return [BadRecord("ticket:?", "missing_field", "a SAC without code", sac)]
        path = f"/sac/{quote(code, safe='')}"
        found: list[Any] = []
        chats = self._get(f"{path}/chats").get("chats")
        for chat in chats if isinstance(chats, list) else ():
            try:
                found.append(self._thread(sac, chat))
            except MappingError as exc:
                found.append(BadRecord(f"ticket:{code}", exc.code, exc.reason, chat))
        instances = self._get(f"{path}/instances").get("instances")
        for instance in instances if isinstance(instances, list) else ():
            try:
                found.append(self._instance(sac, instance))
            except MappingError as exc:
                found.append(BadRecord(f"ticket:{code}", exc.code, exc.reason, instance))
        return found

    @staticmethod
    def _thread(sac: dict[str, Any], chat: Any) -> Ticket:
        if not isinstance(chat, dict):
            raise MappingError("bad_type", "a chat is not an object")
        parts = need(chat, "parts")
        messages = []
        for m in chat.get("messages") or ():
            if not isinstance(m, dict):
                raise MappingError("bad_type", "a chat message is not an object")
            part = m.get("part") if isinstance(m.get("part"), dict) else {}
            role = str(part.get("role") or "")
            content = str(m.get("content") or "")
            sent = need_time(m, "created_at")
            messages.append(TicketMessage(message_id(str(m.get("created_at")), role, content),
                                          AUTHORS.get(role, "marketplace"), content, sent, part.get("name")))
        messages.sort(key=lambda m: m.sent_at)
        status = "closed" if str(chat.get("status")).upper() in ("CLOSED", "FINISHED") else (
            "waiting_seller" if messages and messages[-1].author != "seller" else "waiting_customer")
        code = str(sac["code"])
        return Ticket("ticket", f"{code}#{parts}", f"SAC {code} ({parts})", status,
                      messages[0].sent_at if messages else need_time(sac, "created_at"), tuple(messages),
                      order_id=str(sac["order_code"]) if sac.get("order_code") else None,
                      context={"parts": parts})

    @staticmethod
    def _instance(sac: dict[str, Any], instance: Any) -> Ticket:
        if not isinstance(instance, dict):
            raise MappingError("bad_type", "an instance is not an object")
        code = str(sac["code"])
        return Ticket("ticket", f"{code}/{need(instance, 'code', (str, int))}",
                      f"SAC {code}: {instance.get('reason') or 'sem interação'}", "open",
                      need_time(instance, "created_at"),
                      order_id=str(sac["order_code"]) if sac.get("order_code") else None)

    def sac_prepare(self, answer: TicketAnswer) -> Outgoing:
        if answer.type != "reply":
            return Outgoing(answer.id, {}, {"nothing_to_send": "the chat status call is UNKNOWN in the reference"})
        _, remote_id = split_ticket_key(answer.ticket_key)
        code, sep, parts = remote_id.partition("#")
        if not sep:
            raise MappingError("no_thread", f"{remote_id}: a SAC instance without a thread cannot be answered")
        if parts not in SELLER_THREADS:
            raise MappingError("not_a_party", f"the seller is not a party of this thread ({parts}): only "
                                              f"{' and '.join(sorted(SELLER_THREADS))} threads take its answers")
        if self.reply_call == "none":
            raise MappingError("not_configured", "the SkyHub reply call is UNKNOWN in the reference: set reply_call "
                                                 "(chats or interactions) once confirmed (docs/connectors/sac.md)")
        text = (answer.body or "").strip()
        if not text:
            raise MappingError("missing_field", "the answer is empty")
        return Outgoing(answer.id, {"code": code, "parts": parts, "text": text})

    def sac_push(self, out: Outgoing) -> PushResult:
        code, parts, text = out.payload["code"], out.payload["parts"], out.payload["text"]
        path = f"/sac/{quote(code, safe='')}"
        if self.reply_call == "chats":
            resp = self.client.post(f"{path}/chats", json={"parts": parts, "content": text}, idempotent=False)
        else:
            resp = self.client.post(f"{path}/interactions", json={"chat": parts, "message": text,
                                                                   "status": "ANSWERED"}, idempotent=False)
        if resp.status in (200, 201, 204):
            created = None  # the id our copy of the message will have in the thread: not brought back in
            try:
                message = resp.json()
            except TransientError:
                message = None
            if isinstance(message, dict) and message.get("created_at"):
                created = message_id(str(message["created_at"]), "SELLER", str(message.get("content") or text))
            return PushResult(out.key, "created", remote_id=created)
        return PushResult(out.key, "rejected", reason_code=resp.error_code() or f"http_{resp.status}",
                          reason=reason(resp, self.client))

    def sac_lookup(self, ticket: str, body: str) -> dict[str, bool] | None:
        _, remote_id = split_ticket_key(ticket)
        code, _, parts = remote_id.partition("#")
        chats = self._get(f"/sac/{quote(code, safe='')}/chats").get("chats") or []
        for chat in chats if isinstance(chats, list) else ():
            if isinstance(chat, dict) and chat.get("parts") == parts:
                return {"found": any(isinstance(m, dict) and (m.get("part") or {}).get("role") == "SELLER"
                                     and str(m.get("content") or "").strip() == body.strip()
                                     for m in chat.get("messages") or ())}
        return {"found": False}

    def sac_tracking(self, refs: Sequence[ShipmentRef], order_of: Callable[[str], dict[str, Any] | None]
                     ) -> list[Tracking]:
        """Shipments of B2W Entrega (Americanas Entrega): the marketplace sets the order shipped, then delivered
        (skyhub API.md L105), so the order's status is the shipment's; read at the orders client's 1/s."""
        found = []
        for ref in refs:
            order = order_of(ref.order_id) if ref.order_id else None
            status = order.get("status") if isinstance(order, dict) else None
            kind = str(status.get("type") or "").upper() if isinstance(status, dict) else ""
            ours = {"SHIPPED": "in_transit", "DELIVERED": "delivered", "SHIPMENT_EXCEPTION": "exception"}.get(kind)
            if ours is None or order is None:
                found.append(Tracking(ref.tracking_code))
                continue
            moment = parse_time(order.get("updated_at"), "updated_at") if isinstance(order.get("updated_at"), str) \
                else None
            code = str(status.get("code") or kind) if isinstance(status, dict) else kind
            found.append(Tracking(ref.tracking_code, (TrackingEvent(ours, moment or utcnow(), None, code, code),)))
        return found

    def lookup(self, entity: str, **keys: str) -> Any:
        """Whether an answer is on the channel already (after a crash while sending it); nothing else to look up."""
        if entity == "ticket-answers":
            return self.sac_lookup(keys["ticket"], keys.get("body", ""))
        return None
