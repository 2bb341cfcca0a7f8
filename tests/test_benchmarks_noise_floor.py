"""benchmarks/noise_floor.py: the noise estimate recovers a known σ on a smooth head with added noise, and the
script reads a prepare-public folder (sources.json, volume, mask) written here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from benchmarks.noise_floor import noise_floor_db, noise_sigma

REPO = Path(__file__).resolve().parents[1]


def _head(seed: int = 0, shape=(48, 56, 40)) -> tuple[np.ndarray, np.ndarray]:
    """A smooth ellipsoidal 'head' with blobby anatomy, values 0..200, and its mask."""
    rng = np.random.default_rng(seed)
    zz = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    mask = (zz**2).sum(0) < 0.8
    anatomy = ndimage.gaussian_filter(rng.standard_normal(shape), 4.0)
    anatomy = (anatomy - anatomy.min()) / np.ptp(anatomy)
    return (mask * (60 + 140 * anatomy)).astype(np.float32), mask


def test_sigma_of_known_noise():
    hr, mask = _head()
    rng = np.random.default_rng(1)
    for sigma in (1.0, 4.0):
        noisy = hr + rng.normal(0, sigma, hr.shape).astype(np.float32)
        est = noise_sigma(noisy, mask)
        assert 0.9 * sigma < est < 1.25 * sigma, (sigma, est)  # anatomy may only add to it
    s1, _, floor1 = noise_floor_db(hr + rng.normal(0, 1.0, hr.shape), mask)
    s4, _, floor4 = noise_floor_db(hr + rng.normal(0, 4.0, hr.shape), mask)
    assert floor1 - floor4 > 10.0  # 4x the noise: 12 dB lower floor


def test_script_reads_a_prepared_folder(tmp_path: Path):
    hr, mask = _head(seed=2)
    noisy = hr + np.random.default_rng(3).normal(0, 2.0, hr.shape).astype(np.float32)
    (tmp_path / "val").mkdir()
    (tmp_path / "masks").mkdir()
    nib.save(nib.Nifti1Image(noisy, np.eye(4)), tmp_path / "val" / "h.nii.gz")
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), np.eye(4)), tmp_path / "masks" / "h_head.nii.gz")
    manifest = {"volumes": [{"name": "h", "role": "val", "file": "val/h.nii.gz", "head_mask": "masks/h_head.nii.gz"}]}
    (tmp_path / "sources.json").write_text(json.dumps(manifest))
    out = tmp_path / "floor.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "noise_floor.py"), str(tmp_path), "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(out.read_text())
    assert row["subject"] == "h" and 1.8 < row["sigma"] < 2.5
    assert f"| h | val | {row['sigma']:.3g} |" in proc.stdout
