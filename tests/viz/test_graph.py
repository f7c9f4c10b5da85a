"""minigt.viz.graph: the DOT text read back into nodes, edges and labels, and both renderers."""
from __future__ import annotations

import os
import re
import stat
import sys
import time
from pathlib import Path

import pytest

import minigt as gt
import minigt.distributed as dist
from minigt import nn, viz
from minigt.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))

from pixel_transformer import PixelTransformer  # noqa: E402


def parse_dot(source: str) -> dict:
    """{"nodes": {id: (label, attributes)}, "edges": [(label, label)], "clusters": {name: [labels]}}
    from the DOT text graph() writes (one statement a line)."""
    nodes, edges, clusters, open_clusters = {}, [], {}, []
    for line in source.splitlines():
        line = line.strip()
        if match := re.fullmatch(r'subgraph "cluster_(.+)" \{', line):
            open_clusters.append(match[1])
            clusters[match[1]] = []
        elif line == "}" and open_clusters:
            open_clusters.pop()
        elif match := re.fullmatch(r'(\w+) \[label="((?:[^"\\]|\\.)*)"(.*)\];', line):
            label = match[2].replace("\\n", "\n")
            nodes[match[1]] = (label, match[3])
            for name in open_clusters:
                clusters[name].append(label)
        elif match := re.fullmatch(r"(\w+) -> (\w+);", line):
            edges.append((match[1], match[2]))
    labels = [(nodes[a][0], nodes[b][0]) for a, b in edges]
    return {"nodes": nodes, "edges": labels, "clusters": clusters}


def test_three_ops_read_back_from_the_dot_text():
    x = gt.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], requires_grad=True)
    w = gt.tensor([0.5, -1.0, 0.25], requires_grad=True)
    shift = gt.tensor([1.0, 1.0, 1.0])                  # a leaf that needs no gradient
    loss = ((x * w).exp() + shift).sum()
    dot = parse_dot(viz.graph(loss, params={"x": x, "w": w}).source)
    labels = {label: attributes for label, attributes in dot["nodes"].values()}
    assert set(labels) == {"Mul\n(2, 3) float32", "Exp\n(2, 3) float32", "Add\n(2, 3) float32",
                           "Sum\n() float32", "x\n(2, 3) float32", "w\n(3,) float32",
                           "(3,) float32"}
    assert sorted(dot["edges"]) == sorted([
        ("x\n(2, 3) float32", "Mul\n(2, 3) float32"), ("w\n(3,) float32", "Mul\n(2, 3) float32"),
        ("Mul\n(2, 3) float32", "Exp\n(2, 3) float32"), ("Exp\n(2, 3) float32", "Add\n(2, 3) float32"),
        ("(3,) float32", "Add\n(2, 3) float32"), ("Add\n(2, 3) float32", "Sum\n() float32")])
    assert "penwidth" in labels["x\n(2, 3) float32"] and "penwidth" in labels["w\n(3,) float32"]
    assert "penwidth" not in labels["(3,) float32"]      # only leaves that require grad are marked
    assert dot["clusters"] == {}


def test_a_tensor_used_twice_has_two_edges_and_a_leaf_alone_is_one_node():
    a = gt.tensor([3.0], requires_grad=True)
    g = viz.graph((a * a).sum())
    assert [e for e in g.edges if e[1] == "op0"] == [("leaf0", "op0"), ("leaf0", "op0")]
    alone = viz.graph(a, params={"a": a})
    assert [(n.label, n.kind) for n in alone.nodes] == [("a\n(1,) float32", "param")] and not alone.edges


def test_after_backward_the_freed_graph_is_refused():
    a = gt.tensor([3.0], requires_grad=True)
    loss = (a * 2).sum()
    loss.backward()
    with pytest.raises(RuntimeError, match="call graph\\(\\) before backward"):
        viz.graph(loss)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = nn.Sequential(nn.Linear(3, 4), nn.GELU(), nn.Linear(4, 3))
        self.head = nn.Linear(3, 2)

    def forward(self, x):
        return self.head(self.block(x))


def test_ops_are_grouped_by_the_modules_around_them():
    gt.manual_seed(0)
    net = Net()
    loss = F.mse_loss(net(gt.randn(5, 3)), gt.zeros(5, 2))
    dot = parse_dot(viz.graph(loss, params=dict(net.named_parameters())).source)
    names = {c: sorted(label.split("\n")[0] for label in labels) for c, labels in dot["clusters"].items()}
    assert names["block.0"] == ["LinearFn", "block.0.bias", "block.0.weight"]
    assert "Gelu" in names["block"]                    # between block.0 and block.2: in block
    assert names["head"] == ["LinearFn", "head.bias", "head.weight"]
    in_a_cluster = {label for labels in dot["clusters"].values() for label in labels}
    assert not any(label.startswith(("Sub", "Mean")) for label in in_a_cluster)  # the loss: top


def test_a_dtensor_shows_its_placement():
    x = dist.shard(gt.ones(4, 2, requires_grad=True), dim=0)
    labels = [n.label for n in viz.graph((x * 2).sum()).nodes]
    assert f"Mul\n(4, 2) float32\n{dist.Shard(0)!r}" in labels


def test_matplotlib_draws_when_there_is_no_dot(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))          # no Graphviz here
    a = gt.tensor([1.0, 2.0], requires_grad=True)
    g = viz.graph((a * a).exp().sum(), params={"a": a})
    g.save(tmp_path / "g.png")
    g.save(tmp_path / "g.svg")
    g.save(tmp_path / "g.dot")
    assert (tmp_path / "g.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert "<svg" in (tmp_path / "g.svg").read_text()
    assert (tmp_path / "g.dot").read_text() == g.source
    with pytest.raises(RuntimeError, match="dot is not on PATH"):
        g.save(tmp_path / "h.svg", engine="dot")


def test_dot_draws_when_installed(tmp_path, monkeypatch):
    fake = tmp_path / "dot"  # records its arguments and input where the picture would go
    fake.write_text(f"#!{sys.executable}\nimport sys\n"
                    "out = sys.argv[sys.argv.index('-o') + 1]\n"
                    "open(out, 'w').write(sys.argv[1] + '\\n' + sys.stdin.read())\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", str(tmp_path) + os.pathsep + os.environ["PATH"])
    a = gt.tensor([1.0], requires_grad=True)
    g = viz.graph((a * 3).sum())
    g.save(tmp_path / "g.svg")
    assert (tmp_path / "g.svg").read_text() == "-Tsvg\n" + g.source


def test_the_pixel_transformers_loss_in_well_under_a_second():
    gt.manual_seed(0)
    model = PixelTransformer(img=8, seq=4, dim=16, heads=2, layers=4, ff=32)
    loss = F.mse_loss(model(gt.randn(2, 4, 8, 8)), gt.zeros(2, 10))
    params = dict(model.named_parameters())
    started = time.perf_counter()
    g = viz.graph(loss, params=params)
    source = g.source
    assert time.perf_counter() - started < 1.0
    assert len(g.nodes) > 150
    assert all(f'"{name}\\n' in source for name in params)   # every parameter, by name
    clusters = g.clusters()["children"]["blocks"]["children"]
    assert sorted(clusters) == [f"blocks.{i}" for i in range(4)]
    attention = clusters["blocks.2"]["children"]["blocks.2.attn"]
    assert "Softmax" in [n.label.split("\n")[0] for n in attention["nodes"]]
