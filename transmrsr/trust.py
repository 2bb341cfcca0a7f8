"""Trust layer: where a super-resolved volume may be inventing anatomy (issue #18).

Three signals, each cheap next to the SR itself and each with a stated meaning:

* **Data consistency** (:func:`consistency_map`): the acquisition model (the scan's thick axis,
  factor, slice profile and gap; an in-plane box average where the output grid is finer
  in-plane) is applied to the SR and compared with the slices that were really acquired.
  ``|degrade(SR) - LR|`` is a map on the input (LR) grid and, spread back over the thin voxels
  each thick slice measured, on the SR grid. A faithful SR reproduces what was measured; a
  large residual means the SR contradicts the scan. Blind spot: whatever averages to zero
  within one slab (a structure invented *inside* a thick slice, balanced by a dark band next to
  it) leaves the residual unchanged. That is what the uncertainty is for.
* **Uncertainty** (:func:`uncertainty_map`): the per-voxel standard deviation of runs that
  should agree (:data:`UNCERTAINTY_METHODS`): the two planes of the fused run (free), the run on
  the mirrored scan, the runs at other truncation levels φ. Spatially smoothed, because errors
  of a slice-wise SR come in structures, not single voxels. By default the spread is then
  weighted by where the acquisition leaves the anatomy least determined
  (:func:`geometry_weighted`): the SR's through-plane contrast and each voxel's distance from
  the nearest acquired slice centre.
* **Out-of-range input** (:func:`input_range_warnings`): geometry and contrast tests against
  what the bundled weights were trained on (1 mm T1-weighted heads); each threshold is
  measured on the prepared public data (docs/trust.md).

Everything is in the input's intensity units unless said otherwise; arrays are voxel arrays
``(X, Y, Z)`` in the order of the NIfTI file. :func:`super_resolve_with_trust` runs the SR once
and returns the SR, the maps and the warnings, for the CLI (``transmrsr sr --consistency
--uncertainty``) and the app's overlays.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .data.degradation import SliceProfile, profile_matrix
from .data.normalization import IntensityScaler

if TYPE_CHECKING:
    from .inference import Acquisition, AcquisitionResult
    from .models import TransMRSR

#: Ways to get runs that should agree (see :func:`uncertainty_runs`), with their extra cost in
#: SR runs on top of the (fused) SR itself:
#:
#: * ``"planes"``: the two planes of the fused run (0 extra; needs fusion);
#: * ``"flips"``: the fused SR of the scan mirrored along both in-plane axes, mirrored back,
#:   beside the SR (1 extra run);
#: * ``"phi"``: the fused SR at φ = 0 and φ = 1 beside the SR at its own φ (2 extra runs): the
#:   spread the generative prior's truncation puts on each voxel;
#: * ``"planes+flips"``: the four planes of the plain and the mirrored fused runs (1 extra run).
UNCERTAINTY_METHODS = ("planes", "flips", "phi", "planes+flips")

#: The method ``transmrsr sr --uncertainty`` uses unless told otherwise (chosen on the
#: validation subjects, see docs/trust.md).
DEFAULT_UNCERTAINTY = "planes+flips"

#: Gaussian smoothing (voxels, standard deviation) of the per-voxel spread of the runs.
DEFAULT_SMOOTHING = 1.0

#: How the spread of the runs becomes the map (``transmrsr sr --uncertainty-weighting``):
#:
#: * ``"geometry"``: the spread weighted by the acquisition's geometry, :func:`geometry_weighted`
#:   (higher rank correlation with the true error on every validation case, docs/trust.md);
#: * ``"none"``: the spread of the runs itself (:func:`uncertainty_map`).
UNCERTAINTY_WEIGHTINGS = ("geometry", "none")
DEFAULT_WEIGHTING = "geometry"

#: A voxel of the LR counts as foreground for the consistency summary above this fraction of
#: the LR's robust intensity range (the scaling the network sees, :class:`IntensityScaler`).
FOREGROUND_FRACTION = 0.1


# --------------------------------------------------------------------------------------------
# Data consistency
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConsistencySummary:
    """One volume's data-consistency residual ``|degrade(SR) - LR|`` on the LR grid.

    Attributes:
        mean_abs: mean residual over the LR foreground, in the input's intensity units.
        relative: ``mean_abs`` over the LR's robust intensity range (its minimum to its 99.5th
            percentile above the minimum), a fraction: 0.01 is 1 % of the range. The number to
            compare across scans; docs/trust.md says what is small.
        p95_relative: the 95th percentile of the residual in the foreground, same scaling.
        foreground_voxels: LR voxels in the foreground (above :data:`FOREGROUND_FRACTION` of the range).
    """

    mean_abs: float
    relative: float
    p95_relative: float
    foreground_voxels: int

    def describe(self) -> str:
        return f"mean |degrade(SR) - LR| = {100 * self.relative:.2f} % of the intensity range (95th pct {100 * self.p95_relative:.2f} %)"


def _along(x: np.ndarray, axis: int, m: np.ndarray) -> np.ndarray:
    """``y[..., i, ...] = sum_j m[i, j] x[..., j, ...]`` along ``axis``; float32."""
    moved = np.moveaxis(np.asarray(x, dtype=np.float32), axis, -1)
    return np.ascontiguousarray(np.moveaxis(moved @ m.T.astype(np.float32), -1, axis))


def acquisition_matrices(
    acquisition: Acquisition, sr_shape: Sequence[int], lr_shape: Sequence[int]
) -> dict[int, np.ndarray]:
    """The acquisition model as one matrix ``(n_lr, n_sr)`` per voxel axis that it changes
    (rows sum to 1): along the thick axis the slice profile (spacing, thickness / gap, box or
    Gaussian, :meth:`Acquisition.slice_profile`), along an in-plane axis whose output grid is
    ``f != 1`` times finer a box average over each input voxel. Axes the SR keeps are absent."""
    mats = {}
    for i in range(3):
        f = float(acquisition.factors[i])
        if i == acquisition.axis:
            profile = acquisition.slice_profile()
        elif abs(f - 1.0) > 1e-9:
            profile = SliceProfile(spacing=max(f, 1.0), kind="box")
        else:
            if sr_shape[i] != lr_shape[i]:
                raise ValueError(f"axis {i}: SR has {sr_shape[i]} voxels, LR {lr_shape[i]}, but the factor is 1")
            continue
        mats[i] = profile_matrix(int(sr_shape[i]), profile, n_thick=int(lr_shape[i]))
    return mats


def degrade(sr: np.ndarray, lr_shape: Sequence[int], acquisition: Acquisition) -> np.ndarray:
    """Apply the acquisition model to ``sr`` (output grid, shape
    ``acquisition.output_shape(lr_shape)``): what the scanner would have measured had the
    anatomy been ``sr``. Returns float32 of shape ``lr_shape``, in ``sr``'s units. For a scan
    made by :func:`~transmrsr.data.degradation.simulate_thick`, ``degrade(HR) == LR`` up to
    float rounding."""
    out = np.asarray(sr, dtype=np.float32)
    for i, m in acquisition_matrices(acquisition, out.shape, lr_shape).items():
        out = _along(out, i, m)
    return out


def _spread_matrix(m: np.ndarray) -> np.ndarray:
    """``(n_sr, n_lr)``: each thin voxel takes the profile-weighted mean of the values of the
    thick slices that measured it; a voxel in a slice gap (measured by none) takes the nearest
    slice's value."""
    n_lr, n_sr = m.shape
    b = m.T.copy()
    s = b.sum(axis=1)
    if np.any(s <= 0):
        centres = (m * np.arange(n_sr)[None, :]).sum(axis=1)  # each thick slice's centre (thin voxels)
        for j in np.flatnonzero(s <= 0):
            b[j, int(np.argmin(np.abs(centres - j)))] = 1.0
        s = b.sum(axis=1)
    return b / s[:, None]


