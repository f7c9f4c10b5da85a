"""Define-by-run reverse-mode autograd.

Each op is a `Function`: `forward` maps input arrays to an output array and saves what `backward`
needs on `self`; `backward` maps the output's gradient to one gradient per input. Calling an op
records its `Function` as the output's `grad_fn`, so the graph is built as the program runs.
`backward()` walks that graph once, outputs before inputs, in an explicit loop (no recursion, so
deep graphs cannot overflow the stack), and frees each node as it goes unless asked to keep it.
"""
from __future__ import annotations

import contextlib
import os
import sys
import weakref

import numpy as np

from .backends import ARRAY_TYPES, array_module, ensure_array
from .tensor import Tensor, _unwrap, not_a_tensor

_grad_enabled = True
# Where minigt.distributed plugs in (the engine itself never imports it): it fills
# `sharded_dispatch(cls, inputs, params)`, which runs an op with a sharded input by its sharding
# rule, and adds a hook that syncs the gradients of replicated parameters after every backward.
sharded_dispatch = None
post_backward_hooks: list = []
# Strict gradients, for minigt's own tests (MINIGT_STRICT_GRADIENTS=1 turns them on at import):
# a gradient in another dtype or shape than its input's is an error, not quietly cast or reshaped.
strict_gradients = os.environ.get("MINIGT_STRICT_GRADIENTS") == "1"


def is_grad_enabled() -> bool:
    """Whether ops called now are recorded for backward."""
    return _grad_enabled


class _GradMode(contextlib.ContextDecorator):
    """Sets recording to `mode` on entering a `with` block (or a decorated call), restores on exit."""

    mode = True

    def __enter__(self):
        global _grad_enabled
        self.previous, _grad_enabled = _grad_enabled, self.mode

    def __exit__(self, *exc):
        global _grad_enabled
        _grad_enabled = self.previous
        return False

    def __new__(cls, func=None):
        if callable(func):  # used bare: @no_grad
            return cls()(func)
        return super().__new__(cls)


class no_grad(_GradMode):
    """Ops inside do not record a graph (parameter updates, evaluation).

    >>> with no_grad(): y = x * 2      # y.requires_grad is False
    """

    mode = False


class enable_grad(_GradMode):
    """Re-enable recording inside a `no_grad` region."""

    mode = True


class set_grad_enabled(_GradMode):
    """Turn recording on or off: at once when called, until the end of a `with` block."""

    def __new__(cls, mode: bool):
        return object.__new__(cls)

    def __init__(self, mode: bool):
        global _grad_enabled
        self.previous, self.mode = _grad_enabled, bool(mode)
        _grad_enabled = self.mode

    def __enter__(self):
        pass  # already set in __init__, as torch.set_grad_enabled does


class Function:
    """One recorded op. Subclasses define `forward(self, *arrays, **params)`, which computes the
    output array and keeps on `self` what backward needs, and `backward(self, grad)`.

    `backward` returns one gradient per tensor input (a tuple when there are several, or None for
    an input that needs none), each of the *output's* broadcast shape or the input's own shape:
    the engine sums broadcast gradients down to each input's shape (`reduce_to_shape`), so no op
    repeats that logic.
    """

    inputs: tuple | None
    needs_input_grad: tuple
    differentiable = True  # False for ops such as comparisons: never recorded
    # True when the output may share the first input's memory; an op for which that depends on
    # the call (indexing: slices give views, index arrays copies) sets it on self in forward
    output_is_view = False

    @classmethod
    def apply(cls, *inputs, _local: bool = False, **params):
        """Run the op on tensors. Sharded tensors go through minigt.distributed's rules first,
        unless `_local` (see `apply_local`)."""
        # One function, one or two inputs unpacked by hand, no **{}: this runs once per op, and
        # another call or a comprehension here costs about as much as a small op's arithmetic.
        fn = cls()
        try:  # free unless raised: a non-tensor input fails at .placement or .data
            if len(inputs) == 1:
                (x,) = inputs
                if x.placement is not None and not _local:
                    return sharded_dispatch(cls, inputs, params)
                out = fn.forward(x.data, **params) if params else fn.forward(x.data)
                needs, versions = (x.requires_grad,), (x._version[0],)
            elif len(inputs) == 2:
                a, b = inputs
                if (a.placement is not None or b.placement is not None) and not _local:
                    return sharded_dispatch(cls, inputs, params)
                out = fn.forward(a.data, b.data, **params) if params else fn.forward(a.data, b.data)
                needs, versions = (a.requires_grad, b.requires_grad), (a._version[0], b._version[0])
            else:
                if not _local and any(t.placement is not None for t in inputs):
                    return sharded_dispatch(cls, inputs, params)
                out = fn.forward(*[t.data for t in inputs], **params)
                needs = tuple([t.requires_grad for t in inputs])
                versions = tuple([t._version[0] for t in inputs])
        except AttributeError:
            stranger = next((t for t in inputs if not isinstance(t, Tensor)), None)
            if stranger is None:
                raise
            raise not_a_tensor(stranger, f"{cls.__name__}: inputs must be minigt Tensors, got") \
                from None
        if not isinstance(out, ARRAY_TYPES):
            out = ensure_array(out)
        # an integer (or bool) result has no gradient
        if True in needs and _grad_enabled and cls.differentiable and out.dtype.kind in "fc":
            fn.inputs = inputs
            fn.needs_input_grad = needs
            fn.versions = versions
            result = Tensor._make(out, True, fn)
        else:
            result = Tensor._make(out, False, None)
        if fn.output_is_view:  # in-place writes to either must be seen by graphs saving the other
            result._version = inputs[0]._version
        return result

    @classmethod
    def apply_local(cls, inputs: tuple, params: dict):
        """Run forward on the inputs' own arrays (a sharded tensor's local part) and, when
        recording, link the output into the graph."""
        return cls.apply(*inputs, _local=True, **params)

    @property
    def name(self) -> str:
        return type(self).__name__

    def parents(self):
        """The recorded Functions whose outputs this op consumed."""
        return [t.grad_fn for t in self.inputs if t.grad_fn is not None]

    def release(self):
        """Drop saved arrays and links so memory is freed after backward."""
        self.__dict__.clear()
        self.inputs = None

    def __repr__(self):
        return f"<{self.name}>"


