"""The stronger attacker: its own split of LFW, the fine-tuned judge, the renamed records."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from deidkit.data import lfw
from deidkit.data.lfw import aligned_crops, assert_no_test_identities, load_manifest


class _ColourShift:
    """A fixed, learnable distortion: every pixel shifted by the same colour (with a tiny network, so that the
    records have weights to name)."""

    def __init__(self, name: str = "colour_shift_for_tests") -> None:
        import torch

        torch.manual_seed(0)
        self.name = name
        self.net = torch.nn.Conv2d(3, 3, 1)

    def deidentify(self, batch: np.ndarray) -> np.ndarray:
        return np.clip(batch.astype(np.int16) + np.array([80, -50, -80], np.int16), 0, 255).astype(np.uint8)


class _NotTorch:
    """A recogniser outside torch (as dlib is): the linear and reversal attackers use it, the fine-tune skips it."""

    name = "mean_colour_for_tests"
    dim = 3
    weights_sha256 = "0" * 64

    def embed(self, crops, batch_size=32, progress=None):
        return np.asarray(crops, np.float32).mean((1, 2)) + 1.0


@pytest.fixture(scope="module")
def attack_images():
    """A few training and held-out images of the attacker split (real faces), with their identities."""
    from deidkit.eval.attack import attack_split

    split = attack_split(n_identities=2)
    return (split.train_paths[:24], split.train_identities[:24], split.heldout_paths[:16],
            split.heldout_identities[:16])


def test_attack_split_holds_no_test_selection_or_critic_identity_and_is_reproducible():
    from deidkit.data.protocols import attack_split_manifest
    from deidkit.eval.attack import ATTACK_SPLIT, AttackSplit, attack_split

    split = load_manifest(ATTACK_SPLIT)
    pool = load_manifest("lfw_train_pool")
    ids = set(split["identity"])
    for name in ("lfw_57x8", "lfw_217x8", "lfw_select_160x8"):
        assert not ids & set(load_manifest(name)["identity"]), name
    assert_no_test_identities(ids, ATTACK_SPLIT)
    assert set(split["path"]) <= set(pool["path"])
    # outside the critic's split: the FaDeNet models and their critics never saw these people
    assert not ids & set(pool.loc[pool["critic_split"] != "none", "identity"])
    assert (len(split), len(ids)) == (2167, 1713)
    train, held = split[split["role"] == "train"], split[split["role"] == "heldout"]
    assert not set(train["identity"]) & set(held["identity"]) and len(held) == 432
    assert attack_split_manifest(pool).equals(split)  # rebuilt bit for bit from the pool and its seed

    s = attack_split()
    assert s.train_split == ATTACK_SPLIT and len(s.train_paths) == len(train) and len(s.heldout_paths) == len(held)
    small = attack_split(max_images=60)  # a quick check gets a proportionate held-out part, whole identities
    assert len(small.train_paths) == 60 and 0 < len(small.heldout_paths) <= 32
    assert set(held.loc[held["identity"].isin(set(small.heldout_identities)), "path"]) == set(small.heldout_paths)
    leak = load_manifest("lfw_select_160x8")["identity"].iloc[0]
    with pytest.raises(ValueError, match="test protocols"):
        AttackSplit(s.train_paths[:2], s.train_identities[:2], s.protocol, "lfw_57x8", ["images/x.jpg"], [leak])
    with pytest.raises(ValueError, match="held-out"):
        AttackSplit(s.train_paths[:1], s.train_identities[:1], s.protocol, "lfw_57x8", s.train_paths[:1],
                    s.train_identities[:1])


def test_finetuned_judge_moves_a_colour_shift_back_towards_the_originals(tmp_path, attack_images):
    from deidkit.eval.attack_finetune import FinetuneConfig, finetunable, train_finetune, tuned_recognizer
    from deidkit.recognizers import get_recognizer

    train_paths, _, held_paths, held_ids = attack_images
    train, held = aligned_crops(train_paths), aligned_crops(held_paths)
    judge, shift = get_recognizer("mobilefacenet_casia"), _ColourShift()
    assert finetunable(judge) and not finetunable(_NotTorch())

    def cosine(rec, crops):
        return float((rec.embed(shift.deidentify(crops)) * judge.embed(crops)).sum(1).mean())

    result = train_finetune(judge, shift, train, held, held_ids, FinetuneConfig.profile("tiny"),
                            run_dir=tmp_path / "ft", progress=False)
    tuned = tuned_recognizer(judge, result)
    assert cosine(tuned, train) > cosine(judge, train) + 0.02
    assert cosine(tuned, held) > cosine(judge, held)  # images it never learnt from
    assert tuned.weights_sha256 == result.weights_sha256 != "" and tuned.name == "mobilefacenet_casia_finetuned"
    assert [h["epoch"] for h in result.history] == [0, 1] and result.gallery_judge in ("original", "finetuned")
    # the judge itself is untouched
    assert abs(cosine(get_recognizer("mobilefacenet_casia"), train) - cosine(judge, train)) < 1e-6


def test_finetune_run_resumes_to_the_same_weights_and_loads_when_finished(tmp_path, attack_images):
    from deidkit.eval.attack_finetune import FinetuneConfig, train_finetune
    from deidkit.recognizers import get_recognizer
    from deidkit.train.limits import TimeLimitReached, run_limits

    train_paths, _, held_paths, held_ids = attack_images
    train, held = aligned_crops(train_paths[:16]), aligned_crops(held_paths[:8])
    judge, shift = get_recognizer("mobilefacenet_casia"), _ColourShift()
    cfg = FinetuneConfig.profile("tiny", epochs=2)
    whole = train_finetune(judge, shift, train, held, held_ids[:8], cfg, run_dir=tmp_path / "a", progress=False)
    with run_limits(max_steps=3), pytest.raises(TimeLimitReached):  # stopped inside the second epoch
        train_finetune(judge, shift, train, held, held_ids[:8], cfg, run_dir=tmp_path / "b", progress=False)
    resumed = train_finetune(judge, shift, train, held, held_ids[:8], cfg, run_dir=tmp_path / "b", progress=False)
    assert resumed.weights_sha256 == whole.weights_sha256
    assert json.dumps(resumed.history, sort_keys=True) == json.dumps(whole.history, sort_keys=True)  # NaN-safe: a held-out part may lack pairs
    log = (tmp_path / "b" / "log.csv").read_text()
    again = train_finetune(judge, shift, train, held, held_ids[:8], cfg, run_dir=tmp_path / "b", progress=False)
    assert again.weights_sha256 == whole.weights_sha256 and (tmp_path / "b" / "log.csv").read_text() == log


def test_records_name_the_attacker_its_split_and_the_weights(tmp_path, monkeypatch, attack_images,
                                                             protocol_small):
    from deidkit.eval.attack import AttackSplit, ReversalConfig, attack_records, attack_table
    from deidkit.eval.attack_finetune import FinetuneConfig
    from deidkit.eval.provenance import deidentifier_weights, git_commit
    from deidkit.recognizers import get_recognizer

    train_paths, train_ids, held_paths, held_ids = attack_images
    protocol = protocol_small[protocol_small["identity"].isin(sorted(protocol_small["identity"].unique())[:2])]
    paths = [*train_paths[:12], *held_paths[:8], *protocol["path"]]
    by_path = dict(zip(paths, aligned_crops(paths)))
    monkeypatch.setattr(lfw, "aligned_crops", lambda ps, size=224, **kw: np.stack([by_path[p] for p in ps]))
    monkeypatch.setenv("DEIDKIT_CACHE", str(tmp_path))  # runs and embeddings of this test only
    split = AttackSplit(train_paths[:12], train_ids[:12], protocol.reset_index(drop=True), "lfw_57x8",
                        held_paths[:8], held_ids[:8], "lfw_attack_split")
    shift = _ColourShift()
    recs = attack_records([shift], [get_recognizer("mobilefacenet_casia"), _NotTorch()], split,
                          ("adapted_linear", "adapted_finetune", "reversal"), finetune=FinetuneConfig.profile("tiny"),
                          reversal=ReversalConfig.profile("tiny"), progress=False)
    got = {(r["attack"], r["recognizer"]) for r in recs}
    assert got == {(a, r) for a in ("none", "adapted_linear", "reversal")
                   for r in ("mobilefacenet_casia", "mean_colour_for_tests")} | {
        ("adapted_finetune", "mobilefacenet_casia")}  # nothing to fine-tune outside torch
    sha = deidentifier_weights(shift)[0]
    assert sha and all(r["weights_sha256"] == sha and r["commit"] == git_commit() for r in recs)
    assert all(r["kind"] == "attack" and r["protocol"] == "lfw_57x8" for r in recs)
    assert all(r["train_split"] == ("lfw_attack_split" if r["attack"] != "none" else None) for r in recs)
    tuned = next(r for r in recs if r["attack"] == "adapted_finetune")
    assert tuned["rank1"] == tuned[f"rank1_gallery_{tuned['gallery_judge']}"]
    assert tuned["train_images"] == 12 and tuned["heldout_images"] == 8 and len(tuned["attacker_weights_sha256"]) == 64
    assert next(r for r in recs if r["attack"] == "reversal")["reversal_size"] == 64
    table = attack_table(recs)
    assert {"rank1_none", "rank1_adapted_linear", "rank1_adapted_finetune", "rank1_reversal"} <= set(table.columns)


def test_older_adapted_records_read_as_the_linear_attacker_and_the_frontier_under_attack():
    from deidkit.eval.attack import ReversalConfig, adapted_frontier, attack_name, attack_table

    assert attack_name("adapted") == "adapted_linear" and attack_name("reversal") == "reversal"
    assert ReversalConfig().image_size == 112 and ReversalConfig.profile("quick").image_size == 112
    old = [{"kind": "attack", "attack": a, "deidentifier": d, "recognizer": "dlib", "rank1": r,
            "median_true_rank": 1.0} for d, a, r in [("blur_sigma4", "none", 0.5), ("blur_sigma4", "adapted", 0.6),
                                                      ("blur_sigma8", "adapted_linear", 0.3), ("live", "adapted", 0.1)]]
    table = attack_table(old).set_index("deidentifier")
    assert table.loc["blur_sigma4", "rank1_adapted_linear"] == 0.6 and "rank1_adapted" not in table.columns
    ssim = pd.DataFrame({"deidentifier": ["blur_sigma4", "blur_sigma8", "live"], "recognizer": "dlib",
                         "ssim": [0.87, 0.79, 0.88]})
    front = adapted_frontier(old, ssim)
    lin = front[front["attack"] == "adapted_linear"]
    assert lin["deidentifier"].tolist() == ["blur_sigma4", "blur_sigma8"] and lin["family"].eq("blur").all()
    assert "live" not in set(front["deidentifier"])  # learned models are points, not a family


def test_attack_command_options():
    from deidkit.cli import build_parser

    args = build_parser().parse_args(["attack", "live", "fadenet", "--naive"])
    assert args.attacks == ["adapted_linear", "adapted_finetune"] and args.naive == [] and args.split == "lfw_attack_split"
    args = build_parser().parse_args(["attack", "--naive", "blur", "--attacks", "reversal", "--reversal-profile", "tiny"])
    assert args.methods == [] and args.naive == ["blur"] and args.attacks == ["reversal"]
    with pytest.raises(ValueError, match="naive family"):
        args.func(build_parser().parse_args(["attack", "--naive", "nosuch"]))
