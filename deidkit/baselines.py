"""Naive de-identifiers that both papers argue against: Gaussian blur, pixelation, a black box and additive
noise over the face region. They share the interface of every de-identifier in the kit:
``.name`` and ``.deidentify(batch (N, S, S, 3) uint8 canonical crops) -> batch``.

Strengths are given for a 224-pixel canonical crop and scaled with the crop size.

Looking a baseline up by name is the last step of every lookup by name (:func:`deidkit.deidentifiers.load_deidentifier`),
so the one-line error for a name that is no de-identifier, listing every valid choice, is made here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

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


def get_deidentifier(name: str) -> Deidentifier:
    """A baseline (or ``"original"``) by its name, e.g. ``blur_sigma8``, ``pixelate_16px``, ``noise_sigma32``."""
    for d in [Identity(), *baseline_deidentifiers()]:
        if d.name == name:
            return d
    import re

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
BASELINE_PATTERNS = ("blur_sigma<S>", "pixelate_<B>px", "noise_sigma<S>")


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
