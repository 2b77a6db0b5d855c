"""What a FaDeNet run starts from besides its seed: the fitted face-detail and face-geometry bases of a U-Net that
has them, a teacher de-identifier's outputs when the image terms follow a teacher, and the state a fine-tuning run
starts from. The recipe itself is :mod:`deidkit.train.fadenet`."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from deidkit.checkpoints import init_state as checkpoint_init_state
from deidkit.models.unet import UNet


def fit_detail_basis(unet: UNet, images: np.ndarray, k: int, seed: int = 0, max_images: int = 4000
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """The face-detail basis of a ``detail_basis`` U-Net: the first ``k`` principal components (randomised SVD)
    of what the U-Net's input blur removes from real faces, in tanh's pre-image, each scaled to one standard
    deviation; and the mean removed detail. From at most ``max_images`` training crops (uint8, N x S x S x 3)."""
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(images), min(len(images), max_images), replace=False))
    device = next(unet.parameters()).device
    residuals = []
    with torch.no_grad():
        for i in range(0, len(pick), 256):
            x = torch.from_numpy(np.ascontiguousarray(images[pick[i:i + 256]])).to(device)
            x = x.permute(0, 3, 1, 2).float() / 127.5 - 1.0
            lim = 0.999  # as the U-Net clamps before atanh
            r = torch.atanh(x.clamp(-lim, lim)) - torch.atanh(unet.blurred_input(x).clamp(-lim, lim))
            residuals.append(r.flatten(1))
        r = torch.cat(residuals)
        mean = r.mean(0, keepdim=True)
        torch.manual_seed(seed)
        _, s, v = torch.svd_lowrank(r - mean, q=min(k + 16, len(r)), niter=4)
    scale = s[:k] / max(len(r) - 1, 1) ** 0.5
    _, side, _, chans = images.shape
    basis = (v[:, :k].T * scale[:, None]).reshape(k, chans, side, side)
    return basis, mean.reshape(1, chans, side, side)


def fit_shape_basis(unet: UNet, images: np.ndarray, k: int, max_images: int = 4000,
                    smooth_sigma: float = 1.5) -> torch.Tensor:
    """The face-geometry basis of a ``shape_basis`` U-Net: the first ``k`` principal components of where real faces'
    features sit relative to the mean face (dense optical flow, OpenCV's DIS, from the mean grey face to each
    training face, both smoothed by ``smooth_sigma`` pixels so texture does not count as geometry), windowed to the
    face box as the network applies it, each scaled to one standard deviation: (k, 2, S, S) pixels. Deterministic
    (the first ``max_images`` crops, uint8 N x S x S x 3)."""
    import cv2

    faces = images[:max_images]
    grey = np.stack([cv2.GaussianBlur(cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY), (0, 0), smooth_sigma)
                     for f in faces])
    mean_face = np.round(grey.astype(np.float32).mean(0)).astype(np.uint8)
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    # flow[y, x] = where the mean face's pixel (x, y) lies in the face: a warp by it maps that face to the mean
    flows = torch.from_numpy(np.stack([dis.calc(mean_face, g, None) for g in grey])).permute(0, 3, 1, 2)
    flows = (flows * unet.warp_window.cpu()).flatten(1).double()
    centred = flows - flows.mean(0, keepdim=True)
    _, s, vt = torch.linalg.svd(centred, full_matrices=False)
    scale = s[:k] / max(len(flows) - 1, 1) ** 0.5
    side = images.shape[1]
    return (vt[:k] * scale[:, None]).float().reshape(k, 2, side, side)


def teacher_outputs(teacher: str, images: np.ndarray, run_dir: Path, progress: bool = True,
                    batch_size: int = 64) -> np.ndarray:
    """What the de-identifier ``teacher`` (a name for :func:`deidkit.deidentifiers.load_deidentifier`) makes of
    ``images``: computed once per run and kept in its folder (``teacher.npz``, with the teacher's name and the
    inputs' digest, so a changed teacher or data set is recomputed, not reused)."""
    from tqdm.auto import tqdm

    from deidkit.cache import content_digest
    from deidkit.deidentifiers import load_deidentifier

    digest = content_digest(images)
    path = run_dir / "teacher.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            if str(z["teacher"]) == teacher and str(z["digest"]) == digest:
                return z["images"]
    model = load_deidentifier(teacher)
    out = np.empty_like(images)
    for s in tqdm(range(0, len(images), batch_size), desc=f"teacher {teacher}", disable=not progress):
        out[s:s + batch_size] = model.deidentify(images[s:s + batch_size])
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / "teacher.tmp.npz"
    np.savez(tmp, images=out, teacher=np.array(teacher), digest=np.array(digest))
    os.replace(tmp, path)
    return out


def load_init_state(unet: UNet, state: dict[str, torch.Tensor], source: str) -> None:
    """``state`` into ``unet``; a warping network (``shape_warp``, ``shape_basis``) may start from one without the
    warp (its warp head then starts as no warp, its shape basis stays as fitted), any other difference is an
    error."""
    missing, unexpected = unet.load_state_dict(state, strict=False)
    missing = [k for k in missing if not (k.startswith(("warp.", "shape.")) or k == "shape_modes")]
    if missing or unexpected:
        raise ValueError(f"{source}: not a state of this U-Net (missing {missing[:3]}, unexpected {unexpected[:3]})")


def init_state(init_from: str, run_dir: str | os.PathLike | None = None) -> dict[str, torch.Tensor]:
    """The U-Net state ``init_from`` names (see :func:`deidkit.checkpoints.init_state`): ``pretrained:fadenet`` or a
    run's epoch snapshot (``{"unet": ...}``)."""
    return checkpoint_init_state(init_from, "unet", run_dir)
