"""Simulated participants: they click through the real form (same widget callbacks, same files on disk) and
answer correctly with a chosen probability. They exist to test the pipeline end to end and to show the
analysis working; their ids start with ``sim-`` and every line they write says ``"simulated": true``.
They are NOT human results.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from deidkit.study.design import Study, Trial
from deidkit.study.form import StudyForm
from deidkit.study.participants import LOCK_DIR, SIM_PREFIX

Accuracy = float | Mapping[str, float]


@dataclass
class SimulatedClock:
    """A clock the simulated participant advances by its (drawn) response time before each click."""

    t: float = 0.0

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt


def accuracy_for(accuracy: Accuracy, trial: Trial) -> float:
    """Look up the probability of a correct answer: a float, or a mapping tried with the keys
    ``"<task>:<condition>"``, ``"<condition>"``, ``"<task>"``, ``"default"`` in that order."""
    if not isinstance(accuracy, Mapping):
        p = float(accuracy)
    else:
        for key in (f"{trial.task}:{trial.condition}", trial.condition, trial.task, "default"):
            if key in accuracy:
                p = float(accuracy[key])
                break
        else:
            raise KeyError(f"no simulated accuracy for task {trial.task!r}, condition {trial.condition!r}; give one "
                           "of these keys or 'default'")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"simulated accuracy must lie in [0, 1], got {p} for {trial.task}/{trial.condition}")
    return p


def _choose(trial: Trial, values: list[str], p: float, rng: np.random.Generator) -> int:
    if trial.correct is None:
        # A rating: 1 + Binomial(4, p), so p = 1 always rates 5 and p = 0 always rates 1.
        return values.index(str(1 + int(rng.binomial(4, p))))
    right = values.index(trial.correct)
    if rng.random() < p:
        return right
    wrong = [i for i in range(len(values)) if i != right]
    return int(rng.choice(wrong))


def run_simulated_participant(form: StudyForm, accuracy: Accuracy, rng: np.random.Generator,
                              clock: SimulatedClock | None = None, attention_accuracy: float = 1.0,
                              median_response_time_s: float = 2.5, max_answers: int | None = None) -> int:
    """Drive ``form`` through consent, instructions and trials by clicking its buttons; stop after
    ``max_answers`` answers (an interrupted session) or at the end. Returns the number of answers given."""
    form.consent_box.value = True
    form.start_button.click()
    if form.screen == "consent":
        raise RuntimeError(f"simulated participant could not start: {form.error}")
    if form.screen == "instructions":
        form.begin_button.click()
    given = 0
    while form.screen == "trial" and (max_answers is None or given < max_answers):
        trial = form.current_trial
        assert trial is not None
        p = attention_accuracy if trial.attention else accuracy_for(accuracy, trial)
        idx = _choose(trial, form.choice_values, p, rng)
        if clock is not None:
            clock.advance(float(rng.lognormal(math.log(median_response_time_s), 0.4)))
        before = len(form.answered)
        form.choice_buttons[idx].click()
        if len(form.answered) == before:
            raise RuntimeError(f"simulated answer was not saved: {form.error}")
        given += 1
    return given


def simulate_participants(study: Study, n: int, accuracy: Accuracy = 0.8, seed: int = 0,
                          attention_accuracy: float = 1.0, median_response_time_s: float = 2.5,
                          first: int = 1) -> list[str]:
    """Run ``n`` simulated participants (``sim-001`` ...) through the form of ``study``; returns their ids.

    ``accuracy``: probability of a correct answer, one float or per condition/task (see :func:`accuracy_for`).
    Write them into a separate responses folder (``study.with_responses_dir(...)``) to keep them apart from
    real participants.
    """
    rng = np.random.default_rng(seed)
    ids = []
    for i in range(first, first + n):
        pid = f"{SIM_PREFIX}{i:03d}"
        clock = SimulatedClock()
        form = StudyForm(study, pid, simulated=True, clock=clock)
        try:
            run_simulated_participant(form, accuracy, rng, clock, attention_accuracy, median_response_time_s)
        finally:
            form.close()
        ids.append(pid)
    return ids


def accuracy_table(accuracy: Accuracy, study: Study) -> pd.DataFrame:
    """The simulation's input accuracy per task and condition (to set beside what the analysis recovers)."""
    rows = {}
    for t in study.trials:
        if not t.attention and t.correct is not None:
            rows[(t.task, t.condition)] = accuracy_for(accuracy, t)
    return pd.DataFrame([{"task": k[0], "condition": k[1], "simulated input accuracy": v} for k, v in rows.items()])


def fresh_simulation(study: Study, folder_name: str = "simulated_responses") -> Study:
    """The study writing into ``<study>/<folder_name>``, emptied of earlier simulated runs, so simulations
    never mix with real participants' files nor with an earlier simulation's. Refuses to delete anything
    that is not a simulated participant's file."""
    folder = study.folder / folder_name
    if folder.exists():
        foreign = [f.name for f in folder.iterdir() if f.name != LOCK_DIR and not
                   (f.is_file() and f.name.startswith(SIM_PREFIX) and f.suffix == ".jsonl")]
        if foreign:
            raise FileExistsError(f"{folder}: holds files that are not simulated responses ({foreign[:5]}); "
                                  "not deleting it")
        shutil.rmtree(folder)
    return study.with_responses_dir(folder)
