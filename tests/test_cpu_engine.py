"""The CPU inference engine (``transmrsr.models.cpu_engine``) against the reference modules.

Every engine module and whole models must give the reference's values (float rounding apart),
must really take their fast paths (chunked ones included: the chunk size is lowered so that
small maps are several chunks), and must leave training, autograd, autocast and other dtypes to
the reference. Everything runs on the CPU in a few seconds.
"""

from __future__ import annotations

import copy
import math
from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from transmrsr import TransMRSR, TransMRSRConfig
from transmrsr.models import cpu_engine as engine
from transmrsr.models.layers import ConvStack, Mlp, ResidualBlock
from transmrsr.models.styleswin import AdaptiveInstanceNorm, BilinearUpsample, StyleSwinBlock
from transmrsr.models.swin import EncoderLevel, PatchMerging, SwinLayer, WindowAttention
from transmrsr.models.transmrsr import ChannelWiseScaleShift

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: the engine's fast functions, each counted by :func:`spies` when it runs
FAST = (
    "mlp",
    "_mlp_chunked",
    "window_attention",
    "_attention_chunked",
    "swin_layer",
    "patch_merging",
    "_merge",
    "encoder_level",
    "residual_block",
    "conv_stack",
    "cwss",
    "adain_modulation",
    "style_block",
    "bilinear_upsample",
)


@pytest.fixture
def spies(monkeypatch) -> Counter:
    """Counts of the calls of each of the engine's fast functions (:data:`FAST`) and of its oneDNN kernels."""
    calls: Counter = Counter()

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)

        return wrapper

    for name in FAST:
        monkeypatch.setattr(engine, name, counted(name, getattr(engine, name)))
    monkeypatch.setattr(engine, "_ONEDNN_LINEAR", counted("onednn_linear", engine._ONEDNN_LINEAR))

    class Conv:  # the conv op and its .binary overload, both counted
        __call__ = staticmethod(counted("onednn_conv", engine._ONEDNN_CONV))
        binary = staticmethod(counted("onednn_conv_add", engine._ONEDNN_CONV.binary))

    monkeypatch.setattr(engine, "_ONEDNN_CONV", Conv())
    return calls


def chunks(monkeypatch, tokens: int) -> None:
    monkeypatch.setattr(engine, "CHUNK_TOKENS", tokens)


def assert_close_to(got: torch.Tensor, ref: torch.Tensor, rel: float = 1e-5) -> None:
    """``got`` within ``rel`` of ``ref``'s scale (at least 1), elementwise."""
    torch.testing.assert_close(got, ref, rtol=0, atol=rel * max(1.0, ref.abs().max().item()))


