"""One uploaded volume in the app: run it, keep what the viewer needs, redraw slices at any φ.

Everything the Gradio app shows comes from here, so the UI code holds no model or image logic.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .annotations import blinded_order
from .data.degradation import simulate_thick, thick_affine, thin_affine
from .data.io import load_volume, save_volume, simulation_tag, thick_axis, thin_count_from_header
from .data.normalization import IntensityScaler
from .evaluation.metrics import foreground_mask, psnr, ssim
from .inference import DEFAULT_FUSION, resolve_geometry, super_resolve, super_resolve_slices
from .models import TransMRSR
from .viewer import PLANES, display_to_slice, error_map, mri_window, plane_slice, plane_spacing, to_rgb, window

if TYPE_CHECKING:
    from .adapt import AdaptOptions

SWEEP_PHIS = (0.0, 0.25, 0.5, 0.75, 1.0)
#: Why the φ preview, φ sweep and φ comparisons are off for a case (see :attr:`Case.live_phi`).
NO_LIVE_PHI = (
    "φ is fixed for this result: it was served through the any-factor path (a factor the network "
    "was not trained at, run on a resampled grid) or adapted to this scan, so another φ cannot be "
    "recomputed per slice; the φ sweep and φ comparisons are off. Run again with another φ instead."
)


#: Below this maximum a trust map is kept in memory as float16 (half a float32 volume; three
#: significant digits are plenty for a colour overlay and a mean). The downloads are float32.
_FLOAT16_MAX = 6.0e4


def _compact(vol: np.ndarray) -> np.ndarray:
    """``vol`` as float16 when its values fit (see :data:`_FLOAT16_MAX`), else float32."""
    a = np.asarray(vol, dtype=np.float32)
    finite = a[np.isfinite(a)]
    fits = not finite.size or float(np.abs(finite).max()) < _FLOAT16_MAX
    return a.astype(np.float16) if fits else a


def head_level(vol: np.ndarray, fraction: float = 0.1) -> float:
    """The intensity above which a voxel of ``vol`` counts as head: ``fraction`` of the volume's
    robust range (its minimum to its 99.5th percentile; the rule of the consistency summary, no
    morphology: cheap on a 1 mm head). Input units."""
    scaler = IntensityScaler.fit(np.asarray(vol, dtype=np.float32))
    return float(scaler.low + fraction * (scaler.high - scaler.low))


def head_mask(vol: np.ndarray, fraction: float = 0.1) -> np.ndarray:
    """Where the head is (:func:`head_level`), bool of ``vol``'s shape. Used for the uncertainty's
    one-line summary and the reader study's inside / outside means."""
    return np.asarray(vol) > head_level(vol, fraction)


@dataclass
class CaseTrust:
    """The trust layer of a case (:mod:`transmrsr.trust`, issue #18), on the SR grid.

    Attributes:
        consistency: ``|degrade(SR) - LR|`` spread onto the SR grid ``(X', Y', Z')``, input
            intensity units; float16 (float32 when the values do not fit), see :func:`_compact`.
        uncertainty: per-voxel spread of runs that should agree, weighted by the acquisition's geometry
            (:func:`transmrsr.trust.geometry_weighted`), same grid, units and dtype rule;
            None when it could not be computed.
        summary / cubic: the consistency summaries (:class:`transmrsr.trust.ConsistencySummary`)
            of the SR and of cubic interpolation (for scale).
        method: the uncertainty's runs (``"planes"``: the fused run's two planes, free;
            ``"flips"``: one extra run on the mirrored scan, without fusion).
        extra_runs: SR runs made for the uncertainty beyond the SR itself.
        seconds: wall time (s) of the consistency and the uncertainty (``transmrsr.trust.TrustMaps.seconds``).
        consistency_path / uncertainty_path: the float32 NIfTI downloads (SR grid, the SR's affine).
        consistency_vmax / uncertainty_vmax: the overlays' colour scale tops (99.5th percentile in
            the head, input units), computed once so that every redraw reuses them.
        uncertainty_mean / uncertainty_p95: the uncertainty's mean and 95th percentile in the head
            (:func:`head_mask` of the SR), input units.
        head_level: the SR intensity above which a voxel is head (:func:`head_level`), input units.
    """

    consistency: np.ndarray
    uncertainty: np.ndarray | None
    summary: object
    cubic: object
    method: str | None
    extra_runs: int
    seconds: dict[str, float]
    consistency_path: Path
    uncertainty_path: Path | None
    consistency_vmax: float
    uncertainty_vmax: float
    uncertainty_mean: float = float("nan")
    uncertainty_p95: float = float("nan")
    head_level: float = 0.0

    def consistency_line(self) -> str:
        """One line: the consistency summary number and what "small" means for it."""
        s, c = self.summary, self.cubic
        return (
            f"**Data consistency** |degrade(SR) − LR|: {100 * s.relative:.2f} % of the intensity range "
            f"(cubic interpolation: {100 * c.relative:.2f} %; the 1 mm truth scores 0, the bundled weights about "
            "half of cubic). Small: the SR reproduces the slices that were measured; on the map, bright slabs "
            "are where it contradicts them."
        )

    def uncertainty_line(self) -> str:
        """One line: the uncertainty's mean and 95th percentile in the head, and its runs."""
        if self.uncertainty is None:
            return "**Uncertainty**: not computed for this run."
        runs = {
            "planes": "the fused run's two planes, no extra run",
            "flips": "the SR and one extra run on the mirrored scan",
        }.get(self.method or "", f"{self.method}, {self.extra_runs} extra run(s)")
        return (
            f"**Uncertainty** (spread of runs that should agree: {runs}; weighted by the SR's through-plane "
            f"contrast and the distance from the acquired slices): mean {self.uncertainty_mean:.4g}, "
            f"95th percentile {self.uncertainty_p95:.4g} in the head (input intensity units; compare places "
            "within this scan, not numbers across scans)."
        )


