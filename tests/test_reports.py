import json

import numpy as np
import pytest

from deidkit.reports import (
    collect_metrics,
    compact_notebook,
    provenance,
    record_metrics,
    stage_profile,
    write_readme,
)


def test_metrics_roundtrip_and_readme(tmp_path):
    record_metrics([{"kind": "identification", "protocol": "p", "deidentifier": "original", "recognizer": "r",
                     "rank1_mean": np.float32(0.5), "rank1_std": 0.1}], "04_x", tmp_path)
    record_metrics([{"kind": "speed", "name": "align_lfw_cpu", "value": 12.5, "unit": "images/s"}], "00_x", tmp_path)
    recs = collect_metrics(tmp_path, "tiny")
    data = json.loads((tmp_path / "metrics.json").read_text())
    assert data == recs and data[0]["kind"] == "provenance" and data[0]["profile"] == "tiny"
    assert {"git_commit", "packages", "machine", "date", "seeds"} <= set(data[0])
    seeds = data[0]["seeds"]
    assert {"CriticConfig", "FaDeNetConfig", "LiveConfig"} <= set(seeds) and seeds["protocol lfw_57x8"] == 57
    assert any(r.get("rank1_mean") == 0.5 and r["source"] == "04_x" for r in data)
    text = write_readme(tmp_path, recs).read_text()
    assert "| original | r | 0.500 |" in text.replace("| p ", "") or "0.500" in text
    assert "align_lfw_cpu" in text and "12.500" in text
    assert "different commits" not in text
    for name, commit in [("00_x", "a" * 40), ("04_x", "b" * 40)]:
        record_metrics([{"kind": "runtime", "name": name, "value": 1.0, "unit": "s", "git_commit": commit}],
                       f"_runtime_{name}", tmp_path)
    text = write_readme(tmp_path, collect_metrics(tmp_path, "tiny")).read_text()
    assert "different commits (aaaaaaaaaa, bbbbbbbbbb)" in text


def test_record_without_kind_rejected(tmp_path):
    with pytest.raises(ValueError, match="without 'kind'"):
        record_metrics([{"name": "x"}], "bad", tmp_path)


def test_provenance_packages():
    p = provenance("quick")
    assert p["packages"]["torch"] and p["machine"]["cpus"]


