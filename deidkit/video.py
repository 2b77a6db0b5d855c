"""De-identify every face of a video (or an image), frame by frame, with any de-identifier of the kit.

Per frame (the paper's pipeline): detect every face (YuNet by default, MTCNN as option) with five landmarks;
similarity-align each to the canonical crop; run the de-identifier on the batch of crops (the live network is
conditioned on a target representation: the face itself by default, or a given target image); warp its output and
blending mask back into the frame; blend per pixel with the mask, restricted to the convex hull of the face's
68 dlib landmarks (feathered). A frame without a face passes through unchanged and is counted.

Decoding uses OpenCV (it returns the frames actually stored, without the duplicates a constant-rate
re-timing would add); encoding pipes raw frames into the ``ffmpeg`` binary of the ``imageio-ffmpeg`` wheel
(H.264), which also copies the input's audio track, shifted so that it stays in sync. The output is written under
a temporary name beside ``OUT`` and renamed only when complete: an interrupted or failed run leaves no file under
``OUT``'s name. Unreadable, truncated, zero-frame and undecodable videos raise :class:`VideoError` naming the file.

Every stage is timed (decode, detect, align, network, blend, encode) and reported in :class:`VideoReport`.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm.auto import tqdm

from deidkit.data.templates import canonical_landmarks, similarity_matrix

STAGES = ("decode", "detect", "align", "network", "blend", "encode")
#: Container suffixes whose muxers take a copied AAC/MP3 track; others get the audio re-encoded to AAC.
_COPY_AUDIO = {".mp4": {"aac", "mp3", "alac", "ac3"}, ".m4v": {"aac", "mp3", "alac", "ac3"},
               ".mov": {"aac", "mp3", "alac", "ac3", "pcm_s16le"}, ".mkv": None}
DEFAULT_CROP = 224


class VideoError(RuntimeError):
    """A video cannot be read or written; the message names the file and the problem."""


# ------------------------------------------------------------------------------------------------- ffmpeg


def ffmpeg_exe() -> str:
    """The ffmpeg binary shipped in the ``imageio-ffmpeg`` wheel (no system ffmpeg needed)."""
    try:
        import imageio_ffmpeg
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise VideoError("the 'imageio-ffmpeg' package is needed to write videos: pip install imageio-ffmpeg") from exc
    return imageio_ffmpeg.get_ffmpeg_exe()


@dataclass
class VideoInfo:
    """What a video holds, from ffmpeg's header parse and OpenCV's decoder."""

    path: str
    width: int
    height: int
    fps: float
    frame_count: int
    codec: str
    video_start: float
    audio_codec: str | None
    audio_start: float = 0.0

    @property
    def has_audio(self) -> bool:
        return self.audio_codec is not None


def _ffmpeg_header(path: Path) -> str:
    try:
        res = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True,
                             timeout=60, errors="replace")
    except subprocess.TimeoutExpired:
        raise VideoError(f"{path}: ffmpeg timed out reading the header; the file is unreadable") from None
    return res.stderr


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Read a video's header; raises :class:`VideoError` naming the file when it is missing, empty, not a video,
    truncated (index missing), has no video stream or a codec this build cannot decode."""
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: no such video file")
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: empty file (0 bytes)")
    header = _ffmpeg_header(path)
    with open(path, "rb") as f:
        head = f.read(12)
    looks_mp4 = head[4:8] in (b"ftyp", b"mdat", b"moov", b"free", b"wide", b"skip")
    if "moov atom not found" in header and looks_mp4:
        raise VideoError(f"{path}: truncated or incomplete video (its MP4 index, the 'moov' atom, is missing: "
                         "the recording or download was probably cut off)")
    if "Invalid data found when processing input" in header or "Input #0" not in header:
        last = header.strip().splitlines()[-1] if header.strip() else "no output"
        raise VideoError(f"{path}: not a readable video file ({last})")
    vline = next((ln for ln in header.splitlines() if re.search(r"Stream #\d+:\d+.*: Video:", ln)), None)
    if vline is None:
        raise VideoError(f"{path}: no video stream (audio-only or not a video)")
    codec = re.search(r"Video: (\w+)", vline).group(1)
    aline = next((ln for ln in header.splitlines() if re.search(r"Stream #\d+:\d+.*: Audio:", ln)), None)
    audio = re.search(r"Audio: (\w+)", aline).group(1) if aline else None
    m = re.search(r"start (-?[\d.]+)", vline)
    start = float(m.group(1)) if m else 0.0
    ma = re.search(r"start (-?[\d.]+)", aline) if aline else None
    audio_start = float(ma.group(1)) if ma else start

    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise VideoError(f"{path}: video codec '{codec}' cannot be decoded by this OpenCV build "
                             "(unsupported codec); convert it, e.g. ffmpeg -i IN -c:v libx264 OUT.mp4")
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    finally:
        cap.release()
    if w <= 0 or h <= 0:
        raise VideoError(f"{path}: video stream has no frame size; the file is corrupt")
    if not np.isfinite(fps) or fps <= 0:
        fps = 25.0  # a stream without a declared rate: ffmpeg's own default
    return VideoInfo(str(path), w, h, fps, n, codec, start, audio, audio_start)


