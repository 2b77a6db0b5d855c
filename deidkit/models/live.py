"""Networks of "Live Face De-Identification in Video" (Gafni, Wolf, Taigman, ICCV 2019).

* :class:`LiveGenerator`: an encoder (a convolution, five strided depth-wise separable convolutions with instance
  normalisation, one fully connected layer to the bottleneck) whose code is concatenated with the target's
  face-recogniser representation; a decoder (a fully connected layer, then a lattice of upscale blocks and residual
  blocks) ending in a tanh convolution for the raw image and a sigmoid convolution for the blending mask; and a
  low-capacity U-Net connection (one channel at a quarter of the input side: 32x32x1 for the paper's 128 input).
* :class:`LiveDiscriminator`: four strided convolutions with LeakyReLU, instance norm on all but the first, and a
  sigmoid convolution giving a patch map.
* :class:`RecognizerFeatures`: wraps a frozen face recogniser so that losses and conditioning can read its
  intermediate layers from the generator's crops, differentiably (a fixed similarity warp to the recogniser's
  template, its normalisation, its forward pass).

Every convolution and linear layer has no bias and is initialised N(0, 0.02), as the paper. Images are tensors
(N, 3, S, S) in [-1, 1]. Sizes are constructor arguments so that tests and CPU profiles can use small ones.
Nothing here reads a file.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

#: The paper's (and our default) slopes: 0.1 in the upscale blocks, 0.2 inside residual blocks.
UPSCALE_SLOPE = 0.1
RESIDUAL_SLOPE = 0.2


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """N(0, ``std``) for every convolution and linear weight (the paper's initialisation)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:  # none of ours has one; kept for safety if a caller adds layers
                nn.init.zeros_(m.bias)


class SeparableDown(nn.Module):
    """Strided depth-wise separable convolution: 3x3 depth-wise (stride 2) -> 1x1 point-wise -> IN -> LeakyReLU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, 3, 2, 1, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)
        self.norm = nn.InstanceNorm2d(cout)
        self.act = nn.LeakyReLU(UPSCALE_SLOPE, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.pointwise(self.depthwise(x))))


class UpscaleBlock(nn.Module):
    """Conv to 4 * ``cout`` channels (twice the input when ``cout = cin / 2``) -> IN -> LeakyReLU(0.1) ->
    pixel shuffle (width and height doubled, channels divided by four)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, 4 * cout, 3, 1, 1, bias=False)
        self.norm = nn.InstanceNorm2d(4 * cout)
        self.act = nn.LeakyReLU(UPSCALE_SLOPE, inplace=True)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.act(self.norm(self.conv(x))))


