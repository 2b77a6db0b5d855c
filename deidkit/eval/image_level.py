"""The frontier's image level: whole LFW photos through the kit's own detect -> align -> de-identify -> warp
back -> blend path (:class:`deidkit.pipeline.FaceSwapper`), SSIM on the whole photo, the recogniser re-detecting
the face in the output — what a user of ``deidkit image`` actually gets (:mod:`deidkit.eval.frontier` holds the
frontier itself and its records). Results are kept on disk, keyed by the photo pipeline's source
(:func:`pipeline_digest`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from deidkit.eval.naive import family_of


@dataclass
class ImageLevelSet:
    """One de-identifier's whole-photo outputs on a protocol, re-aligned for recognition."""

    name: str
    crops: np.ndarray | None  # canonical crops re-aligned from the output photos (N, S, S, 3); None: see keys
    ssim: np.ndarray  # per-photo SSIM of the whole output photo against the original
    redetected: np.ndarray  # bool: the detector found the face again in the output photo
    faces_processed: np.ndarray  # faces the pipeline de-identified per photo (0: the photo left unchanged)
    keys: list[str] | None = None  # content keys of the crops, when they were not kept (crops None)
    recompute: Callable[[], ImageLevelSet] | None = field(default=None, repr=False)  # gives the crops again


def load_photos(paths: Sequence[str]) -> list[np.ndarray]:
    """The original LFW photos (RGB uint8) of protocol paths."""
    from deidkit.data.images import load_image
    from deidkit.data.lfw import lfw_root

    root = lfw_root()
    return [load_image(root / p) for p in paths]


