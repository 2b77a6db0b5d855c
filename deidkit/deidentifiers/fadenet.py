"""A trained FaDeNet (a run in the cache or the shipped model) as a de-identifier. Inference only: the training
recipe is :mod:`deidkit.train.fadenet`."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from deidkit.baselines import face_box_mask  # noqa: F401  (shared with the blended baselines; imported from here too)
from deidkit.checkpoints import CHECKPOINT_NAME, load_module_state, read_json, runs_dir
from deidkit.configs import FADENET_PROFILES, FaDeNetConfig
from deidkit.data.images import from_model_range, resize_crops, to_model_range
from deidkit.deidentifiers.colour import match_colour
from deidkit.eval.quality import face_box
from deidkit.models.unet import UNet
from deidkit.shipped import RENAMED, check_kind, load_state, manifest_config, shipped_models


def build_unet(config: FaDeNetConfig) -> UNet:
    return UNet(width=config.unet_width, depth=config.unet_depth, residual=config.residual,
                out_activation=config.out_activation, smooth_sigma=config.smooth_sigma,
                input_sigma=config.input_sigma, input_region=config.face_region, luma_only=config.luma_only,
                detail_basis=config.detail_basis, image_size=config.image_size, shape_warp=config.shape_warp,
                warp_px=config.warp_px, shape_basis=config.shape_basis, shape_bound=config.shape_bound)


def read_run_config(run_dir: str | os.PathLike) -> FaDeNetConfig:
    """The configuration a FaDeNet run folder was trained with (its ``config.json``; fields the kit no longer has
    are left out, fields added since take their defaults)."""
    path = Path(run_dir) / "config.json"
    cfg = read_json(path)
    if cfg is None:
        raise FileNotFoundError(f"{path}: missing; not a FaDeNet run directory")
    fields = {f.name for f in dataclasses.fields(FaDeNetConfig)}
    return FaDeNetConfig(**{k: v for k, v in cfg.items() if k in fields})


class FaDeNetDeidentifier:
    """A trained FaDeNet run as a de-identifier: ``.name`` and ``.deidentify(uint8 (N, S, S, 3)) -> same``.

    Crops whose side differs from the training size are processed at the training size. ``mode="resize"``
    (default) returns the network's output resized back: FaDeNet's actual image. ``mode="residual"`` up-samples
    only the *change* the network makes and adds it to the full-resolution crop, keeping the original's detail —
    and with it the identity: measured with the quick run on lfw_57x8 (224 crops), the critic's Rank-1 is
    0.286 at SSIM 0.794 with ``resize`` but 0.775 at SSIM 0.885 with ``residual`` (0.999 on originals), so the
    residual mode is an option to study, not the de-identifier. ``mode="facebox"`` (the default, ``mode=None``, for
    networks that see their face box blurred, ``input_sigma > 0``, or learn a teacher's change, ``teacher``) takes
    the network's output resized back inside the face box it was made to change (the square the critic's template
    crop covers, the region the blur baseline blurs) and keeps the crop outside it, as the naive baselines do.

    ``strength`` scales the change the network makes (output = crop + strength x (FaDeNet's image - crop)): below 1
    it trades privacy for image quality, above 1 (at most 2) the other way; 1 is FaDeNet's own output. Like the live
    model's landmark lock it is an inference option, chosen on the selection set (``deidkit select --strengths``).

    ``feather`` (``facebox`` mode; 0: a hard-edged box) ramps the change linearly from nothing at the face box's
    edge to all of it ``feather`` x the box side inside: the seam of a hard box costs much image quality (SSIM)
    and hides little identity (selection set, the 2026-12-03 model: feather 0.03 at strength 1 gives SSIM 0.805 at an
    MS1M cosine of 0.037, the hard box at strength 0.97 0.805 at 0.049). Also an inference option
    (``deidkit select --feathers``).

    ``colour_match`` (``facebox`` mode; default off, the shipped models' value is in their manifest) scales each
    colour channel of the network's image so that its mean over the changed face box equals the input's
    (:func:`deidkit.deidentifiers.colour.match_colour`, the live model's gain): the networks learnt their face detail
    from LFW's well-lit news photos, and a dark face in a video came out lit and mask-like without it.

    ``detail_cap`` k (networks that see their face box blurred, ``input_sigma > 0``; 0: off) scales, per face, the
    detail the network adds to its blurred input down so that its standard deviation in the face box is at most k
    times the detail the blur removed from that face: an out-of-focus or dark, low-contrast face (the Hamilton
    clip's audience) then stays as soft as it was instead of getting an LFW face's sharp eyes and mouth painted on,
    while on LFW's faces (detail added / removed: median 0.87, 95th percentile 1.3 for the shipped ``fadenet`` on the
    selection set) a cap of 1.5 changes almost nothing.
    """

    def __init__(self, run_dir: str | os.PathLike, name: str | None = None, device: str | torch.device = "cpu",
                 batch_size: int = 32, mode: str | None = None, strength: float = 1.0, feather: float = 0.0,
                 colour_match: bool = False, detail_cap: float = 0.0) -> None:
        self.run_dir = Path(run_dir)
        config = read_run_config(self.run_dir)
        unet = load_module_state(self.run_dir, "unet", build_unet(config))
        self._setup(config, unet, name or config.name, device, batch_size, mode, strength, feather, colour_match,
                    detail_cap)

    @classmethod
    def from_network(cls, config: FaDeNetConfig, unet: UNet, name: str, device: str | torch.device = "cpu",
                     batch_size: int = 32, mode: str | None = None, strength: float = 1.0, feather: float = 0.0,
                     colour_match: bool = False, detail_cap: float = 0.0) -> FaDeNetDeidentifier:
        """A de-identifier from a configuration and a U-Net with its weights (e.g. the shipped model)."""
        self = cls.__new__(cls)
        self.run_dir = None
        self._setup(config, unet, name, device, batch_size, mode, strength, feather, colour_match, detail_cap)
        return self

    def _setup(self, config: FaDeNetConfig, unet: UNet, name: str, device: str | torch.device, batch_size: int,
               mode: str | None, strength: float, feather: float, colour_match: bool, detail_cap: float) -> None:
        self.config = config
        self.device, self.batch_size, self.mode = torch.device(device), batch_size, _mode(mode, config)
        #: how the network's output (at its training size) is enlarged to the crop: "bicubic" keeps more of the
        #: detail it paints than "bilinear" (see deidkit.eval.realism)
        self.upsample = "bicubic"
        self.unet = unet.to(self.device).eval()
        self._name = name
        # the options it is loaded with (a shipped model's manifest options) are part of the model, not its name
        self.strength = self._base_strength = strength
        self.feather = self._base_feather = feather
        self.colour_match = self._base_colour_match = colour_match
        self.detail_cap = self._base_detail_cap = detail_cap

    @property
    def strength(self) -> float:
        return self._strength

    @strength.setter
    def strength(self, value: float) -> None:
        if not 0.0 <= value <= 2.0:
            raise ValueError(f"strength must lie in [0, 2], got {value}")
        self._strength = float(value)

    @property
    def feather(self) -> float:
        return self._feather

    @feather.setter
    def feather(self, value: float) -> None:
        if not 0.0 <= value < 0.5:
            raise ValueError(f"feather must lie in [0, 0.5) (a fraction of the face box side), got {value}")
        if value and self.mode != "facebox":
            raise ValueError(f"feather ramps the face box's edge: it needs mode 'facebox', not {self.mode!r}")
        self._feather = float(value)

    @property
    def colour_match(self) -> bool:
        return self._colour_match

    @colour_match.setter
    def colour_match(self, value: bool) -> None:
        if value and self.mode != "facebox":
            raise ValueError(f"colour_match matches the changed face box: it needs mode 'facebox', not {self.mode!r}")
        self._colour_match = bool(value)

    @property
    def detail_cap(self) -> float:
        return self._detail_cap

    @detail_cap.setter
    def detail_cap(self, value: float) -> None:
        if value < 0:
            raise ValueError(f"detail_cap must be >= 0 (0: off), got {value}")
        if value and not self.config.input_sigma:
            raise ValueError("detail_cap compares with what the input blur removes: it needs input_sigma > 0")
        self._detail_cap = float(value)

    @property
    def name(self) -> str:
        # the options a model was loaded with (a shipped model's manifest options) are part of that model
        return self._name + option_suffix(self._feather, self._strength, self._colour_match, self._detail_cap,
                                          base=(self._base_feather, self._base_strength, self._base_colour_match,
                                                self._base_detail_cap))

    @name.setter
    def name(self, value: str) -> None:
        self._name = value

    @torch.no_grad()
    def deidentify(self, batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch)
        if batch.ndim != 4 or batch.shape[-1] != 3 or batch.dtype != np.uint8 or batch.shape[1] != batch.shape[2]:
            raise ValueError(f"expected uint8 canonical crops (N, S, S, 3), got {batch.dtype} {batch.shape}")
        size, s_model = batch.shape[1], self.config.image_size
        out = np.empty_like(batch)
        for s in range(0, len(batch), self.batch_size):
            full = batch[s:s + self.batch_size]
            small = resize_crops(full, s_model)
            x = to_model_range(torch.from_numpy(small).permute(0, 3, 1, 2)).to(self.device)
            fx = self.unet(x)
            if self._detail_cap:
                fx = self._cap_detail(x, fx)
            if size == s_model:
                y = fx
            elif self.mode == "residual":
                delta = F.interpolate(fx - x, size=(size, size), mode=self.upsample, align_corners=False)
                y = to_model_range(torch.from_numpy(full).permute(0, 3, 1, 2)).to(self.device) + delta
            else:
                y = F.interpolate(fx, size=(size, size), mode=self.upsample, align_corners=False)
            y = from_model_range(y).permute(0, 2, 3, 1).cpu().numpy()
            if self.mode == "facebox":  # the change inside the face box only (a hard edge at feather 0)
                box = face_box_mask(size, self.config.face_region, self._feather)
                if self._colour_match:
                    y = match_colour(y, full, np.broadcast_to(box, (len(full), size, size)))
                change = self._strength * box[None, ..., None]
                y = np.clip(np.round(full + change * (y.astype(np.float32) - full)), 0, 255).astype(np.uint8)
            elif self._strength != 1.0:
                y = full + self._strength * (y.astype(np.float32) - full)
                y = np.clip(np.round(y), 0, 255).astype(np.uint8)
            out[s:s + self.batch_size] = y
        return out

    @torch.no_grad()
    def warp_stretch(self, batch: np.ndarray) -> np.ndarray:
        """Per crop, the largest principal stretch of the network's warp of the face box
        (:func:`deidkit.eval.quality.warp_stretch`, at the training size); zeros for a network without a warp."""
        from deidkit.eval.quality import warp_stretch

        if not self.unet.warps:
            return np.zeros(len(batch))
        x = to_model_range(torch.from_numpy(resize_crops(np.asarray(batch), self.config.image_size)).permute(0, 3, 1, 2))
        return np.concatenate([warp_stretch(self.unet.warp_field_of(x[s:s + self.batch_size].to(self.device)).cpu().numpy())
                               for s in range(0, len(x), self.batch_size)])

    def _cap_detail(self, x: torch.Tensor, fx: torch.Tensor) -> torch.Tensor:
        """``fx`` with the detail it adds to the blurred input scaled so that its SD in the face box is at most
        ``detail_cap`` times that of the detail the blur removed from ``x`` (per image)."""
        blurred = self.unet.blurred_input(x)
        x0, _, x1, _ = face_box(x.shape[-1], self.config.face_region)
        removed = (x - blurred)[..., x0:x1, x0:x1].flatten(1).std(1)
        added = (fx - blurred)[..., x0:x1, x0:x1].flatten(1).std(1)
        scale = (self._detail_cap * removed / added.clamp_min(1e-6)).clamp(max=1.0)
        return blurred + scale[:, None, None, None] * (fx - blurred)


def option_suffix(feather: float = 0.0, strength: float = 1.0, colour_match: bool = False, detail_cap: float = 0.0,
                  base: tuple[float, float, bool, float] = (0.0, 1.0, False, 0.0)) -> str:
    """How a de-identifier's name spells the inference options that differ from ``base`` (those it was loaded
    with): ``_f<feather>``, ``_s<strength>``, ``_cm``, ``_dc<cap>``, in that order."""
    suffix = f"_f{feather:g}" if feather != base[0] else ""
    suffix += f"_s{strength:g}" if strength != base[1] else ""
    suffix += "_cm" if colour_match and not base[2] else ""
    return suffix + (f"_dc{detail_cap:g}" if detail_cap != base[3] else "")


def _mode(mode: str | None, config: FaDeNetConfig) -> str:
    # a teacher's change (the live model's) lies inside the face, as a blurred face box's does
    mode = mode or ("facebox" if config.input_sigma or config.teacher else "resize")
    if mode not in ("residual", "resize", "facebox"):
        raise ValueError(f"mode must be 'residual', 'resize' or 'facebox', got {mode!r}")
    return mode


def load_fadenet_deidentifier(name: str = "fadenet", profile: str = "quick") -> FaDeNetDeidentifier:
    """The trained FaDeNet called ``name``: the run ``cache_dir()/runs/<name>`` if it exists; ``fadenet_<profile>``
    the run of that profile (``fadenet-<profile>``), bare ``fadenet`` the run of ``profile``; any other name is an
    error (``ValueError``). :mod:`deidkit.deidentifiers` loads names starting with ``fadenet`` through it.
    ``<run>@epoch<NNN>`` loads that epoch's snapshot of the run (e.g. ``fadenet-standard@epoch002``);
    a name ending in ``_f<feather>``, ``_s<strength>``, ``_cm`` (colour matched) and/or ``_dc<k>`` (detail cap;
    ``fadenet-standard@epoch002_f0.03_s0.9_cm_dc1.5``, that order) sets those inference options."""
    m = re.fullmatch(r"(.+?)(?:_f([0-9]*\.?[0-9]+))?(?:_s([0-9]*\.?[0-9]+))?(_cm)?(?:_dc([0-9]*\.?[0-9]+))?", name)
    if m and (m.group(2) or m.group(3) or m.group(4) or m.group(5)):
        base = m.group(1)
        deid = load_shipped_fadenet(base) if base in shipped_models() else load_fadenet_deidentifier(base, profile)
        if m.group(2):
            deid.feather = float(m.group(2))
        if m.group(3):
            deid.strength = float(m.group(3))
        if m.group(4):
            deid.colour_match = True
        if m.group(5):
            deid.detail_cap = float(m.group(5))
        return deid
    if "@" in name:
        run, snap = name.split("@", 1)
        path = runs_dir() / run / "epochs" / f"{snap}.pt"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such FaDeNet snapshot")
        deid = FaDeNetDeidentifier(runs_dir() / run, name=name)
        deid.unet.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["unet"])
        return deid
    if (runs_dir() / name / CHECKPOINT_NAME).is_file():  # a run folder by name, e.g. fadenet-standard-det005
        return FaDeNetDeidentifier(runs_dir() / name, name=name)
    if name in RENAMED:
        raise ValueError(f"{name!r} is the shipped model {RENAMED[name]!r} since 2026-12-07 (the same weights); the run "
                         f"of a training profile is named fadenet-<profile>")
    # fadenet_<profile>: that profile's run (the name's profile wins over the argument); any other name is refused
    # rather than read as the argument's profile, so that a typo never loads another model under the name asked for
    m = re.fullmatch(r"fadenet(?:_(\w+))?", name)
    if m is None or (m.group(1) and m.group(1) not in FADENET_PROFILES):
        raise ValueError(f"unknown FaDeNet {name!r}: a shipped model ({', '.join(shipped_models())}), "
                         f"fadenet_<profile> (a profile of deidkit train fadenet), a run folder under {runs_dir()} "
                         f"or <run>@epoch<NNN>")
    profile = m.group(1) or profile
    cand = runs_dir() / FaDeNetConfig.profile(profile).name
    if (cand / CHECKPOINT_NAME).is_file():
        return FaDeNetDeidentifier(cand, name=name)
    raise FileNotFoundError(
        f"no trained FaDeNet run {name!r} or for profile {profile!r} under {runs_dir()}; train it with "
        f"notebooks/02_fadenet.ipynb (or deidkit.train.fadenet.train_fadenet(FaDeNetConfig.profile({profile!r})))"
    )



def fadenet_from_manifest(name: str, entry: dict[str, Any], state: dict[str, torch.Tensor],
                          device: str | torch.device = "cpu") -> FaDeNetDeidentifier:
    """A shipped FaDeNet from its manifest ``entry`` and checksum-verified ``state``
    (:func:`deidkit.shipped.load_state`), with the inference options its manifest records."""
    check_kind(name, entry, "fadenet")
    cfg = manifest_config(FaDeNetConfig, entry["config"])
    unet = build_unet(cfg)
    unet.load_state_dict(state)
    return FaDeNetDeidentifier.from_network(cfg, unet, name=name, device=device, **entry.get("inference", {}))


def load_shipped_fadenet(name: str, device: str | torch.device = "cpu") -> FaDeNetDeidentifier:
    """The shipped FaDeNet ``name`` (what :func:`deidkit.pretrained.load_pretrained` gives for it; that module
    builds every kind, so it sits above this one)."""
    entry, state = load_state(name)
    return fadenet_from_manifest(name, entry, state, device)
