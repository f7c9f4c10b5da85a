"""The tables of bench_distributed.py, made from its workers' JSON, and the targets they check.

GLOBAL_BATCH and STARTUP_RANKS live here too: the driver launches them, the tables quote them.
"""
from __future__ import annotations

import os
import statistics

import common

GLOBAL_BATCH = 16
STARTUP_RANKS = 8
STARTUP_TARGET_S = 1.8
SPEEDUP_TARGET = 1.7
RATIO_TARGET = 1.1
CALLS_TARGET = 4


def ms(seconds) -> str:
    return "n/a" if seconds is None else f"{seconds * 1e3:.1f}"


def med(values) -> float | None:
    values = list(values)
    return statistics.median(values) if values else None


def fmt_stats(samples, scale=1e3, digits=1) -> str:
    return common.fmt_time(common.stats_of(samples), scale, digits) if samples else "n/a"


def at_least(value, target) -> str:
    return "n/a" if value is None else ("PASS" if value >= target else "MISS")


def pooled(runs: list, key: str) -> list:
    return [s[key] for run in runs for s in run["steps"]]


def collective_seconds(step: dict, name: str = "all_reduce", field: str = "seconds") -> float:
    return sum(c[field] for c in step["calls"] if c["name"] == name)


def report_training(runs: dict, steps: int, warmup: int) -> list:
    n1, n2, half = runs["n1"], runs["n2"], runs["half"]
    t1, t2, th = pooled(n1, "total"), pooled(n2, "total"), pooled(half, "total")
    speedup = med(t1) / med(t2)
    bound = med(t1) / med(th)
    c1, c2, ch = pooled(n1, "cpu:total"), pooled(n2, "cpu:total"), pooled(half, "cpu:total")
    per_launch = [med(pooled([a], "total")) / med(pooled([b], "total")) for a, b in zip(n1, n2)]

    n2_steps = [s for run in n2 for s in run["steps"]]
    ar_calls = [sum(c["name"] == "all_reduce" for c in s["calls"]) for s in n2_steps]
    all_calls = [len(s["calls"]) for s in n2_steps]
    ar_bytes = [sum(c["bytes"] for c in s["calls"] if c["name"] == "all_reduce") for s in n2_steps]
    all_bytes = [sum(c["bytes"] for c in s["calls"]) for s in n2_steps]
    in_step = [collective_seconds(s) for s in n2_steps]
    wait = [sum(c["wait"] for c in s["calls"]) for s in n2_steps]
    replay_gt = [sum(r) for run in n2 for r in run["replay"]["minigt"]]
    replay_raw = [sum(r) for run in n2 for r in run["replay"]["raw"]]
    replay_fresh = [sum(r) for run in n2 for r in run["replay"]["raw_fresh"]]
    raw_med = med(replay_raw)
    r_in_step = med(in_step) / raw_med if raw_med else None
    r_replay = med(replay_gt) / raw_med if raw_med else None
    calls_max = max(ar_calls) if ar_calls else 0
    n1_calls = max((len(s["calls"]) for run in n1 for s in run["steps"]), default=0)

    rows = [
        [f"step time, global batch {GLOBAL_BATCH} (ms)", f"-n 2: {fmt_stats(t2)}",
         f"-n 1: {fmt_stats(t1)}", f"{speedup:.2f}× faster", f"≥ {SPEEDUP_TARGET:.2f}×",
         at_least(speedup, SPEEDUP_TARGET)],
        [f"  bound: -n 1 at batch {GLOBAL_BATCH // 2} (one -n 2 rank's work, no communication)",
         f"-n 1, batch {GLOBAL_BATCH // 2}: {fmt_stats(th)}", f"-n 1: {fmt_stats(t1)}",
         f"{bound:.2f}× faster", "—", "—"],
        ["  step CPU time of rank 0 (ms)", f"-n 2: {fmt_stats(c2)}",
         f"-n 1: {fmt_stats(c1)}; batch {GLOBAL_BATCH // 2}: {fmt_stats(ch)}",
         f"{med(c1) / med(c2):.2f}×; bound {med(c1) / med(ch):.2f}×", "—", "—"],
        ["all-reduce time per step, in the step (ms)", fmt_stats(in_step),
         f"raw Allreduce: {fmt_stats(replay_raw, digits=2)}", common.fmt_ratio(r_in_step),
         f"≤ {RATIO_TARGET:.2f}×", common.verdict(r_in_step, RATIO_TARGET)],
        ["all-reduce time per step, replayed (ms)", fmt_stats(replay_gt, digits=2),
         f"raw Allreduce: {fmt_stats(replay_raw, digits=2)}", common.fmt_ratio(r_replay),
         f"≤ {RATIO_TARGET:.2f}×", common.verdict(r_replay, RATIO_TARGET)],
        ["  the same, vs raw with a new receive buffer per call", fmt_stats(replay_gt, digits=2),
         f"raw, fresh recv: {fmt_stats(replay_fresh, digits=2)}",
         common.fmt_ratio(med(replay_gt) / med(replay_fresh)), "—", "—"],
        ["all-reduce calls per step (-n 2)", str(calls_max),
         f"all collectives: {max(all_calls, default=0)}; -n 1: {n1_calls}", "—",
         f"≤ {CALLS_TARGET}", "PASS" if calls_max <= CALLS_TARGET else "MISS"],
        ["bytes all-reduced per step, per rank", f"{med(ar_bytes) / 1e6:.2f} MB",
         f"raw: {med(ar_bytes) / 1e6:.2f} MB (same buffers)", "1.00×", "—", "—"],
    ]
    if med(all_bytes) != med(ar_bytes):
        rows.append(["bytes in all collectives per step", f"{med(all_bytes) / 1e6:.2f} MB",
                     "—", "—", "—", "—"])
        others = [sum(c["seconds"] for c in s["calls"] if c["name"] != "all_reduce")
                  for s in n2_steps]  # the gradient rows gathered instead of summed, say
        rows.append(["other collectives' time per step, in the step (ms)", fmt_stats(others),
                     "—", "—", "—", "—"])
    params = n2[0]["params"]
    common.print_table(
        f"Data-parallel training step: -n 2 vs -n 1 and vs raw mpi4py ({len(n1)} launches each, "
        f"{warmup} warm-up + {steps} timed steps per launch)",
        rows, ["metric", "minigt", "reference (same run)", "ratio", "target", "result"],
        note=(f"Model: {params:,} float32 parameters ({params * 4 / 1e6:.1f} MB of gradients). "
              f"Step times: median ±IQR/2 over all timed steps of all launches (rank 0's clock); "
              f"speed-up per launch pair: {', '.join(f'{x:.2f}×' for x in per_launch)}. "
              "In-step all-reduce time starts after a barrier (the wait for the other rank, "
              f"median {ms(med(wait))} ms per step, is timed apart); 'replayed' runs the same "
              "calls through minigt again after training, alternating rounds with the raw "
              "Allreduce. Raw: MPI.COMM_WORLD.Allreduce of preallocated buffers."))
    results = [row[-1] for row in rows if row[-1] in ("PASS", "MISS")]
    report_breakdown(runs)
    report_calls(n2)
    return results


