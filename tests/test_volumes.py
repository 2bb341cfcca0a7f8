"""Behavioural tests of the volume pipeline: NIfTI I/O, thick-slice geometry and simulation,
interpolation, intensity scaling, volume inference and the evaluation metrics.

Every NIfTI file is written inside the test (``tmp_path``); expected values are computed by
hand (numpy / the documented formulas), never by the code under test. Volumes are small so the
whole module runs in well under a minute on a 2-core CPU.
"""

from __future__ import annotations

import math
import re
import struct
import types

import nibabel as nib
import numpy as np
import pytest
import torch
from scipy import ndimage
from scipy.spatial.transform import Rotation

from transmrsr import TransMRSR, TransMRSRConfig
from transmrsr.data.degradation import interpolate_to_thin, simulate_thick, thick_affine, thin_affine
from transmrsr.data.io import (
    VolumeError,
    load_volume,
    save_volume,
    thick_axis,
    thin_count_from_header,
)
from transmrsr.data.normalization import IntensityScaler
from transmrsr.evaluation.evaluate import evaluate
from transmrsr.evaluation.metrics import dice, psnr, slice_metrics, ssim
from transmrsr.evaluation.segmentation import segment_tissues
from transmrsr.inference import simulate_file, super_resolve, super_resolve_file, tile_starts

# ---------------------------------------------------------------------------- fixtures / helpers
pytestmark = pytest.mark.usefixtures("one_torch_thread")


class _ShortRepr(TransMRSR):
    def __repr__(self) -> str:  # keep failure reports readable
        return "<tiny TransMRSR>"


@pytest.fixture(scope="module")
def tiny() -> TransMRSR:
    """A tiny model with random weights (no centroids): fine for geometry checks."""
    torch.manual_seed(123)
    return _ShortRepr(TransMRSRConfig.from_preset("tiny")).eval()


class ShiftModel(torch.nn.Module):
    """Stand-in network: returns its input plus ``shift`` (identity for 0), records batches.

    It lets the tests predict ``super_resolve``'s output exactly (tiling, padding, blending,
    background skipping, fusion) by hand.
    """

    def __init__(self, img_size: int = 32, shift: float = 0.0):
        super().__init__()
        self.config = types.SimpleNamespace(img_size=img_size)
        self.shift = shift
        self.samples = 0

    def forward(self, x, phi=None):
        assert x.shape[-2:] == (self.config.img_size, self.config.img_size)
        self.samples += x.shape[0]
        return x + self.shift


def smooth_volume(shape, seed=0, background=True) -> np.ndarray:
    """Positive, smooth random volume (float32), zero outside a central ellipsoid if ``background``."""
    rng = np.random.default_rng(seed)
    v = ndimage.gaussian_filter(rng.random(shape), 1.5)
    v = (v - v.min()) / (v.max() - v.min()) * 80.0 + 20.0
    if background:
        grids = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
        inside = sum(g**2 for g in grids) < 0.8
        v = np.where(inside, v, 0.0)
    return v.astype(np.float32)


def write_nifti(path, data, affine) -> str:
    nib.save(nib.Nifti1Image(np.asarray(data), np.asarray(affine, dtype=np.float64)), str(path))
    return str(path)


def oblique_affine(zooms, seed: int, flip: bool = False) -> np.ndarray:
    """Random rotation x diag(zooms) (x a left-right flip if ``flip``) plus a translation."""
    rot = Rotation.random(random_state=seed).as_matrix()
    a = np.eye(4)
    a[:3, :3] = rot @ np.diag(zooms)
    if flip:
        a[:3, 0] *= -1.0
    a[:3, 3] = [-31.5, 17.25, 42.0]
    return a


def box_reference(hr: np.ndarray, axis: int, r: int) -> np.ndarray:
    """Hand-made box simulation: mean of each r slices, last group padded with the last slice."""
    x = np.moveaxis(np.asarray(hr, dtype=np.float64), axis, 0)
    n = x.shape[0]
    n_thick = math.ceil(n / r)
    out = []
    for k in range(n_thick):
        idx = [min(j, n - 1) for j in range(k * r, k * r + r)]
        out.append(sum(x[j] for j in idx) / r)
    return np.moveaxis(np.stack(out), 0, axis)


# ---------------------------------------------------------------------------- 1. geometry round trip
AFFINES = {
    "aligned": lambda: (
        np.diag([1.0, 1.0, 1.0, 1.0]) + np.array([[0, 0, 0, -10.0], [0, 0, 0, 5.0], [0, 0, 0, 3.0], [0, 0, 0, 0]])
    ),
    "oblique": lambda: oblique_affine((0.9, 1.2, 1.0), seed=7),
    "oblique_flipped": lambda: oblique_affine((1.1, 0.8, 1.3), seed=11, flip=True),
}


