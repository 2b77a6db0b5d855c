"""The repository speaks to readers outside the team: no internal milestone numbers and no talk of the team's own
machines or work periods in any tracked text file (history is told with dates and commit hashes in
docs/experiments.md)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# assembled from parts so that this file does not itself contain what it looks for
_LENT, _SESSION = "l" + "ent", "sess" + "ion"
FORBIDDEN = re.compile(rf"\bstops? \d+|\bstop-\d+|machine {_LENT}|{_LENT} to (?:some )?{_SESSION}s?|{_SESSION}s? of work",
                       re.IGNORECASE)


def test_no_team_internal_vocabulary_in_tracked_files():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    hits = []
    for name in files:
        path = ROOT / name
        if path.suffix in {".png", ".jpg", ".pt", ".npz", ".mp4", ".onnx"} or not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        hits += [f"{name}:{i + 1}: {m.group(0)}" for i, line in enumerate(text.splitlines())
                 for m in FORBIDDEN.finditer(line)]
    assert not hits, "team-internal vocabulary:\n" + "\n".join(hits[:40])
