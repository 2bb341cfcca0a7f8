"""Behavioural tests of the TransMRSR network (``transmrsr.models``).

Everything runs on the CPU. Only the ``tiny`` preset is used for the heavier checks; the
``small`` and ``paper`` presets each get exactly one forward pass (batch 1, inference mode).
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from transmrsr import Discriminator, StyleSwinGenerator, TransMRSR, TransMRSRConfig
from transmrsr.models.swin import WindowAttention
from transmrsr.models.transmrsr import ChannelWiseScaleShift
from transmrsr.models.truncation import LatentTruncation, fit_centroids, sample_mapping_latents


# ---------------------------------------------------------------------------- helpers
def tiny_cfg(**overrides) -> TransMRSRConfig:
    return TransMRSRConfig.from_preset("tiny", **overrides)


def make_model(seed: int = 0, **overrides) -> TransMRSR:
    torch.manual_seed(seed)
    return TransMRSR(tiny_cfg(**overrides)).eval()


def random_input(batch: int, size: int, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 1, size, size, generator=gen)


def random_centroids(cfg: TransMRSRConfig, seed: int = 2, scale: float = 2.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(cfg.num_centroids, cfg.style_dim, generator=gen) * scale


def assert_all_params_have_grad(module: torch.nn.Module, what: str) -> None:
    params = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    assert params, f"{what} has no trainable parameters"
    missing = [n for n, p in params if p.grad is None]
    assert not missing, f"{what}: parameters without gradient: {missing}"
    nonfinite = [n for n, p in params if not torch.isfinite(p.grad).all()]
    assert not nonfinite, f"{what}: non-finite gradients: {nonfinite}"
    zero = [n for n, p in params if not p.grad.abs().gt(0).any()]
    assert not zero, f"{what}: all-zero gradients: {zero}"


# ---------------------------------------------------------------------------- 1. shapes per preset
@pytest.mark.parametrize("batch", [1, 3])
def test_tiny_forward_shape_and_finite(batch):
    model = make_model()
    s = model.config.img_size
    assert s == 32
    x = random_input(batch, s)
    with torch.no_grad():
        y = model(x, phi=0.5)
    assert y.shape == (batch, 1, s, s)
    assert y.dtype == x.dtype
    assert torch.isfinite(y).all()
    # the residual is added to the input, so the (near-identity) untrained model stays close to it
    assert not torch.equal(y, x)


def test_small_forward_shape_and_finite():
    cfg = TransMRSRConfig.from_preset("small")
    assert cfg.img_size == 256 and cfg.num_latents == 14
    torch.manual_seed(0)
    model = TransMRSR(cfg).eval()
    x = random_input(1, cfg.img_size)
    with torch.inference_mode():
        y = model(x, phi=0.5)
    assert y.shape == (1, 1, 256, 256)
    assert torch.isfinite(y).all()


def test_paper_preset_size_latents_and_forward():
    cfg = TransMRSRConfig.from_preset("paper")
    assert cfg.img_size == 256
    assert cfg.num_latents == 14
    assert cfg.style_dim == 512
    torch.manual_seed(0)
    model = TransMRSR(cfg).eval()
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == 160_841_215
    assert model.num_parameters() == n_params

    captured = {}
    handle = model.latent_head.register_forward_hook(lambda mod, inp, out: captured.__setitem__("latents", out))
    x = random_input(1, cfg.img_size)
    try:
        with torch.inference_mode():  # the only paper-size forward in this file
            y = model(x, phi=0.5)
    finally:
        handle.remove()
    assert captured["latents"].shape == (1, 14, 512)
    assert torch.isfinite(captured["latents"]).all()
    assert y.shape == (1, 1, 256, 256)
    assert torch.isfinite(y).all()


# ---------------------------------------------------------------------------- 2. input validation
@pytest.mark.parametrize(
    "shape",
    [(2, 32, 32), (2, 2, 32, 32), (2, 1, 16, 16), (2, 1, 32, 33), (1, 1, 1, 32, 32), (32, 32)],
)
def test_wrong_input_shape_raises_helpful_value_error(shape):
    model = make_model()
    with pytest.raises(ValueError) as info:
        model(torch.rand(*shape))
    msg = str(info.value)
    assert "(B, 1, 32, 32)" in msg  # says what is expected
    assert str(tuple(shape)) in msg  # and what it got
    assert "img_size" in msg  # and how to fix it


# ---------------------------------------------------------------------------- 3. ablation switches
def _decoder_layer_inputs(model: TransMRSR, latents, feats):
    """Run ``model.decode`` and record the input and output of every decoder layer."""
    inputs, outputs = [], []
    hooks = []
    for layer in model.decoder.layers:
        hooks.append(layer.register_forward_pre_hook(lambda mod, args: inputs.append(args[0].detach().clone())))
        hooks.append(layer.register_forward_hook(lambda mod, args, out: outputs.append(out.detach().clone())))
    try:
        out = model.decode(latents, feats)
    finally:
        for h in hooks:
            h.remove()
    return out, inputs, outputs


def _reference_cwss(module: ChannelWiseScaleShift, feat: torch.Tensor):
    """alpha, beta of paper eq. 6 written out with F.conv2d from the module's own weights."""

    def branch(seq):
        c1, _, c2 = seq
        f = feat.permute(0, 3, 1, 2)
        h = F.conv2d(f, c1.weight / math.sqrt(c1.weight[0].numel()), c1.bias, padding=1)
        h = F.leaky_relu(h, 0.2) * math.sqrt(2.0)
        h = F.conv2d(h, c2.weight / math.sqrt(c2.weight[0].numel()), c2.bias, padding=1)
        return h.flatten(2).transpose(1, 2)  # (B, h*w, C)

    return branch(module.scale), branch(module.shift)


def test_cwss_off_removes_modules_and_parameters():
    on, off = make_model(use_cwss=True), make_model(use_cwss=False)
    assert off.cwss is None
    assert not any(isinstance(m, ChannelWiseScaleShift) for m in off.modules())
    assert on.cwss is not None and len(on.cwss) == on.config.num_dec_layers - 1
    n_cwss = sum(p.numel() for p in on.cwss.parameters())
    assert n_cwss > 0
    assert off.num_parameters() == on.num_parameters() - n_cwss


