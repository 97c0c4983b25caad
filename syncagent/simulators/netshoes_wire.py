"""The Netshoes simulator's wire parts: its error body, status-update bodies and seeded orders.

Kept apart from `syncagent.simulators.netshoes` so each module stays small; rules cite
../shared/contracts/netshoes/API.md (``API.md Lnn``).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from syncagent.simulators import seeddata
from syncagent.simulators.common import HttpError, Response


class NsError(HttpError):
    """The error body of API.md L30: {type, description, notifications, links}."""

    def __init__(self, status: int, type_: str, description: str, notes: list[str] | None = None) -> None:
        super().__init__(status, type_, description)
        self.notes = notes or []

    def response(self) -> Response:
        return Response(self.status, {"type": self.code, "description": self.message, "notifications": self.notes,
                                      "links": []}, dict(self.headers))


def invalid(*notes: str) -> NsError:
    # 400 vs 422 for validation errors is UNKNOWN (API.md L34): 400 here
    return NsError(400, "Invalid_Request", "The request is invalid.", list(notes))


def status_fields(body: dict[str, Any], code: int, step: str, accepted: str) -> dict[str, Any]:
    """The fields of a status body in the flat (2026) or the envelope (2016) shape, or a 400."""
    envelope = "shippings" in body
    if (envelope and accepted == "flat") or (not envelope and accepted == "envelope"):
        raise invalid(f"body: this API takes the {accepted} status body")
    if envelope:
        items = body["shippings"]
        if not isinstance(items, list) or len(items) != 1 or not isinstance(items[0], dict) or \
                items[0].get("shippingCode") != code:
            raise invalid("shippings: one entry with this shippingCode")
        entry = items[0]
        inner = entry.get("invoice") if step == "invoiced" else entry.get("transport")
        inner = inner if isinstance(inner, dict) else {}
        if step == "invoiced":
            fields = {"number": inner.get("number"), "line": inner.get("line"), "accessKey": inner.get("accessKey"),
                      "issueDate": inner.get("issueDate")}
        elif step == "canceled":
            fields = {"reason": entry.get("cancellationReason")}
        else:
            fields = {k: inner.get(k) for k in ("carrier", "trackingNumber", "trackingLink", "shipDate",
                                                "deliveryDate") if inner.get(k) is not None}
    elif step == "invoiced":
        fields = {"number": body.get("number"), "line": body.get("line"), "accessKey": body.get("key"),
                  "issueDate": body.get("issueDate"), "volume": body.get("volume")}
    elif step == "canceled":
        fields = {"reason": body.get("reasonCancellationCode"), "canceledBy": body.get("canceledBy")}
    else:
        fields = {k: body.get(k) for k in ("carrier", "trackingNumber", "trackingLink", "deliveryDate")
                  if body.get(k) is not None}
    required = {"invoiced": ("number", "line", "accessKey", "issueDate"), "shipped": ("carrier", "trackingNumber"),
                "delivered": ("deliveryDate",), "canceled": ("reason",), "approved": ()}[step]
    notes = [f"{k}: is required" for k in required if fields.get(k) in (None, "")]
    key = str(fields.get("accessKey") or "")
    if step == "invoiced" and key and not (key.isdigit() and len(key) == 44):  # API.md L126
        notes.append("accessKey: the NF-e key has 44 digits")
    if notes:
        raise invalid(*notes)
    return fields


def make_order(sim: Any, fields: dict[str, Any]) -> dict[str, Any]:
    """An order with one shipping (or `shippings` of them), approved unless `status` says otherwise."""
    seq = sim.counter("order_seq", 0)
    rng = random.Random(f"{sim.seed}:netshoes-order:{seq}")
    unit = fields.get("businessUnit") or ("ZT" if rng.random() < sim.zattini_share else "NS")
    placed = datetime.now(UTC) - timedelta(minutes=rng.randint(1, 240))
    if fields.get("orderDate"):
        placed = at_time(fields["orderDate"])
    customers = seeddata.customer_count(sim.products)
    person = seeddata.customer(sim.seed, rng.randint(1, customers))
    if rng.random() < 0.4:
        person = {**person, "document": seeddata.cpf(rng), "name": seeddata.person_name(rng)}
    if fields.get("customer"):
        person = {**person, **fields["customer"]}
    shippings = []
    for _ in range(int(fields.get("shippings", 1))):
        code = sim.counter("shipping_code", 0)
        items = []
        for n in range(rng.randint(1, 3)):
            index = rng.randint(1, max(1, sim.products))
            for _attempt in range(50):
                if seeddata.product(sim.seed, index)["active"]:
                    break
                index = rng.randint(1, max(1, sim.products))
            info = seeddata.product(sim.seed, index)
            gross = float(Decimal(seeddata.price(sim.seed, index)["list_price"]))
            discount = round(gross * 0.1, 2) if rng.random() < 0.25 else 0.0
            quantity = rng.randint(1, 3)
            items.append({"itemId": n + 1, "sku": info["code"], "ean": info["barcode"],
                          "name": info["description"], "brand": info["brand"], "quantity": quantity,
                          "grossUnitValue": gross, "discountUnitValue": discount,
                          "netUnitValue": round(gross - discount, 2), "totalGross": round(gross * quantity, 2),
                          "totalDiscount": round(discount * quantity, 2), "status": "Approved"})
        address = person["address"]
        shippings.append({
            "shippingCode": code, "status": fields.get("status", "Approved"),
            "freightAmount": rng.choice([0, 15.0, 23.9]), "shippingEstimate": None, "deliveryTime": 5,
            "cancellationReason": None,
            "customer": {"document": person["document"], "stateInscription": None, "customerName": person["name"],
                         "recipientName": person["name"], "tradeName": None, "cellPhone": person["phone"],
                         "landLine": None,
                         "address": {"street": address["street"], "number": address["number"],
                                     "complement": None, "neighborhood": address["district"],
                                     "city": address["city"], "state": address["state"],
                                     "postalCode": address["zip"], "reference": None}},
            "sender": {"sellerCode": "1", "sellerName": "Loja Demo", "supplierCnpj": "12345678000195",
                       "supplierName": "Loja Demo Ltda"},
            "items": items, "invoice": None, "transport": None})
    number = fields.get("orderNumber") or str(700_000_000 + seq)
    order = {"orderNumber": number, "originNumber": f"{number}01",
             "originSite": "ZATTINI" if unit == "ZT" else "NETSHOES", "businessUnit": unit,
             "orderStatus": shippings[0]["status"], "orderType": "Normal", "orderDate": iso(placed),
             "paymentDate": iso(placed + timedelta(minutes=5)), "shippings": shippings,
             "totalQuantity": sum(i["quantity"] for s in shippings for i in s["items"])}
    return order


def at_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00")).astimezone(UTC)


def iso(moment: datetime) -> str:
    """ISO 8601 with the offset, as Netshoes writes its dates (API.md L20)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


