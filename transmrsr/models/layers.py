"""Small building blocks shared by the encoder, the StyleSwin generator and the discriminator."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

# oneDNN's linear with fused bias and activation (the kernel torch.compile uses on CPU). It has
# no autograd formula, so it only serves inference; ``FUSED_CPU_LINEAR = False`` turns it off.
_ONEDNN_LINEAR = getattr(torch.ops.mkldnn, "_linear_pointwise", None) if torch.backends.mkldnn.is_available() else None
FUSED_CPU_LINEAR = True
#: tokens per chunk of the CPU inference paths that work chunk by chunk (MLP, window attention,
#: AdaIN statistics): small enough for a chunk's buffers to stay in cache
CPU_CHUNK_TOKENS = 4096


def linear(x: torch.Tensor, layer: nn.Linear, activation: str = "none") -> torch.Tensor:
    """``layer(x)``, followed by exact (erf) GELU when ``activation == "gelu"``. ``(..., C_in) -> (..., C_out)``.

    On CPU in float32 with gradients off this is one oneDNN call with the bias and the GELU in
    the kernel's epilogue: the output is written once instead of three times (bias broadcast,
    GEMM, GELU), about 1.5-2x faster for the wide-and-shallow token GEMMs of the full-resolution
    layers. The values equal ``F.gelu(F.linear(x, W, b))`` up to float rounding.
    """
    if activation not in ("none", "gelu"):
        raise ValueError(f"unknown activation {activation!r}")
    w = layer.weight
    if _fused_cpu_inference(x, w):
        return _ONEDNN_LINEAR(x, w, layer.bias, activation, [], "none" if activation == "gelu" else "")
    y = F.linear(x, w, layer.bias)
    return F.gelu(y) if activation == "gelu" else y


def _fused_cpu_inference(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether :func:`linear` (and the chunked CPU paths) take the oneDNN path: CPU, float32,
    gradients off, no CPU autocast (the oneDNN ops know nothing of it), not compiling."""
    return (
        FUSED_CPU_LINEAR
        and _ONEDNN_LINEAR is not None
        and not torch.is_grad_enabled()
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and not torch.is_autocast_enabled("cpu")
        and not torch.compiler.is_compiling()
    )


