"""The study form as participants use it: served by Voilà (``deidkit.study.serve``), clicked in headless Chromium.

Chromium is the Debian package (browsers cannot be downloaded here), driven by Playwright. Without it the tests skip
with the command that installs it, except where ``DEIDKIT_REQUIRE_BROWSER=1`` (CI), where they fail.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import statistics
import time
from pathlib import Path

import pytest

import deidkit.study as ds
from deidkit.study.serve import start_server, stop_server

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "reports" / "figures" / "study_form"
TIMEOUT_MS = 120_000


def _chromium() -> str:
    path = os.environ.get("DEIDKIT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        import playwright  # noqa: F401
    except ImportError:
        path = None
    if path is None:
        msg = ("headless Chromium and Playwright are needed: sudo apt-get install -y chromium && "
               ".venv/bin/pip install playwright (or set DEIDKIT_CHROMIUM to a Chromium binary)")
        if os.environ.get("DEIDKIT_REQUIRE_BROWSER"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture(scope="module")
def chromium() -> str:
    return _chromium()


@pytest.fixture()
def served(tmp_path, chromium):
    """A tiny study of every trial kind at the default display sizes, from crops made at that size as the LFW
    study makes them, served on a free loopback port; yields (study, port, restart)."""
    from test_study import IDENTITIES, CvBlur, _head

    subjects = [ds.Subject(i, _head(i, 1), [_head(i, 2)]) for i in IDENTITIES[:3]]
    design = ds.StudyDesign(tasks=("identification", "real_vs_modified", "similarity"), gallery_size=3,
                            attention_checks=1)
    study = ds.build_study_from_images(tmp_path / "study", subjects, [CvBlur()], design)
    state = {}
    state["proc"], port = start_server(study.folder)

    def restart() -> None:
        stop_server(state["proc"])
        state["proc"], _ = start_server(study.folder, port=port)

    yield study, port, restart
    stop_server(state["proc"])


def responses(study: ds.Study, pid: str) -> list[dict]:
    path = study.responses_dir / f"{pid}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def answers(study: ds.Study, pid: str) -> list[dict]:
    return [r for r in responses(study, pid) if r["event"] == "response"]


TRIAL = re.compile(r"Trial (\d+) of (\d+)")


def trial_kind(labels: list[str]) -> str:
    if labels and all(lb.startswith("Person ") for lb in labels):
        return "identification"
    if "Modified" in labels:
        return "real_vs_modified"
    return "similarity"


# ------------------------------------------------------------------------------------------ one participant
def open_and_start(page, port: int, pid: str) -> None:
    page.goto(f"http://127.0.0.1:{port}/?participant={pid}", timeout=TIMEOUT_MS)
    page.wait_for_selector("button:has-text('Start')", timeout=TIMEOUT_MS)
    page.check("input[type=checkbox]")
    page.click("button:has-text('Start')")
    page.wait_for_selector("button:has-text('Begin')", timeout=TIMEOUT_MS)


#: The answer buttons of the trial on screen. The next trial's text can show while the last trial's buttons
#: (disabled after the click) are still in the page: only enabled buttons are this trial's.
ANSWER_BUTTONS = "button.jupyter-button:visible:enabled"


def current_trial(page) -> tuple[int, int, list[str]]:
    m = TRIAL.search(page.inner_text("body"))
    assert m, f"no trial on screen: {page.inner_text('body')[-600:]!r}"
    answers_now = page.locator(ANSWER_BUTTONS)
    answers_now.first.wait_for(timeout=TIMEOUT_MS)
    labels = [b.inner_text().strip() for b in answers_now.all()]
    return int(m.group(1)), int(m.group(2)), labels


def shown_sizes(page) -> list[tuple[float, float, int, int]]:
    """(rendered width, height, natural width, height) of each image on screen, in page order."""
    return page.eval_on_selector_all(
        "img", "els => els.filter(e => e.offsetParent !== null).map(e => { const r = e.getBoundingClientRect();"
               " return [r.width, r.height, e.naturalWidth, e.naturalHeight]; })")


def check_sizes(page, kind: str, design: ds.StudyDesign) -> None:
    """The faces of a ``kind`` trial are rendered at the design's sizes, from at least as many pixels."""
    sizes = shown_sizes(page)
    expected = {"real_vs_modified": [design.stimulus_px], "similarity": [design.pair_px] * 2}.get(
        kind, [design.stimulus_px] + [design.gallery_px] * (len(sizes) - 1))
    assert [round(w) for w, _, _, _ in sizes] == expected, (kind, sizes)
    for w, h, nw, nh in sizes:
        assert round(h) == round(w) and nw >= w and nh >= h, (kind, sizes)  # square faces, never enlarged