def test_cwss_modulates_decoder_input_from_matching_encoder_resolution():
    model = make_model(use_cwss=True)
    cfg = model.config
    x = random_input(2, cfg.img_size)
    with torch.no_grad():
        _, feats, latents = model.encode(x)
        _, inputs, outputs = _decoder_layer_inputs(model, latents, feats)
    n = cfg.num_dec_layers
    assert len(inputs) == n
    for l in range(n):
        res = cfg.dec_resolutions[l]
        prev = model.decoder.const.expand(2, -1, -1) if l == 0 else outputs[l - 1]
        assert prev.shape == (2, res * res, cfg.dec_channels[l])
        if l == n - 1:  # the full-resolution layer is not modulated
            torch.testing.assert_close(inputs[l], prev, rtol=0, atol=0)
            continue
        # the encoder output at the same resolution conditions this layer
        (feat,) = [f for f in feats if f.shape[1] == res]
        with torch.no_grad():
            alpha, beta = _reference_cwss(model.cwss[l], feat)
        half = cfg.dec_channels[l] // 2
        expected = torch.cat([prev[..., :half], alpha * prev[..., half:] + beta], dim=-1)
        torch.testing.assert_close(inputs[l], expected, rtol=1e-5, atol=1e-5)
        assert not torch.allclose(inputs[l], prev)  # the modulation actually changed something


def test_decode_depends_on_encoder_features_only_with_cwss():
    x = random_input(2, 32)
    gen = torch.Generator().manual_seed(5)
    results = {}
    for use_cwss in (True, False):
        model = make_model(use_cwss=use_cwss)
        with torch.no_grad():
            _, feats, latents = model.encode(x)
            other = [f + torch.randn(f.shape, generator=gen) for f in feats]
            a = model.decode(latents, feats)
            b = model.decode(latents, other)
        assert a.shape == (2, model.config.shallow_dim, 32, 32)
        results[use_cwss] = (a, b)
        if not use_cwss:
            # without CWSS the decoder input does not come from the features at all
            _, inputs, _ = _decoder_layer_inputs(model, latents, feats)
            torch.testing.assert_close(inputs[0], model.decoder.const.expand(2, -1, -1), rtol=0, atol=0)
    a, b = results[True]
    assert (a - b).abs().max() > 1e-3
    a, b = results[False]
    assert torch.equal(a, b)


@pytest.mark.parametrize("use_skip", [True, False])
def test_skip_connection_feeds_reconstruction(use_skip):
    model = make_model(use_skip=use_skip)
    x = random_input(2, 32)
    recon_in = []
    handle = model.recon.register_forward_pre_hook(lambda mod, args: recon_in.append(args[0].detach().clone()))
    try:
        with torch.no_grad():
            y = model(x, phi=0.5)
    finally:
        handle.remove()
    with torch.no_grad():
        shallow, feats, latents = model.encode(x)
        deep = model.decode(model.truncate(latents, 0.5), feats)
        expected_in = shallow + deep if use_skip else deep
        expected_out = x + model.recon_out(model.recon(expected_in))
    assert len(recon_in) == 1
    assert not torch.allclose(shallow + deep, deep)  # F_s is not negligible
    torch.testing.assert_close(recon_in[0], expected_in, rtol=0, atol=1e-6)
    torch.testing.assert_close(y, expected_out, rtol=0, atol=1e-6)


def test_skip_switch_changes_output_with_same_weights():
    with_skip = make_model(use_skip=True)
    without = make_model(use_skip=False)
    without.load_state_dict(with_skip.state_dict())
    x = random_input(2, 32)
    with torch.no_grad():
        assert (with_skip(x) - without(x)).abs().max() > 1e-4


def test_sdt_off_ignores_phi_and_sdt_on_uses_it():
    off = make_model(use_sdt=False)
    on = make_model(use_sdt=True)
    on.load_state_dict(off.state_dict())
    centroids = random_centroids(off.config)
    off.truncation.set_centroids(centroids)
    on.truncation.set_centroids(centroids)
    x = random_input(2, 32)
    with torch.no_grad():
        outs_off = [off(x, phi=p) for p in (0.0, 0.3, 1.0)]
        outs_off.append(off(x))  # config.phi
        outs_off.append(off(x, phi=torch.tensor([0.0, 0.7])))
        out_on0, out_on1 = on(x, phi=0.0), on(x, phi=1.0)
    for out in outs_off[1:]:
        assert torch.equal(out, outs_off[0])
    assert (out_on0 - out_on1).abs().max() > 1e-4
    torch.testing.assert_close(out_on1, outs_off[0], rtol=0, atol=0)


@pytest.mark.parametrize("use_gp", [True, False])
def test_load_generative_prior(use_gp):
    model = make_model(seed=0, use_generative_prior=use_gp)
    cfg = model.config
    torch.manual_seed(123)
    gen = StyleSwinGenerator(cfg)
    centroids = random_centroids(cfg, seed=9)
    gen.truncation.set_centroids(centroids)

    gen_state = gen.synthesis.state_dict()
    before = {k: v.clone() for k, v in model.decoder.state_dict().items()}
    encoder_before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    assert set(before) == set(gen_state)
    assert any(not torch.equal(before[k], gen_state[k]) for k in before)  # really different weights
    assert not model.truncation.is_fitted

    copied = model.load_generative_prior(gen)

    assert copied is use_gp
    after = model.decoder.state_dict()
    if use_gp:
        for k, v in after.items():
            assert torch.equal(v, gen_state[k]), k
        # a copy, not shared storage: training the generator further leaves the model alone
        with torch.no_grad():
            gen.synthesis.const.add_(1.0)
        assert not torch.equal(model.decoder.const, gen.synthesis.const)
    else:
        for k, v in after.items():
            assert torch.equal(v, before[k]), k
    for k, v in model.encoder.state_dict().items():
        assert torch.equal(v, encoder_before[k]), k
    # the centroids are the prior's: taken with it, left out without it (w/o GP has no SDT)
    assert model.truncation.is_fitted is use_gp
    if use_gp:
        torch.testing.assert_close(model.truncation.centroids, centroids, rtol=0, atol=0)


