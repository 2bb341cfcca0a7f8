"""Three linked orthogonal planes of volumes on one grid, for a browser viewer (pure numpy/nibabel).

The app's viewer draws pixels in the browser (window/level, zoom, pan, crosshair and overlays
are instant there); this module decides *what* it draws and sends it:

* :class:`Orientation` — for each anatomical plane (axial, coronal, sagittal) of a volume with a
  given affine: which voxel axis is sliced, which voxel axes run along the screen's x and y and
  whether they are flipped, so that every file is shown the same way whatever its voxel order
  (radiological convention: the patient's right on the screen's left, anterior / superior at
  the top, anterior on the left of a sagittal slice), and the edge labels (R/L, A/P, S/I)
  computed from the affine.
* :class:`Scene` — the volumes (LR, SR, HR, error map, ...) and the overlays of one case, each a
  :class:`SliceSource` on the same voxel grid; :meth:`Scene.payload` gives the three planes
  through a cursor voxel as a JSON-able dict. Adding a trust map is one call:
  ``scene.add_overlay("uncertainty", volume, cmap="viridis", unit="a.u.")``.
* :func:`encode_slice` — exact enough to be lossless on screen: a slice travels as 16-bit
  integers over its own value range (one step is 1/65535 of the slice's range, 256 times finer
  than one grey level of the display), deflated and base64-encoded; the browser maps each voxel
  to one solid block of screen pixels (nearest neighbour, no smoothing, no JPEG).

No Gradio here: ``app_viewer.py`` at the repository root wraps this in a component.
"""

from __future__ import annotations

import base64
import zlib
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

#: Anatomical planes by the world axis (RAS+: 0 = x to the patient's right, 1 = y anterior,
#: 2 = z superior) that is constant on them.
PLANE_WORLD_AXIS = {"sagittal": 0, "coronal": 1, "axial": 2}
#: (world axis along the screen's x, world axis along the screen's y) of each plane.
PLANE_SCREEN_AXES = {"axial": (0, 1), "coronal": (0, 2), "sagittal": (1, 2)}
_POS, _NEG = "RAS", "LPI"  # the letter of each world axis' positive and negative direction
QUANT_LEVELS = 65535  # uint16


def _letter(world_vec: np.ndarray) -> str:
    """The anatomical direction (one of R, L, A, P, S, I) closest to a world-space vector."""
    w = int(np.argmax(np.abs(world_vec)))
    return _POS[w] if world_vec[w] > 0 else _NEG[w]


@dataclass(frozen=True)
class PlaneSpec:
    """How one anatomical plane of a volume is put on screen.

    ``axis``: the voxel axis that is constant on the plane (its slice index moves along it);
    ``xaxis`` / ``yaxis``: the voxel axes along the screen's columns (left to right) and rows (top
    to bottom); ``xflip`` / ``yflip``: the voxel index runs against the screen direction;
    ``spacing``: (row, column) pixel size in mm; ``labels``: the letter at each screen edge
    (``left``, ``right``, ``top``, ``bottom``) in the radiological display, from the affine;
    ``mirror``: the neurological display mirrors this plane left-right (axial and coronal).
    """

    name: str
    axis: int
    xaxis: int
    xflip: bool
    yaxis: int
    yflip: bool
    shape: tuple[int, int]  # (rows, cols) of the displayed slice
    spacing: tuple[float, float]
    labels: dict[str, str]
    mirror: bool

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "axis": self.axis,
            "xaxis": self.xaxis,
            "xflip": self.xflip,
            "yaxis": self.yaxis,
            "yflip": self.yflip,
            "h": self.shape[0],
            "w": self.shape[1],
            "sy": self.spacing[0],
            "sx": self.spacing[1],
            "labels": self.labels,
            "mirror": self.mirror,
        }


