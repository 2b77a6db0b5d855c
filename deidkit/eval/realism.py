"""Does a de-identified face look like a real photograph? SSIM cannot tell: blur is what it forgives most. Three
measures, at crop level (``"crop"``: canonical crops straight through the de-identifier) and at photo level
(``"image"``, as in :mod:`deidkit.eval.frontier`: whole photos through the kit's pipeline,
:class:`deidkit.pipeline.swap.FaceSwapper`):

- ``sharpness``: variance of the Laplacian of the output's inner face box over that of the original's (1: as much
  fine detail as the original; blur falls towards 0; above 1 means added edges, e.g. pixelation's blocks);
- ``colour_shift``: CIE76 colour difference (Delta E) between the mean CIELAB colour of the output's and the
  original's inner face box (about 1: hardly visible; 2-3: visible side by side);
- ``c2st``: a classifier two-sample test. A linear probe on a frozen face network's feature statistics learns to
  tell de-identified from original face crops of training-pool identities; its accuracy on the test protocol's
  crops is the score (0.5: the two cannot be told apart; 1: always told apart).

Every score is a median (sharpness, colour) or an accuracy over the protocol's photos; the originals are the
unchanged photos."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm.auto import tqdm

from deidkit.eval.provenance import provenance
from deidkit.eval.quality import face_box

#: The inner face box: this fraction of the canonical face box (:func:`deidkit.eval.quality.face_box`), centred:
#: brows, eyes, nose and mouth, little hair or background.
INNER_FACE = 0.7
#: The size of the canonical crops every measure reads (the kit's alignment cache is at this size).
CROP = 224


def inner_face_box(size: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the inner face box in a canonical ``size`` crop."""
    x0, y0, x1, y1 = face_box(size)
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, INNER_FACE * (x1 - x0) / 2
    return int(round(cx - half)), int(round(cy - half)), int(round(cx + half)), int(round(cy + half))


def photo_face_box(matrix: np.ndarray, shape: tuple[int, ...], size: int = CROP) -> tuple[int, int, int, int]:
    """The inner face box of a photo, axis-aligned, in the photo's own pixels: the canonical box's corners mapped
    back through the inverse of ``matrix`` (photo -> canonical ``size`` crop), clipped to the photo."""
    x0, y0, x1, y1 = inner_face_box(size)
    inv = cv2.invertAffineTransform(np.asarray(matrix, np.float64))
    pts = np.array([[x0, y0, 1], [x1, y0, 1], [x0, y1, 1], [x1, y1, 1]], np.float64) @ inv.T
    (a, b), (c, d) = np.floor(pts.min(0)).astype(int), np.ceil(pts.max(0)).astype(int)
    h, w = shape[:2]
    return max(a, 0), max(b, 0), min(c, w), min(d, h)


def face_views(rows: Sequence[np.ndarray], matrices: Sequence[np.ndarray], side: int = 256) -> list[np.ndarray]:
    """Each photo of ``rows`` (batches of whole photos, one per de-identifier, the originals first) cut to the
    square its canonical crop covers (the face with hair and chin) and shown at ``side`` pixels (Lanczos): the size
    at which a viewer judges whether a face looks real. ``matrices``: photo -> canonical ``CROP`` crop."""
    out = []
    for batch in rows:
        views = []
        for photo, m in zip(batch, matrices):
            inv = cv2.invertAffineTransform(np.asarray(m, np.float64))
            corners = np.array([[0, 0, 1], [CROP, 0, 1], [0, CROP, 1], [CROP, CROP, 1]], np.float64) @ inv.T
            (cx, cy), half = corners.mean(0), (corners.max(0) - corners.min(0)).max() / 2
            # a square about the face, the photo's border repeated where it runs out
            a = np.array([[side / (2 * half), 0, side / 2 - cx * side / (2 * half)],
                          [0, side / (2 * half), side / 2 - cy * side / (2 * half)]])
            views.append(cv2.warpAffine(photo, a, (side, side), flags=cv2.INTER_LANCZOS4,
                                        borderMode=cv2.BORDER_REPLICATE))
        out.append(np.stack(views))
    return out


