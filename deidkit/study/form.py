"""The participant-facing form: ipywidgets screens (consent, instructions, one trial per screen, finish) that
write every answer to disk the moment it is given. Works in Jupyter and, unchanged, as a Voilà web page.

Screens are rebuilt per trial with fresh buttons, and a click is only accepted from the buttons of the trial
on screen: a double click cannot answer the next trial by accident. Nothing advances until the answer is on
disk; a failed write shows an error and leaves the trial on screen to be answered again.

Faces are laid out at the study's display sizes (:class:`~deidkit.study.design.StudyDesign` ``stimulus_px``,
``pair_px``, ``gallery_px``) with a fixed width that does not shrink with the window: a narrow window scrolls,
so every participant sees the faces at the same size.

Programmatic driving (tests, simulated participants) uses the same callbacks as a mouse: set
``form.participant_box.value`` and ``form.consent_box.value``, then ``form.start_button.click()``,
``form.begin_button.click()`` and ``form.choice_buttons[i].click()``.
"""

from __future__ import annotations

import base64
import html
import os
import time
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from deidkit.study.design import Plan, Study, Trial
from deidkit.study.responses import (
    InvalidParticipantId,
    ParticipantLocked,
    ParticipantLog,
    ResponseWriter,
    normalize_participant_id,
    now_utc,
    read_participant_log,
)

CHOICE_LABELS = {"real": "Real (unmodified)", "modified": "Modified",
                 "1": "1 - different", "2": "2", "3": "3", "4": "4", "5": "5 - identical"}
SCREENS = ("consent", "instructions", "trial", "finish")
#: The form's largest width (CSS px): wide enough for the probe and a gallery of 3 candidates per row at the
#: default sizes, narrow enough for a laptop screen.
FORM_MAX_PX = 1200
CELL_MARGIN_PX = 4


