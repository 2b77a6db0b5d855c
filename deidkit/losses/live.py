"""The compound loss of "Live Face De-Identification in Video" (Gafni, Wolf, Taigman, ICCV 2019).

Notation: ``x`` the undistorted image (reconstruction and identity target), ``x_in`` the network's (distorted)
input, ``raw`` the generator's image, ``mask`` its blending mask, ``masked = mask * raw + (1 - mask) * x_in`` the
output actually shown. Images are (N, 3, H, W) in [-1, 1]; masks (N, 1, H, W) in [0, 1].

Generator loss (the paper's weights by default)::

    0.5 * adv  +  0.5 * (L1(raw, x) + L1(masked, x))  +  0.5 * (edge(raw, x) + edge(masked, x))
    + 3e-3 * mean|mask|  +  1e-2 * (mean|d_x mask| + mean|d_y mask|)
    + 0.5 * perceptual

    adv        = mean (D(beta * x + (1 - beta) * masked) - 1)^2, beta ~ Beta(0.2, 0.2) per image (LSGAN + mixup)
    perceptual = sum_low,mid mean|f_l(masked) - f_l(x)|          (tie low-level appearance to the input)
               + mean|f_deep(masked) - f_deep(t)|                (a deeper layer tied to the target)
               - lambda * mean ||e(masked) - e(t)||_2            (push the representation away from the target)

Discriminator loss: mean (D(mix) - beta)^2 on the same kind of mix built from a detached ``masked``: the
realness label of a mixed image is its share of real pixels (mixup's soft label).

The representation ``e`` is the recogniser's L2-normalised embedding, so the repelling term is bounded (the
distance lies in [0, 2]) and cannot run away however large lambda is; the paper's lambda (1e-7 to 2e-6) was for an
unnormalised ResNet-50 representation and does not transfer in absolute value (see ``deidkit.train.live``).
This module knows nothing of data sets or recognisers: features come in as dicts of tensors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from deidkit.configs import LiveLossWeights  # configuration data, re-exported here

MIXUP_ALPHA = 0.2
PAPER_WEIGHTS = LiveLossWeights()  # frozen: safe as a shared default


def blend(raw: torch.Tensor, mask: torch.Tensor, x_in: torch.Tensor) -> torch.Tensor:
    """The masked output: the generator's image where the mask is 1, the input where it is 0."""
    return mask * raw + (1.0 - mask) * x_in


def dx(t: torch.Tensor) -> torch.Tensor:
    """Horizontal forward difference."""
    return t[..., :, 1:] - t[..., :, :-1]


def dy(t: torch.Tensor) -> torch.Tensor:
    """Vertical forward difference."""
    return t[..., 1:, :] - t[..., :-1, :]


def edge_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 distance between the x and y image derivatives of ``output`` and ``target``."""
    return (dx(output) - dx(target)).abs().mean() + (dy(output) - dy(target)).abs().mean()


def mask_l1(mask: torch.Tensor) -> torch.Tensor:
    """Mean mask value: keeps the network from replacing more than it needs to."""
    return mask.abs().mean()


def mask_smoothness(mask: torch.Tensor) -> torch.Tensor:
    """Total variation of the mask (mean absolute x and y derivatives)."""
    return dx(mask).abs().mean() + dy(mask).abs().mean()


def sample_beta(n: int, alpha: float = MIXUP_ALPHA, device: torch.device | str = "cpu") -> torch.Tensor:
    """``n`` mixup coefficients ~ Beta(alpha, alpha), shaped (n, 1, 1, 1), from the global torch RNG (which the
    training loop seeds and checkpoints)."""
    a = torch.tensor(float(alpha))
    beta = torch.distributions.Beta(a, a).sample((n,))
    return beta.view(n, 1, 1, 1).to(device)


def mixup(real: torch.Tensor, fake: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """``beta * real + (1 - beta) * fake``."""
    return beta * real + (1.0 - beta) * fake


def lsgan_generator_loss(d_mixed: torch.Tensor) -> torch.Tensor:
    """LSGAN generator term: the discriminator's score on the mixed images should be 1 (real)."""
    return ((d_mixed - 1.0) ** 2).mean()


