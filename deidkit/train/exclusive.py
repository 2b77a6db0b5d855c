"""One CPU training at a time: two trainings on the same cores each spin their own torch threads and run many
times slower than in turn (measured on 2 cores: 19 s a FaDeNet step instead of 0.5). ``deidkit train`` holds an
advisory lock for its lifetime and warns when another one holds it."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def training_lock(path: str | os.PathLike) -> Iterator[str | None]:
    """Hold the advisory lock at ``path`` while the block runs (released when the process ends, even killed).
    Yields None when this process holds it, else a one-line warning naming the training that does (this one then
    runs anyway, without the lock: the warning is for the user, not a refusal)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            yield (f"another deidkit training is running ({holder}); two on the same CPU cores each run many times "
                   f"slower: wait for it, or stop one")
            return
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
        try:
            yield None
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
