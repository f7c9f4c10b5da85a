"""The same training run at any number of ranks, data- or tensor-parallel, gives the same losses.

Each case launches `mpirun -n N examples/train_pixel.py` on a tiny model and compares every
step's loss (`--out` JSON) with the one-process run: float64 within 1e-6 relative (observed
~1e-15: only the order of sums changes), float32 within 1e-4.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
MPIRUN = shutil.which("mpirun", path=os.path.dirname(sys.executable))
TINY = ["--img", "8", "--seq", "4", "--dim", "16", "--heads", "4", "--layers", "2", "--ff", "32",
        "--n", "12", "--batch", "4", "--epochs", "2"]

pytestmark = pytest.mark.skipif(MPIRUN is None, reason="no mpirun beside this Python (pip install mpich)")


def step_losses(tmp_path: Path, ranks: int, *flags: str, env: dict | None = None) -> np.ndarray:
    out = tmp_path / f"run-{len(list(tmp_path.glob('run-*.json')))}.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPIEXEC_TIMEOUT": "120", **(env or {})}
    command = [MPIRUN, "-n", str(ranks), sys.executable, str(ROOT / "examples" / "train_pixel.py"),
               *TINY, *flags, "--out", str(out)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    epochs = [line for line in done.stdout.splitlines() if line.startswith("Epoch ")]
    assert epochs and len(epochs) == len(set(epochs)), "each epoch line once, by rank 0 alone"
    step_losses.stdout = done.stdout
    return np.array(json.loads(out.read_text())["step_losses"])


@pytest.mark.parametrize("dtype, tolerance", [("float64", 1e-6), ("float32", 1e-4)])
@pytest.mark.parametrize("ranks, flags", [
    (2, ()), (3, ()), (2, ("--tp", "2")), (4, ("--tp", "2")),
    (3, ("--shard-optimizer",)), (4, ("--tp", "2", "--shard-optimizer")), (3, ("--fsdp",)),
], ids=["n2", "n3-uneven", "n2-tp2", "n4-dp2xtp2", "n3-sharded-optimizer", "n4-dp2xtp2-sharded",
        "n3-fsdp"])
def test_losses_do_not_depend_on_the_number_of_ranks(tmp_path, ranks, flags, dtype, tolerance):
    single = step_losses(tmp_path, 1, "--dtype", dtype)
    many = step_losses(tmp_path, ranks, "--dtype", dtype, *flags)
    assert many.shape == single.shape
    np.testing.assert_allclose(many, single, rtol=tolerance)


@pytest.mark.parametrize("mode", ["--shard-optimizer", "--fsdp"])
def test_eight_ranks_at_batch_two_match_one_process(tmp_path, mode):
    """The brief's layout, `mpirun -n 8` at batch 2: six ranks hold no rows each step, and every
    parameter's rows (16 or 4 here) leave some ranks empty-handed too."""
    single = step_losses(tmp_path, 1, "--dtype", "float64", "--batch", "2")
    eight = step_losses(tmp_path, 8, "--dtype", "float64", "--batch", "2", mode)
    np.testing.assert_allclose(eight, single, rtol=1e-6)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_checkpoint_resumes_at_any_parallel_layout(tmp_path, optimizer):
    """Written at 1 data x 2 tensor-parallel ranks after one epoch, resumed at the same layout and
    at 3 data-parallel ranks: the run goes on as if uninterrupted (Adam's moments, like the
    weights, are saved whole and each rank takes its slice back)."""
    flags = ["--dtype", "float64", "--optim", optimizer]
    straight = step_losses(tmp_path, 1, *flags, "--epochs", "2")
    checkpoint = tmp_path / "state.npz"
    step_losses(tmp_path, 2, *flags, "--epochs", "1", "--checkpoint", str(checkpoint), "--tp", "2")
    for ranks, layout in [(2, ["--tp", "2"]), (3, [])]:
        resume_from = tmp_path / f"resume-{ranks}.npz"
        shutil.copy(checkpoint, resume_from)  # each run rewrites the checkpoint it resumed from
        resumed = step_losses(tmp_path, ranks, *flags, "--epochs", "2", "--checkpoint",
                              str(resume_from), "--resume", *layout)
        np.testing.assert_allclose(resumed, straight, rtol=1e-9, err_msg=f"-n {ranks} {layout}")


def test_a_sharded_checkpoint_resumes_unsharded_and_back(tmp_path):
    """Adam's state saved by the sharded optimizer on 3 ranks (batch 2: one rank holds no rows)
    resumes in one process, and one process's checkpoint resumes fully sharded on 4 ranks."""
    flags = ["--dtype", "float64", "--optim", "adam", "--batch", "2"]
    straight = step_losses(tmp_path, 1, *flags, "--epochs", "3")
    sharded = tmp_path / "sharded.npz"
    step_losses(tmp_path, 3, *flags, "--epochs", "1", "--checkpoint", str(sharded), "--shard-optimizer")
    step_losses(tmp_path, 1, *flags, "--epochs", "2", "--checkpoint", str(sharded), "--resume")
    resumed = step_losses(tmp_path, 4, *flags, "--epochs", "3", "--checkpoint", str(sharded),
                          "--resume", "--fsdp")
    np.testing.assert_allclose(resumed, straight, rtol=1e-9)


def test_gt_auto_shard_makes_training_data_parallel_unchanged(tmp_path):
    single = step_losses(tmp_path, 1, "--dtype", "float64")
    auto = step_losses(tmp_path, 3, "--dtype", "float64", env={"GT_AUTO_SHARD": "1"})
    assert step_losses.stdout.count("GT_AUTO_SHARD: 3 rank(s), device cpu") == 1
    np.testing.assert_allclose(auto, single, rtol=1e-6)
