"""Which records files of ``reports/metrics/`` are current, i.e. go into ``metrics.json`` and ``README.md``
(the rules are in the docstring of :mod:`deidkit.reports`): the notebooks', the shipped models' and the kit's
benchmarks'."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

# deidkit/weights/manifest.json, beside this package
MANIFEST_PATH = Path(__file__).parent.parent / "weights" / "manifest.json"
# fixed-name records of the kit's benchmarks and checks of the shipped pipeline (rule 3 of the module docstring)
BENCHMARKS = ("video_speed", "train_speed", "detection_by_size", "study_browser", "selection_upsampling")


def shipped_sources(manifest: str | os.PathLike | dict | None = None) -> dict[str, str]:
    """``{model: records file name}`` of the shipped models: each manifest entry's ``metrics.source`` (its headline
    numbers), live models first, then by name. ``manifest``: a path or the parsed manifest (default: the kit's)."""
    if not isinstance(manifest, dict):
        path = Path(manifest) if manifest else MANIFEST_PATH
        manifest = json.loads(path.read_text()) if path.is_file() else {"models": {}}
    models = manifest.get("models", {})
    order = sorted(models, key=lambda m: (models[m].get("kind") != "live", m))
    return {m: Path(models[m].get("metrics", {}).get("source") or f"{m}.json").name for m in order}


def is_current(path: str | os.PathLike, shipped: dict[str, str] | None = None) -> bool:
    """Whether a records file of ``reports/metrics/`` goes into ``metrics.json`` and ``README.md`` (the rule of the
    module docstring); ``shipped``: :func:`shipped_sources` (default: the kit's manifest)."""
    name = Path(path).name
    stem = Path(path).stem
    shipped = shipped_sources() if shipped is None else shipped
    return bool(re.fullmatch(r"[0-9][0-9]_.*", stem) or stem.startswith("_runtime_")  # the notebooks
                or name in shipped.values() or "shipped" in stem or stem.startswith("realism")  # the shipped models
                or stem in BENCHMARKS)
