"""The photo-level sharpness a face drawn at S pixels can reach at most (maintainers): each photo's own face
(the central ``crop_fraction`` of its canonical crop, the region the live model draws) reduced to S x S pixels by
area averaging and enlarged back by bicubic interpolation, pasted through the kit's pipeline like a
de-identified face; median sharpness of the inner face box (deidkit.eval.realism) on 40 photos of the selection
identities (lfw_select_160x8, one per identity). A perfect S-pixel face scores this; a generator drawing at S
pixels scores at most this unless it draws more fine detail than a real face of that size holds.

    python scripts/sharpness_ceiling.py          # records: reports/metrics/sharpness_ceiling.json
"""

from __future__ import annotations

import cv2
import numpy as np

from deidkit.data.lfw import alignment_record, load_manifest
from deidkit.eval.frontier import load_photos
from deidkit.eval.realism import photo_level
from deidkit.reports import record_metrics


class Reduced:
    """The identity de-identifier through an S-pixel bottleneck in the central ``fraction`` of the crop."""

    def __init__(self, side: int, fraction: float = 0.8) -> None:
        self.side, self.fraction = side, fraction
        self.name = f"original_at_{side}px"
        self.crop_size = int(round(side / fraction))

    def deidentify(self, batch: np.ndarray) -> np.ndarray:
        out = batch.copy()
        c = batch.shape[1]
        k = int(round(c * self.fraction))
        o = (c - k) // 2
        for face, dst in zip(batch, out):
            small = cv2.resize(face[o:o + k, o:o + k], (self.side, self.side), interpolation=cv2.INTER_AREA)
            dst[o:o + k, o:o + k] = cv2.resize(small, (k, k), interpolation=cv2.INTER_CUBIC)
        return out


table = load_manifest("lfw_select_160x8").groupby("identity", sort=True).head(1).head(40)
files = load_manifest("lfw_files")
mats = [alignment_record(p, 224, "yunet", files)["matrix"] for p in table["path"]]
photos = load_photos(table["path"].tolist())
records = []
for side in (64, 128, 192, 256):
    res = photo_level(Reduced(side), photos, mats, show_progress=False)
    records.append({"kind": "sharpness_ceiling", "side": side, "crop_fraction": 0.8, "protocol": "lfw_select_160x8",
                    "photos": len(photos), "sharpness": float(np.median(res.sharpness)),
                    "colour_shift": float(np.median(res.colour_shift))})
    print(records[-1], flush=True)
record_metrics(records, "sharpness_ceiling")
