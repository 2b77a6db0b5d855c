"""FaDeNet: U-Net, critics, loss, augmentation, one training step of every model, the de-identifier wrapper."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from deidkit.data.images import BT601_CHROMA
from deidkit.losses.fadenet import fadenet_loss, unit_norm_distance
from deidkit.models.critic import EmbeddingCritic, InceptionCritic, TemplateCrop
from deidkit.models.mobilefacenet import MobileFaceNetMS1M
from deidkit.models.unet import UNet
from deidkit.train.augment import ArrayBatches, RandomCropPad, augment_batch
from deidkit.train.critic import CriticConfig, CriticRecognizer, IdentityData, load_critic, train_critic
from deidkit.train.fadenet import FaDeNetConfig, FaDeNetDeidentifier, build_unet, train_fadenet
from deidkit.train.loop import TrainingDiverged, TrainingRun

torch.set_num_threads(1)


def random_faces(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Smooth random images (shape tests only; nothing here asserts recognition quality)."""
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(n, 3, size // 8, size // 8, generator=g)
    img = nn.functional.interpolate(small, size=(size, size), mode="bilinear", align_corners=False)
    return (img * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def toy_data(size: int = 64, n_ids: int = 3, per_id: int = 3) -> IdentityData:
    x = random_faces(n_ids * per_id, size)
    y = np.repeat(np.arange(n_ids), per_id)
    held = np.arange(len(y)) % per_id == 0
    return IdentityData(x[~held], y[~held], x[held], y[held], [f"id{i}" for i in range(n_ids)])


# ----------------------------------------------------------------------------------------------- U-Net
def test_unet_full_size_has_23_conv_layers_and_keeps_size():
    assert UNet(width=64, depth=4).n_conv_layers() == 23
    net = UNet(width=4, depth=3)
    for h, w in [(64, 64), (50, 61), (9, 9)]:
        assert net(torch.randn(2, 3, h, w)).shape == (2, 3, h, w)


def test_residual_unet_starts_as_identity_and_tanh_bounds():
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert torch.allclose(UNet(4, 2, residual=True)(x), x, atol=1e-2)
    assert UNet(4, 2, out_activation="tanh")(x * 100).abs().max() <= 1
    # Residual + tanh: the correction is added before the tanh, so the start is still (almost) the identity.
    bounded = UNet(4, 2, residual=True, out_activation="tanh")
    assert torch.allclose(bounded(x.clamp(-0.99, 0.99)), x.clamp(-0.99, 0.99), atol=1e-2)
    with torch.no_grad():
        bounded.head.bias.fill_(50.0)
    assert bounded(x).abs().max() <= 1
    with pytest.raises(ValueError, match="out_activation"):
        UNet(4, 2, out_activation="relu")


# ---------------------------------------------------------------------------------------------- critics
def test_template_crop_matches_cv2_warp():
    import cv2

    from deidkit.data.templates import ARCFACE_112, crop_to_template

    img = random_faces(1, 96)[0].astype(np.float32)
    ref = cv2.warpAffine(img, crop_to_template(96, ARCFACE_112), (112, 112), flags=cv2.INTER_LINEAR)
    out = TemplateCrop()(torch.from_numpy(img).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
    assert np.abs(out - ref)[2:-2, 2:-2].max() < 1.0  # grey levels; cv2 uses fixed-point interpolation


@pytest.mark.parametrize("kind", ["mobilefacenet", "inception"])
def test_critics_are_differentiable_wrt_input(kind):
    if kind == "inception":
        critic = InceptionCritic(5, input_size=75)
        dim = 2048
    else:
        critic = EmbeddingCritic(MobileFaceNetMS1M(), 5)
        dim = 128
    critic.freeze()
    x = torch.rand(2, 3, 64, 64, requires_grad=True)
    assert critic.features(x).shape == (2, dim)
    critic.logits(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in critic.parameters())


def test_embedding_critic_keeps_backbone_in_eval_mode():
    critic = EmbeddingCritic(MobileFaceNetMS1M(), 3).train()
    assert critic.head.training and not critic.backbone.training
    assert [n for n, p in critic.named_parameters() if p.requires_grad] == ["head.weight", "head.bias"]


# ------------------------------------------------------------------------------------------------- loss
def test_loss_matches_hand_computation():
    x = torch.tensor([[[[1.0, 2.0], [2.0, 4.0]]]])  # (1, 1, 2, 2); norm 5
    fx = torch.tensor([[[[0.0, 3.0], [0.0, 4.0]]]])  # norm 5
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    # L1: ||x/5 - fx/5||^2 = (1 + 1 + 4 + 0) / 25
    l1 = 6.0 / 25.0
    # L2: -log softmax(logits)[0]
    l2 = -(2.0 - math.log(math.exp(2.0) + 1.0 + math.exp(-1.0)))
    out = fadenet_loss(x, fx, logits, torch.tensor([0]), lam=0.1)
    assert out.l1.item() == pytest.approx(l1, rel=1e-6)
    assert out.l2.item() == pytest.approx(l2, rel=1e-6)
    assert out.total.item() == pytest.approx(l1 - 0.1 * l2, rel=1e-6)
    # Scale invariance of L1 (images are normalised), and the bounded variant's cap.
    assert unit_norm_distance(x, 3 * x).item() == pytest.approx(0.0, abs=1e-7)
    capped = fadenet_loss(x, fx, torch.tensor([[-50.0, 50.0, 0.0]]), torch.tensor([0]), lam=1.0, ce_cap=5.0)
    assert capped.l2.item() == pytest.approx(5.0)


def test_unbounded_loss_diverges_and_loop_stops(tmp_path):
    # A critic with unbounded logits and a huge lambda: maximising the cross-entropy blows up to inf/NaN.
    torch.manual_seed(0)
    unet = UNet(4, 1, residual=True)
    critic = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 3))
    for p in critic.parameters():
        p.requires_grad_(False)
    opt = torch.optim.SGD(unet.parameters(), lr=1e3)
    x, y = torch.rand(4, 3, 16, 16), torch.tensor([0, 1, 2, 0])

    def step(batch, epoch, global_step):
        fx = unet(x)
        loss = fadenet_loss(x, fx, critic(fx), y, lam=1e6)
        opt.zero_grad()
        loss.total.backward()
        opt.step()
        return loss.as_floats()

    run = TrainingRun(tmp_path, {"unet": unet}, {"sgd": opt}, seed=0, show_progress=False)
    with pytest.raises(TrainingDiverged, match="non-finite"):
        run.fit(lambda e: range(20), step, epochs=5)


# ------------------------------------------------------------------------------------------ augmentation
def test_augmentation_keeps_shape_and_dtype():
    torch.manual_seed(0)
    for dtype in (torch.uint8, torch.float32):
        x = torch.from_numpy(random_faces(3, 48)).permute(0, 3, 1, 2).to(dtype)
        y = augment_batch(x)
        assert y.shape == x.shape and y.dtype == dtype
        assert not torch.equal(y, x)
    # Pure padding shrinks the content and fills the border with black.
    padded = RandomCropPad((0.1, 0.1))(torch.full((3, 20, 20), 200, dtype=torch.uint8))
    assert padded.shape == (3, 20, 20) and padded[:, 0].max() == 0 and padded[:, 10, 10].min() == 200


def test_array_batches_order_depends_on_seed_and_epoch():
    x, y = random_faces(10, 32), np.arange(10)
    a = [b[1].tolist() for b in ArrayBatches(x, y, 4, seed=1, epoch=0, augment=False)]
    b = [b[1].tolist() for b in ArrayBatches(x, y, 4, seed=1, epoch=0, augment=False)]
    c = [b[1].tolist() for b in ArrayBatches(x, y, 4, seed=1, epoch=1, augment=False)]
    assert a == b != c and len(a) == 2
    xb, _ = next(iter(ArrayBatches(x, y, 4, seed=1, epoch=0)))
    assert xb.dtype == torch.float32 and xb.shape == (4, 3, 32, 32) and -1 <= xb.min() and xb.max() <= 1


# -------------------------------------------------------------------------------- one step of every model
@pytest.mark.parametrize("kind", ["mobilefacenet", "inception"])
def test_smoke_train_critic_then_fadenet(tmp_path, kind):
    data = toy_data(size=80)
    ccfg = CriticConfig.profile("tiny", kind=kind, image_size=80, inception_input=75, epochs=1, batch_size=6,
                                precompute_features=kind == "mobilefacenet")
    critic = EmbeddingCritic(MobileFaceNetMS1M(), 3) if kind == "mobilefacenet" else None  # no weights file
    res = train_critic(ccfg, data=data, run_dir=tmp_path / "critic", critic=critic, progress=False)
    # tiny: the MobileFaceNet critic trains its head on 2 feature copies of the 6 training images (2 steps).
    assert len(res.log) == (2 if kind == "mobilefacenet" else 1) and np.isfinite(res.log["loss"]).all()
    assert 0.0 <= res.metrics["heldout_accuracy"] <= 1.0
    assert json.loads((tmp_path / "critic" / "identities.json").read_text()) == data.identities
    loaded, ids, _ = load_critic(tmp_path / "critic")  # whole critic from the checkpoint, weights_only
    x = torch.rand(2, 3, 80, 80) * 2 - 1
    assert torch.allclose(loaded.logits(x), res.critic.logits(x), atol=1e-5)
    emb = CriticRecognizer(loaded, 80).embed(random_faces(2, 112))
    assert emb.shape[0] == 2 and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)

    fcfg = FaDeNetConfig.profile("tiny", image_size=80, batch_size=6, epochs=1)
    out = train_fadenet(fcfg, data=data, critic=res.critic, run_dir=tmp_path / "fadenet", progress=False)
    assert len(out.log) == 1 and {"loss", "l1", "l2", "critic_acc"} <= set(out.log.columns)
    assert "heldout_critic_acc_fadenet" in out.epochs.columns