def chunked_cpu_path(tokens: int, chunk: int, x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether a module takes its chunk-by-chunk CPU inference path: the fused CPU path
    (:func:`_fused_cpu_inference`) and more than two chunks of ``chunk`` tokens to work on
    (``tokens`` counts every slice of the batch); smaller maps run in one pass."""
    return tokens > 2 * chunk and _fused_cpu_inference(x, weight)


def token_chunks(length: int, batch: int, chunk: int) -> list[slice]:
    """Slices of the token axis (``length`` tokens per slice) holding about ``chunk`` tokens of
    the whole batch each: the same tokens of every slice, so per-slice norms still apply."""
    step = max(1, chunk // batch)
    return [slice(start, start + step) for start in range(0, length, step)]


_ONEDNN_CONV = (
    getattr(torch.ops.mkldnn, "_convolution_pointwise", None) if torch.backends.mkldnn.is_available() else None
)
FUSED_CPU_CONV = True  # False: conv2d_same always takes the plain ops


def conv2d_same(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    activation: str = "none",
    residual: torch.Tensor | None = None,
    slope: float = 0.2,
) -> torch.Tensor:
    """``act(conv2d(x, weight, bias))`` or ``residual + conv2d(...)``, stride 1, "same" padding (odd kernels).
    ``x (B, C_in, H, W)`` -> ``(B, C_out, H, W)``; ``activation`` is ``"none"``, ``"relu"`` or
    ``"leaky_relu"`` (negative ``slope``); not both an activation and a residual.

    On CPU in float32 with gradients off and channels-last maps this is one oneDNN call with the
    activation or the sum in the kernel's epilogue (the output is written once instead of
    being read and written again: about a third off a 64-channel 256² convolution here). The
    values equal the plain ops up to float rounding.
    """
    if activation not in ("none", "relu", "leaky_relu"):
        raise ValueError(f"unknown activation {activation!r}")
    if activation != "none" and residual is not None:
        raise ValueError("conv2d_same takes an activation or a residual, not both")
    pad = weight.shape[-1] // 2
    if (
        FUSED_CPU_CONV
        and _ONEDNN_CONV is not None
        and _fused_cpu_inference(x, weight)
        and x.is_contiguous(memory_format=torch.channels_last)
        and (residual is None or residual.is_contiguous(memory_format=torch.channels_last))
    ):
        geometry = ([pad, pad], [1, 1], [1, 1], 1)
        if residual is not None:
            return _ONEDNN_CONV.binary(x, residual, weight, bias, *geometry, "add", 1.0, None, [], None)
        scalars = [slope] if activation == "leaky_relu" else []
        return _ONEDNN_CONV(x, weight, bias, *geometry, activation, scalars, None)
    y = F.conv2d(x, weight, bias, padding=pad)
    if residual is not None:
        return residual + y
    if activation == "relu":
        return F.relu(y)
    return F.leaky_relu(y, slope) if activation == "leaky_relu" else y


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """``x (B, C, H, W)`` with channels-last strides, a no-op when it has them. Also for ``C = 1``,
    where ``contiguous(memory_format=channels_last)`` keeps the NCHW strides (both count as
    contiguous) and oneDNN would then write its output NCHW, to be copied again downstream."""
    if x.is_contiguous(memory_format=torch.channels_last) and (x.shape[1] != 1 or x.stride(1) == 1):
        return x
    return torch.empty_like(x, memory_format=torch.channels_last).copy_(x)


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
        h = conv2d_same(x, self.conv1.weight, self.conv1.bias, "relu")
        return conv2d_same(h, self.conv2.weight, self.conv2.bias, residual=x)


class ConvStack(nn.Module):
    """conv3x3 (in -> out) + ReLU followed by ``blocks`` residual blocks.

    Used for the shallow feature extractor (``F_s``) and the body of the reconstruction head.
    """

    def __init__(self, in_ch: int, out_ch: int, blocks: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.blocks = nn.Sequential(*[ResidualBlock(out_ch) for _ in range(blocks)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # channels-last from here on (a no-op when the input already is): the convolutions run
        # without layout reorders and the token views ``(B, H, W, C)`` of the maps are free
        x = channels_last(x)
        return self.blocks(
            conv2d_same(x, self.conv.weight, self.conv.bias, "relu").contiguous(memory_format=torch.channels_last)
        )


class Mlp(nn.Module):
    """Token MLP: Linear -> GELU -> Linear. ``(..., C) -> (..., C)``; ``forward(x, residual)``
    returns ``residual + mlp(x)``, ``forward(x, residual, norm)`` ``residual + mlp(norm(x))``
    for a per-token ``norm`` such as a LayerNorm (applied chunk by chunk on the CPU path).
    With ``inplace=True`` the CPU inference path adds into ``residual`` itself (which may be
    ``x``) and returns it: for callers that own ``residual``."""

    #: tokens per chunk on the CPU inference path (see :meth:`_chunked`)
    CPU_CHUNK = CPU_CHUNK_TOKENS

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(
        self,
        x: torch.Tensor,
        residual: torch.Tensor | None = None,
        norm: Callable[[torch.Tensor], torch.Tensor] | None = None,
        inplace: bool = False,
    ) -> torch.Tensor:
        if chunked_cpu_path(x.numel() // x.shape[-1], self.CPU_CHUNK, x, self.fc1.weight):
            return self._chunked(x, residual, norm, inplace)
        y = self._mlp(x if norm is None else norm(x))
        return y if residual is None else residual + y

    def _mlp(self, x: torch.Tensor) -> torch.Tensor:
        return linear(linear(x, self.fc1, "gelu"), self.fc2)

    def _chunked(
        self,
        x: torch.Tensor,
        residual: torch.Tensor | None,
        norm: Callable[[torch.Tensor], torch.Tensor] | None,
        inplace: bool,
    ) -> torch.Tensor:
        """The (norm and) MLP over chunks of about ``CPU_CHUNK`` tokens (the same tokens of every
        slice, so a per-slice ``norm`` applies), the residual added into one output buffer (the
        residual itself when ``inplace``): the normalised tokens and the ``hidden``-wide
        activations of a chunk stay in cache instead of making a round trip through memory
        (20-35 % faster on CPU for the full-resolution layers). A chunk's tokens are read
        before they are written, so ``residual`` may be ``x``. Same values."""
        shape = x.shape
        x = x.reshape(-1, shape[-2], shape[-1]) if x.dim() >= 3 else x[None]
        res = residual.reshape(x.shape[:-1] + residual.shape[-1:]) if residual is not None else None
        if inplace and res is not None:
            out = res
        else:
            out = torch.empty((*x.shape[:-1], self.fc2.out_features), dtype=x.dtype, device=x.device)
        for part in token_chunks(x.shape[1], x.shape[0], self.CPU_CHUNK):
            y = self._mlp(x[:, part] if norm is None else norm(x[:, part]))
            if res is None:
                out[:, part] = y
            else:
                torch.add(res[:, part], y, out=out[:, part])
        return out.view(*shape[:-1], -1)


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
