"""``transmrsr prepare-packaged``: real 1 mm T1 volumes that ship inside installable packages.

The default weights are trained on MRI that anyone can fetch with pip, offline from any dataset
site: the subject S1 of the pycortex source distribution (one real head, FreeSurfer-conformed
256^3), FSL's MNI152NLin6Asym T1 as shipped by NiMARE, and the ICBM152 2009a T1 in nilearn.
Each volume is reoriented to RAS (axis 2 is then inferior-superior, the "axial" thick axis),
stored as float32 NIfTI and placed in ``OUT/train/`` or ``OUT/test/``. One subject is held out of
both training stages as the project's test subject (default: the ICBM152 T1, centre-cropped to
the paper's 182x218x181 grid), with its brain mask in ``OUT/masks/``.

Nothing here is committed to the repository: the script fetches the packages into a cache
folder each time (``pip download``, so a pip mirror or an offline wheelhouse works too).
"""

from __future__ import annotations

import importlib.resources
import json
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .io import VolumeError, save_volume

#: The held-out volume's grid: the paper's 182x218x181 (FSL MNI 1 mm without one axial slice).
TEST_SHAPE = (182, 218, 181)


@dataclass(frozen=True)
class PackagedT1:
    """One T1 volume inside a pip package.

    Attributes:
        name: file stem used in the prepared folders.
        requirement: pip requirement that holds it (pinned, so the data cannot change under us).
        member: path of the NIfTI inside the sdist / wheel (or inside the installed package).
        module: importable package whose installed copy can be used instead of downloading.
        licence: licence of the data, for the model card.
        description: what the volume is.
        brain_mask: path of a brain mask for the volume in the same package, or None. A
            training source with one is also written skull-stripped (``<name>-brain``), so the
            networks see brains with and without skull and scalp, as users' scans come.
    """

    name: str
    requirement: str
    member: str
    module: str | None
    licence: str
    description: str
    brain_mask: str | None = None


SOURCES: tuple[PackagedT1, ...] = (
    PackagedT1(
        name="pycortex-S1",
        requirement="pycortex==1.4.0",
        member="pycortex-1.4.0/filestore/db/S1/anatomicals/raw.nii.gz",
        module=None,
        licence="BSD-2-Clause (pycortex)",
        description="pycortex example subject S1: one real adult head, T1-weighted, 1 mm, FreeSurfer-conformed 256^3",
    ),
    PackagedT1(
        name="mni152nlin6asym",
        requirement="nimare==0.22.1",
        member="nimare/resources/templates/tpl-MNI152NLin6Asym_res-01_T1w.nii.gz",
        module="nimare",
        licence="FSL MNI152 template licence (free redistribution with notice)",
        description="FSL MNI152NLin6Asym T1 template (average of 152 adults), 1 mm, 182x218x182",
        brain_mask="nimare/resources/templates/tpl-MNI152NLin6Asym_res-01_desc-brain_mask.nii.gz",
    ),
    PackagedT1(
        name="icbm152-2009a",
        requirement="nilearn",
        member="nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
        module="nilearn",
        licence="ICBM 2009a licence (copyright McConnell Brain Imaging Centre; free use and redistribution with notice)",
        description="ICBM152 2009a nonlinear symmetric T1 template (average of 152 adults), 1 mm, 197x233x189",
    ),
)

DEFAULT_TEST = "icbm152-2009a"


def _installed_member(src: PackagedT1, member: str | None = None) -> Path | None:
    """The file ``member`` (default ``src.member``) inside an installed copy of ``src.module``,
    if that package is installed."""
    if src.module is None:
        return None
    try:
        root = importlib.resources.files(src.module)
    except ModuleNotFoundError:
        return None
    rel = (member or src.member).split("/", 1)[1]
    path = Path(str(root)) / rel
    return path if path.is_file() else None


def _download(src: PackagedT1, cache: Path, member: str | None = None) -> Path:
    """``pip download`` the package (no dependencies) into ``cache`` and extract ``member``
    (default ``src.member``)."""
    member_path = member or src.member
    target = cache / src.name / Path(member_path).name
    if target.is_file():
        return target
    dl = cache / "downloads"
    dl.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(dl), src.requirement]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise VolumeError(f"pip download {src.requirement} failed ({tail[0]}); check the package index is reachable")
    pkg = src.requirement.split("==")[0].lower().replace("-", "_")
    archives = sorted(p for p in dl.iterdir() if p.name.lower().replace("-", "_").startswith(pkg))
    if not archives:
        raise VolumeError(f"pip download {src.requirement} left no archive in {dl}")
    target.parent.mkdir(parents=True, exist_ok=True)
    archive = archives[-1]
    tmp = target.with_suffix(".part")
    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as zf:
            tmp.write_bytes(zf.read(member_path))
    else:
        with tarfile.open(archive) as tf:
            extracted = tf.extractfile(member_path)
            if extracted is None:
                raise VolumeError(f"{archive.name} has no {member_path}")
            tmp.write_bytes(extracted.read())
    tmp.replace(target)
    return target


def fetch(src: PackagedT1, cache: Path, member: str | None = None) -> Path:
    """Path of the source NIfTI (or of another ``member`` of its package, e.g. its brain mask):
    the installed package's copy, else downloaded into ``cache``."""
    return _installed_member(src, member) or _download(src, cache, member)


