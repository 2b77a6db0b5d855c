"""The participant-facing form: ipywidgets screens (consent, instructions, one trial per screen, finish) that
write every answer to disk the moment it is given. Works in Jupyter and, unchanged, as a Voilà web page.

Screens are rebuilt per trial with fresh buttons, and a click is only accepted from the buttons of the trial
on screen: a double click cannot answer the next trial by accident. Nothing advances until the answer is on
disk; a failed write shows an error and leaves the trial on screen to be answered again.

The layout of a trial screen lives in :mod:`deidkit.study.trial_screen`, the static HTML behind
:meth:`StudyForm.preview` and :meth:`StudyForm.snapshot_html` in :mod:`deidkit.study.static_html`.

Programmatic driving (tests, simulated participants) uses the same callbacks as a mouse: set
``form.participant_box.value`` and ``form.consent_box.value``, then ``form.start_button.click()``,
``form.begin_button.click()`` and ``form.choice_buttons[i].click()``.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from deidkit.study.design import Plan, Study, Trial
from deidkit.study.participants import InvalidParticipantId, normalize_participant_id
from deidkit.study.response_writer import ParticipantLocked, ResponseWriter, now_utc
from deidkit.study.responses import ParticipantLog, read_participant_log
from deidkit.study.static_html import widget_html
from deidkit.study.trial_screen import FORM_MAX_PX, StimulusMedia, trial_widgets

SCREENS = ("consent", "instructions", "trial", "finish")


class StudyForm:
    """One participant's session of a study, as ipywidgets. Display it with ``display(form)``.

    ``simulated`` marks a simulated participant (id must start with ``sim-``; every line says
    ``"simulated": true``). ``clock`` measures response times (seconds; a simulated participant passes its
    own). ``takeover``: a new form for a participant already open in this kernel closes the old one.
    """

    def __init__(self, study: Study, participant: str = "", *, simulated: bool = False,
                 clock: Callable[[], float] = time.monotonic, takeover: bool = True) -> None:
        self.study = study
        self.simulated = simulated
        self.clock = clock
        self.takeover = takeover
        self.screen = "consent"
        self.error = ""
        self.notices: list[str] = []
        self.participant: str | None = None
        self.writer: ResponseWriter | None = None
        self.plan: Plan | None = None
        self.answered: dict[str, str] = {}
        self.position: int | None = None  # index in plan.order of the trial on screen
        self.choice_buttons: list[widgets.Button] = []
        self.choice_values: list[str] = []
        self._token = 0
        self._shown_at = 0.0
        self._media = StimulusMedia(study)
        d = study.design
        self.title = widgets.HTML(f"<h2>{html.escape(d.name.replace('_', ' '))}</h2>")
        self.body = widgets.VBox()
        self.message = widgets.HTML()
        self.root = widgets.VBox([self.title, self.body, self.message],
                                 layout=widgets.Layout(max_width=f"{FORM_MAX_PX}px"))
        self.participant_box = widgets.Text(value=participant, description="Participant id:", placeholder="e.g. p01",
                                            style={"description_width": "initial"})
        self.consent_box = widgets.Checkbox(value=False, indent=False,
                                            description="I have read the information above and agree to take part")
        self.start_button = widgets.Button(description="Start", button_style="primary")
        self.start_button.on_click(lambda _b: self.start())
        self.begin_button = widgets.Button(description="Begin", button_style="primary")
        self.begin_button.on_click(lambda _b: self.begin())
        self.progress = widgets.IntProgress(min=0, max=1, value=0)
        self.progress_label = widgets.Label()
        self._show_consent()

    # ------------------------------------------------------------------------------------------ state
    @property
    def n_trials(self) -> int:
        return len(self.plan.order) if self.plan else 0

    @property
    def current_trial(self) -> Trial | None:
        if self.screen != "trial" or self.plan is None or self.position is None:
            return None
        return self.study.trial(self.plan.order[self.position])

    def _fail(self, msg: str) -> None:
        self.error = msg
        self.message.value = f'<p style="color:#b00020"><b>{html.escape(msg)}</b></p>'

    def _clear_message(self) -> None:
        self.error = ""
        self.message.value = ""

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.root)

    # ------------------------------------------------------------------------------------------ screens
    def _show_consent(self) -> None:
        self.screen = "consent"
        self.body.children = [widgets.HTML(self.study.design.consent_text), self.participant_box, self.consent_box,
                              self.start_button]

    def start(self) -> None:
        """Consent given: check the id, lock and read the participant's file, record the session."""
        if self.screen != "consent":
            return
        if not self.consent_box.value:
            self._fail("Please tick the consent box to take part.")
            return
        try:
            pid = normalize_participant_id(self.participant_box.value, simulated=self.simulated)
        except InvalidParticipantId as exc:
            self._fail(str(exc))
            return
        try:
            writer = ResponseWriter(self.study.responses_dir, pid, takeover=self.takeover)
        except (ParticipantLocked, OSError) as exc:
            self._fail(str(exc))
            return
        log = read_participant_log(self.study, pid)
        plan = log.recorded_plan(self.study) or self.study.plan(pid)
        answered = {r["trial"]: r["answer"] for r in log.responses if r["trial"] in set(plan.order)}
        record = {"event": "session", "study_id": self.study.study_id, "participant": pid, "timestamp": now_utc(),
                  "consent": True, "simulated": self.simulated, "resumed_at": len(answered),
                  "problems_found": [str(p) for p in log.problems], "plan": plan.to_dict()}
        try:
            writer.append(record)
        except OSError as exc:
            writer.close()
            self._fail(f"Cannot save to {writer.path}: {exc}. Please tell the experimenter.")
            return
        self.writer, self.participant, self.plan, self.answered = writer, pid, plan, answered
        self.participant_box.disabled = self.consent_box.disabled = True
        self.notices = [str(p) for p in log.problems]
        self._clear_message()
        if len(answered) == len(plan.order):
            self._finish(log)
            return
        self._show_instructions(log)

    def _show_instructions(self, log: ParticipantLog) -> None:
        self.screen = "instructions"
        parts = [widgets.HTML(self.study.design.instructions)]
        n, k = self.n_trials, len(self.answered)
        if k:
            parts.append(widgets.HTML(f"<p><b>Welcome back, {html.escape(self.participant or '')}.</b> Your {k} "
                                      f"earlier answers are saved; you continue with trial {k + 1} of {n}.</p>"))
        else:
            parts.append(widgets.HTML(f"<p>There are {n} questions.</p>"))
        if log.problems:
            parts.append(widgets.HTML(f"<p><i>{len(log.problems)} earlier record(s) could not be used and were "
                                      "noted for the experimenter; any question they concern is asked again.</i></p>"))
        old = self.body.children
        self.body.children = [*parts, self.begin_button]
        self._close_screen(old)

    def begin(self) -> None:
        if self.screen == "instructions":
            self._next_trial()

    def _next_trial(self) -> None:
        assert self.plan is not None
        for pos, tid in enumerate(self.plan.order):
            if tid not in self.answered:
                self._show_trial(pos)
                return
        self._finish(None)

    def _close_screen(self, old: tuple[widgets.Widget, ...]) -> None:
        """Close the widgets of a screen that was replaced (not the reused media and the fixed parts), so a long
        session does not pile up widgets in the browser; a click on a closed button is dropped."""
        keep = {id(w) for w in (*self._media.all_widgets(), self.progress, self.progress_label, self.participant_box,
                                self.consent_box, self.start_button, self.begin_button)}
        _close_tree(old, keep)

    def _show_trial(self, pos: int) -> None:
        assert self.plan is not None
        tid = self.plan.order[pos]
        trial = self.study.trial(tid)
        self._token += 1
        token = self._token
        parts, self.choice_buttons, self.choice_values = trial_widgets(
            self.study, self._media, trial, self.plan.candidates.get(tid, ()), lambda i: self._on_choice(token, i))
        k = len(self.answered) + 1
        self.progress.max, self.progress.value = self.n_trials, k - 1
        self.progress_label.value = f"Trial {k} of {self.n_trials}"
        self.position = pos
        old = self.body.children
        self.screen = "trial"
        self.body.children = [widgets.HBox([self.progress_label, self.progress]), *parts]
        self._close_screen(old)
        self._shown_at = self.clock()

    def _on_choice(self, token: int, index: int) -> None:
        # Only the buttons of the trial on screen count: a late second click on an old button does nothing.
        if self.screen != "trial" or token != self._token or self.writer is None or self.plan is None:
            return
        rt = max(0.0, self.clock() - self._shown_at)
        pos = self.position
        assert pos is not None
        tid = self.plan.order[pos]
        trial = self.study.trial(tid)
        value = self.choice_values[index]
        record = {
            "event": "response", "study_id": self.study.study_id, "participant": self.participant,
            "position": len(self.answered) + 1, "n_trials": self.n_trials, "trial": tid, "task": trial.task,
            "condition": trial.condition, "stimulus": trial.stimuli[-1],
            "shown": [*trial.stimuli, *self.plan.candidates.get(tid, ())], "answer": value, "choice_index": index,
            "correct_answer": trial.correct, "correct": None if trial.correct is None else value == trial.correct,
            "response_time_s": round(rt, 4), "timestamp": now_utc(), "order_seed": self.plan.seed,
            "simulated": self.simulated,
        }
        for b in self.choice_buttons:
            b.disabled = True
        try:
            self.writer.append(record)
        except OSError as exc:
            for b in self.choice_buttons:
                b.disabled = False
            self._fail(f"Your answer could NOT be saved ({exc}). Please tell the experimenter; you may click again.")
            return
        self._clear_message()
        self.answered[tid] = value
        self._next_trial()

    def _finish(self, log: ParticipantLog | None) -> None:
        old = self.body.children
        self.screen = "finish"
        self.position = None
        self.choice_buttons, self.choice_values = [], []
        n = self.n_trials
        if self.writer is not None and not (log is not None and log.completed):
            try:
                self.writer.append({"event": "complete", "study_id": self.study.study_id,
                                    "participant": self.participant, "timestamp": now_utc(),
                                    "answered": len(self.answered), "simulated": self.simulated})
            except OSError as exc:  # every answer is already on disk; only the marker is missing
                self._fail(f"could not write the completion marker ({exc})")
        if self.writer is not None:
            self.writer.close("finished")
        self.progress.max, self.progress.value = max(n, 1), n
        self.body.children = [widgets.HTML(
            f"<h3>Thank you!</h3><p>All {len(self.answered)} of {n} answers are saved. You can close this page.</p>")]
        self._close_screen(old)

    def close(self) -> None:
        """Release the participant's file and lock (the form stops accepting answers)."""
        if self.writer is not None:
            self.writer.close("form closed")
        _close_tree([self.root, self.participant_box, self.consent_box, self.start_button, self.begin_button,
                     self.progress, self.progress_label, *self._media.all_widgets()], set())
        self._media.clear()

    # ------------------------------------------------------------------------------------------ static views
    def snapshot_html(self) -> str:
        """The current screen as static HTML (images inlined), for reports where widgets cannot run."""
        return widget_html(self.root)

    def preview(self, trial_id: str | None = None, participant: str = "preview") -> str:
        """Static HTML of one trial screen as a participant would see it, without starting a session."""
        plan = self.study.plan(participant)
        tid = trial_id or plan.order[0]
        candidates = plan.candidates.get(tid, ())
        parts, _, _ = trial_widgets(self.study, self._media, self.study.trial(tid), candidates, None)
        n = len(plan.order)
        head = widgets.HBox([widgets.Label(f"Trial 1 of {n}"), widgets.IntProgress(min=0, max=n, value=0)])
        return widget_html(widgets.VBox([self.title, head, *parts]))


def _close_tree(roots: Any, keep: set[int]) -> None:
    """Close widgets, their children and their layout/style models, except those whose id is in ``keep``."""
    stack = list(roots)
    while stack:
        w = stack.pop()
        if id(w) in keep or not isinstance(w, widgets.Widget):
            continue
        stack.extend(getattr(w, "children", ()))
        stack.extend(x for x in (getattr(w, "layout", None), getattr(w, "style", None)) if x is not None)
        w.close()
