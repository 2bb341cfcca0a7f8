"""Volumes: NIfTI I/O and validation, thick-slice geometry and simulation, intensity scaling."""

from .degradation import interpolate_to_thin, simulate_thick, thick_affine, thin_affine
from .io import Volume, VolumeError, load_volume, save_volume, thick_axis
from .normalization import IntensityScaler

__all__ = [
    "IntensityScaler",
    "Volume",
    "VolumeError",
    "interpolate_to_thin",
    "load_volume",
    "save_volume",
    "simulate_thick",
    "thick_affine",
    "thick_axis",
    "thin_affine",
]
