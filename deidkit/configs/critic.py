"""The identity critic's configuration: :class:`CriticConfig` and its profiles (the robust-backbone critic that was
tried is in :mod:`deidkit.configs.experiments`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from deidkit.configs._base import SpeedOptions, resolve
from deidkit.configs.experiments import CRITIC_EXPERIMENTS

CRITIC_KINDS = ("mobilefacenet", "inception")

PRESETS: dict[str, dict[str, Any]] = {
    # Seconds, for tests and notebook smoke runs.
    "tiny": dict(kind="mobilefacenet", image_size=64, epochs=2, batch_size=8, lr=1e-2, max_identities=6,
                 precompute_features=True, feature_copies=2),
    # CPU minutes: only the linear head over the frozen pretrained embedding learns; the backbone embeds every image
    # once (plus one augmented copy) and the head trains on those features. Measured on the 393 pool identities:
    # held-out accuracy 0.987 after the first epoch, 0.990 after the fourth. FaDeNet's shipped models train against it.
    "quick": dict(kind="mobilefacenet", image_size=96, epochs=5, batch_size=32, lr=1e-2,
                  precompute_features=True, feature_copies=2),
    # The paper: Inception-v3 from scratch, batch 32, 40 epochs, Adam defaults (lr 1e-3), 224 px.
    "paper": dict(kind="inception", image_size=224, inception_input=224, epochs=40, batch_size=32,
                  lr=1e-3, amp=True, channels_last=True, workers=4),
}

#: Every name :meth:`CriticConfig.profile` accepts (the tried ones resolved from the experiments module).
CRITIC_PROFILES = ("tiny", "quick", *CRITIC_EXPERIMENTS, "paper")


@dataclass
class CriticConfig(SpeedOptions):
    """One critic experiment. Build with :meth:`profile` (``tiny``, ``quick``, ``paper``) plus overrides."""

    profile_name: str = "quick"
    kind: str = "mobilefacenet"
    image_size: int = 96  # side of the canonical crops the critic is trained on
    inception_input: int = 224  # Inception-v3 resizes its input to this side
    epochs: int = 6
    batch_size: int = 32
    lr: float = 1e-2
    weight_decay: float = 0.0
    augment: bool = True
    # For a frozen-backbone critic: embed each training image once (plus feature_copies - 1 augmented copies)
    # and train the head on those features, instead of running the backbone at every step.
    precompute_features: bool = False
    feature_copies: int = 3
    max_identities: int | None = None  # None: every critic identity of the training pool
    # > 0 (MobileFaceNet critic only; not in the paper): the backbone is first made slightly robust, an L-inf
    # perturbation of this many 8-bit levels (see deidkit.train.robust), for robust_epochs over the training pool
    # (0 = off for all four, so runs saved before these fields existed keep their configuration)
    robust_eps: float = 0.0
    robust_epochs: int = 0
    robust_pgd_steps: int = 0
    robust_lr: float = 0.0
    seed: int = 0
    device: str = "auto"
    workers: int = 0  # > 0: a torch DataLoader with this many workers (and pinned memory on CUDA) augments
    run_name: str = ""  # default: critic-<profile_name>

    @classmethod
    def profile(cls, name: str = "quick", **overrides: Any) -> CriticConfig:
        """The named profile with ``overrides`` applied (papermill passes them as parameters)."""
        if name not in CRITIC_PROFILES:
            raise ValueError(f"unknown critic profile {name!r}; choose from {sorted(CRITIC_PROFILES)}")
        unknown = set(overrides) - {f.name for f in dataclasses.fields(cls) if f.init}
        if unknown:
            raise ValueError(f"unknown CriticConfig fields {sorted(unknown)}")
        cfg = cls(profile_name=name, **{**resolve(name, PRESETS, CRITIC_EXPERIMENTS), **overrides})
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if self.kind not in CRITIC_KINDS:
            raise ValueError(f"critic kind must be one of {CRITIC_KINDS}, got {self.kind!r}")
        if self.image_size < 32:
            raise ValueError(f"image_size {self.image_size} is too small for a face crop (>= 32)")
        if self.epochs < 0 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError(f"bad schedule: epochs={self.epochs}, batch_size={self.batch_size}, lr={self.lr}")
        if self.precompute_features and self.kind != "mobilefacenet":
            raise ValueError("precompute_features needs a frozen backbone: only the 'mobilefacenet' critic has one")
        if self.feature_copies < 1:
            raise ValueError(f"feature_copies must be >= 1, got {self.feature_copies}")
        if self.robust_eps < 0 or (self.robust_eps and self.kind != "mobilefacenet"):
            raise ValueError(f"robust_eps must be >= 0 and needs the 'mobilefacenet' critic, got {self.robust_eps}")
        if self.robust_eps and (self.robust_epochs < 1 or self.robust_pgd_steps < 1 or self.robust_lr <= 0):
            raise ValueError(f"bad robust schedule: robust_epochs={self.robust_epochs}, "
                             f"robust_pgd_steps={self.robust_pgd_steps}, robust_lr={self.robust_lr}")

    @property
    def name(self) -> str:
        return self.run_name or f"critic-{self.profile_name}"

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}
