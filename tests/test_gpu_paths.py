"""The GPU code paths: tested with fakes on any machine, and for real where CuPy sees a GPU.

Without a GPU (as in CI) these run:
1. the backend interface against a fake CuPy module object (`backends._cupy` monkeypatched):
   array_module, device_of, to_device, parse_device, scatter_add and erf dispatch;
2. the sync-free formulations ops use on a GPU (attention's fully masked rows, cross_entropy's
   and embedding's range checks, one_hot, clip_grad_norm_), selected on NumPy arrays by
   monkeypatching `backends.host_checks`, against the CPU formulations; and a whole training
   step on arrays that refuse to be read on the host (a CPU stand-in for
   `cupyx.allow_synchronize(False)`);
3. the transports with fakes: the MPI transport waits for the stream before each MPI call on
   device memory, the host-copy transport stages through host memory, the NCCL transport's calls;
   $MINIGT_COLLECTIVES forces each path;
4. FAKE_CUPY, a stand-in `cupy` package made of NumPy, written to a temporary folder and put
   first on the PYTHONPATH of a subprocess: minigt then takes every CuPy branch. Under it
   examples/train_pixel.py --device cuda, the collectives under `mpirun -n 2` (host-copy path)
   and benchmarks/bench_gpu.py run end to end. `python tests/test_gpu_paths.py write-fake DIR`
   writes it for use by hand (e.g. `PYTHONPATH=DIR pytest tests/property -m gpu`).

With a GPU, the tests marked `gpu` also run: train_pixel on cuda against the CPU, a training step
under `cupyx.allow_synchronize(False)`, the Pixel Transformer against PyTorch on CUDA, each
collective path forced under `mpirun -n 2` and compared with NumPy and with each other, and a
2-rank train_pixel run on cuda. Where CuPy is the fake, the same tests run on it.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import textwrap
import types
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import minigt as gt
from minigt import backends
from minigt.distributed import transports, world
from minigt.nn import functional as F
from minigt.tensor import Tensor

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
LAUNCHER_VARIABLES = ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE",
                      "MV2_COMM_WORLD_RANK", "MV2_COMM_WORLD_SIZE", "PMIX_RANK")

ON_GPU = gt.cuda_available()
needs_gpu = [pytest.mark.gpu, pytest.mark.skipif(not ON_GPU, reason="needs CuPy and a GPU")]
without_gpu = pytest.mark.skipif(ON_GPU, reason="a CPU-only check (the GPU runs the real thing)")

pytestmark = pytest.mark.skipif(world.launcher_rank_size() is not None,
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


def run(args, *, ranks: int = 0, timeout: int = 240, pythonpath=(), **env):
    """Run `python *args` (alone, or under `mpirun -n ranks`) in the repository root."""
    environ = {k: v for k, v in os.environ.items()
               if k not in LAUNCHER_VARIABLES and k != "MINIGT_TRACE"}
    path = [str(p) for p in pythonpath] + [str(ROOT)] + (
        [environ["PYTHONPATH"]] if environ.get("PYTHONPATH") else [])
    environ.update(OMP_NUM_THREADS="1", MPIEXEC_TIMEOUT=str(timeout - 20),
                   OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                   PYTHONPATH=os.pathsep.join(path), **env)
    command = [sys.executable, *args]
    if ranks:
        command = [MPIRUN, "-n", str(ranks), *command]
    return subprocess.run(command, cwd=ROOT, env=environ, capture_output=True, text=True,
                          timeout=timeout)


# ==== 1. the backend interface, with a fake CuPy module object ===================================


class FakeDeviceArray:
    """What minigt sees of a CuPy array: a host array inside, a device id, a pointer in .data."""

    def __init__(self, host, device_id: int = 0):
        self.host = np.asarray(host)
        self.device = SimpleNamespace(id=device_id)
        self.data = SimpleNamespace(ptr=id(self))  # as cupy.ndarray.data: a MemoryPointer
        self.dtype, self.shape = self.host.dtype, self.host.shape


@pytest.fixture
def fake_cupy(monkeypatch):
    """backends._cupy replaced by a module object recording what minigt asks of it."""
    calls = []
    current = [0]

    class Device:
        def __init__(self, index):
            self.index = index

        def __enter__(self):
            calls.append(("enter device", self.index))
            current.append(self.index)
            return self

        def __exit__(self, *exc):
            calls.append(("exit device", self.index))
            current.pop()
            return False

    def add_at(target, index, values):
        calls.append(("add.at",))
        np.add.at(target.host, index, values.host)

    fake = SimpleNamespace(
        ndarray=FakeDeviceArray,
        asnumpy=lambda a: calls.append(("asnumpy",)) or a.host.copy(),
        asarray=lambda a: calls.append(("asarray",)) or FakeDeviceArray(a, device_id=current[-1]),
        add=SimpleNamespace(at=add_at),
        cuda=SimpleNamespace(Device=Device, runtime=SimpleNamespace(getDevice=lambda: 1)),
    )
    monkeypatch.setattr(backends, "_cupy", fake)
    fake.calls = calls
    return fake


def test_array_module_and_device_of_dispatch_on_the_array_type(fake_cupy):
    on_gpu = FakeDeviceArray([1.0, 2.0], device_id=1)
    assert backends.array_module(on_gpu) is fake_cupy
    assert backends.array_module(np.zeros(2)) is np and backends.array_module(3.0) is np
    assert backends.device_of(on_gpu) == "cuda:1" and backends.device_of(np.zeros(1)) == "cpu"
    assert backends.module_for("cuda:1") is fake_cupy and backends.module_for("cpu") is np
    assert backends.cuda_available()
    assert not backends.host_checks(on_gpu) and backends.host_checks(np.zeros(1))


def test_parse_device_asks_cupy_for_the_current_gpu(fake_cupy):
    assert backends.parse_device("cuda") == "cuda:1"  # getDevice() above
    assert backends.parse_device("cuda:3") == "cuda:3"


def test_to_device_copies_in_the_target_gpu_context(fake_cupy):
    host = np.arange(3.0)
    on_gpu = backends.to_device(host, "cuda:1")
    assert isinstance(on_gpu, FakeDeviceArray) and on_gpu.device.id == 1
    assert fake_cupy.calls == [("enter device", 1), ("asarray",), ("exit device", 1)]
    assert backends.to_device(on_gpu, "cuda:1") is on_gpu  # already there
    back = backends.to_device(on_gpu, "cpu")
    assert fake_cupy.calls[-1] == ("asnumpy",) and back.tolist() == [0.0, 1.0, 2.0]
    with backends.device_context("cuda:1"):
        pass
    assert fake_cupy.calls[-2:] == [("enter device", 1), ("exit device", 1)]


def test_scatter_add_uses_cupy_add_at_or_cupyx_scatter_add(fake_cupy, monkeypatch):
    target = FakeDeviceArray(np.zeros(3))
    backends.scatter_add(target, np.array([2, 2, 0]), FakeDeviceArray(np.ones(3)))
    assert fake_cupy.calls == [("add.at",)] and target.host.tolist() == [1.0, 0.0, 2.0]
    # a CuPy without ufunc.at: cupyx.scatter_add
    fake_cupy.add = SimpleNamespace()
    scattered = []
    monkeypatch.setitem(sys.modules, "cupyx", SimpleNamespace(
        scatter_add=lambda t, i, v: scattered.append(i.tolist())))
    backends.scatter_add(target, np.array([1, 1]), FakeDeviceArray(np.ones(2)))
    assert scattered == [[1, 1]]


def test_erf_of_a_device_array_uses_cupyx_scipy_special(fake_cupy, monkeypatch):
    special = types.ModuleType("cupyx.scipy.special")
    special.erf = lambda x: ("cupyx erf", x)
    scipy_ = types.ModuleType("cupyx.scipy")
    scipy_.special = special
    cupyx = types.ModuleType("cupyx")
    cupyx.scipy = scipy_
    for name, module in (("cupyx", cupyx), ("cupyx.scipy", scipy_),
                         ("cupyx.scipy.special", special)):
        monkeypatch.setitem(sys.modules, name, module)
    x = FakeDeviceArray([0.5])
    assert backends.erf(x) == ("cupyx erf", x)
    assert backends.erf(np.array([0.0], np.float32)).dtype == np.float32  # NumPy stays NumPy


# ---- in-place writes of raw arrays (a CuPy array's .data is a pointer, not its values) -----


class PointerArray(np.ndarray):
    """A NumPy array whose .data is an opaque pointer, as cupy.ndarray's is."""

    @property
    def data(self):
        return SimpleNamespace(ptr=0)


