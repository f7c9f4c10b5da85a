"""Train the Pixel Transformer of the project's brief.

    python examples/train_pixel.py                       # the brief's run: 20 samples, 5 epochs
    mpirun -n 8 python examples/train_pixel.py           # the same run, data-parallel on 8 ranks
    python examples/train_pixel.py --data digits --img 16 --dim 64 --heads 4 --layers 2 \
        --ff 128 --batch 32 --epochs 8 --optim adam --lr 2e-3 --loss ce

Prints `Epoch k/N: Loss = ..., Acc = ...%` per epoch and a summary line; `--out` writes every
number as JSON, `--plot` a PNG of the curves, `--checkpoint`/`--resume` save and continue.
Paths, packages and the device are checked before training; a loss that becomes NaN or inf
stops the run (`--allow-nan` trains on).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import minigt as gt  # noqa: E402  before NumPy: see minigt/__init__.py (OpenBLAS's idle threads)
import numpy as np  # noqa: E402
import minigt.distributed as dist  # noqa: E402
from minigt.distributed import trace  # noqa: E402
from minigt.distributed.placement import shard_range, shard_sizes  # noqa: E402
from minigt.nn import functional as F  # noqa: E402
import pixel_checkpoint  # noqa: E402
from pixel_checks import Parser, check, stop  # noqa: E402
from pixel_data import digits, synthetic  # noqa: E402
from pixel_progress import progress  # noqa: E402
from pixel_transformer import PixelTransformer  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = Parser(description=__doc__.splitlines()[0])
    size = p.add_argument_group("model")
    size.add_argument("--img", type=int, default=200, help="image side in pixels")
    size.add_argument("--seq", type=int, default=4, help="images per sample")
    size.add_argument("--dim", type=int, default=256)
    size.add_argument("--heads", type=int, default=4)
    size.add_argument("--layers", type=int, default=4)
    size.add_argument("--ff", type=int, default=1024, help="feed-forward width")
    run = p.add_argument_group("training")
    run.add_argument("--n", type=int, default=20, help="synthetic samples")
    run.add_argument("--batch", type=int, default=2)
    run.add_argument("--epochs", type=int, default=5)
    run.add_argument("--loss", choices=["mse", "ce"], default="mse")
    run.add_argument("--optim", choices=["sgd", "adam"], default="sgd")
    run.add_argument("--lr", type=float, default=0.01)
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    run.add_argument("--allow-nan", action="store_true",
                     help="train on when the loss becomes NaN or inf (by default the run stops)")
    run.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: $MINIGT_DEVICE or cpu)")
    run.add_argument("--data", choices=["synthetic", "digits"], default="synthetic")
    run.add_argument("--tp", type=int, default=1,
                     help="tensor-parallel size: ranks sharing each layer (data parallel = ranks / tp)")
    run.add_argument("--shard-optimizer", action="store_true",
                     help="ZeRO: each data-parallel rank updates and keeps the state of 1/N of "
                          "the parameters (the same steps, 1/N of the optimizer's memory)")
    run.add_argument("--fsdp", action="store_true",
                     help="fully sharded: each rank keeps 1/N of every parameter, its gradient "
                          "and optimizer state, gathering each block's whole while it runs")
    out = p.add_argument_group("output")
    out.add_argument("--checkpoint", help="save model and optimizer here after every epoch")
    out.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    out.add_argument("--overwrite", action="store_true",
                     help="let --checkpoint replace an existing file without --resume")
    out.add_argument("--out", help="write config, losses and timings as JSON")
    out.add_argument("--plot", help="save loss and accuracy curves as a PNG")
    out.add_argument("--progress-every", type=float, default=10.0, metavar="SECONDS",
                     help="when stderr is not a terminal, a progress line this often")
    args = p.parse_args(argv)
    check(p, args)
    return args


def load_data(args):
    """(train_images, train_labels), held-out set or None."""
    if args.data == "digits":
        return digits(args.seq, args.img, args.seed)
    return synthetic(args.n, args.seq, args.img, args.seed, keep=samples_read_here(args)), None


def samples_read_here(args):
    """The synthetic samples this rank trains on (their order is fixed): its rows of every batch,
    or None (all of them) when it has the only data rank."""
    group = dist.data_group()
    if group.size == 1:
        return None
    kept = []
    for start in range(0, args.n, args.batch):
        sizes = shard_sizes(min(args.batch, args.n - start), group.size)
        first, last = shard_range(sizes, group.rank)
        kept.extend(range(start + first, start + last))
    return kept


def loss_fn(args, logits, labels):
    if args.loss == "ce":
        return F.cross_entropy(logits, labels)
    return F.mse_loss(logits, F.one_hot(labels, 10).to(logits.dtype))


def epoch_order(n: int, epoch: int, args) -> np.ndarray:
    """The brief's run goes in order (each rank keeps only its samples: samples_read_here);
    digits are shuffled by a seed fixed per epoch (resumable)."""
    if args.data == "synthetic":
        return np.arange(n)
    return np.random.default_rng([args.seed, epoch]).permutation(n)


def batch_tensors(images, labels, args):
    """A batch as tensors, sharing the arrays' memory where dtype and device allow (the caller's
    fancy indexing has copied them already; a second 10 MB copy at batch 16 costs page faults);
    with several ranks, each keeps its rows (GT_AUTO_SHARD=1 does that already when set)."""
    x = gt.as_tensor(images, dtype=args.dtype, device=args.device)
    y = gt.as_tensor(labels, device=args.device)
    if dist.data_group().size > 1 and x.placement is None:
        x, y = dist.shard(x, 0), dist.shard(y, 0)
    return x, y


def build_model(args) -> PixelTransformer:
    """The model on its device in its dtype. With --fsdp it is built as Shard(0) rows from the
    start (no rank ever holds it whole); every Linear is a unit (one fed few rows never gathers its
    weight), then each block (its norms), then the model (the rest)."""
    def build():
        return PixelTransformer(args.img, args.seq, args.dim, args.heads, args.layers, args.ff,
                                parallel=args.tp > 1)

    if args.fsdp:
        with dist.sharded_init():
            model = build()
            linears = [m for m in model.modules() if isinstance(m, gt.nn.Linear)]
            for unit in (*linears, *model.blocks):
                dist.fully_shard(unit)
            dist.fully_shard(model)
    else:
        model = build()
    return model.to(args.device or gt.backends.default_device(), np.dtype(args.dtype))


def evaluate(model, images, labels, args) -> float:
    """Accuracy (%) on a held-out set, without recording a graph."""
    correct = 0
    with gt.no_grad():
        for start in range(0, len(labels), 256):
            x, y = batch_tensors(images[start:start + 256], labels[start:start + 256], args)
            correct += int((model(x).argmax(-1) == y).sum().item())
    return 100.0 * correct / len(labels)


def train(args) -> dict:
    gt.manual_seed(args.seed)
    dist.init_parallel(tensor_parallel=args.tp)
    saved = pixel_checkpoint.resume(args) if args.resume else None  # before any work
    (images, labels), held_out = load_data(args)
    model = build_model(args)
    optim_class = gt.optim.SGD if args.optim == "sgd" else gt.optim.Adam
    if args.shard_optimizer:
        optimizer = dist.ShardedOptimizer(model.parameters(), optim_class, lr=args.lr)
    else:
        optimizer = optim_class(model.parameters(), lr=args.lr)
    history, first_epoch = {"epochs": [], "step_losses": []}, 1
    if saved is not None:
        history, first_epoch = pixel_checkpoint.restore(saved, model, optimizer, args)

    steps_per_epoch = -(-len(labels) // args.batch)
    shown = progress(steps_per_epoch * (args.epochs - first_epoch + 1), args.progress_every)
    train_seconds, trained_samples, trained_steps = 0.0, 0, 0
    for epoch in range(first_epoch, args.epochs + 1):
        order = epoch_order(len(labels), epoch, args)
        losses, correct, started = [], None, time.perf_counter()
        for start in range(0, len(order), args.batch):
            with trace.span("step", "step"):  # marks the steps in `python -m minigt timeline`
                idx = order[start:start + args.batch]
                x, y = batch_tensors(images[idx], labels[idx], args)
                logits = model(x)
                loss = loss_fn(args, logits, y)
                optimizer.zero_grad()
                with trace.span("backward", "phase"):
                    loss.backward()
                optimizer.step()
                losses.append(loss.item())  # the global loss, the same on every rank
                hits = (logits.argmax(-1) == y).sum()  # stays on the device (and Partial on many
                correct = hits if correct is None else correct + hits  # ranks): read once an epoch
            if not (math.isfinite(losses[-1]) or args.allow_nan):  # every rank stops alike
                stop(f"the loss became {losses[-1]} at epoch {epoch}, step {len(losses)}: "
                     "stopping (a smaller --lr may help; --allow-nan trains on)")
            shown.step(losses[-1], len(idx))
        train_seconds += time.perf_counter() - started
        trained_samples += len(order)
        trained_steps += len(losses)
        accuracy = 100.0 * int(correct.item()) / len(order) if correct is not None else 0.0
        record = {"epoch": epoch, "loss": float(np.mean(losses)), "acc": accuracy}
        if held_out is not None:
            record["test_acc"] = evaluate(model, *held_out, args)
        history["epochs"].append(record)
        history["step_losses"].extend(losses)
        line = f"Epoch {epoch}/{args.epochs}: Loss = {record['loss']:.4f}, Acc = {record['acc']:.2f}%"
        shown.write(line + (f", Held-out Acc = {record['test_acc']:.2f}%" if held_out else ""))
        if args.checkpoint:
            pixel_checkpoint.save(model, optimizer, epoch, history, args)
    shown.close()
    return {
        "config": vars(args),
        **history,
        "train_steps": trained_steps,  # in this run (a resumed history holds earlier ones too)
        "train_seconds": train_seconds,
        "samples_per_s": trained_samples / train_seconds if train_seconds else 0.0,
        "peak_rss_mb": peak_rss_mb(),
    }


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM; ru_maxrss would include a parent's)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def plot(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [e["epoch"] for e in result["epochs"]]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.plot(np.arange(1, len(result["step_losses"]) + 1), result["step_losses"], lw=0.8)
    left.set(xlabel="step", ylabel="loss", title="training loss")
    right.plot(epochs, [e["acc"] for e in result["epochs"]], marker="o", label="train")
    if "test_acc" in result["epochs"][0]:
        right.plot(epochs, [e["test_acc"] for e in result["epochs"]], marker="o", label="held-out")
    right.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> dict:
    args = parse_args(argv)
    result = train(args)
    if dist.rank() != 0:
        return result
    print(f"Trained {result['train_steps']} steps in {result['train_seconds']:.2f} s "
          f"({result['samples_per_s']:.1f} samples/s), peak RSS {result['peak_rss_mb']:.0f} MB")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    if args.plot:
        plot(result, args.plot)
    return result


if __name__ == "__main__":
    main()
