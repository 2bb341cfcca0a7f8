"""The Super-resolve tab: upload, run, the viewer, the LR ↔ SR slider, the φ sweep, and the named API
endpoint ``/super_resolve``. The model and image work is the package's (``transmrsr.studio``, ``transmrsr.mpr``);
the handlers here check the page's values and turn results into component updates."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import gradio.utils as gr_utils
import numpy as np

from appui import state
from appui.about import model_card_markdown, model_card_of
from appui.state import case_of, get_model, gpu, model_of, session_id, user_error
from appui.viewer import VolumeViewer
from transmrsr.data.io import VolumeError
from transmrsr.evaluation.metrics import psnr
from transmrsr.inference import DEFAULT_FUSION
from transmrsr.mpr import Scene, case_scene, case_windows
from transmrsr.serving import FactorNotServed, LoadedModel, ModelNotAllowed, public_message
from transmrsr.studio import NO_LIVE_PHI, Case, CaseOptions, Plan, phi_sweep, plan_volume, run_case
from transmrsr.viewer import to_rgb, window


def _file_path(f) -> str | None:
    if f is None:
        return None
    return f if isinstance(f, str) else getattr(f, "name", None) or getattr(f, "path", None)


def prepare(volume_file, model_spec: str, scale: int) -> tuple[str, Plan, LoadedModel]:
    """Check the upload and the model before any inference: (path, plan, loaded model). The
    factor comes from a thick-slice file's header, the scale choice only for isotropic uploads;
    an unsupported factor or model is refused here, fast, with a clear message."""
    path = _file_path(volume_file)
    if not path:
        raise gr.Error("Upload a .nii or .nii.gz volume or a zipped DICOM series first (or pick an example).")
    try:
        plan = plan_volume(path, int(scale), served=lambda r: state.MODELS.served_for(model_spec, r))
        state.MODELS.check(model_spec, plan.factor)
    except (VolumeError, ModelNotAllowed, FactorNotServed) as exc:
        raise user_error(exc) from None
    return path, plan, get_model(model_spec, plan.factor)


def _eta_reporter(progress, label: str, unit: str = "slice") -> Callable[[int, int], None]:
    """A ``(done, total)`` callback that moves the page's progress bar, with an ETA."""
    start = time.monotonic()

    def report(done: int, total: int) -> None:
        elapsed = time.monotonic() - start
        eta = elapsed / done * (total - done) if done else None
        progress(
            done / max(total, 1),
            desc=f"{label}: {unit} {done}/{total}" + (f" · ETA {eta:.0f} s" if eta is not None else ""),
        )

    return report


def adapt_options(progress=None):
    """AdaptOptions of "Adapt to this scan": seeded (0), TRANSMRSR_ADAPT_STEPS steps, progress on the
    page's single bar (with an ETA). The library adapts a copy: the loaded weights never change."""
    from transmrsr.adapt import DEFAULT_STEPS, AdaptOptions

    try:
        steps = int(state.ADAPT_STEPS) if state.ADAPT_STEPS else DEFAULT_STEPS
    except ValueError:
        steps = DEFAULT_STEPS
    report = _eta_reporter(progress, "adapting to this scan", unit="step") if progress is not None else None
    return AdaptOptions(steps=max(1, steps), seed=0, progress=report)


@gpu
def _run(
    volume_file, model_spec, scale, phi, fusion, folder: Path, progress=None, adapt: bool = False, trust: bool = False
) -> Case:
    path, plan, loaded = prepare(volume_file, model_spec, scale)
    shown = f"×{plan.label}" + (f" (×{plan.factor} network)" if plan.acq is not None else "")
    if progress is not None:
        progress(0, desc=f"{shown} with {loaded.name}: {'adapting' if adapt else 'starting'}")
    report = _eta_reporter(progress, shown) if progress is not None else None
    served = state.MODELS.policy.bundled_factors() if loaded.bundled else None  # a custom model's are unknown
    try:
        options = CaseOptions(
            scale=int(scale),
            phi=float(phi),
            fusion=bool(fusion),
            progress=report,
            plan=plan,
            model_name=loaded.name,
            model_version=loaded.version,
            served=served,
            adapt=adapt_options(progress) if adapt else None,
            trust=bool(trust),
        )
        return run_case(path, loaded.model, folder, options)
    except ValueError as exc:  # VolumeError, or a file changed since its header was read
        raise user_error(exc) from None


