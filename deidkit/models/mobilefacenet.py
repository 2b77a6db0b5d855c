"""MobileFaceNet (Chen et al., 2018) in the two layouts whose pretrained weights the kit uses.

Networks only: nothing here reads a file (see :mod:`deidkit.recognizers` for loading and preprocessing).
Module and parameter names are chosen so that the published state dicts load with ``strict=True``:

* :class:`MobileFaceNetMS1M` matches ``mobilefacenet.pt`` from github.com/foamliu/MobileFaceNet (trained on
  refined MS-Celeb-1M with ArcFace loss): a MobileNetV2-style body with ReLU6, a 7x7 global depthwise
  convolution, then a 1x1 convolution 512->128 with bias and a BatchNorm. Input 112x112 RGB, ImageNet mean/std.
* :class:`MobileFaceNetCASIA` matches ``068.ckpt`` from github.com/Xiaoccer/MobileFaceNet_Pytorch (trained on
  CASIA-WebFace with ArcFace loss): the paper's layout with PReLU and a linear (7, 6) global depthwise
  convolution. Input 112 (h) x 96 (w) RGB, ``(x - 127.5) / 128``.

Both share the same body (t, c, n, s bottleneck setting of the paper) and give 128-d embeddings (not normalised).
"""

from __future__ import annotations

import torch
from torch import nn

#: The paper's bottleneck setting: expansion t, output channels c, repeats n, first stride s.
BOTTLENECK_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (2, 64, 5, 2),
    (4, 128, 1, 2),
    (2, 128, 6, 1),
    (4, 128, 1, 2),
    (2, 128, 2, 1),
)


def _expand_setting(setting: tuple[tuple[int, int, int, int], ...], in_ch: int) -> list[tuple[int, int, int, int]]:
    """(in_channels, out_channels, stride, expansion) for every bottleneck block in order."""
    blocks = []
    for t, c, n, s in setting:
        for i in range(n):
            blocks.append((in_ch, c, s if i == 0 else 1, t))
            in_ch = c
    return blocks


# --------------------------------------------------------------------------------------------------------------
# MS1M layout (foamliu)
# --------------------------------------------------------------------------------------------------------------


class _ConvBNReLU6(nn.Sequential):
    """conv -> BN -> ReLU6, stored as a Sequential so the keys read ``<name>.0.weight``, ``<name>.1.*``."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=True),
        )


class _DepthwiseSeparable(nn.Module):
    """Depthwise 3x3 -> BN -> ReLU -> pointwise 1x1 -> BN -> ReLU (plain ReLU here, as trained)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        self.pointwise = nn.Conv2d(channels, channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.depthwise(x)))
        return self.relu(self.bn2(self.pointwise(x)))


class _GlobalDepthwise(nn.Module):
    """Global depthwise convolution (one 7x7 filter per channel over the whole 7x7 map) + BN, linear."""

    def __init__(self, channels: int, kernel: int | tuple[int, int]) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(channels, channels, kernel, groups=channels, bias=False)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.depthwise(x))


