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
"""

from __future__ import annotations

import json
import os
import platform
import re
import resource
import subprocess
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from deidkit.assets import PROJECT_ROOT

NOTEBOOK_DIR = PROJECT_ROOT / "notebooks"
DEFAULT_REPORTS = PROJECT_ROOT / "reports"
PROFILES = ("tiny", "quick", "paper")
PACKAGES = ("torch", "torchvision", "numpy", "opencv-python-headless", "facenet-pytorch", "dlib-bin",
            "scikit-image", "scikit-learn", "pandas", "papermill")
MANIFEST_PATH = Path(__file__).parent / "weights" / "manifest.json"
# fixed-name records of the kit's benchmarks and checks of the shipped pipeline (rule 3 of the module docstring)
BENCHMARKS = ("video_speed", "train_speed", "detection_by_size", "study_browser", "selection_upsampling")
JUDGES = ("dlib", "mobilefacenet_casia")  # never trained against, never used for selection
BASELINES = ("blur_sigma4", "blur_sigma8", "pixelate_8px", "pixelate_16px")  # the naive rows of the headline
LEVELS = ("crop", "image")
MAX_README_LINES = 400


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


def _fmt(v) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.3f}"
    if isinstance(v, (list, tuple)) and v and all(isinstance(x, (int, float)) for x in v):
        return "[" + ", ".join(_fmt(float(x)) for x in v) + "]"
    return "" if v is None else str(v)


def _markdown_table(rows: list[dict], cols: list[str]) -> str:
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def _latest(rows: list[dict], key: tuple[str, ...]) -> list[dict]:
    """One row per ``key``: the last recorded, in the order of first appearance."""
    kept: dict[tuple, dict] = {}
    for r in rows:
        k = tuple(r.get(c) for c in key)
        kept.pop(k, None)
        kept[k] = r
    return list(kept.values())


def headline_rows(records: list[dict], shipped: dict[str, str]) -> list[dict]:
    """The headline table's rows: ``frontier`` records of each shipped model (from the records file its manifest
    entry names; from any other current file, e.g. notebook 04's, where that file is absent) and of the naive
    :data:`BASELINES`, at both :data:`LEVELS`, judged by the :data:`JUDGES`. The baselines come from the first of
    the shipped models' files that measured them, one with bootstrap intervals (``gap_ci``) first."""
    frontier = [r for r in records if r.get("kind") == "frontier" and r.get("recognizer") in JUDGES
                and r.get("level") in LEVELS]
    rows, used = [], []
    aliases = measured_as()
    for model, source in shipped.items():
        # a model measured under another name (bit-identical: the manifest's metrics.measured_as says which)
        mine = [r if r.get("deidentifier") == model else {**r, "deidentifier": model} for r in frontier
                if r.get("deidentifier") in (model, aliases.get(model))]
        named = [r for r in mine if r.get("source") == Path(source).stem]
        chosen = named or mine
        rows += _latest(chosen, ("protocol", "level", "recognizer"))
        used += [r.get("source") for r in chosen]
    naive = [r for r in frontier if r.get("deidentifier") in BASELINES]
    # files that measured the shipped models first (intervals first), then any other (e.g. notebook 04's)
    order = list(dict.fromkeys([*used, *(r.get("source") for r in naive)]))
    with_ci = {r.get("source") for r in naive if r.get("gap_ci")}
    order.sort(key=lambda src: src not in with_ci)
    for src in order:
        if any(r.get("source") == src for r in naive):
            rows += _latest([r for r in naive if r.get("source") == src],
                            ("protocol", "deidentifier", "level", "recognizer"))
            break
    names = [*shipped, *BASELINES]
    return sorted(rows, key=lambda r: (names.index(r["deidentifier"]), LEVELS.index(r["level"]),
                                       JUDGES.index(r["recognizer"])))


def measured_as() -> dict[str, str]:
    """``{shipped model: the name its headline records carry}`` where the manifest says it was measured under
    another name (``metrics.measured_as``, e.g. before a rename)."""
    from deidkit.pretrained import read_manifest

    out = {}
    for name, entry in read_manifest()["models"].items():
        alias = entry.get("metrics", {}).get("measured_as")
        if alias:
            out[name] = alias.split(" ", 1)[0]
    return out


