"""The trained live network as a de-identifier (a run in the cache, a detail stage attached), and the geometry
shared with its training (the network's crop inside the canonical crop). Inference only: the training recipe is
:mod:`deidkit.train.live`; a live model by name, the shipped ones included, is :mod:`deidkit.deidentifiers.live_names`."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deidkit.assets import cache_dir
from deidkit.checkpoints import load_checkpoint
from deidkit.configs import LiveConfig
from deidkit.data.images import resize_crops
from deidkit.data.templates import ARCFACE_112, crop_to_template
from deidkit.deidentifiers.colour import match_colour
from deidkit.deidentifiers.geometry import LandmarkLock
from deidkit.models.live import LiveGenerator, RecognizerFeatures

STAGES_DIR = "stages"


def default_run_dir(profile: str) -> Path:
    """Where a profile's run lives by default: ``<cache>/runs/live-<profile>`` (trained models stay out of git)."""
    return cache_dir() / "runs" / f"live-{profile}"


def build_generator(cfg: LiveConfig, cond_dim: int = 128) -> LiveGenerator:
    return LiveGenerator(size=cfg.size, stem_channels=cfg.stem_channels, enc_channels=cfg.enc_channels,
                         bottleneck=cfg.bottleneck, cond_dim=cond_dim, dec_channels=cfg.dec_channels,
                         skip_channels=cfg.skip_channels)


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