@dataclass
class Case:
    """A super-resolved volume with its inputs, on the thin grid (input intensity units)."""

    name: str
    axis: int
    factor: int
    slice_axis: int
    phi: float
    zooms: tuple[float, float, float]
    affine: np.ndarray
    interp: np.ndarray
    sr: np.ndarray
    hr: np.ndarray | None
    scaler: IntensityScaler
    sr_path: Path
    simulated: bool
    metrics: list[dict] = field(default_factory=list)
    window: tuple[float, float] = (0.0, 1.0)
    fusion: bool = False  # the SR averages both planes that contain the thick axis
    input_sha256: str = ""  # of the uploaded file's bytes
    model_name: str = ""
    model_version: str = ""
    warnings: list[str] = field(default_factory=list)  # the input looks outside the model's training range
    acq_factor: float | None = None  # served through the any-factor path: the thick-axis factor (may be non-integer)
    adapted: bool = False  # the SR comes from a copy of the model adapted to this scan
    series: str = ""  # a DICOM upload: the series converted (SeriesInfo.describe(): vendor, voxels, thickness / gap)
    trust: CaseTrust | None = None  # the trust maps of the run (None: the run was made without them)

    @property
    def live_phi(self) -> bool:
        """Whether another φ can be recomputed per slice (the network ran on this grid with the loaded
        weights): not for a case served through the any-factor path or adapted to its scan."""
        return self.acq_factor is None and not self.adapted

    @property
    def factor_label(self) -> str:
        return f"{self.acq_factor:.3g}" if self.acq_factor is not None else str(self.factor)

    @property
    def case_id(self) -> str:
        """Key of the case in the reader study (label files): the input's hash, never its name."""
        return self.input_sha256[:16] if self.input_sha256 else zlib.crc32(self.name.encode()).to_bytes(4, "big").hex()

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.sr.shape)

    def n_slices(self, plane: str) -> int:
        return self.shape[PLANES[plane]]


@dataclass(frozen=True)
class Plan:
    """How an upload will be run, read from its header alone (no voxel data)."""

    axis: int
    factor: int  # the integer factor of the network that runs
    simulated: bool  # isotropic upload: thick slices are simulated at the chosen scale
    acq: object | None = None  # an Acquisition: served through the library's any-factor path
    served: tuple[int, ...] = ()  # with ``acq``: the factors models exist for
    series: str = ""  # a DICOM upload: the series that will run (SeriesInfo.describe())

    @property
    def label(self) -> str:
        """The factor as the page shows it (``3.3`` for a non-integer acquisition)."""
        return f"{self.acq.factor:.3g}" if self.acq is not None else str(self.factor)


@dataclass(frozen=True)
class CaseOptions:
    """How :func:`run_case` runs an upload: everything but the file, the model and the output folder.

    Attributes:
        scale: the factor (×, an integer) at which an isotropic upload's thick-slice acquisition is
            simulated along the axial voxel axis; a thick-slice upload takes its own from its header.
        phi: φ, the truncation level (unitless, 0 to 1; 1: no truncation).
        fusion: average the SR of both planes that contain the thick axis (about twice the work).
        progress: called as ``progress(done, total)`` while the network runs (slices; adaptation steps
            report through ``adapt``'s own callback).
        plan: from :func:`plan_volume`, checked against the model beforehand: a volume whose geometry
            differs is refused before inference; one with an acquisition (``plan.acq``) runs through
            the any-factor path. None: the geometry is read from the volume.
        model_name, model_version: the model as the case records it (its name; the fingerprint of its
            weights, :func:`transmrsr.serving.state_version`).
        served: the model's training factors (×) for the input warnings; None: unknown (a custom model).
        adapt: :class:`~transmrsr.adapt.AdaptOptions` to adapt a copy of the model to the scan first
            (the model itself is never changed); None: no adaptation.
        trust: also compute the trust maps (data consistency, uncertainty) in the same run.
    """

    scale: int = 4
    phi: float = 0.9
    fusion: bool = DEFAULT_FUSION
    progress: Callable[[int, int], None] | None = None
    plan: Plan | None = None
    model_name: str = ""
    model_version: str = ""
    served: tuple[int, ...] | None = (4, 8)
    adapt: AdaptOptions | None = None
    trust: bool = False


class _HeaderView:
    """What :func:`transmrsr.inference.resolve_geometry` reads of a volume, without its data."""

    def __init__(self, path: str, header, affine: np.ndarray) -> None:
        self.path, self.header = path, header
        self.zooms = tuple(float(v) for v in np.linalg.norm(np.asarray(affine)[:3, :3], axis=0))
        self.shape = tuple(int(n) for n in header.get_data_shape()[:3])


def direct_factor(acq) -> int | None:
    """The integer factor of an acquisition the app's direct path runs as it always has (no gap,
    isotropic in-plane, an integer factor), else None (the library's any-factor path)."""
    r = acq.factor
    others = [f for i, f in enumerate(acq.factors) if i != acq.axis]
    if acq.has_gap or any(abs(f - 1.0) > 1e-4 for f in others) or abs(r - round(r)) > 1e-3:
        return None
    return int(round(r))


def is_dicom_upload(path: str | Path) -> bool:
    """Whether an upload is a DICOM series (a ``.zip``, a folder or a DICOM file), not a NIfTI file."""
    from .data.dicom import is_dicom_input

    return is_dicom_input(path)


#: How the app's DICOM messages say to pick one of several series (the app has no series box).
APP_SERIES_CHOICE = "upload a zip of that series alone"


@contextlib.contextmanager
def converted_dicom(path: str | Path, work_dir: str | Path | None = None) -> Iterator:
    """A DICOM upload (``.zip``, folder or file) converted to NIfTI by ``dcm2niix``
    (:func:`transmrsr.data.dicom.convert_dicom`): yields its :class:`~transmrsr.data.dicom.DicomSeries`
    (the structural series, with ``dcm2niix``'s sidecar beside ``.nifti``: the slice thickness, hence a
    gap, reaches :func:`~transmrsr.inference.detect_acquisition`).

    The files go into a new hidden folder inside ``work_dir`` (the case's own folder, so that a
    session's cleanup removes them even after a crash; a temporary folder when None) and are
    removed on exit. Messages name the upload by its file name only and, where it holds several
    series, list them and ask for a zip of one (never ``--series``, which the app does not have).
    """
    from .data.dicom import convert_dicom

    parent = None
    if work_dir is not None:
        parent = Path(work_dir)
        parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".dicom-", dir=parent))
    try:
        yield convert_dicom(path, work, shown=Path(path).name, chooser=APP_SERIES_CHOICE)
    finally:
        shutil.rmtree(work, ignore_errors=True)


@contextlib.contextmanager
def _naming_the_upload(dicom) -> Iterator[None]:
    """Errors about the converted NIfTI name the upload and its series instead (``series.zip
    (series 3 't1_fl2d_sag')``), never the working folder: the app is public."""
    from .data.io import VolumeError

    try:
        yield
    except ValueError as exc:  # VolumeError, FactorNotServed, a geometry that differs from the plan
        shown = dicom.public_path()
        text = str(exc).replace(str(dicom.nifti), shown).replace(str(dicom.workdir), dicom.source)
        if text == str(exc):
            raise
        if isinstance(exc, VolumeError):
            raise VolumeError(text) from None
        try:
            renamed = type(exc)(text)
        except Exception:  # noqa: BLE001 - an exception class with another signature
            renamed = ValueError(text)
        raise renamed from None


