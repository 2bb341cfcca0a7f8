"""Small building blocks shared by the encoder, the StyleSwin generator and the discriminator.

Reference maths only; the CPU inference fast paths of these modules are in :mod:`.cpu_engine`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate (StyleGAN2).

    Weights are stored at unit scale and multiplied by ``lr_mul / sqrt(in_dim)`` at run time,
    so every layer learns at the same speed under Adam; ``activation="lrelu"`` applies a
    leaky ReLU (slope 0.2) scaled by sqrt(2) to keep the variance.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        bias: bool = True,
        bias_init: float = 0.0,
        lr_mul: float = 1.0,
        activation: str | None = None,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # scale the (small) output rather than the weight: rescaling a large weight matrix on
        # every call costs a full pass over it
        out = F.linear(x, self.weight) * self.scale
        if self.bias is not None:
            out = out + self.bias * self.lr_mul
        if self.activation == "lrelu":
            out = F.leaky_relu(out, 0.2) * math.sqrt(2.0)
        return out

    def extra_repr(self) -> str:
        o, i = self.weight.shape
        return f"{i}, {o}, lr_mul={self.lr_mul}, activation={self.activation}"


class EqualConv2d(nn.Module):
    """Conv2d with equalised learning rate (weights scaled by ``1/sqrt(fan_in)`` at run time)."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None
        self.scale = 1.0 / math.sqrt(in_ch * kernel_size**2)
        self.stride = stride
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, self.stride, self.padding)

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        return f"{i}, {o}, kernel_size={k}, stride={self.stride}, padding={self.padding}"


class ScaledLeakyReLU(nn.Module):
    """Leaky ReLU (slope 0.2) times sqrt(2), the variance-preserving StyleGAN activation."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, 0.2) * math.sqrt(2.0)


class PixelNorm(nn.Module):
    """Normalise each vector to unit RMS over its last dimension."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + 1e-8)


class ResidualBlock(nn.Module):
    """conv3x3 -> ReLU -> conv3x3, plus identity. ``(B, C, H, W) -> (B, C, H, W)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class ConvStack(nn.Module):
    """conv3x3 (in -> out) + ReLU followed by ``blocks`` residual blocks.
    ``(B, C_in, H, W) -> (B, C_out, H, W)``.

    Used for the shallow feature extractor (``F_s``) and the body of the reconstruction head.
    """

    def __init__(self, in_ch: int, out_ch: int, blocks: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.blocks = nn.Sequential(*[ResidualBlock(out_ch) for _ in range(blocks)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(F.relu(self.conv(x)))


class Mlp(nn.Module):
    """Token MLP: Linear -> GELU (exact, erf) -> Linear. ``(..., C) -> (..., C)``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch per sample while training."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


def styleswin_sinusoidal_grid(height: int, width: int, channels: int, device=None, dtype=None) -> torch.Tensor:
    """StyleSwin's 2-D sinusoidal position embedding (its ``SinusoidalPositionalEmbedding.make_grid2d``),
    ``(1, H, W, channels)``.

    With ``q = channels / 4`` frequencies ``w_i = 10000^(-i / (q - 1))``, ``i = 0 .. q-1``, and
    positions counted from 1 (StyleSwin keeps 0 for padding)::

        grid[0, y, x] = [sin((x+1) w), cos((x+1) w) | sin((y+1) w), cos((y+1) w)]

    i.e. the column embedding fills the first half of the channels and the row embedding the
    second. Computed in float32 with StyleSwin's operations, so the values are its values bit for
    bit (``q = 1``, where its divisor ``q - 1`` is 0, takes the one frequency 1).
    """
    if channels % 4:
        raise ValueError(f"sinusoidal embedding needs channels divisible by 4, got {channels}")
    quarter = channels // 4
    freqs = torch.exp(
        torch.arange(quarter, device=device, dtype=torch.float32) * -(math.log(10000.0) / max(quarter - 1, 1))
    )

    def embed(n: int) -> torch.Tensor:  # (n, 2q): positions 1 .. n
        p = torch.arange(1, n + 1, device=device, dtype=torch.float32)[:, None] * freqs[None]
        return torch.cat([p.sin(), p.cos()], dim=1)

    cols = embed(width)[None, :, :].expand(height, width, 2 * quarter)
    rows = embed(height)[:, None, :].expand(height, width, 2 * quarter)
    grid = torch.cat([cols, rows], dim=-1)[None]
    return grid.to(dtype) if dtype is not None else grid


def sinusoidal_grid(height: int, width: int, channels: int, device=None, dtype=None) -> torch.Tensor:
    """The earlier (``position_table="legacy"``) 2-D sinusoidal embedding ``(1, H, W, channels)``.

    Kept only so that weights trained with it (the bundled checkpoints, whose ``config.json``
    predates the ``position_table`` field) give the outputs they were trained to give. It differs
    from :func:`styleswin_sinusoidal_grid` in three ways: positions count from 0, the row
    embedding comes first, and the frequency divisor is ``q`` instead of ``q - 1``.
    """
    if channels % 4:
        raise ValueError(f"sinusoidal embedding needs channels divisible by 4, got {channels}")
    quarter = channels // 4
    freqs = torch.exp(-math.log(10000.0) * torch.arange(quarter, device=device, dtype=torch.float32) / max(quarter, 1))
    ys = torch.arange(height, device=device, dtype=torch.float32)[:, None] * freqs  # (H, q)
    xs = torch.arange(width, device=device, dtype=torch.float32)[:, None] * freqs  # (W, q)
    emb_y = torch.cat([ys.sin(), ys.cos()], dim=-1)[:, None, :].expand(height, width, 2 * quarter)
    emb_x = torch.cat([xs.sin(), xs.cos()], dim=-1)[None, :, :].expand(height, width, 2 * quarter)
    grid = torch.cat([emb_y, emb_x], dim=-1)[None]
    return grid.to(dtype) if dtype is not None else grid
