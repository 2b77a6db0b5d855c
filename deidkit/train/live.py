"""Training and inference of the live de-identification network (Gafni, Wolf, Taigman, ICCV 2019).

Data: the canonical crops of every image of the ``lfw_train_pool`` manifest (labels unused). The network sees the
central ``crop_fraction`` of a canonical crop, resized to ``size`` (the canonical crop is loose, with background;
0.8 keeps forehead and chin). Each batch: a random horizontal flip (identity-preserving), then a random scale,
rotation and elastic distortion of the *input* only; the undistorted image is the reconstruction target and the
identity target (its recogniser representation conditions the decoder and anchors the perceptual terms).

The recogniser for conditioning and perceptual features is the frozen MobileFaceNet trained on MS1M
(``mobilefacenet_ms1m``): the only pretrained recogniser of the kit with a differentiable torch path. The paper
used a ResNet-50 trained on VGGFace2, which is not available offline. The kit's final identity evaluation uses
dlib and the CASIA MobileFaceNet, never this one, so the attack is not evaluated by the network it was trained
against.

Lambda: the paper raises the weight of the repelling term in four steps from 1e-7 to 2e-6 (1e-7, 5e-7, 1e-6,
2e-6). Those values weigh an unnormalised ResNet-50 representation (2048-d) and do not transfer: here the
repelling term is the Euclidean distance between L2-normalised 128-d embeddings (in [0, 2]), the attracting
terms are mean absolute differences of MobileFaceNet activations. We keep the paper's schedule *shape* (ratios
1 : 5 : 10 : 20 over four equal parts of training) and set its top value ``lambda_max`` on our scale; the log
records every term, so the balance actually reached can be read off (notebook 03).

Lambda's top value was set with :func:`lambda_break_even` (notebook 03, section 1): between photos of the same
person and photos of different people the attracting terms grow by ~0.3 and the representation distance by ~0.6,
so a change of identity pays for itself inside the perceptual group from lambda ~0.5; ``lambda_max = 1.0`` is
twice that, reached in the last stage, and the first stage (0.05) is almost pure reconstruction.

Warm-up (``warmup_epochs``, a CPU economy, 0 in the ``paper`` profile): the first epochs train without the
perceptual term, so no recogniser pass is needed (the conditioning vectors of the training images are computed
once and cached); the four lambda stages follow with the full loss. On a CPU the recogniser's forward and
backward passes cost ~5 times the generator's, so this buys the generator several times more steps to learn to
reconstruct before identity is pushed.

Profiles: ``tiny`` (tests, seconds), ``quick`` (CPU, ~20 minutes on 2 free cores), ``standard`` (the shipped
model: CPU, about 1.5 hours on one core, lambda up to 8), ``paper`` (GPU; the paper's 128 input, widths, batch 32,
no warm-up).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from deidkit.assets import cache_dir
from deidkit.data.templates import ARCFACE_112, crop_to_template
from deidkit.deidentifiers import register_trained
from deidkit.losses.live import (
    LiveLossWeights,
    blend,
    generator_loss,
    landmark_loss,
    lsgan_discriminator_loss,
    mixup,
    perceptual_terms,
    sample_beta,
)
from deidkit.models.live import LiveDiscriminator, LiveGenerator, RecognizerFeatures
from deidkit.train.loop import TrainingRun, load_checkpoint

#: The paper's lambda steps (1e-7, 5e-7, 1e-6, 2e-6) as fractions of the last one.
PAPER_LAMBDA_STEPS = (1e-7, 5e-7, 1e-6, 2e-6)
LAMBDA_SHAPE = tuple(v / PAPER_LAMBDA_STEPS[-1] for v in PAPER_LAMBDA_STEPS)
PROFILES = ("tiny", "quick", "standard", "finetune", "paper")
STAGES_DIR = "stages"


@dataclass
class LiveConfig:
    """One experiment of the live network. Build with :meth:`profile` (``tiny``, ``quick``, ``paper``)."""

    profile_name: str = "quick"
    # network geometry
    size: int = 64
    crop_fraction: float = 0.8
    stem_channels: int = 16
    enc_channels: tuple[int, ...] = (32, 64, 128, 256, 256)
    bottleneck: int = 512
    dec_channels: int = 256
    skip_channels: int = 1
    disc_channels: int = 32
    # recogniser (conditioning and perceptual features)
    recognizer: str = "mobilefacenet_ms1m"
    input_layers: tuple[str, ...] = ("dw_conv", "stage1")
    target_layers: tuple[str, ...] = ("stage2",)
    # loss
    weights: dict[str, float] = field(default_factory=lambda: dataclasses.asdict(LiveLossWeights()))
    lambda_max: float = 1.0
    lambda_shape: tuple[float, ...] = LAMBDA_SHAPE
    # data and augmentation
    manifest: str = "lfw_train_pool"
    max_images: int | None = None
    aug_scale: float = 0.08
    aug_rotate_deg: float = 10.0
    aug_elastic: float = 0.03
    # optimisation (the paper's Adam settings)
    batch_size: int = 32
    epochs: int = 4
    epoch_steps: int | None = None
    warmup_epochs: int = 0
    lr: float = 1e-4
    betas: tuple[float, float] = (0.5, 0.99)
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    # fine-tuning: a generator file ({"state_dict": ...}, e.g. another run's stages/stage1.pt; relative paths are
    # inside the kit's cache) that initialises the generator of a fresh run (the discriminator starts fresh);
    # ignored when the run resumes
    init_from: str | None = None

    @classmethod
    def profile(cls, name: str, **overrides: Any) -> LiveConfig:
        """The named profile with ``overrides`` applied (papermill passes them as parameters)."""
        presets: dict[str, dict[str, Any]] = {
            "tiny": dict(size=64, stem_channels=4, enc_channels=(8, 8, 16, 16, 16), bottleneck=32, dec_channels=32,
                         disc_channels=8, max_images=16, batch_size=4, epochs=5, epoch_steps=1, warmup_epochs=1),
            # CPU (about 20 minutes on 2 free cores): batch 16, 2,000 training images; 12 warm-up epochs of 80
            # steps without the perceptual term (cheap: no recogniser pass), then one epoch per lambda stage
            # (the recogniser's forward and backward passes dominate those).
            "quick": dict(batch_size=16, dec_channels=512, max_images=2000, epoch_steps=80, warmup_epochs=12,
                          epochs=16),
            # CPU hours (the shipped model): every training-pool image, 16 warm-up epochs of 100 steps, then 20
            # epochs of the full loss (5 per lambda stage) with lambda raised to 8 (stages 0.4, 2, 4, 8): the
            # quick ablation's lambda 4 moved identity on an untrained-against recogniser while keeping SSIM
            # near 0.9, and a longer schedule buys back image quality. Fixed before evaluation, no selection.
            "standard": dict(batch_size=16, dec_channels=512, max_images=None, epoch_steps=100, warmup_epochs=16,
                             epochs=36, lambda_max=8.0),
            # The shipped live model: the standard run's lambda-2 generator (stages/stage1.pt) trained on at
            # lambda 2.5 for 4 x 50 steps, a stage snapshot every 50 steps (then `deidkit select` on the selection
            # identities, MS1M only). Lambda 2 left CASIA Rank-1 at 0.167 on lfw_57x8, lambda 4 dropped SSIM to
            # 0.84; the first 50 steps at 2.5 moved MS1M's cosine on the selection set from 0.195 to 0.098 at SSIM
            # 0.886 (200 steps in one go: 0.116 at 0.883, 400 steps: 0.090 at 0.865).
            "finetune": dict(batch_size=16, dec_channels=512, max_images=None, epoch_steps=50, warmup_epochs=0,
                             epochs=4, lambda_max=2.5, lambda_shape=(1.0, 1.0, 1.0, 1.0),
                             init_from="runs/live-standard/stages/stage1.pt"),
            "paper": dict(size=128, stem_channels=32, enc_channels=(64, 128, 256, 512, 512), bottleneck=1024,
                          dec_channels=512, disc_channels=64, epochs=40),
        }
        if name not in presets:
            raise ValueError(f"unknown profile {name!r}; choose one of {PROFILES}")
        cfg = cls(profile_name=name, **presets[name])
        for k, v in overrides.items():
            if not hasattr(cfg, k):
                raise ValueError(f"LiveConfig has no field {k!r}")
            setattr(cfg, k, tuple(v) if isinstance(v, list) else v)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if self.size % 32 or self.size < 64:
            raise ValueError(f"size must be a multiple of 32 and at least 64, got {self.size}")
        if not 0.3 <= self.crop_fraction <= 1.0:
            raise ValueError(f"crop_fraction must lie in [0.3, 1], got {self.crop_fraction}")
        if not 0 <= self.warmup_epochs < self.epochs:
            raise ValueError(f"warmup_epochs must lie in [0, epochs), got {self.warmup_epochs} of {self.epochs}")
        if len(self.lambda_shape) != 4 or any(b < a for a, b in zip(self.lambda_shape, self.lambda_shape[1:])):
            raise ValueError(f"lambda_shape must be four non-decreasing steps, got {self.lambda_shape}")

    @property
    def canonical_size(self) -> int:
        """Side of the canonical crop whose central ``crop_fraction`` is exactly ``size`` pixels (rounded)."""
        return int(round(self.size / self.crop_fraction))

    def lambda_at(self, step: int, total_steps: int, warmup_steps: int = 0) -> tuple[int, float]:
        """(stage, lambda) at ``step`` of ``total_steps``: stage -1 (lambda 0, no perceptual term) during the
        first ``warmup_steps``, then stages 0-3 in four equal parts of the rest."""
        if step < warmup_steps:
            return -1, 0.0
        stage = min(3, (4 * (step - warmup_steps)) // max(total_steps - warmup_steps, 1))
        return stage, self.lambda_max * self.lambda_shape[stage]

    def loss_weights(self) -> LiveLossWeights:
        return LiveLossWeights(**self.weights)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def default_run_dir(profile: str) -> Path:
    """Where a profile's run lives by default: ``<cache>/runs/live-<profile>`` (trained models stay out of git)."""
    return cache_dir() / "runs" / f"live-{profile}"


