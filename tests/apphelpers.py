"""Shared by the app tests: a real ``python app.py`` on a free port, Debian's Chromium, and reading what the
page shows (uploads run, canvas pixels, pictures and downloads fetched from the server)."""

from __future__ import annotations

import base64
import contextlib
import gzip
import io
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"  # Debian's package; never `playwright install`
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
VV = "#viewer .vv"  # the Super-resolve tab's viewer (appui/viewer.js)
CROSS = (64, 224, 64)  # the crosshair's colour (appui/viewer.js)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def app_env(work: Path, **extra: str) -> dict[str, str]:
    """Environment of a test server: one torch thread, offline Hub, outputs under ``work``."""
    env = dict(
        os.environ,
        OMP_NUM_THREADS="1",
        GRADIO_ANALYTICS_ENABLED="False",
        HF_HUB_OFFLINE="1",
        TRANSMRSR_WORK_DIR=str(work),
    )
    for key in ("TRANSMRSR_MODEL", "TRANSMRSR_ENABLE_TRAINING"):
        env.pop(key, None)
    env.update(extra)
    return env


class App:
    """``python app.py --port P [args]``; ``start()`` waits until it listens, ``stop()`` ends it."""

    def __init__(self, env: dict[str, str], log: Path, args: list[str] | None = None, timeout: float = 150) -> None:
        self.env, self.log_path, self.args, self.timeout = env, Path(log), list(args or []), timeout
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def log(self, last: int = 4000) -> str:
        """The end of the server's console output (for failure messages)."""
        return self.log_path.read_text(errors="replace")[-last:] if self.log_path.exists() else ""

    def start(self) -> str:
        port = free_port()
        with open(self.log_path, "a") as out:  # a file, not a pipe: a full pipe would block the server
            self.proc = subprocess.Popen(
                [sys.executable, str(REPO / "app.py"), "--port", str(port), *self.args],
                cwd=REPO,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
            )
        deadline = time.time() + self.timeout
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(self.log()) from None
                time.sleep(0.5)
        else:
            self.stop()
            raise RuntimeError(f"the app did not start in {self.timeout:.0f} s")
        self.url = f"http://127.0.0.1:{port}/"
        return self.url

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        self.proc = None


@contextlib.contextmanager
def running_app(work: Path, model: Path | None = None, args: Sequence[str] = (), **env: str) -> Iterator[App]:
    """A started ``python app.py [args]`` (:func:`app_env` in the folder ``work``, its log ``work/server.log``)
    serving ``model`` (TRANSMRSR_MODEL; None: the bundled weights), its annotations in ``work/annotations``
    unless ``env`` says otherwise; stopped on leaving. The app's ``work`` and ``annotations`` are kept on it."""
    work.mkdir(parents=True, exist_ok=True)
    env = {"TRANSMRSR_ANNOTATIONS": str(work / "annotations"), **env}
    if model is not None:
        env["TRANSMRSR_MODEL"] = str(model)
    app = App(app_env(work, **env), log=work / "server.log", args=list(args))
    app.work, app.annotations = work, Path(env["TRANSMRSR_ANNOTATIONS"])
    app.start()
    try:
        yield app
    finally:
        app.stop()


def run_file(page, path: Path) -> None:
    """Upload ``path`` in the Super-resolve tab, press Run, wait until the viewer has drawn the new case."""
    from playwright.sync_api import expect

    upload = page.locator("#volume-upload")
    if upload.get_by_role("button", name="Clear").count():
        upload.get_by_role("button", name="Clear").click()
    page.locator("#volume-upload input[type=file]").set_input_files(str(path))
    expect(upload).to_contain_text(path.name.split(".")[0], timeout=30_000)
    # the upload's own handler (reading the header, planning the run) must finish before Run: on a busy
    # machine a click during it can reach the server before the volume does
    expect(page.locator(".pending")).to_have_count(0, timeout=60_000)
    page.locator("#run").click()
    expect(page.locator("#case-info")).to_contain_text(path.name.split(".")[0], timeout=120_000)
    page.wait_for_function(
        """sel => { const v = document.querySelector(sel);
        return v && v.dataset.cursor && [...v.querySelectorAll('canvas[data-tag]')].every(c => c.dataset.tag); }""",
        arg=VV,
        timeout=60_000,
    )


def fetch(url: str) -> bytes:
    """The bytes the server sends for ``url`` (a picture, a download)."""
    with urllib.request.urlopen(url, timeout=30) as resp:
        return resp.read()


def canvas_rgb(loc) -> np.ndarray:
    """A canvas' pixels, ``(H, W, 3)`` uint8 (read back as PNG: lossless)."""
    from PIL import Image

    url = loc.evaluate("c => c.toDataURL('image/png')")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))


def gzip_bomb(path: Path) -> Path:
    """65 KB on disk: a header claiming 1024 x 1024 x 480 int16 (within the per-axis and voxel-count
    limits, 1,920 MiB as float32) followed by 64 MB of zeros."""
    import nibabel as nib

    hdr = nib.Nifti1Header()
    hdr.set_data_shape((1024, 1024, 480))
    hdr.set_data_dtype(np.int16)
    hdr.set_zooms((1.0, 1.0, 1.0))
    hdr.set_data_offset(352)
    with gzip.open(path, "wb", compresslevel=9) as fh:
        fh.write(hdr.binaryblock + b"\x00" * 4)
        for _ in range(16):
            fh.write(b"\x00" * (4 << 20))
    assert path.stat().st_size < 100_000
    return path


def viewer_panel(layer: str) -> str:
    """CSS selector of the viewer's canvas(es) of ``layer`` (``lr``, ``sr``, ``hr``, ``error``): there
    once a run's result is drawn, gone when the page is cleared."""
    return f"#viewer .vv-cell[data-layer='{layer}'] canvas"
