"""The crop-and-paste round trip of the photo pipeline loses nothing of the face: the identity de-identifier
through it gives back the input (inner face box: sharpness within 3 % of the original's, PSNR >= 40 dB), on real
LFW photos and on a face enlarged to HD size; the old path (a 224-pixel crop, bilinear both ways) did not."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from deidkit.baselines import Identity
from deidkit.data.alignment import make_detector, pick_central
from deidkit.data.images import load_image
from deidkit.data.lfw import lfw_root
from deidkit.data.templates import canonical_landmarks, similarity_matrix
from deidkit.eval.realism import photo_face_box, sharpness
from deidkit.pipeline.swap import FaceSwapper, work_side


def _face_scores(photo, out, matrix):
    x0, y0, x1, y1 = photo_face_box(matrix, photo.shape)
    a, b = photo[y0:y1, x0:x1], out[y0:y1, x0:x1]
    mse = float(((a.astype(np.float64) - b) ** 2).mean())
    return sharpness(a, b), 10 * np.log10(255.0 ** 2 / max(mse, 1e-12))


@pytest.fixture(scope="module")
def photos(protocol_small):
    root = lfw_root()
    return [load_image(root / p) for p in protocol_small["path"][::8]]


@pytest.mark.parametrize("enlarge", [1, 3])
def test_identity_round_trip_is_lossless(photos, enlarge):
    det = make_detector("yunet")
    sw = FaceSwapper(Identity(), "yunet", hull="face")
    for photo in photos:
        if enlarge > 1:  # a face of ~300 pixels, as in 1080p video
            photo = cv2.resize(photo, None, fx=enlarge, fy=enlarge, interpolation=cv2.INTER_CUBIC)
        res = sw.process(photo)
        sw.reset()
        assert res.faces >= 1
        m = similarity_matrix(pick_central(det.detect(photo), photo.shape).landmarks, canonical_landmarks(224))
        sharp, psnr = _face_scores(photo, res.frame, m)
        assert sharp >= 0.97 and psnr >= 40.0, (sharp, psnr)
    # the earlier path, for contrast: aligned at the de-identifier's crop, bilinear both ways
    old = FaceSwapper(Identity(), "yunet", hull="face", oversample=0)
    import deidkit.pipeline.swap as swap

    keep = swap.RESAMPLING
    swap.RESAMPLING = cv2.INTER_LINEAR
    try:
        photo = cv2.resize(photos[0], None, fx=enlarge, fy=enlarge, interpolation=cv2.INTER_CUBIC)
        m = similarity_matrix(pick_central(det.detect(photo), photo.shape).landmarks, canonical_landmarks(224))
        sharp, _ = _face_scores(photo, old.process(photo).frame, m)
        assert sharp < 0.9
    finally:
        swap.RESAMPLING = keep


def test_work_side_follows_the_largest_face():
    m_small = np.array([[2.0, 0, 0], [0, 2.0, 0]])  # 2 crop pixels per frame pixel: a small face
    m_large = np.array([[0.5, 0, 0], [0, 0.5, 0]])  # a face 4 x larger
    assert work_side([m_small], 224) == 224  # never below the de-identifier's crop
    assert work_side([m_small, m_large], 224) == int(np.ceil(1.5 * 448))
    assert work_side([np.array([[0.01, 0, 0], [0, 0.01, 0]])], 224) == 1536  # bounded
    assert work_side([], 224) == 224
