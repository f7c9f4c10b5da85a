"""Module mechanics: registration, traversal, state dicts, modes, zero_grad, devices/dtypes, repr."""
import copy

import numpy as np
import pytest

import minigt
from minigt import nn


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.scale = nn.Parameter(minigt.ones(3))
        self.register_buffer("steps", minigt.zeros(1, dtype=minigt.int64))
        self.register_buffer("cache", minigt.zeros(2), persistent=False)
        self.note = "plain attributes are not registered"

    def forward(self, x):
        return self.fc(x) * self.scale


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([Block(), Block()])
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(4, 2, bias=False), nn.Dropout(0.5))

    def forward(self, x):
        for block in self.blocks:
            x = block(x)[..., :1] * minigt.ones(4)
        return self.head(x)


def test_attribute_assignment_registers_parameters_and_modules():
    block = Block()
    assert [name for name, _ in block.named_parameters()] == ["scale", "fc.weight", "fc.bias"]
    assert list(block.children()) == [block.fc]
    assert block.note == "plain attributes are not registered"
    assert [name for name, _ in block.named_buffers()] == ["steps", "cache"]


def test_traversal_orders_and_names():
    net = Net()
    names = [name for name, _ in net.named_modules()]
    assert names == ["", "blocks", "blocks.0", "blocks.0.fc", "blocks.1", "blocks.1.fc", "head",
                     "head.0", "head.1", "head.2"]
    assert [name for name, _ in net.named_children()] == ["blocks", "head"]
    assert len(list(net.modules())) == 10
    assert len(list(net.parameters())) == 7
    assert [name for name, _ in net.named_parameters(recurse=False)] == []


def test_shared_parameters_and_modules_are_listed_once():
    net = nn.Module()
    fc = nn.Linear(2, 2)
    net.a, net.b = fc, fc
    net.tied = fc.weight
    assert len(list(net.parameters())) == 2
    assert len(list(net.modules())) == 2


def test_reassigning_an_attribute_changes_its_kind():
    block = Block()
    block.fc = nn.Parameter(minigt.zeros(2))  # a module replaced by a parameter
    assert "fc" not in dict(block.named_children())
    assert block.fc.shape == (2,)
    del block.fc
    assert not hasattr(block, "fc")
    with pytest.raises(TypeError, match="parameter 'scale'"):
        block.scale = minigt.ones(3)  # a plain tensor where a Parameter is registered
    block.scale = None
    assert [name for name, _ in block.named_parameters()] == []


def test_forgetting_super_init_is_explained():
    class Broken(nn.Module):
        def __init__(self):
            self.fc = nn.Linear(2, 2)

    with pytest.raises(AttributeError, match=r"super\(\).__init__\(\)"):
        Broken()


def test_call_runs_forward_and_base_forward_is_explained():
    block = Block()
    assert block(minigt.randn(5, 4)).shape == (5, 3)
    with pytest.raises(NotImplementedError, match="forward"):
        nn.Module()(1)
    with pytest.raises(NotImplementedError, match="iterate over it"):
        nn.ModuleList([nn.Linear(2, 2)])(minigt.randn(1, 2))


def test_parameter_basics():
    t = minigt.randn(2, 3)
    p = nn.Parameter(t)
    assert isinstance(p, minigt.Tensor) and p.requires_grad and p.is_leaf
    assert p.data is t.data  # shares storage
    assert not nn.Parameter(t, requires_grad=False).requires_grad
    assert repr(p).startswith("Parameter containing:\ntensor(")
    assert type(p * 2) is minigt.Tensor  # results of ops are plain tensors
    with pytest.raises(TypeError):
        nn.Parameter(minigt.tensor([1, 2]))


def test_state_dict_round_trip():
    source, target = Net(), Net()
    state = source.state_dict()
    assert "blocks.0.steps" in state and "blocks.0.cache" not in state  # non-persistent buffer
    assert all(not v.requires_grad for v in state.values())
    assert list(state) == ["blocks.0.scale", "blocks.0.steps", "blocks.0.fc.weight", "blocks.0.fc.bias",
                           "blocks.1.scale", "blocks.1.steps", "blocks.1.fc.weight", "blocks.1.fc.bias",
                           "head.1.weight"]
    weight = target.head[1].weight
    result = target.load_state_dict({k: v.numpy() for k, v in state.items()})  # arrays work too
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert target.head[1].weight is weight  # loaded in place
    for key, value in target.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), state[key].numpy())
    x = minigt.randn(3, 4)
    source.eval(), target.eval()
    np.testing.assert_array_equal(source(x).numpy(), target(x).numpy())


def test_load_state_dict_casts_to_the_model_dtype():
    layer = nn.Linear(2, 2)
    layer.load_state_dict({"weight": np.eye(2), "bias": np.ones(2)})  # float64 into float32
    assert layer.weight.dtype == np.float32
    np.testing.assert_array_equal(layer.weight.numpy(), np.eye(2))


