"""Stimulus images made from arrays: each identity's gallery and probe images, de-identified by each
de-identifier and written as PNG files, and the studies built from them (the default one from LFW photos)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from deidkit.data.images import save_image
from deidkit.study.definition import ORIGINAL, StudyDesign, StudyError
from deidkit.study.folder import Study, build_study


@dataclass
class Subject:
    """One identity's images for a study built from arrays: a gallery image and one or more probe images."""

    identity: str
    gallery: np.ndarray
    probes: list[np.ndarray]
    origin: dict[str, Any] = field(default_factory=dict)  # provenance, e.g. {"gallery": path, "probes": [paths]}


def _check_image(arr: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise StudyError(f"{what}: expected an RGB uint8 image (H, W, 3), got {arr.dtype} {arr.shape}")
    return arr


def make_stimuli(out_dir: str | os.PathLike, subjects: Sequence[Subject], deidentifiers: Sequence[Any]) -> pd.DataFrame:
    """Write gallery, original and de-identified probe images as PNG files under ``out_dir``; return the
    stimulus manifest (columns ``file`` (absolute), ``identity``, ``role``, ``condition``, ``source``, ``origin``).

    ``deidentifiers`` are objects with ``.name`` and ``.deidentify(batch (N,S,S,3) uint8)`` (baselines or
    wrapped learned models); each is called once on all probes. A de-identifier named ``original`` is skipped
    (the original is always part of the study).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not subjects:
        raise StudyError("make_stimuli: no subjects")
    names = [str(d.name) for d in deidentifiers if str(d.name) != ORIGINAL]
    if len(set(names)) != len(names):
        raise StudyError(f"make_stimuli: de-identifier names must be unique, got {names}")
    ids = [s.identity for s in subjects]
    if len(set(ids)) != len(ids):
        raise StudyError(f"make_stimuli: duplicate identities {sorted({i for i in ids if ids.count(i) > 1})}")
    rows: list[dict[str, Any]] = []
    probes, probe_keys = [], []
    for si, s in enumerate(subjects):
        g = _check_image(s.gallery, f"subject {s.identity!r} gallery image")
        f = out_dir / f"g{si:03d}.png"
        save_image(f, g)
        rows.append({"file": str(f), "identity": s.identity, "role": "gallery", "condition": ORIGINAL,
                     "source": f"g{si:03d}", "origin": str(s.origin.get("gallery", ""))})
        if not s.probes:
            raise StudyError(f"make_stimuli: subject {s.identity!r} has no probe image")
        porigins = list(s.origin.get("probes", [""] * len(s.probes)))
        for pi, p in enumerate(s.probes):
            p = _check_image(p, f"subject {s.identity!r} probe {pi}")
            probes.append(p)
            probe_keys.append((s.identity, f"p{si:03d}_{pi:02d}", str(porigins[pi]) if pi < len(porigins) else ""))
    shapes = {p.shape for p in probes}
    if len(shapes) != 1:
        raise StudyError(f"make_stimuli: probe images must share one size to be de-identified as a batch, got {shapes}")
    batch = np.stack(probes)
    versions = {ORIGINAL: batch}
    for d in deidentifiers:
        if str(d.name) == ORIGINAL:
            continue
        out = np.asarray(d.deidentify(batch.copy()))
        if out.shape != batch.shape or out.dtype != np.uint8:
            raise StudyError(f"de-identifier {d.name!r} returned {out.dtype} {out.shape}; expected uint8 {batch.shape}")
        versions[str(d.name)] = out
    for ci, (cond, imgs) in enumerate(versions.items()):
        for (identity, key, origin), img in zip(probe_keys, imgs):
            f = out_dir / f"{key}_c{ci:02d}.png"
            save_image(f, img)
            rows.append({"file": str(f), "identity": identity, "role": "probe", "condition": cond,
                         "source": key, "origin": origin})
    return pd.DataFrame(rows)


def build_study_from_images(folder: str | os.PathLike, subjects: Sequence[Subject], deidentifiers: Sequence[Any],
                            design: StudyDesign | None = None, info: dict[str, Any] | None = None,
                            overwrite: bool = False) -> Study:
    """Build a study from image arrays: gallery/probe images per identity, de-identified by each of
    ``deidentifiers`` (objects with ``.name`` and ``.deidentify``)."""
    with tempfile.TemporaryDirectory(prefix="deidkit-stimuli-") as tmp:
        manifest = make_stimuli(tmp, subjects, deidentifiers)
        info = {"deidentifiers": [str(d.name) for d in deidentifiers if str(d.name) != ORIGINAL], **(info or {})}
        return build_study(folder, manifest, design, info=info, overwrite=overwrite)


def build_lfw_study(folder: str | os.PathLike, deidentifiers: Sequence[Any], design: StudyDesign | None = None,
                    n_identities: int = 5, probes_per_identity: int = 2, protocol: str = "lfw_57x8",
                    size: int | None = None, detector: str = "yunet", overwrite: bool = False) -> Study:
    """The default study: ``n_identities`` identities of an LFW protocol, one gallery photo and
    ``probes_per_identity`` other photos each, all as canonical crops (so originals and de-identified versions
    differ only by the de-identification), identities drawn with ``design.seed``.

    ``size``: side of the crops, by default the largest display size of the design (256 px). Each crop is
    warped from the 250 x 250 LFW photo straight to that size (never from a smaller crop); the canonical crop
    spans about 200 photo pixels (the whole head with hair, chin and a margin), so at 256 px the photo's pixels
    are enlarged about 1.3 times: the stimuli hold the detail LFW has, no more."""
    from deidkit.data import lfw

    design = design or StudyDesign()
    size = size or max(design.stimulus_px, design.pair_px, design.gallery_px)
    files = lfw.load_manifest(protocol)
    per_id = files.groupby("identity")["path"].apply(lambda s: sorted(set(s)))
    eligible = sorted(i for i, p in per_id.items() if len(p) >= probes_per_identity + 1)
    if n_identities > len(eligible):
        raise StudyError(f"{protocol}: only {len(eligible)} identities have {probes_per_identity + 1} images")
    rng = np.random.default_rng(design.seed)
    chosen = sorted(rng.choice(eligible, size=n_identities, replace=False).tolist())
    picks = {i: [per_id[i][j] for j in rng.choice(len(per_id[i]), size=probes_per_identity + 1, replace=False)]
             for i in chosen}
    paths = [p for i in chosen for p in picks[i]]
    crops = lfw.aligned_crops(paths, size=size, detector=detector)
    crop_of = dict(zip(paths, crops))
    subjects = [Subject(i, crop_of[picks[i][0]], [crop_of[p] for p in picks[i][1:]],
                        origin={"gallery": f"lfw:{picks[i][0]}", "probes": [f"lfw:{p}" for p in picks[i][1:]]})
                for i in chosen]
    info = {"source": "lfw", "protocol": protocol, "size": size, "detector": detector}
    return build_study_from_images(folder, subjects, deidentifiers, design, info=info, overwrite=overwrite)
