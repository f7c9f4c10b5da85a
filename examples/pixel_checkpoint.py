"""train_pixel.py's checkpoints: the run's state and settings, and what a resumed run may change.

A checkpoint holds whole parameters and optimizer state, so it resumes at any number of ranks
and with or without --tp, --shard-optimizer or --fsdp. What made the run is another matter: a
resumed run with other data, another model or optimizer would not continue it, so such changes
are refused, each named. The learning rate and the batch size may change: the new value counts
from the first resumed step, and the run says so.
"""
from __future__ import annotations

import sys

import minigt as gt
import minigt.distributed as dist
from pixel_checks import stop

# What the data, the model's shapes and the optimizer's state depend on
FIXED = ("data", "n", "seed", "img", "seq", "dim", "heads", "layers", "ff", "dtype", "loss",
         "optim")
CHANGEABLE = ("lr", "batch")


def settings(args) -> dict:
    """What a checkpoint records of the run (`n` sizes synthetic data only)."""
    chosen = {name: getattr(args, name) for name in FIXED + CHANGEABLE}
    if args.data != "synthetic":
        chosen["n"] = None
    return chosen


def resume(args) -> dict:
    """The checkpoint at args.checkpoint as rank 0 reads it, on every rank, once it is known to
    fit the run; else every rank stops, with rank 0's message. Rank 0 says what it resumes."""
    path = args.checkpoint
    try:
        saved = dist.load(path)
    except FileNotFoundError:
        stop(f"--resume: no checkpoint at {path!r} (rank 0 finds no file there); check the path, "
             "or leave out --resume to train afresh")
    except (OSError, ValueError) as error:
        stop(f"--resume: {error}")
    recorded = saved.get("settings")
    changed = [(name, recorded[name], value) for name, value in settings(args).items()
               if recorded is not None and None not in (recorded[name], value)
               and recorded[name] != value]
    refused = [f"--{name} {old} -> {new}" for name, old, new in changed if name in FIXED]
    if refused:
        stop(f"--resume: {path!r} was trained with other settings, which a resumed run cannot "
             f"change: {', '.join(refused)}. Pass the checkpoint's values, or train afresh "
             "(without --resume, with --overwrite)")
    epoch, steps = int(saved["epoch"]), len(saved["history"]["step_losses"])
    if epoch > args.epochs:
        stop(f"--resume: {path!r} holds {epoch} epochs, more than --epochs {args.epochs}: "
             f"pass --epochs {epoch} or more")
    if dist.rank() == 0:
        accepted = "".join(f", with --{name} {old} -> {new}" for name, old, new in changed)
        print(f"resumed from {path} at epoch {epoch}, step {steps}{accepted}", flush=True)
        if recorded is None:
            print(f"--resume: {path!r} records no settings (an older train_pixel.py wrote it): "
                  "they are not checked", file=sys.stderr)
        if epoch == args.epochs:
            print(f"{path} already finished all {epoch} epochs; nothing to train (pass a larger "
                  "--epochs to train on)", flush=True)
    return saved


def restore(saved: dict, model, optimizer, args) -> tuple[dict, int]:
    """Put `saved` into the model and optimizer, with this run's learning rate; (the history so
    far, the first epoch to train)."""
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    for group in optimizer.param_groups:  # a new --lr takes effect, as one expects
        group["lr"] = args.lr
    return saved["history"], int(saved["epoch"]) + 1


def save(model, optimizer, epoch: int, history: dict, args) -> None:
    """Write the checkpoint (collective: under --tp and --fsdp every rank gathers whole values,
    rank 0 writes)."""
    whole = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
             "history": history, "settings": settings(args)}
    if dist.rank() == 0:  # every rank holds the same values: one writer
        gt.save(whole, args.checkpoint)
    dist.barrier()  # nobody reads the file before it is complete
