"""``deidkit select``: pick the snapshot (and inference options) of a run to ship, on identities outside the
test protocol."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path

from deidkit.cli.evaluate import JUDGES


def select_command(args: argparse.Namespace) -> int:
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


def _add_select(sub: argparse._SubParsersAction) -> None:
    """``deidkit select``."""
    from deidkit.configs import training_profiles

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
    p.set_defaults(func=select_command)


#: Each command's parser, by name.
_PARSERS = {"select": _add_select}


def add_parsers(subparsers: argparse._SubParsersAction, names: Iterable[str] | None = None) -> None:
    """Add this module's commands to the ``deidkit`` subparsers (``names``: only these, in this order;
    :func:`deidkit.cli.build_parser` interleaves the modules to keep the order of ``deidkit --help``)."""
    for name in names or _PARSERS:
        _PARSERS[name](subparsers)
