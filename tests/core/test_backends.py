"""The backend layer: default device from $MINIGT_DEVICE, array_module, scatter_add, device
parsing, and (with a GPU) CuPy tensors."""
import math
import os
import subprocess
import sys

import numpy as np
import pytest

import minigt as gt
from minigt import backends, blas_setup

needs_gpu = pytest.mark.skipif(not gt.cuda_available(), reason="needs CuPy and an NVIDIA GPU")
without_gpu = pytest.mark.skipif(gt.cuda_available(), reason="checks behaviour when no GPU is usable")


# ---- default device -----------------------------------------------------------------------------

def test_default_device_is_cpu_without_the_env_var(monkeypatch):
    monkeypatch.delenv("MINIGT_DEVICE", raising=False)
    assert backends.default_device() == "cpu"
    assert gt.zeros(2).device == "cpu"


@pytest.mark.parametrize(
    "make",
    [lambda: gt.zeros(2), lambda: gt.ones(2), lambda: gt.full((2,), 1.0), lambda: gt.tensor([1.0]),
     lambda: gt.randn(2), lambda: gt.arange(3), lambda: gt.eye(2)],
    ids=["zeros", "ones", "full", "tensor", "randn", "arange", "eye"],
)
def test_minigt_device_env_var_sets_the_default(monkeypatch, make):
    monkeypatch.setenv("MINIGT_DEVICE", "cpu")
    assert make().device == "cpu"


def test_minigt_device_env_var_is_read_at_each_call(monkeypatch):
    monkeypatch.setenv("MINIGT_DEVICE", "cpu")
    assert gt.zeros(1).device == "cpu"
    monkeypatch.setenv("MINIGT_DEVICE", "nonsense")
    with pytest.raises(ValueError, match="unknown device 'nonsense'"):
        gt.zeros(1)


@pytest.mark.parametrize("value", ["tpu", "cuda-1", ""])
def test_unknown_minigt_device_raises(monkeypatch, value):
    monkeypatch.setenv("MINIGT_DEVICE", value)
    with pytest.raises(ValueError, match=f"unknown device {value!r}: expected 'cpu', 'cuda' or 'cuda:N'"):
        gt.tensor([1.0])


def test_explicit_device_overrides_the_env_var(monkeypatch):
    monkeypatch.setenv("MINIGT_DEVICE", "tpu")
    assert gt.zeros(2, device="cpu").device == "cpu"


def test_from_numpy_stays_on_the_cpu_whatever_the_default(monkeypatch):
    monkeypatch.setenv("MINIGT_DEVICE", "tpu")
    assert gt.from_numpy(np.zeros(2)).device == "cpu"


@without_gpu
def test_minigt_device_cuda_without_a_gpu_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("MINIGT_DEVICE", "cuda")
    with pytest.raises(RuntimeError, match="device 'cuda' requested but CuPy with a GPU is not available"):
        gt.zeros(2)


@pytest.mark.parametrize("device, expected", [("cpu", "cpu"), (None, "cpu")])
def test_parse_device(monkeypatch, device, expected):
    monkeypatch.delenv("MINIGT_DEVICE", raising=False)
    assert backends.parse_device(device) == expected


# ---- array_module and helpers ------------------------------------------------------------------

@pytest.mark.parametrize("value", [np.zeros(3), np.float32(1.0), 1.0, [1, 2], np.zeros((0, 2))],
                         ids=["ndarray", "np-scalar", "float", "list", "empty"])
def test_array_module_is_numpy_for_host_data(value):
    assert backends.array_module(value) is np


def test_device_of_and_to_device_on_the_cpu():
    array = np.ones(2)
    assert backends.device_of(array) == "cpu"
    assert backends.to_device(array, "cpu") is array


def test_ensure_array_turns_numpy_scalars_into_zero_dim_arrays():
    out = backends.ensure_array(np.float32(2.0))
    assert isinstance(out, np.ndarray) and out.shape == () and out.dtype == np.float32
    array = np.ones(2)
    assert backends.ensure_array(array) is array


def test_reductions_to_a_scalar_still_give_tensors_with_arrays():
    t = gt.tensor([1.0, 2.0]).sum()
    assert isinstance(t.data, np.ndarray) and t.data.shape == ()


# ---- scatter_add -------------------------------------------------------------------------------

