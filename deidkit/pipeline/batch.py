"""Many photos or videos in one run: files, folders (recursive) and globs in, a mirrored tree out.

Each output is written atomically (a temporary name, then a rename), so an output that exists is complete; a rerun
skips outputs newer than their input and does the rest, which is how a batch resumes after a crash or Ctrl-C. One
bad file is reported and the batch goes on. Every file gets a row in the summary CSV (rewritten after each file):
status ``done`` | ``skipped`` | ``no_face`` (written unchanged: a photo where no face was found, a video where no
frame had one) | ``refused`` (``strict``: nothing written) | ``failed`` (with the error), the number of faces, the
frames without a face (count and ranges), the seconds spent and the run that did it (its start time).

The summary keeps its history: a rerun reads the summary it is about to rewrite, and a file it skips (its output
is current) keeps the row of the run that wrote that output; ``skipped`` (with no counts) is left only for an output
whose outcome was never recorded (no summary, or a run killed between writing the output and its row). A file
being redone keeps its earlier row until its new one replaces it, so a crash loses no recorded outcome.
"""

from __future__ import annotations

import glob
import os
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

# the summary CSV's rows live in deidkit.pipeline.batch_summary; their names stay importable from here, where the
# command line, the audit and the tests import them
from deidkit.pipeline.batch_summary import (  # noqa: F401
    STATUSES,
    WRITTEN,
    BatchRow,
    BatchRows,
    _file_key,
    _recorded,
    new_run_id,
    read_summary,
    summarise,
    write_summary,
)

# raised where photos and videos are de-identified, below the batch; importable from here as before
from deidkit.pipeline.video import NoFaceError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
#: Image formats written as they are; other image inputs are written as PNG (lossless).
IMAGE_OUTPUT_SUFFIXES = (".png", ".jpg", ".jpeg")
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm")
#: Video containers written as they are; other video inputs are written as MP4.
VIDEO_OUTPUT_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".avi")


def _suffixes(kind: str) -> tuple[tuple[str, ...], tuple[str, ...], str]:
    if kind == "image":
        return IMAGE_SUFFIXES, IMAGE_OUTPUT_SUFFIXES, ".png"
    if kind == "video":
        return VIDEO_SUFFIXES, VIDEO_OUTPUT_SUFFIXES, ".mp4"
    raise ValueError(f"kind must be 'image' or 'video', got {kind!r}")


def output_name(rel: Path, kind: str) -> Path:
    """The output's path relative to the output folder: the input's, with a suffix the kit can write."""
    _, writable, default = _suffixes(kind)
    return rel if rel.suffix.lower() in writable else rel.with_suffix(default)


def collect_inputs(inputs: list[str | os.PathLike], kind: str) -> list[tuple[Path, Path]]:
    """(file, path relative to the output folder) for every input: a file keeps its name, a folder's files
    (recursive, by suffix) keep their path below the folder, a glob's matches their path below the glob's first
    folder without a wildcard. A missing input or one that matches nothing raises ``FileNotFoundError``; two
    inputs that would write the same output raise ``ValueError``."""
    readable, _, _ = _suffixes(kind)
    found: list[tuple[Path, Path]] = []
    for item in inputs:
        text = str(item)
        if glob.has_magic(text):
            parts = Path(text).parts
            base = Path(*parts[:next(i for i, p in enumerate(parts) if glob.has_magic(p))] or ["."])
            matches = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
            matches = [p for p in matches if p.suffix.lower() in readable]
            if not matches:
                raise FileNotFoundError(f"{text}: matches no {kind} file")
            found += [(p, p.relative_to(base)) for p in matches]
        elif Path(text).is_dir():
            root = Path(text)
            files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in readable
                           and not p.name.startswith("."))
            if not files:
                raise FileNotFoundError(f"{root}: folder holds no {kind} file ({', '.join(readable)})")
            found += [(p, p.relative_to(root)) for p in files]
        elif Path(text).is_file():
            p = Path(text)
            if p.suffix.lower() not in readable:
                raise ValueError(f"{p}: not a {kind} file (expected one of {', '.join(readable)})")
            found.append((p, Path(p.name)))
        else:
            raise FileNotFoundError(f"{text}: no such file or folder")
    seen: dict[Path, Path] = {}
    for src, rel in found:
        out = output_name(rel, kind)
        if out in seen and seen[out].resolve() != src.resolve():
            raise ValueError(f"{src} and {seen[out]} would both be written to {out}; pass their folders instead")
        seen[out] = src
    unique = {src.resolve(): (src, rel) for src, rel in found}
    return list(unique.values())