def test_strict_load_names_missing_and_unexpected_keys():
    state = nn.Linear(2, 3).state_dict()
    state["extra"] = state.pop("bias")
    with pytest.raises(RuntimeError, match=r"missing keys: 'bias'(.|\n)*unexpected keys: 'extra'"):
        nn.Linear(2, 3).load_state_dict(state)
    layer = nn.Linear(2, 3)
    before = layer.bias.numpy().copy()
    result = layer.load_state_dict(state, strict=False)
    assert result == (["bias"], ["extra"])
    np.testing.assert_array_equal(layer.bias.numpy(), before)


def test_shape_mismatch_names_the_key_and_both_shapes():
    message = r"'weight': the model has shape \(3, 2\), the state dict has \(2, 3\)"
    with pytest.raises(RuntimeError, match=message):
        nn.Linear(2, 3).load_state_dict(nn.Linear(3, 2).state_dict())
    with pytest.raises(RuntimeError, match="size mismatch"):
        nn.Linear(2, 3).load_state_dict(nn.Linear(3, 2).state_dict(), strict=False)


def test_train_and_eval_reach_every_submodule():
    net = Net()
    assert all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())


def test_zero_grad():
    net = Net()
    net(minigt.randn(3, 4)).sum().backward()
    grads = {name: p.grad for name, p in net.named_parameters()}
    assert all(g is not None for g in grads.values())
    net.zero_grad(set_to_none=False)
    for name, p in net.named_parameters():
        assert p.grad is grads[name] and not p.grad.numpy().any()
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_to_dtype_keeps_parameter_identity_and_casts_grads():
    net = Net()
    net(minigt.randn(3, 4)).sum().backward()
    params = list(net.parameters())
    assert net.double() is net
    assert list(net.parameters()) == params
    assert all(p.dtype == np.float64 and p.grad.dtype == np.float64 for p in params)
    assert net.blocks[0].steps.dtype == np.int64  # integer buffers keep their dtype
    net.to(minigt.float32)
    assert all(p.dtype == np.float32 for p in params)
    assert net.to("cpu") is net and net.cpu() is net


def test_deepcopy_gives_independent_parameters():
    net = Net()
    twin = copy.deepcopy(net)
    assert all(a is not b for a, b in zip(net.parameters(), twin.parameters()))
    with minigt.no_grad():
        twin.head[1].weight.fill_(0.0)
    assert net.head[1].weight.numpy().any()


def test_containers():
    layers = [nn.Linear(2, 2) for _ in range(3)]
    mlist = nn.ModuleList(layers[:2])
    mlist.append(layers[2])
    assert len(mlist) == 3 and mlist[-1] is layers[2] and list(mlist) == layers
    assert isinstance(mlist[1:], nn.ModuleList) and list(mlist[1:]) == layers[1:]
    mlist[0] = nn.ReLU()
    assert isinstance(mlist[0], nn.ReLU)
    with pytest.raises(IndexError, match="out of range"):
        mlist[3]
    seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
    assert seq(minigt.randn(4, 2)).shape == (4, 3)
    assert isinstance(seq[:1], nn.Sequential) and len(seq[:1]) == 1


def test_repr_matches_pytorch_layout():
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.LayerNorm(8), nn.GELU("tanh"),
                        nn.Embedding(10, 8, padding_idx=2))
    assert repr(net) == (
        "Sequential(\n"
        "  (0): Linear(in_features=4, out_features=8, bias=True)\n"
        "  (1): ReLU()\n"
        "  (2): LayerNorm((8,), eps=1e-05, elementwise_affine=True, bias=True)\n"
        "  (3): GELU(approximate='tanh')\n"
        "  (4): Embedding(10, 8, padding_idx=2)\n"
        ")"
    )
    torch = pytest.importorskip("torch")
    twin = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.LayerNorm(8),
                               torch.nn.GELU("tanh"), torch.nn.Embedding(10, 8, padding_idx=2))
    assert repr(net) == repr(twin)
    assert repr(nn.Dropout(0.1)) == "Dropout(p=0.1)"  # no inplace variant here


def test_nested_repr_indents_children():
    assert repr(Block()) == (
        "Block(\n"
        "  (fc): Linear(in_features=4, out_features=3, bias=True)\n"
        ")"
    )
    assert repr(nn.Sequential(nn.Sequential(nn.ReLU()))) == (
        "Sequential(\n  (0): Sequential(\n    (0): ReLU()\n  )\n)"
    )


def test_apply_visits_every_module():
    seen = []
    Net().apply(lambda m: seen.append(type(m).__name__))
    assert seen[-1] == "Net" and seen.count("Linear") == 3


def test_a_submodule_registered_twice_round_trips_its_state_dict():
    """As in PyTorch: the state dict names a shared layer under each of its names, and loads back."""
    model = nn.Module()
    model.a = model.b = nn.Linear(2, 2)
    state = model.state_dict()
    assert sorted(state) == ["a.bias", "a.weight", "b.bias", "b.weight"]
    model.load_state_dict(state)
