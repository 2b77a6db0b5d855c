"""The training-speed benchmark (``deidkit benchmark-train``) and epoch planning from its timings.

The speed options the recipes take (mixed precision, channels-last, torch.compile, data-loader workers) are in
:mod:`deidkit.train.speedups`, below the recipes this benchmark runs; they stay importable from here.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from deidkit.train.speedups import WorkerBatches, autocast, prepare


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


__all__ = ["WorkerBatches", "autocast", "benchmark_training", "images_per_second", "plan_epochs", "prepare"]
