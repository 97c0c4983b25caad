"""Every benchmark of issue "Fast and lean at retail scale"; results to docs/benchmarks.md.

    python -m bench            # make bench: 100k catalogue, under 15 minutes on 2 cores
    python -m bench --large    # make bench-large: the 1M runs

Agent and floor run alternately in one run (machines are noisy) and the medians are compared.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import channels, floors, inbound
from bench.common import (
    PY,
    ROOT,
    SEED_SECONDS,
    Channel,
    Row,
    Sample,
    Sim,
    backoffice_db,
    fresh_db,
    load_agent,
    measure,
    med,
    profile_top,
    replace_section,
    rss_row,
    run_child,
    secs,
    start_sim,
    table,
    write_config,
)
from bench.notes import HOW, NOTES

DOC = ROOT / "docs" / "benchmarks.md"
PREAMBLE = """# Benchmarks

Produced by the scripts in `bench/` (`make bench`, `make bench-large`); every figure below was
written by the command named above its table, on the machine it names. Simulators run as separate
processes on 127.0.0.1; *server CPU* is their utime + stime over the run (from /proc), the
client's own CPU is given in brackets beside its wall time. Agent and floor runs alternate and
the medians are compared. A *floor* is a plain script (one `requests.Session`, stdlib `json`)
making the very same HTTP calls as the agent: `bench/floors.py`.
"""


@dataclass
class Bench:
    workdir: Path
    large: bool
    reps: int
    rows: list[Row] = field(default_factory=list)
    facts: list[str] = field(default_factory=list)
    profiles: dict[str, str] = field(default_factory=dict)
    missed: list[str] = field(default_factory=list)
    load: list[float] = field(default_factory=lambda: [os.getloadavg()[0]])

    def add(self, key: str, row: Row, profile: Callable[[], str] | None = None) -> None:
        self.rows.append(row)
        mark = "met" if row.met else "MISSED"
        print(f"{row.benchmark} (N={row.n}): agent {row.agent}, floor {row.floor}, ratio {row.ratio}, "
              f"goal {row.goal}: {mark}; server CPU {row.server}", flush=True)
        if not row.met:
            self.missed.append(key)
            if profile is not None and key not in self.profiles and not self.large:
                self.profiles[key] = profile()

    def fact(self, text: str) -> None:
        self.facts.append(text)
        print(f"  {text}", flush=True)


def cell(samples: Sequence[Sample]) -> str:
    return f"{secs(med(samples))} (CPU {secs(med(samples, 'cpu'))})"


def calls(log: list[dict[str, Any]]) -> Counter[str]:
    return Counter(f"{r['method']} {r['path'] if not r['path'].startswith('/v1/orders/') else '/v1/orders/{id}/…'}"
                   + (f" {r['status']}" if r["status"] >= 400 else "") for r in log)


def per_order(log: list[dict[str, Any]]) -> Counter[str]:
    return Counter(f"{r['method']} {'/v1/orders/{id}/' + r['path'].rsplit('/', 1)[1] if r['path'].count('/') > 3 else r['path']}"
                   for r in log)


def alternate(reps: int, agent: Callable[[int], Sample], floor: Callable[[int], Sample],
              ) -> tuple[list[Sample], list[Sample]]:
    """Agent and floor in turns, the order swapped every repetition."""
    a: list[Sample] = []
    f: list[Sample] = []
    for rep in range(reps):
        if rep % 2 == 0:
            a.append(agent(rep))
            f.append(floor(rep))
        else:
            f.append(floor(rep))
            a.append(agent(rep))
    return a, f


# -- initial push, then the --full rescan ----------------------------------------------------------
def push_and_rescan(b: Bench, n: int, reps: int) -> None:
    w = b.workdir
    bo = start_sim("gestao-lojas", backoffice_db(w, n, f"bo-push-{n}"), n)
    kept: dict[str, Any] = {}
    seen: dict[str, Counter[str]] = {}

    def agent_run(rep: int) -> Sample:
        su = start_sim("sellerup", fresh_db(w, f"su-push-a{rep}"), n, "orders=0")
        journal = fresh_db(w, f"journal-push-{rep}")
        agent = load_agent(write_config(w / f"push-{rep}.yaml", journal, bo.url,
                                        [Channel("loja", su.url, ("products",))]))
        mark = bo.last_id()
        s = measure(lambda: agent.run_entity("products"), [bo, su])
        (result,) = s.value
        assert result.ok and result.sent == n, f"agent push: {result}"
        seen["agent"] = calls(bo.requests_log(mark)) + calls(su.requests_log())
        if "agent" in kept:
            kept["agent"].close()
            kept["su"].stop()
        kept.update(agent=agent, su=su, journal=journal)
        return s

    def floor_run(rep: int) -> Sample:
        su = start_sim("sellerup", fresh_db(w, f"su-push-f{rep}"), n, "orders=0")
        mark = bo.last_id()
        s = measure(lambda: floors.push_products(bo.url, su.url), [bo, su])
        assert s.value == n, f"floor push accepted {s.value}"
        seen["floor"] = calls(bo.requests_log(mark)) + calls(su.requests_log())
        su.stop()
        return s

    a, f = alternate(reps, agent_run, floor_run)
    if seen["agent"] != seen["floor"]:
        b.fact(f"initial push: the agent's calls {dict(seen['agent'])} differ from the floor's {dict(seen['floor'])}")
    else:
        b.fact(f"initial push of {n:,}: agent and floor made the same calls: "
               + ", ".join(f"{v} × {k}" for k, v in sorted(seen["agent"].items())))
    ratio = med(a) / med(f)

    def profile_push() -> str:
        su = start_sim("sellerup", fresh_db(w, "su-push-prof"), n, "orders=0")
        agent = load_agent(write_config(w / "push-prof.yaml", fresh_db(w, "journal-push-prof"), bo.url,
                                        [Channel("loja", su.url, ("products",))]))
        try:
            return profile_top(lambda: agent.run_entity("products"))
        finally:
            agent.close()
            su.stop()

    b.add("push", Row("initial push of products", f"{n:,}", cell(a), cell(f), f"{ratio:.2f}×", "≤ 1.0× floor",
                      ratio <= 1.0, f"agent {secs(med(a, 'server'))} / floor {secs(med(f, 'server'))}"), profile_push)

    # push --full of the same catalogue, unchanged: reads everything, writes nothing
    agent, su = kept["agent"], kept["su"]

    def rescan(rep: int) -> Sample:
        mark = su.last_id()
        s = measure(lambda: agent.run_entity("products", full=True), [bo, su])
        (result,) = s.value
        writes = [r for r in su.requests_log(mark) if r["method"] != "GET"]
        assert result.ok and result.sent == 0 and result.unchanged == n, f"rescan: {result}"
        assert not writes, f"rescan wrote {len(writes)} times"
        return s

    def read_floor(rep: int) -> Sample:
        s = measure(lambda: floors.read_products(bo.url), [bo])
        assert s.value == n
        return s

    a, f = alternate(reps, rescan, read_floor)
    b.fact(f"push --full of {n:,} unchanged products: 0 writes to the channel in {reps} runs "
           "(request log), every record counted unchanged")
    ratio = med(a) / med(f)
    b.add("rescan", Row("`push --full` rescan, unchanged", f"{n:,}", cell(a), cell(f) + " (read only)",
                        f"{ratio:.2f}×", "≤ 1.5× floor, 0 writes", ratio <= 1.5,
                        f"agent {secs(med(a, 'server'))} / floor {secs(med(f, 'server'))}"),
          lambda: profile_top(lambda: agent.run_entity("products", full=True)))
    agent.close()
    su.stop()
    bo.stop()


# -- peak RSS of the agent process -----------------------------------------------------------------
def peak_rss(b: Bench, sizes: Sequence[int], warmup: Sequence[int] = ()) -> None:
    """Peak RSS of `syncagent push` at each size, judged against the first of `sizes`.

    A push holds a few pages at once and its journal's page cache fills as the journal grows: below
    ~30k products that has not reached its steady state yet (5k 47.4, 10k 48.9, 30k 53.2, 60k 54.0,
    100k 54.3 MB, measured in one series here), so `warmup` sizes are reported, not judged.
    """
    w = b.workdir
    first: float | None = None
    for n in (*warmup, *sizes):
        bo = start_sim("gestao-lojas", backoffice_db(w, n, f"bo-rss-{n}"), n)
        su = start_sim("sellerup", fresh_db(w, f"su-rss-{n}"), n, "orders=0")
        cfg = write_config(w / f"rss-{n}.yaml", fresh_db(w, f"journal-rss-{n}"), bo.url,
                           [Channel("loja", su.url, ("products",))])
        run = run_child([PY, "-m", "syncagent", "-c", str(cfg), "push", "--entity", "products", "--channel", "loja"],
                        peak=True)
        assert run.returncode == 0, run.stdout[-2000:]
        su.stop()
        su = start_sim("sellerup", fresh_db(w, f"su-rss-floor-{n}"), n, "orders=0")
        code = f"from bench.floors import push_products; assert push_products({bo.url!r}, {su.url!r}) == {n}"
        floor = run_child([PY, "-c", code], peak=True)
        assert floor.returncode == 0, floor.stdout[-2000:]
        su.stop()
        bo.stop()
        if n in warmup and n not in sizes:
            b.fact(f"peak RSS of the initial push at {n:,} products (before the steady state, not judged): "
                   f"{run.peak_rss_mb:.1f} MB, the floor's {floor.peak_rss_mb:.1f} MB")
            continue
        first = first or run.peak_rss_mb
        b.add("rss", rss_row("peak RSS, initial push (`syncagent push` process)", n, run.peak_rss_mb, first, sizes[0],
                             f"{floor.peak_rss_mb:.1f} MB"))


# -- order intake ------------------------------------------------------------------------------------
def order_intake(b: Bench, catalogue: int, count: int, reps: int) -> None:
    w = b.workdir
    bo = start_sim("gestao-lojas", backoffice_db(w, catalogue, "bo-orders"), catalogue)
    generate = {"count": count, "status": "approved", "backoffice_customers": True}
    seen: dict[str, Counter[str]] = {}

    def channel(tag: str) -> Sim:
        su = start_sim("sellerup", fresh_db(w, f"su-orders-{tag}"), catalogue, "orders=0")
        su.admin("POST", "/_admin/orders/generate", generate)
        su.last_id()
        return su

    def agent_run(rep: int) -> Sample:
        su = channel(f"a{rep}")
        name = f"loja-a{rep}"
        cfg = write_config(w / f"orders-{rep}.yaml", fresh_db(w, f"journal-orders-{rep}"), bo.url,
                           [Channel(name, su.url, ("orders",))])
        agent = load_agent(cfg)
        mark = bo.last_id()
        s = measure(lambda: agent.run_entity("orders"), [bo, su])
        (result,) = s.value
        acks = su.admin("GET", "/_admin/acks")["items"]
        assert result.ok and result.sent == count and len({a["order_id"] for a in acks}) == count, result
        seen["agent"] = per_order(bo.requests_log(mark)) + per_order(su.requests_log())
        agent.close()
        su.stop()
        return s

    def floor_run(rep: int) -> Sample:
        su = channel(f"f{rep}")
        mark = bo.last_id()
        s = measure(lambda: floors.import_orders(bo.url, su.url, f"loja-f{rep}"), [bo, su])
        assert s.value == count
        seen["floor"] = per_order(bo.requests_log(mark)) + per_order(su.requests_log())
        su.stop()
        return s

    a, f = alternate(reps, agent_run, floor_run)
    for who in ("agent", "floor"):
        b.fact(f"order intake, {who}: " + ", ".join(f"{v} × {k}" for k, v in sorted(seen[who].items())))
    tput_a, tput_f = count / med(a), count / med(f)
    ratio = tput_a / tput_f

    def profile_orders() -> str:
        su = channel("prof")
        agent = load_agent(write_config(w / "orders-prof.yaml", fresh_db(w, "journal-orders-prof"), bo.url,
                                        [Channel("loja-prof", su.url, ("orders",))]))
        try:
            return profile_top(lambda: agent.run_entity("orders"))
        finally:
            agent.close()
            su.stop()

    b.add("orders", Row(f"order intake of {count:,} approved orders", f"{count:,}",
                        f"{tput_a:.0f} orders/s, {cell(a)}", f"{tput_f:.0f} orders/s, {cell(f)}",
                        f"{ratio:.2f}× throughput", "≥ 1.0× floor throughput", ratio >= 1.0,
                        f"agent {secs(med(a, 'server'))} / floor {secs(med(f, 'server'))}"), profile_orders)
    bo.stop()


# -- a rate-limited channel --------------------------------------------------------------------------
def rate_limited(b: Bench, catalogue: int, rate: float, batch: int) -> None:
    w = b.workdir
    bo = start_sim("gestao-lojas", backoffice_db(w, catalogue, "bo-rate"), catalogue)
    su = start_sim("sellerup", fresh_db(w, "su-rate"), catalogue, "orders=0")
    cfg = write_config(w / "rate.yaml", fresh_db(w, "journal-rate"), bo.url,
                       [Channel("loja", su.url, ("products",), batch_size=batch, rate_limit=rate)])
    agent = load_agent(cfg)
    s = measure(lambda: agent.run_entity("products"), [bo, su])
    agent.close()
    log = [r for r in su.requests_log()]
    su.stop()
    bo.stop()
    stamps = sorted(r["ts"] for r in log)
    sustained = (len(stamps) - 1) / (stamps[-1] - stamps[0])
    too_many = sum(1 for r in log if r["status"] == 429)
    busiest, j = 0, 0
    for i, t in enumerate(stamps):  # the most requests that fell in any one-second window
        while stamps[j] <= t - 1.0:
            j += 1
        busiest = max(busiest, i - j + 1)
    b.fact(f"rate limit {rate:g}/s, burst 1: {len(stamps)} requests to the channel in "
           f"{stamps[-1] - stamps[0]:.2f} s, at most {busiest} in any 1 s window, {too_many} answered 429")
    ratio = sustained / rate
    b.add("rate", Row(f"rate-limited channel ({rate:g}/s, burst 1, batches of {batch})", f"{catalogue:,}",
                      f"{sustained:.1f} req/s, {too_many} × 429", f"{rate:g} req/s (the limit)", f"{ratio:.3f}×",
                      "≥ 0.95× the limit, 0 × 429", ratio >= 0.95 and too_many == 0,
                      f"{secs(s.server)} over {secs(s.wall)}"))


# -- the no-change cycle ---------------------------------------------------------------------------
def no_change_cycles(b: Bench, sizes: Sequence[int], cycles: int) -> None:
    """After a full sync of every flow at each size, cycles of the sizes in turn (same machine conditions)."""
    w = b.workdir
    setups: dict[int, tuple[Any, Sim, Sim]] = {}
    samples: dict[int, list[Sample]] = {n: [] for n in sizes}
    marks: dict[int, tuple[int, int]] = {}
    try:
        for n in sizes:
            bo = start_sim("gestao-lojas", backoffice_db(w, n, f"bo-cycle-{n}"), n)
            su = start_sim("sellerup", fresh_db(w, f"su-cycle-{n}"), n)
            agent = load_agent(write_config(w / f"cycle-{n}.yaml", fresh_db(w, f"journal-cycle-{n}"), bo.url,
                                            [Channel("loja", su.url)]))
            setups[n] = (agent, bo, su)
            full = measure(agent.run_once, [bo, su])
            bad = [r for r in full.value if not r.ok]
            assert not bad, bad
            b.fact(f"full sync of every flow at {n:,} before the no-change cycles: {secs(full.wall)}, "
                   f"{sum(r.sent for r in full.value):,} records sent")
            for _ in range(3):  # acknowledged orders and linked customers come round once more, then all is quiet
                agent.run_once()
            marks[n] = (bo.last_id(), su.last_id())
        for _ in range(cycles):
            for n in sizes:
                agent, bo, su = setups[n]
                samples[n].append(measure(agent.run_once, [bo, su]))
        for n in sizes:
            agent, bo, su = setups[n]
            got = samples[n]
            resent = sum(r.sent for s in got for r in s.value)
            assert resent == 0, f"a no-change cycle sent {resent}"
            requests = (len(bo.requests_log(marks[n][0])) + len(su.requests_log(marks[n][1]))) / cycles
            read = statistics.median(sum(r.read for r in s.value) for s in got)
            b.fact(f"no-change cycle at {n:,}: {requests:.0f} requests and {read:.0f} records re-read per cycle "
                   f"(the last page of each feed: the contract ends a feed with a null cursor), 0 sent in {cycles} "
                   f"cycles; median {secs(med(got))}, min {secs(min(s.wall for s in got))}, "
                   f"max {secs(max(s.wall for s in got))}")
            b.add("cycle", Row("no-change cycle, every flow of one channel (`Agent.run_once()`)", f"{n:,}",
                               cell(got), "—", "—", "≤ 50 ms", med(got) <= 0.050,
                               f"{secs(med(got, 'server'))} per cycle"),
                  lambda agent=agent: profile_top(agent.run_once))
    finally:
        for agent, bo, su in setups.values():
            agent.close()
            su.stop()
            bo.stop()
    small, big = sizes[0], sizes[-1]
    growth = med(samples[big]) / med(samples[small])
    b.add("growth", Row(f"cost growth of the no-change cycle, {small:,} → {big:,} (cycles of both sizes in turn)",
                        f"{big:,}", secs(med(samples[big])), f"{secs(med(samples[small]))} at {small:,}",
                        f"{growth:.2f}×", "flat: ≤ 1.25×", growth <= 1.25, "—"))


# -- start-up ----------------------------------------------------------------------------------------
def startup(b: Bench, runs: int) -> None:
    script = Path(PY).with_name("syncagent")
    agent_cmd = [str(script), "--help"] if script.exists() else [PY, "-m", "syncagent", "--help"]
    floor_cmd = [PY, "-c", "import click"]
    a: list[float] = []
    f: list[float] = []
    for rep in range(runs):
        for cmd, out in ((agent_cmd, a), (floor_cmd, f)) if rep % 2 == 0 else ((floor_cmd, f), (agent_cmd, a)):
            run = run_child(cmd, poll=0.001)
            assert run.returncode == 0, run.stdout
            out.append(run.wall)
    shown = "syncagent" if script.exists() else "python -m syncagent"
    ratio = statistics.median(a) / statistics.median(f)
    b.add("startup", Row(f"start-up: `{shown} --help` vs `python -c \"import click\"` ({runs} runs each)", "—",
                         secs(statistics.median(a)), secs(statistics.median(f)), f"{ratio:.2f}×", "≤ 1.5×",
                         ratio <= 1.5, "—"))


# -- the report ------------------------------------------------------------------------------------
def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0))
    return f"{cpu}, {cores} cores, Python {platform.python_version()}, {platform.system()} {platform.release()}"


def report(b: Bench, command: str, elapsed: float) -> str:
    out = [f"## {'`make bench-large`' if b.large else '`make bench`'}", "",
           f"Command: `{command}` — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {elapsed / 60:.1f} min in all, "
           f"on {machine()}; 1-minute load average {b.load[0]:.1f} at the start and {os.getloadavg()[0]:.1f} at the "
           "end (the machine is shared, hence alternating runs and medians).", "", table(b.rows), ""]
    if b.facts:
        out += ["What the runs did:", ""] + [f"- {fact}" for fact in b.facts] + [""]
    if not b.large:
        out += [HOW]
    missed = list(dict.fromkeys(b.missed))
    if missed:
        out += ["### Goals missed: where the time goes and what would fix it", ""]
        for key in missed:
            title, text = NOTES.get(key, (key, "No analysis written yet."))
            out += [f"#### {title}", "", text.strip(), ""]
            if b.large:
                out += ["The profile of this benchmark is in the `make bench` section (the same code at 100k).", ""]
            elif key in b.profiles:
                out += ["cProfile of one agent run in this benchmark (top entries by own time, then cumulative):",
                        "", "```", b.profiles[key], "```", ""]
    else:
        out += ["Every goal met.", ""]
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--large", action="store_true", help="the 1M runs (make bench-large)")
    parser.add_argument("--reps", type=int, default=None, help="repetitions of each agent/floor pair")
    parser.add_argument("--quick", action="store_true", help="small sizes, to try the scripts (implies --no-write)")
    parser.add_argument("--no-write", action="store_true", help=f"print only; leave {DOC.relative_to(ROOT)} alone")
    parser.add_argument("--only", choices=("push", "rss", "orders", "rate", "cycle", "startup", "five",
                                                 "five-rss", "five-cycle", "hooks"), action="append",
                        help="run only these benchmarks (repeatable; implies --no-write)")
    args = parser.parse_args(argv)
    command = "make bench-large" if args.large else "make bench"
    if argv is None and sys.argv[1:] not in ([], ["--large"]):
        command = "python -m bench " + " ".join(sys.argv[1:])
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="syncagent-bench-"))
    b = Bench(workdir, args.large, args.reps or (2 if args.large else 5))
    try:
        if args.quick:
            push_and_rescan(b, 5000, 2)
            peak_rss(b, (2000, 5000))
            order_intake(b, 2000, 100, 2)
            rate_limited(b, 2000, 50, 20)
            no_change_cycles(b, (2000, 5000), 5)
            startup(b, 3)
            channels.push_to_five(b, 5000, 2)
            channels.peak_rss_five(b, (2000, 5000))
            channels.no_change_five(b, 5000, 5)
            inbound.notifications(b, 2000, 100, 25, 1000)
        elif args.only:
            n = 1_000_000 if args.large else 100_000
            runs: dict[str, Callable[[], None]] = {
                "push": lambda: push_and_rescan(b, n, b.reps),
                "rss": lambda: peak_rss(b, (100_000, n) if args.large else (30_000, n), warmup=(10_000,)),
                "orders": lambda: order_intake(b, 10_000, 1000, b.reps),
                "rate": lambda: rate_limited(b, 10_000, 50, 20),
                "cycle": lambda: no_change_cycles(b, (n // 10, n), 15),
                "startup": lambda: startup(b, 15),
                "five": lambda: channels.push_to_five(b, n, 3),
                "five-rss": lambda: channels.peak_rss_five(b, (30_000, n)),
                "five-cycle": lambda: channels.no_change_five(b, n, 15),
                "hooks": lambda: inbound.notifications(b, 10_000, 1000, 25, 10_000),
            }
            for name in args.only:
                runs[name]()
        elif args.large:
            push_and_rescan(b, 1_000_000, b.reps)
            peak_rss(b, (100_000, 1_000_000))
            no_change_cycles(b, (100_000, 1_000_000), 10)
        else:
            push_and_rescan(b, 100_000, b.reps)
            peak_rss(b, (30_000, 100_000), warmup=(10_000,))
            order_intake(b, 10_000, 1000, b.reps)
            rate_limited(b, 10_000, 50, 20)
            no_change_cycles(b, (10_000, 100_000), 15)
            startup(b, 15)
            channels.push_to_five(b, 100_000, 3)
            channels.peak_rss_five(b, (30_000, 100_000))
            channels.no_change_five(b, 100_000, 15)
            inbound.notifications(b, 10_000, 1000, 25, 10_000)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.monotonic() - started
    for products, seconds in sorted(SEED_SECONDS.items())[-1:]:  # the largest catalogue seeded in this run
        how = ("one transaction, the rows made by a worker process while the parent inserts them, the indexes "
               "(cursor columns included) built afterwards")
        if products >= 1_000_000:  # the figure: "bulk seeding at 1M in well under a minute"
            b.add("seed", Row("bulk seeding of the back office simulator (products, prices, stock, customers)",
                              f"{products:,}", secs(seconds), "—", "—", "well under a minute: ≤ 40 s",
                              seconds <= 40, "—"))
        b.fact(f"the back office simulator seeded {products:,} products (with prices, stock and customers) in "
               f"{seconds:.1f} s: {how}")
    text = report(b, command, elapsed)
    print(f"\n{table(b.rows)}\n\n{elapsed / 60:.1f} min; goals missed: {', '.join(dict.fromkeys(b.missed)) or 'none'}")
    if not (args.no_write or args.quick or args.only):
        replace_section(DOC, "bench-large" if args.large else "bench", text, PREAMBLE)
        print(f"results written to {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
