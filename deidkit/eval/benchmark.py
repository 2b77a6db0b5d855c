"""Evaluate a list of de-identifiers with a list of recognisers on an LFW protocol: the numbers behind
notebook 04 and ``reports/metrics.json``.

De-identification is applied to probes only (each protocol image is de-identified once and serves as a probe
in the repetitions where it is one); galleries stay original.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from deidkit.cache import cached_quality, content_digest
from deidkit.data.alignment import make_detector
from deidkit.data.lfw import AlignmentKey, aligned_crops, load_manifest
from deidkit.data.protocols import first_identities, gallery_without_probes
from deidkit.eval.embeddings import DeidentifiedBatch, embed_deidentified, embed_originals
from deidkit.eval.identification import (
    IdentificationResult,
    evaluate_identification,
    identity_templates,
    pair_verification,
    rank_summary,
    true_identity_rank,
)
from deidkit.eval.naive import NAIVE_FAMILIES
from deidkit.eval.quality import colour_shift, detection_rate, psnr, ssim


@dataclass
class DeidentifiedSet:
    """A protocol's crops after one de-identifier, with its image-quality figures."""

    name: str
    crops: np.ndarray
    quality: dict[str, float]


@dataclass
class BenchmarkResult:
    records: list[dict] = field(default_factory=list)
    cmc: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    identification: dict[tuple[str, str], IdentificationResult] = field(default_factory=dict)
    roc: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    true_ranks: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)

    def table(self, kind: str = "identification") -> pd.DataFrame:
        return pd.DataFrame([r for r in self.records if r["kind"] == kind])


#: The first ``n_identities`` identities (sorted) of a protocol, for tiny profiles (the name notebooks and scripts
#: import; it lives in the data layer, where identification and the frontier read it without this module).
protocol_subset = first_identities


def deidentify_in_batches(deidentifier, crops: np.ndarray, batch_size: int = 32) -> np.ndarray:
    out = [deidentifier.deidentify(crops[i:i + batch_size]) for i in range(0, len(crops), batch_size)]
    result = np.concatenate(out)
    if result.shape != crops.shape or result.dtype != np.uint8:
        raise ValueError(f"{deidentifier.name}: deidentify returned {result.dtype} {result.shape}, "
                         f"expected uint8 {crops.shape}")
    return result


def rank_gallery_manifest(protocol: pd.DataFrame, rank_gallery: str | None,
                          rank_gallery_identities: int | None = None) -> pd.DataFrame | None:
    """The large gallery's images (None without one), without the protocol's ranked probes (those of ``rep0``:
    a probe must not find itself; :func:`deidkit.data.protocols.gallery_without_probes` drops them and checks that
    none remain); with ``rank_gallery_identities`` (tiny profiles) only the probe identities plus the first N
    others."""
    if not rank_gallery:
        return None
    gallery = gallery_without_probes(load_manifest(rank_gallery), protocol)
    if rank_gallery_identities is not None:
        names = sorted(set(gallery["identity"]) - set(protocol["identity"]))[:rank_gallery_identities]
        gallery = gallery[gallery["identity"].isin(set(names) | set(protocol["identity"]))]
    return gallery.reset_index(drop=True)


def identity_templates_of(recognizers: list, gallery: pd.DataFrame | None, size: int, detector: str,
                          files: pd.DataFrame) -> dict:
    """recogniser name -> (one template per gallery identity, identity names); empty without a gallery."""
    if gallery is None:
        return {}
    tag = AlignmentKey(detector, size).tag
    out = {}
    for rec in recognizers:
        g_emb = embed_originals(rec, gallery["sha256"].tolist(),
                                lambda idx: aligned_crops(gallery["path"].iloc[idx], size=size, detector=detector,
                                                          manifest=files), tag)
        out[rec.name] = identity_templates(g_emb, gallery["identity"].to_numpy())
    return out