class VideoReader:
    """Frames of a video as RGB uint8 arrays. Use as a context manager; iterate :meth:`frames`.

    After the last frame, a video that gave no frame at all, or clearly fewer than its container declares,
    raises :class:`VideoError` (truncated or corrupt) instead of ending quietly."""

    def __init__(self, path: str | os.PathLike, strict: bool = True) -> None:
        self.info = probe_video(path)
        self.path = Path(path)
        self.strict = strict
        self.frames_read = 0
        self._cap: cv2.VideoCapture | None = None

    width = property(lambda self: self.info.width)
    height = property(lambda self: self.info.height)
    fps = property(lambda self: self.info.fps)
    frame_count = property(lambda self: self.info.frame_count)

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def frames(self, max_frames: int | None = None) -> Iterator[np.ndarray]:
        self.close()
        self._cap = cv2.VideoCapture(str(self.path))
        self.frames_read = 0
        while max_frames is None or self.frames_read < max_frames:
            ok, bgr = self._cap.read()
            if not ok:
                break
            self.frames_read += 1
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        self.close()
        if self.frames_read == 0:
            raise VideoError(f"{self.path}: zero frames could be decoded (codec '{self.info.codec}'); the video is "
                             "empty, truncated or uses a codec this OpenCV build cannot decode")
        declared = self.info.frame_count
        complete = max_frames is not None and self.frames_read >= max_frames
        if self.strict and not complete and declared > 0 and self.frames_read < declared - max(2, declared // 100):
            raise VideoError(f"{self.path}: decoded {self.frames_read} of the {declared} frames its container "
                             "declares; the file is truncated or corrupt")


def open_video(path: str | os.PathLike, strict: bool = True) -> VideoReader:
    """A :class:`VideoReader` for ``path`` (checked at once: missing, unreadable or undecodable files raise)."""
    return VideoReader(path, strict=strict)


def read_frames(path: str | os.PathLike, indices: list[int]) -> dict[int, np.ndarray]:
    """The frames at ``indices`` (0-based) of a video, as ``{index: RGB frame}``; decodes up to the last one."""
    wanted = set(indices)
    if not wanted:
        return {}
    if min(wanted) < 0:
        raise ValueError(f"frame indices must be >= 0, got {sorted(wanted)}")
    with open_video(path, strict=False) as video:
        got = {i: f for i, f in enumerate(video.frames(max(wanted) + 1)) if i in wanted}
    missing = sorted(wanted - got.keys())
    if missing:
        raise VideoError(f"{path}: has only {video.frames_read} frames; frames {missing} do not exist")
    return got


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


def _partial_path(out: Path) -> Path:
    return out.with_name(f".{out.stem}.partial-{os.getpid()}{out.suffix}")


class VideoWriter:
    """H.264 video written through an ffmpeg pipe to a temporary file, renamed to ``out`` by :meth:`commit`.

    ``audio_from``: a video whose first audio track is copied (or re-encoded to AAC where the container needs it),
    kept in sync with the frames: where the input's sound starts before its first picture (the Hamilton clip:
    0.84 s), that lead-in is cut so both streams start together; where the picture starts first, the sound is
    delayed by the difference. ``audio_seconds`` limits the sound to the frames actually written.
    Leaving the context without :meth:`commit` (an exception, Ctrl-C) deletes the temporary file."""

    def __init__(self, out: str | os.PathLike, width: int, height: int, fps: float,
                 audio_from: VideoInfo | None = None, crf: int = 18, preset: str = "veryfast",
                 audio_seconds: float | None = None) -> None:
        self.out = Path(out)
        if self.out.suffix.lower() not in {".mp4", ".m4v", ".mov", ".mkv", ".avi"}:
            raise VideoError(f"{self.out}: unsupported output container '{self.out.suffix}' "
                             "(use .mp4, .m4v, .mov, .mkv or .avi)")
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = _partial_path(self.out)
        self.width, self.height = width, height
        rate = Fraction(fps).limit_denominator(1001)
        cmd = [ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-s", f"{width}x{height}", "-r", f"{rate.numerator}/{rate.denominator}"]
        self.audio = "none in input"
        cmd += ["-i", "pipe:0"]
        if audio_from is not None and audio_from.has_audio:
            allowed = _COPY_AUDIO.get(self.out.suffix.lower(), set())
            copy = allowed is None or audio_from.audio_codec in allowed
            lead = audio_from.video_start - audio_from.audio_start
            if lead > 0:  # sound before the first picture: start the sound at the first picture
                cmd += ["-ss", f"{lead:.6f}"]
            elif lead < 0:  # picture first: delay the sound
                cmd += ["-itsoffset", f"{-lead:.6f}"]
            if audio_seconds is not None:  # a run cut short keeps only the matching stretch of sound
                cmd += ["-t", f"{audio_seconds:.6f}"]
            cmd += ["-i", audio_from.path, "-map", "0:v:0", "-map", "1:a:0",
                    *(["-c:a", "copy"] if copy else ["-c:a", "aac", "-b:a", "160k"])]
            self.audio = f"kept ({audio_from.audio_codec}, {'copied' if copy else 're-encoded to aac'})"
        else:
            cmd += ["-map", "0:v:0"]
        # yuv420p needs even sides; pad by one pixel where needed rather than fail.
        cmd += ["-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-pix_fmt", "yuv420p",
                "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"]
        if self.out.suffix.lower() in {".mp4", ".m4v", ".mov"}:
            cmd += ["-movflags", "+faststart"]
        cmd += [str(self.tmp)]
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.frames_written = 0
        self.encoder_cpu_s = float("nan")
        self._done = False

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if not self._done:
            self.abort()

    def write(self, frame: np.ndarray) -> None:
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise ValueError(f"frame must be uint8 ({self.height}, {self.width}, 3), got {frame.dtype} {frame.shape}")
        try:
            self._proc.stdin.write(np.ascontiguousarray(frame).tobytes())
        except BrokenPipeError:
            err = self._proc.stderr.read().decode(errors="replace").strip()
            self.abort()
            raise VideoError(f"{self.out}: ffmpeg stopped while writing ({err or 'broken pipe'})") from None
        self.frames_written += 1

    def commit(self) -> Path:
        """Finish encoding and move the file to its name."""
        self._proc.stdin.close()
        err = self._proc.stderr.read().decode(errors="replace").strip()
        # wait4 reaps the encoder and reports its own CPU time (user + system)
        _, status, usage = os.wait4(self._proc.pid, 0)
        self._proc.returncode = rc = os.waitstatus_to_exitcode(status)
        self.encoder_cpu_s = usage.ru_utime + usage.ru_stime
        if rc != 0 or not self.tmp.is_file():
            self.abort()
            raise VideoError(f"{self.out}: ffmpeg failed (exit {rc}): {err}")
        os.replace(self.tmp, self.out)
        self._done = True
        return self.out

    def abort(self) -> None:
        """Stop ffmpeg and delete the temporary file (nothing is left under ``out``)."""
        self._done = True
        try:
            if self._proc.stdin and not self._proc.stdin.closed:
                self._proc.stdin.close()
        except OSError:
            pass
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        self.tmp.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------------- frames


def make_face_detector(detector: str = "yunet", **kwargs: Any):
    """A face detector with ``.detect(rgb) -> list[Detection]`` (boxes and five landmarks, image-left eye
    first), from :mod:`deidkit.data.alignment`."""
    from deidkit.data.alignment import make_detector

    return make_detector(detector, **kwargs)


def _hull_weights(landmarks68: np.ndarray, size: int, feather: float) -> np.ndarray:
    """Float mask (size, size): 1 inside the convex hull of the landmarks, 0 outside, feathered inward so that
    the pasted region never extends beyond the hull."""
    mask = np.zeros((size, size), np.uint8)
    hull = cv2.convexHull(np.round(landmarks68).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 255)
    k = max(1, int(round(feather * size)))
    mask = cv2.erode(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1)))
    return cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), sigmaX=k / 2.0 + 1e-3)


