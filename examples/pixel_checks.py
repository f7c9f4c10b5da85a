"""What train_pixel.py checks before it trains, so that a mistake costs seconds rather than a run.

Errors are argparse's (`usage: ...` then `error: ...`, status 2), printed once: under mpirun
rank 0 prints and every rank exits. What depends on the machine (files, folders, installed
packages, the device) is looked at by rank 0 alone, and every rank follows its verdict: ranks on
other machines may see other disks.
"""
from __future__ import annotations

import argparse
import importlib.util
import math
import os
import sys

import numpy as np

import minigt as gt
import minigt.distributed as dist
from minigt.distributed import collectives, trace

INSTALL = "pip install -e '.[examples]' in the clone (scikit-learn, matplotlib, tqdm)"


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors rank 0 alone prints; every rank exits with status 2."""

    def error(self, message):
        if dist.rank() == 0:
            super().error(message)
        sys.exit(2)


def stop(message: str) -> None:
    """End every rank with status 1; rank 0 prints `message` (every rank calls this alike)."""
    sys.exit(message if dist.rank() == 0 else 1)


def check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """parser.error() for the first problem: the numbers, then rank 0's look at the machine."""
    problem = _number_problem(args)
    if not problem:
        problem = _agreed(_machine_problem(args) if dist.rank() == 0 else "")
    if problem:
        parser.error(problem)


def _number_problem(args) -> str:
    for name in ("img", "seq", "dim", "heads", "layers", "ff", "n", "batch", "tp"):
        if getattr(args, name) < 1:
            return f"--{name} must be at least 1"
    if args.epochs < 0:
        return "--epochs must not be negative"
    for name in ("lr", "progress_every"):
        value = getattr(args, name)
        if not math.isfinite(value) or value < 0:
            return f"--{name.replace('_', '-')} must be a finite number >= 0, not {value}"
    if args.resume and not args.checkpoint:
        return "--resume needs --checkpoint PATH"
    if args.fsdp and (args.tp > 1 or args.shard_optimizer):
        return ("--fsdp already shards parameters, gradients and optimizer state over the data-"
                "parallel ranks: it does not combine with --tp or --shard-optimizer (yet)")
    if args.dim % args.heads or args.heads % args.tp:
        return f"--dim ({args.dim}) must divide by --heads ({args.heads}), and --heads by --tp ({args.tp})"
    if dist.world_size() % args.tp:
        return f"--tp {args.tp} must divide the number of ranks ({dist.world_size()})"
    return ""


def _machine_problem(args) -> str:
    """The first thing this machine lacks for the run ('' if none): rank 0 asks."""
    try:
        device = gt.backends.parse_device(args.device)
    except RuntimeError as error:  # no GPU here
        return f"--device: {error}"
    except ValueError:
        given = args.device or gt.backends.default_device()
        return f"--device {given!r} is not cpu, cuda or cuda:N"
    if device.startswith("cuda") and int(device.partition(":")[2]) >= gt.backends.gpu_count():
        return f"--device {device}: this machine has {gt.backends.gpu_count()} GPU(s)"
    if args.data == "digits" and importlib.util.find_spec("sklearn") is None:
        return f"--data digits needs scikit-learn: pip install scikit-learn, or {INSTALL}"
    if args.plot:
        problem = _plot_problem(args.plot)
        if problem:
            return problem
    outputs = [("--out", args.out), ("--plot", args.plot)]
    if trace.enabled():  # written by rank 0 when the program ends
        outputs.append(("MINIGT_TRACE", os.environ["MINIGT_TRACE"]))
    for flag, path in outputs:
        problem = path and _unwritable(flag, path)
        if problem:
            return problem
    if args.checkpoint:
        return _checkpoint_problem(args)
    return ""


def _plot_problem(path: str) -> str:
    if importlib.util.find_spec("matplotlib") is None:
        return f"--plot needs matplotlib: pip install matplotlib, or {INSTALL}"
    from matplotlib.backend_bases import FigureCanvasBase

    kinds = FigureCanvasBase.get_supported_filetypes()
    extension = os.path.splitext(path)[1][1:].lower()
    if extension and extension not in kinds:
        return (f"--plot {path!r}: matplotlib writes no .{extension} files; use one of "
                f"{', '.join(kinds)}")
    return ""


def _unwritable(flag: str, path: str, *, replaced: bool = False) -> str:
    """Why `path` cannot be written ('' if it can). `replaced`: a file is written beside it and
    renamed over it (a checkpoint), so the folder must be writable and only a file be there."""
    real = os.path.realpath(path)
    folder = os.path.dirname(real)
    if os.path.isdir(real):
        return f"{flag} {path!r} is a folder; give a file's path"
    if not os.path.isdir(folder):
        return f"{flag} {path!r}: there is no folder {folder!r}"
    exists = os.path.exists(real)
    if replaced and exists and not os.path.isfile(real):
        return f"{flag} {path!r} is not a regular file, which a checkpoint must be"
    written = folder if replaced or not exists else real
    if not os.access(written, os.W_OK):
        return f"{flag} {path!r}: no permission to write {written!r}"
    return ""


def _checkpoint_problem(args) -> str:
    problem = _unwritable("--checkpoint", args.checkpoint, replaced=True)
    if problem or args.resume or args.overwrite or not os.path.exists(args.checkpoint):
        return problem
    return (f"--checkpoint {args.checkpoint!r} exists: pass --resume to continue from it, or "
            "--overwrite to train afresh and replace it")


def _agreed(text: str) -> str:
    """Rank 0's `text` on every rank (collective; alone, `text`)."""
    data = np.frombuffer(text.encode(), np.uint8)
    length = int(collectives.broadcast(np.array(data.size, np.int64)))
    return collectives.broadcast(data if dist.rank() == 0 else np.empty(length, np.uint8)
                                 ).tobytes().decode()