def randomise_(module: nn.Module, seed: int = 0) -> nn.Module:
    """Move every parameter away from its initial value (biases, norms and the upsampling's
    alpha start at 0 or 1, where a wrong term could hide), by a modest amount."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.1)
    return module


def engine_vs_reference(module: nn.Module, *args: torch.Tensor):
    """``(reference output, engine output)``: the module as reference under ``no_grad``, then
    swapped to the engine, under ``inference_mode``. The inputs must not change."""
    before = [a.clone() for a in args]
    engine.as_reference(module)
    with torch.no_grad():
        ref = module(*args)
    engine.accelerate_for_cpu(module)
    with torch.inference_mode():
        got = module(*args)
    for a, b in zip(args, before):
        assert torch.equal(a, b), "the engine wrote into its input"
    return ref, got


def tokens(batch: int, side: int, c: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, side * side, c, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------- 1. the swap
def test_models_are_built_with_the_engine_and_the_swap_keeps_their_weights(tiny_model):
    assert engine.is_accelerated(tiny_model) and type(tiny_model) is TransMRSR
    state = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    assert engine.as_reference(tiny_model) is tiny_model and not engine.is_accelerated(tiny_model)
    kinds = {type(m) for m in tiny_model.modules()}
    assert set(engine.ENGINE) <= kinds, "the tiny model holds every swapped module type"
    assert engine.accelerate_for_cpu(tiny_model) is tiny_model
    engine.accelerate_for_cpu(tiny_model)  # idempotent
    assert type(tiny_model) is TransMRSR and engine.is_accelerated(tiny_model)
    assert not any(type(m) in engine.ENGINE for m in tiny_model.modules())
    for m in tiny_model.modules():  # an engine module is still an instance of its reference type
        if type(m) in engine.ENGINE.values():
            assert isinstance(m, tuple(engine.ENGINE))
    after = tiny_model.state_dict()
    assert list(after) == list(state) and all(torch.equal(after[k], v) for k, v in state.items())
    tiny_model.load_state_dict(state, strict=True)
    assert engine.is_accelerated(copy.deepcopy(tiny_model))
    engine.as_reference(tiny_model)
    assert {type(m) for m in tiny_model.modules()} == kinds


def test_subclasses_of_reference_modules_are_left_alone():
    class MyMlp(Mlp):  # may change the maths: not the engine's business
        pass

    m = nn.Sequential(MyMlp(4, 8), Mlp(4, 8))
    engine.accelerate_for_cpu(m)
    assert type(m[0]) is MyMlp and type(m[1]) is engine.CPUMlp


def test_built_and_loaded_models_carry_the_engine(tiny_model, tmp_path):
    """Both networks are built with the engine; ``from_pretrained`` and stage-2 training build
    theirs so too, and the saved architecture is the network's name."""
    import json

    from transmrsr import StyleSwinGenerator
    from transmrsr.config import SRTrainConfig
    from transmrsr.training import build_sr_model

    folder = tiny_model.save_pretrained(tmp_path / "m")
    assert json.loads((folder / "config.json").read_text())["architecture"] == "TransMRSR"
    loaded = TransMRSR.from_pretrained(folder)
    assert engine.is_accelerated(loaded) and type(loaded) is TransMRSR
    assert engine.is_accelerated(StyleSwinGenerator(tiny_model.config))
    assert engine.is_accelerated(build_sr_model(SRTrainConfig(preset="tiny"))[0])


# ---------------------------------------------------------------------------- 2. kernels
@pytest.mark.parametrize("activation", ["none", "gelu"])
def test_fused_linear_matches_the_plain_ops(activation):
    layer = randomise_(nn.Linear(12, 40))
    x = torch.randn(2, 3, 50, 12)
    with torch.inference_mode():
        got = engine.linear(x, layer, activation)
        ref = layer(x)
        ref = F.gelu(ref) if activation == "gelu" else ref
    assert_close_to(got, ref)
    with pytest.raises(ValueError, match="activation"):
        engine.linear(x, layer, "relu")


@pytest.mark.parametrize(
    "activation,use_residual", [("relu", False), ("leaky_relu", False), ("none", True), ("none", False)]
)
@pytest.mark.parametrize("layout", ["channels_last", "nchw"])
def test_fused_conv_matches_the_plain_ops(activation, use_residual, layout):
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    x = torch.randn(2, 6, 20, 20).contiguous(memory_format=fmt)
    w, b = torch.randn(5, 6, 3, 3), torch.randn(5)
    res = torch.randn(2, 5, 20, 20).contiguous(memory_format=fmt) if use_residual else None
    y = F.conv2d(x, w, b, padding=1)
    expected = {"relu": F.relu(y), "leaky_relu": F.leaky_relu(y, 0.2)}.get(activation, y)
    if use_residual:
        expected = res + y
    with torch.inference_mode():
        got = engine.conv2d_same(x, w, b, activation, residual=res)
    assert_close_to(got, expected)
    if layout == "channels_last":
        assert got.is_contiguous(memory_format=torch.channels_last)  # the token views downstream stay free
    with pytest.raises(ValueError):
        engine.conv2d_same(x, w, b, "gelu")
    with pytest.raises(ValueError):
        engine.conv2d_same(x, w, b, "relu", residual=torch.zeros(2, 5, 20, 20))


