"""Seller Up, the assisted-selling tablet app: catalogue in by batch upserts, tablet customers and orders out.

Contract: ../shared/contracts/sellerup/openapi.yaml. Batch upserts answer one result per item
(a batch can partly fail). Feeds are ordered by `seq`, which grows on every change, so a record
may come again; the engine's journal makes that harmless. A revoked key answers 401
`key_revoked` on every call: the channel stops with that reason, the others go on.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar
from urllib.parse import quote

from syncagent.connectors.base import BaseConnector, Capabilities, Listed, OptionSpec, Outgoing, PushResult
from syncagent.connectors.common import (
    body_of,
    chunks,
    error_text,
    http_settings,
    need,
    need_money,
    opt,
    opt_money,
    parse_address,
    parse_items,
    reason,
    refused,
)
from syncagent.errors import MappingError, PermanentError
from syncagent.http import ApiKeyAuth, HttpClient, HttpSettings
from syncagent.model import (
    ChannelCustomer,
    Customer,
    Group,
    Order,
    OrderEvent,
    OrderItem,
    OrderPayment,
    Page,
    PaymentMethod,
    Price,
    Product,
    Seller,
    StockLevel,
    money_str,
    parse_time,
    time_str,
    utcnow,
    valid_document,
)

COLLECTIONS = ("products", "prices", "stock", "customers", "payment-methods", "groups", "sellers")
POSTS = ("order-acks", "order-events", "customer-links")
# collections read whole as a feed where the config makes the app a flow's source (it has no change feed)
LISTED_FEEDS = ("products",)
MAX_BATCH = 500  # the contract's cap on a batch upsert and on a feed page
NFE_KEY = re.compile(r"[0-9]{44}")
DOCUMENT = re.compile(r"[0-9]{11}|[0-9]{14}")
ACCEPTED = ("created", "updated", "unchanged")


class SellerUpConnector(BaseConnector):
    """Writes the catalogue to the tablets and reads the orders and customers taken on them."""

    type_name: ClassVar[str] = "sellerup"
    options: ClassVar[dict[str, OptionSpec]] = {
        "api_key": OptionSpec("str", required=True, secret=True, help="the store's integration key (X-Api-Key)"),
    }
    capabilities: ClassVar[Capabilities] = Capabilities(
        push=frozenset({*COLLECTIONS, *POSTS}),
        pull=frozenset({"orders", "channel-customers", *LISTED_FEEDS}),
        max_batch=MAX_BATCH, importable_statuses=("approved",), cancelled_statuses=("cancelled",),
        stable=frozenset({"products", "groups", "payment-methods", "sellers", "customers"}),
        listing=frozenset(COLLECTIONS),
    )

    def __init__(self, name: str, base_url: str, options: Mapping[str, Any], http: HttpSettings, *,
                 sleep: Callable[[float], None] | None = None, clock: Callable[[], datetime] = utcnow,
                 page_size: int = 500) -> None:
        self.name = name
        self.clock = clock
        self.page_size = max(1, min(page_size, MAX_BATCH))
        key = str(options["api_key"])
        self.secrets: tuple[str, ...] = (key,)
        self.client = HttpClient(base_url, http, name=name, auth=ApiKeyAuth("X-Api-Key", key),
                                 secrets=self.secrets, sleep=sleep)

    @classmethod
    def from_config(cls, cfg: Any, *, sleep: Callable[[float], None] | None = None,
                    clock: Callable[[], datetime] = utcnow) -> SellerUpConnector:
        return cls(cfg.name, cfg.base_url, cfg.options, http_settings(cfg.http), sleep=sleep, clock=clock)

    def check(self) -> None:
        """The key is accepted and the app reachable: the cheapest authenticated call there is."""
        resp = self.client.get("/v1/orders", params={"limit": 1})
        if resp.status != 200:
            raise refused(self.client, "GET /v1/orders", resp)

    def close(self) -> None:
        self.client.close()

    def http_clients(self) -> Sequence[HttpClient]:
        return (self.client,)

    # -- feeds -----------------------------------------------------------------------------------
    def pull(self, entity: str, cursor: str | None, filters: Mapping[str, Any] | None = None) -> Iterator[Page]:
        """Follow a seq feed after `cursor`; each page's cursor is the highest seq it held.

        A catalogue collection (where the app is the source) has no change feed: it is listed
        whole every time, and its pages carry no cursor (the engine sends only what differs).
        """
        if entity in LISTED_FEEDS:
            parse_listed = LISTED_PARSERS[entity]
            for items in self._list_pages(entity):
                yield Page(parse_items(items, parse_listed, "key"), None)
            return
        feeds = {"orders": ("/v1/orders", parse_order), "channel-customers": ("/v1/tablet-customers", parse_customer)}
        if entity not in feeds:
            raise ValueError(f"{self.name} has no {entity} feed")
        path, parse = feeds[entity]
        try:
            after = int(cursor or 0)
        except ValueError:
            raise PermanentError(f"{self.name}: {entity} cursor {str(cursor)[:40]!r} is not a seq number",
                                 code="bad_cursor") from None
        while True:
            what = f"GET {path}"
            resp = self.client.get(path, params={"after": after, "limit": self.page_size})
            if resp.status != 200:
                raise refused(self.client, what, resp)
            items = body_of(self.client, what, resp)["items"]
            seqs = [s for s in (_seq(i) for i in items) if s is not None]
            last = max(seqs, default=after)
            moved = last > after
            yield Page(parse_items(items, parse, _feed_key), str(last) if moved else None)
            # a short page is the end for now; a page that does not move the cursor would loop forever
            if len(items) < self.page_size or not moved:
                return
            after = last

    # -- writes ----------------------------------------------------------------------------------
    def prepare(self, entity: str, record: Any) -> Outgoing:
        """Map one model record (or an engine dict for acks and links) to Seller Up's wire form."""
        mapper = MAPPERS.get(entity)
        if mapper is not None:
            payload = mapper(record, self.clock)
            return Outgoing(payload["key"], payload)
        if entity == "order-events":
            return event_out(record)
        if entity == "order-acks":
            number = _required(str(record.get("backoffice_number") or ""), "backoffice_number")
            return Outgoing(_required(record.get("order_id"), "order_id"), {"backoffice_number": number})
        if entity == "customer-links":
            code = _required(str(record.get("code") or ""), "code")
            return Outgoing(_required(record.get("remote_id"), "remote_id"), {"code": code})
        raise ValueError(f"{self.name} cannot take {entity}")

    def push(self, entity: str, batch: Sequence[Outgoing]) -> list[PushResult]:
        """Catalogue: batch upserts of at most 500; acks, links, events: one POST each."""
        if entity in COLLECTIONS:
            results: list[PushResult] = []
            for part in chunks(batch, MAX_BATCH):
                results += self._upsert(entity, part)
            return results
        if entity in POSTS:
            return [self._post_one(entity, out) for out in batch]
        raise ValueError(f"{self.name} cannot take {entity}")

    def _upsert(self, entity: str, batch: Sequence[Outgoing]) -> list[PushResult]:
        if not batch:
            return []
        what = f"PUT /v1/{entity}"
        resp = self.client.put(f"/v1/{entity}", json={"items": [o.payload for o in batch]})
        if resp.status == 413:
            if len(batch) == 1:  # one record too large for the app: that record's problem, not the batch's
                return [PushResult(batch[0].key, "rejected", reason_code=resp.error_code() or "too_large",
                                   reason=reason(resp, self.client))]
            half = len(batch) // 2
            return self._upsert(entity, batch[:half]) + self._upsert(entity, batch[half:])
        if resp.status != 200:
            raise refused(self.client, f"{what} (the whole batch)", resp)
        results = body_of(self.client, what, resp, "results")["results"]
        if len(results) != len(batch):
            raise PermanentError(f"{self.name}: {what} answered {len(results)} results for {len(batch)} items",
                                 code="bad_response")
        ordered = _in_batch_order(batch, results)
        if ordered is None:
            raise PermanentError(f"{self.name}: {what} answered results whose keys do not match the items sent",
                                 code="bad_response")
        return [_result(sent.key, result, self.client.redact) for sent, result in zip(batch, ordered, strict=True)]

    def _post_one(self, entity: str, out: Outgoing) -> PushResult:
        if entity == "order-events":
            order_id = out.meta.get("order_id")
            if not order_id:
                return PushResult(out.key, "rejected", reason_code="missing_field", reason="the event has no order id")
            path = f"/v1/orders/{quote(str(order_id), safe='')}/events"
        elif entity == "order-acks":
            path = f"/v1/orders/{quote(out.key, safe='')}/acknowledge"
        else:
            path = f"/v1/tablet-customers/{quote(out.key, safe='')}/link"
        # acknowledging, linking and recording an event are safe to repeat (a repeat answers 204 or 409)
        resp = self.client.post(path, json=out.payload, idempotent=True)
        if resp.status in (200, 201, 204):
            return PushResult(out.key, "created" if entity == "order-events" else "updated")
        if resp.status == 409 and resp.error_code() == "already_recorded":
            return PushResult(out.key, "exists")
        code = "not_found" if resp.status == 404 else resp.error_code() or f"http_{resp.status}"
        return PushResult(out.key, "rejected", reason_code=code, reason=reason(resp, self.client))

    def listing(self, entity: str) -> Iterator[list[Listed]]:
        """What the app holds now (GET /v1/{collection}, keyset by key), page by page."""
        if entity not in COLLECTIONS:
            raise ValueError(f"{self.name} lists only {', '.join(COLLECTIONS)}, not {entity}")
        for items in self._list_pages(entity):
            items = [i for i in items if isinstance(i, dict) and isinstance(i.get("key"), str)]
            yield [Listed(i["key"], i, i.get("barcode") if isinstance(i.get("barcode"), str) else None)
                   for i in items]

    def _list_pages(self, entity: str) -> Iterator[list[Any]]:
        """The raw items of GET /v1/{collection}, page by page (keyset by key)."""
        after: str | None = None
        while True:
            what = f"GET /v1/{entity}"
            params: dict[str, Any] = {"limit": 1000}
            if after is not None:
                params["after_key"] = after
            resp = self.client.get(f"/v1/{entity}", params=params)
            if resp.status != 200:
                raise refused(self.client, what, resp)
            body = body_of(self.client, what, resp)
            yield list(body["items"])
            nxt = body.get("next_after_key")
            if not isinstance(nxt, str) or not nxt or nxt == after:
                return
            after = nxt

    def lookup(self, entity: str, **keys: str) -> Any:
        """Seller Up has nothing the engine needs to look up before writing again."""
        return None