def run_benchmark(deidentifiers: list, recognizers: list, protocol_name: str = "lfw_57x8",
                  n_identities: int | None = None, size: int = 224, detector: str = "yunet",
                  rank_gallery: str | None = "lfw_all_identities", rank_gallery_identities: int | None = None,
                  detection: bool = True) -> BenchmarkResult:
    """Identification (Rank-1/5, CMC), original-vs-de-identified verification (ROC, TAR@FAR=1e-3), rank of the
    true identity among all gallery identities, SSIM/PSNR and detection rate, for every (de-identifier,
    recogniser) pair. ``deidentifiers`` should include ``baselines.Identity()`` for the original row."""
    files = load_manifest("lfw_files")
    tag = AlignmentKey(detector, size).tag
    protocol = protocol_subset(load_manifest(protocol_name), n_identities)
    crops = aligned_crops(protocol["path"], size=size, detector=detector, manifest=files)
    shas = protocol["sha256"].tolist()
    det = make_detector(detector) if detection else None
    res = BenchmarkResult()

    gallery = rank_gallery_manifest(protocol, rank_gallery, rank_gallery_identities)
    originals = {rec.name: embed_originals(rec, shas, lambda idx: crops[idx], tag) for rec in recognizers}
    templates = identity_templates_of(recognizers, gallery, size, detector, files)

    rep0_probe = (protocol["rep0"] == "probe").to_numpy()
    rep0_gallery = (protocol["rep0"] == "gallery").to_numpy()
    labels = protocol["identity"].to_numpy()
    # the originals' part of each quality key, hashed once (the crops are the same for every de-identifier)
    inputs_key = content_digest(crops, rep0_probe, extra=f"v2|{detector if det else ''}")
    for deid in tqdm(deidentifiers, desc="de-identifiers"):
        # the network runs only when something below needs the pixels (a quality figure or an embedding not cached)
        batch = DeidentifiedBatch(deid, crops, lambda deid=deid: deidentify_in_batches(deid, crops))

        def measure(batch: DeidentifiedBatch = batch) -> dict[str, float]:
            out = batch.outputs
            q = {"ssim": float(ssim(crops, out).mean()), "psnr": float(psnr(crops, out).mean()),
                 "ssim_face": float(ssim(crops, out, "face").mean()),
                 "psnr_face": float(psnr(crops, out, "face").mean()),
                 "colour_shift": float(colour_shift(crops, out).mean())}
            if det is not None:
                q["detection_rate"] = detection_rate(out[rep0_probe], det)
            return q

        # the same pixels measure the same: the baselines' numbers are computed once across runs
        quality = cached_quality(content_digest(np.array(batch.keys), extra=f"keys|{inputs_key}"), measure)
        for rec in recognizers:
            emb = embed_deidentified(rec, batch, desc=f"{rec.name} on {deid.name}")
            ident = evaluate_identification(protocol, originals[rec.name], emb)
            key = (deid.name, rec.name)
            res.identification[key] = ident
            res.cmc[key] = ident.cmc()
            res.records.append({"kind": "identification", "protocol": protocol_name,
                                "n_identities": int(protocol["identity"].nunique()), "deidentifier": deid.name,
                                "recognizer": rec.name, **ident.summary(), **quality,
                                "repetitions": len(ident.ranks), "probes_per_rep": int(rep0_probe.sum())})
            ver = pair_verification(originals[rec.name][rep0_gallery], labels[rep0_gallery], emb[rep0_probe],
                                    labels[rep0_probe])
            res.roc[key] = (ver["fpr"], ver["tpr"])
            res.records.append({"kind": "deid_verification", "protocol": protocol_name, "deidentifier": deid.name,
                                "recognizer": rec.name, "tar_at_far": ver["tar_at_far"], "far": ver["far"],
                                "genuine_pairs": ver["genuine_pairs"], "impostor_pairs": ver["impostor_pairs"]})
            if gallery is not None:
                t_emb, t_names = templates[rec.name]
                ranks = true_identity_rank(emb[rep0_probe], labels[rep0_probe], t_emb, t_names)
                res.true_ranks[key] = ranks
                res.records.append({"kind": "true_identity_rank", "protocol": protocol_name,
                                    "deidentifier": deid.name, "recognizer": rec.name, **rank_summary(ranks),
                                    "gallery_size": len(t_names), "probes": len(ranks)})
    return res


