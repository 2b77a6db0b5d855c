"""Face detection (YuNet or MTCNN), five-point similarity alignment to the canonical crop, and the way back.

Alignment keeps its transform so a result computed on the crop can be warped back into the original image.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

import cv2
import numpy as np

from deidkit.assets import asset_path
from deidkit.data.templates import canonical_landmarks, similarity_matrix

DETECTORS = ("yunet", "mtcnn")


@dataclass
class Detection:
    """One face: box (x0, y0, x1, y1), five landmarks (image-left eye first) in image pixels, and a score."""

    box: np.ndarray
    landmarks: np.ndarray
    score: float


def largest_face(detections: list[Detection]) -> Detection | None:
    """The detection with the largest box (the subject of a close-up), or None when there is none."""
    if not detections:
        return None
    return max(detections, key=lambda d: (d.box[2] - d.box[0]) * (d.box[3] - d.box[1]))


@dataclass
class AlignedFace:
    """A canonical crop, the 2x3 matrix taking image coordinates to crop coordinates, and where it came from."""

    crop: np.ndarray
    matrix: np.ndarray
    landmarks: np.ndarray
    score: float
    detector: str
    extra: dict = field(default_factory=dict)


class NoFaceError(ValueError):
    """No face was found in an image."""


class YuNetDetector:
    """OpenCV's YuNet (``cv2.FaceDetectorYN``) with the weights from the shared folder or an explicit path."""

    name = "yunet"

    def __init__(self, weights: str | os.PathLike | None = None, score_threshold: float = 0.6,
                 nms_threshold: float = 0.3) -> None:
        self.weights = str(asset_path("yunet", weights))
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self._local = threading.local()

    #: Input sizes kept ready per thread (the video pipeline alternates two: its fine and coarse passes).
    MAX_SIZES = 4

    def _net(self, w: int, h: int) -> cv2.FaceDetectorYN:
        # One network per thread and input size: changing a YuNet's input size re-plans the whole network, which
        # measured as much as a 1280-pixel detection when a 1080p frame's 1280 and 480 passes shared one network
        # (180 ms per frame for both passes, 94 ms for the first alone).
        nets = getattr(self._local, "nets", None)
        if nets is None:
            nets = self._local.nets = {}
        net = nets.pop((w, h), None)
        if net is None:
            if len(nets) >= self.MAX_SIZES:
                nets.pop(next(iter(nets)))  # the least recently used size
            net = cv2.FaceDetectorYN.create(self.weights, "", (w, h), self.score_threshold, self.nms_threshold, 5000)
        nets[(w, h)] = net  # most recently used last
        return net

    def ready_sizes(self) -> list[tuple[int, int]]:
        """The input sizes (w, h) this thread holds a network for, least recently used first."""
        return list(getattr(self._local, "nets", {}))

    def detect(self, image: np.ndarray) -> list[Detection]:
        h, w = image.shape[:2]
        bgr = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR)
        _, faces = self._net(w, h).detect(bgr)
        if faces is None:
            return []
        out = []
        for f in faces:
            x, y, bw, bh = (float(v) for v in f[:4])
            # YuNet's order is right eye, left eye (subject's), nose, right, left mouth corner: image-left first.
            lms = np.asarray(f[4:14], dtype=np.float64).reshape(5, 2)
            out.append(Detection(np.array([x, y, x + bw, y + bh]), lms, float(f[14])))
        return out


class MTCNNDetector:
    """facenet-pytorch's MTCNN (weights ship inside the wheel)."""

    name = "mtcnn"

    def __init__(self, min_prob: float = 0.9) -> None:
        from facenet_pytorch import MTCNN

        self.min_prob = min_prob
        self._mtcnn = MTCNN(keep_all=True, device="cpu", post_process=False)

    def detect(self, image: np.ndarray) -> list[Detection]:
        import torch

        with torch.no_grad():
            boxes, probs, points = self._mtcnn.detect(np.ascontiguousarray(image), landmarks=True)
        # MTCNN answers None (not an empty array) when it finds nothing, and object arrays otherwise.
        if boxes is None or points is None:
            return []
        out = []
        for b, p, pts in zip(boxes, probs, points):
            if p is None or float(p) < self.min_prob:
                continue
            out.append(Detection(np.asarray(b, dtype=np.float64), np.asarray(pts, dtype=np.float64).reshape(5, 2),
                                 float(p)))
        return out


