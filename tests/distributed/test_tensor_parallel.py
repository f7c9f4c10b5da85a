"""Column/row-parallel layers equal their unsplit nn.Linear twins, gradients and clipping included."""
import numpy as np
import pytest

import minigt as gt
import minigt.distributed as dist
from minigt import nn
from minigt.nn import functional as F


@pytest.fixture
def tensor_parallel():
    size = dist.world_size()
    dist.init_parallel(tensor_parallel=size if 8 % size == 0 else 1)
    yield dist.tensor_group().size
    dist.init_parallel(tensor_parallel=1)


def pair(split: bool):
    gt.manual_seed(1)
    if split:
        return dist.ColumnParallelLinear(4, 8), dist.RowParallelLinear(8, 4)
    return nn.Linear(4, 8), nn.Linear(8, 4)


def test_split_layers_match_whole_ones_and_clip_alike(tensor_parallel, device):
    (up, down), (up1, down1) = pair(True), pair(False)
    x = gt.randn(3, 4, dtype=gt.float64).to(device)
    for m in (up, down, up1, down1):
        m.double().to(device)
    out, ref = down(F.gelu(up(x))), down1(F.gelu(up1(x)))
    np.testing.assert_allclose(out.numpy(), ref.numpy(), rtol=1e-12)
    (out**2).sum().backward()
    (ref**2).sum().backward()
    state, whole = {**up.state_dict()}, up1.state_dict()
    np.testing.assert_allclose(state["weight"].numpy(), whole["weight"].numpy())
    split_norm = nn.utils.clip_grad_norm_([*up.parameters(), *down.parameters()], 1.0).item()
    whole_norm = nn.utils.clip_grad_norm_([*up1.parameters(), *down1.parameters()], 1.0).item()
    assert split_norm == pytest.approx(whole_norm, rel=1e-12)
    rows = slice(dist.tensor_group().rank * 8 // tensor_parallel, (dist.tensor_group().rank + 1) * 8 // tensor_parallel)
    np.testing.assert_allclose(up.weight.grad.numpy(), up1.weight.grad.numpy()[rows], rtol=1e-10)


def test_optimizer_state_of_split_layers_is_saved_whole(tensor_parallel):
    """Adam's moments of a split weight are gathered like the weight, and load into unsplit twins."""
    (up, down), (up1, down1) = pair(True), pair(False)
    split = gt.optim.Adam([*up.parameters(), *down.parameters()], lr=0.1)
    whole = gt.optim.Adam([*up1.parameters(), *down1.parameters()], lr=0.1)
    x = gt.randn(3, 4)
    for (a, b), optimizer in (((up, down), split), ((up1, down1), whole)):
        (b(a(x)) ** 2).sum().backward()
        optimizer.step()
    saved, expected = split.state_dict()["state"], whole.state_dict()["state"]
    for i in expected:
        for key in ("exp_avg", "exp_avg_sq"):
            np.testing.assert_allclose(saved[i][key].numpy(), expected[i][key].numpy(), rtol=1e-5,
                                       atol=1e-7, err_msg=f"parameter {i} {key}")
    for p in whole.state[up1.weight].values():
        if isinstance(p, gt.Tensor):
            p.mul_(2.0)  # to see that the loaded state is the one given
    split.load_state_dict(whole.state_dict())  # and back: each rank takes its slice
    rank = dist.tensor_group().rank
    rows = slice(rank * 8 // tensor_parallel, (rank + 1) * 8 // tensor_parallel)
    np.testing.assert_allclose(split.state[up.weight]["exp_avg"].numpy(),
                               whole.state[up1.weight]["exp_avg"].numpy()[rows])
