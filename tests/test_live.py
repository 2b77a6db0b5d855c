"""The live de-identification network (Gafni et al.): architecture, loss terms, one training iteration, the
de-identifier wrapper. Small sizes, one thread: the whole file runs in well under a minute."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from deidkit.losses import live as L
from deidkit.models.live import LiveDiscriminator, LiveGenerator, RecognizerFeatures, affine_theta
from deidkit.train import live as T

torch.set_num_threads(1)


class TinyRecognizer(nn.Module):
    """A stand-in recogniser with MobileFaceNet's layer names, for tests that need no real weights."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 4, 3, 2, 1)
        self.c2 = nn.Conv2d(4, 4, 3, 2, 1)
        self.c3 = nn.Conv2d(4, 8, 3, 2, 1)
        self.fc = nn.Linear(8, 16)

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        a = torch.relu(self.c1(x))
        b = torch.relu(self.c2(a))
        c = torch.relu(self.c3(b))
        return {"dw_conv": a, "stage1": b, "stage2": c, "embedding": self.fc(c.mean((2, 3)))}


@pytest.fixture(scope="module")
def tiny_cfg() -> T.LiveConfig:
    return T.LiveConfig.profile("tiny", device="cpu")


@pytest.fixture(scope="module")
def real_crops(crops_small) -> np.ndarray:
    return crops_small[:8]


# --------------------------------------------------------------------------------------------------- models


def test_generator_shapes_ranges_and_unet_bottleneck():
    torch.manual_seed(0)
    g = LiveGenerator(size=64, stem_channels=4, enc_channels=(8, 8, 16, 16, 16), bottleneck=32, cond_dim=16,
                      dec_channels=32)
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    raw, mask = g(x, torch.randn(3, 16))
    assert raw.shape == (3, 3, 64, 64) and mask.shape == (3, 1, 64, 64)
    assert raw.abs().max() <= 1 and mask.min() >= 0 and mask.max() <= 1
    code, skip = g.encode(x)
    assert code.shape == (3, 32)
    assert skip.shape == (3, 1, 16, 16)  # the low-capacity U-Net connection: one channel at S/4 (32x32 at 128)
    # the conditioning enters the decoder: another target representation changes the output
    raw2, _ = g(x, torch.randn(3, 16))
    assert not torch.allclose(raw, raw2)
    with pytest.raises(ValueError, match="expects 64x64"):
        g(torch.zeros(1, 3, 96, 96), torch.zeros(1, 16))
    with pytest.raises(ValueError, match="target representation"):
        g(x, torch.zeros(3, 8))


def test_paper_sized_generator_has_the_paper_geometry():
    g = LiveGenerator()  # the paper's 128 input, 1024 bottleneck
    assert g.enc_fc.out_features == 1024
    assert g.skip.out_channels == 1
    seps = [m for m in g.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert len(seps) == 5 and all(m.stride == (2, 2) for m in seps)  # five strided depth-wise convolutions
    assert len(g.up) == 5 and all(isinstance(b.shuffle, nn.PixelShuffle) for b in g.up)
    # upscale block: conv to twice the input channels, pixel shuffle halves the channels
    first = g.up[0]
    assert first.conv.out_channels == 2 * first.conv.in_channels
    x = torch.zeros(1, 3, 128, 128)
    assert first(torch.zeros(1, 512, 4, 4)).shape == (1, 256, 8, 8)
    with torch.no_grad():
        code, skip = g.encode(x)
    assert skip.shape == (1, 1, 32, 32)


def test_no_biases_and_normal_init():
    torch.manual_seed(0)
    for net in (LiveGenerator(), LiveDiscriminator()):
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                assert m.bias is None
        w = torch.cat([m.weight.detach().flatten() for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))])
        assert abs(float(w.mean())) < 1e-3
        assert abs(float(w.std()) - 0.02) < 1e-3


