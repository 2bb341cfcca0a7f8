"""The authors' TGP7 (github.com/goddesshs/TransMRSR) built from a local copy, and their weights mapped into ours.

Their code has no licence and is never part of this repository: it is imported at run time from a
folder of the user's (:func:`find_authors_repo`: an explicit folder, else the ``TRANSMRSR_AUTHORS_REPO``
environment variable, else ``~/.cache/transmrsr/authors``, cloned there with ``git clone --depth 1``
when allowed and absent). Their network imports ``timm`` and ``mmcv``; nothing is installed for
them: small stand-in modules are put into ``sys.modules`` while their files are imported (see
:func:`_standin_modules`), none of which changes what their forward pass computes.

:func:`authors_to_ours` maps a TGP7's weights onto our ``TransMRSR(config_for_authors(size))`` (an
exact reparametrisation, loaded with ``strict=True``); :func:`load_into_ours` builds that model.
``benchmarks/speed.py`` times both networks and prints the largest output difference;
``tests/test_authors_mapping.py`` asserts it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import math
import os
import subprocess
import sys
import types
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from transmrsr import TransMRSR, TransMRSRConfig

AUTHORS_URL = "https://github.com/goddesshs/TransMRSR"
AUTHORS_FILE = Path("networks") / "network_Transmrsr7.py"
AUTHORS_ENV = "TRANSMRSR_AUTHORS_REPO"
AUTHORS_CACHE = Path("~/.cache/transmrsr/authors")
CHECK_PHI = 0.9  # the authors' fixed truncation level


# ---------------------------------------------------------------------------------- their code
def find_authors_repo(arg: str | None, allow_clone: bool = True) -> tuple[Path | None, str]:
    """Folder holding the authors' repository, or ``(None, "skipped: <why>")``.

    Order: ``arg`` (``--authors``), then ``$TRANSMRSR_AUTHORS_REPO``, then the cache folder, which
    is cloned when absent. A folder that is named explicitly and lacks their model file is not
    replaced by another source.
    """

    def holds(p: Path) -> bool:
        return (p / AUTHORS_FILE).is_file()

    if arg:
        p = Path(arg).expanduser()
        if holds(p):
            return p, f"--authors {p}"
        return None, f"skipped: --authors {p} does not hold the authors' repository ({AUTHORS_FILE} not found)"
    env = os.environ.get(AUTHORS_ENV)
    if env:
        p = Path(env).expanduser()
        if holds(p):
            return p, f"${AUTHORS_ENV} = {p}"
        return None, f"skipped: ${AUTHORS_ENV} = {p} does not hold the authors' repository ({AUTHORS_FILE} not found)"
    cache = AUTHORS_CACHE.expanduser()
    if holds(cache):
        return cache, f"cache {cache}"
    if not allow_clone:
        return None, f"skipped: no --authors, ${AUTHORS_ENV} unset, {cache} absent"
    if cache.exists() and any(cache.iterdir()):
        return None, f"skipped: {cache} exists but does not hold {AUTHORS_FILE}; give --authors DIR"
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            ["git", "clone", "--depth", "1", "--quiet", AUTHORS_URL, str(cache)],
            check=False,
            capture_output=True,
            text=True,
            timeout=180,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"skipped: no --authors, ${AUTHORS_ENV} unset, {cache} absent, and git clone failed ({exc})"
    if proc.returncode != 0 or not holds(cache):
        why = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        return None, (
            f"skipped: no --authors, ${AUTHORS_ENV} unset, {cache} absent, and "
            f"`git clone --depth 1 {AUTHORS_URL}` failed: {why}"
        )
    return cache, f"cloned into {cache}"


def _standin_modules() -> dict[str, types.ModuleType]:
    """Stand-ins for the third-party helpers that the authors' ``componets`` package imports.

    Their network file imports ``timm`` (``DropPath``, ``to_2tuple``, ``trunc_normal_``) and
    ``mmcv`` (its fused bias + leaky ReLU, ``upfirdn2d``, and a few names used only by other
    networks in their package). Neither is installed here (``timm`` pulls in ``torchvision``;
    ``mmcv`` needs compiled ops), so while their files are imported these modules stand in:

    * ``to_2tuple``, ``trunc_normal_`` (``torch.nn.init.trunc_normal_``, the same distribution) and
      ``DropPath`` (stochastic depth; identity in eval mode) are used to *build* TGP7;
    * ``fused_bias_leakyrelu`` / ``FusedBiasLeakyReLU`` compute ``leaky_relu(x + bias, 0.2) * sqrt(2)``,
      which is what mmcv computes (its CPU path is this expression; its CUDA kernel fuses it);
      TGP7 calls it in its latent layer;
    * everything else (``upfirdn2d``, ``ConvModule``, ``build_activation_layer``, ``normal_init``,
      ``_load_checkpoint_with_prefix``, and ``einops.rearrange`` when einops is missing) exists only
      so that the imports succeed: TGP7's forward never calls them, and they raise if called.

    So the stand-ins do not change the forward computation of TGP7.
    """

    def module(name: str, **attrs) -> types.ModuleType:
        m = types.ModuleType(name, "stand-in used while importing the authors' code (benchmarks/authors.py)")
        m.__dict__.update(attrs)
        return m

    def unused(name: str) -> Callable:
        def fn(*args, **kwargs):
            raise NotImplementedError(f"{name}: stand-in from benchmarks/authors.py; TGP7's forward does not call it")

        return fn

    def to_2tuple(x):
        return tuple(x) if isinstance(x, (tuple, list)) else (x, x)

    class DropPath(nn.Module):
        def __init__(self, drop_prob: float = 0.0) -> None:
            super().__init__()
            self.drop_prob = drop_prob

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.drop_prob == 0.0 or not self.training:
                return x
            keep = 1.0 - self.drop_prob
            mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
            return x * mask / keep

    def fused_bias_leakyrelu(
        x: torch.Tensor, bias: torch.Tensor | None, negative_slope: float = 0.2, scale: float = 2**0.5
    ) -> torch.Tensor:
        if bias is not None:
            x = x + bias.reshape([-1 if i == 1 else 1 for i in range(x.ndim)])
        return F.leaky_relu(x, negative_slope) * scale

    class FusedBiasLeakyReLU(nn.Module):
        def __init__(self, num_channels: int, negative_slope: float = 0.2, scale: float = 2**0.5) -> None:
            super().__init__()
            self.bias = nn.Parameter(torch.zeros(num_channels))
            self.negative_slope, self.scale = negative_slope, scale

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return fused_bias_leakyrelu(x, self.bias, self.negative_slope, self.scale)

    class ConvModule(nn.Module):  # subclassed at import time by a network TGP7 does not use
        def __init__(self, *args, **kwargs) -> None:
            unused("mmcv.cnn.ConvModule")()

    fused = {"FusedBiasLeakyReLU": FusedBiasLeakyReLU, "fused_bias_leakyrelu": fused_bias_leakyrelu}
    upfirdn = {"upfirdn2d": unused("mmcv.ops.upfirdn2d")}
    mods = {
        "timm": module("timm"),
        "timm.models": module("timm.models"),
        "timm.models.layers": module(
            "timm.models.layers", DropPath=DropPath, to_2tuple=to_2tuple, trunc_normal_=nn.init.trunc_normal_
        ),
        "mmcv": module("mmcv"),
        "mmcv.ops": module("mmcv.ops", **fused, **upfirdn),
        "mmcv.ops.fused_bias_leakyrelu": module("mmcv.ops.fused_bias_leakyrelu", **fused),
        "mmcv.ops.upfirdn2d": module("mmcv.ops.upfirdn2d", **upfirdn),
        "mmcv.cnn": module("mmcv.cnn", ConvModule=ConvModule),
        "mmcv.cnn.bricks": module("mmcv.cnn.bricks"),
        "mmcv.cnn.bricks.activation": module(
            "mmcv.cnn.bricks.activation", build_activation_layer=unused("build_activation_layer")
        ),
        "mmcv.cnn.utils": module("mmcv.cnn.utils", normal_init=unused("normal_init")),
        "mmcv.runner": module("mmcv.runner"),
        "mmcv.runner.checkpoint": module(
            "mmcv.runner.checkpoint", _load_checkpoint_with_prefix=unused("_load_checkpoint_with_prefix")
        ),
    }
    if importlib.util.find_spec("einops") is None:
        mods["einops"] = module("einops", rearrange=unused("einops.rearrange"))
    return mods


@contextlib.contextmanager
def _authors_import_context(root: Path):
    """Their folder on ``sys.path``, the stand-ins in ``sys.modules``, their prints silenced;
    all undone on exit (the classes already built keep what they imported)."""
    standins = _standin_modules()
    saved = {name: sys.modules.get(name) for name in standins}
    sys.modules.update(standins)
    old_path = list(sys.path)
    sys.path.insert(0, str(root))
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        sys.path[:] = old_path  # their file appends its folder to sys.path as well
        for name, mod in saved.items():
            if mod is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = mod


def build_authors_tgp7(root: Path, size: int = 256) -> nn.Module:
    """The authors' final model, ``TGP7`` (their ``--net_G transmrsr7``), at the paper's sizes.

    Arguments as their ``networks.get_network`` passes them (``channel_multiplier=1``, style
    dim 512, ``sft_half=True``: CWSS on half of the channels, which is what gives the paper's
    160.84 M parameters), no pretrained generator, no truncation file (see :func:`set_authors_centroids`).
    Their default ``in_chans=3``: they feed a grey slice as 3 identical channels.
    """
    with _authors_import_context(root):
        spec = importlib.util.spec_from_file_location("_transmrsr_authors_tgp7", root / AUTHORS_FILE)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        model = module.TGP7(size=size, channel_multiplier=1, style_dim=512, sft_half=True, truncation_path=None)
    return model.eval()


def authors_unused_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Modules TGP7 builds but never calls in ``forward``."""
    return {"MAB": model.MAB, "fusion_convs": model.fusion_convs}


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def set_authors_centroids(model: nn.Module, centroids: torch.Tensor) -> None:
    """Turn on their truncation with these ``(K, 512)`` centroids (their code reads them from
    ``.npy`` files in ``truncation_path``; here they are set directly). Their ``truncation``
    attribute is φ (0.9)."""
    model.truncation_path = "<set by benchmarks/authors.py>"
    model.centers = centroids.detach().clone().float()
    model.num_center = centroids.shape[0]


