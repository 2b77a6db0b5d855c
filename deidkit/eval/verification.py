"""Face verification on LFW's View-2 protocol: pairs, 10-fold accuracy, ROC and TAR at a fixed FAR.

Everything but :func:`lfw_verification` is a pure function of scores or embeddings, so the same code
scores recognisers on original images, on de-identified images, or on synthetic numbers in tests.

Protocol (Huang et al., 2007, "View 2"): ``pairs.txt`` holds 10 folds, each 300 matched then 300 mismatched
pairs. For each fold the decision threshold on cosine similarity is chosen to maximise accuracy on the
other 9 folds and applied to the held-out fold; the result is the mean and standard deviation of the
10 held-out accuracies.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from deidkit.data.protocols import LFWPairs, parse_pairs
from deidkit.eval.identification import l2_normalize

# ----------------------------------------------------------------------------------------------------------
# Scores and thresholds
# ----------------------------------------------------------------------------------------------------------


def cosine_scores(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two (N, D) embedding arrays."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"embeddings must be two (N, D) arrays of the same shape, got {a.shape} and {b.shape}")
    return np.sum(l2_normalize(a, np.float64) * l2_normalize(b, np.float64), axis=1)


def _check(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).astype(bool).ravel()
    if scores.shape != labels.shape:
        raise ValueError(f"{scores.shape[0]} scores but {labels.shape[0]} labels")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores contain NaN or infinite values")
    return scores, labels


def accuracy_at(scores: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    """Fraction of pairs decided right when "same person" means ``score > threshold``."""
    scores, labels = _check(scores, labels)
    return float(np.mean((scores > threshold) == labels))


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The threshold maximising accuracy of ``score > threshold``, searched exactly over all cut points.

    Candidates are midpoints between consecutive distinct scores plus one value below and one above all scores;
    ties go to the lowest such threshold, which makes the choice deterministic.
    """
    scores, labels = _check(scores, labels)
    if scores.size == 0:
        raise ValueError("no scores to choose a threshold from")
    u = np.unique(scores)
    cands = np.concatenate([[u[0] - 1.0], (u[:-1] + u[1:]) / 2.0, [u[-1] + 1.0]])
    order = np.argsort(scores, kind="stable")
    s, y = scores[order], labels[order]
    # Accepted positives at each candidate = positives with score above it; counted with a cumulative sum.
    n_pos_above = y.sum() - np.concatenate([[0], np.cumsum(y)])
    n_neg_below = np.concatenate([[0], np.cumsum(~y)])
    # Number of scores <= each candidate, to index the cumulative sums.
    k = np.searchsorted(s, cands, side="right")
    correct = n_pos_above[k] + n_neg_below[k]
    return float(cands[int(np.argmax(correct))])


@dataclass
class KFoldResult:
    """Per-fold held-out accuracies and thresholds; ``mean`` and ``std`` (population std, as is customary)."""

    accuracies: np.ndarray
    thresholds: np.ndarray

    @property
    def mean(self) -> float:
        return float(np.mean(self.accuracies))

    @property
    def std(self) -> float:
        return float(np.std(self.accuracies))

    def __str__(self) -> str:
        return f"{100 * self.mean:.2f} +- {100 * self.std:.2f} %"


def kfold_accuracy(scores: np.ndarray, labels: np.ndarray, folds: np.ndarray) -> KFoldResult:
    """Accuracy with a threshold chosen on all folds but one and tested on that one, for every fold."""
    scores, labels = _check(scores, labels)
    folds = np.asarray(folds).ravel()
    if folds.shape != scores.shape:
        raise ValueError(f"{scores.shape[0]} scores but {folds.shape[0]} fold ids")
    ids = np.unique(folds)
    if ids.size < 2:
        raise ValueError("k-fold evaluation needs at least two folds")
    accs, ths = [], []
    for f in ids:
        test = folds == f
        th = best_threshold(scores[~test], labels[~test])
        ths.append(th)
        accs.append(accuracy_at(scores[test], labels[test], th))
    return KFoldResult(np.asarray(accs), np.asarray(ths))


@dataclass
class ROC:
    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray
    auc: float


def roc(scores: np.ndarray, labels: np.ndarray) -> ROC:
    """ROC curve (scikit-learn) of "same person" against the score, with its area."""
    scores, labels = _check(scores, labels)
    if labels.all() or not labels.any():
        raise ValueError("a ROC needs both matched and mismatched pairs")
    fpr, tpr, th = roc_curve(labels, scores)
    return ROC(fpr, tpr, th, float(roc_auc_score(labels, scores)))


