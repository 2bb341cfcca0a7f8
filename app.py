"""TransMRSR — Gradio app: super-resolve a brain MRI volume and look at it.

Run locally with ``python app.py`` (add ``--port``, ``--share``); on a Hugging Face Space this
file is the entry point. All model and image work is done by the ``transmrsr`` package; this
file only builds the interface and wires events to it.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import gradio as gr

from transmrsr import PretrainedLoadError, TransMRSR
from transmrsr.data.io import VolumeError
from transmrsr.inference import DEFAULT_FUSION
from transmrsr.studio import Case, panels, phi_sweep, run_case

REPO = Path(__file__).resolve().parent
CHECKPOINTS = REPO / "checkpoints"
EXAMPLES = REPO / "examples"
MAX_UPLOAD = os.environ.get("TRANSMRSR_MAX_UPLOAD", "300mb")
WORK_DIR = Path(os.environ.get("TRANSMRSR_WORK_DIR", tempfile.mkdtemp(prefix="transmrsr-app-")))
#: Reader-study store (SQLite + label NIfTIs); persistent, unlike WORK_DIR. Set by --annotations.
ANNOTATIONS_DIR = Path(os.environ.get("TRANSMRSR_ANNOTATIONS", REPO / "annotations"))
#: The Train tab runs jobs and reads server paths: off unless --enable-training or this variable is 1.
TRAINING_ENABLED = os.environ.get("TRANSMRSR_ENABLE_TRAINING", "") == "1"

try:  # GPU on a Hugging Face ZeroGPU Space; plain CUDA or CPU elsewhere
    import spaces  # type: ignore

    gpu = spaces.GPU
except ImportError:  # pragma: no cover - the usual case off Spaces

    def gpu(fn):
        return fn


_MODELS: dict[str, TransMRSR] = {}


def bundled_model(scale: int) -> Path:
    return CHECKPOINTS / f"transmrsr-small-t1-x{scale}"


def get_model(spec: str, scale: int) -> TransMRSR:
    """Load (once) the model named by ``spec``: "bundled", a local folder or a Hub repo id."""
    spec = (spec or "").strip() or os.environ.get("TRANSMRSR_MODEL", "") or "bundled"
    key = f"{spec}@x{scale}" if spec == "bundled" else spec
    if key not in _MODELS:
        source = bundled_model(scale) if spec == "bundled" else spec
        if spec == "bundled" and not (Path(source) / "model.safetensors").is_file():
            raise gr.Error(
                f"No bundled weights for ×{scale} in this installation yet; enter a weights folder or a Hugging Face "
                "repo id in 'Model'."
            )
        try:
            _MODELS[key] = TransMRSR.from_pretrained(source)
        except PretrainedLoadError as exc:
            raise gr.Error(str(exc)) from None
    return _MODELS[key]


def _file_path(f) -> str | None:
    if f is None:
        return None
    return f if isinstance(f, str) else getattr(f, "name", None) or getattr(f, "path", None)


@gpu
def _run(volume_file, model_spec, scale, phi, fusion, progress=gr.Progress()) -> Case:
    path = _file_path(volume_file)
    if not path:
        raise gr.Error("Upload a .nii or .nii.gz volume first (or pick an example).")
    model = get_model(model_spec, int(scale))
    progress(0, desc="super-resolving")

    def report(done: int, total: int) -> None:
        progress(done / max(total, 1), desc=f"slice {done}/{total}")

    try:
        return run_case(path, model, WORK_DIR, scale=int(scale), phi=float(phi), fusion=bool(fusion), progress=report)
    except VolumeError as exc:
        raise gr.Error(str(exc)) from None


def _view(case: Case | None, model_spec, plane, index, phi):
    if case is None:
        return None, None, None, None, None, ""
    model = get_model(model_spec, case.factor)
    p = panels(case, model, plane, int(index), float(phi))
    note = f"slice {int(index)} of {case.n_slices(plane)} ({plane})"
    if p["psnr_sr"] is not None:
        note += f" · slice PSNR: SR {p['psnr_sr']} dB, cubic {p['psnr_lr']} dB"
    if abs(float(phi) - case.phi) > 1e-6:
        note += (f" · φ {float(phi):.2f} recomputed for this slice"
                 + (" (this plane's network alone; Run again for the fused volume)" if case.fusion else "")
                 ) if plane_axis(plane) == case.slice_axis else (
            f" · this plane shows the volume at φ {case.phi:.2f} (φ is recomputed live on the plane the network runs on)")
    return p["lr"], p["sr"], p["hr"], p["error"], (p["lr"], p["sr"]), note


def plane_axis(plane: str) -> int:
    from transmrsr.viewer import PLANES

    return PLANES[plane]


def on_run(volume_file, model_spec, scale, phi, fusion, plane, progress=gr.Progress()):
    case = _run(volume_file, model_spec, scale, phi, fusion, progress)
    n = case.n_slices(plane)
    idx = n // 2
    lr, sr, hr, err, pair, note = _view(case, model_spec, plane, idx, phi)
    info = (
        f"**{case.name}** · thick axis {case.axis}, ×{case.factor}"
        + (" (simulated from the isotropic upload, which is kept as reference)" if case.simulated else " (from the header)")
        + f" · output {case.shape} voxels of {', '.join(f'{z:.2f}' for z in case.zooms)} mm"
    )
    rows = [[m["method"], m["PSNR (dB)"], m["SSIM"], m["PSNR mask (dB)"], m["SSIM mask"]] for m in case.metrics]
    return (
        case, gr.update(maximum=n - 1, value=idx), lr, sr, hr, err, pair, note, info,
        gr.update(value=rows), str(case.sr_path),
    )


def on_plane(case, model_spec, plane, phi):
    if case is None:
        return gr.update(), None, None, None, None, None, ""
    n = case.n_slices(plane)
    return (gr.update(maximum=n - 1, value=n // 2), *_view(case, model_spec, plane, n // 2, phi))


def on_sweep(case, model_spec, plane, index):
    if case is None:
        raise gr.Error("Run a volume first.")
    try:
        return phi_sweep(case, get_model(model_spec, case.factor), plane, int(index))
    except ValueError as exc:
        raise gr.Error(str(exc)) from None


@gpu
def super_resolve_api(volume_file, scale: int = 4, phi: float = 0.9):
    """Named API endpoint ``/super_resolve``: (volume_file, scale, phi) -> (SR NIfTI, metrics)."""
    case = _run(volume_file, "", int(scale), float(phi), DEFAULT_FUSION)
    return str(case.sr_path), {
        "axis": case.axis, "scale": case.factor, "fusion": case.fusion, "shape": list(case.shape), "simulated_from_hr": case.simulated,
        "metrics": case.metrics,
    }


# ---------------------------------------------------------------------------------------- Annotate tab
import random  # noqa: E402
import shutil  # noqa: E402
from datetime import datetime  # noqa: E402

import numpy as np  # noqa: E402

from transmrsr.annotations import AnnotationStore, Reading  # noqa: E402
from transmrsr.studio import painted_region, reader_image, reader_items  # noqa: E402
from transmrsr.viewer import PLANES  # noqa: E402

ANN_COMPARE = ["cubic interpolation", "TransMRSR at another φ"]
ANN_RATINGS = [("1 · unusable", 1), ("2", 2), ("3", 3), ("4", 4), ("5 · excellent", 5)]
ANN_SUMMARY_HEADERS = ["method", "n", "mean rating", "hallucination rate", "artifact rate"]
ANN_NO_CASE = "Run a volume in the Super-resolve tab first: there is nothing to annotate yet."


def annotation_store(create: bool = True) -> AnnotationStore | None:
    """The reader-study store under ANNOTATIONS_DIR (None when ``create`` is False and there is none yet)."""
    db = ANNOTATIONS_DIR / "annotations.sqlite"
    if not create and not db.is_file():
        return None
    return AnnotationStore(db)


def ann_summary_rows() -> list[list]:
    store = annotation_store(create=False)
    return [[r["method"], r["n"], r["mean_rating"], r["hallucination_rate"], r["artifact_rate"]]
            for r in (store.summary() if store else [])]


def _editor_value(image):
    return {"background": image, "layers": [], "composite": None} if image is not None else None


def _ann_view(case: Case, model_spec, plane, index, compare, other_phi, seed) -> dict:
    """The blinded items of one slice; kept in server-side state, never sent to the browser."""
    compare_phi = float(other_phi) if compare == ANN_COMPARE[1] else None
    items = reader_items(case, plane, int(index), compare_phi, int(seed or 0))  # ValueError: not on this plane
    model = get_model(model_spec, case.factor) if compare_phi is not None else None
    images = [reader_image(case, model, plane, int(index), it["phi"], one_plane=it["one_plane"]) for it in items]
    return {"case": case.name, "sr_path": str(case.sr_path), "plane": plane, "slice": int(index), "items": items,
            "images": images, "saved": {}}


def ann_show(case, model_spec, plane, index, compare, other_phi, seed):
    """-> view state, Image A, Image B, picked image, editor, status."""
    if case is None:
        return None, None, None, gr.update(), None, ANN_NO_CASE
    try:
        view = _ann_view(case, model_spec, plane, index, compare, other_phi, seed)
    except ValueError as exc:  # a choice that cannot be shown: say so, show nothing (Save then refuses)
        gr.Warning(str(exc))
        return None, None, None, gr.update(), None, f"Nothing to rate here: {exc}."
    labels = " and ".join(it["label"] for it in view["items"])
    status = (f"{plane} slice {int(index)} of {case.n_slices(plane)}: {labels} in random order. "
              "Pick one, rate it, paint what you flag, save; then the other.")
    return (view, view["images"][0], view["images"][1], gr.update(value=view["items"][0]["label"]),
            _editor_value(view["images"][0]), status)


def ann_on_case(case, model_spec, compare, other_phi, seed):
    """A new run: show its middle slice on the plane the network works on."""
    if case is None:
        return gr.update(), gr.update(), *ann_show(None, model_spec, "coronal", 0, compare, other_phi, seed)
    plane = next(p for p, a in PLANES.items() if a == case.slice_axis)
    n = case.n_slices(plane)
    return (gr.update(value=plane), gr.update(maximum=n - 1, value=n // 2),
            *ann_show(case, model_spec, plane, n // 2, compare, other_phi, seed))


def ann_on_plane(case, model_spec, plane, compare, other_phi, seed):
    if case is None:
        return gr.update(), *ann_show(None, model_spec, plane, 0, compare, other_phi, seed)
    n = case.n_slices(plane)
    return gr.update(maximum=n - 1, value=n // 2), *ann_show(case, model_spec, plane, n // 2, compare, other_phi, seed)


def ann_on_phi(case, model_spec, plane, index, compare, other_phi, seed):
    if compare != ANN_COMPARE[1]:  # the other φ is not in use
        return (gr.update(),) * 6
    return ann_show(case, model_spec, plane, index, compare, other_phi, seed)


def ann_pick(view, which):
    if not view:
        return None
    labels = [it["label"] for it in view["items"]]
    return _editor_value(view["images"][labels.index(which)] if which in labels else None)


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


def ann_check(case, view, reader, which, rating) -> None:
    """What Save needs, as clear messages (its own step, without outputs: no error badges on the form)."""
    if not (reader or "").strip():
        raise gr.Error("Enter your name in 'Reader' before saving.")
    if case is None:
        raise gr.Error(ANN_NO_CASE)
    if rating in (None, ""):
        raise gr.Error("Choose a rating from 1 to 5 before saving.")
    if not view or view["sr_path"] != str(case.sr_path):
        raise gr.Error("No blinded images of the current run are shown: choose a plane and slice first.")
    labels = [it["label"] for it in view["items"]]
    if which not in labels:
        raise gr.Error(f"Pick which image you are rating ({' or '.join(labels)}).")


def ann_save(case, view, reader, which, rating, hallucination, artifact, note, editor):
    """Store the reading of the picked image (+ its painted region in the case's label NIfTI)."""
    ann_check(case, view, reader, which, rating)
    labels = [it["label"] for it in view["items"]]
    item = view["items"][labels.index(which)]
    mask = _painted_mask(editor)
    region = painted_region(case, view["plane"], mask) if mask is not None else None
    reading = Reading(reader=reader.strip(), case_name=case.name, plane=view["plane"], slice=view["slice"],
                      method=item["method"], rating=int(rating), phi=item["phi"], hallucination=bool(hallucination),
                      artifact=bool(artifact), note=(note or "").strip())
    try:
        ann_id = annotation_store().add(reading, region, case.shape, case.affine, ANNOTATIONS_DIR / "labels")
    except ValueError as exc:
        raise gr.Error(str(exc)) from None
    view = {**view, "saved": {**view["saved"], which: ann_id}}
    voxels = int(region.sum()) if region is not None else 0
    status = f"Saved reading #{ann_id} of {which}" + (f" with a region of {voxels} voxels." if voxels else ".")
    todo = [label for label in labels if label not in view["saved"]]
    if todo:
        status += f" Rate {' and '.join(todo)} too: the methods are revealed once every image of this slice is saved."
        nxt = todo[0]
    else:
        status += " Unblinded: " + ", ".join(f"{it['label']} was {it['method']}" for it in view["items"]) + "."
        nxt = which
    return (view, status, ann_summary_rows(), gr.update(value=nxt), ann_pick(view, nxt), None, False, False, "")


def _export_dir() -> Path:
    out = WORK_DIR / "exports" / datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    out.mkdir(parents=True, exist_ok=True)
    return out


def ann_export_csv():
    store = annotation_store(create=False)
    if store is None or not store.rows():
        raise gr.Error("No readings saved yet.")
    return str(store.export_csv(_export_dir() / "readings.csv"))


def ann_export_labels():
    store = annotation_store(create=False)
    files = store.label_files(ANNOTATIONS_DIR / "labels") if store else []
    if not files:
        raise gr.Error("No painted regions saved yet.")
    out = _export_dir()  # copies under WORK_DIR, the folder the server may hand out
    return [str(shutil.copy2(f, out / f.name)) for f in files]


def build_annotate_tab(case_state: gr.State, model_spec: gr.Textbox) -> None:
    """Reader study on the current case: blinded images of one slice, rating, flags, painted region, note."""
    seed = gr.State(lambda: random.randrange(2**31))  # one blinding seed per browser session
    view = gr.State(None)
    gr.Markdown(
        "Blinded reader study on the volume run in the Super-resolve tab: the SR and a comparison (cubic "
        "interpolation or TransMRSR at another φ) are shown as **Image A / Image B** in random order. Rate each, "
        "flag and paint what looks wrong, save. Readings go to a SQLite file; painted regions to a label NIfTI "
        "aligned with the SR volume."
    )
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            reader = gr.Textbox(label="Reader", placeholder="your name or initials", elem_id="ann-reader")
            compare = gr.Radio(ANN_COMPARE, value=ANN_COMPARE[0], label="Compare the SR against", elem_id="ann-compare")
            other_phi = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="Other φ (when comparing φ)", elem_id="ann-phi")
            plane = gr.Radio(list(PLANES)[::-1], value="coronal", label="Plane", elem_id="ann-plane")
            index = gr.Slider(0, 1, value=0, step=1, label="Slice", elem_id="ann-slice")
            which = gr.Radio(["Image A", "Image B"], value="Image A", label="Image you rate", elem_id="ann-image")
            rating = gr.Radio(ANN_RATINGS, value=None, label="Quality (1–5)", elem_id="ann-rating")
            with gr.Row():
                hallucination = gr.Checkbox(False, label="Hallucination", elem_id="ann-hallucination")
                artifact = gr.Checkbox(False, label="Artifact", elem_id="ann-artifact")
            note = gr.Textbox(label="Note", lines=2, elem_id="ann-note")
            save = gr.Button("Save reading", variant="primary", elem_id="ann-save")
            status = gr.Markdown(ANN_NO_CASE, elem_id="ann-status")
        with gr.Column(scale=3):
            with gr.Row():
                img_a = gr.Image(label="Image A", interactive=False, height=300, elem_id="ann-image-a")
                img_b = gr.Image(label="Image B", interactive=False, height=300, elem_id="ann-image-b")
            editor = gr.ImageEditor(
                label="Paint the region you flag (brush) on the image you rate", type="numpy", image_mode="RGBA",
                sources=[], transforms=[], layers=False, format="png", interactive=True,
                brush=gr.Brush(colors=["#ff2d2d"], default_color="#ff2d2d", color_mode="fixed", default_size=6),
                eraser=gr.Eraser(default_size=10), elem_id="ann-editor",
            )
    with gr.Accordion("Results and export", open=True):
        summary = gr.Dataframe(value=ann_summary_rows, headers=ANN_SUMMARY_HEADERS, label="Per method",
                               interactive=False, elem_id="ann-summary")
        with gr.Row():
            csv_btn = gr.Button("Export readings (CSV)", elem_id="ann-export-csv")
            labels_btn = gr.Button("Export label NIfTIs", elem_id="ann-export-labels")
        with gr.Row():
            csv_file = gr.File(label="Readings (CSV)", elem_id="ann-csv")
            label_files = gr.File(label="Label NIfTIs (aligned with the SR)", file_count="multiple", elem_id="ann-labels")

    shown = [view, img_a, img_b, which, editor, status]
    case_state.change(ann_on_case, [case_state, model_spec, compare, other_phi, seed], [plane, index, *shown])
    plane.input(ann_on_plane, [case_state, model_spec, plane, compare, other_phi, seed], [index, *shown])
    shown_in = [case_state, model_spec, plane, index, compare, other_phi, seed]
    gr.on([index.input, compare.input], ann_show, shown_in, shown, trigger_mode="always_last")
    other_phi.input(ann_on_phi, shown_in, shown, trigger_mode="always_last")
    which.input(ann_pick, [view, which], editor)
    save.click(ann_check, [case_state, view, reader, which, rating], None).success(
        ann_save, [case_state, view, reader, which, rating, hallucination, artifact, note, editor],
        [view, status, summary, which, editor, rating, hallucination, artifact, note],
        concurrency_limit=1,  # one writer at a time: a label NIfTI is read, painted and rewritten
    )
    csv_btn.click(ann_export_csv, None, csv_file)
    labels_btn.click(ann_export_labels, None, label_files)