@pytest.mark.parametrize("write", ["copy_", "add_", "mul_", "div_", "setitem", "backward"])
def test_raw_arrays_are_used_as_arrays_not_through_their_data_attribute(write):
    value = np.array([2.0, 4.0], np.float32).view(PointerArray)
    t = gt.tensor([1.0, 1.0])
    if write == "backward":
        x = gt.tensor([1.0, 2.0], requires_grad=True)
        (x * 3).backward(value)
        assert x.grad.tolist() == [6.0, 12.0]
        return
    if write == "setitem":
        t[:] = value
    else:
        getattr(t, write)(value)
    expected = {"copy_": [2, 4], "setitem": [2, 4], "add_": [3, 5], "mul_": [2, 4],
                "div_": [0.5, 0.25]}
    assert t.tolist() == expected[write]


# ==== 2. the GPU formulations of data checks, on NumPy ===========================================


@pytest.fixture
def gpu_formulas(monkeypatch):
    """Ops take the branch they take on GPU arrays: no data-dependent Python checks."""
    monkeypatch.setattr(backends, "host_checks", lambda array: False)


def grads_of(fn, *arrays):
    """fn's output and the gradients of sum(output * weights) w.r.t. float inputs."""
    tensors = [gt.tensor(a, requires_grad=a.dtype.kind == "f") for a in arrays]
    out = fn(*tensors)
    weights = np.random.default_rng(1).standard_normal(out.shape).astype(out.dtype)
    (out * gt.tensor(weights)).sum().backward()
    return out.numpy(), [t.grad.numpy() if t.requires_grad else None for t in tensors]


