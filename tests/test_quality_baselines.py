import numpy as np
import pytest

from deidkit.baselines import (
    AdditiveNoise,
    BlackBox,
    GaussianBlur,
    Identity,
    Pixelate,
    baseline_deidentifiers,
    get_deidentifier,
)
from deidkit.data.alignment import YuNetDetector
from deidkit.eval.quality import (
    detection_rate,
    face_box,
    pixel_descriptor_distances,
    psnr,
    ssim,
    warp_stretch,
)


def test_ssim_psnr_identity(crops_small):
    c = crops_small[:4]
    assert np.allclose(ssim(c, c), 1.0) and np.allclose(psnr(c, c), 100.0)
    blurred = GaussianBlur(8).deidentify(c)
    assert (ssim(c, blurred) < 0.95).all() and (ssim(c, blurred, "face") < ssim(c, blurred)).all()
    with pytest.raises(ValueError, match="equal shape"):
        ssim(c, c[:2])


@pytest.mark.parametrize("deid", [*baseline_deidentifiers(), Identity()], ids=lambda d: d.name)
def test_baselines_keep_shape_and_context(crops_small, deid):
    c = crops_small[:3]
    out = deid.deidentify(c)
    assert out.shape == c.shape and out.dtype == np.uint8
    x0, y0, x1, y1 = face_box(c.shape[1])
    outside = np.ones(c.shape[1:3], bool)
    outside[y0:y1, x0:x1] = False
    assert np.array_equal(out[:, outside], c[:, outside])  # only the face region changes
    assert get_deidentifier(deid.name).name == deid.name


def test_stronger_means_lower_ssim(crops_small):
    c = crops_small[:4]
    for family in ([GaussianBlur(s) for s in (2, 8, 16)], [Pixelate(b) for b in (4, 16, 24)],
                   [AdditiveNoise(s) for s in (16, 64, 128)]):
        values = [ssim(c, d.deidentify(c)).mean() for d in family]
        assert values == sorted(values, reverse=True), values


def test_noise_is_seeded(crops_small):
    c = crops_small[:2]
    assert np.array_equal(AdditiveNoise(32).deidentify(c), AdditiveNoise(32).deidentify(c))
    assert not np.array_equal(AdditiveNoise(32, seed=1).deidentify(c), AdditiveNoise(32).deidentify(c))


def test_bad_batch_and_name():
    with pytest.raises(ValueError, match="uint8"):
        BlackBox().deidentify(np.zeros((1, 8, 8, 3), np.float32))
    with pytest.raises(KeyError, match="unknown de-identifier"):
        get_deidentifier("swirl")
    assert get_deidentifier("blur_sigma3").sigma == 3.0


def test_detection_rate_drops_under_black_box(crops_small):
    det = YuNetDetector()
    c = crops_small[:8]
    assert detection_rate(c, det) == 1.0
    assert detection_rate(BlackBox().deidentify(c), det) < 0.5


class _MeanColour:
    """A stand-in recogniser whose descriptor is the normalised mean colour of the face box."""

    def embed(self, batch: np.ndarray) -> np.ndarray:
        x0, y0, x1, y1 = face_box(batch.shape[1])
        v = batch[:, y0:y1, x0:x1].reshape(len(batch), -1, 3).astype(np.float64).mean(1) + 1.0
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_pixel_descriptor_distances(crops_small):
    rec = _MeanColour()
    same = pixel_descriptor_distances(crops_small, crops_small, rec)
    assert list(same.columns) == ["pixel_rmse", "descriptor_distance"] and len(same) == len(crops_small)
    assert np.allclose(same.to_numpy(), 0.0, atol=1e-9)
    # A colour cast moves both distances; a blur keeps the mean colour (descriptor) almost still.
    cast = crops_small.copy()
    cast[..., 2] = 0  # no blue
    d_cast = pixel_descriptor_distances(crops_small, cast, rec)
    d_blur = pixel_descriptor_distances(crops_small, get_deidentifier("blur_sigma4").deidentify(crops_small), rec)
    assert (d_cast["pixel_rmse"] > 10).all() and (d_cast["descriptor_distance"] > 1e-3).all()
    assert (d_blur["pixel_rmse"] > 1).all()
    assert d_blur["descriptor_distance"].mean() < d_cast["descriptor_distance"].mean() / 10
    # The face region ignores changes outside the face box.
    frame = crops_small.copy()
    frame[:, :3] = 0
    assert np.allclose(pixel_descriptor_distances(crops_small, frame, rec)["pixel_rmse"], 0.0)
    with pytest.raises(ValueError, match="equal shape"):
        pixel_descriptor_distances(crops_small, crops_small[:1], rec)


def test_colour_shift_sees_casts_and_bands_not_blur_or_brightness(crops_small):
    from deidkit.eval.quality import colour_shift

    c = crops_small[:4]
    assert np.array_equal(colour_shift(c, c), np.zeros(4))
    blurred = colour_shift(c, get_deidentifier("blur_sigma8").deidentify(c))
    assert (blurred < 5).all()  # blurring keeps the local colour
    brighter = np.clip(c.astype(np.int16) + 30, 0, 255).astype(np.uint8)
    assert colour_shift(c, brighter).mean() < 1.5  # a grey change is not a colour change (up to clipping)
    banded = c.astype(np.float32).copy()
    banded[:, 80:110, :, 0] += 60  # a red band over the eyes
    banded[:, 80:110, :, 2] -= 60
    band = colour_shift(c, np.clip(banded, 0, 255).astype(np.uint8))
    assert (band > 3 * blurred).all()
    with pytest.raises(ValueError):
        colour_shift(c, c[:2])


def test_warp_stretch_is_the_largest_principal_stretch_and_ignores_rotation():
    """A uniform 5 % widening reads 0.05, a 10 % squeeze 0.1, a rotation and no warp 0; a local shear is found
    wherever it is."""
    ys, xs = np.mgrid[0:32, 0:32].astype(float)
    zero = np.zeros_like(xs)
    theta = 0.2
    rotation = np.stack([np.cos(theta) * xs - np.sin(theta) * ys - xs, np.sin(theta) * xs + np.cos(theta) * ys - ys])
    local = np.zeros((2, 32, 32))
    local[0] = np.clip(ys - 10, 0, 3)  # rows 10-13 slide sideways by 1 px per row (a shear of 1), then all by 3
    fields = np.stack([np.stack([0.05 * xs, zero]), np.stack([zero, -0.1 * ys]), rotation, np.zeros((2, 32, 32)), local])
    got = warp_stretch(fields)
    np.testing.assert_allclose(got[:4], [0.05, 0.1, 0.0, 0.0], atol=1e-9)
    assert abs(got[4] - 0.618) < 0.001  # shear 1: singular values 1.618 and 0.618
    with pytest.raises(ValueError, match="displacement field"):
        warp_stretch(np.zeros((2, 3, 8, 8)))