def test_channels_last_also_for_one_channel():
    x = torch.rand(2, 1, 8, 8)
    y = engine.channels_last(x)
    assert torch.equal(x, y) and y.stride(1) == 1
    assert engine.channels_last(y) is y


# ---------------------------------------------------------------------------- 3. each module, engine vs reference
def _window_attention():
    return WindowAttention(16, 8, 2, 16, 4, shift=2), (tokens(2, 16, 16),)


def _window_attention_unshifted():
    return WindowAttention(12, 12, 3, 8, 4, shift=0), (tokens(3, 8, 12),)


def _mlp():
    return Mlp(12, 40), (torch.randn(2, 3, 50, 12),)


def _swin_layer():
    return SwinLayer(16, 2, 16, 4, 2, 2.0, 0.0), (tokens(2, 16, 16),)


def _patch_merging():
    return PatchMerging(8, 5), (torch.randn(2, 14, 14, 8),)  # chunk 40: bands of 2, 2, 2 and 1 output rows


def _encoder_level():
    # a contiguous (B, H, W, C) map, as the encoder passes: its (B, C, H, W) view is channels-last
    return EncoderLevel(16, 24, 2, 16, 4, 2, 2.0, 0.0), (torch.randn(2, 16, 16, 16),)


def _residual_block():
    return ResidualBlock(8), (torch.randn(2, 8, 12, 12).contiguous(memory_format=torch.channels_last),)


def _conv_stack():
    return ConvStack(1, 8, 2), (torch.rand(2, 1, 12, 12),)


def _cwss():
    return ChannelWiseScaleShift(8, 12), (torch.randn(2, 6, 6, 8),)


def _adain():
    return AdaptiveInstanceNorm(16, 8), (tokens(2, 12, 16), torch.randn(2, 8))


def _style_block():
    return StyleSwinBlock(16, 4, 16, 4, 2.0, 8), (tokens(2, 16, 16), torch.randn(2, 8))


def _upsample():
    return BilinearUpsample(8, 4, 20), (tokens(3, 10, 8),)


MODULES = {
    "window_attention": (_window_attention, ["window_attention", "_attention_chunked"]),
    "window_attention_unshifted": (_window_attention_unshifted, ["window_attention", "_attention_chunked"]),
    "mlp": (_mlp, ["mlp", "_mlp_chunked"]),
    "swin_layer": (_swin_layer, ["swin_layer", "_attention_chunked", "_mlp_chunked"]),
    "patch_merging": (_patch_merging, ["patch_merging"]),
    "encoder_level": (
        _encoder_level,
        ["encoder_level", "swin_layer", "patch_merging", "onednn_conv_add", "_attention_chunked", "_mlp_chunked"],
    ),
    "residual_block": (_residual_block, ["residual_block", "onednn_conv", "onednn_conv_add"]),
    "conv_stack": (_conv_stack, ["conv_stack", "residual_block", "onednn_conv"]),
    "cwss": (_cwss, ["cwss", "onednn_conv"]),
    "adain": (_adain, ["adain_modulation"]),
    "style_block": (_style_block, ["style_block", "adain_modulation", "_attention_chunked", "_mlp_chunked"]),
    "upsample": (_upsample, ["bilinear_upsample"]),
}
assert {engine.ENGINE[type(make()[0])] for make, _ in MODULES.values()} == set(engine.ENGINE.values())