class _InvertedResidualReLU6(nn.Module):
    """MobileNetV2 bottleneck: 1x1 expand (ReLU6) -> 3x3 depthwise (ReLU6) -> 1x1 linear projection."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = cin * expansion
        self.use_residual = stride == 1 and cin == cout
        self.conv = nn.Sequential(
            _ConvBNReLU6(cin, hidden, kernel=1),
            _ConvBNReLU6(hidden, hidden, kernel=3, stride=stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return x + y if self.use_residual else y


class MobileFaceNetMS1M(nn.Module):
    """MobileFaceNet as trained on MS1M by foamliu: (N, 3, 112, 112) ImageNet-normalised RGB -> (N, 128).

    The layer names of :meth:`forward_features` are the stages a perceptual or critic loss can tap:
    ``conv1`` (64 x 56 x 56), ``dw_conv`` (64 x 56 x 56), ``stage1`` (64 x 28 x 28), ``stage2``
    (128 x 14 x 14), ``stage3`` (128 x 7 x 7), ``conv2`` (512 x 7 x 7), ``embedding`` (N, 128).
    """

    embedding_dim = 128
    input_size = (112, 112)  # (h, w)
    #: Index (exclusive) into ``features`` where each named stage ends: after the 5 stride-2 blocks at 28x28,
    #: after the 14x14 blocks, after the last 7x7 blocks.
    STAGE_ENDS = {"stage1": 5, "stage2": 12, "stage3": 15}

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = _ConvBNReLU6(3, 64, kernel=3, stride=2)
        self.dw_conv = _DepthwiseSeparable(64)
        self.features = nn.Sequential(
            *[_InvertedResidualReLU6(i, o, s, t) for i, o, s, t in _expand_setting(BOTTLENECK_SETTING, 64)]
        )
        self.conv2 = _ConvBNReLU6(128, 512, kernel=1)
        self.gdconv = _GlobalDepthwise(512, 7)
        self.conv3 = nn.Conv2d(512, 128, 1, bias=True)
        self.bn = nn.BatchNorm2d(128)

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv3(self.gdconv(x))).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dw_conv(self.conv1(x))
        x = self.features(x)
        return self._head(self.conv2(x))

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Intermediate activations by stage name, ending with the (unnormalised) ``embedding``."""
        out: dict[str, torch.Tensor] = {}
        x = self.conv1(x)
        out["conv1"] = x
        x = self.dw_conv(x)
        out["dw_conv"] = x
        start = 0
        for name, end in self.STAGE_ENDS.items():
            x = self.features[start:end](x)
            out[name] = x
            start = end
        x = self.conv2(x)
        out["conv2"] = x
        out["embedding"] = self._head(x)
        return out


# --------------------------------------------------------------------------------------------------------------
# CASIA layout (Xiaoccer)
# --------------------------------------------------------------------------------------------------------------


class _ConvBlock(nn.Module):
    """conv -> BN (-> PReLU unless linear); keys ``conv``, ``bn``, ``prelu``."""

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int], stride: int = 1, padding: int = 0,
                 depthwise: bool = False, linear: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, groups=cin if depthwise else 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.prelu = None if linear else nn.PReLU(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return x if self.prelu is None else self.prelu(x)


class _BottleneckPReLU(nn.Module):
    """The paper's bottleneck with PReLU: keys ``conv.0`` .. ``conv.7`` (conv, bn, prelu, dw, bn, prelu, pw, bn)."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = cin * expansion
        self.use_residual = stride == 1 and cin == cout
        self.conv = nn.Sequential(
            nn.Conv2d(cin, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.PReLU(hidden),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.PReLU(hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return x + y if self.use_residual else y


class MobileFaceNetCASIA(nn.Module):
    """MobileFaceNet as trained on CASIA-WebFace by Xiaoccer: (N, 3, 112, 96) RGB in ``(x-127.5)/128`` -> (N, 128)."""

    embedding_dim = 128
    input_size = (112, 96)  # (h, w)

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = _ConvBlock(3, 64, 3, stride=2, padding=1)
        self.dw_conv1 = _ConvBlock(64, 64, 3, stride=1, padding=1, depthwise=True)
        self.blocks = nn.Sequential(
            *[_BottleneckPReLU(i, o, s, t) for i, o, s, t in _expand_setting(BOTTLENECK_SETTING, 64)]
        )
        self.conv2 = _ConvBlock(128, 512, 1)
        # A 112x96 input leaves a 7 (h) x 6 (w) map: the global depthwise kernel covers it exactly.
        self.linear7 = _ConvBlock(512, 512, (7, 6), depthwise=True, linear=True)
        self.linear1 = _ConvBlock(512, 128, 1, linear=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dw_conv1(self.conv1(x))
        x = self.conv2(self.blocks(x))
        return self.linear1(self.linear7(x)).flatten(1)
