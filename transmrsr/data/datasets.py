"""2-D slice datasets from folders of NIfTI volumes, with augmentation.

* :class:`HRSliceDataset` — stage 1: HR slices from all three planes.
* :class:`SRPairDataset` — stage 2: (interpolated LR, HR) slice pairs from the planes that
  contain the thick axis; the LR is made on the fly with :func:`simulate_thick` and
  :func:`interpolate_to_thin` (the degradation of ``transmrsr simulate``).

Volumes are scaled per volume to [0, 1] (:class:`IntensityScaler`), slices are placed on the
square canvas (centre-padded, or randomly cropped when larger), background slices are left out.
Augmentation: flips and transpose (paper), plus random gamma, a smooth multiplicative bias field
and Gaussian noise so that a few subjects go further.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .degradation import SliceProfile, interpolate_to_thin, simulate_acquisition
from .io import VolumeError, load_volume
from .normalization import IntensityScaler


def find_volumes(folder: str | Path) -> list[Path]:
    """All ``.nii`` / ``.nii.gz`` files below ``folder``, sorted; raises if there are none."""
    root = Path(folder)
    if not root.is_dir():
        raise VolumeError(f"{root}: no such data folder")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name.lower().endswith((".nii", ".nii.gz")))
    if not files:
        raise VolumeError(f"{root}: holds no .nii / .nii.gz volumes")
    return files


def split_subjects(paths: list[Path], val_fraction: float = 0.2, seed: int = 0) -> tuple[list[Path], list[Path]]:
    """Split volumes by subject (file) into train / validation; at least one of each when
    there are two or more volumes, unless ``val_fraction`` is 0 (no validation)."""
    paths = sorted(paths)
    rng = random.Random(seed)
    order = paths[:]
    rng.shuffle(order)
    n_val = int(round(len(order) * val_fraction))
    if val_fraction <= 0:
        n_val = 0
    elif len(order) >= 2:
        n_val = min(max(n_val, 1), len(order) - 1)
    else:
        n_val = 0
    return sorted(order[n_val:]), sorted(order[:n_val])


@dataclass
class Augment:
    """Augmentation switches and strengths (probabilities per sample)."""

    flips: bool = True
    transpose: bool = True
    gamma: float = 0.3  # log-gamma drawn from N(0, gamma)
    bias_field: float = 0.3  # peak relative amplitude of a smooth multiplicative field
    noise: float = 0.01  # std of Gaussian noise on the LR input (scaled units)
    p_intensity: float = 0.5

    @classmethod
    def off(cls) -> Augment:
        return cls(flips=False, transpose=False, gamma=0.0, bias_field=0.0, noise=0.0, p_intensity=0.0)


def _crop_offsets(shape: tuple[int, int], size: int, rng: np.random.Generator | None) -> tuple[int, int]:
    """Top-left corner of a ``size`` crop: random when ``rng`` is given, else central (0 when it fits)."""
    offs = []
    for n in shape:
        if n <= size:
            offs.append(0)
        else:
            offs.append(int(rng.integers(0, n - size + 1)) if rng is not None else (n - size) // 2)
    return offs[0], offs[1]


def _foreground_crop_offsets(
    img: np.ndarray, size: int, rng: np.random.Generator, background: float, tries: int = 8, min_fraction: float = 0.3
) -> tuple[int, int]:
    """A random crop that holds at least ``min_fraction`` foreground when one is found within
    ``tries`` draws: small canvases on a large head slice would otherwise mostly see air."""
    offsets = _crop_offsets(img.shape, size, rng)
    if img.shape[0] <= size and img.shape[1] <= size:
        return offsets
    for _ in range(tries - 1):
        y, x = offsets
        if float((img[y : y + size, x : x + size] > background).mean()) >= min_fraction:
            break
        offsets = _crop_offsets(img.shape, size, rng)
    return offsets


def _place(img: np.ndarray, size: int, offsets: tuple[int, int]) -> np.ndarray:
    """Crop a 2-D slice at ``offsets`` to at most ``size`` and centre-pad it to ``(size, size)``."""
    out = np.zeros((size, size), dtype=np.float32)
    sy, sx = offsets
    crop = img[sy : sy + size, sx : sx + size]
    oy, ox = (size - crop.shape[0]) // 2, (size - crop.shape[1]) // 2
    out[oy : oy + crop.shape[0], ox : ox + crop.shape[1]] = crop
    return out


def _bias_field(size: int, amplitude: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth multiplicative field ``exp(sum of low-order polynomial terms)`` around 1."""
    y, x = np.meshgrid(np.linspace(-1, 1, size), np.linspace(-1, 1, size), indexing="ij")
    coeffs = rng.uniform(-1, 1, size=6) * amplitude / 3.0
    field = coeffs[0] * x + coeffs[1] * y + coeffs[2] * x * y + coeffs[3] * x**2 + coeffs[4] * y**2 + coeffs[5]
    return np.exp(field).astype(np.float32)


