"""Reading and checking participants' answers on disk.

One JSONL file per participant, ``<study>/responses/<participant>.jsonl``. Each line is one event:

- ``session``: a participant started or resumed (consent given, trial plan and its seed recorded);
- ``response``: one answer (participant, trial, stimulus, answer, correct answer, response time, timestamp);
- ``complete``: the participant answered every trial of their plan.

The lines are written by :mod:`deidkit.study.response_writer`. Reading checks every line: malformed, foreign,
duplicate or inconsistent lines are reported as problems with file and line number, never silently merged.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from deidkit.study.design import Plan, Study
from deidkit.study.participants import LOCK_DIR, PARTICIPANT_RE, participant_file

RESPONSE_FIELDS = ("participant", "trial", "stimulus", "answer", "correct_answer", "response_time_s", "timestamp")
EVENTS = ("session", "response", "complete")


class ResponseFileError(ValueError):
    """Response files hold problems (raised by ``load_responses(strict=True)``)."""


@dataclass(frozen=True)
class Problem:
    """Something wrong in a response file: which file, which line (1-based; None for the whole file), what."""

    file: str
    line: int | None
    problem: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.problem}" if self.line else f"{self.file}: {self.problem}"


@dataclass
class ParticipantLog:
    """One participant's valid events (responses keep their first answer per trial) and the problems found."""

    participant: str
    path: Path
    responses: list[dict[str, Any]] = field(default_factory=list)
    sessions: list[dict[str, Any]] = field(default_factory=list)
    completed: bool = False
    problems: list[Problem] = field(default_factory=list)

    @property
    def answered(self) -> set[str]:
        return {r["trial"] for r in self.responses}

    def recorded_plan(self, study: Study) -> Plan | None:
        """The plan recorded by the participant's first session (what they were shown), if intact."""
        for s in self.sessions:
            try:
                plan = Plan.from_dict(s["plan"])
            except (KeyError, TypeError, ValueError):
                continue
            if all(study.has_trial(t) for t in plan.order):
                return plan
        return None


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def read_participant_log(study: Study, participant: str, path: str | os.PathLike | None = None) -> ParticipantLog:
    """Read and check one participant's file (missing file = no events yet)."""
    path = Path(path) if path is not None else participant_file(study.responses_dir, participant)
    log = ParticipantLog(participant, path)
    if not path.exists():
        return log
    name = str(path)
    first_line: dict[str, int] = {}
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    for lineno, bline in enumerate(lines, start=1):
        if not bline.strip():
            continue

        def bad(msg: str, n: int = lineno) -> None:
            log.problems.append(Problem(name, n, msg))

        try:
            rec = json.loads(bline.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            cut = " (last line, cut short: the session probably stopped while writing)" if lineno == len(lines) else ""
            bad(f"malformed line, not JSON ({exc}){cut}: {bline[:80]!r}")
            continue
        if not isinstance(rec, dict):
            bad(f"malformed line: a JSON {type(rec).__name__}, not an object")
            continue
        event = rec.get("event")
        if event not in EVENTS:
            bad(f"unknown event {event!r}; expected one of {EVENTS}")
            continue
        if rec.get("participant") != participant:
            bad(f"line belongs to participant {rec.get('participant')!r}, found in the file of {participant!r}; ignored")
            continue
        if rec.get("study_id") != study.study_id:
            bad(f"line recorded for study {rec.get('study_id')!r}, this study is {study.study_id!r}; ignored")
            continue
        if event == "session":
            log.sessions.append(rec)
            continue
        if event == "complete":
            log.completed = True
            continue
        missing = [k for k in RESPONSE_FIELDS if k not in rec]
        if missing:
            bad(f"response without fields {missing}; ignored")
            continue
        tid = rec["trial"]
        if not isinstance(tid, str) or not study.has_trial(tid):
            bad(f"response to unknown trial {tid!r}; ignored")
            continue
        trial = study.trial(tid)
        if rec["answer"] not in trial.choices:
            bad(f"trial {tid}: answer {rec['answer']!r} is not one of its choices {list(trial.choices)}; ignored")
            continue
        if rec["correct_answer"] != trial.correct:
            bad(f"trial {tid}: recorded correct answer {rec['correct_answer']!r} differs from the study's "
                f"{trial.correct!r}; ignored")
            continue
        if not _is_number(rec["response_time_s"]) or rec["response_time_s"] < 0:
            bad(f"trial {tid}: response time {rec['response_time_s']!r} is not a non-negative number; ignored")
            continue
        if tid in first_line:
            bad(f"duplicate answer to trial {tid} (answer {rec['answer']!r}); the first, at line "
                f"{first_line[tid]}, is kept")
            continue
        first_line[tid] = lineno
        log.responses.append({**rec, "_file": name, "_line": lineno})
    return log


@dataclass
class ResponseSet:
    """All responses of a study: one row per (participant, trial) with the trial's definition joined;
    the sessions; and every problem found in the files (empty when all is well)."""

    responses: pd.DataFrame
    sessions: pd.DataFrame
    participants: pd.DataFrame
    problems: pd.DataFrame

    @property
    def simulated(self) -> bool:
        return bool(len(self.responses)) and bool(self.responses["simulated"].any())

    def report(self) -> str:
        if self.problems.empty:
            return "no problems in the response files"
        lines = [f"{len(self.problems)} problem(s) in the response files:"]
        lines += [str(Problem(r.file, None if pd.isna(r.line) else int(r.line), r.problem))
                  for r in self.problems.itertuples()]
        return "\n".join(lines)


RESPONSE_COLUMNS = ["participant", "simulated", "position", "trial", "task", "condition", "attention", "source",
                    "identity", "stimulus", "answer", "correct_answer", "correct", "n_choices", "response_time_s",
                    "timestamp", "order_seed", "file", "line"]


def load_responses(study: Study, strict: bool = False) -> ResponseSet:
    """Read every participant file of ``study.responses_dir`` into pandas, checking each line.

    With ``strict`` any problem raises :class:`ResponseFileError` listing them all; otherwise problems are
    returned in ``.problems`` (and the offending lines are left out, duplicates keep the first answer).
    """
    rdir = study.responses_dir
    problems: list[Problem] = []
    logs: list[ParticipantLog] = []
    if rdir.is_dir():
        for f in sorted(rdir.iterdir()):
            if f.name == LOCK_DIR:
                continue
            if not f.is_file() or f.suffix != ".jsonl":
                problems.append(Problem(str(f), None, "not a participant response file (<participant>.jsonl); ignored"))
                continue
            if not PARTICIPANT_RE.fullmatch(f.stem):
                problems.append(Problem(str(f), None, f"file name {f.stem!r} is not a valid participant id; ignored"))
                continue
            log = read_participant_log(study, f.stem, f)
            logs.append(log)
            problems += log.problems
    rows, sess, parts = [], [], []
    for log in logs:
        for r in log.responses:
            t = study.trial(r["trial"])
            rows.append({
                "participant": log.participant, "simulated": bool(r.get("simulated", False)),
                "position": r.get("position"), "trial": t.trial_id, "task": t.task, "condition": t.condition,
                "attention": t.attention, "source": t.source, "identity": t.identity, "stimulus": r["stimulus"],
                "answer": r["answer"], "correct_answer": t.correct,
                "correct": None if t.correct is None else r["answer"] == t.correct,
                "n_choices": len(t.choices), "response_time_s": float(r["response_time_s"]),
                "timestamp": r["timestamp"], "order_seed": r.get("order_seed"), "file": r["_file"], "line": r["_line"],
            })
        for s in log.sessions:
            sess.append({"participant": log.participant, "timestamp": s.get("timestamp"),
                         "resumed_at": s.get("resumed_at"), "simulated": bool(s.get("simulated", False)),
                         "order_seed": s.get("plan", {}).get("seed") if isinstance(s.get("plan"), dict) else None})
        plan = log.recorded_plan(study) or study.plan(log.participant)
        parts.append({"participant": log.participant,
                      "simulated": any(bool(s.get("simulated", False)) for s in log.sessions),
                      "answered": len(log.responses), "planned": len(plan.order), "sessions": len(log.sessions),
                      "completed": log.completed, "problems": len(log.problems)})
    responses = pd.DataFrame(rows, columns=RESPONSE_COLUMNS)
    if len(responses):
        responses = responses.sort_values(["participant", "position"], kind="stable").reset_index(drop=True)
    out = ResponseSet(
        responses=responses,
        sessions=pd.DataFrame(sess, columns=["participant", "timestamp", "resumed_at", "simulated", "order_seed"]),
        participants=pd.DataFrame(parts, columns=["participant", "simulated", "answered", "planned", "sessions",
                                                  "completed", "problems"]),
        problems=pd.DataFrame([p.__dict__ for p in problems], columns=["file", "line", "problem"]),
    )
    if strict and problems:
        raise ResponseFileError(out.report())
    return out
