"""The per-frame work of the paper's pipeline: detect every face, align it to the canonical crop, run the
de-identifier on the batch of crops, warp its output and blending mask back into the frame and blend them in,
restricted to the face region; a frame without a face passes through unchanged and is counted. Every stage is
timed."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from deidkit.data.templates import canonical_landmarks, similarity_matrix
from deidkit.pipeline.faces import (
    DEFAULT_DETECT_SIDE,
    HULLS,
    Dlib68,
    box_iou,
    canonical_face_box,
    face_weights,
    hull_weights,
    make_face_detector,
)

STAGES = ("decode", "detect", "align", "network", "blend", "encode")
DEFAULT_CROP = 224

#: The faces of a frame are aligned to a canonical crop sampled at least this many times finer than the largest
#: face in the frame (and never coarser than the de-identifier's own crop), so that the warp back to the frame
#: loses nothing. With the identity de-identifier on LFW photos, inside the face (sharpness = variance of the
#: Laplacian against the original's; ``tests/test_pipeline_roundtrip.py``): 1.5 x with Lanczos 1.00 and 58 dB;
#: the face's own resolution with Lanczos 0.94 and 52 dB; a fixed 224-px crop with bilinear sampling (the
#: kit's earlier path) 0.57 and 41 dB.
OVERSAMPLE = 1.5
#: Upper bound of that crop's side (a phone portrait's 2,000-pixel face is aligned at this side, not above).
MAX_WORK_SIDE = 1536
#: How crops are sampled from the frame and pasted back: Lanczos over 8 x 8 pixels keeps the finest detail.
RESAMPLING = cv2.INTER_LANCZOS4


def work_side(matrices: list[np.ndarray], crop_size: int, oversample: float = OVERSAMPLE,
              max_side: int = MAX_WORK_SIDE) -> int:
    """The side of the canonical crops one frame's faces are aligned to: ``oversample`` x the side of the
    largest face's ``crop_size`` crop in frame pixels, at least ``crop_size``, at most ``max_side``.
    ``matrices``: each face's frame -> ``crop_size`` crop similarity (its scale is crop pixels per frame pixel)."""
    if not matrices:
        return crop_size
    scale = min(float(np.sqrt(abs(np.linalg.det(np.asarray(m, np.float64)[:, :2])))) for m in matrices)
    native = crop_size / max(scale, 1e-6)
    return int(min(max_side, max(crop_size, np.ceil(oversample * native))))


class StageClock:
    """Wall-clock and CPU time per pipeline stage: ``mark()`` then ``lap(stage)``. The CPU times do not depend on
    what else runs on the machine; the wall times do.

    ``cpu_clock``: :func:`time.process_time` (all threads of the process; right when one thread runs the stages
    one after another) or :func:`time.thread_time` (the calling thread only; right when stages run in two threads
    at once, though it misses work that OpenCV or torch hand to their own worker threads)."""

    def __init__(self, cpu_clock: Any = time.process_time) -> None:
        self.wall = dict.fromkeys(STAGES, 0.0)
        self.cpu = dict.fromkeys(STAGES, 0.0)
        self._cpu_clock = cpu_clock
        self.mark()

    def mark(self) -> None:
        self._w, self._c = time.perf_counter(), self._cpu_clock()

    def lap(self, stage: str) -> None:
        w, c = time.perf_counter(), self._cpu_clock()
        self.wall[stage] += w - self._w
        self.cpu[stage] += c - self._c
        self._w, self._c = w, c



@dataclass
class FrameResult:
    frame: np.ndarray
    faces: int
    #: of ``faces``, those the detector missed in this frame, carried forward from an earlier frame's detection
    carried: int = 0


@dataclass
class PreparedFrame:
    """A frame with its faces detected and aligned (:meth:`FaceSwapper.prepare`), ready for the network; with
    ``crops`` None and detections, not aligned yet (:meth:`FaceSwapper.finish` aligns it first)."""

    frame: np.ndarray
    detections: list
    matrices: list[np.ndarray]
    crops: np.ndarray | None
    hulls: list[np.ndarray] | None
    carried: int = 0


