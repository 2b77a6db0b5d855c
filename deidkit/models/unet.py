"""The U-Net image transformer of FaDeNet (Meden et al.), after Ronneberger et al.'s U-Net.

Contracting path: at each level two 3x3 convolutions + ReLU, then 2x2 max-pooling; channels double per level.
Expansive path: at each level 2x up-sampling and a 2x2 "up-convolution" that halves the channels, concatenation
with the skip connection of the same level, two 3x3 convolutions + ReLU. A final 1x1 convolution maps to 3
channels. Convolutions are padded so that the output has the input's size (the original U-Net used unpadded
convolutions and a smaller output). With ``depth=4`` and ``width=64`` (the paper's size) there are
5 * 2 + 4 * 3 + 1 = 23 convolution layers.

Options that are *not* in the paper and are off by default: ``residual`` adds the input to the output (the net
learns a correction, which trains in CPU minutes rather than GPU hours) and ``out_activation="tanh"`` bounds the
output to [-1, 1] (with ``residual``, the correction is added before the tanh: ``tanh(atanh(x) + r)``).

Why bound the output: FaDeNet's L1 compares images scaled to unit norm, so multiplying the output by a constant is
free. An unbounded network finds that loophole within a few hundred steps: it scales intensities far beyond the
image range, which the critic cannot classify but which is white after clipping to 8 bits (measured with the
``quick`` settings and lambda 0.3: SSIM 0.44, faces saturated). A tanh output closes it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deidkit.data.images import BT601_LUMA

#: Inputs are clamped to this before ``atanh`` (residual + tanh): 255 grey levels never reach +-1 exactly.
_TANH_LIMIT = 0.999


class _DoubleConv(nn.Sequential):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1),
            nn.ReLU(inplace=True),
        )


class _UpConv(nn.Module):
    """2x nearest up-sampling followed by a 2x2 convolution halving the channels ("up-convolution")."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        # A 2x2 kernel needs one extra row/column to keep the size: pad right and bottom.
        return self.conv(F.pad(x, (0, 1, 0, 1), mode="replicate"))


