"""The transports with fakes: the MPI transport waits for the stream before each MPI call on device
memory, the host-copy transport stages through host memory, the NCCL transport's calls;
$MINIGT_COLLECTIVES forces each path."""
from __future__ import annotations

import sys
import types
from types import SimpleNamespace

import numpy as np
import pytest

from minigt.distributed import transports, world

from .helpers import single_process

pytestmark = single_process

# ==== 3. the transports, with fakes ==============================================================


class FakeStream:
    def __init__(self, log):
        self.log, self.ptr = log, 1234

    def synchronize(self):
        self.log.append("stream.synchronize")


@pytest.fixture
def fake_cupy_module(monkeypatch):
    """A `cupy` (and `mpi4py`) in sys.modules for the transports' lazy imports; returns the log
    that the stream and the communicator write to."""
    log = []
    stream = FakeStream(log)
    cupy = types.ModuleType("cupy")
    cupy.cuda = types.ModuleType("cupy.cuda")
    cupy.cuda.get_current_stream = lambda: stream
    mpi = SimpleNamespace(IN_PLACE="IN_PLACE", SUM="SUM", MAX="MAX", MIN="MIN")
    mpi4py = types.ModuleType("mpi4py")
    mpi4py.MPI = mpi
    for name, module in (("cupy", cupy), ("cupy.cuda", cupy.cuda), ("mpi4py", mpi4py),
                         ("mpi4py.MPI", mpi)):
        monkeypatch.setitem(sys.modules, name, module)
    return log


class RecordingComm:
    """An mpi4py communicator of 2 ranks that logs each call; the 'other rank' mirrors this one."""

    def __init__(self, log):
        self.log = log

    def Get_rank(self):
        return 0

    def Get_size(self):
        return 2

    def bcast(self, obj, root=0):
        self.log.append("bcast(pickled)")
        return obj

    # every collective is made nonblocking (waiting.py); these finish at once
    def Iallreduce(self, send, recv, op):
        self.log.append(("Iallreduce", type(recv).__name__, op))
        if not isinstance(send, str):  # MPI.IN_PLACE here is the string "IN_PLACE"
            recv[...] = send
        recv *= 2
        return transports.DONE

    def Iallgatherv(self, send, spec):
        recv, counts = spec
        self.log.append(("Iallgatherv", type(recv).__name__, counts))
        if isinstance(send, str):  # in place: this rank (0)'s part is at the start of recv
            send = recv.reshape(-1)[:counts[0]].copy()
        recv.reshape(-1)[:] = np.concatenate([send.reshape(-1)] * 2)[:recv.size]
        return transports.DONE

    def Ireduce_scatter(self, send, recv, counts, op):
        self.log.append(("Ireduce_scatter", type(recv).__name__, counts, op))
        recv.reshape(-1)[:] = 2 * send.reshape(-1)[:recv.size]
        return transports.DONE

    def Ibcast(self, buf, root=0):
        self.log.append(("Ibcast", type(buf).__name__, root))
        return transports.DONE


@pytest.mark.parametrize("call", ["allreduce", "allreduce_in_place", "allgatherv",
                                  "reduce_scatter", "bcast"])
def test_mpi_transport_waits_for_the_stream_before_each_call_on_device_memory(
        call, fake_cupy_module):
    log = fake_cupy_module
    for on_gpu in (True, False):
        log.clear()
        transport = transports.MPITransport(RecordingComm(log), on_gpu=on_gpu)
        send, recv = np.ones(4, np.float32), np.empty(4, np.float32)
        if call == "allreduce":
            transport.allreduce(send, recv, "sum")
        elif call == "allreduce_in_place":
            transport.allreduce(send, send, "max")
        elif call == "allgatherv":
            transport.allgatherv(send[:2], recv, [2, 2])
        elif call == "reduce_scatter":
            transport.reduce_scatter(send, recv[:2], [2, 2], "sum")
        else:
            transport.bcast(send, 1)
        mpi_call = {"allreduce": "Iallreduce", "allreduce_in_place": "Iallreduce",
                    "allgatherv": "Iallgatherv", "reduce_scatter": "Ireduce_scatter",
                    "bcast": "Ibcast"}[call]
        assert [e if isinstance(e, str) else e[0] for e in log] == (
            ["stream.synchronize", mpi_call] if on_gpu else [mpi_call])  # the wait comes first