def gallery_columns(n: int, probe_px: int, gallery_px: int) -> int:
    """Columns of an identification gallery of ``n`` candidates: as few rows as fit beside the probe within
    :data:`FORM_MAX_PX`, the candidates spread evenly over them (5 as 3 + 2 rather than 4 + 1)."""
    cell = gallery_px + 4 * CELL_MARGIN_PX  # the candidate, its cell's margins, the image's own margins
    fit = max(1, (FORM_MAX_PX - probe_px - 10 * CELL_MARGIN_PX) // cell)
    rows = -(-n // fit)
    return max(1, -(-n // rows))


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
        self._media_cache: dict[tuple[str, int], widgets.Widget] = {}
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

    def _media(self, stimulus_id: str, width: int) -> widgets.Widget:
        # One widget per stimulus and size, reused across trials (a screen shows each stimulus once).
        key = (stimulus_id, width)
        if key not in self._media_cache:
            data = self.study.stimulus_bytes(stimulus_id)
            suffix = self.study.stimulus_path(stimulus_id).suffix.lower().lstrip(".")
            # A fixed CSS width: the widgets' style sheet caps images at their container's width
            # (max-width: 100%), which a min-width overrides, so a face is never shown smaller than designed.
            layout = widgets.Layout(width=f"{width}px", min_width=f"{width}px", height="auto", flex="0 0 auto",
                                    margin=f"{CELL_MARGIN_PX}px")
            if self.study.stimulus_kind(stimulus_id) == "video":
                w = widgets.Video(value=data, format=suffix, width=width, autoplay=True, loop=True, controls=False,
                                  layout=layout)
            else:
                w = widgets.Image(value=data, format="jpeg" if suffix == "jpg" else suffix, width=width, layout=layout)
            self._media_cache[key] = w
        return self._media_cache[key]

    def _close_screen(self, old: tuple[widgets.Widget, ...]) -> None:
        """Close the widgets of a screen that was replaced (not the reused media and the fixed parts), so a long
        session does not pile up widgets in the browser; a click on a closed button is dropped."""
        keep = {id(w) for w in (*self._media_cache.values(), self.progress, self.progress_label, self.participant_box,
                                self.consent_box, self.start_button, self.begin_button)}
        _close_tree(old, keep)

    def _trial_widgets(self, trial: Trial, candidates: tuple[str, ...], on_click: Callable[[int], None] | None
                       ) -> tuple[list[widgets.Widget], list[widgets.Button], list[str]]:
        """The widgets of one trial screen (shared by the live form and :meth:`preview`), faces at the design's
        sizes."""
        px, gallery_px = self.study.design.display_px(trial)
        buttons: list[widgets.Button] = []
        values: list[str] = []

        def button(label: str, value: str) -> widgets.Button:
            b = widgets.Button(description=label,
                               layout=widgets.Layout(width=f"{gallery_px}px" if candidates else "auto"))
            idx = len(buttons)
            if on_click is not None:
                b.on_click(lambda _b: on_click(idx))
            buttons.append(b)
            values.append(value)
            return b

        if trial.task == "identification":
            box = widgets.Layout(align_items="center", margin=f"{CELL_MARGIN_PX}px", flex="0 0 auto")
            probe = widgets.VBox([widgets.HTML("<b>This person:</b>"), self._media(trial.stimuli[0], px)], layout=box)
            cells = []
            for i, sid in enumerate(candidates):
                ident = str(self.study.stimuli.loc[sid, "identity"])
                cells.append(widgets.VBox([self._media(sid, gallery_px), button(f"Person {chr(65 + i)}", ident)],
                                          layout=box))
            cols = gallery_columns(len(cells), px, gallery_px)
            cell = gallery_px + 4 * CELL_MARGIN_PX
            gallery = widgets.VBox([widgets.HTML("<b>Gallery:</b>"),
                                    widgets.GridBox(cells, layout=widgets.Layout(
                                        grid_template_columns=f"repeat({cols}, {cell}px)"))],
                                   layout=widgets.Layout(flex="0 0 auto"))
            content = [widgets.HBox([probe, gallery])]
        elif trial.task == "similarity":
            content = [widgets.HBox([self._media(s, px) for s in trial.stimuli]),
                       widgets.HBox([button(CHOICE_LABELS.get(c, c), c) for c in trial.choices])]
        else:
            content = [self._media(trial.stimuli[0], px),
                       widgets.HBox([button(CHOICE_LABELS.get(c, c), c) for c in trial.choices])]
        return [widgets.HTML(f"<p style='font-size:1.15em'>{trial.prompt}</p>"), *content], buttons, values

    def _show_trial(self, pos: int) -> None:
        assert self.plan is not None
        tid = self.plan.order[pos]
        trial = self.study.trial(tid)
        self._token += 1
        token = self._token
        parts, self.choice_buttons, self.choice_values = self._trial_widgets(
            trial, self.plan.candidates.get(tid, ()), lambda i: self._on_choice(token, i))
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
                     self.progress, self.progress_label, *self._media_cache.values()], set())
        self._media_cache.clear()

    # ------------------------------------------------------------------------------------------ static views
    def snapshot_html(self) -> str:
        """The current screen as static HTML (images inlined), for reports where widgets cannot run."""
        return widget_html(self.root)

    def preview(self, trial_id: str | None = None, participant: str = "preview") -> str:
        """Static HTML of one trial screen as a participant would see it, without starting a session."""
        plan = self.study.plan(participant)
        tid = trial_id or plan.order[0]
        parts, _, _ = self._trial_widgets(self.study.trial(tid), plan.candidates.get(tid, ()), None)
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


def running_in_voila() -> bool:
    """True inside a Voilà kernel (Voilà sets ``SERVER_SOFTWARE=voila/<version>`` for the page's kernel)."""
    return os.environ.get("SERVER_SOFTWARE", "").startswith("voila")


def query_parameter(name: str, default: str = "") -> str:
    """A parameter of the Voilà page's URL (``...?participant=p07``); ``default`` outside Voilà."""
    from urllib.parse import parse_qs

    values = parse_qs(os.environ.get("QUERY_STRING", "")).get(name)
    return values[0] if values else default


def widget_html(w: Any) -> str:
    """A static HTML rendering of a widget tree (the subset the form uses)."""
    if isinstance(w, (widgets.VBox, widgets.HBox, widgets.GridBox)):
        inner = "".join(widget_html(c) for c in w.children)
        if isinstance(w, widgets.GridBox):
            return (f"<div style='display:grid;grid-template-columns:{w.layout.grid_template_columns};gap:4px'>"
                    f"{inner}</div>")
        direction = "column" if isinstance(w, widgets.VBox) else "row"
        align = w.layout.align_items or "flex-start"
        return f"<div style='display:flex;flex-direction:{direction};align-items:{align};gap:8px'>{inner}</div>"
    if isinstance(w, widgets.HTML):
        return f"<div>{w.value}</div>"
    if isinstance(w, widgets.Label):
        return f"<span>{html.escape(w.value)}</span>"
    if isinstance(w, (widgets.Image, widgets.Video)):
        b64 = base64.b64encode(bytes(w.value)).decode()
        # The same fixed width as in the live form, so a static snapshot shows the faces at the study's size.
        style = f" style='width:{w.layout.width};min-width:{w.layout.min_width};height:auto'" if w.layout.width else ""
        if isinstance(w, widgets.Image):
            return f"<img src='data:image/{w.format};base64,{b64}' width='{w.width}'{style}>"
        return (f"<video src='data:video/{w.format};base64,{b64}' width='{w.width}'{style} autoplay loop muted>"
                "</video>")
    if isinstance(w, widgets.Button):
        return f"<button disabled style='padding:4px 12px'>{html.escape(w.description)}</button>"
    if isinstance(w, widgets.Text):
        return (f"<label>{html.escape(w.description)} <input type='text' disabled value='{html.escape(w.value)}' "
                f"placeholder='{html.escape(w.placeholder)}'></label>")
    if isinstance(w, widgets.Checkbox):
        checked = " checked" if w.value else ""
        return f"<label><input type='checkbox' disabled{checked}> {html.escape(w.description)}</label>"
    if isinstance(w, widgets.IntProgress):
        return f"<progress value='{w.value}' max='{w.max}'></progress>"
    raise TypeError(f"widget_html: no static rendering for {type(w).__name__}")
