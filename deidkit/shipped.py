"""The weights shipped inside the package (``deidkit/weights``): their manifest and checksum-verified reading.

Storage only, as :mod:`deidkit.assets` is for the files under ``shared/``: what the manifest lists, which old names
are refused, and the float32 state of a shipped file once its sha256 matches. Building de-identifiers from these
states is :mod:`deidkit.pretrained`'s; this module sits in the data layer so that the run reader
(:mod:`deidkit.checkpoints`) and the models' own loaders can read shipped weights without importing it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

WEIGHTS_DIR = Path(__file__).parent / "weights"
MANIFEST = "manifest.json"
#: Shipped names that now mean another model, and the name the same weights ship under: loading the old name is
#: refused with a pointer, never resolved to something else (2026-12-07: the natural-looking FaDeNet became ``fadenet``;
#: the defended live generator, with a detail stage, became ``live``).
RENAMED: dict[str, str] = {"fadenet_subspace": "fadenet", "live_defended": "live"}
#: Shipped names whose models left the package: (recipe in :mod:`deidkit.configs.experiments`, the commit whose
#: ``deidkit/weights`` last changed their file). Loading one is refused with a pointer to both, never resolved to a run
#: of that recipe in the cache (2026-12-07: two FaDeNets that hide identity mostly with bands over the eyes, which no
#: user would pick over ``fadenet``).
RETIRED: dict[str, tuple[str, str]] = {"fadenet_refine": ("refine", "78f3e67"), "fadenet_luma": ("luma", "d08ab4e")}
#: Why the models of :data:`RETIRED` left, in their pointer.
RETIRED_REASON = "its outputs carry bands over the eyes; 'fadenet' changes the face instead"


class PretrainedError(ValueError):
    """A shipped model is missing, corrupt or does not match its manifest."""


def sha256_of(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_manifest(weights_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """The manifest of shipped models (``{"models": {name: entry}}``); empty when none is shipped."""
    path = Path(weights_dir or WEIGHTS_DIR) / MANIFEST
    if not path.is_file():
        return {"models": {}}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise PretrainedError(f"{path}: not valid JSON ({exc})") from None


def shipped_models(weights_dir: str | os.PathLike | None = None) -> list[str]:
    return sorted(read_manifest(weights_dir)["models"])


def retired_message(name: str) -> str:
    """One line for a retired model's name: that it left the package, why, and the two ways to get it back."""
    recipe, commit = RETIRED[name]
    return (f"{name!r} left the package on 2026-12-07 ({RETIRED_REASON}); to reproduce it, train the recipe "
            f"{recipe!r} of deidkit/configs/experiments.py after the runs its init_from names (deidkit train fadenet "
            f"--profile {recipe}) or check out commit {commit}, which ships deidkit/weights/{name}.pt")


def check_not_retired(name: str) -> None:
    """Refuse the name of a model that left the package, alone or with inference options (``fadenet_refine_f0.2``),
    with :func:`retired_message` (never read it as a run of its recipe in the cache, which may be another snapshot)."""
    for retired in RETIRED:
        if name == retired or name.startswith(f"{retired}_"):
            raise ValueError(retired_message(retired))


def check_not_renamed(name: str) -> None:
    """Refuse an old shipped name with a pointer: to the name its weights ship under, or (a retired model) to its
    recipe and last commit (never read it as another model)."""
    check_not_retired(name)
    if name in RENAMED:
        raise ValueError(f"{name!r} is no longer a shipped name: its weights ship as {RENAMED[name]!r} "
                         f"(docs/models/{RENAMED[name]}.md)")


def load_state(name: str, weights_dir: str | os.PathLike | None = None) -> tuple[dict[str, Any], dict]:
    """(manifest entry, float32 state dict) of a shipped model, checksum verified."""
    weights_dir = Path(weights_dir or WEIGHTS_DIR)
    models = read_manifest(weights_dir)["models"]
    if name not in models:
        check_not_retired(name)  # a retired name gets its pointer, not only the list of what ships
        raise PretrainedError(f"{weights_dir / MANIFEST}: no shipped model {name!r} (shipped: {sorted(models)})")
    entry = models[name]
    return entry, verified_state(weights_dir / entry["file"], entry["sha256"])


def verified_state(path: Path, sha256: str) -> dict[str, torch.Tensor]:
    """The float32 state dict in a shipped file, after checking it exists and matches its manifest checksum."""
    import torch  # here: reading the manifest (the CLI's help, the list of names) needs no torch

    if not path.is_file():
        raise PretrainedError(f"{path}: shipped weights missing (reinstall deidkit)")
    digest = sha256_of(path)
    if digest != sha256:
        raise PretrainedError(f"{path}: sha256 {digest[:12]}... does not match the manifest's {sha256[:12]}...")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt files
        raise PretrainedError(f"{path}: cannot load ({exc})") from exc
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def manifest_config(cls: type, raw: dict[str, Any]) -> Any:
    """The configuration dataclass ``cls`` of a manifest record (fields the kit no longer has are left out, lists
    become tuples)."""
    known = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in raw.items() if k in known})


def check_kind(name: str, entry: dict[str, Any], kind: str) -> None:
    """Refuse to build a shipped model as a network of another kind than its manifest entry says."""
    if entry.get("kind") != kind:
        raise PretrainedError(f"{name}: the manifest ships it as a {entry.get('kind')!r} model, not {kind!r}")