def _face_weights(landmarks68: np.ndarray, size: int, feather: float) -> np.ndarray:
    """Float mask (size, size) covering the whole face: the hull of dlib's 68 landmarks (jaw line, brows, nose,
    mouth) extended up over the forehead (the brows lifted by 0.8 of the brow-to-nose-tip height), dilated by
    ``feather`` so that the jaw and the face contour themselves are replaced, with a soft edge outside them.
    The plain landmark hull (``_hull_weights``) keeps the contour and the forehead, which carry identity too."""
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


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


@dataclass
class FrameResult:
    frame: np.ndarray
    faces: int


@dataclass
class PreparedFrame:
    """A frame with its faces detected and aligned (:meth:`FaceSwapper.prepare`), ready for the network."""

    frame: np.ndarray
    detections: list
    matrices: list[np.ndarray]
    crops: np.ndarray | None
    hulls: list[np.ndarray] | None


class FaceSwapper:
    """The per-frame work: detect, align, de-identify, warp back, blend. Keeps per-stage time totals.

    Args:
        deidentifier: any kit de-identifier. One with ``deidentify_with_mask`` (the live network) supplies its
            own blending mask; for the others the whole crop is pasted (within the hull).
        detector: ``"yunet"`` or ``"mtcnn"``, or an object with ``.detect``.
        target: conditioning for de-identifiers that take one (the live network): an RGB image (the central face
            is used) or None for "each face is its own target".
        strength: multiplies the blending weight (0: unchanged frame, 1: full effect).
        hull: ``"face"`` (default: the whole face, forehead and contour included, see ``_face_weights``),
            ``"dlib68"`` (only within the convex hull of dlib's 68 landmarks, eroded) or ``"none"`` (whole crop).
        feather: width of the hull's soft edge as a fraction of the crop side.
        min_face: ignore detections whose box is smaller than this many pixels.
        target_refresh: with no ``target`` (each face its own target), a face's representation is computed when
            it appears and reused for this many frames while the face is tracked (box overlap with the previous
            frame), then recomputed. 1 recomputes it on every frame. Reuse saves a recogniser pass per face and
            frame and keeps the conditioning steady, which steadies the output.
    """

    def __init__(self, deidentifier: Any, detector: Any = "yunet", target: np.ndarray | None = None,
                 strength: float = 1.0, hull: str = "face", feather: float = 0.04, min_face: int = 8,
                 target_refresh: int = 15) -> None:
        if not hasattr(deidentifier, "deidentify"):
            raise TypeError(f"{deidentifier!r} is not a de-identifier (it has no .deidentify)")
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must lie in [0, 1], got {strength}")
        if hull not in HULLS:
            raise ValueError(f"hull must be one of {HULLS}, got {hull!r}")
        self.deid = deidentifier
        self.detector = make_face_detector(detector) if isinstance(detector, str) else detector
        self.crop_size = int(getattr(deidentifier, "crop_size", DEFAULT_CROP))
        self.template = canonical_landmarks(self.crop_size)
        self.strength = strength
        self.feather = feather
        self.min_face = min_face
        self.landmarks68 = None
        self._weights = _face_weights if hull == "face" else _hull_weights
        if hull in ("face", "dlib68"):
            from deidkit.eval.temporal import Dlib68, canonical_face_box

            self.landmarks68 = Dlib68()
            self._box68 = canonical_face_box(self.crop_size)
        self.clock = StageClock()
        if target_refresh < 1:
            raise ValueError(f"target_refresh must be >= 1, got {target_refresh}")
        self.target_refresh = target_refresh
        self._tracks: list[tuple[np.ndarray, Any, int]] = []  # (box, representation, age) of the previous frame
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
                iou = _iou(d.box, box)
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

    def process(self, frame: np.ndarray) -> FrameResult:
        """De-identify every face of one RGB frame; a frame without faces is returned as is (same object)."""
        return self.finish(self.prepare(frame))

    def prepare(self, frame: np.ndarray, clock: StageClock | None = None) -> PreparedFrame:
        """Detect and align every face of a frame (the half of :meth:`process` that needs no network, so that it
        can run for the next frame while the network works on this one)."""
        clock = clock or self.clock
        clock.mark()
        dets = [d for d in self.detector.detect(frame) if min(d.box[2] - d.box[0], d.box[3] - d.box[1])
                >= self.min_face]
        clock.lap("detect")
        if not dets:
            return PreparedFrame(frame, [], [], None, None)
        c = self.crop_size
        mats, crops = [], []
        for d in dets:
            m = similarity_matrix(d.landmarks, self.template)
            mats.append(m)
            crops.append(cv2.warpAffine(frame, m, (c, c), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101))
        crops = np.stack(crops)
        hulls = None
        if self.landmarks68 is not None:
            hulls = [self._weights(self.landmarks68.in_box(cr, self._box68), c, self.feather) for cr in crops]
        clock.lap("align")
        return PreparedFrame(frame, dets, mats, crops, hulls)

    def finish(self, prep: PreparedFrame, clock: StageClock | None = None) -> FrameResult:
        """Run the de-identifier on a prepared frame's faces, warp the results back and blend them in. Frames must
        be finished in order (faces are tracked from one frame to the next)."""
        clock = clock or self.clock
        clock.mark()
        frame, dets, mats, crops, hulls = prep.frame, prep.detections, prep.matrices, prep.crops, prep.hulls
        if not dets:
            self._tracks = []
            return FrameResult(frame, 0)
        c = self.crop_size
        if hasattr(self.deid, "deidentify_with_mask"):
            targets = self.target
            if targets is None and hasattr(self.deid, "target_representation"):
                targets = self._self_targets(dets, crops)
            kw = {} if targets is None else {"targets": targets}
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
            r = cv2.warpAffine(raw[i], roi_m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            wa = cv2.warpAffine(np.ascontiguousarray(a, np.float32), roi_m, size, flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0)[..., None]
            roi = out[y0:y1, x0:x1].astype(np.float32)
            out[y0:y1, x0:x1] = np.clip(roi + wa * (r.astype(np.float32) - roi) + 0.5, 0, 255).astype(np.uint8)
        clock.lap("blend")
        return FrameResult(out, len(dets))


# ------------------------------------------------------------------------------------------------ reports


@dataclass
class VideoReport:
    """What :func:`deidentify_video` did, with the time spent in each stage."""

    input: str
    output: str
    deidentifier: str
    width: int
    height: int
    fps_in: float
    frames: int
    frames_with_faces: int
    frames_without_faces: int
    faces: int
    audio: str
    wall_s: float
    stage_s: dict[str, float] = field(default_factory=dict)
    cpu_s: float = float("nan")
    encoder_cpu_s: float = float("nan")
    stage_cpu_s: dict[str, float] = field(default_factory=dict)
    #: decode, detect and align ran one frame ahead in a second thread (stage times overlap)
    prefetch: bool = False

    @property
    def fps(self) -> float:
        """Frames per second of the whole pipeline (wall clock, decode to encode)."""
        return self.frames / self.wall_s if self.wall_s > 0 else float("nan")

    @property
    def cpu_fps(self) -> float:
        """Frames per second of CPU time (this process's threads plus the ffmpeg encoder): what the pipeline
        would reach on an otherwise idle machine with enough cores for its processes, independent of load."""
        total = self.cpu_s + self.encoder_cpu_s
        return self.frames / total if total > 0 else float("nan")

    def stage_ms_per_frame(self) -> dict[str, float]:
        """Wall-clock milliseconds per frame in each stage."""
        return {k: 1000.0 * v / max(self.frames, 1) for k, v in self.stage_s.items()}

    def stage_cpu_ms_per_frame(self) -> dict[str, float]:
        """CPU milliseconds per frame in each stage (this process; the encoder's own CPU is ``encoder_cpu_s``)."""
        return {k: 1000.0 * v / max(self.frames, 1) for k, v in self.stage_cpu_s.items()}

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["fps"] = self.fps
        d["cpu_fps"] = self.cpu_fps
        d["stage_ms_per_frame"] = self.stage_ms_per_frame()
        d["stage_cpu_ms_per_frame"] = self.stage_cpu_ms_per_frame()
        return d

    def __str__(self) -> str:
        stages = ", ".join(f"{k} {v:.1f}" for k, v in self.stage_ms_per_frame().items())
        if self.prefetch:
            stages += "; decode, detect and align ran one frame ahead in a second thread"
        return (f"{self.output}: {self.frames} frames ({self.frames_with_faces} with faces, {self.faces} faces; "
                f"{self.frames_without_faces} without a face passed unchanged), {self.fps:.1f} frames/s "
                f"[ms/frame: {stages}]; CPU time {1000 * self.cpu_s / max(self.frames, 1):.1f} ms/frame here + "
                f"{1000 * self.encoder_cpu_s / max(self.frames, 1):.1f} in the encoder; audio {self.audio}")


def _load_target(target: str | os.PathLike | np.ndarray | None) -> np.ndarray | None:
    if target is None or isinstance(target, np.ndarray):
        return target
    from deidkit.data.images import load_image

    return load_image(target)


def deidentify_video(inp: str | os.PathLike, out: str | os.PathLike, deidentifier: Any,
                     target: str | os.PathLike | np.ndarray | None = None, detector: Any = "yunet",
                     strength: float = 1.0, hull: str = "face", max_frames: int | None = None,
                     keep_audio: bool = True, crf: int = 18, progress: bool = True,
                     target_refresh: int = 15, swapper: FaceSwapper | None = None,
                     prefetch: bool = True) -> VideoReport:
    """De-identify every face of video ``inp`` into ``out`` (H.264; audio kept when the input has it).

    ``target``: an image (path or RGB array) whose face conditions the live network; default each face itself
    (its representation reused along the face's track for ``target_refresh`` frames, see :class:`FaceSwapper`).
    ``max_frames`` stops early (the output is then shorter, and the audio is cut to match). Nothing is written under
    ``out``'s name unless the whole run succeeds.

    ``prefetch``: decode, detect and align the next frame in a second thread while the network and the blending
    work on the current one (both release the GIL for most of their work, so two cores overlap them). The output
    is the same as without it; the stages' times then overlap, so they add up to more than the wall time."""
    inp, out = Path(inp), Path(out)
    if inp.resolve() == out.resolve():
        raise VideoError(f"{out}: output would overwrite the input")
    reader = open_video(inp)
    sw = swapper or FaceSwapper(deidentifier, detector, _load_target(target), strength, hull,
                                target_refresh=target_refresh)
    # One clock per thread; with two threads each counts only its own thread's CPU time.
    clock = StageClock(time.thread_time) if prefetch else sw.clock
    ahead = StageClock(time.thread_time) if prefetch else clock
    info = reader.info
    n_total = info.frame_count if max_frames is None else min(max_frames, info.frame_count or max_frames)
    frames = with_faces = faces = 0
    start = time.perf_counter()
    cpu0 = time.process_time()
    audio_s = None if max_frames is None else max_frames / info.fps
    with VideoWriter(out, info.width, info.height, info.fps, audio_from=info if keep_audio else None,
                     crf=crf, audio_seconds=audio_s) as writer, reader, ThreadPoolExecutor(1) as pool:
        it = reader.frames(max_frames)

        def next_prepared() -> PreparedFrame | None:
            ahead.mark()
            frame = next(it, None)
            ahead.lap("decode")
            return None if frame is None else sw.prepare(frame, ahead)

        bar = tqdm(total=n_total or None, desc=f"de-identify {inp.name}", unit="frame", disable=not progress)
        pending = pool.submit(next_prepared) if prefetch else None
        while True:
            if prefetch:
                prep = pending.result()
                if prep is not None:  # the next frame decodes and its faces are found while this one finishes
                    pending = pool.submit(next_prepared)
            else:
                prep = next_prepared()
            if prep is None:
                break
            res = sw.finish(prep, clock)
            clock.mark()
            writer.write(res.frame)
            clock.lap("encode")
            frames += 1
            with_faces += res.faces > 0
            faces += res.faces
            bar.update(1)
        bar.close()
        cpu = time.process_time() - cpu0
        clock.mark()
        writer.commit()
        clock.lap("encode")
    wall = time.perf_counter() - start
    stage_wall = {k: clock.wall[k] + (ahead.wall[k] if prefetch else 0.0) for k in STAGES}
    stage_cpu = {k: clock.cpu[k] + (ahead.cpu[k] if prefetch else 0.0) for k in STAGES}
    return VideoReport(str(inp), str(out), str(getattr(deidentifier, "name", type(deidentifier).__name__)),
                       info.width, info.height, info.fps, frames, with_faces, frames - with_faces, faces,
                       writer.audio if keep_audio else "dropped (keep_audio=False)", wall, stage_wall, cpu,
                       writer.encoder_cpu_s, stage_cpu, prefetch)


@dataclass
class ImageReport:
    input: str
    output: str
    deidentifier: str
    faces: int
    wall_s: float


def deidentify_image(inp: str | os.PathLike, out: str | os.PathLike, deidentifier: Any,
                     target: str | os.PathLike | np.ndarray | None = None, detector: Any = "yunet",
                     strength: float = 1.0, hull: str = "face") -> ImageReport:
    """De-identify every face of image ``inp`` into ``out`` (written atomically). An image without a face is
    written unchanged and reported with ``faces == 0``."""
    from deidkit.data.images import load_image, save_image

    start = time.perf_counter()
    image = load_image(inp)
    sw = FaceSwapper(deidentifier, detector, _load_target(target), strength, hull)
    res = sw.process(image)
    save_image(out, res.frame)
    return ImageReport(str(inp), str(out), str(getattr(deidentifier, "name", "")), res.faces,
                       time.perf_counter() - start)


# ---------------------------------------------------------------------------------------------- the CLI


def resolve_deidentifier(name: str, run_dir: str | None = None, device: str = "cpu") -> Any:
    """``live`` / ``fadenet`` (the shipped pretrained models), ``live_<profile>[_stage<k>]`` (a live network
    trained in the cache, or in ``run_dir``), ``fadenet_<profile>`` or any baseline name of
    :func:`deidkit.baselines.get_deidentifier`. An unknown name raises ``ValueError`` (one line on the CLI)."""
    if name.startswith("live") and run_dir is not None:
        from deidkit.train.live import live_deidentifier_by_name

        return live_deidentifier_by_name(name, run_dir=run_dir, device=device)
    from deidkit.deidentifiers import load_deidentifier

    try:
        return load_deidentifier(name)
    except KeyError as exc:
        raise ValueError(str(exc.args[0]) if exc.args else f"unknown method {name!r}") from None


def _common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", default="live", help="de-identifier: live or fadenet (the shipped models; live is "
                   "the default), live_<profile> / fadenet_<profile> (trained in the cache), or a baseline such as "
                   "blur_sigma8, pixelate_16px, blackbox, noise_sigma32")
    p.add_argument("--run-dir", default=None, help="folder of a trained live model (default: the profile's cache)")
    p.add_argument("--target", default=None, help="image of the person whose representation conditions the live "
                   "network (default: each face is its own target)")
    p.add_argument("--strength", type=float, default=1.0, help="blending weight multiplier in [0, 1]")
    p.add_argument("--detector", default="yunet", choices=["yunet", "mtcnn"])
    p.add_argument("--hull", default="face", choices=list(HULLS),
                   help="blend region: the whole face with forehead and contour (default), the convex hull of "
                   "dlib's 68 landmarks, or the whole crop")


def _video_cmd(args: argparse.Namespace) -> int:
    deid = resolve_deidentifier(args.method, args.run_dir)
    rep = deidentify_video(args.input, args.output, deid, target=args.target, detector=args.detector,
                           strength=args.strength, hull=args.hull, max_frames=args.max_frames,
                           keep_audio=not args.no_audio, crf=args.crf, target_refresh=args.target_refresh)
    print(rep)
    return 0


def _image_cmd(args: argparse.Namespace) -> int:
    deid = resolve_deidentifier(args.method, args.run_dir)
    rep = deidentify_image(args.input, args.output, deid, target=args.target, detector=args.detector,
                           strength=args.strength, hull=args.hull)
    if rep.faces == 0:
        print(f"warning: no face found in {args.input}; written unchanged to {args.output}", file=sys.stderr)
    else:
        print(f"{args.output}: {rep.faces} face(s) de-identified with {rep.deidentifier} in {rep.wall_s:.2f} s")
    return 0


def add_video_commands(subparsers: Any) -> None:
    """Add ``video IN OUT`` and ``image IN OUT`` to the ``deidkit`` command's subparsers."""
    p = subparsers.add_parser("video", help="de-identify every face of a video (audio kept)")
    p.add_argument("input")
    p.add_argument("output")
    _common_args(p)
    p.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    p.add_argument("--no-audio", action="store_true", help="drop the audio track")
    p.add_argument("--crf", type=int, default=18, help="H.264 quality (0 lossless .. 51 worst; default 18)")
    p.add_argument("--target-refresh", type=int, default=15,
                   help="frames a face's own representation is reused while tracked (1: every frame)")
    p.set_defaults(func=_video_cmd)

    p = subparsers.add_parser("image", help="de-identify every face of an image")
    p.add_argument("input")
    p.add_argument("output")
    _common_args(p)
    p.set_defaults(func=_image_cmd)