class Orientation:
    """The display of a voxel grid ``shape (X, Y, Z)`` with ``affine`` (voxel -> world mm, RAS+).

    The voxel axis of each plane is the one closest to the plane's world axis
    (``nibabel.orientations.io_orientation``), so an oblique acquisition is shown on its own grid
    (no resampling) with the labels of the nearest anatomical direction.
    """

    def __init__(self, affine: np.ndarray, shape: tuple[int, int, int]) -> None:
        from nibabel.orientations import io_orientation

        self.affine = np.asarray(affine, dtype=np.float64)
        self.shape = tuple(int(s) for s in shape[:3])
        ornt = io_orientation(self.affine)  # per voxel axis: (world axis, +1 / -1)
        self.voxel_of_world = {int(w): i for i, (w, _) in enumerate(ornt)}
        self.sign_of_voxel = {i: int(s) for i, (_, s) in enumerate(ornt)}
        self.zooms = tuple(float(z) for z in np.linalg.norm(self.affine[:3, :3], axis=0))
        self.planes = {name: self._plane(name) for name in PLANE_WORLD_AXIS}

    def _plane(self, name: str) -> PlaneSpec:
        wx, wy = PLANE_SCREEN_AXES[name]
        xaxis, yaxis = self.voxel_of_world[wx], self.voxel_of_world[wy]
        # radiological: the screen's +x and +y point to lower world coordinates on every plane
        # (right to left, anterior to posterior, superior to inferior)
        xflip = self.sign_of_voxel[xaxis] > 0
        yflip = self.sign_of_voxel[yaxis] > 0
        # the labels from the affine itself: the world direction each screen direction points to
        right = self.affine[:3, xaxis] * (-1.0 if xflip else 1.0)
        down = self.affine[:3, yaxis] * (-1.0 if yflip else 1.0)
        labels = {"left": _letter(-right), "right": _letter(right), "top": _letter(-down), "bottom": _letter(down)}
        return PlaneSpec(
            name=name,
            axis=self.voxel_of_world[PLANE_WORLD_AXIS[name]],
            xaxis=xaxis,
            xflip=bool(xflip),
            yaxis=yaxis,
            yflip=bool(yflip),
            shape=(self.shape[yaxis], self.shape[xaxis]),
            spacing=(self.zooms[yaxis], self.zooms[xaxis]),
            labels=labels,
            mirror=name != "sagittal",
        )

    def n_slices(self, plane: str) -> int:
        return self.shape[self.planes[plane].axis]

    def display(self, voxel_slice: np.ndarray, plane: str) -> np.ndarray:
        """A slice in voxel order (the remaining axes of ``np.take(volume, i, axis)``) -> ``(rows,
        cols)`` as the screen shows it (radiological)."""
        p = self.planes[plane]
        rest = [a for a in range(3) if a != p.axis]
        img = voxel_slice if rest.index(p.yaxis) == 0 else voxel_slice.T
        if p.yflip:
            img = img[::-1]
        if p.xflip:
            img = img[:, ::-1]
        return np.ascontiguousarray(img)

    def undisplay(self, screen: np.ndarray, plane: str) -> np.ndarray:
        """Inverse of :meth:`display`: ``(rows, cols)`` as the screen shows it (radiological) -> the
        slice in voxel order (the remaining axes of ``np.take(volume, i, axis)``), e.g. a mask
        painted on a picture back onto the voxels it covers."""
        p = self.planes[plane]
        rest = [a for a in range(3) if a != p.axis]
        img = np.asarray(screen)
        if p.xflip:
            img = img[:, ::-1]
        if p.yflip:
            img = img[::-1]
        return np.ascontiguousarray(img if rest.index(p.yaxis) == 0 else img.T)

    def screen_to_voxel(self, plane: str, index: int, row: int, col: int) -> tuple[int, int, int]:
        """The voxel ``(i, j, k)`` shown at ``(row, col)`` of slice ``index`` of ``plane`` (radiological)."""
        p = self.planes[plane]
        v = [0, 0, 0]
        v[p.axis] = int(index)
        v[p.xaxis] = self.shape[p.xaxis] - 1 - int(col) if p.xflip else int(col)
        v[p.yaxis] = self.shape[p.yaxis] - 1 - int(row) if p.yflip else int(row)
        return tuple(v)

    def voxel_to_screen(self, plane: str, voxel: tuple[int, int, int]) -> tuple[int, int]:
        """Inverse of :meth:`screen_to_voxel`: ``(row, col)`` of ``voxel`` on its slice of ``plane``."""
        p = self.planes[plane]
        col = self.shape[p.xaxis] - 1 - voxel[p.xaxis] if p.xflip else voxel[p.xaxis]
        row = self.shape[p.yaxis] - 1 - voxel[p.yaxis] if p.yflip else voxel[p.yaxis]
        return int(row), int(col)