def test_scatter_add_accumulates_repeated_indices():
    target = np.zeros(4)
    backends.scatter_add(target, np.array([1, 1, 3, 1]), np.array([1.0, 2.0, 3.0, 4.0]))
    assert target.tolist() == [0.0, 7.0, 0.0, 3.0]


def test_scatter_add_differs_from_plain_fancy_assignment():
    # the reason scatter_add exists: target[idx] += v keeps only one of the repeats
    plain = np.zeros(2)
    plain[np.array([0, 0])] += np.array([1.0, 1.0])
    scattered = np.zeros(2)
    backends.scatter_add(scattered, np.array([0, 0]), np.array([1.0, 1.0]))
    assert plain.tolist() == [1.0, 0.0] and scattered.tolist() == [2.0, 0.0]


def test_scatter_add_with_a_tuple_index_and_rows():
    target = np.zeros((2, 3))
    backends.scatter_add(target, (np.array([0, 0, 1]), np.array([2, 2, 0])), np.ones(3))
    assert target.tolist() == [[0, 0, 2], [1, 0, 0]]
    rows = np.zeros((3, 2))
    backends.scatter_add(rows, np.array([2, 2]), np.array([[1.0, 2.0], [3.0, 4.0]]))
    assert rows.tolist() == [[0, 0], [0, 0], [4, 6]]


ERF_POINTS = np.concatenate([
    np.linspace(-9, 9, 36001),  # both series and the seams at |x| = 3 and 6
    np.geomspace(1e-300, 1, 400), -np.geomspace(1e-300, 1, 400),  # relative accuracy near 0
    [0.0, -0.0, 1e200, -1e200],
])


def test_erf_matches_math_erf_to_a_few_ulps():
    out = backends.erf(ERF_POINTS)
    expected = np.array([math.erf(v) for v in ERF_POINTS])
    np.testing.assert_allclose(out, expected, rtol=1e-14, atol=0)
    assert np.signbit(backends.erf(np.array([0.0, -0.0]))).tolist() == [False, True]


@pytest.mark.parametrize("dtype, rtol", [(np.float32, 3e-7), (np.float16, 1e-3)])
def test_erf_keeps_the_dtype(dtype, rtol):
    x = np.linspace(-5, 5, 101).astype(dtype)
    out = backends.erf(x)
    assert out.dtype == dtype
    np.testing.assert_allclose(out, [math.erf(v) for v in x.astype(np.float64)], rtol=rtol, atol=rtol)


def test_float32_erf_is_within_4_ulps_everywhere():
    """float32 runs shorter series of its own (backends/special.py): checked densely, tails too."""
    x = np.linspace(-7, 7, 140001).astype(np.float32)
    expected = np.array([math.erf(v) for v in x.astype(np.float64)])
    ulps = np.abs(backends.erf(x) - expected) / np.spacing(np.abs(expected).astype(np.float32))
    assert ulps.max() <= 4


def test_erf_of_special_values_and_shapes():
    assert backends.erf(np.array(0.5)).shape == () and backends.erf(np.zeros((2, 0))).shape == (2, 0)
    out = backends.erf(np.array([np.inf, -np.inf, np.nan]))
    assert out[:2].tolist() == [1.0, -1.0] and np.isnan(out[2])


def test_gelu_needs_no_scipy():
    """The exact GELU's erf is minigt's own: importing SciPy would cost every rank start-up time."""
    program = ("import sys, minigt as gt; gt.gelu(gt.randn(4, 3)).sum(); "
               "assert not any(m.startswith('scipy') for m in sys.modules), 'scipy was imported'")
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_cuda_available_is_a_bool():
    assert isinstance(gt.cuda_available(), bool)


# ---- GPU (CuPy) ---------------------------------------------------------------------------------

@pytest.mark.gpu
@needs_gpu
def test_cuda_tensor_round_trip():
    t = gt.tensor([1.0, 2.0], device="cuda")
    assert t.device == "cuda:0" and "cuda:0" in repr(t)
    assert backends.array_module(t.data) is not np
    back = t.cpu()
    assert back.device == "cpu" and isinstance(back.numpy(), np.ndarray)
    assert np.asarray(t).tolist() == [1.0, 2.0] and t.tolist() == [1.0, 2.0]


