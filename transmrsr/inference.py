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
from typing import TYPE_CHECKING

import numpy as np
import torch

from .data.degradation import SliceProfile, interpolate_to_grid
from .data.normalization import IntensityScaler
from .models import TransMRSR

ProgressCallback = Callable[[int, int], None]

if TYPE_CHECKING:
    from .adapt import AdaptOptions, AdaptReport


@dataclass
class SRResult:
    """Output of :func:`super_resolve`, all on the thin grid, in the input's intensity units.

    Attributes:
        sr: super-resolved volume (float32).
        interpolated: the cubic interpolation the network started from (float32).
        slice_axes: the voxel axes the slices were taken along (one, or two with fusion).
        slices_run: how many slices went through the network (background slices are skipped).
        canvas: ``"pad"`` when every slice fits the canvas, else ``"tiles"``.
        planes: with ``keep_planes=True``, the SR of each plane of ``slice_axes`` before they are
            averaged (same shape and units as ``sr``, each clipped like it); else empty. The
            trust layer's uncertainty (:mod:`transmrsr.trust`) reads their disagreement.
    """

    sr: np.ndarray
    interpolated: np.ndarray
    slice_axes: tuple[int, ...]
    slices_run: int
    canvas: str
    planes: tuple[np.ndarray, ...] = ()


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
    oy, ox = (s - ph) // 2, (s - pw) // 2  # a slice smaller than the canvas sits in its centre
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
            # centred on the canvas, as the training slices are (datasets._place)
            batch[b, 0, oy : oy + patch.shape[0], ox : ox + patch.shape[1]] = patch
        with torch.inference_mode(), _autocast(device):
            pred = model(torch.from_numpy(batch).to(device), phi=phi).float().cpu().numpy()
        done_slices = 0
        for b, (i, y, x) in enumerate(chunk):
            if tiled:
                acc[i, y : y + ph, x : x + pw] += pred[b, 0, oy : oy + ph, ox : ox + pw] * weight
            else:
                out[i] = pred[b, 0, oy : oy + ph, ox : ox + pw]
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
    factor: float,
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
    keep_planes: bool = False,
) -> SRResult:
    """Super-resolve a thick-slice volume ``lr (X, Y, Z)`` along voxel axis ``axis`` by ``factor``
    (an integer, or any real factor >= 1: the cubic start is then sampled at the thin positions of
    :func:`~transmrsr.data.degradation.interpolate_to_grid`; see :func:`super_resolve_acquisition`
    for serving a non-integer factor with integer-factor models).

    Args:
        phi: truncation level (``None``: the model's default).
        fusion: also run the second plane that contains the thick axis and average both.
        n_thin: slices of the output along ``axis`` (default ``round(lr.shape[axis] * factor)``).
        device: ``"cuda"``, ``"cpu"``... (default: CUDA when available); bf16 autocast on CUDA.
        tile_overlap: overlap (pixels) between canvas tiles for slices larger than the canvas
            (default: a sixteenth of the canvas, at least 4).
        background: slices whose scaled maximum is at most this are not run.
        progress: called as ``progress(done, total)`` in slices.
        keep_planes: also return each plane's SR (:attr:`SRResult.planes`); ``sr`` is unchanged.
    Returns:
        :class:`SRResult` in the input's intensity units.
    """
    from tqdm.auto import tqdm

    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = model.to(dev).eval()
    scaler = IntensityScaler.fit(lr)
    interp = interpolate_to_grid(scaler.forward(lr), axis, factor, n_thin=n_thin, mode="cubic")
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
    planes = tuple(scaler.inverse(np.clip(p, 0.0, None)) for p in results) if keep_planes else ()
    return SRResult(
        sr=scaler.inverse(sr),
        interpolated=scaler.inverse(interp),
        slice_axes=slice_axes,
        slices_run=slices_run,
        canvas="tiles" if tiled else "pad",
        planes=planes,
    )


#: The neutral words for the ``axis`` and ``scale`` parameters in error messages (:mod:`transmrsr.errors`).
_AXIS = {"axis": "the thick axis"}
_SCALE = {"scale": "the slice-thickness factor"}


