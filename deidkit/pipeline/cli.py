"""The ``deidkit image`` and ``deidkit video`` commands."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from deidkit.pipeline.faces import HULLS
from deidkit.pipeline.video import deidentify_image, deidentify_video

# ---------------------------------------------------------------------------------------------- the CLI


def resolve_deidentifier(name: str, run_dir: str | None = None, device: str = "cpu") -> Any:
    """``live`` / ``fadenet`` (the shipped pretrained models), ``live_<profile>[_stage<k>]`` (a live network
    trained in the cache, or in ``run_dir``), ``fadenet_<profile>`` or any baseline name of
    :func:`deidkit.baselines.get_deidentifier`. An unknown name raises ``ValueError`` (one line on the CLI)."""
    if name.startswith("live") and run_dir is not None:
        from deidkit.train.live import live_deidentifier_by_name

        return live_deidentifier_by_name(name, run_dir=run_dir, device=device)
    from deidkit.deidentifiers import load_deidentifier

    try:
        return load_deidentifier(name)
    except KeyError as exc:
        raise ValueError(str(exc.args[0]) if exc.args else f"unknown method {name!r}") from None


def _common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", default="live", help="de-identifier: live or fadenet (the shipped models; live is "
                   "the default), live_<profile> / fadenet_<profile> (trained in the cache), or a baseline such as "
                   "blur_sigma8, pixelate_16px, blackbox, noise_sigma32")
    p.add_argument("--run-dir", default=None, help="folder of a trained live model (default: the profile's cache)")
    p.add_argument("--target", default=None, help="image of the person whose representation conditions the live "
                   "network (default: each face is its own target)")
    p.add_argument("--strength", type=float, default=1.0, help="blending weight multiplier in [0, 1]")
    p.add_argument("--detector", default="yunet", choices=["yunet", "mtcnn"])
    p.add_argument("--hull", default="face", choices=list(HULLS),
                   help="blend region: the whole face with forehead and contour (default), the convex hull of "
                   "dlib's 68 landmarks, or the whole crop")


def _video_cmd(args: argparse.Namespace) -> int:
    deid = resolve_deidentifier(args.method, args.run_dir)
    rep = deidentify_video(args.input, args.output, deid, target=args.target, detector=args.detector,
                           strength=args.strength, hull=args.hull, max_frames=args.max_frames,
                           keep_audio=not args.no_audio, crf=args.crf, target_refresh=args.target_refresh)
    print(rep)
    return 0


def _image_cmd(args: argparse.Namespace) -> int:
    deid = resolve_deidentifier(args.method, args.run_dir)
    rep = deidentify_image(args.input, args.output, deid, target=args.target, detector=args.detector,
                           strength=args.strength, hull=args.hull)
    if rep.faces == 0:
        print(f"warning: no face found in {args.input}; written unchanged to {args.output}", file=sys.stderr)
    else:
        print(f"{args.output}: {rep.faces} face(s) de-identified with {rep.deidentifier} in {rep.wall_s:.2f} s")
    return 0


def add_video_commands(subparsers: Any) -> None:
    """Add ``video IN OUT`` and ``image IN OUT`` to the ``deidkit`` command's subparsers."""
    p = subparsers.add_parser("video", help="de-identify every face of a video (audio kept)")
    p.add_argument("input")
    p.add_argument("output")
    _common_args(p)
    p.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    p.add_argument("--no-audio", action="store_true", help="drop the audio track")
    p.add_argument("--crf", type=int, default=18, help="H.264 quality (0 lossless .. 51 worst; default 18)")
    p.add_argument("--target-refresh", type=int, default=15,
                   help="frames a face's own representation is reused while tracked (1: every frame)")
    p.set_defaults(func=_video_cmd)

    p = subparsers.add_parser("image", help="de-identify every face of an image")
    p.add_argument("input")
    p.add_argument("output")
    _common_args(p)
    p.set_defaults(func=_image_cmd)
