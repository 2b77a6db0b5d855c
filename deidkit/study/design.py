"""What a human study is: its stimuli, its design, its trials, and each participant's trial order.

A study lives in one self-contained folder that can be copied to another machine::

    <study>/study.json      design, trials, provenance, study id (a hash of trials + stimuli)
    <study>/manifest.csv    one row per stimulus file: id, file, identity, role, condition, source, sha256
    <study>/stimuli/        the images (PNG) or short videos (MP4/WebM) shown to participants
    <study>/responses/      one JSONL per participant (written by the form, see ``responses.py``)

Three tasks, after the user studies of the two papers:

- ``identification``: a probe (original or de-identified) and a gallery of N candidates; "who is it?"
  (live paper Table 2(b)/(c), FaDeNet's claim that humans still recognise the person);
- ``real_vs_modified``: one stimulus; "real or modified?" (live paper Table 2(a));
- ``similarity``: original and de-identified side by side; rate their similarity 1-5 (optional).

Each face is shown at a fixed size set by the design (:class:`StudyDesign` ``stimulus_px``, ``pair_px``,
``gallery_px``; CSS pixels, the width of the square crop), and a study refuses a stimulus that has fewer pixels
than the size it is shown at, so the browser never enlarges one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from deidkit.data.images import ImageError, load_image, save_image

FORMAT = "deidkit-study/1"
TASKS = ("identification", "real_vs_modified", "similarity")
ORIGINAL = "original"
ATTENTION = "attention"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
VIDEO_SUFFIXES = {".mp4", ".webm"}
MANIFEST_COLUMNS = ["file", "identity", "role", "condition", "source"]
REAL, MODIFIED = "real", "modified"
RATINGS = ("1", "2", "3", "4", "5")

#: Default display sizes (CSS px, the width of each face image). Judging whether an image was modified needs the
#: detail a modification leaves (blur, blocks, blending seams), so that face is large; a similarity rating shows
#: two faces of that size side by side; gallery candidates only need to show who the person is, and a smaller
#: side keeps five of them and the probe on one screen (a grid of 3 + 2 beside the probe, under 1200 px wide).
STIMULUS_PX = 256
PAIR_PX = 256
GALLERY_PX = 192

DEFAULT_CONSENT = (
    "<p>This study is about how people perceive faces in images that may have been altered to protect "
    "privacy. You will see face images and answer simple questions about them by clicking buttons. "
    "It takes about 10 minutes.</p>"
    "<p>Your answers are stored under the participant id you enter below, together with the time you "
    "took to answer; no name or other personal information is recorded. Taking part is voluntary and you "
    "may stop at any time; if you come back with the same id you continue where you left off.</p>"
)
DEFAULT_INSTRUCTIONS = (
    "<p>Each screen shows one question. Answer by clicking a button; there is no time limit, but please "
    "answer with your first impression. Some images are unmodified photographs, others were altered.</p>"
    "<ul><li><b>Who is this?</b> Click the gallery face that shows the same person as the face on the "
    "left.</li><li><b>Real or modified?</b> Decide whether the image is an unaltered photograph.</li>"
    "<li><b>How similar?</b> Rate how similar the two faces look, from 1 (different people) to 5 "
    "(identical).</li></ul>"
)
PROMPTS = {
    "identification": "Who is this? Click the face in the gallery that shows the same person.",
    "real_vs_modified": "Is this image a real, unmodified photograph, or has it been modified?",
    "similarity": "How similar are these two faces? 1 = different people ... 5 = identical.",
    "attention_real_vs_modified": "Attention check: please answer <b>Modified</b> for this image.",
}


def default_study_dir(profile: str = "quick") -> Path:
    """``$DEIDKIT_STUDY_DIR`` or ``<project>/studies/lfw_<profile>``. Study folders hold participants' answers
    and LFW-derived images (not to be redistributed): keep them out of git (``/studies/`` is ignored)."""
    from deidkit.assets import PROJECT_ROOT

    env = os.environ.get("DEIDKIT_STUDY_DIR")
    return Path(env).expanduser() if env else PROJECT_ROOT / "studies" / f"lfw_{profile}"


class StudyError(ValueError):
    """A study definition, manifest or folder is invalid; the message names the file and the problem."""


@dataclass(frozen=True)
class StudyDesign:
    """How trials are made from the stimuli. Stored in ``study.json``; every field is plain data.

    ``counterbalance``: each participant sees each source image in one condition only (original *or* one
    de-identified version, assigned by a rotation with a per-participant offset), so that having seen the
    original cannot help to recognise its de-identified version (and vice versa). Similarity trials, which
    show original and de-identified together, come after all other trials for the same reason, and only for
    the de-identified versions the participant saw. Without it every participant gets every trial.

    Display sizes, in CSS pixels (the width of each face; crops are square):

    - ``stimulus_px``: the face a real-or-modified question is about, and the probe of an identification trial;
    - ``pair_px``: each of the two faces of a similarity trial;
    - ``gallery_px``: each candidate of an identification gallery.

    The form lays faces out at exactly these sizes (the page scrolls rather than shrinking them, so every
    participant sees the same size), and :func:`build_study` refuses a stimulus narrower than the largest size it
    is shown at: the browser never enlarges a stimulus.
    """

    name: str = "deid_human_study"
    tasks: tuple[str, ...] = ("identification", "real_vs_modified")
    gallery_size: int = 5
    attention_checks: int = 2
    counterbalance: bool = True
    seed: int = 0
    stimulus_px: int = STIMULUS_PX
    pair_px: int = PAIR_PX
    gallery_px: int = GALLERY_PX
    consent_text: str = DEFAULT_CONSENT
    instructions: str = DEFAULT_INSTRUCTIONS

    def __post_init__(self) -> None:
        tasks = tuple(self.tasks)
        object.__setattr__(self, "tasks", tasks)
        unknown = [t for t in tasks if t not in TASKS]
        if unknown or not tasks:
            raise StudyError(f"StudyDesign.tasks: unknown or empty {unknown or tasks}; choose from {TASKS}")
        if self.gallery_size < 2:
            raise StudyError(f"StudyDesign.gallery_size must be >= 2, got {self.gallery_size}")
        if self.attention_checks < 0:
            raise StudyError(f"StudyDesign.attention_checks must be >= 0, got {self.attention_checks}")
        for name in ("stimulus_px", "pair_px", "gallery_px"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 16:
                raise StudyError(f"StudyDesign.{name} must be a whole number of pixels >= 16, got {value!r}")

    def display_px(self, trial: Trial) -> tuple[int, int]:
        """(size of each of the trial's stimuli, size of each gallery candidate) in CSS pixels."""
        return (self.pair_px if trial.task == "similarity" else self.stimulus_px), self.gallery_px

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StudyDesign:
        d = dict(d)
        if "image_width" in d:
            # Studies built before the sizes were named stored one width w and showed real-or-modified faces at
            # 1.5 w, similarity faces and the identification probe at 1.3 w, candidates at w: an existing study
            # keeps those sizes, except its probe, now shown at 1.5 w like the real-or-modified face.
            w = int(d.pop("image_width"))
            d.setdefault("stimulus_px", round(1.5 * w))
            d.setdefault("pair_px", round(1.3 * w))
            d.setdefault("gallery_px", w)
        known = {f.name for f in fields(cls)}
        extra = sorted(set(d) - known)
        if extra:
            raise StudyError(f"unknown design fields {extra}; known: {sorted(known)}")
        return cls(**d)


@dataclass(frozen=True)
class StudyConfig:
    """The default LFW study of notebook 06 as data. Build with :meth:`profile` (``tiny``, ``quick``, ``paper``)
    plus overrides; ``deidentifiers`` are names for ``deidkit.baselines.get_deidentifier``.

    ``paper`` is a full-size study (more identities and photos, as many simulated participants as a typical
    user study); the papers' own stimuli are not public, so their exact studies cannot be rebuilt.

    ``stimulus_px``, ``pair_px``, ``gallery_px``: display sizes of the faces (see :class:`StudyDesign`); the LFW
    crops are made from the photos at the largest of them (:func:`build_lfw_study`)."""

    profile_name: str = "quick"
    protocol: str = "lfw_57x8"
    n_identities: int = 5
    probes_per_identity: int = 2
    deidentifiers: tuple[str, ...] = ("blur_sigma4", "blur_sigma16", "pixelate_16px", "noise_sigma64")
    tasks: tuple[str, ...] = TASKS
    gallery_size: int = 5
    attention_checks: int = 2
    n_simulated: int = 12
    seed: int = 0
    stimulus_px: int = STIMULUS_PX
    pair_px: int = PAIR_PX
    gallery_px: int = GALLERY_PX

    @classmethod
    def profile(cls, name: str = "quick", **overrides: Any) -> StudyConfig:
        """The named profile with ``overrides`` applied (papermill passes them as parameters)."""
        presets: dict[str, dict[str, Any]] = {
            "tiny": dict(n_identities=3, probes_per_identity=1, deidentifiers=("blur_sigma8",), gallery_size=3,
                         attention_checks=1, n_simulated=3),
            "quick": {},
            "paper": dict(n_identities=10, probes_per_identity=4, gallery_size=5, attention_checks=4,
                          n_simulated=20),
        }
        if name not in presets:
            raise ValueError(f"unknown study profile {name!r}; choose from {sorted(presets)}")
        unknown = set(overrides) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown StudyConfig fields {sorted(unknown)}")
        merged = {**presets[name], **overrides}
        for k in ("deidentifiers", "tasks"):
            if k in merged:
                merged[k] = tuple(merged[k])
        return cls(profile_name=name, **merged)

    def design(self, **kw: Any) -> StudyDesign:
        """The :class:`StudyDesign` of this configuration; ``kw`` sets other design fields (name, texts)."""
        return StudyDesign(name=kw.pop("name", "deid_human_study"), tasks=self.tasks, gallery_size=self.gallery_size,
                           attention_checks=self.attention_checks, seed=self.seed, stimulus_px=self.stimulus_px,
                           pair_px=self.pair_px, gallery_px=self.gallery_px, **kw)


@dataclass(frozen=True)
class Trial:
    """One question. ``choices`` are the recorded answer values (identities, real/modified or ratings);
    ``correct`` is None where there is no right answer (similarity)."""

    trial_id: str
    task: str
    condition: str
    source: str
    identity: str | None
    stimuli: tuple[str, ...]
    choices: tuple[str, ...]
    correct: str | None
    candidates: tuple[str, ...] = ()
    attention: bool = False
    prompt: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Trial:
        d = dict(d)
        for k in ("stimuli", "choices", "candidates"):
            d[k] = tuple(d.get(k, ()))
        return cls(**d)


@dataclass(frozen=True)
class Plan:
    """One participant's trials in presentation order, and the order of gallery candidates per trial."""

    seed: int
    order: tuple[str, ...]
    candidates: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "order": list(self.order),
                "candidates": {k: list(v) for k, v in self.candidates.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Plan:
        return cls(int(d["seed"]), tuple(d["order"]), {k: tuple(v) for k, v in d.get("candidates", {}).items()})


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


# --------------------------------------------------------------------------------------------- stimuli

@dataclass
class Subject:
    """One identity's images for a study built from arrays: a gallery image and one or more probe images."""

    identity: str
    gallery: np.ndarray
    probes: list[np.ndarray]
    origin: dict[str, Any] = field(default_factory=dict)  # provenance, e.g. {"gallery": path, "probes": [paths]}


def _check_image(arr: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise StudyError(f"{what}: expected an RGB uint8 image (H, W, 3), got {arr.dtype} {arr.shape}")
    return arr


def make_stimuli(out_dir: str | os.PathLike, subjects: Sequence[Subject], deidentifiers: Sequence[Any]) -> pd.DataFrame:
    """Write gallery, original and de-identified probe images as PNG files under ``out_dir``; return the
    stimulus manifest (columns ``file`` (absolute), ``identity``, ``role``, ``condition``, ``source``, ``origin``).

    ``deidentifiers`` are objects with ``.name`` and ``.deidentify(batch (N,S,S,3) uint8)`` (baselines or
    wrapped learned models); each is called once on all probes. A de-identifier named ``original`` is skipped
    (the original is always part of the study).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not subjects:
        raise StudyError("make_stimuli: no subjects")
    names = [str(d.name) for d in deidentifiers if str(d.name) != ORIGINAL]
    if len(set(names)) != len(names):
        raise StudyError(f"make_stimuli: de-identifier names must be unique, got {names}")
    ids = [s.identity for s in subjects]
    if len(set(ids)) != len(ids):
        raise StudyError(f"make_stimuli: duplicate identities {sorted({i for i in ids if ids.count(i) > 1})}")
    rows: list[dict[str, Any]] = []
    probes, probe_keys = [], []
    for si, s in enumerate(subjects):
        g = _check_image(s.gallery, f"subject {s.identity!r} gallery image")
        f = out_dir / f"g{si:03d}.png"
        save_image(f, g)
        rows.append({"file": str(f), "identity": s.identity, "role": "gallery", "condition": ORIGINAL,
                     "source": f"g{si:03d}", "origin": str(s.origin.get("gallery", ""))})
        if not s.probes:
            raise StudyError(f"make_stimuli: subject {s.identity!r} has no probe image")
        porigins = list(s.origin.get("probes", [""] * len(s.probes)))
        for pi, p in enumerate(s.probes):
            p = _check_image(p, f"subject {s.identity!r} probe {pi}")
            probes.append(p)
            probe_keys.append((s.identity, f"p{si:03d}_{pi:02d}", str(porigins[pi]) if pi < len(porigins) else ""))
    shapes = {p.shape for p in probes}
    if len(shapes) != 1:
        raise StudyError(f"make_stimuli: probe images must share one size to be de-identified as a batch, got {shapes}")
    batch = np.stack(probes)
    versions = {ORIGINAL: batch}
    for d in deidentifiers:
        if str(d.name) == ORIGINAL:
            continue
        out = np.asarray(d.deidentify(batch.copy()))
        if out.shape != batch.shape or out.dtype != np.uint8:
            raise StudyError(f"de-identifier {d.name!r} returned {out.dtype} {out.shape}; expected uint8 {batch.shape}")
        versions[str(d.name)] = out
    for ci, (cond, imgs) in enumerate(versions.items()):
        for (identity, key, origin), img in zip(probe_keys, imgs):
            f = out_dir / f"{key}_c{ci:02d}.png"
            save_image(f, img)
            rows.append({"file": str(f), "identity": identity, "role": "probe", "condition": cond,
                         "source": key, "origin": origin})
    return pd.DataFrame(rows)


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


def _validate_manifest(manifest: pd.DataFrame) -> pd.DataFrame:
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


def _make_trials(m: pd.DataFrame, design: StudyDesign, conditions: list[str]) -> list[Trial]:
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
    m = _validate_manifest(manifest)
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
        trials = _make_trials(m, design, conditions)
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


def build_study_from_images(folder: str | os.PathLike, subjects: Sequence[Subject], deidentifiers: Sequence[Any],
                            design: StudyDesign | None = None, info: dict[str, Any] | None = None,
                            overwrite: bool = False) -> Study:
    """Build a study from image arrays: gallery/probe images per identity, de-identified by each of
    ``deidentifiers`` (objects with ``.name`` and ``.deidentify``)."""
    with tempfile.TemporaryDirectory(prefix="deidkit-stimuli-") as tmp:
        manifest = make_stimuli(tmp, subjects, deidentifiers)
        info = {"deidentifiers": [str(d.name) for d in deidentifiers if str(d.name) != ORIGINAL], **(info or {})}
        return build_study(folder, manifest, design, info=info, overwrite=overwrite)


def build_lfw_study(folder: str | os.PathLike, deidentifiers: Sequence[Any], design: StudyDesign | None = None,
                    n_identities: int = 5, probes_per_identity: int = 2, protocol: str = "lfw_57x8",
                    size: int | None = None, detector: str = "yunet", overwrite: bool = False) -> Study:
    """The default study: ``n_identities`` identities of an LFW protocol, one gallery photo and
    ``probes_per_identity`` other photos each, all as canonical crops (so originals and de-identified versions
    differ only by the de-identification), identities drawn with ``design.seed``.

    ``size``: side of the crops, by default the largest display size of the design (256 px). Each crop is
    warped from the 250 x 250 LFW photo straight to that size (never from a smaller crop); the canonical crop
    spans about 200 photo pixels (the whole head with hair, chin and a margin), so at 256 px the photo's pixels
    are enlarged about 1.3 times: the stimuli hold the detail LFW has, no more."""
    from deidkit.data import lfw

    design = design or StudyDesign()
    size = size or max(design.stimulus_px, design.pair_px, design.gallery_px)
    files = lfw.load_manifest(protocol)
    per_id = files.groupby("identity")["path"].apply(lambda s: sorted(set(s)))
    eligible = sorted(i for i, p in per_id.items() if len(p) >= probes_per_identity + 1)
    if n_identities > len(eligible):
        raise StudyError(f"{protocol}: only {len(eligible)} identities have {probes_per_identity + 1} images")
    rng = np.random.default_rng(design.seed)
    chosen = sorted(rng.choice(eligible, size=n_identities, replace=False).tolist())
    picks = {i: [per_id[i][j] for j in rng.choice(len(per_id[i]), size=probes_per_identity + 1, replace=False)]
             for i in chosen}
    paths = [p for i in chosen for p in picks[i]]
    crops = lfw.aligned_crops(paths, size=size, detector=detector)
    crop_of = dict(zip(paths, crops))
    subjects = [Subject(i, crop_of[picks[i][0]], [crop_of[p] for p in picks[i][1:]],
                        origin={"gallery": f"lfw:{picks[i][0]}", "probes": [f"lfw:{p}" for p in picks[i][1:]]})
                for i in chosen]
    info = {"source": "lfw", "protocol": protocol, "size": size, "detector": detector}
    return build_study_from_images(folder, subjects, deidentifiers, design, info=info, overwrite=overwrite)