PHASES = [("data", "batch tensors + shard"), ("forward", "forward + MSE loss"),
          ("zero_grad", "optimizer.zero_grad()"), ("backward", "backward (total)"),
          ("ar_backward", "  of which all-reduce of the gradient buckets (start + wait)"),
          ("wait_backward", "  of which wait for the other rank (before each call)"),
          ("defer", "  of which writing shares into bucket slots (gradsync.defer)"),
          ("flush", "  of which gradsync.flush (waits for the buckets, hands out .grad)"),
          ("rest_flush", "    of which the rest: no wait, no copy"),
          ("optimizer", "optimizer.step()"), ("loss/acc", "loss.item() + accuracy .item()"),
          ("ar_items", "  of which all_reduce calls (+ wait)"), ("total", "step")]


def phase_value(step: dict, key: str, cpu: bool = False) -> float:
    """A phase's wall (or the rank's CPU) seconds in one step."""
    seconds, wait = ("cpu", "cpu_wait") if cpu else ("seconds", "wait")

    def calls(phase, *fields):
        return sum(c.get(f, 0.0) for c in step["calls"] if c["phase"] == phase for f in fields)

    if key == "ar_backward":
        return calls("backward", seconds)
    if key == "wait_backward":
        return calls("backward", wait)
    if key == "rest_flush":
        return step[("cpu:" if cpu else "") + "flush"] - calls("backward", "cpu_waited" if cpu else "waited")
    if key == "ar_items":
        return calls("loss/acc", seconds, wait)
    return step[("cpu:" if cpu else "") + key]


