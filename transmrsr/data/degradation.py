"""Thick-slice geometry, simulation and interpolation along the thick axis.

Convention (used everywhere in transmrsr): thick slice ``k`` along the thick axis covers thin
slices ``k*r .. k*r + r - 1`` and its centre sits at their centre. Hence, with ``a`` the
thick axis' affine column:

* thin-grid affine: column ``a / r``, origin ``t - (r - 1) / 2 * a / r``;
* thick-grid affine: column ``a * r_thin``, origin ``t_thin + (r - 1) / 2 * a_thin``.

``simulate_thick`` averages each group of ``r`` thin slices (box profile) or weights them with a
Gaussian slice profile (FWHM = one thick slice); ``interpolate_to_thin`` maps thick slices back
onto the thin grid with the same convention (thin slice ``j`` sits at thick coordinate
``(j - (r - 1) / 2) / r``), which is exactly what ``torch.nn.functional.interpolate`` with
``align_corners=False`` does.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

PROFILES = ("box", "gaussian")


def thin_affine(thick_affine: np.ndarray, axis: int, factor: int) -> np.ndarray:
    """Affine of the thin (SR) grid from the thick grid's affine."""
    a = np.array(thick_affine, dtype=np.float64)
    out = a.copy()
    out[:3, axis] = a[:3, axis] / factor
    out[:3, 3] = a[:3, 3] - (factor - 1) / 2.0 * out[:3, axis]
    return out


def thick_affine(thin_affine_: np.ndarray, axis: int, factor: int) -> np.ndarray:
    """Affine of the thick grid from the thin grid's affine (inverse of :func:`thin_affine`)."""
    a = np.array(thin_affine_, dtype=np.float64)
    out = a.copy()
    out[:3, axis] = a[:3, axis] * factor
    out[:3, 3] = a[:3, 3] + (factor - 1) / 2.0 * a[:3, axis]
    return out


def _profile_weights(factor: int, profile: str) -> tuple[np.ndarray, int]:
    """Weights over thin-slice offsets ``o`` relative to ``k*r`` and the first offset."""
    if profile == "box":
        return np.full(factor, 1.0 / factor), 0
    if profile == "gaussian":
        sigma = factor / (2.0 * math.sqrt(2.0 * math.log(2.0)))  # FWHM = one thick slice
        offsets = np.arange(-factor, 2 * factor)
        centre = (factor - 1) / 2.0
        w = np.exp(-0.5 * ((offsets - centre) / sigma) ** 2)
        return w / w.sum(), -factor
    raise ValueError(f"unknown slice profile {profile!r}; choose one of {PROFILES}")


