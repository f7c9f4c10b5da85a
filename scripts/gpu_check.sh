#!/usr/bin/env bash
# One script for a GPU machine: minigt's GPU tests, the examples on cuda, and the GPU benchmark.
#
#   bash scripts/gpu_check.sh            # from anywhere; it works in the repository root
#
# Meant for one NVIDIA GPU, no network, with PyTorch, CuPy, mpi4py and pytest installed for
# `python3` (or $PYTHON). Wheels in a local .whl/ folder are installed first, without their
# dependencies, into $GPU_CHECK_SITE (/tmp/site), put on PYTHONPATH, PATH and LD_LIBRARY_PATH:
# an MPI (e.g. the `mpich` wheel, whose mpirun and libmpi it unpacks too), and, unless already
# installed, hypothesis with attrs and sortedcontainers (tests/conftest.py needs hypothesis).
# Then each stage runs with a timeout, so that the whole run stays under 6 minutes
# ($GPU_CHECK_BUDGET_S, default 340 s); stages 1-3 run at the same time (they share the GPU;
# none of them times anything), the benchmark alone after them:
#   1. pytest -m gpu (the cuda half) over tests/gpu, tests/core, tests/nn,
#      tests/optim, tests/test_serialization.py and tests/property (the `device` fixture runs
#      each device-aware test on cuda when CuPy sees a GPU);
#   2. mpirun -n 2 pytest -m gpu tests/distributed (the two ranks share the GPU), if an mpirun
#      is found ($MPIRUN, beside the Python, in $GPU_CHECK_SITE/bin, or on PATH);
#   3. examples/train_pixel.py --device cuda, alone and under mpirun -n 2 (the brief's model);
#   4. benchmarks/bench_gpu.py: matmul, train step and all-reduce tables (--quick when less
#      than 100 s are left).
# It prints a table last: tests passed/failed per suite, then the benchmark's tables. Logs stay
# in $GPU_CHECK_OUT (a temporary folder, printed). Without a GPU it says so, runs what it can
# (the GPU tests skip) and exits 0. GPU_CHECK_SCOPE=all runs the whole suites (cpu and cuda),
# not only the tests marked gpu (slower: mind the budget). GPU_CHECK_BENCH_ARGS adds options to
# bench_gpu.py (e.g. "--matmul-n 512 --no-torch" for a self-test against the NumPy stand-in of
# tests/gpu/fake_cupy.py: `python tests/gpu/fake_cupy.py write-fake DIR`, then PYTHONPATH=DIR).
# Exit status: 0 when nothing failed, 1 otherwise.

