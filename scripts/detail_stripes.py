"""Does a detail stage draw a grid? (maintainers) The live model's detail stage enlarges the generator's 64-px face to
128 px; the shipped stage draws vertical stripes of a 4-pixel period there, visible as a cross-hatch on faces
shown large (HD video). This measures, on one photo of each of the 160 selection identities (lfw_select_160x8;
never the test protocol):

- ``grid_db``: :func:`deidkit.eval.realism.grid_excess` of the stage's 128-px faces drawn from the shipped
  generator's faces, against the same photos' real faces at that geometry (0: no grid);
- ``grid_db_real_input``: the same for the stage fed real faces reduced to 64 px (is the grid the stage's own?);
- ``crop_sharpness`` / ``crop_colour_shift``: the realism measures of the canonical crops through the shipped
  generator with this stage (median, inner face box).

    python scripts/detail_stripes.py shipped detail-quick-shift ...   # records: reports/metrics/detail_stripes.json

Also draws ``reports/figures/detail_stripes_faces.png``: five of these faces as each stage draws them, enlarged
2.5 times (Lanczos), as a 1080p video shows a face of about 300 pixels; one row per run.

``shipped`` is the shipped live model's own stage, ``bicubic`` no stage (a bicubic enlargement); other names are detail runs in the cache (deidkit train detail).
"""

from __future__ import annotations

import sys

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from deidkit.checkpoints import load_checkpoint, runs_dir
from deidkit.data.lfw import aligned_crops, load_manifest
from deidkit.deidentifiers import load_deidentifier
from deidkit.deidentifiers.live import to_uint8, with_detail_stage
from deidkit.eval.provenance import provenance
from deidkit.eval.realism import grid_excess, inner_face_box, region_scores
from deidkit.plots import image_grid
from deidkit.reports import merge_metrics, save_figure
from deidkit.train.detail import centre_region

torch.set_num_threads(1)
runs = sys.argv[1:] or ["shipped"]
table = load_manifest("lfw_select_160x8").groupby("identity", sort=True).head(1)
crops = aligned_crops(table["path"].tolist(), 224)
records, rows = [], []
for run in runs:
    deid = load_deidentifier("live")
    if run == "bicubic":  # no stage: the generator's face enlarged twice (bicubic), for reference
        deid.detail = torch.nn.Upsample(scale_factor=2, mode="bicubic", align_corners=False)
    elif run != "shipped":
        with_detail_stage(deid, runs_dir() / run)
    side = deid.out_size
    real = np.stack([centre_region(c, deid.crop_fraction, side) for c in crops])
    with torch.no_grad():
        x = deid._network_input(crops)
        raw, _ = deid.generator(x, deid.features.embed(x))
        drawn = to_uint8(deid.detail(raw))
        real_t = torch.from_numpy(real).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
        from_real = to_uint8(deid.detail(F.interpolate(real_t, size=deid.size, mode="area")))
    rows.append([cv2.resize(f, (320, 320), interpolation=cv2.INTER_LANCZOS4) for f in drawn[:5]])
    out = deid.deidentify(crops)
    sharp, colour = region_scores(crops, out, [inner_face_box(crops.shape[1])] * len(crops))
    step = None if run in ("shipped", "bicubic") else int(load_checkpoint(runs_dir() / run)["global_step"])
    rec = {"kind": "detail_stripes", "run": run, "step": step, "protocol": "lfw_select_160x8", "faces": len(crops),
           "grid_db": grid_excess(real, drawn), "grid_db_real_input": grid_excess(real, from_real),
           "crop_sharpness": float(np.median(sharp)), "crop_colour_shift": float(np.median(colour)),
           **{k: v for k, v in provenance(deid).items() if run == "shipped" or k != "detail_sha256"}}
    records.append(rec)
    print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in rec.items() if k != "commit"})
merge_metrics(records, "detail_stripes", key=("run", "step"))
fig = image_grid([np.stack(r) for r in rows], row_titles=runs, size=3.0)
save_figure(fig, "detail_stripes_faces")
