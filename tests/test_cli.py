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


def test_unknown_method_is_one_line(tmp_path, capsys):
    from deidkit.assets import asset_path

    ref = asset_path("hamilton-clip").parent / "reference" / "lin-manuel-miranda.png"
    assert main(["image", str(ref), str(tmp_path / "out.png"), "--method", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert "nosuch" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out.png").exists()


def test_shipped_models_by_name_on_a_real_photo(tmp_path, capsys):
    """``--method live`` / ``--method fadenet`` use the weights shipped in the package: no training, no cache."""
    import numpy as np

    from deidkit.assets import asset_path
    from deidkit.data.images import load_image

    ref = asset_path("hamilton-clip").parent / "reference" / "lin-manuel-miranda.png"
    for method in ("live", "fadenet"):
        out = tmp_path / f"{method}.png"
        assert main(["image", str(ref), str(out), "--method", method]) == 0
        assert "1 face(s) de-identified with " + method in capsys.readouterr().out
        a, b = load_image(ref), load_image(out)
        assert a.shape == b.shape and not np.array_equal(a, b)


def test_train_overrides_are_parsed_and_checked():
    import pytest

    from deidkit.cli import _parse_overrides

    assert _parse_overrides(["lam=0.1", "epochs=2", "run_name=x", "ce_cap=null"]) == {
        "lam": 0.1, "epochs": 2, "run_name": "x", "ce_cap": None}
    with pytest.raises(ValueError, match="key=value"):
        _parse_overrides(["lam"])
    assert main(["train", "fadenet", "--profile", "tiny", "--overrides", "lamda=1"]) == 2


def test_cache_info_and_clear_keep_trained_models(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DEIDKIT_CACHE", str(tmp_path))
    (tmp_path / "embeddings").mkdir()
    (tmp_path / "embeddings" / "dlib--content.npz").write_bytes(b"x" * 2048)
    (tmp_path / "runs" / "live-standard").mkdir(parents=True)
    (tmp_path / "runs" / "live-standard" / "checkpoint.pt").write_bytes(b"y" * 10)
    assert main(["cache", "info"]) == 0
    out = capsys.readouterr().out
    assert "dlib--content" in out and "2.0 KB" in out and "runs" in out
    assert main(["cache", "clear"]) == 0
    assert not (tmp_path / "embeddings").exists() and (tmp_path / "runs" / "live-standard" / "checkpoint.pt").exists()
    assert main(["cache", "clear", "nonsense"]) == 2
    assert main(["cache", "clear", "runs"]) == 0 and not (tmp_path / "runs").exists()


def test_select_refuses_judges_and_misplaced_landmark_options(capsys):
    """Selection never reads a judge; the landmark lock is the live model's; --apply needs candidates."""
    assert main(["select", "live", "--min-ssim", "0.9", "--recognizer", "dlib"]) == 2
    assert "judge" in capsys.readouterr().err
    assert main(["select", "fadenet", "--min-ssim", "0.8", "--landmark-locks", "0", "0.5"]) == 2
    assert "live model only" in capsys.readouterr().err
    assert main(["select", "fadenet", "--min-ssim", "0.8", "--max-rank1", "0.05", "--by-frontier", "image"]) == 2
    assert "--by-frontier crop" in capsys.readouterr().err
    assert main(["select", "fadenet", "--min-ssim", "0.8", "--identities", "57"]) == 2
    assert "--identities N (2-160) narrows the --by-frontier protocol" in capsys.readouterr().err
    assert main(["select", "live", "--min-ssim", "0.9", "--apply"]) == 2
    assert "--landmark-locks" in capsys.readouterr().err
    assert main(["frontier", "blur_sigma8", "--protocol", "lfw_select_160x8"]) == 2  # the default judges
    assert "drop the judges dlib, mobilefacenet_casia" in capsys.readouterr().err
    assert main(["select", "live", "--min-ssim", "0.9", "--apply"]) == 2
    assert "--landmark-locks" in capsys.readouterr().err
    assert main(["select", "live", "--min-ssim", "0.9", "--epochs", "2"]) == 2
    assert "FaDeNet only" in capsys.readouterr().err
    assert main(["select", "live", "--min-ssim", "0.9", "--strengths", "0.9"]) == 2
    assert "give --run-dir" in capsys.readouterr().err
    assert main(["select", "live", "--min-ssim", "0.9", "--run-dir", "nothing-a", "nothing-b"]) == 2
    assert "nothing-a: no snapshots to select from" in capsys.readouterr().err
    assert main(["select", "live", "--min-ssim", "0.9", "--run-dir", "a", "--landmark-locks", "0.6", "--apply"]) == 2
    assert "without --run-dir" in capsys.readouterr().err


def test_benchmark_train_keeps_one_record_per_case(tmp_path, capsys):
    import json

    for _ in range(2):
        assert main(["benchmark-train", "critic", "--profile", "tiny", "--steps", "1", "--out", str(tmp_path)]) == 0
    (rec,) = json.loads((tmp_path / "metrics" / "train_speed.json").read_text())
    assert rec["kind"] == "train_speed" and rec["model"] == "critic" and rec["images_per_s"] > 0
    assert "images/s" in capsys.readouterr().out


def test_export_checks_the_profile_and_follows_the_training_lineage(tmp_path):
    """``deidkit export --as-profile``: a run started as ``standard`` with overrides is recorded as ``push`` only
    if every training field matches that profile; the training time of a fine-tune counts what it started from,
    back through snapshots to a shipped model."""
    import json

    import pandas as pd
    import pytest
    import torch

    from deidkit.cli import _as_profile, _lineage
    from deidkit.configs import FaDeNetConfig
    from deidkit.pretrained import read_manifest

    push = FaDeNetConfig.profile("push")
    fields = {k: v for k, v in push.to_dict().items() if k not in ("profile_name", "run_name", "init_from")}
    run = FaDeNetConfig.profile("standard", **{**fields, "run_name": "mine", "init_from": "pretrained:fadenet"})
    as_push = _as_profile("fadenet", json.loads(json.dumps(run.to_dict())), "push")
    assert as_push["profile_name"] == "push" and as_push["trained_as"] == "standard"
    with pytest.raises(ValueError, match="lr"):
        _as_profile("fadenet", {**run.to_dict(), "lr": 1e-2}, "push")
    # a run saved before an option existed (no ssim_weight key) trained with it off, as the profile has it
    older = {k: v for k, v in json.loads(json.dumps(run.to_dict())).items() if k != "ssim_weight"}
    assert _as_profile("fadenet", older, "push")["profile_name"] == "push"
    with pytest.raises(ValueError, match="ssim_weight"):
        _as_profile("fadenet", {**older, "ssim_weight": 0.5}, "push")
    # a run fine-tuned from the shipped model, then a run fine-tuned from that run's epoch 1
    base = read_manifest()["models"]["fadenet"]
    first = tmp_path / "first"
    (first / "epochs").mkdir(parents=True)
    (first / "config.json").write_text(json.dumps({"init_from": "pretrained:fadenet"}))
    pd.DataFrame({"step": [1, 2, 3, 4], "epoch": [0, 0, 1, 1], "wall_s": [1.0, 2.0, 4.0, 8.0]}).to_csv(
        first / "log.csv", index=False)
    torch.save({"unet": {}, "epoch": 1}, first / "epochs" / "epoch001.pt")
    seconds, steps, chain = _lineage(str(first / "epochs" / "epoch001.pt"), tmp_path / "second")
    assert seconds == pytest.approx(3.0 + base["training_time_s"]) and steps == 2 + base["steps_trained"]
    assert chain[0] == "first/epochs/epoch001.pt" and chain[1].startswith("pretrained:fadenet (sha256")
    assert "the run kept no record" in chain[1]  # the first run predates the record: today's manifest, marked
    # a run that started from the shipped model keeps that model's record (a later release replaces the file)
    from deidkit.checkpoints import INIT_RECORD, init_record, init_state

    init_state("pretrained:fadenet", "unet", run_dir=first)
    kept = init_record(first)
    assert kept["sha256"] == base["sha256"] and kept["init_from"] == "pretrained:fadenet"
    (first / INIT_RECORD).write_text(json.dumps({**kept, "sha256": "ab" * 32, "training_time_s": 5.0,
                                                 "steps_trained": 7}))  # as if an older model had been shipped
    init_state("pretrained:fadenet", "unet", run_dir=first)  # resuming does not overwrite the record
    seconds, steps, chain = _lineage(str(first / "epochs" / "epoch001.pt"), tmp_path / "second")
    assert (seconds, steps) == (pytest.approx(8.0), 9)
    assert chain[1].startswith("pretrained:fadenet (sha256 abababababab") and "no record" not in chain[1]


def test_a_second_cpu_training_is_warned_about(tmp_path):
    """``deidkit train`` holds a machine-wide advisory lock: a second training (another process) is told, in one
    line naming the first, that both would run many times slower; the lock goes with the process that held it."""
    import subprocess
    import sys

    from deidkit.train.exclusive import training_lock

    lock = tmp_path / "train.lock"
    hold = ("import sys, time; from deidkit.train.exclusive import training_lock\n"
            "with training_lock(sys.argv[1]) as w:\n    print(w, flush=True); time.sleep(30)")
    first = subprocess.Popen([sys.executable, "-c", hold, str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().strip() == "None"  # the first holds it
        with training_lock(lock) as warning:
            assert warning is not None and f"pid {first.pid}" in warning and "slower" in warning
    finally:
        first.kill()
        first.wait()
    with training_lock(lock) as warning:  # released with the killed process
        assert warning is None


def test_a_diverged_or_collapsed_training_is_one_line_and_exit_status_4(monkeypatch, capsys):
    """``deidkit train``: a run that diverged or collapsed to the identity map ends with the trainer's one-line
    message (the run folder and what to change) and exit status 4, not a traceback."""
    import deidkit.train.fadenet as fadenet_training
    from deidkit.train.loop import TrainingCollapsed

    def collapse(*args, **kwargs):
        raise TrainingCollapsed("/runs/fadenet-x: epoch 2: the U-Net collapsed to the identity map; lower lr")

    monkeypatch.setattr(fadenet_training, "train_fadenet", collapse)
    assert main(["train", "fadenet", "--profile", "tiny"]) == 4
    err = capsys.readouterr().err
    assert "/runs/fadenet-x: epoch 2: the U-Net collapsed" in err and "Traceback" not in err
