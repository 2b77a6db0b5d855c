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
