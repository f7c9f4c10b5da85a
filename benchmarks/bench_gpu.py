"""GPU benchmark: minigt on CuPy against CuPy itself and PyTorch eager, on the same GPU.

Three measurements, each against its reference in the same run:
1. matmul, 4096 x 4096 float32: `a @ b` on minigt tensors vs CuPy's `a @ b` on the same arrays
   vs `torch.matmul`. Each round runs 20 products back to back between two synchronisations of
   the device (so the time is the GPU's, plus whatever Python cannot hide behind it); rounds
   alternate between the three, after a warm-up. TF32 stays off on both sides (CuPy's default
   without CUPY_TF32=1; PyTorch's default allow_tf32=False): the figures are true float32.
   Target: minigt at least 0.95x CuPy raw's TFLOP/s.
2. A training step of examples/train_pixel.py: the brief's model (img 200, seq 4, dim 256,
   heads 4, layers 4, ff 1024; float32, MSE on one-hot targets, SGD lr 0.01) at the brief's
   batch 2 and at batch 32, against the same model in PyTorch eager
   (examples/torch_pixel_transformer.py) on the same GPU, from the same starting weights, on the
   same batches. A step is what train_pixel does: batch to the GPU, forward, loss, zero_grad,
   backward, SGD step, loss.item() and the accuracy count (both read the device, so a step's
   wall time is complete). Steps alternate between the two frameworks in rounds.
   Target: minigt's median step at most 1.3x PyTorch's.
3. all_reduce of 64 MB (float32) between 2 ranks sharing the GPU, through each path
   (MINIGT_COLLECTIVES=nccl, mpi, host), each in its own `mpirun -n 2` launch of this script
   (`--worker allreduce`). A path this machine cannot take is reported as such, with the reason
   (NCCL needs a GPU per rank; `mpi` needs a CUDA-aware MPI). Reference: the same all_reduce of
   host (NumPy) memory through MPI in the same launch.

Without CuPy or without a GPU it prints "no GPU" and exits 0, having measured nothing.

    python benchmarks/bench_gpu.py [--quick] [--no-torch] [--strict] [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import common  # noqa: E402
import gpu_allreduce  # noqa: E402

MATMUL_N = 4096
TRAIN_CONFIGS = {  # name: (batch, samples); the brief's run is 20 samples in batches of 2
    "brief": (2, 20),
    "batch32": (32, 64),
}
TARGETS = dict(matmul=0.95, train=1.3)


def build_parser():
    parser = common.base_parser(__doc__)
    parser.add_argument("--json", help="also write every figure to this JSON file")
    parser.add_argument("--skip", action="append", default=[],
                        choices=["matmul", "train", "allreduce"], help="leave a section out")
    parser.add_argument("--matmul-n", type=int, default=MATMUL_N,
                        help=f"matrix side (default {MATMUL_N}; smaller only for smoke tests)")
    parser.add_argument("--train-configs", default=",".join(TRAIN_CONFIGS),
                        help=f"training configurations to run (default: all of "
                             f"{','.join(TRAIN_CONFIGS)})")
    parser.add_argument("--mpirun", default=None,
                        help="the MPI launcher (default: $MPIRUN, beside this Python, or on PATH)")
    parser.add_argument("--profile", action="store_true", help="(other benchmarks'; ignored here)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="(other benchmarks'; ignored here)")
    hidden = argparse.SUPPRESS  # the mpirun worker
    parser.add_argument("--worker", choices=["allreduce"], help=hidden)
    parser.add_argument("--path", choices=gpu_allreduce.PATHS, help=hidden)
    parser.add_argument("--result", help=hidden)
    return parser


if __name__ == "__main__":
    ARGS = common.bootstrap(build_parser())  # may re-exec: before numpy is imported

import gpu_measure  # noqa: E402  (matmul, training step; it imports numpy: after bootstrap)


# ---- is there a GPU? -----------------------------------------------------------------------------
def gpu_status() -> tuple[bool, str]:
    """(usable, what): whether minigt sees a GPU through CuPy, and a line saying why (not)."""
    try:
        import cupy
    except ImportError as error:
        return False, f"CuPy is not installed ({error})"
    import minigt

    if not minigt.cuda_available():
        try:
            count = cupy.cuda.runtime.getDeviceCount()
            why = f"CuPy {cupy.__version__} sees {count} device(s)"
        except Exception as error:  # no driver, no device
            why = f"CuPy {cupy.__version__}: {type(error).__name__}: {error}"
        return False, why
    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.runtime.getDevice())
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    return True, (f"{name}, {props['totalGlobalMem'] / 2**30:.0f} GiB | CuPy {cupy.__version__}, "
                  f"CUDA runtime {cupy.cuda.runtime.runtimeGetVersion()}, driver "
                  f"{cupy.cuda.runtime.driverGetVersion()}")


# ---- the report ----------------------------------------------------------------------------------
def main(args) -> int:
    started = time.perf_counter()
    ok, what = gpu_status()
    if not ok:
        print(f"no GPU: {what}. bench_gpu measured nothing.", flush=True)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"gpu": None, "reason": what}, f)
        return 0
    torch = common.load_torch(args)
    try:
        pools = common.pin_threads(args.threads, torch)
    except Exception as error:  # threadpoolctl missing: the GPU figures do not depend on it
        pools = []
        print(f"    (threads not pinned: {error})")
    import cupy

    import minigt

    print(common.header(args, torch, pools))
    torch_line = "not used"
    if torch is not None:
        torch_line = (f"{torch.__version__}, CUDA {torch.version.cuda}, "
                      f"cuda available {torch.cuda.is_available()}, matmul allow_tf32 "
                      f"{torch.backends.cuda.matmul.allow_tf32}")
    print(f"    GPU: {what}\n    minigt {minigt.__version__} | PyTorch {torch_line} | "
          f"CUPY_TF32={os.environ.get('CUPY_TF32', '0')} | CuPy memory pool: "
          f"{type(cupy.get_default_memory_pool()).__name__}", flush=True)
    report: dict = {"gpu": what}
    fake = getattr(cupy, "IS_FAKE", False)
    if fake:
        print("    FAKE GPU: this `cupy` is tests/gpu/fake_cupy.py's NumPy stand-in; every figure "
              "below is NumPy on the CPU, not a GPU measurement.")
    missed = False

    summary_rows = []
    if "matmul" not in args.skip:
        res = gpu_measure.bench_matmul(args, torch)
        report["matmul"] = res
        rows, ratio = gpu_measure.matmul_rows(res)
        n = args.matmul_n
        common.print_table(f"matmul {n}x{n} float32 (median of rounds)", rows,
                           ["", "TFLOP/s", "ms per product", "vs CuPy raw"])
        verdict = "PASS" if ratio >= TARGETS["matmul"] else "MISS"
        missed |= verdict == "MISS"
        summary_rows.append([f"matmul {n}² f32, TFLOP/s", f"{res['minigt']['tflops']:.1f}",
                             f"CuPy {res['CuPy raw']['tflops']:.1f}", f"{ratio:.3f}×",
                             f"≥ {TARGETS['matmul']}×", verdict])
        if "PyTorch" in res:
            summary_rows.append(["  same, vs PyTorch", f"{res['minigt']['tflops']:.1f}",
                                 f"PyTorch {res['PyTorch']['tflops']:.1f}",
                                 f"{res['minigt']['tflops'] / res['PyTorch']['tflops']:.3f}×",
                                 "(info)", "—"])

    if "train" not in args.skip:
        res = gpu_measure.bench_train(args, torch, TRAIN_CONFIGS)
        report["train"] = res
        rows = []
        for config, entry in res.items():
            for name in ("minigt", "PyTorch"):
                if name in entry:
                    e = entry[name]
                    rows.append([config, entry["batch"], name,
                                 f"{e['seconds'] * 1e3:.2f} ±{e['spread'] * 100:.0f}%",
                                 f"{e['samples_per_s']:.1f}", e["steps"],
                                 f"{entry['warmup_s'][name]:.1f}"])
            theirs = entry.get("PyTorch")
            ratio = entry["minigt"]["seconds"] / theirs["seconds"] if theirs else None
            verdict = common.verdict(ratio, TARGETS["train"])
            missed |= verdict == "MISS"
            summary_rows.append([f"train step, {config} (batch {entry['batch']}), ms",
                                 f"{entry['minigt']['seconds'] * 1e3:.2f}",
                                 f"PyTorch {theirs['seconds'] * 1e3:.2f}" if theirs else "n/a",
                                 common.fmt_ratio(ratio), f"≤ {TARGETS['train']}×", verdict])
        note = ("Median wall time of a whole step (each ends reading the loss and the accuracy "
                "count, so the GPU has finished). Warm-up: the untimed first steps, where CuPy "
                "compiles its kernels (cached on disk afterwards).")
        diffs = [f"{c}: {e['loss_rel_diff_first_steps']:.1e}" for c, e in res.items()
                 if "loss_rel_diff_first_steps" in e]
        if diffs:
            note += (" Same weights and batches: first-step losses agree to a relative "
                     + ", ".join(diffs) + ".")
        common.print_table("Training step, train_pixel's model: minigt vs PyTorch eager, same GPU",
                           rows, ["config", "batch", "framework", "median step, ms",
                                  "samples/s", "timed steps", "warm-up s"], note=note)

    if "allreduce" not in args.skip:
        res = gpu_allreduce.bench_allreduce(args, os.path.abspath(__file__))
        report["allreduce"] = res
        rows, summary = gpu_allreduce.allreduce_rows(res)
        common.print_table(f"all_reduce of {gpu_allreduce.ALLREDUCE_BYTES // 2**20} MB float32, "
                           f"2 ranks sharing the GPU, each path forced (MINIGT_COLLECTIVES)", rows,
                           ["path", "median ms (GPU memory)", "GB/s",
                            "ref: host memory via MPI, ms", "note"])
        for path in gpu_allreduce.PATHS:
            summary_rows.append([f"all_reduce 64 MB, 2 ranks, path {path}, ms",
                                 f"{summary[path] * 1e3:.2f}" if path in summary else "n/a",
                                 "—", "—", "—", "measured" if path in summary else "unavailable"])

    common.print_table("GPU summary" + (" (FAKE GPU: NumPy on the CPU)" if fake else ""),
                       summary_rows,
                       ["measure", "minigt", "reference", "ratio", "target", "result"],
                       note=f"GPU: {what}")
    print(f"\nbench_gpu: {time.perf_counter() - started:.0f} s in all", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1, default=str)
    return 2 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(gpu_allreduce.allreduce_worker(ARGS) if ARGS.worker else main(ARGS))
