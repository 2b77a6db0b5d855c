"""Closed-set identification as in FaDeNet, rank of the true identity in a large gallery, and verification of
original-vs-de-identified pairs.

Only probes are de-identified; the gallery always holds originals. Similarity is cosine on L2-normalised
embeddings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import roc_curve

Embedder = Callable[[np.ndarray], np.ndarray]


def l2_normalize(x: np.ndarray, dtype: type = np.float32) -> np.ndarray:
    """Rows scaled to unit Euclidean norm (all-zero rows stay zero)."""
    x = np.asarray(x, dtype=dtype)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def identify_rank(probe_emb: np.ndarray, probe_labels: np.ndarray, gallery_emb: np.ndarray,
                  gallery_labels: np.ndarray) -> np.ndarray:
    """1-based rank of the first gallery image of each probe's true identity in the list of gallery images
    sorted by cosine similarity (FaDeNet's definition). Ties count against the probe."""
    probe_labels = np.asarray(probe_labels)
    gallery_labels = np.asarray(gallery_labels)
    if not set(probe_labels) <= set(gallery_labels):
        raise ValueError("closed-set identification: every probe identity must be in the gallery")
    sims = l2_normalize(probe_emb) @ l2_normalize(gallery_emb).T
    same = probe_labels[:, None] == gallery_labels[None, :]
    best_true = np.where(same, sims, -np.inf).max(axis=1)
    # Rank = 1 + number of other-identity gallery images at least as similar as the best true image.
    return 1 + (np.where(~same, sims, -np.inf) >= best_true[:, None]).sum(axis=1)


def cmc(ranks: np.ndarray, max_rank: int) -> np.ndarray:
    """Cumulative match characteristic: fraction of probes with rank <= k for k = 1..max_rank."""
    ranks = np.asarray(ranks)
    return np.array([(ranks <= k).mean() for k in range(1, max_rank + 1)])


@dataclass
class IdentificationResult:
    """Per-repetition ranks and the CMC of a protocol for one recogniser and one de-identifier."""

    ranks: list[np.ndarray]
    gallery_size: int
    #: the probes' identities, per repetition (aligned with ``ranks``)
    probe_labels: list[np.ndarray] | None = None

    def cmc(self, max_rank: int | None = None) -> np.ndarray:
        """Mean CMC over repetitions, shape (max_rank,)."""
        max_rank = max_rank or self.gallery_size
        return np.mean([cmc(r, max_rank) for r in self.ranks], axis=0)

    def rank_k(self, k: int) -> tuple[float, float]:
        """Mean and (population) standard deviation of Rank-k accuracy over repetitions."""
        vals = np.array([(r <= k).mean() for r in self.ranks])
        return float(vals.mean()), float(vals.std())

    def rank1_by_identity(self) -> dict[str, float]:
        """Each probe identity's Rank-1 over all repetitions (the unit an identity-clustered bootstrap resamples)."""
        if self.probe_labels is None:
            return {}
        hits = np.concatenate([r <= 1 for r in self.ranks])
        labels = np.concatenate(self.probe_labels)
        return {str(n): float(hits[labels == n].mean()) for n in np.unique(labels)}

    def summary(self) -> dict:
        r1, s1 = self.rank_k(1)
        r5, s5 = self.rank_k(5)
        return {"rank1_mean": r1, "rank1_std": s1, "rank5_mean": r5, "rank5_std": s5,
                "rank1_by_identity": self.rank1_by_identity()}


def rep_columns(protocol: pd.DataFrame) -> list[str]:
    cols = sorted((c for c in protocol.columns if c.startswith("rep")), key=lambda c: int(c[3:]))
    if not cols:
        raise ValueError("protocol has no rep<k> columns (gallery/probe splits)")
    return cols


def evaluate_identification(protocol: pd.DataFrame, original_emb: np.ndarray,
                            probe_emb: np.ndarray | None = None) -> IdentificationResult:
    """Evaluate every repetition of ``protocol`` (rows aligned with the embeddings).

    ``original_emb`` are embeddings of the original images (the gallery); ``probe_emb`` those of the probes as
    shown to the recogniser (de-identified), defaulting to the originals.
    """
    probe_emb = original_emb if probe_emb is None else probe_emb
    if len(original_emb) != len(protocol) or len(probe_emb) != len(protocol):
        raise ValueError("embeddings must have one row per protocol row")
    labels = protocol["identity"].to_numpy()
    ranks, gsize, probe_labels = [], 0, []
    for col in rep_columns(protocol):
        g = (protocol[col] == "gallery").to_numpy()
        p = (protocol[col] == "probe").to_numpy()
        ranks.append(identify_rank(probe_emb[p], labels[p], original_emb[g], labels[g]))
        probe_labels.append(labels[p])
        gsize = int(g.sum())
    return IdentificationResult(ranks, gsize, probe_labels)


def identity_bootstrap(identities: list[str], n_boot: int = 2000, seed: int = 0) -> np.ndarray:
    """(n_boot, n) indices into ``identities``, drawn with replacement: one identity-clustered bootstrap sample
    per row. Shared by every row of a table, so that differences between rows are paired."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, len(identities), (n_boot, len(identities)))


def bootstrap_rank1(by_identity: dict[str, float], identities: list[str], samples: np.ndarray) -> np.ndarray:
    """Rank-1 in each bootstrap sample (``samples`` from :func:`identity_bootstrap` over ``identities``): the mean
    of the sampled identities' Rank-1 (every identity has the same number of probes in the kit's protocols)."""
    rates = np.array([by_identity[n] for n in identities])
    return rates[samples].mean(1)


def identity_templates(emb: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One template per identity: the normalised mean of its normalised embeddings."""
    labels = np.asarray(labels)
    names, inv = np.unique(labels, return_inverse=True)
    sums = np.zeros((len(names), emb.shape[1]), dtype=np.float64)
    np.add.at(sums, inv, l2_normalize(emb))
    return l2_normalize(sums), names


