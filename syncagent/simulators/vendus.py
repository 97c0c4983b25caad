"""Simulator of Cegid Vendus (Portuguese POS and certified invoicing): the part of its v1.1 API syncagent uses.

Every rule cites the line of ../shared/contracts/vendus/API.md it follows ("L<n>"). As strict as the
reference: HTTP Basic with the API key as user and an empty password (L27), 401 otherwise; JSON
bodies only (415, L30); lists as bare arrays with `X-Paginator-*` headers (L32) and a 404 "No data"
for a search that finds nothing (L19); errors as `{"errors": [{"code", "message"}]}` (L50, the
working assumption); optional `Rate-Limit-*` headers and 429 (L42-44). Documents: always on an
existing, open register (422 otherwise, L64 and L129), never deletable (L80), numbered
`<TYPE> <series>/<n>` (L138); a credit note must reference rows of an existing invoice, up to the
quantity not credited yet (L75-77, L139); a client's NIF is validated (check digit) and the final
consumer's NIF is refused (L63); a duplicate `tx_id` is rejected with 422 only when the switch
`reject_duplicate_tx` is on (L90-97: the real behaviour is UNKNOWN, both are tested).

Admin routes (`/_admin/...`) read what Vendus holds (documents, clients, products), open or close a
register, change a product's stock as the shop's staff would, and flip the switches above.
"""

from __future__ import annotations

import base64
import hmac
import math
import time
from typing import Any

from syncagent.connectors.vendus_tax import FINAL_CONSUMER_NIF, normalise_nif, valid_nif
from syncagent.simulators import seeddata
from syncagent.simulators.common import HttpError, Request, Response, SimApp
from syncagent.simulators.store import DocStore
from syncagent.simulators.vendus_documents import API, CENT, TAX_IDS, Documents, _err, _key, _money

DEMO_KEY = "demo-vendus-api-key-0000000000000000"  # noqa: S105 - a simulator's demo credential
DEFAULT_PER_PAGE, MAX_PER_PAGE = 20, 1000  # L32
# L127-129 registers: one of each kind an account has; the API one is open, one shop register is closed
REGISTERS = [{"id": 1, "title": "Loja", "type": "pos", "status": "open", "document_type_id": "FR"},
             {"id": 2, "title": "Loja online (API)", "type": "api", "status": "open", "document_type_id": "FR"},
             {"id": 3, "title": "Caixa 2", "type": "pos", "status": "close", "document_type_id": "FS"}]
UNITS = [{"id": 1, "title": "Unidade", "short": "UN"}, {"id": 2, "title": "Quilograma", "short": "KG"}]
PAYMENT_METHODS = [{"id": 1, "title": "Numerário", "type": "NU"}, {"id": 2, "title": "MB WAY", "type": "MB"},
                   {"id": 3, "title": "Multibanco", "type": "MB"}]


