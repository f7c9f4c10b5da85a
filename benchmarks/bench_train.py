"""Training benchmark: examples/train_pixel.py (minigt) vs the same model in PyTorch CPU eager.

Two configurations, both float32, MSE on one-hot targets, SGD lr 0.01, seed 0, synthetic data:
  brief    the project brief's run: img 200, seq 4, dim 256, heads 4, layers 4, ff 1024,
           20 samples, batch 2 (10 steps an epoch). It runs 200 steps (20 epochs, cycling over
           the 20 samples), so that the same run gives the step times and the growth check.
  batch16  the same model at batch 16 (64 samples, 4 steps an epoch, 5 epochs: 20 steps).

Each framework runs in its own subprocess (this script with `--worker minigt|torch`), so peak RSS
is that framework's alone (VmHWM: the worker's own ru_maxrss, see peak_rss_mb), with the same
threads (OMP_NUM_THREADS etc., `--threads`, default 1), the same data and the same starting
weights (written once by this process and read by both). minigt runs `train_pixel.train()` itself,
unchanged; a wrapper around `minigt.optim.SGD.step` only notes the clock and RSS
(/proc/self/statm) after every step. The PyTorch worker runs the same loop by hand and notes the
same things at the same point. A step's time is the time between two such notes: batch, forward,
loss, backward, update, loss.item() and accuracy, as in train_pixel. samples/s = batch / median
step time (the first step, with its one-time imports, is not among them).

Targets: minigt samples/s at least 1.0x PyTorch's; peak RSS at most 1.5x PyTorch's; RSS after
step 200 within 2% of RSS after step 20 (brief config). `--profile` adds a cProfile of one
brief-config minigt step (in a separate run, so the timings above carry no profiler overhead).

    .venv/bin/python benchmarks/bench_train.py [--threads N] [--quick] [--profile] [--strict]

`--quick`: 50 steps (brief: growth checked at step 50) and 8 steps (batch16). Default: one
subprocess per framework and configuration (about 3 minutes on 2 busy cores); `--repeats N`
runs each N times, alternating, and takes medians.
"""
from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(os.path.dirname(HERE), "examples")
sys.path.insert(0, HERE)
import common  # noqa: E402

MODEL = dict(img=200, seq=4, dim=256, heads=4, layers=4, ff=1024)
CONFIGS = {  # name: (samples, batch, epochs, epochs with --quick)
    "brief": (20, 2, 20, 5),
    "batch16": (64, 16, 5, 2),
}
SEED, LR = 0, 0.01
GROWTH_FROM = 20  # RSS after this step is the reference for the growth check
TARGETS = dict(speed=1.0, rss=1.5, growth=0.02)
PROFILE_STEP = 5  # --profile: the PROFILE_STEPS steps after this one (warm) are profiled
PROFILE_STEPS = 5
TOP = 12


def build_parser():
    parser = common.base_parser(__doc__)
    parser.add_argument("--profile", action="store_true",
                        help="print a cProfile of one brief-config minigt step")
    parser.add_argument("--repeats", type=int, default=1,
                        help="subprocess runs per framework and configuration (median; default 1)")
    hidden = argparse.SUPPRESS  # the worker mode: one framework, one configuration
    parser.add_argument("--worker", choices=["minigt", "torch"], help=hidden)
    parser.add_argument("--config", choices=list(CONFIGS), help=hidden)
    parser.add_argument("--epochs", type=int, help=hidden)
    parser.add_argument("--weights", help=hidden)
    parser.add_argument("--result", help=hidden)
    parser.add_argument("--profile-step", type=int, default=0, help=hidden)
    return parser


if __name__ == "__main__":
    ARGS = common.bootstrap(build_parser())  # may re-exec: before numpy is imported

import numpy as np  # noqa: E402

sys.path.insert(0, EXAMPLES)