class LiveDeidentifier:
    """The trained network as a kit de-identifier: canonical crops in, de-identified canonical crops out.

    The target representation is the face's own by default (the paper's setting for de-identification); pass
    ``targets`` (crops of any person) to condition on another identity. ``strength`` in [0, 1] scales the blending
    mask: 0 returns the input, 1 the network's full output; in between, pixels are interpolated.
    :meth:`deidentify_with_mask` gives the raw output and the per-pixel blending weight, which the video
    pipeline warps back into the frame.

    ``colour_match`` (default on) scales each colour channel of the raw output so that its mean where it is
    blended equals the input's there (:func:`match_colour`): the network's output keeps the identity change but
    not a colour cast or another exposure. Trained on LFW's well-lit news photos, the network lights dark faces
    as LFW's: on the Hamilton clip, faces whose mean luma is below 60 came out 70 levels brighter, redder and
    yellower (Cr +12, Cb -13) inside the blended region, the yellow-orange tint seen on HD footage. A gain rather
    than a shift keeps a dark face's contrast dark too (a shift left such faces with 2.2 x their contrast, a gain
    0.8 x); on LFW faces the match changes almost nothing (selection set MS1M cosine 0.130 either way).

    ``landmark_lock`` (default 0: off) moves the blended face's five landmarks that fraction of the way back to
    the input's with a smooth warp of output and mask (:class:`deidkit.deidentifiers.geometry.LandmarkLock`):
    expression and gaze stay where they were, at the price of some identity. The shipped model's value is in
    its manifest (chosen on the selection set).
    """

    def __init__(self, generator: LiveGenerator, features: RecognizerFeatures, crop_fraction: float,
                 name: str = "live", strength: float = 1.0, device: torch.device | str = "cpu",
                 colour_match: bool = True, landmark_lock: float = 0.0, base_strength: float = 1.0,
                 detail: nn.Module | None = None) -> None:
        if not name.startswith("live"):
            raise ValueError(f"live de-identifier names start with 'live', got {name!r}")
        self.device = torch.device(device)
        self.generator = generator.to(self.device).eval()
        self.features = features.to(self.device).eval()
        self.crop_fraction = crop_fraction
        self.size = generator.size
        # the detail stage (deidkit.models.detail.DetailNet): the generator's face enlarged twice with detail of
        # its own; the output side is then twice the generator's
        self.detail = None if detail is None else detail.to(self.device).eval()
        stages = 0 if detail is None else len(detail) if isinstance(detail, nn.Sequential) else 1
        self.out_size = self.size * 2**stages  # each stage doubles the side
        self._name = name
        self.strength = strength
        # the strength that is part of the model (a shipped model's manifest option): not in its name
        self._base_strength = float(base_strength)
        self.colour_match = colour_match
        #: how the network's output is enlarged to the crop: "bicubic" (sharper) or "bilinear"
        self.upsample = "bicubic"
        self._lock: LandmarkLock | None = None
        self.landmark_lock = landmark_lock

    @property
    def landmark_lock(self) -> float:
        return 0.0 if self._lock is None else self._lock.lock

    @landmark_lock.setter
    def landmark_lock(self, value: float) -> None:
        if float(value) == 0.0:
            self._lock = None
        elif self._lock is None:
            from deidkit.recognizers import load_five_landmarks

            self._lock = LandmarkLock(load_five_landmarks().to(self.device), float(value))
        else:
            self._lock = LandmarkLock(self._lock.landmarks, float(value))

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
        # the options a model was loaded with are part of that model; a strength set afterwards is named
        return self._name if self._strength == self._base_strength else f"{self._name}_s{self._strength:g}"

    @property
    def crop_size(self) -> int:
        """The canonical crop side at which the output is pasted without enlargement (the video pipeline aligns
        to at least this side)."""
        return int(round(self.out_size / self.crop_fraction))

    @property
    def input_crop_size(self) -> int:
        """The canonical crop side the generator reads without resampling."""
        return int(round(self.size / self.crop_fraction))

    def _network_input(self, batch: np.ndarray) -> torch.Tensor:
        if batch.shape[1] != self.input_crop_size:
            # to the network's own sampling first (area averaging to shrink: bilinear sampling alone would alias
            # the larger crops the pipeline aligns to, see deidkit.pipeline.swap.work_side)
            batch = resize_crops(batch, self.input_crop_size)
        x = to_tensor(batch).to(self.device)
        grid = center_grid(x.shape[0], self.size, self.crop_fraction, self.device)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    @torch.no_grad()
    def target_representation(self, crops: np.ndarray) -> torch.Tensor:
        """The conditioning vectors (N, dim) of canonical crops (of any person)."""
        return self.features.embed(self._network_input(_check(crops)))

    @torch.no_grad()
    def deidentify_with_mask(self, batch: np.ndarray, targets: torch.Tensor | np.ndarray | None = None,
                             blend_weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(raw output pasted into the canonical crops, uint8 (N, C, C, 3); blending weight float32 (N, C, C)).

        ``targets``: conditioning vectors (1 or N, dim), or canonical crops (1 or N, ., ., 3) uint8 of the target
        person; None conditions each face on itself. ``blend_weights`` (N, C, C): what the caller will multiply
        the blending weight by (the video pipeline's face hull), so that the colour match holds where the output
        is actually blended."""
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
        if self.detail is not None:
            raw = self.detail(raw)
            mask = F.interpolate(mask, size=raw.shape[-2:], mode="bilinear", align_corners=False)
        raw_np = to_uint8(raw)
        mask_np = mask[:, 0].cpu().numpy().astype(np.float32)
        m = network_to_canonical(self.out_size, self.crop_fraction, c)
        out = batch.copy()
        alpha = np.zeros((n, c, c), dtype=np.float32)
        for i in range(n):
            # Outside the network's region the raw image is the input and the weight 0.
            # the network's small output is enlarged several times here: bilinear blurs it further, bicubic less
            flag = cv2.INTER_CUBIC if self.upsample == "bicubic" else cv2.INTER_LINEAR
            warped = cv2.warpAffine(raw_np[i], m, (c, c), flags=flag, borderMode=cv2.BORDER_REPLICATE)
            a = cv2.warpAffine(mask_np[i], m, (c, c), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                               borderValue=0)
            region = a > 0
            out[i][region] = warped[region]
            alpha[i] = a * self._strength
        if self._lock is not None:
            out, alpha = self._lock(batch, out, alpha)
        if self.colour_match:
            out = match_colour(out, batch, alpha if blend_weights is None else alpha * np.asarray(blend_weights))
        return out, alpha

    def deidentify(self, batch: np.ndarray, targets: torch.Tensor | np.ndarray | None = None) -> np.ndarray:
        """De-identified canonical crops: the network's output blended into the input with its mask."""
        batch = _check(batch)
        raw, alpha = self.deidentify_with_mask(batch, targets)
        a = alpha[..., None]
        return np.clip(np.rint(a * raw + (1.0 - a) * batch), 0, 255).astype(np.uint8)

    def __repr__(self) -> str:
        return (f"LiveDeidentifier(name={self.name!r}, size={self.size}, output={self.out_size}, "
                f"crop_fraction={self.crop_fraction}, "
                f"landmark_lock={self.landmark_lock:g})")


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


def with_detail_stage(deid: LiveDeidentifier, run_dir: str | os.PathLike, name: str | None = None
                      ) -> LiveDeidentifier:
    """``deid`` with the detail stage trained in ``run_dir`` (``deidkit train detail``; its last checkpoint). A
    stage that enlarges the generator's side replaces ``deid``'s own stages; one that enlarges ``deid``'s output
    side is added after them."""
    import json

    from deidkit.configs import DetailConfig
    from deidkit.models.detail import DetailNet

    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{cfg_path}: no trained detail stage here (deidkit train detail)")
    known = {f.name for f in dataclasses.fields(DetailConfig)}
    cfg = DetailConfig(**{k: v for k, v in json.loads(cfg_path.read_text()).items() if k in known})
    if cfg.size not in (deid.size, deid.out_size):
        raise ValueError(f"{run_dir}: the detail stage enlarges {cfg.size}-px faces, {deid.name} draws "
                         f"{deid.size} (generator) and {deid.out_size} (output)")
    net = DetailNet(cfg.channels, cfg.blocks, cfg.upsample, cfg.input_filter)
    net.load_state_dict(load_checkpoint(run_dir)["modules"]["detail"])
    net = net.to(deid.device).eval()
    # a stage at the generator's side replaces the model's stages; one at the output's side follows them
    # (64 -> 128 -> 256 px)
    deid.detail = net if cfg.size == deid.size or deid.detail is None else nn.Sequential(deid.detail, net)
    deid.out_size = 2 * cfg.size
    if name is not None:
        deid._name = name
    return deid
