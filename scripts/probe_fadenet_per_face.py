"""How much of the shipped FaDeNet's change depends on the face? (maintainers' probe, 2026-12-07). ``fadenet`` changes
the blurred face box in two ways, both read from the face's features: 64 face-detail coefficients and 16 geometry
(warp) coefficients. This probe records how much each varies from face to face (the coefficient vectors' length and
their spread around the mean vector) and what replacing them at inference does:

- detail: the network's own coefficients; their mean over the faces, the same for every face; none (the mean real
  detail only, as an untrained network would paint);
- warp: the network's own; none; each face's own geometry (its optical flow from the mean training face, as
  ``deidkit.train.fadenet.fit_shape_basis`` computes it for the basis, projected on the shipped modes) times ``alpha``
  (1: moved to the mean face's geometry; 2: mirrored about it, an "anti-face"), bounded as the network's (3 SD) or not.

Selection set only (lfw_select_160x8, 4 images per identity = 640 faces; never the test protocol), MS1M only (the
trained-against recogniser): mean SSIM of the crop and the leave-one-out Rank-1, as ``probe_fadenet_inference.py``.

    python scripts/probe_fadenet_per_face.py      # records: reports/metrics/fadenet_per_face_probe.json
"""

from __future__ import annotations

from collections.abc import Callable

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


def own_detail_coefficients(faces: np.ndarray) -> torch.Tensor:
    """Each face's own detail (what the input blur removes from it, as fit_detail_basis measures it) in the shipped
    detail basis' coordinates: how far real faces' detail vectors reach."""
    x = torch.from_numpy(resize_crops(faces, size_model)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    with torch.no_grad():
        r = torch.atanh(x.clamp(-0.999, 0.999)) - torch.atanh(unet.blurred_input(x).clamp(-0.999, 0.999))
    w = unet.basis.flatten(1)
    return (r - unet.basis_mean).flatten(1) @ w.T / (w * w).sum(1)


chosen = selection_set(4)
crops = aligned_crops(chosen["path"].tolist())
labels = chosen["identity"].to_numpy()
rec = get_recognizer("mobilefacenet_ms1m")
ref = rec.embed(crops)
own = own_coefficients(crops)
print(f"faces' own geometry, length in SD: median {own.norm(dim=1).median():.2f}")
deid.batch_size = len(crops)  # one batch: a replaced coefficient tensor fits it
network_warp, network_detail = unet.shape_coefficients, unet.detail_coefficients
seen: dict[str, torch.Tensor] = {}


def recording(name: str, head: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    def run(bottleneck: torch.Tensor) -> torch.Tensor:
        seen[name] = head(bottleneck).detach()
        return seen[name]
    return run


rows = []


def measure(setting: str, warp: torch.Tensor | None = None, detail: torch.Tensor | None = None) -> None:
    unet.shape_coefficients = recording("warp", network_warp) if warp is None else (lambda _b: warp)
    unet.detail_coefficients = recording("detail", network_detail) if detail is None else (lambda _b: detail)
    out = deid.deidentify(crops)
    emb = rec.embed(out)
    row = {"kind": "fadenet_per_face_probe", "deidentifier": deid.name, "setting": setting,
           "ssim": float(ssim(crops, out).mean()), "cos_to_original": float((emb * ref).sum(1).mean()),
           "loo_rank1": leave_one_out_rank1(ref, emb, labels), "recognizer": rec.name, "faces": len(crops),
           "protocol": "lfw_select_160x8 (4 per identity)"}
    rows.append(row)
    print(f"{setting:28s} SSIM {row['ssim']:.4f}  cos {row['cos_to_original']:.4f}  "
          f"leave-one-out Rank-1 {row['loo_rank1']:.4f}", flush=True)


def bounded(c: torch.Tensor, bound: float) -> torch.Tensor:
    length = c.norm(dim=1, keepdim=True).clamp_min(1e-6)
    return c * torch.clamp(bound / length, max=1.0)


measure("network (shipped)")
for part in ("detail", "warp"):  # how much the network's coefficients vary from face to face
    c = seen[part]
    spread = (c - c.mean(0)).norm(dim=1)
    rows.append({"kind": "fadenet_per_face_coefficients", "deidentifier": deid.name, "part": part,
                 "length_median": float(c.norm(dim=1).median()), "mean_vector_length": float(c.mean(0).norm()),
                 "spread_median": float(spread.median()), "spread_p95": float(spread.quantile(0.95)),
                 "faces_own_length_median": float((own_detail_coefficients(crops) if part == "detail" else own)
                                                  .norm(dim=1).median()),
                 "faces": len(c), "protocol": "lfw_select_160x8 (4 per identity)"})
    print(f"{part}: coefficient vectors' length {rows[-1]['length_median']:.2f} (median), their mean's "
          f"{rows[-1]['mean_vector_length']:.2f}, spread around it {rows[-1]['spread_median']:.2f} (median); the "
          f"faces' own: {rows[-1]['faces_own_length_median']:.2f}")
template = seen["detail"].mean(0, keepdim=True).expand_as(seen["detail"])
measure("detail: the network's mean for every face", detail=template)
measure("detail: none (mean real detail)", detail=torch.zeros_like(template))
measure("warp: none", warp=torch.zeros_like(own))
for alpha in (1.0, 2.0):
    measure(f"warp: own x{alpha:g}, bound 3", warp=bounded(alpha * own, 3.0))
    measure(f"warp: own x{alpha:g}, unbounded", warp=alpha * own)
print(f"wrote {record_metrics(rows, 'fadenet_per_face_probe')}")
