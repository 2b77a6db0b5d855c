import numpy as np
import pandas as pd
import pytest

from deidkit.eval.identification import (
    cmc,
    evaluate_identification,
    identify_rank,
    identity_templates,
    pair_verification,
    rank_summary,
    true_identity_rank,
)


def test_identify_rank_known_answer():
    g = np.array([[1, 0], [0, 1], [0.7, 0.7]], dtype=np.float32)
    gl = np.array(["a", "b", "c"])
    p = np.array([[0.9, 0.1], [0.9, 0.1]], dtype=np.float32)
    # Probe 1 is "a" (rank 1); probe 2 is "b": a and c score higher -> rank 3.
    assert identify_rank(p, np.array(["a", "b"]), g, gl).tolist() == [1, 3]
    assert cmc(np.array([1, 3]), 3).tolist() == [0.5, 0.5, 1.0]


def test_rank_counts_images_before_first_true_image():
    g = np.array([[1, 0], [0.99, 0.1], [0.98, 0.2], [0, 1], [0.5, 0.5]], dtype=np.float32)
    gl = np.array(["x", "x", "y", "t", "t"])
    r = identify_rank(np.array([[1, 0]], np.float32), np.array(["t"]), g, gl)
    assert r.tolist() == [4]  # three images of others are more similar than t's best image


def test_open_set_probe_rejected():
    with pytest.raises(ValueError, match="closed-set"):
        identify_rank(np.ones((1, 2)), np.array(["z"]), np.ones((1, 2)), np.array(["a"]))


def _protocol(n_ids=10, per=8, reps=5, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_ids):
        for j in range(per):
            rows.append({"identity": f"id{i}", "path": f"{i}/{j}"})
    df = pd.DataFrame(rows)
    for r in range(reps):
        roles = []
        for _ in range(n_ids):
            perm = rng.permutation(per)
            role = np.where(np.isin(np.arange(per), perm[:4]), "gallery", "probe")
            roles.extend(role)
        df[f"rep{r}"] = roles
    return df


def test_evaluate_identification_perfect_and_destroyed():
    proto = _protocol()
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(10, 64))
    ids = proto["identity"].str[2:].astype(int).to_numpy()
    emb = centres[ids] + 0.05 * rng.normal(size=(len(proto), 64))
    perfect = evaluate_identification(proto, emb)
    assert perfect.rank_k(1) == (1.0, 0.0)
    noise = rng.normal(size=emb.shape)
    destroyed = evaluate_identification(proto, emb, noise)
    r1, s1 = destroyed.rank_k(1)
    assert r1 < 0.4 and s1 > 0
    assert len(destroyed.ranks) == 5 and destroyed.gallery_size == 40
    c = destroyed.cmc()
    assert np.all(np.diff(c) >= 0) and c[-1] == 1.0


def test_true_identity_rank_and_templates():
    emb = np.array([[1, 0], [1, 0.1], [0, 1], [0.1, 1]], dtype=np.float32)
    t, names = identity_templates(emb, np.array(["a", "a", "b", "b"]))
    assert names.tolist() == ["a", "b"]
    probes = np.array([[1, 0.05], [1, 0.05]], dtype=np.float32)
    ranks = true_identity_rank(probes, np.array(["a", "b"]), t, names)
    assert ranks.tolist() == [1, 2]
    assert rank_summary(ranks) == {"median": 1.5, "mean": 1.5, "sd": 0.5}


def test_pair_verification_tar():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(40, 32))
    labels = np.repeat(np.arange(40), 4)
    g = centres[labels] + 0.1 * rng.normal(size=(160, 32))
    p = centres[labels] + 0.1 * rng.normal(size=(160, 32))
    good = pair_verification(g, labels, p, labels)
    bad = pair_verification(g, labels, rng.normal(size=p.shape), labels)
    assert good["tar_at_far"] > 0.99 and bad["tar_at_far"] < 0.05
    assert good["genuine_pairs"] == 40 * 16
    few = pair_verification(g[:8], labels[:8], p[:8], labels[:8])
    assert few["tar_at_far"] is None  # 32 impostor pairs cannot resolve FAR 1e-3


def test_identification_drop_on_real_faces():
    from deidkit.baselines import get_deidentifier
    from deidkit.eval.identification import identification_drop
    from deidkit.recognizers import get_recognizer

    rec = get_recognizer("mobilefacenet_ms1m")
    same = identification_drop(get_deidentifier("original"), rec, n_identities=4)
    assert same["rank1_drop"] == 0 and same["n_identities"] == 4 and same["rank1_original"] > 0.5
    boxed = identification_drop(get_deidentifier("blackbox"), rec, n_identities=4)
    assert boxed["rank1_drop"] > 0.3
