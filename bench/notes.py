"""Where the time goes when a goal is missed, and what would fix it: written from the profiles.

Each entry is printed in docs/benchmarks.md only while its benchmark misses its goal, followed by
the cProfile of one agent run taken in that same benchmark. Figures quoted here come from profiles
of these benchmarks at 10k-100k products; the profile printed under each note is the current one.
"""

from __future__ import annotations

SURROGATES = """\
`syncagent/connectors/common.py` `parse_items` calls `_has_surrogates` on every item, which walks
every string of every record (27 calls per product: about 18 % of the agent's CPU in a push). A
lone surrogate can only reach a parsed record from a `\\uD800`–`\\uDFFF` escape or the raw bytes
`ED A0`–`ED BF` (`json.loads` decodes bytes with `surrogatepass`). Decide once per page: in
`syncagent/http.py` give `HttpResponse` a property `may_hold_surrogates` =
`re.search(rb"\\\\u[dD][89a-fA-F]|\\xed[\\xa0-\\xbf]", self.content) is not None`, add a parameter
`check_text: bool = True` to `parse_items`, and pass `check_text=resp.may_hold_surrogates` from
`GestaoLojasConnector.pull` and `SellerUpConnector.pull`. A false positive only takes the present
slow path; the malformed-data tests keep their meaning."""

PARSE = """\
`syncagent/connectors/gestao_lojas.py` `parse_product` (and `parse_price`, `parse_stock`,
`parse_customer`) go through `need`/`opt`/`_typed` for every field: 12 calls per product, about
15 % of the CPU. Give each parser a fast path: check the whole item with direct `isinstance`
tests in one expression and build the dataclass; fall back to the current `need`/`opt` chain only
when that check fails, so the error messages stay exactly as they are."""

