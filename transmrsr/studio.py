"""One uploaded volume in the app: run it, keep what the viewer needs, redraw slices at any φ.

Everything the Gradio app shows comes from here, so the UI code holds no model or image logic.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .annotations import blinded_order
from .data.degradation import simulate_thick, thick_affine, thin_affine
from .data.io import load_volume, save_volume, simulation_tag, thick_axis, thin_count_from_header
from .data.normalization import IntensityScaler
from .evaluation.metrics import foreground_mask, psnr, ssim
from .inference import DEFAULT_FUSION, resolve_geometry, super_resolve, super_resolve_slices
from .models import TransMRSR
from .viewer import PLANES, display_to_slice, error_map, mri_window, plane_slice, plane_spacing, to_rgb, window

SWEEP_PHIS = (0.0, 0.25, 0.5, 0.75, 1.0)
#: Why the φ preview, φ sweep and φ comparisons are off for a case (see :attr:`Case.live_phi`).
NO_LIVE_PHI = ("φ is fixed for this result: it was served through the any-factor path (a factor the network "
               "was not trained at, run on a resampled grid) or adapted to this scan, so another φ cannot be "
               "recomputed per slice; the φ sweep and φ comparisons are off. Run again with another φ instead.")


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

    @property
    def label(self) -> str:
        """The factor as the page shows it (``3.3`` for a non-integer acquisition)."""
        return f"{self.acq.factor:.3g}" if self.acq is not None else str(self.factor)


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


def plan_volume(path: str | Path, scale: int = 4, served: Callable[[float], tuple[int, ...]] | None = None) -> Plan:
    """Thick axis and factor of an upload from its header only (fast, before any model is loaded
    or voxel read): a thick-slice file's own factor, never ``scale``; an isotropic one is
    simulated along the axial voxel axis at ``scale``. Raises VolumeError for an unreadable file.

    ``served(r)``: the integer factors of the models that may serve a thick-slice factor ``r``
    (FactorNotServed when none). With it any factor from 1.5 to 10 is planned: one a model serves
    directly (an integer, no gap, isotropic in-plane) runs the direct path as before, any other
    gets ``plan.acq`` (the library's any-factor path, ``plan.factor`` the network that runs); a
    factor outside 1.5 to 10 raises FactorNotServed. Without it, only header integer factors."""
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
    return Plan(axis=int(acq.axis), factor=plan_serving(acq, models).model_factor, simulated=False, acq=acq,
                served=tuple(models))


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_NOT_T1 = re.compile(r"(?<![a-z0-9])(t2|t2w|t2star|flair|pd|pdw|dwi|dti|adc|bold|swi|mra|tof|ct)(?![a-z0-9])", re.I)


def contrast_guess(name: str, header) -> str | None:
    """A hint that the volume is not T1-weighted, from what it says about itself (its file name or
    the header's description naming T2, FLAIR, PD, DWI, ...), or None. A guess: a T2 volume
    called ``scan.nii.gz`` with an empty description passes."""
    descrip = ""
    try:
        descrip = bytes(header["descrip"].item()).decode("latin-1") if header is not None else ""
    except Exception:  # not a NIfTI header: nothing to read
        descrip = ""
    for where, text in (("name", name), ("header", descrip)):
        found = _NOT_T1.search(re.sub(r"[_\-.]", " ", text))
        if found:
            return f"its {where} says {found.group(1).upper()}"
    return None


def input_warnings(name: str, header, factor: int, served: tuple[int, ...] | None) -> list[str]:
    """Why the result may be unreliable: a contrast other than T1, a factor the model was not
    trained for (``served``: the model's factors, None when unknown)."""
    out = []
    hint = contrast_guess(name, header)
    if hint:
        out.append(f"This does not look like a T1-weighted scan ({hint}); the models are trained on T1 only, "
                   "so the result may be wrong.")
    if served is None:
        out.append(f"The model's training factor is not recorded: it may not be made for ×{factor}.")
    elif factor not in served:
        out.append(f"×{factor} is outside the factors the model was trained for "
                   f"({', '.join(f'×{f}' for f in served)}).")
    return out


def run_case(
    path: str | Path,
    model: TransMRSR,
    out_dir: str | Path,
    scale: int = 4,
    phi: float = 0.9,
    fusion: bool = DEFAULT_FUSION,
    progress: Callable[[int, int], None] | None = None,
    plan: Plan | None = None,
    model_name: str = "",
    model_version: str = "",
    served: tuple[int, ...] | None = (4, 8),
    adapt=None,
) -> Case:
    """Load an upload, super-resolve it and write the SR NIfTI into ``out_dir``.

    A thick-slice upload takes axis and factor from its header; an isotropic one is treated as
    HR: its thick-slice acquisition along the axial voxel axis (2) is simulated at ``scale`` and
    the HR kept as reference. With ``plan`` (from :func:`plan_volume`, checked against the model
    beforehand) a volume whose geometry differs from the plan is refused before inference.
    ``served``: the model's training factors for the warnings (None: unknown).

    A plan with an acquisition (``plan.acq``: a factor from 1.5 to 10, non-integer or with a gap)
    runs through :func:`~transmrsr.inference.super_resolve_acquisition` and its output grid.
    ``adapt``: :class:`~transmrsr.adapt.AdaptOptions` to adapt a copy of ``model`` to the scan first
    (the library path also for an isotropic upload); ``model`` itself is never changed.
    """
    vol = load_volume(path)
    name = Path(vol.path).name.replace(".nii.gz", "").replace(".nii", "")
    iso = thick_axis(vol.zooms) is None and not simulation_tag(vol.header)
    if (plan is not None and plan.acq is not None) or adapt is not None:
        return _run_acquisition(vol, name, iso, path, model, out_dir, scale, phi, fusion, progress, plan,
                                model_name, model_version, served, adapt)
    if iso:
        axis, factor, hr = 2, int(scale), vol.data
        lr = simulate_thick(hr, axis, factor)
        lr_affine, n_thin = thick_affine(vol.affine, axis, factor), hr.shape[axis]
    else:
        axis, factor = resolve_geometry(vol)
        lr, lr_affine, hr, n_thin = vol.data, vol.affine, None, thin_count_from_header(vol.header)
    if plan is not None and (plan.axis, plan.factor, plan.simulated) != (axis, factor, iso):
        raise ValueError(f"{name}: its geometry (axis {axis}, ×{factor}) differs from the one checked ({plan})")
    result = super_resolve(model, lr, axis, factor, phi=phi, fusion=fusion, n_thin=n_thin, progress=progress, show_progress=False)
    affine = thin_affine(lr_affine, axis, factor)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sr_path = save_volume(out / f"{name}_sr_x{factor}.nii.gz", result.sr, affine, header=vol.header)
    case = Case(
        name=name, axis=axis, factor=factor, slice_axis=result.slice_axes[0], phi=float(phi),
        zooms=tuple(float(z) for z in np.linalg.norm(affine[:3, :3], axis=0)), affine=affine,
        interp=result.interpolated, sr=result.sr, hr=hr, scaler=IntensityScaler.fit(lr), sr_path=sr_path, simulated=iso,
        fusion=len(result.slice_axes) > 1, input_sha256=file_sha256(path), model_name=model_name,
        model_version=model_version, warnings=input_warnings(Path(vol.path).name, vol.header, factor, served),
    )
    case.window = mri_window(case.hr if hr is not None else case.interp)
    if hr is not None:
        mask = foreground_mask(hr)
        for method, vol_ in (("TransMRSR", case.sr), ("cubic", case.interp)):
            case.metrics.append(  # the head-mask numbers first: the background only flatters
                {"method": method, "PSNR mask (dB)": round(float(psnr(vol_, hr, mask)), 2),
                 "SSIM mask": round(float(ssim(vol_, hr, mask)), 4), "PSNR (dB)": round(float(psnr(vol_, hr)), 2),
                 "SSIM": round(float(ssim(vol_, hr)), 4)}
            )
    return case


def _run_acquisition(vol, name, iso, path, model, out_dir, scale, phi, fusion, progress, plan, model_name,
                     model_version, served, adapt) -> Case:
    """:func:`run_case` through the library's any-factor path (and adaptation)."""
    from .data.io import VolumeError
    from .inference import Acquisition, detect_acquisition, super_resolve_acquisition

    hr = None
    if iso:  # an isotropic upload adapted to: its simulated thick-slice version on the HR grid
        axis, factor, hr = 2, int(scale), vol.data
        data = simulate_thick(hr, axis, factor)
        lr_affine = thick_affine(vol.affine, axis, factor)
        zooms = [float(z) for z in np.linalg.norm(lr_affine[:3, :3], axis=0)]
        factors = [1.0, 1.0, 1.0]
        factors[axis] = float(factor)
        acq = Acquisition(axis=axis, zooms=tuple(zooms), factors=tuple(factors), slice_thickness=zooms[axis],
                          n_thin=hr.shape[axis])
        models = (factor,)
    else:
        try:
            acq = detect_acquisition(vol)
        except VolumeError as exc:
            raise ValueError(str(exc)) from None
        data, lr_affine = vol.data, vol.affine
        models = plan.served if plan is not None and plan.acq is not None else (int(round(acq.factor)),)
        if plan is not None and plan.acq is not None and (
            acq.axis != plan.acq.axis or abs(acq.factor - plan.acq.factor) > 1e-6
        ):
            raise ValueError(f"{name}: its geometry (axis {acq.axis}, ×{acq.factor:.3g}) differs from the one checked")
    if plan is not None and plan.simulated != iso:
        raise ValueError(f"{name}: its geometry differs from the one checked ({plan})")
    res = super_resolve_acquisition(lambda m: model, data, acq, served=tuple(models), adapt=adapt, phi=phi,
                                    fusion=fusion, progress=progress, show_progress=False)
    # an isotropic upload stays on its HR grid (as on the direct path); a thick one goes onto the library's grid
    affine = vol.affine if iso else acq.output_affine(lr_affine)
    r = acq.factor
    label = f"{r:.3g}".replace(".", "p") if abs(r - round(r)) > 1e-6 else str(int(round(r)))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tag = "_adapted" if adapt is not None else ""
    sr_path = save_volume(out / f"{name}_sr_x{label}{tag}.nii.gz", res.sr, affine, header=vol.header)
    case = Case(
        name=name, axis=acq.axis, factor=res.plan.model_factor, slice_axis=-1, phi=float(phi),
        zooms=tuple(float(z) for z in np.linalg.norm(affine[:3, :3], axis=0)), affine=affine,
        interp=res.cubic, sr=res.sr, hr=hr, scaler=IntensityScaler.fit(data), sr_path=sr_path, simulated=iso,
        fusion=bool(fusion), input_sha256=file_sha256(path), model_name=model_name, model_version=model_version,
        warnings=input_warnings(Path(vol.path).name, vol.header, res.plan.model_factor, served),
        acq_factor=None if iso else float(r), adapted=adapt is not None,
    )
    case.window = mri_window(hr if hr is not None else case.interp)
    if hr is not None:
        mask = foreground_mask(hr)
        for method, vol_ in (("TransMRSR (adapted)", case.sr), ("cubic", case.interp)):
            case.metrics.append(
                {"method": method, "PSNR mask (dB)": round(float(psnr(vol_, hr, mask)), 2),
                 "SSIM mask": round(float(ssim(vol_, hr, mask)), 4), "PSNR (dB)": round(float(psnr(vol_, hr)), 2),
                 "SSIM": round(float(ssim(vol_, hr)), 4)}
            )
    return case


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
    out = {"lr": to_rgb(window(lr, lo, hi), spacing), "sr": to_rgb(window(sr, lo, hi), spacing), "hr": None,
           "error": None, "psnr_sr": None, "psnr_lr": None}
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


def reader_items(case: Case, plane: str, index: int, compare_phi: float | None = None, seed: int = 0) -> list[dict]:
    """The blinded images of one slice for a reader: the case's SR (at its φ) and either cubic
    interpolation (``compare_phi`` None) or TransMRSR at ``compare_phi``, in a random order that
    depends on ``seed`` and the slice (so the order cannot be learnt across slices).

    Returns ``[{"label": "Image A", "method": str, "phi": float | None, "one_plane": bool}, ...]``;
    only ``label`` is meant for the reader's eyes. A second φ can only be computed on the plane the
    network runs on (elsewhere the volume at the run's φ is all there is): ValueError there, and
    for the run's own φ. Comparing φ on a fused volume shows both φ from that plane's network
    alone (``one_plane``; method names say so), since the other φ cannot be fused per slice.
    """
    if plane not in PLANES:
        raise ValueError(f"plane must be one of {sorted(PLANES)}, got {plane!r}")
    phis: list[float | None] = [case.phi, None]
    if compare_phi is not None:
        if abs(float(compare_phi) - case.phi) < 1e-6:
            raise ValueError(f"φ = {case.phi:.2f} is the run's own φ: choose another φ to compare against")
        if not case.live_phi:
            raise ValueError(NO_LIVE_PHI)
        if PLANES[plane] != case.slice_axis:
            net_plane = next(p for p, a in PLANES.items() if a == case.slice_axis)
            raise ValueError(f"another φ can only be compared on the {net_plane} plane, the one the network runs on")
        phis[1] = round(float(compare_phi), 4)
    idx = int(np.clip(index, 0, case.n_slices(plane) - 1))
    key = zlib.crc32(f"{int(seed)}/{case.name}/{plane}/{idx}/{phis[1]}".encode())
    order = blinded_order(list(range(len(phis))), seed=key)
    one_plane = compare_phi is not None and case.fusion
    suffix = " (one plane)" if one_plane else ""
    return [{"label": f"Image {chr(65 + i)}", "method": method_label(phis[j]) + suffix, "phi": phis[j],
             "one_plane": one_plane} for i, j in enumerate(order)]


def reader_image(
    case: Case, model: TransMRSR | None, plane: str, index: int, phi: float | None, one_plane: bool = False
) -> np.ndarray:
    """The picture of one blinded item, ``(H, W, 3)`` uint8 as the viewer shows it: the cubic
    interpolation (``phi`` None) or the SR (recomputed through ``model`` when ``phi`` is not the
    run's, or for a ``one_plane`` item of a fused volume; ``model`` may be None otherwise)."""
    lo, hi = case.window
    if phi is None:
        img = plane_slice(case.interp, plane, index)
    else:
        img = sr_slice(case, model, plane, index, float(phi), one_plane=one_plane)
    return to_rgb(window(img, lo, hi), plane_spacing(case.zooms, plane))


def painted_region(case: Case, plane: str, mask: np.ndarray) -> np.ndarray:
    """Undo the display transform of :func:`reader_image`: a mask ``(H, W)`` painted on the picture
    -> ``(h, w)`` bool in :func:`transmrsr.viewer.plane_slice` layout, ready for
    :meth:`transmrsr.annotations.AnnotationStore.add` (which maps it onto the SR voxel grid)."""
    rest = [n for a, n in enumerate(case.shape) if a != PLANES[plane]]
    return display_to_slice(mask, (rest[1], rest[0]), plane_spacing(case.zooms, plane))