# ---------------------------------------------------------------------------------------- Train tab
import atexit  # noqa: E402

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


def train_spec(stage, data, out, gan, preset, canvas, batch, max_steps, scale, l1_only, epochs, log_every, samples):
    """The job the form describes (validated by the manager when it starts)."""
    if stage == TRAIN_STAGES[1]:
        return CentroidSpec(gan=gan or "", num_samples=_train_int(samples) or 60000)
    common = dict(
        data=data or "", out=out or "", preset=preset, img_size=None if canvas in (None, "preset") else int(canvas),
        batch_size=_train_int(batch) or 6, max_steps=_train_int(max_steps), log_every=_train_int(log_every) or 10,
    )
    if stage == TRAIN_STAGES[2]:
        return Stage2Spec(**common, gan=gan or "", scale=int(scale), perceptual=not l1_only, epochs=_train_int(epochs) or 100)
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
    for key in [k for k in _MODELS if k == folder or k.rstrip("/") == folder]:
        del _MODELS[key]  # retrained weights: load them afresh
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
        gr.update(visible=train), gr.update(visible=train), gr.update(visible=not stage == TRAIN_STAGES[0]),
        gr.update(visible=train), gr.update(visible=train), gr.update(visible=train), gr.update(visible=train),
        gr.update(visible=stage2), gr.update(visible=stage2), gr.update(visible=stage2), gr.update(visible=centroids),
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
            data = gr.Textbox(label="Data folder", placeholder="folder of HR .nii / .nii.gz volumes", elem_id="train-data")
            out = gr.Textbox(label="Output folder", placeholder="e.g. runs/gan (weights, log.jsonl, job.log)",
                             elem_id="train-out")
            gan = gr.Textbox(label="Stage-1 folder", placeholder="the stage-1 output folder",
                             info="stage 2 starts from its generator; the centroid fit writes into it",
                             visible=False, elem_id="train-gan")
            preset = gr.Radio(["tiny", "small", "paper"], value="small", label="Preset", elem_id="train-preset")
            canvas = gr.Radio(TRAIN_CANVAS, value="preset", label="Canvas size (px)", elem_id="train-canvas")
            with gr.Row():
                batch = gr.Number(6, precision=0, minimum=1, label="Batch size", elem_id="train-batch")
                max_steps = gr.Number(10000, precision=0, minimum=0, label="Max steps",
                                      info="stage 2: 0 = run the epochs", elem_id="train-steps")
            scale = gr.Radio([4, 8], value=4, label="Scale", visible=False, elem_id="train-scale")
            l1_only = gr.Checkbox(False, label="L1 only (no VGG)", visible=False, elem_id="train-l1")
            with gr.Accordion("More options", open=False):
                epochs = gr.Number(100, precision=0, minimum=1, label="Epochs (stage 2)", visible=False,
                                   elem_id="train-epochs")
                log_every = gr.Number(10, precision=0, minimum=1, label="Log every (steps)", elem_id="train-log-every")
                samples = gr.Number(60000, precision=0, minimum=1, label="Latents sampled for the centroid fit",
                                    visible=False, elem_id="train-samples")
            with gr.Row():
                start = gr.Button("Start", variant="primary", min_width=80, elem_id="train-start")
                stop = gr.Button("Stop", variant="stop", min_width=80, elem_id="train-stop")
                resume = gr.Button("Resume", min_width=80, elem_id="train-resume")
        with gr.Column(scale=2):
            status = gr.Markdown("No training job yet.", elem_id="train-status")
            progress = gr.Markdown(elem_id="train-progress")
            curves = gr.Plot(label="Loss curves", elem_id="train-curves")
            log = gr.Textbox(label="Log (last lines)", lines=12, max_lines=12, interactive=False, autoscroll=True,
                             elem_id="train-log")
            with gr.Row():
                load = gr.Button("Load in Super-resolve", elem_id="train-load")
            with gr.Accordion("Push to the Hugging Face Hub", open=False):
                repo = gr.Textbox(label="Repo id", placeholder="owner/name", elem_id="train-repo")
                token = gr.Textbox(label="Token", type="password", placeholder="a write token (empty: the saved login)",
                                   elem_id="train-token")
                push = gr.Button("Push to Hub", elem_id="train-push")
            result = gr.Markdown(elem_id="train-result")
    sig = gr.State(None)
    form = [stage, data, out, gan, preset, canvas, batch, max_steps, scale, l1_only, epochs, log_every, samples]
    view = [status, progress, log, curves, sig]
    stage.change(on_train_stage, stage, [data, out, gan, preset, canvas, batch, max_steps, scale, l1_only, epochs, samples])
    start.click(on_train_start, form, view, concurrency_limit=None)
    stop.click(on_train_stop, None, view, concurrency_limit=None)
    resume.click(on_train_resume, form, view, concurrency_limit=None)
    timer = gr.Timer(TRAIN_TICK_S)
    timer.tick(on_train_tick, sig, view, show_progress="hidden", concurrency_limit=None)
    load.click(on_train_load, [stage, out, gan], [model_spec, result])
    push.click(on_train_push, [stage, out, gan, repo, token], result)


