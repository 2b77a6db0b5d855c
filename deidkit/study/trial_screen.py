"""How one trial looks on screen: the prompt, the faces and the answer buttons as ipywidgets, shared by the live
form and its static preview.

Faces are laid out at the study's display sizes (:class:`~deidkit.study.design.StudyDesign` ``stimulus_px``,
``pair_px``, ``gallery_px``) with a fixed width that does not shrink with the window: a narrow window scrolls,
so every participant sees the faces at the same size.
"""

from __future__ import annotations

from collections.abc import Callable

import ipywidgets as widgets

from deidkit.study.design import Study, Trial

CHOICE_LABELS = {"real": "Real (unmodified)", "modified": "Modified",
                 "1": "1 - different", "2": "2", "3": "3", "4": "4", "5": "5 - identical"}
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


class StimulusMedia:
    """The image or video widgets of a study's stimuli, one per stimulus and width, reused across trials (a
    screen shows each stimulus once), so a long run of trials does not load the same face again and again."""

    def __init__(self, study: Study) -> None:
        self.study = study
        self._cache: dict[tuple[str, int], widgets.Widget] = {}

    def __call__(self, stimulus_id: str, width: int) -> widgets.Widget:
        key = (stimulus_id, width)
        if key not in self._cache:
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
            self._cache[key] = w
        return self._cache[key]

    def all_widgets(self) -> list[widgets.Widget]:
        """Every media widget made so far."""
        return list(self._cache.values())

    def clear(self) -> None:
        self._cache.clear()


def trial_widgets(study: Study, media: StimulusMedia, trial: Trial, candidates: tuple[str, ...],
                  on_click: Callable[[int], None] | None
                  ) -> tuple[list[widgets.Widget], list[widgets.Button], list[str]]:
    """The widgets of one trial screen, faces at the design's sizes: the screen's parts, its answer buttons and
    the answer each button gives. ``on_click(i)`` is called when button ``i`` is clicked (None: inert buttons,
    for a static preview)."""
    px, gallery_px = study.design.display_px(trial)
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
        probe = widgets.VBox([widgets.HTML("<b>This person:</b>"), media(trial.stimuli[0], px)], layout=box)
        cells = []
        for i, sid in enumerate(candidates):
            ident = str(study.stimuli.loc[sid, "identity"])
            cells.append(widgets.VBox([media(sid, gallery_px), button(f"Person {chr(65 + i)}", ident)],
                                      layout=box))
        cols = gallery_columns(len(cells), px, gallery_px)
        cell = gallery_px + 4 * CELL_MARGIN_PX
        gallery = widgets.VBox([widgets.HTML("<b>Gallery:</b>"),
                                widgets.GridBox(cells, layout=widgets.Layout(
                                    grid_template_columns=f"repeat({cols}, {cell}px)"))],
                               layout=widgets.Layout(flex="0 0 auto"))
        content = [widgets.HBox([probe, gallery])]
    elif trial.task == "similarity":
        content = [widgets.HBox([media(s, px) for s in trial.stimuli]),
                   widgets.HBox([button(CHOICE_LABELS.get(c, c), c) for c in trial.choices])]
    else:
        content = [media(trial.stimuli[0], px),
                   widgets.HBox([button(CHOICE_LABELS.get(c, c), c) for c in trial.choices])]
    return [widgets.HTML(f"<p style='font-size:1.15em'>{trial.prompt}</p>"), *content], buttons, values
