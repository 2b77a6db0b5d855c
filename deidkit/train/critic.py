"""Training the identity critic of FaDeNet.

The critic learns the identities of the LFW training pool (``lfw_train_pool``, identities disjoint from the
test protocols: those with >= 4 images, one image per identity held out). Two kinds (see
:mod:`deidkit.models.critic`):

* ``inception``: Inception-v3 from scratch, the paper's recipe (batch 32, 40 epochs, Adam with default
  settings, lr 1e-3); a GPU job at 224 pixels.
* ``mobilefacenet``: the MS1M MobileFaceNet (pretrained, frozen) with a linear softmax head; trains in CPU
  minutes because only the head learns.

Runs live in ``cache_dir()/runs/<run_name>``: ``checkpoint.pt`` (weights, loaded with ``weights_only=True``),
``config.json``, ``log.csv`` (per step), ``epochs.csv`` (held-out accuracy per epoch), ``identities.json``
(class index -> LFW identity) and ``metrics.json``.

The data it learns from are :mod:`deidkit.train.identity_data`; building a critic, reading a trained one back and
using it as a recogniser, :mod:`deidkit.train.trained_critic`.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from deidkit.checkpoints import CHECKPOINT_NAME, load_checkpoint, read_json, runs_dir, write_json
from deidkit.configs import CRITIC_KINDS, CriticConfig
from deidkit.data.images import resize_crops, to_model_range
from deidkit.models.critic import Critic
from deidkit.recognizers import load_ms1m_backbone
from deidkit.train.augment import ArrayBatches
from deidkit.train.distributed import Shard, device_for, wrap
from deidkit.train.distributed import current as current_shard

# The critic's data and the trained critic moved to modules of their own; their names stay importable from here.
from deidkit.train.identity_data import IdentityData, load_train_pool
from deidkit.train.loop import TimeLimitReached, TrainingRun
from deidkit.train.speedups import WorkerBatches, autocast, prepare
from deidkit.train.trained_critic import (
    CriticRecognizer,
    accuracy,
    critic_recognizer,
    load_critic,
    make_critic,
    predict,
)


def resolve_device(device: str) -> torch.device:
    """``"auto"``: CUDA when available, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ---------------------------------------------------------------------------------------------- training
@dataclass
class CriticResult:
    run_dir: Path
    critic: Critic
    identities: list[str]
    log: pd.DataFrame
    epochs: pd.DataFrame
    metrics: dict[str, Any]