def test_fadenet_deidentifier_roundtrip(tmp_path):
    data = toy_data(size=64)
    critic = EmbeddingCritic(MobileFaceNetMS1M(), 3)
    fcfg = FaDeNetConfig.profile("tiny", image_size=64, batch_size=6, epochs=1, lam=1.0, lr=1e-2)
    res = train_fadenet(fcfg, data=data, critic=critic, run_dir=tmp_path / "f", progress=False)
    deid = FaDeNetDeidentifier(tmp_path / "f")
    assert deid.name == "fadenet-tiny"
    crops = random_faces(3, 64, seed=3)
    out = deid.deidentify(crops)
    assert out.shape == crops.shape and out.dtype == np.uint8
    assert not np.array_equal(out, crops)  # the trained residual net changes the image
    # Same as running the U-Net directly at the training size.
    x = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        ref = ((res.unet.eval()(x) + 1) * 127.5).clamp(0, 255).round().byte().permute(0, 2, 3, 1).numpy()
    assert np.abs(out.astype(int) - ref).max() <= 1
    # Other sizes: processed at 64 and the change is up-sampled onto the full-resolution crop.
    big = random_faces(2, 160)
    assert deid.deidentify(big).shape == big.shape
    with pytest.raises(ValueError, match="uint8"):
        deid.deidentify(crops.astype(np.float32))


def test_profiles_and_bad_config():
    p = FaDeNetConfig.profile("paper")
    assert (p.image_size, p.unet_width, p.unet_depth, p.lam, p.lr, p.batch_size, p.epochs) == (
        224, 64, 4, 1e-3, 1e-5, 32, 40)
    assert p.residual is False and p.ce_cap is None and p.critic_profile == "paper"
    c = CriticConfig.profile("paper")
    assert (c.kind, c.batch_size, c.epochs, c.lr) == ("inception", 32, 40, 1e-3)
    # the two-step teacher recipe: first the teacher alone (sharp input, no critic term, which collapsed a random
    # U-Net to the identity map), then FaDeNet's critic terms from its last epoch
    d, dp = FaDeNetConfig.profile("distill"), FaDeNetConfig.profile("distill_push")
    assert d.teacher == dp.teacher == "live" and d.input_sigma == dp.input_sigma == 0
    assert d.lam == d.embed_weight == d.detect_weight == d.adv_weight == d.critic_views == 0 and d.init_from is None
    assert dp.lam > 0 and dp.embed_weight > 0 and dp.init_from == f"runs/{d.name}/epochs/epoch{d.epochs:03d}.pt"
    with pytest.raises(ValueError, match="unknown FaDeNet profile"):
        FaDeNetConfig.profile("huge")
    with pytest.raises(ValueError, match="unknown FaDeNetConfig fields"):
        FaDeNetConfig.profile("quick", lamda=0.1)


