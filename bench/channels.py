"""Benchmarks of one back office read feeding several channels (issue "orders in seconds", part B).

Five Seller Up channels against one against the same back office, in one run (turns alternate):
the initial push, the peak RSS of the `syncagent push` process, and the no-change cycle.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable, Sequence
from typing import Any

from bench.common import (
    PY,
    Channel,
    Row,
    Sample,
    backoffice_db,
    fresh_db,
    load_agent,
    measure,
    med,
    profile_top,
    rss_row,
    run_child,
    secs,
    start_sim,
    write_config,
)

CHANNELS = 5


def _cell(samples: list[Sample]) -> str:
    return f"{secs(med(samples))} (CPU {secs(med(samples, 'cpu'))})"


def push_to_five(b: Any, n: int, reps: int) -> None:
    """The initial push of `n` products to five channels against the same push to one, turns alternating."""
    w = b.workdir
    bo = start_sim("gestao-lojas", backoffice_db(w, n, f"bo-five-{n}"), n)
    reads: dict[str, int] = {}

    def run(tag: str, count: int) -> Sample:
        sims = [start_sim("sellerup", fresh_db(w, f"su-five-{tag}-{i}"), n, "orders=0") for i in range(count)]
        channels = [Channel(f"loja-{i}", sim.url, ("products",)) for i, sim in enumerate(sims)]
        agent = load_agent(write_config(w / f"five-{tag}.yaml", fresh_db(w, f"journal-five-{tag}"), bo.url, channels))
        mark = bo.last_id()
        try:
            s = measure(lambda: agent.run_entity("products"), [bo, *sims])
        finally:
            agent.close()
        bad = [r for r in s.value if not (r.ok and r.sent == n)]
        assert not bad, f"push to {count} channel(s): {bad}"
        reads[f"{count}"] = sum(1 for r in bo.requests_log(mark) if r["method"] == "GET" and r["path"] == "/products")
        for sim in sims:
            sim.stop()
        return s

    one: list[Sample] = []
    five: list[Sample] = []
    for rep in range(reps):
        order: list[tuple[int, list[Sample]]] = [(1, one), (CHANNELS, five)]
        for count, out in order if rep % 2 == 0 else order[::-1]:
            out.append(run(f"{count}-{rep}", count))
    ratio = med(five) / med(one)
    again = reads[str(CHANNELS)] - reads["1"]
    b.fact(f"initial push of {n:,} to {CHANNELS} channels: the back office's product feed was read in "
           f"{reads[str(CHANNELS)]} GETs (one channel: {reads['1']}): "
           + ("each page once, handed to every channel" if again <= 0 else
              f"each page once for every channel but {again} pages read again by a channel that fell out of the "
              "shared window (bounded: memory stays flat)"))

    cores = len(os.sched_getaffinity(0))
    floor = (med(five, "cpu") + med(five, "server")) / cores / med(one)
    b.fact(f"the five-channel push keeps {cores} cores busy: its CPU (agent {secs(med(five, 'cpu'))} + simulators "
           f"{secs(med(five, 'server'))}) over {cores} cores is already {floor:.2f}× the one-channel wall time, the "
           "least the ratio can be on this machine whatever the agent overlaps")

    def profile() -> str:
        sims = [start_sim("sellerup", fresh_db(w, f"su-five-prof-{i}"), n, "orders=0") for i in range(CHANNELS)]
        agent = load_agent(write_config(w / "five-prof.yaml", fresh_db(w, "journal-five-prof"), bo.url,
                                        [Channel(f"loja-{i}", s.url, ("products",)) for i, s in enumerate(sims)]))
        try:
            return profile_top(lambda: agent.run_entity("products"))
        finally:
            agent.close()
            for sim in sims:
                sim.stop()

    b.add("five", Row(f"initial push of products to {CHANNELS} channels (one back office read)", f"{n:,}",
                      _cell(five), f"{_cell(one)} (1 channel)", f"{ratio:.2f}×", "≤ 1.5× one channel", ratio <= 1.5,
                      f"{CHANNELS} ch. {secs(med(five, 'server'))} / 1 ch. {secs(med(one, 'server'))}"), profile)
    bo.stop()


def peak_rss_five(b: Any, sizes: Sequence[int]) -> None:
    """Peak RSS of `syncagent push --entity products` to five channels (a process of its own) at each size,
    judged against the first: what the push holds is a few pages per channel, whatever the catalogue's size."""
    w = b.workdir
    first: float | None = None
    for n in sizes:
        bo = start_sim("gestao-lojas", backoffice_db(w, n, f"bo-five-{n}"), n)
        sims = [start_sim("sellerup", fresh_db(w, f"su-five-rss-{n}-{i}"), n, "orders=0") for i in range(CHANNELS)]
        cfg = write_config(w / f"five-rss-{n}.yaml", fresh_db(w, f"journal-five-rss-{n}"), bo.url,
                           [Channel(f"loja-{i}", s.url, ("products",)) for i, s in enumerate(sims)])
        run = run_child([PY, "-m", "syncagent", "-c", str(cfg), "push", "--entity", "products"], peak=True)
        assert run.returncode == 0, run.stdout[-2000:]
        for sim in sims:
            sim.stop()
        bo.stop()
        first = first or run.peak_rss_mb
        b.add("five-rss", rss_row(f"peak RSS, initial push to {CHANNELS} channels (`syncagent push` process)", n,
                                  run.peak_rss_mb, first, sizes[0]))


