"""bench_gpu.py's measurements in its own process: matmul, and train_pixel's training step
against PyTorch eager. This module imports numpy, so bench_gpu.py imports it only after
common.bootstrap.
"""
from __future__ import annotations

import sys
import time

import numpy as np

import common
from common import LR, MODEL, SEED

sys.path.insert(0, common.EXAMPLES)


def sync() -> None:
    import cupy

    cupy.cuda.get_current_stream().synchronize()


# ---- 1. matmul -----------------------------------------------------------------------------------
def bench_matmul(args, torch) -> dict:
    import cupy

    import minigt as gt

    n = args.matmul_n
    rng = np.random.default_rng(SEED)
    a_host = rng.standard_normal((n, n), dtype=np.float32)
    b_host = rng.standard_normal((n, n), dtype=np.float32)
    a, b = cupy.asarray(a_host), cupy.asarray(b_host)
    ta, tb = gt.tensor(a, device="cuda"), gt.tensor(b, device="cuda")
    calls = {"minigt": lambda: ta @ tb, "CuPy raw": lambda: a @ b}
    syncs = {"minigt": sync, "CuPy raw": sync}
    if torch is not None and torch.cuda.is_available():
        xa, xb = torch.from_numpy(a_host).cuda(), torch.from_numpy(b_host).cuda()
        calls["PyTorch"] = lambda: torch.matmul(xa, xb)
        syncs["PyTorch"] = torch.cuda.synchronize
    # the three agree (a check that each computes the product, not a precision test)
    reference = cupy.asnumpy(a[:64] @ b[:, :64])
    for name, fn in calls.items():
        out = fn()
        part = out.data[:64, :64] if name == "minigt" else out[:64, :64]
        got = part.cpu().numpy() if name == "PyTorch" else cupy.asnumpy(part)
        if not np.allclose(got, reference, rtol=1e-3, atol=1e-2):
            raise RuntimeError(f"matmul: {name}'s product differs from CuPy's")
    per_round, rounds = (10, 3) if args.quick else (20, 7)
    samples = {name: [] for name in calls}
    names = list(calls)
    for _ in range(2):  # warm-up: cuBLAS handles, heuristics, memory pools
        for name in names:
            calls[name]()
            syncs[name]()
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            fn, wait = calls[name], syncs[name]
            wait()
            t0 = time.perf_counter()
            for _ in range(per_round):
                out = fn()
            wait()
            samples[name].append((time.perf_counter() - t0) / per_round)
            del out
    flops = 2.0 * n**3
    out = {}
    for name, times in samples.items():
        stats = common.stats_of(times)
        out[name] = dict(seconds=stats.median, spread=stats.spread,
                         tflops=flops / stats.median / 1e12)
    return out


def matmul_rows(res: dict) -> list:
    ours, cupy_raw = res["minigt"], res["CuPy raw"]
    ratio = ours["tflops"] / cupy_raw["tflops"]
    rows = [[name, f"{r['tflops']:.1f}", f"{r['seconds'] * 1e3:.3f} ±{r['spread'] * 100:.0f}%",
             f"{r['tflops'] / cupy_raw['tflops']:.3f}×"] for name, r in res.items()]
    return rows, ratio


# ---- 2. a training step --------------------------------------------------------------------------
class MinigtRun:
    """train_pixel's model and step, on the GPU."""

    def __init__(self, batch: int, images, labels):
        import minigt as gt
        import train_pixel
        from pixel_transformer import PixelTransformer

        self.gt = gt
        gt.manual_seed(SEED)
        self.model = PixelTransformer(**MODEL).to("cuda")
        self.optimizer = gt.optim.SGD(self.model.parameters(), lr=LR)
        argv = [f"--{k}={v}" for k, v in MODEL.items()] + [
            f"--batch={batch}", "--loss=mse", "--optim=sgd", f"--lr={LR}", "--dtype=float32",
            "--device=cuda"]
        self.args = train_pixel.parse_args(argv)
        self.train_pixel = train_pixel
        self.images, self.labels, self.batch = images, labels, batch
        self.losses, self.correct = [], 0

    def state(self) -> dict:
        return {name: value.numpy() for name, value in self.model.state_dict().items()}

    def step(self, k: int) -> None:
        start = (k * self.batch) % len(self.labels)
        idx = np.arange(start, start + self.batch) % len(self.labels)
        x, y = self.train_pixel.batch_tensors(self.images[idx], self.labels[idx], self.args)
        logits = self.model(x)
        loss = self.train_pixel.loss_fn(self.args, logits, y)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.losses.append(loss.item())
        self.correct += int((logits.argmax(-1) == y).sum().item())


class TorchRun:
    """The same model and step in PyTorch eager on the same GPU."""

    def __init__(self, torch, batch: int, images, labels, state: dict):
        from torch_pixel_transformer import PixelTransformer

        self.torch, self.F = torch, torch.nn.functional
        torch.manual_seed(SEED)
        self.model = PixelTransformer(**MODEL)
        self.model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in state.items()})
        self.model.to("cuda")
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=LR)
        self.images, self.labels, self.batch = images, labels, batch
        self.losses, self.correct = [], 0

    def step(self, k: int) -> None:
        torch, F = self.torch, self.F
        start = (k * self.batch) % len(self.labels)
        idx = np.arange(start, start + self.batch) % len(self.labels)
        x = torch.from_numpy(self.images[idx]).to("cuda")
        y = torch.from_numpy(self.labels[idx]).to("cuda")
        logits = self.model(x)
        loss = F.mse_loss(logits, F.one_hot(y, 10).to(logits.dtype))
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.losses.append(loss.item())
        self.correct += int((logits.argmax(-1) == y).sum().item())


def bench_train(args, torch, configs: dict) -> dict:
    from pixel_data import synthetic

    results = {}
    for config in args.train_configs.split(","):
        batch, samples = configs[config]
        images, labels = synthetic(samples, MODEL["seq"], MODEL["img"], SEED)
        runs = {"minigt": MinigtRun(batch, images, labels)}
        if torch is not None and torch.cuda.is_available():
            runs["PyTorch"] = TorchRun(torch, batch, images, labels, runs["minigt"].state())
        warmup = 3 if args.quick else 5
        rounds, per_round = (3, 3) if args.quick else ((6, 5) if batch <= 8 else (4, 4))
        counter = {name: 0 for name in runs}
        compile_s = {}
        for name, run in runs.items():  # the first steps compile CuPy's kernels: not timed
            t0 = time.perf_counter()
            for _ in range(warmup):
                run.step(counter[name])
                counter[name] += 1
            compile_s[name] = time.perf_counter() - t0
        samples_s = {name: [] for name in runs}
        names = list(runs)
        for r in range(rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                run = runs[name]
                for _ in range(per_round):
                    t0 = time.perf_counter()
                    run.step(counter[name])  # ends in loss.item(): the device has finished
                    samples_s[name].append(time.perf_counter() - t0)
                    counter[name] += 1
        entry = {"batch": batch, "warmup_s": compile_s}
        for name, times in samples_s.items():
            stats = common.stats_of(times)
            entry[name] = dict(seconds=stats.median, spread=stats.spread, steps=len(times),
                               samples_per_s=batch / stats.median)
        if "PyTorch" in runs:
            a = np.asarray(runs["minigt"].losses)
            b = np.asarray(runs["PyTorch"].losses)
            k = min(len(a), len(b), 3)
            diff = np.abs(a[:k] - b[:k]) / np.abs(b[:k])
            entry["loss_rel_diff_first_steps"] = float(np.max(diff))
        results[config] = entry
        del runs
    return results
