"""What makes the evaluation trustworthy, on tiny hand-made inputs: training and attack data never show a test
identity, the large gallery holds none of the probes it ranks, re-detection finds the original face (not the
central one), embedding caches follow the recogniser's weights, and records name the weights and the commit."""

from __future__ import annotations

import io
import shutil

import cv2
import numpy as np
import pandas as pd
import pytest

from deidkit.data import lfw
from deidkit.data.alignment import Detection, align_to_landmarks, box_iou, crop_box_in_image, pick_overlapping
from deidkit.data.protocols import assert_no_probe_images, assert_no_test_identities, gallery_without_probes


@pytest.fixture(scope="module")
def test_identity() -> str:
    """An identity of lfw_217x8 outside lfw_57x8 (a leak the evaluated protocol alone would not reveal)."""
    small = set(lfw.load_manifest("lfw_57x8")["identity"])
    return sorted(set(lfw.load_manifest("lfw_217x8")["identity"]) - small)[0]


# ------------------------------------------------------------------------------------------------ leaks


def test_the_guard_names_the_leaked_identity_and_the_loader(test_identity):
    assert_no_test_identities(["Nobody_In_The_Test_Set"], "a loader")  # no test identity: silent
    with pytest.raises(ValueError, match=f"my loader reads 1 identity of the test protocols.*{test_identity}"):
        assert_no_test_identities(["Nobody_In_The_Test_Set", test_identity], "my loader")


def test_a_training_manifest_with_a_test_identity_is_refused(tmp_path, monkeypatch, test_identity):
    """A training manifest is checked every time it is read (a rebuilt or edited manifest cannot leak)."""
    for name in lfw.TEST_PROTOCOLS:
        shutil.copy(lfw.manifest_path(name), tmp_path / f"{name}.csv")
    pool = pd.DataFrame({"path": ["images/A/A_0001.jpg", f"images/{test_identity}/{test_identity}_0001.jpg"],
                         "identity": ["A", test_identity], "sha256": ["0" * 64, "1" * 64]})
    pool.to_csv(tmp_path / "lfw_train_pool.csv", index=False)
    monkeypatch.setattr(lfw, "MANIFEST_DIR", tmp_path)
    with pytest.raises(ValueError, match=f"manifest lfw_train_pool reads 1 identity.*{test_identity}"):
        lfw.load_manifest("lfw_train_pool")
    pool.iloc[:1].to_csv(tmp_path / "lfw_train_pool.csv", index=False)
    assert lfw.load_manifest("lfw_train_pool")["identity"].tolist() == ["A"]
    (tmp_path / "lfw_57x8.csv").unlink()  # without the test protocols nothing can be ruled out
    with pytest.raises(FileNotFoundError, match="cannot check training data"):
        lfw.load_manifest("lfw_train_pool")


def test_the_live_lambda_calibration_refuses_a_test_manifest():
    from deidkit.configs import LiveConfig
    from deidkit.train.live import lambda_break_even

    cfg = LiveConfig.profile("tiny")
    cfg.manifest = "lfw_57x8"
    with pytest.raises(ValueError, match="lambda calibration manifest lfw_57x8"):
        lambda_break_even(cfg, features=object())


def _pack(path, names: list[str], size: int = 16) -> None:
    """A crop pack written by hand (the format of deidkit.data.packs): grey squares under the given paths."""
    blobs = [cv2.imencode(".jpg", np.full((size, size, 3), 100 + i, np.uint8))[1].tobytes()
             for i in range(len(names))]
    with open(path, "wb") as f:
        np.savez(f, format=np.int64(1), size=np.int64(size), quality=np.int64(95), paths=np.asarray(names, np.str_),
                 offsets=np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64),
                 data=np.frombuffer(b"".join(blobs), np.uint8))


def test_a_crop_pack_holding_a_test_identity_is_refused(tmp_path, test_identity):
    from deidkit.data.packs import read_crop_pack

    pool_path, test_path = "images/Nobody_Here/Nobody_Here_0001.jpg", f"images/{test_identity}/{test_identity}_0003.jpg"
    _pack(tmp_path / "p.npz", [pool_path, test_path])
    names, crops = read_crop_pack(tmp_path / "p.npz", [pool_path])  # only what is read is checked
    assert names == [pool_path] and crops.shape == (1, 16, 16, 3)
    with pytest.raises(ValueError, match=f"crop pack .*p.npz reads 1 identity.*{test_identity}"):
        read_crop_pack(tmp_path / "p.npz")


