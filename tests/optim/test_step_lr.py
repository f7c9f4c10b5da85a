"""StepLR against PyTorch's: decay every step_size steps, and resuming with last_epoch."""
import numpy as np
import pytest

import minigt
from minigt import optim
from minigt.optim.lr_scheduler import StepLR

from .test_lr_scheduler import lrs_over, two_groups

torch = pytest.importorskip("torch")


def torch_groups(lrs=(0.1, 0.02)):
    return [{"params": [torch.zeros(1, requires_grad=True)], "lr": lr} for lr in lrs]


@pytest.mark.parametrize("step_size, gamma", [(3, 0.5), (1, 0.9), (5, 0.1)])
def test_step_lr_matches_pytorch(step_size, gamma):
    ours = StepLR(optim.SGD(two_groups(), lr=1.0), step_size, gamma=gamma)
    theirs = torch.optim.lr_scheduler.StepLR(torch.optim.SGD(torch_groups(), lr=1.0), step_size,
                                             gamma=gamma)
    assert ours.last_epoch == theirs.last_epoch == 0
    np.testing.assert_allclose(lrs_over(ours, 12), lrs_over(theirs, 12), rtol=1e-15)


def test_step_lr_default_gamma_is_pytorchs():
    sched = StepLR(optim.SGD(two_groups(), lr=1.0), 2)
    assert lrs_over(sched, 2)[-1] == pytest.approx([0.01, 0.002])


def test_resuming_with_last_epoch_continues_where_pytorch_does():
    """A new scheduler over an optimizer whose groups hold 'initial_lr' (a loaded state dict)
    picks up at step last_epoch + 1, as in PyTorch."""
    ours = StepLR(optim.SGD(two_groups(), lr=1.0), 3, gamma=0.5)
    theirs = torch.optim.lr_scheduler.StepLR(torch.optim.SGD(torch_groups(), lr=1.0), 3, gamma=0.5)
    lrs_over(ours, 7), lrs_over(theirs, 7)
    our_state = ours.optimizer.state_dict()
    their_state = theirs.optimizer.state_dict()

    resumed_opt = optim.SGD(two_groups(), lr=1.0)
    resumed_opt.load_state_dict(our_state)
    resumed = StepLR(resumed_opt, 3, gamma=0.5, last_epoch=7)
    their_opt = torch.optim.SGD(torch_groups(), lr=1.0)
    their_opt.load_state_dict(their_state)
    their_resumed = torch.optim.lr_scheduler.StepLR(their_opt, 3, gamma=0.5, last_epoch=7)
    assert resumed.last_epoch == their_resumed.last_epoch == 8
    resumed_lrs = lrs_over(resumed, 6)
    np.testing.assert_allclose(resumed_lrs, lrs_over(their_resumed, 6), rtol=1e-15)
    np.testing.assert_allclose(resumed_lrs, lrs_over(ours, 7)[1:], rtol=1e-15)  # as if never stopped


def test_resuming_without_initial_lr_is_refused():
    with pytest.raises(KeyError, match=r"initial_lr.*param_groups\[0\].*last_epoch=-1"):
        StepLR(optim.SGD(two_groups(), lr=1.0), 3, last_epoch=4)


@pytest.mark.parametrize("step_size", [0, -2, 1.5])
def test_step_size_must_be_a_positive_int(step_size):
    with pytest.raises(ValueError, match="StepLR: step_size must be a positive int"):
        StepLR(optim.SGD(two_groups(), lr=1.0), step_size)


def test_step_lr_is_exported_as_in_pytorch():
    assert minigt.optim.lr_scheduler.StepLR is StepLR


def test_lambda_lr_resumes_with_last_epoch_as_pytorch():
    ours = optim.lr_scheduler.LambdaLR(optim.SGD(two_groups(), lr=1.0), lambda s: 0.9 ** s)
    lrs_over(ours, 4)
    opt = optim.SGD(two_groups(), lr=1.0)
    opt.load_state_dict(ours.optimizer.state_dict())
    resumed = optim.lr_scheduler.LambdaLR(opt, lambda s: 0.9 ** s, last_epoch=4)
    assert resumed.last_epoch == 5
    np.testing.assert_allclose(lrs_over(resumed, 3), lrs_over(ours, 4)[1:], rtol=1e-15)
