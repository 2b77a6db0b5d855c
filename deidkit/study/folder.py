"""A study folder: the loaded :class:`Study` (its trials, stimuli and each participant's plan), and building,
opening and copying one.

A study lives in one self-contained folder that can be copied to another machine::

    <study>/study.json      design, trials, provenance, study id (a hash of trials + stimuli)
    <study>/manifest.csv    one row per stimulus file: id, file, identity, role, condition, source, sha256
    <study>/stimuli/        the images (PNG) or short videos (MP4/WebM) shown to participants
    <study>/responses/      one JSONL per participant (written by the form, see ``responses.py``)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from deidkit.data.images import ImageError, load_image
from deidkit.study.definition import ORIGINAL, Plan, StudyDesign, StudyError, Trial
from deidkit.study.trials import make_trials, required_px, validate_manifest

FORMAT = "deidkit-study/1"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
VIDEO_SUFFIXES = {".mp4", ".webm"}


@dataclass
class Study:
    """A loaded study folder. Build one with :func:`build_study` (or a helper), open one with :func:`load_study`."""

    folder: Path
    design: StudyDesign
    stimuli: pd.DataFrame
    trials: list[Trial]
    study_id: str
    info: dict[str, Any]
    responses_dir: Path

    def __post_init__(self) -> None:
        self._by_id = {t.trial_id: t for t in self.trials}

    def trial(self, trial_id: str) -> Trial:
        try:
            return self._by_id[trial_id]
        except KeyError:
            raise KeyError(f"{self.folder}: no trial {trial_id!r}") from None

    def has_trial(self, trial_id: str) -> bool:
        return trial_id in self._by_id

    @property
    def conditions(self) -> list[str]:
        """Stimulus conditions in study order: ``original`` first, then the de-identifiers."""
        return list(self.info.get("conditions", [ORIGINAL]))

    def stimulus_path(self, stimulus_id: str) -> Path:
        return self.folder / self.stimuli.loc[stimulus_id, "file"]

    def stimulus_kind(self, stimulus_id: str) -> str:
        return str(self.stimuli.loc[stimulus_id, "kind"])

    def stimulus_bytes(self, stimulus_id: str) -> bytes:
        return self.stimulus_path(stimulus_id).read_bytes()

    def participant_seed(self, participant: str) -> int:
        """The per-participant seed: derived from the study seed and the id (recorded in every response)."""
        h = hashlib.sha256(f"{self.design.seed}:{self.study_id}:{participant}".encode()).hexdigest()
        return int(h[:12], 16)

    def plan(self, participant: str) -> Plan:
        """This participant's trials and their order (deterministic given the participant seed)."""
        seed = self.participant_seed(participant)
        rng = np.random.default_rng(seed)
        main = [t for t in self.trials if t.task != "similarity" and not t.attention]
        sim = [t for t in self.trials if t.task == "similarity"]
        if self.design.counterbalance:
            conds = self.conditions
            sources = sorted({t.source for t in main})
            offset = int(rng.integers(len(conds)))
            assign = {}
            for i, s in enumerate(sources):  # rotate through the conditions this source has
                have = [c for c in conds if any(t.source == s and t.condition == c for t in main)]
                assign[s] = have[(i + offset) % len(have)]
            main = [t for t in main if t.condition == assign[t.source]]
            # Similarity: rate the de-identified versions this participant saw, once all else is answered.
            sim = [t for t in sim if t.condition == assign.get(t.source)]
        main += [t for t in self.trials if t.attention]
        order = [main[i].trial_id for i in rng.permutation(len(main))]
        order += [sim[i].trial_id for i in rng.permutation(len(sim))]
        cands = {}
        for tid in order:
            t = self._by_id[tid]
            if t.candidates:
                cands[tid] = tuple(t.candidates[i] for i in rng.permutation(len(t.candidates)))
        return Plan(seed, tuple(order), cands)

    def with_responses_dir(self, path: str | os.PathLike) -> Study:
        """The same study writing/reading responses elsewhere (e.g. simulated participants, kept apart)."""
        return replace(self, responses_dir=Path(path))

    def summary(self) -> pd.DataFrame:
        """Number of trials per task and condition."""
        df = pd.DataFrame([{"task": t.task, "condition": t.condition} for t in self.trials])
        return df.groupby(["task", "condition"], sort=False).size().rename("trials").reset_index()