# ---------------------------------------------------------------------------------------- About tab
def model_card_markdown(spec: str, scale) -> str:
    """The model card of the model the Super-resolve tab would use (bundled weights per scale)."""
    from transmrsr.hub import read_model_card

    spec = (spec or "").strip() or os.environ.get("TRANSMRSR_MODEL", "") or "bundled"
    source = bundled_model(int(scale)) if spec == "bundled" else spec
    text = read_model_card(source)
    title = f"bundled ×{int(scale)} weights" if spec == "bundled" else f"`{spec}`"
    if text is None:
        return f"### Model card: {title}\n\nNo model card found for {title}."
    return f"### Model card: {title}\n\n{text}"


ABOUT = """
### TransMRSR
Super-resolution of thick-slice brain MRI with a transformer encoder and a self-distilled StyleSwin generative prior
(Huang et al., *TransMRSR*, arXiv:2306.06669). The network takes 2-D slices that contain the thick axis: shallow
conv features → Swin encoder → one latent per decoder style input → truncation towards the **nearest** of 8 k-means
centroids (φ: 1 = none) → StyleSwin decoder modulated by the encoder features (CWSS) → reconstruction head, added to
the cubic interpolation. **φ** trades fidelity to the input (1) for the generator's prior (0).

Upload an isotropic scan and the app simulates a thick-slice acquisition along the axial voxel axis, so you can
compare against the original; upload a real thick-slice scan and its thick axis and factor come from the header.
The SR NIfTI keeps the input's affine, moved onto the thin grid, so it overlays the input in any viewer.
"""


