"""The backward graph as Graphviz DOT text: `graph(loss, params=dict(model.named_parameters()))`.

One node per Function (its op, and its output's shape, dtype and placement) and one per leaf;
edges point the way data flows, leaves to loss. A Function does not keep its output, but every
consumer keeps its inputs (`fn.inputs`), so each output but the root's is read off the op that
used it: nothing is recorded in advance, and ops run no slower because this module exists.

Functions are grouped into clusters by module. A Function that uses parameters (directly, or
through ops on parameters alone, such as a DTensor rule's `ReplicatedUse`) belongs to their
module; any other to the innermost module around the parameter-using Functions nearest to it
upstream and downstream (the attention's matmuls and softmax sit between q, k, v and out, so they
land in the attention module). What has such Functions on one side only (the input's reshape,
the loss) stays at the top level.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..autograd import _graph_in_order
from .layered import FILL, draw

MIN_CLUSTER = 2  # a module box around a single node only adds clutter


@dataclass
class Node:
    """One box of the picture: `kind` is "op" (a Function), "param" (a leaf that requires grad)
    or "leaf" (one that does not); `scope` is the dotted module path it is grouped under."""

    id: str
    label: str
    kind: str
    scope: str = ""


class Graph:
    """The nodes and edges of a backward graph; `source` is its DOT text, `save` draws it."""

    def __init__(self, nodes: list[Node], edges: list[tuple[str, str]]):
        self.nodes, self.edges = nodes, edges

    @property
    def source(self) -> str:
        """The graph as Graphviz DOT text (`dot -Tsvg` draws it)."""
        lines = ["digraph backward {",
                 f'  node [shape=box, style="rounded,filled", fillcolor="{FILL["op"]}", '
                 'fontname="Helvetica", fontsize=10];',
                 '  edge [color="#555555", arrowsize=0.6];']
        _dot_cluster(self.clusters(), lines, "  ")
        lines += [f"  {a} -> {b};" for a, b in self.edges]
        return "\n".join(lines + ["}"]) + "\n"

    def clusters(self) -> dict:
        """The module tree: {"name", "nodes", "children"} dicts, the root named ""; a module gets
        a box of its own when it holds at least MIN_CLUSTER nodes."""
        counts: dict[str, int] = {}
        for node in self.nodes:
            for prefix in _prefixes(node.scope):
                counts[prefix] = counts.get(prefix, 0) + 1
        root = {"name": "", "nodes": [], "children": {}}
        for node in self.nodes:
            box = root
            for prefix in _prefixes(node.scope):
                if counts[prefix] >= MIN_CLUSTER:
                    box = box["children"].setdefault(prefix, {"name": prefix, "nodes": [], "children": {}})
            box["nodes"].append(node)
        return root

    def save(self, path: str | os.PathLike, engine: str | None = None) -> None:
        """Write the picture to `path` (.svg, .png or .pdf; .dot writes the text). Graphviz's `dot`
        draws it when installed, matplotlib otherwise; `engine` ("dot" or "matplotlib") picks one."""
        path = Path(path)
        if path.suffix in (".dot", ".gv"):
            path.write_text(self.source, encoding="utf-8")
            return
        if engine not in (None, "dot", "matplotlib"):
            raise ValueError(f"save: engine {engine!r}: expected 'dot', 'matplotlib' or None")
        dot = shutil.which("dot") if engine != "matplotlib" else None
        if engine == "dot" and dot is None:
            raise RuntimeError("save(engine='dot'): Graphviz's dot is not on PATH; install "
                               "Graphviz, or leave engine out to draw with matplotlib")
        if dot is not None:
            subprocess.run([dot, f"-T{path.suffix[1:]}", "-o", str(path)], input=self.source,
                           text=True, check=True, capture_output=True)
        else:
            draw(self, path)

    def __str__(self) -> str:
        return self.source


def graph(tensor, params: dict | None = None) -> Graph:
    """The graph that `tensor.backward()` would walk, as a `Graph` (DOT text and pictures).

    Call it before backward(), which frees the graph. `params` names the leaves, e.g.
    `dict(model.named_parameters())`, and groups the ops into clusters by module.

    >>> g = minigt.viz.graph(loss, params=dict(model.named_parameters()))
    >>> g.save("loss.svg"); print(g.source)
    """
    names = {id(t): name for name, t in (params or {}).items()}
    if tensor.grad_fn is None:
        return Graph([_leaf(tensor, "leaf0", names)], [])
    root = tensor.grad_fn
    if root.inputs is None:
        raise RuntimeError("graph(): backward() already freed this graph; call graph() before "
                           "backward(), or pass retain_graph=True to backward()")
    order = _graph_in_order(root)[::-1]  # inputs before the ops that use them
    outputs, consumers = {root: tensor}, {fn: [] for fn in order}
    for fn in order:
        for t in fn.inputs:
            if t.grad_fn is not None:
                outputs.setdefault(t.grad_fn, t)
                consumers[t.grad_fn].append(fn)
    scopes = _scopes(order, consumers, names)

    ids = {fn: f"op{i}" for i, fn in enumerate(order)}
    nodes = [Node(ids[fn], f"{fn.name}\n{_describe(outputs[fn])}", "op", scopes[fn]) for fn in order]
    leaves, edges = {}, []
    for fn in order:
        for t in fn.inputs:
            if t.grad_fn is not None:
                edges.append((ids[t.grad_fn], ids[fn]))
                continue
            if id(t) not in leaves:
                leaves[id(t)] = _leaf(t, f"leaf{len(leaves)}", names)
                nodes.append(leaves[id(t)])
            edges.append((leaves[id(t)].id, ids[fn]))
    return Graph(nodes, edges)


def _leaf(t, node_id: str, names: dict) -> Node:
    """A parameter sits in its module's cluster, any other leaf (data, a constant) at the top."""
    name = names.get(id(t))
    if name is None:
        return Node(node_id, _describe(t), "param" if t.requires_grad else "leaf")
    return Node(node_id, f"{name}\n{_describe(t)}", "param" if t.requires_grad else "leaf",
                _module_of(name))