def test_the_attackers_training_images_never_show_a_test_identity(protocol_small, test_identity):
    """Refused even when the identity is not in the protocol the attack is evaluated on."""
    from deidkit.eval.attack import AttackSplit

    assert test_identity not in set(protocol_small["identity"])
    with pytest.raises(ValueError, match=f"the attacker's training images .* {test_identity}"):
        AttackSplit(["images/x.jpg", "images/y.jpg"], ["Nobody_Here", test_identity], protocol_small, "small")
    AttackSplit(["images/x.jpg"], ["Nobody_Here"], protocol_small, "small")


# ------------------------------------------------------------------------------------------ the large gallery


def test_the_gallery_drops_the_probes_by_path_and_by_content():
    protocol = pd.DataFrame({"identity": ["a", "a", "b", "b"], "path": ["a1", "a2", "b1", "b2"],
                             "sha256": ["s1", "s2", "s3", "s4"], "rep0": ["gallery", "probe", "gallery", "probe"]})
    gallery = pd.DataFrame({"identity": ["a", "a", "b", "b", "c"], "path": ["a1", "a2", "b1", "b2_copy", "c1"],
                            "sha256": ["s1", "s2", "s3", "s4", "s5"]})
    with pytest.raises(ValueError, match="2 probe image"):
        assert_no_probe_images(gallery, protocol)
    assert gallery_without_probes(gallery, protocol)["path"].tolist() == ["a1", "b1", "c1"]


def test_the_large_gallery_holds_none_of_lfw_217x8s_probes():
    """lfw_all_identities was built without lfw_57x8's probes only: 243 of lfw_217x8's 868 ranked probes are in it,
    and the evaluation drops them."""
    from deidkit.eval.benchmark import rank_gallery_manifest

    protocol = lfw.load_manifest("lfw_217x8")
    probes = protocol[protocol["rep0"] == "probe"]
    raw = lfw.load_manifest("lfw_all_identities")
    assert raw["path"].isin(probes["path"]).sum() > 0
    gallery = rank_gallery_manifest(protocol, "lfw_all_identities")
    assert not gallery["path"].isin(probes["path"]).any() and not gallery["sha256"].isin(probes["sha256"]).any()
    assert set(probes["identity"]) <= set(gallery["identity"])  # every probe still has a template
    assert len(gallery) == len(raw) - raw["path"].isin(probes["path"]).sum()


# ------------------------------------------------------------------------------------------------ re-detection


def test_pick_overlapping_takes_the_original_face_or_none():
    box = np.array([10.0, 10.0, 50.0, 50.0])
    central = Detection(np.array([100.0, 80.0, 140.0, 120.0]), np.zeros((5, 2)), 0.99)
    beside = Detection(np.array([14.0, 12.0, 52.0, 54.0]), np.zeros((5, 2)), 0.6)
    assert box_iou(box, box) == 1.0 and box_iou(box, central.box) == 0.0
    assert pick_overlapping([central, beside], box) is beside
    assert pick_overlapping([central], box) is None
    assert pick_overlapping([], box) is None


