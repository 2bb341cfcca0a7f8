"""Write the bundled examples from the project's held-out subject (never seen in training).

Usage: ``python examples/make_examples.py``. The subject is the ICBM152 2009a T1 that ships in
nilearn (``transmrsr.data.packaged.held_out_t1``: RAS, the paper's 182x218x181 1 mm grid). Its
licence allows redistribution with the copyright notice kept (see examples/README.md). Thick
slices are simulated along the axial axis with the box profile, exactly as ``transmrsr simulate``
does, so ``transmrsr sr`` puts each back on the 1 mm grid of the HR.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from transmrsr.data.io import save_volume
from transmrsr.data.packaged import held_out_t1
from transmrsr.inference import simulate_file

HERE = Path(__file__).resolve().parent


def main() -> None:
    data, affine, mask = held_out_t1()
    hr = save_volume(HERE / "icbm152_t1_1mm.nii.gz", data.astype(np.float32), affine)
    save_volume(HERE / "icbm152_t1_brainmask.nii.gz", mask.astype(np.uint8), affine)
    for scale in (4, 8):
        simulate_file(hr, HERE / f"icbm152_t1_axial_{scale}mm.nii.gz", scale, axis=2)
    for p in sorted(HERE.glob("*.nii.gz")):
        p.chmod(0o644)
        print(f"{p.name}: {p.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