# ------------------------------------------------------------------------------------------------- models


def build_generator(cfg: LiveConfig, cond_dim: int = 128) -> LiveGenerator:
    return LiveGenerator(size=cfg.size, stem_channels=cfg.stem_channels, enc_channels=cfg.enc_channels,
                         bottleneck=cfg.bottleneck, cond_dim=cond_dim, dec_channels=cfg.dec_channels,
                         skip_channels=cfg.skip_channels)


def build_discriminator(cfg: LiveConfig) -> LiveDiscriminator:
    return LiveDiscriminator(channels=cfg.disc_channels)


def network_to_canonical(size: int, crop_fraction: float, canonical: int) -> np.ndarray:
    """2x3 pixel matrix from the network's crop (side ``size``) to a canonical crop of side ``canonical``."""
    k = canonical * crop_fraction / size
    off = canonical * (1.0 - crop_fraction) / 2.0
    # pixel centres: p_can + 0.5 = (p_net + 0.5) * k + off
    return np.array([[k, 0.0, 0.5 * k + off - 0.5], [0.0, k, 0.5 * k + off - 0.5]])


def _compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The 2x3 matrix applying ``b`` then ``a``."""
    return (np.vstack([a, [0, 0, 1]]) @ np.vstack([b, [0, 0, 1]]))[:2]


def network_to_arcface(cfg: LiveConfig) -> np.ndarray:
    """2x3 pixel matrix from the network's crop to the ArcFace 112 template crop."""
    ref = 224
    return _compose(crop_to_template(ref, ARCFACE_112), network_to_canonical(cfg.size, cfg.crop_fraction, ref))