def _augment(arrays: list[np.ndarray], aug: Augment, rng: np.random.Generator) -> list[np.ndarray]:
    """Same flips / transpose / gamma / bias for all arrays; noise only on the first of a pair."""
    if aug.flips and rng.random() < 0.5:
        arrays = [a[::-1, :] for a in arrays]
    if aug.flips and rng.random() < 0.5:
        arrays = [a[:, ::-1] for a in arrays]
    if aug.transpose and rng.random() < 0.5:
        arrays = [a.T for a in arrays]
    if aug.gamma > 0 and rng.random() < aug.p_intensity:
        g = float(np.exp(rng.normal(0.0, aug.gamma)))
        arrays = [np.clip(a, 0, None) ** g for a in arrays]
    if aug.bias_field > 0 and rng.random() < aug.p_intensity:
        field = _bias_field(arrays[0].shape[0], aug.bias_field, rng)
        arrays = [a * field for a in arrays]
    arrays = [np.ascontiguousarray(a, dtype=np.float32) for a in arrays]
    if len(arrays) == 2 and aug.noise > 0 and rng.random() < aug.p_intensity:
        arrays[0] = arrays[0] + rng.normal(0.0, aug.noise, arrays[0].shape).astype(np.float32)
    return arrays


def _foreground_slices(vol: np.ndarray, axis: int, threshold: float) -> list[int]:
    moved = np.moveaxis(vol, axis, 0)
    return [i for i in range(moved.shape[0]) if float(moved[i].max()) > threshold]


class _SliceIndex(Dataset):
    """Shared by both datasets: the (volume, axis, slice) index of foreground slices and the
    epoch that, with the seed and the sample index, fixes each sample's augmentation."""

    def _build_index(self, volumes: list[np.ndarray], axes: tuple[int, ...], background: float, seed: int) -> None:
        self.index = [
            (vi, a, s) for vi, vol in enumerate(volumes) for a in axes for s in _foreground_slices(vol, a, background)
        ]
        if not self.index:
            raise VolumeError("no foreground slices in the training volumes")
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Augmentation depends only on ``(seed, epoch, index)``: identical after a resume and in
        any loader worker."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.index)

    def _rng(self, i: int) -> np.random.Generator:
        return np.random.default_rng((self.seed, self.epoch, i))


class HRSliceDataset(_SliceIndex):
    """Stage-1 samples: one HR slice ``(1, S, S)`` in [0, 1] (roughly), from any of ``axes``."""

    def __init__(
        self,
        paths: list[Path],
        img_size: int,
        axes: tuple[int, ...] = (0, 1, 2),
        augment: Augment | None = None,
        background: float = 0.05,
        seed: int = 0,
    ) -> None:
        self.img_size, self.augment, self.background = img_size, augment or Augment.off(), background
        self.volumes = [IntensityScaler.fit(v.data).forward(v.data) for v in (load_volume(p) for p in paths)]
        self._build_index(self.volumes, axes, background, seed)

    def __getitem__(self, i: int) -> torch.Tensor:
        vi, a, s = self.index[i]
        rng = self._rng(i)
        img = np.take(self.volumes[vi], s, axis=a)
        offsets = _foreground_crop_offsets(img, self.img_size, rng, self.background)
        (img,) = _augment([_place(img, self.img_size, offsets)], self.augment, rng)
        return torch.from_numpy(img)[None]


@dataclass
class Acquisition:
    """The variety of thick-slice acquisitions stage 2 trains on (real scans are not all box
    profiles without gaps): each volume is degraded ``variants`` times, each with a profile drawn
    from ``profiles``, a slice thickness that is, with probability ``p_gap``, a fraction drawn from
    ``gap_thickness`` of the slice spacing (a gap between slices), and, with probability
    ``p_quantise``, the thick volume stored on ``bits`` levels (8-bit / 12-bit scanners and
    exports)."""

    variants: int = 1
    profiles: tuple[str, ...] = ("box",)
    p_gap: float = 0.0
    gap_thickness: tuple[float, float] = (0.5, 0.9)
    p_quantise: float = 0.0
    bits: tuple[int, ...] = (8, 12)

    @classmethod
    def realistic(cls) -> Acquisition:
        """Box and Gaussian profiles, gaps in a third of the variants, quantised inputs in half."""
        return cls(variants=4, profiles=("box", "gaussian"), p_gap=1 / 3, p_quantise=0.5)

    def draw(self, rng: np.random.Generator) -> tuple[str, float, int | None]:
        """``(profile, thickness as a fraction of the spacing, bits or None)`` for one variant."""
        profile = self.profiles[int(rng.integers(len(self.profiles)))]
        fraction = float(rng.uniform(*self.gap_thickness)) if rng.random() < self.p_gap else 1.0
        bits = int(self.bits[int(rng.integers(len(self.bits)))]) if rng.random() < self.p_quantise else None
        return profile, fraction, bits


