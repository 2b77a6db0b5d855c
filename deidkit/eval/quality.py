"""Image quality of a de-identified crop against its original: SSIM and PSNR over the whole crop and over the
face region, and the face detection rate after de-identification."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from deidkit.data.images import BT601_CHROMA
from deidkit.data.templates import CANONICAL_ZOOM


def face_box(size: int, fraction: float = CANONICAL_ZOOM) -> tuple[int, int, int, int]:
    """The face region of a canonical crop, (x0, y0, x1, y1): the square a tight ArcFace 112 crop would cover
    (``fraction`` of the side, centred)."""
    # The canonical template is the ArcFace template scaled about the crop centre, so the box is centred.
    half = fraction * size / 2.0
    c = size / 2.0
    x0, x1 = int(round(c - half)), int(round(c + half))
    y0, y1 = x0, x1
    return max(x0, 0), max(y0, 0), min(x1, size), min(y1, size)


def _check(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape or a.ndim != 4 or a.shape[-1] != 3:
        raise ValueError(f"expected two batches (N, H, W, 3) of equal shape, got {a.shape} and {b.shape}")


def ssim(original: np.ndarray, other: np.ndarray, region: str = "image") -> np.ndarray:
    """Per-image SSIM (colour, data range 255) over the whole crop (``region="image"``) or the face box."""
    _check(original, other)
    a, b = _region(original, region), _region(other, region)
    return np.array([structural_similarity(x, y, channel_axis=-1, data_range=255) for x, y in zip(a, b)])


def psnr(original: np.ndarray, other: np.ndarray, region: str = "image") -> np.ndarray:
    """Per-image PSNR in dB (identical images give +inf, reported as 100 dB to keep means finite)."""
    _check(original, other)
    a, b = _region(original, region), _region(other, region)
    out = []
    for x, y in zip(a, b):
        out.append(100.0 if np.array_equal(x, y) else peak_signal_noise_ratio(x, y, data_range=255))
    return np.array(out)


def colour_shift(original: np.ndarray, other: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    """Per-image mean |change| of the colour (Cb + Cr of BT.601, 8-bit levels) inside the face box, both images
    Gaussian-smoothed first (``sigma`` in pixels of a 112-pixel crop, scaled to the crop's side).

    A measure of the natural look that SSIM misses: a change of colour that no lighting explains (a cast, the
    coloured bands a critic-fooling U-Net paints over the eyes). Blurring keeps the local colour (about 3 levels
    at blur sigma 8 on LFW crops), so larger values mean colour the face did not have. Smoothing leaves out fine
    colour texture and noise."""
    _check(original, other)
    s = sigma * original.shape[1] / 112.0
    x0, y0, x1, y1 = face_box(original.shape[1])
    out = np.empty(len(original))
    for i, (a, b) in enumerate(zip(original, other)):
        # YCrCb of the difference: the chroma rows of the transform are linear and sum to 0 (no offset)
        d = a.astype(np.float32) - b.astype(np.float32)
        chroma = d @ np.asarray(BT601_CHROMA, np.float32).T
        chroma = cv2.GaussianBlur(chroma, (0, 0), s)[y0:y1, x0:x1]
        out[i] = float(np.abs(chroma).sum(-1).mean())
    return out


def _region(batch: np.ndarray, region: str) -> np.ndarray:
    if region == "image":
        return batch
    if region == "face":
        x0, y0, x1, y1 = face_box(batch.shape[1])
        return batch[:, y0:y1, x0:x1]
    raise ValueError(f"region must be 'image' or 'face', not {region!r}")


def detection_rate(batch: np.ndarray, detector) -> float:
    """Fraction of crops in which ``detector`` (an object with ``.detect(image) -> list``) finds a face.

    Crops are padded by a quarter of their side first: a detector tuned to faces in scenes misses a face that
    fills the whole frame.
    """
    if len(batch) == 0:
        raise ValueError("empty batch")
    pad = batch.shape[1] // 4
    found = 0
    for img in batch:
        padded = np.pad(img, ((pad, pad), (pad, pad), (0, 0)), mode="constant")
        found += bool(detector.detect(padded))
    return found / len(batch)


def pixel_descriptor_distances(original: np.ndarray, other: np.ndarray, recognizer,
                               region: str = "face") -> pd.DataFrame:
    """Per image: how far ``other`` moved from ``original`` in pixels and in a recogniser's descriptor.

    ``pixel_rmse``: root mean square difference (0-255 scale) over ``region``; ``descriptor_distance``:
    1 - cos between the recogniser's embeddings of the two crops. The live paper's Fig. 4e plots one against the
    other: a de-identifier that moves the descriptor far for little pixel change beats blurring, which needs
    large pixel changes to move it at all.
    """
    _check(original, other)
    a = _region(original, region).astype(np.float32)
    b = _region(other, region).astype(np.float32)
    rmse = np.sqrt(((a - b) ** 2).reshape(len(a), -1).mean(1))
    cos = (recognizer.embed(original) * recognizer.embed(other)).sum(1)
    return pd.DataFrame({"pixel_rmse": rmse, "descriptor_distance": 1.0 - cos})


def warp_stretch(field: np.ndarray) -> np.ndarray:
    """Per image, the largest relative stretch or squeeze a displacement field (N, 2, H, W; x then y, in pixels)
    applies anywhere: max over pixels of |s - 1| for both singular values s of its Jacobian I + grad u. A guard
    against runaway warps, not a test of a natural look: real training faces differ from the mean face by a median
    0.43 (projected on 16 principal modes of their geometry), while a free 5 x 5 warp of 0.40 already draws
    wedge-shaped eyes (2026-12-07)."""
    field = np.asarray(field, dtype=np.float64)
    if field.ndim != 4 or field.shape[1] != 2:
        raise ValueError(f"expected a displacement field (N, 2, H, W), got {field.shape}")
    dux_dy, dux_dx = np.gradient(field[:, 0], axis=(1, 2))
    duy_dy, duy_dx = np.gradient(field[:, 1], axis=(1, 2))
    a, b, c, d = 1 + dux_dx, dux_dy, duy_dx, 1 + duy_dy
    # singular values of [[a, b], [c, d]] in closed form
    p, q = np.hypot(a + d, c - b) / 2, np.hypot(a - d, b + c) / 2
    return np.maximum(np.abs(p + q - 1), np.abs(np.abs(p - q) - 1)).reshape(len(field), -1).max(1)
