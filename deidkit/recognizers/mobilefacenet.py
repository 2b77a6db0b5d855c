"""The two MobileFaceNet recognisers: MS1M (ArcFace 112x112 template, ImageNet mean/std, 128-d, with a
differentiable feature path for losses: :class:`MS1MFeatureExtractor`) and CASIA-WebFace (SphereFace 96x112
template, ``(x-127.5)/128``, image and mirror image concatenated, 256-d)."""

from __future__ import annotations

import os
from abc import abstractmethod

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deidkit.data.templates import ARCFACE_112, SPHEREFACE_96x112, crop_to_template
from deidkit.models.mobilefacenet import MobileFaceNetCASIA, MobileFaceNetMS1M
from deidkit.recognizers.base import Recognizer, warp_to_template
from deidkit.recognizers.weights import load_checkpoint, load_into


class _TorchRecognizer(Recognizer):
    """Shared machinery of the two MobileFaceNets: warp, normalise, optional mirror-image concatenation."""

    template: np.ndarray
    out_wh: tuple[int, int]

    def __init__(self, network: nn.Module, flip: bool, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.network = network.to(self.device).eval()
        self.flip = flip
        self.dim = network.embedding_dim * (2 if flip else 1)

    @abstractmethod
    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, h, w) float RGB in 0-255 -> network input."""

    def preprocess(self, crops: np.ndarray) -> torch.Tensor:
        """Canonical crops -> the network's input tensor (N, 3, h, w)."""
        warped = warp_to_template(crops, self.template, self.out_wh)
        x = torch.from_numpy(warped).to(self.device).permute(0, 3, 1, 2).float()
        return self._normalise(x)

    @torch.no_grad()
    def _embed_batch(self, crops: np.ndarray) -> np.ndarray:
        self.network.eval()
        x = self.preprocess(crops)
        e = self.network(x)
        if self.flip:
            e = torch.cat([e, self.network(torch.flip(x, dims=[3]))], dim=1)
        return e.cpu().numpy()


class MobileFaceNetMS1MRecognizer(_TorchRecognizer):
    """MobileFaceNet (MS1M, ArcFace loss; foamliu): ArcFace 112x112 crop, ImageNet mean/std, 128-d."""

    name = "mobilefacenet_ms1m"
    template = ARCFACE_112
    out_wh = (112, 112)
    MEAN = (0.485, 0.456, 0.406)
    STD = (0.229, 0.224, 0.225)

    def __init__(self, weights: str | os.PathLike | None = None, verify: bool = True, flip: bool = False,
                 device: str | torch.device = "cpu") -> None:
        state, self.weights_path = load_checkpoint("mobilefacenet-ms1m", weights, verify)
        super().__init__(load_into(MobileFaceNetMS1M(), state, self.weights_path), flip, device)
        self._features = MS1MFeatureExtractor(self.network).to(self.device)

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.STD, device=x.device).view(1, 3, 1, 1)
        return (x / 255.0 - mean) / std

    def feature_maps(self, crops: torch.Tensor) -> dict[str, torch.Tensor]:
        """Differentiable intermediate layers and embedding of canonical crops given as a torch tensor.

        ``crops``: float (N, 3, S, S) RGB in [-1, 1] (the range generators output), any side S, on the
        recogniser's device (``get_recognizer(..., device="cuda")`` for a GPU). Returns a dict of activations ``conv1``, ``dw_conv``,
        ``stage1`` (64x28x28), ``stage2`` (128x14x14), ``stage3`` (128x7x7), ``conv2`` (512x7x7) and
        ``embedding`` (N, 128), L2-normalised. Gradients flow to ``crops``; the network's weights are frozen
        and it stays in eval mode (BatchNorm uses its running statistics). Up to resampling differences
        (``grid_sample`` instead of ``cv2.warpAffine``) the embedding equals :meth:`embed` of the same crops.
        For a trainable copy, wrap ``copy.deepcopy(rec.network)`` in :class:`MS1MFeatureExtractor`.
        """
        if crops.device != self.device:
            raise ValueError(f"crops are on {crops.device} but {self.name} runs on {self.device}; build it with "
                             f"get_recognizer({self.name!r}, device={str(crops.device)!r})")
        return self._features(crops)