def _stimulus_info(path: Path) -> tuple[str, int, int]:
    """(kind, width, height) of a stimulus file; raises :class:`StudyError` for one that cannot be shown."""
    suf = path.suffix.lower()
    if suf in IMAGE_SUFFIXES:
        try:
            h, w = load_image(path).shape[:2]
        except ImageError as exc:
            raise StudyError(str(exc)) from None
        return "image", int(w), int(h)
    if suf in VIDEO_SUFFIXES:
        import cv2

        cap = cv2.VideoCapture(str(path))
        ok, frame = cap.read() if cap.isOpened() else (False, None)
        cap.release()
        if not ok:
            raise StudyError(f"{path}: video cannot be opened or has no frame")
        return "video", int(frame.shape[1]), int(frame.shape[0])
    raise StudyError(f"{path}: unsupported stimulus type {suf!r}; use {sorted(IMAGE_SUFFIXES | VIDEO_SUFFIXES)}")


def _study_id(trials: list[Trial], manifest: pd.DataFrame, design: StudyDesign) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([t.to_dict() for t in trials], sort_keys=True).encode())
    h.update(json.dumps(manifest[["stimulus_id", "sha256", "identity", "role", "condition", "source"]]
                        .to_dict("records"), sort_keys=True).encode())
    h.update(json.dumps(asdict(design), sort_keys=True, default=list).encode())
    return h.hexdigest()[:16]


