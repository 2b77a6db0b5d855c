"""Five-point face templates (left eye, right eye, nose, left mouth corner, right mouth corner; "left" is the
image's left) and similarity transforms between them."""

from __future__ import annotations

import numpy as np
from skimage.transform import SimilarityTransform

#: SphereFace template for a 96 (w) x 112 (h) crop.
SPHEREFACE_96x112 = np.array(
    [[30.2946, 51.6963], [65.5318, 51.5014], [48.0252, 71.7366], [33.5493, 92.3655], [62.7299, 92.2041]],
    dtype=np.float64,
)
#: ArcFace template for a 112 x 112 crop: the SphereFace points shifted by 8 pixels in x.
ARCFACE_112 = SPHEREFACE_96x112 + np.array([8.0, 0.0])

#: The kit's canonical face crop is square and looser than the recognisers' crops, so that every
#: recogniser can take its own (tighter) crop from it and de-identifiers see the whole face with context.
#: The ArcFace 112 crop covers this fraction of the canonical crop's side.
CANONICAL_ZOOM = 0.65


def canonical_landmarks(size: int) -> np.ndarray:
    """The five template points in a ``size`` x ``size`` canonical crop."""
    unit = (ARCFACE_112 - 56.0) / 112.0 * CANONICAL_ZOOM + 0.5
    return unit * float(size)


def similarity_matrix(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (Umeyama) mapping ``src`` points onto ``dst`` as a 2x3 matrix."""
    tform = SimilarityTransform()
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if not np.all(np.isfinite(src)) or src.shape != dst.shape or src.shape[0] < 2:
        raise ValueError(f"cannot fit a similarity transform from points of shape {src.shape} to {dst.shape}")
    if hasattr(SimilarityTransform, "from_estimate"):
        tform = SimilarityTransform.from_estimate(src, dst)
        ok = bool(tform)
    else:  # scikit-image < 0.26
        ok = tform.estimate(src, dst)
    if not ok:
        raise ValueError("degenerate landmarks: similarity transform could not be estimated")
    return np.asarray(tform.params[:2, :], dtype=np.float64)


def crop_to_template(size: int, template: np.ndarray) -> np.ndarray:
    """The 2x3 matrix taking a canonical ``size`` crop to a recogniser's template crop."""
    return similarity_matrix(canonical_landmarks(size), template)
