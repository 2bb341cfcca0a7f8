"""Inference speed of TransMRSR, side by side with the authors' network at identical architecture.

Usage::

    python benchmarks/speed.py --quick                      # meant to take < 2 minutes on an idle 2-core CPU
    python benchmarks/speed.py [--presets tiny small paper] [--batch 1 8] [--paper-batch 1 8]
        [--repeats 3] [--pairs 7] [--warmup 1] [--threads 2] [--devices cpu cuda] [--authors DIR | --no-authors]
        [--volume-presets small paper | --no-volume] [--cuda-modes fp32 bf16 compile]

What it prints (markdown):

* a header line: date, torch version, threads, CPU model (and GPU), git commit of this repository;
* one row per implementation / preset / device / dtype / batch: ms per slice and slices/s (median
  of ``--repeats`` timed forward passes under ``torch.inference_mode()``, warm-up passes not
  counted), peak memory while running (process RSS from ``resource`` on CPU, with the kernel's
  high-water mark reset before each row; ``torch.cuda.max_memory_allocated`` on GPU), and for
  our ``paper`` preset the ratio of its time to the authors' ``TGP7`` at the same device, dtype
  and batch. On CUDA each model runs in fp32, under bf16 autocast, and compiled
  (``torch.compile``, bf16 autocast);
* for ``paper`` against ``TGP7``, ``--pairs`` interleaved timings (which network goes first
  swapped each pair): the rows show each one's median over the pairs and the ratio column the
  median and range of the per-pair ratios, so that load from other processes, which on a shared
  machine moves single timings by 15-30 %, hits both networks alike;
* whole-volume seconds: a 182x218x181 T1 volume (the ICBM152 2009a template that ships with
  nilearn, centre-cropped) made thick-slice at x4 and super-resolved with
  :func:`transmrsr.inference.super_resolve`, for ``small`` (``paper`` too on GPU, or when named in
  ``--volume-presets``);
* the identical-output check: the authors' weights are loaded into our ``paper`` model
  (:func:`authors_to_ours`) and both run on the same input; the maximum absolute difference of
  the outputs is printed with what was mapped.

The authors' code (github.com/goddesshs/TransMRSR, no licence) is never part of this repository:
it is imported at run time from a folder of the user's: ``--authors DIR``, else the
``TRANSMRSR_AUTHORS_REPO`` environment variable, else ``~/.cache/transmrsr/authors`` (cloned there
with ``git clone --depth 1`` when absent). When none of these works the authors' rows are skipped
with a line that says why. Their code imports ``timm`` and ``mmcv``; nothing is installed for
them: for the few helpers it uses, small stand-in modules are put into ``sys.modules`` while their
files are imported (see :func:`_standin_modules`), none of which changes what their forward pass
computes.

Timings on a machine shared with other jobs are noisy: compare rows from the same run only.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import importlib.util
import io
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from transmrsr import TransMRSR, TransMRSRConfig

REPO_ROOT = Path(__file__).resolve().parent.parent
AUTHORS_URL = "https://github.com/goddesshs/TransMRSR"
AUTHORS_FILE = Path("networks") / "network_Transmrsr7.py"
AUTHORS_ENV = "TRANSMRSR_AUTHORS_REPO"
AUTHORS_CACHE = Path("~/.cache/transmrsr/authors")
PRESET_ORDER = ("tiny", "small", "paper")
MODES_CUDA = ("fp32", "bf16", "compile")
MODE_LABEL = {"fp32": "fp32", "bf16": "bf16 autocast", "compile": "bf16 autocast + torch.compile"}
CHECK_PHI = 0.9  # the authors' fixed truncation level


# ---------------------------------------------------------------------------------- environment
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], check=False, cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            check=False, cwd=REPO_ROOT, capture_output=True, text=True, timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (sha or "unknown") + (" (with uncommitted changes)" if dirty else "")


def header_line(threads: int, devices: list[str]) -> str:
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    parts = [now, f"torch {torch.__version__}", f"{threads} threads", f"CPU {cpu_model()} ({os.cpu_count()} cores)"]
    if "cuda" in devices:
        parts.append(f"GPU {torch.cuda.get_device_name(0)}")
    parts.append(f"git {git_commit()}")
    return "# " + ", ".join(parts)


# ---------------------------------------------------------------------------------- memory
def _reset_rss_peak() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux >= 4.0); ``getrusage`` follows it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / 1024 if sys.platform == "darwin" else peak / 1024


# ---------------------------------------------------------------------------------- authors' code
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
            check=False, capture_output=True, text=True, timeout=180, env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"skipped: no --authors, ${AUTHORS_ENV} unset, {cache} absent, and git clone failed ({exc})"
    if proc.returncode != 0 or not holds(cache):
        why = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        return None, (f"skipped: no --authors, ${AUTHORS_ENV} unset, {cache} absent, and "
                      f"`git clone --depth 1 {AUTHORS_URL}` failed: {why}")
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
        m = types.ModuleType(name, "stand-in used while importing the authors' code (benchmarks/speed.py)")
        m.__dict__.update(attrs)
        return m

    def unused(name: str) -> Callable:
        def fn(*args, **kwargs):
            raise NotImplementedError(f"{name}: stand-in from benchmarks/speed.py; TGP7's forward does not call it")
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

    def fused_bias_leakyrelu(x: torch.Tensor, bias: torch.Tensor | None, negative_slope: float = 0.2,
                             scale: float = 2**0.5) -> torch.Tensor:
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
    model.truncation_path = "<set by benchmarks/speed.py>"
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
        "paper", img_size=size, shallow_dim=width[size], recon_dim=width[size],
        enc_dims=[width[size >> i] for i in range(levels)], enc_heads=heads[:levels],
        dec_channels=[width[4 << i] for i in range(levels + 1)], dec_heads=None,
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
            for n in ("attn.proj.weight", "attn.proj.bias", "mlp.fc1.weight", "mlp.fc1.bias",
                      "mlp.fc2.weight", "mlp.fc2.bias"):
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
            raise ValueError(f"their {tuple(centers.shape)} centroids do not fit ours ({cfg.num_centroids}, {cfg.style_dim})")
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


# ---------------------------------------------------------------------------------- timing
@dataclass
class Row:
    impl: str  # "ours" | "authors"
    preset: str
    device: str
    mode: str
    batch: int
    ms: float | None = None
    mem_mb: float | None = None
    note: str = ""


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _runner(model: nn.Module, device: str, mode: str) -> Callable[[torch.Tensor], torch.Tensor]:
    fn = torch.compile(model) if mode == "compile" else model
    if mode == "fp32":
        return fn

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=device, dtype=torch.bfloat16):
            return fn(x)

    return run


def time_row(model: nn.Module, row: Row, size: int, warmup: int, repeats: int, rss_resettable: bool) -> Row:
    """Fill ``row.ms`` (median ms per slice) and ``row.mem_mb`` for ``model`` on ``row``'s settings."""
    device = row.device
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    elif rss_resettable:
        _reset_rss_peak()
    try:
        run = _runner(model, device, row.mode)
        x = torch.rand(row.batch, 1, size, size, device=device)
        if row.mode == "compile":
            warmup = max(warmup, 2)
        with torch.inference_mode():
            for _ in range(warmup):
                run(x)
                _sync(device)
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                run(x)
                _sync(device)
                times.append(time.perf_counter() - t0)
    except Exception as exc:  # noqa: BLE001 -- e.g. torch.compile failing on one network: say so in the row
        row.note = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}"
        return row
    row.ms = statistics.median(times) / row.batch * 1000.0
    row.mem_mb = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else peak_rss_mb()
    return row


