"""FaDeNet's data augmentation with torchvision transforms v2.

As in the paper (which used imgaug): horizontal flip with p = 0.5; crop or pad each side by a fraction of the
side drawn from [-5%, 10%] (negative crops, positive pads with black) and resize back; scale in [80%, 120%];
rotation in [-5 deg, 5 deg]. Every transform draws from torch's global RNG, which the training loop seeds and
checkpoints, so augmented runs resume reproducibly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from deidkit.data.images import from_model_range, to_model_range
from deidkit.train.distributed import Shard


class RandomCropPad(v2.Transform):
    """Crop (negative fraction) or pad (positive fraction) each of the four sides independently by a fraction of
    the image side drawn uniformly from ``percent``, then resize back to the original size (imgaug's
    ``CropAndPad(percent=...)`` with ``keep_size=True``). Padding is black (``fill``)."""

    def __init__(self, percent: tuple[float, float] = (-0.05, 0.10), fill: float = 0.0) -> None:
        super().__init__()
        lo, hi = percent
        if not -0.5 < lo <= hi:
            raise ValueError(f"percent must satisfy -0.5 < low <= high, got {percent}")
        self.percent, self.fill = (float(lo), float(hi)), fill

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = v2.query_size(flat_inputs)
        lo, hi = self.percent
        f = torch.empty(4).uniform_(lo, hi)  # top, right, bottom, left
        top, right, bottom, left = (round(float(f[i]) * (h if i % 2 == 0 else w)) for i in range(4))
        return {"top": -top, "left": -left, "height": h + top + bottom, "width": w + left + right, "size": [h, w]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        # Pad first (the positive sides), then crop the window: v2's crop does not pad out of bounds by itself.
        top, left, height, width = params["top"], params["left"], params["height"], params["width"]
        h, w = params["size"]
        pad_l, pad_t = max(0, -left), max(0, -top)
        pad_r, pad_b = max(0, left + width - w), max(0, top + height - h)
        if pad_l or pad_t or pad_r or pad_b:
            inpt = TF.pad(inpt, [pad_l, pad_t, pad_r, pad_b], fill=self.fill)
        return TF.resized_crop(inpt, top + pad_t, left + pad_l, height, width, [h, w], antialias=True)


def fadenet_augmentation(flip_p: float = 0.5, crop_pad: tuple[float, float] = (-0.05, 0.10),
                         scale: tuple[float, float] = (0.8, 1.2), degrees: float = 5.0) -> v2.Compose:
    """The paper's augmentation for (3, H, W) image tensors (uint8 or float)."""
    return v2.Compose([
        v2.RandomHorizontalFlip(flip_p),
        RandomCropPad(crop_pad),
        v2.RandomAffine(degrees=(-degrees, degrees), scale=scale),
    ])


def augment_batch(batch: torch.Tensor, transform: v2.Transform | None = None) -> torch.Tensor:
    """Apply ``transform`` (default: :func:`fadenet_augmentation`) to each image of an (N, 3k, H, W) batch
    independently; shape and dtype are kept. ``k`` > 1 stacks images that must move together (an input and its
    target): one draw transforms all of an image's channels."""
    if batch.ndim != 4 or batch.shape[1] % 3:
        raise ValueError(f"expected an (N, 3k, H, W) batch, got shape {tuple(batch.shape)}")
    transform = transform or fadenet_augmentation()
    return torch.stack([transform(img) for img in batch]) if len(batch) else batch






