"""Simulator of the Correios API Rastro (CWS), to ../shared/contracts/carriers/API.md "Correios".

A token from `POST /token/v1/autentica` (HTTP Basic user:access code) or
`/token/v1/autentica/cartaopostagem` (same, with the postage card in the body), valid until its
`expiraEm` (local time); tracking of one object (`resultado=T` every event, `U` the last) or of a
batch of at most 50 codes; events newest first with local times without a zone; an unknown object
answers its code with a `mensagem`. Admin routes post an object's events (as the Correios units
scan it) and expire tokens. Rate limits are UNKNOWN in the reference: none here beyond the
shared fault knobs (429 with Retry-After on demand).
"""

from __future__ import annotations

import re
import secrets
import time
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import unquote

from syncagent.simulators.auth import require_basic
from syncagent.simulators.common import HttpError, Request, Response, SimApp
from syncagent.simulators.store import DocStore

DEMO_USER, DEMO_ACCESS_CODE = "syncagent-demo", "demo-correios-code"
MAX_BATCH = 50  # API.md L40
TOKEN_TTL = 3600
BRASILIA = timezone(timedelta(hours=-3))  # API.md L42: local Brasília time
CODE = re.compile(r"[A-Z]{2}[0-9]{9}[A-Z]{2}")  # API.md L45
NOT_FOUND = "SRO-020: Objeto não encontrado na base de dados dos Correios."
OPTIONS = ("user", "access_code", "postage_card", "token_ttl")


def s10_valid(code: str) -> bool:
    """API.md L46: weights 8,6,4,2,3,5,9,7; r = sum mod 11; r=0 → 5, r=1 → 0, else 11 − r."""
    if not CODE.fullmatch(code):
        return False
    r = sum(int(d) * w for d, w in zip(code[2:10], (8, 6, 4, 2, 3, 5, 9, 7), strict=True)) % 11
    return int(code[10]) == (5 if r == 0 else 0 if r == 1 else 11 - r)


def local_now() -> str:
    return datetime.now(BRASILIA).strftime("%Y-%m-%dT%H:%M:%S")


