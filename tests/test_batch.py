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
    first = rows
    # a rerun does nothing that is already done, and keeps what the first run recorded for those files
    assert main(["image", str(tree), str(out), "--method", "blur_sigma8"]) == 1
    # every file but broken.jpg (no output: done again) is skipped
    assert f"{len(faces) + 1} skipped (already current" in capsys.readouterr().out
    rows = _summary(out / "deidkit-summary.csv")
    assert all(rows[Path(f).name] == first[Path(f).name] for f in [*faces, "plain.png"])
    assert rows["broken.jpg"]["run"] != first["broken.jpg"]["run"]
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.jpg")} == stamps
    # an input newer than its output is done again
    os.utime(tree / faces[0], None)
    again = run_batch("image", [tree], out, method="blur_sigma8", progress=False)
    redone = _summary(out / "deidkit-summary.csv")[Path(faces[0]).name]
    assert redone["status"] == "done" and redone["run"] == again.run != first[Path(faces[0]).name]["run"]


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
    resumed = max(r["run"] for r in rows.values())  # run ids are start times
    assert {n for n, r in rows.items() if r["run"] != resumed} == set(first)
    # the killed run's recorded outcomes are kept; only a file killed between its output and its row has none
    kept = {n: rows[n] for n in first if rows[n]["status"] != "skipped"}
    assert len(kept) >= len(first) - 1 and all(int(r["faces"]) >= 1 and r["run"] for r in kept.values())
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.jpg") if p.name in first} == first
    for p in out.glob("*.jpg"):
        assert load_image(p).shape == load_image(src / p.name).shape  # complete, readable
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary file left behind


def _folder_with_photos(lfw_dir: Path, dest: Path, n: int) -> list[Path]:
    dest.mkdir(parents=True)
    for p in _photos(lfw_dir, n):
        (dest / p.name).write_bytes(p.read_bytes())
    return sorted(dest.iterdir())


def test_a_photo_batch_loads_the_landmark_predictor_and_the_detector_once(tmp_path, lfw_dir, monkeypatch):
    """One face swapper for the whole run, reset between photos: a photo without a face after photos with one
    stays without one (no face carried over from the photo before), and the outputs are those of one swapper per
    photo."""
    import deidkit.pipeline.swap as swap
    from deidkit.baselines import get_deidentifier
    from deidkit.pipeline.faces import Dlib68
    from deidkit.pipeline.video import deidentify_image

    src = tmp_path / "in"
    photos = _folder_with_photos(lfw_dir, src, 3)
    rng = np.random.default_rng(0)
    plain = np.full((200, 240, 3), 128, np.uint8) + rng.integers(0, 3, (200, 240, 3), dtype=np.uint8)
    save_image(src / "z_plain.png", plain)  # sorts after the photos
    loads = {"dlib68": 0, "detector": 0}
    dlib_init, make_detector = Dlib68.__init__, swap.make_face_detector

    def counted_dlib_init(self):
        loads["dlib68"] += 1
        dlib_init(self)

    def counted_make_detector(*args, **kwargs):
        loads["detector"] += 1
        return make_detector(*args, **kwargs)

    monkeypatch.setattr(Dlib68, "__init__", counted_dlib_init)
    monkeypatch.setattr(swap, "make_face_detector", counted_make_detector)
    rows = run_batch("image", [src], tmp_path / "out", method="blur_sigma8", progress=False)
    assert loads == {"dlib68": 1, "detector": 1}
    assert [r.status for r in rows] == ["done"] * len(photos) + ["no_face"] and rows[-1].faces == 0
    assert np.array_equal(load_image(tmp_path / "out" / "z_plain.png"), plain)
    for p, r in zip(photos, rows):  # the same as a swapper of its own
        alone = tmp_path / f"alone_{p.name}"
        rep = deidentify_image(p, alone, get_deidentifier("blur_sigma8"))
        assert rep.faces == r.faces and np.array_equal(load_image(alone), load_image(r.output))


class _Crash(Exception):
    pass


def _crash_after(process_one, n: int):
    """``_process_one`` that raises after ``n`` files (a crash of the whole batch, not a failed file)."""
    calls = []

    def crashing(*args, **kwargs):
        if len(calls) == n:
            raise _Crash("the machine went down")
        calls.append(args)
        return process_one(*args, **kwargs)

    return crashing


