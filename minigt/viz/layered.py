"""A `Graph` drawn with matplotlib alone, for machines without Graphviz: a layered drawing.

Each node sits as low as it can: one layer above its highest user (the longest path down to the
root), so a parameter, and ops on parameters alone, sit just above where they are used. Within
a layer, nodes are ordered by the mean position of their neighbours, a few sweeps down and up
(the barycenter heuristic), keeping each module's nodes together; then each is moved as close
to that mean as the spacing allows. Module clusters are drawn as boxes around their nodes.
"""
from __future__ import annotations

from collections import defaultdict

FILL = {"op": "#dde6f3", "param": "#c8e6c0", "leaf": "#f2f2f2"}  # for Graphviz's drawing too
SWEEPS = 8
NODE_W, LAYER_H = 1.55, 0.62  # inches per slot and per layer
WAYPOINT_W = 0.2  # the room a long edge takes where it passes a layer, in slots
FONT = 6.5


def draw(graph, path) -> None:
    """Render a `minigt.viz.Graph` to `path` (any format matplotlib writes: .png, .svg, .pdf);
    matplotlib is imported here, only when a picture is drawn (pyplot never: a Figure of its own
    leaves the user's backend and figures alone)."""
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyBboxPatch

    layer, x, routes = layout(graph)
    xs, depth = list(x.values()), max(layer.values(), default=0) + 1
    fig = Figure(figsize=((max(xs) - min(xs) + 1.6) * NODE_W, (depth + 0.6) * LAYER_H))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(min(xs) - 0.8, max(xs) + 0.8)
    ax.set_ylim(-depth + 0.4, 0.8)
    ax.axis("off")
    half_w, half_h = 0.45, 0.32  # node box, in slot and layer units
    for (a, b), via in zip(graph.edges, routes):
        points = [(x[a], -layer[a] - half_h)] + [(x[d], -layer[d]) for d in via]
        ax.plot(*zip(*points, (x[b], -layer[b] + half_h)), color="#777777", lw=0.5, zorder=1)
        ax.annotate("", xy=(x[b], -layer[b] + half_h), xytext=points[-1], zorder=1,
                    arrowprops=dict(arrowstyle="-|>", color="#777777", lw=0.5, mutation_scale=6))
    for node in graph.nodes:
        rounding = 0.3 if node.kind != "op" else 0.08
        ax.add_patch(FancyBboxPatch((x[node.id] - half_w, -layer[node.id] - half_h), 2 * half_w,
                                    2 * half_h, boxstyle=f"round,pad=0,rounding_size={rounding}",
                                    facecolor=FILL[node.kind], edgecolor="#333333",
                                    lw=1.4 if node.kind == "param" else 0.5, zorder=2))
        ax.text(x[node.id], -layer[node.id], node.label, ha="center", va="center", fontsize=FONT,
                zorder=3)
    for child in graph.clusters()["children"].values():
        _draw_cluster(ax, child, x, layer, (half_w, half_h), FancyBboxPatch)
    fig.savefig(path, dpi=100)