def _png(shape: tuple[int, int], noisy: bool) -> str:
    import base64
    import io

    from PIL import Image

    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (*shape, 3), dtype=np.uint8) if noisy else np.full((*shape, 3), 200, np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def test_compact_notebook(tmp_path):
    big, small = _png((400, 400), noisy=True), _png((50, 50), noisy=False)
    nb = {"cells": [{"cell_type": "code", "source": "x", "metadata": {}, "execution_count": 1, "outputs": [
        {"output_type": "display_data", "metadata": {}, "data": {"image/png": big, "text/plain": "<Figure>"}},
        {"output_type": "display_data", "metadata": {}, "data": {"image/png": small, "text/plain": "<Figure>"}},
        {"output_type": "stream", "name": "stdout", "text": "rank-1 0.997\n"}]}],
          "metadata": {"widgets": {"state": {"m": {"value": "x" * 100_000}}}, "kernelspec": {"name": "python3"}},
          "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(nb))
    before, after = compact_notebook(path, max_png_bytes=200_000)
    out = json.loads(path.read_text())
    outputs = out["cells"][0]["outputs"]
    assert before == len(json.dumps(nb)) and after == path.stat().st_size and after < before / 2
    assert "widgets" not in out["metadata"] and out["metadata"]["kernelspec"] == {"name": "python3"}
    assert set(outputs[0]["data"]) == {"image/jpeg", "text/plain"}  # the large photo-like PNG became JPEG
    assert outputs[1]["data"]["image/png"] == small  # a small plot stays PNG
    assert outputs[2]["text"] == "rank-1 0.997\n"


def test_git_state_ignores_the_reports_a_run_rewrites(tmp_path, monkeypatch):
    import subprocess

    import deidkit.reports as R

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "reports").mkdir()
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "reports" / "metrics.json").write_text("[]\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    monkeypatch.setattr(R, "PROJECT_ROOT", tmp_path)
    clean = R.git_state()
    assert len(clean["git_commit"]) == 40 and clean["git_dirty"] is False
    (tmp_path / "reports" / "metrics.json").write_text("[1]\n")
    assert R.git_state()["git_dirty"] is False
    (tmp_path / "code.py").write_text("x = 2\n")
    assert R.git_state()["git_dirty"] is True


def test_merge_metrics_replaces_only_the_same_case(tmp_path):
    from deidkit.reports import merge_metrics

    first = [{"kind": "speed", "name": "a", "value": 1.0}, {"kind": "speed", "name": "b", "value": 2.0}]
    merge_metrics(first, "bench", ("name",), tmp_path)
    merge_metrics([{"kind": "speed", "name": "b", "value": 3.0}], "bench", ("name",), tmp_path)
    recs = json.loads((tmp_path / "metrics" / "bench.json").read_text())
    assert sorted((r["name"], r["value"]) for r in recs) == [("a", 1.0), ("b", 3.0)]
    assert all(r["source"] == "bench" for r in recs)


def test_stage_profile_lists_the_slow_cells(tmp_path):
    def cell(source: str, seconds: float) -> dict:
        return {"cell_type": "code", "source": source, "metadata": {"papermill": {"duration": seconds}}}

    nb = {"cells": [{"cell_type": "markdown", "source": "# x", "metadata": {}},
                    cell("import numpy as np\n# load\ndata = load()", 2.0),
                    cell("from x import y\nmodel = train(data)  # the long one", 50.0),
                    cell("print(model)", 0.5),
                    cell("table = evaluate(model)", 8.0)]}
    (tmp_path / "02_x.ipynb").write_text(json.dumps(nb))
    (tmp_path / "notes.ipynb").write_text(json.dumps(nb))  # not a numbered notebook of the kit: ignored
    rows = stage_profile(tmp_path)
    # 50 s (over 10 s) and 8 s (over 10 % of 60.5 s) are listed, by code-cell index, with their first real line
    assert [(r["notebook"], r["cell"], r["seconds"]) for r in rows] == [("02_x", 1, 50.0), ("02_x", 3, 8.0)]
    assert rows[0]["code"] == "model = train(data)  # the long one"
    assert abs(rows[0]["share"] - 50 / 60.5) < 1e-9
    recs = collect_metrics(tmp_path, "tiny", rows)
    assert "## Where the time goes" in write_readme(tmp_path, recs).read_text()


def _frontier(deid: str, level: str, recognizer: str, source: str, **kw) -> dict:
    return {"kind": "frontier", "protocol": "lfw_57x8", "level": level, "deidentifier": deid,
            "recognizer": recognizer, "ssim": 0.9, "rank1": 0.05, "frontier_rank1": 0.8, "margin_sd": 20.0,
            "detection_rate": 1.0, "source": source, **kw}


def _grid(deids, source, recognizers=("dlib", "mobilefacenet_casia", "mobilefacenet_ms1m"), **kw) -> list[dict]:
    return [_frontier(d, lv, r, source, **kw) for d in deids for lv in ("crop", "image") for r in recognizers]


def test_metrics_json_holds_the_notebooks_and_the_shipped_models_only(tmp_path):
    """The rule of the module docstring: notebook records, the shipped models' files (named by the manifest, named
    *shipped*, realism*) and the fixed-name benchmarks go into metrics.json; tried snapshots' files do not."""
    from deidkit.reports import is_current, shipped_sources

    shipped = shipped_sources({"models": {
        "fadenet": {"kind": "fadenet", "metrics": {"source": "reports/metrics/frontier_fadenet_v2.json"}},
        "live": {"kind": "live", "metrics": {"source": "reports/metrics/frontier_live_shipped.json"}}}})
    assert shipped == {"live": "frontier_live_shipped.json", "fadenet": "frontier_fadenet_v2.json"}  # live first
    current = ["04_recognition_eval", "_runtime_04_recognition_eval", "frontier_fadenet_v2", "frontier_live_shipped",
               "attack_shipped", "realism_shipped", "realism", "video_speed", "study_browser"]
    tried = ["frontier_fadenet_fb3m_e3", "selection_fadenet_stop23", "attack_fadenet_stop25", "probe_x",
             "4_not_a_notebook"]
    for i, name in enumerate(current + tried):
        record_metrics([{"kind": "speed", "name": name, "value": float(i)}], name, tmp_path)
    (tmp_path / "metrics" / "frontier_fadenet_fb3m_e3_crop.csv").write_text("a,b\n1,2\n")  # tables: never read
    experiments = tmp_path / "experiments" / "metrics"
    experiments.mkdir(parents=True)
    (experiments / "frontier_live_old.json").write_text(json.dumps([{"kind": "speed", "name": "old"}]))
    assert [n for n in current + tried if is_current(f"{n}.json", shipped)] == current
    recs = collect_metrics(tmp_path, "tiny", shipped=shipped)
    assert sorted(r["name"] for r in recs if r["kind"] == "speed") == sorted(current)
    assert json.loads((tmp_path / "metrics.json").read_text()) == recs


def test_readme_opens_with_the_shipped_models_and_the_baselines(tmp_path):
    """The headline table comes first: each shipped model's rows from the file its manifest names (not from
    notebook 04 nor a tried snapshot), the naive baselines from a shipped model's file that has intervals, judges
    only, crop then image; then realism; the headline rows are not repeated in the frontier table below."""
    shipped = {"live": "frontier_live_shipped.json", "fadenet": "frontier_fadenet_shipped.json"}
    naive = ("blur_sigma4", "blur_sigma8", "pixelate_8px", "pixelate_16px", "blur_sigma2")
    ci = {"rank1_ci": [0.04, 0.06], "gap_ci": [0.7, 0.8], "beyond_frontier": True}
    records = [{"kind": "provenance", "profile": "tiny", "date": "today", "git_commit": "c" * 40,
                "git_dirty": False, "machine": {"platform": "test", "cpus": 2}}]
    records += _grid(["live", "fadenet", "live_quick", *naive], "04_recognition_eval", rank1=0.5)
    records += _grid(["live", *naive], "frontier_live_shipped", **ci)
    records += _grid(["fadenet", *naive], "frontier_fadenet_shipped", rank1=0.07)
    records += [{"kind": "realism", "protocol": "lfw_57x8", "level": lv, "deidentifier": d, "sharpness": 0.4,
                 "colour_shift": 1.5, "c2st": 0.61, "change_correlation": 0.2, "n": 100, "source": "realism_shipped"}
                for lv in ("crop", "image") for d in ("live", "blur_sigma8")]
    records += [{"kind": "speed", "name": f"bench{i}", "value": float(i)} for i in range(30)]
    text = write_readme(tmp_path, records, shipped=shipped).read_text()
    lines = text.splitlines()
    sections = [ln for ln in lines if ln.startswith("## ")]
    assert sections[:3] == ["## Shipped models and naive baselines", "## Realism (`deidkit realism`)",
                            sections[2]] and "naive frontier" in sections[2]
    head = text.split("## Realism")[0].split("## Shipped models and naive baselines")[1]
    table = [ln for ln in head.splitlines() if ln.startswith("| ")]
    assert table[0].split(" | ")[:6] == ["| deidentifier", "level", "recognizer", "ssim", "rank1", "rank1_ci"]
    assert {"gap_ci", "beyond_frontier", "frontier_rank1"} <= {c.strip(" |") for c in table[0].split(" | ")}
    rows = [[c.strip() for c in ln.strip("|").split("|")] for ln in table[1:]]
    # 2 shipped models and 4 baselines x crop, image x the two judges; live first, then in the manifest's order
    assert [(r[0], r[1], r[2]) for r in rows][:4] == [("live", "crop", "dlib"), ("live", "crop", "mobilefacenet_casia"),
                                                      ("live", "image", "dlib"), ("live", "image", "mobilefacenet_casia")]
    assert [r[0] for r in rows[::4]] == ["live", "fadenet", "blur_sigma4", "blur_sigma8", "pixelate_8px",
                                         "pixelate_16px"]
    assert all(r[-1] == "frontier_live_shipped" for r in rows if r[0] != "fadenet")  # baselines: the file with CIs
    assert all(r[-1] == "frontier_fadenet_shipped" and r[4] == "0.070" for r in rows if r[0] == "fadenet")
    assert "| live | crop | dlib | 0.900 | 0.050 | [0.040, 0.060] | 0.800 | [0.700, 0.800] | yes |" in head
    assert "mobilefacenet_ms1m" not in head and "live_quick" not in head and "blur_sigma2" not in head
    realism = text.split("## Realism")[1].split("\n## ")[0]
    assert "| crop | live | 0.400 | 1.500 | 0.610 | 0.200 |" in realism
    # the learned rows of the frontier table: notebook 04's and the ms1m rows, not the headline's again
    frontier = text.split(sections[2])[1].split("\n## ")[0]
    assert "04_recognition_eval" in frontier and "| crop | live | mobilefacenet_ms1m |" in frontier
    assert "| crop | live | dlib | 0.900 | 0.050 | 0.800 |" not in frontier
    # within the line budget, the tables below the headline are cut (their records stay in metrics.json)
    short = write_readme(tmp_path, records, shipped=shipped, max_lines=110).read_text()
    assert len(short.splitlines()) <= 110 and head in short and "all are in `metrics.json`" in short
    assert "all are in `metrics.json`" not in text and len(lines) <= 400


def test_headline_falls_back_to_any_record_of_a_shipped_model(tmp_path):
    """Without the file its manifest names (e.g. a fresh `make reproduce` into an empty folder), a shipped model's
    headline rows come from the other current records (notebook 04's), and so do the baselines; no intervals, no
    interval columns."""
    from deidkit.reports import headline_rows

    records = _grid(["live", "blur_sigma8"], "04_recognition_eval")
    rows = headline_rows(records, {"live": "frontier_live_shipped.json"})
    assert [(r["deidentifier"], r["source"]) for r in rows] == [("live", "04_recognition_eval")] * 4 + [
        ("blur_sigma8", "04_recognition_eval")] * 4
    prov = {"kind": "provenance", "profile": "tiny", "date": "d", "git_commit": "c" * 40, "git_dirty": True,
            "machine": {"platform": "p", "cpus": 1}}
    text = write_readme(tmp_path, [prov, *records], shipped={"live": "frontier_live_shipped.json"}).read_text()
    assert "## Shipped models and naive baselines" in text and "gap_ci" not in text and "## Realism" not in text
    assert headline_rows([], {"live": "x.json"}) == []
