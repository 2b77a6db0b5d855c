"""The labelled faces a critic (and FaDeNet against it) trains on: canonical crops of the ``lfw_train_pool``
identities, split into a training and a held-out part (one image per identity held out)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

import numpy as np

from deidkit.data.images import resize_crops


@dataclass
class IdentityData:
    """Labelled canonical crops for training a critic (and FaDeNet): train and held-out splits."""

    train_images: np.ndarray  # (N, S, S, 3) uint8
    train_labels: np.ndarray  # (N,) int64 class indices
    heldout_images: np.ndarray
    heldout_labels: np.ndarray
    identities: list[str]  # class index -> identity name
    train_paths: list[str] = field(default_factory=list)
    heldout_paths: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for nm, x, y in (("train", self.train_images, self.train_labels),
                         ("heldout", self.heldout_images, self.heldout_labels)):
            if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != np.uint8 or x.shape[1] != x.shape[2]:
                raise ValueError(f"{nm} images must be square uint8 (N, S, S, 3) crops, got {x.dtype} {x.shape}")
            if len(x) != len(y):
                raise ValueError(f"{nm}: {len(x)} images but {len(y)} labels")
            if len(y) and (y.min() < 0 or y.max() >= len(self.identities)):
                raise ValueError(f"{nm} labels must lie in [0, {len(self.identities)})")

    @property
    def num_classes(self) -> int:
        return len(self.identities)

    def resized(self, size: int) -> IdentityData:
        """The same data with crops resized to ``size`` (area averaging when shrinking)."""
        return dataclasses.replace(self, train_images=resize_crops(self.train_images, size),
                                   heldout_images=resize_crops(self.heldout_images, size))


def load_train_pool(image_size: int, max_identities: int | None = None, seed: int = 0,
                    crop_pack: str | os.PathLike | None = None) -> IdentityData:
    """The critic's data from the ``lfw_train_pool`` manifest: identities with a ``train``/``heldout``
    ``critic_split``, canonical crops (aligned and cached by :func:`deidkit.data.lfw.aligned_crops`, or read from
    ``crop_pack``: see :mod:`deidkit.data.packs`) resized to ``image_size``. ``max_identities`` keeps a random
    subset of identities (seeded)."""
    from deidkit.data.lfw import aligned_crops, load_manifest

    pool = load_manifest("lfw_train_pool")
    if "critic_split" not in pool.columns:
        raise ValueError("manifest lfw_train_pool has no critic_split column; rebuild the manifests (notebook 00)")
    pool = pool[pool["critic_split"].isin(["train", "heldout"])]
    ids = sorted(pool["identity"].unique())
    if not ids:
        raise ValueError("manifest lfw_train_pool has no identity with a critic split")
    if max_identities is not None and max_identities < len(ids):
        rng = np.random.default_rng(seed)
        ids = sorted(rng.choice(ids, size=max_identities, replace=False).tolist())
        pool = pool[pool["identity"].isin(ids)]
    index = {name: i for i, name in enumerate(ids)}
    if crop_pack:
        from deidkit.data.packs import read_crop_pack

        crops = resize_crops(read_crop_pack(crop_pack, pool["path"].tolist())[1], image_size)
    else:
        crops = resize_crops(aligned_crops(pool["path"].tolist(), size=224), image_size)
    labels = pool["identity"].map(index).to_numpy(dtype=np.int64)
    tr = (pool["critic_split"] == "train").to_numpy()
    paths = pool["path"].to_numpy()
    return IdentityData(crops[tr], labels[tr], crops[~tr], labels[~tr], ids,
                        paths[tr].tolist(), paths[~tr].tolist())
