"""The paper's ablations as the paper means them (issue 22), and the decoder's position table.

* w/o SC (Table 3, §4.5.4): no shallow-to-deep skip and no global residual: ``y = H_rec(F_d1)``;
* w/o GP (Table 3): no pretrained decoder and no SDT: no centroids are loaded;
* w/o MREF (Table 3): CWSS off, skip and residual kept;
* frozen GP (Table 4): a ``train-sr`` step leaves the decoder's weights as the prior's and moves
  every other trained weight;
* the decoder's position table is StyleSwin's construction (written again here from its
  definition, not taken from the package), laid out in our channel order;
* the centroid selection: ours is the nearest (argmin), the authors' code the farthest (argmax).

Everything runs on the ``tiny`` preset (32² canvas) on the CPU.
"""

from __future__ import annotations

import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from transmrsr import StyleSwinGenerator, TransMRSR, TransMRSRConfig
from transmrsr.config import ConfigError, SRTrainConfig
from transmrsr.models.layers import sinusoidal_grid, styleswin_sinusoidal_grid
from transmrsr.models.styleswin import decoder_position_table
from transmrsr.training import build_sr_model, train_sr


def tiny(**overrides) -> TransMRSRConfig:
    return TransMRSRConfig.from_preset("tiny", **overrides)


def ablation_cfg(name: str | None, **extra) -> TransMRSRConfig:
    return tiny(**(SRTrainConfig.ABLATIONS[name] if name else {}), **extra)


@pytest.fixture(scope="module")
def gan_dir(tmp_path_factory) -> Path:
    """A tiny stage-1 generator (random weights, fitted centroids) saved as ``train-gan`` does."""
    torch.manual_seed(7)
    gen = StyleSwinGenerator(tiny())
    gen.truncation.set_centroids(torch.randn(gen.config.num_centroids, gen.config.style_dim) * 2)
    out = tmp_path_factory.mktemp("gan")
    gen.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """Two smooth 'heads' (an ellipsoid with texture on a black background), 32³ voxels."""
    out = tmp_path_factory.mktemp("data")
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, 32)] * 3, indexing="ij")
    for i in range(2):
        rng = np.random.default_rng(i)
        head = (x**2 / 0.8 + y**2 / 0.6 + z**2 / 0.7) < 1
        vol = head * (100 + 40 * np.sin(6 * x + i) * np.cos(5 * y) + rng.normal(0, 3, head.shape))
        nib.save(nib.Nifti1Image(vol.astype(np.float32), np.eye(4)), out / f"head{i}.nii.gz")
    return out


# ---------------------------------------------------------------------------- the ablation table
def test_ablation_table_is_the_papers():
    a = SRTrainConfig.ABLATIONS
    assert set(a) == {"no-gp", "no-sdt", "no-mref", "no-sc", "frozen-gp"}
    assert a["no-gp"] == {"use_generative_prior": False, "use_sdt": False}  # Table 3: ✗ GP, ✗ SDT
    assert a["no-sdt"] == {"use_sdt": False}
    assert a["no-mref"] == {"use_cwss": False}  # Table 3's meaning: SC (skip and residual) kept
    assert a["no-sc"] == {"use_skip": False, "use_residual": False}
    assert a["frozen-gp"] == {"freeze_prior": True}
    for name in a:
        ablation_cfg(name).validate()
    with pytest.raises(ConfigError, match="freeze_prior needs use_generative_prior"):
        tiny(freeze_prior=True, use_generative_prior=False)


def test_cli_offers_every_ablation():
    import argparse

    from transmrsr.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    ablation = next(a for a in sub.choices["train-sr"]._actions if a.dest == "ablation")
    assert set(ablation.choices) == set(SRTrainConfig.ABLATIONS)


