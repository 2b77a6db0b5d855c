"""Batches of photos (``deidkit image IN... OUT``): mirrored outputs, a summary, resume after a kill, strict mode,
and one-line errors for bad arguments."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from deidkit.cli import main
from deidkit.data.images import load_image, save_image
from deidkit.pipeline.batch import collect_inputs, frame_ranges, run_batch


def _photos(lfw_dir: Path, n: int) -> list[Path]:
    folder = lfw_dir / "images" / "George_W_Bush"
    photos = sorted(folder.glob("*.jpg"))[:n]
    assert len(photos) == n, f"{folder}: fewer than {n} photos"
    return photos


@pytest.fixture()
def tree(tmp_path, lfw_dir) -> Path:
    """in/a/*.jpg (3 faces), in/b/c/*.jpg (2 faces), in/b/plain.png (no face), in/b/broken.jpg (corrupt)."""
    root = tmp_path / "in"
    photos = _photos(lfw_dir, 5)
    for i, p in enumerate(photos):
        dest = root / ("a" if i < 3 else "b/c") / p.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(p.read_bytes())
    rng = np.random.default_rng(0)
    save_image(root / "b" / "plain.png", np.full((200, 240, 3), 128, np.uint8) + rng.integers(0, 3, (200, 240, 3),
                                                                                                 dtype=np.uint8))
    (root / "b" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    (root / "b" / "notes.txt").write_text("not an image")
    return root


def _summary(path: Path) -> dict[str, dict[str, str]]:
    with open(path) as f:
        return {Path(r["input"]).name: r for r in csv.DictReader(f)}


def test_batch_mirrors_the_tree_reports_every_file_and_resumes(tree, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["image", str(tree), str(out), "--method", "blur_sigma8"]) == 1  # one file failed
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    faces = sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*.jpg") if p.name != "broken.jpg")
    assert len(faces) == 5 and written == sorted([*faces, "b/plain.png", "deidkit-summary.csv"])
    rows = _summary(out / "deidkit-summary.csv")
    assert rows["broken.jpg"]["status"] == "failed" and "broken.jpg" in rows["broken.jpg"]["error"]
    assert rows["plain.png"]["status"] == "no_face" and rows["plain.png"]["frames_without_face"] == "1"
    assert {rows[Path(f).name]["status"] for f in faces} == {"done"}
    assert all(int(rows[Path(f).name]["faces"]) >= 1 for f in faces)
    for f in faces:  # the face region changed, the photo kept its size
        a, b = load_image(tree / f), load_image(out / f)
        assert a.shape == b.shape and np.abs(a.astype(int) - b).mean() > 1
    err = capsys.readouterr().err
    assert "broken.jpg" in err and "plain.png" in err
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.jpg")}
    # a rerun does nothing that is already done
    assert main(["image", str(tree), str(out), "--method", "blur_sigma8"]) == 1
    rows = _summary(out / "deidkit-summary.csv")
    assert {rows[Path(f).name]["status"] for f in faces} == {"skipped"}
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.jpg")} == stamps
    # an input newer than its output is done again
    os.utime(tree / faces[0], None)
    run_batch("image", [tree], out, method="blur_sigma8", progress=False)
    assert _summary(out / "deidkit-summary.csv")[Path(faces[0]).name]["status"] == "done"


def test_strict_refuses_outputs_without_a_deidentified_face(tree, tmp_path):
    out = tmp_path / "strict"
    assert main(["image", str(tree / "b" / "plain.png"), str(tree / "a"), str(out), "--method", "blur_sigma8",
                 "--strict"]) == 1
    assert not (out / "plain.png").exists()
    rows = _summary(out / "deidkit-summary.csv")
    assert rows["plain.png"]["status"] == "refused" and len(rows) == 4
    single = tmp_path / "single.png"
    assert main(["image", str(tree / "b" / "plain.png"), str(single), "--method", "blur_sigma8", "--strict"]) == 1
    assert not single.exists()


def test_globs_and_files_and_name_clashes(tree, tmp_path):
    found = collect_inputs([str(tree / "**" / "*.jpg")], "image")
    assert sorted(r.as_posix() for _, r in found) == sorted(p.relative_to(tree).as_posix()
                                                           for p in tree.rglob("*.jpg"))
    one = next((tree / "a").glob("*.jpg"))
    clash = tmp_path / "other" / one.name
    clash.parent.mkdir()
    clash.write_bytes(one.read_bytes())
    with pytest.raises(ValueError, match="would both be written"):
        collect_inputs([one, clash], "image")
    with pytest.raises(FileNotFoundError, match="matches no image"):
        collect_inputs([str(tree / "*.gif")], "image")
    assert frame_ranges([0, 1, 2, 7, 9, 10]) == "0-2,7,9-10" and frame_ranges([]) == ""


@pytest.mark.parametrize("case", ["unknown_method", "bad_suffix", "same_path", "unwritable", "file_as_folder",
                                  "missing_input"])
def test_bad_arguments_are_one_line_errors_and_nothing_is_written(case, tree, tmp_path, capsys):
    photo = next((tree / "a").glob("*.jpg"))
    args = {
        "unknown_method": [str(tree / "a"), str(tmp_path / "o"), "--method", "nosuch"],
        "bad_suffix": [str(photo), str(tmp_path / "o.txt"), "--method", "blur_sigma8"],
        "same_path": [str(photo), str(photo), "--method", "blur_sigma8"],
        "unwritable": [str(tree / "a"), "/proc/deidkit-out", "--method", "blur_sigma8"],
        "file_as_folder": [str(tree / "a"), str(photo), "--method", "blur_sigma8"],
        "missing_input": [str(tmp_path / "nothing"), str(tmp_path / "o"), "--method", "blur_sigma8"],
    }[case]
    before = photo.read_bytes()
    assert main(["image", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("deidkit image: error:") and "\n" not in err
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.txt").exists()
    assert photo.read_bytes() == before


def test_a_killed_batch_resumes_without_redoing_or_losing_files(tmp_path, lfw_dir):
    """Kill the batch (SIGKILL) after a few outputs, rerun: every output complete, none written twice."""
    src = tmp_path / "in"
    src.mkdir()
    for p in _photos(lfw_dir, 24):
        (src / p.name).write_bytes(p.read_bytes())
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "deidkit", "image", str(src), str(out), "--method", "blur_sigma8"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.glob("*.jpg"))) < 4:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = {p.name: p.stat().st_mtime_ns for p in out.glob("*.jpg")}
    assert 4 <= len(first) < 24, "the batch must be killed part-way"
    assert subprocess.run(cmd, capture_output=True, timeout=300).returncode == 0
    rows = _summary(out / "deidkit-summary.csv")
    assert len(rows) == 24 and {r["status"] for r in rows.values()} <= {"done", "skipped"}
    assert {n for n, r in rows.items() if r["status"] == "skipped"} == set(first)
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.jpg") if p.name in first} == first
    for p in out.glob("*.jpg"):
        assert load_image(p).shape == load_image(src / p.name).shape  # complete, readable
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary file left behind
