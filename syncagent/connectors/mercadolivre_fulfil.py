"""Mercado Livre fulfilment: the NF-e XML to the shipment, tracking where the seller ships.

API.md §5.4-5.6. One shipment serves a whole pack (several orders paid together, L108): its one
NF-e and its tracking are sent once and count for every order of the pack (the repeat is found
on the shipment and answered as already there). The shipment says who ships: ME1/custom, the
seller, who reports shipped/delivered (L141); ME2, Mercado Livre, for whom nothing is sent after
the NF-e (L139); Full (fulfillment) is invoiced by ML itself (L133). An event before the NF-e
reached the shipment is out of order (the goods travel with their NF-e).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from syncagent.connectors.base import Outgoing, PushResult
from syncagent.connectors.mercadolivre_wire import (
    ME2_LOGISTICS,
    cause_codes,
    json_of,
    nfe_xml_problem,
    refused,
    rejection,
)
from syncagent.errors import PermanentError
from syncagent.http import HttpClient

if TYPE_CHECKING:
    from syncagent.connectors.mercadolivre import MercadoLivreConnector

DUPLICATE_INVOICE = {"shipment_invoice_already_saved", "duplicated_fiscal_key"}  # API.md L131, L158
NEW_FORMAT = {"x-format-new": "true"}  # API.md L110


class Fulfilment:
    """The order-events writer of one connector."""

    def __init__(self, conn: MercadoLivreConnector) -> None:
        self.conn = conn

    def push(self, out: Outgoing) -> PushResult:
        """One fulfilment event, after reading the order's shipment: what ML holds decides what is sent."""
        order_id, kind = str(out.meta["order_id"]), out.payload["type"]
        if kind == "cancelled":  # API.md L149-150
            return PushResult(out.key, "rejected", reason_code="not_supported", reason="Mercado Livre has no "
                              "documented seller cancellation of a paid order: cancel it in the Mercado Livre panel")
        path = f"/orders/{quote(order_id, safe='')}"
        resp = self.conn.client.get(path)
        if resp.status != 200:
            return rejection(out.key, resp, self.conn.client, f"GET {path}")
        order = json_of(self.conn.client, resp, "the order")
        shipping = order.get("shipping") if isinstance(order, dict) else None
        shipment_id = shipping.get("id") if isinstance(shipping, dict) else None
        if shipment_id is None:
            return PushResult(out.key, "rejected", reason_code="no_shipment", reason=f"order {order_id} has no "
                              "shipment yet")
        shipment_path = f"/shipments/{quote(str(shipment_id), safe='')}"
        resp = self.conn.client.get(shipment_path, headers=NEW_FORMAT)
        if resp.status != 200:
            return rejection(out.key, resp, self.conn.client, f"GET {shipment_path}")
        shipment = json_of(self.conn.client, resp, "the shipment")
        shipment = shipment if isinstance(shipment, dict) else {}
        if kind == "invoiced":
            return self._upload_invoice(out, shipment_path, shipment)
        if _ml_ships(shipment) or self.conn.tracking == "none":
            return PushResult(out.key, "unchanged")  # API.md L139-140: ME2 tracking is Mercado Livre's
        if shipment.get("substatus") == "invoice_pending":  # goods travel with their NF-e: it goes first
            return PushResult(out.key, "rejected", reason_code="out_of_order", reason="the shipment still waits for "
                              "its NF-e; the invoice must reach Mercado Livre before the shipment is reported")
        want = "shipped" if kind == "shipped" else "delivered"
        if shipment.get("status") == want and (kind == "delivered" or
                                               shipment.get("tracking_number") == out.payload["tracking_number"]):
            return PushResult(out.key, "exists")  # the pack's other order sent it, or a repeat
        body = {"status": want, "substatus": None, "tracking_number": out.payload.get("tracking_number"),
                "tracking_url": out.payload.get("tracking_url"),
                "payload": {"service_id": None, "comment": out.payload.get("carrier"), "date": out.payload["date"]}}
        resp = self.conn.client.post(f"{shipment_path}/seller_notifications", json=body, idempotent=True)
        if resp.status in (200, 201):
            return PushResult(out.key, "created")
        return rejection(out.key, resp, self.conn.client, f"POST {shipment_path}/seller_notifications")

    def _upload_invoice(self, out: Outgoing, shipment_path: str, shipment: dict[str, Any]) -> PushResult:
        """The signed NF-e XML to the order's (or its pack's) shipment; a repeat is checked, not sent."""
        if shipment.get("logistic_type") == "fulfillment":
            return PushResult(out.key, "unchanged")  # API.md L133: Full uses ML's own invoicer
        key = out.payload["key"]
        stored = self._invoice_key(shipment_path)
        if stored == key:
            return PushResult(out.key, "exists")
        if stored is not None:
            return _other_invoice(out.key, stored, key)
        xml = self._fetch_xml(out.payload["xml_url"])
        problem = nfe_xml_problem(xml, key)
        if problem is not None:
            return PushResult(out.key, "rejected", reason_code="bad_nfe_xml", reason=problem)
        path = f"{shipment_path}/invoice_data"
        resp = self.conn.client.request("POST", path, params={"siteId": self.conn.site_id}, data=xml, idempotent=True,
                                   headers={"Content-Type": "application/xml"})
        if resp.status in (200, 201):
            return PushResult(out.key, "created")
        if cause_codes(resp) & DUPLICATE_INVOICE:  # API.md L158: check what it holds
            stored = self._invoice_key(shipment_path)
            if stored == key:
                return PushResult(out.key, "exists")
            if stored is not None:
                return _other_invoice(out.key, stored, key)
        return rejection(out.key, resp, self.conn.client, f"POST {path}")

    def _invoice_key(self, shipment_path: str) -> str | None:
        path = f"{shipment_path}/invoice_data"
        resp = self.conn.client.get(path, params={"siteId": self.conn.site_id})
        if resp.status == 404:
            return None
        if resp.status != 200:
            raise refused(self.conn.client, f"GET {path}", resp)
        body = json_of(self.conn.client, resp, "the invoice data")
        key = body.get("fiscal_key") if isinstance(body, dict) else None
        return str(key) if key else None

    def _fetch_xml(self, url: str) -> bytes:
        """The NF-e XML from where the back office keeps it (no Mercado Livre credentials go there)."""
        parts = urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        client = HttpClient(f"{parts.scheme}://{parts.netloc}", self.conn.client.settings, name=f"{self.conn.name} NF-e XML",
                            secrets=self.conn.client.secrets)
        try:
            resp = client.get(path, authenticated=False)
        finally:
            client.close()
        if resp.status != 200:
            raise PermanentError(f"{self.conn.name}: the NF-e XML at {client.redact(url)} answered {resp.status}",
                                 status=resp.status, code="nfe_xml_unavailable")
        return resp.content


def _ml_ships(shipment: Mapping[str, Any]) -> bool:
    """ME2 (Mercado Envios, Full included): Mercado Livre owns the label, tracking and delivery (API.md L139)."""
    mode = shipment.get("mode")
    if mode in ("me1", "custom"):
        return False
    return mode == "me2" or shipment.get("logistic_type") in (*ME2_LOGISTICS, "fulfillment")


def _other_invoice(key: str, stored: str, sent: str) -> PushResult:
    return PushResult(key, "rejected", reason_code="shipment_invoice_already_saved", reason=(
        f"the shipment already holds NF-e {stored}, not {sent}: Mercado Livre keeps one NF-e per shipment (a pack "
        "of several orders ships once: issue one NF-e for the whole pack); a correction is possible only before "
        "the label is printed (API.md L130)"))