# ---------------------------------------------------------------------------- w/o SC
def test_no_sc_learns_the_hr_image_directly():
    """w/o SC: ``y = recon_out(recon(F_d1))``: neither ``F_s`` nor ``x`` is added."""
    torch.manual_seed(0)
    model = TransMRSR(ablation_cfg("no-sc")).eval()
    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x, phi=0.5)
        shallow, feats, latents = model.encode(x)
        deep = model.decode(model.truncate(latents, 0.5), feats)
        expected = model.recon_out(model.recon(deep))
        with_residual = x + expected
        with_skip = model.recon_out(model.recon(deep + shallow))
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-6)
    assert (y - with_residual).abs().max() > 0.1  # x is really not added
    assert (y - with_skip).abs().max() > 1e-4  # F_s is really not added

    # the full model adds both, with the same weights
    full = TransMRSR(ablation_cfg(None)).eval()
    full.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(full(x, phi=0.5), x + with_skip, rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------- w/o MREF
def test_no_mref_keeps_skip_and_residual():
    """Table 3's w/o MREF drops only the encoder features into the decoder (the authors' TGP6 also
    drops the skip and the residual: docs/deviations.md)."""
    cfg = ablation_cfg("no-mref")
    assert not cfg.use_cwss and cfg.use_skip and cfg.use_residual
    torch.manual_seed(0)
    model = TransMRSR(cfg).eval()
    assert model.cwss is None
    x = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        shallow, feats, latents = model.encode(x)
        deep = model.decode(model.truncate(latents, None), feats)
        torch.testing.assert_close(model(x), x + model.recon_out(model.recon(deep + shallow)), rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------- w/o GP
def test_no_gp_takes_neither_decoder_nor_centroids(gan_dir):
    gen = StyleSwinGenerator.from_pretrained(gan_dir)
    full, loaded = build_sr_model(SRTrainConfig(preset="tiny", gan=str(gan_dir)))
    assert loaded and full.truncation.is_fitted
    torch.manual_seed(0)
    no_gp, loaded = build_sr_model(SRTrainConfig(preset="tiny", gan=str(gan_dir), ablation="no-gp"))
    assert not loaded
    assert not no_gp.config.use_generative_prior and not no_gp.config.use_sdt
    assert not no_gp.truncation.is_fitted and not no_gp.truncation.centroids.any()
    gen_sd, dec_sd = gen.synthesis.state_dict(), no_gp.decoder.state_dict()
    random_init = [k for k in gen_sd if k == "const" or k.endswith(("qkv.weight", "fc1.weight", "reduction.weight"))]
    assert random_init and all(not torch.equal(gen_sd[k], dec_sd[k]) for k in random_init)
    # no SDT: phi does nothing
    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(4))
    no_gp.eval()
    with torch.no_grad():
        assert torch.equal(no_gp(x, phi=0.0), no_gp(x, phi=1.0))


# ---------------------------------------------------------------------------- frozen GP
def _train_one_step(data_dir: Path, gan_dir: Path, out: Path, ablation: str | None) -> tuple[dict, dict]:
    """State before (the built model) and after one ``train-sr`` step."""
    opts = SRTrainConfig(
        data=str(data_dir),
        gan=str(gan_dir),
        out=str(out),
        preset="tiny",
        scale=4,
        batch_size=2,
        max_steps=1,
        perceptual=False,
        val_fraction=0.0,
        ablation=ablation,
        checkpoint_every=100000,
        log_every=1,
        seed=0,
    )
    torch.manual_seed(0)
    before = {k: v.clone() for k, v in build_sr_model(opts)[0].state_dict().items()}
    train_sr(opts)
    after = TransMRSR.from_pretrained(out).state_dict()
    return before, after


def test_frozen_gp_train_step_leaves_the_decoder_and_moves_the_rest(data_dir, gan_dir, tmp_path):
    gen = StyleSwinGenerator.from_pretrained(gan_dir)
    model, _ = build_sr_model(SRTrainConfig(preset="tiny", gan=str(gan_dir), ablation="frozen-gp"))
    assert model.config.freeze_prior
    assert not any(p.requires_grad for p in model.decoder.parameters())
    assert all(p.requires_grad for n, p in model.named_parameters() if not n.startswith("decoder."))

    before, after = _train_one_step(data_dir, gan_dir, tmp_path / "frozen", "frozen-gp")
    assert TransMRSR.from_pretrained(tmp_path / "frozen").config.freeze_prior  # recorded in config.json
    decoder = [k for k in after if k.startswith("decoder.")]
    for k in decoder:  # the prior's weights, untouched
        assert torch.equal(after[k], before[k]), k
        assert torch.equal(after[k], gen.synthesis.state_dict()[k.removeprefix("decoder.")]), k
    trained = [k for k in after if not k.startswith("decoder.") and not k.startswith("truncation.")]
    moved = [k for k in trained if not torch.equal(after[k], before[k])]
    assert set(moved) == set(trained), sorted(set(trained) - set(moved))

    # fine-tuned GP (the default): the same step moves the decoder too
    before, after = _train_one_step(data_dir, gan_dir, tmp_path / "fine", None)
    assert all(not torch.equal(after[k], before[k]) for k in decoder if k.endswith(".weight"))


def test_frozen_gp_needs_a_prior(gan_dir):
    with pytest.raises(ValueError, match="frozen-gp freezes the pretrained decoder"):
        build_sr_model(SRTrainConfig(preset="tiny", ablation="frozen-gp"))


# ---------------------------------------------------------------------------- position table
def styleswin_reference_grid(h: int, w: int, c: int) -> np.ndarray:
    """StyleSwin's ``SinusoidalPositionalEmbedding(embedding_dim=c/2, padding_idx=0).make_grid2d(h, w)``
    from its definition, in float64, laid out ``(h, w, c)``: ``half = c/4`` frequencies
    ``exp(-i log(10000) / (half - 1))``; positions ``1 .. n``; ``[sin | cos]``; x channels, then y."""
    half = c // 4
    freqs = np.exp(-np.arange(half) * np.log(10000) / (half - 1))

    def emb(n: int) -> np.ndarray:  # (n, c/2)
        ang = np.arange(1, n + 1)[:, None] * freqs[None]
        return np.concatenate([np.sin(ang), np.cos(ang)], axis=1)

    x_grid = np.broadcast_to(emb(w)[None, :, :], (h, w, c // 2))
    y_grid = np.broadcast_to(emb(h)[:, None, :], (h, w, c // 2))
    return np.concatenate([x_grid, y_grid], axis=-1)


@pytest.mark.parametrize("h, w, c", [(8, 8, 32), (16, 8, 16), (64, 64, 256), (4, 4, 8)])
def test_styleswin_grid_is_the_reference(h, w, c):
    ours = styleswin_sinusoidal_grid(h, w, c)
    assert ours.shape == (1, h, w, c) and ours.dtype == torch.float32
    np.testing.assert_allclose(ours[0].double().numpy(), styleswin_reference_grid(h, w, c), rtol=0, atol=2e-5)
    # and not the earlier table (positions from 0, rows first, divisor c/4)
    assert (sinusoidal_grid(h, w, c) - ours).abs().max() > 0.1


def test_decoder_tables_follow_the_channel_halves_cwss_modulates():
    """At 8 .. S/2 (CWSS-modulated: ours the second half, the authors' the first) the halves are
    swapped; at S StyleSwin's order; the same with CWSS off (one stage-1 prior serves every ablation)."""
    for use_cwss in (True, False):
        model = TransMRSR(tiny(use_cwss=use_cwss))
        cfg = model.config
        assert cfg.position_table == "styleswin"
        for i, layer in enumerate(model.decoder.layers[:-1]):
            r, c = 2 ** (i + 3), cfg.dec_channels[i + 1]
            ref = torch.from_numpy(styleswin_reference_grid(r, r, c)).float()[None]
            if r < cfg.img_size:
                ref = torch.cat([ref[..., c // 2 :], ref[..., : c // 2]], dim=-1)
            torch.testing.assert_close(layer.upsample.pos, ref, rtol=0, atol=2e-5)
            assert torch.equal(layer.upsample.pos, decoder_position_table("styleswin", r, c, cfg.img_size))
    # the position table is not saved with the weights: it comes from the config
    assert not any("pos" in k.split(".")[-1] for k in model.state_dict())


def test_config_without_position_table_reads_as_legacy(tmp_path):
    """A config.json written before the field (the bundled weights) keeps the table it was trained
    with, so its outputs do not change; a new one is StyleSwin's."""
    torch.manual_seed(0)
    model = TransMRSR(tiny())
    with torch.no_grad():
        for layer in model.decoder.layers[:-1]:
            layer.upsample.alpha.fill_(0.5)
    data = model.config.to_dict()
    assert data["position_table"] == "styleswin"
    assert TransMRSRConfig.from_dict(data).position_table == "styleswin"
    del data["position_table"]
    old = TransMRSRConfig.from_dict(data)
    assert old.position_table == "legacy"
    legacy = TransMRSR(old)
    legacy.load_state_dict(model.state_dict())
    assert torch.equal(legacy.decoder.layers[0].upsample.pos, sinusoidal_grid(8, 8, old.dec_channels[1]))
    x = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert (legacy.eval()(x) - model.eval()(x)).abs().max() > 1e-5
        model.set_position_table("legacy")
        assert model.config.position_table == "legacy"
        assert torch.equal(legacy(x), model(x))


def test_prior_brings_its_position_table(tmp_path):
    """A stage-1 generator saved before the field (``legacy``) gives its table to the SR model."""
    torch.manual_seed(0)
    gen = StyleSwinGenerator(tiny(position_table="legacy"))
    model = TransMRSR(tiny())
    assert model.load_generative_prior(gen)
    assert model.config.position_table == "legacy"
    assert torch.equal(model.decoder.layers[1].upsample.pos, gen.synthesis.layers[1].upsample.pos)


# ---------------------------------------------------------------------------- centroid selection
def authors_selection(latents: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """The authors' ``get_nearest`` as documented (DESIGN.md, docs/deviations.md): the argmax of
    the squared euclidean distance, per latent, i.e. the farthest centroid. ``(B, L, D) -> (B, L, D)``."""
    dist = ((latents[:, :, None, :] - centroids) ** 2).sum(-1)  # (B, L, K)
    return centroids[dist.argmax(-1)]


def test_nearest_vs_authors_farthest_centroid():
    """Ours takes the nearest centroid (argmin), theirs the farthest (argmax): different centroids
    for every latent of a constructed example, and therefore different truncated latents; with
    one repeated centroid (as in the equality check of benchmarks/speed.py) both agree."""
    torch.manual_seed(0)
    model = TransMRSR(tiny())
    cfg = model.config
    centroids = torch.randn(cfg.num_centroids, cfg.style_dim) * 3
    model.truncation.set_centroids(centroids)
    latents = centroids[torch.arange(6) % cfg.num_centroids][None] + 0.1 * torch.randn(1, 6, cfg.style_dim)
    ours = model.truncation.nearest(latents)
    theirs = authors_selection(latents, centroids)
    torch.testing.assert_close(ours, centroids[torch.arange(6) % cfg.num_centroids][None], rtol=0, atol=0)
    assert all(not torch.equal(ours[0, i], theirs[0, i]) for i in range(6))
    phi = 0.9
    assert (model.truncation(latents, phi) - (phi * latents + (1 - phi) * theirs)).abs().max() > 0.1
    # one centroid repeated K times: nearest == farthest, the selection is not exercised
    same = centroids[:1].repeat(cfg.num_centroids, 1)
    model.truncation.set_centroids(same)
    assert torch.equal(model.truncation.nearest(latents), authors_selection(latents, same))
    assert math.isclose(
        float(model.truncation(latents, phi).sub(phi * latents + (1 - phi) * same[0]).abs().max()), 0, abs_tol=1e-5
    )
