"""Every notebook runs headlessly: through papermill (``deidkit reports --profile tiny``) and through nbval (lax),
on the ``tiny`` profile. These are the slowest tests of the suite."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import papermill as pm
import pytest

from deidkit.reports import NOTEBOOK_DIR, notebooks, run_reports

pytestmark = pytest.mark.notebooks


@pytest.fixture(scope="module")
def tiny_reports(tmp_path_factory):
    out = tmp_path_factory.mktemp("reports")
    run_reports(profile="tiny", out=out, html=True)
    return out


def test_notebooks_are_stored_without_outputs():
    for nb in notebooks():
        data = json.loads(nb.read_text())
        for cell in data["cells"]:
            if cell["cell_type"] == "code":
                assert not cell.get("outputs") and not cell.get("execution_count"), nb.name
        tags = [c.get("metadata", {}).get("tags", []) for c in data["cells"]]
        assert any("parameters" in t for t in tags), f"{nb.name} has no parameters cell"


def test_reports_tiny(tiny_reports):
    names = [nb.name for nb in notebooks()]
    for name in names:
        assert (tiny_reports / name).is_file()
        assert (tiny_reports / "html" / name.replace(".ipynb", ".html")).is_file()
    records = json.loads((tiny_reports / "metrics.json").read_text())
    kinds = {r["kind"] for r in records}
    assert {"provenance", "identification", "verification", "speed", "true_identity_rank"} <= kinds
    ident = [r for r in records if r["kind"] == "identification"]
    orig = [r for r in ident if r["deidentifier"] == "original"]
    box = [r for r in ident if r["deidentifier"] == "blackbox"]
    # Six identities: originals are recognised, a black box over the face is not.
    assert orig and all(r["rank1_mean"] >= 0.8 for r in orig)
    assert box and all(r["rank1_mean"] < orig[0]["rank1_mean"] for r in box)
    # The trained models of notebooks 02 and 03 are evaluated in notebook 04, with the critic's own features too.
    names = {r["deidentifier"] for r in ident}
    assert {"fadenet_tiny", "live_tiny"} <= names
    assert any(r["recognizer"].startswith("critic_critic-tiny@") for r in ident)
    # The shipped models are evaluated beside the profile's own, against the naive frontier at both levels.
    assert {"live", "fadenet"} <= names
    front = [r for r in records if r["kind"] == "frontier"]
    assert {r["level"] for r in front} == {"crop", "image"}
    learned = {(r["level"], r["deidentifier"]) for r in front if not r["naive_family"]}
    assert {(lv, n) for lv in ("crop", "image") for n in ("live", "fadenet", "live_tiny", "fadenet_tiny")} <= learned
    assert all(r["recognizer"] == "mobilefacenet_ms1m" for r in front)  # the critic is not a frontier judge
    # the whole run's wall time, marked cold (empty cache) or warm
    (total,) = [r for r in records if r["kind"] == "runtime" and r["name"] == "reproduce_total"]
    assert total["cache"] in ("cold", "warm") and total["value"] > sum(
        r["value"] for r in records if r["kind"] == "runtime" and r["name"] != "reproduce_total") * 0.99
    assert "naive frontier" in (tiny_reports / "README.md").read_text()
    assert (tiny_reports / "README.md").read_text().count("|") > 20
    # One run-time record per notebook, kept in its own file so that re-running one notebook keeps the others'.
    runtimes = {r["name"]: r for r in records if r["kind"] == "runtime" and r["name"] != "reproduce_total"}
    assert set(runtimes) == {nb.stem for nb in notebooks()}
    assert all(r["value"] > 0 and r["git_commit"] and r["kernel_peak_rss_mib"] > 0 for r in runtimes.values())
    memory = [r for r in records if r["kind"] == "memory"]
    assert memory and memory[0]["value"] == max(r["kernel_peak_rss_mib"] for r in runtimes.values())
    assert any((tiny_reports / "figures").glob("04_*.png"))


def test_nbval_lax(tmp_path):
    """nbval executes each notebook (parameters set to the tiny profile) in a fresh kernel."""
    for nb in notebooks():
        pm.execute_notebook(str(nb), str(tmp_path / nb.name), prepare_only=True,
                            parameters={"profile": "tiny", "reports_dir": str(tmp_path / "reports")})
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
                           "--nbval-current-env", str(tmp_path)], cwd=NOTEBOOK_DIR, env=env, capture_output=True,
                          text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
