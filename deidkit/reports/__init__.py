"""Regenerate ``reports/``: execute the notebooks in order with papermill, export HTML, collect the current records
into ``reports/metrics.json`` (with provenance) and summarise them in ``reports/README.md``.

Which records are current (:func:`is_current`): ``metrics.json`` and ``README.md`` are built from the files of
``reports/metrics/`` that are

1. the notebooks' records, ``NN_*.json`` and ``_runtime_*.json``: what ``make reproduce`` rewrites;
2. the shipped models' records: a file that an entry of ``deidkit/weights/manifest.json`` names as its
   ``metrics.source``, and any file whose name contains ``shipped`` or starts with ``realism``;
3. the kit's benchmarks and checks of the shipped pipeline, written under fixed names (:data:`BENCHMARKS`):
   ``deidkit benchmark-video|benchmark-train|benchmark-detection``, the browser test of the study form and
   ``scripts/select_upsampling.py``.

Every other records file (``deidkit frontier|select|attack --name X`` or a probe script run on a tried snapshot) is
research-log material and stays out of both. Such files live in ``reports/experiments/metrics/`` (their figures in
``reports/experiments/figures/``; linked from ``docs/experiments.md``), except those that code, tests or the model
cards read from ``reports/metrics/`` (e.g. ``selection_fadenet_subspace*``, the records of notebook 02's recipes
figure). To make a maintainer's record current, name it ``*shipped*`` or point a manifest entry's ``metrics.source``
at it.

``README.md`` opens with the headline table (:func:`headline_rows`: each shipped model and the naive baselines, crop
and whole photo, judged by dlib and MobileFaceNet-CASIA), then the realism records, then a table per other kind of
record, each cut to the rows that keep the file within :data:`MAX_README_LINES` lines (``metrics.json`` has them all).

This module runs the notebooks and writes the records; :mod:`deidkit.reports.records` says which records files are
current and :mod:`deidkit.reports.summary` writes ``README.md`` (their names are importable from here too).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from deidkit.assets import PROJECT_ROOT
from deidkit.reports.records import BENCHMARKS, MANIFEST_PATH, is_current, shipped_sources
from deidkit.reports.summary import (
    BASELINES,
    JUDGES,
    LEVELS,
    MAX_README_LINES,
    SECTIONS,
    headline_rows,
    measured_as,
    write_readme,
)

NOTEBOOK_DIR = PROJECT_ROOT / "notebooks"
DEFAULT_REPORTS = PROJECT_ROOT / "reports"
PROFILES = ("tiny", "quick", "paper")
PACKAGES = ("torch", "torchvision", "numpy", "opencv-python-headless", "facenet-pytorch", "dlib-bin",
            "scikit-image", "scikit-learn", "pandas", "papermill")

__all__ = [
    "BASELINES", "BENCHMARKS", "DEFAULT_REPORTS", "JUDGES", "LEVELS", "MANIFEST_PATH", "MAX_README_LINES",
    "NOTEBOOK_DIR", "PACKAGES", "PROFILES", "SECTIONS", "collect_metrics", "compact_notebook", "experiment_seeds",
    "export_html", "git_state", "headline_rows", "is_current", "measured_as", "merge_metrics", "notebooks",
    "parameters_for", "provenance", "record_metrics", "refresh_summary", "reports_dir", "run_reports", "save_figure",
    "shipped_sources", "stage_profile", "write_readme",
]


def reports_dir(path: str | os.PathLike | None = None) -> Path:
    d = Path(path) if path else DEFAULT_REPORTS
    (d / "figures").mkdir(parents=True, exist_ok=True)
    (d / "metrics").mkdir(parents=True, exist_ok=True)
    return d


def notebooks(only: list[str] | None = None) -> list[Path]:
    """The notebooks in execution order (their file names start with a two-digit number)."""
    nbs = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
    if only:
        nbs = [nb for nb in nbs if any(nb.name.startswith(o) for o in only)]
        if not nbs:
            raise ValueError(f"no notebook matches {only}; have {[p.name for p in sorted(NOTEBOOK_DIR.glob('*.ipynb'))]}")
    return nbs


def save_figure(fig, name: str, out: str | os.PathLike | None = None) -> Path:
    """Save a matplotlib figure as ``reports/figures/<name>.png`` (what the report's README links to)."""
    path = reports_dir(out) / "figures" / f"{name}.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def record_metrics(records: list[dict], source: str, out: str | os.PathLike | None = None) -> Path:
    """Write the records a notebook produced to ``reports/metrics/<source>.json`` (replacing its earlier ones)."""
    for r in records:
        if "kind" not in r:
            raise ValueError(f"metric record without 'kind': {r}")
    path = reports_dir(out) / "metrics" / f"{source}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps([{**r, "source": source} for r in records], indent=1, default=_jsonable))
    os.replace(tmp, path)
    return path


def merge_metrics(new: list[dict], source: str, key: tuple[str, ...], out: str | os.PathLike | None = None) -> Path:
    """Add ``new`` records to ``reports/metrics/<source>.json``, replacing earlier ones with the same ``key`` fields
    (benchmarks measured one case at a time keep the other cases' records)."""
    path = reports_dir(out) / "metrics" / f"{source}.json"
    old = json.loads(path.read_text()) if path.is_file() else []
    fresh = {tuple(n.get(k) for k in key) for n in new}
    kept = [{k: v for k, v in r.items() if k != "source"} for r in old if tuple(r.get(k) for k in key) not in fresh]
    return record_metrics(kept + new, source, out)


def _jsonable(x):
    import numpy as np

    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"not JSON serialisable: {type(x)}")


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def git_state() -> dict:
    """The commit the code was run at and whether tracked files other than the reports differed from it (a run
    rewrites ``reports/`` itself, which says nothing about the code that ran)."""
    return {"git_commit": _git("rev-parse", "HEAD"),
            "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)reports"))}