# ---- measurements shared by both workers -------------------------------------------------------
def rss_mb() -> float:
    """Resident set size now, in MB (/proc/self/statm; ru_maxrss where /proc is missing)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_rss_mb() -> float:
    """Peak RSS of this program, in MB: VmHWM of /proc/self/status.

    Not ru_maxrss alone: Linux carries ru_maxrss over fork and exec, so a worker started by a
    parent holding 400 MB (PyTorch, minigt and the weights) would report at least 400 MB. VmHWM
    belongs to the process's own memory map, which exec starts afresh. ru_maxrss is the fallback
    where /proc is missing."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Recorder:
    """Wall clock, CPU time and RSS after every optimizer step; optionally profiles the
    PROFILE_STEPS steps after step `profile_step`."""

    def __init__(self, profile_step: int = 0):
        self.ends, self.cpu, self.rss = [], [], []
        self.profile_step = profile_step
        self.profiler = cProfile.Profile() if profile_step else None

    def after_step(self) -> None:
        if self.profiler and len(self.ends) == self.profile_step + PROFILE_STEPS - 1:
            self.profiler.disable()  # the last profiled step just finished
        self.ends.append(time.perf_counter())
        self.cpu.append(time.process_time())
        self.rss.append(rss_mb())
        if self.profiler and len(self.ends) == self.profile_step:
            self.profiler.enable()


def weight_files(directory: str) -> dict:
    return {name[:-4]: os.path.join(directory, name) for name in os.listdir(directory)
            if name.endswith(".npy")}


