"""Cegid Vendus, the Portuguese certified POS and invoicing system, as the back office: an invoice per paid order.

Contract: ../shared/contracts/vendus/API.md. Vendus is a sink: the shop's products, prices and stock
are written into it (flows turned around in the config: `source: channel`, `sink: backoffice`), and
the engine's order intake creates one invoice (`FR` or `FT`, on the configured register) per paid
order, after looking it up by its external reference: `POST documents/` is not idempotent (L90-92)
and a certified invoice can never be deleted (L80). A cancel after invoicing is one credit note
(`NC`) that references the invoice's rows (L75), looked up by its own reference before it is posted.
Auth is HTTP Basic with the API key as user and an empty password (L27). Mapping lives in
`vendus_docs`, tax rules in `vendus_tax`.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

from syncagent.connectors.base import (
    BaseConnector,
    Capabilities,
    ConnectorState,
    OptionSpec,
    Outgoing,
    PushResult,
)
from syncagent.connectors.common import http_settings, refused
from syncagent.connectors.vendus_docs import (
    InvoiceRules,
    credit_note_out,
    credit_reference,
    explain,
    external_reference,
    invoice_out,
    price_out,
    product_out,
    stock_out,
)
from syncagent.connectors.vendus_tax import normalise_nif, parse_rates, pt_tax_id
from syncagent.errors import AmbiguousError, ConfigError, MappingError, TransientError
from syncagent.http import ApiKeyAuth, HttpClient, HttpResponse, HttpSettings
from syncagent.model import Page, Product, utcnow

API_URL = "https://www.vendus.pt/ws/v1.1"  # L25
INVOICE_TYPES = "FT,FR,FS"
WRITES = ("products", "prices", "stock", "orders", "order-cancels")


class VendusConnector(BaseConnector):
    """Writes the shop's catalogue into Vendus and invoices its paid orders, each exactly once."""

    type_name: ClassVar[str] = "vendus"
    options: ClassVar[dict[str, OptionSpec]] = {
        "api_key": OptionSpec("str", required=True, secret=True,
                              help="the API key of the Vendus user the documents are issued by (L27)"),
        "register_id": OptionSpec("int", required=True, help="the register (caixa) that issues the invoices; "
                                  "one of type API is meant for integrations (L64, L128)"),
        "document_type": OptionSpec("str", default="FR", choices=("FR", "FT"),
                                    help="FR fatura-recibo (paid at once) or FT fatura"),
        "payment_method_id": OptionSpec("int", help="Vendus payment method of an FR (documents/paymentmethods/); "
                                        "required with document_type FR"),
        "default_vat_rate": OptionSpec("float", help="VAT rate in percent for products without one (23, 13, 6, 0); "
                                       "unset: such an order waits in quarantine"),
        "oss": OptionSpec("bool", default=False, help="One-Stop-Shop: a consumer in another EU state is invoiced "
                          "at that state's rate"),
        "oss_rates": OptionSpec("dict", help="country -> VAT rate in percent, over the table in the code"),
        "shipping_reference": OptionSpec("str", default="PORTES", help="Vendus product reference of the "
                                         "shipping line"),
        "unit_id": OptionSpec("int", help="Vendus unit of the products created (default: the account's first)"),
        "store_id": OptionSpec("int", help="Vendus store of the documents (default: the register's)"),
        "mode": OptionSpec("str", default="normal", choices=("normal", "tests"),
                           help="tests: documents without fiscal value (L69), for a trial run"),
    }
    capabilities: ClassVar[Capabilities] = Capabilities(push=frozenset(WRITES), max_batch=100)

    def __init__(self, name: str, base_url: str | None, options: Mapping[str, Any], http: HttpSettings, *,
                 sleep: Callable[[float], None] | None = None, clock: Callable[[], datetime] = utcnow) -> None:
        self.name = name
        self.clock = clock
        self.rules = _rules(name, options)
        key = str(options["api_key"])
        encoded = base64.b64encode(f"{key}:".encode()).decode()  # L27: the key as user, an empty password
        auth = ApiKeyAuth("Authorization", "Basic " + encoded)
        auth.secrets = (key, encoded, "Basic " + encoded)
        self.client = HttpClient((base_url or API_URL).rstrip("/"), http, name=name, auth=auth, secrets=(key,),
                                 sleep=sleep)
        self.unit_id = int(options["unit_id"]) if options.get("unit_id") is not None else None
        self.ids: dict[str, int] = {}  # product reference → Vendus id, while the agent runs (a 404 drops one)
        self.named: dict[tuple[str, str], int] = {}  # (brands|categories, title) → id

    @classmethod
    def from_config(cls, cfg: Any, *, sleep: Callable[[float], None] | None = None,
                    clock: Callable[[], datetime] = utcnow, state: ConnectorState | None = None) -> VendusConnector:
        """`state` is not needed: the key is static (L28), nothing to keep across runs."""
        return cls(getattr(cfg, "name", None) or "backoffice", cfg.base_url, cfg.options, http_settings(cfg.http),
                   sleep=sleep, clock=clock)

    def check(self) -> None:
        """The key is accepted and the configured register exists (GET registers/)."""
        registers = self._list("/registers/", {})
        if not any(r.get("id") == self.rules.register_id for r in registers):
            raise ConfigError(f"{self.name}: register_id {self.rules.register_id} is not a register of this Vendus "
                              f"account (it has {', '.join(str(r.get('id')) for r in registers) or 'none'})")

    def http_clients(self) -> Sequence[HttpClient]:
        return (self.client,)

    def pull(self, entity: str, cursor: str | None, filters: Mapping[str, Any] | None = None) -> Any:
        """Nothing is read from Vendus: stock counted at its counter never goes back to the shop."""
        raise ValueError(f"{self.name}: Vendus is a sink; it has no {entity} feed")
        yield Page([], None)  # pragma: no cover - a generator, for the contract's signature

    # -- reads ----------------------------------------------------------------------------------
    def _list(self, path: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """A search; L19: no match answers 404 "No data", which is an empty list."""
        resp = self.client.get(path, params={**params, "per_page": 100})
        if resp.status == 404:
            return []
        if resp.status != 200:
            raise refused(self.client, f"GET {path}", resp)
        body = resp.json()
        if not isinstance(body, list) or not all(isinstance(i, dict) and _is_id(i.get("id")) for i in body):
            # a record we cannot name is not "none found": creating again could duplicate it
            raise TransientError(f"{self.name}: GET {path}: the answer is not a list of records with ids",
                                 code="bad_response")
        return body

    def _product_id(self, reference: str) -> int | None:
        if reference not in self.ids:
            found = [p for p in self._list("/products/", {"reference": reference}) if p.get("reference") == reference]
            if not found:
                return None
            self.ids[reference] = int(found[0]["id"])
        return self.ids[reference]

    def lookup(self, entity: str, **keys: str) -> Any | None:
        """An invoice by the order's external reference ({"number": its id}); a product by reference."""
        if entity == "orders":
            reference = external_reference(keys["channel"], keys["external_id"])
            found = [d for d in self._list("/documents/", {"external_reference": reference, "type": INVOICE_TYPES})
                     if d.get("external_reference") == reference and d.get("type") in INVOICE_TYPES.split(",")]
            if not found:
                return None
            return {"number": str(found[0]["id"]), "status": found[0].get("status"),
                    "document": found[0].get("number")}
        if entity == "products":
            pid = self._product_id(keys["code"])
            return Product(keys["code"], keys["code"], True) if pid is not None else None
        return None

    # -- writes ---------------------------------------------------------------------------------
    def prepare(self, entity: str, record: Any) -> Outgoing:
        if entity == "products":
            return Outgoing(record.code, product_out(record, self.rules.default_vat_rate))
        if entity == "prices":
            return Outgoing(record.code, price_out(record, self.clock()))
        if entity == "stock":
            return Outgoing(record.key, stock_out(record))
        if entity == "orders":
            return Outgoing(record.order.remote_id, invoice_out(record, self.rules))
        if entity == "order-cancels":
            number = str(record.get("number") or "").strip()
            if not number.isdigit():
                raise MappingError("missing_field", f"number: {number[:20]!r} is not a Vendus document id")
            return Outgoing(number, {"invoice_id": int(number),
                                     "reason": str(record.get("reason") or "cancelled in the shop")})
        raise ValueError(f"{self.name} cannot take {entity}")

    def push(self, entity: str, batch: Sequence[Outgoing]) -> list[PushResult]:
        """One request (or a lookup and one request) per record: Vendus has no batch writes."""
        writers: dict[str, Callable[[Outgoing], PushResult]] = {
            "products": self._push_product, "prices": self._patch_product, "stock": self._patch_product,
            "orders": self._push_invoice, "order-cancels": self._push_credit_note}
        write = writers.get(entity)
        if write is None:
            raise ValueError(f"{self.name} cannot take {entity}")
        return [write(out) for out in batch]

    def _named_id(self, collection: str, title: str | None) -> int | None:
        """A brand or category by its title, created once when Vendus lacks it (L106)."""
        if not title:
            return None
        key = (collection, title)
        if key not in self.named:
            path = f"/products/{collection}/"
            found = [b for b in self._list(path, {"title": title}) if b.get("title") == title]
            if not found:
                resp = self.client.post(path, json={"title": title}, idempotent=True)  # a repeat is looked up first
                if resp.status != 201:
                    raise refused(self.client, f"POST {path}", resp)
                found = [{"id": self._new_id(resp, f"POST {path}")}]
            self.named[key] = int(found[0]["id"])
        return self.named[key]

    def _unit(self) -> int:
        if self.unit_id is None:
            units = self._list("/products/units/", {})
            if not units:
                raise ConfigError(f"{self.name}: the Vendus account has no units; set unit_id")
            self.unit_id = int(units[0]["id"])
        return self.unit_id

    def _push_product(self, out: Outgoing) -> PushResult:
        """Found by reference → PATCH; not found → POST. The lookup first keeps one product per reference
        (L108: Vendus may not refuse a second one)."""
        body = {k: v for k, v in out.payload.items() if k not in ("brand", "category")}
        body["brand_id"] = self._named_id("brands", out.payload.get("brand"))
        body["category_id"] = self._named_id("categories", out.payload.get("category"))
        pid = self._product_id(out.key)
        if pid is None:
            resp = self.client.post("/products/", json={**body, "unit_id": self._unit(), "type_id": "P"},
                                    idempotent=False)
            if resp.status == 201:
                self.ids[out.key] = self._new_id(resp, "POST /products/")
                return PushResult(out.key, "created", remote_id=str(self.ids[out.key]))
            return self._rejected(out.key, resp)
        resp = self.client.request("PATCH", f"/products/{pid}", json=body, idempotent=True)
        if resp.status == 200:
            return PushResult(out.key, "updated", remote_id=str(pid))
        if resp.status == 404 and self.ids.pop(out.key, None) is not None:  # deleted in Vendus since: made again
            return self._push_product(out)
        if resp.status == 422:  # a brand or category deleted in Vendus since: found or made again next time
            self.named.clear()
        return self._rejected(out.key, resp)

    def _patch_product(self, out: Outgoing) -> PushResult:
        """A price or a stock level: written on the product, which the products flow created first."""
        reference = str(out.payload["reference"])
        pid = self._product_id(reference)
        if pid is None:
            return PushResult(out.key, "rejected", reason_code="unknown_product",
                              reason=f"product '{reference}' is not in Vendus yet (the products flow creates it)",
                              missing=(("product", reference),))
        body = {k: v for k, v in out.payload.items() if k != "reference"}
        resp = self.client.request("PATCH", f"/products/{pid}", json=body, idempotent=True)
        if resp.status == 200:
            return PushResult(out.key, "updated", remote_id=str(pid))
        if resp.status == 404 and self.ids.pop(reference, None) is not None:  # deleted in Vendus since
            return self._patch_product(out)
        return self._rejected(out.key, resp)

    def _client_id(self, spec: Mapping[str, Any]) -> int:
        """L120-123: the client by NIF, else by e-mail, else created (a duplicate NIF is looked up again).

        A client found by e-mail is taken only if its NIF is the order's once normalised (Vendus may
        hold it as typed, `PT 501 964 843`, where the exact NIF search misses it): an invoice must
        never name another tax id than the buyer gave.
        """
        nif = normalise_nif(str(spec.get("fiscal_id") or ""))
        for field, value in (("fiscal_id", spec.get("fiscal_id")), ("email", spec.get("email"))):
            if value:
                found = [c for c in self._list("/clients/", {field: value})
                         if normalise_nif(str(c.get("fiscal_id") or "")) == nif]
                if found:
                    return int(found[0]["id"])
        resp = self.client.post("/clients/", json=dict(spec), idempotent=False)
        if resp.status == 201:
            return self._new_id(resp, "POST /clients/")
        if resp.status == 422:  # created meanwhile (a lost answer): it is there now
            found = [c for c in self._list("/clients/", {"fiscal_id": nif})
                     if normalise_nif(str(c.get("fiscal_id") or "")) == nif]
            if found:
                return int(found[0]["id"])
        raise _Refused(resp)

    def _push_invoice(self, out: Outgoing) -> PushResult:
        """POST documents/ once; a lost answer raises AmbiguousError and the engine looks it up by reference."""
        body = dict(out.payload)
        if body.get("client") is not None:
            try:
                body["client"] = {"id": self._client_id(body["client"])}
            except _Refused as exc:
                return self._rejected(out.key, exc.resp)
        else:
            body.pop("client", None)
        resp = self.client.post("/documents/", json=body, idempotent=False)
        if resp.status == 201:
            return PushResult(out.key, "created", remote_id=self._created_id(resp))
        if resp.status == 422 and "tx_id" in _message(resp):  # L97: the same transaction was created already
            found = self.lookup("orders", **_order_keys(str(body.get("external_reference") or "")))
            if found is not None:
                return PushResult(out.key, "exists", remote_id=found["number"])
        return self._rejected(out.key, resp)

    def _push_credit_note(self, out: Outgoing) -> PushResult:
        """One NC per invoice: looked up by its reference first, posted only when there is none."""
        invoice_id = int(out.payload["invoice_id"])
        resp = self.client.get(f"/documents/{invoice_id}")
        if resp.status != 200:
            return self._rejected(out.key, resp)
        invoice = resp.json()
        if not isinstance(invoice, dict) or not isinstance(invoice.get("items"), list):
            raise TransientError(f"{self.name}: GET documents/{invoice_id}: not an object", code="bad_response")
        reference = credit_reference(str(invoice.get("external_reference") or invoice_id))
        existing = self._credit_note(reference)
        if existing is not None:
            return PushResult(out.key, "exists", remote_id=existing)
        try:
            body = credit_note_out(invoice, self.rules, str(out.payload.get("reason") or ""))
        except MappingError as exc:
            return PushResult(out.key, "rejected", reason_code=exc.code, reason=exc.reason)
        try:
            resp = self.client.post("/documents/", json=body, idempotent=False)
        except AmbiguousError:
            existing = self._credit_note(reference)
            if existing is None:
                raise
            return PushResult(out.key, "created", remote_id=existing)
        if resp.status == 201:
            return PushResult(out.key, "created", remote_id=self._created_id(resp))
        return self._rejected(out.key, resp)

    def _credit_note(self, reference: str) -> str | None:
        found = [d for d in self._list("/documents/", {"external_reference": reference, "type": "NC"})
                 if d.get("external_reference") == reference and d.get("type") == "NC"]
        return str(found[0]["id"]) if found else None

    def _created_id(self, resp: HttpResponse) -> str:
        """L73: the 201 names the document's id; without it we cannot tell which document it is."""
        return str(self._new_id(resp, "POST /documents/"))

    def _new_id(self, resp: HttpResponse, what: str) -> int:
        """The id a 201 names; without it the record was created but cannot be named (looked up later)."""
        try:
            body = resp.json()
        except TransientError:
            body = None
        value = body.get("id") if isinstance(body, dict) else None
        if not _is_id(value):
            raise AmbiguousError(f"{self.name}: {what} answered 201 without its id; the record was created",
                                 status=resp.status, code="bad_response")
        return int(value)

    def _rejected(self, key: str, resp: HttpResponse) -> PushResult:
        if resp.status in (401, 403) or resp.status >= 500 or resp.status == 429:
            raise refused(self.client, "write", resp)
        code, why, missing = explain(resp.status, _code(resp), _message(resp), self.rules.register_id)
        return PushResult(key, "rejected", reason_code=code, reason=self.client.redact(why), missing=missing)


class _Refused(Exception):
    """A client creation Vendus refused: the invoice is refused with Vendus's reason."""

    def __init__(self, resp: HttpResponse) -> None:
        super().__init__(resp.status)
        self.resp = resp


def _errors(resp: HttpResponse) -> list[dict[str, Any]]:
    """L48-50: `{"errors": [{"code", "message"}]}`; also `error`/`message` as a third-party client reads (L49)."""
    try:
        body = resp.json()
    except TransientError:
        return []
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, list):
            return [e for e in errors if isinstance(e, dict)]
        for name in ("error", "message", "detail"):
            if isinstance(body.get(name), str):
                return [{"message": body[name]}]
    return []