def test_a_resumed_batch_keeps_the_rows_of_the_files_done_before_the_crash(tmp_path, lfw_dir, monkeypatch,
                                                                          capsys):
    import deidkit.pipeline.batch as batch
    from deidkit.pipeline.batch import read_summary, summarise

    src, out = tmp_path / "in", tmp_path / "out"
    photos = _folder_with_photos(lfw_dir, src, 6)
    process_one, n_before = batch._process_one, 3
    monkeypatch.setattr(batch, "_process_one", _crash_after(process_one, n_before))
    with pytest.raises(_Crash):
        run_batch("image", [src], out, method="blur_sigma8", progress=False)
    before = _summary(out / "deidkit-summary.csv")
    assert len(before) == n_before and {r["status"] for r in before.values()} == {"done"}
    assert all(int(r["faces"]) >= 1 and float(r["seconds"]) > 0 and r["run"] for r in before.values())

    monkeypatch.setattr(batch, "_process_one", process_one)
    rows = run_batch("image", [src], out, method="blur_sigma8", progress=True)
    assert (f"{n_before} of {len(photos)} files already current, skipped ({n_before} with their recorded outcome "
            "kept") in capsys.readouterr().err
    after = _summary(out / "deidkit-summary.csv")
    assert sorted(after) == sorted(p.name for p in photos)
    assert {n: after[n] for n in before} == before  # faces, seconds, run: as the crashed run recorded them
    assert sorted(Path(r.input).name for r in rows.skipped) == sorted(before)
    assert {r["run"] for n, r in after.items() if n not in before} == {rows.run}
    assert rows.run not in {r["run"] for r in before.values()}
    assert f"{n_before} skipped (already current; outcomes kept: {n_before} done)" in summarise(rows)
    assert sum(r.faces for r in rows) == sum(int(r["faces"]) for r in after.values())
    assert read_summary(out / "deidkit-summary.csv") == list(rows)

    # files being redone keep their recorded rows until their new ones replace them: a crash loses none
    first_redo, second_redo = sorted(before)[:2]
    for name in (first_redo, second_redo):
        os.utime(src / name, None)
    monkeypatch.setattr(batch, "_process_one", _crash_after(process_one, 1))
    with pytest.raises(_Crash):
        run_batch("image", [src], out, method="blur_sigma8", progress=False)
    crashed = _summary(out / "deidkit-summary.csv")
    assert crashed[first_redo]["run"] not in {after[first_redo]["run"], ""}
    assert {n: r for n, r in crashed.items() if n != first_redo} == {n: r for n, r in after.items()
                                                                     if n != first_redo}

    # a summary that cannot be read: a warning, the batch runs, the outputs are skipped without a recorded outcome
    monkeypatch.setattr(batch, "_process_one", process_one)
    (out / "deidkit-summary.csv").write_bytes(b"\xff\xfe not a summary \x00")
    rows = run_batch("image", [src], out, method="blur_sigma8", progress=False)
    assert "earlier outcomes are not recovered" in capsys.readouterr().err
    statuses = {Path(r.input).name: r.status for r in rows}
    assert statuses.pop(second_redo) == "done" and set(statuses.values()) == {"skipped"}
    assert len(rows.skipped) == len(photos) - 1


def test_an_unknown_method_lists_every_choice_on_one_line(tmp_path, capsys):
    from deidkit.baselines import Identity, baseline_deidentifiers, get_deidentifier
    from deidkit.deidentifiers import load_deidentifier
    from deidkit.pretrained import shipped_models

    names = [*shipped_models(), *(d.name for d in [Identity(), *baseline_deidentifiers()])]
    assert shipped_models(), "the kit ships models"
    messages = []
    for call, error in [(lambda: load_deidentifier("nosuch"), KeyError),
                        (lambda: get_deidentifier("nosuch"), KeyError),
                        (lambda: load_deidentifier("nosuch", profile="quick"), KeyError),
                        (lambda: load_deidentifier("live_nosuch"), ValueError),
                        (lambda: load_deidentifier("fadenet_nosuch"), ValueError)]:
        with pytest.raises(error) as info:
            call()
        messages.append(str(info.value.args[0]))
    assert main(["image", str(tmp_path), str(tmp_path / "o"), "--method", "nosuch"]) == 2
    messages.append(capsys.readouterr().err.strip())
    for m in messages:
        assert "\n" not in m and all(n in m for n in names), m


def test_auto_jobs_uses_the_cores_only_where_it_pays(monkeypatch):
    from deidkit.pipeline import batch

    monkeypatch.setattr(batch.os, "cpu_count", lambda: 4)
    assert batch.auto_jobs("image", 5) == 1  # loading models in a second process costs more than it saves
    assert batch.auto_jobs("image", 2 * batch.PHOTOS_PER_WORKER) == 2
    assert batch.auto_jobs("image", 100 * batch.PHOTOS_PER_WORKER) == 4
    assert batch.auto_jobs("video", 100) == 1
