"""The orders half of the SkyHub simulator: order documents, the order queue and the seller's status moves.

Rules cite ../shared/contracts/skyhub/API.md by line, as in `syncagent.simulators.skyhub`.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from syncagent.simulators import seeddata
from syncagent.simulators.common import HttpError, Request, Response
from syncagent.simulators.store import DocStore

VISIBILITY = 300.0  # API.md L102: acknowledge within 5 minutes, else the order is queued again
# API.md L126-136: status code -> type
STATUS_TYPES = {"book_product": "NEW", "payment_received": "APPROVED", "order_canceled": "CANCELED",
                "order_invoiced": "INVOICED", "order_shipped": "SHIPPED", "complete": "DELIVERED",
                "shipment_exception": "SHIPMENT_EXCEPTION"}
# API.md L138: the seller's path APPROVED -> INVOICED -> SHIPPED -> DELIVERED; cancel before shipping (L177)
SELLER_MOVES = {("APPROVED", "INVOICED"), ("INVOICED", "SHIPPED"), ("SHIPPED", "DELIVERED"),
                ("SHIPPED", "SHIPMENT_EXCEPTION"), ("NEW", "CANCELED"), ("APPROVED", "CANCELED"),
                ("INVOICED", "CANCELED")}
QUEUED_TYPES = {"NEW", "APPROVED", "CANCELED"}  # API.md L104-105: what the marketplace queues
PAYMENTS = [("CREDIT_CARD", "Cartão de Crédito"), ("BOLETO", "Boleto Bancário"), ("PIX", "Pix")]


class SkyError(HttpError):
    """API.md L34: the error body is {"error": "<message>"}, a single string, no code."""

    def response(self) -> Response:
        return Response(self.status, {"error": self.message}, dict(self.headers))


def fail(status: int, message: str) -> SkyError:
    return SkyError(status, str(status), message)


class SkyHubOrders:
    """Orders, the queue and status moves, on the simulator's document store (a part of `SkyHubSim`)."""

    store: DocStore
    seed: int
    products: int
    queue_mode: str
    empty_queue: str

    if TYPE_CHECKING:  # given by SkyHubSim and SimApp
        def now(self) -> float: ...

        def now_iso(self) -> str: ...

        def counter(self, name: str, start: int = 0) -> int: ...

    @staticmethod
    def _paging(req: Request) -> tuple[int, int]:
        try:
            page, per_page = int(req.arg("page", "1") or 1), int(req.arg("per_page", "25") or 25)
        except ValueError:
            raise fail(422, "page and per_page must be numbers") from None
        return max(1, page), max(1, min(100, per_page))

    def _order(self, code: str) -> dict[str, Any]:
        doc = self.store.get("orders", code)
        if doc is None:
            raise fail(404, f"order {code} not found")
        return doc

    def _new_order(self, fields: dict[str, Any]) -> dict[str, Any]:
        number = self.counter("order_seq", 1_517_940_500_000)
        rng = random.Random(f"{self.seed}:skyhub-order:{number}")
        items = []
        for _item in range(rng.randint(1, 3)):
            for _attempt in range(50):  # an active product: the back office refuses an inactive one
                index = rng.randint(1, max(1, self.products))
                if seeddata.product(self.seed, index)["active"]:
                    break
            info = seeddata.product(self.seed, index)
            price = float(Decimal(seeddata.price(self.seed, index)["list_price"]))
            special = round(price * 0.9, 2) if rng.random() < 0.25 else price
            items.append({"id": info["code"], "product_id": info["code"], "name": info["description"],
                          "qty": rng.randint(1, 3), "original_price": price, "special_price": special})
        shipping = rng.choice([0.0, 15.0, 23.9])
        total = round(sum(i["special_price"] * i["qty"] for i in items) + shipping, 2)
        person = seeddata.customer(self.seed, rng.randint(1, seeddata.customer_count(self.products)))
        if rng.random() < 0.4:  # a buyer the back office does not know yet
            person = {**person, "document": seeddata.cpf(rng), "name": seeddata.person_name(rng),
                      "email": f"cliente{number}@exemplo.com.br"}
        a = person["address"]
        address = {"full_name": person["name"], "street": a["street"], "number": a["number"], "detail": "",
                   "neighborhood": a["district"], "city": a["city"], "region": a["state"], "country": "BR",
                   "postcode": a["zip"], "complement": "", "reference": "", "phone": person["phone"]}
        method, label = rng.choice(PAYMENTS)
        placed = datetime.fromtimestamp(self.now(), UTC) - timedelta(minutes=rng.randint(1, 90))
        code = fields.pop("code", None) or f"Lojas Americanas-{number}-01"  # API.md L112-114: with spaces
        status = fields.pop("status", "payment_received")
        order = {
            "code": code, "channel": "Lojas Americanas", "placed_at": placed.strftime("%Y-%m-%dT%H:%M:%S-00:00"),
            "updated_at": self.now_iso(), "status": self._status(status), "total_ordered": total,
            "shipping_cost": shipping, "discount": 0.0, "interest": 0.0, "shipping_method": "Correios PAC",
            "customer": {"name": person["name"], "email": person["email"], "vat_number": person["document"],
                         "date_of_birth": person.get("birth_date"), "gender": "", "state_registration": None,
                         "phones": [person["phone"]]},
            "billing_address": address, "shipping_address": address, "items": items,
            "payments": [{"method": method, "description": label, "parcels": 1, "value": total}],
            "invoices": [], "shipments": [], "sync_status": "NOT_SYNCED",  # API.md L107, L116-124
        }
        order |= fields
        self.store.put("orders", code, order)
        self._enqueue(code)
        return order

    @staticmethod
    def _status(code: str) -> dict[str, str]:
        if code not in STATUS_TYPES:
            raise fail(422, f"unknown status {code!r}")  # API.md L30
        return {"code": code, "label": code.replace("_", " "), "type": STATUS_TYPES[code]}

    def _enqueue(self, code: str) -> None:
        """A marketplace change queues the order (once: the queue holds its current JSON), API.md L99-105."""
        item = self.store.get("queue", code)
        if item is None:
            self.store.put("queue", code, {"code": code, "pos": self._next_pos(), "read_at": None,
                                           "visible_at": 0.0, "reads": 0})

    def _next_pos(self) -> int:
        return self.counter("queue_pos")

    def _queue(self) -> list[dict[str, Any]]:
        return sorted((doc for _, doc in self.store.all("queue")), key=lambda d: d["pos"])

    def read_queue(self, req: Request) -> Response:
        """API.md L99: one order per call; not deleted within 5 minutes, it is queued again (L102-103)."""
        now = self.now()
        if self.queue_mode == "head":
            for item in self._queue():  # queued again: to the back, to be read anew
                if item["read_at"] is not None and now - item["read_at"] >= VISIBILITY:
                    self.store.put("queue", item["code"], {**item, "pos": self._next_pos(), "read_at": None})
            head = next(iter(self._queue()), None)
        else:
            head = next((i for i in self._queue() if i["visible_at"] <= now), None)
        if head is None:
            return {"204": Response(204), "404": Response(404, {"error": "queue is empty"}),
                    "200": Response(200, raw=b"")}.get(self.empty_queue, Response(204))
        head = {**head, "reads": head["reads"] + 1}
        if self.queue_mode == "head":
            head["read_at"] = head["read_at"] if head["read_at"] is not None else now
        else:
            head["visible_at"] = now + VISIBILITY
        self.store.put("queue", head["code"], head)
        return Response(200, self._order(head["code"]))

    def delete_queue_item(self, req: Request) -> Response:
        """API.md L102: DELETE /queues/orders/{code} takes the order off the queue, wherever it is in it."""
        code = unquote(req.params["code"])
        if not self.store.delete("queue", code):
            raise fail(404, f"order {code} is not in the queue")  # API.md L186 (UNKNOWN): a 404
        order = self.store.get("orders", code)
        if order is not None:
            self.store.put("orders", code, {**order, "sync_status": "SYNCED"})  # API.md L107
        return Response(204)

    def list_orders(self, req: Request) -> Response:
        """API.md L109: GET /orders?page=&per_page=&filters[statuses][]=; answers {total, orders} (L17)."""
        page, per_page = self._paging(req)
        statuses = req.args("filters[statuses][]")
        rows, total = self.store.window("orders", (page - 1) * per_page, per_page,
                                        (lambda d: d["status"]["code"] in statuses) if statuses else None)
        return Response(200, {"total": total, "orders": [d for _, d in rows]})

    def get_order(self, req: Request) -> Response:
        return Response(200, self._order(unquote(req.params["code"])))  # API.md L110

    def update_status(self, req: Request, action: str, status: str) -> Response:
        """API.md L142-179: the seller moves the order along its path; any other move is a 422 (L139)."""
        order = self._order(unquote(req.params["code"]))
        try:
            body = json.loads(req.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise fail(400, "malformed JSON") from None
        if not isinstance(body, dict) or body.get("status") != status:
            raise fail(422, f"status must be {status!r} on /{action}")
        before, after = order["status"]["type"], STATUS_TYPES[status]
        if (before, after) not in SELLER_MOVES:
            raise fail(422, f"invalid status transition from {before} to {after}")
        if action == "invoice":
            invoice = body.get("invoice")
            key = invoice.get("key") if isinstance(invoice, dict) else None
            if not isinstance(key, str) or len(key) != 44 or not key.isdigit():
                raise fail(422, "invoice.key must be the 44-digit NF-e access key")  # API.md L148
            order["invoices"] = [*order["invoices"], {"key": key, "number": key[25:34].lstrip("0") or "0",
                                                      "line": key[22:25].lstrip("0") or "0",
                                                      "issue_date": invoice.get("issue_date")}]
        elif action == "shipments":
            shipment = body.get("shipment")
            if not isinstance(shipment, dict) or not isinstance(shipment.get("track"), dict) \
                    or not shipment["track"].get("code"):
                raise fail(422, "shipment.track.code is required")  # API.md L159-166
            items = shipment.get("items", body.get("items"))  # API.md L167-168: both places accepted
            if not isinstance(items, list) or not items:
                raise fail(422, "shipment items are required")
            order["shipments"] = [*order["shipments"], {**shipment, "items": items}]
        elif action == "delivery":
            order["delivered_date"] = body.get("delivered_date")  # API.md L172
        order["status"] = self._status(status)
        order["updated_at"] = self.now_iso()
        self.store.put("orders", order["code"], order)
        return Response(204)

    def approve(self, req: Request) -> Response:
        """API.md L180: sandbox only, the marketplace's payment approval (queued)."""
        self._marketplace_status(self._order(unquote(req.params["code"])), "payment_received")
        return Response(204)

    def _marketplace_status(self, order: dict[str, Any], status: str) -> None:
        order["status"] = self._status(status)
        order["updated_at"] = self.now_iso()
        self.store.put("orders", order["code"], order)
        if order["status"]["type"] in QUEUED_TYPES:
            self._enqueue(order["code"])
