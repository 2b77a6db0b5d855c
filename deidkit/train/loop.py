"""The training loop shared by every model in the kit (critic, FaDeNet, live de-identification).

A :class:`TrainingRun` owns a run directory. Each epoch ends with an atomic checkpoint holding every
module's and optimiser's state, the epoch and global step counters and the RNG states of torch, numpy and
Python; starting ``fit`` again on the same directory resumes from that checkpoint, so an interrupted run
ends with the same weights and the same per-step log as an uninterrupted one. Everything in the checkpoint
is made of tensors, lists, dicts and plain numbers, so it loads with ``torch.load(weights_only=True)``.
How long a run may go on in one call is :mod:`deidkit.train.limits`; the RNG states it saves,
:mod:`deidkit.train.rng`; what it raises when a loss stops being finite, :mod:`deidkit.train.divergence`; when a
saved configuration is the same experiment, :mod:`deidkit.train.run_config`.

The loop knows nothing about the model: the caller's ``step`` does its own forward pass, backward pass and
optimiser calls and returns a dict of floats (the loss terms), which the loop checks for NaN/inf, logs and
shows on the progress bar.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from deidkit.checkpoints import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_NAME,
    CONFIG_NAME,
    load_checkpoint,
    load_module_state,
)
from deidkit.train.distributed import current as current_shard

# Names that moved to modules of their own stay importable from here (recipes, the CLI, tests and notebooks).
from deidkit.train.divergence import TrainingCollapsed, TrainingDiverged, collapsed_in_last_epoch
from deidkit.train.limits import (
    RunLimits,
    TimeLimitReached,
    count_step,
    current_limits,
    run_limits,
    time_is_up,
)
from deidkit.train.rng import rng_state, seed_everything, set_rng_state
from deidkit.train.run_config import jsonable, option_is_off, same_setting

LOG_NAME = "log.csv"
LOCK_NAME = ".train.lock"  # held while a process trains the run (see TrainingRun._exclusive)
#: Columns the loop adds to every log row; the step's own terms follow them.
LOG_PREFIX = ("epoch", "step", "wall_s")


def _atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------- the run
class TrainingRun:
    """A resumable training run in ``run_dir``.

    ``modules`` and ``optimizers`` are checkpointed by name; ``stateful`` may add other objects with
    ``state_dict``/``load_state_dict`` (an LR scheduler, a grad scaler). ``config`` (a dict or dataclass) is
    written to ``run_dir/config.json``; resuming a directory that holds a different configuration is refused,
    so two experiments never mix in one checkpoint. Keys named in ``extendable`` (default: ``"epochs"``) may
    differ, so a finished run can be continued for more epochs (the resumed run is identical to one trained
    for the larger number of epochs from the start).
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        modules: Mapping[str, nn.Module],
        optimizers: Mapping[str, torch.optim.Optimizer],
        seed: int,
        config: Any = None,
        stateful: Mapping[str, Any] | None = None,
        show_progress: bool = True,
        extendable: tuple[str, ...] = ("epochs",),
    ) -> None:
        if not modules:
            raise ValueError("TrainingRun needs at least one module to checkpoint")
        self.run_dir = Path(run_dir)
        self.modules = dict(modules)
        self.optimizers = dict(optimizers)
        self.stateful = dict(stateful or {})
        self.seed = int(seed)
        self.show_progress = show_progress
        self.config = None if config is None else jsonable(config)
        self.extendable = tuple(extendable)
        self.epoch = 0  # epochs completed
        self.global_step = 0  # steps completed
        self.epoch_step = 0  # steps completed inside the current (unfinished) epoch
        self.stopped = False  # fit() returned early because the time limit was reached
        self.limits = current_limits()
        self.shard = current_shard()  # under torchrun: this process's rank; rank 0 alone writes files
        self._resume_rng: Mapping[str, Any] | None = None
        self._epoch_rng: Mapping[str, Any] | None = None
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._check_config()

    # -- paths
    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / CHECKPOINT_NAME

    @property
    def log_path(self) -> Path:
        return self.run_dir / LOG_NAME

    @property
    def config_path(self) -> Path:
        return self.run_dir / CONFIG_NAME

    def _check_config(self) -> None:
        if self.config is None:
            return
        if self.config_path.is_file() and self.checkpoint_path.is_file():
            saved = json.loads(self.config_path.read_text())
            # A field added to a configuration after the run was saved, set to "off" (0, None, False, an empty
            # list or string), is the behaviour the run was trained with: not a difference.
            diff = sorted(k for k in set(saved) | set(self.config)
                          if not same_setting(k, saved.get(k), self.config.get(k)) and k not in self.extendable
                          and not (k not in saved and option_is_off(self.config.get(k))))
            if diff:
                raise ValueError(
                    f"{self.config_path}: this run directory holds a run with a different configuration "
                    f"(differs in {diff}); use another run directory or delete this one to start afresh"
                )
        if self.shard.is_main:
            tmp = self.config_path.with_name(f".{CONFIG_NAME}.tmp{os.getpid()}")
            tmp.write_text(json.dumps(self.config, indent=2, sort_keys=True) + "\n")
            os.replace(tmp, self.config_path)
        self.shard.barrier()

    # -- checkpointing
    def save_checkpoint(self) -> None:
        """Write the checkpoint atomically (a crash while saving leaves the previous one intact)."""
        for name, module in self.modules.items():
            for pname, p in module.state_dict().items():
                if p.is_floating_point() and not torch.isfinite(p).all():
                    raise TrainingDiverged(
                        f"module {name!r} has non-finite values in {pname!r} after epoch {self.epoch}; "
                        f"not checkpointing"
                    )
        # every process's RNG states (a module with dropout draws from them per process)
        rngs = self.shard.gather(rng_state())
        epoch_rngs = self.shard.gather(self._epoch_rng) if self.epoch_step else None
        if not self.shard.is_main:
            self.shard.barrier()
            return
        ckpt = {
            "format": CHECKPOINT_FORMAT,
            "epoch": self.epoch,
            "global_step": self.global_step,
            "epoch_step": self.epoch_step,
            "seed": self.seed,
            "modules": {k: m.state_dict() for k, m in self.modules.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "stateful": {k: s.state_dict() for k, s in self.stateful.items()},
            "rng": rngs[0],
        }
        if self.shard.active:
            ckpt["rng_ranks"] = rngs
        if epoch_rngs is not None:
            # inside an epoch: also the states the epoch's loader was made with (a loader may shuffle from them)
            ckpt["epoch_rng"] = epoch_rngs[0]
            if self.shard.active:
                ckpt["epoch_rng_ranks"] = epoch_rngs
        _atomic_torch_save(ckpt, self.checkpoint_path)
        self.shard.barrier()

    def resume(self) -> bool:
        """Restore the last checkpoint if there is one; returns whether it did."""
        if not self.checkpoint_path.is_file():
            return False
        ckpt = load_checkpoint(self.run_dir)
        for kind, objs in (("modules", self.modules), ("optimizers", self.optimizers), ("stateful", self.stateful)):
            saved = ckpt[kind]
            if set(saved) != set(objs):
                raise ValueError(
                    f"{self.checkpoint_path}: checkpoint holds {kind} {sorted(saved)}, this run has {sorted(objs)}"
                )
            for name, obj in objs.items():
                obj.load_state_dict(saved[name])
        self.epoch = int(ckpt["epoch"])
        self.global_step = int(ckpt["global_step"])
        self.epoch_step = int(ckpt.get("epoch_step", 0))
        rng, epoch_rng = ckpt["rng"], ckpt.get("epoch_rng")
        if len(ckpt.get("rng_ranks", [])) == self.shard.world:  # the same number of processes as before
            rng = ckpt["rng_ranks"][self.shard.rank]
            epoch_rng = ckpt.get("epoch_rng_ranks", [epoch_rng] * self.shard.world)[self.shard.rank]
        set_rng_state(rng)
        # Inside an epoch: fit() replays the loader up to this step, then restores these states again, so the
        # next batch is drawn exactly as in an uninterrupted run.
        self._resume_rng = rng if self.epoch_step else None
        self._epoch_rng = epoch_rng if self.epoch_step else None
        if self.shard.is_main:
            self._truncate_log()
        self.shard.barrier()
        return True

    # -- the log
    def read_log(self) -> pd.DataFrame:
        """The per-step log as a DataFrame (empty with the standard columns if nothing was logged)."""
        if not self.log_path.is_file() or self.log_path.stat().st_size == 0:
            return pd.DataFrame(columns=list(LOG_PREFIX))
        return pd.read_csv(self.log_path)

    def _truncate_log(self) -> None:
        # Rows written after the checkpoint belong to the interrupted epoch, which will run again.
        if not self.log_path.is_file():
            return
        with open(self.log_path, newline="") as f:
            rows = list(csv.reader(f))
        if not rows:
            return
        header, body = rows[0], rows[1:]
        step_col = header.index("step")
        kept = [r for r in body if len(r) == len(header) and int(r[step_col]) < self.global_step]
        tmp = self.log_path.with_name(f".{LOG_NAME}.tmp{os.getpid()}")
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(kept)
        os.replace(tmp, self.log_path)

    # -- training
    def fit(
        self,
        make_loader: Callable[[int], Iterable],
        step: Callable[[Any, int, int], Mapping[str, float]],
        epochs: int,
        desc: str = "train",
        total_epochs: int | None = None,
    ) -> pd.DataFrame:
        """Train until ``epochs`` epochs are complete, resuming from the checkpoint if there is one.

        ``make_loader(epoch)`` gives the batches of one epoch; ``step(batch, epoch, global_step)`` trains on
        one batch and returns its loss terms as floats. Returns the per-step log. Calling ``fit`` on a run
        that already has ``epochs`` epochs just returns its log. ``total_epochs`` only labels the progress bar
        (a recipe that calls ``fit`` one epoch at a time shows "3/8", not "3/3").
        """
        if epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {epochs}")
        with self._exclusive():
            return self._fit(make_loader, step, epochs, desc, total_epochs)

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Hold the run folder's lock while training: a second process training the same run (two notebooks, a
        notebook and a test) waits, then resumes from the first one's checkpoint instead of writing over it.
        Only rank 0 of a multi-process run takes it (its other processes train the same run with it)."""
        if not self.shard.is_main:
            yield
            return
        import fcntl
        import sys

        with open(self.run_dir / LOCK_NAME, "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                print(f"{self.run_dir}: another process is training this run; waiting for it", file=sys.stderr)
                fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _fit(self, make_loader: Callable[[int], Iterable], step: Callable[[Any, int, int], Mapping[str, float]],
             epochs: int, desc: str, total_epochs: int | None) -> pd.DataFrame:
        self.stopped = False
        if not self.resume():
            seed_everything(self.seed)
            self.epoch = self.global_step = self.epoch_step = 0
            if self.shard.is_main and self.log_path.exists():
                self.log_path.unlink()  # a log without a checkpoint is from a run that never saved a step
            self.shard.barrier()
        columns: list[str] | None = None
        if self.log_path.is_file():
            with open(self.log_path, newline="") as f:
                columns = next(csv.reader(f), None)
        every = self.limits.checkpoint_every
        while self.epoch < epochs:
            epoch = self.epoch
            if self.epoch_step and self._epoch_rng is not None:
                set_rng_state(self._epoch_rng)  # the loader of the interrupted epoch, made as it was
            else:
                self._epoch_rng = rng_state()
            loader = make_loader(epoch)
            total = len(loader) if hasattr(loader, "__len__") else None  # type: ignore[arg-type]
            batches = iter(loader)
            if self.epoch_step:
                # resuming inside this epoch: draw (and drop) the batches already trained on, then put the RNG
                # states back to where the checkpoint left them
                for _ in range(self.epoch_step):
                    next(batches)
                if self._resume_rng is not None:
                    set_rng_state(self._resume_rng)
                    self._resume_rng = None
            bar = tqdm(
                batches,
                total=total,
                initial=self.epoch_step,
                desc=f"{desc} {epoch + 1}/{total_epochs or epochs}",
                disable=not self.show_progress or not self.shard.is_main,
                leave=False,
                dynamic_ncols=True,
            )
            # only rank 0 writes the log (the terms are averaged over the processes first)
            with open(self.log_path if self.shard.is_main else os.devnull, "a", newline="") as logf:
                writer = csv.writer(logf)
                t0 = time.perf_counter()
                for batch in bar:
                    terms = step(batch, epoch, self.global_step)
                    wall = time.perf_counter() - t0
                    terms = self.shard.mean(self._check_terms(terms, epoch))
                    if columns is None:
                        columns = [*LOG_PREFIX, *terms]
                        writer.writerow(columns)
                    elif list(terms) != columns[len(LOG_PREFIX) :]:
                        raise ValueError(
                            f"{self.log_path}: step {self.global_step} returned terms {list(terms)}, but the log "
                            f"has columns {columns[len(LOG_PREFIX):]}; a step must always return the same keys"
                        )
                    writer.writerow([epoch, self.global_step, f"{wall:.6f}", *(repr(v) for v in terms.values())])
                    logf.flush()
                    self.global_step += 1
                    self.epoch_step += 1
                    if self.show_progress:
                        bar.set_postfix({k: f"{v:.4g}" for k, v in list(terms.items())[:4]}, refresh=False)
                    count_step()
                    if total is None or self.epoch_step < total:
                        if self.shard.any(time_is_up()):
                            self.save_checkpoint()
                            self.stopped = True
                            break
                        if every and self.epoch_step % every == 0:
                            self.save_checkpoint()
                    t0 = time.perf_counter()
            bar.close()
            if self.stopped:
                self.shard.barrier()
                return self.read_log()
            self.epoch, self.epoch_step = epoch + 1, 0
            self.save_checkpoint()
            if self.shard.any(time_is_up()) and self.epoch < epochs:
                self.stopped = True
                return self.read_log()
        return self.read_log()

    def _check_terms(self, terms: Mapping[str, float], epoch: int) -> dict[str, float]:
        if not isinstance(terms, Mapping) or not terms:
            raise TypeError(f"step must return a non-empty dict of floats, got {type(terms).__name__}")
        out: dict[str, float] = {}
        for k, v in terms.items():
            if k in LOG_PREFIX:
                raise ValueError(f"step returned the reserved log column {k!r}")
            out[str(k)] = float(v.item() if isinstance(v, torch.Tensor) else v)
        bad = {k: v for k, v in out.items() if not math.isfinite(v)}
        if bad:
            shown = ", ".join(f"{k}={v}" for k, v in out.items())
            raise TrainingDiverged(
                f"training diverged at step {self.global_step} (epoch {epoch}): non-finite "
                f"{sorted(bad)}; loss terms: {shown}. The last good checkpoint is {self.checkpoint_path} "
                f"(epoch {self.epoch}); lower the learning rate or the loss weights."
            )
        return out


# The checkpoint readers live in deidkit.checkpoints (inference reads runs without the training loop).
__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_NAME", "CONFIG_NAME", "LOG_NAME", "RunLimits", "TimeLimitReached",
           "TrainingCollapsed", "TrainingDiverged", "TrainingRun", "collapsed_in_last_epoch", "load_checkpoint",
           "load_module_state", "option_is_off", "rng_state", "run_limits", "same_setting", "seed_everything",
           "set_rng_state", "time_is_up"]

