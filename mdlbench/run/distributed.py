"""Data-parallel scale-out on torch.distributed (launched by torchrun): each rank is one shard of every run.

torchrun sets RANK/WORLD_SIZE/LOCAL_RANK; we join its process group (gloo on CPU, NCCL with CUDA) only to
synchronize — documents never travel between ranks: each rank scores its own chunks and writes its own
checkpoint files, and rank 0 assembles the tables after a barrier. Multi-node works through torchrun's
rendezvous as long as every node sees the same results folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from mdlbench.run.state import Shard


@dataclass(frozen=True, slots=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def shard(self) -> Shard:
        return Shard(self.rank, self.world_size)

    @property
    def is_leader(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()


def from_env() -> DistContext:
    """Join torchrun's process group if there is one; a plain process is rank 0 of 1."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext()
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank)
