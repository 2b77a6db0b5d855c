"""The blended naive baselines (blur and pixelation pasted as the learned models paste their output) and the
frontier taken against the better of the boxed and blended families."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from deidkit.baselines import (
    BLEND_FEATHER,
    BlackBox,
    Blended,
    GaussianBlur,
    Pixelate,
    face_box_mask,
    get_deidentifier,
    unknown_message,
    valid_choices,
)
from deidkit.data.templates import CANONICAL_ZOOM
from deidkit.deidentifiers.colour import match_colour
from deidkit.eval import frontier as F
from deidkit.eval.naive import NAIVE_FAMILIES, family_of, variant_of

#: every boxed strength of the frontier's blur and pixelation
BOXED = [n for fam in ("blur", "pixelate") for n in NAIVE_FAMILIES[fam]]


def _faces(n: int = 3, size: int = 96, seed: int = 0) -> np.ndarray:
    """Smooth synthetic crops with structure at several scales (random noise alone would be blurred to grey)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    out = []
    for _ in range(n):
        f = rng.uniform(2, 9, (3, 2))
        img = np.stack([128 + 90 * np.sin(2 * np.pi * (f[c, 0] * x + f[c, 1] * y + c)) for c in range(3)], -1)
        out.append(img + rng.normal(0, 12, img.shape))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def crops(crops_small) -> np.ndarray:
    return np.asarray(crops_small[:6])


@pytest.mark.parametrize("name", BOXED)
def test_blended_family_at_feather_0_is_the_boxed_one(name, crops):
    """At feather 0 the blend's weight is the boxed variant's hard face box: without the colour match the output
    is the boxed one pixel for pixel; with it (the ``_blend_f0`` name), the boxed one with each channel of the box
    scaled back to the input's mean, which for blur and pixelation moves no level by more than 2."""
    boxed = get_deidentifier(name)
    for batch in (crops, _faces(size=112)):
        expected = boxed.deidentify(batch)
        assert np.array_equal(Blended(boxed, 0.0, colour_match=False).deidentify(batch), expected)
        f0 = get_deidentifier(f"{name}_blend_f0")
        assert f0.name == f"{name}_blend_f0" and f0.feather == 0.0 and f0.colour_match
        size = batch.shape[1]
        box = np.broadcast_to(face_box_mask(size, CANONICAL_ZOOM, 0.0), batch.shape[:3])
        matched = f0.deidentify(batch)
        # the colour match scales the whole crop; the weight keeps only its face box
        assert np.array_equal(matched, np.where(box[..., None] > 0, match_colour(expected, batch, box), batch))
        diff = np.abs(matched.astype(int) - expected.astype(int))
        assert diff.max() <= 2 and diff.mean() < 0.2
        assert np.array_equal(matched[box == 0], batch[box == 0])


def test_feather_0_weight_is_the_region_the_boxed_variant_changes():
    for size in (64, 112, 224, 256):
        white = np.full((1, size, size, 3), 255, np.uint8)
        changed = (BlackBox().deidentify(white)[0] != 255).any(-1)
        assert np.array_equal(face_box_mask(size, CANONICAL_ZOOM, 0.0), changed.astype(np.float32))


@pytest.mark.parametrize("feather", [0.0, 0.13, BLEND_FEATHER, 0.4])
@pytest.mark.parametrize("base", [GaussianBlur(16), Pixelate(12), BlackBox()], ids=lambda b: b.name)
def test_blended_variant_leaves_pixels_outside_the_face_region_untouched(base, feather):
    batch = _faces(n=2, size=128, seed=3)
    deid = Blended(base, feather)
    out = deid.deidentify(batch)
    weight = face_box_mask(128, CANONICAL_ZOOM, feather)
    outside = weight == 0
    assert outside.sum() > 0.5 * outside.size  # the face box is 0.65 of the side: more than half lies outside
    assert np.array_equal(out[:, outside], batch[:, outside])
    assert not np.array_equal(out[:, ~outside], batch[:, ~outside])  # and the face changed
    # the change ramps in with the weight: at the box's edge it is a small part of the boxed change
    boxed = base.deidentify(batch).astype(float)
    x0 = int(np.argmax(weight[64] > 0))
    edge = np.abs(out[:, :, x0].astype(float) - batch[:, :, x0]).mean()
    full = np.abs(boxed[:, :, x0] - batch[:, :, x0]).mean()
    assert edge <= full * (1.0 if feather == 0 else 0.2) + 1.0