def simulate_thick(hr: np.ndarray, axis: int, factor: int, profile: str = "box") -> np.ndarray:
    """Thick-slice acquisition of a thin volume along ``axis``.

    ``hr`` has ``n`` slices along ``axis``; the result has ``ceil(n / factor)`` (a last, partial
    group is completed by repeating the edge slice). Returns float32.
    """
    if factor < 2:
        raise ValueError(f"the factor must be >= 2, got {factor}")
    x = np.moveaxis(np.asarray(hr, dtype=np.float64), axis, 0)
    n = x.shape[0]
    n_thick = -(-n // factor)
    weights, first = _profile_weights(factor, profile)
    pad_before = -first
    pad_after = n_thick * factor - n + max(0, len(weights) + first - factor)
    padded = np.pad(x, [(pad_before, pad_after)] + [(0, 0)] * (x.ndim - 1), mode="edge")
    out = np.zeros((n_thick,) + x.shape[1:], dtype=np.float64)
    for i, w in enumerate(weights):
        start = i  # offset first + i, shifted by pad_before = -first
        out += w * padded[start : start + n_thick * factor : factor]
    return np.moveaxis(out, 0, axis).astype(np.float32)


def interpolate_to_thin(
    lr: np.ndarray | torch.Tensor, axis: int, factor: int, n_thin: int | None = None, mode: str = "cubic"
) -> np.ndarray:
    """Interpolate a thick-slice volume onto the thin grid along ``axis`` only.

    ``mode``: ``"cubic"`` (Keys cubic convolution, a = -0.75) or ``"linear"``. The result has
    ``n_thin`` slices along ``axis`` (default ``n_lr * factor``). Returns float32.
    """
    t = torch.as_tensor(np.asarray(lr, dtype=np.float32))
    t = t.movedim(axis, 0)  # (n, A, B)
    n, a, b = t.shape
    x = t.reshape(n, a * b).T.reshape(a * b, 1, n, 1)  # every line along the axis is one "image"
    if mode == "cubic":
        y = F.interpolate(x, scale_factor=(factor, 1), mode="bicubic", align_corners=False)
    elif mode == "linear":
        y = F.interpolate(x[..., 0], scale_factor=factor, mode="linear", align_corners=False)[..., None]
    else:
        raise ValueError(f"unknown interpolation {mode!r}; choose 'cubic' or 'linear'")
    y = y.reshape(a * b, n * factor).T.reshape(n * factor, a, b)
    if n_thin is not None:
        y = y[:n_thin]
    return y.movedim(0, axis).contiguous().numpy()


# --------------------------------------------------------------------------------------------
# Any factor (non-integer), slice gaps and slice profiles.
#
# Grid convention, the same as above but for a real-valued factor ``q`` (input voxel size over
# output voxel size along one axis): output voxel ``j`` has its centre at input voxel coordinate
# ``(j + 0.5) / q - 0.5``. The first output voxel starts where the first input voxel starts
# (the two fields of view share their lower edge), and an integer ``q`` gives back
# ``thin_affine`` / ``interpolate_to_thin`` exactly. In thin-voxel units, thick slice ``k`` then
# has its centre at ``q * (k + 0.5) - 0.5``.
# --------------------------------------------------------------------------------------------

from dataclasses import dataclass  # noqa: E402

#: Cubic convolution parameter of ``torch.nn.functional.interpolate(mode="bicubic")``.
_CUBIC_A = -0.75


@dataclass(frozen=True)
class SliceProfile:
    """How each thick slice samples the object along the thick axis, in thin (output) voxels.

    Attributes:
        spacing: centre-to-centre distance of two thick slices over the thin voxel size (the
            factor ``r``; 4.0 for 4 mm slices on a 1 mm grid). Any real value >= 1.
        thickness: slice thickness in thin voxels (``None``: equal to ``spacing``, no gap). Less
            than ``spacing`` leaves a gap (e.g. 5 mm slices every 7 mm: ``thickness=5/0.86``,
            ``spacing=7/0.86``); more than ``spacing`` means overlapping slices.
        kind: ``"box"`` (uniform over the slab) or ``"gaussian"`` (FWHM = ``thickness``).
    """

    spacing: float
    thickness: float | None = None
    kind: str = "box"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.spacing) and self.spacing >= 1.0):
            raise ValueError(f"slice spacing must be a finite factor >= 1 (thin voxels), got {self.spacing}")
        if self.thickness is not None and not (math.isfinite(self.thickness) and self.thickness > 0):
            raise ValueError(f"slice thickness must be > 0 (thin voxels), got {self.thickness}")
        if self.kind not in PROFILES:
            raise ValueError(f"unknown slice profile {self.kind!r}; choose one of {PROFILES}")

    @property
    def width(self) -> float:
        """Slice thickness in thin voxels (``spacing`` when not given)."""
        return self.spacing if self.thickness is None else float(self.thickness)

    @property
    def gap(self) -> float:
        """Gap between neighbouring slices in thin voxels (negative: overlap)."""
        return self.spacing - self.width


def grid_size(n_in: int, factor: float) -> int:
    """Voxels along an axis of ``n_in`` voxels resampled ``factor`` times finer: the same field of
    view, rounded to whole voxels (at least 1)."""
    return max(1, int(round(n_in * factor)))


def grid_positions(n_in: int, factor: float, n_out: int | None = None) -> np.ndarray:
    """Centres of the output voxels of a grid ``factor`` times finer than an axis of ``n_in``
    voxels, in input voxel coordinates: ``(j + 0.5) / factor - 0.5``, ``j < n_out`` (default
    :func:`grid_size`). Returns float64 ``(n_out,)``."""
    n = grid_size(n_in, factor) if n_out is None else int(n_out)
    return (np.arange(n, dtype=np.float64) + 0.5) / factor - 0.5


def resample_affine(affine: np.ndarray, factors: tuple[float, float, float] | np.ndarray) -> np.ndarray:
    """Affine of the grid that is ``factors[i]`` times finer along voxel axis ``i`` (any real
    factor > 0) and starts at the same field-of-view edge (see :func:`grid_positions`).

    Column ``i`` is divided by ``factors[i]``; the origin moves to the centre of the first output
    voxel, ``0.5 / f - 0.5`` input voxels along each axis. Integer factors on one axis give
    :func:`thin_affine`. Returns float64 ``(4, 4)``.
    """
    a = np.array(affine, dtype=np.float64)
    f = np.asarray(factors, dtype=np.float64)
    if f.shape != (3,) or not np.all(f > 0):
        raise ValueError(f"resampling factors must be three positive numbers, got {factors}")
    out = a.copy()
    out[:3, :3] = a[:3, :3] / f[None, :]
    out[:3, 3] = a[:3, 3] + a[:3, :3] @ (0.5 / f - 0.5)
    return out


def _cubic_weights(t: np.ndarray) -> np.ndarray:
    """Keys cubic convolution weights (a = -0.75) of the 4 neighbours at offsets -1, 0, 1, 2 for
    fractional positions ``t`` in [0, 1). Returns ``(len(t), 4)``."""
    a = _CUBIC_A
    d = np.stack([1 + t, t, 1 - t, 2 - t], axis=1)
    near = ((a + 2) * d - (a + 3)) * d * d + 1  # |d| <= 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a  # 1 < |d| < 2
    return np.where(d <= 1, near, far)