def no_change_five(b: Any, n: int, cycles: int) -> None:
    """After a full sync of every flow of five channels, `Agent.run_once()` with nothing changed."""
    w = b.workdir
    bo = start_sim("gestao-lojas", backoffice_db(w, n, f"bo-five-cycle-{n}"), n)
    sims = [start_sim("sellerup", fresh_db(w, f"su-five-cycle-{i}"), n) for i in range(CHANNELS)]
    agent = load_agent(write_config(w / "five-cycle.yaml", fresh_db(w, "journal-five-cycle"), bo.url,
                                    [Channel(f"loja-{i}", s.url) for i, s in enumerate(sims)]))
    try:
        full = measure(agent.run_once, [bo, *sims])
        bad = [r for r in full.value if not r.ok]
        assert not bad, bad
        b.fact(f"full sync of every flow of {CHANNELS} channels at {n:,} before their no-change cycles: "
               f"{secs(full.wall)}, {sum(r.sent for r in full.value):,} records sent")
        for _ in range(3):  # acknowledged orders and linked customers come round once more, then all is quiet
            agent.run_once()
        mark = bo.last_id()
        got = [measure(agent.run_once, [bo, *sims]) for _ in range(cycles)]
        resent = sum(r.sent for s in got for r in s.value)
        assert resent == 0, f"a no-change cycle of {CHANNELS} channels sent {resent}"
        bo_reads = len(bo.requests_log(mark)) / cycles
        read = statistics.median(sum(r.read for r in s.value) for s in got)
        b.fact(f"no-change cycle of {CHANNELS} channels at {n:,}: {bo_reads:.0f} back office requests per cycle "
               f"(each feed's last page read once for all {CHANNELS}), {read:.0f} records looked at; median "
               f"{secs(med(got))}, min {secs(min(s.wall for s in got))}, max {secs(max(s.wall for s in got))}")
        run_once: Callable[[], Any] = agent.run_once
        b.add("five-cycle", Row(f"no-change cycle, every flow of {CHANNELS} channels (`Agent.run_once()`)", f"{n:,}",
                                _cell(got), "—", "—", "≤ 60 ms", med(got) <= 0.060,
                                f"{secs(med(got, 'server'))} per cycle"), lambda: profile_top(run_once))
    finally:
        agent.close()
        for sim in sims:
            sim.stop()
        bo.stop()
