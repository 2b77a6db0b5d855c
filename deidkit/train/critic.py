"""Training the identity critic of FaDeNet, loading it back, and using it as a recogniser.

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
"""

from __future__ import annotations

import dataclasses
import os
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from deidkit.checkpoints import CHECKPOINT_NAME, load_module_state, read_json, runs_dir, write_json
from deidkit.configs import CRITIC_KINDS, CriticConfig
from deidkit.data.images import resize_crops, to_model_range
from deidkit.models.critic import Critic, build_critic
from deidkit.recognizers import load_ms1m_backbone
from deidkit.train.augment import ArrayBatches
from deidkit.train.distributed import Shard, device_for, wrap
from deidkit.train.distributed import current as current_shard
from deidkit.train.loop import TimeLimitReached, TrainingRun
from deidkit.train.speedups import WorkerBatches, autocast, prepare


def resolve_device(device: str) -> torch.device:
    """``"auto"``: CUDA when available, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)




# ---------------------------------------------------------------------------------------------------- data
@dataclass
class IdentityData:
    """Labelled canonical crops for training a critic (and FaDeNet): train and held-out splits."""

    train_images: np.ndarray  # (N, S, S, 3) uint8
    train_labels: np.ndarray  # (N,) int64 class indices
    heldout_images: np.ndarray
    heldout_labels: np.ndarray
    identities: list[str]  # class index -> identity name
    train_paths: list[str] = field(default_factory=list)
    heldout_paths: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for nm, x, y in (("train", self.train_images, self.train_labels),
                         ("heldout", self.heldout_images, self.heldout_labels)):
            if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != np.uint8 or x.shape[1] != x.shape[2]:
                raise ValueError(f"{nm} images must be square uint8 (N, S, S, 3) crops, got {x.dtype} {x.shape}")
            if len(x) != len(y):
                raise ValueError(f"{nm}: {len(x)} images but {len(y)} labels")
            if len(y) and (y.min() < 0 or y.max() >= len(self.identities)):
                raise ValueError(f"{nm} labels must lie in [0, {len(self.identities)})")

    @property
    def num_classes(self) -> int:
        return len(self.identities)

    def resized(self, size: int) -> IdentityData:
        """The same data with crops resized to ``size`` (area averaging when shrinking)."""
        return dataclasses.replace(self, train_images=resize_crops(self.train_images, size),
                                   heldout_images=resize_crops(self.heldout_images, size))




def load_train_pool(image_size: int, max_identities: int | None = None, seed: int = 0,
                    crop_pack: str | os.PathLike | None = None) -> IdentityData:
    """The critic's data from the ``lfw_train_pool`` manifest: identities with a ``train``/``heldout``
    ``critic_split``, canonical crops (aligned and cached by :func:`deidkit.data.lfw.aligned_crops`, or read from
    ``crop_pack``: see :mod:`deidkit.data.packs`) resized to ``image_size``. ``max_identities`` keeps a random
    subset of identities (seeded)."""
    from deidkit.data.lfw import aligned_crops, load_manifest

    pool = load_manifest("lfw_train_pool")
    if "critic_split" not in pool.columns:
        raise ValueError("manifest lfw_train_pool has no critic_split column; rebuild the manifests (notebook 00)")
    pool = pool[pool["critic_split"].isin(["train", "heldout"])]
    ids = sorted(pool["identity"].unique())
    if not ids:
        raise ValueError("manifest lfw_train_pool has no identity with a critic split")
    if max_identities is not None and max_identities < len(ids):
        rng = np.random.default_rng(seed)
        ids = sorted(rng.choice(ids, size=max_identities, replace=False).tolist())
        pool = pool[pool["identity"].isin(ids)]
    index = {name: i for i, name in enumerate(ids)}
    if crop_pack:
        from deidkit.data.packs import read_crop_pack

        crops = resize_crops(read_crop_pack(crop_pack, pool["path"].tolist())[1], image_size)
    else:
        crops = resize_crops(aligned_crops(pool["path"].tolist(), size=224), image_size)
    labels = pool["identity"].map(index).to_numpy(dtype=np.int64)
    tr = (pool["critic_split"] == "train").to_numpy()
    paths = pool["path"].to_numpy()
    return IdentityData(crops[tr], labels[tr], crops[~tr], labels[~tr], ids,
                        paths[tr].tolist(), paths[~tr].tolist())


# ---------------------------------------------------------------------------------------------- building
def make_critic(config: CriticConfig, num_classes: int, pretrained: bool = True,
                backbone: nn.Module | None = None) -> Critic:
    """The critic network of ``config``. ``pretrained=False`` builds the MobileFaceNet critic's backbone
    without reading its weights (for loading a whole trained critic from a checkpoint); ``backbone`` gives it
    (e.g. the robust copy of :func:`deidkit.train.robust.train_robust_backbone`)."""
    if config.kind == "mobilefacenet" and backbone is None:
        from deidkit.models.mobilefacenet import MobileFaceNetMS1M

        backbone = load_ms1m_backbone() if pretrained else MobileFaceNetMS1M().eval()
    return build_critic(config.kind, num_classes, backbone=backbone, input_size=config.inception_input)


# ---------------------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def predict(critic: Critic, images: np.ndarray, batch_size: int = 64, device: torch.device | str = "cpu",
            what: str = "logits") -> np.ndarray:
    """Critic logits (or ``what="features"``) of uint8 crops (N, S, S, 3), in evaluation mode."""
    was_training = critic.training
    critic.eval()
    outs = []
    for s in range(0, len(images), batch_size):
        x = to_model_range(torch.from_numpy(np.ascontiguousarray(images[s:s + batch_size])).permute(0, 3, 1, 2))
        x = x.to(device)
        outs.append((critic.logits(x) if what == "logits" else critic.features(x)).float().cpu())
    critic.train(was_training)
    if not outs:
        return np.zeros((0, critic.num_classes), dtype=np.float32)
    return torch.cat(outs).numpy()


def accuracy(critic: Critic, images: np.ndarray, labels: np.ndarray, device: torch.device | str = "cpu") -> float:
    """Top-1 classification accuracy of the critic on labelled crops."""
    if len(images) == 0:
        return float("nan")
    return float((predict(critic, images, device=device).argmax(1) == np.asarray(labels)).mean())


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


def load_critic(run_dir: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[Critic, list[str], dict]:
    """A trained critic (frozen), its identity names and its configuration, from a run directory.

    The whole critic (including a pretrained backbone) is read from the run's checkpoint with
    ``weights_only=True``; no other file is needed.
    """
    run_dir = Path(run_dir)
    cfg_json = read_json(run_dir / "config.json")
    ids = read_json(run_dir / "identities.json")
    if cfg_json is None or ids is None:
        raise FileNotFoundError(f"{run_dir}: not a critic run (config.json / identities.json missing)")
    num_classes = int(cfg_json.pop("num_classes"))
    config = CriticConfig(**{k: v for k, v in cfg_json.items() if k in {f.name for f in dataclasses.fields(CriticConfig)
                                                                        if f.init}})
    critic = make_critic(config, num_classes, pretrained=False)
    load_module_state(run_dir, "critic", critic)
    return critic.to(device).freeze(), ids, cfg_json


class CriticRecognizer:
    """A trained critic as a recogniser (``.name``, ``.dim``, ``.embed(crops) -> L2-normalised features``), so
    that identification can be evaluated with the critic's own features (the paper's setting)."""

    def __init__(self, critic: Critic, image_size: int, name: str = "critic", batch_size: int = 64,
                 device: str | torch.device = "cpu") -> None:
        self.critic = critic.eval()
        self.image_size, self.name, self.batch_size = image_size, name, batch_size
        self.device = torch.device(device)
        with torch.no_grad():
            probe = torch.zeros(1, 3, image_size, image_size, device=self.device)
            self.dim = int(critic.to(self.device).features(probe).shape[1])

    @classmethod
    def from_run(cls, run_dir: str | os.PathLike, device: str | torch.device = "cpu") -> CriticRecognizer:
        """The critic of a run, named ``critic_<run>@<first 8 hex of its checkpoint's sha256>`` so that
        embedding caches keyed by recogniser name never mix two trainings."""
        from deidkit.assets import sha256_file

        critic, _, cfg = load_critic(run_dir, device)
        digest = sha256_file(Path(run_dir) / "checkpoint.pt")[:8]
        return cls(critic, int(cfg["image_size"]), name=f"critic_{Path(run_dir).name}@{digest}", device=device)

    def embed(self, crops: np.ndarray, batch_size: int | None = None, progress: bool | None = None) -> np.ndarray:
        """(N, dim) float32 unit vectors of canonical crops (N, S, S, 3) uint8 (resized to the critic's size)."""
        crops = np.asarray(crops)
        if crops.ndim != 4 or crops.shape[-1] != 3 or crops.dtype != np.uint8:
            raise ValueError(f"expected uint8 canonical crops (N, S, S, 3), got {crops.dtype} {crops.shape}")
        feats = predict(self.critic, resize_crops(crops, self.image_size), batch_size or self.batch_size,
                        self.device, what="features").astype(np.float64)
        feats /= np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
        return feats.astype(np.float32)


def critic_recognizer(profile: str = "quick", device: str | torch.device = "cpu") -> CriticRecognizer:
    """The trained critic of a :class:`CriticConfig` profile (``cache_dir()/runs/critic-<profile>``) as a
    recogniser; a clear error when it has not been trained yet (notebook 01 trains it)."""
    run_dir = runs_dir() / CriticConfig.profile(profile).name
    if not (run_dir / CHECKPOINT_NAME).is_file():
        raise FileNotFoundError(f"{run_dir}: no trained critic for profile {profile!r}; run "
                                f"notebooks/01_critic_training.ipynb or deidkit.train.critic.train_critic first")
    return CriticRecognizer.from_run(run_dir, device)


# CriticConfig lives in deidkit.configs, the checkpoint/JSON readers in deidkit.checkpoints and load_ms1m_backbone
# (pretrained weights, which the robust backbone loads too) in deidkit.recognizers; importable from here as before.
__all__ = ["CRITIC_KINDS", "CriticConfig", "CriticRecognizer", "CriticResult", "IdentityData", "accuracy",
           "critic_recognizer", "load_critic", "load_ms1m_backbone", "load_train_pool", "make_critic", "peak_rss_mb",
           "predict", "resize_crops", "resolve_device", "runs_dir", "train_critic"]