def privacy_utility_frontier(table: pd.DataFrame, recognizer: str, candidate: str) -> pd.DataFrame:
    """Naive-baseline rows (of ``recognizer``) whose SSIM is at least ``candidate``'s, with their Rank-1: the
    check "``candidate`` beats every naive baseline at equal image quality" holds when all these have a higher
    Rank-1 (``beaten``). Other learned de-identifiers in the table are not baselines and are ignored."""
    from deidkit.baselines import baseline_deidentifiers

    naive = {d.name for d in baseline_deidentifiers()}
    t = table[table["recognizer"] == recognizer]
    cand = t[t["deidentifier"] == candidate]
    if cand.empty:
        raise KeyError(f"no row for {candidate!r} with recogniser {recognizer!r}")
    c = cand.iloc[0]
    others = t[t["deidentifier"].isin(naive) & (t["ssim"] >= c["ssim"])]
    return others.assign(candidate_rank1=c["rank1_mean"], beaten=others["rank1_mean"] > c["rank1_mean"])


@dataclass
class RecognitionEvalConfig:
    """Notebook 04's experiment: which protocol, recognisers, de-identifiers and gallery.

    Profiles: ``tiny`` (tests, seconds), ``quick`` (the full CPU evaluation on lfw_57x8 and all 5,749
    identities), ``paper`` (adds lfw_217x8).
    """

    protocols: tuple[str, ...] = ("lfw_57x8",)
    n_identities: int | None = None
    recognizers: tuple[str, ...] = ("dlib", "mobilefacenet_casia", "mobilefacenet_ms1m")
    baselines: tuple[str, ...] | None = None
    rank_gallery: str | None = "lfw_all_identities"
    rank_gallery_identities: int | None = None
    size: int = 224
    detector: str = "yunet"
    detection: bool = True
    #: Trained de-identifiers added by name prefix (loaded for the same profile, e.g. ``fadenet_quick``).
    trained: tuple[str, ...] = ("fadenet", "live")
    #: Also evaluate with the FaDeNet critic's own features (the paper's Table I setting).
    critic: bool = True
    #: The pretrained models shipped in the package (``deidkit/weights``), evaluated without training.
    shipped: tuple[str, ...] = ("live", "fadenet")
    #: Naive families of the frontier (None: :data:`deidkit.eval.naive.NAIVE_FAMILIES`).
    naive_families: dict[str, tuple[str, ...]] | None = None
    #: Also measure at image level (whole photos through the ``deidkit image`` path) with this blend region.
    image_level: bool = True
    hull: str = "face"
    #: Realism (:mod:`deidkit.eval.realism`): the probe's training-pool photos, and the test identities (None: all)
    realism_train_images: int = 300
    realism_identities: int | None = None

    PROFILES = {
        "tiny": dict(n_identities=6, recognizers=("mobilefacenet_ms1m",),
                     baselines=("blur_sigma8", "pixelate_16px", "blackbox"), rank_gallery_identities=40,
                     realism_train_images=12, realism_identities=2,
                     naive_families={"blur": ("blur_sigma3", "blur_sigma16"),
                                     "pixelate": ("pixelate_4px", "pixelate_24px")}),
        "quick": {},
        "paper": dict(protocols=("lfw_57x8", "lfw_217x8")),
    }

    @classmethod
    def profile(cls, name: str, **overrides) -> RecognitionEvalConfig:
        if name not in cls.PROFILES:
            raise ValueError(f"unknown profile {name!r}; choose one of {sorted(cls.PROFILES)}")
        return cls(**{**cls.PROFILES[name], **{k: v for k, v in overrides.items() if v is not None}})

    def families(self) -> dict[str, tuple[str, ...]]:
        return dict(self.naive_families or NAIVE_FAMILIES)

    def trained_names(self, profile: str) -> list[str]:
        """Row names of the trained de-identifiers, e.g. ``["fadenet_quick", "live_quick"]``."""
        return [f"{prefix}_{profile}" for prefix in self.trained]


