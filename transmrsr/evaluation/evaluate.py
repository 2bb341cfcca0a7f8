"""Tables that compare a super-resolved volume with the HR reference, beside interpolation."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..data.degradation import interpolate_to_thin
from .metrics import dice, foreground_mask, psnr, slice_metrics, ssim
from .segmentation import TISSUES, segment_tissues


@dataclass
class MethodScores:
    """Scores of one method against the HR volume."""

    name: str
    psnr: float
    ssim: float
    psnr_mask: float
    ssim_mask: float
    psnr_2d: float
    ssim_2d: float
    dice: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "method": self.name,
            "psnr": self.psnr,
            "ssim": self.ssim,
            "psnr_mask": self.psnr_mask,
            "ssim_mask": self.ssim_mask,
            "psnr_2d": self.psnr_2d,
            "ssim_2d": self.ssim_2d,
            **{f"dice_{k}": v for k, v in self.dice.items()},
        }


def score(
    name: str,
    test: np.ndarray,
    hr: np.ndarray,
    mask: np.ndarray,
    slice_axis: int,
    hr_segmentation: np.ndarray | None = None,
) -> MethodScores:
    """Whole-volume and masked PSNR/SSIM (HR data range), the per-slice 2-D protocol along
    ``slice_axis``, and tissue Dice when ``hr_segmentation`` is given."""
    p2, s2, _ = slice_metrics(test, hr, slice_axis)
    out = MethodScores(
        name=name,
        psnr=psnr(test, hr),
        ssim=ssim(test, hr),
        psnr_mask=psnr(test, hr, mask),
        ssim_mask=ssim(test, hr, mask),
        psnr_2d=p2,
        ssim_2d=s2,
    )
    if hr_segmentation is not None:
        d = dice(segment_tissues(test, mask), hr_segmentation, labels=list(TISSUES))
        out.dice = {TISSUES[k]: v for k, v in d.items()}
        out.dice["mean"] = float(np.mean(list(d.values())))
    return out


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
    n_thin = hr.shape[axis]
    if lr.shape[axis] * factor < n_thin:
        raise ValueError(f"LR with {lr.shape[axis]} slices x{factor} does not cover the HR's {n_thin} slices")
    m = foreground_mask(hr) if mask is None else np.asarray(mask, dtype=bool)
    sa = default_slice_axis(axis) if slice_axis is None else slice_axis
    hr_seg = segment_tissues(hr, m) if with_dice else None
    rows = [score("TransMRSR", sr, hr, m, sa, hr_seg)]
    for name, mode in (("cubic", "cubic"), ("trilinear", "linear")):
        interp = interpolate_to_thin(lr, axis, factor, n_thin=n_thin, mode=mode)
        rows.append(score(name, interp, hr, m, sa, hr_seg))
    return rows


def format_table(rows: list[MethodScores]) -> str:
    """Markdown table of the scores."""
    has_dice = any(r.dice for r in rows)
    head = "| method | PSNR | SSIM | PSNR (mask) | SSIM (mask) | PSNR 2-D | SSIM 2-D |"
    sep = "|---|---|---|---|---|---|---|"
    if has_dice:
        head += " Dice CSF | Dice GM | Dice WM | Dice mean |"
        sep += "---|---|---|---|"
    lines = [head, sep]
    for r in rows:
        line = (
            f"| {r.name} | {r.psnr:.2f} | {r.ssim:.4f} | {r.psnr_mask:.2f} | {r.ssim_mask:.4f} | "
            f"{r.psnr_2d:.2f} | {r.ssim_2d:.4f} |"
        )
        if has_dice:
            line += "".join(f" {r.dice.get(k, float('nan')):.4f} |" for k in ("CSF", "GM", "WM", "mean"))
        lines.append(line)
    return "\n".join(lines)
