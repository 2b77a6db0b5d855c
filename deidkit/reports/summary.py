"""``reports/README.md``: the summary of the current records, generated from ``metrics.json`` (never typed by
hand). The headline table (each shipped model and the naive baselines, crop and whole photo, judged by dlib and
MobileFaceNet-CASIA) and the realism records come first, then a table per other kind of record, each cut to the
rows that keep the file within :data:`MAX_README_LINES` lines."""

from __future__ import annotations

from pathlib import Path

from deidkit.reports.records import shipped_sources

JUDGES = ("dlib", "mobilefacenet_casia")  # never trained against, never used for selection
BASELINES = ("blur_sigma4", "blur_sigma8", "pixelate_8px", "pixelate_16px")  # the naive rows of the headline
LEVELS = ("crop", "image")
MAX_README_LINES = 400


def _fmt(v) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.3f}"
    if isinstance(v, (list, tuple)) and v and all(isinstance(x, (int, float)) for x in v):
        return "[" + ", ".join(_fmt(float(x)) for x in v) + "]"
    return "" if v is None else str(v)


def _markdown_table(rows: list[dict], cols: list[str]) -> str:
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def _latest(rows: list[dict], key: tuple[str, ...]) -> list[dict]:
    """One row per ``key``: the last recorded, in the order of first appearance."""
    kept: dict[tuple, dict] = {}
    for r in rows:
        k = tuple(r.get(c) for c in key)
        kept.pop(k, None)
        kept[k] = r
    return list(kept.values())


def headline_rows(records: list[dict], shipped: dict[str, str]) -> list[dict]:
    """The headline table's rows: ``frontier`` records of each shipped model (from the records file its manifest
    entry names; from any other current file, e.g. notebook 04's, where that file is absent) and of the naive
    :data:`BASELINES`, at both :data:`LEVELS`, judged by the :data:`JUDGES`. The baselines come from the first of
    the shipped models' files that measured them, one with bootstrap intervals (``gap_ci``) first."""
    frontier = [r for r in records if r.get("kind") == "frontier" and r.get("recognizer") in JUDGES
                and r.get("level") in LEVELS]
    rows, used = [], []
    aliases = measured_as()
    for model, source in shipped.items():
        # a model measured under another name (bit-identical: the manifest's metrics.measured_as says which)
        mine = [r if r.get("deidentifier") == model else {**r, "deidentifier": model} for r in frontier
                if r.get("deidentifier") in (model, aliases.get(model))]
        named = [r for r in mine if r.get("source") == Path(source).stem]
        chosen = named or mine
        rows += _latest(chosen, ("protocol", "level", "recognizer"))
        used += [r.get("source") for r in chosen]
    naive = [r for r in frontier if r.get("deidentifier") in BASELINES]
    # files that measured the shipped models first (intervals first), then any other (e.g. notebook 04's)
    order = list(dict.fromkeys([*used, *(r.get("source") for r in naive)]))
    with_ci = {r.get("source") for r in naive if r.get("gap_ci")}
    order.sort(key=lambda src: src not in with_ci)
    for src in order:
        if any(r.get("source") == src for r in naive):
            rows += _latest([r for r in naive if r.get("source") == src],
                            ("protocol", "deidentifier", "level", "recognizer"))
            break
    names = [*shipped, *BASELINES]
    return sorted(rows, key=lambda r: (names.index(r["deidentifier"]), LEVELS.index(r["level"]),
                                       JUDGES.index(r["recognizer"])))


def measured_as() -> dict[str, str]:
    """``{shipped model: the name its headline records carry}`` where the manifest says it was measured under
    another name (``metrics.measured_as``, e.g. before a rename)."""
    from deidkit.pretrained import read_manifest

    out = {}
    for name, entry in read_manifest()["models"].items():
        alias = entry.get("metrics", {}).get("measured_as")
        if alias:
            out[name] = alias.split(" ", 1)[0]
    return out


def _headline(records: list[dict], shipped: dict[str, str]) -> list[str]:
    rows = headline_rows(records, shipped)
    if not rows:
        return []
    protocols = ", ".join(f"`{p}`" for p in dict.fromkeys(r.get("protocol") for r in rows if r.get("protocol")))
    cols = ["deidentifier", "level", "recognizer", "ssim", "rank1", "rank1_ci", "frontier_rank1", "gap_ci",
            "beyond_frontier", "margin_sd", "detection_rate", "source"]
    cols = [c for c in cols if c not in ("rank1_ci", "gap_ci", "beyond_frontier") or any(c in r for r in rows)]
    intervals = ("rank1_ci and gap_ci: identity-bootstrap 95% intervals of Rank-1 and of frontier minus Rank-1, "
                 "beyond_frontier when the latter excludes 0; " if "gap_ci" in cols else "")
    return ["", "## Shipped models and naive baselines", "",
            f"Test protocol {protocols or '(unknown)'}, judged by {' and '.join(JUDGES)} (never trained against, "
            "never used to choose a model); crop = canonical face crops, image = the whole photo through `deidkit "
            "image`. rank1: share of probes whose true identity ranks first (lower hides more); frontier_rank1: the "
            f"naive frontier, what blur or pixelation leaves at the same SSIM; {intervals}margin_sd: frontier minus "
            "Rank-1 in repetition SDs. Each model's rows come from the records file its manifest entry names (`source`).",
            "", _markdown_table(rows, cols)]


