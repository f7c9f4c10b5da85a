"""Fixtures shared by the GPU tests in tests/gpu/."""
from __future__ import annotations

import pytest

from .fake_cupy import write_fake_cupy


@pytest.fixture(scope="module")
def fake_gpu(tmp_path_factory):
    """A folder to put first on a subprocess's PYTHONPATH: there, `import cupy` is the fake."""
    return write_fake_cupy(tmp_path_factory.mktemp("fake_cupy"))
