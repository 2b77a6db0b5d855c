"""From a stimulus manifest to a study's trials: checking the manifest, making the trials (with their galleries
and attention checks) and the size each stimulus must have for the trials that show it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from deidkit.study.definition import (
    ATTENTION,
    MODIFIED,
    ORIGINAL,
    PROMPTS,
    RATINGS,
    REAL,
    StudyDesign,
    StudyError,
    Trial,
)

MANIFEST_COLUMNS = ["file", "identity", "role", "condition", "source"]


def validate_manifest(manifest: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in MANIFEST_COLUMNS if c not in manifest.columns]
    if missing:
        raise StudyError(f"stimulus manifest: missing columns {missing}; required {MANIFEST_COLUMNS}")
    m = manifest.copy().reset_index(drop=True)
    for c in MANIFEST_COLUMNS:
        if m[c].isna().any():
            raise StudyError(f"stimulus manifest: empty values in column {c!r} (rows {m.index[m[c].isna()].tolist()[:5]})")
        m[c] = m[c].astype(str)
    if "origin" not in m.columns:
        m["origin"] = ""
    m["origin"] = m["origin"].fillna("").astype(str)
    bad_roles = sorted(set(m["role"]) - {"gallery", "probe"})
    if bad_roles:
        raise StudyError(f"stimulus manifest: unknown roles {bad_roles}; use 'gallery' or 'probe'")
    gal = m[m["role"] == "gallery"]
    if (gal["condition"] != ORIGINAL).any():
        raise StudyError("stimulus manifest: gallery images must have condition 'original'")
    dup = gal["identity"][gal["identity"].duplicated()].tolist()
    if dup:
        raise StudyError(f"stimulus manifest: more than one gallery image for {dup}; give one per identity")
    probes = m[m["role"] == "probe"]
    if probes.empty:
        raise StudyError("stimulus manifest: no probe stimuli")
    no_gal = sorted(set(probes["identity"]) - set(gal["identity"]))
    if no_gal:
        raise StudyError(f"stimulus manifest: probe identities without a gallery image: {no_gal}")
    for src, grp in probes.groupby("source"):
        if grp["identity"].nunique() != 1:
            raise StudyError(f"stimulus manifest: source {src!r} mixes identities {sorted(grp['identity'].unique())}")
        if ORIGINAL not in set(grp["condition"]):
            raise StudyError(f"stimulus manifest: source {src!r} has no original version")
        if grp["condition"].duplicated().any():
            raise StudyError(f"stimulus manifest: source {src!r} has a condition twice")
    if len(gal) < 2:
        raise StudyError("stimulus manifest: at least two identities are needed for identification")
    return m


def make_trials(m: pd.DataFrame, design: StudyDesign, conditions: list[str]) -> list[Trial]:
    rng = np.random.default_rng(design.seed)
    gal = m[m["role"] == "gallery"].set_index("identity")["stimulus_id"]
    identities = sorted(gal.index)
    probes = m[m["role"] == "probe"]
    sources = sorted(probes["source"].unique())
    k = min(design.gallery_size, len(identities))
    trials: list[Trial] = []

    def add(**kw: Any) -> None:
        trials.append(Trial(trial_id=f"t{len(trials) + 1:04d}", **kw))

    def gallery_for(identity: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        others = [i for i in identities if i != identity]
        chosen = sorted([identity, *rng.choice(others, size=k - 1, replace=False).tolist()])
        return tuple(gal[i] for i in chosen), tuple(chosen)

    for src in sources:
        grp = probes[probes["source"] == src].set_index("condition")
        identity = str(grp["identity"].iloc[0])
        for cond in conditions:
            if cond not in grp.index:
                continue
            sid = str(grp.loc[cond, "stimulus_id"])
            if "identification" in design.tasks:
                cands, choices = gallery_for(identity)
                add(task="identification", condition=cond, source=src, identity=identity, stimuli=(sid,),
                    choices=choices, correct=identity, candidates=cands, prompt=PROMPTS["identification"])
            if "real_vs_modified" in design.tasks:
                add(task="real_vs_modified", condition=cond, source=src, identity=identity, stimuli=(sid,),
                    choices=(REAL, MODIFIED), correct=REAL if cond == ORIGINAL else MODIFIED,
                    prompt=PROMPTS["real_vs_modified"])
            if "similarity" in design.tasks and cond != ORIGINAL:
                add(task="similarity", condition=cond, source=src, identity=identity,
                    stimuli=(str(grp.loc[ORIGINAL, "stimulus_id"]), sid), choices=RATINGS, correct=None,
                    prompt=PROMPTS["similarity"])
    # Attention checks: in identification, the probe is the very gallery photo of one candidate (anyone
    # attending gets it right); without identification, an instructed answer on a real image.
    for a in range(design.attention_checks):
        identity = identities[int(rng.integers(len(identities)))]
        if "identification" in design.tasks:
            cands, choices = gallery_for(identity)
            add(task="identification", condition=ATTENTION, source=f"attention{a}", identity=identity,
                stimuli=(str(gal[identity]),), choices=choices, correct=identity, candidates=cands,
                attention=True, prompt=PROMPTS["identification"])
        else:
            originals = probes[probes["condition"] == ORIGINAL]
            row = originals.iloc[int(rng.integers(len(originals)))]
            add(task="real_vs_modified", condition=ATTENTION, source=f"attention{a}", identity=str(row["identity"]),
                stimuli=(str(row["stimulus_id"]),), choices=(REAL, MODIFIED), correct=MODIFIED, attention=True,
                prompt=PROMPTS["attention_real_vs_modified"])
    return trials


def required_px(trials: Sequence[Trial], design: StudyDesign) -> dict[str, int]:
    """Per stimulus id, the largest size (CSS px) any trial shows it at: the width its file must have at least."""
    need: dict[str, int] = {}
    for t in trials:
        px, gallery_px = design.display_px(t)
        for sid in t.stimuli:
            need[sid] = max(need.get(sid, 0), px)
        for sid in t.candidates:
            need[sid] = max(need.get(sid, 0), gallery_px)
    return need
