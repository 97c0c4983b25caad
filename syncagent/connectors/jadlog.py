"""Jadlog (API Embarcador): a carrier connector, the tracking source of Jadlog shipments.

Reference: ../shared/contracts/carriers/API.md, "Jadlog". `POST /embarcador/api/tracking/consultar`
with a Bearer token and `{"consulta": [{"shipmentId": …}, …]}` (or `cte`), several entries a call;
each answer entry carries `tracking.eventos[{data "yyyy-mm-dd hh:mm:ss", status, unidade}]` or an
`erro`. The reference lists the statuses EMISSAO, ENTRADA, TRANSFERENCIA, EM ROTA and ENTREGUE; the
failed and returned ones are UNKNOWN, so they are options (empty by default): a status nobody
mapped is written as `exception`, never as delivered or returned. Rate limits and the batch size
are UNKNOWN too: `batch_size` (default 20) and the config's `rate_limit`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, ClassVar

from syncagent.connectors.base import (
    BaseConnector,
    Capabilities,
    ConnectorState,
    OptionSpec,
    Outgoing,
    PushResult,
)
from syncagent.connectors.common import body_of, http_settings, need, opt, refused
from syncagent.connectors.correios import zone
from syncagent.errors import MappingError
from syncagent.http import ApiKeyAuth, HttpClient, HttpSettings
from syncagent.model import BadRecord, Page, utcnow
from syncagent.model_sac import ShipmentRef, Tracking, TrackingEvent

PATH = "/embarcador/api/tracking/consultar"  # API.md L66
KNOWN = {"EMISSAO": "posted", "ENTRADA": "posted", "TRANSFERENCIA": "in_transit", "EM ROTA": "out_for_delivery",
         "ENTREGUE": "delivered"}  # API.md L69
DEFAULT_BATCH = 20  # UNKNOWN in the reference ("several entries per call")
DEFAULT_RATE = 2.0  # requests a second when the config sets no rate_limit (the reference gives none)


class JadlogConnector(BaseConnector):
    """Tracks Jadlog shipments by shipmentId (or CT-e): one `Tracking` per code."""

    type_name: ClassVar[str] = "jadlog"
    options: ClassVar[dict[str, OptionSpec]] = {
        "token": OptionSpec("str", required=True, secret=True, help="API Embarcador Bearer token"),
        "code_kind": OptionSpec("str", default="shipmentId", choices=("shipmentId", "cte"),
                                help="what the back office's tracking code is: the shipmentId or the CT-e number"),
        "batch_size": OptionSpec("int", default=DEFAULT_BATCH, help="shipments per call (UNKNOWN limit)"),
        "failed_statuses": OptionSpec("list[str]", default=(), help="statuses that mean a failed delivery "
                                                                    "attempt (UNKNOWN in the reference)"),
        "returned_statuses": OptionSpec("list[str]", default=(), help="statuses that mean returned to the "
                                                                      "sender (UNKNOWN in the reference)"),
        "timezone": OptionSpec("str", default="America/Sao_Paulo", help="zone of the carrier's local times"),
    }
    capabilities: ClassVar[Capabilities] = Capabilities(pull=frozenset({"tracking"}), max_batch=100)

    def __init__(self, name: str, base_url: str, options: Mapping[str, Any], http: HttpSettings, *,
                 sleep: Callable[[float], None] | None = None) -> None:
        self.name = name
        token = str(options["token"])
        self.client = HttpClient(base_url, http, name=name, auth=ApiKeyAuth("Authorization", f"Bearer {token}"),
                                 secrets=(token,), sleep=sleep)
        self.kind = str(options.get("code_kind") or "shipmentId")
        self.batch = max(1, min(int(options.get("batch_size") or DEFAULT_BATCH), 100))
        self.tz = zone(str(options.get("timezone") or "America/Sao_Paulo"))
        self.statuses = dict(KNOWN)
        self.statuses.update({s.strip().upper(): "delivery_failed" for s in options.get("failed_statuses") or ()})
        self.statuses.update({s.strip().upper(): "returned" for s in options.get("returned_statuses") or ()})

    @classmethod
    def from_config(cls, cfg: Any, *, sleep: Callable[[float], None] | None = None,
                    clock: Callable[[], datetime] = utcnow, state: ConnectorState | None = None) -> JadlogConnector:
        settings = http_settings(cfg.http)
        if settings.rate_per_second is None:  # the carrier's limits are UNKNOWN: a modest pace unless the config says
            settings = replace(settings, rate_per_second=DEFAULT_RATE, rate_burst=2)
        return cls(cfg.name, cfg.base_url, cfg.options, settings, sleep=sleep)

    def check(self) -> None:
        """Credentials and reachability: one query of a code nobody has (an `erro` entry is fine)."""
        resp = self.client.post(PATH, json={"consulta": [{self.kind: "0"}]}, idempotent=True)
        if resp.status != 200:
            raise refused(self.client, f"POST {PATH}", resp)

    def http_clients(self) -> Sequence[HttpClient]:
        return (self.client,)

    def pull(self, entity: str, cursor: str | None, filters: Mapping[str, Any] | None = None) -> Iterator[Page]:
        if entity != "tracking":
            raise ValueError(f"{self.name} tracks shipments only, it has no {entity}")
        refs: list[ShipmentRef] = list((filters or {}).get("shipments") or ())
        codes = [r.tracking_code for r in refs]
        for start in range(0, len(codes), self.batch):
            yield Page(self._track(codes[start:start + self.batch]), None)

    def _track(self, codes: list[str]) -> list[Tracking | BadRecord]:
        what = f"POST {PATH}"
        # a query that reads only: safe to repeat (API.md L67)
        resp = self.client.post(PATH, json={"consulta": [{self.kind: c} for c in codes]}, idempotent=True)
        if resp.status != 200:
            raise refused(self.client, what, resp)
        found: list[Tracking | BadRecord] = []
        for item in body_of(self.client, what, resp, "consulta")["consulta"]:
            code = str(item.get(self.kind)) if isinstance(item, dict) and item.get(self.kind) is not None else None
            if code is None or code not in codes:
                continue
            if isinstance(item.get("erro"), dict):  # unknown to Jadlog (yet): no news, not a failure
                found.append(Tracking(code))
                continue
            try:
                found.append(self._tracking(code, item))
            except MappingError as exc:
                found.append(BadRecord(code, exc.code, exc.reason, item))
        return found

    def _tracking(self, code: str, item: dict[str, Any]) -> Tracking:
        tracking = opt(item, "tracking", dict) or {}
        events = []
        for i, raw in enumerate(opt(tracking, "eventos", list) or ()):
            if not isinstance(raw, dict):
                raise MappingError("bad_type", f"tracking.eventos[{i}]: expected an object")
            words = need(raw, "status").strip()
            try:
                local = datetime.strptime(need(raw, "data"), "%Y-%m-%d %H:%M:%S")  # API.md L68
            except ValueError:
                raise MappingError("bad_time", f"tracking.eventos[{i}].data is not yyyy-mm-dd hh:mm:ss") from None
            status = self.statuses.get(words.upper(), "exception")
            unit = raw.get("unidade")
            events.append(TrackingEvent(status, local.replace(tzinfo=self.tz).astimezone(UTC),
                                        str(unit) if isinstance(unit, str) and unit else None, words, words))
        return Tracking(code, tuple(sorted(events, key=lambda e: e.occurred_at)))

    def prepare(self, entity: str, record: Any) -> Outgoing:
        raise ValueError(f"{self.name} takes no {entity}: a carrier is only read")

    def push(self, entity: str, batch: Sequence[Outgoing]) -> list[PushResult]:
        raise ValueError(f"{self.name} takes no {entity}: a carrier is only read")
