"""The benchmarks' reporting: every table names the machine it was measured on, and run_all
(`make bench`) ends with one PASS/MISS line per target and the run's time against its budget."""
from __future__ import annotations

import datetime
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import common  # noqa: E402
import run_all  # noqa: E402


def test_every_table_names_cpu_blas_kernel_threads_and_date(capsys, monkeypatch):
    monkeypatch.setattr(common, "_machine", None)
    from threadpoolctl import threadpool_info

    pools = [p for p in threadpool_info() if p["user_api"] == "blas"]
    common.machine(2)
    common.print_table("A", [["x", "1.00", "PASS"]], ["row", "ratio", "result"])
    common.print_table("B", [["y", "2.00", "MISS"]], ["row", "ratio", "result"])
    out = capsys.readouterr().out
    line = f"{common.blas(pools)} | 2 threads | {datetime.date.today()}"
    assert pools[0]["internal_api"] in line and pools[0].get("architecture", "") in line
    assert out.count(line) == 2, out  # under each table's title
    assert common.cpu_model().split(",")[0] in out
    assert f"{os.cpu_count()} CPUs" in out


def test_blas_names_library_version_and_kernel():
    pools = [{"user_api": "blas", "internal_api": "openblas", "version": "0.3.31",
              "architecture": "SkylakeX"}, {"user_api": "openmp", "internal_api": "openmp"}]
    assert common.blas(pools) == "openblas 0.3.31 SkylakeX"
    assert "not" in common.blas([])


def test_the_cpu_model_comes_from_proc_cpuinfo():
    if not os.path.exists("/proc/cpuinfo"):
        return
    with open("/proc/cpuinfo") as f:
        fields = [[part.strip() for part in line.split(":", 1)] for line in f if ":" in line]
    first = {}
    for key, value in fields:
        first.setdefault(key, value)
    model = common.cpu_model()
    assert model.startswith(first.get("model name", ""))
    for key in ("cpu family", "model"):  # a vague name ("AMD EPYC") covers different CPUs
        if key in first:
            assert f"{key} {first[key]}," in model, model


def test_verdicts_finds_each_target_in_printed_tables(capsys, monkeypatch):
    monkeypatch.setattr(common, "_machine", "a machine")
    common.print_table("Training", [["brief", "samples/s", "31.2", "1.05×", "≥ 1.00×", "PASS"],
                                    ["brief", "RSS growth", "+0.1%", "—", "≤ 2%",
                                     "PASS (quick: < 200 steps)"],
                                    ["batch16", "samples/s", "120.0", "0.95×", "≥ 1×", "MISS"],
                                    ["batch16", "CPU time", "1.0", "0.9×", "(info)", "miss"]],
                       ["config", "metric", "minigt", "ratio", "target", "result"])
    common.print_table("8 ranks", [["float32", "fsdp", "9.0×", "MISS", "0.30×", "PASS"]],
                       ["dtype", "mode", "ratio", "≤ 5×", "rss", "rss result"])
    found = run_all.verdicts(capsys.readouterr().out + "\n| not | a table row PASS |\n")
    assert found == [
        ("Training", "brief samples/s", "result", "PASS"),
        ("Training", "brief RSS growth", "result", "PASS"),
        ("Training", "batch16 samples/s", "result", "MISS"),
        ("8 ranks", "float32 fsdp", "≤ 5×", "MISS"),
        ("8 ranks", "float32 fsdp", "rss result", "PASS"),
    ]


def test_summary_counts_verdicts_and_judges_the_run_time():
    results = {"bench_a.py": [("T", "r1", "result", "PASS"), ("T", "r2", "result", "MISS")],
               "bench_b.py": [("U", "r3", "result", "PASS")]}
    text = run_all.summary(results, 301, 300)
    assert "| bench_a.py | T | r2 | result | MISS |" in text
    assert text.rstrip().endswith("2 PASS, 1 MISS; whole run 301 s (budget 300 s: MISS)")
    assert "budget" not in run_all.summary(results, 301, None)


def test_bench_distributed_sees_every_collective_minigt_calls():
    """Its recorder wraps collectives by name: a collective minigt calls that it does not wrap
    goes uncounted (the gathered gradient rows once did). all_reduce_number calls all_reduce."""
    import re

    import dist_worker

    called = set()
    for folder in ("minigt", "examples"):
        for path, _, files in os.walk(os.path.join(ROOT, folder)):
            for name in files:
                if name.endswith(".py"):
                    with open(os.path.join(path, name)) as f:
                        called |= set(re.findall(r"collectives\.(\w+)\(", f.read()))
    assert called - {"all_reduce_number"} <= set(dist_worker.WRAPPED)
