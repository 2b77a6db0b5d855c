"""The study's public names in one place, as they have always been imported (``from deidkit.study.design import
...``). Each idea has its own module:

- :mod:`deidkit.study.definition`: the tasks, :class:`StudyDesign`, :class:`StudyConfig`, :class:`Trial`,
  :class:`Plan` (the plain data ``study.json`` stores);
- :mod:`deidkit.study.trials`: from a stimulus manifest to trials, and the size each stimulus needs;
- :mod:`deidkit.study.folder`: the loaded :class:`Study` and building, opening and copying its folder;
- :mod:`deidkit.study.stimuli`: stimulus images from arrays and the default LFW study.
"""

from __future__ import annotations

from deidkit.study.definition import (
    ATTENTION,
    DEFAULT_CONSENT,
    DEFAULT_INSTRUCTIONS,
    GALLERY_PX,
    MODIFIED,
    ORIGINAL,
    PAIR_PX,
    PROMPTS,
    RATINGS,
    REAL,
    STIMULUS_PX,
    TASKS,
    Plan,
    StudyConfig,
    StudyDesign,
    StudyError,
    Trial,
    default_study_dir,
)
from deidkit.study.folder import (
    FORMAT,
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    Study,
    build_study,
    export_study,
    load_study,
)
from deidkit.study.stimuli import Subject, build_lfw_study, build_study_from_images, make_stimuli
from deidkit.study.trials import MANIFEST_COLUMNS, required_px

__all__ = [
    "ATTENTION", "DEFAULT_CONSENT", "DEFAULT_INSTRUCTIONS", "FORMAT", "GALLERY_PX", "IMAGE_SUFFIXES",
    "MANIFEST_COLUMNS", "MODIFIED", "ORIGINAL", "PAIR_PX", "PROMPTS", "RATINGS", "REAL", "STIMULUS_PX", "TASKS",
    "VIDEO_SUFFIXES", "Plan", "Study", "StudyConfig", "StudyDesign", "StudyError", "Subject", "Trial",
    "build_lfw_study", "build_study", "build_study_from_images", "default_study_dir", "export_study", "load_study",
    "make_stimuli", "required_px",
]
