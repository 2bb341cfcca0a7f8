"""Reading, validating and writing NIfTI volumes (nibabel), in the file's own voxel axes.

Every problem with an input file raises :class:`VolumeError` whose message names the file and
says what is wrong; outputs are written to a temporary file beside the target and renamed, so a
failed write never leaves a partial file or replaces a good one.

Memory is bounded by the *decompressed* volume: :func:`read_header` checks everything the header
says (shape, voxel type, voxel sizes, the bytes reading would take, :func:`max_input_bytes`) and
:func:`check_output_size` the SR output (:func:`max_output_bytes`) before any image data is read;
a ``.nii.gz`` is then inflated no further than the bytes its header declares (a file holding more
is refused). Limits: argument, else ``TRANSMRSR_MAX_INPUT_BYTES`` / ``TRANSMRSR_MAX_OUTPUT_BYTES``
(e.g. ``1G``), else 512 MiB / 2 GiB. Inference itself needs a few times the output size.
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

from ..errors import NamesParameters
from ..fileutil import atomic_path

#: Largest accepted number of voxels along one axis, and in total (documented limits).
MAX_AXIS_VOXELS = 2048
MAX_TOTAL_VOXELS = 512 * 1024 * 1024
#: Smallest ratio between the largest voxel size and the others that counts as "thick".
THICK_RATIO = 1.5
#: Accepted voxel sizes in mm (anything outside is a unit mistake or a hostile header).
MIN_VOXEL_MM, MAX_VOXEL_MM = 1e-3, 100.0
#: Slice-thickness factors any command accepts at all (through ``--scale``, the voxel sizes or the
#: tag ``simulate`` writes): a guard against absurd values before anything is allocated. Which
#: factors a model serves is decided later (``transmrsr.inference``); real acquisitions are 1.5 to 10.
MIN_SCALE, MAX_SCALE = 1.5, 16
#: Default memory budgets in bytes: reading the input (voxels x (stored bytes + 4): the decompressed
#: data and its float32 copy) and the SR output (voxels x factor x 4). Set by argument, or by the
#: environment variables below (e.g. ``TRANSMRSR_MAX_INPUT_BYTES=1G``).
DEFAULT_MAX_INPUT_BYTES = 512 * 1024**2
DEFAULT_MAX_OUTPUT_BYTES = 2 * 1024**3
MAX_INPUT_BYTES_ENV = "TRANSMRSR_MAX_INPUT_BYTES"
MAX_OUTPUT_BYTES_ENV = "TRANSMRSR_MAX_OUTPUT_BYTES"
#: Bytes after the image data that are tolerated (padding); more means a malformed file.
TRAILING_SLACK_BYTES = 1024**2

_SIZE_UNITS = {
    "": 1,
    "B": 1,
    "K": 1024,
    "KB": 1024,
    "M": 1024**2,
    "MB": 1024**2,
    "G": 1024**3,
    "GB": 1024**3,
    "T": 1024**4,
    "TB": 1024**4,
}


class VolumeError(NamesParameters, ValueError):
    """An input volume cannot be used; the message names the file and the problem.

    ``path`` (when given) is the file as the caller named it; :meth:`public_message` is the
    message with that path cut to the file's name, for users who must not see server folders.
    ``params``: the caller's parameters the message names (:mod:`transmrsr.errors`).
    """

    def __init__(
        self, message: str, *, path: str | os.PathLike | None = None, params: dict[str, str] | None = None
    ) -> None:
        super().__init__(message, params=params)
        self.path = None if path is None else str(path)

    def public_message(self) -> str:
        """The message naming the file by its name alone (no folders)."""
        text = str(self)
        if self.path and self.path in text:
            text = text.replace(self.path, Path(self.path).name)
        return text


def parse_size(text: str, what: str = "size") -> int:
    """Bytes from ``text`` such as ``"536870912"``, ``"512M"``, ``"2G"`` or ``"1.5GB"`` (binary units)."""
    raw = str(text).strip().upper().replace(" ", "")
    digits = raw.rstrip("KMGTB")
    unit = raw[len(digits) :]
    try:
        value = float(digits) * _SIZE_UNITS[unit]
    except (KeyError, ValueError):
        value = float("nan")
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{what}={text!r} is not a size; write e.g. 536870912, 512M or 2G")
    return int(value)


def _budget(value: int | None, env: str, default: int) -> int:
    """``value`` if given, else the environment variable ``env``, else ``default`` (bytes)."""
    if value is not None:
        if value <= 0:
            raise ValueError(f"memory limit must be a positive number of bytes, got {value}")
        return int(value)
    text = os.environ.get(env, "").strip()
    return parse_size(text, env) if text else default


def max_input_bytes(value: int | None = None) -> int:
    """The input budget in bytes: ``value``, else ``$TRANSMRSR_MAX_INPUT_BYTES``, else 512 MiB."""
    return _budget(value, MAX_INPUT_BYTES_ENV, DEFAULT_MAX_INPUT_BYTES)


def max_output_bytes(value: int | None = None) -> int:
    """The SR output budget in bytes: ``value``, else ``$TRANSMRSR_MAX_OUTPUT_BYTES``, else 2 GiB."""
    return _budget(value, MAX_OUTPUT_BYTES_ENV, DEFAULT_MAX_OUTPUT_BYTES)


def _mib(n: int) -> str:
    return f"{n / 1024**2:,.0f} MiB" if n >= 1024**2 else f"{n:,} bytes"


@dataclass
class VolumeHeader:
    """What a NIfTI header says, read without touching the image data.

    Attributes:
        path: the file as the caller named it, for messages.
        shape: ``(X, Y, Z)`` voxels (a 4-D file holding one volume counts as 3-D).
        dtype: stored data type of one voxel.
        affine: ``(4, 4)`` voxel-to-world (mm) matrix.
        header: the nibabel header.
        offset: byte offset of the image data in the (decompressed) file.
        order: ``"F"`` or ``"C"`` storage order of the data.
        slope, inter: intensity scaling, ``value = stored * slope + inter``.
        compressed: whether the file is gzip-compressed.
    """

    path: str
    shape: tuple[int, int, int]
    file_shape: tuple[int, ...]
    dtype: np.dtype
    affine: np.ndarray
    header: object
    offset: int
    order: str
    slope: float
    inter: float
    compressed: bool

    @property
    def zooms(self) -> tuple[float, float, float]:
        """Voxel sizes in mm along the three voxel axes (from the affine's column norms)."""
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))

    @property
    def voxels(self) -> int:
        """Number of voxels of the 3-D volume."""
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def data_bytes(self) -> int:
        """Bytes of image data the header declares (the decompressed payload)."""
        return int(np.prod(self.file_shape, dtype=np.int64)) * self.dtype.itemsize

    @property
    def memory_bytes(self) -> int:
        """Peak bytes of reading the image: ``voxels x (stored bytes per voxel + 4)``, the
        decompressed data and its float32 copy side by side."""
        return self.voxels * (self.dtype.itemsize + 4)


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