def test_the_blend_uses_the_learned_models_face_box_weight():
    """One face-region weight for FaDeNet's paste and the blended baselines (its old import still works)."""
    from deidkit.deidentifiers import fadenet

    assert fadenet.face_box_mask is face_box_mask
    m = face_box_mask(100, 0.6, 0.1)  # box 20..80, a 6-pixel ramp
    assert m[50, 50] == 1.0 and m[50, 19] == 0.0 and 0 < m[50, 20] < m[50, 25] < 1.0


def test_blend_names_resolve_and_unknown_names_list_them():
    from deidkit.deidentifiers import load_deidentifier

    d = get_deidentifier("blur_sigma8_blend")
    assert isinstance(d, Blended) and d.feather == BLEND_FEATHER and d.colour_match
    assert d.base == GaussianBlur(8.0) and d.name == "blur_sigma8_blend"
    d = load_deidentifier("pixelate_16px_blend_f0.13")
    assert d.base == Pixelate(16) and d.feather == 0.13 and d.name == "pixelate_16px_blend_f0.13"
    assert get_deidentifier("blur_sigma3.5_blend_nocm").colour_match is False
    assert get_deidentifier("blackbox_blend").base == BlackBox()
    assert get_deidentifier("noise_sigma32_blend_f0.1").name == "noise_sigma32_blend_f0.1"
    for names in NAIVE_FAMILIES.values():  # every frontier member resolves and keeps its name
        assert [get_deidentifier(n).name for n in names] == list(names)
    assert "blur_sigma8_blend" in valid_choices() and "<baseline>_blend[_f<feather>]" in valid_choices()
    for bad in ("blur_sigma8_blend_f0.6", "original_blend", "nosuch_blend", "blur_sigma8_blended"):
        with pytest.raises(KeyError, match="valid choices: .*blur_sigma8_blend") as err:
            load_deidentifier(bad)
        assert bad in str(err.value) and "\n" not in str(err.value)
    assert unknown_message("x").startswith("unknown de-identifier 'x'")


def test_families_and_variants_of_blended_names():
    assert family_of("blur_sigma8_blend") == "blur_blend" and family_of("pixelate_5px_blend_f0.13") == \
        "pixelate_blend_f0.13"
    assert family_of("blur_sigma7_blend") == "blur_blend"  # a strength outside the family's
    assert family_of("blur_sigma7_blend_f0.1") == "blur_blend_f0.1"
    assert family_of("blur_sigma7") == "blur" and family_of("live_blend") is None
    assert family_of("fadenet_refine") is None
    assert variant_of("blur") == "boxed" and variant_of("pixelate_blend_f0.13") == "blended"
    assert variant_of(None) is None
    assert {"blur", "pixelate", "blur_blend", "pixelate_blend"} <= set(NAIVE_FAMILIES)


# ------------------------------------------------------------------------------------- the better family

FAMILIES = {"blur": ("blur_sigma2", "blur_sigma8"), "blur_blend": ("blur_sigma4_blend", "blur_sigma16_blend")}


def _table(by_identity: bool = False) -> pd.DataFrame:
    # boxed: (0.9, 0.8), (0.7, 0.2); blended: (0.92, 0.6), (0.8, 0.3) -> blended lower above SSIM ~0.77, it does
    # not reach below 0.8
    rows = [("original", 1.0, 1.0), ("blur_sigma2", 0.9, 0.8), ("blur_sigma8", 0.7, 0.2),
            ("blur_sigma4_blend", 0.92, 0.6), ("blur_sigma16_blend", 0.8, 0.3),
            ("learned_high", 0.86, 0.1), ("learned_low", 0.75, 0.1)]
    out = []
    for name, ssim, r1 in rows:
        row = {"deidentifier": name, "recognizer": "r", "ssim": ssim, "rank1_mean": r1, "rank1_std": 0.02,
               "median_true_rank": 1.0, "detection_rate": 1.0}
        if by_identity:  # every identity at the row's Rank-1: each bootstrap sample gives the full-sample value
            row["rank1_by_identity"] = {f"id{i}": r1 for i in range(10)}
        out.append(row)
    return pd.DataFrame(out)


