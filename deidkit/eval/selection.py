"""Model selection without the test identities: which checkpoint of a training run to ship.

The selection set is made of the 160 identities of ``lfw_217x8`` that are not in ``lfw_57x8`` (the test
protocol), hence not in ``lfw_train_pool`` (the training data) either: the manifest ``lfw_select_160x8``, with the
same 4 gallery + 4 probe splits. Only the trained-against recogniser and image quality are read; the judges (dlib,
MobileFaceNet-CASIA) never are.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from deidkit.data.lfw import aligned_crops, load_manifest
from deidkit.eval.quality import colour_shift, detection_rate, ssim
from deidkit.eval.realism import inner_face_box, region_scores

if TYPE_CHECKING:
    from deidkit.deidentifiers.fadenet import FaDeNetDeidentifier

#: The identification protocol of model selection (never the test protocol ``lfw_57x8``).
SELECTION_PROTOCOL = "lfw_select_160x8"


def selection_set(per_identity: int = 1) -> pd.DataFrame:
    """Images (``path``, ``identity``) of :data:`SELECTION_PROTOCOL`, ``per_identity`` of each identity (at most
    8)."""
    keep = load_manifest(SELECTION_PROTOCOL)
    return keep.groupby("identity", sort=True).head(per_identity)[["path", "identity"]].reset_index(drop=True)


def selection_paths(per_identity: int = 1) -> list[str]:
    """The paths of :func:`selection_set`."""
    return selection_set(per_identity)["path"].tolist()


def live_snapshot_candidates(run_dirs: Sequence[str | Path], locks: Iterable[float] | None = None,
                             strengths: Iterable[float] | None = None) -> dict:
    """Every lambda-stage generator (``<run>/stages/stage<k>.pt``) of the live runs ``run_dirs`` at every landmark
    lock x strength, as de-identifiers keyed by ``[<run>/]stages/stage<k>.pt[+lock<x>][_s<y>]`` (the run's folder
    name only with several runs; the options only when given). Each stage is loaded once and shared by its options.
    Each de-identifier's name (``<run>@stage<k>[+lock<x>][_s<y>]``) is what
    :func:`deidkit.deidentifiers.load_deidentifier` loads the same candidate by."""
    from deidkit.deidentifiers.live import LiveDeidentifier, load_live_deidentifier

    run_dirs = [Path(d) for d in run_dirs]
    cands: dict[str, LiveDeidentifier] = {}
    for rd in run_dirs:
        prefix = f"{rd.name}/" if len(run_dirs) > 1 else ""
        for k in range(4):
            if not (rd / "stages" / f"stage{k}.pt").is_file():
                continue
            stage = load_live_deidentifier(rd, stage=k)
            for lock in locks or [0.0]:
                lock_part = f"+lock{lock:g}" if locks else ""
                for strength in strengths or [1.0]:
                    deid = LiveDeidentifier(stage.generator, stage.features, stage.crop_fraction,
                                            name=f"{rd.name}@stage{k}{lock_part}", strength=strength,
                                            landmark_lock=lock)
                    cands[f"{prefix}stages/stage{k}.pt{lock_part}" + (f"_s{strength:g}" if strengths else "")] = deid
    return cands


def fadenet_snapshot_candidates(run_dirs: Sequence[str | Path], epochs: Iterable[int] | None = None,
                                feathers: Iterable[float] | None = None, strengths: Iterable[float] | None = None,
                                colour_match: bool = False, detail_cap: float = 0.0) -> dict[str, FaDeNetDeidentifier]:
    """Every epoch snapshot (``<run>/epochs/epochNNN.pt``) of the FaDeNet runs ``run_dirs`` (only ``epochs`` if
    given) at every feather x strength, as de-identifiers keyed by ``[<run>/]epochs/epochNNN.pt[@f<x>][@s<y>]``
    (the run's folder name only with several runs). Each de-identifier's name is what
    :func:`deidkit.deidentifiers.load_deidentifier` loads the same candidate by (``[<run>@]epochNNN[_f<x>][_s<y>]``,
    with the run's folder under the kit's runs folder). ``colour_match``, ``detail_cap``: every candidate with
    these inference options (``_cm``, ``_dc<k>``)."""
    from deidkit.deidentifiers.fadenet import FaDeNetDeidentifier, build_unet, read_run_config

    run_dirs = [Path(d) for d in run_dirs]
    wanted = set(epochs) if epochs else None
    cands: dict[str, FaDeNetDeidentifier] = {}
    for rd in run_dirs:
        cfg = read_run_config(rd)  # the run's own configuration (its network's geometry)
        prefix = f"{rd.name}/" if len(run_dirs) > 1 else ""
        for snap in sorted((rd / "epochs").glob("epoch*.pt")):
            if wanted is not None and int(snap.stem.removeprefix("epoch")) not in wanted:
                continue
            unet = build_unet(cfg)
            unet.load_state_dict(torch.load(snap, map_location="cpu", weights_only=True)["unet"])
            base_name = f"{prefix.replace('/', '@')}{snap.stem}"
            for feather in feathers or [0.0]:
                for strength in strengths or [1.0]:
                    # loaded with the default options, then set, so that the name spells the options out; the
                    # key is derived from the name (one spelling of the options)
                    deid = FaDeNetDeidentifier.from_network(cfg, unet, name=base_name)
                    deid.feather, deid.strength, deid.colour_match = feather, strength, colour_match
                    deid.detail_cap = detail_cap
                    options = deid.name.removeprefix(base_name).replace("_", "@")
                    cands[f"{prefix}epochs/{snap.name}{options}"] = deid
    return cands


def leave_one_out_rank1(original: np.ndarray, deidentified: np.ndarray, labels: np.ndarray) -> float:
    """Rank-1 of de-identified probes against the originals of every *other* image (L2-normalised embeddings):
    the fraction of probes whose nearest other original is of the same identity."""
    sims = np.asarray(deidentified) @ np.asarray(original).T
    np.fill_diagonal(sims, -np.inf)  # a probe's own original is not in its gallery
    labels = np.asarray(labels)
    return float((labels[sims.argmax(1)] == labels).mean())


def landmark_bound(reference: object, predictor: object, ratio: float = 1.0, crops: np.ndarray | None = None
                   ) -> float:
    """``ratio`` times the mean dlib-68 landmark displacement (fraction of the eye-corner distance) that the
    ``reference`` de-identifier (e.g. blur sigma 8, the issue's bar) causes on the selection set."""
    from deidkit.eval.temporal import landmark_displacement

    crops = aligned_crops(selection_paths()) if crops is None else crops
    return ratio * float(landmark_displacement(crops, reference.deidentify(crops), predictor)["iod"].mean())


def select_checkpoint(candidates: dict[str, object], recognizer, min_ssim: float,
                      crops: np.ndarray | None = None, landmarks: object | None = None,
                      max_landmarks: float | None = None, detector: object | None = None,
                      min_detection: float | None = None, labels: np.ndarray | None = None,
                      max_colour_shift: float | None = None,
                      max_warp_stretch: float | None = None,
                      min_sharpness: float | None = None) -> tuple[str | None, pd.DataFrame]:
    """The candidate that moves ``recognizer``'s embedding furthest (lowest mean cosine to the original) among
    those whose mean SSIM on the selection set is at least ``min_ssim``; None when none keeps that quality.

    ``landmarks`` (a 68-point predictor such as :class:`deidkit.pipeline.faces.Dlib68`) adds the mean landmark
    displacement as a fraction of the eye-corner distance (``landmark_iod``, see
    :func:`deidkit.eval.temporal.landmark_displacement`); ``max_landmarks`` then also bounds it. ``detector``
    (e.g. YuNet) adds the fraction of outputs in which it still finds a face (``detection_rate``);
    ``min_detection`` then also bounds it from below. ``labels`` (the crops' identities, several images each) add
    ``rank1``, the trained-against recogniser's :func:`leave_one_out_rank1` (reported, not a criterion).
    ``max_colour_shift`` also bounds ``colour_shift`` (:func:`deidkit.eval.quality.colour_shift`, always
    reported). Candidates that warp the face (a ``warp_stretch`` method, FaDeNet's ``shape_warp``) report
    ``warp_stretch``, the 95th percentile over the crops of the warp's largest principal stretch;
    ``max_warp_stretch`` bounds it (those without a warp stretch nothing). ``sharpness``, the median fine detail
    kept in the inner face box (:mod:`deidkit.eval.realism`), is always reported; ``min_sharpness`` bounds it.
    Returns (name, the table of every candidate)."""
    crops = aligned_crops(selection_paths()) if crops is None else crops
    if max_landmarks is not None and landmarks is None:
        raise ValueError("max_landmarks needs a landmark predictor (landmarks=...)")
    if min_detection is not None and detector is None:
        raise ValueError("min_detection needs a face detector (detector=...)")
    ref = recognizer.embed(crops)
    rows = []
    for name, deid in candidates.items():
        out = deid.deidentify(crops)
        emb = recognizer.embed(out)
        box = inner_face_box(crops.shape[1])
        row = {"candidate": name, "ssim": float(ssim(crops, out).mean()),
               "colour_shift": float(colour_shift(crops, out).mean()),
               "sharpness": float(np.median(region_scores(crops, out, [box] * len(crops))[0])),
               "cos_to_original": float((emb * ref).sum(1).mean()),
               "recognizer": recognizer.name, "faces": len(crops)}
        if labels is not None:
            row["rank1"] = leave_one_out_rank1(ref, emb, labels)
        if landmarks is not None:
            from deidkit.eval.temporal import landmark_displacement

            row["landmark_iod"] = float(landmark_displacement(crops, out, landmarks)["iod"].mean())
        if detector is not None:
            row["detection_rate"] = detection_rate(out, detector)
        if callable(getattr(deid, "warp_stretch", None)):
            row["warp_stretch"] = float(np.percentile(deid.warp_stretch(crops), 95))
        rows.append(row)
    table = pd.DataFrame(rows)
    ok = table[within_bounds(table, min_ssim, max_landmarks, min_detection, max_colour_shift, max_warp_stretch,
                             min_sharpness)]
    return (None if ok.empty else str(ok.loc[ok["cos_to_original"].idxmin(), "candidate"])), table


def within_bounds(table: pd.DataFrame, min_ssim: float, max_landmarks: float | None = None,
                  min_detection: float | None = None, max_colour_shift: float | None = None,
                  max_warp_stretch: float | None = None, min_sharpness: float | None = None) -> pd.Series:
    """Which rows of a :func:`select_checkpoint` table keep the quality bounds (bool per row).
    ``max_colour_shift`` bounds :func:`deidkit.eval.quality.colour_shift` (a natural look: no colour bands or
    casts), ``max_warp_stretch`` the warp's stretch (a natural look: no features smeared into streaks)."""
    ok = table["ssim"] >= min_ssim
    if min_sharpness is not None:
        ok &= table["sharpness"] >= min_sharpness
    if max_colour_shift is not None:
        ok &= table["colour_shift"] <= max_colour_shift
    if max_warp_stretch is not None and "warp_stretch" in table:
        ok &= table["warp_stretch"].fillna(0.0) <= max_warp_stretch
    if max_landmarks is not None:
        ok &= table["landmark_iod"] <= max_landmarks
    if min_detection is not None:
        ok &= table["detection_rate"] >= min_detection
    return ok


def frontier_margins(candidates: dict[str, object], recognizer, levels: tuple[str, ...] = ("crop", "image"),
                     n_identities: int | None = None) -> pd.DataFrame:
    """Each candidate's margin beyond the naive frontier (:func:`deidkit.eval.frontier.measure_frontier`) on the
    selection protocol, with the trained-against ``recognizer``: the issue's own measure, on identities that are
    never tested. One row per candidate: ``<level>_ssim``, ``<level>_rank1``, ``<level>_frontier_rank1``,
    ``<level>_margin_sd`` for each level, and ``min_margin_sd`` (the worse level)."""
    from deidkit.eval.frontier import measure_frontier

    by_name: dict[str, str] = {}
    for key, deid in candidates.items():
        name = str(deid.name)
        if name in by_name:
            raise ValueError(f"candidates {by_name[name]!r} and {key!r} share the de-identifier name {name!r}")
        by_name[name] = key
    _, records = measure_frontier(list(candidates.values()), [recognizer], protocol_name=SELECTION_PROTOCOL,
                                  levels=levels, n_identities=n_identities, rank_gallery=None)
    rows: dict[str, dict] = {}
    for r in records:
        key = by_name.get(r["deidentifier"])
        if key is None:  # a naive family member
            continue
        row = rows.setdefault(key, {"candidate": key})
        for field in ("ssim", "rank1", "frontier_rank1", "margin_sd"):
            row[f"{r['level']}_{field}"] = r[field]
    table = pd.DataFrame([rows[k] for k in candidates])
    table["min_margin_sd"] = table[[f"{level}_margin_sd" for level in levels]].min(axis=1)
    return table


def recorded_selections(pattern: str = "selection_*", out: str | os.PathLike | None = None) -> pd.DataFrame:
    """Every by-frontier selection candidate recorded by ``deidkit select --by-frontier`` in
    ``reports/metrics/<pattern>.json``, one row each (``run``, ``candidate``, ``crop_ssim``, ``crop_rank1``,
    ``image_ssim``, ``image_rank1``, the naive frontier's Rank-1 at those SSIMs, ``min_margin_sd``, ``selected``,
    ``source``), for comparing training recipes on the selection protocol. Candidates measured in several
    records keep their latest one; ``--with-shipped`` rows (candidate ``shipped``: whichever model shipped that day)
    and those measured on part of the protocol (``--identities``) are left out."""
    from deidkit.reports import reports_dir

    rows = []
    for path in sorted((reports_dir(out) / "metrics").glob(f"{pattern}.json")):
        try:
            records = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not a metrics file ({exc})") from None
        rows += [r for r in records if r.get("kind") == "selection" and r.get("crop_rank1") is not None
                 and r.get("candidate") != "shipped" and r.get("identities") is None]
    cols = ["run", "candidate", "crop_ssim", "crop_rank1", "crop_frontier_rank1", "image_ssim", "image_rank1",
            "image_frontier_rank1", "min_margin_sd", "selected", "source"]
    table = pd.DataFrame(rows, columns=cols)
    return table.drop_duplicates(["run", "candidate"], keep="last").reset_index(drop=True)


def shipped_candidate(model: str = "fadenet") -> tuple[str, str]:
    """The (run, candidate) under which a shipped FaDeNet model was chosen, as :func:`recorded_selections` lists
    it: its manifest's run and checkpoint with its inference options spelled as the candidates' keys are."""
    from deidkit.deidentifiers.fadenet import option_suffix
    from deidkit.pretrained import read_manifest

    entry = read_manifest()["models"][model]
    # the snapshot candidates' keys spell the options as the de-identifier's name does, with "@" for "_"
    return entry["run"], entry["checkpoint"] + option_suffix(**entry.get("inference", {})).replace("_", "@")
