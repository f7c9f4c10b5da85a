"""The op-spec registry: what the property suite checks, one `Spec` per op or op variant.

A spec states, for one op:

    name            "relu", or "getitem/mask" for one variant of an op: the part before "/"
                    is the op it covers, which the guard (test_guard.py) matches against
                    minigt.ops.DIFFERENTIABLE / NON_DIFFERENTIABLE and
                    minigt.nn.functional.FUSED. Checks of several ops together are named
                    "pattern/..." and "operator/...".
    cases           a Hypothesis strategy of `Case`s: the tensor inputs, as NumPy arrays
                    (float64 values; bool masks; integer indices), and the op's non-tensor
                    arguments (dims, shapes, slices, ...) as keyword arguments.
    op              the minigt call: op(*tensors, **case.kwargs) -> a Tensor or a tuple of them.
    reference       NumPy's forward: reference(*arrays, **case.kwargs), the same structure.
                    Leave it out when `op` is written with operators or methods that NumPy
                    arrays share (lambda x, y: x @ y): `op` then runs on the arrays too.
    differentiable  True: the gradient of every floating-point input is checked against
                    central differences; False: the forward alone (comparisons, argmax, ...).
    tolerance       the finite-difference step and tolerances (gradcheck.Tolerance); the
                    float64 default suits every float64 op, FLOAT32 float32 outputs.
    float32_tolerance
                    how close the run on float32 inputs must come to the float64 run
                    (atol and rtol); the default, FLOAT32_RUN, suits well-conditioned ops.

test_ops.py runs every spec on every device: the forward must equal the reference (values,
shape and dtype) on inputs in contiguous and non-contiguous layouts, and the gradients must
equal float64 central differences under a random upstream gradient. It runs every spec on
float32 inputs too: each float output and gradient must be float32 and agree with the float64
run on the same values.

Adding specs from another file (tests/property/specs_nn.py is the one for minigt.nn):

    import numpy as np
    import minigt.nn.functional as F
    from hypothesis import strategies as st
    from .specs import Case, Spec, register
    from .strategies import arrays, shapes

    @st.composite
    def layer_norm_cases(draw):
        shape = draw(shapes(min_dims=1))
        return Case(draw(arrays(shape)), draw(arrays(shape[-1:])), eps=1e-5)

    register(Spec(
        name="layer_norm",
        cases=layer_norm_cases(),
        op=lambda x, w, eps: F.layer_norm(x, x.shape[-1:], w, eps=eps),
        reference=lambda x, w, eps: w * (x - x.mean(-1, keepdims=True))
                                    / np.sqrt(x.var(-1, keepdims=True) + eps),
    ))

A module of specs must be listed in SPEC_MODULES below, so that load_registry() imports it.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
from hypothesis import strategies as st

from .gradcheck import FLOAT32_RUN, Tolerance
from .strategies import REAL, Domain, arrays, broadcast_shapes, shapes

SPEC_MODULES = (
    "specs_elementwise", "specs_reductions", "specs_shape", "specs_composite", "specs_nn",
)


class Case:
    """One drawn example: the op's tensor inputs (NumPy arrays) and its other arguments."""

    def __init__(self, *inputs: np.ndarray, **kwargs):
        self.inputs, self.kwargs = inputs, kwargs

    def __repr__(self) -> str:  # Hypothesis prints this for a failing example
        parts = [repr(x) for x in self.inputs] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"Case({', '.join(parts)})"


@dataclass(frozen=True)
class Spec:
    """How to draw, run and check one op (see the module docstring)."""

    name: str
    cases: st.SearchStrategy[Case]
    op: Callable
    reference: Callable | None = None
    differentiable: bool = True
    tolerance: Tolerance = field(default_factory=Tolerance)
    float32_tolerance: Tolerance = FLOAT32_RUN

    @property
    def covers(self) -> str:
        """The op this spec checks: its name up to the first '/'."""
        return self.name.partition("/")[0]

    def expected(self, case: Case):
        """NumPy's result for `case`."""
        return (self.reference or self.op)(*case.inputs, **case.kwargs)


REGISTRY: dict[str, Spec] = {}


def register(spec: Spec) -> Spec:
    """Add a spec to the registry; names are unique."""
    if spec.name in REGISTRY:
        raise ValueError(f"two specs are named {spec.name!r}")
    REGISTRY[spec.name] = spec
    return spec


def load_registry() -> dict[str, Spec]:
    """The registry with every module of SPEC_MODULES imported (each registers its specs)."""
    for module in SPEC_MODULES:
        importlib.import_module(f"{__package__}.{module}")
    return REGISTRY


def missing_specs(registry: dict[str, Spec], ops: Iterable[str], gradient: bool) -> list[str]:
    """The ops with no spec (with `gradient`: no spec that checks their gradient)."""
    covered = {s.covers for s in registry.values() if s.differentiable or not gradient}
    return sorted(set(ops) - covered)


# ---- case strategies shared by the spec modules --------------------------------------------


@st.composite
def unary_cases(draw, domain: Domain = REAL, min_dims: int = 0) -> Case:
    """One float64 input of any shape with values in `domain`."""
    return Case(draw(arrays(draw(shapes(min_dims=min_dims)), domain)))


@st.composite
def broadcast_cases(draw, *values: Callable) -> Case:
    """One input per `values` strategy (shape -> arrays), their shapes broadcasting together."""
    input_shapes = draw(broadcast_shapes(len(values)))
    return Case(*(draw(make(shape)) for make, shape in zip(values, input_shapes)))


def in_domain(domain: Domain) -> Callable:
    """shape -> float64 arrays in `domain` (for broadcast_cases)."""
    return lambda shape: arrays(shape, domain)