def build_features(cfg: LiveConfig, backbone: nn.Module | None = None) -> RecognizerFeatures:
    """The frozen recogniser read from the network's crops. ``backbone`` (a module with ``forward_features``
    returning named layers and ``embedding``) replaces the pretrained MobileFaceNet, e.g. in tests."""
    if backbone is None:
        if cfg.recognizer != "mobilefacenet_ms1m":
            raise ValueError(f"only 'mobilefacenet_ms1m' offers differentiable features, got {cfg.recognizer!r}")
        from deidkit.recognizers import get_recognizer

        backbone = get_recognizer("mobilefacenet_ms1m").network
    matrix = torch.from_numpy(network_to_arcface(cfg))
    return RecognizerFeatures(backbone, matrix, crop_size=cfg.size)


# --------------------------------------------------------------------------------------------------- data


def load_training_images(cfg: LiveConfig, chunk: int = 512) -> np.ndarray:
    """Canonical crops (N, C, C, 3) uint8 of the training manifest at the config's canonical size
    (``C = size / crop_fraction``), aligned once and cached by :func:`deidkit.data.lfw.aligned_crops`."""
    from deidkit.data.lfw import aligned_crops, load_manifest

    paths = list(load_manifest(cfg.manifest)["path"])
    if cfg.max_images is not None and cfg.max_images < len(paths):
        rng = np.random.default_rng(cfg.seed)
        paths = [paths[i] for i in np.sort(rng.choice(len(paths), cfg.max_images, replace=False))]
    c = cfg.canonical_size
    out = np.empty((len(paths), c, c, 3), dtype=np.uint8)
    for s in tqdm(range(0, len(paths), chunk), desc="training crops", disable=len(paths) <= chunk):
        crops = aligned_crops(paths[s:s + chunk], size=224)
        out[s:s + len(crops)] = [cv2.resize(x, (c, c), interpolation=cv2.INTER_AREA) for x in crops]
    return out


