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
from transmrsr.studio import Case, panels, phi_sweep, run_case

REPO = Path(__file__).resolve().parent
CHECKPOINTS = REPO / "checkpoints"
EXAMPLES = REPO / "examples"
MAX_UPLOAD = os.environ.get("TRANSMRSR_MAX_UPLOAD", "300mb")
WORK_DIR = Path(os.environ.get("TRANSMRSR_WORK_DIR", tempfile.mkdtemp(prefix="transmrsr-app-")))

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
        note += f" · φ {float(phi):.2f} recomputed for this slice" if plane_axis(plane) == case.slice_axis else (
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
    case = _run(volume_file, "", int(scale), float(phi), False)
    return str(case.sr_path), {
        "axis": case.axis, "scale": case.factor, "shape": list(case.shape), "simulated_from_hr": case.simulated,
        "metrics": case.metrics,
    }


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
    examples = sorted(str(p) for p in EXAMPLES.glob("*.nii*")) if EXAMPLES.is_dir() else []
    with gr.Blocks(title="TransMRSR") as demo:
        case_state = gr.State(None)
        gr.Markdown("# TransMRSR — thick-slice brain MRI → isotropic")
        with gr.Tab("Super-resolve"):
            with gr.Row():
                with gr.Column(scale=1, min_width=280):
                    volume = gr.File(label="Volume (.nii / .nii.gz)", file_types=[".nii", ".gz"], elem_id="volume-upload")
                    if examples:
                        gr.Examples(examples=examples, inputs=volume)
                    model_spec = gr.Textbox(
                        label="Model", value=os.environ.get("TRANSMRSR_MODEL", "bundled"),
                        info="'bundled', a weights folder, or a Hugging Face repo id", elem_id="model-spec",
                    )
                    scale = gr.Radio([4, 8], value=4, label="Scale (isotropic uploads)", elem_id="scale")
                    phi = gr.Slider(0.0, 1.0, value=0.9, step=0.05, label="φ (truncation; 1 = none)", elem_id="phi")
                    fusion = gr.Checkbox(False, label="Orthogonal fusion (both planes that contain the thick axis)")
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
        with gr.Tab("About"):
            gr.Markdown(ABOUT)

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
    args = ap.parse_args()
    demo = build_app()
    demo.queue(default_concurrency_limit=2, max_size=16).launch(
        server_name=args.host, server_port=args.port, share=args.share, max_file_size=MAX_UPLOAD,
        allowed_paths=[str(WORK_DIR)],
    )


if __name__ == "__main__":
    main()
