"""What every benchmark shares: simulators in their own processes, configs, timing, CPU, RSS, results.

Simulators run as separate processes on 127.0.0.1 so that their CPU (utime + stime from
/proc/<pid>/stat) is measured apart from the client's. Back office databases are seeded once per
size and copied for each benchmark; a Seller Up simulator is started fresh wherever a run must
find an empty channel.
"""

from __future__ import annotations

import cProfile
import gc
import hashlib
import io
import os
import pstats
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from syncagent.simulators import seeddata

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")
CLIENT_ID = seeddata.DEMO_CLIENT_ID
CLIENT_SECRET = seeddata.DEMO_CLIENT_SECRET
API_KEY = seeddata.DEMO_API_KEY
ENV = {"GL_CLIENT_ID": CLIENT_ID, "GL_CLIENT_SECRET": CLIENT_SECRET, "SELLERUP_KEY": API_KEY}
ALL_FLOWS = ("orders", "order-events", "groups", "payment-methods", "sellers", "products", "prices", "stock",
             "customers")


def proc_cpu(pid: int) -> float:
    """utime + stime of a live process, in seconds."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def vm_hwm_kb(pid: int) -> int:
    """Peak resident set (VmHWM) of a live process, in kB; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass
class Sim:
    """One simulator process."""

    system: str
    proc: subprocess.Popen[bytes]
    url: str
    db: Path
    http: requests.Session = field(default_factory=requests.Session)
    seen: int = 0

    def cpu(self) -> float:
        return proc_cpu(self.proc.pid)

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        resp = self.http.request(method, self.url + path, json=body, timeout=600)
        if resp.status_code >= 400:
            raise RuntimeError(f"{self.system} {method} {path}: {resp.status_code} {resp.text[:300]}")
        return resp.json() if resp.content else None

    def requests_log(self, after: int = 0) -> list[dict[str, Any]]:
        """Requests received after id `after`, the admin calls left out."""
        items = self.admin("GET", f"/_admin/requests?after={after}")["items"]
        return [r for r in items if not r["path"].startswith("/_admin")]

    def last_id(self) -> int:
        """The id of the last request logged so far (admin calls included): a mark to read the log from."""
        items = self.admin("GET", f"/_admin/requests?after={self.seen}")["items"]
        if items:
            self.seen = items[-1]["id"]
        return self.seen

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # the simulator closes its server and database cleanly
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.http.close()


def start_sim(system: str, db: Path, products: int, *sets: str) -> Sim:
    """`python -m syncagent.simulators SYSTEM --port 0 ...` on 127.0.0.1; returns once it answers."""
    port_file = db.with_suffix(".port")
    port_file.unlink(missing_ok=True)
    cmd = [PY, "-m", "syncagent.simulators", system, "--port", "0", "--port-file", str(port_file), "--db", str(db),
           "--products", str(products), "--no-log-bodies"]
    for item in sets:
        cmd += ["--set", item]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL)  # noqa: S603 - our own module
    deadline = time.monotonic() + 900
    while not port_file.exists() or not port_file.read_text().strip():
        if proc.poll() is not None:
            raise RuntimeError(f"{system} simulator exited with {proc.returncode}")
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"{system} simulator did not start")
        time.sleep(0.02)
    sim = Sim(system, proc, f"http://127.0.0.1:{port_file.read_text().strip()}", db)
    sim.admin("GET", "/_admin/health")
    return sim


_TEMPLATES: dict[tuple[str, int], Path] = {}
SEED_SECONDS: dict[int, float] = {}  # products → seconds the back office simulator took to seed them


