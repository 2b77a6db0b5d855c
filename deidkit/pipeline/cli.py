"""The ``deidkit image`` and ``deidkit video`` commands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

# the batch's worker processes resolve the method too, so it lives there (importable from here as before)
from deidkit.pipeline.batch import resolve_deidentifier
from deidkit.pipeline.faces import DEFAULT_DETECT_SIDE, HULLS
from deidkit.pipeline.video import deidentify_image, deidentify_video

# ---------------------------------------------------------------------------------------------- the CLI


def _common_args(p: argparse.ArgumentParser) -> None:
    from deidkit.pretrained import shipped_models

    p.add_argument("--method", default="live", help=f"de-identifier: a shipped model ({', '.join(shipped_models())}; "
                   "live is the default; see docs/models/), live_<profile> / fadenet_<profile> (trained in the cache), "
                   "or a baseline such as blur_sigma8, pixelate_16px, blackbox, noise_sigma32")
    p.add_argument("--run-dir", default=None, help="folder of a trained live model (default: the profile's cache)")
    p.add_argument("--target", default=None, help="image of the person whose representation conditions the live "
                   "network (default: each face is its own target)")
    p.add_argument("--strength", type=float, default=1.0, help="blending weight multiplier in [0, 1]")
    p.add_argument("--detector", default="yunet", choices=["yunet", "mtcnn"])
    p.add_argument("--detect-side", type=_side, default=DEFAULT_DETECT_SIDE, metavar="PIXELS",
                   help=f"longer side of the copy the fine face-detection pass searches (default {DEFAULT_DETECT_SIDE}; 0: full "
                   "resolution). Smaller is faster and misses more small faces: see reports/README.md, "
                   "'Faces found by size'")
    p.add_argument("--hull", default="face", choices=list(HULLS),
                   help="blend region: the whole face with forehead and contour (default), the convex hull of "
                   "dlib's 68 landmarks, or the whole crop")


def _side(text: str) -> int | None:
    """``--detect-side``: a side of at least 64 pixels, or 0 for full resolution (None)."""
    value = int(text)
    if value and value < 64:
        raise argparse.ArgumentTypeError(f"{value}: the detection side must be at least 64 pixels (0: full resolution)")
    return value or None


def _single_output(kind: str, paths: list[str]) -> tuple[Path, Path] | None:
    """(input, output) when the command names one input file and one output file, else None (a batch)."""
    from deidkit.pipeline.batch import IMAGE_OUTPUT_SUFFIXES, VIDEO_OUTPUT_SUFFIXES, check_writable

    if len(paths) != 2 or not Path(paths[0]).is_file() or Path(paths[1]).is_dir() or not Path(paths[1]).suffix:
        return None
    inp, out = Path(paths[0]), Path(paths[1])
    writable = IMAGE_OUTPUT_SUFFIXES if kind == "image" else VIDEO_OUTPUT_SUFFIXES
    if out.suffix.lower() not in writable:
        raise ValueError(f"{out}: '{out.suffix}' is not an {kind} format the kit writes ({', '.join(writable)})")
    if inp.resolve() == out.resolve():
        raise ValueError(f"{out}: output would overwrite the input")
    check_writable(out.parent)
    return inp, out


def _options(args: argparse.Namespace) -> dict[str, Any]:
    opts = dict(target=args.target, detector=args.detector, strength=args.strength, hull=args.hull,
                detect_side=args.detect_side)
    if args.command == "video":
        opts.update(max_frames=args.max_frames, keep_audio=not args.no_audio, crf=args.crf,
                    target_refresh=args.target_refresh, carry_frames=args.carry_frames)
    return opts


def _run(args: argparse.Namespace) -> int:
    from deidkit.pipeline.batch import NoFaceError, run_batch, summarise

    kind = args.command
    if len(args.paths) < 2:
        raise ValueError(f"give at least one input and an output ({kind} IN... OUT)")
    single = _single_output(kind, args.paths)
    if single is not None:
        deid = resolve_deidentifier(args.method, args.run_dir)
        inp, out = single
        try:
            if kind == "video":
                rep = deidentify_video(inp, out, deid, require_face=args.strict, **_options(args))
            else:
                rep = deidentify_image(inp, out, deid, require_face=args.strict, **_options(args))
        except NoFaceError as exc:
            print(f"deidkit {kind}: refused: {exc}", file=sys.stderr)
            return 1
        if rep.faces == 0:
            print(f"warning: no face found in {inp}; written unchanged to {out}", file=sys.stderr)
        elif kind == "image":
            print(f"{out}: {rep.faces} face(s) de-identified with {rep.deidentifier} in {rep.wall_s:.2f} s")
        else:
            print(rep)
        return 0
    resolve_deidentifier(args.method, args.run_dir)  # an unknown method fails here, before any work
    rows = run_batch(kind, args.paths[:-1], args.paths[-1], method=args.method, jobs=args.jobs, strict=args.strict,
                     force=args.force, summary=args.summary, run_dir=args.run_dir, **_options(args))
    for r in rows:
        if r.run != rows.run:  # skipped: its outcome was reported by the run that produced it
            continue
        if r.status == "failed":
            print(f"deidkit {kind}: failed: {r.input}: {r.error}", file=sys.stderr)
        elif r.status in ("no_face", "refused"):
            print(f"warning: no face found in {r.input} ({r.status})", file=sys.stderr)
    print(summarise(rows))
    bad = {"failed"} | ({"refused", "no_face"} if args.strict else set())
    return 1 if any(r.status in bad for r in rows) else 0


def _audit(args: argparse.Namespace) -> int:
    from deidkit.pipeline.audit import audit, write_shipped_thresholds

    if args.calibrate_thresholds:
        if args.original or args.deidentified or args.recognizer_weights or args.recalibrate:
            raise ValueError("--calibrate-thresholds takes no files, --recognizer-weights or --recalibrate: it "
                             "calibrates the published weights (--recognizer: only that one)")
        path = write_shipped_thresholds([args.recognizer] if args.recognizer else None)
        print(f"wrote {path}")
        return 0
    if not args.deidentified:
        raise ValueError("give the original and its de-identified counterpart (audit ORIGINAL DEIDENTIFIED)")
    out = Path(args.deidentified)
    csv_path = args.csv or (out / "deidkit-audit.csv" if out.is_dir() else out.with_name(f"{out.stem}-audit.csv"))
    rows, verdict = audit(args.original, args.deidentified, recognizer=args.recognizer or "mobilefacenet_ms1m",
                          every=args.every, csv_path=csv_path, weights=args.recognizer_weights,
                          recalibrate=args.recalibrate)
    for r in rows:
        if r.flag:
            where = f" frame {r.frame}" if r.frame else ""
            print(f"{r.flag}: {r.output}{where} face {r.face} at {r.box} (similarity {r.similarity:.3f}, "
                  f"pixel change {r.pixel_change:.1f})", file=sys.stderr)
    print(f"{verdict}; per-face table: {csv_path}")
    return 1 if verdict.startswith("FAIL") else 0


def add_video_commands(subparsers: Any) -> None:
    """Add ``video IN... OUT`` and ``image IN... OUT`` to the ``deidkit`` command's subparsers."""
    for kind in ("video", "image"):
        p = subparsers.add_parser(kind, help=f"de-identify every face of {kind}s: one file to one file, or files, "
                                  "folders (recursive) and globs into an output folder (mirrored, resumable)")
        p.add_argument("paths", nargs="+", metavar="IN... OUT",
                       help=f"input {kind}s, folders or globs, then the output ({kind} file or folder)")
        _common_args(p)
        p.add_argument("--jobs", type=int, default=0,
                       help="files processed in parallel (worker processes; default 0: photos use the cores once "
                            "each worker has a couple of dozen of them, videos one process)")
        p.add_argument("--strict", action="store_true", help="write no output in which no face was de-identified; "
                       "exit status 1 when that happens")
        p.add_argument("--force", action="store_true", help="redo outputs that are already newer than their input")
        p.add_argument("--summary", default=None, help="summary CSV (default: OUT/deidkit-summary.csv)")
        if kind == "video":
            p.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
            p.add_argument("--no-audio", action="store_true", help="drop the audio track")
            p.add_argument("--crf", type=int, default=18, help="H.264 quality (0 lossless .. 51 worst; default 18)")
            p.add_argument("--target-refresh", type=int, default=15,
                           help="frames a face's own representation is reused while tracked (1: every frame)")
            p.add_argument("--carry-frames", type=int, default=5,
                           help="frames a face missed by the detector stays de-identified at its last alignment")
        p.set_defaults(func=_run)

    p = subparsers.add_parser("audit", help="check de-identified images or videos against their originals: faces "
                              "left untouched or still identifiable (exit status 1 when any)")
    p.add_argument("original", nargs="?", help="original image, video or folder")
    p.add_argument("deidentified", nargs="?",
                   help="its de-identified counterpart (same kind; a folder as deidkit writes it)")
    p.add_argument("--recognizer", default=None,
                   help="recogniser whose similarity is checked (default mobilefacenet_ms1m; also "
                   "mobilefacenet_casia, dlib)")
    p.add_argument("--recognizer-weights", default=None, metavar="PATH",
                   help="your own weights for that recogniser: its threshold is calibrated on LFW on first use "
                   "(minutes, then cached)")
    p.add_argument("--recalibrate", action="store_true",
                   help="calibrate the recogniser's LFW threshold afresh instead of using the shipped one (minutes)")
    p.add_argument("--calibrate-thresholds", action="store_true",
                   help="maintainers: recalibrate the published recognisers' thresholds (all, or --recognizer) on "
                   "LFW and write the file shipped in the package (deidkit/pipeline/audit_thresholds.json)")
    p.add_argument("--every", type=int, default=1, help="videos: audit every N-th frame")
    p.add_argument("--csv", default=None, help="per-face table (default: beside the de-identified side)")
    p.set_defaults(func=_audit)
