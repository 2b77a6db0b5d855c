"""The ``deidkit`` command: bad input gives one line naming the file, exit status 2, no traceback."""

from __future__ import annotations

from deidkit.cli import main


def test_missing_video_is_one_clear_line(tmp_path, capsys):
    missing = tmp_path / "nope.mp4"
    assert main(["video", str(missing), str(tmp_path / "out.mp4"), "--method", "blur_sigma8"]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out.mp4").exists()


def test_corrupt_image_is_named(tmp_path, capsys):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    assert main(["image", str(bad), str(tmp_path / "out.png"), "--method", "blur_sigma8"]) == 2
    assert str(bad) in capsys.readouterr().err


def test_data_locate_finds_shared_lfw(lfw_dir, capsys):
    assert main(["data", "locate"]) == 0
    assert str(lfw_dir) in capsys.readouterr().out
