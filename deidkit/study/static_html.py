"""Static HTML of the form's widget trees, for reports and previews where widgets cannot run (an executed
notebook, an HTML export): images and videos inlined, buttons and inputs shown disabled.
"""

from __future__ import annotations

import base64
import html
from typing import Any

import ipywidgets as widgets


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
