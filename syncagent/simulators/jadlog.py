"""Simulator of the Jadlog API Embarcador tracking call, to ../shared/contracts/carriers/API.md "Jadlog".

`POST /embarcador/api/tracking/consultar` with `Authorization: Bearer <token>` and
`{"consulta": [{"shipmentId": …} | {"cte": …}]}`; each entry answers its tracking (status and
events with local "yyyy-mm-dd hh:mm:ss" times) or an `erro` for a shipment Jadlog does not know.
Admin routes add a shipment's events. Rate limits and the batch limit are UNKNOWN in the
reference: none here beyond the shared fault knobs.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import unquote

from syncagent.simulators.auth import require_headers
from syncagent.simulators.common import HttpError, Request, Response, SimApp
from syncagent.simulators.store import DocStore

DEMO_TOKEN = "demo-jadlog-token"
OPTIONS = ("token",)
BRASILIA = timezone(timedelta(hours=-3))


class JadlogSim(SimApp):
    system = "jadlog"

    def __init__(self, db_path: str, *, log_bodies: bool = True, token: str = DEMO_TOKEN) -> None:
        super().__init__(db_path, log_bodies=log_bodies)
        self.docs = DocStore(self.db, self.lock)
        self.token = token
        self.route("POST", "/embarcador/api/tracking/consultar", self.track)  # API.md L66
        self.route("POST", "/_admin/shipments/{code}/events", self.admin_event)

    def track(self, req: Request) -> Response:
        require_headers(req, {"authorization": f"Bearer {self.token}"})
        body = req.json()
        entries = body.get("consulta") if isinstance(body, dict) else None
        if not isinstance(entries, list) or not entries:
            raise HttpError(400, "bad_request", "consulta: a non-empty list is required")
        answers: list[dict[str, Any]] = []
        for entry in entries:  # API.md L67-L68
            if not isinstance(entry, dict) or not ({"shipmentId", "cte"} & set(entry)):
                raise HttpError(400, "bad_request", "each consulta entry needs a shipmentId or a cte")
            kind = "shipmentId" if "shipmentId" in entry else "cte"
            code = str(entry[kind])
            doc = self.docs.get("shipments", code)
            if doc is None:
                answers.append({kind: code, "erro": {"id": -1, "descricao": "Nenhum registro encontrado"}})
                continue
            events = doc["eventos"]
            answers.append({kind: code, "previsaoEntrega": None,
                            "tracking": {"status": events[-1]["status"] if events else None, "eventos": events}})
        return Response(200, {"consulta": answers})

    def admin_event(self, req: Request) -> Response:
        """{"status": "ENTREGUE", "data"?: "yyyy-mm-dd hh:mm:ss", "unidade"?: "..."}: appended (oldest first)."""
        code = unquote(req.params["code"])
        body = req.json()
        if not isinstance(body, dict) or not isinstance(body.get("status"), str):
            raise HttpError(400, "bad_request", "status is required")
        doc = self.docs.get("shipments", code) or {"eventos": []}
        event = {"data": body.get("data") or datetime.now(BRASILIA).strftime("%Y-%m-%d %H:%M:%S"),
                 "status": body["status"], "unidade": body.get("unidade") or "CO SAO PAULO"}
        doc["eventos"].append(event)
        self.docs.put("shipments", code, doc)
        return Response(201, event)


def build(db_path: str, *, products: int = 0, seed: int = 0, log_bodies: bool = True, **options: str) -> SimApp:
    """Options: token."""
    unknown = set(options) - set(OPTIONS)
    if unknown:
        raise ValueError(f"unknown jadlog options: {sorted(unknown)}; known: {', '.join(OPTIONS)}")
    return JadlogSim(db_path, log_bodies=log_bodies, token=options.get("token") or DEMO_TOKEN)