def _headline(records: list[dict], shipped: dict[str, str]) -> list[str]:
    rows = headline_rows(records, shipped)
    if not rows:
        return []
    protocols = ", ".join(f"`{p}`" for p in dict.fromkeys(r.get("protocol") for r in rows if r.get("protocol")))
    cols = ["deidentifier", "level", "recognizer", "ssim", "rank1", "rank1_ci", "frontier_rank1", "gap_ci",
            "beyond_frontier", "margin_sd", "detection_rate", "source"]
    cols = [c for c in cols if c not in ("rank1_ci", "gap_ci", "beyond_frontier") or any(c in r for r in rows)]
    intervals = ("rank1_ci and gap_ci: identity-bootstrap 95% intervals of Rank-1 and of frontier minus Rank-1, "
                 "beyond_frontier when the latter excludes 0; " if "gap_ci" in cols else "")
    return ["", "## Shipped models and naive baselines", "",
            f"Test protocol {protocols or '(unknown)'}, judged by {' and '.join(JUDGES)} (never trained against, "
            "never used to choose a model); crop = canonical face crops, image = the whole photo through `deidkit "
            "image`. rank1: share of probes whose true identity ranks first (lower hides more); frontier_rank1: the "
            f"naive frontier, what blur or pixelation leaves at the same SSIM; {intervals}margin_sd: frontier minus "
            "Rank-1 in repetition SDs. Each model's rows come from the records file its manifest entry names (`source`).",
            "", _markdown_table(rows, cols)]


def _realism(records: list[dict]) -> list[str]:
    rows = [r for r in records if r.get("kind") == "realism"]
    if not rows:
        return []
    cols = ["level", "deidentifier", "sharpness", "colour_shift", "c2st", "change_correlation", "n", "source"]
    return ["", "## Realism (`deidkit realism`)", "",
            "Does the output look like a photograph? Medians over the test photos' inner face box: sharpness "
            "(fine detail over the original's; 1: as much), colour_shift (CIE76 Delta E of the mean colour; about "
            "1: hardly visible); c2st: accuracy of a linear probe telling outputs from originals (0.5: it cannot); "
            "change_correlation: how alike two people's changes are (near 1: one pattern painted on every face).",
            "", _markdown_table(rows, cols)]


SECTIONS = [
    ("Learned de-identifiers against the naive frontier (notebook 04, `deidkit frontier`): Rank-1 that blur or "
     "pixelation reaches at the same SSIM, margin in repetition SDs (positive: better than naive; crop = canonical "
     "crops, image = whole photo through `deidkit image`)", "frontier",
     ["protocol", "level", "deidentifier", "recognizer", "ssim", "rank1", "frontier_rank1", "frontier_family",
      "margin_sd", "detection_rate", "median_true_rank", "frontier_median_true_rank", "source"]),
    ("Verification on LFW pairs.txt (10-fold)", "verification",
     ["recognizer", "lfw_accuracy", "lfw_accuracy_std", "reference"]),
    ("Closed-set identification (FaDeNet protocol, 5 repetitions, probes de-identified)", "identification",
     ["protocol", "deidentifier", "recognizer", "rank1_mean", "rank1_std", "rank5_mean", "rank5_std", "ssim",
      "psnr", "detection_rate"]),
    ("Rank of the true identity among all LFW identities", "true_identity_rank",
     ["deidentifier", "recognizer", "median", "mean", "sd", "gallery_size"]),
    ("Original vs de-identified verification", "deid_verification",
     ["deidentifier", "recognizer", "tar_at_far", "far"]),
    ("Identity critic (notebook 01)", "critic_training",
     ["critic", "critic_kind", "identities", "heldout_images", "heldout_accuracy", "wall_s_this_call",
      "peak_rss_mb"]),
    ("FaDeNet training (notebook 02)", "fadenet_training",
     ["deidentifier", "lam", "epochs", "image_size", "heldout_critic_acc_original", "heldout_critic_acc_fadenet",
      "train_images_per_s", "peak_rss_mb", "wall_s_this_call", "device"]),
    ("The study form served by Voila, five participants in headless Chromium at once (tests/test_study_browser.py)",
     "study_browser", ["name", "value", "unit", "participants", "clicks"]),
    ("An attacker that has learnt the de-identifier (`deidkit attack`): plain (`none`), a ridge head on a frozen "
     "recogniser's embeddings (`adapted_linear`; `adapted` in older records), the recogniser's last blocks "
     "fine-tuned (`adapted_finetune`) or a reversal network, trained on the split `train_split` names; Rank-1 and "
     "median true rank within the protocol's gallery of originals", "attack",
     ["protocol", "deidentifier", "recognizer", "attack", "rank1", "rank1_std", "median_true_rank",
      "train_images", "train_split", "source"]),
    ("Training speed (`deidkit benchmark-train`)", "train_speed",
     ["model", "profile", "device", "world_size", "images_per_s", "batch_size", "steps", "threads",
      "peak_rss_mb"]),
    ("Speed (`deidkit benchmark-video`; ceiling: cores x 1000 / CPU-ms per frame, what the same work reaches "
     "with every core busy all the time)", "speed",
     ["name", "value", "unit", "detect_side", "cpu_ms_per_frame", "encoder_cpu_ms_per_frame", "ceiling_fps"]),
    ("Faces found by size (`deidkit benchmark-detection`): 40 LFW photos on a 1920x1080 canvas, each scaled "
     "to the face width given; the fine detection pass at each side (`--detect-side`), the coarse pass as in "
     "the pipeline", "detection_by_size", ["detect_side", "face_px", "found", "faces", "recall", "ms_per_frame"]),
    ("Run time and memory", "runtime memory", ["name", "value", "unit", "cache", "git_commit", "date",
                                               "kernel_peak_rss_mib"]),
    ("Where the time goes: the slowest cells of each notebook's last run (papermill's cell durations; code "
     "cell index, its first line)", "runtime_stage", ["notebook", "cell", "seconds", "share", "code"]),
]


