"""DICOM in (dcm2niix) and derived DICOM out, on real vendor series (tests/data/dicom, see its README).

Geometry is checked against the DICOM headers themselves (read with pydicom, independently of
dcm2niix): every pixel centre of every slice / frame must fall on a voxel centre of the NIfTI
within 1e-3 mm, with the same value (up to the vendor's linear scaling); and against the NIfTI
route (dcm2niix run by hand, then ``sr`` on the NIfTI): same affine within 1e-3 mm, same SR.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")

from transmrsr.cli import main  # noqa: E402
from transmrsr.data.dicom import (  # noqa: E402
    convert_dicom,
    dcm2niix_command,
    is_dicom_input,
    list_series,
    write_derived_series,
)
from transmrsr.data.io import VolumeError, load_volume  # noqa: E402
from transmrsr.inference import detect_acquisition  # noqa: E402

DATA = Path(__file__).parent / "data" / "dicom"
SIEMENS = DATA / "siemens_t1_fl2d_sag_12slices.zip"
PHILIPS = DATA / "philips_epi_9slices.zip"

#: file -> (manufacturer, shape, slice thickness mm, slice spacing mm)
VENDORS = {
    "siemens_t1_fl2d_sag_12slices.zip": ("Siemens", (256, 256, 12), 4.0, 4.8),
    "siemens_xa10_enhanced_epi.dcm": ("Siemens", (64, 64, 6), 2.4, 2.4),
    "philips_epi_9slices.zip": ("Philips", (64, 64, 9), 6.0, 8.0),
    "toshiba_dti_ax30d_b0_20slices.zip": ("Toshiba", (64, 64, 20), 3.0, 3.0),
    "ge_dwi_2slices.zip": ("GE", (256, 256, 2), 3.0, 3.0),
    "uih_dti_1volume.zip": ("UIH", (64, 64, 20), 3.5, 4.2),
}


def unpack(src: Path, dest: Path) -> Path:
    """The DICOM files of a test input in a folder of their own."""
    dest.mkdir(parents=True, exist_ok=True)
    if src.suffix == ".zip":
        with zipfile.ZipFile(src) as zf:
            zf.extractall(dest)
    else:
        shutil.copy(src, dest / src.name)
    return dest


def dicom_frames(folder: Path):
    """Every 2-D frame of the DICOM files in ``folder``: (position, row direction, column
    direction, (row spacing, column spacing), stored pixels), LPS mm, from the headers alone."""
    for p in sorted(folder.iterdir()):
        ds = pydicom.dcmread(p)
        pixels = np.asarray(ds.pixel_array, dtype=np.float64)
        if "PerFrameFunctionalGroupsSequence" in ds:  # enhanced multi-frame
            shared = ds.SharedFunctionalGroupsSequence[0]
            for k, frame in enumerate(ds.PerFrameFunctionalGroupsSequence):

                def pick(name, seq, frame=frame, shared=shared):
                    for g in (frame, shared):
                        if seq in g:
                            return getattr(g[seq].value[0], name)
                    raise KeyError(name)

                iop = np.array(pick("ImageOrientationPatient", "PlaneOrientationSequence"), dtype=float)
                ipp = np.array(pick("ImagePositionPatient", "PlanePositionSequence"), dtype=float)
                sp = np.array(pick("PixelSpacing", "PixelMeasuresSequence"), dtype=float)
                yield ipp, iop[:3], iop[3:], sp, pixels[k]
        else:
            iop = np.array(ds.ImageOrientationPatient, dtype=float)
            yield (
                np.array(ds.ImagePositionPatient, dtype=float),
                iop[:3],
                iop[3:],
                np.array(ds.PixelSpacing, float),
                pixels,
            )


def check_pixels_on_voxels(folder: Path, nifti: Path) -> int:
    """Every DICOM pixel centre lies on a NIfTI voxel centre (< 1e-3 mm) holding its value (up to
    one linear scaling for all); returns the number of frames checked."""
    img = nib.load(str(nifti))
    data = np.asarray(img.dataobj, dtype=np.float64).reshape(img.shape[:3])
    inv = np.linalg.inv(img.affine)
    stored, found = [], []
    for ipp, row_dir, col_dir, (dr, dc), pix in dicom_frames(folder):
        r, c = np.meshgrid(np.arange(pix.shape[0]), np.arange(pix.shape[1]), indexing="ij")
        lps = ipp + c[..., None] * dc * row_dir + r[..., None] * dr * col_dir
        ras = lps * np.array([-1.0, -1.0, 1.0])
        vox = ras.reshape(-1, 3) @ inv[:3, :3].T + inv[:3, 3]
        idx = np.round(vox).astype(int)
        back = idx @ img.affine[:3, :3].T + img.affine[:3, 3]
        assert np.abs(back - ras.reshape(-1, 3)).max() < 1e-3, "a DICOM pixel centre is off the NIfTI voxel grid"
        assert (idx >= 0).all() and (idx < np.array(data.shape)).all(), "a DICOM pixel falls outside the NIfTI"
        stored.append(pix.ravel())
        found.append(data[tuple(idx.T)])
    s, f = np.concatenate(stored), np.concatenate(found)
    a, b = np.polyfit(s, f, 1)  # the vendor's / dcm2niix's scaling is linear
    assert np.abs(a * s + b - f).max() <= 1e-3 * max(1.0, np.abs(f).max()), "voxel values differ from the DICOM pixels"
    return len(stored)


@pytest.mark.parametrize("name", list(VENDORS))
def test_vendor_geometry_matches_headers_and_nifti_route(name, tmp_path):
    vendor, shape, thickness, spacing = VENDORS[name]
    src = DATA / name
    found = list_series(src, tmp_path / "work")
    assert len(found) == 1
    s = found[0]
    assert s.sidecar["Manufacturer"] == vendor
    assert tuple(sorted(s.shape[:3])) == tuple(sorted(shape))
    assert s.slice_thickness == pytest.approx(thickness, abs=1e-3)
    assert s.spacing == pytest.approx(spacing, abs=1e-3)
    folder = unpack(src, tmp_path / "dicom")
    mosaic = vendor == "UIH"  # 20 slices tiled in one 256 x 320 image: checked through its orientation
    if mosaic:
        ds = pydicom.dcmread(next(folder.iterdir()))
        iop = np.array(ds.ImageOrientationPatient, dtype=float) * np.array([-1, -1, 1, -1, -1, 1])
        aff = nib.load(str(s.nifti)).affine
        cols = aff[:3, :3] / np.linalg.norm(aff[:3, :3], axis=0)
        for d in (iop[:3], iop[3:]):
            assert np.abs(np.abs(cols.T @ d).max() - 1) < 1e-5
        assert np.allclose(sorted(s.zooms), sorted([3.5, 3.5, 4.2]), atol=1e-3)
    else:
        assert check_pixels_on_voxels(folder, s.nifti) == shape[2]
    # the NIfTI route: dcm2niix run by hand on the same files gives the same grid
    route = tmp_path / "route"
    route.mkdir()
    subprocess.run(
        [dcm2niix_command(), "-z", "y", "-f", "by_hand", "-o", str(route), str(folder)], check=True, capture_output=True
    )
    ref = nib.load(str(route / "by_hand.nii.gz"))
    ours = nib.load(str(s.nifti))
    assert ref.shape == ours.shape
    assert np.abs(ref.affine - ours.affine).max() < 1e-3


def test_gap_reaches_the_acquisition(tmp_path):
    with convert_dicom(SIEMENS) as d:
        assert d.series.gap == pytest.approx(0.8, abs=1e-3)
        assert "4 mm slices every 4.8 mm (0.8 mm gap)" in d.series.describe()
        acq = detect_acquisition(load_volume(d.nifti))
        assert acq.axis == d.series.slice_axis == 2
        assert acq.slice_thickness == pytest.approx(4.0)
        assert acq.zooms[2] == pytest.approx(4.8, abs=1e-3)
        assert acq.has_gap
        assert acq.slice_profile().gap > 0  # what adaptation and simulation see
        workdir = d.workdir
    assert not workdir.exists()  # the temporary folder is removed


def test_sr_of_dicom_zip_equals_nifti_route_and_writes_derived_series(tmp_path, tiny_dir, capsys):
    # DICOM route, with a derived DICOM series
    out_dcm = tmp_path / "sr_dicom.nii.gz"
    rc = main(
        [
            "sr",
            str(PHILIPS),
            str(out_dcm),
            "--model",
            str(tiny_dir),
            "--no-fusion",
            "--dicom-out",
            str(tmp_path / "derived"),
        ]
    )
    said = capsys.readouterr()
    assert rc == 0, said.err
    assert "6 mm slices every 8 mm (2 mm gap)" in said.out
    # NIfTI route: dcm2niix by hand, then sr on the NIfTI (its sidecar beside it)
    folder = unpack(PHILIPS, tmp_path / "dicom")
    subprocess.run(
        [dcm2niix_command(), "-z", "y", "-f", "by_hand", "-o", str(tmp_path), str(folder)],
        check=True,
        capture_output=True,
    )
    out_nii = tmp_path / "sr_nifti.nii.gz"
    assert (
        main(["sr", str(tmp_path / "by_hand.nii.gz"), str(out_nii), "--model", str(tiny_dir), "--no-fusion", "--quiet"])
        == 0
    )
    a, b = nib.load(str(out_dcm)), nib.load(str(out_nii))
    assert a.shape == b.shape and a.shape[2] > 9
    assert np.abs(a.affine - b.affine).max() < 1e-3
    np.testing.assert_allclose(a.get_fdata(), b.get_fdata(), rtol=1e-5, atol=1e-3)

    # the derived series: new UIDs, same study and frame of reference, source references, geometry
    derived = sorted((tmp_path / "derived").iterdir())
    assert len(derived) == a.shape[2]
    source = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(folder.iterdir())]
    src_uids = {s.SOPInstanceUID for s in source}
    ds = [pydicom.dcmread(p) for p in derived]
    assert len({d.SOPInstanceUID for d in ds}) == len(ds) and not src_uids & {d.SOPInstanceUID for d in ds}
    assert len({d.SeriesInstanceUID for d in ds}) == 1 and ds[0].SeriesInstanceUID != source[0].SeriesInstanceUID
    assert ds[0].StudyInstanceUID == source[0].StudyInstanceUID
    assert ds[0].FrameOfReferenceUID == source[0].FrameOfReferenceUID
    assert list(ds[0].ImageType[:2]) == ["DERIVED", "SECONDARY"]
    assert {r.ReferencedSOPInstanceUID for r in ds[0].SourceImageSequence} == src_uids
    back = tmp_path / "back"
    back.mkdir()
    subprocess.run(
        [dcm2niix_command(), "-z", "y", "-f", "back", "-o", str(back), str(tmp_path / "derived")],
        check=True,
        capture_output=True,
    )
    c = nib.as_closest_canonical(nib.load(str(back / "back.nii.gz")))
    ac = nib.as_closest_canonical(a)
    assert c.shape == ac.shape
    assert np.abs(c.affine - ac.affine).max() < 1e-3
    step = float(ds[0].RescaleSlope)
    assert np.abs(c.get_fdata() - ac.get_fdata()).max() <= step  # 16-bit storage
    assert check_pixels_on_voxels(tmp_path / "derived", out_dcm) == a.shape[2]


def test_derived_series_of_an_oblique_sagittal_series_keeps_its_geometry(tmp_path):
    with convert_dicom(SIEMENS) as d:
        vol = load_volume(d.nifti)
        files = write_derived_series(vol.data, vol.affine, d, tmp_path / "out", slice_axis=d.series.slice_axis)
        assert len(files) == 12
        assert check_pixels_on_voxels(tmp_path / "out", d.nifti) == 12
        first = pydicom.dcmread(files[0])
        assert float(first.RescaleSlope) == 1.0  # integer input: stored as it is
        with pytest.raises(VolumeError, match="not empty"):
            write_derived_series(vol.data, vol.affine, d, tmp_path / "out")


# --------------------------------------------------------------------------------------------
# Bad series: one clear line; several series: the structural one, or a question
# --------------------------------------------------------------------------------------------


def _edit(folder: Path, fn) -> None:
    for p in sorted(folder.iterdir()):
        ds = pydicom.dcmread(p)
        if fn(p, ds) is not False:
            ds.save_as(p)


def _as_new_series(folder: Path, number: int, description: str | None = None, keep: int | None = None) -> None:
    uid = pydicom.uid.generate_uid()
    files = sorted(folder.iterdir())
    for p in files[keep:] if keep else []:
        p.unlink()

    def change(p, ds):
        ds.SeriesInstanceUID, ds.SeriesNumber = uid, number
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        if description:
            ds.SeriesDescription = ds.ProtocolName = description

    _edit(folder, change)


def _missing_slice(folder: Path) -> None:
    sorted(folder.iterdir())[5].unlink()


def _mixed_sizes(folder: Path) -> None:
    p = sorted(folder.iterdir())[4]
    ds = pydicom.dcmread(p)
    half = np.ascontiguousarray(ds.pixel_array[::2, ::2])
    ds.Rows, ds.Columns = half.shape
    ds.PixelSpacing = [float(v) * 2 for v in ds.PixelSpacing]
    ds.PixelData = half.tobytes()
    ds.save_as(p)


def _localiser(folder: Path) -> None:
    _as_new_series(folder, 1, "AAHead_Scout localizer", keep=3)


def _no_dicom(folder: Path) -> None:
    for p in folder.iterdir():
        p.unlink()
    (folder / "notes.txt").write_text("not an image\n")


@pytest.mark.parametrize(
    "fault,words",
    [
        (_missing_slice, ("missing", "unevenly")),
        (_mixed_sizes, ("different sizes", "256x256 and 128x128")),
        (_localiser, ("localiser",)),
        (_no_dicom, ("no dicom",)),
    ],
    ids=["missing-slice", "mixed-sizes", "localiser", "no-dicom"],
)
def test_bad_series_gives_one_clear_line(fault, words, tmp_path, capsys):
    folder = unpack(SIEMENS, tmp_path / "series")
    fault(folder)
    out = tmp_path / "sr.nii.gz"
    rc = main(["sr", str(folder), str(out), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    line = err[0]
    assert str(folder) in line and all(w in line.lower() for w in words[:1]), line
    assert all(w.lower() in line.lower() for w in words), line
    assert "transmrsr-dicom-" not in line  # the temporary folder is never named
    assert not out.exists()


def test_several_series_structural_one_is_chosen_or_asked_for(tmp_path, capsys):
    root = tmp_path / "study"
    unpack(SIEMENS, root / "t1")
    unpack(DATA / "toshiba_dti_ax30d_b0_20slices.zip", root / "dti")  # echo-planar: set aside
    scout = unpack(SIEMENS, root / "scout")
    _localiser(scout)  # a localiser: set aside
    with convert_dicom(root) as d:
        assert len(d.found) == 3
        assert d.series.description == "t1_fl2d_sag" and d.series.number == "3"
        kinds = {s.number: (s.structural, s.problem) for s in d.found}
        assert kinds["1"][1] and "localiser" in kinds["1"][1]
        assert kinds["8006"] == (False, None)
    # a second structural series: the user is asked, and can choose
    _as_new_series(unpack(SIEMENS, root / "t1_again"), 4)
    with pytest.raises(VolumeError) as err:
        convert_dicom(root)
    text = str(err.value)  # the library's words; the command line names its flag
    assert "2 structural series; choose one by its key with the series argument" in text and "--" not in text
    assert "3 't1_fl2d_sag'" in text and "4 't1_fl2d_sag'" in text and err.value.params.keys() == {"series"}
    assert main(["sr", str(root), str(tmp_path / "no.nii.gz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "2 structural series; choose one by its key with --series: " in err[0], err
    with convert_dicom(root, series=4) as d:
        assert d.series.number == "4" and d.series.shape[:3] == (256, 256, 12)
    with convert_dicom(root, series="8006") as d:  # a non-structural series when asked for by number
        assert d.series.description == "DTI AX 30d"


def test_a_parameter_error_on_the_converted_series_names_the_flag_and_the_input(tmp_path, capsys):
    """An error from the SR of the converted NIfTI names the DICOM input (not the temporary file) and, on the
    command line, the flag (the library says "the thick axis")."""
    rc = main(["sr", str(SIEMENS), str(tmp_path / "o.nii.gz"), "--axis", "5", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1] == (
        f"transmrsr sr: error: {SIEMENS} (series 3 't1_fl2d_sag'): --axis must be 0, 1 or 2, got 5"
    ), err


def test_zip_with_unsafe_names_is_unpacked_inside_its_folder(tmp_path):
    bad = tmp_path / "upload.zip"
    with zipfile.ZipFile(SIEMENS) as src, zipfile.ZipFile(bad, "w") as dst:
        for i, info in enumerate(src.infolist()):
            dst.writestr(("../" * 3 + "escaped.dcm") if i == 0 else info.filename, src.read(info))
        dst.writestr("/abs/escaped2.dcm", b"x")
    with convert_dicom(bad) as d:
        assert d.series.shape[:3] == (256, 256, 11)  # the escaping entry was skipped
        assert not (tmp_path.parent.parent / "escaped.dcm").exists()
        assert not list(d.workdir.parent.glob("escaped*.dcm"))


def test_dicom_input_detection_and_dicom_out_needs_dicom(tmp_path, capsys):
    assert is_dicom_input(SIEMENS) and is_dicom_input(DATA / "siemens_xa10_enhanced_epi.dcm")
    assert is_dicom_input(tmp_path)  # a folder
    plain = tmp_path / "x.nii.gz"
    assert not is_dicom_input(plain)
    with convert_dicom(SIEMENS) as d:
        shutil.copy(d.nifti, tmp_path / "t1.nii")
    rc = main(["sr", str(tmp_path / "t1.nii"), str(tmp_path / "o.nii.gz"), "--dicom-out", str(tmp_path / "dd")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--dicom-out needs a DICOM input" in err[0]


#: test input -> the repository's own reference NIfTI (its Ref/ folder, made by the maintainer's dcm2niix)
REFERENCES = {
    "philips_epi_9slices.zip": "EPI_asc_CLEAR_201.nii.gz",
    "siemens_xa10_enhanced_epi.dcm": "Siemens_REST1_w_SMS_PF7-8_6.nii.gz",
    "philips_enhanced_b0map.zip": "Philips_WIP_B0_NS_801_e1.nii.gz",
}


@pytest.mark.parametrize("name", list(REFERENCES))
def test_geometry_equals_the_repositories_reference_nifti(name, tmp_path):
    ref = nib.load(str(DATA / "ref" / REFERENCES[name]))
    found = list_series(DATA / name, tmp_path)
    ours = nib.load(str(found[0].nifti))
    assert ours.shape[:3] == ref.shape[:3]
    assert np.abs(ours.affine - ref.affine).max() < 1e-3
    first = np.asarray(ref.dataobj)[..., 0] if ref.ndim == 4 else np.asarray(ref.dataobj)
    np.testing.assert_array_equal(np.asarray(ours.dataobj).reshape(ours.shape[:3]), first)


def test_enhanced_file_with_two_images_asks_and_converts_the_chosen_one(tmp_path, tiny_dir, capsys):
    src = DATA / "philips_enhanced_b0map.zip"
    with pytest.raises(VolumeError) as err:
        convert_dicom(src)
    text = str(err.value)
    assert "no structural volume" in text and "the series argument 801_WIP_B0_NS_e1" in text and "fieldmaphz" in text
    capsys.readouterr()
    assert main(["sr", str(src), str(tmp_path / "no.nii.gz")]) == 2  # the command line names its flag
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "(choose it with --series 801_WIP_B0_NS_e1)" in err[0], err
    out = tmp_path / "sr.nii.gz"
    rc = main(
        [
            "sr",
            str(src),
            str(out),
            "--series",
            "801_WIP_B0_NS_e1",
            "--model",
            str(tiny_dir),
            "--no-fusion",
            "--scale",
            "2",
            "--axis",
            "2",
        ]
    )
    said = capsys.readouterr()
    assert rc == 0, said.err
    assert "series 801 'B0 NS' (e1) (Philips): 64x64x32 voxels" in said.out
    assert nib.load(str(out)).shape == (64, 64, 64)
    rc = main(["sr", str(src), str(tmp_path / "no.nii.gz"), "--series", "9"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "no series '9'" in err[0] and not (tmp_path / "no.nii.gz").exists()


# --------------------------------------------------------------------------------------------
# DICOM out, read by another program: dcm2niix converts the derived series back onto our grid
# --------------------------------------------------------------------------------------------


def _signed_permutation(ours: np.ndarray, back: np.ndarray) -> np.ndarray:
    """The voxel-index map ``ours_index = P @ back_index`` (a signed permutation with an integer
    shift, 4x4) between two grids that are the same in mm up to axis order and direction."""
    p = np.linalg.inv(ours) @ back
    pr = np.round(p)
    assert np.abs(p - pr).max() < 1e-3, p  # whole voxels apart
    assert sorted(np.abs(pr[:3, :3]).sum(axis=0).tolist()) == [1.0, 1.0, 1.0], pr
    return pr


@pytest.mark.parametrize("slice_axis", [2, 0])
def test_derived_series_round_trips_through_dcm2niix(slice_axis, tmp_path):
    """A float SR-like volume (negative and fractional values, a finer oblique grid than the source)
    written as a derived series: pydicom reads every image back (stored pixels x rescale = the data),
    and dcm2niix -- a reader that is not ours -- converts it into a NIfTI whose voxels lie on ours
    within 1e-3 mm and hold the same values (up to the 16-bit step), without a warning."""
    with convert_dicom(SIEMENS) as d:
        src = nib.load(str(d.nifti))
        # a 24x28x20 block on a grid twice as fine across slices (as an SR would be), oblique like the source
        affine = src.affine @ np.diag([1.0, 1.0, 0.5, 1.0])
        affine[:3, 3] += src.affine[:3, :3] @ np.array([100.0, 90.0, 2.0])
        rng = np.random.default_rng(7)
        data = (rng.normal(300.0, 120.0, (24, 28, 20)) - 200.0).astype(np.float32)  # some voxels negative
        files = write_derived_series(data, affine, d, tmp_path / "out", slice_axis=slice_axis, description="round trip")
    assert len(files) == data.shape[slice_axis]
    # pydicom: complete files (preamble, meta), MR images whose rescaled pixels are the data
    first = pydicom.dcmread(files[0])
    step = float(first.RescaleSlope)
    assert step < 1.0 and first.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    for k, f in enumerate(files):
        ds = pydicom.dcmread(f)  # no force: a valid Part 10 file
        assert ds.SOPClassUID == pydicom.uid.MRImageStorage and ds.InstanceNumber == k + 1
        real = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        np.testing.assert_allclose(real, np.take(data, k, axis=slice_axis).T, atol=step / 2 + 1e-6)
    # dcm2niix, the reader that is not ours
    back_dir = tmp_path / "back"
    back_dir.mkdir()
    proc = subprocess.run(
        [dcm2niix_command(), "-z", "y", "-b", "y", "-f", "back", "-o", str(back_dir), str(tmp_path / "out")],
        check=True,
        capture_output=True,
        text=True,
    )
    assert "Warning" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    assert sorted(p.name for p in back_dir.glob("*.nii.gz")) == ["back.nii.gz"]  # one series, one volume
    back = nib.load(str(back_dir / "back.nii.gz"))
    assert back.ndim == 3 and sorted(back.shape) == sorted(data.shape)
    perm = _signed_permutation(affine, back.affine)
    assert np.abs(affine @ perm - back.affine).max() < 1e-3  # the same voxel centres, in mm
    idx = np.indices(back.shape).reshape(3, -1)
    ours = np.round(perm[:3, :3] @ idx + perm[:3, 3:4]).astype(int)
    assert (ours >= 0).all() and (ours < np.array(data.shape)[:, None]).all()
    got = np.asarray(back.get_fdata(), dtype=np.float64).reshape(-1)
    np.testing.assert_allclose(got, data[tuple(ours)], atol=step / 2 + 1e-3)
    side = json.loads((back_dir / "back.json").read_text())
    assert side["ImageType"][:2] == ["DERIVED", "SECONDARY"] and side["SeriesDescription"].endswith("round trip")
    spacing = float(np.linalg.norm(affine[:3, slice_axis]))
    assert side["SliceThickness"] == pytest.approx(spacing, abs=1e-3)
    # voxel sizes (mm) of dcm2niix's axes are ours, in its axis order
    np.testing.assert_allclose(
        np.linalg.norm(back.affine[:3, :3], axis=0),
        np.abs(perm[:3, :3]).T @ np.linalg.norm(affine[:3, :3], axis=0),
        atol=1e-3,
    )


def test_gap_of_a_dicom_upload_reaches_the_adapted_run(tmp_path, tiny_dir):
    """The app's path (plan_volume → run_case) with adaptation: the series' gap (Philips EPI, 6 mm slices every
    8 mm, ×2.13) must shape the adaptation's simulated acquisitions, so the adapted SR differs from the same run
    told there is no gap. Before the fix run_case re-read the converted volume without its sidecar and lost the gap.
    Served as ×4: on that working grid the slice is 3 of 4 working voxels, which the simulated profile resolves
    (at ×2 a gap of under one working voxel leaves the voxel weights as they are)."""
    import dataclasses

    from transmrsr import TransMRSR
    from transmrsr.adapt import AdaptOptions
    from transmrsr.studio import CaseOptions, plan_volume, run_case

    zipped = Path(__file__).parent / "data" / "dicom" / "philips_epi_9slices.zip"
    model = TransMRSR.from_pretrained(tiny_dir).eval()
    plan = plan_volume(zipped, 4, served=lambda r: (4,))
    assert plan.acq is not None and plan.acq.has_gap and plan.served == (4,)
    no_gap = dataclasses.replace(plan, acq=dataclasses.replace(plan.acq, slice_thickness=plan.acq.zooms[plan.acq.axis]))
    assert not no_gap.acq.has_gap
    opts = AdaptOptions(steps=2, max_seconds=None, batch_size=2, seed=0)
    runs = []
    for i, p in enumerate((plan, no_gap)):
        case = run_case(zipped, model, tmp_path / f"run{i}", CaseOptions(plan=p, served=(4,), adapt=opts, fusion=False))
        runs.append(np.asarray(case.sr, dtype=np.float32))
    assert runs[0].shape == runs[1].shape
    assert np.abs(runs[0] - runs[1]).max() > 1e-4
