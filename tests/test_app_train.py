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
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from transmrsr import TransMRSR, TransMRSRConfig

from test_jobs import write_subjects  # noqa: E402 (tests/ is on sys.path under pytest)

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(tiny_dir: Path, work: Path, enable: bool) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = dict(os.environ, TRANSMRSR_MODEL=str(tiny_dir), OMP_NUM_THREADS="1", GRADIO_ANALYTICS_ENABLED="False",
               TRANSMRSR_WORK_DIR=str(work / "work"), TRANSMRSR_ANNOTATIONS=str(work / "annotations"),
               HF_HUB_OFFLINE="1")
    env.pop("TRANSMRSR_ENABLE_TRAINING", None)
    args = [sys.executable, str(REPO / "app.py"), "--port", str(port)] + (["--enable-training"] if enable else [])
    log = open(work / "server.log", "w")
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    return proc, port


def wait_listening(proc: subprocess.Popen, port: int, log: Path, timeout: float = 150) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return f"http://127.0.0.1:{port}/"
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(log.read_text()[-3000:])
            time.sleep(0.3)
    raise RuntimeError(f"the app did not start in {timeout} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return TransMRSR(TransMRSRConfig.from_preset("tiny")).save_pretrained(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_subjects(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def server(tiny_dir, runs, tmp_path_factory):
    work = tmp_path_factory.mktemp("app")
    proc, port = launch(tiny_dir, work, enable=True)
    try:
        yield wait_listening(proc, port, work / "server.log")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        # a job the app started outlives it (own process group): stop it by the pid it recorded
        for info in runs.glob("*/job.json"):
            pid = json.loads(info.read_text())["pid"]
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield b
        b.close()


def test_train_tab_start_status_log_stop(server, browser, data_dir, runs, tiny_dir):
    from playwright.sync_api import expect

    out = runs / "gan"
    page = browser.new_page(viewport={"width": 1500, "height": 1200})
    page.goto(server)
    page.get_by_role("tab", name="Train").click()
    expect(page.locator("#train-start")).to_be_visible(timeout=30_000)
    # the form shows the fields of the chosen stage
    expect(page.locator("#train-gan")).to_be_hidden()
    page.locator("#train-stage").get_by_label("stage 2 · super-resolution").check()
    for field in ("train-gan", "train-scale", "train-l1"):
        expect(page.locator(f"#{field}")).to_be_visible(timeout=30_000)
    page.locator("#train-stage").get_by_label("stage 1 · GAN prior").check()
    expect(page.locator("#train-gan")).to_be_hidden(timeout=30_000)
    page.locator("#train-data").get_by_role("textbox").fill(str(data_dir))
    page.locator("#train-out").get_by_role("textbox").fill(str(out))
    page.locator("#train-preset").get_by_label("tiny").check()
    page.locator("#train-batch input[type=number]").fill("4")
    page.locator("#train-steps input[type=number]").fill("100000")
    page.get_by_text("More options").click()
    page.locator("#train-log-every input[type=number]").fill("2")
    page.locator("#train-start").click()

    status, progress, log = page.locator("#train-status"), page.locator("#train-progress"), page.locator("#train-log textarea")
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


def test_train_tab_absent_without_the_flag(tmp_path, monkeypatch):
    """The app built without --enable-training / TRANSMRSR_ENABLE_TRAINING=1 has no Train controls
    (the server started with the flag above is the other half of this check)."""
    import gradio as gr

    monkeypatch.setenv("TRANSMRSR_WORK_DIR", str(tmp_path / "work"))
    monkeypatch.delenv("TRANSMRSR_ENABLE_TRAINING", raising=False)
    sys.modules.pop("app", None)
    import app

    try:
        assert app.TRAINING_ENABLED is False
        demo = app.build_app()
        assert train_controls(demo) == set()
        tabs = [b for b in demo.blocks.values() if isinstance(b, gr.Tab) and b.label == "Train"]
        assert len(tabs) == 1 and tabs[0].visible is False
        monkeypatch.setattr(app, "TRAINING_ENABLED", True)
        assert {"train-start", "train-stop", "train-resume", "train-status", "train-log", "train-curves", "train-load",
                "train-push"} <= train_controls(app.build_app())
    finally:
        sys.modules.pop("app", None)
