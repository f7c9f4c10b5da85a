"""The README's commands work as printed, tried as a new user would, so they cannot rot.

- ```python blocks run, in order, in one namespace (the quick start, then the many-ranks sketch).
- ```sh blocks are one shell session in the repository root after `make`: a `. .venv/bin/activate`
  line carries on to the commands after it, and the PATH they start from has no .venv/bin on it.
  `python` and `mpirun` commands run for real, on the printed rank count and flags, with SHRINK
  appended to examples/train_pixel.py (argparse keeps a flag's last value): a tiny model, 4
  samples (digits: its own), one epoch. `make` commands take minutes (the whole suite, the
  brief's run), so they are dry runs, `make -n`: the target exists and `make train` starts the
  ranks the README says. Any other command fails the test until it is given a check here.
- docs/*.md's bash blocks are not run (the whole suite, GPU runs), but each python, mpirun, pip
  or pytest in them is .venv's own, and each file they name exists.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.M | re.S)
SHRINK = ["--img", "8", "--dim", "16", "--heads", "4", "--layers", "1", "--ff", "16",
          "--n", "4", "--epochs", "1"]
VENV_PROGRAMS = ("python", "python3", "mpirun", "mpiexec", "pip", "pytest")
ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
IN_A_VENV = sys.prefix != sys.base_prefix


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "the README has a quick start"
    monkeypatch.chdir(tmp_path)  # the quick start saves a checkpoint
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    assert namespace["loss"].item() < 0.1


def commands(block: str) -> list[str]:
    """The block's command lines, backslash continuations joined, blank and comment lines dropped."""
    lines = (line.strip() for line in re.sub(r"\\\n\s*", " ", block).splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def program(words: list[str]) -> str:
    """The program a command runs: its first word after any VARIABLE=value assignments."""
    return next(word for word in words if not ASSIGNMENT.match(word))


def shell_blocks(path: Path, languages: tuple[str, ...]) -> list[tuple[int, list[str]]]:
    """(line of the block, its commands) for each fenced block in one of `languages`."""
    text = path.read_text(encoding="utf-8")
    return [(text.count("\n", 0, match.start(2)) + 1, commands(match.group(2)))
            for match in FENCE.finditer(text) if match.group(1).strip() in languages]


README_SH = shell_blocks(README, ("sh",))


def new_user_environment() -> dict[str, str]:
    """This environment as a fresh shell has it: no venv active, no minigt switches, no launcher."""
    venv_bin = os.path.join(sys.prefix, "bin")
    path = [entry for entry in os.environ.get("PATH", "").split(os.pathsep)
            if entry and os.path.realpath(entry) != os.path.realpath(venv_bin)]
    environ = {name: value for name, value in os.environ.items()
               if name not in ("VIRTUAL_ENV", "MINIGT_TRACE", "GT_AUTO_SHARD", "PMI_RANK", "PMI_SIZE")}
    environ.update(PATH=os.pathsep.join(path), OMP_NUM_THREADS="1", MPIEXEC_TIMEOUT="120")
    return environ


def check_make(words: list[str]) -> None:
    """`make ...` as a dry run in the repository root; `make train` starts NP ranks (8 unless set)."""
    done = subprocess.run(["make", "-n", *words[1:]], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, f"make -n {' '.join(words[1:])}: {done.stderr}"
    if "train" in words:
        ranks = next((word.partition("=")[2] for word in words if word.startswith("NP=")), "8")
        started = re.search(rf"mpirun -n {ranks} \S*python examples/train_pixel.py", done.stdout)
        assert started, f"make -n {' '.join(words[1:])} does not start {ranks} ranks:\n{done.stdout}"


@pytest.mark.skipif(not IN_A_VENV, reason="the README's commands are for the .venv that make creates")
@pytest.mark.parametrize("line, block", README_SH, ids=[f"README.md:{line}" for line, _ in README_SH])
def test_readme_shell_block_runs_as_printed(line, block, tmp_path):
    # The repository root as seen by these commands: its examples and .venv, nothing written into it.
    (tmp_path / ".venv").symlink_to(sys.prefix, target_is_directory=True)
    (tmp_path / "examples").symlink_to(ROOT / "examples", target_is_directory=True)
    earlier = [command for at, block_commands in README_SH if at <= line for command in block_commands]
    activations = [command for command in earlier[:len(earlier) - len(block)]
                   if command.split()[0] in (".", "source")]
    for command in block:
        words = shlex.split(command, comments=True)
        if words[0] in (".", "source"):
            activations.append(command)
        elif program(words) == "make":
            check_make(words)
        elif program(words) in ("python", "mpirun"):
            if "examples/train_pixel.py" in words:
                words += SHRINK
            script = "\n".join([*activations, shlex.join(words)])
            done = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=new_user_environment(),
                                  capture_output=True, text=True, timeout=240)
            assert done.returncode == 0, f"README.md:{line}: {command}\n{done.stdout}\n{done.stderr}"
        else:
            pytest.fail(f"README.md:{line}: no check for {command!r}: teach tests/test_readme.py one")


def test_make_train_picks_the_rank_count():
    check_make(["make", "train"])
    check_make(["make", "train", "NP=3"])


DOCS_COMMANDS = [(f"{path.name}:{line}", command) for path in sorted((ROOT / "docs").glob("*.md"))
                 for line, block in shell_blocks(path, ("sh", "bash")) for command in block]


@pytest.mark.parametrize("where, command", DOCS_COMMANDS, ids=[where for where, _ in DOCS_COMMANDS])
def test_docs_commands_use_the_venv_and_existing_files(where, command):
    words = shlex.split(command, comments=True)
    assert program(words) not in VENV_PROGRAMS, (
        f"{where}: {command!r} finds no {program(words)} with minigt in a new user's shell: "
        f"write .venv/bin/{program(words)}")
    for word in words:
        path = word.partition("=")[2] if ASSIGNMENT.match(word) else word
        if "/" in path and not path.startswith(("/", "-", ".venv/")):
            assert (ROOT / path).exists(), f"{where}: {command!r} names {path}, which does not exist"
