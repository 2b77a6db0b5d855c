"""Faces in frames: detection (any size of face, large images included), dlib's 68 landmarks, blend regions
and tracking from one frame to the next."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from deidkit.data.templates import ARCFACE_112, crop_to_template

# ------------------------------------------------------------------------------------------------- frames


def make_face_detector(detector: str = "yunet", **kwargs: Any):
    """A face detector with ``.detect(rgb) -> list[Detection]`` (boxes and five landmarks, image-left eye
    first), from :mod:`deidkit.data.alignment`."""
    from deidkit.data.alignment import make_detector

    return make_detector(detector, **kwargs)


def hull_weights(landmarks68: np.ndarray, size: int, feather: float) -> np.ndarray:
    """Float mask (size, size): 1 inside the convex hull of the landmarks, 0 outside, feathered inward so that
    the pasted region never extends beyond the hull."""
    mask = np.zeros((size, size), np.uint8)
    hull = cv2.convexHull(np.round(landmarks68).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 255)
    k = max(1, int(round(feather * size)))
    mask = cv2.erode(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1)))
    return cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), sigmaX=k / 2.0 + 1e-3)


def face_weights(landmarks68: np.ndarray, size: int, feather: float) -> np.ndarray:
    """Float mask (size, size) covering the whole face: the hull of dlib's 68 landmarks (jaw line, brows, nose,
    mouth) extended up over the forehead (the brows lifted by 0.8 of the brow-to-nose-tip height), dilated by
    ``feather`` so that the jaw and the face contour themselves are replaced, with a soft edge outside them.
    The plain landmark hull (``hull_weights``) keeps the contour and the forehead, which carry identity too."""
    pts = np.asarray(landmarks68, np.float64)
    brows = pts[17:27]
    up = brows.mean(0) - pts[8]  # chin -> brows
    up /= max(np.linalg.norm(up), 1e-6)
    lift = 0.8 * np.linalg.norm(brows.mean(0) - pts[30])
    poly = np.vstack([pts[:17], brows + lift * up])
    mask = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(np.round(poly).astype(np.int32)), 255)
    k = max(1, int(round(feather * size)))
    mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1)))
    return cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), sigmaX=k / 2.0 + 1e-3)


#: Blend regions of :class:`FaceSwapper`: the whole face (default), the landmark hull, or the whole crop.
HULLS = ("face", "dlib68", "none")


def largest_face_window(detector: Any, frame: np.ndarray, scale: float = 1.8) -> tuple[int, int, int, int] | None:
    """A square window (y0, y1, x0, x1) around the largest face ``detector`` finds in ``frame``, ``scale`` times
    the longer side of its box and clipped to the frame; None without a face. For close-ups of video frames."""
    from deidkit.data.alignment import largest_face

    face = largest_face(detector.detect(frame))
    if face is None:
        return None
    x0, y0, x1, y1 = face.box
    cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, scale / 2 * max(x1 - x0, y1 - y0)
    h, w = frame.shape[:2]
    return int(max(cy - r, 0)), int(min(cy + r, h)), int(max(cx - r, 0)), int(min(cx + r, w))



def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0



#: Where dlib's HOG detector puts its box on canonical crops, in ArcFace-112 coordinates (measured by the
#: recogniser engineer's ``deidkit.recognizers.measure_dlib_box``; imported from there when available).
_FALLBACK_BOX_ARCFACE = (18.0, 34.0, 94.0, 110.0)


def dlib_model_path(filename: str) -> Path:
    """A model file of the ``face_recognition_models`` package, without importing it (it needs pkg_resources)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the 'face_recognition_models' package is not installed (it ships dlib's models); "
                                "pip install face_recognition_models==0.3.0")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / filename
    if not path.is_file():
        raise FileNotFoundError(f"{path}: dlib model file missing; reinstall face_recognition_models")
    return path


def canonical_face_box(size: int) -> np.ndarray:
    """The box (x0, y0, x1, y1) where dlib's detector would put the face in a canonical ``size`` crop."""
    try:
        from deidkit.recognizers import DLIB_BOX_ARCFACE as box
    except ImportError:  # pragma: no cover - the recognisers module is part of the kit
        box = _FALLBACK_BOX_ARCFACE
    inv = np.linalg.inv(np.vstack([crop_to_template(size, ARCFACE_112), [0.0, 0.0, 1.0]]))
    corners = np.array([[box[0], box[1], 1.0], [box[2], box[3], 1.0]])
    (x0, y0), (x1, y1) = (inv @ corners.T).T[:, :2]
    return np.array([x0, y0, x1, y1])


class Dlib68:
    """dlib's 68-point shape predictor. ``on_crops`` uses the fixed canonical face box (the crops are aligned);
    ``in_box`` takes any image and box."""

    def __init__(self) -> None:
        import dlib

        self._dlib = dlib
        self.predictor = dlib.shape_predictor(str(dlib_model_path("shape_predictor_68_face_landmarks.dat")))

    def in_box(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        """(68, 2) float landmarks of the face in ``box`` (x0, y0, x1, y1) of an RGB uint8 image."""
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        shape = self.predictor(np.ascontiguousarray(image), self._dlib.rectangle(x0, y0, x1, y1))
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)

    def on_crops(self, crops: np.ndarray) -> np.ndarray:
        """(N, 68, 2) landmarks of canonical crops (N, S, S, 3) uint8."""
        crops = np.asarray(crops)
        if crops.ndim != 4 or crops.shape[1] != crops.shape[2] or crops.dtype != np.uint8:
            raise ValueError(f"expected canonical crops uint8 (N, S, S, 3), got {crops.dtype} {crops.shape}")
        box = canonical_face_box(crops.shape[1])
        return np.stack([self.in_box(c, box) for c in crops]) if len(crops) else np.zeros((0, 68, 2))