class SliceSource(Protocol):
    """Anything the viewer can slice: a float volume ``shape (X, Y, Z)`` on the scene's grid."""

    shape: tuple[int, ...]

    def take(self, axis: int, index: int) -> np.ndarray:
        """Slice ``index`` across voxel ``axis``: 2-D float, the remaining axes in order."""

    def version(self, axis: int) -> str:
        """Changes when slices across ``axis`` change (e.g. a recomputed φ); '' for fixed data."""


@dataclass(eq=False)
class ArraySource:
    """A volume held in memory (no copy is made)."""

    data: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    def take(self, axis: int, index: int) -> np.ndarray:
        return np.take(self.data, int(np.clip(index, 0, self.data.shape[axis] - 1)), axis=axis)

    def version(self, axis: int) -> str:
        return ""


@dataclass(eq=False)
class AbsDiffSource:
    """``|a − b|`` slice by slice (no error volume is kept in memory)."""

    a: SliceSource
    b: SliceSource

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.a.shape)

    def take(self, axis: int, index: int) -> np.ndarray:
        return np.abs(
            np.asarray(self.a.take(axis, index), np.float32) - np.asarray(self.b.take(axis, index), np.float32)
        )

    def version(self, axis: int) -> str:
        return self.a.version(axis) + "|" + self.b.version(axis)


def as_source(volume) -> SliceSource:
    """A numpy volume -> :class:`ArraySource`; a :class:`SliceSource` is returned as it is."""
    return ArraySource(np.asarray(volume)) if isinstance(volume, np.ndarray) else volume


def encode_slice(img: np.ndarray) -> dict:
    """A 2-D float slice -> ``{"lo", "hi", "q"}``: ``q`` is base64 of the deflated little-endian
    uint16 values ``round((img − lo) / (hi − lo) · 65535)`` (row-major), ``lo``/``hi`` its finite
    min / max in the volume's units. Non-finite values become ``lo``. Decoded value =
    ``lo + q / 65535 · (hi − lo)``: the error is at most half a step, 1/131070 of the range."""
    a = np.asarray(img, dtype=np.float64)
    finite = np.isfinite(a)
    lo = float(a[finite].min()) if finite.any() else 0.0
    hi = float(a[finite].max()) if finite.any() else 0.0
    span = hi - lo
    q = np.zeros(a.shape, dtype="<u2")
    if span > 0:
        q = np.rint((np.where(finite, a, lo) - lo) / span * QUANT_LEVELS).astype("<u2")
    return {"lo": lo, "hi": hi, "q": base64.b64encode(zlib.compress(q.tobytes(), 1)).decode("ascii")}


