"""The sweep's run cache: a trained point is its configuration's hash (see :mod:`deidkit.cache`), its run
folder and what the sweep remembers about it (``ablation.json``: trained, or diverged)."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from deidkit.ablation.models import NamedDeidentifier, SweepModel, point_name
from deidkit.cache import completed_epochs, config_hash, run_dir_for, stable_json

META_NAME = "ablation.json"


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
