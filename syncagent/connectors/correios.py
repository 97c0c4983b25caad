"""Correios (API Rastro, CWS): a carrier connector, the tracking source of Correios shipments.

Reference: ../shared/contracts/carriers/API.md, "Correios: API Rastro". A token from `POST
/token/v1/autentica` (HTTP Basic user:access code; or `/autentica/cartaopostagem` bound to a
postage card) is cached until its `expiraEm` and fetched again once on a 401. Tracking asks one
code with `GET /srorastro/v1/objetos/{code}?resultado=T` (every event) or up to `batch_size`
codes with `GET /srorastro/v1/objetos?codigosObjetos=A,B&resultado=U` (the last event of each, as
the reference gives the batch call); an object whose last status is not the one last written is
then read whole (`resultado=T`), so no status in between is skipped. An object code is checked by its UPU S10 check digit before
any call: a code that cannot exist is quarantined, never polled. An event is the pair (codigo,
tipo), the tipo compared as a number; its local time (no zone on the wire) is read in `timezone`.
"""

from __future__ import annotations

import base64
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from syncagent.connectors.base import (
    BaseConnector,
    Capabilities,
    ConnectorState,
    OptionSpec,
    Outgoing,
    PushResult,
)
from syncagent.connectors.common import body_of, http_settings, need, opt, refused
from syncagent.errors import AuthError, MappingError, TransientError
from syncagent.http import ApiKeyAuth, CachedToken, HttpClient, HttpSettings, redact
from syncagent.model import BadRecord, Page, utcnow
from syncagent.model_sac import ShipmentRef, Tracking, TrackingEvent

CODE = re.compile(r"[A-Z]{2}[0-9]{9}[A-Z]{2}")  # API.md L45: 2 letters, 8 digits, check digit, 2 letters
WEIGHTS = (8, 6, 4, 2, 3, 5, 9, 7)  # API.md L46
BAIXA = frozenset({"BDE", "BDI", "BDR"})  # the final-scan family: success or failure by tipo (API.md L60)
FAILED_TIPOS = frozenset({20, 25, 34, 35, 46, 47})  # API.md L56-L57
DELIVERED_TIPO, RETURNED_TIPO = 1, 23  # API.md L55, L58
BY_CODE = {"PO": "posted", "RO": "in_transit", "DO": "in_transit", "OEC": "out_for_delivery"}  # API.md L52-L54
MAX_BATCH = 50  # API.md L40: one third party's chunk size, called the Correios maximum (unverified)
DEFAULT_RATE = 2.0  # requests a second when the config sets no rate_limit (the reference gives none)


def check_digit(serial: str) -> int:
    """UPU S10 check digit of the 8 serial digits (API.md L46: r=0 → 5, r=1 → 0, else 11 − r)."""
    r = sum(int(d) * w for d, w in zip(serial, WEIGHTS, strict=True)) % 11
    return 5 if r == 0 else 0 if r == 1 else 11 - r


def code_problem(code: str) -> str | None:
    """Why `code` cannot be a Correios object code, or None."""
    if not CODE.fullmatch(code):
        return f"{code[:30]!r} is not a Correios object code (2 letters, 9 digits, 2 letters, like AA123456785BR)"
    if check_digit(code[2:10]) != int(code[10]):
        return f"{code} has a wrong check digit (S10: {check_digit(code[2:10])} expected): the code was mistyped"
    return None


def status_of(codigo: str, tipo: int) -> str:
    """The back office status of an event (codigo, tipo); the baixa family only by its tipo (API.md L60)."""
    if codigo in BAIXA:
        if tipo == DELIVERED_TIPO:
            return "delivered"
        if tipo == RETURNED_TIPO:
            return "returned"
        return "delivery_failed" if tipo in FAILED_TIPOS else "exception"
    return BY_CODE.get(codigo, "in_transit")  # codes the reference does not list (LDI…): still on its way


