"""DICOM series in (folder, ``.zip`` or one file) through ``dcm2niix``; derived DICOM series out.

Reading: :func:`convert_dicom` runs ``dcm2niix`` (its pip package, or the program on the PATH)
on the DICOM files -- single-frame, mosaic and enhanced multi-frame, from any vendor it supports
-- into a working folder, so the geometry (affine, voxel sizes, slice order) is the converter's,
never hand-written. Each series it wrote is then checked and described (:class:`SeriesInfo`):

* its NIfTI header goes through :func:`transmrsr.data.io.read_header` (shape, voxel type,
  voxel sizes, memory budget), so a DICOM series meets the same limits as a NIfTI file;
* ``dcm2niix``'s own findings become one clear line: images of different sizes in one series,
  unevenly spaced slices (missing slices), images in several orientations (localisers);
* localisers / scouts / surveys, series of several volumes (diffusion, fMRI) and phase images
  are set aside as "not a structural volume";
* the slice thickness (``SliceThickness``) stays beside the NIfTI in ``dcm2niix``'s sidecar,
  where :func:`transmrsr.inference.detect_acquisition` reads it: a gap (thickness below the
  slice spacing) reaches the SR.

When a folder holds several series, the structural single volume is chosen (a thick-slice one
before an isotropic one); when that leaves more than one, :class:`~transmrsr.data.io.VolumeError`
lists them and asks for ``series=`` (``--series`` on the command line).

Writing: :func:`write_derived_series` writes a volume (the SR) as a derived MR series of the
source's study: new series and instance UIDs, the source images referenced, the source's frame
of reference, patient and study attributes, and the output grid's geometry (needs ``pydicom``).

Every problem raises :class:`~transmrsr.data.io.VolumeError` whose message names the input as the
caller gave it (never the working folder) and, where there are several, the series.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .io import VolumeError, max_input_bytes, read_header, thick_axis

#: Images of one series that ``dcm2niix`` wrote to different files because their sizes differ.
_MIXED = "Slices not stacked: dimensions vary"
#: ``dcm2niix`` found slice positions that are not evenly spaced (it then also writes ``*_Eq_*``).
_UNEVEN = "Interslice distance varies"
_MISSING = "Missing images?"
#: Series descriptions of localisers (scouts, surveys, 3-plane); matched case-insensitively.
_LOCALISER = re.compile(r"locali[sz]er|scout|survey|3[-_ ]?plane|tri[-_ ]?pilot|aahead|\bloc\b|_loc\b", re.I)
#: Series descriptions of echo-planar / functional / diffusion / perfusion scans: usable, never chosen by themselves.
_NOT_STRUCTURAL = re.compile(
    r"(?<![a-z])(epi|bold|fmri|rest(?:ing)?|task|dwi|dti|diff(?:usion)?|tensor|asl|pcasl|perf(?:usion)?|field ?map|fmap|b0"
    r"|b0map|sbref)(?![a-z])",
    re.I,
)
#: Fewest slices a structural volume has (a localiser plane has one to a few).
MIN_SLICES = 4
#: Most files a ``.zip`` may hold, and how many times the input memory budget its contents may take.
MAX_ZIP_FILES = 100_000
ZIP_BUDGET_FACTOR = 4
#: Seconds ``dcm2niix`` may take for one input.
CONVERT_TIMEOUT_S = 900


def dcm2niix_command() -> str:
    """The ``dcm2niix`` program: the pip package's, else the one on the PATH."""
    try:
        import dcm2niix  # the pip package ships the binary

        if Path(dcm2niix.bin).is_file():
            return str(dcm2niix.bin)
    except ImportError:
        pass
    found = shutil.which("dcm2niix")
    if not found:
        raise VolumeError("DICOM input needs the dcm2niix converter: pip install dcm2niix")
    return found