class AuthorsGrey(nn.Module):
    """The authors' network as they run it, on our 1-channel input: the slice repeated on their 3
    input channels; output channel 0 (all three carry the same image)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.expand(-1, 3, -1, -1))[:, :1]


# ---------------------------------------------------------------------------------- weight mapping
def config_for_authors(size: int = 256) -> TransMRSRConfig:
    """Our config with the sizes TGP7 has at canvas ``size``: the ``paper`` preset at 256.

    Their widths per resolution are StyleSwin's (512 up to 32², then 256, 128, 64 ... with channel
    multiplier 1); encoder level ``i`` gets the ``i``-th entry of ``max(c // 32, 4)`` over those
    widths listed from 4² up (so their head counts run against the resolution).
    """
    if size == 256:
        return TransMRSRConfig.from_preset("paper")
    width = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}
    levels = int(math.log2(size)) - 2
    heads = [max(c // 32, 4) for c in width.values()]
    return TransMRSRConfig.from_preset(
        "paper",
        img_size=size,
        shallow_dim=width[size],
        recon_dim=width[size],
        enc_dims=[width[size >> i] for i in range(levels)],
        enc_heads=heads[:levels],
        dec_channels=[width[4 << i] for i in range(levels + 1)],
        dec_heads=None,
        disc_channels=[width[size >> i] for i in range(levels + 1)],
    )


def _swap_halves(c: int) -> torch.Tensor:
    return torch.cat([torch.arange(c // 2, c), torch.arange(0, c // 2)])


@torch.no_grad()
def authors_to_ours(theirs: nn.Module, cfg: TransMRSRConfig) -> tuple[dict[str, torch.Tensor], dict[int, torch.Tensor]]:
    """Map a TGP7's weights onto our ``TransMRSR(cfg)``: returns ``(state_dict, position_tables)``.

    The state dict is complete (it loads with ``strict=True``). Differences in layout, all exact
    reparametrisations:

    * shallow conv: their 3 input channels carry the same grey slice, so their kernel summed over
      input channels is ours; reconstruction: their 3-channel 1x1 output conv, channel 0;
    * encoder attention: they compute ``q k^T`` without the ``1/sqrt(d)`` scale, we with it, so
      the q rows of qkv are multiplied by ``sqrt(d)``; qkv output rows go from their
      ``(q|k|v, head, d)`` order to our ``(head, q|k|v, d)``;
    * decoder: their CWSS modulates the *first* half of the channels, ours the second, so the
      residual stream of every modulated layer (resolutions 4 .. S/2) is stored with its halves
      swapped (rows/columns of every weight that touches it, the constant input and the
      position tables permuted alike); their one qkv / proj pair per block is split between our
      window and shifted-window attention modules;
    * truncation centroids: their ``centers`` (set by :func:`set_authors_centroids`), copied.

    ``position_tables[l]`` is their sinusoidal position grid of decoder layer ``l``'s upsampling,
    laid out for our ``pos`` buffer: a fixed table, not a weight (ours is computed differently
    and does not depend on weights), so it is returned separately.
    """
    t = {k: v.detach() for k, v in theirs.state_dict().items()}
    out: dict[str, torch.Tensor] = {}

    def copy(dst: str, src: str) -> None:
        out[dst] = t[src]

    def conv_stack(dst: str, src: str, blocks: int) -> None:
        for p in ("weight", "bias"):
            for i in range(blocks):
                for c in ("conv1", "conv2"):
                    copy(f"{dst}.blocks.{i}.{c}.{p}", f"{src}.blk_L1.{i}.{c}.{p}")

    # shallow features
    out["shallow.conv.weight"] = t["conv2d.conv_L1.weight"].sum(1, keepdim=True)
    copy("shallow.conv.bias", "conv2d.conv_L1.bias")
    conv_stack("shallow", "conv2d", cfg.shallow_blocks)

    # encoder
    copy("encoder.embed_norm.weight", "patch_embed.norm.weight")
    copy("encoder.embed_norm.bias", "patch_embed.norm.bias")
    for lvl in range(cfg.num_enc_levels):
        dim, heads = cfg.enc_dims[lvl], cfg.enc_heads[lvl]
        d = dim // heads
        for j in range(cfg.enc_depth):
            s, o = f"layers.{lvl}.residual_group.blocks.{j}.", f"encoder.levels.{lvl}.layers.{j}."
            for n in ("norm1", "norm2"):
                copy(o + f"{n}.weight", s + f"{n}.weight")
                copy(o + f"{n}.bias", s + f"{n}.bias")
            copy(o + "attn.bias_table", s + "attn.relative_position_bias_table")
            w = t[s + "attn.qkv.weight"].reshape(3, heads, d, dim).clone()
            b = t[s + "attn.qkv.bias"].reshape(3, heads, d).clone()
            w[0] *= math.sqrt(d)
            b[0] *= math.sqrt(d)
            out[o + "attn.qkv.weight"] = w.permute(1, 0, 2, 3).reshape(3 * dim, dim)
            out[o + "attn.qkv.bias"] = b.permute(1, 0, 2).reshape(3 * dim)
            for n in (
                "attn.proj.weight",
                "attn.proj.bias",
                "mlp.fc1.weight",
                "mlp.fc1.bias",
                "mlp.fc2.weight",
                "mlp.fc2.bias",
            ):
                copy(o + n, s + n)
        for n in ("conv.weight", "conv.bias"):
            copy(f"encoder.levels.{lvl}.{n}", f"layers.{lvl}.{n}")
        for n in ("norm.weight", "norm.bias", "reduction.weight"):
            copy(f"encoder.levels.{lvl}.merge.{n}", f"layers.{lvl}.downsample.{n}")

    # latents
    copy("latent_head.norm.weight", "norm.weight")
    copy("latent_head.norm.bias", "norm.bias")
    copy("latent_head.fc.weight", "final_layers.weight")
    copy("latent_head.fc.bias", "final_layers.bias")
    if getattr(theirs, "truncation_path", None) is not None and theirs.centers is not None:
        centers = theirs.centers.detach().float().cpu()
        if centers.shape != (cfg.num_centroids, cfg.style_dim):
            raise ValueError(
                f"their {tuple(centers.shape)} centroids do not fit ours ({cfg.num_centroids}, {cfg.style_dim})"
            )
        out["truncation.centroids"] = centers
        out["truncation.fitted"] = torch.tensor(True)
    else:
        out["truncation.centroids"] = torch.zeros(cfg.num_centroids, cfg.style_dim)
        out["truncation.fitted"] = torch.tensor(False)

    # decoder (their generator), with the channel halves of modulated layers swapped
    ch, heads_all, n = cfg.dec_channels, cfg.resolved_dec_heads(), cfg.num_dec_layers
    n_mod = n - 1 if cfg.use_cwss else 0
    perms = [_swap_halves(ch[l]) if l < n_mod else torch.arange(ch[l]) for l in range(n)]
    const = t["generator.input.input"]  # (1, C, 4, 4)
    out["decoder.const"] = const.permute(0, 2, 3, 1).reshape(1, 16, ch[0])[..., perms[0]]
    tables: dict[int, torch.Tensor] = {}
    for l in range(n):
        c, p = ch[l], perms[l]
        half, hh = c // 2, heads_all[l] // 2
        d = half // hh
        for j in range(cfg.dec_depth):
            s, o = f"generator.layers.{l}.blocks.{j}.", f"decoder.layers.{l}.blocks.{j}."
            style_rows = torch.cat([p, c + p])
            for n_ in ("norm1", "norm2"):
                out[o + f"{n_}.style.weight"] = t[s + f"{n_}.style.weight"][style_rows]
                out[o + f"{n_}.style.bias"] = t[s + f"{n_}.style.bias"][style_rows]
            w = t[s + "qkv.weight"][:, p].reshape(3, 2, hh, d, c)
            b = t[s + "qkv.bias"].reshape(3, 2, hh, d)
            pw, pb = t[s + "proj.weight"][p], t[s + "proj.bias"][p]
            for k in range(2):
                out[o + f"attn.{k}.qkv.weight"] = w[:, k].permute(1, 0, 2, 3).reshape(3 * half, c)
                out[o + f"attn.{k}.qkv.bias"] = b[:, k].permute(1, 0, 2).reshape(3 * half)
                out[o + f"attn.{k}.proj.weight"] = pw[:, k * half : (k + 1) * half]
                copy(o + f"attn.{k}.bias_table", s + f"attn.{k}.relative_position_bias_table")
            out[o + "attn.0.proj.bias"] = pb
            out[o + "mlp.fc1.weight"] = t[s + "mlp.fc1.weight"][:, p]
            copy(o + "mlp.fc1.bias", s + "mlp.fc1.bias")
            out[o + "mlp.fc2.weight"] = t[s + "mlp.fc2.weight"][p]
            out[o + "mlp.fc2.bias"] = t[s + "mlp.fc2.bias"][p]
        if l + 1 < n:
            s, o, q = f"generator.layers.{l}.upsample.", f"decoder.layers.{l}.upsample.", perms[l + 1]
            out[o + "norm.weight"] = t[s + "norm.weight"][p]
            out[o + "norm.bias"] = t[s + "norm.bias"][p]
            out[o + "reduction.weight"] = t[s + "reduction.weight"][q][:, p]
            copy(o + "alpha", s + "alpha")
            side = cfg.dec_resolutions[l + 1]
            grid = theirs.generator.layers[l].upsample.sin_pos_embed.make_grid2d(side, side, 1)  # (1, C', h, w)
            tables[l] = grid.permute(0, 2, 3, 1)[..., q].float().contiguous()

    # CWSS: our decoder layer l is modulated by encoder output n_mod-1-l, their condition_*[level]
    for l in range(n_mod):
        lvl = n_mod - 1 - l
        for ours_name, their_name in (("scale", "condition_scale"), ("shift", "condition_shift")):
            for i in (0, 2):
                for p_ in ("weight", "bias"):
                    copy(f"cwss.{l}.{ours_name}.{i}.{p_}", f"{their_name}.{lvl}.{i}.{p_}")

    # reconstruction
    copy("recon.conv.weight", "conv_deep.conv_L1.weight")
    copy("recon.conv.bias", "conv_deep.conv_L1.bias")
    conv_stack("recon", "conv_deep", cfg.recon_blocks)
    out["recon_out.weight"] = t["conv_last.weight"][:1]
    out["recon_out.bias"] = t["conv_last.bias"][:1]
    return out, tables


def set_position_tables(model: TransMRSR, tables: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
    """Put these tables into our upsampling layers' ``pos`` buffers; returns the previous ones."""
    previous = {}
    for l, table in tables.items():
        up = model.decoder.layers[l].upsample
        previous[l] = up.pos
        up.pos = table.to(device=up.pos.device, dtype=up.pos.dtype)
    return previous


def load_into_ours(theirs: nn.Module, cfg: TransMRSRConfig) -> tuple[TransMRSR, dict[int, torch.Tensor]]:
    """Our ``TransMRSR(cfg)`` (eval mode) holding ``theirs``' weights, loaded with ``strict=True``, and
    their position tables (see :func:`authors_to_ours`); our own tables stay in its buffers until
    :func:`set_position_tables` puts theirs in."""
    state, tables = authors_to_ours(theirs, cfg)
    ours = TransMRSR(cfg).eval()
    ours.load_state_dict(state, strict=True)
    return ours, tables


def perturb_(model: nn.Module, seed: int = 0, std: float = 0.02) -> None:
    """Add N(0, std^2) noise to every parameter, so that parameters their initialisation leaves at
    0 or 1 (biases, LayerNorms, the position-embedding scale alpha) take part in the check."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * std)
