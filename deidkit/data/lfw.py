"""Labeled Faces in the Wild: where it is, its manifests and protocols, and its aligned crops (cached).

LFW is located, in order: an explicit path, ``$DEIDKIT_DATA``, ``<shared>/data/lfw`` (``$DEIDKIT_SHARED`` or
``../shared``), ``<cache>/lfw``, and finally the official ``lfw.tgz`` download (only when online and asked for).
"""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from deidkit.assets import PROJECT_ROOT, AssetError, cache_dir, sha256_file, shared_dirs
from deidkit.data.alignment import FaceAligner, pick_central
from deidkit.data.images import ImageError, load_image, save_image
from deidkit.data.templates import CANONICAL_ZOOM

MANIFEST_DIR = PROJECT_ROOT / "data_manifests"
LFW_TGZ_URLS = ("http://vis-www.cs.umass.edu/lfw/lfw.tgz",)
# md5 of lfw.tgz as published with torchvision's LFW loader; the per-file sha256 manifest is checked after extraction.
LFW_TGZ_MD5 = "a17d05bd522c52d84eca14327a23d494"
N_IMAGES = 13233
N_IDENTITIES = 5749


class DataNotFoundError(FileNotFoundError):
    """LFW (or another data set) could not be found; the message lists where the kit looked."""


def _is_lfw_root(path: Path) -> bool:
    return (path / "images").is_dir() and any((path / "images").iterdir())


def lfw_root(path: str | os.PathLike | None = None, download: bool = False) -> Path:
    """The LFW folder (holding ``images/<Name>/<Name>_<NNNN>.jpg`` and ``pairs.txt``)."""
    candidates: list[tuple[str, Path]] = []
    if path is not None:
        candidates.append(("explicit path", Path(path).expanduser()))
    if os.environ.get("DEIDKIT_DATA"):
        candidates.append(("$DEIDKIT_DATA", Path(os.environ["DEIDKIT_DATA"]).expanduser()))
    for d in shared_dirs():
        candidates.append(("shared folder", d / "data" / "lfw"))
    user_cache = cache_dir() / "lfw"
    candidates.append(("user cache", user_cache))
    for _, cand in candidates:
        if _is_lfw_root(cand):
            return cand
        # Also accept the folder that *is* the images folder (as unpacked from lfw.tgz: lfw/<Name>/...).
        if cand.is_dir() and cand.name != "images" and (cand / "Aaron_Eckhart").is_dir():
            return _adopt_plain_layout(cand)
    if download:
        return download_lfw(user_cache)
    looked = "\n".join(f"  - {why}: {c}" for why, c in candidates)
    raise DataNotFoundError(
        "LFW not found. Looked in:\n" + looked + "\nProvide it by setting DEIDKIT_DATA=/path/to/lfw (a folder with "
        "images/<Name>/*.jpg), DEIDKIT_SHARED=/path/to/shared, or run `deidkit data download` when online "
        f"(fetches {LFW_TGZ_URLS[0]}, checksum-verified)."
    )


def _adopt_plain_layout(folder: Path) -> Path:
    raise DataNotFoundError(
        f"{folder} looks like the unpacked lfw.tgz (identity folders at top level); the kit expects "
        f"<root>/images/<Name>/*.jpg. Move the identity folders into {folder}/images/ or point DEIDKIT_DATA at a "
        "folder laid out that way."
    )


def download_lfw(dest: Path) -> Path:
    """Fetch and unpack the official ``lfw.tgz`` into ``dest/images`` (online only), verifying the archive's md5."""
    import hashlib

    import requests

    dest.mkdir(parents=True, exist_ok=True)
    tgz = dest / "lfw.tgz"
    last_error: Exception | None = None
    for url in LFW_TGZ_URLS:
        try:
            with requests.get(url, stream=True, timeout=60) as r:
                r.raise_for_status()
                md5 = hashlib.md5()
                tmp = tgz.with_suffix(".part")
                with open(tmp, "wb") as f:
                    for block in tqdm(r.iter_content(1 << 20), desc="lfw.tgz", unit="MB"):
                        f.write(block)
                        md5.update(block)
            if md5.hexdigest() != LFW_TGZ_MD5:
                raise AssetError(f"{url}: md5 {md5.hexdigest()} != published {LFW_TGZ_MD5}")
            os.replace(tmp, tgz)
            break
        except Exception as exc:  # noqa: BLE001 - try the next mirror, report all at the end
            last_error = exc
    else:
        raise DataNotFoundError(f"could not download LFW ({last_error}); provide it with DEIDKIT_DATA instead")
    with tarfile.open(tgz) as tf:
        tf.extractall(dest, filter="data")
    (dest / "lfw").rename(dest / "images")
    return dest


# ----------------------------------------------------------------------------------------------- manifests