def to_tensor(batch: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float (N, 3, H, W) in [-1, 1] -> uint8 (N, H, W, 3)."""
    return ((x.detach().clamp(-1, 1) + 1.0) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def center_grid(n: int, size: int, crop_fraction: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """Sampling grid of the central ``crop_fraction`` of an image, at ``size`` x ``size``."""
    theta = torch.tensor([[crop_fraction, 0.0, 0.0], [0.0, crop_fraction, 0.0]], device=device)
    return F.affine_grid(theta.expand(n, 2, 3), [n, 3, size, size], align_corners=False)


def distort_grid(base: torch.Tensor, scale: float, rotate_deg: float, elastic: float,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Random scale, rotation (about the centre) and a smooth elastic displacement applied to a sampling grid.

    ``elastic`` is the displacement's standard deviation as a fraction of the image half-width; the field is
    a 4x4 grid of Gaussian offsets upsampled bicubically, so it bends features rather than adding noise."""
    n, h, w, _ = base.shape
    dev = base.device
    s = 1.0 + (torch.rand(n, generator=generator) * 2 - 1) * scale
    a = torch.deg2rad((torch.rand(n, generator=generator) * 2 - 1) * rotate_deg)
    rot = torch.stack([torch.stack([torch.cos(a), -torch.sin(a)], 1), torch.stack([torch.sin(a), torch.cos(a)], 1)], 1)
    rot = (rot / s.view(n, 1, 1)).to(dev)  # zooming in by s = sampling a region 1/s as large
    grid = torch.einsum("nij,nhwj->nhwi", rot, base)
    if elastic > 0:
        field = torch.randn(n, 2, 4, 4, generator=generator) * elastic
        field = F.interpolate(field, size=(h, w), mode="bicubic", align_corners=True).to(dev)
        grid = grid + field.permute(0, 2, 3, 1)
    return grid


def make_batch(images: torch.Tensor, cfg: LiveConfig, generator: torch.Generator | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(target x, distorted input x_in, mirrored flags) at the network's size from canonical crops in [-1, 1]."""
    n = images.shape[0]
    flip = torch.rand(n, generator=generator) < 0.5
    images = torch.where(flip.view(n, 1, 1, 1).to(images.device), images.flip(3), images)
    base = center_grid(n, cfg.size, cfg.crop_fraction, images.device)
    x = F.grid_sample(images, base, mode="bilinear", padding_mode="reflection", align_corners=False)
    grid = distort_grid(base, cfg.aug_scale, cfg.aug_rotate_deg, cfg.aug_elastic, generator)
    x_in = F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return x, x_in, flip


class _Batches:
    """One epoch of shuffled index batches (drop_last: every step sees a full batch). With ``steps``, an epoch
    is that many batches, walking through one long shuffled stream of the data (so short epochs still visit
    every image over the run)."""

    def __init__(self, n: int, batch_size: int, seed: int, epoch: int, steps: int | None = None) -> None:
        if n < batch_size:
            raise ValueError(f"{n} training images is fewer than one batch of {batch_size}")
        self.batch_size = batch_size
        if steps is None:
            self.order = np.random.default_rng([seed, epoch]).permutation(n)
            self.steps = n // batch_size
        else:
            start, stop = epoch * steps * batch_size, (epoch + 1) * steps * batch_size
            passes = range(start // n, (stop - 1) // n + 1)
            stream = np.concatenate([np.random.default_rng([seed, p]).permutation(n) for p in passes])
            offset = start - passes[0] * n
            self.order = stream[offset:offset + steps * batch_size]
            self.steps = steps

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self.order[i * self.batch_size:(i + 1) * self.batch_size]


def lambda_break_even(cfg: LiveConfig, features: RecognizerFeatures | None = None, n_pairs: int = 48,
                      seed: int = 0) -> dict[str, float]:
    """Calibrate lambda to the recogniser: the perceptual cost and the representation gain of a change of identity.

    On ``n_pairs`` identities of the training manifest with two or more images, compares pairs of photos of the
    *same* person with pairs of *different* people: ``d_attract`` is how much the attracting terms grow
    (attract_input + attract_target) and ``d_repel`` how much the representation distance grows. Their ratio
    ``break_even`` is the lambda at which a change of identity pays for itself inside the perceptual group; the
    paper's lambda does not transfer to another recogniser, this ratio does.
    """
    from deidkit.data.lfw import aligned_crops, load_manifest

    features = features or build_features(cfg)
    m = load_manifest(cfg.manifest)
    counts = m.groupby("identity")["path"].transform("size")
    multi = m[counts >= 2].sort_values("path")
    idents = sorted(multi["identity"].unique())
    rng = np.random.default_rng(seed)
    pick = sorted(rng.choice(idents, size=min(n_pairs, len(idents)), replace=False).tolist())
    first = [multi[multi["identity"] == i]["path"].iloc[0] for i in pick]
    second = [multi[multi["identity"] == i]["path"].iloc[1] for i in pick]

    def net_crops(paths: list[str]) -> torch.Tensor:
        c = cfg.canonical_size
        crops = np.stack([cv2.resize(x, (c, c), interpolation=cv2.INTER_AREA) for x in aligned_crops(paths)])
        x = to_tensor(crops)
        return F.grid_sample(x, center_grid(len(x), cfg.size, cfg.crop_fraction), align_corners=False)

    with torch.no_grad():
        fa, fb = features(net_crops(first)), features(net_crops(second))
        fc = {k: v.roll(1, 0) for k, v in fb.items()}  # the second photo of another person

    def terms(f1: dict, f2: dict) -> tuple[float, float]:
        att = sum(float((f1[k] - f2[k]).abs().mean()) for k in (*cfg.input_layers, *cfg.target_layers))
        return att, float((f1["embedding"] - f2["embedding"]).norm(dim=1).mean())

    (att_same, d_same), (att_diff, d_diff) = terms(fa, fb), terms(fa, fc)
    d_attract, d_repel = att_diff - att_same, d_diff - d_same
    return {"attract_same": att_same, "attract_diff": att_diff, "repr_dist_same": d_same,
            "repr_dist_diff": d_diff, "d_attract": d_attract, "d_repel": d_repel,
            "break_even": d_attract / d_repel if d_repel > 0 else float("nan"), "pairs": float(len(pick))}


# ----------------------------------------------------------------------------------------------- training


class LiveTrainer:
    """Generator, discriminator, frozen recogniser and their optimisers; :meth:`step` trains on one batch."""

    def __init__(self, cfg: LiveConfig, features: RecognizerFeatures | None = None,
                 device: torch.device | str | None = None) -> None:
        self.cfg = cfg
        self.device = resolve_device(cfg.device) if device is None else torch.device(device)
        self.features = (features or build_features(cfg)).to(self.device)
        with torch.no_grad():
            dim = self.features(torch.zeros(1, 3, cfg.size, cfg.size, device=self.device))["embedding"].shape[1]
        self.G = build_generator(cfg, cond_dim=dim).to(self.device)
        self.D = build_discriminator(cfg).to(self.device)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.lr, betas=tuple(cfg.betas))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.lr, betas=tuple(cfg.betas))
        self.weights = cfg.loss_weights()
        # the landmark term's frozen regressor (only when that term is on: the paper has no such term)
        self.landmarks = None
        if self.weights.landmarks > 0:
            from deidkit.recognizers import load_five_landmarks

            self.landmarks = load_five_landmarks().to(self.device)
        self.total_steps = 1
        self.warmup_steps = 0

    def step(self, x: torch.Tensor, x_in: torch.Tensor, global_step: int,
             target_repr: torch.Tensor | None = None) -> dict[str, float]:
        """One discriminator and one generator update on targets ``x`` and distorted inputs ``x_in``.

        During warm-up (``global_step < warmup_steps``) the perceptual term is off and the recogniser is not run:
        the conditioning comes from ``target_repr`` (the precomputed representations of ``x``)."""
        cfg = self.cfg
        self.G.train()
        self.D.train()
        n = x.shape[0]
        stage, lam = cfg.lambda_at(global_step, self.total_steps, self.warmup_steps)
        warm = stage < 0
        if warm:
            if target_repr is None:
                raise ValueError("warm-up steps need the precomputed target representations")
            fx, t = None, target_repr.to(self.device)
        else:
            with torch.no_grad():
                fx = self.features(x)  # the undistorted image: input anchor and identity target
            t = fx["embedding"]
        raw, mask = self.G(x_in, t)
        masked = blend(raw, mask, x_in)

        # Discriminator: LSGAN with mixup; a mix's label is its share of real pixels.
        beta_d = sample_beta(n, device=self.device)
        self.D.requires_grad_(True)
        d_loss = lsgan_discriminator_loss(self.D(mixup(x, masked.detach(), beta_d)), beta_d)
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()

        # Generator.
        self.D.requires_grad_(False)
        beta_g = sample_beta(n, device=self.device)
        d_mixed = self.D(mixup(x, masked, beta_g))
        if warm:
            g_loss, terms = generator_loss(x, x_in, raw, mask, d_mixed, None, lam, self.weights)
            # same log columns in every phase (the loop refuses changing keys); 0 = not computed
            terms.update({"p_attract_input": 0.0, "p_attract_target": 0.0, "p_repel": 0.0})
            cos = torch.zeros(())
        else:
            fo = self.features(masked)
            pterms = perceptual_terms(fo, fx, fx, cfg.input_layers, cfg.target_layers)
            g_loss, terms = generator_loss(x, x_in, raw, mask, d_mixed, pterms, lam, self.weights)
            with torch.no_grad():
                cos = (fo["embedding"] * t).sum(1).mean()
        terms["landmarks"] = 0.0  # same log columns with the term off
        if self.landmarks is not None:
            with torch.no_grad():
                target_points = self.landmarks(x)
            lmk = landmark_loss(self.landmarks(masked), target_points)
            g_loss = g_loss + self.weights.landmarks * lmk
            terms.update(landmarks=float(lmk.detach()), g_total=float(g_loss.detach()))
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_g.step()
        self.D.requires_grad_(True)
        terms = {k: terms[k] for k in ("recon", "edge", "mask_l1", "mask_tv", "g_adv", "p_attract_input",
                                       "p_attract_target", "p_repel", "landmarks", "g_total")}
        return {**terms, "d_loss": float(d_loss.detach()), "lambda": lam, "stage": float(stage),
                "cos_to_target": float(cos), "mask_mean": float(mask.detach().mean())}


@torch.no_grad()
def target_representations(features: RecognizerFeatures, images: torch.Tensor, cfg: LiveConfig,
                           batch_size: int = 64, show_progress: bool = True) -> torch.Tensor:
    """Representations (N, 2, dim) of the training targets: the undistorted central crop, as is and mirrored
    (the two targets :func:`make_batch` can produce). Used by the warm-up, which runs no recogniser."""
    out = []
    for s in tqdm(range(0, len(images), batch_size), desc="target representations", disable=not show_progress):
        x = images_to_float(images[s:s + batch_size]).to(next(features.buffers()).device)
        x = F.grid_sample(x, center_grid(len(x), cfg.size, cfg.crop_fraction, x.device), mode="bilinear",
                          padding_mode="reflection", align_corners=False)
        out.append(torch.stack([features.embed(x), features.embed(x.flip(3))], 1).cpu())
    return torch.cat(out)


def images_to_float(batch: torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W, 3) tensor -> float (N, 3, H, W) in [-1, 1]."""
    return batch.permute(0, 3, 1, 2).float() / 127.5 - 1.0


def train_live(cfg: LiveConfig, run_dir: str | os.PathLike | None = None, images: np.ndarray | None = None,
               features: RecognizerFeatures | None = None, show_progress: bool = True,
               until_epoch: int | None = None, restart: bool = False) -> tuple[LiveTrainer, Any]:
    """Train (or resume, or just load when finished) the live network; returns (trainer, per-step log).

    The first ``cfg.warmup_epochs`` epochs train without the perceptual term (reconstruction, edges, mask and GAN
    only, conditioned on precomputed target representations, cached in ``run_dir/targets.pt``); the remaining
    epochs run the full loss with lambda raised in four equal stages. At the end of each stage the generator is
    saved to ``run_dir/stages/stage<k>.pt`` (for the lambda figure).

    ``until_epoch`` stops after that many epochs (the run resumes from there on the next call): long runs can be
    done in short sessions without changing the configuration or the lambda schedule. ``restart`` deletes the run
    folder first (for throw-away runs such as the ``tiny`` profile's). ``images``: canonical crops (N, C, C, 3)
    uint8 replacing the training manifest (e.g. in tests)."""
    cfg.validate()
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(cfg.profile_name)
    if restart and (run_dir / "config.json").is_file():
        import shutil

        shutil.rmtree(run_dir)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    trainer = LiveTrainer(cfg, features)
    if cfg.init_from:
        # a resumed run's checkpoint overwrites this in fit()
        trainer.G.load_state_dict(init_state(cfg.init_from))
    imgs = load_training_images(cfg) if images is None else np.asarray(images)
    if imgs.ndim != 4 or imgs.shape[-1] != 3 or imgs.dtype != np.uint8:
        raise ValueError(f"training images must be uint8 (N, C, C, 3), got {imgs.dtype} {imgs.shape}")
    if imgs.shape[1] != cfg.canonical_size:
        imgs = np.stack([cv2.resize(x, (cfg.canonical_size,) * 2, interpolation=cv2.INTER_AREA) for x in imgs])
    data = torch.from_numpy(np.ascontiguousarray(imgs))  # uint8 on the CPU; batches are converted and moved
    steps_per_epoch = len(_Batches(len(data), cfg.batch_size, cfg.seed, 0, cfg.epoch_steps))
    trainer.total_steps = steps_per_epoch * cfg.epochs
    trainer.warmup_steps = steps_per_epoch * cfg.warmup_epochs
    run_dir.mkdir(parents=True, exist_ok=True)
    targets = None
    if cfg.warmup_epochs > 0:
        tpath = run_dir / "targets.pt"
        if tpath.is_file():
            targets = torch.load(tpath, map_location="cpu", weights_only=True)
        if targets is None or targets.shape[0] != len(data):
            targets = target_representations(trainer.features, data, cfg, show_progress=show_progress)
            _save_atomic(targets, tpath)
    # the last step of each lambda stage (a very short run may end several stages on one step)
    boundaries: dict[int, list[int]] = {}
    full = trainer.total_steps - trainer.warmup_steps
    for k in range(4):
        boundaries.setdefault(trainer.warmup_steps + math.ceil((k + 1) * full / 4) - 1, []).append(k)
    (run_dir / STAGES_DIR).mkdir(parents=True, exist_ok=True)

    run = TrainingRun(run_dir, {"generator": trainer.G, "discriminator": trainer.D},
                      {"generator": trainer.opt_g, "discriminator": trainer.opt_d}, seed=cfg.seed,
                      config=dataclasses.asdict(cfg), show_progress=show_progress)

    def step(idx: np.ndarray, epoch: int, global_step: int) -> dict[str, float]:
        index = torch.from_numpy(idx)
        x, x_in, flip = make_batch(images_to_float(data[index]).to(trainer.device), cfg)
        t = None if targets is None else targets[index, flip.long()]
        terms = trainer.step(x, x_in, global_step, t)
        for k in boundaries.get(global_step, []):
            _save_atomic({"state_dict": trainer.G.state_dict(), "stage": k,
                          "lambda": cfg.lambda_max * cfg.lambda_shape[k], "global_step": global_step},
                         run_dir / STAGES_DIR / f"stage{k}.pt")
        return terms

    epochs = cfg.epochs if until_epoch is None else min(cfg.epochs, until_epoch)
    log = run.fit(lambda epoch: _Batches(len(data), cfg.batch_size, cfg.seed, epoch, cfg.epoch_steps), step,
                  epochs, desc=f"live-{cfg.profile_name}")
    return trainer, log


def init_state(init_from: str) -> dict[str, torch.Tensor]:
    """The generator state ``init_from`` names: ``pretrained:<name>`` (a model shipped in ``deidkit/weights``,
    stored as fp16), or a file holding ``{"state_dict": ...}`` (e.g. another run's ``stages/stage1.pt``; relative
    paths are inside the kit's cache). Returned in float32."""
    if init_from.startswith("pretrained:"):
        from deidkit.pretrained import load_state

        _, state = load_state(init_from.split(":", 1)[1])
    else:
        init = Path(init_from).expanduser()
        init = init if init.is_absolute() else cache_dir() / init  # profiles name it inside the kit's cache
        if not init.is_file():
            raise FileNotFoundError(f"{init}: init_from generator file not found")
        state = torch.load(init, map_location="cpu", weights_only=True)["state_dict"]
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def _save_atomic(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------- inference


class LiveDeidentifier:
    """The trained network as a kit de-identifier: canonical crops in, de-identified canonical crops out.

    The target representation is the face's own by default (the paper's setting for de-identification); pass
    ``targets`` (crops of any person) to condition on another identity. ``strength`` in [0, 1] scales the blending
    mask: 0 returns the input, 1 the network's full output; in between, pixels are interpolated.
    :meth:`deidentify_with_mask` gives the raw output and the per-pixel blending weight, which the video
    pipeline warps back into the frame.

    ``colour_match`` (default on) shifts each colour channel of the raw output so that its mean inside the
    blending mask equals the input's there: the network's output keeps the identity change but not a colour cast
    (the ``quick`` model tints faces yellow-orange on footage unlike LFW); skin tone and lighting stay the
    input's.
    """

    def __init__(self, generator: LiveGenerator, features: RecognizerFeatures, crop_fraction: float,
                 name: str = "live", strength: float = 1.0, device: torch.device | str = "cpu",
                 colour_match: bool = True) -> None:
        if not name.startswith("live"):
            raise ValueError(f"live de-identifier names start with 'live', got {name!r}")
        self.device = torch.device(device)
        self.generator = generator.to(self.device).eval()
        self.features = features.to(self.device).eval()
        self.crop_fraction = crop_fraction
        self.size = generator.size
        self._name = name
        self.strength = strength
        self.colour_match = colour_match

    @property
    def strength(self) -> float:
        return self._strength

    @strength.setter
    def strength(self, value: float) -> None:
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"strength must lie in [0, 1], got {value}")
        self._strength = float(value)

    @property
    def name(self) -> str:
        return self._name if self._strength == 1.0 else f"{self._name}_s{self._strength:g}"

    @property
    def crop_size(self) -> int:
        """The canonical crop side the network uses without resampling (the video pipeline aligns to it)."""
        return int(round(self.size / self.crop_fraction))

    def _network_input(self, batch: np.ndarray) -> torch.Tensor:
        if batch.shape[1] > 1.5 * self.crop_size:
            # shrink with area averaging first: bilinear sampling alone would alias large crops
            batch = np.stack([cv2.resize(b, (self.crop_size, self.crop_size), interpolation=cv2.INTER_AREA)
                              for b in batch])
        x = to_tensor(batch).to(self.device)
        grid = center_grid(x.shape[0], self.size, self.crop_fraction, self.device)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    @torch.no_grad()
    def target_representation(self, crops: np.ndarray) -> torch.Tensor:
        """The conditioning vectors (N, dim) of canonical crops (of any person)."""
        return self.features.embed(self._network_input(_check(crops)))

    @torch.no_grad()
    def deidentify_with_mask(self, batch: np.ndarray, targets: torch.Tensor | np.ndarray | None = None
                             ) -> tuple[np.ndarray, np.ndarray]:
        """(raw output pasted into the canonical crops, uint8 (N, C, C, 3); blending weight float32 (N, C, C)).

        ``targets``: conditioning vectors (1 or N, dim), or canonical crops (1 or N, ., ., 3) uint8 of the target
        person; None conditions each face on itself."""
        batch = _check(batch)
        n, c = batch.shape[0], batch.shape[1]
        x_in = self._network_input(batch)
        if targets is None:
            t = self.features.embed(x_in)
        elif isinstance(targets, np.ndarray) and targets.ndim == 4:
            t = self.target_representation(targets)
        else:
            t = torch.as_tensor(targets, dtype=torch.float32, device=self.device)
        if t.shape[0] == 1 and n > 1:
            t = t.expand(n, -1)
        raw, mask = self.generator(x_in, t)
        if self.colour_match:
            raw = match_colour(raw, x_in, mask)
        raw_np = to_uint8(raw)
        mask_np = mask[:, 0].cpu().numpy().astype(np.float32)
        m = network_to_canonical(self.size, self.crop_fraction, c)
        out = batch.copy()
        alpha = np.zeros((n, c, c), dtype=np.float32)
        for i in range(n):
            # Outside the network's region the raw image is the input and the weight 0.
            warped = cv2.warpAffine(raw_np[i], m, (c, c), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            a = cv2.warpAffine(mask_np[i], m, (c, c), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                               borderValue=0)
            region = a > 0
            out[i][region] = warped[region]
            alpha[i] = a * self._strength
        return out, alpha

    def deidentify(self, batch: np.ndarray, targets: torch.Tensor | np.ndarray | None = None) -> np.ndarray:
        """De-identified canonical crops: the network's output blended into the input with its mask."""
        batch = _check(batch)
        raw, alpha = self.deidentify_with_mask(batch, targets)
        a = alpha[..., None]
        return np.clip(np.rint(a * raw + (1.0 - a) * batch), 0, 255).astype(np.uint8)

    def __repr__(self) -> str:
        return f"LiveDeidentifier(name={self.name!r}, size={self.size}, crop_fraction={self.crop_fraction})"


def match_colour(raw: torch.Tensor, reference: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``raw`` (N, 3, H, W) shifted per image and channel so that its ``weight``-weighted mean equals
    ``reference``'s (same weights); clamped to [-1, 1]."""
    w = weight / weight.sum(dim=(2, 3), keepdim=True).clamp_min(1e-6)
    shift = ((reference - raw) * w).sum(dim=(2, 3), keepdim=True)
    return (raw + shift).clamp(-1.0, 1.0)


def _check(batch: np.ndarray) -> np.ndarray:
    batch = np.asarray(batch)
    if batch.ndim != 4 or batch.shape[-1] != 3 or batch.shape[1] != batch.shape[2] or batch.dtype != np.uint8:
        raise ValueError(f"expected canonical crops uint8 (N, S, S, 3), got {batch.dtype} {batch.shape}")
    return batch


def load_live_deidentifier(run_dir: str | os.PathLike | None = None, profile: str = "quick",
                           stage: int | None = None, strength: float = 1.0, device: str = "cpu",
                           features: RecognizerFeatures | None = None, name: str | None = None
                           ) -> LiveDeidentifier:
    """A trained live network as a de-identifier. ``stage`` (0-3) loads the generator saved at the end of that
    lambda stage instead of the final checkpoint."""
    import json

    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(profile)
    cfg_path = run_dir / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{cfg_path}: no trained live model here (train it with deidkit.train.live."
                                f"train_live or notebook 03)")
    raw_cfg = json.loads(cfg_path.read_text())
    known = {f.name for f in dataclasses.fields(LiveConfig)}
    cfg = LiveConfig(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in raw_cfg.items() if k in known})
    feats = features or build_features(cfg)
    with torch.no_grad():
        dim = feats(torch.zeros(1, 3, cfg.size, cfg.size))["embedding"].shape[1]
    gen = build_generator(cfg, cond_dim=dim)
    if stage is None:
        gen.load_state_dict(load_checkpoint(run_dir)["modules"]["generator"])
        default = f"live_{cfg.profile_name}"
    else:
        path = run_dir / STAGES_DIR / f"stage{stage}.pt"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no generator saved for lambda stage {stage}")
        gen.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["state_dict"])
        default = f"live_{cfg.profile_name}_stage{stage}"
    return LiveDeidentifier(gen, feats, cfg.crop_fraction, name=name or default, strength=strength, device=device)


def live_deidentifier_by_name(name: str, profile: str = "quick", run_dir: str | os.PathLike | None = None,
                              device: str = "cpu") -> LiveDeidentifier:
    """``live`` (the given profile), ``live_<profile>``, ``live_<profile>_stage<k>``; ``_s<strength>`` may end
    any of them (e.g. ``live_quick_s0.5``). ``live-<run>`` names a run folder in the cache (e.g. a fine-tuning
    run, ``live-standard-ft25``), ``live-<run>@stage<k>`` one of its stage generators (``_s<strength>`` may end them
    too)."""
    import re

    run = re.fullmatch(r"(live-[\w.-]+?)(?:@stage([0-3]))?(?:_s([\d.]+))?", name)
    if run is not None and run_dir is None:
        deid = load_live_deidentifier(cache_dir() / "runs" / run.group(1), stage=None if run.group(2) is None
                                      else int(run.group(2)), device=device, name=name.rsplit("_s", 1)[0]
                                      if run.group(3) else name)
        deid.strength = 1.0 if run.group(3) is None else float(run.group(3))
        return deid
    m = re.fullmatch(r"live(?:_(tiny|quick|standard|paper))?(?:_stage([0-3]))?(?:_s([\d.]+))?", name)
    if m is None:
        raise ValueError(f"unknown live model {name!r}; use live, live_<tiny|quick|standard|paper>[_stage<0-3>][_s<strength>]")
    return load_live_deidentifier(run_dir, profile=m.group(1) or profile,
                                  stage=None if m.group(2) is None else int(m.group(2)),
                                  strength=1.0 if m.group(3) is None else float(m.group(3)), device=device)


# The kit's registry of trained de-identifiers (notebook 04 loads ``live...`` names through it).
register_trained("live", lambda name, profile: live_deidentifier_by_name(name, profile))
