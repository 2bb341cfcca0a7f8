"""The φ sweep made visible: one coronal slice of a validation subject at ×4, cubic, the SR at several φ, the HR,
and |SR(φ=1) − SR(φ=0)|; PSNR of the slice inside the subject's mask under each panel.

    python benchmarks/phi_figure.py DATA --model checkpoints/transmrsr-small-t1-x4 --subject bet --out docs/phi-sweep.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if not __package__:  # run as a script: `benchmarks.…` imports need the repository root on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from benchmarks.provenance import header_line
from transmrsr import TransMRSR
from transmrsr.data.degradation import interpolate_to_grid, simulate_thick
from transmrsr.data.io import load_mask, load_volume
from transmrsr.data.normalization import IntensityScaler
from transmrsr.inference import super_resolve_slices

AXIS, PLANE = 2, 1  # thick axial slices (RAS), coronal planes shown (the plane the network runs on)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path, help="prepare-public output folder")
    ap.add_argument("--model", required=True)
    ap.add_argument("--subject", default="bet", help="a validation subject's name (never the test subject)")
    ap.add_argument("--phis", type=float, nargs="+", default=[0.0, 0.5, 0.9, 1.0])
    ap.add_argument("--index", type=int, default=None, help="coronal slice (default: the mask's centre)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--scale", type=int, default=4, help="the model's factor")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    manifest = json.loads((a.data / "sources.json").read_text())
    entry = next(v for v in manifest["volumes"] if v["name"] == a.subject)
    if entry.get("role") != "val":
        raise SystemExit(f"{a.subject} is a {entry.get('role')} subject: the figure uses validation subjects only")
    hr = load_volume(a.data / entry["file"]).data
    mask = load_mask(a.data / (entry.get("brain_mask") or entry["head_mask"]))
    model = TransMRSR.from_pretrained(a.model).eval()
    scale = a.scale
    lr = simulate_thick(hr, AXIS, scale, "box")
    scaler = IntensityScaler.fit(lr)
    interp = interpolate_to_grid(scaler.forward(lr), AXIS, scale, n_thin=hr.shape[AXIS], mode="cubic")
    idx = a.index if a.index is not None else int(np.round(np.argwhere(mask)[:, PLANE].mean()))
    with torch.inference_mode():
        srs = super_resolve_slices(model, interp, PLANE, [idx] * len(a.phis), a.phis)
    srs = [scaler.inverse(np.clip(s, 0, None)) for s in srs]
    cub = scaler.inverse(np.take(interp, idx, axis=PLANE))
    ref = np.take(hr, idx, axis=PLANE)
    m = np.take(mask, idx, axis=PLANE) > 0
    rng = float(hr[mask > 0].max() - hr[mask > 0].min())

    def psnr(x: np.ndarray) -> float:
        return float(10 * np.log10(rng**2 / np.mean((x[m] - ref[m]) ** 2)))

    lo, hi = np.percentile(ref[m], [0.5, 99.5])
    panels = [(cub, f"cubic\n{psnr(cub):.2f} dB")]
    panels += [(s, f"SR φ = {p:g}\n{psnr(s):.2f} dB") for s, p in zip(srs, a.phis)]
    panels += [(ref, "HR (1 mm)")]
    diff = np.abs(srs[-1] - srs[0])
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(2.3 * (len(panels) + 1), 3.0))
    for ax, (img, title) in zip(axes, panels):
        ax.imshow(np.rot90(img), cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    im = axes[-1].imshow(np.rot90(diff), cmap="magma", vmin=0, vmax=float(np.percentile(diff[m], 99.5)))
    axes[-1].set_title(f"|SR φ={a.phis[-1]:g} − φ={a.phis[0]:g}|", fontsize=9)
    axes[-1].axis("off")
    fig.colorbar(im, ax=axes[-1], fraction=0.046)
    fig.suptitle(f"{a.subject} (validation), ×{scale}, coronal slice {idx}: the truncation level φ", fontsize=10)
    fig.tight_layout()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.out, dpi=110)
    print(header_line(a.threads, extra=f"{a.subject}, x{scale}, coronal slice {idx}, one plane"))
    print(" | ".join(t.replace("\n", " ") for _, t in panels))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