def test_trained_fadenet_is_found_by_name(tmp_path, monkeypatch):
    from deidkit.deidentifiers import load_deidentifier
    from deidkit.train.critic import runs_dir

    monkeypatch.setenv("DEIDKIT_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="02_fadenet"):
        load_deidentifier("fadenet", profile="tiny")
    cfg = FaDeNetConfig.profile("tiny", batch_size=6)
    train_fadenet(cfg, data=toy_data(), critic=EmbeddingCritic(MobileFaceNetMS1M(), 3),
                  run_dir=runs_dir() / cfg.name, progress=False)
    deid = load_deidentifier("fadenet", profile="tiny")
    assert isinstance(deid, FaDeNetDeidentifier) and deid.name == "fadenet"
    assert deid.deidentify(random_faces(2, 64)).shape == (2, 64, 64, 3)
    # the name's profile is the run loaded; a name that is neither a profile's, a run's nor a shipped model's is
    # refused, never read as the default profile's run under the name asked for (2026-12-07: a renamed shipped model)
    assert load_deidentifier("fadenet_tiny", profile="quick").name == "fadenet_tiny"
    with pytest.raises(FileNotFoundError, match="02_fadenet"):
        load_deidentifier("fadenet_quick", profile="tiny")
    for typo in ("fadenet_tinyy", "fadenet-nosuch", "fadenet_subspace_cm"):
        with pytest.raises(ValueError, match="unknown FaDeNet|fadenet-<profile>"):
            load_deidentifier(typo, profile="tiny")
    with pytest.raises(ValueError, match="its weights ship as 'fadenet'"):
        load_deidentifier("fadenet_subspace")


def test_edge_term_punishes_painted_stripes_more_than_a_smooth_change():
    from deidkit.losses.fadenet import edge_distance

    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    stripes = x + 0.2 * torch.sign(torch.sin(torch.arange(32.0) * 2.0)).view(1, 1, 32, 1)  # horizontal bands
    smooth = x + 0.2 * torch.linspace(-1, 1, 32).view(1, 1, 32, 1)  # same amplitude, a slow shading
    assert torch.allclose(edge_distance(x, x), torch.zeros(2))
    assert (edge_distance(x, stripes) > 50 * edge_distance(x, smooth)).all()
    fx = smooth.clone().requires_grad_(True)
    logits, labels = torch.randn(2, 5), torch.tensor([0, 1])
    plain = fadenet_loss(x, fx, logits, labels, lam=0.1)
    with_edge = fadenet_loss(x, fx, logits, labels, lam=0.1, edge_weight=2.0)
    expected = float(plain.l1.detach() + 2.0 * edge_distance(x, smooth).mean())
    assert float(with_edge.l1.detach()) == pytest.approx(expected, rel=1e-5)


def test_random_views_are_differentiable_and_keep_the_shape():
    from deidkit.train.augment import random_views

    x = (torch.rand(4, 3, 48, 48) * 2 - 1).requires_grad_(True)
    torch.manual_seed(0)
    v = random_views(x)
    assert v.shape == x.shape
    v.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    torch.manual_seed(0)
    assert torch.equal(random_views(x.detach()), v.detach())  # seeded: reproducible views


def test_standard_recipe_terms_train_and_resume(tmp_path):
    """The standard profile's extra terms (edge, critic over random views, discriminator) on toy data: the
    discriminator is checkpointed with the U-Net, every epoch's U-Net is kept, and a second call just loads."""
    data = toy_data(size=64)
    critic = EmbeddingCritic(MobileFaceNetMS1M(), 3)
    fcfg = FaDeNetConfig.profile("tiny", image_size=64, batch_size=6, epochs=2, lam=0.5, ce_cap=1.0,
                                 edge_weight=1.0, critic_views=1, adv_weight=0.1)
    res = train_fadenet(fcfg, data=data, critic=critic, run_dir=tmp_path / "f", progress=False)
    assert {"d_loss", "g_adv"} <= set(res.log.columns) and np.isfinite(res.log["g_adv"]).all()
    assert sorted(p.name for p in (tmp_path / "f" / "epochs").iterdir()) == ["epoch001.pt", "epoch002.pt"]
    from deidkit.train.loop import load_checkpoint

    assert "discriminator" in load_checkpoint(tmp_path / "f")["modules"]
    again = train_fadenet(fcfg, data=data, critic=critic, run_dir=tmp_path / "f", progress=False)
    assert len(again.log) == len(res.log)
    with pytest.raises(ValueError, match="adv_weight"):
        FaDeNetConfig.profile("tiny", adv_weight=-1.0)


def test_embedding_term_pushes_the_critics_embedding_off_the_input(tmp_path):
    from deidkit.losses.fadenet import embedding_similarity

    a = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    b = torch.tensor([[2.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    assert torch.allclose(embedding_similarity(a, b), torch.tensor([1.0, 0.0, 0.0]))
    assert torch.allclose(embedding_similarity(a, b, margin=-0.5), torch.tensor([1.5, 0.5, 0.0]))
    data = toy_data(size=64)
    critic = EmbeddingCritic(MobileFaceNetMS1M(), 3)
    fcfg = FaDeNetConfig.profile("tiny", image_size=64, batch_size=6, epochs=1, critic_views=1, embed_weight=1.0)
    res = train_fadenet(fcfg, data=data, critic=critic, run_dir=tmp_path / "f", progress=False)
    assert "embed_sim" in res.log.columns and res.log["embed_sim"].between(0, 1 + 1e-5).all()  # cosine: 1 up to rounding
    assert -1 - 1e-5 <= res.epochs["heldout_embed_cos"].iloc[-1] <= 1 + 1e-5  # a cosine, up to rounding
    with pytest.raises(ValueError, match="embed_weight"):
        FaDeNetConfig.profile("tiny", embed_weight=-1.0)


def test_collapse_term_charges_one_change_for_every_face(tmp_path):
    """``diversity_weight``: outputs of different people that are closer to each other than their originals were
    pay the excess cosine (pairs of one person and pairs already as far apart are free); the term trains and is
    logged; a negative weight is refused."""
    from deidkit.losses.fadenet import output_collapse

    ref = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])  # three people, pairwise cosines 0, -1, 0
    same = torch.tensor([[1.0, 1.0]] * 3)  # one output for all: every pair at cosine 1
    labels = torch.tensor([0, 1, 2])
    assert torch.isclose(output_collapse(same, ref, labels), torch.tensor((1.0 + 2.0 + 1.0) / 3))
    assert output_collapse(ref * 3.0, ref, labels) == 0  # as far apart as the originals (scale does not count)
    assert output_collapse(same, ref, torch.tensor([5, 5, 5])) == 0  # one person: no pair to charge
    grad = torch.tensor([[1.0, 1.0], [1.0, 0.9], [0.9, 1.0]], requires_grad=True)
    output_collapse(grad, ref, labels).backward()
    assert grad.grad.abs().sum() > 0
    fcfg = FaDeNetConfig.profile("tiny", image_size=64, batch_size=6, epochs=1, diversity_weight=1.0)
    res = train_fadenet(fcfg, data=toy_data(size=64), critic=EmbeddingCritic(MobileFaceNetMS1M(), 3),
                        run_dir=tmp_path / "f", progress=False)
    assert "collapse" in res.log.columns and (res.log["collapse"] >= 0).all()
    with pytest.raises(ValueError, match="diversity_weight"):
        FaDeNetConfig.profile("tiny", diversity_weight=-1.0)


def test_feature_term_ties_low_level_maps_to_the_original(tmp_path):
    """``feature_weight``: the critic's low-level maps of the output are pulled to the original's; the folded
    (fast) critic gives the same maps and embedding as the critic; the term is logged and trained."""
    from deidkit.models.critic import fold_batchnorm

    torch.manual_seed(0)
    critic = EmbeddingCritic(MobileFaceNetMS1M(), 3).freeze()
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    maps, fast = critic.feature_maps(x), fold_batchnorm(critic).feature_maps(x)
    assert {"dw_conv", "stage1", "features"} <= set(maps)
    assert torch.allclose(maps["features"], critic.features(x), atol=1e-5)
    assert all(torch.allclose(maps[k], fast[k], atol=1e-3) for k in ("dw_conv", "stage1", "features"))
    fcfg = FaDeNetConfig.profile("tiny", image_size=64, batch_size=6, epochs=1, feature_weight=0.1)
    res = train_fadenet(fcfg, data=toy_data(size=64), critic=critic, run_dir=tmp_path / "f", progress=False)
    assert (res.log["feature_l1"] >= 0).all() and res.log["feature_l1"].iloc[0] < 1.0  # starts near the input
    with pytest.raises(ValueError, match="feature_weight"):
        FaDeNetConfig.profile("tiny", feature_weight=-1.0)


def test_smoothed_correction_cannot_hold_thin_stripes():
    from deidkit.models.unet import UNet, _separable_blur

    u = UNet(width=4, depth=2, residual=True, out_activation="tanh", smooth_sigma=1.5)
    stripes = torch.sin(torch.arange(48.0) * 2 * math.pi / 4.5).view(1, 1, 48, 1).expand(1, 3, 48, 48)
    # period 4.5 px: attenuated more than 5x
    assert _separable_blur(stripes, u.smooth_kernel)[..., 8:-8, :].abs().max() < 0.2
    const = torch.full((1, 3, 16, 16), 0.3)
    assert torch.allclose(_separable_blur(const, u.smooth_kernel), const, atol=1e-6)
    assert "smooth_kernel" not in u.state_dict()  # follows from the config, not saved with the weights
    with pytest.raises(ValueError, match="smooth_sigma"):
        UNet(width=4, depth=2, residual=False, smooth_sigma=1.0)


def test_blurred_input_unet_starts_as_the_blur():
    from deidkit.models.unet import UNet, _gaussian_kernel, _separable_blur

    torch.manual_seed(0)
    u = UNet(width=4, depth=2, residual=True, out_activation="tanh", input_sigma=2.0).eval()
    x = torch.rand(2, 3, 32, 32) * 1.6 - 0.8
    with torch.no_grad():
        y = u(x)
    blurred = _separable_blur(x, _gaussian_kernel(2.0))
    # a fresh residual U-Net is (almost) the identity of what it sees: the blurred input, not the input
    assert (y - blurred).abs().max() < 0.02
    assert (y - x).abs().mean() > 0.1
    assert "input_kernel" not in u.state_dict()
    # only the face box blurred: the border stays the input, the box is the blur (as blur_sigma<k> does)
    from deidkit.eval.quality import face_box

    face = UNet(width=4, depth=2, residual=True, out_activation="tanh", input_sigma=2.0, input_region=0.65).eval()
    with torch.no_grad():
        yf = face(x)
    x0, y0, x1, y1 = face_box(32)
    inside = torch.zeros(32, 32, dtype=torch.bool)
    inside[y0:y1, x0:x1] = True
    assert (yf - x)[..., ~inside].abs().max() < 0.02
    assert (yf - blurred)[..., inside].abs().max() < 0.02
    cfg = FaDeNetConfig.profile("tiny", input_sigma=2.0)
    assert build_unet(cfg).input_sigma == 2.0
    with pytest.raises(ValueError, match="input_sigma"):
        UNet(width=4, depth=2, input_sigma=-1.0)


def test_facebox_mode_changes_only_the_face_box(crops_small):
    """A network that sees its face box blurred is used in ``facebox`` mode: outside the box the crop is the
    original, inside it is the network's (resized) output; other networks keep ``resize``."""
    from deidkit.eval.quality import face_box

    torch.manual_seed(0)
    cfg = FaDeNetConfig.profile("tiny", input_sigma=2.0)
    deid = FaDeNetDeidentifier.from_network(cfg, build_unet(cfg), name="fb")
    assert deid.mode == "facebox"
    crops = crops_small[:3]
    out = deid.deidentify(crops)
    x0, y0, x1, y1 = face_box(crops.shape[1])
    inside = np.zeros(crops.shape[1:3], dtype=bool)
    inside[y0:y1, x0:x1] = True
    assert np.array_equal(out[:, ~inside], crops[:, ~inside])
    assert np.abs(out[:, inside].astype(int) - crops[:, inside]).mean() > 2  # the box is blurred
    plain = FaDeNetConfig.profile("tiny")
    assert FaDeNetDeidentifier.from_network(plain, build_unet(plain), name="p").mode == "resize"
    # a network that learnt a teacher's change (the live model's, inside the face) keeps the crop outside the box too
    taught = FaDeNetConfig.profile("tiny", teacher="live", teacher_weight=1.0)
    assert FaDeNetDeidentifier.from_network(taught, build_unet(taught), name="t").mode == "facebox"
    with pytest.raises(ValueError, match="mode"):
        FaDeNetDeidentifier.from_network(plain, build_unet(plain), name="p", mode="nosuch")


def test_strength_scales_the_change_and_names_the_model(crops_small):
    """``strength``: 0 gives the crop back, 1 FaDeNet's output, 0.5 half its change, 1.5 the change amplified;
    the name says the strength unless it is the one the model was loaded with; out of [0, 2] is an error."""
    torch.manual_seed(0)
    cfg = FaDeNetConfig.profile("tiny", input_sigma=2.0)
    unet = build_unet(cfg)
    crops = crops_small[:3]
    full = FaDeNetDeidentifier.from_network(cfg, unet, name="fb")
    out1 = full.deidentify(crops).astype(float)
    assert full.name == "fb"
    full.strength = 0.0
    assert np.array_equal(full.deidentify(crops), crops) and full.name == "fb_s0"
    full.strength = 0.5
    half = full.deidentify(crops).astype(float)
    assert np.abs(half - (crops + 0.5 * (out1 - crops))).max() <= 1.0  # rounding of the uint8 output
    full.strength = 1.5
    more = full.deidentify(crops).astype(float)
    unclipped = crops + 1.5 * (out1 - crops)
    ok = (unclipped > 1) & (unclipped < 254)
    assert np.abs(more - unclipped)[ok].max() <= 1.5
    shipped_like = FaDeNetDeidentifier.from_network(cfg, unet, name="fadenet", strength=0.9)
    assert shipped_like.name == "fadenet"  # a manifest's inference option is part of that model
    with pytest.raises(ValueError, match="strength"):
        full.strength = 2.5


def test_feather_ramps_the_face_box_edge_and_names_the_model(crops_small):
    """``feather``: 0 is the hard box (the same pixels as before the option existed); above 0 the change ramps
    linearly from the box's edge (outside: the crop, untouched) to all of it well inside; names carry ``_f``; a
    loader name sets it; it needs the face box mode."""
    from deidkit.deidentifiers.fadenet import face_box_mask, load_fadenet_deidentifier
    from deidkit.eval.quality import face_box

    m = face_box_mask(100, 0.6, 0.1)  # box 20..80, a 6-pixel ramp
    assert m[:20].max() == 0 and m[:, 80:].max() == 0 and m[50, 50] == 1.0
    assert np.allclose(m[50, 20:26], (np.arange(6) + 0.5) / 6) and np.allclose(m[50, 74:80], m[50, 20:26][::-1])
    assert np.array_equal(face_box_mask(100, 0.6, 0.0) > 0, face_box_mask(100, 0.6, 0.0) == 1.0)
    torch.manual_seed(0)
    cfg = FaDeNetConfig.profile("tiny", input_sigma=2.0)
    unet = build_unet(cfg)
    crops = crops_small[:3]
    deid = FaDeNetDeidentifier.from_network(cfg, unet, name="fb")
    hard = deid.deidentify(crops)
    deid.feather = 0.2
    soft = deid.deidentify(crops)
    assert deid.name == "fb_f0.2"
    x0, y0, x1, y1 = face_box(crops.shape[1], cfg.face_region)
    outside = np.ones(crops.shape[1:3], bool)
    outside[y0:y1, x0:x1] = False
    assert np.array_equal(soft[:, outside], crops[:, outside])  # nothing leaks past the box
    c = crops.shape[1] // 2
    assert np.array_equal(soft[:, c, c], hard[:, c, c])  # the centre: all of the change
    edge = np.abs(soft[:, y0:y1, x0].astype(int) - crops[:, y0:y1, x0]).mean()
    assert edge < np.abs(hard[:, y0:y1, x0].astype(int) - crops[:, y0:y1, x0]).mean()
    deid.strength = 0.5
    assert deid.name == "fb_f0.2_s0.5"
    deid.feather = 0.0
    assert deid.name == "fb_s0.5"
    with pytest.raises(ValueError, match="feather"):
        deid.feather = 0.5
    with pytest.raises(ValueError, match="facebox"):
        FaDeNetDeidentifier.from_network(cfg, unet, name="r", mode="resize", feather=0.1)
    shipped = load_fadenet_deidentifier("fadenet_f0.03_s1")
    assert (shipped.feather, shipped.strength) == (0.03, 1.0)


def test_detection_and_chroma_terms_on_known_tensors(tmp_path, crops_small):
    """``detect_weight``: -log of ONet's face probability, zero once the face is confident; ``chroma_weight``:
    blind to a brightness change, not to a colour band; both train and are logged."""
    from deidkit.losses.fadenet import chroma_distance, detection_loss
    from deidkit.recognizers import load_five_landmarks

    p = torch.tensor([0.999, 0.99, 0.5, 0.0])
    d = detection_loss(p)
    assert d[0] == 0 and d[1] == pytest.approx(0.0, abs=1e-6)
    assert d[2] == pytest.approx(math.log(0.99 / 0.5), rel=1e-5) and torch.isfinite(d[3]) and d[3] > d[2]
    torch.manual_seed(0)
    x = torch.rand(2, 3, 48, 48) * 1.6 - 0.8
    brighter = x + 0.1  # the same amount on R, G and B: luminance only
    band = x.clone()
    band[:, 0, 20:28] += 0.3  # a red band across the face
    band[:, 2, 20:28] -= 0.3
    assert torch.allclose(chroma_distance(x, brighter), torch.zeros(2), atol=1e-6)
    assert (chroma_distance(x, band) > 0.02).all()
    # ONet calls real LFW face boxes faces and a flat grey square not
    from deidkit.data.templates import CANONICAL_ZOOM

    size = crops_small.shape[1]
    side = int(round(CANONICAL_ZOOM * size))
    top = (size - side) // 2
    box = crops_small[:4, top:top + side, top:top + side].copy()
    faces = torch.from_numpy(box).permute(0, 3, 1, 2).float() / 127.5 - 1
    onet = load_five_landmarks()
    assert (onet.face_probability(faces) > 0.9).all()
    assert (onet.face_probability(torch.zeros(1, 3, side, side)) < 0.5).all()
    fcfg = FaDeNetConfig.profile("tiny", image_size=64, batch_size=6, epochs=1, detect_weight=0.5, chroma_weight=1.0)
    res = train_fadenet(fcfg, data=toy_data(size=64), critic=EmbeddingCritic(MobileFaceNetMS1M(), 3),
                        run_dir=tmp_path / "f", progress=False)
    assert {"detect", "face_prob", "chroma"} <= set(res.log.columns)
    assert res.log["face_prob"].between(0, 1).all() and (res.log["chroma"] >= 0).all()
    for field in ("detect_weight", "chroma_weight"):
        with pytest.raises(ValueError, match=field):
            FaDeNetConfig.profile("tiny", **{field: -1.0})


def test_push_term_and_fine_tuning_from_a_snapshot(tmp_path):
    """``push_weight``: the cosine of the critic's flattened mid-level maps (output vs original) above
    ``push_margin`` is logged and starts near 1 (the residual U-Net starts as the identity); ``init_from`` starts a
    run from another run's epoch snapshot (its U-Net exactly), and a missing file or bad margin is one clear error."""
    critic = EmbeddingCritic(MobileFaceNetMS1M(), 3)
    data = toy_data(size=64)
    fcfg = FaDeNetConfig.profile("tiny", image_size=64, batch_size=6, epochs=1, push_weight=0.5,
                                 push_layers=("stage2",))
    res = train_fadenet(fcfg, data=data, critic=critic, run_dir=tmp_path / "a", progress=False)
    assert "push_sim" in res.log.columns and res.log["push_sim"].iloc[0] > 0.9
    assert res.log["push_sim"].between(0, 1 + 1e-5).all()
    snap = tmp_path / "a" / "epochs" / "epoch001.pt"
    from deidkit.train.fadenet import init_state

    state = init_state(str(snap))
    trained = torch.load(snap, weights_only=True)["unet"]
    assert all(torch.equal(state[k], trained[k]) for k in trained)
    # a zero-step run (epochs=0) started from the snapshot holds exactly its weights
    ft = FaDeNetConfig.profile("tiny", image_size=64, batch_size=6, epochs=0, init_from=str(snap))
    res2 = train_fadenet(ft, data=data, critic=critic, run_dir=tmp_path / "b", progress=False)
    assert all(torch.equal(res2.unet.state_dict()[k], trained[k]) for k in trained)
    with pytest.raises(FileNotFoundError, match="nosuch.pt"):
        init_state(str(tmp_path / "nosuch.pt"))
    # the shipped model as a starting point: float32, and it fits the U-Net of its own recorded configuration
    from deidkit.pretrained import read_manifest

    shipped = init_state("pretrained:fadenet")
    cfg = read_manifest()["models"]["fadenet"]["config"]
    unet = build_unet(FaDeNetConfig.profile(cfg["profile_name"]))
    unet.load_state_dict(shipped)
    assert all(v.dtype == torch.float32 for v in shipped.values() if v.is_floating_point())
    with pytest.raises(ValueError, match="push_margin"):
        FaDeNetConfig.profile("tiny", push_margin=1.5)
    with pytest.raises(ValueError, match="push_weight"):
        FaDeNetConfig.profile("tiny", push_weight=-1.0)


def test_push_on_views_pairs_each_view_of_the_output_with_the_same_view_of_the_input(tmp_path):
    """``push_on_views``: one random draw resamples output and input alike (an unchanged image gives identical
    views, so its push cosine is 1 on every view); training with it logs the push term over the views."""
    from deidkit.train.augment import random_views

    torch.manual_seed(0)
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    vfx, vx = random_views(torch.cat([x, x], dim=1)).split(3, dim=1)
    assert torch.equal(vfx, vx) and not torch.allclose(vx, x)
    critic = EmbeddingCritic(MobileFaceNetMS1M(), 3)
    fcfg = FaDeNetConfig.profile("tiny", image_size=64, batch_size=6, epochs=1, push_weight=0.5, critic_views=2,
                                 push_layers=("stage2",), push_on_views=True)
    res = train_fadenet(fcfg, data=toy_data(size=64), critic=critic, run_dir=tmp_path / "v", progress=False)
    assert res.log["push_sim"].iloc[0] > 0.9 and res.log["push_sim"].between(0, 1 + 1e-5).all()


def test_extra_critic_joins_the_embed_and_push_terms(tmp_path, monkeypatch):
    """``extra_critic_profile``: a second frozen critic (loaded through ensure_critic by its profile) whose embedding
    cosine is logged (near 1 at the start: the U-Net starts as the identity) and averaged into the embed and push
    terms; it must be another MobileFaceNet critic and needs one of those terms."""
    import deidkit.train.fadenet as fadenet_training

    torch.manual_seed(1)
    second = EmbeddingCritic(MobileFaceNetMS1M(), 3)
    asked = []

    def fake_ensure(cfg, data=None, progress=True):
        asked.append(cfg.name)
        return second, data.identities, tmp_path / cfg.name

    monkeypatch.setattr(fadenet_training, "ensure_critic", fake_ensure)
    torch.manual_seed(0)
    critic = EmbeddingCritic(MobileFaceNetMS1M(), 3)
    fcfg = FaDeNetConfig.profile("tiny", image_size=64, batch_size=6, epochs=1, embed_weight=0.5, push_weight=0.5,
                                 push_layers=("stage2",), extra_critic_profile="robust")
    res = train_fadenet(fcfg, data=toy_data(size=64), critic=critic, run_dir=tmp_path / "e", progress=False)
    assert asked == ["critic-robust"]
    assert res.log["extra_embed_sim"].iloc[0] > 0.9 and res.log["extra_embed_sim"].between(-1, 1 + 1e-5).all()
    assert res.log["push_sim"].iloc[0] > 0.9
    with pytest.raises(ValueError, match="embed or push term"):
        FaDeNetConfig.profile("tiny", extra_critic_profile="robust")
    with pytest.raises(ValueError, match="other than the main one"):
        FaDeNetConfig.profile("tiny", embed_weight=0.5, extra_critic_profile="tiny")
    with pytest.raises(ValueError, match="unknown critic profile"):
        FaDeNetConfig.profile("tiny", embed_weight=0.5, extra_critic_profile="nosuch")


def test_ssim_index_is_the_evaluations_ssim_and_the_ssim_term_trains(tmp_path):
    """``ssim_index`` (torch, differentiable) gives scikit-image's SSIM as :func:`deidkit.eval.quality.ssim`
    computes it on the same images in [-1, 1]; the ``ssim_weight`` term is logged as 1 - SSIM."""
    from deidkit.data.images import to_model_range
    from deidkit.eval.quality import ssim
    from deidkit.losses.fadenet import ssim_index

    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (3, 40, 40, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-60, 60, a.shape), 0, 255).astype(np.uint8)

    def t(u):
        return to_model_range(torch.from_numpy(u).permute(0, 3, 1, 2))

    got = ssim_index(t(a).double(), t(b).double()).numpy()
    np.testing.assert_allclose(got, ssim(a, b), atol=1e-6)
    assert torch.allclose(ssim_index(t(a), t(a)), torch.ones(3))
    critic = EmbeddingCritic(MobileFaceNetMS1M(), 3)
    fcfg = FaDeNetConfig.profile("tiny", image_size=64, batch_size=6, epochs=1, ssim_weight=1.0)
    res = train_fadenet(fcfg, data=toy_data(size=64), critic=critic, run_dir=tmp_path / "s", progress=False)
    assert res.log["ssim_loss"].between(0, 2).all() and res.log["ssim_loss"].iloc[0] < 0.05
    with pytest.raises(ValueError, match="ssim_weight"):
        FaDeNetConfig.profile("tiny", ssim_weight=-1.0)


def test_snapshot_candidates_load_again_by_their_names(tmp_path, monkeypatch):
    """``deidkit select``'s candidates: one per snapshot x feather x strength, keyed by snapshot and options, and
    each one's name loads the same de-identifier through ``load_deidentifier``."""
    from deidkit.deidentifiers import load_deidentifier
    from deidkit.eval.selection import fadenet_snapshot_candidates
    from deidkit.train.critic import runs_dir

    monkeypatch.setenv("DEIDKIT_CACHE", str(tmp_path))
    cfg = FaDeNetConfig.profile("tiny", batch_size=6, epochs=2, input_sigma=1.0, lr=1e-2)
    train_fadenet(cfg, data=toy_data(), critic=EmbeddingCritic(MobileFaceNetMS1M(), 3),
                  run_dir=runs_dir() / "fadenet-a", progress=False)
    cands = fadenet_snapshot_candidates([runs_dir() / "fadenet-a"], feathers=[0.0, 0.05], strengths=[1.0, 0.9])
    assert sorted(cands) == sorted(f"epochs/epoch{e:03d}.pt{o}" for e in (1, 2)
                                   for o in ("", "@s0.9", "@f0.05", "@f0.05@s0.9"))
    crops = random_faces(2, 64, seed=5)
    one = cands["epochs/epoch002.pt@f0.05@s0.9"]
    assert (one.name, one.feather, one.strength) == ("epoch002_f0.05_s0.9", 0.05, 0.9)
    again = load_deidentifier("fadenet-a@" + one.name)  # a single run: the caller adds the run (the CLI's records do)
    assert (again.feather, again.strength) == (0.05, 0.9)
    assert np.array_equal(again.deidentify(crops), one.deidentify(crops))
    first, last = cands["epochs/epoch001.pt"], cands["epochs/epoch002.pt"]
    assert not np.array_equal(first.deidentify(crops), last.deidentify(crops))
    # several runs: keys and names carry the run; only the epochs asked for
    (runs_dir() / "fadenet-b").symlink_to(runs_dir() / "fadenet-a")
    two = fadenet_snapshot_candidates([runs_dir() / "fadenet-a", runs_dir() / "fadenet-b"], epochs=[2], feathers=[0.05])
    assert sorted(two) == ["fadenet-a/epochs/epoch002.pt@f0.05", "fadenet-b/epochs/epoch002.pt@f0.05"]
    b = two["fadenet-b/epochs/epoch002.pt@f0.05"]
    assert b.name == "fadenet-b@epoch002_f0.05"
    assert np.array_equal(load_deidentifier(b.name).deidentify(crops), b.deidentify(crops))


def test_luma_only_unet_changes_brightness_not_colour():
    from deidkit.models.unet import UNet

    torch.manual_seed(0)
    u = UNet(width=4, depth=2, residual=True, out_activation="tanh", luma_only=True)
    with torch.no_grad():
        u.head.weight.normal_(0, 0.5)  # a trained-looking, strong correction
        u.head.bias.fill_(0.2)
    x = torch.rand(2, 3, 32, 32) * 1.2 - 0.6  # away from the clipping range
    with torch.no_grad():
        y = u(x)
    to_cbcr = torch.tensor(BT601_CHROMA)
    # the shared constant is OpenCV's YCrCb conversion (an independent reference), offsets aside
    px = np.array([[[200, 40, 90], [10, 220, 130]]], np.uint8)
    ycrcb = cv2.cvtColor(px, cv2.COLOR_RGB2YCrCb).astype(np.float32)
    cbcr = px.astype(np.float32) @ to_cbcr.numpy().T + 128
    assert np.abs(cbcr - ycrcb[..., [2, 1]]).max() <= 0.6
    chroma = lambda z: torch.einsum("kc,nchw->nkhw", to_cbcr, z)  # noqa: E731
    assert (y - x).abs().mean() > 0.05  # the luminance moved
    assert (chroma(y) - chroma(x)).abs().max() < 1e-5  # the colour did not
    # gradients reach the network through the grey correction
    u(x).sum().backward()
    assert u.head.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="luma_only"):
        UNet(width=4, depth=2, residual=False, luma_only=True)
    assert build_unet(FaDeNetConfig.profile("tiny", luma_only=True)).luma_only