def lsgan_discriminator_loss(d_mixed: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """LSGAN discriminator loss with mixup: the score of a mix should equal its share ``beta`` of real content."""
    target = beta.view(-1, *([1] * (d_mixed.dim() - 1))).expand_as(d_mixed)
    return ((d_mixed - target) ** 2).mean()


def perceptual_terms(
    out_feats: Mapping[str, torch.Tensor],
    input_feats: Mapping[str, torch.Tensor],
    target_feats: Mapping[str, torch.Tensor],
    input_layers: Sequence[str],
    target_layers: Sequence[str],
    repr_key: str = "embedding",
    repel: str = "distance",
) -> dict[str, torch.Tensor]:
    """The multi-image perceptual loss's pieces: ``attract_input`` (low and middle layers of the output vs the
    input), ``attract_target`` (deeper layers vs the target) and ``repel``: the distance of the (unit-norm)
    representations (``"distance"``, the paper's), or the distance to the nearer of the target's representation and
    its opposite (``"orthogonal"``, not in the paper): the paper's term is largest for the *opposite* representation,
    which a linear map reads back as the original; this one is largest for an orthogonal one, and equal to the
    paper's up to there."""
    if repel not in ("distance", "orthogonal"):
        raise ValueError(f"repel must be 'distance' or 'orthogonal', got {repel!r}")
    zero = next(iter(out_feats.values())).new_zeros(())
    attract_input = sum(((out_feats[k] - input_feats[k]).abs().mean() for k in input_layers), zero)
    attract_target = sum(((out_feats[k] - target_feats[k]).abs().mean() for k in target_layers), zero)
    o, t = out_feats[repr_key].flatten(1), target_feats[repr_key].flatten(1)
    if repel == "distance":
        dist = (o - t).norm(dim=1)
    else:
        dist = torch.minimum((o - t).norm(dim=1), (o + t).norm(dim=1))
    return {"attract_input": attract_input, "attract_target": attract_target, "repel": dist.mean()}


def perceptual_loss(terms: Mapping[str, torch.Tensor], lam: float) -> torch.Tensor:
    """attract_input + attract_target - lambda * repel."""
    return terms["attract_input"] + terms["attract_target"] - lam * terms["repel"]


def generator_loss(
    x: torch.Tensor,
    x_in: torch.Tensor,
    raw: torch.Tensor,
    mask: torch.Tensor,
    d_mixed: torch.Tensor | None,
    perceptual: Mapping[str, torch.Tensor] | None,
    lam: float,
    weights: LiveLossWeights = PAPER_WEIGHTS,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The weighted generator loss and its terms (floats, for the log).

    ``d_mixed`` is the discriminator's output on ``mixup(x, masked, beta)`` (None: no adversarial term, e.g. for a
    reconstruction warm-up); ``perceptual`` the dict from :func:`perceptual_terms` (None: no perceptual term).
    """
    masked = blend(raw, mask, x_in)
    recon = (raw - x).abs().mean() + (masked - x).abs().mean()
    edge = edge_loss(raw, x) + edge_loss(masked, x)
    m_l1 = mask_l1(mask)
    m_tv = mask_smoothness(mask)
    total = weights.recon * recon + weights.edge * edge + weights.mask * m_l1 + weights.mask_smooth * m_tv
    terms = {"recon": recon, "edge": edge, "mask_l1": m_l1, "mask_tv": m_tv}
    if d_mixed is not None:
        adv = lsgan_generator_loss(d_mixed)
        total = total + weights.adv * adv
        terms["g_adv"] = adv
    if perceptual is not None:
        p = perceptual_loss(perceptual, lam)
        total = total + weights.perceptual * p
        terms.update({f"p_{k}": v for k, v in perceptual.items()})
    logged = {k: float(v.detach()) for k, v in terms.items()}
    logged["g_total"] = float(total.detach())
    return total, logged


def landmark_loss(out_points: torch.Tensor, target_points: torch.Tensor) -> torch.Tensor:
    """Mean absolute displacement between two sets of landmarks (N, K, 2), in the units they come in."""
    return (out_points - target_points).abs().mean()