class VendusSim(Documents, SimApp):
    system = "vendus"

    def __init__(self, db_path: str, *, products: int, seed: int, log_bodies: bool, options: dict[str, str]) -> None:
        super().__init__(db_path, log_bodies=log_bodies)
        self.store = DocStore(self.db, self.lock)
        self.key = options.get("api_key", DEMO_KEY)
        self.reject_duplicate_tx = options.get("reject_duplicate_tx", "0") in ("1", "true", "yes")
        self.rate_limit = int(options.get("rate_limit", "0"))  # L42-44: 0 = no limits apply
        self.series = options.get("series", "SIM")
        self.window: tuple[int, int] = (0, 0)  # (minute, requests in it)
        # "frozen": the rate-limit window moves only by /_admin/clock, so tests do not hang on machine speed
        self.frozen = options.get("clock") == "frozen"
        self.offset = 0.0
        if self.meta("seeded") is None:
            self._seed(products, seed)
        self._routes()

    def _seed(self, products: int, seed: int) -> None:
        for register in REGISTERS:
            self.store.put("registers", _key(register["id"]), dict(register))
        for unit in UNITS:
            self.store.put("units", _key(unit["id"]), dict(unit))
        for method in PAYMENT_METHODS:
            self.store.put("paymentmethods", _key(method["id"]), dict(method))
        for index in range(1, products + 1):  # products typed in Vendus by hand, unrelated to the shop's
            self._new("products", {"reference": f"VD{index:04d}", "title": f"Artigo de balcão {index}",
                                   "barcode": seeddata.ean13(800_000 + index), "gross_price": "9.90",
                                   "tax_id": "NOR", "unit_id": 1, "status": "on", "stock": 5, "type_id": "P"})
        self.set_meta("seeded", "1")

    # -- transport ----------------------------------------------------------------------------------
    def _routes(self) -> None:
        r = self.route
        for path, lister in (("registers", None), ("products/units", None), ("documents/paymentmethods", None),
                             ("products/brands", ("title",)), ("products/categories", ("title",)),
                             ("products", ("reference", "barcode", "status")),
                             ("clients", ("fiscal_id", "email", "external_reference", "status")),
                             ("documents", ("external_reference", "register_id", "status", "mode"))):
            collection = path.rsplit("/", 1)[-1]
            r("GET", f"{API}/{path}/", self._api(lambda req, c=collection, f=lister: self.list(req, c, f or ())))
        r("POST", f"{API}/products/brands/", self._api(lambda req: self.create_named(req, "brands")))
        r("POST", f"{API}/products/categories/", self._api(lambda req: self.create_named(req, "categories")))
        r("POST", f"{API}/products/", self._api(self.create_product))  # L104
        r("GET", f"{API}/products/{{pid}}", self._api(lambda req: self.one(req, "products", req.params["pid"])))
        r("PATCH", f"{API}/products/{{pid}}", self._api(self.patch_product))  # L105
        r("POST", f"{API}/clients/", self._api(self.create_client))  # L121
        r("GET", f"{API}/clients/{{cid}}", self._api(lambda req: self.one(req, "clients", req.params["cid"])))
        r("POST", f"{API}/documents/", self._api(self.create_document))  # L55
        r("GET", f"{API}/documents/{{did}}", self._api(lambda req: self.one(req, "documents", req.params["did"])))
        r("PATCH", f"{API}/documents/{{did}}", self._api(self.patch_document))  # L79
        r("DELETE", f"{API}/documents/{{did}}", self._api(self.delete_document))  # L80
        for path in ("/_admin/documents", "/_admin/clients", "/_admin/products", "/_admin/registers",
                     "/_admin/brands", "/_admin/categories"):
            r("GET", path, self._admin_list)
        r("PATCH", "/_admin/registers/{rid}", self.admin_register)
        r("PATCH", "/_admin/products/{pid}", self.admin_product)
        r("POST", "/_admin/config", self.admin_config)
        r("POST", "/_admin/clock", self.admin_clock)

    def _api(self, handler: Any) -> Any:
        def run(req: Request) -> Response:
            self._authenticate(req)
            headers = self._limits()
            if req.method in ("POST", "PATCH", "PUT") and "application/json" not in (req.header("content-type") or ""):
                raise _err(415, "V415", "bodies must be JSON with Content-Type: application/json")  # L30
            resp: Response = handler(req)
            resp.headers.update(headers)
            return resp
        return run

    def _authenticate(self, req: Request) -> None:
        """L27: HTTP Basic, the API key as user and an empty password; L19 also accepts `api_key` in the query."""
        header = req.header("authorization") or ""
        given = req.arg("api_key")
        if header.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                user, password = "", "x"
            given = user if password == "" else None
        if not given or not hmac.compare_digest(given.encode(), self.key.encode()):
            err = _err(401, "A001", "invalid API key")  # L37 401 bad key
            err.headers["WWW-Authenticate"] = 'Basic realm="Vendus API"'
            raise err

    def _limits(self) -> dict[str, str]:
        """L42-44: when limits apply every answer carries `Rate-Limit-*`; over the limit, 429."""
        if not self.rate_limit:
            return {}
        now = (seeddata.EPOCH.timestamp() if self.frozen else time.time()) + self.offset
        minute = int(now // 60)
        count = self.window[1] + 1 if self.window[0] == minute else 1
        self.window = (minute, count)
        reset = str(max(1, 60 - int(now % 60)))
        headers = {"Rate-Limit-Limit": str(self.rate_limit), "Rate-Limit-Used": str(min(count, self.rate_limit)),
                   "Rate-Limit-Remaining": str(max(0, self.rate_limit - count)), "Rate-Limit-Reset": reset}
        if count > self.rate_limit:
            err = _err(429, "A429", "rate limit exceeded")
            err.headers.update(headers)  # L43: the reset in Rate-Limit-Reset; no Retry-After is documented
            raise err
        return headers

    # -- generic reads ------------------------------------------------------------------------------
    def list(self, req: Request, collection: str, filters: tuple[str, ...]) -> Response:
        """L32 `page`/`per_page` (0-1000, default 20) with `X-Paginator-*`; L19 no match → 404 "No data"."""
        try:
            per_page = int(req.arg("per_page") or DEFAULT_PER_PAGE)
            page = int(req.arg("page") or 1)
        except ValueError:
            raise _err(400, "V400", "page and per_page must be integers") from None
        if not 0 <= per_page <= MAX_PER_PAGE or page < 1:
            raise _err(400, "V400", f"per_page must be 0..{MAX_PER_PAGE} and page at least 1")
        wanted = {f: req.arg(f) for f in filters if req.arg(f) not in (None, "")}
        types = [t for t in (req.arg("type") or "").split(",") if t] if collection == "documents" else []

        def keep(doc: dict[str, Any]) -> bool:
            if types and doc.get("type") not in types:
                return False
            return all(str(doc.get(f) if f != "fiscal_id" else normalise_nif(str(doc.get(f) or ""))) ==
                       (v if f != "fiscal_id" else normalise_nif(v or "")) for f, v in wanted.items())
        size = per_page or DEFAULT_PER_PAGE
        docs, total = self.store.window(collection, (page - 1) * size, size, keep, by_key=True)
        if not docs:
            raise _err(404, "V404", "No data")  # L19
        headers = {"X-Paginator-Items": str(total), "X-Paginator-Pages": str(max(1, math.ceil(total / size)))}
        return Response(200, [self._view(collection, d) for _, d in docs], headers)

    def one(self, req: Request, collection: str, ident: str) -> Response:
        doc = self.store.get(collection, _key(int(ident))) if ident.isdigit() else None
        if doc is None:
            raise _err(404, "V404", f"no {collection[:-1]} {ident[:20]}")
        return Response(200, self._view(collection, doc))

    @staticmethod
    def _view(collection: str, doc: dict[str, Any]) -> dict[str, Any]:
        if collection == "documents":  # L33: amounts appear as strings in answers
            return {**doc, "amount_gross": str(doc["amount_gross"]), "amount_net": str(doc["amount_net"])}
        return doc

    def _new(self, collection: str, doc: dict[str, Any]) -> dict[str, Any]:
        ident = self.counter(f"next-{collection}", 0)
        doc = {"id": ident, **doc}
        self.store.put(collection, _key(ident), doc)
        return doc

    def _body(self, req: Request) -> dict[str, Any]:
        body = req.json()
        if not isinstance(body, dict):
            raise _err(400, "V400", "the body must be a JSON object")
        return body

    # -- products (L99-108) -------------------------------------------------------------------------
    def create_named(self, req: Request, collection: str) -> Response:
        body = self._body(req)
        title = body.get("title")
        if not isinstance(title, str) or not title.strip():
            raise _err(422, "P010", "title is required")
        return Response(201, self._new(collection, {"title": title.strip(), "status": "on"}))

    def _product_fields(self, body: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
        for name in ("reference", "barcode", "title", "description", "supplier_code"):
            if name in body:
                if body[name] is not None and not isinstance(body[name], str):
                    raise _err(422, "P011", f"{name} must be a string")
                doc[name] = body[name]
        if "gross_price" in body:
            doc["gross_price"] = str(_money(body["gross_price"], "gross_price").quantize(CENT))
        if "tax_id" in body and body["tax_id"] not in TAX_IDS:
            raise _err(422, "P012", f"tax_id {str(body['tax_id'])[:10]!r} is not one of {', '.join(TAX_IDS)}")
        for name, collection in (("brand_id", "brands"), ("category_id", "categories"), ("unit_id", "units")):
            if body.get(name) is not None and (not isinstance(body[name], int)
                                               or self.store.get(collection, _key(body[name])) is None):
                raise _err(422, "P013", f"{name} {body[name]!r} does not exist")
        if "status" in body and body["status"] not in ("on", "off"):
            raise _err(422, "P014", "status must be on or off")
        if "stock" in body and (not isinstance(body["stock"], int) or isinstance(body["stock"], bool)):
            raise _err(422, "P015", "stock must be an integer")
        for name in ("tax_id", "brand_id", "category_id", "unit_id", "status", "stock", "stock_control", "type_id"):
            if name in body:
                doc[name] = body[name]
        return doc

    def create_product(self, req: Request) -> Response:
        """L104: minimal `title` + `unit_id`; `reference` uniqueness is UNKNOWN (L108): duplicates are kept."""
        body = self._body(req)
        if not isinstance(body.get("title"), str) or not body["title"].strip():
            raise _err(422, "P001", "title is required")
        if body.get("unit_id") is None:
            raise _err(422, "P002", "unit_id is required")
        doc = self._product_fields(body, {"status": "on", "stock": 0, "type_id": "P", "tax_id": "NOR"})
        return Response(201, self._new("products", doc))

    def patch_product(self, req: Request) -> Response:
        """L105 `PATCH products/{id}` with the changed fields (stock too: our choice for L114's UNKNOWN)."""
        key = _key(int(req.params["pid"])) if req.params["pid"].isdigit() else ""
        doc = self.store.get("products", key)
        if doc is None:
            raise _err(404, "V404", "no such product")
        doc = self._product_fields(self._body(req), doc)
        self.store.put("products", key, doc)
        return Response(200, doc)

    # -- clients (L118-123) -------------------------------------------------------------------------
    def _check_nif(self, fiscal_id: Any, country: Any) -> str:
        if not isinstance(fiscal_id, str) or not fiscal_id.strip():
            raise _err(422, "C001", "fiscal_id must be a string")
        nif = normalise_nif(fiscal_id)
        if nif == FINAL_CONSUMER_NIF:
            raise _err(422, "C002", "fiscal_id 999999990 is the final consumer: omit the client instead")  # L63
        if (country in (None, "", "PT")) and not valid_nif(nif):
            raise _err(422, "C003", f"fiscal_id {fiscal_id[:20]!r} is not a valid Portuguese NIF")
        return nif

    def _client(self, body: dict[str, Any]) -> dict[str, Any]:
        doc = {k: body.get(k) for k in ("name", "address", "postalcode", "city", "phone", "mobile", "email",
                                        "website", "country", "external_reference") if body.get(k) is not None}
        if body.get("fiscal_id") is not None:
            nif = self._check_nif(body["fiscal_id"], body.get("country"))
            if self.store.find("clients", "fiscal_id", nif):
                raise _err(422, "C004", f"a client with fiscal_id {nif} exists already")  # L122-123
            doc["fiscal_id"] = nif
        doc["status"] = "active"
        return self._new("clients", doc)

    def create_client(self, req: Request) -> Response:
        return Response(201, self._client(self._body(req)))

    # -- admin --------------------------------------------------------------------------------------
    def _admin_list(self, req: Request) -> Response:
        """What Vendus holds of one collection (the last segment of the path)."""
        return Response(200, {"items": [d for _, d in self.store.all(req.path.rsplit("/", 1)[1])]})

    def admin_register(self, req: Request) -> Response:
        doc = self.store.get("registers", _key(int(req.params["rid"])))
        if doc is None:
            raise HttpError(404, "not_found", "no such register")
        doc["status"] = req.json()["status"]
        self.store.put("registers", _key(doc["id"]), doc)
        return Response(200, doc)

    def admin_product(self, req: Request) -> Response:
        """Change a product in Vendus as its staff would (a stock count at the shop's counter)."""
        doc = self.store.get("products", _key(int(req.params["pid"])))
        if doc is None:
            raise HttpError(404, "not_found", "no such product")
        doc.update(req.json())
        self.store.put("products", _key(doc["id"]), doc)
        return Response(200, doc)

    def admin_clock(self, req: Request) -> Response:
        """{"advance": SECONDS}: move the clock of the rate-limit window."""
        self.offset += float(req.json().get("advance", 0))
        return Response(200, {"offset": self.offset})

    def admin_config(self, req: Request) -> Response:
        body = req.json()
        self.reject_duplicate_tx = bool(body.get("reject_duplicate_tx", self.reject_duplicate_tx))
        self.rate_limit = int(body.get("rate_limit", self.rate_limit))
        return Response(200, {"reject_duplicate_tx": self.reject_duplicate_tx, "rate_limit": self.rate_limit})


def build(db_path: str, *, products: int = 5, seed: int = 42, log_bodies: bool = True, **options: str) -> VendusSim:
    return VendusSim(db_path, products=products, seed=seed, log_bodies=log_bodies, options=options)


__all__ = ["API", "DEMO_KEY", "VendusSim", "build"]
