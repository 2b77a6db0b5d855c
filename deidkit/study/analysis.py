"""Analysis of a human study: the tables and figures of the papers' user studies.

- :func:`success_rates`: success rate per stimulus type, mean +- SD across participants (live paper Table 2(a)
  for ``real_vs_modified``; also for ``identification``);
- :func:`identification_confusion` / :func:`plot_identification_confusions`: who was taken for whom, on
  originals and on de-identified probes (Table 2(b)/(c));
- :func:`human_vs_machine`: per de-identifier the human identification rate beside the machines' rank-1 from
  ``reports/metrics.json`` (the "selective" claim: machines fooled, humans not);
- :func:`similarity_ratings`, :func:`attention_summary`.

Every table carries a ``data`` column, ``human`` or ``SIMULATED``, and simulated and human responses are never
pooled.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from deidkit.assets import PROJECT_ROOT
from deidkit.study.design import ORIGINAL
from deidkit.study.responses import ResponseSet

DEFAULT_METRICS = PROJECT_ROOT / "reports" / "metrics.json"


def _frame(responses: ResponseSet | pd.DataFrame) -> pd.DataFrame:
    df = responses.responses if isinstance(responses, ResponseSet) else responses
    missing = [c for c in ("participant", "simulated", "task", "condition", "attention", "correct") if c not in df]
    if missing:
        raise ValueError(f"responses table lacks columns {missing}; load it with load_responses()")
    df = df.copy()
    df["data"] = np.where(df["simulated"].astype(bool), "SIMULATED", "human")
    return df


def _order(conditions: pd.Series, order: list[str] | None) -> list[str]:
    present = list(dict.fromkeys(conditions))
    if order is None:
        order = [ORIGINAL] if ORIGINAL in present else []
        order += sorted(c for c in present if c != ORIGINAL)
    return [c for c in order if c in present] + [c for c in present if c not in order]


def _mean_sd(per_participant: pd.DataFrame, value: str, keys: list[str]) -> pd.DataFrame:
    g = per_participant.groupby(keys, sort=False)[value]
    out = pd.DataFrame({"mean": g.mean(), "sd": g.std(ddof=1), "n_participants": g.count()}).reset_index()
    out["mean ± SD"] = [f"{m:.2f} ± {s:.2f}" if pd.notna(s) else f"{m:.2f}" for m, s in zip(out["mean"], out["sd"])]
    return out


def _sorted(table: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    rank = {c: i for i, c in enumerate(order)}
    return table.sort_values(["data", "condition"], key=lambda s: s.map(rank) if s.name == "condition" else s
                             ).reset_index(drop=True)


def success_rates(responses: ResponseSet | pd.DataFrame, task: str = "real_vs_modified",
                  conditions: list[str] | None = None) -> pd.DataFrame:
    """Success rate per stimulus type (condition) for ``task``: each participant's rate first, then mean and
    SD (ddof=1) across participants; attention checks left out. Columns: data, condition, mean, sd,
    n_participants, n_answers, mean ± SD."""
    df = _frame(responses)
    df = df[(df["task"] == task) & ~df["attention"].astype(bool) & df["correct"].notna()]
    cols = ["data", "condition", "mean", "sd", "n_participants", "n_answers", "mean ± SD"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    df = df.assign(correct=df["correct"].astype(float))
    per = df.groupby(["data", "condition", "participant"], sort=False)["correct"].mean().reset_index()
    out = _mean_sd(per, "correct", ["data", "condition"])
    out = out.merge(df.groupby(["data", "condition"]).size().rename("n_answers").reset_index(), on=["data", "condition"])
    return _sorted(out, _order(df["condition"], conditions))[cols]


def similarity_ratings(responses: ResponseSet | pd.DataFrame, conditions: list[str] | None = None) -> pd.DataFrame:
    """Similarity ratings (1-5) of de-identified vs original per de-identifier, mean +- SD across participants."""
    df = _frame(responses)
    df = df[df["task"] == "similarity"]
    if df.empty:
        return pd.DataFrame(columns=["data", "condition", "mean", "sd", "n_participants", "mean ± SD"])
    df = df.assign(rating=df["answer"].astype(int))
    per = df.groupby(["data", "condition", "participant"], sort=False)["rating"].mean().reset_index()
    out = _mean_sd(per, "rating", ["data", "condition"])
    return _sorted(out, _order(df["condition"], conditions))


def attention_summary(responses: ResponseSet | pd.DataFrame) -> pd.DataFrame:
    """Per participant: attention-check trials answered, passed, and the pass rate."""
    df = _frame(responses)
    a = df[df["attention"].astype(bool)]
    out = a.groupby(["data", "participant"])["correct"].agg(checks="count", passed="sum").reset_index()
    out["passed"] = out["passed"].astype(int)
    out["pass_rate"] = out["passed"] / out["checks"]
    return out


def identification_confusion(responses: ResponseSet | pd.DataFrame, condition: str = ORIGINAL,
                             normalize: bool = True, data: str | None = None) -> pd.DataFrame:
    """Confusion matrix of identification: rows the true identity, columns the chosen one.

    ``condition``: ``"original"``, a de-identifier's name, or ``"deidentified"`` (all de-identifiers pooled).
    With ``normalize`` rows sum to 1 (the share of answers). ``data`` picks ``human`` or ``SIMULATED`` when
    both are present."""
    df = _frame(responses)
    df = df[(df["task"] == "identification") & ~df["attention"].astype(bool)]
    if data is not None:
        df = df[df["data"] == data]
    elif df["data"].nunique() > 1:
        raise ValueError("responses mix human and SIMULATED data; pass data='human' or data='SIMULATED'")
    identities = sorted(set(df["identity"]) | set(df["answer"]))
    if condition == "deidentified":
        sel = df[df["condition"] != ORIGINAL]
    else:
        sel = df[df["condition"] == condition]
    cm = pd.crosstab(sel["identity"], sel["answer"]).reindex(index=identities, columns=identities, fill_value=0)
    cm.index.name, cm.columns.name = "true identity", "answer"
    if normalize:
        cm = cm.div(cm.sum(axis=1).replace(0, np.nan), axis=0)
    return cm


def plot_identification_confusions(responses: ResponseSet | pd.DataFrame, conditions: list[str] | None = None,
                                   normalize: bool = True, data: str | None = None):
    """Seaborn heatmaps of the identification confusion matrices, originals first, then each de-identifier
    (or the given ``conditions``, e.g. the study's order; ``"deidentified"`` pools the de-identifiers).
    Returns the matplotlib figure."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    df = _frame(responses)
    ident = df[(df["task"] == "identification") & ~df["attention"].astype(bool)]
    if data is None and ident["data"].nunique() == 1:
        data = str(ident["data"].iloc[0])
    present = set(ident["condition"]) | ({"deidentified"} if (ident["condition"] != ORIGINAL).any() else set())
    # Given conditions are shown in that order (those without answers left out); by default all of them.
    conditions = [c for c in conditions if c in present] if conditions else _order(ident["condition"], None)
    if not conditions:
        raise ValueError("no identification responses to plot")
    n = len(set(ident["identity"]) | set(ident["answer"]))
    ncols = min(3, len(conditions))
    nrows = -(-len(conditions) // ncols)
    side = max(3.5, 0.55 * n + 2.5)
    fig, axes = plt.subplots(nrows, ncols, figsize=(side * ncols, side * nrows), squeeze=False)
    for ax, cond in zip(axes.flat, conditions):
        cm = identification_confusion(responses, cond, normalize=normalize, data=data)
        sns.heatmap(cm, ax=ax, vmin=0, vmax=1 if normalize else None, cmap="viridis", square=True,
                    annot=len(cm) <= 8, fmt=".2f" if normalize else "d", annot_kws={"fontsize": 8},
                    cbar=False, xticklabels=True, yticklabels=True)
        ax.set_title(cond)
    for ax in list(axes.flat)[len(conditions):]:
        ax.axis("off")
    label = "\nSIMULATED participants - not human results" if data == "SIMULATED" else ""
    fig.suptitle(f"Identification confusion (rows: true identity, columns: answer){label}", fontsize=10)
    fig.tight_layout()
    return fig


def metrics_source(reports_dir: str | os.PathLike | None = None) -> Path:
    """Where machine results are: ``<reports>/metrics/`` (per-notebook records of the current ``deidkit reports``
    run) when it holds any, else ``<reports>/metrics.json`` (default reports folder: ``reports/``)."""
    base = Path(reports_dir) if reports_dir else DEFAULT_METRICS.parent
    folder = base / "metrics"
    return folder if folder.is_dir() and any(folder.glob("*.json")) else base / "metrics.json"


def load_machine_rank1(metrics_path: str | os.PathLike | None = None, protocol: str | None = None
                       ) -> pd.DataFrame | None:
    """Machine rank-1 identification rates from a metrics file (a JSON list of records, default
    ``reports/metrics.json``) or a folder of such files; records with ``kind == "identification"``, one row per
    (protocol, deidentifier, recognizer). None when nothing is there. A later record replaces an earlier one."""
    path = Path(metrics_path) if metrics_path else DEFAULT_METRICS
    files = sorted(path.glob("*.json")) if path.is_dir() else [path] if path.is_file() else []
    if not files:
        return None
    rows = []
    for f in files:
        try:
            records = json.loads(f.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{f}: not valid JSON ({exc})") from None
        if not isinstance(records, list):
            raise ValueError(f"{f}: expected a JSON list of records, got {type(records).__name__}")
        for i, r in enumerate(records):
            if not isinstance(r, dict) or r.get("kind") != "identification":
                continue
            missing = [k for k in ("protocol", "deidentifier", "recognizer") if k not in r]
            rank1 = r.get("rank1_mean", r.get("rank1"))
            if missing or rank1 is None:
                raise ValueError(f"{f}: identification record {i} lacks {missing or ['rank1_mean']}")
            rows.append({"protocol": r["protocol"], "deidentifier": r["deidentifier"], "recognizer": r["recognizer"],
                         "rank1": float(rank1)})
    df = pd.DataFrame(rows, columns=["protocol", "deidentifier", "recognizer", "rank1"])
    if protocol is not None:
        df = df[df["protocol"] == protocol]
    return df.drop_duplicates(["protocol", "deidentifier", "recognizer"], keep="last").reset_index(drop=True)


def human_vs_machine(responses: ResponseSet | pd.DataFrame, metrics_path: str | os.PathLike | None = None,
                     protocol: str | None = None, conditions: list[str] | None = None) -> pd.DataFrame:
    """The "selective" claim in one table: per condition (``original`` and each de-identifier), the human
    identification rate (mean, SD across participants), the chance level (1 / gallery size) and each
    recogniser's rank-1 (``rank1 <recognizer>``) from ``metrics_path`` (default ``reports/metrics.json``),
    for ``protocol`` (e.g. the study's ``lfw_57x8``); ``metrics_path`` may be a file or a folder of record files
    (see :func:`metrics_source`). ``.attrs["note"]`` says when machine numbers are missing.

    The human and machine numbers answer the same question (who is this, among a gallery) but on different
    galleries: humans choose among the study's N candidates, machines among the protocol's whole gallery.
    """
    df = _frame(responses)
    ident = df[(df["task"] == "identification") & ~df["attention"].astype(bool)]
    table = success_rates(df, task="identification", conditions=conditions)
    table = table.rename(columns={"mean": "human_rate", "sd": "human_sd", "mean ± SD": "human mean ± SD"})
    chance = (1.0 / ident.groupby("condition")["n_choices"].mean()).rename("chance").reset_index()
    table = table.merge(chance, on="condition", how="left")
    machine = load_machine_rank1(metrics_path, protocol)
    path = Path(metrics_path) if metrics_path else DEFAULT_METRICS
    if machine is None:
        table.attrs["note"] = f"{path} not found: machine rank-1 not available (run the identification notebook)."
        return table
    if machine.empty:
        table.attrs["note"] = f"{path}: no identification records" + (f" for protocol {protocol!r}" if protocol else "")
        return table
    several = machine["protocol"].nunique() > 1
    machine["column"] = [f"rank1 {r}" + (f" ({p})" if several else "")
                         for r, p in zip(machine["recognizer"], machine["protocol"])]
    wide = machine.pivot_table(index="deidentifier", columns="column", values="rank1", aggfunc="last")
    table = table.merge(wide, left_on="condition", right_index=True, how="left")
    absent = sorted(set(table["condition"]) - set(machine["deidentifier"]))
    table.attrs["note"] = (f"machine rank-1 from {path}" + (f", protocol {protocol}" if protocol else "")
                           + (f"; no machine numbers for {absent}" if absent else ""))
    return table


def study_overview(responses: ResponseSet) -> pd.DataFrame:
    """Participants with answered / planned trials, sessions, completion and problems found."""
    return responses.participants.assign(
        data=np.where(responses.participants["simulated"].astype(bool), "SIMULATED", "human"))

