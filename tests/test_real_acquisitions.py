"""Geometry of real thick-slice acquisitions (issue 17) on small crops of the real files.

The crops in ``tests/data/thick/`` (sources and licences in ``tests/data/README.md``) keep each
file's own affine (orientation, obliquity, head position) and its dcm2niix sidecar (slice thickness:
the gap). Each goes through :func:`transmrsr.inference.super_resolve_acquisition_file`, the path
``transmrsr sr`` takes, with the tiny test model (the geometry does not depend on the weights), and
the written NIfTI is checked: isotropic at the finest in-plane spacing, the first and last thick
slice centres and the field-of-view corners on the input's (1e-3 mm), the gap found where there is one.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from transmrsr import TransMRSR
from transmrsr.data.io import VolumeError, load_volume
from transmrsr.inference import detect_acquisition, super_resolve_acquisition_file

DATA = Path(__file__).parent / "data" / "thick"

# id: (thick voxel axis, slice spacing mm, slice thickness mm, finest in-plane spacing mm)
CASES = {
    "flash5mm_HFS": (2, 4.8, 4.0, 1.015625),
    "flash5mm_HFP": (2, 4.8, 4.0, 1.015625),
    "flash5mm_HFDL": (2, 4.8, 4.0, 1.015625),
    "flash5mm_HFDR": (2, 4.8, 4.0, 1.015625),
    "pdfse": (2, 7.0711, 5.0, 0.859375),
    "vsseg": (2, 1.5, 1.5, 0.41015625),
}
TOL = 1e-3  # mm


@pytest.fixture(scope="module")
def tiny_model(tiny_dir):
    return TransMRSR.from_pretrained(tiny_dir).eval()


def world(affine: np.ndarray, ijk) -> np.ndarray:
    return nib.affines.apply_affine(affine, np.asarray(ijk, dtype=np.float64))


def test_crops_are_small_and_present():
    files = sorted(DATA.glob("*.nii.gz"))
    assert {f.name.split(".")[0] for f in files} >= set(CASES)
    assert sum(f.stat().st_size for f in DATA.iterdir()) < 1_000_000


@pytest.mark.parametrize("ident", sorted(CASES))
def test_detected_geometry(ident):
    axis, spacing, thickness, finest = CASES[ident]
    acq = detect_acquisition(load_volume(DATA / f"{ident}.nii.gz"))
    assert acq.axis == axis
    assert acq.zooms[axis] == pytest.approx(spacing, abs=1e-3)
    assert acq.slice_thickness == pytest.approx(thickness, abs=1e-3)
    gap = acq.zooms[axis] - acq.slice_thickness
    if thickness < spacing - 1e-3:  # the 2-D FLASH (0.8 mm) and the GE PD FSE (2.07 mm) have gaps
        assert gap == pytest.approx(spacing - thickness, abs=1e-3) and gap > 0.5
    else:
        assert abs(gap) < 1e-3
    assert acq.factors[axis] == pytest.approx(spacing / finest, rel=1e-4)


@pytest.mark.parametrize("ident", sorted(CASES))
def test_sr_output_geometry(ident, tiny_model, tmp_path):
    axis, spacing, thickness, finest = CASES[ident]
    src = DATA / f"{ident}.nii.gz"
    vol = load_volume(src)
    out = tmp_path / f"{ident}_sr.nii.gz"
    res = super_resolve_acquisition_file(vol, out, lambda m: tiny_model, fusion=False, show_progress=False)
    img = nib.load(out)
    a_in, a_out = np.asarray(vol.affine, dtype=np.float64), img.affine
    n_in, n_out = np.array(vol.shape[:3]), np.array(img.shape[:3])
    assert tuple(n_out) == res.sr.shape
    # isotropic at the finest in-plane spacing, orientation kept (same direction cosines)
    out_sp = np.sqrt((a_out[:3, :3] ** 2).sum(0))
    np.testing.assert_allclose(out_sp, finest, atol=1e-4)
    in_sp = np.sqrt((a_in[:3, :3] ** 2).sum(0))
    np.testing.assert_allclose(a_out[:3, :3] / out_sp, a_in[:3, :3] / in_sp, atol=1e-6)
    f = in_sp / out_sp
    assert n_out[axis] == round(n_in[axis] * f[axis])
    # first and last thick-slice centres (all four in-plane corner voxels of each): the output's
    # affine at output coordinate q (k + 1/2) - 1/2 is the input's voxel centre k, per axis
    for k in (0, n_in[axis] - 1):
        for i, j in itertools.product(*[(0, n_in[x] - 1) for x in range(3) if x != axis]):
            ijk = np.insert(np.array([i, j], dtype=np.float64), axis, k)
            np.testing.assert_allclose(world(a_out, f * (ijk + 0.5) - 0.5), world(a_in, ijk), atol=TOL)
    # the thick-slice centres lie inside the output grid's extent
    u = f[axis] * (np.array([0, n_in[axis] - 1]) + 0.5) - 0.5
    assert u[0] >= -0.5 and u[1] <= n_out[axis] - 0.5 + 1e-6
    # field-of-view corners: all eight outer corners of the input's voxel grid are the output's
    # (the output grid starts at the same edge; along an axis of non-integer n*q the far edge is at
    # output coordinate n*q - 1/2, within half an output voxel of the last output voxel's edge)
    for corner in itertools.product(*[(-0.5, n - 0.5) for n in n_in]):
        c = np.asarray(corner)
        np.testing.assert_allclose(world(a_out, f * (c + 0.5) - 0.5), world(a_in, c), atol=TOL)
    start = world(a_out, [-0.5, -0.5, -0.5])
    np.testing.assert_allclose(start, world(a_in, [-0.5, -0.5, -0.5]), atol=TOL)
    far_in = world(a_in, n_in - 0.5)
    far_out = world(a_out, n_out - 0.5)
    assert np.linalg.norm(far_out - far_in) <= 0.5 * finest * np.sqrt(3) + TOL
    for x in range(3):
        if x != axis and abs(f[x] - 1) < 1e-4:  # in-plane axes already at the finest spacing: kept
            assert n_out[x] == n_in[x]
    # the data are finite and in the input's range on the output grid
    assert np.isfinite(res.sr).all() and res.sr.min() >= float(vol.data.min()) - 1e-3


def test_isotropic_scan_is_refused():
    """The 2 mm isotropic XA30 T1w has no thick axis: refused in one line naming the file."""
    with pytest.raises(VolumeError, match="isotropic"):
        detect_acquisition(load_volume(DATA / "t1_2mm.nii.gz"))
