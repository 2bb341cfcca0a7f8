"""Image-quality and segmentation metrics on float volumes, and the authors' 8-bit protocol.

PSNR and SSIM use the data range of the reference (HR) volume, over the whole volume or within
a mask; SSIM is scikit-image's (Gaussian-weighted, sigma 1.5, as in Wang et al. 2004), computed
in 3-D and averaged over the mask. :func:`slice_metrics` is the per-slice variant on the same
float data (each slice with its own range). Dice is computed per label.

:func:`authors_slice_metrics` is the protocol of the authors' code, the one behind the paper's
tables: 8-bit slices centred on a zero-padded 256x256 canvas, PSNR with peak 255 over the whole
canvas, and their SSIM (BasicSR's: an 11x11 Gaussian window, sigma 1.5, on the valid region).
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
    """Per-slice float metrics: PSNR and SSIM (scikit-image) per slice along ``axis``, each slice
    with its own data range, on the float volumes, averaged over slices that are not empty.
    Returns ``(psnr, ssim, n_slices)``. Not the authors' protocol (see
    :func:`authors_slice_metrics`), so not comparable with the paper's tables."""
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
        ss.append(
            structural_similarity(rs, ts, data_range=rng, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
        )
    if not ps:
        raise ValueError("every slice of the reference is empty")
    finite = [p for p in ps if np.isfinite(p)]
    return (float(np.mean(finite)) if finite else float("inf")), float(np.mean(ss)), len(ps)


# ---------------------------------------------------------------------- the authors' protocol
#: the authors' canvas side (their ``Crop(crop_size=(256, 256), is_pad_zeros=True)``)
AUTHORS_CANVAS = 256


def to_8bit_scale(volume: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Intensities mapped linearly so that ``lo -> 0`` and ``hi -> 255`` (float, not clipped)."""
    if hi <= lo:
        raise ValueError("the reference volume is constant; the 8-bit scale is undefined")
    return (np.asarray(volume, dtype=np.float64) - lo) * (255.0 / (hi - lo))


def authors_canvas(image: np.ndarray, size: int = AUTHORS_CANVAS) -> np.ndarray:
    """Place a 2-D slice on a ``size x size`` canvas as the authors' ``Crop`` does: zero-pad
    each short side by twice the centring offset on both ends, then take the centre crop
    (a side longer than ``size`` is centre-cropped)."""
    h, w = image.shape
    oy, ox = max(0, (size - h) // 2), max(0, (size - w) // 2)
    padded = np.pad(image, ((2 * oy, 2 * oy), (2 * ox, 2 * ox)))
    ph, pw = padded.shape
    ch, cw = min(ph, size), min(pw, size)
    y0, x0 = max(0, ph - ch) // 2, max(0, pw - cw) // 2
    return padded[y0 : y0 + ch, x0 : x0 + cw]


def authors_psnr(test: np.ndarray, reference: np.ndarray) -> float:
    """Their ``psnr``: ``10 log10(255^2 / MSE)`` over the whole image (0 when the MSE is 0,
    which their averaging then leaves out)."""
    mse = float(np.mean((np.asarray(test, np.float64) - np.asarray(reference, np.float64)) ** 2))
    return 0.0 if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def authors_ssim(test: np.ndarray, reference: np.ndarray) -> float:
    """Their ``ssim`` for one channel in [0, 255] (BasicSR's ``_ssim``): means, variances and
    covariance by an 11x11 Gaussian window (sigma 1.5), kept where the window fits inside the
    image (5 pixels cut off each border), ``C1 = (0.01 * 255)^2``, ``C2 = (0.03 * 255)^2``; the
    mean of the SSIM map."""
    from scipy.ndimage import correlate1d

    g = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    g /= g.sum()

    def blur(x: np.ndarray) -> np.ndarray:  # separable Gaussian, then the valid region
        return correlate1d(correlate1d(x, g, axis=0, mode="reflect"), g, axis=1, mode="reflect")[5:-5, 5:-5]

    a, b = np.asarray(test, np.float64), np.asarray(reference, np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu1, mu2 = blur(a), blur(b)
    s11, s22, s12 = blur(a * a) - mu1**2, blur(b * b) - mu2**2, blur(a * b) - mu1 * mu2
    ssim_map = ((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1**2 + mu2**2 + c1) * (s11 + s22 + c2))
    return float(ssim_map.mean())


def authors_slice_metrics(
    test: np.ndarray, reference: np.ndarray, axis: int, canvas: int = AUTHORS_CANVAS
) -> tuple[float, float, int]:
    """The authors' protocol on a volume: ``(psnr, ssim, n_slices)``.

    * 8-bit: both volumes are scaled by the reference's range (``min -> 0``, ``max -> 255``); the
      reference is rounded to integers (their HR slices are 8-bit PNGs), the test volume is not
      (their network's output is scored as floats);
    * every slice along ``axis`` whose 8-bit reference is not all zero is placed on a zero-padded
      ``canvas x canvas`` canvas (:func:`authors_canvas`), so the padding counts in the mean;
    * both get their ``x * 255 + 0.5`` and clamp to [0, 255] (here: ``+ 0.5``, clamp), then
      :func:`authors_psnr` (peak 255, whole canvas; slices with MSE 0 left out of the PSNR mean)
      and :func:`authors_ssim`, averaged over slices.
    """
    t = np.asarray(test, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    if t.shape != r.shape:
        raise ValueError(f"shapes differ: {t.shape} vs reference {r.shape}")
    lo, hi = float(r.min()), float(r.max())
    ref8 = np.clip(np.round(to_8bit_scale(r, lo, hi)), 0, 255)
    test8 = to_8bit_scale(t, lo, hi)
    ps, ss = [], []
    for ts, rs in zip(np.moveaxis(test8, axis, 0), np.moveaxis(ref8, axis, 0)):
        if not rs.any():
            continue
        a = np.clip(authors_canvas(ts, canvas) + 0.5, 0, 255)
        b = np.clip(authors_canvas(rs, canvas) + 0.5, 0, 255)
        p = authors_psnr(a, b)
        if p != 0:
            ps.append(p)
        ss.append(authors_ssim(a, b))
    if not ss:
        raise ValueError("every slice of the reference is empty")
    return (float(np.mean(ps)) if ps else float("inf")), float(np.mean(ss)), len(ss)
