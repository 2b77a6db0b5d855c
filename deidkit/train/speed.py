"""Speed options of the training recipes (mixed precision, channels-last, torch.compile, data-loader workers)
and the training-speed benchmark (``deidkit benchmark-train``).

Every option is off by default, so the CPU profiles compute exactly what they always did; the ``paper`` profiles,
meant for GPUs, turn on bf16 autocast, channels-last and (critic, FaDeNet) four loader workers.
"""

from __future__ import annotations

import contextlib
import time
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


def images_per_second(log_rows: list[float], batch: int, skip: int = 2) -> float:
    """Global images per second from per-step wall times, after ``skip`` warm-up steps."""
    times = np.asarray(log_rows[skip:] if len(log_rows) > skip else log_rows, dtype=float)
    return float(batch * len(times) / times.sum()) if len(times) and times.sum() > 0 else float("nan")


def plan_epochs(step_full_s: float, step_warm_s: float, budget_s: float, epoch_steps: int = 100,
                safety: float = 1.25) -> tuple[int, int]:
    """The most (epochs, warmup_epochs) of a live schedule whose time fits ``budget_s``, from timed seconds per
    full-loss and per warm-up step: warm-up a third of the epochs, the rest a multiple of four (whole lambda
    stages). ``safety`` scales the timed steps: training also saves a checkpoint every epoch and logs every step
    (on an H200 the first run trained about 10 % slower than its timing said, and lost its last stage)."""
    best = (4, 0)
    for epochs in range(4, 5000):
        warm = epochs // 3
        if (epochs - warm) % 4:
            continue
        if safety * epoch_steps * (warm * step_warm_s + (epochs - warm) * step_full_s) > budget_s:
            break
        best = (epochs, warm)
    return best


def benchmark_training(model: str, profile: str, steps: int = 10, device: str = "auto",
                       overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train ``steps`` steps of a model's profile (after two warm-up steps) in a throw-away run folder and measure
    images/s. Returns a ``{"kind": "train_speed", ...}`` record."""
    import tempfile
    from pathlib import Path

    from deidkit.configs import CriticConfig, FaDeNetConfig, LiveConfig
    from deidkit.train.critic import peak_rss_mb
    from deidkit.train.distributed import current
    from deidkit.train.loop import run_limits

    overrides = {**(overrides or {}), "device": device}
    shard = current()
    with tempfile.TemporaryDirectory(prefix="deidkit-speed-") as tmp:
        run_dir = Path(tmp) / "run"
        t0 = time.perf_counter()
        if model == "fadenet":  # its critic first, in full (a step budget would stop the critic instead)
            from deidkit.train.fadenet import ensure_critic

            ensure_critic(FaDeNetConfig.profile(profile, **overrides).critic_config(), progress=False)
        with run_limits(max_steps=steps + 2):  # two warm-up steps, not timed
            if model == "live":
                from deidkit.train.live import train_live

                cfg = LiveConfig.profile(profile, **{"warmup_epochs": 0, "init_from": None, **overrides})
                _, log = train_live(cfg, run_dir=run_dir, show_progress=False)
            elif model == "fadenet":
                from deidkit.train.fadenet import train_fadenet

                cfg = FaDeNetConfig.profile(profile, **overrides)
                log = train_fadenet(cfg, run_dir=run_dir, progress=False).log
            elif model == "critic":
                from deidkit.train.critic import train_critic

                cfg = CriticConfig.profile(profile, **{"precompute_features": False, **overrides})
                log = train_critic(cfg, run_dir=run_dir, progress=False).log
            else:
                raise ValueError(f"unknown model {model!r}; choose critic, fadenet or live")
        batch = cfg.batch_size
        wall = time.perf_counter() - t0
    dev = str(torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                           ("cpu" if device == "auto" else device)))
    return {"kind": "train_speed", "model": model, "profile": profile, "device": dev, "world_size": shard.world,
            "images_per_s": images_per_second(log["wall_s"].tolist(), batch), "steps": int(len(log)),
            "batch_size": batch, "amp": bool(cfg.amp), "threads": torch.get_num_threads(), "wall_s": wall,
            "peak_rss_mb": peak_rss_mb()}  # of the whole process so far
