"""The naive privacy-utility frontier: interpolation along SSIM checked against a hand-made curve, the margin in
repetition SDs, coverage, and the image-level path on a few real LFW photos."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from deidkit.eval import frontier as F

FAMILIES = {"blur": ("blur_sigma2", "blur_sigma8"), "pixelate": ("pixelate_4px", "pixelate_16px")}


def _row(name, rec, ssim, r1, sd=0.0, mtr=1.0, det=1.0):
    return {"deidentifier": name, "recognizer": rec, "ssim": ssim, "rank1_mean": r1, "rank1_std": sd,
            "median_true_rank": mtr, "detection_rate": det}


@pytest.fixture
def table():
    rows = [
        _row("original", "r", 1.0, 1.0, 0.0, 1),
        _row("blur_sigma2", "r", 0.9, 0.8, 0.02, 2),
        _row("blur_sigma8", "r", 0.7, 0.2, 0.04, 100),
        _row("pixelate_4px", "r", 0.8, 0.9, 0.01, 1),
        _row("pixelate_16px", "r", 0.6, 0.1, 0.03, 300),
        _row("learned", "r", 0.85, 0.3, 0.03, 50, det=0.9),
        _row("ugly", "r", 0.5, 0.05, 0.01, 900),
    ]
    return pd.DataFrame(rows)


def test_frontier_interpolates_each_family_and_takes_the_lower(table):
    # SSIM 0.85: blur halfway between sigma2 (0.9, 0.8) and sigma8 (0.7, 0.2) -> 0.8 - 0.25 * 0.6 = 0.65;
    # pixelate between original (1.0, 1.0) and 4px (0.8, 0.9) -> 0.925. Blur is lower.
    fp = F.frontier_at(table, "r", 0.85, FAMILIES)
    assert fp.family == "blur"
    assert fp.rank1 == pytest.approx(0.65)
    assert fp.rank1_std == pytest.approx(0.02 + 0.25 * 0.02)
    assert fp.median_true_rank == pytest.approx(2 + 0.25 * 98)
    # SSIM 0.65: blur does not reach that low (strongest 0.7) -> only pixelate covers it
    fp = F.frontier_at(table, "r", 0.65, FAMILIES)
    assert fp.family == "pixelate" and fp.rank1 == pytest.approx(0.1 + 0.25 * 0.8)
    # below every family: undefined, never favourable
    assert math.isnan(F.frontier_at(table, "r", 0.5, FAMILIES).rank1)


def test_margin_in_repetition_sds(table):
    recs = {r["deidentifier"]: r for r in F.frontier_records(table, "p", "crop", probes_per_rep=228,
                                                               families=FAMILIES)}
    assert "original" not in recs
    learned = recs["learned"]
    sd = math.hypot(0.03, 0.025)
    assert learned["frontier_rank1"] == pytest.approx(0.65)
    assert learned["margin_sd"] == pytest.approx((0.65 - 0.3) / sd)
    assert learned["detection_rate"] == 0.9 and learned["naive_family"] is None
    assert {"kind", "protocol", "level", "deidentifier", "recognizer", "ssim", "rank1", "frontier_rank1",
            "margin_sd", "detection_rate", "median_true_rank"} <= set(learned)
    assert math.isnan(recs["ugly"]["margin_sd"])
    # a family member sits on its own curve: margin 0 against itself
    assert recs["blur_sigma2"]["margin_sd"] == pytest.approx(0.0)
    # a zero spread does not make a gap infinite: the floor is half a probe
    t = table.assign(rank1_std=0.0)
    rec = {r["deidentifier"]: r for r in F.frontier_records(t, "p", "crop", 228, FAMILIES)}["learned"]
    assert rec["margin_sd"] == pytest.approx((0.65 - 0.3) / (0.5 / 228))


def test_frontier_table_needs_its_columns(table):
    with pytest.raises(ValueError, match="lacks columns"):
        F.frontier_records(table.drop(columns="detection_rate"), "p", "crop", 10, FAMILIES)


def test_crop_level_table_joins_identification_and_ranks():
    records = [
        {"kind": "identification", "deidentifier": "a", "recognizer": "r", "ssim": 0.9, "rank1_mean": 0.5,
         "rank1_std": 0.1, "detection_rate": 1.0},
        {"kind": "true_identity_rank", "deidentifier": "a", "recognizer": "r", "median": 12.0},
        {"kind": "deid_verification", "deidentifier": "a", "recognizer": "r"},
    ]
    t = F.crop_level_table(records)
    assert t.to_dict("records") == [{"deidentifier": "a", "recognizer": "r", "ssim": 0.9, "rank1_mean": 0.5,
                                     "rank1_std": 0.1, "detection_rate": 1.0, "median_true_rank": 12.0}]


def test_naive_families_are_kit_baselines_ordered_by_strength():
    deids = F.naive_deidentifiers()
    assert [d.name for d in deids] == [n for names in F.NAIVE_FAMILIES.values() for n in names]
    assert F.family_of("blur_sigma8") == "blur" and F.family_of("live") is None
    assert F.family_of("blur_sigma7", FAMILIES) == "blur" and F.family_of("blackbox") == "blackbox"
    assert F.family_of("fadenet_quick") is None


@pytest.mark.slow
def test_image_level_path_on_real_photos():
    """Two identities (16 whole LFW photos) through detect -> align -> de-identify -> warp back -> blend, then
    re-detection and recognition: the original passes through unchanged, a strong blur changes the photo only
    around the face and lowers recognition."""
    from deidkit.baselines import Identity, get_deidentifier
    from deidkit.recognizers import get_recognizer

    rec = get_recognizer("mobilefacenet_ms1m")
    t = F.run_image_level([Identity(), get_deidentifier("blur_sigma16")], [rec], n_identities=2,
                          rank_gallery_identities=10, show_progress=False)
    orig = t[t["deidentifier"] == "original"].iloc[0]
    blur = t[t["deidentifier"] == "blur_sigma16"].iloc[0]
    assert orig["ssim"] == pytest.approx(1.0) and orig["rank1_mean"] >= 0.95
    assert orig["detection_rate"] == 1.0 and orig["faces_missed"] == 0 and orig["photos"] == 16
    assert 0.6 < blur["ssim"] < 0.99  # the face changed, the rest of the photo did not
    assert blur["rank1_mean"] < orig["rank1_mean"]
    assert blur["median_true_rank"] >= orig["median_true_rank"]


_DARKEN_CALLS: list[int] = []  # outside the object: its attributes are part of its fingerprint


class _CountingDarken:
    """A deterministic stand-in for a learned de-identifier (not a naive family member)."""

    name = "counting_darken"

    def deidentify(self, crops: np.ndarray) -> np.ndarray:
        _DARKEN_CALLS.append(len(crops))
        return (crops // 2).astype(np.uint8)


@pytest.mark.slow
def test_image_level_of_a_learned_model_is_not_rerun_when_cached(tmp_path, monkeypatch):
    """A learned de-identifier's whole-photo results are kept as content keys (not crops): a second run reads the
    embeddings from the cache and gives the same table without running the pipeline."""
    from deidkit.baselines import Identity
    from deidkit.recognizers import get_recognizer

    monkeypatch.setenv("DEIDKIT_CACHE", str(tmp_path))
    rec = get_recognizer("mobilefacenet_ms1m")
    deid = _CountingDarken()
    _DARKEN_CALLS.clear()
    first = F.run_image_level([Identity(), deid], [rec], n_identities=1, rank_gallery=None, show_progress=False)
    assert len(_DARKEN_CALLS) == 8  # one call per photo
    again = F.run_image_level([Identity(), deid], [rec], n_identities=1, rank_gallery=None, show_progress=False)
    assert len(_DARKEN_CALLS) == 8 and again.equals(first)
    row = first[first["deidentifier"] == "counting_darken"].iloc[0]
    assert row["photos"] == 8 and row["ssim"] < 0.99


def test_face_region_covers_forehead_and_contour_beyond_the_landmark_hull():
    from deidkit.pipeline.faces import face_weights, hull_weights

    # a synthetic 68-point face in a 100-pixel crop: jaw 0-16 on a U, brows 17-26 at y=35, nose tip 30 at y=55
    pts = np.zeros((68, 2))
    t = np.linspace(0, np.pi, 17)
    pts[:17] = np.stack([50 - 35 * np.cos(t), 40 + 45 * np.sin(t)], 1)
    pts[17:27] = np.stack([np.linspace(25, 75, 10), np.full(10, 35.0)], 1)
    pts[27:] = [50, 55]
    hull = hull_weights(pts, 100, 0.04)
    face = face_weights(pts, 100, 0.04)
    assert face[20, 50] > 0.9 and hull[20, 50] == 0  # forehead above the brows
    assert face[60, 16] > 0.5 and hull[60, 16] < 0.05  # the jaw contour itself
    assert (face >= hull - 1e-6).all()
    assert face[2, 2] == 0  # background stays


@pytest.mark.slow
def test_frontier_command_on_two_identities(tmp_path, capsys):
    """``deidkit frontier``: naive families, the original and a named method at both levels; records and tables."""
    import json

    from deidkit.cli import main

    assert main(["frontier", "blackbox", "--recognizers", "mobilefacenet_ms1m", "--identities", "2",
                 "--gallery-identities", "10", "--out", str(tmp_path), "--name", "fr"]) == 0
    out = capsys.readouterr().out
    assert "crop  blackbox" in out and "image blackbox" in out
    records = json.loads((tmp_path / "metrics" / "fr.json").read_text())
    assert {(r["level"], r["deidentifier"]) for r in records
            if r["kind"] == "frontier" and r["deidentifier"] == "blackbox"} == {("crop", "blackbox"), ("image", "blackbox")}
    assert {r["deidentifier"] for r in records if r["kind"] == "landmarks"} == {"blackbox", "blur_sigma8"}
    crop = pd.read_csv(tmp_path / "metrics" / "fr_crop.csv")
    assert {"original", "blur_sigma1", "pixelate_24px", "blackbox"} <= set(crop["deidentifier"])
    assert (tmp_path / "figures" / "fr.png").stat().st_size > 10_000
    assert main(["frontier", "nosuch", "--identities", "2", "--out", str(tmp_path)]) == 2


def test_selection_set_avoids_test_and_training_identities():
    from deidkit.data.lfw import load_manifest
    from deidkit.eval.selection import selection_paths

    paths = selection_paths()
    ids = {p.split("/")[1] for p in paths}
    assert len(paths) == len(ids) == 160
    assert not ids & set(load_manifest("lfw_57x8")["identity"])
    assert not ids & set(load_manifest("lfw_train_pool")["identity"])


def test_selection_set_with_several_images_per_identity_and_its_rank1():
    from deidkit.eval.selection import leave_one_out_rank1, selection_set

    four = selection_set(4)
    assert four["identity"].nunique() == 160 and (four.groupby("identity").size() == 4).all()
    assert set(selection_set(1)["path"]) <= set(four["path"])
    # two identities, two images each; probe 0 is nearest to image 1's original (same identity), probe 2 to image 0
    original = np.eye(4)
    deid = np.array([[0.0, 1.0, 0.0, 0.0], [0.9, 0.1, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
    labels = np.array(["a", "a", "b", "b"])
    # probe 0 -> 1 (a: right), probe 1 -> 0 (a: right; its own original excluded), probe 2 -> 0 (a: wrong),
    # probe 3 -> 2 (b: right)
    assert leave_one_out_rank1(original, deid, labels) == 0.75


def test_select_checkpoint_takes_the_strongest_that_keeps_quality():
    from deidkit.baselines import get_deidentifier
    from deidkit.eval.selection import select_checkpoint

    class MeanColour:  # a stand-in recogniser: the mean colour of the crop, normalised
        name = "mean_colour"

        def embed(self, crops):
            e = crops.reshape(len(crops), -1, 3).mean(1) + 1.0
            return e / np.linalg.norm(e, axis=1, keepdims=True)

    crops = np.random.default_rng(1).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    cands = {"weak": get_deidentifier("blur_sigma1"), "strong": get_deidentifier("blackbox")}
    name, table = select_checkpoint(cands, MeanColour(), min_ssim=0.0, crops=crops)
    assert name == "strong" and set(table["candidate"]) == {"weak", "strong"}
    name, _ = select_checkpoint(cands, MeanColour(), min_ssim=float(table["ssim"].max()) - 1e-9, crops=crops)
    assert name == table.loc[table["ssim"].idxmax(), "candidate"]
    assert select_checkpoint(cands, MeanColour(), min_ssim=1.01, crops=crops)[0] is None

    class Bright:  # a stand-in detector: "finds a face" in crops that are not dark
        def detect(self, image):
            return [1] if image[image.shape[0] // 4:-image.shape[0] // 4].mean() > 40 else []

    name, table = select_checkpoint(cands, MeanColour(), min_ssim=0.0, crops=crops, detector=Bright(),
                                    min_detection=0.95)
    assert name == "weak" and table.set_index("candidate")["detection_rate"].to_dict() == {"weak": 1.0, "strong": 0.0}
    with pytest.raises(ValueError, match="detector"):
        select_checkpoint(cands, MeanColour(), min_ssim=0.0, crops=crops, min_detection=0.5)

    class Warping:  # a stand-in warping FaDeNet: black box, and a warp that stretches every face by 0.5
        name = "warping"

        def deidentify(self, batch):
            return get_deidentifier("blackbox").deidentify(batch)

        def warp_stretch(self, batch):
            return np.full(len(batch), 0.5)

    cands = {"weak": get_deidentifier("blur_sigma1"), "warping": Warping()}
    name, table = select_checkpoint(cands, MeanColour(), min_ssim=0.0, crops=crops)
    assert name == "warping" and table.set_index("candidate")["warp_stretch"].to_dict()["warping"] == 0.5
    name, _ = select_checkpoint(cands, MeanColour(), min_ssim=0.0, crops=crops, max_warp_stretch=0.2)
    assert name == "weak"  # no warp: no stretch, within any bound


def test_selection_protocol_is_the_rest_of_lfw_217x8():
    from deidkit.data.lfw import load_manifest
    from deidkit.data.prep import check_manifests
    from deidkit.eval.selection import SELECTION_PROTOCOL, selection_set

    select, test, big = load_manifest(SELECTION_PROTOCOL), load_manifest("lfw_57x8"), load_manifest("lfw_217x8")
    assert select["identity"].nunique() == 160 and len(select) == 160 * 8
    assert not set(select["identity"]) & set(test["identity"])
    assert set(select["path"]) | set(test["path"]) == set(big["path"])
    assert set(selection_set(8)["path"]) == set(select["path"])
    assert not check_manifests()


@pytest.mark.slow
def test_frontier_margins_rank_candidates_by_the_naive_frontier_on_the_selection_protocol():
    """A naive method between two strengths of the family that sets the frontier there lies on the frontier (margin
    about 0): at crop SSIM ~0.86 that is the blended pixelation (24 and 48 px; a boxed blur there lies above the
    blended families); every level is reported, and the worse level is the candidate's score."""
    from deidkit.baselines import get_deidentifier
    from deidkit.eval.selection import frontier_margins, within_bounds
    from deidkit.recognizers import get_recognizer

    cands = {"mid naive": get_deidentifier("pixelate_32px_blend"), "box": get_deidentifier("blackbox")}
    table = frontier_margins(cands, get_recognizer("mobilefacenet_ms1m"), levels=("crop",), n_identities=2)
    assert table["candidate"].tolist() == ["mid naive", "box"]
    mid = table.set_index("candidate").loc["mid naive"]
    assert abs(mid["crop_margin_sd"]) < 3 and mid["min_margin_sd"] == mid["crop_margin_sd"]
    assert 0 <= mid["crop_frontier_rank1"] <= 1 and 0.7 < mid["crop_ssim"] < 0.9
    with pytest.raises(ValueError, match="share the de-identifier name"):
        frontier_margins({"a": cands["box"], "b": get_deidentifier("blackbox")}, None, levels=("crop",))
    bounds = pd.DataFrame({"ssim": [0.9, 0.7], "detection_rate": [0.9, 1.0], "colour_shift": [7.5, 2.2]})
    assert within_bounds(bounds, 0.8).tolist() == [True, False]
    assert within_bounds(bounds, 0.6, min_detection=0.95).tolist() == [False, True]
    assert within_bounds(bounds, 0.6, max_colour_shift=4.0).tolist() == [False, True]


