"""The customer-service routes of the Mercado Livre simulator, to ../shared/contracts/sac/API.md "Mercado Livre".

Questions (search by seller, `api_version=4`; `POST /answers` only to an UNANSWERED question, 2000
characters at most), post-sale messages per pack (unread packs; a seller message only in a
conversation the buyer started, addressed to who the conversation says: the intermediating
agent for a pack under the 2026 change, else the buyer), claims (search, messages; the claim
message POST path is UNKNOWN in the reference: this simulator serves
`POST /post-purchase/v1/claims/{id}/messages`, a documented choice). Errors in ML's shape
`{"message", "error", "status", "cause"}`, behind the simulator's token check (and its throttle knob
for 429s). Admin routes play the buyer, the agent and the mediator.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from syncagent.simulators.common import HttpError, Request, Response
from syncagent.simulators.store import DocStore

MAX_ANSWER = 2000  # API.md: questions, answer max length [third party]


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class MlSacError(HttpError):
    """ML's error envelope: {message, error, status, cause[]}."""

    def response(self) -> Response:
        return Response(self.status, {"message": self.message, "error": self.code, "status": self.status,
                                      "cause": []}, dict(self.headers))


class MercadoLivreSacRoutes:
    """Questions, post-sale messages and claims (mixed into a simulator that has `store`, and says who the
    seller is, how a call is authenticated and how an error looks)."""

    store: DocStore
    sac_seller_id: str

    def _sac_auth(self, req: Request) -> None:
        raise NotImplementedError

    def _sac_error(self, status: int, error: str, message: str) -> HttpError:
        return MlSacError(status, error, message)

    def _sac_routes(self) -> None:
        r = self.route  # type: ignore[attr-defined]
        r("GET", "/questions/search", self.search_questions)
        r("GET", "/questions/{id}", self.get_question)
        r("POST", "/answers", self.answer)
        r("GET", "/messages/unread", self.unread)
        r("GET", "/messages/packs/{pack}/sellers/{seller}", self.get_pack)
        r("POST", "/messages/packs/{pack}/sellers/{seller}", self.post_pack)
        r("GET", "/post-purchase/v1/claims/search", self.search_claims)
        r("GET", "/post-purchase/v1/claims/{id}/messages", self.claim_messages)
        r("POST", "/post-purchase/v1/claims/{id}/messages", self.post_claim_message)
        r("POST", "/_admin/questions", self.admin_question)
        r("PATCH", "/_admin/questions/{id}", self.admin_patch_question)
        r("POST", "/_admin/packs/{pack}/messages", self.admin_pack_message)
        r("POST", "/_admin/claims", self.admin_claim)
        r("POST", "/_admin/claims/{id}/messages", self.admin_claim_message)
        r("POST", "/_admin/claims/{id}/close", self.admin_close_claim)
        r("GET", "/_admin/sent", self.admin_sent)
        r("POST", "/_admin/shipments/{id}/status", self.admin_shipment_status)

    # -- questions -----------------------------------------------------------------------------------
    def search_questions(self, req: Request) -> Response:
        self._sac_auth(req)
        if req.arg("seller_id") != self.sac_seller_id:
            raise self._sac_error(403, "forbidden", "seller_id is not the token's seller")
        if req.arg("api_version") != "4":
            raise self._sac_error(400, "bad_request", "api_version=4 is required")
        status = req.arg("status")
        offset, limit = int(req.arg("offset") or 0), min(int(req.arg("limit") or 50), 50)
        rows, total = self.store.window("questions", offset, limit,
                                       lambda q: status is None or q["status"] == status)
        return Response(200, {"total": total, "limit": limit, "offset": offset, "questions": [q for _, q in rows]})

    def get_question(self, req: Request) -> Response:
        self._sac_auth(req)
        question = self.store.get("questions", unquote(req.params["id"]))
        if question is None:
            raise self._sac_error(404, "not_found", "Question not found")
        return Response(200, question)

    def answer(self, req: Request) -> Response:
        """Only an UNANSWERED question takes an answer; banned or deleted ones refuse it."""
        self._sac_auth(req)
        body = req.json()
        if not isinstance(body, dict) or body.get("question_id") is None or not isinstance(body.get("text"), str):
            raise self._sac_error(400, "bad_request", "question_id and text are required")
        question = self.store.get("questions", str(body["question_id"]))
        if question is None:
            raise self._sac_error(404, "not_found", "Question not found")
        if question["status"] == "BANNED" or question.get("deleted_from_listing"):
            raise self._sac_error(400, "banned_question", "the question was banned or deleted: it cannot be answered")
        if question["status"] != "UNANSWERED":
            raise self._sac_error(400, "not_unanswered_question", "the question is already answered")
        text = body["text"].strip()
        if not text or len(text) > MAX_ANSWER:
            raise self._sac_error(400, "invalid_text", f"the answer must have 1 to {MAX_ANSWER} characters")
        question["answer"] = {"text": text, "status": "ACTIVE", "date_created": now_iso()}
        question["status"] = "ANSWERED"
        self.store.put("questions", question["id_key"], question)
        self.store.put("sent", uuid.uuid4().hex, {"kind": "question", "id": question["id"], "text": text})
        return Response(200, {"question_id": question["id"], "text": text, "status": "ACTIVE"})

    # -- post-sale messages --------------------------------------------------------------------------
    def _pack(self, req: Request) -> dict[str, Any]:
        if unquote(req.params["seller"]) != self.sac_seller_id:
            raise self._sac_error(403, "forbidden", "not this seller's conversation")
        if req.arg("tag") != "post_sale":
            raise self._sac_error(400, "bad_request", "tag=post_sale is required")
        pack = self.store.get("packs", unquote(req.params["pack"]))
        if pack is None:
            raise self._sac_error(404, "not_found", "conversation not found")
        return pack

    def unread(self, req: Request) -> Response:
        self._sac_auth(req)
        if req.arg("role") != "seller" or req.arg("tag") != "post_sale":
            raise self._sac_error(400, "bad_request", "role=seller and tag=post_sale are required")
        results = [{"resource": f"/packs/{key}/sellers/{self.sac_seller_id}", "count": 1}
                   for key, pack in self.store.all("packs")
                   if pack["messages"] and str(pack["messages"][-1]["from"]["user_id"]) != self.sac_seller_id]
        return Response(200, {"user_id": int(self.sac_seller_id), "results": results})

    def get_pack(self, req: Request) -> Response:
        self._sac_auth(req)
        pack = self._pack(req)
        status_path = f"/packs/{pack['id']}/sellers/{self.sac_seller_id}" + ("/conversations/post_sale"
                                                                      if pack.get("agent_id") else "")
        return Response(200, {"paging": {"limit": 10, "offset": 0, "total": len(pack["messages"])},
                              "conversation_status": {"path": status_path, "status": pack.get("status", "active")},
                              "messages": pack["messages"]})

    def post_pack(self, req: Request) -> Response:
        """A seller message: only after the buyer wrote, to the conversation's addressee (API.md, 2026 change)."""
        self._sac_auth(req)
        pack = self._pack(req)
        body = req.json()
        if not isinstance(body, dict) or not isinstance(body.get("text"), str) or not body["text"].strip():
            raise self._sac_error(400, "bad_request", "text is required")
        if not any(str(m["from"]["user_id"]) != self.sac_seller_id for m in pack["messages"]):
            raise self._sac_error(403, "blocked_by_conversation_not_started",
                           "the buyer has not written: start a conversation through the action guide")
        if pack.get("status") == "blocked":
            raise self._sac_error(403, "blocked_conversation", "the conversation is closed")
        expected = str(pack.get("agent_id") or pack["buyer_id"])
        if str((body.get("to") or {}).get("user_id")) != expected:
            raise self._sac_error(400, "invalid_receiver", "to.user_id is not the conversation's addressee")
        message = {"id": uuid.uuid4().hex, "from": {"user_id": int(self.sac_seller_id)}, "to": {"user_id": int(expected)},
                   "text": body["text"], "date_created": now_iso(), "status": "available"}
        pack["messages"].append(message)
        self.store.put("packs", pack["id"], pack)
        self.store.put("sent", uuid.uuid4().hex, {"kind": "message", "id": pack["id"], "text": body["text"]})
        return Response(201, message)

    # -- claims --------------------------------------------------------------------------------------
    def search_claims(self, req: Request) -> Response:
        self._sac_auth(req)
        status = req.arg("status")
        offset, limit = int(req.arg("offset") or 0), min(int(req.arg("limit") or 50), 50)
        rows, total = self.store.window("claims", offset, limit, lambda c: status is None or c["status"] == status)
        return Response(200, {"paging": {"offset": offset, "limit": limit, "total": total},
                              "data": [{k: v for k, v in c.items() if k != "messages"} for _, c in rows]})

    def _claim(self, req: Request) -> dict[str, Any]:
        claim = self.store.get("claims", unquote(req.params["id"]))
        if claim is None:
            raise self._sac_error(404, "not_found", "claim not found")
        return claim

    def claim_messages(self, req: Request) -> Response:
        self._sac_auth(req)
        return Response(200, self._claim(req)["messages"])

    def post_claim_message(self, req: Request) -> Response:
        self._sac_auth(req)
        claim = self._claim(req)
        body = req.json()
        if not isinstance(body, dict) or not isinstance(body.get("message"), str) or not body["message"].strip():
            raise self._sac_error(400, "bad_request", "message is required")
        if claim["status"] != "opened":
            raise self._sac_error(400, "claim_closed", "the claim is closed: no more messages")
        message = {"sender_role": "respondent", "receiver_role": body.get("receiver_role") or "complainant",
                   "message": body["message"], "date_created": now_iso()}
        claim["messages"].append(message)
        self.store.put("claims", str(claim["id"]), claim)
        self.store.put("sent", uuid.uuid4().hex, {"kind": "claim", "id": claim["id"], "text": body["message"]})
        return Response(201, message)

    # -- admin ---------------------------------------------------------------------------------------
    def admin_question(self, req: Request) -> Response:
        """{"id"?, "item_id"?, "text", "from_id"?}: a buyer asks."""
        body = req.json()
        qid = int(body.get("id") or 10_000_000 + self.store.count("questions") + 1)
        question = {"id": qid, "id_key": str(qid), "item_id": body.get("item_id") or "MLB1000000001",
                    "seller_id": int(self.sac_seller_id), "status": "UNANSWERED", "text": body.get("text") or "Tem estoque?",
                    "date_created": now_iso(), "deleted_from_listing": False, "hold": False, "suspected_spam": False,
                    "answer": None, "from": {"id": int(body.get("from_id") or 5550001)}}
        self.store.put("questions", str(qid), question)
        return Response(201, question)

    def admin_patch_question(self, req: Request) -> Response:
        """{"status": "BANNED"} or {"deleted_from_listing": true}."""
        question = self.store.get("questions", unquote(req.params["id"]))
        if question is None:
            raise HttpError(404, "not_found", "no such question")
        body = req.json()
        question.update({k: v for k, v in body.items() if k in ("status", "deleted_from_listing")})
        if question["status"] == "BANNED":
            question["text"] = ""  # API.md: the text comes back empty when BANNED
        self.store.put("questions", question["id_key"], question)
        return Response(200, question)

    def admin_pack_message(self, req: Request) -> Response:
        """{"from_id": buyer (or agent) id, "text", "buyer_id"?, "agent_id"?, "status"?}: someone writes in a pack."""
        pack_id = unquote(req.params["pack"])
        body = req.json()
        pack = self.store.get("packs", pack_id) or {"id": pack_id, "buyer_id": int(body.get("buyer_id") or 5550001),
                                                   "agent_id": body.get("agent_id"), "messages": []}
        if body.get("status"):
            pack["status"] = body["status"]
        if body.get("text"):
            sender = int(body.get("from_id") or pack.get("agent_id") or pack["buyer_id"])
            pack["messages"].append({"id": uuid.uuid4().hex, "from": {"user_id": sender},
                                     "to": {"user_id": int(self.sac_seller_id)}, "text": body["text"],
                                     "date_created": now_iso(), "status": "available"})
        self.store.put("packs", pack_id, pack)
        return Response(201, pack)

    def admin_claim(self, req: Request) -> Response:
        """{"id", "resource_id"?, "type"?, "reason_id"?, "message"?}: a buyer opens a claim."""
        body = req.json()
        cid = int(body.get("id") or 5_000_000_000 + self.store.count("claims") + 1)
        claim = {"id": cid, "resource_id": body.get("resource_id") or 2000000000001, "resource": "order",
                 "status": "opened", "type": body.get("type") or "mediations", "stage": "claim",
                 "reason_id": body.get("reason_id") or "PDD9949", "date_created": now_iso(), "messages": []}
        if body.get("message"):
            claim["messages"].append({"sender_role": "complainant", "receiver_role": "respondent",
                                      "message": body["message"], "date_created": now_iso()})
        self.store.put("claims", str(cid), claim)
        return Response(201, claim)

    def admin_claim_message(self, req: Request) -> Response:
        claim = self._claim(req)
        body = req.json()
        claim["messages"].append({"sender_role": body.get("sender_role") or "complainant",
                                  "receiver_role": "respondent", "message": body["message"], "date_created": now_iso()})
        self.store.put("claims", str(claim["id"]), claim)
        return Response(201, claim)

    def admin_close_claim(self, req: Request) -> Response:
        claim = self._claim(req)
        claim["status"] = "closed"
        self.store.put("claims", str(claim["id"]), claim)
        return Response(200, claim)

    def admin_shipment_status(self, req: Request) -> Response:
        """{"status": "shipped" | "delivered" | "not_delivered", "substatus"?}: Mercado Envios moves a shipment (ME2)."""
        shipment = self.store.get("shipments", unquote(req.params["id"]))
        if shipment is None:
            raise HttpError(404, "not_found", "no such shipment")
        body = req.json()
        shipment.update(status=str(body.get("status")), substatus=body.get("substatus"), last_updated=now_iso())
        self.store.put("shipments", str(shipment["id"]), shipment)
        return Response(200, shipment)

    def admin_sent(self, req: Request) -> Response:
        """Every answer and seller message the API accepted, in order (an answer sent twice shows twice)."""
        return Response(200, {"items": [doc for _, doc in self.store.all("sent")]})
