"""Pictures of volumes for the app: planes, MRI window/level, voxel aspect, error maps.

Pure numpy + matplotlib (Agg); returns uint8 RGB arrays ``(H, W, 3)``.
"""

from __future__ import annotations

import io

import numpy as np

PLANES = {"sagittal": 0, "coronal": 1, "axial": 2}


def plane_slice(volume: np.ndarray, plane: str, index: int) -> np.ndarray:
    """The 2-D slice of ``volume (X, Y, Z)`` across the voxel axis named by ``plane``, shown with
    the remaining axes as (rows = second axis flipped, cols = first) — radiological-ish, up is up."""
    axis = PLANES[plane]
    index = int(np.clip(index, 0, volume.shape[axis] - 1))
    img = np.take(volume, index, axis=axis)  # remaining axes in order
    return np.flipud(img.T)


def plane_spacing(zooms: tuple[float, float, float], plane: str) -> tuple[float, float]:
    """Pixel size ``(row, col)`` in mm of :func:`plane_slice` images."""
    rest = [z for a, z in enumerate(zooms) if a != PLANES[plane]]
    return rest[1], rest[0]


def window(img: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map ``[lo, hi]`` to 0..255 (uint8)."""
    x = (np.asarray(img, dtype=np.float32) - lo) / max(hi - lo, 1e-6)
    return (np.clip(x, 0, 1) * 255).astype(np.uint8)


def mri_window(volume: np.ndarray, lower: float = 0.5, upper: float = 99.5) -> tuple[float, float]:
    """Percentile window over the foreground (voxels above the minimum)."""
    v = np.asarray(volume, dtype=np.float32)
    fg = v[v > v.min()]
    sample = fg if fg.size else v.ravel()
    return float(np.percentile(sample, lower)), float(np.percentile(sample, upper))


def display_indices(
    shape: tuple[int, int], spacing: tuple[float, float] = (1.0, 1.0), min_side: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """Where each pixel of :func:`to_rgb`'s picture of an ``(h, w)`` image comes from: ``(rows
    (H,), cols (W,))`` int arrays, display row ``r`` shows source row ``rows[r]`` (same for cols)."""
    h, w = int(shape[0]), int(shape[1])
    sy, sx = spacing
    base = min(sy, sx)
    ry, rx = sy / base, sx / base
    yi = np.minimum((np.arange(int(round(h * ry))) / ry).astype(int), h - 1) if ry != 1 else np.arange(h)
    xi = np.minimum((np.arange(int(round(w * rx))) / rx).astype(int), w - 1) if rx != 1 else np.arange(w)
    k = max(1, -(-min_side // max(len(yi), len(xi))))
    return np.repeat(yi, k), np.repeat(xi, k)


def to_rgb(gray: np.ndarray, spacing: tuple[float, float] = (1.0, 1.0), min_side: int = 256) -> np.ndarray:
    """uint8 gray -> RGB, stretched so that pixels are square in mm and enlarged by a whole
    factor until the longer side reaches ``min_side`` (nearest neighbour: voxels stay crisp)."""
    yi, xi = display_indices(gray.shape, spacing, min_side)
    g = gray[yi][:, xi]
    return np.repeat(g[..., None], 3, axis=2)


def display_to_slice(
    mask: np.ndarray, shape: tuple[int, int], spacing: tuple[float, float] = (1.0, 1.0), min_side: int = 256
) -> np.ndarray:
    """Undo :func:`to_rgb`: a mask ``(H, W)`` painted on the picture of an ``(h, w)`` slice ->
    ``(h, w)`` bool, True where any painted pixel shows that slice pixel. A mask of another size
    (a canvas scaled in the browser) is first resampled (nearest) to the picture's size."""
    yi, xi = display_indices(shape, spacing, min_side)
    m = np.asarray(mask, dtype=bool)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {m.shape}")
    if m.shape != (len(yi), len(xi)):
        m = m[(np.arange(len(yi)) * m.shape[0]) // len(yi)][:, (np.arange(len(xi)) * m.shape[1]) // len(xi)]
    out = np.zeros((int(shape[0]), int(shape[1])), dtype=bool)
    rows, cols = np.nonzero(m)
    out[yi[rows], xi[cols]] = True
    return out


def error_map(
    error: np.ndarray, vmax: float, spacing: tuple[float, float] = (1.0, 1.0), title: str = "|SR − HR|"
) -> np.ndarray:
    """|error| image with a colour bar (matplotlib, inferno), as RGB uint8."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h, w = error.shape
    aspect = spacing[0] / spacing[1]
    fig, ax = plt.subplots(figsize=(4.2, 4.2 * h * aspect / max(w, 1) + 0.3), dpi=100)
    im = ax.imshow(np.abs(error), cmap="inferno", vmin=0, vmax=max(vmax, 1e-6), aspect=aspect, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    from PIL import Image

    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"))
