"""Embeddings of original images, cached on disk per recogniser and alignment so a rerun does not recompute."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from deidkit.assets import cache_dir


class EmbeddingCache:
    """A sha256 -> embedding store for one recogniser and one alignment (``tag``)."""

    def __init__(self, recognizer_name: str, tag: str, root: Path | None = None) -> None:
        self.path = (root or cache_dir() / "embeddings") / f"{recognizer_name}--{tag}.npz"
        self._data: dict[str, np.ndarray] = {}
        if self.path.is_file():
            with np.load(self.path, allow_pickle=False) as z:
                self._data = dict(zip(z["sha256"].tolist(), z["emb"]))

    def __contains__(self, sha: str) -> bool:
        return sha in self._data

    def get(self, shas: list[str]) -> np.ndarray:
        return np.stack([self._data[s] for s in shas]).astype(np.float32)

    def put(self, shas: list[str], emb: np.ndarray) -> None:
        self._data.update(zip(shas, np.asarray(emb, dtype=np.float32)))

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.stem + f".tmp{os.getpid()}.npz")
        shas = sorted(self._data)
        np.savez(tmp, sha256=np.array(shas), emb=np.stack([self._data[s] for s in shas]) if shas else np.zeros((0, 0)))
        os.replace(tmp, self.path)


def embed_batched(recognizer, crops: np.ndarray, batch_size: int = 64, desc: str | None = None) -> np.ndarray:
    """``recognizer.embed`` over ``crops`` in batches, with a progress bar."""
    out = []
    for i in tqdm(range(0, len(crops), batch_size), desc=desc or f"embed {recognizer.name}", leave=False):
        out.append(recognizer.embed(crops[i:i + batch_size]))
    return np.concatenate(out) if out else np.zeros((0, recognizer.dim), dtype=np.float32)


def embed_originals(recognizer, shas: list[str], load_crops, tag: str, batch_size: int = 64) -> np.ndarray:
    """Embeddings of original images identified by ``shas``; ``load_crops(indices)`` returns the crops of the
    ones missing from the cache."""
    cache = EmbeddingCache(recognizer.name, tag)
    missing = [i for i, s in enumerate(shas) if s not in cache]
    if missing:
        for start in tqdm(range(0, len(missing), 512), desc=f"embed {recognizer.name} originals"):
            idx = missing[start:start + 512]
            cache.put([shas[i] for i in idx], embed_batched(recognizer, load_crops(idx), batch_size))
        cache.save()
    return cache.get(list(shas))
