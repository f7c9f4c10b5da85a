"""The worker side of bench_train.py: one framework trains one configuration, in a process of
its own (`bench_train.py --worker minigt|torch`), and writes its notes as JSON to --result.

The parent writes the starting weights (write_weights) and both workers read them (read_into).
This module imports numpy, so bench_train.py imports it only after common.bootstrap.
"""
from __future__ import annotations

import cProfile
import json
import os
import pstats
import resource
import sys
import time

import numpy as np

import common
from common import LR, MODEL, SEED

sys.path.insert(0, common.EXAMPLES)

PROFILE_STEPS = 5  # steps profiled after --profile-step


# ---- measurements shared by both workers --------------------------------------------------------
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
    """Wall clock, CPU time and RSS after every optimizer step, and how long each step's backward
    and update took (`timed`); optionally profiles the PROFILE_STEPS steps after step
    `profile_step`."""

    def __init__(self, profile_step: int = 0):
        self.ends, self.cpu, self.rss = [], [], []
        self.phases = {"backward": [], "update": []}  # seconds, one per step
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

    def timed(self, phase: str, fn):
        """`fn`, noting how long each call takes under `phase`."""
        def run(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.phases[phase].append(time.perf_counter() - start)
        return run


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


# ---- the two frameworks --------------------------------------------------------------------------
def run_minigt(args, recorder: Recorder, samples, batch) -> dict:
    """train_pixel.train() itself, with SGD.step wrapped to note time and RSS, and it and
    Tensor.backward timed."""
    import minigt as gt
    import train_pixel

    pools = common.pin_threads(args.threads)
    argv = [f"--{k}={v}" for k, v in MODEL.items()] + [
        f"--n={samples}", f"--batch={batch}", f"--epochs={args.epochs}", "--loss=mse",
        "--optim=sgd", f"--lr={LR}", f"--seed={SEED}", "--dtype=float32", "--data=synthetic"]
    options = train_pixel.parse_args(argv)
    original_step, original_backward = gt.optim.SGD.step, gt.Tensor.backward
    update = recorder.timed("update", original_step)

    def step(self, *a, **k):
        out = update(self, *a, **k)
        recorder.after_step()
        return out

    gt.optim.SGD.step, gt.Tensor.backward = step, recorder.timed("backward", original_backward)
    try:
        result = train_pixel.train(options)
    finally:
        gt.optim.SGD.step, gt.Tensor.backward = original_step, original_backward
    return dict(losses=result["step_losses"], reported_samples_per_s=result["samples_per_s"],
                version=gt.__version__, pools=pools)


def run_torch(args, recorder: Recorder, samples, batch) -> dict:
    """The same loop in PyTorch: same data, same order, same starting weights."""
    import torch
    from pixel_data import synthetic
    from torch.nn import functional as F
    from torch_pixel_transformer import PixelTransformer

    pools = common.pin_threads(args.threads, torch)
    torch.manual_seed(SEED)
    model = PixelTransformer(**MODEL)
    files = weight_files(args.weights)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            read_into(files[name], tensor.numpy())
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    images, labels = synthetic(samples, MODEL["seq"], MODEL["img"], SEED)
    backward = recorder.timed("backward", torch.Tensor.backward)
    update = recorder.timed("update", optimizer.step)
    losses, started, trained = [], time.perf_counter(), 0
    for _ in range(args.epochs):
        order, correct = np.arange(len(labels)), 0
        for start in range(0, len(order), batch):
            idx = order[start:start + batch]
            # the indexed copies shared with the framework, as train_pixel's minigt.as_tensor
            x, y = torch.as_tensor(images[idx]), torch.as_tensor(labels[idx])
            logits = model(x)
            loss = F.mse_loss(logits, F.one_hot(y, 10).to(logits.dtype))
            optimizer.zero_grad()
            backward(loss)
            update()
            recorder.after_step()
            losses.append(loss.item())
            correct += int((logits.argmax(-1) == y).sum().item())
        trained += len(order)
    return dict(losses=losses, reported_samples_per_s=trained / (time.perf_counter() - started),
                version=torch.__version__, pools=pools)


def worker(args, samples: int, batch: int) -> int:
    """One run of args.config (`samples` in batches of `batch`) by args.worker."""
    recorder = Recorder(args.profile_step)
    run = run_minigt if args.worker == "minigt" else run_torch
    out = run(args, recorder, samples, batch)
    out.update(framework=args.worker, config=args.config, step_ends=recorder.ends,
               cpu_ends=recorder.cpu, phases=recorder.phases,
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
