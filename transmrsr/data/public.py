"""``transmrsr prepare-public``: a training / validation set from the allow-listed public heads.

The project may train, validate and tune only on the real brain MRI listed in the shared
allow-list (public repositories, pip and Debian packages); other volumes in the same places are
reserved for independent evaluation. :data:`PUBLIC_SOURCES` is that list as code: an id, where
the file comes from, its contrast, whether it has skull, its licence and its **role** in the
project's fixed split:

* ``train`` — T1-weighted heads the networks learn from (both stages);
* ``val``   — held out of both stages, used for checkpoint selection and the recipe: ``otsu``
  (a head with skull) and ``bet`` (skull-stripped);
* ``extra`` — other contrasts (T2w, FLAIR), prepared but not used by the T1 models.

The project's test subject stays the ICBM152 2009a T1 of ``prepare-packaged`` (``--packaged``
adds that command's volumes: S1 and MNI152NLin6Asym to ``train``, ICBM152 to ``test``).

Each file found in ``SRC_DIR`` (named ``<id>.nii.gz`` / ``<id>.nii`` / ``<id>.mgz``, or by its path
in its source repository) is reoriented to RAS, resampled to 1 mm isotropic (cubic) when its
voxels differ, cropped to its head with a margin, stored as float32 NIfTI in ``OUT/<role>/``,
with a head mask (and, for skull-stripped volumes, a brain mask = the head mask) in
``OUT/masks/``, and described in ``OUT/sources.json`` (licence, origin, bit depth, shape).
8-bit sources are kept on their integer levels (no rescaling before the per-volume scaler);
their bit depth is recorded so that training can quantise its inputs the same way.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .io import VolumeError, save_volume

#: Voxel size of the prepared volumes (mm).
TARGET_MM = 1.0
#: Margin (voxels) kept around the head when cropping.
CROP_MARGIN = 6


@dataclass(frozen=True)
class PublicSource:
    """One allow-listed public volume.

    Attributes:
        id: short name; also the prepared file's stem.
        contrast: ``T1w``, ``T2w`` or ``FLAIR``.
        skull: True for a head with skull and scalp, False for a skull-stripped brain.
        role: ``train``, ``val`` or ``extra`` (see the module docstring).
        origin: repository (or package) and path of the file.
        licence: the source's licence, as the source states it.
    """

    id: str
    contrast: str
    skull: bool
    role: str
    origin: str
    licence: str

    @property
    def repo_path(self) -> str:
        """The file's path inside its repository (the part after the repository name)."""
        return self.origin.split(" ", 1)[1]


PUBLIC_SOURCES: tuple[PublicSource, ...] = (
    PublicSource("otsu", "T1w", True, "val", "niivue/niivue packages/niivue/demos/images/otsu.nii.gz", "BSD-2-Clause"),
    PublicSource("seg3d", "T1w", True, "train", "neurolabusc/VolumeRenderingData seg3D/MR.nii.gz", "MIT"),
    PublicSource(
        "uih-1",
        "T1w",
        True,
        "train",
        "neurolabusc/dcm_qa_uih In/DTI_132225/t1_gre_fsp_3d_sag__132750/ (dcm2niix)",
        "BSD-2-Clause (UIH images, open source per the repository)",
    ),
    PublicSource(
        "uih-2",
        "T1w",
        True,
        "train",
        "neurolabusc/dcm_qa_uih In/DTI_*/t1_gre_fsp_3d_sag__134917/ (dcm2niix; same person as uih-1)",
        "BSD-2-Clause (UIH images, open source per the repository)",
    ),
    PublicSource(
        "forrest", "T1w", True, "train", "datalad/example-dicom-structural dicoms/ (dcm2niix; defaced)", "PDDL"
    ),
    PublicSource("stroke-t1", "T1w", False, "train", "neurolabusc/VolumeRenderingData stroke/T1.nii.gz", "MIT"),
    PublicSource("coregqa", "T1w", False, "train", "neurolabusc/coreg_qa highres.nii.gz", "BSD-2-Clause"),
    PublicSource(
        "mrgd",
        "T1w",
        False,
        "train",
        "niivue/niivue-demo-images MR_Gd.nii.gz",
        "repository BSD-2-Clause; image from the figshare dataset 'Skull-stripped Contrast-Enhanced MRI Datasets' (see its licence)",
    ),
    PublicSource(
        "fsnorm", "T1w", False, "train", "niivue/niivue packages/niivue/demos/images/norm.mgz", "BSD-2-Clause"
    ),
    PublicSource(
        "fsbrain", "T1w", False, "train", "niivue/niivue packages/niivue/demos/images/fs/brainmask.mgz", "BSD-2-Clause"
    ),
    PublicSource(
        "mnesample",
        "T1w",
        False,
        "train",
        "mne-tools/mne-testing-data subjects/sample/mri/brain.mgz",
        "BSD-3-Clause (MNE testing data)",
    ),
    PublicSource("bet", "T1w", False, "val", "neurolabusc/nii2mesh data/bet.nii.gz", "BSD-2-Clause"),
    PublicSource("stroke-t2", "T2w", False, "extra", "neurolabusc/VolumeRenderingData stroke/T2.nii.gz", "MIT"),
    PublicSource("stroke-flair", "FLAIR", False, "extra", "neurolabusc/VolumeRenderingData stroke/FLAIR.nii.gz", "MIT"),
    PublicSource(
        "arc2208",
        "T2w",
        True,
        "extra",
        "niivue/niivue-demo-images M2208_T2w.nii.gz",
        "BSD-2-Clause (repository licence)",
    ),
)