@pytest.mark.parametrize("chunk", [40, 4096])  # several chunks (the last one partial), and one pass
@pytest.mark.parametrize("name", sorted(MODULES))
def test_each_engine_module_matches_the_reference(monkeypatch, spies, name, chunk):
    make, fast = MODULES[name]
    chunks(monkeypatch, chunk)
    torch.manual_seed(0)
    module, args = make()
    randomise_(module.eval())
    ref, got = engine_vs_reference(module, *args)
    for r, g in zip(ref, got) if isinstance(ref, tuple) else [(ref, got)]:
        assert g.shape == r.shape and g.dtype == r.dtype
        assert_close_to(g, r)
    ran = {f for f in fast if spies[f]}
    expected = {f for f in fast if "chunked" not in f or chunk == 40}
    assert ran == expected, f"{name}: ran {sorted(ran)}, expected {sorted(expected)}"
    assert spies["onednn_linear"] or name in ("residual_block", "conv_stack", "cwss", "adain")
    if name == "patch_merging":  # the bands really ran
        assert spies["_merge"] == (4 if chunk == 40 else 1)
    if name == "upsample":  # one reduction per chunk of the 3 x 400 output tokens
        assert spies["onednn_linear"] == (len(engine.token_chunks(400, 3, 40)) if chunk == 40 else 1) > 0


# ---------------------------------------------------------------------------- 4. the fused functions' own options
@pytest.mark.parametrize("batch", [1, 3])
def test_chunked_attention_and_per_slice_norms_match_one_pass(monkeypatch, batch):
    """Window groups (shifted windows whose border windows fall in several groups) with a
    LayerNorm or a per-slice AdaIN applied inside equal the reference; so does the MLP chunked
    over tokens with a per-slice norm, and one slice of the batch alone."""
    torch.manual_seed(0)
    attn = randomise_(WindowAttention(16, 16, 2, 32, 4, shift=2))  # 64 windows of 16 tokens, 15 border windows
    ln, ada, mlp = randomise_(nn.LayerNorm(16)), AdaptiveInstanceNorm(16, 8), Mlp(16, 32)
    chunks(monkeypatch, 80)  # 80 // (batch * 16) windows per group
    x, style = torch.randn(batch, 32 * 32, 16), torch.randn(batch, 8)
    with torch.no_grad():
        ref_ln = x + attn(ln(x))
        y = ada(x, style)
        ref_ada, ref_mlp = x + attn(y), x + mlp(y)
    with torch.inference_mode():
        got_ln = engine.window_attention(attn, x, residual=x, norm=ln)
        modulate = engine.adain_modulation(ada, x, style)
        got_ada = engine.window_attention(attn, x, residual=x, norm=modulate)
        got_mlp = engine.mlp(mlp, x, residual=x, norm=modulate)
        alone = engine.window_attention(
            attn, x[-1:], residual=x[-1:], norm=engine.adain_modulation(ada, x[-1:], style[-1:])
        )
    for got, ref in ((got_ln, ref_ln), (got_ada, ref_ada), (got_mlp, ref_mlp)):
        assert_close_to(got, ref, 2e-5)
    assert_close_to(alone, got_ada[-1:], 2e-5)


@pytest.mark.parametrize("batch", [1, 2])
def test_chunked_paths_add_in_place_only_when_asked(monkeypatch, batch):
    """``inplace=True`` adds the attention / MLP output into the residual's own memory (which may
    be the input itself) with the reference's values; without it the input and the residual are
    left untouched. Swin layers and StyleSwin blocks keep their input intact."""
    torch.manual_seed(1)
    chunks(monkeypatch, 48)
    attn = randomise_(WindowAttention(16, 8, 2, 16, 4, shift=2))
    ln, mlp = nn.LayerNorm(16), Mlp(16, 32)
    x, other = torch.randn(batch, 256, 16), torch.randn(batch, 256, 16)
    with torch.no_grad():
        ref_self, ref_other, ref_mlp = x + attn(ln(x)), other + attn(ln(x)), x + mlp(ln(x))
    with torch.inference_mode():
        x0, other0 = x.clone(), other.clone()
        got = engine.window_attention(attn, x, residual=other, norm=ln)  # a new tensor
        assert_close_to(got, ref_other, 2e-5)
        assert torch.equal(x, x0) and torch.equal(other, other0)
        got = engine.window_attention(attn, x, residual=other, norm=ln, inplace=True)  # into other, reading x
        assert got.data_ptr() == other.data_ptr() and torch.equal(x, x0)
        assert_close_to(other, ref_other, 2e-5)
        y = x.clone()
        assert engine.window_attention(attn, y, residual=y, norm=ln, inplace=True).data_ptr() == y.data_ptr()
        assert_close_to(y, ref_self, 2e-5)
        y = x.clone()
        assert engine.mlp(mlp, y, residual=y, norm=ln, inplace=True).data_ptr() == y.data_ptr()
        assert_close_to(y, ref_mlp, 2e-5)
        assert_close_to(engine.mlp(mlp, x, residual=x, norm=ln), ref_mlp, 2e-5)
        assert torch.equal(x, x0)

    layer, block = SwinLayer(16, 2, 16, 4, 2, 2.0, 0.0).eval(), StyleSwinBlock(16, 4, 16, 4, 2.0, 8).eval()
    style = torch.randn(batch, 8)
    with torch.no_grad():
        ref_layer, ref_block = layer(x), block(x, style)
    with torch.inference_mode():
        assert_close_to(engine.swin_layer(layer, x), ref_layer, 3e-5)
        assert_close_to(engine.style_block(block, x, style), ref_block, 3e-5)
        assert torch.equal(x, x0)  # not in place unless asked
        y = x.clone()
        assert_close_to(engine.swin_layer(layer, y, inplace=True), ref_layer, 3e-5)


