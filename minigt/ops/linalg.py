"""Matrix multiplication, PyTorch's `@`: 1-D vectors, 2-D matrices and batched stacks that
broadcast over their leading dims."""
from __future__ import annotations

from ..autograd import Function
from ..tensor import Tensor
from .dims import same_device
from .elementwise import promote


class MatMul(Function):
    """a @ b;  da = g @ bᵀ, db = aᵀ @ g (1-D operands are promoted to matrices and back)."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return a @ b

    def backward(self, g):
        a, b = self.a, self.b
        a_vector, b_vector = a.ndim == 1, b.ndim == 1
        if a_vector and b_vector:
            return g * b, g * a
        if a_vector:  # (k,) @ (..., k, m): treat a as (1, k)
            a, g = a[None, :], g[..., None, :]
        if b_vector:  # (..., n, k) @ (k,): treat b as (k, 1)
            b, g = b[:, None], g[..., None]
        ga = g @ b.swapaxes(-1, -2) if self.needs_input_grad[0] else None
        gb = a.swapaxes(-1, -2) @ g if self.needs_input_grad[1] else None
        if a_vector and ga is not None:
            ga = ga[..., 0, :]
        if b_vector and gb is not None:
            gb = gb[..., 0]
        return ga, gb


def matmul(a: Tensor, b: Tensor) -> Tensor:
    """Matrix product with PyTorch's rules for 1-D and batched operands."""
    if not isinstance(a, Tensor) or not isinstance(b, Tensor):
        raise TypeError("matmul: both operands must be tensors")
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: operands must have at least 1 dim, got shapes {a.shape} and {b.shape}")
    k_a = a.shape[-1]
    k_b = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if k_a != k_b:
        raise ValueError(
            f"matmul: shapes {a.shape} and {b.shape} cannot be multiplied: the inner dims differ "
            f"({k_a} != {k_b})"
        )
    same_device("matmul", a, b)
    if a.data.dtype != b.data.dtype:
        a, b = promote(a, b)
    try:
        return MatMul.apply(a, b)
    except ValueError:
        raise ValueError(
            f"matmul: batch dims of {a.shape[:-2]} and {b.shape[:-2]} are not broadcastable"
        ) from None
