"""Window attention and the Swin encoder (paper §3.2).

Feature maps inside the transformer parts are channels-last, ``(B, H, W, C)``; the
convolutional parts use ``(B, C, H, W)``. Attention runs through
``torch.nn.functional.scaled_dot_product_attention`` with the relative-position bias broadcast
over windows (and the shifted-window mask only on the border windows that need it).
Reference maths only; the CPU inference fast paths (chunked, fused, in place) are in
:mod:`.cpu_engine`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import DropPath, Mlp


def relative_position_index(window: int) -> torch.Tensor:
    """Index into a ``((2w-1)^2, heads)`` bias table for every token pair: ``(w*w, w*w)``."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij"))
    coords = coords.flatten(1)  # (2, N)
    rel = coords[:, :, None] - coords[:, None, :] + (window - 1)  # (2, N, N), each in [0, 2w-2]
    return rel[0] * (2 * window - 1) + rel[1]


def _mixed_windows(height: int, width: int, window: int, shift: int) -> torch.Tensor:
    """Bool ``(nh*nw,)``: which windows of the map rolled by ``-shift`` hold tokens from more
    than one region (the last row and column of windows); only these need the shift mask."""
    nh, nw = height // window, width // window
    mixed = torch.zeros(nh, nw, dtype=torch.bool)
    if shift:
        mixed[-1, :] = True
        mixed[:, -1] = True
    return mixed.reshape(-1)


def window_order(height: int, width: int, window: int, shift: int) -> torch.Tensor:
    """Token permutation ``(H*W,)`` that lists a map window by window, after a cyclic shift.

    Position ``i = w * N + n`` holds the token at in-window offset ``n`` of window ``w`` of the
    map rolled by ``-shift``: the shift and the window partition are one gather. Windows that
    need the shift mask (:func:`_mixed_windows`) come last.
    """
    nw = width // window
    n_y, n_x = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    windows = torch.argsort(_mixed_windows(height, width, window, shift).to(torch.int8), stable=True)
    w_y, w_x = windows // nw, windows % nw
    rows = (w_y.reshape(-1, 1) * window + n_y.reshape(1, -1) + shift) % height  # (nW, N)
    cols = (w_x.reshape(-1, 1) * window + n_x.reshape(1, -1) + shift) % width
    return (rows * width + cols).reshape(-1)