def _result(key: str, result: Any, redact: Callable[[str], str]) -> PushResult:
    """One item of a batch answer as a PushResult; anything unexpected is a rejection, never a success."""
    status = result.get("status") if isinstance(result, dict) else None
    if status in ACCEPTED:
        return PushResult(key, status)
    error = result.get("error") if isinstance(result, dict) else None
    error = error if isinstance(error, dict) else {}
    return PushResult(key, "rejected", reason_code=str(error.get("code") or "rejected"),
                      reason=redact(error_text(error, with_code=False)) if error else f"answered status {status!r}")


def _in_batch_order(batch: Sequence[Outgoing], results: list[Any]) -> list[Any] | None:
    """The results lined up with the batch: by position, which the contract promises, checked by key."""
    keys = [r.get("key") if isinstance(r, dict) else None for r in results]
    if all(k is None or str(k) == sent.key for k, sent in zip(keys, batch, strict=True)):
        return results
    by_key = {str(k): r for k, r in zip(keys, results, strict=True) if k is not None}
    sent_keys = [sent.key for sent in batch]
    if len(by_key) == len(results) == len(set(sent_keys)) and set(by_key) == set(sent_keys):
        return [by_key[k] for k in sent_keys]
    return None


def _seq(item: Any) -> int | None:
    seq = item.get("seq") if isinstance(item, dict) else None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else None


