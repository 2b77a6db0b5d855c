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
                    hd_frames: int = 150, threads: int | None = -1) -> list[dict[str, Any]]:
    """``{"kind": "speed", "name": <case>, "value": frames/s, "unit": "frames/s", ...}`` of each case of
    :data:`CASES` (all by default), with the per-stage times, faces per frame and the CPU-time rate.
    ``hd_frames``: length of the built 1080p clip; ``threads``: as :func:`deidkit.pipeline.video.deidentify_video`."""
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
                               threads=threads)
        records.append({
            "kind": "speed", "name": name, "value": rep.fps, "unit": "frames/s", "deidentifier": deid.name,
            "resolution": f"{rep.width}x{rep.height}", "frames": rep.frames, "faces": rep.faces,
            "faces_per_frame": rep.faces / max(rep.frames, 1), "frames_without_faces": rep.frames_without_faces,
            "cpu_fps": rep.cpu_fps, "stage_ms_per_frame": rep.stage_ms_per_frame(),
            "stage_cpu_ms_per_frame": rep.stage_cpu_ms_per_frame(), "torch_threads": rep.threads or torch.get_num_threads(),
            "cpu_count": os.cpu_count(), "landmark_lock": getattr(deid, "landmark_lock", None),
            "wall_s": time.perf_counter() - t0,
        })
        out.unlink(missing_ok=True)  # the output is not needed, only its time
    return records
