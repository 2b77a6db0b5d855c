"""Reading what training wrote: run folders, their checkpoints and JSON files.

Inference (``deidkit.deidentifiers``) and training (``deidkit.train``) both use these; nothing here trains.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deidkit.assets import cache_dir
from deidkit.shipped import load_state

CHECKPOINT_NAME = "checkpoint.pt"

CONFIG_NAME = "config.json"

CHECKPOINT_FORMAT = 1


def runs_dir() -> Path:
    """Where trained runs live: ``cache_dir()/runs``."""
    return cache_dir() / "runs"


def load_checkpoint(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Load ``run_dir/checkpoint.pt`` on the CPU with ``weights_only=True``; errors name the file."""
    path = Path(run_dir) / CHECKPOINT_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint (has this run been trained?)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt/unsafe files
        raise RuntimeError(f"{path}: cannot load checkpoint ({exc})") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise RuntimeError(f"{path}: not a deidkit training checkpoint (format {CHECKPOINT_FORMAT} expected)")
    return ckpt


def load_module_state(run_dir: str | os.PathLike, name: str, module: nn.Module) -> nn.Module:
    """Load the weights of the module saved as ``name`` in a run's checkpoint into ``module``."""
    ckpt = load_checkpoint(run_dir)
    if name not in ckpt["modules"]:
        raise KeyError(
            f"{Path(run_dir) / CHECKPOINT_NAME}: no module named {name!r}; it holds {sorted(ckpt['modules'])}"
        )
    module.load_state_dict(ckpt["modules"][name])
    return module


def write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=isinstance(obj, dict), default=str) + "\n")
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


#: In a run folder that started from a shipped model: which file that was (its manifest record at the time).
INIT_RECORD = "init_from.json"
_INIT_FIELDS = ("sha256", "run", "checkpoint", "training_time_s", "steps_trained", "fine_tuned_from", "exported")


def init_record(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The record :func:`init_state` kept of the shipped model a run started from (None: not kept)."""
    return read_json(Path(run_dir) / INIT_RECORD)


def init_state(init_from: str, key: str, run_dir: str | os.PathLike | None = None) -> dict[str, torch.Tensor]:
    """The network state a fine-tuning run starts from, in float32: ``pretrained:<name>`` (a model shipped in
    ``deidkit/weights``, checksum verified) or a snapshot file holding ``{key: state}`` (relative paths are inside
    the kit's cache, e.g. ``runs/fadenet-standard/epochs/epoch004.pt``).

    ``pretrained:<name>`` means whatever is shipped when the run starts, and a later release replaces it; so the
    run folder ``run_dir`` keeps that model's manifest record in :data:`INIT_RECORD` (written once: a resumed run
    keeps the record of what it started from), which is how the lineage of an exported model is traced."""
    if init_from.startswith("pretrained:"):
        entry, state = load_state(init_from.split(":", 1)[1])
        if run_dir is not None and not (Path(run_dir) / INIT_RECORD).is_file():
            Path(run_dir).mkdir(parents=True, exist_ok=True)
            write_json(Path(run_dir) / INIT_RECORD,
                       {"init_from": init_from, **{k: entry[k] for k in _INIT_FIELDS if k in entry}})
    else:
        path = Path(init_from).expanduser()
        path = path if path.is_absolute() else cache_dir() / path
        if not path.is_file():
            raise FileNotFoundError(f"{path}: init_from file not found")
        snap = torch.load(path, map_location="cpu", weights_only=True)
        if key not in snap:
            raise ValueError(f"{path}: not a snapshot of this model (no {key!r} entry)")
        state = snap[key]
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