def plan_volume(
    path: str | Path,
    scale: int = 4,
    served: Callable[[float], tuple[int, ...]] | None = None,
    work_dir: str | Path | None = None,
) -> Plan:
    """Thick axis and factor of an upload from its header only (fast, before any model is loaded
    or voxel read): a thick-slice file's own factor, never ``scale``; an isotropic one is
    simulated along the axial voxel axis at ``scale``. Raises VolumeError for an unreadable file.

    ``served(r)``: the integer factors of the models that may serve a thick-slice factor ``r``
    (FactorNotServed when none). With it any factor from 1.5 to 10 is planned: one a model serves
    directly (an integer, no gap, isotropic in-plane) runs the direct path as before, any other
    gets ``plan.acq`` (the library's any-factor path, ``plan.factor`` the network that runs); a
    factor outside 1.5 to 10 raises FactorNotServed. Without it, only header integer factors.

    A DICOM upload (``.zip``, folder or DICOM file; :func:`is_dicom_upload`) is converted first
    (:func:`converted_dicom`, into ``work_dir`` when given; removed on return) and planned from the
    converted header and sidecar: a gap (slice thickness below the spacing) makes ``plan.acq``
    carry it (``acq.slice_thickness``); ``plan.series`` describes the series. Several structural
    series raise VolumeError listing them.
    """
    if is_dicom_upload(path):
        with converted_dicom(path, work_dir) as dicom, _naming_the_upload(dicom):
            return replace(_plan_nifti(dicom.nifti, scale, served), series=dicom.series.describe())
    return _plan_nifti(path, scale, served)


