"""Losses (tensors in, tensors out; no knowledge of data sets)."""

from deidkit.losses.fadenet import FaDeNetLoss, fadenet_loss, unit_norm_distance

__all__ = ["FaDeNetLoss", "fadenet_loss", "unit_norm_distance"]