def laplacian_variance(image: np.ndarray) -> float:
    """Variance of the 3 x 3 Laplacian of an RGB image's luma: how much fine detail it holds."""
    grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY).astype(np.float64)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def mean_lab(image: np.ndarray) -> np.ndarray:
    """Mean CIELAB colour (L in 0..100) of an sRGB uint8 image."""
    lab = cv2.cvtColor(np.ascontiguousarray(image).astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    return lab.reshape(-1, 3).mean(0)


def sharpness(original: np.ndarray, output: np.ndarray) -> float:
    """Fine detail of ``output`` relative to ``original`` (two images of one region)."""
    return laplacian_variance(output) / max(laplacian_variance(original), 1e-9)


def colour_difference(original: np.ndarray, output: np.ndarray) -> float:
    """CIE76 Delta E between the mean CIELAB colours of two images of one region."""
    return float(np.linalg.norm(mean_lab(output) - mean_lab(original)))


def region_scores(originals: Sequence[np.ndarray], outputs: Sequence[np.ndarray],
                  boxes: Sequence[tuple[int, int, int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Per-image (sharpness, colour shift) inside each image's box (x0, y0, x1, y1)."""
    sharp, colour = np.empty(len(originals)), np.empty(len(originals))
    for i, (a, b, (x0, y0, x1, y1)) in enumerate(zip(originals, outputs, boxes)):
        if a.shape != b.shape:
            raise ValueError(f"image {i}: original {a.shape} and output {b.shape} differ in shape")
        sharp[i] = sharpness(a[y0:y1, x0:x1], b[y0:y1, x0:x1])
        colour[i] = colour_difference(a[y0:y1, x0:x1], b[y0:y1, x0:x1])
    return sharp, colour


def change_correlation(originals: np.ndarray, outputs: np.ndarray, labels: Sequence, pairs: int = 1000,
                       seed: int = 0) -> float:
    """Does the change depend on the face? The median Pearson correlation, over ``pairs`` random pairs of crops of
    different people, between the two crops' changes (output - original, RGB, inside the inner face box). Near 1:
    the same pattern painted on every face; near 0: each face changed in its own way. NaN when nothing changed."""
    x0, y0, x1, y1 = inner_face_box(originals.shape[1])
    change = (outputs[:, y0:y1, x0:x1].astype(np.float32) - originals[:, y0:y1, x0:x1]).reshape(len(originals), -1)
    change -= change.mean(1, keepdims=True)
    norm = np.linalg.norm(change, axis=1)
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    i, j = rng.integers(0, len(change), (2, 4 * pairs))
    keep = (labels[i] != labels[j]) & (norm[i] > 1e-6) & (norm[j] > 1e-6)
    i, j = i[keep][:pairs], j[keep][:pairs]
    if not len(i):
        return float("nan")
    return float(np.median(np.einsum("ij,ij->i", change[i], change[j]) / (norm[i] * norm[j])))


def power_spectrum(images: np.ndarray) -> np.ndarray:
    """Mean power spectrum of the luma of square images (N, S, S, 3), each Hann-windowed; zero frequency at the
    centre (S x S)."""
    grey = np.asarray(images, np.float64) @ np.array([0.299, 0.587, 0.114])
    grey -= grey.mean(axis=(1, 2), keepdims=True)
    side = grey.shape[1]
    window = np.outer(np.hanning(side), np.hanning(side))
    return np.fft.fftshift((np.abs(np.fft.fft2(grey * window)) ** 2).mean(0))


def grid_excess(real: np.ndarray, fake: np.ndarray, period: int = 4) -> float:
    """How strongly ``fake`` draws a grid of ``period`` pixels that ``real`` (faces at the same geometry) does not
    hold, in dB. The excess of fake's power over real's, ``10 log10(P_fake / P_real)``, is read at the grid's
    frequencies (1/``period`` cycles a pixel across, down and along both diagonals): the excess of the line (its
    power over the bins within 1.5 of the grid frequency: a grid under a varying strength spreads a little) against
    the median excess of a ring around it (4 to 8 bins away). The score is the largest over the four directions.
    0: no spectral line (a blur or a general sharpening changes neighbouring frequencies alike); 6: the line holds
    four times the power its surroundings would give it. Stripes and cross-hatch, which the sharpness ratio counts
    as detail, show here."""
    real, fake = np.asarray(real), np.asarray(fake)
    if real.shape[1:] != fake.shape[1:] or real.shape[1] != real.shape[2] or real.shape[1] < 32:
        raise ValueError(f"real {real.shape} and fake {fake.shape} must be square images of one size (>= 32 px)")
    excess = 10.0 * np.log10((power_spectrum(fake) + 1e-12) / (power_spectrum(real) + 1e-12))
    c, k, r = real.shape[1] // 2, int(round(real.shape[1] / period)), 8
    dy, dx = np.mgrid[-r:r + 1, -r:r + 1]
    dist = np.hypot(dy, dx)
    padded = np.pad(excess, r, mode="wrap")  # the spectrum is periodic: the ring may cross its edge
    scores = []
    for y, x in ((c, c + k), (c + k, c), (c + k, c + k), (c - k, c + k)):  # the other four mirror these
        window = padded[y:y + 2 * r + 1, x:x + 2 * r + 1]
        line = 10.0 * np.log10(np.mean(10.0 ** (window[dist <= 1.5] / 10.0)))
        scores.append(line - np.median(window[(dist >= 4) & (dist <= r)]))
    return float(max(scores))


# --------------------------------------------------------------------------------------- two-sample classifier


class TextureFeatures:
    """Statistics of a frozen face network's feature maps over a crop's face box: per channel, the mean and the
    standard deviation of five early and middle layers of MobileFaceNet (MS1M), run at the crop's own resolution
    (no resampling to 112 pixels, which would throw away the fine detail a smoothed face lacks). These layers
    describe texture and local structure; a linear probe on them sees blur, blocks, seams and colour casts."""

    LAYERS = ("conv1", "dw_conv", "stage1", "stage2", "stage3")

    def __init__(self, network: torch.nn.Module | None = None, batch_size: int = 32) -> None:
        if network is None:
            from deidkit.recognizers import get_recognizer

            network = get_recognizer("mobilefacenet_ms1m").network
        self.network = network.eval()
        self.batch_size = batch_size
        from deidkit.recognizers import MobileFaceNetMS1MRecognizer as R

        self._mean = torch.tensor(R.MEAN).view(1, 3, 1, 1)
        self._std = torch.tensor(R.STD).view(1, 3, 1, 1)

    @torch.no_grad()
    def __call__(self, crops: np.ndarray) -> np.ndarray:
        """(N, F) float32 features of canonical crops (N, S, S, 3) uint8, read inside the face box."""
        crops = np.asarray(crops)
        x0, y0, x1, y1 = face_box(crops.shape[1])
        out = []
        net = self.network
        for s in range(0, len(crops), self.batch_size):
            x = torch.from_numpy(np.ascontiguousarray(crops[s:s + self.batch_size, y0:y1, x0:x1]))
            x = (x.permute(0, 3, 1, 2).float() / 255.0 - self._mean) / self._std
            stats = []
            x = net.conv1(x)
            stats.append(x)
            x = net.dw_conv(x)
            stats.append(x)
            start = 0
            for name, end in net.STAGE_ENDS.items():
                x = net.features[start:end](x)
                start = end
                if name in self.LAYERS:
                    stats.append(x)
            feats = [torch.cat([f.mean((2, 3)), f.flatten(2).std(2)], 1) for f in stats]
            out.append(torch.cat(feats, 1).numpy().astype(np.float32))
        return np.concatenate(out)


def c2st_accuracy(train_real: np.ndarray, train_fake: np.ndarray, test_real: np.ndarray, test_fake: np.ndarray,
                  regularisation: float = 0.1, seed: int = 0) -> float:
    """Accuracy on (``test_real``, ``test_fake``) of a logistic-regression probe fitted to tell ``train_fake``
    from ``train_real`` (feature matrices); the two test classes are weighted equally (balanced accuracy)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.concatenate([train_real, train_fake])
    y = np.r_[np.zeros(len(train_real)), np.ones(len(train_fake))]
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=regularisation, max_iter=5000, random_state=seed))
    probe.fit(x, y)
    real_ok = float((probe.predict(test_real) == 0).mean())
    fake_ok = float((probe.predict(test_fake) == 1).mean())
    return (real_ok + fake_ok) / 2.0


# ------------------------------------------------------------------------------------------ crops and photos


@dataclass
class RealismSet:
    """Originals and outputs of one de-identifier at one level: canonical crops (for the probe) and, per image,
    sharpness and colour shift."""

    real_crops: np.ndarray
    fake_crops: np.ndarray
    sharpness: np.ndarray
    colour_shift: np.ndarray
    faces: np.ndarray  # faces the pipeline de-identified per photo (crop level: 1)


def crop_level(deidentifier, crops: np.ndarray) -> RealismSet:
    """The de-identifier on canonical crops (N, S, S, 3); scores in the inner face box."""
    out = np.asarray(deidentifier.deidentify(crops))
    box = inner_face_box(crops.shape[1])
    sharp, colour = region_scores(crops, out, [box] * len(crops))
    return RealismSet(crops, out, sharp, colour, np.ones(len(crops), int))


def photo_level(deidentifier, photos: Sequence[np.ndarray], matrices: Sequence[np.ndarray], hull: str = "face",
                detector: str = "yunet", size: int = CROP, show_progress: bool = True) -> RealismSet:
    """The de-identifier on whole photos through the kit's pipeline; scores in each photo's inner face box at the
    photo's own resolution, crops for the probe cut from original and output with the same warp (the original's
    alignment ``matrices``, photo -> canonical ``size`` crop), so that the probe sees only what the pipeline
    changed, paste seam included."""
    from deidkit.pipeline.swap import FaceSwapper

    sw = FaceSwapper(deidentifier, detector, hull=hull)
    n = len(photos)
    real = np.empty((n, size, size, 3), np.uint8)
    fake = np.empty_like(real)
    sharp, colour, faces = np.empty(n), np.empty(n), np.zeros(n, int)
    name = str(getattr(deidentifier, "name", deidentifier))
    for i, (photo, m) in enumerate(tqdm(list(zip(photos, matrices)), desc=f"realism, photos: {name}",
                                        disable=not show_progress)):
        res = sw.process(photo)
        sw.reset()  # photos are independent
        faces[i] = res.faces
        x0, y0, x1, y1 = photo_face_box(m, photo.shape, size)
        sharp[i] = sharpness(photo[y0:y1, x0:x1], res.frame[y0:y1, x0:x1])
        colour[i] = colour_difference(photo[y0:y1, x0:x1], res.frame[y0:y1, x0:x1])
        m = np.asarray(m, np.float64)
        real[i] = cv2.warpAffine(photo, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
        fake[i] = cv2.warpAffine(res.frame, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
    return RealismSet(real, fake, sharp, colour, faces)


def realism_record(name: str, level: str, protocol: str, test: RealismSet, c2st: float, n_train: int,
                   labels: Sequence | None = None) -> dict:
    """The ``realism`` record of one de-identifier at one level: medians over the test photos, the probe's
    accuracy ``c2st`` and, with the test images' identity ``labels``, :func:`change_correlation`."""
    corr = float("nan") if labels is None else change_correlation(test.real_crops, test.fake_crops, labels)
    return {"kind": "realism", "protocol": protocol, "level": level, "deidentifier": name,
            "sharpness": float(np.median(test.sharpness)), "colour_shift": float(np.median(test.colour_shift)),
            "c2st": float(c2st), "change_correlation": corr, "n": int(len(test.sharpness)),
            "n_train": int(n_train), "faces_missed": int((test.faces == 0).sum())}


def _protocol_inputs(protocol: str, n_identities: int | None, size: int, detector: str,
                     per_identity: int | None = None, max_images: int | None = None, seed: int = 0):
    """(crops, photos, matrices, identities) of a protocol's images (``lfw_train_pool``: ``max_images`` of them drawn with
    ``seed``, at most ``per_identity`` per identity)."""
    from deidkit.data.lfw import aligned_crops, alignment_record, load_manifest
    from deidkit.eval.benchmark import protocol_subset
    from deidkit.eval.frontier import load_photos

    files = load_manifest("lfw_files")
    table = load_manifest(protocol)
    if n_identities is not None:
        table = protocol_subset(table, n_identities)
    if per_identity is not None:
        table = table.groupby("identity", sort=True).head(per_identity)
    if max_images is not None and len(table) > max_images:
        table = table.sample(max_images, random_state=seed).sort_values("path")
    paths = table["path"].tolist()
    crops = aligned_crops(paths, size=size, detector=detector, manifest=files)
    matrices = [np.asarray(alignment_record(p, size, detector, files)["matrix"], np.float64) for p in paths]
    return crops, load_photos(paths), matrices, table["identity"].to_numpy()


#: The probe's training images: one photo each of this many training-pool identities (never a test identity).
TRAIN_IMAGES = 300


def measure_realism(deidentifiers: list, protocol: str = "lfw_57x8", levels: Sequence[str] = ("crop", "image"),
                    n_identities: int | None = None, train_images: int = TRAIN_IMAGES, hull: str = "face",
                    detector: str = "yunet", seed: int = 0, show_progress: bool = True,
                    features: TextureFeatures | None = None) -> tuple[list[dict], dict[str, dict[str, RealismSet]]]:
    """Realism records (:func:`realism_record`) of every de-identifier at every level on ``protocol``'s photos,
    the probe trained on ``train_images`` photos of training-pool identities (``lfw_train_pool``, one per
    identity, drawn with ``seed``). Also returns the sets by level and name (for figures)."""
    test = _protocol_inputs(protocol, n_identities, CROP, detector)
    train = _protocol_inputs("lfw_train_pool", None, CROP, detector, per_identity=1, max_images=train_images, seed=seed)
    inputs = f"{protocol}|{n_identities}|{train_images}|{hull}|{detector}|{seed}|{len(test[0])}|{len(train[0])}"
    records, sets = [], {}
    for level in levels:
        if level not in ("crop", "image"):
            raise ValueError(f"level must be 'crop' or 'image' (whole photos), got {level!r}")
        sets[level] = {}
        real_feats: dict[str, np.ndarray] = {}
        for deid in deidentifiers:
            name = str(getattr(deid, "name", deid))
            path = _record_path(deid, level, inputs)
            weights = provenance(deid)  # the weights measured and the commit, on fresh and kept records alike
            if path is not None and path.is_file():  # the same de-identifier, code and inputs: measured before
                records.append({**json.loads(path.read_text()), "deidentifier": name, **weights})
                continue
            features = features or TextureFeatures()
            if level == "crop":
                te, tr = crop_level(deid, test[0]), crop_level(deid, train[0])
            else:
                te = photo_level(deid, test[1], test[2], hull, detector, show_progress=show_progress)
                tr = photo_level(deid, train[1], train[2], hull, detector, show_progress=show_progress)
            if not real_feats:  # the originals' crops are the same for every de-identifier at one level
                real_feats = {"train": features(tr.real_crops), "test": features(te.real_crops)}
            acc = c2st_accuracy(real_feats["train"], features(tr.fake_crops), real_feats["test"],
                                features(te.fake_crops), seed=seed)
            records.append({**realism_record(name, level, protocol, te, acc, len(tr.sharpness), test[3]), **weights})
            sets[level][name] = te
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
                tmp.write_text(json.dumps(records[-1]))
                os.replace(tmp, path)
    return records, sets


def _record_path(deid, level: str, inputs: str) -> Path | None:
    """Where a measured record is kept (``cache_dir()/realism``): keyed by the de-identifier's fingerprint
    (weights, options and the source of its code; the naive baselines and the original by name), the source of
    this module and of the photo pipeline, the level and the inputs. None when it cannot be fingerprinted."""
    from deidkit.assets import cache_dir
    from deidkit.cache import deidentifier_fingerprint, source_digest

    name = str(getattr(deid, "name", deid))
    from deidkit.eval.frontier import family_of

    fingerprint = name if name == "original" or family_of(name) is not None else deidentifier_fingerprint(deid)
    if fingerprint is None:
        return None
    code = source_digest(frozenset({"deidkit.eval.realism", "deidkit.pipeline.swap", "deidkit.baselines"}))
    key = hashlib.sha256("|".join([fingerprint, code, level, inputs]).encode()).hexdigest()[:24]
    return cache_dir() / "realism" / f"{key}.json"
