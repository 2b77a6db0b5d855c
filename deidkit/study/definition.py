"""What a human study is: its tasks, its design, its trials, and each participant's trial order (the plain data
that ``study.json`` stores; the folder itself is :mod:`deidkit.study.folder`).

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

import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

TASKS = ("identification", "real_vs_modified", "similarity")
ORIGINAL = "original"
ATTENTION = "attention"
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
