"""Splitting the work: torchrun ranks (torch.distributed, gloo on CPU / nccl on GPU) or `--shard i/n` jobs.

Chunk i of every stage belongs to worker i % n. Workers exchange nothing but files in the atlas's work
folder (so it must be on a filesystem they share) and, under torchrun, barriers between stages; rank 0
assembles the atlas. Shard jobs never assemble: `styleatlas-build merge` does, once every shard finished.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch

from models.errors import AtlasError


@dataclass
class Workers:
    rank: int = 0
    world: int = 1
    torchrun: bool = False  # a torch.distributed group we joined (barriers between stages)
    shard: bool = False  # an independent --shard job (no barriers, no assembly)
    created_group: bool = False

    def mine(self, num_chunks: int) -> list[int]:
        return [i for i in range(num_chunks) if i % self.world == self.rank]

    def barrier(self) -> None:
        if self.torchrun:
            import torch.distributed as dist

            dist.barrier()

    def sum(self, values: list[int]) -> list[int]:
        """Element-wise sum of every rank's `values` (all ranks get it); the values themselves without torchrun."""
        if not self.torchrun:
            return list(values)
        import torch.distributed as dist

        device = f"cuda:{torch.cuda.current_device()}" if dist.get_backend() == "nccl" else "cpu"
        t = torch.tensor(values, dtype=torch.int64, device=device)
        dist.all_reduce(t)
        return [int(v) for v in t.tolist()]

    def close(self) -> None:
        if self.created_group:
            import torch.distributed as dist

            dist.destroy_process_group()


def parse_shard(shard) -> tuple[int, int] | None:
    """'i/n' or (i, n) -> (i, n) with 0 <= i < n; None passes through."""
    if shard is None:
        return None
    try:
        i, n = shard.split("/") if isinstance(shard, str) else shard
        i, n = int(i), int(n)
    except (ValueError, TypeError):
        raise AtlasError(f"--shard takes i/n (e.g. 0/8 for the first of eight jobs), got {shard!r}.") from None
    if not (n >= 1 and 0 <= i < n):
        raise AtlasError(f"--shard {i}/{n} is out of range; i runs from 0 to n-1.")
    return i, n


def setup(shard=None, device: str | None = None, timeout_s: float = 4 * 3600) -> tuple[Workers, str]:
    """Join torchrun's process group when WORLD_SIZE > 1 (else use --shard, else one worker); pick the device."""
    parsed = parse_shard(shard)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        if parsed is not None:
            raise AtlasError("--shard and torchrun split the work two ways at once; use one of them.")
        import torch.distributed as dist

        rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        cuda = (
            device if device not in (None, "auto") else ("cuda" if torch.cuda.is_available() else "cpu")
        ).startswith("cuda")
        if cuda:
            torch.cuda.set_device(local)
            device = f"cuda:{local}"
        created = False
        if not dist.is_initialized():
            dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(seconds=timeout_s))
            created = True
        return Workers(rank=rank, world=world, torchrun=True, created_group=created), device or "cpu"
    if parsed is not None:
        return Workers(rank=parsed[0], world=parsed[1], shard=True), device
    return Workers(), device
