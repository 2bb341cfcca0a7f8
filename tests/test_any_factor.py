"""Any thickness factor (issue 17): non-integer factors, gaps, slice profiles, output geometry.

Tiny volumes and the tiny preset only; the affine checks are against nibabel's own affine maths.
"""

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from nibabel.affines import apply_affine, rescale_affine, voxel_sizes

from transmrsr.data.degradation import (
    SliceProfile,
    grid_positions,
    interpolate_to_grid,
    interpolate_to_thin,
    profile_matrix,
    resample_affine,
    simulate_acquisition,
    simulate_thick,
    thin_affine,
)
from transmrsr.data.io import Volume, VolumeError, load_volume
from transmrsr.inference import (
    Acquisition,
    detect_acquisition,
    plan_serving,
    read_slice_thickness,
    super_resolve,
    super_resolve_acquisition,
    super_resolve_acquisition_file,
    working_input,
)


class Identity(torch.nn.Module):
    """A stand-in SR model that returns its input: the pipeline's geometry alone is then tested."""

    def __init__(self, img_size: int = 32) -> None:
        super().__init__()
        self.config = type("Cfg", (), {"img_size": img_size})()
        self.w = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x, phi=None):
        return x + 0 * self.w


# ------------------------------------------------------------------ degradation


@pytest.mark.parametrize("r", [2, 3, 4])
def test_integer_factors_match_the_integer_functions(r):
    x = np.random.default_rng(r).random((5, 6, 23)).astype(np.float32)
    assert np.allclose(simulate_acquisition(x, 2, SliceProfile(r)), simulate_thick(x, 2, r), atol=1e-6)
    lr = simulate_thick(x, 2, r)
    assert np.array_equal(interpolate_to_grid(lr, 2, r), interpolate_to_thin(lr, 2, r))
    # the general resampler reproduces torch's bicubic sampling
    from transmrsr.data.degradation import resample_axis

    assert np.allclose(resample_axis(lr, 2, grid_positions(lr.shape[2], r)), interpolate_to_thin(lr, 2, r), atol=1e-5)


@pytest.mark.parametrize("kind", ["box", "gaussian"])
@pytest.mark.parametrize("spacing,thickness", [(3.3, None), (5.7, 4.1), (2.5, 3.0)])
def test_profile_rows_sum_to_one_and_centre_on_the_slice(kind, spacing, thickness):
    prof = SliceProfile(spacing, thickness, kind)
    m = profile_matrix(60, prof)
    assert m.shape == (int(np.ceil(60 / spacing)), 60) and np.allclose(m.sum(1), 1)
    # a linear ramp is sampled at each slice centre, spacing * (k + 0.5) - 0.5, away from the ends
    # (to within the partial-voxel discretisation)
    ramp = np.arange(60, dtype=np.float64)
    centres = spacing * (np.arange(m.shape[0]) + 0.5) - 0.5
    inner = (centres > 2 * spacing) & (centres < 60 - 2 * spacing)
    assert np.allclose((m @ ramp)[inner], centres[inner], atol=0.05)


def test_box_profile_with_a_gap_covers_only_the_slab():
    m = profile_matrix(40, SliceProfile(spacing=8.0, thickness=4.0))  # 4-voxel slabs every 8 voxels
    # slice 1 is centred at 11.5: voxels 10..13 fully in, nothing else
    assert np.allclose(m[1, 10:14], 0.25) and m[1].sum() == pytest.approx(1) and np.count_nonzero(m[1]) == 4
    g = profile_matrix(40, SliceProfile(spacing=8.0, thickness=4.0, kind="gaussian"))
    wide = profile_matrix(40, SliceProfile(spacing=8.0, kind="gaussian"))
    assert g[1, 11] > wide[1, 11]  # thinner slice: more weight at its centre


def test_slice_profile_errors_are_specific():
    with pytest.raises(ValueError, match="spacing"):
        SliceProfile(0.5)
    with pytest.raises(ValueError, match="thickness"):
        SliceProfile(3.0, -1.0)
    with pytest.raises(ValueError, match="profile"):
        SliceProfile(3.0, kind="triangle")


# ------------------------------------------------------------------ geometry against nibabel


def _thick_file(tmp_path, name, affine, shape, thickness=None, seed=0):
    data = np.random.default_rng(seed).random(shape).astype(np.float32) * 100 + 10
    path = tmp_path / name
    nib.save(nib.Nifti1Image(data, affine), str(path))
    if thickness is not None:
        (tmp_path / name.replace(".nii.gz", ".json")).write_text(json.dumps({"SliceThickness": thickness}))
    return path


def _las_ras(kind, zooms):
    a = np.diag(list(zooms) + [1.0])
    if kind == "LAS":
        a[0, 0] = -zooms[0]
    a[:3, 3] = [12.5, -30.0, 7.25]
    return a


