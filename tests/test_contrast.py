"""``studio.contrast_guess`` (issue 17): the hint that an upload is not T1-weighted, from its file
name, its NIfTI description and its BIDS / dcm2niix JSON sidecar (``SeriesDescription``,
``ProtocolName``). Names with a slice size, plane or 3-D prefix glued to the contrast word are
caught; T1 names (and T1-weighted FLAIR) are never flagged; T2* counts as not T1."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from transmrsr.studio import CaseOptions, contrast_guess, input_warnings, plan_volume, run_case

NOT_T1 = {
    # issue 17's names: a digit or separator right after the contrast word
    "flair3mm.nii.gz": "FLAIR",
    "t2w2mm.nii.gz": "T2W",
    "sub-01_acq-3mm_FLAIR.nii.gz": "FLAIR",
    "pd_tse.nii.gz": "PD",
    # the same family: sequence names, planes and 3-D prefixes glued on, BIDS suffixes
    "pdfse.nii.gz": "PD",
    "t2_tse_tra_p2_320.nii": "T2",
    "3DFLAIR.nii.gz": "FLAIR",
    "axT2.nii": "T2",
    "t2flair_sag.nii.gz": "FLAIR",
    "sub-01_T2w.nii.gz": "T2W",
    "sub-01_ses-2_PDw.nii.gz": "PDW",
    "flair_2.nii": "FLAIR",
    "dwi1000.nii.gz": "DWI",
    "sub-01_run-1_dwi.nii.gz": "DWI",
    # T2*: not T1 (a gradient-echo T2*-weighted scan)
    "t2star.nii.gz": "T2*",
    "T2*_GRE_ax.nii": "T2*",
    "sub-01_T2starw.nii.gz": "T2*W",
    "t2map.nii.gz": "T2 map",
}

T1 = [
    "t1.nii",
    "t1w.nii.gz",
    "T1w.nii",
    "mprage.nii.gz",
    "T1_MPRAGE.nii",
    "t1_mprage_sag_p2_iso.nii.gz",
    "t1_fl2d_sag.nii",
    "sub-01_T1w.nii.gz",
    "sub-01_acq-mprage_T1w.nii.gz",
    "MP2RAGE_UNI.nii",
    "tfl3d1_16ns.nii",
    "3D_SPGR.nii",
    "bravo.nii.gz",
    "t1_2mm.nii.gz",
    "T1ce.nii.gz",
    "T1_FLAIR_ax.nii.gz",
    "t1flair.nii",  # a T1-weighted FLAIR is T1
    "sub-PD001_T1w.nii.gz",
    "sub-PD001.nii.gz",
    "sub-ct02.nii",  # subject ids are not contrasts
    "scan.nii.gz",
    "contrast.nii",
    "radcliffe_head.nii.gz",
    "product.nii",
    "pdf_export.nii",
]


@pytest.mark.parametrize("name", list(NOT_T1))
def test_names_that_say_another_contrast(name):
    assert contrast_guess(name, None) == f"its name says {NOT_T1[name]}"


@pytest.mark.parametrize("name", T1)
def test_t1_and_neutral_names_are_not_flagged(name):
    assert contrast_guess(name, None) is None


def test_only_the_file_name_of_a_path_is_read(tmp_path):
    folder = tmp_path / "flair_study"  # the folder says FLAIR, the file is a T1
    folder.mkdir()
    assert contrast_guess(str(folder / "t1.nii.gz"), None) is None


def _header(descrip: str) -> nib.Nifti1Header:
    h = nib.Nifti1Header()
    h["descrip"] = descrip.encode()
    return h


def test_header_description():
    assert contrast_guess("scan.nii.gz", _header("AX T2 FLAIR")) == "its header says FLAIR"
    assert contrast_guess("scan.nii.gz", _header("TE=90;Time=101010.000;phase=1")) is None  # dcm2niix's own
    assert contrast_guess("scan.nii.gz", _header("T1 FLAIR")) is None
    assert contrast_guess("scan.nii.gz", "not a header") is None


def _volume(path, data=None) -> None:
    data = np.random.default_rng(0).normal(100, 10, (24, 24, 6)).astype(np.float32) if data is None else data
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 4.0, 1.0])), path)


def test_sidecar_beside_the_file(tmp_path):
    img = tmp_path / "scan.nii.gz"
    _volume(img)
    (tmp_path / "scan.json").write_text(json.dumps({"SeriesDescription": "t2_tse_tra", "ProtocolName": "t2_tse_tra"}))
    assert contrast_guess(str(img), None) == "its sidecar's SeriesDescription says T2"  # found from the path
    assert contrast_guess("scan.nii.gz", None, sidecar=img) == "its sidecar's SeriesDescription says T2"
    assert (
        contrast_guess("scan.nii.gz", None, sidecar=tmp_path / "scan.json") == "its sidecar's SeriesDescription says T2"
    )
    assert contrast_guess("scan.nii.gz", None) is None  # a bare name: no sidecar is looked for
    assert contrast_guess("scan.nii.gz", None, sidecar={"ProtocolName": "AX FLAIR 3mm"}) == (
        "its sidecar's ProtocolName says FLAIR"
    )
    assert contrast_guess("scan.nii.gz", None, sidecar={"SeriesDescription": "t1_mprage_sag"}) is None
    assert contrast_guess("scan.nii.gz", None, sidecar={"SeriesDescription": 3}) is None
    (tmp_path / "scan.json").write_text("{not json")
    assert contrast_guess(str(img), None) is None  # an unreadable sidecar is no hint
    # the name is read first
    assert contrast_guess("flair.nii", None, sidecar={"SeriesDescription": "t2"}) == "its name says FLAIR"


def test_input_warnings_read_the_sidecar(tmp_path):
    img = tmp_path / "sub-01_acq-thick_run-1.nii.gz"
    _volume(img)
    (tmp_path / "sub-01_acq-thick_run-1.json").write_text(json.dumps({"SeriesDescription": "pd_tse_cor"}))
    (w,) = input_warnings(img.name, None, 4, (4, 8), sidecar=img)
    assert "not look like a T1-weighted scan (its sidecar's SeriesDescription says PD)" in w
    assert "Adapting to this scan fits them to it first" in w  # what the reader can do about it


def test_a_case_warns_from_its_sidecar(tmp_path, tiny_model):
    """run_case (what the app calls) reads the uploaded file's sidecar when it has one beside it."""
    img = tmp_path / "scan.nii.gz"
    yy, xx = np.mgrid[:24, :24]
    _volume(img, np.repeat((100 + 50 * np.sin(xx / 3.0) * np.cos(yy / 4.0))[..., None], 6, axis=2).astype(np.float32))
    (tmp_path / "scan.json").write_text(json.dumps({"SeriesDescription": "FLAIR_3mm_ax"}))
    case = run_case(img, tiny_model, tmp_path / "out", CaseOptions(plan=plan_volume(img, 4), fusion=False, served=(4,)))
    assert case.factor == 4 and any("its sidecar's SeriesDescription says FLAIR" in w for w in case.warnings)
