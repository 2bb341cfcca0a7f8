"""Small BIDS datasets of real MRI for ``transmrsr sr-dataset``: thick-slice T1w scans cut from the ICBM152
2009a T1 that nilearn ships. One builder for ``benchmarks/dataset_throughput.py`` and the tests
(``tests/test_bids.py``, ``tests/test_dataset_processes.py``)."""

from __future__ import annotations

import importlib.resources
import json
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

from transmrsr.data.degradation import simulate_thick, thick_affine

#: HR block size (voxels, before thickening) of :func:`thick_block` unless told otherwise
BLOCK = (32, 40, 32)
#: corners (voxels of the ICBM152 T1) of blocks of the default size that lie inside the head
HEAD_STARTS = ((60, 80, 60), (70, 90, 66), (66, 84, 70), (74, 76, 62), (64, 88, 64), (72, 82, 58))

Start = tuple[int, int, int]


def _t1() -> nib.Nifti1Image:
    """The ICBM152 2009a T1 (1 mm) that nilearn ships; nilearn is imported only here."""
    data = importlib.resources.files("nilearn.datasets") / "data"
    return nib.load(str(data / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"))


def _template() -> tuple[np.ndarray, np.ndarray]:
    img = _t1()
    return np.asarray(img.dataobj, dtype=np.float32), img.affine


def _block(data: np.ndarray, affine: np.ndarray, start: Start, size: Start, factor: int) -> nib.Nifti1Image:
    x, y, z = start
    hr = data[x : x + size[0], y : y + size[1], z : z + size[2]]
    moved = affine.copy()
    moved[:3, 3] += moved[:3, :3] @ np.array(start)
    return nib.Nifti1Image(simulate_thick(hr, 2, factor), thick_affine(moved, 2, factor))


def thick_block(start: Start, size: Start = BLOCK, factor: int = 4) -> nib.Nifti1Image:
    """The block of the ICBM152 T1 (1 mm) at voxel ``start``, ``size`` voxels, averaged to ``factor`` mm slices
    along axis 2 (its affine moved to the block and thickened to match)."""
    return _block(*_template(), start, size, factor)


def random_starts(n: int, size: Start, seed: int = 0) -> list[Start]:
    """``n`` block corners for blocks of ``size`` voxels, at least 20 voxels in from the template's edges
    (as far as it is large enough), drawn from ``seed``."""
    shape = _t1().shape
    rng = np.random.default_rng(seed)
    return [tuple(int(rng.integers(20, max(21, s - z - 20))) for s, z in zip(shape, size)) for _ in range(n)]


def make_bids(
    root: Path,
    starts: Sequence[Start] = HEAD_STARTS[:3],
    size: Start = BLOCK,
    factor: int = 4,
    extras: bool = False,
    bad: bool = False,
) -> list[Path]:
    """A BIDS dataset in the new folder ``root``: one thick T1w scan a block corner in ``starts`` (blocks of
    ``size`` voxels at 1 mm, ``factor`` mm slices along axis 2), ``sub-01/anat/sub-01_T1w.nii.gz`` and on.
    Returns the inputs ``sr-dataset`` will find, in that order.

    ``extras``: the second scan in a session with a run entity (``sub-02/ses-1/anat/sub-02_ses-1_run-2_T1w``),
    a sidecar giving the first 3 mm slices every 4 mm, a T2w, and T1w files that are not inputs (``func/``,
    ``derivatives/``). ``bad``: also an isotropic T1w, ``sub-99`` (nothing to super-resolve: a failed row)."""
    data, affine = _template()
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "blocks", "BIDSVersion": "1.9.0"}))
    made = []
    for i, start in enumerate(starts):
        sub = f"sub-{i + 1:02d}"
        session = extras and i == 1
        folder = root / sub / "ses-1" / "anat" if session else root / sub / "anat"
        name = f"{sub}_ses-1_run-2_T1w.nii.gz" if session else f"{sub}_T1w.nii.gz"
        folder.mkdir(parents=True)
        nib.save(_block(data, affine, start, size, factor), folder / name)
        made.append(folder / name)
    if extras:
        other = _block(data, affine, HEAD_STARTS[-1], BLOCK, 4)
        (root / "sub-01" / "anat" / "sub-01_T1w.json").write_text(json.dumps({"SliceThickness": 3.0}))
        nib.save(other, root / "sub-01" / "anat" / "sub-01_T2w.nii.gz")
        (root / "sub-01" / "func").mkdir()
        nib.save(other, root / "sub-01" / "func" / "sub-01_task-rest_T1w.nii.gz")  # not anat
        (root / "derivatives" / "other" / "sub-01" / "anat").mkdir(parents=True)
        nib.save(other, root / "derivatives" / "other" / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    if bad:
        folder = root / "sub-99" / "anat"
        folder.mkdir(parents=True)
        nib.save(nib.Nifti1Image(data[60:92, 80:120, 60:92], affine), folder / "sub-99_T1w.nii.gz")
        made.append(folder / "sub-99_T1w.nii.gz")
    return made