def assert_same(a, b, rtol=1e-6):
    out_a, grads_a = a
    out_b, grads_b = b
    np.testing.assert_allclose(out_a, out_b, rtol=rtol, atol=1e-7)
    for ga, gb in zip(grads_a, grads_b):
        if ga is not None:
            np.testing.assert_allclose(ga, gb, rtol=rtol, atol=1e-7)


@pytest.mark.parametrize("fully_masked_row", [False, True])
def test_attention_on_gpu_fills_masked_rows_without_asking(fully_masked_row, monkeypatch):
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((2, 3, 4, 5)).astype(np.float32) for _ in range(3))
    keep = rng.random((4, 4)) < 0.7
    keep[:, 0] = True
    if fully_masked_row:
        keep[2] = False

    def attend(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=gt.tensor(keep))

    on_cpu = grads_of(attend, q, k, v)
    monkeypatch.setattr(backends, "host_checks", lambda array: False)
    on_gpu = grads_of(attend, q, k, v)
    assert_same(on_cpu, on_gpu)
    assert np.isfinite(on_gpu[0]).all()
    if fully_masked_row:
        assert (on_gpu[0][:, :, 2] == 0).all()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_on_gpu_matches_the_cpu_for_valid_targets(reduction, monkeypatch):
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((6, 4)).astype(np.float32)
    target = np.array([0, 3, -100, 1, 2, -100])

    def loss(x, t):
        return F.cross_entropy(x, t, reduction=reduction, label_smoothing=0.1)

    on_cpu = grads_of(loss, logits, target)
    monkeypatch.setattr(backends, "host_checks", lambda array: False)
    on_gpu = grads_of(loss, logits, target)
    assert_same(on_cpu, on_gpu)
    assert on_gpu[0].dtype == np.float32


@pytest.mark.filterwarnings("ignore:invalid value encountered")  # NumPy's 0/0 (CuPy is silent)
def test_cross_entropy_on_gpu_marks_out_of_range_targets_with_nan(gpu_formulas):
    logits = gt.tensor(np.zeros((3, 4), np.float32), requires_grad=True)
    rows = F.cross_entropy(logits, gt.tensor([1, 4, -100]), reduction="none")
    out = rows.numpy()
    assert np.isnan(out[1]) and np.isfinite(out[[0, 2]]).all()
    rows.sum().backward()
    grad = logits.grad.numpy()
    assert np.isnan(grad[1]).all() and np.isfinite(grad[[0, 2]]).all()
    assert np.isnan(F.cross_entropy(gt.tensor(np.zeros((2, 4))), gt.tensor([0, -1])).item())
    # all rows ignored: the mean is 0/0 = NaN, on the GPU as on the CPU
    assert np.isnan(F.cross_entropy(gt.tensor(np.zeros((2, 4))), gt.tensor([-100, -100])).item())


def test_cross_entropy_on_the_cpu_still_raises_for_out_of_range_targets():
    with pytest.raises(IndexError, match="target 4 is out of range"):
        F.cross_entropy(gt.zeros(2, 4), gt.tensor([0, 4]))


def test_one_hot_on_gpu_gives_zero_rows_for_out_of_range_values(gpu_formulas):
    out = F.one_hot(gt.tensor([0, 2, 3, -1]), 3).numpy()
    assert out.tolist() == [[1, 0, 0], [0, 0, 1], [0, 0, 0], [0, 0, 0]]
    assert out.dtype == np.int64


@pytest.mark.parametrize("padding_idx", [None, 1])
def test_embedding_on_gpu_matches_the_cpu_for_valid_indices(padding_idx, monkeypatch):
    weight = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    index = np.array([[0, 1, 4], [1, 1, 2]])

    def look_up(w, i):
        return F.embedding(i, w, padding_idx=padding_idx)

    on_cpu = grads_of(look_up, weight, index)
    monkeypatch.setattr(backends, "host_checks", lambda array: False)
    assert_same(on_cpu, grads_of(look_up, weight, index))


def test_embedding_on_gpu_gives_nan_rows_for_out_of_range_indices(gpu_formulas):
    weight = gt.tensor(np.arange(6.0, dtype=np.float32).reshape(3, 2), requires_grad=True)
    out = F.embedding(gt.tensor([2, 3, -1, 0]), weight)
    values = out.numpy()
    assert values[0].tolist() == [4.0, 5.0] and values[3].tolist() == [0.0, 1.0]
    assert np.isnan(values[1:3]).all()
    out.sum().backward()  # NaN rows pass no gradient (row 0 gets only the real lookup's)
    assert weight.grad.numpy().tolist() == [[1, 1], [0, 0], [1, 1]]