def spread_to_output(lr_map: np.ndarray, sr_shape: Sequence[int], acquisition: Acquisition) -> np.ndarray:
    """A map on the LR grid spread onto the SR grid ``sr_shape`` by the acquisition model (see
    :func:`_spread_matrix`): a thick slice's value covers the thin voxels it measured (piecewise
    constant across the slab for a box profile without gap). Returns float32 ``sr_shape``."""
    out = np.asarray(lr_map, dtype=np.float32)
    for i, m in acquisition_matrices(acquisition, sr_shape, out.shape).items():
        out = _along(out, i, _spread_matrix(m))
    return out


def consistency_map(
    sr: np.ndarray, lr: np.ndarray, acquisition: Acquisition
) -> tuple[np.ndarray, np.ndarray, ConsistencySummary]:
    """Data consistency of an SR with the scan it came from.

    Args:
        sr: the SR volume on the output grid, ``acquisition.output_shape(lr.shape)``, input units.
        lr: the acquired (thick-slice) volume ``(X, Y, Z)``, input units.
        acquisition: its geometry (:func:`~transmrsr.inference.detect_acquisition`, or
            :func:`simple_acquisition` for a simulated scan).
    Returns:
        ``(lr_grid_map, sr_grid_map, summary)``: ``|degrade(sr) - lr|`` (float32, ``lr.shape``,
        input units); the same spread onto the SR grid (float32, ``sr.shape``); a
        :class:`ConsistencySummary`.
    """
    lr = np.asarray(lr, dtype=np.float32)
    expected = tuple(acquisition.output_shape(lr.shape))
    if tuple(np.shape(sr)) != expected:
        raise ValueError(f"the SR has shape {tuple(np.shape(sr))}; this acquisition's output grid is {expected}")
    lr_map = np.abs(degrade(sr, lr.shape, acquisition) - lr)
    scaler = IntensityScaler.fit(lr)
    span = scaler.high - scaler.low
    fg = lr > scaler.low + FOREGROUND_FRACTION * span
    vals = lr_map[fg] if fg.any() else lr_map.ravel()
    summary = ConsistencySummary(
        mean_abs=float(vals.mean()),
        relative=float(vals.mean() / span),
        p95_relative=float(np.percentile(vals, 95) / span),
        foreground_voxels=int(fg.sum()),
    )
    return lr_map, spread_to_output(lr_map, expected, acquisition), summary