def resolve_geometry(vol, scale: int | None = None, axis: int | None = None) -> tuple[int, int]:
    """Thick axis and factor of a :class:`~transmrsr.data.io.Volume`.

    In order of precedence: ``scale`` / ``axis`` when given; what ``simulate`` recorded in the
    header; the voxel sizes (:func:`~transmrsr.data.io.thick_axis`).
    """
    from .data.io import VolumeError, simulation_tag, thick_axis

    path = vol.path
    if axis is not None and not 0 <= axis <= 2:
        raise VolumeError(f"{path}: {{axis}} must be 0, 1 or 2, got {axis}", params=_AXIS)
    if scale is not None and scale < 2:
        raise VolumeError(f"{path}: {{scale}} must be at least 2, got {scale}", params=_SCALE)
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
            "or give both {scale} and {axis}",
            params={**_SCALE, **_AXIS},
        )
    a = axis if axis is not None else detected[0]
    if scale is not None:
        r = scale
    elif detected is not None and detected[0] == a:
        r = detected[1]
    else:
        raise VolumeError(
            f"{path}: axis {a} is not the thick axis of this volume; give {{scale}} too",
            params=_SCALE,
        )
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
        raise VolumeError(f"{hr_path}: {{axis}} must be 0, 1 or 2, got {axis}", params=_AXIS)
    if scale < 2:
        raise VolumeError(f"{hr_path}: {{scale}} must be at least 2, got {scale}", params=_SCALE)
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


# --------------------------------------------------------------------------------------------
# Any acquisition: a non-integer factor from 1.5 to 10, slice gaps, anisotropic in-plane voxels.
# --------------------------------------------------------------------------------------------

#: Supported range of the thick-axis factor (slice spacing over the output voxel size).
MIN_FACTOR, MAX_FACTOR = 1.5, 10.0

#: How a factor ``r`` is served by models trained at integer factors ``m`` (see docs/user-guide.md, "Any slice thickness"):
#:
#: * ``"grid"``: the in-plane axes are resampled (cubic) to ``spacing / m`` with ``m`` the
#:   smallest served factor >= ``r`` (the largest when none is), so the thick axis is exactly
#:   ``m`` times the working voxel, as in training; the model runs there; the result is resampled
#:   (cubic) to the output grid;
#: * ``"direct"``: the nearest served model (in log-factor) runs on the output grid itself, its
#:   cubic start sampled at the real factor;
#: * ``"thick"``: the thick axis is first resampled (cubic, between thick slices) to a spacing of
#:   exactly ``m`` output voxels (nearest ``m``), then the model runs on the output grid.
SERVING_STRATEGIES = ("grid", "direct", "thick")
DEFAULT_STRATEGY = "grid"


