"""The documents of the Vendus simulator: invoices on an open register, credit notes against invoice rows.

Every rule cites the line of ../shared/contracts/vendus/API.md it follows ("L<n>"). A mixin of
`VendusSim` (syncagent/simulators/vendus.py), which gives it the store, the counters, the clients
and the switches; kept apart so each module stays readable.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from syncagent.simulators.common import HttpError, Request, Response
from syncagent.simulators.store import DocStore

API = "/ws/v1.1"  # L25 base URL `https://www.vendus.pt/ws/v1.1/`
DOC_TYPES = ("FT", "FS", "FR", "NC", "RG", "PF", "OT", "EC", "GA", "GT", "GR", "GD", "DC")  # L61
INVOICES = ("FT", "FS", "FR")  # what a credit note may reference (L75)
TAX_IDS = {"NOR": Decimal("23"), "INT": Decimal("13"), "RED": Decimal("6"), "ISE": Decimal("0"),
           "OUT": Decimal("0")}  # L104 tax_id; the mainland rates
CENT = Decimal("0.01")


class _Refused(HttpError):
    """L48-50: the body is `{"errors": [{"code": ..., "message": ...}]}`."""

    def response(self) -> Response:
        return Response(self.status, {"errors": [{"code": self.code, "message": self.message}]}, dict(self.headers))


def _err(status: int, code: str, message: str) -> HttpError:
    return _Refused(status, code, message)


def _money(value: Any, label: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _err(422, "V010", f"{label}: expected a number")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise _err(422, "V010", f"{label}: {str(value)[:30]!r} is not a number") from None
    if not amount.is_finite() or abs(amount) > Decimal("1e9"):
        raise _err(422, "V010", f"{label}: {str(value)[:30]!r} is not an amount")
    return amount


def _key(ident: int) -> str:
    return f"{ident:010d}"


class Documents:
    """`POST documents/` and what goes with it (L53-97).

    The simulator gives it the attributes below and `counter` (SimApp), `_new`, `_body`, `_check_nif`
    and `_client` (the clients of L118-123).
    """

    store: DocStore
    series: str
    reject_duplicate_tx: bool
    counter: Any
    _new: Any
    _body: Any
    _check_nif: Any
    _client: Any

    def create_document(self, req: Request) -> Response:
        body = self._body(req)
        kind = body.get("type", "FT")  # L61 default FT
        if kind not in DOC_TYPES:
            raise _err(422, "D001", f"type {str(kind)[:10]!r} is not a document type")
        register = body.get("register_id")
        if register is None:  # L64, L129: a document is always issued on a register
            raise _err(422, "D002", "register_id is required: a document is issued on a register")
        found = self.store.get("registers", _key(register)) if isinstance(register, int) else None
        if found is None:
            raise _err(422, "D003", f"register {register!r} does not exist")
        if found["status"] != "open":
            raise _err(422, "D004", f"register {register} ({found['title']}) is closed: open it to issue documents")
        tx_id = body.get("tx_id")
        if tx_id is not None and self.reject_duplicate_tx and self.store.find("documents", "tx_id", tx_id):
            raise _err(422, "D005", f"tx_id {str(tx_id)[:40]!r} was used already")  # L97 (behind a switch)
        client = self._document_client(body.get("client"))
        if kind == "NC":
            items = self._credit_rows(body)
        elif kind == "RG":
            items = []
        else:
            items = self._sale_rows(body.get("items"))
        gross = sum((i["amount_gross"] for i in items), Decimal("0"))
        net = sum((i["amount_net"] for i in items), Decimal("0"))
        if kind in ("FR", "RG"):  # L66: payments for FR/RG
            payments = body.get("payments")
            if not isinstance(payments, list) or not payments:
                raise _err(422, "D006", f"a {kind} needs its payments")
            paid = Decimal("0")
            for p in payments:
                if not isinstance(p, dict) or self.store.get("paymentmethods", _key(p.get("id") or 0)) is None:
                    raise _err(422, "D007", "each payment needs the id of an existing payment method")
                paid += _money(p.get("amount"), "payments.amount")
            if kind == "FR" and paid.quantize(CENT) != gross.quantize(CENT):
                raise _err(422, "D008", f"the payments ({paid}) are not the document's total ({gross.quantize(CENT)})")
        number = self.counter(f"number-{kind}", 0)
        now = datetime.now(UTC)
        doc = {"type": kind, "number": f"{kind} {self.series}{now.year}/{number}", "date": now.date().isoformat(),
               "system_time": now.strftime("%Y-%m-%d %H:%M:%S"), "register_id": register, "status": "N",
               "store_id": body.get("store_id"), "external_reference": body.get("external_reference"),
               "tx_id": tx_id, "mode": body.get("mode", "normal"), "notes": body.get("notes"),
               "client": client, "items": [{k: (str(v) if isinstance(v, Decimal) else v) for k, v in i.items()}
                                           for i in items],
               "payments": body.get("payments") or [],
               "amount_gross": str(gross.quantize(CENT)), "amount_net": str(net.quantize(CENT)),
               "hash": f"h{number:04d}"}
        doc = self._new("documents", doc)
        resp = Response(201, {k: doc[k] for k in ("id", "type", "number", "date", "system_time", "amount_gross",
                                                  "amount_net", "hash")})  # L73
        resp.headers["Location"] = f"{API}/documents/{doc['id']}"  # L37 201 with Location
        return resp

    def _document_client(self, given: Any) -> dict[str, Any] | None:
        """L63: a client by `id`, or its fields (found by NIF, else added); none: the final consumer."""
        if given is None:
            return None
        if not isinstance(given, dict):
            raise _err(422, "C010", "client must be an object")
        if given.get("id") is not None:
            doc = self.store.get("clients", _key(given["id"])) if isinstance(given["id"], int) else None
            if doc is None:
                raise _err(422, "C011", f"client {given['id']!r} does not exist")
            return {"id": doc["id"], "fiscal_id": doc.get("fiscal_id"), "name": doc.get("name")}
        if given.get("fiscal_id") is not None:
            nif = self._check_nif(given["fiscal_id"], given.get("country"))
            existing = self.store.find("clients", "fiscal_id", nif)
            doc = existing[0][1] if existing else self._client(given)
        else:
            doc = self._client(given)
        return {"id": doc["id"], "fiscal_id": doc.get("fiscal_id"), "name": doc.get("name")}

    def _sale_rows(self, items: Any) -> list[dict[str, Any]]:
        """L62: `qty` + `id` or `reference`; an unknown product with `title` + `gross_price` is created."""
        if not isinstance(items, list) or not items:
            raise _err(422, "D010", "items are required")
        rows = []
        for n, item in enumerate(items, 1):
            if not isinstance(item, dict):
                raise _err(422, "D011", f"items[{n}] must be an object")
            qty = _money(item.get("qty"), f"items[{n}].qty")
            if qty <= 0:
                raise _err(422, "D012", f"items[{n}].qty must be positive")
            product = None
            if item.get("id") is not None:
                product = self.store.get("products", _key(item["id"])) if isinstance(item["id"], int) else None
            elif item.get("reference"):
                found = self.store.find("products", "reference", item["reference"])
                product = found[0][1] if found else None
            if product is None:
                if not item.get("title") or item.get("gross_price") is None:
                    raise _err(422, "D013", f"items[{n}]: unknown product {str(item.get('reference'))[:40]!r}; "
                                            "send title and gross_price to create it")
                product = self._new("products", {"reference": item.get("reference"), "title": item["title"],
                                                 "gross_price": str(_money(item["gross_price"], "gross_price")),
                                                 "tax_id": item.get("tax_id") or "NOR", "unit_id": 1, "status": "on",
                                                 "stock": 0, "type_id": "P"})
            price = _money(item.get("gross_price", product.get("gross_price")), f"items[{n}].gross_price")
            rate = self._rate(item, product, n)
            discount = _money(item.get("discount_amount", 0), f"items[{n}].discount_amount")
            gross = (price * qty - discount).quantize(CENT)
            if gross < 0:
                raise _err(422, "D016", f"items[{n}]: the discount is more than the line")
            rows.append({"row": n, "product_id": product["id"], "reference": product.get("reference"),
                         "title": item.get("title") or product["title"], "qty": str(qty), "gross_price": str(price),
                         "discount_amount": str(discount), "tax_id": item.get("tax_id"), "tax_rate": str(rate),
                         "amount_gross": gross, "amount_net": (gross / (1 + rate / 100)).quantize(CENT)})
        return rows

    @staticmethod
    def _rate(item: dict[str, Any], product: dict[str, Any], n: int) -> Decimal:
        """The line's rate: `tax_rate` (OSS: another state's rate), else its `tax_id`, else the product's."""
        if item.get("tax_rate") is not None:
            rate = _money(item["tax_rate"], f"items[{n}].tax_rate")
            if not Decimal("0") <= rate <= Decimal("30"):
                raise _err(422, "D014", f"items[{n}].tax_rate {rate} is not a VAT rate")
            return rate
        tax_id = item.get("tax_id") or product.get("tax_id") or "NOR"
        if tax_id not in TAX_IDS:
            raise _err(422, "D015", f"items[{n}].tax_id {str(tax_id)[:10]!r} is not one of {', '.join(TAX_IDS)}")
        return TAX_IDS[tax_id]

    def _credit_rows(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        """L75-77, L139: each row names an invoice row by `reference_document`; prices come from the invoice."""
        if not isinstance(body.get("notes"), str) or not body["notes"].strip():
            raise _err(422, "D020", "a credit note needs its reason in notes")  # L70
        items = body.get("items")
        if not isinstance(items, list) or not items:
            raise _err(422, "D010", "items are required")
        rows = []
        for n, item in enumerate(items, 1):
            ref = item.get("reference_document") if isinstance(item, dict) else None
            if not isinstance(ref, dict):
                raise _err(422, "D021", f"items[{n}].reference_document is required in a credit note")
            found = self.store.find("documents", "number", ref.get("document_number"))
            invoice = found[0][1] if found else None
            if invoice is None or invoice["type"] not in INVOICES:
                raise _err(422, "D022", f"items[{n}]: no invoice {str(ref.get('document_number'))[:40]!r}")
            row = next((r for r in invoice["items"] if r["row"] == ref.get("document_row")), None)
            if row is None:
                raise _err(422, "D023", f"items[{n}]: invoice {invoice['number']} has no row {ref.get('document_row')!r}")
            qty = _money(item.get("qty"), f"items[{n}].qty")
            credited = sum((Decimal(r["qty"]) for _, nc in self.store.find("documents", "type", "NC")
                            for r in nc["items"] if r["reference_document"] == {"document_number": invoice["number"],
                                                                               "document_row": row["row"]}),
                           Decimal("0"))
            if qty <= 0 or credited + qty > Decimal(row["qty"]):
                raise _err(422, "D024", f"items[{n}]: {qty} of row {row['row']} of {invoice['number']} cannot be "
                                        f"credited ({credited} of {row['qty']} credited already)")
            share = qty / Decimal(row["qty"])
            gross = (Decimal(str(row["amount_gross"])) * share).quantize(CENT)
            rate = Decimal(row["tax_rate"])
            rows.append({"row": n, "product_id": row["product_id"], "reference": row["reference"],
                         "title": row["title"], "qty": str(qty), "gross_price": row["gross_price"],
                         "tax_id": row["tax_id"], "tax_rate": row["tax_rate"],
                         "reference_document": {"document_number": invoice["number"], "document_row": row["row"]},
                         "amount_gross": gross, "amount_net": (gross / (1 + rate / 100)).quantize(CENT)})
        return rows

    def patch_document(self, req: Request) -> Response:
        """L79: only a receipt may be cancelled (`status: A`); an invoice is reversed by a credit note (L80)."""
        doc = self.store.get("documents", _key(int(req.params["did"]))) if req.params["did"].isdigit() else None
        if doc is None:
            raise _err(404, "V404", "no such document")
        body = self._body(req)
        if doc["type"] != "RG" or set(body) != {"status"} or body["status"] != "A":
            raise _err(422, "D030", "an issued document cannot be changed; reverse an invoice with a credit note")
        doc["status"] = "A"
        self.store.put("documents", _key(doc["id"]), doc)
        return Response(200, doc)

    def delete_document(self, req: Request) -> Response:
        raise _err(403, "D031", "documents cannot be deleted (certified invoicing); issue a credit note")  # L80
