"""train_pixel.py checks its paths, packages and device before it trains (its numbers: the table
of bad flags in test_train_pixel.py), stops on a loss that becomes NaN or inf, and shows progress
where no terminal is: in-process through `main(argv)`, and under `mpirun -n 2`, where what
matters is that rank 0 alone speaks."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import minigt
from minigt.distributed import world

from .test_train_pixel import EPOCH_LINE, TINY, run, train_pixel

ROOT = Path(__file__).resolve().parents[2]
TRAIN = str(ROOT / "examples" / "train_pixel.py")
MPIRUN = shutil.which("mpirun", path=os.path.dirname(sys.executable))
needs_mpirun = pytest.mark.skipif(
    MPIRUN is None or world.launcher_rank_size() is not None,
    reason="needs mpirun beside this Python (pip install mpich), and starts jobs of its own")
PROGRESS_LINE = re.compile(r"step (\d+)/(\d+): loss (\d+\.\d{4}), \d+\.\d samples/s")


def refused(capsys, argv, message: str) -> None:
    """main(TINY + argv) is an argparse error (status 2) holding `message`, before training."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        train_pixel.main([str(a) for a in TINY + argv])
    assert exit_info.value.code == 2
    out, err = capsys.readouterr()
    assert err.startswith("usage: ") and f"error: {message}" in err, err
    assert "Epoch" not in out


def launch(folder: Path, ranks: int, *flags, env=None) -> subprocess.CompletedProcess:
    """train_pixel.py with TINY and `flags` on `ranks` ranks (1: no mpirun), in `folder`."""
    command = [sys.executable, TRAIN, *TINY, *map(str, flags)]
    if ranks > 1:
        command = [MPIRUN, "-n", str(ranks)] + command
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPIEXEC_TIMEOUT": "60", **(env or {})}
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True,
                          timeout=90)


# ---- the device (numbers: test_train_pixel.py's table of bad flags) -------------------------
@pytest.mark.skipif(minigt.cuda_available(), reason="a GPU is here")
def test_a_gpu_asked_for_where_there_is_none_is_an_argparse_error(capsys):
    refused(capsys, ["--device", "cuda"], "--device: device 'cuda' requested but CuPy with a GPU "
                                          "is not available")


# ---- outputs, checked before training ----------------------------------------------------------
@pytest.mark.parametrize("flag", ["--out", "--plot", "--checkpoint"])
def test_an_output_in_a_missing_folder_is_refused_before_training(capsys, tmp_path, flag):
    path = tmp_path / "missing" / "run.png"
    refused(capsys, ["--epochs", 1, flag, path],
            f"{flag} '{path}': there is no folder '{tmp_path / 'missing'}'")


@pytest.mark.parametrize("flag", ["--out", "--plot", "--checkpoint"])
def test_an_output_that_is_a_folder_is_refused(capsys, tmp_path, flag):
    refused(capsys, ["--epochs", 1, flag, tmp_path], f"{flag} '{tmp_path}' is a folder")


def test_a_checkpoint_that_is_not_a_regular_file_is_refused(capsys, tmp_path):
    os.mkfifo(tmp_path / "pipe")
    refused(capsys, ["--checkpoint", tmp_path / "pipe"],
            f"--checkpoint '{tmp_path / 'pipe'}' is not a regular file")


def test_a_plot_format_matplotlib_cannot_write_is_refused(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    refused(capsys, ["--plot", tmp_path / "curves.pgn"],
            "--plot '" + str(tmp_path / "curves.pgn") + "': matplotlib writes no .pgn files; use "
            "one of ")


@pytest.mark.parametrize("flags, package, module", [
    (["--plot", "curves.png"], "matplotlib", "matplotlib"),
    (["--data", "digits"], "scikit-learn", "sklearn"),
], ids=["plot", "digits"])
def test_a_missing_package_is_named_with_how_to_install_it(capsys, monkeypatch, tmp_path, flags,
                                                           package, module):
    monkeypatch.setitem(sys.modules, module, None)  # as if it were not installed
    monkeypatch.chdir(tmp_path)
    needs = "--plot" if flags[0] == "--plot" else "--data digits"
    refused(capsys, flags, f"{needs} needs {package}: pip install {package}, or pip install -e "
                           "'.[examples]' in the clone")


def test_pixel_data_names_the_package_the_digits_need(monkeypatch):
    import pixel_data

    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"scikit-learn: pip install scikit-learn"):
        pixel_data.digits(2, 8, 0)


