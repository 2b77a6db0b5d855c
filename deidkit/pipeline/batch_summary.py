"""A batch's summary CSV: one row per file (:class:`BatchRow`: its status, faces, frames without a face, seconds
and the run that did it), written atomically after each file, read back by the next run so that a file it skips
keeps its recorded outcome, and summed up in one line for the terminal. The batch itself runs in
:mod:`deidkit.pipeline.batch`.
"""

from __future__ import annotations

import csv
import os
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from pathlib import Path

STATUSES = ("done", "skipped", "no_face", "refused", "failed")
#: Outcomes that wrote the output: a rerun that skips the output keeps such a row.
WRITTEN = ("done", "no_face")


@dataclass
class BatchRow:
    """One file of a batch (a row of the summary CSV)."""

    input: str
    output: str
    status: str = ""
    faces: int = 0
    frames: int = 0
    frames_without_face: int = 0
    frames_without_face_list: str = ""
    seconds: float = 0.0
    error: str = ""
    #: the run that produced this outcome (:func:`new_run_id`); empty when unknown
    run: str = ""


class BatchRows(list):
    """The rows of one batch (a list of :class:`BatchRow`, in input order) and the run that made them: rows of
    another run are files this run skipped, their earlier outcome kept."""

    def __init__(self, rows: Iterable[BatchRow] = (), run: str = "") -> None:
        super().__init__(rows)
        self.run = run

    @property
    def skipped(self) -> list[BatchRow]:
        """The files this run did not redo (their outputs were current)."""
        return [r for r in self if r.run != self.run]


def new_run_id() -> str:
    """A run's identifier: its start time, local with the UTC offset, to the millisecond (two runs of the same
    second stay apart)."""
    return datetime.now().astimezone().isoformat(timespec="milliseconds")


def write_summary(rows: list[BatchRow], path: str | os.PathLike) -> None:
    """The summary CSV, written atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, [fl.name for fl in fields(BatchRow)])
        w.writeheader()
        w.writerows(asdict(r) for r in rows)
    os.replace(tmp, path)


def _file_key(src: str | os.PathLike, out: str | os.PathLike) -> tuple[str, str]:
    """A file of a batch, whichever way its paths were spelled (relative, absolute, through links)."""
    return os.path.realpath(src), os.path.realpath(out)


def read_summary(path: str | os.PathLike) -> list[BatchRow]:
    """The rows of a summary CSV written by :func:`write_summary` (an older one without some columns too: they
    take their defaults). A missing file gives no rows; one that is not such a summary raises ``ValueError``;
    a row that does not parse is left out."""
    path = Path(path)
    if not path.is_file():
        return []
    types = {fl.name: fl.type for fl in fields(BatchRow)}
    rows = []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if not {"input", "output", "status"} <= set(reader.fieldnames or ()):
                raise ValueError(f"{path}: not a batch summary (columns {reader.fieldnames})")
            for rec in reader:
                try:
                    # the dataclass's annotations are strings here (``from __future__ import annotations``)
                    kw = {k: {"int": int, "float": float}.get(types[k], str)(v) for k, v in rec.items()
                          if k in types and v is not None}
                    row = BatchRow(**kw)
                except (TypeError, ValueError):
                    continue
                if row.status in STATUSES:
                    rows.append(row)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"{path}: unreadable ({exc})") from None
    return rows


def _recorded(summary: Path) -> dict[tuple[str, str], BatchRow]:
    """The earlier summary's rows by file; nothing (and a warning) when it cannot be read: the batch itself
    does not depend on it."""
    try:
        return {_file_key(r.input, r.output): r for r in read_summary(summary)}
    except ValueError as exc:
        print(f"warning: {exc}; earlier outcomes are not recovered, and it will be rewritten", file=sys.stderr)
        return {}


def summarise(rows: list[BatchRow]) -> str:
    """One line: counts per status, the files skipped (with the outcomes kept for them), faces, files without a
    face. Faces and files without a face count every row, kept ones included: the whole output folder."""
    skipped = rows.skipped if isinstance(rows, BatchRows) else [r for r in rows if r.status == "skipped"]
    ids = {id(r) for r in skipped}
    here = [r for r in rows if id(r) not in ids]
    counts = {s: sum(r.status == s for r in here) for s in STATUSES}
    parts = [f"{n} {s}" for s, n in counts.items() if n]
    if skipped:
        kept = {s: sum(r.status == s for r in skipped) for s in STATUSES if s != "skipped"}
        kept_text = ", ".join(f"{n} {s}" for s, n in kept.items() if n)
        parts.append(f"{len(skipped)} skipped (already current" + (f"; outcomes kept: {kept_text})" if kept_text
                                                                   else ")"))
    faceless = sum(r.frames_without_face > 0 for r in rows if r.status in ("done", "no_face", "refused"))
    return (f"{len(rows)} files: {', '.join(parts)}; {sum(r.faces for r in rows)} faces de-identified; "
            f"{faceless} files with frames where no face was found")


__all__ = ["STATUSES", "WRITTEN", "BatchRow", "BatchRows", "new_run_id", "read_summary", "summarise",
           "write_summary"]
