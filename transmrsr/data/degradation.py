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
