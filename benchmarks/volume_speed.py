"""Whole-volume super-resolution time on CPU: 182x218x181 at x4 with the `small` preset.

Usage: ``python benchmarks/volume_speed.py [--preset small] [--scale 4] [--threads 2] [--batch-size 8] [--fusion]``

The volume is the ICBM152 2009a T1 template that ships inside nilearn, centre-cropped to the
paper's 182x218x181 grid; its thick-slice version is simulated along the axial axis. The network
has random weights (speed does not depend on them). Prints wall time, slices run per second and
peak resident memory.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if not __package__:  # run as a script: `benchmarks.…` imports need the repository root on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from benchmarks.provenance import Timer, header_line, peak_rss_mb
from transmrsr import TransMRSR, TransMRSRConfig
from transmrsr.data import simulate_thick
from transmrsr.data.packaged import held_out_t1
from transmrsr.inference import super_resolve


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="small")
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--fusion", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    hr, _, _ = held_out_t1()  # the ICBM152 T1 on the paper's 182x218x181 grid
    lr = simulate_thick(hr, 2, args.scale)
    model = TransMRSR(TransMRSRConfig.from_preset(args.preset)).eval()
    with Timer() as timer:
        result = super_resolve(
            model,
            lr,
            2,
            args.scale,
            n_thin=hr.shape[2],
            batch_size=args.batch_size,
            fusion=args.fusion,
            show_progress=False,
        )
    dt = timer.seconds
    peak_mb = peak_rss_mb()  # since the process started: volume loading included
    extra = f"preset {args.preset}, x{args.scale}, batch {args.batch_size}, fusion {args.fusion}"
    print(header_line(args.threads, gpu=False, extra=extra))
    print(f"volume {hr.shape} -> {result.sr.shape}; slice axes {result.slice_axes}; canvas {result.canvas}")
    print(
        f"slices run: {result.slices_run} (background slices skipped: "
        f"{sum(hr.shape[a] for a in result.slice_axes) - result.slices_run})"
    )
    print(f"wall time: {dt:.1f} s; {result.slices_run / dt:.2f} slices/s; peak RSS {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