#: Published LFW verification accuracies the recognisers must reproduce (within 0.5 points).
#: dlib: 99.13% is dlib's figure without jittering, which is how the kit embeds (99.38% needs
#: ``num_jitters=100``, 100x slower; see :class:`deidkit.recognizers.DlibRecognizer`).
REFERENCE_NOTES = {"dlib": "dlib, no jittering (99.38% with num_jitters=100)",
                   "mobilefacenet_ms1m": "MobileFaceNet paper, MS1M", "mobilefacenet_casia":
                   "MobileFaceNet paper, CASIA-WebFace, image + flip features"}
REFERENCE_LFW_ACCURACY = {"dlib": 0.9913, "mobilefacenet_ms1m": 0.989, "mobilefacenet_casia": 0.986}


def pairs_subset(pairs, per_class_per_fold: int | None):
    """The first ``per_class_per_fold`` matched and mismatched pairs of every fold (tiny profiles)."""
    from deidkit.eval.verification import LFWPairs

    if per_class_per_fold is None:
        return pairs
    keep = []
    for f in np.unique(pairs.fold):
        for same in (True, False):
            idx = np.flatnonzero((pairs.fold == f) & (pairs.same == same))[:per_class_per_fold]
            keep.extend(idx.tolist())
    keep = sorted(keep)
    return LFWPairs(tuple(pairs.left[i] for i in keep), tuple(pairs.right[i] for i in keep), pairs.same[keep],
                    pairs.fold[keep], pairs.source)


def lfw_verification_records(recognizers: list, profile: str = "quick", size: int = 224,
                             detector: str = "yunet") -> list[dict]:
    """LFW View-2 10-fold verification of each recogniser on canonical crops (embeddings cached), compared
    with its published accuracy. The ``tiny`` profile uses 20 + 20 pairs per fold."""
    from deidkit.eval.verification import cosine_scores, kfold_accuracy, parse_pairs, tar_at_far

    pairs = pairs_subset(parse_pairs(), 20 if profile == "tiny" else None)
    files = load_manifest("lfw_files")
    sha = dict(zip(files["path"], files["sha256"]))
    paths = [f"images/{p}" for p in pairs.unique_paths()]
    index = {p: i for i, p in enumerate(paths)}
    tag = AlignmentKey(detector, size).tag
    records = []
    for rec in recognizers:
        emb = embed_originals(rec, [sha[p] for p in paths],
                              lambda idx: aligned_crops([paths[i] for i in idx], size=size, detector=detector,
                                                        manifest=files), tag)
        a = emb[[index[f"images/{p}"] for p in pairs.left]]
        b = emb[[index[f"images/{p}"] for p in pairs.right]]
        scores = cosine_scores(a, b)
        kf = kfold_accuracy(scores, pairs.same, pairs.fold)
        ref = REFERENCE_LFW_ACCURACY.get(rec.name)
        records.append({"kind": "verification", "recognizer": rec.name, "lfw_accuracy": kf.mean,
                        "lfw_accuracy_std": kf.std, "reference": ref,
                        "reference_note": REFERENCE_NOTES.get(rec.name),
                        "within_half_point": None if ref is None else bool(abs(kf.mean - ref) <= 0.005),
                        "tar_at_far_1e-3": tar_at_far(scores, pairs.same, 1e-3), "pairs": len(pairs.same),
                        "profile": profile})
    return records