class ResidualBlock(nn.Module):
    """x + Conv(LeakyReLU0.2(Conv(x)))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.act = nn.LeakyReLU(RESIDUAL_SLOPE, inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.act(self.conv1(x)))


class LiveGenerator(nn.Module):
    """The conditioned encoder-decoder. ``forward(x, target_repr) -> (raw image in [-1, 1], mask in [0, 1])``.

    Args:
        size: input and output side S (a multiple of 32, >= 64: the encoder halves it five times).
        stem_channels: channels of the first convolution.
        enc_channels: output channels of the five strided separable convolutions.
        bottleneck: width of the encoder's fully connected code (the paper: 1024).
        cond_dim: dimension of the target representation concatenated to the code (128 for MobileFaceNet).
        dec_channels: channels of the decoder's first map (S/32 x S/32); each upscale block halves them.
        skip_channels: channels of the U-Net connection (the paper: 1), taken at side S/4.
        min_dec_channels: floor for the decoder's channels (keeps the last levels of small models usable).
    """

    def __init__(
        self,
        size: int = 128,
        stem_channels: int = 32,
        enc_channels: Sequence[int] = (64, 128, 256, 512, 512),
        bottleneck: int = 1024,
        cond_dim: int = 128,
        dec_channels: int = 512,
        skip_channels: int = 1,
        min_dec_channels: int = 8,
    ) -> None:
        super().__init__()
        if size % 32 or size < 64:
            # Five stride-2 stages leave S/32; instance norm needs more than one pixel there.
            raise ValueError(f"size must be a multiple of 32 and at least 64 (five stride-2 stages), got {size}")
        if len(enc_channels) != 5:
            raise ValueError(f"enc_channels needs five entries (one per strided stage), got {tuple(enc_channels)}")
        self.size = size
        self.cond_dim = cond_dim
        self.skip_channels = skip_channels
        self.base = size // 32
        self.dec_channels = dec_channels

        self.stem = nn.Sequential(
            nn.Conv2d(3, stem_channels, 3, 1, 1, bias=False),
            nn.InstanceNorm2d(stem_channels),
            nn.LeakyReLU(UPSCALE_SLOPE, inplace=True),
        )
        chans = [stem_channels, *enc_channels]
        self.down = nn.ModuleList(SeparableDown(chans[i], chans[i + 1]) for i in range(5))
        # The U-Net connection leaves after the second strided stage (side S/4) through a 1x1 conv to a single
        # channel: too narrow to carry identity, wide enough for low-level detail and exact placement.
        self.skip = nn.Conv2d(enc_channels[1], skip_channels, 1, bias=False) if skip_channels > 0 else None
        self.enc_fc = nn.Linear(enc_channels[-1] * self.base * self.base, bottleneck, bias=False)

        self.dec_fc = nn.Linear(bottleneck + cond_dim, dec_channels * self.base * self.base, bias=False)
        ups, res = [], []
        c = dec_channels
        for level in range(5):
            cin = c + (skip_channels if level == 3 else 0)  # the skip joins at side S/4, before the 4th upscale
            cout = max(c // 2, min_dec_channels)
            ups.append(UpscaleBlock(cin, cout))
            res.append(ResidualBlock(cout))
            c = cout
        self.up = nn.ModuleList(ups)
        self.res = nn.ModuleList(res)
        self.to_image = nn.Conv2d(c, 3, 3, 1, 1, bias=False)
        self.to_mask = nn.Conv2d(c, 1, 3, 1, 1, bias=False)
        init_weights(self)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The bottleneck code (N, bottleneck) and the U-Net map (N, skip, S/4, S/4)."""
        if x.shape[-2:] != (self.size, self.size):
            raise ValueError(f"LiveGenerator expects {self.size}x{self.size} inputs, got {tuple(x.shape[-2:])}")
        h = self.stem(x)
        skip = None
        for i, block in enumerate(self.down):
            h = block(h)
            if i == 1 and self.skip is not None:
                skip = self.skip(h)
        return self.enc_fc(h.flatten(1)), skip

    def decode(self, code: torch.Tensor, target_repr: torch.Tensor,
               skip: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        if target_repr.shape != (code.shape[0], self.cond_dim):
            raise ValueError(
                f"target representation must be (N={code.shape[0]}, {self.cond_dim}), got {tuple(target_repr.shape)}"
            )
        h = self.dec_fc(torch.cat([code, target_repr.to(code.dtype)], dim=1))
        h = h.view(code.shape[0], self.dec_channels, self.base, self.base)
        for level, (up, res) in enumerate(zip(self.up, self.res)):
            if level == 3 and skip is not None:
                h = torch.cat([h, skip], dim=1)
            h = res(up(h))
        return torch.tanh(self.to_image(h)), torch.sigmoid(self.to_mask(h))

    def forward(self, x: torch.Tensor, target_repr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        code, skip = self.encode(x)
        return self.decode(code, target_repr, skip)


class LiveDiscriminator(nn.Module):
    """Four strided 4x4 convolutions with LeakyReLU(0.2), instance norm on all but the first, then a sigmoid conv
    giving a patch map of realness scores in (0, 1)."""

    def __init__(self, channels: int = 64, max_channels: int = 512) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for i in range(4):
            cout = min(channels * 2**i, max_channels)
            layers.append(nn.Conv2d(cin, cout, 4, 2, 1, bias=False))
            if i > 0:
                layers.append(nn.InstanceNorm2d(cout))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            cin = cout
        layers.append(nn.Conv2d(cin, 1, 3, 1, 1, bias=False))
        self.net = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(x))


# ------------------------------------------------------------------------------------------------ recogniser


def affine_theta(matrix: torch.Tensor, src_size: tuple[int, int], dst_size: tuple[int, int]) -> torch.Tensor:
    """``F.affine_grid`` parameters (2x3) that sample a (dst_h, dst_w) image from a (src_h, src_w) one, given the
    2x3 pixel matrix ``matrix`` mapping source pixels to destination pixels (OpenCV's convention)."""
    m = torch.cat([matrix.to(torch.float64), torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)], 0)
    inv = torch.linalg.inv(m)  # destination pixel -> source pixel

    def norm(h: int, w: int) -> torch.Tensor:
        # pixel centre coordinates (align_corners=False) -> [-1, 1]
        return torch.tensor([[2.0 / w, 0.0, 1.0 / w - 1.0], [0.0, 2.0 / h, 1.0 / h - 1.0], [0.0, 0.0, 1.0]],
                            dtype=torch.float64)

    theta = norm(*src_size) @ inv @ torch.linalg.inv(norm(*dst_size))
    return theta[:2].to(torch.float32)


