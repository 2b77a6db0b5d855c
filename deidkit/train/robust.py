"""A slightly robust copy of the MS1M face embedding, for FaDeNet's critic (not in either paper; 2026-12-05).

Why: FaDeNet's identity push follows its critic's input gradient. A standard network's input gradient is
noise-like, and a U-Net that follows it paints what moves that one network: the stripes and coloured bands of
every CPU-trained FaDeNet. Networks trained against small adversarial perturbations have input gradients that
line up with visible features (Santurkar et al., *Image synthesis with a single robust classifier*, 2019), and
perturbations made on slightly robust networks carry over to other networks much further (Springer et al., *A
little robustness goes a long way*, 2021). Probe (2026-12-05, 180 steps of this recipe, 8 held-out faces, an L2
budget of 3 in [-1, 1] units): an attack on the original MS1M network turns its own embedding to a cosine of
-0.40; an attack on the robust copy turns the *original* network's embedding to -0.10 although it never saw it,
and its perturbation follows eyes, brows and mouth where the original's is spread as noise over the face.

Recipe, label-free (no identity is needed, so every training-pool image can serve; the critic's held-out images
are kept out): the student starts as the MS1M MobileFaceNet, BatchNorm statistics frozen; at each step a few
steps of projected sign-gradient descent find an L-inf perturbation of ``robust_eps`` 8-bit levels that turns the
student's embedding away from the frozen original's embedding of the clean image; the student learns to keep
both the clean and the perturbed image's embeddings at the original's (1 - cosine each).

What it bought FaDeNet (2026-12-05, the ``robust`` FaDeNet profile: the standard recipe against this critic): no more
natural a look than the standard critic's (a blurred face box with bluish bands growing over the eyes, colour
shift 6-8 levels) and less identity change on the selection set; the numbers are at the profile in
:mod:`deidkit.configs`. Kept as a critic option: the transfer it shows at the image level is the property an
identity push needs, and a GPU recipe may use it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from deidkit.configs import CriticConfig
from deidkit.train.augment import ArrayBatches
from deidkit.train.loop import TrainingRun


def robust_pool_images(image_size: int) -> np.ndarray:
    """Canonical crops of every ``lfw_train_pool`` image outside the critic's held-out split, at ``image_size``."""
    from deidkit.data.images import resize_crops
    from deidkit.data.lfw import aligned_crops, load_manifest

    pool = load_manifest("lfw_train_pool")
    if "critic_split" in pool.columns:
        pool = pool[pool["critic_split"] != "heldout"]
    return resize_crops(aligned_crops(pool["path"].tolist(), size=224), image_size)


def perturb_away(features: nn.Module, x: torch.Tensor, reference: torch.Tensor, eps: float, steps: int,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """``x`` (in [-1, 1]) plus the L-inf perturbation (at most ``eps``, same units) that ``steps`` sign-gradient
    steps from a random start find to lower the cosine of ``features(x)["embedding"]`` to ``reference``."""
    delta = (torch.rand(x.shape, generator=generator, dtype=x.dtype) * 2 - 1).to(x.device) * eps
    for _ in range(steps):
        delta.requires_grad_(True)
        cos = (features((x + delta).clamp(-1, 1))["embedding"] * reference).sum(1).sum()
        (grad,) = torch.autograd.grad(cos, delta)
        delta = (delta.detach() - eps * grad.sign()).clamp(-eps, eps)
    return (x + delta.detach()).clamp(-1, 1)


def train_robust_backbone(config: CriticConfig, run_dir: str | os.PathLike, images: np.ndarray | None = None,
                          original: nn.Module | None = None, progress: bool = True) -> nn.Module | None:
    """Train (or resume, or load if finished) the robust copy of ``original`` (default: the shipped-weights MS1M
    MobileFaceNet) in ``run_dir``; ``images`` default to :func:`robust_pool_images`. Returns the frozen network,
    or None when the time limit of :mod:`deidkit.train.loop` stopped it first (the same call continues)."""
    import copy

    from deidkit.recognizers import MS1MFeatureExtractor, load_ms1m_backbone

    if config.robust_eps <= 0:
        raise ValueError(f"robust_eps must be positive for a robust backbone, got {config.robust_eps}")
    original = original if original is not None else load_ms1m_backbone()
    images = images if images is not None else robust_pool_images(config.image_size)
    teacher = MS1MFeatureExtractor(copy.deepcopy(original)).eval().requires_grad_(False)
    net = copy.deepcopy(original).eval().requires_grad_(True)  # eval: BatchNorm keeps the original's statistics
    student = MS1MFeatureExtractor(net).eval()
    optimizer = torch.optim.Adam(net.parameters(), lr=config.robust_lr)
    settings = {k: getattr(config, k) for k in ("image_size", "robust_eps", "robust_epochs", "robust_pgd_steps",
                                                 "robust_lr", "batch_size", "augment", "seed")}
    run = TrainingRun(Path(run_dir), {"backbone": net}, {"adam": optimizer}, seed=config.seed,
                      config={**settings, "images": int(len(images))}, show_progress=progress)
    eps = config.robust_eps / 127.5  # 8-bit levels -> [-1, 1] units
    labels = np.zeros(len(images), dtype=np.int64)

    def make_loader(epoch: int) -> ArrayBatches:
        return ArrayBatches(images, labels, config.batch_size, config.seed, epoch, augment=config.augment)

    def step(batch: tuple[torch.Tensor, ...], epoch: int, global_step: int) -> dict[str, float]:
        x = batch[0]
        with torch.no_grad():
            reference = teacher(x)["embedding"]
        adversarial = perturb_away(student, x, reference, eps, config.robust_pgd_steps)
        clean_cos = (student(x)["embedding"] * reference).sum(1)
        adv_cos = (student(adversarial)["embedding"] * reference).sum(1)
        loss = (1 - clean_cos).mean() + (1 - adv_cos).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"loss": float(loss.detach()), "clean_cos": float(clean_cos.detach().mean()),
                "adv_cos": float(adv_cos.detach().mean())}

    run.fit(make_loader, step, epochs=config.robust_epochs, desc="robust backbone")
    if run.stopped:
        return None
    return net.eval().requires_grad_(False)


__all__ = ["perturb_away", "robust_pool_images", "train_robust_backbone"]
