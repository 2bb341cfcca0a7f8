"""Volume in, volume out: super-resolve a thick-slice volume slice by slice.

The LR volume is scaled to [0, 1], interpolated onto the thin grid (cubic, along the thick axis
only), cut into the 2-D slices that contain the thick axis, placed on the model's square canvas
(padding, or overlapping tiles when a slice is larger than the canvas), run through the model in
batches, put back together and scaled back to the input's units. Slices that hold only
background are not run (their output is the interpolation). With ``fusion`` both planes that
contain the thick axis are super-resolved and averaged.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .data.degradation import interpolate_to_thin
from .data.normalization import IntensityScaler
from .models import TransMRSR

ProgressCallback = Callable[[int, int], None]


@dataclass
class SRResult:
    """Output of :func:`super_resolve`, all on the thin grid, in the input's intensity units.

    Attributes:
        sr: super-resolved volume (float32).
        interpolated: the cubic interpolation the network started from (float32).
        slice_axes: the voxel axes the slices were taken along (one, or two with fusion).
        slices_run: how many slices went through the network (background slices are skipped).
        canvas: ``"pad"`` when every slice fits the canvas, else ``"tiles"``.
    """

    sr: np.ndarray
    interpolated: np.ndarray
    slice_axes: tuple[int, ...]
    slices_run: int
    canvas: str


def default_slice_axis(axis: int) -> int:
    """Slicing axis for a thick ``axis``: the last of the other two (x-z slices for a thick z,
    as in the paper, and x-y slices for a thick x)."""
    return max(a for a in range(3) if a != axis)


def tile_starts(length: int, size: int, overlap: int) -> list[int]:
    """Start offsets of windows of ``size`` covering ``length`` with at least ``overlap``."""
    if length <= size:
        return [0]
    n = math.ceil((length - overlap) / (size - overlap))
    return [round(i * (length - size) / (n - 1)) for i in range(n)]


def _blend_weight(size: int, overlap: int) -> np.ndarray:
    """1-D weight for tile blending: linear ramps of ``overlap`` pixels at both ends."""
    w = np.ones(size, dtype=np.float32)
    if overlap > 0:
        ramp = (np.arange(overlap, dtype=np.float32) + 1.0) / (overlap + 1.0)
        w[:overlap] = ramp
        w[-overlap:] = ramp[::-1]
    return w


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _run_plane(
    model: TransMRSR,
    volume: np.ndarray,
    slice_axis: int,
    phi,
    batch_size: int,
    device: torch.device,
    overlap: int | None,
    background: float,
    step: Callable[[int], None],
) -> tuple[np.ndarray, int, bool]:
    """Super-resolve every slice of ``volume (scaled, thin grid)`` taken along ``slice_axis``.

    ``batch_size`` counts slices: a forward pass takes that many slices' worth of canvas tiles.
    Tiles that hold only background keep the interpolated input (they cost nothing).
    """
    s = model.config.img_size
    if overlap is None:
        overlap = max(4, s // 16)
    overlap = min(overlap, s // 4)  # a tile must advance by at least 3/4 of the canvas
    slices = np.moveaxis(volume, slice_axis, 0)  # (n, h, w) view
    n, h, w = slices.shape
    ys, xs = tile_starts(h, s, overlap), tile_starts(w, s, overlap)
    tiled = len(ys) > 1 or len(xs) > 1
    wy = _blend_weight(min(h, s), overlap if len(ys) > 1 else 0)
    wx = _blend_weight(min(w, s), overlap if len(xs) > 1 else 0)
    out = slices.copy()
    run = [i for i in range(n) if float(slices[i].max()) > background]
    step(n - len(run))
    jobs = [(i, y, x) for i in run for y in ys for x in xs]
    acc = np.zeros((n, h, w), dtype=np.float32) if tiled else None
    norm = np.zeros((h, w), dtype=np.float32) if tiled else None
    ph, pw = min(h, s), min(w, s)
    weight = wy[:, None] * wx[None, :]
    if tiled:
        for y in ys:
            for x in xs:
                norm[y : y + ph, x : x + pw] += weight
        # air-only tiles of a head slice: the interpolated input is the answer
        keep = []
        for i, y, x in jobs:
            patch = slices[i, y : y + ph, x : x + pw]
            if float(patch.max()) > background:
                keep.append((i, y, x))
            else:
                acc[i, y : y + ph, x : x + pw] += patch * weight
        jobs = keep
    chunk_size = max(1, batch_size * len(ys) * len(xs))
    slice_jobs_left = {i: 0 for i in run}
    for i, _, _ in jobs:
        slice_jobs_left[i] += 1
    step(sum(1 for i in run if slice_jobs_left[i] == 0))
    for start in range(0, len(jobs), chunk_size):
        chunk = jobs[start : start + chunk_size]
        batch = np.zeros((len(chunk), 1, s, s), dtype=np.float32)
        for b, (i, y, x) in enumerate(chunk):
            patch = slices[i, y : y + s, x : x + s]
            batch[b, 0, : patch.shape[0], : patch.shape[1]] = patch
        with torch.inference_mode(), _autocast(device):
            pred = model(torch.from_numpy(batch).to(device), phi=phi).float().cpu().numpy()
        done_slices = 0
        for b, (i, y, x) in enumerate(chunk):
            if tiled:
                acc[i, y : y + ph, x : x + pw] += pred[b, 0, :ph, :pw] * weight
            else:
                out[i] = pred[b, 0, :ph, :pw]
            slice_jobs_left[i] -= 1
            done_slices += slice_jobs_left[i] == 0
        step(done_slices)
    if tiled:
        out[run] = acc[run] / norm
    return np.moveaxis(out, 0, slice_axis), len(run), tiled



#: What ``transmrsr sr``, the app and ``benchmarks/default_weights.py`` do unless told otherwise:
#: run both planes that contain the thick axis and average them. On the bundled weights this adds
#: 0.25-0.4 dB brain PSNR for about twice the time (see the model cards).
DEFAULT_FUSION = True


def super_resolve(
    model: TransMRSR,
    lr: np.ndarray,
    axis: int,
    factor: int,
    *,
    phi: float | None = None,
    fusion: bool = False,
    n_thin: int | None = None,
    batch_size: int = 8,
    device: str | torch.device | None = None,
    tile_overlap: int | None = None,
    background: float = 0.01,
    progress: ProgressCallback | None = None,
    show_progress: bool = True,
) -> SRResult:
    """Super-resolve a thick-slice volume ``lr (X, Y, Z)`` along voxel axis ``axis`` by ``factor``.

    Args:
        phi: truncation level (``None``: the model's default).
        fusion: also run the second plane that contains the thick axis and average both.
        n_thin: slices of the output along ``axis`` (default ``lr.shape[axis] * factor``).
        device: ``"cuda"``, ``"cpu"``... (default: CUDA when available); bf16 autocast on CUDA.
        tile_overlap: overlap (pixels) between canvas tiles for slices larger than the canvas
            (default: a sixteenth of the canvas, at least 4).
        background: slices whose scaled maximum is at most this are not run.
        progress: called as ``progress(done, total)`` in slices.
    Returns:
        :class:`SRResult` in the input's intensity units.
    """
    from tqdm.auto import tqdm

    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = model.to(dev).eval()
    scaler = IntensityScaler.fit(lr)
    interp = interpolate_to_thin(scaler.forward(lr), axis, factor, n_thin=n_thin, mode="cubic")
    slice_axes = (default_slice_axis(axis),)
    if fusion:
        slice_axes = slice_axes + (min(a for a in range(3) if a not in (axis, slice_axes[0])),)
    total = sum(interp.shape[a] for a in slice_axes)
    bar = tqdm(total=total, unit="slice", desc="super-resolving", disable=not show_progress, leave=False)
    done = 0

    def step(k: int) -> None:
        nonlocal done
        if k:
            done += k
            bar.update(k)
            if progress is not None:
                progress(done, total)

    results, slices_run, tiled = [], 0, False
    try:
        for sa in slice_axes:
            out, n_run, t = _run_plane(model, interp, sa, phi, batch_size, dev, tile_overlap, background, step)
            results.append(out)
            slices_run += n_run
            tiled = tiled or t
    finally:
        bar.close()
    sr = results[0] if len(results) == 1 else np.mean(results, axis=0)
    sr = np.clip(sr, 0.0, None)  # intensities never fall below the volume's minimum
    return SRResult(
        sr=scaler.inverse(sr),
        interpolated=scaler.inverse(interp),
        slice_axes=slice_axes,
        slices_run=slices_run,
        canvas="tiles" if tiled else "pad",
    )


def resolve_geometry(vol, scale: int | None = None, axis: int | None = None) -> tuple[int, int]:
    """Thick axis and factor of a :class:`~transmrsr.data.io.Volume`.

    In order of precedence: ``scale`` / ``axis`` when given; what ``simulate`` recorded in the
    header; the voxel sizes (:func:`~transmrsr.data.io.thick_axis`).
    """
    from .data.io import VolumeError, simulation_tag, thick_axis

    path = vol.path
    if axis is not None and not 0 <= axis <= 2:
        raise VolumeError(f"{path}: --axis must be 0, 1 or 2, got {axis}")
    if scale is not None and scale < 2:
        raise VolumeError(f"{path}: --scale must be at least 2, got {scale}")
    tag = simulation_tag(vol.header)
    if isinstance(tag.get("axis"), int) and isinstance(tag.get("scale"), int) and 0 <= tag["axis"] <= 2:
        detected: tuple[int, int] | None = (int(tag["axis"]), int(tag["scale"]))
    else:
        detected = thick_axis(vol.zooms)
    if detected is None and (scale is None or axis is None):
        zooms = ", ".join(f"{z:.2f}" for z in vol.zooms)
        raise VolumeError(
            f"{path}: voxel sizes ({zooms} mm) are isotropic, so there is no thick axis to super-resolve; "
            "for a high-resolution scan, make a thick-slice version first with 'transmrsr simulate', "
            "or give both --scale and --axis"
        )
    a = axis if axis is not None else detected[0]
    if scale is not None:
        r = scale
    elif detected is not None and detected[0] == a:
        r = detected[1]
    else:
        raise VolumeError(f"{path}: axis {a} is not the thick axis of this volume; give --scale too")
    return a, r


def super_resolve_file(
    source,
    output_path,
    model: TransMRSR,
    *,
    scale: int | None = None,
    axis: int | None = None,
    **kwargs,
) -> tuple[SRResult, int, int]:
    """Super-resolve a thick-slice NIfTI (a path or an already loaded
    :class:`~transmrsr.data.io.Volume`) and write the SR NIfTI: the input affine moved onto the
    thin grid, the input header's metadata. Returns ``(result, axis, factor)``.

    ``kwargs`` go to :func:`super_resolve`; ``fusion`` defaults to :data:`DEFAULT_FUSION` here.
    The output is written atomically; on any error no output file is left behind.
    """
    from .data.degradation import thin_affine
    from .data.io import Volume, load_volume, save_volume, thin_count_from_header

    vol = source if isinstance(source, Volume) else load_volume(source)
    a, r = resolve_geometry(vol, scale, axis)
    n_thin = thin_count_from_header(vol.header)
    if n_thin is not None and not (vol.shape[a] - 1) * r < n_thin <= vol.shape[a] * r:
        n_thin = None  # the tag does not fit this geometry (e.g. another --scale): ignore it
    kwargs.setdefault("fusion", DEFAULT_FUSION)
    result = super_resolve(model, vol.data, a, r, n_thin=n_thin, **kwargs)
    save_volume(output_path, result.sr, thin_affine(vol.affine, a, r), header=vol.header)
    return result, a, r


def simulate_file(hr_path, lr_path, scale: int, axis: int, profile: str = "box"):
    """Write the thick-slice version of an HR NIfTI (exact inverse of ``sr``'s geometry)."""
    from .data.degradation import PROFILES, simulate_thick, thick_affine
    from .data.io import VolumeError, load_volume, save_volume, thin_count_tag

    if profile not in PROFILES:
        raise VolumeError(f"{hr_path}: unknown slice profile {profile!r}; choose one of {PROFILES}")
    if not 0 <= axis <= 2:
        raise VolumeError(f"{hr_path}: --axis must be 0, 1 or 2, got {axis}")
    if scale < 2:
        raise VolumeError(f"{hr_path}: --scale must be at least 2, got {scale}")
    vol = load_volume(hr_path)
    if vol.shape[axis] < scale:
        raise VolumeError(f"{hr_path}: only {vol.shape[axis]} slices along axis {axis}, fewer than the factor {scale}")
    lr = simulate_thick(vol.data, axis, scale, profile)
    header = vol.header.copy()
    header["descrip"] = thin_count_tag(vol.shape[axis], axis, scale, profile).encode()
    save_volume(lr_path, lr, thick_affine(vol.affine, axis, scale), header=header)
    return lr


def super_resolve_slices(
    model: TransMRSR,
    volume: np.ndarray,
    slice_axis: int,
    indices: list[int],
    phi,
    device: str | torch.device | None = None,
    tile_overlap: int | None = None,
) -> np.ndarray:
    """Super-resolve a few slices of a scaled, thin-grid volume (e.g. the one on screen, at a new
    ``phi``). ``phi`` may be a float or one value per index. Returns ``(len(indices), h, w)``."""
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    sub = np.stack([np.take(volume, i, axis=slice_axis) for i in indices])  # (n, h, w)
    phis = np.broadcast_to(np.asarray(phi, dtype=np.float32), (len(indices),))
    out = np.empty_like(sub)
    for k in range(len(indices)):
        # one "volume" of a single slice, run through the same canvas / tiling path
        single = sub[k : k + 1]
        res, _, _ = _run_plane(model, single, 0, float(phis[k]), 8, dev, tile_overlap, -np.inf, lambda n: None)
        out[k] = res[0]
    return out
