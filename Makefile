VENV   ?= .venv
PYTHON ?= python3
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed
NP     ?= 8

.PHONY: all venv test train bench clean

all: test

venv: $(STAMP)

# Reused as long as pyproject.toml is unchanged; a changed pyproject.toml
# re-runs the install into the existing venv.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install -e '.[dev]'
	touch $@

test: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest tests --ignore=tests/distributed
	@if [ -d tests/distributed ] && [ -n "$$(find tests/distributed -name 'test_*.py' -print -quit)" ]; then \
	  for n in 2 3 4; do \
	    echo "MPIEXEC_TIMEOUT=300 OMP_NUM_THREADS=1 $(VENV)/bin/mpirun -n $$n $(PY) -m pytest tests/distributed -p no:cacheprovider"; \
	    MPIEXEC_TIMEOUT=300 OMP_NUM_THREADS=1 $(VENV)/bin/mpirun -n $$n $(PY) -m pytest tests/distributed -p no:cacheprovider || exit 1; \
	  done; \
	else \
	  echo "no tests/distributed/test_*.py: skipping MPI runs"; \
	fi

# The Pixel Transformer of the brief, data parallel on NP ranks: make train NP=4
train: $(STAMP)
	OMP_NUM_THREADS=1 $(VENV)/bin/mpirun -n $(NP) $(PY) examples/train_pixel.py

bench: $(STAMP)
	$(PY) benchmarks/run_all.py --quick

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build dist *.egg-info
	find . -path ./.git -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