def _rules(name: str, options: Mapping[str, Any]) -> InvoiceRules:
    """The invoice options, checked once: a mistake stops the agent at start with its reason."""
    kind = str(options.get("document_type") or "FR")
    payment = options.get("payment_method_id")
    if kind == "FR" and payment is None:
        raise ConfigError(f"{name}: payment_method_id is required with document_type FR (an invoice-receipt "
                          "records its payment); GET documents/paymentmethods/ lists them")
    default = options.get("default_vat_rate")
    default_rate = Decimal(str(default)) if default is not None else None
    if default_rate is not None and pt_tax_id(default_rate) is None:
        raise ConfigError(f"{name}: default_vat_rate {default}: expected a Portuguese rate (23, 13, 6 or 0)")
    try:
        oss_rates = parse_rates(options.get("oss_rates"))
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None
    return InvoiceRules(
        document_type=kind, register_id=int(options["register_id"]),
        payment_method_id=int(payment) if payment is not None else None, default_vat_rate=default_rate,
        oss=bool(options.get("oss")), oss_rates=oss_rates,
        shipping_reference=str(options.get("shipping_reference") or "PORTES"),
        store_id=int(options["store_id"]) if options.get("store_id") is not None else None,
        mode=str(options.get("mode") or "normal"))


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63


def _code(resp: HttpResponse) -> str:
    return ",".join(str(e.get("code")) for e in _errors(resp) if e.get("code") is not None)


def _message(resp: HttpResponse) -> str:
    return "; ".join(str(e.get("message")) for e in _errors(resp) if e.get("message")) or f"HTTP {resp.status}"


def _order_keys(reference: str) -> dict[str, str]:
    channel, _, order_id = reference.partition(":")
    return {"channel": channel, "external_id": order_id}