def build_study(folder: str | os.PathLike, manifest: pd.DataFrame, design: StudyDesign | None = None,
                info: dict[str, Any] | None = None, overwrite: bool = False) -> Study:
    """Build a self-contained study folder from a stimulus manifest.

    ``manifest`` columns: ``file`` (path to an image or short video), ``identity``, ``role`` (``gallery``: one
    per identity, shown as a candidate; ``probe``: shown as the question), ``condition`` (``original`` or the
    de-identifier's name), ``source`` (groups a probe's original with its de-identified versions), optionally
    ``origin`` (provenance). Files are checked, copied under ``stimuli/`` with neutral names (the file name
    must not give the condition away) and hashed. The folder appears atomically: a crash leaves no half study.

    Every stimulus must be at least as wide as the largest size the design shows it at (see :class:`StudyDesign`:
    ``stimulus_px``, ``pair_px``, ``gallery_px``), so the page never enlarges a small image; make the crops at that
    size from the source photos.
    """
    design = design or StudyDesign()
    folder = Path(folder)
    if folder.exists():
        if not overwrite:
            raise StudyError(f"{folder}: already exists; load it with load_study() or pass overwrite=True")
        if (folder / "responses").is_dir() and any((folder / "responses").glob("*.jsonl")):
            raise StudyError(f"{folder}: holds participant responses; refusing to overwrite (move them first)")
    m = validate_manifest(manifest)
    conditions = [ORIGINAL, *[c for c in dict.fromkeys(m["condition"]) if c != ORIGINAL]]
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.building-", dir=folder.parent))
    try:
        (tmp / "stimuli").mkdir()
        (tmp / "responses").mkdir()
        perm = np.random.default_rng(design.seed).permutation(len(m))  # ids carry no hint of the condition
        ids, files, kinds, shas = [None] * len(m), [None] * len(m), [None] * len(m), [None] * len(m)
        dims: dict[str, tuple[int, int, Path]] = {}
        for n, i in enumerate(perm):
            src = Path(m.loc[i, "file"])
            if not src.is_file():
                raise StudyError(f"stimulus manifest row {i}: {src}: no such file")
            kind, w, h = _stimulus_info(src)
            sid = f"s{n + 1:04d}"
            rel = f"stimuli/{sid}{src.suffix.lower()}"
            shutil.copyfile(src, tmp / rel)
            ids[i], files[i], kinds[i] = sid, rel, kind
            dims[sid] = (w, h, src)
            shas[i] = hashlib.sha256((tmp / rel).read_bytes()).hexdigest()
        m["stimulus_id"], m["file"], m["kind"], m["sha256"] = ids, files, kinds, shas
        m = m[["stimulus_id", "file", "kind", "identity", "role", "condition", "source", "origin", "sha256"]]
        m = m.sort_values("stimulus_id").reset_index(drop=True)
        trials = make_trials(m, design, conditions)
        small = [(dims[sid], px) for sid, px in sorted(required_px(trials, design).items()) if dims[sid][0] < px]
        if small:
            (w, h, src), px = small[0]
            raise StudyError(
                f"{len(small)} stimulus file(s) narrower than the size they are shown at, e.g. {src}: {w}x{h} px "
                f"shown {px} px wide; make them at least that wide from the source photos (a browser would only "
                "enlarge them) or lower StudyDesign.stimulus_px / pair_px / gallery_px")
        study_id = _study_id(trials, m, design)
        info = {"conditions": conditions, **(info or {})}
        doc = {"format": FORMAT, "study_id": study_id, "design": asdict(design), "info": info,
               "trials": [t.to_dict() for t in trials]}
        m.to_csv(tmp / "manifest.csv", index=False)
        (tmp / "study.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False))
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return load_study(folder)


def load_study(folder: str | os.PathLike, verify: bool = True) -> Study:
    """Open a study folder; with ``verify`` every stimulus file is checked against its sha256."""
    folder = Path(folder)
    sj, mf = folder / "study.json", folder / "manifest.csv"
    for f in (sj, mf):
        if not f.is_file():
            raise StudyError(f"{f}: missing; {folder} is not a study folder (build one with build_study)")
    try:
        doc = json.loads(sj.read_text())
    except json.JSONDecodeError as exc:
        raise StudyError(f"{sj}: not valid JSON ({exc})") from None
    if doc.get("format") != FORMAT:
        raise StudyError(f"{sj}: format {doc.get('format')!r}, expected {FORMAT!r}")
    try:
        design = StudyDesign.from_dict(doc["design"])
        trials = [Trial.from_dict(t) for t in doc["trials"]]
    except (KeyError, TypeError) as exc:
        raise StudyError(f"{sj}: malformed study definition ({exc})") from None
    m = pd.read_csv(mf, dtype=str, keep_default_na=False)
    need = ["stimulus_id", "file", "kind", "identity", "role", "condition", "source", "sha256"]
    if [c for c in need if c not in m.columns]:
        raise StudyError(f"{mf}: missing columns {[c for c in need if c not in m.columns]}")
    m = m.set_index("stimulus_id", drop=False)
    known = set(m.index)
    for t in trials:
        bad = [s for s in (*t.stimuli, *t.candidates) if s not in known]
        if bad:
            raise StudyError(f"{sj}: trial {t.trial_id} refers to stimuli {bad} missing from {mf}")
    if verify:
        for sid, rel, sha in zip(m["stimulus_id"], m["file"], m["sha256"]):
            f = folder / rel
            if not f.is_file():
                raise StudyError(f"{f}: stimulus {sid} missing from the study folder")
            if hashlib.sha256(f.read_bytes()).hexdigest() != sha:
                raise StudyError(f"{f}: stimulus {sid} changed since the study was built (sha256 mismatch)")
    return Study(folder=folder, design=design, stimuli=m, trials=trials, study_id=str(doc["study_id"]),
                 info=dict(doc.get("info", {})), responses_dir=folder / "responses")


def export_study(study: Study, dest: str | os.PathLike, include_responses: bool = False) -> Study:
    """Copy the study (definition + stimuli, optionally responses) to ``dest`` and check the copy loads."""
    dest = Path(dest)
    if dest.exists():
        raise StudyError(f"{dest}: already exists")
    dest.mkdir(parents=True)
    shutil.copy2(study.folder / "study.json", dest / "study.json")
    shutil.copy2(study.folder / "manifest.csv", dest / "manifest.csv")
    shutil.copytree(study.folder / "stimuli", dest / "stimuli")
    (dest / "responses").mkdir()
    if include_responses:
        for f in sorted(study.responses_dir.glob("*.jsonl")):
            shutil.copy2(f, dest / "responses" / f.name)
    return load_study(dest)