def _check_file(p: Path) -> None:
    if not p.exists():
        raise VolumeError(f"{p}: no such file", path=p)
    if p.is_dir():
        raise VolumeError(f"{p}: is a folder, expected a .nii or .nii.gz file", path=p)
    if not _is_nifti_name(p):
        raise VolumeError(f"{p}: not a NIfTI file name (expected .nii or .nii.gz)", path=p)


def read_header(path: str | os.PathLike, max_bytes: int | None = None) -> VolumeHeader:
    """Read and check a ``.nii`` / ``.nii.gz`` header; the image data is never read.

    Refuses (:class:`VolumeError`): shapes other than 3-D or 4-D with one volume, sizes beyond
    :data:`MAX_AXIS_VOXELS` / :data:`MAX_TOTAL_VOXELS`, RGB / complex / non-numeric data, an
    image whose reading would take (``voxels x (stored bytes + 4)``) more than ``max_bytes``
    (:func:`max_input_bytes`), zero / negative / undefined voxel sizes in pixdim or the affine,
    voxel sizes outside ``[MIN_VOXEL_MM, MAX_VOXEL_MM]`` and, for ``.nii``, a file shorter
    than its header declares.
    """
    import nibabel as nib
    from nibabel.filebasedimages import ImageFileError

    p = Path(path)
    _check_file(p)
    try:
        # nibabel logs (and silently repairs) some header faults; we report them ourselves
        with _quiet_nibabel():
            img = nib.load(str(p))
            raw_pixdim = _raw_pixdim(p, img)
    except (ImageFileError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise VolumeError(f"{p}: not a readable NIfTI file ({_reason(exc, p)})", path=p) from None
    except (OSError, ValueError) as exc:
        raise VolumeError(
            f"{p}: cannot be read, the file is truncated or corrupt ({_reason(exc, p)})", path=p
        ) from None
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise VolumeError(f"{p}: not a NIfTI image ({type(img).__name__})", path=p)
    file_shape = tuple(int(s) for s in img.shape)
    _check_shape(p, file_shape)
    proxy = img.dataobj
    info = VolumeHeader(
        path=str(p),
        shape=file_shape[:3],
        file_shape=file_shape,
        dtype=np.dtype(proxy.dtype),
        affine=np.asarray(img.affine, dtype=np.float64),
        header=img.header,
        offset=int(proxy.offset),
        order=str(getattr(proxy, "order", "F")),
        slope=_scaling(proxy.slope, 1.0),
        inter=_scaling(proxy.inter, 0.0),
        compressed=p.name.lower().endswith(".gz"),
    )
    _check_dtype(p, info.dtype)
    limit = max_input_bytes(max_bytes)
    if info.memory_bytes > limit:
        raise VolumeError(
            f"{p}: image {info.shape} of {info.dtype.name} needs {_mib(info.memory_bytes)} of memory to read, "
            f"beyond the limit of {_mib(limit)} ({MAX_INPUT_BYTES_ENV}); crop or downsample it first",
            path=p,
        )
    if raw_pixdim is not None and (not np.all(np.isfinite(raw_pixdim)) or np.any(raw_pixdim <= 0)):
        sizes = ", ".join(f"{float(z):g}" for z in raw_pixdim)
        raise VolumeError(f"{p}: zero, negative or undefined voxel size in the header (pixdim {sizes} mm)", path=p)
    _check_geometry(p, info.affine)
    if not info.compressed:
        size = p.stat().st_size
        if size < info.offset + info.data_bytes:
            raise VolumeError(
                f"{p}: the file is truncated: its header declares {info.data_bytes:,} bytes of image data from "
                f"byte {info.offset}, the file has {size:,} bytes",
                path=p,
            )
        if size > info.offset + info.data_bytes + TRAILING_SLACK_BYTES:
            raise VolumeError(_trailing_message(p, info), path=p)
    return info


def _reason(exc: BaseException, p: Path) -> str:
    """A library's error as ``Type: text`` on one line, naming the file by its name alone (the
    message already starts with the path as given)."""
    text = " ".join(str(exc).split())
    for form in (f"'{p}'", f'"{p}"', str(p)):
        text = text.replace(form, repr(p.name))
    return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__


def _scaling(value, default: float) -> float:
    """nibabel's slope / intercept as a float (``None`` / NaN: ``default``)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return default
    return v if np.isfinite(v) else default


def _trailing_message(p: Path, info: VolumeHeader) -> str:
    return (
        f"{p}: the file holds more data than its header declares ({info.data_bytes:,} bytes of image data "
        f"{info.shape}); it is malformed, refused without reading it"
    )


def _check_dtype(p: Path, dtype: np.dtype) -> None:
    """Refuse RGB / complex / other non-scalar voxel types (one line naming the type)."""
    if dtype.fields is not None:
        raise VolumeError(
            f"{p}: holds colour (RGB) voxels ({', '.join(dtype.names)}); expected a grey-level MRI volume, "
            "convert it to one channel first",
            path=p,
        )
    if dtype.kind == "c":
        raise VolumeError(
            f"{p}: holds complex voxels ({dtype.name}); expected a real-valued MRI volume, give its magnitude image",
            path=p,
        )
    if dtype.kind not in "iuf":
        raise VolumeError(f"{p}: voxels of type {dtype} are not supported; expected integers or floats", path=p)


def _check_geometry(p: Path, affine: np.ndarray) -> None:
    """Refuse a non-finite affine, zero voxel sizes and voxel sizes outside the accepted range."""
    if not np.all(np.isfinite(affine)):
        raise VolumeError(f"{p}: the affine (sform/qform) holds NaN or Inf", path=p)
    zooms = np.linalg.norm(affine[:3, :3], axis=0)
    sizes = " x ".join(f"{float(z):g}" for z in zooms)
    if min(zooms) <= 1e-6 or abs(np.linalg.det(affine[:3, :3])) <= 1e-6 * float(np.prod(zooms)):  # collinear axes
        raise VolumeError(f"{p}: zero voxel size in the affine (sform/qform voxel sizes {sizes} mm)", path=p)
    if min(zooms) < MIN_VOXEL_MM or max(zooms) > MAX_VOXEL_MM:
        raise VolumeError(
            f"{p}: voxel size {sizes} mm is outside the accepted {MIN_VOXEL_MM:g} to {MAX_VOXEL_MM:g} mm; "
            "check the header's units and pixdim",
            path=p,
        )


def header_factor(info: VolumeHeader | Volume) -> tuple[int, int] | None:
    """The ``(thick axis, factor)`` a file declares: what ``simulate`` recorded, else the voxel
    sizes (:func:`thick_axis`); ``None`` for an isotropic volume."""
    tag = simulation_tag(info.header)
    if isinstance(tag.get("axis"), int) and isinstance(tag.get("scale"), int) and 0 <= tag["axis"] <= 2:
        return int(tag["axis"]), int(tag["scale"])
    return thick_axis(info.zooms)


def check_scale(scale: float | None, path: str | os.PathLike, what: str | None = None) -> None:
    """Refuse a slice-thickness factor that is not finite or outside ``[MIN_SCALE, MAX_SCALE]``.

    ``what``: the factor's name in the message; by default the caller's ``scale`` parameter."""
    if scale is None:
        return
    if not (np.isfinite(scale) and MIN_SCALE <= scale <= MAX_SCALE):
        name = what or "{scale}"  # the caller's parameter, in neutral words or as a front end calls it
        raise VolumeError(
            f"{path}: {name} must lie between {MIN_SCALE:g} and {MAX_SCALE}, got {scale}",
            path=path,
            params=None if what else {"scale": "the slice-thickness factor"},
        )


def check_output_size(info: VolumeHeader | Volume, factor: float, max_bytes: int | None = None) -> int:
    """Refuse an SR output (``voxels x factor`` float32 voxels) beyond ``max_bytes``
    (:func:`max_output_bytes`); returns its size in bytes."""
    n = int(np.prod(info.shape, dtype=np.int64))
    out = int(n * float(factor) * 4)
    limit = max_output_bytes(max_bytes)
    if out > limit:
        raise VolumeError(
            f"{info.path}: its x{factor:g} super-resolution would take {_mib(out)} ({info.shape} voxels x {factor:g}), "
            f"beyond the limit of {_mib(limit)} ({MAX_OUTPUT_BYTES_ENV}); crop the volume first",
            path=info.path,
        )
    return out


def _read_data(p: Path, info: VolumeHeader) -> np.ndarray:
    """The image data as float32 ``(X, Y, Z)``, scaled; at most the declared bytes are inflated,
    and a ``.nii.gz`` with more than :data:`TRAILING_SLACK_BYTES` after them is refused."""
    from nibabel.openers import ImageOpener
    from nibabel.volumeutils import array_from_file

    try:
        with ImageOpener(str(p)) as fh:
            raw = array_from_file(info.file_shape, info.dtype, fh, info.offset, order=info.order, mmap=False)
            extra = len(fh.read(TRAILING_SLACK_BYTES + 1)) if info.compressed else 0
    except OSError as exc:
        if "Expected" in str(exc):
            raise VolumeError(
                f"{p}: the file is truncated: it ends before the {info.data_bytes:,} bytes of image data its header "
                "declares",
                path=p,
            ) from None
        raise VolumeError(
            f"{p}: cannot be read, the file is truncated or corrupt ({_reason(exc, p)})", path=p
        ) from None
    except (EOFError, zlib.error) as exc:
        raise VolumeError(
            f"{p}: the file is truncated or corrupt: its compressed data ended early ({exc.__class__.__name__})",
            path=p,
        ) from None
    if extra > TRAILING_SLACK_BYTES:
        raise VolumeError(_trailing_message(p, info), path=p)
    if raw.dtype == np.float32 and raw.ndim == 3 and raw.flags.c_contiguous:
        data = raw
    else:  # one converting copy, straight into C order: peak voxels x (stored bytes + 4)
        data = np.empty(info.shape, dtype=np.float32)
        data[...] = raw[..., 0] if raw.ndim == 4 else raw
    del raw
    if info.slope != 1.0:
        data *= np.float32(info.slope)
    if info.inter != 0.0:
        data += np.float32(info.inter)
    return data


def load_volume(path: str | os.PathLike, max_bytes: int | None = None, max_output_bytes: int | None = None) -> Volume:
    """Read and validate a ``.nii`` / ``.nii.gz`` file as float32 ``(X, Y, Z)``.

    Everything :func:`read_header` refuses is refused before any image data is read; so is a
    thick-slice file whose super-resolution at the factor it declares (:func:`header_factor`)
    would be beyond :data:`MAX_SCALE` or take more than ``max_output_bytes``
    (:func:`check_output_size`). A ``.nii.gz`` is inflated no further than the bytes its header
    declares. After reading: NaN/Inf and constant images are refused.
    """
    p = Path(path)
    info = read_header(p, max_bytes)
    declared = header_factor(info)
    if declared is not None:
        check_scale(declared[1], p, what="the slice-thickness factor of its voxel sizes")
        check_output_size(info, declared[1], max_output_bytes)
    data = _read_data(p, info)
    vol = Volume(data=data, affine=info.affine, header=info.header, path=str(p))
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
        raise VolumeError(
            f"{p}: 4-D image with {shape[3]} volumes; give one volume (e.g. fslroi / split it first)", path=p
        )
    if len(shape) not in (3, 4):
        raise VolumeError(f"{p}: {len(shape)}-D image {shape}; expected a 3-D volume", path=p)
    spatial = shape[:3]
    if min(spatial) < 1:
        raise VolumeError(f"{p}: empty image {spatial}", path=p)
    if max(spatial) > MAX_AXIS_VOXELS or int(np.prod(spatial, dtype=np.int64)) > MAX_TOTAL_VOXELS:
        raise VolumeError(
            f"{p}: image {spatial} is beyond the supported size limit ({MAX_AXIS_VOXELS} voxels per axis, "
            f"{MAX_TOTAL_VOXELS} in total)",
            path=p,
        )
    if sum(s > 1 for s in spatial) < 3:
        raise VolumeError(f"{p}: image {spatial} is not a 3-D volume (an axis has a single voxel)", path=p)


def _check_values(p: Path, vol: Volume) -> None:
    _check_geometry(p, vol.affine)
    if not np.all(np.isfinite(vol.data)):
        n_bad = int((~np.isfinite(vol.data)).sum())
        raise VolumeError(f"{p}: {n_bad} voxel(s) are NaN or Inf", path=p)
    if float(vol.data.max()) == float(vol.data.min()):
        raise VolumeError(f"{p}: the image is constant (every voxel is {float(vol.data.min())})", path=p)


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
    for part in text[len("transmrsr:") :].split(";"):
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


def load_mask(path: str | os.PathLike, max_bytes: int | None = None) -> np.ndarray:
    """Read a binary mask NIfTI (non-zero = inside) as a boolean ``(X, Y, Z)`` array.

    The header is checked as in :func:`read_header` (size budget ``max_bytes`` included) before
    any data is read.
    """
    p = Path(path)
    data = _read_data(p, read_header(p, max_bytes))
    if not np.all(np.isfinite(data)):
        raise VolumeError(f"{p}: the mask has NaN or Inf values", path=p)
    return data > 0