def manifest_path(name: str) -> Path:
    return MANIFEST_DIR / f"{name}.csv"


def load_manifest(name: str) -> pd.DataFrame:
    """A manifest from ``data_manifests/`` (``lfw_files``, ``lfw_57x8``, ``lfw_217x8``, ``lfw_train_pool``,
    ``lfw_all_identities``, ``lfw_pairs``). A training manifest (:data:`TRAINING_MANIFESTS`) is refused when it
    holds an identity of the test protocols (:func:`assert_no_test_identities`)."""
    p = manifest_path(name)
    if not p.is_file():
        known = sorted(q.stem for q in MANIFEST_DIR.glob("*.csv"))
        raise FileNotFoundError(f"{p}: no such manifest; known manifests: {known}. Build them with "
                                "`deidkit.data.protocols.build_lfw_manifests()` (notebook 00).")
    df = pd.read_csv(p, dtype={"sha256": str})
    if name in TRAINING_MANIFESTS:
        assert_no_test_identities(df["identity"], f"manifest {name}")
    return df


# ----------------------------------------------------------------------------------------------- leakage guard

#: The protocols models are judged on: no training or attack data may show one of their identities.
TEST_PROTOCOLS = ("lfw_57x8", "lfw_217x8")
#: Manifests that exist to be trained on; :func:`load_manifest` checks them every time it reads one.
TRAINING_MANIFESTS = ("lfw_train_pool",)

_test_identity_cache: dict[tuple, frozenset[str]] = {}


def held_out_identities() -> frozenset[str]:
    """Every identity of the test protocols (:data:`TEST_PROTOCOLS`), read from their manifests (kept in memory
    while the files are unchanged: the guard runs on every training read)."""
    paths = [manifest_path(name) for name in TEST_PROTOCOLS]
    missing = [p for p in paths if not p.is_file()]
    if missing:  # without them no leak can be ruled out: refuse rather than let training read anything
        raise FileNotFoundError(f"cannot check training data against the test protocols: {missing[0]} is missing")
    key = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in paths)
    if key not in _test_identity_cache:
        _test_identity_cache.clear()
        _test_identity_cache[key] = frozenset(
            str(i) for p in paths for i in pd.read_csv(p, usecols=["identity"])["identity"])
    return _test_identity_cache[key]


def assert_no_test_identities(identities: Iterable[str], what: str) -> None:
    """Raise ``ValueError`` when ``identities`` (any iterable of LFW names) holds an identity of a test protocol:
    ``what`` names the loader or data set in the message (e.g. ``"manifest lfw_train_pool"``). Training and
    attack data loaders call it at run time, so that a wrong manifest, pack or option cannot leak the test set into
    what is trained."""
    leaked = sorted(set(map(str, identities)) & held_out_identities())
    if leaked:
        shown = ", ".join(leaked[:10]) + (f" and {len(leaked) - 10} more" if len(leaked) > 10 else "")
        raise ValueError(f"{what} reads {len(leaked)} identit{'y' if len(leaked) == 1 else 'ies'} of the test "
                         f"protocols ({', '.join(TEST_PROTOCOLS)}): {shown}. Training and attack data must come "
                         "from identities disjoint from them (e.g. lfw_train_pool).")


def identity_of_path(path: str) -> str:
    """The identity of an LFW path (``images/<Name>/<Name>_<NNNN>.jpg`` -> ``<Name>``): its folder's name."""
    return Path(path).parent.name


def scan_lfw(root: Path | None = None) -> pd.DataFrame:
    """List every LFW image with its identity and sha256 (sorted by path)."""
    root = lfw_root(root)
    files = sorted((root / "images").glob("*/*.jpg"))
    if not files:
        raise DataNotFoundError(f"{root / 'images'}: no <Name>/*.jpg files")
    rows = [(f.relative_to(root).as_posix(), f.parent.name, sha256_file(f)) for f in tqdm(files, desc="sha256")]
    return pd.DataFrame(rows, columns=["path", "identity", "sha256"])


def verify_files(manifest: pd.DataFrame, root: Path | None = None, sample: int | None = None,
                 seed: int = 0) -> list[str]:
    """Check files against the manifest's sha256; return the problems (missing or changed files)."""
    root = lfw_root(root)
    rows = manifest if sample is None else manifest.sample(n=min(sample, len(manifest)), random_state=seed)
    problems = []
    for path, sha in zip(rows["path"], rows["sha256"]):
        f = root / path
        if not f.is_file():
            problems.append(f"{f}: missing")
        elif sha256_file(f) != sha:
            problems.append(f"{f}: sha256 differs from the manifest")
    return problems


# ----------------------------------------------------------------------------------------------- alignment cache

@dataclass(frozen=True)
class AlignmentKey:
    detector: str = "yunet"
    size: int = 224

    @property
    def tag(self) -> str:
        return f"{self.detector}-canonical{CANONICAL_ZOOM:g}-{self.size}"


