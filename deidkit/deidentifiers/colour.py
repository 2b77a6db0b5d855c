"""Colour matching of a de-identifier's output to its input: a learned model trained on LFW's well-lit news photos
lights a dark face as LFW's; a per-channel gain in the changed region gives the output the input's exposure and
white balance back while keeping the change (the live model's ``colour_match``, FaDeNet's ``colour_match``)."""

from __future__ import annotations

import numpy as np


def match_colour(raw: np.ndarray, reference: np.ndarray, weight: np.ndarray, max_gain: float = 4.0
                 ) -> np.ndarray:
    """``raw`` (uint8 (N, H, W, 3)) with each image's channels scaled so that their ``weight``-weighted means
    (weights (N, H, W)) equal ``reference``'s, as a camera's exposure and white balance would: a gain, not a
    shift, so that a dark face stays dark in its shadows and highlights alike. Gains are bounded to
    [1 / ``max_gain``, ``max_gain``]; an image with no weight is returned as it is."""
    w = np.asarray(weight, np.float32)[..., None]
    total = w.sum(axis=(1, 2), keepdims=True)
    r, f = raw.astype(np.float32), reference.astype(np.float32)
    mean_raw = (r * w).sum(axis=(1, 2), keepdims=True) / np.maximum(total, 1e-6)
    mean_ref = (f * w).sum(axis=(1, 2), keepdims=True) / np.maximum(total, 1e-6)
    # +1: a channel that is black in both stays as it is instead of dividing by zero
    gain = np.clip((mean_ref + 1.0) / (mean_raw + 1.0), 1.0 / max_gain, max_gain)
    gain = np.where(total > 0, gain, 1.0)
    return np.clip(np.rint(r * gain), 0, 255).astype(np.uint8)