def report_breakdown(runs: dict) -> None:
    rows = []

    def cells(key, cpu):
        values = [[phase_value(s, key, cpu) for run in runs[name] for s in run["steps"]]
                  for name in ("n1", "n2", "half")]
        m1, m2, mh = (med(v) for v in values)
        return [f"{m1 * 1e3:.1f}", f"{m2 * 1e3:.1f}", f"{mh * 1e3:.1f}",
                f"{m1 / m2:.2f}×" if m2 and m1 > 1e-4 else "—"]

    for key, label in PHASES:
        rows.append([label, *cells(key, False), *cells(key, True)])
    half = f"b{GLOBAL_BATCH // 2}"
    common.print_table(
        "Where a step's time goes: -n 1 vs -n 2 vs -n 1 at half the batch (ms, rank 0, median "
        "per phase; wall clock, then the rank's CPU time)", rows,
        ["phase", "-n 1", "-n 2", f"-n 1 {half}", "-n 1/-n 2", "CPU -n 1", "CPU -n 2",
         f"CPU -n 1 {half}", "CPU -n 1/-n 2"],
        note=f"'-n 1 {half}': one process at global batch {GLOBAL_BATCH // 2}, the work of one "
             "rank of -n 2 without communication. Medians are taken per phase, so the phases need "
             "not add up to the step. CPU time (process_time) counts MPI's busy-waiting as work; "
             "wall time above CPU time is time the rank was not running (other processes on the "
             "cores).")


def report_calls(n2: list) -> None:
    plan = n2[0]["replay"]["plan"]
    steps = [s for run in n2 for s in run["steps"]]
    rows = []
    for i, call in enumerate(plan):
        per_step = [[c for c in s["calls"] if c["name"] == "all_reduce"] for s in steps]
        in_step = [calls[i]["seconds"] for calls in per_step if len(calls) == len(plan)]
        phase = per_step[-1][i]["phase"]
        g = [r[i] for run in n2 for r in run["replay"]["minigt"]]
        raw = [r[i] for run in n2 for r in run["replay"]["raw"]]
        fresh = [r[i] for run in n2 for r in run["replay"]["raw_fresh"]]
        shape = "×".join(map(str, call["shape"])) or "scalar"
        rows.append([str(i + 1), phase, f"{call['dtype']} {shape}", f"{call['bytes']:,}",
                     fmt_stats(in_step, 1e3, 3), fmt_stats(g, 1e3, 3), fmt_stats(raw, 1e3, 3),
                     common.fmt_ratio(med(g) / med(raw)) if med(raw) else "n/a",
                     fmt_stats(fresh, 1e3, 3)])
    others = sorted({c["name"] for s in steps for c in s["calls"] if c["name"] != "all_reduce"})
    common.print_table(
        "All-reduce calls of one -n 2 step, each vs raw MPI.COMM_WORLD.Allreduce of the same "
        "buffer (ms, median ±IQR/2)", rows,
        ["#", "phase", "array", "bytes", "minigt in step", "minigt replayed", "raw Allreduce",
         "replayed/raw", "raw, fresh recv"],
        note="Other collectives per step: " + (", ".join(others) if others else "none") + ". "
             "'raw, fresh recv': the raw Allreduce into a new np.empty_like buffer each call, "
             "as minigt's all_reduce allocates its result.")