def train_critic(config: CriticConfig, data: IdentityData | None = None, run_dir: str | os.PathLike | None = None,
                 critic: Critic | None = None, progress: bool = True) -> CriticResult:
    """Train (or resume, or just load if finished) the critic of ``config``.

    ``data`` defaults to :func:`load_train_pool`; ``critic`` (an untrained network with ``data.num_classes``
    outputs) defaults to :func:`make_critic`. Held-out accuracy is evaluated after every epoch.
    """
    config.validate()
    current_shard().check_batch(config.batch_size)  # under torchrun the batch is the global one
    run_dir = Path(run_dir) if run_dir is not None else runs_dir() / config.name
    device = device_for(resolve_device(config.device))
    if data is None:
        data = load_train_pool(config.image_size, config.max_identities, config.seed)
    elif data.train_images.shape[1] != config.image_size:
        data = data.resized(config.image_size)
    backbone = None
    if critic is None and config.robust_eps:
        from deidkit.train.robust import train_robust_backbone

        backbone = train_robust_backbone(config, run_dir / "backbone", progress=progress)
        if backbone is None:  # there is no critic checkpoint yet to resume from: stop as the loop does
            raise TimeLimitReached(f"{run_dir / 'backbone'}: the robust backbone stopped at the time limit; "
                                   f"the same call continues")
    torch.manual_seed(config.seed)  # identical initial weights for the head / from-scratch network
    critic = critic if critic is not None else make_critic(config, data.num_classes, backbone=backbone)
    if critic.num_classes != data.num_classes:
        raise ValueError(f"critic has {critic.num_classes} classes, data has {data.num_classes} identities")
    critic.to(device).train()
    params = [p for p in critic.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    run = TrainingRun(run_dir, {"critic": critic}, {"adam": optimizer}, seed=config.seed,
                      config={**config.to_dict(), "num_classes": data.num_classes}, show_progress=progress)
    if current_shard().is_main:
        write_json(run_dir / "identities.json", data.identities)

    timings: dict[str, float] = {}
    if config.precompute_features:
        make_loader, step, heldout_acc = _feature_training(critic, data, config, optimizer, device, progress,
                                                           timings)
    else:
        make_loader, step, heldout_acc = _image_training(critic, data, config, optimizer, device)

    epochs_path = run_dir / "epochs.csv"
    rows = pd.read_csv(epochs_path).to_dict("records") if epochs_path.is_file() else []
    t0 = time.perf_counter()
    log = run.read_log()
    # One epoch per fit() call so held-out accuracy can be measured in between; fit() resumes from the
    # checkpoint each time, which restores exactly the state an uninterrupted fit() would have.
    for e in range(1, config.epochs + 1):
        log = run.fit(make_loader, step, epochs=e, desc=f"critic ({config.kind})")
        if run.stopped:  # the time limit of deidkit.train.loop.run_limits: the next call continues
            break
        if not any(int(r["epoch"]) == e for r in rows):
            rows.append({"epoch": e, "heldout_acc": heldout_acc(),
                         "train_loss": float(log.loc[log["epoch"] == e - 1, "loss"].mean())})
            pd.DataFrame(rows).to_csv(epochs_path, index=False)
    wall = time.perf_counter() - t0
    critic.freeze()
    if run.stopped:
        return CriticResult(run_dir, critic, data.identities, log, pd.DataFrame(rows),
                            {"stopped": True, "epoch": run.epoch, "global_step": run.global_step})
    metrics = {
        "kind": config.kind,
        "profile": config.profile_name,
        "identities": data.num_classes,
        "train_images": int(len(data.train_images)),
        "heldout_images": int(len(data.heldout_images)),
        "heldout_accuracy": heldout_acc(),
        "train_accuracy_last_epoch": float(log.loc[log["epoch"] == log["epoch"].max(), "acc"].mean())
        if len(log) else float("nan"),
        "epochs": config.epochs,
    }
    # With precomputed features a "step" is a linear head on vectors: report it separately from image throughput.
    metrics.update(_throughput(log, "head_features" if config.precompute_features else "train_images"))
    metrics.update(timings)
    if wall > 1.0 and len(log):  # timings only when this call actually trained
        metrics.update(wall_s_this_call=wall, peak_rss_mb=peak_rss_mb(), device=str(device))
    old = read_json(run_dir / "metrics.json") or {}
    if current_shard().is_main:
        write_json(run_dir / "metrics.json", {**old, **metrics})
    return CriticResult(run_dir, critic, data.identities, log, pd.DataFrame(rows), {**old, **metrics})


def ensure_critic(config: CriticConfig, data: IdentityData | None = None, progress: bool = True
                  ) -> tuple[Critic, list[str], Path]:
    """The critic of ``config``: loaded if its run has finished, else trained (or resumed) first."""
    run_dir = runs_dir() / config.name
    if (run_dir / CHECKPOINT_NAME).is_file() and load_checkpoint(run_dir)["epoch"] >= config.epochs:
        critic, ids, _ = load_critic(run_dir)
        return critic, ids, run_dir
    res = train_critic(config, data=data, run_dir=run_dir, progress=progress)
    if res.metrics.get("stopped"):
        raise TimeLimitReached(f"{run_dir}: the critic stopped at the time limit (epoch {res.metrics['epoch']}); "
                               f"run again to continue it, then FaDeNet")
    return res.critic, res.identities, run_dir


def _image_training(critic: Critic, data: IdentityData, config: CriticConfig, optimizer: torch.optim.Optimizer,
                    device: torch.device) -> tuple:
    """Loader, step and held-out evaluation for end-to-end training on (augmented) images."""

    shard = current_shard()
    # forward = logits; DistributedDataParallel when several processes train; the paper profile's speed options
    memory = torch.channels_last if config.channels_last else torch.contiguous_format
    critic_ddp = prepare(wrap(prepare(critic, config.channels_last)), compile=config.compile)

    def make_loader(epoch: int) -> ArrayBatches | WorkerBatches:
        if config.workers:
            return WorkerBatches(data.train_images, data.train_labels, config.batch_size, config.seed, epoch,
                                 config.workers, augment=config.augment, shard=shard,
                                 pin_memory=device.type == "cuda")
        return ArrayBatches(data.train_images, data.train_labels, config.batch_size, config.seed, epoch,
                            augment=config.augment, shard=shard)

    def step(batch: tuple[torch.Tensor, torch.Tensor], epoch: int, global_step: int) -> dict[str, float]:
        x = batch[0].to(device, non_blocking=True).to(memory_format=memory)
        y = batch[1].to(device, non_blocking=True)
        critic.train()
        with autocast(config.amp, device):
            logits = critic_ddp(x)
            loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"loss": loss.item(), "acc": (logits.argmax(1) == y).float().mean().item(),
                "n": float(len(x) * shard.world)}

    def heldout_acc() -> float:
        return accuracy(critic, data.heldout_images, data.heldout_labels, device)

    return make_loader, step, heldout_acc


class _HeadOnFeatures(nn.Module):
    """The critic's head as a module of its own (``forward`` = logits from features), for DDP."""

    def __init__(self, critic: Critic) -> None:
        super().__init__()
        self.critic = critic

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.critic.logits_from_features(f)


