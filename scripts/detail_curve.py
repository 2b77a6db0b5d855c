"""What more training of the live detail stage buys (maintainers): the stage's current checkpoint on 40 photos of
the selection identities (lfw_select_160x8, one per identity; never the test protocol), whole photos through the
pipeline with the shipped live generator (the records of 2026-12-07 were measured with it under its earlier name,
live_defended): median sharpness and colour shift of the inner face box (deidkit.eval.realism). Run it after each
epoch; each run appends one record.

    python scripts/detail_curve.py detail-quick      # records: reports/metrics/detail_curve.json
"""

from __future__ import annotations

import json
import sys

import numpy as np

from deidkit.checkpoints import load_checkpoint, runs_dir
from deidkit.data.lfw import alignment_record, load_manifest
from deidkit.deidentifiers import load_deidentifier
from deidkit.eval.frontier import load_photos
from deidkit.eval.realism import photo_level
from deidkit.reports import record_metrics, reports_dir

run = sys.argv[1] if len(sys.argv) > 1 else "detail-quick"
base = sys.argv[2] if len(sys.argv) > 2 else "live"
ckpt = load_checkpoint(runs_dir() / run)
table = load_manifest("lfw_select_160x8").groupby("identity", sort=True).head(1).head(40)
files = load_manifest("lfw_files")
mats = [alignment_record(p, 224, "yunet", files)["matrix"] for p in table["path"]]
photos = load_photos(table["path"].tolist())
res = photo_level(load_deidentifier(f"{base}+{run}"), photos, mats, show_progress=False)
path = reports_dir() / "metrics" / "detail_curve.json"
same = (run, ckpt["global_step"])  # one record per run and step; the generator alone once per base
old = [r for r in json.loads(path.read_text()) if (r.get("run"), r.get("step")) != same] if path.is_file() else []
rec = {"kind": "detail_curve", "run": run, "base": base, "epoch": int(ckpt["epoch"]), "step": int(ckpt["global_step"]),
       "protocol": "lfw_select_160x8", "photos": len(photos), "sharpness": float(np.median(res.sharpness)),
       "colour_shift": float(np.median(res.colour_shift))}
if not any(r.get("step") == 0 and r.get("base") in (base, "live_defended") for r in old):  # the generator alone, for reference
    bare = load_deidentifier(base)
    bare.detail, bare.out_size = None, bare.size  # the generator alone
    ref = photo_level(bare, photos, mats, show_progress=False)
    old.append({**rec, "epoch": 0, "step": 0, "sharpness": float(np.median(ref.sharpness)),
                "colour_shift": float(np.median(ref.colour_shift)), "note": "the generator without a detail stage"})
record_metrics(sorted([*old, rec], key=lambda r: (r["step"] > 0, r["run"], r["step"])), "detail_curve")
print(rec)