def test_array_batches_augment_each_target_with_its_images_draw():
    x, y = random_faces(8, 32), np.arange(8)
    torch.manual_seed(0)
    xb, yb, tb = next(iter(ArrayBatches(x, y, 4, seed=1, epoch=0, targets=x.copy())))
    assert torch.equal(xb, tb) and len(yb) == 4  # same draw: identical images stay identical after augmentation
    xb, _, tb = next(iter(ArrayBatches(x, y, 4, seed=1, epoch=0, augment=False, targets=255 - x)))
    assert torch.allclose(tb, -xb, atol=1e-6)
    with pytest.raises(ValueError, match="targets"):
        ArrayBatches(x, y, 4, seed=1, epoch=0, targets=x[:3])


def test_teacher_target_trains_and_is_computed_once(tmp_path, monkeypatch):
    """``teacher``: the image terms pull the output to another de-identifier's output (computed once per run and
    kept in the run folder, recomputed when the teacher changes); ``teacher_weight`` adds the logged pixel term."""
    import deidkit.deidentifiers as deids
    from deidkit.baselines import get_deidentifier
    from deidkit.train.fadenet import teacher_outputs

    data = toy_data(size=64)
    fcfg = FaDeNetConfig.profile("tiny", image_size=64, batch_size=6, epochs=1, teacher="blur_sigma8",
                                 teacher_weight=1.0)
    res = train_fadenet(fcfg, data=data, critic=EmbeddingCritic(MobileFaceNetMS1M(), 3), run_dir=tmp_path / "t",
                        progress=False)
    with np.load(tmp_path / "t" / "teacher.npz") as z:
        assert str(z["teacher"]) == "blur_sigma8"
        np.testing.assert_array_equal(z["images"], get_deidentifier("blur_sigma8").deidentify(data.train_images))
    assert (res.log["teacher_l1"] > 0).all() and np.isfinite(res.log["loss"]).all()
    calls = []
    real = deids.load_deidentifier
    monkeypatch.setattr(deids, "load_deidentifier", lambda name, *a: calls.append(name) or real(name, *a))
    teacher_outputs("blur_sigma8", data.train_images, tmp_path / "t", progress=False)
    assert calls == []  # read back, not recomputed
    out = teacher_outputs("blur_sigma4", data.train_images, tmp_path / "t", progress=False)
    assert calls == ["blur_sigma4"]
    np.testing.assert_array_equal(out, get_deidentifier("blur_sigma4").deidentify(data.train_images))
    with pytest.raises(ValueError, match="teacher"):
        FaDeNetConfig.profile("tiny", teacher_weight=1.0)


