"""Evaluation and training protocols as versioned manifests (CSV in ``data_manifests/``), built with recorded seeds.

- ``lfw_217x8``: every LFW identity with >= 8 face-detected images, 8 images each, 5 repetitions of a random
  4 gallery + 4 probe split per identity (the FaDeNet protocol transposed to LFW).
- ``lfw_57x8``: 57 of those identities (as many as the Radboud subjects FaDeNet used), same images and splits.
- ``lfw_train_pool``: every identity with fewer than 8 images, hence disjoint from both test protocols; the critic
  uses those with >= 4 images (one held out per identity), the generators use every image (labels unused).
- ``lfw_all_identities``: a gallery template set over all 5,749 identities for "rank of the true identity" (built
  without ``lfw_57x8``'s probes; the evaluated protocol's probes are dropped again when it is used:
  :func:`gallery_without_probes`).
- ``lfw_select_160x8``: the other 160 identities of ``lfw_217x8`` (not in ``lfw_57x8``), same images and splits:
  where shipped models are *selected* (with the trained-against recogniser only), never where they are judged.
- ``lfw_pairs``: the official View-2 verification pairs.

Training and attack data loaders call :func:`assert_no_test_identities` at run time: no identity of ``lfw_57x8`` or
``lfw_217x8`` may reach what is trained.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from deidkit.assets import asset_path, sha256_file
from deidkit.data.lfw import (  # noqa: F401 (the guard is re-exported: training and attack loaders call it)
    MANIFEST_DIR,
    TEST_PROTOCOLS,
    assert_no_test_identities,
    held_out_identities,
    lfw_root,
)

PROTOCOL_SEEDS = {"lfw_217x8": 217, "lfw_57x8": 57, "lfw_train_pool": 4, "lfw_all_identities": 5749}
N_REPS = 5
GALLERY_TEMPLATE_IMAGES = 5
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp"}


def import_folder(root: str | os.PathLike) -> pd.DataFrame:
    """Manifest of a generic ``<root>/<identity>/<image>`` data set (Radboud, XM2VTS, your own): path (relative
    to ``root``), identity, sha256."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder; expected <root>/<identity>/<image>")
    files = sorted(f for f in root.glob("*/*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"{root}: no images found in <root>/<identity>/<image> layout")
    return pd.DataFrame([(f.relative_to(root).as_posix(), f.parent.name, sha256_file(f)) for f in files],
                        columns=["path", "identity", "sha256"])


def identification_protocol(files: pd.DataFrame, n_identities: int | None, n_images: int = 8, n_gallery: int = 4,
                            reps: int = N_REPS, seed: int = 0) -> pd.DataFrame:
    """Closed-set identification protocol: ``n_identities`` identities (all eligible ones when None) with
    ``n_images`` images each, and ``reps`` random gallery/probe splits per identity (columns ``rep0``...)."""
    rng = np.random.default_rng(seed)
    counts = files.groupby("identity").size()
    eligible = sorted(counts[counts >= n_images].index)
    if n_identities is not None:
        if n_identities > len(eligible):
            raise ValueError(f"only {len(eligible)} identities have >= {n_images} images; asked for {n_identities}")
        eligible = sorted(rng.choice(eligible, size=n_identities, replace=False).tolist())
    rows = []
    for ident in eligible:
        imgs = files[files["identity"] == ident].sort_values("path")
        pick = imgs.iloc[np.sort(rng.choice(len(imgs), size=n_images, replace=False))]
        roles = np.empty((reps, n_images), dtype=object)
        for r in range(reps):
            perm = rng.permutation(n_images)
            roles[r, perm[:n_gallery]] = "gallery"
            roles[r, perm[n_gallery:]] = "probe"
        for j, (_, row) in enumerate(pick.iterrows()):
            rows.append({"identity": ident, "path": row["path"], "sha256": row["sha256"],
                         **{f"rep{r}": roles[r, j] for r in range(reps)}})
    return pd.DataFrame(rows)


def protocol_subset(protocol: pd.DataFrame, n_identities: int, seed: int) -> pd.DataFrame:
    """``n_identities`` identities of a protocol, keeping their images and splits."""
    rng = np.random.default_rng(seed)
    idents = sorted(protocol["identity"].unique())
    keep = set(rng.choice(idents, size=n_identities, replace=False).tolist())
    return protocol[protocol["identity"].isin(keep)].reset_index(drop=True)


def first_identities(protocol: pd.DataFrame, n_identities: int | None) -> pd.DataFrame:
    """The first ``n_identities`` identities (sorted) of a protocol with their images and splits, for tiny
    profiles and quick checks; all when None."""
    if n_identities is None:
        return protocol
    keep = sorted(protocol["identity"].unique())[:n_identities]
    return protocol[protocol["identity"].isin(keep)].reset_index(drop=True)


def probe_rows(protocol: pd.DataFrame, rep: str = "rep0") -> pd.DataFrame:
    """The images a protocol uses as probes in repetition ``rep`` (those ranked against a large gallery)."""
    return protocol[protocol[rep] == "probe"]


def gallery_without_probes(gallery: pd.DataFrame, protocol: pd.DataFrame, rep: str = "rep0") -> pd.DataFrame:
    """``gallery`` (a large gallery such as ``lfw_all_identities``) without the images ``protocol`` ranks as probes
    in ``rep``, matched by path and by content (sha256): a probe found in the gallery would find itself.
    ``lfw_all_identities`` leaves out only ``lfw_57x8``'s probes; ``lfw_217x8``'s other probes are dropped here.
    Checked with :func:`assert_no_probe_images`."""
    probes = probe_rows(protocol, rep)
    same = gallery["path"].isin(set(probes["path"]))
    if "sha256" in gallery and "sha256" in probes:
        same |= gallery["sha256"].isin(set(probes["sha256"]))
    out = gallery[~same].reset_index(drop=True)
    assert_no_probe_images(out, protocol, rep)
    return out


def assert_no_probe_images(gallery: pd.DataFrame, protocol: pd.DataFrame, rep: str = "rep0") -> None:
    """Raise ``ValueError`` naming the images when ``gallery`` holds one of ``protocol``'s ``rep`` probes (by
    path or content)."""
    probes = probe_rows(protocol, rep)
    found = set(gallery["path"]) & set(probes["path"])
    if "sha256" in gallery and "sha256" in probes:
        by_sha = set(gallery["sha256"]) & set(probes["sha256"])
        found |= set(gallery.loc[gallery["sha256"].isin(by_sha), "path"])
    if found:
        raise ValueError(f"the gallery holds {len(found)} probe image(s) of the protocol it ranks: "
                         f"{sorted(found)[:5]}; a probe must not be its own gallery image")


def train_pool(files: pd.DataFrame, test_identities: set[str], min_critic_images: int = 4,
               seed: int = 0) -> pd.DataFrame:
    """Identities not in any test protocol. ``critic_split`` is ``train``/``heldout`` (one image per identity held
    out) for identities with >= ``min_critic_images`` images, else ``none`` (used by the generators only)."""
    rng = np.random.default_rng(seed)
    pool = files[~files["identity"].isin(test_identities)].sort_values("path").reset_index(drop=True)
    pool["critic_split"] = "none"
    for _, grp in pool.groupby("identity"):
        if len(grp) >= min_critic_images:
            pool.loc[grp.index, "critic_split"] = "train"
            pool.loc[rng.choice(grp.index.to_numpy()), "critic_split"] = "heldout"
    return pool


def attack_split_manifest(pool: pd.DataFrame, fraction: float = 1 / 3, heldout: float = 0.2,
                          min_critic_images: int = 4, seed: int = 3) -> pd.DataFrame:
    """The attacker's split (``lfw_attack_split``): a seeded ``fraction`` of the training pool's identities with fewer
    than ``min_critic_images`` images, every image of each, with ``role`` ``heldout`` for a seeded ``heldout`` share
    of them (the attacker's own model selection and early stopping) and ``train`` for the others.

    LFW holds no identity outside the test protocols and the pool, so the attacker cannot have identities no
    de-identifier saw: these are outside the critic's split, so the FaDeNet models and their critics never saw them,
    while the live model trained on every pool image. Both draws are made within each image count (1, 2, 3), so the
    split keeps the pool's mix of single- and multi-image identities."""
    rng = np.random.default_rng(seed)
    counts = pool.groupby("identity").size()
    if "critic_split" in pool.columns:  # the critic's identities, as the manifest names them
        critic = set(pool.loc[pool["critic_split"] != "none", "identity"])
    else:
        critic = set(counts[counts >= min_critic_images].index)
    eligible = counts[(counts < min_critic_images) & ~counts.index.isin(critic)]
    chosen, held = [], []
    for n in sorted(eligible.unique()):
        names = sorted(eligible[eligible == n].index)
        take = sorted(rng.choice(names, size=int(round(len(names) * fraction)), replace=False).tolist())
        chosen += take
        held += rng.choice(take, size=int(round(len(take) * heldout)), replace=False).tolist()
    out = pool[pool["identity"].isin(set(chosen))].sort_values("path")[["path", "identity", "sha256"]]
    out = out.assign(role=np.where(out["identity"].isin(set(held)), "heldout", "train")).reset_index(drop=True)
    assert_no_test_identities(out["identity"], "the attacker split")
    return out


def all_identities_gallery(files: pd.DataFrame, exclude_paths: set[str], per_identity: int = GALLERY_TEMPLATE_IMAGES,
                           seed: int = 0) -> pd.DataFrame:
    """Gallery for rank-of-the-true-identity: up to ``per_identity`` images of every identity, never a probe."""
    rng = np.random.default_rng(seed)
    rows = []
    for _, grp in files[~files["path"].isin(exclude_paths)].sort_values("path").groupby("identity"):
        take = grp if len(grp) <= per_identity else grp.iloc[np.sort(rng.choice(len(grp), per_identity, False))]
        rows.append(take[["identity", "path", "sha256"]])
    return pd.concat(rows, ignore_index=True)


class PairsFormatError(ValueError):
    """``pairs.txt`` does not follow the LFW View-2 format; the message names the file and line."""


@dataclass(frozen=True)
class LFWPairs:
    """LFW View-2 pairs: image paths (``<Name>/<Name>_<NNNN>.jpg``, relative to LFW's image folder),
    whether each pair shows the same person, and its fold (0-9)."""

    left: tuple[str, ...]
    right: tuple[str, ...]
    same: np.ndarray
    fold: np.ndarray
    source: str = ""

    def __len__(self) -> int:
        return len(self.left)

    @property
    def n_folds(self) -> int:
        return int(self.fold.max()) + 1 if len(self.fold) else 0

    def to_frame(self) -> pd.DataFrame:
        """fold, path1, path2, same, with paths relative to the LFW root (``images/<Name>/...``) as in the
        manifests."""
        return pd.DataFrame({"fold": self.fold, "path1": [f"images/{p}" for p in self.left],
                             "path2": [f"images/{p}" for p in self.right], "same": self.same})

    def unique_paths(self) -> list[str]:
        """Every image the protocol uses, once, in first-seen order (7,701 for the official file)."""
        return list(dict.fromkeys(p for pair in zip(self.left, self.right) for p in pair))


def image_relpath(name: str, number: int) -> str:
    """LFW's file naming: ``Aaron_Peirsol``, 1 -> ``Aaron_Peirsol/Aaron_Peirsol_0001.jpg``."""
    return f"{name}/{name}_{number:04d}.jpg"


def parse_pairs(path: str | os.PathLike | None = None) -> LFWPairs:
    """Read LFW's ``pairs.txt`` (the checksum-verified shared copy when ``path`` is None).

    The header gives ``n_folds n_per_class``; each fold is ``n_per_class`` matched lines (``name i j``)
    then ``n_per_class`` mismatched lines (``name1 i name2 j``).
    """
    path = Path(asset_path("lfw-pairs") if path is None else path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such pairs file")
    lines = [ln.strip() for ln in path.read_text().splitlines()]
    lines = [ln for ln in lines if ln]
    if not lines:
        raise PairsFormatError(f"{path}: empty pairs file")
    try:
        n_folds, n_per = (int(v) for v in lines[0].split())
    except ValueError:
        raise PairsFormatError(f"{path}: line 1 should be '<n_folds> <pairs per class>', got {lines[0]!r}") from None
    expected = n_folds * 2 * n_per
    if len(lines) - 1 != expected:
        raise PairsFormatError(f"{path}: header promises {n_folds} folds x 2 x {n_per} = {expected} pairs, "
                               f"found {len(lines) - 1} lines")
    left, right, same, fold = [], [], [], []
    for i, line in enumerate(lines[1:]):
        f, pos = divmod(i, 2 * n_per)
        want_same = pos < n_per
        tok = line.split()
        try:
            if len(tok) == 3:
                a, b, is_same = image_relpath(tok[0], int(tok[1])), image_relpath(tok[0], int(tok[2])), True
            elif len(tok) == 4:
                a, b, is_same = image_relpath(tok[0], int(tok[1])), image_relpath(tok[2], int(tok[3])), False
            else:
                raise ValueError
        except ValueError:
            raise PairsFormatError(f"{path}: line {i + 2} is not 'name i j' or 'name1 i name2 j': {line!r}") from None
        if is_same != want_same:
            kind = "matched" if want_same else "mismatched"
            raise PairsFormatError(f"{path}: line {i + 2} should be a {kind} pair (fold {f + 1}): {line!r}")
        left.append(a)
        right.append(b)
        same.append(is_same)
        fold.append(f)
    return LFWPairs(tuple(left), tuple(right), np.asarray(same, dtype=bool), np.asarray(fold, dtype=np.int64),
                    str(path))


def build_lfw_manifests(alignment: pd.DataFrame, out_dir: Path = MANIFEST_DIR) -> dict[str, pd.DataFrame]:
    """Build every LFW protocol from the file manifest and the alignment result (images without a face are
    excluded and listed in ``lfw_no_face.csv``). Deterministic for given seeds; writes CSVs + ``protocols.yaml``."""
    files = pd.read_csv(out_dir / "lfw_files.csv", dtype={"sha256": str})
    status = dict(zip(alignment["path"], alignment["status"]))
    bad = files[files["path"].map(lambda p: status.get(p) in (None, "no_face", "unreadable"))]
    usable = files[~files["path"].isin(bad["path"])]
    p217 = identification_protocol(usable, None, seed=PROTOCOL_SEEDS["lfw_217x8"])
    p57 = protocol_subset(p217, 57, seed=PROTOCOL_SEEDS["lfw_57x8"])
    select = p217[~p217["identity"].isin(set(p57["identity"]))]
    test_ids = set(p217["identity"])
    pool = train_pool(usable, test_ids | set(files.groupby("identity").size().loc[lambda s: s >= 8].index),
                      seed=PROTOCOL_SEEDS["lfw_train_pool"])
    probes57 = set(p57.loc[p57["rep0"] == "probe", "path"])
    gallery_all = all_identities_gallery(usable, probes57, seed=PROTOCOL_SEEDS["lfw_all_identities"])
    pairs = parse_pairs(lfw_root() / "pairs.txt").to_frame()
    out = {"lfw_217x8": p217, "lfw_57x8": p57, "lfw_select_160x8": select, "lfw_train_pool": pool, "lfw_all_identities": gallery_all,
           "lfw_pairs": pairs, "lfw_no_face": bad.assign(status=bad["path"].map(status))}
    for name, df in out.items():
        df.to_csv(out_dir / f"{name}.csv", index=False)
    meta = {
        "version": 1,
        "source": "LFW (original, unaligned), data_manifests/lfw_files.csv",
        "alignment": "canonical crop, YuNet with MTCNN fallback; images where neither finds a face are excluded",
        "protocols": {
            "lfw_217x8": {"seed": PROTOCOL_SEEDS["lfw_217x8"], "identities": int(p217.identity.nunique()),
                          "images_per_identity": 8, "gallery": 4, "probe": 4, "repetitions": N_REPS},
            "lfw_57x8": {"seed": PROTOCOL_SEEDS["lfw_57x8"], "subset_of": "lfw_217x8",
                         "identities": int(p57.identity.nunique())},
            "lfw_select_160x8": {"subset_of": "lfw_217x8", "identities": int(select.identity.nunique()),
                                 "rule": "lfw_217x8 without lfw_57x8: model selection only"},
            "lfw_train_pool": {"seed": PROTOCOL_SEEDS["lfw_train_pool"], "identities": int(pool.identity.nunique()),
                               "images": len(pool),
                               "critic_identities": int(pool.loc[pool.critic_split != "none", "identity"].nunique()),
                               "rule": "identities with < 8 images; critic uses those with >= 4, one held out"},
            "lfw_all_identities": {"seed": PROTOCOL_SEEDS["lfw_all_identities"],
                                   "identities": int(gallery_all.identity.nunique()), "images": len(gallery_all),
                                   "rule": f"up to {GALLERY_TEMPLATE_IMAGES} images per identity, "
                                           "never an lfw_57x8 rep0 probe"},
            "lfw_pairs": {"source": "official pairs.txt (View 2)", "folds": 10, "pairs": len(pairs)},
            "lfw_no_face": {"images": len(bad)},
        },
    }
    (out_dir / "protocols.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    return out