def _realism(records: list[dict]) -> list[str]:
    rows = [r for r in records if r.get("kind") == "realism"]
    if not rows:
        return []
    cols = ["level", "deidentifier", "sharpness", "colour_shift", "c2st", "change_correlation", "n", "source"]
    return ["", "## Realism (`deidkit realism`)", "",
            "Does the output look like a photograph? Medians over the test photos' inner face box: sharpness "
            "(fine detail over the original's; 1: as much), colour_shift (CIE76 Delta E of the mean colour; about "
            "1: hardly visible); c2st: accuracy of a linear probe telling outputs from originals (0.5: it cannot); "
            "change_correlation: how alike two people's changes are (near 1: one pattern painted on every face).",
            "", _markdown_table(rows, cols)]


SECTIONS = [
    ("Learned de-identifiers against the naive frontier (notebook 04, `deidkit frontier`): Rank-1 that blur or "
     "pixelation reaches at the same SSIM, margin in repetition SDs (positive: better than naive; crop = canonical "
     "crops, image = whole photo through `deidkit image`)", "frontier",
     ["protocol", "level", "deidentifier", "recognizer", "ssim", "rank1", "frontier_rank1", "frontier_family",
      "margin_sd", "detection_rate", "median_true_rank", "frontier_median_true_rank", "source"]),
    ("Verification on LFW pairs.txt (10-fold)", "verification",
     ["recognizer", "lfw_accuracy", "lfw_accuracy_std", "reference"]),
    ("Closed-set identification (FaDeNet protocol, 5 repetitions, probes de-identified)", "identification",
     ["protocol", "deidentifier", "recognizer", "rank1_mean", "rank1_std", "rank5_mean", "rank5_std", "ssim",
      "psnr", "detection_rate"]),
    ("Rank of the true identity among all LFW identities", "true_identity_rank",
     ["deidentifier", "recognizer", "median", "mean", "sd", "gallery_size"]),
    ("Original vs de-identified verification", "deid_verification",
     ["deidentifier", "recognizer", "tar_at_far", "far"]),
    ("Identity critic (notebook 01)", "critic_training",
     ["critic", "critic_kind", "identities", "heldout_images", "heldout_accuracy", "wall_s_this_call",
      "peak_rss_mb"]),
    ("FaDeNet training (notebook 02)", "fadenet_training",
     ["deidentifier", "lam", "epochs", "image_size", "heldout_critic_acc_original", "heldout_critic_acc_fadenet",
      "train_images_per_s", "peak_rss_mb", "wall_s_this_call", "device"]),
    ("The study form served by Voila, five participants in headless Chromium at once (tests/test_study_browser.py)",
     "study_browser", ["name", "value", "unit", "participants", "clicks"]),
    ("An attacker that has learnt the de-identifier (`deidkit attack`): plain (`none`), a ridge head on a frozen "
     "recogniser's embeddings (`adapted_linear`; `adapted` in older records), the recogniser's last blocks "
     "fine-tuned (`adapted_finetune`) or a reversal network, trained on the split `train_split` names; Rank-1 and "
     "median true rank within the protocol's gallery of originals", "attack",
     ["protocol", "deidentifier", "recognizer", "attack", "rank1", "rank1_std", "median_true_rank",
      "train_images", "train_split", "source"]),
    ("Training speed (`deidkit benchmark-train`)", "train_speed",
     ["model", "profile", "device", "world_size", "images_per_s", "batch_size", "steps", "threads",
      "peak_rss_mb"]),
    ("Speed (`deidkit benchmark-video`; ceiling: cores x 1000 / CPU-ms per frame, what the same work reaches "
     "with every core busy all the time)", "speed",
     ["name", "value", "unit", "detect_side", "cpu_ms_per_frame", "encoder_cpu_ms_per_frame", "ceiling_fps"]),
    ("Faces found by size (`deidkit benchmark-detection`): 40 LFW photos on a 1920x1080 canvas, each scaled "
     "to the face width given; the fine detection pass at each side (`--detect-side`), the coarse pass as in "
     "the pipeline", "detection_by_size", ["detect_side", "face_px", "found", "faces", "recall", "ms_per_frame"]),
    ("Run time and memory", "runtime memory", ["name", "value", "unit", "cache", "git_commit", "date",
                                               "kernel_peak_rss_mib"]),
    ("Where the time goes: the slowest cells of each notebook's last run (papermill's cell durations; code "
     "cell index, its first line)", "runtime_stage", ["notebook", "cell", "seconds", "share", "code"]),
]


