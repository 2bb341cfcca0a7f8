"""``transmrsr prepare-ixi``: the IXI T1/T2 tarballs into the paper's layout (paper §4.1).

Each volume is reoriented to RAS, brought onto a 1 mm MNI grid of 182x218x181 voxels (FSL's
MNI152 1 mm grid without its last axial slice, as in the paper) and written as float32 NIfTI to
``OUT/T1/`` or ``OUT/T2/``. With the optional ``antspyx`` package the volume is registered
affinely to the ICBM152 2009a T1 template that ships in nilearn (the paper registers with FSL);
without it the volume is only resampled by its header geometry, its centre of mass moved to the
grid's centre — enough for training slices, not an MNI registration (the command says which).
"""

from __future__ import annotations

import importlib.resources
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .io import VolumeError, load_volume, save_volume

#: FSL MNI152 1 mm grid (x flipped: radiological storage), cropped to 181 axial slices.
MNI_SHAPE = (182, 218, 181)
MNI_AFFINE = np.array([[-1.0, 0, 0, 90], [0, 1.0, 0, -126], [0, 0, 1.0, -72], [0, 0, 0, 1]])


def _template_path() -> Path:
    return Path(
        str(importlib.resources.files("nilearn.datasets") / "data" / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz")
    )


def resample_to_grid(
    data: np.ndarray, affine: np.ndarray, shape, target_affine: np.ndarray, shift_mm=None
) -> np.ndarray:
    """Trilinear resampling of ``data`` (voxel->world ``affine``) onto a target grid; ``shift_mm``
    translates the source in world space first."""
    from scipy.ndimage import map_coordinates

    src = affine.copy()
    if shift_mm is not None:
        src[:3, 3] += shift_mm
    vox = np.linalg.inv(src) @ target_affine  # target voxel -> source voxel
    grid = np.indices(shape, dtype=np.float32).reshape(3, -1)
    coords = vox[:3, :3] @ grid + vox[:3, 3:4]
    out = map_coordinates(data, coords, order=1, mode="constant", cval=0.0)
    return out.reshape(shape).astype(np.float32)


def to_mni_grid(path: Path, register: bool) -> tuple[np.ndarray, str]:
    """One IXI volume onto the MNI grid; returns ``(data, method)``.

    First by header geometry with the head's centre of mass moved to the grid's centre (this
    also fixes the orientation); then, with antspyx, an affine registration of that to the
    template on the same grid.
    """
    from scipy import ndimage

    vol = load_volume(path)
    com_vox = np.array(ndimage.center_of_mass(vol.data > np.percentile(vol.data, 50)))
    com_mm = vol.affine[:3, :3] @ com_vox + vol.affine[:3, 3]
    centre_mm = MNI_AFFINE[:3, :3] @ ((np.array(MNI_SHAPE) - 1) / 2.0) + MNI_AFFINE[:3, 3]
    data = resample_to_grid(vol.data, vol.affine, MNI_SHAPE, MNI_AFFINE, shift_mm=centre_mm - com_mm)
    if not register:
        return data, "header geometry, centred by mass (not registered: install antspyx for MNI registration)"
    import ants  # optional dependency: antspyx

    template = load_volume(_template_path())
    fixed = ants.from_numpy(resample_to_grid(template.data, template.affine, MNI_SHAPE, MNI_AFFINE))
    reg = ants.registration(fixed=fixed, moving=ants.from_numpy(data), type_of_transform="Affine")
    return np.asarray(reg["warpedmovout"].numpy(), dtype=np.float32), "antspyx affine registration to ICBM152 2009a"


def prepare_ixi(
    tarballs: list[str | Path],
    out: str | Path,
    register: bool | None = None,
    limit: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[Path]:
    """Convert IXI tarballs (``IXI-T1.tar``, ``IXI-T2.tar``) into ``out/T1`` and ``out/T2``.

    ``register=None`` uses antspyx when it is installed. Existing outputs are kept (the command
    can be re-run after an interruption). Returns the written files.
    """
    if register is None:
        try:
            import ants  # noqa: F401

            register = True
        except ImportError:
            register = False
    out = Path(out)
    written: list[Path] = []
    for tb in map(Path, tarballs):
        if not tb.is_file():
            raise VolumeError(f"{tb}: no such file (expected an IXI tarball such as IXI-T1.tar)")
        try:
            tar = tarfile.open(tb)
        except (tarfile.TarError, OSError) as exc:
            raise VolumeError(f"{tb}: not a readable tar archive ({exc})") from None
        with tar, tempfile.TemporaryDirectory() as tmp:
            members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith((".nii", ".nii.gz"))]
            if not members:
                raise VolumeError(f"{tb}: holds no .nii / .nii.gz volumes")
            for m in members[:limit]:
                name = Path(m.name).name
                contrast = "T2" if "-T2" in name else "T1"
                target = out / contrast / (name if name.endswith(".gz") else name + ".gz")
                if target.exists():
                    continue
                src = Path(tmp) / name
                with tar.extractfile(m) as fh, open(src, "wb") as dst:
                    dst.write(fh.read())
                data, method = to_mni_grid(src, register)
                save_volume(target, data, MNI_AFFINE)
                src.unlink()
                written.append(target)
                if progress is not None:
                    progress(f"{target} ({method})")
    return written
