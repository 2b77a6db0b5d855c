"""What the kit keeps in its cache (``$DEIDKIT_CACHE`` or ``~/.cache/deidkit``), clearing it, and the keys of what
is cached by content: trained sweep models by their configuration's hash (here) and embeddings by the crop's pixels
(:class:`EmbeddingCache`, used by :mod:`deidkit.eval.embeddings`).

Sections: ``aligned`` (canonical LFW crops), ``embeddings`` (recogniser embeddings keyed by content or path),
``image_level`` (naive baselines' whole-photo outputs), ``outputs`` (which pixels a de-identifier gave a batch of
crops, as their content keys: :func:`output_keys`), ``quality`` (SSIM/PSNR/detection of a set of outputs,
keyed by the pixels of inputs and outputs: :func:`cached_quality`), ``runs`` (trained models: never cleared unless named),
``videos``, and small files at the top (thresholds). Everything except ``runs`` is recomputed when missing.
"""

from __future__ import annotations

import dataclasses
import fcntl
import functools
import hashlib
import json
import math
import os
import shutil
import types
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from deidkit.assets import cache_dir

#: sections ``clear`` removes when asked for ``all``; ``runs`` holds trained models and must be named
DERIVED = ("aligned", "embeddings", "image_level", "outputs", "quality", "videos", "audit_thresholds.json")


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


# ---------------------------------------------------------------------------------------- the run cache
# A model trained by a sweep is identified by its configuration: the stable JSON of the fields that decide the
# weights is hashed, and the model lives in ``runs/<model>-<hash>``.

#: Bump when the meaning of a cached sweep model changes (it is part of every hash).
CACHE_VERSION = 1

#: Configuration fields that say *where* or *on what hardware* a model is trained, not *what* is trained; a
#: model trained on a GPU is reused on a CPU, so they are left out of the hash.
NON_TRAINING_FIELDS = frozenset({"device", "threads", "run_name", "critic_run", "channels_last", "compile"})


