"""Shared pieces of the training loops: checkpoints, JSONL logs, stop signals, sampling order."""

from __future__ import annotations

import json
import math
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..errors import NamesParameters
from ..fileutil import atomic_path

STATE_NAME = "training_state.pt"
LOG_NAME = "log.jsonl"


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename (never a half file)."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_state(path: Path) -> dict[str, Any]:
    """Load a training state written by :func:`atomic_torch_save` (tensors and plain data only)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def seed_step(seed: int, rank: int, step: int) -> None:
    """Reseed torch (noise, dropout) from ``(seed, rank, step)`` before every step, so that a
    resumed run — on every rank — draws exactly what an uninterrupted one would have drawn."""
    torch.manual_seed(((seed * 1_000_003 + rank) * 1_000_003 + step) % (2**63 - 1))


class EpochSampler(Sampler[int]):
    """Shuffled order that depends only on ``(seed, epoch)``, starting at ``start`` (in samples
    of the global order, i.e. steps x batch size x processes): a resumed run sees exactly the
    samples the interrupted one would have seen."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch, self.start = n, seed, 0, 0

    def set_position(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.n, generator=g).tolist()
        return iter(order[self.start :])

    def __len__(self) -> int:
        return self.n - self.start


class StopFlag:
    """Turns SIGINT / SIGTERM into a flag the loop checks, so it can save before exiting."""

    def __init__(self) -> None:
        self.stop = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not in the main thread: no signal handling
                pass
        return self

    def _handle(self, _signum, _frame) -> None:  # the signal module's handler signature
        self.stop = True

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


class JsonlLogger:
    """Appends one JSON object per line (the app's Training tab reads this file)."""

    def __init__(self, path: Path, enabled: bool = True) -> None:
        self.path, self.enabled = path, enabled
        self.t0 = time.time()

    def log(self, **record: Any) -> None:
        if not self.enabled:
            return
        record.setdefault("time", round(time.time(), 3))
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        with open(self.path, "a") as fh:
            fh.write(json.dumps(clean) + "\n")


class Throughput:
    """Iterations per second and ETA over the recent window."""

    def __init__(self, total: int | None, start_step: int) -> None:
        self.total, self.t0, self.s0 = total, time.perf_counter(), start_step

    def __call__(self, step: int) -> tuple[float, float | None]:
        dt = time.perf_counter() - self.t0
        rate = (step - self.s0) / dt if dt > 0 else 0.0
        eta = (self.total - step) / rate if (self.total is not None and rate > 0) else None
        return rate, eta


class RunExistsError(NamesParameters, FileExistsError):
    """The output folder holds a run that is not being resumed (the message names the caller's options)."""


def start_run(opts, accelerator=None):
    """The Accelerator, output folder and state path of a run; refuses to overwrite a run that
    is not resumed; seeds this process. Returns ``(accelerator, out, state_path)``."""
    from accelerate import Accelerator

    # cpu=True without CUDA: lets `accelerate launch` / torchrun run several CPU processes (gloo)
    acc = accelerator or Accelerator(cpu=not torch.cuda.is_available())
    out = Path(opts.out)
    state_path = out / STATE_NAME
    if state_path.exists() and not opts.resume:
        raise RunExistsError(
            f"{state_path}: a run already lives here; resume it ({{resume}}) or choose another {{out}}",
            params={"resume": "resume=True", "out": "output folder"},
        )
    seed_everything(opts.seed + acc.process_index)
    return acc, out, state_path


def epoch_loader(dataset: Dataset, opts) -> tuple[DataLoader, EpochSampler]:
    """Training loader in :class:`EpochSampler` order; refuses data smaller than one batch."""
    sampler = EpochSampler(len(dataset), opts.seed)
    loader = DataLoader(
        dataset,
        batch_size=opts.batch_size,
        sampler=sampler,
        drop_last=True,
        num_workers=opts.num_workers,
        generator=torch.Generator().manual_seed(opts.seed),  # its per-iterator seed draw must not touch the global RNG
    )
    if len(loader) == 0:
        raise ValueError(f"{opts.data}: {len(dataset)} training slices, fewer than one batch of {opts.batch_size}")
    return loader, sampler
