"""Identity critics for FaDeNet: identity classifiers that are trained separately, then frozen.

Both critics take canonical face crops as float tensors (N, 3, S, S) in [-1, 1] (any S; see
:func:`deidkit.data.templates.canonical_landmarks`) and are differentiable with respect to the input, because
FaDeNet's loss back-propagates through the frozen critic into the U-Net. Both expose ``logits(x)`` (class scores
over the training identities) and ``features(x)`` (a descriptor for identification of unseen identities).

* :class:`InceptionCritic`: torchvision's Inception-v3 trained from scratch as an identity classifier (the
  paper's critic); features are its 2048-d pooled activations.
* :class:`EmbeddingCritic`: a pretrained face recogniser (e.g. the MS1M MobileFaceNet) as a frozen backbone with
  a trained linear softmax head on its L2-normalised embedding; CPU-friendly.

Networks only: nothing here reads a file. The backbone is passed in already built (and loaded) by the caller.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from deidkit.data.templates import ARCFACE_112, crop_to_template

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def affine_theta(matrix: np.ndarray, src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> torch.Tensor:
    """The ``F.affine_grid`` theta (1, 2, 3) that resamples a ``src_hw`` image into a ``dst_hw`` one like
    ``cv2.warpAffine(src, matrix, dst)`` does (``matrix`` maps source pixel coordinates to destination ones,
    pixel centres at integer coordinates; use with ``align_corners=False``)."""
    (sh, sw), (dh, dw) = src_hw, dst_hw
    m = np.vstack([np.asarray(matrix, dtype=np.float64), [0.0, 0.0, 1.0]])
    # normalised dst -> dst pixels, dst pixels -> src pixels (inverse warp), src pixels -> normalised src.
    n2p_dst = np.array([[dw / 2, 0, (dw - 1) / 2], [0, dh / 2, (dh - 1) / 2], [0, 0, 1]])
    p2n_src = np.array([[2 / sw, 0, 1 / sw - 1], [0, 2 / sh, 1 / sh - 1], [0, 0, 1]])
    theta = p2n_src @ np.linalg.inv(m) @ n2p_dst
    return torch.tensor(theta[:2], dtype=torch.float32).unsqueeze(0)


class TemplateCrop(nn.Module):
    """Differentiable crop of a recogniser's template (e.g. ArcFace 112x112) out of canonical crops of any size."""

    def __init__(self, template: np.ndarray = ARCFACE_112, out_hw: tuple[int, int] = (112, 112)) -> None:
        super().__init__()
        self.template = np.asarray(template, dtype=np.float64)
        self.out_hw = out_hw
        self._thetas: dict[int, torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.shape[-1]
        if x.shape[-2] != s:
            raise ValueError(f"canonical crops are square, got {tuple(x.shape[-2:])}")
        if s not in self._thetas:
            self._thetas[s] = affine_theta(crop_to_template(s, self.template), (s, s), self.out_hw)
        theta = self._thetas[s].to(device=x.device, dtype=x.dtype).expand(x.shape[0], 2, 3)
        grid = F.affine_grid(theta, [x.shape[0], x.shape[1], *self.out_hw], align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class Critic(nn.Module):
    """Common interface: ``logits(x)``, ``features(x)``, ``forward = logits``, ``freeze()``."""

    num_classes: int

    def features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def logits_from_features(self, f: torch.Tensor) -> torch.Tensor:
        """Class scores from the output of :meth:`features` (lets a frozen-backbone critic train its head on
        precomputed features)."""
        raise NotImplementedError

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits_from_features(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(x)

    def freeze(self) -> Critic:
        """Evaluation mode and no parameter gradients (input gradients still flow)."""
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
        return self


class InceptionCritic(Critic):
    """Inception-v3 identity classifier trained from scratch (torchvision's architecture, no auxiliary head).

    Canonical crops are resized to ``input_size`` (at least 75, Inception-v3's minimum) before the network.
    """

    def __init__(self, num_classes: int, input_size: int = 224, dropout: float = 0.5) -> None:
        super().__init__()
        if input_size < 75:
            raise ValueError(f"Inception-v3 needs inputs of at least 75 pixels, got input_size={input_size}")
        self.num_classes, self.input_size = num_classes, input_size
        self.net = torchvision.models.inception_v3(
            weights=None, aux_logits=False, init_weights=True, num_classes=num_classes,
            transform_input=False, dropout=dropout,
        )

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False,
                              antialias=x.shape[-1] > self.input_size)
        return x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The 2048-d average-pooled activations before the classifier."""
        n = self.net
        x = self._prepare(x)
        # torchvision's Inception3._forward, up to the pooling (the fc layer is applied in logits()).
        for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
                     "Conv2d_4a_3x3", "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b",
                     "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c", "avgpool"):
            x = getattr(n, name)(x)
        return torch.flatten(x, 1)

    def logits_from_features(self, f: torch.Tensor) -> torch.Tensor:
        return self.net.fc(self.net.dropout(f))


class EmbeddingCritic(Critic):
    """A frozen pretrained face embedding with a linear softmax head over the training identities.

    ``backbone`` maps (N, 3, *template_hw) normalised images to (N, D) embeddings (for the MS1M MobileFaceNet:
    the ArcFace 112x112 template with ImageNet mean/std, the defaults). ``features`` is the L2-normalised
    embedding; ``logits`` a linear layer on it times ``logit_scale`` (unit-norm inputs give small logits, so a
    plain linear head would need many epochs just to grow its weights). With ``train_backbone=False`` the backbone stays in eval mode
    (its BatchNorm statistics fixed) even when the critic is put in training mode.
    """

    def __init__(self, backbone: nn.Module, num_classes: int, embedding_dim: int = 128,
                 template: np.ndarray = ARCFACE_112, template_hw: tuple[int, int] = (112, 112),
                 mean: tuple[float, float, float] = IMAGENET_MEAN, std: tuple[float, float, float] = IMAGENET_STD,
                 train_backbone: bool = False, logit_scale: float = 16.0) -> None:
        super().__init__()
        self.num_classes, self.logit_scale = num_classes, float(logit_scale)
        self.backbone = backbone
        self.crop = TemplateCrop(template, template_hw)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.head = nn.Linear(embedding_dim, num_classes)
        self.train_backbone = train_backbone
        if not train_backbone:
            for p in self.backbone.parameters():
                p.requires_grad_(False)
            self.backbone.eval()

    def train(self, mode: bool = True) -> EmbeddingCritic:
        super().train(mode)
        if not self.train_backbone:
            self.backbone.eval()
        return self

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """L2-normalised backbone embedding of the template crop taken from the canonical crop."""
        return F.normalize(self.backbone(self._prepare(x)), dim=1)

    def feature_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The backbone's intermediate activations by stage name (its ``forward_features``) in one pass, with
        ``"features"`` the same L2-normalised embedding as :meth:`features`."""
        maps = dict(self.backbone.forward_features(self._prepare(x)))
        maps["features"] = F.normalize(maps["embedding"], dim=1)
        return maps

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        z = self.crop(x)
        return ((z + 1.0) / 2.0 - self.mean) / self.std

    def logits_from_features(self, f: torch.Tensor) -> torch.Tensor:
        return self.head(f * self.logit_scale)


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """A copy of a frozen network with every Conv2d + BatchNorm2d pair inside ``nn.Sequential`` containers folded
    into one convolution: the same function in evaluation mode, about a third cheaper on the CPU (the critic runs
    forward and backward at every FaDeNet step). Not for training the folded network's BatchNorm."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    def fold(m: nn.Module) -> None:
        for name, child in m.named_children():
            if isinstance(child, nn.Sequential):
                mods, out, i = list(child), [], 0
                while i < len(mods):
                    if (isinstance(mods[i], nn.Conv2d) and i + 1 < len(mods)
                            and isinstance(mods[i + 1], nn.BatchNorm2d)):
                        out.append(fuse_conv_bn_eval(mods[i], mods[i + 1]))
                        i += 2
                    else:
                        fold(mods[i])
                        out.append(mods[i])
                        i += 1
                setattr(m, name, nn.Sequential(*out))
            else:
                fold(child)

    folded = copy.deepcopy(module).eval()
    fold(folded)
    for p in folded.parameters():
        p.requires_grad_(False)
    return folded


def build_critic(kind: str, num_classes: int, backbone: nn.Module | None = None, input_size: int = 224) -> Critic:
    """``kind`` is ``"inception"`` or ``"mobilefacenet"`` (which needs the already-loaded ``backbone``)."""
    if kind == "inception":
        return InceptionCritic(num_classes, input_size=input_size)
    if kind == "mobilefacenet":
        if backbone is None:
            raise ValueError("the 'mobilefacenet' critic needs a loaded backbone (see deidkit.train.critic)")
        return EmbeddingCritic(backbone, num_classes)
    raise ValueError(f"unknown critic kind {kind!r}; expected 'inception' or 'mobilefacenet'")
