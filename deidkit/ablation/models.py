"""The models a sweep trains, plugged in through :class:`SweepModel` (FaDeNet, the live network; tests inject
small ones)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from deidkit.cache import completed_epochs, config_hash, config_payload, run_dir_for

MODELS = ("fadenet", "live")


class SweepModel(Protocol):
    """How the sweep builds, trains and loads one family of models. ``lam`` is the swept identity weight."""

    name: str

    def make_config(self, profile: str, lam: float, overrides: Mapping[str, Any]) -> Any: ...

    def payload(self, config: Any) -> dict[str, Any]: ...

    def epochs(self, config: Any) -> int: ...

    def train(self, config: Any, run_dir: Path, progress: bool) -> None: ...

    def load(self, config: Any, run_dir: Path) -> Any: ...


@dataclass
class FaDeNetPoint:
    """A FaDeNet sweep point: the model's configuration and, optionally, a seeded subset of the critic's
    training split to train on (``train_images``; None: all of it). The subset lets a CPU sweep train many
    models; it is part of the hash."""

    config: Any
    train_images: int | None = None

    @property
    def lam(self) -> float:
        return float(self.config.lam)


def subset_training_images(data: Any, n: int | None, seed: int) -> Any:
    """``data`` (a :class:`deidkit.train.critic.IdentityData`) with ``n`` training images drawn without replacement
    (seeded; the held-out split is kept whole). Labels keep indexing the critic's classes."""
    if n is None or n >= len(data.train_images):
        return data
    if n < 1:
        raise ValueError(f"train_images must be >= 1, got {n}")
    idx = np.sort(np.random.default_rng(seed).choice(len(data.train_images), n, replace=False))
    paths = [data.train_paths[i] for i in idx] if data.train_paths else []
    return dataclasses.replace(data, train_images=data.train_images[idx], train_labels=data.train_labels[idx],
                               train_paths=paths)


class FaDeNetSweep:
    """FaDeNet points: :class:`deidkit.train.fadenet.FaDeNetConfig` with ``lam`` set, trained by
    :func:`deidkit.train.fadenet.train_fadenet` against the configuration's critic (trained first if missing).
    The hash covers the critic's configuration too (a different critic is a different model). The override
    ``train_images`` (not a FaDeNet field) trains on a seeded subset of the critic's training split."""

    name = "fadenet"

    def make_config(self, profile: str, lam: float, overrides: Mapping[str, Any]) -> FaDeNetPoint:
        from deidkit.configs import FaDeNetConfig

        overrides = dict(overrides)
        n = overrides.pop("train_images", None)
        return FaDeNetPoint(FaDeNetConfig.profile(profile, **{**overrides, "lam": float(lam)}),
                            None if n is None else int(n))

    def payload(self, point: FaDeNetPoint) -> dict[str, Any]:
        return {"fadenet": config_payload(point.config), "critic": config_payload(point.config.critic_config()),
                "train_images": point.train_images}

    def epochs(self, point: FaDeNetPoint) -> int:
        return int(point.config.epochs)

    def train(self, point: FaDeNetPoint, run_dir: Path, progress: bool) -> None:
        from deidkit.train.critic import load_train_pool
        from deidkit.train.fadenet import ensure_critic, train_fadenet

        cfg = point.config
        if point.train_images is None:
            train_fadenet(cfg, run_dir=run_dir, progress=progress)
            return
        ccfg = cfg.critic_config()
        data = load_train_pool(ccfg.image_size, ccfg.max_identities, ccfg.seed)
        critic, identities, critic_dir = ensure_critic(ccfg, data, progress)
        if identities != data.identities:
            raise ValueError(f"{critic_dir}: the critic's identities differ from the training data's")
        train_fadenet(cfg, data=subset_training_images(data, point.train_images, cfg.seed), critic=critic,
                      run_dir=run_dir, progress=progress)

    def load(self, point: FaDeNetPoint, run_dir: Path) -> Any:
        from deidkit.deidentifiers.fadenet import FaDeNetDeidentifier

        return FaDeNetDeidentifier(run_dir)


