"""An EDSR-style CNN baseline (Lim et al., CVPR-W 2017), set up as the paper sets up its baselines.

The paper compares TransMRSR with EDSR among others (§4.4: "we remove the last upsampling
module of all networks. Images are upsampled to high-resolution space before passing through
the network"). So here, like TransMRSR, the network sees the cubic-interpolated slice and
predicts a residual that is added to it:

``x (B, 1, H, W)`` -> conv 3x3 (head) -> ``num_blocks`` x [conv-ReLU-conv, times ``res_scale``,
plus its input] (no batch norm) -> conv 3x3 -> plus the head's output (long skip) -> conv 3x3 to
one channel -> ``x + residual``.

It is fully convolutional; ``config.img_size`` is the canvas that training crops and that
:func:`transmrsr.inference.super_resolve` pads / tiles slices to, as for TransMRSR.
``forward(x, phi=None)`` accepts and ignores ``phi`` so that code written for TransMRSR runs it
unchanged. Saved and loaded like TransMRSR (``config.json`` with ``model_type: "edsr"`` +
``model.safetensors``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from ..config import ConfigError, SerializableConfig
from ..hub import PretrainedMixin

MODEL_TYPE = "edsr"


@dataclass
class EDSRConfig(SerializableConfig):
    """Sizes of the EDSR baseline.

    Attributes:
        img_size: training / inference canvas in pixels (the network itself takes any size).
        in_channels: image channels (1: one MRI contrast).
        channels: feature channels of every conv.
        num_blocks: residual blocks (conv-ReLU-conv, no batch norm).
        res_scale: residual scaling inside each block (EDSR's 0.1 keeps deep stacks stable).
        preset: name of the preset this config was made from (informational).
    """

    img_size: int = 256
    in_channels: int = 1
    channels: int = 32
    num_blocks: int = 8
    res_scale: float = 0.1
    preset: str = "small"

    MODEL_TYPE: ClassVar[str] = MODEL_TYPE

    def validate(self) -> EDSRConfig:
        if self.img_size < 8:
            raise ConfigError(f"img_size must be >= 8, got {self.img_size}")
        if self.in_channels < 1 or self.channels < 1 or self.num_blocks < 0:
            raise ConfigError("in_channels and channels must be >= 1 and num_blocks >= 0")
        if not self.res_scale > 0:
            raise ConfigError(f"res_scale must be > 0, got {self.res_scale}")
        return self

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> EDSRConfig:
        """The baseline beside the TransMRSR preset of the same name (``tiny``, ``small``, ``paper``)."""
        values = cls._preset_values(EDSR_PRESETS, name, overrides)
        values.update(overrides)
        values["preset"] = name
        return cls(**values).validate()


#: Baseline sizes beside each TransMRSR preset (same canvas). ``small``: 32 channels x 8 blocks,
#: about 0.16 M parameters and 21 GFLOPs per 256^2 slice (TransMRSR ``small``: 8.5 M, 9.4 GFLOPs);
#: ``paper``: the 64 x 16 of EDSR's baseline model.
EDSR_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(img_size=32, channels=8, num_blocks=2),
    "small": dict(img_size=256, channels=32, num_blocks=8),
    "paper": dict(img_size=256, channels=64, num_blocks=16),
}


class ResBlock(nn.Module):
    """``x + res_scale * conv(relu(conv(x)))`` (EDSR: no batch norm)."""

    def __init__(self, channels: int, res_scale: float) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res_scale * self.conv2(torch.relu(self.conv1(x)))


class EDSR(nn.Module, PretrainedMixin):
    """EDSR baseline: ``model(x (B, 1, H, W) in [0, 1], phi=None) -> (B, 1, H, W)`` (``phi`` ignored)."""

    config_class = EDSRConfig

    def __init__(self, config: EDSRConfig) -> None:
        super().__init__()
        cfg = self.config = config.validate()
        c = cfg.channels
        self.head = nn.Conv2d(cfg.in_channels, c, 3, padding=1)
        self.body = nn.Sequential(*(ResBlock(c, cfg.res_scale) for _ in range(cfg.num_blocks)))
        self.body_out = nn.Conv2d(c, c, 3, padding=1)
        self.tail = nn.Conv2d(c, cfg.in_channels, 3, padding=1)
        with torch.no_grad():  # a small initial residual: the untrained model stays near its input
            self.tail.weight.mul_(0.1)
            self.tail.bias.zero_()

    def forward(self, x: torch.Tensor, phi: float | torch.Tensor | None = None) -> torch.Tensor:
        """Super-resolve interpolated LR slices ``(B, 1, H, W)``; returns ``x`` plus the residual."""
        del phi  # no truncation in a CNN; accepted so callers need not know the architecture
        if x.ndim != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"expected input of shape (B, {self.config.in_channels}, H, W), got {tuple(x.shape)}")
        feat = self.head(x)
        return x + self.tail(self.body_out(self.body(feat)) + feat)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
