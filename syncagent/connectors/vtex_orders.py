"""VTEX orders: the Orders Feed v3 read, the acknowledgement and the fulfilment news (a mixin of `VtexConnector`).

The Orders Feed v3 is a queue, not a cursor: an item comes back after its visibility timeout until
its handle is committed. An order that waits for the back office keeps its handle until the engine
acknowledges it (``push("order-acks")``: start-handling, then commit); every other item is
committed once the engine has recorded its page (it asks for the next one).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar
from urllib.parse import quote

from syncagent.connectors.base import Capabilities, Outgoing, PushResult
from syncagent.connectors.common import parse_items
from syncagent.connectors.vtex_wire import (
    invoice_body,
    invoice_package,
    json_of,
    lot_handles,
    packages,
    parse_customer,
    parse_order,
    refused,
    rejection,
)
from syncagent.errors import TransientError
from syncagent.http import HttpClient
from syncagent.model import BadRecord, ChannelCustomer, Order, Page

log = logging.getLogger("syncagent.connectors.vtex")

MAX_LOT = 10  # Getfeedorderstatus1: at most 10 items per read
MAX_LOTS = 500  # reads of one pull: a queue refilling as fast as we read must not hold the step forever
FEED_VISIBILITY = 250  # seconds an item read stays invisible (VTEX's default)
FEED_RETENTION = 345_600  # four days; the spec's maximum is 1,209,600


class VtexOrders:
    """The orders feed and what goes back on an order (a mixin of `VtexConnector`, which sets the state)."""

    name: str
    oms: HttpClient
    importable: tuple[str, ...]
    capabilities: ClassVar[Capabilities]
    payment_map: dict[str, str]
    configure_feed: bool
    _handles: dict[str, dict[str, str]]
    _customers: dict[str, ChannelCustomer]
    _pulling: bool
    _waits: dict[str, bool]
    _ahead: deque[list[Any]]
    _prefetched: dict[str, Any]
    _lots: int
    _feed_done: bool
    _feed_checked: bool

    # -- orders: Feed v3 ---------------------------------------------------------------------------
    def pull(self, entity: str, cursor: str | None, filters: Mapping[str, Any] | None = None) -> Iterator[Page]:
        """Read the feed lot by lot; the feed has no cursor, so every page carries None."""
        if entity == "channel-customers":
            # the engine asks for the buyers once per orders step, while it holds the first page that
            # needs one: read the rest of the feed now, so the buyers of the later lots are known too
            self._read_ahead()
            yield Page(list(self._customers.values()), None)
            return
        if entity != "orders":
            raise ValueError(f"{self.name} has no {entity} feed")
        self._ensure_feed()
        self._waits = {}  # orders read in this pull -> waiting for the back office
        self._ahead, self._prefetched, self._lots, self._feed_done = deque(), {}, 0, False
        self._pulling = True
        try:
            while True:
                if self._ahead:
                    items = self._ahead.popleft()
                elif self._feed_done or self._lots >= MAX_LOTS:
                    return
                else:
                    items = self._read_lot()
                if not items:
                    return
                lot = lot_handles(items)
                records: list[Any] = []
                waiting: set[str] = set()
                for order_id, handles in lot.items():
                    self._handles.setdefault(order_id, {}).update(handles)
                    if order_id not in self._waits:  # an order read again within one pull is not handed over twice
                        record = self._prefetched.pop(order_id, None) or self._read_order(order_id)
                        records.append(record)
                        # an order that could not be mapped (a payment not in payment_map, say) keeps its handle
                        # too: it comes back after the visibility timeout and goes through once the cause is fixed
                        self._waits[order_id] = (record.status in self.importable if isinstance(record, Order)
                                                 else record.code != "not_found")
                    if self._waits[order_id]:
                        waiting.add(order_id)
                new = bool(records)
                yield Page(records, None)
                # the engine asks for more only after recording the page: what does not wait for the
                # back office (other statuses, cancellations, quarantined items) can leave the queue now
                done = [h for order_id in lot if order_id not in waiting
                        for h in self._handles.pop(order_id, {}).values()]
                if done:
                    self._commit(done)
                if not new:
                    return
        finally:
            self._pulling = False
            self._ahead, self._prefetched = deque(), {}

    def _read_lot(self) -> list[Any]:
        """One Getfeedorderstatus1 read: up to MAX_LOT items, each invisible for the visibility timeout."""
        what = "GET /api/orders/feed"
        resp = self.oms.get("/api/orders/feed", params={"maxlot": MAX_LOT})
        if resp.status != 200:
            raise refused(self.oms, what, resp)
        items = json_of(self.oms, resp, "the feed")
        if not isinstance(items, list):
            raise TransientError(f"{self.name}: {what}: the answer is not a list", code="bad_response")
        self._lots += 1
        return items

    def _read_ahead(self) -> None:
        """During an orders pull: read the remaining lots and their orders now, to be handed over later."""
        if not self._pulling:
            return
        while not self._feed_done and self._lots < MAX_LOTS:
            items = self._read_lot()
            self._ahead.append(items)
            new = False
            for order_id in lot_handles(items):
                if order_id not in self._waits and order_id not in self._prefetched:
                    self._prefetched[order_id] = self._read_order(order_id)
                    new = True
            if not new:  # an empty lot, or only orders already read: the pull ends with this lot
                self._feed_done = True

    def _ensure_feed(self) -> None:
        """A Feed v3 exists per app key only once configured: create it (FeedConfiguration) if absent."""
        if self._feed_checked or not self.configure_feed:
            return
        resp = self.oms.get("/api/orders/feed/config")
        if resp.status == 404 or (resp.status == 200 and not json_of(self.oms, resp, "the feed configuration")):
            statuses = list(dict.fromkeys([*self.importable, *self.capabilities.cancelled_statuses]))
            body = {"filter": {"type": "FromWorkflow", "status": statuses},
                    "queue": {"visibilityTimeoutInSeconds": FEED_VISIBILITY,
                              "MessageRetentionPeriodInSeconds": FEED_RETENTION}}
            created = self.oms.post("/api/orders/feed/config", json=body, idempotent=True)
            if created.status != 200:
                raise refused(self.oms, "POST /api/orders/feed/config", created)
            log.info("%s: created the Orders Feed v3 configuration for statuses %s", self.name, ", ".join(statuses))
        elif resp.status != 200:
            raise refused(self.oms, "GET /api/orders/feed/config", resp)
        self._feed_checked = True

    def _commit(self, handles: list[str]) -> None:
        """Commititemfeedorderstatus: committed items do not come back."""
        resp = self.oms.post("/api/orders/feed", json={"handles": handles}, idempotent=True)
        if resp.status != 200:
            raise refused(self.oms, "POST /api/orders/feed", resp)

    def _read_order(self, order_id: str) -> Any:
        what = f"GET /api/oms/pvt/orders/{order_id}"
        resp = self.oms.get(f"/api/oms/pvt/orders/{quote(order_id, safe='')}")
        if resp.status == 404:
            return BadRecord(order_id, "not_found", "the feed names an order VTEX does not return", None)
        if resp.status != 200:
            raise refused(self.oms, what, resp)
        data = json_of(self.oms, resp, "the order")
        (record,) = parse_items([data], lambda d: self._parse_order(d), lambda d: d.get("orderId") or order_id)
        if isinstance(record, BadRecord) and record.key == "?":
            record = BadRecord(order_id, record.code, record.reason, record.raw)
        return record

    def _parse_order(self, data: dict[str, Any]) -> Order:
        order = parse_order(data, self.payment_map)
        customer = parse_customer(data)
        if customer is not None:
            self._customers[customer.remote_id] = customer
        return order
    # order acknowledgement
    def _push_ack(self, out: Outgoing) -> PushResult:
        """The back office has the order: start handling it in VTEX, then let its feed items go."""
        order_id = out.key
        path = f"/api/oms/pvt/orders/{quote(order_id, safe='')}/start-handling"
        resp = self.oms.post(path, idempotent=True)
        status = "updated"
        if resp.status == 409:
            status = "exists"  # already in handling (or past it): what we asked for is done
        elif resp.status != 204:
            return rejection(order_id, resp, self.oms, f"POST {path}")
        handles = list(self._handles.get(order_id, {}).values())
        if handles:
            self._commit(handles)
            self._handles.pop(order_id, None)
        return PushResult(order_id, status)

    # order events
    def _push_event(self, out: Outgoing) -> PushResult:
        order_id = str(out.meta.get("order_id") or "")
        if not order_id:
            return PushResult(out.key, "rejected", reason_code="missing_field", reason="the event has no order id")
        kind = out.payload["type"]
        order = self._order_doc(order_id)
        if order is None:
            return PushResult(out.key, "rejected", reason_code="not_found", reason=f"VTEX has no order {order_id}")
        base = f"/api/oms/pvt/orders/{quote(order_id, safe='')}"
        if kind == "cancelled":
            if order.get("status") == "canceled":
                return PushResult(out.key, "exists")
            resp = self.oms.post(f"{base}/cancel", json={"reason": "cancelled in the back office"}, idempotent=True)
            if resp.status == 200:
                return PushResult(out.key, "created")
            again = self._order_doc(order_id)
            if again is not None and again.get("status") == "canceled":
                return PushResult(out.key, "exists")
            return rejection(out.key, resp, self.oms, f"POST {base}/cancel")
        if kind == "invoiced":
            body = invoice_body(out.payload, order)
            same = next((p for p in packages(order) if p.get("invoiceNumber") == body["invoiceNumber"]), None)
            if same is not None and same.get("invoiceKey") not in (None, body["invoiceKey"]):
                # InvoiceNotification: "Every time this endpoint is called using the same invoiceNumber, [...] you
                # cannot change other information, only the receipt code": sending it would change nothing
                return PushResult(out.key, "rejected", reason_code="not_correctable", reason=(
                    f"VTEX keeps invoice {body['invoiceNumber']} with the NF-e key first sent (the same invoice "
                    "number again changes only its receipt); correct the key in the VTEX admin, or issue the "
                    "corrected NF-e under a new number"))
            if same is not None:
                return PushResult(out.key, "exists")
            # a new number (first invoice, or a corrected NF-e re-issued under a new number, which VTEX adds as the
            # order's latest invoice: tracking and delivery go on it)
            resp = self.oms.post(f"{base}/invoice", json=body, idempotent=True)  # same number: same invoice
            if resp.status == 200:
                return PushResult(out.key, "created")
            return rejection(out.key, resp, self.oms, f"POST {base}/invoice")
        package = invoice_package(order, out.payload.get("invoiceNumber"))
        if package is None:
            return PushResult(out.key, "rejected", reason_code="out_of_order",
                              reason=f"the order has no invoice yet to attach the {kind} event to")
        number = quote(str(package["invoiceNumber"]), safe="")
        if kind == "shipped":
            if package.get("trackingNumber") == out.payload["trackingNumber"]:
                return PushResult(out.key, "exists")
            body = {k: out.payload[k] for k in ("trackingNumber", "trackingUrl", "dispatchedDate", "courier")}
            resp = self.oms.request("PATCH", f"{base}/invoice/{number}", json=body, idempotent=True)
        else:  # delivered
            if not package.get("trackingNumber"):
                return PushResult(out.key, "rejected", reason_code="out_of_order",
                                  reason="the invoice has no tracking number yet")
            if (package.get("courierStatus") or {}).get("finished"):
                return PushResult(out.key, "exists")
            body = {"isDelivered": True, "deliveredDate": out.payload["deliveredDate"], "events": []}
            resp = self.oms.put(f"{base}/invoice/{number}/tracking", json=body)
        if resp.status == 200:
            return PushResult(out.key, "created")
        return rejection(out.key, resp, self.oms, f"{kind} on {base}")

    def _order_doc(self, order_id: str) -> dict[str, Any] | None:
        path = f"/api/oms/pvt/orders/{quote(order_id, safe='')}"
        resp = self.oms.get(path)
        if resp.status == 404:
            return None
        if resp.status != 200:
            raise refused(self.oms, f"GET {path}", resp)
        body = json_of(self.oms, resp, "the order")
        if not isinstance(body, dict):
            raise TransientError(f"{self.name}: GET {path}: the answer is not an order", code="bad_response")
        return body
