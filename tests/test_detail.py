"""The live model's detail stage: the network (an untrained one is exactly a bicubic enlargement), its training
data (real faces made smaller and softer), a tiny training run that resumes, and shipping it beside a live
generator (checksummed, loaded by load_pretrained, output twice the generator's side)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deidkit.configs import DetailConfig
from deidkit.models.detail import DetailNet, PatchDiscriminator, binomial3
from deidkit.train.detail import centre_region, degrade, finest_grid, random_patches, train_detail


def test_untrained_detail_net_is_a_bicubic_enlargement():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    net = DetailNet(8, 1)
    y = net(x)
    assert y.shape == (2, 3, 64, 64)
    ref = F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False).clamp(-1, 1)
    assert torch.allclose(y, ref, atol=1e-6)
    assert PatchDiscriminator(8)(y).shape == (2, 1, 8, 8)


def test_input_filter_removes_the_finest_grid_and_keeps_smooth_faces():
    torch.manual_seed(0)
    smooth = F.interpolate(torch.rand(2, 3, 4, 4) * 2 - 1, size=(32, 32), mode="bicubic", align_corners=False) * 0.5
    grid = finest_grid(smooth, 0.2, torch.Generator().manual_seed(1))
    assert grid.abs().max() <= 0.2 * 3 * 4  # three patterns, each at most its amplitude times its envelope's peak
    assert grid.abs().mean() > 0.01 and torch.equal(finest_grid(smooth, 0.0), torch.zeros_like(smooth))
    # the binomial filter has no response at the 2-pixel period: the grid is gone, the smooth face nearly kept
    inner = (slice(None), slice(None), slice(2, -2), slice(2, -2))  # away from the reflected edges
    assert (binomial3(smooth + grid) - binomial3(smooth))[inner].abs().max() < 0.1 * grid.abs().max()
    assert (binomial3(smooth) - smooth)[inner].abs().max() < 0.05
    # so a stage with the filter enlarges a face with a grid as it enlarges the face without one (untrained: bicubic)
    net = DetailNet(8, 1, input_filter=True)
    assert (net(smooth + grid) - net(smooth))[..., 4:-4, 4:-4].abs().max() < 0.1 * grid.abs().max()
    assert (DetailNet(8, 1)(smooth + grid) - DetailNet(8, 1)(smooth)).abs().max() > 0.3 * grid.abs().max()


def test_the_smooth_profile_is_quick_with_the_stripe_remedies():
    quick, smooth = DetailConfig.profile("quick"), DetailConfig.profile("smooth")
    assert smooth.input_filter and smooth.feature_shift == 3 and not quick.input_filter and not quick.feature_shift
    differ = {k for k in vars(quick) if getattr(quick, k) != getattr(smooth, k)}
    assert differ == {"profile_name", "input_filter", "feature_shift"}


def test_degrade_blurs_and_shrinks_and_patches_line_up():
    torch.manual_seed(0)
    hr = torch.rand(3, 3, 64, 64) * 2 - 1
    sharp = degrade(hr, 32, 0.0)  # no blur: plain area averaging
    assert torch.allclose(sharp, F.interpolate(hr, size=(32, 32), mode="area"), atol=1e-5)
    soft = degrade(hr, 32, 3.0)
    assert soft.shape == (3, 3, 32, 32) and soft.std() < sharp.std()
    p = random_patches(hr, 16)
    assert p.shape == (3, 3, 16, 16)


def test_centre_region_is_what_the_live_generator_sees(crops_small):
    c = crops_small[0]
    r = centre_region(c, 0.8, 128)
    assert r.shape == (128, 128, 3)
    k = int(round(0.8 * c.shape[0]))
    o = (c.shape[0] - k) // 2
    assert np.abs(r.astype(int).mean() - c[o:o + k, o:o + k].astype(int).mean()) < 2


@pytest.fixture(scope="module")
def tiny_detail_run(tmp_path_factory, crops_small):
    # the stripe remedies on: an input filter, feature-term shifts, grids added to the inputs
    cfg = DetailConfig.profile("tiny", input_filter=True, feature_shift=2, input_grid=0.05)
    faces = np.stack([centre_region(c, cfg.crop_fraction, 2 * cfg.size) for c in crops_small[:16]])
    run = tmp_path_factory.mktemp("detail") / "detail-tiny"
    net, log = train_detail(cfg, run, faces, show_progress=False)
    return cfg, run, net, log, faces


def test_tiny_detail_training_logs_every_term_and_resumes(tiny_detail_run):
    cfg, run, net, log, faces = tiny_detail_run
    assert len(log) == cfg.epochs * cfg.epoch_steps
    assert {"l1", "low", "feat", "adv", "d"} <= set(log.columns) and np.isfinite(log["loss"]).all()
    # a finished run loads instead of training again; more epochs continue from its checkpoint
    again, log2 = train_detail(cfg, run, faces, show_progress=False)
    assert len(log2) == len(log)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values()))


def test_shipped_detail_stage_loads_verified_and_doubles_the_output(tiny_detail_run, tmp_path, crops_small):
    from deidkit.pretrained import WEIGHTS_DIR, PretrainedError, export_detail, load_pretrained, read_manifest

    cfg, run, net, _, _ = tiny_detail_run
    weights = tmp_path / "weights"
    weights.mkdir()
    entry = read_manifest()["models"]["live"]
    shutil.copy(WEIGHTS_DIR / entry["file"], weights / entry["file"])
    entry = {k: v for k, v in entry.items() if k != "detail"}
    (weights / "manifest.json").write_text(json.dumps({"models": {"live": entry}}))
    export_detail("live", net.state_dict(), json.loads((run / "config.json").read_text()), run.name, weights)
    deid = load_pretrained("live", weights_dir=weights)
    assert deid.detail is not None and deid.out_size == 2 * deid.size
    assert deid.detail.input_filter  # the stage's options travel through the manifest
    raw, alpha = deid.deidentify_with_mask(crops_small[:2])
    assert raw.shape == crops_small[:2].shape and alpha.shape == (2, *crops_small.shape[1:3])
    # a corrupted detail file is refused, naming it
    path = weights / "live_detail.pt"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(PretrainedError, match="live_detail.pt"):
        load_pretrained("live", weights_dir=weights)


def test_a_second_stage_is_appended_and_quadruples_the_output(tiny_detail_run, tmp_path, crops_small):
    """A 128 -> 256 px stage shipped after the 64 -> 128 one: the manifest lists both, the output side is four times
    the generator's, and a stage of the wrong input side is refused."""
    from deidkit.models.detail import DetailNet
    from deidkit.pretrained import WEIGHTS_DIR, PretrainedError, export_detail, load_pretrained, read_manifest

    cfg, run, net, _, _ = tiny_detail_run
    weights = tmp_path / "weights"
    weights.mkdir()
    entry = read_manifest()["models"]["live"]
    shutil.copy(WEIGHTS_DIR / entry["file"], weights / entry["file"])
    entry = {k: v for k, v in entry.items() if k != "detail"}
    (weights / "manifest.json").write_text(json.dumps({"models": {"live": entry}}))
    config = json.loads((run / "config.json").read_text())
    export_detail("live", net.state_dict(), config, run.name, weights)
    with pytest.raises(PretrainedError, match="enlarges 64-px faces"):
        export_detail("live", net.state_dict(), config, run.name, weights, append=True)
    second = DetailNet(cfg.channels, cfg.blocks)
    export_detail("live", second.state_dict(), {**config, "size": 2 * config["size"]}, "detail-second", weights,
                  append=True)
    stages = read_manifest(weights)["models"]["live"]["detail"]
    assert [s["file"] for s in stages] == ["live_detail.pt", "live_detail2.pt"]
    deid = load_pretrained("live", weights_dir=weights)
    assert deid.out_size == 4 * deid.size
    raw, alpha = deid.deidentify_with_mask(crops_small[:2])
    assert raw.shape == crops_small[:2].shape and alpha.shape == (2, *crops_small.shape[1:3])