def test_image_level_redetection_takes_the_overlapping_face_not_the_central_one(monkeypatch):
    """A photo whose own face sits left of centre and another person's face at the centre: the face found again is
    the left one; with only the central face detected the photo counts as missed."""
    import deidkit.data.alignment as alignment
    from deidkit.eval.frontier import image_level_outputs
    from deidkit.eval.quality import face_box

    rng = np.random.default_rng(0)
    photo = cv2.GaussianBlur(rng.integers(0, 255, (200, 320, 3), np.uint8), (0, 0), 3)
    size = 112
    matrix = np.array([[1.0, 0.0, -10.0], [0.0, 1.0, -40.0]])  # the crop is photo[40:152, 10:122]
    own_box = crop_box_in_image(matrix, face_box(size))
    assert own_box[2] < 160  # left of the photo's centre column
    x0, y0, x1, y1 = own_box
    own = Detection(own_box, np.array([[x0 + 10, y0 + 15], [x1 - 10, y0 + 15], [(x0 + x1) / 2, (y0 + y1) / 2],
                                       [x0 + 14, y1 - 12], [x1 - 14, y1 - 12]]), 0.7)
    other_box = np.array([130.0, 50.0, 190.0, 150.0])  # centred in the photo, another person
    other = Detection(other_box, own.landmarks - own_box[:2] + other_box[:2], 0.99)

    class FakeDetector:
        def __init__(self, dets):
            self.dets = dets

        def detect(self, image):
            return list(self.dets)

    class Original:
        name = "original"

        def deidentify(self, batch):
            return batch.copy()

    for dets, found in (([other, own], True), ([other], False)):
        monkeypatch.setattr(alignment, "make_detector", lambda name, dets=dets: FakeDetector(dets))
        res = image_level_outputs(Original(), [photo], [matrix], size=size, show_progress=False)
        assert bool(res.redetected[0]) is found
        expected = (align_to_landmarks(photo, own.landmarks, size)[0] if found else
                    cv2.warpAffine(photo, matrix, (size, size), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_REFLECT101))
        np.testing.assert_array_equal(res.crops[0], expected)


# ------------------------------------------------------------------------------------------ embedding caches


class _MeanColour:
    """A recogniser by hand: the mean colour of a crop, read from a weights file that scales it."""

    name = "mean_colour_for_tests"
    dim = 3

    def __init__(self, weights_path):
        self.weights_path = weights_path
        self.calls = 0

    def embed(self, crops, batch_size=32, progress=None):
        self.calls += 1
        scale = float(np.load(self.weights_path)[0])
        return (np.asarray(crops, np.float32).mean((1, 2)) * scale).astype(np.float32)


def test_original_embeddings_are_not_reused_when_the_recognisers_weights_change(tmp_path, monkeypatch):
    from deidkit.eval.embeddings import embed_originals, recognizer_key

    monkeypatch.setenv("DEIDKIT_CACHE", str(tmp_path / "cache"))
    weights = tmp_path / "w.npy"
    np.save(weights, np.array([1.0]))
    crops = np.random.default_rng(0).integers(0, 255, (3, 8, 8, 3), np.uint8)
    rec = _MeanColour(weights)
    first = embed_originals(rec, ["a", "b", "c"], lambda idx: crops[idx], "tag")
    embed_originals(rec, ["a", "b", "c"], lambda idx: crops[idx], "tag")
    assert rec.calls == 1  # the same weights: read from the cache
    key = recognizer_key(rec)
    buf = io.BytesIO()
    np.save(buf, np.array([2.0, 0.0]))  # other weights under the same name and path
    weights.write_bytes(buf.getvalue())
    assert recognizer_key(rec) != key
    second = embed_originals(rec, ["a", "b", "c"], lambda idx: crops[idx], "tag")
    assert rec.calls == 2
    np.testing.assert_allclose(second, 2 * first, rtol=1e-6)


# ---------------------------------------------------------------------------------------------------- records


class _Learned:
    """A learned de-identifier by hand: one tiny network (its weights are what the records name)."""

    def __init__(self, name="learned_for_tests", seed=0):
        import torch

        torch.manual_seed(seed)
        self.name = name
        self.net = torch.nn.Conv2d(3, 3, 1)

    def deidentify(self, batch):
        return np.ascontiguousarray(255 - batch)


def test_provenance_of_naive_shipped_run_and_in_memory_weights(tmp_path):
    from deidkit.baselines import get_deidentifier
    from deidkit.checkpoints import CHECKPOINT_NAME
    from deidkit.eval.provenance import deidentifier_weights, file_sha256, git_commit, provenance
    from deidkit.pretrained import read_manifest

    assert provenance(get_deidentifier("blur_sigma8"))["weights_sha256"] is None
    shipped = read_manifest()["models"]["fadenet"]["sha256"]

    class ShippedByName(_Learned):
        run_dir = None

    assert deidentifier_weights(ShippedByName("fadenet_s0.9")) == (shipped, "manifest")
    run = tmp_path / "fadenet-somerun"
    run.mkdir()
    (run / CHECKPOINT_NAME).write_bytes(b"weights")
    in_run = _Learned("fadenet-somerun")
    in_run.run_dir = run
    assert deidentifier_weights(in_run) == (file_sha256(run / CHECKPOINT_NAME), "checkpoint")
    a, b, a_again = _Learned(seed=0), _Learned(seed=1), _Learned(seed=0)
    assert deidentifier_weights(a)[1] == "tensors"
    assert deidentifier_weights(a) == deidentifier_weights(a_again) != deidentifier_weights(b)
    assert provenance(a)["commit"] == git_commit() and (git_commit() is None or len(git_commit()) == 40)