@pytest.mark.parametrize("norm_type", [2.0, 1.0, math.inf])
@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_clip_grad_norm_on_gpu_matches_the_cpu(norm_type, max_norm, monkeypatch):
    rng = np.random.default_rng(0)

    def clipped():
        params = [gt.tensor(rng.standard_normal(s).astype(np.float32), requires_grad=True)
                  for s in [(3, 4), (4,)]]
        sum((p * p).sum() for p in params).backward()
        norm = gt.nn.utils.clip_grad_norm_(params, max_norm, norm_type)
        return norm.numpy(), [p.grad.numpy() for p in params]

    rng = np.random.default_rng(0)
    norm_cpu, grads_cpu = clipped()
    monkeypatch.setattr(backends, "host_checks", lambda array: False)
    rng = np.random.default_rng(0)
    norm_gpu, grads_gpu = clipped()
    np.testing.assert_allclose(norm_gpu, norm_cpu, rtol=1e-6)
    for a, b in zip(grads_gpu, grads_cpu):
        np.testing.assert_allclose(a, b, rtol=1e-6)


# ---- a training step that never reads an array on the host --------------------------------------


class HostRead(AssertionError):
    pass


class NoHostRead(np.ndarray):
    """A NumPy array that refuses to be read by Python (bool, int, float, item, tolist), as
    reading a GPU array would make the host wait; 0-d results stay such arrays."""

    def __array_wrap__(self, arr, context=None, return_scalar=False):
        return np.asarray(arr).view(NoHostRead)

    def _refuse(self, *args, **kwargs):
        raise HostRead("an array value was read on the host")

    __bool__ = __float__ = __int__ = __index__ = item = tolist = _refuse


def no_host_read(t: Tensor) -> Tensor:
    t.data = t.data.view(NoHostRead)
    return t


@pytest.fixture
def host_reads_refused(gpu_formulas, monkeypatch):
    """The GPU formulations, with same_device's exact-type check relaxed for NoHostRead arrays
    (Python scalars still become plain NumPy arrays in the ops)."""
    from minigt.ops.dims import same_device

    for name, module in list(sys.modules.items()):
        if name.startswith("minigt") and getattr(module, "same_device", None) is same_device:
            monkeypatch.setattr(module, "same_device", lambda op, *tensors: None)


def pixel_model():
    sys.path.insert(0, str(EXAMPLES))
    try:
        from pixel_transformer import PixelTransformer
    finally:
        sys.path.remove(str(EXAMPLES))
    gt.manual_seed(0)
    return PixelTransformer(img=4, seq=3, dim=8, heads=2, layers=1, ff=16)


def test_the_host_read_detector_catches_the_cpu_checks():
    labels = no_host_read(gt.tensor([1, 7]))
    with pytest.raises(HostRead):
        F.one_hot(labels, 10)  # the CPU formulation reads min() and max()


@pytest.mark.parametrize("loss_kind", ["mse", "ce"])
def test_a_training_step_reads_nothing_on_the_host_with_the_gpu_formulas(loss_kind,
                                                                         host_reads_refused):
    model = pixel_model()
    for p in model.parameters():
        no_host_read(p)
    optimizer = gt.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    rng = np.random.default_rng(0)
    x = no_host_read(gt.tensor(rng.standard_normal((2, 3, 4, 4)).astype(np.float32)))
    y = no_host_read(gt.tensor([1, 7]))
    for _ in range(2):
        logits = model(x)
        if loss_kind == "ce":
            loss = F.cross_entropy(logits, y)
        else:
            loss = F.mse_loss(logits, F.one_hot(y, 10).to(logits.dtype))
        optimizer.zero_grad()
        loss.backward()
        gt.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        correct = (logits.argmax(-1) == y).sum()  # kept on the device: read once an epoch
    assert np.isfinite(np.asarray(loss.data).view(np.ndarray)).all()  # read for printing, now
    assert 0 <= np.asarray(correct.data).view(np.ndarray) <= 2


