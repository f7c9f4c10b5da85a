"""`train_pixel.py --resume` on several ranks decides once: rank 0 looks for the checkpoint and
reads it, every rank starts from what rank 0 read (or stops, when rank 0 finds none). Each rank here runs in a folder of its own
with a relative --checkpoint path, as ranks on machines with disks of their own would.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minigt.distributed import world

ROOT = Path(__file__).resolve().parents[2]
TRAIN = str(ROOT / "examples" / "train_pixel.py")
MPIRUN = shutil.which("mpirun", path=os.path.dirname(sys.executable))
TINY = ["--img", "8", "--seq", "4", "--dim", "16", "--heads", "4", "--layers", "1", "--ff", "32",
        "--n", "8", "--batch", "4", "--dtype", "float64", "--optim", "adam"]

pytestmark = [
    pytest.mark.skipif(MPIRUN is None, reason="no mpirun beside this Python (pip install mpich)"),
    pytest.mark.skipif(world.launcher_rank_size() is not None, reason="starts jobs of its own"),
]


def train(folders: list[Path], *flags) -> subprocess.CompletedProcess:
    """train_pixel.py with TINY and `flags`, one rank per folder (its working directory)."""
    command = [MPIRUN]
    for folder in folders:
        command += [":"] * (len(command) > 1) + ["-n", "1", "-wdir", str(folder),
                                                  sys.executable, TRAIN, *TINY, *map(str, flags)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPIEXEC_TIMEOUT": "60"}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=90)


def losses(done: subprocess.CompletedProcess, out: Path) -> np.ndarray:
    assert done.returncode == 0, done.stdout + done.stderr
    return np.array(json.loads(out.read_text())["step_losses"])


@pytest.fixture
def folders(tmp_path) -> tuple[Path, Path]:
    (tmp_path / "rank0").mkdir()
    (tmp_path / "rank1").mkdir()
    return tmp_path / "rank0", tmp_path / "rank1"


def test_a_checkpoint_only_rank_0_sees_resumes_every_rank(tmp_path, folders):
    out = tmp_path / "out.json"
    straight = losses(train(folders[:1], "--epochs", 2, "--out", out), out)
    train(folders[:1], "--epochs", 1, "--checkpoint", "state.npz")
    resumed = losses(train(folders, "--epochs", 2, "--checkpoint", "state.npz", "--resume",
                           "--out", out), out)
    np.testing.assert_allclose(resumed, straight, rtol=1e-9)


def test_a_checkpoint_only_rank_1_sees_is_not_there(folders):
    """Rank 0 finds none, so every rank stops, with one message; rank 1's file is left alone."""
    train(folders[1:], "--epochs", 1, "--checkpoint", "state.npz", "--seed", 7)
    theirs = (folders[1] / "state.npz").read_bytes()
    done = train(folders, "--epochs", 1, "--checkpoint", "state.npz", "--resume")
    assert done.returncode != 0
    assert done.stderr.count("--resume: no checkpoint at 'state.npz' (rank 0 finds no file") == 1
    assert "Epoch" not in done.stdout
    assert not (folders[0] / "state.npz").exists()
    assert (folders[1] / "state.npz").read_bytes() == theirs


def test_a_damaged_checkpoint_stops_every_rank_with_one_message(folders):
    (folders[0] / "state.npz").write_bytes(b"not a checkpoint")
    done = train(folders, "--epochs", 1, "--checkpoint", "state.npz", "--resume")
    assert done.returncode != 0
    message = "--resume: minigt.load: 'state.npz' is not a minigt checkpoint"
    assert done.stderr.count(message) == 1, done.stderr
    assert "Epoch" not in done.stdout
