"""Simulator of SkyHub's SAC (Americanas), to ../shared/contracts/sac/API.md "SkyHub / Americanas Marketplace".

Every call needs `X-User-Email`, `X-Api-Key` and `X-Accountmanager-Key`. `GET /sac` pages forward
only: `next_page` carries `cursor=`, there are no page numbers, and with a cursor the `status` and
`platform` filters are ignored; a SAC with a new message moves to the end (it comes again after any
cursor handed out before). `/sac` lists only SACs that had a message exchange; `GET
/sac/{code}/instances` lists the ones opened without any. Threads (`GET /sac/{code}/chats`) keep
their parties. The reply call is UNKNOWN in the reference: the `reply_call` option picks which of
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

from syncagent.simulators.auth import require_headers
from syncagent.simulators.common import HttpError, Request, Response, SimApp
from syncagent.simulators.store import DocStore

DEMO_EMAIL, DEMO_API_KEY, DEMO_MANAGER_KEY = "loja@example.com", "demo-skyhub-key", "demo-manager-key"
PAGE = 10
SELLER_THREADS = frozenset({"B2W_SELLER", "CUSTOMER_SELLER"})
OPTIONS = ("email", "api_key", "account_manager_key", "reply_call")


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class SkyHubSacSim(SimApp):
    system = "skyhub-sac"

    def __init__(self, db_path: str, *, log_bodies: bool = True, email: str = DEMO_EMAIL,
                 api_key: str = DEMO_API_KEY, account_manager_key: str = DEMO_MANAGER_KEY,
                 reply_call: str = "chats") -> None:
        super().__init__(db_path, log_bodies=log_bodies)
        self.docs = DocStore(self.db, self.lock)
        self.headers = {"x-user-email": email, "x-api-key": api_key, "x-accountmanager-key": account_manager_key}
        if reply_call not in ("chats", "interactions"):
            raise ValueError("reply_call must be chats or interactions")
        r = self.route
        r("GET", "/sac", self.list_sacs)
        r("GET", "/sac/{code}/chats", self.chats)
        r("GET", "/sac/{code}/instances", self.instances)
        if reply_call == "chats":
            r("POST", "/sac/{code}/chats", self.reply_chats)
        else:
            r("POST", "/sac/{code}/interactions", self.reply_interactions)
        r("POST", "/_admin/sacs/{code}/messages", self.admin_message)
        r("POST", "/_admin/sacs/{code}/instances", self.admin_instance)
        r("POST", "/_admin/sacs/{code}/close", self.admin_close)
        r("GET", "/_admin/sent", self.admin_sent)

    def dispatch(self, req: Request) -> Response:
        if not req.path.startswith("/_admin"):
            try:
                require_headers(req, self.headers)  # API.md: the three headers on every call
            except HttpError as err:
                return err.response()
        return super().dispatch(req)

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
        rows = [(seq, doc) for seq, _, doc in self.docs.after("sacs", after, 1000)
                if doc["chats"] and (status is None or doc["status"] == status)][:PAGE]
        last = rows[-1][0] if rows else after
        token = base64.urlsafe_b64encode(json.dumps({"s": last}).encode()).decode().rstrip("=")
        sacs = [{k: doc[k] for k in ("code", "created_at", "mediation", "order_code", "platform", "status",
                                     "updated_at", "warehouse")} for _, doc in rows]
        return Response(200, {"next_page": f"/sac?cursor={token}", "sacs": sacs})

    def _sac(self, req: Request) -> dict[str, Any]:
        sac = self.docs.get("sacs", unquote(req.params["code"]))
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
                   "part": {"role": "SELLER", "name": "Loja", "email": self.headers["x-user-email"], "code": "seller"}}
        chat["messages"].append(message)
        chat["last_message"] = message["created_at"]
        chat["seller_status"] = "READ"
        self.docs.put("sacs", sac["code"], sac)
        self.docs.put("sent", uuid.uuid4().hex, {"code": sac["code"], "parts": parts, "content": text})
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
        return self.docs.get("sacs", code) or {
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
        self.docs.put("sacs", code, sac)  # moves to the end of the forward-only listing
        return Response(201, sac)

    def admin_instance(self, req: Request) -> Response:
        """{"code": …, "reason"?: …, "order_code"?}: a ticket opened without any message (only under /instances)."""
        code = unquote(req.params["code"])
        body = req.json()
        sac = self._admin_sac(code, body)
        sac["instances"].append({"code": str(body.get("code") or len(sac["instances"]) + 1),
                                 "reason": body.get("reason") or "Atraso na entrega", "created_at": now_iso(),
                                 "status": "OPEN"})
        self.docs.put("sacs", code, sac)
        return Response(201, sac)

    def admin_close(self, req: Request) -> Response:
        """{"parts": …}: the thread is closed; replies are refused."""
        code = unquote(req.params["code"])
        sac = self.docs.get("sacs", code)
        if sac is None:
            raise HttpError(404, "not_found", "no such SAC")
        body = req.json()
        sac["chats"][str(body.get("parts"))]["status"] = "CLOSED"
        self.docs.put("sacs", code, sac)
        return Response(200, sac)

    def admin_sent(self, req: Request) -> Response:
        """Every seller reply accepted, in order."""
        return Response(200, {"items": [doc for _, doc in self.docs.all("sent")]})


def build(db_path: str, *, products: int = 0, seed: int = 0, log_bodies: bool = True, **options: str) -> SimApp:
    """Options: email, api_key, account_manager_key, reply_call (chats | interactions)."""
    unknown = set(options) - set(OPTIONS)
    if unknown:
        raise ValueError(f"unknown skyhub-sac options: {sorted(unknown)}; known: {', '.join(OPTIONS)}")
    return SkyHubSacSim(db_path, log_bodies=log_bodies, email=options.get("email") or DEMO_EMAIL,
                        api_key=options.get("api_key") or DEMO_API_KEY,
                        account_manager_key=options.get("account_manager_key") or DEMO_MANAGER_KEY,
                        reply_call=options.get("reply_call") or "chats")