def image_level_outputs(deidentifier, photos: Sequence[np.ndarray], fallback_matrices: Sequence[np.ndarray],
                        size: int = 224, detector: str = "yunet", hull: str = "face",
                        show_progress: bool = True) -> ImageLevelSet:
    """Run ``deidentifier`` on whole photos with the kit's own pipeline (:class:`deidkit.pipeline.FaceSwapper`),
    then find the face again in each output the way an attacker's recogniser would: detect, take the detected face
    that overlaps the original face most (:func:`deidkit.data.alignment.pick_overlapping`; the original face box is
    the canonical face box mapped back through the original alignment, ``fallback_matrices``), align. A face
    nearer the centre may be another person, so it is never taken instead. Where no detected face overlaps the
    original's with an IoU of at least :data:`REDETECT_MIN_IOU`, the photo counts as missed (``redetected``
    False) and the output is aligned with the original photo's alignment: breaking a detector is not counted as
    hiding identity."""
    import cv2

    from deidkit.data.alignment import align_to_landmarks, crop_box_in_image, make_detector, pick_overlapping
    from deidkit.eval.quality import face_box
    from deidkit.eval.quality import ssim as ssim_fn
    from deidkit.pipeline.swap import FaceSwapper

    # the original row is the untouched photo (the frontier's SSIM-1 anchor); every method pays the resampling
    # of the warp to the crop and back
    untouched = getattr(deidentifier, "name", None) == "original"
    swapper = FaceSwapper(deidentifier, detector, hull=hull)
    det = make_detector(detector)
    crops = np.empty((len(photos), size, size, 3), np.uint8)
    ssims = np.empty(len(photos))
    found = np.zeros(len(photos), bool)
    faces = np.zeros(len(photos), int)
    name = str(getattr(deidentifier, "name", deidentifier))
    for i, photo in enumerate(tqdm(photos, desc=f"image level: {name}", disable=not show_progress)):
        if untouched:
            out, faces[i] = photo, 1
        else:
            res = swapper.process(photo)
            out, faces[i] = res.frame, res.faces
        swapper.reset()  # photos are independent: no tracking from one to the next
        ssims[i] = float(ssim_fn(photo[None], out[None])[0])
        matrix = np.asarray(fallback_matrices[i], np.float64)
        face = pick_overlapping(det.detect(out), crop_box_in_image(matrix, face_box(size)), REDETECT_MIN_IOU)
        if face is not None:
            crops[i], _ = align_to_landmarks(out, face.landmarks, size)
            found[i] = True
        else:
            crops[i] = cv2.warpAffine(out, matrix, (size, size),
                                      flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
    return ImageLevelSet(name, crops, ssims, found, faces)


def _cached_image_level(deidentifier, photos, matrices, size: int, detector: str, hull: str, show_progress: bool,
                        shas: list[str]) -> ImageLevelSet:
    """:func:`image_level_outputs`, kept on disk for the naive baselines and the original (deterministic by name:
    their outputs only change with the photos, which ``shas`` identify, and the pipeline's settings)."""
    import hashlib

    from deidkit.assets import cache_dir

    name = str(getattr(deidentifier, "name", ""))
    if name != "original" and family_of(name) is None:
        return _memoised_image_level(deidentifier, photos, matrices, size, detector, hull, show_progress, shas)
    key = hashlib.sha256("|".join([name, str(size), detector, hull, IMAGE_LEVEL_VERSION, pipeline_digest(),
                                   *shas]).encode())
    path = cache_dir() / "image_level" / f"{name}-{key.hexdigest()[:16]}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            return ImageLevelSet(name, z["crops"], z["ssim"], z["redetected"], z["faces"])
    import os

    res = image_level_outputs(deidentifier, photos, matrices, size, detector, hull, show_progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.tmp{os.getpid()}.npz")  # per process: two runs may race to write it
    np.savez(tmp, crops=res.crops, ssim=res.ssim, redetected=res.redetected, faces=res.faces_processed)
    os.replace(tmp, path)
    return res


def _memoised_image_level(deidentifier, photos, matrices, size: int, detector: str, hull: str,
                          show_progress: bool, shas: list[str]) -> ImageLevelSet:
    """:func:`image_level_outputs` of a learned de-identifier: its re-aligned crops are too large to keep for every
    model, so what is kept (``image_level/learned-<key>.npz``) is their content keys with the SSIMs and detection
    flags; the crops come back as ``None`` and :func:`_image_level_embeddings` reads their embeddings from the
    cache, running the pipeline again only when one is missing. Keyed by the de-identifier's fingerprint (weights,
    options, the kit's source) and the photos; not kept when it cannot be fingerprinted."""
    import hashlib
    import os

    from deidkit.assets import cache_dir
    from deidkit.cache import deidentifier_fingerprint
    from deidkit.eval.embeddings import content_keys

    fingerprint = deidentifier_fingerprint(deidentifier)
    if fingerprint is None:
        return image_level_outputs(deidentifier, photos, matrices, size, detector, hull, show_progress)
    key = hashlib.sha256("|".join([fingerprint, str(size), detector, hull, pipeline_digest(), *shas]).encode()
                         ).hexdigest()[:24]
    path = cache_dir() / "image_level" / f"learned-{key}.npz"
    name = str(getattr(deidentifier, "name", ""))
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            return ImageLevelSet(name, None, z["ssim"], z["redetected"], z["faces"], [str(k) for k in z["keys"]],
                                 lambda: image_level_outputs(deidentifier, photos, matrices, size, detector, hull,
                                                             show_progress))
    res = image_level_outputs(deidentifier, photos, matrices, size, detector, hull, show_progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.tmp{os.getpid()}.npz")
    np.savez(tmp, keys=np.array(content_keys(res.crops)), ssim=res.ssim, redetected=res.redetected,
             faces=res.faces_processed)
    os.replace(tmp, path)
    return res


def _image_level_embeddings(recognizer, res: ImageLevelSet) -> np.ndarray:
    """Embeddings of an image-level set's crops (from the cache by content key when the crops were not kept)."""
    from deidkit.eval.embeddings import embed_cached, embed_keyed

    if res.crops is None:
        def crops() -> np.ndarray:
            res.crops = res.recompute().crops
            return res.crops

        return embed_keyed(recognizer, res.keys, crops)
    return embed_cached(recognizer, res.crops)


#: Bump when the image-level path changes in a way the source digest cannot see (the on-disk results are also
#: keyed by the photo pipeline's source, :func:`pipeline_digest`).
IMAGE_LEVEL_VERSION = "3"  # 3: re-detection takes the face overlapping the original, not the central one

#: The least IoU between a face detected in an output photo and the original face box for it to count as found
#: again (on 60 lfw_57x8 photos YuNet's box of the labelled face scored 0.48-0.65 against the canonical face box
#: mapped back, the other people's faces at most 0.15).
REDETECT_MIN_IOU = 0.3


def pipeline_digest() -> str:
    """The source of the photo pipeline and what it imports: an edit there (the paste-back, the blend region)
    invalidates every kept image-level result, learned or naive."""
    from deidkit.cache import source_digest

    # the image-level code moved here out of deidkit.eval.frontier: both stay in the digest, as the one module did
    return source_digest(frozenset({"deidkit.pipeline.swap", "deidkit.eval.frontier", "deidkit.eval.image_level"}))


def run_image_level(deidentifiers: list, recognizers: list, protocol_name: str = "lfw_57x8",
                    n_identities: int | None = None, size: int = 224, detector: str = "yunet",
                    hull: str = "face", rank_gallery: str | None = "lfw_all_identities",
                    rank_gallery_identities: int | None = None, show_progress: bool = True) -> pd.DataFrame:
    """The image-level table (:data:`deidkit.eval.frontier.TABLE_COLUMNS` plus ``rank5_mean``, ``faces_missed``): every
    de-identifier on the protocol's whole photos, identified against the original canonical crops (gallery
    original, as at crop level), SSIM on the whole photo. ``deidentifiers`` should include the original."""
    from deidkit.data.lfw import AlignmentKey, aligned_crops, alignment_record, load_manifest
    from deidkit.data.protocols import first_identities
    from deidkit.eval.benchmark import identity_templates_of, rank_gallery_manifest
    from deidkit.eval.embeddings import embed_originals
    from deidkit.eval.identification import evaluate_identification, true_identity_rank

    files = load_manifest("lfw_files")
    tag = AlignmentKey(detector, size).tag
    protocol = first_identities(load_manifest(protocol_name), n_identities)
    paths = protocol["path"].tolist()
    orig_crops = aligned_crops(paths, size=size, detector=detector, manifest=files)
    matrices = [np.asarray(alignment_record(p, size, detector, files)["matrix"], np.float64) for p in paths]
    photos = load_photos(paths)
    shas = protocol["sha256"].tolist()
    labels = protocol["identity"].to_numpy()
    rep0_probe = (protocol["rep0"] == "probe").to_numpy()

    gallery = rank_gallery_manifest(protocol, rank_gallery, rank_gallery_identities)
    originals = {rec.name: embed_originals(rec, shas, lambda idx: orig_crops[idx], tag) for rec in recognizers}
    templates = identity_templates_of(recognizers, gallery, size, detector, files)

    rows = []
    for deid in deidentifiers:
        res = _cached_image_level(deid, photos, matrices, size, detector, hull, show_progress, shas)
        for rec in recognizers:
            emb = _image_level_embeddings(rec, res)
            ident = evaluate_identification(protocol, originals[rec.name], emb).summary()
            mtr = float("nan")
            if gallery is not None:
                t_emb, t_names = templates[rec.name]
                mtr = float(np.median(true_identity_rank(emb[rep0_probe], labels[rep0_probe], t_emb, t_names)))
            rows.append({"deidentifier": res.name, "recognizer": rec.name, "ssim": float(res.ssim.mean()),
                         **ident, "median_true_rank": mtr, "detection_rate": float(res.redetected.mean()),
                         "faces_missed": int((res.faces_processed == 0).sum()), "photos": len(paths)})
    return pd.DataFrame(rows)


def photo_rows(deidentifiers: list, photos: Sequence[np.ndarray], hull: str = "face") -> list[np.ndarray]:
    """Whole photos through the ``deidkit image`` path, one row (N, H, W, 3) per de-identifier, the originals
    first: for before/after grids of what users get."""
    from deidkit.pipeline.swap import FaceSwapper

    rows = [np.stack(photos)]
    for d in deidentifiers:
        sw = FaceSwapper(d, hull=hull)
        out = []
        for p in photos:
            out.append(sw.process(p).frame)
            sw.reset()  # independent photos
        rows.append(np.stack(out))
    return rows


__all__ = ["IMAGE_LEVEL_VERSION", "REDETECT_MIN_IOU", "ImageLevelSet", "image_level_outputs", "load_photos",
           "photo_rows", "pipeline_digest", "run_image_level"]
