"""What a viewer sees on HD video: faces of one 1920x1080 frame at the frame's own pixels, the original above each
shipped model's output and blur σ8's (maintainers; writes reports/figures/video_1080p_faces.png).

The frame is from the kit's multi-face 1080p clip (deidkit.pipeline.benchmark.multiface_hd_clip: the shared
640x360 clip tiled 2 x 2 at 960x540, so each face is the source face enlarged 1.5 times); each face is cut as a
square of twice its detected box, shown at 256 px.

    python scripts/video_faces.py [FRAME] [MODEL ...]      # default: frame 40, live fadenet blur_sigma8
"""

from __future__ import annotations

import sys

import cv2
import numpy as np

from deidkit.data.images import save_image
from deidkit.deidentifiers import load_deidentifier
from deidkit.pipeline.benchmark import multiface_hd_clip
from deidkit.pipeline.io import read_frames
from deidkit.pipeline.swap import FaceSwapper
from deidkit.plots import face_mosaic
from deidkit.reports import reports_dir

SIDE = 256

index = int(sys.argv[1]) if len(sys.argv) > 1 else 40
models = sys.argv[2:] or ["live", "fadenet", "blur_sigma8"]
frame = read_frames(multiface_hd_clip(), [index])[index]
swappers = {m: FaceSwapper(load_deidentifier(m)) for m in models}
dets = sorted(next(iter(swappers.values())).detector.detect(frame), key=lambda d: d.box[0])


def cut(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """A square of twice the box around its centre, at SIDE pixels (Lanczos: the frame's own detail)."""
    x0, y0, x1, y1 = box
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0)
    m = np.array([[SIDE / (2 * half), 0, SIDE / 2 - cx * SIDE / (2 * half)],
                  [0, SIDE / (2 * half), SIDE / 2 - cy * SIDE / (2 * half)]])
    return cv2.warpAffine(image, m, (SIDE, SIDE), flags=cv2.INTER_LANCZOS4, borderMode=cv2.BORDER_REFLECT101)


rows = [np.stack([cut(frame, d.box) for d in dets])]
for sw in swappers.values():
    out = sw.process(frame).frame
    rows.append(np.stack([cut(out, d.box) for d in dets]))
path = reports_dir() / "figures" / "video_1080p_faces.png"
save_image(path, face_mosaic(rows, [f"original (1080p frame {index})", *models]))
print(f"{len(dets)} faces; widths {[int(d.box[2] - d.box[0]) for d in dets]} px -> {path}")
