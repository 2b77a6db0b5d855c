"""Naive de-identifiers that both papers argue against: Gaussian blur, pixelation, a black box and additive
noise over the face region. They share the interface of every de-identifier in the kit:
``.name`` and ``.deidentify(batch (N, S, S, 3) uint8 canonical crops) -> batch``.

Strengths are given for a 224-pixel canonical crop and scaled with the crop size.

Each comes in two variants: *boxed* (``blur_sigma8``: the face box changed with a hard edge, the crop outside it
kept) and *blended* (``blur_sigma8_blend``: the same change pasted the way the learned models paste theirs, with a
feathered face-box weight and a colour match, see :class:`Blended`).

Looking a baseline up by name is the last step of every lookup by name (:func:`deidkit.deidentifiers.load_deidentifier`),
so the one-line error for a name that is no de-identifier, listing every valid choice, is made here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from deidkit.data.templates import CANONICAL_ZOOM
from deidkit.eval.quality import face_box
from deidkit.shipped import shipped_models

REFERENCE_SIZE = 224


@runtime_checkable
class Deidentifier(Protocol):
    """Anything with a name that maps a batch of canonical crops to a batch of the same shape."""

    name: str

    def deidentify(self, batch: np.ndarray) -> np.ndarray: ...


def _check_batch(batch: np.ndarray) -> np.ndarray:
    batch = np.asarray(batch)
    if batch.ndim != 4 or batch.shape[-1] != 3 or batch.dtype != np.uint8:
        raise ValueError(f"expected a uint8 batch (N, H, W, 3), got {batch.dtype} {batch.shape}")
    return batch


class _FaceRegion:
    """Applies ``_apply`` to the face box of each crop and leaves the rest untouched."""

    name: str

    def deidentify(self, batch: np.ndarray) -> np.ndarray:
        batch = _check_batch(batch)
        out = batch.copy()
        x0, y0, x1, y1 = face_box(batch.shape[1])
        scale = batch.shape[1] / REFERENCE_SIZE
        for i in range(len(batch)):
            out[i, y0:y1, x0:x1] = self._apply(batch[i, y0:y1, x0:x1], scale, i)
        return out

    def _apply(self, face: np.ndarray, scale: float, index: int) -> np.ndarray:
        raise NotImplementedError


@dataclass
class GaussianBlur(_FaceRegion):
    sigma: float

    @property
    def name(self) -> str:
        return f"blur_sigma{self.sigma:g}"

    def _apply(self, face: np.ndarray, scale: float, index: int) -> np.ndarray:
        s = self.sigma * scale
        return cv2.GaussianBlur(face, (0, 0), sigmaX=s, sigmaY=s, borderType=cv2.BORDER_REFLECT101)


@dataclass
class Pixelate(_FaceRegion):
    block: int

    @property
    def name(self) -> str:
        return f"pixelate_{self.block}px"

    def _apply(self, face: np.ndarray, scale: float, index: int) -> np.ndarray:
        h, w = face.shape[:2]
        b = max(1.0, self.block * scale)
        small = cv2.resize(face, (max(1, round(w / b)), max(1, round(h / b))), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


@dataclass
class BlackBox(_FaceRegion):
    @property
    def name(self) -> str:
        return "blackbox"

    def _apply(self, face: np.ndarray, scale: float, index: int) -> np.ndarray:
        return np.zeros_like(face)


@dataclass
class AdditiveNoise(_FaceRegion):
    """Gaussian noise of standard deviation ``sigma`` grey levels; seeded per image index for reproducibility."""

    sigma: float
    seed: int = 0

    @property
    def name(self) -> str:
        return f"noise_sigma{self.sigma:g}"

    def _apply(self, face: np.ndarray, scale: float, index: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, index])
        noisy = face.astype(np.float32) + rng.normal(0.0, self.sigma, face.shape).astype(np.float32)
        return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def face_box_mask(size: int, region: float, feather: float) -> np.ndarray:
    """(size, size) float32 weights: 1 inside the face box (``region`` of the side, see
    :func:`deidkit.eval.quality.face_box`) ``feather`` x its side away from its edge, a linear ramp to 0 at the
    edge (the product of the two axes' ramps), 0 outside. The learned models' paste (FaDeNet's ``feather``) and the
    blended baselines' share it."""
    x0, _, x1, _ = face_box(size, region)
    side = x1 - x0
    ramp = np.ones(side, np.float32)
    width = min(int(round(feather * side)), side // 2)
    if width:
        up = (np.arange(width, dtype=np.float32) + 0.5) / width
        ramp[:width], ramp[side - width:] = up, up[::-1]
    mask = np.zeros((size, size), np.float32)
    mask[x0:x1, x0:x1] = np.outer(ramp, ramp)
    return mask


#: The feather of the blended baselines: the shipped ``fadenet``'s (its manifest's inference options: feather 0.26
#: with the colour match), the learned model pasted through a fixed face box. Kept fixed, not read from the
#: manifest, because the baselines' names and cached results must not change when a model is re-shipped.
BLEND_FEATHER = 0.26


@dataclass
class Blended:
    """A boxed baseline pasted the way the learned models paste their output (FaDeNet's ``facebox`` mode): the
    boxed change weighted by :func:`face_box_mask` (the canonical face region, ``feather`` x its side of linear
    ramp; 0 outside), after a per-channel colour match over that weight
    (:func:`deidkit.deidentifiers.colour.match_colour`). Blur and pixelation keep a region's mean colour, so the
    colour match is close to the identity for them; it is kept so that the paste is the learned models' own.

    At ``feather`` 0 the weight is the boxed variant's hard box (1 inside, 0 outside): without the colour match the
    output is the boxed one pixel for pixel; with it, the boxed one with each channel of the face box scaled by the
    gain that gives the box the input's mean back.

    Named ``<boxed name>_blend`` at :data:`BLEND_FEATHER`, ``<boxed name>_blend_f<feather>`` at another feather."""

    base: _FaceRegion
    feather: float = BLEND_FEATHER
    colour_match: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.feather < 0.5:
            raise ValueError(f"feather must lie in [0, 0.5) (a fraction of the face box side), got {self.feather}")

    @property
    def name(self) -> str:
        suffix = "" if self.feather == BLEND_FEATHER else f"_f{self.feather:g}"
        return f"{self.base.name}_blend{suffix}" + ("" if self.colour_match else "_nocm")

    def deidentify(self, batch: np.ndarray) -> np.ndarray:
        # imported here: the de-identifiers' package imports this module on its own import
        from deidkit.deidentifiers.colour import match_colour

        batch = _check_batch(batch)
        n, size = batch.shape[0], batch.shape[1]
        if batch.shape[2] != size:
            raise ValueError(f"expected square canonical crops, got {batch.shape}")
        boxed = self.base.deidentify(batch)  # the change inside the face box, the input outside it
        weight = face_box_mask(size, CANONICAL_ZOOM, self.feather)
        if self.colour_match:  # weighted by where the change is pasted, as FaDeNet's paste does
            boxed = match_colour(boxed, batch, np.broadcast_to(weight, (n, size, size)))
        # FaDeNet's blend, term for term: input + weight x (changed - input), rounded
        out = batch + weight[None, ..., None] * (boxed.astype(np.float32) - batch)
        return np.clip(np.round(out), 0, 255).astype(np.uint8)


class Identity:
    """The original image: the reference point of every table."""

    name = "original"

    def deidentify(self, batch: np.ndarray) -> np.ndarray:
        return _check_batch(batch).copy()


def baseline_deidentifiers() -> list[Deidentifier]:
    """The naive baselines at a few strengths each (for a 224 crop; the face box is ~146 px wide)."""
    return [
        *(GaussianBlur(s) for s in (2, 4, 8, 16)),
        *(Pixelate(b) for b in (4, 8, 16, 24)),
        BlackBox(),
        *(AdditiveNoise(s) for s in (16, 32, 64, 128)),
    ]


#: ``<boxed baseline>_blend[_f<feather>][_nocm]``: a boxed baseline through :class:`Blended`.
BLEND_NAME = re.compile(r"(.+?)_blend(?:_f([0-9]*\.?[0-9]+))?(_nocm)?")


def get_deidentifier(name: str) -> Deidentifier:
    """A baseline (or ``"original"``) by its name, e.g. ``blur_sigma8``, ``pixelate_16px``, ``noise_sigma32``,
    ``blackbox``; ``<one of those>_blend`` (e.g. ``blur_sigma8_blend``) is the blended variant at
    :data:`BLEND_FEATHER`, ``_blend_f<feather>`` at another feather (``pixelate_16px_blend_f0``), ``_nocm`` after
    either without the colour match."""
    for d in [Identity(), *baseline_deidentifiers()]:
        if d.name == name:
            return d
    blend = BLEND_NAME.fullmatch(name)
    if blend is not None:
        try:
            base = get_deidentifier(blend.group(1))
        except KeyError:
            raise KeyError(unknown_message(name)) from None
        if not isinstance(base, _FaceRegion):
            raise KeyError(unknown_message(name))  # the original has no change to blend
        feather = BLEND_FEATHER if blend.group(2) is None else float(blend.group(2))
        try:
            return Blended(base, feather, colour_match=blend.group(3) is None)
        except ValueError as exc:
            raise KeyError(f"{exc}; {unknown_message(name)}") from None
    m = re.fullmatch(r"blur_sigma([\d.]+)|pixelate_(\d+)px|noise_sigma([\d.]+)", name)
    if m:
        if m.group(1):
            return GaussianBlur(float(m.group(1)))
        if m.group(2):
            return Pixelate(int(m.group(2)))
        return AdditiveNoise(float(m.group(3)))
    raise KeyError(unknown_message(name))


#: Names of models trained in the cache (the loaders of :mod:`deidkit.deidentifiers.fadenet` and
#: :mod:`deidkit.deidentifiers.live` read them).
TRAINED_NAMES = ("live_<profile>[_stage<0-3>][_s<strength>]", "live-<run>[@stage<0-3>]", "fadenet_<profile>",
                 "fadenet-<run>[@epoch<NNN>]")
#: Baseline names beyond the listed strengths (:func:`get_deidentifier` parses them).
BASELINE_PATTERNS = ("blur_sigma<S>", "pixelate_<B>px", "noise_sigma<S>",
                     "<baseline>_blend[_f<feather>][_nocm] (blended, e.g. blur_sigma8_blend, pixelate_16px_blend)")


def valid_choices() -> str:
    """Every de-identifier name the kit accepts, on one line: the shipped models (from the manifest, so a newly
    shipped one is listed without touching this), the names of models trained in the cache, the baselines."""
    try:
        shipped = ", ".join(shipped_models()) or "none"
    except Exception as exc:  # the message must still come out when the manifest cannot be read
        shipped = f"unreadable ({type(exc).__name__}: {exc})".replace("\n", " ")
    baselines = ", ".join(d.name for d in [Identity(), *baseline_deidentifiers()])
    return (f"shipped models: {shipped}; trained in the cache: {', '.join(TRAINED_NAMES)}; baselines: {baselines} "
            f"(or {', '.join(BASELINE_PATTERNS)})")


def unknown_message(name: str) -> str:
    """The one-line error for a name that is no de-identifier, listing every valid choice."""
    return f"unknown de-identifier {name!r}; valid choices: {valid_choices()}"
