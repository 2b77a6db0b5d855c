"""Verification protocol: pairs.txt parsing, exact thresholds, 10-fold logic and TAR@FAR on known answers."""

from __future__ import annotations

import numpy as np
import pytest

from deidkit.data.protocols import LFWPairs, PairsFormatError, parse_pairs
from deidkit.eval.verification import (
    accuracy_at,
    best_threshold,
    cosine_scores,
    kfold_accuracy,
    lfw_verification,
    roc,
    tar_at_far,
)


def test_parse_official_pairs() -> None:
    pairs = parse_pairs()
    assert len(pairs) == 6000 and pairs.n_folds == 10
    assert np.bincount(pairs.fold).tolist() == [600] * 10
    assert pairs.same.sum() == 3000
    assert pairs.same[:300].all() and not pairs.same[300:600].any()
    assert pairs.left[0] == "Abel_Pacheco/Abel_Pacheco_0001.jpg"
    assert pairs.right[0] == "Abel_Pacheco/Abel_Pacheco_0004.jpg"
    assert len(pairs.unique_paths()) == 7701


def test_malformed_pairs_named(tmp_path) -> None:
    bad = tmp_path / "pairs.txt"
    bad.write_text("1\t1\nAlice\t1\t2\nBob\t1\n")
    with pytest.raises(PairsFormatError, match=r"pairs\.txt: line 3"):
        parse_pairs(bad)
    bad.write_text("1\t1\nAlice\t1\tBob\t2\nAlice\t1\t2\n")  # mismatched pair where a matched one belongs
    with pytest.raises(PairsFormatError, match="should be a matched pair"):
        parse_pairs(bad)
    bad.write_text("2\t1\nAlice\t1\t2\n")
    with pytest.raises(PairsFormatError, match="header promises"):
        parse_pairs(bad)


def test_best_threshold_known_answer() -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    labels = np.array([0, 0, 0, 1, 1, 1], bool)
    th = best_threshold(scores, labels)
    assert th == pytest.approx(0.5)
    assert accuracy_at(scores, labels, th) == 1.0
    # One impostor above every genuine score: the best cut still separates the rest.
    scores2 = np.append(scores, 0.95)
    labels2 = np.append(labels, False)
    assert accuracy_at(scores2, labels2, best_threshold(scores2, labels2)) == pytest.approx(6 / 7)


def test_best_threshold_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    labels = rng.random(500) < 0.5
    scores = np.round(rng.normal(labels * 1.0, 1.0), 2)  # rounding makes ties
    th = best_threshold(scores, labels)
    grid = np.concatenate([np.unique(scores), [scores.min() - 1]])
    brute = max(accuracy_at(scores, labels, t) for t in grid)
    assert accuracy_at(scores, labels, th) == pytest.approx(brute)


def test_kfold_known_answer() -> None:
    """10 folds of 2 genuine (0.9, 0.8) + 2 impostor (0.1, 0.2) pairs; fold 0 has an impostor at 0.95."""
    scores = np.tile([0.9, 0.8, 0.1, 0.2], 10)
    labels = np.tile([True, True, False, False], 10)
    folds = np.repeat(np.arange(10), 4)
    scores[2] = 0.95
    res = kfold_accuracy(scores, labels, folds)
    # Every training set is separable at 0.5 (fold 0's outlier costs one error whatever the cut below 0.95).
    assert np.allclose(res.thresholds, 0.5)
    assert res.accuracies.tolist() == [0.75] + [1.0] * 9
    assert res.mean == pytest.approx(0.975)
    assert res.std == pytest.approx(0.075)  # population std of [0.75, 1 x 9]


def test_tar_at_far_known_answer() -> None:
    neg = np.arange(1000) / 1000.0  # 0.000 .. 0.999
    pos = np.array([2.0] * 50 + [0.9985] * 50)
    scores = np.concatenate([neg, pos])
    labels = np.concatenate([np.zeros(1000, bool), np.ones(100, bool)])
    assert tar_at_far(scores, labels, 1e-3) == pytest.approx(1.0)  # accepts one impostor (0.999)
    assert tar_at_far(scores, labels, 0.0) == pytest.approx(0.5)  # no impostor: only the 2.0 scores
    assert roc(scores, labels).auc > 0.99
    with pytest.raises(ValueError):
        tar_at_far(scores, labels, 2.0)


def test_cosine_scores() -> None:
    a = np.array([[1.0, 0.0], [3.0, 4.0]])
    b = np.array([[2.0, 0.0], [-3.0, -4.0]])
    assert np.allclose(cosine_scores(a, b), [1.0, -1.0])
    with pytest.raises(ValueError):
        cosine_scores(a, b[:1])


class _IdentityOracle:
    """A fake recogniser whose embedding is a one-hot of the person: every pair decided right."""

    name = "oracle"

    def __init__(self, people: list[str]) -> None:
        self.people = people

    def embed(self, crops: np.ndarray, batch_size: int = 64) -> np.ndarray:
        ids = crops[:, 0, 0, 0].astype(int)
        return np.eye(len(self.people), dtype=np.float32)[ids]


def test_lfw_verification_end_to_end() -> None:
    people = ["A", "B", "C", "D"]
    left, right, same, fold = [], [], [], []
    for f in range(2):
        for p in people[:2]:
            left.append(f"{p}/{p}_0001.jpg"), right.append(f"{p}/{p}_0002.jpg"), same.append(True), fold.append(f)
        for p, q in [("A", "C"), ("B", "D")]:
            left.append(f"{p}/{p}_0001.jpg"), right.append(f"{q}/{q}_0001.jpg"), same.append(False), fold.append(f)
    pairs = LFWPairs(tuple(left), tuple(right), np.array(same), np.array(fold))
    lookup = {p: np.full((8, 8, 3), people.index(p[0]), np.uint8) for p in pairs.unique_paths()}
    res = lfw_verification(_IdentityOracle(people), lookup, pairs, fars=(0.0,), path_prefix="")
    assert res.kfold.mean == 1.0 and res.roc.auc == 1.0 and res.tar_at_far[0.0] == 1.0
    assert res.summary()["recognizer"] == "oracle"
    with pytest.raises(KeyError, match="no crop"):
        lfw_verification(_IdentityOracle(people), lookup, pairs)  # keys lack the default "images/" prefix
