"""Run every benchmarks/bench_*.py, one process each, passing this command line through.

    .venv/bin/python benchmarks/run_all.py [--threads N] [--quick] [--no-torch] [--strict] ...
    make bench

Each benchmark sets up its own environment (threads, OPENBLAS_CORETYPE; see common.py) and
prints Markdown tables. Exits non-zero when a benchmark fails (or, with --strict, misses a target).
"""
from __future__ import annotations

import glob
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv: list) -> int:
    if "-h" in argv or "--help" in argv:
        print(__doc__)
        return 0
    scripts = sorted(glob.glob(os.path.join(HERE, "bench_*.py")))
    if not scripts:
        print(f"no bench_*.py in {HERE}")
        return 1
    failed = []
    for script in scripts:
        name = os.path.relpath(script)
        print(f"\n<!-- {name} {' '.join(argv)} -->", flush=True)
        start = time.perf_counter()
        code = subprocess.call([sys.executable, script, *argv])
        print(f"\n<!-- {name}: exit {code}, {time.perf_counter() - start:.0f} s -->", flush=True)
        if code:
            failed.append(f"{name} (exit {code})")
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
        return 1 if any("exit 2)" not in f for f in failed) else 2
    print(f"\nall {len(scripts)} benchmark(s) ran")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
