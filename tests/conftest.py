"""Shared test setup: Hypothesis profiles and the `device` each device-aware test runs on."""
from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

import minigt
import minigt.autograd

# Strict gradients (minigt.autograd.strict_gradients) for this process and, through the
# environment, for the examples and scripts that tests start as subprocesses.
os.environ["MINIGT_STRICT_GRADIENTS"] = "1"
minigt.autograd.strict_gradients = True

# "ci" (the default) is reproducible: the same examples every run, no timing-based failures.
# HYPOTHESIS_PROFILE=dev explores more, with fresh examples each run.
settings.register_profile(
    "ci", derandomize=True, deadline=None, max_examples=30, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "dev", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

DEVICES = (
    "cpu",
    pytest.param("cuda", marks=[
        pytest.mark.gpu,
        pytest.mark.skipif(not minigt.cuda_available(), reason="no CuPy/GPU"),
    ]),
)


@pytest.fixture(params=DEVICES, scope="session")  # session scope: usable under @given
def device(request) -> str:
    """'cpu', and 'cuda' when CuPy sees a GPU (skipped otherwise)."""
    return request.param
