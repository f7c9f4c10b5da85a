"""GT_AUTO_SHARD=1: data made outside modules is split along dim 0; parameters and the constants
a module makes for itself stay whole."""
import numpy as np
import pytest

import minigt as gt
import minigt.creation
import minigt.distributed as dist
from minigt import nn


@pytest.fixture
def auto_shard(monkeypatch):
    monkeypatch.setattr(minigt.creation, "auto_shard_hook", dist.auto_shard)


def test_data_is_sharded_along_dim_0(auto_shard):
    x = gt.tensor(np.arange(10.0).reshape(5, 2))
    assert x.placement == dist.Shard(0) and x.shape == (5, 2)
    np.testing.assert_array_equal(x.numpy(), np.arange(10.0).reshape(5, 2))
    for make in (lambda: gt.randn(6, 3), lambda: gt.zeros(7), lambda: gt.arange(9)):
        assert make().placement == dist.Shard(0)


def test_scalars_and_tensors_that_require_grad_stay_whole(auto_shard):
    assert gt.tensor(3.0).placement is None
    assert gt.randn(4, 2, requires_grad=True).placement is None


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)
        self.table = nn.Parameter(gt.randn(4, 3))

    def forward(self, x):
        positions = gt.arange(x.shape[0])  # a constant the model makes: never sharded
        assert positions.placement is None
        return self.fc(x) + positions.float().unsqueeze(-1)


def test_modules_keep_their_parameters_and_constants_whole(auto_shard):
    model = Model()
    assert all(p.placement is None for p in model.parameters())
    x = gt.randn(5, 3)
    assert x.placement == dist.Shard(0)
    out = model(x)  # the whole positions meet x's rows: each rank uses the rows it holds
    assert out.placement == dist.Shard(0)
    whole = x.full_tensor()
    expected = whole.numpy() @ model.fc.weight.numpy().T + model.fc.bias.numpy() + np.arange(5.0)[:, None]
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6)
