"""Run under mpirun: every rank runs every test, in the same order; rank 0 alone prints the report.

`MPIEXEC_TIMEOUT=120 mpirun -n 4 python -m pytest tests/distributed -p no:cacheprovider`
A rank stuck in a collective whose partner failed is ended by the per-test timeout; pytest's
usual signal-based timeout cannot interrupt a blocking MPI call, so it runs in a thread that
ends the process, and the launcher then ends the rest of the job.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

from minigt.distributed import world

TEST_TIMEOUT_S = 60
HERE = Path(__file__).parent


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    world.init()
    if config.option.basetemp is None and world.world_size() > 1:
        # a temp root per rank: ranks sharing pytest's default one race to clean it up
        config.option.basetemp = os.path.join(tempfile.gettempdir(), f"pytest-minigt-rank{world.rank()}")
    if world.rank() != 0:
        # Before the terminal reporter is made, so it writes to /dev/null; failures still
        # reach stderr through pytest_runtest_logreport below.
        sys.stdout = open(os.devnull, "w")


def pytest_collection_modifyitems(items):
    for item in items:  # every item of the session: keep to this folder's
        if item.path.is_relative_to(HERE) and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(TEST_TIMEOUT_S, method="thread"))


def pytest_runtest_logreport(report):
    if report.failed and world.rank() != 0:
        sys.stderr.write(f"[rank {world.rank()}] FAILED {report.nodeid} ({report.when})\n"
                         f"{report.longreprtext}\n")


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session):
    """Fail on every rank when any rank failed, so ranks that disagree still fail the job."""
    failures = [session.testsfailed]
    if world.world_size() > 1:
        failures = world.comm().allgather(session.testsfailed)  # a few ints: pickling is fine
    session.config.failures_per_rank = failures
    if sum(failures) and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, config):
    failures = getattr(config, "failures_per_rank", [])
    others = {rank: n for rank, n in enumerate(failures) if rank > 0 and n}
    if others:
        terminalreporter.write_line(f"failures on other ranks (rank: count): {others}", red=True)