def test_masked_attention_and_embedding_read_nothing_on_the_host(host_reads_refused):
    rng = np.random.default_rng(0)
    q = no_host_read(gt.tensor(rng.standard_normal((1, 2, 3, 4)).astype(np.float32),
                               requires_grad=True))
    mask = no_host_read(gt.tensor(np.tril(np.ones((3, 3), bool))))
    out = F.scaled_dot_product_attention(q, q, q, attn_mask=mask, is_causal=True)
    weight = no_host_read(gt.tensor(rng.standard_normal((5, 4)).astype(np.float32),
                                    requires_grad=True))
    rows = F.embedding(no_host_read(gt.tensor([[0, 4, 2]])), weight, padding_idx=0)
    (out.sum() + rows.sum()).backward()


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

    def Allreduce(self, send, recv, op):
        self.log.append(("Allreduce", type(recv).__name__, op))
        if not isinstance(send, str):  # MPI.IN_PLACE here is the string "IN_PLACE"
            recv[...] = send
        recv *= 2

    def Allgatherv(self, send, spec):
        recv, counts = spec
        self.log.append(("Allgatherv", type(recv).__name__, counts))
        recv.reshape(-1)[:] = np.concatenate([send.reshape(-1)] * 2)[:recv.size]

    def Reduce_scatter(self, send, recv, counts, op):
        self.log.append(("Reduce_scatter", type(recv).__name__, counts, op))
        recv.reshape(-1)[:] = 2 * send.reshape(-1)[:recv.size]

    def Bcast(self, buf, root=0):
        self.log.append(("Bcast", type(buf).__name__, root))


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
        mpi_call = {"allreduce": "Allreduce", "allreduce_in_place": "Allreduce",
                    "allgatherv": "Allgatherv", "reduce_scatter": "Reduce_scatter",
                    "bcast": "Bcast"}[call]
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
    assert log == ["get", ("Allreduce", "ndarray", "SUM"), "set"]  # MPI saw host memory only
    assert recv.host.tolist() == [0.0, 2.0, 4.0, 6.0]
    log.clear()
    transport.reduce_scatter(send, FakeGpuBuffer(np.zeros(2), log), [2, 2], "max")
    transport.allgatherv(FakeGpuBuffer(np.ones(2), log), FakeGpuBuffer(np.zeros(4), log), [2, 2])
    transport.bcast(send, 1)
    assert [e if isinstance(e, str) else e[0] for e in log] == [
        "get", "Reduce_scatter", "set", "get", "Allgatherv", "set", "get", "Bcast", "set"]


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


# ==== 4. a NumPy-backed stand-in for the cupy package ============================================