def decode_slice(enc: dict, shape: tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`encode_slice` (float64 ``(rows, cols)``), as the browser does it."""
    q = np.frombuffer(zlib.decompress(base64.b64decode(enc["q"])), dtype="<u2").reshape(shape)
    return enc["lo"] + q.astype(np.float64) / QUANT_LEVELS * (enc["hi"] - enc["lo"])


def window_presets(volume: np.ndarray, max_samples: int = 1_000_000) -> dict[str, tuple[float, float]]:
    """Window (lo, hi) presets of an MRI volume, in its intensity units, from percentiles of the
    foreground (voxels above the minimum); a strided sample of at most ``max_samples`` voxels
    keeps this fast on 1 mm whole-head volumes. MRI intensities have no absolute scale (unlike CT
    Hounsfield units), so the presets are relative: ``auto`` (0.5–99.5 %), ``contrast`` (5–95 %:
    grey / white matter), ``bright`` (0.5–90 %: dark detail), ``full`` (min–max)."""
    v = np.asarray(volume)
    step = max(1, int(np.ceil(v.size / max_samples)))
    sample = v.ravel()[::step].astype(np.float32)
    sample = sample[np.isfinite(sample)]
    if not sample.size:
        return {"auto": (0.0, 1.0), "contrast": (0.0, 1.0), "bright": (0.0, 1.0), "full": (0.0, 1.0)}
    fg = sample[sample > sample.min()]
    fg = fg if fg.size else sample

    def pct(lo: float, hi: float) -> tuple[float, float]:
        a, b = (float(x) for x in np.percentile(fg, [lo, hi]))
        return (a, b) if b > a else (a, a + 1e-6)

    full = (float(sample.min()), float(sample.max()))
    return {
        "auto": pct(0.5, 99.5),
        "contrast": pct(5, 95),
        "bright": pct(0.5, 90),
        "full": full if full[1] > full[0] else (full[0], full[0] + 1e-6),
    }


def colormap_lut(name: str) -> str:
    """A matplotlib colour map as 256 RGB triples (uint8, base64 of 768 bytes)."""
    import matplotlib

    cmap = matplotlib.colormaps[name]
    rgb = (np.asarray(cmap(np.linspace(0.0, 1.0, 256)))[:, :3] * 255.0 + 0.5).astype(np.uint8)
    return base64.b64encode(rgb.tobytes()).decode("ascii")


@dataclass(eq=False)
class Layer:
    """A volume the scene shows: a panel (``kind`` ``"mri"``: grey with window/level; ``"map"``:
    a colour map from ``vmin`` to ``vmax``) or an overlay on the SR (always a map)."""

    key: str
    label: str
    source: SliceSource
    kind: str = "mri"
    cmap: str = "gray"
    vmin: float = 0.0
    vmax: float = 1.0
    unit: str = ""
    opacity: float = 0.5

    def to_json(self) -> dict:
        return {
            "key": self.key,
            "label": self.label,
            "kind": self.kind,
            "cmap": self.cmap,
            "vmin": self.vmin,
            "vmax": self.vmax,
            "unit": self.unit,
            "opacity": self.opacity,
        }


@dataclass
class Scene:
    """The volumes and overlays of one case on one voxel grid, for the viewer.

    ``affine``: voxel -> world (mm); ``windows``: window presets (lo, hi) of the MRI panels, in
    their intensity units (e.g. from :func:`window_presets` of the HR or the cubic volume).
    """

    affine: np.ndarray
    shape: tuple[int, int, int]
    windows: dict[str, tuple[float, float]] = field(default_factory=lambda: {"auto": (0.0, 1.0)})
    layers: list[Layer] = field(default_factory=list)
    overlays: list[Layer] = field(default_factory=list)
    overlay_on: str = "sr"  # the panel overlays are drawn on

    def __post_init__(self) -> None:
        self.shape = tuple(int(s) for s in self.shape[:3])
        self.orientation = Orientation(self.affine, self.shape)

    def _check(self, key: str, source: SliceSource) -> None:
        if tuple(source.shape[:3]) != self.shape:
            raise ValueError(f"{key}: shape {tuple(source.shape)} is not the scene's grid {self.shape}")
        if any(layer.key == key for layer in self.layers + self.overlays):
            raise ValueError(f"{key}: a layer of that name is already in the scene")

    def add_volume(
        self,
        key: str,
        label: str,
        volume,
        kind: str = "mri",
        cmap: str = "gray",
        vmin: float = 0.0,
        vmax: float = 1.0,
        unit: str = "",
    ) -> Layer:
        """A panel: ``volume`` (``(X, Y, Z)`` numpy array or :class:`SliceSource`) on the scene's grid."""
        source = as_source(volume)
        self._check(key, source)
        layer = Layer(key, label, source, kind, cmap, float(vmin), float(vmax), unit)
        self.layers.append(layer)
        return layer

    def add_overlay(
        self,
        name: str,
        volume,
        cmap: str = "inferno",
        vmin: float | None = None,
        vmax: float | None = None,
        unit: str = "",
        opacity: float = 0.5,
        label: str | None = None,
    ) -> Layer:
        """An overlay on the SR panels, in one call: any float ``volume (X, Y, Z)`` on the SR grid
        (a numpy array or a :class:`SliceSource`), drawn with the matplotlib colour map ``cmap``
        from ``vmin`` to ``vmax`` (default: 0 / the 99.5th percentile of an array; give them for a
        source) at ``opacity``, with a colour bar labelled ``label`` (default ``name``) and ``unit``."""
        source = as_source(volume)
        self._check(name, source)
        if vmin is None or vmax is None:
            if not isinstance(source, ArraySource):
                raise ValueError(f"{name}: give vmin and vmax for a volume that is computed slice by slice")
            data = np.asarray(source.data, np.float32)
            step = max(1, data.size // 1_000_000)
            sample = data.ravel()[::step]
            sample = sample[np.isfinite(sample)]
            vmin = 0.0 if vmin is None else vmin
            vmax = float(np.percentile(sample, 99.5)) if vmax is None and sample.size else (vmax or 1.0)
        vmax = vmax if vmax > vmin else vmin + 1e-6
        layer = Layer(name, label or name, source, "map", cmap, float(vmin), float(vmax), unit, float(opacity))
        self.overlays.append(layer)
        return layer

    def clamp(self, cursor) -> tuple[int, int, int]:
        """A cursor ``(i, j, k)`` inside the grid."""
        return tuple(int(np.clip(int(c), 0, n - 1)) for c, n in zip(cursor, self.shape))

    def center(self) -> tuple[int, int, int]:
        return tuple(n // 2 for n in self.shape)

    def payload(self, cursor, have: dict | None = None, **extra) -> dict:
        """What the browser needs to draw the three planes through ``cursor (i, j, k)``: grid,
        planes, layers, overlays, colour maps, windows and, per layer and plane, the encoded slice
        (:func:`encode_slice`) with a ``tag``. A slice whose tag is in ``have`` (``{layer: {plane:
        tag}}``, what the browser already holds) is left out, so a click sends only the planes it
        changed. ``extra`` is passed through (e.g. the compare plane, a note)."""
        cur = self.clamp(cursor)
        have = have or {}
        orient = self.orientation
        slices: dict[str, dict[str, dict]] = {}
        refs = {id(layer.source): layer.key for layer in self.layers}
        for layer in self.layers + [o for o in self.overlays if id(o.source) not in refs]:
            out = {}  # (an overlay of a panel's volume, the error map, travels once, as the panel)
            for name, spec in orient.planes.items():
                idx = cur[spec.axis]
                tag = f"{idx}:{layer.source.version(spec.axis)}"
                if (have.get(layer.key) or {}).get(name) == tag:
                    out[name] = {"tag": tag}
                    continue
                img = orient.display(np.asarray(layer.source.take(spec.axis, idx), np.float32), name)
                out[name] = {"tag": tag, **encode_slice(img)}
            slices[layer.key] = out
        cmaps = {layer.cmap for layer in self.layers + self.overlays if layer.kind == "map"}
        return {
            "shape": list(self.shape),
            "cursor": list(cur),
            "zooms": list(orient.zooms),
            "planes": {n: p.to_json() for n, p in orient.planes.items()},
            "layers": [layer.to_json() for layer in self.layers],
            "overlays": [{**o.to_json(), "ref": refs.get(id(o.source), o.key)} for o in self.overlays],
            "overlay_on": self.overlay_on,
            "windows": {k: list(v) for k, v in self.windows.items()},
            "luts": {c: colormap_lut(c) for c in sorted(cmaps)},
            "slices": slices,
            **extra,
        }


# ---------------------------------------------------------------------------------------- the app's case
@dataclass(eq=False)
class PhiSRSource:
    """The SR of a :class:`transmrsr.studio.Case` at the φ on screen: slices across the plane the
    network runs on are recomputed through ``model`` when ``phi`` is not the run's (as the app's
    φ preview always has); every other slice is the volume as run."""

    case: object
    model: object
    phi: float

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.case.sr.shape)

    def _live(self, axis: int) -> bool:
        c = self.case
        return bool(c.live_phi) and axis == c.slice_axis and abs(float(self.phi) - c.phi) > 1e-6

    def take(self, axis: int, index: int) -> np.ndarray:
        if not self._live(axis):
            return np.take(self.case.sr, int(np.clip(index, 0, self.case.sr.shape[axis] - 1)), axis=axis)
        from .studio import sr_slice
        from .viewer import PLANES

        plane = next(p for p, a in PLANES.items() if a == axis)  # the studio's planes are voxel axes
        shown = sr_slice(self.case, self.model, plane, int(index), float(self.phi))
        return np.flipud(shown).T  # undo transmrsr.viewer.plane_slice's layout: voxel order again

    def version(self, axis: int) -> str:
        return f"phi={float(self.phi):.4f}" if self._live(axis) else ""


def case_windows(case) -> dict[str, tuple[float, float]]:
    """Window presets of a case's MRI panels: those of :func:`window_presets` on the HR (the cubic
    volume without one), with ``auto`` the case's own window (the one the rest of the app uses)."""
    out = window_presets(case.hr if case.hr is not None else case.interp)
    out["auto"] = tuple(float(v) for v in case.window)
    return out


def case_scene(case, model=None, phi: float | None = None, windows: dict | None = None) -> Scene:
    """The viewer's scene of a :class:`transmrsr.studio.Case`: panels LR (cubic), SR (at ``phi``,
    see :class:`PhiSRSource`), HR and |SR − HR| (with a reference), and the error map as an
    overlay on the SR. Further overlays (trust maps on the SR grid) are one
    :meth:`Scene.add_overlay` call each on the returned scene."""
    lo, hi = case.window
    scene = Scene(
        affine=np.asarray(case.affine),
        shape=tuple(case.sr.shape),
        windows=windows if windows is not None else case_windows(case),
    )
    sr = PhiSRSource(case, model, case.phi if phi is None else float(phi))
    scene.add_volume("lr", "LR (cubic)", case.interp)
    scene.add_volume("sr", "SR", sr)
    if case.hr is not None:
        hr = scene.add_volume("hr", "HR", case.hr).source
        # the same scale as the app's error panel has always had: a quarter of the MRI window
        err = scene.add_volume(
            "error", "|SR − HR|", AbsDiffSource(sr, hr), kind="map", cmap="inferno", vmin=0.0, vmax=0.25 * (hi - lo)
        ).source
        scene.add_overlay(
            "error-overlay", err, cmap="inferno", vmin=0.0, vmax=0.25 * (hi - lo), opacity=0.6, label="|SR − HR|"
        )
    add_trust_overlays(scene, getattr(case, "trust", None))
    return scene


#: The trust maps' overlays (key, label, colour map): distinct from the error map's inferno.
TRUST_OVERLAYS = (
    ("consistency", "consistency |degrade(SR) − LR|", "plasma"),
    ("uncertainty", "uncertainty (spread of runs)", "viridis"),
)


def add_trust_overlays(scene: Scene, trust) -> None:
    """The trust maps of a case (:class:`transmrsr.studio.CaseTrust`, or None: nothing) as
    overlays on the SR: the data consistency and the uncertainty, each from 0 to its 99.5th
    percentile in the head (computed once per run), in the input's intensity units."""
    if trust is None:
        return
    for key, label, cmap in TRUST_OVERLAYS:
        vol = getattr(trust, key)
        if vol is None:
            continue
        top = float(getattr(trust, f"{key}_vmax"))
        scene.add_overlay(key, vol, cmap=cmap, vmin=0.0, vmax=top, unit="(input units)", opacity=0.6, label=label)
