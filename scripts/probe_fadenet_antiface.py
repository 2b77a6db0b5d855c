"""Does a per-face geometry change hide more identity than the shipped FaDeNet's near-constant squint? (maintainers'
probe, stop 38). The shipped ``fadenet`` warps every face along 16 modes of real faces' geometry, but its
coefficients are nearly the same for every face. Here the network's coefficients are replaced by each face's own:
the face's optical flow from the mean training face (as ``deidkit.train.fadenet.fit_shape_basis`` computes it for
the basis) projected on the shipped modes, times ``alpha`` (1: the face's geometry moved to the mean face's; 2: to
its mirror image about the mean, an "anti-face"), the vector's length bounded as the network's (3 SD) or not.

Selection set only (lfw_select_160x8, 4 images per identity = 640 faces; never the test protocol), MS1M only (the
trained-against recogniser): mean SSIM of the crop and the leave-one-out Rank-1, as ``probe_fadenet_inference.py``.

    python scripts/probe_fadenet_antiface.py      # records: reports/metrics/fadenet_antiface_probe.json
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from deidkit.data.images import resize_crops
from deidkit.data.lfw import aligned_crops
from deidkit.eval.quality import ssim
from deidkit.eval.selection import leave_one_out_rank1, selection_set
from deidkit.pretrained import load_pretrained
from deidkit.recognizers import get_recognizer
from deidkit.reports import record_metrics
from deidkit.train.critic import load_train_pool

torch.set_num_threads(2)
deid = load_pretrained("fadenet")
unet = deid.unet
size_model = deid.config.image_size
dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)


def grey(faces: np.ndarray) -> np.ndarray:
    # as fit_shape_basis: smoothed grey faces at the network's size, so texture does not count as geometry
    return np.stack([cv2.GaussianBlur(cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY), (0, 0), 1.5)
                     for f in faces])


pool = grey(load_train_pool(size_model, None, 0).train_images[:4000])
mean_face = np.round(pool.astype(np.float32).mean(0)).astype(np.uint8)
window = unet.warp_window.cpu()


def flows_of(g: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.stack([dis.calc(mean_face, f, None) for f in g])).permute(0, 3, 1, 2) * window


mean_flow = flows_of(pool).mean(0, keepdim=True)
modes = unet.shape_modes.cpu()


def own_coefficients(faces: np.ndarray) -> torch.Tensor:
    """Each face's geometry in the shipped modes' coordinates (standard deviations)."""
    x = (flows_of(grey(resize_crops(faces, size_model))) - mean_flow).flatten(1)
    w = modes.flatten(1)
    return x @ w.T / (w * w).sum(1)


chosen = selection_set(4)
crops = aligned_crops(chosen["path"].tolist())
labels = chosen["identity"].to_numpy()
rec = get_recognizer("mobilefacenet_ms1m")
ref = rec.embed(crops)
own = own_coefficients(crops)
print(f"faces' own geometry, length in SD: median {own.norm(dim=1).median():.2f}")
deid.batch_size = len(crops)
network = unet.shape_coefficients
rows = []


def measure(setting: str, coefficients: torch.Tensor | None) -> None:
    unet.shape_coefficients = network if coefficients is None else (lambda _b: coefficients)
    out = deid.deidentify(crops)
    emb = rec.embed(out)
    row = {"kind": "fadenet_antiface_probe", "deidentifier": deid.name, "setting": setting,
           "ssim": float(ssim(crops, out).mean()), "cos_to_original": float((emb * ref).sum(1).mean()),
           "loo_rank1": leave_one_out_rank1(ref, emb, labels), "recognizer": rec.name, "faces": len(crops),
           "protocol": "lfw_select_160x8 (4 per identity)"}
    rows.append(row)
    print(f"{setting:28s} SSIM {row['ssim']:.4f}  cos {row['cos_to_original']:.4f}  "
          f"leave-one-out Rank-1 {row['loo_rank1']:.4f}", flush=True)


def bounded(c: torch.Tensor, bound: float) -> torch.Tensor:
    length = c.norm(dim=1, keepdim=True).clamp_min(1e-6)
    return c * torch.clamp(bound / length, max=1.0)


measure("network (shipped)", None)
measure("no warp", torch.zeros_like(own))
for alpha in (1.0, 2.0):
    measure(f"own x{alpha:g}, bound 3", bounded(alpha * own, 3.0))
    measure(f"own x{alpha:g}, unbounded", alpha * own)
print(f"wrote {record_metrics(rows, 'fadenet_antiface_probe')}")
