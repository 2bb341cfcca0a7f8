"""The About tab: what TransMRSR does, and the card of the model the Super-resolve tab has loaded."""

from __future__ import annotations

import gradio as gr

from appui import state
from transmrsr.serving import LoadedModel

ABOUT = """
### TransMRSR
Super-resolution of thick-slice brain MRI with a transformer encoder and a self-distilled StyleSwin generative prior
(Huang et al., *TransMRSR*, arXiv:2306.06669). The network takes 2-D slices that contain the thick axis: shallow
conv features → Swin encoder → one latent per decoder style input → truncation towards the **nearest** of 8 k-means
centroids (φ: 1 = none) → StyleSwin decoder modulated by the encoder features (CWSS) → reconstruction head, added to
the cubic interpolation. **φ** trades fidelity to the input (1) for the generator's prior (0).

Upload an isotropic scan and the app simulates a thick-slice acquisition along the axial voxel axis, so you can
compare against the original; upload a real thick-slice scan and its thick axis and factor come from the header
(the network for that factor is used, whatever the scale choice says).
The SR NIfTI keeps the input's affine, moved onto the thin grid, so it overlays the input in any viewer.
"""


def model_card_of(entry: LoadedModel | None) -> str:
    """The model card of a loaded model (only loaded models' cards are read)."""
    from transmrsr.hub import read_model_card

    if entry is None:
        return "### Model card\n\nThe card of a model shows here once a run has loaded it."
    title = f"`{entry.name}` (weights {entry.version})"
    text = read_model_card(entry.source)
    if text is None:
        return f"### Model card: {title}\n\nNo model card found for {title}."
    return f"### Model card: {title}\n\n{text}"


def model_card_markdown(spec: str, scale) -> str:
    """The card of the model the Super-resolve tab would use at ``scale``, if it is loaded."""
    return model_card_of(state.MODELS.loaded_entry(spec, int(scale)))


def build_tab() -> gr.Markdown:
    """The tab's contents; returns the model card (the Super-resolve tab's events fill it)."""
    gr.Markdown(ABOUT)
    return gr.Markdown(elem_id="model-card")