def _compare_pair(
    case: Case, scene: Scene, plane: str, index: int, sr_img: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The LR ↔ SR slider's two pictures of slice ``index`` of the compare plane, oriented as in the
    viewer (lossless PNG, the MRI window, square-mm pixels)."""
    spec = scene.orientation.planes[plane]
    lo, hi = case.window
    lr = scene.orientation.display(np.take(case.interp, index, axis=spec.axis), plane)
    return to_rgb(window(lr, lo, hi), spec.spacing), to_rgb(window(sr_img, lo, hi), spec.spacing)


def viewer_payload(
    case: Case, model_spec, vstate: dict, plane: str, phi, cursor, have: dict | None = None, pair: bool = True
) -> tuple[dict, dict, tuple | None, str]:
    """What the viewer shows with the crosshair at voxel ``cursor``: (payload, new view state, the
    LR ↔ SR pair of the compare plane (None unless ``pair``), the note under the viewer).
    ``have``: the slices the browser holds (see :meth:`transmrsr.mpr.Scene.payload`)."""
    model = model_of(case, model_spec) if case.live_phi else None
    scene = case_scene(case, model, float(phi), windows=vstate["windows"])
    cur = scene.clamp(cursor)
    spec = scene.orientation.planes[plane]
    index, n = cur[spec.axis], scene.orientation.n_slices(plane)
    payload = scene.payload(cur, have if have is not None else vstate.get("have"), case=vstate["id"], plane=plane)
    note = f"slice {index} of {n} ({plane}) · crosshair at voxel ({', '.join(map(str, cur))})"
    sr_img = scene.orientation.display(np.asarray(scene.layers[1].source.take(spec.axis, index), np.float32), plane)
    if case.hr is not None:
        hr_img = scene.orientation.display(np.take(case.hr, index, axis=spec.axis), plane)
        lr_img = scene.orientation.display(np.take(case.interp, index, axis=spec.axis), plane)
        rng = float(vstate["hr_range"])
        note += (
            f" · slice PSNR: SR {round(float(psnr(sr_img, hr_img, peak=rng)), 2)} dB, "
            f"cubic {round(float(psnr(lr_img, hr_img, peak=rng)), 2)} dB"
        )
    if not case.live_phi:
        note += f" · the volume at φ {case.phi:.2f}. {NO_LIVE_PHI}"
    elif abs(float(phi) - case.phi) > 1e-6:
        net = next(p for p, sp in scene.orientation.planes.items() if sp.axis == case.slice_axis)
        note += (
            f" · φ {float(phi):.2f} recomputed live on the {net} plane (the one the network runs on)"
            + ("; this plane's network alone, Run again for the fused volume" if case.fusion else "")
            + (
                ""
                if net == plane
                else f"; the {plane} plane shows the volume at φ {case.phi:.2f} except along the {net} crosshair line"
            )
        )
    tags = {key: {pl: e["tag"] for pl, e in planes.items()} for key, planes in payload["slices"].items()}
    new_state = {**vstate, "cursor": list(cur), "have": tags, "plane": plane, "index": int(index)}
    return payload, new_state, (_compare_pair(case, scene, plane, index, sr_img) if pair else None), note


def _view(case_ref, vstate, model_spec, plane, phi, cursor, have=None, force_pair: bool = False):
    """-> (viewer, view state, slice slider, LR ↔ SR pair, note); the slider and the pair are left
    as they are when the compare plane's slice did not change."""
    case = case_of(case_ref)
    if case is None or not vstate:
        return None, None, gr.update(), None, ""
    spec_axis = _plane_axis_of(case, plane)
    index = int(scene_clamp(case, cursor)[spec_axis])
    moved = (
        force_pair or vstate.get("plane") != plane or vstate.get("index") != index or vstate.get("phi") != float(phi)
    )
    payload, new_state, pair, note = viewer_payload(case, model_spec, vstate, plane, phi, cursor, have, pair=moved)
    new_state["phi"] = float(phi)
    slider = gr.update(maximum=case.shape[spec_axis] - 1, value=index) if moved else gr.skip()
    return payload, new_state, slider, pair if moved else gr.skip(), note


def _safe_view(*args, **kwargs):
    """:func:`_view`, but a drawing error becomes a note: the finished SR stays (and downloads)."""
    try:
        return _view(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - any viewer failure; the run's result is kept
        msg = public_message(f"{exc.__class__.__name__}: {exc}" if not isinstance(exc, gr.Error) else exc.message)
        return (
            None,
            gr.skip(),
            gr.skip(),
            None,
            f"The SR is done (download it below), but this slice could not be drawn: {msg}",
        )


def _plane_axis_of(case: Case, plane: str) -> int:
    """The voxel axis the viewer slices for ``plane`` (from the affine: any voxel order)."""
    from transmrsr.mpr import Orientation

    return Orientation(case.affine, case.shape).planes[plane].axis


def scene_clamp(case: Case, cursor) -> tuple[int, int, int]:
    return tuple(int(np.clip(int(c), 0, n - 1)) for c, n in zip(cursor, case.shape))


def new_view_state(case: Case) -> dict:
    """Per-session viewer state of a new case: an id (the browser resets its view on a new one),
    window presets and the HR's range (computed once per run), the crosshair (the grid's centre)."""
    return {
        "id": secrets.token_hex(8),
        "windows": case_windows(case),
        "cursor": [n // 2 for n in case.shape],
        "hr_range": float(case.hr.max() - case.hr.min()) if case.hr is not None else 1.0,
        "have": {},
    }


def on_cursor(case_ref, vstate, model_spec, plane, phi, evt: gr.EventData):
    """The crosshair moved in the browser (a click, a drag or the wheel): send the planes it changed."""
    data = evt._data if isinstance(getattr(evt, "_data", None), dict) else {}
    try:  # what the browser sends is not trusted: three integers, or nothing happens
        cursor = [int(c) for c in data.get("cursor")]
    except (TypeError, ValueError):
        cursor = []
    if not vstate or len(cursor) != 3:
        return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
    have = data.get("have") if isinstance(data.get("have"), dict) else {}
    return _safe_view(case_ref, vstate, model_spec, plane, phi, cursor, have)


def on_index(case_ref, vstate, model_spec, plane, index, phi):
    """The Slice slider: the crosshair moves along the compare plane's axis (nothing when the slider
    only follows the crosshair)."""
    case = case_of(case_ref)
    if case is None or not vstate:
        return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
    axis = _plane_axis_of(case, plane)
    cursor = list(vstate["cursor"])
    if vstate.get("plane") == plane and int(cursor[axis]) == int(index) and vstate.get("phi") == float(phi):
        return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
    cursor[axis] = int(index)
    return _safe_view(case_ref, vstate, model_spec, plane, phi, cursor)


def on_phi(case_ref, vstate, model_spec, plane, phi):
    if not vstate:
        return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
    return _safe_view(case_ref, vstate, model_spec, plane, phi, vstate["cursor"])


NO_REFERENCE = (
    "**No HR reference**: this is a real thick-slice upload, so there is nothing to compare the SR "
    "with (no HR panel, error map or PSNR). Upload an isotropic scan to see them."
)


def _warnings_md(case: Case) -> str:
    return "\n\n".join(f"⚠️ {w}" for w in case.warnings)


#: "Trust maps" is on by default: with fusion (the default) the uncertainty comes from the fused
#: run's two planes (no extra run) and the consistency is a few matrix products, so the extra cost
#: is small next to the SR. Measured on the bundled 1 mm example at ×4 (2 shared CPU cores): maps 1.0 s,
#: writing both NIfTIs and the summaries about 5 s, next to 15 s for one plane's SR alone (the fused run is at
#: least twice that). Without fusion the uncertainty needs one extra SR run (a mirrored scan): the label says so.
TRUST_DEFAULT = True
TRUST_LABEL = "Trust maps: data consistency + uncertainty overlays and downloads"
TRUST_INFO = (
    "where the SR may be inventing anatomy (docs/trust.md). With fusion no extra SR run: about +6 s on the "
    "1 mm example at ×4 on a 2-core CPU; without fusion one extra SR run (about twice the time)"
)


def _trust_outputs(case: Case) -> tuple:
    """-> (the trust maps' one-line summaries, their NIfTI downloads), hidden without trust maps."""
    t = case.trust
    if t is None:
        return gr.update(value="", visible=False), gr.update(value=None, visible=False)
    files = [str(t.consistency_path)] + ([str(t.uncertainty_path)] if t.uncertainty_path is not None else [])
    text = (
        t.consistency_line()
        + "\n\n"
        + t.uncertainty_line()
        + "\n\nBoth are overlays on the SR in the viewer (*Overlay on SR*) and downloads on the SR grid below."
    )
    return gr.update(value=text, visible=True), gr.update(value=files, visible=True)


def _first_view(ref: str, case: Case, model_spec, plane, phi) -> tuple:
    """The viewer on a new case: -> (viewer, view state, slice slider, LR ↔ SR pair, note). A viewer that
    cannot be prepared or drawn becomes a note: the SR is kept (and downloads)."""
    try:
        fresh = new_view_state(case)
    except Exception:  # noqa: BLE001 - the viewer cannot be prepared; the SR is kept (and downloads)
        fresh = None
    if fresh is None:
        return None, None, gr.skip(), None, "The SR is done (download it below), but the viewer could not be prepared."
    view, vstate, index_update, pair, note = _safe_view(
        ref, fresh, model_spec, plane, phi, fresh["cursor"], force_pair=True
    )
    if not isinstance(vstate, dict) or "id" not in vstate:  # drawing failed: this case's state, not the last
        vstate = fresh
    return view, vstate, index_update, pair, note


def _case_info(case: Case) -> str:
    """The line under Run: the case, its factor and where it came from, the model, the output grid."""
    return (
        f"**{case.name}** · thick axis {case.axis}, ×{case.factor_label}"
        + (
            " (simulated from the isotropic upload, which is kept as reference)"
            if case.simulated
            else " (from the header)"
        )
        + (
            f" · served by the ×{case.factor} network on a resampled grid, output isotropic"
            if case.acq_factor is not None
            else ""
        )
        + f" · model {case.model_name} ({case.model_version})"
        + (" · adapted to this scan (a copy; the loaded weights are unchanged)" if case.adapted else "")
        + f" · output {case.shape} voxels of {', '.join(f'{z:.2f}' for z in case.zooms)} mm"
    )


def on_run(
    volume_file,
    model_spec,
    scale,
    phi,
    fusion,
    plane,
    adapt=False,
    trust=TRUST_DEFAULT,
    request: gr.Request = None,
    progress=gr.Progress(),  # noqa: B008 - Gradio's way to ask for a progress bar
):
    sid = session_id(request)
    path = _file_path(volume_file)
    # deleted with the session: files in Gradio's upload cache, but never the examples' cached
    # copies, which every session shares
    if path and Path(path).name not in {p.name for p in state.EXAMPLES.glob("*.nii*")}:
        state.SESSIONS.note_upload(sid, path, gr_utils.get_upload_folder())
    case = _run(
        volume_file,
        model_spec,
        scale,
        phi,
        fusion,
        state.SESSIONS.folder(sid),
        progress,
        adapt=bool(adapt),
        trust=bool(trust),
    )
    ref = state.SESSIONS.set_case(sid, case)
    view, vstate, index_update, pair, note = _first_view(ref, case, model_spec, plane, phi)
    info = _case_info(case)
    for w in case.warnings:
        gr.Warning(w)
    rows = [[m["method"], m["PSNR mask (dB)"], m["SSIM mask"], m["PSNR (dB)"], m["SSIM"]] for m in case.metrics]
    has_hr = case.hr is not None
    return (
        ref,
        index_update,
        view,
        vstate,
        pair,
        note,
        info,
        gr.update(value=rows, visible=has_hr),
        str(case.sr_path),
        gr.update(value=_warnings_md(case), visible=bool(case.warnings)),
        gr.update(visible=not has_hr),
        *_trust_outputs(case),
        model_card_of(state.MODELS.loaded_entry(model_spec, case.factor)),
    )


def on_new_upload(request: gr.Request):
    """A new upload makes the shown results stale: free them and clear the page."""
    state.SESSIONS.drop_case(session_id(request))
    return (
        None,
        gr.update(maximum=1, value=0),
        None,
        None,
        None,
        "",
        "",
        gr.update(value=None, visible=True),
        None,
        gr.update(value="", visible=False),
        gr.update(visible=False),
        gr.update(value="", visible=False),
        gr.update(value=None, visible=False),
        None,
    )


def on_session_end(request: gr.Request) -> None:
    """The browser tab closed: delete the session's folder and free its case."""
    state.SESSIONS.close(session_id(request))


def on_plane(case_ref, vstate, model_spec, plane, phi):
    """Another compare plane: the crosshair stays; the slider follows that plane's axis."""
    if not vstate:
        return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
    return _safe_view(case_ref, vstate, model_spec, plane, phi, vstate["cursor"])


def on_sweep(case_ref, model_spec, plane, index):
    case = case_of(case_ref)
    if case is None:
        raise gr.Error("Run a volume first.")
    try:
        return phi_sweep(case, model_of(case, model_spec), plane, int(index))
    except ValueError as exc:
        raise user_error(exc) from None


@gpu
def super_resolve_api(volume_file, scale: int = 4, phi: float = 0.9, adapt: bool = False, request: gr.Request = None):
    """Named API endpoint ``/super_resolve``: (volume_file, scale, phi, adapt) -> (SR NIfTI, metrics).
    The scale applies to isotropic uploads; a thick-slice file is run at its header's factor (any
    factor from 1.5 to 10). ``adapt``: adapt a copy of the model to the scan first."""
    sid = session_id(request)
    case = _run(volume_file, "", int(scale), float(phi), DEFAULT_FUSION, state.SESSIONS.folder(sid), adapt=bool(adapt))
    state.SESSIONS.set_case(sid, case)
    return str(case.sr_path), {
        "axis": case.axis,
        "scale": case.factor,
        "fusion": case.fusion,
        "shape": list(case.shape),
        "factor": case.acq_factor if case.acq_factor is not None else case.factor,
        "adapted": case.adapted,
        "affine": np.asarray(case.affine).tolist(),
        "simulated_from_hr": case.simulated,
        "model": case.model_name,
        "model_version": case.model_version,
        "input_sha256": case.input_sha256,
        "warnings": case.warnings,
        "metrics": case.metrics,
    }


# ---------------------------------------------------------------------------------------- the tab
#: Page layout: Run and the results fit a 1280×800 window; the LR ↔ SR slider's two layers cover each other.
CSS = """
#compare .content img { position: absolute !important; top: 0 !important; left: 0 !important; width: 100% !important;
  height: 100% !important; object-fit: contain !important; }
"""


def _busy():
    return gr.update(interactive=False, value="Running…")


def _idle():
    return gr.update(interactive=True, value="Run")


@dataclass
class SuperResolveTab:
    """The tab's components that its events (:func:`wire`) and the other tabs use."""

    volume: gr.File
    run: gr.Button
    warning: gr.Markdown
    info: gr.Markdown
    metrics: gr.Dataframe
    download: gr.File
    trust_md: gr.Markdown
    trust_files: gr.File
    model_spec: gr.Textbox
    scale: gr.Radio
    phi: gr.Slider
    fusion: gr.Checkbox
    adapt: gr.Checkbox
    trust: gr.Checkbox
    plane: gr.Radio
    index: gr.Slider
    note: gr.Markdown
    no_ref: gr.Markdown
    viewer: VolumeViewer
    compare: gr.ImageSlider
    sweep: gr.Button
    gallery: gr.Gallery


def _model_info() -> str:
    """The Model box's hint: what this server lets it load."""
    policy = state.MODELS.policy
    return "'bundled' (the weights for the upload's factor)" + (
        " or an allowed Hub repo id: " + ", ".join(policy.allowed)
        if policy.public and policy.allowed
        else ""
        if policy.public
        else ", a weights folder, or a Hugging Face repo id"
    )


def build_tab() -> SuperResolveTab:
    """The tab's contents (inside ``gr.Tab``); the events are attached by :func:`wire` once every tab is built."""
    # masks in examples/ are for `transmrsr evaluate --mask`, not volumes to super-resolve
    ex_dir = state.EXAMPLES
    examples = sorted(str(p) for p in ex_dir.glob("*.nii*") if "mask" not in p.name) if ex_dir.is_dir() else []
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            volume = gr.File(
                label="Volume (.nii / .nii.gz, or a DICOM series as .zip)",
                file_types=state.UPLOAD_TYPES,
                height=110,
                elem_id="volume-upload",
            )
            run = gr.Button("Run", variant="primary", elem_id="run")
            warning = gr.Markdown(visible=False, elem_id="input-warning")
            info = gr.Markdown(elem_id="case-info")
            metrics = gr.Dataframe(
                headers=["method", "PSNR mask (dB)", "SSIM mask", "PSNR (dB)", "SSIM"],
                label="Against the HR (head mask first, then the whole volume)",
                interactive=False,
                elem_id="metrics",
            )
            download = gr.File(label="SR volume (NIfTI)", height=80, elem_id="download")
            trust_md = gr.Markdown(visible=False, elem_id="trust-summary")
            trust_files = gr.File(
                label="Trust maps (NIfTI on the SR grid: consistency, uncertainty)",
                file_count="multiple",
                height=100,
                visible=False,
                elem_id="trust-download",
            )
            model_spec = gr.Textbox(
                label="Model",
                value=state.MODELS.box_value(),
                max_lines=1,
                max_length=200,
                info=_model_info(),
                elem_id="model-spec",
            )
            scale = gr.Radio(
                [4, 8],
                value=4,
                label="Scale (isotropic uploads)",
                info="a thick-slice upload uses its header's factor",
                elem_id="scale",
            )
            phi = gr.Slider(0.0, 1.0, value=0.9, step=0.05, label="φ (truncation; 1 = none)", elem_id="phi")
            fusion = gr.Checkbox(
                DEFAULT_FUSION,
                label="Orthogonal fusion (both planes that contain the thick axis)",
                info="better (about +0.25-0.4 dB brain PSNR on the bundled weights), about twice the time",
                elem_id="fusion",
            )
            adapt = gr.Checkbox(
                False,
                label="Adapt to this scan (a few minutes)",
                info="fine-tunes a copy of the model on this scan's own in-plane detail first (seeded); "
                "the loaded weights are never changed",
                elem_id="adapt",
            )
            trust = gr.Checkbox(TRUST_DEFAULT, label=TRUST_LABEL, info=TRUST_INFO, elem_id="trust")
            if examples:
                gr.Examples(
                    examples=examples,
                    inputs=volume,
                    label="Examples (the held-out test subject; 1 mm = HR)",
                    elem_id="volume-examples",
                )
        with gr.Column(scale=3):
            with gr.Row():
                plane = gr.Radio(["axial", "coronal", "sagittal"], value="coronal", label="Plane", elem_id="plane")
                index = gr.Slider(0, 1, value=0, step=1, label="Slice", elem_id="slice")
            note = gr.Markdown(elem_id="slice-note")
            no_ref = gr.Markdown(NO_REFERENCE, visible=False, elem_id="no-reference")
            viewer = VolumeViewer(elem_id="viewer")
            with gr.Accordion("LR ↔ SR slider (the compare plane's slice)", open=False):
                compare = gr.ImageSlider(label="LR ↔ SR", elem_id="compare", height=420, format="png")
            with gr.Accordion("φ sweep", open=False):
                sweep = gr.Button("Sweep φ on this slice", elem_id="sweep")
                gallery = gr.Gallery(label="φ sweep", columns=5, format="png", elem_id="sweep-gallery")
    return SuperResolveTab(
        volume=volume,
        run=run,
        warning=warning,
        info=info,
        metrics=metrics,
        download=download,
        trust_md=trust_md,
        trust_files=trust_files,
        model_spec=model_spec,
        scale=scale,
        phi=phi,
        fusion=fusion,
        adapt=adapt,
        trust=trust,
        plane=plane,
        index=index,
        note=note,
        no_ref=no_ref,
        viewer=viewer,
        compare=compare,
        sweep=sweep,
        gallery=gallery,
    )


def wire(tab: SuperResolveTab, case_state: gr.State, card: gr.Markdown, demo: gr.Blocks) -> None:
    """The tab's events (its outputs include the About tab's model ``card``), the session's end, and the
    named API endpoint ``/super_resolve`` for scripts (gradio_client)."""
    t = tab
    view_state = gr.State(None)  # per session: the crosshair, window presets, the slices the browser holds
    view_out = [t.viewer, view_state, t.index, t.compare, t.note]
    run_out = [
        case_state,
        t.index,
        t.viewer,
        view_state,
        t.compare,
        t.note,
        t.info,
        t.metrics,
        t.download,
        t.warning,
        t.no_ref,
        t.trust_md,
        t.trust_files,
        card,
    ]
    running = t.run.click(_busy, None, t.run, queue=False, api_visibility="private").then(
        on_run,
        [t.volume, t.model_spec, t.scale, t.phi, t.fusion, t.plane, t.adapt, t.trust],
        run_out,
        concurrency_limit=1,
        show_progress_on=[t.viewer],
        api_visibility="private",
    )
    running.success(_idle, None, t.run, queue=False, api_visibility="private")
    running.failure(_idle, None, t.run, queue=False, api_visibility="private")  # .then alone skips failures
    t.volume.change(
        on_new_upload, None, [*run_out[:-1], t.gallery], queue=False, show_progress="hidden", api_visibility="private"
    )
    # always_last: while the crosshair is dragged or a slider moved only the latest position is drawn
    t.viewer.cursor(
        on_cursor,
        [case_state, view_state, t.model_spec, t.plane, t.phi],
        view_out,
        trigger_mode="always_last",
        show_progress="hidden",
        api_visibility="private",
    )
    t.index.change(
        on_index,
        [case_state, view_state, t.model_spec, t.plane, t.index, t.phi],
        view_out,
        trigger_mode="always_last",
        show_progress="hidden",
        api_visibility="private",
    )
    t.phi.change(
        on_phi,
        [case_state, view_state, t.model_spec, t.plane, t.phi],
        view_out,
        trigger_mode="always_last",
        show_progress_on=[t.viewer],
        api_visibility="private",
    )
    t.plane.change(
        on_plane,
        [case_state, view_state, t.model_spec, t.plane, t.phi],
        view_out,
        show_progress="hidden",
        api_visibility="private",
    )
    t.sweep.click(on_sweep, [case_state, t.model_spec, t.plane, t.index], t.gallery, api_visibility="private")
    for trigger in (t.model_spec.change, t.scale.change):
        trigger(model_card_markdown, [t.model_spec, t.scale], card, api_visibility="private")
    demo.unload(on_session_end)
    with gr.Row(visible=False):
        api_file = gr.File()
        api_scale = gr.Number(value=4, precision=0)
        api_phi = gr.Number(value=0.9)
        api_adapt = gr.Checkbox(False)
        api_out = gr.File()
        api_metrics = gr.JSON()
        api_button = gr.Button()
    api_button.click(
        super_resolve_api,
        [api_file, api_scale, api_phi, api_adapt],
        [api_out, api_metrics],
        api_name="super_resolve",
        concurrency_limit=1,
    )