class FaceSwapper:
    """The per-frame work: detect, align, de-identify, warp back, blend. Keeps per-stage time totals.

    Args:
        deidentifier: any kit de-identifier. One with ``deidentify_with_mask`` (the live network) supplies its
            own blending mask; for the others the whole crop is pasted (within the hull).
        detector: ``"yunet"`` or ``"mtcnn"``, or an object with ``.detect``.
        target: conditioning for de-identifiers that take one (the live network): an RGB image (the central face
            is used) or None for "each face is its own target".
        oversample: the faces are aligned to crops sampled this many times finer than the face in the frame
            (:func:`work_side`; at least the de-identifier's ``crop_size``), and pasted back with Lanczos
            resampling, so that what the de-identifier leaves unchanged comes back unchanged. The de-identifier
            receives crops of that side (every de-identifier of the kit takes any side and works at its own
            resolution inside). 0 aligns at ``crop_size`` exactly.
        strength: multiplies the blending weight (0: unchanged frame, 1: full effect).
        hull: ``"face"`` (default: the whole face, forehead and contour included, see ``face_weights``),
            ``"dlib68"`` (only within the convex hull of dlib's 68 landmarks, eroded) or ``"none"`` (whole crop).
        feather: width of the hull's soft edge as a fraction of the crop side.
        min_face: ignore detections whose box is smaller than this many pixels.
        detect_side: with ``detector`` a name, the longer side of the copy the fine detection pass searches
            (:class:`~deidkit.pipeline.faces.AnySizeDetector`'s ``max_side``; None: full resolution). The speed
            control for HD video, and a recall trade: measured on a 1920x1080 canvas of 40 LFW photos
            (``deidkit benchmark-detection``), faces 20 / 24 pixels wide are found 39 / 39 times at full
            resolution (177 ms a frame on one core), 33 / 39 at 1,280 (81 ms), 18 / 34 at 960 (50 ms); from 28
            pixels on, all 40 at every side.
        target_refresh: with no ``target`` (each face its own target), a face's representation is computed when
            it appears and reused for this many frames while the face is tracked (box overlap with the previous
            frame), then recomputed. 1 recomputes it on every frame. Reuse saves a recogniser pass per face and
            frame and keeps the conditioning steady, which steadies the output.
    """

    def __init__(self, deidentifier: Any, detector: Any = "yunet", target: np.ndarray | None = None,
                 strength: float = 1.0, hull: str = "face", feather: float = 0.04, min_face: int = 8,
                 target_refresh: int = 15, carry_frames: int = 5,
                 detect_side: int | None = DEFAULT_DETECT_SIDE, oversample: float = OVERSAMPLE) -> None:
        if not hasattr(deidentifier, "deidentify"):
            raise TypeError(f"{deidentifier!r} is not a de-identifier (it has no .deidentify)")
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must lie in [0, 1], got {strength}")
        if hull not in HULLS:
            raise ValueError(f"hull must be one of {HULLS}, got {hull!r}")
        self.deid = deidentifier
        self.detector = make_face_detector(detector, max_side=detect_side) if isinstance(detector, str) else detector
        self.crop_size = int(getattr(deidentifier, "crop_size", DEFAULT_CROP))
        self.template = canonical_landmarks(self.crop_size)
        if oversample < 0:
            raise ValueError(f"oversample must be >= 0, got {oversample}")
        self.oversample = oversample
        self.strength = strength
        self.feather = feather
        self.min_face = min_face
        self.landmarks68 = None
        self._weights = face_weights if hull == "face" else hull_weights
        if hull in ("face", "dlib68"):
            self.landmarks68 = Dlib68()
        self.clock = StageClock()
        if target_refresh < 1:
            raise ValueError(f"target_refresh must be >= 1, got {target_refresh}")
        self.target_refresh = target_refresh
        self._tracks: list[tuple[np.ndarray, Any, int]] = []  # (box, representation, age) of the previous frame
        if carry_frames < 0:
            raise ValueError(f"carry_frames must be >= 0, got {carry_frames}")
        self.carry_frames = carry_frames
        self._recent: list[tuple[Any, int]] = []  # (detection, frames since it was last detected)
        self.target = None
        if target is not None:
            self.target = self._target_representation(target)

    def _target_representation(self, image: np.ndarray) -> Any:
        if not hasattr(self.deid, "target_representation"):
            raise ValueError(f"de-identifier {self.deid.name!r} takes no target; --target applies to live models")
        from deidkit.data.alignment import align_to_landmarks, pick_central

        dets = self.detector.detect(image)
        if not dets:
            raise ValueError("no face found in the target image")
        crop, _ = align_to_landmarks(image, pick_central(dets, image.shape).landmarks, self.crop_size)
        return self.deid.target_representation(crop[None])

    def _self_targets(self, dets: list, crops: np.ndarray) -> Any:
        """Each face's own representation, reused along its track for ``target_refresh`` frames."""
        import torch

        reps: list[Any] = [None] * len(dets)
        ages = [0] * len(dets)
        for i, d in enumerate(dets):
            best, best_iou = None, 0.3
            for box, rep, age in self._tracks:
                iou = box_iou(d.box, box)
                if iou > best_iou and age + 1 < self.target_refresh:
                    best, best_iou = (rep, age + 1), iou
            if best is not None:
                reps[i], ages[i] = best
        todo = [i for i, r in enumerate(reps) if r is None]
        if todo:
            fresh = self.deid.target_representation(crops[todo])
            for j, i in enumerate(todo):
                reps[i] = fresh[j:j + 1]
        self._tracks = [(d.box, reps[i], ages[i]) for i, d in enumerate(dets)]
        return torch.cat(reps, 0)

    def reset(self) -> None:
        """Forget the faces of earlier frames (tracks and carried detections): the next frame is unrelated."""
        self._tracks = []
        self._recent = []

    def process(self, frame: np.ndarray) -> FrameResult:
        """De-identify every face of one RGB frame; a frame without faces is returned as is (same object)."""
        return self.finish(self.prepare(frame))

    def prepare(self, frame: np.ndarray, clock: StageClock | None = None, align: bool = True) -> PreparedFrame:
        """Detect and align every face of a frame (the half of :meth:`process` that needs no network, so that it
        can run for the next frame while the network works on this one). ``align=False`` leaves the alignment to
        :meth:`finish` (same result; it balances the two threads of the video pipeline when the network is cheap)."""
        clock = clock or self.clock
        clock.mark()
        dets = [d for d in self.detector.detect(frame) if min(d.box[2] - d.box[0], d.box[3] - d.box[1])
                >= self.min_face]
        carried = []
        if self.carry_frames:
            carried = [(d, age + 1) for d, age in self._recent
                       if age < self.carry_frames and all(box_iou(d.box, e.box) < 0.3 for e in dets)]
            self._recent = [(d, 0) for d in dets] + carried
        dets = dets + [d for d, _ in carried]
        clock.lap("detect")
        if not dets:
            return PreparedFrame(frame, [], [], None, None)
        prep = PreparedFrame(frame, dets, [], None, None, len(carried))
        return self.align(prep, clock) if align else prep

    def align(self, prep: PreparedFrame, clock: StageClock | None = None) -> PreparedFrame:
        """The detected faces of a prepared frame aligned to the canonical crop, with their blend regions."""
        clock = clock or self.clock
        clock.mark()
        frame, dets = prep.frame, prep.detections
        mats = [similarity_matrix(d.landmarks, self.template) for d in dets]
        c = work_side(mats, self.crop_size, self.oversample) if self.oversample else self.crop_size
        if c != self.crop_size:
            template = canonical_landmarks(c)
            mats = [similarity_matrix(d.landmarks, template) for d in dets]
        crops = np.stack([cv2.warpAffine(frame, m, (c, c), flags=RESAMPLING, borderMode=cv2.BORDER_REFLECT101)
                          for m in mats])
        hulls = None
        if self.landmarks68 is not None:
            box68 = canonical_face_box(c)
            hulls = [self._weights(self.landmarks68.in_box(cr, box68), c, self.feather) for cr in crops]
        clock.lap("align")
        return PreparedFrame(frame, dets, mats, crops, hulls, prep.carried)

    def finish(self, prep: PreparedFrame, clock: StageClock | None = None) -> FrameResult:
        """Run the de-identifier on a prepared frame's faces, warp the results back and blend them in. Frames must
        be finished in order (faces are tracked from one frame to the next)."""
        clock = clock or self.clock
        if prep.detections and prep.crops is None:
            prep = self.align(prep, clock)
        clock.mark()
        frame, dets, mats, crops, hulls = prep.frame, prep.detections, prep.matrices, prep.crops, prep.hulls
        if not dets:
            self._tracks = []
            return FrameResult(frame, 0)
        c = crops.shape[1]
        if hasattr(self.deid, "deidentify_with_mask"):
            targets = self.target
            if targets is None and hasattr(self.deid, "target_representation"):
                targets = self._self_targets(dets, crops)
            kw = {} if targets is None else {"targets": targets}
            if hulls is not None and getattr(self.deid, "colour_match", False):
                kw["blend_weights"] = np.stack(hulls)  # match the colour where the face is pasted
            raw, alpha = self.deid.deidentify_with_mask(crops, **kw)
        else:
            raw = self.deid.deidentify(crops)
            alpha = np.ones(crops.shape[:3], np.float32)
        clock.lap("network")
        out = frame.copy()
        h, w = frame.shape[:2]
        for i, m in enumerate(mats):
            a = alpha[i] * self.strength
            if hulls is not None:
                a = a * hulls[i]
            inv = cv2.invertAffineTransform(m)
            corners = np.array([[0, 0, 1], [c, 0, 1], [0, c, 1], [c, c, 1]], np.float64) @ inv.T
            x0, y0 = np.maximum(np.floor(corners.min(0)).astype(int), 0)
            x1, y1 = np.minimum(np.ceil(corners.max(0)).astype(int) + 1, [w, h])
            if x1 <= x0 or y1 <= y0:
                continue
            roi_m = inv.copy()
            roi_m[:, 2] -= (x0, y0)  # warp straight into the face's region of interest, not the whole frame
            size = (int(x1 - x0), int(y1 - y0))
            r = cv2.warpAffine(raw[i], roi_m, size, flags=RESAMPLING, borderMode=cv2.BORDER_REPLICATE)
            wa = cv2.warpAffine(np.ascontiguousarray(a, np.float32), roi_m, size, flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0)[..., None]
            roi = out[y0:y1, x0:x1].astype(np.float32)
            out[y0:y1, x0:x1] = np.clip(roi + wa * (r.astype(np.float32) - roi) + 0.5, 0, 255).astype(np.uint8)
        clock.lap("blend")
        return FrameResult(out, len(dets), prep.carried)


