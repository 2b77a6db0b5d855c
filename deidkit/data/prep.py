"""Data preparation (notebook 00): verify LFW against its manifest, align and cache every image, and check that
the committed protocol manifests are consistent and reproducible."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from deidkit.assets import using_cache
from deidkit.data.lfw import align_lfw, lfw_root, load_manifest, verify_files
from deidkit.data.protocols import build_lfw_manifests, parse_pairs

PROTOCOLS = ("lfw_57x8", "lfw_217x8", "lfw_select_160x8", "lfw_train_pool", "lfw_all_identities", "lfw_pairs", "lfw_no_face")


@dataclass
class DataPrepConfig:
    """``tiny``: checks on a sample (tests); ``quick``/``paper``: every file, every image aligned."""

    verify_sample: int | None = None
    align_scope: str = "all"
    cold_timing_images: int = 500
    rebuild_manifests: bool = True
    detector: str = "yunet"
    size: int = 224
    seed: int = 0

    PROFILES = {
        "tiny": dict(verify_sample=100, align_scope="lfw_57x8", cold_timing_images=20, rebuild_manifests=False),
        "quick": {},
        "paper": {},
    }

    @classmethod
    def profile(cls, name: str, **overrides) -> DataPrepConfig:
        if name not in cls.PROFILES:
            raise ValueError(f"unknown profile {name!r}; choose one of {sorted(cls.PROFILES)}")
        return cls(**{**cls.PROFILES[name], **{k: v for k, v in overrides.items() if v is not None}})


def time_cold_alignment(n_images: int, detector: str = "yunet", size: int = 224, seed: int = 0) -> dict:
    """Detect + align + cache ``n_images`` random LFW images into an empty temporary cache; images/s."""
    files = load_manifest("lfw_files").sample(n=n_images, random_state=seed)
    with tempfile.TemporaryDirectory() as tmp, using_cache(tmp):
        t0 = time.perf_counter()
        rec = align_lfw(files, detector=detector, size=size)
        dt = time.perf_counter() - t0
    return {"images": n_images, "seconds": dt, "images_per_s": n_images / dt,
            "found": int((rec["status"] != "no_face").sum())}


def align_scope(config: DataPrepConfig) -> pd.DataFrame:
    files = load_manifest("lfw_files")
    if config.align_scope == "all":
        return files
    return files[files["path"].isin(load_manifest(config.align_scope)["path"])]


def check_manifests() -> list[str]:
    """Consistency of the committed manifests: sizes, splits, disjointness, file membership. Returns problems."""
    problems = []
    files = load_manifest("lfw_files")
    known = set(files["path"])
    p57, p217 = load_manifest("lfw_57x8"), load_manifest("lfw_217x8")
    pool, gallery = load_manifest("lfw_train_pool"), load_manifest("lfw_all_identities")
    for name, df in [("lfw_57x8", p57), ("lfw_217x8", p217), ("lfw_train_pool", pool),
                     ("lfw_all_identities", gallery)]:
        if not set(df["path"]) <= known:
            problems.append(f"{name}: paths not in lfw_files")
    if p57["identity"].nunique() != 57 or len(p57) != 57 * 8:
        problems.append(f"lfw_57x8: {p57['identity'].nunique()} identities, {len(p57)} images (want 57 x 8)")
    if len(p217) != 8 * p217["identity"].nunique():
        problems.append("lfw_217x8: not 8 images per identity")
    for name, df in [("lfw_57x8", p57), ("lfw_217x8", p217)]:
        for col in [c for c in df.columns if c.startswith("rep")]:
            per = df.groupby("identity")[col].apply(lambda s: (s == "gallery").sum())
            if not (per == 4).all():
                problems.append(f"{name}: {col} is not 4 gallery + 4 probe for every identity")
    if set(pool["identity"]) & set(p217["identity"]):
        problems.append("lfw_train_pool shares identities with lfw_217x8")
    if not set(p57["path"]) <= set(p217["path"]):
        problems.append("lfw_57x8 is not a subset of lfw_217x8")
    select = load_manifest("lfw_select_160x8")
    if set(select["identity"]) & set(p57["identity"]):
        problems.append("lfw_select_160x8 shares identities with lfw_57x8")
    if set(select["path"]) | set(p57["path"]) != set(p217["path"]):
        problems.append("lfw_select_160x8 and lfw_57x8 do not make up lfw_217x8")
    probes = set(p57.loc[p57["rep0"] == "probe", "path"])
    if probes & set(gallery["path"]):
        problems.append("lfw_all_identities contains lfw_57x8 rep0 probes")
    if gallery["identity"].nunique() != files["identity"].nunique():
        problems.append(f"lfw_all_identities covers {gallery['identity'].nunique()} of "
                        f"{files['identity'].nunique()} identities")
    pairs = load_manifest("lfw_pairs")
    if len(pairs) != 6000 or not (set(pairs["path1"]) | set(pairs["path2"])) <= known:
        problems.append("lfw_pairs: not 6000 pairs of known files")
    return problems


def rebuilt_manifests_match(alignment: pd.DataFrame) -> dict[str, bool]:
    """Rebuild every protocol from scratch into a temporary folder and compare with the committed CSVs."""
    import shutil
    from pathlib import Path

    from deidkit.data.lfw import MANIFEST_DIR

    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(MANIFEST_DIR / "lfw_files.csv", Path(tmp) / "lfw_files.csv")
        rebuilt = build_lfw_manifests(alignment, out_dir=Path(tmp))
        out = {}
        for name, df in rebuilt.items():
            committed = load_manifest(name)
            out[name] = bool(committed.astype(str).reset_index(drop=True).equals(
                df.astype(str).reset_index(drop=True)))
    return out


def manifest_summary() -> pd.DataFrame:
    rows = []
    for name in ("lfw_files", *PROTOCOLS):
        df = load_manifest(name)
        ident = df["identity"].nunique() if "identity" in df else np.nan
        rows.append({"manifest": name, "rows": len(df), "identities": ident})
    return pd.DataFrame(rows)


__all__ = ["DataPrepConfig", "align_lfw", "align_scope", "check_manifests", "lfw_root", "manifest_summary",
           "parse_pairs", "rebuilt_manifests_match", "time_cold_alignment", "verify_files"]