@pytest.mark.parametrize("chunked", [False, True])
def test_padded_head_width_on_the_engine_path(monkeypatch, chunked):
    """Head widths padded for a device's fused kernel (CUDA's; forced on the CPU here) give the
    reference's attention on the engine path too, one pass and in window groups."""
    padded = []
    real_pad = F.pad
    monkeypatch.setattr(F, "pad", lambda t, p, *a, **k: padded.append(t.shape[-1] + p[1]) or real_pad(t, p, *a, **k))
    chunks(monkeypatch, 40 if chunked else 4096)
    torch.manual_seed(5)
    attn = randomise_(WindowAttention(16, 12, 2, 16, 4, shift=2))  # head width 6
    x = torch.randn(2, 256, 16)
    with torch.no_grad():
        ref = attn(x)
    monkeypatch.setattr(WindowAttention, "HEAD_ALIGN", {"cpu": 8})
    with torch.inference_mode():
        got = engine.window_attention(attn, x)
    assert_close_to(got, ref)
    assert padded and set(padded) == {8}


# ---------------------------------------------------------------------------- 5. the attention bias cache
def _shifted_attention(seed: int = 0) -> WindowAttention:
    torch.manual_seed(seed)
    attn = WindowAttention(12, 8, 2, 8, 4, shift=2)
    with torch.no_grad():  # a bias large enough that a stale one would show
        attn.bias_table.normal_(0.0, 1.0)
    return engine.accelerate_for_cpu(attn.eval())


def test_attention_bias_is_cached_and_follows_the_table():
    attn = _shifted_attention()
    x = torch.randn(2, 64, 12)
    with torch.no_grad():
        y1 = attn(x)
        bias_a = engine.attn_bias(attn, torch.float32)
        assert engine.attn_bias(attn, torch.float32) is bias_a  # cached
        # the bias is shared by all windows; only the 3 border windows of a 2x2 grid carry a mask
        assert bias_a[0].shape == (1, 2, 16, 16) and bias_a[1].shape == (1, 3, 2, 16, 16)
        assert torch.isinf(bias_a[1]).any() and not torch.isinf(bias_a[0]).any()
        assert torch.equal(attn(x), y1)
    # with gradients on, the reference runs and the bias carries the table's gradient
    attn(x).pow(2).sum().backward()
    assert attn.bias_table.grad is not None and attn.bias_table.grad.abs().sum() > 0
    # an in-place change of the table (optimiser step, EMA through .data) is seen
    with torch.no_grad():
        attn.bias_table.mul_(-2.0).add_(torch.randn_like(attn.bias_table))
        y2 = attn(x)
        ref2 = WindowAttention.forward(attn, x)
        assert engine.attn_bias(attn, torch.float32) is not bias_a
    assert (y2 - y1).abs().max() > 1e-3
    assert_close_to(y2, ref2)
    # a bias cached under inference mode does not break later no_grad / autograd use
    with torch.inference_mode():
        y3 = attn(x)
    with torch.no_grad():
        assert torch.equal(attn(x), y3)
    attn.zero_grad()
    attn(x).sum().backward()
    assert attn.bias_table.grad.abs().sum() > 0


