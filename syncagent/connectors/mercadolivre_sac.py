"""Mercado Livre customer service: questions, post-sale messages and claims as tickets, answers sent back.

Reference: ../shared/contracts/sac/API.md, "Mercado Livre". ML has no "ticket": three kinds of
conversation become three ticket kinds, keyed `question:<id>`, `message:<pack id>`, `claim:<id>`.

* questions (pre-sale): `GET /questions/search?seller_id=…&api_version=4&status=UNANSWERED`
  (limit/offset); answered by question id, `POST /answers {question_id, text}` (2000 characters at
  most). A question no longer open (answered, banned, deleted) refuses the answer: quarantined
  with ML's reason.
* post-sale messages: the packs with unread buyer messages (`GET /messages/unread?role=seller&
  tag=post_sale`), each read whole (`GET /messages/packs/{pack}/sellers/{seller}?tag=post_sale&
  mark_as_read=false`). Only a conversation the buyer started is brought in, and a reply goes only
  there, to the addressee read from the conversation (the 2026 change: an intermediating agent's
  id, not the buyer's); never the "start contact" (action guide) flow.
* claims: `GET /post-purchase/v1/claims/search?status=opened` and each claim's messages. The call
  that posts a claim message is UNKNOWN in the reference: `claim_reply_path` (none by default: an
  answer to a claim is quarantined saying so, never sent to a guessed path).

Rate limits (API.md: GETs share 500 rpm, POSTs 500 rpm) are the config's `rate_limit`; the
simulator answers 429 with Retry-After past them. A mixin of `MercadoLivreConnector` (which gives
the client, its authorization-code login and the seller).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from syncagent import fastjson
from syncagent.connectors.base import (
    Outgoing,
    PushResult,
)
from syncagent.connectors.common import need, need_time, opt
from syncagent.errors import MappingError, PermanentError, TransientError
from syncagent.http import HttpClient, HttpResponse
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

MAX_ANSWER = 2000  # API.md: one tool's maximum for an answer [third party]
PAGE = 50
MAX_PAGES = 200  # a listing that never ends stops here (10,000 records a kind a run)
# ME2 shipment statuses (ML API.md L110-112) in the back office's terms; the ones before shipping say nothing yet
ME2_STATUSES = {"shipped": "in_transit", "delivered": "delivered", "not_delivered": "delivery_failed",
                "cancelled": "exception"}
ME2_CARRIERS = frozenset({"mercado envios", "mercado envíos", "mercadoenvios", "me2"})


def ml_reason(resp: HttpResponse) -> tuple[str, str]:
    """(code, text) of an ML error body {"message", "error", "status", "cause"}."""
    try:
        body = fastjson.loads(resp.content) if resp.content else None
    except (ValueError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        return f"http_{resp.status}", f"answered {resp.status}"
    code = str(body.get("error") or f"http_{resp.status}")
    return code, f"{code}: {body.get('message') or 'no message'}"


def message_id(*parts: str) -> str:
    """A stable id for a message the channel gives none (its time, sender and text)."""
    return hashlib.sha256("|".join(parts).encode("utf-8", "replace")).hexdigest()[:20]


class MercadoLivreSac:
    """Tickets and answers over an ML client; the host sets `client`, `name`, `claim_reply_path` and says who the
    seller is (`sac_seller`)."""

    name: str
    client: HttpClient
    claim_reply_path: str | None

    def sac_seller(self) -> str:
        """The seller's user id."""
        raise NotImplementedError

    # -- reading ---------------------------------------------------------------------------------------
    def _get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        resp = self.client.get(path, params=params)
        if resp.status != 200:
            code, text = ml_reason(resp)
            error = PermanentError if 400 <= resp.status < 500 and resp.status != 404 else TransientError
            raise error(f"{self.name}: GET {path} answered {resp.status}: {text}", status=resp.status, code=code)
        return resp.json()

    def sac_tickets(self) -> Iterator[Page]:
        """One page per kind: open questions, unread post-sale conversations, open claims."""
        yield Page(self._questions(), None)
        yield Page(self._packs(), None)
        yield Page(self._claims(), None)

    def _questions(self) -> list[Any]:
        found: list[Any] = []
        for page in range(MAX_PAGES):
            body = self._get("/questions/search", {"seller_id": self.sac_seller(), "api_version": 4,
                                                   "status": "UNANSWERED", "limit": PAGE, "offset": page * PAGE})
            items = body.get("questions") if isinstance(body, dict) else None
            if not isinstance(items, list):
                raise TransientError(f"{self.name}: GET /questions/search: no questions list", code="bad_response")
            for item in items:
                found.append(_parse(item, self._question, "question"))
            if len(items) < PAGE or (page + 1) * PAGE >= int(body.get("total") or 0):
                break
        return found

    @staticmethod
    def _question(item: dict[str, Any]) -> Ticket:
        qid = str(need(item, "id", (str, int)))
        asked = need_time(item, "date_created")
        text = opt(item, "text") or ""
        messages = [TicketMessage(f"q{qid}", "customer", text, asked)]
        answer = opt(item, "answer", dict)
        if answer and answer.get("text"):
            messages.append(TicketMessage(f"answer-{qid}", "seller", str(answer["text"]),
                                          need_time(answer, "date_created", "answer.date_created")))
        status = {"UNANSWERED": "waiting_seller", "ANSWERED": "waiting_customer"}.get(str(item.get("status")),
                                                                                   "closed")
        return Ticket("question", qid, f"Pergunta sobre o anúncio {opt(item, 'item_id', (str, int)) or '?'}", status,
                      asked, tuple(messages), context={"item_id": item.get("item_id")})

    def _conversation(self, pack: str) -> list[dict[str, Any]]:
        body = self._get(f"/messages/packs/{quote(pack, safe='')}/sellers/{self.sac_seller()}",
                         {"tag": "post_sale", "mark_as_read": "false"})
        messages = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(messages, list):
            raise TransientError(f"{self.name}: pack {pack}: no messages list", code="bad_response")
        return [m for m in messages if isinstance(m, dict)]

    def _packs(self) -> list[Any]:
        body = self._get("/messages/unread", {"role": "seller", "tag": "post_sale"})
        results = body.get("results") if isinstance(body, dict) else None
        found: list[Any] = []
        for entry in results if isinstance(results, list) else ():
            resource = str(entry.get("resource") or "") if isinstance(entry, dict) else ""
            parts = resource.strip("/").split("/")  # packs/{pack}/sellers/{seller}
            if len(parts) != 4 or parts[0] != "packs" or parts[3] != self.sac_seller():
                continue
            pack = parts[1]
            try:
                ticket = self._pack(pack, self._conversation(pack))
            except MappingError as exc:
                found.append(BadRecord(f"message:{pack}", exc.code, exc.reason, entry))
                continue
            if ticket is not None:
                found.append(ticket)
        return found

    def _pack(self, pack: str, raw: list[dict[str, Any]]) -> Ticket | None:
        """The conversation as a ticket; None when the buyer never wrote (the seller may not start one)."""
        messages = []
        for m in raw:
            sender = str((m.get("from") or {}).get("user_id") or "")
            sent = need_time(m, "date_created")
            author = "seller" if sender == self.sac_seller() else "customer"
            messages.append(TicketMessage(str(need(m, "id", (str, int))), author, str(m.get("text") or ""), sent))
        if not any(m.author == "customer" for m in messages):
            return None
        messages.sort(key=lambda m: m.sent_at)
        waiting = "waiting_seller" if messages[-1].author == "customer" else "waiting_customer"
        return Ticket("message", pack, f"Mensagens do pedido {pack}", waiting, messages[0].sent_at,
                      tuple(messages), order_id=pack)

    def _claims(self) -> list[Any]:
        found: list[Any] = []
        for page in range(MAX_PAGES):
            body = self._get("/post-purchase/v1/claims/search", {"status": "opened", "limit": PAGE,
                                                                "offset": page * PAGE})
            data = body.get("data") if isinstance(body, dict) else None
            if not isinstance(data, list):
                raise TransientError(f"{self.name}: GET /post-purchase/v1/claims/search: no data list",
                                     code="bad_response")
            for claim in data:
                if not isinstance(claim, dict) or claim.get("id") is None:
                    found.append(BadRecord("claim:?", "bad_value", "a claim without id", claim))
                    continue
                cid = str(claim["id"])
                messages = self._get(f"/post-purchase/v1/claims/{quote(cid, safe='')}/messages")
                found.append(_parse(claim, lambda c, m=messages: self._claim(c, m), "claim"))
            total = int(((body.get("paging") or {}).get("total")) or 0)
            if len(data) < PAGE or (page + 1) * PAGE >= total:
                break
        return found

    @staticmethod
    def _claim(claim: dict[str, Any], raw: Any) -> Ticket:
        cid = str(need(claim, "id", (str, int)))
        if not isinstance(raw, list):
            raise MappingError("bad_type", f"claim {cid}: its messages are not a list")
        roles = {"complainant": "customer", "respondent": "seller", "mediator": "marketplace"}
        messages = []
        for m in raw:
            if not isinstance(m, dict):
                raise MappingError("bad_type", f"claim {cid}: a message is not an object")
            sent = need_time(m, "date_created")
            role = str(m.get("sender_role") or "")
            text = str(m.get("message") or "")
            messages.append(TicketMessage(message_id(cid, str(m.get("date_created")), role, text),
                                          roles.get(role, "marketplace"), text, sent))
        order = str(claim["resource_id"]) if claim.get("resource") == "order" and claim.get("resource_id") else None
        return Ticket("claim", cid, f"Reclamação {claim.get('type') or ''} ({claim.get('reason_id') or '?'})".strip(),
                      "closed" if claim.get("status") == "closed" else "waiting_seller",
                      need_time(claim, "date_created"), tuple(messages), order_id=order)

    # -- answering -------------------------------------------------------------------------------------
    def sac_prepare(self, answer: TicketAnswer) -> Outgoing:
        if answer.type != "reply":
            return Outgoing(answer.id, {}, {"nothing_to_send": "Mercado Livre has no call to set a conversation's "
                                                               "status"})
        kind, remote_id = split_ticket_key(answer.ticket_key)
        text = (answer.body or "").strip()
        if not text:
            raise MappingError("missing_field", "the answer is empty")
        if kind == "question" and len(text) > MAX_ANSWER:
            raise MappingError("too_long", f"an answer to a question takes {MAX_ANSWER} characters, this has "
                                           f"{len(text)}")
        return Outgoing(answer.id, {"kind": kind, "id": remote_id, "text": text})

    def sac_push(self, out: Outgoing) -> PushResult:
        kind, remote_id, text = out.payload["kind"], out.payload["id"], out.payload["text"]
        if kind == "question":  # answered by question id (API.md, Questions)
            resp = self.client.post("/answers", json={"question_id": _number(remote_id), "text": text},
                                    idempotent=False)
            return self._result(out, resp, f"answer-{remote_id}")
        if kind == "message":
            path = f"/messages/packs/{quote(remote_id, safe='')}/sellers/{self.sac_seller()}"
            to = self._addressee(remote_id)
            if to is None:
                return PushResult(out.key, "rejected", reason_code="not_started_by_buyer",
                                  reason=f"pack {remote_id}: the buyer has not written: the seller may not start a "
                                         "conversation")
            body = {"from": {"user_id": _number(self.sac_seller())}, "to": {"user_id": _number(to)}, "text": text}
            resp = self.client.post(path, params={"tag": "post_sale"}, json=body, idempotent=False)
            created = None
            if resp.status in (200, 201):
                try:
                    answer = resp.json()
                    created = str(answer.get("id")) if isinstance(answer, dict) and answer.get("id") else None
                except TransientError:
                    created = None
            return self._result(out, resp, created)
        if kind == "claim":
            if not self.claim_reply_path:
                return PushResult(out.key, "rejected", reason_code="not_configured",
                                  reason="the call that posts a claim message is UNKNOWN in the reference: set "
                                         "claim_reply_path once confirmed (docs/connectors/sac.md)")
            path = self.claim_reply_path.format(claim_id=quote(remote_id, safe=""))
            resp = self.client.post(path, json={"receiver_role": "complainant", "message": text}, idempotent=False)
            return self._result(out, resp, None)
        return PushResult(out.key, "rejected", reason_code="bad_value", reason=f"no ticket kind {kind!r} on ML")

    def _addressee(self, pack: str) -> str | None:
        """Who a reply goes to: the sender of the conversation's last message not ours (API.md, 2026 change)."""
        others = [m for m in self._conversation(pack)
                  if str((m.get("from") or {}).get("user_id") or "") not in ("", self.sac_seller())]
        if not others:
            return None
        last = max(others, key=lambda m: str(m.get("date_created") or ""))
        return str(last["from"]["user_id"])

    def _result(self, out: Outgoing, resp: HttpResponse, created: str | None) -> PushResult:
        if resp.status in (200, 201):
            return PushResult(out.key, "created", remote_id=created)
        code, text = ml_reason(resp)
        return PushResult(out.key, "rejected", reason_code=code, reason=text)

    def sac_lookup(self, ticket: str, body: str) -> dict[str, bool] | None:
        """Whether the channel shows our answer already (after a crash while sending it)."""
        kind, remote_id = split_ticket_key(ticket)
        text = body.strip()
        if kind == "question":
            question = self._get(f"/questions/{quote(remote_id, safe='')}", {"api_version": 4})
            answer = question.get("answer") if isinstance(question, dict) else None
            return {"found": bool(isinstance(answer, dict) and str(answer.get("text") or "").strip() == text)}
        if kind == "message":
            mine = [m for m in self._conversation(remote_id)
                    if str((m.get("from") or {}).get("user_id") or "") == self.sac_seller()]
            return {"found": any(str(m.get("text") or "").strip() == text for m in mine)}
        return None  # claims: their message list may hide our own messages (API.md): cannot tell

    # -- Mercado Envios (ME2): Mercado Livre owns the tracking (API.md, ML L139) -------------------------
    def me2_tracking(self, refs: Sequence[ShipmentRef]) -> list[Tracking | BadRecord]:
        """The shipment's status as ML holds it (`GET /orders/{id}` → `GET /shipments/{id}`, new format)."""
        found: list[Tracking | BadRecord] = []
        for ref in refs:
            order = self._get(f"/orders/{quote(ref.order_id, safe='')}") if ref.order_id else None
            shipping = order.get("shipping") if isinstance(order, dict) else None
            shipment_id = shipping.get("id") if isinstance(shipping, dict) else None
            if shipment_id is None:
                found.append(Tracking(ref.tracking_code))
                continue
            path = f"/shipments/{quote(str(shipment_id), safe='')}"
            resp = self.client.get(path, headers={"x-format-new": "true"})
            if resp.status != 200:
                code, text = ml_reason(resp)
                raise TransientError(f"{self.name}: GET {path} answered {resp.status}: {text}", status=resp.status,
                                     code=code)
            shipment = resp.json()
            status = str(shipment.get("status") or "") if isinstance(shipment, dict) else ""
            substatus = str(shipment.get("substatus") or "") if isinstance(shipment, dict) else ""
            ours = ME2_STATUSES.get(status)
            if status == "not_delivered" and substatus in ("returning_to_sender", "returned", "returned_to_sender"):
                ours = "returned"
            if ours is None:  # pending, handling, ready_to_ship: nothing to write yet
                found.append(Tracking(ref.tracking_code))
                continue
            stamp = shipment.get("last_updated") if isinstance(shipment, dict) else None
            try:
                moment = parse_time(stamp, "last_updated") if isinstance(stamp, str) else None
            except MappingError:
                moment = None
            words = f"{status}/{substatus}" if substatus else status
            found.append(Tracking(ref.tracking_code, (TrackingEvent(ours, moment or utcnow(), None, words, words),)))
        return found

    def lookup(self, entity: str, **keys: str) -> Any:
        """Whether an answer is on the channel already (after a crash while sending it); nothing else to look up."""
        if entity == "ticket-answers":
            return self.sac_lookup(keys["ticket"], keys.get("body", ""))
        return None


def _parse(item: Any, parse: Callable[[dict[str, Any]], Ticket], kind: str) -> Ticket | BadRecord:
    key = f"{kind}:{item.get('id') if isinstance(item, dict) else '?'}"
    if not isinstance(item, dict):
        return BadRecord(key, "bad_type", "expected an object", item)
    try:
        return parse(item)
    except MappingError as exc:
        return BadRecord(key, exc.code, exc.reason, item)


def _number(text: str) -> int | str:
    return int(text) if text.isdigit() else text