def _plain(obj: Any) -> Any:
    """A JSON-ready copy: dataclasses to dicts, tuples to lists, numpy scalars to Python numbers."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        raise ValueError(f"configuration value {obj} is not finite")
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"configuration value of type {type(obj).__name__} cannot be hashed: {obj!r}")


def config_payload(config: Any, drop: Iterable[str] = NON_TRAINING_FIELDS) -> dict[str, Any]:
    """The part of a configuration (dataclass or dict) that decides the trained weights, as plain JSON data.

    Fields that are off (None, False, 0, empty) are left out: an option added to a configuration later is off by
    default, and a model trained before it existed is the same model, with the same hash."""
    plain = _plain(config)
    if not isinstance(plain, dict):
        raise TypeError(f"a configuration must be a dataclass or a dict, got {type(config).__name__}")
    drop = set(drop)
    return {k: v for k, v in plain.items() if k not in drop and v not in (None, False, 0, [], "")}


def stable_json(obj: Any) -> str:
    """Canonical JSON: sorted keys, no whitespace, floats by ``repr`` (so 0.1 and 0.10 are one value)."""
    return json.dumps(_plain(obj), sort_keys=True, separators=(",", ":"), allow_nan=False)


def config_hash(payload: Mapping[str, Any], length: int = 12) -> str:
    """Short sha256 of the stable JSON of ``payload`` (with :data:`CACHE_VERSION`)."""
    text = stable_json({"cache_version": CACHE_VERSION, "payload": payload})
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def runs_root() -> Path:
    """Where sweep models live: ``cache_dir()/runs`` (beside the critic and the notebooks' runs)."""
    return cache_dir() / "runs"


def run_dir_for(model: str, digest: str) -> Path:
    return runs_root() / f"{model}-{digest}"


def completed_epochs(run_dir: str | os.PathLike) -> int:
    """Epochs finished by the run in ``run_dir`` according to its checkpoint (0 when there is none)."""
    from deidkit.checkpoints import CHECKPOINT_NAME, load_checkpoint

    if not (Path(run_dir) / CHECKPOINT_NAME).is_file():
        return 0
    return int(load_checkpoint(run_dir)["epoch"])


# ---------------------------------------------------------------------------------- the embedding cache


class EmbeddingCache:
    """A sha256 -> embedding store for one recogniser and one alignment (``tag``)."""

    def __init__(self, recognizer_name: str, tag: str, root: Path | None = None) -> None:
        self.path = (root or cache_dir() / "embeddings") / f"{recognizer_name}--{tag}.npz"
        self._data: dict[str, np.ndarray] = {}
        if self.path.is_file():
            with np.load(self.path, allow_pickle=False) as z:
                self._data = dict(zip(z["sha256"].tolist(), z["emb"]))

    def __contains__(self, sha: str) -> bool:
        return sha in self._data

    def get(self, shas: list[str]) -> np.ndarray:
        return np.stack([self._data[s] for s in shas]).astype(np.float32)

    def put(self, shas: list[str], emb: np.ndarray) -> None:
        self._data.update(zip(shas, np.asarray(emb, dtype=np.float32)))

    def save(self) -> None:
        """Write atomically; under a file lock, entries another process saved meanwhile are merged in (so
        notebooks running at the same time do not drop each other's embeddings)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.path.is_file():
                with np.load(self.path, allow_pickle=False) as z:
                    for k, v in zip(z["sha256"].tolist(), z["emb"]):
                        self._data.setdefault(k, v)
            tmp = self.path.with_name(self.path.stem + f".tmp{os.getpid()}.npz")
            shas = sorted(self._data)
            np.savez(tmp, sha256=np.array(shas),
                     emb=np.stack([self._data[s] for s in shas]) if shas else np.zeros((0, 0)))
            os.replace(tmp, self.path)


# ------------------------------------------------------------------------------------ the quality cache


def content_digest(*arrays: np.ndarray, extra: str = "") -> str:
    """sha256 of arrays' shapes, types and pixels (and ``extra``): the key of something computed from them."""
    h = hashlib.sha256(extra.encode())
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.shape}{a.dtype}".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def cached_quality(key: str, compute: Any, root: Path | None = None) -> dict[str, float]:
    """The dict of numbers ``compute()`` returns, kept under ``key`` (a :func:`content_digest` of the inputs and
    outputs it measures, so that the same pixels are measured once: the naive baselines' SSIM, PSNR and detection
    rate are the same in every frontier run). Written atomically."""
    path = (root or cache_dir() / "quality") / f"{key}.json"
    if path.is_file():
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:  # a corrupt file (e.g. edited by hand): recompute
            pass
    # sorted as they come back from the file: a table built from them has the same columns cold and warm
    value = {k: float(v) for k, v in sorted(compute().items())}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(value, sort_keys=True))
    os.replace(tmp, path)
    return value


# ------------------------------------------------------------------- de-identified outputs, by their content keys


class _Unhashable(Exception):
    pass