def test_landmark_records_measure_pose_change():
    from deidkit.baselines import get_deidentifier
    from deidkit.eval.temporal import landmark_records

    class Identity:
        name = "identity"

        def deidentify(self, crops):
            return crops

    rows = {r["deidentifier"]: r for r in landmark_records([Identity(), get_deidentifier("blur_sigma8")], n=4)}
    assert rows["identity"]["iod_mean"] == 0 and rows["identity"]["faces"] == 4
    assert 0 < rows["blur_sigma8"]["iod_mean"] < 0.5 and rows["blur_sigma8"]["kind"] == "landmarks"


def test_adapted_attacker_sees_through_a_learnable_change_and_not_through_a_black_box(crops_small, protocol_small):
    """The attacker's head undoes a fixed change of the embedding: against the identity de-identifier it keeps the
    plain recogniser's near-perfect Rank-1, against a black box it stays at chance; its training identities never
    meet the test protocol's."""
    from deidkit.baselines import get_deidentifier
    from deidkit.eval.attack import (
        AttackSplit,
        adapted_attack_records,
        attack_split,
        attack_table,
        fit_adapted_head,
    )

    rng = np.random.default_rng(0)
    orig = rng.normal(size=(300, 16))
    mix = rng.normal(size=(16, 16))
    head = fit_adapted_head(orig @ mix, orig, ridge=1e-6)  # an invertible linear change is (nearly) undone
    unit = orig / np.linalg.norm(orig, axis=1, keepdims=True)
    assert (head(orig @ mix) * unit).sum(1).mean() > 0.95
    assert (head(rng.normal(size=(300, 16))) * unit).sum(1).mean() < 0.2

    split = attack_split()
    assert not set(split.train_identities) & set(split.protocol["identity"])
    with pytest.raises(ValueError, match="overlap"):
        AttackSplit(["a.jpg"], [protocol_small["identity"][0]], protocol_small)

    class Identity:
        name = "identity"

        def deidentify(self, batch):
            return batch.copy()

    from deidkit.recognizers import get_recognizer

    small = AttackSplit(split.train_paths[:120],
                        split.train_identities[:120], protocol_small, "small")
    recs = adapted_attack_records([Identity(), get_deidentifier("blackbox")], [get_recognizer("mobilefacenet_ms1m")],
                                  small)
    t = attack_table(recs).set_index("deidentifier")
    assert t.loc["identity", "rank1_none"] > 0.9 and t.loc["identity", "rank1_adapted_linear"] > 0.9
    chance = 1 / protocol_small["identity"].nunique()
    assert t.loc["blackbox", "rank1_adapted_linear"] <= 2 * chance
    assert {r["attack"] for r in recs} == {"none", "adapted_linear"} and all(r["kind"] == "attack" for r in recs)


