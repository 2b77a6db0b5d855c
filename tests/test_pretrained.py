"""Shipped pretrained de-identifiers: export and load round trip, checksum and manifest checks, and the models
that ship with the package load, match their manifest and de-identify real faces."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from deidkit import pretrained as P
from deidkit.configs import FaDeNetConfig, LiveConfig
from deidkit.configs.experiments import FADENET_EXPERIMENTS
from deidkit.configs.fadenet import SHIPPED as FADENET_SHIPPED
from deidkit.deidentifiers.fadenet import FaDeNetDeidentifier, build_unet

torch.set_num_threads(1)


def _tiny_fadenet(tmp_path):
    cfg = FaDeNetConfig.profile("tiny")
    torch.manual_seed(0)
    unet = build_unet(cfg)
    path = P.export_pretrained("fadenet", "fadenet", unet.state_dict(), cfg.to_dict(), training_time_s=1.5,
                               metrics={"note": "test"}, weights_dir=tmp_path)
    return cfg, unet, path


def test_export_then_load_gives_the_same_network_in_fp16(tmp_path):
    cfg, unet, path = _tiny_fadenet(tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    entry = manifest["models"]["fadenet"]
    assert entry["sha256"] == P.sha256_of(path) and entry["dtype"] == "float16" and entry["kind"] == "fadenet"
    assert entry["config"]["image_size"] == cfg.image_size and entry["training_time_s"] == 1.5
    deid = P.load_pretrained("fadenet", weights_dir=tmp_path)
    assert isinstance(deid, FaDeNetDeidentifier) and deid.name == "fadenet"
    for k, v in unet.state_dict().items():
        loaded = deid.unet.state_dict()[k]
        assert torch.allclose(loaded, v.half().float()), k
    crops = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    assert deid.deidentify(crops).shape == crops.shape


def test_tampered_or_missing_weights_are_refused(tmp_path):
    _, _, path = _tiny_fadenet(tmp_path)
    with pytest.raises(P.PretrainedError, match="no shipped model 'live'"):
        P.load_pretrained("live", weights_dir=tmp_path)
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(P.PretrainedError, match=r"fadenet\.pt: sha256 .* does not match"):
        P.load_pretrained("fadenet", weights_dir=tmp_path)
    path.unlink()
    with pytest.raises(P.PretrainedError, match="shipped weights missing"):
        P.load_pretrained("fadenet", weights_dir=tmp_path)


def test_no_manifest_means_nothing_shipped(tmp_path):
    assert P.shipped_models(tmp_path) == []


@pytest.mark.parametrize("name", P.shipped_models())
def test_shipped_models_match_their_manifest_and_deidentify(name, crops_small):
    """Every model in deidkit/weights: size limit, checksum, config and metrics recorded, loads through
    load_deidentifier and changes real LFW faces without changing the image size."""
    from deidkit.deidentifiers import load_deidentifier
    from deidkit.eval.quality import ssim

    entry = P.read_manifest()["models"][name]
    path = P.WEIGHTS_DIR / entry["file"]
    assert path.stat().st_size <= P.MAX_BYTES and P.sha256_of(path) == entry["sha256"]
    assert entry["commit"] and entry["training_time_s"] > 0
    # a named CPU-hours profile (one `make reproduce RETRAIN=1` trains), not a test or teaching one
    profile = entry["config"]["profile_name"]
    (FaDeNetConfig if entry["kind"] == "fadenet" else LiveConfig).profile(profile)
    assert profile not in ("tiny", "quick", "paper")
    assert f"train {entry['kind']} --profile {profile}" in (Path(__file__).parents[1] / "Makefile").read_text()
    assert entry["metrics"], "headline metrics belong in the manifest"
    deid = load_deidentifier(name)
    assert deid.name == name  # its manifest options (strength, feather, lock) are part of it, not of its name
    out = deid.deidentify(crops_small[:4])
    assert out.shape == crops_small[:4].shape and out.dtype == np.uint8
    s = ssim(crops_small[:4], out)
    assert (s < 0.995).all() and (s > 0.5).all()


def test_at_least_the_two_models_ship():
    assert set(P.shipped_models()) >= {"live", "fadenet"}


def test_a_renamed_model_points_at_a_shipped_one_and_its_old_name_ships_nothing(tmp_path):
    """``RENAMED``: each old name's weights ship under the new name, nothing ships under the old one, and an export
    under it is refused (the name would then mean two models)."""
    shipped = set(P.shipped_models())
    assert P.RENAMED and all(old not in shipped and new in shipped for old, new in P.RENAMED.items())
    cfg = FaDeNetConfig.profile("tiny")
    old = next(iter(P.RENAMED))
    with pytest.raises(ValueError, match="renamed"):
        P.export_pretrained(old, "fadenet", build_unet(cfg).state_dict(), cfg.to_dict(), training_time_s=1.0,
                            weights_dir=tmp_path)
    assert not (tmp_path / f"{old}.pt").exists()


@pytest.mark.parametrize("name", ["fadenet_refine", "fadenet_luma"])
def test_a_retired_model_is_refused_with_its_recipe_and_last_commit(name, tmp_path, capsys):
    """A model that left the package ships nothing; its name is refused (by the registry, the shipped reader and
    ``deidkit image``: one line, exit status 2) with the recipe and the commit that bring it back, never resolved to
    a run of that recipe; an export under it is refused too."""
    from deidkit.assets import asset_path
    from deidkit.cli import main
    from deidkit.deidentifiers import load_deidentifier

    recipe, commit = P.RETIRED[name]
    assert name not in P.shipped_models() and not (P.WEIGHTS_DIR / f"{name}.pt").exists()
    assert recipe in FADENET_EXPERIMENTS and name not in FADENET_SHIPPED
    pointer = f"{name!r} left the package"
    for load, asked in ((load_deidentifier, name), (P.load_pretrained, name), (load_deidentifier, f"{name}_f0.2")):
        with pytest.raises(ValueError, match=pointer) as info:
            load(asked)
        message = str(info.value)
        assert f"{recipe!r} of deidkit/configs/experiments.py" in message and f"commit {commit}" in message
        assert "\n" not in message
    photo = asset_path("hamilton-clip").parent / "reference" / "lin-manuel-miranda.png"
    assert main(["image", str(photo), str(tmp_path / "out.png"), "--method", name]) == 2
    err = capsys.readouterr().err
    assert pointer in err and commit in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out.png").exists()
    cfg = FaDeNetConfig.profile("tiny")
    with pytest.raises(ValueError, match="retired"):
        P.export_pretrained(name, "fadenet", build_unet(cfg).state_dict(), cfg.to_dict(), training_time_s=1.0,
                            weights_dir=tmp_path)


def test_retrained_name_points_at_the_exported_snapshot(tmp_path):
    cfg = FaDeNetConfig.profile("standard", run_name="fadenet-standard-try3")  # shipped from a renamed run
    P.export_pretrained("fadenet", "fadenet", build_unet(cfg).state_dict(), cfg.to_dict(), training_time_s=1.0,
                        extra={"run": "fadenet-standard-try3", "checkpoint": "epochs/epoch002.pt"},
                        weights_dir=tmp_path)
    P.export_pretrained("live", "live", build_unet(cfg).state_dict(), {"profile_name": "finetune"},
                        training_time_s=1.0, extra={"run": "live-finetune", "checkpoint": "final"}, weights_dir=tmp_path)
    assert P.retrained_name("fadenet", tmp_path) == "fadenet-standard@epoch002"
    assert P.retrained_name("live", tmp_path) == "live-finetune"
    with pytest.raises(P.PretrainedError, match="nothing"):
        P.retrained_name("nothing", tmp_path)
    P.update_metrics("live", {"crop/dlib": {"rank1": 0.1}}, tmp_path)
    assert P.read_manifest(tmp_path)["models"]["live"]["metrics"] == {"crop/dlib": {"rank1": 0.1}}
    # an inference option chosen after training travels with the retrained name, and can be removed
    P.set_inference_options("live", {"landmark_lock": 0.6}, tmp_path)
    assert P.retrained_name("live", tmp_path) == "live-finetune+lock0.6"
    # lock and strength together, in the order the live loader parses (it loads the retrained snapshot by name)
    P.set_inference_options("live", {"landmark_lock": 0.6, "strength": 0.9}, tmp_path)
    assert P.retrained_name("live", tmp_path) == "live-finetune+lock0.6_s0.9"
    from deidkit.deidentifiers.live_names import LIVE_RUN_NAME

    assert LIVE_RUN_NAME.fullmatch("live-finetune+lock0.6_s0.9").groups() == ("live-finetune", None, "0.6", "0.9")
    P.set_inference_options("live", {}, tmp_path)
    assert P.retrained_name("live", tmp_path) == "live-finetune"
    with pytest.raises(P.PretrainedError, match="nothing"):
        P.set_inference_options("nothing", {"landmark_lock": 0.5}, tmp_path)
    P.set_inference_options("fadenet", {"strength": 0.97}, tmp_path)
    assert P.retrained_name("fadenet", tmp_path) == "fadenet-standard@epoch002_s0.97"
    assert P.load_pretrained("fadenet", weights_dir=tmp_path).strength == 0.97
    P.set_inference_options("fadenet", {"strength": 1.0, "feather": 0.03}, tmp_path)
    assert P.retrained_name("fadenet", tmp_path) == "fadenet-standard@epoch002_f0.03"
    shipped = P.load_pretrained("fadenet", weights_dir=tmp_path)
    assert (shipped.feather, shipped.strength, shipped.name) == (0.03, 1.0, "fadenet")


def test_export_in_float32_keeps_the_weights_exactly(tmp_path):
    cfg = FaDeNetConfig.profile("tiny")
    torch.manual_seed(0)
    unet = build_unet(cfg)
    P.export_pretrained("fadenet", "fadenet", unet.state_dict(), cfg.to_dict(), training_time_s=1.0,
                        weights_dir=tmp_path, dtype="float32")
    assert P.read_manifest(tmp_path)["models"]["fadenet"]["dtype"] == "float32"
    deid = P.load_pretrained("fadenet", weights_dir=tmp_path)
    assert all(torch.equal(deid.unet.state_dict()[k], v) for k, v in unet.state_dict().items())
    with pytest.raises(ValueError, match="dtype"):
        P.export_pretrained("fadenet", "fadenet", unet.state_dict(), cfg.to_dict(), training_time_s=1.0,
                            weights_dir=tmp_path, dtype="int8")


def test_shipped_live_loads_with_its_manifest_landmark_lock():
    from deidkit.deidentifiers import load_deidentifier

    lock = P.read_manifest()["models"]["live"].get("inference", {}).get("landmark_lock", 0.0)
    assert load_deidentifier("live").landmark_lock == lock


def test_inference_never_imports_training_code():
    """Loading and running the shipped models, the photo/video commands (their argument parser included) and the
    evaluation import nothing from ``deidkit.train`` or ``deidkit.losses`` (a fresh interpreter, so other tests'
    imports do not count). The losses pulled in torchvision: ~2 s at the start of every ``deidkit image``."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from deidkit.deidentifiers import load_deidentifier\n"
        "import deidkit.pipeline.cli, deidkit.pipeline.audit, deidkit.eval.frontier, deidkit.eval.selection\n"
        "from deidkit.cli import build_parser\n"
        "build_parser()\n"
        "crops = np.full((1, 112, 112, 3), 128, np.uint8)\n"
        "for name in ('live', 'fadenet', 'blur_sigma8'):\n"
        "    load_deidentifier(name).deidentify(crops)\n"
        "print(sorted(m for m in sys.modules if m.startswith(('deidkit.train', 'deidkit.losses'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout


def test_shipped_live_keeps_a_dark_faces_exposure_and_colour(crops_small):
    """Trained on well-lit LFW, the network lights a dark face as LFW's and tints it (the yellow-orange faces on
    the Hamilton clip's dark audience); the colour match keeps the input's exposure and white balance where the
    output is blended, with or without the pipeline's extra blending weights."""
    from deidkit.deidentifiers import load_deidentifier
    from deidkit.deidentifiers.colour import match_colour

    deid = load_deidentifier("live")
    dark = np.clip(crops_small[:4].astype(np.float32) * np.array([0.35, 0.3, 0.25]), 0, 255).astype(np.uint8)

    def blended_mean_shift(weights=None):
        raw, alpha = deid.deidentify_with_mask(dark, blend_weights=weights)
        w = (alpha if weights is None else alpha * weights)[..., None]
        return ((raw.astype(np.float32) - dark) * w).sum((1, 2)) / w.sum((1, 2))  # (N, 3)

    deid.colour_match = False
    assert np.abs(blended_mean_shift()).max() > 10  # the network's own exposure: brighter by more than 10 levels
    deid.colour_match = True
    assert np.abs(blended_mean_shift()).max() < 2
    inner = np.zeros(dark.shape[:3], np.float32)
    inner[:, 80:150, 70:155] = 1.0  # the pipeline's hull: only part of the network's region is pasted
    assert np.abs(blended_mean_shift(inner)).max() < 2
    # the match is a per-channel gain: a cast is undone, and an image with no weight is left alone
    ref = crops_small[:2]
    cast = np.clip(ref.astype(np.float32) * np.array([1.3, 1.0, 0.7]), 0, 255).astype(np.uint8)
    weight = np.zeros(ref.shape[:3], np.float32)
    weight[0, 60:160, 60:160] = 1.0
    fixed = match_colour(cast, ref, weight)
    region = (slice(60, 160), slice(60, 160))
    assert np.allclose(fixed[0][region].reshape(-1, 3).mean(0), ref[0][region].reshape(-1, 3).mean(0), atol=1.5)
    assert np.array_equal(fixed[1], cast[1])


