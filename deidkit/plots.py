"""Figures shared by the notebooks: image grids, CMC curves, ROC curves and the privacy-utility scatter."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


def image_grid(rows: list[np.ndarray], row_titles: list[str] | None = None, col_titles: list[str] | None = None,
               size: float = 1.6):
    """A grid of images: ``rows`` is a list of batches (N, H, W, 3) of equal N."""
    n_rows, n_cols = len(rows), len(rows[0])
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(size * n_cols, size * n_rows), squeeze=False)
    for r, batch in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r, c]
            img = batch[c]
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0 and row_titles:
                ax.set_ylabel(row_titles[r], fontsize=8)
            if r == 0 and col_titles:
                ax.set_title(col_titles[c], fontsize=7)
    fig.tight_layout()
    return fig


def difference_image(a: np.ndarray, b: np.ndarray, gain: float = 4.0) -> np.ndarray:
    """Absolute difference, amplified by ``gain`` for visibility, as uint8."""
    d = np.abs(a.astype(np.float32) - b.astype(np.float32)) * gain
    return np.clip(d, 0, 255).astype(np.uint8)


def cmc_figure(cmcs: dict[tuple[str, str], np.ndarray], recognizer: str, max_rank: int = 20, ax=None):
    """CMC curves of every de-identifier for one recogniser (like FaDeNet's Fig. 5)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.6))
    for (deid, rec), curve in sorted(cmcs.items()):
        if rec != recognizer:
            continue
        k = np.arange(1, min(max_rank, len(curve)) + 1)
        style = "-" if deid == "original" or deid.startswith(("fadenet", "live")) else "--"
        ax.plot(k, curve[: len(k)], style, label=deid, lw=2 if style == "-" else 1)
    ax.set_xlabel("rank")
    ax.set_ylabel("identification rate")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"CMC — {recognizer}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    return ax.figure


def privacy_utility_scatter(table: pd.DataFrame, x: str = "ssim", y: str = "rank1_mean", ax=None):
    """Rank-1 (privacy: lower is better) against SSIM (utility: higher is better), one marker per recogniser,
    with the 5-repetition standard deviation as error bars."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4.2))
    markers = "osD^v<>"
    for i, (rec, grp) in enumerate(table.groupby("recognizer")):
        err = grp[y.replace("_mean", "_std")] if y.endswith("_mean") else None
        ax.errorbar(grp[x], grp[y], yerr=err, fmt=markers[i % len(markers)], label=rec, capsize=2, alpha=0.8)
        for _, row in grp.iterrows():
            ax.annotate(row["deidentifier"], (row[x], row[y]), fontsize=5, alpha=0.7, xytext=(2, 2),
                        textcoords="offset points")
    ax.set_xlabel(f"{x.upper()} to the original (utility)")
    ax.set_ylabel("Rank-1 (identity leaks)")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("Privacy-utility: lower right is better")
    return ax.figure


def roc_figure(rocs: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]], recognizer: str, ax=None):
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.6))
    for (deid, rec), (fpr, tpr) in sorted(rocs.items()):
        if rec == recognizer:
            ax.plot(np.maximum(fpr, 1e-5), tpr, label=deid)
    ax.set_xscale("log")
    ax.set_xlabel("false accept rate")
    ax.set_ylabel("true accept rate")
    ax.set_title(f"original vs de-identified pairs — {recognizer}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    return ax.figure


def distance_scatter(distances: pd.DataFrame, recognizer: str, ax=None):
    """Pixel distance against descriptor distance to the original, one colour per de-identifier (the live
    paper's Fig. 4e). ``distances``: rows with ``deidentifier``, ``recognizer``, ``pixel_rmse`` and
    ``descriptor_distance`` (see :func:`deidkit.eval.quality.pixel_descriptor_distances`)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(4.6, 3.6))
    for name, grp in distances[distances["recognizer"] == recognizer].groupby("deidentifier", sort=True):
        ax.scatter(grp["pixel_rmse"], grp["descriptor_distance"], s=10, alpha=0.7, label=name)
    ax.set_xlabel("pixel RMSE to the original (face region)")
    ax.set_ylabel("descriptor distance (1 - cos)")
    ax.set_title(recognizer, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return ax.figure


#: Colour of each naive kind; its variants share it (boxed dashed, blended solid).
FAMILY_COLOURS = {"blur": "tab:blue", "pixelate": "tab:orange"}


def family_style(family: str) -> dict:
    """Line style of a naive family in the frontier figures: the kind's colour (``blur`` blue, ``pixelate``
    orange, others grey); boxed families dashed, blended ones solid, a blended family at another feather than
    the kit's blend (:data:`deidkit.baselines.BLEND_FEATHER`) solid and fainter, with crosses."""
    from deidkit.eval.naive import variant_of

    kind, _, rest = family.partition("_blend")
    colour = FAMILY_COLOURS.get(kind, "grey")
    if variant_of(family) == "boxed":
        return {"color": colour, "ls": "--", "marker": ".", "lw": 1.0}
    if rest:  # another feather: told apart from the kit's blend without a third line style
        return {"color": colour, "ls": "-", "marker": "x", "ms": 4, "lw": 1.0, "alpha": 0.6}
    return {"color": colour, "ls": "-", "marker": ".", "lw": 1.6}


def family_label(family: str) -> str:
    """Legend label of a naive family: ``blur (naive, boxed)``, ``blur_blend_f0.13 (naive, blended)``."""
    from deidkit.eval.naive import variant_of

    return f"{family} (naive, {variant_of(family)})"


def frontier_figure(tables: dict[str, pd.DataFrame], recognizers: list[str], families: dict | None = None,
                    attacks: list[dict] | None = None):
    """The privacy-utility frontier: one panel per (level, recogniser); each naive family as a line through its
    strengths (and the original at SSIM 1; boxed families dashed, blended ones solid, :func:`family_style`), every
    other de-identifier as a labelled marker with its repetition SD. A marker below the lowest line is better than
    naive at its image quality. ``tables``: level -> frontier
    table (see :mod:`deidkit.eval.frontier`). ``attacks`` (``kind="attack"`` records, :mod:`deidkit.eval.attack`):
    on the crop-level panels, each adaptive attacker's Rank-1 as a hollow marker joined to the plain one (same SSIM:
    the image is the same, the attacker is stronger)."""
    from deidkit.eval.frontier import NAIVE_FAMILIES, family_curve, family_of

    families = families or NAIVE_FAMILIES
    levels = list(tables)
    fig, axes = plt.subplots(len(levels), len(recognizers), figsize=(4.6 * len(recognizers), 3.9 * len(levels)),
                             squeeze=False)
    for i, level in enumerate(levels):
        table = tables[level]
        for j, rec in enumerate(recognizers):
            ax = axes[i][j]
            for fam, members in families.items():
                c = family_curve(table, rec, members)
                ax.plot(c["ssim"], c["rank1_mean"], label=family_label(fam), **family_style(fam))
            others = table[(table["recognizer"] == rec) & (table["deidentifier"] != "original")
                           & table["deidentifier"].map(lambda n: family_of(n, families) is None)]
            for _, row in others.iterrows():
                ax.errorbar(row["ssim"], row["rank1_mean"], yerr=row["rank1_std"], fmt="o", ms=5, capsize=2)
                ax.annotate(row["deidentifier"], (row["ssim"], row["rank1_mean"]), fontsize=6, xytext=(3, 3),
                            textcoords="offset points")
            if level == "crop":
                _attack_points(ax, table, rec, attacks or [])
            ax.set_ylim(-0.02, 1.02)
            ax.set_xlabel(f"SSIM ({'whole photo' if level == 'image' else 'canonical crop'})")
            ax.set_ylabel("Rank-1")
            ax.set_title(f"{level} level — {rec}", fontsize=9)
            ax.grid(alpha=0.3)
            if i == 0 and j == 0:
                ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


def _attack_points(ax, table: pd.DataFrame, recognizer: str, attacks: list[dict]) -> None:
    # "adapted" is the linear head's name in records written before the fine-tuned attacker existed
    markers = {"adapted": ("^", "tab:red"), "adapted_linear": ("^", "tab:red"), "adapted_finetune": ("v", "tab:brown"),
               "reversal": ("s", "tab:purple")}
    shown = set()
    for r in attacks:
        if r.get("kind") != "attack" or r["recognizer"] != recognizer or r["attack"] not in markers:
            continue
        row = table[(table["recognizer"] == recognizer) & (table["deidentifier"] == r["deidentifier"])]
        plain = [a for a in attacks if a.get("kind") == "attack" and a["attack"] == "none"
                 and a["deidentifier"] == r["deidentifier"] and a["recognizer"] == recognizer]
        if row.empty or not plain:
            continue
        x = float(row["ssim"].iloc[0])
        marker, colour = markers[r["attack"]]
        ax.plot([x, x], [plain[0]["rank1"], r["rank1"]], ":", color=colour, lw=0.8)
        ax.plot(x, r["rank1"], marker, mfc="none", color=colour, ms=6,
                label=None if r["attack"] in shown else f"{r['attack']} attacker")
        shown.add(r["attack"])


def video_frames_figure(original, deidentified, frames: list[int], label: str):
    """Frames ``frames`` of a video and of its de-identified copy side by side, with the largest face of each
    original frame (YuNet) cut out of both, original above de-identified: what a viewer of the output sees."""
    from deidkit.data.alignment import make_detector
    from deidkit.pipeline import largest_face_window, read_frames

    a, b = read_frames(original, frames), read_frames(deidentified, frames)
    yunet = make_detector("yunet")
    fig, axes = plt.subplots(len(frames), 3, figsize=(12, 2.4 * len(frames)),
                             gridspec_kw={"width_ratios": [3, 3, 1.2]}, squeeze=False)
    for r, i in enumerate(frames):
        axes[r, 0].imshow(a[i])
        axes[r, 1].imshow(b[i])
        box = largest_face_window(yunet, a[i])
        if box is not None:
            y0, y1, x0, x1 = box
            axes[r, 2].imshow(np.concatenate([a[i][y0:y1, x0:x1], b[i][y0:y1, x0:x1]], 0))
        for ax in axes[r]:
            ax.axis("off")
    axes[0, 0].set_title("original")
    axes[0, 1].set_title(label)
    axes[0, 2].set_title("face")
    fig.tight_layout()
    return fig


def selection_curves_figure(table: pd.DataFrame, max_rank1: float | None = None,
                            highlight: list[tuple[str, str]] | None = None, levels: tuple[str, ...] = ("crop", "image")):
    """Training recipes compared on the selection protocol (a :func:`deidkit.eval.selection.recorded_selections`
    table): per level, each candidate's Rank-1 with the trained-against recogniser against its SSIM, one colour and
    marker per run, with the naive frontier's Rank-1 at the same SSIMs (grey) and ``max_rank1`` (the selection rule's bound,
    crop level) dashed. ``highlight`` rings (run, candidate) pairs, e.g. the shipped one."""
    fig, axes = plt.subplots(1, len(levels), figsize=(6.2 * len(levels), 4.6), squeeze=False)
    runs = sorted(table["run"].unique())
    # ten colours, then the next marker: every run keeps a pair of its own however many there are
    styles = [(plt.get_cmap("tab10")(i % 10), "o^sDv"[(i // 10) % 5]) for i in range(len(runs))]
    for ax, level in zip(axes[0], levels):
        s, r, f = table[f"{level}_ssim"], table[f"{level}_rank1"], table[f"{level}_frontier_rank1"]
        order = np.argsort(s.to_numpy())
        ax.plot(s.to_numpy()[order], f.to_numpy()[order], color="0.6", lw=1, marker="x", ms=3,
                label="naive frontier (blur / pixelate, boxed or blended) at that SSIM")
        for (colour, marker), run in zip(styles, runs):
            grp = table[table["run"] == run]
            ax.scatter(grp[f"{level}_ssim"], grp[f"{level}_rank1"], s=20, color=colour, marker=marker, label=run,
                       zorder=3)
        for run, cand in highlight or []:
            hit = table[(table["run"] == run) & (table["candidate"] == cand)]
            ax.scatter(hit[f"{level}_ssim"], hit[f"{level}_rank1"], s=110, facecolors="none", edgecolors="k",
                       lw=1.5, zorder=4, label=f"{run} {cand}" if level == levels[0] else None)
        if max_rank1 is not None and level == "crop":
            ax.axhline(max_rank1, color="k", ls="--", lw=1, label=f"selection bound {max_rank1:g}")
        ax.set_ylim(0, max([0.3, *(r.dropna() * 1.2)]))
        if table.empty:
            ax.text(0.5, 0.5, "no selection records", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel(f"SSIM ({level} level)")
        ax.set_ylabel("Rank-1, trained-against recogniser")
        ax.set_title(f"{level} level: lower right is better")
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.tight_layout(rect=(0, 0.06 + 0.022 * ((len(labels) + 3) // 4), 1, 1))
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=7, frameon=False)
    return fig


def realism_figure(tables: dict[str, pd.DataFrame], realism: list[dict], recognizers: list[str],
                   families: dict | None = None, axis: str = "sharpness"):
    """Privacy against image quality, twice per level and recogniser: Rank-1 against SSIM (the frontier's axis) and
    against a realism measure (``axis``: ``"sharpness"`` on a log scale, or ``"c2st"``), each naive family as a
    line (boxed dashed, blended solid), every other de-identifier as a labelled marker. SSIM forgives blur; the realism axis does not: a point
    that looks better than blur on SSIM may look no better on sharpness. ``tables``: level -> frontier table;
    ``realism``: ``kind="realism"`` records of the same de-identifiers and levels."""
    from deidkit.eval.frontier import NAIVE_FAMILIES, family_of

    families = families or NAIVE_FAMILIES
    levels = [lv for lv in tables if any(r["level"] == lv for r in realism)]
    fig, axes = plt.subplots(len(levels), 2 * len(recognizers), figsize=(4.2 * 2 * len(recognizers),
                             3.8 * len(levels)), squeeze=False)
    for i, level in enumerate(levels):
        real = pd.DataFrame([r for r in realism if r["level"] == level])
        table = tables[level].merge(real[["deidentifier", axis]], on="deidentifier", how="inner")
        for j, rec in enumerate(recognizers):
            t = table[table["recognizer"] == rec]
            for k, x in enumerate(("ssim", axis)):
                ax = axes[i][2 * j + k]
                for fam, members in families.items():
                    # the family in order of strength, from the original (pixelation's sharpness is not monotonic)
                    order = {n: k for k, n in enumerate(["original", *members])}
                    c = t[t["deidentifier"].isin(order)].sort_values("deidentifier", key=lambda n: n.map(order))
                    ax.plot(c[x], c["rank1_mean"], label=family_label(fam), **family_style(fam))
                for _, row in t[t["deidentifier"].map(lambda n: family_of(n, families) is None)].iterrows():
                    ax.plot(row[x], row["rank1_mean"], "o", ms=5)
                    ax.annotate(row["deidentifier"], (row[x], row["rank1_mean"]), fontsize=6, xytext=(3, 3),
                                textcoords="offset points")
                if x == "sharpness":
                    ax.set_xscale("log")
                    ax.axvline(1.0, color="grey", lw=0.6, ls=":")
                label = {"ssim": "SSIM", "sharpness": "sharpness (1: the original's detail)",
                         "c2st": "c2st accuracy (0.5: indistinguishable)"}[x]
                ax.set_xlabel(f"{label}, {'whole photo' if level == 'image' else 'canonical crop'}")
                ax.set_ylabel("Rank-1")
                ax.set_ylim(-0.02, 1.02)
                ax.set_title(f"{level} level — {rec}", fontsize=9)
                ax.grid(alpha=0.3)
                if i == 0 and j == 0 and k == 0:
                    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


def face_mosaic(rows: list[np.ndarray], row_titles: list[str], side: int | None = None) -> np.ndarray:
    """One RGB image: each row a batch of faces (N, S, S, 3) shown at their own pixels (no figure scaling, so a
    256-pixel face is 256 pixels on screen), its title written above it."""
    import cv2

    s = side or rows[0].shape[1]
    n = len(rows[0])
    title_h = 22
    canvas = np.full((len(rows) * (s + title_h), n * s, 3), 255, np.uint8)
    for r, (batch, title) in enumerate(zip(rows, row_titles)):
        y = r * (s + title_h)
        cv2.putText(canvas, title, (4, y + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
        for c, face in enumerate(batch):
            if face.shape[0] != s:
                face = cv2.resize(face, (s, s), interpolation=cv2.INTER_LANCZOS4)
            canvas[y + title_h:y + title_h + s, c * s:(c + 1) * s] = face
    return canvas
