"""Pictures of the backward graph: `graph(loss)` gives its Graphviz DOT text and draws it.

>>> from minigt import viz
>>> viz.graph(loss, params=dict(model.named_parameters())).save("loss.svg")

matplotlib is imported only when a picture is drawn (it is optional). Where a sharded tensor's
parts live is `minigt.distributed.visualize`; a traced run's timeline is
`python -m minigt timeline trace.json` (minigt/distributed/timeline.py).
"""
from .graph import Graph, Node, graph

__all__ = ["graph", "Graph", "Node"]
