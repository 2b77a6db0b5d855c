"""The sweep: which points to train (:class:`AblationConfig`), training them, and evaluating every point with
the original and the naive baselines."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from deidkit.ablation.models import MODELS, SweepModel, default_models, point_name
from deidkit.ablation.runs import META_NAME, TrainedModel, _read_meta, ensure_model
from deidkit.cache import completed_epochs, config_hash, run_dir_for, stable_json

BASELINE_FAMILIES = ("original", "blur", "pixelate", "blackbox", "noise")


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
    from deidkit.eval.temporal import landmark_summary
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
        lm = landmark_summary(crops[l_idx], deidentify_in_batches(d, crops[l_idx]), predictor)
        landmarks[d.name] = {"landmark_px": lm["px_mean"], "landmark_iod": lm["iod_mean"],
                             "landmark_images": lm["faces"]}

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
