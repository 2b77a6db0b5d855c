"""The ``deidkit`` command."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

from deidkit.assets import AssetError
from deidkit.pipeline.cli import add_video_commands
from deidkit.pipeline.io import VideoError


def _reports(args: argparse.Namespace) -> int:
    from deidkit.reports import run_reports

    out = run_reports(profile=args.profile, out=args.out, only=args.only, html=not args.no_html,
                      parameters={"retrain": True} if args.retrain else None)
    print(f"reports written to {out}")
    return 0


def _data(args: argparse.Namespace) -> int:
    from deidkit.data import lfw

    if args.action == "locate":
        print(lfw.lfw_root(args.path))
    elif args.action == "download":
        print(lfw.lfw_root(args.path, download=True))
    elif args.action == "verify":
        problems = lfw.verify_files(lfw.load_manifest("lfw_files"), lfw.lfw_root(args.path))
        for p in problems:
            print(p, file=sys.stderr)
        print(f"{len(problems)} problem(s)")
        return 1 if problems else 0
    elif args.action == "align":
        rec = lfw.align_lfw(detector=args.detector, size=args.size, root=lfw.lfw_root(args.path))
        print(rec["status"].value_counts().to_string())
    elif args.action == "pack":
        from deidkit.data.packs import pack_error, write_crop_pack

        if not args.out:
            raise ValueError("deidkit data pack needs --out FILE.npz")
        lfw.lfw_root(args.path)
        rows = lfw.load_manifest(args.manifest)
        if args.critic_identities:  # FaDeNet's data: the critic's identities (train and held-out split)
            if "critic_split" not in rows.columns:
                raise ValueError(f"manifest {args.manifest} has no critic_split column (--critic-identities)")
            rows = rows[rows["critic_split"].isin(["train", "heldout"])]
        info = write_crop_pack(list(rows["path"]), args.out, size=args.size, quality=args.quality)
        print(f"{args.out}: {info['images']} crops at {info['size']} px, {info['bytes'] / 2**20:.1f} MiB, "
              f"JPEG quality {info['quality']}, mean error {pack_error(args.out):.2f} levels")
    return 0


def _parse_overrides(items: list[str]) -> dict:
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


def _train(args: argparse.Namespace) -> int:
    """Train (or resume, or load when finished) one model of a profile; prints the run folder at the end.
    With ``--max-minutes`` it may stop early with a checkpoint (exit status 3); the same command continues."""
    import torch

    from deidkit.checkpoints import load_checkpoint
    from deidkit.train.distributed import setup
    from deidkit.train.loop import TimeLimitReached, TrainingDiverged, run_limits

    shard = setup()  # under torchrun: join the process group (DDP); otherwise one process
    say = print if shard.is_main else (lambda *a, **k: None)
    overrides = _parse_overrides(args.overrides or [])
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


def _benchmark_video(args: argparse.Namespace) -> int:
    """Frames/s of the whole video pipeline on this machine (360p, and 1080p with ~11 faces per frame);
    records merge into reports/metrics/video_speed.json (one per case)."""
    from deidkit.pipeline.benchmark import benchmark_video
    from deidkit.reports import merge_metrics

    new = benchmark_video(args.cases, max_frames=args.frames, threads=args.threads or -1,
                          detect_side=args.detect_side)
    for r in new:
        stages = ", ".join(f"{k} {v:.1f}" for k, v in r["stage_ms_per_frame"].items())
        print(f"{r['name']}: {r['value']:.1f} frames/s ({r['resolution']}, {r['faces_per_frame']:.1f} faces/frame, "
              f"{r['cpu_ms_per_frame']:.0f} CPU-ms/frame, ceiling {r['ceiling_fps']:.1f} frames/s on "
              f"{r['cpu_count']} cores) [ms/frame: {stages}]")
    merge_metrics(new, "video_speed", ("name",), args.out)
    return 0


def _benchmark_detection(args: argparse.Namespace) -> int:
    """Faces found by face width and detection side on a 1920x1080 canvas of LFW photos; records merge into
    reports/metrics/detection_by_size.json."""
    from deidkit.pipeline.benchmark import detection_by_face_size
    from deidkit.reports import merge_metrics

    new = detection_by_face_size(tuple(s or None for s in args.sides), tuple(args.widths), faces=args.faces)
    for side in dict.fromkeys(r["detect_side"] for r in new):
        rows = [r for r in new if r["detect_side"] == side]
        found = ", ".join(f"{r['face_px']}px {r['found']}/{r['faces']}" for r in rows)
        print(f"detect side {side or 'full'}: {sum(r['ms_per_frame'] for r in rows) / len(rows):.0f} ms/frame; {found}")
    merge_metrics(new, "detection_by_size", ("detect_side", "face_px"), args.out)
    return 0


def _benchmark_train(args: argparse.Namespace) -> int:
    """Training images/s of each model named, on this machine; records merge into reports/metrics/train_speed.json
    (one per model, profile, device and process count)."""
    from deidkit.reports import merge_metrics
    from deidkit.train.distributed import setup
    from deidkit.train.speed import benchmark_training

    shard = setup()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    new = [benchmark_training(m, args.profile, steps=args.steps, device=args.device) for m in args.models]
    if not shard.is_main:
        return 0
    for r in new:
        print(f"{r['model']:8s} {r['profile']:8s} {r['device']:6s} x{r['world_size']}: "
              f"{r['images_per_s']:.1f} images/s (batch {r['batch_size']}, {r['steps']} steps)")
    merge_metrics(new, "train_speed", ("model", "profile", "device", "world_size"), args.out)
    return 0


def _realism(args: argparse.Namespace) -> int:
    """Realism measures (sharpness, colour shift, two-sample probe) of de-identifiers and the naive families."""
    from deidkit.deidentifiers import load_deidentifier
    from deidkit.eval.realism import measure_realism
    from deidkit.reports import record_metrics

    names = list(args.methods)
    if not args.no_naive:
        from deidkit.eval.frontier import NAIVE_FAMILIES

        names += ["original", *[n for members in NAIVE_FAMILIES.values() for n in members]]
    methods = []
    for name in dict.fromkeys(names):
        try:
            methods.append(load_deidentifier(name))
        except KeyError as exc:
            raise ValueError(str(exc.args[0])) from None
    records, _ = measure_realism(methods, protocol=args.protocol, levels=args.levels, n_identities=args.identities,
                                 train_images=args.train_images)
    path = record_metrics(records, args.name, args.out)
    for r in records:
        print(f"{r['level']:5s} {r['deidentifier']:28s} sharpness {r['sharpness']:.2f}  colour shift "
              f"{r['colour_shift']:.2f}  c2st {r['c2st']:.3f}  (n {r['n']})")
    if args.grid:  # what a viewer sees: faces at 256 pixels, original above each model's output
        from deidkit.data.images import save_image
        from deidkit.data.lfw import alignment_record, load_manifest
        from deidkit.eval.frontier import load_photos, photo_rows
        from deidkit.eval.realism import face_views
        from deidkit.plots import face_mosaic
        from deidkit.reports import reports_dir

        shown = load_manifest(args.protocol).groupby("identity", sort=True).head(1).head(args.grid)
        files = load_manifest("lfw_files")
        mats = [alignment_record(p, 224, "yunet", files)["matrix"] for p in shown["path"]]
        from deidkit.eval.frontier import family_of

        # the named models and one naive reference (blur sigma 8), not every naive strength
        learned = [m for m in methods if m.name in args.methods and m.name != "original" and family_of(m.name) is None]
        learned += [m for m in methods if m.name == "blur_sigma8"]
        rows = face_views(photo_rows(learned, load_photos(shown["path"].tolist())), mats)
        grid = reports_dir(args.out) / "figures" / f"{args.name}_faces.png"
        save_image(grid, face_mosaic(rows, ["original", *[m.name for m in learned]]))
        print(f"faces {grid}")
    if args.frontier:  # the privacy-utility figure with a realism axis, from that frontier run's tables
        import matplotlib
        import pandas as pd

        matplotlib.use("Agg")
        from deidkit.plots import realism_figure
        from deidkit.reports import reports_dir, save_figure

        metrics = reports_dir(args.out) / "metrics"
        tables = {}
        for lv in args.levels:  # the tables of one or more frontier runs, each point once
            parts = [pd.read_csv(metrics / f"{n}_{lv}.csv") for n in args.frontier if (metrics / f"{n}_{lv}.csv").is_file()]
            if parts:
                tables[lv] = pd.concat(parts).drop_duplicates(["deidentifier", "recognizer"]).reset_index(drop=True)
        if not tables:
            raise FileNotFoundError(f"{metrics}: no tables (<name>_crop.csv, <name>_image.csv) of deidkit frontier "
                                    f"--name {' / '.join(args.frontier)}")
        recognizers = list(dict.fromkeys(next(iter(tables.values()))["recognizer"]))
        fig = save_figure(realism_figure(tables, records, recognizers), args.name, args.out)
        print(f"figure {fig}")
    print(f"records {path}")
    return 0


def _attack(args: argparse.Namespace) -> int:
    """The plain, the adapted (and with --reversal the reversal) attacker against each de-identifier; records go to
    reports/metrics/<name>.json."""
    from deidkit.deidentifiers import load_deidentifier
    from deidkit.eval.attack import adapted_attack_records, attack_split, attack_table
    from deidkit.recognizers import get_recognizer
    from deidkit.reports import record_metrics

    methods = [load_deidentifier(n) for n in args.methods]
    split = attack_split(args.protocol, max_images=args.train_images)
    recognizers = [get_recognizer(n) for n in args.recognizers]
    records = adapted_attack_records(methods, recognizers, split)
    if args.reversal:
        from deidkit.eval.attack import ReversalConfig, reversal_attack_records

        records += reversal_attack_records(methods, recognizers, split, ReversalConfig.profile(args.reversal))
    print(attack_table(records).round(3).to_string(index=False))
    print(f"records: {record_metrics(records, args.name, args.out)}")
    return 0


def _ci(interval: list[float] | None) -> str:
    return "" if not interval else f"[{interval[0]:.3f}, {interval[1]:.3f}]"


def _frontier(args: argparse.Namespace) -> int:
    """Measure de-identifiers against the naive frontier; records go to reports/metrics/<name>.json."""
    from deidkit.deidentifiers import load_deidentifier
    from deidkit.eval.frontier import measure_frontier
    from deidkit.eval.selection import SELECTION_PROTOCOL
    from deidkit.recognizers import get_recognizer
    from deidkit.reports import record_metrics

    judges = sorted(set(args.recognizers) & set(JUDGES))
    if args.protocol == SELECTION_PROTOCOL and judges:
        # what the judges read on the selection identities would steer the choice of models: they never see them
        raise ValueError(f"--protocol {SELECTION_PROTOCOL} is for the trained-against recogniser only; drop the "
                         f"judges {', '.join(judges)} (e.g. --recognizers mobilefacenet_ms1m), or use deidkit select")
    methods = []
    for name in args.methods:
        try:
            methods.append(load_deidentifier(name))
        except KeyError as exc:
            raise ValueError(str(exc.args[0])) from None
    recognizers = [get_recognizer(n) for n in args.recognizers]
    tables, records = measure_frontier(methods, recognizers, protocol_name=args.protocol, levels=args.levels,
                                       n_identities=args.identities,
                                       rank_gallery=None if args.no_gallery else "lfw_all_identities",
                                       rank_gallery_identities=args.gallery_identities)
    if methods:  # pose and expression kept? (the live target: no worse than blur sigma 8)
        from deidkit.baselines import get_deidentifier
        from deidkit.eval.temporal import landmark_records

        records += landmark_records([*methods, get_deidentifier("blur_sigma8")], args.protocol)
    path = record_metrics(records, args.name, args.out)
    if args.update_manifest:  # the shipped models' headline metrics, from this very run
        from deidkit.pretrained import shipped_models, update_metrics

        for name in [m.name for m in methods if m.name in shipped_models()]:
            keep = ("ssim", "rank1", "rank1_std", "frontier_rank1", "margin_sd", "detection_rate", "median_true_rank")
            update_metrics(name, {f"{r['level']}/{r['recognizer']}": {k: r[k] for k in keep}
                                  for r in records if r["kind"] == "frontier" and r["deidentifier"] == name}
                           | {f"landmarks/{r['protocol']}": {"iod_mean": r["iod_mean"], "faces": r["faces"]}
                              for r in records if r["kind"] == "landmarks" and r["deidentifier"] == name}
                           | {"source": f"reports/metrics/{args.name}.json"})
            print(f"manifest metrics of the shipped {name} updated")
    for level, table in tables.items():  # every evaluated point, naive ones included, for the figure
        table.drop(columns=["rank1_by_identity"], errors="ignore").to_csv(path.with_name(f"{args.name}_{level}.csv"),
                                                                           index=False)
    import matplotlib

    matplotlib.use("Agg")
    from deidkit.plots import frontier_figure
    from deidkit.reports import save_figure

    fig = save_figure(frontier_figure(tables, [r.name for r in recognizers]), args.name, args.out)
    print(f"figure {fig}")
    if methods and "image" in tables:
        from deidkit.baselines import get_deidentifier
        from deidkit.data.lfw import load_manifest
        from deidkit.eval.frontier import closest_naive, load_photos, photo_rows
        from deidkit.plots import image_grid

        show = load_manifest(args.protocol).groupby("identity", sort=True).head(1).head(6)
        t = tables["image"]
        blur = closest_naive(t, recognizers[0].name, float(t[t["deidentifier"] == methods[0].name]["ssim"].iloc[0]))
        shown = [*methods, get_deidentifier(blur)]
        rows = photo_rows(shown, load_photos(show["path"].tolist()))
        grid = image_grid(rows, row_titles=["original"] + [d.name for d in shown],
                          col_titles=[n[:16] for n in show["identity"]], size=2.0)
        print(f"photos {save_figure(grid, f'{args.name}_photos', args.out)}")
    for r in records:
        if r["kind"] == "frontier" and r["deidentifier"] in args.methods:
            print(f"{r['level']:5s} {r['deidentifier']:10s} {r['recognizer']:20s} SSIM {r['ssim']:.3f} "
                  f"Rank-1 {r['rank1']:.3f} {_ci(r.get('rank1_ci'))} frontier {r['frontier_rank1']:.3f} gap "
                  f"{r['frontier_rank1'] - r['rank1']:+.3f} {_ci(r.get('gap_ci'))} margin {r['margin_sd']:+.1f} SD "
                  f"detected {r['detection_rate']:.3f} median rank {r['median_true_rank']:.0f}")
        elif r["kind"] == "landmarks":
            print(f"landmarks {r['deidentifier']:10s} mean displacement {r['iod_mean']:.4f} of the eye-corner "
                  f"distance ({r['faces']} faces)")
    print(f"records written to {path}")
    return 0


def _lineage(init_from: str, run_dir: Path) -> tuple[float, int, list[str]]:
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
        more_s, more_n, more = _lineage(base_cfg["init_from"], base_run)
        seconds, steps, chain = seconds + more_s, steps + more_n, chain + more
    return seconds, steps, chain


#: Fields that name a run, or say where it ran and read its data, rather than define its training (ignored when a
#: run is shipped as a profile).
_NAMING_FIELDS = {"profile_name", "run_name", "init_from", "critic_dir", "crop_pack", "device", "threads", "workers"}


def _as_profile(model: str, config: dict, profile: str) -> dict:
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


def _export(args: argparse.Namespace) -> int:
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
                             run_dir.name, steps=int(ckpt["global_step"]), training_time_s=float(log["wall_s"].sum()))
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
        base_seconds, base_steps, chain = _lineage(config["init_from"], run_dir)
        seconds += base_seconds
        extra.update(fine_tuned_from=" <- ".join(chain), steps_trained=int(len(log) + base_steps))
        if not config["init_from"].startswith("pretrained:"):
            config = {**config, "init_from": f"runs/{chain[0]}"}  # no machine path in the manifest
    if args.as_profile:
        config = _as_profile(args.model, config, args.as_profile)
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


#: Recognisers that judge the shipped models: never trained against, never used to select them.
JUDGES = ("dlib", "mobilefacenet_casia")


def _select(args: argparse.Namespace) -> int:
    """Pick the checkpoint to ship: the strongest (trained-against recogniser) that keeps ``--min-ssim`` on the
    selection set (identities outside the test protocol and the training data)."""

    from deidkit.eval.selection import select_checkpoint
    from deidkit.recognizers import get_recognizer
    from deidkit.reports import record_metrics

    if args.recognizer in JUDGES:
        raise ValueError(f"{args.recognizer} is a judge of the kit's evaluation: it never selects models")
    if args.landmark_locks and args.model != "live":
        raise ValueError("--landmark-locks applies to the live model only")
    if args.identities is not None and not (args.by_frontier and 2 <= args.identities <= 160):
        raise ValueError("--identities N (2-160) narrows the --by-frontier protocol: give --by-frontier too")
    if args.max_rank1 is not None and "crop" not in (args.by_frontier or []):
        raise ValueError("--max-rank1 bounds the crop-level Rank-1 of --by-frontier: give --by-frontier crop ...")
    if (args.feathers or args.epochs or args.colour_match or args.detail_cap) and args.model != "fadenet":
        raise ValueError("--feathers, --epochs, --colour-match and --detail-cap apply to FaDeNet only (the live model: --landmark-locks, "
                         "--strengths with --run-dir)")
    if args.strengths and args.model == "live" and not args.run_dir:
        raise ValueError("--strengths for the live model apply to a run's stages: give --run-dir")
    if args.apply and (not args.landmark_locks or args.run_dir):
        raise ValueError("--apply records the shipped live model's landmark lock in the manifest: give "
                         "--landmark-locks without --run-dir")
    if args.detail_runs:
        if args.model != "live" or args.run_dir or args.landmark_locks:
            raise ValueError("--detail-runs combines the shipped live models with detail stages: model live, "
                             "without --run-dir or --landmark-locks")
        from deidkit.deidentifiers import load_deidentifier

        run_dir = Path("shipped")
        cands = {}
        for base in args.bases:
            cands[base] = load_deidentifier(base)
            for run in args.detail_runs:
                cands[f"{base}+{Path(run).name}"] = load_deidentifier(f"{base}+{Path(run).name}")
    elif args.model == "live" and (args.run_dir or not args.landmark_locks):
        # each run's lambda-stage generators (default: the profile's run), at every landmark lock and strength given
        from deidkit.deidentifiers.live import default_run_dir
        from deidkit.eval.selection import live_snapshot_candidates

        run_dirs = [Path(d) for d in args.run_dir] if args.run_dir else [default_run_dir(args.profile)]
        run_dir = run_dirs[0]
        cands = live_snapshot_candidates(run_dirs, locks=args.landmark_locks, strengths=args.strengths)
    elif args.landmark_locks:
        # one shipped generator, several amounts of landmark locking (an inference option)
        from deidkit.pretrained import load_pretrained

        run_dir = Path("shipped")
        cands = {}
        for lock in args.landmark_locks:
            deid = load_pretrained("live")
            deid.landmark_lock = lock
            cands[f"landmark_lock={lock:g}"] = deid
    else:
        from deidkit.checkpoints import runs_dir
        from deidkit.configs import FaDeNetConfig
        from deidkit.eval.selection import fadenet_snapshot_candidates

        run_dirs = [Path(d) for d in args.run_dir] if args.run_dir else [
            runs_dir() / FaDeNetConfig.profile(args.profile).name]
        run_dir = run_dirs[0]
        cands = fadenet_snapshot_candidates(run_dirs, epochs=args.epochs, feathers=args.feathers,
                                            strengths=args.strengths, colour_match=args.colour_match,
                                            detail_cap=args.detail_cap)
    if args.with_shipped and cands:
        # the model the candidates must beat, measured the same way (with its manifest's inference options)
        from deidkit.pretrained import load_pretrained

        cands["shipped"] = load_pretrained(args.model)
    if not cands:
        raise FileNotFoundError(f"{run_dir}: no snapshots to select from")
    detector = None
    if args.min_detection is not None:
        from deidkit.data.alignment import make_detector

        detector = make_detector("yunet")
    from deidkit.data.lfw import aligned_crops
    from deidkit.eval.selection import selection_set

    chosen = selection_set(args.per_identity)
    crops = aligned_crops(chosen["path"].tolist())  # read once for the bound and the candidates
    labels = chosen["identity"].to_numpy() if args.per_identity > 1 else None
    predictor = max_landmarks = None
    if args.max_landmarks_vs:
        from deidkit.deidentifiers import load_deidentifier
        from deidkit.eval.selection import landmark_bound
        from deidkit.pipeline.faces import Dlib68

        predictor = Dlib68()
        reference = load_deidentifier(args.max_landmarks_vs)
        max_landmarks = landmark_bound(reference, predictor, ratio=args.landmarks_ratio, crops=crops)
        print(f"landmark bound: {args.landmarks_ratio:g} x {args.max_landmarks_vs}'s displacement = {max_landmarks:.4f}")
    name, table = select_checkpoint(cands, get_recognizer(args.recognizer), min_ssim=args.min_ssim, crops=crops,
                                    detector=detector, min_detection=args.min_detection, landmarks=predictor,
                                    max_landmarks=max_landmarks, labels=labels,
                                    max_colour_shift=args.max_colour_shift, max_warp_stretch=args.max_warp_stretch,
                                    min_sharpness=args.min_sharpness)
    if args.by_frontier:
        # the measure on the selection protocol: among the candidates within the bounds, the one furthest
        # beyond the naive frontier at its worse level (crop or whole photo), trained-against recogniser only
        from deidkit.eval.selection import frontier_margins, within_bounds

        ok = table[within_bounds(table, args.min_ssim, max_landmarks, args.min_detection,
                                 args.max_colour_shift, args.max_warp_stretch, args.min_sharpness)]["candidate"].tolist()
        name = None
        if ok:
            margins = frontier_margins({k: cands[k] for k in ok}, get_recognizer(args.recognizer),
                                       levels=tuple(args.by_frontier), n_identities=args.identities)
            table = table.merge(margins, on="candidate", how="left")
            defined = margins.dropna(subset=["min_margin_sd"])  # undefined: SSIM beyond every naive strength
            if args.max_rank1 is not None:  # the privacy bound first (crop level, selection protocol)
                defined = defined[defined["crop_rank1"] <= args.max_rank1]
            if len(defined):
                name = str(defined.loc[defined["min_margin_sd"].idxmax(), "candidate"])
    print(table.round(4).to_string(index=False))
    print(f"selected: {name}")
    if args.apply:
        if name is None:
            raise ValueError("no landmark lock keeps the bounds; the manifest is unchanged")
        from deidkit.pretrained import set_inference_options

        lock = float(name.split("=", 1)[1])
        set_inference_options("live", {"landmark_lock": lock} if lock else {})
        print(f"deidkit/weights/manifest.json: live now loads with landmark_lock={lock:g}")
    several = args.run_dir is not None and len(args.run_dir) > 1
    record_metrics([{"kind": "selection", "model": args.model,
                     "run": r["candidate"].split("/", 1)[0] if several else run_dir.name, **r, "min_ssim": args.min_ssim,
                     "per_identity": args.per_identity, "by_frontier": ",".join(args.by_frontier or []),
                     "min_detection": args.min_detection, "max_landmarks": max_landmarks,
                     "max_colour_shift": args.max_colour_shift, "max_warp_stretch": args.max_warp_stretch,
                     "max_rank1": args.max_rank1, "min_sharpness": args.min_sharpness,
                     "identities": args.identities,
                     "selected": r["candidate"] == name} for r in table.to_dict("records")],
                   args.name or f"selection_{args.model}" + ("_landmark_lock" if args.landmark_locks else ""),
                   args.out)
    return 0


def _cache(args: argparse.Namespace) -> int:
    from deidkit.cache import cache_info, clear_cache, human

    if args.action == "info":
        rows = cache_info()
        for r in rows:
            print(f"{r['section']:60s} {human(r['bytes']):>10s} {r['files']:7d} files")
        print(f"{'total':60s} {human(sum(r['bytes'] for r in rows if not r['section'].startswith(' '))):>10s}")
        return 0
    for path in clear_cache(args.sections or ["all"]):
        print(f"removed {path}")
    return 0


def _study(args: argparse.Namespace) -> int:
    """Serve the study form (Voila) on a verified study folder until Ctrl-C."""
    from deidkit.study.serve import start_server, stop_server

    proc, port = start_server(args.study_dir, port=args.port, ip=args.ip, log=args.log)
    host = "127.0.0.1" if args.ip in ("127.0.0.1", "0.0.0.0") else args.ip
    print(f"serving {args.study_dir}: participants open http://{host}:{port}/?participant=<id> "
          f"(access log {args.log or Path(args.study_dir) / 'serve.log'}); Ctrl-C stops")
    try:
        return int(proc.wait() or 0)
    except KeyboardInterrupt:
        stop_server(proc)
        return 0


def build_parser() -> argparse.ArgumentParser:
    from deidkit.configs import training_profiles

    parser = argparse.ArgumentParser(prog="deidkit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("reports", help="execute the notebooks with papermill into reports/")
    p.add_argument("--profile", default="quick", choices=["tiny", "quick", "paper"])
    p.add_argument("--out", default=None, help="output folder (default: reports/)")
    p.add_argument("--only", nargs="*", default=None, help="notebook prefixes to run, e.g. 00 04")
    p.add_argument("--no-html", action="store_true")
    p.add_argument("--retrain", action="store_true", help="notebook 04 also evaluates the standard models "
                   "retrained in the cache (deidkit train live|fadenet --profile standard) beside the shipped ones")
    p.set_defaults(func=_reports)

    p = sub.add_parser("data", help="locate, download, verify or align LFW")
    p.add_argument("action", choices=["locate", "download", "verify", "align", "pack"])
    p.add_argument("--path", default=None, help="explicit LFW folder (else $DEIDKIT_DATA, shared/, cache)")
    p.add_argument("--detector", default="yunet", choices=["yunet", "mtcnn"])
    p.add_argument("--size", type=int, default=224, help="crop side (align: 224; pack: the training side, e.g. 80)")
    p.add_argument("--manifest", default="lfw_train_pool", help="pack: the manifest whose crops it holds")
    p.add_argument("--quality", type=int, default=95, help="pack: JPEG quality")
    p.add_argument("--critic-identities", action="store_true",
                   help="pack: only the critic's identities (what FaDeNet and its critic train on)")
    p.add_argument("--out", default=None, help="pack: the .npz file to write")
    p.set_defaults(func=_data)

    p = sub.add_parser("train", help="train (resume, or load when finished) a model of a profile")
    p.add_argument("model", choices=["critic", "fadenet", "live", "detail"],
                   help="detail: the live model's 2x detail stage (profiles tiny, quick, gpu)")
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
    p.set_defaults(func=_train)

    from deidkit.pipeline.faces import DEFAULT_DETECT_SIDE

    p = sub.add_parser("benchmark-video", help="frames/s of the video pipeline at 360p and 1080p (speed records)")
    p.add_argument("--cases", nargs="+", default=None, help="video_360p_live_cpu video_1080p_live_cpu "
                   "video_1080p_blur_cpu (default: all)")
    p.add_argument("--frames", type=int, default=None, help="first N frames of each clip only")
    p.add_argument("--threads", type=int, default=None,
                   help="torch and OpenCV threads during the run (default: half the cores, since the pipeline runs "
                        "two threads of its own)")
    p.add_argument("--detect-side", type=int, default=DEFAULT_DETECT_SIDE,
                   help=f"longer side of the fine face-detection pass (default {DEFAULT_DETECT_SIDE}; 0: full "
                   "resolution)")
    p.add_argument("--out", default=None, help="reports folder (default: reports/)")
    p.set_defaults(func=_benchmark_video)

    p = sub.add_parser("benchmark-detection", help="faces found by face width and detection side on a 1920x1080 "
                       "canvas of LFW photos (detection_by_size records)")
    from deidkit.pipeline.benchmark import DETECT_SIDES, FACE_WIDTHS

    p.add_argument("--sides", type=int, nargs="+", default=list(DETECT_SIDES),
                   help="fine-pass sides to compare (0: full resolution)")
    p.add_argument("--widths", type=int, nargs="+", default=list(FACE_WIDTHS), help="face widths in pixels")
    p.add_argument("--faces", type=int, default=40, help="faces per canvas")
    p.add_argument("--out", default=None, help="reports folder (default: reports/)")
    p.set_defaults(func=_benchmark_detection)

    p = sub.add_parser("benchmark-train", help="training images/s of each model (train_speed records)")
    p.add_argument("models", nargs="+", choices=["critic", "fadenet", "live"])
    p.add_argument("--profile", default="quick", choices=training_profiles())
    p.add_argument("--steps", type=int, default=10, help="steps to time (after two warm-up steps)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--out", default=None, help="reports folder (default: reports/)")
    p.set_defaults(func=_benchmark_train)

    p = sub.add_parser("export", help="ship a trained run's generator in deidkit/weights (maintainers)")
    p.add_argument("model", choices=["fadenet", "live", "detail"],
                   help="detail: a live detail stage, shipped with the live model --attach-to names")
    p.add_argument("--attach-to", default="live", help="detail: the shipped live model it enlarges")
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
                   "ships a second model of that kind beside it, e.g. fadenet_luma)")
    p.set_defaults(func=_export)

    p = sub.add_parser("select", help="pick the snapshot of a run to ship, on identities outside the test protocol")
    p.add_argument("model", choices=["fadenet", "live"])
    p.add_argument("--profile", default="standard", choices=training_profiles())
    p.add_argument("--run-dir", nargs="+", default=None,
                   help="the run folder (FaDeNet: one or more; candidates are named <run>/epochs/<snapshot>)")
    p.add_argument("--epochs", type=int, nargs="+", default=None,
                   help="FaDeNet: only these epoch snapshots of each run (default: every one)")
    p.add_argument("--min-ssim", type=float, required=True, help="image quality every candidate must keep")
    p.add_argument("--min-detection", type=float, default=None,
                   help="also the fraction of outputs in which YuNet still finds a face (e.g. 0.95)")
    p.add_argument("--max-colour-shift", type=float, default=None,
                   help="also bound the colour change in the face box (8-bit Cb+Cr levels, smoothed; blur sigma 8: "
                        "about 3): a natural look, no coloured bands")
    p.add_argument("--max-warp-stretch", type=float, default=None,
                   help="also bound how far a warping FaDeNet (shape_warp, shape_basis) stretches the face locally (95th "
                        "percentile of the largest principal stretch; warps that drew the eyes as wedges: 0.4-0.9)")
    p.add_argument("--recognizer", default="mobilefacenet_ms1m", help="the trained-against recogniser (never a judge)")
    p.add_argument("--max-landmarks-vs", default=None, metavar="DEIDENTIFIER",
                   help="also bound the dlib-68 landmark displacement by --landmarks-ratio times this "
                        "de-identifier's on the selection set (e.g. blur_sigma8)")
    p.add_argument("--landmarks-ratio", type=float, default=1.0)
    p.add_argument("--landmark-locks", type=float, nargs="+", default=None,
                   help="live: candidates are the shipped generator with these landmark locks (0-1)")
    p.add_argument("--strengths", type=float, nargs="+", default=None,
                   help="every snapshot also at these strengths (an inference option; 1: its output; FaDeNet 0-2, "
                   "the live model 0-1, the share of its blending mask)")
    p.add_argument("--feathers", type=float, nargs="+", default=None,
                   help="FaDeNet: every snapshot (and strength) also with these feathered face box edges (fractions "
                        "of the box side, an inference option; 0: a hard edge)")
    p.add_argument("--colour-match", action="store_true",
                   help="FaDeNet: every candidate colour matched (its face box keeps the input's exposure and white "
                        "balance; an inference option)")
    p.add_argument("--detail-cap", type=float, default=0.0,
                   help="FaDeNet: every candidate with this detail cap (the detail added at most k times what the "
                        "input blur removed, per face; an inference option; 0: off)")
    p.add_argument("--per-identity", type=int, default=1, choices=range(1, 9), metavar="{1..8}",
                   help="selection-set images per identity (default 1: 160 faces); above 1 the table also gives the "
                        "trained-against recogniser's leave-one-out Rank-1 (reported, not a criterion)")
    p.add_argument("--by-frontier", nargs="+", choices=["crop", "image"], default=None, metavar="LEVEL",
                   help="choose, among the candidates within the bounds, the one furthest beyond the naive frontier "
                        "(blur, pixelation at the same SSIM; worst of these levels, e.g. crop image) on the "
                        "lfw_select_160x8 protocol with the trained-against recogniser, instead of the lowest cosine")
    p.add_argument("--identities", type=int, default=None, metavar="N",
                   help="with --by-frontier: the selection protocol's first N identities only (e.g. 57: the test "
                        "protocol's size, where Rank-1 runs higher than among all 160)")
    p.add_argument("--max-rank1", type=float, default=None,
                   help="with --by-frontier: only candidates whose crop-level Rank-1 on the selection protocol "
                        "(trained-against recogniser) is at most this are chosen from (the kit's rule: 0.05, half "
                        "the 0.10 target); the others stay in the table")
    p.add_argument("--detail-runs", nargs="+", default=None, metavar="RUN",
                   help="live: candidates are the shipped live models (--bases) bare and with the detail stage of each "
                        "run folder (deidkit train detail), e.g. detail-quick")
    p.add_argument("--bases", nargs="+", default=["live"],
                   help="with --detail-runs: the shipped live models to combine (default: live)")
    p.add_argument("--min-sharpness", type=float, default=None,
                   help="also bound the fine detail kept in the inner face box (deidkit.eval.realism: 1 = the "
                        "original's; blur sigma 4 about 0.05)")
    p.add_argument("--with-shipped", action="store_true",
                   help="also measure the shipped model (candidate 'shipped'), which a new one must beat")
    p.add_argument("--apply", action="store_true", help="record the selected landmark lock in the manifest")
    p.add_argument("--name", default=None, help="records file: reports/metrics/<name>.json (default: "
                   "selection_<model>[_landmark_lock]; a second selection with the default replaces the first's)")
    p.add_argument("--out", default=None, help="reports folder (default: reports/)")
    p.set_defaults(func=_select)

    p = sub.add_parser("frontier", help="measure de-identifiers against the naive (blur, pixelate) frontier")
    p.add_argument("methods", nargs="*", help="de-identifier names (e.g. live fadenet live_quick); none: naive only")
    p.add_argument("--recognizers", nargs="+", default=["dlib", "mobilefacenet_casia", "mobilefacenet_ms1m"])
    p.add_argument("--protocol", default="lfw_57x8")
    p.add_argument("--levels", nargs="+", default=["crop", "image"], choices=["crop", "image"])
    p.add_argument("--identities", type=int, default=None, help="first N identities only (quick checks)")
    p.add_argument("--gallery-identities", type=int, default=None,
                   help="large-gallery rank among the probes' and N other identities only (quick checks)")
    p.add_argument("--no-gallery", action="store_true",
                   help="skip the rank of the true identity among all LFW identities (saves embedding all of LFW)")
    p.add_argument("--name", default="frontier", help="records file: reports/metrics/<name>.json")
    p.add_argument("--update-manifest", action="store_true",
                   help="maintainers: record the shipped models' results in deidkit/weights/manifest.json")
    p.add_argument("--out", default=None, help="reports folder (default: reports/)")
    p.set_defaults(func=_frontier)

    p = sub.add_parser("realism", help="does the output look like a real photo? sharpness, colour shift and a "
                       "two-sample classifier, at crop and photo level, beside the naive families")
    p.add_argument("methods", nargs="*", help="de-identifier names (e.g. live fadenet); the original and the naive "
                   "families are added unless --no-naive")
    p.add_argument("--protocol", default="lfw_57x8", help="test photos (the probe learns on lfw_train_pool)")
    p.add_argument("--levels", nargs="+", default=["crop", "image"], choices=["crop", "image"],
                   help="crop: canonical crops; image: whole photos through the pipeline")
    p.add_argument("--identities", type=int, default=None, help="first N identities of the protocol only")
    p.add_argument("--train-images", type=int, default=300,
                   help="training-pool photos (one per identity) the two-sample probe learns from")
    p.add_argument("--no-naive", action="store_true", help="skip the original and the naive families")
    p.add_argument("--grid", type=int, default=0, metavar="N",
                   help="also write reports/figures/<name>_faces.png: N photos (one per identity) at 256 px a face, "
                        "the original above each named model's output")
    p.add_argument("--frontier", nargs="+", default=None, metavar="NAME",
                   help="draw Rank-1 against SSIM and against sharpness from the tables of deidkit frontier --name NAME "
                        "(one or more runs)")
    p.add_argument("--name", default="realism", help="records file: reports/metrics/<name>.json")
    p.add_argument("--out", default=None, help="reports folder (default: reports/)")
    p.set_defaults(func=_realism)

    p = sub.add_parser("attack", help="an attacker that has learnt each de-identifier (a head on a frozen recogniser)")
    p.add_argument("methods", nargs="+", help="de-identifier names (e.g. live fadenet blur_sigma8 pixelate_16px)")
    p.add_argument("--recognizers", nargs="+", default=["dlib", "mobilefacenet_casia"])
    p.add_argument("--protocol", default="lfw_57x8")
    p.add_argument("--train-images", type=int, default=2000, help="training-pool images the attacker learns from")
    p.add_argument("--reversal", default=None, choices=["tiny", "quick", "paper"],
                   help="also train the reversal U-Net of this profile per de-identifier (cached, resumable)")
    p.add_argument("--name", default="attack", help="records file: reports/metrics/<name>.json")
    p.add_argument("--out", default=None, help="reports folder (default: reports/)")
    p.set_defaults(func=_attack)

    p = sub.add_parser("cache", help="what the kit's cache holds (info) or remove derived parts of it (clear)")
    p.add_argument("action", choices=["info", "clear"])
    p.add_argument("sections", nargs="*", help="clear: aligned, embeddings, image_level, videos, runs or all "
                   "(default all = everything but runs, the trained models)")
    p.set_defaults(func=_cache)

    p = sub.add_parser("study", help="serve the human-study form to participants (Voila)")
    p.add_argument("action", choices=["serve"])
    p.add_argument("study_dir", help="a study folder (built by notebook 06 or deidkit.study.build_study)")
    p.add_argument("--port", type=int, default=8866)
    p.add_argument("--ip", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface of the lab)")
    p.add_argument("--log", default=None, help="access log (default: STUDY_DIR/serve.log)")
    p.set_defaults(func=_study)

    add_video_commands(sub)
    return parser


#: Errors that describe bad input (a file, a checksum, a missing run): one line on stderr, no traceback.
USER_ERRORS = (AssetError, FileNotFoundError, ValueError, VideoError)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as exc:
        print(f"deidkit {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