#: the CUDA modes timed (``--cuda-modes``)
cuda_modes: tuple[str, ...] = MODES_CUDA


def modes_for(device: str) -> tuple[str, ...]:
    return cuda_modes if device == "cuda" else ("fp32",)


def time_model(model: nn.Module, impl: str, preset: str, size: int, devices: list[str], batches: list[int],
               warmup: int, repeats: int, rss_resettable: bool, warmed: set | None = None,
               progress: Callable[[str], None] = print) -> list[Row]:
    rows = []
    for device in devices:
        model.to(device)
        for mode in modes_for(device):
            for batch in batches:
                key = (device, mode, batch)
                w = 0 if warmed is not None and key in warmed else warmup
                row = time_row(model, Row(impl, preset, device, mode, batch), size, w, repeats, rss_resettable)
                progress(f"  {impl} {preset} {device} {MODE_LABEL[mode]} batch {batch}: "
                         + (f"{row.ms:.1f} ms/slice" if row.ms is not None else row.note))
                rows.append(row)
    model.to("cpu")
    return rows


@dataclass
class Pair:
    """Interleaved timing of the authors' net and ours on one device / dtype / batch."""

    device: str
    mode: str
    batch: int
    ms_theirs: float  # median ms per slice over the pairs
    ms_ours: float
    ratios: list[float]  # ours / theirs, one per pair

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios)


