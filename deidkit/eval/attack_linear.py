"""The ``adapted_linear`` attacker's head (:mod:`deidkit.eval.attack`): a linear map from the embedding of a
de-identified face to the embedding of the same face's original, least squares regularised towards the identity
map (closed form), and the choice of its regularisation on held-out identities.

Kept apart from the attacker split and the records so that the online attacker of live training
(:mod:`deidkit.train.adversary`) can use the same closed-form head.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from deidkit.eval.identification import heldout_gallery, heldout_rank1, l2_normalize


@dataclass(frozen=True)
class AdaptedHead:
    """``x -> normalise(x @ weight + bias)``: de-identified embeddings mapped towards the originals'."""

    weight: np.ndarray
    bias: np.ndarray

    def __call__(self, emb: np.ndarray) -> np.ndarray:
        return l2_normalize(l2_normalize(emb) @ self.weight + self.bias)


def fit_adapted_head(deidentified: np.ndarray, original: np.ndarray, ridge: float = 0.1) -> AdaptedHead:
    """Least squares from (normalised) de-identified to original embeddings, rows paired by image, regularised
    towards the identity map (``ridge`` times the number of pairs): with little data the head stays the plain
    recogniser and only corrects what the pairs show consistently (a ridge towards zero would shrink every
    embedding to the mean face and lose the identity it tries to recover)."""
    x, y = l2_normalize(deidentified, np.float64), l2_normalize(original, np.float64)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{len(x)} de-identified but {len(y)} original embeddings")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"embedding sizes differ: {x.shape[1]} and {y.shape[1]}")
    xm, ym = x.mean(0), y.mean(0)
    xc, yc = x - xm, y - ym
    reg = ridge * len(x) * np.eye(x.shape[1])
    w = np.linalg.solve(xc.T @ xc + reg, xc.T @ yc + reg)
    return AdaptedHead(w.astype(np.float32), (ym - xm @ w).astype(np.float32))


def choose_ridge(deidentified: np.ndarray, original: np.ndarray, identities: Sequence[str],
                 ridges: Sequence[float] = (0.01, 0.1, 1.0, 10.0), holdout: float = 0.25, seed: int = 0) -> float:
    """The attacker's own model selection, on its training identities only: fit on ``1 - holdout`` of them and
    keep the ridge whose head best identifies the held-out ones (de-identified probes against one original per
    identity). For a split without held-out identities of its own (:func:`choose_ridge_heldout` otherwise)."""
    ids = np.asarray(identities)
    uniq = np.unique(ids)
    rng = np.random.default_rng(seed)
    held = set(rng.choice(uniq, size=max(2, int(len(uniq) * holdout)), replace=False))
    test = np.array([i in held for i in ids])
    gal, probes = heldout_gallery(ids[test].tolist())
    if len(probes) == 0:
        return float(ridges[len(ridges) // 2])
    return choose_ridge_heldout(deidentified[~test], original[~test], deidentified[test], original[test],
                                ids[test].tolist(), ridges)


def choose_ridge_heldout(train_deidentified: np.ndarray, train_original: np.ndarray,
                         heldout_deidentified: np.ndarray, heldout_original: np.ndarray,
                         heldout_identities: Sequence[str],
                         ridges: Sequence[float] = (0.01, 0.1, 1.0, 10.0)) -> float:
    """The ridge whose head, fitted on the training pairs, best identifies the held-out identities (their
    de-identified later images against their first original; :func:`heldout_gallery`); the middle ridge when no
    held-out identity has two images."""
    ids = np.asarray(heldout_identities)
    gal, probes = heldout_gallery(ids.tolist())
    if len(probes) == 0:
        return float(ridges[len(ridges) // 2])
    best, best_acc = float(ridges[0]), -1.0
    for r in ridges:
        head = fit_adapted_head(train_deidentified, train_original, r)
        acc = heldout_rank1(head(heldout_deidentified[probes]), heldout_original[gal], ids[probes], ids[gal])
        if acc > best_acc:
            best, best_acc = float(r), acc
    return best


__all__ = ["AdaptedHead", "choose_ridge", "choose_ridge_heldout", "fit_adapted_head"]