def _feed_key(item: Mapping[str, Any]) -> str | None:
    """A feed item's key for quarantine: its id, else its seq, so even an id-less item is traceable."""
    if isinstance(item.get("id"), str) and item["id"].strip():
        return str(item["id"])
    seq = _seq(item)
    return f"seq:{seq}" if seq is not None else None


# -- model → wire ----------------------------------------------------------------------------------
def _required(value: Any, name: str) -> str:
    if type(value) is str and value.strip():  # the usual case, without a str() copy
        return value
    if value is None or not str(value).strip():
        raise MappingError("missing_field", f"{name} is required")
    return str(value)


def product_in(item: dict[str, Any]) -> Product:
    """A product as the app holds it (GET /v1/products), where the app is the catalogue's source."""
    return Product(code=need(item, "key"), name=need(item, "name"), active=need(item, "active", bool),
                   barcode=opt(item, "barcode"), brand=opt(item, "brand"), group_code=opt(item, "group_key"),
                   unit=opt(item, "unit") or "UN")


LISTED_PARSERS: dict[str, Callable[[dict[str, Any]], Any]] = {"products": product_in}


def product_out(p: Product, clock: Callable[[], datetime]) -> dict[str, Any]:
    return {"key": _required(p.code, "code"), "name": _required(p.name, "name"), "barcode": p.barcode,
            "brand": p.brand, "group_key": p.group_code, "unit": p.unit, "active": p.active}


