"""Keeping a face's geometry through a de-identifier: move the output's five landmarks (eyes, nose, mouth
corners) back towards the input's with a smooth thin-plate-spline warp.

Why: a generator that changes identity also moves facial features by a few pixels (the shipped live model by
0.068 of the eye-corner distance on ``lfw_57x8``, blur sigma 8 by 0.056), and what a face is for in a
de-identified video (expression, gaze, lip movement) lives in those positions. The warp is measured with MTCNN's
output network (ONet, from the facenet-pytorch wheel), not with the dlib 68-point predictor the evaluation uses.
Moving features back also gives back some identity (face geometry carries it): how far to move them (``lock``,
0 = not at all, 1 = onto the input's) is chosen on the selection set (see :func:`deidkit.eval.selection`).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import nn

from deidkit.data.templates import CANONICAL_ZOOM

#: The spline is solved on this coarse grid and resized to the crop (the field is smooth; ~50x fewer kernels).
FIELD_GRID = 32

#: A face whose landmarks would move further than this fraction of the crop side is left unwarped: ONet has then
#: misread one of the two images (the shipped live model moves them by at most 0.086 on 616 LFW faces, median 0.028),
#: and a spline through a wrong point folds the face.
MAX_MOVE = 0.15


def thin_plate_field(dst: np.ndarray, src: np.ndarray, size: int, grid: int = FIELD_GRID
                     ) -> tuple[np.ndarray, np.ndarray]:
    """``cv2.remap`` maps (map_x, map_y), float32 (size, size), of the thin-plate spline that sends each point
    ``dst[i]`` (K, 2; x, y pixels) to sample ``src[i]``: the warped image shows at ``dst[i]`` what the image showed
    at ``src[i]``. The crop's corners and edge midpoints stay fixed, so the warp fades out towards the border."""
    s = size - 1
    anchors = np.array([[0, 0], [s, 0], [0, s], [s, s], [s / 2, 0], [0, s / 2], [s, s / 2], [s / 2, s]], float)
    p = np.vstack([np.asarray(dst, float), anchors])
    q = np.vstack([np.asarray(src, float), anchors])
    n = len(p)

    def kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        r2 = ((a[:, None] - b[None]) ** 2).sum(-1)
        return np.where(r2 > 0, r2 * np.log(np.maximum(r2, 1e-12)), 0.0)

    system = np.zeros((n + 3, n + 3))
    system[:n, :n] = kernel(p, p)
    system[:n, n:] = np.hstack([np.ones((n, 1)), p])
    system[n:, :n] = system[:n, n:].T
    coef = np.linalg.solve(system + 1e-8 * np.eye(n + 3), np.vstack([q, np.zeros((3, 2))]))
    ticks = np.linspace(0, s, grid)
    gx, gy = np.meshgrid(ticks, ticks)
    g = np.stack([gx.ravel(), gy.ravel()], 1)
    field = kernel(g, p) @ coef[:n] + np.hstack([np.ones((len(g), 1)), g]) @ coef[n:]
    coarse = field.reshape(grid, grid, 2).astype(np.float32)
    # bilinear up-sampling with the coarse grid's end points on the crop's (cv2.resize would shift by half a cell)
    at = np.linspace(0, grid - 1, size, dtype=np.float32)
    ax, ay = np.meshgrid(at, at)
    maps = cv2.remap(coarse, ax, ay, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return np.ascontiguousarray(maps[..., 0]), np.ascontiguousarray(maps[..., 1])


class LandmarkLock:
    """Warps a de-identifier's raw output and blending mask so that the blended face's five landmarks move a
    fraction ``lock`` of the way back to the input's.

    ``landmarks``: a :class:`deidkit.models.landmarks.FiveLandmarks` (load it with
    :func:`deidkit.recognizers.load_five_landmarks`); it reads the canonical crop's face box."""

    def __init__(self, landmarks: nn.Module, lock: float) -> None:
        if not 0.0 <= lock <= 1.0:
            raise ValueError(f"landmark lock must lie in [0, 1], got {lock}")
        self.landmarks, self.lock = landmarks, float(lock)

    @torch.no_grad()
    def points(self, crops: np.ndarray) -> np.ndarray:
        """(N, 5, 2) landmarks in pixels of canonical crops (N, S, S, 3) uint8."""
        size = crops.shape[1]
        side = int(round(CANONICAL_ZOOM * size))
        top = (size - side) // 2
        box = np.ascontiguousarray(crops[:, top:top + side, top:top + side])
        device = next(self.landmarks.parameters()).device
        x = torch.from_numpy(box).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        return self.landmarks(x).cpu().numpy() * side + top

    def __call__(self, inputs: np.ndarray, raw: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(raw, alpha) warped: ``inputs`` and ``raw`` (N, S, S, 3) uint8, ``alpha`` (N, S, S) float32."""
        if self.lock == 0.0 or len(inputs) == 0:
            return raw, alpha
        a = alpha[..., None]
        blended = np.clip(np.rint(a * raw + (1.0 - a) * inputs), 0, 255).astype(np.uint8)
        target, current = self.points(inputs), self.points(blended)
        size = inputs.shape[1]
        raw_out, alpha_out = np.empty_like(raw), np.empty_like(alpha)
        for i in range(len(inputs)):
            if np.linalg.norm(target[i] - current[i], axis=1).max() > MAX_MOVE * size:
                raw_out[i], alpha_out[i] = raw[i], alpha[i]
                continue
            goal = current[i] + self.lock * (target[i] - current[i])
            mx, my = thin_plate_field(goal, current[i], size)
            raw_out[i] = cv2.remap(raw[i], mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            alpha_out[i] = cv2.remap(alpha[i], mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                                     borderValue=0)
        return raw_out, alpha_out