FAKE_CUPY = {
    "cupy/__init__.py": '''
        """A stand-in for CuPy made of NumPy, written by minigt's tests/test_gpu_paths.py.

        Its arrays are a NumPy subclass that minigt takes for GPU arrays, so every CuPy branch
        runs without a GPU. As in CuPy: .data is a pointer, not the values; mixing a NumPy array
        into an operation is a TypeError; reductions give 0-d arrays; reading a value on the host
        (bool, int, float, item, tolist, get, asnumpy, a stream sync) inside
        cupyx.allow_synchronize(False) raises cupyx.DeviceSynchronized. Nothing here measures a
        GPU: the figures of a benchmark run on it are NumPy's on the CPU.
        """
        import functools as _functools
        import numpy as _np

        __version__ = "0.0+fake"
        IS_FAKE = True
        _sync = {"allowed": True}


        def _host_read(what):
            if not _sync["allowed"]:
                import cupyx
                raise cupyx.DeviceSynchronized(f"{what}: a host read of a (fake) GPU array")


        class _Pointer:
            def __init__(self, array):
                self.ptr = array.__array_interface__["data"][0]


        def _plain(x):
            return x.view(_np.ndarray) if isinstance(x, ndarray) else x


        def _wrap(value):
            if isinstance(value, ndarray):
                return value
            if isinstance(value, _np.ndarray):
                return value.view(ndarray)
            if isinstance(value, _np.generic):
                return _np.asarray(value).view(ndarray)
            if isinstance(value, (tuple, list)):
                return type(value)(_wrap(v) for v in value)
            return value


        class ndarray(_np.ndarray):
            def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
                for x in inputs + (out or ()):
                    if isinstance(x, _np.ndarray) and not isinstance(x, ndarray):
                        raise TypeError(f"Unsupported type {type(x)}: a NumPy array in an "
                                        f"operation on (fake) GPU arrays")
                args = [_plain(x) for x in inputs]
                if out:
                    kwargs["out"] = tuple(_plain(o) for o in out)
                result = getattr(ufunc, method)(*args, **kwargs)
                if out:
                    return out[0] if len(out) == 1 else out
                return _wrap(result)

            def __array_wrap__(self, arr, context=None, return_scalar=False):
                return _np.asarray(arr).view(ndarray)

            def __getitem__(self, key):
                return _wrap(super().__getitem__(key))

            def argmax(self, *args, **kwargs):
                return _wrap(super().argmax(*args, **kwargs))

            def argmin(self, *args, **kwargs):
                return _wrap(super().argmin(*args, **kwargs))

            @property
            def device(self):
                from .cuda import Device
                return Device(0)

            @property
            def data(self):
                return _Pointer(self)

            def get(self, stream=None, order="C", out=None):
                _host_read("ndarray.get()")
                return _np.array(_plain(self), order=order)

            def set(self, arr, stream=None):
                _plain(self)[...] = arr

            def item(self, *args):
                _host_read("ndarray.item()")
                return _plain(self).item(*args)

            def tolist(self):
                _host_read("ndarray.tolist()")
                return _plain(self).tolist()

            def __bool__(self):
                _host_read("bool(ndarray)")
                return bool(_plain(self))

            def __float__(self):
                _host_read("float(ndarray)")
                return float(_plain(self))

            def __int__(self):
                _host_read("int(ndarray)")
                return int(_plain(self))

            def __index__(self):
                _host_read("ndarray.__index__")
                return _plain(self).__index__()


        class _Ufunc:
            def __init__(self, ufunc):
                self._ufunc = ufunc

            def __call__(self, *args, **kwargs):
                return _wrap(self._ufunc(*args, **kwargs))

            def at(self, a, indices, b=None):
                if isinstance(indices, tuple):
                    indices = tuple(map(_plain, indices))
                else:
                    indices = _plain(indices)
                self._ufunc.at(_plain(a), indices, *(() if b is None else (_plain(b),)))

            def __getattr__(self, name):
                return getattr(self._ufunc, name)


        def asarray(a, dtype=None, order=None, *, blocking=False):
            if isinstance(a, ndarray):
                return a if dtype is None or _np.dtype(dtype) == a.dtype else a.astype(dtype)
            return _np.array(a, dtype=dtype, order=order or "K").view(ndarray)


        def array(obj, dtype=None, copy=True, order="K", ndmin=0):
            return _np.array(_plain(obj), dtype=dtype, copy=True, order=order,
                             ndmin=ndmin).view(ndarray)


        def asnumpy(a, stream=None, order="C", out=None):
            if isinstance(a, ndarray):
                _host_read("cupy.asnumpy()")
            return _np.array(_plain(a), order=order)


        class _Pool:
            def used_bytes(self):
                return 0

            def total_bytes(self):
                return 0

            def free_all_blocks(self):
                pass


        _pool = _Pool()


        def get_default_memory_pool():
            return _pool


        def __getattr__(name):
            value = getattr(_np, name)
            if isinstance(value, _np.ufunc):
                return _Ufunc(value)
            if callable(value) and not isinstance(value, type):
                @_functools.wraps(value)
                def call(*args, **kwargs):
                    return _wrap(value(*args, **kwargs))
                return call
            return value


        from . import cuda  # noqa: E402
    ''',
    "cupy/cuda/__init__.py": '''
        """cupy.cuda of the fake: one device, one stream; no nccl."""
        from . import runtime


        class Device:
            def __init__(self, device=0):
                self.id = int(device)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

            def use(self):
                pass

            def synchronize(self):
                from .. import _host_read
                _host_read("Device.synchronize()")


        class Stream:
            ptr = 0

            def __init__(self, non_blocking=False):
                pass

            def synchronize(self):
                from .. import _host_read
                _host_read("Stream.synchronize()")


        _stream = Stream()


        def get_current_stream():
            return _stream
    ''',
    "cupy/cuda/runtime.py": '''
        """cupy.cuda.runtime of the fake."""


        def getDeviceCount():
            return 1


        def getDevice():
            return 0


        def getDeviceProperties(device):
            return {"name": b"FAKE GPU (NumPy on the CPU)", "totalGlobalMem": 1 << 30}


        def runtimeGetVersion():
            return 0


        def driverGetVersion():
            return 0
    ''',
    "cupyx/__init__.py": '''
        """cupyx of the fake: allow_synchronize, DeviceSynchronized, scatter_add."""
        import contextlib

        import numpy as _np


        class DeviceSynchronized(RuntimeError):
            pass


        @contextlib.contextmanager
        def allow_synchronize(allow):
            import cupy
            before = cupy._sync["allowed"]
            cupy._sync["allowed"] = bool(allow)
            try:
                yield
            finally:
                cupy._sync["allowed"] = before


        def scatter_add(a, slices, value):
            import cupy
            cupy.add.at(a, slices, value)
    ''',
    "cupyx/scipy/__init__.py": "",
    "cupyx/scipy/special/__init__.py": '''
        """cupyx.scipy.special of the fake: erf."""
        import math

        import numpy as _np


        def erf(x):
            import cupy
            plain = x.view(_np.ndarray)
            try:
                from scipy.special import erf as scipy_erf
                out = scipy_erf(plain)
            except ImportError:
                out = _np.vectorize(math.erf, otypes=[plain.dtype])(plain)
            return _np.asarray(out, dtype=plain.dtype).view(cupy.ndarray)
    ''',
}


def write_fake_cupy(directory) -> Path:
    """Write the stand-in cupy and cupyx packages into `directory`; returns it."""
    directory = Path(directory)
    for name, text in FAKE_CUPY.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    return directory