def test_frontier_gap_is_taken_against_the_better_of_boxed_and_blended():
    table = _table(by_identity=True)
    # SSIM 0.86: boxed between (0.9, 0.8) and (0.7, 0.2): 0.8 - 0.2 * 0.6 = 0.68; blended between (0.92, 0.6) and
    # (0.8, 0.3): 0.3 + 0.5 * 0.3 = 0.45 -> the blended family sets the frontier
    fp = F.frontier_at(table, "r", 0.86, FAMILIES)
    assert fp.family == "blur_blend" and fp.rank1 == pytest.approx(0.45)
    assert fp.boxed_rank1 == pytest.approx(0.68) and fp.blended_rank1 == pytest.approx(0.45)
    # SSIM 0.75: below the blended family's strongest member: only the boxed one covers it
    fp = F.frontier_at(table, "r", 0.75, FAMILIES)
    assert fp.family == "blur" and fp.rank1 == pytest.approx(0.35) and math.isnan(fp.blended_rank1)

    recs = {r["deidentifier"]: r for r in F.frontier_records(table, "p", "crop", 100, FAMILIES, n_boot=50)}
    high, low = recs["learned_high"], recs["learned_low"]
    assert high["frontier_family"] == "blur_blend" and high["frontier_variant"] == "blended"
    assert high["frontier_rank1"] == pytest.approx(0.45)
    assert high["frontier_rank1_boxed"] == pytest.approx(0.68)
    assert high["frontier_rank1_blended"] == pytest.approx(0.45)
    assert high["margin_sd"] == pytest.approx((0.45 - 0.1) / math.hypot(0.02, 0.02))
    assert high["gap_ci"] == pytest.approx([0.35, 0.35]) and high["beyond_frontier"]
    assert low["frontier_variant"] == "boxed" and low["frontier_rank1"] == pytest.approx(0.35)
    assert math.isnan(low["frontier_rank1_blended"]) and low["gap_ci"] == pytest.approx([0.25, 0.25])
    # naive members: each family's own members lie on its curve or above the other's
    assert recs["blur_sigma16_blend"]["naive_family"] == "blur_blend"
    assert recs["blur_sigma16_blend"]["margin_sd"] == pytest.approx(0.0)
    assert recs["blur_sigma2"]["frontier_variant"] == "blended"  # at 0.9 the blend is lower: 0.55 < 0.8
    assert recs["blur_sigma2"]["margin_sd"] < 0


def test_gap_interval_in_each_sample_is_against_that_samples_better_family():
    """The bootstrap frontier is the minimum over families in each sample: a model whose Rank-1 lies between the
    two families' values is beyond the boxed frontier only, and its gap interval (against the better) holds 0."""
    rng = np.random.default_rng(1)
    ids = [f"id{i:02d}" for i in range(30)]

    def row(name, ssim, level):
        by_id = {n: float(np.clip(level + rng.normal(0, 0.1), 0, 1)) for n in ids}
        return {"deidentifier": name, "recognizer": "r", "ssim": ssim, "rank1_mean": float(np.mean(list(by_id.values()))),
                "rank1_std": 0.02, "median_true_rank": 1.0, "detection_rate": 1.0, "rank1_by_identity": by_id}

    table = pd.DataFrame([row("original", 1.0, 0.95), row("blur_sigma2", 0.9, 0.8), row("blur_sigma8", 0.7, 0.2),
                          row("blur_sigma4_blend", 0.92, 0.6), row("blur_sigma16_blend", 0.8, 0.3),
                          row("between", 0.86, 0.45)])
    rec = {r["deidentifier"]: r for r in F.frontier_records(table, "p", "crop", 4, FAMILIES, n_boot=400)}["between"]
    assert rec["frontier_variant"] == "blended"
    assert rec["frontier_rank1_boxed"] - rec["rank1"] > 0.15  # well beyond the boxed frontier alone
    assert rec["gap_ci"][0] < 0 < rec["gap_ci"][1] and not rec["beyond_frontier"]


def test_frontier_figure_draws_boxed_dashed_and_blended_solid():
    import matplotlib

    matplotlib.use("Agg")
    from deidkit.plots import frontier_figure

    fig = frontier_figure({"crop": _table()}, ["r"], families=FAMILIES)
    lines = {ln.get_label(): ln for ln in fig.axes[0].get_lines()}
    assert lines["blur (naive, boxed)"].get_linestyle() == "--"
    assert lines["blur_blend (naive, blended)"].get_linestyle() == "-"
    assert lines["blur_blend (naive, blended)"].get_color() == lines["blur (naive, boxed)"].get_color()
    # the blended family's line passes through its members (and the original)
    assert sorted(lines["blur_blend (naive, blended)"].get_xdata()) == [0.8, 0.92, 1.0]
