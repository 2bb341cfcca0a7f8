"""Tables that compare a super-resolved volume with the HR reference, beside interpolation.

Two protocols (``transmrsr evaluate --protocol``):

* ``ours`` (default): float volumes, PSNR / SSIM with the HR's data range over the whole volume
  and inside the brain mask, and the same per slice ("per-slice float" columns);
* ``authors``: the authors' code's protocol behind the paper's tables (8-bit slices on a
  zero-padded 256x256 canvas, peak 255, their SSIM; :func:`.metrics.authors_slice_metrics`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..data.degradation import interpolate_to_thin
from .metrics import AUTHORS_CANVAS, authors_slice_metrics, dice, foreground_mask, psnr, slice_metrics, ssim
from .segmentation import TISSUES, segment_tissues


@dataclass
class MethodScores:
    """Scores of one method against the HR volume (protocol ``ours``: float data).

    ``psnr_slice`` / ``ssim_slice`` are the per-slice float metrics (:func:`.metrics.slice_metrics`),
    formerly called "2-D"; they are not the authors' protocol (:class:`AuthorsScores`).
    """

    name: str
    psnr: float
    ssim: float
    psnr_mask: float
    ssim_mask: float
    psnr_slice: float
    ssim_slice: float
    dice: dict[str, float] = field(default_factory=dict)

    @property
    def psnr_2d(self) -> float:
        """The former name of :attr:`psnr_slice`."""
        return self.psnr_slice

    @property
    def ssim_2d(self) -> float:
        """The former name of :attr:`ssim_slice`."""
        return self.ssim_slice

    def as_dict(self) -> dict:
        return {
            "method": self.name,
            "psnr": self.psnr,
            "ssim": self.ssim,
            "psnr_mask": self.psnr_mask,
            "ssim_mask": self.ssim_mask,
            "psnr_slice": self.psnr_slice,
            "ssim_slice": self.ssim_slice,
            # the former keys of the per-slice float metrics, kept for existing readers
            "psnr_2d": self.psnr_slice,
            "ssim_2d": self.ssim_slice,
            **{f"dice_{k}": v for k, v in self.dice.items()},
        }


@dataclass
class AuthorsScores:
    """Scores of one method under the authors' protocol (:func:`.metrics.authors_slice_metrics`):
    mean per-slice PSNR (dB, peak 255) and SSIM over ``slices`` slices, 8-bit, on a
    ``canvas``-square zero-padded canvas; the figures to set beside the paper's Table 1."""

    name: str
    psnr: float
    ssim: float
    slices: int
    canvas: int = AUTHORS_CANVAS

    def as_dict(self) -> dict:
        return {
            "method": self.name,
            "protocol": "authors",
            "psnr_authors": self.psnr,
            "ssim_authors": self.ssim,
            "slices": self.slices,
            "canvas": self.canvas,
        }


def score(
    name: str,
    test: np.ndarray,
    hr: np.ndarray,
    mask: np.ndarray,
    slice_axis: int,
    hr_segmentation: np.ndarray | None = None,
) -> MethodScores:
    """Whole-volume and masked PSNR/SSIM (HR data range), the per-slice float metrics along
    ``slice_axis``, and tissue Dice when ``hr_segmentation`` is given."""
    p2, s2, _ = slice_metrics(test, hr, slice_axis)
    out = MethodScores(
        name=name,
        psnr=psnr(test, hr),
        ssim=ssim(test, hr),
        psnr_mask=psnr(test, hr, mask),
        ssim_mask=ssim(test, hr, mask),
        psnr_slice=p2,
        ssim_slice=s2,
    )
    if hr_segmentation is not None:
        d = dice(segment_tissues(test, mask), hr_segmentation, labels=list(TISSUES))
        out.dice = {TISSUES[k]: v for k, v in d.items()}
        out.dice["mean"] = float(np.mean(list(d.values())))
    return out


