"""The slightly robust MS1M backbone of the ``robust`` critic (deidkit.train.robust)."""

import numpy as np
import pytest
import torch

from deidkit.configs import CriticConfig, FaDeNetConfig
from deidkit.recognizers import MS1MFeatureExtractor
from deidkit.train.critic import load_ms1m_backbone
from deidkit.train.robust import perturb_away, train_robust_backbone


@pytest.fixture(scope="module")
def pool_faces() -> np.ndarray:
    """32 real training-pool faces (never a test protocol's) at 64 px."""
    from deidkit.data.images import resize_crops
    from deidkit.data.lfw import aligned_crops, load_manifest

    return resize_crops(aligned_crops(load_manifest("lfw_train_pool")["path"].tolist()[:32]), 64)


def _embed(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return MS1MFeatureExtractor(net).eval()(x)["embedding"]


def _x(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1


def test_perturbation_stays_in_its_budget_and_turns_the_embedding_away(pool_faces):
    torch.manual_seed(0)
    feats = MS1MFeatureExtractor(load_ms1m_backbone().requires_grad_(False)).eval()
    x = _x(pool_faces[:4])
    with torch.no_grad():
        ref = feats(x)["embedding"]
    eps = 8 / 127.5
    adv = perturb_away(feats, x, ref, eps, steps=3, generator=torch.Generator().manual_seed(0))
    assert (adv - x).abs().max() <= eps + 1e-6 and adv.min() >= -1 and adv.max() <= 1
    with torch.no_grad():
        assert (feats(adv)["embedding"] * ref).sum(1).mean() < 0.9


def test_robust_backbone_resists_the_attack_it_trained_on_and_resumes(tmp_path, pool_faces):
    """After training, the perturbation the recipe makes lowers the embedding's cosine to the original's less than
    it does for the original network; the finished run loads instead of training again; eps 0 is an error."""
    torch.manual_seed(0)
    original = load_ms1m_backbone()
    images = pool_faces
    cfg = CriticConfig.profile("tiny", robust_eps=8.0, robust_epochs=3, robust_pgd_steps=2, robust_lr=1e-3,
                               batch_size=8, image_size=64)
    robust = train_robust_backbone(cfg, tmp_path / "b", images=images, original=original, progress=False)
    assert robust is not None and not any(p.requires_grad for p in robust.parameters())
    assert (tmp_path / "b" / "checkpoint.pt").is_file()

    x, eps = _x(images), 8 / 127.5
    with torch.no_grad():
        ref = _embed(original, x)

    def attacked_cos(net):
        adv = perturb_away(MS1MFeatureExtractor(net).eval(), x, ref, eps, 2, torch.Generator().manual_seed(1))
        with torch.no_grad():
            return float((_embed(net, adv) * ref).sum(1).mean())

    assert attacked_cos(robust) > attacked_cos(original.requires_grad_(False)) + 0.05
    again = train_robust_backbone(cfg, tmp_path / "b", images=images, original=original, progress=False)
    for a, b in zip(robust.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="robust_eps"):
        train_robust_backbone(CriticConfig.profile("tiny"), tmp_path / "c", images=images, original=original)


def test_robust_profiles_and_bad_settings():
    c = CriticConfig.profile("robust")
    assert c.robust_eps == 8 and c.robust_epochs >= 1 and c.precompute_features
    assert CriticConfig.profile("quick").robust_eps == 0  # the quick critic (and its saved runs) stay as they were
    assert FaDeNetConfig.profile("robust").critic_profile == "robust"
    with pytest.raises(ValueError, match="mobilefacenet"):
        CriticConfig.profile("paper", robust_eps=8.0)
    with pytest.raises(ValueError, match="robust schedule"):
        CriticConfig.profile("quick", robust_eps=8.0)


def test_robust_backbone_stopped_by_the_time_limit_resumes_to_the_same_weights(tmp_path, pool_faces):
    from deidkit.train.loop import run_limits

    cfg = CriticConfig.profile("tiny", robust_eps=8.0, robust_epochs=1, robust_pgd_steps=1, robust_lr=1e-3,
                               batch_size=8, image_size=64)
    original = load_ms1m_backbone()
    whole = train_robust_backbone(cfg, tmp_path / "whole", images=pool_faces, original=original, progress=False)
    with run_limits(max_minutes=1e-9):  # spent at once: one step, then a checkpoint
        assert train_robust_backbone(cfg, tmp_path / "cut", images=pool_faces, original=original,
                                     progress=False) is None
    resumed = train_robust_backbone(cfg, tmp_path / "cut", images=pool_faces, original=original, progress=False)
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