class UNet(nn.Module):
    """U-Net mapping (N, 3, H, W) images in [-1, 1] to (N, 3, H, W) images of the same size.

    ``depth`` is the number of 2x2 poolings and ``width`` the channels of the first level. Inputs whose sides are
    not multiples of ``2**depth`` are reflect-padded and the output cropped back.

    ``smooth_sigma`` (residual networks only; 0 = off, the paper has no such thing): the correction is low-passed by
    a fixed Gaussian of that standard deviation in pixels before it is added, so the network can only make smooth
    changes. A critic-fooling U-Net otherwise paints thin stripes (see ``deidkit.train.fadenet``); low-frequency
    changes also carry over to other recognisers better than pixel-level ones.

    ``input_sigma`` (0 = off, not in the paper): the input's central square of side ``input_region`` (a fraction of
    the image; 0.65 is the face box of the kit's canonical crops) is low-passed by a fixed Gaussian of that standard
    deviation in pixels before the network sees it (and, with ``residual``, before the correction is added), as the
    blur baseline blurs the face box. The fine detail that carries most of a face's identity is gone before the
    network runs, so what it adds back is its own: trained against a critic, it restores the structure that image
    quality rewards but not the identity.

    ``luma_only`` (residual tanh networks only; not in the paper): the correction is one grey map (the mean of the
    head's three channels) that changes the luminance (BT.601) of the input and adds the same amount to R, G and B,
    so the output keeps the input's chroma (Cb, Cr) exactly up to clipping: a critic-fooling U-Net otherwise moves
    identity with coloured bands over the eyes (2026-12-03: restoring the input's chroma after the shipped network
    raised the selection set's MS1M cosine from 0.078 to 0.172), which no natural face shows.

    ``detail_basis`` K (residual tanh networks with ``input_sigma`` only; 0 = off, not in the paper): the correction
    is no longer a free image but ``mean + sum_k c_k B_k`` over K fixed *face-detail* images (the principal
    components of what the input blur removes from real training faces, set by :meth:`set_detail_basis`, saved with
    the weights), with coefficients ``c = 2 tanh(a)`` (each within two standard deviations of real faces) read
    from the contracting path's pooled features. Every output is then the blurred face plus detail that some real
    face has: a face prior that a CPU can afford, where a free correction pushed by a critic paints colour bands
    (every recipe of 2026-12-02 to 2026-12-05). The expansive path is not used (nor built).

    ``shape_warp`` G (detail-basis networks only; 0 = off, not in the paper) with ``warp_px`` D: the blurred face
    plus its detail is also resampled along a smooth displacement field, G x G vectors of at most D pixels read
    from the same pooled features, interpolated bicubically and faded to nothing at the face box's edge by a
    raised-cosine window. The detail basis changes what a face's features look like, the warp where they are:
    the geometry (eye distance, nose length, face width) that the blurred base otherwise keeps, and blurred
    content moves at little cost to SSIM.

    ``shape_basis`` K (detail-basis networks only, instead of ``shape_warp``; 0 = off, not in the paper) with
    ``shape_bound`` R: the warp is ``sum_k c_k W_k`` over K fixed *face-geometry* fields (the principal components
    of how real training faces' features sit relative to the mean face, i.e. optical flow from the mean face to
    each face, windowed to the face box; set by :meth:`set_shape_basis`, saved with the weights), with the
    coefficient vector ``c`` (in standard deviations of real faces) read from the pooled features and bounded in
    length by R. A free grid warp pushed by a critic stretches every face the same unnatural way (2026-12-07: eyes
    drawn into wedges); this one can only move a face's geometry the ways real faces differ, by at most R standard
    deviations in all.
    """

    def __init__(self, width: int = 64, depth: int = 4, in_channels: int = 3, out_channels: int = 3,
                 residual: bool = False, out_activation: str = "none", smooth_sigma: float = 0.0,
                 input_sigma: float = 0.0, input_region: float = 1.0, luma_only: bool = False,
                 detail_basis: int = 0, image_size: int = 0, shape_warp: int = 0, warp_px: float = 0.0,
                 shape_basis: int = 0, shape_bound: float = 0.0) -> None:
        super().__init__()
        if depth < 1 or width < 1:
            raise ValueError(f"UNet needs depth >= 1 and width >= 1, got depth={depth}, width={width}")
        if out_activation not in ("none", "tanh"):
            raise ValueError(f"out_activation must be 'none' or 'tanh', got {out_activation!r}")
        if residual and in_channels != out_channels:
            raise ValueError("a residual UNet needs as many output channels as input channels")
        if smooth_sigma < 0 or (smooth_sigma and not residual):
            raise ValueError(f"smooth_sigma must be >= 0 and needs a residual UNet, got {smooth_sigma}")
        if input_sigma < 0 or not 0 < input_region <= 1:
            raise ValueError(f"input_sigma must be >= 0 and input_region in (0, 1], got {input_sigma}, {input_region}")
        if luma_only and not (residual and out_activation == "tanh" and in_channels == 3):
            raise ValueError("luma_only needs a residual RGB UNet with the tanh output")
        if detail_basis < 0 or detail_basis and not (residual and out_activation == "tanh" and input_sigma
                                                      and image_size > 0 and not luma_only):
            raise ValueError("detail_basis needs a residual tanh UNet with input_sigma > 0 and the image_size")
        if shape_warp < 0 or warp_px < 0 or bool(shape_warp) != bool(warp_px) or shape_warp and (
                not detail_basis or shape_warp < 2):
            raise ValueError(f"shape_warp (a grid of >= 2) needs warp_px > 0 and a detail_basis, got {shape_warp}, "
                             f"{warp_px}")
        if shape_basis < 0 or shape_bound < 0 or bool(shape_basis) != bool(shape_bound) or shape_basis and (
                not detail_basis or shape_warp):
            raise ValueError(f"shape_basis needs shape_bound > 0, a detail_basis and no shape_warp, got {shape_basis}, "
                             f"{shape_bound}")
        self.smooth_sigma, self.input_sigma, self.input_region = float(smooth_sigma), float(input_sigma), input_region
        self.luma_only = bool(luma_only)
        # fixed, not learned, and not saved: they follow from the sigmas
        if smooth_sigma:
            self.register_buffer("smooth_kernel", _gaussian_kernel(smooth_sigma), persistent=False)
        if input_sigma:
            self.register_buffer("input_kernel", _gaussian_kernel(input_sigma), persistent=False)
        self.width, self.depth = width, depth
        self.residual, self.out_activation = residual, out_activation
        chans = [width * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList([_DoubleConv(in_channels, chans[0])])
        self.down.extend(_DoubleConv(chans[i], chans[i + 1]) for i in range(depth))
        self.detail_basis = int(detail_basis)
        self.shape_warp, self.warp_px = 0, 0.0
        self.shape_basis, self.shape_bound = 0, 0.0
        if self.detail_basis:
            # saved with the weights (a trained model is its coefficients' reader and the basis together)
            self.register_buffer("basis", torch.zeros(self.detail_basis, in_channels, image_size, image_size))
            self.register_buffer("basis_mean", torch.zeros(1, in_channels, image_size, image_size))
            self.coefficients = nn.Linear(chans[-1], self.detail_basis)
            with torch.no_grad():  # start at the mean detail (c = 0), with gradients flowing (see the head below)
                self.coefficients.weight.mul_(1e-3)
                self.coefficients.bias.zero_()
            self.shape_warp, self.warp_px = int(shape_warp), float(warp_px)
            if self.shape_warp:
                self.warp = nn.Linear(chans[-1], 2 * self.shape_warp**2)
                with torch.no_grad():  # start as no warp, as the coefficients start at the mean
                    self.warp.weight.mul_(1e-3)
                    self.warp.bias.zero_()
            self.shape_basis, self.shape_bound = int(shape_basis), float(shape_bound)
            if self.shape_basis:
                self.register_buffer("shape_modes", torch.zeros(self.shape_basis, 2, image_size, image_size))
                self.shape = nn.Linear(chans[-1], self.shape_basis)
                with torch.no_grad():  # start as no warp
                    self.shape.weight.mul_(1e-3)
                    self.shape.bias.zero_()
            if self.warps:
                # fixed, follows from the face box: not saved
                self.register_buffer("warp_window", _box_window(image_size, input_region), persistent=False)
            return
        self.upconv = nn.ModuleList(_UpConv(chans[i + 1], chans[i]) for i in reversed(range(depth)))
        self.up = nn.ModuleList(_DoubleConv(2 * chans[i], chans[i]) for i in reversed(range(depth)))
        self.head = nn.Conv2d(chans[0], out_channels, 1)
        if residual:
            # Start (almost) as the identity map, so training only has to learn the de-identifying correction.
            # Not exactly zero: a zero head would also zero the gradients of every layer before it.
            with torch.no_grad():
                self.head.weight.mul_(1e-3)
                self.head.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(f"UNet expects (N, C, H, W) input, got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        m = 2**self.depth
        ph, pw = (-h) % m, (-w) % m
        # Reflect padding needs the pad smaller than the side; replicate works for any tiny input.
        inp = F.pad(x, (0, pw, 0, ph), mode="reflect" if ph < h and pw < w else "replicate") if ph or pw else x
        if self.input_sigma:
            inp = self._blur_face_box(inp, h, w)
        y, skips = self._contract(inp)
        if self.detail_basis:
            return self._detail_output(inp, y)[..., :h, :w]
        for upconv, block, skip in zip(self.upconv, self.up, reversed(skips)):
            y = block(torch.cat([skip, upconv(y)], dim=1))
        y = self.head(y)
        if self.luma_only:
            y = y.mean(1, keepdim=True)
        if self.smooth_sigma:
            y = _separable_blur(y, self.smooth_kernel)
        if self.luma_only:
            # the grey correction moves the luminance in tanh's pre-image (bounded as below); the same step on R, G
            # and B leaves Cb and Cr as they were
            luma = (inp * inp.new_tensor(BT601_LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True)
            luma = luma.clamp(-_TANH_LIMIT, _TANH_LIMIT)
            y = (inp + (torch.tanh(torch.atanh(luma) + y) - luma)).clamp(-1.0, 1.0)
        elif self.residual and self.out_activation == "tanh":
            # The correction is added in tanh's pre-image, so the output stays in (-1, 1) and a zero correction
            # still returns the input.
            y = torch.tanh(torch.atanh(inp.clamp(-_TANH_LIMIT, _TANH_LIMIT)) + y)
        elif self.residual:
            y = y + inp
        elif self.out_activation == "tanh":
            y = torch.tanh(y)
        return y[..., :h, :w]

    def detail_coefficients(self, bottleneck: torch.Tensor) -> torch.Tensor:
        """(N, K) coefficients in units of the basis' standard deviations, bounded to +-2."""
        return 2.0 * torch.tanh(self.coefficients(bottleneck.mean((2, 3))))

    def _detail_output(self, inp: torch.Tensor, bottleneck: torch.Tensor) -> torch.Tensor:
        if inp.shape[-2:] != self.basis.shape[-2:]:
            raise ValueError(f"a detail-basis UNet works at {tuple(self.basis.shape[-2:])}, got {tuple(inp.shape[-2:])}")
        c = self.detail_coefficients(bottleneck)
        correction = self.basis_mean + torch.einsum("nk,kchw->nchw", c, self.basis.to(c.dtype))
        pre = torch.atanh(inp.clamp(-_TANH_LIMIT, _TANH_LIMIT)) + correction
        if self.warps:
            pre = self._warp(pre, self.warp_field(bottleneck))
        return torch.tanh(pre)

    @property
    def warps(self) -> bool:
        """Whether the network warps the face box (``shape_warp`` or ``shape_basis``)."""
        return bool(self.shape_warp or self.shape_basis)

    def shape_coefficients(self, bottleneck: torch.Tensor) -> torch.Tensor:
        """(N, K) coefficients of a ``shape_basis`` network in standard deviations, their length below
        ``shape_bound``."""
        a = self.shape(bottleneck.mean((2, 3)))
        length = a.norm(dim=1, keepdim=True).clamp_min(1e-6)
        return self.shape_bound * torch.tanh(length) / length * a

    def warp_field(self, bottleneck: torch.Tensor) -> torch.Tensor:
        """(N, 2, S, S) displacement (x, y) in pixels of a warping network, zero outside the face box."""
        if self.shape_basis:
            c = self.shape_coefficients(bottleneck)
            return torch.einsum("nk,kchw->nchw", c, self.shape_modes.to(c.dtype)) * self.warp_window
        g, s = self.shape_warp, self.basis.shape[-1]
        grid = self.warp_px * torch.tanh(self.warp(bottleneck.mean((2, 3)))).view(-1, 2, g, g)
        return F.interpolate(grid, size=(s, s), mode="bicubic", align_corners=True) * self.warp_window

    @torch.no_grad()
    def warp_field_of(self, x: torch.Tensor) -> torch.Tensor:
        """The (N, 2, S, S) displacement field (pixels) a warping network applies to images ``x``."""
        if not self.warps:
            raise ValueError("this UNet has no warp (shape_warp=0, shape_basis=0)")
        return self.warp_field(self._contract(self._blur_face_box(x, *x.shape[-2:]))[0])

    def _contract(self, y: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The contracting path: the bottleneck features and each level's skip features."""
        skips = []
        for i, block in enumerate(self.down):
            y = block(y)
            if i < self.depth:
                skips.append(y)
                y = F.max_pool2d(y, 2)
        return y, skips

    @staticmethod
    def _warp(y: torch.Tensor, field: torch.Tensor) -> torch.Tensor:
        """``y`` resampled at each pixel's position plus ``field`` (pixels; bilinear, border values outside)."""
        n, _, h, w = y.shape
        ys, xs = torch.meshgrid(torch.arange(h, dtype=y.dtype, device=y.device),
                                torch.arange(w, dtype=y.dtype, device=y.device), indexing="ij")
        gx = (xs + field[:, 0] + 0.5) * (2.0 / w) - 1.0  # pixel centres, align_corners=False
        gy = (ys + field[:, 1] + 0.5) * (2.0 / h) - 1.0
        return F.grid_sample(y, torch.stack([gx, gy], dim=-1), mode="bilinear", padding_mode="border",
                             align_corners=False)

    @torch.no_grad()
    def set_detail_basis(self, basis: torch.Tensor, mean: torch.Tensor) -> None:
        """Install the face-detail basis (K, C, S, S), scaled to one standard deviation per component, and the
        mean detail (1, C, S, S), both in tanh's pre-image (what is added to ``atanh`` of the blurred input)."""
        if not self.detail_basis:
            raise ValueError("this UNet has no detail basis (detail_basis=0)")
        if basis.shape != self.basis.shape or mean.shape != self.basis_mean.shape:
            raise ValueError(f"basis {tuple(basis.shape)} / mean {tuple(mean.shape)} do not fit "
                             f"{tuple(self.basis.shape)} / {tuple(self.basis_mean.shape)}")
        self.basis.copy_(basis)
        self.basis_mean.copy_(mean)

    @torch.no_grad()
    def set_shape_basis(self, modes: torch.Tensor) -> None:
        """Install the face-geometry basis: (K, 2, S, S) displacement fields in pixels (x, y), one standard deviation
        of real faces each."""
        if not self.shape_basis:
            raise ValueError("this UNet has no shape basis (shape_basis=0)")
        if modes.shape != self.shape_modes.shape:
            raise ValueError(f"shape modes {tuple(modes.shape)} do not fit {tuple(self.shape_modes.shape)}")
        self.shape_modes.copy_(modes)

    def blurred_input(self, x: torch.Tensor) -> torch.Tensor:
        """The input as the network sees it: its face box low-passed by ``input_sigma`` (x itself when 0)."""
        return self._blur_face_box(x, *x.shape[-2:]) if self.input_sigma else x

    def _blur_face_box(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """``x`` (possibly padded beyond h x w) with the central square of the unpadded h x w image low-passed,
        rounded as deidkit.eval.quality.face_box rounds it."""
        half, cy, cx = self.input_region * min(h, w) / 2, h / 2, w / 2
        y0, y1, x0, x1 = (max(0, int(round(v))) for v in (cy - half, cy + half, cx - half, cx + half))
        out = x.clone()
        out[..., y0:y1, x0:x1] = _separable_blur(x, self.input_kernel)[..., y0:y1, x0:x1]
        return out

    def n_conv_layers(self) -> int:
        """How many convolution layers the network has (23 for depth 4)."""
        return sum(isinstance(m, nn.Conv2d) for m in self.modules())


def _box_window(size: int, region: float) -> torch.Tensor:
    """(1, 1, size, size): a raised cosine over the central square of side ``region`` (rounded as the input blur
    rounds its box), 1 at its centre and 0 at and beyond its edge."""
    half = region * size / 2
    lo, hi = (max(0, int(round(v))) for v in (size / 2 - half, size / 2 + half))
    ramp = torch.zeros(size)
    t = (torch.arange(lo, hi, dtype=torch.float32) + 0.5 - lo) / (hi - lo)
    ramp[lo:hi] = 0.5 - 0.5 * torch.cos(2 * torch.pi * t)
    return torch.outer(ramp, ramp).view(1, 1, size, size)


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    """Normalised 1-D Gaussian of ``sigma`` pixels, radius 3 sigma."""
    r = max(1, int(round(3 * sigma)))
    g = torch.exp(-torch.arange(-r, r + 1, dtype=torch.float32) ** 2 / (2 * sigma**2))
    return g / g.sum()


def _separable_blur(y: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Separable low-pass of each channel with a 1-D ``kernel`` (replicate-padded)."""
    k = kernel.to(y.dtype)
    r, c = len(k) // 2, y.shape[1]
    y = F.conv2d(F.pad(y, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(F.pad(y, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