def _interpolations(hr: np.ndarray, lr: np.ndarray, axis: int, factor: int) -> list[tuple[str, np.ndarray]]:
    n_thin = hr.shape[axis]
    if lr.shape[axis] * factor < n_thin:
        raise ValueError(f"LR with {lr.shape[axis]} slices x{factor} does not cover the HR's {n_thin} slices")
    return [
        (name, interpolate_to_thin(lr, axis, factor, n_thin=n_thin, mode=mode))
        for name, mode in (("cubic", "cubic"), ("trilinear", "linear"))
    ]


def evaluate(
    sr: np.ndarray,
    hr: np.ndarray,
    lr: np.ndarray,
    axis: int,
    factor: int,
    mask: np.ndarray | None = None,
    with_dice: bool = False,
    slice_axis: int | None = None,
) -> list[MethodScores]:
    """Score the SR volume, cubic and trilinear interpolation of ``lr`` against ``hr``.

    ``lr`` is the thick-slice volume (``axis``, ``factor``); ``mask`` defaults to the HR's
    foreground (:func:`foreground_mask`).
    """
    from ..inference import default_slice_axis

    if sr.shape != hr.shape:
        raise ValueError(f"SR shape {sr.shape} differs from HR shape {hr.shape}")
    interps = _interpolations(hr, lr, axis, factor)
    m = foreground_mask(hr) if mask is None else np.asarray(mask, dtype=bool)
    sa = default_slice_axis(axis) if slice_axis is None else slice_axis
    hr_seg = segment_tissues(hr, m) if with_dice else None
    rows = [score("TransMRSR", sr, hr, m, sa, hr_seg)]
    rows += [score(name, interp, hr, m, sa, hr_seg) for name, interp in interps]
    return rows


def evaluate_authors(
    sr: np.ndarray, hr: np.ndarray, lr: np.ndarray, axis: int, factor: int, slice_axis: int | None = None
) -> list[AuthorsScores]:
    """The SR volume, cubic and trilinear interpolation of ``lr`` under the authors' protocol
    (:func:`.metrics.authors_slice_metrics`), slices along ``slice_axis`` (default: the same plane
    as :func:`evaluate`'s per-slice columns; the authors' T1 slices are sagittal)."""
    from ..inference import default_slice_axis

    if sr.shape != hr.shape:
        raise ValueError(f"SR shape {sr.shape} differs from HR shape {hr.shape}")
    sa = default_slice_axis(axis) if slice_axis is None else slice_axis
    rows = []
    for name, vol in [("TransMRSR", sr)] + _interpolations(hr, lr, axis, factor):
        p, s, n = authors_slice_metrics(vol, hr, sa)
        rows.append(AuthorsScores(name, p, s, n))
    return rows


def format_table(rows: list[MethodScores] | list[AuthorsScores]) -> str:
    """Markdown table of the scores (either protocol)."""
    if rows and isinstance(rows[0], AuthorsScores):
        head = (
            "| method | PSNR (authors: 8-bit, 256² zero-padded, peak 255) | SSIM (authors) | slices |\n"
            "|---|---|---|---|"
        )
        return "\n".join([head] + [f"| {r.name} | {r.psnr:.2f} | {r.ssim:.4f} | {r.slices} |" for r in rows])
    has_dice = any(r.dice for r in rows)
    head = "| method | PSNR | SSIM | PSNR (mask) | SSIM (mask) | PSNR per-slice float | SSIM per-slice float |"
    sep = "|---|---|---|---|---|---|---|"
    if has_dice:
        head += " Dice CSF | Dice GM | Dice WM | Dice mean |"
        sep += "---|---|---|---|"
    lines = [head, sep]
    for r in rows:
        line = (
            f"| {r.name} | {r.psnr:.2f} | {r.ssim:.4f} | {r.psnr_mask:.2f} | {r.ssim_mask:.4f} | "
            f"{r.psnr_slice:.2f} | {r.ssim_slice:.4f} |"
        )
        if has_dice:
            line += "".join(f" {r.dice.get(k, float('nan')):.4f} |" for k in ("CSF", "GM", "WM", "mean"))
        lines.append(line)
    return "\n".join(lines)
