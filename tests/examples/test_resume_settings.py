"""train_pixel.py --resume and the run's settings, which its checkpoint records: a resumed run
that would not continue the run (other data, model or optimizer) is refused with every change
named; a new --lr or --batch takes effect and the run says so; a finished run says it is."""
from __future__ import annotations

import pytest

import minigt

from .test_train_pixel import STEPS_PER_EPOCH, TINY, run


@pytest.fixture
def checkpoint(tmp_path):
    """2 epochs of TINY (SGD, lr 0.01) saved at tmp_path/state.npz."""
    path = tmp_path / "state.npz"
    run(TINY + ["--epochs", 2, "--checkpoint", path])
    return path


def resumed(path, *flags, epochs=4):
    return TINY + ["--epochs", epochs, "--checkpoint", path, "--resume", *flags]


def stopped(argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        run(argv)
    return exit_info.value.code


def test_the_checkpoint_records_the_settings(checkpoint):
    assert minigt.load(checkpoint)["settings"] == {
        "data": "synthetic", "n": 8, "seed": 0, "img": 8, "seq": 4, "dim": 16, "heads": 2,
        "layers": 2, "ff": 32, "dtype": "float32", "loss": "mse", "optim": "sgd", "lr": 0.01,
        "batch": 2}


@pytest.mark.parametrize("saved_optim, new_optim", [("sgd", "adam"), ("adam", "sgd")])
def test_another_optimizer_is_refused(tmp_path, saved_optim, new_optim):
    """SGD's state into Adam was a KeyError: 'step'; Adam's into SGD went on silently."""
    path = tmp_path / "state.npz"
    run(TINY + ["--epochs", 1, "--checkpoint", path, "--optim", saved_optim])
    before = path.read_bytes()
    message = stopped(resumed(path, "--optim", new_optim))
    assert message == (f"--resume: '{path}' was trained with other settings, which a resumed run "
                       f"cannot change: --optim {saved_optim} -> {new_optim}. Pass the "
                       "checkpoint's values, or train afresh (without --resume, with --overwrite)")
    assert path.read_bytes() == before


def test_every_incompatible_change_is_listed(checkpoint):
    message = stopped(resumed(checkpoint, "--dim", 32, "--seed", 5, "--dtype", "float64",
                              "--loss", "ce", "--n", 12, "--lr", 0.5))
    assert ("cannot change: --n 8 -> 12, --seed 0 -> 5, --dim 16 -> 32, --dtype float32 -> "
            "float64, --loss mse -> ce. Pass") in message
    assert "--lr" not in message  # that one may change


def test_other_data_is_refused(checkpoint):
    pytest.importorskip("sklearn")
    message = stopped(resumed(checkpoint, "--data", "digits"))
    assert "cannot change: --data synthetic -> digits. Pass" in message


def test_a_new_learning_rate_takes_effect_and_is_said(checkpoint, capsys):
    straight, _ = run(TINY + ["--epochs", 4])
    faster, lines = run(resumed(checkpoint, "--lr", 0.05), capsys)
    assert lines[0] == f"resumed from {checkpoint} at epoch 2, step 8, with --lr 0.01 -> 0.05"
    first = 2 * STEPS_PER_EPOCH  # the first resumed step's loss comes before any new update
    assert faster["step_losses"][:first + 1] == straight["step_losses"][:first + 1]
    assert faster["step_losses"][first + 1:] != straight["step_losses"][first + 1:]
    saved = minigt.load(checkpoint)
    assert saved["settings"]["lr"] == 0.05
    assert all(group["lr"] == 0.05 for group in saved["optimizer"]["param_groups"])


def test_a_new_batch_size_takes_effect_and_is_said(checkpoint, capsys):
    result, lines = run(resumed(checkpoint, "--batch", 4), capsys)
    assert lines[0] == f"resumed from {checkpoint} at epoch 2, step 8, with --batch 2 -> 4"
    assert len(result["step_losses"]) == 2 * STEPS_PER_EPOCH + 2 * 2  # 8 samples, 2 per epoch


def test_a_finished_run_says_so_and_trains_nothing(checkpoint, capsys):
    before = checkpoint.read_bytes()
    result, lines = run(resumed(checkpoint, epochs=2), capsys)
    assert lines[:2] == [f"resumed from {checkpoint} at epoch 2, step 8",
                         f"{checkpoint} already finished all 2 epochs; nothing to train (pass a "
                         "larger --epochs to train on)"]
    assert result["train_steps"] == 0 and len(result["step_losses"]) == 8
    assert checkpoint.read_bytes() == before


def test_fewer_epochs_than_the_checkpoint_holds_is_refused(checkpoint):
    assert stopped(resumed(checkpoint, epochs=1)) == (
        f"--resume: '{checkpoint}' holds 2 epochs, more than --epochs 1: pass --epochs 2 or more")


def test_a_checkpoint_without_settings_resumes_with_a_warning(checkpoint, capsys):
    """Written by train_pixel.py before checkpoints recorded their settings."""
    old = minigt.load(checkpoint)
    del old["settings"]
    minigt.save(old, checkpoint)
    straight, _ = run(TINY + ["--epochs", 4])
    capsys.readouterr()
    result, _ = run(resumed(checkpoint))
    out, err = capsys.readouterr()
    assert result["step_losses"] == straight["step_losses"]
    assert out.startswith(f"resumed from {checkpoint} at epoch 2, step 8\n")
    assert f"--resume: '{checkpoint}' records no settings" in err
