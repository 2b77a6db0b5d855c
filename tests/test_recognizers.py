"""Recognisers: weights load strictly, embeddings are well-formed and deterministic, and they tell people apart
on real LFW images aligned by YuNet. (LFW 10-fold accuracies are measured outside the test suite.)"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from deidkit.assets import AssetError, asset_path, shared_dirs
from deidkit.models.mobilefacenet import MobileFaceNetCASIA, MobileFaceNetMS1M
from deidkit.recognizers import (
    DLIB_BOX_ARCFACE,
    RECOGNIZERS,
    canonical_box,
    get_recognizer,
    load_checkpoint,
    warp_to_template,
)

torch.set_num_threads(1)

# Three people, two photographs each (matched pairs of LFW's pairs.txt).
PEOPLE = {"Abel_Pacheco": (1, 4), "Akhmed_Zakayev": (1, 3), "Amber_Tamblyn": (1, 2)}


def _lfw_images_dir():
    for d in shared_dirs():
        cand = d / "data" / "lfw" / "images"
        if cand.is_dir():
            return cand
    return None


@pytest.fixture(scope="module")
def lfw_crops() -> tuple[np.ndarray, np.ndarray]:
    """Six canonical 224 crops (3 identities x 2) aligned with YuNet, and their identity labels."""
    root = _lfw_images_dir()
    if root is None:
        pytest.fail("LFW images not available (set DEIDKIT_SHARED)")
    from deidkit.data.alignment import FaceAligner
    from deidkit.data.images import load_image

    aligner = FaceAligner("yunet", size=224)
    crops, labels = [], []
    for k, (name, nums) in enumerate(PEOPLE.items()):
        for n in nums:
            crops.append(aligner.align(load_image(root / name / f"{name}_{n:04d}.jpg")).crop)
            labels.append(k)
    return np.stack(crops), np.asarray(labels)


@pytest.fixture(scope="module")
def recognizers() -> dict:
    return {name: get_recognizer(name) for name in RECOGNIZERS}


def test_state_dicts_load_strictly() -> None:
    sd, _ = load_checkpoint("mobilefacenet-ms1m")
    assert len(sd) == 307
    MobileFaceNetMS1M().load_state_dict(sd, strict=True)
    sd, _ = load_checkpoint("mobilefacenet-casia", key="net_state_dict")
    assert len(sd) == 333
    MobileFaceNetCASIA().load_state_dict(sd, strict=True)


def test_network_shapes() -> None:
    x = torch.randn(2, 3, 112, 112)
    net = MobileFaceNetMS1M().eval()
    feats = net.forward_features(x)
    assert feats["stage1"].shape == (2, 64, 28, 28)
    assert feats["stage2"].shape == (2, 128, 14, 14)
    assert feats["conv2"].shape == (2, 512, 7, 7)
    assert torch.equal(feats["embedding"], net(x))
    assert MobileFaceNetCASIA().eval()(torch.randn(2, 3, 112, 96)).shape == (2, 128)


@pytest.mark.parametrize("name", RECOGNIZERS)
def test_embeddings_shape_norm_determinism(name: str, recognizers: dict, lfw_crops) -> None:
    rec = recognizers[name]
    crops, _ = lfw_crops
    e = rec.embed(crops)
    assert e.shape == (len(crops), rec.dim) and e.dtype == np.float32
    assert np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(e, rec.embed(crops)), "same input must give the same embedding"
    # Batching must not change the answer beyond float noise.
    assert np.allclose(np.concatenate([rec.embed(crops[i:i + 1]) for i in range(2)]), e[:2], atol=1e-4)
    assert rec.embed(crops[:0]).shape == (0, rec.dim)


def test_dims(recognizers: dict) -> None:
    assert recognizers["mobilefacenet_ms1m"].dim == 128
    assert recognizers["mobilefacenet_casia"].dim == 256  # image + mirror image, as in its LFW evaluation
    assert recognizers["dlib"].dim == 128


@pytest.mark.parametrize("name", RECOGNIZERS)
def test_same_person_scores_higher(name: str, recognizers: dict, lfw_crops) -> None:
    crops, labels = lfw_crops
    e = recognizers[name].embed(crops)
    sim = e @ e.T
    same = (labels[:, None] == labels[None, :]) & ~np.eye(len(labels), dtype=bool)
    diff = labels[:, None] != labels[None, :]
    assert sim[same].min() > sim[diff].max(), f"{name}: same {np.round(sim[same], 3)}, diff max {sim[diff].max():.3f}"


def test_other_crop_sizes_agree(recognizers: dict, lfw_crops) -> None:
    """A canonical crop of another size is the same face: the embedding barely moves."""
    import cv2

    crops, _ = lfw_crops
    rec = recognizers["mobilefacenet_ms1m"]
    big = np.stack([cv2.resize(c, (448, 448), interpolation=cv2.INTER_CUBIC) for c in crops])
    cos = np.sum(rec.embed(crops) * rec.embed(big), axis=1)
    assert cos.min() > 0.95


def test_feature_maps_differentiable_and_consistent(recognizers: dict, lfw_crops) -> None:
    crops, _ = lfw_crops
    rec = recognizers["mobilefacenet_ms1m"]
    x = (torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 127.5 - 1.0).requires_grad_(True)
    feats = rec.feature_maps(x)
    assert feats["stage2"].shape == (len(crops), 128, 14, 14)
    emb = feats["embedding"]
    assert torch.allclose(emb.norm(dim=1), torch.ones(len(crops)), atol=1e-5)
    # grid_sample vs cv2.warpAffine resample slightly differently; the identity vector must not care.
    cos = np.sum(emb.detach().numpy() * rec.embed(crops), axis=1)
    assert cos.min() > 0.99
    emb.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in rec.network.parameters()), "the recogniser's weights must stay frozen"
    # Any side works, including a small one.
    small = torch.nn.functional.interpolate(x.detach(), size=(128, 128), mode="bilinear", antialias=True)
    assert rec.feature_maps(small)["embedding"].shape == (len(crops), 128)


def test_warp_to_template_geometry() -> None:
    """The template landmarks of the canonical crop land on the recogniser template after warping."""
    from deidkit.data.templates import ARCFACE_112, canonical_landmarks

    size = 224
    img = np.zeros((1, size, size, 3), np.uint8)
    x, y = np.round(canonical_landmarks(size)[2]).astype(int)  # nose tip
    img[0, y - 2:y + 3, x - 2:x + 3] = 255
    out = warp_to_template(img, ARCFACE_112, (112, 112))[0, ..., 0].astype(float)
    ys, xs = np.nonzero(out > 64)
    assert abs(xs.mean() - ARCFACE_112[2, 0]) < 1.0 and abs(ys.mean() - ARCFACE_112[2, 1]) < 1.0


def test_dlib_box_inside_crop() -> None:
    x0, y0, x1, y1 = canonical_box(224)
    assert 0 <= x0 < x1 <= 224 and 0 <= y0 < y1 <= 224
    assert DLIB_BOX_ARCFACE[2] > DLIB_BOX_ARCFACE[0]


def test_bad_input_rejected(recognizers: dict) -> None:
    rec = recognizers["mobilefacenet_ms1m"]
    with pytest.raises(ValueError, match="uint8"):
        rec.embed(np.zeros((1, 224, 224, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(N, S, S, 3\)"):
        rec.embed(np.zeros((224, 224, 3), np.uint8))
    with pytest.raises(ValueError, match="unknown recogniser"):
        get_recognizer("facenet")


def test_corrupt_weights_named_error(tmp_path) -> None:
    good = asset_path("mobilefacenet-ms1m")
    bad = tmp_path / "mobilefacenet.pt"
    shutil.copyfile(good, bad)
    with open(bad, "r+b") as f:  # truncate: a half-finished download
        f.truncate(bad.stat().st_size // 2)
    with pytest.raises(AssetError, match="checksum mismatch") as exc:
        get_recognizer("mobilefacenet_ms1m", weights=bad)
    assert str(bad) in str(exc.value)
    # Without checksum verification the broken file is still caught when read, and named.
    with pytest.raises(AssetError, match="cannot read") as exc:
        get_recognizer("mobilefacenet_ms1m", weights=bad, verify=False)
    assert str(bad) in str(exc.value)
    # A checkpoint dict where a plain state dict is expected, and the wrong architecture's weights.
    with pytest.raises(AssetError, match="not a state dict"):
        get_recognizer("mobilefacenet_ms1m", weights=asset_path("mobilefacenet-casia"), verify=False)
    other = tmp_path / "casia_state.pt"
    torch.save(load_checkpoint("mobilefacenet-casia", key="net_state_dict")[0], other)
    with pytest.raises(AssetError, match="do not fit") as exc:
        get_recognizer("mobilefacenet_ms1m", weights=other, verify=False)
    assert str(other) in str(exc.value)
    missing = tmp_path / "nope.pt"
    with pytest.raises(AssetError, match="not found") as exc:
        get_recognizer("mobilefacenet_casia", weights=missing)
    assert str(missing) in str(exc.value)


def test_dlib_helper_processes_give_the_same_vectors(lfw_crops) -> None:
    """A batch split between this process and a helper process gives exactly the one-process vectors."""
    from deidkit.recognizers import DLIB_PARALLEL_MIN

    crops, _ = lfw_crops
    crops = np.ascontiguousarray(np.concatenate([crops, crops[:, :, ::-1], np.roll(crops, 3, axis=1)]))
    assert len(crops) >= DLIB_PARALLEL_MIN
    one = get_recognizer("dlib", workers=1).embed(crops)
    two = get_recognizer("dlib", workers=2)
    try:
        got = two.embed(crops)
        assert two._pool is not None  # the split path ran
        # a helper ignores Ctrl-C (the parent stops the pool; no second traceback from the helper)
        import signal

        assert two._pool.submit(signal.getsignal, signal.SIGINT).result() == signal.SIG_IGN
    finally:
        two.close()
    np.testing.assert_array_equal(one, got)
    with pytest.raises(ValueError, match="workers"):
        get_recognizer("dlib", workers=0)
