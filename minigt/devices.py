"""minigt.device: PyTorch's device object, for code that writes `device=torch.device("cuda")`."""
from __future__ import annotations


class device(str):  # noqa: N801 - PyTorch's name
    """Where tensors live: device("cpu"), device("cuda"), device("cuda:1") or device("cuda", 1),
    with `.type` and `.index` as torch.device.

    It is the str "cpu", "cuda" or "cuda:N", so it goes wherever a device string goes
    (x.to(...), zeros(..., device=...), Module.to) and equals one both ways:
    x.device == minigt.device("cpu").
    """

    __slots__ = ()

    def __new__(cls, type: str, index: int | None = None):  # noqa: A002 - torch's keyword
        kind, colon, number = str(type).partition(":")
        valid_index = number.isdecimal() if colon else index is None or int(index) >= 0
        if kind not in ("cpu", "cuda") or not valid_index or (colon and index is not None) \
                or (kind == "cpu" and (colon or index is not None)):
            shown = repr(str(type)) + ("" if index is None else f", index {index}")
            raise ValueError(f"device: expected 'cpu', 'cuda' or 'cuda:N' (or 'cuda' with an "
                             f"index N >= 0), got {shown}")
        return super().__new__(cls, str(type) if index is None else f"{kind}:{int(index)}")

    def __getnewargs__(self):  # pickle rebuilds it from its text
        return (str(self),)

    @property
    def type(self) -> str:
        """'cpu' or 'cuda'."""
        return self.partition(":")[0]

    @property
    def index(self) -> int | None:
        """The GPU's number, or None when not given (the current GPU; always None on the CPU)."""
        number = self.partition(":")[2]
        return int(number) if number else None

    def __repr__(self) -> str:
        index = "" if self.index is None else f", index={self.index}"
        return f"device(type='{self.type}'{index})"
