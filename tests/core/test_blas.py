"""backends.blas.axpy_: y += a·x in one pass through the BLAS NumPy loaded, or a plain refusal."""
import sys

import numpy as np
import pytest

from minigt.backends import blas

needs_blas = pytest.mark.skipif(not blas._routines_found(), reason="no BLAS axpy found here")


@needs_blas
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_axpy_adds_the_scaled_array_in_place_to_one_rounding(dtype):
    rng = np.random.default_rng(0)
    x, y = (rng.standard_normal((300, 301)).astype(dtype) for _ in range(2))
    expected = y + dtype(-0.37) * x
    before = y.ctypes.data
    assert blas.axpy_(-0.37, x, y)
    assert y.ctypes.data == before and y.dtype == dtype
    # one rounding of the exact a·x + y, against two for `expected`
    np.testing.assert_allclose(y, expected, rtol=0, atol=2 * np.spacing(np.abs(expected).max()))
    assert not np.array_equal(y, y + dtype(1.0) * x)  # it did add something


@needs_blas
def test_axpy_of_an_array_onto_itself_scales_it():
    y = np.arange(1.0, 7.0)
    assert blas.axpy_(1.0, y, y)
    np.testing.assert_array_equal(y, 2 * np.arange(1.0, 7.0))


@pytest.mark.parametrize("case", ["overlap", "dtypes", "strided", "shapes", "integers", "readonly",
                                  "list"])
def test_axpy_refuses_what_it_cannot_do_and_leaves_y_alone(case):
    base = np.arange(12.0)
    x, y = np.ones(6), np.arange(6.0)
    if case == "overlap":  # views that share memory but are not the same array
        x, y = base[:6], base[3:9]
    elif case == "dtypes":
        x = x.astype(np.float32)
    elif case == "strided":
        y = base[::2]
    elif case == "shapes":
        x = x.reshape(2, 3)
    elif case == "integers":
        x, y = x.astype(np.int64), y.astype(np.int64)
    elif case == "readonly":
        y.flags.writeable = False
    elif case == "list":
        x = list(x)
    before = np.array(y, copy=True)
    assert blas.axpy_(2.0, x, y) is False
    np.testing.assert_array_equal(y, before)


@pytest.mark.skipif(sys.platform != "linux", reason="the library is found through /proc")
def test_numpys_own_blas_is_found_for_both_float_dtypes():
    """Else every large SGD update quietly takes the slower two-pass path."""
    assert set(blas._routines_found()) == {np.dtype(np.float32), np.dtype(np.float64)}
