"""Under the NumPy stand-in for cupy (fake_cupy.py, first on a subprocess's PYTHONPATH) minigt
takes every CuPy branch: examples/train_pixel.py --device cuda, the cuda half of every test suite,
benchmarks/bench_gpu.py and the whole of scripts/gpu_check.sh run end to end."""
from __future__ import annotations

import json
import sys
import textwrap

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


def test_bench_gpu_says_no_gpu_and_exits_0_without_one():
    if ON_GPU:
        pytest.skip("a GPU is here: bench_gpu.py would measure it")
    done = run(["benchmarks/bench_gpu.py", "--quick"], timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("no GPU: ") and "measured nothing" in done.stdout


# The suites scripts/gpu_check.sh reports: on the fake every cuda test (marked gpu) takes minigt's
# CuPy branches (PyTorch, seeing no CUDA, stays on the CPU); the two train_pixel runs on cuda.
SUITES = ["tests/core", "tests/gpu", "tests/nn", "tests/optim", "tests/property",
          "tests/test_serialization.py", "tests/distributed (mpirun -n 2)"]
RUNS = ["train_pixel --device cuda", "mpirun -n 2 train_pixel --device cuda"]


@needs_mpirun
def test_gpu_check_script_runs_everything_on_the_fake_gpu(fake_gpu, tmp_path):
    """scripts/gpu_check.sh end to end: the cuda half of every suite passes, the examples run on
    cuda, the benchmark prints its tables, and the report's table says so."""
    bench = "--quick --no-torch --matmul-n 256 --train-configs brief"
    done = run(["scripts/gpu_check.sh"], program="bash", pythonpath=[fake_gpu], timeout=500,
               PYTHON=sys.executable, GPU_CHECK_OUT=str(tmp_path), GPU_CHECK_BENCH_ARGS=bench)
    report = done.stdout[done.stdout.find("## GPU check"):]
    assert done.returncode == 0, report + done.stderr[-2000:]
    rows = {row[0]: row[1:] for row in (line.split("\t") for line in
                                        (tmp_path / "results.tsv").read_text().splitlines())}
    assert sorted(rows) == sorted(SUITES + RUNS), report
    for suite in SUITES:
        passed, failed, errors, _, status = rows[suite]
        assert status == "ok" and int(passed) > 0 and failed == errors == "0", (suite, report)
    for label in RUNS:
        assert rows[label][-1].startswith("ok: Trained"), (label, report)
    for title in ("### matmul 256x256 float32", "### Training step", "### all_reduce of 64 MB",
                  "### GPU summary", "FAKE GPU", "| suite "):
        assert title in report, report
    results = json.loads((tmp_path / "bench_gpu.json").read_text())
    assert results["allreduce"]["host"]["available"] and results["allreduce"]["host"]["correct"]
    assert not results["allreduce"]["nccl"]["available"]  # the fake has no cupy.cuda.nccl
    assert not results["allreduce"]["mpi"]["available"]  # nor a CUDA-aware MPI
