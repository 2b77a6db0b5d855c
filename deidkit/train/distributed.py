"""Data-parallel training on PyTorch's own engine: ``torchrun`` + ``DistributedDataParallel``.

``torchrun --nproc_per_node N -m deidkit train fadenet --profile quick`` starts N processes; each calls
:func:`setup`, which joins the process group that torchrun describes in the environment (``RANK``,
``WORLD_SIZE``, ``MASTER_ADDR``...; NCCL on GPUs, gloo on the CPU). Multi-node runs use torchrun's own rendezvous
flags (``--nnodes``, ``--node_rank``, ``--rdzv_endpoint``); nothing here re-implements them.

How a batch is split: the profile's ``batch_size`` stays the *global* batch. Every process draws the global
batch's order and random numbers (augmentation, random views, mixup coefficients) from the same seed and keeps
its own contiguous share (:meth:`Shard.take`), and DDP averages the gradients. With the kit's per-sample
networks (no batch statistics are trained) an N-process step therefore computes what a 1-process step computes,
up to floating-point summation order (tested with gloo on the CPU). Checkpoints, logs and snapshots are written
by rank 0 only; the frozen critic and recogniser are replicated in every process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Shard:
    """This process's place in the group: ``rank`` of ``world``."""

    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def check_batch(self, batch_size: int) -> None:
        if batch_size % self.world:
            raise ValueError(f"the global batch ({batch_size}) must split evenly over {self.world} processes")

    def take(self, t: torch.Tensor) -> torch.Tensor:
        """This process's contiguous share of a global batch (its first dimension)."""
        if not self.active:
            return t
        if len(t) < self.world:
            raise ValueError(f"a batch of {len(t)} cannot be shared by {self.world} processes")
        # an uneven last batch gives the first processes one more sample each
        return torch.tensor_split(t, self.world)[self.rank]

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """The mean of each value over the processes (the log shows the global batch's terms)."""
        if not self.active or not values:
            return values
        t = torch.tensor(list(values.values()), dtype=torch.float64)
        dist.all_reduce(t)
        return dict(zip(values, (t / self.world).tolist()))

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is set in any process (so that all stop together)."""
        if not self.active:
            return flag
        t = torch.tensor([1.0 if flag else 0.0])
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def gather(self, obj: object) -> list[object]:
        """Every process's ``obj``, in rank order (e.g. the RNG states a checkpoint keeps)."""
        if not self.active:
            return [obj]
        out: list[object] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out


def setup() -> Shard:
    """Join the process group torchrun describes (once); a plain process is rank 0 of 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Shard()
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return current()


def current() -> Shard:
    """The group this process belongs to (rank 0 of 1 without one)."""
    if dist.is_available() and dist.is_initialized():
        return Shard(dist.get_rank(), dist.get_world_size())
    return Shard()


def device_for(requested: torch.device) -> torch.device:
    """The CUDA device of this process's local rank under NCCL, else ``requested``."""
    if requested.type == "cuda" and current().active:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return requested


def wrap(module: nn.Module) -> nn.Module:
    """``module`` in DistributedDataParallel when several processes train, else itself. Use ``unwrap`` for
    forward passes that must not synchronise gradients (e.g. a frozen discriminator scoring the generator)."""
    if not current().active:
        return module
    dev = next(module.parameters()).device
    return nn.parallel.DistributedDataParallel(module, device_ids=[dev.index] if dev.type == "cuda" else None)


def unwrap(module: nn.Module) -> nn.Module:
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module


__all__ = ["Shard", "current", "device_for", "setup", "unwrap", "wrap"]
