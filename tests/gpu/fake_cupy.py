"""A NumPy-backed stand-in for the `cupy` (and `cupyx`) packages, for the GPU tests.

`write_fake_cupy(DIR)` writes it into DIR; put DIR first on PYTHONPATH and `import cupy` is the
fake, so minigt takes every CuPy branch without a GPU. By hand:

    python tests/gpu/fake_cupy.py write-fake DIR      # or: python -m tests.gpu.fake_cupy write-fake DIR
    PYTHONPATH=DIR pytest tests/property -m gpu
"""
from __future__ import annotations

import sys
import textwrap
from pathlib import Path

# ==== 4. a NumPy-backed stand-in for the cupy package ============================================

FAKE_CUPY = {
    "cupy/__init__.py": '''
        """A stand-in for CuPy made of NumPy, written by minigt's tests/gpu/fake_cupy.py.

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
        import cupy.random  # noqa: E402  (not `from . import`: __getattr__ would answer numpy's)
    ''',
    "cupy/random.py": '''
        """cupy.random of the fake: RandomState draws float32 on request, as CuPy's does."""
        import numpy as _np

        from . import ndarray


        class RandomState:
            def __init__(self, seed=None):
                self._rng = _np.random.default_rng(seed)

            def random_sample(self, size=None, dtype=float):
                return _np.asarray(self._rng.random(size, dtype=dtype)).view(ndarray)
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


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "write-fake":
        print(write_fake_cupy(argv[1]))
        return 0
    sys.exit("usage: python tests/gpu/fake_cupy.py write-fake DIR")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