class ArrayBatches:
    """One epoch of shuffled mini-batches from an in-memory image array, augmented on the fly.

    ``images`` is (N, H, W, 3) uint8 (canonical crops), ``labels`` (N,) integers. Each batch is
    ``(x, y)`` with ``x`` float (B, 3, H, W) in [-1, 1] and ``y`` int64 labels. The order depends only on
    ``(seed, epoch)``; the augmentation draws from torch's global RNG (seeded and checkpointed by the loop).
    With ``targets`` (images of the same shape, e.g. a teacher's outputs) each batch is ``(x, y, t)``, every
    target augmented with its image's draw.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int, seed: int, epoch: int,
                 augment: bool = True, shuffle: bool = True, drop_last: bool = True,
                 transform: v2.Transform | None = None, shard: Shard | None = None,
                 targets: np.ndarray | None = None) -> None:
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
        if targets is not None and (targets.shape != images.shape or targets.dtype != np.uint8):
            raise ValueError(f"targets must be uint8 {images.shape} like the images, got {targets.dtype} "
                             f"{targets.shape}")
        if len(labels) != len(images):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if targets is not None:  # one (N, 6, H, W) array: image and target drawn and augmented together
            images = np.concatenate([images, targets], axis=-1)
        self.has_targets = targets is not None
        self.images = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
        self.batch_size, self.augment, self.drop_last = batch_size, augment, drop_last
        # under torchrun: the global batch is drawn and augmented as in one process, this process keeps its share
        self.shard = shard or Shard()
        self.transform = transform or fadenet_augmentation()
        n = len(images)
        if shuffle:
            g = torch.Generator().manual_seed(int(seed) * 100_003 + int(epoch))
            self.order = torch.randperm(n, generator=g)
        else:
            self.order = torch.arange(n)
        # Dropping a ragged last batch keeps BatchNorm statistics and per-step timings comparable,
        # unless that would leave nothing (tiny data sets in tests).
        self._n_batches = n // batch_size if drop_last and n >= batch_size else -(-n // batch_size)

    def __len__(self) -> int:
        return self._n_batches

    def __iter__(self):
        for b in range(self._n_batches):
            idx = self.order[b * self.batch_size : (b + 1) * self.batch_size]
            x = self.images[idx]
            if self.augment:
                x = augment_batch(x, self.transform)
            x = self.shard.take(to_model_range(x))
            if self.has_targets:
                yield x[:, :3], self.shard.take(self.labels[idx]), x[:, 3:]
            else:
                yield x, self.shard.take(self.labels[idx])


def random_views(batch: torch.Tensor, scale: float = 0.08, shift: float = 0.05, rotate_deg: float = 6.0,
                 resolutions: tuple[float, ...] = (1.0, 0.75, 0.5), shard: Shard | None = None) -> torch.Tensor:
    """Differentiable random views of an (N, 3, H, W) batch: per image a random scale, shift and rotation, then
    the whole batch at a random lower resolution and back (area down, bilinear up).

    Used on FaDeNet's output before the critic (``critic_views`` in :class:`deidkit.train.fadenet.FaDeNetConfig`):
    averaging the critic's loss over such views (expectation over transformation) rewards changes of the face
    that survive resampling and misalignment, and stops rewarding thin pixel patterns that fool only the exact
    critic at the exact alignment. Draws from torch's global RNG (seeded and checkpointed by the training loop);
    with a ``shard`` the batch is this process's share and the draws are the global batch's (see distributed).
    """
    shard = shard or Shard()
    n, _, h, w = batch.shape
    dev = batch.device
    g = n * shard.world
    s = shard.take(1.0 + (torch.rand(g) * 2 - 1) * scale)
    a = shard.take(torch.deg2rad((torch.rand(g) * 2 - 1) * rotate_deg))
    t = shard.take((torch.rand(g, 2) * 2 - 1) * shift * 2)  # affine_grid coordinates span 2 per side
    cos, sin = torch.cos(a) / s, torch.sin(a) / s
    theta = torch.stack([torch.stack([cos, -sin, t[:, 0]], 1), torch.stack([sin, cos, t[:, 1]], 1)], 1).to(dev)
    grid = torch.nn.functional.affine_grid(theta, [n, 3, h, w], align_corners=False)
    out = torch.nn.functional.grid_sample(batch, grid, mode="bilinear", padding_mode="border", align_corners=False)
    f = resolutions[int(torch.randint(len(resolutions), (1,)))]
    if f < 1.0:
        small = torch.nn.functional.interpolate(out, size=(max(8, round(h * f)), max(8, round(w * f))), mode="area")
        out = torch.nn.functional.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    return out


__all__ = ["ArrayBatches", "RandomCropPad", "augment_batch", "fadenet_augmentation", "from_model_range",
           "random_views", "to_model_range"]
