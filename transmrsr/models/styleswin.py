"""StyleSwin generator (the generative prior, paper §3.3) and a StyleGAN2-style discriminator.

The generator is split the way TransMRSR uses it:

* :class:`MappingNetwork` — z -> w, used in stage 1 and to sample latents for the centroids;
* :class:`StyleSwinSynthesis` — learned 4x4 constant, style-modulated Swin layers with bilinear
  upsampling; this is the decoder that stage 2 fine-tunes, optionally modulated by CWSS;
* :class:`ToGraySkips` — the StyleSwin "ToRGB" skip branch (1 channel here), stage 1 only.

Reference maths only; the CPU inference fast paths are in :mod:`.cpu_engine`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import TransMRSRConfig
from ..hub import PretrainedMixin
from .layers import (
    EqualConv2d,
    EqualLinear,
    Mlp,
    PixelNorm,
    ScaledLeakyReLU,
    sinusoidal_grid,
    styleswin_sinusoidal_grid,
)
from .swin import WindowAttention
from .truncation import LatentTruncation


class AdaptiveInstanceNorm(nn.Module):
    """Instance norm over tokens, then per-channel ``gamma * x + beta`` from a style vector.

    ``x (B, L, C)``, ``style (B, D)`` -> ``(B, L, C)``. The statistics are taken in float32.
    """

    EPS = 1e-5

    def __init__(self, dim: int, style_dim: int) -> None:
        super().__init__()
        self.style = EqualLinear(style_dim, 2 * dim)
        with torch.no_grad():  # start as identity: gamma = 1, beta = 0
            self.style.bias[:dim] = 1.0

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3:
            raise ValueError(f"AdaptiveInstanceNorm expects (B, L, C) tokens, got {tuple(x.shape)}")
        gamma, beta = self.style(style)[:, None, :].chunk(2, dim=-1)  # (B, 1, C) each
        xf = x.float()
        mean = xf.mean(dim=1, keepdim=True)
        var = (xf.square().mean(dim=1, keepdim=True) - mean.square()).clamp_min(0.0)  # E[x^2] - E[x]^2
        # gamma * (x - mean) / sqrt(var + eps) + beta as one multiply-add per token: fewer full-size
        # temporaries, in the forward pass and kept for the backward pass, than the formula as written
        scale = gamma * torch.rsqrt(var + self.EPS)
        return torch.addcmul(beta - mean * scale, xf, scale).to(x.dtype)


class StyleSwinBlock(nn.Module):
    """Style-modulated Swin block: half of the heads attend in windows, half in shifted windows."""

    def __init__(self, dim: int, heads: int, resolution: int, window: int, mlp_ratio: float, style_dim: int) -> None:
        super().__init__()
        self.norm1 = AdaptiveInstanceNorm(dim, style_dim)
        half = dim // 2
        # StyleSwin's one qkv / proj pair, split by head group (same parameter count)
        self.attn = nn.ModuleList(
            [
                WindowAttention(dim, half, heads // 2, resolution, window, shift=0, proj_bias=True),
                WindowAttention(dim, half, heads // 2, resolution, window, shift=window // 2, proj_bias=False),
            ]
        )
        self.norm2 = AdaptiveInstanceNorm(dim, style_dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """``x (B, H*W, C)``, ``style (B, D)`` -> ``(B, H*W, C)``."""
        h = self.norm1(x, style)
        x = x + self.attn[0](h) + self.attn[1](h)
        return x + self.mlp(self.norm2(x, style))


def decoder_position_table(kind: str, resolution: int, channels: int, img_size: int) -> torch.Tensor:
    """The fixed position table ``(1, r, r, C)`` added after the upsampling to ``resolution`` ``r``
    (``TransMRSRConfig.position_table``).

    * ``"styleswin"``: StyleSwin's grid (:func:`~.layers.styleswin_sinusoidal_grid`, column
      embedding then row embedding). At the resolutions that CWSS modulates (``8 .. S/2``) its two
      channel halves are swapped, ``[row | column]``: our CWSS modulates the second half of the
      channels (``concat[F0, alpha * F1 + beta]``, paper eq. 9) where the authors' code modulates
      the first, so there our channels are theirs with the halves swapped, and the table follows
      the channels. At ``S`` (not modulated) the order is StyleSwin's. The network is then the
      authors' up to that fixed channel permutation (the mapping in ``benchmarks/authors.py``). The table
      does not depend on ``use_cwss``, so a stage-1 generator serves every ablation.
    * ``"legacy"``: the table used before (:func:`~.layers.sinusoidal_grid`), for the weights
      trained with it.
    """
    if kind == "legacy":
        return sinusoidal_grid(resolution, resolution, channels)
    if kind != "styleswin":
        raise ValueError(f"unknown position table {kind!r}; choose one of {list(TransMRSRConfig.POSITION_TABLES)}")
    grid = styleswin_sinusoidal_grid(resolution, resolution, channels)
    if resolution < img_size:
        grid = grid.roll(channels // 2, dims=-1)  # [col | row] -> [row | col]
    return grid.contiguous()


class BilinearUpsample(nn.Module):
    """x2 bilinear upsampling, LayerNorm, Linear to ``out_dim``, plus a fixed sinusoidal position
    table ``pos (1, 2H, 2W, C_out)`` scaled by a learned ``alpha`` (initialised at 0).
    ``(B, H*W, C) -> (B, 4*H*W, C_out)``. ``pos`` defaults to StyleSwin's table at
    ``out_resolution`` (the synthesis network passes :func:`decoder_position_table`'s).
    """

    def __init__(self, dim: int, out_dim: int, out_resolution: int, pos: torch.Tensor | None = None) -> None:
        super().__init__()
        if pos is None:
            pos = styleswin_sinusoidal_grid(out_resolution, out_resolution, out_dim)
        if pos.shape != (1, out_resolution, out_resolution, out_dim):
            raise ValueError(
                f"position table of shape {tuple(pos.shape)} for a {out_resolution}² map of {out_dim} channels"
            )
        self.norm = nn.LayerNorm(dim)
        self.reduction = nn.Linear(dim, out_dim, bias=False)
        self.alpha = nn.Parameter(torch.zeros(1))
        # recomputed from the config, not saved with the weights (see decoder_position_table)
        self.register_buffer("pos", pos, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, length, c = x.shape
        side = math.isqrt(length)
        # a channels-last (B, C, H, W) view of the tokens: interpolate keeps that layout, so the
        # tokens of the result are a view too (no transposing copies around the upsampling)
        x = x.reshape(b, side, side, c).permute(0, 3, 1, 2)
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        tokens = x.permute(0, 2, 3, 1).reshape(b, 4 * length, c)
        pos, alpha = self.pos.to(x.dtype).flatten(1, 2), self.alpha.to(x.dtype)
        return torch.addcmul(self.reduction(self.norm(tokens)), pos, alpha)  # ... + alpha * pos


class StyleLayer(nn.Module):
    """``depth`` StyleSwin blocks at one resolution (one latent each), then optional upsampling
    (``out_dim`` channels, position table ``pos``)."""

    def __init__(
        self,
        dim: int,
        out_dim: int | None,
        heads: int,
        resolution: int,
        window: int,
        depth: int,
        mlp_ratio: float,
        style_dim: int,
        pos: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            StyleSwinBlock(dim, heads, resolution, window, mlp_ratio, style_dim) for _ in range(depth)
        )
        self.upsample = BilinearUpsample(dim, out_dim, 2 * resolution, pos) if out_dim is not None else None

    def forward(self, x: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
        """``x (B, H*W, C)``, ``styles (B, depth, D)``."""
        for i, block in enumerate(self.blocks):
            x = block(x, styles[:, i])
        if self.upsample is not None:
            x = self.upsample(x)
        return x


def channel_wise_scale_shift(x: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """CWSS (paper eq. 9): ``concat[F0, alpha * F1 + beta]`` over a channel split of ``x``.

    ``x (B, L, C)``; ``alpha, beta (B, L, C/2)``.
    """
    half = x.shape[-1] - alpha.shape[-1]
    return torch.cat([x[..., :half], alpha * x[..., half:] + beta], dim=-1)


class StyleSwinSynthesis(nn.Module):
    """The StyleSwin synthesis network: 4x4 constant -> ... -> ``img_size`` features.

    ``forward(latents (B, L, D), modulations)`` returns every layer's output as tokens,
    coarsest first: ``[(B, 8*8, C1) (after layer 0's upsampling), ..., (B, S*S, C_last)]``.
    ``modulations[l]`` is ``(alpha, beta)``, each ``(B, r*r, C_l / 2)``, for the input of layer
    ``l`` (resolution ``r``) or ``None``.
    """

    def __init__(self, cfg: TransMRSRConfig) -> None:
        super().__init__()
        ch = cfg.dec_channels
        heads = cfg.resolved_dec_heads()
        self.depth = cfg.dec_depth
        self.const = nn.Parameter(torch.randn(1, 16, ch[0]))  # 4x4 tokens
        n = cfg.num_dec_layers
        self.img_size, self.channels = cfg.img_size, list(ch)
        self.position_table = cfg.position_table
        self.layers = nn.ModuleList(
            StyleLayer(
                dim=ch[i],
                out_dim=ch[i + 1] if i + 1 < n else None,
                heads=heads[i],
                resolution=cfg.dec_resolutions[i],
                window=cfg.window_size,
                depth=cfg.dec_depth,
                mlp_ratio=cfg.mlp_ratio,
                style_dim=cfg.style_dim,
                pos=self._table(cfg.position_table, i) if i + 1 < n else None,
            )
            for i in range(n)
        )

    def _table(self, kind: str, layer: int) -> torch.Tensor:
        """Position table of layer ``layer``'s upsampling (output resolution ``2^(layer+3)``)."""
        return decoder_position_table(kind, 2 ** (layer + 3), self.channels[layer + 1], self.img_size)

    @torch.no_grad()
    def set_position_table(self, kind: str) -> None:
        """Recompute every upsampling layer's ``pos`` buffer as table ``kind`` (same device and dtype)."""
        for i, layer in enumerate(self.layers):
            if layer.upsample is not None:
                old = layer.upsample.pos
                layer.upsample.pos = self._table(kind, i).to(device=old.device, dtype=old.dtype)
        self.position_table = kind

    def forward(
        self, latents: torch.Tensor, modulations: list[tuple[torch.Tensor, torch.Tensor] | None] | None = None
    ) -> list[torch.Tensor]:
        x = self.const.expand(latents.shape[0], -1, -1)
        outs = []
        for i, layer in enumerate(self.layers):
            if modulations is not None and modulations[i] is not None:
                x = channel_wise_scale_shift(x, *modulations[i])
            x = layer(x, latents[:, i * self.depth : (i + 1) * self.depth])
            outs.append(x)
        return outs


class ToGraySkips(nn.Module):
    """StyleSwin's ToRGB branch for one channel: a 1x1 projection of every layer's output,
    summed over resolutions with bilinear upsampling of the running image. Returns ``(B, 1, S, S)``.
    """

    def __init__(self, cfg: TransMRSRConfig) -> None:
        super().__init__()
        ch = cfg.dec_channels
        n = cfg.num_dec_layers
        out_ch = [ch[i + 1] if i + 1 < n else ch[i] for i in range(n)]
        self.proj = nn.ModuleList(nn.Linear(c, cfg.in_channels) for c in out_ch)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        image = None
        for feat, proj in zip(features, self.proj):
            side = math.isqrt(feat.shape[1])
            out = proj(feat).transpose(1, 2).reshape(feat.shape[0], -1, side, side)
            if image is not None:
                if image.shape[-1] != out.shape[-1]:
                    image = F.interpolate(image, size=out.shape[-2:], mode="bilinear", align_corners=False)
                out = out + image
            image = out
        return image


class MappingNetwork(nn.Module):
    """z -> w: PixelNorm, then ``mapping_layers`` equalised linear layers (lr x ``lr_mlp``)."""

    def __init__(self, cfg: TransMRSRConfig) -> None:
        super().__init__()
        d = cfg.style_dim
        self.net = nn.Sequential(
            PixelNorm(), *[EqualLinear(d, d, lr_mul=cfg.lr_mlp, activation="lrelu") for _ in range(cfg.mapping_layers)]
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


def init_styleswin_weights(module: nn.Module) -> None:
    """StyleSwin's initialisation: truncated-normal linears, unit LayerNorms."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class StyleSwinGenerator(nn.Module, PretrainedMixin):
    """Stage-1 generator: mapping network + synthesis + gray skips, with the SDT centroids.

    ``forward(z (B, D))`` -> image ``(B, 1, S, S)``; ``z`` may also be ``(B, L, D)`` to give a
    different z per style input (style mixing). Saved and loaded like :class:`TransMRSR`
    (``save_pretrained`` / ``from_pretrained``), centroids included.
    """

    def __init__(self, config: TransMRSRConfig) -> None:
        super().__init__()
        self.config = config.validate()
        self.mapping = MappingNetwork(config)
        self.synthesis = StyleSwinSynthesis(config)
        self.to_gray = ToGraySkips(config)
        self.truncation = LatentTruncation(config.num_centroids, config.style_dim)
        self.synthesis.apply(init_styleswin_weights)
        self.to_gray.apply(init_styleswin_weights)
        # the CPU inference engine's modules, as in TransMRSR (its _use_cpu_engine): the no-grad
        # passes of stage-1 training (the D step's fakes, samples) take the fast path
        from .cpu_engine import accelerate_for_cpu  # it imports this module

        accelerate_for_cpu(self)

    def latents(self, z: torch.Tensor) -> torch.Tensor:
        """Map z to one w per style input: ``(B, D)`` or ``(B, L, D)`` -> ``(B, L, D)``."""
        w = self.mapping(z)
        if w.ndim == 2:
            w = w[:, None].expand(-1, self.config.num_latents, -1)
        return w

    def synthesize(self, w: torch.Tensor) -> torch.Tensor:
        """Latents ``(B, L, D)`` -> image ``(B, 1, S, S)``."""
        return self.to_gray(self.synthesis(w))

    def forward(self, z: torch.Tensor, phi: float | torch.Tensor = 1.0) -> torch.Tensor:
        return self.synthesize(self.truncation(self.latents(z), phi))


class DiscriminatorBlock(nn.Module):
    """Residual block: conv3x3, conv3x3, 2x average-pool; skip = pool + 1x1. Halves H and W."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv1 = EqualConv2d(in_ch, in_ch, 3, padding=1)
        self.conv2 = EqualConv2d(in_ch, out_ch, 3, padding=1)
        self.skip = EqualConv2d(in_ch, out_ch, 1, bias=False)
        self.act = ScaledLeakyReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.avg_pool2d(self.act(self.conv2(self.act(self.conv1(x)))), 2)
        skip = self.skip(F.avg_pool2d(x, 2))
        return (out + skip) / math.sqrt(2.0)


class Discriminator(nn.Module):
    """StyleGAN2-style residual discriminator: ``(B, 1, S, S)`` -> logits ``(B, 1)``.

    Channels per resolution come from ``cfg.disc_channels`` (``S .. 4``); ends with a minibatch
    standard-deviation feature, a 3x3 conv and two equalised linear layers.
    """

    def __init__(self, cfg: TransMRSRConfig, stddev_group: int = 4) -> None:
        super().__init__()
        ch = cfg.disc_channels
        self.from_gray = nn.Sequential(EqualConv2d(cfg.in_channels, ch[0], 1), ScaledLeakyReLU())
        self.blocks = nn.Sequential(*[DiscriminatorBlock(ch[i], ch[i + 1]) for i in range(len(ch) - 1)])
        self.stddev_group = stddev_group
        self.final_conv = nn.Sequential(EqualConv2d(ch[-1] + 1, ch[-1], 3, padding=1), ScaledLeakyReLU())
        self.final = nn.Sequential(EqualLinear(ch[-1] * 16, ch[-1], activation="lrelu"), EqualLinear(ch[-1], 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.from_gray(image))
        b, c, h, w = x.shape
        group = min(b, self.stddev_group)
        while b % group:
            group -= 1
        std = x.view(group, -1, c, h, w).var(dim=0, unbiased=False).add(1e-8).sqrt()
        std = std.mean(dim=(1, 2, 3)).view(-1, 1, 1, 1).repeat(group, 1, h, w)
        x = self.final_conv(torch.cat([x, std], dim=1))
        return self.final(x.flatten(1))
