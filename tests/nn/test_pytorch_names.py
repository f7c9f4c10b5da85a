"""Names a PyTorch user writes from memory: the subpackages after a plain `import minigt`,
`minigt.device`, and layers at PyTorch's edge cases (a Linear with no input features)."""
import os
import subprocess
import sys

import numpy as np
import pytest

import minigt as gt


def run_fresh(code: str) -> str:
    """Run `code` in a new interpreter (nothing imported yet) and return what it prints."""
    env = {k: v for k, v in os.environ.items() if k != "GT_AUTO_SHARD"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_subpackages_after_a_plain_import():
    out = run_fresh(
        "import sys, minigt as gt\n"
        "print('minigt.distributed' in sys.modules)\n"  # still lazy: it brings in MPI
        "print(gt.nn.Linear.__name__, gt.nn.functional.cross_entropy.__name__, gt.optim.SGD.__name__)\n"
        "print(gt.distributed.world_size(), gt.distributed is sys.modules['minigt.distributed'])\n"
    )
    assert out.split("\n")[:3] == ["False", "Linear cross_entropy SGD", "1 True"]


def test_an_unknown_attribute_is_still_an_attribute_error():
    with pytest.raises(AttributeError, match="minigt.*no attribute 'nope'"):
        gt.nope  # noqa: B018


# ---- minigt.device -----------------------------------------------------------------------------

@pytest.mark.parametrize("args, kind, index, text", [
    (("cpu",), "cpu", None, "cpu"),
    (("cuda",), "cuda", None, "cuda"),
    (("cuda:1",), "cuda", 1, "cuda:1"),
    (("cuda", 2), "cuda", 2, "cuda:2"),
])
def test_device_parts_and_text(args, kind, index, text):
    d = gt.device(*args)
    assert (d.type, d.index, str(d)) == (kind, index, text)
    assert repr(d) == f"device(type='{kind}'" + ("" if index is None else f", index={index}") + ")"
    assert d == gt.device(text) and d == text and text == d
    assert gt.device(type=kind, index=index) == d and gt.device(d) == d
    assert hash(d) == hash(gt.device(text))


def test_device_equals_a_tensors_device_both_ways():
    x = gt.zeros(2)
    assert x.device == gt.device("cpu") and gt.device("cpu") == x.device
    assert x.device != gt.device("cuda:0")


@pytest.mark.parametrize("args", [("gpu",), ("cuda:x",), ("cuda:-1",), ("cuda:1", 1), ("cpu", 0)])
def test_bad_device_names_what_is_expected(args):
    with pytest.raises(ValueError, match="device.*'cpu', 'cuda' or 'cuda:N'"):
        gt.device(*args)


def test_device_is_accepted_wherever_a_device_string_is():
    cpu = gt.device("cpu")
    x = gt.zeros(2, 3, device=cpu)
    assert x.device == "cpu"
    assert gt.tensor([1.0], device=cpu).device == "cpu"
    assert gt.randn(2, device=cpu).device == "cpu"
    assert x.to(cpu) is x
    assert x.to(cpu, gt.float64).dtype == np.float64
    model = gt.nn.Linear(3, 2, device=cpu)
    assert model.to(cpu) is model and model.weight.device == cpu


def test_device_pickles():
    import pickle
    d = gt.device("cuda", 3)
    assert pickle.loads(pickle.dumps(d)) == d and pickle.loads(pickle.dumps(d)).index == 3


# ---- layers at PyTorch's edge cases --------------------------------------------------------------

def test_linear_without_input_features_gives_its_bias():
    torch = pytest.importorskip("torch")
    layer = gt.nn.Linear(0, 3)
    assert layer.weight.shape == (3, 0)
    x = gt.ones(2, 0, requires_grad=True)
    out = layer(x)
    np.testing.assert_array_equal(out.numpy(), np.broadcast_to(layer.bias.numpy(), (2, 3)))
    out.sum().backward()
    assert layer.bias.grad.tolist() == [2.0, 2.0, 2.0] and x.grad.shape == (2, 0)
    assert torch.nn.Linear(0, 3).weight.shape == layer.weight.shape


# ---- matmul promotes as the binary ops do --------------------------------------------------------

@pytest.mark.parametrize("a_dtype, b_dtype", [
    (np.int64, np.float32), (np.float32, np.int64), (np.int32, np.float64), (np.bool_, np.float32),
    (np.float32, np.float64)])
def test_matmul_promotes_as_addition_does(a_dtype, b_dtype):
    """int64 @ float32 is float32, as int64 + float32 (NumPy alone would give float64)."""
    rng = np.random.default_rng(0)
    a_values, b_values = rng.integers(0, 2, (2, 3)), rng.standard_normal((3, 4))
    a = gt.tensor(a_values.astype(a_dtype), requires_grad=a_dtype in (np.float32, np.float64))
    b = gt.tensor(b_values.astype(b_dtype), requires_grad=b_dtype in (np.float32, np.float64))
    out = a @ b
    assert out.dtype == (a[:, :1] + b[:1]).dtype == np.result_type(
        *[d for d in (a_dtype, b_dtype) if np.dtype(d).kind == "f"])
    np.testing.assert_allclose(out.numpy(), a_values @ b_values.astype(b_dtype), rtol=1e-6)
    out.sum().backward()
    for t in (a, b):
        assert t.grad is None or t.grad.dtype == t.dtype