def _has_dicom_preamble(p: Path) -> bool:
    try:
        with open(p, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def is_dicom_input(path: str | os.PathLike) -> bool:
    """Whether ``path`` is meant as DICOM: a folder, a ``.zip`` or a file with the DICOM preamble
    (or named ``.dcm`` / ``.ima``). NIfTI names are never DICOM."""
    p = Path(path)
    name = p.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return False
    if p.is_dir():
        return True
    if name.endswith(".zip"):
        return True
    if name.endswith((".dcm", ".ima", ".dicom")):
        return True
    return p.is_file() and _has_dicom_preamble(p)


@dataclass
class SeriesInfo:
    """One image ``dcm2niix`` wrote, checked and described.

    Attributes:
        nifti: the NIfTI file (in the working folder).
        sidecar: its JSON sidecar (BIDS fields of the DICOM header).
        shape: voxels (a 4-D series includes its volumes).
        zooms: voxel sizes (mm) along the three voxel axes.
        warnings: what ``dcm2niix`` said about it.
        problem: why it cannot be super-resolved (``None`` when it can).
        structural: a structural volume (not a localiser, not EPI / diffusion / fMRI, not phase).
    """

    nifti: Path
    sidecar: dict
    shape: tuple[int, ...]
    zooms: tuple[float, float, float]
    warnings: list[str] = field(default_factory=list)
    problem: str | None = None
    structural: bool = True

    @property
    def number(self) -> str:
        value = self.sidecar.get("SeriesNumber")
        return str(value) if value is not None else "?"

    @property
    def description(self) -> str:
        return str(self.sidecar.get("SeriesDescription") or self.sidecar.get("ProtocolName") or self.nifti.stem)

    @property
    def uid(self) -> str | None:
        return self.sidecar.get("SeriesInstanceUID")

    @property
    def label(self) -> str:
        """``series 3 't1_fl2d_sag'``, plus the part ``dcm2niix`` split off (echo, phase...)."""
        return f"series {self.number} '{self.description}'{self._part}"

    @property
    def _part(self) -> str:
        m = re.search(
            r"_(e\d+(?:_[A-Za-z]+)?|ph|real|imaginary|i\d{5}|c\d+|ROI\d+|t\d+|ADC|trace|fieldmaphz)$", self.nifti.stem
        )
        if not m:
            return ""
        names = {"ph": "phase", "real": "real part", "imaginary": "imaginary part"}
        return f" ({' '.join(names.get(p, p) for p in m.group(1).split('_'))})"

    @property
    def slice_axis(self) -> int:
        """The voxel axis across slices: the thick one, else the third."""
        found = thick_axis(self.zooms)
        return found[0] if found else 2

    @property
    def spacing(self) -> float:
        """Slice spacing (mm): the voxel size across slices."""
        return float(self.zooms[self.slice_axis])

    @property
    def slice_thickness(self) -> float:
        """Slice thickness (mm) of the DICOM header; the spacing when it gives none."""
        value = self.sidecar.get("SliceThickness")
        return float(value) if isinstance(value, (int, float)) and value > 0 else self.spacing

    @property
    def gap(self) -> float:
        """Slice gap (mm): spacing minus thickness (negative for overlapping slices)."""
        return self.spacing - self.slice_thickness

    def describe(self) -> str:
        """One line: the series, vendor, voxels, voxel sizes, thickness against spacing."""
        vendor = self.sidecar.get("Manufacturer") or "unknown vendor"
        a = self.slice_axis
        inplane = " x ".join(f"{self.zooms[i]:.3g}" for i in range(3) if i != a)
        dims = "x".join(str(s) for s in self.shape)
        text = f"{self.label} ({vendor}): {dims} voxels, {inplane} mm in plane, "
        text += f"{self.slice_thickness:.3g} mm slices every {self.spacing:.3g} mm"
        if self.gap > 1e-3:
            text += f" ({self.gap:.3g} mm gap)"
        elif self.gap < -1e-3:
            text += f" ({-self.gap:.3g} mm overlap)"
        return text


@dataclass
class DicomSeries:
    """The result of :func:`convert_dicom`: the chosen series as NIfTI, and all it found.

    ``nifti`` (with its ``.json`` sidecar beside it) lives in ``workdir``; use the object as a
    context manager, or call :meth:`cleanup`, to remove that folder when it was made here.
    """

    source: str
    nifti: Path
    series: SeriesInfo
    found: list[SeriesInfo]
    workdir: Path
    dicom_dir: Path  # the DICOM files: the input folder, the unpacked zip, or the one file
    owns_workdir: bool = False

    def cleanup(self) -> None:
        if self.owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> DicomSeries:
        return self

    def __exit__(self, *exc) -> None:
        self.cleanup()

    def public_path(self) -> str:
        """How messages name the converted volume: the input and the series."""
        return f"{self.source} ({self.series.label})"


def _extract_zip(src: Path, dest: Path, max_bytes: int | None, shown: str | None = None) -> None:
    """Unpack ``src`` into ``dest``: no absolute or ``..`` names, no links, at most
    :data:`MAX_ZIP_FILES` files and ``ZIP_BUDGET_FACTOR`` x the input budget uncompressed.
    Messages name the zip as ``shown`` (default: ``src``)."""
    budget = ZIP_BUDGET_FACTOR * max_input_bytes(max_bytes)
    src_path, src = src, (str(src) if shown is None else shown)  # src: how messages name it
    try:
        with zipfile.ZipFile(src_path) as zf:
            members = [m for m in zf.infolist() if not m.is_dir()]
            if len(members) > MAX_ZIP_FILES:
                raise VolumeError(f"{src}: the zip holds {len(members):,} files, more than {MAX_ZIP_FILES:,}", path=src)
            total = sum(m.file_size for m in members)
            if total > budget:
                raise VolumeError(
                    f"{src}: the zip unpacks to {total / 1024**2:,.0f} MiB, beyond the limit of "
                    f"{budget / 1024**2:,.0f} MiB; send one series",
                    path=src,
                )
            root = dest.resolve()
            for m in members:
                name = m.filename.replace("\\", "/")
                parts = [q for q in name.split("/") if q not in ("", ".")]
                if not parts or name.startswith("/") or ".." in parts or (m.external_attr >> 16) & 0o170000 == 0o120000:
                    continue  # unsafe names and symbolic links are skipped, never followed
                if parts[0] == "__MACOSX" or parts[-1].startswith("._") or parts[-1] == ".DS_Store":
                    continue
                target = root.joinpath(*parts)
                if root not in target.resolve().parents:
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(m) as fin, open(target, "wb") as fout:
                    left = m.file_size + 1
                    while chunk := fin.read(min(1 << 20, left)):
                        left -= len(chunk)
                        if left <= 0:  # more than the directory declares: refuse
                            raise VolumeError(
                                f"{src}: the zip is malformed ({m.filename} is larger than declared)", path=src
                            )
                        fout.write(chunk)
    except zipfile.BadZipFile as exc:
        raise VolumeError(f"{src}: not a readable zip file ({exc})", path=src) from None
    except (OSError, EOFError, NotImplementedError, RuntimeError) as exc:
        if isinstance(exc, VolumeError):
            raise
        # an OSError's text names the file it failed on (a working folder): its reason alone
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise VolumeError(f"{src}: the zip cannot be unpacked ({exc.__class__.__name__}: {why})", path=src) from None


def _run_dcm2niix(src: Path, out: Path, single_file: bool, shown: str) -> list[tuple[Path, list[str]]]:
    """Run ``dcm2niix`` on ``src``; each NIfTI it wrote with the warnings printed before it."""
    cmd = [dcm2niix_command(), "-z", "n", "-b", "y", "-ba", "n", "-f", "%s_%p", "-i", "n", "-o", str(out)]
    if single_file:
        cmd += ["-s", "y"]
    try:
        proc = subprocess.run(cmd + [str(src)], capture_output=True, text=True, timeout=CONVERT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise VolumeError(f"{shown}: the DICOM conversion took more than {CONVERT_TIMEOUT_S} s", path=shown) from None
    text = (proc.stdout or "") + "\n" + (proc.stderr or "")
    written: list[tuple[Path, list[str]]] = []
    pending: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        m = re.match(r"Convert \d+ DICOM as (.+) \(", line)
        if m:
            written.append((Path(m.group(1)), pending))
            pending = []
        elif line.startswith(("Warning", "Slices not stacked", "Error", "Unsupported", "Unable")):
            pending.append(line)
    return written


def _load_sidecar(nii: Path) -> dict:
    side = nii.with_suffix(".json")
    try:
        return json.loads(side.read_text()) if side.is_file() else {}
    except (OSError, ValueError):
        return {}


def _image_type(sidecar: dict) -> list[str]:
    value = sidecar.get("ImageType") or []
    return [str(v).upper() for v in (value if isinstance(value, list) else str(value).split("\\"))]


def _examine(nii: Path, warnings: list[str], shown: str, max_bytes: int | None) -> SeriesInfo:
    """Read the header (io's limits) and classify one converted image."""
    sidecar = _load_sidecar(nii)
    try:
        import nibabel as nib

        img = nib.load(str(nii))
        shape = tuple(int(s) for s in img.shape)
        zooms = tuple(float(z) for z in np.linalg.norm(img.affine[:3, :3], axis=0))
    except Exception as exc:  # noqa: BLE001 - any failure: the image is unusable
        info = SeriesInfo(nifti=nii, sidecar=sidecar, shape=(0, 0, 0), zooms=(1.0, 1.0, 1.0), warnings=list(warnings))
        info.problem, info.structural = f"the converted image cannot be read ({exc.__class__.__name__})", False
        return info
    info = SeriesInfo(nifti=nii, sidecar=sidecar, shape=shape, zooms=zooms, warnings=list(warnings))
    itype = _image_type(sidecar)
    name = " ".join(str(sidecar.get(k) or "") for k in ("SeriesDescription", "ProtocolName"))
    seq = str(sidecar.get("ScanningSequence") or "").upper()
    if "LOCALIZER" in itype or "SCOUT" in itype or _LOCALISER.search(name):
        info.problem, info.structural = "a localiser (scout), not a diagnostic volume", False
    elif re.search(r"_i\d{5}$", nii.stem):
        info.problem, info.structural = "a localiser: its images lie in different orientations", False
    elif len(shape) > 3 and shape[3] > 1:
        kind = "diffusion" if nii.with_suffix(".bval").is_file() else "time series" if "EP" in seq else "volumes"
        info.problem = f"{shape[3]} volumes ({kind}), not one structural volume"
        info.structural = False
    elif len(shape) >= 3 and sorted(shape[:3])[0] < MIN_SLICES:
        info.problem = f"only {sorted(shape[:3])[0]} slice(s): a localiser or single slices, not a volume"
        info.structural = False
    else:
        try:
            read_header(nii, max_bytes)
        except VolumeError as exc:
            info.problem = str(exc).replace(str(nii), "").lstrip(": ").strip() or "unreadable"
    epi = "EP" in seq.replace("\\", " ").split() or "EP" in seq.split("\\") or _NOT_STRUCTURAL.search(name)
    other = {"P", "PHASE", "DERIVED", "FIELDMAP", "FIELDMAPHZ", "B0", "ADC", "TRACEW", "FA", "DIFFUSION", "PERFUSION"}
    if info.problem is None and (epi or other & set(itype)):
        info.structural = False  # usable when chosen, never chosen by itself
    return info


def _series_faults(found: list[SeriesInfo]) -> None:
    """Mark every image of a series with ``dcm2niix``'s findings: sizes that differ, unevenly
    spaced (missing) slices. One line each, naming the sizes or the counts."""
    groups: dict[str, list[SeriesInfo]] = {}
    for s in found:
        groups.setdefault(s.uid or s.number, []).append(s)
    for members in groups.values():
        said = [w for s in members for w in s.warnings]
        sizes = sorted({"x".join(map(str, s.shape[:2])) for s in members}, reverse=True)
        if any(_MIXED in w for w in said) or (len(sizes) > 1 and not any(s._part for s in members)):
            problem = f"images of different sizes in one series ({' and '.join(sizes)}); send the series as acquired"
        elif any(_UNEVEN in w for w in said):
            miss = next((w for w in said if _MISSING in w), "")
            m = re.search(r"Expected (\d+) images, but instance number \S+ ranges from (\d+) to (\d+)", miss)
            problem = "slices are unevenly spaced: slices are missing (or the series mixes stacks)"
            if m:
                lo, hi = sorted((int(m.group(2)), int(m.group(3))))
                problem += f"; {m.group(1)} images for instance numbers {lo} to {hi}"
            problem += "; send the complete series"
        else:
            continue
        for s in members:
            s.problem, s.structural = problem, False


def _convert_all(dicom_dir: Path, out: Path, single: bool, shown: str, max_bytes: int | None) -> list[SeriesInfo]:
    out.mkdir(parents=True, exist_ok=True)
    found: list[SeriesInfo] = []
    for nii, warns in _run_dcm2niix(dicom_dir, out, single, shown):
        nii = nii if nii.suffix == ".nii" else nii.with_name(nii.name + ".nii")
        if nii.is_file():
            found.append(_examine(nii, warns, shown, max_bytes))
    # dcm2niix also writes an evenly resampled copy (*_Eq_*) of unevenly spaced series: never used
    found = [s for s in found if not re.search(r"_Eq_\d+$", s.nifti.stem)]
    if not found:
        raise VolumeError(f"{shown}: no DICOM images found that could be converted", path=shown)
    _series_faults(found)
    return found


def list_series(
    source: str | os.PathLike, workdir: str | os.PathLike, *, max_bytes: int | None = None
) -> list[SeriesInfo]:
    """Every image ``dcm2niix`` makes of ``source`` (folder, ``.zip`` or file) in ``workdir``,
    checked (:attr:`SeriesInfo.problem`) but none chosen."""
    src, work = Path(source), Path(workdir)
    dicom_dir, single = src, src.is_file() and not src.name.lower().endswith(".zip")
    if src.is_file() and src.name.lower().endswith(".zip"):
        dicom_dir = work / "dicom"
        dicom_dir.mkdir(parents=True)
        _extract_zip(src, dicom_dir, max_bytes)
    return _convert_all(dicom_dir, work / "nifti", single, str(source), max_bytes)


def convert_dicom(
    source: str | os.PathLike,
    workdir: str | os.PathLike | None = None,
    *,
    series: str | int | None = None,
    max_bytes: int | None = None,
    shown: str | None = None,
    chooser: str | None = None,
) -> DicomSeries:
    """Convert a DICOM folder, ``.zip`` or single file to NIfTI and pick the series to super-resolve.

    Args:
        source: the DICOM input.
        workdir: where the NIfTI files go (default: a new temporary folder, removed by
            :meth:`DicomSeries.cleanup`).
        series: the series to use, by series number (``3``), description (``t1_fl2d_sag``) or
            file stem; default: the only structural volume (see the module's docstring).
        max_bytes: input memory budget (:func:`~transmrsr.data.io.max_input_bytes`).
        shown: how messages name the input (default: ``source`` as given).
        chooser: how the caller's user picks a series, said where several are found (default:
            the ``series`` argument, which the command line calls ``--series``; e.g. ``"upload a zip
            of that series alone"`` in the app).

    Raises:
        VolumeError: one line naming the input (and the series): no DICOM, a bad series (mixed
            sizes, missing slices, localiser...), several candidates without ``series``.
    """
    src = Path(source)
    shown = str(source) if shown is None else shown
    if not src.exists():
        raise VolumeError(f"{shown}: no such file or folder", path=shown)
    owns = workdir is None
    work = Path(tempfile.mkdtemp(prefix="transmrsr-dicom-")) if owns else Path(workdir)
    try:
        work.mkdir(parents=True, exist_ok=True)
        dicom_dir, single = src, False
        if src.is_file() and src.name.lower().endswith(".zip"):
            dicom_dir = work / "dicom"
            dicom_dir.mkdir()
            _extract_zip(src, dicom_dir, max_bytes, shown)
        elif src.is_file():
            single = True
        found = _convert_all(dicom_dir, work / "nifti", single, shown, max_bytes)
        chosen = _choose(found, series, shown, chooser)
        return DicomSeries(
            source=shown,
            nifti=chosen.nifti,
            series=chosen,
            found=found,
            workdir=work,
            dicom_dir=dicom_dir,
            owns_workdir=owns,
        )
    except BaseException:
        if owns:
            shutil.rmtree(work, ignore_errors=True)
        raise


def _listing(items: list[str], most: int = 6) -> str:
    """``a; b; c`` -- at most ``most`` items, then how many more."""
    more = f"; and {len(items) - most} more" if len(items) > most else ""
    return "; ".join(items[:most]) + more


def _key(s: SeriesInfo, found: list[SeriesInfo]) -> str:
    """What ``series=`` takes to name ``s``: its number, or its file stem when the number is shared."""
    return s.number if sum(f.number == s.number for f in found) == 1 else s.nifti.stem


def _short(s: SeriesInfo) -> str:
    return f"{s.number} '{s.description}'{s._part} {'x'.join(map(str, s.shape))}"


def _choose(found: list[SeriesInfo], series: str | int | None, shown: str, chooser: str | None = None) -> SeriesInfo:
    """The series to convert: ``series`` when given, else the only structural single volume (a
    thick-slice one before an isotropic one). ``chooser``: how the user picks one (default: the
    ``series`` argument, a parameter the message names, :mod:`transmrsr.errors`), said in the
    message when there is a choice to make."""
    if series is not None:
        key = str(series).strip()
        hits = [s for s in found if key in (s.number, s.description, s.nifti.stem)]
        if not hits:
            listed = "; ".join(_short(s) for s in found)
            raise VolumeError(f"{shown}: no series {key!r}; the input holds: {listed}", path=shown)
        usable = [s for s in hits if s.problem is None] or hits
        if len(usable) > 1:
            listed = "; ".join(f"{s.nifti.stem}" for s in usable)
            raise VolumeError(f"{shown}: series {key!r} has several images; choose one of: {listed}", path=shown)
        pick = usable[0]
        if pick.problem:
            raise VolumeError(f"{shown}: {pick.label}: {pick.problem}", path=shown)
        return pick
    params = {"series": "the series argument"} if chooser is None else None  # the caller's series choice
    usable = [s for s in found if s.problem is None]
    structural = [s for s in usable if s.structural]
    pool = structural or (usable if len(found) == 1 else [])
    if not pool:
        if len(found) == 1:
            s = found[0]
            raise VolumeError(f"{shown}: {s.label}: {s.problem or 'not a structural volume'}", path=shown)
        said: dict[str, str] = {}  # one entry per series and problem (a split series says it once)
        for s in found:
            why = s.problem or (
                "not a structural volume"
                + (f" (choose it with {{series}} {_key(s, found)})" if chooser is None else "")
            )
            said.setdefault(f"{s.label if s.problem is None else f'series {s.number} {s.description!r}'}: {why}", "")
        if len(said) == 1:
            raise VolumeError(f"{shown}: {next(iter(said))}", path=shown, params=params)
        raise VolumeError(
            f"{shown}: no structural volume to super-resolve: {_listing(list(said))}", path=shown, params=params
        )
    thick = [s for s in pool if thick_axis(s.zooms) is not None]
    pool = thick or pool
    if len(pool) > 1:
        listed = _listing([f"{_key(s, found)} = {_short(s)}" for s in pool])
        how = "choose one by its key with {series}" if chooser is None else f"to super-resolve one, {chooser}"
        raise VolumeError(f"{shown}: {len(pool)} structural series; {how}: {listed}", path=shown, params=params)
    return pool[0]


# --------------------------------------------------------------------------------------------
# Derived DICOM series out
# --------------------------------------------------------------------------------------------

#: Attributes copied from a source image into the derived series (patient, study, equipment, MR).
_COPIED = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "PatientSize",
    "PatientWeight",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
    "StudyDescription",
    "FrameOfReferenceUID",
    "PositionReferenceIndicator",
    "Manufacturer",
    "InstitutionName",
    "StationName",
    "MagneticFieldStrength",
    "BodyPartExamined",
    "PatientPosition",
    "SeriesDate",
    "SeriesTime",
    "ScanningSequence",
    "SequenceVariant",
    "ScanOptions",
    "MRAcquisitionType",
    "RepetitionTime",
    "EchoTime",
    "InversionTime",
    "FlipAngle",
    "EchoTrainLength",
    "ImagingFrequency",
    "ImagedNucleus",
    "SequenceName",
    "ProtocolName",
)
#: Type-1/2 MR Image attributes given a neutral value when the source (e.g. enhanced) lacks them.
_MR_DEFAULTS = {
    "ScanningSequence": "RM",
    "SequenceVariant": "NONE",
    "ScanOptions": "",
    "MRAcquisitionType": "3D",
    "EchoTime": None,
    "RepetitionTime": None,
    "EchoTrainLength": None,
    "PositionReferenceIndicator": "",
}


def source_instances(dicom_dir: str | os.PathLike, series_uid: str | None) -> list[Path]:
    """The DICOM files of ``dicom_dir`` (recursively; or that one file) that belong to ``series_uid``, by instance number."""
    import pydicom

    rows = []
    root = Path(dicom_dir)
    for p in [root] if root.is_file() else sorted(root.rglob("*")):
        if not p.is_file():
            continue
        try:
            ds = pydicom.dcmread(p, stop_before_pixels=True, specific_tags=["SeriesInstanceUID", "InstanceNumber"])
        except Exception:  # noqa: BLE001 - not DICOM: skipped
            continue
        if "SeriesInstanceUID" in ds and (series_uid is None or ds.SeriesInstanceUID == series_uid):
            rows.append((int(ds.get("InstanceNumber") or 0), p))
    return [p for _, p in sorted(rows)]


def write_derived_series(
    data: np.ndarray,
    affine: np.ndarray,
    source: DicomSeries,
    out_dir: str | os.PathLike,
    *,
    slice_axis: int = 2,
    description: str = "TransMRSR SR",
    series_number: int | None = None,
    derivation: str = "super-resolved with TransMRSR",
) -> list[Path]:
    """Write ``data (X, Y, Z)`` with the NIfTI ``affine`` (RAS mm) as a derived MR series.

    One classic MR image per voxel slice along ``slice_axis`` (``IMnnnn.dcm`` in ``out_dir``,
    which must not hold files yet; written into a temporary folder beside it and renamed, so a
    failure leaves no partial series). New series / instance UIDs; the source's study, patient and
    frame of reference; ``SourceImageSequence`` and ``ReferencedSeriesSequence`` naming the
    source images; ``ImageType`` ``DERIVED\\SECONDARY``; position, orientation, pixel spacing,
    slice thickness and spacing from ``affine``. Integer values in the 16-bit range are stored as
    they are; others with a rescale slope / intercept. Returns the files written.
    """
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise VolumeError(f"{out}: the DICOM output folder is not empty; choose a new folder", path=out)
    files = source_instances(source.dicom_dir, source.series.uid)
    if not files:
        raise VolumeError(f"{source.source}: the source DICOM images of {source.series.label} were not found")
    refs = [pydicom.dcmread(p, stop_before_pixels=True) for p in files]
    template = refs[0]
    vol = np.asarray(data, dtype=np.float32)
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.asarray(affine, dtype=np.float64)
    a, b = [i for i in range(3) if i != slice_axis]
    col_step, row_step = np.linalg.norm(lps[:3, a]), np.linalg.norm(lps[:3, b])
    row_dir, col_dir = lps[:3, a] / col_step, lps[:3, b] / row_step  # DICOM: along a row, down a column
    thickness = float(np.linalg.norm(lps[:3, slice_axis]))
    lo, hi = float(vol.min()), float(vol.max())
    integral = bool(np.all(np.abs(vol - np.round(vol)) < 1e-3)) and -32768 <= lo and hi <= 32767
    if integral:
        slope, inter = 1.0, 0.0
    else:
        slope = (hi - lo) / 65000.0 if hi > lo else 1.0
        inter = lo + 32500.0 * slope
    series_uid = generate_uid()
    number = series_number if series_number is not None else int(template.get("SeriesNumber") or 0) + 1000
    desc = f"{template.get('SeriesDescription', '')} {description}".strip()
    normal = np.cross(row_dir, col_dir)
    written = []
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))  # renamed onto out when complete
    center, width = (lo + hi) / 2, max(hi - lo, 1.0)
    for s in range(vol.shape[slice_axis]):
        plane = np.take(vol, s, axis=slice_axis)  # (a, b) -> rows b, columns a
        pixels = plane.T.astype(np.float64)  # float32 arithmetic near ±32500 would lose up to 1/500 of a step
        stored = np.round(pixels if integral else (pixels - inter) / slope).clip(-32768, 32767).astype(np.int16)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
        for key in _COPIED:
            if key in template and template.data_element(key).value not in (None, ""):
                setattr(ds, key, template.data_element(key).value)
        for key, value in _MR_DEFAULTS.items():
            if key not in ds:
                setattr(ds, key, value)
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality = "MR"
        ds.SeriesInstanceUID, ds.SeriesNumber, ds.SeriesDescription = series_uid, number, desc[:64]
        ds.InstanceNumber = s + 1
        ds.ImageType = ["DERIVED", "SECONDARY", "M", "TRANSMRSR"]
        ds.DerivationDescription = derivation[:1024]
        ds.SourceImageSequence = [_reference(r.SOPClassUID, r.SOPInstanceUID) for r in refs if "SOPInstanceUID" in r]
        ref_series = pydicom.Dataset()
        ref_series.SeriesInstanceUID = template.SeriesInstanceUID
        ref_series.ReferencedInstanceSequence = list(ds.SourceImageSequence)
        ds.ReferencedSeriesSequence = [ref_series]
        corner = lps @ np.array([*(0 if i != slice_axis else s for i in range(3)), 1.0])
        ds.ImagePositionPatient = [_ds(v) for v in corner[:3]]
        ds.ImageOrientationPatient = [_ds(v) for v in (*row_dir, *col_dir)]
        ds.PixelSpacing = [_ds(row_step), _ds(col_step)]
        ds.SliceThickness = _ds(thickness)
        ds.SpacingBetweenSlices = _ds(thickness)
        ds.SliceLocation = _ds(float(np.dot(normal, corner[:3])))
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = int(pixels.shape[0]), int(pixels.shape[1])
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = _ds(slope), _ds(inter), "US"
        ds.WindowCenter, ds.WindowWidth = _ds(center), _ds(width)
        ds.BurnedInAnnotation = "NO"
        ds.PixelData = np.ascontiguousarray(stored).tobytes()
        target = tmp / f"IM{s + 1:04d}.dcm"
        try:
            try:
                ds.save_as(target, enforce_file_format=True)  # pydicom 3
            except TypeError:
                ds.save_as(target, write_like_original=False)  # pydicom 2
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        written.append(out / target.name)
    os.chmod(tmp, 0o755)  # mkdtemp's folder is private; the series is an ordinary output
    if out.is_dir():
        out.rmdir()  # empty (checked above)
    os.replace(tmp, out)
    return written


def _reference(sop_class, sop_instance):
    import pydicom

    item = pydicom.Dataset()
    item.ReferencedSOPClassUID = sop_class
    item.ReferencedSOPInstanceUID = sop_instance
    return item


def _ds(value: float) -> str:
    """A DICOM decimal string (at most 16 characters) for ``value``."""
    for digits in range(10, 0, -1):
        text = f"{float(value):.{digits}g}"
        if len(text) <= 16:
            return text
    return f"{float(value):.0f}"
