"""The ``deidkit`` command: :func:`build_parser` assembles the subcommands of each group module (train
and export, select, frontier/realism/attack, benchmarks, data and cache, reports and study, and the photo and
video commands of :mod:`deidkit.pipeline.cli`); :func:`main` runs one and turns bad input into a one-line
error (exit status 2).

The group modules import only the standard library at the top and the kit's heavy parts inside their handlers,
so that ``deidkit --help`` (and a photo or video command) starts fast."""

from __future__ import annotations

import argparse
import sys

from deidkit.assets import AssetError
from deidkit.cli import benchmark, data, evaluate, notebooks, selection, train
from deidkit.cli.train import EXIT_DIVERGED, EXIT_STOPPED, as_profile, lineage, parse_overrides
from deidkit.pipeline.cli import add_video_commands
from deidkit.pipeline.io import VideoError

__all__ = ["EXIT_DIVERGED", "EXIT_STOPPED", "USER_ERRORS", "_as_profile", "_lineage", "_parse_overrides",
           "build_parser", "main"]

# the names these helpers had before the command line was split into modules (tests and scripts import them)
_parse_overrides = parse_overrides
_as_profile = as_profile
_lineage = lineage

#: The commands by module, in the order ``deidkit --help`` has always listed them.
_COMMANDS = (
    (notebooks, ["reports"]),
    (data, ["data"]),
    (train, ["train"]),
    (benchmark, ["benchmark-photos", "benchmark-video", "benchmark-detection", "benchmark-train"]),
    (train, ["export"]),
    (selection, ["select"]),
    (evaluate, ["frontier", "realism", "attack"]),
    (data, ["cache"]),
    (notebooks, ["study"]),
)


def build_parser() -> argparse.ArgumentParser:
    """The ``deidkit`` argument parser, every subcommand included (each sets ``func``, its handler)."""
    parser = argparse.ArgumentParser(prog="deidkit", description="The ``deidkit`` command.")
    sub = parser.add_subparsers(dest="command", required=True)
    for module, names in _COMMANDS:
        module.add_parsers(sub, names)
    add_video_commands(sub)
    return parser


#: Errors that describe bad input (a file, a checksum, a missing run): one line on stderr, no traceback.
USER_ERRORS = (AssetError, FileNotFoundError, ValueError, VideoError)


def main(argv: list[str] | None = None) -> int:
    """Run ``deidkit`` with ``argv`` (default: the process's arguments); returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as exc:
        print(f"deidkit {args.command}: error: {exc}", file=sys.stderr)
        return 2
