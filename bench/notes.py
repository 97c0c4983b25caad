"""Where the time goes when a goal is missed, and what would fix it: written from the profiles.

Each entry is printed in docs/benchmarks.md only while its benchmark misses its goal, followed by
the cProfile of one agent run taken in that same benchmark. Figures quoted here come from profiles
of these benchmarks at 10k-100k products; the profile printed under each note is the current one.
"""

from __future__ import annotations

DONE = """\
Done (in this order, each measured): the invalid-text check once per page from
the raw body (`parse_items(..., raw=)`); a direct type-test fast path in the back office parsers
(the `need`/`opt` chain only for unusual records); the next page read and parsed in a helper
thread (`Engine._read_ahead`); page k sent in a sender thread while page k+1 is mapped, page k
recorded before page k+1 is diffed (`Engine._push_feed`, `_map_page` / `_diff_page` /
`_send_page` / `_record_page`); no quarantine lookup or release when the entity has no open
quarantine row."""

CPU = """\
What is left is client CPU that no overlap can hide on this machine. It has 2 cores; the back
office and Seller Up simulators run on them too, and so do the agent's three threads (which
share one GIL). Per 500-product page, measured apart: JSON decode of the GET 2.2 ms, parse into
frozen dataclasses 2.8 ms (building a `Product` alone is ~3 µs), map 0.5 ms, canonical-JSON
sha256 `fingerprint` 3.0 ms, JSON encode of the PUT 1.2 ms, the Seller Up connector's result
handling ~1.5 ms, journal lookups and the page transaction ~2 ms; the HTTP stack (requests,
urllib3, tenacity) adds ~1 ms per call. The floor does only the decode, a dict per product and
the encode. Done since: the fingerprint's canonical encoder is built once (`syncagent/model.py`,
the same bytes, 6.8 → 4.1 µs per record; the figures above include it). Where the rest would
come from:

1. Not building model objects for records whose source did not change: keep a digest of each
   record's raw JSON beside its fingerprint and skip parse, map and fingerprint when it and the
   mapping inputs (DE/PARA, config) are unchanged. That is a journal migration and a new
   invalidation rule (prices also change with the clock), so it was not rushed in.
2. `syncagent/connectors/sellerup.py` `_upsert` / `_result` and `syncagent/http.py`: the per
   item result objects and the per-call retry machinery are the next entries of the profile.
3. orjson for the page decode was measured (2.2 → 0.9 ms per page) and left out: it turns
   integers beyond 64 bits into floats and refuses lone surrogates and NaN, so every such body
   would need the stdlib path again to keep the bad-record reasons, for ~3 % of the CPU."""

