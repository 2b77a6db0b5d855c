"""De-identifying real photos and videos with any de-identifier of the kit.

* :mod:`~deidkit.pipeline.io`: reading and writing videos (checked headers, audio kept, atomic outputs).
* :mod:`~deidkit.pipeline.faces`: face detection (any face size), dlib's 68 landmarks, blend regions, tracking.
* :mod:`~deidkit.pipeline.swap`: the per-frame work (detect, align, de-identify, warp back, blend).
* :mod:`~deidkit.pipeline.video`: whole videos and images, with per-stage timing.
* :mod:`~deidkit.pipeline.cli`: the ``deidkit image|video`` commands.
"""

from deidkit.pipeline.faces import HULLS, Dlib68, canonical_face_box, largest_face_window, make_face_detector
from deidkit.pipeline.io import (
           VideoError,
           VideoInfo,
           VideoReader,
           VideoWriter,
           open_video,
           probe_video,
           read_frames,
)
from deidkit.pipeline.swap import FaceSwapper, FrameResult, StageClock
from deidkit.pipeline.video import ImageReport, VideoReport, deidentify_image, deidentify_video

__all__ = ["HULLS", "Dlib68", "FaceSwapper", "FrameResult", "ImageReport", "StageClock", "VideoError", "VideoInfo",
           "VideoReader", "VideoReport", "VideoWriter", "canonical_face_box", "deidentify_image", "deidentify_video",
           "largest_face_window", "make_face_detector", "open_video", "probe_video", "read_frames"]