@pytest.fixture(scope="module")
def fake_gpu(tmp_path_factory):
    """A folder to put first on a subprocess's PYTHONPATH: there, `import cupy` is the fake."""
    return write_fake_cupy(tmp_path_factory.mktemp("fake_cupy"))


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
    """This file's GPU tests (the real-GPU half), run against the fake: their own logic works."""
    done = run(["-m", "pytest", __file__, "-m", "gpu", "-o", "addopts=", "-q", "-rs",
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


# ==== with a GPU (or the fake): the real thing ===================================================


@gpu_test
def test_train_pixel_tiny_on_cuda_matches_the_cpu(tmp_path):
    argv = ["examples/train_pixel.py", "--img", "8", "--seq", "2", "--dim", "16", "--heads", "2",
            "--layers", "1", "--ff", "32", "--n", "8", "--batch", "4", "--epochs", "2"]
    losses = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / f"{device}.json"
        done = run([*argv, "--device", device, "--out", str(out)], timeout=180)
        assert done.returncode == 0, done.stderr
        losses[device] = json.loads(out.read_text())["step_losses"]
    np.testing.assert_allclose(losses["cuda"], losses["cpu"], rtol=1e-4)


@gpu_test
@pytest.mark.parametrize("loss_kind", ["mse", "ce"])
def test_a_cuda_training_step_does_not_synchronize(loss_kind):
    import cupyx

    model = pixel_model().to("cuda")
    optimizer = gt.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    rng = np.random.default_rng(0)
    x = gt.tensor(rng.standard_normal((2, 3, 4, 4)).astype(np.float32), device="cuda")
    y = gt.tensor([1, 7], device="cuda")

    def step():
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

    step()  # the first step compiles kernels
    with cupyx.allow_synchronize(False):
        loss, correct = step()
    assert math.isfinite(loss.item()) and 0 <= correct.item() <= 2  # read afterwards, to print


@gpu_test
def test_gpu_formulations_on_cuda_match_the_cpu():
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((2, 2, 4, 3)).astype(np.float32) for _ in range(3))
    keep = rng.random((4, 4)) < 0.6
    keep[1] = False  # a fully masked row
    logits = rng.standard_normal((5, 4)).astype(np.float32)
    target = np.array([0, 3, -100, 1, 2])
    weight = rng.standard_normal((6, 3)).astype(np.float32)
    index = np.array([[0, 5, 1], [1, 1, 2]])
    results = {}
    for device in ("cpu", "cuda"):
        def on(a, grad=False):
            return gt.tensor(a, device=device, requires_grad=grad)

        qt, kt, vt = on(q, True), on(k, True), on(v, True)
        lt, wt = on(logits, True), on(weight, True)
        attended = F.scaled_dot_product_attention(qt, kt, vt, attn_mask=on(keep))
        loss = F.cross_entropy(lt, on(target), label_smoothing=0.1)
        looked = F.embedding(on(index), wt, padding_idx=1)
        (attended.sum() + loss + (looked * looked).sum()).backward()
        results[device] = [t.numpy() for t in (attended, loss, looked)] + [
            t.grad.numpy() for t in (qt, kt, vt, lt, wt)]
    for a, b in zip(results["cuda"], results["cpu"]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    bad = F.cross_entropy(gt.zeros(2, 4, device="cuda"), gt.tensor([0, 7], device="cuda"))
    assert math.isnan(bad.item())  # on a GPU: NaN, not an exception


@gpu_test
def test_pixel_transformer_matches_torch_on_cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("PyTorch has no CUDA here")
    sys.path.insert(0, str(EXAMPLES))
    try:
        from torch_pixel_transformer import from_minigt
    finally:
        sys.path.remove(str(EXAMPLES))
    model = pixel_model().to(gt.float64)
    twin = from_minigt(model).to("cuda")
    model.to("cuda")
    rng = np.random.default_rng(0)
    images = rng.standard_normal((3, 3, 4, 4))
    labels = np.array([1, 7, 3])
    logits = model(gt.tensor(images, device="cuda"))
    loss = F.cross_entropy(logits, gt.tensor(labels, device="cuda"))
    loss.backward()
    t_logits = twin(torch.from_numpy(images).cuda())
    t_loss = torch.nn.functional.cross_entropy(t_logits, torch.from_numpy(labels).cuda())
    t_loss.backward()
    np.testing.assert_allclose(loss.item(), t_loss.item(), rtol=1e-10)
    grads = dict(twin.named_parameters())
    for name, p in model.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), grads[name].grad.cpu().numpy(), rtol=1e-8,
                                   atol=1e-12, err_msg=name)


