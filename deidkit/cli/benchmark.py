"""``deidkit benchmark-photos``, ``benchmark-video``, ``benchmark-detection`` and ``benchmark-train``: speed and
detection on this machine; records merge into reports/metrics."""

from __future__ import annotations

import argparse
from collections.abc import Iterable


def benchmark_video_command(args: argparse.Namespace) -> int:
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


def benchmark_photos_command(args: argparse.Namespace) -> int:
    """Photos/s of ``deidkit image`` on a folder (marginal cost a photo, whole process), beside deface's;
    records merge into reports/metrics/photo_speed.json (one per method)."""
    from deidkit.pipeline.photo_speed import benchmark_photos, deface_path
    from deidkit.reports import merge_metrics

    if not args.no_deface and deface_path() is None:
        print("deface is not installed (pip install deface): the records carry no ratio to it")
    new = benchmark_photos(args.methods, photos=args.photos, jobs=args.jobs, repeats=args.repeats,
                           with_deface=not args.no_deface, folder=args.folder)
    for r in new:
        ratio = "" if r.get("vs_deface") is None else f", {r['vs_deface']:.2f} x deface"
        print(f"{r['name']}: {r['value']:.1f} photos/s ({r['marginal_s'] * 1000:.0f} ms a photo at the margin; "
              f"{r['photos'][0]} photos {r['seconds_small']:.1f} s, {r['photos'][1]} photos {r['seconds_all']:.1f} s"
              f"{ratio})")
    merge_metrics(new, "photo_speed", ("name",), args.out)
    return 0


def benchmark_detection_command(args: argparse.Namespace) -> int:
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


def benchmark_train_command(args: argparse.Namespace) -> int:
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


def _add_benchmark_video(sub: argparse._SubParsersAction) -> None:
    """``deidkit benchmark-video``."""
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
    p.set_defaults(func=benchmark_video_command)


def _add_benchmark_photos(sub: argparse._SubParsersAction) -> None:
    """``deidkit benchmark-photos``."""
    p = sub.add_parser("benchmark-photos", help="photos/s of deidkit image on a folder, beside deface (speed records)")
    p.add_argument("methods", nargs="+", help="de-identifiers to time (e.g. blur_sigma8 live)")
    p.add_argument("--photos", type=int, default=40,
                   help="photos in the large run (the small run has 4; the difference gives the cost a photo)")
    p.add_argument("--folder", default=None,
                   help="a folder of photos to use (default: a sample of LFW's training-pool photos)")
    p.add_argument("--jobs", type=int, default=None, help="passed to deidkit image (default: its own)")
    p.add_argument("--repeats", type=int, default=1, help="runs of each size; the fastest counts")
    p.add_argument("--no-deface", action="store_true", help="do not time deface even when it is installed")
    p.add_argument("--out", default=None, help="reports folder (default: reports/)")
    p.set_defaults(func=benchmark_photos_command)


def _add_benchmark_detection(sub: argparse._SubParsersAction) -> None:
    """``deidkit benchmark-detection``."""
    from deidkit.pipeline.benchmark import DETECT_SIDES, FACE_WIDTHS

    p = sub.add_parser("benchmark-detection", help="faces found by face width and detection side on a 1920x1080 "
                       "canvas of LFW photos (detection_by_size records)")
    p.add_argument("--sides", type=int, nargs="+", default=list(DETECT_SIDES),
                   help="fine-pass sides to compare (0: full resolution)")
    p.add_argument("--widths", type=int, nargs="+", default=list(FACE_WIDTHS), help="face widths in pixels")
    p.add_argument("--faces", type=int, default=40, help="faces per canvas")
    p.add_argument("--out", default=None, help="reports folder (default: reports/)")
    p.set_defaults(func=benchmark_detection_command)


def _add_benchmark_train(sub: argparse._SubParsersAction) -> None:
    """``deidkit benchmark-train``."""
    from deidkit.configs import training_profiles

    p = sub.add_parser("benchmark-train", help="training images/s of each model (train_speed records)")
    p.add_argument("models", nargs="+", choices=["critic", "fadenet", "live"])
    p.add_argument("--profile", default="quick", choices=training_profiles())
    p.add_argument("--steps", type=int, default=10, help="steps to time (after two warm-up steps)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--out", default=None, help="reports folder (default: reports/)")
    p.set_defaults(func=benchmark_train_command)


#: Each command's parser, by name.
_PARSERS = {"benchmark-photos": _add_benchmark_photos, "benchmark-video": _add_benchmark_video, "benchmark-detection": _add_benchmark_detection,
            "benchmark-train": _add_benchmark_train}


def add_parsers(subparsers: argparse._SubParsersAction, names: Iterable[str] | None = None) -> None:
    """Add this module's commands to the ``deidkit`` subparsers (``names``: only these, in this order;
    :func:`deidkit.cli.build_parser` interleaves the modules to keep the order of ``deidkit --help``)."""
    for name in names or _PARSERS:
        _PARSERS[name](subparsers)
