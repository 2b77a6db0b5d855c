"""A live model by name: the shipped ones (the manifest's generator with its detail stages and inference options,
checksums verified), the runs in the cache (``live_<profile>``, ``live-<run>[@stage<k>]``) and either with a
trained detail stage (``<live model>+detail-<run>``). The network and its inference are
:mod:`deidkit.deidentifiers.live`."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deidkit.assets import cache_dir
from deidkit.baselines import valid_choices
from deidkit.configs import LiveConfig
from deidkit.deidentifiers.live import (
    LiveDeidentifier,
    build_features,
    build_generator,
    load_live_deidentifier,
    with_detail_stage,
)
from deidkit.shipped import (
    WEIGHTS_DIR,
    check_kind,
    check_not_renamed,
    load_state,
    manifest_config,
    shipped_models,
    verified_state,
)

#: ``live-<run>[@stage<k>][+lock<fraction>][_s<strength>]``: a run folder's generator and its inference options.
LIVE_RUN_NAME = re.compile(r"(live-[\w.-]+?)(?:@stage([0-3]))?(?:\+lock([\d.]+))?(?:_s([\d.]+))?")


def live_deidentifier_by_name(name: str, profile: str = "quick", run_dir: str | os.PathLike | None = None,
                              device: str = "cpu") -> LiveDeidentifier:
    """``live`` (the given profile), ``live_<profile>``, ``live_<profile>_stage<k>``; ``_s<strength>`` may end
    any of them (e.g. ``live_quick_s0.5``). ``live-<run>`` names a run folder in the cache (e.g. a fine-tuning
    run, ``live-standard-ft25``), ``live-<run>@stage<k>`` one of its stage generators (``_s<strength>`` may end them
    too), and ``+lock<fraction>`` before that a landmark lock (``live-finetune@stage0+lock0.6``)."""

    with_detail = re.fullmatch(r"(live[\w.@+-]*?)\+(detail-[\w.-]+)", name)
    if with_detail is not None:  # <live model>+detail-<run>: that model with the detail stage of a trained run
        deid = _live_model_by_name(with_detail.group(1)) if run_dir is None else live_deidentifier_by_name(
            with_detail.group(1), profile, run_dir, device)
        return with_detail_stage(deid, cache_dir() / "runs" / with_detail.group(2), name=name)
    run = LIVE_RUN_NAME.fullmatch(name)
    if run is not None and run_dir is None:
        deid = load_live_deidentifier(cache_dir() / "runs" / run.group(1), stage=None if run.group(2) is None
                                      else int(run.group(2)), device=device, name=name.rsplit("_s", 1)[0]
                                      if run.group(4) else name)
        deid.landmark_lock = 0.0 if run.group(3) is None else float(run.group(3))
        deid.strength = 1.0 if run.group(4) is None else float(run.group(4))
        return deid
    m = re.fullmatch(r"live(?:_(tiny|quick|standard|paper))?(?:_stage([0-3]))?(?:_s([\d.]+))?", name)
    if m is None:
        raise ValueError(f"unknown live model {name!r}; use live, live_<tiny|quick|standard|paper>[_stage<0-3>][_s<strength>]")
    return load_live_deidentifier(run_dir, profile=m.group(1) or profile,
                                  stage=None if m.group(2) is None else int(m.group(2)),
                                  strength=1.0 if m.group(3) is None else float(m.group(3)), device=device)


def _live_model_by_name(name: str) -> LiveDeidentifier:
    """What :func:`deidkit.deidentifiers.load_deidentifier` gives for a live model's name (that registry sits above
    this module): the shipped model of that name, else a model trained in the cache (bare names: the ``quick``
    profile's); an old shipped name is refused, and an unknown one lists every valid choice."""
    if name in shipped_models():
        return load_shipped_live(name)
    check_not_renamed(name)
    try:
        return live_deidentifier_by_name(name, "quick")
    except ValueError as exc:
        if str(exc).startswith("unknown"):
            raise ValueError(f"{exc}; valid choices: {valid_choices()}") from None
        raise


def load_detail(entry: dict[str, Any], weights_dir: str | os.PathLike | None = None) -> nn.Module:
    """The detail stage a shipped live model names (``entry``: its manifest's ``detail`` part: file, sha256,
    config; or a list of such parts, the stages applied in order, e.g. 64 -> 128 -> 256 px), checksum verified."""
    from deidkit.configs import DetailConfig

    if isinstance(entry, list):
        return nn.Sequential(*[load_detail(e, weights_dir) for e in entry])
    from deidkit.models.detail import DetailNet

    state = verified_state(Path(weights_dir or WEIGHTS_DIR) / entry["file"], entry["sha256"])
    cfg = manifest_config(DetailConfig, entry["config"])
    net = DetailNet(cfg.channels, cfg.blocks, cfg.upsample, cfg.input_filter)
    net.load_state_dict(state)
    return net


def live_from_manifest(name: str, entry: dict[str, Any], state: dict[str, torch.Tensor],
                       device: torch.device | str = "cpu", weights_dir: str | os.PathLike | None = None
                       ) -> LiveDeidentifier:
    """A shipped live model from its manifest ``entry`` and checksum-verified generator ``state``
    (:func:`deidkit.shipped.load_state`), with its detail stage and the inference options its manifest records."""
    check_kind(name, entry, "live")
    cfg = manifest_config(LiveConfig, entry["config"])
    feats = build_features(cfg)
    gen = build_generator(cfg, cond_dim=int(entry.get("cond_dim", 128)))
    gen.load_state_dict(state)
    # inference options chosen after training (e.g. the landmark lock, see deidkit.eval.selection)
    options = entry.get("inference", {})
    detail = load_detail(entry["detail"], weights_dir) if "detail" in entry else None
    return LiveDeidentifier(gen, feats, cfg.crop_fraction, name=name, device=device, **options,
                            base_strength=options.get("strength", 1.0), detail=detail)


def load_shipped_live(name: str, device: torch.device | str = "cpu") -> LiveDeidentifier:
    """The shipped live model ``name`` (what :func:`deidkit.pretrained.load_pretrained` gives for it; that module
    builds every kind, so it sits above this one)."""
    entry, state = load_state(name)
    return live_from_manifest(name, entry, state, device)
