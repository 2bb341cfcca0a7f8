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


def to_rgb(gray: np.ndarray, spacing: tuple[float, float] = (1.0, 1.0), min_side: int = 256) -> np.ndarray:
    """uint8 gray -> RGB, stretched so that pixels are square in mm and enlarged by a whole
    factor until the longer side reaches ``min_side`` (nearest neighbour: voxels stay crisp)."""
    g = gray
    sy, sx = spacing
    base = min(sy, sx)
    ry, rx = sy / base, sx / base
    if ry != 1 or rx != 1:
        h, w = g.shape
        yi = np.minimum((np.arange(int(round(h * ry))) / ry).astype(int), h - 1)
        xi = np.minimum((np.arange(int(round(w * rx))) / rx).astype(int), w - 1)
        g = g[yi][:, xi]
    k = max(1, -(-min_side // max(g.shape)))
    if k > 1:
        g = np.repeat(np.repeat(g, k, axis=0), k, axis=1)
    return np.repeat(g[..., None], 3, axis=2)


def error_map(error: np.ndarray, vmax: float, spacing: tuple[float, float] = (1.0, 1.0), title: str = "|SR − HR|") -> np.ndarray:
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
