"""Can an inference-time change move the shipped natural-looking FaDeNet (``fadenet``) off its identity curve?
(maintainers' probe, 2026-12-07; README model card; its records in reports/ were measured on the model shipped then,
as ``fadenet_subspace``: ``git show b9cb937:deidkit/weights/manifest.json``). Selection set only (lfw_select_160x8, 4 images per
identity = 640 faces; never the test protocol), MS1M only (the trained-against recogniser): mean SSIM of the crop,
mean cosine of output and original, and the leave-one-out Rank-1 (each de-identified probe against the originals
of every other image). Three changes, each against the shipped model's own feathered square box:

1. ``fine``: the original's detail finer than the network's 96 px put back inside the face box (x k);
2. ``mask``: a round or rounded-square edge instead of the feathered square (ramp = fraction of the radius);
3. ``mean``: the face box's low frequencies moved toward the training pool's mean face (x alpha) before the
   network sees it.

    python scripts/probe_fadenet_inference.py      # records: reports/metrics/fadenet_inference_probe.json
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from deidkit.data.lfw import aligned_crops
from deidkit.deidentifiers.fadenet import face_box_mask
from deidkit.eval.quality import face_box, ssim
from deidkit.eval.selection import leave_one_out_rank1, selection_set
from deidkit.pretrained import load_pretrained
from deidkit.recognizers import get_recognizer
from deidkit.reports import record_metrics
from deidkit.train.critic import load_train_pool

torch.set_num_threads(1)
chosen = selection_set(4)
crops = aligned_crops(chosen["path"].tolist())
labels = chosen["identity"].to_numpy()
full = crops.astype(np.float32)
size = crops.shape[1]
rec = get_recognizer("mobilefacenet_ms1m")
ref = rec.embed(crops)
deid = load_pretrained("fadenet")
shipped_feather = deid.feather
rows = []


def measure(probe: str, setting: str, out: np.ndarray) -> None:
    out = np.clip(np.round(out), 0, 255).astype(np.uint8)
    emb = rec.embed(out)
    row = {"kind": "fadenet_inference_probe", "deidentifier": deid.name, "probe": probe,
           "setting": setting, "ssim": float(ssim(crops, out).mean()), "cos_to_original": float((emb * ref).sum(1).mean()),
           "loo_rank1": leave_one_out_rank1(ref, emb, labels), "recognizer": rec.name, "faces": len(crops),
           "protocol": "lfw_select_160x8 (4 per identity)"}
    rows.append(row)
    print(f"{probe:5s} {setting:18s} SSIM {row['ssim']:.4f}  cos {row['cos_to_original']:.4f}  "
          f"leave-one-out Rank-1 {row['loo_rank1']:.4f}", flush=True)


# 0. the shipped model's own curve: its feathered square box at three feathers
for feather in (0.2, shipped_feather, 0.26):
    deid.feather = feather
    measure("box", f"feather {feather:g}", deid.deidentify(crops).astype(np.float32))

# 1. the original's finest detail (what the network's 96 px cannot hold) put back in the box
deid.feather = shipped_feather
shipped = deid.deidentify(crops).astype(np.float32)
s = deid.config.image_size
coarse = np.stack([cv2.resize(cv2.resize(c, (s, s), interpolation=cv2.INTER_AREA), (size, size),
                              interpolation=cv2.INTER_LINEAR) for c in crops]).astype(np.float32)
weight = face_box_mask(size, deid.config.face_region, shipped_feather)[None, ..., None]
for k in (0.5, 1.0):
    measure("fine", f"x{k:g}", shipped + k * weight * (full - coarse))

# 2. other edges inside the face box (the network's hard-edged box, then blended with each mask)
deid.feather = 0.0
hard = deid.deidentify(crops).astype(np.float32)
x0, y0, x1, y1 = face_box(size, deid.config.face_region)
cx, cy, half = (x0 + x1 - 1) / 2, (y0 + y1 - 1) / 2, (x1 - x0) / 2
yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
for shape, power in (("round", 2), ("rounded square", 4)):
    radius = (np.abs((xx - cx) / half) ** power + np.abs((yy - cy) / half) ** power) ** (1 / power)
    for ramp in (0.3, 0.4, 0.5):
        mask = np.clip((1 - radius) / ramp, 0, 1)[None, ..., None]
        measure("mask", f"{shape} ramp {ramp:g}", full + mask * (hard - full))

# 3. the box's low frequencies moved toward the training pool's mean face before the network
pool = load_train_pool(96, None, 0)
mean = cv2.resize(pool.train_images.astype(np.float32).mean(0), (size, size), interpolation=cv2.INTER_LINEAR)
sigma = deid.config.input_sigma * size / deid.config.image_size
blur = lambda im: cv2.GaussianBlur(im, (0, 0), sigma)  # noqa: E731
box = face_box_mask(size, deid.config.face_region, 0.1)[..., None]
deid.feather = shipped_feather
for alpha in (0.3, 0.5, 0.7):
    moved = np.stack([np.clip(np.round(c + alpha * box * (blur(mean) - blur(c))), 0, 255) for c in full]).astype(np.uint8)
    measure("mean", f"alpha {alpha:g}", deid.deidentify(moved).astype(np.float32))

print(f"wrote {record_metrics(rows, 'fadenet_inference_probe')}")