def test_load_generative_prior_keeps_unfitted_truncation_and_rejects_mismatch():
    model = make_model()
    torch.manual_seed(3)
    gen = StyleSwinGenerator(tiny_cfg())
    assert model.load_generative_prior(gen) is True
    assert not model.truncation.is_fitted
    other = StyleSwinGenerator(tiny_cfg(dec_depth=1))
    with pytest.raises(ValueError):
        model.load_generative_prior(other)


# ---------------------------------------------------------------------------- 4. truncation module
# three 2-D centroids at known points
_A, _B, _C = (0.0, 0.0), (4.0, 0.0), (-10.0, 0.0)
# latents: near A, far from A but nearest to B, near C; each one's farthest centroid differs
_LATENTS = [(0.5, 0.2), (3.0, 1.0), (-8.0, 0.5)]
_NEAREST = [_A, _B, _C]
_FARTHEST = [_C, _C, _B]


def _fitted_truncation() -> LatentTruncation:
    trunc = LatentTruncation(3, 2)
    trunc.set_centroids(np.array([_A, _B, _C]))  # numpy is accepted too
    return trunc


def test_truncation_sanity_of_constructed_example():
    for lat, near, far in zip(_LATENTS, _NEAREST, _FARTHEST):
        d = {c: math.dist(lat, c) for c in (_A, _B, _C)}
        assert min(d, key=d.get) == near and max(d, key=d.get) == far and near != far


def test_truncation_nearest_picks_euclidean_nearest_not_farthest():
    trunc = _fitted_truncation()
    lat = torch.tensor([_LATENTS])  # (1, 3, 2)
    got = trunc.nearest(lat)
    assert got.shape == lat.shape
    torch.testing.assert_close(got, torch.tensor([_NEAREST]), rtol=0, atol=0)
    assert not torch.equal(got, torch.tensor([_FARTHEST]))
    # latent (3, 1) is 3.2 away from A but nearest to B
    torch.testing.assert_close(got[0, 1], torch.tensor(_B), rtol=0, atol=0)


def test_truncation_forward_is_linear_interpolation_to_nearest():
    trunc = _fitted_truncation()
    lat = torch.tensor([_LATENTS])
    near = torch.tensor([_NEAREST])
    torch.testing.assert_close(trunc(lat, 0.25), 0.25 * lat + 0.75 * near)
    torch.testing.assert_close(trunc(lat, 0.0), near)
    assert torch.equal(trunc(lat, 1.0), lat)
    torch.testing.assert_close(trunc(lat, torch.tensor(0.25)), 0.25 * lat + 0.75 * near)


def test_truncation_per_sample_phi():
    trunc = _fitted_truncation()
    lat = torch.tensor([_LATENTS, _LATENTS[::-1], _LATENTS[1:] + _LATENTS[:1]])  # (3, 3, 2)
    near = trunc.nearest(lat)
    phi = torch.tensor([0.0, 0.5, 1.0])
    out = trunc(lat, phi)
    assert out.shape == lat.shape
    for i in range(3):
        p = float(phi[i])
        torch.testing.assert_close(out[i], p * lat[i] + (1 - p) * near[i])
    torch.testing.assert_close(out[2], lat[2])
    with pytest.raises(ValueError, match="phi"):
        trunc(lat, torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match="phi"):
        trunc(lat, torch.full((3, 1), 0.5))


def test_truncation_unfitted_is_identity():
    trunc = LatentTruncation(3, 2)
    assert not trunc.is_fitted
    lat = torch.tensor([_LATENTS])
    for phi in (0.0, 0.25, torch.tensor([0.5])):
        assert torch.equal(trunc(lat, phi), lat)


def test_truncation_set_centroids_validation_and_state():
    trunc = LatentTruncation(3, 2)
    for bad in (torch.zeros(2, 2), torch.zeros(3, 3), torch.zeros(6), torch.zeros(1, 3, 2)):
        with pytest.raises(ValueError, match="shape"):
            trunc.set_centroids(bad)
    with pytest.raises(ValueError):
        trunc.set_centroids(torch.tensor([_A, _B, (float("nan"), 0.0)]))
    assert not trunc.is_fitted  # failed calls leave it unfitted
    trunc.set_centroids(torch.tensor([_A, _B, _C], dtype=torch.float64))
    assert trunc.is_fitted and trunc.centroids.dtype == torch.float32
    # centroids are buffers saved with the weights, not trainable parameters
    assert list(trunc.parameters()) == []
    state = trunc.state_dict()
    assert set(state) == {"centroids", "fitted"}
    fresh = LatentTruncation(3, 2)
    fresh.load_state_dict(state)
    assert fresh.is_fitted and torch.equal(fresh.centroids, trunc.centroids)


# ---------------------------------------------------------------------------- 5. truncation in the model
def test_model_phi_one_equals_no_truncation_and_phi_matters_once_fitted():
    model = make_model()
    no_sdt = make_model(use_sdt=False)
    no_sdt.load_state_dict(model.state_dict())
    x = random_input(3, 32)
    with torch.no_grad():
        before = model(x, phi=0.0)  # unfitted: identity for any phi
        reference = no_sdt(x)
        assert torch.equal(before, reference)
        model.truncation.set_centroids(random_centroids(model.config))
        out1 = model(x, phi=1.0)
        out0 = model(x, phi=0.0)
        out_t1 = model(x, phi=torch.ones(3))
        out_default = model(x)
        out_cfg = model(x, phi=model.config.phi)
    assert torch.equal(out1, reference)
    torch.testing.assert_close(out_t1, reference, rtol=0, atol=1e-6)
    assert (out0 - out1).abs().max() > 1e-4
    assert torch.equal(out_default, out_cfg)  # phi=None means config.phi
    assert not torch.allclose(out_default, out1)


