"""The CPU inference engine: fast stand-ins for the network's modules when it runs on a CPU.

The modules in ``layers.py``, ``swin.py``, ``styleswin.py`` and ``transmrsr.py`` are the
reference: one plain PyTorch path each, the paper's maths. This module holds what makes CPU
inference fast without changing that maths:

* oneDNN linear and convolution calls with the bias, the activation (GELU, ReLU, leaky ReLU) or
  the residual sum in the kernel's epilogue, so the output is written once;
* window attention, the token MLP, patch merging and the decoder's upsampling run chunk by
  chunk of about :data:`CHUNK_TOKENS` tokens, their pre-norms applied inside: a chunk's buffers
  stay in cache, and no full-size temporary is made (from batch 2 on, a 256² map of 64 channels
  is over glibc's mmap threshold, so each temporary is fresh pages from the kernel);
* residual sums written into buffers the caller owns, channels-last convolution maps (the
  conv <-> token conversions are views), the attention bias cached between calls.

:func:`accelerate_for_cpu` swaps the class of every module of a type in :data:`ENGINE` for its
engine subclass: same parameters, buffers and ``state_dict`` keys, only ``forward`` differs. An
engine module takes the fast path only when :func:`engaged` holds at call time (CPU, float32,
gradients off, no CPU autocast, not compiling, oneDNN present, :data:`ENABLED`); otherwise it
runs the reference ``forward``. Training, autograd, GPU, bf16 and ``torch.compile`` therefore
always run the reference. :func:`as_reference` undoes the swap. ``tests/test_cpu_engine.py``
checks every engine module and whole models against the reference.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ConvStack, Mlp, ResidualBlock
from .styleswin import AdaptiveInstanceNorm, BilinearUpsample, StyleSwinBlock
from .swin import EncoderLevel, PatchMerging, SwinLayer, WindowAttention
from .transmrsr import ChannelWiseScaleShift

# oneDNN's linear and convolution with fused epilogues (the kernels torch.compile uses on CPU).
# They have no autograd formula: inference only.
_ONEDNN_LINEAR = getattr(torch.ops.mkldnn, "_linear_pointwise", None) if torch.backends.mkldnn.is_available() else None
_ONEDNN_CONV = (
    getattr(torch.ops.mkldnn, "_convolution_pointwise", None) if torch.backends.mkldnn.is_available() else None
)

#: ``False``: every engine module runs its reference ``forward`` (an off switch for A/B checks)
ENABLED = True
#: tokens per chunk of the chunked paths: small enough for a chunk's buffers to stay in cache;
#: maps of up to two chunks run in one pass
CHUNK_TOKENS = 4096

Norm = Callable[[torch.Tensor], torch.Tensor]


def engaged(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether the fast path may run for input ``x`` and a layer's ``weight``: CPU, float32,
    gradients off, no CPU autocast (the oneDNN ops know nothing of it), not compiling."""
    return (
        ENABLED
        and _ONEDNN_LINEAR is not None
        and not torch.is_grad_enabled()
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and not torch.is_autocast_enabled("cpu")
        and not torch.compiler.is_compiling()
    )


