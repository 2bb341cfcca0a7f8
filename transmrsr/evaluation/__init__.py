"""Metrics (PSNR, SSIM, Dice), tissue segmentation and comparison tables."""

from .evaluate import MethodScores, evaluate, format_table
from .metrics import data_range, dice, foreground_mask, psnr, slice_metrics, ssim

__all__ = ["MethodScores", "data_range", "dice", "evaluate", "foreground_mask", "format_table", "psnr", "slice_metrics", "ssim"]