def test_detail_basis_unet_outputs_the_blurred_input_plus_basis_detail():
    """A ``detail_basis`` U-Net's output is tanh(atanh(blurred input) + mean + sum_k c_k B_k) with |c_k| <= 2:
    whatever it learns, its change lies in the span of the installed face-detail components."""
    from deidkit.models.unet import UNet

    u = UNet(width=4, depth=2, residual=True, out_activation="tanh", input_sigma=1.0, input_region=0.65,
             detail_basis=3, image_size=32).eval()
    assert not hasattr(u, "up")  # the expansive path is neither built nor run
    g = torch.Generator().manual_seed(0)
    basis, mean = 0.1 * torch.randn(3, 3, 32, 32, generator=g), 0.05 * torch.randn(1, 3, 32, 32, generator=g)
    u.set_detail_basis(basis, mean)
    with torch.no_grad():
        u.coefficients.weight.normal_(0, 1.0, generator=g)
        u.coefficients.bias.copy_(torch.tensor([10.0, -10.0, 0.0]))  # far from the start: saturated at +-2
        x = torch.rand(4, 3, 32, 32, generator=g) * 1.6 - 0.8
        out = u(x)
        change = torch.atanh(out.clamp(-0.999999, 0.999999)) - torch.atanh(u.blurred_input(x).clamp(-0.999, 0.999))
        coef = torch.linalg.lstsq(basis.flatten(1).T, (change - mean).flatten(1).T).solution.T
    assert torch.allclose(coef @ basis.flatten(1), (change - mean).flatten(1), atol=1e-3)
    assert coef.abs().max() <= 2.0 + 1e-3 and coef[:, 0].min() > 1.9 and coef[:, 1].max() < -1.9
    assert torch.equal(u.state_dict()["basis"], basis)  # saved with the weights
    with pytest.raises(ValueError, match="do not fit"):
        u.set_detail_basis(basis[:2], mean)
    with pytest.raises(ValueError, match="works at"):
        u(torch.zeros(1, 3, 48, 48))
    with pytest.raises(ValueError, match="detail_basis needs"):
        UNet(width=4, depth=2, residual=True, out_activation="tanh", detail_basis=3, image_size=32)
    with pytest.raises(ValueError, match="detail_basis needs"):
        FaDeNetConfig.profile("tiny", detail_basis=4)  # no input blur