def click_answer(page, index: int, double: bool = False) -> tuple[int, int, str, str]:
    """Click answer button ``index`` of the trial on screen; wait for the next screen. Returns
    (trial number, of n, kind, label)."""
    k, n, labels = current_trial(page)
    button = page.locator(ANSWER_BUTTONS).nth(index)
    button.dblclick() if double else button.click()
    nxt = f"text=/Trial {k + 1} of {n}/" if k < n else "text=Thank you"  # /.../: case-sensitive
    page.wait_for_selector(nxt, timeout=TIMEOUT_MS)
    return k, n, trial_kind(labels), labels[index]


def test_participant_clicks_through_every_kind_resumes_after_a_restart_and_double_clicks_once(served):
    from playwright.sync_api import sync_playwright

    study, port, restart = served
    SHOTS.mkdir(parents=True, exist_ok=True)
    clicks: list[tuple[int, str, int]] = []
    shot_kinds: set[str] = set()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1000, "height": 700})
        open_and_start(page, port, "p01")
        page.click("button:has-text('Begin')")
        page.wait_for_selector("text=/Trial 1 of/", timeout=TIMEOUT_MS)
        # two answers, then the server stops in the middle of the session
        for _ in range(2):
            _, _, labels = current_trial(page)
            kind = trial_kind(labels)
            if kind not in shot_kinds:
                check_sizes(page, kind, study.design)
                page.screenshot(path=str(SHOTS / f"trial_{kind}.png"), full_page=True)
                shot_kinds.add(kind)
            k, n, kind, _ = click_answer(page, 0)
            clicks.append((k, kind, 0))
        assert [r["position"] for r in answers(study, "p01")] == [1, 2]
        restart()
        page = browser.new_page(viewport={"width": 1000, "height": 700})
        open_and_start(page, port, "p01")
        assert "Welcome back" in page.inner_text("body") and f"trial 3 of {n}" in page.inner_text("body")
        page.click("button:has-text('Begin')")
        page.wait_for_selector(f"text=/Trial 3 of {n}/", timeout=TIMEOUT_MS)
        while True:
            k, n, labels = current_trial(page)
            kind = trial_kind(labels)
            if kind not in shot_kinds:
                check_sizes(page, kind, study.design)
                page.screenshot(path=str(SHOTS / f"trial_{kind}.png"), full_page=True)
                shot_kinds.add(kind)
            index = (k - 1) % len(labels)
            k, n, kind, _ = click_answer(page, index, double=(k == 4))  # a double-click on trial 4
            clicks.append((k, kind, index))
            if k == n:
                break
        page.screenshot(path=str(SHOTS / "end.png"), full_page=True)
        # an invalid participant id gets a clear message and no file
        bad = browser.new_page()
        open_and_start_bad = "../../etc/passwd"
        bad.goto(f"http://127.0.0.1:{port}/?participant={open_and_start_bad}", timeout=TIMEOUT_MS)
        bad.wait_for_selector("button:has-text('Start')", timeout=TIMEOUT_MS)
        bad.check("input[type=checkbox]")
        bad.click("button:has-text('Start')")
        bad.wait_for_selector("text=/participant id/i", timeout=TIMEOUT_MS)
        assert "Begin" not in bad.inner_text("body")
        browser.close()
    assert shot_kinds == {"identification", "real_vs_modified", "similarity"}
    rows = answers(study, "p01")
    assert [r["position"] for r in rows] == list(range(1, n + 1))  # nothing lost, nothing twice
    assert len({r["trial"] for r in rows}) == n
    assert [(r["position"], r["task"], r["choice_index"]) for r in rows] == clicks
    assert responses(study, "p01")[-1]["event"] == "complete"
    assert sum(r["event"] == "session" for r in responses(study, "p01")) == 2
    assert sorted(p.name for p in study.responses_dir.glob("*.jsonl")) == ["p01.jsonl"]
    log = (study.folder / "serve.log").read_text()
    assert re.search(r"access 200 GET /\?participant=p01 ", log), log[-2000:]  # the access log


