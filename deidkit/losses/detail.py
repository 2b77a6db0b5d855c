"""Loss of the live model's detail stage (:class:`deidkit.models.detail.DetailNet`), trained as a
super-resolution GAN on real faces: ``hr`` a real face at the output side, ``lr`` the same face made smaller and
softer (as soft as the live generator's faces), ``out`` the network's enlargement of ``lr``.

Generator::

    w_l1 * L1(out, hr)  +  w_low * L1(down(out), lr)  +  w_feat * sum_l mean|f_l(out) - f_l(hr)|  +  w_adv * adv
      +  w_hf * mean |log E(out) - log E(hr)|

    down   = area averaging back to the input's side: the stage must keep the face it was given (its coarse
             content is the de-identified face) and only add detail finer than the input's pixels;
    f_l    = early feature maps of a frozen face network (texture, not identity);
    adv    = mean (D(out) - 1)^2 (least squares GAN): detail that a patch discriminator cannot tell from real
             skin, hair and eyes; L1 alone would draw the blurred average.
    E      = the mean squared Laplacian of the luma (:func:`laplacian_energy`): how much fine detail an image
             carries, the quantity the kit's sharpness measure compares (deidkit.eval.realism). The term asks
             for as much fine detail as the real face holds, whatever its placement: L1 and the feature term
             alone settle for about half of it.

Unpaired (the live generator's own faces, which have no sharp original): ``w_low * L1(down(out), x) + w_adv * adv``
only: keep the face, draw detail a discriminator takes for real.

Discriminator: mean (D(hr) - 1)^2 + mean D(out)^2. This module knows nothing of data or networks' files."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

_LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)
_LUMA = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)


def laplacian_energy(x: torch.Tensor) -> torch.Tensor:
    """(N,) mean squared Laplacian of the luma of images (N, 3, H, W) in [-1, 1], inside a one-pixel border."""
    luma = (x * _LUMA.to(x)).sum(1, keepdim=True)
    return F.conv2d(luma, _LAPLACIAN.to(x)).pow(2).mean(dim=(1, 2, 3))


def detail_generator_loss(out: torch.Tensor, hr: torch.Tensor, lr: torch.Tensor, d_out: torch.Tensor,
                          out_feats: Mapping[str, torch.Tensor], hr_feats: Mapping[str, torch.Tensor],
                          weights: Mapping[str, float]) -> tuple[torch.Tensor, dict[str, float]]:
    """(total, terms as floats) of the detail stage's generator loss."""
    terms = {
        "l1": F.l1_loss(out, hr),
        "low": F.l1_loss(F.interpolate(out, size=lr.shape[-2:], mode="area"), lr),
        "feat": sum(F.l1_loss(out_feats[k], hr_feats[k].detach()) for k in out_feats),
        "adv": ((d_out - 1.0) ** 2).mean(),
    }
    if weights.get("hf", 0.0):
        eps = 1e-6
        terms["hf"] = (torch.log(laplacian_energy(out) + eps) - torch.log(laplacian_energy(hr) + eps)).abs().mean()
    total = sum(weights.get(k, 0.0) * v for k, v in terms.items())
    return total, {k: float(v.detach()) for k, v in terms.items()}


def detail_discriminator_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """Least-squares discriminator loss: real patches scored 1, enlarged ones 0."""
    return ((d_real - 1.0) ** 2).mean() + (d_fake ** 2).mean()


def detail_unpaired_loss(out: torch.Tensor, x: torch.Tensor, d_out: torch.Tensor, weights: Mapping[str, float]
                         ) -> tuple[torch.Tensor, dict[str, float]]:
    """(total, terms) for inputs without a sharp original (the live generator's faces ``x``): keep the face
    (``low``) and look real (``adv``)."""
    terms = {"u_low": F.l1_loss(F.interpolate(out, size=x.shape[-2:], mode="area"), x),
             "u_adv": ((d_out - 1.0) ** 2).mean()}
    total = weights["low"] * terms["u_low"] + weights["adv"] * terms["u_adv"]
    return total, {k: float(v.detach()) for k, v in terms.items()}
