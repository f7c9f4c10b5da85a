"""Containers: ModuleList (an indexable list of registered modules) and Sequential (a chain)."""
from __future__ import annotations

from collections import OrderedDict
from typing import Iterable, Iterator

from .module import Module


class ModuleList(Module):
    """A list whose modules are registered under the names '0', '1', ...

    >>> blocks = ModuleList([Block() for _ in range(4)])
    >>> for block in blocks: x = block(x)
    """

    def __init__(self, modules: Iterable[Module] | None = None) -> None:
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def _index(self, index: int) -> int:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"{type(self).__name__}: index {index} is out of range for {n} modules")
        return index % n

    def __getitem__(self, index):
        items = list(self._modules.values())
        if isinstance(index, slice):
            return type(self)(items[index])
        return items[self._index(index)]

    def __setitem__(self, index: int, module: Module) -> None:
        self.add_module(list(self._modules)[self._index(index)], module)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def append(self, module: Module) -> ModuleList:
        """Add `module` at the end, registered under its index."""
        if not isinstance(module, Module):
            raise TypeError(
                f"{type(self).__name__}.append: expected a Module, got {type(module).__name__}"
            )
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules: Iterable[Module]) -> ModuleList:
        """Append each of `modules` in turn."""
        for module in modules:
            self.append(module)
        return self

    def forward(self, *args, **kwargs):
        raise NotImplementedError(
            "ModuleList has no forward(): iterate over it and call each module in your own forward"
        )


class Sequential(ModuleList):
    """Modules applied one after another: `Sequential(Linear(4, 8), ReLU(), Linear(8, 1))`.

    An OrderedDict gives the submodules names: `Sequential(OrderedDict(fc=Linear(4, 8)))`.
    """

    def __init__(self, *modules: Module) -> None:
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for name, module in modules[0].items():
                self.add_module(name, module)
        else:
            self.extend(modules)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return Sequential(OrderedDict(list(self._modules.items())[index]))
        return super().__getitem__(index)

    def forward(self, x):
        for module in self:
            x = module(x)
        return x
