"""The volume viewer as a Gradio 6 component: ``gr.HTML`` with a static template and ``js_on_load``.

Why this and not images rendered on the server, a custom component or a third-party viewer: see
``docs/viewer.md``. In short: Gradio 6's ``gr.HTML`` runs ``js_on_load`` once per component
(a ``<script>`` in HTML would not run), gives it ``trigger`` (events to Python, through the queue,
with the session's state) and ``watch`` (new values from Python), and needs no build step, no
Node toolchain and no CDN: the script, the style and the template ship in this folder.

The value is :meth:`transmrsr.mpr.Scene.payload` (a dict) or None; the browser answers with the
custom event ``cursor`` (``{"cursor": [i, j, k], "have": {...}}``), read in Python through
``gr.EventData._data``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

HERE = Path(__file__).resolve().parent

TEMPLATE = """
<div class="vv" tabindex="0">
  <div class="vv-bar">
    <label>Layout <select data-ctl="layout" title="Compare methods: LR, SR, HR and error in one plane; three planes: one volume in axial, coronal and sagittal">
      <option value="compare">Compare methods</option><option value="planes">Three planes</option></select></label>
    <label data-show="planes">Volume <select data-ctl="volume"></select></label>
    <span>Zoom <button data-act="zoom-out" title="Zoom out (Ctrl + wheel)">−</button><button data-act="zoom-in" title="Zoom in (Ctrl + wheel)">+</button><button data-act="fit" title="Fit and centre">Fit</button><button data-act="one" title="One voxel per screen pixel">1:1</button></span>
    <label>Drag <select data-ctl="mode" title="What the left button does (Shift or right button: pan; middle button: window)">
      <option value="crosshair">crosshair</option><option value="pan">pan</option><option value="window">window/level</option></select></label>
    <label>Window <select data-ctl="preset"></select></label>
    <label>Level <input type="number" step="any" data-ctl="level"></label>
    <label>Width <input type="number" step="any" data-ctl="width"></label>
    <label>Overlay on SR <select data-ctl="overlay"></select></label>
    <label>Opacity <input type="range" min="0" max="1" step="0.05" data-ctl="opacity"></label>
    <label>Display <select data-ctl="orient" title="Radiological: the patient's right on the screen's left">
      <option value="radiological">radiological</option><option value="neurological">neurological</option></select></label>
    <button data-act="fullscreen" title="Full screen">⛶</button>
  </div>
  <div class="vv-grid"></div>
  <div class="vv-legend"></div>
  <div class="vv-empty">Run a volume: its planes show here (click to move the crosshair, wheel for slices).</div>
</div>
"""

class VolumeViewer(gr.HTML):
    """Three linked planes of LR / SR / HR / error, with window/level, zoom, pan and overlays.

    Output only: set its value to :meth:`transmrsr.mpr.Scene.payload` (None clears it). Listen to
    its ``cursor`` event for crosshair and slice moves (``evt._data``: ``cursor`` and ``have``).
    """

    def __init__(self, value: dict | None = None, **kwargs: Any) -> None:
        super().__init__(
            value,
            html_template=TEMPLATE,
            css_template=(HERE / "viewer.css").read_text(),
            js_on_load=(HERE / "viewer.js").read_text(),
            **kwargs,
        )

    def postprocess(self, value: Any) -> Any:  # a dict payload, not HTML text
        return value

    def api_info(self) -> dict[str, Any]:
        return {"type": "object"}
    from collections.abc import Callable, Sequence
    from typing import TYPE_CHECKING, Any, Literal

    from gradio.blocks import Block

    if TYPE_CHECKING:
        from gradio.components import Timer
        from gradio.components.base import Component
