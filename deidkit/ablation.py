"""The lambda ablation: one knob, the weight of the identity term, turned over a range for FaDeNet and for the
live model, each setting a separately trained model, each evaluated like notebook 04.

* **Cache by configuration.** A sweep point is the full training configuration of its model (a dataclass of
  :mod:`deidkit.train.fadenet` or :mod:`deidkit.train.live`). Its stable JSON is hashed and the model is trained in
  ``cache_dir()/runs/<model>-<hash>``; a second sweep with the same configuration loads it, a changed
  configuration is a different folder. Training is the shared resumable loop, so an interrupted point resumes
  from its last epoch checkpoint. A point whose loss diverged is remembered (``ablation.json``) and not retrained.
* **Evaluation.** Every trained point, the original and the naive baselines go through
  :func:`deidkit.eval.benchmark.run_benchmark` in one call (Rank-1 over the 5 repetitions, true-identity rank,
  original-vs-de-identified verification, SSIM/PSNR, detection rate) plus the 68-landmark displacement of
  :func:`deidkit.eval.temporal.landmark_displacement`. One ``kind="ablation"`` record per (point, recogniser).
* **Curves.** :func:`privacy_utility_curves` orders each family's points by lambda (or baseline strength) so
  that a figure can join them into the family's privacy-utility curve.

Models are plugged in through :class:`SweepModel` (``FaDeNetSweep``, ``LiveSweep``); tests inject small ones.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from deidkit.assets import cache_dir

#: Bump when the meaning of a cached sweep model changes (it is part of every hash).
CACHE_VERSION = 1
#: Configuration fields that say *where* or *on what hardware* a model is trained, not *what* is trained; a
#: model trained on a GPU is reused on a CPU, so they are left out of the hash.
NON_TRAINING_FIELDS = frozenset({"device", "threads", "run_name", "critic_run", "channels_last", "compile"})
META_NAME = "ablation.json"
MODELS = ("fadenet", "live")
BASELINE_FAMILIES = ("original", "blur", "pixelate", "blackbox", "noise")


# ------------------------------------------------------------------------------------------- config hashing
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


# ---------------------------------------------------------------------------------------------- models
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
        return runs_root() / f"live-warmup-{config_hash({'live_warmup': config_payload(warm)})}"

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


# ----------------------------------------------------------------------------------------------- the cache
@dataclass
class TrainedModel:
    """One sweep point after :func:`ensure_model`. ``status``: ``trained`` (by this call), ``cached`` (loaded),
    ``diverged`` (training stopped on a non-finite loss; ``error`` says where)."""

    model: str
    lam: float
    config: Any
    config_hash: str
    run_dir: Path
    status: str
    train_wall_s: float = 0.0
    error: str | None = None
    trainer: SweepModel | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return point_name(self.model, self.lam)

    @property
    def ok(self) -> bool:
        return self.status in ("trained", "cached")

    def deidentifier(self) -> NamedDeidentifier:
        """The trained network as a de-identifier named after the point."""
        if not self.ok or self.trainer is None:
            raise RuntimeError(f"{self.run_dir}: point {self.name} has no usable model (status {self.status}"
                               f"{': ' + self.error if self.error else ''})")
        return NamedDeidentifier(self.trainer.load(self.config, self.run_dir), self.name)

    def training_summary(self) -> dict[str, float]:
        """Means of the logged loss terms over the last epoch (from the shared loop's ``log.csv``)."""
        log_path = self.run_dir / "log.csv"
        if not log_path.is_file():
            return {}
        log = pd.read_csv(log_path)
        if log.empty:
            return {}
        last = log[log["epoch"] == log["epoch"].max()]
        cols = [c for c in last.columns if c not in ("epoch", "step", "wall_s", "n")]
        return {c: float(last[c].mean()) for c in cols if pd.api.types.is_numeric_dtype(last[c])}


def _read_meta(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: corrupt sweep metadata ({exc}); delete the file to start this point afresh") from exc


def _write_meta(path: Path, meta: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def ensure_model(trainer: SweepModel, config: Any, lam: float, progress: bool = True,
                 retry_diverged: bool = False) -> TrainedModel:
    """The model of ``config``: loaded from ``runs/<model>-<hash>`` when it has finished all its epochs, else
    trained there (resuming from the last checkpoint of an interrupted run). A diverged run is not retried
    unless ``retry_diverged``."""
    from deidkit.train.loop import TrainingDiverged

    payload = json.loads(stable_json(trainer.payload(config)))
    digest = config_hash(payload)
    run_dir = run_dir_for(trainer.name, digest)
    meta_path = run_dir / META_NAME
    meta = _read_meta(meta_path)
    if meta is not None and meta.get("payload") != payload:
        raise ValueError(f"{meta_path}: the run in this folder was made with another configuration (hash "
                         f"collision or edited file); delete {run_dir} to retrain it")
    point = TrainedModel(trainer.name, float(lam), config, digest, run_dir, "cached",
                         float((meta or {}).get("train_wall_s", 0.0)), trainer=trainer)
    if meta is not None and meta.get("status") == "diverged" and not retry_diverged:
        point.status, point.error = "diverged", meta.get("error")
        return point
    total = trainer.epochs(config)
    if completed_epochs(run_dir) >= total:
        return point
    run_dir.mkdir(parents=True, exist_ok=True)
    meta = {"model": trainer.name, "lambda": float(lam), "config_hash": digest, "payload": payload,
            "status": "training", "train_wall_s": point.train_wall_s, "error": None}
    _write_meta(meta_path, meta)
    t0 = time.perf_counter()
    try:
        trainer.train(config, run_dir, progress)
    except TrainingDiverged as exc:
        meta.update(status="diverged", error=str(exc), train_wall_s=point.train_wall_s + time.perf_counter() - t0)
        _write_meta(meta_path, meta)
        point.status, point.error, point.train_wall_s = "diverged", str(exc), meta["train_wall_s"]
        return point
    except BaseException:
        # Interrupted (Ctrl-C, an error): keep the time spent; the next call resumes from the checkpoint.
        meta["train_wall_s"] = point.train_wall_s + time.perf_counter() - t0
        _write_meta(meta_path, meta)
        raise
    meta.update(status="complete", train_wall_s=point.train_wall_s + time.perf_counter() - t0)
    done = completed_epochs(run_dir)
    if done < total:
        raise RuntimeError(f"{run_dir}: training returned after {done} of {total} epochs")
    _write_meta(meta_path, meta)
    point.status, point.train_wall_s = "trained", meta["train_wall_s"]
    return point


# ---------------------------------------------------------------------------------------------- the sweep
@dataclass
class AblationConfig:
    """Notebook 05's experiment. Build with :meth:`profile` (``tiny``, ``quick``, ``paper``) plus overrides.

    FaDeNet's lambda multiplies the critic's cross-entropy (the paper: 0.001); the live model's lambda is
    ``lambda_max``, the top of its four-step schedule on this kit's scale (see :mod:`deidkit.train.live`).
    ``*_overrides`` change the model profiles (the ablation trains many models, so ``quick`` trains each for less
    time than notebooks 02 and 03 do)."""

    profile_name: str = "quick"
    fadenet_profile: str = "quick"
    fadenet_lambdas: tuple[float, ...] = (0.0, 1e-3, 1e-2, 5e-2, 0.2, 1.0)
    fadenet_overrides: dict[str, Any] = field(default_factory=dict)
    live_profile: str = "quick"
    live_lambdas: tuple[float, ...] = (0.0, 0.05, 0.25, 1.0, 4.0)
    live_overrides: dict[str, Any] = field(default_factory=dict)
    recognizers: tuple[str, ...] = ("dlib", "mobilefacenet_casia", "mobilefacenet_ms1m")
    #: The live model is conditioned on the MS1M MobileFaceNet and the FaDeNet critic may use it as backbone:
    #: only these recognisers are independent attackers.
    independent: tuple[str, ...] = ("dlib", "mobilefacenet_casia")
    baselines: tuple[str, ...] | None = None  # None: every baseline of deidkit.baselines
    protocol: str = "lfw_57x8"
    n_identities: int | None = None
    rank_gallery: str | None = "lfw_all_identities"
    rank_gallery_identities: int | None = None
    detection: bool = True
    landmark_images: int | None = None  # rep-0 probes used for the landmark displacement; None: all of them
    sample_images: int = 6  # images shown in the lambda sequences and the explorer
    size: int = 224
    retry_diverged: bool = False

    PROFILES = {
        # Tests: two lambdas per model, a few training steps, 6 identities, a 40-identity rank gallery, no dlib.
        "tiny": dict(fadenet_profile="tiny", fadenet_lambdas=(0.0, 1.0), live_profile="tiny",
                     live_lambdas=(0.0, 4.0), recognizers=("mobilefacenet_casia",),
                     baselines=("blur_sigma8", "pixelate_16px", "blackbox"), n_identities=6,
                     rank_gallery_identities=40, landmark_images=8, sample_images=3),
        # CPU (~30 min on 2 free cores, most of it evaluation): each point is a short version of the models'
        # quick profiles: FaDeNet one epoch over 800 of the critic's 1,518 training images; the live model a
        # shared warm-up of 8 x 20 steps, then 4 x 20 steps of 8 images (one epoch per lambda step) per point.
        # Two or three strengths per baseline family.
        "quick": dict(fadenet_overrides=dict(epochs=1, train_images=800), live_lambdas=(0.0, 0.25, 1.0, 4.0),
                      live_overrides=dict(max_images=640, batch_size=8, epoch_steps=20, warmup_epochs=8,
                                          epochs=12),
                      baselines=("blur_sigma4", "blur_sigma16", "pixelate_8px", "pixelate_16px", "blackbox",
                                 "noise_sigma32", "noise_sigma128")),
        # GPU: the models' paper profiles, every baseline, and a denser grid around the papers' values.
        "paper": dict(fadenet_profile="paper", fadenet_lambdas=(0.0, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 1e-1),
                      live_profile="paper", live_lambdas=(0.0, 0.05, 0.25, 0.5, 1.0, 2.0, 4.0)),
    }

    @classmethod
    def profile(cls, name: str = "quick", **overrides: Any) -> AblationConfig:
        """The named profile with ``overrides`` applied (``None`` values are ignored: papermill defaults)."""
        if name not in cls.PROFILES:
            raise ValueError(f"unknown ablation profile {name!r}; choose one of {sorted(cls.PROFILES)}")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(overrides) - fields
        if unknown:
            raise ValueError(f"unknown AblationConfig fields {sorted(unknown)}")
        values = {**cls.PROFILES[name], **{k: v for k, v in overrides.items() if v is not None}}
        for k in ("fadenet_lambdas", "live_lambdas", "recognizers", "independent", "baselines"):
            if isinstance(values.get(k), list):
                values[k] = tuple(values[k])
        cfg = cls(profile_name=name, **values)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        for model, lams in (("fadenet", self.fadenet_lambdas), ("live", self.live_lambdas)):
            if any(not math.isfinite(v) or v < 0 for v in lams):
                raise ValueError(f"{model} lambdas must be finite and >= 0, got {lams}")
            if len(set(lams)) != len(lams):
                raise ValueError(f"{model} lambdas repeat a value: {lams}")
        if not self.recognizers:
            raise ValueError("at least one recogniser is needed")
        if self.sample_images < 1:
            raise ValueError(f"sample_images must be >= 1, got {self.sample_images}")

    def lambdas(self, model: str) -> tuple[float, ...]:
        if model not in MODELS:
            raise ValueError(f"unknown model {model!r}; the sweep has {MODELS}")
        return tuple(sorted(self.fadenet_lambdas if model == "fadenet" else self.live_lambdas))

    def model_profile(self, model: str) -> tuple[str, dict[str, Any]]:
        if model == "fadenet":
            return self.fadenet_profile, dict(self.fadenet_overrides)
        return self.live_profile, dict(self.live_overrides)


def sweep_configs(config: AblationConfig, models: Mapping[str, SweepModel] | None = None
                  ) -> list[tuple[SweepModel, Any, float]]:
    """(trainer, model configuration, lambda) of every point, FaDeNet first, lambdas ascending."""
    models = dict(models or default_models())
    out = []
    for name in MODELS:
        if name not in models:
            continue
        profile, overrides = config.model_profile(name)
        for lam in config.lambdas(name):
            out.append((models[name], models[name].make_config(profile, lam, overrides), lam))
    return out


def sweep_plan(config: AblationConfig, models: Mapping[str, SweepModel] | None = None) -> pd.DataFrame:
    """What :func:`train_sweep` will do for each point, without doing it: its hash, run folder and state
    (``cached``, ``to train``, ``resume at epoch k/n``, ``diverged``)."""
    rows = []
    for trainer, cfg, lam in sweep_configs(config, models):
        digest = config_hash(json.loads(stable_json(trainer.payload(cfg))))
        run_dir = run_dir_for(trainer.name, digest)
        meta = _read_meta(run_dir / META_NAME) or {}
        done, total = completed_epochs(run_dir), trainer.epochs(cfg)
        if meta.get("status") == "diverged" and not config.retry_diverged:
            state = "diverged"
        elif done >= total:
            state = "cached"
        else:
            state = f"resume at epoch {done}/{total}" if done else "to train"
        rows.append({"model": trainer.name, "lambda": lam, "config_hash": digest, "run": run_dir.name,
                     "state": state, "train_wall_s": meta.get("train_wall_s")})
    return pd.DataFrame(rows)


def train_sweep(config: AblationConfig, models: Mapping[str, SweepModel] | None = None,
                progress: bool = True) -> list[TrainedModel]:
    """Every point of the sweep, trained now or loaded from the cache (see :func:`ensure_model`)."""
    from tqdm.auto import tqdm

    todo = sweep_configs(config, models)
    out = []
    for trainer, cfg, lam in tqdm(todo, desc="sweep points", disable=not progress):
        out.append(ensure_model(trainer, cfg, lam, progress=progress, retry_diverged=config.retry_diverged))
    return out


# ----------------------------------------------------------------------------------------------- evaluation
def describe_baseline(name: str) -> tuple[str, float | None]:
    """(family, strength) of a baseline name: ``blur_sigma8`` -> ("blur", 8.0), ``blackbox`` -> ("blackbox", None)."""
    if name in ("original", "blackbox"):
        return name, None
    m = re.fullmatch(r"(blur)_sigma([\d.]+)|(pixelate)_(\d+)px|(noise)_sigma([\d.]+)", name)
    if not m:
        raise ValueError(f"{name!r} is not a baseline name (original, blackbox, blur_sigma<S>, pixelate_<B>px, "
                         "noise_sigma<S>)")
    groups = [g for g in m.groups() if g is not None]
    return groups[0], float(groups[1])


def sample_indices(protocol: pd.DataFrame, n: int) -> np.ndarray:
    """Rows of the first repetition's probes, one per identity (identities in sorted order), ``n`` of them."""
    probes = protocol.reset_index(drop=True)
    probes = probes[probes["rep0"] == "probe"].sort_values(["identity", "path"], kind="stable")
    first = probes.groupby("identity", sort=True).head(1)
    if len(first) < n:  # fewer identities than samples: take more images per identity
        first = probes
    return first.index.to_numpy()[:n]


def landmark_indices(protocol: pd.DataFrame, n: int | None) -> np.ndarray:
    """Rows of the first repetition's probes, ``n`` of them spread evenly (all when None)."""
    idx = np.flatnonzero((protocol["rep0"] == "probe").to_numpy())
    if n is None or n >= len(idx):
        return idx
    return idx[np.linspace(0, len(idx) - 1, n).round().astype(int)]


@dataclass
class SweepResult:
    """Records and images of an evaluated sweep: what the notebook and :class:`deidkit.widgets.LambdaExplorer`
    draw. ``samples`` maps a de-identifier name to its outputs on ``originals`` (the sample crops)."""

    config: AblationConfig
    trained: list[TrainedModel]
    records: list[dict]
    originals: np.ndarray
    sample_labels: list[str]
    samples: dict[str, np.ndarray]
    benchmark: Any = None
    eval_wall_s: float = 0.0

    def table(self) -> pd.DataFrame:
        """The evaluated ``kind="ablation"`` records (one row per point or baseline and recogniser)."""
        rows = [r for r in self.records if r["kind"] == "ablation" and r.get("status") == "ok"]
        return pd.DataFrame(rows)

    def models(self) -> list[str]:
        return [m for m in MODELS if self.lambdas(m)]

    def lambdas(self, model: str) -> list[float]:
        """Lambdas of ``model`` with an evaluated model (diverged points are left out)."""
        return sorted({t.lam for t in self.trained if t.model == model and t.name in self.samples})

    def output(self, model: str, lam: float) -> np.ndarray:
        """The point's outputs on the sample crops, (N, S, S, 3) uint8."""
        name = point_name(model, lam)
        if name not in self.samples:
            raise KeyError(f"no evaluated point {name!r}; have {sorted(self.samples)}")
        return self.samples[name]

    def point_metrics(self, model: str, lam: float) -> pd.DataFrame:
        """The point's rows of :meth:`table`, one per recogniser."""
        t = self.table()
        return t[t["deidentifier"] == point_name(model, lam)].reset_index(drop=True)

    def diverged(self) -> list[TrainedModel]:
        return [t for t in self.trained if t.status == "diverged"]


def build_records(bench_records: list[dict], info: Mapping[str, dict], landmarks: Mapping[str, dict],
                  independent: Iterable[str], profile: str) -> list[dict]:
    """Merge the benchmark's identification, true-rank and verification rows of each (de-identifier, recogniser)
    with the point's description (``info``: model, lambda, ...) and landmark figures into ablation records."""
    independent = set(independent)
    by_key: dict[tuple[str, str, str], dict] = {(r["kind"], r["deidentifier"], r["recognizer"]): r
                                                for r in bench_records}
    out = []
    for r in bench_records:
        if r["kind"] != "identification":
            continue
        deid, rec = r["deidentifier"], r["recognizer"]
        ranks = by_key.get(("true_identity_rank", deid, rec), {})
        ver = by_key.get(("deid_verification", deid, rec), {})
        out.append({
            "kind": "ablation", "status": "ok", "profile": profile, **info[deid], "deidentifier": deid,
            "recognizer": rec, "independent": rec in independent, "protocol": r["protocol"],
            "n_identities": r["n_identities"],
            **{k: r[k] for k in ("rank1_mean", "rank1_std", "rank5_mean", "rank5_std", "repetitions", "ssim",
                                 "psnr", "ssim_face", "psnr_face")},
            "detection_rate": r.get("detection_rate"),
            "true_rank_median": ranks.get("median"), "true_rank_mean": ranks.get("mean"),
            "true_rank_sd": ranks.get("sd"), "gallery_size": ranks.get("gallery_size"),
            "tar_at_far": ver.get("tar_at_far"), "far": ver.get("far"),
            **landmarks.get(deid, {}),
        })
    return out


def evaluate_sweep(config: AblationConfig, trained: list[TrainedModel], recognizers: list | None = None,
                   baselines: list | None = None, landmark_predictor: Any = None) -> SweepResult:
    """Evaluate the original, the baselines and every usable point of ``trained`` with
    :func:`deidkit.eval.benchmark.run_benchmark`, add the landmark displacement, collect sample outputs."""
    from deidkit.baselines import Identity, baseline_deidentifiers, get_deidentifier
    from deidkit.data.lfw import aligned_crops, load_manifest
    from deidkit.eval.benchmark import deidentify_in_batches, protocol_subset, run_benchmark
    from deidkit.eval.temporal import landmark_displacement
    from deidkit.pipeline.faces import Dlib68
    from deidkit.recognizers import get_recognizer

    t0 = time.perf_counter()
    recognizers = recognizers if recognizers is not None else [get_recognizer(n) for n in config.recognizers]
    if baselines is None:
        baselines = (baseline_deidentifiers() if config.baselines is None
                     else [get_deidentifier(n) for n in config.baselines])
    base = [Identity(), *baselines]
    info: dict[str, dict] = {}
    for b in base:
        family, strength = describe_baseline(b.name)
        info[b.name] = {"model": family, "lambda": None, "strength": strength, "baseline": True}
    usable = [t for t in trained if t.ok]
    points = []
    for t in usable:
        points.append(t.deidentifier())
        info[t.name] = {"model": t.model, "lambda": t.lam, "strength": None, "baseline": False,
                        "config_hash": t.config_hash, "run": t.run_dir.name, "train_wall_s": t.train_wall_s}
        shape = getattr(t.config, "lambda_shape", None)
        if shape is not None:  # the live model: lambda is the top of a four-step schedule
            info[t.name]["lambda_steps"] = [t.lam * float(v) for v in shape]
    deids = [*base, *points]
    names = [d.name for d in deids]
    if len(set(names)) != len(names):
        raise ValueError(f"de-identifier names repeat: {names}")

    bench = run_benchmark(deids, recognizers, protocol_name=config.protocol, n_identities=config.n_identities,
                          size=config.size, rank_gallery=config.rank_gallery,
                          rank_gallery_identities=config.rank_gallery_identities, detection=config.detection)

    protocol = protocol_subset(load_manifest(config.protocol), config.n_identities)
    crops = aligned_crops(protocol["path"], size=config.size)
    s_idx = sample_indices(protocol, config.sample_images)
    l_idx = landmark_indices(protocol, config.landmark_images)
    predictor = landmark_predictor or Dlib68()
    samples, landmarks = {}, {}
    for d in deids:
        # Deterministic de-identifiers give the same output as inside the benchmark; the noise baseline draws
        # new (equally distributed) noise.
        samples[d.name] = d.deidentify(crops[s_idx])
        disp = landmark_displacement(crops[l_idx], deidentify_in_batches(d, crops[l_idx]), predictor)
        landmarks[d.name] = {"landmark_px": float(disp["px"].mean()), "landmark_iod": float(disp["iod"].mean()),
                             "landmark_images": int(len(disp))}

    records = build_records(bench.records, info, landmarks, config.independent, config.profile_name)
    for t in trained:
        if not t.ok:
            records.append({"kind": "ablation", "status": t.status, "profile": config.profile_name, "model": t.model,
                            "lambda": t.lam, "deidentifier": t.name, "config_hash": t.config_hash,
                            "run": t.run_dir.name, "error": t.error})
    for t in usable:
        records.append({"kind": "ablation_training", "profile": config.profile_name, "model": t.model, "lambda": t.lam,
                        "deidentifier": t.name, "config_hash": t.config_hash, "train_wall_s": t.train_wall_s,
                        **{f"last_epoch_{k}": v for k, v in t.training_summary().items()}})
    labels = [f"{protocol['identity'].iloc[i]} ({Path(protocol['path'].iloc[i]).stem[-4:]})" for i in s_idx]
    return SweepResult(config, list(trained), records, crops[s_idx], labels, samples, bench,
                       time.perf_counter() - t0)


def run_sweep(config: AblationConfig, models: Mapping[str, SweepModel] | None = None,
              progress: bool = True) -> SweepResult:
    """Train (or load) every point, then evaluate them with the baselines."""
    return evaluate_sweep(config, train_sweep(config, models, progress))


# -------------------------------------------------------------------------------------------------- curves
def privacy_utility_curves(table: pd.DataFrame, recognizer: str, x: str = "ssim",
                           y: str = "rank1_mean") -> pd.DataFrame:
    """One recogniser's points, grouped into curves and ordered along each curve.

    Columns: ``curve`` (fadenet, live, or the baseline family), ``deidentifier``, ``order`` (lambda for learned
    models, strength for baselines), ``x``, ``y``, ``yerr`` (the std over the repetitions when ``y`` is a
    ``*_mean`` column), ``learned``. Rows with a missing ``x`` or ``y`` are dropped."""
    need = {"recognizer", "deidentifier", "model", x, y}
    missing = need - set(table.columns)
    if missing:
        raise KeyError(f"table lacks columns {sorted(missing)}")
    t = table[table["recognizer"] == recognizer]
    if "status" in t:
        t = t[t["status"] == "ok"]
    if t.empty:
        raise KeyError(f"no rows for recogniser {recognizer!r}; have {sorted(table['recognizer'].dropna().unique())}")
    err_col = y[: -len("_mean")] + "_std" if y.endswith("_mean") else None
    lam = t["lambda"] if "lambda" in t else pd.Series(np.nan, index=t.index)
    strength = t["strength"] if "strength" in t else pd.Series(np.nan, index=t.index)
    learned = t["model"].isin(MODELS)
    out = pd.DataFrame({
        "curve": t["model"].to_numpy(),
        "deidentifier": t["deidentifier"].to_numpy(),
        "order": np.where(learned, pd.to_numeric(lam, errors="coerce"), pd.to_numeric(strength, errors="coerce")),
        "x": pd.to_numeric(t[x], errors="coerce").to_numpy(),
        "y": pd.to_numeric(t[y], errors="coerce").to_numpy(),
        "yerr": (pd.to_numeric(t[err_col], errors="coerce").to_numpy() if err_col and err_col in t
                 else np.full(len(t), np.nan)),
        "learned": learned.to_numpy(),
    })
    out = out.dropna(subset=["x", "y"])
    return out.sort_values(["learned", "curve", "order"], ascending=[False, True, True],
                           na_position="first").reset_index(drop=True)


def lambda_trend(table: pd.DataFrame, metrics: tuple[str, ...] = ("rank1_mean", "ssim", "landmark_iod")
                 ) -> pd.DataFrame:
    """Per learned model and recogniser: Spearman correlation of lambda with each metric, and the metric at the
    smallest and the largest lambda. A gradual trade shows as Rank-1 and SSIM both falling with lambda."""
    from scipy.stats import spearmanr

    rows = []
    t = table[table["model"].isin(MODELS)]
    if "status" in t:
        t = t[t["status"] == "ok"]
    for (model, rec), g in t.groupby(["model", "recognizer"], sort=True):
        g = g.sort_values("lambda")
        row: dict[str, Any] = {"model": model, "recognizer": rec, "points": len(g)}
        for m in metrics:
            if m not in g:
                continue
            vals = pd.to_numeric(g[m], errors="coerce")
            ok = vals.notna()
            if ok.sum() >= 3 and vals[ok].nunique() > 1:
                row[f"{m}_spearman"] = float(spearmanr(g["lambda"][ok], vals[ok]).statistic)
            else:  # too few points (or a constant metric) to correlate
                row[f"{m}_spearman"] = float("nan")
            row[f"{m}_at_min_lambda"] = float(vals.iloc[0])
            row[f"{m}_at_max_lambda"] = float(vals.iloc[-1])
        rows.append(row)
    return pd.DataFrame(rows)


def baseline_comparison(table: pd.DataFrame, recognizer: str) -> pd.DataFrame:
    """For each learned point: how many baselines keep at least its SSIM, and whether it has a lower Rank-1 than
    all of them ("beats every naive baseline at equal image quality")."""
    from deidkit.eval.benchmark import privacy_utility_frontier

    t = table[(table["recognizer"] == recognizer)]
    if "status" in t:
        t = t[t["status"] == "ok"]
    baselines = t[t["model"].isin(BASELINE_FAMILIES) & (t["model"] != "original")]
    rows = []
    for _, r in t[t["model"].isin(MODELS)].iterrows():
        front = privacy_utility_frontier(pd.concat([baselines, r.to_frame().T]), recognizer, r["deidentifier"])
        rows.append({"deidentifier": r["deidentifier"], "model": r["model"], "lambda": r["lambda"],
                     "ssim": r["ssim"], "rank1_mean": r["rank1_mean"],
                     "baselines_with_higher_ssim": int(len(front)),
                     "best_baseline_rank1_there": float(front["rank1_mean"].min()) if len(front) else float("nan"),
                     "beats_them_all": bool(len(front) and front["beaten"].all())})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------------- figures
_COLORS = {"fadenet": "tab:red", "live": "tab:blue", "blur": "tab:gray", "pixelate": "tab:brown",
           "noise": "tab:olive", "blackbox": "black", "original": "tab:green"}


def curves_figure(table: pd.DataFrame, recognizers: list[str] | tuple[str, ...], independent: Iterable[str] = (),
                  x: str = "ssim", y: str = "rank1_mean", size: tuple[float, float] = (5.2, 4.2)):
    """Privacy-utility curves (Rank-1 against SSIM, error bars from the repetitions) of every learned model and
    baseline family, one panel per recogniser; learned points are annotated with their lambda."""
    import matplotlib.pyplot as plt

    independent = set(independent)
    fig, axes = plt.subplots(1, len(recognizers), figsize=(size[0] * len(recognizers), size[1]), squeeze=False)
    for ax, rec in zip(axes[0], recognizers):
        curves = privacy_utility_curves(table, rec, x, y)
        for name, g in curves.groupby("curve", sort=False):
            learned = bool(g["learned"].iloc[0])
            ax.errorbar(g["x"], g["y"], yerr=g["yerr"].fillna(0), fmt="-o" if learned else "--s",
                        color=_COLORS.get(name), lw=2 if learned else 1, ms=5 if learned else 4, capsize=2,
                        label=name, alpha=0.9)
            for _, r in g.iterrows():
                if learned:
                    ax.annotate(f"λ={r['order']:g}", (r["x"], r["y"]), fontsize=6, xytext=(3, 3),
                                textcoords="offset points", color=_COLORS.get(name))
                elif not np.isnan(r["order"]):
                    ax.annotate(f"{r['order']:g}", (r["x"], r["y"]), fontsize=5, xytext=(2, -8),
                                textcoords="offset points", alpha=0.7)
        note = "" if rec in independent else " (not independent)"
        ax.set_title(f"{rec}{note}", fontsize=9)
        ax.set_xlabel(f"{x.upper()} to the original (utility →)")
        ax.set_ylabel("Rank-1 (identity leaks ↑)")
        ax.set_ylim(-0.02, 1.08)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="lower right")
    fig.suptitle("Privacy-utility curves over lambda (lower right is better)", fontsize=10)
    fig.tight_layout()
    return fig


def lambda_sequence_figure(result: SweepResult, model: str, recognizer: str | None = None, size: float = 1.5):
    """Like the live paper's Fig. 6: each row a sample face, the original first, then the model's output for
    each lambda (ascending); column titles give lambda and the point's Rank-1 and SSIM."""
    import matplotlib.pyplot as plt

    lams = result.lambdas(model)
    if not lams:
        raise ValueError(f"no evaluated {model} points to show")
    recs = result.config.recognizers
    rec = recognizer or next((r for r in result.config.independent if r in recs), recs[0])
    cols = [result.originals, *(result.output(model, lam) for lam in lams)]
    titles = ["original"]
    for lam in lams:
        m = result.point_metrics(model, lam)
        m = m[m["recognizer"] == rec]
        titles.append(f"λ={lam:g}\nR1 {m['rank1_mean'].iloc[0]:.2f} SSIM {m['ssim'].iloc[0]:.2f}" if len(m)
                      else f"λ={lam:g}")
    n_rows, n_cols = len(result.originals), len(cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(size * n_cols, size * n_rows + 0.4), squeeze=False)
    for c, batch in enumerate(cols):
        for r in range(n_rows):
            ax = axes[r, c]
            ax.imshow(batch[r])
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize=7)
            if c == 0:
                ax.set_ylabel(result.sample_labels[r], fontsize=6)
    fig.suptitle(f"{model}: increasing lambda (Rank-1 by {rec})", fontsize=9)
    fig.tight_layout()
    return fig


__all__ = [
    "AblationConfig", "FaDeNetPoint", "FaDeNetSweep", "LiveSweep", "NamedDeidentifier", "SweepModel", "SweepResult",
    "TrainedModel", "baseline_comparison", "build_records", "completed_epochs", "config_hash", "config_payload",
    "curves_figure", "default_models", "describe_baseline", "ensure_model", "evaluate_sweep",
    "lambda_sequence_figure", "lambda_trend", "privacy_utility_curves", "point_name", "run_dir_for",
    "run_sweep", "runs_root", "stable_json", "subset_training_images", "sweep_configs", "sweep_plan", "train_sweep",
]