def zone(name: str) -> Any:
    """The zone of the carrier's local times; Brasília has had no daylight saving since 2019 (UTC−3) as fallback."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return timezone(timedelta(hours=-3))


class CorreiosToken(CachedToken):
    """The CWS token: fetched lazily, kept until `expiraEm`, fetched again once after a 401."""

    def __init__(self, client: HttpClient, user: str, access_code: str, card: str | None, tz: Any,
                 clock: Callable[[], float] = time.time) -> None:
        self.client, self.user, self.card, self.tz, self.clock = client, user, card, tz, clock
        self.basic = "Basic " + base64.b64encode(f"{user}:{access_code}".encode()).decode()
        self.secrets: tuple[str, ...] = (access_code, self.basic[6:])
        self._headers: dict[str, str] | None = None
        self._expires = 0.0
        self._lock = threading.Lock()

    def _fetch(self) -> None:
        path = "/token/v1/autentica/cartaopostagem" if self.card else "/token/v1/autentica"  # API.md L34-L35
        # the token client sends the Basic credentials as its own fixed auth (a second token is harmless)
        resp = self.client.request("POST", path, idempotent=True, json={"numero": self.card} if self.card else None)
        name = self.client.name
        if resp.status in (400, 401, 403):
            raise AuthError(redact(f"{name}: credentials rejected by {name} ({path}): {resp.status}: "
                                   f"{resp.error_message() or resp.error_code() or 'no message'}", self.secrets),
                            status=resp.status, code=resp.error_code(), target=name)
        if resp.status not in (200, 201):
            raise TransientError(f"{name}: token endpoint {path} answered {resp.status}", status=resp.status,
                                 target=name)
        try:
            body = resp.json()
        except TransientError:
            body = None
        token = body.get("token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise TransientError(f"{name}: token endpoint {path} gave no token", code="bad_response", target=name)
        expires = self.clock() + 3600.0
        try:  # expiraEm: local time without a zone, like the tracking times
            stamp = datetime.fromisoformat(str(body.get("expiraEm")))
            expires = (stamp if stamp.tzinfo else stamp.replace(tzinfo=self.tz)).timestamp() - 60.0
        except (TypeError, ValueError):
            pass
        self._headers = {"Authorization": f"Bearer {token}"}
        self.secrets = (*self.secrets[:2], token)
        self._expires = max(expires, self.clock() + 1.0)


class CorreiosConnector(BaseConnector):
    """Tracks Correios objects: `pull("tracking", None, {"shipments": [...]})`, one `Tracking` per code."""

    type_name: ClassVar[str] = "correios"
    options: ClassVar[dict[str, OptionSpec]] = {
        "user": OptionSpec("str", required=True, help="CWS user (usuario) of the contract with the rastro scope"),
        "access_code": OptionSpec("str", required=True, secret=True, help="CWS access code (codigoAcesso)"),
        "postage_card": OptionSpec("str", help="postage card number: the token is bound to it "
                                               "(/token/v1/autentica/cartaopostagem)"),
        "batch_size": OptionSpec("int", default=MAX_BATCH, help=f"codes per batch call, 1 to {MAX_BATCH} (the "
                                                                 "maximum is a third party's, unverified)"),
        "timezone": OptionSpec("str", default="America/Sao_Paulo", help="zone of the carrier's local times"),
    }
    capabilities: ClassVar[Capabilities] = Capabilities(pull=frozenset({"tracking"}), max_batch=MAX_BATCH)

    def __init__(self, name: str, base_url: str, options: Mapping[str, Any], http: HttpSettings, *,
                 sleep: Callable[[float], None] | None = None) -> None:
        self.name = name
        self.tz = zone(str(options.get("timezone") or "America/Sao_Paulo"))
        self.batch = max(1, min(int(options.get("batch_size") or MAX_BATCH), MAX_BATCH))
        secret = str(options["access_code"])
        basic = ApiKeyAuth("Authorization", "Basic " + base64.b64encode(f"{options['user']}:{secret}".encode()).decode())
        token_client = HttpClient(base_url, http, name=name, auth=basic, secrets=(secret,), sleep=sleep)
        self.auth = CorreiosToken(token_client, str(options["user"]), secret, options.get("postage_card"), self.tz)
        self.client = HttpClient(base_url, http, name=name, auth=self.auth, secrets=(secret,), sleep=sleep)

    @classmethod
    def from_config(cls, cfg: Any, *, sleep: Callable[[float], None] | None = None,
                    clock: Callable[[], datetime] = utcnow, state: ConnectorState | None = None) -> CorreiosConnector:
        settings = http_settings(cfg.http)
        if settings.rate_per_second is None:  # the carrier's limits are UNKNOWN: a modest pace unless the config says
            settings = replace(settings, rate_per_second=DEFAULT_RATE, rate_burst=2)
        return cls(cfg.name, cfg.base_url, cfg.options, settings, sleep=sleep)

    def check(self) -> None:
        """Credentials: a token is fetched."""
        self.auth.refresh({})

    def http_clients(self) -> Sequence[HttpClient]:
        return (self.client,)

    def close(self) -> None:
        self.client.close()
        self.auth.client.close()

    def pull(self, entity: str, cursor: str | None, filters: Mapping[str, Any] | None = None) -> Iterator[Page]:
        if entity != "tracking":
            raise ValueError(f"{self.name} tracks shipments only, it has no {entity}")
        refs: list[ShipmentRef] = list((filters or {}).get("shipments") or ())
        bad = [BadRecord(r.tracking_code, "bad_tracking_code", problem, {"tracking_code": r.tracking_code})
               for r in refs if (problem := code_problem(r.tracking_code)) is not None]
        if bad:
            yield Page(bad, None)
        good = [r for r in refs if code_problem(r.tracking_code) is None]
        for start in range(0, len(good), self.batch):
            chunk = good[start:start + self.batch]
            found = self._track([r.tracking_code for r in chunk])
            # the batch call gives the last event only: an object whose last status is news is read whole,
            # so the statuses in between are written too (one call per object that moved, none for the rest)
            last = {r.tracking_code: r.last_status for r in chunk}
            if len(chunk) > 1:
                found = [(self._track([t.key]) or [t])[0] if isinstance(t, Tracking) and t.events
                         and t.events[-1].status != last.get(t.key) else t for t in found]
            yield Page(found, None)

    def _track(self, codes: list[str]) -> list[Tracking | BadRecord]:
        if len(codes) == 1:  # API.md L39: every event of one object
            what = "GET /srorastro/v1/objetos/{code}"
            resp = self.client.get(f"/srorastro/v1/objetos/{codes[0]}", params={"resultado": "T"})
        else:  # API.md L40: the batch call, last event of each
            what = "GET /srorastro/v1/objetos (batch)"
            resp = self.client.get("/srorastro/v1/objetos", params={"codigosObjetos": ",".join(codes),
                                                                    "resultado": "U"})
        if resp.status != 200:
            raise refused(self.client, what, resp)
        found: list[Tracking | BadRecord] = []
        for item in body_of(self.client, what, resp, "objetos")["objetos"]:
            code = item.get("codObjeto") if isinstance(item, dict) else None
            if not isinstance(code, str) or code not in codes:
                continue  # what we did not ask for is not ours to take
            try:
                found.append(self._tracking(code, item))
            except MappingError as exc:
                found.append(BadRecord(code, exc.code, exc.reason, item))
        return found

    def _tracking(self, code: str, item: dict[str, Any]) -> Tracking:
        """An object's events, oldest first; an object the Correios do not know yet has none (API.md L41)."""
        events = []
        raws = list(opt(item, "eventos", list) or ())
        for i, raw in reversed(list(enumerate(raws))):  # newest first on the wire (API.md L42): oldest first here
            if not isinstance(raw, dict):
                raise MappingError("bad_type", f"eventos[{i}]: expected an object")
            codigo = need(raw, "codigo")
            tipo_text = str(need(raw, "tipo", (str, int))).strip()
            if not tipo_text.isdigit():
                raise MappingError("bad_value", f"eventos[{i}].tipo: {tipo_text[:10]!r} is not a number")
            tipo = int(tipo_text)  # API.md L62: "01" and "1" are the same tipo
            try:
                local = datetime.fromisoformat(need(raw, "dtHrCriado"))
            except ValueError:
                raise MappingError("bad_time", f"eventos[{i}].dtHrCriado is not a date-time") from None
            moment = (local if local.tzinfo else local.replace(tzinfo=self.tz)).astimezone(UTC)
            unit = raw.get("unidade") if isinstance(raw.get("unidade"), dict) else {}
            address = unit.get("endereco") if isinstance(unit.get("endereco"), dict) else {}
            place = "/".join(str(address[k]) for k in ("cidade", "uf") if address.get(k)) or None
            events.append(TrackingEvent(status_of(codigo, tipo), moment, place, opt(raw, "descricao"),
                                        f"{codigo}/{tipo:02d}"))
        return Tracking(code, tuple(sorted(events, key=lambda e: e.occurred_at)))

    def prepare(self, entity: str, record: Any) -> Outgoing:
        raise ValueError(f"{self.name} takes no {entity}: a carrier is only read")

    def push(self, entity: str, batch: Sequence[Outgoing]) -> list[PushResult]:
        raise ValueError(f"{self.name} takes no {entity}: a carrier is only read")