class _FeatureBatches:
    """Shuffled mini-batches of precomputed features; the order depends only on ``(seed, epoch)``. Under torchrun
    each process gets its share of every global batch."""

    def __init__(self, feats: torch.Tensor, labels: torch.Tensor, batch_size: int, seed: int, epoch: int,
                 shard: Shard | None = None) -> None:
        self.feats, self.labels, self.batch_size = feats, labels, batch_size
        self.shard = shard or Shard()
        g = torch.Generator().manual_seed(int(seed) * 100_003 + int(epoch))
        self.order = torch.randperm(len(feats), generator=g)

    def __len__(self) -> int:
        if self.shard.active and len(self.feats) >= self.batch_size:
            return len(self.feats) // self.batch_size  # whole global batches only, so every process has a share
        return -(-len(self.feats) // self.batch_size)

    def __iter__(self):
        for b in range(len(self)):
            idx = self.order[b * self.batch_size:(b + 1) * self.batch_size]
            yield self.shard.take(self.feats[idx]), self.shard.take(self.labels[idx])


@torch.no_grad()
def _embed_copies(critic: Critic, images: np.ndarray, copies: int, augment: bool, seed: int,
                  device: torch.device, progress: bool, batch_size: int = 64) -> torch.Tensor:
    """Features of ``copies`` versions of every image: copy 0 as is, the others augmented (seeded)."""
    from tqdm.auto import tqdm

    from deidkit.train.augment import augment_batch

    critic.eval()
    gen_state = torch.get_rng_state()
    torch.manual_seed(seed)  # the augmented copies are a function of the seed alone
    feats = []
    try:
        for c in range(copies):
            for s in tqdm(range(0, len(images), batch_size), desc=f"critic features (copy {c + 1}/{copies})",
                          disable=not progress, leave=False):
                x = torch.from_numpy(np.ascontiguousarray(images[s:s + batch_size])).permute(0, 3, 1, 2)
                if c > 0 and augment:
                    x = augment_batch(x)
                feats.append(critic.features(to_model_range(x).to(device)).float().cpu())
    finally:
        torch.set_rng_state(gen_state)
    return torch.cat(feats) if feats else torch.zeros(0)


def _feature_training(critic: Critic, data: IdentityData, config: CriticConfig,
                      optimizer: torch.optim.Optimizer, device: torch.device, progress: bool,
                      timings: dict[str, float]) -> tuple:
    """Loader, step and held-out evaluation for training only the head on precomputed backbone features."""
    copies = config.feature_copies if config.augment else 1
    cache: dict[str, torch.Tensor] = {}  # filled on first use: a finished run needs no features at all

    def features(split: str) -> torch.Tensor:
        if split not in cache:
            t0 = time.perf_counter()
            if split == "train":
                cache[split] = _embed_copies(critic, data.train_images, copies, config.augment, config.seed,
                                             device, progress)
            else:
                cache[split] = _embed_copies(critic, data.heldout_images, 1, False, config.seed, device, progress)
            timings[f"feature_s_{split}"] = time.perf_counter() - t0
        return cache[split]

    train_y = torch.as_tensor(np.tile(data.train_labels, copies), dtype=torch.int64)
    held_y = torch.as_tensor(data.heldout_labels, dtype=torch.int64)

    shard = current_shard()
    head = wrap(_HeadOnFeatures(critic))  # only the head trains here

    def make_loader(epoch: int) -> _FeatureBatches:
        return _FeatureBatches(features("train"), train_y, config.batch_size, config.seed, epoch, shard)

    def step(batch: tuple[torch.Tensor, torch.Tensor], epoch: int, global_step: int) -> dict[str, float]:
        f, y = batch[0].to(device), batch[1].to(device)
        critic.train()
        logits = head(f)
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"loss": loss.item(), "acc": (logits.argmax(1) == y).float().mean().item(),
                "n": float(len(f) * shard.world)}

    @torch.no_grad()
    def heldout_acc() -> float:
        if len(held_y) == 0:
            return float("nan")
        critic.eval()
        logits = critic.logits_from_features(features("heldout").to(device))
        return float((logits.argmax(1).cpu() == held_y).float().mean())

    return make_loader, step, heldout_acc


def _throughput(log: pd.DataFrame, what: str = "train_images") -> dict[str, float]:
    if not len(log) or "n" not in log:
        return {}
    return {f"{what}_per_s": float(log["n"].sum() / log["wall_s"].sum()),
            "train_step_s_total": float(log["wall_s"].sum())}



# CriticConfig lives in deidkit.configs, the checkpoint/JSON readers in deidkit.checkpoints and load_ms1m_backbone
# (pretrained weights, which the robust backbone loads too) in deidkit.recognizers; importable from here as before.
__all__ = ["CRITIC_KINDS", "CriticConfig", "CriticRecognizer", "CriticResult", "IdentityData", "accuracy",
           "critic_recognizer", "ensure_critic", "load_critic", "load_ms1m_backbone", "load_train_pool", "make_critic", "peak_rss_mb",
           "predict", "resize_crops", "resolve_device", "runs_dir", "train_critic"]