def test_shape_warp_moves_the_face_box_only_and_starts_from_a_snapshot_without_it(tmp_path):
    """``shape_warp``: with its head at zero the network is the detail-basis network it started from (a snapshot
    without the warp loads into it, anything else is refused); a warp moves content inside the face box, by at most
    ``warp_px``, and leaves every pixel outside it as it was; gradients reach the warp head."""
    from deidkit.train.fadenet import load_init_state

    kw = dict(width=4, depth=2, residual=True, out_activation="tanh", input_sigma=1.0, input_region=0.5,
              detail_basis=3, image_size=32)
    plain, warped = UNet(**kw).eval(), UNet(**kw, shape_warp=3, warp_px=2.0).eval()
    g = torch.Generator().manual_seed(0)
    plain.set_detail_basis(0.1 * torch.randn(3, 3, 32, 32, generator=g), 0.05 * torch.randn(1, 3, 32, 32, generator=g))
    load_init_state(warped, plain.state_dict(), "plain")
    x = torch.rand(2, 3, 32, 32, generator=g) * 1.6 - 0.8
    with torch.no_grad():
        assert torch.allclose(warped(x), plain(x), atol=1e-3)  # the head starts (almost) at no warp
        warped.warp.weight.zero_()
        assert torch.equal(warped(x), plain(x))
        warped.warp.bias.copy_(torch.linspace(-3, 3, 18))
        out, ref = warped(x), plain(x)
        field = warped.warp_field(torch.zeros(1, 16, 8, 8))
        applied = warped.warp_field_of(x)
    assert field.abs().max() <= 2.0 and field.abs().max() > 1.0
    assert torch.allclose(applied, field.expand_as(applied))  # the bias alone sets it (weights are zero)
    outside = torch.ones(32, 32, dtype=torch.bool)
    outside[8:24, 8:24] = False
    assert torch.equal(out[..., outside], ref[..., outside]) and (out - ref).abs().max() > 0.05
    # the de-identifier reports the stretch of the warp it applies (deidkit select --max-warp-stretch); none without
    from deidkit.eval.quality import warp_stretch

    cfg = FaDeNetConfig.profile("tiny", image_size=32)
    faces = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    stretch = FaDeNetDeidentifier.from_network(cfg, warped, "w").warp_stretch(faces)
    assert np.allclose(stretch, warp_stretch(field.numpy())[0]) and stretch.min() > 0.05
    assert not FaDeNetDeidentifier.from_network(cfg, plain, "p").warp_stretch(faces).any()
    warped.train()
    warped(x).sum().backward()
    assert warped.warp.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="not a state of this U-Net"):
        load_init_state(plain, warped.state_dict(), "warped")
    with pytest.raises(ValueError, match="no warp"):
        plain.warp_field_of(x)
    with pytest.raises(ValueError, match="shape_warp"):
        UNet(**kw, shape_warp=3)
    with pytest.raises(ValueError, match="shape_warp"):
        FaDeNetConfig.profile("tiny", shape_warp=3, warp_px=2.0)  # no detail basis


