"""Every notebook runs headlessly: through papermill (``deidkit reports --profile tiny``) and through nbval (lax),
on the ``tiny`` profile. These are the slowest tests of the suite, so the two runs go side by side, one on each core:
nbval in a subprocess with its own cache root for what the tiny notebooks retrain from scratch and overwrite (trained
runs, output videos), sharing the content-keyed sections that are safe under concurrent writers (aligned crops,
embeddings, photo-level outputs, quality figures). Each kernel uses one torch thread (two kernels with two threads
each on two cores slow each other down many times over)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import papermill as pm
import pytest

from deidkit.assets import cache_dir
from deidkit.reports import NOTEBOOK_DIR, notebooks, parameters_for, run_reports

pytestmark = pytest.mark.notebooks

#: cache sections written atomically or under a lock, keyed by content: shared by the two runs
SHARED_SECTIONS = ("aligned", "embeddings", "image_level", "quality", "realism")
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def nbval_cache_root(tmp: Path) -> Path:
    """A cache root whose shared sections are the kit's cache and whose ``runs`` and ``videos`` are its own."""
    root = tmp / "cache"
    root.mkdir()
    for section in SHARED_SECTIONS:
        (cache_dir() / section).mkdir(parents=True, exist_ok=True)
        (root / section).symlink_to(cache_dir() / section)
    if (cache_dir() / "audit_thresholds.json").is_file():  # computed once from LFW pairs
        (root / "audit_thresholds.json").symlink_to(cache_dir() / "audit_thresholds.json")
    return root


@pytest.fixture(scope="module")
def nbval_run(tmp_path_factory):
    """nbval executes each notebook (parameters set to the tiny profile) in a fresh kernel, started now in a
    subprocess; yields (process, log file, number of code cells)."""
    tmp = tmp_path_factory.mktemp("nbval")
    for nb in notebooks():
        pm.execute_notebook(str(nb), str(tmp / nb.name), prepare_only=True,
                            parameters={"profile": "tiny", "reports_dir": str(tmp / "reports"),
                                        **parameters_for(nb, {"threads": 1})})
    cells = sum(c["cell_type"] == "code" for nb in tmp.glob("*.ipynb") for c in json.loads(nb.read_text())["cells"])
    # its own study folder: the papermill run simulates the same participants at the same time, and a participant's
    # live-session lock in a shared folder would turn one run away (seen once in make test)
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "DEIDKIT_CACHE": str(nbval_cache_root(tmp)),
           "DEIDKIT_STUDY_DIR": str(tmp / "study"), **ONE_THREAD}
    log = tmp / "nbval.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
                                 "--nbval-current-env", *sorted(str(p) for p in tmp.glob("*.ipynb"))],
                                cwd=NOTEBOOK_DIR, env=env, stdout=out, stderr=subprocess.STDOUT)
    yield proc, log, cells
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def tiny_reports(tmp_path_factory, nbval_run):
    out = tmp_path_factory.mktemp("reports")
    saved = {k: os.environ.get(k) for k in ONE_THREAD}
    os.environ.update(ONE_THREAD)  # the papermill kernels inherit it; nbval runs on the other core
    try:
        # notebooks 01-03 set torch's thread count themselves (2 by default): one here, as the other core is nbval's
        run_reports(profile="tiny", out=out, html=True, parameters={"threads": 1})
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return out


def test_notebooks_are_stored_without_outputs():
    for nb in notebooks():
        data = json.loads(nb.read_text())
        for cell in data["cells"]:
            if cell["cell_type"] == "code":
                assert not cell.get("outputs") and not cell.get("execution_count"), nb.name
        tags = [c.get("metadata", {}).get("tags", []) for c in data["cells"]]
        assert any("parameters" in t for t in tags), f"{nb.name} has no parameters cell"


def test_every_parameter_is_visible_to_papermill():
    """papermill reads each assignment of the parameters cell (``papermill --help-notebook``, parameter
    overrides); a second ``=`` on a line, in a comment too, makes it skip that parameter with a warning."""
    for nb in notebooks():
        data = json.loads(nb.read_text())
        cell = next(c for c in data["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
        assigned = set(re.findall(r"^(\w+)\s*=", "".join(cell["source"]), flags=re.M))
        seen = set(pm.inspect_notebook(str(nb)))
        assert assigned and seen == assigned, f"{nb.name}: papermill sees {sorted(seen)}, the cell sets {sorted(assigned)}"


def test_extra_parameters_reach_only_the_notebooks_that_declare_them():
    by_name = {nb.name[:2]: parameters_for(nb, {"threads": 1, "no_such_parameter": 3}) for nb in notebooks()}
    assert by_name["01"] == by_name["02"] == by_name["03"] == {"threads": 1}
    assert by_name["04"] == by_name["00"] == {}


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
    # realism at both levels for the learned models and the naive families; the original unchanged at crop level
    realism = {(r["level"], r["deidentifier"]): r for r in records if r["kind"] == "realism"}
    assert {(lv, n) for lv in ("crop", "image") for n in ("original", "live", "fadenet", "blur_sigma16")} <= set(realism)
    assert realism["crop", "original"]["sharpness"] == 1.0 and realism["crop", "original"]["c2st"] == 0.5
    assert realism["crop", "blur_sigma16"]["sharpness"] < 0.1 < realism["image", "original"]["sharpness"]
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


def test_nbval_lax(nbval_run):
    """nbval executed each notebook (parameters set to the tiny profile) in a fresh kernel."""
    proc, log, cells = nbval_run
    try:
        proc.wait(timeout=1800)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    text = log.read_text()
    assert proc.returncode == 0, text[-6000:]
    assert re.search(rf"\b{cells} passed", text), text[-2000:]  # one nbval item per code cell, each executed
