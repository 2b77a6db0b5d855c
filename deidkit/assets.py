"""Where data and weights live, and how they are verified.

Paths come from configuration, never from the repository: ``DEIDKIT_SHARED`` (a folder laid out like
``../shared``), ``DEIDKIT_DATA`` (an LFW folder), ``DEIDKIT_CACHE`` (aligned crops, embeddings, trained
models). Every asset has a published sha256 and a public origin for users who are online.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class AssetError(RuntimeError):
    """A data or weights file is missing or does not match its checksum."""


@dataclass(frozen=True)
class Asset:
    """A file the kit needs, with where it lies under ``shared/`` and where it comes from."""

    name: str
    relpath: str
    sha256: str
    origin: str

    def locate(self, path: str | os.PathLike | None = None, verify: bool = True) -> Path:
        """Return the file's path: ``path`` if given, else under the shared folder; verify its checksum."""
        candidates = [Path(path)] if path is not None else [d / self.relpath for d in shared_dirs()]
        for cand in candidates:
            if cand.is_file():
                if verify:
                    verify_sha256(cand, self.sha256)
                return cand
        looked = ", ".join(str(c) for c in candidates) or "(no shared folder configured)"
        raise AssetError(
            f"{self.name}: file not found. Looked in: {looked}. Set DEIDKIT_SHARED to a folder holding "
            f"'{self.relpath}', or pass its path explicitly. Public origin: {self.origin} (sha256 {self.sha256})."
        )


ASSETS: dict[str, Asset] = {
    a.name: a
    for a in [
        Asset(
            "mobilefacenet-ms1m",
            "weights/mobilefacenet-ms1m/mobilefacenet.pt",
            "90a00ba1d8b0b688af3deb731ed53dca582e6106805d1bc3cfdef55f570493f4",
            "https://github.com/foamliu/MobileFaceNet/raw/master/weights/mobilefacenet.pt",
        ),
        Asset(
            "mobilefacenet-casia",
            "weights/mobilefacenet-casia/068.ckpt",
            "e839247cdbdfc023fb7cadeaf53a4549d50c8fc24ad154c02e35920ea8910d99",
            "https://github.com/Xiaoccer/MobileFaceNet_Pytorch/raw/master/model/best/068.ckpt",
        ),
        Asset(
            "yunet",
            "weights/yunet/face_detection_yunet_2023mar.onnx",
            "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4",
            "https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/"
            "face_detection_yunet_2023mar.onnx",
        ),
        Asset(
            "lfw-pairs",
            "data/lfw/pairs.txt",
            "ea42330c62c92989f9d7c03237ed5d591365e89b3e649747777b70e692dc1592",
            "http://vis-www.cs.umass.edu/lfw/pairs.txt",
        ),
        Asset(
            "hamilton-clip",
            "data/videos/short_hamilton_clip.mp4",
            "0b5ff4c55a4cd69f79956f312681730881fe1e2a9e6146e75c31636dffcc7e28",
            "https://github.com/ageitgey/face_recognition/raw/master/examples/short_hamilton_clip.mp4",
        ),
    ]
}


def shared_dirs() -> list[Path]:
    """Folders laid out like ``shared/``: ``$DEIDKIT_SHARED`` first, then ``../shared`` beside the project."""
    dirs = []
    env = os.environ.get("DEIDKIT_SHARED")
    if env:
        dirs.append(Path(env).expanduser())
    default = PROJECT_ROOT.parent / "shared"
    if default not in dirs:
        dirs.append(default)
    return dirs


def cache_dir() -> Path:
    """The kit's cache (aligned crops, embeddings, trained models): ``$DEIDKIT_CACHE`` or ``~/.cache/deidkit``."""
    env = os.environ.get("DEIDKIT_CACHE")
    base = Path(env).expanduser() if env else Path.home() / ".cache" / "deidkit"
    base.mkdir(parents=True, exist_ok=True)
    return base


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify_sha256(path: str | os.PathLike, expected: str) -> None:
    """Raise :class:`AssetError` naming the file when its sha256 is not ``expected``."""
    actual = sha256_file(path)
    if actual != expected:
        raise AssetError(
            f"{path}: checksum mismatch (sha256 {actual}, expected {expected}). The file is corrupt, truncated "
            f"or a different version; replace it with the published one."
        )


def asset_path(name: str, path: str | os.PathLike | None = None, verify: bool = True) -> Path:
    """Path of a registered asset (see :data:`ASSETS`), checksum-verified."""
    try:
        asset = ASSETS[name]
    except KeyError:
        raise KeyError(f"unknown asset {name!r}; known: {sorted(ASSETS)}") from None
    return asset.locate(path, verify=verify)


class using_cache:  # noqa: N801 - used as a context manager, reads like a function
    """Point ``cache_dir()`` at ``path`` inside a ``with`` block (e.g. to time work on a cold cache)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = str(path)
        self._old: str | None = None

    def __enter__(self) -> Path:
        self._old = os.environ.get("DEIDKIT_CACHE")
        os.environ["DEIDKIT_CACHE"] = self.path
        return Path(self.path)

    def __exit__(self, *exc) -> None:
        if self._old is None:
            os.environ.pop("DEIDKIT_CACHE", None)
        else:
            os.environ["DEIDKIT_CACHE"] = self._old