def read_into(path: str, out: np.ndarray) -> None:
    """Fill `out` from a .npy file without a temporary copy (it would count in peak RSS)."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                  else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = header(f)
        if tuple(shape) != out.shape or np.dtype(dtype) != out.dtype or fortran:
            raise ValueError(f"{path}: {shape} {dtype} does not fit {out.shape} {out.dtype}")
        if f.readinto(memoryview(out).cast("B")) != out.nbytes:
            raise ValueError(f"{path}: short read")


def write_weights(directory: str) -> None:
    """The starting weights of train_pixel's model (same seed, same construction), one .npy per
    parameter."""
    import minigt as gt
    from pixel_transformer import PixelTransformer

    gt.manual_seed(SEED)
    model = PixelTransformer(**MODEL)
    for name, value in model.state_dict().items():
        np.save(os.path.join(directory, name + ".npy"), value.numpy())


# ---- workers -------------------------------------------------------------------------------------
def run_minigt(args, recorder: Recorder) -> dict:
    """train_pixel.train() itself, with SGD.step wrapped to note time and RSS."""
    import minigt as gt
    import train_pixel

    pools = common.pin_threads(args.threads)
    samples, batch, _, _ = CONFIGS[args.config]
    argv = [f"--{k}={v}" for k, v in MODEL.items()] + [
        f"--n={samples}", f"--batch={batch}", f"--epochs={args.epochs}", "--loss=mse",
        "--optim=sgd", f"--lr={LR}", f"--seed={SEED}", "--dtype=float32", "--data=synthetic"]
    options = train_pixel.parse_args(argv)
    original = gt.optim.SGD.step

    def step(self, *a, **k):
        out = original(self, *a, **k)
        recorder.after_step()
        return out

    gt.optim.SGD.step = step
    try:
        result = train_pixel.train(options)
    finally:
        gt.optim.SGD.step = original
    return dict(losses=result["step_losses"], reported_samples_per_s=result["samples_per_s"],
                version=gt.__version__, pools=pools)


def run_torch(args, recorder: Recorder) -> dict:
    """The same loop in PyTorch: same data, same order, same starting weights."""
    import torch
    from pixel_data import synthetic
    from torch.nn import functional as F
    from torch_pixel_transformer import PixelTransformer

    pools = common.pin_threads(args.threads, torch)
    torch.manual_seed(SEED)
    samples, batch, _, _ = CONFIGS[args.config]
    model = PixelTransformer(**MODEL)
    files = weight_files(args.weights)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            read_into(files[name], tensor.numpy())
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    images, labels = synthetic(samples, MODEL["seq"], MODEL["img"], SEED)
    losses, started, trained = [], time.perf_counter(), 0
    for _ in range(args.epochs):
        order, correct = np.arange(len(labels)), 0
        for start in range(0, len(order), batch):
            idx = order[start:start + batch]
            x, y = torch.from_numpy(images[idx]), torch.from_numpy(labels[idx])
            logits = model(x)
            loss = F.mse_loss(logits, F.one_hot(y, 10).to(logits.dtype))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            recorder.after_step()
            losses.append(loss.item())
            correct += int((logits.argmax(-1) == y).sum().item())
        trained += len(order)
    return dict(losses=losses, reported_samples_per_s=trained / (time.perf_counter() - started),
                version=torch.__version__, pools=pools)


def worker(args) -> int:
    recorder = Recorder(args.profile_step)
    run = run_minigt if args.worker == "minigt" else run_torch
    out = run(args, recorder)
    out.update(framework=args.worker, config=args.config, step_ends=recorder.ends,
               cpu_ends=recorder.cpu,
               rss_mb=recorder.rss, peak_rss_mb=peak_rss_mb(),
               ru_maxrss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    if recorder.profiler:
        out["profile"] = profile_tables(recorder.profiler)
    with open(args.result, "w") as f:
        json.dump(out, f)
    return 0


def profile_tables(profiler) -> dict:
    """Functions of the profiled steps by own time, per step: all, and those in minigt/ only."""
    stats = pstats.Stats(profiler).stats
    n = PROFILE_STEPS
    total = sum(tt for (_, _, tt, _, _) in stats.values()) / n
    rows = []
    for (path, line, name), (_, calls, tt, ct, _) in stats.items():
        short = name if path == "~" else f"{_short_path(path)}:{line}({name})"
        rows.append(dict(function=short, calls=calls / n, tottime=tt / n, cumtime=ct / n,
                         minigt=f"{os.sep}minigt{os.sep}" in path))
    rows.sort(key=lambda r: r["tottime"], reverse=True)
    return dict(total=total, rows=rows)


def _short_path(path: str) -> str:
    parts = path.split(os.sep)
    for anchor in ("minigt", "examples", "site-packages"):
        if anchor in parts:
            i = len(parts) - 1 - parts[::-1].index(anchor)
            return "/".join(parts[i + (anchor == "site-packages"):])
    return os.path.basename(path)


# ---- the parent: runs the workers, prints the tables ---------------------------------------------
def spawn(args, framework: str, config: str, epochs: int, weights: str, tmp: str,
          profile_step: int = 0) -> dict | None:
    result = os.path.join(tmp, f"{framework}-{config}-{time.monotonic_ns()}.json")
    command = [sys.executable, os.path.abspath(__file__), "--worker", framework, "--config", config,
               "--epochs", str(epochs), "--weights", weights, "--result", result,
               "--threads", str(args.threads)]
    if args.keep_env:
        command.append("--keep-env")
    if profile_step:
        command += ["--profile-step", str(profile_step)]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode or not os.path.exists(result):
        print(f"\n{framework} worker ({config}) failed with exit {done.returncode}:\n"
              f"{done.stderr[-3000:]}", flush=True)
        return None
    with open(result) as f:
        out = json.load(f)
    out["wall_s"] = seconds
    print(f"    {framework:6} {config:8} {len(out['step_ends'])} steps, {seconds:.0f} s",
          flush=True)
    return out


def summarize(run: dict, batch: int) -> dict:
    step = common.stats_of(np.diff(run["step_ends"]).tolist())
    cpu = float(np.median(np.diff(run["cpu_ends"])))
    rss = run["rss_mb"]
    last = min(len(rss), 200)
    return dict(
        step=step,
        samples_per_s=batch / step.median, cpu_samples_per_s=batch / cpu, cpu_step=cpu,
        peak=run["peak_rss_mb"],
        rss_from=rss[min(GROWTH_FROM, len(rss)) - 1], rss_to=rss[last - 1], to_step=last,
        reported=run["reported_samples_per_s"], losses=run["losses"],
    )


def merge(summaries: list) -> dict | None:
    """Several runs of one framework: median of the speeds, largest of the memory figures."""
    if not summaries:
        return None
    best = dict(summaries[0])
    if len(summaries) > 1:
        pick = sorted(summaries, key=lambda s: s["step"].median)[len(summaries) // 2]
        best.update(step=pick["step"], samples_per_s=pick["samples_per_s"],
                    cpu_samples_per_s=statistics.median(s["cpu_samples_per_s"] for s in summaries),
                    cpu_step=statistics.median(s["cpu_step"] for s in summaries),
                    reported=statistics.median(s["reported"] for s in summaries))
        for key in ("peak", "rss_from", "rss_to"):
            best[key] = max(s[key] for s in summaries)
    return best


def growth(s: dict) -> float:
    return (s["rss_to"] - s["rss_from"]) / s["rss_from"]


def rows_for(config: str, ours: dict | None, theirs: dict | None) -> list:
    _, batch, _, _ = CONFIGS[config]
    na = "n/a"

    def both(fn):
        return [fn(s) if s else na for s in (ours, theirs)]

    def ratio(key):
        return ours[key] / theirs[key] if ours and theirs else None

    speed, memory, cpu_speed = ratio("samples_per_s"), ratio("peak"), ratio("cpu_samples_per_s")
    rows = [
        [config, "samples/s (batch / median step)",
         *both(lambda s: f"{s['samples_per_s']:.2f}"), common.fmt_ratio(speed),
         f"≥ {TARGETS['speed']:.2f}×", na if speed is None else
         ("PASS" if speed >= TARGETS["speed"] else "MISS")],
        [config, "median step, ms (±half IQR)",
         *both(lambda s: common.fmt_time(s["step"], 1e3, 1)),
         common.fmt_ratio(ours["step"].median / theirs["step"].median) if ours and theirs else na,
         "—", "—"],
        [config, "samples/s by CPU time (batch / median CPU s)",
         *both(lambda s: f"{s['cpu_samples_per_s']:.2f}"), common.fmt_ratio(cpu_speed),
         "(info)", na if cpu_speed is None else
         ("pass" if cpu_speed >= TARGETS["speed"] else "miss")],
        [config, "peak RSS, MB (VmHWM)", *both(lambda s: f"{s['peak']:.0f}"),
         common.fmt_ratio(memory), f"≤ {TARGETS['rss']:.2f}×",
         common.verdict(memory, TARGETS["rss"])],
    ]
    if config == "brief":
        rows.append([config, f"RSS step {GROWTH_FROM} → step N, MB (N: see cell)",
                     *both(lambda s: f"{s['rss_from']:.1f} → {s['rss_to']:.1f} @{s['to_step']} "
                                     f"({growth(s) * 100:+.2f}%)"),
                     "—", f"minigt ≤ {TARGETS['growth'] * 100:.0f}%",
                     na if not ours else ("PASS" if abs(growth(ours)) <= TARGETS["growth"]
                                          and ours["to_step"] >= 200 else
                                          "MISS" if abs(growth(ours)) > TARGETS["growth"]
                                          else "PASS (quick: < 200 steps)")])
    rows.append([config, "whole-run samples/s (incl. 1st step)",
                 *both(lambda s: f"{s['reported']:.2f}"),
                 common.fmt_ratio(ratio("reported")), "—", "—"])
    if ours and theirs:
        n = min(len(ours["losses"]), len(theirs["losses"]))
        a, b = np.asarray(ours["losses"][:n]), np.asarray(theirs["losses"][:n])
        k = min(n, 10)
        rows.append([config, f"loss agreement, max rel. diff (first {k} / all {n} steps)",
                     f"{np.max(np.abs(a[:k] - b[:k]) / np.abs(b[:k])):.1e}",
                     f"{np.max(np.abs(a - b) / np.abs(b)):.1e}", "—", "—", "—"])
    return rows


def print_profile(profile: dict) -> None:
    total = profile["total"]
    headers = ["function", "calls", "own ms", "own %", "cumulative ms"]
    for title, rows in (
        (f"cProfile: warm brief-config minigt steps {PROFILE_STEP + 1}-"
         f"{PROFILE_STEP + PROFILE_STEPS}, per step: top {TOP} minigt functions by own time",
         [r for r in profile["rows"] if r["minigt"]]),
        (f"cProfile: the same step, top {TOP} of all functions by own time (NumPy's included)",
         profile["rows"]),
    ):
        common.print_table(title, [[r["function"], f"{r['calls']:g}", f"{r['tottime'] * 1e3:.2f}",
                                    f"{100 * r['tottime'] / total:.1f}",
                                    f"{r['cumtime'] * 1e3:.2f}"] for r in rows[:TOP]],
                           headers, note=f"total under the profiler: {total * 1e3:.1f} ms a step "
                                         f"(the profiler slows Python-heavy code down)")


def main(args) -> int:
    started = time.perf_counter()
    torch = common.load_torch(args)
    pools = common.pin_threads(args.threads, torch)
    import minigt

    print(common.header(args, torch, pools))
    print(f"    minigt {minigt.__version__} | model {MODEL} | float32, MSE, SGD lr {LR}, "
          f"seed {SEED}")
    repeats = max(1, args.repeats)
    frameworks = ["minigt"] + (["torch"] if torch else [])
    plan = {name: (c[3] if args.quick else c[2]) for name, c in CONFIGS.items()}
    steps = ", ".join(f"{n} {CONFIGS[n][0] // CONFIGS[n][1] * e}" for n, e in plan.items())
    print(f"    runs: {repeats} subprocess(es) per framework and configuration, alternating "
          f"(reduced to keep the whole benchmark near 3 minutes on 2 cores; --repeats N for "
          f"more); steps: {steps}",
          flush=True)
    summaries = {(c, f): [] for c in CONFIGS for f in frameworks}
    profile = None
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        weights = os.path.join(tmp, "weights")
        os.mkdir(weights)
        write_weights(weights)
        for config, epochs in plan.items():
            for r in range(repeats):
                for framework in (frameworks if r % 2 == 0 else frameworks[::-1]):
                    out = spawn(args, framework, config, epochs, weights, tmp)
                    if out:
                        summaries[config, framework].append(summarize(out, CONFIGS[config][1]))
        if args.profile:
            out = spawn(args, "minigt", "brief", 1, weights, tmp, profile_step=PROFILE_STEP)
            profile = out and out.get("profile")

    rows = []
    for config in CONFIGS:
        rows += rows_for(config, merge(summaries[config, "minigt"]),
                         merge(summaries.get((config, "torch"), [])))
    common.print_table(
        "Training: train_pixel (minigt) vs PyTorch CPU eager, same threads, data and weights",
        rows, ["config", "metric", "minigt", "PyTorch", "minigt/PyTorch", "target", "result"],
        note=(f"brief: 20 samples, batch 2, {plan['brief']} epochs; batch16: 64 samples, batch 16, "
              f"{plan['batch16']} epochs. Step times are medians over every step but the first; "
              f"whole-run samples/s is train_pixel's own figure (all steps, incl. the first's "
              f"one-time costs; PyTorch's loop timed the same way). Growth: RSS after step "
              f"{GROWTH_FROM} vs after step N (≤ 200). CPU time (time.process_time, user + "
              f"system, all threads) is much less sensitive to other processes on the machine "
              f"than wall time; its row is for information, the targets are on wall time. "
              f"Loss agreement: both start from the same weights; float32 rounding makes the "
              f"two trajectories drift apart over hundreds of steps, so the first steps are "
              f"the check."))
    if profile:
        print_profile(profile)
    elif args.profile:
        print("\n(profile run failed)")
    print(f"\nbench_train: {time.perf_counter() - started:.0f} s in all")
    missed = any(row[-1] == "MISS" for row in rows)
    return 2 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(worker(ARGS) if ARGS.worker else main(ARGS))