def resample_axis(x: np.ndarray, axis: int, positions: np.ndarray, mode: str = "cubic") -> np.ndarray:
    """Resample ``x`` along ``axis`` at real voxel ``positions`` (input voxel coordinates).

    ``mode``: ``"cubic"`` (Keys, a = -0.75, the kernel of ``torch`` bicubic) or ``"linear"``;
    samples beyond the ends repeat the edge voxel (as ``torch.nn.functional.interpolate``). No
    anti-aliasing: meant for factors near 1 or above (upsampling). Returns float32 with
    ``len(positions)`` voxels along ``axis``.
    """
    x = np.asarray(x, dtype=np.float32)
    n = x.shape[axis]
    p = np.asarray(positions, dtype=np.float64)
    base = np.floor(p)
    t = p - base
    if mode == "cubic":
        offsets, w = np.arange(-1, 3), _cubic_weights(t)
    elif mode == "linear":
        offsets, w = np.arange(0, 2), np.stack([1 - t, t], axis=1)
    else:
        raise ValueError(f"unknown interpolation {mode!r}; choose 'cubic' or 'linear'")
    idx = np.clip(base[:, None].astype(np.int64) + offsets[None, :], 0, n - 1)
    # a sparse (len(p), n) matrix applied along the axis
    m = np.zeros((len(p), n), dtype=np.float64)
    np.add.at(m, (np.repeat(np.arange(len(p)), len(offsets)), idx.ravel()), w.ravel())
    return _apply_along(x, axis, m)


def _apply_along(x: np.ndarray, axis: int, m: np.ndarray) -> np.ndarray:
    """``y[..., i, ...] = sum_j m[i, j] x[..., j, ...]`` along ``axis``; float32."""
    t = torch.from_numpy(np.ascontiguousarray(np.moveaxis(np.asarray(x, dtype=np.float32), axis, -1)))
    y = t @ torch.from_numpy(m.T.astype(np.float32))
    return np.ascontiguousarray(np.moveaxis(y.numpy(), -1, axis))


def profile_matrix(n_thin: int, profile: SliceProfile, n_thick: int | None = None) -> np.ndarray:
    """Weights ``(n_thick, n_thin)`` of each thin slice in each thick slice (rows sum to 1).

    Thick slice ``k`` is centred at thin coordinate ``spacing * (k + 0.5) - 0.5``; thin voxel
    ``j`` covers ``[j - 0.5, j + 0.5]`` and weighs the integral of the slice profile over it (box
    of width ``thickness``, or a Gaussian of that FWHM). Profile mass beyond the ends falls on
    the edge slice. ``n_thick`` defaults to ``ceil(n_thin / spacing)`` (as :func:`simulate_thick`).
    """
    from scipy.special import ndtr

    r, width = float(profile.spacing), profile.width
    if n_thick is None:
        n_thick = max(1, math.ceil(n_thin / r - 1e-9))
    centres = r * (np.arange(n_thick) + 0.5) - 0.5
    half = width / 2.0 if profile.kind == "box" else 4.0 * width / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    lo = int(math.floor(centres.min() - half - 1))
    hi = int(math.ceil(centres.max() + half + 1))
    j = np.arange(lo, hi + 1, dtype=np.float64)
    c = centres[:, None]
    if profile.kind == "box":
        w = np.clip(np.minimum(j + 0.5, c + half) - np.maximum(j - 0.5, c - half), 0.0, None)
    else:
        sigma = width / (2.0 * math.sqrt(2.0 * math.log(2.0)))
        w = ndtr((j + 0.5 - c) / sigma) - ndtr((j - 0.5 - c) / sigma)
    m = np.zeros((n_thick, n_thin), dtype=np.float64)
    cols = np.clip(j.astype(np.int64), 0, n_thin - 1)
    for k in range(n_thick):
        np.add.at(m[k], cols, w[k])
    return m / m.sum(axis=1, keepdims=True)


def simulate_acquisition(hr: np.ndarray, axis: int, profile: SliceProfile, n_thick: int | None = None) -> np.ndarray:
    """Thick-slice acquisition of a thin volume (or a stack of 2-D images) along ``axis`` with any
    real factor, slice profile and gap (see :class:`SliceProfile`).

    With an integer spacing and a box profile without gap this equals :func:`simulate_thick`.
    Returns float32 with ``n_thick`` (default ``ceil(n / spacing)``) slices along ``axis``.
    """
    x = np.asarray(hr, dtype=np.float32)
    return _apply_along(x, axis, profile_matrix(x.shape[axis], profile, n_thick))


def interpolate_to_grid(
    lr: np.ndarray, axis: int, factor: float, n_thin: int | None = None, mode: str = "cubic"
) -> np.ndarray:
    """:func:`interpolate_to_thin` for any real ``factor`` >= 1: thin slice ``j`` is sampled at
    thick coordinate ``(j + 0.5) / factor - 0.5``. ``n_thin`` defaults to ``round(n * factor)``.
    Integer factors go through :func:`interpolate_to_thin` (bit-identical). Returns float32."""
    if float(factor) == int(factor):
        return interpolate_to_thin(lr, axis, int(factor), n_thin=n_thin, mode=mode)
    n = np.asarray(lr).shape[axis]
    return resample_axis(lr, axis, grid_positions(n, factor, n_thin), mode=mode)
