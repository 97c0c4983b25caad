"""python -m syncagent.simulators gestao-lojas|sellerup --port 0 [--products N] [--seed S]"""

from __future__ import annotations

import argparse
import os
import tempfile

from syncagent.simulators import SIMULATORS, build
from syncagent.simulators.common import serve_forever


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m syncagent.simulators", description=__doc__)
    parser.add_argument("system", choices=sorted(SIMULATORS))
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed, see --port-file)")
    parser.add_argument("--port-file", help="write the chosen port to this file")
    parser.add_argument("--db", help="SQLite file backing the simulator (default: a new temporary file)")
    parser.add_argument("--products", type=int, default=200)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--no-log-bodies", action="store_true", help="do not keep request bodies in the log")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="simulator option (e.g. api_key=..., client_secret=..., orders=50)")
    args = parser.parse_args()
    db = args.db or os.path.join(tempfile.mkdtemp(prefix=f"sim-{args.system}-"), "sim.db")
    options = dict(item.split("=", 1) for item in args.set)
    app = build(args.system, db, products=args.products, seed=args.seed, log_bodies=not args.no_log_bodies, **options)
    serve_forever(app, args.port, args.port_file)


if __name__ == "__main__":
    main()
