"""Under the NumPy stand-in for cupy (fake_cupy.py, first on a subprocess's PYTHONPATH) minigt
takes every CuPy branch: examples/train_pixel.py --device cuda, the real-GPU tests and
benchmarks/bench_gpu.py run end to end."""
from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest

from .helpers import ON_GPU, needs_mpirun, run, single_process

pytestmark = single_process

def test_the_fake_cupy_behaves_like_cupy_where_it_matters(fake_gpu):
    done = run(["-c", textwrap.dedent("""
        import numpy as np, cupy, cupyx, minigt
        from minigt import backends
        assert minigt.cuda_available() and backends.array_module(cupy.zeros(2)) is cupy
        x = cupy.arange(6.0).reshape(2, 3)
        assert isinstance(x.sum(), cupy.ndarray) and x.sum().shape == ()
        assert isinstance(x.argmax(), cupy.ndarray) and isinstance(x[0, 1], cupy.ndarray)
        assert not isinstance(x.data, np.ndarray)           # a pointer, as in CuPy
        try:
            x + np.ones(3)
        except TypeError:
            pass
        else:
            raise AssertionError("mixing NumPy into a GPU op must fail")
        with cupyx.allow_synchronize(False):
            y = (x * 2).sum(axis=0)
            try:
                y.sum().item()
            except cupyx.DeviceSynchronized:
                pass
            else:
                raise AssertionError("item() must count as a sync")
        t = minigt.tensor([1.0, 2.0], device="cuda")
        assert t.device == "cuda:0" and (t * 2).tolist() == [2.0, 4.0]
        print("fake ok")
        """)], pythonpath=[fake_gpu], timeout=60)
    assert done.returncode == 0, done.stderr
    assert "fake ok" in done.stdout


def test_train_pixel_on_the_fake_gpu_matches_the_cpu(fake_gpu, tmp_path):
    argv = ["examples/train_pixel.py", "--img", "6", "--seq", "2", "--dim", "8", "--heads", "2",
            "--layers", "1", "--ff", "16", "--n", "8", "--batch", "4", "--epochs", "2"]
    losses = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / f"{device}.json"
        done = run([*argv, "--device", device, "--out", str(out)], pythonpath=[fake_gpu],
                   timeout=120)
        assert done.returncode == 0, done.stderr
        losses[device] = json.loads(out.read_text())["step_losses"]
    np.testing.assert_allclose(losses["cuda"], losses["cpu"], rtol=1e-5)


def test_gpu_tests_pass_on_the_fake_gpu(fake_gpu):
    """The GPU tests of tests/gpu/ (the real-GPU half, test_on_gpu.py), run against the fake:
    their own logic works."""
    done = run(["-m", "pytest", str(Path(__file__).parent), "-m", "gpu", "-o", "addopts=", "-q", "-rs",
                "-p", "no:cacheprovider", "-k", "not torch"], pythonpath=[fake_gpu], timeout=400)
    tail = done.stdout[-3000:] + done.stderr[-2000:]
    assert done.returncode == 0, tail
    assert re.search(r"\d+ passed", done.stdout), tail


def test_bench_gpu_says_no_gpu_and_exits_0_without_one():
    if ON_GPU:
        pytest.skip("a GPU is here: bench_gpu.py would measure it")
    done = run(["benchmarks/bench_gpu.py", "--quick"], timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("no GPU: ") and "measured nothing" in done.stdout


@needs_mpirun
def test_bench_gpu_runs_end_to_end_on_the_fake_gpu(fake_gpu, tmp_path):
    report = tmp_path / "bench.json"
    done = run(["benchmarks/bench_gpu.py", "--quick", "--no-torch", "--matmul-n", "256",
                "--train-configs", "brief", "--json", str(report)], pythonpath=[fake_gpu],
               timeout=400)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for title in ("### matmul 256x256 float32", "### Training step", "### all_reduce of 64 MB",
                  "### GPU summary", "FAKE GPU"):
        assert title in done.stdout, done.stdout
    results = json.loads(report.read_text())
    assert results["allreduce"]["host"]["available"] and results["allreduce"]["host"]["correct"]
    assert not results["allreduce"]["nccl"]["available"]  # the fake has no cupy.cuda.nccl
    assert not results["allreduce"]["mpi"]["available"]  # nor a CUDA-aware MPI

