"""Waiting ranks spin when each has a core, and sleep between tests when ranks outnumber cores."""
from __future__ import annotations

from minigt.distributed import waiting, world


class Request:
    def __init__(self, tests_before_done: int):
        self.left, self.calls = tests_before_done, []

    def Test(self) -> bool:  # noqa: N802 - mpi4py's name
        self.calls.append("Test")
        self.left -= 1
        return self.left < 0

    def Wait(self) -> None:  # noqa: N802
        self.calls.append("Wait")


def test_more_ranks_than_cores_wait_by_testing_and_sleeping(monkeypatch):
    slept = []
    monkeypatch.setattr(waiting.time, "sleep", slept.append)
    try:
        waiting.configure(waiting.usable_cores() + 1)
        request = Request(tests_before_done=3)
        waiting.wait(request)
        assert request.calls == ["Test"] * 4 and slept == [waiting.POLL_SECONDS] * 3
        waiting.configure(waiting.usable_cores())
        request = Request(tests_before_done=3)
        waiting.wait(request)
        assert request.calls == ["Wait"]
    finally:
        waiting.configure(world.local_size())


def test_the_job_knows_whether_its_machine_is_crowded():
    assert waiting.crowded() == (world.local_size() > waiting.usable_cores())