def simple_acquisition(
    axis: int, factor: float, *, n_thin: int | None = None, profile: str = "box", thickness: float | None = None
) -> Acquisition:
    """The :class:`~transmrsr.inference.Acquisition` of a scan simulated from a 1 mm volume
    (``transmrsr simulate``, :func:`~transmrsr.data.degradation.simulate_thick`): ``factor`` mm
    slices along ``axis``, 1 mm in-plane; ``thickness`` (mm, default ``factor``: no gap);
    ``n_thin`` the HR's slice count along ``axis``."""
    from .inference import Acquisition

    zooms = [1.0, 1.0, 1.0]
    zooms[axis] = float(factor)
    return Acquisition(
        axis=axis,
        zooms=tuple(zooms),
        factors=tuple(zooms),
        slice_thickness=float(thickness or factor),
        profile=profile,
        n_thin=n_thin,
    )


# --------------------------------------------------------------------------------------------
# Uncertainty
# --------------------------------------------------------------------------------------------


def uncertainty_map(runs: Sequence[np.ndarray], smoothing: float = DEFAULT_SMOOTHING) -> np.ndarray:
    """Per-voxel standard deviation (ddof 0) of ``runs`` (two or more volumes of one shape, the
    SR grid, input units), Gaussian-smoothed with ``smoothing`` voxels (0: none). Returns float32
    of the same shape, input units: about the typical disagreement of two runs at that place
    (for two runs it is half their absolute difference)."""
    from scipy import ndimage

    if len(runs) < 2:
        raise ValueError(f"an uncertainty needs at least two runs, got {len(runs)}")
    shape = np.shape(runs[0])
    if any(np.shape(r) != shape for r in runs):
        raise ValueError("the runs of an uncertainty map must share one shape")
    stack = np.stack([np.asarray(r, dtype=np.float32) for r in runs])
    sd = stack.std(axis=0).astype(np.float32)
    if smoothing > 0:
        sd = ndimage.gaussian_filter(sd, smoothing, mode="nearest").astype(np.float32)
    return sd


def slice_distance(acquisition: Acquisition, n_sr: int, n_lr: int) -> np.ndarray:
    """Distance of each output voxel along the thick axis from the centre of the nearest
    acquired slice, in slice spacings: 0 on a centre, 0.5 midway between two (``(n_sr,)``
    float32). Centres come from the acquisition model itself (the profile-weighted mean position
    of each slice's row of :func:`acquisition_matrices`), so any factor, gap or profile counts."""
    m = profile_matrix(int(n_sr), acquisition.slice_profile(), n_thick=int(n_lr))
    pos = np.arange(n_sr, dtype=np.float64)
    centres = (m * pos[None, :]).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-12)
    spacing = float(np.median(np.diff(centres))) if len(centres) > 1 else float(n_sr)
    d = np.abs(pos[:, None] - centres[None, :]).min(axis=1) / max(spacing, 1e-12)
    return d.astype(np.float32)