def time_pairs(theirs: nn.Module, ours: nn.Module, size: int, devices: list[str], batches: list[int],
               pairs: int, progress: Callable[[str], None] = print) -> list[Pair]:
    """Time both networks alternately, ``pairs`` times per setting, the first to run swapped each
    pair, so that both see the same machine state (other load, thermal state, caches); the ratio
    is the median of the per-pair ratios. One untimed pass of each first."""
    out = []
    for device in devices:
        theirs.to(device)
        ours.to(device)
        for mode in modes_for(device):
            run_t, run_o = _runner(theirs, device, mode), _runner(ours, device, mode)
            for batch in batches:
                x = torch.rand(batch, 1, size, size, device=device)
                t_t, t_o = [], []
                with torch.inference_mode():
                    for fn in (run_t, run_o) * (2 if mode == "compile" else 1):
                        fn(x)
                        _sync(device)
                    for i in range(pairs):
                        order = ((run_t, t_t), (run_o, t_o)) if i % 2 == 0 else ((run_o, t_o), (run_t, t_t))
                        for fn, acc in order:
                            t0 = time.perf_counter()
                            fn(x)
                            _sync(device)
                            acc.append((time.perf_counter() - t0) / batch * 1000.0)
                pair = Pair(device, mode, batch, statistics.median(t_t), statistics.median(t_o),
                            [o / t for o, t in zip(t_o, t_t)])
                progress(f"  paired {device} {MODE_LABEL[mode]} batch {batch}: ours {pair.ms_ours:.1f} vs authors "
                         f"{pair.ms_theirs:.1f} ms/slice, ours/authors {pair.ratio:.2f} "
                         f"({min(pair.ratios):.2f}-{max(pair.ratios):.2f})")
                out.append(pair)
    theirs.to("cpu")
    ours.to("cpu")
    return out


# ---------------------------------------------------------------------------------- identical outputs
@dataclass
class Check:
    max_abs_diff: float
    max_abs_diff_own_table: float | None
    max_abs_residual: float
    batch: int