def shifted_window_mask(height: int, width: int, window: int, shift: int) -> torch.Tensor:
    """Additive mask ``(nW, N, N)`` for attention on a map rolled by ``-shift``, windows in
    raster order.

    Tokens that wrapped around from the opposite border must not attend to their new
    neighbours: pairs from different regions get ``-inf``, others 0.
    """
    regions = torch.zeros(height, width)
    bounds = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    label = 0
    for hs in bounds:
        for ws in bounds:
            regions[hs, ws] = label
            label += 1
    win = regions.view(height // window, window, width // window, window).permute(0, 2, 1, 3)
    win = win.reshape(-1, window * window)  # (nW, N)
    diff = win[:, None, :] - win[:, :, None]
    return torch.zeros_like(diff).masked_fill(diff != 0, float("-inf"))


class WindowAttention(nn.Module):
    """Multi-head self-attention within (optionally shifted) square windows, with its own
    qkv and output projections.

    Args:
        dim: input channels (the token width).
        attn_dim: channels attended (``heads * head_dim``); StyleSwin uses half of ``dim``.
        heads: attention heads; ``attn_dim`` must be divisible by it.
        resolution: side of the square feature map (pixels).
        window: window side; clipped to ``resolution`` (then no shift is possible).
        shift: cyclic shift in pixels (0 = plain windows); dropped when the map is one window.
        proj_bias: whether the output projection has a bias.

    ``forward(x (B, H*W, dim))`` returns the projected attention output ``(B, H*W, dim)``.
    Tokens are gathered once into window order (:func:`window_order`), so neither the roll
    nor the window partition is a separate copy. The relative-position bias is one
    ``(1, heads, N, N)`` tensor broadcast over windows; only the border windows of a shifted
    layer are run again with their own ``(1, n_mixed, heads, N, N)`` bias + mask. Both feed
    ``scaled_dot_product_attention`` (its fused path on CPU and GPU). A per-window 4-D mask
    would cost ``nW`` times the memory (270 MB for one 256² layer of the ``paper`` preset) and
    time to read.
    """

    #: head-width multiple per device type that the fused attention kernels need: CUDA's
    #: memory-efficient kernel (the one that takes an additive mask) wants widths divisible by 8
    #: in half precision, and the ``paper`` encoder's 256² level has width 4; without the padding
    #: that level falls back to the math path, which writes every window's score matrix
    HEAD_ALIGN: dict[str, int] = {"cuda": 8}

    def __init__(
        self, dim: int, attn_dim: int, heads: int, resolution: int, window: int, shift: int = 0, proj_bias: bool = True
    ) -> None:
        super().__init__()
        window = min(window, resolution)
        if resolution <= window:
            shift = 0
        if resolution % window:
            raise ValueError(f"resolution {resolution} is not a multiple of window {window}")
        self.dim, self.attn_dim, self.heads = dim, attn_dim, heads
        self.window, self.shift, self.resolution = window, shift, resolution
        # output channels are laid out (heads, 3, head_dim): see forward
        self.qkv = nn.Linear(dim, 3 * attn_dim)
        self.proj = nn.Linear(attn_dim, dim, bias=proj_bias)
        self.bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.bias_table, std=0.02)
        self.register_buffer("rel_index", relative_position_index(window), persistent=False)
        order = window_order(resolution, resolution, window, shift)
        self.register_buffer("order", order, persistent=False)
        self.register_buffer("inverse_order", torch.argsort(order), persistent=False)
        mixed = _mixed_windows(resolution, resolution, window, shift)
        self.n_mixed = int(mixed.sum())
        mask = shifted_window_mask(resolution, resolution, window, shift)[mixed][None, :, None] if shift else None
        self.register_buffer("shift_mask", mask, persistent=False)  # (1, n_mixed, 1, N, N)

    def attn_bias(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(bias (1, heads, N, N), mixed (1, n_mixed, heads, N, N) or None)``: the relative-position
        bias for every window, and bias + shift mask for the windows that need the mask."""
        n = self.window * self.window
        # (1, heads, N, N): a 3-D mask would send the CPU kernel down its slow math path
        bias = self.bias_table[self.rel_index.reshape(-1)].view(n, n, self.heads).permute(2, 0, 1)[None]
        bias = bias.to(dtype).contiguous()
        mixed = (bias + self.shift_mask.to(dtype)) if self.shift_mask is not None else None
        return bias, mixed

    def sdpa(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``softmax(q k^T / sqrt(d) + mask) v`` for ``q, k, v (..., N, d)``. Head widths the fused
        kernels of this device cannot take are zero-padded: zero columns add nothing to q.k, the
        output's extra (zero) columns are dropped, and the scale stays that of the true width."""
        d = q.shape[-1]
        pad = -d % self.HEAD_ALIGN.get(q.device.type, 1)
        if not pad:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        q, k, v = (F.pad(t, (0, pad)) for t in (q, k, v))
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=d**-0.5)[..., :d]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, length, _ = x.shape
        n = self.window * self.window
        nw, m = length // n, self.n_mixed  # windows per slice; border windows (listed last)
        heads, d = self.heads, self.attn_dim // self.heads
        # the cyclic shift and the window partition as one gather: (B, nW*N, dim), window-major
        xw = x.index_select(1, self.order)
        # q, k, v: strided (B*nW, heads, N, d) views of one qkv buffer (channels (heads, 3, d));
        # the fused kernel takes strides, so there is no copy
        q, k, v = self.qkv(xw).view(b * nw, n, heads, 3, d).permute(3, 0, 2, 1, 4).unbind(0)
        bias, mixed = self.attn_bias(q.dtype)
        out = self.sdpa(q, k, v, bias)  # (B*nW, heads, N, d)
        if m:
            # the border windows again, with the shift mask (about 2/sqrt(nW) of the work):
            # cheaper than a per-window mask over all of them
            def border(t: torch.Tensor) -> torch.Tensor:
                return t.unflatten(0, (b, nw))[:, nw - m :].flatten(0, 1)

            mask = mixed.expand(b, m, heads, n, n).flatten(0, 1)  # (B*m, heads, N, N)
            out_m = self.sdpa(border(q), border(k), border(v), mask)
            out = torch.cat([out.unflatten(0, (b, nw))[:, : nw - m], out_m.unflatten(0, (b, m))], dim=1)
        out = out.reshape(b, nw, heads, n, d).transpose(2, 3).reshape(b, nw * n, self.attn_dim)
        # project while still in window order, then one gather back (index_select is far
        # cheaper than a scatter such as index_add on CPU)
        return self.proj(out).index_select(1, self.inverse_order)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, attn_dim={self.attn_dim}, heads={self.heads}, window={self.window}, shift={self.shift}"