def reduce_to_shape(grad, shape: tuple):
    """Sum a broadcast gradient back to `shape`.

    Broadcasting may add leading axes and stretch axes of size 1, so both are summed; the size-1
    axes are kept (keepdims) so that, e.g., LayerNorm's (B, S, 1) statistics get (B, S, 1) grads.
    """
    if grad.shape == shape:
        return grad
    lead = grad.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and grad.shape[lead + i] != 1
    )
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad.reshape(shape)


def _graph_in_order(root: Function) -> list:
    """Every Function reachable from `root`, each before all of its parents (iterative DFS over
    each Function's inputs, not `parents()`: no list per node, as this runs once per op)."""
    order, seen = [], {root}
    stack = [(root, iter(_inputs_of(root)))]
    while stack:
        fn, pending = stack[-1]
        for t in pending:
            parent = t.grad_fn
            if parent is not None and parent not in seen:
                seen.add(parent)
                stack.append((parent, iter(_inputs_of(parent))))
                break
        else:
            stack.pop()
            order.append(fn)
    order.reverse()
    return order


def _inputs_of(fn: Function) -> tuple:
    inputs = fn.inputs
    if inputs is None:
        raise RuntimeError(
            f"backward through {fn.name} a second time: its saved values were freed by the first "
            "backward(). Pass retain_graph=True to the first backward() if you need to call it again."
        )
    return inputs


# Gradients too large for malloc to reuse (from 32 MiB, glibc's largest mmap threshold) are a
# fresh mapping every step, its page faults and zeroing included: zero_grad hands back the ones
# that no one else holds (`recycle`), and the op that makes one of the same shape in the next
# backward computes into it (`spare`). What that backward does not take, it drops at its end.
SPARE_BYTES = 1 << 25
_spares: dict = {}  # (shape, dtype) -> a dropped gradient's array


def recycle(grad) -> None:
    """Keep the array of `grad`, a .grad that zero_grad just dropped, for the next backward: when
    it is a large NumPy array of its own and nothing but `grad` refers to it (the caller's
    variable and this call's argument aside), so that writing into it can surprise no one."""
    data = grad.data
    if (type(grad) is Tensor and type(data) is np.ndarray and data.nbytes >= SPARE_BYTES
            and data.base is None and data.flags.c_contiguous and data.flags.writeable
            # references: the caller's variable, this argument, getrefcount's / grad.data, data,
            # getrefcount's
            and sys.getrefcount(grad) == 3 and sys.getrefcount(data) == 3):
        _spares[data.shape, data.dtype] = data


def spare(like, shape: tuple):
    """A recycled array of `shape` and `like`'s dtype to compute a new gradient into (its values
    are garbage), or None: then make a new one."""
    if type(like) is not np.ndarray or not _spares:
        return None
    return _spares.pop((tuple(shape), like.dtype), None)


def accumulate_into(tensor, grad, owned: bool = False) -> None:
    """tensor.grad += grad, creating .grad on first use. `owned` says no one else holds `grad`,
    so it can become .grad without a copy."""
    grad = ensure_array(grad)
    if grad.dtype != tensor.data.dtype:
        if strict_gradients:
            raise RuntimeError(f"accumulate into .grad: a {grad.dtype} gradient for a "
                               f"{tensor.data.dtype} tensor of shape {tuple(tensor.data.shape)}")
        grad, owned = grad.astype(tensor.data.dtype), True
    if tensor.grad is None:
        tensor.grad = tensor._grad_from(grad if owned else grad.copy())
    else:
        tensor.grad.data = tensor.grad.data + grad