def geometry_weighted(
    spread: np.ndarray, sr: np.ndarray, acquisition: Acquisition, lr_shape: Sequence[int], smoothing: float
) -> np.ndarray:
    """The spread of the runs weighted by where the scan leaves the anatomy undetermined:

        u = sqrt(spread · |∂SR/∂t|) · (1 + d)

    with ``t`` the thick axis (``|∂SR/∂t|`` in input units per output voxel, Gaussian-smoothed
    like the spread) and ``d`` = :func:`slice_distance` (0–0.5). Why: a through-plane SR errs by
    placing an edge wrongly along ``t``, which costs that edge's contrast along ``t`` (a
    disagreement in a flat region costs little); and the acquisition pins each slice's centre
    best, its borders least — on the validation subjects the mean |SR − HR| is 35–45 % higher on
    slab borders than at slab centres. No fitted constants. Input units (about an error scale);
    read it relatively. ``spread``, ``sr``: the SR grid; returns float32 of that shape."""
    from scipy import ndimage

    axis = acquisition.axis
    grad = np.abs(np.gradient(np.asarray(sr, dtype=np.float32), axis=axis))
    if smoothing > 0:
        grad = ndimage.gaussian_filter(grad, smoothing, mode="nearest")
    shape = [1, 1, 1]
    shape[axis] = -1
    d = slice_distance(acquisition, sr.shape[axis], lr_shape[axis]).reshape(shape)
    return (np.sqrt(np.maximum(spread, 0) * grad) * (1.0 + d)).astype(np.float32)


def _mirror_axes(acq: Acquisition) -> tuple[int, int]:
    return tuple(a for a in range(3) if a != acq.axis)  # type: ignore[return-value]


def uncertainty_runs(
    method: str,
    base: AcquisitionResult,
    rerun: Callable[[np.ndarray, dict], AcquisitionResult],
    data: np.ndarray,
) -> tuple[list[np.ndarray], int]:
    """The runs that should agree for ``method`` (:data:`UNCERTAINTY_METHODS`) and how many extra
    SR runs they took.

    Args:
        base: the SR itself, run with ``keep_planes=True`` (its :attr:`planes`).
        rerun: ``rerun(data, overrides)`` super-resolves ``data`` with the base run's settings
            and ``overrides`` (``{"phi": 0.0}``...), ``keep_planes=True``.
        data: the scan ``(X, Y, Z)``, input units.
    """
    if method not in UNCERTAINTY_METHODS:
        raise ValueError(f"unknown uncertainty method {method!r}; choose one of {', '.join(UNCERTAINTY_METHODS)}")
    acq = base.acquisition
    if method == "planes":
        if len(base.planes) < 2:
            raise ValueError("the 'planes' uncertainty needs the fused run (both planes); do not turn fusion off")
        return list(base.planes), 0
    if method == "phi":
        return [base.sr] + [rerun(data, {"phi": p}).sr for p in (0.0, 1.0)], 2
    axes = _mirror_axes(acq)
    flipped = rerun(np.ascontiguousarray(np.flip(data, axis=axes)), {})
    back = [np.ascontiguousarray(np.flip(v, axis=axes)) for v in (flipped.planes or (flipped.sr,))]
    if method == "flips":
        return [base.sr, np.mean(back, axis=0) if len(back) > 1 else back[0]], 1
    return list(base.planes or (base.sr,)) + back, 1


# --------------------------------------------------------------------------------------------
# Out-of-range input
# --------------------------------------------------------------------------------------------