def _cache_paths(sha: str, key: AlignmentKey) -> tuple[Path, Path]:
    d = cache_dir() / "aligned" / key.tag / sha[:2]
    return d / f"{sha}.png", d / f"{sha}.json"


def align_image_cached(path: Path, sha: str, aligner: FaceAligner, fallback: FaceAligner | None = None) -> dict:
    """Align one image, or read its result from the cache. Returns the record (``status`` is the detector that
    found the face, or ``"no_face"``)."""
    key = AlignmentKey(aligner.detector_name, aligner.size)
    png, meta = _cache_paths(sha, key)
    if meta.is_file():
        rec = json.loads(meta.read_text())
        if rec["status"] == "no_face" or png.is_file():
            return rec
    image = load_image(path)
    rec = {"sha256": sha, "status": "no_face", "detector": None, "score": None, "matrix": None, "landmarks": None}
    for al in (aligner, fallback):
        if al is None:
            continue
        dets = al.detect(image)
        if dets:
            face = al.align_detection(image, pick_central(dets, image.shape))
            save_image(png, face.crop)
            rec.update(status=al.detector_name, detector=al.detector_name, score=face.score,
                       matrix=face.matrix.tolist(), landmarks=face.landmarks.tolist(), n_faces=len(dets))
            break
    meta.parent.mkdir(parents=True, exist_ok=True)
    tmp = meta.with_name(meta.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(rec))
    os.replace(tmp, meta)
    return rec


def align_lfw(manifest: pd.DataFrame | None = None, detector: str = "yunet", size: int = 224,
              fallback_detector: str | None = "mtcnn", workers: int = 2, root: Path | None = None) -> pd.DataFrame:
    """Detect and align every image of ``manifest`` (default: all of LFW), caching crops on disk.

    The cache is keyed by image sha256, detector, template and size, so a second run reads it back. Images
    where the primary detector finds no face are tried with ``fallback_detector``; where neither finds one the
    image is recorded with ``status == "no_face"`` (never silently dropped).
    """
    root = lfw_root(root)
    manifest = load_manifest("lfw_files") if manifest is None else manifest
    aligner = FaceAligner(detector, size)
    fallback = None
    if fallback_detector and fallback_detector != detector:
        fallback = FaceAligner(fallback_detector, size)
    jobs = list(zip(manifest["path"], manifest["sha256"]))

    def one(job: tuple[str, str]) -> dict:
        p, sha = job
        try:
            rec = align_image_cached(root / p, sha, aligner, fallback)
        except ImageError as exc:
            rec = {"sha256": sha, "status": "unreadable", "error": str(exc)}
        return {"path": p, **rec}

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        recs = list(tqdm(pool.map(one, jobs), total=len(jobs), desc=f"align ({aligner.detector_name})"))
    return pd.DataFrame(recs)


def aligned_crops(paths: list[str] | pd.Series, size: int = 224, detector: str = "yunet",
                  root: Path | None = None, manifest: pd.DataFrame | None = None) -> np.ndarray:
    """Canonical crops (N, size, size, 3) uint8 for LFW ``paths`` (relative to the LFW root), from the cache,
    aligning what is missing. Raises ``ValueError`` listing the images without a face."""
    paths = list(paths)
    files = load_manifest("lfw_files") if manifest is None else manifest
    sha = dict(zip(files["path"], files["sha256"]))
    missing = [p for p in paths if p not in sha]
    if missing:
        raise KeyError(f"not in the LFW file manifest: {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    key = AlignmentKey(detector, size)
    todo = [p for p in paths if not _cache_paths(sha[p], key)[1].is_file()]
    if todo:
        sub = files[files["path"].isin(todo)]
        align_lfw(sub, detector=detector, size=size, root=root)
    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    noface = []
    for i, p in enumerate(paths):
        png, meta = _cache_paths(sha[p], key)
        if not png.is_file():
            noface.append(p)
            continue
        out[i] = load_image(png, min_side=1)
    if noface:
        raise ValueError(f"no face found in {len(noface)} image(s): {noface[:5]}; protocols exclude such images")
    return out


def alignment_record(path: str, size: int = 224, detector: str = "yunet",
                     manifest: pd.DataFrame | None = None) -> dict:
    """The cached alignment record (matrix image->crop, landmarks, detector, score) of an aligned LFW image."""
    files = load_manifest("lfw_files") if manifest is None else manifest
    sha = dict(zip(files["path"], files["sha256"]))[path]
    meta = _cache_paths(sha, AlignmentKey(detector, size))[1]
    if not meta.is_file():
        raise FileNotFoundError(f"{path}: not aligned yet (run align_lfw or aligned_crops first)")
    return json.loads(meta.read_text())
