"""Shared by the app tests: a real ``python app.py`` on a free port, and Debian's Chromium."""

from __future__ import annotations

import gzip
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

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


def gzip_bomb(path: Path) -> Path:
    """65 KB on disk: a header claiming 1024 x 1024 x 480 int16 (within the per-axis and voxel-count
    limits, 1,920 MiB as float32) followed by 64 MB of zeros."""
    import nibabel as nib
    import numpy as np

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
