"""How train_pixel.py shows its progress: a tqdm bar on a terminal; elsewhere (a log file, a
batch job) a line on stderr every few seconds. Rank 0 alone speaks."""
from __future__ import annotations

import sys
import time

import minigt.distributed as dist


def progress(total_steps: int, every_s: float):
    """What reports `total_steps` steps: `.step(loss, samples)`, `.write(line)`, `.close()`."""
    if dist.rank() != 0:
        return _Silent()
    if sys.stderr.isatty() and total_steps >= 50:
        try:
            return _Bar(total_steps)
        except ImportError:  # tqdm comes with the examples extra; lines will do
            pass
    return _Lines(total_steps, every_s)


class _Silent:
    def step(self, loss: float, samples: int) -> None:
        pass

    def write(self, line: str) -> None:
        pass

    def close(self) -> None:
        pass


class _Lines(_Silent):
    """Every `every_s` seconds a line: the step, its loss and the samples per second since the
    last line. (tqdm only draws on a terminal: a log would hold nothing until an epoch ends.)"""

    def __init__(self, total_steps: int, every_s: float):
        self.total, self.every_s = total_steps, every_s
        self.done = self.samples = 0
        self.since = time.perf_counter()

    def step(self, loss: float, samples: int) -> None:
        self.done += 1
        self.samples += samples
        now = time.perf_counter()
        if now - self.since >= self.every_s:
            rate = self.samples / (now - self.since)
            print(f"step {self.done}/{self.total}: loss {loss:.4f}, {rate:.1f} samples/s",
                  file=sys.stderr, flush=True)
            self.since, self.samples = now, 0

    def write(self, line: str) -> None:
        print(line, flush=True)


class _Bar(_Silent):
    def __init__(self, total_steps: int):
        from tqdm import tqdm

        self.bar = tqdm(total=total_steps, leave=False, unit="step")

    def step(self, loss: float, samples: int) -> None:
        self.bar.set_postfix_str(f"loss {loss:.4f}", refresh=False)
        self.bar.update(1)

    def write(self, line: str) -> None:
        self.bar.write(line)

    def close(self) -> None:
        self.bar.close()
