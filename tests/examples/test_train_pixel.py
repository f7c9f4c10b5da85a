"""examples/train_pixel.py run in-process through `main(argv)` (which returns the result dict),
at tiny sizes: the printed lines, the --out JSON, exact resumption from a checkpoint, --plot, the
dtype / loss / optimizer options and the command-line errors."""
from __future__ import annotations

import json
import math
import os
import re
import sys

import numpy as np
import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples")
sys.path.insert(0, os.path.abspath(EXAMPLES))

import train_pixel  # noqa: E402

# img 8, 4 images per sample, dim 16, 2 heads, 2 layers, ff 32; 8 samples in batches of 2
TINY = ["--img", "8", "--seq", "4", "--dim", "16", "--heads", "2", "--layers", "2", "--ff", "32",
        "--n", "8", "--batch", "2"]
STEPS_PER_EPOCH = 4
EPOCH_LINE = re.compile(r"Epoch (\d+)/(\d+): Loss = (\d+\.\d{4}), Acc = (\d+\.\d{2})%")
SUMMARY_LINE = re.compile(
    r"Trained (\d+) steps in \d+\.\d{2} s \(\d+\.\d samples/s\), peak RSS \d+ MB")
# digits: 6000 training sequences, large batches so that 4 epochs stay a few seconds
DIGITS = ["--data", "digits", "--img", "8", "--seq", "3", "--dim", "16", "--heads", "2",
          "--layers", "1", "--ff", "32", "--batch", "600", "--lr", "3e-3"]


def run(argv, capsys=None):
    """main(argv) -> (result dict, stdout lines) (lines only when capsys is given)."""
    if capsys is not None:
        capsys.readouterr()
    result = train_pixel.main([str(a) for a in argv])
    lines = capsys.readouterr().out.splitlines() if capsys is not None else None
    return result, lines


# ---- (a) what it prints ------------------------------------------------------------------------
def test_prints_one_line_per_epoch_and_a_summary(capsys):
    result, lines = run(TINY + ["--epochs", 3], capsys)
    assert len(lines) == 4, lines
    for k, (line, record) in enumerate(zip(lines[:3], result["epochs"]), start=1):
        match = EPOCH_LINE.fullmatch(line)
        assert match, f"unexpected epoch line {line!r}"
        assert (int(match[1]), int(match[2])) == (k, 3)
        assert match[3] == f"{record['loss']:.4f}" and match[4] == f"{record['acc']:.2f}"
        assert line == f"Epoch {k}/3: Loss = {record['loss']:.4f}, Acc = {record['acc']:.2f}%"
    summary = SUMMARY_LINE.fullmatch(lines[3])
    assert summary, f"unexpected summary line {lines[3]!r}"
    assert int(summary[1]) == 3 * STEPS_PER_EPOCH


# ---- (b) --out JSON ----------------------------------------------------------------------------
def test_out_json_holds_config_epochs_full_precision_losses_and_timings(tmp_path):
    path = tmp_path / "run.json"
    result, _ = run(TINY + ["--epochs", 2, "--out", path])
    saved = json.loads(path.read_text())
    assert {"config", "epochs", "step_losses", "train_seconds", "samples_per_s",
            "peak_rss_mb"} <= set(saved)

    config = saved["config"]
    assert config["img"] == 8 and config["seq"] == 4 and config["dim"] == 16
    assert config["heads"] == 2 and config["layers"] == 2 and config["ff"] == 32
    assert config["n"] == 8 and config["batch"] == 2 and config["epochs"] == 2
    assert config["loss"] == "mse" and config["optim"] == "sgd" and config["lr"] == 0.01
    assert config["dtype"] == "float32" and config["data"] == "synthetic"
    assert config["out"] == str(path)

    losses = saved["step_losses"]
    assert len(losses) == 2 * STEPS_PER_EPOCH
    assert losses == result["step_losses"]  # JSON keeps every bit
    assert all(isinstance(v, float) and math.isfinite(v) and v > 0 for v in losses)
    # the float32 losses exactly, not rounded for display
    assert all(float(np.float32(v)) == v for v in losses)
    assert any(round(v, 6) != v for v in losses)

    assert [e["epoch"] for e in saved["epochs"]] == [1, 2]
    for k, record in enumerate(saved["epochs"]):
        assert set(record) == {"epoch", "loss", "acc"}
        epoch_losses = losses[k * STEPS_PER_EPOCH:(k + 1) * STEPS_PER_EPOCH]
        assert record["loss"] == pytest.approx(float(np.mean(epoch_losses)), rel=1e-12)
        assert 0.0 <= record["acc"] <= 100.0
        assert (record["acc"] * 8 / 100) == pytest.approx(round(record["acc"] * 8 / 100))

    assert saved["train_seconds"] > 0
    assert saved["samples_per_s"] == pytest.approx(2 * 8 / saved["train_seconds"], rel=1e-9)
    assert 10 < saved["peak_rss_mb"] < 100_000  # MB, from ru_maxrss


# ---- (c) resuming ------------------------------------------------------------------------------
def resume_matches_straight_run(tmp_path, capsys, argv):
    """4 epochs straight == 2 epochs with --checkpoint, then --epochs 4 --resume."""
    straight, _ = run(argv + ["--epochs", 4], capsys)
    checkpoint = tmp_path / "state.npz"
    first, _ = run(argv + ["--epochs", 2, "--checkpoint", checkpoint], capsys)
    assert checkpoint.exists()
    resumed, lines = run(argv + ["--epochs", 4, "--checkpoint", checkpoint, "--resume"], capsys)

    assert first["step_losses"] == straight["step_losses"][:len(first["step_losses"])]
    assert resumed["step_losses"] == straight["step_losses"]  # exact equality, every step
    assert resumed["epochs"] == straight["epochs"]
    steps = len(first["step_losses"])
    assert lines[0] == f"resumed from {checkpoint} at epoch 2, step {steps}"
    assert [int(EPOCH_LINE.match(line)[1]) for line in lines[1:-1]] == [3, 4]  # only the new epochs
    return straight


