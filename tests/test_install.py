"""pyproject.toml's extras bring what each way of using minigt needs.

    pip install 'minigt[mpi]'       mpi4py and the MPICH wheel (its mpirun lands beside python)
    pip install 'minigt[examples]'  scikit-learn (--data digits), matplotlib (--plot), tqdm
    pip install -e '.[dev]'         both of those, and everything the tests and benchmarks import
"""
from __future__ import annotations

import ast
import re
import sys
from importlib import metadata
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
EXTRAS = PROJECT["optional-dependencies"]
CODE_FOLDERS = ("minigt", "tests", "examples", "benchmarks", "docs")


def distribution(requirement: str) -> str:
    """The normalised distribution name a requirement names: 'Scikit_Learn>=1.0' -> 'scikit-learn'."""
    name = re.match(r"[A-Za-z0-9._-]+", requirement).group()
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_by(extra: str) -> set[str]:
    """The distributions `pip install minigt[extra]` asks for, through minigt[...] self-references."""
    assert extra in EXTRAS, f"pyproject.toml has no [project.optional-dependencies] {extra}"
    names: set[str] = set()
    for requirement in EXTRAS[extra]:
        if distribution(requirement) != "minigt":
            names.add(distribution(requirement))
            continue
        for inner in re.search(r"\[(.*?)\]", requirement).group(1).split(","):
            names |= installed_by(inner.strip())
    return names


def test_mpi_extra_brings_mpi4py_and_an_mpi_with_mpirun():
    assert {"mpi4py", "mpich"} <= installed_by("mpi")


def test_examples_extra_brings_what_the_example_flags_need():
    assert {"scikit-learn", "matplotlib", "tqdm"} <= installed_by("examples")


def test_dev_installs_every_extra_but_gpu():
    others = [installed_by(extra) for extra in EXTRAS if extra not in ("gpu", "dev")]
    assert set().union(*others) <= installed_by("dev")


def imported_top_level_modules() -> dict[str, Path]:
    """Each top-level module name the project's Python files import, with one file importing it."""
    found: dict[str, Path] = {}
    for folder in CODE_FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    found.setdefault(name.partition(".")[0], path.relative_to(ROOT))
    return found


def test_dev_declares_every_installed_package_the_code_imports():
    # A module no installed distribution provides (cupy without a GPU, the tests' own helpers) is
    # not checked: only what could be imported here only by luck of the environment.
    declared = {"minigt", *installed_by("dev"), *map(distribution, PROJECT["dependencies"])}
    owners = metadata.packages_distributions()
    undeclared = {
        module: f"{path} imports it, from {', '.join(sorted(set(owners[module])))}"
        for module, path in imported_top_level_modules().items()
        if module not in sys.stdlib_module_names and module in owners
        and not {distribution(name) for name in owners[module]} & declared
    }
    assert not undeclared, f"add these to pyproject.toml's dev extra: {undeclared}"
