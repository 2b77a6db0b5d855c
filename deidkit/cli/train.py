"""``deidkit train`` and ``deidkit export``: train (or resume) a model of a profile, then ship a run's
generator in deidkit/weights."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path


def parse_overrides(items: list[str]) -> dict:
    """``k=v`` strings -> a dict; values are read as JSON when they parse (numbers, lists, null), else strings."""
    import json

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r} is not of the form key=value")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


#: Exit status of ``deidkit train`` when ``--max-minutes`` stopped the run before it finished (one process; under
#: torchrun, which reads any other status than 0 as a failure, the workers end with 0 and print that they stopped).
EXIT_STOPPED = 3
#: Exit status of ``deidkit train`` when training diverged (non-finite losses) or collapsed to the identity map:
#: one line naming the run and what to change, no traceback.
EXIT_DIVERGED = 4


def train_command(args: argparse.Namespace) -> int:
    """Train (or resume, or load when finished) one model of a profile; prints the run folder at the end.
    With ``--max-minutes`` it may stop early with a checkpoint (exit status 3); the same command continues."""
    import torch

    from deidkit.checkpoints import load_checkpoint
    from deidkit.train.distributed import setup
    from deidkit.train.loop import TimeLimitReached, TrainingDiverged, run_limits

    shard = setup()  # under torchrun: join the process group (DDP); otherwise one process
    say = print if shard.is_main else (lambda *a, **k: None)
    overrides = parse_overrides(args.overrides or [])
    if args.threads:
        torch.set_num_threads(args.threads)
    with _one_cpu_training(shard.active, say), run_limits(args.max_minutes, args.checkpoint_every):
        try:
            if args.model == "live":
                from deidkit.configs import LiveConfig
                from deidkit.train.live import default_run_dir, train_live

                cfg = LiveConfig.profile(args.profile, **overrides)
                run_dir = default_run_dir(args.profile) if args.run_dir is None else Path(args.run_dir)
                train_live(cfg, run_dir=run_dir, until_epoch=args.until_epoch)
                target = cfg.epochs if args.until_epoch is None else min(cfg.epochs, args.until_epoch)
            elif args.model == "detail":  # the live model's detail stage
                from deidkit.configs import DetailConfig
                from deidkit.train.detail import default_detail_run_dir, train_detail

                cfg = DetailConfig.profile(args.profile, **overrides)
                run_dir = default_detail_run_dir(args.profile) if args.run_dir is None else Path(args.run_dir)
                train_detail(cfg, run_dir=run_dir)
                target = cfg.epochs
            elif args.model == "fadenet":
                from deidkit.configs import FaDeNetConfig
                from deidkit.train.fadenet import train_fadenet

                cfg = FaDeNetConfig.profile(args.profile, **overrides)
                run_dir = train_fadenet(cfg, run_dir=args.run_dir).run_dir
                target = cfg.epochs
            else:
                from deidkit.checkpoints import runs_dir
                from deidkit.configs import CriticConfig
                from deidkit.train.critic import train_critic

                cfg = CriticConfig.profile(args.profile, **overrides)
                run_dir = Path(args.run_dir) if args.run_dir else runs_dir() / cfg.name
                train_critic(cfg, run_dir=run_dir)
                target = cfg.epochs
        except TimeLimitReached as exc:
            say(f"deidkit train: stopped at the time limit: {exc}", file=sys.stderr)
            return 0 if shard.active else EXIT_STOPPED
        except TrainingDiverged as exc:  # non-finite losses, or a collapse that halving the rate did not cure
            say(f"deidkit train: {exc}", file=sys.stderr)
            return EXIT_DIVERGED
    ckpt = load_checkpoint(run_dir)
    if ckpt["epoch"] < target:
        # torchrun reports any non-zero worker status as a failure: under it a stop is status 0 and this line
        say(f"stopped {args.model} ({args.profile}) after {args.max_minutes:g} min at epoch {ckpt['epoch']} "
              f"(+{ckpt.get('epoch_step', 0)} steps) of {target}; run the same command to continue: {run_dir}")
        return 0 if shard.active else EXIT_STOPPED
    say(f"trained {args.model} ({args.profile}) in {shard.world} process{'es' if shard.active else ''}: {run_dir}"
        f"\n{_run_summary(Path(run_dir))}")
    return 0


@contextlib.contextmanager
def _one_cpu_training(distributed: bool, say) -> Iterator[None]:
    """Warn when another ``deidkit train`` runs on this machine's CPU (see :mod:`deidkit.train.exclusive`); GPU
    and torchrun trainings share their devices on purpose and skip it."""
    import torch

    if distributed or torch.cuda.is_available():
        yield
        return
    from deidkit.assets import cache_dir
    from deidkit.train.exclusive import training_lock

    with training_lock(cache_dir() / "train.lock") as warning:
        if warning:
            say(f"deidkit train: warning: {warning}", file=sys.stderr)
        yield


def _run_summary(run_dir: Path) -> str:
    """One line of a finished run's metrics: its metrics.json (critic, FaDeNet) or its last epoch's mean terms."""
    import json

    import pandas as pd

    path = run_dir / "metrics.json"
    if path.is_file():
        m = json.loads(path.read_text())
        keep = {k: v for k, v in m.items() if isinstance(v, (int, float)) and not k.startswith(("wall", "critic_wall"))}
    else:
        log = pd.read_csv(run_dir / "log.csv")
        last = log[log["epoch"] == log["epoch"].max()].drop(columns=["epoch", "step", "wall_s"])
        keep = {f"last_epoch_{k}": v for k, v in last.mean().items()}
    return "metrics: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in keep.items())


def lineage(init_from: str, run_dir: Path) -> tuple[float, int, list[str]]:
    """(training seconds, steps, [what it started from, what that started from, ...]) behind ``init_from``, the
    starting point of the run ``run_dir``: a shipped model (``pretrained:<name>``: the manifest record the run kept
    when it started, else today's manifest, marked so) or a run's snapshot, followed back through the runs' own
    ``init_from``."""
    import json

    import pandas as pd
    import torch

    if init_from.startswith("pretrained:"):
        from deidkit.checkpoints import init_record
        from deidkit.pretrained import read_manifest

        base = init_record(run_dir)
        kept = base is not None and base.get("init_from") == init_from
        if not kept:  # a run from before the record was kept: the shipped file may have changed since
            base = read_manifest()["models"][init_from.split(":", 1)[1]]
        desc = (f"{init_from} (sha256 {base['sha256'][:12]}, run {base.get('run', '?')} {base.get('checkpoint', '')}"
                + ("" if kept else "; as shipped at export, the run kept no record") + ")")
        return float(base.get("training_time_s", 0.0)), int(base.get("steps_trained", 0)), [desc]
    from deidkit.assets import cache_dir

    init = Path(init_from).expanduser()
    init = init if init.is_absolute() else cache_dir() / init
    base_run = init.parent.parent
    snap = torch.load(init, map_location="cpu", weights_only=True)
    base_log = pd.read_csv(base_run / "log.csv")
    if snap.get("global_step") is not None:
        base_log = base_log[base_log["step"] <= snap["global_step"]]
    elif snap.get("epoch") is not None:
        base_log = base_log[base_log["epoch"] < snap["epoch"]]  # the log counts epochs from 0, snapshots from 1
    seconds, steps = float(base_log["wall_s"].sum()), int(len(base_log))
    chain = [f"{base_run.name}/{init.relative_to(base_run).as_posix()}"]
    base_cfg = json.loads((base_run / "config.json").read_text())
    if base_cfg.get("init_from"):
        more_s, more_n, more = lineage(base_cfg["init_from"], base_run)
        seconds, steps, chain = seconds + more_s, steps + more_n, chain + more
    return seconds, steps, chain


#: Fields that name a run, or say where it ran and read its data, rather than define its training (ignored when a
#: run is shipped as a profile).
_NAMING_FIELDS = {"profile_name", "run_name", "init_from", "critic_dir", "crop_pack", "device", "threads", "workers"}


def as_profile(model: str, config: dict, profile: str) -> dict:
    """``config`` recorded as the named profile, so that ``make reproduce RETRAIN=1`` compares the shipped model
    with that profile's run; refused unless the run trained with exactly that profile's settings (a run started
    with ``--profile standard --overrides ...`` that matches ``profile`` field for field)."""
    import dataclasses

    from deidkit.configs import FaDeNetConfig, LiveConfig
    from deidkit.train.loop import option_is_off

    cls = FaDeNetConfig if model == "fadenet" else LiveConfig
    target = dataclasses.asdict(cls.profile(profile))
    # an option added after the run was trained and left off in the profile is what the run trained with
    differ = sorted(k for k, v in target.items() if k not in _NAMING_FIELDS
                    and (list(v) if isinstance(v, tuple) else v) != config.get(k)
                    and not (k not in config and option_is_off(v)))
    if differ:
        raise ValueError(f"the run differs from profile {profile!r} in {differ}; it cannot be shipped as that profile")
    return {**config, "profile_name": profile, "trained_as": config.get("profile_name")}


def export_command(args: argparse.Namespace) -> int:
    """Ship a trained run's generator (fp16 unless --dtype float32) in deidkit/weights under the model's name."""
    import json

    import pandas as pd

    from deidkit.checkpoints import load_checkpoint
    from deidkit.pretrained import export_pretrained

    if args.model == "detail":  # the live model's detail stage, shipped beside a shipped live model's generator
        from deidkit.checkpoints import load_checkpoint
        from deidkit.pretrained import export_detail
        from deidkit.train.detail import default_detail_run_dir

        run_dir = Path(args.run_dir) if args.run_dir else default_detail_run_dir(args.profile)
        ckpt = load_checkpoint(run_dir)
        log = pd.read_csv(run_dir / "log.csv")
        path = export_detail(args.attach_to, ckpt["modules"]["detail"], json.loads((run_dir / "config.json").read_text()),
                             run_dir.name, steps=int(ckpt["global_step"]), training_time_s=float(log["wall_s"].sum()),
                             append=args.append)
        print(f"shipped the detail stage of {run_dir} with {args.attach_to} as {path}")
        return 0
    if args.model == "live":
        from deidkit.deidentifiers.live import default_run_dir

        run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(args.profile)
        module = "generator"
    else:
        from deidkit.checkpoints import runs_dir
        from deidkit.configs import FaDeNetConfig

        run_dir = Path(args.run_dir) if args.run_dir else runs_dir() / FaDeNetConfig.profile(args.profile).name
        module = "unet"
    import torch

    config = json.loads((run_dir / "config.json").read_text())
    log = pd.read_csv(run_dir / "log.csv")
    if args.checkpoint:
        # a stage (live: stages/stage<k>.pt) or epoch (FaDeNet: epochs/epoch<NNN>.pt) snapshot of the run
        snap = torch.load(run_dir / args.checkpoint, map_location="cpu", weights_only=True)
        state = snap["state_dict"] if "state_dict" in snap else snap["unet"]
        step = snap.get("global_step")
        epoch = snap.get("epoch")
        if step is not None:
            log = log[log["step"] <= step]
        elif epoch is not None:
            log = log[log["epoch"] < epoch]  # the log counts epochs from 0, snapshots from 1
    else:
        ckpt = load_checkpoint(run_dir)
        state, epoch = ckpt["modules"][module], int(ckpt["epoch"])
    extra = {"run": run_dir.name, "checkpoint": args.checkpoint or "final", "steps_trained": int(len(log))}
    seconds = float(log["wall_s"].sum())
    if config.get("init_from"):  # a fine-tuning run: the training of what it started from counts too
        base_seconds, base_steps, chain = lineage(config["init_from"], run_dir)
        seconds += base_seconds
        extra.update(fine_tuned_from=" <- ".join(chain), steps_trained=int(len(log) + base_steps))
        if not config["init_from"].startswith("pretrained:"):
            config = {**config, "init_from": f"runs/{chain[0]}"}  # no machine path in the manifest
    if args.as_profile:
        config = as_profile(args.model, config, args.as_profile)
    # inference options chosen on the selection set (deidkit select --strengths --feathers)
    options = {k: v for k, v, off in (("strength", args.strength, 1.0), ("feather", args.feather, 0.0)) if v != off}
    if args.colour_match:
        options["colour_match"] = True
    if args.detail_cap:
        options["detail_cap"] = args.detail_cap
    if options:
        extra["inference"] = options
    name = args.name or args.model
    if not name.startswith(args.model):
        raise ValueError(f"--name {name!r}: a shipped {args.model} model's name starts with {args.model!r}")
    path = export_pretrained(name, args.model, state, config, training_time_s=seconds, extra=extra,
                             dtype=args.dtype)
    print(f"shipped {name} ({args.model}) from {run_dir} as {path} ({path.stat().st_size / 2**20:.1f} MB)")
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    """``deidkit train``."""
    from deidkit.configs import training_profiles

    p = sub.add_parser("train", help="train (resume, or load when finished) a model of a profile")
    p.add_argument("model", choices=["critic", "fadenet", "live", "detail"],
                   help="detail: the live model's 2x detail stage (profiles tiny, quick, smooth, gpu)")
    p.add_argument("--profile", default="quick", choices=training_profiles())
    p.add_argument("--overrides", nargs="*", default=None, help="config fields as key=value (JSON values)")
    p.add_argument("--run-dir", default=None, help="run folder (default: the profile's under $DEIDKIT_CACHE/runs)")
    p.add_argument("--until-epoch", type=int, default=None, help="live: stop after this epoch (resume later)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="stop cleanly with a checkpoint after this much training (exit status 3); the same command "
                        "continues, to the same final weights as one uninterrupted run")
    p.add_argument("--checkpoint-every", type=int, default=None,
                   help="also checkpoint every N steps inside an epoch (a crash loses at most N steps)")
    p.set_defaults(func=train_command)


def _add_export(sub: argparse._SubParsersAction) -> None:
    """``deidkit export``."""
    from deidkit.configs import training_profiles

    p = sub.add_parser("export", help="ship a trained run's generator in deidkit/weights (maintainers)")
    p.add_argument("model", choices=["fadenet", "live", "detail"],
                   help="detail: a live detail stage, shipped with the live model --attach-to names")
    p.add_argument("--attach-to", default="live", help="detail: the shipped live model it enlarges")
    p.add_argument("--append", action="store_true",
                   help="detail: add the stage after the model's shipped stages (e.g. a 128 -> 256 px stage after the "
                        "64 -> 128 one) instead of replacing them")
    p.add_argument("--profile", default="standard", choices=training_profiles())
    p.add_argument("--run-dir", default=None)
    p.add_argument("--checkpoint", default=None, help="a snapshot inside the run folder, e.g. stages/stage1.pt "
                   "or epochs/epoch005.pt (default: the final checkpoint)")
    p.add_argument("--dtype", default="float16", choices=["float16", "float32"], help="how the weights are stored")
    p.add_argument("--as-profile", default=None,
                   help="record the run as this profile (checked field by field), for make reproduce RETRAIN=1")
    p.add_argument("--strength", type=float, default=1.0,
                   help="FaDeNet: the strength it is loaded with (chosen by deidkit select --strengths)")
    p.add_argument("--feather", type=float, default=0.0,
                   help="FaDeNet: the face box's feathered edge it is loaded with (chosen by deidkit select --feathers)")
    p.add_argument("--colour-match", action="store_true",
                   help="FaDeNet: load it colour matched (the face box keeps the input's exposure and white balance)")
    p.add_argument("--detail-cap", type=float, default=0.0,
                   help="FaDeNet: load it with this detail cap (added detail at most k x what the blur removed; 0: off)")
    p.add_argument("--name", default=None, help="the shipped model's name (default: the model kind; another name "
                   "ships a second model of that kind beside it)")
    p.set_defaults(func=export_command)


#: Each command's parser, by name.
_PARSERS = {"train": _add_train, "export": _add_export}


def add_parsers(subparsers: argparse._SubParsersAction, names: Iterable[str] | None = None) -> None:
    """Add this module's commands to the ``deidkit`` subparsers (``names``: only these, in this order;
    :func:`deidkit.cli.build_parser` interleaves the modules to keep the order of ``deidkit --help``)."""
    for name in names or _PARSERS:
        _PARSERS[name](subparsers)