# ---------------------------------------------------------------------------------- kernels
def linear(x: torch.Tensor, layer: nn.Linear, activation: str = "none") -> torch.Tensor:
    """``layer(x)``, followed by exact (erf) GELU when ``activation == "gelu"``: ``(..., C_in) -> (..., C_out)``.

    One oneDNN call with the bias and the GELU in its epilogue: the output is written once
    instead of three times (bias broadcast, GEMM, GELU), about 1.5-2x faster for the wide and
    shallow token GEMMs of the full-resolution layers. Only where :func:`engaged` holds.
    """
    if activation not in ("none", "gelu"):
        raise ValueError(f"unknown activation {activation!r}")
    return _ONEDNN_LINEAR(x, layer.weight, layer.bias, activation, [], "none" if activation == "gelu" else "")


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

    With channels-last maps this is one oneDNN call with the activation or the sum in the
    kernel's epilogue (the output is written once instead of being read and written again:
    about a third off a 64-channel 256² convolution); other layouts take the plain ops. Only
    where :func:`engaged` holds.
    """
    if activation not in ("none", "relu", "leaky_relu"):
        raise ValueError(f"unknown activation {activation!r}")
    if activation != "none" and residual is not None:
        raise ValueError("conv2d_same takes an activation or a residual, not both")
    pad = weight.shape[-1] // 2
    if (
        _ONEDNN_CONV is not None
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


def token_chunks(length: int, batch: int, chunk: int) -> list[slice]:
    """Slices of the token axis (``length`` tokens per slice) holding about ``chunk`` tokens of
    the whole batch each: the same tokens of every slice, so per-slice norms still apply."""
    step = max(1, chunk // batch)
    return [slice(start, start + step) for start in range(0, length, step)]


# ---------------------------------------------------------------------------------- token MLP
def mlp(
    m: Mlp, x: torch.Tensor, residual: torch.Tensor | None = None, norm: Norm | None = None, inplace: bool = False
) -> torch.Tensor:
    """``residual + m(norm(x))`` (each part optional): ``(..., C) -> (..., C)``. ``norm`` is per token
    (a LayerNorm, or AdaIN's multiply-add). With ``inplace`` the chunked path adds into
    ``residual`` itself (which may be ``x``) and returns it: for callers that own ``residual``."""
    if x.numel() // x.shape[-1] > 2 * CHUNK_TOKENS:
        return _mlp_chunked(m, x, residual, norm, inplace)
    y = _mlp(m, x if norm is None else norm(x))
    return y if residual is None else residual + y


def _mlp(m: Mlp, x: torch.Tensor) -> torch.Tensor:
    return linear(linear(x, m.fc1, "gelu"), m.fc2)


def _mlp_chunked(
    m: Mlp, x: torch.Tensor, residual: torch.Tensor | None, norm: Norm | None, inplace: bool
) -> torch.Tensor:
    """The (norm and) MLP over chunks of about ``CHUNK_TOKENS`` tokens (the same tokens of every
    slice, so a per-slice ``norm`` applies), the residual added into one output buffer (the
    residual itself when ``inplace``): the normalised tokens and the ``hidden``-wide
    activations of a chunk stay in cache instead of making a round trip through memory
    (20-35 % faster for the full-resolution layers). A chunk's tokens are read before they are
    written, so ``residual`` may be ``x``."""
    shape = x.shape
    x = x.reshape(-1, shape[-2], shape[-1]) if x.dim() >= 3 else x[None]
    res = residual.reshape(x.shape[:-1] + residual.shape[-1:]) if residual is not None else None
    if inplace and res is not None:
        out = res
    else:
        out = torch.empty((*x.shape[:-1], m.fc2.out_features), dtype=x.dtype, device=x.device)
    for part in token_chunks(x.shape[1], x.shape[0], CHUNK_TOKENS):
        y = _mlp(m, x[:, part] if norm is None else norm(x[:, part]))
        if res is None:
            out[:, part] = y
        else:
            torch.add(res[:, part], y, out=out[:, part])
    return out.view(*shape[:-1], -1)


# ---------------------------------------------------------------------------------- window attention
def attn_bias(attn: WindowAttention, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:meth:`WindowAttention.attn_bias`, cached on the module. The key is a copy of the (small)
    bias table compared by value, so in-place updates of any kind (optimiser, EMA through
    ``.data``, ``load_state_dict``, a deep copy changed afterwards) are always seen."""
    table = attn.bias_table
    cached = getattr(attn, "_engine_bias", None)
    if cached is not None:
        cached_table, cached_dtype, value = cached
        if cached_dtype == dtype and torch.equal(cached_table, table):
            return value
    value = attn.attn_bias(dtype)
    attn._engine_bias = (table.detach().clone(), dtype, value)
    return value


def window_attention(
    attn: WindowAttention,
    x: torch.Tensor,
    residual: torch.Tensor | None = None,
    norm: Norm | None = None,
    inplace: bool = False,
) -> torch.Tensor:
    """``residual + attn(norm(x))`` (each part optional): ``x (B, H*W, dim) -> (B, H*W, dim)``.
    ``norm`` (per token) is applied to the gathered tokens. Maps of more than two chunks run in
    groups of windows (:func:`_attention_chunked`); with ``inplace`` that path adds into
    ``residual`` itself (which may be ``x``) and returns it."""
    b, length, _ = x.shape
    n_windows = length // (attn.window * attn.window)
    if b * length > 2 * CHUNK_TOKENS:
        return _attention_chunked(attn, x, n_windows, norm, residual, inplace)
    xw = x.index_select(1, attn.order)
    out = _attend(attn, xw if norm is None else norm(xw), 0, n_windows, n_windows)
    out = out.index_select(1, attn.inverse_order)
    return out if residual is None else out.add_(residual)


def _attention_chunked(
    attn: WindowAttention,
    x: torch.Tensor,
    n_windows: int,
    norm: Norm | None,
    residual: torch.Tensor | None,
    inplace: bool,
) -> torch.Tensor:
    """The windows in groups of about ``CHUNK_TOKENS`` tokens (all slices of the batch together),
    so that each group's qkv and attention buffers stay in cache. Each group's projected output
    (plus its residual tokens) is scattered straight to natural token order, into ``residual``
    when ``inplace`` else into one new buffer: no full-size window-ordered copy, no full-size
    gather back. ``residual`` may be ``x``: a group's tokens are read before they are written
    and no other group reads them."""
    b, n = x.shape[0], attn.window * attn.window
    out = residual if inplace and residual is not None else x.new_empty(b, n_windows * n, attn.dim)
    per = max(1, CHUNK_TOKENS // (b * n))
    for w0 in range(0, n_windows, per):
        k = min(per, n_windows - w0)
        idx = attn.order[w0 * n : (w0 + k) * n]
        xw = x.index_select(1, idx)
        o = _attend(attn, xw if norm is None else norm(xw), w0, k, n_windows)
        if residual is not None:
            o.add_(xw if residual is x else residual.index_select(1, idx))
        out.index_copy_(1, idx, o)
    return out


def _attend(attn: WindowAttention, xw: torch.Tensor, w0: int, k: int, n_windows: int) -> torch.Tensor:
    """Attention over windows ``w0 .. w0 + k - 1`` (window order) of every slice:
    ``xw (B, k*N, dim)`` in window order -> projected output ``(B, k*N, dim)``, same order.
    :meth:`WindowAttention.forward`'s maths, the border windows' results written in place."""
    b = xw.shape[0]
    n = attn.window * attn.window
    heads, d = attn.heads, attn.attn_dim // attn.heads
    q, k_, v = linear(xw, attn.qkv).view(b * k, n, heads, 3, d).permute(3, 0, 2, 1, 4).unbind(0)
    bias, mixed = attn_bias(attn, q.dtype)
    out = attn.sdpa(q, k_, v, bias).view(b, k, heads, n, d)
    first_mixed = n_windows - attn.n_mixed  # border windows come last in window order
    m0 = max(first_mixed, w0) - w0  # the first border window of this group, if any
    if attn.n_mixed and m0 < k:
        m = k - m0

        def border(t: torch.Tensor) -> torch.Tensor:
            return t.unflatten(0, (b, k))[:, m0:].reshape(b * m, heads, n, d)

        lo = w0 + m0 - first_mixed
        mask = mixed[:, lo : lo + m].expand(b, m, heads, n, n).reshape(b * m, heads, n, n)  # a view when B = 1
        out[:, m0:] = attn.sdpa(border(q), border(k_), border(v), mask).view(b, m, heads, n, d)
    out = out.transpose(2, 3).reshape(b, k * n, attn.attn_dim)
    return linear(out, attn.proj)


# ---------------------------------------------------------------------------------- Swin encoder
def swin_layer(layer: SwinLayer, x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """:class:`SwinLayer` with its norms applied inside the attention and the MLP (chunk by
    chunk). ``inplace``: ``x`` may be overwritten. The MLP may always add in place: its input is
    the attention's output, owned here (a new tensor unless ``inplace``)."""
    if layer.drop_path.p and layer.training:
        return SwinLayer.forward(layer, x)
    x = window_attention(layer.attn, x, residual=x, norm=layer.norm1, inplace=inplace)
    return mlp(layer.mlp, x, residual=x, norm=layer.norm2, inplace=True)


def _merge(merge: PatchMerging, x: torch.Tensor) -> torch.Tensor:
    b, h, w, c = x.shape
    x = x.reshape(b, h // 2, 2, w // 2, 2, c).permute(0, 1, 3, 4, 2, 5).reshape(b, h // 2, w // 2, 4 * c)
    return linear(merge.norm(x), merge.reduction)


def patch_merging(merge: PatchMerging, x: torch.Tensor) -> torch.Tensor:
    """:class:`PatchMerging`; maps of more than two chunks in bands of output rows, so that the
    space-to-depth copy and its norm stay in cache instead of making two full-size round trips
    through memory."""
    b, h, w, c = x.shape
    if b * h * w // 4 <= 2 * CHUNK_TOKENS:
        return _merge(merge, x)
    out = x.new_empty(b, h // 2, w // 2, merge.reduction.out_features)
    rows = max(1, CHUNK_TOKENS // (b * (w // 2)))
    for r in range(0, h // 2, rows):
        out[:, r : r + rows] = _merge(merge, x[:, 2 * r : 2 * (r + rows)])
    return out


def encoder_level(level: EncoderLevel, x: torch.Tensor) -> torch.Tensor:
    """:class:`EncoderLevel`: the Swin layers after the first work in place, and ``conv + F`` is
    one oneDNN call with the sum in its epilogue (channels-last views of the token maps)."""
    b, h, w, c = x.shape
    y = x.reshape(b, h * w, c)
    for i, layer in enumerate(level.layers):
        y = swin_layer(layer, y, inplace=i > 0)  # the first layer's input is x, still needed below
    y = conv2d_same(
        y.view(b, h, w, c).permute(0, 3, 1, 2), level.conv.weight, level.conv.bias, residual=x.permute(0, 3, 1, 2)
    )
    return level.merge(y.permute(0, 2, 3, 1))


# ---------------------------------------------------------------------------------- convolutions
def residual_block(block: ResidualBlock, x: torch.Tensor) -> torch.Tensor:
    """:class:`ResidualBlock` as two oneDNN calls, the ReLU and the sum in their epilogues."""
    h = conv2d_same(x, block.conv1.weight, block.conv1.bias, "relu")
    return conv2d_same(h, block.conv2.weight, block.conv2.bias, residual=x)


def conv_stack(stack: ConvStack, x: torch.Tensor) -> torch.Tensor:
    """:class:`ConvStack` on channels-last maps (a no-op when the input already is one): the
    convolutions run without layout reorders and the token views ``(B, H, W, C)`` of the maps
    downstream are free."""
    h = conv2d_same(channels_last(x), stack.conv.weight, stack.conv.bias, "relu")
    return stack.blocks(h.contiguous(memory_format=torch.channels_last))


def cwss(module: ChannelWiseScaleShift, feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:class:`ChannelWiseScaleShift`, each branch two oneDNN calls: ``sqrt(2) * leaky_relu(z) =
    leaky_relu(sqrt(2) * z)``, so the scaled activation folds into the first conv's weights
    and runs in its epilogue."""
    f = feat.permute(0, 3, 1, 2)  # channels-last view: the conv outputs stay channels-last
    gain = math.sqrt(2.0)

    def run(branch: nn.Sequential) -> torch.Tensor:
        first, _, second = branch
        h = conv2d_same(f, first.weight * (first.scale * gain), first.bias * gain, "leaky_relu")
        out = conv2d_same(h, second.weight * second.scale, second.bias)
        return out.permute(0, 2, 3, 1).flatten(1, 2)  # (B, h*w, C), a view

    return run(module.scale), run(module.shift)


# ---------------------------------------------------------------------------------- StyleSwin decoder
def adain_modulation(ada: AdaptiveInstanceNorm, x: torch.Tensor, style: torch.Tensor) -> Norm:
    """:class:`AdaptiveInstanceNorm` of ``x (B, L, C)`` as a per-token map ``t (B, ..., C) -> t * scale
    + shift``: the statistics need all of ``x``, applying them does not, so the attention and
    the MLP apply it chunk by chunk instead of reading a normalised copy of ``x``. ``E[x^2]`` is
    summed over chunks of tokens, so that no full-size copy of ``x`` is made (``var_mean`` over
    the token axis is several times slower on CPU)."""
    if x.dim() != 3:
        raise ValueError(f"AdaptiveInstanceNorm expects (B, L, C) tokens, got {tuple(x.shape)}")
    gamma, beta = ada.style(style)[:, None, :].chunk(2, dim=-1)
    n = x.shape[1]
    mean = x.mean(dim=1, keepdim=True)
    mean_sq = sum((c * c).sum(dim=1, keepdim=True) for c in x.split(max(1, CHUNK_TOKENS // x.shape[0]), dim=1))
    var = (mean_sq.div_(n) - mean.square()).clamp_min(0.0)
    scale = gamma * torch.rsqrt(var + ada.EPS)  # (B, 1, C): one multiply-add per token
    shift = beta - mean * scale

    def apply(t: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(shift, t, scale)  # a chunk of tokens of every slice: (B, l, C)

    return apply


def style_block(block: StyleSwinBlock, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """:class:`StyleSwinBlock` with the AdaIN norms applied inside the attention and the MLP.
    The first attention's output is a new tensor (the second one still reads ``x``), so the
    second attention and the MLP add into it in place."""
    norm1 = adain_modulation(block.norm1, x, style)
    y = window_attention(block.attn[0], x, residual=x, norm=norm1)
    y = window_attention(block.attn[1], x, residual=y, norm=norm1, inplace=True)
    return mlp(block.mlp, y, residual=y, norm=adain_modulation(block.norm2, y, style), inplace=True)


def bilinear_upsample(up: BilinearUpsample, x: torch.Tensor) -> torch.Tensor:
    """:class:`BilinearUpsample`; maps of more than two chunks get norm, reduction and position
    term chunk by chunk into one buffer, instead of a normalised full-size copy and a second
    pass for the position term."""
    b, length, c = x.shape
    side = math.isqrt(length)
    x = x.reshape(b, side, side, c).permute(0, 3, 1, 2)
    x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    tokens = x.permute(0, 2, 3, 1).reshape(b, 4 * length, c)
    pos, alpha = up.pos.flatten(1, 2), up.alpha
    if b * 4 * length <= 2 * CHUNK_TOKENS:
        return torch.addcmul(linear(up.norm(tokens), up.reduction), pos, alpha)
    out = tokens.new_empty(b, 4 * length, up.reduction.out_features)
    for part in token_chunks(4 * length, b, CHUNK_TOKENS):
        torch.addcmul(linear(up.norm(tokens[:, part]), up.reduction), pos[:, part], alpha, out=out[:, part])
    return out


# ---------------------------------------------------------------------------------- engine modules
class CPUMlp(Mlp):
    """:class:`Mlp`, the fast path by :func:`mlp` where :func:`engaged` holds."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return mlp(self, x) if engaged(x, self.fc1.weight) else super().forward(x)


class CPUWindowAttention(WindowAttention):
    """:class:`WindowAttention`, the fast path by :func:`window_attention` where :func:`engaged` holds."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return window_attention(self, x) if engaged(x, self.qkv.weight) else super().forward(x)


class CPUSwinLayer(SwinLayer):
    """:class:`SwinLayer`, the fast path by :func:`swin_layer` where :func:`engaged` holds."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return swin_layer(self, x) if engaged(x, self.attn.qkv.weight) else super().forward(x)


class CPUPatchMerging(PatchMerging):
    """:class:`PatchMerging`, the fast path by :func:`patch_merging` where :func:`engaged` holds."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return patch_merging(self, x) if engaged(x, self.reduction.weight) else super().forward(x)


class CPUEncoderLevel(EncoderLevel):
    """:class:`EncoderLevel`, the fast path by :func:`encoder_level` where :func:`engaged` holds."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return encoder_level(self, x) if engaged(x, self.conv.weight) else super().forward(x)


class CPUResidualBlock(ResidualBlock):
    """:class:`ResidualBlock`, the fast path by :func:`residual_block` where :func:`engaged` holds."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return residual_block(self, x) if engaged(x, self.conv1.weight) else super().forward(x)


class CPUConvStack(ConvStack):
    """:class:`ConvStack`, the fast path by :func:`conv_stack` where :func:`engaged` holds."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv_stack(self, x) if engaged(x, self.conv.weight) else super().forward(x)


class CPUChannelWiseScaleShift(ChannelWiseScaleShift):
    """:class:`ChannelWiseScaleShift`, the fast path by :func:`cwss` where :func:`engaged` holds."""

    def forward(self, feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return cwss(self, feat) if engaged(feat, self.scale[0].weight) else super().forward(feat)


class CPUAdaptiveInstanceNorm(AdaptiveInstanceNorm):
    """:class:`AdaptiveInstanceNorm`, the fast path by :func:`adain_modulation` where :func:`engaged` holds."""

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        if engaged(x, self.style.weight):
            return adain_modulation(self, x, style)(x)
        return super().forward(x, style)


class CPUStyleSwinBlock(StyleSwinBlock):
    """:class:`StyleSwinBlock`, the fast path by :func:`style_block` where :func:`engaged` holds."""

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        return style_block(self, x, style) if engaged(x, self.mlp.fc1.weight) else super().forward(x, style)


class CPUBilinearUpsample(BilinearUpsample):
    """:class:`BilinearUpsample`, the fast path by :func:`bilinear_upsample` where :func:`engaged` holds."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return bilinear_upsample(self, x) if engaged(x, self.reduction.weight) else super().forward(x)


#: reference module type -> its engine subclass (exact types: a subclass of a reference module
#: may change its maths, so it is left alone)
ENGINE: dict[type[nn.Module], type[nn.Module]] = {
    Mlp: CPUMlp,
    WindowAttention: CPUWindowAttention,
    SwinLayer: CPUSwinLayer,
    PatchMerging: CPUPatchMerging,
    EncoderLevel: CPUEncoderLevel,
    ResidualBlock: CPUResidualBlock,
    ConvStack: CPUConvStack,
    ChannelWiseScaleShift: CPUChannelWiseScaleShift,
    AdaptiveInstanceNorm: CPUAdaptiveInstanceNorm,
    StyleSwinBlock: CPUStyleSwinBlock,
    BilinearUpsample: CPUBilinearUpsample,
}
_REFERENCE = {engine: ref for ref, engine in ENGINE.items()}


def accelerate_for_cpu(model: nn.Module) -> nn.Module:
    """Swap every submodule of a type in :data:`ENGINE` (``model`` included) for its engine
    subclass, in place; returns ``model``. Idempotent. Parameters, buffers, ``state_dict`` keys,
    hooks and the outputs of autograd / GPU / autocast runs are unchanged."""
    for module in model.modules():
        engine = ENGINE.get(type(module))
        if engine is not None:
            module.__class__ = engine
    return model


def as_reference(model: nn.Module) -> nn.Module:
    """Undo :func:`accelerate_for_cpu` in place (every engine module back to its reference type); returns ``model``."""
    for module in model.modules():
        ref = _REFERENCE.get(type(module))
        if ref is not None:
            module.__class__ = ref
    return model


def is_accelerated(model: nn.Module) -> bool:
    """Whether any submodule of ``model`` is an engine module."""
    return any(type(m) in _REFERENCE for m in model.modules())