class FakeGpuBuffer:
    """A device buffer for the host-copy transport: get() copies out, set() copies in."""

    def __init__(self, host, log):
        self.host, self.log = np.array(host), log
        self.shape, self.dtype = self.host.shape, self.host.dtype

    def get(self):
        self.log.append("get")
        return self.host.copy()

    def set(self, array):
        self.log.append("set")
        self.host[...] = array


def test_host_copy_transport_stages_through_host_memory(fake_cupy_module):
    log = fake_cupy_module
    transport = transports.HostCopyTransport(transports.MPITransport(RecordingComm(log), False))
    send = FakeGpuBuffer(np.arange(4.0), log)
    recv = FakeGpuBuffer(np.zeros(4), log)
    transport.allreduce(send, recv, "sum")
    assert log == ["get", ("Iallreduce", "ndarray", "SUM"), "set"]  # MPI saw host memory only
    assert recv.host.tolist() == [0.0, 2.0, 4.0, 6.0]
    log.clear()
    transport.reduce_scatter(send, FakeGpuBuffer(np.zeros(2), log), [2, 2], "max")
    transport.allgatherv(FakeGpuBuffer(np.ones(2), log), FakeGpuBuffer(np.zeros(4), log), [2, 2])
    transport.bcast(send, 1)
    transport.allgatherv(None, FakeGpuBuffer(np.zeros(4), log), [2, 2])  # in place
    assert [e if isinstance(e, str) else e[0] for e in log] == [
        "get", "Ireduce_scatter", "set", "get", "Iallgatherv", "set", "get", "Ibcast", "set",
        "get", "Iallgatherv", "set"]


class FakeNccl(types.ModuleType):
    """cupy.cuda.nccl: records communicator calls."""

    NCCL_FLOAT32, NCCL_FLOAT64, NCCL_INT64, NCCL_UINT8 = 7, 8, 4, 1
    NCCL_SUM, NCCL_MAX, NCCL_MIN = 0, 2, 3

    def __init__(self, log):
        super().__init__("cupy.cuda.nccl")
        self.log = log
        nccl = self

        class NcclCommunicator:
            def __init__(self, size, uid, rank):
                nccl.log.append(("NcclCommunicator", size, uid, rank))

            def __getattr__(self, name):
                return lambda *args: nccl.log.append((name, *args))

        self.NcclCommunicator = NcclCommunicator

    def get_unique_id(self):
        return "uid"

    def groupStart(self):
        self.log.append("groupStart")

    def groupEnd(self):
        self.log.append("groupEnd")


class DeviceBuffer:
    def __init__(self, size, dtype=np.float32, ptr=1000):
        self.size, self.dtype = size, np.dtype(dtype)
        self.itemsize = self.dtype.itemsize
        self.data = SimpleNamespace(ptr=ptr)


def test_nccl_transport_calls(fake_cupy_module, monkeypatch):
    log = fake_cupy_module
    nccl = FakeNccl(log)
    monkeypatch.setitem(sys.modules, "cupy.cuda.nccl", nccl)
    sys.modules["cupy.cuda"].nccl = nccl
    transport = transports.NCCLTransport(RecordingComm(log))
    send, recv = DeviceBuffer(4, ptr=100), DeviceBuffer(4, ptr=200)
    transport.allreduce(send, recv, "sum")
    assert log == ["bcast(pickled)", ("NcclCommunicator", 2, "uid", 0),
                   ("allReduce", 100, 200, 4, nccl.NCCL_FLOAT32, nccl.NCCL_SUM, 1234)]
    log.clear()
    transport.allgatherv(DeviceBuffer(2, ptr=100), DeviceBuffer(4, ptr=200), [2, 2])
    assert log == [("allGather", 100, 200, 2, nccl.NCCL_FLOAT32, 1234)]  # even: one call
    log.clear()
    transport.allgatherv(DeviceBuffer(3, np.float64, ptr=100), DeviceBuffer(4, np.float64, ptr=200),
                         [3, 1])  # uneven: one broadcast per rank into its byte offset
    assert log == ["groupStart", ("broadcast", 100, 200, 3, nccl.NCCL_FLOAT64, 0, 1234),
                   ("broadcast", 100, 200 + 3 * 8, 1, nccl.NCCL_FLOAT64, 1, 1234), "groupEnd"]
    log.clear()
    transport.reduce_scatter(DeviceBuffer(4, ptr=100), DeviceBuffer(3, ptr=200), [3, 1], "max")
    assert log == ["groupStart", ("reduce", 100, 200, 3, nccl.NCCL_FLOAT32, nccl.NCCL_MAX, 0, 1234),
                   ("reduce", 112, 200, 1, nccl.NCCL_FLOAT32, nccl.NCCL_MAX, 1, 1234), "groupEnd"]
    log.clear()
    transport.bcast(DeviceBuffer(2, np.uint8, ptr=300), 1)
    assert log == [("broadcast", 300, 300, 2, nccl.NCCL_UINT8, 1, 1234)]
    with pytest.raises(TypeError, match="NCCL cannot carry dtype complex64"):
        transport.allreduce(DeviceBuffer(2, np.complex64), DeviceBuffer(2, np.complex64), "sum")
    assert "stream.synchronize" not in log  # NCCL runs on the stream: no wait