def test_reversal_attacker_learns_to_undo_an_invertible_change_and_resumes(tmp_path, crops_small):
    """The reversal U-Net, trained on (changed, original) pairs, undoes a change it can learn (colour channels
    swapped); its run is cached (a second call trains nothing)."""
    from deidkit.data.images import resize_crops
    from deidkit.eval.attack import ReversalConfig, reverse, train_reversal

    class SwapChannels:
        name = "swap_channels"

        def deidentify(self, batch):
            return np.ascontiguousarray(batch[..., ::-1])

    swap = SwapChannels()
    cfg = ReversalConfig.profile("tiny", epochs=20, unet_width=8, lr=1e-2)
    crops = resize_crops(crops_small[:32], 64)
    unet = train_reversal(swap, crops, cfg, run_dir=tmp_path / "rev", progress=False)
    changed = swap.deidentify(crops)
    back = reverse(unet, changed, cfg.image_size)

    def err(a):
        return np.abs(a.astype(float) - crops).mean()

    assert back.shape == crops.shape and err(back) < 0.5 * err(changed)
    log = (tmp_path / "rev" / "log.csv").read_text()
    train_reversal(swap, crops, cfg, run_dir=tmp_path / "rev", progress=False)
    assert (tmp_path / "rev" / "log.csv").read_text() == log
    with pytest.raises(ValueError, match="reversal profile"):
        ReversalConfig.profile("nosuch")