ROLES = ("train", "val", "extra")


def find_source_file(src_dir: Path, src: PublicSource) -> Path | None:
    """The file of ``src`` in ``src_dir``: ``<id>.nii.gz`` / ``.nii`` / ``.mgz``, or the source's
    repository path (e.g. ``stroke/T1.nii.gz``), or None."""
    for name in (f"{src.id}.nii.gz", f"{src.id}.nii", f"{src.id}.mgz", src.repo_path):
        p = src_dir / name
        if p.is_file():
            return p
    return None


def _load_canonical(path: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """``(float32 data (X, Y, Z) in RAS, affine, stored dtype name)`` of a NIfTI / MGH file."""
    import nibabel as nib

    try:
        img = nib.load(str(path))
    except Exception as exc:  # nibabel raises many types for unreadable files
        raise VolumeError(f"{path.name}: not a readable NIfTI / MGH volume ({type(exc).__name__})") from None
    if len(img.shape) != 3:
        raise VolumeError(f"{path.name}: expected a 3-D volume, got shape {tuple(img.shape)}")
    dtype = str(img.get_data_dtype())
    img = nib.as_closest_canonical(img)
    data = np.asarray(img.dataobj, dtype=np.float32)
    if not np.isfinite(data).all():
        raise VolumeError(f"{path.name}: holds NaN or infinite values")
    return data, np.asarray(img.affine, dtype=np.float64), dtype


def resample_isotropic(data: np.ndarray, affine: np.ndarray, mm: float = TARGET_MM) -> tuple[np.ndarray, np.ndarray]:
    """Resample a RAS volume ``(X, Y, Z)`` to ``mm`` isotropic voxels with cubic splines, keeping
    the field of view (first voxel centre unchanged); no-op when every voxel is within 1 % of
    ``mm``. Negative overshoot of the spline is clipped at the volume's minimum."""
    from scipy.ndimage import affine_transform

    zooms = np.linalg.norm(affine[:3, :3], axis=0)
    if np.allclose(zooms, mm, rtol=0.01):
        return data, affine
    ratio = mm / zooms  # source voxels per target voxel, per axis
    shape = tuple(int(np.floor((n - 1) / r)) + 1 for n, r in zip(data.shape, ratio))
    out = affine_transform(data, ratio, output_shape=shape, order=3, mode="nearest")
    out = np.maximum(out, data.min()).astype(np.float32)
    new = affine.copy()
    new[:3, :3] = affine[:3, :3] * ratio[None, :]
    return out, new


def head_mask(data: np.ndarray) -> np.ndarray:
    """Head (or brain, for a skull-stripped volume) mask ``(X, Y, Z)`` uint8: Otsu threshold of
    the voxels above the minimum, largest connected component, closed and hole-filled."""
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    low = float(data.min())
    above = data[data > low]
    if above.size < 100:
        raise VolumeError("the volume has almost no voxels above its background")
    # a low threshold: half of Otsu's keeps dark tissue (CSF, scalp fat in T1) inside the mask
    fg = data > low + 0.5 * (threshold_otsu(above) - low)
    labels, n = ndimage.label(fg)
    if n > 1:
        sizes = ndimage.sum(fg, labels, range(1, n + 1))
        fg = labels == (1 + int(np.argmax(sizes)))
    fg = ndimage.binary_closing(fg, structure=np.ones((3, 3, 3)), iterations=2)
    fg = ndimage.binary_fill_holes(fg)
    return fg.astype(np.uint8)


def crop_to_mask(data: np.ndarray, mask: np.ndarray, affine: np.ndarray, margin: int = CROP_MARGIN):
    """Crop ``data`` and ``mask`` to the mask's bounding box plus ``margin`` voxels; the affine's
    origin moves so every voxel keeps its world position."""
    idx = np.nonzero(mask)
    lo = [max(int(i.min()) - margin, 0) for i in idx]
    hi = [min(int(i.max()) + margin + 1, n) for i, n in zip(idx, data.shape)]
    sl = tuple(slice(a, b) for a, b in zip(lo, hi))
    new = affine.copy()
    new[:3, 3] = affine[:3, :3] @ np.asarray(lo, dtype=float) + affine[:3, 3]
    return data[sl], mask[sl], new


def prepare_public(
    src_dir: str | Path,
    out: str | Path,
    packaged: bool = False,
    cache: str | Path | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Prepare every allow-listed volume found in ``src_dir`` into ``OUT/{train,val,extra}/``.

    Writes ``OUT/masks/<id>_head.nii.gz`` for each and ``OUT/sources.json``. With ``packaged``,
    also runs ``prepare-packaged`` into ``OUT`` (S1 and MNI152NLin6Asym to ``train``, the
    ICBM152 test subject to ``test``). Files in ``src_dir`` that are not on the allow-list are
    reported and left out. Returns the manifest.
    """
    src_dir, out = Path(src_dir), Path(out)
    if not src_dir.is_dir():
        raise VolumeError(f"{src_dir}: no such folder (expected the downloaded public volumes)")
    manifest: dict = {"split": {r: [] for r in ROLES}, "volumes": []}
    if packaged:
        from .packaged import prepare_packaged

        pk = prepare_packaged(out, cache=cache, log=log)
        (out / "sources.json").unlink(missing_ok=True)
        manifest["split"]["test"] = [v["name"] for v in pk["volumes"] if v["role"] == "test"]
        manifest["split"]["train"] += [v["name"] for v in pk["volumes"] if v["role"] == "train"]
        manifest["volumes"] += pk["volumes"]
    used: set[Path] = set()
    for src in PUBLIC_SOURCES:
        path = find_source_file(src_dir, src)
        if path is None:
            log(f"missing {src.id}: expected {src.id}.nii.gz (or .mgz) or {src.repo_path} in the source folder")
            continue
        used.add(path.resolve())
        data, affine, dtype = _load_canonical(path)
        levels = int(np.unique(data).size)
        data, affine = resample_isotropic(data, affine)
        mask = head_mask(data)
        data, mask, affine = crop_to_mask(data, mask, affine)
        dest = save_volume(out / src.role / f"{src.id}.nii.gz", data, affine)
        mdest = save_volume(out / "masks" / f"{src.id}_head.nii.gz", mask, affine)
        entry = {
            **asdict(src),
            "name": src.id,
            "file": str(dest.relative_to(out)),
            "head_mask": str(mdest.relative_to(out)),
            "shape": list(data.shape),
            "source_dtype": dtype,
            "levels": levels,
            "bit_depth": 8 if levels <= 256 else 16,
        }
        if not src.skull:
            entry["brain_mask"] = entry["head_mask"]
        manifest["volumes"].append(entry)
        manifest["split"][src.role].append(src.id)
        log(
            f"{src.role:5s} {src.id}: {tuple(data.shape)} {src.contrast}{'' if src.skull else ' (skull-stripped)'}, {dtype}"
        )
    for p in sorted(src_dir.rglob("*")):
        if p.is_file() and p.resolve() not in used and p.name.lower().endswith((".nii", ".nii.gz", ".mgz")):
            log(f"skipped {p.name}: not on the allow-list of public training volumes")
    if not any(manifest["split"][r] for r in ROLES):
        raise VolumeError(
            f"{src_dir}: none of the allow-listed volumes was found (named <id>.nii.gz or .mgz; {{list}} lists them)",
            params={"list": "transmrsr.data.public.PUBLIC_SOURCES"},
        )
    (out / "sources.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