def test_shape_basis_warps_along_real_face_geometry_within_its_bound():
    """``shape_basis``: the fitted modes are orthogonal principal components of the flow from the mean face, zero
    outside the face box, ordered by their spread; the network's warp is a combination of them whose coefficients'
    length never exceeds ``shape_bound``; it starts as no warp from a snapshot without it; gradients reach it."""
    from deidkit.train.fadenet import fit_shape_basis, load_init_state

    kw = dict(width=4, depth=2, residual=True, out_activation="tanh", input_sigma=1.0, input_region=0.5,
              detail_basis=3, image_size=32)
    plain, shaped = UNet(**kw).eval(), UNet(**kw, shape_basis=4, shape_bound=2.0).eval()
    # faces whose one feature (a dark blob) sits at a random place: the geometry varies, the texture does not
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:32, :32]
    faces = []
    for dy, dx in rng.uniform(-2.5, 2.5, (60, 2)):
        blob = 200 - 150 * np.exp(-((yy - 16 - dy) ** 2 + (xx - 16 - dx) ** 2) / 12.0)
        faces.append(np.repeat(blob[..., None], 3, axis=2).astype(np.uint8))
    modes = fit_shape_basis(shaped, np.stack(faces), 4)
    assert modes.shape == (4, 2, 32, 32)
    flat = modes.flatten(1).double()
    gram = flat @ flat.T
    assert torch.allclose(gram - torch.diag(torch.diag(gram)), torch.zeros(4, 4, dtype=torch.float64), atol=1e-3)
    spread = torch.diag(gram)
    assert (spread[:-1] >= spread[1:]).all() and spread[0] > 10 * spread[2]  # two real degrees of freedom (dx, dy)
    outside = torch.ones(32, 32, dtype=torch.bool)
    outside[8:24, 8:24] = False
    assert modes[..., outside].abs().max() < 1e-6
    shaped.set_shape_basis(modes)
    g = torch.Generator().manual_seed(0)
    plain.set_detail_basis(0.1 * torch.randn(3, 3, 32, 32, generator=g), 0.05 * torch.randn(1, 3, 32, 32, generator=g))
    load_init_state(shaped, plain.state_dict(), "plain")  # the basis stays as fitted
    assert torch.equal(shaped.shape_modes, modes)
    x = torch.rand(2, 3, 32, 32, generator=g) * 1.6 - 0.8
    with torch.no_grad():
        assert torch.allclose(shaped(x), plain(x), atol=1e-3)
        shaped.shape.bias.copy_(torch.tensor([30.0, -40.0, 0.0, 0.0]))
        shaped.shape.weight.zero_()
        c = shaped.shape_coefficients(torch.zeros(1, 16, 8, 8))
        field = shaped.warp_field_of(x)
        out, ref = shaped(x), plain(x)
    assert c.norm() <= 2.0 + 1e-5 and c.norm() > 1.99  # saturated at the bound, in the head's direction
    assert torch.allclose(c / c.norm(), torch.tensor([[0.6, -0.8, 0.0, 0.0]]), atol=1e-5)
    expected = torch.einsum("nk,kchw->nchw", c, modes) * shaped.warp_window
    assert torch.allclose(field, expected.expand_as(field), atol=1e-6)
    assert torch.equal(out[..., outside], ref[..., outside]) and (out - ref).abs().max() > 0.01
    shaped.train()
    with torch.no_grad():  # away from saturation, where tanh passes gradients
        shaped.shape.bias.fill_(0.1)
        shaped.shape.weight.normal_(0, 0.1, generator=g)
    shaped(x).sum().backward()
    assert shaped.shape.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="shape_basis needs"):
        UNet(**kw, shape_basis=4, shape_bound=2.0, shape_warp=3, warp_px=1.0)
    with pytest.raises(ValueError, match="shape_basis needs"):
        FaDeNetConfig.profile("tiny", shape_basis=4, shape_bound=2.0)  # no detail basis
    with pytest.raises(ValueError, match="do not fit"):
        shaped.set_shape_basis(modes[:2])


def test_detail_basis_is_the_scaled_principal_components_of_the_removed_detail(tmp_path):
    """fit_detail_basis: orthogonal components, each scaled to the standard deviation of the training faces'
    projections on it (largest first); a subspace run trains, resumes with the same basis and loads as a
    de-identifier."""
    from deidkit.train.fadenet import fit_detail_basis

    cfg = FaDeNetConfig.profile("tiny", image_size=64, batch_size=6, epochs=1, input_sigma=2.0, detail_basis=4)
    unet = build_unet(cfg)
    images = random_faces(60, 64, seed=3)
    basis, mean = fit_detail_basis(unet, images, 4)
    flat = basis.flatten(1)
    gram = flat @ flat.T
    sd = gram.diagonal().sqrt()
    assert torch.allclose(gram / sd[:, None] / sd[None, :], torch.eye(4), atol=1e-4)
    assert (sd[:-1] >= sd[1:] - 1e-6).all()
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    r = (torch.atanh(x.clamp(-0.999, 0.999)) - torch.atanh(unet.blurred_input(x).clamp(-0.999, 0.999))).flatten(1)
    proj = (r - mean.flatten(1)) @ flat.T / sd**2  # in units of each component's scale
    assert torch.allclose(proj.std(0), torch.ones(4), atol=0.05)
    data = toy_data(size=64)
    critic = EmbeddingCritic(MobileFaceNetMS1M(), 3)
    res = train_fadenet(cfg, data=data, critic=critic, run_dir=tmp_path / "s", progress=False)
    trained = res.unet.state_dict()["basis"].clone()
    assert trained.abs().sum() > 0
    again = train_fadenet(cfg, data=data, critic=critic, run_dir=tmp_path / "s", progress=False)
    assert torch.equal(again.unet.state_dict()["basis"], trained)
    deid = FaDeNetDeidentifier(tmp_path / "s")
    assert torch.equal(deid.unet.basis, trained)
    out = deid.deidentify(random_faces(2, 64, seed=4))
    assert out.shape == (2, 64, 64, 3) and out.dtype == np.uint8