set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
ROOT=$PWD
START=$(date +%s)
BUDGET=${GPU_CHECK_BUDGET_S:-340}
BENCH_RESERVE=${GPU_CHECK_BENCH_S:-110}   # seconds kept for the benchmark at the end
SITE=${GPU_CHECK_SITE:-/tmp/site}
SCOPE=${GPU_CHECK_SCOPE:-gpu}
OUT=${GPU_CHECK_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")}
mkdir -p "$OUT"
# one file of rows per stage: suite, passed, failed, errors, skipped, status (tab-separated)
rm -f "$OUT"/results.*.tsv

if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=$ROOT/.venv/bin/python; else PYTHON=python3; fi
fi

elapsed() { echo $(( $(date +%s) - START )); }
say() { echo "[gpu_check $(elapsed)s] $*"; }

# ---- 0. wheels from .whl/ ------------------------------------------------------------------
if compgen -G ".whl/*.whl" >/dev/null; then
  say "installing $(ls .whl/*.whl | wc -l) wheel(s) from .whl/ into $SITE"
  "$PYTHON" -m pip install -q --no-index --no-deps --upgrade --target "$SITE" .whl/*.whl \
    >"$OUT/pip.log" 2>&1 || say "pip install failed (see $OUT/pip.log); going on"
  # pip --target keeps a wheel's purelib only: the files a wheel puts under <name>.data/data/
  # (an MPI's bin/mpirun and lib/libmpi.so, e.g. the mpich wheel's) would be left out. Unpack them.
  "$PYTHON" - "$SITE" .whl/*.whl <<'EOF' >>"$OUT/pip.log" 2>&1 || say "unpacking wheel data failed"
import os, re, sys, zipfile
site, wheels = sys.argv[1], sys.argv[2:]
for wheel in wheels:
    with zipfile.ZipFile(wheel) as archive:
        for info in archive.infolist():
            match = re.match(r"[^/]+\.data/(?:data|scripts)/(.+)", info.filename)
            if not match or info.is_dir():
                continue
            rest = match.group(1)
            in_data = "/data/" in info.filename  # else .data/scripts/: executables
            dest = os.path.join(site, rest if in_data else os.path.join("bin", rest))
            if os.path.exists(dest):
                continue
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with archive.open(info) as src, open(dest, "wb") as out:
                out.write(src.read())
            mode = (info.external_attr >> 16) & 0o777
            os.chmod(dest, mode or 0o644)
            print("unpacked", dest)
EOF
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
  export PATH="$SITE/bin:$PATH"
  export LD_LIBRARY_PATH="$SITE/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"   # minigt from this checkout, first
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1   # Open MPI, when run as root
export CUPY_CACHE_DIR=${CUPY_CACHE_DIR:-${TMPDIR:-/tmp}/cupy_kernel_cache}   # shared by the stages
unset MINIGT_COLLECTIVES MINIGT_DEVICE MINIGT_TRACE

# ---- what is here --------------------------------------------------------------------------
has() { "$PYTHON" -c "import $1" >/dev/null 2>&1; }
MPIRUN=${MPIRUN:-}
if [ -z "$MPIRUN" ]; then
  for candidate in "$(dirname "$(command -v "$PYTHON")")/mpirun" "$SITE/bin/mpirun" \
                   "$(command -v mpirun)" "$(command -v mpiexec)"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then MPIRUN=$candidate; break; fi
  done
fi
[ -n "$MPIRUN" ] && export MPIRUN
GPU=$("$PYTHON" - <<'EOF' 2>/dev/null
import minigt
if minigt.cuda_available():
    import cupy
    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.runtime.getDevice())
    name = props["name"]
    print((name.decode() if isinstance(name, bytes) else name) + f" (CuPy {cupy.__version__})")
EOF
)
say "logs in $OUT"
{
  echo "python: $PYTHON ($("$PYTHON" -c 'import sys; print(sys.version.split()[0])' 2>&1))"
  "$PYTHON" -m minigt info 2>&1
  command -v nvidia-smi >/dev/null && nvidia-smi -L 2>&1
  "$PYTHON" -c "import torch; print('torch', torch.__version__, torch.cuda.is_available())" \
    2>&1 | tail -1
  for module in pytest hypothesis pytest_timeout mpi4py.MPI threadpoolctl; do
    has "$module" && echo "$module: yes" || echo "$module: MISSING"
  done
  echo "mpirun: ${MPIRUN:-none found}"
} | tee "$OUT/environment.txt"
if [ -n "$GPU" ]; then
  say "GPU: $GPU"
else
  say "no GPU: CuPy is missing or sees no device; the GPU tests will skip"
fi

# ---- running a stage with a timeout, and counting its tests ---------------------------------
cat >"$OUT/count.py" <<'EOF'
"""Count pytest -v outcomes in a log, per suite: tests/<dir> or a top-level tests/<file>."""
import collections, re, sys
log, label, rc, timed_out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
listed = [s.rstrip("/") for s in sys.argv[5:]]  # the suites asked for
text = open(log, errors="replace").read()
counts = collections.defaultdict(collections.Counter)
OUTCOME = r"^(tests/[^\s:]+)::\S.*? (PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\b"
for path, outcome in re.findall(OUTCOME, text, re.M):
    counts[path][outcome] += 1
for path in re.findall(r"^ERROR (tests/[^\s:]+)(?: - |$)", text, re.M):  # collection errors
    counts[path]["ERROR"] += 1
suites = collections.defaultdict(collections.Counter)
for path, c in counts.items():
    parts = path.split("/")
    suites["/".join(parts[:2]) if len(parts) > 2 else path] += c
no_tests = rc == 5  # pytest: no test collected or selected
for suite in listed:
    if suite not in suites and suites and not timed_out:
        print(f"{suite}\t0\t0\t0\t0\tnone selected")
if not suites:
    status = ("TIMEOUT, nothing finished" if timed_out else "none selected" if no_tests
              else f"FAILED (exit {rc}), no test ran: see log")
    print(f"{label}\t0\t0\t0\t0\t{status}")
for suite, c in sorted(suites.items()):
    failed, errors = c["FAILED"], c["ERROR"]
    status = "ok" if not (failed or errors) else "FAILED"
    if timed_out:
        status = "TIMEOUT (partial counts)"
    elif rc not in (0, 5) and status == "ok":
        status = f"exit {rc}"
    name = suite + (" (mpirun -n 2)" if "mpirun" in label else "")
    passed, skipped = c["PASSED"] + c["XPASS"], c["SKIPPED"] + c["XFAIL"]
    print(f"{name}\t{passed}\t{failed}\t{errors}\t{skipped}\t{status}")
EOF

time_left() { echo $(( START + BUDGET - $(date +%s) - ${1:-0} )); }

# run_stage N LABEL CAP_S RESERVE_S KIND COMMAND...: row(s) into results.N.tsv; KIND is pytest
# (count its tests) or plain (its exit status, and its last "Epoch"/"Trained" line).
run_stage() {
  local n=$1 label=$2 cap=$3 reserve=$4 kind=$5; shift 5
  local left limit log rc timed_out=0 t0 RESULTS="$OUT/results.$n.tsv"
  left=$(time_left "$reserve")
  limit=$(( cap < left ? cap : left ))
  if (( limit < 15 )); then
    printf '%s\t-\t-\t-\t-\tnot run: no time left in the %ss budget\n' "$label" "$BUDGET" \
      >>"$RESULTS"
    say "$label: skipped, no time left"
    return
  fi
  log="$OUT/$(echo "$label" | tr -c 'A-Za-z0-9_.-' '_').log"
  say "$label (timeout ${limit}s): $*"
  t0=$(date +%s)
  MPIEXEC_TIMEOUT=$limit timeout -k 10 "$limit" "$@" >"$log" 2>&1
  rc=$?
  (( rc == 124 || rc == 137 )) && timed_out=1
  say "$label: exit $rc after $(( $(date +%s) - t0 ))s (log $log)"
  if [ "$kind" = pytest ]; then
    "$PYTHON" "$OUT/count.py" "$log" "$label" "$rc" "$timed_out" "${SUITES_OF_STAGE[@]}" \
      >>"$RESULTS"
  else
    local status="ok"
    (( rc != 0 )) && status="FAILED (exit $rc)"
    (( timed_out )) && status="TIMEOUT"
    local last
    last=$(grep -E "^(Epoch|Trained)" "$log" | tail -1 | cut -c1-70)
    printf '%s\t-\t-\t-\t-\t%s%s\n' "$label" "$status" "${last:+: $last}" >>"$RESULTS"
  fi
}

MARK=(-m gpu)
[ "$SCOPE" = all ] && MARK=()
PYTEST=(-m pytest -o addopts= -v -rfE -p no:cacheprovider --continue-on-collection-errors
        "${MARK[@]}")
HAVE_MPI=0
[ -n "$MPIRUN" ] && has mpi4py.MPI && HAVE_MPI=1   # mpi4py.MPI imports: it found an MPI library
note() { printf '%s\t-\t-\t-\t-\t%s\n' "$2" "$3" >>"$OUT/results.$1.tsv"; }
JOBS=()
SUITES_OF_STAGE=()
if ! has pytest; then
  note 1 tests "not run: pytest is not installed"
elif ! has hypothesis; then
  note 1 tests "not run: hypothesis is not installed (tests/conftest.py imports it): put its \
wheel, attrs' and sortedcontainers' in .whl/"
else
  SUITES=(tests/gpu tests/core tests/nn tests/optim tests/test_serialization.py
          tests/property)
  # 1. one process: every single-process suite in one pytest run (one CuPy start-up); the
  #    property suite last, so that a timeout cuts only its end
  SUITES_OF_STAGE=("${SUITES[@]}")
  run_stage 1 "tests (1 process)" 300 "$BENCH_RESERVE" pytest \
    "$PYTHON" "${PYTEST[@]}" "${SUITES[@]}" &
  JOBS+=($!)
  # 2. two ranks sharing the GPU
  if (( HAVE_MPI )); then
    SUITES_OF_STAGE=()
    run_stage 2 "tests/distributed (mpirun -n 2)" 200 "$BENCH_RESERVE" pytest \
      "$MPIRUN" -n 2 "$PYTHON" "${PYTEST[@]}" tests/distributed &
    JOBS+=($!)
  else
    note 2 tests/distributed "not run: no mpirun or no mpi4py"
  fi
fi

# 3. the examples on cuda: the brief's model and data, 2 epochs, alone and on 2 ranks
if [ -n "$GPU" ]; then
  (
    run_stage 3 "train_pixel --device cuda" 100 "$BENCH_RESERVE" plain \
      "$PYTHON" examples/train_pixel.py --device cuda --epochs 2
    if (( HAVE_MPI )); then
      run_stage 4 "mpirun -n 2 train_pixel --device cuda" 100 "$BENCH_RESERVE" plain \
        "$MPIRUN" -n 2 "$PYTHON" examples/train_pixel.py --device cuda --epochs 2
    fi
  ) &
  JOBS+=($!)
else
  note 3 "train_pixel --device cuda" "not run: no GPU"
fi
(( ${#JOBS[@]} )) && wait "${JOBS[@]}"

# 4. the benchmark, with what is left
BENCH_LOG="$OUT/bench_gpu.log"
left=$(time_left 5)
if (( left < 30 )); then
  echo "bench_gpu.py not run: no time left in the ${BUDGET}s budget" >"$BENCH_LOG"
else
  BENCH_ARGS=(--json "$OUT/bench_gpu.json")
  read -r -a EXTRA <<<"${GPU_CHECK_BENCH_ARGS:-}"
  BENCH_ARGS+=("${EXTRA[@]}")
  (( left < 100 )) && BENCH_ARGS+=(--quick)
  say "bench_gpu.py (timeout ${left}s) ${BENCH_ARGS[*]}"
  timeout -k 10 "$left" "$PYTHON" benchmarks/bench_gpu.py "${BENCH_ARGS[@]}" >"$BENCH_LOG" 2>&1
  rc=$?
  if (( rc != 0 )); then
    echo "bench_gpu.py: exit $rc$( ((rc == 124)) && echo ' (timed out)')" >>"$BENCH_LOG"
  fi
  say "bench_gpu.py: exit $rc"
fi

# ---- the report -----------------------------------------------------------------------------
RESULTS="$OUT/results.tsv"
cat "$OUT"/results.[0-9].tsv >"$RESULTS" 2>/dev/null
FAILED=0
grep -qE $'\t(FAILED|TIMEOUT|exit )' "$RESULTS" && FAILED=1
grep -q "^bench_gpu.py: exit [^0]" "$BENCH_LOG" && FAILED=1
echo
echo "## GPU check: ${GPU:-no GPU (CuPy missing or no device): GPU tests skipped, nothing measured}"
echo
echo "Tests: pytest ${MARK[*]:-(all tests)}; $(elapsed) s in all; logs in $OUT"
echo
"$PYTHON" - "$RESULTS" <<'EOF'
import sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1]) if line.strip()]
head = ["suite", "passed", "failed", "errors", "skipped", "status"]
widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"
print(line(head))
print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
for row in rows:
    print(line(row))
EOF
echo
cat "$BENCH_LOG"
exit "$FAILED"