def test_model_per_sample_phi_matches_single_sample_runs():
    model = make_model()
    model.truncation.set_centroids(random_centroids(model.config))
    x = random_input(3, 32)
    phi = torch.tensor([0.0, 0.4, 1.0])
    with torch.no_grad():
        out = model(x, phi=phi)
        singles = [model(x[i : i + 1], phi=float(phi[i])) for i in range(3)]
        with pytest.raises(ValueError):
            model(x, phi=torch.tensor([0.5, 0.5]))
    for i in range(3):
        torch.testing.assert_close(out[i : i + 1], singles[i], rtol=0, atol=1e-5)
    assert not torch.allclose(singles[0], model(x[:1], phi=1.0).detach())


# ---------------------------------------------------------------------------- 6. centroids
def test_fit_centroids_recovers_blob_centres():
    rng = np.random.default_rng(0)
    dim, k = 6, 4
    centres = rng.normal(size=(k, dim)) * 10.0
    assert min(np.linalg.norm(a - b) for i, a in enumerate(centres) for b in centres[i + 1 :]) > 5.0
    points = np.concatenate([c + 0.05 * rng.normal(size=(150, dim)) for c in centres])
    rng.shuffle(points)
    fitted = fit_centroids(torch.from_numpy(points).float(), k)
    assert isinstance(fitted, torch.Tensor) and fitted.shape == (k, dim) and fitted.dtype == torch.float32
    dist = torch.cdist(torch.from_numpy(centres).float(), fitted)  # (true, fitted)
    match = dist.argmin(dim=1)
    assert sorted(match.tolist()) == list(range(k))  # a permutation
    assert dist.min(dim=1).values.max() < 0.05
    # numpy input works as well and the result can be stored in a truncation module
    fitted_np = fit_centroids(points, k)
    assert fitted_np.shape == (k, dim)
    trunc = LatentTruncation(k, dim)
    trunc.set_centroids(fitted)
    assert trunc.is_fitted
    with pytest.raises(ValueError):
        fit_centroids(points[:3], k)


def test_sample_mapping_latents_shape_and_determinism():
    cfg = tiny_cfg()
    torch.manual_seed(0)
    gen = StyleSwinGenerator(cfg)
    w = sample_mapping_latents(gen.mapping, 50, cfg.style_dim, seed=7)
    assert w.shape == (50, cfg.style_dim) and w.dtype == torch.float32
    assert torch.isfinite(w).all()
    assert torch.equal(w, sample_mapping_latents(gen.mapping, 50, cfg.style_dim, seed=7))
    assert not torch.allclose(w, sample_mapping_latents(gen.mapping, 50, cfg.style_dim, seed=8))
    # batching does not change the samples
    torch.testing.assert_close(w, sample_mapping_latents(gen.mapping, 50, cfg.style_dim, batch_size=16, seed=7))
    assert len(torch.unique(w, dim=0)) == 50
    # the full SDT pipeline: sample, cluster, install
    centroids = fit_centroids(w, cfg.num_centroids)
    gen.truncation.set_centroids(centroids)
    assert gen.truncation.is_fitted


# ---------------------------------------------------------------------------- 7. gradients
@pytest.mark.parametrize("fitted", [False, True])
def test_every_model_parameter_gets_gradient(fitted):
    model = make_model()
    if fitted:
        model.truncation.set_centroids(random_centroids(model.config))
    model.train()
    x = random_input(2, 32)
    target = random_input(2, 32, seed=11)
    y = model(x, phi=0.5)
    F.l1_loss(y, target).backward()
    assert_all_params_have_grad(model, f"TransMRSR (fitted={fitted})")


def test_generator_and_discriminator_stage1_gradients():
    cfg = tiny_cfg()
    torch.manual_seed(0)
    gen, disc = StyleSwinGenerator(cfg).train(), Discriminator(cfg).train()
    assert list(gen.truncation.parameters()) == []
    assert {n for n, _ in gen.truncation.named_buffers()} == {"centroids", "fitted"}
    z = torch.randn(4, cfg.style_dim)
    image = gen(z)
    assert image.shape == (4, 1, cfg.img_size, cfg.img_size)
    assert torch.isfinite(image).all()
    logits = disc(image)
    assert logits.shape == (4, 1)
    F.softplus(-logits).mean().backward()  # non-saturating generator loss
    assert_all_params_have_grad(gen, "StyleSwinGenerator")
    assert_all_params_have_grad(disc, "Discriminator")
    # style mixing: one z per style input
    with torch.no_grad():
        mixed = gen(torch.randn(2, cfg.num_latents, cfg.style_dim))
        assert mixed.shape == (2, 1, cfg.img_size, cfg.img_size)
        assert disc(mixed).shape == (2, 1)


# ---------------------------------------------------------------------------- 8. speed
def test_tiny_forward_backward_is_fast():
    model = make_model().train()
    x = random_input(4, 32)

    def step():
        model.zero_grad(set_to_none=True)
        model(x, phi=0.5).mean().backward()

    step()  # warm-up
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    assert min(times) < 1.0, f"tiny forward+backward at batch 4 took {times}"


