"""Where the agent's CPU goes per feed page, each stage timed apart (no servers, no threads).

    python -m bench.per_page          # one 500-product page of the seeded catalogue, median of 50 runs

The stages of `Engine._push_feed` for the products of a Seller Up channel, with the stdlib JSON
module beside orjson where the agent uses orjson, and the journal on a temporary file.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from syncagent import fastjson
from syncagent.connectors import gestao_lojas, sellerup
from syncagent.connectors.common import parse_items
from syncagent.journal import Journal
from syncagent.model import Product, fingerprint
from syncagent.simulators import seeddata

PAGE = 500
CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def timed(fn: Callable[[], Any], runs: int = 50) -> float:
    """Median milliseconds of one call."""
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


def main() -> None:
    items = [seeddata.product(7, i) | {"updated_at": "2026-11-30T12:00:00Z"} for i in range(1, PAGE + 1)]
    body = json.dumps({"items": items, "next_cursor": "c"}).encode()
    parse, key_of = gestao_lojas.PARSERS["products"]
    records = parse_items(items, parse, key_of, raw=body)
    channel = sellerup.SellerUpConnector.__new__(sellerup.SellerUpConnector)
    channel.clock = None  # type: ignore[assignment]
    outs = [channel.prepare("products", r) for r in records]
    payloads = [o.payload for o in outs]
    answer = json.dumps({"results": [{"key": o.key, "status": "created"} for o in outs]}).encode()
    rows = [(o.key, fingerprint(o.payload), None) for o in outs]
    stages: list[tuple[str, float]] = [
        ("decode the GET body (orjson)", timed(lambda: fastjson.loads(body))),
        ("  the same with the stdlib", timed(lambda: json.loads(body))),
        ("parse into Product dataclasses", timed(lambda: parse_items(items, parse, key_of, raw=body))),
        ("  of which building 500 Products", timed(lambda: [Product("P", "n", True, "b", "r", "g", "UN", "x", "1",
                                                                   "2", "3", "4") for _ in range(PAGE)])),
        ("map to Seller Up payloads (prepare)", timed(lambda: [channel.prepare("products", r) for r in records])),
        ("fingerprint the payloads (orjson)", timed(lambda: [fingerprint(p) for p in payloads])),
        ("  the same bytes with the stdlib", timed(lambda: [CANONICAL.encode(p).encode() for p in payloads])),
        ("encode the PUT body (orjson)", timed(lambda: fastjson.dumps({"items": payloads}))),
        ("  the same with the stdlib", timed(lambda: json.dumps({"items": payloads}).encode())),
        ("decode and read the PUT answer", timed(lambda: [sellerup._result(r["key"], r, str)
                                                          for r in fastjson.loads(answer)["results"]])),
    ]
    with tempfile.TemporaryDirectory() as tmp, Journal(Path(tmp) / "j.db") as journal:
        keys = [o.key for o in outs]

        def record() -> None:
            with journal.replayable(), journal.transaction():
                journal.record_sent("loja", "products", rows)
                journal.save_cursor("loja", "products", "c")

        record()
        stages += [
            ("journal: fingerprints of the page's keys", timed(lambda: journal.fingerprints("loja", "products", keys))),
            ("journal: record the page (one transaction)", timed(record)),
        ]
    width = max(len(name) for name, _ in stages)
    print(f"per page of {PAGE} products, median ms of 50 runs")
    for name, ms in stages:
        print(f"{name:<{width}}  {ms:6.2f}")


if __name__ == "__main__":
    main()
