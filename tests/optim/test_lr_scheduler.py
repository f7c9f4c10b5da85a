"""Learning-rate schedules: LambdaLR against PyTorch's, the cosine schedule against its formula."""
import math

import numpy as np
import pytest

import minigt
from minigt import optim
from minigt.optim.lr_scheduler import CosineWithWarmup, LambdaLR


def two_groups(lrs=(0.1, 0.02)):
    return [{"params": [minigt.tensor([1.0], requires_grad=True)], "lr": lr} for lr in lrs]


def lrs_over(scheduler, steps):
    """The lr of every group after construction and after each of `steps` steps."""
    seen = [scheduler.get_last_lr()]
    for _ in range(steps):
        scheduler.optimizer.step()
        scheduler.step()
        seen.append(scheduler.get_last_lr())
    assert seen[-1] == [g["lr"] for g in scheduler.optimizer.param_groups]
    return seen


@pytest.mark.parametrize("lr_lambda", [lambda s: 0.9 ** s, [lambda s: 1 / (s + 1), lambda s: 0.5]])
def test_lambda_lr_matches_pytorch(lr_lambda):
    torch = pytest.importorskip("torch")
    ours = LambdaLR(optim.SGD(two_groups(), lr=1.0), lr_lambda)
    tgroups = [{"params": [torch.zeros(1, requires_grad=True)], "lr": lr} for lr in (0.1, 0.02)]
    theirs = torch.optim.lr_scheduler.LambdaLR(torch.optim.SGD(tgroups, lr=1.0), lr_lambda)
    np.testing.assert_allclose(lrs_over(ours, 8), lrs_over(theirs, 8), rtol=1e-15)


def cosine_reference(step, base, warmup, total, min_lr):
    if step < warmup:
        return base * step / warmup
    if step >= total:
        return min_lr
    progress = (step - warmup) / (total - warmup)
    return min_lr + 0.5 * (base - min_lr) * (1 + math.cos(math.pi * progress))


@pytest.mark.parametrize("warmup, total, min_lr", [(3, 10, 0.0), (0, 5, 0.001), (4, 4, 0.0)])
def test_cosine_with_warmup_follows_its_formula(warmup, total, min_lr):
    sched = CosineWithWarmup(optim.AdamW(two_groups()), warmup, total, min_lr=min_lr)
    expected = [[cosine_reference(s, base, warmup, total, min_lr) for base in (0.1, 0.02)]
                for s in range(total + 3)]
    np.testing.assert_allclose(lrs_over(sched, total + 2), expected, rtol=1e-12, atol=1e-15)


def test_cosine_with_warmup_matches_the_usual_lambda_in_pytorch():
    """With min_lr=0 it is the common warm-up + cosine LambdaLR of transformer training."""
    torch = pytest.importorskip("torch")
    warmup, total = 5, 20

    def factor(step):
        if step < warmup:
            return step / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / (total - warmup))))

    theirs = torch.optim.lr_scheduler.LambdaLR(
        torch.optim.AdamW([torch.zeros(1, requires_grad=True)], lr=0.3), factor)
    ours = CosineWithWarmup(optim.AdamW([minigt.tensor([1.0], requires_grad=True)], lr=0.3),
                            warmup, total)
    np.testing.assert_allclose(lrs_over(ours, 25), lrs_over(theirs, 25), rtol=1e-12, atol=1e-16)


def test_scheduler_state_round_trips_through_a_checkpoint(tmp_path):
    opt = optim.SGD(two_groups(), lr=1.0)
    sched = CosineWithWarmup(opt, 2, 10, min_lr=0.001)
    saved_lrs = lrs_over(sched, 4)[-1]
    minigt.save({"opt": opt.state_dict(), "sched": sched.state_dict()}, tmp_path / "c.npz")
    rest = lrs_over(sched, 5)[1:]

    checkpoint = minigt.load(tmp_path / "c.npz")
    opt2 = optim.SGD(two_groups(), lr=1.0)
    sched2 = CosineWithWarmup(opt2, 2, 10, min_lr=0.001)  # sets the step-0 lr (0: warm-up)...
    sched2.load_state_dict(checkpoint["sched"])
    opt2.load_state_dict(checkpoint["opt"])
    assert sched2.last_epoch == 4
    assert [g["lr"] for g in opt2.param_groups] == sched2.get_last_lr() == saved_lrs  # ...restored
    assert lrs_over(sched2, 5)[1:] == rest


def test_loading_the_scheduler_last_also_restores_the_lr():
    opt = optim.SGD(two_groups(), lr=1.0)
    sched = CosineWithWarmup(opt, 2, 10)
    lrs_over(sched, 3)
    saved = sched.state_dict()
    opt2 = optim.SGD(two_groups(), lr=1.0)
    sched2 = CosineWithWarmup(opt2, 2, 10)
    sched2.load_state_dict(saved)
    assert [g["lr"] for g in opt2.param_groups] == sched.get_last_lr()


def test_scheduler_checks():
    with pytest.raises(ValueError, match="warmup_steps <= total_steps"):
        CosineWithWarmup(optim.SGD(two_groups()), 10, 5)
    with pytest.raises(ValueError, match="2 lr_lambdas for 1"):
        LambdaLR(optim.SGD(two_groups()[:1]), [lambda s: 1.0] * 2)
    with pytest.raises(TypeError, match="Optimizer"):
        LambdaLR(object(), lambda s: 1.0)