def true_identity_rank(probe_emb: np.ndarray, probe_labels: np.ndarray, template_emb: np.ndarray,
                       template_labels: np.ndarray) -> np.ndarray:
    """1-based rank of the true identity among all identity templates (the live paper's Table 3)."""
    probe_labels = np.asarray(probe_labels)
    template_labels = np.asarray(template_labels)
    index = {n: i for i, n in enumerate(template_labels)}
    try:
        true_idx = np.array([index[n] for n in probe_labels])
    except KeyError as exc:
        raise ValueError(f"probe identity {exc} has no gallery template") from None
    sims = l2_normalize(probe_emb) @ l2_normalize(template_emb).T
    true_sim = sims[np.arange(len(sims)), true_idx]
    sims[np.arange(len(sims)), true_idx] = -np.inf
    return 1 + (sims >= true_sim[:, None]).sum(axis=1)


def rank_summary(ranks: np.ndarray) -> dict[str, float]:
    ranks = np.asarray(ranks, dtype=np.float64)
    return {"median": float(np.median(ranks)), "mean": float(ranks.mean()), "sd": float(ranks.std())}


def pair_verification(gallery_emb: np.ndarray, gallery_labels: np.ndarray, probe_emb: np.ndarray,
                      probe_labels: np.ndarray, far: float = 1e-3) -> dict:
    """Verify every (original gallery image, probe) pair: genuine when the identities match. Returns the ROC
    (fpr, tpr), TAR at ``far`` (None when there are too few impostor pairs to resolve it), and the pair counts."""
    sims = l2_normalize(probe_emb) @ l2_normalize(gallery_emb).T
    same = np.asarray(probe_labels)[:, None] == np.asarray(gallery_labels)[None, :]
    fpr, tpr, _ = roc_curve(same.ravel(), sims.ravel())
    n_impostor = int((~same).sum())
    # With fewer than 1/far impostor pairs the FAR cannot be resolved: say so instead of reporting TAR at FAR 0.
    tar = tar_from_roc(fpr, tpr, far) if n_impostor * far >= 1 else None
    return {"fpr": fpr, "tpr": tpr, "tar_at_far": tar, "far": far,
            "genuine_pairs": int(same.sum()), "impostor_pairs": n_impostor}


def tar_from_roc(fpr: np.ndarray, tpr: np.ndarray, far: float) -> float:
    """Highest TAR whose FAR does not exceed ``far``."""
    ok = fpr <= far
    return float(tpr[ok].max()) if ok.any() else 0.0


def identification_drop(deidentifier, recognizer, protocol: str = "lfw_57x8", crop_size: int = 224,
                        n_identities: int | None = None) -> dict[str, float]:
    """Rank-1 of ``recognizer`` (anything with ``.embed``; notebook 02: FaDeNet's critic) on an LFW identification
    protocol (its first ``n_identities`` identities; None: all), original vs de-identified probes (gallery always
    original), and the drop between them."""
    from deidkit.data.lfw import aligned_crops, load_manifest
    from deidkit.data.protocols import first_identities

    proto = first_identities(load_manifest(protocol), n_identities)
    crops = aligned_crops(proto["path"].tolist(), size=crop_size)
    orig = recognizer.embed(crops)
    deid = recognizer.embed(deidentifier.deidentify(crops))
    r_orig = evaluate_identification(proto, orig).summary()
    r_deid = evaluate_identification(proto, orig, deid).summary()
    return {"rank1_original": r_orig["rank1_mean"], "rank1_deidentified": r_deid["rank1_mean"],
            "rank1_drop": r_orig["rank1_mean"] - r_deid["rank1_mean"], "protocol": protocol,
            "n_identities": int(proto["identity"].nunique())}


def heldout_gallery(identities: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(gallery, probes) indices for the attacker's own identification test: the first image of every identity is
    its gallery original (single-image identities are distractors), the other images are probes."""
    first: dict[str, int] = {}
    for k, name in enumerate(identities):
        first.setdefault(name, k)
    gallery = np.array(sorted(first.values()), dtype=np.int64)
    taken = set(gallery.tolist())
    probes = np.array([k for k in range(len(identities)) if k not in taken], dtype=np.int64)
    return gallery, probes


def heldout_rank1(probes: np.ndarray, gallery: np.ndarray, probe_identities: Sequence[str],
                  gallery_identities: Sequence[str]) -> float:
    """Share of probe embeddings whose most similar gallery embedding is of the same identity (nan: no probe)."""
    if len(probes) == 0:
        return float("nan")
    sims = l2_normalize(probes) @ l2_normalize(gallery).T
    return float((np.asarray(gallery_identities)[sims.argmax(1)] == np.asarray(probe_identities)).mean())