def build_app() -> gr.Blocks:
    # masks in examples/ are for `transmrsr evaluate --mask`, not volumes to super-resolve
    examples = sorted(str(p) for p in EXAMPLES.glob("*.nii*") if "mask" not in p.name) if EXAMPLES.is_dir() else []
    with gr.Blocks(title="TransMRSR") as demo:
        case_state = gr.State(None)
        gr.Markdown("# TransMRSR — thick-slice brain MRI → isotropic")
        with gr.Tab("Super-resolve"):
            with gr.Row():
                with gr.Column(scale=1, min_width=280):
                    volume = gr.File(label="Volume (.nii / .nii.gz)", file_types=[".nii", ".gz"], elem_id="volume-upload")
                    if examples:
                        gr.Examples(
                            examples=examples, inputs=volume, label="Examples (the held-out test subject; 1 mm = HR)",
                            elem_id="volume-examples",
                        )
                    model_spec = gr.Textbox(
                        label="Model", value=os.environ.get("TRANSMRSR_MODEL", "bundled"),
                        info="'bundled', a weights folder, or a Hugging Face repo id", elem_id="model-spec",
                    )
                    scale = gr.Radio([4, 8], value=4, label="Scale (isotropic uploads)", elem_id="scale")
                    phi = gr.Slider(0.0, 1.0, value=0.9, step=0.05, label="φ (truncation; 1 = none)", elem_id="phi")
                    fusion = gr.Checkbox(
                        DEFAULT_FUSION, label="Orthogonal fusion (both planes that contain the thick axis)",
                        info="better (about +0.25-0.4 dB brain PSNR on the bundled weights), about twice the time", elem_id="fusion",
                    )
                    run = gr.Button("Run", variant="primary", elem_id="run")
                    info = gr.Markdown(elem_id="case-info")
                    metrics = gr.Dataframe(
                        headers=["method", "PSNR (dB)", "SSIM", "PSNR mask (dB)", "SSIM mask"], label="Against the HR",
                        interactive=False, elem_id="metrics",
                    )
                    download = gr.File(label="SR volume (NIfTI)", elem_id="download")
                with gr.Column(scale=3):
                    with gr.Row():
                        plane = gr.Radio(["axial", "coronal", "sagittal"], value="coronal", label="Plane", elem_id="plane")
                        index = gr.Slider(0, 1, value=0, step=1, label="Slice", elem_id="slice")
                    note = gr.Markdown(elem_id="slice-note")
                    with gr.Row():
                        lr_img = gr.Image(label="LR (cubic)", elem_id="panel-lr", buttons=["fullscreen"], height=300)
                        sr_img = gr.Image(label="SR", elem_id="panel-sr", buttons=["fullscreen"], height=300)
                        hr_img = gr.Image(label="HR", elem_id="panel-hr", buttons=["fullscreen"], height=300)
                        err_img = gr.Image(label="|SR − HR|", elem_id="panel-error", buttons=["fullscreen"], height=300)
                    compare = gr.ImageSlider(label="LR ↔ SR", elem_id="compare", height=420)
                    with gr.Accordion("φ sweep", open=False):
                        sweep = gr.Button("Sweep φ on this slice", elem_id="sweep")
                        gallery = gr.Gallery(label="φ sweep", columns=5, elem_id="sweep-gallery")
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

        view_out = [lr_img, sr_img, hr_img, err_img, compare, note]
        run.click(
            on_run, [volume, model_spec, scale, phi, fusion, plane],
            [case_state, index, *view_out, info, metrics, download], concurrency_limit=1,
        )
        # always_last: while a slider is dragged only the latest position is drawn
        index.change(_view, [case_state, model_spec, plane, index, phi], view_out, trigger_mode="always_last")
        phi.change(_view, [case_state, model_spec, plane, index, phi], view_out, trigger_mode="always_last")
        plane.change(on_plane, [case_state, model_spec, plane, phi], [index, *view_out])
        sweep.click(on_sweep, [case_state, model_spec, plane, index], gallery)
        for trigger in (demo.load, model_spec.change, scale.change):
            trigger(model_card_markdown, [model_spec, scale], card, api_visibility="private")
        # the named API endpoint for scripts (gradio_client): hidden components, same package calls
        with gr.Row(visible=False):
            api_file = gr.File()
            api_scale = gr.Number(value=4, precision=0)
            api_phi = gr.Number(value=0.9)
            api_out = gr.File()
            api_metrics = gr.JSON()
            api_button = gr.Button()
        api_button.click(
            super_resolve_api, [api_file, api_scale, api_phi], [api_out, api_metrics], api_name="super_resolve",
            concurrency_limit=1,
        )
    return demo


def main() -> None:
    ap = argparse.ArgumentParser(description="TransMRSR Gradio app")
    ap.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    ap.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    ap.add_argument("--share", action="store_true")
    ap.add_argument("--annotations", help="folder of the reader-study database and label NIfTIs (default: ./annotations)")
    ap.add_argument(
        "--enable-training", action="store_true",
        help="show the Train tab (runs jobs and reads server paths: never on a public Space)",
    )
    args = ap.parse_args()
    global ANNOTATIONS_DIR, TRAINING_ENABLED
    if args.annotations:
        ANNOTATIONS_DIR = Path(args.annotations)
    TRAINING_ENABLED = TRAINING_ENABLED or args.enable_training
    demo = build_app()
    demo.queue(default_concurrency_limit=2, max_size=16).launch(
        server_name=args.host, server_port=args.port, share=args.share, max_file_size=MAX_UPLOAD,
        allowed_paths=[str(WORK_DIR)],
    )


if __name__ == "__main__":
    main()
