"""What every recogniser shares: canonical crops checked, warped to a recogniser's template, embedded in batches
and L2-normalised (:class:`Recognizer`)."""

from __future__ import annotations

from abc import ABC, abstractmethod

import cv2
import numpy as np
from tqdm.auto import tqdm

from deidkit.data.templates import crop_to_template

# A progress bar is worth its noise only on long jobs.
_PROGRESS_MIN = 1000


def check_crops(crops: np.ndarray) -> np.ndarray:
    """Validate a batch of canonical crops: (N, S, S, 3) uint8."""
    crops = np.asarray(crops)
    if crops.ndim != 4 or crops.shape[-1] != 3 or crops.shape[1] != crops.shape[2]:
        raise ValueError(f"expected canonical crops of shape (N, S, S, 3), got {crops.shape}; "
                         "a single crop needs a leading batch axis (crop[None])")
    if crops.dtype != np.uint8:
        raise ValueError(f"expected uint8 crops (RGB, 0-255), got dtype {crops.dtype}")
    if crops.shape[1] < 32:
        raise ValueError(f"canonical crops of side {crops.shape[1]} are too small to recognise a face")
    return crops


def warp_to_template(crops: np.ndarray, template: np.ndarray, out_wh: tuple[int, int]) -> np.ndarray:
    """Warp canonical crops (N, S, S, 3) to a recogniser template crop (N, h, w, 3) with ``cv2.warpAffine``.

    When the warp would shrink by more than 1.5x, the crops are first resized with area averaging so that
    bilinear sampling does not alias (it only reads 4 pixels per output pixel).
    """
    crops = check_crops(crops)
    size = crops.shape[1]
    matrix = crop_to_template(size, template)
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if scale < 1 / 1.5:
        small = max(int(round(size * scale)), 32)
        crops = np.stack([cv2.resize(c, (small, small), interpolation=cv2.INTER_AREA) for c in crops])
        matrix = crop_to_template(small, template)
    w, h = out_wh
    # The template crops lie well inside the canonical crop, so the border mode only matters for odd inputs.
    return np.stack([cv2.warpAffine(np.ascontiguousarray(c), matrix, (w, h), flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_REPLICATE) for c in crops])


class Recognizer(ABC):
    """Base class: ``embed`` handles validation, batching and normalisation; subclasses embed one batch."""

    name: str = ""
    dim: int = 0

    @abstractmethod
    def _embed_batch(self, crops: np.ndarray) -> np.ndarray:
        """Raw (not necessarily normalised) embeddings of one batch of validated canonical crops."""

    def embed(self, crops: np.ndarray, batch_size: int = 32, progress: bool | None = None) -> np.ndarray:
        """Embeddings (N, dim) float32, L2-normalised, of canonical crops (N, S, S, 3) uint8.

        Deterministic: the same crops give the same vectors. ``progress`` shows a tqdm bar (default: when
        there are at least 1,000 crops).
        """
        crops = check_crops(crops)
        n = crops.shape[0]
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        out = np.zeros((n, self.dim), dtype=np.float32)
        show = n >= _PROGRESS_MIN if progress is None else progress
        starts = range(0, n, batch_size)
        for s in tqdm(starts, desc=f"embed {self.name}", unit="batch", disable=not show):
            e = np.asarray(self._embed_batch(crops[s:s + batch_size]), dtype=np.float64)
            norm = np.linalg.norm(e, axis=1, keepdims=True)
            if not np.all(np.isfinite(e)) or np.any(norm == 0):
                raise RuntimeError(f"{self.name}: non-finite or zero embedding in batch starting at {s}")
            out[s:s + batch_size] = (e / norm).astype(np.float32)
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim})"

