"""`prepare-packaged`: real T1s from installed packages, reoriented, split, held-out subject and mask."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np

from transmrsr.cli import main
from transmrsr.data import packaged
from transmrsr.data.packaged import TEST_SHAPE, centre_crop, held_out_t1


def test_centre_crop_keeps_world_positions():
    rng = np.random.default_rng(0)
    data = rng.random((9, 12, 7)).astype(np.float32)
    affine = np.array([[-1.0, 0, 0, 40], [0, 0, 1.5, -20], [0, 2.0, 0, 5], [0, 0, 0, 1]])
    out, new = centre_crop(data, affine, (5, 14, 7))  # crop x, pad y, keep z
    assert out.shape == (5, 14, 7)
    # every kept voxel has the same world position before and after
    for i, j, k in [(0, 1, 0), (4, 12, 6), (2, 5, 3)]:
        src = np.linalg.solve(affine, new @ [i, j, k, 1])[:3].round().astype(int)
        assert np.allclose(affine @ [*src, 1], new @ [i, j, k, 1])
        assert out[i, j, k] == data[tuple(src)]
    assert np.all(out[:, 0] == 0) and np.all(out[:, -1] == 0)  # padded rows


def test_held_out_subject_is_the_icbm_t1_on_the_paper_grid():
    data, affine, mask = held_out_t1()
    assert data.shape == TEST_SHAPE and mask.shape == TEST_SHAPE
    assert nib.aff2axcodes(affine) == ("R", "A", "S")
    assert 0.15 < mask.mean() < 0.4  # the brain, not the whole box
    assert data[mask > 0].mean() > 5 * data[mask == 0].mean()


def test_prepare_packaged_splits_and_reorients(tmp_path, monkeypatch):
    """Sources stood in by files written here (the real ones are fetched with pip): one in LIA
    order like pycortex's S1 comes out RAS, the ICBM T1 is held out with its brain mask."""
    lia = np.zeros((20, 24, 22), dtype=np.float32)
    lia[5:15, 6:18, 4:20] = np.arange(10 * 12 * 16, dtype=np.float32).reshape(10, 12, 16)
    lia_affine = np.array([[-1.0, 0, 0, 10], [0, 0, 1, -11], [0, -1, 0, 12], [0, 0, 0, 1]])
    src_lia = tmp_path / "raw.nii.gz"
    nib.save(nib.Nifti1Image(lia, lia_affine), src_lia)
    real_fetch = packaged.fetch

    src_mask = tmp_path / "mask.nii.gz"  # a brain mask on the LIA grid, as the MNI152NLin6Asym one ships
    lia_mask = np.zeros_like(lia)
    lia_mask[8:12, 8:16, 6:18] = 1
    nib.save(nib.Nifti1Image(lia_mask, lia_affine), src_mask)

    def fake_fetch(src, cache, member=None):
        if src.name == "icbm152-2009a":
            return real_fetch(src, cache, member)
        return src_mask if member is not None else src_lia

    monkeypatch.setattr(packaged, "fetch", fake_fetch)
    out = tmp_path / "prepared"
    assert main(["prepare-packaged", "--out", str(out)]) == 0
    manifest = json.loads((out / "sources.json").read_text())
    roles = {v["name"]: v["role"] for v in manifest["volumes"]}
    assert roles == {
        "pycortex-S1": "train",
        "mni152nlin6asym": "train",
        "mni152nlin6asym-brain": "train",
        "icbm152-2009a": "test",
    }
    # the skull-stripped copy: the T1 inside its mask, zero outside, on the same RAS grid
    full = nib.load(out / "train" / "mni152nlin6asym.nii.gz")
    brain = nib.load(out / "train" / "mni152nlin6asym-brain.nii.gz")
    assert np.allclose(brain.affine, full.affine) and brain.shape == full.shape
    b, f = brain.get_fdata(), full.get_fdata()
    inside = b != 0
    assert inside.sum() > 0 and np.array_equal(b[inside], f[inside]) and (f[~inside] != 0).sum() > 0
    s1 = nib.load(out / "train" / "pycortex-S1.nii.gz")
    assert nib.aff2axcodes(s1.affine) == ("R", "A", "S") and s1.shape == (20, 22, 24)
    # same world position, same value
    world = lia_affine @ [7, 9, 5, 1]
    ijk = np.linalg.solve(s1.affine, world)[:3].round().astype(int)
    assert s1.get_fdata()[tuple(ijk)] == lia[7, 9, 5]
    test = nib.load(out / "test" / "icbm152-2009a.nii.gz")
    mask = nib.load(out / "masks" / "icbm152-2009a_brain.nii.gz")
    assert test.shape == TEST_SHAPE and np.allclose(mask.affine, test.affine)
    data, affine, m = held_out_t1()
    assert np.array_equal(test.get_fdata(dtype=np.float32), data) and np.array_equal(mask.get_fdata() > 0, m > 0)


def test_prepare_packaged_refuses_unknown_test_subject(tmp_path, capsys):
    assert main(["prepare-packaged", "--out", str(tmp_path), "--test", "nobody"]) == 2
    assert "unknown test subject 'nobody'" in capsys.readouterr().err
    assert not (tmp_path / "sources.json").exists()
