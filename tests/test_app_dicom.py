"""A DICOM series uploaded to the app as a ``.zip`` (issue 20): a real ``python app.py`` driven through
its ``/super_resolve`` API with gradio_client, on a real vendor series (tests/data/dicom, Philips EPI:
64x64, 3.75 mm in plane, 6 mm slices every 8 mm, a 2 mm gap). The SR's grid must be the NIfTI route's
(dcm2niix by hand, the NIfTI uploaded) within 1e-3 mm, and its values those of the library run on that
NIfTI with its sidecar; the plan of a DICOM zip carries its gap (slice thickness below the spacing);
a zip of two structural series is refused with a message that lists them and names no server folder."""

from __future__ import annotations

import re
import subprocess
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
pytest.importorskip("gradio_client")

from transmrsr import TransMRSR  # noqa: E402
from transmrsr.data.dicom import dcm2niix_command  # noqa: E402
from transmrsr.inference import DEFAULT_FUSION, super_resolve_acquisition_file  # noqa: E402
from transmrsr.studio import plan_volume  # noqa: E402

from apphelpers import running_app  # noqa: E402

DATA = Path(__file__).parent / "data" / "dicom"
PHILIPS = DATA / "philips_epi_9slices.zip"
SIEMENS = DATA / "siemens_t1_fl2d_sag_12slices.zip"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_dir):
    """``python app.py`` serving the tiny model (TRANSMRSR_MODEL: it runs at the upload's own integer factor)."""
    with running_app(tmp_path_factory.mktemp("work"), tiny_dir) as app:
        yield app


def by_hand(zip_path: Path, folder: Path) -> Path:
    """The NIfTI route: the zip unpacked and converted by dcm2niix run by hand (its sidecar beside it)."""
    dicom = folder / "dicom"
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(dicom)
    subprocess.run(
        [dcm2niix_command(), "-z", "y", "-f", "by_hand", "-o", str(folder), str(dicom)], check=True, capture_output=True
    )
    return folder / "by_hand.nii.gz"


def test_dicom_zip_upload_matches_the_nifti_route(server, tiny_dir, tmp_path):
    from gradio_client import Client, handle_file

    nifti = by_hand(PHILIPS, tmp_path)
    client = Client(server.url, verbose=False)
    sr_zip, info_zip = client.predict(handle_file(str(PHILIPS)), 4, 0.9, False, api_name="/super_resolve")
    sr_nii, info_nii = client.predict(handle_file(str(nifti)), 4, 0.9, False, api_name="/super_resolve")
    # 8 mm over 3.75 mm: ×2.13, served by the tiny model at ×2 on the library's isotropic grid
    assert abs(info_zip["factor"] - 8 / 3.75) < 1e-3 and info_zip["axis"] == 2 and not info_zip["simulated_from_hr"]
    a, b = nib.load(sr_zip), nib.load(sr_nii)
    assert a.shape == b.shape == tuple(info_zip["shape"]) and a.shape[2] > 9
    assert np.abs(a.affine - b.affine).max() < 1e-3  # the same grid, in mm
    assert np.abs(np.asarray(info_zip["affine"]) - b.affine).max() < 1e-3
    np.testing.assert_allclose(np.linalg.norm(a.affine[:3, :3], axis=0), 3.75, atol=1e-3)  # isotropic output
    # the values: the library on the hand-made NIfTI with its sidecar (as the app's conversion leaves it)
    tiny = TransMRSR.from_pretrained(tiny_dir)
    want = super_resolve_acquisition_file(
        nifti,
        tmp_path / "local.nii.gz",
        lambda m: tiny,
        served=(2,),
        phi=0.9,
        fusion=DEFAULT_FUSION,
        show_progress=False,
    )
    got = np.asarray(a.dataobj, dtype=np.float32)
    np.testing.assert_allclose(got, want.sr, rtol=1e-4, atol=1e-3 * float(np.abs(want.sr).max()))
    assert info_zip["input_sha256"] and info_zip["input_sha256"] != info_nii["input_sha256"]
    assert Path(sr_zip).name == "philips_epi_9slices_sr_x2p13.nii.gz"
    # the conversion went into the session's folder and is gone once the case is made
    assert not [p for p in (server.work / "sessions").rglob(".dicom-*")], server.log()


def test_plan_of_a_dicom_zip_carries_the_gap_and_the_series():
    plan = plan_volume(SIEMENS, 4, served=lambda r: (4, 8))
    assert plan.acq is not None and plan.acq.has_gap and plan.acq.slice_thickness == pytest.approx(4.0)
    assert plan.acq.zooms[2] == pytest.approx(4.8, abs=1e-3) and plan.label == "4.73"
    assert "series 3 't1_fl2d_sag' (Siemens)" in plan.series and "(0.8 mm gap)" in plan.series


def two_series_zip(dest: Path, tmp: Path) -> Path:
    """The Siemens T1 series twice in one zip, the copy as series 4 (new UIDs): two structural series."""
    with zipfile.ZipFile(SIEMENS) as src, zipfile.ZipFile(dest, "w") as out:
        uid = pydicom.uid.generate_uid()
        for info in src.infolist():
            raw = src.read(info)
            out.writestr("t1/" + info.filename, raw)
            path = tmp / Path(info.filename).name
            path.write_bytes(raw)
            ds = pydicom.dcmread(path)
            ds.SeriesInstanceUID, ds.SeriesNumber = uid, 4
            ds.SOPInstanceUID = pydicom.uid.generate_uid()
            ds.save_as(path)
            out.writestr("t1_again/" + info.filename, path.read_bytes())
    return dest


def test_a_zip_of_two_series_is_refused_with_the_series_listed_and_no_server_path(server, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    upload = two_series_zip(tmp_path / "study.zip", tmp_path)
    with pytest.raises(AppError) as err:
        Client(server.url, verbose=False).predict(handle_file(str(upload)), 4, 0.9, False, api_name="/super_resolve")
    text = str(err.value)
    assert text.startswith("study.zip: 2 structural series"), text
    assert "3 't1_fl2d_sag'" in text and "4 't1_fl2d_sag'" in text and "upload a zip of that series alone" in text
    assert "--series" not in text  # the app has no series option
    assert not re.search(r"(^|[\s(:'\"])/", text), text  # no absolute path of the server
    for word in ("gradio", "sessions", ".dicom-", "transmrsr-dicom-", str(server.work)):
        assert word not in text, text


def test_a_zip_of_a_structural_and_an_epi_series_plans_the_structural_one(tmp_path):
    """A study zip holding the T1 and a DTI b=0 series (echo-planar: set aside) plans the T1."""
    upload = tmp_path / "study.zip"
    with zipfile.ZipFile(upload, "w") as out:
        for folder, src in (("t1", SIEMENS), ("dti", DATA / "toshiba_dti_ax30d_b0_20slices.zip")):
            with zipfile.ZipFile(src) as zf:
                for info in zf.infolist():
                    out.writestr(f"{folder}/{info.filename}", zf.read(info))
    plan = plan_volume(upload, 4, served=lambda r: (4, 8))
    assert plan.series.startswith("series 3 't1_fl2d_sag' (Siemens)") and plan.acq.has_gap
