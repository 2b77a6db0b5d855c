"""Video speed on this machine: the Hamilton clip (640x360) and a 1920x1080 clip with many faces per frame built
from it, through the whole pipeline (decode, detect, align, de-identify, blend, encode) with the shipped live
model and with blur. ``deidkit benchmark-video`` writes the records to ``reports/metrics/video_speed.json``.

No HD clip with several people ships with the kit's data, and none may be committed: :func:`multiface_hd_clip`
tiles the shared clip 2 x 2 at 960x540 (each tile started later in the clip and every other one mirrored, so no
two tiles show the same frame): about 12 faces per 1080p frame, more than the ~7 of a street scene.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm.auto import tqdm

from deidkit.assets import asset_path, cache_dir
from deidkit.pipeline.faces import DEFAULT_DETECT_SIDE
from deidkit.pipeline.io import VideoWriter, open_video

#: The benchmark cases: record name -> (clip, de-identifier).
CASES: dict[str, tuple[str, str]] = {
    "video_360p_live_cpu": ("hamilton", "live"),
    "video_1080p_live_cpu": ("hd_multiface", "live"),
    "video_1080p_blur_cpu": ("hd_multiface", "blur_sigma8"),
}


def multiface_hd_clip(frames: int = 150, tiles: int = 2, offset: int = 60, progress: bool = True) -> Path:
    """A 1920x1080 clip (H.264, in the cache; built once) of ``tiles`` x ``tiles`` copies of the shared Hamilton
    clip, copy ``k`` starting ``k * offset`` frames later and mirrored when ``k`` is odd."""
    src = asset_path("hamilton-clip")
    width, height = 1920, 1080
    tw, th = width // tiles, height // tiles
    key = hashlib.sha256(f"{src.stat().st_size}|{frames}|{tiles}|{offset}|v1".encode()).hexdigest()[:12]
    out = cache_dir() / "videos" / f"hd_multiface_{key}.mp4"
    if out.is_file():
        return out
    with open_video(src) as reader:
        clip = [cv2.resize(f, (tw, th), interpolation=cv2.INTER_LINEAR) for f in reader.frames()]
        fps = reader.info.fps
    with VideoWriter(out, width, height, fps, crf=18) as writer:
        for t in tqdm(range(frames), desc="build the 1080p multi-face clip", disable=not progress):
            frame = np.empty((height, width, 3), np.uint8)
            for k in range(tiles * tiles):
                tile = clip[(t + k * offset) % len(clip)]
                r, c = divmod(k, tiles)
                frame[r * th:(r + 1) * th, c * tw:(c + 1) * tw] = tile[:, ::-1] if k % 2 else tile
            writer.write(frame)
        writer.commit()
    return out


def benchmark_video(cases: list[str] | None = None, max_frames: int | None = None, progress: bool = True,
                    hd_frames: int = 150, threads: int | None = -1,
                    detect_side: int | None = DEFAULT_DETECT_SIDE
                    ) -> list[dict[str, Any]]:
    """``{"kind": "speed", "name": <case>, "value": frames/s, "unit": "frames/s", ...}`` of each case of
    :data:`CASES` (all by default), with the per-stage times, faces per frame and the CPU-time rate.
    ``hd_frames``: length of the built 1080p clip; ``threads``: as :func:`deidkit.pipeline.video.deidentify_video`;
    ``detect_side``: the fine detection pass's side (a record name gets ``_detect<side>`` when it is not the
    default 1,280).

    ``cpu_ms_per_frame`` is all the CPU a frame costs (every thread of this process, the decoder's included, plus
    the ffmpeg encoder); ``ceiling_fps`` = cores x 1000 / that: what the work could reach with every core busy
    all the time, the bound no scheduling can beat."""
    import torch

    from deidkit.deidentifiers import load_deidentifier
    from deidkit.pipeline.video import deidentify_video

    cases = list(CASES) if cases is None else cases
    unknown = set(cases) - set(CASES)
    if unknown:
        raise ValueError(f"unknown video benchmark cases {sorted(unknown)}; choose from {sorted(CASES)}")
    clips = {"hamilton": asset_path("hamilton-clip")}
    records = []
    for name in cases:
        clip_name, method = CASES[name]
        if clip_name not in clips:
            clips[clip_name] = multiface_hd_clip(frames=hd_frames, progress=progress)
        deid = load_deidentifier(method)
        out = cache_dir() / "videos" / f"bench_{name}.mp4"
        t0 = time.perf_counter()
        rep = deidentify_video(clips[clip_name], out, deid, max_frames=max_frames, progress=progress,
                               threads=threads, detect_side=detect_side)
        frames = max(rep.frames, 1)
        cpu_ms = 1000 * (rep.cpu_s + rep.encoder_cpu_s) / frames
        records.append({
            "kind": "speed", "name": name if detect_side == DEFAULT_DETECT_SIDE else f"{name}_detect{detect_side or 0}",
            "value": rep.fps, "unit": "frames/s", "deidentifier": deid.name, "detect_side": detect_side or 0,
            "cpu_ms_per_frame": cpu_ms, "encoder_cpu_ms_per_frame": 1000 * rep.encoder_cpu_s / frames,
            "ceiling_fps": (os.cpu_count() or 1) * 1000 / cpu_ms if cpu_ms > 0 else float("nan"),
            "resolution": f"{rep.width}x{rep.height}", "frames": rep.frames, "faces": rep.faces,
            "faces_per_frame": rep.faces / max(rep.frames, 1), "frames_without_faces": rep.frames_without_faces,
            "cpu_fps": rep.cpu_fps, "stage_ms_per_frame": rep.stage_ms_per_frame(),
            "stage_cpu_ms_per_frame": rep.stage_cpu_ms_per_frame(), "torch_threads": rep.threads or torch.get_num_threads(),
            "cpu_count": os.cpu_count(), "landmark_lock": getattr(deid, "landmark_lock", None),
            "wall_s": time.perf_counter() - t0,
        })
        out.unlink(missing_ok=True)  # the output is not needed, only its time
    return records


#: ``deidkit benchmark-detection`` defaults: detection sides and face widths (pixels in the 1920x1080 frame)
DETECT_SIDES = (1920, 1280, 960)
FACE_WIDTHS = (16, 20, 24, 28, 32, 40, 56, 80)


def lfw_faces(faces: int = 40, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``faces`` LFW photos (training-pool identities, one photo each, drawn with ``seed``) in which YuNet finds a
    face at full size, each with that face's box (the central one)."""
    from deidkit.data.alignment import pick_central
    from deidkit.data.images import load_image
    from deidkit.data.lfw import lfw_root, load_manifest
    from deidkit.pipeline.faces import make_face_detector

    pool = load_manifest("lfw_train_pool").drop_duplicates("identity")
    detector = make_face_detector(max_side=None, coarse_side=None)
    root, found = lfw_root(), []
    for idx in np.random.default_rng(seed).permutation(len(pool)):
        if len(found) == faces:
            break
        photo = load_image(root / pool.iloc[idx]["path"])
        dets = detector.detect(photo)
        if dets:
            found.append((photo, pick_central(dets, photo.shape).box))
    return found


