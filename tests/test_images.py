import numpy as np
import pytest
from PIL import Image

from deidkit.data.images import ImageError, load_image, save_image


def _face_like(h=64, w=64):
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (h, w, 3), dtype=np.uint8)


def test_rgb_roundtrip(tmp_path):
    img = _face_like()
    save_image(tmp_path / "a.png", img)
    assert np.array_equal(load_image(tmp_path / "a.png"), img)
    assert not list(tmp_path.glob(".*tmp*")), "atomic write left a temp file"


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "P", "I;16", "LA"])
def test_modes_are_converted_to_rgb(tmp_path, mode):
    base = Image.fromarray(_face_like())
    if mode == "I;16":
        img = Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 7).astype(np.uint16))
        path = tmp_path / "x.png"
    else:
        img = base.convert(mode)
        path = tmp_path / ("x.jpg" if mode == "CMYK" else "x.png")
    img.save(path)
    arr = load_image(path)
    assert arr.dtype == np.uint8 and arr.shape == (64, 64, 3)


def test_rgba_transparent_pixels_become_black(tmp_path):
    rgba = np.zeros((40, 40, 4), dtype=np.uint8)
    rgba[..., 0] = 255  # red but fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    assert load_image(tmp_path / "t.png").max() == 0


def test_truncated_jpeg_names_file(tmp_path, lfw_dir):
    src = next((lfw_dir / "images" / "Aaron_Eckhart").glob("*.jpg")).read_bytes()
    bad = tmp_path / "truncated.jpg"
    bad.write_bytes(src[: len(src) // 2])
    with pytest.raises(ImageError, match="truncated.jpg"):
        load_image(bad)


@pytest.mark.parametrize("content, reason", [(b"", "empty"), (b"not an image at all" * 10, "not a recognised")])
def test_corrupt_files(tmp_path, content, reason):
    p = tmp_path / "bad.jpg"
    p.write_bytes(content)
    with pytest.raises(ImageError, match=reason) as e:
        load_image(p)
    assert "bad.jpg" in str(e.value)


def test_missing_and_tiny(tmp_path):
    with pytest.raises(ImageError, match="no such image"):
        load_image(tmp_path / "nope.png")
    Image.fromarray(_face_like(10, 12)).save(tmp_path / "tiny.png")
    with pytest.raises(ImageError, match="12x10"):
        load_image(tmp_path / "tiny.png")
