"""Robust per-volume intensity scaling to [0, 1] and back to the input's units."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class IntensityScaler:
    """``x -> (x - low) / (high - low)``, fitted per volume.

    Values outside ``[low, high]`` are not clipped by :meth:`forward` (the network sees them as
    slightly below 0 / above 1); :meth:`inverse` restores the input's units exactly.
    """

    low: float
    high: float

    @classmethod
    def fit(cls, volume: np.ndarray, upper: float = 99.5) -> IntensityScaler:
        """``low`` = the volume's minimum (background stays at 0); ``high`` = the ``upper``
        percentile of the voxels above the minimum (robust to a few bright outliers)."""
        v = np.asarray(volume, dtype=np.float32)
        low = float(v.min())
        fg = v[v > low]
        high = float(np.percentile(fg if fg.size >= 100 else v.ravel(), upper))
        if not high > low:
            high = float(v.max())
        if not high > low:
            raise ValueError("cannot scale a constant volume")
        return cls(low=low, high=high)

    def forward(self, volume: np.ndarray) -> np.ndarray:
        return ((np.asarray(volume, dtype=np.float32) - self.low) / (self.high - self.low)).astype(np.float32)

    def inverse(self, scaled: np.ndarray) -> np.ndarray:
        return (np.asarray(scaled, dtype=np.float32) * (self.high - self.low) + self.low).astype(np.float32)