def _pixel_to_normalised(w: int, h: int) -> np.ndarray:
    """3x3 map from pixel coordinates (centres at integers) to grid_sample's [-1, 1] (align_corners=False)."""
    return np.array([[2.0 / w, 0.0, 1.0 / w - 1.0], [0.0, 2.0 / h, 1.0 / h - 1.0], [0.0, 0.0, 1.0]])


def template_grid_theta(size: int, template: np.ndarray, out_wh: tuple[int, int]) -> np.ndarray:
    """The 2x3 ``affine_grid`` theta that samples a template crop of ``out_wh`` from a canonical ``size`` crop.

    Same geometry as :func:`warp_to_template`: ``crop_to_template`` maps canonical pixels to template
    pixels; ``affine_grid`` wants the inverse (output -> input) in normalised coordinates.
    """
    m = np.vstack([crop_to_template(size, template), [0.0, 0.0, 1.0]])
    w, h = out_wh
    theta = _pixel_to_normalised(size, size) @ np.linalg.inv(m) @ np.linalg.inv(_pixel_to_normalised(w, h))
    return theta[:2]


class MS1MFeatureExtractor(nn.Module):
    """Differentiable canonical-crop -> MobileFaceNet-MS1M features, for perceptual and critic losses.

    Input: (N, 3, S, S) float RGB in [-1, 1], any S. The ArcFace 112 crop is sampled with ``affine_grid`` +
    ``grid_sample`` (bilinear, after an antialiased resize when S is large), normalised with ImageNet
    mean/std, and run through ``network.forward_features``. Output: dict of stage activations and the
    L2-normalised ``embedding``. Whether the network trains is the caller's choice (the recogniser's copy is
    frozen); the extractor itself has no parameters of its own.
    """

    def __init__(self, network: MobileFaceNetMS1M) -> None:
        super().__init__()
        self.network = network
        self.register_buffer("mean", torch.tensor(MobileFaceNetMS1MRecognizer.MEAN).view(1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor(MobileFaceNetMS1MRecognizer.STD).view(1, 3, 1, 1), False)
        self._thetas: dict[int, torch.Tensor] = {}

    def _theta(self, size: int) -> torch.Tensor:
        if size not in self._thetas:
            th = template_grid_theta(size, ARCFACE_112, (112, 112))
            self._thetas[size] = torch.from_numpy(th).float()
        return self._thetas[size]

    def forward(self, crops: torch.Tensor) -> dict[str, torch.Tensor]:
        if crops.ndim != 4 or crops.shape[1] != 3 or crops.shape[2] != crops.shape[3]:
            raise ValueError(f"expected canonical crops as a (N, 3, S, S) tensor, got {tuple(crops.shape)}")
        x = crops.float()
        size = x.shape[-1]
        scale = float(np.sqrt(abs(np.linalg.det(crop_to_template(size, ARCFACE_112)[:, :2]))))
        if scale < 1 / 1.5:  # same antialiasing rule as warp_to_template
            size = max(int(round(size * scale)), 32)
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        theta = self._theta(size).to(x.device).expand(x.shape[0], 2, 3)
        grid = F.affine_grid(theta, [x.shape[0], 3, 112, 112], align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        x = ((x + 1.0) / 2.0 - self.mean) / self.std
        feats = self.network.forward_features(x)
        feats["embedding"] = F.normalize(feats["embedding"], dim=1)
        return feats


class MobileFaceNetCASIARecognizer(_TorchRecognizer):
    """MobileFaceNet (CASIA-WebFace, ArcFace loss; Xiaoccer): SphereFace 96x112 crop, ``(x-127.5)/128``.

    With ``flip=True`` (default, as in the model's own LFW evaluation) the embedding is the concatenation of
    the image's and the mirror image's features (256-d) before normalisation.
    """

    name = "mobilefacenet_casia"
    template = SPHEREFACE_96x112
    out_wh = (96, 112)

    def __init__(self, weights: str | os.PathLike | None = None, verify: bool = True, flip: bool = True,
                 device: str | torch.device = "cpu") -> None:
        state, self.weights_path = load_checkpoint("mobilefacenet-casia", weights, verify, key="net_state_dict")
        super().__init__(load_into(MobileFaceNetCASIA(), state, self.weights_path), flip, device)

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - 127.5) / 128.0

