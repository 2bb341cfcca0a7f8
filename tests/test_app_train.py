"""The app's Train tab, on the real server (``app.py --enable-training``) in Debian's Chromium.

The server runs with training enabled: the test fills the form, starts a tiny stage-1 job,
watches status / progress / log tail / curves update, stops it (its state is saved), sees the
messages of a second start, of "Load in Super-resolve" on a stage-1 folder and of "Push to Hub"
offline, and loads a stage-2 folder into the Super-resolve tab. Without the flag the app is
built with no Train controls at all.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sys
from pathlib import Path

import pytest
import torch

from apphelpers import running_app
from test_jobs import write_subjects

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_subjects(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def server(tiny_dir, runs, tmp_path_factory):
    try:
        with running_app(tmp_path_factory.mktemp("app"), tiny_dir, args=["--enable-training"]) as app:
            yield app.url
    finally:
        # a job the app started outlives it (own process group): stop it by the pid it recorded
        for info in runs.glob("*/job.json"):
            pid = json.loads(info.read_text())["pid"]
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def test_train_tab_start_status_log_stop(server, browser, data_dir, runs, tiny_dir):
    from playwright.sync_api import expect

    out = runs / "gan"
    page = browser.new_page(viewport={"width": 1500, "height": 1200})
    page.goto(server)
    page.get_by_role("tab", name="Train").click()
    expect(page.locator("#train-start")).to_be_visible(timeout=30_000)
    page.get_by_text("More options").click()
    log_every = page.locator("#train-log-every input[type=number]")
    expect(log_every).to_be_visible(timeout=30_000)
    # the form shows the fields of the chosen stage
    expect(page.locator("#train-gan")).to_be_hidden()
    page.locator("#train-stage").get_by_label("stage 2 · super-resolution").check()
    for field in ("train-gan", "train-scale", "train-l1", "train-ablation"):
        expect(page.locator(f"#{field}")).to_be_visible(timeout=30_000)
    page.locator("#train-stage").get_by_label("stage 1 · GAN prior").check()
    expect(page.locator("#train-gan")).to_be_hidden(timeout=30_000)
    expect(page.locator("#train-ablation")).to_be_hidden(timeout=30_000)
    page.locator("#train-data").get_by_role("textbox").fill(str(data_dir))
    page.locator("#train-out").get_by_role("textbox").fill(str(out))
    page.locator("#train-preset").get_by_label("tiny").check()
    page.locator("#train-batch input[type=number]").fill("4")
    page.locator("#train-steps input[type=number]").fill("100000")
    # the accordion was opened first (above): a field filled while it mounts went back to its
    # default (10) in about one run of ten; start only once the field holds the value
    log_every.fill("2")
    log_every.press("Tab")
    expect(log_every).to_have_value("2")
    page.locator("#train-start").click()

    status, progress, log = (
        page.locator("#train-status"),
        page.locator("#train-progress"),
        page.locator("#train-log textarea"),
    )
    expect(status).to_contain_text("running", timeout=30_000)
    expect(status).to_contain_text(str(out))
    expect(log).to_have_value(re.compile(r"\$ transmrsr train-gan .*--preset tiny .*--log-every 2"), timeout=30_000)
    # the timer brings the progress (step / total, it/s, ETA) and the progress bar into the log tail
    expect(progress).to_contain_text(re.compile(r"step \d+ / 100000 .*it/s · ETA"), timeout=120_000)
    expect(log).to_have_value(re.compile(r"stage 1: .*step/s"), timeout=30_000)
    first = progress.inner_text()
    expect(progress).not_to_have_text(first, timeout=30_000)  # it keeps moving
    expect(page.locator("#train-curves canvas, #train-curves img").first).to_be_visible(timeout=30_000)
    page.screenshot(path=str(runs / "train-tab.png"), full_page=True)

    # one job at a time: a second start is refused with a message
    page.locator("#train-start").click()
    expect(page.get_by_text("already running").first).to_be_visible(timeout=30_000)

    page.locator("#train-stop").click()
    expect(status).to_contain_text("stopped", timeout=90_000)
    expect(log).to_have_value(re.compile(r"stopped at step \d+; state saved"), timeout=30_000)
    assert (out / "training_state.pt").is_file()
    state = torch.load(out / "training_state.pt", map_location="cpu", weights_only=True)
    assert state["step"] >= 1
    pid = json.loads((out / "job.json").read_text())["pid"]
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the job has ended (and was reaped by the app)

    # a stage-1 folder is not a super-resolution model; pushing offline says why it failed
    page.locator("#train-load").click()
    expect(page.get_by_text("not a super-resolution model").first).to_be_visible(timeout=30_000)
    page.get_by_text("Push to the Hugging Face Hub").click()
    page.locator("#train-repo").get_by_role("textbox").fill("someone/transmrsr-tiny-gan")
    page.locator("#train-push").click()
    expect(page.locator("#train-result")).to_contain_text("Push failed", timeout=60_000)
    expect(page.locator("#train-result")).to_contain_text("offline")

    # a stage-2 model folder (here the tiny model the app was started with, copied) goes into Super-resolve's Model box
    sr_dir = runs / "sr"
    shutil.copytree(tiny_dir, sr_dir)
    page.locator("#train-out").get_by_role("textbox").fill(str(sr_dir))
    page.locator("#train-load").click()
    expect(page.locator("#train-result")).to_contain_text("Super-resolve now uses", timeout=30_000)
    page.get_by_role("tab", name="Super-resolve").click()
    expect(page.locator("#model-spec").get_by_role("textbox")).to_have_value(str(sr_dir.resolve()), timeout=30_000)
    page.close()


def train_controls(demo) -> set[str]:
    return {str(b.elem_id) for b in demo.blocks.values() if str(getattr(b, "elem_id", "") or "").startswith("train-")}


def _settings_from_env(app, monkeypatch) -> None:
    """The app's settings (appui.state) read afresh from this test's environment, restored afterwards."""
    for name in app.state.SETTINGS:
        monkeypatch.setattr(app.state, name, getattr(app.state, name))
    app.state.read_env()


def test_train_tab_absent_without_the_flag(tmp_path, monkeypatch):
    """The app built without --enable-training / TRANSMRSR_ENABLE_TRAINING=1 has no Train controls
    (the server started with the flag above is the other half of this check)."""
    import gradio as gr

    monkeypatch.setenv("TRANSMRSR_WORK_DIR", str(tmp_path / "work"))
    monkeypatch.delenv("TRANSMRSR_ENABLE_TRAINING", raising=False)
    sys.modules.pop("app", None)
    import app

    _settings_from_env(app, monkeypatch)
    try:
        assert app.TRAINING_ENABLED is False
        demo = app.build_app()
        assert train_controls(demo) == set()
        tabs = [b for b in demo.blocks.values() if isinstance(b, gr.Tab) and b.label == "Train"]
        assert len(tabs) == 1 and tabs[0].visible is False
        monkeypatch.setattr(app.state, "TRAINING_ENABLED", True)
        assert {
            "train-start",
            "train-stop",
            "train-resume",
            "train-status",
            "train-log",
            "train-curves",
            "train-load",
            "train-push",
        } <= train_controls(app.build_app())
    finally:
        sys.modules.pop("app", None)


def test_train_form_takes_its_choices_and_defaults_from_the_option_schema(tmp_path, monkeypatch):
    """The Train form's ablations are the config's (Table 4's frozen GP included) and reach the job's command
    line; its defaults are the config dataclasses' (transmrsr.options builds the CLI from the same fields)."""
    from transmrsr.config import GANTrainConfig, SRTrainConfig
    from transmrsr.options import from_args

    monkeypatch.setenv("TRANSMRSR_WORK_DIR", str(tmp_path / "work"))
    sys.modules.pop("app", None)
    import app

    _settings_from_env(app, monkeypatch)
    try:
        demo = app.build_app()
        by_id = {str(b.elem_id): b for b in demo.blocks.values() if getattr(b, "elem_id", None)}
        if "train-ablation" in by_id:  # built only with training enabled
            choices = [c[0] if isinstance(c, tuple) else c for c in by_id["train-ablation"].choices]
            assert choices[1:] == list(SRTrainConfig.ABLATIONS)
        monkeypatch.setattr(app.state, "TRAINING_ENABLED", True)
        by_id = {str(b.elem_id): b for b in app.build_app().blocks.values() if getattr(b, "elem_id", None)}
        choices = [c[0] if isinstance(c, tuple) else c for c in by_id["train-ablation"].choices]
        assert choices[0] == app.TRAIN_NO_ABLATION and choices[1:] == list(SRTrainConfig.ABLATIONS)
        assert by_id["train-batch"].value == SRTrainConfig().batch_size
        assert by_id["train-steps"].value == GANTrainConfig().max_steps
        assert by_id["train-epochs"].value == SRTrainConfig().epochs
        spec = app.train_spec(
            app.TRAIN_STAGES[2], str(tmp_path / "d"), str(tmp_path / "o"), str(tmp_path / "g"), "tiny", "32",
            4, None, 8, True, 3, 1, None, "frozen-gp",
        )  # fmt: skip
        from transmrsr.cli import build_parser

        cfg = from_args(SRTrainConfig, build_parser().parse_args(spec.args()))
        assert (cfg.ablation, cfg.scale, cfg.img_size, cfg.perceptual, cfg.epochs) == ("frozen-gp", 8, 32, False, 3)
        none = app.train_spec(app.TRAIN_STAGES[2], "d", "o", "g", "tiny", "preset", 4, None, 8, True, 3, 1, None,
                              app.TRAIN_NO_ABLATION)  # fmt: skip
        assert none.ablation is None
    finally:
        sys.modules.pop("app", None)
