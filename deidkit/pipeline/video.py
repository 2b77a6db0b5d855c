"""De-identify every face of a video (or an image) with any de-identifier of the kit: decode, the per-frame
pipeline of :mod:`deidkit.pipeline.swap`, encode; reports with the time of each stage."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from deidkit.pipeline.faces import DEFAULT_DETECT_SIDE
from deidkit.pipeline.io import VideoError, VideoWriter, open_video
from deidkit.pipeline.swap import STAGES, FaceSwapper, PreparedFrame, StageClock


class NoFaceError(ValueError):
    """``strict``: an input where no face was found is not written."""


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
    #: faces the detector missed, de-identified at their last alignment (see ``FaceSwapper(carry_frames=...)``)
    faces_carried: int = 0
    #: indices (from 0) of the frames where no face was found (passed unchanged)
    faceless_frames: list[int] = field(default_factory=list)
    #: torch and OpenCV threads during the run (None: the libraries' settings as they were)
    threads: int | None = None

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
        return (f"{self.output}: {self.frames} frames ({self.frames_with_faces} with faces, {self.faces} faces, "
                f"{self.faces_carried} of them carried over a missed detection; "
                f"{self.frames_without_faces} without a face passed unchanged), {self.fps:.1f} frames/s "
                f"[ms/frame: {stages}]; CPU time {1000 * self.cpu_s / max(self.frames, 1):.1f} ms/frame here + "
                f"{1000 * self.encoder_cpu_s / max(self.frames, 1):.1f} in the encoder; audio {self.audio}")


@contextmanager
def stage_threads(threads: int | None) -> Iterator[None]:
    """Torch's and OpenCV's thread pools limited to ``threads`` each for a block (restored after); None: as they are.

    The video pipeline runs two threads of its own (the next frame's decode, detection and alignment beside this
    frame's network and blending); with each library also spreading its work over every core, the threads fight
    over the cores: on 2 cores, 1080p with ~11 faces a frame ran at 4.6 frames/s with the libraries' defaults and
    6.3 with one thread each (2026-12-04). Outputs may differ from a single-threaded run by one level in a few pixels
    (torch's sums in another order)."""
    if threads is None:
        yield
        return
    import cv2
    import torch

    before = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before[0])
        cv2.setNumThreads(before[1])


def default_stage_threads() -> int:
    """Threads per pipeline thread: the machine's cores shared between the two pipeline threads."""
    return max(1, (os.cpu_count() or 2) // 2)


#: frames between two decisions of where the alignment runs (see :func:`align_where`)
BALANCE_EVERY = 10


def align_where(ahead_wall: dict[str, float], main_wall: dict[str, float], frames: int) -> bool:
    """True: align in the prefetch thread (with decoding and detection), False: in the main thread (with the
    network, blending and encoding), whichever leaves the busier thread less to do, from the stage times so far.
    The output is the same either way. With the live network the main thread is the busier one and alignment stays
    ahead; with blur the detection thread is (1080p: decode + detect ~90 ms, align ~25, blur + blend + encode ~45)."""
    n = max(frames, 1)
    detect = (ahead_wall["decode"] + ahead_wall["detect"]) / n
    align = (ahead_wall["align"] + main_wall["align"]) / n
    finish = (main_wall["network"] + main_wall["blend"] + main_wall["encode"]) / n
    return max(detect + align, finish) <= max(detect, finish + align)


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
                     prefetch: bool = True, carry_frames: int = 5, require_face: bool = False,
                     threads: int | None = -1, detect_side: int | None = DEFAULT_DETECT_SIDE) -> VideoReport:
    """De-identify every face of video ``inp`` into ``out`` (H.264; audio kept when the input has it).

    ``target``: an image (path or RGB array) whose face conditions the live network; default each face itself
    (its representation reused along the face's track for ``target_refresh`` frames, see :class:`FaceSwapper`).
    ``max_frames`` stops early (the output is then shorter, and the audio is cut to match). Nothing is written under
    ``out``'s name unless the whole run succeeds.

    ``prefetch``: decode, detect and align the next frame in a second thread while the network and the blending
    work on the current one (both release the GIL for most of their work, so two cores overlap them). The output
    is the same as without it; the stages' times then overlap, so they add up to more than the wall time.

    ``require_face``: raise :class:`NoFaceError` (nothing written) when no frame had a
    face.

    ``threads``: torch and OpenCV threads during the run (see :func:`stage_threads`); -1 (default): with
    ``prefetch``, half the cores each (one on a 2-core machine), else as they are; None: as they are.

    ``detect_side``: see :class:`FaceSwapper` (smaller is faster and misses more small faces)."""
    if threads == -1:
        threads = default_stage_threads() if prefetch else None
    with stage_threads(threads):
        rep = _deidentify_video(inp, out, deidentifier, target, detector, strength, hull, max_frames, keep_audio,
                                crf, progress, target_refresh, swapper, prefetch, carry_frames, require_face,
                                detect_side)
    rep.threads = threads
    return rep


def _deidentify_video(inp, out, deidentifier, target, detector, strength, hull, max_frames, keep_audio, crf,
                      progress, target_refresh, swapper, prefetch, carry_frames, require_face,
                      detect_side) -> VideoReport:
    inp, out = Path(inp), Path(out)
    if inp.resolve() == out.resolve():
        raise VideoError(f"{out}: output would overwrite the input")
    reader = open_video(inp)
    sw = swapper or FaceSwapper(deidentifier, detector, _load_target(target), strength, hull,
                                target_refresh=target_refresh, carry_frames=carry_frames, detect_side=detect_side)
    # One clock per thread; with two threads each counts only its own thread's CPU time.
    clock = StageClock(time.thread_time) if prefetch else sw.clock
    ahead = StageClock(time.thread_time) if prefetch else clock
    info = reader.info
    n_total = info.frame_count if max_frames is None else min(max_frames, info.frame_count or max_frames)
    frames = with_faces = faces = carried = 0
    faceless: list[int] = []
    start = time.perf_counter()
    cpu0 = time.process_time()
    audio_s = None if max_frames is None else max_frames / info.fps
    with VideoWriter(out, info.width, info.height, info.fps, audio_from=info if keep_audio else None,
                     crf=crf, audio_seconds=audio_s) as writer, reader, ThreadPoolExecutor(1) as pool:
        it = reader.frames(max_frames)

        align_ahead = True  # where the alignment runs: revised every BALANCE_EVERY frames (see align_where)

        def next_prepared() -> PreparedFrame | None:
            ahead.mark()
            frame = next(it, None)
            ahead.lap("decode")
            return None if frame is None else sw.prepare(frame, ahead, align=align_ahead)

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
            carried += res.carried
            if res.faces == 0:
                faceless.append(frames - 1)
            if prefetch and frames % BALANCE_EVERY == 0:
                align_ahead = align_where(ahead.wall, clock.wall, frames)
            bar.update(1)
        bar.close()
        cpu = time.process_time() - cpu0
        if require_face and faces == 0:
            raise NoFaceError(f"{inp}: no face found in any of its {frames} frames; not written (strict)")
        clock.mark()
        writer.commit()
        clock.lap("encode")
    wall = time.perf_counter() - start
    stage_wall = {k: clock.wall[k] + (ahead.wall[k] if prefetch else 0.0) for k in STAGES}
    stage_cpu = {k: clock.cpu[k] + (ahead.cpu[k] if prefetch else 0.0) for k in STAGES}
    return VideoReport(str(inp), str(out), str(getattr(deidentifier, "name", type(deidentifier).__name__)),
                       info.width, info.height, info.fps, frames, with_faces, frames - with_faces, faces,
                       writer.audio if keep_audio else "dropped (keep_audio=False)", wall, stage_wall, cpu,
                       writer.encoder_cpu_s, stage_cpu, prefetch, carried, faceless)


@dataclass
class ImageReport:
    input: str
    output: str
    deidentifier: str
    faces: int
    wall_s: float


def image_swapper(deidentifier: Any, target: str | os.PathLike | np.ndarray | None = None,
                  detector: Any = "yunet", strength: float = 1.0, hull: str = "face",
                  detect_side: int | None = DEFAULT_DETECT_SIDE) -> FaceSwapper:
    """The :class:`FaceSwapper` that :func:`deidentify_image` builds from its arguments: build it once and pass it
    as ``swapper`` to de-identify many photos without loading the detector and the landmark predictor (~0.9 s)
    for each."""
    return FaceSwapper(deidentifier, detector, _load_target(target), strength, hull, detect_side=detect_side)


def deidentify_image(inp: str | os.PathLike, out: str | os.PathLike, deidentifier: Any,
                     target: str | os.PathLike | np.ndarray | None = None, detector: Any = "yunet",
                     strength: float = 1.0, hull: str = "face", require_face: bool = False,
                     detect_side: int | None = DEFAULT_DETECT_SIDE,
                     swapper: FaceSwapper | None = None) -> ImageReport:
    """De-identify every face of image ``inp`` into ``out`` (written atomically). An image without a face is
    written unchanged and reported with ``faces == 0``, or, with ``require_face``, not written
    (:class:`NoFaceError`).

    ``swapper``: a prebuilt one (:func:`image_swapper`), reused across photos; ``target``, ``detector``,
    ``strength``, ``hull`` and ``detect_side`` are then its own. It is reset first: a photo is unrelated to
    whatever the swapper saw before (no tracked face or carried detection comes along)."""
    from deidkit.data.images import load_image, save_image

    start = time.perf_counter()
    image = load_image(inp)
    if swapper is None:
        sw = image_swapper(deidentifier, target, detector, strength, hull, detect_side)
    else:
        sw = swapper
        sw.reset()
    res = sw.process(image)
    if require_face and res.faces == 0:
        raise NoFaceError(f"{inp}: no face found; not written (strict)")
    save_image(out, res.frame)
    return ImageReport(str(inp), str(out), str(getattr(deidentifier, "name", "")), res.faces,
                       time.perf_counter() - start)
