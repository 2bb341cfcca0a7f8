"""Metrics (PSNR, SSIM, Dice), tissue segmentation and comparison tables."""

from .evaluate import AuthorsScores, MethodScores, evaluate, evaluate_authors, format_table
from .metrics import authors_slice_metrics, data_range, dice, foreground_mask, psnr, slice_metrics, ssim

__all__ = [
    "AuthorsScores",
    "MethodScores",
    "authors_slice_metrics",
    "data_range",
    "dice",
    "evaluate",
    "evaluate_authors",
    "foreground_mask",
    "format_table",
    "psnr",
    "slice_metrics",
    "ssim",
]