def _tables(records: list[dict], first: list[str]) -> list[tuple[str, list[dict], list[str]]]:
    """(title, rows, columns) of every table after the headline and realism: :data:`SECTIONS`, then one per other
    kind (its first columns), so that no current record is left out of the summary. Rows judged by the
    :data:`JUDGES` (or by no recogniser) lead each table, those of the deidentifiers in ``first`` (the shipped models,
    the original, the baselines) first among them; otherwise rows keep their recorded order."""
    tables = []
    for title, kinds, cols in SECTIONS:
        # the naive families' own frontier rows (their margin is ~0 by construction) stay in metrics.json only
        tables.append((title, [r for r in records if r["kind"] in kinds.split() and not r.get("naive_family")], cols))
    covered = {k for s in SECTIONS for k in s[1].split()} | {"provenance", "realism"}
    for kind in sorted({r["kind"] for r in records} - covered):
        rows = [r for r in records if r["kind"] == kind]
        tables.append((f"Records of kind `{kind}`", rows,
                       list(dict.fromkeys(k for r in rows for k in r if k != "kind"))[:12]))
    rank = {name: i for i, name in enumerate(first)}

    def order(r: dict) -> tuple:
        return r.get("recognizer", JUDGES[0]) not in JUDGES, rank.get(r.get("deidentifier"), len(rank))

    return [(t, sorted(rows, key=order), cols) for t, rows, cols in tables if rows]


def _table_lines(tables: list[tuple[str, list[dict], list[str]]], limit: int | None) -> list[str]:
    parts = []
    for title, rows, cols in tables:
        parts += ["", f"## {title}", "", _markdown_table(rows[:limit] if limit else rows, cols)]
        if limit and len(rows) > limit:
            parts += ["", f"{limit} of {len(rows)} rows shown (the judges' and the shipped models' first where "
                      "they apply); all are in `metrics.json`."]
    return parts


def write_readme(out: Path, records: list[dict], shipped: dict[str, str] | None = None,
                 max_lines: int = MAX_README_LINES) -> Path:
    """``reports/README.md``: the summary tables, generated from ``metrics.json`` (never typed by hand). The
    headline (shipped models and naive baselines) and realism come first and whole; the other tables are cut to
    the most rows that keep the file within ``max_lines`` lines (at least 3 rows each)."""
    shipped = shipped_sources() if shipped is None else shipped
    prov = next(r for r in records if r["kind"] == "provenance")
    parts = [
        "# deidkit reports",
        "",
        f"Generated by `deidkit reports --profile {prov['profile']}` on {prov['date']} at commit "
        f"`{prov['git_commit'][:10]}`{' (dirty)' if prov['git_dirty'] else ''}; machine: {prov['machine']['platform']},"
        f" {prov['machine']['cpus']} CPUs. Every number below is read from `metrics.json` (the notebooks' records "
        "and the shipped models'; tried snapshots are in `experiments/`); executed notebooks are beside this file "
        "and as HTML in `html/`, figures in `figures/`.",
    ]
    commits = sorted({r["git_commit"][:10] for r in records if r["kind"] == "runtime" and r.get("git_commit")})
    if len(commits) > 1:
        parts += ["", f"Notebooks were last executed at different commits ({', '.join(commits)}): the run-time table "
                  "at the end says which notebook ran where and when; each notebook's numbers come from its own run."]
    parts += _headline(records, shipped) + _realism(records)
    shots = sorted((out / "figures" / "study_form").glob("*.png"))
    tail = []
    if shots:  # written by the browser test of the study form (make test)
        tail += ["", "## What a participant sees", "", "Screenshots of the served study form taken by the browser "
                 "test (first trial of each kind, then the end page):", ""]
        tail += [f"![{p.stem}](figures/study_form/{p.name})" for p in shots]
    headline = {id(r) for r in headline_rows(records, shipped)}  # not repeated in the frontier table below
    tables = _tables([r for r in records if id(r) not in headline], [*shipped, "original", *BASELINES])
    for limit in [None, *range(max((len(t[1]) for t in tables), default=0), 2, -1)]:
        text = "\n".join(parts + _table_lines(tables, limit) + tail) + "\n"
        if text.count("\n") <= max_lines:
            break
    path = out / "README.md"
    path.write_text(text)
    return path