def test_frontier_records_carry_the_weights_and_the_commit():
    from deidkit.eval.frontier import frontier_records
    from deidkit.eval.provenance import git_commit
    from deidkit.pretrained import read_manifest

    rows = [("original", 1.0, 1.0), ("blur_sigma2", 0.9, 0.8), ("blur_sigma8", 0.7, 0.2), ("live", 0.85, 0.1),
            ("learned", 0.8, 0.3)]
    table = pd.DataFrame([{"deidentifier": d, "recognizer": "r", "ssim": s, "rank1_mean": r, "rank1_std": 0.01,
                           "median_true_rank": 1.0, "detection_rate": 1.0} for d, s, r in rows])
    given = {"learned": {"weights_sha256": "ab" * 32, "commit": "c" * 40}}
    recs = {r["deidentifier"]: r for r in frontier_records(table, "p", "crop", 10, {"blur": ("blur_sigma2",
                                                                                             "blur_sigma8")},
                                                           provenance=given)}
    assert all("weights_sha256" in r and "commit" in r for r in recs.values())
    assert recs["blur_sigma8"]["weights_sha256"] is None and recs["blur_sigma8"]["commit"] == git_commit()
    assert recs["live"]["weights_sha256"] == read_manifest()["models"]["live"]["sha256"]  # shipped: by its name
    assert recs["learned"]["weights_sha256"] == "ab" * 32 and recs["learned"]["commit"] == "c" * 40


def test_attack_records_carry_the_weights_and_the_commit(tmp_path, monkeypatch, protocol_small):
    from deidkit.eval.attack import AttackSplit, adapted_attack_records
    from deidkit.eval.provenance import deidentifier_weights, git_commit

    monkeypatch.setenv("DEIDKIT_CACHE", str(tmp_path))
    rng = np.random.default_rng(0)
    monkeypatch.setattr(lfw, "aligned_crops",
                        lambda paths, size=224, **kw: rng.integers(0, 255, (len(list(paths)), 16, 16, 3), np.uint8))
    np.save(tmp_path / "w.npy", np.array([1.0]))
    protocol = protocol_small[protocol_small["identity"].isin(sorted(protocol_small["identity"].unique())[:2])]
    split = AttackSplit([f"images/P{i}/P{i}_0001.jpg" for i in range(12)], [f"P{i // 3}" for i in range(12)],
                        protocol.reset_index(drop=True), "small")
    learned = _Learned()
    recs = adapted_attack_records([learned], [_MeanColour(tmp_path / "w.npy")], split, ridge=1.0)
    assert {r["attack"] for r in recs} == {"none", "adapted_linear"}
    assert all(r["weights_sha256"] == deidentifier_weights(learned)[0] and r["commit"] == git_commit()
               for r in recs)


def test_realism_records_carry_the_weights_and_the_commit(monkeypatch):
    from deidkit.eval import realism
    from deidkit.eval.provenance import deidentifier_weights

    monkeypatch.setattr(realism, "_record_path", lambda *a: None)  # measured here, not read from the cache

    def colour_features(crops):
        return np.asarray(crops, np.float32).reshape(len(crops), -1, 3).mean(1)

    learned = _Learned()
    recs, _ = realism.measure_realism([learned], levels=("crop",), n_identities=2, train_images=8,
                                      show_progress=False, features=colour_features)
    assert len(recs) == 1 and recs[0]["kind"] == "realism"
    assert recs[0]["weights_sha256"] == deidentifier_weights(learned)[0] and "commit" in recs[0]
