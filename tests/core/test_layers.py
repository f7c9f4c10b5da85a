"""minigt's layers point one way: backends <- tensor/autograd <- ops <- nn, optim, serialization
<- distributed. This walks every import in the package (function-level ones included) with `ast`
and fails on any cycle except tensor <-> autograd, naming it."""
from __future__ import annotations

import ast
from pathlib import Path

import minigt

PACKAGE_ROOT = Path(minigt.__file__).parent
ALLOWED_CYCLES = [{"minigt.tensor", "minigt.autograd"}]  # the engine's two halves know each other
# Bottom to top; a module may import its own layer and those below it. The package itself (its
# __init__, the public facade) and `python -m minigt` stand above them all.
LAYERS = [
    # blas_setup belongs with the backends, outside their package only because it must run
    # before NumPy is imported, which minigt.backends does
    ("backends", ("minigt.backends", "minigt.blas_setup")),
    ("engine", ("minigt.tensor", "minigt.autograd")),
    ("ops", ("minigt.ops", "minigt.creation", "minigt.tensor_methods")),
    ("nn, optim, serialization, viz", ("minigt.nn", "minigt.optim", "minigt.serialization", "minigt.viz")),
    ("distributed", ("minigt.distributed",)),
    ("facade", ("minigt", "minigt.__main__")),
]


def module_name(path: Path) -> str:
    parts = ["minigt", *path.relative_to(PACKAGE_ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, modules: set) -> set:
    """Every minigt module `path` imports, at module level or inside a function."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1 if node.level else 0):
                base = base.rsplit(".", 1)[0]
            base = (f"{base}.{node.module}" if node.module else base) if node.level else node.module
            # `from pkg import name` imports pkg.name when it is a module, else pkg
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                       for a in node.names]
        else:
            continue
        found.update(t for t in targets if t in modules and t != name)
    # Importing a module runs its packages' __init__ first, so those count too, except the
    # importer's own ancestors (already running when it is imported).
    own = set(parents(name)) | {name}
    return {m for t in found for m in [t, *parents(t)] if m in modules and m not in own}


def parents(module: str):
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def import_graph() -> dict:
    paths = {module_name(p): p for p in PACKAGE_ROOT.rglob("*.py")}
    return {name: imported_modules(path, set(paths)) for name, path in paths.items()}


def strongly_connected(graph: dict) -> list:
    """Tarjan's algorithm, iterative: the cycles of `graph` as sets of modules."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], [0]
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter[0]; counter[0] += 1
        stack.append(start); on_stack.add(start)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter[0]; counter[0] += 1
                    stack.append(nxt); on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop(); on_stack.discard(member); component.add(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(component)
    return found


def layer_of(module: str) -> int:
    """The index in LAYERS of the longest prefix naming `module`'s layer."""
    matches = [(len(prefix), i) for i, (_, prefixes) in enumerate(LAYERS) for prefix in prefixes
               if module == prefix or module.startswith(prefix + ".")]
    assert matches, f"{module} belongs to no layer: add it to LAYERS in {__file__}"
    return max(matches)[1]


def test_layers_point_one_way():
    upward = sorted(
        f"  {module} ({LAYERS[layer_of(module)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
        for module, targets in import_graph().items() for target in targets
        if layer_of(target) > layer_of(module)
    )
    assert not upward, "a lower layer imports a higher one (plug in from above instead):\n" + \
        "\n".join(upward)


def test_no_import_cycles():
    cycles = [c for c in strongly_connected(import_graph()) if c not in ALLOWED_CYCLES]
    assert not cycles, "import cycles in minigt (make the lower layer not import the upper):\n" + \
        "\n".join("  " + " <-> ".join(sorted(c)) for c in cycles)
