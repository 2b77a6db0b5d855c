"""What produced a record: the weights of the de-identifier and of the recogniser, and the kit's commit.

Every ``frontier``, ``realism`` and ``attack`` record carries ``"weights_sha256"`` (the de-identifier's weights,
:func:`deidentifier_weights`) and ``"commit"`` (:func:`git_commit`), so that a record of a replaced model is
never read as one of the current model. The recogniser's weights hash (:func:`recognizer_weights_sha256`) is part
of every embedding cache key (:func:`deidkit.eval.embeddings.recognizer_key`).
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: The inference options a model's name may end with (``fadenet_s0.9``, ``fadenet_f0.03_cm_dc1.5``): the same
#: weights as the name without them.
_OPTION_SUFFIX = re.compile(r"(?:_(?:f|s|dc)[0-9]*\.?[0-9]+|_cm)+$")


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file, computed once per (path, size, modification time): weights files are read in full."""
    p = Path(path).resolve()
    st = p.stat()
    return _file_sha256(str(p), st.st_size, st.st_mtime_ns, st.st_ino)


@functools.lru_cache(maxsize=256)
def _file_sha256(path: str, size: int, mtime_ns: int, inode: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@functools.cache
def git_commit() -> str | None:
    """The kit's git commit (``HEAD``), or None outside a git checkout (an installed package)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10,
                             cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if re.fullmatch(r"[0-9a-f]{40,64}", commit) else None


# ------------------------------------------------------------------------------------------------ recognisers


def recognizer_weights_sha256(recognizer: Any) -> str | None:
    """sha256 of what a recogniser's output depends on besides its code: its ``weights_sha256`` attribute when it
    has one, else its weights file (``weights_path``: the MobileFaceNets), else for dlib the sha256 of its two
    model files' digests (the ResNet and the 5-point shape predictor). None when unknown (e.g. a critic, whose
    name already carries its checkpoint's hash)."""
    given = getattr(recognizer, "weights_sha256", None)
    if isinstance(given, str) and given:
        return given
    path = getattr(recognizer, "weights_path", None)
    if path is not None and Path(path).is_file():
        return file_sha256(path)
    if getattr(recognizer, "name", None) == "dlib" and hasattr(recognizer, "shape_predictor"):
        from deidkit.recognizers import DLIB_RESNET, dlib_models_dir

        files = [dlib_models_dir() / DLIB_RESNET, dlib_models_dir() / "shape_predictor_5_face_landmarks.dat"]
        if all(f.is_file() for f in files):
            return hashlib.sha256("+".join(file_sha256(f) for f in files).encode()).hexdigest()
    return None


# ------------------------------------------------------------------------------------------- de-identifiers


def is_naive(deidentifier: Any) -> bool:
    """The original and the naive baselines: deterministic functions of the pixels, without weights."""
    from deidkit.eval.naive import family_of

    name = str(getattr(deidentifier, "name", ""))
    return name in ("original", "identity") or family_of(name) is not None or (
        type(deidentifier).__module__ == "deidkit.baselines")


def shipped_entry(name: str) -> dict | None:
    """The manifest entry (``deidkit/weights/manifest.json``) of the shipped model a de-identifier's name stands
    for (inference options in the name ignored), or None."""
    from deidkit.pretrained import read_manifest

    if "+" in name:  # a shipped model with another stage attached is not the shipped model
        return None
    models = read_manifest().get("models", {})
    for cand in (name, _OPTION_SUFFIX.sub("", name)):
        if cand in models:
            return models[cand]
    return None


def _run_checkpoint(deidentifier: Any) -> Path | None:
    """The file a run-folder de-identifier's weights were read from: an epoch snapshot (``<run>@epoch<NNN>``) or
    the run's checkpoint."""
    from deidkit.checkpoints import CHECKPOINT_NAME

    run_dir = getattr(deidentifier, "run_dir", None)
    if run_dir is None:
        return None
    name = str(getattr(deidentifier, "name", ""))
    if "@" in name:
        snap = _OPTION_SUFFIX.sub("", name.split("@", 1)[1])
        path = Path(run_dir) / "epochs" / f"{snap}.pt"
        return path if path.is_file() else None
    path = Path(run_dir) / CHECKPOINT_NAME
    return path if path.is_file() else None


def _tensor_digest(deidentifier: Any) -> str | None:
    """sha256 of the weights a de-identifier holds in memory (every network attribute's state dict, by attribute
    name): the weights' identity when no file is known to have given them."""
    import torch

    modules = {k: v for k, v in sorted(vars(deidentifier).items()) if isinstance(v, torch.nn.Module)}
    if not modules:
        return None
    h = hashlib.sha256()
    for attr, module in modules.items():
        for key, t in module.state_dict().items():
            t = t.detach().cpu().contiguous().reshape(-1)
            h.update(f"{attr}.{key} {tuple(t.shape)} {t.dtype};".encode())
            h.update(memoryview(t.view(torch.uint8).numpy()).cast("B"))
    return h.hexdigest()


def deidentifier_weights(deidentifier: Any) -> tuple[str | None, str | None]:
    """(sha256, where it comes from) of a de-identifier's weights:

    - ``"attribute"``: its own ``weights_sha256``, when a loader set one;
    - ``(None, None)``: the original and the naive baselines (no weights);
    - ``"manifest"``: a shipped model, the sha256 its manifest entry records (the file the kit verifies on load);
    - ``"checkpoint"``: a run folder's de-identifier, the sha256 of the checkpoint (or epoch snapshot) file;
    - ``"tensors"``: otherwise the sha256 of the weights it holds in memory (e.g. a live run, whose loader does not
      say which file it read); ``(None, None)`` for one without networks.
    """
    given = getattr(deidentifier, "weights_sha256", None)
    if isinstance(given, str) and given:
        return given, "attribute"
    if is_naive(deidentifier):
        return None, None
    ckpt = _run_checkpoint(deidentifier)
    if ckpt is not None:
        return file_sha256(ckpt), "checkpoint"
    if getattr(deidentifier, "run_dir", None) is None:
        entry = shipped_entry(str(getattr(deidentifier, "name", "")))
        if entry is not None and entry.get("sha256"):
            return str(entry["sha256"]), "manifest"
    digest = _tensor_digest(deidentifier)
    return (digest, "tensors") if digest else (None, None)


def provenance(deidentifier: Any) -> dict[str, str | None]:
    """The fields every record of ``deidentifier`` carries: ``weights_sha256`` (:func:`deidentifier_weights`;
    None for the naive baselines), ``weights_source`` and ``commit`` (:func:`git_commit`); plus ``detail_sha256``
    for a shipped model with a detail stage (its second weights file)."""
    sha, source = deidentifier_weights(deidentifier)
    out: dict[str, str | None] = {"weights_sha256": sha, "weights_source": source, "commit": git_commit()}
    if source == "manifest":
        detail = detail_checksums((shipped_entry(str(getattr(deidentifier, "name", ""))) or {}).get("detail"))
        if detail and getattr(deidentifier, "detail", None) is not None:
            out["detail_sha256"] = detail
    return out


def detail_checksums(detail: Any) -> str | None:
    """A shipped live model's detail stage checksum (its manifest's ``detail`` part: one stage, or a list of
    stages applied in order, whose checksums are joined by commas), or None."""
    stages = detail if isinstance(detail, list) else [detail]
    sums = [str(s["sha256"]) for s in stages if isinstance(s, Mapping) and s.get("sha256")]
    return ",".join(sums) if sums and len(sums) == len(stages) else None


def provenance_by_name(name: str) -> dict[str, str | None]:
    """:func:`provenance` when only a de-identifier's name is known (a table of results): None for the naive
    baselines and for names that are not shipped models (their weights cannot be known from a name)."""
    from deidkit.eval.naive import family_of

    sha, source = None, None
    if name not in ("original", "identity") and family_of(name) is None:
        entry = shipped_entry(name)
        if entry is not None and entry.get("sha256"):
            sha, source = str(entry["sha256"]), "manifest"
            if detail_checksums(entry.get("detail")):
                return {"weights_sha256": sha, "weights_source": source, "commit": git_commit(),
                        "detail_sha256": detail_checksums(entry.get("detail"))}
    return {"weights_sha256": sha, "weights_source": source, "commit": git_commit()}
