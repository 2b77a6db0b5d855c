"""What the kit keeps in its cache (``$DEIDKIT_CACHE`` or ``~/.cache/deidkit``), and clearing it.

Sections: ``aligned`` (canonical LFW crops), ``embeddings`` (recogniser embeddings keyed by content or path),
``image_level`` (naive baselines' whole-photo outputs), ``runs`` (trained models: never cleared unless named),
``videos``, and small files at the top (thresholds). Everything except ``runs`` is recomputed when missing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from deidkit.assets import cache_dir

#: sections ``clear`` removes when asked for ``all``; ``runs`` holds trained models and must be named
DERIVED = ("aligned", "embeddings", "image_level", "videos", "audit_thresholds.json")


def _size(path: Path) -> tuple[int, int]:
    if path.is_file():
        return path.stat().st_size, 1
    files = [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), len(files)


def cache_info(root: Path | None = None) -> list[dict]:
    """One row per section (and per embedding file): path, bytes, files."""
    root = root or cache_dir()
    rows = []
    for entry in sorted(root.iterdir()):
        size, n = _size(entry)
        rows.append({"section": entry.name, "bytes": size, "files": n, "path": str(entry)})
        if entry.name == "embeddings" and entry.is_dir():
            for f in sorted(entry.glob("*.npz")):
                rows.append({"section": f"  {f.stem}", "bytes": f.stat().st_size, "files": 1, "path": str(f)})
    return rows


def clear_cache(sections: list[str], root: Path | None = None) -> list[Path]:
    """Remove the named sections (``all`` = every derived section, not ``runs``); returns what was removed."""
    root = root or cache_dir()
    names = list(DERIVED) if "all" in sections else sections
    unknown = [s for s in names if s not in (*DERIVED, "runs")]
    if unknown:
        raise ValueError(f"unknown cache section(s) {unknown}; choose from {[*DERIVED, 'runs', 'all']}")
    removed = []
    for name in names:
        path = root / name
        if path.exists():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
            removed.append(path)
    return removed


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"
