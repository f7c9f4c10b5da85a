"""Shared helpers for the benchmarks: a clean, thread-pinned process, interleaved timing with
medians, Markdown tables with a target column, and the brief's model that the training
benchmarks run.

Every benchmark script starts with

    if __name__ == "__main__":
        ARGS = common.bootstrap(parser)   # may re-exec the process: call it before importing numpy

`bootstrap` parses the command line, then makes this process's environment the one the numbers
are quoted for: the same thread count for every library (OMP_NUM_THREADS, OPENBLAS/MKL/...;
`--threads`, default 1) and OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE removed (on some machines they
are set for other software and slow NumPy's OpenBLAS down; `--keep-env` keeps them). BLAS
libraries read these variables once, when loaded, so when they differ the script re-executes
itself with the cleaned environment before NumPy is imported. `pin_threads` then checks the
result through threadpoolctl and sets PyTorch to the same count; `header` prints what was used.
"""
from __future__ import annotations

import argparse
import datetime
import gc
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS", "BLIS_NUM_THREADS")
SLOW_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
_REEXEC_MARK = "_MINIGT_BENCH_REEXEC"  # set in the child: "VAR=old;VAR=old" of what was removed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")  # train_pixel.py and the models it trains
# The brief's Pixel Transformer and its training settings (float32, MSE on one-hot, SGD)
MODEL = dict(img=200, seq=4, dim=256, heads=4, layers=4, ff=1024)
SEED, LR = 0, 0.01

_limits = None  # the threadpoolctl limiter, kept alive for the whole run
_machine = None  # machine()'s line, set by header() and printed under every table


# ---- process set-up --------------------------------------------------------------------------
def base_parser(description: str | None) -> argparse.ArgumentParser:
    """The options every benchmark takes (run_all.py passes its own command line through)."""
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1,
                   help="threads for every library: BLAS, OpenMP, PyTorch (default 1)")
    p.add_argument("--quick", action="store_true", help="fewer repeats (a smoke test, noisier)")
    p.add_argument("--no-torch", action="store_true", help="leave PyTorch out even if installed")
    p.add_argument("--keep-env", action="store_true",
                   help="keep OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE if set (default: unset them)")
    p.add_argument("--strict", action="store_true", help="exit with status 2 when a target is missed")
    return p


