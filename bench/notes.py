"""Where the time goes when a goal is missed, and what would fix it: written from the profiles.

Each entry is printed in docs/benchmarks.md only while its benchmark misses its goal, followed by
the cProfile of one agent run taken in that same benchmark. Figures quoted here come from profiles
of these benchmarks at 10k-100k products; the profile printed under each note is the current one.
"""

from __future__ import annotations

HOW = """\
### How the agent does more than the floor in less time

The floor makes its calls one after the other: it waits for the back office's page, then for the
channel's answer to its PUT, and does its own work in between. The agent does more work per
record (a model object, the mapping, a fingerprint, the journal) and hides it behind the servers:

- **A pipeline of pages** (`syncagent/engine/push.py` `PushPipeline._push_feed`, threads in `engine/executor.py`): one helper thread reads and
  parses page k+3 while the step's thread maps, fingerprints and diffs page k+2, and two sender
  threads have pages k and k+1 at the channel (`SEND_AHEAD`), so the channel always has the next
  batch waiting. Only the step's thread writes the journal, one transaction per page, in feed
  order; a page is diffed against the journal and the pages still in flight.
- **orjson where it answers as the stdlib does** (`syncagent/fastjson.py`): page decode, PUT body
  and the canonical bytes of the fingerprint (same bytes as before, so stored fingerprints stay
  valid); bodies orjson reads differently go to the stdlib.
- **Cheap per record**: direct type tests before the field-by-field checks in the back office
  parsers, the invalid-text check once per page on the raw body, one fingerprint query and one
  `executemany` per page, no quarantine lookups while an entity has nothing in quarantine.
- **A rescan that finds nothing does almost nothing**: a pass over a whole feed notes the sha256
  of each page it recorded whole (journal `page_digests`); `push --full` meets the same bytes
  under the same code, channel config and SKU map, and skips the page without decoding it. The
  floor of a rescan still decodes every page, so the agent reads the feed faster than the floor.
- **Quiet cycles**: the last page of each feed, re-read every cycle, is skipped by its digest;
  unchanged balances, boundaries and states are not rewritten.
"""

DONE = """\
Done: the pipeline, orjson and the per-record fast paths described above."""

CPU = """\
What is left is the order of the work on a 2-core machine shared by the agent and both
simulators: the agent's threads share one GIL, so a sender thread whose answer has arrived may
wait for the step's thread to let go of it before it can hand over the next batch."""

