"""The TransMRSR network (paper §3, Fig. 2), read top to bottom.

``x (B, 1, S, S)`` interpolated LR slice in [0, 1]
  -> shallow features ``F_s`` (conv + residual blocks)
  -> Swin encoder, levels ``S .. 8``, each ``PM(Conv(RSTB(F)) + F)``, down to 4x4
  -> latent head: 4x4 map -> one latent per decoder style input, ``(B, L, D)``
  -> self-distilled truncation towards the nearest k-means centroid (``phi``)
  -> StyleSwin synthesis (the stage-1 generative prior), its input at each resolution
     ``4 .. S/2`` modulated by CWSS from the encoder output of that resolution
  -> reconstruction head on ``F_s + F_d1`` -> residual; ``y = x + residual``.

The paper's ablations are config switches (``TransMRSRConfig``, ``SRTrainConfig.ABLATIONS``):
w/o GP (``use_generative_prior`` and ``use_sdt`` off), w/o SDT (``use_sdt``), w/o MREF
(``use_cwss``), w/o SC (``use_skip`` and ``use_residual`` off: ``y = H_rec(F_d1)``), frozen GP
(``freeze_prior``: the decoder's parameters do not train).
"""

from __future__ import annotations

import dataclasses
import logging

import torch
from torch import nn

from ..config import TransMRSRConfig
from ..hub import PretrainedMixin
from .layers import ConvStack, EqualConv2d, EqualLinear, ScaledLeakyReLU
from .styleswin import StyleSwinGenerator, StyleSwinSynthesis, init_styleswin_weights
from .swin import SwinEncoder
from .truncation import LatentTruncation

logger = logging.getLogger(__name__)


