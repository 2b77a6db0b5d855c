"""Five facial landmarks from a face crop, differentiably: MTCNN's output network (ONet, Zhang et al. 2016).

Used as a training term that keeps a generator's face geometry (eyes, nose, mouth corners) where the target's is.
The network is facenet-pytorch's ``ONet``; its weights ship inside the facenet-pytorch wheel and are read by
:func:`deidkit.recognizers.load_five_landmarks` (this module loads no files).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: ONet's input side in pixels.
ONET_SIZE = 48


class FiveLandmarks(nn.Module):
    """(N, 3, H, W) face crops in [-1, 1] (the crop is the face box) -> (N, 5, 2) landmarks as fractions of the
    crop's width and height, in the order left eye, right eye, nose, left and right mouth corner.

    MTCNN normalises pixels as (p - 127.5) / 128, i.e. our [-1, 1] range to within 0.4 %; the crop is resized to
    48 x 48 with anti-aliasing. Frozen: gradients flow to the input only."""

    def __init__(self) -> None:
        super().__init__()
        from facenet_pytorch.models.mtcnn import ONet

        self.onet = ONet(pretrained=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> FiveLandmarks:  # noqa: ARG002 - always in evaluation mode
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (ONET_SIZE, ONET_SIZE):
            x = F.interpolate(x, size=(ONET_SIZE, ONET_SIZE), mode="bilinear", align_corners=False, antialias=True)
        _, points, _ = self.onet(x)
        return points.view(-1, 2, 5).transpose(1, 2)

    def face_probability(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) face boxes in [-1, 1] -> (N,) ONet's probability that each is a face (MTCNN's last
        detection stage). Near 1 on aligned LFW face boxes; it falls, like YuNet's detection rate, on outputs whose
        painted patterns hide the face (measured on the FaDeNet snapshots, see deidkit.train.fadenet)."""
        if x.shape[-2:] != (ONET_SIZE, ONET_SIZE):
            x = F.interpolate(x, size=(ONET_SIZE, ONET_SIZE), mode="bilinear", align_corners=False, antialias=True)
        _, _, prob = self.onet(x)
        return prob[:, 1]