def check_output_folder(out_dir: str | os.PathLike, inputs: list[tuple[Path, Path]], kind: str) -> Path:
    """The output folder, created; refuses a file in its place, a folder that cannot be written, and a folder that
    would overwrite an input."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"{out_dir}: exists and is not a folder (several inputs need an output folder)")
    for src, rel in inputs:
        if (out_dir / output_name(rel, kind)).resolve() == src.resolve():
            raise ValueError(f"{src}: the output would overwrite the input; choose another output folder")
    check_writable(out_dir)
    return out_dir


def check_writable(folder: Path) -> None:
    """Create ``folder`` and a file in it (then remove the file): permission bits alone do not say whether a
    folder can be written (root, read-only mounts)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".deidkit-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ValueError(f"{folder}: output folder is not writable ({exc.strerror or exc})") from None


_LEFTOVER = re.compile(r"^\..+\.(?:tmp|partial-)(\d+)")


def remove_leftovers(out_dir: Path) -> list[Path]:
    """Delete temporary files that a killed run left in ``out_dir`` (their writing process is gone)."""
    removed = []
    for p in out_dir.rglob(".*"):
        m = _LEFTOVER.match(p.name)
        if not (m and p.is_file()):
            continue
        try:
            os.kill(int(m.group(1)), 0)
            continue  # still being written by a live process
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def is_up_to_date(src: Path, out: Path) -> bool:
    """An output that exists is complete (written atomically); it is current when not older than its input."""
    return out.is_file() and out.stat().st_mtime >= src.stat().st_mtime


def frame_ranges(frames: list[int]) -> str:
    """``[0, 1, 2, 7, 9, 10]`` -> ``"0-2,7,9-10"``."""
    out, start, prev = [], None, None
    for f in sorted(frames):
        if start is None:
            start = prev = f
        elif f == prev + 1:
            prev = f
        else:
            out.append(f"{start}-{prev}" if prev > start else f"{start}")
            start = prev = f
    if start is not None:
        out.append(f"{start}-{prev}" if prev > start else f"{start}")
    return ",".join(out)


# ----------------------------------------------------------------------------------------- one file at a time

_WORKER: dict[str, Any] = {}


def resolve_deidentifier(name: str, run_dir: str | None = None, device: str = "cpu") -> Any:
    """``live`` / ``fadenet`` (the shipped pretrained models), ``live_<profile>[_stage<k>]`` (a live network
    trained in the cache, or in ``run_dir``), ``fadenet_<profile>`` or any baseline name of
    :func:`deidkit.baselines.get_deidentifier`. An unknown name raises ``ValueError`` (one line on the CLI)."""
    if name.startswith("live") and run_dir is not None:
        from deidkit.deidentifiers.live_names import live_deidentifier_by_name

        return live_deidentifier_by_name(name, run_dir=run_dir, device=device)
    from deidkit.deidentifiers import load_deidentifier

    try:
        return load_deidentifier(name)
    except KeyError as exc:
        raise ValueError(str(exc.args[0]) if exc.args else f"unknown method {name!r}") from None


