"""Shared helpers of the GPU tests (tests/gpu/): marks, mpirun, subprocess runs, a tiny model.

The package tests the GPU code paths with fakes on any machine, and for real where CuPy sees a GPU.
Without a GPU (as in CI) these run:
1. test_backend.py: the backend interface against a fake CuPy module object (`backends._cupy`
   monkeypatched): array_module, device_of, to_device, parse_device, scatter_add and erf dispatch;
2. test_gpu_formulas.py: the sync-free formulations ops use on a GPU (attention's fully masked
   rows, cross_entropy's and embedding's range checks, one_hot, clip_grad_norm_), selected on
   NumPy arrays by monkeypatching `backends.host_checks`, against the CPU formulations; and a
   whole training step on arrays that refuse to be read on the host (a CPU stand-in for
   `cupyx.allow_synchronize(False)`);
3. test_transports.py: the transports with fakes: the MPI transport waits for the stream before
   each MPI call on device memory, the host-copy transport stages through host memory, the NCCL
   transport's calls; $MINIGT_COLLECTIVES forces each path;
4. test_fake_gpu.py: fake_cupy.FAKE_CUPY, a stand-in `cupy` package made of NumPy, written to a
   temporary folder and put first on the PYTHONPATH of a subprocess: minigt then takes every CuPy
   branch. Under it examples/train_pixel.py --device cuda, the collectives under `mpirun -n 2`
   (host-copy path) and benchmarks/bench_gpu.py run end to end.
   `python tests/gpu/fake_cupy.py write-fake DIR` writes it for use by hand
   (e.g. `PYTHONPATH=DIR pytest tests/property -m gpu`).

With a GPU, the tests marked `gpu` (test_on_gpu.py) also run: train_pixel on cuda against the
CPU, a training step under `cupyx.allow_synchronize(False)`, the Pixel Transformer against
PyTorch on CUDA, each collective path forced under `mpirun -n 2` and compared with NumPy and with
each other, and a 2-rank train_pixel run on cuda. Where CuPy is the fake, the same tests run on it.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import minigt as gt
from minigt.distributed import world
from minigt.nn import functional as F

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
LAUNCHER_VARIABLES = ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE",
                      "MV2_COMM_WORLD_RANK", "MV2_COMM_WORLD_SIZE", "PMIX_RANK")

ON_GPU = gt.cuda_available()
needs_gpu = [pytest.mark.gpu, pytest.mark.skipif(not ON_GPU, reason="needs CuPy and a GPU")]
without_gpu = pytest.mark.skipif(ON_GPU, reason="a CPU-only check (the GPU runs the real thing)")

# every test module here: `pytestmark = single_process`
single_process = pytest.mark.skipif(world.launcher_rank_size() is not None,
                                    reason="single-process tests (they launch mpirun themselves)")


def gpu_test(fn):
    for mark in reversed(needs_gpu):
        fn = mark(fn)
    return fn


def find_mpirun() -> str | None:
    """$MPIRUN, else mpirun/mpiexec beside this Python, else on PATH."""
    if os.environ.get("MPIRUN"):
        return os.environ["MPIRUN"]
    for name in ("mpirun", "mpiexec"):
        beside = Path(sys.executable).with_name(name)
        if os.access(beside, os.X_OK):
            return str(beside)
    return shutil.which("mpirun") or shutil.which("mpiexec")


MPIRUN = find_mpirun()
needs_mpirun = pytest.mark.skipif(MPIRUN is None, reason="no mpirun/mpiexec found")


def run(args, *, ranks: int = 0, timeout: int = 240, pythonpath=(), program=sys.executable,
        **env):
    """Run `python *args` (or `program *args`; alone, or under `mpirun -n ranks`) in the
    repository root."""
    environ = {k: v for k, v in os.environ.items()
               if k not in LAUNCHER_VARIABLES and k != "MINIGT_TRACE"}
    path = [str(p) for p in pythonpath] + [str(ROOT)] + (
        [environ["PYTHONPATH"]] if environ.get("PYTHONPATH") else [])
    environ.update(OMP_NUM_THREADS="1", MPIEXEC_TIMEOUT=str(timeout - 20),
                   OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                   PYTHONPATH=os.pathsep.join(path), **env)
    command = [program, *args]
    if ranks:
        command = [MPIRUN, "-n", str(ranks), *command]
    return subprocess.run(command, cwd=ROOT, env=environ, capture_output=True, text=True,
                          timeout=timeout)


def pixel_model():
    sys.path.insert(0, str(EXAMPLES))
    try:
        from pixel_transformer import PixelTransformer
    finally:
        sys.path.remove(str(EXAMPLES))
    gt.manual_seed(0)
    return PixelTransformer(img=4, seq=3, dim=8, heads=2, layers=1, ff=16)


def train_step(model, optimizer, x, y, loss_kind):
    """One SGD step of `model` on (x, y) with an "mse" or "ce" loss; returns the loss and the
    count of correct predictions, both left on the device."""
    logits = model(x)
    if loss_kind == "ce":
        loss = F.cross_entropy(logits, y)
    else:
        loss = F.mse_loss(logits, F.one_hot(y, 10).to(logits.dtype))
    optimizer.zero_grad()
    loss.backward()
    gt.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    return loss, (logits.argmax(-1) == y).sum()
