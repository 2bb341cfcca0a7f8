"""Per-scan self-supervised adaptation: fine-tune a copy of the loaded model on the scan itself.

A thick-slice scan is sharp in-plane. Its in-plane slices, degraded along one in-plane axis with
the scan's own slice spacing, thickness (gap) and profile, then interpolated back exactly as the
inference pipeline interpolates the thick axis, make training pairs whose blur is the one the
model has to undo on this scan (the idea of SMORE / ECLARE, applied to the loaded TransMRSR).
The copy is trained for a bounded number of steps (and seconds), then super-resolves the scan.

The loaded model and its files are never changed: the copy lives in memory only.

Geometry, in voxels of the model's working grid (see :func:`transmrsr.inference.plan_serving`):
the working input ``lr_w (X', Y', n)`` has in-plane voxels at the working spacing and ``n`` thick
slices; its in-plane slices ``(A, B)`` are the high-resolution targets.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from .data.degradation import SliceProfile, grid_size, interpolate_to_grid, resample_axis, simulate_acquisition
from .data.normalization import IntensityScaler

if TYPE_CHECKING:
    from .inference import Acquisition, ServingPlan
    from .models import TransMRSR

#: Default number of optimiser steps (``transmrsr sr --adapt-steps``).
DEFAULT_STEPS = 150
#: Steps timed before deciding whether the time bound will shorten the learning-rate schedule.
_PROBE_STEPS = 3


@dataclass
class AdaptOptions:
    """Settings of one adaptation run.

    Attributes:
        steps: optimiser steps (batches) at most.
        max_seconds: wall-time bound (s) on the training loop, ``None`` for none. When the first
            steps show the bound will be reached, the schedule is fitted to the steps that fit in
            it; such a run depends on the machine's speed and is not reproducible step for step.
            One bounded by ``steps`` is.
        lr: Adam learning rate (betas 0.5, 0.999 as in stage 2), decayed linearly to 0 over ``steps``
            (or over ``max_seconds`` when that is reached first).
        batch_size: canvas patches per step.
        seed: seeds patch sampling and torch's generator (inside a forked RNG: the caller's global
            random state is left as it was).
        phi: truncation level used in training (``None``: the model's).
        progress: called as ``progress(step, total)`` after each step (``total`` is ``steps``, or
            fewer when the time bound shortens the run).
        background: a patch whose high-resolution maximum (scaled units) is at most this is
            drawn again (up to 10 times).
    """

    steps: int = DEFAULT_STEPS
    max_seconds: float | None = 240.0
    lr: float = 3e-4
    batch_size: int = 8
    seed: int = 0
    phi: float | None = None
    progress: Callable[[int, int], None] | None = None
    background: float = 0.05

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"adaptation steps must be >= 1, got {self.steps}")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise ValueError(f"adaptation time limit must be > 0 s, got {self.max_seconds}")
        if not self.lr > 0:
            raise ValueError(f"adaptation learning rate must be > 0, got {self.lr}")
        if self.batch_size < 1:
            raise ValueError(f"adaptation batch size must be >= 1, got {self.batch_size}")


@dataclass
class AdaptReport:
    """What an adaptation run did: steps taken, seconds, the L1 loss (scaled units) averaged over
    the first and the last tenth of the steps, and how many in-plane images fed it."""

    steps: int
    seconds: float
    first_loss: float
    last_loss: float
    images: int


def degrade_inplane(hr: np.ndarray, axis: int, profile: SliceProfile, thick_factor: float, strategy: str) -> np.ndarray:
    """Degrade a stack of in-plane images ``hr (n, A, B)`` along image ``axis`` (1 or 2) the way
    the scan's thick axis is degraded and then interpolated by the inference pipeline:
    acquisition with ``profile`` (spacing, thickness, kind in working voxels), for the
    ``"thick"`` strategy a cubic resampling to ``thick_factor`` voxels per slice, and cubic
    interpolation back to the working grid. Returns float32 ``(n, A, B)``."""
    n_thin = hr.shape[axis]
    thick = simulate_acquisition(hr, axis, profile)
    if strategy == "thick" and abs(thick_factor - profile.spacing) > 1e-6:
        n_out = grid_size(thick.shape[axis], profile.spacing)  # as working_input counts them
        k = max(1, math.ceil(n_out / thick_factor - 1e-9))
        thick = resample_axis(thick, axis, thick_factor * (np.arange(k) + 0.5) / profile.spacing - 0.5)
    return interpolate_to_grid(thick, axis, thick_factor, n_thin=n_thin)


def adaptation_pairs(lr_w: np.ndarray, acq: Acquisition, plan: ServingPlan) -> list[tuple[np.ndarray, np.ndarray]]:
    """Training pairs ``(lr, hr)``, each ``(n, A, B)`` float32 in scaled units, from the working
    input ``lr_w`` (input units): its in-plane slices as targets, degraded along each in-plane
    axis in turn (two pairs of stacks). Scaling: the rule :func:`~transmrsr.inference.super_resolve`
    applies to the same ``lr_w``."""
    scaler = IntensityScaler.fit(lr_w)
    hr = np.ascontiguousarray(np.moveaxis(scaler.forward(lr_w), acq.axis, 0))  # (n, A, B)
    w = plan.working[acq.axis]  # working voxels per thick slice
    profile = SliceProfile(spacing=w, thickness=acq.slice_thickness / acq.zooms[acq.axis] * w, kind=acq.profile)
    pairs = []
    for a in (1, 2):
        if hr.shape[a] < 2 * math.ceil(w):
            continue  # too few in-plane voxels along this axis to degrade
        pairs.append((degrade_inplane(hr, a, profile, plan.thick_factor, plan.strategy), hr))
    if not pairs:
        raise ValueError(f"in-plane size {hr.shape[1:]} is too small to adapt at factor {w:.2f}")
    return pairs


def _sample_batch(
    pairs: list[tuple[np.ndarray, np.ndarray]], size: int, batch: int, rng: np.random.Generator, background: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``batch`` random canvas patches ``(B, 1, size, size)``: input, target and a validity mask
    (images smaller than the canvas are zero-padded around the centre, as at inference)."""
    x = np.zeros((batch, 1, size, size), dtype=np.float32)
    y = np.zeros_like(x)
    m = np.zeros_like(x)
    for b in range(batch):
        for _ in range(10):
            lr, hr = pairs[int(rng.integers(len(pairs)))]
            i = int(rng.integers(hr.shape[0]))
            h, w = hr.shape[1:]
            y0 = int(rng.integers(max(1, h - size + 1)))
            x0 = int(rng.integers(max(1, w - size + 1)))
            tgt = hr[i, y0 : y0 + size, x0 : x0 + size]
            if float(tgt.max()) > background:
                break
        src = lr[i, y0 : y0 + size, x0 : x0 + size]
        if rng.random() < 0.5:
            src, tgt = src[::-1], tgt[::-1]
        if rng.random() < 0.5:
            src, tgt = src[:, ::-1], tgt[:, ::-1]
        ph, pw = tgt.shape
        oy, ox = (size - ph) // 2, (size - pw) // 2  # centred, as inference places a small slice
        x[b, 0, oy : oy + ph, ox : ox + pw] = src
        y[b, 0, oy : oy + ph, ox : ox + pw] = tgt
        m[b, 0, oy : oy + ph, ox : ox + pw] = 1.0
    return torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(m)


def adapt_model(
    model: TransMRSR,
    lr_w: np.ndarray,
    acq: Acquisition,
    plan: ServingPlan,
    options: AdaptOptions | None = None,
    device: str | torch.device | None = None,
) -> tuple[TransMRSR, AdaptReport]:
    """Fine-tune a copy of ``model`` on the scan (``lr_w``: the working input of
    :func:`~transmrsr.inference.working_input`, input units) and return ``(copy in eval mode,
    AdaptReport)``. ``model`` itself is not modified and nothing is written to disk. ``device``:
    where the copy trains (default: CUDA when available, as :func:`~transmrsr.inference.super_resolve`)."""
    opts = options or AdaptOptions()
    # the device rule of super_resolve: CUDA when available unless told otherwise
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    pairs = adaptation_pairs(lr_w, acq, plan)
    tuned = copy.deepcopy(model).to(dev)
    tuned.train()
    size = tuned.config.img_size
    rng = np.random.default_rng(opts.seed)
    losses: list[float] = []
    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(opts.seed)
        opt = torch.optim.Adam([p for p in tuned.parameters() if p.requires_grad], lr=opts.lr, betas=(0.5, 0.999))
        step, total = 0, opts.steps
        while step < total:
            # linear decay to zero over the steps; when the first steps show that the time bound
            # will come first, over the steps that fit in it (so a run cut by time still ends with
            # small updates; a run that fits keeps a schedule of whole steps: reproducible)
            if step == _PROBE_STEPS and opts.max_seconds is not None:
                per_step = (time.perf_counter() - t0) / step
                if per_step * opts.steps > opts.max_seconds:
                    total = max(step + 1, int(opts.max_seconds / per_step))
            for group in opt.param_groups:
                group["lr"] = opts.lr * max(0.0, 1.0 - step / total)
            x, y, m = (t.to(dev) for t in _sample_batch(pairs, size, opts.batch_size, rng, opts.background))
            out = tuned(x, phi=opts.phi)
            loss = (F.l1_loss(out, y, reduction="none") * m).sum() / m.sum().clamp_min(1.0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            step += 1
            if opts.progress is not None:
                opts.progress(step, total)
            if opts.max_seconds is not None and time.perf_counter() - t0 > opts.max_seconds:
                break
    tuned.eval()
    k = max(1, len(losses) // 10)
    report = AdaptReport(
        steps=len(losses),
        seconds=time.perf_counter() - t0,
        first_loss=float(np.mean(losses[:k])),
        last_loss=float(np.mean(losses[-k:])),
        images=sum(p[1].shape[0] for p in pairs),
    )
    return tuned, report
