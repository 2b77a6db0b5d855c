"""``deidkit data`` and ``deidkit cache``: the files on disk (LFW: locate, download, verify, align, pack;
what the kit's cache holds, and clearing its derived parts)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable


def data_command(args: argparse.Namespace) -> int:
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


def cache_command(args: argparse.Namespace) -> int:
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


def _add_data(sub: argparse._SubParsersAction) -> None:
    """``deidkit data``."""
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
    p.set_defaults(func=data_command)


def _add_cache(sub: argparse._SubParsersAction) -> None:
    """``deidkit cache``."""
    p = sub.add_parser("cache", help="what the kit's cache holds (info) or remove derived parts of it (clear)")
    p.add_argument("action", choices=["info", "clear"])
    p.add_argument("sections", nargs="*", help="clear: aligned, embeddings, image_level, videos, runs or all "
                   "(default all = everything but runs, the trained models)")
    p.set_defaults(func=cache_command)


#: Each command's parser, by name.
_PARSERS = {"data": _add_data, "cache": _add_cache}


def add_parsers(subparsers: argparse._SubParsersAction, names: Iterable[str] | None = None) -> None:
    """Add this module's commands to the ``deidkit`` subparsers (``names``: only these, in this order;
    :func:`deidkit.cli.build_parser` interleaves the modules to keep the order of ``deidkit --help``)."""
    for name in names or _PARSERS:
        _PARSERS[name](subparsers)