def bootstrap(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Parse sys.argv and make sure the environment is the benchmark's; re-exec if it is not."""
    args = parser.parse_args()
    if args.threads < 1:
        parser.error("--threads must be at least 1")
    wanted = dict(os.environ)
    removed = []
    for var in THREAD_VARS:
        wanted[var] = str(args.threads)
    if not args.keep_env:
        for var in SLOW_VARS:
            if var in wanted:
                removed.append(f"{var}={wanted.pop(var)}")
    if wanted != dict(os.environ):
        if _REEXEC_MARK in os.environ:  # the re-exec did not take: report it, do not loop
            raise RuntimeError("benchmark environment could not be set by re-executing")
        wanted[_REEXEC_MARK] = ";".join(removed)
        sys.stdout.flush()
        command = list(getattr(sys, "orig_argv", [])) or [sys.executable, *sys.argv]
        os.execve(sys.executable, [sys.executable, *command[1:]], wanted)
    args.env_removed = os.environ.get(_REEXEC_MARK, "")
    return args


def load_torch(args):
    """PyTorch, or None when it is not installed or `--no-torch` was given."""
    if args.no_torch:
        return None
    try:
        import torch
    except ImportError:
        return None
    return torch


def pin_threads(threads: int, torch=None) -> list:
    """Limit every thread pool to `threads` and check it took; returns threadpoolctl's report."""
    global _limits
    from threadpoolctl import threadpool_info, threadpool_limits

    if torch is not None:
        torch.set_num_threads(threads)
    _limits = threadpool_limits(limits=threads)
    info = threadpool_info()
    wrong = [f"{p['prefix']}={p['num_threads']}" for p in info if p["num_threads"] != threads]
    if torch is not None and torch.get_num_threads() != threads:
        wrong.append(f"torch={torch.get_num_threads()}")
    if wrong:
        raise RuntimeError(f"thread pools not at {threads}: {', '.join(wrong)}")
    return info


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, with its family and model numbers and its widest
    vector unit (a VM's model name can be as vague as 'AMD EPYC', which has named CPUs of twice
    each other's speed per core here), and the CPU count."""
    name, numbers, flags = platform.processor() or platform.machine(), {}, set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and not flags:
                    name = value.strip()
                elif key in ("cpu family", "model") and key not in numbers:
                    numbers[key] = value.strip()
                elif key == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    details = [f"{key} {value}" for key, value in numbers.items()]
    details += [next((label for flag, label in (("avx512f", "AVX-512"), ("avx2", "AVX2"),
                                                ("asimd", "NEON")) if flag in flags), "")]
    details = ", ".join(filter(None, details))
    return f"{name}{f' ({details})' if details else ''}, {os.cpu_count()} CPUs"


def blas(pools: list) -> str:
    """The BLAS libraries and the kernels they picked, from threadpoolctl's report."""
    found = [" ".join(filter(None, (p["internal_api"], p.get("version"), p.get("architecture"))))
             for p in pools if p.get("user_api") == "blas"]
    return ", ".join(found) or "BLAS not reported (threadpoolctl saw none)"


def torch_blas(torch) -> str:
    """PyTorch's matmul library and the vector unit its kernels use."""
    library = "MKL" if torch.backends.mkl.is_available() else "its own BLAS"
    return f"{library}, {torch.backends.cpu.get_cpu_capability()} kernels"


def machine(threads: int, torch=None) -> str:
    """One line naming what a table was measured on: CPU, BLAS and kernel, threads, date, and
    the load when other processes compete for the CPUs. `header` sets the line every table
    then repeats under its title."""
    global _machine
    import numpy  # noqa: F401  (loads NumPy's BLAS, so that threadpoolctl can report it)
    from threadpoolctl import threadpool_info

    line = (f"{cpu_model()} | NumPy BLAS: {blas(threadpool_info())}"
            f"{f' | PyTorch: {torch_blas(torch)}' if torch is not None else ''} | "
            f"{threads} thread{'s' if threads != 1 else ''} | {datetime.date.today()}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if load + threads > (os.cpu_count() or 1) + 0.5:
        line += f" | NOT QUIET: load average {load:.1f}"
    _machine = line
    return line


def header(args, torch=None, pools=None) -> str:
    """Machine, versions, BLAS and threads, as a few Markdown-friendly lines."""
    import numpy as np

    lines = [
        machine(args.threads, torch),
        f"date {datetime.datetime.now().isoformat(timespec='seconds')} | "
        f"Python {platform.python_version()} | numpy {np.__version__} | "
        f"torch {torch.__version__ if torch else 'not used'} | "
        f"threads={args.threads} (OMP/OPENBLAS/MKL_NUM_THREADS, torch.set_num_threads)",
    ]
    for p in pools or []:
        extra = f" {p['architecture']}" if p.get("architecture") else ""
        version = f" {p['version']}" if p.get("version") else ""
        lines.append(f"threadpoolctl: {p['internal_api']}{version}{extra} "
                     f"num_threads={p['num_threads']} ({os.path.basename(p['filepath'])})")
    if torch is not None:
        lines.append(f"torch: {torch_blas(torch)}, get_num_threads={torch.get_num_threads()}")
    removed = getattr(args, "env_removed", "")
    kept = [f"{v}={os.environ[v]}" for v in SLOW_VARS if v in os.environ]
    lines.append("env: " + (f"unset {removed.replace(';', ', ')} (re-exec)" if removed else
                            f"kept {', '.join(kept)}" if kept else
                            "OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE not set"))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    lines.append(f"load average (1 min) at start: {load:.2f}")
    if load + args.threads > (os.cpu_count() or 1) + 0.5:
        lines.append(f"WARNING: other processes keep ~{load:.1f} CPUs busy and {args.threads} "
                     f"thread(s) were asked for on {os.cpu_count()} CPUs: timings will be noisy")
    return "\n".join(f"    {line}" for line in lines)


# ---- timing ----------------------------------------------------------------------------------
@dataclass
class Stats:
    """Seconds per call: median and quartiles over `n` timed calls."""

    median: float
    q1: float
    q3: float
    n: int

    @property
    def spread(self) -> float:
        """Half the interquartile range, relative to the median."""
        return (self.q3 - self.q1) / 2 / self.median if self.median else 0.0


def _stats(samples: list) -> Stats:
    if len(samples) < 4:
        m = statistics.median(samples)
        return Stats(m, min(samples), max(samples), len(samples))
    q1, q2, q3 = statistics.quantiles(samples, n=4)
    return Stats(q2, q1, q3, len(samples))


def stats_of(samples: list) -> Stats:
    """Median and quartiles of samples timed elsewhere (e.g. by a worker process)."""
    return _stats(list(samples))


def median_time(fn, repeat: int = 30, warmup: int = 3) -> Stats:
    """Time `fn()` `repeat` times (after `warmup` untimed calls) with perf_counter."""
    return compare({"fn": fn}, repeat, warmup)["fn"]


def compare(fns: dict, repeat: int = 30, warmup: int = 3) -> dict:
    """Time several callables interleaved, one call of each per round, rotating the order, so
    that drift and noise on a shared machine hit them all alike. Returns {name: Stats}.

    The garbage collector stays on (users pay for it); a collection runs before the rounds.
    """
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    gc.collect()
    samples = {name: [] for name in names}
    clock = time.perf_counter
    for r in range(repeat):
        for name in names[r % len(names):] + names[:r % len(names)]:
            fn = fns[name]
            t0 = clock()
            fn()
            samples[name].append(clock() - t0)
    return {name: _stats(s) for name, s in samples.items()}


# ---- reporting -------------------------------------------------------------------------------
def fmt_time(stats: Stats | None, scale: float = 1e6, digits: int = 2) -> str:
    """'12.34 ±3%': the median in the given unit (µs by default) and half the IQR."""
    if stats is None:
        return "n/a"
    return f"{stats.median * scale:.{digits}f} ±{stats.spread * 100:.0f}%"


def ratio(a: Stats | None, b: Stats | None) -> float | None:
    """Ratio of medians, or None when either side was not measured."""
    if a is None or b is None or not b.median:
        return None
    return a.median / b.median


def fmt_ratio(r: float | None) -> str:
    return "n/a" if r is None else f"{r:.2f}×"


def verdict(r: float | None, target: float) -> str:
    if r is None:
        return "n/a"
    return "PASS" if r <= target else "MISS"


def table(rows: list, headers: list) -> str:
    """A plain Markdown table (numbers right-aligned, text left-aligned)."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    numeric = [i > 0 and all(_looks_numeric(r[i]) for r in cells)
               and any(r[i][:1].isdigit() for r in cells) for i in range(len(headers))]

    def line(values):
        padded = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if num else ("-" * (w + 2))
                          for w, num in zip(widths, numeric)) + "|"
    return "\n".join([line([str(h) for h in headers]), rule, *map(line, cells)])


def _threads() -> int:
    """The thread count bootstrap set (OMP_NUM_THREADS), for a table printed before header()."""
    return int(os.environ.get("OMP_NUM_THREADS", "1") or 1)


def _looks_numeric(text: str) -> bool:
    return text[:1].isdigit() or text in ("n/a", "—")


def print_table(title: str, rows: list, headers: list, note: str = "") -> None:
    """A titled table, its machine line (CPU, BLAS, threads, date) under the title."""
    print(f"\n### {title}\n\n{_machine or machine(_threads())}\n")
    print(table(rows, headers))
    if note:
        print(f"\n{note}")
    sys.stdout.flush()
