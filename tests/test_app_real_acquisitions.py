"""Real thick-slice acquisitions through the app with the bundled weights (issue 17): a real ``python app.py`` on
``checkpoints/`` driven through its ``/super_resolve`` API with gradio_client, against ``transmrsr sr`` on the same
input. A GE PD FSE crop (0.86 x 0.86 x 7.07 mm, x8.23, not T1) uploaded as NIfTI, and a Philips series with a gap
(6 mm slices every 8 mm, x2.13) uploaded as a DICOM zip: the app's SR must be the CLI's, on the same grid (1e-3 mm),
and the non-T1 scan must carry its warning."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

pytest.importorskip("gradio_client")

from transmrsr.data.dicom import dcm2niix_command  # noqa: E402

from apphelpers import running_app  # noqa: E402

DATA = Path(__file__).parent / "data"
PDFSE = DATA / "thick" / "pdfse.nii.gz"
PHILIPS = DATA / "dicom" / "philips_epi_9slices.zip"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``python app.py`` as shipped: the bundled weights, no model configured."""
    with running_app(tmp_path_factory.mktemp("work")) as app:
        yield app


def cli_sr(inp: Path, out: Path) -> nib.Nifti1Image:
    """``transmrsr sr`` with the bundled weights (its default), as a user runs it."""
    proc = subprocess.run(
        [sys.executable, "-m", "transmrsr", "sr", str(inp), str(out), "--quiet"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    return nib.load(out)


def same_result(app_path: str, cli: nib.Nifti1Image) -> None:
    got = nib.load(app_path)
    assert got.shape == cli.shape
    assert np.abs(got.affine - cli.affine).max() < 1e-3  # the same grid, in mm
    a, b = np.asarray(got.dataobj, dtype=np.float32), np.asarray(cli.dataobj, dtype=np.float32)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3 * float(np.abs(b).max()))


def test_real_pd_fse_upload_runs_like_the_cli_with_a_contrast_warning(server, tmp_path):
    from gradio_client import Client, handle_file

    alone = tmp_path / "pdfse.nii.gz"  # an upload carries no sidecar: the CLI gets the file alone as well
    shutil.copy(PDFSE, alone)
    sr, info = Client(server.url, verbose=False).predict(
        handle_file(str(alone)), 4, 0.9, False, api_name="/super_resolve"
    )
    assert abs(info["factor"] - 7.071068 / 0.859375) < 1e-3 and info["axis"] == 2 and not info["simulated_from_hr"]
    assert any("T1" in w and "PD" in w for w in info["warnings"]), info["warnings"]
    cli = cli_sr(alone, tmp_path / "cli.nii.gz")
    same_result(sr, cli)
    zooms = np.linalg.norm(cli.affine[:3, :3], axis=0)
    np.testing.assert_allclose(zooms, 0.859375, atol=1e-3)  # isotropic at the in-plane spacing


def test_real_dicom_series_with_a_gap_runs_like_the_cli(server, tmp_path):
    from gradio_client import Client, handle_file

    sr, info = Client(server.url, verbose=False).predict(
        handle_file(str(PHILIPS)), 4, 0.9, False, api_name="/super_resolve"
    )
    assert abs(info["factor"] - 8 / 3.75) < 1e-3 and info["axis"] == 2
    # the CLI on the same series, unpacked and converted by dcm2niix by hand (its sidecar, with the gap, beside it)
    dicom = tmp_path / "dicom"
    with zipfile.ZipFile(PHILIPS) as zf:
        zf.extractall(dicom)
    subprocess.run(
        [dcm2niix_command(), "-z", "y", "-f", "series", "-o", str(tmp_path), str(dicom)],
        check=True,
        capture_output=True,
    )
    cli = cli_sr(tmp_path / "series.nii.gz", tmp_path / "cli.nii.gz")
    same_result(sr, cli)
