"""The naive privacy-utility frontier: what blurring or pixelating reaches at the same image quality.

Both papers' central claim is that a learned de-identifier hides identity better than naive obfuscation *at the
same image quality*. This module measures exactly that, for any de-identifier and recogniser:

1. Each naive family is evaluated at many strengths, from nearly invisible to heavy, and the original image is
   added as the family's weakest member (SSIM 1, the original Rank-1). Gaussian blur and pixelation come in two
   variants (:data:`deidkit.eval.naive.NAIVE_FAMILIES`): *boxed*, a hard-edged face box, and *blended*, pasted
   the way the learned models paste their output (feathered face box and colour match,
   :class:`deidkit.baselines.Blended`), so that naive methods get the paste the learned ones are given.
2. Along SSIM, each family's Rank-1 (and its repetition standard deviation, and the median rank of the true
   identity) is interpolated linearly between neighbouring strengths. The frontier at an SSIM is the lowest of
   the families' Rank-1 there, boxed and blended alike: the most privacy a naive method buys for that much image
   quality. The records name the family that sets it (``frontier_family``, ``frontier_variant``) and keep each
   variant's own best (``frontier_rank1_boxed``, ``frontier_rank1_blended``).
3. A de-identifier's margin is ``(frontier_rank1 - rank1) / sqrt(sd^2 + frontier_sd^2)``: how many repetition
   standard deviations it lies *below* (better than) the frontier. Positive is better than naive; a margin of 3
   or more is "clearly beyond". When an SSIM lies below every strength of a family (an image uglier than the
   strongest blur), that family does not cover it and is left out; with no covering family the frontier is
   undefined (NaN), never silently favourable.

Two levels (see :func:`run_image_level`): ``crop`` (canonical crops, as in notebook 04's tables) and ``image``
(the whole LFW photo through the kit's own detect -> align -> de-identify -> warp back -> blend path, SSIM on the
whole photo, the recogniser re-detecting the face in the output) — the latter is what a user of
``deidkit image`` actually gets.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

# the naive families are defined in deidkit.eval.naive (the benchmark's configuration names them too) and are
# offered here as well, where notebooks and scripts import them
from deidkit.eval.naive import (  # noqa: F401
    NAIVE_FAMILIES,
    NAIVE_PREFIXES,
    family_of,
    naive_deidentifiers,
    variant_of,
)
from deidkit.eval.provenance import provenance_by_name

#: Columns a table of evaluated de-identifiers must have (one row per de-identifier and recogniser).
TABLE_COLUMNS = ("deidentifier", "recognizer", "ssim", "rank1_mean", "rank1_std", "median_true_rank",
                 "detection_rate")


@dataclass(frozen=True)
class FrontierPoint:
    """The naive frontier at one SSIM for one recogniser."""

    rank1: float
    rank1_std: float
    median_true_rank: float
    family: str | None
    #: the lowest Rank-1 of the boxed families and of the blended ones there (NaN: no family of it covers the SSIM)
    boxed_rank1: float = float("nan")
    blended_rank1: float = float("nan")


def family_curve(table: pd.DataFrame, recognizer: str, members: Sequence[str],
                 original: str = "original") -> pd.DataFrame:
    """The rows of one family (and the original as its SSIM-1 anchor) for one recogniser, sorted by SSIM."""
    t = table[(table["recognizer"] == recognizer) & table["deidentifier"].isin([*members, original])]
    return t.sort_values("ssim").reset_index(drop=True)


def _interp(x: float, xs: np.ndarray, ys: np.ndarray) -> float:
    if np.all(np.isnan(ys)):
        return float("nan")
    ok = ~np.isnan(ys)
    return float(np.interp(x, xs[ok], ys[ok]))


def frontier_at(table: pd.DataFrame, recognizer: str, ssim: float,
                families: dict[str, Sequence[str]] | None = None) -> FrontierPoint:
    """The naive frontier of ``recognizer`` at ``ssim``: per family, Rank-1, its SD and the median true rank
    interpolated linearly along SSIM between the family's neighbouring strengths; the family with the lowest
    Rank-1 there wins, boxed or blended (the pointwise minimum over families). Families whose SSIM range does not
    reach down to ``ssim`` are left out; NaN when none covers it."""
    best: FrontierPoint | None = None
    by_variant = {"boxed": float("nan"), "blended": float("nan")}
    for fam, members in (families or NAIVE_FAMILIES).items():
        curve = family_curve(table, recognizer, members)
        if len(curve) < 2:
            continue
        xs = curve["ssim"].to_numpy(float)
        if ssim < xs.min() - 1e-9:
            continue  # uglier than the family's strongest member: not covered (no extrapolation)
        r1 = _interp(ssim, xs, curve["rank1_mean"].to_numpy(float))
        sd = _interp(ssim, xs, curve["rank1_std"].to_numpy(float))
        mtr = (_interp(ssim, xs, curve["median_true_rank"].to_numpy(float))
               if "median_true_rank" in curve else float("nan"))
        variant = variant_of(fam)
        if not r1 >= by_variant[variant]:  # also replaces NaN
            by_variant[variant] = r1
        if best is None or r1 < best.rank1:
            best = FrontierPoint(r1, sd, mtr, fam)
    if best is None:
        return FrontierPoint(float("nan"), float("nan"), float("nan"), None)
    return dataclasses.replace(best, boxed_rank1=by_variant["boxed"], blended_rank1=by_variant["blended"])


def margin_sd(rank1: float, rank1_std: float, frontier: FrontierPoint, sd_floor: float) -> float:
    """How many combined repetition SDs ``rank1`` lies below the frontier (positive: better than naive).
    ``sd_floor`` (e.g. half a probe's share of Rank-1) keeps a zero spread from making any gap infinite."""
    if math.isnan(frontier.rank1):
        return float("nan")
    sd = max(math.hypot(rank1_std, frontier.rank1_std), sd_floor)
    return (frontier.rank1 - rank1) / sd


#: Identity-clustered bootstrap samples behind every interval of the frontier records.
N_BOOT = 2000


def _bootstrap_columns(table: pd.DataFrame, n_boot: int, seed: int) -> dict[int, np.ndarray] | None:
    """Per table row, its Rank-1 in each identity-clustered bootstrap sample (the same samples for every row, so
    that differences are paired); None when the table has no per-identity Rank-1."""
    from deidkit.eval.identification import bootstrap_rank1, identity_bootstrap

    if "rank1_by_identity" not in table or not all(isinstance(d, dict) and d for d in table["rank1_by_identity"]):
        return None
    identities = sorted(table["rank1_by_identity"].iloc[0])
    samples = identity_bootstrap(identities, n_boot, seed)
    return {i: bootstrap_rank1(d, identities, samples) for i, d in table["rank1_by_identity"].items()}


def _frontier_boot(table: pd.DataFrame, boot: dict[int, np.ndarray], recognizer: str, ssim: float,
                   families: dict[str, Sequence[str]]) -> np.ndarray:
    """The frontier's Rank-1 at ``ssim`` in each bootstrap sample (the SSIM positions held at their full-sample
    values: the interval is Rank-1's sampling error, of the model and of the naive members alike)."""
    best = None
    for members in families.values():
        t = table[(table["recognizer"] == recognizer) & table["deidentifier"].isin([*members, "original"])]
        t = t.sort_values("ssim")
        if len(t) < 2 or ssim < float(t["ssim"].min()) - 1e-9:
            continue
        xs = t["ssim"].to_numpy(float)
        ys = np.stack([boot[i] for i in t.index])  # (members, n_boot)
        # np.interp is linear in the values: its weights on the members, once, serve every sample (the frontier
        # has some sixty members, each interpolated at every record's SSIM)
        weights = np.array([np.interp(ssim, xs, unit) for unit in np.eye(len(xs))])
        r1 = weights @ ys
        best = r1 if best is None else np.minimum(best, r1)  # the better family in each sample
    return best if best is not None else np.full(len(next(iter(boot.values()))), np.nan)


def frontier_records(table: pd.DataFrame, protocol: str, level: str, probes_per_rep: int,
                     families: dict[str, Sequence[str]] | None = None, n_boot: int = N_BOOT,
                     seed: int = 0, provenance: Mapping[str, Mapping] | None = None) -> list[dict]:
    """One ``frontier`` record per (de-identifier, recogniser) of ``table`` (columns :data:`TABLE_COLUMNS`).

    The frontier is the pointwise minimum over every family, boxed and blended: the margin, the gap and its
    interval are taken against whichever naive variant does better at the record's SSIM (``frontier_family`` and
    ``frontier_variant`` name it; ``frontier_rank1_boxed`` and ``frontier_rank1_blended`` give each variant's best,
    NaN where none of its families reaches that SSIM). Naive family members are measured against the frontier too
    (their margin is about 0, or negative where another family is better); ``original`` is skipped. With
    per-identity Rank-1 in the table (column ``rank1_by_identity``), each record gains identity-clustered bootstrap
    95% intervals: ``rank1_ci`` and ``gap_ci`` (the gap: frontier Rank-1 minus Rank-1, paired over the same
    resampled identities, the frontier's minimum taken in each sample), and ``beyond_frontier`` (the gap's interval
    excludes 0 on the good side). The margin in SDs is kept for
    comparison with earlier reports; it is not a calibrated statistic (the SD over 5 splits of the same images).

    Every record carries ``weights_sha256`` and ``commit`` (:mod:`deidkit.eval.provenance`): from ``provenance``
    (de-identifier name -> :func:`deidkit.eval.provenance.provenance` of the object measured), else from the name
    alone (:func:`deidkit.eval.provenance.provenance_by_name`: known for the shipped models, None otherwise)."""
    missing = set(TABLE_COLUMNS) - set(table.columns)
    if missing:
        raise ValueError(f"frontier table lacks columns {sorted(missing)}")
    families = families or NAIVE_FAMILIES
    floor = 0.5 / max(probes_per_rep, 1)
    table = table.reset_index(drop=True)
    boot = _bootstrap_columns(table, n_boot, seed)
    records = []
    for i, row in table.iterrows():
        if row["deidentifier"] == "original":
            continue
        fp = frontier_at(table, row["recognizer"], float(row["ssim"]), families)
        intervals = {}
        if boot is not None:
            gap = _frontier_boot(table, boot, row["recognizer"], float(row["ssim"]), families) - boot[i]
            lo, hi = np.nanpercentile(gap, [2.5, 97.5]) if np.isfinite(gap).any() else (np.nan, np.nan)
            intervals = {"rank1_ci": [float(v) for v in np.percentile(boot[i], [2.5, 97.5])],
                         "gap_ci": [float(lo), float(hi)], "beyond_frontier": bool(lo > 0),
                         "bootstrap": f"{n_boot} identity-clustered samples"}
        records.append({
            "kind": "frontier", "protocol": protocol, "level": level, "deidentifier": row["deidentifier"],
            "recognizer": row["recognizer"], "naive_family": family_of(row["deidentifier"], families),
            "ssim": float(row["ssim"]), "rank1": float(row["rank1_mean"]), "rank1_std": float(row["rank1_std"]),
            "frontier_rank1": fp.rank1, "frontier_rank1_std": fp.rank1_std, "frontier_family": fp.family,
            "frontier_variant": variant_of(fp.family), "frontier_rank1_boxed": fp.boxed_rank1,
            "frontier_rank1_blended": fp.blended_rank1,
            "margin_sd": margin_sd(float(row["rank1_mean"]), float(row["rank1_std"]), fp, floor),
            "detection_rate": float(row["detection_rate"]),
            "median_true_rank": float(row["median_true_rank"]),
            "frontier_median_true_rank": fp.median_true_rank,
            # the natural look's colour part (crop level only; see deidkit.eval.quality.colour_shift)
            "colour_shift": float(row.get("colour_shift", float("nan"))),
            **intervals,
            **(provenance[row["deidentifier"]] if provenance and row["deidentifier"] in provenance
               else provenance_by_name(row["deidentifier"])),
        })
    return records


def crop_level_table(records: list[dict]) -> pd.DataFrame:
    """Join the ``identification`` and ``true_identity_rank`` records of :func:`deidkit.eval.benchmark.run_benchmark`
    into a frontier table (one row per de-identifier and recogniser)."""
    df = pd.DataFrame(records)
    ident = df[df["kind"] == "identification"]
    cols = ["deidentifier", "recognizer", "ssim", "rank1_mean", "rank1_std", "detection_rate", "colour_shift",
            "rank1_by_identity"]
    out = ident[[c for c in cols if c in ident]].copy()
    if "detection_rate" not in out:
        out["detection_rate"] = float("nan")
    ranks = df[df["kind"] == "true_identity_rank"]
    if len(ranks):
        out = out.merge(ranks[["deidentifier", "recognizer", "median"]].rename(columns={"median": "median_true_rank"}),
                        on=["deidentifier", "recognizer"], how="left")
    else:
        out["median_true_rank"] = float("nan")
    return out.reset_index(drop=True)


# ------------------------------------------------------------------------------------------- image level


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

    return source_digest(frozenset({"deidkit.pipeline.swap", "deidkit.eval.frontier"}))


def run_image_level(deidentifiers: list, recognizers: list, protocol_name: str = "lfw_57x8",
                    n_identities: int | None = None, size: int = 224, detector: str = "yunet",
                    hull: str = "face", rank_gallery: str | None = "lfw_all_identities",
                    rank_gallery_identities: int | None = None, show_progress: bool = True) -> pd.DataFrame:
    """The image-level table (:data:`TABLE_COLUMNS` plus ``rank5_mean``, ``faces_missed``): every
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


def measure_frontier(methods: list, recognizers: list, protocol_name: str = "lfw_57x8",
                     levels: Sequence[str] = ("crop", "image"), families: dict[str, Sequence[str]] | None = None,
                     n_identities: int | None = None, rank_gallery: str | None = "lfw_all_identities",
                     rank_gallery_identities: int | None = None, hull: str = "face", size: int = 224,
                     detector: str = "yunet") -> tuple[dict[str, pd.DataFrame], list[dict]]:
    """Every de-identifier of ``methods`` (and the naive families, and the original) at each level, and their
    ``frontier`` records: what notebook 04's section 3 measures, for any de-identifiers, without the rest of
    the notebook. Returns (level -> table, records)."""
    from deidkit.baselines import Identity
    from deidkit.eval.benchmark import run_benchmark
    from deidkit.eval.provenance import provenance

    families = families or NAIVE_FAMILIES
    deids = [Identity(), *naive_deidentifiers(families), *methods]
    names = [d.name for d in deids]
    if len(set(names)) != len(names):
        raise ValueError(f"de-identifier names must be unique, got {names}")
    tables: dict[str, pd.DataFrame] = {}
    records: list[dict] = []
    probes = None
    for level in levels:
        if level == "crop":
            bench = run_benchmark(deids, recognizers, protocol_name=protocol_name, n_identities=n_identities,
                                  size=size, detector=detector, rank_gallery=rank_gallery,
                                  rank_gallery_identities=rank_gallery_identities)
            tables["crop"] = crop_level_table(bench.records)
            probes = int(bench.table("identification")["probes_per_rep"].iloc[0])
        elif level == "image":
            tables["image"] = run_image_level(deids, recognizers, protocol_name=protocol_name,
                                              n_identities=n_identities, size=size, detector=detector, hull=hull,
                                              rank_gallery=rank_gallery,
                                              rank_gallery_identities=rank_gallery_identities)
        else:
            raise ValueError(f"level must be 'crop' or 'image', got {level!r}")
    if probes is None:
        from deidkit.data.lfw import load_manifest
        from deidkit.data.protocols import first_identities

        probes = int((first_identities(load_manifest(protocol_name), n_identities)["rep0"] == "probe").sum())
    weights = {d.name: provenance(d) for d in deids}  # the objects measured: their weights, not their names
    for level, table in tables.items():
        records += frontier_records(table, protocol_name, level, probes, families, provenance=weights)
    return tables, records


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


def closest_naive(table: pd.DataFrame, recognizer: str, ssim: float, family: str = "blur",
                  families: dict[str, Sequence[str]] | None = None) -> str:
    """The member of a naive family whose SSIM (in ``table``, for ``recognizer``) is closest to ``ssim``."""
    t = table[(table["recognizer"] == recognizer)
              & table["deidentifier"].isin((families or NAIVE_FAMILIES)[family])]
    return str(t.loc[(t["ssim"] - ssim).abs().idxmin(), "deidentifier"])
