"""The registry covers every public op: an op without a spec fails here, by name."""
from __future__ import annotations

import importlib
import inspect

from hypothesis import strategies as st

import minigt.ops

from .specs import Spec, load_registry, missing_specs

REGISTRY = load_registry()
COMPOSITE = {"pattern", "operator"}  # spec names that check several ops together


def fused_ops() -> tuple[str, ...]:
    """minigt.nn.functional.FUSED (ops with their own backward), or () before it exists."""
    try:
        functional = importlib.import_module("minigt.nn.functional")
    except ModuleNotFoundError as error:
        if error.name not in ("minigt.nn", "minigt.nn.functional"):
            raise  # a broken import inside minigt.nn must not pass silently
        return ()
    return tuple(getattr(functional, "FUSED", ()))


def test_every_differentiable_op_has_a_gradient_spec() -> None:
    assert missing_specs(REGISTRY, minigt.ops.DIFFERENTIABLE, gradient=True) == []


def test_every_non_differentiable_op_has_a_spec() -> None:
    assert missing_specs(REGISTRY, minigt.ops.NON_DIFFERENTIABLE, gradient=False) == []


def test_every_fused_nn_op_has_a_gradient_spec() -> None:
    assert missing_specs(REGISTRY, fused_ops(), gradient=True) == []


def test_every_public_op_is_listed() -> None:
    """A function exported from minigt.ops but in neither list would escape the checks above."""
    functions = {n for n, f in vars(minigt.ops).items() if inspect.isfunction(f) and n[0] != "_"}
    listed = set(minigt.ops.DIFFERENTIABLE) | set(minigt.ops.NON_DIFFERENTIABLE)
    assert sorted(functions - listed) == []


def test_every_spec_names_a_real_op() -> None:
    """A misspelt spec name would leave its op uncovered while looking covered."""
    known = set(minigt.ops.__all__) | set(fused_ops()) | COMPOSITE
    assert sorted(s.name for s in REGISTRY.values() if s.covers not in known) == []


def test_the_guard_reports_what_is_missing() -> None:
    """The guard can fail: a registry without relu, or with a forward-only relu, lacks it."""
    without_relu = {n: s for n, s in REGISTRY.items() if s.covers != "relu"}
    assert missing_specs(without_relu, minigt.ops.DIFFERENTIABLE, gradient=True) == ["relu"]
    relu = Spec("relu", st.nothing(), minigt.relu, differentiable=False)
    forward_only = dict(without_relu, relu=relu)
    assert missing_specs(forward_only, ["relu"], gradient=True) == ["relu"]
    assert missing_specs(forward_only, ["relu"], gradient=False) == []