STAGES = [("start", "Python started (mpirun spawn + interpreter)"),
          ("numpy", "numpy imported"), ("import", "minigt + example imported"),
          ("mpi", "MPI joined (init_parallel)"), ("data", "data made (load_data)"),
          ("model", "model built"), ("first_step", "first step begins")]


def report_startup(data: dict) -> str:
    launches = data["worker"]
    cumulative = {}
    for key, _ in STAGES:
        cumulative[key] = [max(r[key] for r in w["ranks"]) - w["launched"] for w in launches]
    first = med(cumulative["first_step"])
    first_2 = med([max(r["first_step"] for r in w["ranks"]) - w["launched"]
                   for w in data["worker_2"]])
    cpu_rank = med([r["cpu_seconds"] for w in launches for r in w["ranks"]])
    cpu_floor = med([sum(r["cpu_seconds"] for r in w["ranks"]) / (os.cpu_count() or 1)
                     for w in launches])
    rows = [[f"mpirun -n {STARTUP_RANKS} train_pixel.py → first step (s)", f"{first:.2f}",
             f"GT: {STARTUP_TARGET_S:.2f}", f"{first / STARTUP_TARGET_S:.2f}×",
             f"≤ {STARTUP_TARGET_S:.2f} s", "PASS" if first <= STARTUP_TARGET_S else "MISS"],
            ["  the same at -n 2 (a core per rank here)", f"{first_2:.2f}",
             f"GT: {STARTUP_TARGET_S:.2f}", f"{first_2 / STARTUP_TARGET_S:.2f}×", "—", "—"],
            ["  CPU time per rank to first step (s)", f"{cpu_rank:.2f}", *["—"] * 4],
            [f"  CPU floor at -n {STARTUP_RANKS}: ranks' CPU / {os.cpu_count()} cores (s)",
             f"{cpu_floor:.2f}", f"GT: {STARTUP_TARGET_S:.2f}",
             f"{cpu_floor / STARTUP_TARGET_S:.2f}×", "—", "—"]]
    common.print_table(
        f"Start-up: mpirun -n {STARTUP_RANKS} to the first step (median of {len(launches)} "
        "launches, slowest rank)", rows,
        ["metric", "minigt", "reference", "ratio", "target", "result"])
    stage_rows, previous = [], [0.0] * len(launches)
    for key, label in STAGES:
        now = cumulative[key]
        fastest = [min(r[key] for r in w["ranks"]) - w["launched"] for w in launches]
        stage_rows.append([label, f"{med(now):.2f}",
                           f"{med([a - b for a, b in zip(now, previous)]):.2f}",
                           f"{med(fastest):.2f}"])
        previous = now
    stage_rows.append([f"reference: mpirun -n {STARTUP_RANKS} python -c 'from mpi4py import MPI'",
                       f"{med(data['mpi_floor']):.2f}", "—", "—"])
    stage_rows.append(["reference: python -c 'import minigt' (one process)",
                       f"{med(data['import_minigt']):.2f}",
                       f"{med(data['import_minigt']) - med(data['python']):.2f} over bare python",
                       "—"])
    stage_rows.append(["reference: python -c pass (one process)", f"{med(data['python']):.2f}",
                       "—", "—"])
    common.print_table(
        "Where start-up goes (s since mpirun was launched; stage = when the slowest rank got "
        "there)", stage_rows, ["stage", "cumulative", "this stage", "fastest rank"],
        note=f"{STARTUP_RANKS} ranks on {os.cpu_count()} CPUs: ranks share cores, so stages "
             "that are CPU-bound in every rank (interpreter start, imports) take about "
             f"{STARTUP_RANKS}/{os.cpu_count()}× their one-process time.")
    return rows[0][-1]