def _tables(records: list[dict], first: list[str]) -> list[tuple[str, list[dict], list[str]]]:
    """(title, rows, columns) of every table after the headline and realism: :data:`SECTIONS`, then one per other
    kind (its first columns), so that no current record is left out of the summary. Rows judged by the
    :data:`JUDGES` (or by no recogniser) lead each table, those of the deidentifiers in ``first`` (the shipped models,
    the original, the baselines) first among them; otherwise rows keep their recorded order."""
    tables = []
    for title, kinds, cols in SECTIONS:
        # the naive families' own frontier rows (their margin is ~0 by construction) stay in metrics.json only
        tables.append((title, [r for r in records if r["kind"] in kinds.split() and not r.get("naive_family")], cols))
    covered = {k for s in SECTIONS for k in s[1].split()} | {"provenance", "realism"}
    for kind in sorted({r["kind"] for r in records} - covered):
        rows = [r for r in records if r["kind"] == kind]
        tables.append((f"Records of kind `{kind}`", rows,
                       list(dict.fromkeys(k for r in rows for k in r if k != "kind"))[:12]))
    rank = {name: i for i, name in enumerate(first)}

    def order(r: dict) -> tuple:
        return r.get("recognizer", JUDGES[0]) not in JUDGES, rank.get(r.get("deidentifier"), len(rank))

    return [(t, sorted(rows, key=order), cols) for t, rows, cols in tables if rows]


def _table_lines(tables: list[tuple[str, list[dict], list[str]]], limit: int | None) -> list[str]:
    parts = []
    for title, rows, cols in tables:
        parts += ["", f"## {title}", "", _markdown_table(rows[:limit] if limit else rows, cols)]
        if limit and len(rows) > limit:
            parts += ["", f"{limit} of {len(rows)} rows shown (the judges' and the shipped models' first where "
                      "they apply); all are in `metrics.json`."]
    return parts


def write_readme(out: Path, records: list[dict], shipped: dict[str, str] | None = None,
                 max_lines: int = MAX_README_LINES) -> Path:
    """``reports/README.md``: the summary tables, generated from ``metrics.json`` (never typed by hand). The
    headline (shipped models and naive baselines) and realism come first and whole; the other tables are cut to
    the most rows that keep the file within ``max_lines`` lines (at least 3 rows each)."""
    shipped = shipped_sources() if shipped is None else shipped
    prov = next(r for r in records if r["kind"] == "provenance")
    parts = [
        "# deidkit reports",
        "",
        f"Generated by `deidkit reports --profile {prov['profile']}` on {prov['date']} at commit "
        f"`{prov['git_commit'][:10]}`{' (dirty)' if prov['git_dirty'] else ''}; machine: {prov['machine']['platform']},"
        f" {prov['machine']['cpus']} CPUs. Every number below is read from `metrics.json` (the notebooks' records "
        "and the shipped models'; tried snapshots are in `experiments/`); executed notebooks are beside this file "
        "and as HTML in `html/`, figures in `figures/`.",
    ]
    commits = sorted({r["git_commit"][:10] for r in records if r["kind"] == "runtime" and r.get("git_commit")})
    if len(commits) > 1:
        parts += ["", f"Notebooks were last executed at different commits ({', '.join(commits)}): the run-time table "
                  "at the end says which notebook ran where and when; each notebook's numbers come from its own run."]
    parts += _headline(records, shipped) + _realism(records)
    shots = sorted((out / "figures" / "study_form").glob("*.png"))
    tail = []
    if shots:  # written by the browser test of the study form (make test)
        tail += ["", "## What a participant sees", "", "Screenshots of the served study form taken by the browser "
                 "test (first trial of each kind, then the end page):", ""]
        tail += [f"![{p.stem}](figures/study_form/{p.name})" for p in shots]
    headline = {id(r) for r in headline_rows(records, shipped)}  # not repeated in the frontier table below
    tables = _tables([r for r in records if id(r) not in headline], [*shipped, "original", *BASELINES])
    for limit in [None, *range(max((len(t[1]) for t in tables), default=0), 2, -1)]:
        text = "\n".join(parts + _table_lines(tables, limit) + tail) + "\n"
        if text.count("\n") <= max_lines:
            break
    path = out / "README.md"
    path.write_text(text)
    return path