# --------------------------------------------------------------------------------------- five at once
async def _participant(browser, port: int, study: ds.Study, pid: str, stats: dict) -> list[tuple[int, int]]:
    context = await browser.new_context()
    page = await context.new_page()
    t0 = time.perf_counter()
    await page.goto(f"http://127.0.0.1:{port}/?participant={pid}", timeout=TIMEOUT_MS)
    await page.wait_for_selector("button:has-text('Start')", timeout=TIMEOUT_MS)
    await page.check("input[type=checkbox]")
    await page.click("button:has-text('Start')")
    await page.wait_for_selector("button:has-text('Begin')", timeout=TIMEOUT_MS)
    await page.click("button:has-text('Begin')")
    await page.wait_for_selector("text=/Trial 1 of/", timeout=TIMEOUT_MS)
    stats["first_trial_s"].append(time.perf_counter() - t0)
    path = study.responses_dir / f"{pid}.jsonl"
    clicks = []
    while True:
        m = TRIAL.search(await page.inner_text("body"))
        k, n = int(m.group(1)), int(m.group(2))
        buttons = page.locator(ANSWER_BUTTONS)
        await buttons.first.wait_for(timeout=TIMEOUT_MS)
        index = (k + len(pid)) % await buttons.count()
        before = path.read_bytes().count(b"\n")
        t = time.perf_counter()
        await buttons.nth(index).click()
        while path.read_bytes().count(b"\n") == before:  # the line is on disk (fsync-ed) when it is readable
            await asyncio.sleep(0.002)
        stats["click_to_line_ms"].append(1000 * (time.perf_counter() - t))
        clicks.append((k, index))
        await page.wait_for_selector(f"text=/Trial {k + 1} of {n}/" if k < n else "text=Thank you",
                                     timeout=TIMEOUT_MS)
        if k == n:
            break
    await context.close()
    return clicks


def test_five_participants_at_once_each_answer_in_their_own_file(served):
    from playwright.async_api import async_playwright

    study, port, _ = served
    pids = [f"c{i}" for i in range(1, 6)]
    stats: dict[str, list[float]] = {"first_trial_s": [], "click_to_line_ms": []}

    async def run() -> list[list[tuple[int, int]]]:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
            try:
                return await asyncio.gather(*[_participant(browser, port, study, pid, stats) for pid in pids])
            finally:
                await browser.close()

    all_clicks = asyncio.run(run())
    for pid, clicks in zip(pids, all_clicks):
        rows = answers(study, pid)
        assert [(r["position"], r["choice_index"]) for r in rows] == clicks  # every answer, once, in order
        assert all(r["participant"] == pid for r in responses(study, pid))
    assert sorted(p.stem for p in study.responses_dir.glob("*.jsonl")) == pids
    lat = sorted(stats["click_to_line_ms"])
    record = [{"kind": "study_browser", "name": name, "value": value, "unit": unit, "participants": len(pids),
               "clicks": len(lat), "source": "tests/test_study_browser.py"}
              for name, value, unit in [
                  ("click_to_fsynced_line_ms_median", statistics.median(lat), "ms"),
                  ("click_to_fsynced_line_ms_p95", lat[min(len(lat) - 1, int(0.95 * len(lat)))], "ms"),
                  ("time_to_first_trial_s_median", statistics.median(stats["first_trial_s"]), "s"),
                  ("time_to_first_trial_s_max", max(stats["first_trial_s"]), "s")]]
    out = ROOT / "reports" / "metrics" / "study_browser.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")


def test_serving_refuses_a_study_whose_files_do_not_match_the_manifest(tmp_path):
    from test_study import IDENTITIES, CvBlur, _face, small

    subjects = [ds.Subject(i, _face(i, 1, 48), [_face(i, 2, 48)]) for i in IDENTITIES[:2]]
    study = ds.build_study_from_images(tmp_path / "s", subjects, [CvBlur()], ds.StudyDesign(**small(48)))
    victim = next(p for p in study.folder.rglob("*") if p.suffix.lower() in (".png", ".jpg"))
    victim.write_bytes(victim.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ds.StudyError, match=victim.name):
        start_server(study.folder)
    from deidkit.cli import main

    assert main(["study", "serve", str(study.folder)]) == 2