def make_detector(name: str, **kwargs) -> YuNetDetector | MTCNNDetector:
    if name == "yunet":
        return YuNetDetector(**kwargs)
    if name == "mtcnn":
        return MTCNNDetector(**kwargs)
    raise ValueError(f"unknown detector {name!r}; choose one of {DETECTORS}")


def pick_central(detections: list[Detection], shape: tuple[int, ...]) -> Detection:
    """The face nearest the image centre, weighted by size: LFW labels the centred face."""
    h, w = shape[:2]
    c = np.array([w / 2.0, h / 2.0])

    def cost(d: Detection) -> float:
        centre = (d.box[:2] + d.box[2:]) / 2.0
        size = max(d.box[2] - d.box[0], d.box[3] - d.box[1], 1.0)
        return float(np.linalg.norm(centre - c) / size)

    return min(detections, key=cost)


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boxes (x0, y0, x1, y1); 0 when either is empty."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0.0) * max(h, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def pick_overlapping(detections: list[Detection], box: np.ndarray, min_iou: float = 0.3) -> Detection | None:
    """The detection whose box overlaps ``box`` (where a known face is) most, or None when none reaches
    ``min_iou``: finding a face again in an edited photo must find that face, not whichever is central."""
    best = max(detections, key=lambda d: box_iou(d.box, box), default=None)
    return best if best is not None and box_iou(best.box, box) >= min_iou else None


def crop_box_in_image(matrix: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """A box of the crop (x0, y0, x1, y1) in the image's pixels: the axis-aligned bounds of its corners mapped
    back through ``matrix`` (image -> crop)."""
    x0, y0, x1, y1 = box
    corners = np.array([[x0, y0, 1], [x1, y0, 1], [x0, y1, 1], [x1, y1, 1]], np.float64) @ invert_matrix(matrix).T
    return np.concatenate([corners.min(0), corners.max(0)])


def align_to_landmarks(image: np.ndarray, landmarks: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Warp ``image`` so ``landmarks`` fall on the canonical template of a ``size`` crop. Returns (crop, matrix)."""
    matrix = similarity_matrix(landmarks, canonical_landmarks(size))
    crop = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
    return crop, matrix


def invert_matrix(matrix: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(np.asarray(matrix, dtype=np.float64))


def warp_back(crop: np.ndarray, matrix: np.ndarray, shape: tuple[int, ...],
              interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Warp a crop (or a mask of the crop's size) back into an image of ``shape`` using the alignment matrix."""
    h, w = shape[:2]
    return cv2.warpAffine(crop, invert_matrix(matrix), (w, h), flags=interpolation, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=0)


class FaceAligner:
    """Detect faces and align them to the canonical crop of side ``size``."""

    def __init__(self, detector: str = "yunet", size: int = 224, **detector_kwargs) -> None:
        if detector not in DETECTORS:
            raise ValueError(f"unknown detector {detector!r}; choose one of {DETECTORS}")
        self.detector_name = detector
        self.size = size
        self._detector_kwargs = detector_kwargs
        self._detector: YuNetDetector | MTCNNDetector | None = None

    @property
    def detector(self) -> YuNetDetector | MTCNNDetector:
        # Built on first use: a fallback aligner that is never needed costs nothing (MTCNN is slow to build).
        if self._detector is None:
            self._detector = make_detector(self.detector_name, **self._detector_kwargs)
        return self._detector

    def detect(self, image: np.ndarray) -> list[Detection]:
        return self.detector.detect(image)

    def align_detection(self, image: np.ndarray, det: Detection) -> AlignedFace:
        crop, matrix = align_to_landmarks(image, det.landmarks, self.size)
        return AlignedFace(crop, matrix, det.landmarks, det.score, self.detector_name)

    def align(self, image: np.ndarray) -> AlignedFace:
        """Align the central face; raises :class:`NoFaceError` when there is none."""
        dets = self.detect(image)
        if not dets:
            raise NoFaceError(f"no face found by {self.detector_name}")
        return self.align_detection(image, pick_central(dets, image.shape))

    def align_all(self, image: np.ndarray) -> list[AlignedFace]:
        """Align every face in the image (video frames may hold several)."""
        return [self.align_detection(image, d) for d in self.detect(image)]