@pytest.mark.parametrize("kind", ["LAS", "RAS"])
def test_output_affine_matches_nibabel_non_integer_factor_and_gap(tmp_path, kind):
    """0.9 x 1.26 x 3.06 mm (factor 3.4 of the finest in-plane spacing, and 1.4 in-plane), 2 mm
    slices every 3.06 mm (a gap recorded in the sidecar): the output is isotropic 0.9 mm and sits
    on the input."""
    zooms, shape = (0.9, 1.26, 3.06), (9, 15, 15)
    affine = _las_ras(kind, zooms)
    path = _thick_file(tmp_path, f"{kind}.nii.gz", affine, shape, thickness=2.0)
    vol = load_volume(path)
    acq = detect_acquisition(vol)
    assert acq.axis == 2 and acq.factor == pytest.approx(3.4) and acq.has_gap
    assert acq.slice_thickness == pytest.approx(2.0) and read_slice_thickness(path) == pytest.approx(2.0)
    out_shape = acq.output_shape(vol.shape)
    assert out_shape == (9, 21, 51)
    out_aff = acq.output_affine(vol.affine)
    assert np.allclose(voxel_sizes(out_aff), 0.9, atol=1e-6)
    # nibabel's rescale_affine keeps the central voxel ((n - 1) // 2) in place: with odd sizes and
    # n * factor whole, that is our field of view too
    assert np.allclose(out_aff, rescale_affine(vol.affine, vol.shape, (0.9, 0.9, 0.9), out_shape), atol=1e-5)
    # the centres of the first and last thick slices land on thin coordinates r*(k + 0.5) - 0.5
    r = acq.factor
    for k in (0, shape[2] - 1):
        world = apply_affine(vol.affine, [[3, 4, k]])
        thin = apply_affine(np.linalg.inv(out_aff), world)[0]
        assert thin[2] == pytest.approx(r * (k + 0.5) - 0.5, abs=1e-5)
        assert thin[0] == pytest.approx(3) and thin[1] == pytest.approx((4 + 0.5) * 1.4 - 0.5)
    # the file written by the pipeline carries that affine and those voxel sizes
    out = tmp_path / f"{kind}_sr.nii.gz"
    res = super_resolve_acquisition_file(vol, out, lambda m: Identity(), fusion=False, show_progress=False)
    img = nib.load(str(out))
    assert img.shape == out_shape == res.sr.shape
    assert np.allclose(img.affine, out_aff, atol=1e-5) and np.allclose(img.header.get_zooms(), 0.9, atol=1e-5)
    assert nib.aff2axcodes(img.affine) == tuple(kind)


@pytest.mark.parametrize("strategy", ["grid", "direct", "thick"])
def test_linear_world_ramp_lands_on_the_output_grid(strategy):
    """A volume whose values are a linear function of world position keeps that function on the
    output grid (interior voxels), through cubic and through each serving strategy with an
    identity model: the output is placed exactly on the input."""
    zooms, shape = (1.0, 1.2, 3.3), (14, 12, 12)
    aff = _las_ras("LAS", zooms)
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    coef = np.array([0.5, -0.3, 0.8])

    def f(affine, idx):
        return apply_affine(affine, idx) @ coef + 100.0

    vol = Volume(data=f(aff, ijk).astype(np.float32), affine=aff)
    acq = detect_acquisition(vol)
    res = super_resolve_acquisition(
        lambda m: Identity(), vol.data, acq, strategy=strategy, fusion=False, show_progress=False, background=-1.0
    )
    out_shape = acq.output_shape(shape)
    oijk = np.stack(np.meshgrid(*[np.arange(n) for n in out_shape], indexing="ij"), -1)
    want = f(acq.output_affine(aff), oijk)
    inner = tuple(slice(int(4 * q), n - int(4 * q) - 1) for n, q in zip(out_shape, acq.factors))
    # Keys cubic (a = -0.75) is off a straight line by at most 0.049 of an input step, with a zero
    # mean over the sampling phases: a misplaced grid shows as a bias (half an output voxel here:
    # 0.4), the kernel only as bounded, zero-mean ripple
    step = np.abs(coef @ aff[:3, :3])  # change of the value per input voxel, per axis
    ripple = 0.05 * step[np.array(acq.factors) != 1].sum()
    for name, got, passes in (("cubic", res.cubic, 1), ("sr", res.sr, 1 if strategy == "direct" else 2)):
        err = got[inner] - want[inner]
        assert abs(err.mean()) < 0.02, (name, err.mean())
        assert np.abs(err).max() < passes * ripple + 1e-3, (name, np.abs(err).max(), ripple)


# ------------------------------------------------------------------ reading the factor, serving it


