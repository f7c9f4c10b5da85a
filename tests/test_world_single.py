"""minigt.distributed run as one process, plus short mpirun jobs started from here.

The jobs check what one process cannot: a failing rank ends the whole job quickly, and a trace
gathers every rank. The MPI test suite proper is tests/distributed, run under mpirun.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from minigt.distributed import collectives, trace, transports, world

ROOT = Path(__file__).resolve().parents[1]
MPIRUN = Path(sys.executable).with_name("mpirun")
LAUNCHER_VARIABLES = ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE",
                      "MV2_COMM_WORLD_RANK", "MV2_COMM_WORLD_SIZE", "PMIX_RANK")
BLOCK_MPI4PY = "import sys; sys.modules['mpi4py'] = None  # as if not installed\n"

pytestmark = pytest.mark.skipif(world.launcher_rank_size() is not None,
                                reason="single-process tests: run them without mpirun")


def run(code: str, *, ranks: int = 0, **env) -> subprocess.CompletedProcess:
    """Run Python `code` alone (ranks=0) or under `mpirun -n ranks`, with extra `env`."""
    environ = {k: v for k, v in os.environ.items()
               if k not in LAUNCHER_VARIABLES and k != "MINIGT_TRACE"}
    environ.update(OMP_NUM_THREADS="1", MPIEXEC_TIMEOUT="60", **env)
    command = [sys.executable, "-c", code]
    if ranks:
        command = [str(MPIRUN), "-n", str(ranks), *command]
    return subprocess.run(command, cwd=ROOT, env=environ, capture_output=True, text=True,
                          timeout=90)


# ---- the world of one ----------------------------------------------------------------------------


def test_alone_without_a_launcher():
    assert (world.rank(), world.world_size(), world.local_rank(), world.comm()) == (0, 1, 0, None)


def test_alone_every_group_is_this_rank():
    world.init_parallel(1)
    alone = world.Group(None, 0, 1)
    assert world.tensor_group() == world.data_group() == world.world_group() == alone
    with pytest.raises(ValueError, match="tensor_parallel=2 .* world size 1"):
        world.init_parallel(2)


@pytest.mark.parametrize("environ, expected", [
    ({}, None),
    ({"PMI_RANK": "1", "PMI_SIZE": "4"}, (1, 4)),
    ({"OMPI_COMM_WORLD_RANK": "3", "OMPI_COMM_WORLD_SIZE": "8"}, (3, 8)),
    ({"PMIX_RANK": "2"}, (2, None)),
])
def test_launcher_detection(environ, expected):
    assert world.launcher_rank_size(environ) == expected


def test_importing_minigt_leaves_mpi4py_alone():
    # Even under a launcher: mpi4py is imported on the first call into the world, not before.
    done = run("import sys, minigt, minigt.distributed, minigt.distributed.collectives\n"
               "assert 'mpi4py' not in sys.modules, 'mpi4py imported'", PMI_RANK="0", PMI_SIZE="1")
    assert done.returncode == 0, done.stderr


def test_without_mpi4py_one_rank_still_runs():
    done = run(BLOCK_MPI4PY + "from minigt.distributed import world\n"
               "assert (world.rank(), world.world_size()) == (0, 1)", PMI_RANK="0", PMI_SIZE="1")
    assert done.returncode == 0, done.stderr


def test_without_mpi4py_many_ranks_is_an_error():
    done = run(BLOCK_MPI4PY + "from minigt.distributed import world\nworld.rank()",
               PMI_RANK="0", PMI_SIZE="2")
    assert done.returncode != 0 and "mpi4py is not installed" in done.stderr


# ---- collectives with one rank are copies --------------------------------------------------------


def test_one_rank_collectives_copy():
    x = np.arange(12.0).reshape(3, 4).T  # not contiguous
    for out in (collectives.all_reduce(x, "mean"), collectives.all_gather(x, 1),
                collectives.reduce_scatter(x, 0), collectives.broadcast(x)):
        np.testing.assert_array_equal(out, x)
        assert not np.shares_memory(out, x)
    collectives.barrier()
    assert collectives.exchange_sizes(5) == [5]


def test_one_rank_collectives_check_their_arguments():
    with pytest.raises(ValueError, match="add up"):
        collectives.reduce_scatter(np.ones((4, 2)), 0, sizes=[3])
    with pytest.raises(ValueError, match="rank 0"):
        collectives.all_gather(np.ones((4, 2)), 0, sizes=[3])
    with pytest.raises(ValueError, match="out of range"):
        collectives.all_gather(np.ones((4, 2)), 2)
    with pytest.raises(TypeError, match="floating"):
        collectives.all_reduce(np.ones(3, np.int64), "mean")


# ---- choosing a transport ------------------------------------------------------------------------


@pytest.mark.parametrize("on_gpu, setting, nccl_ok, cuda_aware, expected", [
    (False, "auto", True, True, "mpi"),  # host memory always goes through MPI
    (False, "nccl", False, False, "mpi"),
    (True, "auto", True, True, "nccl"),
    (True, "auto", False, True, "mpi"),
    (True, "auto", False, False, "host"),
    (True, "mpi", True, False, "mpi"),  # forced: trusted even when detection says no
    (True, "host", True, True, "host"),
    (True, "nccl", True, False, "nccl"),
])
def test_choose_path(on_gpu, setting, nccl_ok, cuda_aware, expected):
    assert transports.choose_path(on_gpu, setting, nccl_ok, cuda_aware) == expected


def test_choose_path_rejects_unknown_settings_and_missing_nccl():
    with pytest.raises(ValueError, match="auto, nccl, mpi, host"):
        transports.choose_path(False, "gloo", True, True)
    with pytest.raises(RuntimeError, match="NCCL is not usable"):
        transports.choose_path(True, "nccl", False, True)


class FakeGpuArray:
    """Stands in for a CuPy array on a machine without one."""


@pytest.fixture
def fake_gpu(monkeypatch):
    """A fake CuPy owning FakeGpuArray; returns a function setting what the machine offers."""
    fake_cupy = object()
    real_array_module = transports.array_module
    monkeypatch.setattr(transports, "array_module", lambda a: fake_cupy
                        if isinstance(a, FakeGpuArray) else real_array_module(a))
    monkeypatch.delenv("MINIGT_COLLECTIVES", raising=False)
    monkeypatch.setattr(transports, "_cache", {})  # none of these fakes outlive the test
    return lambda nccl, cuda_aware: (
        monkeypatch.setattr(transports, "nccl_available", lambda: nccl),
        monkeypatch.setattr(transports, "cuda_aware_mpi", lambda: cuda_aware),
    )


def test_select_transport_follows_the_machine(fake_gpu):
    assert transports.select_transport(np.ones(2)).name == "mpi"
    for nccl, cuda_aware, expected in [(True, False, "nccl"), (False, True, "mpi"),
                                       (False, False, "host")]:
        fake_gpu(nccl, cuda_aware)
        assert transports.select_transport(FakeGpuArray()).name == expected


def test_select_transport_obeys_the_environment(fake_gpu, monkeypatch):
    fake_gpu(True, True)
    monkeypatch.setenv("MINIGT_COLLECTIVES", "host")
    assert transports.select_transport(FakeGpuArray()).name == "host"
    assert transports.select_transport(np.ones(2)).name == "mpi"
    monkeypatch.setenv("MINIGT_COLLECTIVES", "NCCL")
    with pytest.raises(ValueError, match="MINIGT_COLLECTIVES='NCCL': expected one of auto, nccl"):
        transports.select_transport(FakeGpuArray())
    fake_gpu(False, False)
    monkeypatch.setenv("MINIGT_COLLECTIVES", "nccl")
    with pytest.raises(RuntimeError, match="NCCL is not usable"):
        transports.select_transport(FakeGpuArray())


def test_one_transport_per_group_until_released(fake_gpu):
    fake_gpu(True, False)
    group = world.Group(comm=object(), rank=0, size=2)  # a stand-in communicator, never called
    nccl = transports.select_transport(FakeGpuArray(), group)
    assert nccl.name == "nccl" and nccl.comm is group.comm
    assert transports.select_transport(FakeGpuArray(), group) is nccl
    assert transports.select_transport(FakeGpuArray()) is not nccl  # the world's is another
    destroyed = []
    nccl._nccl_comm = SimpleNamespace(destroy=lambda: destroyed.append(True))
    transports.release(group.comm)
    assert destroyed and transports.select_transport(FakeGpuArray(), group) is not nccl


def test_cuda_hints_in_the_environment():
    assert not transports._cuda_hint_in({})
    assert not transports._cuda_hint_in({"MPICH_GPU_SUPPORT_ENABLED": "0"})
    assert transports._cuda_hint_in({"MPICH_GPU_SUPPORT_ENABLED": "1"})
    assert transports._cuda_hint_in({"OMPI_MCA_opal_cuda_support": "true"})


# ---- trace and info ------------------------------------------------------------------------------


def test_trace_off_costs_a_shared_no_op():
    if trace.enabled():
        pytest.skip("MINIGT_TRACE is set")
    assert trace.span("a", "op", bytes=1) is trace.span("b")


def test_info_runs_without_mpi4py():
    done = run(BLOCK_MPI4PY + "import runpy; sys.argv = ['minigt', 'info']\n"
               "runpy.run_module('minigt', run_name='__main__')")
    assert done.returncode == 0, done.stderr
    for line in ("minigt ", "NumPy ", "CuPy ", "mpi4py       not installed, so no MPI",
                 "pip install 'minigt[mpi]'", "devices      cpu", "world        rank 0 of 1",
                 "collectives  none (one process only)"):
        assert line in done.stdout
    assert "mpi;" not in done.stdout, "without mpi4py, info must not name an MPI path"


# ---- real jobs -----------------------------------------------------------------------------------

RAISE_ON_RANK_1 = """
import threading
import numpy as np
from minigt.distributed import collectives, world