def _describe(t) -> str:
    """'(2, 3) float32', and the placement on a second line for a DTensor."""
    text = f"{tuple(t.shape)} {t.dtype}"
    return text if t.placement is None else f"{text}\n{t.placement!r}"


def _module_of(param_name: str) -> str:
    return param_name.rpartition(".")[0]


def _scopes(order: list, consumers: dict, names: dict) -> dict:
    """Each Function's module path (see the module docstring)."""
    own, param_only = {}, {}  # own: the module of the parameters it uses, or None
    for fn in order:
        sources = [_module_of(names[id(t)]) for t in fn.inputs if id(t) in names]
        sources += [own[t.grad_fn] for t in fn.inputs if param_only.get(t.grad_fn)]
        own[fn] = _common(sources) if sources else None
        param_only[fn] = all(id(t) in names or param_only.get(t.grad_fn) for t in fn.inputs)
    up, down = {}, {}  # the nearest parameter-using module on each side (None: there is none)
    for fn in order:
        near = [up[t.grad_fn] for t in fn.inputs if t.grad_fn is not None and up[t.grad_fn] is not None]
        up[fn] = own[fn] if own[fn] is not None else (_common(near) if near else None)
    for fn in reversed(order):
        near = [down[c] for c in consumers[fn] if down[c] is not None]
        down[fn] = own[fn] if own[fn] is not None else (_common(near) if near else None)
    return {fn: own[fn] if own[fn] is not None
            else _common([up[fn], down[fn]]) if up[fn] is not None and down[fn] is not None
            else "" for fn in order}


def _common(paths: list) -> str:
    """The innermost module enclosing all `paths` ('blocks.0.attn' for its q and k)."""
    return ".".join(os.path.commonprefix([p.split(".") if p else [] for p in paths]))


def _prefixes(scope: str) -> list:
    """'a.b.c' -> ['a', 'a.b', 'a.b.c']."""
    parts = scope.split(".") if scope else []
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _dot_cluster(box: dict, lines: list, indent: str) -> None:
    for node in box["nodes"]:
        style = "" if node.kind == "op" else f', shape=ellipse, fillcolor="{FILL[node.kind]}"'
        if node.kind == "param":  # leaves that require grad: a bold outline
            style += ", penwidth=2"
        lines.append(f'{indent}{node.id} [label="{_escape(node.label)}"{style}];')
    for name, child in box["children"].items():
        lines.append(f'{indent}subgraph "cluster_{_escape(name)}" {{')
        lines.append(f'{indent}  label="{_escape(name)}"; style="rounded"; color="#999999";')
        _dot_cluster(child, lines, indent + "  ")
        lines.append(f"{indent}}}")


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
