"""Curves and figures of a sweep: privacy-utility curves by family, lambda trends, the comparison with the naive
baselines."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from deidkit.ablation.models import MODELS
from deidkit.ablation.sweep import BASELINE_FAMILIES, SweepResult


def privacy_utility_curves(table: pd.DataFrame, recognizer: str, x: str = "ssim",
                           y: str = "rank1_mean") -> pd.DataFrame:
    """One recogniser's points, grouped into curves and ordered along each curve.

    Columns: ``curve`` (fadenet, live, or the baseline family), ``deidentifier``, ``order`` (lambda for learned
    models, strength for baselines), ``x``, ``y``, ``yerr`` (the std over the repetitions when ``y`` is a
    ``*_mean`` column), ``learned``. Rows with a missing ``x`` or ``y`` are dropped."""
    need = {"recognizer", "deidentifier", "model", x, y}
    missing = need - set(table.columns)
    if missing:
        raise KeyError(f"table lacks columns {sorted(missing)}")
    t = table[table["recognizer"] == recognizer]
    if "status" in t:
        t = t[t["status"] == "ok"]
    if t.empty:
        raise KeyError(f"no rows for recogniser {recognizer!r}; have {sorted(table['recognizer'].dropna().unique())}")
    err_col = y[: -len("_mean")] + "_std" if y.endswith("_mean") else None
    lam = t["lambda"] if "lambda" in t else pd.Series(np.nan, index=t.index)
    strength = t["strength"] if "strength" in t else pd.Series(np.nan, index=t.index)
    learned = t["model"].isin(MODELS)
    out = pd.DataFrame({
        "curve": t["model"].to_numpy(),
        "deidentifier": t["deidentifier"].to_numpy(),
        "order": np.where(learned, pd.to_numeric(lam, errors="coerce"), pd.to_numeric(strength, errors="coerce")),
        "x": pd.to_numeric(t[x], errors="coerce").to_numpy(),
        "y": pd.to_numeric(t[y], errors="coerce").to_numpy(),
        "yerr": (pd.to_numeric(t[err_col], errors="coerce").to_numpy() if err_col and err_col in t
                 else np.full(len(t), np.nan)),
        "learned": learned.to_numpy(),
    })
    out = out.dropna(subset=["x", "y"])
    return out.sort_values(["learned", "curve", "order"], ascending=[False, True, True],
                           na_position="first").reset_index(drop=True)


def lambda_trend(table: pd.DataFrame, metrics: tuple[str, ...] = ("rank1_mean", "ssim", "landmark_iod")
                 ) -> pd.DataFrame:
    """Per learned model and recogniser: Spearman correlation of lambda with each metric, and the metric at the
    smallest and the largest lambda. A gradual trade shows as Rank-1 and SSIM both falling with lambda."""
    from scipy.stats import spearmanr

    rows = []
    t = table[table["model"].isin(MODELS)]
    if "status" in t:
        t = t[t["status"] == "ok"]
    for (model, rec), g in t.groupby(["model", "recognizer"], sort=True):
        g = g.sort_values("lambda")
        row: dict[str, Any] = {"model": model, "recognizer": rec, "points": len(g)}
        for m in metrics:
            if m not in g:
                continue
            vals = pd.to_numeric(g[m], errors="coerce")
            ok = vals.notna()
            if ok.sum() >= 3 and vals[ok].nunique() > 1:
                row[f"{m}_spearman"] = float(spearmanr(g["lambda"][ok], vals[ok]).statistic)
            else:  # too few points (or a constant metric) to correlate
                row[f"{m}_spearman"] = float("nan")
            row[f"{m}_at_min_lambda"] = float(vals.iloc[0])
            row[f"{m}_at_max_lambda"] = float(vals.iloc[-1])
        rows.append(row)
    return pd.DataFrame(rows)


def baseline_comparison(table: pd.DataFrame, recognizer: str) -> pd.DataFrame:
    """For each learned point: how many baselines keep at least its SSIM, and whether it has a lower Rank-1 than
    all of them ("beats every naive baseline at equal image quality")."""
    from deidkit.eval.benchmark import privacy_utility_frontier

    t = table[(table["recognizer"] == recognizer)]
    if "status" in t:
        t = t[t["status"] == "ok"]
    baselines = t[t["model"].isin(BASELINE_FAMILIES) & (t["model"] != "original")]
    rows = []
    for _, r in t[t["model"].isin(MODELS)].iterrows():
        front = privacy_utility_frontier(pd.concat([baselines, r.to_frame().T]), recognizer, r["deidentifier"])
        rows.append({"deidentifier": r["deidentifier"], "model": r["model"], "lambda": r["lambda"],
                     "ssim": r["ssim"], "rank1_mean": r["rank1_mean"],
                     "baselines_with_higher_ssim": int(len(front)),
                     "best_baseline_rank1_there": float(front["rank1_mean"].min()) if len(front) else float("nan"),
                     "beats_them_all": bool(len(front) and front["beaten"].all())})
    return pd.DataFrame(rows)


_COLORS = {"fadenet": "tab:red", "live": "tab:blue", "blur": "tab:gray", "pixelate": "tab:brown",
           "noise": "tab:olive", "blackbox": "black", "original": "tab:green"}


def curves_figure(table: pd.DataFrame, recognizers: list[str] | tuple[str, ...], independent: Iterable[str] = (),
                  x: str = "ssim", y: str = "rank1_mean", size: tuple[float, float] = (5.2, 4.2)):
    """Privacy-utility curves (Rank-1 against SSIM, error bars from the repetitions) of every learned model and
    baseline family, one panel per recogniser; learned points are annotated with their lambda."""
    import matplotlib.pyplot as plt

    independent = set(independent)
    fig, axes = plt.subplots(1, len(recognizers), figsize=(size[0] * len(recognizers), size[1]), squeeze=False)
    for ax, rec in zip(axes[0], recognizers):
        curves = privacy_utility_curves(table, rec, x, y)
        for name, g in curves.groupby("curve", sort=False):
            learned = bool(g["learned"].iloc[0])
            ax.errorbar(g["x"], g["y"], yerr=g["yerr"].fillna(0), fmt="-o" if learned else "--s",
                        color=_COLORS.get(name), lw=2 if learned else 1, ms=5 if learned else 4, capsize=2,
                        label=name, alpha=0.9)
            for _, r in g.iterrows():
                if learned:
                    ax.annotate(f"λ={r['order']:g}", (r["x"], r["y"]), fontsize=6, xytext=(3, 3),
                                textcoords="offset points", color=_COLORS.get(name))
                elif not np.isnan(r["order"]):
                    ax.annotate(f"{r['order']:g}", (r["x"], r["y"]), fontsize=5, xytext=(2, -8),
                                textcoords="offset points", alpha=0.7)
        note = "" if rec in independent else " (not independent)"
        ax.set_title(f"{rec}{note}", fontsize=9)
        ax.set_xlabel(f"{x.upper()} to the original (utility →)")
        ax.set_ylabel("Rank-1 (identity leaks ↑)")
        ax.set_ylim(-0.02, 1.08)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="lower right")
    fig.suptitle("Privacy-utility curves over lambda (lower right is better)", fontsize=10)
    fig.tight_layout()
    return fig


def lambda_sequence_figure(result: SweepResult, model: str, recognizer: str | None = None, size: float = 1.5):
    """Like the live paper's Fig. 6: each row a sample face, the original first, then the model's output for
    each lambda (ascending); column titles give lambda and the point's Rank-1 and SSIM."""
    import matplotlib.pyplot as plt

    lams = result.lambdas(model)
    if not lams:
        raise ValueError(f"no evaluated {model} points to show")
    recs = result.config.recognizers
    rec = recognizer or next((r for r in result.config.independent if r in recs), recs[0])
    cols = [result.originals, *(result.output(model, lam) for lam in lams)]
    titles = ["original"]
    for lam in lams:
        m = result.point_metrics(model, lam)
        m = m[m["recognizer"] == rec]
        titles.append(f"λ={lam:g}\nR1 {m['rank1_mean'].iloc[0]:.2f} SSIM {m['ssim'].iloc[0]:.2f}" if len(m)
                      else f"λ={lam:g}")
    n_rows, n_cols = len(result.originals), len(cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(size * n_cols, size * n_rows + 0.4), squeeze=False)
    for c, batch in enumerate(cols):
        for r in range(n_rows):
            ax = axes[r, c]
            ax.imshow(batch[r])
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize=7)
            if c == 0:
                ax.set_ylabel(result.sample_labels[r], fontsize=6)
    fig.suptitle(f"{model}: increasing lambda (Rank-1 by {rec})", fontsize=9)
    fig.tight_layout()
    return fig