NOTES: dict[str, tuple[str, str]] = {
    "push": ("Initial push of products: agent slower than the floor", f"""\
The calls are the same (see above), and so is the server CPU; the difference is the client. Each
request waits for its answer, so wall time is about *client CPU + server CPU*. The agent's own CPU
is more than 3× the floor's (parse into model objects, text check, map, canonical-JSON sha256
fingerprint, journal lookup and one `synchronous=FULL` commit per page) and, on its own, already
longer than the floor's whole run. So both are needed: less CPU per record, and that CPU
*overlapped* with the servers' work, which the floor, being sequential, does not do.

1. **Overlap the channel write with the next page** — `syncagent/engine.py`, `Engine._push_feed` /
   `_push_records`: split `_push_records` into *prepare* (map, fingerprint, diff) and *finish*
   (PUT results → one journal transaction → cursor). Run the PUTs of page k in one worker thread
   (a `concurrent.futures.ThreadPoolExecutor(max_workers=1)` owned by the step; sockets release
   the GIL) while the main thread reads and prepares page k+1; then wait for page k's future and
   write its transaction before page k+1's. Cursor order and "the cursor only moves past recorded
   pages" are unchanged; at most one extra page is held in memory. Expected wall ≈ max(client
   CPU, server CPU) plus one page instead of their sum. (A quick experiment that only prefetched
   the next GET in a thread, with the parse still in that thread, showed no gain on this loaded
   2-core machine: the parse competes for the GIL, and the channel PUT — the larger share of
   server time — stayed serial.)
2. **Text check per page, not per string** — {SURROGATES}
3. **Parse fast path** — {PARSE}

With 2 and 3 the agent's CPU falls by about a third; with 1 that CPU hides behind the servers'
work, which is where the floor's wall time goes."""),
    "rescan": ("`push --full` rescan: reading and diffing costs more than reading", f"""\
Zero writes, as required, and the same server CPU: the extra time is client CPU: per record parse, text check, map,
fingerprint (`json.dumps(sort_keys=True)` + sha256 in `syncagent/model.py` `fingerprint`), and per
page one `IN (...)` lookup of 500 fingerprints and one commit. The floor only decodes JSON. The
same changes as for the initial push apply, in this order of gain:

1. {SURROGATES}
2. {PARSE}
3. **Read ahead** — `syncagent/engine.py` `Engine._push_feed`: fetch page k+1 (the HTTP GET
   only, not the parse) in a worker thread while page k is diffed, so the back office's time per
   page overlaps the agent's CPU.

In the profile below the text check (`_has_surrogates` and its generator) and the parse
(`parse_product` → `need`/`opt`/`_typed`) are together more than half of the run; JSON encoding
for the fingerprints is the next entry.

`--full` must keep re-mapping every record (it is how a mapping change after an upgrade is
pushed), so no page may be skipped here; the gain has to come from cheaper per-record work."""),
    "cycle": ("No-change cycle above 50 ms", f"""\
Per step (10k products, medians of 5): products 25 ms, prices 20 ms, stock 17 ms, customers
4.5 ms, each of the five small steps 2–2.5 ms. Where it goes:

* The contract ends a feed with a null `next_cursor`, so the last page of products, prices,
  stock (two warehouses) and customers — 1,536 records — is read, parsed, mapped, fingerprinted
  and diffed again every cycle, although nothing changed.
* `syncagent/engine.py` `Engine._stock.transform` sums each code's warehouses with
  `sum(... for (c, w), ... in merged.items() if c == code ...)`: O(codes × balances) per page,
  816 generator runs and ~21 ms per cycle (the largest own-time entry of the profile below). It
  also makes the full stock sync quadratic per page.
* The surrogate walk: ~25 ms per cycle.
* Each cycle rewrites the re-read page's 500 `stock_balances` rows and its `price_boundaries`
  (359 DELETE + 141 INSERT), although they did not change, and makes 37 `synchronous=FULL` commits:
  9 × `INSERT INTO runs`, 9 × `UPDATE runs`, 9 × `channel_state` (each an autocommit outside a
  transaction) and 10 page transactions.

Fixes, by gain:

1. `Engine._stock.transform`: one pass,
   `totals: dict[str, int] = {{}}` and `for (c, w), (a, r) in merged.items(): if w in warehouses:
   totals[c] = totals.get(c, 0) + a - r`, then `StockLevel(code, max(0, totals.get(code, 0) - safety))`
   (−21 ms per cycle; linear full stock sync).
2. {SURROGATES} (−25 ms per cycle.)
3. **Skip an unchanged last page** — `syncagent/model.py` `Page` gains `digest: str | None`
   (sha256 of the raw body, set in `GestaoLojasConnector.pull` from `resp.content`); the journal's
   `cursors` row keeps the digest of the page last read from that cursor (a migration adding a
   `tail_digest` column); `Engine._push_feed` (not with `--full`) counts a page whose digest and
   starting cursor equal the stored ones as unchanged and skips parse, map and diff. Safe: equal
   bytes give equal records, prices' promotion boundaries are driven by `due_prices`, not by the
   feed, and the page's stock balances are already recorded.
4. `syncagent/journal.py` `set_balances` and `set_price_boundaries`: add
   `WHERE available IS NOT excluded.available OR reserved IS NOT excluded.reserved` (and
   `WHERE next_at IS NOT excluded.next_at OR record IS NOT excluded.record`) to the upserts so
   unchanged rows are not rewritten.
5. `Engine.run_step`: write `set_channel_state` only when the state changes (cache it per channel
   in the engine) and put `finish_run` and the state in one transaction: 37 → 19 commits per cycle.

1 and 2 alone bring the cycle near 50 ms; 3 leaves it at the cost of ten small GETs and the
commits."""),
    "growth": ("No-change cycle cost growth above 1.25×", """\
The work of a no-change cycle does not depend on N: the same requests and the same records
re-read per cycle at both sizes (listed above), and the same number of Python function calls in
profiles of ten cycles at 10k and at 100k (2.53 M and 2.52 M). Every journal query of the cycle is
an indexed lookup (by key, by `(channel, state)` or by `(channel, next_at)`). A ratio above 1.25×
therefore comes from the load of the shared machine during the run (the cycles of both sizes are
measured in turn to limit that) and from larger SQLite files being less cached, not from a
scan. Fix the per-cycle cost (see the previous note) and the absolute difference shrinks with it."""),
    "orders": ("Order intake below 0.8× the floor's throughput", """\
Same calls (listed above), same server CPU; the agent also makes three `synchronous=FULL` journal
commits per order (`creating` before the POST, `created` before the ack, `acknowledged` after it):
3,000 fsyncs for 1,000 orders. An experiment with `PRAGMA synchronous=OFF` on the journal cut an
intake of 300 orders from 3.05 s to 2.12 s: the fsyncs are about 30 % of the agent's time.

Fix, `syncagent/engine.py`: keep the two commits the guarantees need and drop the third —
`_acknowledge` records `acknowledged` inside the next transaction the step opens (the next order's
`creating`, or the page's cursor transaction) instead of its own: if the process dies first the
order stays `created` and recovery acknowledges it again, which the channel accepts (an ack is
idempotent). Further: group the page's orders k at a time (one transaction marks k orders
`creating`, then k lookups and POSTs, one transaction marks them `created`, k acks) — 2–3 commits
per k orders with the same crash guarantees, because every `creating` order is looked up before
any new POST."""),
    "rss": ("Peak RSS above 64 MB or growing with N", """\
Measure with `tracemalloc` around `Agent.run_entity("products")` which allocations survive a
page; the push must hold one page (500 records) and its journal transaction at a time."""),
    "rate": ("Rate-limited channel below 95 % of the limit", """\
With `burst: 1` the token bucket (`syncagent/http.py` `RateLimiter`) cannot bank the time spent
between two requests on reading and preparing the next back office page, so each page costs one
interval. `burst: 2` (or reading the next page ahead, see the push note) recovers it."""),
    "startup": ("Start-up above 1.5× `import click`", """\
Use `python -X importtime -m syncagent --help` to find modules imported at start that `--help`
does not need, and import them inside the commands (`syncagent/cli.py` already does this for
the agent, the config and the reports)."""),
}
