"""FaDeNet's loss (Meden et al.): keep the image, lose the identity.

    L_total = L1 - lambda * L2
    L1 = || x / ||x|| - f(x) / ||f(x)|| ||^2      (per image, Euclidean norm over all pixels and channels)
    L2 = cross-entropy(one-hot identity of x, softmax(critic(f(x))))

Both terms are averaged over the batch. Minimising ``-lambda * L2`` *maximises* the critic's cross-entropy, so
the paper's objective is unbounded below: a critic with unbounded logits can be driven to arbitrarily confident
wrong answers. The faithful form is the default; :func:`fadenet_loss` also offers ``ce_cap``, a documented
bounded variant (each image's cross-entropy is clipped at ``ce_cap`` nats, so an image whose identity is
already destroyed stops contributing to L2). Non-finite values are caught by the training loop.

This module knows nothing about data sets: it takes tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.transforms.functional import gaussian_blur

from deidkit.data.images import BT601_CHROMA


@dataclass
class FaDeNetLoss:
    """The loss terms of one batch (tensors, so ``total`` can be back-propagated)."""

    total: torch.Tensor
    l1: torch.Tensor
    l2: torch.Tensor

    def as_floats(self) -> dict[str, float]:
        return {"loss": float(self.total.detach()), "l1": float(self.l1.detach()), "l2": float(self.l2.detach())}


def unit_norm_distance(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Per-image squared Euclidean distance between ``x`` and ``y`` after scaling each image to unit norm.

    Returns shape (N,). The value lies in [0, 4]; it is 0 when ``y`` is a positive multiple of ``x``.
    """
    if x.shape != y.shape:
        raise ValueError(f"image shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}")
    xn = F.normalize(x.flatten(1), dim=1, eps=eps)
    yn = F.normalize(y.flatten(1), dim=1, eps=eps)
    return ((xn - yn) ** 2).sum(dim=1)