class LiveSweep:
    """Live-model points: :class:`deidkit.train.live.LiveConfig` with ``lambda_max`` set (the weight of the
    repelling term at the last of the paper's four schedule steps; the earlier steps keep the paper's ratios).

    ``share_warmup``: the warm-up epochs of the live recipe train without the identity terms, so they are the same
    for every lambda. They are trained once, in ``runs/live-warmup-<hash>`` (the configuration with lambda 0,
    stopped after the warm-up), and each point starts from a copy of that checkpoint; the resumable loop makes
    the result the same as training the point from scratch (tested)."""

    name = "live"
    #: Files of a warm-up run that seed a point's run folder (weights, optimiser and RNG states, log, the cached
    #: target representations).
    SEED_FILES = ("checkpoint.pt", "log.csv", "targets.pt")

    def __init__(self, share_warmup: bool = True) -> None:
        self.share_warmup = share_warmup

    def make_config(self, profile: str, lam: float, overrides: Mapping[str, Any]) -> Any:
        from deidkit.configs import LiveConfig

        return LiveConfig.profile(profile, **{**overrides, "lambda_max": float(lam)})

    def payload(self, config: Any) -> dict[str, Any]:
        return {"live": config_payload(config)}

    def epochs(self, config: Any) -> int:
        return int(config.epochs)

    def warmup_dir(self, config: Any) -> Path:
        """Run folder of the shared warm-up: the configuration with lambda 0 (unused during the warm-up)."""
        warm = dataclasses.replace(config, lambda_max=0.0)
        return run_dir_for("live-warmup", config_hash({'live_warmup': config_payload(warm)}))

    def _train(self, config: Any, run_dir: Path, progress: bool, until_epoch: int | None = None) -> None:
        import torch

        from deidkit.train.live import train_live

        # The live trainer builds its networks from the global RNG; seed it so that a point's initial weights
        # depend on its configuration only.
        torch.manual_seed(config.seed)
        train_live(config, run_dir=run_dir, show_progress=progress, until_epoch=until_epoch)

    def train(self, config: Any, run_dir: Path, progress: bool) -> None:
        import shutil

        warmup = int(getattr(config, "warmup_epochs", 0) or 0)
        if self.share_warmup and warmup > 0 and completed_epochs(run_dir) == 0:
            wdir = self.warmup_dir(config)
            if completed_epochs(wdir) < warmup:
                self._train(dataclasses.replace(config, lambda_max=0.0), wdir, progress, until_epoch=warmup)
            if completed_epochs(wdir) != warmup:
                raise RuntimeError(f"{wdir}: the shared warm-up run holds {completed_epochs(wdir)} epochs, "
                                   f"expected {warmup}; delete the folder to redo it")
            run_dir.mkdir(parents=True, exist_ok=True)
            for name in self.SEED_FILES:
                if (wdir / name).is_file():
                    shutil.copy2(wdir / name, run_dir / name)
        self._train(config, run_dir, progress)

    def load(self, config: Any, run_dir: Path) -> Any:
        from deidkit.deidentifiers.live import load_live_deidentifier

        return load_live_deidentifier(run_dir)


def default_models() -> dict[str, SweepModel]:
    return {"fadenet": FaDeNetSweep(), "live": LiveSweep()}


class NamedDeidentifier:
    """A de-identifier under another name (each sweep point needs its own row name, e.g. ``fadenet_lam0.01``)."""

    def __init__(self, inner: Any, name: str) -> None:
        self.inner, self.name = inner, name

    def deidentify(self, batch: np.ndarray) -> np.ndarray:
        return self.inner.deidentify(batch)

    def __repr__(self) -> str:
        return f"NamedDeidentifier({self.name!r}, {self.inner!r})"


def point_name(model: str, lam: float) -> str:
    """Row name of a sweep point, e.g. ``fadenet_lam0.001`` (``plots.cmc_figure`` styles ``fadenet``/``live``)."""
    return f"{model}_lam{float(lam):g}"
