"""How a multi-rank job ends when its ranks go different ways: each case is a short program run
under `mpirun -n N` that must end within 20 s, with a non-zero status and a clear message (or
status 0 when every rank ends), never a hang or a wrong number printed.

The in-process cases (mismatched shapes, lines, layers) are tests/distributed/test_checks.py;
these need a job of their own because the job ends.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from minigt.distributed import world

ROOT = Path(__file__).resolve().parents[2]
MPIRUN = shutil.which("mpirun", path=os.path.dirname(sys.executable))
DEADLINE_S = 20

pytestmark = [
    pytest.mark.skipif(MPIRUN is None, reason="no mpirun beside this Python (pip install mpich)"),
    pytest.mark.skipif(world.launcher_rank_size() is not None, reason="starts jobs of its own"),
]

TRAINING = """
import os, signal, sys
import minigt as gt
import minigt.distributed as dist
from minigt import nn

gt.manual_seed(0)
model = nn.Linear(4, 1)
x = dist.shard(gt.randn(8, 4), 0)
rank = dist.rank()
"""


def job(tmp_path: Path, program: str, ranks: int = 2) -> tuple[subprocess.CompletedProcess, float]:
    """Run TRAINING + `program` as a script under mpirun; (the finished run, its seconds)."""
    script = tmp_path / "job.py"
    script.write_text(TRAINING + textwrap.dedent(program))
    env = {k: v for k, v in os.environ.items() if k != "MINIGT_TRACE"}
    env.update(OMP_NUM_THREADS="1", MPIEXEC_TIMEOUT="60")  # a hang ends at 60 s, and fails below
    start = time.perf_counter()
    done = subprocess.run([MPIRUN, "-n", str(ranks), sys.executable, str(script)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=90)
    return done, time.perf_counter() - start


def ended_with_error(done, seconds: float, *messages: str) -> None:
    assert done.returncode != 0, done.stdout + done.stderr
    assert seconds < DEADLINE_S, f"took {seconds:.0f} s"
    for message in messages:
        assert message in done.stderr, done.stderr


def test_logging_the_loss_on_rank_0_alone_stops_every_rank(tmp_path):
    """The PyTorch habit: rank 0's .item() would be paired with rank 1's next all-reduce."""
    done, seconds = job(tmp_path, """
        for step in range(3):
            loss = (model(x) ** 2).mean()
            model.zero_grad()
            loss.backward()
            if rank == 0:
                print(f"step {step}: loss {loss.item():.4f}")
    """)
    ended_with_error(done, seconds, "CollectiveMismatch", "print(f\"step {step}: loss",
                     "Reading a DTensor's value is a collective too")
    assert "step 0: loss" not in done.stdout  # no number at all rather than a wrong one


def test_reading_on_rank_0_after_the_others_finished(tmp_path):
    done, seconds = job(tmp_path, """
        loss = (model(x) ** 2).mean()
        if rank == 0:
            print(loss.item())
    """)
    ended_with_error(done, seconds, "rank 1: has exited: its program ended",
                     "rank 0: all_reduce (sum) of float32 () at")


@pytest.mark.parametrize("status, ranks", [(0, 2), (3, 3)])
def test_sys_exit_on_one_rank_ends_the_job(tmp_path, status, ranks):
    done, seconds = job(tmp_path, f"""
        if rank == 1:
            sys.exit({status})
        (model(x) ** 2).mean().backward()
    """, ranks)
    ended_with_error(done, seconds, f"rank 1: has exited: sys.exit({status}) at {tmp_path}",
                     "rank 0: all_reduce (sum) of float32 (5,)")


def test_a_rank_leaving_a_tensor_parallel_job_is_seen_in_its_tensor_group(tmp_path):
    """4 ranks as dp 2 x tp 2: rank 1 leaves while rank 0 waits for it in their tensor group."""
    done, seconds = job(tmp_path, """
        import numpy as np
        from minigt.distributed import collectives
        dist.init_parallel(tensor_parallel=2)
        if rank == 1:
            sys.exit(0)
        if rank == 0:
            collectives.all_reduce(np.ones(3), group=dist.tensor_group())
    """, ranks=4)
    ended_with_error(done, seconds, "rank 1: has exited: sys.exit(0)",
                     "rank 0: all_reduce (sum) of float64 (3,)")


def test_sigterm_on_one_rank_ends_the_job_with_its_stack(tmp_path):
    done, seconds = job(tmp_path, """
        if rank == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        (model(x) ** 2).mean().backward()
    """)
    script = tmp_path / "job.py"
    line = script.read_text().splitlines().index("    os.kill(os.getpid(), signal.SIGTERM)") + 1
    ended_with_error(done, seconds, f'File "{script}", line {line}')  # faulthandler's stack


@pytest.mark.parametrize("program", [
    "sys.exit(0)",
    "if rank == 1:\n    sys.exit(0)\ny = x * 2",  # rank 1 leaves first; rank 0 ends without it
], ids=["every-rank", "one-rank-early"])
def test_ranks_that_all_leave_end_the_job_normally(tmp_path, program):
    done, seconds = job(tmp_path, "(model(x) ** 2).mean().backward()\n" + program)
    assert done.returncode == 0, done.stderr
    assert seconds < DEADLINE_S
