"""Reading, validating and writing NIfTI volumes (nibabel), in the file's own voxel axes.

Every problem with an input file raises :class:`VolumeError` whose message names the file and
says what is wrong; outputs are written to a temporary file beside the target and renamed, so a
failed write never leaves a partial file or replaces a good one.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..fileutil import atomic_path

#: Largest accepted number of voxels along one axis, and in total (documented limits).
MAX_AXIS_VOXELS = 2048
MAX_TOTAL_VOXELS = 512 * 1024 * 1024
#: Smallest ratio between the largest voxel size and the others that counts as "thick".
THICK_RATIO = 1.5


class VolumeError(ValueError):
    """An input volume cannot be used; the message names the file and the problem."""


@dataclass
class Volume:
    """A 3-D image with its geometry.

    Attributes:
        data: ``(X, Y, Z)`` float32 array in the file's voxel axes and intensity units.
        affine: ``(4, 4)`` voxel-to-world (mm) matrix.
        header: the nibabel header it came with (or a fresh one).
        path: where it was read from, for messages.
    """

    data: np.ndarray
    affine: np.ndarray
    header: object | None = None
    path: str = "<memory>"

    @property
    def zooms(self) -> tuple[float, float, float]:
        """Voxel sizes in mm along the three voxel axes (from the affine's column norms)."""
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.data.shape)


