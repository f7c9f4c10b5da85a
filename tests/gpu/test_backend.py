"""The backend interface against a fake CuPy module object (`backends._cupy` monkeypatched):
array_module, device_of, to_device, parse_device, scatter_add and erf dispatch; and in-place
writes of raw arrays whose .data is a pointer, as a CuPy array's is."""
from __future__ import annotations

import sys
import types
from types import SimpleNamespace

import numpy as np
import pytest

import minigt as gt
from minigt import backends

from .helpers import single_process

pytestmark = single_process

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