def backward(tensor, gradient=None, retain_graph: bool = False) -> None:
    """Accumulate d(tensor)/d(leaf) into every leaf's `.grad` (see `Tensor.backward`)."""
    if not tensor.requires_grad:
        raise RuntimeError(
            "backward(): this tensor does not require grad and has no grad_fn. Create the inputs "
            "with requires_grad=True (or call .requires_grad_()) before computing it, outside no_grad()."
        )
    xp_data = tensor.data
    if gradient is None:
        if tensor.numel() != 1:  # numel and shape: a sharded output's global ones
            raise RuntimeError(
                f"backward(): the output has shape {tensor.shape}; a gradient can be implied "
                "only for a single-element output. Pass gradient=<tensor of the same shape>, "
                "or reduce first (e.g. .sum())."
            )
        grad = _ones_like(xp_data)
    else:
        grad = _unwrap(gradient)
        if tuple(grad.shape) != tuple(xp_data.shape):
            raise RuntimeError(
                f"backward(): gradient has shape {tuple(grad.shape)} but the output has shape "
                f"{tuple(xp_data.shape)}; they must match."
            )
        if strict_gradients and grad.dtype != xp_data.dtype:
            raise RuntimeError(f"backward(): gradient has dtype {grad.dtype} but the output has "
                               f"dtype {xp_data.dtype}")
    owned = gradient is None  # the caller's gradient stays the caller's: never a .grad as it is
    if tensor.grad_fn is None:
        accumulate_into(tensor, grad, owned)
        return

    # fn -> (the gradient of its output, whether the engine alone holds that array)
    pending = {tensor.grad_fn: (grad, owned)}
    for fn in _graph_in_order(tensor.grad_fn):
        entry = pending.pop(fn, None)
        if entry is None:  # no path from the root carried a gradient here
            continue
        grad, owned = entry
        if "retained" in fn.__dict__:
            retained = fn.retained()
            if retained is not None:
                accumulate_into(retained, grad)
        inputs = fn.inputs
        for t, version in zip(inputs, fn.versions):  # an input written in place since forward?
            if t._version[0] != version:
                _modified_in_place(fn, t)
        input_grads = fn.backward(grad)
        if type(input_grads) is not tuple:
            input_grads = (input_grads,)
        taken = []  # arrays that inputs of fn took as their own: a second taker must copy
        for t, needed, g in zip(inputs, fn.needs_input_grad, input_grads):
            if not needed or g is None:
                continue
            if strict_gradients:
                _check_gradient(fn, t, g)
            if g.shape != t.data.shape:
                g = reduce_to_shape(g, t.data.shape)
            # g is the engine's alone when fn made it (not a view) or passed on a gradient that
            # was, and no earlier input of fn took it: then it becomes a .grad without a copy.
            fresh = owned if g is grad else g.base is None
            if fresh:
                if taken and any(g is h for h in taken):
                    fresh = False
                else:
                    taken.append(g)
            if t.grad_fn is None:
                accumulate_into(t, g, owned=fresh)
            elif t.grad_fn in pending:
                pending[t.grad_fn] = (pending[t.grad_fn][0] + g, True)  # a new array
            else:
                pending[t.grad_fn] = (g, fresh)
        if not retain_graph:
            fn.release()
    _spares.clear()  # not taken in this backward: the next one may not take them either
    for hook in post_backward_hooks:
        hook()


def _check_gradient(fn: Function, t, g) -> None:
    """Strict mode: the gradient fn returned for its input `t` must have t's dtype, and t's shape
    or one that t's broadcasts to (reduce_to_shape sums those down; any other shape it would
    reshape, silently when the sizes agree)."""
    x = t.data
    lead = g.ndim - x.ndim
    broadcast = lead >= 0 and all(n in (1, m) for n, m in zip(x.shape, g.shape[lead:]))
    if g.dtype != x.dtype or not broadcast:
        raise RuntimeError(
            f"backward of {fn.name} returned for its input {_position(fn, t)} a gradient of "
            f"shape {tuple(g.shape)} and dtype {g.dtype}; the input has shape {tuple(x.shape)} "
            f"and dtype {x.dtype} (a gradient may also have a shape that the input's broadcasts to)"
        )


def _modified_in_place(fn: Function, t) -> None:
    """Refuse to differentiate with an input that changed in place since forward saved it."""
    raise RuntimeError(
        f"backward through {fn.name}: its input {_position(fn, t)} (shape "
        f"{tuple(t.data.shape)}) was modified in place after it was used. Make the change out "
        "of place (x = x + y), or do it after backward()."
    )


def _position(fn: Function, t) -> int:
    """Which of fn's inputs `t` is (for error messages)."""
    return next(i for i, u in enumerate(fn.inputs) if u is t)


def _ones_like(array):
    return array_module(array).ones_like(array)


def retain(tensor) -> None:
    """Keep `tensor`'s gradient in `.grad` although it is not a leaf (see `Tensor.retain_grad`)."""
    tensor.grad_fn.retained = weakref.ref(tensor)