def _canonical(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Load, reorient to RAS+ and return ``(float32 data, affine)``."""
    import nibabel as nib

    data, affine = _canonical_img(nib.load(str(path)))
    if data.ndim != 3:
        raise VolumeError(f"{path}: expected a 3-D T1, got shape {data.shape}")
    return data, affine


def centre_crop(data: np.ndarray, affine: np.ndarray, shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Crop (or zero-pad) ``data`` about its centre to ``shape``, moving the affine's origin so
    every voxel keeps its world position."""
    out = np.zeros(shape, dtype=data.dtype)
    src, dst, start = [], [], []
    for n, m in zip(data.shape, shape):
        s = (n - m) // 2
        start.append(s)
        lo, hi = max(s, 0), min(s + m, n)
        src.append(slice(lo, hi))
        dst.append(slice(lo - s, hi - s))
    out[tuple(dst)] = data[tuple(src)]
    new_affine = affine.copy()
    new_affine[:3, 3] = affine[:3, :3] @ np.asarray(start, dtype=float) + affine[:3, 3]
    return out, new_affine


def test_brain_mask(name: str, affine: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray | None:
    """Brain mask of the held-out volume on its prepared grid (nilearn's ICBM152 mask), or None."""
    if name != "icbm152-2009a":
        return None
    from nilearn.datasets import load_mni152_brain_mask
    from scipy.ndimage import binary_fill_holes

    mask_img = load_mni152_brain_mask(resolution=1)
    data, mask_affine = _canonical_img(mask_img)
    # The template's mask is GM + WM; filling holes adds the ventricles, so "brain" is the
    # intracranial tissue a reader looks at, not the skull and scalp.
    data = binary_fill_holes(data > 0.5)
    if not np.allclose(mask_affine[:3, :3], affine[:3, :3]):
        raise VolumeError("the ICBM152 brain mask is not on the T1's grid")
    shift = np.linalg.solve(mask_affine[:3, :3], affine[:3, 3] - mask_affine[:3, 3]).round().astype(int)
    full = np.zeros(shape, dtype=np.uint8)
    idx = [slice(s, s + n) for s, n in zip(shift, shape)]
    part = data[tuple(slice(max(i.start, 0), i.stop) for i in idx)]
    full[: part.shape[0], : part.shape[1], : part.shape[2]] = part
    return full


def _canonical_img(img) -> tuple[np.ndarray, np.ndarray]:
    """A nibabel image reoriented to RAS+, as ``(float32 data, affine)``."""
    import nibabel as nib

    img = nib.as_closest_canonical(img)
    return np.asarray(img.dataobj, dtype=np.float32), img.affine


def prepare_packaged(
    out: str | Path,
    cache: str | Path | None = None,
    test: str = DEFAULT_TEST,
    log: Callable[[str], None] = print,
) -> dict:
    """Write ``OUT/train/*.nii.gz``, ``OUT/test/<test>.nii.gz``, ``OUT/masks/<test>_brain.nii.gz``
    and ``OUT/sources.json`` (what each file is, its licence and its shape)."""
    out = Path(out)
    names = [s.name for s in SOURCES]
    if test not in names:
        raise VolumeError(f"unknown test subject {test!r}; choose one of {names}")
    cache = Path(cache) if cache is not None else out / "cache"
    manifest: dict = {"test": test, "volumes": []}
    for src in SOURCES:
        path = fetch(src, cache)
        data, affine = _canonical(path)
        role = "test" if src.name == test else "train"
        if role == "test":
            data, affine = centre_crop(data, affine, TEST_SHAPE)
        dest = save_volume(out / role / f"{src.name}.nii.gz", data, affine)
        entry = {
            "name": src.name,
            "role": role,
            "file": str(dest.relative_to(out)),
            "shape": list(data.shape),
            "package": src.requirement,
            "member": src.member,
            "licence": src.licence,
            "description": src.description,
        }
        if role == "test":
            mask = test_brain_mask(src.name, affine, data.shape)
            if mask is not None:
                mdest = save_volume(out / "masks" / f"{src.name}_brain.nii.gz", mask, affine)
                entry["brain_mask"] = str(mdest.relative_to(out))
        manifest["volumes"].append(entry)
        log(f"{role:5s} {src.name}: {data.shape} from {src.requirement}")
        if role == "train" and src.brain_mask:
            mask, mask_affine = _canonical(fetch(src, cache, src.brain_mask))
            if mask.shape != data.shape or not np.allclose(mask_affine, affine, atol=1e-3):
                raise VolumeError(f"{src.brain_mask} is not on the grid of {src.member}")
            name = f"{src.name}-brain"
            bdest = save_volume(out / "train" / f"{name}.nii.gz", data * (mask > 0.5), affine)
            manifest["volumes"].append(
                {
                    **entry,
                    "name": name,
                    "file": str(bdest.relative_to(out)),
                    "brain_mask_member": src.brain_mask,
                    "description": src.description + ", skull-stripped with the package's brain mask",
                }
            )
            log(f"train {name}: {data.shape}, skull-stripped with {Path(src.brain_mask).name}")
    (out / "sources.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def held_out_t1() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The default test subject without downloading anything: nilearn's ICBM152 2009a T1 on
    the paper's 182x218x181 grid, RAS, as ``(data float32 (X, Y, Z), affine, brain mask uint8)``
    — the same arrays ``prepare_packaged`` writes to ``test/`` and ``masks/``."""
    src = next(s for s in SOURCES if s.name == DEFAULT_TEST)
    path = _installed_member(src)
    if path is None:
        raise VolumeError("nilearn is not installed: pip install nilearn (it ships the ICBM152 T1)")
    data, affine = _canonical(path)
    data, affine = centre_crop(data, affine, TEST_SHAPE)
    mask = test_brain_mask(src.name, affine, data.shape)
    return data, affine, mask