#: In-plane voxel sizes (mm) the bundled weights were trained near (1 mm volumes; factors
#: 1.5-10 along the thick axis are served, see the README); outside this range a warning.
INPLANE_MM = (0.5, 2.0)
#: Physical extent (mm) of the head foreground along any in-plane axis beyond which the
#: geometry is not a head's (a wrong unit, a broken affine). Crops are fine (no lower bound
#: other than the factor's own checks).
MAX_EXTENT_MM = 400.0
#: Largest |cos| between two affine axes: beyond it the voxel grid is sheared.
MAX_SHEAR_COS = 0.05
#: Contrast test: the median scaled intensity (:class:`IntensityScaler`) of the head
#: foreground in a central box (40 % of the foreground's extent per axis, around its centre
#: of mass). T1-weighted: white matter is bright and fills the centre (0.46-0.85 on the 12
#: training and validation T1 heads and the ICBM152 template); T2-weighted: CSF is bright, the
#: centre dark (0.29-0.32 on the two T2 volumes). Below this threshold: "not T1-like".
T1_CENTRE_MIN = 0.40
#: A volume with fewer distinct values than this is a label map or a mask, not an MR image.
MIN_DISTINCT_VALUES = 32
#: What per-scan adaptation gained on the allow-listed T2 / FLAIR heads at x4 (docs/user-guide.md):
#: every "not T1" warning (here, in the app's upload check, in the CLI) quotes it.
ADAPT_GAIN_NOT_T1 = "measured on T2 and FLAIR heads: +0.1 to +0.3 dB"
#: The sentence the library's "not T1" warnings end with (the CLI names its flag instead).
ADAPT_HINT_NOT_T1 = f"Adapting to this scan fits them to it first ({ADAPT_GAIN_NOT_T1})."


def centre_median(data: np.ndarray, foreground: np.ndarray | None = None) -> float:
    """The contrast statistic of :data:`T1_CENTRE_MIN`: the median scaled intensity of the
    foreground (``foreground``, default :func:`~transmrsr.evaluation.metrics.foreground_mask`)
    inside the central box of 40 % of the foreground's extent per axis. Scaled units (about 0-1)."""
    from scipy import ndimage

    from .evaluation.metrics import foreground_mask

    v = np.asarray(data, dtype=np.float32)
    x = IntensityScaler.fit(v).forward(v)
    fg = foreground_mask(v) if foreground is None else foreground
    if not fg.any():
        return float(np.median(x))
    c = np.array(ndimage.center_of_mass(fg))
    idx = np.argwhere(fg)
    ext = idx.max(axis=0) + 1 - idx.min(axis=0)
    lo = np.maximum(0, np.floor(c - 0.2 * ext)).astype(int)
    hi = np.ceil(c + 0.2 * ext).astype(int) + 1
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    inside = x[box][fg[box]]
    return float(np.median(inside if inside.size else x[fg]))


#: Volumes above this many voxels are tested on every second voxel per axis (the statistics
#: are coarse; this keeps the test near a second on a 1 mm head).
_SUBSAMPLE_ABOVE = 4_000_000


