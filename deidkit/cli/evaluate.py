"""``deidkit frontier``, ``deidkit realism`` and ``deidkit attack``: measure de-identifiers (privacy against
the naive frontier, realism, adapted attackers); records go to reports/metrics."""

from __future__ import annotations

import argparse
from collections.abc import Iterable

#: Recognisers that judge the shipped models: never trained against, never used to select them.
JUDGES = ("dlib", "mobilefacenet_casia")


def _ci(interval: list[float] | None) -> str:
    return "" if not interval else f"[{interval[0]:.3f}, {interval[1]:.3f}]"


def load_methods(names: Iterable[str]) -> list:
    """The de-identifiers named, in order; an unknown name is a user error (one line, exit status 2)."""
    from deidkit.deidentifiers import load_deidentifier

    try:
        return [load_deidentifier(name) for name in names]
    except KeyError as exc:
        raise ValueError(str(exc.args[0])) from None


def frontier_command(args: argparse.Namespace) -> int:
    """Measure de-identifiers against the naive frontier; records go to reports/metrics/<name>.json."""
    from deidkit.eval.frontier import measure_frontier
    from deidkit.eval.selection import SELECTION_PROTOCOL
    from deidkit.recognizers import get_recognizer
    from deidkit.reports import record_metrics

    judges = sorted(set(args.recognizers) & set(JUDGES))
    if args.protocol == SELECTION_PROTOCOL and judges:
        # what the judges read on the selection identities would steer the choice of models: they never see them
        raise ValueError(f"--protocol {SELECTION_PROTOCOL} is for the trained-against recogniser only; drop the "
                         f"judges {', '.join(judges)} (e.g. --recognizers mobilefacenet_ms1m), or use deidkit select")
    methods = load_methods(args.methods)
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


def realism_command(args: argparse.Namespace) -> int:
    """Realism measures (sharpness, colour shift, two-sample probe) of de-identifiers and the naive families."""
    from deidkit.eval.realism import measure_realism
    from deidkit.reports import record_metrics

    names = list(args.methods)
    if not args.no_naive:
        from deidkit.eval.frontier import NAIVE_FAMILIES

        names += ["original", *[n for members in NAIVE_FAMILIES.values() for n in members]]
    methods = load_methods(dict.fromkeys(names))
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


def attack_command(args: argparse.Namespace) -> int:
    """The plain attacker and the trained ones (``--attacks``) against each de-identifier, the naive strengths
    among them with ``--naive``; records go to reports/metrics/<name>.json."""
    from deidkit.eval.attack import ReversalConfig, attack_records, attack_split, attack_table
    from deidkit.eval.attack_finetune import FinetuneConfig
    from deidkit.recognizers import get_recognizer
    from deidkit.reports import record_metrics

    names = list(args.methods)
    if args.naive is not None:  # every strength of the named naive families (all families when none is named)
        from deidkit.eval.naive import NAIVE_FAMILIES

        unknown = [f for f in args.naive if f not in NAIVE_FAMILIES]
        if unknown:
            raise ValueError(f"unknown naive family {unknown[0]!r}; choose from {', '.join(NAIVE_FAMILIES)}")
        names += [n for fam in (args.naive or NAIVE_FAMILIES) for n in NAIVE_FAMILIES[fam]]
    if not names:
        raise ValueError("name at least one de-identifier (e.g. live fadenet blur_sigma8) or use --naive")
    attacks = list(dict.fromkeys(args.attacks + (["reversal"] if args.reversal else [])))
    methods = load_methods(dict.fromkeys(names))
    split = attack_split(args.protocol, train_manifest=args.split, max_images=args.train_images,
                         n_identities=args.identities)
    print(f"attacker split {args.split}: {len(split.train_paths)} training images "
          f"({len(set(split.train_identities))} identities), {len(split.heldout_paths)} held-out images "
          f"({len(set(split.heldout_identities))} identities); test protocol {args.protocol}")
    recognizers = [get_recognizer(n) for n in args.recognizers]
    records = attack_records(methods, recognizers, split, attacks,
                             finetune=FinetuneConfig.profile(args.finetune_profile),
                             reversal=ReversalConfig.profile(args.reversal or args.reversal_profile))
    print(attack_table(records).round(3).to_string(index=False))
    print(f"records: {record_metrics(records, args.name, args.out)}")
    return 0


def _add_frontier(sub: argparse._SubParsersAction) -> None:
    """``deidkit frontier``."""
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
    p.set_defaults(func=frontier_command)


def _add_realism(sub: argparse._SubParsersAction) -> None:
    """``deidkit realism``."""
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
    p.set_defaults(func=realism_command)


def _add_attack(sub: argparse._SubParsersAction) -> None:
    """``deidkit attack``. The names are deidkit.eval.attack's ATTACKS, DEFAULT_ATTACKS and ATTACK_SPLIT, spelt
    out so that building the parser imports no evaluation code."""
    p = sub.add_parser("attack", help="attackers that have learnt each de-identifier: a linear head on a frozen "
                       "recogniser, its last blocks fine-tuned, a reversal U-Net")
    p.add_argument("methods", nargs="*", help="de-identifier names (e.g. live fadenet blur_sigma8 pixelate_16px)")
    p.add_argument("--naive", nargs="*", default=None, metavar="FAMILY",
                   help="also attack every strength of these naive families (deidkit.eval.naive.NAIVE_FAMILIES; "
                        "all families when none is named): the frontier under attack")
    p.add_argument("--attacks", nargs="+", default=["adapted_linear", "adapted_finetune"],
                   choices=["adapted_linear", "adapted_finetune", "reversal"],
                   help="the trained attackers (the plain one always runs); adapted_finetune only for torch "
                        "recognisers (not dlib)")
    p.add_argument("--recognizers", nargs="+", default=["dlib", "mobilefacenet_casia"])
    p.add_argument("--protocol", default="lfw_57x8")
    p.add_argument("--identities", type=int, default=None,
                   help="first N identities of the protocol only (quick checks)")
    p.add_argument("--split", default="lfw_attack_split",
                   help="manifest the attackers learn from (its train role; its heldout role for their own choices)")
    p.add_argument("--train-images", type=int, default=2000,
                   help="at most this many training images of the split (and a quarter as many held-out ones)")
    p.add_argument("--finetune-profile", default="quick", choices=["tiny", "quick", "long"],
                   help="recipe of adapted_finetune (cached, resumable)")
    p.add_argument("--reversal-profile", default="quick", choices=["tiny", "quick", "paper"],
                   help="recipe of the reversal U-Net (cached, resumable)")
    p.add_argument("--reversal", default=None, choices=["tiny", "quick", "paper"],
                   help="add the reversal attacker with this profile (same as --attacks ... reversal "
                        "--reversal-profile PROFILE)")
    p.add_argument("--name", default="attack", help="records file: reports/metrics/<name>.json")
    p.add_argument("--out", default=None, help="reports folder (default: reports/)")
    p.set_defaults(func=attack_command)


#: Each command's parser, by name.
_PARSERS = {"frontier": _add_frontier, "realism": _add_realism, "attack": _add_attack}


def add_parsers(subparsers: argparse._SubParsersAction, names: Iterable[str] | None = None) -> None:
    """Add this module's commands to the ``deidkit`` subparsers (``names``: only these, in this order;
    :func:`deidkit.cli.build_parser` interleaves the modules to keep the order of ``deidkit --help``)."""
    for name in names or _PARSERS:
        _PARSERS[name](subparsers)