class _PaintsLitDetail(nn.Module):
    """A stand-in FaDeNet that does what the subspace model did to the Hamilton clip's dark audience: it adds the
    same well-lit, high-contrast detail (and brightness) to whatever face box it is given."""

    def __init__(self, unet: UNet, region: float, amplitude: float = 0.3, light: float = 0.4) -> None:
        super().__init__()
        self.unet, self.region, self.amplitude, self.light = unet, region, amplitude, light

    def blurred_input(self, x: torch.Tensor) -> torch.Tensor:
        return self.unet.blurred_input(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from deidkit.eval.quality import face_box

        side = x.shape[-1]
        x0, _, x1, _ = face_box(side, self.region)
        stripes = torch.zeros_like(x)
        wave = torch.sign(torch.sin(torch.arange(x1 - x0) * 1.3))[None, None, :, None]
        stripes[..., x0:x1, x0:x1] = self.amplitude * wave + self.light
        return (self.blurred_input(x) + stripes).clamp(-1, 1)


def test_colour_match_and_detail_cap_keep_a_dark_soft_face_dark_and_soft(crops_small):
    """``colour_match``: the face box's mean colour is the input's again; ``detail_cap`` k: on a soft, low-contrast
    face the painted detail shrinks to at most k x what the input blur removed, while a detailed face keeps all of
    it (the cap does not bind); both name the model (``_cm``, ``_dc<k>``), load by name and need a blurred box."""
    from deidkit.deidentifiers.fadenet import face_box_mask, load_fadenet_deidentifier

    cfg = FaDeNetConfig.profile("tiny", input_sigma=2.0)
    fake = _PaintsLitDetail(build_unet(cfg), cfg.face_region)
    size = crops_small.shape[1]
    yy = np.linspace(0, 6, size, dtype=np.float32)
    dark = np.clip(25 + yy[:, None, None] + 0 * yy[None, :, None] + np.array([8, 0, -5]), 0, 255)
    dark = np.repeat(dark[None], 2, 0).astype(np.uint8)  # a dark, nearly flat (out-of-focus) face
    box = face_box_mask(size, cfg.face_region, 0.0) > 0

    plain = FaDeNetDeidentifier.from_network(cfg, fake, name="fb").deidentify(dark)
    assert plain[:, box].mean() - dark[:, box].mean() > 30  # lit, as the video showed
    matched = FaDeNetDeidentifier.from_network(cfg, fake, name="fb", colour_match=True).deidentify(dark)
    assert np.abs(matched[:, box].reshape(-1, 3).mean(0) - dark[:, box].reshape(-1, 3).mean(0)).max() < 2.0
    deid = FaDeNetDeidentifier.from_network(cfg, fake, name="fb")
    deid.colour_match, deid.detail_cap = True, 1.5
    assert deid.name == "fb_cm_dc1.5"
    capped = deid.deidentify(dark)
    assert capped[:, box].std(axis=0).mean() < 0.2 * matched[:, box].std(axis=0).mean() + 1.0
    assert capped[:, box].astype(float).std() < 3 * dark[:, box].astype(float).std() + 2.0

    faint = _PaintsLitDetail(fake.unet, cfg.face_region, amplitude=0.02, light=0.0)
    detailed = crops_small[:3]  # real faces: more detail than this stand-in adds, so the cap does not bind
    loose = FaDeNetDeidentifier.from_network(cfg, faint, name="fb", detail_cap=1.5).deidentify(detailed)
    assert np.abs(loose.astype(int) - FaDeNetDeidentifier.from_network(cfg, faint, name="fb").deidentify(
        detailed)).max() <= 1

    with pytest.raises(ValueError, match="input_sigma"):
        FaDeNetDeidentifier.from_network(FaDeNetConfig.profile("tiny"), build_unet(FaDeNetConfig.profile("tiny")),
                                         name="r", mode="facebox", detail_cap=1.5)
    with pytest.raises(ValueError, match="facebox"):
        FaDeNetDeidentifier.from_network(cfg, fake, name="r", mode="resize", colour_match=True)
    shipped = load_fadenet_deidentifier("fadenet_cm_dc1.5")
    assert (shipped.colour_match, shipped.detail_cap) == (True, 1.5)


def test_online_adversary_reads_back_a_linear_leak_and_the_term_trains(tmp_path):
    """deidkit.train.adversary: outputs whose embedding is a fixed linear map of the original's are read back (cosine
    near 1) by the freshly fitted head, unrelated ones are not; the bank keeps the recent pairs only; FaDeNet's
    ``adversary_weight`` trains, logs ``adversary_cos`` and refuses bad settings."""
    from deidkit.train.adversary import OnlineAdversary

    g = torch.Generator().manual_seed(0)
    mix = torch.linalg.qr(torch.randn(16, 16, generator=g))[0]  # a rotation: all the identity, none of it visible
    leak, noise = OnlineAdversary(bank=64, ridge=0.01), OnlineAdversary(bank=64, ridge=0.01)
    for _ in range(8):
        orig = torch.randn(16, 16, generator=g)
        out = (orig @ mix).requires_grad_(True)
        penalty, read_leak = leak(out, orig)
        _, read_noise = noise(torch.randn(16, 16, generator=g), orig)
    assert read_leak.mean() > 0.95 and read_noise.mean() < 0.6
    penalty.backward()
    assert out.grad is not None and out.grad.abs().sum() > 0  # differentiable in the output's embedding
    assert sum(len(a) for a, _ in leak.pairs) <= 64 + 16
    fcfg = FaDeNetConfig.profile("tiny", image_size=64, batch_size=6, epochs=1, adversary_weight=1.0,
                                 adversary_bank=12, adversary_ridge=0.01)
    res = train_fadenet(fcfg, data=toy_data(size=64), critic=EmbeddingCritic(MobileFaceNetMS1M(), 3),
                        run_dir=tmp_path / "f", progress=False)
    assert res.log["adversary_cos"].between(-1, 1).all() and (res.log["adversary_cos"] != 0).all()
    # off by default in every field, so runs and sweep hashes from before the term existed are unchanged
    from deidkit.cache import config_payload

    assert not any(k.startswith("adversary") for k in config_payload(FaDeNetConfig.profile("quick")))
    for bad in (dict(adversary_weight=-1.0), dict(adversary_weight=1.0, adversary_bank=8),
                dict(adversary_weight=1.0, adversary_ridge=0.1, adversary_bank=1), dict(adversary_margin=1.0)):
        with pytest.raises(ValueError, match="adversary"):
            FaDeNetConfig.profile("tiny", **bad)


def test_collapse_to_the_identity_map_is_detected_from_the_log():
    """A change term that falls to a fiftieth of its peak by the end of the last epoch is a collapse (measured on
    a quick run: 0.04 -> 1e-4 in one step); a slow decline, a change that never started, a short log are not."""
    from deidkit.train.loop import collapsed_in_last_epoch

    def log(values, per_epoch=50):
        return pd.DataFrame({"epoch": np.arange(len(values)) // per_epoch, "l1": values})

    rising = np.r_[np.zeros(5), np.full(95, 0.04)]
    assert collapsed_in_last_epoch(log(np.r_[rising, np.full(30, 0.04), np.full(20, 1e-4)]))[0]
    assert not collapsed_in_last_epoch(log(np.r_[rising, np.linspace(0.04, 0.01, 50)]))[0]  # a slow decline
    assert not collapsed_in_last_epoch(log(np.full(150, 1e-5)))[0]  # never changed anything (below the floor)
    assert not collapsed_in_last_epoch(log(np.full(10, 0.04)))[0]  # too short to tell
    ok, last, peak = collapsed_in_last_epoch(log(np.r_[rising, np.full(30, 0.04), np.full(20, 1e-4)]))
    assert last == pytest.approx(1e-4) and peak == pytest.approx(0.04)


@pytest.mark.parametrize("epoch", [1, 2])
def test_a_collapsed_epoch_runs_again_at_half_the_learning_rate(tmp_path, monkeypatch, epoch):
    """When an epoch ends collapsed, it runs again from where it started at half the learning rate: recorded in
    recoveries.json and the metrics, every step logged once, every epoch's held-out row once. A collapse in the
    first epoch restarts the run exactly as a run at half the rate from the start would be; one that halving
    never cures is a clear error."""
    import deidkit.train.fadenet as fadenet_training
    from deidkit.train.loop import TrainingCollapsed

    real = fadenet_training.collapsed_in_last_epoch
    calls = []

    def collapse_once(log):
        calls.append(int(log["epoch"].max()) + 1)
        hit = calls.count(epoch) == 1 and calls[-1] == epoch
        return (True, 1e-5, 0.04) if hit else real(log)

    monkeypatch.setattr(fadenet_training, "collapsed_in_last_epoch", collapse_once)
    critic = EmbeddingCritic(MobileFaceNetMS1M(), 3)
    data = toy_data(size=64)
    cfg = FaDeNetConfig.profile("tiny", image_size=64, batch_size=3, epochs=2, lr=2e-3)
    res = train_fadenet(cfg, data=data, critic=critic, run_dir=tmp_path / "r", progress=False)
    rec = json.loads((tmp_path / "r" / "recoveries.json").read_text())
    assert [(r["epoch"], r["lr"]) for r in rec] == [(epoch, 1e-3)] and res.metrics["recoveries"] == rec
    assert list(res.epochs["epoch"]) == [1, 2]
    assert list(res.log["step"]) == list(range(len(res.log)))
    assert not (tmp_path / "r" / "checkpoint.epoch_start.pt").exists()  # kept only while the run trains
    ckpt = torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=True)
    assert ckpt["optimizers"]["adam"]["param_groups"][0]["lr"] == pytest.approx(1e-3)
    if epoch == 1:
        monkeypatch.setattr(fadenet_training, "collapsed_in_last_epoch", real)
        half = train_fadenet(FaDeNetConfig.profile("tiny", image_size=64, batch_size=3, epochs=2, lr=1e-3),
                             data=data, critic=critic, run_dir=tmp_path / "half", progress=False)
        assert all(torch.equal(res.unet.state_dict()[k], half.unet.state_dict()[k]) for k in half.unet.state_dict())
    else:
        monkeypatch.setattr(fadenet_training, "collapsed_in_last_epoch", lambda log: (True, 1e-5, 0.04))
        with pytest.raises(TrainingCollapsed, match="collapsed to the identity map"):
            train_fadenet(cfg, data=data, critic=critic, run_dir=tmp_path / "never", progress=False)