@pytest.mark.parametrize("optim", ["sgd", "adam"])
def test_resume_continues_the_exact_loss_sequence(tmp_path, capsys, optim):
    straight = resume_matches_straight_run(tmp_path, capsys, TINY + ["--optim", optim])
    assert len(straight["step_losses"]) == 4 * STEPS_PER_EPOCH
    assert straight["epochs"][-1]["loss"] < straight["epochs"][0]["loss"]  # it does train


def test_resume_continues_the_exact_loss_sequence_with_shuffled_digits(tmp_path, capsys):
    pytest.importorskip("sklearn")
    args = train_pixel.parse_args(DIGITS)
    assert not np.array_equal(train_pixel.epoch_order(100, 2, args),
                              train_pixel.epoch_order(100, 3, args))  # each epoch its own order
    straight = resume_matches_straight_run(tmp_path, capsys, DIGITS + ["--optim", "adam"])
    assert all("test_acc" in e for e in straight["epochs"])


def test_resume_without_a_checkpoint_file_is_refused(tmp_path, capsys):
    """A mistyped path would otherwise train from scratch, and exit 0."""
    path = tmp_path / "none.npz"
    with pytest.raises(SystemExit) as exit_info:
        run(TINY + ["--epochs", 1, "--checkpoint", path, "--resume"])
    assert exit_info.value.code == (f"--resume: no checkpoint at '{path}' (rank 0 finds no file "
                                    "there); check the path, or leave out --resume to train afresh")
    assert "Epoch" not in capsys.readouterr().out and not path.exists()


# ---- (d) --plot --------------------------------------------------------------------------------
def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "curves.png"
    run(TINY + ["--epochs", 2, "--plot", path])
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5_000


# ---- (e) dtype, loss and optimizer options -----------------------------------------------------
def test_float64_runs_in_float64_and_tracks_float32(tmp_path):
    single, _ = run(TINY + ["--epochs", 2])
    double, _ = run(TINY + ["--epochs", 2, "--dtype", "float64"])
    assert double["config"]["dtype"] == "float64"
    # float64 losses carry more than float32's 24 bits
    assert any(float(np.float32(v)) != v for v in double["step_losses"])
    # same seed, same starting weights, same data: the same run up to float32 rounding
    np.testing.assert_allclose(single["step_losses"], double["step_losses"], rtol=1e-4)


@pytest.mark.parametrize("extra", [["--loss", "ce"], ["--optim", "adam"],
                                   ["--loss", "ce", "--optim", "adam", "--dtype", "float64"]],
                         ids=["ce", "adam", "ce-adam-float64"])
def test_loss_and_optimizer_options_train(extra):
    result, _ = run(TINY + ["--epochs", 3, "--lr", "3e-3"] + extra)
    for flag, value in zip(extra[::2], extra[1::2]):
        assert result["config"][flag[2:]] == value
    losses = result["step_losses"]
    assert len(losses) == 3 * STEPS_PER_EPOCH and all(math.isfinite(v) and v > 0 for v in losses)
    assert result["epochs"][-1]["loss"] < result["epochs"][0]["loss"]
    if "ce" in extra:  # ten classes, small logits at the start: cross-entropy near ln 10
        assert 1.0 < losses[0] < 5.0
    else:  # MSE against one-hot rows: well below 1
        assert losses[0] < 1.0


def test_ce_and_mse_give_different_losses():
    mse, _ = run(TINY + ["--epochs", 1])
    ce, _ = run(TINY + ["--epochs", 1, "--loss", "ce"])
    assert mse["step_losses"] != ce["step_losses"]


# ---- (f) command-line errors -------------------------------------------------------------------
@pytest.mark.parametrize("argv, message", [
    (["--resume"], "--resume needs --checkpoint PATH"),
    (["--loss", "l1"], "argument --loss: invalid choice: 'l1'"),
    (["--optim", "rmsprop"], "argument --optim: invalid choice: 'rmsprop'"),
    (["--dtype", "float16"], "argument --dtype: invalid choice: 'float16'"),
    (["--data", "mnist"], "argument --data: invalid choice: 'mnist'"),
    (["--batch", "two"], "argument --batch: invalid int value: 'two'"),
    (["--lr", "fast"], "argument --lr: invalid float value: 'fast'"),
    (["--epoch"], "argument --epochs: expected one argument"),  # argparse's prefix matching
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["--lr", "nan"], "--lr must be a finite number >= 0, not nan"),
    (["--lr", "inf"], "--lr must be a finite number >= 0, not inf"),
    (["--lr", "-0.1"], "--lr must be a finite number >= 0, not -0.1"),
    (["--progress-every", "-1"], "--progress-every must be a finite number >= 0, not -1.0"),
    (["--tp", "2"], "--tp 2 must divide the number of ranks (1)"),
    (["--device", "gpu"], "--device 'gpu' is not cpu, cuda or cuda:N"),
], ids=["resume-without-checkpoint", "loss", "optim", "dtype", "data", "batch", "lr",
        "missing-value", "unknown", "lr-nan", "lr-inf", "lr-negative", "progress", "tp-ranks",
        "device"])
def test_bad_flags_exit_with_an_argparse_error(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        train_pixel.main(TINY + argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: ") and f"error: {message}" in err, err