class RecognizerFeatures(nn.Module):
    """A frozen recogniser read from the generator's crops: warp to its template, normalise, run, collect layers.

    Args:
        backbone: the recogniser network; ``features_fn(backbone, x)`` must return a dict of named activations
            including ``"embedding"`` (for deidkit's MobileFaceNet: ``backbone.forward_features``).
        matrix: 2x3 pixel matrix from the generator's crop (side ``crop_size``) to the recogniser input.
        crop_size: the generator's side S.
        input_size: the recogniser's input (h, w).
        mean, std: its per-channel normalisation of [0, 1] RGB.
    The parameters are frozen (``requires_grad=False``) and the module stays in eval mode (BatchNorm statistics
    must not drift), but gradients flow to the input image, which is what the perceptual losses need.
    """

    def __init__(
        self,
        backbone: nn.Module,
        matrix: torch.Tensor,
        crop_size: int,
        input_size: tuple[int, int] = (112, 112),
        mean: Sequence[float] = (0.485, 0.456, 0.406),
        std: Sequence[float] = (0.229, 0.224, 0.225),
        features_fn: Callable[[nn.Module, torch.Tensor], dict[str, torch.Tensor]] | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        self.input_size = tuple(input_size)
        self.crop_size = crop_size
        self.register_buffer("theta", affine_theta(torch.as_tensor(matrix), (crop_size, crop_size), self.input_size))
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        self.features_fn = features_fn or (lambda net, x: net.forward_features(x))
        self.backbone.eval()

    def train(self, mode: bool = True) -> RecognizerFeatures:
        # Always eval: a frozen recogniser must not update BatchNorm running statistics during training.
        super().train(mode)
        self.backbone.eval()
        return self

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Generator crops in [-1, 1] -> the recogniser's normalised input (differentiable)."""
        n = images.shape[0]
        grid = F.affine_grid(self.theta.expand(n, 2, 3), [n, 3, *self.input_size], align_corners=False)
        x = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return ((x + 1.0) / 2.0 - self.mean) / self.std

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named activations of the recogniser; ``"embedding"`` is L2-normalised."""
        feats = dict(self.features_fn(self.backbone, self.prepare(images)))
        feats["embedding"] = F.normalize(feats["embedding"].flatten(1), dim=1)
        return feats

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """The L2-normalised representation only, without gradients (the conditioning input)."""
        return self.forward(images)["embedding"]
