"""The SAC routes of the SkyHub simulator, to ../shared/contracts/sac/API.md "SkyHub / Americanas Marketplace".

Behind the SkyHub simulator's own checks (the three auth headers, its limits). `GET /sac` pages forward
only: `next_page` carries `cursor=`, there are no page numbers, and with a cursor the `status` and
`platform` filters are ignored; a SAC with a new message moves to the end (it comes again after any
cursor handed out before). `/sac` lists only SACs that had a message exchange; `GET
/sac/{code}/instances` lists the ones opened without any. Threads (`GET /sac/{code}/chats`) keep
their parties. The reply call is UNKNOWN in the reference: the simulator option `reply_call` picks which of
two plausible shapes this simulator accepts (`chats`: `POST /sac/{code}/chats {"parts",
"content"}`; `interactions`: `POST /sac/{code}/interactions {"chat", "message", "status"}`), so the
connector is tested both ways; a reply in a thread the seller is not part of, or a closed one, is
refused (422).
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from syncagent.simulators.common import HttpError, Request, Response
from syncagent.simulators.store import DocStore

PAGE = 10
SELLER_THREADS = frozenset({"B2W_SELLER", "CUSTOMER_SELLER"})


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class SkyHubSacRoutes:
    """The SAC routes of the SkyHub simulator (mixed into `SkyHubSim`, whose `api` checks auth and limits)."""

    store: DocStore
    email: str

    def _sac_routes(self, reply_call: str) -> None:
        if reply_call not in ("chats", "interactions"):
            raise ValueError("skyhub option reply_call must be chats or interactions")
        r, api = self.route, self.api  # type: ignore[attr-defined]
        r("GET", "/sac", api("sac GET", self.list_sacs))
        r("GET", "/sac/{code}/chats", api("sac chats GET", self.chats))
        r("GET", "/sac/{code}/instances", api("sac instances GET", self.instances))
        if reply_call == "chats":
            r("POST", "/sac/{code}/chats", api("sac chats POST", self.reply_chats))
        else:
            r("POST", "/sac/{code}/interactions", api("sac interactions POST", self.reply_interactions))
        r("POST", "/_admin/sacs/{code}/messages", self.admin_message)
        r("POST", "/_admin/sacs/{code}/instances", self.admin_instance)
        r("POST", "/_admin/sacs/{code}/close", self.admin_close)
        r("GET", "/_admin/sac-replies", self.admin_sent)

    # -- reading -------------------------------------------------------------------------------------
    def list_sacs(self, req: Request) -> Response:
        """Forward-only: the cursor is where the last page ended; page/per_page are not supported."""
        if req.arg("page") is not None or req.arg("per_page") is not None:
            raise HttpError(400, "bad_request", "page and per_page are not supported: follow next_page")
        cursor = req.arg("cursor")
        after = 0
        if cursor:
            try:
                after = int(json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))["s"])
            except (ValueError, KeyError, TypeError):
                raise HttpError(400, "invalid_cursor", "cursor is not one this API handed out") from None
        status = None if cursor else req.arg("status")  # API.md: filters are ignored with a cursor
        rows = [(seq, doc) for seq, _, doc in self.store.after("sacs", after, 1000)
                if doc["chats"] and (status is None or doc["status"] == status)][:PAGE]
        last = rows[-1][0] if rows else after
        token = base64.urlsafe_b64encode(json.dumps({"s": last}).encode()).decode().rstrip("=")
        sacs = [{k: doc[k] for k in ("code", "created_at", "mediation", "order_code", "platform", "status",
                                     "updated_at", "warehouse")} for _, doc in rows]
        return Response(200, {"next_page": f"/sac?cursor={token}", "sacs": sacs})

    def _sac(self, req: Request) -> dict[str, Any]:
        sac = self.store.get("sacs", unquote(req.params["code"]))
        if sac is None:
            raise HttpError(404, "not_found", "SAC não encontrado")
        return sac

    def chats(self, req: Request) -> Response:
        sac = self._sac(req)
        return Response(200, {"chats": list(sac["chats"].values())})

    def instances(self, req: Request) -> Response:
        return Response(200, {"instances": self._sac(req)["instances"]})

    # -- replies (the UNKNOWN call, one shape or the other) --------------------------------------------
    def _reply(self, req: Request, parts: Any, text: Any) -> Response:
        sac = self._sac(req)
        if not isinstance(text, str) or not text.strip():
            raise HttpError(400, "bad_request", "the message text is required")
        chat = sac["chats"].get(parts)
        if chat is None:
            raise HttpError(404, "not_found", f"no thread {str(parts)[:30]!r} in this SAC")
        if parts not in SELLER_THREADS:
            raise HttpError(422, "not_a_party", "o lojista não participa desta conversa")
        if chat["status"] == "CLOSED":
            raise HttpError(422, "chat_closed", "conversa encerrada")
        message = {"content": text, "created_at": now_iso(), "replyed_at": None,
                   "part": {"role": "SELLER", "name": "Loja", "email": self.email, "code": "seller"}}
        chat["messages"].append(message)
        chat["last_message"] = message["created_at"]
        chat["seller_status"] = "READ"
        self.store.put("sacs", sac["code"], sac)
        self.store.put("sac_replies", uuid.uuid4().hex, {"code": sac["code"], "parts": parts, "content": text})
        return Response(201, message)

    def reply_chats(self, req: Request) -> Response:
        body = req.json()
        if not isinstance(body, dict):
            raise HttpError(400, "bad_request", "a JSON object is required")
        return self._reply(req, body.get("parts"), body.get("content"))

    def reply_interactions(self, req: Request) -> Response:
        body = req.json()
        if not isinstance(body, dict):
            raise HttpError(400, "bad_request", "a JSON object is required")
        return self._reply(req, body.get("chat"), body.get("message"))

    # -- admin ---------------------------------------------------------------------------------------
    def _admin_sac(self, code: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.store.get("sacs", code) or {
            "code": code, "created_at": now_iso(), "mediation": False, "order_code": body.get("order_code"),
            "platform": "Lojas Americanas", "status": "UNREAD", "updated_at": now_iso(), "warehouse": None,
            "chats": {}, "instances": []}

    def admin_message(self, req: Request) -> Response:
        """{"parts": "CUSTOMER_SELLER", "role": "CUSTOMER", "content": …, "order_code"?}: someone writes."""
        code = unquote(req.params["code"])
        body = req.json()
        sac = self._admin_sac(code, body)
        parts = str(body.get("parts") or "CUSTOMER_SELLER")
        chat = sac["chats"].setdefault(parts, {"parts": parts, "status": "ACTIVE", "seller_status": "UNREAD",
                                               "last_message": None, "messages": []})
        role = str(body.get("role") or "CUSTOMER")
        message = {"content": str(body.get("content") or "Olá"), "created_at": now_iso(), "replyed_at": None,
                   "part": {"role": role, "name": body.get("name") or role.title(), "email": None, "code": role}}
        chat["messages"].append(message)
        chat["last_message"] = message["created_at"]
        sac["updated_at"], sac["status"] = now_iso(), "UNREAD"
        self.store.put("sacs", code, sac)  # moves to the end of the forward-only listing
        return Response(201, sac)

    def admin_instance(self, req: Request) -> Response:
        """{"code": …, "reason"?: …, "order_code"?}: a ticket opened without any message (only under /instances)."""
        code = unquote(req.params["code"])
        body = req.json()
        sac = self._admin_sac(code, body)
        sac["instances"].append({"code": str(body.get("code") or len(sac["instances"]) + 1),
                                 "reason": body.get("reason") or "Atraso na entrega", "created_at": now_iso(),
                                 "status": "OPEN"})
        self.store.put("sacs", code, sac)
        return Response(201, sac)

    def admin_close(self, req: Request) -> Response:
        """{"parts": …}: the thread is closed; replies are refused."""
        code = unquote(req.params["code"])
        sac = self.store.get("sacs", code)
        if sac is None:
            raise HttpError(404, "not_found", "no such SAC")
        body = req.json()
        sac["chats"][str(body.get("parts"))]["status"] = "CLOSED"
        self.store.put("sacs", code, sac)
        return Response(200, sac)

    def admin_sent(self, req: Request) -> Response:
        """Every seller reply accepted, in order."""
        return Response(200, {"items": [doc for _, doc in self.store.all("sac_replies")]})