class LatentHead(nn.Module):
    """4x4 encoder map -> one latent vector per decoder style input (paper eq. 4).

    LayerNorm over channels, flatten, one equalised linear layer (lr x ``lr_mlp``, leaky ReLU).
    ``(B, 4, 4, C) -> (B, L, D)``.
    """

    def __init__(self, cfg: TransMRSRConfig) -> None:
        super().__init__()
        c = cfg.enc_out_dims[-1]
        self.num_latents, self.style_dim = cfg.num_latents, cfg.style_dim
        self.norm = nn.LayerNorm(c)
        self.fc = EqualLinear(16 * c, cfg.num_latents * cfg.style_dim, lr_mul=cfg.lr_mlp, activation="lrelu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(x).flatten(1)).view(-1, self.num_latents, self.style_dim)


class ChannelWiseScaleShift(nn.Module):
    """CWSS condition (paper eq. 6, Fig. 3): ``alpha, beta = Conv3x3(F_e)``.

    Each is EqualConv3x3 (C_e -> C_e), leaky ReLU, EqualConv3x3 (C_e -> C_d / 2).
    ``F_e (B, h, w, C_e)`` -> ``alpha, beta (B, h*w, C_d / 2)`` (tokens), applied to the second
    half of the decoder feature's channels.
    """

    def __init__(self, enc_dim: int, dec_dim: int) -> None:
        super().__init__()

        def branch() -> nn.Sequential:
            return nn.Sequential(
                EqualConv2d(enc_dim, enc_dim, 3, padding=1),
                ScaledLeakyReLU(),
                EqualConv2d(enc_dim, dec_dim // 2, 3, padding=1),
            )

        self.scale = branch()
        self.shift = branch()

    def forward(self, feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = feat.permute(0, 3, 1, 2)  # (B, C_e, h, w), a view; the conv outputs keep its channels-last layout
        alpha, beta = self.scale(f), self.shift(f)
        return alpha.permute(0, 2, 3, 1).flatten(1, 2), beta.permute(0, 2, 3, 1).flatten(1, 2)  # (B, h*w, C), views


def _use_cpu_engine(model: nn.Module) -> None:
    """Swap the CPU inference engine's fast modules in (:func:`.cpu_engine.accelerate_for_cpu`):
    same weights and maths, taken only for CPU float32 runs without gradients; every other run
    (training, autograd, GPU, autocast, compiling) goes through the reference ``forward`` of the
    modules above. :func:`.cpu_engine.as_reference` gives the reference modules back."""
    from .cpu_engine import accelerate_for_cpu  # it imports this module

    accelerate_for_cpu(model)


class TransMRSR(nn.Module, PretrainedMixin):
    """TransMRSR: ``model(x (B, 1, S, S) in [0, 1], phi) -> (B, 1, S, S)``, ``S = config.img_size``.

    Ablation switches (all in the config): ``use_generative_prior`` (see
    :meth:`load_generative_prior`), ``use_sdt``, ``use_cwss`` (MREF), ``use_skip`` and
    ``use_residual`` (SC), ``freeze_prior`` (the decoder's parameters are built with
    ``requires_grad=False``). Built with the CPU inference engine's modules swapped in
    (:func:`_use_cpu_engine`).
    """

    def __init__(self, config: TransMRSRConfig) -> None:
        super().__init__()
        cfg = self.config = config.validate()
        self.shallow = ConvStack(cfg.in_channels, cfg.shallow_dim, cfg.shallow_blocks)
        self.encoder = SwinEncoder(cfg)
        self.latent_head = LatentHead(cfg)
        self.truncation = LatentTruncation(cfg.num_centroids, cfg.style_dim)
        self.decoder = StyleSwinSynthesis(cfg)
        n_mod = cfg.num_dec_layers - 1  # resolutions 4 .. S/2; the full-resolution layer is not modulated
        # decoder layer l (resolution 4 * 2^l) is modulated by encoder output index n_mod - 1 - l
        self.cwss = (
            nn.ModuleList(
                ChannelWiseScaleShift(cfg.enc_out_dims[n_mod - 1 - l], cfg.dec_channels[l]) for l in range(n_mod)
            )
            if cfg.use_cwss
            else None
        )
        self.recon = ConvStack(cfg.shallow_dim, cfg.recon_dim, cfg.recon_blocks)
        self.recon_out = nn.Conv2d(cfg.recon_dim, cfg.in_channels, 1)
        self.encoder.apply(init_styleswin_weights)
        self.decoder.apply(init_styleswin_weights)
        with torch.no_grad():  # a small initial residual: the untrained model stays near its input
            self.recon_out.weight.mul_(0.1)
            self.recon_out.bias.zero_()
        if cfg.freeze_prior:  # Table 4's frozen GP: stage 2 trains everything but the decoder
            self.decoder.requires_grad_(False)
        _use_cpu_engine(self)

    # ------------------------------------------------------------------ parts
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
        """Return ``F_s (B, C_s, S, S)``, encoder outputs (``S/2 .. 4``, channels-last) and latents ``(B, L, D)``."""
        shallow = self.shallow(x)
        feats = self.encoder(shallow)
        return shallow, feats, self.latent_head(feats[-1])

    def truncate(self, latents: torch.Tensor, phi: float | torch.Tensor | None = None) -> torch.Tensor:
        """Self-distilled truncation (identity when ``use_sdt`` is off or no centroids are set)."""
        if not self.config.use_sdt:
            return latents
        return self.truncation(latents, self.config.phi if phi is None else phi)

    def decode(self, latents: torch.Tensor, feats: list[torch.Tensor]) -> torch.Tensor:
        """StyleSwin decoder with CWSS; returns ``F_d1 (B, C_s, S, S)`` (channels-last memory)."""
        modulations = None
        if self.cwss is not None:
            n_mod = len(self.cwss)
            modulations = [cwss(feats[n_mod - 1 - l]) for l, cwss in enumerate(self.cwss)] + [None]
        out = self.decoder(latents, modulations)[-1]  # (B, S*S, C)
        s = self.config.img_size
        return out.reshape(out.shape[0], s, s, -1).permute(0, 3, 1, 2)  # channels-last view

    def forward(self, x: torch.Tensor, phi: float | torch.Tensor | None = None) -> torch.Tensor:
        """Super-resolve interpolated LR slices.

        Args:
            x: ``(B, 1, S, S)`` float, intensities scaled to [0, 1].
            phi: truncation level, a float or a per-sample ``(B,)`` tensor in [0, 1]; 1 means no
                truncation; ``None`` uses ``config.phi``.

        Returns:
            ``(B, 1, S, S)``: ``x`` plus the predicted residual, or with ``use_residual`` off the
            reconstruction itself (not clamped).
        """
        s = self.config.img_size
        if x.ndim != 4 or x.shape[1] != self.config.in_channels or x.shape[-2:] != (s, s):
            raise ValueError(
                f"expected input of shape (B, {self.config.in_channels}, {s}, {s}), got {tuple(x.shape)}; "
                "pad or crop slices to the model's canvas (config.img_size)"
            )
        shallow, feats, latents = self.encode(x)
        deep = self.decode(self.truncate(latents, phi), feats)  # F_d1
        if self.config.use_skip:
            deep = deep + shallow  # F_s + F_d1 (eq. 10)
        out = self.recon_out(self.recon(deep))  # H_rec(.)
        return x + out if self.config.use_residual else out  # I_SR = I_LR + I_res (eq. 11)

    # ------------------------------------------------------------------ generative prior
    @torch.no_grad()
    def load_generative_prior(self, generator: StyleSwinGenerator) -> bool:
        """Start stage 2 from a stage-1 generator: copy its synthesis weights, its position table
        and its centroids (when fitted; unused while ``use_sdt`` is off).

        With ``use_generative_prior=False`` (w/o GP) nothing is taken: the decoder keeps its
        random initialisation, and the centroids, which are the prior's, are not loaded either
        (Table 3's w/o GP row has no SDT). Returns whether weights were copied.
        """
        if generator.config.num_latents != self.config.num_latents:
            raise ValueError("the generator's config does not match this model's decoder")
        if not self.config.use_generative_prior:
            logger.info("use_generative_prior=False: decoder left at random initialisation, no centroids (w/o GP)")
            return False
        self.decoder.load_state_dict(generator.synthesis.state_dict())
        # the table the prior was trained with (a generator saved before the field: "legacy")
        self.set_position_table(generator.config.position_table)
        if generator.truncation.is_fitted:
            self.truncation.load_state_dict(generator.truncation.state_dict())
        return True

    def set_position_table(self, kind: str) -> None:
        """Use the decoder position table ``kind`` (``"styleswin"`` or ``"legacy"``) and record it
        in ``config`` (a copy: the caller's config object is not changed)."""
        if kind != self.config.position_table:
            self.config = dataclasses.replace(self.config, position_table=kind).validate()
        self.decoder.set_position_table(kind)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
