"""TransMRSR — Gradio app: super-resolve a brain MRI volume and look at it.

Run locally with ``python app.py`` (add ``--port``, ``--share``); on a Hugging Face Space this
file is the entry point. All model and image work is done by the ``transmrsr`` package; this
file only builds the interface and wires events to it. A public deployment (``--public`` or
``TRANSMRSR_PUBLIC=1``) serves only the bundled and allow-listed models; see docs/app.md's
"Security / public deployment" section for every setting.
"""

from __future__ import annotations

import argparse
import hmac
import os
import secrets
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import gradio as gr
import gradio.utils as gr_utils
import numpy as np

from appui.viewer import VolumeViewer
from transmrsr.data.io import VolumeError
from transmrsr.evaluation.metrics import psnr
from transmrsr.inference import DEFAULT_FUSION
from transmrsr.mpr import Scene, case_scene, case_windows
from transmrsr.serving import (
    BUNDLED,
    FactorNotServed,
    LoadedModel,
    ModelNotAllowed,
    ModelPolicy,
    ModelRegistry,
    SessionRegistry,
    parse_list,
    public_message,
)
from transmrsr.studio import NO_LIVE_PHI, Case, Plan, phi_sweep, plan_volume, run_case
from transmrsr.viewer import to_rgb, window

REPO = Path(__file__).resolve().parent
CHECKPOINTS = REPO / "checkpoints"
EXAMPLES = REPO / "examples"
MAX_UPLOAD = os.environ.get("TRANSMRSR_MAX_UPLOAD", "300mb")
#: What the upload box accepts: NIfTI and a DICOM series zipped (``studio.plan_volume`` / ``run_case``
#: read both; ".gz" because the browser's file dialog matches only the last suffix of ".nii.gz").
UPLOAD_TYPES = [".nii", ".gz", ".zip"]
#: Outputs, one private folder per session under WORK_DIR/sessions; the same folder across restarts, so
#: leftovers of an earlier process are swept by age.
WORK_DIR = Path(os.environ.get("TRANSMRSR_WORK_DIR") or Path(tempfile.gettempdir()) / "transmrsr-app")
#: Reader-study store (SQLite + label NIfTIs); persistent, unlike WORK_DIR. Set by --annotations.
ANNOTATIONS_DIR = Path(os.environ.get("TRANSMRSR_ANNOTATIONS", REPO / "annotations"))
#: The Train tab runs jobs and reads server paths: off unless --enable-training or this variable is 1.
TRAINING_ENABLED = os.environ.get("TRANSMRSR_ENABLE_TRAINING", "") == "1"
#: Optimiser steps of "Adapt to this scan" (the library's default when unset; small in tests).
ADAPT_STEPS = os.environ.get("TRANSMRSR_ADAPT_STEPS", "")
#: A public deployment: only bundled / allow-listed models, study and operator codes required.
PUBLIC = os.environ.get("TRANSMRSR_PUBLIC", "") == "1"
#: Seconds a session's folder and case live without use (and the age at which uploads are deleted).
SESSION_TTL = float(os.environ.get("TRANSMRSR_SESSION_TTL", "3600"))
#: Reader study: the code readers enter to save readings (required on a public deployment).
STUDY_CODE = os.environ.get("TRANSMRSR_STUDY_CODE", "")
#: Reader study: the code that unlocks the pooled summary and the exports.
OPERATOR_CODE = os.environ.get("TRANSMRSR_OPERATOR_CODE", "")
#: Local use: the study operator's functions without a code (refused on a public deployment).
STUDY_OPERATOR = os.environ.get("TRANSMRSR_STUDY_OPERATOR", "") == "1"

try:  # GPU on a Hugging Face ZeroGPU Space; plain CUDA or CPU elsewhere
    import spaces  # type: ignore

    gpu = spaces.GPU
except ImportError:  # pragma: no cover - the usual case off Spaces

    def gpu(fn):
        return fn


def model_policy(allowed: tuple[str, ...] = (), cache_size: int | None = None) -> ModelPolicy:
    """The Model box's policy from the settings (env, then flags)."""
    return ModelPolicy(
        bundled_root=CHECKPOINTS,
        public=PUBLIC,
        allowed=tuple(allowed) or parse_list(os.environ.get("TRANSMRSR_ALLOWED_MODELS")),
        default=os.environ.get("TRANSMRSR_MODEL", "").strip() or BUNDLED,
        cache_size=int(cache_size or os.environ.get("TRANSMRSR_MODEL_CACHE", "2")),
    )


MODELS = ModelRegistry(model_policy())
SESSIONS = SessionRegistry(WORK_DIR / "sessions", ttl_s=SESSION_TTL)


def bundled_model(scale: int) -> Path:
    return MODELS.policy.bundled_path(scale)


def user_error(exc: BaseException | str) -> gr.Error:
    """A message for the page: the problem, never a server path."""
    return gr.Error(public_message(str(exc)))


def get_model(spec: str, factor: int) -> LoadedModel:
    """The model ``spec`` names for ``factor`` (checked against the policy, loaded once, LRU)."""
    try:
        return MODELS.get(spec, int(factor))
    except ValueError as exc:  # ModelNotAllowed, FactorNotServed, a folder without weights
        raise user_error(exc) from None


def _file_path(f) -> str | None:
    if f is None:
        return None
    return f if isinstance(f, str) else getattr(f, "name", None) or getattr(f, "path", None)


def _sid(request: gr.Request | None) -> str:
    """The session's key (the Gradio session hash; API clients have one too)."""
    return (getattr(request, "session_hash", None) or "no-session") if request is not None else "no-session"


def prepare(volume_file, model_spec: str, scale: int) -> tuple[str, Plan, LoadedModel]:
    """Check the upload and the model before any inference: (path, plan, loaded model). The
    factor comes from a thick-slice file's header, the scale choice only for isotropic uploads;
    an unsupported factor or model is refused here, fast, with a clear message."""
    path = _file_path(volume_file)
    if not path:
        raise gr.Error("Upload a .nii or .nii.gz volume or a zipped DICOM series first (or pick an example).")
    try:
        plan = plan_volume(path, int(scale), served=lambda r: MODELS.served_for(model_spec, r))
        MODELS.check(model_spec, plan.factor)
    except (VolumeError, ModelNotAllowed, FactorNotServed) as exc:
        raise user_error(exc) from None
    return path, plan, get_model(model_spec, plan.factor)


