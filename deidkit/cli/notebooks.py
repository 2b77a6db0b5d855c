"""``deidkit reports`` and ``deidkit study``: the kit's notebooks, executed into reports/ (papermill) or
served to the human study's participants (Voila)."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path


def reports_command(args: argparse.Namespace) -> int:
    from deidkit.reports import run_reports

    out = run_reports(profile=args.profile, out=args.out, only=args.only, html=not args.no_html,
                      parameters={"retrain": True} if args.retrain else None)
    print(f"reports written to {out}")
    return 0


def study_command(args: argparse.Namespace) -> int:
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


def _add_reports(sub: argparse._SubParsersAction) -> None:
    """``deidkit reports``."""
    p = sub.add_parser("reports", help="execute the notebooks with papermill into reports/")
    p.add_argument("--profile", default="quick", choices=["tiny", "quick", "paper"])
    p.add_argument("--out", default=None, help="output folder (default: reports/)")
    p.add_argument("--only", nargs="*", default=None, help="notebook prefixes to run, e.g. 00 04")
    p.add_argument("--no-html", action="store_true")
    p.add_argument("--retrain", action="store_true", help="notebook 04 also evaluates the standard models "
                   "retrained in the cache (deidkit train live|fadenet --profile standard) beside the shipped ones")
    p.set_defaults(func=reports_command)


def _add_study(sub: argparse._SubParsersAction) -> None:
    """``deidkit study``."""
    p = sub.add_parser("study", help="serve the human-study form to participants (Voila)")
    p.add_argument("action", choices=["serve"])
    p.add_argument("study_dir", help="a study folder (built by notebook 06 or deidkit.study.build_study)")
    p.add_argument("--port", type=int, default=8866)
    p.add_argument("--ip", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface of the lab)")
    p.add_argument("--log", default=None, help="access log (default: STUDY_DIR/serve.log)")
    p.set_defaults(func=study_command)


#: Each command's parser, by name.
_PARSERS = {"reports": _add_reports, "study": _add_study}


def add_parsers(subparsers: argparse._SubParsersAction, names: Iterable[str] | None = None) -> None:
    """Add this module's commands to the ``deidkit`` subparsers (``names``: only these, in this order;
    :func:`deidkit.cli.build_parser` interleaves the modules to keep the order of ``deidkit --help``)."""
    for name in names or _PARSERS:
        _PARSERS[name](subparsers)