NOTES: dict[str, tuple[str, str]] = {
    "push": ("Initial push of products: agent slower than the floor", f"""\
The calls are the same (see above), and so is the server CPU; the difference is the client.

{DONE}

{CPU}

In the profile below (all threads merged, so own times add up across threads) lock and queue
waits are the threads waiting for each other and for the servers."""),
    "rescan": ("`push --full` rescan: reading and diffing costs more than reading", f"""\
Zero writes, as required. Pages recorded whole are skipped undecoded (above); a rescan that
misses the goal has met pages it had not recorded whole (a record in quarantine on them, a pass
cut short, a changed SKU map, config or version), which it maps again as it must.

{CPU}"""),
    "cycle": ("No-change cycle above 50 ms", """\
Done: `CatalogueFlows._stock` (`engine/catalogue.py` `stock_levels`) sums each code's warehouses in one pass (it was
O(codes × balances) per page, ~21 ms per cycle); the text check is made once per page; the last
page of each feed, read again every cycle because the contract ends a feed with a null cursor,
is skipped when the sha256 of its body equals the digest kept with the cursor when it was last
recorded (journal migration 3, `cursors.tail_digest`; never with `--full`, a dry run or a shadow
channel; a record changed in place changes the digest and is sent), and its records, which the
back office connector leaves to be parsed on first read, are not even parsed; a one-page feed
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
    "five": ("Initial push to five channels above 1.5× one channel", """\
The back office is read once (the request counts above: as many GETs of the product feed for five
channels as for one), so what remains is work that is per channel by nature, on two cores shared
by the agent and six simulator processes: five times the PUTs (each channel's simulator parses,
validates and stores every batch: its server CPU is in the row), five times the mapping,
fingerprints, journal lookups and journal rows (one `sent` row per product per channel), and the
decode of five times the PUT answers. One channel alone leaves a core idle for part of its run
(it waits on the back office and on its channel); five keep both cores busy, so the ratio is
bounded below by (agent CPU + server CPU of the five-channel run) / 2 cores / the one-channel
wall time (the facts above give it for this run; the simulators alone make it near 2×). The
steps run side by side (`syncagent/agent.py` `_side_by_side`, `syncagent/engine/shared.py`): each
gives its turn while it waits on its channel, so a slow or failing channel holds no one back.

What would lower it further: share the mapping and fingerprints among channels of one type with
the same mapping config (their payloads are byte for byte the same), and write one journal
transaction for the pages of all channels at the same cursor instead of one per channel; the
channel simulators' CPU stays, so on two cores the floor of the ratio stays well above 1.5×."""),
    "five-cycle": ("No-change cycle of five channels above 60 ms", """\
Each feed's last page is read once for the five channels (the shared reader); each channel still
looks its tail digest up and records its runs: about a fifth of the one-channel cycle per extra
channel. Look at the profile below for the journal's per-step writes (`start_run`, `finish_run`,
channel state)."""),
    "hooks": ("A notified order above 2 s at p99", """\
The notification is stored and answered in milliseconds; what follows is the orders step woken at
once (`syncagent/scheduler.py` `Daemon.wake`). A step already running when the notification comes
(a long catalogue push of another channel) gives way after its page in hand; a p99 above 2 s means
such pages take long: lower `batch_size` on the slow channel."""),
    "hooks-answer": ("Notification answers above 50 ms at p99", """\
An answer waits for its notification's journal commit (fsync). The writer commits what the 16
request threads hand it in one transaction; its `BEGIN IMMEDIATE` waits while the daemon commits a
page. A slow disk shows here first."""),
    "flood": ("A flood grew the daemon's memory or held the sync back", """\
The queue to the journal is bounded (1,000: past it 503 with Retry-After), the rate buckets and the
refusal log keep at most 4,096 sources; a flood of new notifications for one step wakes it once
per run. Growth would mean something kept per notification: look at `syncagent/inbound/server.py`."""),
    "orders": ("Order intake below the floor's throughput", """\
Same calls (listed above), same server CPU. The agent makes two `synchronous=FULL` journal commits
per order (`creating` before the POST, `created` before the ack); the third, `acknowledged`, commits
without an fsync of its own (`syncagent/engine/orders.py` `_acknowledge`): lost to a power cut, the
order is still `created` and is acknowledged again, which the channel takes as the same answer. An
experiment with `PRAGMA synchronous=OFF` cut an intake of 300 orders by about 30 %: the fsyncs are
most of what the agent adds. Further: group the page's orders k at a time (one transaction marks k
orders `creating`, then k lookups and POSTs, one transaction marks them `created`, k acks) — 2
commits per k orders with the same crash guarantees, because every `creating` order is looked up
before any new POST. The figure also moves with the shared machine's noise."""),
    "rss": ("Peak RSS above 64 MB or growing with N", """\
What a push holds at once: the page being read and parsed, the page being mapped, up to two pages
at the channel and one answered but not yet recorded; each page's records are dropped once it is
diffed and its payloads once it is sent (`Engine._push_feed`). glibc's malloc arenas are capped at
two (`syncagent/agent.py` `cap_malloc_arenas`), and the journal's page cache is SQLite's default
(2 MB). Growth past the steady state would mean something kept per record: look for it with
`tracemalloc` snapshots taken at two page counts."""),
    "rate": ("Rate-limited channel below 95 % of the limit", """\
With `burst: 1` the token bucket (`syncagent/http.py` `RateLimiter`) cannot bank the time spent
between two requests on reading and preparing the next back office page, so each page costs one
interval. `burst: 2` (or reading the next page ahead, see the push note) recovers it."""),
    "seed": ("Seeding 1M products in the back office simulator above 40 s", """\
`syncagent/simulators/gestao_lojas.py` seeds in one transaction with the indexes built afterwards;
each product draws all its fields from one blake2b digest (`seeddata`), its JSON comes from
templates, and from 50,000 records a worker process makes the rows while the parent inserts them.
At 300k the parent spends 4.4 s inserting, 2.7 s building the indexes and 4.0 s waiting for the
worker (cProfile): the worker making the rows is the longer side; a second worker only pays on a
machine with more than two cores."""),
    "startup": ("Start-up above 1.5× `import click`", """\
Use `python -X importtime -m syncagent --help` to find modules imported at start that `--help`
does not need, and import them inside the commands (`syncagent/cli.py` already does this for
the agent, the config and the reports)."""),
}
