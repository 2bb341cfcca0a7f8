"""Window attention and the Swin encoder (paper §3.2).

Feature maps inside the transformer parts are channels-last, ``(B, H, W, C)``; the
convolutional parts use ``(B, C, H, W)``. Attention runs through
``torch.nn.functional.scaled_dot_product_attention`` with the relative-position bias broadcast
over windows (and the shifted-window mask only on the border windows that need it), cached
while gradients are off.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .layers import CPU_CHUNK_TOKENS, DropPath, Mlp, chunked_cpu_path, conv2d_same, linear


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

    ``forward(x (B, H*W, dim))`` returns the projected attention output ``(B, H*W, dim)``;
    ``forward(x, residual)`` returns ``residual + output``; ``forward(x, residual, norm)``
    attends over ``norm(x)`` for a per-token ``norm`` (a LayerNorm), applied to the gathered
    tokens (chunk by chunk on the CPU inference path, see :meth:`_chunked`). With
    ``inplace=True`` the CPU inference path adds the output into ``residual`` itself (which may
    be ``x``) and returns it: for callers that own ``residual`` and do not need it afterwards.
    Tokens are gathered once into window order (:func:`window_order`), so neither the roll
    nor the window partition is a separate copy. The relative-position bias is one
    ``(1, heads, N, N)`` tensor broadcast over windows; only the border windows of a shifted
    layer are run again with their own ``(1, n_mixed, heads, N, N)`` bias + mask. Both feed
    ``scaled_dot_product_attention`` (its fused path on CPU and GPU) and are cached while
    gradients are off. A per-window 4-D mask would cost ``nW`` times the memory (270 MB for
    one 256² layer of the ``paper`` preset) and time to read.
    """

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
        # output channels are laid out (heads, 3, head_dim): see window_order
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
        self._cache: tuple | None = None

    #: tokens per group on the CPU inference path (see :meth:`_chunked`)
    CPU_CHUNK = CPU_CHUNK_TOKENS
    #: head-width multiple per device type that the fused attention kernels need: CUDA's
    #: memory-efficient kernel (the one that takes an additive mask) wants widths divisible by 8
    #: in half precision, and the ``paper`` encoder's 256² level has width 4; without the padding
    #: that level falls back to the math path, which writes every window's score matrix
    HEAD_ALIGN: dict[str, int] = {"cuda": 8}

    def attn_bias(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(bias (1, heads, N, N), mixed (1, n_mixed, heads, N, N) or None)``: the relative-position
        bias for every window, and bias + shift mask for the windows that need the mask.

        On CPU with gradients off both are cached, keyed on a copy of the (small) bias table
        compared by value, so in-place updates of any kind (optimiser, EMA through ``.data``,
        ``load_state_dict``) are always seen. On GPU they are rebuilt each call (small, and a
        value comparison would synchronise the device).
        """
        table = self.bias_table
        cacheable = not torch.is_grad_enabled() and table.device.type == "cpu" and not torch.compiler.is_compiling()
        if cacheable and self._cache is not None:
            cached_table, cached_dtype, cached = self._cache
            if cached_dtype == dtype and torch.equal(cached_table, table):
                return cached
        n = self.window * self.window
        # (1, heads, N, N): a 3-D mask would send the CPU kernel down its slow math path
        bias = table[self.rel_index.reshape(-1)].view(n, n, self.heads).permute(2, 0, 1)[None].to(dtype).contiguous()
        mixed = (bias + self.shift_mask.to(dtype)) if self.shift_mask is not None else None
        if cacheable:
            self._cache = (table.detach().clone(), dtype, (bias, mixed))
        return bias, mixed

    def forward(
        self,
        x: torch.Tensor,
        residual: torch.Tensor | None = None,
        norm: Callable[[torch.Tensor], torch.Tensor] | None = None,
        inplace: bool = False,
    ) -> torch.Tensor:
        b, length, _ = x.shape
        n_windows = length // (self.window * self.window)
        if chunked_cpu_path(b * length, self.CPU_CHUNK, x, self.qkv.weight):
            return self._chunked(x, n_windows, norm, residual, inplace)
        xw = x.index_select(1, self.order)
        out = self._attend(xw if norm is None else norm(xw), 0, n_windows, n_windows)
        # project while still in window order, then one gather back (index_select is far
        # cheaper than a scatter such as index_add on CPU)
        out = out.index_select(1, self.inverse_order)
        if residual is None:
            return out
        return out.add_(residual) if not torch.is_grad_enabled() else residual + out

    def _chunked(
        self,
        x: torch.Tensor,
        n_windows: int,
        norm: Callable[[torch.Tensor], torch.Tensor] | None,
        residual: torch.Tensor | None,
        inplace: bool,
    ) -> torch.Tensor:
        """CPU inference: the windows in groups of about ``CPU_CHUNK`` tokens (all slices of the
        batch together), so that each group's qkv and attention buffers stay in cache. Each
        group's projected output (plus its residual tokens) is scattered straight to natural
        token order, into ``residual`` when ``inplace`` else into one new buffer: no full-size
        window-ordered copy, no full-size gather back. ``residual`` may be ``x``: a group's
        tokens are read before they are written and no other group reads them. Same result as
        one pass."""
        b, n = x.shape[0], self.window * self.window
        out = residual if inplace and residual is not None else x.new_empty(b, n_windows * n, self.dim)
        per = max(1, self.CPU_CHUNK // (b * n))
        for w0 in range(0, n_windows, per):
            k = min(per, n_windows - w0)
            idx = self.order[w0 * n : (w0 + k) * n]
            xw = x.index_select(1, idx)
            o = self._attend(xw if norm is None else norm(xw), w0, k, n_windows)
            if residual is not None:
                o.add_(xw if residual is x else residual.index_select(1, idx))
            out.index_copy_(1, idx, o)
        return out

    def _attend(self, xw: torch.Tensor, w0: int, k: int, n_windows: int) -> torch.Tensor:
        """Attention over windows ``w0 .. w0 + k - 1`` (window order) of every slice:
        ``xw (B, k*N, dim)`` in window order -> projected output ``(B, k*N, dim)``, same order."""
        b = xw.shape[0]
        n = self.window * self.window
        heads, d = self.heads, self.attn_dim // self.heads
        # q, k, v: strided (B*k, heads, N, d) views of one qkv buffer (channels (heads, 3, d));
        # the fused kernel takes strides, so there is no copy
        qkv = linear(xw, self.qkv).view(b * k, n, heads, 3, d)
        q, k_, v = qkv.permute(3, 0, 2, 1, 4).unbind(0)
        bias, mixed = self.attn_bias(q.dtype)
        # head widths the fused kernels of this device cannot take are zero-padded: zero columns
        # add nothing to q.k, and the output's extra columns (zero) are dropped; the scale stays
        # that of the true width
        pad = -d % self.HEAD_ALIGN.get(q.device.type, 1)
        if pad:
            q, k_, v = (F.pad(t, (0, pad)) for t in (q, k_, v))
        dk, scale = d + pad, (d**-0.5 if pad else None)  # None: the kernel's own 1/sqrt(d)
        out = F.scaled_dot_product_attention(q, k_, v, attn_mask=bias, scale=scale)  # (B*k, heads, N, dk)
        first_mixed = n_windows - self.n_mixed  # border windows come last in window order
        m0 = max(first_mixed, w0) - w0  # the first border window of this group, if any
        if self.n_mixed and m0 < k:
            # the border windows again, with the shift mask (about 2/sqrt(nW) of the work):
            # cheaper than a per-window mask over all of them
            m = k - m0

            def border(t: torch.Tensor) -> torch.Tensor:
                return t.unflatten(0, (b, k))[:, m0:].reshape(b * m, heads, n, dk)

            lo = w0 + m0 - first_mixed
            mask = mixed[:, lo : lo + m].expand(b, m, heads, n, n).reshape(b * m, heads, n, n)  # a view when B = 1
            o_m = F.scaled_dot_product_attention(border(q), border(k_), border(v), attn_mask=mask, scale=scale)
            out = out.view(b, k, heads, n, dk)
            if torch.is_grad_enabled():
                out = torch.cat([out[:, :m0], o_m.view(b, m, heads, n, dk)], dim=1)
            else:
                out[:, m0:] = o_m.view(b, m, heads, n, dk)
        out = out.view(b, k, heads, n, dk)
        if pad:
            out = out[..., :d]
        out = out.transpose(2, 3).reshape(b, k * n, self.attn_dim)
        return linear(out, self.proj)

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

    def forward(self, x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        """``x (B, H*W, C) -> (B, H*W, C)``; ``inplace``: ``x`` may be overwritten (CPU inference)."""
        if self.drop_path.p and self.training:
            x = x + self.drop_path(self.attn(self.norm1(x)))
            return x + self.drop_path(self.mlp(self.norm2(x)))
        # the norms run inside the attention and the MLP: chunk by chunk on the CPU path. The
        # MLP may always add in place: its input is the attention's output, owned here
        # (a new tensor unless ``inplace``)
        x = self.attn(x, residual=x, norm=self.norm1, inplace=inplace)
        return self.mlp(x, residual=x, norm=self.norm2, inplace=True)


class PatchMerging(nn.Module):
    """2x2 space-to-depth, LayerNorm, Linear (no bias): ``(B, H, W, C) -> (B, H/2, W/2, C_out)``."""

    #: output tokens per band on the CPU inference path
    CPU_CHUNK = CPU_CHUNK_TOKENS

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, out_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        if chunked_cpu_path(b * h * w // 4, self.CPU_CHUNK, x, self.reduction.weight):
            # CPU inference: bands of output rows, so that the space-to-depth copy and its norm
            # stay in cache instead of making two full-size round trips through memory
            out = x.new_empty(b, h // 2, w // 2, self.reduction.out_features)
            rows = max(1, self.CPU_CHUNK // (b * (w // 2)))
            for r in range(0, h // 2, rows):
                out[:, r : r + rows] = self._merge(x[:, 2 * r : 2 * (r + rows)])
            return out
        return self._merge(x)

    def _merge(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        x = x.reshape(b, h // 2, 2, w // 2, 2, c).permute(0, 1, 3, 4, 2, 5).reshape(b, h // 2, w // 2, 4 * c)
        return linear(self.norm(x), self.reduction)


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
        for i, layer in enumerate(self.layers):
            y = layer(y, inplace=i > 0)  # the first layer's input is x, still needed below
        # F^ = conv(RSTB(F)) + F, the sum fused into the conv on CPU (channels-last views)
        y = conv2d_same(
            y.view(b, h, w, c).permute(0, 3, 1, 2), self.conv.weight, self.conv.bias, residual=x.permute(0, 3, 1, 2)
        )
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
