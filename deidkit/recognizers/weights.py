"""Reading the recognisers' pretrained weights: checksum-verified assets read with ``weights_only=True``, loaded
strictly into their networks and frozen; the MS1M backbone FaDeNet's critic starts from; MTCNN's five-landmark
network. The networks themselves are :mod:`deidkit.models` (which reads no files)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from deidkit.assets import AssetError, asset_path
from deidkit.models.mobilefacenet import MobileFaceNetMS1M


def load_checkpoint(asset: str, weights: str | os.PathLike | None = None, verify: bool = True,
                    key: str | None = None) -> tuple[dict[str, torch.Tensor], Path]:
    """Locate (and checksum) a weights asset, read it with ``weights_only=True``; return (state dict, path).

    ``weights`` overrides the shared copy; ``verify=False`` accepts a file that differs from the published
    one (e.g. your own fine-tuned weights). Any failure raises :class:`AssetError` naming the file.
    """
    path = asset_path(asset, weights, verify=verify)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and torch errors all mean the same thing to the user
        raise AssetError(f"{path}: cannot read {asset} weights ({type(exc).__name__}: {exc}); the file is "
                         "corrupt, truncated or not a PyTorch checkpoint") from None
    if key is not None:
        if not isinstance(obj, dict) or key not in obj:
            found = sorted(obj)[:5] if isinstance(obj, dict) else type(obj).__name__
            raise AssetError(f"{path}: expected a checkpoint dict with key {key!r}, found {found}")
        obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise AssetError(f"{path}: not a state dict of tensors")
    return obj, path


def load_ms1m_backbone(weights: str | os.PathLike | None = None) -> nn.Module:
    """The pretrained MS1M MobileFaceNet from the shared weights (checksum-verified, ``weights_only``), in
    evaluation mode with trainable parameters: the backbone FaDeNet's critic and its robust copy start from."""
    state, path = load_checkpoint("mobilefacenet-ms1m", weights)
    net = MobileFaceNetMS1M()
    net.load_state_dict(state, strict=True)
    return net.eval()


def load_into(net: nn.Module, state: dict[str, torch.Tensor], path: Path) -> nn.Module:
    """``state`` (read from ``path``) into ``net``, strictly, then evaluation mode and frozen weights; weights that
    do not fit are an :class:`AssetError` naming the file."""
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise AssetError(f"{path}: weights do not fit {type(net).__name__}: {exc}") from None
    net.eval()
    # The recognisers are fixed judges: gradients may flow to their inputs, never into their weights.
    for p in net.parameters():
        p.requires_grad_(False)
    return net



def load_five_landmarks() -> nn.Module:
    """MTCNN's landmark network (:class:`deidkit.models.landmarks.FiveLandmarks`) with the weights that ship in
    the facenet-pytorch wheel (``facenet_pytorch/data/onet.pt``), read with ``weights_only=True``."""
    import facenet_pytorch

    from deidkit.models.landmarks import FiveLandmarks

    path = Path(facenet_pytorch.__file__).parent / "data" / "onet.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: MTCNN's ONet weights missing (reinstall facenet-pytorch==2.5.3)")
    net = FiveLandmarks()
    load_into(net.onet, torch.load(path, map_location="cpu", weights_only=True), path)
    return net
