"""Tissue segmentation for Dice: dipy's HMRF tissue classifier (Zhang et al. 2001).

The same method is applied to the SR and to the HR volume, inside the same mask, so Dice
differences come from the images alone. Labels: 1 = CSF, 2 = grey matter, 3 = white matter
(ordered by T1 intensity).
"""

from __future__ import annotations

import numpy as np

TISSUES = {1: "CSF", 2: "GM", 3: "WM"}


def segment_tissues(volume: np.ndarray, mask: np.ndarray, beta: float = 0.1, max_iter: int = 10) -> np.ndarray:
    """Three-class HMRF segmentation of a T1 volume within ``mask``; 0 outside.

    Runs on the mask's bounding box; outside the mask is dipy's background class.
    Needs the optional dependency ``dipy``.
    """
    try:
        from dipy.segment.tissue import TissueClassifierHMRF
    except ImportError as exc:  # pragma: no cover - dipy is in requirements.txt
        raise RuntimeError("tissue Dice needs dipy: pip install dipy") from exc
    m = np.asarray(mask, dtype=bool)
    if not m.any():
        raise ValueError("the segmentation mask is empty")
    idx = np.argwhere(m)
    lo, hi = idx.min(axis=0), idx.max(axis=0) + 1
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    v = np.asarray(volume, dtype=np.float64)[box]
    mb = m[box]
    # dipy treats voxels equal to 0 as its own background class: make the outside of the mask
    # exactly 0 and lift the inside well clear of it, so no tissue voxel is taken for background
    inside = v[mb]
    span = float(inside.max() - inside.min()) or 1.0
    v = np.where(mb, v - inside.min() + 0.1 * span, 0.0)
    classifier = TissueClassifierHMRF(verbose=False)
    _, seg, _ = classifier.classify(v, 3, beta, max_iter=max_iter)
    seg = np.where(mb & (seg == 0), 1, seg)  # a stray background label inside the mask: darkest tissue
    out = np.zeros(m.shape, dtype=np.uint8)
    out[box] = np.where(mb, seg, 0).astype(np.uint8)
    return out
