"""`python -m bench [STAGE|all] [ARGS...]`: benchmarks, not tests (STAGE: one of STAGES below).

Each stage is the module bench/<stage>.py, run in its own process (clean peak RSS) with ARGS passed on;
BENCH_SCALE=N adds `--scale N` when ARGS have no --scale/--scales. `all` runs every stage in flow order.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence

STAGES = ("extract", "transform", "load", "pipeline", "reconcile", "dlt", "curve", "dashboard")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen benchmark(s); the exit code of the first that fails, else 0."""
    args = list(sys.argv[1:] if argv is None else argv)
    which = args.pop(0) if args and not args[0].startswith("-") else "all"
    if which not in (*STAGES, "all"):
        print(f"usage: python -m bench [{'|'.join(STAGES)}|all] [ARGS...]; unknown {which!r}", file=sys.stderr)
        return 2
    if os.environ.get("BENCH_SCALE") and not any(a.split("=")[0] in ("--scale", "--scales") for a in args):
        args += ["--scale", os.environ["BENCH_SCALE"]]
    for stage in STAGES if which == "all" else (which,):
        print(f"== bench {stage} {' '.join(args)}", file=sys.stderr, flush=True)
        code = subprocess.run([sys.executable, "-m", f"bench.{stage}", *args], check=False).returncode
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
