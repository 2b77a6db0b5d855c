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

Two levels (see :func:`deidkit.eval.image_level.run_image_level`): ``crop`` (canonical crops, as in notebook 04's tables) and ``image``
(the whole LFW photo through the kit's own detect -> align -> de-identify -> warp back -> blend path, SSIM on the
whole photo, the recogniser re-detecting the face in the output) — the latter is what a user of
``deidkit image`` actually gets.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

# the image level (whole photos through the kit's pipeline) lives in deidkit.eval.image_level; its names stay
# importable from here, where notebooks, scripts and the command line import them
from deidkit.eval.image_level import (  # noqa: F401
    IMAGE_LEVEL_VERSION,
    REDETECT_MIN_IOU,
    ImageLevelSet,
    image_level_outputs,
    load_photos,
    photo_rows,
    pipeline_digest,
    run_image_level,
)

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


def closest_naive(table: pd.DataFrame, recognizer: str, ssim: float, family: str = "blur",
                  families: dict[str, Sequence[str]] | None = None) -> str:
    """The member of a naive family whose SSIM (in ``table``, for ``recognizer``) is closest to ``ssim``."""
    t = table[(table["recognizer"] == recognizer)
              & table["deidentifier"].isin((families or NAIVE_FAMILIES)[family])]
    return str(t.loc[(t["ssim"] - ssim).abs().idxmin(), "deidentifier"])
