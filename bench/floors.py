"""The floors: plain scripts making the very same HTTP calls as the agent, with nothing else.

One `requests.Session` each, stdlib json, no journal, no retries, no fingerprints: what a
hand-written one-off script would do. The agent is measured against these in the same run.
"""

from __future__ import annotations

import json
from typing import Any

import requests

from bench.common import API_KEY, CLIENT_ID, CLIENT_SECRET

PAGE = 500  # the agent's back office page size


def _token(session: requests.Session, backoffice: str) -> dict[str, str]:
    resp = session.post(f"{backoffice}/oauth/token", data={"grant_type": "client_credentials", "client_id": CLIENT_ID,
                                                           "client_secret": CLIENT_SECRET}, timeout=30)
    resp.raise_for_status()
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}


def _pages(session: requests.Session, backoffice: str, feed: str, auth: dict[str, str]) -> Any:
    """GET /<feed>?limit=500&cursor=... to the end, yielding each page's items."""
    cursor = None
    while True:
        params: dict[str, Any] = {"cursor": cursor, "limit": PAGE} if cursor else {"limit": PAGE}
        resp = session.get(f"{backoffice}/{feed}", params=params, headers=auth, timeout=60)
        resp.raise_for_status()
        body = json.loads(resp.content)
        yield body["items"]
        cursor = body.get("next_cursor")
        if not cursor:
            return


def product_payload(p: dict[str, Any]) -> dict[str, Any]:
    """The agent's Seller Up product mapping, written out by hand."""
    return {"key": p["code"], "name": p["description"], "barcode": p.get("barcode"), "brand": p.get("brand"),
            "group_key": p.get("group_code"), "unit": p.get("unit") or "UN", "active": p["active"]}


def push_products(backoffice: str, channel: str, batch: int = 500) -> int:
    """Read the product feed, PUT every product to the channel in batches; returns the items accepted."""
    accepted = 0
    with requests.Session() as session:
        auth = _token(session, backoffice)
        key = {"X-Api-Key": API_KEY}
        for items in _pages(session, backoffice, "products", auth):
            payloads = [product_payload(p) for p in items]
            for start in range(0, len(payloads), batch):
                resp = session.put(f"{channel}/v1/products", json={"items": payloads[start:start + batch]},
                                   headers=key, timeout=60)
                resp.raise_for_status()
                results = json.loads(resp.content)["results"]
                accepted += sum(1 for r in results if r["status"] in ("created", "updated", "unchanged"))
    return accepted


def read_products(backoffice: str) -> int:
    """Just read the product feed (the floor of a rescan that finds nothing to send)."""
    count = 0
    with requests.Session() as session:
        auth = _token(session, backoffice)
        for items in _pages(session, backoffice, "products", auth):
            count += len(items)
    return count


def _order_in(order: dict[str, Any], channel: str, warehouse: str) -> dict[str, Any]:
    """The back office OrderIn the agent builds from a tablet order."""
    body = {
        "external_id": order["id"], "channel": channel, "customer_code": order["customer"]["code"],
        "seller_code": order.get("seller"), "store_code": order.get("store"), "warehouse": warehouse,
        "items": [{"sku": i["key"], "quantity": i["quantity"], "unit_price": i["unit_price"],
                   "discount": i.get("discount") or "0.00"} for i in order["items"]],
        "payments": [{"method_code": p["method"], "amount": p["amount"], "installments": p.get("installments") or 1}
                     for p in order.get("payments") or []],
        "shipping": "0.00", "total": order["total"], "notes": order.get("notes"),
    }
    if order.get("created_at"):
        body["created_at"] = order["created_at"]
    return body


def import_orders(backoffice: str, channel: str, name: str, warehouse: str = "LJ01") -> int:
    """Follow the channel's order feed; per approved order: look it up, create it, acknowledge it."""
    done: set[str] = set()
    after = 0
    with requests.Session() as session:
        auth = _token(session, backoffice)
        key = {"X-Api-Key": API_KEY}
        while True:
            resp = session.get(f"{channel}/v1/orders", params={"after": after, "limit": PAGE}, headers=key, timeout=60)
            resp.raise_for_status()
            items = json.loads(resp.content)["items"]
            for order in items:
                if order["status"] != "approved" or order["id"] in done:
                    continue
                found = session.get(f"{backoffice}/orders", params={"external_id": order["id"], "channel": name},
                                    headers=auth, timeout=60)
                found.raise_for_status()
                existing = json.loads(found.content)["items"]
                if existing:
                    number = existing[0]["number"]
                else:
                    created = session.post(f"{backoffice}/orders", json=_order_in(order, name, warehouse),
                                           headers=auth, timeout=60)
                    created.raise_for_status()
                    number = json.loads(created.content)["number"]
                ack = session.post(f"{channel}/v1/orders/{order['id']}/acknowledge",
                                   json={"backoffice_number": str(number)}, headers=key, timeout=60)
                ack.raise_for_status()
                done.add(order["id"])
            seqs = [o["seq"] for o in items]
            if len(items) < PAGE or not seqs or max(seqs) <= after:
                return len(done)
            after = max(seqs)