COLLECTIVES_JOB = """
import hashlib, os, sys
import numpy as np
import cupy
from minigt.backends import to_device
from minigt.distributed import collectives, transports, world

path = os.environ["MINIGT_COLLECTIVES"]
rank, size = world.rank(), world.world_size()
if path == "nccl" and not transports.nccl_available():
    if rank == 0:
        print(f"SKIP: NCCL is not usable here ({world.local_size()} ranks on "
              f"{transports.gpu_count()} GPU(s); it needs cupy.cuda.nccl and a GPU per rank)")
    sys.exit(0)
if path == "mpi" and not transports.cuda_aware_mpi():
    if rank == 0:
        print("SKIP: the MPI library is not CUDA-aware")
    sys.exit(0)


def data(r, shape, dtype):
    rng = np.random.default_rng([7, r])
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    if np.issubdtype(dtype, np.integer):
        return rng.integers(-50, 50, shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


digest = hashlib.sha256()


def check(got, expected, same_on_every_rank=True):
    got = to_device(got, "cpu")
    assert got.dtype == expected.dtype and got.shape == expected.shape, (got.shape, expected.shape)
    if expected.dtype.kind == "f":
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    else:
        np.testing.assert_array_equal(got, expected)
    if same_on_every_rank:
        digest.update(np.ascontiguousarray(got).tobytes())


x = cupy.zeros(4)
assert transports.select_transport(x).name == path, transports.select_transport(x).name
lengths = [(3, 0, 2, 1)[r % 4] for r in range(size)]
for dtype in (np.float32, np.float64, np.int64, np.bool_):
    parts = [data(r, (5, 3), dtype) for r in range(size)]
    ops = ("sum", "max", "min") + (("mean",) if dtype != np.bool_ and dtype != np.int64 else ())
    for op in ops if dtype != np.bool_ else ("sum",):
        stack = np.stack(parts)
        expected = {"sum": stack.sum(0), "max": stack.max(0), "min": stack.min(0),
                    "mean": stack.mean(0)}[op].astype(dtype) if dtype != np.bool_ else stack.any(0)
        check(collectives.all_reduce(cupy.asarray(parts[rank]), op), expected)
    uneven = [data(r, (lengths[r], 2), dtype) for r in range(size)]
    check(collectives.all_gather(cupy.asarray(uneven[rank]), 0), np.concatenate(uneven))
    check(collectives.all_gather(cupy.asarray(parts[rank]), 1), np.concatenate(parts, axis=1))
    if dtype != np.bool_:
        full = [data(r, (sum(lengths), 2), dtype) for r in range(size)]
        start = sum(lengths[:rank])
        check(collectives.reduce_scatter(cupy.asarray(full[rank]), 0, lengths),
              np.sum(full, axis=0).astype(dtype)[start:start + lengths[rank]],
              same_on_every_rank=False)
    for root in range(size):
        check(collectives.broadcast(cupy.asarray(data(rank, (4,), dtype)), root),
              data(root, (4,), dtype))
big = cupy.full(1 << 20, rank + 1, dtype=cupy.float32)
same = collectives.all_reduce(big, "sum", in_place=True)
assert same is big
check(big, np.full(1 << 20, size * (size + 1) / 2, np.float32))
print(f"OK rank {rank} path {path} digest {digest.hexdigest()}")
"""

_digests: dict = {}


@gpu_test
@needs_mpirun
@pytest.mark.parametrize("path", ["nccl", "mpi", "host"])
def test_each_collective_path_under_mpirun(path):
    done = run(["-c", COLLECTIVES_JOB], ranks=2, timeout=240, MINIGT_COLLECTIVES=path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    skipped = re.search(r"SKIP: (.*)", done.stdout)
    if skipped:
        pytest.skip(f"{path}: {skipped.group(1)}")
    digests = set(re.findall(rf"OK rank \d path {path} digest (\w+)", done.stdout))
    assert len(digests) == 1, done.stdout  # both ranks hold the same results
    _digests[path] = digests.pop()


@gpu_test
@needs_mpirun
def test_every_available_path_gives_the_same_results():
    ran = {path: d for path, d in _digests.items()}
    if len(ran) < 2:
        pytest.skip(f"only {sorted(ran) or 'no path'} could run here: nothing to compare")
    assert len(set(ran.values())) == 1, ran


@gpu_test
@needs_mpirun
def test_train_pixel_on_cuda_with_two_ranks_matches_one(tmp_path):
    argv = ["examples/train_pixel.py", "--img", "8", "--seq", "2", "--dim", "16", "--heads", "2",
            "--layers", "1", "--ff", "32", "--n", "8", "--batch", "4", "--epochs", "2",
            "--device", "cuda"]
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    done = run([*argv, "--out", str(one)], timeout=180)
    assert done.returncode == 0, done.stderr
    done = run([*argv, "--out", str(two)], ranks=2, timeout=240)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "Epoch 2/2" in done.stdout
    np.testing.assert_allclose(json.loads(two.read_text())["step_losses"],
                               json.loads(one.read_text())["step_losses"], rtol=1e-4)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "write-fake":
        print(write_fake_cupy(sys.argv[2]))
    else:
        sys.exit("usage: python tests/test_gpu_paths.py write-fake DIR")
