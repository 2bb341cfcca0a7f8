"""The Train tab (built only with --enable-training): background training jobs, one at a time for the whole
server, run by the package's JobManager as ``python -m transmrsr ...`` subprocesses."""

from __future__ import annotations

import atexit
import dataclasses
from pathlib import Path

import gradio as gr

from appui import state
from transmrsr.config import GANTrainConfig, SRTrainConfig
from transmrsr.jobs import (
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


def _whole_number(option: dataclasses.Field, label: str, elem_id: str, minimum: int = 1, **kw) -> gr.Number:
    """The form's field of a whole-number option (an :func:`_option` field): its default is the option's,
    so the form starts where the CLI does; ``kw``: more gr.Number settings (info, visible)."""
    return gr.Number(option.default, precision=0, minimum=minimum, label=label, elem_id=elem_id, **kw)


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
        return CentroidSpec(
            gan=gan or "", num_samples=_train_int(samples) or _option(CentroidSpec, "num_samples").default
        )
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
    state.MODELS.forget(folder)  # retrained weights: load them afresh
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


def build_tab(model_spec: gr.Textbox) -> None:
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
                batch = _whole_number(_option(SRTrainConfig, "batch_size"), "Batch size", "train-batch")
                max_steps = _whole_number(
                    _option(GANTrainConfig, "max_steps"),
                    "Max steps",
                    "train-steps",
                    minimum=0,
                    info="stage 2: 0 = run the epochs",
                )
            scale = gr.Radio([4, 8], value=4, label="Scale", visible=False, elem_id="train-scale")
            l1_only = gr.Checkbox(False, label="L1 only (no VGG)", visible=False, elem_id="train-l1")
            with gr.Accordion("More options", open=False):
                epochs = _whole_number(
                    _option(SRTrainConfig, "epochs"), "Epochs (stage 2)", "train-epochs", visible=False
                )
                log_every = _whole_number(_option(SRTrainConfig, "log_every"), "Log every (steps)", "train-log-every")
                ablation = gr.Dropdown(
                    [TRAIN_NO_ABLATION, *Stage2Spec.ABLATIONS],
                    value=TRAIN_NO_ABLATION,
                    label="Ablation (stage 2)",
                    info=_option(SRTrainConfig, "ablation").metadata["help"],
                    visible=False,
                    elem_id="train-ablation",
                )
                samples = _whole_number(
                    _option(CentroidSpec, "num_samples"),
                    "Latents sampled for the centroid fit",
                    "train-samples",
                    visible=False,
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
