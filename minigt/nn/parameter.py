"""Parameter: a tensor that a Module registers as learnable."""
from __future__ import annotations

from ..tensor import Tensor, as_array


class Parameter(Tensor):
    """A leaf tensor that requires grad by default; assigning one to a Module attribute registers it.

    >>> w = Parameter(minigt.randn(3, 2))    # shares the given tensor's storage
    """

    __slots__ = ()

    def __new__(cls, data=None, requires_grad: bool = True):
        if data is None:
            data = as_array([], None, None)
        elif isinstance(data, Tensor):
            data = data.data  # share storage, as torch.nn.Parameter(t) does
        else:
            data = as_array(data, None, None)
        return cls._make(data, False, None)

    def __init__(self, data=None, requires_grad: bool = True):
        self.requires_grad_(requires_grad)  # __new__ built it; this also rejects integer data

    def full_value(self, part: Tensor | None = None) -> Tensor:
        """The whole value of this parameter (or of `part`, a tensor shaped like it: e.g. its
        optimizer state), as state dicts store it; a split parameter gathers the parts."""
        return self.detach() if part is None else part

    def local_part(self, whole):
        """What this rank keeps of a whole value load_state_dict() is given."""
        return whole

    @staticmethod
    def combine_parts(value, op: str):
        """A sum ('sum') or maximum ('max') over this kind of parameter's elements, from this
        rank's part of them to all of them (clip_grad_norm_'s norm): a whole parameter is all
        here, so the value as it is; a split parameter combines the parts across ranks."""
        return value

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()