def price_out(p: Price, clock: Callable[[], datetime]) -> dict[str, Any]:
    """Seller Up holds only the price in force now: list (or scheduled) price and a running promotion."""
    eff = p.effective(clock())
    return {"key": _required(p.code, "code"), "price": money_str(eff.price),
            "promo_price": money_str(eff.promo_price) if eff.promo_price is not None else None,
            "promo_until": time_str(eff.promo_until)}


def stock_out(s: StockLevel, clock: Callable[[], datetime]) -> dict[str, Any]:
    return {"key": _required(s.code, "code"), "available": max(0, int(s.available))}


def customer_push_out(c: Customer, clock: Callable[[], datetime]) -> dict[str, Any]:
    """A back office customer; one without a code has not been created there yet and cannot go."""
    address = c.address
    return {"key": _required(c.code, "code"), "document": _required(c.document, "document"),
            "name": _required(c.name, "name"), "email": c.email, "phone": c.phone,
            "city": address.city if address else None, "state": address.state if address else None}


def payment_method_out(m: PaymentMethod, clock: Callable[[], datetime]) -> dict[str, Any]:
    return {"key": _required(m.code, "code"), "name": _required(m.name, "name"), "type": _required(m.type, "type"),
            "max_installments": m.max_installments or 1, "active": m.active}


def group_out(g: Group, clock: Callable[[], datetime]) -> dict[str, Any]:
    return {"key": _required(g.code, "code"), "name": _required(g.name, "name"), "parent_key": g.parent_code,
            "active": g.active}


def seller_out(s: Seller, clock: Callable[[], datetime]) -> dict[str, Any]:
    return {"key": _required(s.code, "code"), "name": _required(s.name, "name"), "store": s.store_code or "",
            "active": s.active}


MAPPERS: dict[str, Callable[[Any, Callable[[], datetime]], dict[str, Any]]] = {
    "products": product_out, "prices": price_out, "stock": stock_out, "customers": customer_push_out,
    "payment-methods": payment_method_out, "groups": group_out, "sellers": seller_out,
}


