import json

import numpy as np
import pytest

from deidkit.reports import collect_metrics, provenance, record_metrics, write_readme


def test_metrics_roundtrip_and_readme(tmp_path):
    record_metrics([{"kind": "identification", "protocol": "p", "deidentifier": "original", "recognizer": "r",
                     "rank1_mean": np.float32(0.5), "rank1_std": 0.1}], "04_x", tmp_path)
    record_metrics([{"kind": "speed", "name": "align_lfw_cpu", "value": 12.5, "unit": "images/s"}], "00_x", tmp_path)
    recs = collect_metrics(tmp_path, "tiny")
    data = json.loads((tmp_path / "metrics.json").read_text())
    assert data == recs and data[0]["kind"] == "provenance" and data[0]["profile"] == "tiny"
    assert {"git_commit", "packages", "machine", "date", "seeds"} <= set(data[0])
    assert any(r.get("rank1_mean") == 0.5 and r["source"] == "04_x" for r in data)
    text = write_readme(tmp_path, recs).read_text()
    assert "| original | r | 0.500 |" in text.replace("| p ", "") or "0.500" in text
    assert "align_lfw_cpu" in text and "12.500" in text


def test_record_without_kind_rejected(tmp_path):
    with pytest.raises(ValueError, match="without 'kind'"):
        record_metrics([{"name": "x"}], "bad", tmp_path)


def test_provenance_packages():
    p = provenance("quick")
    assert p["packages"]["torch"] and p["machine"]["cpus"]
