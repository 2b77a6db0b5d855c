"""Embeddings cached on disk: originals per recogniser and alignment (keyed by the image file's sha256), and any
crop at all by its content (:func:`embed_cached`), so a rerun or another notebook does not recompute them."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np
from tqdm.auto import tqdm

from deidkit.cache import EmbeddingCache
from deidkit.eval.provenance import recognizer_weights_sha256


def embed_batched(recognizer, crops: np.ndarray, batch_size: int = 64, desc: str | None = None) -> np.ndarray:
    """``recognizer.embed`` over ``crops`` in batches, with a progress bar."""
    out = []
    for i in tqdm(range(0, len(crops), batch_size), desc=desc or f"embed {recognizer.name}", leave=False):
        out.append(recognizer.embed(crops[i:i + batch_size]))
    return np.concatenate(out) if out else np.zeros((0, recognizer.dim), dtype=np.float32)


def recognizer_key(recognizer) -> str:
    """The recogniser's name plus what changes its output: the sha256 of its weights
    (:func:`deidkit.eval.provenance.recognizer_weights_sha256`: the weights file of the MobileFaceNets, dlib's model
    files; its first 12 hex digits), whether it adds the mirror image's features, and dlib's jittering. Every
    embedding cache is keyed by it: another checkpoint under the same name never reads these embeddings."""
    parts = [recognizer.name]
    sha = recognizer_weights_sha256(recognizer)
    if sha:
        parts.append(sha[:12])
    if getattr(recognizer, "flip", False):
        parts.append("flip")
    if getattr(recognizer, "num_jitters", 0):
        parts.append(f"jitter{recognizer.num_jitters}")
    return "-".join(parts)


def content_keys(crops: np.ndarray) -> list[str]:
    """sha256 of each crop's shape and pixels."""
    return [hashlib.sha256(f"{c.shape}{c.dtype}".encode() + np.ascontiguousarray(c).tobytes()).hexdigest()
            for c in crops]


def embed_cached(recognizer, crops: np.ndarray, batch_size: int = 64, desc: str | None = None) -> np.ndarray:
    """:func:`embed_batched` with a content-addressed disk cache (recogniser and weights x crop pixels): the same
    crops — originals, or a deterministic de-identifier's outputs — are embedded once across runs and notebooks."""
    keys = content_keys(crops)
    cache = EmbeddingCache(recognizer_key(recognizer), "content")
    missing = [i for i, k in enumerate(keys) if k not in cache]
    if missing:
        cache.put([keys[i] for i in missing], embed_batched(recognizer, crops[missing], batch_size, desc))
        cache.save()
    if not keys:
        return np.zeros((0, recognizer.dim), dtype=np.float32)
    return cache.get(keys)


def embed_originals(recognizer, shas: list[str], load_crops, tag: str, batch_size: int = 64) -> np.ndarray:
    """Embeddings of original images identified by ``shas``; ``load_crops(indices)`` returns the crops of the
    ones missing from the cache. Keyed by the recogniser's weights too (:func:`recognizer_key`): another checkpoint
    under the same name never reads these embeddings."""
    cache = EmbeddingCache(recognizer_key(recognizer), tag)
    missing = [i for i, s in enumerate(shas) if s not in cache]
    if missing:
        for start in tqdm(range(0, len(missing), 512), desc=f"embed {recognizer.name} originals"):
            idx = missing[start:start + 512]
            cache.put([shas[i] for i in idx], embed_batched(recognizer, load_crops(idx), batch_size))
            cache.save()  # after every chunk: an interrupted run (13k dlib embeddings take an hour) resumes
    return cache.get(list(shas))


class DeidentifiedBatch:
    """A de-identifier's outputs on a batch of crops, computed only when something needs their pixels.

    What recognisers see of the outputs goes through :func:`embed_deidentified`: when the batch has been
    de-identified before by the same de-identifier (same weights, options and kit source: see
    :func:`deidkit.cache.deidentifier_fingerprint`) and every output's embedding is cached, the network does not run
    again. ``compute`` is how the caller de-identifies (whole batch, or in chunks); default ``deidentify(crops)``."""

    def __init__(self, deidentifier, crops: np.ndarray, compute=None) -> None:
        self.deidentifier, self.crops = deidentifier, crops
        self._compute = compute or (lambda: deidentifier.deidentify(crops))
        self._outputs: np.ndarray | None = None
        self._keys: list[str] | None = None

    @property
    def outputs(self) -> np.ndarray:
        if self._outputs is None:
            self._outputs = self._compute()
        return self._outputs

    @property
    def keys(self) -> list[str]:
        """Content keys of the outputs (:func:`content_keys`), remembered across runs."""
        if self._keys is None:
            from deidkit.cache import content_digest, deidentifier_fingerprint, output_keys

            self._keys = output_keys(deidentifier_fingerprint(self.deidentifier), content_digest(self.crops),
                                     lambda: content_keys(self.outputs))
        return self._keys


def embed_keyed(recognizer, keys: list[str], crops: Callable[[], np.ndarray], batch_size: int = 64,
                desc: str | None = None) -> np.ndarray:
    """Embeddings of crops known by their content keys (:func:`content_keys`): from the cache when every one is
    there, else :func:`embed_cached` of ``crops()`` (which produces the pixels only then)."""
    cache = EmbeddingCache(recognizer_key(recognizer), "content")
    if keys and all(k in cache for k in keys):
        return cache.get(keys)
    return embed_cached(recognizer, crops(), batch_size, desc)


def embed_deidentified(recognizer, batch: DeidentifiedBatch, batch_size: int = 64,
                       desc: str | None = None) -> np.ndarray:
    """:func:`embed_cached` of a batch's outputs, without de-identifying again when every embedding is cached."""
    return embed_keyed(recognizer, batch.keys, lambda: batch.outputs, batch_size, desc)
