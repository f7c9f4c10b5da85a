"""Run every benchmarks/bench_*.py, one process each, passing this command line through, then
print one summary: every target's PASS or MISS, and the whole run's time against its budget.

    .venv/bin/python benchmarks/run_all.py [--threads N] [--quick] [--no-torch] [--strict] ...
    make bench          # --quick: the whole run in under 5 minutes on 2 cores

Each benchmark sets up its own environment (threads, OPENBLAS_CORETYPE; see common.py) and
prints Markdown tables; a table cell holding PASS or MISS is a target's verdict. Exits non-zero
when a benchmark fails (or, with --strict, misses a target).
"""
from __future__ import annotations

import glob
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BUDGET_S = 300  # `make bench` (--quick) on 2 cores
VERDICT = re.compile(r"\b(PASS|MISS)\b")
RULE = re.compile(r"^\|[\s:|-]+\|\s*$")  # a Markdown table's |---|--:| line


def verdicts(text: str) -> list:
    """(table title, row, column, PASS or MISS) for every verdict cell of the Markdown tables in
    `text`; a row is named by its first one or two cells that are words."""
    found, title, columns = [], "", []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("### "):
            title = line[4:].strip()
        if not line.startswith("|"):
            columns = []  # a table ends at the first line that is not a row
            continue
        if RULE.match(line):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if i + 1 < len(lines) and RULE.match(lines[i + 1]):
            columns = cells
            continue
        name = []
        for cell in cells[:2]:
            if not cell[:1].isalpha() or VERDICT.search(cell):
                break
            name.append(cell)
        for column, cell in zip(columns, cells):
            match = VERDICT.search(cell)
            if match:
                found.append((title, " ".join(name) or cells[0], column, match.group(1)))
    return found


def summary(results: dict, seconds: float, budget: float | None) -> str:
    """The closing table: one line per verdict, grouped by benchmark, and the run's time."""
    lines = ["", "## Summary: every target", "", "| benchmark | table | row | column | result |",
             "|---|---|---|---|---|"]
    for script, found in results.items():
        for title, row, column, verdict in found:
            lines.append(f"| {script} | {title} | {row} | {column} | {verdict} |")
    counts = [v for found in results.values() for *_, v in found]
    timing = f"whole run {seconds:.0f} s"
    if budget is not None:
        timing += f" (budget {budget:.0f} s: {'PASS' if seconds <= budget else 'MISS'})"
    lines += ["", f"{counts.count('PASS')} PASS, {counts.count('MISS')} MISS; {timing}"]
    return "\n".join(lines)


def run(script: str, argv: list) -> tuple:
    """Run one benchmark, echoing its output as it comes; (exit code, its standard output)."""
    child = subprocess.Popen([sys.executable, script, *argv], stdout=subprocess.PIPE, text=True)
    out = []
    for line in child.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        out.append(line)
    return child.wait(), "".join(out)


def main(argv: list) -> int:
    if "-h" in argv or "--help" in argv:
        print(__doc__)
        return 0
    scripts = sorted(glob.glob(os.path.join(HERE, "bench_*.py")))
    if not scripts:
        print(f"no bench_*.py in {HERE}")
        return 1
    failed, results, started = [], {}, time.perf_counter()
    for script in scripts:
        name = os.path.relpath(script)
        print(f"\n<!-- {name} {' '.join(argv)} -->", flush=True)
        start = time.perf_counter()
        code, out = run(script, argv)
        print(f"\n<!-- {name}: exit {code}, {time.perf_counter() - start:.0f} s -->", flush=True)
        results[os.path.basename(script)] = verdicts(out)
        if code:
            failed.append(f"{name} (exit {code})")
    print(summary(results, time.perf_counter() - started, BUDGET_S if "--quick" in argv else None))
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
        return 1 if any("exit 2)" not in f for f in failed) else 2
    print(f"\nall {len(scripts)} benchmark(s) ran")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
