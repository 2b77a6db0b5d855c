"""The realism measures on hand-made cases (real LFW crops): an unchanged copy scores 1 and no colour shift, a
blurred copy far below 1, pixelation's blocks above 1, a colour cast a Delta E of its size; the two-sample probe is
near chance on two samples of one population and near certain on blurred against original crops."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from deidkit.baselines import GaussianBlur, Identity, Pixelate
from deidkit.eval.realism import (
    TextureFeatures,
    c2st_accuracy,
    colour_difference,
    crop_level,
    grid_excess,
    inner_face_box,
    photo_face_box,
    sharpness,
)


def test_sharpness_and_colour_on_hand_made_cases(crops_small):
    crops = crops_small[:12]
    same = crop_level(Identity(), crops)
    assert np.allclose(same.sharpness, 1.0) and np.allclose(same.colour_shift, 0.0)
    blurred = crop_level(GaussianBlur(4.0), crops)
    assert np.median(blurred.sharpness) < 0.1
    assert np.median(blurred.colour_shift) < 1.0  # blur keeps the mean colour
    blocks = crop_level(Pixelate(8), crops)
    assert np.median(blocks.sharpness) > 1.0  # edges added, not detail
    x0, y0, x1, y1 = inner_face_box(crops.shape[1])
    face = crops[0, y0:y1, x0:x1]
    assert sharpness(face, face) == pytest.approx(1.0)
    # a uniform cast: Delta E grows with it and reads near the Lab distance of the shift
    lab = cv2.cvtColor(face.astype(np.float32) / 255, cv2.COLOR_RGB2Lab)
    lab[..., 1] += 6.0
    cast = np.clip(cv2.cvtColor(lab, cv2.COLOR_Lab2RGB) * 255 + 0.5, 0, 255).astype(np.uint8)
    assert 4.5 < colour_difference(face, cast) < 7.0


def test_grid_excess_sees_stripes_not_blur(crops_small):
    faces = np.stack([cv2.resize(c, (128, 128), interpolation=cv2.INTER_AREA) for c in crops_small[:16]])
    assert grid_excess(faces, faces) == pytest.approx(0.0, abs=1e-6)
    blurred = np.stack([cv2.GaussianBlur(f, (0, 0), 1.5) for f in faces])
    assert grid_excess(faces, blurred) < 3.0  # fine detail lost everywhere alike: no grid
    # vertical stripes of a 4-pixel period, 6 grey levels deep: the failure the measure is for
    stripes = np.where((np.arange(128) // 2) % 2 == 0, 3.0, -3.0)[None, None, :, None]
    striped = np.clip(faces + stripes, 0, 255).astype(np.uint8)
    assert grid_excess(faces, striped) > 10.0
    assert grid_excess(faces, striped, period=8) < 3.0  # only the grid's own period stands out
    with pytest.raises(ValueError, match="square images of one size"):
        grid_excess(faces, faces[:, :64])


def test_photo_face_box_maps_the_canonical_box_back():
    # a pure scaling by 2 and a shift: the canonical box at half its size, shifted
    m = np.array([[2.0, 0.0, -20.0], [0.0, 2.0, -40.0]])
    x0, y0, x1, y1 = inner_face_box(224)
    b = photo_face_box(m, (400, 400, 3))
    assert b == pytest.approx(((x0 + 20) / 2, (y0 + 40) / 2, (x1 + 20) / 2, (y1 + 40) / 2), abs=1)


@pytest.fixture(scope="module")
def texture():
    return TextureFeatures()


def test_c2st_is_near_chance_for_one_population_and_near_certain_for_blur(crops_small, texture):
    rng = np.random.default_rng(0)
    order = rng.permutation(len(crops_small))
    half = len(order) // 2
    a, b = crops_small[order[:half]], crops_small[order[half:]]
    fa, fb = texture(a), texture(b)
    # two samples of the same population, train on one half of each, test on the other
    q, r = len(fa) // 2, len(fb) // 2
    same = c2st_accuracy(fa[:q], fb[:r], fa[q:], fb[r:])
    assert 0.25 <= same <= 0.75
    identical = c2st_accuracy(fa[:q], fa[:q], fa[q:], fa[q:])
    assert identical == pytest.approx(0.5)
    blur = GaussianBlur(4.0).deidentify
    told = c2st_accuracy(fa[:q], texture(blur(a[:q])), fb, texture(blur(b)))
    assert told > 0.9


def test_change_correlation_tells_a_fixed_pattern_from_a_face_dependent_change(crops_small, protocol_small):
    from deidkit.eval.realism import change_correlation

    crops = crops_small
    labels = protocol_small["identity"].to_numpy()
    rng = np.random.default_rng(0)
    pattern = rng.normal(0, 12, crops.shape[1:]).astype(np.float32)
    fixed = np.clip(crops + pattern, 0, 255).astype(np.uint8)
    assert change_correlation(crops, fixed, labels) > 0.9
    blurred = GaussianBlur(4.0).deidentify(crops)  # each face loses its own detail
    assert change_correlation(crops, blurred, labels) < 0.5
    assert np.isnan(change_correlation(crops, crops.copy(), labels))


def test_realism_command_writes_records_and_a_face_grid(tmp_path, capsys):
    """``deidkit realism`` end to end on two test identities: a record per (level, de-identifier), the original
    through the pipeline as sharp as the photo, blur far softer, and a grid of 256-pixel faces."""
    import json

    from deidkit.cli import main
    from deidkit.data.images import load_image

    (tmp_path / "metrics").mkdir()
    rc = main(["realism", "blur_sigma8", "original", "--no-naive", "--identities", "2", "--train-images", "8",
               "--grid", "2", "--name", "realism_test", "--out", str(tmp_path)])
    assert rc == 0
    recs = {(r["level"], r["deidentifier"]): r for r in json.loads((tmp_path / "metrics" / "realism_test.json").read_text())}
    assert set(recs) == {(lv, n) for lv in ("crop", "image") for n in ("blur_sigma8", "original")}
    assert recs["image", "original"]["sharpness"] >= 0.97  # the lossless round trip
    assert recs["image", "blur_sigma8"]["sharpness"] < 0.2 and recs["crop", "blur_sigma8"]["n"] == 16
    grid = load_image(tmp_path / "figures" / "realism_test_faces.png")
    assert grid.shape[1] == 2 * 256 and grid.shape[0] == 2 * (256 + 22)  # the original above blur, 256 px a face
