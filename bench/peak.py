"""python -m bench.peak OUT (-m MODULE | -c CODE) [ARGS...]: run it, then write this process's VmHWM (kB) to OUT.

The peak resident set of a child cannot be taken from getrusage(): on Linux a child's ru_maxrss
starts at its parent's resident set at fork time. VmHWM belongs to the process's own address space,
so it is read by the process itself at exit (and polled by the parent as a check).
"""

from __future__ import annotations

import atexit
import runpy
import sys


def _report(out: str) -> None:
    with open("/proc/self/status", encoding="ascii") as fh:
        hwm = next((line.split()[1] for line in fh if line.startswith("VmHWM:")), "0")
    with open(out, "w", encoding="ascii") as fh:
        fh.write(hwm)


def main() -> None:
    out, mode, target, *args = sys.argv[1:]
    atexit.register(_report, out)
    if mode == "-m":
        sys.argv = [target, *args]
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    elif mode == "-c":
        sys.argv = ["-c", *args]
        exec(compile(target, "<string>", "exec"), {"__name__": "__main__"})  # noqa: S102 - the bench's own code
    else:
        raise SystemExit("usage: python -m bench.peak OUT (-m MODULE | -c CODE) [ARGS...]")


if __name__ == "__main__":
    main()
