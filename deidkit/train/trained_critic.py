"""A critic network outside its training: built for a configuration, read back from its run folder, its logits
and features on crops, and a trained critic as a recogniser (the paper evaluates identification with the
critic's own features)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from deidkit.checkpoints import CHECKPOINT_NAME, load_module_state, read_json, runs_dir
from deidkit.configs import CriticConfig
from deidkit.data.images import resize_crops, to_model_range
from deidkit.models.critic import Critic, build_critic
from deidkit.recognizers import load_ms1m_backbone


def make_critic(config: CriticConfig, num_classes: int, pretrained: bool = True,
                backbone: nn.Module | None = None) -> Critic:
    """The critic network of ``config``. ``pretrained=False`` builds the MobileFaceNet critic's backbone
    without reading its weights (for loading a whole trained critic from a checkpoint); ``backbone`` gives it
    (e.g. the robust copy of :func:`deidkit.train.robust.train_robust_backbone`)."""
    if config.kind == "mobilefacenet" and backbone is None:
        from deidkit.models.mobilefacenet import MobileFaceNetMS1M

        backbone = load_ms1m_backbone() if pretrained else MobileFaceNetMS1M().eval()
    return build_critic(config.kind, num_classes, backbone=backbone, input_size=config.inception_input)



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

