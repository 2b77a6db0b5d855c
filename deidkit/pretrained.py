"""The kit's own trained de-identifiers, shipped inside the package (as facenet-pytorch ships MTCNN's weights).

``deidkit/weights/manifest.json`` lists each shipped model: its file (the generator only, fp16 state dict),
sha256, the training configuration, the commit it was trained at, the training time and the headline metrics
of its evaluation. :func:`load_pretrained` verifies the checksum, loads with ``weights_only=True`` and returns
a kit de-identifier; ``load_deidentifier("live")`` / ``("fadenet")`` and ``deidkit image|video --method
live|fadenet`` go through it. :func:`export_pretrained` writes a trained run into that folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import torch

# the manifest and checksum-verified reading sit in the data layer (the run reader needs them too); kept importable
# from here, where the notebooks, scripts and tests import them
from deidkit.shipped import (
    MANIFEST,
    RENAMED,
    RETIRED,
    WEIGHTS_DIR,
    PretrainedError,
    load_state,
    read_manifest,
    sha256_of,
    shipped_models,
)

#: Shipped models and the kind of network each one is.
KINDS = ("live", "fadenet")
MAX_BYTES = 25 * 1024 * 1024


def load_pretrained(name: str, device: str = "cpu", weights_dir: str | os.PathLike | None = None) -> Any:
    """A shipped model as a kit de-identifier: ``"live"`` or ``"fadenet"``."""
    entry, state = load_state(name, weights_dir)
    kind = entry["kind"]
    if kind == "live":
        from deidkit.deidentifiers.live_names import live_from_manifest

        return live_from_manifest(name, entry, state, device, weights_dir)
    if kind == "fadenet":
        from deidkit.deidentifiers.fadenet import fadenet_from_manifest

        return fadenet_from_manifest(name, entry, state, device)
    raise PretrainedError(f"{name}: unknown kind {kind!r} in the manifest")


def export_detail(name: str, state_dict: dict[str, torch.Tensor], config: dict[str, Any], run: str,
                  weights_dir: str | os.PathLike | None = None, steps: int = 0, training_time_s: float = 0.0,
                  append: bool = False) -> Path:
    """Ship a trained detail stage with the shipped live model ``name`` (float32): the model's manifest entry gains
    a ``detail`` part (file, sha256, config, run, commit). ``append``: the stage follows the model's shipped
    stages (it enlarges their output; the ``detail`` part becomes the list of stages, ``<name>_detail<k>.pt``);
    otherwise it replaces them (``<name>_detail.pt``)."""
    weights_dir = Path(weights_dir or WEIGHTS_DIR)
    manifest = read_manifest(weights_dir)
    entry = manifest["models"].get(name, {})
    if entry.get("kind") != "live":
        raise PretrainedError(f"{weights_dir / MANIFEST}: no shipped live model {name!r}")
    stages = [] if not append else entry.get("detail", [])
    stages = stages if isinstance(stages, list) else [stages]
    side = int(entry["config"]["size"]) * 2 ** len(stages)  # the side the new stage must enlarge
    if int(config.get("size", side)) != side:
        raise PretrainedError(f"{run}: the stage enlarges {config.get('size')}-px faces, {name}'s "
                              f"{'stages draw' if stages else 'generator draws'} {side}")
    path = weights_dir / (f"{name}_detail{len(stages) + 1}.pt" if stages else f"{name}_detail.pt")
    tmp = path.with_suffix(".tmp")
    torch.save({k: v.detach().float() for k, v in state_dict.items()}, tmp)  # float32: bit-exact, under 1 MB
    os.replace(tmp, path)
    part = {"file": path.name, "sha256": sha256_of(path), "bytes": path.stat().st_size, "dtype": "float32",
            "config": config, "run": run, "commit": _git_commit(), "steps_trained": int(steps),
            "training_time_s": float(training_time_s),
            "exported": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    entry["detail"] = [*stages, part] if stages else part
    (weights_dir / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return path


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def export_pretrained(name: str, kind: str, state_dict: dict[str, torch.Tensor], config: dict[str, Any],
                      training_time_s: float, metrics: dict[str, Any] | None = None,
                      weights_dir: str | os.PathLike | None = None, extra: dict[str, Any] | None = None,
                      dtype: str = "float16") -> Path:
    """Write ``state_dict`` (a generator's) as ``dtype`` (fp16 by default: half the size; float32 where the
    rounding measurably moves results) into the weights folder and record it in the manifest."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if name in RENAMED:
        raise ValueError(f"{name!r} was renamed {RENAMED[name]!r}; ship under another name (an old name means one model)")
    if name in RETIRED:
        raise ValueError(f"{name!r} is a retired model's name; ship under another name (an old name means one model)")
    if dtype not in ("float16", "float32"):
        raise ValueError(f"dtype must be float16 or float32, got {dtype!r}")
    weights_dir = Path(weights_dir or WEIGHTS_DIR)
    weights_dir.mkdir(parents=True, exist_ok=True)
    path = weights_dir / f"{name}.pt"
    cast = getattr(torch, dtype)
    half = {k: v.detach().cpu().to(cast) if v.is_floating_point() else v.detach().cpu() for k, v in state_dict.items()}
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(half, tmp)
    if tmp.stat().st_size > MAX_BYTES:
        tmp.unlink()
        raise ValueError(f"{path}: {name} would be over 25 MB; ship a smaller generator")
    os.replace(tmp, path)
    manifest = read_manifest(weights_dir)
    manifest["models"][name] = {
        "kind": kind, "file": path.name, "sha256": sha256_of(path), "bytes": path.stat().st_size,
        "dtype": dtype, "config": config, "commit": _git_commit(), "training_time_s": float(training_time_s),
        "exported": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "metrics": metrics or {}, **(extra or {}),
    }
    (weights_dir / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return path


def retrained_name(name: str, weights_dir: str | os.PathLike | None = None) -> str:
    """The de-identifier name of the snapshot a shipped model was exported from, in a retrained cache: the run
    folder and, for a stage or epoch snapshot, ``@<snapshot>`` (e.g. ``live-finetune@stage0``), then the shipped
    inference options (``+lock0.6``: the landmark lock; ``_f0.03``, ``_s0.97``, ``_cm``, ``_dc1.5``: FaDeNet's feather,
    strength, colour match and detail cap), then a live model's detail stage (``+detail-<profile>``)."""
    entry = read_manifest(weights_dir)["models"].get(name)
    if entry is None:
        raise PretrainedError(f"no shipped model {name!r}")
    checkpoint = entry.get("checkpoint", "final")
    # the run folder `deidkit train <kind> --profile <profile>` writes (the shipped run may have had another name)
    profile = entry.get("config", {}).get("profile_name")
    run = f"{entry['kind']}-{profile}" if profile else entry["run"]
    name = run if checkpoint == "final" else f"{run}@{Path(checkpoint).stem}"
    lock = entry.get("inference", {}).get("landmark_lock")
    strength = entry.get("inference", {}).get("strength", 1.0)
    feather = entry.get("inference", {}).get("feather", 0.0)
    name = f"{name}+lock{lock:g}" if lock else name  # the live loader's order: lock, then strength
    name = f"{name}_f{feather:g}" if feather else name  # FaDeNet's feather and strength (its loader's suffixes)
    name = f"{name}_s{strength:g}" if strength != 1.0 else name
    name = f"{name}_cm" if entry.get("inference", {}).get("colour_match") else name  # FaDeNet's colour match
    cap = entry.get("inference", {}).get("detail_cap", 0.0)
    name = f"{name}_dc{cap:g}" if cap else name  # and its detail cap
    # a live model's detail stages: the run folders they were trained in (`deidkit train detail --run-dir`; by
    # default the stage's profile's)
    stages = entry.get("detail", [])
    for stage in stages if isinstance(stages, list) else [stages]:
        name += "+" + (stage.get("run") or f"detail-{stage.get('config', {}).get('profile_name')}")
    return name


def set_inference_options(name: str, options: dict[str, Any], weights_dir: str | os.PathLike | None = None
                          ) -> None:
    """Record the inference options a shipped model is loaded with (live ``{"landmark_lock": 0.6}``, FaDeNet
    ``{"strength": 0.9, "feather": 0.03}``); the file and its checksum are untouched. An empty dict removes them."""
    weights_dir = Path(weights_dir or WEIGHTS_DIR)
    manifest = read_manifest(weights_dir)
    if name not in manifest["models"]:
        raise PretrainedError(f"{weights_dir / MANIFEST}: no shipped model {name!r}")
    if options:
        manifest["models"][name]["inference"] = options
    else:
        manifest["models"][name].pop("inference", None)
    (weights_dir / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def update_metrics(name: str, metrics: dict[str, Any], weights_dir: str | os.PathLike | None = None) -> None:
    """Record headline metrics of a shipped model in the manifest (the file and its checksum are untouched)."""
    weights_dir = Path(weights_dir or WEIGHTS_DIR)
    manifest = read_manifest(weights_dir)
    if name not in manifest["models"]:
        raise PretrainedError(f"{weights_dir / MANIFEST}: no shipped model {name!r}")
    manifest["models"][name]["metrics"] = metrics
    (weights_dir / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


__all__ = ["KINDS", "MANIFEST", "MAX_BYTES", "RENAMED", "RETIRED", "WEIGHTS_DIR", "PretrainedError", "export_detail",
           "export_pretrained", "load_pretrained", "load_state", "read_manifest", "retrained_name",
           "set_inference_options", "sha256_of", "shipped_models", "update_metrics"]
