"""Does the live model de-identify when conditioned on something other than the face itself? (maintainers'
probe, README "An attacker who has learnt the de-identifier"). 80 selection-set faces (lfw_select_160x8, one per
identity; never the test protocol), MS1M only (the trained-against recogniser): SSIM, mean cosine of output and
original, and Rank-1 among the 80, conditioned on the face's own representation, on another face's, and on its own
plus Gaussian noise of relative size sigma. Writes a before/after grid to the path given (default /tmp).

    python scripts/probe_live_conditioning.py [GRID.jpg]
"""
import sys

import cv2
import numpy as np
import torch

from deidkit.data.lfw import aligned_crops
from deidkit.deidentifiers import load_deidentifier
from deidkit.eval.quality import ssim
from deidkit.eval.selection import selection_paths
from deidkit.recognizers import get_recognizer

torch.set_num_threads(1)
paths = selection_paths(1)[:80]
crops = aligned_crops(paths, size=224)
d = load_deidentifier("live")
ms1m = get_recognizer("mobilefacenet_ms1m")
e0 = ms1m.embed(crops)
e0 /= np.linalg.norm(e0, axis=1, keepdims=True)
rng = np.random.default_rng(0)
t_self = d.target_representation(crops)


def evaluate(name, targets):
    outs = []
    for i in range(len(crops)):
        raw, a = d.deidentify_with_mask(crops[i:i+1], targets=targets[i:i+1])
        aa = a[..., None]
        outs.append(np.clip(np.rint(aa * raw + (1 - aa) * crops[i:i+1]), 0, 255).astype(np.uint8))
    out = np.concatenate(outs)
    e = ms1m.embed(out)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    s = float(np.mean(ssim(crops, out)))
    cos = float(np.mean((e * e0).sum(1)))
    # identification within the 80: rank-1 of output vs originals
    r1 = float(np.mean(np.argmax(e @ e0.T, 1) == np.arange(len(e))))
    print(f"{name:28s} SSIM {s:.3f}  MS1M cos {cos:.3f}  rank1/80 {r1:.3f}", flush=True)
    return out


rows = {"self": evaluate("self", t_self)}
perm = np.roll(np.arange(len(crops)), 7)
rows["other face"] = evaluate("other face's target", t_self[perm])
for sigma in (0.5, 1.0, 2.0):
    z = torch.from_numpy(rng.standard_normal(t_self.shape).astype(np.float32))
    z = z / z.norm(dim=1, keepdim=True) * t_self.norm(dim=1, keepdim=True)
    t = t_self + sigma * z
    t = t / t.norm(dim=1, keepdim=True) * t_self.norm(dim=1, keepdim=True)
    rows[f"noise {sigma}"] = evaluate(f"self + noise sigma {sigma}", t)
print("target norm", float(t_self.norm(dim=1).mean()))
grid = np.concatenate([np.concatenate(list(crops[:8]), 1)] + [np.concatenate(list(v[:8]), 1) for v in rows.values()], 0)
cv2.imwrite(sys.argv[1] if len(sys.argv) > 1 else "/tmp/live_conditioning.jpg", cv2.cvtColor(cv2.resize(grid, None, fx=0.5, fy=0.5), cv2.COLOR_RGB2BGR))