def test_detect_factor_errors_name_the_problem(tmp_path):
    too_thick = Volume(np.ones((8, 8, 4), np.float32), np.diag([1.0, 1.0, 12.0, 1.0]), path="thick.nii.gz")
    with pytest.raises(VolumeError, match=r"thick.nii.gz.*12\.00.*supported: 1.5 to 10"):
        detect_acquisition(too_thick)
    iso = Volume(np.ones((8, 8, 8), np.float32), np.eye(4), path="iso.nii.gz")
    with pytest.raises(VolumeError, match="isotropic"):
        detect_acquisition(iso)
    with pytest.raises(VolumeError, match="give both the slice-thickness factor and the thick axis") as err:
        detect_acquisition(iso, scale=4.0)  # which axis is thick cannot be guessed
    assert set(err.value.params) == {"scale", "axis"} and "--" not in str(err.value)
    assert detect_acquisition(iso, scale=4.0, axis=1).factors == (1.0, 4.0, 1.0)
    ok = Volume(np.ones((8, 8, 4), np.float32), np.diag([1.0, 1.0, 3.0, 1.0]), path="ok.nii.gz")
    with pytest.raises(VolumeError, match="slice thickness"):
        detect_acquisition(ok, slice_thickness=20.0)
    with pytest.raises(VolumeError, match="profile"):
        detect_acquisition(ok, profile="cone")


def test_explicit_scale_keeps_the_in_plane_grid():
    vol = Volume(np.ones((8, 8, 4), np.float32), np.diag([0.9, 1.0, 2.0, 1.0]))
    acq = detect_acquisition(vol, axis=2, scale=2.5)
    assert acq.factors == (1.0, 1.0, 2.5) and acq.output_shape(vol.shape) == (8, 8, 10)


@pytest.mark.parametrize(
    "r,strategy,model,working_k",
    [
        (3.3, "grid", 4, 4 / 3.3),
        (5.0, "grid", 8, 8 / 5),
        (10.0, "grid", 8, 0.8),
        (3.3, "direct", 4, 1.0),
        (6.0, "direct", 8, 1.0),
        (2.0, "thick", 4, 1.0),
        (4.0, "grid", 4, 1.0),
    ],
)
def test_serving_plans(r, strategy, model, working_k):
    acq = Acquisition(axis=2, zooms=(1.0, 1.0, r), factors=(1.0, 1.0, r), slice_thickness=r)
    plan = plan_serving(acq, (4, 8), strategy)
    assert plan.model_factor == model
    assert np.allclose(plan.working, np.array(acq.factors) * working_k)


def test_integer_factor_is_the_old_pipeline(tiny_model):
    """x4 on an isotropic-in-plane scan with the x4 model: bit-identical to ``super_resolve``."""
    rng = np.random.default_rng(0)
    lr = rng.random((20, 18, 6)).astype(np.float32)
    acq = Acquisition(axis=2, zooms=(1.0, 1.0, 4.0), factors=(1.0, 1.0, 4.0), slice_thickness=4.0)
    new = super_resolve_acquisition(lambda m: tiny_model, lr, acq, fusion=False, show_progress=False)
    old = super_resolve(tiny_model, lr, 2, 4, show_progress=False)
    assert new.plan.model_factor == 4 and np.array_equal(new.sr, np.maximum(old.sr, lr.min()))
    assert np.allclose(new.cubic, old.interpolated, atol=1e-5)  # old one went through the scaler and back


def test_non_integer_factor_with_gap_runs_the_model(tiny_model):
    rng = np.random.default_rng(1)
    hr = rng.random((16, 14, 40)).astype(np.float32)
    prof = SliceProfile(3.3, 2.0, "gaussian")
    lr = simulate_acquisition(hr, 2, prof)
    acq = Acquisition(
        axis=2, zooms=(1.0, 1.0, 3.3), factors=(1.0, 1.0, 3.3), slice_thickness=2.0, profile="gaussian", n_thin=40
    )
    seen = []
    res = super_resolve_acquisition(lambda m: seen.append(m) or tiny_model, lr, acq, fusion=False, show_progress=False)
    assert seen == [4] and res.sr.shape == hr.shape == res.cubic.shape and np.all(np.isfinite(res.sr))
    x, n = working_input(lr, acq, res.plan)
    assert x.shape[:2] == (round(16 * 4 / 3.3), round(14 * 4 / 3.3)) and n == 13 * 4


def test_integer_resample_affine_is_thin_affine():
    a = _las_ras("LAS", (0.9, 0.9, 4.5))
    assert np.allclose(resample_affine(a, (1.0, 1.0, 5.0)), thin_affine(a, 2, 5))
    with pytest.raises(ValueError, match="positive"):
        resample_affine(a, (1.0, 0.0, 2.0))