def event_out(event: OrderEvent) -> Outgoing:
    """An order event with what Seller Up requires of its type: NF-e number and key, or carrier and tracking."""
    payload: dict[str, Any] = {"type": event.type, "occurred_at": time_str(event.occurred_at), "invoice_key": None,
                               "invoice_number": None, "tracking_code": None, "carrier": None}
    if event.type == "invoiced":
        if event.invoice is None or not event.invoice.number:
            raise MappingError("missing_field", "an invoiced event needs the NF-e number and its 44-digit key")
        if not NFE_KEY.fullmatch(event.invoice.key):
            raise MappingError("bad_invoice_key", f"NF-e key {event.invoice.key[:50]!r} does not have 44 digits")
        payload |= {"invoice_key": event.invoice.key, "invoice_number": event.invoice.number}
    elif event.type == "shipped":
        if event.shipment is None or not event.shipment.carrier or not event.shipment.tracking_code:
            raise MappingError("missing_field", "a shipped event needs the carrier and the tracking code")
        payload |= {"carrier": event.shipment.carrier, "tracking_code": event.shipment.tracking_code}
    return Outgoing(_required(event.id, "id"), payload, {"order_id": _required(event.remote_order_id, "order id")})


# -- wire → model ----------------------------------------------------------------------------------
def parse_order(item: dict[str, Any]) -> Order:
    """A TabletOrder; one with no items, a quantity under 1 or malformed money is quarantined whole."""
    order_id = need(item, "id")
    entries = need(item, "items", list)
    if not entries:
        raise MappingError("missing_field", "items: an order needs at least one item")
    items = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise MappingError("bad_type", f"items[{i}]: expected an object")
        quantity = need(entry, "quantity", int)
        if quantity < 1 or quantity > 1_000_000:
            raise MappingError("bad_quantity", f"items[{i}].quantity: {quantity} is not a quantity")
        items.append(OrderItem(need(entry, "key"), quantity, need_money(entry, "unit_price", f"items[{i}].unit_price"),
                               opt_money(entry, "discount", f"items[{i}].discount") or Decimal("0.00")))
    payments = []
    for i, entry in enumerate(opt(item, "payments", list) or []):
        if not isinstance(entry, dict):
            raise MappingError("bad_type", f"payments[{i}]: expected an object")
        installments = opt(entry, "installments", int) or 1
        if installments < 1:
            raise MappingError("bad_value", f"payments[{i}].installments: {installments} is not a count")
        payments.append(OrderPayment(need(entry, "method"), need_money(entry, "amount", f"payments[{i}].amount"),
                                     installments))
    customer = opt(item, "customer", dict) or {}
    return Order(
        remote_id=order_id, status=need(item, "status"), items=tuple(items), total=need_money(item, "total"),
        payments=tuple(payments), number=opt(item, "number"), customer_code=opt(customer, "code"),
        channel_customer_id=opt(customer, "tablet_customer_id"), seller_code=opt(item, "seller"),
        store_code=opt(item, "store"), notes=opt(item, "notes"),
        created_at=parse_time(item.get("created_at"), "created_at"), version=str(need(item, "seq", int)),
    )


def parse_customer(item: dict[str, Any]) -> ChannelCustomer:
    """A TabletCustomer; its CPF/CNPJ is the natural key, so a bad one cannot be bound and is quarantined."""
    document = need(item, "document")
    if not (DOCUMENT.fullmatch(document) and valid_document(document)):
        raise MappingError("invalid_document", f"document {document[:20]!r} is not a valid CPF/CNPJ")
    return ChannelCustomer(
        remote_id=need(item, "id"), document=document, name=need(item, "name"), linked_code=opt(item, "code"),
        email=opt(item, "email"), phone=opt(item, "phone"), address=parse_address(item.get("address")),
        version=str(need(item, "seq", int)),
    )