def test_shipped_live_is_the_defended_generator_with_a_detail_stage(crops_small):
    """The default ``live`` records its defence (the online attacker, the anchor to where it started) and ships
    with a detail stage that enlarges the generator's face twice; ``live_defended``, its earlier name, is refused
    with a pointer, never resolved to another model."""
    from deidkit.deidentifiers import load_deidentifier

    entry = P.read_manifest()["models"]["live"]
    cfg = entry["config"]
    assert cfg["adversary_weight"] > 0 and cfg["anchor_weight"] > 0
    assert entry["detail"]["file"] == "live_detail.pt" and entry["detail"]["steps_trained"] > 0
    deid = load_deidentifier("live")
    assert deid.detail is not None and deid.out_size == 2 * deid.size == 2 * cfg["size"]
    raw, alpha = deid.deidentify_with_mask(crops_small[:2])
    assert raw.shape == crops_small[:2].shape and 0.0 < float(alpha.mean()) < 1.0
    assert P.RENAMED["live_defended"] == "live"
    with pytest.raises(ValueError, match="'live_defended' is no longer a shipped name"):
        load_deidentifier("live_defended")


def test_shipped_fadenet_paints_face_detail_not_bands(crops_small):
    """The default FaDeNet's change lies in its 64 face-detail components and 16 modes of face geometry (both ship
    with the weights), and it changes the faces' colours about as little as blurring does (unlike the banded
    FaDeNets that left the package on 2026-12-07: docs/experiments.md)."""
    from deidkit.deidentifiers import load_deidentifier
    from deidkit.eval.quality import colour_shift

    entry = P.read_manifest()["models"]["fadenet"]
    deid = load_deidentifier("fadenet")
    assert entry["config"]["detail_basis"] == deid.unet.detail_basis == 64
    assert entry["config"]["shape_basis"] == deid.unet.shape_modes.shape[0] == 16
    assert deid.unet.shape_modes.abs().sum() > 0
    assert deid.unet.basis.abs().sum() > 0 and deid.feather == entry["inference"]["feather"]
    # loaded as the manifest says: colour matched, detail capped (the video defect of 2026-12-05)
    assert (deid.colour_match, deid.detail_cap) == (entry["inference"]["colour_match"], entry["inference"]["detail_cap"])
    crops = crops_small[:8]
    subspace = colour_shift(crops, deid.deidentify(crops)).mean()
    blurred = colour_shift(crops, load_deidentifier("blur_sigma8").deidentify(crops)).mean()
    assert subspace < 1.5 * blurred

