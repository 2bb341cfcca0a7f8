"""What every benchmark prints about where its figures come from, and how it times and measures memory.

One line of provenance (:func:`provenance`, :func:`header_line`): date, commit of this repository,
CPU model and cores, GPU when one is used, torch version and thread count, so that a table pasted
into ``RESULTS.md`` says where it was measured. Then a timer (:class:`Timer`, :func:`median_seconds`)
that waits for queued CUDA kernels, and the process's peak memory (:func:`reset_peak_memory`,
:func:`peak_memory_mb`): resident-set high-water mark on CPU, ``torch.cuda.max_memory_allocated`` on GPU.

Scripts import it as ``benchmarks.provenance``, whether run as ``python benchmarks/X.py``, as
``python -m benchmarks.X`` or imported by the tests; run as a script (only the script's folder on
``sys.path``), each first puts the repository root there::

    if not __package__:  # run as a script: `benchmarks.…` imports need the repository root on sys.path
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

    from benchmarks.provenance import header_line
"""

from __future__ import annotations

import datetime
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------------- provenance
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; elsewhere what ``platform`` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str:
    """Short hash of this repository's HEAD, with `` (with uncommitted changes)`` when tracked files
    differ from it; ``unknown`` outside a git checkout (e.g. an exported copy on a lent machine)."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], check=False, cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()

    try:
        sha = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no") if sha else ""
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (sha or "unknown") + (" (with uncommitted changes)" if dirty else "")


def gpu_name() -> str | None:
    """Name of CUDA device 0, or None without CUDA."""
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def provenance(threads: int | None = None, gpu: bool | None = None) -> str:
    """``date, commit, CPU (cores)[, GPU], torch version, threads`` as one comma-separated line.

    ``threads``: the torch CPU threads the figures were measured with (default: ``torch.get_num_threads()``,
    so call it after ``torch.set_num_threads``). ``gpu``: name the GPU (default: when CUDA is available).
    """
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    threads = torch.get_num_threads() if threads is None else threads
    parts = [now, f"commit {git_commit()}", f"CPU {cpu_model()} ({os.cpu_count()} cores)"]
    name = gpu_name() if gpu is None or gpu else None
    if name:
        parts.append(f"GPU {name}")
    parts += [f"torch {torch.__version__}", f"{threads} threads"]
    return ", ".join(parts)


def header_line(threads: int | None = None, gpu: bool | None = None, extra: str = "") -> str:
    """:func:`provenance` as a markdown comment line, ``extra`` appended after ``; ``."""
    return "# " + provenance(threads, gpu) + (f"; {extra}" if extra else "")


def command_line(script: str, argv: Sequence[object] | None = None) -> str:
    """The command that produced a table: ``python benchmarks/<script's file name> <arguments>``
    (``argv``: the arguments given to ``main``; default ``sys.argv[1:]``)."""
    args = sys.argv[1:] if argv is None else [str(a) for a in argv]
    return " ".join(["python", f"benchmarks/{Path(script).name}", shlex.join(args)]).rstrip()


# ---------------------------------------------------------------------------------- timing
def sync(device: str | torch.device = "cpu") -> None:
    """Wait for the kernels queued on ``device`` (CUDA runs asynchronously; a no-op on CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


class Timer:
    """Wall seconds of a ``with`` block, in ``.seconds`` afterwards; on CUDA the queued kernels are
    waited for at both ends, so the time is the work's, not its launch's (``with Timer("cuda") as t: model(x)``)."""

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.device = device
        self.seconds = float("nan")
        self._t0 = 0.0

    def __enter__(self) -> Timer:
        sync(self.device)
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        sync(self.device)
        self.seconds = time.perf_counter() - self._t0


def median_seconds(
    fn: Callable[[], object], repeats: int, warmup: int = 1, device: str | torch.device = "cpu"
) -> float:
    """Median wall seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
        sync(device)
    times = []
    for _ in range(repeats):
        with Timer(device) as t:
            fn()
        times.append(t.seconds)
    return statistics.median(times)


# ---------------------------------------------------------------------------------- memory
def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux >= 4.0), which ``getrusage`` then
    follows; False where that is not possible (the peak then runs from the process start)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """This process's resident-memory high-water mark in MiB (since start or the last reset)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def reset_peak_memory(device: str | torch.device = "cpu") -> bool:
    """Start a new peak-memory measurement on ``device``: CUDA's allocator statistics, else the
    process RSS mark (see :func:`reset_peak_rss`; returns its result, True on CUDA)."""
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        return True
    return reset_peak_rss()


def peak_memory_mb(device: str | torch.device = "cpu") -> float:
    """Peak memory in MiB since :func:`reset_peak_memory`: ``max_memory_allocated`` on CUDA, peak RSS on CPU."""
    if torch.device(device).type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return peak_rss_mb()
