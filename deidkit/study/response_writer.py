"""Writing participants' answers so that nothing already answered can be lost.

Every event line goes out with a single ``write`` on a file opened in append mode, then ``fsync``-ed before
the form moves on, so a killed kernel or a closed browser loses nothing already answered. While a participant's
form is open, their lock (``responses/.locks/<participant>.lock``, an OS file lock that is released when the
process dies) keeps a second live form of the same participant out. The file format is described in
:mod:`deidkit.study.responses`, which reads and checks it.
"""

from __future__ import annotations

import json
import os
import socket
import weakref
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from deidkit.study.participants import LOCK_DIR, participant_file


class ParticipantLocked(RuntimeError):
    """Another live session of the same participant holds the lock."""


def now_utc() -> str:
    """The current time as an ISO 8601 UTC timestamp with milliseconds, as written in every event line."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _fsync_dir(path: Path) -> None:
    # A new file's directory entry must reach the disk too, or a crash can lose the whole file.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class _FileLock:
    """An exclusive, non-blocking OS lock on a file; the OS drops it when the holding process dies, so a
    killed kernel never leaves a participant locked out."""

    def __init__(self, path: Path, participant: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            self._lock()
        except OSError:
            holder = ""
            try:
                holder = path.read_text().strip()
            except OSError:
                pass
            os.close(self.fd)
            raise ParticipantLocked(
                f"participant {participant!r} already has a live session ({holder or 'unknown holder'}; lock "
                f"{path}). Close the other browser tab or notebook first; the lock is released when that "
                "session finishes or its kernel stops."
            ) from None
        os.ftruncate(self.fd, 0)
        os.write(self.fd, f"pid {os.getpid()} on {socket.gethostname()} since {now_utc()}\n".encode())

    def _lock(self) -> None:
        try:
            import fcntl
        except ImportError:  # Windows
            import msvcrt

            msvcrt.locking(self.fd, msvcrt.LK_NBLCK, 1)
        else:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def release(self) -> None:
        # The lock file is left in place: unlinking it could let two sessions lock two different inodes.
        if self.fd >= 0:
            os.close(self.fd)  # closing the descriptor releases the lock
            self.fd = -1


_OPEN_WRITERS: dict[str, weakref.ref[ResponseWriter]] = {}


class ResponseWriter:
    """Appends one participant's event lines, each flushed and fsync-ed before :meth:`append` returns.

    In the same process, opening a participant that is already open closes the older writer (a re-run
    notebook cell replaces its form) when ``takeover`` is true, else raises :class:`ParticipantLocked`;
    another process holding the participant always gets :class:`ParticipantLocked`.
    """

    def __init__(self, responses_dir: str | os.PathLike, participant: str, takeover: bool = True) -> None:
        self.participant = participant
        self.dir = Path(responses_dir)
        self.path = participant_file(self.dir, participant)
        self.closed = False
        self.close_reason = ""
        self._fd = -1
        self._lock: _FileLock | None = None
        new_dir = not self.dir.exists()
        self.dir.mkdir(parents=True, exist_ok=True)
        if new_dir:
            _fsync_dir(self.dir.parent)
        key = str(self.path.resolve())
        old = _OPEN_WRITERS.get(key)
        old = old() if old else None
        if old is not None and not old.closed:
            if not takeover:
                raise ParticipantLocked(f"participant {participant!r} is already open in this process ({self.path})")
            old.close("replaced by a newer session of the same participant in this kernel")
        self._lock = _FileLock(self.dir / LOCK_DIR / f"{participant}.lock", participant)
        created = not self.path.exists()
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            if created:
                _fsync_dir(self.dir)
            elif not self._ends_with_newline():
                # A line cut short by a crash must stay a separate (reported) line, not glue onto the next one.
                self._write(b"\n")
        except BaseException:
            self.close()
            raise
        _OPEN_WRITERS[key] = weakref.ref(self)

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() == 0:
                return True
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        os.fsync(self._fd)

    def append(self, record: dict[str, Any]) -> None:
        """Write ``record`` as one JSON line and make it durable; raise ``OSError`` if that fails."""
        if self.closed:
            raise OSError(f"{self.path}: session closed ({self.close_reason or 'closed'}); answer not saved")
        line = json.dumps(record, ensure_ascii=False, allow_nan=False, separators=(",", ":")) + "\n"
        self._write(line.encode("utf-8"))

    def close(self, reason: str = "") -> None:
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._lock is not None:
            self._lock.release()

    def __enter__(self) -> ResponseWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