def tar_at_far(scores: np.ndarray, labels: np.ndarray, far: float = 1e-3) -> float:
    """True accept rate at the strictest threshold whose false accept rate is at most ``far``.

    With 3,000 mismatched LFW pairs, FAR 1e-3 allows 3 false accepts; below 1/n_negatives it means none.
    """
    r, ok = _roc_within_far(scores, labels, far)
    return float(r.tpr[ok].max())


def _roc_within_far(scores: np.ndarray, labels: np.ndarray, far: float) -> tuple[ROC, np.ndarray]:
    """The ROC and the indices of its points whose false accept rate is at most ``far``."""
    if not 0.0 <= far <= 1.0:
        raise ValueError(f"far must be in [0, 1], got {far}")
    r = roc(scores, labels)
    return r, np.flatnonzero(r.fpr <= far + 1e-12)


def threshold_at_far(scores: np.ndarray, labels: np.ndarray, far: float = 1e-3) -> float:
    """The score threshold of :func:`tar_at_far`: the lowest one whose false accept rate is at most ``far``
    (a pair is accepted when its score is at least the threshold)."""
    r, ok = _roc_within_far(scores, labels, far)
    return float(min(r.thresholds[ok[-1]], np.max(scores) + 1e-6))


# ----------------------------------------------------------------------------------------------------------
# End to end on LFW
# ----------------------------------------------------------------------------------------------------------


@dataclass
class VerificationResult:
    """What :func:`lfw_verification` measured for one recogniser."""

    recognizer: str
    scores: np.ndarray
    labels: np.ndarray
    folds: np.ndarray
    kfold: KFoldResult
    roc: ROC
    tar_at_far: dict[float, float] = field(default_factory=dict)

    def summary(self) -> dict[str, float | str]:
        out: dict[str, float | str] = {
            "recognizer": self.recognizer,
            "accuracy": self.kfold.mean,
            "accuracy_std": self.kfold.std,
            "auc": self.roc.auc,
        }
        for far, tar in self.tar_at_far.items():
            out[f"tar@far={far:g}"] = tar
        return out


CropsLookup = Callable[[Sequence[str]], np.ndarray] | Mapping[str, np.ndarray]


def _lookup(crops_lookup: CropsLookup, paths: Sequence[str]) -> np.ndarray:
    if callable(crops_lookup):
        crops = np.asarray(crops_lookup(paths))
    else:
        missing = [p for p in paths if p not in crops_lookup]
        if missing:
            raise KeyError(f"{len(missing)} pair images have no crop, e.g. {missing[:3]}")
        crops = np.stack([crops_lookup[p] for p in paths])
    if crops.ndim != 4 or crops.shape[0] != len(paths):
        raise ValueError(f"crops_lookup returned shape {crops.shape} for {len(paths)} paths; want (N, S, S, 3)")
    return crops


def lfw_verification(recognizer, crops_lookup: CropsLookup, pairs: LFWPairs | None = None,
                     fars: Sequence[float] = (1e-3, 1e-2), batch_size: int = 32,
                     path_prefix: str = "images/") -> VerificationResult:
    """Embed every image of the LFW pairs once with ``recognizer`` and score the View-2 protocol.

    ``crops_lookup`` maps image paths to canonical crops: either a callable taking the list of paths and
    returning (N, S, S, 3) uint8, or a mapping path -> crop. Paths are ``path_prefix`` + the pair path, i.e.
    by default relative to the LFW root as in the kit's manifests (``images/<Name>/<Name>_<NNNN>.jpg``), so
    ``lfw_verification(rec, deidkit.data.lfw.aligned_crops)`` works as is. The recogniser is anything with
    ``.name`` and ``.embed(crops, batch_size=...) -> (N, D)``. To score de-identified images, wrap the lookup.
    """
    pairs = parse_pairs() if pairs is None else pairs
    paths = pairs.unique_paths()
    crops = _lookup(crops_lookup, [path_prefix + p for p in paths])
    emb = np.asarray(recognizer.embed(crops, batch_size=batch_size))
    index = {p: i for i, p in enumerate(paths)}
    a = emb[[index[p] for p in pairs.left]]
    b = emb[[index[p] for p in pairs.right]]
    scores = cosine_scores(a, b)
    labels = pairs.same
    return VerificationResult(
        recognizer=getattr(recognizer, "name", type(recognizer).__name__),
        scores=scores,
        labels=labels,
        folds=pairs.fold,
        kfold=kfold_accuracy(scores, labels, pairs.fold),
        roc=roc(scores, labels),
        tar_at_far={float(f): tar_at_far(scores, labels, f) for f in fars},
    )