class SwinLayer(nn.Module):
    """One Swin transformer layer (pre-norm W-MSA/SW-MSA + MLP). ``(B, H*W, C)`` in and out."""

    def __init__(
        self, dim: int, heads: int, resolution: int, window: int, shift: int, mlp_ratio: float, drop_path: float
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, dim, heads, resolution, window, shift)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """2x2 space-to-depth, LayerNorm, Linear (no bias): ``(B, H, W, C) -> (B, H/2, W/2, C_out)``."""

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, out_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        x = x.reshape(b, h // 2, 2, w // 2, 2, c).permute(0, 1, 3, 4, 2, 5).reshape(b, h // 2, w // 2, 4 * c)
        return self.reduction(self.norm(x))


class EncoderLevel(nn.Module):
    """``F^ = Conv3x3(RSTB(F)) + F``, then patch merging (paper eq. 2-3).

    RSTB = ``depth`` Swin layers alternating window / shifted window.
    ``(B, H, W, C) -> (B, H/2, W/2, C_out)``.
    """

    def __init__(
        self,
        dim: int,
        out_dim: int,
        heads: int,
        resolution: int,
        window: int,
        depth: int,
        mlp_ratio: float,
        drop_path: float,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            SwinLayer(dim, heads, resolution, window, (window // 2) if i % 2 else 0, mlp_ratio, drop_path)
            for i in range(depth)
        )
        self.conv = nn.Conv2d(dim, dim, 3, padding=1)
        self.merge = PatchMerging(dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        y = x.reshape(b, h * w, c)
        for layer in self.layers:
            y = layer(y)
        # F^ = Conv3x3(RSTB(F)) + F on (B, C, H, W) views of the channels-last maps
        y = x.permute(0, 3, 1, 2) + self.conv(y.view(b, h, w, c).permute(0, 3, 1, 2))
        return self.merge(y.permute(0, 2, 3, 1))


class SwinEncoder(nn.Module):
    """Hierarchical Swin encoder from ``F_s`` down to a 4x4 map.

    ``forward(F_s (B, C_s, S, S))`` returns the list of level outputs after patch merging,
    channels-last, at resolutions ``S/2, S/4, ..., 4`` (finest first).
    """

    def __init__(self, cfg) -> None:
        super().__init__()
        self.embed_norm = nn.LayerNorm(cfg.shallow_dim)
        self.levels = nn.ModuleList(
            EncoderLevel(
                dim=cfg.enc_dims[i],
                out_dim=cfg.enc_out_dims[i],
                heads=cfg.enc_heads[i],
                resolution=cfg.enc_resolutions[i],
                window=cfg.window_size,
                depth=cfg.enc_depth,
                mlp_ratio=cfg.mlp_ratio,
                drop_path=cfg.drop_path,
            )
            for i in range(cfg.num_enc_levels)
        )

    def forward(self, shallow: torch.Tensor) -> list[torch.Tensor]:
        x = self.embed_norm(shallow.permute(0, 2, 3, 1))
        outs = []
        for level in self.levels:
            x = level(x)
            outs.append(x)
        return outs
