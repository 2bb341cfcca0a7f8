"""TransMRSR — Gradio app: super-resolve a brain MRI volume and look at it.

Run locally with ``python app.py`` (add ``--port``, ``--share``); on a Hugging Face Space this
file is the entry point. All model and image work is done by the ``transmrsr`` package; this
file only parses the command line and assembles the tabs, each built in its own module of
``appui/`` (settings and shared objects: ``appui/state.py``). A public deployment (``--public`` or
``TRANSMRSR_PUBLIC=1``) serves only the bundled and allow-listed models; see docs/app.md's
"Security / public deployment" section for every setting.
"""

from __future__ import annotations

import argparse
import os

import gradio as gr

from appui import about, annotate, state, superresolve, train
from appui.about import model_card_markdown  # noqa: F401 - re-exported for scripts and tests
from appui.train import TRAIN_NO_ABLATION, TRAIN_STAGES, train_spec  # noqa: F401 - re-exported

CSS = superresolve.CSS


def __getattr__(name: str):
    """``app.MODELS``, ``app.TRAINING_ENABLED``, ...: the settings, read where they live (and change),
    in :mod:`appui.state`."""
    if name in state.SETTINGS:
        return getattr(state, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_app() -> gr.Blocks:
    """The page: one tab per module of ``appui`` (the Train tab only with training enabled)."""
    ttl = max(int(state.SESSION_TTL), 1)
    with gr.Blocks(title="TransMRSR", delete_cache=(max(min(ttl // 2, 600), 1), ttl)) as demo:
        case_state = gr.State(None)  # an unguessable reference to the session's case (the case stays on the server)
        gr.Markdown("# TransMRSR — thick-slice brain MRI → isotropic")
        with gr.Tab("Super-resolve"):
            sr = superresolve.build_tab()
        with gr.Tab("Annotate"):
            annotate.build_tab(case_state, sr.model_spec)
        with gr.Tab("Train", visible=state.TRAINING_ENABLED):
            if state.TRAINING_ENABLED:
                train.build_tab(sr.model_spec)
            else:
                gr.Markdown("Training is off. Start the app with `--enable-training` to launch training jobs here.")
        with gr.Tab("About"):
            card = about.build_tab()
        superresolve.wire(sr, case_state, card, demo)
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


def main() -> None:
    args = parse_args()
    state.configure(args)
    state.SESSIONS.start_sweeper()
    demo = build_app()
    demo.queue(default_concurrency_limit=2, max_size=16).launch(
        server_name=args.host,
        server_port=args.port,
        share=args.share,
        max_file_size=state.MAX_UPLOAD,
        allowed_paths=[str(state.SESSIONS.root)],
        css=CSS,
    )


if __name__ == "__main__":
    main()