def test_nccl_is_unavailable_when_ranks_share_a_gpu(fake_cupy_module, monkeypatch):
    nccl = FakeNccl([])
    monkeypatch.setitem(sys.modules, "cupy.cuda.nccl", nccl)
    sys.modules["cupy.cuda"].nccl = nccl
    monkeypatch.setattr(transports, "gpu_count", lambda: 1)
    for ranks_here, expected in [(1, True), (2, False)]:
        monkeypatch.setattr(world, "local_size", lambda n=ranks_here: n)
        assert transports.nccl_available.__wrapped__() is expected
    nccl.available = False  # CuPy built without NCCL
    monkeypatch.setattr(world, "local_size", lambda: 1)
    assert transports.nccl_available.__wrapped__() is False


class GpuArrayStandIn:
    """A GPU array as far as select_transport can tell."""


@pytest.fixture
def machine(monkeypatch):
    """Set what this fake machine offers (NCCL, CUDA-aware MPI); GPU arrays are GpuArrayStandIn."""
    fake_module = object()
    real = transports.array_module
    monkeypatch.setattr(transports, "array_module",
                        lambda a: fake_module if isinstance(a, GpuArrayStandIn) else real(a))
    monkeypatch.setattr(transports, "_cache", {})
    monkeypatch.delenv("MINIGT_COLLECTIVES", raising=False)

    def offer(nccl: bool, cuda_aware: bool):
        monkeypatch.setattr(transports, "nccl_available", lambda: nccl)
        monkeypatch.setattr(transports, "cuda_aware_mpi", lambda: cuda_aware)

    return offer


@pytest.mark.parametrize("setting, kind, inner_on_gpu", [
    ("nccl", transports.NCCLTransport, None),
    ("mpi", transports.MPITransport, True),  # device memory straight to MPI: it must sync first
    ("host", transports.HostCopyTransport, False),  # MPI sees host copies: nothing to wait for
])
def test_forcing_each_path_selects_its_transport(setting, kind, inner_on_gpu, machine, monkeypatch):
    machine(nccl=True, cuda_aware=False)
    monkeypatch.setenv("MINIGT_COLLECTIVES", setting)
    group = world.Group(comm=object(), rank=0, size=2)
    transport = transports.select_transport(GpuArrayStandIn(), group)
    assert type(transport) is kind and transport.name == setting
    if kind is transports.MPITransport:
        assert transport.on_gpu is inner_on_gpu
    if kind is transports.HostCopyTransport:
        assert transport.mpi.on_gpu is inner_on_gpu
    # host memory ignores the setting
    assert transports.select_transport(np.ones(2), group).name == "mpi"


def test_auto_prefers_nccl_then_cuda_aware_mpi_then_host(machine, monkeypatch):
    group = world.Group(comm=object(), rank=0, size=2)
    for nccl, aware, expected in [(True, True, "nccl"), (False, True, "mpi"),
                                  (False, False, "host")]:
        machine(nccl=nccl, cuda_aware=aware)
        monkeypatch.setattr(transports, "_cache", {})
        monkeypatch.setenv("MINIGT_COLLECTIVES", "auto")
        assert transports.select_transport(GpuArrayStandIn(), group).name == expected

