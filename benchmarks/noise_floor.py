"""How much PSNR the noise in a high-resolution head leaves to win: a noise-floor estimate per subject.

Usage::

    python benchmarks/noise_floor.py DATA [--subjects val] [--json out.json]

``DATA`` is a folder written by ``transmrsr prepare-public``. For each subject of ``--subjects`` (roles in
``DATA/sources.json``), the noise standard deviation σ of the 1 mm volume is estimated inside its mask from
the response to a 3-D discrete Laplacian (centre 6, the six face neighbours −1), robustly (1.4826 × the median
absolute deviation), divided by the kernel's norm √42. Anatomy adds to that response, so σ is an upper bound
and the floor ``20 log10(range / σ)`` (``range``: the HR's range inside the mask, as the PSNR of
:mod:`transmrsr.evaluation` uses) a lower bound on the PSNR a perfect, noise-free SR could score against this
noisy HR. A gap between the SR's PSNR and this floor is error the network could still remove.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

if not __package__:  # run as a script: `benchmarks.…` imports need the repository root on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from scipy import ndimage

from benchmarks.provenance import command_line, header_line
from benchmarks.validation import subjects
from transmrsr.data.io import load_mask, load_volume

#: The 3-D discrete Laplacian: its response to white noise of std σ has std σ·√42.
_LAPLACIAN = np.zeros((3, 3, 3), dtype=np.float64)
_LAPLACIAN[1, 1, 1] = 6.0
for _i in ((0, 1, 1), (2, 1, 1), (1, 0, 1), (1, 2, 1), (1, 1, 0), (1, 1, 2)):
    _LAPLACIAN[_i] = -1.0


def noise_sigma(hr: np.ndarray, mask: np.ndarray) -> float:
    """Robust noise std of ``hr (X, Y, Z)`` inside ``mask`` (same shape, bool), in the units of ``hr``."""
    r = ndimage.convolve(np.asarray(hr, dtype=np.float64), _LAPLACIAN, mode="nearest")[mask]
    mad = float(np.median(np.abs(r - np.median(r))))
    return 1.4826 * mad / math.sqrt(float((_LAPLACIAN**2).sum()))


def noise_floor_db(hr: np.ndarray, mask: np.ndarray) -> tuple[float, float, float]:
    """``(σ, range, floor dB)`` of ``hr`` inside ``mask``: the floor is ``20 log10(range / σ)``."""
    vals = np.asarray(hr, dtype=np.float64)[mask]
    rng = float(vals.max() - vals.min())
    sigma = noise_sigma(hr, mask)
    return sigma, rng, 20.0 * math.log10(rng / sigma) if sigma > 0 else math.inf


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", help="a folder written by transmrsr prepare-public")
    p.add_argument("--subjects", nargs="+", default=["val"], help="roles in sources.json (default: val)")
    p.add_argument("--json")
    args = p.parse_args(argv)
    rows = []
    print(header_line())
    print(f"# {command_line(__file__, argv)}")
    print("\n| subject | role | σ (HR units) | HR range in mask | noise floor (dB) |\n|---|---|---|---|---|")
    for role, name, vpath, mpath in subjects(Path(args.data), args.subjects):
        hr = load_volume(vpath).data
        mask = load_mask(mpath).astype(bool)
        sigma, rng, floor = noise_floor_db(hr, mask)
        rows.append({"subject": name, "role": role, "sigma": sigma, "range": rng, "floor_db": floor})
        print(f"| {name} | {role} | {sigma:.3g} | {rng:.4g} | {floor:.1f} |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
