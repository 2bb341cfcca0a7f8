"""Starting ``python -m transmrsr ...`` (``sr-dataset``, training) as several CPU processes: under
``torch.distributed.run`` or ``accelerate launch``, one torch thread each. Shared by ``benchmarks/dataset_throughput.py`` and the tests
that run the CLI in two processes (``tests/test_bids.py``, ``tests/test_dataset_processes.py``,
``tests/test_training.py``)."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_env(*unset: str, **extra: str) -> dict[str, str]:
    """This process's environment for a CLI subprocess: one torch thread (OMP, MKL), the Hugging Face Hub
    offline, this checkout first on ``PYTHONPATH``; without the variables ``unset``, then ``extra``."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    for key in unset:
        env.pop(key, None)
    env.update(extra)
    return env


def torchrun(processes: int) -> list[str]:
    """``python -m torch.distributed.run`` starting ``processes`` processes on this machine (a free port);
    the command to run in each follows (``-m transmrsr ...``)."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        str(processes),
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
    ]


def accelerate_launch(*mode: str) -> list[str]:
    """``accelerate launch <mode>`` on one machine, no mixed precision, no dynamo, a free port (e.g. ``mode``
    ``--multi_gpu --num_processes 2``, with ``--device cpu`` for the command on a machine without GPUs); the
    command follows. Its config file is the one under ``$HF_HOME``: point that at an empty folder."""
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        *mode,
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(free_port()),
    ]


def sr_dataset(root: Path, out: Path, model: Path, *flags: str) -> list[str]:
    """``-m transmrsr sr-dataset ROOT OUT --model MODEL --quiet [flags]``: the command after a launcher (or
    after ``python``)."""
    return ["-m", "transmrsr", "sr-dataset", str(root), str(out), "--model", str(model), "--quiet", *flags]
