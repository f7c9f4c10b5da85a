"""Many ranks, one program: minigt's multi-process backend.

Launch with `mpirun -n N python script.py`; every rank runs the same script on its part of the
data (SPMD). A tensor can be a DTensor -- this rank's part plus a placement saying how the parts
make the global value -- and every op works on DTensors through the rules in rules.py.

>>> import minigt.distributed as dist
>>> x = dist.shard(minigt.randn(8, 4), dim=0)   # rank r keeps rows of its own
>>> (x * 2).sum().item()                         # sum of the local sums, all-reduced
"""
from . import nn_rules, rules, shape_rules  # noqa: F401 - each registers its sharding rules
from .checks import CollectiveMismatch
from .collectives import barrier
from .dtensor import DTensor, local, redistribute
from .files import load
from .fsdp import ShardedParameter, fully_shard, sharded_init
from .functions import all_gather, all_reduce, broadcast, reduce_scatter
from .placement import Partial, Placement, Replicate, Shard, ShardingError
from .sharding import auto_shard, from_local, replicate, shard
from .tensor_parallel import ColumnParallelLinear, RowParallelLinear
from .visualize import visualize
from .zero import ShardedOptimizer
from .world import data_group, init_parallel, local_rank, rank, tensor_group, world_size


__all__ = [
    "DTensor", "Placement", "Replicate", "Shard", "Partial", "ShardingError",
    "rank", "world_size", "local_rank", "barrier", "init_parallel", "data_group", "tensor_group",
    "ColumnParallelLinear", "RowParallelLinear", "ShardedOptimizer", "fully_shard",
    "ShardedParameter", "sharded_init",
    "shard", "replicate", "from_local", "redistribute", "auto_shard", "local", "load",
    "CollectiveMismatch",
    "visualize",
    "all_reduce", "all_gather", "reduce_scatter", "broadcast",
]
