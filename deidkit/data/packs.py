"""Crop packs: the canonical crops of a manifest in one file, so that a model can be trained on a machine that
holds no LFW (a rented GPU, say) — ``deidkit data pack`` writes one, ``LiveConfig(crop_pack=...)`` trains from it.

A pack is a plain ``.npz`` (read with ``allow_pickle=False``): the LFW-relative paths, each crop JPEG-coded at the
size the training recipe resizes to (the same INTER_AREA resize), and the byte offsets between them. JPEG at
quality 95 keeps a pack of the 8,411 training-pool crops at 80 px near 30 MB; the decoded crops differ from the
cache's by a mean of about two 8-bit levels at quality 95 (1.9, measured by :func:`pack_error`), so a model trained from a pack is not
bit-identical to one trained from the cache.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

PACK_FORMAT = 1
_KEYS = ("format", "size", "quality", "paths", "offsets", "data")


def write_crop_pack(paths: list[str], out: str | os.PathLike, size: int, quality: int = 95,
                    chunk: int = 512, show_progress: bool = True) -> dict:
    """Write the canonical crops of LFW ``paths`` (from the alignment cache, aligning what is missing) resized to
    ``size`` pixels into the pack ``out`` (atomically). Returns ``{"images", "bytes", "size", "quality"}``."""
    from deidkit.data.lfw import aligned_crops

    if not 16 <= size <= 224 or not 1 <= quality <= 100:
        raise ValueError(f"pack size must lie in [16, 224] and quality in [1, 100], got {size}, {quality}")
    paths = list(paths)
    blobs: list[bytes] = []
    for s in tqdm(range(0, len(paths), chunk), desc="crop pack", disable=not show_progress):
        for crop in aligned_crops(paths[s:s + chunk], size=224):
            small = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
            if not ok:
                raise RuntimeError(f"JPEG encoding failed for {paths[s]}")
            blobs.append(buf.tobytes())
    offsets = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to a temporary name
        np.savez(f, format=np.int64(PACK_FORMAT), size=np.int64(size), quality=np.int64(quality),
                 paths=np.asarray(paths, dtype=np.str_), offsets=offsets,
                 data=np.frombuffer(b"".join(blobs), dtype=np.uint8))
    os.replace(tmp, out)
    return {"images": len(paths), "bytes": out.stat().st_size, "size": size, "quality": quality}


def read_crop_pack(path: str | os.PathLike, paths: list[str] | None = None) -> tuple[list[str], np.ndarray]:
    """(paths, crops (N, S, S, 3) uint8 RGB) of a pack; with ``paths``, only those, in that order (each must be in
    the pack). Raises ``ValueError`` naming the file when it is not a readable pack, or when the crops asked for
    show an identity of the test protocols (:func:`deidkit.data.lfw.assert_no_test_identities`)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in _KEYS if k not in z.files]
            if missing:
                raise ValueError(f"{path}: not a crop pack (missing {', '.join(missing)})")
            if int(z["format"]) != PACK_FORMAT:
                raise ValueError(f"{path}: crop pack format {int(z['format'])}, this kit reads {PACK_FORMAT}")
            names, offsets, data, size = [str(p) for p in z["paths"]], z["offsets"], z["data"], int(z["size"])
    except Exception as e:  # a missing, truncated or foreign file (zipfile errors, OSError, pickled arrays, ...)
        if isinstance(e, ValueError) and str(e).startswith(str(path)):
            raise
        raise ValueError(f"{path}: not a readable crop pack ({type(e).__name__}: {e})") from e
    if len(offsets) != len(names) + 1 or offsets[-1] != len(data):
        raise ValueError(f"{path}: crop pack offsets do not match its data (truncated?)")
    index = {p: i for i, p in enumerate(names)}
    if paths is not None:
        absent = [p for p in paths if p not in index]
        if absent:
            raise ValueError(f"{path}: {len(absent)} of the {len(paths)} images asked for are not in the pack "
                             f"(first: {absent[0]})")
        names = list(paths)
    # packs exist to train from: refuse one that would hand a trainer a test identity
    from deidkit.data.lfw import assert_no_test_identities, identity_of_path

    assert_no_test_identities((identity_of_path(n) for n in names), f"crop pack {path}")
    out = np.empty((len(names), size, size, 3), dtype=np.uint8)
    for k, name in enumerate(names):
        i = index[name]
        img = cv2.imdecode(data[offsets[i]:offsets[i + 1]], cv2.IMREAD_COLOR)
        if img is None or img.shape != (size, size, 3):
            raise ValueError(f"{path}: the crop of {name} does not decode to {size}x{size} RGB")
        out[k] = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return names, out


def pack_error(path: str | os.PathLike, n: int = 200, seed: int = 0) -> float:
    """Mean absolute difference (8-bit levels) between ``n`` random crops of a pack and the same crops from the
    alignment cache, resized the same way: what the JPEG coding costs."""
    from deidkit.data.lfw import aligned_crops

    with np.load(path, allow_pickle=False) as z:
        names = [str(p) for p in z["paths"]]
    rng = np.random.default_rng(seed)
    pick = [names[i] for i in np.sort(rng.choice(len(names), min(n, len(names)), replace=False))]
    _, packed = read_crop_pack(path, pick)
    size = packed.shape[1]
    cached = np.stack([cv2.resize(c, (size, size), interpolation=cv2.INTER_AREA) for c in aligned_crops(pick)])
    return float(np.abs(packed.astype(np.int16) - cached.astype(np.int16)).mean())
