"""Linear maps and lookups: linear, embedding, one_hot."""
from __future__ import annotations

import math

from ...autograd import Function, spare
import numpy as np

from ... import backends
from ...backends import array_module
from ...ops import where
from ...ops.dims import same_device
from ...tensor import Tensor


class LinearFn(Function):
    """y = x Wᵀ + b over the rows of x (its leading dims flattened);
    dx = g W,  dW = gᵀ x,  db = Σ_rows g
    """

    def forward(self, x, weight, *bias):
        self.x_shape, self.weight = x.shape, weight
        # a view when x is contiguous; the row count is explicit, as -1 cannot be inferred when
        # a sharded part has no features
        self.rows = x.reshape(math.prod(x.shape[:-1]), x.shape[-1])
        if _outputs_first(*self.rows.shape, weight.shape[0]):
            y = array_module(x).empty((self.rows.shape[0], weight.shape[0]), weight.dtype)
            y_t = weight @ self.rows.T  # rows @ weight.T to within rounding (SkylakeX: same bits)
            if bias:
                array_module(x).add(y_t.T, bias[0], out=y)  # laid out by rows in the same pass
            else:
                y[...] = y_t.T
        else:
            y = self.rows @ weight.T
            if bias:
                y += bias[0]
        return y.reshape(x.shape[:-1] + (weight.shape[0],))

    def backward(self, g):
        g = g.reshape(self.rows.shape[0], g.shape[-1])  # g.shape[-1] may be 0 (an empty part)
        needs = self.needs_input_grad
        gx = (g @ self.weight).reshape(self.x_shape) if needs[0] else None
        # gᵀ x is (out, in), the weight's own layout: no transposed copy when it is stored.
        gw = None
        if needs[1]:
            out = spare(g, self.weight.shape) if g.dtype == self.rows.dtype else None
            gw = g.T @ self.rows if out is None else array_module(g).matmul(g.T, self.rows, out=out)
        if len(needs) == 2:
            return gx, gw
        return gx, gw, (g.sum(axis=0) if needs[2] else None)


def _outputs_first(rows: int, inputs: int, outputs: int) -> bool:
    """Whether to compute y = x Wᵀ as (W xᵀ)ᵀ: OpenBLAS (measured on an AVX-512 Xeon, one thread)
    does a few rows through a wide layer up to twice as fast that way round, with the same bits
    from its SkylakeX kernel (benchmarks/bench_train.py's batch 2: 8 rows); from about 64 rows the
    usual way is faster, except through a very long input (the Pixel Transformer's 40,000-pixel
    embedding). The Haswell kernel (forced by OPENBLAS_CORETYPE on some machines) runs both ways
    about as fast, and rounds them differently."""
    return rows < outputs and (rows <= 32 or inputs >= 64 * rows)


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """y = x Wᵀ + b, with W of shape (out_features, in_features) as in PyTorch; x is (..., in)."""
    if x.ndim == 0 or weight.ndim != 2 or x.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"linear: input of shape {x.shape} does not fit weight {weight.shape}: the last dim "
            f"must be in_features={weight.shape[-1]}"
        )
    if bias is not None and bias.shape != weight.shape[:1]:
        raise ValueError(f"linear: bias has shape {bias.shape}, expected {weight.shape[:1]}")
    same_device("linear", x, weight, *([] if bias is None else [bias]))
    return LinearFn.apply(x, weight) if bias is None else LinearFn.apply(x, weight, bias)


def embedding(index: Tensor, weight: Tensor, padding_idx: int | None = None) -> Tensor:
    """Rows of `weight` picked by the integer tensor `index`: out[..., :] = weight[index[...], :].

    Positions whose index is `padding_idx` pass no gradient to that row (the forward is unchanged).
    An index out of range raises on the CPU; on a GPU, where checking would wait for the GPU, its
    output row is NaN instead (and passes no gradient).
    """
    if index.dtype.kind not in "iu":
        raise TypeError(f"embedding: indices must be an integer tensor, got {index.dtype}")
    rows = weight.shape[0]
    if not backends.host_checks(index.data):
        out = _embedding_unchecked(index, weight)
    else:
        out = _embedding_checked(index, weight)
    if padding_idx is not None:
        keep = (index != padding_idx % rows).unsqueeze(-1)
        out = where(keep, out, out.detach())
    return out


def _embedding_checked(index: Tensor, weight: Tensor) -> Tensor:
    """embedding()'s lookup after checking on the host that every index is a row."""
    rows = weight.shape[0]
    if index.data.size and not (index.data.min() >= 0 and index.data.max() < rows):  # this part
        bad = index.data[(index.data < 0) | (index.data >= rows)].ravel()[0]
        raise IndexError(
            f"embedding: index {int(bad)} is out of range for {rows} rows (expected 0..{rows - 1})"
        )
    return weight[index]


def _embedding_unchecked(index: Tensor, weight: Tensor) -> Tensor:
    """embedding() without reading the indices on the host: an index out of range looks up the
    nearest row, and its output row is replaced by NaN (for floating weights), so that row gets
    no gradient from it. Written with ops, so a sharded index works as on the CPU."""
    safe = index.clamp(0, weight.shape[0] - 1)
    out = weight[safe]
    if weight.dtype.kind == "f":
        out = where((safe == index).unsqueeze(-1), out, float("nan"))
    return out


def one_hot(index: Tensor, num_classes: int = -1) -> Tensor:
    """An int64 tensor with a trailing dim of `num_classes`: 1 at each index, 0 elsewhere.

    Values outside [0, num_classes) raise on the CPU; on a GPU they are not checked (that would
    wait for the GPU, as PyTorch's CUDA one_hot does not either) and give rows of zeros. Without
    `num_classes` the largest value is read, which on a GPU waits for it."""
    if index.dtype.kind not in "iu":
        raise TypeError(f"one_hot: expects an integer tensor, got {index.dtype}")
    data = index.data
    if num_classes < 0 and index.placement is not None:
        raise ValueError("one_hot: give num_classes for a sharded tensor (each rank sees only its part)")
    if num_classes < 0:
        num_classes = int(data.max()) + 1 if data.size else 0
    if data.size and backends.host_checks(data) and (data.min() < 0 or data.max() >= num_classes):
        raise ValueError(
            f"one_hot: values must be in [0, {num_classes}) for num_classes={num_classes}, got "
            f"min {int(data.min())}, max {int(data.max())}"
        )
    classes = Tensor._make(array_module(data).arange(num_classes), False, None)
    return (index.unsqueeze(-1) == classes).to(np.int64)  # core ops, so sharded indices work
