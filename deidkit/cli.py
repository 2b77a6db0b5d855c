"""The ``deidkit`` command."""

from __future__ import annotations

import argparse
import sys

from deidkit.assets import AssetError
from deidkit.video import VideoError, add_video_commands


def _reports(args: argparse.Namespace) -> int:
    from deidkit.reports import run_reports

    out = run_reports(profile=args.profile, out=args.out, only=args.only, html=not args.no_html)
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
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deidkit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("reports", help="execute the notebooks with papermill into reports/")
    p.add_argument("--profile", default="quick", choices=["tiny", "quick", "paper"])
    p.add_argument("--out", default=None, help="output folder (default: reports/)")
    p.add_argument("--only", nargs="*", default=None, help="notebook prefixes to run, e.g. 00 04")
    p.add_argument("--no-html", action="store_true")
    p.set_defaults(func=_reports)

    p = sub.add_parser("data", help="locate, download, verify or align LFW")
    p.add_argument("action", choices=["locate", "download", "verify", "align"])
    p.add_argument("--path", default=None, help="explicit LFW folder (else $DEIDKIT_DATA, shared/, cache)")
    p.add_argument("--detector", default="yunet", choices=["yunet", "mtcnn"])
    p.add_argument("--size", type=int, default=224)
    p.set_defaults(func=_data)

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