def edge_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image mean squared difference of the x and y image derivatives of ``x`` and ``y``, shape (N,).

    Not in the paper: the ``standard`` profile adds it (``edge_weight``) because the unit-norm L2 term is almost
    blind to thin high-frequency patterns, which is exactly what a critic-fooling U-Net learns to paint
    (horizontal colour stripes in the ``quick`` model). Squared, not absolute: an absolute difference has a
    gradient of constant size however small the change, which pinned the U-Net to the identity map (measured: the
    critic's cross-entropy stayed at 0.3 for the first 125 steps with weight 1.0), while a squared one lets small,
    smooth changes through and punishes high-contrast patterns most."""
    gx = (x[..., :, 1:] - x[..., :, :-1]) - (y[..., :, 1:] - y[..., :, :-1])
    gy = (x[..., 1:, :] - x[..., :-1, :]) - (y[..., 1:, :] - y[..., :-1, :])
    return gx.square().flatten(1).mean(1) + gy.square().flatten(1).mean(1)


def embedding_similarity(out_features: torch.Tensor, ref_features: torch.Tensor, margin: float = 0.0
                         ) -> torch.Tensor:
    """Per-image cosine similarity of two embeddings above ``margin`` (0 below it), shape (N,).

    Not in the paper: the ``standard`` profile adds it (``embed_weight``) because a cross-entropy over the
    critic's few hundred training identities is fooled by a small move across its linear head's boundaries, which
    no other recogniser sees; pushing the critic's *embedding* of the output away from the input's moves the
    identity in the representation other recognisers share. Images already below ``margin`` stop pushing."""
    cos = F.cosine_similarity(out_features, ref_features, dim=1)
    return (cos - margin).clamp_min(0.0)


def output_collapse(out_features: torch.Tensor, ref_features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """How much closer the outputs of different people are to each other than their originals were: the mean over
    pairs of images with different labels of ``relu(cos(out_i, out_j) - cos(ref_i, ref_j))`` (0 without such pairs).

    Not in the paper: at CPU scale the detail-basis FaDeNet converged to one change for every face (one detail
    pattern and one warp; ``scripts/probe_fadenet_per_face.py``), which fools a fixed critic by making all faces
    alike. This term (``diversity_weight``) charges that collapse, so that whatever hides identity must differ
    between people."""
    out = F.normalize(out_features.flatten(1), dim=1)
    ref = F.normalize(ref_features.flatten(1), dim=1)
    pairs = torch.triu(labels[:, None] != labels[None, :], diagonal=1)
    if not bool(pairs.any()):
        return out.sum() * 0.0
    gap = (out @ out.T - ref @ ref.T).clamp_min(0.0)
    return gap[pairs].mean()


def detection_loss(face_probability: torch.Tensor, floor: float = 0.99, eps: float = 1e-6) -> torch.Tensor:
    """Per-image ``-log p`` of a detector's face probability above ``-log floor`` (0 once ``p >= floor``), shape (N,).

    Not in the paper: the ``standard`` profile adds it (``detect_weight``) because the patterns that move identity
    furthest also hide the face from detectors (YuNet found 48 % of the faces after 7 epochs without it), and a
    de-identified face that no detector finds is useless to the people the image is for."""
    return (-(face_probability.clamp_min(eps)).log() + torch.log(torch.tensor(floor))).clamp_min(0.0)


def chroma_distance(x: torch.Tensor, y: torch.Tensor, sigma: float = 3.0) -> torch.Tensor:
    """Per-image mean absolute difference of the Gaussian-smoothed chroma (Cb, Cr of BT.601) of ``x`` and ``y``
    (images in [-1, 1]), shape (N,).

    Not in the paper: the ``standard`` profile can add it (``chroma_weight``) against the coloured bands a
    critic-fooling U-Net paints over eyes and brows; smoothing lets fine colour texture through and catches casts
    and bands."""
    w = x.new_tensor(BT601_CHROMA)  # RGB -> (Cb, Cr)
    cx = torch.einsum("kc,nchw->nkhw", w, x)
    cy = torch.einsum("kc,nchw->nkhw", w, y)
    k = 2 * int(round(3 * sigma)) + 1
    d = gaussian_blur(cx - cy, [k, k], [sigma, sigma])
    return d.abs().flatten(1).mean(1)


def ssim_index(x: torch.Tensor, y: torch.Tensor, win_size: int = 7) -> torch.Tensor:
    """Per-image SSIM of two (N, C, H, W) batches in [-1, 1], differentiable, shape (N,): the kit's quality measure
    (:func:`deidkit.eval.quality.ssim`, scikit-image's defaults: a uniform ``win_size`` window, sample covariances,
    K1 0.01, K2 0.03, the border of half a window left out, the mean over channels) in torch.

    Not in the paper: the ``ssim_weight`` term trains for the measure the evaluation holds quality to, so that the
    image budget a recogniser-fooling change spends is the one that counts."""
    if x.shape != y.shape:
        raise ValueError(f"image shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}")
    # SSIM's luminance term is not shift-invariant: measure on 0..1 as the evaluation does on 0..255
    x, y = (x + 1) / 2, (y + 1) / 2
    c1, c2 = 0.01**2, 0.03**2
    n = win_size * win_size
    cov_norm = n / (n - 1)

    def mean(t: torch.Tensor) -> torch.Tensor:  # the uniform window over the valid region only
        return F.avg_pool2d(t, win_size, stride=1)

    ux, uy = mean(x), mean(y)
    vx = cov_norm * (mean(x * x) - ux * ux)
    vy = cov_norm * (mean(y * y) - uy * uy)
    vxy = cov_norm * (mean(x * y) - ux * uy)
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1)


def fadenet_loss(x: torch.Tensor, fx: torch.Tensor, critic_logits: torch.Tensor, labels: torch.Tensor,
                 lam: float = 1e-3, ce_cap: float | None = None, edge_weight: float = 0.0) -> FaDeNetLoss:
    """FaDeNet's ``L1 - lam * L2`` for images ``x``, their transforms ``fx``, the critic's logits on ``fx``
    and the identities ``labels`` of ``x``. ``ce_cap`` (default ``None``: the paper's unbounded form) clips each
    image's cross-entropy from above. ``edge_weight`` (default 0: the paper) adds that times
    :func:`edge_distance` to L1."""
    if critic_logits.ndim != 2 or labels.shape != critic_logits.shape[:1]:
        raise ValueError(f"logits (N, K) and labels (N,) expected, got {tuple(critic_logits.shape)} and "
                         f"{tuple(labels.shape)}")
    l1 = unit_norm_distance(x, fx).mean()
    if edge_weight:
        l1 = l1 + edge_weight * edge_distance(x, fx).mean()
    ce = F.cross_entropy(critic_logits, labels, reduction="none")
    if ce_cap is not None:
        ce = ce.clamp(max=ce_cap)
    l2 = ce.mean()
    return FaDeNetLoss(total=l1 - lam * l2, l1=l1, l2=l2)
