"""The photo-folder speed benchmark (deidkit benchmark-photos) on a small folder: real deidkit image runs."""

from __future__ import annotations

import pytest

from deidkit.pipeline.photo_speed import SMALL, benchmark_photos, deface_path


def test_benchmark_photos_records(tmp_path):
    records = benchmark_photos(["blur_sigma8"], photos=SMALL + 2, with_deface=False)
    (rec,) = records
    assert rec["kind"] == "speed" and rec["name"] == "photos_blur_sigma8_cpu"
    assert rec["seconds_all"] > 0 and rec["seconds_small"] > 0
    assert rec["value"] == pytest.approx(1.0 / rec["marginal_s"])
    assert rec["vs_deface"] is None and rec["photos"] == [SMALL, SMALL + 2]


def test_benchmark_photos_refuses_too_few(tmp_path):
    with pytest.raises(ValueError, match="photos must exceed"):
        benchmark_photos(["blur_sigma8"], photos=SMALL)


@pytest.mark.skipif(deface_path() is None, reason="deface (a benchmark-only dependency) is not installed")
def test_benchmark_photos_beside_deface():
    records = {r["name"]: r for r in benchmark_photos(["blur_sigma8"], photos=SMALL + 2)}
    assert records["photos_deface_cpu"]["value"] > 0
    kit = records["photos_blur_sigma8_cpu"]
    assert kit["vs_deface"] == pytest.approx(kit["value"] / records["photos_deface_cpu"]["value"])