def _plan_nifti(path: str | Path, scale: int, served: Callable[[float], tuple[int, ...]] | None) -> Plan:
    """:func:`plan_volume` of a NIfTI file."""
    import nibabel as nib

    from .data.io import VolumeError

    p = Path(path)
    try:
        img = nib.load(str(p))
        view = _HeaderView(str(p), img.header, img.affine)
        if len(img.shape) < 3 or not np.all(np.isfinite(view.zooms)) or min(view.zooms) <= 0:
            raise ValueError("no usable geometry")
    except VolumeError:
        raise
    except Exception:  # let the full reader say precisely what is wrong
        load_volume(p)
        raise VolumeError(f"{p}: the header's geometry cannot be read") from None
    if thick_axis(view.zooms) is None and not simulation_tag(img.header):
        return Plan(axis=2, factor=int(scale), simulated=True)
    if served is None:  # the direct path only (integer factors from the header)
        axis, factor = resolve_geometry(view)
        return Plan(axis=int(axis), factor=int(factor), simulated=False)
    from .inference import MAX_FACTOR, MIN_FACTOR, detect_acquisition, plan_serving
    from .serving import FactorNotServed

    try:
        acq = detect_acquisition(view)
    except VolumeError:
        r = max(view.zooms) / min(view.zooms)  # the thick spacing over the finest in-plane one
        if MIN_FACTOR - 1e-6 <= r <= MAX_FACTOR + 1e-6:
            raise
        raise FactorNotServed(
            f"a ×{r:.3g} thick-slice factor is not served: factors {MIN_FACTOR:g} to {MAX_FACTOR:g} are "
            "(slice spacing over the in-plane spacing)"
        ) from None
    models = served(acq.factor)  # FactorNotServed when no model can serve it
    direct = direct_factor(acq)
    if direct is not None and direct in models:
        return Plan(axis=int(acq.axis), factor=direct, simulated=False)
    return Plan(
        axis=int(acq.axis),
        factor=plan_serving(acq, models).model_factor,
        simulated=False,
        acq=acq,
        served=tuple(models),
    )


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (hex); of a folder (a DICOM series): of its files' relative names
    and bytes, in sorted order, so that the same series gives the same case id."""
    h = hashlib.sha256()
    p = Path(path)
    files = (
        [(f.relative_to(p).as_posix(), f) for f in sorted(p.rglob("*")) if f.is_file()] if p.is_dir() else [(None, p)]
    )
    for rel, f in files:
        if rel is not None:  # a file's hash stays the plain hash of its bytes
            h.update(rel.encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


# Contrast words are matched per token (letters and digits between separators), so that a
# slice size, plane or 3-D prefix glued to the word is still seen (``flair3mm``, ``t2w2mm``,
# ``3DFLAIR``, ``axT2``, ``pdfse``) while words that merely contain one are not (``contrast``,
# ``radcliffe``). Decisions, documented in docs/dicom-and-bids.md:
# * T2* (``t2star``, ``T2starw``, ``T2*``) and T2 / PD / FLAIR maps count as not T1;
# * a text that also names T1 (``t1``, ``t1w``, ``mprage``, ``spgr``...) is taken as T1: ``T1 FLAIR``
#   and ``t1_flair`` are T1-weighted FLAIR, a common clinical sequence;
# * identifier entities (``sub-PD01``, ``ses-``, ``run-``...) are not read: Parkinson cohorts name
#   their subjects ``PD…``.
_PREFIX = r"(?:[23]d|ax|sag|cor|tra|inplane)?"
_SEQUENCE = r"(?P<seq>fse|tse|frfse|se|gre|space|cube|blade|propeller|haste|flair|fs|fatsat)?"
_TRAIL = r"(?P<trail>\d+(?:p\d+)?(?:mm|iso)|[23]d|\d+)?"
_NOT_T1_TOKEN = re.compile(
    "^"
    + _PREFIX
    + r"(?P<c>t2star|pdt2|t2|flair|pd|dwi|dti|adc|bold|swi|mra|angio|tof|ct|stir)(?P<w>w|map)?"
    + _SEQUENCE
    + _TRAIL
    + "$"
)
_T1_TOKEN = re.compile(
    "^"
    + _PREFIX
    + r"(?:t1(?:w|c|ce|gd|rho|map)?|mprage|mp2rage|mpr|spgr|fspgr|irspgr|bravo|tfl3d\d*|fl3d|fl2d|tfe)"
    + _SEQUENCE
    + _TRAIL
    + "$"
)
_IDENTIFIER = re.compile(r"(?<![a-z0-9])(?:sub|ses|run|echo|inv|part|chunk)-[a-z0-9]+")
_SHOWN = {"t2star": "T2*", "pdt2": "PD/T2", "angio": "MRA"}


def _not_t1_word(text: str) -> str | None:
    """The non-T1 contrast ``text`` names (``"FLAIR"``, ``"T2*"``...), or None (none, or it also names T1)."""
    low = re.sub(r"t2\s*\*", "t2star", str(text).lower())
    low = _IDENTIFIER.sub(" ", low)
    tokens = [t for t in re.split(r"[^a-z0-9]+", low) if t]
    if any(_T1_TOKEN.match(t) for t in tokens):
        return None
    found = []
    for t in tokens:
        m = _NOT_T1_TOKEN.match(t)
        if not m:
            continue
        word, trail = m.group("c"), m.group("trail") or ""
        if word in ("pd", "ct") and not m.group("seq") and trail.isdigit() and len(trail) > 1:
            continue  # PD001, CT12: an identifier, not a contrast
        if m.group("seq") == "flair":
            word = "flair"  # t2flair, pdflair: the FLAIR is what matters
        # as the file says it (T2W, PDW, as before), the weighting kept: a T2 map is not a T2w image
        found.append(_SHOWN.get(word, word.upper()) + {"w": "W", "map": " map"}.get(m.group("w") or "", ""))
    # "T2 FLAIR" is a FLAIR; otherwise the first word named
    return "FLAIR" if "FLAIR" in found else (found[0] if found else None)


def read_sidecar(path: str | Path) -> dict:
    """The BIDS / dcm2niix JSON sidecar beside a NIfTI file (``scan.json`` for ``scan.nii.gz``),
    or ``{}`` when there is none or it cannot be read."""
    p = Path(path)
    stem = p.name
    for ext in (".nii.gz", ".nii"):
        if stem.lower().endswith(ext):
            stem = stem[: -len(ext)]
            break
    side = p.with_name(stem + ".json")
    try:
        doc = json.loads(side.read_text()) if side.is_file() else {}
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def contrast_guess(name: str, header, sidecar: str | Path | dict | None = None) -> str | None:
    """A hint that the volume is not T1-weighted, from what it says about itself, or None: its file
    name, the NIfTI header's description, and its JSON sidecar's ``SeriesDescription`` /
    ``ProtocolName`` (BIDS or dcm2niix) naming T2, T2*, FLAIR, PD, DWI, ...

    ``name``: the file name (or its path: only the last part is read, and when it is an existing
    file its sidecar is looked for beside it). ``sidecar``: the sidecar itself (a dict), its image's
    path, or the JSON's path. A text that also names T1 (``T1 FLAIR``) counts as T1. A guess: a T2
    volume called ``scan.nii.gz`` with an empty description and no sidecar passes.
    """
    descrip = ""
    try:
        descrip = bytes(header["descrip"].item()).decode("latin-1") if header is not None else ""
    except Exception:  # not a NIfTI header: nothing to read
        descrip = ""
    if sidecar is None and os.sep in str(name) and Path(name).is_file():
        sidecar = name
    if isinstance(sidecar, dict):
        side = sidecar
    elif sidecar is not None:
        p = Path(sidecar)
        side = read_sidecar(p) if not p.name.lower().endswith(".json") else read_sidecar(p.with_suffix(".nii"))
    else:
        side = {}
    sources = [("name", Path(str(name)).name), ("header", descrip)]
    sources += [(f"sidecar's {key}", str(side.get(key) or "")) for key in ("SeriesDescription", "ProtocolName")]
    for where, text in sources:
        found = _not_t1_word(text)
        if found:
            return f"its {where} says {found}"
    return None


def input_warnings(
    name: str, header, factor: int, served: tuple[int, ...] | None, sidecar: str | Path | dict | None = None
) -> list[str]:
    """Why the result may be unreliable: a contrast other than T1 (:func:`contrast_guess` of the
    name, header and ``sidecar``), a factor the model was not trained for (``served``: the model's
    factors, None when unknown)."""
    from .trust import ADAPT_HINT_NOT_T1

    out = []
    hint = contrast_guess(name, header, sidecar)
    if hint:
        out.append(
            f"This does not look like a T1-weighted scan ({hint}); the models are trained on T1 only, "
            f"so the result may be wrong. {ADAPT_HINT_NOT_T1}"
        )
    if served is None:
        out.append(f"The model's training factor is not recorded: it may not be made for ×{factor}.")
    elif factor not in served:
        out.append(
            f"×{factor} is outside the factors the model was trained for ({', '.join(f'×{f}' for f in served)})."
        )
    return out


def trust_method(fused: bool) -> str:
    """The app's uncertainty runs: the fused run's two planes (free) when the SR is fused, else
    the SR beside one extra run on the mirrored scan (``transmrsr.trust.UNCERTAINTY_METHODS``)."""
    return "planes" if fused else "flips"


def _top(vol: np.ndarray, mask: np.ndarray, q: float = 99.5) -> float:
    """The ``q``-th percentile of ``vol`` inside ``mask`` (all voxels when the mask is empty), on a
    strided sample of at most a million voxels; never below a tiny positive number."""
    v = np.asarray(vol)[mask] if mask.any() else np.asarray(vol).ravel()
    v = v[:: max(1, v.size // 1_000_000)].astype(np.float32)
    v = v[np.isfinite(v)]
    return max(float(np.percentile(v, q)) if v.size else 0.0, 1e-6)


def keep_trust(maps, sr: np.ndarray, sr_affine: np.ndarray, sr_path: Path, header) -> CaseTrust:
    """A :class:`CaseTrust` from ``maps`` (:class:`transmrsr.trust.TrustMaps` of the run whose SR
    is ``sr``, written at ``sr_path`` with ``sr_affine``): writes both maps beside the SR as
    float32 NIfTI on the SR grid with the SR's affine (``<sr>_consistency.nii.gz``,
    ``<sr>_uncertainty.nii.gz``; ``header``, the input's, for its metadata, with a description of
    the map), keeps compact copies for the overlays and computes the one-line summaries."""
    stem = sr_path.name[: -len(".nii.gz")] if sr_path.name.endswith(".nii.gz") else sr_path.stem

    def described(text: str):
        h = header.copy() if header is not None else None
        if h is not None:  # a map is not a scan: no simulation tag, no display range of the input
            h["descrip"] = text[:79].encode()
            h["cal_min"], h["cal_max"] = 0.0, 0.0
        return h

    rel = maps.consistency.relative
    cons_path = save_volume(
        sr_path.with_name(f"{stem}_consistency.nii.gz"),
        maps.consistency_sr,
        sr_affine,
        header=described(f"transmrsr consistency |degrade(SR)-LR| rel={rel:.4f}"),
    )
    level = head_level(sr)
    head = np.asarray(sr) > level
    unc_path, mean, p95, unc_top = None, float("nan"), float("nan"), 1e-6
    if maps.uncertainty is not None:
        unc_path = save_volume(
            sr_path.with_name(f"{stem}_uncertainty.nii.gz"),
            maps.uncertainty,
            sr_affine,
            header=described(f"transmrsr uncertainty {maps.method}"),
        )
        inside = maps.uncertainty[head] if head.any() else maps.uncertainty.ravel()
        mean, p95 = float(inside.mean()), float(np.percentile(inside, 95))
        unc_top = _top(maps.uncertainty, head)
    return CaseTrust(
        consistency=_compact(maps.consistency_sr),
        uncertainty=_compact(maps.uncertainty) if maps.uncertainty is not None else None,
        summary=maps.consistency,
        cubic=maps.consistency_cubic,
        method=maps.method,
        extra_runs=int(maps.extra_runs),
        seconds=dict(maps.seconds),
        consistency_path=cons_path,
        uncertainty_path=unc_path,
        consistency_vmax=_top(maps.consistency_sr, head),
        uncertainty_vmax=unc_top,
        uncertainty_mean=mean,
        uncertainty_p95=p95,
        head_level=level,
    )


def range_warnings(data: np.ndarray, affine: np.ndarray, axis: int, contrast: bool) -> list[str]:
    """:func:`transmrsr.trust.input_range_warnings` of the upload (geometry always; the contrast
    test only for the bundled T1 weights, ``contrast``), as the app shows them."""
    from .trust import input_range_warnings

    return input_range_warnings(data, affine, axis, contrast=contrast)


def run_case(path: str | Path, model: TransMRSR, out_dir: str | Path, options: CaseOptions | None = None) -> Case:
    """Load an upload, super-resolve it with ``options`` (:class:`CaseOptions`; None: the defaults) and
    write the SR NIfTI into ``out_dir``.

    A thick-slice upload takes axis and factor from its header; an isotropic one is treated as
    HR: its thick-slice acquisition along the axial voxel axis (2) is simulated at ``options.scale``
    and the HR kept as reference. With ``options.plan`` (from :func:`plan_volume`, checked against the
    model beforehand) a volume whose geometry differs from the plan is refused before inference.
    ``options.served``: the model's training factors for the warnings (None: unknown).

    A plan with an acquisition (``plan.acq``: a factor from 1.5 to 10, non-integer or with a gap)
    runs through :func:`~transmrsr.inference.super_resolve_acquisition` and its output grid.
    ``options.adapt``: :class:`~transmrsr.adapt.AdaptOptions` to adapt a copy of ``model`` to the scan
    first (the library path also for an isotropic upload); ``model`` itself is never changed.

    A DICOM upload (``.zip``, folder or DICOM file) is converted by ``dcm2niix`` into a hidden
    folder inside ``out_dir`` (removed when done; :func:`converted_dicom`) and run from the
    converted NIfTI and its sidecar, so a gap reaches the any-factor path; the case is named after
    the upload, ``input_sha256`` is the upload's, ``case.series`` describes the series, and errors
    name the upload and the series, never a server folder.

    ``options.trust``: also compute the trust maps in the same run (:mod:`transmrsr.trust`, issue #18):
    the data consistency and the uncertainty (:func:`trust_method`: free with fusion, one extra
    run without), both written beside the SR (float32 NIfTI, SR grid and affine) and kept on
    ``case.trust`` (:class:`CaseTrust`). The out-of-range warnings of
    :func:`transmrsr.trust.input_range_warnings` are added to ``case.warnings`` either way (a
    second or two on a 1 mm head; the contrast test only when ``served`` is known, i.e. the
    bundled T1 weights).
    """
    options = options or CaseOptions()
    if is_dicom_upload(path):
        stem = Path(path).name
        for ext in (".zip", ".dcm", ".ima", ".dicom"):
            stem = stem[: -len(ext)] if stem.lower().endswith(ext) else stem
        with converted_dicom(path, out_dir) as dicom, _naming_the_upload(dicom):
            case = _run_nifti(
                dicom.nifti, model, out_dir, options, name=stem or "dicom", source=path, shown=Path(path).name
            )
            case.series = dicom.series.describe()
            return case
    return _run_nifti(path, model, out_dir, options)


def _run_nifti(
    path,
    model: TransMRSR,
    out_dir,
    options: CaseOptions,
    name: str | None = None,
    source: str | Path | None = None,
    shown: str | None = None,
) -> Case:
    """:func:`run_case` of a NIfTI file. ``name`` / ``source`` / ``shown``: the case's name, the
    file whose hash is ``input_sha256`` and the name the warnings read, when they are not the NIfTI's
    (a converted DICOM upload); its sidecar is read for the contrast either way."""
    vol = load_volume(path)
    name = name or Path(vol.path).name.replace(".nii.gz", "").replace(".nii", "")
    source = path if source is None else source
    shown = shown or Path(vol.path).name
    iso = thick_axis(vol.zooms) is None and not simulation_tag(vol.header)
    plan = options.plan
    if (plan is not None and plan.acq is not None) or options.adapt is not None:
        return _run_acquisition(vol, name, iso, source, model, out_dir, options, shown)
    if iso:
        axis, factor, hr = 2, int(options.scale), vol.data
        lr = simulate_thick(hr, axis, factor)
        lr_affine, n_thin = thick_affine(vol.affine, axis, factor), hr.shape[axis]
    else:
        axis, factor = resolve_geometry(vol)
        lr, lr_affine, hr, n_thin = vol.data, vol.affine, None, thin_count_from_header(vol.header)
    if plan is not None and (plan.axis, plan.factor, plan.simulated) != (axis, factor, iso):
        raise ValueError(f"{name}: its geometry (axis {axis}, ×{factor}) differs from the one checked ({plan})")
    result = super_resolve(
        model,
        lr,
        axis,
        factor,
        phi=options.phi,
        fusion=options.fusion,
        n_thin=n_thin,
        progress=options.progress,
        show_progress=False,
        keep_planes=options.trust,
    )
    affine = thin_affine(lr_affine, axis, factor)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sr_path = save_volume(out / f"{name}_sr_x{factor}.nii.gz", result.sr, affine, header=vol.header)
    # the uploaded volume is what the warnings judge (for an isotropic upload: the HR, thick axis 2)
    warnings = input_warnings(shown, vol.header, factor, options.served, sidecar=vol.path)
    warnings += range_warnings(vol.data, vol.affine, axis, contrast=options.served is not None)
    maps = None
    if options.trust:
        maps = _direct_trust(model, result, lr, lr_affine, axis, factor, options.phi, options.fusion, n_thin)
    case = Case(
        name=name,
        axis=axis,
        factor=factor,
        slice_axis=result.slice_axes[0],
        phi=float(options.phi),
        zooms=tuple(float(z) for z in np.linalg.norm(affine[:3, :3], axis=0)),
        affine=affine,
        interp=result.interpolated,
        sr=result.sr,
        hr=hr,
        scaler=IntensityScaler.fit(lr),
        sr_path=sr_path,
        simulated=iso,
        fusion=len(result.slice_axes) > 1,
        input_sha256=file_sha256(source),
        model_name=options.model_name,
        model_version=options.model_version,
        warnings=warnings,
        trust=keep_trust(maps, result.sr, affine, sr_path, vol.header) if maps is not None else None,
    )
    return _with_window_and_metrics(case, "TransMRSR")


def _with_window_and_metrics(case: Case, method: str) -> Case:
    """``case`` with its display window (of the HR reference when it has one, else of the interpolated input)
    and, with an HR reference, its metrics: the SR (named ``method``) and cubic interpolation against the HR,
    the head-mask numbers first (the background only flatters)."""
    hr = case.hr
    case.window = mri_window(hr if hr is not None else case.interp)
    if hr is not None:
        mask = foreground_mask(hr)
        for name, vol in ((method, case.sr), ("cubic", case.interp)):
            case.metrics.append(
                {
                    "method": name,
                    "PSNR mask (dB)": round(float(psnr(vol, hr, mask)), 2),
                    "SSIM mask": round(float(ssim(vol, hr, mask)), 4),
                    "PSNR (dB)": round(float(psnr(vol, hr)), 2),
                    "SSIM": round(float(ssim(vol, hr)), 4),
                }
            )
    return case


def _direct_trust(model, result, lr, lr_affine, axis, factor, phi, fusion, n_thin):
    """The :class:`transmrsr.trust.TrustMaps` of a direct-path run (``result``, made with
    ``keep_planes=True`` from ``lr (X, Y, Z)``, thick along ``axis`` by the integer ``factor``,
    no gap, in-plane kept). The acquisition model is the direct path's own: a box slice profile
    as thick as the spacing (the direct path serves no gap), the output slice count of the run."""
    from .inference import Acquisition, AcquisitionResult
    from .trust import trust_for_result

    zooms = tuple(float(z) for z in np.linalg.norm(np.asarray(lr_affine)[:3, :3], axis=0))
    factors = [1.0, 1.0, 1.0]
    factors[axis] = float(factor)
    acq = Acquisition(
        axis=axis,
        zooms=zooms,
        factors=tuple(factors),
        slice_thickness=zooms[axis],
        n_thin=int(result.sr.shape[axis]),
    )

    def wrap(r) -> AcquisitionResult:
        return AcquisitionResult(
            sr=r.sr, cubic=r.interpolated, acquisition=acq, plan=None, slices_run=r.slices_run, planes=r.planes
        )

    def rerun(data: np.ndarray, overrides: dict) -> AcquisitionResult:
        # the same settings as the SR (another φ only where the method asks for it), silently
        r = super_resolve(
            model,
            data,
            axis,
            factor,
            phi=overrides.get("phi", phi),
            fusion=fusion,
            n_thin=n_thin,
            show_progress=False,
            keep_planes=True,
        )
        return wrap(r)

    method = trust_method(len(result.planes) > 1)
    return trust_for_result(wrap(result), lr, rerun, uncertainty=method)


def _run_acquisition(vol, name, iso, path, model: TransMRSR, out_dir, options: CaseOptions, shown) -> Case:
    """:func:`run_case` through the library's any-factor path (and adaptation)."""
    from .data.io import VolumeError
    from .inference import Acquisition, detect_acquisition, super_resolve_acquisition

    plan = options.plan
    hr = None
    if iso:  # an isotropic upload adapted to: its simulated thick-slice version on the HR grid
        axis, factor, hr = 2, int(options.scale), vol.data
        data = simulate_thick(hr, axis, factor)
        lr_affine = thick_affine(vol.affine, axis, factor)
        zooms = [float(z) for z in np.linalg.norm(lr_affine[:3, :3], axis=0)]
        factors = [1.0, 1.0, 1.0]
        factors[axis] = float(factor)
        acq = Acquisition(
            axis=axis, zooms=tuple(zooms), factors=tuple(factors), slice_thickness=zooms[axis], n_thin=hr.shape[axis]
        )
        models = (factor,)
    else:
        # the thickness the plan found (a DICOM series, or a sidecar beside the upload) must reach this run too:
        # the volume read here may come from a conversion folder that no longer holds the sidecar
        thickness = plan.acq.slice_thickness if plan is not None and plan.acq is not None else None
        try:
            acq = detect_acquisition(vol, slice_thickness=thickness)
        except VolumeError as exc:
            raise ValueError(str(exc)) from None
        data, lr_affine = vol.data, vol.affine
        models = plan.served if plan is not None and plan.acq is not None else (int(round(acq.factor)),)
        if (
            plan is not None
            and plan.acq is not None
            and (acq.axis != plan.acq.axis or abs(acq.factor - plan.acq.factor) > 1e-6)
        ):
            raise ValueError(f"{name}: its geometry (axis {acq.axis}, ×{acq.factor:.3g}) differs from the one checked")
    if plan is not None and plan.simulated != iso:
        raise ValueError(f"{name}: its geometry differs from the one checked ({plan})")
    run = dict(
        served=tuple(models),
        adapt=options.adapt,
        phi=options.phi,
        fusion=options.fusion,
        progress=options.progress,
        show_progress=False,
    )
    maps = None
    if options.trust:  # the same SR (bit-identical), its maps, and an adapted copy reused by any extra run
        from .trust import super_resolve_with_trust

        res, maps = super_resolve_with_trust(
            lambda m: model, data, acq, uncertainty=trust_method(bool(options.fusion)), **run
        )
    else:
        res = super_resolve_acquisition(lambda m: model, data, acq, **run)
    # an isotropic upload stays on its HR grid (as on the direct path); a thick one goes onto the library's grid
    affine = vol.affine if iso else acq.output_affine(lr_affine)
    r = acq.factor
    label = f"{r:.3g}".replace(".", "p") if abs(r - round(r)) > 1e-6 else str(int(round(r)))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tag = "_adapted" if options.adapt is not None else ""
    sr_path = save_volume(out / f"{name}_sr_x{label}{tag}.nii.gz", res.sr, affine, header=vol.header)
    case = Case(
        name=name,
        axis=acq.axis,
        factor=res.plan.model_factor,
        slice_axis=-1,
        phi=float(options.phi),
        zooms=tuple(float(z) for z in np.linalg.norm(affine[:3, :3], axis=0)),
        affine=affine,
        interp=res.cubic,
        sr=res.sr,
        hr=hr,
        scaler=IntensityScaler.fit(data),
        sr_path=sr_path,
        simulated=iso,
        fusion=bool(options.fusion),
        input_sha256=file_sha256(path),
        model_name=options.model_name,
        model_version=options.model_version,
        warnings=input_warnings(shown, vol.header, res.plan.model_factor, options.served, sidecar=vol.path)
        + range_warnings(vol.data, vol.affine, acq.axis, contrast=options.served is not None),
        acq_factor=None if iso else float(r),
        adapted=options.adapt is not None,
        trust=keep_trust(maps, res.sr, affine, sr_path, vol.header) if maps is not None else None,
    )
    return _with_window_and_metrics(case, "TransMRSR (adapted)")


def sr_slice(
    case: Case, model: TransMRSR | None, plane: str, index: int, phi: float | None, one_plane: bool = False
) -> np.ndarray:
    """The SR slice on screen; recomputed through the network when ``phi`` differs from the
    volume's and the plane is the one the network runs on (other planes show the volume). For a
    fused volume the recomputed slice is that plane's SR alone: fusing would need every slice of
    the second plane. ``one_plane``: recompute also at the run's φ (a fused volume's slice
    otherwise), so that two φ compare like with like."""
    same_phi = phi is None or abs(phi - case.phi) < 1e-6
    if not case.live_phi:
        return plane_slice(case.sr, plane, index)
    if PLANES[plane] != case.slice_axis or (same_phi and not (one_plane and case.fusion)):
        return plane_slice(case.sr, plane, index)
    if model is None:
        raise ValueError("a model is needed to show another φ")
    scaled = case.scaler.forward(case.interp)
    idx = int(np.clip(index, 0, case.sr.shape[case.slice_axis] - 1))
    out = super_resolve_slices(model, scaled, case.slice_axis, [idx], case.phi if phi is None else phi)[0]
    vol_slice = np.clip(out, 0.0, None)
    full = case.scaler.inverse(vol_slice)
    return np.flipud(full.T)


def panels(case: Case, model: TransMRSR, plane: str, index: int, phi: float | None = None) -> dict:
    """Pictures for the viewer: LR (interpolated), SR, HR (or None), error map, slice PSNR."""
    lo, hi = case.window
    spacing = plane_spacing(case.zooms, plane)
    lr = plane_slice(case.interp, plane, index)
    sr = sr_slice(case, model, plane, index, phi)
    out = {
        "lr": to_rgb(window(lr, lo, hi), spacing),
        "sr": to_rgb(window(sr, lo, hi), spacing),
        "hr": None,
        "error": None,
        "psnr_sr": None,
        "psnr_lr": None,
    }
    if case.hr is not None:
        hr = plane_slice(case.hr, plane, index)
        out["hr"] = to_rgb(window(hr, lo, hi), spacing)
        out["error"] = error_map(sr - hr, vmax=0.25 * (hi - lo), spacing=spacing)
        rng = float(case.hr.max() - case.hr.min())
        out["psnr_sr"] = round(float(psnr(sr, hr, peak=rng)), 2)
        out["psnr_lr"] = round(float(psnr(lr, hr, peak=rng)), 2)
    return out


def phi_sweep(case: Case, model: TransMRSR, plane: str, index: int, phis=SWEEP_PHIS) -> list[tuple[np.ndarray, str]]:
    """The shown slice at several φ, each with its PSNR against the HR (when there is one). All
    come from the network's plane alone, also for a fused volume, so that they compare like with
    like (their labels say so then)."""
    if not case.live_phi:
        raise ValueError(NO_LIVE_PHI)
    if PLANES[plane] != case.slice_axis:
        raise ValueError(
            f"the φ sweep runs on the {next(p for p, a in PLANES.items() if a == case.slice_axis)} plane, "
            "the one the network works on"
        )
    lo, hi = case.window
    spacing = plane_spacing(case.zooms, plane)
    scaled = case.scaler.forward(case.interp)
    idx = int(np.clip(index, 0, case.sr.shape[case.slice_axis] - 1))
    outs = super_resolve_slices(model, scaled, case.slice_axis, [idx] * len(phis), list(phis))
    hr = plane_slice(case.hr, plane, index) if case.hr is not None else None
    gallery = []
    for p, o in zip(phis, outs):
        img = np.flipud(case.scaler.inverse(np.clip(o, 0.0, None)).T)
        label = f"φ = {p:.2f}" + (" · one plane" if case.fusion else "")
        if hr is not None:
            label += f" · PSNR {psnr(img, hr, peak=float(case.hr.max() - case.hr.min())):.2f} dB"
        gallery.append((to_rgb(window(img, lo, hi), spacing), label))
    return gallery


# ---------------------------------------------------------------------------------------- reader study
def method_label(phi: float | None) -> str:
    """The method name stored with a reading: ``"cubic"`` (``phi`` None) or ``"TransMRSR φ=0.90"``."""
    return "cubic" if phi is None else f"TransMRSR φ={float(phi):.2f}"


def _orientation(case: Case):
    """The radiological display of the case's grid (:class:`transmrsr.mpr.Orientation`)."""
    from .mpr import Orientation

    return Orientation(np.asarray(case.affine), case.shape)


def plane_axis(case: Case, plane: str) -> int:
    """The voxel axis that the anatomical ``plane`` slices, from the affine (any voxel order)."""
    if plane not in PLANES:
        raise ValueError(f"plane must be one of {sorted(PLANES)}, got {plane!r}")
    return _orientation(case).planes[plane].axis


def _voxel_plane(case: Case, plane: str) -> str:
    """The name :func:`sr_slice` and :func:`transmrsr.viewer.plane_slice` use (one per voxel axis) for
    the voxel axis of the anatomical ``plane``."""
    axis = plane_axis(case, plane)
    return next(p for p, a in PLANES.items() if a == axis)


def network_plane(case: Case) -> str:
    """The anatomical plane the network runs on (another φ can be recomputed there), or the coronal
    plane for a case without one (served through the any-factor path)."""
    o = _orientation(case)
    return next((p for p, spec in o.planes.items() if spec.axis == case.slice_axis), "coronal")


def reader_items(case: Case, plane: str, index: int, compare_phi: float | None = None, seed: int = 0) -> list[dict]:
    """The blinded images of one slice for a reader: the case's SR (at its φ) and either cubic
    interpolation (``compare_phi`` None) or TransMRSR at ``compare_phi``, in a random order that
    depends on ``seed`` and the slice (so the order cannot be learnt across slices).

    ``plane`` is anatomical (axial, coronal, sagittal: the voxel axis comes from the affine) and
    ``index`` a slice along that voxel axis. Returns ``[{"label": "Image A", "method": str,
    "phi": float | None, "one_plane": bool}, ...]``; only ``label`` is meant for the reader's eyes.
    A second φ can only be computed on the plane the network runs on (elsewhere the volume at the
    run's φ is all there is): ValueError there, and for the run's own φ. Comparing φ on a fused
    volume shows both φ from that plane's network alone (``one_plane``; method names say so), since
    the other φ cannot be fused per slice.
    """
    axis = plane_axis(case, plane)
    phis: list[float | None] = [case.phi, None]
    if compare_phi is not None:
        if abs(float(compare_phi) - case.phi) < 1e-6:
            raise ValueError(f"φ = {case.phi:.2f} is the run's own φ: choose another φ to compare against")
        if not case.live_phi:
            raise ValueError(NO_LIVE_PHI)
        if axis != case.slice_axis:
            raise ValueError(
                f"another φ can only be compared on the {network_plane(case)} plane, the one the network runs on"
            )
        phis[1] = round(float(compare_phi), 4)
    idx = int(np.clip(index, 0, case.shape[axis] - 1))
    key = zlib.crc32(f"{int(seed)}/{case.name}/{plane}/{idx}/{phis[1]}".encode())
    order = blinded_order(list(range(len(phis))), seed=key)
    one_plane = compare_phi is not None and case.fusion
    suffix = " (one plane)" if one_plane else ""
    return [
        {
            "label": f"Image {chr(65 + i)}",
            "method": method_label(phis[j]) + suffix,
            "phi": phis[j],
            "one_plane": one_plane,
        }
        for i, j in enumerate(order)
    ]


def _reader_slice(case: Case, vol: np.ndarray, plane: str, index: int) -> tuple[np.ndarray, object]:
    """Slice ``index`` of the anatomical ``plane`` of a volume on the case's grid, as the reader sees
    it (radiological: the patient's right on the screen's left), and the plane's
    :class:`transmrsr.mpr.PlaneSpec`."""
    o = _orientation(case)
    spec = o.planes[plane]
    idx = int(np.clip(index, 0, case.shape[spec.axis] - 1))
    return o.display(np.take(vol, idx, axis=spec.axis), plane), spec


def reader_image(
    case: Case, model: TransMRSR | None, plane: str, index: int, phi: float | None, one_plane: bool = False
) -> np.ndarray:
    """The picture of one blinded item, ``(H, W, 3)`` uint8: the cubic interpolation (``phi``
    None) or the SR (recomputed through ``model`` when ``phi`` is not the run's, or for a
    ``one_plane`` item of a fused volume; ``model`` may be None otherwise). Shown as the
    Super-resolve tab's viewer shows it by default: radiological (the patient's right on the
    screen's left, anterior / superior up), from the affine, whatever the voxel order; pixels
    square in mm (:func:`transmrsr.viewer.to_rgb`)."""
    lo, hi = case.window
    o = _orientation(case)
    spec = o.planes[plane]
    idx = int(np.clip(index, 0, case.shape[spec.axis] - 1))
    if phi is None:
        vox = np.take(case.interp, idx, axis=spec.axis)
    else:  # sr_slice speaks plane_slice's layout of a voxel axis: back to voxel order first
        vox = np.flipud(sr_slice(case, model, _voxel_plane(case, plane), idx, float(phi), one_plane=one_plane)).T
    return to_rgb(window(o.display(vox, plane), lo, hi), spec.spacing)


def painted_region(case: Case, plane: str, mask: np.ndarray) -> np.ndarray:
    """Undo the display transform of :func:`reader_image`: a mask ``(H, W)`` painted on the picture
    (any size: a canvas scaled in the browser is resampled) -> ``(h, w)`` bool in
    :func:`transmrsr.viewer.plane_slice` layout of the anatomical plane's voxel axis, ready for
    :meth:`transmrsr.annotations.AnnotationStore.add` (which maps it onto the SR voxel grid)."""
    o = _orientation(case)
    spec = o.planes[plane]
    shown = display_to_slice(mask, spec.shape, spec.spacing)  # (rows, cols) of the radiological picture
    return np.flipud(o.undisplay(shown, plane).T)


#: How strongly the reader's uncertainty overlay covers the picture at its colour scale's top.
READER_OVERLAY_OPACITY = 0.6


def uncertainty_picture(case: Case, plane: str, index: int, picture: np.ndarray) -> np.ndarray:
    """``picture`` (a :func:`reader_image` of this slice, ``(H, W, 3)`` uint8) with the case's
    uncertainty map over it (viridis from 0 to its 99.5th percentile in the head; the overlay's
    opacity grows with the value up to :data:`READER_OVERLAY_OPACITY`, as in the viewer).
    ValueError when the run has no uncertainty map."""
    import matplotlib

    trust = case.trust
    if trust is None or trust.uncertainty is None:
        raise ValueError("this run has no uncertainty map: run it again with 'Trust maps' on")
    img, spec = _reader_slice(case, trust.uncertainty, plane, index)
    t = np.clip(np.asarray(img, np.float32) / max(float(trust.uncertainty_vmax), 1e-6), 0.0, 1.0)
    from .viewer import display_indices

    yi, xi = display_indices(t.shape, spec.spacing)
    t = t[yi][:, xi]
    if t.shape != picture.shape[:2]:
        raise ValueError("the picture is not this slice's")
    lut = np.asarray(matplotlib.colormaps["viridis"](np.linspace(0.0, 1.0, 256)))[:, :3] * 255.0
    colour = lut[(t * 255).astype(np.int64)]
    a = READER_OVERLAY_OPACITY * t[..., None]
    return np.clip(picture.astype(np.float32) * (1 - a) + colour * a + 0.5, 0, 255).astype(np.uint8)


def region_uncertainty(case: Case, plane: str, index: int, region: np.ndarray | None) -> tuple[float, float] | None:
    """Mean uncertainty (input units) inside a painted ``region`` (:func:`painted_region`'s layout)
    of slice ``index`` of ``plane`` and in the rest of the head on that slice (:func:`head_mask`'s
    rule, the whole SR's range): ``(inside, outside)``, ``outside`` NaN when the region covers the
    head. None without a region or an uncertainty map."""
    trust = case.trust
    if trust is None or trust.uncertainty is None or region is None or not np.any(region):
        return None
    axis = plane_axis(case, plane)
    idx = int(np.clip(index, 0, case.shape[axis] - 1))
    u = np.take(trust.uncertainty, idx, axis=axis).astype(np.float32)
    reg = np.flipud(np.asarray(region, dtype=bool)).T  # plane_slice layout -> voxel order
    if reg.shape != u.shape:
        raise ValueError(f"region shape {np.asarray(region).shape} does not match the {plane} slice")
    head = np.take(case.sr, idx, axis=axis) > trust.head_level
    rest = head & ~reg
    return float(u[reg].mean()), float(u[rest].mean()) if rest.any() else float("nan")