def fail():
    raise RuntimeError("rank 1 gives up")

if world.rank() == 1:
    if {in_thread}:
        threading.Thread(target=fail).start()
    else:
        fail()
collectives.all_reduce(np.ones(3))  # rank 0 waits here for a partner that never comes
collectives.barrier()  # (and so does rank 1, when its failure was in a thread)
"""


@pytest.mark.parametrize("in_thread", [False, True], ids=["main", "thread"])
def test_a_failing_rank_ends_the_job_quickly(in_thread):
    start = time.perf_counter()
    done = run(RAISE_ON_RANK_1.format(in_thread=in_thread), ranks=2)
    elapsed = time.perf_counter() - start
    assert done.returncode != 0
    assert elapsed < 30
    assert "[rank 1] RuntimeError: rank 1 gives up" in done.stderr
    assert "[rank 1] Traceback" in done.stderr


def test_trace_file_has_a_track_per_rank(tmp_path):
    path = tmp_path / "trace.json"
    done = run("import numpy as np\nfrom minigt.distributed import collectives, trace\n"
               "with trace.span('step', 'op'):\n"
               "    collectives.all_gather(np.ones((2, 3), np.float32), 0)",
               ranks=2, MINIGT_TRACE=str(path))
    assert done.returncode == 0, done.stderr
    events = json.loads(path.read_text())["traceEvents"]
    gathers = [e for e in events if e["name"] == "all_gather"]
    assert sorted(e["pid"] for e in gathers) == [0, 1]
    assert all(e["ph"] == "X" and e["args"]["bytes"] == 4 * 3 * 4 and e["dur"] >= 0
               for e in gathers)
    assert {e["pid"] for e in events if e["name"] == "step"} == {0, 1}


@pytest.mark.parametrize("ranks", [0, 2])
def test_a_trace_that_cannot_be_written_fails_the_job(tmp_path, ranks):
    """...while a run that traced nothing (it stopped at its arguments) keeps its exit status."""
    target = tmp_path / "missing-folder" / "trace.json"
    done = run("from minigt.distributed import trace\nwith trace.span('step', 'op'):\n    pass",
               ranks=ranks, MINIGT_TRACE=str(target))
    assert done.returncode != 0
    assert done.stderr.count(f"MINIGT_TRACE={target}: the trace could not be written") == 1
