"""With a GPU (or the fake cupy): train_pixel on cuda against the CPU, a training step under
`cupyx.allow_synchronize(False)`, dropout drawing on the GPU, the Pixel Transformer against PyTorch on CUDA, each collective
path forced under `mpirun -n 2` and compared with NumPy and with each other, and a 2-rank
train_pixel run on cuda. All are marked `gpu`; without CuPy and a GPU they skip."""
from __future__ import annotations

import json
import math
import re
import sys

import numpy as np
import pytest

import minigt as gt
from minigt.nn import functional as F

from .helpers import (EXAMPLES, gpu_test, needs_mpirun, pixel_model, run, single_process,
                      train_step)

pytestmark = single_process

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
        return train_step(model, optimizer, x, y, loss_kind)

    step()  # the first step compiles kernels
    with cupyx.allow_synchronize(False):
        loss, correct = step()
    assert math.isfinite(loss.item()) and 0 <= correct.item() <= 2  # read afterwards, to print


@gpu_test
def test_dropout_draws_its_mask_on_the_gpu(monkeypatch):
    import cupy
    import cupyx

    x = gt.ones(200, 50, device="cuda", requires_grad=True)
    upload = cupy.asarray

    def refuse_host_arrays(a, *args, **kwargs):
        assert not isinstance(a, np.ndarray), "dropout copied a mask from the host"
        return upload(a, *args, **kwargs)

    monkeypatch.setattr(cupy, "asarray", refuse_host_arrays)
    with cupyx.allow_synchronize(False):
        gt.manual_seed(5)
        y = F.dropout(x, 0.25)
        again = (gt.manual_seed(5), F.dropout(x, 0.25))[1]
    monkeypatch.undo()
    (y * 2).sum().backward()
    kept = y.numpy() != 0
    assert abs(kept.mean() - 0.75) < 0.02 and y.device == x.device
    np.testing.assert_allclose(y.numpy()[kept], 1 / 0.75, rtol=1e-6)
    np.testing.assert_allclose(x.grad.numpy(), 2 * kept / 0.75, rtol=1e-6)
    np.testing.assert_array_equal(again.numpy(), y.numpy())  # manual_seed repeats the GPU draws


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