def test_attention_bias_cache_sees_data_writes_deepcopies_and_assign_loads():
    attn = _shifted_attention()
    x = torch.randn(2, 64, 12)
    with torch.no_grad():
        attn(x)  # fill the cache
        attn.bias_table.data.add_(torch.randn_like(attn.bias_table))
        assert_close_to(attn(x), WindowAttention.forward(attn, x))
        twin = copy.deepcopy(attn)
        twin.bias_table.mul_(10.0)
        assert_close_to(twin(x), WindowAttention.forward(twin, x))
        state = {k: v.clone() for k, v in attn.state_dict().items()}
        state["bias_table"] = torch.randn_like(state["bias_table"])
        attn.load_state_dict(state, assign=True)
        assert_close_to(attn(x), WindowAttention.forward(attn, x))


# ---------------------------------------------------------------------------- 6. whole models
def _model(preset: str, seed: int, **overrides) -> TransMRSR:
    torch.manual_seed(seed)
    cfg = TransMRSRConfig.from_preset(preset, **overrides)
    model = randomise_(TransMRSR(cfg), seed).eval()
    g = torch.Generator().manual_seed(seed + 1)
    model.truncation.set_centroids(torch.randn(cfg.num_centroids, cfg.style_dim, generator=g) * 2)
    return model


def _input(batch: int, size: int, seed: int = 4) -> torch.Tensor:
    return torch.rand(batch, 1, size, size, generator=torch.Generator().manual_seed(seed))


WHOLE = {  # preset, overrides, batch, chunk tokens
    "tiny-b1": ("tiny", {}, 1, 40),
    "tiny-b2": ("tiny", {}, 2, 40),
    "tiny-b3-one-pass": ("tiny", {}, 3, 4096),
    "small-64-b2": ("small", {"img_size": 64}, 2, 256),
    "small-256-b1": ("small", {}, 1, 4096),  # the real chunk size: the 256² layers are 16 chunks
}


@pytest.mark.parametrize("case", sorted(WHOLE))
def test_whole_model_engine_matches_the_reference(monkeypatch, spies, case):
    """The engine's output equals the float32 reference's up to float rounding: it is no farther
    (x1.5) from the float64 reference than the float32 reference is, and within 1e-5 of the
    output's scale of the float32 reference (5e-5 for the deep 256² ``small``, where the float32
    reference itself is about 1.8e-5 off the float64 one)."""
    preset, overrides, batch, chunk = WHOLE[case]
    chunks(monkeypatch, chunk)
    model = _model(preset, seed=3, **overrides)
    x = _input(batch, model.config.img_size)
    with torch.no_grad():
        ref64 = copy.deepcopy(model).double()(x.double())
    ref, got = engine_vs_reference(model, x)
    assert got.shape == ref.shape == x.shape
    assert (ref - x).abs().max() > 1e-3  # a residual that is not negligible
    err_ref, err_engine = ((y.double() - ref64).abs().max().item() for y in (ref, got))
    assert err_engine <= 1.5 * err_ref + 1e-6, (err_engine, err_ref)
    assert_close_to(got, ref, 5e-5 if model.config.img_size == 256 else 1e-5)
    every = {"conv_stack", "residual_block", "encoder_level", "swin_layer", "patch_merging", "cwss", "style_block"}
    every |= {"adain_modulation", "window_attention", "mlp", "bilinear_upsample", "onednn_linear", "onednn_conv"}
    assert every <= {k for k, v in spies.items() if v}, sorted(every - set(spies))
    chunked = spies["_attention_chunked"] and spies["_mlp_chunked"]
    assert chunked if chunk < 4096 or model.config.img_size == 256 else not chunked


