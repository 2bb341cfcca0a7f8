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
    with torch.no_grad():
        expected = reference_window_attention(attn, x)
        got_nograd = attn(x)
    got_grad = attn(x)
    torch.testing.assert_close(got_nograd, expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(got_grad.detach(), expected, rtol=0, atol=1e-5)
    if shift:  # the mask matters: plain (unshifted) attention on the rolled map is different
        plain = _randomised_attention(dim, attn_dim, heads, resolution, window, 0, proj_bias)
        plain.load_state_dict(attn.state_dict())
        rolled = torch.roll(x.view(2, resolution, resolution, dim), (-shift, -shift), (1, 2)).reshape_as(x)
        with torch.no_grad():
            unmasked = torch.roll(
                plain(rolled).view(2, resolution, resolution, dim), (shift, shift), (1, 2)
            ).reshape_as(x)
        assert (unmasked - expected).abs().max() > 1e-3


@pytest.mark.parametrize("heads", [4, 2])
def test_window_attention_padded_head_width_matches_reference(monkeypatch, heads):
    """Head widths padded for a device's fused kernel (CUDA's takes multiples of 8; forced on
    the CPU here) give the same attention: zero columns add nothing, the scale is the true
    width's. Shifted windows with border windows, with gradients on and off (the CPU engine's
    grouped path: tests/test_cpu_engine.py)."""
    padded = []
    real_pad = F.pad
    monkeypatch.setattr(F, "pad", lambda t, p, *a, **k: padded.append(t.shape[-1] + p[1]) or real_pad(t, p, *a, **k))
    monkeypatch.setattr(WindowAttention, "HEAD_ALIGN", {"cpu": 8})
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


def test_window_attention_gradients_reach_the_bias_table():
    attn = _randomised_attention(12, 8, 2, 8, 4, 2)
    x = torch.randn(2, 64, 12)
    attn(x).pow(2).sum().backward()
    assert attn.bias_table.grad is not None and attn.bias_table.grad.abs().sum() > 0


# The CPU inference engine (its chunked, fused and in-place paths, the attention bias cache) is
# tested against these reference modules in tests/test_cpu_engine.py.