NOTES: dict[str, tuple[str, str]] = {
    "push": ("Initial push of products: agent slower than the floor", f"""\
The calls are the same (see above), and so is the server CPU; the difference is the client.

{DONE}

The work per record fell (the text check and the `need`/`opt` chain were a third of the CPU), and
the GET and parse of page k+2 and the PUT of page k now run while page k+1 is mapped, which took
the ratio from 1.94× to the figure above. The process's CPU did not fall with its work (5.1 s
here against 4.9 s before, on a machine where the floor's CPU also varies from 1.5 s to 2.1 s):
three threads share one GIL, and their hand-overs and switches cost CPU too; the agent's CPU is
still ~3× the floor's.

{CPU}

In the profile below (all threads merged, so own times add up across threads) lock and queue
waits are the threads waiting for each other and for the servers; the CPU entries are the
fingerprint's JSON encoding, the parse, the decode and the HTTP stack."""),
    "rescan": ("`push --full` rescan: reading and diffing costs more than reading", f"""\
Zero writes, as required, and the same server CPU: the extra time is client CPU.

{DONE}

A rescan sends nothing, so only the read ahead overlaps anything, and the back office answers a
GET of 500 products in ~3 ms: there is little server time to hide CPU behind. Per record the
agent still decodes, parses into a `Product`, maps, fingerprints and diffs (~15 µs), where the
floor only decodes (~4.5 µs); 1.5× the floor would leave ~2 µs for all but the decode.
`--full` must keep re-mapping every record (it is how a mapping change after an upgrade is
pushed), so no page may be skipped.

{CPU}"""),
    "cycle": ("No-change cycle above 50 ms", """\
Done: `Engine._stock.transform` sums each code's warehouses in one pass (it was
O(codes × balances) per page, ~21 ms per cycle); the text check is made once per page; the last
page of each feed, read again every cycle because the contract ends a feed with a null cursor,
is skipped when the sha256 of its body equals the digest kept with the cursor when it was last
recorded (journal migration 3, `cursors.tail_digest`; never with `--full`, a dry run or a shadow
channel; a record changed in place changes the digest and is sent), and the back office
connector, told that digest (filter `known_tail_digest`), does not even parse it; a one-page feed
starts no reader thread; unchanged stock balances, price boundaries and channel states are no
longer rewritten.

What is left per cycle: ten small GETs (~1 ms each of server time), the parse of the re-read
pages in the read-ahead thread, and the journal's `synchronous=FULL` commits: 9 × `INSERT INTO
runs` and 9 × `UPDATE runs` (autocommits in `Engine.run_step`, ~0.7 ms each here), and one page
transaction per feed to touch the cursor's age. Next step, in `Engine.run_step` (outside this
branch's functions): `finish_run` and the channel state in one transaction with the step's last
page."""),
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
any new POST.

Not done on branch `perf`: both need a flush point outside `_create_in_backoffice` and
`_acknowledge` (the next order's `creating` transaction is written in `_import_order`, the page's
cursor in `_orders`, and `_orders` counts orders still `created` as waiting at its end), and the
figure is dominated by the shared machine's noise (0.60–0.89× in past runs). The CPU per order is
already close to the floor's; the difference is the commits and their fsyncs."""),
    "rss": ("Peak RSS above 64 MB or growing with N", """\
Far below 64 MB, but no longer flat within 10 %: before branch `perf` the push peaked at 44.0 MB
(10k) and 44.8 MB (100k); with the read-ahead and sender threads it is ~48 MB and ~53 MB (1.09×
to 1.11× in three runs of `make bench` on this machine). What grew:

* The push holds up to three pages at once (sent, mapped, read ahead) instead of one; the reader
  already waits until its page is taken before reading the next (it held four before).
* The reader thread decodes each page into objects above pymalloc's 512-byte limit (the body
  bytes, each product's dict), which glibc serves from that thread's own malloc arena; freed
  memory there is fragmented and seldom given back, so its high-water mark creeps up over a long
  run. Measured: without the sender thread the figures are the same (47.7 / 52.9 MB), so it is
  the reader's arena; with `MALLOC_ARENA_MAX=1` in the environment the growth was 1.07×.

Fixes, by certainty: cap glibc's arenas at start-up (`mallopt(M_ARENA_MAX, 2)` through ctypes in
`syncagent/cli.py`, or `MALLOC_ARENA_MAX=2` in the service unit); or have the reader thread only
fetch the body and parse it in the step's thread (giving back part of the overlap); or
`malloc_trim(0)` after each recorded page (glibc only)."""),
    "rate": ("Rate-limited channel below 95 % of the limit", """\
With `burst: 1` the token bucket (`syncagent/http.py` `RateLimiter`) cannot bank the time spent
between two requests on reading and preparing the next back office page, so each page costs one
interval. `burst: 2` (or reading the next page ahead, see the push note) recovers it."""),
    "startup": ("Start-up above 1.5× `import click`", """\
Use `python -X importtime -m syncagent --help` to find modules imported at start that `--help`
does not need, and import them inside the commands (`syncagent/cli.py` already does this for
the agent, the config and the reports)."""),
}
