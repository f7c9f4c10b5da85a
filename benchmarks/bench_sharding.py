"""Sharded data parallelism, measured: each mode of examples/train_pixel.py -- plain data
parallel (one all-reduce of the gradient buckets), --shard-optimizer (ZeRO 1/2) and --fsdp
(ZeRO 3) -- against one process, side by side in one run.

    .venv/bin/python benchmarks/bench_sharding.py [--quick]

Every run launches train_pixel on the brief's model under mpirun and reads its --out JSON
(training time, rank 0's peak RSS) and, where MINIGT_TRACE was set, its trace (each step's time,
and every collective rank 0 made with its bytes). Three tables:
  1. global batch 16, -n 2 against -n 1: the median step of each mode (target: the best mode
     >= 1.10x faster); -n 1 at batch 8 is one rank's work without communication (the bound);
  2. the brief's run (batch 2) at -n 8 against one process: training time (target <= 5x one
     process) and peak RSS per rank (target with --fsdp <= 0.4x), float32 and float64;
  3. the bytes each rank sends per step, from the trace, against the formula: an all-reduce
     2(N-1)/N, a reduce-scatter and an all-gather (N-1)/N each of the buffer; per step that is
     2(N-1)/N of the parameter bytes for the first two modes and 3(N-1)/N for FSDP.
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

import common

MODES = {"all-reduce": [], "shard-optimizer": ["--shard-optimizer"], "fsdp": ["--fsdp"]}
WIRE = {"all_reduce": 2, "start_all_reduce": 2, "reduce_scatter": 1, "start_reduce_scatter": 1,
        "all_gather": 1}  # bytes sent per rank: this times (N-1)/N of the buffer


def run(ranks: int, flags: list, args, traced: bool = True) -> dict:
    """One train_pixel launch: its JSON, plus (`traced`) its median step and rank 0's bytes sent
    per step. A trace holds every span in memory and costs time: untraced runs give RSS and time."""
    with tempfile.TemporaryDirectory() as tmp:
        out, trace = os.path.join(tmp, "out.json"), os.path.join(tmp, "trace.json")
        env = {**os.environ, "MPIEXEC_TIMEOUT": "580", **({"MINIGT_TRACE": trace} if traced else {})}
        command = [args.mpirun, "-n", str(ranks), sys.executable,
                   os.path.join(common.EXAMPLES, "train_pixel.py"), *flags, "--out", out]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        if done.returncode:
            sys.exit(f"bench_sharding: {' '.join(command)} failed:\n{done.stdout}{done.stderr}")
        result = json.load(open(out))
        if not traced:
            return result
        events = [e for e in json.load(open(trace))["traceEvents"] if e.get("pid") == 0]
    steps = [e["dur"] / 1e3 for e in events if e.get("cat") == "step"]
    sent = sum(WIRE[e["name"]] * e["args"]["bytes"] * (ranks - 1) / ranks
               for e in events if e.get("cat") == "collective" and e["name"] in WIRE)
    return {**result, "step_ms": statistics.median(steps[1:] or steps),
            "sent_per_step": sent / max(len(steps), 1)}


def parameter_bytes() -> int:
    """The brief's model's parameters, in float32 bytes."""
    sys.path.insert(0, common.EXAMPLES)
    from pixel_transformer import PixelTransformer

    return 4 * sum(p.numel() for p in PixelTransformer(**common.MODEL).parameters())


def main(args) -> None:
    print("## bench_sharding: data parallel, sharded optimizer and FSDP over MPI\n")
    print(common.header(args, pools=common.pin_threads(args.threads)))
    model = [a for k, v in common.MODEL.items() for a in (f"--{k}", str(v))]
    repeats = 1 if args.quick else 3

    # 1. global batch 16 on 2 ranks against 1
    samples = 64 if args.quick else 128
    batch16 = [*model, "--batch", "16", "--n", str(samples), "--epochs", "1"]
    half = [*model, "--batch", "8", "--n", str(samples // 2), "--epochs", "1"]
    one = [run(1, batch16, args)["step_ms"] for _ in range(repeats)]
    bound = [run(1, half, args)["step_ms"] for _ in range(repeats)]
    rows, best = [], 0.0
    for mode, flags in MODES.items():
        two = [run(2, batch16 + flags, args)["step_ms"] for _ in range(repeats)]
        speedup = statistics.median(one) / statistics.median(two)
        best = max(best, speedup)
        rows.append([f"-n 2, {mode}", f"{statistics.median(two):.1f}", f"{speedup:.2f}×"])
    rows.append(["-n 1 (reference)", f"{statistics.median(one):.1f}", "1.00×"])
    rows.append(["-n 1 at batch 8 (the bound)", f"{statistics.median(bound):.1f}",
                 f"{statistics.median(one) / statistics.median(bound):.2f}×"])
    rows.append(["best mode", "", f"{best:.2f}× {'PASS' if best >= 1.10 else 'MISS'} (≥ 1.10×)"])
    common.print_table("Global batch 16: median step on 2 ranks against 1 (ms, rank 0)", rows,
                       ["run", "step ms", "speed-up vs -n 1"],
                       f"{samples} samples, 1 epoch, {repeats} launch(es) each; the first step "
                       "of each launch is left out.")

    # 2. the brief's run at -n 8 against one process: time and memory
    length = ["--n", "8", "--epochs", "1"] if args.quick else []  # the brief: 20 samples, 5 epochs
    rows = []
    for dtype in ("float32",) if args.quick else ("float32", "float64"):
        brief = [*model, *length, "--dtype", dtype]
        single = run(1, brief, args, traced=False)
        modes = MODES if dtype == "float32" else {"fsdp": MODES["fsdp"]}
        for mode, flags in modes.items():
            eight = run(8, brief + flags, args, traced=False)
            slower = eight["train_seconds"] / single["train_seconds"]
            lighter = eight["peak_rss_mb"] / single["peak_rss_mb"]
            rss_target = "≤ 0.40×" if mode == "fsdp" else "—"
            rss_result = ("PASS" if lighter <= 0.40 else "MISS") if mode == "fsdp" else "—"
            rows.append([dtype, mode, f"{eight['train_seconds']:.1f} s vs {single['train_seconds']:.1f} s",
                         f"{slower:.1f}×", "PASS" if slower <= 5 else "MISS",
                         f"{eight['peak_rss_mb']:.0f} MB vs {single['peak_rss_mb']:.0f} MB",
                         f"{lighter:.2f}×", rss_target, rss_result])
    common.print_table(
        "The brief's run (batch 2) on 8 ranks against one process", rows,
        ["dtype", "mode", "training time -n 8 vs -n 1", "ratio", "≤ 5×", "peak RSS (rank 0)",
         "ratio", "target", "result"],
        f"{'4 steps, float32 only (--quick)' if args.quick else 'The brief: 50 steps'}; 8 ranks "
        f"share {os.cpu_count()} CPUs, so time shows the cost of many ranks here, not their "
        "speed. Peak RSS is rank 0's (VmHWM), model building included; both from runs without a trace.")

    # 3. bytes per step against the formula
    rows = []
    for ranks in (2,) if args.quick else (2, 8):  # --quick: 8 ranks once, in table 2
        flags = [*model, "--batch", "16" if ranks == 2 else "8", "--n", "32", "--epochs", "1"]
        for mode, extra in MODES.items():
            measured = run(ranks, flags + extra, args)["sent_per_step"]
            formula = (3 if mode == "fsdp" else 2) * (ranks - 1) / ranks * parameter_bytes()
            ratio = measured / formula
            ok = ratio <= 1.001  # Linear rows may be gathered instead (gradsync.Factors): at most k
            rows.append([f"-n {ranks}", mode, f"{measured / 1e6:.1f}", f"{formula / 1e6:.1f}",
                         f"{ratio:.3f}", "PASS" if ok else "MISS"])
    common.print_table(
        "Bytes each rank sends per step (MB): the trace against the formula", rows,
        ["ranks", "mode", "measured", "formula (k(N-1)/N × parameter bytes)", "ratio", "result"],
        "Measured: rank 0's collectives in the trace, each counted as its algorithm sends "
        "(all-reduce 2(N-1)/N, reduce-scatter and all-gather (N-1)/N of the buffer), per step, "
        "the loss and accuracy reads included. Formula: k = 2 (all-reduce; reduce-scatter + "
        "all-gather), k = 3 (FSDP: two all-gathers and one reduce-scatter). Every mode sends at "
        "most that: where all ranks' rows are half or less of the Linear weights' numbers they "
        "all-gather the rows of g and x instead of summing gradients (gradsync.Factors)."
        + (" --quick: 2 ranks only." if args.quick else ""))


if __name__ == "__main__":
    parser = common.base_parser(__doc__)
    parser.add_argument("--mpirun", default=shutil.which("mpirun", path=os.path.dirname(sys.executable))
                        or shutil.which("mpirun"))
    main(common.bootstrap(parser))