def perturb_(model: nn.Module, seed: int = 0, std: float = 0.02) -> None:
    """Add N(0, std^2) noise to every parameter, so that parameters their initialisation leaves at
    0 or 1 (biases, LayerNorms, the position-embedding scale alpha) take part in the check."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * std)


# ---------------------------------------------------------------------------------- whole volume
def volume_seconds(preset: str, device: str, scale: int, batch_size: int, rss_resettable: bool) -> dict:
    from transmrsr.data import simulate_thick
    from transmrsr.data.packaged import held_out_t1
    from transmrsr.inference import super_resolve

    hr, _, _ = held_out_t1()  # the ICBM152 T1 on the paper's 182x218x181 grid
    lr = simulate_thick(hr, 2, scale)
    torch.manual_seed(0)
    model = TransMRSR(TransMRSRConfig.from_preset(preset)).eval()
    if device == "cuda":  # CUDA context, kernels and autotuning outside the timed run
        cx, cy = lr.shape[0] // 2, lr.shape[1] // 2  # a central slab: brain in every slice, none skipped
        super_resolve(model, lr[cx - 8 : cx + 8, cy - 8 : cy + 8], 2, scale, batch_size=batch_size, device=device,
                      show_progress=False)
        _sync(device)
    gc.collect()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    elif rss_resettable:
        _reset_rss_peak()
    t0 = time.perf_counter()
    result = super_resolve(model, lr, 2, scale, n_thin=hr.shape[2], batch_size=batch_size, device=device,
                           show_progress=False)
    _sync(device)
    dt = time.perf_counter() - t0
    mem = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else peak_rss_mb()
    del model
    return {"preset": preset, "device": device, "seconds": dt, "slices": result.slices_run,
            "shape": result.sr.shape, "mem_mb": mem, "dtype": "bf16 autocast" if device == "cuda" else "fp32"}


# ---------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="tiny+small at batch 1 and 2, paper and the authors' net at batch 1 with one timed run, "
                         "no whole-volume run (unless --volume-presets is given)")
    ap.add_argument("--presets", nargs="+", choices=PRESET_ORDER, default=None,
                    help="presets timed (default: tiny small paper; --quick: tiny small)")
    ap.add_argument("--batch", type=int, nargs="+", default=None, help="batch sizes (default 1 8; --quick: 1 2)")
    ap.add_argument("--paper-batch", type=int, nargs="+", default=None,
                    help="batch sizes for our paper preset and the authors' net (default: --batch; --quick: 1)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per row (median reported)")
    ap.add_argument("--paper-repeats", type=int, default=None,
                    help="timed runs for paper / authors rows (default: --repeats; --quick: 1)")
    ap.add_argument("--pairs", type=int, default=None,
                    help="interleaved ours/authors timings per paper setting; their medians replace the rows' "
                         "times (default 7; --quick: 2; 0: rows timed one network after the other)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs before each row")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--devices", nargs="+", choices=("cpu", "cuda"), default=None,
                    help="default: cpu, and cuda when available")
    ap.add_argument("--authors", metavar="DIR", default=None,
                    help=f"folder holding the authors' repository (default: ${AUTHORS_ENV}, then {AUTHORS_CACHE})")
    ap.add_argument("--no-authors", action="store_true", help="do not time or check the authors' network")
    ap.add_argument("--no-clone", action="store_true", help="never git clone the authors' repository")
    ap.add_argument("--volume-presets", nargs="*", choices=PRESET_ORDER, default=None,
                    help="whole-volume runs (default: small, and paper on GPU; --quick: none)")
    ap.add_argument("--no-volume", action="store_true")
    ap.add_argument("--volume-batch", type=int, default=8)
    ap.add_argument("--cuda-modes", nargs="+", choices=MODES_CUDA, default=list(MODES_CUDA),
                    help="CUDA rows: fp32, bf16 (autocast), compile (torch.compile + bf16 autocast); default all")
    ap.add_argument("--scale", type=int, default=4)
    args = ap.parse_args(argv)
    if args.devices is None:
        args.devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if "cuda" in args.devices and not torch.cuda.is_available():
        ap.error("--devices cuda: CUDA is not available")
    if args.presets is None:
        args.presets = ["tiny", "small"] if args.quick else list(PRESET_ORDER)
    if args.batch is None:
        args.batch = [1, 2] if args.quick else [1, 8]
    if args.paper_batch is None:
        args.paper_batch = [1] if args.quick else list(args.batch)
    if args.paper_repeats is None:
        args.paper_repeats = 1 if args.quick else args.repeats
    if args.pairs is None:
        args.pairs = 2 if args.quick else 7
    if args.no_volume:
        args.volume_presets = []
    elif args.volume_presets is None:
        args.volume_presets = [] if args.quick else ["small"] + (["paper"] if "cuda" in args.devices else [])
    return args


def fmt(v: float | None, digits: int) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    global cuda_modes
    args = parse_args(argv)
    cuda_modes = tuple(m for m in MODES_CUDA if m in args.cuda_modes)
    torch.set_num_threads(args.threads)
    rss_resettable = _reset_rss_peak()
    t_start = time.perf_counter()

    def progress(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:6.1f} s]{msg}", file=sys.stderr, flush=True)

    print(header_line(args.threads, args.devices))
    print()
    rows: list[Row] = []
    notes: list[str] = []

    # authors' code
    authors_root, authors_source = (None, "skipped: --no-authors") if args.no_authors else \
        find_authors_repo(args.authors, allow_clone=not args.no_clone)
    if authors_root is None:
        print(f"authors' TGP7: {authors_source}")
    else:
        print(f"authors' TGP7: repository found ({authors_source})")

    # our presets (paper goes with the authors' net when that loads)
    for preset in [p for p in PRESET_ORDER if p in args.presets]:
        if preset == "paper" and authors_root is not None:
            continue
        torch.manual_seed(0)
        cfg = TransMRSRConfig.from_preset(preset)
        model = TransMRSR(cfg).eval()
        model.truncation.set_centroids(torch.randn(cfg.num_centroids, cfg.style_dim))
        batches = args.paper_batch if preset == "paper" else args.batch
        repeats = args.paper_repeats if preset == "paper" else args.repeats
        rows += time_model(model, "ours", preset, cfg.img_size, args.devices, batches, args.warmup, repeats,
                           rss_resettable, progress=progress)
        del model

    # the authors' TGP7 and our paper preset: identical outputs, then speed
    check: Check | None = None
    pairs: list[Pair] = []
    params: dict[str, float] = {}
    if authors_root is not None:
        cfg = config_for_authors(256)
        torch.manual_seed(0)
        try:
            progress(" building the authors' TGP7")
            theirs = build_authors_tgp7(authors_root)
        except Exception as exc:  # noqa: BLE001 -- their code: any failure means a skipped row
            print(f"authors' TGP7: skipped: importing or building it from {authors_root} failed: "
                  f"{type(exc).__name__}: {exc}")
            theirs = None
        if theirs is None:
            torch.manual_seed(0)
            model = TransMRSR(cfg).eval()
            model.truncation.set_centroids(torch.randn(cfg.num_centroids, cfg.style_dim))
            rows += time_model(model, "ours", "paper", 256, args.devices, args.paper_batch, args.warmup,
                               args.paper_repeats, rss_resettable, progress=progress)
            del model
        else:
            total = count_params(theirs)
            unused = {k: count_params(m) for k, m in authors_unused_modules(theirs).items()}
            params.update(authors_built=total / 1e6, authors_used=(total - sum(unused.values())) / 1e6,
                          **{f"authors_{k}": v / 1e6 for k, v in unused.items()})
            perturb_(theirs, seed=1)
            g = torch.Generator().manual_seed(2)
            centroid = torch.randn(1, cfg.style_dim, generator=g)
            set_authors_centroids(theirs, centroid.repeat(cfg.num_centroids, 1))
            grey = AuthorsGrey(theirs).eval()
            check_batch = 1
            x = torch.rand(check_batch, 1, 256, 256, generator=g)
            progress(" authors' TGP7: reference output")
            with torch.inference_mode():
                y_theirs = grey(x)
            warmed = {("cpu", "fp32", check_batch)}
            rows += time_model(grey, "authors", "paper", 256, args.devices, args.paper_batch, args.warmup,
                               args.paper_repeats, rss_resettable, warmed=warmed, progress=progress)
            state, tables = authors_to_ours(theirs, cfg)
            progress(" our paper model with the authors' weights")
            torch.manual_seed(0)
            ours = TransMRSR(cfg).eval()
            ours.load_state_dict(state, strict=True)
            del state
            params["ours"] = ours.num_parameters() / 1e6
            own_tables = set_position_tables(ours, tables)
            with torch.inference_mode():
                y_ours = ours(x, phi=CHECK_PHI)
                own_diff = None
                if not args.quick:
                    progress(" our paper model with its own position tables")
                    set_position_tables(ours, own_tables)
                    own_diff = float((ours(x, phi=CHECK_PHI) - y_theirs).abs().max())
                    set_position_tables(ours, tables)
            check = Check(
                max_abs_diff=float((y_ours - y_theirs).abs().max()),
                max_abs_diff_own_table=own_diff,
                max_abs_residual=float((y_theirs - x).abs().max()),
                batch=check_batch,
            )
            if args.pairs > 0:
                pairs = time_pairs(grey, ours, 256, args.devices, args.paper_batch, args.pairs, progress=progress)
            # our rows' memory is read with the authors' net gone, as theirs was read without ours
            del grey, theirs
            gc.collect()
            rows += time_model(ours, "ours", "paper", 256, args.devices, args.paper_batch, args.warmup,
                               args.paper_repeats, rss_resettable, warmed=warmed, progress=progress)
            del ours

    # table
    def sort_key(r: Row):
        return (args.devices.index(r.device), PRESET_ORDER.index(r.preset), modes_for(r.device).index(r.mode),
                r.batch, r.impl != "ours")

    paired = {(p.device, p.mode, p.batch): p for p in pairs}
    for r in rows:
        p = paired.get((r.device, r.mode, r.batch)) if r.preset == "paper" and r.ms is not None else None
        if p is not None:
            r.ms = p.ms_ours if r.impl == "ours" else p.ms_theirs
    authors_ms = {(r.device, r.mode, r.batch): r.ms for r in rows if r.impl == "authors"}
    mem_head = "peak RSS MB (CUDA: max allocated MB)" if "cuda" in args.devices else "peak RSS MB"
    print()
    print(f"| implementation | preset | device | dtype | batch | ms / slice | slices / s | {mem_head} | ours / authors (time) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=sort_key):
        impl = "ours" if r.impl == "ours" else "authors' `TGP7`"
        ratio = ""
        if r.preset == "paper" and r.impl == "ours":
            ref = authors_ms.get((r.device, r.mode, r.batch))
            ratio = f"{r.ms / ref:.2f}" if r.ms is not None and ref else ""
            p = paired.get((r.device, r.mode, r.batch))
            if p is not None and r.ms is not None and ref:
                ratio = (f"**{p.ratio:.2f}** ({min(p.ratios):.2f}–{max(p.ratios):.2f} over {len(p.ratios)} pairs; "
                         f"{1 / p.ratio:.2f}× the throughput)")
        elif r.impl == "authors":
            ratio = "(reference)" if r.ms is not None else ""
        sps = None if r.ms is None else 1000.0 / r.ms
        ms = fmt(r.ms, 1) if r.ms is None or r.ms < 100 else f"{r.ms:.0f}"
        cells = [impl, f"`{r.preset}`", r.device, MODE_LABEL[r.mode], str(r.batch),
                 ms if not r.note else f"{ms} ({r.note})", fmt(sps, 2), fmt(r.mem_mb, 0), ratio]
        print("| " + " | ".join(cells) + " |")
    paper_reps = f"{args.paper_repeats} for paper/authors rows" if args.paper_repeats != args.repeats else ""
    notes.append(f"Times: median of {args.repeats} timed forward passes per row"
                 + (f" ({paper_reps})" if paper_reps else "")
                 + f" after {args.warmup} untimed warm-up pass(es), under torch.inference_mode(), random input, "
                 "random weights; ms per slice = batch time / batch. ours / authors < 1 means ours is faster.")
    if pairs:
        notes.append(f"Paper rows: ours and the authors' net timed alternately, {args.pairs} pairs per setting, which "
                     "one runs first swapped each pair; the rows show each network's median over the pairs and the "
                     "ratio column the median (range) of the per-pair ratios, so that load from other processes "
                     "hits both alike.")
    if rss_resettable:
        notes.append("Peak RSS: the process's resident-memory high-water mark, reset before each row "
                     "(model already built): weights + activations + the Python/torch runtime.")
    else:
        notes.append("Peak RSS: could not reset the high-water mark here, so each row shows the process peak "
                     "so far.")
    if authors_root is not None and check is not None:
        notes.append("Authors' rows: their TGP7 as they run it (a grey slice repeated on 3 input channels, "
                     "output channel 0), with their truncation on (phi 0.9); ours: paper preset, phi 0.9.")
    print()
    for n_ in notes:
        print(f"- {n_}")

    # identical outputs
    if check is not None:
        print()
        print("## Identical outputs: the authors' TGP7 weights loaded into our `paper` model")
        print()
        print(f"- parameters: ours {params['ours']:.2f} M; authors' TGP7 {params['authors_built']:.2f} M built, "
              f"{params['authors_used']:.2f} M used in forward (MAB {params['authors_MAB']:.2f} M and "
              f"fusion_convs {params['authors_fusion_convs']:.2f} M are built but never called)")
        print("- mapped: every tensor of our model (strict load): shallow convs (their 3-channel kernel summed "
              "over its identical input channels), encoder (q rows x sqrt(d): their encoder attention omits the "
              "1/sqrt(d) scale; qkv rows reordered per head), latent layer, centroids, CWSS convs, generator "
              "(channel halves swapped in the modulated layers 4..128, since they modulate the first half and we "
              "the second; their qkv/proj split between our window and shifted-window modules), reconstruction "
              "(channel 0 of their 3-channel output conv); their sinusoidal position tables copied into our "
              "(non-weight) position buffers")
        print(f"- input: one random 256x256 slice in [0, 1] (batch {check.batch}), eval mode; every parameter of "
              "theirs perturbed by N(0, 0.02^2) first so that zero-initialised biases, LayerNorms and the "
              "position-embedding scale alpha take part; truncation phi = 0.9 towards one centroid (repeated "
              "8 times), so their farthest-centroid rule and our nearest one pick the same vector")
        print(f"- **max |ours - theirs| = {check.max_abs_diff:.3g}** (largest residual |output - input| "
              f"= {check.max_abs_residual:.3g})")
        if check.max_abs_diff_own_table is not None:
            print(f"- with our own sinusoidal position tables instead of theirs: max |ours - theirs| = "
                  f"{check.max_abs_diff_own_table:.3g} (the tables differ: theirs starts at position 1 and puts x "
                  "before y; they enter only through the learned alpha, 0 at initialisation)")
        else:
            print("- (--quick: the run with our own position tables is left out)")

    # whole volume
    if args.volume_presets:
        vol_device = "cuda" if "cuda" in args.devices else "cpu"
        results = []
        for preset in args.volume_presets:
            progress(f" whole volume, {preset}, {vol_device}")
            results.append(volume_seconds(preset, vol_device, args.scale, args.volume_batch, rss_resettable))
            gc.collect()
        print()
        mem = "CUDA max allocated MB" if vol_device == "cuda" else "peak RSS MB"
        print(f"| whole volume x{args.scale} | device | dtype | volume | slices run | seconds | slices / s | {mem} |")
        print("|---|---|---|---|---|---|---|---|")
        for v in results:
            shape = "x".join(map(str, v["shape"]))
            print(f"| `{v['preset']}` | {v['device']} | {v['dtype']} | {shape} | {v['slices']} | "
                  f"{v['seconds']:.1f} | {v['slices'] / v['seconds']:.2f} | {v['mem_mb']:.0f} |")
        print(f"\n- ICBM152 2009a T1 (nilearn) cropped to 182x218x181, thick-slice x{args.scale} along axis 2, "
              f"`super_resolve` with batch {args.volume_batch}, random weights; background slices are not run.")
    elif args.quick:
        print("\nwhole-volume runs: skipped in --quick (run without --quick, or name --volume-presets)")
    print(f"\ntotal wall time: {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