def test_an_existing_checkpoint_is_replaced_only_with_overwrite(capsys, tmp_path):
    path = tmp_path / "state.npz"
    run(TINY + ["--epochs", 1, "--checkpoint", path])
    before = path.read_bytes()
    refused(capsys, ["--epochs", 1, "--seed", 3, "--checkpoint", path],
            f"--checkpoint '{path}' exists: pass --resume to continue from it, or --overwrite "
            "to train afresh and replace it")
    assert path.read_bytes() == before
    run(TINY + ["--epochs", 1, "--seed", 3, "--checkpoint", path, "--overwrite"])
    assert minigt.load(path)["settings"]["seed"] == 3


def test_a_trace_that_cannot_be_written_is_refused_before_training(tmp_path):
    trace = tmp_path / "missing" / "trace.json"
    done = launch(tmp_path, 1, "--epochs", 1, env={"MINIGT_TRACE": str(trace)})
    assert done.returncode == 2, done.stderr
    assert f"error: MINIGT_TRACE '{trace}': there is no folder" in done.stderr
    assert "Epoch" not in done.stdout


# ---- a loss that is no longer a number ---------------------------------------------------------
def test_a_loss_that_becomes_nan_stops_the_run_naming_epoch_and_step(tmp_path, capsys):
    path = tmp_path / "state.npz"
    with pytest.raises(SystemExit) as exit_info:
        run(TINY + ["--epochs", 2, "--lr", "1e30", "--checkpoint", path])
    assert re.fullmatch(r"the loss became nan at epoch 1, step [2-4]: stopping \(a smaller --lr "
                        r"may help; --allow-nan trains on\)", exit_info.value.code)
    assert "Epoch" not in capsys.readouterr().out and not path.exists()  # no NaN checkpoint


def test_allow_nan_trains_on():
    result, _ = run(TINY + ["--epochs", 2, "--lr", "1e30", "--allow-nan"])
    assert len(result["step_losses"]) == 8 and any(v != v for v in result["step_losses"])


# ---- progress without a terminal ---------------------------------------------------------------
def test_without_a_terminal_a_progress_line_comes_every_interval(capsys):
    result, _ = run(TINY + ["--epochs", 2, "--progress-every", 0])
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 8, lines
    for k, (line, loss) in enumerate(zip(lines, result["step_losses"]), start=1):
        match = PROGRESS_LINE.fullmatch(line)
        assert match and (int(match[1]), int(match[2])) == (k, 8), line
        assert match[3] == f"{loss:.4f}"


def test_a_short_run_prints_no_progress_line_at_the_default_interval(capsys):
    run(TINY + ["--epochs", 1])
    assert capsys.readouterr().err == ""


# ---- under mpirun: rank 0 alone speaks, every rank ends ----------------------------------------
@pytest.mark.parametrize("flags, message", [
    (["--lr", "nan"], "error: --lr must be a finite number >= 0, not nan"),
    (["--tp", "3", "--heads", "3", "--dim", "18"],
     "error: --tp 3 must divide the number of ranks (2)"),
    (["--out", "sub/out.json"], "error: --out 'sub/out.json': there is no folder"),
], ids=["lr", "tp", "out"])
@needs_mpirun
def test_an_error_on_two_ranks_is_printed_once(tmp_path, flags, message):
    done = launch(tmp_path, 2, "--epochs", 1, *flags)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count(message) == 1 and done.stderr.count("usage: ") == 1, done.stderr


@needs_mpirun
def test_rank_0_decides_on_paths_for_every_rank(tmp_path):
    """The folder exists for rank 1 only: rank 0, which writes, refuses, and every rank stops."""
    (tmp_path / "rank0").mkdir()
    (tmp_path / "rank1" / "sub").mkdir(parents=True)
    command = [MPIRUN]
    for rank in (0, 1):
        command += [":"] * rank + ["-n", "1", "-wdir", str(tmp_path / f"rank{rank}"),
                                   sys.executable, TRAIN, *TINY, "--out", "sub/out.json"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPIEXEC_TIMEOUT": "60"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=90)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("error: --out 'sub/out.json': there is no folder") == 1
    assert "Epoch" not in done.stdout


@needs_mpirun
def test_nan_on_two_ranks_stops_both_with_one_message_and_progress_from_rank_0(tmp_path):
    done = launch(tmp_path, 2, "--epochs", 1, "--lr", "1e30", "--progress-every", 0)
    assert done.returncode != 0
    assert done.stderr.count("the loss became nan at epoch 1, step") == 1, done.stderr
    steps = [int(m[1]) for m in map(PROGRESS_LINE.fullmatch, done.stderr.splitlines()) if m]
    assert steps == list(range(1, len(steps) + 1)) and steps  # once per step: rank 0 alone
    assert not any(EPOCH_LINE.match(line) for line in done.stdout.splitlines())