@functools.cache
def source_digest(modules: frozenset[str] | None = None) -> str:
    """sha256 of the kit's Python source (``modules``: only these ``deidkit...`` modules and every kit module they
    import, :func:`kit_imports`): a change of that code invalidates what is memoised by :func:`output_keys`."""
    root = Path(__file__).resolve().parent
    files = sorted(root.rglob("*.py"))
    if modules is not None:
        wanted = kit_imports(modules)
        files = [f for f in files if _module_name(f, root) in wanted]
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(root)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def _module_name(path: Path, root: Path) -> str:
    parts = ("deidkit", *path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.lru_cache(maxsize=1)
def _import_graph() -> dict[str, frozenset[str]]:
    """Each kit module -> the kit modules its source imports anywhere (also inside functions), read statically."""
    import ast

    root = Path(__file__).resolve().parent
    names = {_module_name(f, root): f for f in root.rglob("*.py")}
    graph = {}
    for name, f in names.items():
        deps: set[str] = set()
        package = name if f.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(f.read_bytes())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the package up
                    up = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{up}.{base}" if base else up
                targets = [base, *(f"{base}.{a.name}" for a in node.names)]
            else:
                continue
            for t in targets:
                # a module and its parent packages (whose __init__ runs on import)
                while t:
                    if t in names:
                        deps.add(t)
                    t = t.rpartition(".")[0]
        graph[name] = frozenset(deps - {name})
    return graph


def kit_imports(modules: Iterable[str]) -> frozenset[str]:
    """``modules`` (kit modules, ``deidkit....``) and every kit module they import, directly or not."""
    graph = _import_graph()
    seen: set[str] = set()
    todo = [m for m in modules if m in graph]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(graph[m] - seen)
    return frozenset(seen)


def _feed(h: Any, obj: Any, depth: int = 0, modules: set[str] | None = None) -> None:
    """Fingerprint ``obj`` into ``h``; the kit modules whose code its classes and functions come from are added to
    ``modules``."""
    import torch

    if modules is None:
        modules = set()
    cls = obj if isinstance(obj, types.FunctionType) else type(obj)
    if getattr(cls, "__module__", "").startswith("deidkit"):
        modules.add(cls.__module__)
    if depth > 8:
        raise _Unhashable("nested too deep")
    if obj is None or isinstance(obj, (bool, int, float, str, bytes)):
        h.update(f"{type(obj).__name__}:{obj!r};".encode())
    elif isinstance(obj, torch.nn.Module):
        h.update(f"module {type(obj).__qualname__};".encode())
        for name, t in obj.state_dict().items():
            h.update(name.encode())
            _feed(h, t, depth + 1, modules)
    elif isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous().reshape(-1)
        h.update(f"tensor {tuple(obj.shape)} {t.dtype};".encode())
        h.update(memoryview(t.view(torch.uint8).numpy()).cast("B"))
    elif isinstance(obj, np.ndarray):
        a = np.ascontiguousarray(obj)
        h.update(f"array {a.shape} {a.dtype};".encode())
        h.update(memoryview(a).cast("B"))
    elif isinstance(obj, (torch.device, torch.dtype)):
        h.update(f"{obj};".encode())
    elif isinstance(obj, (list, tuple)):
        h.update(f"{type(obj).__name__}[{len(obj)}];".encode())
        for x in obj:
            _feed(h, x, depth + 1, modules)
    elif isinstance(obj, dict):
        h.update(f"dict[{len(obj)}];".encode())
        for k in sorted(obj, key=str):
            _feed(h, str(k), depth + 1, modules)
            _feed(h, obj[k], depth + 1, modules)
    elif isinstance(obj, types.FunctionType) and obj.__closure__ is None:  # its code is in the source digest
        h.update(f"function {obj.__module__}.{obj.__qualname__};".encode())
    elif hasattr(obj, "__dict__") and not isinstance(obj, (type, types.FunctionType, types.MethodType)):
        h.update(f"object {type(obj).__module__}.{type(obj).__qualname__};".encode())
        _feed(h, dict(vars(obj)), depth + 1, modules)
    else:
        raise _Unhashable(f"cannot fingerprint a {type(obj).__name__}")


def deidentifier_fingerprint(deidentifier: Any) -> str | None:
    """What decides a de-identifier's outputs: its class, every attribute (options, networks' weights, nested
    helpers) and the source of the kit modules their classes and functions come from, with every kit module those
    import (:func:`kit_imports`: a change elsewhere in the kit keeps its memoised outputs). None when something in
    it cannot be fingerprinted (then nothing of it is memoised)."""
    h, modules = hashlib.sha256(), set()
    try:
        _feed(h, deidentifier, modules=modules)
    except _Unhashable:
        return None
    h.update(source_digest(frozenset(modules)).encode())
    return h.hexdigest()


def output_keys(fingerprint: str | None, inputs_digest: str, compute: Any, root: Path | None = None) -> list[str]:
    """The content keys (:func:`deidkit.eval.embeddings.content_keys`) of the outputs a de-identifier (by its
    :func:`deidentifier_fingerprint`) gives one batch of inputs (by its :func:`content_digest`): read from the
    ``outputs`` section, or ``compute()`` (returning the keys) and written there atomically. A batch, not a crop,
    is the unit: an output may depend on its place in the batch (the noise baseline's seed does)."""
    if fingerprint is None:
        return list(compute())
    path = (root or cache_dir() / "outputs") / f"{hashlib.sha256(f'{fingerprint}|{inputs_digest}'.encode()).hexdigest()}.json"
    if path.is_file():
        try:
            return list(json.loads(path.read_text())["keys"])
        except (json.JSONDecodeError, KeyError, TypeError):  # corrupt: recompute
            pass
    keys = list(compute())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps({"keys": keys}))
    os.replace(tmp, path)
    return keys
