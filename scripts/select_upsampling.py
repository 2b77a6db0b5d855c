"""Which enlargement of the network's output ships: bilinear or bicubic? A choice of an inference option, so it is
made on the selection set only (lfw_select_160x8, 4 images per identity = 640 faces; never the test protocol), with
the trained-against recogniser only (MobileFaceNet MS1M): crop-level leave-one-out Rank-1, mean SSIM, and the median
sharpness of the inner face box (:mod:`deidkit.eval.realism`), for every shipped model under both options.

Rule: bicubic ships for a model when it is sharper and its Rank-1 is at most 0.01 above bilinear's.

    python scripts/select_upsampling.py      # records: reports/metrics/selection_upsampling.json
"""

from __future__ import annotations

import numpy as np
import torch

from deidkit.data.lfw import aligned_crops
from deidkit.eval.quality import ssim
from deidkit.eval.realism import crop_level
from deidkit.eval.selection import leave_one_out_rank1, selection_set
from deidkit.pretrained import load_pretrained, shipped_models
from deidkit.recognizers import get_recognizer
from deidkit.reports import record_metrics

torch.set_num_threads(2)
table = selection_set(per_identity=4)
crops = aligned_crops(table["path"])
labels = table["identity"].to_numpy()
rec = get_recognizer("mobilefacenet_ms1m")
original = rec.embed(crops)
records = []
for model in shipped_models():
    deid = load_pretrained(model)
    for mode in ("bilinear", "bicubic"):
        deid.upsample = mode
        res = crop_level(deid, crops)
        r1 = leave_one_out_rank1(original, rec.embed(res.fake_crops), labels)
        records.append({"kind": "selection_upsampling", "protocol": "lfw_select_160x8", "recognizer": rec.name,
                        "deidentifier": model, "upsample": mode, "rank1": r1,
                        "ssim": float(ssim(crops, res.fake_crops).mean()),
                        "sharpness": float(np.median(res.sharpness)), "n": len(crops)})
        print(records[-1])
    lin, cub = records[-2], records[-1]
    choice = "bicubic" if cub["sharpness"] > lin["sharpness"] and cub["rank1"] <= lin["rank1"] + 0.01 else "bilinear"
    records.append({"kind": "selection_upsampling_choice", "deidentifier": model, "choice": choice})
    print(model, "->", choice)
record_metrics(records, "selection_upsampling")