def face_size_canvas(face_px: int, photos: list[tuple[np.ndarray, np.ndarray]], width: int = 1920,
                     height: int = 1080) -> tuple[np.ndarray, list[np.ndarray]]:
    """A ``width`` x ``height`` RGB frame (mid grey) holding the ``photos`` (:func:`lfw_faces`) in a grid, each
    scaled so that its face is ``face_px`` wide; and the scaled face boxes (x0, y0, x1, y1), the ground truth."""
    cols = max(1, int(np.ceil(np.sqrt(len(photos) * width / height))))
    rows = int(np.ceil(len(photos) / cols))
    cell_w, cell_h = width // cols, height // rows
    frame = np.full((height, width, 3), 128, np.uint8)
    boxes: list[np.ndarray] = []
    for k, (photo, box) in enumerate(photos):
        scale = face_px / max(box[2] - box[0], 1.0)
        # the photo around its face, at most a cell (so that no two faces overlap)
        small = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        b = box * scale
        cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        x0 = int(max(0, min(cx - cell_w / 2, small.shape[1] - cell_w)))
        y0 = int(max(0, min(cy - cell_h / 2, small.shape[0] - cell_h)))
        patch = small[y0:y0 + cell_h, x0:x0 + cell_w]
        oy, ox = (k // cols) * cell_h, (k % cols) * cell_w
        frame[oy:oy + patch.shape[0], ox:ox + patch.shape[1]] = patch
        boxes.append(b - np.array([x0, y0, x0, y0]) + np.array([ox, oy, ox, oy]))
    return frame, boxes


def detection_by_face_size(sides: tuple[int | None, ...] = DETECT_SIDES, widths: tuple[int, ...] = FACE_WIDTHS,
                           faces: int = 40, seed: int = 0, progress: bool = True) -> list[dict[str, Any]]:
    """Which faces the pipeline's detector finds at each fine-pass side (``FaceSwapper(detect_side=...)``; the
    coarse pass as in the pipeline) by face width in a 1920x1080 frame (:func:`face_size_canvas`): records
    ``{"kind": "detection_by_size", "detect_side", "face_px", "found", "faces", "recall", "ms_per_frame"}``. A face
    counts as found when a detection covers at least half of its box (intersection over the smaller box)."""
    from deidkit.pipeline.faces import box_overlap, make_face_detector
    from deidkit.pipeline.video import stage_threads

    photos = lfw_faces(faces, seed)
    canvases = {w: face_size_canvas(w, photos) for w in tqdm(widths, desc="face-size canvases", disable=not progress)}
    records = []
    with stage_threads(1):  # the times as in the video pipeline's detection thread on 2 cores
        for side in sides:
            detector = make_face_detector(max_side=side)
            for w, (frame, boxes) in canvases.items():
                detector.detect(frame)  # the network is built for this input size on the first call
                t = time.thread_time()
                dets = detector.detect(frame)
                ms = 1000 * (time.thread_time() - t)
                found = sum(any(box_overlap(b, d.box) >= 0.5 for d in dets) for b in boxes)
                records.append({"kind": "detection_by_size", "detect_side": side or 0, "face_px": w,
                                "found": found, "faces": len(boxes), "recall": found / max(len(boxes), 1),
                                "ms_per_frame": ms})
    return records