def read_slice_thickness(path) -> float | None:
    """Slice thickness (mm) from a BIDS / dcm2niix sidecar next to a NIfTI (``scan.json`` beside
    ``scan.nii.gz``: ``SliceThickness``), or ``None`` when there is none. NIfTI voxel sizes hold
    the slice *spacing*; this is where a gap (thickness < spacing) is recorded."""
    import json
    from pathlib import Path

    p = Path(str(path))
    name = p.name
    for ext in (".nii.gz", ".nii"):
        if name.lower().endswith(ext):
            name = name[: -len(ext)]
            break
    side = p.with_name(name + ".json")
    if not side.is_file():
        return None
    try:
        value = json.loads(side.read_text()).get("SliceThickness")
    except (OSError, ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


@dataclass(frozen=True)
class Acquisition:
    """Geometry of a thick-slice scan and of the output grid.

    Attributes:
        axis: the thick voxel axis (0, 1 or 2).
        zooms: voxel spacing (mm) along the three voxel axes, from the affine.
        factors: how many times finer the output grid is along each voxel axis. From the header:
            ``zooms / min(in-plane zooms)`` (the output is isotropic at the finest in-plane
            spacing; a coarser in-plane axis is resampled too); with an explicit scale: 1 in-plane.
        slice_thickness: slice thickness (mm); equal to ``zooms[axis]`` without a gap.
        profile: slice profile, ``"box"`` or ``"gaussian"`` (FWHM = the thickness).
        n_thin: output slices along ``axis`` (``None``: ``round(n * factor)``).
    """

    axis: int
    zooms: tuple[float, float, float]
    factors: tuple[float, float, float]
    slice_thickness: float
    profile: str = "box"
    n_thin: int | None = None

    @property
    def factor(self) -> float:
        """Thick-axis factor ``r``: slice spacing over the output voxel size."""
        return float(self.factors[self.axis])

    @property
    def out_spacing(self) -> float:
        """Output voxel size (mm) along the thick axis."""
        return self.zooms[self.axis] / self.factor

    @property
    def has_gap(self) -> bool:
        return self.slice_thickness < self.zooms[self.axis] - 1e-6

    def slice_profile(self, voxel_mm: float | None = None) -> SliceProfile:
        """The slice profile in voxels of ``voxel_mm`` (default: the output voxel)."""
        v = self.out_spacing if voxel_mm is None else voxel_mm
        return SliceProfile(spacing=self.zooms[self.axis] / v, thickness=self.slice_thickness / v, kind=self.profile)

    def output_shape(self, shape: tuple[int, int, int]) -> tuple[int, int, int]:
        from .data.degradation import grid_size

        out = [grid_size(n, f) for n, f in zip(shape, self.factors)]
        if self.n_thin is not None:
            out[self.axis] = self.n_thin
        return tuple(out)

    def output_affine(self, affine: np.ndarray) -> np.ndarray:
        """Affine of the output grid (see :func:`~transmrsr.data.degradation.resample_affine`)."""
        from .data.degradation import resample_affine

        return resample_affine(affine, self.factors)


def detect_acquisition(
    vol,
    *,
    axis: int | None = None,
    scale: float | None = None,
    slice_thickness: float | None = None,
    profile: str = "box",
) -> Acquisition:
    """Thick axis, factor, gap and output grid of a :class:`~transmrsr.data.io.Volume`.

    The thick axis is ``axis``, else what ``simulate`` recorded in the header, else the axis whose
    voxel size is at least 1.5x the others. The factor is ``scale`` when given (the in-plane grid
    is then kept as it is), else the thick voxel size over the finest in-plane voxel size (the
    output is isotropic at that spacing). ``slice_thickness`` (mm) defaults to a sidecar's
    ``SliceThickness`` (:func:`read_slice_thickness`), else the slice spacing (no gap).
    Raises :class:`~transmrsr.data.io.VolumeError` with the file and the reason.
    """
    from .data.degradation import PROFILES
    from .data.io import THICK_RATIO, VolumeError, simulation_tag, thin_count_from_header

    path = vol.path
    zooms = tuple(float(z) for z in vol.zooms)
    if profile not in PROFILES:
        raise VolumeError(f"{path}: unknown slice profile {profile!r}; choose one of {PROFILES}")
    if axis is not None and axis not in (0, 1, 2):
        raise VolumeError(f"{path}: {{axis}} must be 0, 1 or 2, got {axis}", params=_AXIS)
    tag = simulation_tag(vol.header)
    tagged = isinstance(tag.get("axis"), int) and isinstance(tag.get("scale"), int) and 0 <= tag["axis"] <= 2
    if axis is None:
        if tagged:
            axis = int(tag["axis"])
        else:
            z = np.asarray(zooms)
            a = int(np.argmax(z))
            if z[a] / np.delete(z, a).max() < THICK_RATIO:
                shown = ", ".join(f"{v:.2f}" for v in zooms)
                raise VolumeError(
                    f"{path}: voxel sizes ({shown} mm) are isotropic, so there is no thick axis to super-resolve; "
                    "for a high-resolution scan, make a thick-slice version first with 'transmrsr simulate', "
                    "or give both {scale} and {axis}",
                    params={**_SCALE, **_AXIS},
                )
            axis = a
    if scale is not None:
        factors = [1.0, 1.0, 1.0]
        factors[axis] = float(scale)
    else:
        finest = min(zooms[i] for i in range(3) if i != axis)
        factors = [z / finest for z in zooms]
        if tagged and int(tag["axis"]) == axis and abs(factors[axis] - tag["scale"]) < 1e-3:
            factors[axis] = float(tag["scale"])
        factors = [1.0 if abs(f - 1.0) < 1e-4 else f for f in factors]
    r = factors[axis]
    if not MIN_FACTOR - 1e-6 <= r <= MAX_FACTOR + 1e-6:
        raise VolumeError(
            f"{path}: the thick-axis factor is {r:.2f} (slice spacing {zooms[axis]:.2f} mm over "
            f"{zooms[axis] / r:.2f} mm voxels); supported: {MIN_FACTOR} to {MAX_FACTOR:g}"
        )
    if slice_thickness is None:
        slice_thickness = read_slice_thickness(path) if path and path != "<memory>" else None
    if slice_thickness is None:
        slice_thickness = zooms[axis]
    if not (np.isfinite(slice_thickness) and 0 < slice_thickness <= 3 * zooms[axis]):
        raise VolumeError(
            f"{path}: slice thickness {slice_thickness} mm does not fit a slice spacing of {zooms[axis]:.2f} mm "
            "(expected more than 0 and at most 3x the spacing)"
        )
    n_thin = thin_count_from_header(vol.header)
    n = vol.shape[axis]
    if n_thin is not None and float(r) == int(r) and not (n - 1) * r < n_thin <= n * r:
        n_thin = None
    if n_thin is not None and float(r) != int(r):
        n_thin = None
    return Acquisition(
        axis=axis,
        zooms=zooms,
        factors=tuple(float(f) for f in factors),
        slice_thickness=float(slice_thickness),
        profile=profile,
        n_thin=n_thin,
    )


@dataclass(frozen=True)
class ServingPlan:
    """How one acquisition is served (see :data:`SERVING_STRATEGIES`).

    Attributes:
        strategy: ``"grid"``, ``"direct"`` or ``"thick"``.
        model_factor: the integer factor of the model that runs.
        working: how many times finer than the input the model's grid is, per voxel axis.
        thick_factor: the factor the model's cubic start interpolates by along the thick axis
            (``model_factor``, or the real factor for ``"direct"``).
    """

    strategy: str
    model_factor: int
    working: tuple[float, float, float]
    thick_factor: float


def plan_serving(acq: Acquisition, served: tuple[int, ...] = (4, 8), strategy: str = DEFAULT_STRATEGY) -> ServingPlan:
    """Pick the model and the working grid for ``acq`` among models trained at ``served`` factors."""
    if strategy not in SERVING_STRATEGIES:
        raise ValueError(f"unknown serving strategy {strategy!r}; choose one of {SERVING_STRATEGIES}")
    if not served:
        raise ValueError("no served factors: at least one model is needed")
    r = acq.factor
    nearest = min(served, key=lambda m: (abs(math.log(m / r)), m))
    if strategy == "grid":
        above = [m for m in served if m >= r - 1e-6]
        m = min(above) if above else max(served)
        k = m / r  # the working grid is k times finer than the output grid
        working = tuple(f * k for f in acq.factors)
        return ServingPlan("grid", m, working, float(m))
    if strategy == "thick":
        return ServingPlan("thick", nearest, acq.factors, float(nearest))
    return ServingPlan("direct", nearest, acq.factors, r)


@dataclass
class AcquisitionResult:
    """Output of :func:`super_resolve_acquisition`, on the output grid, in the input's units.

    Attributes:
        sr: super-resolved volume (float32), shape :meth:`Acquisition.output_shape`.
        cubic: plain cubic interpolation of the input onto the same grid (float32).
        acquisition, plan: the geometry and how it was served.
        slices_run: slices that went through the network.
        adapt: the adaptation's report (``None`` without adaptation).
        seconds: wall time of adaptation and of super-resolution.
        planes: with ``keep_planes=True`` (passed on to :func:`super_resolve`), each plane's SR on
            the output grid, clipped like ``sr``; else empty.
    """

    sr: np.ndarray
    cubic: np.ndarray
    acquisition: Acquisition
    plan: ServingPlan
    slices_run: int
    adapt: AdaptReport | None = None
    seconds: dict[str, float] | None = None
    planes: tuple[np.ndarray, ...] = ()


def cubic_to_output(data: np.ndarray, acq: Acquisition) -> np.ndarray:
    """Cubic interpolation of ``data`` (input grid) onto the output grid (separable, per axis)."""
    from .data.degradation import grid_positions, interpolate_to_grid, resample_axis

    out = np.asarray(data, dtype=np.float32)
    shape = acq.output_shape(out.shape)
    for i, f in enumerate(acq.factors):
        if i == acq.axis:
            out = interpolate_to_grid(out, i, f, n_thin=shape[i])
        elif f != 1.0:
            out = resample_axis(out, i, grid_positions(out.shape[i], f, shape[i]))
    return out


def working_input(data: np.ndarray, acq: Acquisition, plan: ServingPlan) -> tuple[np.ndarray, int]:
    """The thick volume the model's pipeline starts from (input units): in-plane axes on the
    working grid, thick axis at ``plan.thick_factor`` working voxels per slice; and the number of
    thin slices to make from it. Shapes: ``(X', Y', n')`` for a thick axis 2."""
    from .data.degradation import grid_positions, grid_size, resample_axis

    x = np.asarray(data, dtype=np.float32)
    for i, f in enumerate(plan.working):
        if i != acq.axis and f != 1.0:
            x = resample_axis(x, i, grid_positions(x.shape[i], f))
    n = x.shape[acq.axis]
    n_out = acq.output_shape(data.shape)[acq.axis]
    if plan.strategy == "grid":
        return x, grid_size(n, plan.working[acq.axis])
    if plan.strategy == "thick" and abs(plan.thick_factor - acq.factor) > 1e-6:
        m, r = plan.thick_factor, acq.factor
        k = max(1, math.ceil(n_out / m - 1e-9))
        x = resample_axis(x, acq.axis, m * (np.arange(k) + 0.5) / r - 0.5)
    return x, n_out


def to_output_grid(vol: np.ndarray, acq: Acquisition, plan: ServingPlan, shape: tuple[int, int, int]) -> np.ndarray:
    """Resample a working-grid volume onto the output grid ``shape`` (identity where the grids agree)."""
    from .data.degradation import resample_axis

    out = vol
    for i in range(3):
        k = plan.working[i] / acq.factors[i]
        if abs(k - 1.0) < 1e-9:
            out = out[(slice(None),) * i + (slice(0, shape[i]),)]
            continue
        u = (np.arange(shape[i]) + 0.5) / acq.factors[i] - 0.5  # input voxel coordinates
        out = resample_axis(out, i, (u + 0.5) * plan.working[i] - 0.5)
    return np.ascontiguousarray(out, dtype=np.float32)


def super_resolve_acquisition(
    get_model: Callable[[int], TransMRSR],
    data: np.ndarray,
    acq: Acquisition,
    *,
    served: tuple[int, ...] = (4, 8),
    strategy: str = DEFAULT_STRATEGY,
    adapt: AdaptOptions | None = None,
    **kwargs,
) -> AcquisitionResult:
    """Super-resolve ``data (X, Y, Z)`` of geometry ``acq`` onto its output grid.

    Args:
        get_model: returns the model trained at an integer factor (one of ``served``).
        served: the factors models exist for.
        strategy: see :data:`SERVING_STRATEGIES`.
        adapt: :class:`~transmrsr.adapt.AdaptOptions` to fine-tune a copy of the model on this
            scan first (``None``: no adaptation). The loaded model is never changed.
        kwargs: go to :func:`super_resolve` (``phi``, ``fusion``, ``batch_size``, ``device``,
            ``progress``, ``show_progress``...).
    """
    import time

    plan = plan_serving(acq, served, strategy)
    model = get_model(plan.model_factor)
    lr_w, n_w = working_input(data, acq, plan)
    seconds = {"adapt": 0.0}
    report = None
    if adapt is not None:
        from .adapt import adapt_model

        t0 = time.perf_counter()
        model, report = adapt_model(model, lr_w, acq, plan, adapt, device=kwargs.get("device"))
        seconds["adapt"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = super_resolve(model, lr_w, acq.axis, plan.thick_factor, n_thin=n_w, **kwargs)
    shape = acq.output_shape(np.shape(data))
    sr = to_output_grid(res.sr, acq, plan, shape)
    sr = np.maximum(sr, float(np.min(data)))
    planes = tuple(np.maximum(to_output_grid(p, acq, plan, shape), float(np.min(data))) for p in res.planes)
    seconds["sr"] = time.perf_counter() - t0
    return AcquisitionResult(
        sr=sr,
        cubic=cubic_to_output(data, acq),
        acquisition=acq,
        plan=plan,
        slices_run=res.slices_run,
        adapt=report,
        seconds=seconds,
        planes=planes,
    )


def super_resolve_acquisition_file(
    source,
    output_path,
    get_model: Callable[[int], TransMRSR],
    *,
    served: tuple[int, ...] = (4, 8),
    axis: int | None = None,
    scale: float | None = None,
    slice_thickness: float | None = None,
    profile: str = "box",
    strategy: str = DEFAULT_STRATEGY,
    adapt: AdaptOptions | None = None,
    **kwargs,
) -> AcquisitionResult:
    """Super-resolve a thick-slice NIfTI (path or loaded :class:`~transmrsr.data.io.Volume`) of
    any factor and write the SR NIfTI on the output grid (:meth:`Acquisition.output_affine`,
    the input header's metadata), atomically. ``fusion`` defaults to :data:`DEFAULT_FUSION`."""
    from .data.io import Volume, load_volume, save_volume

    vol = source if isinstance(source, Volume) else load_volume(source)
    acq = detect_acquisition(vol, axis=axis, scale=scale, slice_thickness=slice_thickness, profile=profile)
    kwargs.setdefault("fusion", DEFAULT_FUSION)
    result = super_resolve_acquisition(
        get_model, vol.data, acq, served=served, strategy=strategy, adapt=adapt, **kwargs
    )
    save_volume(output_path, result.sr, acq.output_affine(vol.affine), header=vol.header)
    return result