def input_range_warnings(
    data: np.ndarray, affine: np.ndarray, axis: int | None = None, *, contrast: bool = True
) -> list[str]:
    """Why this input is far from the training data, as sentences (empty: nothing found).

    Args:
        data: the scan ``(X, Y, Z)``, any units.
        affine: its voxel-to-world affine ``(4, 4)`` in mm.
        axis: its thick axis (``None``: the axis with the largest voxel size).
        contrast: also test the contrast (the bundled weights are T1 only; a user's own model
            may be trained on another contrast).
    Tests (documented with their measurements in docs/trust.md): a sheared or degenerate affine;
    in-plane voxel sizes outside :data:`INPLANE_MM`; a foreground extent beyond
    :data:`MAX_EXTENT_MM`; fewer than :data:`MIN_DISTINCT_VALUES` distinct values; a central
    contrast below :data:`T1_CENTRE_MIN` (bright CSF / dark white matter, as in T2). Not caught:
    FLAIR (its white matter is darker than grey matter, but CSF is dark too), pathology, other
    T1 sequences.
    """
    out: list[str] = []
    a = np.asarray(affine, dtype=np.float64)[:3, :3]
    zooms = np.linalg.norm(a, axis=0)
    if not np.all(np.isfinite(zooms)) or np.any(zooms <= 0):
        return [
            f"The affine is degenerate (voxel sizes {', '.join(f'{z:g}' for z in zooms)} mm); the geometry cannot be trusted."
        ]
    cols = a / zooms[None, :]
    cos = np.abs(cols.T @ cols - np.eye(3)).max()
    if cos > MAX_SHEAR_COS:
        out.append(
            f"The voxel grid is sheared (axes {math.degrees(math.acos(min(1.0, 1 - cos))):.0f}° off "
            "perpendicular); the model was trained on orthogonal grids."
        )
    thick = int(np.argmax(zooms)) if axis is None else int(axis)
    inplane = [float(zooms[i]) for i in range(3) if i != thick]
    lo, hi = INPLANE_MM
    if any(not lo <= z <= hi for z in inplane):
        out.append(
            f"In-plane voxel sizes {inplane[0]:.2f} x {inplane[1]:.2f} mm are far from the 1 mm the model "
            f"was trained on (expected {lo:g}-{hi:g} mm); check the header's units."
        )
    v = np.asarray(data)
    if np.unique(v[:: max(1, v.shape[0] // 64)]).size < MIN_DISTINCT_VALUES:
        out.append(
            f"The volume holds fewer than {MIN_DISTINCT_VALUES} distinct values: a label map or mask, not an MR image."
        )
        return out
    from .evaluation.metrics import foreground_mask

    step = 2 if v.size > _SUBSAMPLE_ABOVE else 1
    v = np.asarray(v[::step, ::step, ::step], dtype=np.float32)
    fg = foreground_mask(v)
    if fg.any():
        idx = np.argwhere(fg)
        ext = (idx.max(axis=0) + 1 - idx.min(axis=0)) * zooms * step
        big = [f"{ext[i]:.0f} mm" for i in range(3) if i != thick and ext[i] > MAX_EXTENT_MM]
        if big:
            out.append(
                f"The head spans {', '.join(big)} in-plane, more than any head ({MAX_EXTENT_MM:g} mm); "
                "check the voxel sizes."
            )
    c = centre_median(v, fg) if contrast else 1.0
    if c < T1_CENTRE_MIN:
        out.append(
            f"The contrast does not look T1-weighted: the centre of the head is dark ({c:.2f} of the "
            f"intensity range; T1 heads: 0.46-0.85, T2: about 0.3), as when CSF is bright and white matter "
            f"dark. The weights are trained on T1 only; the result may be wrong. {ADAPT_HINT_NOT_T1}"
        )
    return out


# --------------------------------------------------------------------------------------------
# One run with its trust maps
# --------------------------------------------------------------------------------------------


@dataclass
class TrustMaps:
    """The trust layer of one SR run (what the app overlays; all float32).

    Attributes:
        consistency_lr: ``|degrade(SR) - LR|`` on the input grid ``(X, Y, Z)``, input units.
        consistency_sr: the same on the SR grid (shape of the SR), input units.
        consistency: its :class:`ConsistencySummary`.
        consistency_cubic: the same summary for plain cubic interpolation (for scale).
        uncertainty: the uncertainty on the SR grid, input units (``None`` if not asked): the
            spread of the runs, weighted as ``weighting`` says.
        method: the uncertainty method (:data:`UNCERTAINTY_METHODS`) or ``None``.
        weighting: :data:`UNCERTAINTY_WEIGHTINGS` entry the map used, or ``None``.
        extra_runs: SR runs made for the uncertainty beyond the SR itself.
        warnings: :func:`input_range_warnings` of the input.
        seconds: wall time of the SR (``"sr"``), the extra runs (``"uncertainty"``) and the
            consistency (``"consistency"``).
    """

    consistency_lr: np.ndarray
    consistency_sr: np.ndarray
    consistency: ConsistencySummary
    consistency_cubic: ConsistencySummary
    uncertainty: np.ndarray | None = None
    method: str | None = None
    weighting: str | None = None
    extra_runs: int = 0
    warnings: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def trust_for_result(
    result: AcquisitionResult,
    data: np.ndarray,
    rerun: Callable[[np.ndarray, dict], AcquisitionResult] | None,
    *,
    uncertainty: str | None = DEFAULT_UNCERTAINTY,
    smoothing: float = DEFAULT_SMOOTHING,
    weighting: str = DEFAULT_WEIGHTING,
    affine: np.ndarray | None = None,
) -> TrustMaps:
    """The :class:`TrustMaps` of an SR already made (``result``, run with ``keep_planes=True``)
    from ``data`` (the scan, input units). ``rerun`` makes the extra runs of the uncertainty
    (see :func:`uncertainty_runs`); ``weighting`` (:data:`UNCERTAINTY_WEIGHTINGS`) turns their
    spread into the map; ``affine`` (the scan's) enables the input warnings."""
    if weighting not in UNCERTAINTY_WEIGHTINGS:
        raise ValueError(
            f"unknown uncertainty weighting {weighting!r}; choose one of {', '.join(UNCERTAINTY_WEIGHTINGS)}"
        )
    t0 = time.perf_counter()
    lr_map, sr_map, summary = consistency_map(result.sr, data, result.acquisition)
    _, _, cubic = consistency_map(result.cubic, data, result.acquisition)
    seconds = {"sr": float((result.seconds or {}).get("sr", 0.0)), "consistency": time.perf_counter() - t0}
    maps = TrustMaps(
        consistency_lr=lr_map, consistency_sr=sr_map, consistency=summary, consistency_cubic=cubic, seconds=seconds
    )
    if affine is not None:
        maps.warnings = input_range_warnings(data, affine, result.acquisition.axis)
    if uncertainty is not None:
        t0 = time.perf_counter()
        if rerun is None and uncertainty != "planes":
            raise ValueError(f"the {uncertainty!r} uncertainty needs extra runs, and no rerun was given")
        runs, extra = uncertainty_runs(uncertainty, result, rerun, data)  # type: ignore[arg-type]
        spread = uncertainty_map(runs, smoothing)
        if weighting == "geometry":
            spread = geometry_weighted(spread, result.sr, result.acquisition, data.shape, smoothing)
        maps.uncertainty = spread
        maps.method, maps.weighting, maps.extra_runs = uncertainty, weighting, extra
        seconds["uncertainty"] = time.perf_counter() - t0
    return maps


def super_resolve_with_trust(
    get_model: Callable[[int], TransMRSR],
    data: np.ndarray,
    acq: Acquisition,
    *,
    affine: np.ndarray | None = None,
    uncertainty: str | None = DEFAULT_UNCERTAINTY,
    smoothing: float = DEFAULT_SMOOTHING,
    weighting: str = DEFAULT_WEIGHTING,
    **kwargs,
) -> tuple[AcquisitionResult, TrustMaps]:
    """:func:`~transmrsr.inference.super_resolve_acquisition` plus its :class:`TrustMaps`.

    The SR is the one the plain call returns (same settings, bit-identical; ``fusion`` defaults
    to :data:`~transmrsr.inference.DEFAULT_FUSION` as in ``transmrsr sr``). ``kwargs`` go to
    :func:`~transmrsr.inference.super_resolve_acquisition` (``served``, ``strategy``, ``phi``,
    ``device``, ``adapt``...). With ``adapt`` the model is adapted once and the extra runs reuse
    the adapted copy. Returns ``(result, maps)``; ``result.planes`` holds the fused run's planes.
    """
    from .inference import DEFAULT_FUSION, super_resolve_acquisition

    kwargs.setdefault("fusion", DEFAULT_FUSION)
    kwargs["keep_planes"] = True
    if uncertainty == "planes" and not kwargs["fusion"]:
        raise ValueError("the 'planes' uncertainty needs the fused run (both planes); do not turn fusion off")
    adapt = kwargs.pop("adapt", None)
    report, adapt_seconds = None, 0.0
    if adapt is not None:
        # adapt once, here, exactly as super_resolve_acquisition would (same plan, same working
        # input, same options): the SR is the same, and the extra runs reuse the adapted copy
        from .adapt import adapt_model
        from .inference import DEFAULT_STRATEGY, plan_serving, working_input

        plan = plan_serving(acq, kwargs.get("served", (4, 8)), kwargs.get("strategy", DEFAULT_STRATEGY))
        lr_w, _ = working_input(data, acq, plan)
        t0 = time.perf_counter()
        tuned, report = adapt_model(get_model(plan.model_factor), lr_w, acq, plan, adapt, device=kwargs.get("device"))
        adapt_seconds = time.perf_counter() - t0
        model_for: Callable[[int], TransMRSR] = lambda m: tuned  # noqa: E731
    else:
        model_for = get_model
    result = super_resolve_acquisition(model_for, data, acq, **kwargs)
    if report is not None:
        result.adapt = report
        result.seconds = {**(result.seconds or {}), "adapt": adapt_seconds}
    quiet = {k: v for k, v in kwargs.items() if k != "progress"}
    quiet["show_progress"] = False

    def rerun(vol: np.ndarray, overrides: dict) -> AcquisitionResult:
        return super_resolve_acquisition(model_for, vol, acq, **{**quiet, **overrides})

    maps = trust_for_result(
        result, data, rerun, uncertainty=uncertainty, smoothing=smoothing, weighting=weighting, affine=affine
    )
    return result, maps
