"""The live model's training data: which LFW images a configuration trains on (never an identity of the test
protocols), their canonical crops, the random distortion that makes each batch's input, the order of the batches,
and the recogniser representations of the targets that the warm-up conditions on. The recipe itself is
:mod:`deidkit.train.live`."""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from deidkit.configs import LiveConfig
from deidkit.deidentifiers.live import center_grid
from deidkit.models.live import RecognizerFeatures


def training_paths(cfg: LiveConfig) -> list[str]:
    """The LFW paths a config trains on: its manifest's, or ``max_images`` of them drawn with its seed. A manifest
    that holds an identity of the test protocols is refused (``ValueError``), whatever its name."""
    from deidkit.data.lfw import assert_no_test_identities, load_manifest

    df = load_manifest(cfg.manifest)
    # load_manifest checks only the manifests named as training ones; a configuration may name any other
    assert_no_test_identities(df["identity"], f"training manifest {cfg.manifest}")
    paths = list(df["path"])
    if cfg.max_images is not None and cfg.max_images < len(paths):
        rng = np.random.default_rng(cfg.seed)
        paths = [paths[i] for i in np.sort(rng.choice(len(paths), cfg.max_images, replace=False))]
    return paths


def load_training_images(cfg: LiveConfig, chunk: int = 512) -> np.ndarray:
    """Canonical crops (N, C, C, 3) uint8 of the training manifest at the config's canonical size
    (``C = size / crop_fraction``), aligned once and cached by :func:`deidkit.data.lfw.aligned_crops`, or read
    from the config's crop pack."""
    from deidkit.data.lfw import aligned_crops

    paths = training_paths(cfg)
    c = cfg.canonical_size
    if cfg.crop_pack:
        from deidkit.data.packs import read_crop_pack

        _, crops = read_crop_pack(cfg.crop_pack, paths)
        if crops.shape[1] != c:
            crops = np.stack([cv2.resize(x, (c, c), interpolation=cv2.INTER_AREA) for x in crops])
        return crops
    out = np.empty((len(paths), c, c, 3), dtype=np.uint8)
    for s in tqdm(range(0, len(paths), chunk), desc="training crops", disable=len(paths) <= chunk):
        crops = aligned_crops(paths[s:s + chunk], size=224)
        out[s:s + len(crops)] = [cv2.resize(x, (c, c), interpolation=cv2.INTER_AREA) for x in crops]
    return out


def distort_grid(base: torch.Tensor, scale: float, rotate_deg: float, elastic: float,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Random scale, rotation (about the centre) and a smooth elastic displacement applied to a sampling grid.

    ``elastic`` is the displacement's standard deviation as a fraction of the image half-width; the field is
    a 4x4 grid of Gaussian offsets upsampled bicubically, so it bends features rather than adding noise."""
    n, h, w, _ = base.shape
    dev = base.device
    s = 1.0 + (torch.rand(n, generator=generator) * 2 - 1) * scale
    a = torch.deg2rad((torch.rand(n, generator=generator) * 2 - 1) * rotate_deg)
    rot = torch.stack([torch.stack([torch.cos(a), -torch.sin(a)], 1), torch.stack([torch.sin(a), torch.cos(a)], 1)], 1)
    rot = (rot / s.view(n, 1, 1)).to(dev)  # zooming in by s = sampling a region 1/s as large
    grid = torch.einsum("nij,nhwj->nhwi", rot, base)
    if elastic > 0:
        field = torch.randn(n, 2, 4, 4, generator=generator) * elastic
        field = F.interpolate(field, size=(h, w), mode="bicubic", align_corners=True).to(dev)
        grid = grid + field.permute(0, 2, 3, 1)
    return grid


def make_batch(images: torch.Tensor, cfg: LiveConfig, generator: torch.Generator | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(target x, distorted input x_in, mirrored flags) at the network's size from canonical crops in [-1, 1]."""
    n = images.shape[0]
    flip = torch.rand(n, generator=generator) < 0.5
    images = torch.where(flip.view(n, 1, 1, 1).to(images.device), images.flip(3), images)
    base = center_grid(n, cfg.size, cfg.crop_fraction, images.device)
    x = F.grid_sample(images, base, mode="bilinear", padding_mode="reflection", align_corners=False)
    grid = distort_grid(base, cfg.aug_scale, cfg.aug_rotate_deg, cfg.aug_elastic, generator)
    x_in = F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return x, x_in, flip


class IndexBatches:
    """One epoch of shuffled index batches (drop_last: every step sees a full batch). With ``steps``, an epoch
    is that many batches, walking through one long shuffled stream of the data (so short epochs still visit
    every image over the run)."""

    def __init__(self, n: int, batch_size: int, seed: int, epoch: int, steps: int | None = None) -> None:
        if n < batch_size:
            raise ValueError(f"{n} training images is fewer than one batch of {batch_size}")
        self.batch_size = batch_size
        if steps is None:
            self.order = np.random.default_rng([seed, epoch]).permutation(n)
            self.steps = n // batch_size
        else:
            start, stop = epoch * steps * batch_size, (epoch + 1) * steps * batch_size
            passes = range(start // n, (stop - 1) // n + 1)
            stream = np.concatenate([np.random.default_rng([seed, p]).permutation(n) for p in passes])
            offset = start - passes[0] * n
            self.order = stream[offset:offset + steps * batch_size]
            self.steps = steps

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self.order[i * self.batch_size:(i + 1) * self.batch_size]


def images_to_float(batch: torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W, 3) tensor -> float (N, 3, H, W) in [-1, 1]."""
    return batch.permute(0, 3, 1, 2).float() / 127.5 - 1.0


@torch.no_grad()
def target_representations(features: RecognizerFeatures, images: torch.Tensor, cfg: LiveConfig,
                           batch_size: int = 64, show_progress: bool = True) -> torch.Tensor:
    """Representations (N, 2, dim) of the training targets: the undistorted central crop, as is and mirrored
    (the two targets :func:`make_batch` can produce). Used by the warm-up, which runs no recogniser."""
    out = []
    for s in tqdm(range(0, len(images), batch_size), desc="target representations", disable=not show_progress):
        x = images_to_float(images[s:s + batch_size]).to(next(features.buffers()).device)
        x = F.grid_sample(x, center_grid(len(x), cfg.size, cfg.crop_fraction, x.device), mode="bilinear",
                          padding_mode="reflection", align_corners=False)
        out.append(torch.stack([features.embed(x), features.embed(x.flip(3))], 1).cpu())
    return torch.cat(out)