@pytest.mark.parametrize("n_thin,r", [(32, 4), (33, 4)], ids=["n32-r4", "n33-r4"])
@pytest.mark.parametrize("kind", list(AFFINES))
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_simulate_then_sr_round_trip_geometry(tmp_path, tiny, axis, kind, n_thin, r):
    shape = [20, 18]
    shape.insert(axis, n_thin)
    hr = smooth_volume(tuple(shape), seed=axis)
    hr_path = write_nifti(tmp_path / "hr.nii.gz", hr, AFFINES[kind]())
    hr_img = nib.load(hr_path)
    a_hr = hr_img.affine
    hr_zooms = np.array(hr_img.header.get_zooms()[:3], dtype=float)

    lr_path = tmp_path / "lr.nii.gz"
    simulate_file(hr_path, lr_path, scale=r, axis=axis)
    lr_img = nib.load(str(lr_path))
    n_thick = -(-n_thin // r)
    expected_shape = list(shape)
    expected_shape[axis] = n_thick
    assert lr_img.shape == tuple(expected_shape)
    expected_zooms = hr_zooms.copy()
    expected_zooms[axis] *= r
    np.testing.assert_allclose(lr_img.header.get_zooms()[:3], expected_zooms, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(lr_img.affine[:3, :3], axis=0), expected_zooms, rtol=1e-5)
    assert thin_count_from_header(lr_img.header) == n_thin
    assert str(n_thin).encode() in bytes(lr_img.header["descrip"])
    # the data is the box average of each r thin slices (edge slice repeated for the last group)
    np.testing.assert_allclose(
        np.asarray(lr_img.dataobj), box_reference(np.asarray(hr_img.dataobj), axis, r), rtol=1e-5, atol=1e-4
    )

    # centre of thick slice k == mean of the world positions of thin slices k*r .. k*r+r-1
    a_lr = lr_img.affine
    others = {0: 3, 1: 5, 2: 7}
    for k in range(n_thick):
        ijk = np.array([others[0], others[1], others[2], 1.0])
        ijk[axis] = k
        centre = a_lr @ ijk
        thin_world = []
        for j in range(k * r, k * r + r):
            v = ijk.copy()
            v[axis] = j
            thin_world.append(a_hr @ v)
        np.testing.assert_allclose(centre, np.mean(thin_world, axis=0), atol=1e-4)

    sr_path = tmp_path / "sr.nii.gz"
    result, got_axis, got_r = super_resolve_file(lr_path, sr_path, tiny, scale=r, axis=axis, show_progress=False)
    assert (got_axis, got_r) == (axis, r)
    sr_img = nib.load(str(sr_path))
    assert sr_img.shape == hr_img.shape
    assert np.allclose(sr_img.affine, a_hr, atol=1e-5)
    assert int(sr_img.header["sform_code"]) > 0 and int(sr_img.header["qform_code"]) > 0
    assert np.allclose(sr_img.header.get_qform(), a_hr, atol=1e-4)
    np.testing.assert_allclose(sr_img.header.get_zooms()[:3], hr_zooms, rtol=1e-5)
    assert sr_img.get_data_dtype() == np.float32
    assert np.all(np.isfinite(np.asarray(sr_img.dataobj)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hr.nii.gz", "lr.nii.gz", "sr.nii.gz"]


def test_sr_without_scale_axis_on_isotropic_simulation(tmp_path, tiny):
    """Factor and axis detected from the voxel sizes return to the HR grid (33 slices, x4)."""
    hr = smooth_volume((20, 18, 33), seed=3)
    a = oblique_affine((1.0, 1.0, 1.0), seed=5)
    hr_path = write_nifti(tmp_path / "hr.nii.gz", hr, a)
    simulate_file(hr_path, tmp_path / "lr.nii.gz", scale=4, axis=2)
    _, axis, r = super_resolve_file(tmp_path / "lr.nii.gz", tmp_path / "sr.nii.gz", tiny, show_progress=False)
    assert (axis, r) == (2, 4)
    sr_img, hr_img = nib.load(str(tmp_path / "sr.nii.gz")), nib.load(hr_path)
    assert sr_img.shape == hr_img.shape
    assert np.allclose(sr_img.affine, hr_img.affine, atol=1e-5)


def test_sr_without_scale_axis_on_simulation_of_anisotropic_hr(tmp_path, tiny):
    """A common 1 x 1 x 1.2 mm HR scan thickened x4 along axis 0 by ``simulate``: the LR file
    records scale=4 (descrip), and ``sr`` (default: factor from the file) must return to the
    HR grid. The voxel-size ratio alone (4.0 / 1.2 = 3.33) would suggest x3."""
    hr = smooth_volume((33, 18, 20), seed=4)
    hr_path = write_nifti(tmp_path / "hr.nii.gz", hr, np.diag([1.0, 1.0, 1.2, 1.0]))
    simulate_file(hr_path, tmp_path / "lr.nii.gz", scale=4, axis=0)
    _, axis, r = super_resolve_file(tmp_path / "lr.nii.gz", tmp_path / "sr.nii.gz", tiny, show_progress=False)
    sr_img, hr_img = nib.load(str(tmp_path / "sr.nii.gz")), nib.load(hr_path)
    assert (axis, r) == (0, 4)
    assert sr_img.shape == hr_img.shape
    assert np.allclose(sr_img.affine, hr_img.affine, atol=1e-5)


def test_thin_and_thick_affine_by_hand():
    a = oblique_affine((0.9, 1.2, 1.0), seed=2)
    for axis in range(3):
        r = 4
        thick = thick_affine(a, axis, r)
        expected = a.copy()
        expected[:3, axis] = a[:3, axis] * r
        expected[:3, 3] = a[:3, 3] + 1.5 * a[:3, axis]  # (r - 1) / 2 thin voxels
        np.testing.assert_allclose(thick, expected, atol=1e-12)
        back = thin_affine(thick, axis, r)
        np.testing.assert_allclose(back, a, atol=1e-12)
        assert back[3].tolist() == [0.0, 0.0, 0.0, 1.0]


# ---------------------------------------------------------------------------- 2. simulate_thick
@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("n,r", [(12, 4), (13, 4), (11, 3)])
def test_simulate_thick_box_is_mean_of_r_slices(axis, n, r):
    rng = np.random.default_rng(n * 10 + axis)
    shape = [5, 6]
    shape.insert(axis, n)
    hr = rng.random(tuple(shape)).astype(np.float32)
    out = simulate_thick(hr, axis, r, "box")
    assert out.dtype == np.float32
    assert out.shape[axis] == math.ceil(n / r)
    x = np.moveaxis(hr.astype(np.float64), axis, 0)
    y = np.moveaxis(out, axis, 0)
    for k in range(y.shape[0]):
        group = [x[min(j, n - 1)] for j in range(k * r, k * r + r)]
        np.testing.assert_allclose(y[k], np.mean(group, axis=0), rtol=1e-6, atol=1e-6)


def test_simulate_thick_gaussian_profile():
    rng = np.random.default_rng(1)
    const = np.full((9, 10, 17), 3.25, dtype=np.float32)
    for axis in range(3):
        np.testing.assert_allclose(simulate_thick(const, axis, 4, "gaussian"), 3.25, rtol=1e-6)
    noise = rng.random((9, 10, 17)).astype(np.float32)
    g, b = simulate_thick(noise, 2, 4, "gaussian"), simulate_thick(noise, 2, 4, "box")
    assert g.shape == b.shape == (9, 10, 5)
    assert np.abs(g - b).max() > 1e-3
    # a symmetric profile centred on the thick slice keeps a linear ramp: thick slice k (away
    # from the edges) takes the ramp's value at thin coordinate k*r + (r-1)/2
    ramp = np.broadcast_to(2.0 * np.arange(24, dtype=np.float32) + 1.0, (3, 4, 24)).copy()
    g = simulate_thick(ramp, 2, 4, "gaussian")
    for k in range(1, 5):
        np.testing.assert_allclose(g[..., k], 2.0 * (4 * k + 1.5) + 1.0, rtol=1e-5)


@pytest.mark.parametrize("factor", [1, 0, -2])
def test_simulate_thick_rejects_factor_below_2(factor):
    with pytest.raises(ValueError):
        simulate_thick(np.zeros((4, 4, 8), dtype=np.float32), 2, factor)


# ---------------------------------------------------------------------------- 3. interpolate_to_thin
@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("r", [2, 4])
def test_interpolate_linear_reproduces_a_ramp(axis, r):
    n = 7
    shape = [3, 4]
    shape.insert(axis, n)
    ramp = 3.0 * np.arange(n, dtype=np.float32) + 1.0
    lr = np.moveaxis(np.broadcast_to(ramp, tuple(shape[:axis] + shape[axis + 1 :]) + (n,)), -1, axis).copy()
    thin = interpolate_to_thin(lr, axis, r, mode="linear")
    assert thin.shape[axis] == n * r
    t = np.moveaxis(thin, axis, 0)
    checked = 0
    for j in range(n * r):
        c = (j - (r - 1) / 2.0) / r  # thin slice j on the thick grid
        if 0.0 <= c <= n - 1:
            np.testing.assert_allclose(t[j], 3.0 * c + 1.0, rtol=1e-6, atol=1e-5)
            checked += 1
    assert checked >= (n - 1) * r


def test_interpolate_cubic_keeps_a_constant_and_n_thin_crops():
    lr = np.full((6, 5, 7), -2.5, dtype=np.float32)
    for axis in range(3):
        full = interpolate_to_thin(lr, axis, 4, mode="cubic")
        assert full.shape[axis] == lr.shape[axis] * 4
        np.testing.assert_allclose(full, -2.5, rtol=1e-6)
    rng = np.random.default_rng(0)
    v = rng.random((6, 5, 7)).astype(np.float32)
    full = interpolate_to_thin(v, 1, 4)
    cropped = interpolate_to_thin(v, 1, 4, n_thin=18)
    assert cropped.shape == (6, 18, 7)
    np.testing.assert_array_equal(cropped, full[:, :18])
    with pytest.raises(ValueError):
        interpolate_to_thin(v, 1, 4, mode="nearest")


# ---------------------------------------------------------------------------- 4. io
def test_load_volume_4d_with_one_volume_is_3d(tmp_path):
    rng = np.random.default_rng(0)
    d = rng.random((10, 9, 8, 1)).astype(np.float32)
    a = np.diag([1.0, 2.0, 3.0, 1.0])
    p = write_nifti(tmp_path / "one.nii.gz", d, a)
    vol = load_volume(p)
    assert vol.shape == (10, 9, 8)
    assert vol.data.dtype == np.float32
    np.testing.assert_array_equal(vol.data, d[..., 0])
    np.testing.assert_allclose(vol.affine, a)
    np.testing.assert_allclose(vol.zooms, (1.0, 2.0, 3.0))


def test_load_volume_reads_integer_data_with_scaling(tmp_path):
    d = np.arange(6 * 5 * 4, dtype=np.int16).reshape(6, 5, 4)
    img = nib.Nifti1Image(d, np.eye(4))
    img.header.set_slope_inter(0.5, 10.0)
    nib.save(img, str(tmp_path / "i16.nii"))
    vol = load_volume(tmp_path / "i16.nii")
    np.testing.assert_allclose(vol.data, d * 0.5 + 10.0)


def test_save_volume_float32_affine_and_descrip(tmp_path):
    rng = np.random.default_rng(0)
    src = nib.Nifti1Image(rng.integers(0, 100, (8, 7, 6)).astype(np.int16), np.eye(4))
    src.header["descrip"] = b"kept by save_volume"
    a = oblique_affine((0.9, 1.2, 3.0), seed=3)
    data = rng.random((8, 7, 6)) * 50  # float64 in, float32 out
    out = save_volume(tmp_path / "o.nii.gz", data, a, header=src.header)
    assert out.name == "o.nii.gz"
    img = nib.load(str(tmp_path / "o.nii.gz"))
    assert img.get_data_dtype() == np.float32
    np.testing.assert_allclose(np.asarray(img.dataobj), data.astype(np.float32))
    assert int(img.header["sform_code"]) > 0 and int(img.header["qform_code"]) > 0
    np.testing.assert_allclose(img.header.get_sform(), a, atol=1e-5)
    np.testing.assert_allclose(img.header.get_qform(), a, atol=1e-5)
    np.testing.assert_allclose(img.header.get_zooms()[:3], (0.9, 1.2, 3.0), rtol=1e-5)
    assert bytes(img.header["descrip"]).rstrip(b"\x00") == b"kept by save_volume"
    assert [p.name for p in tmp_path.iterdir()] == ["o.nii.gz"]  # no temporary file left
    with pytest.raises(VolumeError):
        save_volume(tmp_path / "o.txt", data, a)
    assert not (tmp_path / "o.txt").exists()


def test_save_volume_replaces_an_existing_file(tmp_path):
    p = tmp_path / "o.nii"
    p.write_bytes(b"old")
    save_volume(p, np.ones((4, 5, 6)) * np.arange(6), np.eye(4))
    np.testing.assert_allclose(np.asarray(nib.load(str(p)).dataobj)[0, 0], np.arange(6))
    assert [q.name for q in tmp_path.iterdir()] == ["o.nii"]


def _zero_column_file(tmp_path):
    d = np.random.default_rng(0).random((6, 5, 4)).astype(np.float32)
    nib.save(nib.Nifti1Image(d, np.eye(4)), str(tmp_path / "z.nii"))
    raw = bytearray((tmp_path / "z.nii").read_bytes())
    assert struct.unpack("<4f", raw[312:328]) == (0.0, 0.0, 1.0, 0.0)  # srow_z
    raw[320:324] = struct.pack("<f", 0.0)  # srow_z[2] = 0: voxel size 0 along axis 2
    (tmp_path / "z.nii").write_bytes(bytes(raw))
    assert np.linalg.norm(nib.load(str(tmp_path / "z.nii")).affine[:3, 2]) == 0.0
    return tmp_path / "z.nii"


def test_load_volume_refuses_zero_voxel_size_in_the_affine(tmp_path):
    path = _zero_column_file(tmp_path)
    with pytest.raises(VolumeError) as err:
        load_volume(path)
    assert str(path) in str(err.value) and "voxel size" in str(err.value)


def test_load_volume_zero_voxel_size_message_reports_the_zero(tmp_path):
    """The message should show the offending size (0 along axis 2), as plain numbers, not the
    header's pixdim (1, 1, 1), which look valid."""
    path = _zero_column_file(tmp_path)
    with pytest.raises(VolumeError) as err:
        load_volume(path)
    msg = str(err.value)
    assert "np.float" not in msg, msg
    assert re.search(r"(?<![\d.])0(\.0*)?(?![\d.])", msg.replace(str(path), "")), msg


@pytest.mark.parametrize("value", [0.0, -1.0], ids=["zero", "negative"])
def test_load_volume_refuses_bad_pixdim_when_the_qform_holds_the_geometry(tmp_path, value):
    """sform_code 0: the voxel sizes come from pixdim[1:4] only; a zero or negative size there
    is undefined geometry and must be refused (documented), not silently replaced by 1 / abs."""
    d = np.random.default_rng(0).random((6, 5, 4)).astype(np.float32)
    img = nib.Nifti1Image(d, np.diag([1.0, 1.0, 4.0, 1.0]))
    img.header.set_sform(None, code=0)
    img.header.set_qform(np.diag([1.0, 1.0, 4.0, 1.0]), code=1)
    nib.save(img, str(tmp_path / "q.nii"))
    raw = bytearray((tmp_path / "q.nii").read_bytes())
    assert struct.unpack("<f", raw[80:84])[0] == 1.0  # pixdim[1]
    raw[80:84] = struct.pack("<f", value)
    (tmp_path / "q.nii").write_bytes(bytes(raw))
    with pytest.raises(VolumeError, match="voxel size"):
        load_volume(tmp_path / "q.nii")


@pytest.mark.parametrize(
    "zooms,expected",
    [
        ((1, 1, 4), (2, 4)),
        ((1, 1, 1.2), None),
        ((0.9, 3.0, 0.9), (1, 3)),
        ((5.0, 1.0, 1.0), (0, 5)),
        ((1, 1, 1), None),
    ],
)
def test_thick_axis(zooms, expected):
    assert thick_axis(zooms) == expected


# ---------------------------------------------------------------------------- 5. IntensityScaler
def test_intensity_scaler_round_trip_and_background():
    rng = np.random.default_rng(0)
    v = np.zeros((20, 20, 20), dtype=np.float32) + 37.0  # background = minimum
    v[4:16, 4:16, 4:16] = 37.0 + rng.random((12, 12, 12)).astype(np.float32) * 900.0
    s = IntensityScaler.fit(v)
    f = s.forward(v)
    assert f.dtype == np.float32
    assert s.low == pytest.approx(37.0)
    assert np.all(f[v == 37.0] == 0.0)
    fg = v[v > 37.0]
    assert s.high == pytest.approx(float(np.percentile(fg, 99.5)), rel=1e-5)
    assert f.max() == pytest.approx((v.max() - 37.0) / (s.high - 37.0), rel=1e-5)
    np.testing.assert_allclose(s.inverse(f), v, rtol=1e-5, atol=1e-3)
    with pytest.raises(ValueError):
        IntensityScaler.fit(np.full((4, 4, 4), 2.0))


# ---------------------------------------------------------------------------- 6. super_resolve
def test_super_resolve_fusion_background_and_progress(tiny):
    lr = smooth_volume((24, 30, 6), seed=1, background=False)
    lr[:, :7, :] = 0.0  # 7 background slices along the slicing axis (1)
    lr[:, -2:, :] = 0.0
    calls = []
    res = super_resolve(tiny, lr, 2, 4, fusion=False, show_progress=False, progress=lambda d, t: calls.append((d, t)))
    assert res.slice_axes == (1,)
    assert res.sr.shape == res.interpolated.shape == (24, 30, 24)
    assert res.slices_run == 30 - 9
    assert res.canvas == "pad"
    np.testing.assert_array_equal(res.sr[:, :7, :], res.interpolated[:, :7, :])
    np.testing.assert_array_equal(res.sr[:, :7, :], 0.0)  # zeros interpolated stay zeros
    np.testing.assert_array_equal(res.sr[:, -2:, :], 0.0)
    assert not np.allclose(res.sr[:, 7:-2], res.interpolated[:, 7:-2])  # the network did run there
    assert calls and calls[-1] == (30, 30)
    assert all(b[0] >= a[0] for a, b in zip(calls, calls[1:]))

    calls.clear()
    res = super_resolve(tiny, lr, 2, 4, fusion=True, show_progress=False, progress=lambda d, t: calls.append((d, t)))
    assert sorted(res.slice_axes) == [0, 1] and res.slice_axes[0] == 1
    assert res.sr.shape == (24, 30, 24)
    assert calls[-1] == (30 + 24, 30 + 24)
    assert np.all(np.isfinite(res.sr))


def test_super_resolve_thick_axis_0_slices_along_axis_2(tiny):
    lr = smooth_volume((5, 12, 10), seed=2, background=False)
    res = super_resolve(tiny, lr, 0, 3, show_progress=False)
    assert res.slice_axes == (2,)
    assert res.sr.shape == (15, 12, 10)


def test_super_resolve_tiles_large_slices(tiny):
    lr = smooth_volume((40, 6, 11), seed=3, background=False)  # slices along axis 1: 40 x 44
    res = super_resolve(tiny, lr, 2, 4, show_progress=False)
    assert res.canvas == "tiles"
    assert res.sr.shape == (40, 6, 44)
    assert res.sr.dtype == np.float32
    assert np.all(np.isfinite(res.sr))
    assert res.sr.min() >= lr.min() - 1e-4  # clipped at the volume's minimum


@pytest.mark.parametrize("shape,fusion", [((20, 10, 7), False), ((40, 9, 11), False), ((45, 37, 9), True)])
def test_super_resolve_stitching_with_a_shift_model(shape, fusion):
    """With a network that returns ``x + 0.25`` the SR must be, exactly, the scaled cubic
    interpolation + 0.25 on every non-background slice (padding / tiles / blending / fusion
    must not leave a seam), and the interpolation on background slices."""
    lr = smooth_volume(shape, seed=5, background=False)
    lr[:, :2, :] = 0.0
    model = ShiftModel(shift=0.25)
    res = super_resolve(model, lr, 2, 4, fusion=fusion, show_progress=False, tile_overlap=8)
    lo = 0.0
    fg = lr[lr > lo]
    hi = float(np.percentile(fg, 99.5))
    interp = interpolate_to_thin(lr, 2, 4, mode="cubic")  # linear in the data: scaling commutes
    np.testing.assert_allclose(res.interpolated, interp, rtol=1e-4, atol=1e-3)
    # network output (scaled) = interpolation + 0.25, then clipped at the volume's minimum
    run = np.maximum(interp + 0.25 * (hi - lo), lo)
    plane1 = run.copy()
    plane1[:, :2, :] = np.maximum(interp[:, :2, :], lo)  # background slices along axis 1 not run
    expected = plane1 if not fusion else (plane1 + run) / 2.0  # plane along axis 0: all slices run
    np.testing.assert_allclose(res.sr, expected, rtol=1e-4, atol=1e-3)
    big = max(shape[0], shape[2] * 4) > 32 or (fusion and max(shape[1], shape[2] * 4) > 32)
    assert res.canvas == ("tiles" if big else "pad")


def test_phi_changes_output_once_centroids_are_set():
    torch.manual_seed(5)
    cfg = TransMRSRConfig.from_preset("tiny")
    model = TransMRSR(cfg).eval()
    lr = smooth_volume((16, 12, 5), seed=6, background=False)
    a = super_resolve(model, lr, 2, 4, phi=0.0, show_progress=False).sr
    b = super_resolve(model, lr, 2, 4, phi=1.0, show_progress=False).sr
    np.testing.assert_allclose(a, b, atol=1e-6)  # no centroids: truncation is the identity
    model.truncation.set_centroids(torch.randn(cfg.num_centroids, cfg.style_dim) * 2.0)
    a = super_resolve(model, lr, 2, 4, phi=0.0, show_progress=False).sr
    b = super_resolve(model, lr, 2, 4, phi=1.0, show_progress=False).sr
    c = super_resolve(model, lr, 2, 4, phi=1.0, show_progress=False).sr
    assert np.abs(a - b).max() > 1e-4
    np.testing.assert_array_equal(b, c)  # deterministic


# ---------------------------------------------------------------------------- 7. metrics
def test_psnr_known_mse():
    ref = np.zeros((6, 7, 8))
    ref[2, 3, 4] = 10.0  # data range 10
    test = ref + 1.0  # MSE 1
    assert psnr(test, ref) == pytest.approx(20.0, abs=1e-9)
    assert psnr(ref, ref) == float("inf")
    assert psnr(test, ref, peak=100.0) == pytest.approx(40.0, abs=1e-9)


def test_psnr_mask_uses_only_mask_voxels():
    ref = np.zeros((6, 7, 8))
    ref[0, 0, 0] = 10.0
    mask = np.zeros(ref.shape, dtype=bool)
    mask[1:4, 1:4, 1:4] = True
    test = ref + 5.0
    test[mask] = ref[mask] + 2.0  # MSE inside the mask: 4
    assert psnr(test, ref, mask) == pytest.approx(10 * math.log10(100 / 4), abs=1e-9)
    assert psnr(test, ref) < psnr(test, ref, mask)
    with pytest.raises(ValueError):
        psnr(test, ref, np.zeros(ref.shape, dtype=bool))


def test_ssim_identity_noise_and_skimage():
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(0)
    ref = ndimage.gaussian_filter(rng.random((24, 22, 20)), 2) * 100.0
    assert ssim(ref, ref) == pytest.approx(1.0, abs=1e-9)
    noisy1 = ref + rng.normal(0, 0.5, ref.shape)
    noisy2 = ref + rng.normal(0, 2.0, ref.shape)
    s1, s2 = ssim(noisy1, ref), ssim(noisy2, ref)
    assert 0 < s2 < s1 < 1
    direct = structural_similarity(
        ref,
        noisy1,
        data_range=float(ref.max() - ref.min()),
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
    )
    assert ssim(noisy1, ref) == pytest.approx(direct, rel=1e-6)


def test_ssim_mask_is_mean_of_the_skimage_map_inside_the_mask():
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(1)
    ref = ndimage.gaussian_filter(rng.random((20, 20, 20)), 2) * 10.0
    test = ref + rng.normal(0, 0.05, ref.shape)
    mask = np.zeros(ref.shape, dtype=bool)
    mask[6:14, 5:15, 7:12] = True
    _, full = structural_similarity(
        ref,
        test,
        data_range=float(ref.max() - ref.min()),
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        full=True,
    )
    assert ssim(test, ref, mask) == pytest.approx(float(full[mask].mean()), rel=1e-9)


def test_dice_by_hand():
    a = np.zeros((4, 4), dtype=int)
    b = np.zeros((4, 4), dtype=int)
    a[0, :4] = 1  # 4 voxels
    b[0, 1:4] = 1  # 3 in common
    b[1, 0:2] = 1  # 5 in total
    a[3, 3] = 2
    b[2, 2] = 2
    d = dice(a, b)
    assert d[1] == pytest.approx(2 * 3 / (4 + 5))
    assert d[2] == 0.0
    assert set(d) == {1, 2}
    assert dice(a, b, labels=[1, 3]) == {1: pytest.approx(6 / 9), 3: 1.0}


def test_slice_metrics_skips_empty_slices():
    rng = np.random.default_rng(0)
    ref = np.zeros((12, 14, 12))
    ref[:, :, 2:9] = rng.random((12, 14, 7)) * 10.0  # slices 0,1 and 9..11 along axis 2 are empty
    test = ref + 0.1
    p, s, n = slice_metrics(test, ref, axis=2)
    assert n == 7
    ranges = [ref[..., k].max() - ref[..., k].min() for k in range(2, 9)]
    expected = np.mean([10 * math.log10(rg * rg / 0.01) for rg in ranges])
    assert p == pytest.approx(expected, rel=1e-9)
    assert 0 < s < 1
    p, s, n = slice_metrics(ref, ref, axis=2)
    assert (p, s, n) == (float("inf"), pytest.approx(1.0), 7)
    with pytest.raises(ValueError):
        slice_metrics(np.zeros((12, 12, 12)), np.zeros((12, 12, 12)), axis=0)


def test_evaluate_rows_and_perfect_sr():
    hr = smooth_volume((28, 26, 24), seed=9)
    lr = simulate_thick(hr, 2, 4)
    rows = evaluate(hr.copy(), hr, lr, 2, 4)
    assert [r.name for r in rows] == ["TransMRSR", "cubic", "trilinear"]
    sr_row, cubic, linear = rows
    assert sr_row.psnr == float("inf") and sr_row.psnr_mask == float("inf") and sr_row.psnr_2d == float("inf")
    assert sr_row.ssim == pytest.approx(1.0, abs=1e-9) and sr_row.ssim_mask == pytest.approx(1.0, abs=1e-9)
    for row in (cubic, linear):
        assert np.isfinite([row.psnr, row.ssim, row.psnr_mask, row.ssim_mask, row.psnr_2d, row.ssim_2d]).all()
        assert row.ssim < 1.0
    cubic_interp = interpolate_to_thin(lr, 2, 4, mode="cubic")
    assert cubic.psnr == pytest.approx(psnr(cubic_interp, hr))
    as_dict = sr_row.as_dict()
    assert as_dict["method"] == "TransMRSR" and as_dict["psnr"] == float("inf")
    with pytest.raises(ValueError):
        evaluate(hr[:-1], hr, lr, 2, 4)


def test_segment_tissues_three_nested_boxes():
    rng = np.random.default_rng(0)
    truth = np.ones((24, 24, 24), dtype=int)
    truth[4:20, 4:20, 4:20] = 2
    truth[8:16, 8:16, 8:16] = 3
    v = truth.astype(np.float64) + rng.normal(0, 0.05, truth.shape)
    seg = segment_tissues(v, np.ones(truth.shape, dtype=bool))
    assert set(np.unique(seg).tolist()) == {1, 2, 3}
    d = dice(seg, truth, labels=[1, 2, 3])
    assert min(d.values()) > 0.9, d


def test_air_only_tiles_are_not_run_and_keep_the_interpolation():
    """On a slice much larger than the canvas with the head in one corner, tiles of pure air are
    skipped (the model sees fewer tiles) and keep the interpolated input; tiles on the head get
    the network's output, blended without seams."""
    lr = np.zeros((100, 4, 25), dtype=np.float32)  # slices along axis 1: 100 x 100 on the thin grid
    lr[:30, :, :8] = smooth_volume((30, 4, 8), seed=2, background=False) + 1.0
    model = ShiftModel(shift=0.25)
    done = []
    res = super_resolve(model, lr, 2, 4, show_progress=False, tile_overlap=8, progress=lambda d, t: done.append((d, t)))
    tiles = len(tile_starts(100, 32, 8)) ** 2
    assert 0 < model.samples < tiles * 4  # 4 foreground slices x all tiles would be the naive count
    interp = interpolate_to_thin(lr, 2, 4, mode="cubic")
    np.testing.assert_allclose(res.sr[80:, :, 80:], np.maximum(interp[80:, :, 80:], 0.0), atol=1e-5)  # far air
    assert np.all(res.sr[:10, :, :10] > interp[:10, :, :10])  # the head got the +0.25 shift
    assert done[-1][0] == done[-1][1] and tiles > 4


# ---------------------------------------------------------------------------- 4b. io: hostile and odd files
# Everything refusable from the header is refused before the image data is read: ``no_data_read``
# makes any read of the image data fail the test (nibabel's reader and ours both go through
# ``array_from_file``).
import gzip as _gzip  # noqa: E402

import transmrsr.data.io as tio  # noqa: E402


def _header(shape, dtype=np.float32, zooms=(1.0, 1.0, 4.0)) -> nib.Nifti1Header:
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(shape)
    hdr.set_data_dtype(dtype)
    hdr.set_zooms(zooms)
    hdr.set_sform(np.diag([*zooms, 1.0]), code=1)
    return hdr


def _gz_with_payload(path, hdr: nib.Nifti1Header, payload_bytes: int, data: bytes = b"") -> str:
    """A .nii.gz: ``hdr``, then ``data``, then zero bytes up to ``payload_bytes`` (written in
    chunks, compressed at level 9: a few hundred MB of zeros take a few hundred KB)."""
    hdr = hdr.copy()
    hdr.set_data_offset(352)
    with _gzip.open(path, "wb", compresslevel=9) as fh:
        fh.write(hdr.binaryblock + b"\x00" * 4)
        fh.write(data)
        left, chunk = payload_bytes - len(data), b"\x00" * (1 << 22)
        while left > 0:
            fh.write(chunk[: min(left, len(chunk))])
            left -= len(chunk)
    return str(path)


def test_gzip_bomb_header_claims_4096_cubed_is_refused_unread(tmp_path, no_data_read):
    path = _gz_with_payload(tmp_path / "bomb.nii.gz", _header((4096, 4096, 4096), np.int16), 64 * 1024**2)
    assert 40_000 < (tmp_path / "bomb.nii.gz").stat().st_size < 100_000  # about 65 KB on disk
    with pytest.raises(VolumeError, match="limit"):
        load_volume(path)


def test_gzip_bomb_within_the_voxel_count_is_refused_by_its_decompressed_size(tmp_path, no_data_read):
    """512 x 512 x 520 int16: 272 MB of zeros in a 265 KB file; reading it takes 818 MB
    (the int16 data and its float32 copy)."""
    shape = (512, 512, 520)
    path = _gz_with_payload(tmp_path / "zeros.nii.gz", _header(shape, np.int16), int(np.prod(shape)) * 2)
    assert (tmp_path / "zeros.nii.gz").stat().st_size < 400_000
    with pytest.raises(VolumeError) as err:
        load_volume(path)
    msg = str(err.value)
    assert path in msg and "limit" in msg and "MiB" in msg and tio.MAX_INPUT_BYTES_ENV in msg


def test_input_limit_by_argument_and_environment(tmp_path, monkeypatch):
    d = smooth_volume((20, 18, 16))
    path = write_nifti(tmp_path / "v.nii.gz", d, np.eye(4))
    n = 20 * 18 * 16 * (4 + 4)  # the stored float32 data + its C-ordered float32 copy
    assert load_volume(path, max_bytes=n).shape == (20, 18, 16)
    with pytest.raises(VolumeError, match="limit"):
        load_volume(path, max_bytes=n - 1)
    monkeypatch.setenv(tio.MAX_INPUT_BYTES_ENV, str(n - 1))
    with pytest.raises(VolumeError, match="limit"):
        load_volume(path)
    monkeypatch.setenv(tio.MAX_INPUT_BYTES_ENV, "1M")
    assert load_volume(path).shape == (20, 18, 16)
    monkeypatch.setenv(tio.MAX_INPUT_BYTES_ENV, "lots")
    with pytest.raises(ValueError, match=tio.MAX_INPUT_BYTES_ENV):
        load_volume(path)


def test_output_limit_uses_the_factor_in_the_header(tmp_path, monkeypatch):
    """20 x 18 x 6 voxels of 1 x 1 x 4 mm: the x4 SR takes 20*18*6*4 float32 = 34,560 bytes."""
    path = write_nifti(tmp_path / "lr.nii.gz", smooth_volume((20, 18, 6)), np.diag([1.0, 1.0, 4.0, 1.0]))
    out = 20 * 18 * 6 * 4 * 4
    assert load_volume(path, max_output_bytes=out).shape == (20, 18, 6)
    with pytest.raises(VolumeError, match="x4 super-resolution"):
        load_volume(path, max_output_bytes=out - 1)
    monkeypatch.setenv(tio.MAX_OUTPUT_BYTES_ENV, str(out - 1))
    with pytest.raises(VolumeError, match=tio.MAX_OUTPUT_BYTES_ENV):
        load_volume(path)
    assert tio.check_output_size(load_volume(path, max_output_bytes=out), 2) == out // 2


def test_gzip_payload_larger_than_the_header_declares_is_refused(tmp_path):
    """Modest dims (20 x 18 x 6 float32, 8.6 KB) followed by 64 MB of zeros: refused, having
    inflated no more than the declared data and one slack block past it."""
    hdr = _header((20, 18, 6))
    data = smooth_volume((20, 18, 6)).astype("<f4").tobytes(order="F")
    path = _gz_with_payload(tmp_path / "long.nii.gz", hdr, 64 * 1024**2, data=data)
    read = []
    original = _gzip.GzipFile.read

    def counting_read(self, size=-1):
        out = original(self, size)
        read.append(len(out))
        return out

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_gzip.GzipFile, "read", counting_read)
        with pytest.raises(VolumeError) as err:
            load_volume(path)
    assert "more data than its header declares" in str(err.value)
    assert sum(read) <= len(data) + 352 + tio.TRAILING_SLACK_BYTES + 1 + 64 * 1024


def test_small_trailing_padding_is_accepted(tmp_path):
    hdr = _header((20, 18, 6))
    d = smooth_volume((20, 18, 6))
    path = _gz_with_payload(tmp_path / "pad.nii.gz", hdr, d.nbytes + 512, data=d.astype("<f4").tobytes(order="F"))
    np.testing.assert_array_equal(load_volume(path).data, d)


def test_uncompressed_payload_larger_than_declared_is_refused_unread(tmp_path, no_data_read):
    hdr = _header((20, 18, 6))
    (tmp_path / "long.nii").write_bytes(hdr.binaryblock + b"\x00" * 4 + b"\x01" * (20 * 18 * 6 * 4 + 2 * 1024**2))
    with pytest.raises(VolumeError, match="more data than its header declares"):
        load_volume(tmp_path / "long.nii")


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_truncated_file_is_refused_with_a_clear_message(tmp_path, suffix):
    """The data stops halfway (for .nii.gz a complete gzip stream that is simply short)."""
    d = smooth_volume((20, 18, 6))
    path = tmp_path / f"half{suffix}"
    blob = _header((20, 18, 6)).binaryblock + b"\x00" * 4 + d.astype("<f4").tobytes(order="F")[: d.nbytes // 2]
    path.write_bytes(_gzip.compress(blob) if suffix == ".nii.gz" else blob)
    with pytest.raises(VolumeError) as err:
        load_volume(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: the file is truncated"), msg
    assert f"{d.nbytes:,} bytes" in msg and "damaged" not in msg and msg.count(str(path)) == 1, msg


def test_truncated_uncompressed_file_is_refused_unread(tmp_path, no_data_read):
    (tmp_path / "cut.nii").write_bytes(_header((20, 18, 6)).binaryblock + b"\x00" * 100)
    with pytest.raises(VolumeError, match="truncated"):
        load_volume(tmp_path / "cut.nii")


@pytest.mark.parametrize(
    "dtype,words",
    [(np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1")]), "colour (RGB)"), (np.complex64, "complex")],
    ids=["rgb24", "complex64"],
)
def test_rgb_and_complex_data_are_refused_unread(tmp_path, no_data_read, dtype, words):
    hdr = _header((20, 18, 6), dtype)
    n = 20 * 18 * 6 * np.dtype(dtype).itemsize
    (tmp_path / "x.nii").write_bytes(hdr.binaryblock + b"\x00" * 4 + b"\x01" * n)
    with pytest.raises(VolumeError) as err:
        load_volume(tmp_path / "x.nii")
    assert words in str(err.value) and len(str(err.value).splitlines()) == 1


@pytest.mark.parametrize(
    "zooms,words",
    [
        ((1.0, 1.0, 1e6), "outside the accepted"),
        ((1e-5, 1e-5, 1e-5), "outside the accepted"),
        ((0.01, 0.01, 0.5), "factor"),
    ],
    ids=["1x1x1e6mm", "10nm", "factor50"],
)
def test_absurd_voxel_sizes_are_refused_unread(tmp_path, no_data_read, zooms, words):
    hdr = _header((20, 18, 6), zooms=zooms)
    (tmp_path / "v.nii").write_bytes(hdr.binaryblock + b"\x00" * 4 + b"\x01" * (20 * 18 * 6 * 4))
    with pytest.raises(VolumeError, match=words):
        load_volume(tmp_path / "v.nii")


@pytest.mark.parametrize("value", [0.0, -1.0, float("nan")], ids=["zero", "negative", "nan"])
def test_bad_pixdim_is_refused_unread(tmp_path, no_data_read, value):
    hdr = _header((20, 18, 6))
    hdr.set_sform(None, code=0)
    hdr.set_qform(np.diag([1.0, 1.0, 4.0, 1.0]), code=1)
    raw = bytearray(hdr.binaryblock + b"\x00" * 4 + b"\x01" * (20 * 18 * 6 * 4))
    raw[80:84] = struct.pack("<f", value)
    (tmp_path / "p.nii").write_bytes(bytes(raw))
    with pytest.raises(VolumeError, match="voxel size"):
        load_volume(tmp_path / "p.nii")


def test_mask_reading_has_the_same_limits(tmp_path, no_data_read):
    path = _gz_with_payload(tmp_path / "mask.nii.gz", _header((512, 512, 520), np.uint8), 1024)
    with pytest.raises(VolumeError, match="limit"):
        tio.load_mask(path)


def test_public_message_names_the_file_only(tmp_path):
    path = tmp_path / "deep" / "folder" / "scan.nii.gz"
    with pytest.raises(VolumeError) as err:
        load_volume(path)
    assert str(path) in str(err.value)
    assert err.value.public_message() == "scan.nii.gz: no such file"


@pytest.mark.parametrize(
    "text,expected", [("512M", 512 * 1024**2), ("2G", 2 * 1024**3), ("1000", 1000), ("1.5kb", 1536)]
)
def test_parse_size(text, expected):
    assert tio.parse_size(text) == expected


@pytest.mark.parametrize("dtype", ["<i2", ">i2", "u1", ">f4", "<f8", "<i4"])
@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_load_volume_data_equals_nibabels_for_each_stored_type(tmp_path, dtype, suffix):
    d = (smooth_volume((9, 8, 7)) * 2).astype(dtype)
    img = nib.Nifti1Image(d, np.diag([1.0, 1.0, 3.0, 1.0]))
    img.header.set_data_dtype(dtype)
    img.header.set_slope_inter(0.25, -3.0)
    nib.save(img, str(tmp_path / f"v{suffix}"))
    vol = load_volume(tmp_path / f"v{suffix}")
    assert vol.data.dtype == np.float32 and vol.data.flags.c_contiguous
    np.testing.assert_allclose(vol.data, nib.load(str(tmp_path / f"v{suffix}")).get_fdata(), rtol=1e-6, atol=1e-4)