def test_frontier_figure_shows_the_adaptive_attackers_above_the_plain_points():
    import matplotlib

    matplotlib.use("Agg")
    from deidkit.plots import frontier_figure

    rows = [{"deidentifier": d, "recognizer": "dlib", "ssim": s, "rank1_mean": r, "rank1_std": 0.01}
            for d, s, r in [("original", 1.0, 0.99), ("blur_sigma4", 0.87, 0.86), ("blur_sigma8", 0.79, 0.14),
                            ("pixelate_8px", 0.85, 0.5), ("pixelate_16px", 0.78, 0.03), ("live", 0.88, 0.05)]]
    attacks = [{"kind": "attack", "attack": a, "deidentifier": "live", "recognizer": "dlib", "rank1": r}
               for a, r in [("none", 0.05), ("adapted", 0.16), ("reversal", 0.05)]]
    fig = frontier_figure({"crop": pd.DataFrame(rows)}, ["dlib"], attacks=attacks)
    ax = fig.axes[0]
    labels = [ln.get_label() for ln in ax.get_lines()]
    assert "adapted attacker" in labels and "reversal attacker" in labels
    adapted = next(ln for ln in ax.get_lines() if ln.get_label() == "adapted attacker")
    assert tuple(adapted.get_xydata()[0]) == (0.88, 0.16)


