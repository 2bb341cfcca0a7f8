"""Per-scan self-supervised adaptation (issue 17): bounded, reproducible, never writes the weights."""

import hashlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from transmrsr.adapt import AdaptOptions, adapt_model, adaptation_pairs, degrade_inplane
from transmrsr.data.degradation import SliceProfile, interpolate_to_grid, simulate_acquisition
from transmrsr.inference import Acquisition, plan_serving, super_resolve_acquisition, working_input

REPO = Path(__file__).resolve().parents[1]
BUNDLED_X4 = REPO / "checkpoints" / "transmrsr-small-t1-x4"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _blobs(shape, seed=0) -> np.ndarray:
    """A smooth, head-like test volume: a few Gaussian blobs on a dark background."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij"), -1)
    vol = np.zeros(shape, np.float32)
    for _ in range(6):
        c = rng.uniform(0.2, 0.8, 3) * np.array(shape)
        s = rng.uniform(2.0, 5.0)
        vol += rng.uniform(50, 100) * np.exp(-((grid - c) ** 2).sum(-1) / (2 * s * s))
    return vol


def _acq(r=2.5, thickness=None, profile="box", shape=(28, 26, 12)):
    return Acquisition(
        axis=2,
        zooms=(1.0, 1.0, r),
        factors=(1.0, 1.0, r),
        slice_thickness=r if thickness is None else thickness,
        profile=profile,
    )


@pytest.mark.parametrize("strategy", ["direct", "thick"])
def test_pairs_are_degraded_like_the_thick_axis(strategy):
    """An in-plane axis degraded for adaptation goes through exactly what the thick axis goes
    through at inference (acquisition, working grid, cubic start)."""
    hr = _blobs((8, 30, 40))
    acq = Acquisition(axis=1, zooms=(1.0, 3.3, 1.0), factors=(1.0, 3.3, 1.0), slice_thickness=2.4, profile="gaussian")
    plan = plan_serving(acq, (4, 8), strategy)  # ("grid" resamples in-plane first: no direct comparison)
    lr = simulate_acquisition(hr, 1, acq.slice_profile())
    x, n = working_input(lr, acq, plan)
    start = interpolate_to_grid(x, 1, plan.thick_factor, n_thin=30)
    prof = SliceProfile(3.3, 2.4, "gaussian")
    assert np.allclose(degrade_inplane(hr, 1, prof, plan.thick_factor, strategy), start, atol=1e-4)


def test_pairs_shapes_and_scale():
    vol = _blobs((28, 26, 8))
    acq = _acq(3.3, 2.0)
    plan = plan_serving(acq, (4, 8), "grid")
    lr_w, _ = working_input(vol, acq, plan)
    pairs = adaptation_pairs(lr_w, acq, plan)
    assert len(pairs) == 2
    for lr, hr in pairs:
        assert lr.shape == hr.shape == (8,) + lr_w.shape[:2]
        assert 0.9 < float(np.percentile(hr, 99.9)) < 1.2  # scaled like the inference input


def test_adaptation_is_reproducible_bounded_and_leaves_the_model(tiny_model):
    vol = _blobs((30, 28, 10))
    acq = _acq(2.5)
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    calls = []

    def run(seed):
        opts = AdaptOptions(steps=3, batch_size=2, seed=seed, progress=lambda i, n: calls.append((i, n)))
        return super_resolve_acquisition(lambda m: tiny_model, vol, acq, adapt=opts, fusion=False, show_progress=False)

    torch.manual_seed(123)
    a = run(7)
    after_rng = torch.rand(1)
    torch.manual_seed(123)
    b = run(7)
    assert torch.equal(after_rng, torch.rand(1))  # the caller's random state is left alone
    c = run(8)
    assert np.array_equal(a.sr, b.sr) and not np.array_equal(a.sr, c.sr)
    assert a.adapt.steps == 3 and calls[:3] == [(1, 3), (2, 3), (3, 3)]
    plain = super_resolve_acquisition(lambda m: tiny_model, vol, acq, fusion=False, show_progress=False)
    assert not np.array_equal(plain.sr, a.sr)
    for k, v in tiny_model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not tiny_model.training


def test_time_bound_stops_early(tiny_model):
    vol = _blobs((30, 28, 10))
    acq = _acq(2.5)
    plan = plan_serving(acq, (4, 8), "direct")
    lr_w, _ = working_input(vol, acq, plan)
    _, rep = adapt_model(tiny_model, lr_w, acq, plan, AdaptOptions(steps=1000, max_seconds=0.01, batch_size=1))
    assert 1 <= rep.steps < 1000


def test_options_errors():
    for kw, word in (
        ({"steps": 0}, "steps"),
        ({"max_seconds": 0}, "time"),
        ({"lr": -1}, "learning rate"),
        ({"batch_size": 0}, "batch size"),
    ):
        with pytest.raises(ValueError, match=word):
            AdaptOptions(**kw)


def test_cli_adapt_on_bundled_weights_never_writes_them(tmp_path):
    """``transmrsr sr IN OUT --adapt`` on a small non-integer-factor scan: the bundled weights'
    bytes do not change, two runs with one seed write the same volume, the geometry is the
    input's, isotropic at the in-plane spacing."""
    from transmrsr.cli import main

    weights = BUNDLED_X4 / "model.safetensors"
    if not weights.is_file():
        pytest.skip("no bundled x4 weights in this checkout")
    digest = _sha(weights)
    hr = _blobs((24, 22, 33))
    lr = simulate_acquisition(hr, 2, SliceProfile(3.3))
    aff = np.diag([1.0, 1.0, 3.3, 1.0])
    src = tmp_path / "thick.nii.gz"
    nib.save(nib.Nifti1Image(lr, aff), str(src))
    outs = []
    for name in ("a.nii.gz", "b.nii.gz"):
        rc = main(
            [
                "sr",
                str(src),
                str(tmp_path / name),
                "--adapt",
                "--adapt-steps",
                "2",
                "--seed",
                "3",
                "--no-fusion",
                "--quiet",
            ]
        )
        assert rc == 0
        outs.append(nib.load(str(tmp_path / name)))
    assert _sha(weights) == digest
    assert np.array_equal(np.asarray(outs[0].dataobj), np.asarray(outs[1].dataobj))
    assert outs[0].shape == (24, 22, 33) and np.allclose(outs[0].header.get_zooms(), 1.0, atol=1e-5)
