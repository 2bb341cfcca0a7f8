"""Image-quality and segmentation metrics on float volumes.

PSNR and SSIM use the data range of the reference (HR) volume, over the whole volume or within
a mask; SSIM is scikit-image's (Gaussian-weighted, sigma 1.5, as in Wang et al. 2004), computed
in 3-D and averaged over the mask. Dice is computed per label.
"""

from __future__ import annotations

import numpy as np


def data_range(reference: np.ndarray) -> float:
    """``max - min`` of the reference volume (the PSNR/SSIM peak)."""
    r = float(np.max(reference) - np.min(reference))
    if r <= 0:
        raise ValueError("the reference volume is constant; PSNR/SSIM are undefined")
    return r


def _check(test: np.ndarray, reference: np.ndarray, mask: np.ndarray | None) -> None:
    if test.shape != reference.shape:
        raise ValueError(f"shapes differ: {test.shape} vs reference {reference.shape}")
    if mask is not None:
        if mask.shape != reference.shape:
            raise ValueError(f"mask shape {mask.shape} differs from the volumes' {reference.shape}")
        if not np.any(mask):
            raise ValueError("the mask is empty")


def psnr(test: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None, peak: float | None = None) -> float:
    """Peak signal-to-noise ratio in dB: ``10 log10(peak^2 / MSE)``, MSE over ``mask`` if given.

    ``peak`` defaults to the reference's data range (over the whole volume).
    """
    _check(test, reference, mask)
    t = np.asarray(test, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    diff = (t - r) if mask is None else (t - r)[mask.astype(bool)]
    mse = float(np.mean(diff**2))
    p = data_range(r) if peak is None else float(peak)
    return float("inf") if mse == 0 else 10.0 * np.log10(p * p / mse)


def ssim(test: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None, peak: float | None = None) -> float:
    """Structural similarity (scikit-image, Gaussian window): scikit-image's mean over the volume,
    or the mean of the SSIM map over ``mask`` if given."""
    from skimage.metrics import structural_similarity

    _check(test, reference, mask)
    p = data_range(reference) if peak is None else float(peak)
    mean, full = structural_similarity(
        np.asarray(reference, dtype=np.float64),
        np.asarray(test, dtype=np.float64),
        data_range=p,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        full=True,
    )
    # without a mask: scikit-image's own mean (it leaves out a border of half a window)
    return float(mean if mask is None else full[mask.astype(bool)].mean())


def dice(a: np.ndarray, b: np.ndarray, labels: list[int] | None = None) -> dict[int, float]:
    """Dice ``2|A∩B| / (|A|+|B|)`` per label of two label volumes (1.0 when both are empty)."""
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    if labels is None:
        labels = sorted(int(v) for v in np.union1d(np.unique(a), np.unique(b)) if v != 0)
    out = {}
    for lab in labels:
        x, y = a == lab, b == lab
        denom = int(x.sum() + y.sum())
        out[lab] = 1.0 if denom == 0 else 2.0 * int(np.logical_and(x, y).sum()) / denom
    return out


def foreground_mask(volume: np.ndarray, fraction: float = 0.1) -> np.ndarray:
    """Head/brain foreground: voxels above ``fraction`` of the robust maximum, holes filled,
    largest connected component (scipy.ndimage)."""
    from scipy import ndimage

    v = np.asarray(volume, dtype=np.float32)
    lo = float(v.min())
    hi = float(np.percentile(v[v > lo], 99)) if np.any(v > lo) else float(v.max())
    m = v > lo + fraction * (hi - lo)
    m = ndimage.binary_opening(m, iterations=1)
    labels, n = ndimage.label(m)
    if n > 1:
        sizes = ndimage.sum(m, labels, index=range(1, n + 1))
        m = labels == (int(np.argmax(sizes)) + 1)
    return ndimage.binary_fill_holes(m)


def slice_metrics(
    test: np.ndarray, reference: np.ndarray, axis: int, min_foreground: float = 0.0
) -> tuple[float, float, int]:
    """The paper's 2-D protocol: PSNR and SSIM per slice along ``axis`` (each slice with its own
    data range), averaged over slices that are not empty. Returns ``(psnr, ssim, n_slices)``."""
    from skimage.metrics import structural_similarity

    t = np.moveaxis(np.asarray(test, dtype=np.float64), axis, 0)
    r = np.moveaxis(np.asarray(reference, dtype=np.float64), axis, 0)
    ps, ss = [], []
    for ts, rs in zip(t, r):
        rng = float(rs.max() - rs.min())
        if rng <= min_foreground:
            continue
        mse = float(np.mean((ts - rs) ** 2))
        ps.append(float("inf") if mse == 0 else 10.0 * np.log10(rng * rng / mse))
        ss.append(structural_similarity(rs, ts, data_range=rng, gaussian_weights=True, sigma=1.5, use_sample_covariance=False))
    if not ps:
        raise ValueError("every slice of the reference is empty")
    finite = [p for p in ps if np.isfinite(p)]
    return (float(np.mean(finite)) if finite else float("inf")), float(np.mean(ss)), len(ps)