class CorreiosSim(SimApp):
    system = "correios"

    def __init__(self, db_path: str, *, log_bodies: bool = True, user: str = DEMO_USER,
                 access_code: str = DEMO_ACCESS_CODE, postage_card: str | None = None,
                 token_ttl: int = TOKEN_TTL) -> None:
        super().__init__(db_path, log_bodies=log_bodies)
        self.docs = DocStore(self.db, self.lock)
        self.user, self.access_code, self.card, self.token_ttl = user, access_code, postage_card, token_ttl
        r = self.route
        r("POST", "/token/v1/autentica", self.token)
        r("POST", "/token/v1/autentica/cartaopostagem", self.token_card)
        r("GET", "/srorastro/v1/objetos/{code}", self.track_one)
        r("GET", "/srorastro/v1/objetos", self.track_batch)
        r("POST", "/_admin/objects/{code}/events", self.admin_event)
        r("GET", "/_admin/objects/{code}", self.admin_object)
        r("POST", "/_admin/tokens/expire", self.admin_expire)

    # -- token (API.md L33-L36) ----------------------------------------------------------------------
    def _issue(self) -> Response:
        token = "CWS-" + secrets.token_urlsafe(24)
        expires = time.time() + self.token_ttl
        self.docs.put("tokens", token, {"expires": expires})
        expira = datetime.fromtimestamp(expires, BRASILIA).strftime("%Y-%m-%dT%H:%M:%S")
        return Response(201, {"ambiente": "PRODUCAO", "id": self.user, "emissao": local_now(), "expiraEm": expira,
                              "token": token})

    def token(self, req: Request) -> Response:
        require_basic(req, self.user, self.access_code)
        return self._issue()

    def token_card(self, req: Request) -> Response:
        require_basic(req, self.user, self.access_code)
        body = req.json()
        if not isinstance(body, dict) or not body.get("numero"):
            raise HttpError(400, "bad_request", "numero (the postage card) is required")
        if self.card is not None and str(body["numero"]) != self.card:
            raise HttpError(403, "forbidden", "the postage card is not of this contract")
        return self._issue()

    def _require_token(self, req: Request) -> None:
        auth = req.header("authorization") or ""
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        doc = self.docs.get("tokens", token) if token else None
        if doc is None or doc["expires"] <= time.time():  # API.md L36: clients renew on 401
            raise HttpError(401, "unauthorized", "token ausente, inválido ou expirado")

    # -- tracking (API.md L38-L42) -------------------------------------------------------------------
    @staticmethod
    def _result(req: Request) -> str:
        result = req.arg("resultado") or "T"
        if result not in ("T", "U"):
            raise HttpError(400, "bad_request", "resultado must be T (every event) or U (the last one)")
        return result

    def _object(self, code: str, result: str) -> dict[str, Any]:
        doc = self.docs.get("objects", code)
        if doc is None:
            return {"codObjeto": code, "mensagem": NOT_FOUND}
        events = doc["eventos"]  # newest first (API.md L42)
        return {"codObjeto": code, "tipoPostal": doc["tipoPostal"], "eventos": events[:1] if result == "U" else events}

    def track_one(self, req: Request) -> Response:
        self._require_token(req)
        result = self._result(req)
        return Response(200, {"objetos": [self._object(unquote(req.params["code"]), result)], "quantidade": 1})

    def track_batch(self, req: Request) -> Response:
        self._require_token(req)
        result = self._result(req)
        codes = [c for c in (req.arg("codigosObjetos") or "").split(",") if c]
        if not codes:
            raise HttpError(400, "bad_request", "codigosObjetos is required")
        if len(codes) > MAX_BATCH:  # API.md L40
            raise HttpError(400, "bad_request", f"at most {MAX_BATCH} codes per request, got {len(codes)}")
        return Response(200, {"objetos": [self._object(c, result) for c in codes], "quantidade": len(codes)})

    # -- admin ---------------------------------------------------------------------------------------
    def admin_event(self, req: Request) -> Response:
        """{"codigo": "BDE", "tipo": "01", "descricao": "...", "dtHrCriado"?: local time, "cidade", "uf"}."""
        code = unquote(req.params["code"])
        if not s10_valid(code):
            raise HttpError(400, "bad_request", f"{code[:20]!r} is not a valid S10 object code")
        body = req.json()
        if not isinstance(body, dict) or not body.get("codigo") or body.get("tipo") is None:
            raise HttpError(400, "bad_request", "codigo and tipo are required")
        doc = self.docs.get("objects", code) or {"tipoPostal": {"categoria": "SEDEX", "descricao": "SEDEX"},
                                                 "eventos": []}
        event = {"codigo": str(body["codigo"]), "tipo": str(body["tipo"]),
                 "descricao": str(body.get("descricao") or body["codigo"]),
                 "dtHrCriado": str(body.get("dtHrCriado") or local_now()),
                 "unidade": {"tipo": "Unidade de Tratamento",
                             "endereco": {"cidade": body.get("cidade") or "SAO PAULO", "uf": body.get("uf") or "SP"}}}
        doc["eventos"].insert(0, event)
        self.docs.put("objects", code, doc)
        return Response(201, event)

    def admin_object(self, req: Request) -> Response:
        return Response(200, self._object(unquote(req.params["code"]), "T"))

    def admin_expire(self, req: Request) -> Response:
        for token, doc in list(self.docs.all("tokens")):
            self.docs.put("tokens", token, {**doc, "expires": 0})
        return Response(204)


def build(db_path: str, *, products: int = 0, seed: int = 0, log_bodies: bool = True, **options: str) -> SimApp:
    """Options: user, access_code, postage_card, token_ttl (seconds)."""
    unknown = set(options) - set(OPTIONS)
    if unknown:
        raise ValueError(f"unknown correios options: {sorted(unknown)}; known: {', '.join(OPTIONS)}")
    return CorreiosSim(db_path, log_bodies=log_bodies, user=options.get("user") or DEMO_USER,
                       access_code=options.get("access_code") or DEMO_ACCESS_CODE,
                       postage_card=options.get("postage_card"), token_ttl=int(options.get("token_ttl") or TOKEN_TTL))