def _init_worker(method: str, options: dict[str, Any], threads: int | None) -> None:
    """Build the de-identifier once per process (workers of ``jobs > 1``, or the main process); the photos'
    face swapper is built on the first photo (:func:`_image_swapper`)."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    _WORKER.clear()  # a swapper left by an earlier run in this process holds that run's de-identifier and options
    _WORKER.update(deid=resolve_deidentifier(method, options.pop("run_dir", None)), options=options,
                   threads=threads or -1)


def _image_swapper() -> Any:
    """This process's face swapper for photos, built once: the detector and dlib's landmark predictor (~0.9 s)
    load once per run, not once per photo. A build that fails (no face in ``target``) is not kept, so that every
    photo reports the error, as when each photo built its own."""
    if "swapper" not in _WORKER:
        from deidkit.pipeline.video import image_swapper

        _WORKER["swapper"] = image_swapper(_WORKER["deid"], **_WORKER["options"])
    return _WORKER["swapper"]


def _process_one(kind: str, src: str, out: str, strict: bool) -> BatchRow:
    from deidkit.pipeline.video import deidentify_image, deidentify_video

    row = BatchRow(src, out)
    start = time.perf_counter()
    try:
        if kind == "image":
            # deidentify_image resets the shared swapper first: photos are independent, nothing is tracked across
            rep = deidentify_image(src, out, _WORKER["deid"], require_face=strict, swapper=_image_swapper())
            row.faces, row.frames = rep.faces, 1
            row.frames_without_face = int(rep.faces == 0)
            row.frames_without_face_list = "0" if rep.faces == 0 else ""
        else:
            rep = deidentify_video(src, out, _WORKER["deid"], progress=False, require_face=strict,
                                   threads=_WORKER["threads"], **_WORKER["options"])
            row.faces, row.frames = rep.faces, rep.frames
            row.frames_without_face = rep.frames_without_faces
            row.frames_without_face_list = frame_ranges(rep.faceless_frames)
        row.status = "no_face" if row.faces == 0 else "done"
    except NoFaceError as exc:
        row.status, row.error = "refused", str(exc)
    except Exception as exc:  # one bad file is reported; the batch goes on
        row.status, row.error = "failed", f"{type(exc).__name__}: {exc}".splitlines()[0]
    row.seconds = round(time.perf_counter() - start, 3)
    return row


#: Photos a worker process should have before another one pays for loading its own models (a few seconds).
PHOTOS_PER_WORKER = 24


def auto_jobs(kind: str, files: int) -> int:
    """Worker processes for ``files`` files when the user leaves it to the kit: photos use the cores once each
    worker has :data:`PHOTOS_PER_WORKER` of them; a video is one process (its pipeline runs threads of its own)."""
    if kind != "image":
        return 1
    return max(1, min(os.cpu_count() or 1, files // PHOTOS_PER_WORKER))


def run_batch(kind: str, inputs: list[str | os.PathLike], out_dir: str | os.PathLike, method: str = "live",
              jobs: int = 0, strict: bool = False, force: bool = False, summary: str | os.PathLike | None = None,
              progress: bool = True, threads: int | None = None, **options: Any) -> BatchRows:
    """De-identify every image or video of ``inputs`` into ``out_dir`` (the tree mirrored); returns the rows of
    the summary, which is written to ``summary`` (default ``out_dir/deidkit-summary.csv``).

    ``jobs`` > 1 runs that many worker processes (each with its own de-identifier; ``threads`` torch threads
    each, default 1 then); 0 chooses (:func:`auto_jobs`). ``strict`` refuses to write an output in which no face was de-identified. ``force``
    redoes outputs that are already current. ``options`` go to :func:`deidentify_image` /
    :func:`deidentify_video` (``detector``, ``strength``, ``hull``, ``target``, ...) and ``run_dir`` to the
    de-identifier's loader.

    A file whose output is current is skipped and keeps the row ``summary`` already holds for it (see the module
    docstring); the rows returned say which run wrote each (``run``) and which this run skipped
    (:attr:`BatchRows.skipped`)."""
    if jobs < 0:
        raise ValueError(f"jobs must be >= 0 (0: as many as pay), got {jobs}")
    files = collect_inputs(inputs, kind)
    out_dir = check_output_folder(out_dir, files, kind)
    remove_leftovers(out_dir)
    summary = Path(summary) if summary is not None else out_dir / "deidkit-summary.csv"
    run = new_run_id()
    recorded = _recorded(summary)
    # The summary as it stands, by output, in input order: each file's latest row, this run's or an earlier one.
    current: dict[str, BatchRow] = {}
    todo = []
    skipped = kept = 0
    for src, rel in files:
        out = out_dir / output_name(rel, kind)
        earlier = recorded.get(_file_key(src, out))
        if not force and is_up_to_date(src, out):
            skipped += 1
            if earlier is not None and earlier.status in WRITTEN:
                kept += 1
                current[str(out)] = replace(earlier, input=str(src), output=str(out))
            else:
                current[str(out)] = BatchRow(str(src), str(out), "skipped")
        else:
            todo.append((str(src), str(out)))
            if earlier is not None:  # kept until this run's row replaces it
                current[str(out)] = replace(earlier, input=str(src), output=str(out))
    if skipped and progress:
        print(f"{skipped} of {len(files)} files already current, skipped ({kept} with their recorded outcome kept, "
              f"{skipped - kept} without one); {len(todo)} to do (--force redoes them all)", file=sys.stderr)
    order = {str(out_dir / output_name(rel, kind)): i for i, (_, rel) in enumerate(files)}

    def finished(row: BatchRow) -> None:
        row.run = run
        current[row.output] = row
        write_summary(sorted(current.values(), key=lambda r: order[r.output]), summary)
        bar.update(1)

    jobs = jobs or auto_jobs(kind, len(todo))
    bar = tqdm(total=len(files), initial=skipped, desc=f"de-identify {kind}s", unit=kind, disable=not progress)
    if todo and jobs == 1:
        _init_worker(method, dict(options), threads)
        for src, out in todo:
            finished(_process_one(kind, src, out, strict))
    elif todo:
        import multiprocessing

        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
                                 initargs=(method, dict(options), threads or 1)) as pool:
            futures = [pool.submit(_process_one, kind, src, out, strict) for src, out in todo]
            for fut in as_completed(futures):
                finished(fut.result())
    bar.close()
    rows = BatchRows(sorted(current.values(), key=lambda r: order[r.output]), run)
    write_summary(rows, summary)
    return rows
