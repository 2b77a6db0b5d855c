import numpy as np
import pytest

from deidkit.data.alignment import FaceAligner, NoFaceError, warp_back
from deidkit.data.images import load_image
from deidkit.data.templates import canonical_landmarks


@pytest.fixture(scope="module")
def image(lfw_dir):
    return load_image(lfw_dir / "images" / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg")


@pytest.mark.parametrize("detector", ["yunet", "mtcnn"])
def test_landmarks_land_on_template(image, detector):
    al = FaceAligner(detector, size=224)
    face = al.align(image)
    assert face.crop.shape == (224, 224, 3) and face.crop.dtype == np.uint8
    # Re-detect on the crop (padded: a face filling the frame is hard for detectors): landmarks near template.
    pad = 56
    dets = al.detect(np.pad(face.crop, ((pad, pad), (pad, pad), (0, 0))))
    assert dets
    lms = dets[0].landmarks - pad
    # The matrix maps the detected landmarks where the detector finds them again in the crop...
    mapped = face.landmarks @ face.matrix[:, :2].T + face.matrix[:, 2]
    # (YuNet's landmarks move by a few pixels with the face's scale: ~6 px here, 2.5% of the face box.)
    assert np.linalg.norm(lms - mapped, axis=1).mean() < 8.0
    # ...and those lie near the template (a 5-point similarity fit leaves a residual for real faces).
    assert np.linalg.norm(mapped - canonical_landmarks(224), axis=1).mean() < 10.0


def test_detectors_agree(image):
    y = FaceAligner("yunet").align(image).landmarks
    m = FaceAligner("mtcnn").align(image).landmarks
    assert np.linalg.norm(y - m, axis=1).mean() < 6.0


def test_warp_back_returns_face_to_its_place(image):
    face = FaceAligner("yunet").align(image)
    back = warp_back(face.crop, face.matrix, image.shape)
    mask = warp_back(np.full(face.crop.shape[:2], 255, np.uint8), face.matrix, image.shape) == 255
    diff = np.abs(back.astype(int) - image.astype(int))[mask].mean()
    assert mask.sum() > 10000 and diff < 12, diff


def test_no_face_raises():
    with pytest.raises(NoFaceError):
        FaceAligner("yunet").align(np.full((200, 200, 3), 127, np.uint8))


def test_multiple_faces_found(image):
    two = np.concatenate([image, image], axis=1)
    assert len(FaceAligner("yunet").align_all(two)) == 2


def test_unknown_detector():
    with pytest.raises(ValueError, match="unknown detector"):
        FaceAligner("haar")


def test_yunet_keeps_one_network_per_input_size(image):
    """Alternating input sizes (the video pipeline's fine and coarse passes) reuse a network per size; the
    detections do not depend on which sizes came before."""
    import cv2

    from deidkit.data.alignment import YuNetDetector

    det = YuNetDetector()
    big = cv2.resize(image, (500, 500))
    first = det.detect(image)
    det.detect(big)
    again = det.detect(image)
    assert first and len(first) == len(again)
    assert all(np.allclose(a.box, b.box) and np.allclose(a.landmarks, b.landmarks) for a, b in zip(first, again))
    h, w = image.shape[:2]
    assert det.ready_sizes() == [(500, 500), (w, h)]  # the size used last comes last
    sides = range(260, 260 + 10 * YuNetDetector.MAX_SIZES, 10)
    for side in sides:  # more sizes than kept: the oldest go
        det.detect(cv2.resize(image, (side, side)))
    assert det.ready_sizes() == [(s, s) for s in sides]