def _eta_reporter(progress, label: str) -> Callable[[int, int], None]:
    """A ``(done, total)`` callback that moves the page's progress bar, with an ETA."""
    start = time.monotonic()

    def report(done: int, total: int) -> None:
        elapsed = time.monotonic() - start
        eta = elapsed / done * (total - done) if done else None
        progress(
            done / max(total, 1),
            desc=f"{label}: slice {done}/{total}" + (f" · ETA {eta:.0f} s" if eta is not None else ""),
        )

    return report


def adapt_options(progress=None):
    """AdaptOptions of "Adapt to this scan": seeded (0), TRANSMRSR_ADAPT_STEPS steps, progress on the
    page's single bar (with an ETA). The library adapts a copy: the loaded weights never change."""
    from transmrsr.adapt import DEFAULT_STEPS, AdaptOptions

    try:
        steps = int(ADAPT_STEPS) if ADAPT_STEPS else DEFAULT_STEPS
    except ValueError:
        steps = DEFAULT_STEPS
    report = None
    if progress is not None:
        start = time.monotonic()

        def report(done: int, total: int) -> None:
            elapsed = time.monotonic() - start
            eta = elapsed / done * (total - done) if done else None
            progress(
                done / max(total, 1),
                desc=f"adapting to this scan: step {done}/{total}" + (f" · ETA {eta:.0f} s" if eta is not None else ""),
            )

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
    served = MODELS.policy.bundled_factors() if loaded.bundled else None  # a custom model's are unknown
    try:
        return run_case(
            path,
            loaded.model,
            folder,
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
    except ValueError as exc:  # VolumeError, or a file changed since its header was read
        raise user_error(exc) from None


def _case(ref) -> Case | None:
    return SESSIONS.case(ref) if isinstance(ref, str) else None


def _model_of(case: Case, model_spec):
    """The model that made ``case`` (for φ previews): the same factor, same Model box."""
    return get_model(model_spec, case.factor).model


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
    model = _model_of(case, model_spec) if case.live_phi else None
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
    case = _case(case_ref)
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
    case = _case(case_ref)
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
    sid = _sid(request)
    path = _file_path(volume_file)
    # deleted with the session: files in Gradio's upload cache, but never the examples' cached
    # copies, which every session shares
    if path and Path(path).name not in {p.name for p in EXAMPLES.glob("*.nii*")}:
        SESSIONS.note_upload(sid, path, gr_utils.get_upload_folder())
    case = _run(
        volume_file,
        model_spec,
        scale,
        phi,
        fusion,
        SESSIONS.folder(sid),
        progress,
        adapt=bool(adapt),
        trust=bool(trust),
    )
    ref = SESSIONS.set_case(sid, case)
    try:
        fresh = new_view_state(case)
    except Exception:  # noqa: BLE001 - the viewer cannot be prepared; the SR is kept (and downloads)
        fresh = None
    if fresh is None:
        view, vstate, index_update, pair = None, None, gr.skip(), None
        note = "The SR is done (download it below), but the viewer could not be prepared."
    else:
        view, vstate, index_update, pair, note = _safe_view(
            ref, fresh, model_spec, plane, phi, fresh["cursor"], force_pair=True
        )
        if not isinstance(vstate, dict) or "id" not in vstate:  # drawing failed: this case's state, not the last
            vstate = fresh
    info = (
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
        model_card_of(MODELS.loaded_entry(model_spec, case.factor)),
    )


def on_new_upload(request: gr.Request):
    """A new upload makes the shown results stale: free them and clear the page."""
    SESSIONS.drop_case(_sid(request))
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
    SESSIONS.close(_sid(request))


def on_plane(case_ref, vstate, model_spec, plane, phi):
    """Another compare plane: the crosshair stays; the slider follows that plane's axis."""
    if not vstate:
        return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
    return _safe_view(case_ref, vstate, model_spec, plane, phi, vstate["cursor"])


def on_sweep(case_ref, model_spec, plane, index):
    case = _case(case_ref)
    if case is None:
        raise gr.Error("Run a volume first.")
    try:
        return phi_sweep(case, _model_of(case, model_spec), plane, int(index))
    except ValueError as exc:
        raise user_error(exc) from None


@gpu
def super_resolve_api(volume_file, scale: int = 4, phi: float = 0.9, adapt: bool = False, request: gr.Request = None):
    """Named API endpoint ``/super_resolve``: (volume_file, scale, phi, adapt) -> (SR NIfTI, metrics).
    The scale applies to isotropic uploads; a thick-slice file is run at its header's factor (any
    factor from 1.5 to 10). ``adapt``: adapt a copy of the model to the scan first."""
    sid = _sid(request)
    case = _run(volume_file, "", int(scale), float(phi), DEFAULT_FUSION, SESSIONS.folder(sid), adapt=bool(adapt))
    SESSIONS.set_case(sid, case)
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


# ---------------------------------------------------------------------------------------- Annotate tab
import random  # noqa: E402
import shutil  # noqa: E402
from datetime import datetime  # noqa: E402

from transmrsr.annotations import MAX_LENGTHS, AnnotationStore, Reading  # noqa: E402
from transmrsr.studio import (  # noqa: E402
    network_plane,
    painted_region,
    plane_axis,
    reader_image,
    reader_items,
    region_uncertainty,
    uncertainty_picture,
)
from transmrsr.viewer import PLANES  # noqa: E402

ANN_COMPARE = ["cubic interpolation", "TransMRSR at another φ"]
ANN_RATINGS = [("1 · unusable", 1), ("2", 2), ("3", 3), ("4", 4), ("5 · excellent", 5)]
ANN_SUMMARY_HEADERS = ["method", "n", "mean rating", "hallucination rate", "artifact rate"]
ANN_NO_CASE = "Run a volume in the Super-resolve tab first: there is nothing to annotate yet."
ANN_FINISHED = "You have finished this reading session; reload the page to start another."
#: The reader's uncertainty overlay: unavailable until every image of the slice is rated (seeing where the
#: model is unsure would bias the rating), then offered on Image A and Image B.
ANN_UNCERTAINTY_LABEL = "Show the uncertainty map on the images (after you have rated every image of this slice)"
ANN_UNCERTAINTY_HEADERS = [
    "case",
    "case id",
    "method",
    "hallucination flags",
    "painted voxels",
    "uncertainty inside",
    "uncertainty outside",
    "inside / outside",
]


def annotation_store(create: bool = True) -> AnnotationStore | None:
    """The reader-study store under ANNOTATIONS_DIR (None when ``create`` is False and there is none yet)."""
    db = ANNOTATIONS_DIR / "annotations.sqlite"
    if not create and not db.is_file():
        return None
    return AnnotationStore(db)


def _uncertainty_rows() -> list[list]:
    """The operator's table: per case and method, the readers' painted hallucination flags against the
    uncertainty map (mean inside the regions vs the rest of the head on the same slices)."""
    store = annotation_store(create=False)
    return [
        [
            r["case_name"],
            r["case_id"],
            r["method"],
            r["flags"],
            r["voxels"],
            r["uncertainty_inside"],
            r["uncertainty_outside"],
            r["ratio"],
        ]
        for r in (store.uncertainty_summary() if store else [])
    ]


def _summary_rows(reader: str | None) -> list[list]:
    store = annotation_store(create=False)
    return [
        [r["method"], r["n"], r["mean_rating"], r["hallucination_rate"], r["artifact_rate"]]
        for r in (store.summary(reader) if store else [])
    ]


def study_code_required() -> bool:
    """Readers must enter the study code: always on a public deployment, elsewhere when one is set."""
    return PUBLIC or bool(STUDY_CODE)


def check_study_code(code) -> None:
    """gr.Error unless ``code`` is the operator's study code (or none is needed)."""
    if not study_code_required():
        return
    if not STUDY_CODE:
        raise gr.Error("The reader study is closed on this server (the operator has set no study code).")
    if not hmac.compare_digest(str(code or "").strip().encode(), STUDY_CODE.encode()):
        raise gr.Error("Enter the study code the study's operator gave you in 'Study code'.")


def check_operator(code) -> None:
    """gr.Error unless the caller is the study operator: the operator code when one is set; else a
    local server started with --study-operator (never a public one)."""
    if OPERATOR_CODE:
        if hmac.compare_digest(str(code or "").strip().encode(), OPERATOR_CODE.encode()):
            return
        raise gr.Error("Exports and the pooled summary are for the study's operator: enter the operator code.")
    if STUDY_OPERATOR and not PUBLIC:
        return
    raise gr.Error(
        "Exports and the pooled summary are for the study's operator: the server needs "
        "TRANSMRSR_OPERATOR_CODE (or, on a local server, --study-operator)."
    )


def _editor_value(image):
    return {"background": image, "layers": [], "composite": None} if image is not None else None


def _ann_view(case: Case, model_spec, plane, index, compare, other_phi, seed) -> dict:
    """The blinded items of one slice; kept in server-side state, never sent to the browser."""
    compare_phi = float(other_phi) if compare == ANN_COMPARE[1] else None
    items = reader_items(case, plane, int(index), compare_phi, int(seed or 0))  # ValueError: not on this plane
    model = _model_of(case, model_spec) if compare_phi is not None else None
    images = [reader_image(case, model, plane, int(index), it["phi"], one_plane=it["one_plane"]) for it in items]
    return {
        "case": case.case_id,
        "sr_path": str(case.sr_path),
        "plane": plane,
        "slice": int(index),
        "items": items,
        "images": images,
        "saved": {},
    }


def _uncertainty_off() -> dict:
    """The uncertainty checkbox of a slice not rated yet: off and locked."""
    return gr.update(value=False, interactive=False)


def ann_show(case_ref, model_spec, plane, index, compare, other_phi, seed):
    """-> view state, Image A, Image B, picked image, editor, status, uncertainty checkbox (locked
    until the slice is rated)."""
    case = _case(case_ref)
    if case is None:
        return None, None, None, gr.update(), None, ANN_NO_CASE, _uncertainty_off()
    try:
        view = _ann_view(case, model_spec, plane, index, compare, other_phi, seed)
    except ValueError as exc:  # a choice that cannot be shown: say so, show nothing (Save then refuses)
        gr.Warning(public_message(str(exc)))
        return (
            None,
            None,
            None,
            gr.update(),
            None,
            f"Nothing to rate here: {public_message(str(exc))}.",
            _uncertainty_off(),
        )
    labels = " and ".join(it["label"] for it in view["items"])
    status = (
        f"{plane} slice {int(index)} of {case.shape[plane_axis(case, plane)]}: {labels} in random order. "
        "Pick one, rate it, paint what you flag, save; then the other."
    )
    return (
        view,
        view["images"][0],
        view["images"][1],
        gr.update(value=view["items"][0]["label"]),
        _editor_value(view["images"][0]),
        status,
        _uncertainty_off(),
    )


def ann_on_case(case_ref, model_spec, compare, other_phi, seed):
    """A new run: show its middle slice on the plane the network works on."""
    case = _case(case_ref)
    if case is None:
        return gr.update(), gr.update(), *ann_show(None, model_spec, "coronal", 0, compare, other_phi, seed)
    plane = network_plane(case)
    n = case.shape[plane_axis(case, plane)]
    return (
        gr.update(value=plane),
        gr.update(maximum=n - 1, value=n // 2),
        *ann_show(case_ref, model_spec, plane, n // 2, compare, other_phi, seed),
    )


def ann_on_plane(case_ref, model_spec, plane, compare, other_phi, seed):
    case = _case(case_ref)
    if case is None:
        return gr.update(), *ann_show(None, model_spec, plane, 0, compare, other_phi, seed)
    n = case.shape[plane_axis(case, plane)]
    return gr.update(maximum=n - 1, value=n // 2), *ann_show(
        case_ref, model_spec, plane, n // 2, compare, other_phi, seed
    )


def ann_on_phi(case_ref, model_spec, plane, index, compare, other_phi, seed):
    if compare != ANN_COMPARE[1]:  # the other φ is not in use
        return (gr.update(),) * 7
    return ann_show(case_ref, model_spec, plane, index, compare, other_phi, seed)


def ann_pick(view, which):
    if not view:
        return None
    labels = [it["label"] for it in view["items"]]
    return _editor_value(view["images"][labels.index(which)] if which in labels else None)


def _rated(view) -> bool:
    """Whether every blinded image of the shown slice has a saved reading (the server's record, not the page's)."""
    return bool(view) and all(it["label"] in view["saved"] for it in view["items"])


def ann_uncertainty(case_ref, view, show):
    """The uncertainty overlay on Image A and Image B, or the plain images: -> Image A, Image B, checkbox.
    Refused (the plain images, the box off) until every image of this slice is rated: the map shows where
    the model is unsure, which would bias a reader who has not rated yet."""
    case = _case(case_ref)
    if not view or case is None or view.get("sr_path") != str(case.sr_path):
        return None, None, _uncertainty_off()
    plain = view["images"]
    if not show:
        return plain[0], plain[1], gr.update()
    if not _rated(view):
        gr.Warning("Rate every image of this slice first: the uncertainty map is shown only after rating.")
        return plain[0], plain[1], gr.update(value=False)
    try:
        shown = [uncertainty_picture(case, view["plane"], view["slice"], img) for img in plain]
    except ValueError as exc:  # no uncertainty map for this run
        gr.Warning(public_message(str(exc)))
        return plain[0], plain[1], gr.update(value=False)
    return shown[0], shown[1], gr.update()


def _painted_mask(editor) -> np.ndarray | None:
    """Pixels painted on any brush layer of the editor value, ``(H, W)`` bool (None: nothing)."""
    masks = []
    for layer in (editor or {}).get("layers") or []:
        a = np.asarray(layer)
        if a.ndim == 3:
            masks.append(a[..., 3] > 0 if a.shape[2] == 4 else a.any(axis=2))
        elif a.ndim == 2:
            masks.append(a > 0)
    if not masks or not any(m.any() for m in masks):
        return None
    return np.logical_or.reduce([m for m in masks if m.shape == masks[0].shape])


def ann_check(case_ref, view, reader, which, rating, code, finished) -> None:
    """What Save needs, as clear messages (its own step, without outputs: no error badges on the form)."""
    if finished:
        raise gr.Error(ANN_FINISHED)
    check_study_code(code)
    if not (reader or "").strip():
        raise gr.Error("Enter your name in 'Reader' before saving.")
    if len(reader.strip()) > MAX_LENGTHS["reader"]:
        raise gr.Error(f"'Reader' is too long ({MAX_LENGTHS['reader']} characters at most).")
    case = _case(case_ref)
    if case is None:
        raise gr.Error(ANN_NO_CASE)
    if rating in (None, ""):
        raise gr.Error("Choose a rating from 1 to 5 before saving.")
    if not view or view["sr_path"] != str(case.sr_path):
        raise gr.Error("No blinded images of the current run are shown: choose a plane and slice first.")
    labels = [it["label"] for it in view["items"]]
    if which not in labels:
        raise gr.Error(f"Pick which image you are rating ({' or '.join(labels)}).")


def ann_save(case_ref, view, reader, which, rating, hallucination, artifact, note, editor, code, finished):
    """Store the reading of the picked image (+ its painted region in the case's label NIfTI), with
    the model, its version, the scale, φ and the input's SHA-256."""
    ann_check(case_ref, view, reader, which, rating, code, finished)
    case = _case(case_ref)
    labels = [it["label"] for it in view["items"]]
    item = view["items"][labels.index(which)]
    mask = _painted_mask(editor)
    region = painted_region(case, view["plane"], mask) if mask is not None else None
    # the trust layer: the SR's uncertainty inside the painted region vs the rest of the head on this slice
    figures = region_uncertainty(case, view["plane"], view["slice"], region)
    reading = Reading(
        reader=reader.strip(),
        case_name=case.name[: MAX_LENGTHS["case_name"]],
        plane=view["plane"],
        slice=view["slice"],
        method=item["method"],
        rating=int(rating),
        phi=item["phi"],
        hallucination=bool(hallucination),
        artifact=bool(artifact),
        note=(note or "").strip(),
        case_id=case.case_id,
        input_sha256=case.input_sha256,
        model=case.model_name,
        model_version=case.model_version,
        scale=case.factor,
        uncertainty_in_region=figures[0] if figures else None,
        uncertainty_outside_region=figures[1] if figures else None,
    )
    try:
        ann_id = annotation_store().add(reading, region, case.shape, case.affine, ANNOTATIONS_DIR / "labels")
    except ValueError as exc:
        raise user_error(exc) from None
    view = {**view, "saved": {**view["saved"], which: ann_id}}
    voxels = int(region.sum()) if region is not None else 0
    status = f"Saved reading #{ann_id} of {which}" + (f" with a region of {voxels} voxels." if voxels else ".")
    todo = [label for label in labels if label not in view["saved"]]
    if todo:
        status += f" Rate {' and '.join(todo)} too: the methods are revealed once every image of this slice is saved."
        nxt = todo[0]
    else:
        status += " Unblinded: " + ", ".join(f"{it['label']} was {it['method']}" for it in view["items"]) + "."
        if case.trust is not None and case.trust.uncertainty is not None:
            status += " You may now show the uncertainty map on the images."
        nxt = which
    has_map = case.trust is not None and case.trust.uncertainty is not None
    unc = gr.update(interactive=True) if _rated(view) and has_map else _uncertainty_off()
    return (view, status, gr.update(value=nxt), ann_pick(view, nxt), None, False, False, "", unc)


def ann_finish(reader, code):
    """The reader is done: show their own per-method summary (never the pooled one) and stop saving."""
    check_study_code(code)
    if not (reader or "").strip():
        raise gr.Error("Enter your name in 'Reader' first: the summary is of your readings.")
    rows = _summary_rows(reader.strip()[: MAX_LENGTHS["reader"]])
    return (
        True,
        gr.update(value=rows, visible=True),
        f"Finished. Your readings per method ({sum(r[1] for r in rows)} in all).",
    )


def _export_dir(request: gr.Request | None) -> Path:
    out = SESSIONS.folder(_sid(request)) / "exports" / datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    out.mkdir(parents=True, exist_ok=True)
    return out


def ann_pooled(code):
    """The pooled per-method summary and the hallucination flags vs the uncertainty map per case, for the
    operator only."""
    check_operator(code)
    return gr.update(value=_summary_rows(None), visible=True), gr.update(value=_uncertainty_rows(), visible=True)


def ann_export_csv(code, request: gr.Request):
    check_operator(code)
    store = annotation_store(create=False)
    if store is None or not store.rows():
        raise gr.Error("No readings saved yet.")
    return str(store.export_csv(_export_dir(request) / "readings.csv"))


def ann_export_labels(code, request: gr.Request):
    check_operator(code)
    store = annotation_store(create=False)
    files = store.label_files(ANNOTATIONS_DIR / "labels") if store else []
    if not files:
        raise gr.Error("No painted regions saved yet.")
    out = _export_dir(request)  # copies in the operator's private session folder, the one the server hands out
    return [str(shutil.copy2(f, out / f.name)) for f in files]


def build_annotate_tab(case_state: gr.State, model_spec: gr.Textbox) -> None:
    """Reader study on the current case: blinded images of one slice, rating, flags, painted region, note."""
    seed = gr.State(lambda: random.randrange(2**31))  # one blinding seed per browser session
    view = gr.State(None)
    finished = gr.State(False)
    gr.Markdown(
        "Blinded reader study on the volume run in the Super-resolve tab: the SR and a comparison (cubic "
        "interpolation or TransMRSR at another φ) are shown as **Image A / Image B** in random order. Rate each, "
        "flag and paint what looks wrong, save. When you are done, press **Finish** to see your own results."
    )
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            reader = gr.Textbox(
                label="Reader",
                placeholder="your name or initials",
                max_length=MAX_LENGTHS["reader"],
                elem_id="ann-reader",
            )
            code = gr.Textbox(
                label="Study code",
                type="password",
                visible=study_code_required(),
                placeholder="from the study's operator",
                max_length=200,
                elem_id="ann-code",
            )
            compare = gr.Radio(ANN_COMPARE, value=ANN_COMPARE[0], label="Compare the SR against", elem_id="ann-compare")
            other_phi = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="Other φ (when comparing φ)", elem_id="ann-phi")
            plane = gr.Radio(list(PLANES)[::-1], value="coronal", label="Plane", elem_id="ann-plane")
            index = gr.Slider(0, 1, value=0, step=1, label="Slice", elem_id="ann-slice")
            which = gr.Radio(["Image A", "Image B"], value="Image A", label="Image you rate", elem_id="ann-image")
            rating = gr.Radio(ANN_RATINGS, value=None, label="Quality (1–5)", elem_id="ann-rating")
            with gr.Row():
                hallucination = gr.Checkbox(False, label="Hallucination", elem_id="ann-hallucination")
                artifact = gr.Checkbox(False, label="Artifact", elem_id="ann-artifact")
            note = gr.Textbox(label="Note", lines=2, max_length=MAX_LENGTHS["note"], elem_id="ann-note")
            with gr.Row():
                save = gr.Button("Save reading", variant="primary", elem_id="ann-save")
                finish = gr.Button("Finish", elem_id="ann-finish")
            status = gr.Markdown(ANN_NO_CASE, elem_id="ann-status")
            mine = gr.Dataframe(
                headers=ANN_SUMMARY_HEADERS,
                label="Your readings per method",
                interactive=False,
                visible=False,
                elem_id="ann-my-summary",
            )
        with gr.Column(scale=3):
            with gr.Row():
                img_a = gr.Image(label="Image A", interactive=False, height=300, format="png", elem_id="ann-image-a")
                img_b = gr.Image(label="Image B", interactive=False, height=300, format="png", elem_id="ann-image-b")
            show_unc = gr.Checkbox(False, label=ANN_UNCERTAINTY_LABEL, interactive=False, elem_id="ann-uncertainty")
            editor = gr.ImageEditor(
                label="Paint the region you flag (brush) on the image you rate",
                type="numpy",
                image_mode="RGBA",
                sources=[],
                transforms=[],
                layers=False,
                format="png",
                interactive=True,
                brush=gr.Brush(colors=["#ff2d2d"], default_color="#ff2d2d", color_mode="fixed", default_size=6),
                eraser=gr.Eraser(default_size=10),
                elem_id="ann-editor",
            )
    with gr.Accordion("Study operator: pooled results and exports", open=False):
        op_code = gr.Textbox(
            label="Operator code",
            type="password",
            visible=bool(OPERATOR_CODE),
            max_length=200,
            elem_id="ann-operator-code",
        )
        with gr.Row():
            pooled_btn = gr.Button("Show the pooled summary", elem_id="ann-pooled")
            csv_btn = gr.Button("Export readings (CSV)", elem_id="ann-export-csv")
            labels_btn = gr.Button("Export label NIfTIs", elem_id="ann-export-labels")
        summary = gr.Dataframe(
            headers=ANN_SUMMARY_HEADERS,
            label="All readers, per method",
            interactive=False,
            visible=False,
            elem_id="ann-summary",
        )
        unc_summary = gr.Dataframe(
            headers=ANN_UNCERTAINTY_HEADERS,
            label=(
                "Hallucination flags vs the uncertainty map, per case: mean uncertainty inside the painted regions "
                "and in the rest of the head on the same slices (input intensity units; above 1: higher where "
                "readers flagged)"
            ),
            interactive=False,
            visible=False,
            elem_id="ann-uncertainty-summary",
        )
        with gr.Row():
            csv_file = gr.File(label="Readings (CSV)", elem_id="ann-csv")
            label_files = gr.File(
                label="Label NIfTIs (aligned with the SR)", file_count="multiple", elem_id="ann-labels"
            )

    shown = [view, img_a, img_b, which, editor, status, show_unc]
    case_state.change(ann_on_case, [case_state, model_spec, compare, other_phi, seed], [plane, index, *shown])
    plane.input(ann_on_plane, [case_state, model_spec, plane, compare, other_phi, seed], [index, *shown])
    shown_in = [case_state, model_spec, plane, index, compare, other_phi, seed]
    gr.on([index.input, compare.input], ann_show, shown_in, shown, trigger_mode="always_last")
    other_phi.input(ann_on_phi, shown_in, shown, trigger_mode="always_last")
    which.input(ann_pick, [view, which], editor)
    save.click(ann_check, [case_state, view, reader, which, rating, code, finished], None).success(
        ann_save,
        [case_state, view, reader, which, rating, hallucination, artifact, note, editor, code, finished],
        [view, status, which, editor, rating, hallucination, artifact, note, show_unc],
        concurrency_limit=1,  # one writer per process (the label file lock covers several processes)
    )
    finish.click(ann_finish, [reader, code], [finished, mine, status])
    show_unc.input(ann_uncertainty, [case_state, view, show_unc], [img_a, img_b, show_unc])
    pooled_btn.click(ann_pooled, op_code, [summary, unc_summary])
    csv_btn.click(ann_export_csv, op_code, csv_file)
    labels_btn.click(ann_export_labels, op_code, label_files)


# ---------------------------------------------------------------------------------------- Train tab
import atexit  # noqa: E402
import dataclasses  # noqa: E402

from transmrsr.config import GANTrainConfig, SRTrainConfig  # noqa: E402
from transmrsr.jobs import (  # noqa: E402
    CentroidSpec,
    JobError,
    JobManager,
    Stage1Spec,
    Stage2Spec,
    loss_figure,
    model_kind,
    push_folder_to_hub,
)

TRAIN_STAGES = ["stage 1 · GAN prior", "centroid fit", "stage 2 · super-resolution"]
TRAIN_NO_ABLATION = "none (the full model)"


def _option(cls, name: str):
    """A training option's field (default, help, choices): the Train form's defaults and choices come from the
    same config dataclasses as the CLI's flags (transmrsr.options)."""
    return next(f for f in dataclasses.fields(cls) if f.name == name)


TRAIN_CANVAS = ["preset", "32", "64", "128", "256"]
TRAIN_TICK_S = 2.0
#: one job at a time for the whole server (all browser sessions share it)
TRAIN_JOBS = JobManager()


def _train_int(value) -> int | None:
    """A gr.Number's value as an int; empty or 0 -> None (the CLI's default)."""
    if value is None or value == "":
        return None
    v = int(round(float(value)))
    return v or None


def train_spec(
    stage, data, out, gan, preset, canvas, batch, max_steps, scale, l1_only, epochs, log_every, samples, ablation=None
):
    """The job the form describes (validated by the manager when it starts)."""
    if stage == TRAIN_STAGES[1]:
        return CentroidSpec(gan=gan or "", num_samples=_train_int(samples) or 60000)
    common = dict(
        data=data or "",
        out=out or "",
        preset=preset,
        img_size=None if canvas in (None, "preset") else int(canvas),
        batch_size=_train_int(batch) or _option(SRTrainConfig, "batch_size").default,
        max_steps=_train_int(max_steps),
        log_every=_train_int(log_every) or _option(SRTrainConfig, "log_every").default,
    )
    if stage == TRAIN_STAGES[2]:
        return Stage2Spec(
            **common,
            gan=gan or "",
            scale=int(scale),
            perceptual=not l1_only,
            epochs=_train_int(epochs) or _option(SRTrainConfig, "epochs").default,
            ablation=None if ablation in (None, "", TRAIN_NO_ABLATION) else ablation,
        )
    return Stage1Spec(**common)


def _train_view(sig=None, force: bool = False):
    """-> status, progress, log tail, curves, signature; unchanged parts come back as gr.update()."""
    st = TRAIN_JOBS.status()
    records = TRAIN_JOBS.records()
    tail = TRAIN_JOBS.tail(40)
    new_sig = (st.label, st.step, len(records), len(tail), tail[-200:])
    if not force and sig is not None and list(sig) == list(new_sig):
        return gr.update(), gr.update(), gr.update(), gr.update(), sig
    if st.state == "idle":
        status = "No training job yet. Fill in the form and press **Start**."
    else:
        status = f"**{st.label}** · {st.stage} · `{st.folder}`"
        if st.message:
            status += f"\n\n`{st.message}`"
    progress = st.progress_text() or ("waiting for the first logged step…" if st.running else "")
    curves = gr.update()
    if force or sig is None or sig[2] != len(records):
        curves = loss_figure(records, title=st.stage) if records else None
    return status, progress, tail, curves, new_sig


def on_train_start(*form):
    try:
        TRAIN_JOBS.start(train_spec(*form))
    except JobError as exc:
        raise gr.Error(str(exc)) from None
    return _train_view(force=True)


def on_train_stop():
    try:
        TRAIN_JOBS.stop(wait=False)
    except JobError as exc:
        gr.Warning(str(exc))
    return _train_view(force=True)


def on_train_resume(*form):
    try:
        TRAIN_JOBS.resume(train_spec(*form))
    except JobError as exc:
        raise gr.Error(str(exc)) from None
    return _train_view(force=True)


def on_train_tick(sig):
    return _train_view(sig)


def _train_folder(stage, out, gan) -> str:
    folder = (gan if stage == TRAIN_STAGES[1] else out) or ""
    if not folder.strip():
        raise gr.Error("Enter the run's output folder first.")
    return str(Path(folder.strip()).expanduser().resolve())


def on_train_load(stage, out, gan):
    """Put the trained stage-2 model's folder into the Super-resolve tab's Model box."""
    folder = _train_folder(stage, out, gan)
    kind = model_kind(folder)
    if kind is None:
        raise gr.Error(f"{folder}: no weights yet (config.json + model.safetensors); train first.")
    if kind != "TransMRSR":
        raise gr.Error(f"{folder}: holds a stage-1 {kind}, not a super-resolution model; train stage 2 from it first.")
    MODELS.forget(folder)  # retrained weights: load them afresh
    gr.Info(f"Model set to {folder} in the Super-resolve tab.")
    return folder, f"Super-resolve now uses `{folder}`."


def on_train_push(stage, out, gan, repo_id, token):
    try:
        url = push_folder_to_hub(_train_folder(stage, out, gan), repo_id, token=token or None)
    except JobError as exc:
        return f"**Push failed:** {exc}"
    return f"Pushed to [{repo_id}]({url})" if str(url).startswith("http") else f"Pushed to {repo_id}: {url}"


def on_train_stage(stage):
    """Show the fields the chosen stage uses."""
    centroids, stage2 = stage == TRAIN_STAGES[1], stage == TRAIN_STAGES[2]
    train = not centroids
    return (
        gr.update(visible=train),
        gr.update(visible=train),
        gr.update(visible=not stage == TRAIN_STAGES[0]),
        gr.update(visible=train),
        gr.update(visible=train),
        gr.update(visible=train),
        gr.update(visible=train),
        gr.update(visible=stage2),
        gr.update(visible=stage2),
        gr.update(visible=stage2),
        gr.update(visible=centroids),
        gr.update(visible=stage2),
    )


def build_train_tab(model_spec: gr.Textbox) -> None:
    """Background training jobs (only built when training is enabled): one at a time, run by
    the package's JobManager as ``python -m transmrsr ...`` subprocesses."""
    atexit.register(TRAIN_JOBS.shutdown)
    gr.Markdown(
        "Runs the `transmrsr` training commands on this server, one job at a time. Paths are folders on the "
        "server. **Stop** saves the run's state; **Resume** continues it exactly."
    )
    with gr.Row():
        with gr.Column(scale=1, min_width=320):
            stage = gr.Radio(TRAIN_STAGES, value=TRAIN_STAGES[0], label="Stage", elem_id="train-stage")
            data = gr.Textbox(
                label="Data folder", placeholder="folder of HR .nii / .nii.gz volumes", elem_id="train-data"
            )
            out = gr.Textbox(
                label="Output folder", placeholder="e.g. runs/gan (weights, log.jsonl, job.log)", elem_id="train-out"
            )
            gan = gr.Textbox(
                label="Stage-1 folder",
                placeholder="the stage-1 output folder",
                info="stage 2 starts from its generator; the centroid fit writes into it",
                visible=False,
                elem_id="train-gan",
            )
            preset_opt = _option(SRTrainConfig, "preset")
            preset = gr.Radio(
                list(preset_opt.metadata["choices"]), value=preset_opt.default, label="Preset", elem_id="train-preset"
            )
            canvas = gr.Radio(TRAIN_CANVAS, value="preset", label="Canvas size (px)", elem_id="train-canvas")
            with gr.Row():
                batch = gr.Number(
                    _option(SRTrainConfig, "batch_size").default,
                    precision=0,
                    minimum=1,
                    label="Batch size",
                    elem_id="train-batch",
                )
                max_steps = gr.Number(
                    _option(GANTrainConfig, "max_steps").default,
                    precision=0,
                    minimum=0,
                    label="Max steps",
                    info="stage 2: 0 = run the epochs",
                    elem_id="train-steps",
                )
            scale = gr.Radio([4, 8], value=4, label="Scale", visible=False, elem_id="train-scale")
            l1_only = gr.Checkbox(False, label="L1 only (no VGG)", visible=False, elem_id="train-l1")
            with gr.Accordion("More options", open=False):
                epochs = gr.Number(
                    _option(SRTrainConfig, "epochs").default,
                    precision=0,
                    minimum=1,
                    label="Epochs (stage 2)",
                    visible=False,
                    elem_id="train-epochs",
                )
                log_every = gr.Number(
                    _option(SRTrainConfig, "log_every").default,
                    precision=0,
                    minimum=1,
                    label="Log every (steps)",
                    elem_id="train-log-every",
                )
                ablation = gr.Dropdown(
                    [TRAIN_NO_ABLATION, *Stage2Spec.ABLATIONS],
                    value=TRAIN_NO_ABLATION,
                    label="Ablation (stage 2)",
                    info=_option(SRTrainConfig, "ablation").metadata["help"],
                    visible=False,
                    elem_id="train-ablation",
                )
                samples = gr.Number(
                    60000,
                    precision=0,
                    minimum=1,
                    label="Latents sampled for the centroid fit",
                    visible=False,
                    elem_id="train-samples",
                )
            with gr.Row():
                start = gr.Button("Start", variant="primary", min_width=80, elem_id="train-start")
                stop = gr.Button("Stop", variant="stop", min_width=80, elem_id="train-stop")
                resume = gr.Button("Resume", min_width=80, elem_id="train-resume")
        with gr.Column(scale=2):
            status = gr.Markdown("No training job yet.", elem_id="train-status")
            progress = gr.Markdown(elem_id="train-progress")
            curves = gr.Plot(label="Loss curves", elem_id="train-curves")
            log = gr.Textbox(
                label="Log (last lines)",
                lines=12,
                max_lines=12,
                interactive=False,
                autoscroll=True,
                elem_id="train-log",
            )
            with gr.Row():
                load = gr.Button("Load in Super-resolve", elem_id="train-load")
            with gr.Accordion("Push to the Hugging Face Hub", open=False):
                repo = gr.Textbox(label="Repo id", placeholder="owner/name", elem_id="train-repo")
                token = gr.Textbox(
                    label="Token",
                    type="password",
                    placeholder="a write token (empty: the saved login)",
                    elem_id="train-token",
                )
                push = gr.Button("Push to Hub", elem_id="train-push")
            result = gr.Markdown(elem_id="train-result")
    sig = gr.State(None)
    form = [
        stage,
        data,
        out,
        gan,
        preset,
        canvas,
        batch,
        max_steps,
        scale,
        l1_only,
        epochs,
        log_every,
        samples,
        ablation,
    ]
    view = [status, progress, log, curves, sig]
    stage.change(
        on_train_stage,
        stage,
        [data, out, gan, preset, canvas, batch, max_steps, scale, l1_only, epochs, samples, ablation],
    )
    start.click(on_train_start, form, view, concurrency_limit=None)
    stop.click(on_train_stop, None, view, concurrency_limit=None)
    resume.click(on_train_resume, form, view, concurrency_limit=None)
    timer = gr.Timer(TRAIN_TICK_S)
    timer.tick(on_train_tick, sig, view, show_progress="hidden", concurrency_limit=None)
    load.click(on_train_load, [stage, out, gan], [model_spec, result])
    push.click(on_train_push, [stage, out, gan, repo, token], result)


# ---------------------------------------------------------------------------------------- About tab
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
    return model_card_of(MODELS.loaded_entry(spec, int(scale)))


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

#: Page layout: Run and the results fit a 1280×800 window; the LR ↔ SR slider's two layers cover each other.
CSS = """
#compare .content img { position: absolute !important; top: 0 !important; left: 0 !important; width: 100% !important;
  height: 100% !important; object-fit: contain !important; }
"""


def _busy():
    return gr.update(interactive=False, value="Running…")


def _idle():
    return gr.update(interactive=True, value="Run")


def build_app() -> gr.Blocks:
    # masks in examples/ are for `transmrsr evaluate --mask`, not volumes to super-resolve
    examples = sorted(str(p) for p in EXAMPLES.glob("*.nii*") if "mask" not in p.name) if EXAMPLES.is_dir() else []
    ttl = max(int(SESSION_TTL), 1)
    with gr.Blocks(title="TransMRSR", delete_cache=(max(min(ttl // 2, 600), 1), ttl)) as demo:
        case_state = gr.State(None)  # an unguessable reference to the session's case (the case stays on the server)
        gr.Markdown("# TransMRSR — thick-slice brain MRI → isotropic")
        with gr.Tab("Super-resolve"):
            with gr.Row():
                with gr.Column(scale=1, min_width=280):
                    volume = gr.File(
                        label="Volume (.nii / .nii.gz, or a DICOM series as .zip)",
                        file_types=UPLOAD_TYPES,
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
                        value=MODELS.box_value(),
                        max_lines=1,
                        max_length=200,
                        info=(
                            "'bundled' (the weights for the upload's factor)"
                            + (
                                " or an allowed Hub repo id: " + ", ".join(MODELS.policy.allowed)
                                if MODELS.policy.public and MODELS.policy.allowed
                                else ""
                                if MODELS.policy.public
                                else ", a weights folder, or a Hugging Face repo id"
                            )
                        ),
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
                        plane = gr.Radio(
                            ["axial", "coronal", "sagittal"], value="coronal", label="Plane", elem_id="plane"
                        )
                        index = gr.Slider(0, 1, value=0, step=1, label="Slice", elem_id="slice")
                    note = gr.Markdown(elem_id="slice-note")
                    no_ref = gr.Markdown(NO_REFERENCE, visible=False, elem_id="no-reference")
                    viewer = VolumeViewer(elem_id="viewer")
                    with gr.Accordion("LR ↔ SR slider (the compare plane's slice)", open=False):
                        compare = gr.ImageSlider(label="LR ↔ SR", elem_id="compare", height=420, format="png")
                    with gr.Accordion("φ sweep", open=False):
                        sweep = gr.Button("Sweep φ on this slice", elem_id="sweep")
                        gallery = gr.Gallery(label="φ sweep", columns=5, format="png", elem_id="sweep-gallery")
        with gr.Tab("Annotate"):
            build_annotate_tab(case_state, model_spec)
        with gr.Tab("Train", visible=TRAINING_ENABLED):
            if TRAINING_ENABLED:
                build_train_tab(model_spec)
            else:
                gr.Markdown("Training is off. Start the app with `--enable-training` to launch training jobs here.")
        with gr.Tab("About"):
            gr.Markdown(ABOUT)
            card = gr.Markdown(elem_id="model-card")

        view_state = gr.State(None)  # per session: the crosshair, window presets, the slices the browser holds
        view_out = [viewer, view_state, index, compare, note]
        run_out = [
            case_state,
            index,
            viewer,
            view_state,
            compare,
            note,
            info,
            metrics,
            download,
            warning,
            no_ref,
            trust_md,
            trust_files,
            card,
        ]
        running = run.click(_busy, None, run, queue=False, api_visibility="private").then(
            on_run,
            [volume, model_spec, scale, phi, fusion, plane, adapt, trust],
            run_out,
            concurrency_limit=1,
            show_progress_on=[viewer],
            api_visibility="private",
        )
        running.success(_idle, None, run, queue=False, api_visibility="private")
        running.failure(_idle, None, run, queue=False, api_visibility="private")  # .then alone skips failures
        volume.change(
            on_new_upload, None, [*run_out[:-1], gallery], queue=False, show_progress="hidden", api_visibility="private"
        )
        # always_last: while the crosshair is dragged or a slider moved only the latest position is drawn
        viewer.cursor(
            on_cursor,
            [case_state, view_state, model_spec, plane, phi],
            view_out,
            trigger_mode="always_last",
            show_progress="hidden",
            api_visibility="private",
        )
        index.change(
            on_index,
            [case_state, view_state, model_spec, plane, index, phi],
            view_out,
            trigger_mode="always_last",
            show_progress="hidden",
            api_visibility="private",
        )
        phi.change(
            on_phi,
            [case_state, view_state, model_spec, plane, phi],
            view_out,
            trigger_mode="always_last",
            show_progress_on=[viewer],
            api_visibility="private",
        )
        plane.change(
            on_plane,
            [case_state, view_state, model_spec, plane, phi],
            view_out,
            show_progress="hidden",
            api_visibility="private",
        )
        sweep.click(on_sweep, [case_state, model_spec, plane, index], gallery, api_visibility="private")
        for trigger in (model_spec.change, scale.change):
            trigger(model_card_markdown, [model_spec, scale], card, api_visibility="private")
        demo.unload(on_session_end)
        # the named API endpoint for scripts (gradio_client): hidden components, same package calls
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
    return demo


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="TransMRSR Gradio app")
    ap.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    ap.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    ap.add_argument("--share", action="store_true")
    ap.add_argument(
        "--annotations", help="folder of the reader-study database and label NIfTIs (default: ./annotations)"
    )
    ap.add_argument(
        "--enable-training",
        action="store_true",
        help="show the Train tab (runs jobs and reads server paths: never on a public Space; refused with --public)",
    )
    ap.add_argument(
        "--public",
        action="store_true",
        help="public deployment (env TRANSMRSR_PUBLIC=1): only bundled and allow-listed models, "
        "study code for readers, operator code for exports",
    )
    ap.add_argument(
        "--allow-model",
        action="append",
        default=[],
        metavar="OWNER/NAME",
        help="a Hub repo id the Model box may load on a public deployment (repeat; env "
        "TRANSMRSR_ALLOWED_MODELS, comma-separated)",
    )
    ap.add_argument(
        "--model-cache",
        type=int,
        help="models kept loaded at once, least recently used dropped (env TRANSMRSR_MODEL_CACHE, default 2)",
    )
    ap.add_argument(
        "--session-ttl",
        type=float,
        help="seconds a session's outputs and uploads live without use (env TRANSMRSR_SESSION_TTL, default 3600)",
    )
    ap.add_argument(
        "--study-operator",
        action="store_true",
        help="local server: the pooled reader-study summary and exports without an operator code",
    )
    return ap.parse_args(argv)


def configure(args: argparse.Namespace) -> None:
    """Apply the command line over the environment's settings."""
    global ANNOTATIONS_DIR, TRAINING_ENABLED, PUBLIC, SESSION_TTL, STUDY_OPERATOR, MODELS, SESSIONS
    if args.annotations:
        ANNOTATIONS_DIR = Path(args.annotations)
    PUBLIC = PUBLIC or args.public
    if PUBLIC and (TRAINING_ENABLED or args.enable_training):
        raise SystemExit("app.py: --enable-training is refused on a public deployment (it reads server paths)")
    TRAINING_ENABLED = TRAINING_ENABLED or args.enable_training
    STUDY_OPERATOR = STUDY_OPERATOR or args.study_operator
    if args.session_ttl:
        SESSION_TTL = float(args.session_ttl)
    if args.model_cache is not None and args.model_cache < 1:
        raise SystemExit("app.py: --model-cache must be at least 1")
    MODELS = ModelRegistry(model_policy(tuple(args.allow_model), args.model_cache))
    SESSIONS = SessionRegistry(WORK_DIR / "sessions", ttl_s=SESSION_TTL)


def main() -> None:
    args = parse_args()
    configure(args)
    SESSIONS.start_sweeper()
    demo = build_app()
    demo.queue(default_concurrency_limit=2, max_size=16).launch(
        server_name=args.host,
        server_port=args.port,
        share=args.share,
        max_file_size=MAX_UPLOAD,
        allowed_paths=[str(SESSIONS.root)],
        css=CSS,
    )


if __name__ == "__main__":
    main()