def quantise(volume: np.ndarray, bits: int) -> np.ndarray:
    """``volume`` (scaled, about [0, 1]) stored on ``2**bits`` levels over its own range."""
    lo, hi = float(volume.min()), float(volume.max())
    if not hi > lo:
        return volume
    levels = 2**bits - 1
    return (np.round((volume - lo) / (hi - lo) * levels) / levels * (hi - lo) + lo).astype(np.float32)


class SRPairDataset(_SliceIndex):
    """Stage-2 samples: ``(lr_interp (1, S, S), hr (1, S, S))`` slices containing the thick axis.

    Each whole volume is degraded once per acquisition variant (``acquisition``; default: box
    profile, no gap), then interpolated back to the HR grid (cubic). Intensities are scaled by
    the rule inference uses: :class:`IntensityScaler` fitted on the **thick** volume (the only one
    a user has), applied to both the LR and the HR.
    """

    def __init__(
        self,
        paths: list[Path],
        img_size: int,
        scale: int,
        thick_axis: int = 2,
        slice_axes: tuple[int, ...] | None = None,
        profile: str = "box",
        augment: Augment | None = None,
        background: float = 0.05,
        random_crop: bool = True,
        seed: int = 0,
        acquisition: Acquisition | None = None,
    ) -> None:
        self.img_size, self.augment, self.random_crop = img_size, augment or Augment.off(), random_crop
        self.background = background
        acq = acquisition or Acquisition(profiles=(profile,))
        axes = slice_axes if slice_axes is not None else tuple(a for a in range(3) if a != thick_axis)
        # per volume: the HR scaled by the first variant's scaler, and per variant the LR and the
        # (gain, offset) that maps that HR onto the variant's own scale
        self.pairs: list[tuple[list[tuple[np.ndarray, float, float]], np.ndarray]] = []
        self.variants: list[list[tuple[str, float, int | None]]] = []
        for vi, p in enumerate(paths):
            hr_raw = load_volume(p).data
            lrs, drawn, first = [], [], None
            rng = np.random.default_rng((seed, 7919, vi))
            for _ in range(max(1, acq.variants)):
                prof, fraction, bits = acq.draw(rng)
                thick = simulate_acquisition(hr_raw, thick_axis, SliceProfile(float(scale), fraction * scale, prof))
                scaler = IntensityScaler.fit(thick)
                first = first or scaler
                thick = scaler.forward(thick)
                if bits is not None:
                    thick = quantise(thick, bits)
                gain = (first.high - first.low) / (scaler.high - scaler.low)
                offset = (first.low - scaler.low) / (scaler.high - scaler.low)
                lrs.append(
                    (interpolate_to_thin(thick, thick_axis, scale, n_thin=hr_raw.shape[thick_axis]), gain, offset)
                )
                drawn.append((prof, fraction, bits))
            self.pairs.append((lrs, first.forward(hr_raw)))
            self.variants.append(drawn)
        self._build_index([hr for _, hr in self.pairs], axes, background, seed)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        vi, a, s = self.index[i]
        rng = self._rng(i)
        lr_vols, hr_vol = self.pairs[vi]
        lr_vol, gain, offset = lr_vols[int(rng.integers(len(lr_vols)))] if len(lr_vols) > 1 else lr_vols[0]
        lr, hr = np.take(lr_vol, s, axis=a), np.take(hr_vol, s, axis=a)
        if gain != 1.0 or offset != 0.0:
            hr = (hr * np.float32(gain) + np.float32(offset)).astype(np.float32)
        if self.random_crop:
            offsets = _foreground_crop_offsets(hr, self.img_size, rng, self.background)
        else:
            offsets = _crop_offsets(hr.shape, self.img_size, None)
        lr, hr = _place(lr, self.img_size, offsets), _place(hr, self.img_size, offsets)
        lr, hr = _augment([lr, hr], self.augment, rng)
        return torch.from_numpy(lr)[None], torch.from_numpy(hr)[None]
