"""`python -m minigt info`: what minigt finds on this machine, for bug reports and setup checks.
`python -m minigt timeline trace.json -o timeline.png`: a MINIGT_TRACE file as a picture."""
from __future__ import annotations

import argparse
import platform
import sys
from importlib import metadata

import numpy as np

import minigt
from minigt.backends import cuda_available, gpu_names
from minigt.distributed import timeline, transports, world


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _cupy_line() -> str:
    try:
        import cupy
    except ImportError:
        return "not installed"
    return cupy.__version__ + ("" if cuda_available() else " (no usable GPU)")


def _mpi_line() -> str | None:
    """mpi4py's version and the MPI library under it, or None when mpi4py cannot be imported."""
    try:
        from mpi4py import MPI
    except ImportError:
        return None
    library = " ".join(MPI.Get_library_version().splitlines()[0].split())  # first line, tidied
    return f"{_version('mpi4py') or 'unknown version'}, {library.split(',')[0]}"


def _world_line() -> str:
    launched = world.launcher_rank_size()
    if launched is None:
        return "rank 0 of 1 (not launched by mpirun)"
    rank, size = launched
    return f"rank {rank} of {size if size is not None else '?'} (from the launcher's environment)"


def info() -> list[tuple[str, str]]:
    """(label, value) rows describing this installation."""
    mpi = _mpi_line()
    # Without mpi4py there is no path to name: every collective is a copy within one process.
    collectives = ("; ".join(f"{backend}: {transports.path_for_backend(backend)}"
                             for backend in ("numpy", "cupy")) if mpi else "none (one process only)")
    return [
        ("minigt", minigt.__version__),
        ("Python", f"{platform.python_version()} ({sys.executable})"),
        ("NumPy", np.__version__),
        ("CuPy", _cupy_line()),
        ("mpi4py", mpi or "not installed, so no MPI: one process only; for many ranks, "
                           "pip install 'minigt[mpi]' (mpi4py and the MPICH wheel)"),
        ("devices", "; ".join(["cpu", *gpu_names()])),
        ("world", _world_line()),
        ("collectives", collectives),
    ]


def main(argv=None) -> int:
    """The command line: `python -m minigt info`, `python -m minigt timeline trace.json`."""
    parser = argparse.ArgumentParser(prog="python -m minigt", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="print versions, devices and the world")
    drawing = commands.add_parser("timeline", help="draw a MINIGT_TRACE file, one lane per rank")
    drawing.add_argument("trace", help="the JSON file MINIGT_TRACE named")
    drawing.add_argument("-o", "--output", default="timeline.png", help="the PNG to write")
    drawing.add_argument("--step", type=int, help="only this training step (1 = the first)")
    args = parser.parse_args(argv)
    if args.command == "timeline":
        try:
            drawn = timeline.draw(args.trace, args.output, args.step)
        except (OSError, ValueError) as error:  # a missing, foreign or too short trace
            parser.error(f"timeline: {error}")
        idle = ", ".join(f"rank {lane.rank} {100 * lane.waited / drawn.span:.0f}%" for lane in drawn.lanes)
        print(f"{args.output}: {len(drawn.lanes)} ranks over {drawn.span * 1e3:.1f} ms; idle {idle}")
        return 0
    # One write, so the reports of ranks started by mpirun do not interleave line by line.
    sys.stdout.write("".join(f"{label:<12} {value}\n" for label, value in info()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
