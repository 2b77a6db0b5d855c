"""Privacy against an adaptive attacker: a recogniser that has learnt the de-identifier.

The kit is public, so an attacker can de-identify photos of people they know and learn to see through the change.
The *adapted* attacker here keeps an off-the-shelf recogniser frozen and learns a small head on its embedding: a
linear map (ridge regression, closed form) from the embedding of a de-identified face to the embedding of the same
face's original, fitted on training-pool identities (never the test protocol's). At test time the attacker maps
each de-identified probe with that head and searches a gallery of originals, as the plain (``none``) attacker does
without it. A de-identifier whose change is a fixed, learnable distortion of the embedding (blur is the textbook
case) gives identity back to such an attacker; one that replaces the identity does not.

Records: ``{"kind": "attack", "attack": "none" | "adapted", "deidentifier", "recognizer", "rank1",
"rank1_std", "median_true_rank", "gallery"}`` (ranks within the protocol's gallery of originals).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from deidkit.eval.embeddings import embed_cached
from deidkit.eval.identification import evaluate_identification, l2_normalize


@dataclass(frozen=True)
class AttackSplit:
    """Training images of the attacker (paths, identities) and the test protocol; the identities never overlap."""

    train_paths: list[str]
    train_identities: list[str]
    protocol: pd.DataFrame
    protocol_name: str = ""

    def __post_init__(self) -> None:
        shared = set(self.train_identities) & set(self.protocol["identity"])
        if shared:
            raise ValueError(f"the attacker's training identities overlap the test protocol: {sorted(shared)[:5]}")


def attack_split(protocol: str = "lfw_57x8", train_manifest: str = "lfw_train_pool", max_images: int = 2000,
                 seed: int = 0) -> AttackSplit:
    """Up to ``max_images`` training-pool images (a seeded sample) for the attacker, and the test protocol."""
    from deidkit.data.lfw import load_manifest

    test = load_manifest(protocol)
    pool = load_manifest(train_manifest)
    pool = pool[~pool["identity"].isin(set(test["identity"]))]
    if max_images < len(pool):
        pool = pool.sample(n=max_images, random_state=seed).sort_values("path")
    return AttackSplit(pool["path"].tolist(), pool["identity"].tolist(), test, protocol)


@dataclass(frozen=True)
class AdaptedHead:
    """``x -> normalise(x @ weight + bias)``: de-identified embeddings mapped towards the originals'."""

    weight: np.ndarray
    bias: np.ndarray

    def __call__(self, emb: np.ndarray) -> np.ndarray:
        return l2_normalize(l2_normalize(emb) @ self.weight + self.bias)


def fit_adapted_head(deidentified: np.ndarray, original: np.ndarray, ridge: float = 1e-2) -> AdaptedHead:
    """Ridge regression from (normalised) de-identified to original embeddings, rows paired by image."""
    x, y = l2_normalize(deidentified, np.float64), l2_normalize(original, np.float64)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{len(x)} de-identified but {len(y)} original embeddings")
    xm, ym = x.mean(0), y.mean(0)
    xc, yc = x - xm, y - ym
    w = np.linalg.solve(xc.T @ xc + ridge * len(x) * np.eye(x.shape[1]), xc.T @ yc)
    return AdaptedHead(w.astype(np.float32), (ym - xm @ w).astype(np.float32))


def _summary(protocol: pd.DataFrame, gallery: np.ndarray, probes: np.ndarray) -> dict[str, float]:
    res = evaluate_identification(protocol, gallery, probes)
    s = res.summary()
    return {"rank1": s["rank1_mean"], "rank1_std": s["rank1_std"],
            "median_true_rank": float(np.median(np.concatenate(res.ranks)))}


def adapted_attack_records(deidentifiers: Sequence, recognizers: Sequence, split: AttackSplit | None = None,
                           ridge: float = 1e-2, crop_size: int = 224) -> list[dict]:
    """``attack`` records of every de-identifier against every recogniser, plain and adapted, on the split's test
    protocol (gallery: originals). Embeddings go through the kit's content-addressed cache."""
    from deidkit.data.lfw import aligned_crops

    split = split or attack_split()
    train = aligned_crops(split.train_paths, size=crop_size)
    test = aligned_crops(split.protocol["path"].tolist(), size=crop_size)
    rows = []
    for d in deidentifiers:
        train_out, test_out = d.deidentify(train), d.deidentify(test)
        for r in recognizers:
            gallery = embed_cached(r, test)
            probes = embed_cached(r, test_out)
            head = fit_adapted_head(embed_cached(r, train_out), embed_cached(r, train), ridge)
            for attack, emb in (("none", probes), ("adapted", head(probes))):
                rows.append({"kind": "attack", "attack": attack, "deidentifier": d.name, "recognizer": r.name,
                             **_summary(split.protocol, gallery, emb), "gallery": "protocol",
                             "protocol": split.protocol_name, "train_images": len(train), "ridge": ridge})
    return rows


def attack_table(records: list[dict]) -> pd.DataFrame:
    """Plain and adapted attacker side by side: one row per de-identifier and recogniser."""
    df = pd.DataFrame([r for r in records if r.get("kind") == "attack"])
    wide = df.pivot_table(index=["deidentifier", "recognizer"], columns="attack",
                          values=["rank1", "median_true_rank"], aggfunc="first")
    wide.columns = [f"{v}_{a}" for v, a in wide.columns]
    return wide.reset_index()


__all__ = ["AdaptedHead", "AttackSplit", "adapted_attack_records", "attack_split", "attack_table",
           "fit_adapted_head"]
