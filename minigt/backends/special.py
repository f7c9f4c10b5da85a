"""The error function on NumPy arrays, which NumPy lacks.

SciPy has one, but importing scipy.special costs about a third of a second of CPU, paid by every
MPI rank at start-up; math.erf is exact but works one Python float at a time. This one is two
Chebyshev series fitted against math.erf and math.erfc when this module is imported (about 2 ms;
fitted lazily inside the first training step instead, it left the step's peak memory higher):
  |x| <= a:     erf(x) = x · P(x²)               P fits erf(x)/x as a series in x² over [0, a²]
  a < |x| < b:  erf(x) = ±(1 - Q(|x|) e^(-x²))   Q fits e^(x²) erfc(x), smooth, over [a, b]
  |x| >= b:     erf(x) = ±1                      erfc(b) is below the dtype's resolution
float64 takes a = 3, b = 6 and series of degree 20 and 18: within 1e-14 of math.erf
(tests/core/test_backends.py). float32 is computed in float32, where a = 2, b = 4 and degrees 9
and 8 reach the same 3 ulps as the float64 series rounded to float32, in under half the passes.
"""
from __future__ import annotations

import math

import numpy as np

def erf(x: np.ndarray) -> np.ndarray:
    """erf(x) elementwise, in x's float dtype (float16 is computed in float32)."""
    dtype = np.result_type(x.dtype, np.float32)
    x = np.asarray(x, dtype=dtype)
    core_end, tail_end, core, tail = SERIES.get(dtype, SERIES[np.dtype(np.float64)])
    with np.errstate(over="ignore", invalid="ignore"):  # huge |x|: x² overflows; the tail wins
        u = np.multiply(x, x, out=np.empty_like(x))  # u = 2x²/a² - 1, in one buffer
        u *= dtype.type(2 / core_end**2)
        u -= 1
        out = _clenshaw(core, u)
        out *= x
        far = np.abs(x) > core_end
        if far.any():
            z = np.minimum(np.abs(x[far]), tail_end)
            middle, half = (core_end + tail_end) / 2, (tail_end - core_end) / 2
            erfc = _clenshaw(tail, (z - dtype.type(middle)) / dtype.type(half)) * np.exp(-z * z)
            out[far] = np.copysign(1 - erfc, x[far])
    return out


def _clenshaw(coefficients, u):
    """Σ c_k T_k(u) for u in [-1, 1], by Clenshaw's recurrence, as a new array."""
    # NumPy's functions and ufuncs hand CuPy arrays to CuPy
    latest, later = np.full_like(u, coefficients[-1]), np.zeros_like(u)  # b_n = c_n, b_(n+1) = 0
    twice_u, spare = u + u, np.empty_like(u)
    # b_k = c_k + 2u b_(k+1) - b_(k+2), in three buffers reused in turn: a fresh array per
    # step of a large input is a fresh memory mapping, page faults and all
    for c in coefficients[-2:0:-1]:
        np.multiply(twice_u, latest, out=spare)
        np.add(c, spare, out=spare)
        np.subtract(spare, later, out=spare)
        latest, later, spare = spare, latest, later
    np.multiply(u, latest, out=spare)  # b_0 = c_0 + u b_1 - b_2, into the free buffer
    spare += coefficients[0]
    spare -= later
    return spare


def _fit(f, lo: float, hi: float, degree: int, points: int = 64) -> np.ndarray:
    """Chebyshev coefficients of f over [lo, hi]: f interpolated at `points` Chebyshev nodes
    (c_k = 2/N Σ_j f(cos θ_j) cos(k θ_j), halved for k = 0), truncated to `degree`."""
    theta = np.pi * (np.arange(points) + 0.5) / points
    values = np.array([f(lo + (hi - lo) * (math.cos(t) + 1) / 2) for t in theta])
    coefficients = (2 / points) * (np.cos(np.outer(np.arange(degree + 1), theta)) * values).sum(1)
    coefficients[0] /= 2
    return coefficients


def _erf_over_x(s: float) -> float:
    """erf(√s)/√s, whose limit at s = 0 is 2/√π."""
    return math.erf(math.sqrt(s)) / math.sqrt(s) if s > 0 else 2 / math.sqrt(math.pi)


def _scaled_erfc(z: float) -> float:
    """e^(z²) erfc(z): slowly varying where erfc itself falls off a cliff."""
    return math.erfc(z) * math.exp(z * z)


def _series(core_end: float, tail_end: float, core_degree: int, tail_degree: int, dtype) -> tuple:
    """(a, b, P, Q) of the module docstring, P and Q in `dtype`."""
    return (core_end, tail_end, _fit(_erf_over_x, 0.0, core_end**2, core_degree).astype(dtype),
            _fit(_scaled_erfc, core_end, tail_end, tail_degree).astype(dtype))


SERIES = {np.dtype(np.float64): _series(3.0, 6.0, 20, 18, np.float64),
          np.dtype(np.float32): _series(2.0, 4.0, 9, 8, np.float32)}