def _is_nifti_name(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(".nii") or name.endswith(".nii.gz")


def load_volume(path: str | os.PathLike) -> Volume:
    """Read and validate a ``.nii`` / ``.nii.gz`` file.

    Accepts 3-D images and 4-D images holding one volume. Refuses NaN/Inf, constant images,
    zero or negative voxel sizes and sizes beyond :data:`MAX_AXIS_VOXELS` /
    :data:`MAX_TOTAL_VOXELS`.
    """
    import nibabel as nib
    from nibabel.filebasedimages import ImageFileError

    p = Path(path)
    if not p.exists():
        raise VolumeError(f"{p}: no such file")
    if p.is_dir():
        raise VolumeError(f"{p}: is a folder, expected a .nii or .nii.gz file")
    if not _is_nifti_name(p):
        raise VolumeError(f"{p}: not a NIfTI file name (expected .nii or .nii.gz)")
    try:
        # nibabel logs (and silently repairs) some header faults; we report them ourselves
        with _quiet_nibabel():
            img = nib.load(str(p))
            raw_pixdim = _raw_pixdim(p, img)
        if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
            raise VolumeError(f"{p}: not a NIfTI image ({type(img).__name__})")
        shape = tuple(int(s) for s in img.shape)
        _check_shape(p, shape)
        data = np.asarray(img.dataobj, dtype=np.float32)
    except VolumeError:
        raise
    except (ImageFileError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise VolumeError(f"{p}: not a readable NIfTI file ({exc.__class__.__name__}: {exc})") from None
    except (OSError, ValueError) as exc:
        raise VolumeError(f"{p}: cannot be read, the file is truncated or corrupt ({exc})") from None
    if data.ndim == 4:
        data = data[..., 0]
    if raw_pixdim is not None and (not np.all(np.isfinite(raw_pixdim)) or np.any(raw_pixdim <= 0)):
        sizes = ", ".join(f"{float(z):g}" for z in raw_pixdim)
        raise VolumeError(f"{p}: zero, negative or undefined voxel size in the header (pixdim {sizes} mm)")
    affine = np.asarray(img.affine, dtype=np.float64)
    vol = Volume(data=np.ascontiguousarray(data), affine=affine, header=img.header, path=str(p))
    _check_values(p, vol)
    return vol


@contextlib.contextmanager
def _quiet_nibabel():
    """Silence nibabel's header-repair messages (its own suppressor leaves Python's last-resort
    handler printing them)."""
    import nibabel.imageglobals as ig

    level = ig.logger.level
    ig.logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        ig.logger.setLevel(level)


def _raw_pixdim(p: Path, img) -> np.ndarray | None:
    """Voxel sizes as stored in the file (nibabel's loader repairs zero / negative ones)."""
    from nibabel.openers import ImageOpener

    with ImageOpener(str(p)) as fh:
        raw = img.header_class.from_fileobj(fh, check=False)
    return np.asarray(raw["pixdim"][1:4], dtype=np.float64)


def _check_shape(p: Path, shape: tuple[int, ...]) -> None:
    if len(shape) == 4 and shape[3] != 1:
        raise VolumeError(f"{p}: 4-D image with {shape[3]} volumes; give one volume (e.g. fslroi / split it first)")
    if len(shape) not in (3, 4):
        raise VolumeError(f"{p}: {len(shape)}-D image {shape}; expected a 3-D volume")
    spatial = shape[:3]
    if min(spatial) < 1:
        raise VolumeError(f"{p}: empty image {spatial}")
    if max(spatial) > MAX_AXIS_VOXELS or int(np.prod(spatial)) > MAX_TOTAL_VOXELS:
        raise VolumeError(
            f"{p}: image {spatial} is beyond the supported size ({MAX_AXIS_VOXELS} voxels per axis, "
            f"{MAX_TOTAL_VOXELS} in total)"
        )
    if sum(s > 1 for s in spatial) < 3:
        raise VolumeError(f"{p}: image {spatial} is not a 3-D volume (an axis has a single voxel)")


def _check_values(p: Path, vol: Volume) -> None:
    if not np.all(np.isfinite(vol.affine)):
        raise VolumeError(f"{p}: the affine (sform/qform) holds NaN or Inf")
    zooms = vol.zooms
    if min(zooms) <= 1e-6 or abs(np.linalg.det(vol.affine[:3, :3])) <= 1e-12:
        sizes = ", ".join(f"{z:g}" for z in zooms)
        raise VolumeError(f"{p}: zero voxel size in the affine (sform/qform voxel sizes {sizes} mm)")
    if not np.all(np.isfinite(vol.data)):
        n_bad = int((~np.isfinite(vol.data)).sum())
        raise VolumeError(f"{p}: {n_bad} voxel(s) are NaN or Inf")
    if float(vol.data.max()) == float(vol.data.min()):
        raise VolumeError(f"{p}: the image is constant (every voxel is {float(vol.data.min())})")


def thick_axis(zooms: tuple[float, float, float], ratio: float = THICK_RATIO) -> tuple[int, int] | None:
    """The thick axis and factor from voxel sizes, or ``None`` for a (near-)isotropic volume.

    The thick axis is the one whose voxel size is at least ``ratio`` times each of the others;
    the factor is that ratio (to the larger of the other two) rounded.
    """
    z = np.asarray(zooms, dtype=float)
    axis = int(np.argmax(z))
    others = np.delete(z, axis)
    r = z[axis] / others.max()
    if r < ratio:
        return None
    return axis, int(round(r))


def save_volume(path: str | os.PathLike, data: np.ndarray, affine: np.ndarray, header=None) -> Path:
    """Write ``data (X, Y, Z)`` as float32 NIfTI with ``affine``, atomically.

    ``header`` (e.g. the input's) is copied for its metadata; shape, data type, voxel sizes,
    qform and sform are set from ``data`` and ``affine``.
    """
    import nibabel as nib

    p = Path(path)
    if not _is_nifti_name(p):
        raise VolumeError(f"{p}: output name must end in .nii or .nii.gz")
    p.parent.mkdir(parents=True, exist_ok=True)
    hdr = header.copy() if header is not None else None
    img = nib.Nifti1Image(np.asarray(data, dtype=np.float32), np.asarray(affine, dtype=np.float64), header=hdr)
    img.set_data_dtype(np.float32)
    img.header["scl_slope"], img.header["scl_inter"] = 1.0, 0.0
    code = int(hdr["sform_code"]) if hdr is not None and int(hdr["sform_code"]) > 0 else 1
    img.set_sform(affine, code=code)
    img.set_qform(affine, code=code)
    with atomic_path(p, suffix=".nii.gz" if p.name.lower().endswith(".gz") else ".nii") as tmp:
        nib.save(img, str(tmp))
    return p


#: Marker that ``simulate`` writes into the NIfTI ``descrip`` field: the thin grid's slice count,
#: so that ``sr`` returns exactly to the original grid when it was not a multiple of the factor.
_THIN_TAG = "transmrsr:thin="


def simulation_tag(header) -> dict[str, int | str]:
    """What ``simulate`` recorded in ``descrip`` (``thin``, ``axis``, ``scale``, ``profile``), or ``{}``."""
    if header is None or "descrip" not in header:
        return {}
    text = bytes(np.asarray(header["descrip"]).tobytes()).split(b"\x00")[0].decode("latin-1")
    if not text.startswith(_THIN_TAG):
        return {}
    out: dict[str, int | str] = {}
    for part in text[len("transmrsr:"):].split(";"):
        key, _, value = part.partition("=")
        try:
            out[key] = value if key == "profile" else int(value)
        except ValueError:
            return {}
    return out


def thin_count_from_header(header) -> int | None:
    """The thin-grid slice count recorded by ``simulate`` (``None`` for other files)."""
    value = simulation_tag(header).get("thin")
    return value if isinstance(value, int) else None


def thin_count_tag(n_thin: int, axis: int, factor: int, profile: str) -> str:
    return f"{_THIN_TAG}{n_thin};axis={axis};scale={factor};profile={profile}"


def load_mask(path: str | os.PathLike) -> np.ndarray:
    """Read a binary mask NIfTI (non-zero = inside) as a boolean ``(X, Y, Z)`` array."""
    import nibabel as nib

    p = Path(path)
    if not p.is_file():
        raise VolumeError(f"{p}: no such file")
    if not _is_nifti_name(p):
        raise VolumeError(f"{p}: not a NIfTI file name (expected .nii or .nii.gz)")
    try:
        img = nib.load(str(p))
        _check_shape(p, tuple(int(s) for s in img.shape))
        data = np.asarray(img.dataobj)
    except VolumeError:
        raise
    except Exception as exc:
        raise VolumeError(f"{p}: not a readable NIfTI mask ({exc.__class__.__name__}: {exc})") from None
    if data.ndim == 4:
        data = data[..., 0]
    if not np.all(np.isfinite(data)):
        raise VolumeError(f"{p}: the mask has NaN or Inf values")
    return data > 0