def test_recorded_selections_gather_the_candidates_and_plot_them(tmp_path):
    """The by-frontier selection records of several files become one table (the latest record of a candidate
    wins, records without frontier numbers and other kinds are left out; a corrupt file is one clear error), and
    the recipes' figure draws every candidate at its SSIM and Rank-1."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    from deidkit.eval.selection import recorded_selections
    from deidkit.plots import selection_curves_figure

    def rec(run, cand, ssim, rank1, **kw):
        return {"kind": "selection", "run": run, "candidate": cand, "crop_ssim": ssim, "crop_rank1": rank1,
                "crop_frontier_rank1": 0.6, "image_ssim": ssim + 0.04, "image_rank1": rank1 + 0.01,
                "image_frontier_rank1": 0.1, "min_margin_sd": 3.0, "selected": False, **kw}

    metrics = tmp_path / "metrics"
    metrics.mkdir()
    (metrics / "selection_a.json").write_text(json.dumps([rec("r1", "e1", 0.86, 0.05), rec("r1", "e2", 0.87, 0.06),
                                                          {"kind": "selection", "run": "r9", "candidate": "x",
                                                           "ssim": 0.8}]))
    (metrics / "selection_b.json").write_text(json.dumps([rec("r1", "e2", 0.871, 0.055), rec("r2", "e1", 0.85, 0.04),
                                                          {"kind": "frontier", "crop_rank1": 0.3},
                                                          rec("r4", "e1", 0.85, 0.2, identities=57)]))
    (metrics / "other.json").write_text(json.dumps([rec("r3", "e1", 0.9, 0.2)]))
    table = recorded_selections(out=tmp_path)
    assert sorted(zip(table["run"], table["candidate"])) == [("r1", "e1"), ("r1", "e2"), ("r2", "e1")]
    assert table.set_index(["run", "candidate"]).loc[("r1", "e2"), "crop_rank1"] == 0.055  # the later file
    fig = selection_curves_figure(table, max_rank1=0.05, highlight=[("r2", "e1")])
    crop_ax, image_ax = fig.axes
    points = np.concatenate([c.get_offsets() for c in crop_ax.collections])
    assert any(np.allclose(p, (0.85, 0.04)) for p in points) and any(np.allclose(p, (0.871, 0.055)) for p in points)
    assert any(np.allclose(p, (0.89, 0.05)) for p in np.concatenate([c.get_offsets() for c in image_ax.collections]))
    assert [tuple(line.get_ydata()) for line in crop_ax.lines if line.get_linestyle() == "--"] == [(0.05, 0.05)]
    # the shipped natural-looking model is found among the kit's own records under its manifest's run and options
    from deidkit.eval.selection import shipped_candidate

    run, cand = shipped_candidate("fadenet")
    kit = recorded_selections("selection_fadenet_subspace*")
    assert len(kit[(kit["run"] == run) & (kit["candidate"] == cand)]) == 1
    # more runs than a colour map has colours: each run still gets a style of its own (colour, marker)
    many = pd.concat([table.assign(run=f"run{i}") for i in range(23)], ignore_index=True)
    crop_ax = selection_curves_figure(many).axes[0]
    styles = {(tuple(c.get_facecolor()[0]), c.get_paths()[0].vertices.tobytes()) for c in crop_ax.collections}
    assert len(styles) == 23
    empty = selection_curves_figure(recorded_selections(out=tmp_path / "nothing"))  # no records: an empty figure
    assert "no selection records" in [t.get_text() for t in empty.axes[0].texts]
    (metrics / "selection_c.json").write_text("{not json")
    with pytest.raises(ValueError, match="selection_c.json: not a metrics file"):
        recorded_selections(out=tmp_path)


def test_bootstrap_intervals_are_paired_and_cover_the_estimate():
    """Identity-clustered intervals on a synthetic table: a model far below the frontier has a gap interval above
    0 (beyond_frontier), one on the frontier an interval that holds 0; every Rank-1 interval holds its estimate."""
    import pandas as pd

    from deidkit.eval.frontier import frontier_records

    rng = np.random.default_rng(0)
    ids = [f"id{i:02d}" for i in range(40)]

    def row(name, ssim, level):
        by_id = {n: float(np.clip(level + rng.normal(0, 0.15), 0, 1)) for n in ids}
        r1 = float(np.mean(list(by_id.values())))
        return {"deidentifier": name, "recognizer": "r", "ssim": ssim, "rank1_mean": r1, "rank1_std": 0.02,
                "median_true_rank": 1.0, "detection_rate": 1.0, "rank1_by_identity": by_id}

    table = pd.DataFrame([row("original", 1.0, 0.95), row("blur_sigma2", 0.9, 0.8), row("blur_sigma8", 0.7, 0.3),
                          row("pixelate_4px", 0.9, 0.85), row("pixelate_16px", 0.7, 0.4),
                          row("good", 0.85, 0.05), row("blur_sigma4", 0.8, 0.55)])
    recs = {r["deidentifier"]: r for r in frontier_records(table, "p", "crop", 4, n_boot=500)}
    good = recs["good"]
    assert good["gap_ci"][0] > 0.3 and good["beyond_frontier"]
    assert good["rank1_ci"][0] <= good["rank1"] <= good["rank1_ci"][1]
    on = recs["blur_sigma4"]  # a member of the frontier itself
    assert on["gap_ci"][0] <= 0.0 + 1e-9 and not on["beyond_frontier"]