def _simulator_version() -> str:
    """A digest of the simulators' code: a database seeded by other code is seeded again."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "syncagent" / "simulators").glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def backoffice_db(workdir: Path, products: int, name: str) -> Path:
    """A copy of a back office database seeded with `products` (seeded once per size and run)."""
    key = (_simulator_version(), products)
    if key not in _TEMPLATES:
        template = workdir / f"template-bo-{products}-{key[0]}.db"
        t0 = time.monotonic()
        # seeded in a child so this process stays lean; the checkpoint leaves one self-contained file
        code = ("import sys; from syncagent.simulators import build; "
                "app = build('gestao-lojas', sys.argv[1], products=int(sys.argv[2])); "
                "app.db.execute('PRAGMA wal_checkpoint(TRUNCATE)'); app.db.close()")
        subprocess.run([PY, "-c", code, str(template), str(products)], cwd=ROOT, check=True)  # noqa: S603
        SEED_SECONDS[products] = time.monotonic() - t0
        print(f"  (seeded a back office of {products:,} products in {SEED_SECONDS[products]:.0f} s)", flush=True)
        _TEMPLATES[key] = template
    target = workdir / f"{name}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(str(target) + suffix).unlink(missing_ok=True)
    shutil.copyfile(_TEMPLATES[key], target)
    return target


def fresh_db(workdir: Path, name: str) -> Path:
    """A path where no database exists yet."""
    path = workdir / f"{name}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    return path


# -- config -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Channel:
    name: str
    url: str
    flows: Sequence[str] = ALL_FLOWS
    batch_size: int = 500
    rate_limit: float | None = None


def write_config(path: Path, journal: Path, backoffice: str, channels: Iterable[Channel]) -> Path:
    lines = [
        f"journal: {journal}",
        "log: {level: error, format: text}",
        "backoffice:",
        "  type: gestao-lojas",
        f"  base_url: {backoffice}",
        "  client_id: ${GL_CLIENT_ID}",
        "  client_secret: ${GL_CLIENT_SECRET}",
        "defaults: {every: 1m, batch_size: 200}",
        "channels:",
    ]
    for ch in channels:
        lines += [
            f"  - name: {ch.name}",
            "    type: sellerup",
            f"    base_url: {ch.url}",
            "    api_key: ${SELLERUP_KEY}",
            "    warehouses: [CD01, LJ01]",
            "    order_warehouse: LJ01",
            f"    batch_size: {ch.batch_size}",
        ]
        if ch.rate_limit is not None:
            lines.append(f"    rate_limit: {{per_second: {ch.rate_limit}, burst: 1}}")
        lines.append("    flows:")
        lines += [f"      {f}: {{direction: both}}" if f == "customers" else f"      {f}: {{}}" for f in ch.flows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def load_agent(config: Path) -> Any:
    from syncagent.agent import Agent
    from syncagent.config import load_config

    os.environ.update(ENV)
    return Agent(load_config(config))


# -- measuring ----------------------------------------------------------------------------------------
@dataclass
class Sample:
    wall: float
    cpu: float  # this process (the client)
    server: float  # the simulators
    value: Any = None


def measure(fn: Callable[[], Any], sims: Sequence[Sim]) -> Sample:
    """Run `fn` once: wall time, this process's CPU and the simulators' CPU over the call."""
    gc.collect()
    s0 = sum(s.cpu() for s in sims)
    c0 = time.process_time()
    t0 = time.perf_counter()
    value = fn()
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    return Sample(wall, cpu, sum(s.cpu() for s in sims) - s0, value)


def med(samples: Sequence[Sample], attr: str = "wall") -> float:
    return statistics.median(getattr(s, attr) for s in samples)


@dataclass
class ChildRun:
    wall: float
    peak_rss_mb: float
    returncode: int
    stdout: str


def run_child(cmd: Sequence[str], *, cwd: Path = ROOT, poll: float = 0.01, peak: bool = False) -> ChildRun:
    """Run a command as a child: wall time, and with `peak` its peak RSS.

    `cmd` is then [python, -m MODULE | -c CODE, args...]; it runs under `bench.peak`, which writes the
    process's own VmHWM at exit; VmHWM is also polled while it runs, and the larger figure is kept.
    """
    env = {**os.environ, **ENV, "PYTHONPATH": str(ROOT)}
    report = Path(tempfile.mkstemp(prefix="bench-peak-")[1])
    if peak:
        cmd = [cmd[0], "-m", "bench.peak", str(report), *cmd[1:]]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # noqa: S603
    hwm = 0
    if peak:
        while proc.poll() is None:
            hwm = max(hwm, vm_hwm_kb(proc.pid))
            time.sleep(poll)
    out, _ = proc.communicate()
    wall = time.perf_counter() - t0
    text = report.read_text().strip() if peak else ""
    report.unlink(missing_ok=True)
    hwm = max(hwm, int(text or 0))
    return ChildRun(wall, hwm / 1024, proc.returncode, out.decode("utf-8", "replace"))


def profile_top(fn: Callable[[], Any], limit: int = 15) -> str:
    """cProfile of one call: the entries with the most own time, then the most cumulative time.

    Threads started during the call (the agent reads ahead and sends in helper threads) are
    profiled too and merged in, so own times add up across threads and may exceed the wall time.
    """
    profiles = [cProfile.Profile()]
    original_run = threading.Thread.run

    def run(thread: threading.Thread) -> None:
        prof = cProfile.Profile()
        profiles.append(prof)
        prof.enable()
        try:
            original_run(thread)
        finally:
            prof.disable()

    threading.Thread.run = run  # type: ignore[method-assign]
    try:
        profiles[0].enable()
        fn()
        profiles[0].disable()
    finally:
        threading.Thread.run = original_run  # type: ignore[method-assign]
    text = io.StringIO()
    stats = pstats.Stats(profiles[0], stream=text)
    for prof in profiles[1:]:
        stats.add(prof)
    stats.strip_dirs()
    stats.sort_stats("tottime").print_stats(limit)
    stats.sort_stats("cumulative").print_stats(limit)
    lines = [line.rstrip() for line in text.getvalue().splitlines()]
    keep = [line for line in lines if line and not line.startswith(("Ordered by", "   List reduced"))]
    return "\n".join(keep)


def journal_rows(journal: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(journal)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


# -- results ------------------------------------------------------------------------------------------
@dataclass
class Row:
    benchmark: str
    n: str
    agent: str
    floor: str
    ratio: str
    goal: str
    met: bool
    server: str

    def cells(self) -> list[str]:
        return [self.benchmark, self.n, self.agent, self.floor, self.ratio, self.goal,
                "yes" if self.met else "**no**", self.server]


HEADER = ["benchmark", "N", "agent", "floor", "ratio", "goal", "met?", "server CPU"]


RSS_LIMIT_MB = 64.0  # the peak RSS a push may reach, at any size and channel count
RSS_FLAT = 1.10  # how much above its figure at the first size the peak may be at a larger one


def rss_row(what: str, n: int, peak_mb: float, first_mb: float, first_n: int, floor: str = "—") -> Row:
    """A peak RSS row, judged as every push's is: under the limit, and flat in the catalogue's size."""
    growth = peak_mb / first_mb
    return Row(what, f"{n:,}", f"{peak_mb:.1f} MB", floor, f"{growth:.2f}× the {first_n:,} figure",
               f"≤ {RSS_LIMIT_MB:.0f} MB, flat in N (≤ {RSS_FLAT:.2f}×)", peak_mb <= RSS_LIMIT_MB and growth <= RSS_FLAT,
               "—")


def table(rows: Sequence[Row]) -> str:
    out = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    out += ["| " + " | ".join(r.cells()) + " |" for r in rows]
    return "\n".join(out)


def secs(value: float) -> str:
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"


def replace_section(path: Path, name: str, body: str, preamble: str) -> None:
    """Write `body` between this section's markers in `path`, keeping the other sections as they are."""
    start, end = f"<!-- {name}: begin -->", f"<!-- {name}: end -->"
    text = path.read_text(encoding="utf-8") if path.exists() else preamble
    block = f"{start}\n{body.rstrip()}\n{end}"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text, encoding="utf-8")