def experiment_seeds(profile: str) -> dict[str, int]:
    """The seeds a run of ``profile`` used: each experiment configuration's and each protocol manifest's."""
    import yaml

    from deidkit.configs import CriticConfig, FaDeNetConfig, LiveConfig
    from deidkit.data.lfw import MANIFEST_DIR
    from deidkit.data.prep import DataPrepConfig
    from deidkit.study.design import StudyConfig

    seeds = {}
    for cls in (DataPrepConfig, CriticConfig, FaDeNetConfig, LiveConfig, StudyConfig):
        try:
            seeds[cls.__name__] = cls.profile(profile).seed
        except ValueError:  # a profile this experiment does not define
            continue
    meta = yaml.safe_load((MANIFEST_DIR / "protocols.yaml").read_text())
    seeds.update({f"protocol {k}": v["seed"] for k, v in meta["protocols"].items() if "seed" in v})
    return seeds


def provenance(profile: str, seeds: dict | None = None) -> dict:
    versions = {}
    for p in PACKAGES:
        try:
            versions[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            versions[p] = None
    return {
        "kind": "provenance",
        **git_state(),
        "profile": profile,
        "seeds": experiment_seeds(profile) if seeds is None else seeds,
        "machine": {"platform": platform.platform(), "processor": platform.machine(), "cpus": os.cpu_count(),
                    "python": sys.version.split()[0]},
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "packages": versions,
    }


def collect_metrics(out: Path, profile: str, extra: list[dict] | None = None,
                    shipped: dict[str, str] | None = None) -> list[dict]:
    """Provenance, then the records of the current files of ``out/metrics`` (:func:`is_current`), then ``extra``;
    written to ``out/metrics.json`` and returned."""
    shipped = shipped_sources() if shipped is None else shipped
    records = [provenance(profile)]
    for f in sorted((out / "metrics").glob("*.json")):
        if is_current(f, shipped):
            records.extend(json.loads(f.read_text()))
    records.extend(extra or [])
    (out / "metrics.json").write_text(json.dumps(records, indent=1, default=_jsonable))
    return records


def parameters_for(notebook: str | os.PathLike, parameters: dict) -> dict:
    """The items of ``parameters`` that ``notebook``'s parameters cell sets (e.g. ``threads``: notebooks 01-03
    only); papermill would inject the others too, as new variables with a warning."""
    import papermill as pm

    declared = pm.inspect_notebook(str(notebook))
    return {k: v for k, v in parameters.items() if k in declared}


def run_reports(profile: str = "quick", out: str | os.PathLike | None = None, only: list[str] | None = None,
                html: bool = True, parameters: dict | None = None) -> Path:
    """Execute the notebooks in order into ``out`` (default ``reports/``), then collect metrics and README.
    ``parameters`` reach the notebooks whose parameters cell sets them (papermill would add the others too)."""
    import papermill as pm

    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, not {profile!r}")
    out = reports_dir(out)
    from deidkit.assets import cache_dir

    cache = cache_dir()
    # cold: nothing cached yet (a fresh machine); warm: crops, embeddings or trained runs from an earlier run
    state = "warm" if cache.is_dir() and any(cache.iterdir()) else "cold"
    start = time.perf_counter()
    for nb in notebooks(only):
        dest = out / nb.name
        t0 = time.perf_counter()
        extra = parameters_for(nb, parameters or {})
        pm.execute_notebook(str(nb), str(dest), parameters={"profile": profile, "reports_dir": str(out), **extra},
                            kernel_name="python3", cwd=str(NOTEBOOK_DIR), progress_bar=False)
        # Kept per notebook, so that re-running some notebooks (``only``) keeps the others' run times.
        record_metrics([{"kind": "runtime", "name": nb.stem, "value": time.perf_counter() - t0, "unit": "s",
                         "profile": profile, **git_state(),
                         "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                         "kernel_peak_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0}],
                       f"_runtime_{nb.stem}", out)
        compact_notebook(dest)
        if html:
            export_html(dest, out / "html")
    if only is None:  # the whole of `make reproduce` after the set-up
        record_metrics([{"kind": "runtime", "name": "reproduce_total", "cache": state,
                         "value": time.perf_counter() - start, "unit": "s", "profile": profile, **git_state(),
                         "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}],
                       f"_runtime_total_{state}", out)
    refresh_summary(out, profile)
    return out


def stage_profile(out: str | os.PathLike | None = None, min_seconds: float = 10.0, min_share: float = 0.1) -> list[dict]:
    """Where each executed notebook of ``out`` spent its last run: records ``{"kind": "runtime_stage",
    "notebook", "cell", "seconds", "share", "code"}`` for every code cell that took at least ``min_seconds``
    or ``min_share`` of its notebook, read from papermill's cell durations (``code``: the cell's first line
    that is not an import or a comment)."""
    out = reports_dir(out)
    rows = []
    for path in sorted(out.glob("[0-9][0-9]_*.ipynb")):
        cells = [c for c in json.loads(path.read_text()).get("cells", []) if c.get("cell_type") == "code"]
        durations = [float(c.get("metadata", {}).get("papermill", {}).get("duration") or 0.0) for c in cells]
        total = sum(durations)
        for i, (cell, seconds) in enumerate(zip(cells, durations)):
            if total <= 0 or (seconds < min_seconds and seconds < min_share * total):
                continue
            source = "".join(cell.get("source", "")).splitlines()
            code = next((ln.strip() for ln in source if ln.strip() and not ln.lstrip().startswith(
                ("#", "import ", "from "))), "")
            rows.append({"kind": "runtime_stage", "notebook": path.stem, "cell": i, "seconds": seconds,
                         "share": seconds / total, "code": code[:90]})
    return rows


def refresh_summary(out: str | os.PathLike | None = None, profile: str = "quick") -> Path:
    """``metrics.json`` and ``README.md`` of ``out`` from the records in ``out/metrics`` (e.g. after
    ``deidkit frontier`` or the browser test added records), without executing any notebook."""
    out = reports_dir(out)
    runtimes = [r for f in sorted((out / "metrics").glob("_runtime_*.json")) for r in json.loads(f.read_text())]
    peaks = [r["kernel_peak_rss_mib"] for r in runtimes if r.get("kernel_peak_rss_mib")]
    memory = [{"kind": "memory", "name": "reports_peak_kernel_rss", "value": max(peaks), "unit": "MiB",
               "note": "largest resident set of any notebook kernel (ru_maxrss of child processes)"}] if peaks else []
    return write_readme(out, collect_metrics(out, profile, memory + stage_profile(out)))


def compact_notebook(path: Path, max_png_bytes: int = 200_000, jpeg_quality: int = 85) -> tuple[int, int]:
    """Shrink an executed notebook in place; returns its size in bytes before and after.

    Drops the saved widget state (``metadata.widgets``: the last value of every widget model, images included,
    which for the study form alone ran to 43 MB; the notebooks render static figures beside their widgets) and
    re-encodes PNG outputs larger than ``max_png_bytes`` (photo grids, where PNG is several times larger than
    JPEG) as JPEG. Plots stay PNG. Numbers and text are untouched.
    """
    import base64
    import io

    from PIL import Image

    before = path.stat().st_size
    nb = json.loads(path.read_text())
    nb.get("metadata", {}).pop("widgets", None)
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            png = data.get("image/png")
            if png is None:
                continue
            raw = base64.b64decode("".join(png) if isinstance(png, list) else png)
            if len(raw) <= max_png_bytes:
                continue
            buf = io.BytesIO()
            Image.open(io.BytesIO(raw)).convert("RGB").save(buf, format="JPEG", quality=jpeg_quality)
            del data["image/png"]
            data["image/jpeg"] = base64.b64encode(buf.getvalue()).decode("ascii")
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return before, path.stat().st_size


def export_html(notebook: Path, dest_dir: Path) -> Path:
    from nbconvert import HTMLExporter

    dest_dir.mkdir(parents=True, exist_ok=True)
    body, _ = HTMLExporter().from_filename(str(notebook))
    path = dest_dir / f"{notebook.stem}.html"
    path.write_text(body)
    return path
