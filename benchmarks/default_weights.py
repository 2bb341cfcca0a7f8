"""Recompute every figure quoted for the bundled weights (model cards and README).

Usage::

    python benchmarks/default_weights.py [--scales 4 8] [--threads 2] [--json out.json] [--update-cards]

The held-out subject is the ICBM152 2009a T1 that ships in nilearn, on the paper's 182x218x181
grid (``transmrsr.data.packaged.held_out_t1``; no training stage ever saw it). Thick slices are
simulated along the axial axis (box profile, as in training); each scale's bundled model
super-resolves the whole volume with the defaults of ``transmrsr sr`` (orthogonal fusion of the
two planes that contain the thick axis) and with one plane only (``--no-fusion``), and both are
scored beside cubic and trilinear interpolation: PSNR / SSIM inside the brain mask and over the whole volume
(HR data range), and the per-slice 2-D protocol. Wall time of each whole-volume run is measured
on the threads given. ``--update-cards`` rewrites the metrics block of each model card.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

if not __package__:  # run as a script: `benchmarks.…` imports need the repository root on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from benchmarks.provenance import Timer, provenance
from transmrsr import TransMRSR
from transmrsr.data import simulate_thick
from transmrsr.data.packaged import held_out_t1
from transmrsr.evaluation.evaluate import evaluate, score
from transmrsr.inference import DEFAULT_FUSION, default_slice_axis, super_resolve

REPO = Path(__file__).resolve().parents[1]
AXIS = 2  # axial in RAS
START, END = "<!-- metrics:start -->", "<!-- metrics:end -->"


def run_scale(folder: Path, scale: int, hr: np.ndarray, mask: np.ndarray, batch_size: int, phi: float | None) -> dict:
    """Score the default run (fused) and the one-plane run of one scale's model, then cubic and
    trilinear interpolation (scored once); rows in that order."""
    model = TransMRSR.from_pretrained(folder).eval()
    lr = simulate_thick(hr, AXIS, scale, "box")
    out = {
        "scale": scale,
        "model": str(folder.relative_to(REPO)) if folder.is_relative_to(REPO) else str(folder),
        "phi": model.config.phi if phi is None else phi,
    }
    sr_rows, baselines = [], []
    for key, fusion in (("default", DEFAULT_FUSION), ("other", not DEFAULT_FUSION)):
        label = "TransMRSR (fused)" if fusion else "TransMRSR (one plane)"
        with Timer() as timer:
            result = super_resolve(
                model,
                lr,
                AXIS,
                scale,
                n_thin=hr.shape[AXIS],
                batch_size=batch_size,
                phi=phi,
                fusion=fusion,
                show_progress=False,
            )
        out[key] = {"method": label, "seconds": round(timer.seconds, 1), "slices_run": result.slices_run}
        if not baselines:
            sr_score, *baselines = evaluate(result.sr, hr, lr, AXIS, scale, mask=mask)
        else:
            sr_score = score("TransMRSR", result.sr, hr, mask.astype(bool), default_slice_axis(AXIS))
        sr_rows.append({**sr_score.as_dict(), "method": label})
    out["rows"] = [
        {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}
        for r in sr_rows + [b.as_dict() for b in baselines]
    ]
    return out


def table(res: dict) -> str:
    lines = [
        "| method | PSNR brain (dB) | SSIM brain | PSNR volume (dB) | SSIM volume | PSNR per slice (dB) | SSIM per slice |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        lines.append(
            f"| {r['method']} | {r['psnr_mask']:.2f} | {r['ssim_mask']:.4f} | {r['psnr']:.2f} | {r['ssim']:.4f} | "
            f"{r['psnr_2d']:.2f} | {r['ssim_2d']:.4f} |"
        )
    by = {r["method"]: r for r in res["rows"]}
    cubic = by["cubic"]
    lines.append("")
    for run in (res["default"], res["other"]):
        sr = by[run["method"]]
        lines.append(
            f"×{res['scale']}, φ = {res['phi']}, {run['method']}"
            f"{' (the default)' if run is res['default'] else ''}: SR − cubic = "
            f"{sr['psnr_mask'] - cubic['psnr_mask']:+.2f} dB PSNR and {sr['ssim_mask'] - cubic['ssim_mask']:+.4f} SSIM "
            f"in the brain mask; whole-volume run {run['seconds']} s ({run['slices_run']} slices)."
        )
    return "\n".join(lines)


def update_card(card: Path, block: str) -> None:
    text = card.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{card}: no {START} ... {END} block to update")
    new = re.sub(re.escape(START) + r".*?" + re.escape(END), lambda _: f"{START}\n{block}\n{END}", text, flags=re.S)
    card.write_text(new)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scales", type=int, nargs="+", default=[4, 8])
    ap.add_argument("--checkpoints", default=str(REPO / "checkpoints"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--phi", type=float, default=None, help="truncation level (default: each model's)")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--update-cards", action="store_true", help="rewrite the metrics block of each model card")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    hr, _, mask = held_out_t1()
    header = (
        f"{provenance(args.threads, gpu=False)}; held-out ICBM152 2009a T1 182x218x181, "
        "thick slices simulated along the axial axis (box); command: "
        f"`python benchmarks/default_weights.py --scales {' '.join(map(str, args.scales))} --threads {args.threads}`"
    )
    print(f"# {header}\n")
    results = []
    for scale in args.scales:
        folder = Path(args.checkpoints) / f"transmrsr-small-t1-x{scale}"
        res = run_scale(folder, scale, hr, mask, args.batch_size, args.phi)
        results.append(res)
        block = f"{header}\n\n{table(res)}"
        print(block.split("\n\n", 1)[1] + "\n")
        if args.update_cards:
            update_card(folder / "README.md", block)
    if args.json:
        Path(args.json).write_text(json.dumps({"header": header, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
