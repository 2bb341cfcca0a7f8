"""prepare-ixi on a tarball laid out like IXI's (volumes made in the test)."""

from __future__ import annotations

import tarfile

import nibabel as nib
import numpy as np
import pytest

from transmrsr.cli import main as cli_main
from transmrsr.data.ixi import MNI_AFFINE, MNI_SHAPE


def _ixi_tar(tmp_path, names):
    rng = np.random.default_rng(0)
    # IXI-like storage: anisotropic voxels, not RAS-ordered axes
    affine = np.array([[0, 0, 1.2, -50.0], [-0.94, 0, 0, 60.0], [0, -0.94, 0, 80.0], [0, 0, 0, 1]])
    tar_path = tmp_path / "IXI-T1.tar"
    with tarfile.open(tar_path, "w") as tar:
        for name in names:
            v = np.zeros((60, 64, 48), np.float32)
            v[10:50, 8:56, 6:42] = rng.random((40, 48, 36)) * 100 + 50
            f = tmp_path / name
            nib.save(nib.Nifti1Image(v, affine), f)
            tar.add(f, arcname=name)
    return tar_path


def test_prepare_ixi_writes_mni_grid_volumes(tmp_path, capsys):
    tar_path = _ixi_tar(tmp_path, ["IXI002-Guys-0828-T1.nii.gz", "IXI012-HH-1211-T1.nii.gz"])
    out = tmp_path / "prepared"
    assert cli_main(["prepare-ixi", str(tar_path), "--out", str(out), "--no-register"]) == 0
    files = sorted((out / "T1").glob("*.nii.gz"))
    assert [f.name for f in files] == ["IXI002-Guys-0828-T1.nii.gz", "IXI012-HH-1211-T1.nii.gz"]
    img = nib.load(files[0])
    assert img.shape == MNI_SHAPE
    np.testing.assert_allclose(img.affine, MNI_AFFINE)
    data = np.asarray(img.dataobj)
    assert 50 <= data.max() <= 150 and 0.01 < (data > 0).mean() < 0.5
    # the head's centre of mass sits at the grid's centre
    com = np.array(np.nonzero(data > 0)).mean(axis=1)
    np.testing.assert_allclose(com, (np.array(MNI_SHAPE) - 1) / 2, atol=2.0)
    assert "not registered" in capsys.readouterr().out
    # a re-run keeps what is there and writes nothing new
    assert cli_main(["prepare-ixi", str(tar_path), "--out", str(out), "--no-register"]) == 0
    assert "0 volume(s) written" in capsys.readouterr().out


@pytest.mark.parametrize("content", [None, b"not a tar archive"])
def test_prepare_ixi_refuses_bad_tarballs(tmp_path, capsys, content):
    path = tmp_path / "IXI-T1.tar"
    if content is not None:
        path.write_bytes(content)
    assert cli_main(["prepare-ixi", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(path) in err