def layout(graph) -> tuple[dict, dict, list]:
    """({id: layer}, {id: x}, one list of waypoint ids per edge). An edge across several layers
    passes a waypoint in each layer between, which takes part in the ordering like a thin node,
    so long edges go around the nodes instead of through them."""
    preds, succs = defaultdict(list), defaultdict(list)
    for a, b in graph.edges:
        preds[b].append(a)
        succs[a].append(b)
    height = {}  # the longest path down to the root: each node as late as it can be
    for node in reversed(graph.nodes):  # leaves, then ops from the root up
        if node.kind == "op":
            height[node.id] = 1 + max((height[s] for s in succs[node.id]), default=-1)
    for node in graph.nodes:
        if node.kind != "op":
            height[node.id] = 1 + max((height[s] for s in succs[node.id]), default=-1)
    layer = {i: max(height.values()) - h for i, h in height.items()}
    chains = _cluster_chains(graph)
    by_layer, routes = defaultdict(list), []
    for node in graph.nodes:
        by_layer[layer[node.id]].append(node.id)
    preds, succs = defaultdict(list), defaultdict(list)
    for number, (a, b) in enumerate(graph.edges):
        path = [a] + [f"{number}~{k}" for k in range(layer[a] + 1, layer[b])] + [b]
        for k, waypoint in enumerate(path[1:-1], start=layer[a] + 1):
            layer[waypoint], chains[waypoint] = k, _shared(chains[a], chains[b])
            by_layer[k].append(waypoint)
        for u, v in zip(path, path[1:]):
            preds[v].append(u)
            succs[u].append(v)
        routes.append(path[1:-1])
    width = {i: WAYPOINT_W if "~" in i else 1.0 for i in layer}
    x = {i: float(k) for ids in by_layer.values() for k, i in enumerate(ids)}
    layers = sorted(by_layer)
    for sweep in range(SWEEPS):
        downward = sweep % 2 == 0
        neighbours = preds if downward else succs
        for number in layers if downward else reversed(layers):
            ids = by_layer[number]
            wanted = {i: _mean([x[n] for n in neighbours[i]], x[i]) for i in ids}
            ids.sort(key=_grouped_key(x, wanted, chains))
            x.update(_spread(ids, wanted, width))
    return layer, x, routes


def _shared(a: list, b: list) -> list:
    """The clusters two chains have in common (outermost first)."""
    return [name for name, other in zip(a, b) if name == other]


def _cluster_chains(graph) -> dict:
    """{node id: [names of the cluster boxes around it, outermost first]}."""
    chains = {}

    def walk(box, chain):
        for node in box["nodes"]:
            chains[node.id] = chain
        for name, child in box["children"].items():
            walk(child, chain + [name])

    walk(graph.clusters(), [])
    return chains


def _grouped_key(x: dict, wanted: dict, chains: dict):
    """Sort key: the mean position of each enclosing cluster over all layers (outermost first),
    then the node's wanted one, so a module's nodes stay side by side, in the same order on
    every layer."""
    members = defaultdict(list)
    for i, chain in chains.items():
        for cluster in chain:
            members[cluster].append(x[i])
    means = {cluster: sum(v) / len(v) for cluster, v in members.items()}
    return lambda i: tuple(means[c] for c in chains[i]) + (wanted[i],)


def _spread(ids: list, wanted: dict, width: dict) -> dict:
    """Positions in this order, neighbours half their widths apart, as close to `wanted` as one
    shift allows."""
    placed = []
    for before, i in zip([None] + ids, ids):
        room = (width[before] + width[i]) / 2 if before else 0
        placed.append(wanted[i] if not placed else max(wanted[i], placed[-1] + room))
    shift = sum(wanted[i] - p for i, p in zip(ids, placed)) / len(ids)
    return {i: p + shift for i, p in zip(ids, placed)}


def _mean(values: list, default: float) -> float:
    return sum(values) / len(values) if values else default


def _draw_cluster(ax, box: dict, x: dict, layer: dict, half: tuple, patch) -> tuple:
    """Draw `box` and its sub-boxes; returns its extent (left, right, bottom, top)."""
    extents = [(x[n.id] - half[0], x[n.id] + half[0], -layer[n.id] - half[1], -layer[n.id] + half[1])
               for n in box["nodes"]]
    extents += [_draw_cluster(ax, child, x, layer, half, patch) for child in box["children"].values()]
    pad = 0.06
    left, right = min(e[0] for e in extents) - pad, max(e[1] for e in extents) + pad
    bottom, top = min(e[2] for e in extents) - pad, max(e[3] for e in extents) + pad + 0.14
    ax.add_patch(patch((left, bottom), right - left, top - bottom, facecolor="none",
                       edgecolor="#888888", lw=0.6, ls="--",
                       boxstyle="round,pad=0,rounding_size=0.05", zorder=0))
    ax.text(left + 0.03, top - 0.03, box["name"], ha="left", va="top", fontsize=FONT,
            style="italic", color="#555555", zorder=0)
    return left, right, bottom, top