def test_discriminator_structure():
    d = LiveDiscriminator(channels=8)
    convs = [m for m in d.net if isinstance(m, nn.Conv2d)]
    assert [c.stride for c in convs[:4]] == [(2, 2)] * 4
    assert sum(isinstance(m, nn.InstanceNorm2d) for m in d.net) == 3  # all strided convs but the first
    out = d(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 1, 4, 4) and out.min() > 0 and out.max() < 1


def test_affine_theta_matches_opencv_warp():
    yy, xx = np.mgrid[0:40, 0:40].astype(np.float32)
    # smooth content: OpenCV interpolates with 1/32-pixel fixed-point weights, exact only on smooth images
    img = np.stack([100 + 80 * np.sin(xx / 5), 3 * yy + 2 * xx, 128 + 60 * np.cos((xx + yy) / 7)], axis=2)
    m = np.array([[1.3, 0.2, -3.0], [-0.2, 1.3, 2.0]])
    ref = cv2.warpAffine(img, m, (32, 24), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    theta = affine_theta(torch.from_numpy(m), (40, 40), (24, 32))
    x = torch.from_numpy(img).permute(2, 0, 1)[None]
    grid = torch.nn.functional.affine_grid(theta[None], [1, 3, 24, 32], align_corners=False)
    out = torch.nn.functional.grid_sample(x, grid, padding_mode="border", align_corners=False)[0].permute(1, 2, 0)
    assert np.abs(out.numpy() - ref)[3:-3, 3:-3].max() < 0.5


# ---------------------------------------------------------------------------------------------------- losses


def test_edge_and_mask_terms_on_known_tensors():
    ramp = torch.arange(5.0).view(1, 1, 1, 5).expand(1, 1, 4, 5)
    assert float(L.edge_loss(ramp, ramp)) == 0.0
    # d/dx of the ramp is 1 everywhere, d/dy 0: against a constant image the edge loss is exactly 1
    assert float(L.edge_loss(ramp, torch.zeros_like(ramp))) == pytest.approx(1.0)
    assert float(L.mask_smoothness(torch.full((1, 1, 4, 4), 0.7))) == 0.0
    checker = torch.tensor([[0.0, 1.0], [1.0, 0.0]]).view(1, 1, 2, 2)
    assert float(L.mask_smoothness(checker)) == pytest.approx(2.0)
    assert float(L.mask_l1(torch.full((1, 1, 3, 3), 0.25))) == pytest.approx(0.25)


def test_blend_and_mixup():
    raw, x_in = torch.ones(1, 3, 2, 2), -torch.ones(1, 3, 2, 2)
    assert torch.equal(L.blend(raw, torch.ones(1, 1, 2, 2), x_in), raw)
    assert torch.equal(L.blend(raw, torch.zeros(1, 1, 2, 2), x_in), x_in)
    beta = torch.tensor([0.25]).view(1, 1, 1, 1)
    assert torch.allclose(L.mixup(raw, x_in, beta), torch.full_like(raw, -0.5))


def test_beta_samples_follow_beta_0p2():
    torch.manual_seed(0)
    b = L.sample_beta(20000).flatten()
    a = L.MIXUP_ALPHA
    assert b.min() >= 0 and b.max() <= 1
    assert float(b.mean()) == pytest.approx(0.5, abs=0.01)
    assert float(b.var()) == pytest.approx(1 / (4 * (2 * a + 1)), abs=0.01)  # Beta(a, a): 1 / (4 (2a + 1))
    assert float(((b > 0.1) & (b < 0.9)).float().mean()) < 0.5  # U-shaped: most mixes are nearly pure


def test_lsgan_terms():
    assert float(L.lsgan_generator_loss(torch.ones(2, 1, 3, 3))) == 0.0
    assert float(L.lsgan_generator_loss(torch.zeros(2, 1, 3, 3))) == 1.0
    beta = torch.tensor([1.0, 0.0]).view(2, 1, 1, 1)
    d_out = torch.stack([torch.full((1, 3, 3), 1.0), torch.full((1, 3, 3), 0.0)])
    assert float(L.lsgan_discriminator_loss(d_out, beta)) == 0.0  # scores equal to the share of real pixels
    assert float(L.lsgan_discriminator_loss(1 - d_out, beta)) == 1.0


def test_perceptual_terms_and_weighted_sum():
    torch.manual_seed(0)
    f = {k: torch.randn(2, 4, 3, 3) for k in ("low", "mid", "deep")}
    f["embedding"] = torch.nn.functional.normalize(torch.randn(2, 8), dim=1)
    g = {k: v + 0.5 for k, v in f.items()}
    g["embedding"] = -f["embedding"]
    t = L.perceptual_terms(g, f, f, ("low", "mid"), ("deep",))
    assert float(t["attract_input"]) == pytest.approx(1.0)
    assert float(t["attract_target"]) == pytest.approx(0.5)
    assert float(t["repel"]) == pytest.approx(2.0)  # opposite unit vectors
    assert float(L.perceptual_loss(t, 0.1)) == pytest.approx(1.5 - 0.2)

    x = torch.rand(2, 3, 8, 8) * 2 - 1
    x_in, raw, mask = torch.rand_like(x) * 2 - 1, torch.rand_like(x) * 2 - 1, torch.rand(2, 1, 8, 8)
    d = torch.rand(2, 1, 2, 2)
    w = L.LiveLossWeights()
    total, terms = L.generator_loss(x, x_in, raw, mask, d, t, 0.1, w)
    masked = L.blend(raw, mask, x_in)
    expect = (w.adv * ((d - 1) ** 2).mean()
              + w.recon * ((raw - x).abs().mean() + (masked - x).abs().mean())
              + w.edge * (L.edge_loss(raw, x) + L.edge_loss(masked, x))
              + w.mask * mask.mean() + w.mask_smooth * L.mask_smoothness(mask)
              + w.perceptual * (1.5 - 0.1 * 2.0))
    assert float(total) == pytest.approx(float(expect), rel=1e-5)
    assert terms["g_total"] == pytest.approx(float(expect), rel=1e-5)
    assert (w.adv, w.recon, w.edge, w.mask, w.mask_smooth, w.perceptual) == (0.5, 0.5, 0.5, 3e-3, 1e-2, 0.5)


def test_lambda_schedule_has_the_papers_shape(tiny_cfg):
    assert tiny_cfg.lambda_at(19, 120, warmup_steps=20) == (-1, 0.0)  # warm-up: no perceptual term
    assert tiny_cfg.lambda_at(20, 120, warmup_steps=20)[0] == 0
    stages = [tiny_cfg.lambda_at(s, 100) for s in (0, 24, 25, 50, 75, 99)]
    assert [s for s, _ in stages] == [0, 0, 1, 2, 3, 3]
    lams = [lam for _, lam in stages]
    paper = T.PAPER_LAMBDA_STEPS
    assert lams[-1] == tiny_cfg.lambda_max
    for (stage, lam) in stages:
        assert lam / tiny_cfg.lambda_max == pytest.approx(paper[stage] / paper[-1])


# -------------------------------------------------------------------------------------------------- training


def test_augmentation_distorts_input_not_target(tiny_cfg, real_crops):
    torch.manual_seed(0)
    c = tiny_cfg.canonical_size
    imgs = T.to_tensor(np.stack([cv2.resize(x, (c, c), interpolation=cv2.INTER_AREA) for x in real_crops[:4]]))
    x, x_in, flip = T.make_batch(imgs, tiny_cfg)
    assert x.shape == x_in.shape == (4, 3, tiny_cfg.size, tiny_cfg.size)
    # the target is the central crop (mirrored where ``flip`` says so), exactly
    centre = T.to_tensor(np.stack([cv2.resize(x, (c, c), interpolation=cv2.INTER_AREA)[8:72, 8:72]
                                   for x in real_crops[:4]]))
    for i in range(4):
        ref = centre[i].flip(2) if flip[i] else centre[i]
        assert (x[i] - ref).abs().max() < 1e-5
    diff = (x - x_in).abs().mean((1, 2, 3))
    assert (diff > 0.01).all()  # every input is distorted


def test_one_training_iteration_updates_generator_and_discriminator(tiny_cfg, real_crops):
    torch.manual_seed(0)
    feats = T.build_features(tiny_cfg)  # the real frozen MobileFaceNet (MS1M)
    trainer = T.LiveTrainer(tiny_cfg, feats, device="cpu")
    trainer.total_steps = 4
    c = tiny_cfg.canonical_size
    imgs = T.to_tensor(np.stack([cv2.resize(x, (c, c), interpolation=cv2.INTER_AREA) for x in real_crops[:4]]))
    x, x_in, _ = T.make_batch(imgs, tiny_cfg)
    g0 = [p.detach().clone() for p in trainer.G.parameters()]
    d0 = [p.detach().clone() for p in trainer.D.parameters()]
    r0 = [p.detach().clone() for p in feats.parameters()]
    terms = trainer.step(x, x_in, 0)
    for k in ("recon", "edge", "mask_l1", "mask_tv", "g_adv", "p_attract_input", "p_attract_target", "p_repel",
              "g_total", "d_loss"):
        assert math.isfinite(terms[k]), k
    assert terms["lambda"] == tiny_cfg.lambda_max * T.LAMBDA_SHAPE[0]
    assert all(not torch.equal(a, b) for a, b in zip(g0, trainer.G.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(d0, trainer.D.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(r0, feats.parameters()))  # the recogniser stays frozen
    assert not any(m.training for m in feats.backbone.modules())


def test_recognizer_features_match_the_recognizer_embedding(tiny_cfg, real_crops):
    from deidkit.recognizers import get_recognizer

    rec = get_recognizer("mobilefacenet_ms1m")
    feats = T.build_features(tiny_cfg)
    # the network's crop, scaled up so resampling differences stay small
    cfg = T.LiveConfig.profile("tiny", size=128)
    feats = T.build_features(cfg, backbone=rec.network)
    c = cfg.canonical_size
    crops = np.stack([cv2.resize(x, (c, c), interpolation=cv2.INTER_AREA) for x in real_crops[:4]])
    x = torch.nn.functional.grid_sample(T.to_tensor(crops), T.center_grid(4, cfg.size, cfg.crop_fraction),
                                        align_corners=False)
    ours = feats.embed(x).numpy()
    ref = rec.embed(crops)
    assert (ours * ref).sum(1).min() > 0.95  # same face, same template: nearly the same representation


def test_train_resume_stage_snapshots_and_deidentifier(tmp_path, real_crops):
    cfg = T.LiveConfig.profile("tiny", epochs=5, warmup_epochs=1, epoch_steps=2, device="cpu")
    feats = RecognizerFeatures(TinyRecognizer(), torch.from_numpy(T.network_to_arcface(cfg)), cfg.size)
    _, log1 = T.train_live(cfg, tmp_path / "run", images=real_crops, features=feats, show_progress=False,
                           until_epoch=2)
    assert len(log1) == 4
    targets = torch.load(tmp_path / "run" / "targets.pt", weights_only=True)
    assert targets.shape == (len(real_crops), 2, 16)  # each image's representation, as is and mirrored
    _, log = T.train_live(cfg, tmp_path / "run", images=real_crops, features=feats, show_progress=False)
    assert list(log["step"]) == list(range(10))
    assert list(log["stage"]) == [-1, -1, 0, 0, 1, 1, 2, 2, 3, 3]
    warm = log[log["stage"] < 0]
    assert (warm["p_repel"] == 0).all() and (warm["lambda"] == 0).all()  # no perceptual term in the warm-up
    assert (log.loc[log["stage"] >= 0, "p_repel"] > 0).all()
    assert sorted(p.name for p in (tmp_path / "run" / "stages").iterdir()) == [f"stage{k}.pt" for k in range(4)]
    assert torch.load(tmp_path / "run" / "stages" / "stage1.pt", weights_only=True)["global_step"] == 5

    deid = T.load_live_deidentifier(tmp_path / "run", features=feats)
    assert deid.name == "live_tiny" and deid.crop_size == cfg.canonical_size
    batch = np.stack([cv2.resize(x, (96, 96), interpolation=cv2.INTER_AREA) for x in real_crops[:3]])
    out = deid.deidentify(batch)
    assert out.shape == batch.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - batch).mean() > 1  # the network changed the faces
    raw, alpha = deid.deidentify_with_mask(batch)
    assert alpha.shape == (3, 96, 96) and 0 <= alpha.min() and alpha.max() <= 1
    assert alpha[:, :4, :4].max() == 0  # outside the network's central region nothing is pasted
    deid.strength = 0.0
    assert np.array_equal(deid.deidentify(batch), batch)
    assert deid.name == "live_tiny_s0"
    with pytest.raises(ValueError, match="strength"):
        deid.strength = 1.5
    staged = T.load_live_deidentifier(tmp_path / "run", stage=2, features=feats)
    assert staged.name == "live_tiny_stage2"
    # a target of another person changes the conditioning, hence the output
    deid.strength = 1.0
    other = deid.deidentify(batch, targets=batch[[2]])
    assert not np.array_equal(other[:2], deid.deidentify(batch)[:2])
    with pytest.raises(FileNotFoundError, match="no trained live model"):
        T.load_live_deidentifier(tmp_path / "nothing", features=feats)


def test_fine_tune_starts_from_another_runs_generator(tmp_path, real_crops):
    """``init_from``: a fresh run starts from a saved stage generator (its first step's reconstruction is the
    stage's, not a random network's); a missing file is one clear error."""
    base = T.LiveConfig.profile("tiny", epochs=2, warmup_epochs=1, epoch_steps=2, device="cpu")
    feats = RecognizerFeatures(TinyRecognizer(), torch.from_numpy(T.network_to_arcface(base)), base.size)
    T.train_live(base, tmp_path / "base", images=real_crops, features=feats, show_progress=False)
    stage = tmp_path / "base" / "stages" / "stage3.pt"
    saved = torch.load(stage, weights_only=True)["state_dict"]
    ft = T.LiveConfig.profile("tiny", epochs=1, warmup_epochs=0, epoch_steps=1, device="cpu", init_from=str(stage),
                              lambda_max=2.0, lambda_shape=(1.0, 1.0, 1.0, 1.0))
    trainer, log = T.train_live(ft, tmp_path / "ft", images=real_crops, features=feats, show_progress=False,
                                until_epoch=0)
    assert all(torch.equal(v, saved[k]) for k, v in trainer.G.state_dict().items())
    _, log = T.train_live(ft, tmp_path / "ft", images=real_crops, features=feats, show_progress=False)
    assert list(log["lambda"]) == [2.0]
    with pytest.raises(FileNotFoundError, match="nothing.pt"):
        T.train_live(T.LiveConfig.profile("tiny", device="cpu", init_from=str(tmp_path / "nothing.pt")),
                     tmp_path / "ft2", images=real_crops, features=feats, show_progress=False)


def test_run_folder_names_resolve_to_that_run(tmp_path, real_crops, monkeypatch):
    """``live-<run>`` / ``live-<run>@stage<k>`` name a run folder in the cache (e.g. a fine-tuning run)."""
    monkeypatch.setenv("DEIDKIT_CACHE", str(tmp_path))
    cfg = T.LiveConfig.profile("tiny", epochs=2, warmup_epochs=1, epoch_steps=1, device="cpu")
    T.train_live(cfg, tmp_path / "runs" / "live-try", images=real_crops, show_progress=False)
    final = T.live_deidentifier_by_name("live-try")
    staged = T.live_deidentifier_by_name("live-try@stage1")
    assert (final.name, staged.name) == ("live-try", "live-try@stage1")
    stage1 = torch.load(tmp_path / "runs" / "live-try" / "stages" / "stage1.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(v, stage1[k]) for k, v in staged.generator.state_dict().items())
    with pytest.raises(FileNotFoundError, match="live-nothing"):
        T.live_deidentifier_by_name("live-nothing")
    # selection candidates: every stage at every lock x strength, one generator per stage, names that load back
    from deidkit.eval.selection import live_snapshot_candidates

    cands = live_snapshot_candidates([tmp_path / "runs" / "live-try"], locks=[0.0, 0.6], strengths=[1.0, 0.9])
    assert len(cands) == 4 * 2 * 2 and "stages/stage1.pt+lock0.6_s0.9" in cands
    named = cands["stages/stage1.pt+lock0.6_s0.9"]
    assert (named.name, named.landmark_lock, named.strength) == ("live-try@stage1+lock0.6_s0.9", 0.6, 0.9)
    assert named.generator is cands["stages/stage1.pt+lock0_s1"].generator
    assert named.generator is not cands["stages/stage0.pt+lock0_s1"].generator
    again = T.live_deidentifier_by_name(named.name)
    assert (again.landmark_lock, again.strength) == (0.6, 0.9)
    assert all(torch.equal(v, stage1[k]) for k, v in named.generator.state_dict().items())
    assert set(live_snapshot_candidates([tmp_path / "runs" / "live-try"])) == {f"stages/stage{k}.pt" for k in range(4)}


def test_init_state_reads_a_shipped_model_in_float32(tmp_path):
    """``init_from="pretrained:live"``: the shipped fp16 generator, checksum verified, as float32."""
    from deidkit.pretrained import load_state

    state = T.init_state("pretrained:live")
    _, shipped = load_state("live")
    assert state.keys() == shipped.keys()
    assert all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())
    assert all(torch.equal(state[k], shipped[k]) for k in state)
    with pytest.raises(Exception, match="nosuch"):
        T.init_state("pretrained:nosuch")


def test_landmark_regressor_finds_a_real_faces_geometry_and_passes_gradients(tiny_cfg, real_crops):
    """MTCNN's ONet on the network's view of real aligned faces: eyes above the nose above the mouth, left left of
    right, near the canonical template; a pose change moves the points; gradients reach the input only."""
    from deidkit.recognizers import load_five_landmarks

    lm = load_five_landmarks()
    c = tiny_cfg.canonical_size
    imgs = T.to_tensor(np.stack([cv2.resize(x, (c, c), interpolation=cv2.INTER_AREA) for x in real_crops]))
    x = torch.nn.functional.grid_sample(imgs, T.center_grid(len(imgs), tiny_cfg.size, tiny_cfg.crop_fraction),
                                        mode="bilinear", padding_mode="reflection", align_corners=False)
    x.requires_grad_(True)
    p = lm(x)
    assert p.shape == (len(x), 5, 2)
    med = p.detach().median(0).values
    assert med[0, 0] < 0.5 < med[1, 0]  # left eye, right eye
    assert med[:2, 1].max() < med[2, 1] < med[3:, 1].min()  # eyes, nose, mouth from top to bottom
    assert (p.detach() - med).abs().median() < 0.05  # aligned faces: the points agree across people
    shifted = torch.roll(x.detach(), shifts=6, dims=3)  # the face 6 px (~10 % of the crop) to the right
    assert (lm(shifted)[:, :, 0] - p.detach()[:, :, 0]).mean() > 0.04
    L.landmark_loss(p, p.detach() + 0.01).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(q.grad is None for q in lm.parameters())


def test_landmark_term_is_trained_and_logged(real_crops):
    cfg = T.LiveConfig.profile("tiny", device="cpu", weights={"landmarks": 5.0})
    assert cfg.loss_weights().landmarks == 5.0 and cfg.loss_weights().recon == 0.5  # the rest stay the paper's
    feats = RecognizerFeatures(TinyRecognizer(), torch.from_numpy(T.network_to_arcface(cfg)), cfg.size)
    trainer = T.LiveTrainer(cfg, feats, device="cpu")
    c = cfg.canonical_size
    imgs = T.to_tensor(np.stack([cv2.resize(x, (c, c), interpolation=cv2.INTER_AREA) for x in real_crops[:4]]))
    x, x_in, _ = T.make_batch(imgs, cfg)
    terms = trainer.step(x, x_in, 0)
    assert 0 < terms["landmarks"] < 0.5
    off = T.LiveTrainer(T.LiveConfig.profile("tiny", device="cpu"), feats, device="cpu")
    assert off.landmarks is None and off.step(x, x_in, 0)["landmarks"] == 0.0


def test_thin_plate_field_moves_landmarks_and_keeps_the_border():
    import cv2

    from deidkit.deidentifiers.geometry import thin_plate_field

    size = 96
    pts = np.array([[30.0, 40.0], [66.0, 40.0], [48.0, 56.0], [36.0, 70.0], [60.0, 70.0]])
    mx, my = thin_plate_field(pts, pts, size)  # no move: the identity map
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    assert np.abs(mx - xx).max() < 0.05 and np.abs(my - yy).max() < 0.05
    goal = pts + np.array([[3.0, 0.0], [-3.0, 0.0], [0.0, 2.0], [0.0, -2.0], [2.0, 2.0]])
    img = np.zeros((size, size), np.float32)
    img[40, 30] = 1.0  # a dot where the first landmark is now
    mx, my = thin_plate_field(goal, pts, size)
    warped = cv2.remap(cv2.GaussianBlur(img, (0, 0), 1.5), mx, my, cv2.INTER_LINEAR)
    y, x = np.unravel_index(np.argmax(warped), warped.shape)
    assert (x, y) == (33, 40)  # it moved to its goal
    assert abs(mx[0, 0]) < 0.05 and abs(mx[-1, -1] - (size - 1)) < 0.05  # the corners stay


def test_landmark_lock_moves_a_real_face_back_and_is_off_at_zero(crops_small):
    """A live output shifted by 4 pixels: the lock at 1 brings ONet's landmarks back near the input's and at 0
    changes nothing; out of range is refused."""
    from deidkit.deidentifiers.geometry import LandmarkLock
    from deidkit.recognizers import load_five_landmarks

    crops = crops_small[:3]
    shifted = np.roll(crops, 4, axis=2)  # a "generator" that moved every feature 4 px to the right
    alpha = np.ones(crops.shape[:3], np.float32)
    lock = LandmarkLock(load_five_landmarks(), 1.0)
    raw, a = lock(crops, shifted, alpha)
    before = np.linalg.norm(lock.points(shifted) - lock.points(crops), axis=2).mean()
    after = np.linalg.norm(lock.points(raw) - lock.points(crops), axis=2).mean()
    assert before > 3.0 and after < 0.5 * before
    far = np.roll(crops, int(0.2 * crops.shape[1]), axis=2)  # a move no generator makes: ONet misread, no warp
    kept, _ = lock(crops, far, alpha)
    assert np.array_equal(kept, far)
    off = LandmarkLock(lock.landmarks, 0.0)
    same, a0 = off(crops, shifted, alpha)
    assert same is shifted and a0 is alpha
    with pytest.raises(ValueError, match="landmark lock"):
        LandmarkLock(lock.landmarks, 1.5)


def test_adapted_head_reads_back_a_flipped_embedding():
    """The training-time attacker is ``deidkit.eval.attack.fit_adapted_head``: it reads identity back from embeddings
    that a fixed linear map (here a sign flip, what a repelling term rewards) has moved, which the identity map
    cannot."""
    from deidkit.eval.attack import fit_adapted_head

    rng = np.random.default_rng(0)
    orig = rng.normal(size=(400, 16))
    orig /= np.linalg.norm(orig, axis=1, keepdims=True)
    out = -orig + 0.3 * rng.normal(size=orig.shape)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    head = fit_adapted_head(out, orig, ridge=0.01)
    assert (out * orig).sum(1).mean() < -0.6 and (head(out) * orig).sum(1).mean() > 0.6  # the flip undone


def test_adversary_term_trains_and_is_logged(real_crops):
    cfg = T.LiveConfig.profile("tiny", device="cpu", adversary_weight=1.0, adversary_bank=4, adversary_ridge=0.01)
    feats = RecognizerFeatures(TinyRecognizer(), torch.from_numpy(T.network_to_arcface(cfg)), cfg.size)
    trainer = T.LiveTrainer(cfg, feats, device="cpu")
    c = cfg.canonical_size
    imgs = T.to_tensor(np.stack([cv2.resize(x, (c, c), interpolation=cv2.INTER_AREA) for x in real_crops[:4]]))
    x, x_in, _ = T.make_batch(imgs, cfg)
    logged = [trainer.step(x, x_in, 0) for _ in range(3)]
    assert all(-1 <= t["adversary_cos"] <= 1 and t["adversary_cos"] != 0 for t in logged)
    assert sum(len(a) for a, _ in trainer.adversary.pairs) <= 4 + len(x)  # a bounded bank of recent pairs
    plain = T.LiveTrainer(T.LiveConfig.profile("tiny", device="cpu"), feats, device="cpu")
    assert "adversary_cos" not in plain.step(x, x_in, 0)
    with pytest.raises(ValueError, match="adversary"):
        T.LiveConfig.profile("tiny", adversary_weight=-1.0).validate()


def test_anchor_term_keeps_a_frozen_copy_of_the_start(real_crops):
    cfg = T.LiveConfig.profile("tiny", device="cpu", anchor_weight=2.0, init_from="pretrained:live")
    feats = RecognizerFeatures(TinyRecognizer(), torch.from_numpy(T.network_to_arcface(cfg)), cfg.size)
    trainer = T.LiveTrainer(cfg, feats, device="cpu")
    start = {k: v.clone() for k, v in trainer.G.state_dict().items()}
    trainer.set_anchor(start)
    c = cfg.canonical_size
    imgs = T.to_tensor(np.stack([cv2.resize(x, (c, c), interpolation=cv2.INTER_AREA) for x in real_crops[:4]]))
    x, x_in, _ = T.make_batch(imgs, cfg)
    logged = [trainer.step(x, x_in, 0)["anchor_l1"] for _ in range(3)]
    assert all(v >= 0 for v in logged) and logged[-1] > 0  # the generator moved off its start, the anchor did not
    assert all(torch.equal(v, start[k]) for k, v in trainer.anchor.state_dict().items())
    assert not all(torch.equal(v, start[k]) for k, v in trainer.G.state_dict().items())
    with pytest.raises(ValueError, match="anchor_weight"):
        T.LiveConfig.profile("tiny", anchor_weight=1.0).validate()


def test_orthogonal_repel_is_largest_for_an_orthogonal_representation():
    """``repel="orthogonal"``: the paper's distance up to orthogonality, then falling again towards the opposite
    representation (which a linear head reads back as the original); the paper's keeps growing to 2."""
    e = torch.tensor([[1.0, 0.0]])
    for angle, paper, orth in ((0.0, 0.0, 0.0), (math.pi / 2, math.sqrt(2), math.sqrt(2)), (math.pi, 2.0, 0.0),
                               (3 * math.pi / 4, math.sqrt(2 + math.sqrt(2)), math.sqrt(2 - math.sqrt(2)))):
        o = torch.tensor([[math.cos(angle), math.sin(angle)]])
        f, g = {"embedding": e, "x": e}, {"embedding": o, "x": e}
        assert float(L.perceptual_terms(g, f, f, (), ())["repel"]) == pytest.approx(paper, abs=1e-6)
        assert float(L.perceptual_terms(g, f, f, (), (), repel="orthogonal")["repel"]) == pytest.approx(orth, abs=1e-6)
    with pytest.raises(ValueError, match="repel"):
        L.perceptual_terms(g, f, f, (), (), repel="nosuch")
    with pytest.raises(ValueError, match="repel"):
        T.LiveConfig.profile("tiny", repel="nosuch").validate()