def test_the_engine_steps_aside_for_autograd_training_and_other_dtypes(monkeypatch, spies):
    """An accelerated model under autograd, in training, under bf16 autocast, in float64, while
    compiling or with the engine switched off runs the reference: no fast function is called,
    and outputs and gradients are the reference's, bit for bit where the maths is the same."""
    chunks(monkeypatch, 40)
    model = _model("tiny", seed=6, drop_path=0.1)
    ref_model = engine.as_reference(copy.deepcopy(model))
    x = _input(2, ref_model.config.img_size)

    def fast_calls() -> int:
        return sum(spies[f] for f in FAST)

    # autograd (eval mode): same output and same gradients as the reference model
    for m in (ref_model, model):
        m.zero_grad()
        m(x, phi=0.7).square().mean().backward()
    assert fast_calls() == 0
    for (n, p), (_, q) in zip(ref_model.named_parameters(), model.named_parameters()):
        assert torch.equal(p.grad, q.grad), n

    # a training step (drop path on): the reference's random draws and values
    ref_model.train()
    model.train()
    outs = []
    for m in (ref_model, model):
        torch.manual_seed(11)
        outs.append(m(x, phi=0.7))
    assert torch.equal(outs[0], outs[1]) and fast_calls() == 0
    # no_grad in training mode: the Swin layers' drop path still runs, through the reference
    with torch.no_grad():
        torch.manual_seed(12)
        a = model(x)
        torch.manual_seed(13)
        b = model(x)
    assert (a - b).abs().max() > 0 and spies["swin_layer"] and spies["style_block"]
    ref_model.eval()
    model.eval()
    spies.clear()

    with torch.inference_mode():
        ref = ref_model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = model(x)
        assert fast_calls() == 0
        err = (half.float() - ref).abs().max().item()
        assert err < 0.05 * max((ref - x).abs().max().item(), 1e-3), err
        with monkeypatch.context() as mp:
            mp.setattr(engine, "ENABLED", False)
            assert torch.equal(model(x), ref) and fast_calls() == 0
        with monkeypatch.context() as mp:
            mp.setattr(torch.compiler, "is_compiling", lambda: True)
            assert torch.equal(model(x), ref) and fast_calls() == 0
        m64 = engine.accelerate_for_cpu(copy.deepcopy(ref_model).double())
        y64 = m64(x.double())
        assert fast_calls() == 0
        assert_close_to(y64.float(), ref)
        assert_close_to(model(x), ref) and fast_calls() > 0  # and the engine is still there


def test_engaged_only_for_cpu_float32_without_gradients():
    """The engine never claims a non-CPU tensor (a meta tensor here: no GPU needed), another
    dtype, or a call with gradients on."""
    w = torch.empty(4, 4)
    assert engine.engaged(torch.empty(2, 4), w) is False  # gradients are on here
    with torch.no_grad():
        assert engine.engaged(torch.empty(2, 4), w)
        assert not engine.engaged(torch.empty(2, 4, device="meta"), w)
        assert not engine.engaged(torch.empty(2, 4, dtype=torch.bfloat16), w)
        assert not engine.engaged(torch.empty(2, 4), w.double())


def test_generator_sampling_matches_the_reference(monkeypatch, spies):
    """The stage-1 generator (its StyleSwin blocks and upsampling) through the engine, as
    ``train-gan`` samples it without gradients."""
    from transmrsr import StyleSwinGenerator

    chunks(monkeypatch, 64)
    torch.manual_seed(7)
    gen = randomise_(StyleSwinGenerator(TransMRSRConfig.from_preset("tiny")), 7).eval()
    z = torch.randn(2, gen.config.style_dim)
    ref, got = engine_vs_reference(gen, z)
    assert_close_to(got, ref)
    assert spies["style_block"] and spies["bilinear_upsample"] and spies["_attention_chunked"]
    assert math.isfinite(got.abs().max().item())
