"""The speed options of the training recipes: mixed precision, channels-last, torch.compile, data-loader workers.

Every option is off by default, so the CPU profiles compute exactly what they always did; the ``paper`` profiles,
meant for GPUs, turn on bf16 autocast, channels-last and (critic, FaDeNet) four loader workers. The recipes import
these, and the training-speed benchmark (:mod:`deidkit.train.speed`) imports the recipes, so the options live here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from deidkit.data.images import to_model_range
from deidkit.train.distributed import Shard


def autocast(enabled: bool, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on a CUDA device that supports bf16; a no-op otherwise (on the CPU bf16 is slower than
    float32 without matrix extensions, and results would change)."""
    if enabled and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def prepare(module: nn.Module, channels_last: bool = False, compile: bool = False) -> nn.Module:
    """``module`` in channels-last memory format and/or compiled (the parameters stay the module's own, so
    checkpoints and DDP see the same tensors)."""
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    if compile:
        module = torch.compile(module)
    return module


class _CropDataset(torch.utils.data.Dataset):
    def __init__(self, images: np.ndarray, labels: np.ndarray, augment: bool) -> None:
        from deidkit.train.augment import fadenet_augmentation

        self.images = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
        self.transform = fadenet_augmentation() if augment else None

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.images[i]
        if self.transform is not None:
            x = self.transform(x)
        return to_model_range(x), self.labels[i]


class WorkerBatches:
    """A ``torch.utils.data.DataLoader`` over the crop cache with ``workers`` augmenting in parallel, pinned memory
    on CUDA, and a ``DistributedSampler`` that gives each process its share of every epoch. The order and the
    augmentation depend only on ``(seed, epoch)`` (each epoch seeds the loader's generator), so a resumed run
    replays its epoch; unlike the in-process :class:`~deidkit.train.augment.ArrayBatches`, N processes do not
    compute exactly what one does (each process augments its own images)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int, seed: int, epoch: int,
                 workers: int, augment: bool = True, shard: Shard | None = None, pin_memory: bool = False) -> None:
        shard = shard or Shard()
        dataset = _CropDataset(images, labels, augment)
        sampler = torch.utils.data.DistributedSampler(dataset, num_replicas=shard.world, rank=shard.rank,
                                                      shuffle=True, seed=seed, drop_last=True)
        sampler.set_epoch(epoch)
        drop = len(dataset) // shard.world >= batch_size // shard.world
        self.loader = torch.utils.data.DataLoader(
            dataset, batch_size=batch_size // shard.world, sampler=sampler, num_workers=workers,
            pin_memory=pin_memory, drop_last=drop,
            generator=torch.Generator().manual_seed(int(seed) * 100_003 + int(epoch)),
            persistent_workers=False)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.loader)