# ---------------------------------------------------------------------------- 9. window attention
def reference_window_attention(attn: WindowAttention, x: torch.Tensor) -> torch.Tensor:
    """Plain Swin window attention: roll, partition, softmax(q k^T / sqrt(d) + bias + mask) v,
    merge, roll back, using ``attn``'s own weights. ``x (B, H*W, C)`` -> ``(B, H*W, C)``."""
    b, length, c = x.shape
    r, w, s, heads = attn.resolution, attn.window, attn.shift, attn.heads
    d = attn.attn_dim // heads
    n = w * w
    grid = x.view(b, r, r, c)
    if s:
        grid = torch.roll(grid, shifts=(-s, -s), dims=(1, 2))
    # partition: (B, nW, N, C), windows row-major, tokens row-major inside a window
    win = grid.view(b, r // w, w, r // w, w, c).permute(0, 1, 3, 2, 4, 5).reshape(b, -1, n, c)
    qkv = F.linear(win, attn.qkv.weight, attn.qkv.bias).view(b, -1, n, heads, 3, d)
    q, k, v = (qkv[..., i, :].permute(0, 1, 3, 2, 4) for i in range(3))  # (B, nW, heads, N, d)
    logits = q @ k.transpose(-1, -2) / math.sqrt(d)
    # relative position bias
    bias = torch.empty(heads, n, n)
    for i in range(n):
        for j in range(n):
            dy, dx = i // w - j // w, i % w - j % w
            bias[:, i, j] = attn.bias_table[(dy + w - 1) * (2 * w - 1) + (dx + w - 1)]
    logits = logits + bias
    if s:
        # a token may attend to another only if, in each direction, both or neither wrapped round
        pos = torch.arange(r)
        wrapped = pos + s >= r  # rolled row/col index -> came from the opposite border
        wy = wrapped.view(r, 1).expand(r, r)
        wx = wrapped.view(1, r).expand(r, r)
        label = (wy.long() * 2 + wx.long()).view(r // w, w, r // w, w).permute(0, 2, 1, 3).reshape(-1, n)
        mask = torch.zeros(label.shape[0], n, n)
        mask[label[:, :, None] != label[:, None, :]] = float("-inf")
        logits = logits + mask[None, :, None]
    out = torch.softmax(logits, dim=-1) @ v  # (B, nW, heads, N, d)
    out = out.permute(0, 1, 3, 2, 4).reshape(b, -1, n, heads * d)
    out = F.linear(out, attn.proj.weight, attn.proj.bias)
    out = out.view(b, r // w, r // w, w, w, c).permute(0, 1, 3, 2, 4, 5).reshape(b, r, r, c)
    if s:
        out = torch.roll(out, shifts=(s, s), dims=(1, 2))
    return out.reshape(b, length, c)


def _randomised_attention(dim, attn_dim, heads, resolution, window, shift, proj_bias=True, seed=0):
    torch.manual_seed(seed)
    attn = WindowAttention(dim, attn_dim, heads, resolution, window, shift=shift, proj_bias=proj_bias)
    with torch.no_grad():  # a bias large enough that a wrong index or mask would show
        attn.bias_table.normal_(0.0, 1.0)
        attn.qkv.bias.normal_(0.0, 0.5)
    return attn


@pytest.mark.parametrize(
    "dim,attn_dim,heads,resolution,window,shift,proj_bias",
    [
        (12, 8, 2, 8, 4, 0, True),
        (12, 8, 2, 8, 4, 2, False),
        (16, 16, 4, 16, 4, 2, True),
        (8, 8, 2, 16, 8, 4, True),
        (6, 6, 3, 8, 4, 1, True),
    ],
)
def test_window_attention_matches_reference(dim, attn_dim, heads, resolution, window, shift, proj_bias):
    attn = _randomised_attention(dim, attn_dim, heads, resolution, window, shift, proj_bias)
    assert attn.shift == shift and attn.window == window
    x = torch.randn(2, resolution * resolution, dim)
    residual = torch.randn_like(x)
    with torch.no_grad():
        expected = reference_window_attention(attn, x)
        got_nograd = attn(x)
        got_res = attn(x, residual=residual)
    got_grad = attn(x)
    torch.testing.assert_close(got_nograd, expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(got_grad.detach(), expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(got_res, residual + expected, rtol=0, atol=1e-5)
    if shift:  # the mask matters: plain (unshifted) attention on the rolled map is different
        plain = _randomised_attention(dim, attn_dim, heads, resolution, window, 0, proj_bias)
        plain.load_state_dict(attn.state_dict())
        rolled = torch.roll(x.view(2, resolution, resolution, dim), (-shift, -shift), (1, 2)).reshape_as(x)
        with torch.no_grad():
            unmasked = torch.roll(
                plain(rolled).view(2, resolution, resolution, dim), (shift, shift), (1, 2)
            ).reshape_as(x)
        assert (unmasked - expected).abs().max() > 1e-3


@pytest.mark.parametrize("heads,chunked", [(4, False), (2, True)])
def test_window_attention_padded_head_width_matches_reference(monkeypatch, heads, chunked):
    """Head widths padded for a device's fused kernel (CUDA's takes multiples of 8; forced on
    the CPU here) give the same attention: zero columns add nothing, the scale is the true
    width's. Shifted windows with border groups, one pass and chunked, with gradients on."""
    padded = []
    real_pad = F.pad
    monkeypatch.setattr(F, "pad", lambda t, p, *a, **k: padded.append(t.shape[-1] + p[1]) or real_pad(t, p, *a, **k))
    monkeypatch.setattr(WindowAttention, "HEAD_ALIGN", {"cpu": 8})
    if chunked:
        monkeypatch.setattr(WindowAttention, "CPU_CHUNK", 40)
    torch.manual_seed(5)
    attn = WindowAttention(16, 12, heads, 16, 4, shift=2)  # head width 3 or 6: padded to 8
    x = torch.randn(2, 256, 16, requires_grad=True)
    ref = reference_window_attention(attn, x)
    out = attn(x)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)
    out.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    with torch.inference_mode():
        torch.testing.assert_close(attn(x.detach()), ref.detach(), rtol=0, atol=1e-5)
    assert padded and set(padded) == {8}  # q, k and v went to the kernel 8 wide


def test_window_attention_single_window_drops_shift():
    # the map is one window: window clipped to the resolution, no shift, full attention
    attn = _randomised_attention(8, 8, 2, 4, 8, 4)
    assert attn.window == 4 and attn.shift == 0
    x = torch.randn(2, 16, 8)
    with torch.no_grad():
        torch.testing.assert_close(attn(x), reference_window_attention(attn, x), rtol=0, atol=1e-5)


def test_window_attention_mask_cache():
    attn = _randomised_attention(12, 8, 2, 8, 4, 2).eval()
    x = torch.randn(2, 64, 12)
    with torch.no_grad():
        y1 = attn(x)
        mask_a = attn.attn_bias(torch.float32)
        mask_b = attn.attn_bias(torch.float32)
        assert mask_a is mask_b  # cached while gradients are off
        # the bias is shared by all windows; only the 3 border windows of a 2x2 grid carry a mask
        assert mask_a[0].shape == (1, 2, 16, 16) and mask_a[1].shape == (1, 3, 2, 16, 16)
        assert attn.n_mixed == 3 and torch.isinf(mask_a[1]).any() and not torch.isinf(mask_a[0]).any()
        y1_again = attn(x)
    assert torch.equal(y1, y1_again)
    # with gradients on, the mask is rebuilt (so that it carries the bias table's gradient)
    mask_grad = attn.attn_bias(torch.float32)
    assert mask_grad is not mask_a and mask_grad[0].requires_grad and mask_grad[1].requires_grad
    attn(x).pow(2).sum().backward()
    assert attn.bias_table.grad is not None and attn.bias_table.grad.abs().sum() > 0

    # an in-place change of the bias table invalidates the cached mask
    with torch.no_grad():
        attn.bias_table.mul_(-2.0).add_(torch.randn_like(attn.bias_table))
        y2 = attn(x)
        expected2 = reference_window_attention(attn, x)
    assert (y2 - y1).abs().max() > 1e-3
    torch.testing.assert_close(y2, expected2, rtol=0, atol=1e-5)
    with torch.no_grad():
        assert attn.attn_bias(torch.float32) is not mask_a

    # a mask cached under inference mode does not break later no_grad / autograd use
    with torch.inference_mode():
        y3 = attn(x)
    with torch.no_grad():
        torch.testing.assert_close(attn(x), y3, rtol=0, atol=0)
    attn.zero_grad()
    attn(x).sum().backward()
    assert attn.bias_table.grad.abs().sum() > 0


def test_window_attention_mask_cache_sees_data_writes_deepcopy_and_assign_loads():
    """EMA-style ``.data`` updates, deep copies and ``load_state_dict(assign=True)`` do not
    bump a parameter's version counter in a useful way; the cache must still see them."""
    import copy

    attn = _randomised_attention(12, 8, 2, 8, 4, 2).eval()
    x = torch.randn(2, 64, 12)
    with torch.no_grad():
        attn(x)  # fill the cache
        attn.bias_table.data.add_(torch.randn_like(attn.bias_table))
        torch.testing.assert_close(attn(x), reference_window_attention(attn, x), rtol=0, atol=1e-5)

        attn(x)
        twin = copy.deepcopy(attn)
        twin.bias_table.mul_(10.0)
        torch.testing.assert_close(twin(x), reference_window_attention(twin, x), rtol=0, atol=1e-5)

        attn(x)
        state = {k: v.clone() for k, v in attn.state_dict().items()}
        state["bias_table"] = torch.randn_like(state["bias_table"])
        attn.load_state_dict(state, assign=True)
        torch.testing.assert_close(attn(x), reference_window_attention(attn, x), rtol=0, atol=1e-5)


def test_fused_cpu_linear_and_chunked_mlp_match_the_plain_ops(monkeypatch):
    """The CPU inference fast paths (oneDNN linear with fused GELU, the MLP over token chunks
    with the residual added in place) give the values of the plain autograd ops."""
    from transmrsr.models import layers

    torch.manual_seed(0)
    mlp = layers.Mlp(12, 40)
    monkeypatch.setattr(layers.Mlp, "CPU_CHUNK", 32)  # 2 x 3 x 50 = 300 tokens: 10 chunks, the last partial
    x, res = torch.randn(2, 3, 50, 12), torch.randn(2, 3, 50, 12)
    expected = res + mlp.fc2(F.gelu(mlp.fc1(x)))
    with torch.inference_mode():
        got = mlp(x, residual=res)
        got_plain = mlp(x)
        fused = layers.linear(x, mlp.fc1, "gelu")
    torch.testing.assert_close(got, expected.detach(), rtol=0, atol=1e-5)
    torch.testing.assert_close(got_plain, (expected - res).detach(), rtol=0, atol=1e-5)
    torch.testing.assert_close(fused, F.gelu(mlp.fc1(x)).detach(), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="activation"):
        layers.linear(x, mlp.fc1, "relu")
    # with gradients on, the plain ops run and gradients flow
    mlp(x, residual=res).sum().backward()
    assert mlp.fc1.weight.grad is not None and mlp.fc1.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("batch", [1, 3])
def test_chunked_attention_and_per_slice_norms_match_one_pass(monkeypatch, batch):
    """The CPU inference path over window groups (shifted windows whose border windows fall in
    several groups, a LayerNorm or a per-slice AdaIN applied inside) equals the one-pass
    autograd path; so does the MLP chunked over tokens with a per-slice norm."""
    from transmrsr.models import layers
    from transmrsr.models.styleswin import AdaptiveInstanceNorm

    torch.manual_seed(0)
    attn = WindowAttention(16, 16, 2, 32, 4, shift=2).eval()  # 64 windows of 16 tokens, 15 of them border windows
    ln, ada, mlp = torch.nn.LayerNorm(16), AdaptiveInstanceNorm(16, 8), layers.Mlp(16, 32)
    monkeypatch.setattr(WindowAttention, "CPU_CHUNK", 80)  # 80 // (batch * 16) windows per group
    monkeypatch.setattr(layers.Mlp, "CPU_CHUNK", 100)
    x, style = torch.randn(batch, 32 * 32, 16), torch.randn(batch, 8)
    with torch.enable_grad():  # the reference: plain ops, norms applied to the whole map first
        ref_ln = (x + attn(ln(x))).detach()
        y = ada(x, style)
        ref_ada = (x + attn(y)).detach()
        ref_mlp = (x + mlp(y)).detach()
    with torch.inference_mode():
        got_ln = attn(x, residual=x, norm=ln)
        modulate = ada.modulation(x, style)
        got_ada = attn(x, residual=x, norm=modulate)
        got_mlp = mlp(x, residual=x, norm=modulate)
    for got, ref in ((got_ln, ref_ln), (got_ada, ref_ada), (got_mlp, ref_mlp)):
        torch.testing.assert_close(got, ref, rtol=0, atol=2e-5)
    # one slice of the batch alone gives the same values (the per-slice norm did not mix slices)
    with torch.inference_mode():
        alone = attn(x[-1:], residual=x[-1:], norm=ada.modulation(x[-1:], style[-1:]))
    torch.testing.assert_close(alone, got_ada[-1:], rtol=0, atol=2e-5)


@pytest.mark.parametrize("batch", [1, 2])
def test_chunked_paths_add_in_place_only_when_asked(monkeypatch, batch):
    """``inplace=True`` adds the attention / MLP output into the residual's own memory (which may
    be the input itself) with the values of the one-pass path; without it the input and the
    residual are left untouched. A Swin layer and a StyleSwin block keep their input intact."""
    from transmrsr.models import layers
    from transmrsr.models.styleswin import StyleSwinBlock
    from transmrsr.models.swin import SwinLayer

    torch.manual_seed(1)
    monkeypatch.setattr(WindowAttention, "CPU_CHUNK", 48)
    monkeypatch.setattr(layers.Mlp, "CPU_CHUNK", 64)
    attn = WindowAttention(16, 8, 2, 16, 4, shift=2).eval()
    ln, mlp = torch.nn.LayerNorm(16), layers.Mlp(16, 32)
    x, other = torch.randn(batch, 256, 16), torch.randn(batch, 256, 16)
    with torch.enable_grad():
        ref_self = (x + attn(ln(x))).detach()
        ref_other = (other + attn(ln(x))).detach()
        ref_mlp = (x + mlp(ln(x))).detach()
    with torch.inference_mode():
        x0, other0 = x.clone(), other.clone()
        got = attn(x, residual=other, norm=ln)  # a new tensor
        torch.testing.assert_close(got, ref_other, rtol=0, atol=2e-5)
        assert torch.equal(x, x0) and torch.equal(other, other0)
        got = attn(x, residual=other, norm=ln, inplace=True)  # into other, reading x
        assert got.data_ptr() == other.data_ptr() and torch.equal(x, x0)
        torch.testing.assert_close(other, ref_other, rtol=0, atol=2e-5)
        y = x.clone()
        assert attn(y, residual=y, norm=ln, inplace=True).data_ptr() == y.data_ptr()  # into its own input
        torch.testing.assert_close(y, ref_self, rtol=0, atol=2e-5)
        y = x.clone()
        assert mlp(y, residual=y, norm=ln, inplace=True).data_ptr() == y.data_ptr()
        torch.testing.assert_close(y, ref_mlp, rtol=0, atol=2e-5)
        torch.testing.assert_close(mlp(x, residual=x, norm=ln), ref_mlp, rtol=0, atol=2e-5)
        assert torch.equal(x, x0)

    layer = SwinLayer(16, 2, 16, 4, 2, 2.0, 0.0).eval()
    block = StyleSwinBlock(16, 4, 16, 4, 2.0, 8).eval()
    style = torch.randn(batch, 8)
    with torch.enable_grad():  # the one-pass autograd reference
        ref_layer = layer(x).detach()
        ref_block = block(x, style).detach()
    with torch.inference_mode():
        torch.testing.assert_close(layer(x), ref_layer, rtol=0, atol=3e-5)
        torch.testing.assert_close(block(x, style), ref_block, rtol=0, atol=3e-5)
        assert torch.equal(x, x0)  # not in place unless asked
        y = x.clone()
        torch.testing.assert_close(layer(y, inplace=True), ref_layer, rtol=0, atol=3e-5)


@pytest.mark.parametrize("batch", [1, 3])
def test_chunked_upsample_and_patch_merging_match_one_pass(monkeypatch, batch):
    """StyleSwin's upsampling (norm, reduction and position term by token chunks) and the
    encoder's patch merging (by bands of output rows, the last one partial) on the CPU
    inference path give the one-pass autograd values."""
    from transmrsr.models.styleswin import BilinearUpsample
    from transmrsr.models.swin import PatchMerging

    torch.manual_seed(2)
    up, merge = BilinearUpsample(8, 4, 20), PatchMerging(8, 5)
    with torch.no_grad():
        up.alpha.fill_(0.7)  # the position term takes part
    monkeypatch.setattr(BilinearUpsample, "CPU_CHUNK", 30)  # 400 tokens per slice: chunks cross slices' rows
    monkeypatch.setattr(PatchMerging, "CPU_CHUNK", 12)  # batch 1: bands of 2, 2 and 1 output rows; batch 3: 1 row
    tokens, grid = torch.randn(batch, 100, 8), torch.randn(batch, 10, 10, 8)
    with torch.enable_grad():
        ref_up, ref_merge = up(tokens).detach(), merge(grid).detach()
    with torch.inference_mode():
        got_up, got_merge = up(tokens), merge(grid)
    assert got_up.shape == (batch, 400, 4) and got_merge.shape == (batch, 5, 5, 5)
    torch.testing.assert_close(got_up, ref_up, rtol=0, atol=1e-5)
    torch.testing.assert_close(got_merge, ref_merge, rtol=0, atol=1e-5)


@pytest.mark.parametrize("batch", [1, 2])
def test_whole_model_fast_paths_plain_inference_and_bf16_autocast_agree(monkeypatch, batch):
    """The whole network four ways on the same input: the autograd ops (reference); CPU
    inference with every chunked / in-place / fused path forced on (small chunks, so that each
    map is several chunks); inference with the fused CPU kernels off, the ops a GPU runs; and
    bf16 autocast, the dtype mix of the GPU path (its tolerance is bf16's). None of them may
    write into the input."""
    from transmrsr.models import layers, styleswin, swin

    for cls in (swin.WindowAttention, layers.Mlp, styleswin.BilinearUpsample, swin.PatchMerging):
        monkeypatch.setattr(cls, "CPU_CHUNK", 40)
    monkeypatch.setattr(styleswin.AdaptiveInstanceNorm, "STAT_CHUNK", 40)
    model = make_model(seed=3)
    model.truncation.set_centroids(random_centroids(model.config))
    x = random_input(batch, model.config.img_size, seed=4)
    x0 = x.clone()
    with torch.enable_grad():
        ref = model(x, phi=0.7).detach()
    with torch.inference_mode():
        fast = model(x, phi=0.7)
        with torch.autocast("cpu", dtype=torch.bfloat16):  # must leave the fp32-only fast paths
            half = model(x, phi=0.7)
        monkeypatch.setattr(layers, "FUSED_CPU_LINEAR", False)
        monkeypatch.setattr(layers, "FUSED_CPU_CONV", False)
        plain = model(x, phi=0.7)
    assert torch.equal(x, x0)
    torch.testing.assert_close(fast, ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(plain, ref, rtol=0, atol=1e-5)
    assert torch.isfinite(half).all() and half.shape == ref.shape
    # bf16 keeps 8 bits of mantissa: the predicted residual within a few per cent of its range
    err = (half.float() - ref).abs().max().item()
    assert err < 0.05 * max((ref - x).abs().max().item(), 1e-3), err


@pytest.mark.parametrize(
    "activation,use_residual", [("relu", False), ("leaky_relu", False), ("none", True), ("none", False)]
)
def test_fused_cpu_conv_matches_the_plain_ops(activation, use_residual):
    from transmrsr.models.layers import conv2d_same

    torch.manual_seed(0)
    x = torch.randn(2, 6, 20, 20).contiguous(memory_format=torch.channels_last)
    w, b = torch.randn(5, 6, 3, 3), torch.randn(5)
    res = torch.randn(2, 5, 20, 20).contiguous(memory_format=torch.channels_last) if use_residual else None
    y = F.conv2d(x, w, b, padding=1)
    expected = {"relu": F.relu(y), "leaky_relu": F.leaky_relu(y, 0.2)}.get(activation, y)
    if use_residual:
        expected = res + y
    with torch.inference_mode():
        got = conv2d_same(x, w, b, activation, residual=res)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    assert got.is_contiguous(memory_format=torch.channels_last)  # the token views downstream stay free
    with pytest.raises(ValueError):
        conv2d_same(x, w, b, "gelu")
    with pytest.raises(ValueError):
        conv2d_same(x, w, b, "relu", residual=torch.zeros(2, 5, 20, 20))


# ---------------------------------------------------------------------------- 8. against the authors' network
# Their code (no licence) is never part of this repository: it is read at run time from a local
# copy, found as benchmarks/speed.py finds it (``$TRANSMRSR_AUTHORS_REPO`` or its cache folder; no
# clone here), and these tests are skipped without one.
AUTHORS_SIZE = 64  # their TGP7 at a 64² canvas: every part of the paper network, 4 decoder upsamplings


@pytest.fixture(scope="module")
def authors_pair():
    """``(speed, theirs, ours, cfg, x)``: their TGP7 (perturbed random weights) and our model with
    their weights mapped by ``speed.authors_to_ours``, our own position tables kept (the tables
    their mapping returns are checked against ours, not swapped in)."""
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "speed.py"
    spec = importlib.util.spec_from_file_location("_transmrsr_speed_for_tests", path)
    speed = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = speed
    spec.loader.exec_module(speed)
    root, why = speed.find_authors_repo(None, allow_clone=False)
    if root is None:
        pytest.skip(f"the authors' code: {why}")
    torch.manual_seed(0)
    theirs = speed.build_authors_tgp7(root, size=AUTHORS_SIZE).eval()
    speed.perturb_(theirs, seed=1)  # biases, norms and the position scale alpha away from 0 / 1
    cfg = speed.config_for_authors(AUTHORS_SIZE)
    state, tables = speed.authors_to_ours(theirs, cfg)
    ours = TransMRSR(cfg).eval()
    ours.load_state_dict(state, strict=True)
    assert set(tables) == set(range(cfg.num_dec_layers - 1))
    for l, table in tables.items():
        assert torch.equal(ours.decoder.layers[l].upsample.pos, table), l
    x = torch.rand(1, 1, AUTHORS_SIZE, AUTHORS_SIZE, generator=torch.Generator().manual_seed(2))
    return speed, theirs, ours, cfg, x


def _set_centroids(speed, theirs, ours: TransMRSR, centroids: torch.Tensor) -> None:
    speed.set_authors_centroids(theirs, centroids)
    ours.truncation.set_centroids(centroids)


def test_position_tables_and_output_equal_the_authors_with_our_own_buffers(authors_pair):
    """Our decoder's own position tables are the authors' (StyleSwin's) tables in our channel
    layout, bit for bit (checked in the fixture), and with their weights our output is theirs
    (one repeated centroid, so the centroid selection is not exercised here: see the next test)."""
    speed, theirs, ours, cfg, x = authors_pair
    g = torch.Generator().manual_seed(3)
    _set_centroids(speed, theirs, ours, torch.randn(1, cfg.style_dim, generator=g).repeat(cfg.num_centroids, 1))
    with torch.no_grad():
        y_theirs = speed.AuthorsGrey(theirs)(x)
        y_ours = ours(x, phi=speed.CHECK_PHI)
    assert (y_theirs - x).abs().max() > 0.1  # a residual that is not negligible
    torch.testing.assert_close(y_ours, y_theirs, rtol=0, atol=1e-4)


def test_authors_pick_the_farthest_centroid_we_the_nearest(authors_pair, monkeypatch):
    """With distinct centroids their output is ours with the selection turned to argmax (the
    farthest centroid), and differs from ours (argmin, the nearest): the documented difference."""
    speed, theirs, ours, cfg, x = authors_pair
    g = torch.Generator().manual_seed(4)
    _set_centroids(speed, theirs, ours, torch.randn(cfg.num_centroids, cfg.style_dim, generator=g))
    with torch.no_grad():
        y_theirs = speed.AuthorsGrey(theirs)(x)
        y_nearest = ours(x, phi=speed.CHECK_PHI)

        def farthest(self, latents):
            flat = latents.reshape(-1, latents.shape[-1])
            idx = torch.cdist(flat.float(), self.centroids.float()).argmax(dim=-1)
            return self.centroids[idx].to(latents.dtype).reshape(latents.shape)

        monkeypatch.setattr(LatentTruncation, "nearest", farthest)
        y_farthest = ours(x, phi=speed.CHECK_PHI)
    torch.testing.assert_close(y_farthest, y_theirs, rtol=0, atol=1e-4)
    assert (y_nearest - y_theirs).abs().max() > 1e-3