@pytest.mark.gpu
@needs_gpu
def test_parse_device_resolves_cuda_to_an_index():
    assert backends.parse_device("cuda") == "cuda:0"
    assert backends.parse_device("cuda:0") == "cuda:0"


@pytest.mark.gpu
@needs_gpu
def test_minigt_device_cuda_puts_new_tensors_on_the_gpu(monkeypatch):
    monkeypatch.setenv("MINIGT_DEVICE", "cuda")
    assert gt.zeros(2).device == "cuda:0" and gt.tensor([1.0]).device == "cuda:0"


@pytest.mark.gpu
@needs_gpu
def test_autograd_on_the_gpu_matches_the_cpu():
    data = np.array([[1.0, -2.0], [3.0, 0.5]])
    grads = []
    for device in ("cpu", "cuda"):
        x = gt.tensor(data, device=device, requires_grad=True)
        loss = ((x @ x.T).relu() + x[gt.tensor([0, 0], device=device)]).softmax(-1).log().sum()
        loss.backward()
        assert x.grad.device == x.device
        grads.append(x.grad.numpy())
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-10)


@pytest.mark.gpu
@needs_gpu
def test_to_device_is_differentiable():
    x = gt.tensor([1.0, 2.0], requires_grad=True)
    y = x.to("cuda") * 3
    y.sum().backward()
    assert x.grad.device == "cpu" and x.grad.tolist() == [3.0, 3.0]


@pytest.mark.gpu
@needs_gpu
def test_scatter_add_on_the_gpu():
    import cupy

    target = cupy.zeros(3)
    backends.scatter_add(target, cupy.array([2, 2, 0]), cupy.ones(3))
    assert cupy.asnumpy(target).tolist() == [1.0, 0.0, 2.0]


@pytest.mark.parametrize("program, expected", [
    ("import minigt", blas_setup.SPIN_LOG2_CYCLES),          # imported first: a short spin
    ("import numpy, minigt", None),                          # too late to matter: left alone
])
def test_minigt_imported_before_numpy_sets_openblas_spinning(program, expected):
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    code = f"{program}; import os; print(os.environ.get('OPENBLAS_THREAD_TIMEOUT'))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(expected)


def test_an_openblas_thread_timeout_of_ones_own_wins():
    env = {**os.environ, "OPENBLAS_THREAD_TIMEOUT": "12"}
    code = "import minigt, os; print(os.environ['OPENBLAS_THREAD_TIMEOUT'])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert done.stdout.strip() == "12", done.stderr


@pytest.mark.parametrize("launcher", ["MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE"])
@pytest.mark.parametrize("cpus, ranks, share", [(8, 2, "4"), (8, 3, "2"), (2, 8, "1"), (2, 2, "1")])
def test_ranks_on_one_machine_share_its_cpus_among_their_blas_threads(launcher, cpus, ranks, share,
                                                                       monkeypatch):
    monkeypatch.setattr(blas_setup, "cpu_count", lambda: cpus)
    environ = {launcher: str(ranks)}
    blas_setup.configure(environ)
    assert environ["OMP_NUM_THREADS"] == environ["OPENBLAS_NUM_THREADS"] == share


@pytest.mark.parametrize("environ", [
    {},                                                     # no launcher
    {"MPI_LOCALNRANKS": "1"},                               # one rank here
    {"MPI_LOCALNRANKS": "4", "OMP_NUM_THREADS": "3"},       # the user chose
    {"OMPI_COMM_WORLD_LOCAL_SIZE": "4", "MKL_NUM_THREADS": "2"},
])
def test_blas_threads_are_left_alone_without_several_ranks_or_with_ones_own_count(environ):
    before = dict(environ)
    blas_setup.configure(environ)
    assert environ.pop("OPENBLAS_THREAD_TIMEOUT") == blas_setup.SPIN_LOG2_CYCLES
    assert environ == before


def test_a_rank_among_more_ranks_than_cpus_runs_one_blas_thread():
    """The real effect, in a fresh process: OpenBLAS itself reports one thread."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    env["MPI_LOCALNRANKS"] = str(2 * blas_setup.cpu_count())
    code = ("import minigt; from threadpoolctl import threadpool_info; "
            "print(sorted({p['num_threads'] for p in threadpool_info() if p['user_api'] == 'blas'}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[1]"
