"""Score SR models on the validation subjects of ``transmrsr prepare-public`` (and the test subject).

Usage::

    python benchmarks/validation.py DATA --models checkpoints/transmrsr-small-t1-x4 [...] \
        [--subjects val] [--test] [--phis 0 0.5 1] [--no-fusion] [--threads 2] [--json out.json]

``DATA`` is a folder written by ``transmrsr prepare-public --packaged``. For each model (its scale
is read from its config) and each subject of ``DATA/val/`` (``--test`` adds ``DATA/test/``), thick
slices are simulated along the axial axis (box profile) from the 1 mm volume; the whole volume
is super-resolved as ``transmrsr sr`` does (orthogonal fusion unless ``--no-fusion``) and scored
beside cubic interpolation of the same input, in one run: PSNR / SSIM inside the subject's mask
(brain mask for skull-stripped and test subjects, head mask for heads with skull) and over the
volume. ``--phis`` sweeps the truncation level (the φ effect of the prior). Wall time of each
run is measured. Checkpoints are chosen on ``val`` subjects only; ``test`` is reported, never
used for a choice.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if not __package__:  # run as a script: `benchmarks.…` imports need the repository root on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from benchmarks.provenance import Timer, header_line
from transmrsr import TransMRSR
from transmrsr.data.degradation import simulate_thick
from transmrsr.data.io import load_mask, load_volume
from transmrsr.evaluation.evaluate import evaluate
from transmrsr.inference import DEFAULT_FUSION, super_resolve

AXIS = 2  # axial in RAS: prepared volumes are RAS


def subjects(data: Path, roles: list[str]) -> list[tuple[str, str, Path, Path]]:
    """``(role, name, volume, mask)`` for every subject of ``roles`` in a prepare-public folder."""
    manifest = json.loads((data / "sources.json").read_text())
    out = []
    for v in manifest["volumes"]:
        role = v.get("role")
        if role not in roles:
            continue
        mask = v.get("brain_mask") or v.get("head_mask")
        if mask is None:
            raise SystemExit(f"{v['name']}: no mask in sources.json")
        out.append((role, v["name"], data / v["file"], data / mask))
    return sorted(out)


def run(model: TransMRSR, hr: np.ndarray, mask: np.ndarray, phi: float | None, fusion: bool, batch: int) -> tuple:
    """``(SR score, cubic score, seconds)`` of one whole-volume run."""
    scale = int(model.config_scale)
    lr = simulate_thick(hr, AXIS, scale, "box")
    with Timer() as timer:
        res = super_resolve(
            model, lr, AXIS, scale, n_thin=hr.shape[AXIS], phi=phi, fusion=fusion, batch_size=batch, show_progress=False
        )
    sr_row, cubic, *_ = evaluate(res.sr, hr, lr, AXIS, scale, mask=mask)
    return sr_row, cubic, timer.seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", help="prepare-public output folder")
    ap.add_argument("--models", nargs="+", required=True, help="model folders (scale read from each)")
    ap.add_argument("--subjects", nargs="+", default=["val"], help="roles to score (default val)")
    ap.add_argument("--test", action="store_true", help="also report the test subject")
    ap.add_argument("--phis", type=float, nargs="+", default=[None], help="truncation levels (default: the model's)")
    ap.add_argument("--no-fusion", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--scale", type=int, help="scale of every model (default: from each folder's '-x<R>' name)")
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    roles = args.subjects + (["test"] if args.test else [])
    subs = subjects(Path(args.data), roles)
    fusion = DEFAULT_FUSION and not args.no_fusion
    extra = f"thick slices simulated along the axial axis (box); {'fused' if fusion else 'one plane'}"
    print(header_line(args.threads, extra=extra) + "\n")
    print("| model | scale | φ | subject | role | PSNR mask SR | cubic | Δ dB | SSIM mask SR | cubic | s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for folder in args.models:
        model = TransMRSR.from_pretrained(folder).eval()
        model.config_scale = args.scale or _scale_from_name(folder)
        for role, name, vol, mpath in subs:
            hr = load_volume(vol).data
            mask = load_mask(mpath).astype(bool)
            for phi in args.phis:
                sr, cubic, secs = run(model, hr, mask, phi, fusion, args.batch_size)
                shown_phi = model.config.phi if phi is None else phi
                d = sr.psnr_mask - cubic.psnr_mask
                rows.append(
                    {
                        "model": str(folder),
                        "scale": model.config_scale,
                        "phi": shown_phi,
                        "subject": name,
                        "role": role,
                        "psnr_mask": sr.psnr_mask,
                        "psnr_mask_cubic": cubic.psnr_mask,
                        "delta": d,
                        "ssim_mask": sr.ssim_mask,
                        "ssim_mask_cubic": cubic.ssim_mask,
                        "seconds": secs,
                    }
                )
                print(
                    f"| {Path(folder).name} | ×{model.config_scale} | {shown_phi:g} | {name} | {role} | {sr.psnr_mask:.2f} | "
                    f"{cubic.psnr_mask:.2f} | {d:+.2f} | {sr.ssim_mask:.4f} | {cubic.ssim_mask:.4f} | {secs:.1f} |",
                    flush=True,
                )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


def _scale_from_name(folder: str) -> int:
    """The scale of a model folder named ``...-x<R>`` (the bundled and train-sr naming)."""
    tail = Path(folder).name.rsplit("-x", 1)
    if len(tail) == 2 and tail[1].isdigit():
        return int(tail[1])
    raise SystemExit(f"{folder}: cannot tell its scale (no 'scale' in config.json, name not '...-x<R>')")


if __name__ == "__main__":
    main()
